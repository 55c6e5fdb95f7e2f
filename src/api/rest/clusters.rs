//! `POST /v1/clusters/execute`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use tokio_util::sync::CancellationToken;

use super::dto::ExecuteBody;
use super::{RestResult, caller, parse_json, read_body};
use crate::api::AppState;
use crate::model::{DeviceKind, ExecuteInput, ExecuteResponse, RunContext};

pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Json<ExecuteResponse>> {
    let caller = caller(&state, &headers)?;
    let bytes = read_body(&headers, body, state.limits.max_json_bytes).await?;
    let input: ExecuteInput = parse_json::<ExecuteBody>(&bytes)?.into();
    let req = input.validate(&caller)?;
    // A client that disconnects drops this future; the guard cancels the run.
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let ctx = RunContext::new(0, DeviceKind::Cpu).with_cancel(cancel);
    let response = state.engine.execute(&caller, req, ctx).await?;
    Ok(Json(response))
}
