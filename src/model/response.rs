//! What a run returns. The serde shape is the public JSON of the reference response (REST
//! renders it directly; `run.json` stores it), so field names here are the contract.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::request::Algorithm;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceInfo {
    /// "cpu" or "gpu".
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Centroid {
    pub cluster_id: String,
    pub centroid_vector: Vec<f32>,
    pub num_members: usize,
    pub feature_dimensions: usize,
    pub vector_name: String,
    /// With `llm_labeling`: a short label, keywords and a summary of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keywords: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Hierarchical attribute grouping: the parent node and the depth (0 = top).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub document_id: String,
    pub collection_id: String,
    pub cluster_id: String,
    /// Null for noise members (no centroid), and where the distance is not a number.
    pub distance_to_centroid: Option<f64>,
    /// Posterior probability of the member's cluster, for soft-assignment algorithms
    /// (`gaussian_mixture`); absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Metrics {
    pub silhouette_score: Option<f64>,
    pub davies_bouldin_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calinski_harabasz_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_noise: Option<usize>,
    /// Why a score is absent, or that the silhouette was computed on a sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecuteResponse {
    pub success: bool,
    pub algorithm: Algorithm,
    pub num_clusters: usize,
    pub num_documents: usize,
    pub centroids: Vec<Centroid>,
    pub execution_time_ms: u64,
    // The reference marks only success, algorithm, num_clusters, num_documents, centroids
    // and execution_time_ms required; clusterd always sends the rest, but a client written
    // against the reference must not be told otherwise.
    #[schema(required = false)]
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    pub parquet_path: Option<String>,
    pub members_key: Option<String>,
    /// RFC 3339, UTC, second precision.
    #[schema(required = false, format = DateTime)]
    pub created_at: String,
    /// The random seed the run used (`random_state`, or the one drawn for it).
    #[schema(required = false)]
    pub seed: u64,
    /// Where the run computed.
    #[schema(required = false)]
    pub device: DeviceInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    /// With `llm_labeling`: the clusters whose provider failed (they keep the offline
    /// label), each with what happened. Empty when every label came through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_labeling_errors: Option<Vec<LabelingFailure>>,
    /// Documents beyond the sample placed into the fitted clusters after the fit (they
    /// are in members.parquet with `sampled` false); absent when none were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_documents: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LabelingFailure {
    pub cluster_id: String,
    pub message: String,
}

/// `cluster_001`, `cluster_002`, ... (1-based rank by size). With 1000 clusters or more
/// every id of the run gets the same wider padding, so that sorting ids as strings (as
/// members.parquet is sorted) keeps the size order.
pub fn cluster_id(rank: usize, num_clusters: usize) -> String {
    let width = num_clusters.to_string().len().max(3);
    format!("cluster_{:0width$}", rank + 1)
}

/// The cluster id of noise members (label −1); noise has no centroid row.
pub const NOISE_CLUSTER_ID: &str = "noise";
