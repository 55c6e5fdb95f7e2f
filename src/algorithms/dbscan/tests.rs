use crate::algorithms::test_support::on_threads;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::algorithms::density_fixtures::{adjusted_rand_index, cases_for};
use crate::algorithms::neighbors::Metric;
use crate::model::{DeviceKind, ParamMap};

fn params(json: serde_json::Value) -> ParamMap {
    ParamMap::from_json(&json).expect("params must be an object")
}

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

/// scikit-learn's `dbscan_inner`, transcribed: whole neighbourhoods, then a depth-first
/// search from each unlabelled core point in index order.
fn reference_dbscan(x: &Matrix, p: &DbscanParams) -> Vec<i64> {
    let pts = Points::new(x, p.metric);
    let n = x.rows();
    let hoods: Vec<Vec<usize>> = (0..n)
        .map(|i| (0..n).filter(|&j| pts.dist(i, j) <= p.eps).collect())
        .collect();
    let core: Vec<bool> = hoods.iter().map(|h| h.len() >= p.min_samples).collect();
    let mut labels = vec![-1i64; n];
    let mut label = 0;
    for start in 0..n {
        if labels[start] != -1 || !core[start] {
            continue;
        }
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if labels[i] == -1 {
                labels[i] = label;
                if core[i] {
                    stack.extend(hoods[i].iter().copied().filter(|&v| labels[v] == -1));
                }
            }
        }
        label += 1;
    }
    labels
}

/// Noisy blobs plus scattered points: many border points touching two clusters.
fn blobs(n: usize, d: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..5)
        .map(|_| (0..d).map(|_| rng.random_range(-4.0f32..4.0)).collect())
        .collect();
    let data = (0..n)
        .flat_map(|i| {
            let c = centres[i % 5].clone();
            let spread = if i % 11 == 0 { 6.0 } else { 1.0 };
            c.into_iter()
                .map(|v| v + spread * rng.random_range(-1.0f32..1.0))
                .collect::<Vec<_>>()
        })
        .collect();
    Matrix::from_vec(n, d, data).unwrap()
}

#[test]
fn labels_equal_scikit_learns_search_exactly_including_border_points() {
    for (metric, eps) in [(Metric::Euclidean, 0.9), (Metric::Cosine, 0.02)] {
        for min_samples in [1, 4, 9] {
            let x = blobs(1300, 3, 5);
            let p = DbscanParams {
                eps,
                min_samples,
                metric,
            };
            let got = fit(&x, &p, &ctx()).unwrap();
            let want = reference_dbscan(&x, &p);
            assert_eq!(got.labels, want, "{metric:?} min_samples {min_samples}");
            let n_clusters = want.iter().max().map_or(0, |&m| m + 1) as usize;
            assert_eq!(got.n_clusters, n_clusters);
        }
    }
}

#[test]
fn parity_with_scikit_learn_fixtures() {
    let cases = cases_for("dbscan");
    assert!(cases.len() >= 9, "every data set has dbscan cases");
    for (f, i) in cases {
        let case = &f.cases[i];
        let p = DbscanParams::from_params(&case.param_map()).unwrap();
        let got = fit(&f.data, &p, &ctx()).unwrap();
        let ari = adjusted_rand_index(&got.labels, &case.labels);
        assert!(ari >= 0.99, "{} {}: ARI {ari}", f.dataset, case.params);
    }
}

#[test]
fn isolated_rows_are_noise_and_min_samples_one_makes_every_row_core() {
    let x = Matrix::from_vec(4, 1, vec![0.0, 0.1, 5.0, 10.0]).unwrap();
    let p = DbscanParams {
        eps: 0.5,
        min_samples: 2,
        metric: Metric::Euclidean,
    };
    assert_eq!(fit(&x, &p, &ctx()).unwrap().labels, vec![0, 0, -1, -1]);
    let p = DbscanParams {
        min_samples: 1,
        ..p
    };
    let got = fit(&x, &p, &ctx()).unwrap();
    assert_eq!(got.labels, vec![0, 0, 1, 2]);
    assert_eq!(got.n_clusters, 3);
}

#[test]
fn the_neighbourhood_includes_rows_at_exactly_eps() {
    let x = Matrix::from_vec(3, 1, vec![0.0, 0.5, 1.0]).unwrap();
    let p = DbscanParams {
        eps: 0.5,
        min_samples: 3,
        metric: Metric::Euclidean,
    };
    assert_eq!(fit(&x, &p, &ctx()).unwrap().labels, vec![0, 0, 0]);
}

#[test]
fn validates_parameters_with_scikit_learn_defaults() {
    let p = DbscanParams::from_params(&params(serde_json::json!({}))).unwrap();
    assert_eq!(
        (p.eps, p.min_samples, p.metric),
        (0.5, 5, Metric::Euclidean)
    );
    let p = DbscanParams::from_params(&params(serde_json::json!({
        "eps": 0.3, "min_samples": 10, "metric": "cosine", "algorithm": "kd_tree", "leaf_size": 30
    })))
    .unwrap();
    assert_eq!((p.eps, p.min_samples, p.metric), (0.3, 10, Metric::Cosine));
}

#[test]
fn rejects_out_of_range_and_unknown_parameters_naming_the_field() {
    for (json, field) in [
        (serde_json::json!({"eps": 0.0}), "eps"),
        (serde_json::json!({"eps": -1.0}), "eps"),
        (serde_json::json!({"min_samples": 0}), "min_samples"),
        (serde_json::json!({"min_samples": 2.5}), "min_samples"),
        (serde_json::json!({"metric": "chebyshev"}), "metric"),
        (serde_json::json!({"algorithm": "faiss"}), "algorithm"),
        (serde_json::json!({"epsilon": 0.5}), "epsilon"),
    ] {
        let err = DbscanParams::from_params(&params(json.clone())).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{json}: {err:?}");
    }
}

#[test]
fn thread_count_does_not_change_the_labels() {
    let x = blobs(3000, 8, 9);
    let p = DbscanParams {
        eps: 1.5,
        min_samples: 6,
        metric: Metric::Euclidean,
    };
    let run = |threads| on_threads(threads, || fit(&x, &p, &ctx()).unwrap());
    assert_eq!(run(1), run(3));
}

#[test]
fn a_cancelled_run_stops_at_its_next_checkpoint() {
    let x = blobs(500, 3, 1);
    let p = DbscanParams {
        eps: 0.5,
        min_samples: 5,
        metric: Metric::Euclidean,
    };
    let token = CancellationToken::new();
    token.cancel();
    assert_eq!(fit(&x, &p, &ctx().with_cancel(token)), Err(Cancelled));

    // Cancelled from the progress stream once clustering starts: the next scan stops.
    let token = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = ctx().with_cancel(token.clone()).with_progress(tx);
    let canceller = std::thread::spawn(move || {
        while let Some(ev) = rx.blocking_recv() {
            if ev.stage == "dbscan:clusters" {
                token.cancel();
            }
        }
    });
    // The progress event is sent before the scan; give the listener time to act on it by
    // making the scan long enough to reach several checkpoints.
    let big = blobs(20_000, 3, 2);
    assert_eq!(fit(&big, &p, &ctx), Err(Cancelled));
    drop(ctx);
    canceller.join().unwrap();
}
