//! Binding and serving both transports until shutdown.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::grpc::{ClusterApi, CollectionApi, pb};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// Both listeners, bound (so that port 0 resolves to the real port before serving).
pub struct Listeners {
    grpc: TcpListener,
    http: TcpListener,
}

impl Listeners {
    pub async fn bind(grpc_addr: &str, http_addr: &str) -> Result<Self, ServeError> {
        let bind = |addr: &str| {
            let addr = addr.to_owned();
            async move {
                TcpListener::bind(&addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })
            }
        };
        Ok(Listeners {
            grpc: bind(grpc_addr).await?,
            http: bind(http_addr).await?,
        })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }
}

/// Serve gRPC (with health and reflection) and REST until `shutdown` fires.
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let max_json = state.limits.max_json_bytes;
    let max_upload = state.limits.max_upload_bytes;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::cluster_service_server::ClusterServiceServer<ClusterApi>>()
        .await;
    health_reporter
        .set_serving::<pb::collection_service_server::CollectionServiceServer<CollectionApi>>()
        .await;
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    // grpcurl up to 1.8 and many other tools still speak only v1alpha reflection.
    let reflection_alpha = reflection_builder()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    // tonic's 4 MiB default would cut requests and responses short of our own limits.
    let cluster =
        pb::cluster_service_server::ClusterServiceServer::new(ClusterApi::new(state.clone()))
            .max_decoding_message_size(max_json)
            .max_encoding_message_size(usize::MAX);
    let collections = pb::collection_service_server::CollectionServiceServer::new(
        CollectionApi::new(state.clone()),
    )
    // One message of the upsert stream; the whole stream is bounded by max_upload_bytes.
    .max_decoding_message_size(max_upload.min(64 << 20))
    .max_encoding_message_size(usize::MAX);

    let grpc_shutdown = shutdown.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(limit) = state.limits.request_timeout {
        builder = builder.timeout(limit);
    }
    let grpc = builder
        .layer(tower::util::MapResponseLayer::new(
            tonic_refusals_in_our_terms::<tonic::body::Body>
                as fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>,
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(cluster)
        .add_service(collections)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.grpc), async move {
            grpc_shutdown.cancelled().await
        });

    let engine = state.engine.clone();
    let http_shutdown = shutdown.clone();
    let http = axum::serve(listeners.http, super::rest::router(state))
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await });

    // Retention (when configured) sweeps at start-up and then periodically; it stops with
    // the engine's shutdown, and with this function at the latest.
    let sweeper = engine.start_retention();
    let (g, h) = tokio::join!(grpc, async { http.await.map_err(ServeError::Http) });
    if let Some(task) = sweeper {
        task.abort();
    }
    g?;
    h?;
    Ok(())
}

/// tonic answers some requests itself, before any handler runs and without our metadata: a
/// message above `max_decoding_message_size` (OUT_OF_RANGE), and a unary call without a
/// message or with a malformed frame (INTERNAL, "Missing request message."). Both are the
/// caller's doing, so they get the error table's answers: RESOURCE_EXHAUSTED with
/// `payload_too_large` (as REST answers 413), and INVALID_ARGUMENT with `invalid_request`.
/// Every error of ours carries `x-error-code` (`grpc::status::to_status`), so only tonic's
/// own refusals are rewritten.
fn tonic_refusals_in_our_terms<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let headers = resp.headers_mut();
    if headers.contains_key("x-error-code") {
        return resp;
    }
    let status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32);
    let (code, error_code) = match status {
        Some(tonic::Code::OutOfRange) => (tonic::Code::ResourceExhausted, "payload_too_large"),
        Some(tonic::Code::Internal) => (tonic::Code::InvalidArgument, "invalid_request"),
        _ => return resp,
    };
    headers.insert("grpc-status", http::HeaderValue::from(code as i32));
    headers.insert("x-error-code", http::HeaderValue::from_static(error_code));
    resp
}
