//! `POST /v1/clusters/runs/{run_id}/assign`: place vectors or documents into a stored run.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::{ErrorBody, RunIdPath};
use super::{RestResult, parse_json, read_body, scope};
use crate::api::AppState;
use crate::model::{ApiError, AssignInput, AssignResponse, validate_name};

/// What to place: `vectors`, or `collection_id` with `document_ids` (never both); at most
/// 10000 items, and the body at most `--max-json-bytes` (default 8 MiB).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AssignRequest)]
struct AssignBody {
    /// Vectors of the run's dimension.
    #[serde(default)]
    #[schema(max_items = 10000)]
    vectors: Option<Vec<Vec<f32>>>,
    /// The collection holding `document_ids` (their vectors are read from the run's
    /// vector column).
    #[serde(default)]
    collection_id: Option<String>,
    #[serde(default)]
    #[schema(max_items = 10000)]
    document_ids: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/v1/clusters/runs/{run_id}/assign",
    tag = "runs",
    summary = "Place vectors or documents into a stored run's clusters",
    params(RunIdPath),
    request_body = AssignBody,
    responses(
        (status = 200, description = "One assignment per item, in request order", body = AssignResponse),
        (status = 400, description = "Malformed JSON, wrong types, unknown fields, both or \
            neither of vectors and document_ids", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such run, collection or document", body = ErrorBody),
        (status = 409, description = "The run cannot place (attribute grouping, no stored \
            placement model)", body = ErrorBody),
        (status = 413, description = "Body above --max-json-bytes, or more than 10000 items", body = ErrorBody),
        (status = 422, description = "Dimension mismatch, NaN or inf in a vector", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not answered within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn assign(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Json<AssignResponse>> {
    let scope = scope(&state, &headers)?;
    let Path(run_id) = path.map_err(|e| ApiError::invalid_request("run_id", e.body_text()))?;
    validate_name("run_id", &run_id)?;
    let bytes = read_body(&headers, body, state.limits.max_json_bytes).await?;
    let b: AssignBody = parse_json(&bytes)?;
    let input = AssignInput::from_parts(b.vectors, b.collection_id, b.document_ids)?;
    Ok(Json(state.engine.assign(&scope, &run_id, input).await?))
}
