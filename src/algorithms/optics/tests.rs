use tokio_util::sync::CancellationToken;

use super::*;
use crate::algorithms::density_fixtures::{adjusted_rand_index, cases_for};
use crate::algorithms::test_support::{cancelled_context, on_threads};
use crate::model::{ApiResult, DeviceKind, ErrorCode, ParamMap};

/// scikit-learn's answers on small generated data (`testdata/generate.py`).
const REFERENCE: &str = include_str!("testdata/reference.json");

fn reference() -> serde_json::Value {
    serde_json::from_str(REFERENCE).expect("reference is JSON")
}

fn matrix(rows: &serde_json::Value) -> Matrix {
    let rows = rows.as_array().expect("rows");
    let cols = rows[0].as_array().expect("row").len();
    let data = rows
        .iter()
        .flat_map(|r| r.as_array().expect("row"))
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    Matrix::from_vec(rows.len(), cols, data).expect("rectangular")
}

fn param_map(json: &serde_json::Value) -> ParamMap {
    ParamMap::from_json(json).expect("params must be an object")
}

fn optics_params(json: serde_json::Value) -> ApiResult<OpticsParams> {
    OpticsParams::from_params(&param_map(&json))
}

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn floats_or_inf(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::INFINITY))
        .collect()
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| x.as_i64().expect("integer"))
        .collect()
}

/// Blobs of distinct density with some uniform noise, seeded, for tests that need more
/// points than the reference sets.
fn blobs(n: usize, dims: usize, seed: u64) -> Matrix {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..dims).map(|_| rng.random_range(-10.0..10.0)).collect())
        .collect();
    let mut data = Vec::with_capacity(n * dims);
    for i in 0..n {
        if i % 20 == 19 {
            data.extend((0..dims).map(|_| rng.random_range(-12.0f32..12.0)));
        } else {
            let c = &centres[i % 4];
            let spread = 0.3 + 0.3 * (i % 4) as f32;
            data.extend(
                c.iter()
                    .map(|&v| v + spread * rng.random_range(-1.0f32..1.0)),
            );
        }
    }
    Matrix::from_vec(n, dims, data).expect("rectangular")
}

#[test]
fn labels_match_scikit_learn_on_generated_data() {
    let r = reference();
    assert_eq!(r["sklearn_version"], "1.9.1");
    let cases = r["cases"].as_array().expect("cases");
    // default xi, other xi with fractional min_cluster_size, dbscan with and without eps,
    // finite max_eps, fractional min_samples, no predecessor correction, cosine.
    assert_eq!(cases.len(), 9);
    for case in cases {
        let x = matrix(&r["datasets"][case["dataset"].as_str().expect("name")]);
        let params = OpticsParams::from_params(&param_map(&case["params"])).expect("valid");
        params.check_against_data(x.rows()).expect("fits the data");
        let got = fit(&x, &params, &ctx()).expect("not cancelled");
        let want = ints(&case["labels"]);
        let n_clusters = want.iter().max().map_or(0, |&m| (m + 1) as usize);
        let cosine_xi =
            case["params"]["metric"] == "cosine" && case["params"]["cluster_method"] != "dbscan";
        if cosine_xi {
            // scikit-learn's cosine distances come from a BLAS product, whose last bit we
            // cannot reproduce; the 15-decimal rounding then leaves two reachabilities
            // that are equal here one unit apart there (0.008769833013373 vs ..372), and
            // the xi extraction turns that flat step into a downward one, moving two
            // points into noise. Everything else agrees.
            let ari = adjusted_rand_index(&got.labels, &want);
            assert!(ari >= 0.95, "{}: ARI {ari}", case["params"]);
            continue;
        }
        // Exact labels, not just the same partition: clusters are numbered as scikit-learn
        // numbers them.
        assert_eq!(got.labels, want, "{} {}", case["dataset"], case["params"]);
        assert_eq!(got.n_clusters, n_clusters, "{}", case["params"]);
    }
}

#[test]
fn ordering_and_reachability_match_scikit_learn_on_tie_free_data() {
    let r = reference();
    let x = matrix(&r["tie_free"]["data"]);
    for g in r["tie_free"]["graphs"].as_array().expect("graphs") {
        let params = optics_params(g["params"].clone()).expect("valid");
        let graph = compute_optics_graph(&x, &params, &ctx()).expect("not cancelled");
        let want_order: Vec<usize> = ints(&g["ordering"]).iter().map(|&i| i as usize).collect();
        assert_eq!(graph.ordering, want_order, "{}", g["params"]);
        assert_eq!(
            graph.predecessor,
            ints(&g["predecessor"]),
            "{}",
            g["params"]
        );
        for (name, got, want) in [
            (
                "core",
                &graph.core_distances,
                floats_or_inf(&g["core_distances"]),
            ),
            (
                "reach",
                &graph.reachability,
                floats_or_inf(&g["reachability"]),
            ),
        ] {
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a == b || (a - b).abs() <= 1e-12 * b.abs(),
                    "{name}[{i}]: {a} vs {b} ({})",
                    g["params"]
                );
            }
        }
    }
}

#[test]
fn parity_with_scikit_learn_on_density_fixtures() {
    let cases = cases_for("optics");
    assert!(!cases.is_empty(), "no optics cases in the density fixtures");
    for (fixture, i) in cases {
        let case = &fixture.cases[i];
        let params = OpticsParams::from_params(&case.param_map()).expect("valid params");
        params
            .check_against_data(fixture.data.rows())
            .expect("fits the data");
        let got = fit(&fixture.data, &params, &ctx()).expect("not cancelled");
        let ari = adjusted_rand_index(&got.labels, &case.labels);
        assert!(
            ari >= 0.99,
            "{} {}: ARI {ari}",
            fixture.dataset,
            case.params
        );
    }
}

#[test]
fn numpy_rounding_is_reproduced() {
    // np.around(x, 15) == rint(x * 1e15) / 1e15, half to even, infinities kept.
    assert_eq!(round_like_numpy(0.5e-15), 0.0);
    assert_eq!(round_like_numpy(1.5e-15), 2e-15);
    assert_eq!(round_like_numpy(f64::INFINITY), f64::INFINITY);
    // Above 2^53 / 1e15 the scaled value is already integral, yet scaling back need not
    // return the input: 12.3456789 round-trips to the next double up, as in NumPy.
    let x = 12.345_678_9_f64;
    assert_eq!(round_like_numpy(x), x * 1e15 / 1e15);
    // Distances that differ below 1e-15 become an exact tie.
    assert_eq!(round_like_numpy(1.0 + 2e-16), round_like_numpy(1.0));
}

#[test]
fn dbscan_extraction_follows_the_ordering() {
    // scikit-learn's docstring example: ordering [0,1,2,5,3,4], eps 4.5 → [0,0,0,1,1,1].
    let reach = [f64::INFINITY, 3.16, 1.41, 4.12, 1.0, 5.0];
    let core = [3.16, 1.41, 1.41, 1.0, 1.0, 4.12];
    let ordering = [0, 1, 2, 5, 3, 4];
    let (labels, n) = cluster_optics_dbscan(&reach, &core, &ordering, 4.5);
    assert_eq!(labels, vec![0, 0, 0, 1, 1, 1]);
    assert_eq!(n, 2);
    // At eps 1.2 only points 3 and 4 are core and reachable from each other; the rest is
    // noise.
    let (labels, n) = cluster_optics_dbscan(&reach, &core, &ordering, 1.2);
    assert_eq!(labels, vec![-1, -1, -1, 0, 0, -1]);
    assert_eq!(n, 1);
}

#[test]
fn xi_extraction_matches_the_scikit_learn_docstring() {
    let reach = [f64::INFINITY, 3.16, 1.41, 4.12, 1.0, 5.0];
    let pred = [-1, 0, 1, 5, 3, 2];
    let ordering = [0, 1, 2, 5, 3, 4];
    let (labels, n, clusters) = cluster_optics_xi(&reach, &pred, &ordering, 2, 2, 0.05, true);
    assert_eq!(labels, vec![0, 0, 0, 1, 1, 1]);
    assert_eq!(n, 2);
    assert_eq!(clusters, vec![(0, 2), (3, 5), (0, 5)]);
}

#[test]
fn defaults_match_scikit_learn() {
    let p = optics_params(serde_json::json!({})).unwrap();
    assert_eq!(p.min_samples, SampleCount::Absolute(5));
    assert_eq!(p.max_eps, f64::INFINITY);
    assert_eq!(p.metric, Metric::Euclidean);
    assert_eq!(
        p.cluster_method,
        ClusterMethod::Xi {
            xi: 0.05,
            predecessor_correction: true,
            min_cluster_size: None
        }
    );
    assert_eq!(p.leaf_size, 30);
    assert_eq!(p.algorithm, NeighborAlgorithm::Auto);
    let resolved = p.resolved();
    assert_eq!(resolved["min_samples"], 5);
    assert_eq!(resolved["min_cluster_size"], 5);
    assert_eq!(resolved["max_eps"], serde_json::Value::Null);
    assert_eq!(resolved["cluster_method"], "xi");
    assert_eq!(resolved["xi"], 0.05);
    // dbscan without eps cuts at max_eps.
    let p = optics_params(serde_json::json!({"cluster_method": "dbscan", "max_eps": 2.0})).unwrap();
    assert_eq!(p.cluster_method, ClusterMethod::Dbscan { eps: 2.0 });
    assert_eq!(p.resolved()["eps"], 2.0);
}

#[test]
fn sample_counts_read_as_integers_or_fractions() {
    let p = optics_params(serde_json::json!({"min_samples": 0.1, "min_cluster_size": 7})).unwrap();
    assert_eq!(p.min_samples, SampleCount::Fraction(0.1));
    assert_eq!(p.min_samples.resolve(1000), 100);
    // max(2, int(fraction · N)).
    assert_eq!(p.min_samples.resolve(15), 2);
    // JSON's 1 is scikit-learn's 1.0 (the integer 1 is invalid there): every sample.
    let p = optics_params(serde_json::json!({"min_samples": 1})).unwrap();
    assert_eq!(p.min_samples.resolve(40), 40);
    let p = optics_params(serde_json::json!({"min_samples": 8.0})).unwrap();
    assert_eq!(p.min_samples, SampleCount::Absolute(8));
}

#[test]
fn rejects_out_of_range_and_unknown_parameters_naming_the_field() {
    for (json, field) in [
        (serde_json::json!({"min_samples": 1.5}), "min_samples"),
        (serde_json::json!({"min_samples": -1}), "min_samples"),
        (
            serde_json::json!({"min_cluster_size": 0}),
            "min_cluster_size",
        ),
        (
            serde_json::json!({"min_cluster_size": 2.5}),
            "min_cluster_size",
        ),
        (serde_json::json!({"max_eps": -0.1}), "max_eps"),
        (serde_json::json!({"eps": -1}), "eps"),
        (serde_json::json!({"xi": 1.01}), "xi"),
        (serde_json::json!({"xi": -0.01}), "xi"),
        (
            serde_json::json!({"cluster_method": "hierarchical"}),
            "cluster_method",
        ),
        (serde_json::json!({"metric": "manhattan"}), "metric"),
        (serde_json::json!({"algorithm": "cover_tree"}), "algorithm"),
        (serde_json::json!({"leaf_size": 0}), "leaf_size"),
        (
            serde_json::json!({"cluster_method": "dbscan", "eps": 3, "max_eps": 2}),
            "eps",
        ),
    ] {
        let err = optics_params(json.clone()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameter, "{json}");
        assert_eq!(err.field.as_deref(), Some(field), "{json}");
    }
    for (json, field) in [
        (serde_json::json!({"p": 2}), "p"),
        (serde_json::json!({"n_jobs": 2}), "n_jobs"),
        (serde_json::json!({"min_sample": 5}), "min_sample"),
        (
            serde_json::json!({"predecessor_correction": "yes"}),
            "predecessor_correction",
        ),
    ] {
        let err = optics_params(json.clone()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest, "{json}");
        assert_eq!(err.field.as_deref(), Some(field), "{json}");
    }
    // eps above max_eps only matters to the dbscan extraction, as in scikit-learn.
    optics_params(serde_json::json!({"eps": 3, "max_eps": 2})).unwrap();
}

#[test]
fn rejects_sample_counts_larger_than_the_data() {
    let p = optics_params(serde_json::json!({"min_samples": 10})).unwrap();
    p.check_against_data(10).unwrap();
    let err = p.check_against_data(9).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("min_samples"));
    assert!(
        err.message
            .contains("must be no greater than the number of samples (9). Got 10"),
        "{}",
        err.message
    );
    // A fraction still needs two neighbours.
    let p = optics_params(serde_json::json!({"min_samples": 0.5})).unwrap();
    assert_eq!(
        p.check_against_data(1).unwrap_err().field.as_deref(),
        Some("min_samples")
    );
    let p = optics_params(serde_json::json!({"min_samples": 2, "min_cluster_size": 6})).unwrap();
    assert_eq!(
        p.check_against_data(5).unwrap_err().field.as_deref(),
        Some("min_cluster_size")
    );
    // dbscan never reads min_cluster_size, so neither does its check.
    let p = optics_params(serde_json::json!({
        "min_samples": 2, "min_cluster_size": 6, "cluster_method": "dbscan", "eps": 1.0
    }))
    .unwrap();
    p.check_against_data(5).unwrap();
}

#[test]
fn pre_cancelled_context_returns_cancelled() {
    let c = cancelled_context();
    let x = blobs(200, 4, 1);
    let p = optics_params(serde_json::json!({})).unwrap();
    assert_eq!(fit(&x, &p, &c), Err(Cancelled));
}

#[test]
fn cancelling_during_the_ordering_stops_the_fit() {
    let t = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c = RunContext::new(0, DeviceKind::Cpu)
        .with_cancel(t.clone())
        .with_progress(tx);
    let x = blobs(3000, 8, 2);
    let p = optics_params(serde_json::json!({})).unwrap();
    let canceller = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            seen.push((ev.stage, ev.fraction));
            if ev.stage == "optics:ordering" && ev.fraction > 0.0 {
                t.cancel();
                break;
            }
        }
        seen
    });
    let result = fit(&x, &p, &c);
    drop(c);
    let seen = canceller.join().unwrap();
    assert_eq!(result, Err(Cancelled));
    // It stopped inside the ordering, so no extraction was reported.
    assert!(seen.iter().all(|(s, _)| *s != "optics:extract"), "{seen:?}");
}

#[test]
fn thread_count_does_not_change_the_result() {
    let x = blobs(2500, 6, 3);
    let p = optics_params(serde_json::json!({"min_samples": 8})).unwrap();
    let run = |threads: usize| {
        on_threads(threads, || {
            (
                compute_optics_graph(&x, &p, &ctx()).unwrap(),
                fit(&x, &p, &ctx()).unwrap(),
            )
        })
    };
    let (g1, l1) = run(1);
    let (g3, l3) = run(3);
    assert_eq!(g1, g3);
    assert_eq!(l1, l3);
    assert!(l1.n_clusters >= 2, "{}", l1.n_clusters);
}
