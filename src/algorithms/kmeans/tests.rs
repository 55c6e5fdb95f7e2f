use super::*;
use crate::algorithms::test_support::on_threads;
use crate::model::{ApiError, DeviceKind, ErrorCode, ParamMap};

struct Fixture {
    n_clusters: usize,
    data: Matrix,
    sklearn_inertia: f64,
    sklearn_inertia_n_init_auto: f64,
    sklearn_labels: Vec<i64>,
}

fn fixture(name: &str) -> Fixture {
    let v = crate::reference_fixtures::read(&format!("kmeans_{name}"));
    Fixture {
        n_clusters: v["n_clusters"].as_u64().expect("n_clusters") as usize,
        data: crate::reference_fixtures::data(&v),
        sklearn_inertia: v["sklearn_inertia"].as_f64().expect("inertia"),
        sklearn_inertia_n_init_auto: v["sklearn_inertia_n_init_auto"].as_f64().expect("inertia"),
        sklearn_labels: v["sklearn_labels"]
            .as_array()
            .expect("labels")
            .iter()
            .map(|l| l.as_i64().expect("integer label"))
            .collect(),
    }
}

fn params(json: serde_json::Value) -> ParamMap {
    ParamMap::from_json(&json).expect("test params must be an object")
}

fn kmeans_params(json: serde_json::Value) -> ApiResult<KMeansParams> {
    KMeansParams::from_params(&params(json))
}

use crate::model::ApiResult;

fn ctx(seed: u64) -> RunContext {
    RunContext::new(seed, DeviceKind::Cpu)
}

/// Fraction of pairs on which two labelings agree (Rand index), enough to show that our
/// partition is scikit-learn's up to a renaming of clusters.
fn rand_index(a: &[u32], b: &[i64]) -> f64 {
    let n = a.len();
    let mut agree = 0u64;
    let mut total = 0u64;
    for i in 0..n {
        for j in i + 1..n {
            agree += u64::from((a[i] == a[j]) == (b[i] == b[j]));
            total += 1;
        }
    }
    agree as f64 / total as f64
}

fn check_fit_is_consistent(f: &Fixture, result: &KMeansFit) {
    let k = f.n_clusters;
    assert_eq!(result.labels.len(), f.data.rows());
    assert_eq!(result.distances.len(), f.data.rows());
    assert_eq!(
        (result.centers.rows(), result.centers.cols()),
        (k, f.data.cols())
    );
    assert!(result.labels.iter().all(|&l| (l as usize) < k));
    let from_distances: f64 = result.distances.iter().map(|&d| f64::from(d).powi(2)).sum();
    assert!((from_distances - result.inertia).abs() <= 1e-4 * result.inertia);
}

fn parity(name: &str) {
    let f = fixture(name);
    let p = kmeans_params(serde_json::json!({"n_clusters": f.n_clusters, "n_init": 10}))
        .expect("valid params");
    let ours = fit(&f.data, &p, &ctx(0)).expect("not cancelled");
    check_fit_is_consistent(&f, &ours);
    let ri = rand_index(&ours.labels, &f.sklearn_labels);
    println!(
        "{name}: n_init=10 inertia ours {:.6} sklearn {:.6} (ratio {:.5}), Rand index vs sklearn {ri:.4}, n_iter {}",
        ours.inertia,
        f.sklearn_inertia,
        ours.inertia / f.sklearn_inertia,
        ours.n_iter
    );
    assert!(
        ours.inertia <= 1.01 * f.sklearn_inertia,
        "{name}: inertia {} above 1.01 x scikit-learn's {}",
        ours.inertia,
        f.sklearn_inertia
    );

    let defaults = kmeans_params(serde_json::json!({"n_clusters": f.n_clusters})).unwrap();
    assert_eq!(defaults.n_init, 1);
    let fit_auto = fit(&f.data, &defaults, &ctx(0)).unwrap();
    check_fit_is_consistent(&f, &fit_auto);
    println!(
        "{name}: default params (n_init=auto) inertia ours {:.6} sklearn {:.6} (ratio {:.5})",
        fit_auto.inertia,
        f.sklearn_inertia_n_init_auto,
        fit_auto.inertia / f.sklearn_inertia
    );
    if name == "blobs" {
        // Well separated: a single k-means++ run already finds scikit-learn's best.
        assert!(fit_auto.inertia <= 1.01 * f.sklearn_inertia);
    }
}

#[test]
fn parity_blobs_inertia_within_1pct_of_sklearn() {
    parity("blobs");
}

#[test]
fn parity_anisotropic_inertia_within_1pct_of_sklearn() {
    parity("anisotropic");
}

#[test]
fn parity_embeddings_inertia_within_1pct_of_sklearn() {
    parity("embeddings");
}

/// Data spanning several distance blocks, so that a thread pool really splits the work.
fn multi_block_data() -> Matrix {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (n, d, k) = (3 * crate::algorithms::distance::BLOCK_ROWS + 123, 24, 9);
    let centres: Vec<f32> = (0..k * d).map(|_| rng.random_range(-4.0..4.0)).collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % k;
        for f in 0..d {
            data.push(centres[c * d + f] + rng.random_range(-3.0f32..3.0));
        }
    }
    Matrix::from_vec(n, d, data).unwrap()
}

#[test]
fn same_params_and_seed_give_identical_labels() {
    let x = multi_block_data();
    let p = kmeans_params(serde_json::json!({"n_clusters": 9, "n_init": 3})).unwrap();
    let a = fit(&x, &p, &ctx(42)).unwrap();
    let b = fit(&x, &p, &ctx(42)).unwrap();
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
    assert_eq!(a.centers, b.centers);
}

#[test]
fn thread_count_does_not_change_the_result() {
    let x = multi_block_data();
    for init in ["k-means++", "random"] {
        let p =
            kmeans_params(serde_json::json!({"n_clusters": 9, "init": init, "n_init": 2})).unwrap();
        let in_pool = |threads: usize| on_threads(threads, || fit(&x, &p, &ctx(7)).unwrap());
        let one = in_pool(1);
        let two = in_pool(2);
        assert_eq!(one.labels, two.labels, "{init}");
        assert_eq!(one.inertia.to_bits(), two.inertia.to_bits(), "{init}");
        assert_eq!(one.centers, two.centers, "{init}");
        assert_eq!(one.distances, two.distances, "{init}");
    }
}

#[test]
fn different_seeds_may_differ_but_both_are_valid() {
    let f = fixture("anisotropic");
    let p = kmeans_params(serde_json::json!({"n_clusters": 7})).unwrap();
    for seed in [1, 2, 3] {
        check_fit_is_consistent(&f, &fit(&f.data, &p, &ctx(seed)).unwrap());
    }
}

#[test]
fn cancelled_context_returns_cancelled() {
    let x = multi_block_data();
    let p = kmeans_params(serde_json::json!({"n_clusters": 4})).unwrap();
    let c = ctx(0);
    c.cancel_token().cancel();
    assert_eq!(fit(&x, &p, &c).unwrap_err(), Cancelled);
}

#[test]
fn progress_reports_every_iteration() {
    let x = multi_block_data();
    let p = kmeans_params(serde_json::json!({"n_clusters": 9})).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = fit(&x, &p, &ctx(0).with_progress(tx)).unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert_eq!(events.len(), result.n_iter);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.stage, "kmeans");
        assert_eq!(e.iteration, Some(i as u32 + 1));
        assert!(e.inertia.is_some_and(|v| v >= 0.0));
        assert!((0.0..=1.0).contains(&e.fraction));
    }
}

#[test]
fn empty_clusters_are_relocated() {
    // Random init on data with many duplicates: two initial centres can coincide, leaving
    // a cluster empty; relocation must still produce k non-empty clusters here.
    let mut data = Vec::new();
    for i in 0..60 {
        let v = (i % 3) as f32 * 10.0;
        data.extend_from_slice(&[v, v + (i / 30) as f32]);
    }
    let x = Matrix::from_vec(60, 2, data).unwrap();
    let p = kmeans_params(serde_json::json!({"n_clusters": 6, "init": "random"})).unwrap();
    let result = fit(&x, &p, &ctx(0)).unwrap();
    assert!(result.inertia.abs() < 1e-6, "inertia {}", result.inertia);
    let mut used: Vec<u32> = result.labels.clone();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used.len(), 6);
}

#[test]
fn more_clusters_than_rows_does_not_panic() {
    let x = Matrix::from_vec(3, 2, vec![0.0, 0.0, 1.0, 1.0, 5.0, 5.0]).unwrap();
    let p = kmeans_params(serde_json::json!({"n_clusters": 5})).unwrap();
    let result = fit(&x, &p, &ctx(0)).unwrap();
    assert_eq!(result.centers.rows(), 3);
    assert_eq!(result.inertia, 0.0);
}

#[test]
fn degenerate_shapes_do_not_panic() {
    let p = kmeans_params(serde_json::json!({"n_clusters": 2})).unwrap();
    let zero_width = Matrix::from_vec(5, 0, Vec::new()).unwrap();
    let result = fit(&zero_width, &p, &ctx(0)).unwrap();
    assert_eq!(result.labels.len(), 5);
    assert_eq!(result.inertia, 0.0);
    let no_rows = Matrix::zeros(0, 3);
    let result = fit(&no_rows, &p, &ctx(0)).unwrap();
    assert!(result.labels.is_empty());
    let identical = Matrix::from_vec(4, 2, vec![1.0; 8]).unwrap();
    for init in ["k-means++", "random"] {
        let p = kmeans_params(serde_json::json!({"n_clusters": 3, "init": init})).unwrap();
        let result = fit(&identical, &p, &ctx(0)).unwrap();
        assert_eq!(result.inertia, 0.0, "{init}");
    }
}

// --- validation -------------------------------------------------------------------

fn err(json: serde_json::Value) -> ApiError {
    kmeans_params(json).expect_err("params should be rejected")
}

#[test]
fn defaults_match_scikit_learn() {
    let p = kmeans_params(serde_json::json!({})).unwrap();
    assert_eq!(
        p,
        KMeansParams {
            n_clusters: 8,
            init: KMeansInit::KMeansPlusPlus,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            random_state: None,
        }
    );
    let p = kmeans_params(serde_json::json!({
        "n_clusters": 3, "init": "random", "n_init": 4, "max_iter": 50, "tol": 0,
        "random_state": 4294967295u64, "algorithm": "elkan"
    }))
    .unwrap();
    assert_eq!(
        p,
        KMeansParams {
            n_clusters: 3,
            init: KMeansInit::Random,
            n_init: 4,
            max_iter: 50,
            tol: 0.0,
            random_state: Some(4_294_967_295),
        }
    );
}

#[test]
fn rejects_unknown_kmeans_param() {
    let e = err(serde_json::json!({"n_clusters": 3, "n_cluster": 4}));
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(e.field.as_deref(), Some("n_cluster"));
    // scikit-learn's own `verbose`/`copy_x` are not part of the service's surface either.
    assert_eq!(
        err(serde_json::json!({"eps": 0.5})).field.as_deref(),
        Some("eps")
    );
}

#[test]
fn rejects_fractional_n_clusters() {
    let e = err(serde_json::json!({"n_clusters": 2.5}));
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(e.field.as_deref(), Some("n_clusters"));
}

#[test]
fn accepts_integral_float_n_clusters() {
    assert_eq!(
        kmeans_params(serde_json::json!({"n_clusters": 5.0}))
            .unwrap()
            .n_clusters,
        5
    );
}

#[test]
fn rejects_out_of_range_values() {
    for (json, field) in [
        (serde_json::json!({"n_clusters": 0}), "n_clusters"),
        (serde_json::json!({"n_init": 0}), "n_init"),
        (serde_json::json!({"max_iter": 0}), "max_iter"),
        (serde_json::json!({"tol": -1e-9}), "tol"),
        (serde_json::json!({"random_state": -1}), "random_state"),
        (
            serde_json::json!({"random_state": 4294967296u64}),
            "random_state",
        ),
        (serde_json::json!({"algorithm": "full"}), "algorithm"),
        (serde_json::json!({"n_init": "sometimes"}), "n_init"),
    ] {
        let e = err(json.clone());
        assert_eq!(e.code, ErrorCode::InvalidParameter, "{json}");
        assert_eq!(e.field.as_deref(), Some(field), "{json}");
    }
}

#[test]
fn rejects_wrong_types() {
    for (json, field) in [
        (serde_json::json!({"n_clusters": "5"}), "n_clusters"),
        (serde_json::json!({"n_init": true}), "n_init"),
        (serde_json::json!({"n_init": 1.5}), "n_init"),
        (serde_json::json!({"tol": "small"}), "tol"),
        (serde_json::json!({"random_state": 1.5}), "random_state"),
    ] {
        let e = err(json.clone());
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{json}");
        assert_eq!(e.field.as_deref(), Some(field), "{json}");
    }
}

#[test]
fn rejects_n_clusters_above_documents() {
    let p = kmeans_params(serde_json::json!({"n_clusters": 10})).unwrap();
    let e = p.check_against_data(7).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParameter);
    assert_eq!(e.field.as_deref(), Some("n_clusters"));
    assert!(
        e.message.contains("10") && e.message.contains('7'),
        "{}",
        e.message
    );
    p.check_against_data(10).unwrap();
}

#[test]
fn rejects_unknown_init() {
    for json in [
        serde_json::json!({"init": "kmeans++"}),
        serde_json::json!({"init": [[0.0, 1.0], [1.0, 0.0]]}),
    ] {
        let e = err(json.clone());
        assert_eq!(e.code, ErrorCode::InvalidParameter, "{json}");
        assert_eq!(e.field.as_deref(), Some("init"), "{json}");
    }
    assert_eq!(
        err(serde_json::json!({"init": 3})).code,
        ErrorCode::InvalidRequest
    );
}

#[test]
fn n_init_auto_depends_on_init() {
    let n_init = |json| kmeans_params(json).unwrap().n_init;
    assert_eq!(n_init(serde_json::json!({})), 1);
    assert_eq!(n_init(serde_json::json!({"n_init": "auto"})), 1);
    assert_eq!(
        n_init(serde_json::json!({"init": "k-means++", "n_init": "auto"})),
        1
    );
    assert_eq!(n_init(serde_json::json!({"init": "random"})), 10);
    assert_eq!(
        n_init(serde_json::json!({"init": "random", "n_init": "auto"})),
        10
    );
    assert_eq!(
        n_init(serde_json::json!({"init": "random", "n_init": 3})),
        3
    );
    assert_eq!(n_init(serde_json::json!({"n_init": null})), 1);
}
