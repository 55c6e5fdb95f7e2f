//! Binding and serving both transports until shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
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

/// A client gets this long to complete its TLS handshake before the connection is dropped,
/// so half-open handshakes cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{flag} {path} is not valid PEM: {message}")]
    Pem {
        flag: &'static str,
        path: String,
        message: String,
    },
    #[error("{flag} {path} holds no {what}")]
    Missing {
        flag: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("--tls-cert and --tls-key do not make a usable TLS identity: {0}")]
    Identity(String),
}

/// The server certificate and key both transports serve TLS with, read and checked at
/// start-up so that a bad file stops the server before it announces itself.
#[derive(Clone)]
pub struct TlsConfig {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    rest: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    // The private key stays out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig(<certificate and key>)")
    }
}

impl TlsConfig {
    /// Load a PEM certificate chain (`--tls-cert`) and its PEM private key (`--tls-key`).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |flag: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                flag,
                path: path.display().to_string(),
                source,
            })
        };
        let cert_pem = read("--tls-cert", cert)?;
        let key_pem = read("--tls-key", key)?;
        let pem_error = |flag: &'static str, path: &Path, e: pem::Error| match e {
            pem::Error::NoItemsFound => TlsError::Missing {
                flag,
                path: path.display().to_string(),
                what: if flag == "--tls-cert" {
                    "certificate"
                } else {
                    "private key"
                },
            },
            e => TlsError::Pem {
                flag,
                path: path.display().to_string(),
                message: e.to_string(),
            },
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("--tls-cert", cert, e))?;
        if chain.is_empty() {
            return Err(pem_error("--tls-cert", cert, pem::Error::NoItemsFound));
        }
        let private_key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| pem_error("--tls-key", key, e))?;

        // The provider src/main.rs installed; aws-lc-rs (the only one compiled in) when the
        // library runs in a process that installed none.
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let mut rest = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Identity(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| TlsError::Identity(e.to_string()))?;
        // axum serves both; clients pick.
        rest.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = TlsConfig {
            cert_pem,
            key_pem,
            rest: Arc::new(rest),
        };
        // tonic parses the same PEM on its own; fail here rather than after "listening".
        tonic::transport::Server::builder()
            .tls_config(config.grpc())
            .map_err(|e| TlsError::Identity(format!("gRPC: {e}")))?;
        Ok(config)
    }

    fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

/// The REST listener under TLS. Handshakes run in tasks of their own, off the accept
/// path, so one client that stalls its handshake holds up neither the listener nor
/// anyone else; axum only ever sees finished TLS streams.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    acceptor: tokio::task::AbortHandle,
}

impl TlsListener {
    fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Mostly a connection reset before accept, or out of descriptors:
                        // back off a little instead of spinning.
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // Err: the server is shutting down; the connection just closes.
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            addr,
            acceptor: task.abort_handle(),
        })
    }
}

impl Drop for TlsListener {
    // axum drops the listener when graceful shutdown begins: stop accepting then.
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // Only after the accept task ended, i.e. never while serving.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

async fn serve_http<L>(
    listener: L,
    router: axum::Router,
    shutdown: CancellationToken,
) -> Result<(), ServeError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServeError::Http)
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

/// Serve gRPC (with health and reflection) and REST until `shutdown` fires; both over TLS
/// when `tls` is given.
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    tls: Option<TlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let Listeners {
        grpc: grpc_listener,
        http: http_listener,
    } = listeners;
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

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.grpc())?;
    }
    let grpc_shutdown = shutdown.clone();
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
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), async move {
            grpc_shutdown.cancelled().await
        });

    let engine = state.engine.clone();
    let router = super::rest::router(state);
    let http = async move {
        match tls {
            Some(tls) => {
                let listener =
                    TlsListener::new(http_listener, tls.rest).map_err(ServeError::Http)?;
                serve_http(listener, router, shutdown).await
            }
            None => serve_http(http_listener, router, shutdown).await,
        }
    };

    // Retention (when configured) sweeps at start-up and then periodically; it stops with
    // the engine's shutdown, and with this function at the latest.
    let sweeper = engine.start_retention();
    let (g, h) = tokio::join!(grpc, http);
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
