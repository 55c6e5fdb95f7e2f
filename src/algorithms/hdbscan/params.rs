//! Validation of HDBSCAN `algorithm_params`, with scikit-learn 1.9.1 `HDBSCAN` names,
//! defaults and ranges.

use crate::algorithms::neighbors::{Metric, read_metric};
use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, ParamMap};

/// How flat clusters are read off the condensed tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionMethod {
    /// Excess of mass (scikit-learn's default).
    Eom,
    /// The leaves of the condensed cluster tree.
    Leaf,
}

/// Which of scikit-learn's code paths the run reproduces. They build the same minimum
/// spanning tree except in one respect: the brute path divides the whole distance matrix by
/// `alpha` before taking core distances, the tree paths divide only the pairwise term. We
/// always run our own exact Borůvka, and honour that difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HdbscanAlgorithm {
    Brute,
    KdTree,
    BallTree,
}

impl HdbscanAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            HdbscanAlgorithm::Brute => "brute",
            HdbscanAlgorithm::KdTree => "kd_tree",
            HdbscanAlgorithm::BallTree => "ball_tree",
        }
    }
}

/// Checked HDBSCAN parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct HdbscanParams {
    pub min_cluster_size: usize,
    /// `None`: `min_cluster_size`, as scikit-learn.
    pub min_samples: Option<usize>,
    pub cluster_selection_epsilon: f64,
    pub max_cluster_size: Option<usize>,
    pub metric: Metric,
    pub alpha: f64,
    pub cluster_selection_method: SelectionMethod,
    pub allow_single_cluster: bool,
    /// `auto` resolved as scikit-learn resolves it for the metric.
    pub algorithm: HdbscanAlgorithm,
    pub leaf_size: usize,
}

const ALGORITHM: &str = "hdbscan";

impl HdbscanParams {
    /// Validate scikit-learn 1.9.1 `HDBSCAN` parameters:
    ///
    /// - `min_cluster_size`: integer ≥ 2, default 5;
    /// - `min_samples`: integer ≥ 1 or null (default: `min_cluster_size`);
    /// - `cluster_selection_epsilon`: number ≥ 0, default 0;
    /// - `max_cluster_size`: integer ≥ 1 or null (default: no limit; as in scikit-learn it
    ///   only constrains excess-of-mass selection);
    /// - `metric`: `"euclidean"` (default, alias `"l2"`) or `"cosine"`;
    /// - `alpha`: number > 0, default 1;
    /// - `cluster_selection_method`: `"eom"` (default) or `"leaf"`;
    /// - `allow_single_cluster`: boolean, default false;
    /// - `algorithm`: `"auto"` (default), `"brute"`, `"kd_tree"` or `"ball_tree"`. Every
    ///   choice runs the same exact minimum spanning tree; the choice matters only where
    ///   scikit-learn's paths differ in result, which is how `alpha` scales the core
    ///   distances (see [`HdbscanAlgorithm`]). `auto` is `kd_tree` for Euclidean and `brute`
    ///   for cosine, as in scikit-learn, and the tree algorithms reject cosine as it does;
    /// - `leaf_size`: integer ≥ 1, default 40; accepted for compatibility, it only tunes
    ///   scikit-learn's trees and never changes results;
    /// - `store_centers`: only null. Centres are always reported as the mean of each
    ///   cluster's members, so scikit-learn's centroid/medoid options are rejected.
    ///
    /// Any other parameter is an error.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let mut r = params.reader();
        let min_cluster_size = to_usize(
            "min_cluster_size",
            r.integer_in("min_cluster_size", 2, i64::MAX)?,
        )?
        .unwrap_or(5);
        let min_samples = to_usize("min_samples", r.integer_in("min_samples", 1, i64::MAX)?)?;
        let cluster_selection_epsilon = match r.number("cluster_selection_epsilon")? {
            None => 0.0,
            Some(e) if e >= 0.0 => e,
            Some(e) => {
                return Err(ApiError::invalid_parameter(
                    "cluster_selection_epsilon",
                    format!("must be at least 0, got {e}"),
                ));
            }
        };
        let max_cluster_size = to_usize(
            "max_cluster_size",
            r.integer_in("max_cluster_size", 1, i64::MAX)?,
        )?;
        let metric = read_metric(&mut r)?;
        let alpha = match r.number("alpha")? {
            None => 1.0,
            Some(a) if a > 0.0 => a,
            Some(a) => {
                return Err(ApiError::invalid_parameter(
                    "alpha",
                    format!("must be greater than 0, got {a}"),
                ));
            }
        };
        let cluster_selection_method =
            match r.choice("cluster_selection_method", &["eom", "leaf"])? {
                Some("leaf") => SelectionMethod::Leaf,
                _ => SelectionMethod::Eom,
            };
        let allow_single_cluster = r.boolean("allow_single_cluster")?.unwrap_or(false);
        let algorithm = read_algorithm(&mut r, metric)?;
        let leaf_size =
            to_usize("leaf_size", r.integer_in("leaf_size", 1, i64::MAX)?)?.unwrap_or(40);
        if r.raw("store_centers").is_some() {
            return Err(ApiError::invalid_parameter(
                "store_centers",
                "is not supported: cluster centres are always reported as the mean of each \
                 cluster's members; omit it or pass null",
            ));
        }
        r.finish(ALGORITHM)?;
        Ok(HdbscanParams {
            min_cluster_size,
            min_samples,
            cluster_selection_epsilon,
            max_cluster_size,
            metric,
            alpha,
            cluster_selection_method,
            allow_single_cluster,
            algorithm,
            leaf_size,
        })
    }

    /// The neighbourhood size behind the core distances.
    pub fn effective_min_samples(&self) -> usize {
        self.min_samples.unwrap_or(self.min_cluster_size)
    }

    /// scikit-learn's errors that depend on the data: HDBSCAN needs two samples, and
    /// `min_samples` may not exceed them.
    pub fn check_against_data(&self, n_documents: usize) -> ApiResult<()> {
        if n_documents < 2 {
            return Err(ApiError::invalid_parameter(
                "min_samples",
                format!("n_samples={n_documents} while HDBSCAN requires more than one sample"),
            ));
        }
        let m = self.effective_min_samples();
        if m > n_documents {
            let field = if self.min_samples.is_some() {
                "min_samples"
            } else {
                "min_cluster_size"
            };
            return Err(ApiError::invalid_parameter(
                field,
                format!(
                    "min_samples ({m}) must be at most the number of samples in X ({n_documents})"
                ),
            ));
        }
        Ok(())
    }

    /// The parameters as run, every default resolved, for the run record.
    pub fn resolved(&self) -> serde_json::Value {
        serde_json::json!({
            "min_cluster_size": self.min_cluster_size,
            "min_samples": self.effective_min_samples(),
            "cluster_selection_epsilon": self.cluster_selection_epsilon,
            "max_cluster_size": self.max_cluster_size,
            "metric": self.metric.as_str(),
            "alpha": self.alpha,
            "cluster_selection_method": match self.cluster_selection_method {
                SelectionMethod::Eom => "eom",
                SelectionMethod::Leaf => "leaf",
            },
            "allow_single_cluster": self.allow_single_cluster,
            "algorithm": self.algorithm.as_str(),
            "leaf_size": self.leaf_size,
            "store_centers": serde_json::Value::Null,
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

fn read_algorithm(r: &mut ParamReader<'_>, metric: Metric) -> ApiResult<HdbscanAlgorithm> {
    let asked = r.choice("algorithm", &["auto", "brute", "kd_tree", "ball_tree"])?;
    let algorithm = match (asked, metric) {
        (None | Some("auto"), Metric::Euclidean) => HdbscanAlgorithm::KdTree,
        (None | Some("auto"), Metric::Cosine) | (Some("brute"), _) => HdbscanAlgorithm::Brute,
        (Some("kd_tree"), _) => HdbscanAlgorithm::KdTree,
        (_, _) => HdbscanAlgorithm::BallTree,
    };
    if metric == Metric::Cosine && algorithm != HdbscanAlgorithm::Brute {
        let kind = if algorithm == HdbscanAlgorithm::KdTree {
            "KDTree"
        } else {
            "BallTree"
        };
        return Err(ApiError::invalid_parameter(
            "algorithm",
            format!(
                "cosine is not a valid metric for a {kind}-based algorithm; use \"brute\" or \"auto\""
            ),
        ));
    }
    Ok(algorithm)
}
