//! What a run returns, before a transport renders it.

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// "cpu" or "gpu".
    pub kind: &'static str,
    pub name: String,
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Centroid {
    pub cluster_id: String,
    pub centroid_vector: Vec<f32>,
    pub num_members: usize,
    pub feature_dimensions: usize,
    pub vector_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub document_id: String,
    pub collection_id: String,
    pub cluster_id: String,
    pub distance_to_centroid: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub silhouette_score: Option<f64>,
    pub davies_bouldin_score: Option<f64>,
    pub calinski_harabasz_score: Option<f64>,
    pub num_noise: Option<usize>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteResponse {
    pub success: bool,
    pub algorithm: super::request::Algorithm,
    pub num_clusters: usize,
    pub num_documents: usize,
    pub centroids: Vec<Centroid>,
    pub execution_time_ms: u64,
    pub run_id: String,
    pub metrics: Option<Metrics>,
    pub parquet_path: Option<String>,
    pub members_key: Option<String>,
    /// RFC 3339, UTC, second precision.
    pub created_at: String,
    pub seed: u64,
    pub device: DeviceInfo,
    pub members: Option<Vec<Member>>,
}

/// `cluster_001`, `cluster_002`, ... (1-based rank by size).
pub fn cluster_id(rank: usize) -> String {
    format!("cluster_{:03}", rank + 1)
}
