use super::*;
use crate::algorithms::test_support::{cancelled_context, fit_cancelled_at, on_threads};
use crate::metrics::adjusted_rand_index;
use crate::model::{ApiResult, DeviceKind, ParamMap};
use crate::reference_fixtures;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FIXTURES: [&str; 4] = [
    "mean_shift_blobs",
    "mean_shift_noise",
    "mean_shift_iris",
    "mean_shift_wine",
];

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn params(json: serde_json::Value) -> ApiResult<MeanShiftParams> {
    MeanShiftParams::from_params(&ParamMap::from_json(&json).expect("params are an object"))
}

fn labels_of(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_i64().unwrap())
        .collect()
}

/// Gaussian blobs (Box–Muller) around `centres` random centres in `[-10, 10]^d`.
fn blobs(n: usize, d: usize, centres: usize, spread: f32, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c: Vec<f32> = (0..centres * d)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        let k = i % centres;
        for t in 0..d {
            let (u1, u2): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
            let g = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
            data.push(c[k * d + t] + spread * g);
        }
    }
    Matrix::from_vec(n, d, data).unwrap()
}

#[test]
fn labels_match_scikit_learn_on_every_fixture() {
    for file in FIXTURES {
        let f = reference_fixtures::read(file);
        let x = reference_fixtures::data(&f);
        for case in f["cases"].as_array().unwrap() {
            let p = params(case["params"].clone()).unwrap();
            let got = fit(&x, &p, &ctx()).unwrap();
            let want = labels_of(&case["labels"]);
            let ari = adjusted_rand_index(&got.labels, &want);
            let what = format!("{file} {}", case["params"]);
            assert!(ari >= 0.99, "{what}: ARI {ari}");
            assert_eq!(
                got.n_clusters as u64,
                case["n_clusters"].as_u64().unwrap(),
                "{what}"
            );
            let bw = case["bandwidth"].as_f64().unwrap();
            assert!((got.bandwidth - bw).abs() <= 1e-6 * bw, "{what}: bandwidth");
            // Noise is noise in both: ARI alone would allow the −1 class to be renamed.
            let noise = |l: &[i64]| l.iter().filter(|&&v| v == -1).count();
            assert_eq!(noise(&got.labels), noise(&want), "{what}: noise");
            // Centres in scikit-learn's order, to float32 rounding of the means.
            let centres = case["centers"].as_array().unwrap();
            for (k, c) in centres.iter().enumerate() {
                for (t, v) in c.as_array().unwrap().iter().enumerate() {
                    let (g, w) = (f64::from(got.centers.row(k)[t]), v.as_f64().unwrap());
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{what}: centre {k}"
                    );
                }
            }
            let n_iter = case["n_iter"].as_u64().unwrap() as usize;
            assert!(
                got.n_iter.abs_diff(n_iter) <= 1,
                "{what}: n_iter {}",
                got.n_iter
            );
        }
    }
}

#[test]
fn estimated_bandwidth_equals_scikit_learns() {
    for file in FIXTURES {
        let f = reference_fixtures::read(file);
        let x = reference_fixtures::data(&f);
        let want = f["estimated_bandwidth"].as_f64().unwrap();
        let got = estimate_bandwidth(&x, &ctx()).unwrap();
        assert!((got - want).abs() <= 1e-6 * want, "{file}: {got} vs {want}");
    }
}

#[test]
fn bandwidth_neighbour_is_thirty_percent_of_rows_truncated_and_at_least_one() {
    assert_eq!(bandwidth::bandwidth_neighbours(1), 1);
    assert_eq!(bandwidth::bandwidth_neighbours(3), 1);
    assert_eq!(bandwidth::bandwidth_neighbours(10), 3);
    assert_eq!(bandwidth::bandwidth_neighbours(150), 45);
    assert_eq!(bandwidth::bandwidth_neighbours(1001), 300);
}

#[test]
fn radius_decisions_equal_brute_force_across_segments_blocks_and_cells() {
    // Far from the origin, several data segments, and queries placed at exactly the
    // bandwidth from rows (ties on the boundary) as well as at rows and between them.
    let n = 2 * 8 * 1024 + 777;
    let mut x = blobs(n, 5, 3, 2.0, 3);
    for v in x.as_mut_slice() {
        *v += 100.0;
    }
    let prepared = Prepared::new(&x);
    let mut on_boundary = 0;
    // A small ball (mostly filtered out) and a wide one (mostly inside without an exact test).
    for bw in [1.75, 9.0] {
        let mut queries: Vec<f64> = Vec::new();
        for i in (0..n).step_by(97) {
            let row: Vec<f64> = x.row(i).iter().map(|&v| f64::from(v)).collect();
            queries.extend(&row);
            let mut shifted = row.clone();
            shifted[0] += bw;
            queries.extend(&shifted);
            let half: Vec<f64> = row.iter().map(|v| v + 0.3).collect();
            queries.extend(&half);
        }
        let got = prepared
            .ball_scan(
                &queries,
                bw,
                &ctx(),
                Vec::new,
                |v: &mut Vec<usize>, j| v.push(j),
                |a, b| a.extend(b),
            )
            .unwrap();
        for (q, mut got) in queries.chunks(5).zip(got) {
            got.sort_unstable();
            let want: Vec<usize> = (0..n)
                .filter(|&j| ball::sq_dist(q, x.row(j)) <= bw * bw)
                .collect();
            on_boundary += (0..n)
                .filter(|&j| ball::sq_dist(q, x.row(j)) == bw * bw)
                .count();
            assert_eq!(got, want, "bandwidth {bw}");
        }
    }
    assert!(
        on_boundary > 0,
        "some rows lie exactly on a ball's boundary"
    );
}

#[test]
fn kth_distances_equal_brute_force_with_duplicates_and_any_k() {
    let mut x = blobs(2500, 3, 4, 1.0, 5);
    for i in 0..40 {
        let dup = x.row(i).to_vec();
        x.row_mut(2000 + i).copy_from_slice(&dup);
    }
    for v in x.as_mut_slice() {
        *v += 50.0;
    }
    let prepared = Prepared::new(&x);
    for k in [1, 2, 750, 2500] {
        let got = prepared.kth_distances(k, &ctx()).unwrap();
        for (i, &g) in got.iter().enumerate().step_by(7) {
            let q: Vec<f64> = x.row(i).iter().map(|&v| f64::from(v)).collect();
            let mut all: Vec<f64> = (0..2500).map(|j| ball::sq_dist(&q, x.row(j))).collect();
            all.sort_by(f64::total_cmp);
            assert_eq!(g, all[k - 1].sqrt(), "row {i}, k {k}");
        }
    }
}

#[test]
fn nearest_centre_equals_brute_force_with_first_wins_ties() {
    let x = blobs(3000, 4, 5, 1.5, 9);
    let prepared = Prepared::new(&x);
    // 300 centres (two GEMM chunks), the first two identical: ties go to the first.
    let mut centres: Vec<f64> = (0..300)
        .flat_map(|i| x.row(i * 7).iter().map(|&v| f64::from(v) + 0.01))
        .collect();
    let dup = centres[..4].to_vec();
    centres[4..8].copy_from_slice(&dup);
    let got = prepared.nearest(&centres, &ctx()).unwrap();
    for (j, &(c, sq)) in got.iter().enumerate() {
        let (mut best, mut best_sq) = (0, f64::INFINITY);
        for k in 0..300 {
            let e = ball::sq_dist(&centres[k * 4..(k + 1) * 4], x.row(j));
            if e < best_sq {
                (best, best_sq) = (k, e);
            }
        }
        assert_eq!((c, sq), (best, best_sq), "row {j}");
    }
    assert!(got.iter().all(|&(c, _)| c != 1));
}

#[test]
fn bin_seeds_follow_scikit_learns_grid_and_fallback() {
    let x = Matrix::from_vec(6, 1, vec![0.1, 0.4, 0.6, 2.5, 2.6, -0.2]).unwrap();
    // Cells round(x / 1) half to even: 0, 0, 1, 2, 3, -0 (= 0).
    assert_eq!(
        bin_seeds(&x, 1.0, true, 1),
        Seeds::Points(vec![0.0, 1.0, 2.0, 3.0])
    );
    assert_eq!(bin_seeds(&x, 1.0, true, 2), Seeds::Points(vec![0.0]));
    assert_eq!(bin_seeds(&x, 1.0, true, 4), Seeds::Points(vec![]));
    // As many cells as rows: every row seeds, as scikit-learn falls back.
    assert_eq!(bin_seeds(&x, 0.01, true, 1), Seeds::Rows);
    assert_eq!(bin_seeds(&x, 0.0, false, 1), Seeds::Rows);
}

#[test]
fn a_grid_that_leaves_no_seed_is_a_clear_error() {
    let x = blobs(200, 2, 2, 0.5, 1);
    let p = params(serde_json::json!({
        "bandwidth": 0.5, "bin_seeding": true, "min_bin_freq": 1000
    }))
    .unwrap();
    let err = fit(&x, &p, &ctx()).unwrap_err();
    assert!(matches!(err, MeanShiftError::NoCenters { n_seeds: 0, .. }));
    let api: ApiError = err.into();
    assert_eq!(api.field.as_deref(), Some("bandwidth"));
}

#[test]
fn seeds_with_no_row_within_reach_are_dropped_and_none_left_is_an_error() {
    // Eight rows at ±0.45 in 6-D all round to the cell at the origin, whose seed is
    // 0.45·√6 ≈ 1.10 from every row: beyond a bandwidth of 1 (scikit-learn raises).
    let data: Vec<f32> = (0..8u32)
        .flat_map(|i| {
            (0..6).map(move |t| {
                if t >= 3 || (i >> t) & 1 == 1 {
                    0.45
                } else {
                    -0.45
                }
            })
        })
        .collect();
    let x = Matrix::from_vec(8, 6, data).unwrap();
    let p = params(serde_json::json!({"bandwidth": 1.0, "bin_seeding": true})).unwrap();
    assert_eq!(
        fit(&x, &p, &ctx()),
        Err(MeanShiftError::NoCenters {
            bandwidth: 1.0,
            n_seeds: 1
        })
    );
    // Every row as a seed reaches rows (itself at least): one cluster.
    let all = params(serde_json::json!({"bandwidth": 1.0})).unwrap();
    assert!(fit(&x, &all, &ctx()).is_ok());
}

#[test]
fn a_single_row_and_identical_rows_form_one_cluster() {
    let one = Matrix::from_vec(1, 2, vec![1.5, -2.0]).unwrap();
    let fit1 = fit(&one, &params(serde_json::json!({})).unwrap(), &ctx()).unwrap();
    assert_eq!(fit1.labels, vec![0]);
    assert_eq!(fit1.bandwidth, 0.0);
    assert_eq!(fit1.centers.row(0), &[1.5, -2.0]);
    let same = Matrix::zeros(5, 2);
    let fit5 = fit(&same, &params(serde_json::json!({})).unwrap(), &ctx()).unwrap();
    assert_eq!(fit5.labels, vec![0; 5]);
    assert_eq!(fit5.n_clusters, 1);
}

#[test]
fn max_iter_zero_takes_one_mean_per_seed() {
    let x = blobs(300, 2, 3, 1.0, 4);
    let p = params(serde_json::json!({"bandwidth": 1.0, "max_iter": 0})).unwrap();
    let f = fit(&x, &p, &ctx()).unwrap();
    assert_eq!(f.n_iter, 0);
    assert!(f.n_clusters >= 3);
}

#[test]
fn thread_count_does_not_change_the_fit() {
    let x = blobs(4000, 3, 6, 1.2, 21);
    for json in [
        serde_json::json!({"bandwidth": 2.0}),
        serde_json::json!({"bin_seeding": true, "cluster_all": false}),
    ] {
        let p = params(json).unwrap();
        let run = |threads: usize| on_threads(threads, || fit(&x, &p, &ctx()).unwrap());
        let one = run(1);
        assert!(one.n_clusters >= 2);
        assert_eq!(one, run(2));
    }
}

#[test]
fn pre_cancelled_context_returns_cancelled() {
    let c = cancelled_context();
    let x = blobs(100, 2, 2, 1.0, 2);
    let p = params(serde_json::json!({})).unwrap();
    assert_eq!(fit(&x, &p, &c), Err(MeanShiftError::Cancelled(Cancelled)));
}

#[test]
fn cancelling_from_the_progress_stream_stops_the_climb() {
    let x = blobs(3000, 2, 4, 1.0, 12);
    let p = params(serde_json::json!({"bandwidth": 0.8})).unwrap();
    let (result, events) = fit_cancelled_at(
        |ev| ev.stage == "mean_shift:seeds" && ev.iteration == Some(2),
        |c| fit(&x, &p, c),
    );
    let events: Vec<_> = events.iter().map(|e| (e.stage, e.iteration)).collect();
    assert_eq!(result, Err(MeanShiftError::Cancelled(Cancelled)));
    assert!(events.contains(&("mean_shift:bandwidth", None)));
    assert!(events.contains(&("mean_shift:seeds", Some(2))));
    assert!(!events.iter().any(|e| e.0 == "mean_shift:assign"));
}

#[test]
fn defaults_match_scikit_learn() {
    let p = params(serde_json::json!({})).unwrap();
    assert_eq!(
        p,
        MeanShiftParams {
            bandwidth: None,
            bin_seeding: false,
            min_bin_freq: 1,
            cluster_all: true,
            max_iter: 300,
            n_jobs: None,
        }
    );
    let r = p.resolved();
    assert_eq!(r["max_iter"], 300);
    assert_eq!(r["bandwidth"], serde_json::Value::Null);
    assert!(p.max_documents().is_none());
    // n_jobs is accepted (it never changes the answer), including scikit-learn's −1.
    assert_eq!(
        params(serde_json::json!({"n_jobs": -1})).unwrap().n_jobs,
        Some(-1)
    );
}

#[test]
fn rejects_unknown_and_out_of_range_params_naming_the_field() {
    for (json, name) in [
        (serde_json::json!({"bandwidth": 0.0}), "bandwidth"),
        (serde_json::json!({"bandwidth": -1.0}), "bandwidth"),
        (serde_json::json!({"bandwidth": "auto"}), "bandwidth"),
        (serde_json::json!({"seeds": [[0.0, 1.0]]}), "seeds"),
        (serde_json::json!({"bin_seeding": 1}), "bin_seeding"),
        (serde_json::json!({"min_bin_freq": 0}), "min_bin_freq"),
        (serde_json::json!({"min_bin_freq": 1.5}), "min_bin_freq"),
        (serde_json::json!({"cluster_all": "yes"}), "cluster_all"),
        (serde_json::json!({"max_iter": -1}), "max_iter"),
        (serde_json::json!({"n_jobs": 0}), "n_jobs"),
        (serde_json::json!({"n_jobs": 1.5}), "n_jobs"),
        (serde_json::json!({"quantile": 0.5}), "quantile"),
    ] {
        let err = params(json.clone()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(name), "{json}");
    }
    let p = params(serde_json::json!({"seeds": null})).unwrap();
    assert!(p.check_against_data(1).is_ok());
    assert_eq!(
        p.check_against_data(0).unwrap_err().field.as_deref(),
        Some("bandwidth")
    );
}
