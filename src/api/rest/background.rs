//! Background runs: `POST /v1/clusters/submit` and `POST /v1/clusters/runs/{run_id}/cancel`.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::dto::ExecuteBody;
use super::runs::RunJson;
use super::{RestResult, caller, parse_json, read_body};
use crate::api::AppState;
use crate::engine::CancelOutcome;
use crate::model::{ApiError, ExecuteInput, validate_name};

/// 202 with the run id: the run continues after this answer, whatever the client does.
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let caller = caller(&state, &headers)?;
    let bytes = read_body(&headers, body, state.limits.max_json_bytes).await?;
    let input: ExecuteInput = parse_json::<ExecuteBody>(&bytes)?.into();
    let req = input.validate(&caller)?;
    let run_id = state.engine.submit(&caller, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"run_id": run_id, "status": "running"})),
    )
        .into_response())
}

/// 200 with the run as recorded once it stopped, or `{"run_id", "status": "cancelling"}`
/// when it has not reached a checkpoint yet.
pub async fn cancel(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let caller = caller(&state, &headers)?;
    let Path(run_id) = path.map_err(|e| ApiError::invalid_request("run_id", e.body_text()))?;
    validate_name("run_id", &run_id)?;
    Ok(match state.engine.cancel(&caller, &run_id).await? {
        CancelOutcome::Stopped(view) => Json(RunJson::from(*view)).into_response(),
        CancelOutcome::Cancelling => {
            Json(serde_json::json!({"run_id": run_id, "status": "cancelling"})).into_response()
        }
    })
}
