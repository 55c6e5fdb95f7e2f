//! The run lifecycle of DESIGN §2: `status.json` (written at start, kept current) and
//! `run.json` (the full result, written last). A run without `run.json` is never
//! reported as completed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::response::ExecuteResponse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    pub fn parse(field: &str, s: &str) -> Result<Self, ApiError> {
        match s {
            "running" => Ok(RunState::Running),
            "completed" => Ok(RunState::Completed),
            "failed" => Ok(RunState::Failed),
            "cancelled" => Ok(RunState::Cancelled),
            other => Err(ApiError::invalid_request(
                field,
                format!("unknown status {other:?}; one of running, completed, failed, cancelled"),
            )),
        }
    }
}

/// Why a run failed, in the shape of the API's error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub field: Option<String>,
}

impl From<&ApiError> for RunError {
    fn from(e: &ApiError) -> Self {
        RunError {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
            field: e.field.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunProgress {
    pub stage: String,
    pub fraction: f32,
    #[serde(default)]
    pub iteration: Option<u32>,
    #[serde(default)]
    pub inertia: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<u64>,
}

impl RunProgress {
    /// The progress of a completed run.
    pub fn done() -> RunProgress {
        RunProgress {
            stage: "done".to_owned(),
            fraction: 1.0,
            iteration: None,
            inertia: None,
            documents: None,
        }
    }
}

/// `status.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunStatus {
    pub run_id: String,
    pub status: RunState,
    pub algorithm: String,
    pub collection_ids: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub updated_at: String,
    /// Refreshed while the run computes; a `running` run whose heartbeat is older than the
    /// staleness bound was interrupted (its server died).
    pub heartbeat_at: String,
    /// The server instance that ran it.
    pub instance_id: String,
    #[serde(default)]
    pub progress: Option<RunProgress>,
    #[serde(default)]
    pub error: Option<RunError>,
}

/// What was asked, with every default resolved: enough to reproduce the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunRequestRecord {
    pub collection_ids: Vec<String>,
    pub algorithm: String,
    /// The algorithm's parameters with defaults filled in (scikit-learn names).
    #[schema(value_type = Object)]
    pub algorithm_params: serde_json::Value,
    pub vector_name: Option<String>,
    pub normalize_features: bool,
    pub description: Option<String>,
    pub sample_size: Option<usize>,
    pub compute_metrics: bool,
    pub store_results: bool,
    pub save_artifacts: bool,
    /// Labelling as it ran (provider, model, inputs), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub llm_labeling: Option<serde_json::Value>,
    /// Attribute grouping as it ran (attribute_based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attribute_config: Option<serde_json::Value>,
}

/// `run.json`: the full result, written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: RunState,
    /// clusterd's version that produced it.
    pub version: String,
    pub request: RunRequestRecord,
    /// The execute response (without inline members: those are in members.parquet).
    pub result: ExecuteResponse,
    /// Keys of the artifacts written, relative to the store prefix.
    pub artifacts: Vec<String>,
    /// How the run places vectors it did not cluster; absent for runs that cannot
    /// (attribute grouping) and for runs stored before placement existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementRecord>,
}

/// The placement model of a stored run: what `assign` and the documents beyond a sample
/// use, besides the centroids in clusters.parquet and the core points in
/// core_points.parquet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// `nearest_centroid` (k-means, Gaussian mixture, mean-shift) or `nearest_core`
    /// (density and graph algorithms: the nearest core point within its radius).
    pub rule: String,
    /// The distance of the core points (`euclidean`, `cosine`, `manhattan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Vectors are L2-normalised before placing, as the run normalised its own.
    pub normalize: bool,
    pub vector_name: Option<String>,
    pub dimension: usize,
    /// Rows of core_points.parquet (nearest_core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_points: Option<usize>,
    /// The run's 2-D PCA projection (mean and two axes), so placed vectors get
    /// coordinates in the same drawing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<serde_json::Value>,
    /// Documents placed after the fit: those a `sample_size` left out.
    pub placed_documents: usize,
}

/// A run as the API shows it: its status, and the record once completed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub status: RunStatus,
    pub record: Option<RunRecord>,
}

/// The artifacts a run may have, by file name.
pub const ARTIFACT_NAMES: [&str; 4] = [
    "clusters.parquet",
    "members.parquet",
    "sample.parquet",
    "core_points.parquet",
];
