use crate::algorithms::test_support::{cancelled_context, fit_cancelled_at, on_threads};
use faer::{Mat, MatMut, MatRef};

use super::eigen::{self, SymmetricOperator};
use super::*;
use crate::algorithms::test_support::Lcg;
use crate::metrics::adjusted_rand_index;
use crate::model::{ApiError, ApiResult, DeviceKind, ParamMap};

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn spectral_params(json: serde_json::Value) -> ApiResult<SpectralParams> {
    SpectralParams::from_params(&ParamMap::from_json(&json).expect("an object"))
}

/// `centres` Gaussian-ish blobs (sums of uniforms) in `d` dimensions, 6 apart.
fn blobs(n: usize, d: usize, centres: usize, seed: u64) -> (Matrix, Vec<i64>) {
    let mut rng = Lcg(seed);
    let mut data = Vec::with_capacity(n * d);
    let mut truth = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % centres;
        truth.push(c as i64);
        for j in 0..d {
            let centre = if j == c % d {
                6.0 * (1 + c / d) as f64
            } else {
                0.0
            };
            let noise: f64 = (0..4).map(|_| rng.uniform() - 0.5).sum();
            data.push((centre + noise) as f32);
        }
    }
    (Matrix::from_vec(n, d, data).unwrap(), truth)
}

/// A sparse symmetric test operator `I + S` from an explicit edge list.
struct EdgeOperator {
    n: usize,
    adj: Vec<Vec<(usize, f64)>>,
}

impl SymmetricOperator for EdgeOperator {
    fn dim(&self) -> usize {
        self.n
    }
    fn cheap(&self) -> bool {
        true
    }
    fn apply(&self, x: MatRef<'_, f64>, mut y: MatMut<'_, f64>) {
        for c in 0..x.ncols() {
            for i in 0..self.n {
                y[(i, c)] =
                    x[(i, c)] + self.adj[i].iter().map(|&(j, w)| w * x[(j, c)]).sum::<f64>();
            }
        }
    }
}

/// The normalised adjacency of a weighted graph (what `I + D^-½ A D^-½` needs).
fn normalised(n: usize, edges: &[(usize, usize, f64)]) -> EdgeOperator {
    let mut deg = vec![0.0; n];
    for &(a, b, w) in edges {
        deg[a] += w;
        deg[b] += w;
    }
    let mut adj = vec![Vec::new(); n];
    for &(a, b, w) in edges {
        let v = w / (deg[a] as f64).sqrt() / (deg[b] as f64).sqrt();
        adj[a].push((b, v));
        adj[b].push((a, v));
    }
    EdgeOperator { n, adj }
}

fn check_residuals(op: &dyn SymmetricOperator, pairs: &eigen::Eigenpairs, tol: f64) {
    let (n, k) = (op.dim(), pairs.vectors.ncols());
    let mut mv = Mat::<f64>::zeros(n, k);
    op.apply(pairs.vectors.as_ref(), mv.as_mut());
    for j in 0..k {
        let r: f64 = (0..n)
            .map(|i| (mv[(i, j)] - pairs.values[j] * pairs.vectors[(i, j)]).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(r <= tol, "pair {j}: residual {r}");
        for l in 0..k {
            let dot: f64 = (0..n)
                .map(|i| pairs.vectors[(i, j)] * pairs.vectors[(i, l)])
                .sum();
            let want = if j == l { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-8, "columns {j}, {l}: {dot}");
        }
    }
}

#[test]
fn eigensolver_finds_the_analytic_spectrum_of_a_ring_with_its_double_eigenvalues() {
    // Ring C_n: the Laplacian eigenvalues are 1 − cos(2πj/n), each j ≠ 0 twice (j, n − j),
    // so the top of I + S is 2, then pairs 1 + cos(2πj/n).
    let n = 600;
    let edges: Vec<_> = (0..n).map(|i| (i, (i + 1) % n, 1.0)).collect();
    let op = normalised(n, &edges);
    let pairs = eigen::largest(&op, 5, 1e-10, 3, &ctx(), |_, _| {}).unwrap();
    assert!(pairs.converged, "residual {}", pairs.max_residual);
    let want: Vec<f64> = [0, 1, 1, 2, 2]
        .iter()
        .map(|&j| 1.0 + (2.0 * std::f64::consts::PI * j as f64 / n as f64).cos())
        .collect();
    for (got, want) in pairs.values.iter().zip(&want) {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
    check_residuals(&op, &pairs, 1e-10);
}

#[test]
fn eigensolver_finds_the_analytic_spectrum_of_a_path() {
    // Path P_n: normalised Laplacian eigenvalues 1 − cos(πj/(n − 1)), all simple.
    let n = 800;
    let edges: Vec<_> = (0..n - 1).map(|i| (i, i + 1, 1.0)).collect();
    let op = normalised(n, &edges);
    let pairs = eigen::largest(&op, 4, 1e-10, 5, &ctx(), |_, _| {}).unwrap();
    assert!(pairs.converged);
    for (j, got) in pairs.values.iter().enumerate() {
        let want = 1.0 + (std::f64::consts::PI * j as f64 / (n - 1) as f64).cos();
        assert!((got - want).abs() < 1e-9, "{j}: {got} vs {want}");
    }
}

#[test]
fn eigensolver_spans_the_repeated_eigenvalue_of_disconnected_components() {
    // Five disjoint rings: eigenvalue 2 of I + S five times; a single-vector Krylov method
    // would find one.
    let (parts, size) = (5, 150);
    let mut edges = Vec::new();
    for p in 0..parts {
        for i in 0..size {
            edges.push((p * size + i, p * size + (i + 1) % size, 1.0));
        }
    }
    let op = normalised(parts * size, &edges);
    let pairs = eigen::largest(&op, 5, 1e-10, 1, &ctx(), |_, _| {}).unwrap();
    for v in &pairs.values {
        assert!((v - 2.0).abs() < 1e-9, "{:?}", pairs.values);
    }
    check_residuals(&op, &pairs, 1e-10);
}

#[test]
fn eigensolver_residuals_are_small_on_random_knn_graphs() {
    for (n, d, k, nn, seed) in [(1500, 4, 6, 10, 1), (2500, 8, 10, 7, 2), (900, 3, 3, 25, 3)] {
        let (x, _) = blobs(n, d, k, seed);
        let op = embedding::KnnOperator::new(&x, nn, &ctx()).unwrap();
        let pairs = eigen::largest(&op, k, 1e-9, seed, &ctx(), |_, _| {}).unwrap();
        assert!(pairs.converged, "n={n}: residual {}", pairs.max_residual);
        check_residuals(&op, &pairs, 1e-9);
        // The spectrum of I + S lies in [0, 2].
        assert!(
            pairs
                .values
                .iter()
                .all(|&v| (-1e-9..=2.0 + 1e-9).contains(&v))
        );
    }
}

#[test]
fn eigensolver_converges_on_a_structureless_knn_graph() {
    // One blob: no cluster gap, the smallest Laplacian eigenvalues crowd together, the
    // hard case for a restarted Krylov method (what the Chebyshev filter is for).
    let (x, _) = blobs(3000, 2, 1, 7);
    let op = embedding::KnnOperator::new(&x, 10, &ctx()).unwrap();
    let pairs = eigen::largest(&op, 8, 1e-9, 7, &ctx(), |_, _| {}).unwrap();
    assert!(pairs.converged, "residual {}", pairs.max_residual);
    assert!(pairs.restarts < 60, "{} restarts", pairs.restarts);
    check_residuals(&op, &pairs, 1e-9);
    // Only one component: a single eigenvalue 2, the next ones strictly below.
    assert!((pairs.values[0] - 2.0).abs() < 1e-9);
    assert!(pairs.values[1] < 2.0 - 1e-6);
}

#[test]
fn krylov_and_dense_paths_agree_on_the_rbf_spectrum() {
    let (x, _) = blobs(700, 3, 4, 9);
    let op = embedding::RbfOperator::new(&x, 0.5, &ctx()).unwrap();
    let krylov = eigen::largest(&op, 4, 1e-10, 0, &ctx(), |_, _| {}).unwrap();
    check_residuals(&op, &krylov, 1e-10);
    // The dense oracle: materialise M and take its top eigenvalues.
    let mut m = Mat::<f64>::zeros(700, 700);
    op.apply(Mat::<f64>::identity(700, 700).as_ref(), m.as_mut());
    let (all, _) = eigen::symmetric_eigen(m.as_ref());
    for j in 0..4 {
        assert!((krylov.values[j] - all[699 - j]).abs() < 1e-9);
    }
}

/// One fitted fixture case: its params, our ARI against the ground truth, scikit-learn's,
/// and the ARI between our labels and scikit-learn's.
struct FixtureResult {
    case: String,
    ours: f64,
    theirs: f64,
    agreement: f64,
}

const FIXTURES: [&str; 6] = [
    "spectral_blobs",
    "spectral_circles",
    "spectral_moons",
    "spectral_iris",
    "spectral_blobs_large",
    "spectral_digits",
];

fn labels_of(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn fixture_results() -> Vec<FixtureResult> {
    let mut out = Vec::new();
    for name in FIXTURES {
        let f = crate::reference_fixtures::read(name);
        let x = crate::reference_fixtures::data(&f);
        let truth = labels_of(&f["truth"]);
        for case in f["cases"].as_array().unwrap() {
            let p = spectral_params(case["params"].clone()).unwrap();
            p.check_against_data(x.rows()).unwrap();
            let got = fit(&x, &p, &ctx()).unwrap();
            out.push(FixtureResult {
                case: format!("{name} {}", case["params"]),
                ours: adjusted_rand_index(&got.labels, &truth),
                theirs: case["ari"].as_f64().unwrap(),
                agreement: adjusted_rand_index(&got.labels, &labels_of(&case["labels"])),
            });
        }
    }
    out
}

#[test]
fn ari_against_ground_truth_is_within_0_02_of_scikit_learn_on_every_fixture() {
    let results = fixture_results();
    assert!(results.len() >= 24);
    for r in &results {
        // Higher is no regression; lower by more than 0.02 is.
        assert!(
            r.ours >= r.theirs - 0.02,
            "{}: ARI {:.4} vs scikit-learn {:.4}",
            r.case,
            r.ours,
            r.theirs
        );
    }
}

#[test]
fn labels_agree_with_scikit_learn_as_partitions_on_every_fixture() {
    // Stronger than the ARI-to-truth criterion: the random draws differ (ChaCha8 against
    // NumPy's Mersenne Twister), yet every fixture case lands on scikit-learn's partition
    // up to a point or two (worst seen: 0.998 on digits).
    for r in fixture_results() {
        assert!(
            r.agreement >= 0.98,
            "{}: ARI {:.4} against scikit-learn's labels",
            r.case,
            r.agreement
        );
    }
}

#[test]
fn nearest_neighbors_separates_concentric_rings_with_every_assignment() {
    let n = 1200;
    let mut rng = Lcg(4);
    let mut data = Vec::new();
    let mut truth = Vec::new();
    for i in 0..n {
        let r = if i % 2 == 0 { 1.0 } else { 3.0 };
        let t = rng.uniform() * std::f64::consts::TAU;
        data.push((r * t.cos() + 0.1 * (rng.uniform() - 0.5)) as f32);
        data.push((r * t.sin() + 0.1 * (rng.uniform() - 0.5)) as f32);
        truth.push((i % 2) as i64);
    }
    let x = Matrix::from_vec(n, 2, data).unwrap();
    for assign in ["kmeans", "discretize", "cluster_qr"] {
        let p = spectral_params(serde_json::json!({
            "n_clusters": 2, "affinity": "nearest_neighbors", "assign_labels": assign
        }))
        .unwrap();
        let got = fit(&x, &p, &ctx()).unwrap();
        assert_eq!(got.n_clusters, 2);
        assert_eq!(adjusted_rand_index(&got.labels, &truth), 1.0, "{assign}");
    }
}

#[test]
fn defaults_match_scikit_learn() {
    let p = spectral_params(serde_json::json!({})).unwrap();
    assert_eq!(p.n_clusters, 8);
    assert_eq!(p.n_components, None);
    assert_eq!(p.effective_n_components(), 8);
    assert_eq!(p.affinity, Affinity::Rbf);
    assert_eq!(p.gamma, 1.0);
    assert_eq!(p.n_neighbors, 10);
    assert_eq!(p.assign_labels, AssignLabels::KMeans);
    assert_eq!(p.random_state, None);
    assert_eq!(p.n_init, 10);
    assert_eq!(p.eigen_solver, None);
    assert_eq!(p.eigen_tol, None);
    let r = p.resolved();
    assert_eq!(r["n_components"], 8);
    assert_eq!(r["affinity"], "rbf");
    assert_eq!(r["eigen_solver"], "arpack");
    let q = spectral_params(serde_json::json!({
        "n_clusters": 3, "n_components": 5, "affinity": "nearest_neighbors", "gamma": 0.5,
        "n_neighbors": 7, "assign_labels": "cluster_qr", "random_state": 42, "n_init": 3,
        "eigen_solver": "lobpcg", "eigen_tol": 1e-6, "degree": null, "coef0": null,
        "kernel_params": null
    }))
    .unwrap();
    assert_eq!(q.effective_n_components(), 5);
    assert_eq!(q.random_state, Some(42));
    assert_eq!(q.eigen_solver, Some(EigenSolver::Lobpcg));
    assert_eq!(q.solver_tolerance(), 1e-6);
    assert_eq!(
        spectral_params(serde_json::json!({"eigen_tol": "auto"}))
            .unwrap()
            .eigen_tol,
        None
    );
}

#[test]
fn rejects_bad_params_naming_the_field() {
    let field_of = |json: serde_json::Value| -> String {
        let e: ApiError = spectral_params(json.clone()).expect_err(&json.to_string());
        e.field.clone().unwrap_or_default()
    };
    for (json, field) in [
        (serde_json::json!({"n_clusters": 0}), "n_clusters"),
        (serde_json::json!({"n_components": 0}), "n_components"),
        (serde_json::json!({"affinity": "precomputed"}), "affinity"),
        (
            serde_json::json!({"affinity": "precomputed_nearest_neighbors"}),
            "affinity",
        ),
        (serde_json::json!({"affinity": "poly"}), "affinity"),
        (serde_json::json!({"affinity": "euclid"}), "affinity"),
        (serde_json::json!({"gamma": -1.0}), "gamma"),
        (serde_json::json!({"n_neighbors": 0}), "n_neighbors"),
        (
            serde_json::json!({"assign_labels": "agglomerative"}),
            "assign_labels",
        ),
        (serde_json::json!({"random_state": -1}), "random_state"),
        (serde_json::json!({"n_init": 0}), "n_init"),
        (serde_json::json!({"eigen_solver": "amg"}), "eigen_solver"),
        (
            serde_json::json!({"eigen_solver": "lapack"}),
            "eigen_solver",
        ),
        (serde_json::json!({"eigen_tol": -0.1}), "eigen_tol"),
        (serde_json::json!({"eigen_tol": "tight"}), "eigen_tol"),
        (serde_json::json!({"eigen_tol": true}), "eigen_tol"),
        (serde_json::json!({"degree": 3}), "degree"),
        (serde_json::json!({"coef0": 1}), "coef0"),
        (
            serde_json::json!({"kernel_params": {"a": 1}}),
            "kernel_params",
        ),
        (serde_json::json!({"linkage": "ward"}), "linkage"),
    ] {
        assert_eq!(field_of(json.clone()), field, "{json}");
    }
}

#[test]
fn check_against_data_mirrors_scikit_learn_errors() {
    let p = spectral_params(serde_json::json!({"n_clusters": 5})).unwrap();
    assert!(p.check_against_data(100).is_ok());
    assert_eq!(
        p.check_against_data(4).unwrap_err().field.as_deref(),
        Some("n_clusters")
    );
    assert!(p.check_against_data(1).is_err());
    let c = spectral_params(serde_json::json!({"n_clusters": 2, "n_components": 10})).unwrap();
    assert_eq!(
        c.check_against_data(10).unwrap_err().field.as_deref(),
        Some("n_components")
    );
    let nn = spectral_params(serde_json::json!({
        "n_clusters": 2, "affinity": "nearest_neighbors", "n_neighbors": 30
    }))
    .unwrap();
    assert_eq!(
        nn.check_against_data(20).unwrap_err().field.as_deref(),
        Some("n_neighbors")
    );
    assert!(nn.check_against_data(30).is_ok());
}

#[test]
fn max_documents_bounds_rbf_only() {
    let rbf = spectral_params(serde_json::json!({})).unwrap();
    let (bound, why) = rbf.max_documents().unwrap();
    assert_eq!(bound, RBF_MAX_DOCUMENTS);
    assert!(why.contains("rbf"), "{why}");
    let nn = spectral_params(serde_json::json!({"affinity": "nearest_neighbors"})).unwrap();
    assert_eq!(nn.max_documents(), None);
}

#[test]
fn same_seed_same_labels_and_thread_count_does_not_change_them() {
    let (x, _) = blobs(3000, 5, 5, 21);
    for params in [
        serde_json::json!({"n_clusters": 5, "affinity": "nearest_neighbors"}),
        serde_json::json!({"n_clusters": 5, "affinity": "nearest_neighbors",
                           "assign_labels": "discretize"}),
        serde_json::json!({"n_clusters": 5, "gamma": 0.1, "assign_labels": "cluster_qr"}),
    ] {
        let p = spectral_params(params.clone()).unwrap();
        let run = |threads: usize| on_threads(threads, || fit(&x, &p, &ctx()).unwrap());
        let one = run(1);
        assert_eq!(one.n_clusters, 5, "{params}");
        assert_eq!(one, run(2), "{params}");
        assert_eq!(one, run(2), "{params}");
    }
}

#[test]
fn pre_cancelled_context_returns_cancelled() {
    let c = cancelled_context();
    let (x, _) = blobs(200, 3, 3, 1);
    for affinity in ["rbf", "nearest_neighbors"] {
        let p =
            spectral_params(serde_json::json!({"n_clusters": 3, "affinity": affinity})).unwrap();
        assert_eq!(fit(&x, &p, &c), Err(Cancelled));
    }
}

#[test]
fn cancelling_from_the_eigensolver_progress_stops_the_run() {
    let (x, _) = blobs(4000, 6, 6, 5);
    let p = spectral_params(serde_json::json!({
        "n_clusters": 6, "affinity": "nearest_neighbors", "eigen_tol": 0.0
    }))
    .unwrap();
    let (result, events) = fit_cancelled_at(
        |ev| ev.stage == "spectral:eigen" && ev.iteration.is_some(),
        |c| fit(&x, &p, c),
    );
    assert_eq!(result, Err(Cancelled));
    assert!(events.iter().any(|e| e.stage == "spectral:affinity"));
    assert!(!events.iter().any(|e| e.stage == "spectral:assign"));
}

#[test]
fn progress_reports_every_stage_with_solver_iterations() {
    let (x, _) = blobs(1000, 3, 3, 8);
    let p = spectral_params(serde_json::json!({"n_clusters": 3, "affinity": "nearest_neighbors"}))
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c = RunContext::new(0, DeviceKind::Cpu).with_progress(tx);
    fit(&x, &p, &c).unwrap();
    drop(c);
    let mut events = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    for stage in ["spectral:affinity", "spectral:eigen", "spectral:assign"] {
        assert!(events.iter().any(|e| e.stage == stage), "{stage}");
    }
    assert!(
        events
            .iter()
            .any(|e| e.stage == "spectral:eigen" && e.iteration == Some(1))
    );
}

#[test]
fn discretize_may_use_every_component_as_scikit_learn_does() {
    // n_components > n_clusters: discretize labels rows by component, so more clusters
    // than asked for can come back (scikit-learn's behaviour, kept).
    let (x, _) = blobs(600, 4, 4, 13);
    let p = spectral_params(serde_json::json!({
        "n_clusters": 2, "n_components": 4, "affinity": "nearest_neighbors",
        "assign_labels": "discretize"
    }))
    .unwrap();
    let got = fit(&x, &p, &ctx()).unwrap();
    assert!(
        got.n_clusters > 2 && got.n_clusters <= 4,
        "{}",
        got.n_clusters
    );
    assert!(
        got.labels
            .iter()
            .all(|&l| (0..got.n_clusters as i64).contains(&l))
    );
}
