//! Placing vectors into a stored run (`POST /v1/clusters/runs/{run_id}/assign`).

use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiResult, validate_name};

/// Most vectors or document ids one assign request may carry.
pub const MAX_ASSIGN_ITEMS: usize = 10_000;

/// What to place: vectors given inline, or documents of a collection by id (their vectors
/// are read from the run's vector column).
#[derive(Debug, Clone, PartialEq)]
pub enum AssignInput {
    Vectors(Vec<Vec<f32>>),
    Documents {
        collection_id: String,
        document_ids: Vec<String>,
    },
}

impl AssignInput {
    /// The request's fields as one input: `vectors`, or `collection_id` with
    /// `document_ids`, never both.
    pub fn from_parts(
        vectors: Option<Vec<Vec<f32>>>,
        collection_id: Option<String>,
        document_ids: Option<Vec<String>>,
    ) -> ApiResult<AssignInput> {
        match (vectors, collection_id, document_ids) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(ApiError::invalid_request(
                "vectors",
                "give vectors, or collection_id with document_ids, not both",
            )),
            (Some(vectors), None, None) => Ok(AssignInput::Vectors(vectors)),
            (None, Some(collection_id), Some(document_ids)) => {
                validate_name("collection_id", &collection_id)?;
                Ok(AssignInput::Documents {
                    collection_id,
                    document_ids,
                })
            }
            (None, None, Some(_)) => Err(ApiError::invalid_request(
                "collection_id",
                "is required with document_ids",
            )),
            (None, Some(_), None) => Err(ApiError::invalid_request(
                "document_ids",
                "is required with collection_id",
            )),
            (None, None, None) => Err(ApiError::invalid_request(
                "vectors",
                "give vectors, or collection_id with document_ids",
            )),
        }
    }
}

/// One placed vector, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Assignment {
    /// The document, when placed by id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
    /// `cluster_001`, … as in the run, or `noise`.
    pub cluster_id: String,
    /// Euclidean distance to the cluster's centroid in the run's space (normalised when
    /// the run normalised); null for noise.
    pub distance_to_centroid: Option<f64>,
    /// Position in the run's 2-D projection, when the run has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f32>>, min_items = 2, max_items = 2)]
    pub coordinates: Option<[f32; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AssignResponse {
    pub run_id: String,
    pub algorithm: String,
    /// `nearest_centroid` or `nearest_core`.
    pub rule: String,
    pub assignments: Vec<Assignment>,
}
