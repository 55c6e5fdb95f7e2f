use super::*;
use crate::algorithms::test_support::{Lcg, fit_cancelled_at};
use crate::algorithms::test_support::{cancelled_context, on_threads};
use crate::metrics::adjusted_rand_index;
use crate::model::{ApiResult, DeviceKind, ErrorCode, ParamMap};
use crate::reference_fixtures;

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn gm_params(json: serde_json::Value) -> ApiResult<GaussianMixtureParams> {
    GaussianMixtureParams::from_params(&ParamMap::from_json(&json).expect("an object"))
}

fn ari(a: &[i64], b: &[i64]) -> f64 {
    adjusted_rand_index(a, b)
}

/// `centres` blobs of different spreads in `d` dimensions, `n` rows, and their classes.
fn blobs(n: usize, d: usize, centres: usize, seed: u64) -> (Matrix, Vec<i64>) {
    let mut rng = Lcg(seed);
    let centre: Vec<f64> = (0..centres * d).map(|_| rng.uniform() * 30.0).collect();
    let mut data = Vec::with_capacity(n * d);
    let mut truth = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % centres;
        let spread = 0.5 + c as f64 * 0.4;
        for j in 0..d {
            data.push(
                (centre[c * d + j] + rng.normalish() * spread * (1.0 + (j % 3) as f64 * 0.5))
                    as f32,
            );
        }
        truth.push(c as i64);
    }
    (Matrix::from_vec(n, d, data).unwrap(), truth)
}

#[test]
fn ari_and_log_likelihood_match_scikit_learn_on_every_fixture() {
    let mut checked = 0;
    for name in ["aniso", "iris", "wine"] {
        let f = reference_fixtures::read(&format!("gaussian_mixture_{name}"));
        let x = reference_fixtures::data(&f);
        let truth: Vec<i64> = f["truth"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        for case in f["cases"].as_array().unwrap() {
            let params = gm_params(case["params"].clone()).unwrap();
            params.check_against_data(x.rows()).unwrap();
            let seed = params.random_state.unwrap_or(0);
            let got = fit(&x, &params, &RunContext::new(seed, DeviceKind::Cpu)).unwrap();
            let want_ari = case["ari"].as_f64().unwrap();
            let want_ll = case["score"].as_f64().unwrap();
            let got_ari = ari(&got.labels, &truth);
            let p = &case["params"];
            assert!(
                got_ari >= want_ari - 0.02,
                "{name} {p}: ARI {got_ari} vs scikit-learn {want_ari}"
            );
            assert!(
                got.mean_log_likelihood >= want_ll - 0.01 * want_ll.abs(),
                "{name} {p}: mean log-likelihood {} vs scikit-learn {want_ll}",
                got.mean_log_likelihood
            );
            assert!(got.converged, "{name} {p}: did not converge");
            let sum: f64 = got.weights.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{name} {p}: weights sum to {sum}");
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} cases");
}

#[test]
fn probabilities_are_the_argmax_posterior_and_match_scikit_learn() {
    // Everywhere: in (0, 1] and at least 1/K, as the largest of K posteriors. Where the
    // start is k-means and our fit reaches scikit-learn's partition in as many iterations,
    // each row's probability must be scikit-learn's `predict_proba` at its label, to the
    // fixtures' rounding (6 digits) plus the most scikit-learn's own answer moves between
    // seeds (`max_proba_spread`: k-means may land on neighbouring partitions, after which
    // EM stops at slightly different parameters). From random starts EM stops (lower bound
    // moving less than tol) at other parameters, so only the range is checked there.
    let mut compared = 0;
    for name in ["aniso", "iris", "wine"] {
        let f = reference_fixtures::read(&format!("gaussian_mixture_{name}"));
        let x = reference_fixtures::data(&f);
        for case in f["cases"].as_array().unwrap() {
            let params = gm_params(case["params"].clone()).unwrap();
            let k = params.n_components;
            let got = fit(&x, &params, &ctx()).unwrap();
            assert_eq!(got.probabilities.len(), x.rows());
            for (&l, &pr) in got.labels.iter().zip(&got.probabilities) {
                assert!((0..k as i64).contains(&l));
                assert!(pr > 0.0 && pr <= 1.0 && f64::from(pr) >= 1.0 / k as f64 - 1e-6);
            }
            let want_labels: Vec<i64> = case["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            if params.init_params != MixtureInit::KMeans || ari(&got.labels, &want_labels) < 1.0 {
                continue;
            }
            let worst = got
                .probabilities
                .iter()
                .zip(case["max_proba"].as_array().unwrap())
                .map(|(&p, w)| (f64::from(p) - w.as_f64().unwrap()).abs())
                .fold(0.0, f64::max);
            let spread = case["max_proba_spread"].as_f64().unwrap();
            assert!(
                worst < 1e-5 + spread,
                "{name} {}: posterior off by {worst}",
                case["params"]
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 8,
        "only {compared} cases reached scikit-learn's partition"
    );
}

#[test]
fn single_component_is_the_sample_mean_and_the_gaussian_log_likelihood() {
    // One full-covariance component: weight 1, mean = column means, and the mean
    // log-likelihood of the maximum-likelihood Gaussian, −d/2·(1 + ln 2π) − ½·ln det Σ.
    let x = Matrix::from_vec(
        6,
        2,
        vec![0.0, 0.0, 1.0, 0.5, 2.0, 1.5, 3.0, 1.0, 4.0, 3.0, 5.0, 2.0],
    )
    .unwrap();
    let p = gm_params(serde_json::json!({"reg_covar": 0.0})).unwrap();
    let got = fit(&x, &p, &ctx()).unwrap();
    assert_eq!(got.labels, vec![0; 6]);
    assert!(got.probabilities.iter().all(|&p| p == 1.0));
    assert_eq!(got.weights, vec![1.0]);
    assert!((f64::from(got.means.row(0)[0]) - 2.5).abs() < 1e-6);
    assert!((f64::from(got.means.row(0)[1]) - 8.0 / 6.0).abs() < 1e-6);
    let xs = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
    let ys = [0.0, 0.5, 1.5, 1.0, 3.0, 2.0];
    let (mx, my) = (2.5, 8.0 / 6.0);
    let sxx = xs.iter().map(|x| (x - mx) * (x - mx)).sum::<f64>() / 6.0;
    let syy = ys.iter().map(|y| (y - my) * (y - my)).sum::<f64>() / 6.0;
    let sxy = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / 6.0;
    let det = sxx * syy - sxy * sxy;
    let want = -(1.0 + (2.0 * std::f64::consts::PI).ln()) - 0.5 * det.ln();
    assert!(
        (got.mean_log_likelihood - want).abs() < 1e-9,
        "{} vs {want}",
        got.mean_log_likelihood
    );
    assert!(got.converged);
}

#[test]
fn covariance_types_rank_as_their_flexibility_on_anisotropic_blobs() {
    // More parameters fit the training data at least as well: full ≥ diag ≥ spherical.
    let f = reference_fixtures::read("gaussian_mixture_aniso");
    let x = reference_fixtures::data(&f);
    let ll = |cov: &str| {
        let p =
            gm_params(serde_json::json!({"n_components": 4, "covariance_type": cov, "n_init": 3}))
                .unwrap();
        fit(&x, &p, &ctx()).unwrap().mean_log_likelihood
    };
    let (full, diag, spherical) = (ll("full"), ll("diag"), ll("spherical"));
    assert!(full > diag && diag > spherical, "{full} {diag} {spherical}");
}

#[test]
fn max_iter_zero_keeps_the_initial_parameters() {
    let (x, _) = blobs(300, 3, 3, 5);
    let p = gm_params(serde_json::json!({"n_components": 3, "max_iter": 0})).unwrap();
    let got = fit(&x, &p, &ctx()).unwrap();
    assert_eq!(got.n_iter, 0);
    assert!(!got.converged);
    assert_eq!(got.lower_bound, f64::NEG_INFINITY);
    assert!(got.mean_log_likelihood.is_finite());
}

#[test]
fn n_init_keeps_the_best_lower_bound() {
    let (x, _) = blobs(600, 4, 5, 9);
    let one = |seed: u64| {
        let p =
            gm_params(serde_json::json!({"n_components": 5, "init_params": "random_from_data"}))
                .unwrap();
        fit(&x, &p, &RunContext::new(seed, DeviceKind::Cpu)).unwrap()
    };
    let p = gm_params(
        serde_json::json!({"n_components": 5, "init_params": "random_from_data", "n_init": 4}),
    )
    .unwrap();
    let best = fit(&x, &p, &ctx()).unwrap();
    // Run 0 of the n_init fit is the single fit with the same seed.
    let first = one(0);
    assert!(best.lower_bound >= first.lower_bound);
}

#[test]
fn ill_defined_covariance_is_an_error_not_a_panic() {
    // A feature that is 0 in every row has variance exactly 0 in every component, so with
    // reg_covar 0 every covariance type but spherical (which averages the variances) is
    // singular; rows all equal make spherical singular too. scikit-learn 1.9.1 raises its
    // ValueError on exactly these cases (checked with both kmeans and random inits);
    // duplicated rows alone leave a variance of rounding size whose sign is luck.
    let (blob, _) = blobs(30, 2, 2, 4);
    let mut zero_column = Vec::new();
    for i in 0..30 {
        zero_column.extend_from_slice(blob.row(i));
        zero_column.push(0.0);
    }
    let zero_column = Matrix::from_vec(30, 3, zero_column).unwrap();
    let all_equal = Matrix::from_vec(10, 2, vec![0.0; 20]).unwrap();
    for (x, cov) in [
        (&zero_column, "full"),
        (&zero_column, "tied"),
        (&zero_column, "diag"),
        (&all_equal, "full"),
        (&all_equal, "tied"),
        (&all_equal, "diag"),
        (&all_equal, "spherical"),
    ] {
        for init in ["kmeans", "random"] {
            let p = gm_params(serde_json::json!({
                "n_components": 2, "covariance_type": cov, "reg_covar": 0.0, "init_params": init
            }))
            .unwrap();
            let e = fit(x, &p, &ctx()).unwrap_err();
            assert_eq!(e, MixtureError::IllDefinedCovariance, "{cov} {init}");
            let api: ApiError = e.into();
            assert_eq!(api.code, ErrorCode::InvalidParameter);
            assert_eq!(api.field.as_deref(), Some("reg_covar"));
            assert!(api.message.contains("ill-defined empirical covariance"));
        }
        // The default regularisation cures it.
        let p = gm_params(serde_json::json!({"n_components": 2, "covariance_type": cov})).unwrap();
        assert!(fit(x, &p, &ctx()).unwrap().mean_log_likelihood.is_finite());
    }
    let p = gm_params(
        serde_json::json!({"n_components": 2, "covariance_type": "spherical", "reg_covar": 0.0}),
    )
    .unwrap();
    fit(&zero_column, &p, &ctx()).unwrap();
}

#[test]
fn thread_count_does_not_change_the_fit() {
    let (x, _) = blobs(5000, 6, 4, 21);
    for (cov, init) in [
        ("full", "kmeans"),
        ("tied", "k-means++"),
        ("diag", "random"),
        ("spherical", "random_from_data"),
    ] {
        let p = gm_params(
            serde_json::json!({"n_components": 4, "covariance_type": cov, "init_params": init, "n_init": 2}),
        )
        .unwrap();
        let run = |threads: usize| on_threads(threads, || fit(&x, &p, &ctx()).unwrap());
        let one = run(1);
        assert!(one.n_iter >= 1);
        assert_eq!(one, run(2), "{cov} {init}");
    }
}

#[test]
fn pre_cancelled_context_returns_cancelled() {
    let c = cancelled_context();
    let (x, _) = blobs(200, 3, 3, 1);
    let p = gm_params(serde_json::json!({"n_components": 3})).unwrap();
    assert_eq!(fit(&x, &p, &c), Err(MixtureError::Cancelled));
}

#[test]
fn cancelling_from_the_progress_stream_stops_em() {
    let (x, _) = blobs(4000, 5, 6, 3);
    // tol 0: EM would run all its iterations unless stopped.
    let p = gm_params(serde_json::json!({"n_components": 6, "tol": 0.0, "max_iter": 500, "init_params": "random"}))
        .unwrap();
    let (result, events) =
        fit_cancelled_at(|ev| ev.stage == "gaussian_mixture:em", |c| fit(&x, &p, c));
    assert_eq!(result, Err(MixtureError::Cancelled));
    assert_eq!(events[0].stage, "gaussian_mixture:init");
    let em: Vec<_> = events
        .iter()
        .filter(|e| e.stage == "gaussian_mixture:em")
        .collect();
    assert!(!em.is_empty() && em.len() < 50, "{} EM events", em.len());
    assert_eq!(em[0].iteration, Some(1));
    assert_eq!(em[0].inertia, None);
    assert!((em[0].fraction - 1.0 / 500.0).abs() < 1e-6);
}

#[test]
fn finds_well_separated_blobs_with_every_covariance_type_and_init() {
    let (x, truth) = blobs(1500, 5, 3, 13);
    // Tied covariances from one-hot single-row starts (k-means++, random_from_data) begin
    // at the global covariance and often stop at once on a poor fit, in scikit-learn too.
    for (cov, inits) in [
        ("full", &["kmeans", "k-means++", "random_from_data"][..]),
        ("tied", &["kmeans"][..]),
        ("diag", &["kmeans", "k-means++", "random_from_data"][..]),
        (
            "spherical",
            &["kmeans", "k-means++", "random_from_data"][..],
        ),
    ] {
        for &init in inits {
            let p = gm_params(serde_json::json!({"n_components": 3, "covariance_type": cov, "init_params": init, "n_init": 2}))
                .unwrap();
            let got = fit(&x, &p, &ctx()).unwrap();
            let a = ari(&got.labels, &truth);
            assert!(a > 0.99, "{cov} {init}: ARI {a}");
        }
    }
}

#[test]
fn defaults_match_scikit_learn() {
    let p = gm_params(serde_json::json!({})).unwrap();
    assert_eq!(p.n_components, 1);
    assert_eq!(p.covariance_type, CovarianceType::Full);
    assert_eq!(p.tol, 1e-3);
    assert_eq!(p.reg_covar, 1e-6);
    assert_eq!(p.max_iter, 100);
    assert_eq!(p.n_init, 1);
    assert_eq!(p.init_params, MixtureInit::KMeans);
    assert_eq!(p.random_state, None);
    assert_eq!(p.verbose, 0);
    assert_eq!(p.verbose_interval, 10);
    let r = p.resolved();
    assert_eq!(r["random_state"], 0);
    assert_eq!(r["covariance_type"], "full");
    assert_eq!(r["init_params"], "kmeans");
    assert_eq!(r["warm_start"], false);
    gm_params(serde_json::json!({
        "warm_start": false, "weights_init": null, "means_init": null, "precisions_init": null,
        "verbose": true, "verbose_interval": 3, "random_state": 7, "max_iter": 0
    }))
    .unwrap();
}

#[test]
fn rejects_unknown_and_out_of_range_params_naming_the_field() {
    for (json, name) in [
        (serde_json::json!({"n_components": 0}), "n_components"),
        (serde_json::json!({"n_components": 2.5}), "n_components"),
        (
            serde_json::json!({"covariance_type": "banded"}),
            "covariance_type",
        ),
        (serde_json::json!({"tol": -1.0}), "tol"),
        (serde_json::json!({"reg_covar": -1e-6}), "reg_covar"),
        (serde_json::json!({"max_iter": -1}), "max_iter"),
        (serde_json::json!({"n_init": 0}), "n_init"),
        (
            serde_json::json!({"init_params": "kmeans++"}),
            "init_params",
        ),
        (serde_json::json!({"random_state": -1}), "random_state"),
        (
            serde_json::json!({"random_state": 4294967296u64}),
            "random_state",
        ),
        (serde_json::json!({"warm_start": true}), "warm_start"),
        (
            serde_json::json!({"weights_init": [0.5, 0.5]}),
            "weights_init",
        ),
        (serde_json::json!({"means_init": [[0.0]]}), "means_init"),
        (
            serde_json::json!({"precisions_init": [1.0]}),
            "precisions_init",
        ),
        (serde_json::json!({"verbose": -1}), "verbose"),
        (serde_json::json!({"verbose": "loud"}), "verbose"),
        (
            serde_json::json!({"verbose_interval": 0}),
            "verbose_interval",
        ),
        (serde_json::json!({"n_clusters": 3}), "n_clusters"),
    ] {
        let e = gm_params(json.clone()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(name), "{json}");
    }
}

#[test]
fn rejects_more_components_than_documents_and_a_single_document() {
    let p = gm_params(serde_json::json!({"n_components": 5})).unwrap();
    let e = p.check_against_data(4).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("n_components"));
    assert!(e.message.contains("Expected n_samples >= n_components"));
    p.check_against_data(5).unwrap();
    let one = gm_params(serde_json::json!({})).unwrap();
    assert!(one.check_against_data(1).is_err());
    one.check_against_data(2).unwrap();
}

#[test]
fn rows_without_features_all_fall_in_one_component() {
    let x = Matrix::from_vec(5, 0, Vec::new()).unwrap();
    for cov in ["full", "tied", "diag", "spherical"] {
        let p = gm_params(serde_json::json!({"n_components": 2, "covariance_type": cov})).unwrap();
        let got = fit(&x, &p, &ctx()).unwrap();
        assert_eq!(got.labels, vec![0; 5], "{cov}");
        assert_eq!(got.weights, vec![1.0], "{cov}");
    }
}
