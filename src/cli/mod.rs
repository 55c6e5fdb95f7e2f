//! Command line: flags of the operator contract, each also `CLUSTERD_<FLAG>`.

mod example_data;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use clusterd::api::auth::Authenticator;
use clusterd::api::server::{Listeners, TlsConfig, serve};
use clusterd::api::{AppState, Limits};
use clusterd::engine::{Engine, EngineConfig, RetentionPolicy, parse_age};
use clusterd::gpu::DevicePreference;
use clusterd::labeling::{OpenAiConfig, Provider};
use clusterd::store::Store;

#[derive(Parser)]
#[command(
    name = "clusterd",
    version,
    about = "Clustering service: gRPC + REST over Parquet collections"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    // Boxed: the serve flags dwarf the other subcommand's.
    Serve(Box<ServeArgs>),
    /// Write an example collection (Parquet) for the quickstart and tests.
    ExampleData(example_data::ExampleArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Object store: a directory (default ./data), file:///path, or s3://bucket/prefix.
    #[arg(long, env = "CLUSTERD_STORE", default_value = "./data")]
    store: String,
    #[arg(long, env = "CLUSTERD_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: String,
    #[arg(long, env = "CLUSTERD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: String,
    /// TOML key file; without it the server runs in single-user development mode.
    #[arg(long, env = "CLUSTERD_API_KEYS")]
    api_keys: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, gRPC and REST serve TLS only.
    #[arg(long, env = "CLUSTERD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CLUSTERD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// auto | gpu | cpu.
    #[arg(long, env = "CLUSTERD_DEVICE", default_value = "auto")]
    device: DevicePreference,
    #[arg(long, env = "CLUSTERD_MAX_JSON_BYTES", default_value_t = 8 << 20)]
    max_json_bytes: usize,
    #[arg(long, env = "CLUSTERD_MAX_UPLOAD_BYTES", default_value_t = 1 << 30)]
    max_upload_bytes: usize,
    /// Most members returned inline with include_members.
    #[arg(long, env = "CLUSTERD_MAX_MEMBERS", default_value_t = 100_000)]
    max_members: usize,
    /// Most documents one run may load (after sample_size); 0: no limit.
    #[arg(long, env = "CLUSTERD_MAX_DOCUMENTS", default_value_t = 50_000_000)]
    max_documents: usize,
    /// Most memory one run may need by its estimate (documents × dimension × 8 bytes + 96
    /// bytes per document): bytes, or a number with K, M, G or T (binary units); `auto`
    /// is half of this machine's memory; 0: no limit.
    #[arg(long, env = "CLUSTERD_MAX_RUN_MEMORY", default_value = "auto")]
    max_run_memory: String,
    /// Seconds a request may take before it is abandoned and its run cancelled (REST: 504
    /// deadline_exceeded; gRPC: also any shorter client deadline); 0: no limit.
    #[arg(long, env = "CLUSTERD_REQUEST_TIMEOUT_S", default_value_t = 3600.0)]
    request_timeout_s: f64,
    /// Runs computing at once.
    #[arg(long, env = "CLUSTERD_MAX_CONCURRENT_RUNS", default_value_t = 2)]
    max_concurrent_runs: usize,
    /// Runs waiting for a slot before new ones get rate_limited.
    #[arg(long, env = "CLUSTERD_MAX_QUEUED_RUNS", default_value_t = 32)]
    max_queued_runs: usize,
    /// Allow development mode (no keys) on a non-loopback address.
    #[arg(long, env = "CLUSTERD_INSECURE_DEV_MODE")]
    insecure_dev_mode: bool,
    #[arg(long, env = "CLUSTERD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// OpenAI-compatible chat-completions base URL (e.g. https://api.openai.com/v1) for
    /// `llm_labeling`; without it labels come from the built-in offline labeller. The key
    /// is read from CLUSTERD_LLM_API_KEY, else OPENAI_API_KEY (never from a flag: flags
    /// show in process lists).
    #[arg(long, env = "CLUSTERD_LLM_BASE_URL")]
    llm_base_url: Option<String>,
    /// Model used when a request names none.
    #[arg(long, env = "CLUSTERD_LLM_MODEL", default_value = "gpt-4o-mini")]
    llm_model: String,
    /// Seconds per provider request before it counts as timed out.
    #[arg(long, env = "CLUSTERD_LLM_TIMEOUT_S", default_value_t = 30.0)]
    llm_timeout_s: f64,
    /// Retries after a failed provider request (HTTP 429/5xx, timeouts, connection errors).
    #[arg(long, env = "CLUSTERD_LLM_MAX_RETRIES", default_value_t = 2)]
    llm_max_retries: u32,
    /// Clusters labelled by the provider at once.
    #[arg(long, env = "CLUSTERD_LLM_CONCURRENCY", default_value_t = 4)]
    llm_concurrency: usize,
    /// Seconds without a heartbeat after which start-up marks a `running` run as
    /// `failed: interrupted` (its server died). Keep it well above the 5 s heartbeat when
    /// several servers share a store.
    #[arg(long, env = "CLUSTERD_RUN_STALE_AFTER_S", default_value_t = 60)]
    run_stale_after_s: u64,
    /// Seconds a SIGTERM waits for running work to reach a checkpoint and be recorded
    /// before the process exits anyway.
    #[arg(long, env = "CLUSTERD_SHUTDOWN_GRACE_S", default_value_t = 30)]
    shutdown_grace_s: u64,
    /// Remove finished runs (completed, failed, cancelled) this long after they finished:
    /// seconds, or a number with s, m, h or d (`30d`). Off by default.
    #[arg(long, env = "CLUSTERD_RETENTION_MAX_AGE", value_parser = parse_age)]
    retention_max_age: Option<Duration>,
    /// Keep at most this many finished runs per namespace, the newest; older ones are
    /// removed. Running runs are never removed and do not count. Off by default.
    #[arg(long, env = "CLUSTERD_RETENTION_MAX_RUNS", value_parser = clap::value_parser!(u64).range(1..))]
    retention_max_runs: Option<u64>,
    /// Seconds between retention sweeps (one also runs at start-up and after each run).
    #[arg(long, env = "CLUSTERD_RETENTION_INTERVAL_S", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    retention_interval_s: u64,
}

/// The labelling provider the flags describe.
fn labeling_provider(args: &ServeArgs) -> Result<Provider, String> {
    let Some(base_url) = &args.llm_base_url else {
        return Ok(Provider::Offline);
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(format!(
            "--llm-base-url must be an http(s) URL, got {base_url:?}"
        ));
    }
    if !(args.llm_timeout_s.is_finite() && args.llm_timeout_s > 0.0) {
        return Err("--llm-timeout-s must be a positive number of seconds".to_owned());
    }
    let api_key = std::env::var("CLUSTERD_LLM_API_KEY")
        .or_else(|_| std::env::var("OPENAI_API_KEY"))
        .ok()
        .filter(|k| !k.is_empty());
    Ok(Provider::OpenAi(OpenAiConfig {
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key,
        default_model: args.llm_model.clone(),
        timeout: Duration::from_secs_f64(args.llm_timeout_s),
        max_retries: args.llm_max_retries,
        backoff: Duration::from_millis(500),
        max_concurrency: args.llm_concurrency.max(1),
    }))
}

pub fn run() -> Result<(), String> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve_command(*args),
        Command::ExampleData(args) => example_data::write(&args),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Every event inside a run carries the run span's fields (run_id, namespace,
        // algorithm, device, documents): "span" is the innermost, "spans" all of them.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// The TLS identity the flags name: both flags or neither.
fn tls_config(args: &ServeArgs) -> Result<Option<TlsConfig>, String> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsConfig::load(cert, key)
            .map(Some)
            .map_err(|e| e.to_string()),
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err("--tls-cert needs --tls-key (the certificate's private key, PEM)".to_owned())
        }
        (None, Some(_)) => {
            Err("--tls-key needs --tls-cert (the certificate chain, PEM)".to_owned())
        }
    }
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| addr.starts_with("localhost:"))
}

fn serve_command(args: ServeArgs) -> Result<(), String> {
    init_logging(args.log_format);
    let auth = match &args.api_keys {
        Some(path) => Authenticator::from_file(path).map_err(|e| e.to_string())?,
        None => {
            let exposed = [&args.grpc_addr, &args.http_addr]
                .into_iter()
                .find(|a| !is_loopback(a));
            if let Some(addr) = exposed
                && !args.insecure_dev_mode
            {
                return Err(format!(
                    "refusing development mode (no --api-keys) on non-loopback address {addr}; \
                     give --api-keys FILE, or --insecure-dev-mode if you really mean it"
                ));
            }
            tracing::warn!(
                "no --api-keys: development mode (org \"default\", any namespace, any bearer token)"
            );
            Authenticator::Development
        }
    };
    if !(args.request_timeout_s.is_finite() && args.request_timeout_s >= 0.0) {
        return Err(
            "--request-timeout-s must be 0 (no limit) or a positive number of seconds".to_owned(),
        );
    }
    let labeling = labeling_provider(&args)?;
    let tls = tls_config(&args)?;
    if let Provider::OpenAi(c) = &labeling {
        tracing::info!(base_url = %c.base_url, model = %c.default_model,
            key = c.api_key.is_some(), "labelling provider: OpenAI-compatible");
    }
    let runtime = clusterd::api::runtime::build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let store = Store::open(&args.store).map_err(|e| e.to_string())?;
    runtime
        .block_on(store.check_access())
        .map_err(|e| e.to_string())?;
    tracing::info!(store = %store.describe(), "object store");
    let engine = Engine::new(
        store,
        EngineConfig {
            max_concurrent_runs: args.max_concurrent_runs,
            max_queued_runs: args.max_queued_runs,
            max_members: args.max_members,
            device: args.device,
            labeling,
            stale_after: Duration::from_secs(args.run_stale_after_s.max(1)),
            max_documents: (args.max_documents > 0).then_some(args.max_documents),
            max_run_bytes: clusterd::engine::parse_run_memory(&args.max_run_memory)?,
            retention: RetentionPolicy {
                max_age: args.retention_max_age,
                max_runs: args
                    .retention_max_runs
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                interval: Duration::from_secs(args.retention_interval_s),
            },
            ..EngineConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let device = engine.device_info();
    tracing::info!(device = device.kind, name = %device.name, backend = %device.backend, "compute device");
    let state = AppState {
        engine: Arc::new(engine),
        auth: Arc::new(auth),
        limits: Limits {
            max_json_bytes: args.max_json_bytes,
            max_upload_bytes: args.max_upload_bytes,
            request_timeout: (args.request_timeout_s > 0.0)
                .then(|| Duration::from_secs_f64(args.request_timeout_s)),
        },
    };
    runtime.block_on(async move {
        match state.engine.recover_interrupted_runs().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(runs = n, "marked interrupted runs as failed"),
            Err(e) => tracing::warn!(error = %e, "could not check for interrupted runs"),
        }
        let listeners = Listeners::bind(&args.grpc_addr, &args.http_addr)
            .await
            .map_err(|e| e.to_string())?;
        let grpc = listeners.grpc_addr().map_err(|e| e.to_string())?;
        let http = listeners.http_addr().map_err(|e| e.to_string())?;
        let tls_on = tls.is_some();
        tracing::info!(%grpc, %http, tls = tls_on, "listening");
        // One machine-readable line on stdout, so that scripts and tests can start the
        // server on port 0 and learn where it listens.
        println!(
            "{}",
            serde_json::json!({
                "event": "listening",
                "grpc": grpc.to_string(),
                "http": http.to_string(),
                "tls": tls_on,
            })
        );
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        let engine = state.engine.clone();
        let grace = Duration::from_secs(args.shutdown_grace_s);
        tokio::spawn(async move {
            wait_for_signal().await;
            // Stop accepting, and stop every run at its next checkpoint: each handler
            // then records its run as cancelled and answers, and the servers drain.
            tracing::info!(grace_s = grace.as_secs(), "shutting down");
            trigger.cancel();
            engine.shut_down();
        });
        let drained = shutdown.clone();
        let served = serve(state, listeners, tls, shutdown);
        tokio::pin!(served);
        tokio::select! {
            out = &mut served => out.map_err(|e| e.to_string()),
            // A run that cannot reach a checkpoint in time must not hold the process.
            _ = async {
                drained.cancelled().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("shutdown grace period over; exiting with work unfinished");
                Ok(())
            }
        }
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
