//! Background runs: `POST /v1/clusters/submit` and `POST /v1/clusters/runs/{run_id}/cancel`.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::dto::ExecuteBody;
use super::openapi::{ErrorBody, RunIdPath};
use super::runs::RunJson;
use super::{RestResult, caller, parse_json, read_body};
use crate::api::AppState;
use crate::engine::CancelOutcome;
use crate::model::{ApiError, ExecuteInput, RunState, validate_name};

/// `POST /v1/clusters/submit`: the run started in the background.
#[derive(Serialize, ToSchema)]
#[schema(as = Submitted)]
struct SubmittedJson {
    run_id: String,
    /// Always `running`: follow the run with `GET /v1/clusters/runs/{run_id}`.
    status: RunState,
}

/// `POST /v1/clusters/runs/{run_id}/cancel`: the run as recorded once it stopped, or
/// `cancelling` while it has not reached a checkpoint.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = CancelAnswer)]
enum CancelJson {
    Stopped(Box<RunJson>),
    Cancelling(CancellingJson),
}

#[derive(Serialize, ToSchema)]
#[schema(as = Cancelling)]
struct CancellingJson {
    run_id: String,
    status: CancellingState,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum CancellingState {
    Cancelling,
}

/// 202 with the run id: the run continues after this answer, whatever the client does.
#[utoipa::path(
    post,
    path = "/v1/clusters/submit",
    tag = "clusters",
    summary = "Start a clustering in the background",
    description = "The execute body; the run is stored whatever the client does next. The \
        body is at most `--max-json-bytes` (default 8 MiB).",
    request_body = ExecuteBody,
    responses(
        (status = 202, description = "Started", body = SubmittedJson),
        (status = 400, description = "Malformed JSON, wrong types, unknown fields, bad names", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace or internal_id not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such collection or vector column", body = ErrorBody),
        (status = 413, description = "Body above --max-json-bytes, or a run above a limit", body = ErrorBody),
        (status = 422, description = "Out of range or inconsistent parameters", body = ErrorBody),
        (status = 429, description = "Run queue full (see the Retry-After header)", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 501, description = "An algorithm or option not built yet", body = ErrorBody),
        (status = 504, description = "Not answered within --request-timeout-s", body = ErrorBody),
    )
)]
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
        Json(SubmittedJson {
            run_id,
            status: RunState::Running,
        }),
    )
        .into_response())
}

/// 200 with the run as recorded once it stopped, or `{"run_id", "status": "cancelling"}`
/// when it has not reached a checkpoint yet.
#[utoipa::path(
    post,
    path = "/v1/clusters/runs/{run_id}/cancel",
    tag = "clusters",
    summary = "Cancel a running run",
    params(RunIdPath),
    responses(
        (status = 200, description = "The run as recorded once it stopped, or `cancelling`", body = CancelJson),
        (status = 400, description = "Bad run id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is not running (or runs in another server)", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not answered within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let caller = caller(&state, &headers)?;
    let Path(run_id) = path.map_err(|e| ApiError::invalid_request("run_id", e.body_text()))?;
    validate_name("run_id", &run_id)?;
    Ok(Json(match state.engine.cancel(&caller, &run_id).await? {
        CancelOutcome::Stopped(view) => CancelJson::Stopped(Box::new(RunJson::from(*view))),
        CancelOutcome::Cancelling => CancelJson::Cancelling(CancellingJson {
            run_id,
            status: CancellingState::Cancelling,
        }),
    })
    .into_response())
}
