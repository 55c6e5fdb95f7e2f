//! Validation of mean-shift `algorithm_params`, with scikit-learn 1.9.1 `MeanShift` names,
//! defaults and ranges.

use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, ParamMap};

/// Checked mean-shift parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanShiftParams {
    /// Radius of the flat kernel; `None`: estimated from the data as scikit-learn's
    /// `estimate_bandwidth(X)` (quantile 0.3, every row).
    pub bandwidth: Option<f64>,
    /// Seed from the occupied cells of a grid of side `bandwidth` instead of every row.
    pub bin_seeding: bool,
    /// Rows a grid cell needs to become a seed (with `bin_seeding`).
    pub min_bin_freq: usize,
    /// Give rows farther than `bandwidth` from every centre their nearest centre anyway
    /// (`true`) or the noise label −1 (`false`).
    pub cluster_all: bool,
    /// Iterations each seed may take after its first mean.
    pub max_iter: usize,
    /// As given (`None`: null). Never changes results: see [`MeanShiftParams::from_params`].
    pub n_jobs: Option<i64>,
}

const ALGORITHM: &str = "mean_shift";

impl MeanShiftParams {
    /// Validate scikit-learn 1.9.1 `MeanShift` parameters:
    ///
    /// - `bandwidth`: number > 0, or null (default) to estimate it as scikit-learn does;
    /// - `seeds`: only null (seeds are every row, or the grid cells with `bin_seeding`);
    ///   explicit seed coordinates are not part of the request format;
    /// - `bin_seeding`: boolean, default false;
    /// - `min_bin_freq`: integer ≥ 1, default 1;
    /// - `cluster_all`: boolean, default true;
    /// - `max_iter`: integer ≥ 0, default 300 (scikit-learn allows 0: one mean per seed);
    /// - `n_jobs`: integer other than 0, or null. Accepted for compatibility; it sizes
    ///   scikit-learn's worker pool, never the answer. clusterd always runs on the server's
    ///   thread pool and gives the same labels for any number of threads. 0 is rejected as
    ///   scikit-learn's joblib rejects it.
    ///
    /// Any other parameter is an error.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let mut r = params.reader();
        let bandwidth = match r.number("bandwidth")? {
            None => None,
            Some(b) if b > 0.0 => Some(b),
            Some(b) => {
                return Err(ApiError::invalid_parameter(
                    "bandwidth",
                    format!("must be a number greater than 0 or null, got {b}"),
                ));
            }
        };
        read_seeds(&mut r)?;
        let bin_seeding = r.boolean("bin_seeding")?.unwrap_or(false);
        let min_bin_freq =
            to_usize("min_bin_freq", r.integer_in("min_bin_freq", 1, i64::MAX)?)?.unwrap_or(1);
        let cluster_all = r.boolean("cluster_all")?.unwrap_or(true);
        let max_iter = to_usize("max_iter", r.integer_in("max_iter", 0, i64::MAX)?)?.unwrap_or(300);
        let n_jobs = r.integer("n_jobs")?;
        if n_jobs == Some(0) {
            return Err(ApiError::invalid_parameter(
                "n_jobs",
                "n_jobs == 0 has no meaning; pass null, a positive count or a negative one",
            ));
        }
        r.finish(ALGORITHM)?;
        Ok(MeanShiftParams {
            bandwidth,
            bin_seeding,
            min_bin_freq,
            cluster_all,
            max_iter,
            n_jobs,
        })
    }

    /// scikit-learn's errors that depend on the data: `MeanShift` needs one sample.
    pub fn check_against_data(&self, n_documents: usize) -> ApiResult<()> {
        if n_documents < 1 {
            return Err(ApiError::invalid_parameter(
                "bandwidth",
                "found 0 documents while a minimum of 1 is required by MeanShift",
            ));
        }
        Ok(())
    }

    /// Mean shift keeps no N×N structure: memory is O(N·d) plus fixed-size tiles.
    pub fn max_documents(&self) -> Option<(usize, String)> {
        None
    }

    /// The parameters as run, every default resolved, for the run record. A null
    /// `bandwidth` stays null here; the estimate is reported with the fit.
    pub fn resolved(&self) -> serde_json::Value {
        serde_json::json!({
            "bandwidth": self.bandwidth,
            "seeds": serde_json::Value::Null,
            "bin_seeding": self.bin_seeding,
            "min_bin_freq": self.min_bin_freq,
            "cluster_all": self.cluster_all,
            "max_iter": self.max_iter,
            "n_jobs": self.n_jobs,
        })
    }
}

fn read_seeds(r: &mut ParamReader<'_>) -> ApiResult<()> {
    if r.raw("seeds").is_some() {
        return Err(ApiError::invalid_parameter(
            "seeds",
            "explicit seeds are not supported; pass null (every document is a seed) or set \
             bin_seeding=true to seed from a grid",
        ));
    }
    Ok(())
}

fn to_usize(field: &str, v: Option<i64>) -> ApiResult<Option<usize>> {
    v.map(|v| {
        usize::try_from(v)
            .map_err(|_| ApiError::invalid_parameter(field, format!("{v} is too large")))
    })
    .transpose()
}
