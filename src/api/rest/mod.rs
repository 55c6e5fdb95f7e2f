//! REST (axum): the public `POST /v1/clusters/execute` and the collection endpoints of
//! the operator contract. Bodies are read under our own limits and parsed by serde with
//! the failing field named; every error, including unknown routes and methods, is the
//! JSON error body of DESIGN §1.

mod assign;
mod background;
mod clusters;
mod collections;
mod dto;
mod openapi;
mod runs;

// The handlers' request decoding, for `crate::fuzzing`.
pub(crate) use clusters::execute_request_from_json;
pub(crate) use collections::documents_from_json;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::model::{ApiError, ApiResult, Caller, ErrorCode, Scope};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/clusters/execute", post(clusters::execute))
        .route("/v1/clusters/submit", post(background::submit))
        .route(
            "/v1/clusters/runs/{run_id}/cancel",
            post(background::cancel),
        )
        .route("/v1/collections", get(collections::list))
        .route(
            "/v1/collections/{collection_id}",
            delete(collections::delete),
        )
        .route(
            "/v1/collections/{collection_id}/documents",
            post(collections::upload),
        )
        .route("/v1/clusters/runs", get(runs::list))
        .route(
            "/v1/clusters/runs/{run_id}",
            get(runs::get).delete(runs::delete),
        )
        .route("/v1/clusters/runs/{run_id}/members", get(runs::members))
        .route(
            "/v1/clusters/runs/{run_id}/artifacts/{name}",
            get(runs::artifact),
        )
        .route("/v1/clusters/runs/{run_id}/assign", post(assign::assign))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // We read bodies ourselves under our limits (`read_body`).
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_request,
        ))
        .with_state(state)
}

/// `--request-timeout-s`: a request whose answer has not started by then is answered 504
/// `deadline_exceeded`; dropping the handler cancels its run (the execute handlers hold a
/// cancel-on-drop guard). A stream that has started (SSE) is not cut.
async fn deadline(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(limit) = state.limits.request_timeout else {
        return next.run(req).await;
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => RestError(ApiError::new(
            ErrorCode::DeadlineExceeded,
            None,
            format!(
                "the request did not finish within {} s (the server's request timeout); \
                 run long clusterings with POST /v1/clusters/submit",
                limit.as_secs_f64()
            ),
        ))
        .into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    summary = "Liveness (no key needed)",
    responses((status = 200, description = "The server answers", body = dto::HealthJson))
)]
async fn healthz() -> Response {
    axum::Json(dto::HealthJson { status: "ok" }).into_response()
}

/// Outside the deadline, so a 504 is counted as answered. `Router::layer` wraps each route,
/// so the matched route template is known here (the fallback has none).
async fn count_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let resp = next.run(req).await;
    state
        .engine
        .telemetry()
        .http_request(route.as_deref(), resp.status().as_u16());
    resp
}

/// Prometheus scrape: like `/healthz`, answered without an API key (DESIGN §1); it shows
/// process-wide counts, nothing of any organisation's data.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus metrics (no key needed)",
    description = "Process-wide counters, gauges and histograms in the Prometheus text \
        exposition format 0.0.4 (runs by algorithm and status, run latency, documents \
        clustered and placed, runs by device, queue depth, bytes read from the store, REST \
        requests by route); the README lists every metric.",
    responses((
        status = 200,
        description = "The metrics",
        content_type = "text/plain; version=0.0.4",
        body = String
    ))
)]
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.engine.metrics_text() {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                crate::telemetry::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => RestError(e).into_response(),
    }
}

async fn not_found() -> Response {
    RestError(ApiError::not_found(None, "no such endpoint")).into_response()
}

async fn method_not_allowed() -> Response {
    let mut r = RestError(ApiError::new(
        ErrorCode::InvalidRequest,
        None,
        "method not allowed on this endpoint",
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::InvalidParameter => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        // nginx's "client closed request": there is no standard code for it.
        ErrorCode::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error": {"code", "message", "field"}}`, shared with gRPC status details.
pub fn error_body(e: &ApiError) -> serde_json::Value {
    // Strings and an Option of one: serialising cannot fail.
    serde_json::to_value(openapi::ErrorBody::from(e)).unwrap_or_default()
}

pub struct RestError(pub ApiError);

impl From<ApiError> for RestError {
    fn from(e: ApiError) -> Self {
        RestError(e)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let mut r = (http_status(self.0.code), axum::Json(error_body(&self.0))).into_response();
        if let Some(s) = self.0.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert("retry-after", v);
        }
        r
    }
}

pub type RestResult<T> = Result<T, RestError>;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    state.auth.authenticate(
        header(headers, "authorization"),
        header(headers, "x-namespace"),
    )
}

/// The organisation and namespace the caller's credentials give access to.
fn scope(state: &AppState, headers: &HeaderMap) -> ApiResult<Scope> {
    let c = caller(state, headers)?;
    Scope::new(&c.org, &c.namespace)
}

/// A query string into `T`; unknown or malformed parameters are `invalid_request`.
fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> ApiResult<T> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::invalid_request("query", e.to_string()))
}

/// Read a whole body, refusing more than `limit` bytes with our 413.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> ApiResult<bytes::Bytes> {
    let too_large =
        || ApiError::payload_too_large(None, format!("the request body exceeds {limit} bytes"));
    if let Some(len) = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if over {
            too_large()
        } else {
            ApiError::invalid_request("body", format!("could not read the request body: {e}"))
        }
    })
}

/// Parse JSON, naming the failing field (`config.algorithm_params`, `sample_size`, ...).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    // serde's derived structs also accept a JSON array of their fields in order, so
    // `[["c"], {...}]` would run as an execute and a stray `[[[` would be answered about a
    // field "[0][0]". Every body of this API is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            None,
            "the body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    None,
                    format!("the body is not valid JSON: {message}"),
                )
            }
            _ => {
                let field = named_field(&message)
                    .map(|f| {
                        if path == "." || path.is_empty() {
                            f.to_owned()
                        } else if path.ends_with(f) {
                            path.clone()
                        } else {
                            format!("{path}.{f}")
                        }
                    })
                    .unwrap_or(path);
                // serde's "at line 1 column 9" is noise once the field is named.
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_owned();
                ApiError::invalid_request(&field, message)
            }
        }
    })
}

/// The field a serde message is about ("missing field `x`", "unknown field `x`").
fn named_field(message: &str) -> Option<&str> {
    for marker in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            return rest.split('`').next();
        }
    }
    None
}
