//! Validation of DBSCAN `algorithm_params`, with scikit-learn 1.9.1 `DBSCAN` names,
//! defaults and ranges.

use crate::algorithms::neighbors::{Metric, read_metric};
use crate::model::{ApiError, ApiResult, ParamMap};

/// Checked DBSCAN parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct DbscanParams {
    /// Neighbourhood radius: rows at distance ≤ eps are neighbours.
    pub eps: f64,
    /// Neighbours (the row itself included) that make a row a core point.
    pub min_samples: usize,
    pub metric: Metric,
}

const ALGORITHM: &str = "dbscan";

impl DbscanParams {
    /// Validate scikit-learn 1.9.1 `DBSCAN` parameters:
    ///
    /// - `eps`: number > 0, default 0.5;
    /// - `min_samples`: integer ≥ 1, default 5 (the row itself counts);
    /// - `metric`: `"euclidean"` (default, alias `"l2"`) or `"cosine"`;
    /// - `algorithm` (`auto`, `ball_tree`, `kd_tree`, `brute`) and `leaf_size` (integer
    ///   ≥ 1): accepted for compatibility. They choose scikit-learn's neighbour index, not
    ///   the answer; clusterd always answers the same exact radius queries with blocked
    ///   brute force, which is what wins at embedding dimensions.
    ///
    /// Any other parameter is an error.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let mut r = params.reader();
        let eps = match r.number("eps")? {
            None => 0.5,
            Some(e) if e > 0.0 && e.is_finite() => e,
            Some(e) => {
                return Err(ApiError::invalid_parameter(
                    "eps",
                    format!("must be a finite number greater than 0, got {e}"),
                ));
            }
        };
        let min_samples = r.integer_in("min_samples", 1, i64::from(u32::MAX))?;
        let metric = read_metric(&mut r)?;
        r.choice("algorithm", &["auto", "ball_tree", "kd_tree", "brute"])?;
        r.integer_in("leaf_size", 1, i64::MAX)?;
        r.finish(ALGORITHM)?;
        Ok(DbscanParams {
            eps,
            min_samples: min_samples.map_or(5, |m| m as usize),
            metric,
        })
    }

    /// DBSCAN runs on any number of documents (rows that are nobody's neighbour are noise).
    pub fn check_against_data(&self, _n_documents: usize) -> ApiResult<()> {
        Ok(())
    }

    /// The parameters as run, every default resolved, for the run record.
    pub fn resolved(&self) -> serde_json::Value {
        serde_json::json!({
            "eps": self.eps,
            "min_samples": self.min_samples,
            "metric": self.metric.as_str(),
            "algorithm": "brute",
        })
    }
}
