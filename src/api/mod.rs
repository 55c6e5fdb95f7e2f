//! The transports: gRPC (tonic) and REST (axum), twins over the same engine. This is the
//! only layer that knows wire formats; each maps `ApiError` to its status codes once.

pub mod auth;
pub mod grpc;
pub mod rest;
pub mod runtime;
pub mod server;
pub mod streaming;

use std::sync::Arc;

use crate::engine::Engine;

/// Size limits enforced at the edge (framework defaults are replaced by these).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest JSON body (REST) or unary message (gRPC).
    pub max_json_bytes: usize,
    /// Largest upload (Parquet body, or a whole gRPC upsert stream).
    pub max_upload_bytes: usize,
    /// A request still unanswered after this is abandoned (its run cancelled): REST
    /// answers 504 `deadline_exceeded`; gRPC applies it like a client's `grpc-timeout`
    /// (tonic answers CANCELLED), and a client's own shorter deadline always holds.
    pub request_timeout: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_bytes: 8 << 20,
            max_upload_bytes: 1 << 30,
            request_timeout: None,
        }
    }
}

/// A unary execute, as both transports serve it. The run computes in a task of its own,
/// so that when the caller goes away (a client that disconnects, a deadline that passes)
/// and drops this future, the guard cancels the run and the task still sees it to its
/// end: the run stops at its next checkpoint and is recorded `cancelled`, rather than left
/// `running` by a future dropped halfway through.
pub(crate) async fn execute_unary(
    state: &AppState,
    caller: crate::model::Caller,
    req: crate::model::ExecuteRequest,
) -> crate::model::ApiResult<crate::model::ExecuteResponse> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let ctx = crate::model::RunContext::new(0, crate::model::DeviceKind::Cpu).with_cancel(cancel);
    let engine = Arc::clone(&state.engine);
    tokio::spawn(async move { engine.execute(&caller, req, ctx).await })
        .await
        .map_err(crate::model::ApiError::internal)?
}

/// What both transports share.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub auth: Arc<auth::Authenticator>,
    pub limits: Limits,
}

/// Page size for list endpoints: default 100, at most 1000.
pub fn page_limit(requested: Option<i64>) -> crate::model::ApiResult<usize> {
    match requested {
        None => Ok(100),
        Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Some(n) => Err(crate::model::ApiError::invalid_parameter(
            "limit",
            format!("must be between 1 and 1000, got {n}"),
        )),
    }
}

/// A member offset: 0 or more, default 0.
pub fn member_offset(requested: Option<i64>) -> crate::model::ApiResult<u64> {
    match requested {
        None => Ok(0),
        Some(n) => u64::try_from(n).map_err(|_| {
            crate::model::ApiError::invalid_parameter(
                "offset",
                format!("must be 0 or more, got {n}"),
            )
        }),
    }
}

/// A cluster filter: absent, or a non-empty id.
pub fn member_cluster(cluster_id: Option<&str>) -> crate::model::ApiResult<Option<&str>> {
    match cluster_id {
        Some("") => Err(crate::model::ApiError::invalid_parameter(
            "cluster_id",
            "must not be empty; leave it out for every member",
        )),
        other => Ok(other),
    }
}
