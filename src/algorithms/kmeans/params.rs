//! Validation of k-means `algorithm_params`, with scikit-learn 1.9.1 `KMeans` names,
//! defaults and ranges.

use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, ParamMap, ParamValue};

/// How the first centres of each run are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMeansInit {
    /// Greedy k-means++ (scikit-learn's default).
    KMeansPlusPlus,
    /// `n_clusters` distinct rows drawn uniformly.
    Random,
}

/// Checked k-means parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansParams {
    pub n_clusters: usize,
    pub init: KMeansInit,
    /// Number of independent runs; the one with the lowest inertia wins.
    pub n_init: usize,
    pub max_iter: usize,
    /// Relative tolerance: scaled by the mean per-feature variance of the data before it is
    /// compared with the sum of squared centre shifts.
    pub tol: f64,
    pub random_state: Option<u64>,
}

const ALGORITHM: &str = "kmeans";
/// scikit-learn validates `random_state` through NumPy's legacy seeding, which takes
/// 32-bit seeds.
const MAX_RANDOM_STATE: i64 = u32::MAX as i64;

impl KMeansParams {
    /// Validate scikit-learn 1.9.1 `KMeans` parameters:
    ///
    /// - `n_clusters`: integer ≥ 1, default 8 (integral JSON floats such as `5.0` count as
    ///   integers, since JSON cannot tell them apart);
    /// - `init`: `"k-means++"` (default) or `"random"`; explicit initial centres and
    ///   callables are not supported;
    /// - `n_init`: `"auto"` (default: 1 run for k-means++, 10 for random) or integer ≥ 1;
    /// - `max_iter`: integer ≥ 1, default 300;
    /// - `tol`: number ≥ 0, default 1e-4;
    /// - `random_state`: integer in `[0, 2^32 − 1]` or null;
    /// - `algorithm`: `"lloyd"` (default) or `"elkan"`. Both run our blocked Lloyd
    ///   iteration: Elkan's algorithm is an exact acceleration of Lloyd's (it skips distance
    ///   computations that the triangle inequality proves useless), so from the same
    ///   initial centres it reaches the same fixed point; only the speed differs.
    ///
    /// Any other parameter is an error. Wrong types are `invalid_request`; values out of
    /// range are `invalid_parameter`. Fields are named relative to `algorithm_params`.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let mut r = params.reader();
        let n_clusters = to_usize("n_clusters", r.integer_in("n_clusters", 1, i64::MAX)?)?;
        let init = read_init(&mut r)?;
        let n_init = read_n_init(&mut r, init)?;
        let max_iter = to_usize("max_iter", r.integer_in("max_iter", 1, i64::MAX)?)?;
        let tol = match r.number("tol")? {
            None => 1e-4,
            Some(t) if t >= 0.0 => t,
            Some(t) => {
                return Err(ApiError::invalid_parameter(
                    "tol",
                    format!("must be at least 0, got {t}"),
                ));
            }
        };
        let random_state = r
            .integer_in("random_state", 0, MAX_RANDOM_STATE)?
            .map(|v| v as u64);
        // Accepted for compatibility; see the doc comment for why both run Lloyd.
        r.choice("algorithm", &["lloyd", "elkan"])?;
        r.finish(ALGORITHM)?;
        Ok(KMeansParams {
            n_clusters: n_clusters.unwrap_or(8),
            init,
            n_init,
            max_iter: max_iter.unwrap_or(300),
            tol,
            random_state,
        })
    }

    /// There must be at least as many documents as clusters (scikit-learn raises the same
    /// error before fitting).
    pub fn check_against_data(&self, n_documents: usize) -> ApiResult<()> {
        if self.n_clusters > n_documents {
            return Err(ApiError::invalid_parameter(
                "n_clusters",
                format!(
                    "n_clusters ({}) must not exceed the number of documents ({n_documents})",
                    self.n_clusters
                ),
            ));
        }
        Ok(())
    }

    /// The parameters as run, every default resolved, for the run record. `algorithm` is
    /// what ran (our Lloyd iteration), whichever of lloyd/elkan was asked for.
    pub fn resolved(&self) -> serde_json::Value {
        serde_json::json!({
            "n_clusters": self.n_clusters,
            "init": match self.init {
                KMeansInit::KMeansPlusPlus => "k-means++",
                KMeansInit::Random => "random",
            },
            "n_init": self.n_init,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "random_state": self.random_state,
            "algorithm": "lloyd",
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

fn read_init(r: &mut ParamReader<'_>) -> ApiResult<KMeansInit> {
    if let Some(ParamValue::List(_)) = r.raw("init") {
        return Err(ApiError::invalid_parameter(
            "init",
            "explicit initial centres are not supported; use \"k-means++\" or \"random\"",
        ));
    }
    Ok(match r.choice("init", &["k-means++", "random"])? {
        Some("random") => KMeansInit::Random,
        _ => KMeansInit::KMeansPlusPlus,
    })
}

fn read_n_init(r: &mut ParamReader<'_>, init: KMeansInit) -> ApiResult<usize> {
    let auto = match init {
        KMeansInit::KMeansPlusPlus => 1,
        KMeansInit::Random => 10,
    };
    match r.raw("n_init") {
        None => Ok(auto),
        Some(ParamValue::String(_)) => {
            r.choice("n_init", &["auto"])?;
            Ok(auto)
        }
        Some(ParamValue::Number(_)) => {
            Ok(to_usize("n_init", r.integer_in("n_init", 1, i64::MAX)?)?.unwrap_or(auto))
        }
        Some(_) => Err(ApiError::invalid_request(
            "n_init",
            "must be \"auto\" or an integer",
        )),
    }
}
