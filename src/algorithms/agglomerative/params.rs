//! Validation of agglomerative `algorithm_params`, with scikit-learn 1.9.1
//! `AgglomerativeClustering` names, defaults and ranges.

use crate::model::{ApiError, ApiResult, ParamMap, ParamValue};

/// Most documents for `linkage="ward"`. Ward keeps no matrix (memory O(N·d): one f64
/// centroid per cluster), but its nearest-neighbour chain costs O(N²·d) time: about
/// 3·N²/2 centroid distances, ~2·10¹⁰ flops at 20 000 × 16 and ~10¹² at 20 000 × 768
/// (minutes on a few cores). The bound keeps a request to that order of time.
pub const WARD_MAX_DOCUMENTS: usize = 20_000;

/// Most documents for `linkage="complete"` and `"average"`: they keep scipy's condensed
/// pairwise distance matrix, N(N−1)/2 f64 entries, 256 MB at 8 000 documents.
pub const MATRIX_MAX_DOCUMENTS: usize = 8_000;

/// How clusters are joined (scikit-learn's `linkage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// Minimum increase of within-cluster variance (Euclidean only).
    Ward,
    /// Largest distance between members.
    Complete,
    /// Mean distance between members.
    Average,
    /// Smallest distance between members.
    Single,
}

impl Linkage {
    pub fn as_str(self) -> &'static str {
        match self {
            Linkage::Ward => "ward",
            Linkage::Complete => "complete",
            Linkage::Average => "average",
            Linkage::Single => "single",
        }
    }
}

/// Distance between documents. scikit-learn's aliases (`l2`, `l1`, `cityblock`) map here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgglomerativeMetric {
    Euclidean,
    /// `1 − cos(a, b)`.
    Cosine,
    /// Sum of absolute differences (`manhattan`, `l1`, `cityblock`).
    Manhattan,
}

impl AgglomerativeMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            AgglomerativeMetric::Euclidean => "euclidean",
            AgglomerativeMetric::Cosine => "cosine",
            AgglomerativeMetric::Manhattan => "manhattan",
        }
    }
}

/// Where the tree is cut: scikit-learn requires exactly one of `n_clusters` and
/// `distance_threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    /// `n_clusters`: this many clusters.
    Clusters(usize),
    /// `distance_threshold`: undo every merge at a height ≥ the threshold.
    Threshold(f64),
}

/// Checked agglomerative parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct AgglomerativeParams {
    pub cut: Cut,
    pub linkage: Linkage,
    pub metric: AgglomerativeMetric,
    /// As given (`None`: `"auto"`). Never changes labels: see [`AgglomerativeParams::from_params`].
    pub compute_full_tree: Option<bool>,
    /// As given. Never changes labels.
    pub compute_distances: bool,
}

const ALGORITHM: &str = "agglomerative";

const METRICS: &str = "euclidean, l2, cosine, manhattan, l1, cityblock";

impl AgglomerativeParams {
    /// Validate scikit-learn 1.9.1 `AgglomerativeClustering` parameters:
    ///
    /// - `n_clusters`: integer ≥ 1, default 2; resolves to null when `distance_threshold`
    ///   is given and `n_clusters` is not. Exactly one of the two may be non-null, as in
    ///   scikit-learn (so an explicit `"n_clusters": null` needs a `distance_threshold`);
    /// - `distance_threshold`: number ≥ 0 or null (default);
    /// - `linkage`: `"ward"` (default), `"complete"`, `"average"` or `"single"`;
    /// - `metric`: `"euclidean"` (default), `"l2"`, `"cosine"`, `"manhattan"`, `"l1"` or
    ///   `"cityblock"`; ward accepts only the Euclidean ones, as scikit-learn. `"precomputed"`
    ///   and scikit-learn's other metrics are rejected: clusterd clusters vectors;
    /// - `compute_full_tree`: `"auto"` (default) or a boolean. Without connectivity
    ///   scikit-learn always builds the full tree, so it never changes labels; as there,
    ///   `false` with a `distance_threshold` is an error;
    /// - `compute_distances`: boolean, default false. It only makes scikit-learn keep the
    ///   merge heights; labels are the same either way;
    /// - `connectivity`, `memory`: only null (no connectivity constraint; no cache).
    ///
    /// Any other parameter is an error.
    pub fn from_params(params: &ParamMap) -> ApiResult<Self> {
        let n_clusters_null = params
            .iter()
            .any(|(k, v)| k == "n_clusters" && *v == ParamValue::Null);
        let mut r = params.reader();
        let n_clusters = r.integer_in("n_clusters", 1, i64::MAX)?;
        let distance_threshold = match r.number("distance_threshold")? {
            Some(t) if t < 0.0 => {
                return Err(ApiError::invalid_parameter(
                    "distance_threshold",
                    format!("must be at least 0, got {t}"),
                ));
            }
            t => t,
        };
        let cut = match (n_clusters, distance_threshold) {
            (Some(k), None) => Cut::Clusters(usize::try_from(k).map_err(|_| {
                ApiError::invalid_parameter("n_clusters", format!("{k} is too large"))
            })?),
            (None, None) if !n_clusters_null => Cut::Clusters(2),
            (None, Some(t)) => Cut::Threshold(t),
            _ => {
                return Err(ApiError::invalid_parameter(
                    "n_clusters",
                    "exactly one of n_clusters and distance_threshold has to be set, and the \
                     other needs to be null",
                ));
            }
        };
        let linkage = match r.choice("linkage", &["ward", "complete", "average", "single"])? {
            None | Some("ward") => Linkage::Ward,
            Some("complete") => Linkage::Complete,
            Some("average") => Linkage::Average,
            Some(_) => Linkage::Single,
        };
        let metric = match r.string("metric")? {
            None | Some("euclidean") | Some("l2") => AgglomerativeMetric::Euclidean,
            Some("cosine") => AgglomerativeMetric::Cosine,
            Some("manhattan") | Some("l1") | Some("cityblock") => AgglomerativeMetric::Manhattan,
            Some("precomputed") => {
                return Err(ApiError::invalid_parameter(
                    "metric",
                    "\"precomputed\" is not supported: clusterd clusters the documents' \
                     vectors; use one of "
                        .to_string()
                        + METRICS,
                ));
            }
            Some(other) => {
                return Err(ApiError::invalid_parameter(
                    "metric",
                    format!("must be one of {METRICS}, got {other:?}"),
                ));
            }
        };
        if linkage == Linkage::Ward && metric != AgglomerativeMetric::Euclidean {
            let given = params
                .iter()
                .find_map(|(k, v)| match (k.as_str(), v) {
                    ("metric", ParamValue::String(s)) => Some(s.as_str()),
                    _ => None,
                })
                .unwrap_or(metric.as_str());
            return Err(ApiError::invalid_parameter(
                "metric",
                format!(
                    "{given} was provided as metric. Ward can only work with euclidean \
                     distances (i.e. 'euclidean' and 'l2')"
                ),
            ));
        }
        let compute_full_tree = match r.raw("compute_full_tree") {
            None => None,
            Some(ParamValue::String(s)) if s == "auto" => None,
            Some(ParamValue::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(ApiError::invalid_parameter(
                    "compute_full_tree",
                    "must be \"auto\" or a boolean",
                ));
            }
        };
        if compute_full_tree == Some(false) && matches!(cut, Cut::Threshold(_)) {
            return Err(ApiError::invalid_parameter(
                "compute_full_tree",
                "must be true (or \"auto\") if distance_threshold is set",
            ));
        }
        let compute_distances = r.boolean("compute_distances")?.unwrap_or(false);
        for name in ["connectivity", "memory"] {
            if r.raw(name).is_some() {
                return Err(ApiError::invalid_parameter(
                    name,
                    "is not supported; omit it or pass null",
                ));
            }
        }
        r.finish(ALGORITHM)?;
        Ok(AgglomerativeParams {
            cut,
            linkage,
            metric,
            compute_full_tree,
            compute_distances,
        })
    }

    /// scikit-learn's errors that depend on the data: at least two documents, and no more
    /// clusters than documents.
    pub fn check_against_data(&self, n_documents: usize) -> ApiResult<()> {
        if n_documents < 2 {
            return Err(ApiError::invalid_parameter(
                "n_clusters",
                format!(
                    "found {n_documents} document(s) while agglomerative clustering requires \
                     at least 2"
                ),
            ));
        }
        if let Cut::Clusters(k) = self.cut
            && k > n_documents
        {
            return Err(ApiError::invalid_parameter(
                "n_clusters",
                format!(
                    "cannot extract more clusters than samples: {k} clusters were given for \
                     a tree with {n_documents} leaves"
                ),
            ));
        }
        Ok(())
    }

    /// The most documents these parameters accept, and why; `None` for single linkage,
    /// which keeps only O(N) memory beyond the data (see the constants).
    pub fn max_documents(&self) -> Option<(usize, String)> {
        match self.linkage {
            Linkage::Single => None,
            Linkage::Ward => Some((
                WARD_MAX_DOCUMENTS,
                "linkage=ward runs a nearest-neighbour chain over centroids in O(N²·d) time".into(),
            )),
            Linkage::Complete | Linkage::Average => Some((
                MATRIX_MAX_DOCUMENTS,
                format!(
                    "linkage={} keeps the condensed pairwise distance matrix (N(N−1)/2 f64)",
                    self.linkage.as_str()
                ),
            )),
        }
    }

    /// The parameters as run, every default resolved, for the run record. Without
    /// connectivity scikit-learn always computes the full tree, so `compute_full_tree`
    /// resolves to true.
    pub fn resolved(&self) -> serde_json::Value {
        let (n_clusters, distance_threshold) = match self.cut {
            Cut::Clusters(k) => (serde_json::json!(k), serde_json::Value::Null),
            Cut::Threshold(t) => (serde_json::Value::Null, serde_json::json!(t)),
        };
        serde_json::json!({
            "n_clusters": n_clusters,
            "distance_threshold": distance_threshold,
            "linkage": self.linkage.as_str(),
            "metric": self.metric.as_str(),
            "compute_full_tree": true,
            "compute_distances": self.compute_distances,
            "connectivity": serde_json::Value::Null,
            "memory": serde_json::Value::Null,
        })
    }
}
