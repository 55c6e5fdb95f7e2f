//! `POST /v1/clusters/runs/{run_id}/assign`: place vectors or documents into a stored run.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{RestResult, parse_json, read_body, scope};
use crate::api::AppState;
use crate::model::{ApiError, AssignInput, AssignResponse, validate_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    #[serde(default)]
    vectors: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    collection_id: Option<String>,
    #[serde(default)]
    document_ids: Option<Vec<String>>,
}

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
