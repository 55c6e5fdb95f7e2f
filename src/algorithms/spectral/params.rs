//! Validation of spectral-clustering `algorithm_params`, with scikit-learn 1.9.1
//! `SpectralClustering` names, defaults and ranges.

use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, ParamMap, ParamValue};

/// How the affinity (similarity) graph is built from the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    /// Dense `exp(-gamma ‖x − y‖²)` between every pair of rows (scikit-learn's default).
    Rbf,
    /// The symmetrised k-nearest-neighbour connectivity graph, sparse.
    NearestNeighbors,
}

impl Affinity {
    pub fn as_str(self) -> &'static str {
        match self {
            Affinity::Rbf => "rbf",
            Affinity::NearestNeighbors => "nearest_neighbors",
        }
    }
}

/// How labels are read off the spectral embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignLabels {
    KMeans,
    Discretize,
    ClusterQr,
}

impl AssignLabels {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignLabels::KMeans => "kmeans",
            AssignLabels::Discretize => "discretize",
            AssignLabels::ClusterQr => "cluster_qr",
        }
    }
}

/// The `eigen_solver` asked for. Every choice runs our own block Krylov eigensolver
/// ([`super::eigen`]); scikit-learn's ARPACK and LOBPCG find the same eigenvectors to
/// within their tolerance, so the choice is recorded but does not change results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EigenSolver {
    Arpack,
    Lobpcg,
}

/// Largest N for `affinity="rbf"`: the dense affinity matrix is kept as N² f64, which at
/// 6 000 documents is 288 MB (plus the O(N·k) solver basis). Larger inputs need
/// `nearest_neighbors` (sparse, unbounded) or a `sample_size`.
pub const RBF_MAX_DOCUMENTS: usize = 6_000;

/// Checked spectral-clustering parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralParams {
    pub n_clusters: usize,
    /// `None`: `n_clusters`, as scikit-learn.
    pub n_components: Option<usize>,
    pub affinity: Affinity,
    pub gamma: f64,
    pub n_neighbors: usize,
    pub assign_labels: AssignLabels,
    /// The seed the run records; the engine puts `random_state.unwrap_or(0)` into
    /// `RunContext::seed`, which is what the fit draws from.
    pub random_state: Option<u64>,
    pub n_init: usize,
    /// `None`: scikit-learn's default (ARPACK).
    pub eigen_solver: Option<EigenSolver>,
    /// `None`: `"auto"`.
    pub eigen_tol: Option<f64>,
}

const ALGORITHM: &str = "spectral";
/// scikit-learn seeds NumPy's legacy generator, which takes 32-bit seeds.
const MAX_RANDOM_STATE: i64 = u32::MAX as i64;
/// The kernels scikit-learn's `pairwise_kernels` offers besides rbf: named so that the
/// error says they exist but are not built here.
const OTHER_KERNELS: &[&str] = &[
    "additive_chi2",
    "chi2",
    "linear",
    "poly",
    "polynomial",
    "laplacian",
    "sigmoid",
    "cosine",
];

impl SpectralParams {
    /// Validate scikit-learn 1.9.1 `SpectralClustering` parameters:
    ///
    /// - `n_clusters`: integer ≥ 1, default 8;
    /// - `n_components`: integer ≥ 1 or null (default: `n_clusters`);
    /// - `affinity`: `"rbf"` (default) or `"nearest_neighbors"`; the precomputed modes need
    ///   a matrix instead of vectors and the other kernels are not built, so both are
    ///   rejected;
    /// - `gamma`: number ≥ 0, default 1.0 (rbf only, as in scikit-learn);
    /// - `n_neighbors`: integer ≥ 1, default 10 (nearest_neighbors only);
    /// - `assign_labels`: `"kmeans"` (default), `"discretize"` or `"cluster_qr"`;
    /// - `random_state`: integer in `[0, 2^32 − 1]` or null (the run then uses seed 0);
    /// - `n_init`: integer ≥ 1, default 10 (k-means restarts);
    /// - `eigen_solver`: null, `"arpack"` or `"lobpcg"`: accepted, but every choice runs
    ///   our own block Krylov solver, which converges to the same eigenvectors; `"amg"`
    ///   (needs pyamg) is rejected;
    /// - `eigen_tol`: `"auto"` (default) or number ≥ 0: the solver stops when every wanted
    ///   Ritz pair has residual ‖Mv − θv‖ ≤ `eigen_tol` (with `M` the shifted normalised
    ///   affinity, norm ≤ 2). `"auto"` is 1e-9; 0 (ARPACK: machine precision) is taken as
    ///   the smallest residual the solver can certify, 1e-13;
    /// - `degree`, `coef0`, `kernel_params`: only null (they concern kernels not built).
    ///
    /// Any other parameter is an error.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let mut r = params.reader();
        let n_clusters = to_usize("n_clusters", r.integer_in("n_clusters", 1, i64::MAX)?)?;
        let n_components = to_usize("n_components", r.integer_in("n_components", 1, i64::MAX)?)?;
        let affinity = read_affinity(&mut r)?;
        let gamma = match r.number("gamma")? {
            None => 1.0,
            Some(g) if g >= 0.0 => g,
            Some(g) => {
                return Err(ApiError::invalid_parameter(
                    "gamma",
                    format!("must be at least 0, got {g}"),
                ));
            }
        };
        let n_neighbors =
            to_usize("n_neighbors", r.integer_in("n_neighbors", 1, i64::MAX)?)?.unwrap_or(10);
        let assign_labels =
            match r.choice("assign_labels", &["kmeans", "discretize", "cluster_qr"])? {
                Some("discretize") => AssignLabels::Discretize,
                Some("cluster_qr") => AssignLabels::ClusterQr,
                _ => AssignLabels::KMeans,
            };
        let random_state = r
            .integer_in("random_state", 0, MAX_RANDOM_STATE)?
            .map(|v| v as u64);
        let n_init = to_usize("n_init", r.integer_in("n_init", 1, i64::MAX)?)?.unwrap_or(10);
        let eigen_solver = read_eigen_solver(&mut r)?;
        let eigen_tol = read_eigen_tol(&mut r)?;
        for field in ["degree", "coef0", "kernel_params"] {
            if r.raw(field).is_some() {
                return Err(ApiError::invalid_parameter(
                    field,
                    "only concerns kernels other than rbf, which are not supported; omit it \
                     or pass null",
                ));
            }
        }
        r.finish(ALGORITHM)?;
        Ok(SpectralParams {
            n_clusters: n_clusters.unwrap_or(8),
            n_components,
            affinity,
            gamma,
            n_neighbors,
            assign_labels,
            random_state,
            n_init,
            eigen_solver,
            eigen_tol,
        })
    }

    /// The dimension of the spectral embedding.
    pub fn effective_n_components(&self) -> usize {
        self.n_components.unwrap_or(self.n_clusters)
    }

    /// The residual the eigensolver must reach (see `eigen_tol` in [`Self::from_params`]).
    pub fn solver_tolerance(&self) -> f64 {
        match self.eigen_tol {
            None => 1e-9,
            Some(t) => t.max(1e-13),
        }
    }

    /// scikit-learn's errors that depend on the data: it needs two samples; k-means cannot
    /// make more clusters than samples, the eigensolver cannot find more eigenvectors than
    /// there are rows, and a nearest-neighbour query cannot ask for more neighbours than
    /// samples.
    pub fn check_against_data(&self, n_documents: usize) -> ApiResult<()> {
        if n_documents < 2 {
            return Err(ApiError::invalid_parameter(
                "n_clusters",
                format!(
                    "found array with {n_documents} sample(s) while a minimum of 2 is required \
                     by SpectralClustering"
                ),
            ));
        }
        if self.n_clusters > n_documents {
            return Err(ApiError::invalid_parameter(
                "n_clusters",
                format!(
                    "n_samples={n_documents} should be >= n_clusters={}",
                    self.n_clusters
                ),
            ));
        }
        let k = self.effective_n_components();
        if k >= n_documents {
            let field = if self.n_components.is_some() {
                "n_components"
            } else {
                "n_clusters"
            };
            return Err(ApiError::invalid_parameter(
                field,
                format!("n_components={k} must be less than the number of samples ({n_documents})"),
            ));
        }
        if self.affinity == Affinity::NearestNeighbors && self.n_neighbors > n_documents {
            return Err(ApiError::invalid_parameter(
                "n_neighbors",
                format!(
                    "Expected n_neighbors <= n_samples_fit, but n_neighbors = {}, \
                     n_samples_fit = {n_documents}",
                    self.n_neighbors
                ),
            ));
        }
        Ok(())
    }

    /// `Some((bound, why))` for rbf, which keeps the dense N×N affinity; `None` for
    /// nearest_neighbors (sparse, O(N·n_neighbors)).
    pub fn max_documents(&self) -> Option<(usize, String)> {
        match self.affinity {
            Affinity::Rbf => Some((
                RBF_MAX_DOCUMENTS,
                format!(
                    "affinity=rbf keeps the dense N×N affinity matrix in f64 ({} MB at {} \
                     documents); use affinity=nearest_neighbors for more",
                    RBF_MAX_DOCUMENTS * RBF_MAX_DOCUMENTS * 8 / 1_000_000,
                    RBF_MAX_DOCUMENTS
                ),
            )),
            Affinity::NearestNeighbors => None,
        }
    }

    /// The parameters as run, every default resolved, for the run record.
    pub fn resolved(&self) -> serde_json::Value {
        serde_json::json!({
            "n_clusters": self.n_clusters,
            "n_components": self.effective_n_components(),
            "affinity": self.affinity.as_str(),
            "gamma": self.gamma,
            "n_neighbors": self.n_neighbors,
            "assign_labels": self.assign_labels.as_str(),
            "random_state": self.random_state,
            "n_init": self.n_init,
            "eigen_solver": match self.eigen_solver {
                None | Some(EigenSolver::Arpack) => "arpack",
                Some(EigenSolver::Lobpcg) => "lobpcg",
            },
            "eigen_tol": self.solver_tolerance(),
            "degree": serde_json::Value::Null,
            "coef0": serde_json::Value::Null,
            "kernel_params": serde_json::Value::Null,
        })
    }
}

fn to_usize(field: &str, v: Option<i64>) -> ApiResult<Option<usize>> {
    v.map(|v| {
        usize::try_from(v)
            .map_err(|_| ApiError::invalid_parameter(field, format!("{v} is too large")))
    })
    .transpose()
}

fn read_affinity(r: &mut ParamReader<'_>) -> ApiResult<Affinity> {
    match r.string("affinity")? {
        None | Some("rbf") => Ok(Affinity::Rbf),
        Some("nearest_neighbors") => Ok(Affinity::NearestNeighbors),
        Some(p @ ("precomputed" | "precomputed_nearest_neighbors")) => {
            Err(ApiError::invalid_parameter(
                "affinity",
                format!(
                    "{p:?} needs a precomputed affinity or distance matrix, but clustering \
                     runs on document vectors; use \"rbf\" or \"nearest_neighbors\""
                ),
            ))
        }
        Some(k) if OTHER_KERNELS.contains(&k) => Err(ApiError::invalid_parameter(
            "affinity",
            format!("the {k:?} kernel is not supported; use \"rbf\" or \"nearest_neighbors\""),
        )),
        Some(other) => Err(ApiError::invalid_parameter(
            "affinity",
            format!("must be one of rbf, nearest_neighbors, got {other:?}"),
        )),
    }
}

fn read_eigen_solver(r: &mut ParamReader<'_>) -> ApiResult<Option<EigenSolver>> {
    match r.string("eigen_solver")? {
        None => Ok(None),
        Some("arpack") => Ok(Some(EigenSolver::Arpack)),
        Some("lobpcg") => Ok(Some(EigenSolver::Lobpcg)),
        Some("amg") => Err(ApiError::invalid_parameter(
            "eigen_solver",
            "\"amg\" (pyamg's multigrid preconditioner) is not supported; use null, \
             \"arpack\" or \"lobpcg\"",
        )),
        Some(other) => Err(ApiError::invalid_parameter(
            "eigen_solver",
            format!("must be one of arpack, lobpcg, amg or null, got {other:?}"),
        )),
    }
}

fn read_eigen_tol(r: &mut ParamReader<'_>) -> ApiResult<Option<f64>> {
    match r.raw("eigen_tol") {
        None => Ok(None),
        Some(ParamValue::String(_)) => {
            r.choice("eigen_tol", &["auto"])?;
            Ok(None)
        }
        Some(ParamValue::Number(_)) => match r.number("eigen_tol")? {
            Some(t) if t < 0.0 => Err(ApiError::invalid_parameter(
                "eigen_tol",
                format!("must be at least 0, got {t}"),
            )),
            t => Ok(t),
        },
        Some(_) => Err(ApiError::invalid_request(
            "eigen_tol",
            "must be \"auto\" or a number",
        )),
    }
}
