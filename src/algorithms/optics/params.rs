//! Validation of OPTICS `algorithm_params`, with scikit-learn 1.9.1 `OPTICS` names,
//! defaults and ranges.

use super::Metric;
use super::read_metric;
use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, ParamMap};

/// A number of samples given either absolutely or as a fraction of the data set
/// (`min_samples`, `min_cluster_size`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleCount {
    Absolute(usize),
    /// Resolved against N as scikit-learn does: `max(2, int(fraction * N))`.
    Fraction(f64),
}

impl SampleCount {
    pub fn resolve(self, n_samples: usize) -> usize {
        match self {
            SampleCount::Absolute(k) => k,
            // `as` truncates toward zero, like Python's `int()` on a non-negative float.
            SampleCount::Fraction(f) => ((f * n_samples as f64) as usize).max(2),
        }
    }

    fn to_json(self) -> serde_json::Value {
        match self {
            SampleCount::Absolute(k) => serde_json::json!(k),
            SampleCount::Fraction(f) => serde_json::json!(f),
        }
    }
}

/// How clusters are read off the reachability plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClusterMethod {
    /// Steep-area extraction (`cluster_optics_xi`).
    Xi {
        xi: f64,
        predecessor_correction: bool,
        /// `None`: use `min_samples`.
        min_cluster_size: Option<SampleCount>,
    },
    /// A DBSCAN cut of the reachability plot at `eps` (`cluster_optics_dbscan`).
    Dbscan { eps: f64 },
}

/// The neighbour-search structure scikit-learn would build. Every choice finds the same
/// exact neighbours, so the result does not depend on it; we always run our exact blocked
/// brute-force search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighborAlgorithm {
    Auto,
    Brute,
    BallTree,
    KdTree,
}

/// Checked OPTICS parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct OpticsParams {
    pub min_samples: SampleCount,
    /// `f64::INFINITY` when not given (scikit-learn's default `np.inf`).
    pub max_eps: f64,
    pub metric: Metric,
    pub cluster_method: ClusterMethod,
    pub algorithm: NeighborAlgorithm,
    pub leaf_size: usize,
}

const ALGORITHM: &str = "optics";

impl OpticsParams {
    /// Validate scikit-learn 1.9.1 `OPTICS` parameters:
    ///
    /// - `min_samples`: integer ≥ 2, or a fraction of N in `[0, 1]` (default 5). JSON does
    ///   not tell `1` from `1.0`; since scikit-learn rejects the integer 1, `1` is read as
    ///   the fraction 1.0, the only meaning it accepts;
    /// - `max_eps`: number ≥ 0; absent or null means infinity (scikit-learn's `np.inf`,
    ///   which JSON cannot carry);
    /// - `metric`: `"euclidean"` (default; scikit-learn's default `"minkowski"` with `p=2`
    ///   is the same distance), `"l2"` or `"cosine"`;
    /// - `cluster_method`: `"xi"` (default) or `"dbscan"`;
    /// - `eps`: number ≥ 0 or null (= `max_eps`); used only by `"dbscan"`, where it must not
    ///   exceed `max_eps`;
    /// - `xi`: number in `[0, 1]`, default 0.05; used only by `"xi"`;
    /// - `predecessor_correction`: boolean, default true; used only by `"xi"`;
    /// - `min_cluster_size`: null (= `min_samples`), integer ≥ 2, or a fraction in
    ///   `(0, 1]`; used only by `"xi"`;
    /// - `algorithm` (`"auto"`, `"brute"`, `"ball_tree"`, `"kd_tree"`) and `leaf_size`
    ///   (integer ≥ 1, default 30): accepted for compatibility. They choose how
    ///   scikit-learn searches neighbours, and every choice finds the same exact
    ///   neighbours, so they do not change results; we always run an exact brute-force
    ///   search.
    ///
    /// Parameters that only apply to the other `cluster_method` are validated all the
    /// same, as scikit-learn does. Any other parameter (`p`, `metric_params`, `memory`,
    /// `n_jobs`, ...) is an error.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let mut r = params.reader();
        let min_samples =
            read_sample_count(&mut r, "min_samples", true)?.unwrap_or(SampleCount::Absolute(5));
        let max_eps = match r.number("max_eps")? {
            None => f64::INFINITY,
            Some(v) => non_negative("max_eps", v)?,
        };
        let metric = read_metric(&mut r)?;
        let method = r.choice("cluster_method", &["xi", "dbscan"])?;
        let eps = r
            .number("eps")?
            .map(|v| non_negative("eps", v))
            .transpose()?;
        let xi = match r.number("xi")? {
            None => 0.05,
            Some(v) if (0.0..=1.0).contains(&v) => v,
            Some(v) => {
                return Err(ApiError::invalid_parameter(
                    "xi",
                    format!("must be between 0 and 1, got {v}"),
                ));
            }
        };
        let predecessor_correction = r.boolean("predecessor_correction")?.unwrap_or(true);
        let min_cluster_size = read_sample_count(&mut r, "min_cluster_size", false)?;
        let algorithm = match r.choice("algorithm", &["auto", "brute", "ball_tree", "kd_tree"])? {
            None | Some("auto") => NeighborAlgorithm::Auto,
            Some("brute") => NeighborAlgorithm::Brute,
            Some("ball_tree") => NeighborAlgorithm::BallTree,
            Some(_) => NeighborAlgorithm::KdTree,
        };
        let leaf_size = r
            .integer_in("leaf_size", 1, i64::MAX)?
            .map_or(Ok(30), |v| to_usize("leaf_size", v))?;
        r.finish(ALGORITHM)?;

        let cluster_method = match method {
            Some("dbscan") => {
                let eps = eps.unwrap_or(max_eps);
                if eps > max_eps {
                    return Err(ApiError::invalid_parameter(
                        "eps",
                        format!(
                            "Specify an epsilon smaller than {}. Got {eps}.",
                            show_eps(max_eps)
                        ),
                    ));
                }
                ClusterMethod::Dbscan { eps }
            }
            _ => ClusterMethod::Xi {
                xi,
                predecessor_correction,
                min_cluster_size,
            },
        };
        Ok(OpticsParams {
            min_samples,
            max_eps,
            metric,
            cluster_method,
            algorithm,
            leaf_size,
        })
    }

    /// scikit-learn's errors that depend on N: an absolute `min_samples` above N (from
    /// `compute_optics_graph`), a fractional one that resolves to more neighbours than
    /// there are samples (from the neighbour search), and an absolute `min_cluster_size`
    /// above N (from `cluster_optics_xi`, so only with `cluster_method="xi"`).
    pub fn check_against_data(&self, n_documents: usize) -> ApiResult<()> {
        match self.min_samples {
            SampleCount::Absolute(k) if k > n_documents => {
                return Err(too_large("min_samples", n_documents, k));
            }
            SampleCount::Fraction(_) if self.min_samples.resolve(n_documents) > n_documents => {
                return Err(ApiError::invalid_parameter(
                    "min_samples",
                    format!(
                        "Expected n_neighbors <= n_samples_fit, but n_neighbors = {}, \
                         n_samples_fit = {n_documents}, n_samples = {n_documents}",
                        self.min_samples.resolve(n_documents)
                    ),
                ));
            }
            _ => {}
        }
        if let ClusterMethod::Xi {
            min_cluster_size: Some(SampleCount::Absolute(k)),
            ..
        } = self.cluster_method
            && k > n_documents
        {
            return Err(too_large("min_cluster_size", n_documents, k));
        }
        Ok(())
    }

    /// The parameters as run, every default resolved, for the run record. Infinite
    /// distances (`max_eps`, and `eps` defaulting to it) are written as null, as JSON
    /// cannot carry infinity; `algorithm` is what ran (an exact brute-force search).
    pub fn resolved(&self) -> serde_json::Value {
        let finite = |v: f64| v.is_finite().then_some(v);
        let mut out = serde_json::json!({
            "min_samples": self.min_samples.to_json(),
            "max_eps": finite(self.max_eps),
            "metric": self.metric.as_str(),
            "algorithm": "brute",
            "leaf_size": self.leaf_size,
        });
        let extra = match self.cluster_method {
            ClusterMethod::Xi {
                xi,
                predecessor_correction,
                min_cluster_size,
            } => serde_json::json!({
                "cluster_method": "xi",
                "xi": xi,
                "predecessor_correction": predecessor_correction,
                "min_cluster_size": min_cluster_size.unwrap_or(self.min_samples).to_json(),
            }),
            ClusterMethod::Dbscan { eps } => serde_json::json!({
                "cluster_method": "dbscan",
                "eps": finite(eps),
            }),
        };
        if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), extra) {
            o.extend(e);
        }
        out
    }
}

/// `min_samples` (`allow_zero`: scikit-learn's interval for it is closed at 0) or
/// `min_cluster_size` (open at 0): an integer ≥ 2 or a fraction.
fn read_sample_count(
    r: &mut ParamReader<'_>,
    name: &'static str,
    allow_zero: bool,
) -> ApiResult<Option<SampleCount>> {
    let Some(v) = r.number(name)? else {
        return Ok(None);
    };
    let fraction_ok = if allow_zero {
        (0.0..=1.0).contains(&v)
    } else {
        v > 0.0 && v <= 1.0
    };
    if fraction_ok {
        Ok(Some(SampleCount::Fraction(v)))
    } else if v.fract() == 0.0 && v >= 2.0 {
        // f64 → usize saturates; counts that large fail check_against_data anyway.
        Ok(Some(SampleCount::Absolute(v as usize)))
    } else {
        let range = if allow_zero { "[0, 1]" } else { "(0, 1]" };
        Err(ApiError::invalid_parameter(
            name,
            format!("must be an integer of at least 2 or a fraction in {range}, got {v}"),
        ))
    }
}

fn non_negative(name: &str, v: f64) -> ApiResult<f64> {
    if v >= 0.0 {
        Ok(v)
    } else {
        Err(ApiError::invalid_parameter(
            name,
            format!("must be at least 0, got {v}"),
        ))
    }
}

fn to_usize(field: &str, v: i64) -> ApiResult<usize> {
    usize::try_from(v).map_err(|_| ApiError::invalid_parameter(field, format!("{v} is too large")))
}

fn too_large(name: &str, n: usize, k: usize) -> ApiError {
    ApiError::invalid_parameter(
        name,
        format!("{name} must be no greater than the number of samples ({n}). Got {k}"),
    )
}

fn show_eps(v: f64) -> String {
    if v.is_infinite() {
        "inf".to_owned()
    } else {
        v.to_string()
    }
}
