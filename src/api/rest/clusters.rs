//! `POST /v1/clusters/execute`, as one JSON answer or, with `Accept: text/event-stream`,
//! as Server-Sent Events.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::dto::ExecuteBody;
use super::openapi::ErrorBody;
use super::{RestError, RestResult, caller, error_body, header, parse_json, read_body};
use crate::api::AppState;
use crate::api::streaming::{self, StreamItem};
use crate::model::ExecuteInput;

#[utoipa::path(
    post,
    path = "/v1/clusters/execute",
    tag = "clusters",
    summary = "Execute clustering",
    description = "Clusters the documents of one or more collections and answers when the run \
        is done: one JSON answer, or with `Accept: text/event-stream` Server-Sent Events. \
        The body is at most `--max-json-bytes` (default 8 MiB); inline members \
        (`include_members`) at most `--max-members` (default 100000); a run at most \
        `--max-documents` documents and `--max-run-memory`. A request refused before the \
        run starts is answered with its status and the error body, with or without \
        streaming.",
    request_body = ExecuteBody,
    responses(
        (status = 200, description = "The clustering. As `text/event-stream`: `event: progress` \
            events (`{stage, fraction, iteration, inertia, documents}`), then `event: result` \
            (this same ExecuteResponse JSON), then with `stream_artifacts` `event: artifact` \
            pieces (`{name, offset, data_base64, last}`); a failure after the stream started \
            is `event: error` with the error body, and ends the stream.",
            content(
                (crate::model::ExecuteResponse = "application/json"),
                (String = "text/event-stream"),
            )
        ),
        (status = 400, description = "Malformed JSON, wrong types, unknown fields or algorithm \
            parameters, bad names, namespace_id other than X-Namespace", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace or internal_id not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such collection or vector column", body = ErrorBody),
        (status = 413, description = "Body above --max-json-bytes, inline members above \
            --max-members, or a run above --max-documents / --max-run-memory", body = ErrorBody),
        (status = 422, description = "Out of range or inconsistent with the data (an algorithm \
            parameter out of range, n_clusters above the documents, NaN in vectors)", body = ErrorBody),
        (status = 429, description = "Run queue full (see the Retry-After header)", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait before retrying"))),
        (status = 499, description = "The run was cancelled (client gone, server shutting down)", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 501, description = "An algorithm or option not built yet", body = ErrorBody),
        (status = 504, description = "Not answered within --request-timeout-s (the run is \
            cancelled; use /v1/clusters/submit for long runs)", body = ErrorBody),
    )
)]
pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let caller = caller(&state, &headers)?;
    let bytes = read_body(&headers, body, state.limits.max_json_bytes).await?;
    let req = execute_request_from_json(&bytes, &caller)?;
    if wants_event_stream(&headers) {
        return event_stream(state, caller, req).await;
    }
    if req.stream_artifacts {
        return Err(streaming::unary_refuses_stream_artifacts(
            "send Accept: text/event-stream, or GET /v1/clusters/runs/{run_id}/artifacts/{name}",
        )
        .into());
    }
    let response = crate::api::execute_unary(&state, caller, req).await?;
    Ok(Json(response).into_response())
}

/// An execute body as the handler reads it: JSON into the checked request (everything
/// but the algorithm's parameters, which the engine checks). The fuzz target
/// `execute_json` drives this same function.
pub(crate) fn execute_request_from_json(
    bytes: &[u8],
    caller: &crate::model::Caller,
) -> crate::model::ApiResult<crate::model::ExecuteRequest> {
    let input: ExecuteInput = parse_json::<ExecuteBody>(bytes)?.into();
    input.validate(caller)
}

/// `Accept` names `text/event-stream` (alone or among other types).
fn wants_event_stream(headers: &HeaderMap) -> bool {
    header(headers, "accept").is_some_and(|accept| {
        accept.split(',').any(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
    })
}

/// The run as `event: progress` events, then `event: result` (the plain execute's JSON),
/// then `event: artifact` pieces when `stream_artifacts`; a failure is `event: error` with
/// the error body, and ends the stream.
///
/// A request refused before the run produces anything (authentication, validation, the
/// algorithm's parameters, a full queue) is answered as the plain execute answers it: the
/// JSON error body with its HTTP status, not a 200 stream holding one error event. Clients
/// then handle refusals the same way with or without streaming, and a status code is what
/// HTTP tooling looks at. This holds until the first event: the handler waits for it
/// before it answers, so a run waiting in the admission queue shows no headers yet.
async fn event_stream(
    state: AppState,
    caller: crate::model::Caller,
    req: crate::model::ExecuteRequest,
) -> RestResult<Response> {
    let mut events = streaming::execute(state.engine.clone(), caller, req);
    let first = match events.recv().await {
        Some(StreamItem::Error(e)) => return Err(RestError(e)),
        Some(item) => item,
        None => {
            return Err(RestError(crate::model::ApiError::internal(
                "the run ended without an event",
            )));
        }
    };
    // axum drops this stream when the client disconnects; the receiver goes with it and
    // the run is cancelled at its next checkpoint.
    let stream = futures::stream::iter([first])
        .chain(ReceiverStream::new(events))
        .map(|item| Ok::<_, std::convert::Infallible>(sse_event(item)));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse_event(item: StreamItem) -> Event {
    let (name, data) = match item {
        StreamItem::Progress(p) => (
            "progress",
            serde_json::json!({
                "stage": p.stage,
                "fraction": p.fraction,
                "iteration": p.iteration,
                "inertia": p.inertia,
                "documents": p.documents,
            })
            .to_string(),
        ),
        // Serialised directly (not through a `Value`, which widens f32 to f64 digits) so
        // the data is byte for byte what the plain execute answers.
        StreamItem::Result(r) => match serde_json::to_string(&*r) {
            Ok(json) => ("result", json),
            Err(e) => (
                "error",
                error_body(&crate::model::ApiError::internal(format!(
                    "could not render the result: {e}"
                )))
                .to_string(),
            ),
        },
        StreamItem::Artifact(a) => (
            "artifact",
            serde_json::json!({
                "name": a.name,
                "offset": a.offset,
                "data_base64": base64::engine::general_purpose::STANDARD.encode(&a.data),
                "last": a.last,
            })
            .to_string(),
        ),
        StreamItem::Error(e) => ("error", error_body(&e).to_string()),
    };
    // Compact JSON has no newline, so each event is one `data:` line.
    Event::default().event(name).data(data)
}
