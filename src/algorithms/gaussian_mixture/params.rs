//! Validation of Gaussian-mixture `algorithm_params`, with scikit-learn 1.9.1
//! `GaussianMixture` names, defaults and ranges.

use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, ParamMap, ParamValue};

/// The shape of every component's covariance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CovarianceType {
    /// Each component has its own general covariance matrix.
    Full,
    /// All components share one general covariance matrix.
    Tied,
    /// Each component has its own diagonal covariance matrix.
    Diag,
    /// Each component has its own single variance.
    Spherical,
}

impl CovarianceType {
    pub fn as_str(self) -> &'static str {
        match self {
            CovarianceType::Full => "full",
            CovarianceType::Tied => "tied",
            CovarianceType::Diag => "diag",
            CovarianceType::Spherical => "spherical",
        }
    }
}

/// How the responsibilities of each initialisation are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixtureInit {
    /// One-hot responsibilities from the labels of a k-means fit (scikit-learn's default).
    KMeans,
    /// One-hot responsibilities of the rows that greedy k-means++ picks as centres.
    KMeansPlusPlus,
    /// Uniform random responsibilities, each row normalised.
    Random,
    /// One-hot responsibilities of `n_components` distinct rows drawn uniformly.
    RandomFromData,
}

impl MixtureInit {
    pub fn as_str(self) -> &'static str {
        match self {
            MixtureInit::KMeans => "kmeans",
            MixtureInit::KMeansPlusPlus => "k-means++",
            MixtureInit::Random => "random",
            MixtureInit::RandomFromData => "random_from_data",
        }
    }
}

/// Checked Gaussian-mixture parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixtureParams {
    pub n_components: usize,
    pub covariance_type: CovarianceType,
    /// Convergence threshold on the change of the lower bound (the mean log-likelihood).
    pub tol: f64,
    /// Added to the diagonal of every covariance, keeping it positive definite.
    pub reg_covar: f64,
    /// EM iterations per initialisation; 0 keeps the initial parameters.
    pub max_iter: usize,
    /// Initialisations; the one with the highest lower bound wins.
    pub n_init: usize,
    pub init_params: MixtureInit,
    /// As given; the engine seeds the run with it, or with 0 when it is null.
    pub random_state: Option<u64>,
    /// Accepted for compatibility; see [`GaussianMixtureParams::from_params`].
    pub verbose: u64,
    pub verbose_interval: usize,
}

const ALGORITHM: &str = "gaussian_mixture";
/// scikit-learn validates `random_state` through NumPy's legacy seeding, which takes
/// 32-bit seeds.
const MAX_RANDOM_STATE: i64 = u32::MAX as i64;

impl GaussianMixtureParams {
    /// Validate scikit-learn 1.9.1 `GaussianMixture` parameters:
    ///
    /// - `n_components`: integer ≥ 1, default 1;
    /// - `covariance_type`: `"full"` (default), `"tied"`, `"diag"` or `"spherical"`;
    /// - `tol`: number ≥ 0, default 1e-3;
    /// - `reg_covar`: number ≥ 0, default 1e-6;
    /// - `max_iter`: integer ≥ 0, default 100 (0: the initial parameters are kept, as in
    ///   scikit-learn, and the lower bound is −∞);
    /// - `n_init`: integer ≥ 1, default 1;
    /// - `init_params`: `"kmeans"` (default), `"k-means++"`, `"random"` or
    ///   `"random_from_data"`;
    /// - `random_state`: integer in `[0, 2^32 − 1]` or null; null seeds the run with 0, so
    ///   that a request is reproducible (scikit-learn would draw a fresh seed);
    /// - `warm_start`: only `false` (or null): a request is one fit, there is no previous
    ///   fit to continue;
    /// - `weights_init`, `means_init`, `precisions_init`: only null; explicit initial
    ///   parameters are not supported;
    /// - `verbose` (integer ≥ 0 or boolean, default 0) and `verbose_interval` (integer ≥ 1,
    ///   default 10): accepted for compatibility. They only make scikit-learn print to its
    ///   console and never change results; here the progress stream reports every EM
    ///   iteration whatever their value.
    ///
    /// Any other parameter is an error. Wrong types are `invalid_request`; values out of
    /// range are `invalid_parameter`. Fields are named relative to `algorithm_params`.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let mut r = params.reader();
        let n_components =
            to_usize("n_components", r.integer_in("n_components", 1, i64::MAX)?)?.unwrap_or(1);
        let covariance_type =
            match r.choice("covariance_type", &["full", "tied", "diag", "spherical"])? {
                Some("tied") => CovarianceType::Tied,
                Some("diag") => CovarianceType::Diag,
                Some("spherical") => CovarianceType::Spherical,
                _ => CovarianceType::Full,
            };
        let tol = non_negative(&mut r, "tol", 1e-3)?;
        let reg_covar = non_negative(&mut r, "reg_covar", 1e-6)?;
        let max_iter = to_usize("max_iter", r.integer_in("max_iter", 0, i64::MAX)?)?.unwrap_or(100);
        let n_init = to_usize("n_init", r.integer_in("n_init", 1, i64::MAX)?)?.unwrap_or(1);
        let init_params = match r.choice(
            "init_params",
            &["kmeans", "k-means++", "random", "random_from_data"],
        )? {
            Some("k-means++") => MixtureInit::KMeansPlusPlus,
            Some("random") => MixtureInit::Random,
            Some("random_from_data") => MixtureInit::RandomFromData,
            _ => MixtureInit::KMeans,
        };
        let random_state = r
            .integer_in("random_state", 0, MAX_RANDOM_STATE)?
            .map(|v| v as u64);
        if r.boolean("warm_start")? == Some(true) {
            return Err(ApiError::invalid_parameter(
                "warm_start",
                "only false is supported: each request is one independent fit",
            ));
        }
        for name in ["weights_init", "means_init", "precisions_init"] {
            if r.raw(name).is_some() {
                return Err(ApiError::invalid_parameter(
                    name,
                    "explicit initial parameters are not supported; omit it or pass null \
                     and choose init_params",
                ));
            }
        }
        let verbose = read_verbose(&mut r)?;
        let verbose_interval = to_usize(
            "verbose_interval",
            r.integer_in("verbose_interval", 1, i64::MAX)?,
        )?
        .unwrap_or(10);
        r.finish(ALGORITHM)?;
        Ok(GaussianMixtureParams {
            n_components,
            covariance_type,
            tol,
            reg_covar,
            max_iter,
            n_init,
            init_params,
            random_state,
            verbose,
            verbose_interval,
        })
    }

    /// scikit-learn's errors that depend on the data: at least two samples, and at least
    /// as many as components.
    pub fn check_against_data(&self, n_documents: usize) -> ApiResult<()> {
        if n_documents < 2 {
            return Err(ApiError::invalid_parameter(
                "n_components",
                format!(
                    "Found array with {n_documents} sample(s) while a minimum of 2 is required \
                     by GaussianMixture"
                ),
            ));
        }
        if self.n_components > n_documents {
            return Err(ApiError::invalid_parameter(
                "n_components",
                format!(
                    "Expected n_samples >= n_components but got n_components = {}, \
                     n_samples = {n_documents}",
                    self.n_components
                ),
            ));
        }
        Ok(())
    }

    /// The parameters as run, every default resolved, for the run record (`random_state`
    /// null shows as the 0 the run was seeded with).
    pub fn resolved(&self) -> serde_json::Value {
        serde_json::json!({
            "n_components": self.n_components,
            "covariance_type": self.covariance_type.as_str(),
            "tol": self.tol,
            "reg_covar": self.reg_covar,
            "max_iter": self.max_iter,
            "n_init": self.n_init,
            "init_params": self.init_params.as_str(),
            "random_state": self.random_state.unwrap_or(0),
            "warm_start": false,
            "weights_init": serde_json::Value::Null,
            "means_init": serde_json::Value::Null,
            "precisions_init": serde_json::Value::Null,
            "verbose": self.verbose,
            "verbose_interval": self.verbose_interval,
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

fn non_negative<'a>(r: &mut ParamReader<'a>, name: &'a str, default: f64) -> ApiResult<f64> {
    match r.number(name)? {
        None => Ok(default),
        Some(v) if v >= 0.0 => Ok(v),
        Some(v) => Err(ApiError::invalid_parameter(
            name,
            format!("must be at least 0, got {v}"),
        )),
    }
}

/// scikit-learn's `verbose` constraint takes an integer or a boolean.
fn read_verbose(r: &mut ParamReader<'_>) -> ApiResult<u64> {
    match r.raw("verbose") {
        None => Ok(0),
        Some(ParamValue::Bool(b)) => Ok(u64::from(*b)),
        Some(_) => Ok(r
            .integer_in("verbose", 0, i64::MAX)?
            .map_or(0, |v| v as u64)),
    }
}
