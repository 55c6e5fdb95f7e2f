use super::*;
use crate::algorithms::hdbscan::mst;
use crate::algorithms::test_support::{Lcg, fit_cancelled_at};
use crate::algorithms::test_support::{cancelled_context, on_threads};
use crate::metrics::adjusted_rand_index;
use crate::model::{ApiError, ApiResult, DeviceKind, ParamMap};
use crate::reference_fixtures;

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn agglo_params(json: serde_json::Value) -> ApiResult<AgglomerativeParams> {
    AgglomerativeParams::from_params(&ParamMap::from_json(&json).expect("params are an object"))
}

fn field(e: ApiError) -> String {
    e.field.unwrap_or_default()
}

/// Rows around `centres` random centres in a cube of side 20 (sum of three uniforms per
/// coordinate), offset from the origin so that cosine distances separate them too.
fn blobs(n: usize, d: usize, centres: usize, seed: u64) -> Matrix {
    let mut rng = Lcg(seed);
    let centre: Vec<f64> = (0..centres * d)
        .map(|_| 5.0 + rng.uniform() * 20.0)
        .collect();
    let data = (0..n * d)
        .map(|k| {
            let (i, j) = (k / d, k % d);
            let noise = rng.uniform() + rng.uniform() + rng.uniform() - 1.5;
            (centre[(i % centres) * d + j] + noise * 1.5) as f32
        })
        .collect();
    Matrix::from_vec(n, d, data).unwrap()
}

const FIXTURES: [&str; 3] = [
    "agglomerative_blobs",
    "agglomerative_aniso",
    "agglomerative_iris",
];

#[test]
fn labels_match_scikit_learn_on_every_fixture() {
    let mut checked = 0;
    for file in FIXTURES {
        let f = reference_fixtures::read(file);
        let x = reference_fixtures::data(&f);
        for case in f["cases"].as_array().unwrap() {
            let params = &case["params"];
            let p = agglo_params(params.clone()).unwrap();
            p.check_against_data(x.rows()).unwrap();
            let got = fit(&x, &p, &ctx()).unwrap();
            let want: Vec<i64> = case["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let ari = adjusted_rand_index(&got.labels, &want);
            assert!(
                ari >= 0.99,
                "{} {params}: ARI {ari} against scikit-learn\n got {:?}\nwant {want:?}",
                f["dataset"],
                got.labels
            );
            assert_eq!(
                got.n_clusters as u64,
                case["n_clusters"].as_u64().unwrap(),
                "{} {params}",
                f["dataset"]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 90);
}

/// Ward, complete and average go through scipy's `label` and scikit-learn's `_hc_cut`, both
/// ported exactly, so on tie-free data even the cluster numbers agree. (Single linkage with
/// euclidean or manhattan goes through scikit-learn's own `_single_linkage_label`, whose
/// child order follows Prim's discovery; there only the partition is compared.)
#[test]
fn ward_complete_and_average_number_clusters_exactly_as_scikit_learn() {
    let mut checked = 0;
    for file in FIXTURES {
        let f = reference_fixtures::read(file);
        let x = reference_fixtures::data(&f);
        for case in f["cases"].as_array().unwrap() {
            if case["params"]["linkage"] == "single" {
                continue;
            }
            let p = agglo_params(case["params"].clone()).unwrap();
            let got = fit(&x, &p, &ctx()).unwrap();
            let want: Vec<i64> = case["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(got.labels, want, "{} {}", f["dataset"], case["params"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 63);
}

#[test]
fn merge_heights_match_scipy_on_every_fixture() {
    let mut checked = 0;
    for file in FIXTURES {
        let f = reference_fixtures::read(file);
        let x = reference_fixtures::data(&f);
        for case in f["cases"].as_array().unwrap() {
            let Some(want) = case["distances"].as_array() else {
                continue;
            };
            let p = agglo_params(case["params"].clone()).unwrap();
            let merges = merge_tree(&x, &p, &ctx()).unwrap();
            assert_eq!(merges.len(), want.len());
            for (i, (m, w)) in merges.iter().zip(want).enumerate() {
                let w = w.as_f64().unwrap();
                // Relative, with an absolute floor: a cosine distance near 0 is 1 − cos, whose
                // rounding error is absolute (~1e-16), not relative.
                assert!(
                    (m.height - w).abs() <= 1e-9 * w.abs() + 1e-12,
                    "{} {}: merge {i} at {} vs scipy's {w}",
                    f["dataset"],
                    case["params"],
                    m.height
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 30);
}

/// Total weight of a minimum spanning tree by Prim's algorithm over all pairs.
fn brute_prim_weight(n: usize, dist: impl Fn(usize, usize) -> f64) -> f64 {
    let mut in_tree = vec![false; n];
    let mut best = vec![f64::INFINITY; n];
    let mut current = 0;
    let mut total = 0.0;
    for _ in 1..n {
        in_tree[current] = true;
        let mut next = usize::MAX;
        for j in 0..n {
            if in_tree[j] {
                continue;
            }
            best[j] = best[j].min(dist(current, j));
            if next == usize::MAX || best[j] < best[next] {
                next = j;
            }
        }
        total += best[next];
        current = next;
    }
    total
}

#[test]
fn single_linkage_tree_weight_equals_brute_force_prim_for_every_metric() {
    for (n, d, seed) in [(500, 3, 1), (1200, 16, 2), (2, 4, 3), (300, 1, 4)] {
        let x = blobs(n, d, 5, seed);
        for metric in ["euclidean", "cosine", "manhattan"] {
            let p =
                agglo_params(serde_json::json!({"linkage": "single", "metric": metric})).unwrap();
            let merges = merge_tree(&x, &p, &ctx()).unwrap();
            assert_eq!(merges.len(), n - 1);
            assert!(merges.windows(2).all(|w| w[0].height <= w[1].height));
            let total: f64 = merges.iter().map(|m| m.height).sum();
            let oracle = match metric {
                "manhattan" => brute_prim_weight(n, |i, j| single::manhattan(x.row(i), x.row(j))),
                _ => {
                    let m = if metric == "cosine" {
                        Metric::Cosine
                    } else {
                        Metric::Euclidean
                    };
                    let points = Points::new(&x, m);
                    mst::prim_weight(&points, &mst::Reachability::new(vec![0.0; n], 1.0, false))
                }
            };
            assert!(
                (total - oracle).abs() <= 1e-9 * oracle.max(1e-12),
                "n={n} d={d} {metric}: tree {total} vs Prim {oracle}"
            );
        }
    }
}

#[test]
fn ward_from_centroids_equals_the_lance_williams_matrix_chain() {
    // The same chain over scipy's formula on a full matrix, as the oracle.
    struct Lw {
        d: Vec<Vec<f64>>,
    }
    impl chain::Space for Lw {
        fn dist(&self, a: usize, b: usize) -> f64 {
            self.d[a][b]
        }
        fn dist_cost(&self) -> usize {
            1
        }
        fn merge(&mut self, x: usize, y: usize, dxy: f64, size: &[usize], live: &[u32]) {
            let (nx, ny) = (size[x] as f64, size[y] as f64);
            for &i in live {
                let i = i as usize;
                if i == x || i == y {
                    continue;
                }
                let ni = size[i] as f64;
                let t = 1.0 / (nx + ny + ni);
                let (dx, dy) = (self.d[i][x], self.d[i][y]);
                let v =
                    ((ni + nx) * t * dx * dx + (ni + ny) * t * dy * dy - ni * t * dxy * dxy).sqrt();
                self.d[i][y] = v;
                self.d[y][i] = v;
            }
        }
    }
    let x = blobs(400, 6, 7, 9);
    let n = x.rows();
    let points = Points::new(&x, Metric::Euclidean);
    let mut lw = Lw {
        d: (0..n)
            .map(|i| (0..n).map(|j| points.dist(i, j)).collect())
            .collect(),
    };
    let want = tree::tree_from_steps(n, chain::nn_chain(n, &mut lw, "test", &ctx()).unwrap());
    let p = agglo_params(serde_json::json!({})).unwrap();
    let got = merge_tree(&x, &p, &ctx()).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.left, g.right), (w.left, w.right));
        assert!((g.height - w.height).abs() <= 1e-9 * w.height);
    }
    for k in [2, 7, 30] {
        assert_eq!(tree::cut(n, &got, k), tree::cut(n, &want, k));
    }
}

#[test]
fn cut_numbers_clusters_as_scikit_learn_heap_does() {
    // Nodes 5 = {0, 1} at 1, 6 = {2, 3} at 2, 7 = {4} + 5 at 3, root 8 = 6 + 7 at 4. The
    // expected labels are scikit-learn 1.9.1's `_hc_cut(k, [[0,1],[2,3],[4,5],[6,7]], 5)`.
    let merges = vec![
        tree::Merge {
            left: 0,
            right: 1,
            height: 1.0,
        },
        tree::Merge {
            left: 2,
            right: 3,
            height: 2.0,
        },
        tree::Merge {
            left: 4,
            right: 5,
            height: 3.0,
        },
        tree::Merge {
            left: 6,
            right: 7,
            height: 4.0,
        },
    ];
    assert_eq!(tree::cut(5, &merges, 1), vec![0, 0, 0, 0, 0]);
    assert_eq!(tree::cut(5, &merges, 2), vec![0, 0, 1, 1, 0]);
    assert_eq!(tree::cut(5, &merges, 3), vec![1, 1, 0, 0, 2]);
    assert_eq!(tree::cut(5, &merges, 4), vec![0, 0, 3, 1, 2]);
    assert_eq!(tree::cut(5, &merges, 5), vec![4, 2, 3, 1, 0]);
    assert_eq!(tree::clusters_at_threshold(&merges, 3.0), 3);
    assert_eq!(tree::clusters_at_threshold(&merges, 0.0), 5);
    assert_eq!(tree::clusters_at_threshold(&merges, 4.5), 1);
}

#[test]
fn thread_count_does_not_change_labels() {
    // 32 columns: wide enough that ward's scans run in parallel while over 2 048 clusters
    // are live (chain::PARALLEL_SCAN_WORK).
    let wide = blobs(3000, 32, 6, 22);
    let x = blobs(3000, 8, 6, 21);
    for (x, params) in [
        (&wide, serde_json::json!({"n_clusters": 6})),
        (
            &x,
            serde_json::json!({"n_clusters": 9, "linkage": "average", "metric": "cosine"}),
        ),
        (
            &x,
            serde_json::json!({"n_clusters": 6, "linkage": "complete", "metric": "manhattan"}),
        ),
        (
            &x,
            serde_json::json!({"n_clusters": null, "distance_threshold": 1.0, "linkage": "single"}),
        ),
        (
            &x,
            serde_json::json!({"n_clusters": 8, "linkage": "single", "metric": "manhattan"}),
        ),
    ] {
        let p = agglo_params(params.clone()).unwrap();
        let run = |threads: usize| on_threads(threads, || fit(x, &p, &ctx()).unwrap());
        let one = run(1);
        assert!(one.n_clusters >= 2, "{params}");
        assert_eq!(one, run(2), "{params}");
    }
}

#[test]
fn pre_cancelled_context_returns_cancelled_for_every_linkage() {
    let x = blobs(200, 4, 3, 5);
    for linkage in ["ward", "complete", "average", "single"] {
        let c = cancelled_context();
        let p = agglo_params(serde_json::json!({"linkage": linkage})).unwrap();
        assert_eq!(fit(&x, &p, &c), Err(Cancelled), "{linkage}");
    }
}

/// Cancel the run from the progress stream at the first event of `cancel_at` that reports
/// some progress; the run must stop before cutting the tree.
fn cancel_mid_run(x: &Matrix, params: serde_json::Value, cancel_at: &'static str) {
    let p = agglo_params(params.clone()).unwrap();
    let (result, events) = fit_cancelled_at(
        move |ev| ev.stage == cancel_at && ev.fraction > 0.0,
        |c| fit(x, &p, c),
    );
    let stages: Vec<&str> = events.iter().map(|e| e.stage).collect();
    assert_eq!(result, Err(Cancelled), "{params}");
    assert!(stages.contains(&cancel_at), "{params}: {stages:?}");
    assert!(!stages.contains(&CUT_STAGE), "{params}");
}

#[test]
fn cancelling_from_the_progress_stream_stops_the_run() {
    let x = blobs(3000, 4, 5, 12);
    cancel_mid_run(&x, serde_json::json!({}), MERGE_STAGE);
    cancel_mid_run(
        &x,
        serde_json::json!({"linkage": "average"}),
        DISTANCE_STAGE,
    );
    cancel_mid_run(&x, serde_json::json!({"linkage": "complete"}), MERGE_STAGE);
    cancel_mid_run(
        &x,
        serde_json::json!({"linkage": "single", "metric": "manhattan"}),
        single::STAGE,
    );
}

#[test]
fn defaults_match_scikit_learn() {
    let p = agglo_params(serde_json::json!({})).unwrap();
    assert_eq!(p.cut, Cut::Clusters(2));
    assert_eq!(p.linkage, Linkage::Ward);
    assert_eq!(p.metric, AgglomerativeMetric::Euclidean);
    assert_eq!(p.compute_full_tree, None);
    assert!(!p.compute_distances);
    let r = p.resolved();
    assert_eq!(r["n_clusters"], 2);
    assert_eq!(r["distance_threshold"], serde_json::Value::Null);
    assert_eq!(r["linkage"], "ward");
    assert_eq!(r["compute_full_tree"], true);
    let t = agglo_params(serde_json::json!({"distance_threshold": 2.5})).unwrap();
    assert_eq!(t.cut, Cut::Threshold(2.5));
    assert_eq!(t.resolved()["n_clusters"], serde_json::Value::Null);
    assert_eq!(t.resolved()["distance_threshold"], 2.5);
    for (alias, metric) in [
        ("l2", AgglomerativeMetric::Euclidean),
        ("l1", AgglomerativeMetric::Manhattan),
        ("cityblock", AgglomerativeMetric::Manhattan),
        ("manhattan", AgglomerativeMetric::Manhattan),
        ("cosine", AgglomerativeMetric::Cosine),
    ] {
        let p = agglo_params(serde_json::json!({"linkage": "average", "metric": alias})).unwrap();
        assert_eq!(p.metric, metric);
    }
    agglo_params(
        serde_json::json!({"linkage": "ward", "metric": "l2", "compute_full_tree": false,
        "compute_distances": true, "connectivity": null, "memory": null}),
    )
    .unwrap();
}

#[test]
fn rejects_unknown_and_out_of_range_params_naming_the_field() {
    for (json, name) in [
        (serde_json::json!({"n_clusters": 0}), "n_clusters"),
        (serde_json::json!({"n_clusters": 2.5}), "n_clusters"),
        (
            serde_json::json!({"n_clusters": 3, "distance_threshold": 1.0}),
            "n_clusters",
        ),
        (serde_json::json!({"n_clusters": null}), "n_clusters"),
        (
            serde_json::json!({"distance_threshold": -1.0}),
            "distance_threshold",
        ),
        (serde_json::json!({"linkage": "centroid"}), "linkage"),
        (serde_json::json!({"metric": "cosine"}), "metric"),
        (
            serde_json::json!({"linkage": "ward", "metric": "manhattan"}),
            "metric",
        ),
        (
            serde_json::json!({"linkage": "average", "metric": "precomputed"}),
            "metric",
        ),
        (
            serde_json::json!({"linkage": "single", "metric": "chebyshev"}),
            "metric",
        ),
        (
            serde_json::json!({"compute_full_tree": "yes"}),
            "compute_full_tree",
        ),
        (
            serde_json::json!({"distance_threshold": 1.0, "compute_full_tree": false}),
            "compute_full_tree",
        ),
        (
            serde_json::json!({"compute_distances": 1}),
            "compute_distances",
        ),
        (serde_json::json!({"connectivity": [[1]]}), "connectivity"),
        (serde_json::json!({"memory": "/tmp/cache"}), "memory"),
        (serde_json::json!({"affinity": "euclidean"}), "affinity"),
        (serde_json::json!({"pooling_func": "mean"}), "pooling_func"),
    ] {
        let e = agglo_params(json.clone()).unwrap_err();
        assert_eq!(field(e), name, "{json}");
    }
    let ward_cosine = agglo_params(serde_json::json!({"metric": "cosine"})).unwrap_err();
    assert!(
        ward_cosine
            .message
            .contains("Ward can only work with euclidean distances"),
        "{}",
        ward_cosine.message
    );
}

#[test]
fn rejects_more_clusters_than_documents_and_fewer_than_two_documents() {
    let p = agglo_params(serde_json::json!({"n_clusters": 11})).unwrap();
    assert_eq!(field(p.check_against_data(10).unwrap_err()), "n_clusters");
    p.check_against_data(11).unwrap();
    let t = agglo_params(serde_json::json!({"distance_threshold": 0.0})).unwrap();
    assert!(t.check_against_data(1).is_err());
    t.check_against_data(2).unwrap();
}

#[test]
fn max_documents_bounds_every_linkage_but_single() {
    let bound = |linkage: &str| {
        agglo_params(serde_json::json!({"linkage": linkage}))
            .unwrap()
            .max_documents()
    };
    assert_eq!(bound("single"), None);
    let (ward, why) = bound("ward").unwrap();
    assert_eq!(ward, WARD_MAX_DOCUMENTS);
    assert!(why.contains("ward"));
    for linkage in ["complete", "average"] {
        let (n, why) = bound(linkage).unwrap();
        assert_eq!(n, MATRIX_MAX_DOCUMENTS);
        assert!(why.contains("condensed pairwise distance matrix"), "{why}");
        // The matrix at the bound stays within about 256 MB.
        assert!(n * (n - 1) / 2 * 8 <= 256 * 1024 * 1024);
    }
}

#[test]
fn threshold_zero_gives_every_document_its_own_cluster_and_huge_threshold_one() {
    let x = blobs(60, 3, 3, 4);
    for linkage in ["ward", "complete", "average", "single"] {
        let zero = agglo_params(serde_json::json!({"distance_threshold": 0.0, "linkage": linkage}))
            .unwrap();
        let got = fit(&x, &zero, &ctx()).unwrap();
        assert_eq!(got.n_clusters, 60);
        let mut sorted = got.labels.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..60).collect::<Vec<i64>>());
        let huge = agglo_params(serde_json::json!({"distance_threshold": 1e9, "linkage": linkage}))
            .unwrap();
        let got = fit(&x, &huge, &ctx()).unwrap();
        assert_eq!(got.n_clusters, 1);
        assert!(got.labels.iter().all(|&l| l == 0));
    }
}
