//! The pipeline of DESIGN §3: validate -> load -> normalize -> algorithm -> metrics ->
//! artifacts -> response. It sees domain types only; the transports in `api/` call
//! `Engine::execute`.

mod admission;
mod grouped;
mod labelling;
mod lifecycle;
mod placement;
mod plan;
mod registry;
mod result;
mod retention;

use std::sync::Arc;
use std::time::Instant;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::algorithms::attribute_grouping::{self, Aggregation, GroupingOptions};
use crate::algorithms::projection::{self, Pca2d};
use crate::gpu;
use crate::labeling::{self, Labels, Provider};
use crate::metrics::{self, MetricsOptions};
use crate::model::{
    ApiError, ApiResult, AttributeAggregation, Caller, DeviceInfo, DeviceKind, ErrorCode,
    ExecuteRequest, ExecuteResponse, Matrix, Metrics, ProgressEvent, RunContext, RunRecord,
    RunRequestRecord, RunState, RunStatus, RunView, Scope,
};
use crate::store::{
    CorePointsArtifact, LoadLimits, LoadRequest, LoadedDocuments, Remainder, SampleArtifact, Store,
};
use crate::telemetry::{RunEnd, Telemetry, device_name};

pub use admission::Admission;
use admission::Ticket;
pub use lifecycle::{HEARTBEAT, STALE_AFTER};
use lifecycle::{RunRecorder, now_rfc3339};
use placement::RunModel;
use plan::Plan;
pub(crate) use plan::check_params;
use registry::{Registration, Registry, Signal};
use result::{MemberSource, Placed, Rendered, RunMembers};
use retention::Retention;
pub use retention::{RetentionPolicy, parse_age};

/// Engine limits and choices fixed at start-up.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Runs that compute at once (each uses every core through rayon).
    pub max_concurrent_runs: usize,
    /// Runs that may wait for a slot; one more is refused with `rate_limited`.
    pub max_queued_runs: usize,
    /// Most members returned inline (`include_members`); above it the request is refused.
    pub max_members: usize,
    pub device: gpu::DevicePreference,
    pub metrics: MetricsOptions,
    /// Where `llm_labeling` labels come from when a request does not say (and whether
    /// `provider: "openai"` is available at all).
    pub labeling: Provider,
    /// A run whose heartbeat is older than this when a server starts was left by a dead
    /// server: start-up marks it `failed: interrupted`. Several servers may share one
    /// store, so a live one's runs must stay fresher than this (heartbeat every 5 s).
    pub stale_after: std::time::Duration,
    /// Most documents one run may load (after sampling); above it: 413 on `sample_size`.
    pub max_documents: Option<usize>,
    /// Most memory one run may need by the estimate of `store::LoadLimits`; above it: 413
    /// on `sample_size`, saying how much it needs.
    pub max_run_bytes: Option<u64>,
    /// Which finished runs the server removes, and how often it looks.
    pub retention: RetentionPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent_runs: 2,
            max_queued_runs: 32,
            max_members: 100_000,
            device: gpu::DevicePreference::Auto,
            metrics: MetricsOptions::default(),
            labeling: Provider::Offline,
            stale_after: STALE_AFTER,
            max_documents: None,
            max_run_bytes: None,
            retention: RetentionPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Device(#[from] gpu::DeviceError),
    #[error("max_concurrent_runs must be at least 1")]
    NoRunSlots,
}

pub struct Engine {
    store: Arc<Store>,
    config: EngineConfig,
    admission: Admission,
    device: gpu::SelectedDevice,
    /// Names this server process in run status files.
    instance_id: String,
    /// Fired when the server shuts down: every run stops at its next checkpoint and is
    /// recorded as cancelled; new runs are refused.
    shutdown: CancellationToken,
    /// The runs computing now, for `cancel`.
    runs: Arc<Registry>,
    /// Placement models of stored runs recently assigned to.
    models: placement::ModelCache,
    retention: Retention,
    /// This process's run counters, read by `GET /metrics`.
    telemetry: Telemetry,
}

/// Bytes a run holds per vector value: the loaded f32 vectors and one working copy (the
/// k-means centring copy, a GPU upload staging, the metrics' norms and blocks are smaller).
const RUN_BYTES_PER_VALUE: u64 = 8;

/// How long `cancel` waits for the run to reach a checkpoint and record itself cancelled
/// before answering "cancelling" (algorithms check at least about once a second).
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// What a cancel request achieved.
#[derive(Debug)]
pub enum CancelOutcome {
    /// The run stopped; its status as recorded (normally `cancelled`; `completed` when
    /// the request came after its artifacts were being written).
    Stopped(Box<RunView>),
    /// Told to stop; it has not reached a checkpoint yet (or it was an unstored run).
    Cancelling,
}

/// A run that passed every check and holds its place; see `Engine::accept`.
struct Accepted {
    run_id: String,
    created_at: String,
    started: Instant,
    scope: Scope,
    plan: Plan,
    labeller: Option<Provider>,
    ticket: Ticket,
    recorder: Option<RunRecorder>,
    registration: Registration,
}

/// What the computation produced, before it is ranked, stored and rendered.
struct Computed {
    loaded: LoadedDocuments,
    /// The vectors as clustered (normalised when asked); no columns when the run had none.
    vectors: Matrix,
    rendered: Rendered,
    /// The parameters as used, for the run record.
    resolved_params: serde_json::Value,
    metrics: Option<Metrics>,
    coordinates: Option<Vec<[f32; 2]>>,
    /// Cluster labels by rank, when `llm_labeling` asked for them.
    labels: Option<Labels>,
    /// How the run places other vectors (vector runs that store results).
    model: Option<Arc<RunModel>>,
    /// The documents a sample left out, placed after the fit.
    placed: Vec<Placed>,
}

/// Row L2 normalisation on the run's device; the CPU twin gives the same rows, so a device
/// fault only costs time.
pub(super) fn normalize_rows(vectors: &mut Matrix, ctx: &RunContext) {
    if ctx.device == DeviceKind::Gpu {
        let on_gpu =
            gpu::shared_context().and_then(|c| gpu::normalize::normalize_rows(&c, vectors, None));
        match on_gpu {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "GPU normalisation failed; using the CPU"),
        }
    }
    vectors.normalize_rows();
}

/// Run ids sort newest first: 12 hex digits of (2^48 − 1 − unix millis), then 8 random.
fn new_run_id() -> String {
    let millis = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    let inverted = 0xFFFF_FFFF_FFFFu64.saturating_sub(millis);
    let random: u32 = rand::rng().random();
    format!("run_{inverted:012x}{random:08x}")
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Result<Self, EngineError> {
        if config.max_concurrent_runs == 0 {
            return Err(EngineError::NoRunSlots);
        }
        let device = gpu::select_device(config.device)?;
        let instance: u64 = rand::rng().random();
        let telemetry = Telemetry::new(store.bytes_read());
        let store = Arc::new(store);
        let runs = Arc::new(Registry::default());
        let retention = Retention::new(
            store.clone(),
            runs.clone(),
            config.retention.clone(),
            config.stale_after,
        );
        Ok(Engine {
            store,
            admission: Admission::new(config.max_concurrent_runs, config.max_queued_runs),
            config,
            device,
            instance_id: format!("{}-{instance:016x}", std::process::id()),
            shutdown: CancellationToken::new(),
            models: placement::ModelCache::default(),
            runs,
            retention,
            telemetry,
        })
    }

    /// The process counters, for the transports to count their requests into.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The process metrics in the Prometheus text format, with the admission gauges as
    /// they are now.
    pub fn metrics_text(&self) -> ApiResult<String> {
        self.telemetry
            .set_admission(self.admission.queued(), self.admission.running());
        self.telemetry.encode().map_err(ApiError::internal)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn device_info(&self) -> DeviceInfo {
        self.device.info()
    }

    /// Stop every run at its next checkpoint (graceful shutdown); runs started later are
    /// cancelled at once.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
        self.runs.cancel_all();
    }

    /// Run one clustering request. `ctx` carries the caller's cancel token and progress
    /// sink; the engine sets the seed and device from the request and itself. The run is
    /// registered for `cancel` under the caller's token while it runs.
    pub async fn execute(
        &self,
        caller: &Caller,
        req: ExecuteRequest,
        ctx: RunContext,
    ) -> ApiResult<ExecuteResponse> {
        let accepted = self.accept(caller, &req, ctx.cancel_token()).await?;
        self.run(accepted, req, ctx).await
    }

    /// Start a run in the background and answer its run id at once. The same checks as
    /// `execute` happen first (a full queue is `rate_limited` here, not later), and the
    /// run is already recorded `running` when this returns, so get/list/cancel see it.
    pub async fn submit(
        self: &Arc<Self>,
        caller: &Caller,
        req: ExecuteRequest,
    ) -> ApiResult<String> {
        if !req.store_results {
            return Err(ApiError::invalid_request(
                "store_results",
                "must be true for a background run: its result is only readable from the \
                 stored run",
            ));
        }
        let cancel = CancellationToken::new();
        let accepted = self.accept(caller, &req, &cancel).await?;
        let run_id = accepted.run_id.clone();
        let engine = self.clone();
        tokio::spawn(async move {
            // Device and seed come from the engine and the plan, as for `execute`.
            let ctx = RunContext::new(0, DeviceKind::Cpu).with_cancel(cancel);
            if let Err(e) = engine.run(accepted, req, ctx).await {
                tracing::info!(code = e.code.as_str(), error = %e.message, "background run ended without a result");
            }
        });
        Ok(run_id)
    }

    /// Stop a run of the caller's scope that this process is computing; it stops at its
    /// next checkpoint and is recorded `cancelled`. Waits a little for that so the answer
    /// can usually show the final status. A finished run is a `conflict`; an unknown run,
    /// or one of another org or namespace, is `not_found`.
    pub async fn cancel(&self, caller: &Caller, run_id: &str) -> ApiResult<CancelOutcome> {
        let scope = Scope::new(&caller.org, &caller.namespace)?;
        match self.runs.signal(&scope, run_id) {
            Signal::Sent { done } => {
                tracing::info!(%run_id, "run cancel requested");
                if tokio::time::timeout(CANCEL_WAIT, done.cancelled())
                    .await
                    .is_err()
                {
                    return Ok(CancelOutcome::Cancelling);
                }
                // An unstored run has no record to show once it stopped.
                match self.store.get_run(&scope, run_id).await {
                    Ok(view) => Ok(CancelOutcome::Stopped(Box::new(view))),
                    Err(e) if e.code == ErrorCode::NotFound => Ok(CancelOutcome::Cancelling),
                    Err(e) => Err(e),
                }
            }
            Signal::NotRunningHere => {
                let view = self.store.get_run(&scope, run_id).await?;
                let state = view.status.status;
                Err(ApiError::conflict(
                    Some("run_id"),
                    if state == RunState::Running {
                        format!(
                            "run is running in another server process ({}); only that \
                             process can cancel it",
                            view.status.instance_id
                        )
                    } else {
                        format!("run is {}", state.as_str())
                    },
                ))
            }
        }
    }

    /// Validate the request, take its place in line, register it for cancellation and
    /// (when stored) record it `running`: everything that can refuse a run before it
    /// computes.
    async fn accept(
        &self,
        caller: &Caller,
        req: &ExecuteRequest,
        cancel: &CancellationToken,
    ) -> ApiResult<Accepted> {
        let started = Instant::now();
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let run_id = new_run_id();
        let scope = Scope::new(&caller.org, &caller.namespace)?;
        let plan = Plan::from_request(req)?;
        // A labeller the server cannot provide is refused before any work.
        let labeller = req
            .labeling
            .as_ref()
            .map(|l| labelling::provider_for(l, &self.config.labeling))
            .transpose()?;
        if self.shutdown.is_cancelled() {
            return Err(ApiError::cancelled("the server is shutting down"));
        }
        let ticket = self.admission.ticket()?;
        // Registered before the status is written: a run visible as `running` here can
        // always be cancelled (and is, by a shutdown).
        let registration = self.runs.register(&run_id, scope.clone(), cancel.clone());
        if self.shutdown.is_cancelled() {
            cancel.cancel();
        }
        let recorder = if req.store_results {
            let now = now_rfc3339();
            Some(
                RunRecorder::start(
                    self.store.clone(),
                    scope.clone(),
                    RunStatus {
                        run_id: run_id.clone(),
                        status: RunState::Running,
                        algorithm: req.algorithm.as_str().to_owned(),
                        collection_ids: req.collection_ids.clone(),
                        description: req.description.clone(),
                        created_at: created_at.clone(),
                        updated_at: now.clone(),
                        heartbeat_at: now,
                        instance_id: self.instance_id.clone(),
                        progress: None,
                        error: None,
                    },
                )
                .await?,
            )
        } else {
            None
        };
        Ok(Accepted {
            run_id,
            created_at,
            started,
            scope,
            plan,
            labeller,
            ticket,
            recorder,
            registration,
        })
    }

    /// Wait for a slot, compute, store and record an accepted run, all inside the run's
    /// span: every log line of the run (on the blocking threads too, which enter it) carries
    /// its id, scope, algorithm and, once known, device and documents.
    async fn run(
        &self,
        accepted: Accepted,
        req: ExecuteRequest,
        ctx: RunContext,
    ) -> ApiResult<ExecuteResponse> {
        let span = tracing::info_span!(
            "run",
            run_id = %accepted.run_id,
            org = %accepted.scope.org(),
            namespace = %accepted.scope.namespace(),
            algorithm = req.algorithm.as_str(),
            device = tracing::field::Empty,
            documents = tracing::field::Empty,
        );
        self.run_in_span(accepted, req, ctx).instrument(span).await
    }

    async fn run_in_span(
        &self,
        accepted: Accepted,
        req: ExecuteRequest,
        ctx: RunContext,
    ) -> ApiResult<ExecuteResponse> {
        let Accepted {
            run_id,
            created_at,
            started,
            scope,
            plan,
            labeller,
            ticket,
            recorder,
            registration,
        } = accepted;
        let outcome = async {
            let _slot = ticket.slot(ctx.cancel_token()).await?;
            tracing::Span::current().record("device", device_name(self.device.kind()));
            self.telemetry.run_started(self.device.kind());
            tracing::info!("run started");

            // Progress goes to the caller (streaming) and into status.json.
            let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<ProgressEvent>();
            let run_ctx = RunContext::new(plan.seed(), self.device.kind())
                .with_cancel(ctx.cancel_token().clone())
                .with_progress(progress_tx);
            let forward = |event: ProgressEvent| {
                if let Some(r) = &recorder {
                    r.progress(&event);
                }
                ctx.progress(event);
            };
            let computation = async {
                match plan {
                    Plan::AttributeBased => {
                        self.compute_grouped(&scope, &req, labeller.as_ref(), run_ctx)
                            .await
                    }
                    _ => {
                        self.compute(&scope, &req, &plan, labeller.as_ref(), run_ctx)
                            .await
                    }
                }
            };
            tokio::pin!(computation);
            let computed = loop {
                tokio::select! {
                    out = &mut computation => break out,
                    Some(event) = progress_rx.recv() => forward(event),
                }
            };
            while let Ok(event) = progress_rx.try_recv() {
                forward(event);
            }
            let computed = computed?;
            // The last point where a cancel stops the run: once artifacts are being
            // written the run completes, so a cancelled run never leaves artifacts
            // without its record.
            ctx.checkpoint()?;
            if req.store_results {
                // Artifacts of a large run take a while to write; say so rather than sit
                // silently at the last computing stage.
                forward(ProgressEvent {
                    stage: "writing",
                    fraction: 0.0,
                    iteration: None,
                    inertia: None,
                    documents: None,
                });
            }
            self.finish(
                &scope,
                &req,
                &plan,
                labeller.as_ref(),
                computed,
                run_id.clone(),
                created_at,
                started,
            )
            .await
        }
        .await;
        let result = match (outcome, recorder) {
            (Ok((response, record)), Some(recorder)) => match recorder.complete(&record).await {
                Ok(()) => Ok(response),
                Err(e) => Err(e),
            },
            (Ok((response, _)), None) => Ok(response),
            (Err(e), Some(recorder)) => {
                recorder.fail(&e).await;
                Err(e)
            }
            (Err(e), None) => Err(e),
        };
        // Only now, with the final status written, may `cancel` treat the run as finished.
        drop(registration);
        if req.store_results {
            self.retention.after_run(&scope);
        }
        self.run_ended(req.algorithm.as_str(), started, &result);
        result
    }

    /// The run's last event and its counters: how it ended, after how long.
    fn run_ended(
        &self,
        algorithm: &'static str,
        started: Instant,
        result: &ApiResult<ExecuteResponse>,
    ) {
        let elapsed = started.elapsed();
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let (state, error) = match result {
            Ok(_) => (RunState::Completed, None),
            Err(e) if e.code == ErrorCode::Cancelled => (RunState::Cancelled, None),
            Err(e) => (RunState::Failed, Some(e.code)),
        };
        let (documents, placed) = result.as_ref().map_or((0, 0), |r| {
            (
                u64::try_from(r.num_documents).unwrap_or(u64::MAX),
                r.placed_documents
                    .map_or(0, |p| u64::try_from(p).unwrap_or(u64::MAX)),
            )
        });
        self.telemetry.run_ended(&RunEnd {
            algorithm,
            state,
            error,
            elapsed,
            documents,
            placed,
        });
        match result {
            Ok(r) => tracing::info!(
                state = state.as_str(),
                elapsed_ms,
                clusters = r.num_clusters,
                placed,
                "run ended"
            ),
            Err(e) => tracing::info!(
                state = state.as_str(),
                elapsed_ms,
                error_code = e.code.as_str(),
                error = %e.message,
                "run ended"
            ),
        }
    }

    /// Load the run's documents: the vector column (when the request names one), then
    /// `attributes` (with their request fields), then the labelling inputs.
    async fn load(
        &self,
        scope: &Scope,
        req: &ExecuteRequest,
        attributes: &[(String, String)],
        keep_remainder: bool,
        ctx: &RunContext,
    ) -> ApiResult<(LoadedDocuments, Option<Remainder>)> {
        ctx.progress(ProgressEvent {
            stage: "loading",
            fraction: 0.0,
            iteration: None,
            inertia: None,
            documents: None,
        });
        let mut wanted: Vec<(String, String)> = attributes.to_vec();
        if let Some(l) = &req.labeling {
            wanted.extend(l.inputs.iter().enumerate().map(|(i, path)| {
                (
                    path.clone(),
                    format!("config.llm_labeling.labeling_inputs[{i}]"),
                )
            }));
        }
        let loaded = self
            .store
            .load_with_remainder(
                scope,
                &LoadRequest {
                    collection_ids: req.collection_ids.clone(),
                    vector_column: req.vector_name.clone(),
                    attributes: wanted.iter().map(|(p, _)| p.clone()).collect(),
                    attribute_fields: wanted.into_iter().map(|(_, f)| f).collect(),
                    sample_size: req.sample_size,
                    seed: ctx.seed,
                    document_ids: None,
                    document_ids_field: String::new(),
                    limits: LoadLimits {
                        max_documents: self.config.max_documents,
                        max_bytes: self.config.max_run_bytes,
                        bytes_per_value: RUN_BYTES_PER_VALUE,
                    },
                },
                keep_remainder,
                ctx,
            )
            .await;
        match (loaded, &req.labeling) {
            // The default text column is an assumption; say how to name another.
            (Err(e), Some(l))
                if !l.inputs_given
                    && e.field.as_deref() == Some("config.llm_labeling.labeling_inputs[0]") =>
            {
                Err(ApiError::new(
                    e.code,
                    Some("config.llm_labeling.labeling_inputs"),
                    format!(
                        "{}; labelling reads a \"text\" attribute unless labeling_inputs \
                         names the text attribute(s)",
                        e.message
                    ),
                ))
            }
            (loaded, _) => {
                let loaded = loaded?;
                let documents = u64::try_from(loaded.0.document_ids.len()).unwrap_or(u64::MAX);
                tracing::Span::current().record("documents", documents);
                ctx.progress(ProgressEvent {
                    stage: "loading",
                    fraction: 1.0,
                    iteration: None,
                    inertia: None,
                    documents: u64::try_from(loaded.0.document_ids.len()).ok(),
                });
                Ok(loaded)
            }
        }
    }

    fn check_inline_members(&self, req: &ExecuteRequest, members: usize) -> ApiResult<()> {
        if req.include_members && members > self.config.max_members {
            return Err(ApiError::payload_too_large(
                Some("include_members"),
                format!(
                    "{members} members exceed the inline limit of {}; set sample_size, or read \
                     members.parquet (store_results) instead",
                    self.config.max_members
                ),
            ));
        }
        Ok(())
    }

    /// Label the corpus (after the computation, on the async side: a provider is network
    /// I/O); a cancelled run stops here.
    async fn label(
        corpus: Option<labeling::Corpus>,
        req: &ExecuteRequest,
        labeller: Option<&Provider>,
        ctx: &RunContext,
    ) -> ApiResult<Option<Labels>> {
        let (Some(corpus), Some(provider), Some(l)) = (corpus, labeller, &req.labeling) else {
            return Ok(None);
        };
        ctx.progress(ProgressEvent {
            stage: "labeling",
            fraction: 0.0,
            iteration: None,
            inertia: None,
            documents: None,
        });
        let labels = labelling::label(&corpus, l, provider, ctx.cancel_token()).await;
        ctx.checkpoint()?;
        Ok(Some(labels))
    }

    /// attribute_based: load the attributes (and the vectors when named), group, score
    /// when the groups partition the documents and there are vectors.
    async fn compute_grouped(
        &self,
        scope: &Scope,
        req: &ExecuteRequest,
        labeller: Option<&Provider>,
        ctx: RunContext,
    ) -> ApiResult<Computed> {
        let grouping_req = req.attribute_grouping.clone().ok_or_else(|| {
            ApiError::invalid_request("config.attribute_config", "is required for attribute_based")
        })?;
        let names = grouping_req.attributes.clone();
        let fields: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    p.clone(),
                    format!("config.attribute_config.attributes[{i}]"),
                )
            })
            .collect();
        let (mut loaded, _) = self.load(scope, req, &fields, false, &ctx).await?;
        let n = loaded.document_ids.len();
        self.check_inline_members(req, n)?;
        let mut vectors = loaded.vectors.take();
        let mut attributes = std::mem::take(&mut loaded.attributes);
        let texts = attributes.split_off(names.len().min(attributes.len()));
        ctx.checkpoint()?;
        let normalize = req.normalize_features;
        let compute_metrics = req.compute_metrics;
        let save_coordinates = req.save_artifacts;
        let wants_labels = labeller.is_some();
        let vector_name = req.vector_name.clone().unwrap_or_default();
        let metrics_options = self.config.metrics.clone();
        let job_ctx = ctx.clone();
        let span = tracing::Span::current();
        let (vectors, rendered, metrics, coordinates, corpus) =
            tokio::task::spawn_blocking(move || {
                let _run = span.entered();
                let ctx = job_ctx;
                if let Some(x) = vectors.as_mut()
                    && normalize
                {
                    ctx.stage("normalizing", 0.0);
                    normalize_rows(x, &ctx);
                }
                ctx.stage("clustering", 0.0);
                let options = GroupingOptions {
                    hierarchical: grouping_req.hierarchical,
                    aggregation: match grouping_req.aggregation {
                        AttributeAggregation::MostFrequent => Aggregation::MostFrequent,
                        AttributeAggregation::First => Aggregation::First,
                        AttributeAggregation::All => Aggregation::All,
                    },
                };
                let grouping = attribute_grouping::group(&attributes, n, &options, &ctx)?;
                drop(attributes);
                let metrics = if compute_metrics {
                    let labels = grouped::single_labels(&grouping, n);
                    Some(match (&vectors, labels) {
                        (Some(x), Some(labels)) => {
                            metrics::compute(x, &labels, &metrics_options, &ctx)?
                        }
                        (None, _) => Metrics {
                            note: Some(
                                "no feature_vector: attribute groups have no geometry to score"
                                    .to_owned(),
                            ),
                            ..Metrics::default()
                        },
                        (Some(_), None) => Metrics {
                            note: Some(
                                "documents in several groups (aggregation_method all) do not \
                                 form a partition to score"
                                    .to_owned(),
                            ),
                            ..Metrics::default()
                        },
                    })
                } else {
                    None
                };
                let coordinates = match (&vectors, save_coordinates) {
                    (Some(x), true) => Some(projection::pca_2d(x, ctx.seed, &ctx)?),
                    _ => None,
                };
                let (rendered, order) = grouped::render(
                    &grouping,
                    &names,
                    grouping_req.hierarchical,
                    vectors.as_ref(),
                    &vector_name,
                );
                let corpus = wants_labels.then(|| {
                    let mut rank_of = vec![0usize; order.len()];
                    for (rank, &g) in order.iter().enumerate() {
                        rank_of[g] = rank;
                    }
                    let memberships = grouping.memberships.iter().flat_map(|&(row, leaf)| {
                        grouped::with_ancestors(&grouping, leaf as usize)
                            .map(move |g| (g, row as usize))
                    });
                    let ranked = memberships.map(|(g, row)| (rank_of[g], row, None));
                    labelling::corpus(rendered.centroids.len(), ranked, &texts)
                });
                Ok::<_, ApiError>((vectors, rendered, metrics, coordinates, corpus))
            })
            .await
            .map_err(ApiError::internal)??;
        self.check_inline_members(req, rendered.memberships.len())?;
        let labels = Self::label(corpus, req, labeller, &ctx).await?;
        Ok(Computed {
            vectors: vectors.unwrap_or_else(|| Matrix::zeros(n, 0)),
            loaded,
            rendered,
            resolved_params: serde_json::json!({}),
            metrics,
            coordinates,
            labels,
            model: None,
            placed: Vec::new(),
        })
    }

    /// Load, cluster, score: everything up to the labels.
    async fn compute(
        &self,
        scope: &Scope,
        req: &ExecuteRequest,
        plan: &Plan,
        labeller: Option<&Provider>,
        ctx: RunContext,
    ) -> ApiResult<Computed> {
        // The documents a sample leaves out are placed after the fit when they have
        // somewhere to go: members.parquet.
        let (mut loaded, remainder) = self.load(scope, req, &[], req.store_results, &ctx).await?;
        let n = loaded.document_ids.len();
        self.check_inline_members(req, n)?;
        // Taken, not cloned: the engine holds one copy of the vectors.
        let mut vectors = loaded.vectors.take().ok_or_else(|| {
            ApiError::internal("store returned no vectors for a vector algorithm")
        })?;
        ctx.checkpoint()?;
        plan.check_against_data(n)?;
        let plan = plan.clone();
        let normalize = req.normalize_features;
        let compute_metrics = req.compute_metrics;
        // Every stored run draws: members carry coordinates (the members page, sample.parquet).
        let project = req.save_artifacts || req.store_results;
        let wants_model = req.store_results;
        let metrics_options = self.config.metrics.clone();
        // The labelling texts, moved into the computation and dropped once in the corpus.
        let texts = std::mem::take(&mut loaded.attributes);
        let wants_labels = labeller.is_some();
        let job_ctx = ctx.clone();
        let vector_name = req.vector_name.clone().unwrap_or_default();
        let span = tracing::Span::current();
        let (vectors, rendered, resolved_params, metrics, coordinates, corpus, model) =
            tokio::task::spawn_blocking(move || {
                let _run = span.entered();
                let ctx = job_ctx;
                if normalize {
                    ctx.stage("normalizing", 0.0);
                    normalize_rows(&mut vectors, &ctx);
                }
                ctx.stage("clustering", 0.0);
                let fitted = plan.fit(&vectors, &ctx)?;
                let metrics = if compute_metrics {
                    ctx.progress(ProgressEvent {
                        stage: "metrics",
                        fraction: 0.0,
                        iteration: None,
                        inertia: None,
                        documents: None,
                    });
                    Some(metrics::compute(
                        &vectors,
                        &fitted.labelled.labels,
                        &metrics_options,
                        &ctx,
                    )?)
                } else {
                    None
                };
                let pca = if project {
                    Some(Pca2d::fit(&vectors, ctx.seed, &ctx)?)
                } else {
                    None
                };
                let coordinates = pca.as_ref().map(|p| p.project(&vectors));
                // Ranked here, off the async executor (a sort over every row); the
                // corpus is by rank, as the labels come back.
                let rendered = Rendered::from_labelled(&fitted.labelled, &vector_name);
                let model = if wants_model {
                    Some(Arc::new(RunModel {
                        assigner: placement::assigner(&vectors, &rendered, &fitted.rule)?,
                        pca,
                        normalize,
                    }))
                } else {
                    None
                };
                let corpus = wants_labels.then(|| {
                    let memberships = rendered
                        .memberships
                        .iter()
                        .filter_map(|m| Some((m.rank?, m.row, m.distance)));
                    labelling::corpus(rendered.centroids.len(), memberships, &texts)
                });
                Ok::<_, ApiError>((
                    vectors,
                    rendered,
                    fitted.resolved_params,
                    metrics,
                    coordinates,
                    corpus,
                    model,
                ))
            })
            .await
            .map_err(ApiError::internal)??;
        let placed = match (remainder, &model) {
            (Some(rest), Some(model)) => {
                placement::place_remainder(rest, Arc::clone(model), &ctx).await?
            }
            _ => Vec::new(),
        };
        let labels = Self::label(corpus, req, labeller, &ctx).await?;
        Ok(Computed {
            loaded,
            vectors,
            rendered,
            resolved_params,
            metrics,
            coordinates,
            labels,
            model,
            placed,
        })
    }

    /// Rank, store artifacts (when asked) and assemble the response and the run record.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        scope: &Scope,
        req: &ExecuteRequest,
        plan: &Plan,
        labeller: Option<&Provider>,
        computed: Computed,
        run_id: String,
        created_at: String,
        started: Instant,
    ) -> ApiResult<(ExecuteResponse, RunRecord)> {
        let Computed {
            loaded,
            vectors,
            mut rendered,
            resolved_params,
            metrics,
            coordinates,
            labels,
            model,
            placed,
        } = computed;
        let llm_labeling_errors = labels.map(|l| rendered.apply_labels(l));
        let source = MemberSource {
            rendered: &rendered,
            loaded: &loaded,
            collection_ids: &req.collection_ids,
            coordinates: coordinates.as_deref(),
        };
        let members = req.include_members.then(|| {
            rendered
                .memberships
                .iter()
                .map(|m| source.member(m))
                .collect()
        });

        let mut artifacts = Vec::new();
        let (mut parquet_path, mut members_key) = (None, None);
        if req.store_results {
            let clusters = self
                .store
                .write_clusters(
                    scope,
                    &run_id,
                    &result::cluster_rows(&rendered.centroids),
                    vectors.cols(),
                )
                .await?;
            let members_written = self
                .store
                .write_member_table(scope, &run_id, &RunMembers::new(&source, &placed))
                .await?;
            artifacts.push(clusters.clone());
            artifacts.push(members_written.clone());
            parquet_path = Some(clusters);
            members_key = Some(members_written);
            if let Some(coords) = &coordinates {
                let sample = self
                    .store
                    .write_sample(
                        scope,
                        &run_id,
                        &SampleArtifact {
                            document_ids: &loaded.document_ids,
                            collection_ids: &source.collection_of_rows(),
                            cluster_ids: &source.cluster_ids(),
                            coordinates: coords,
                            vectors: &vectors,
                        },
                    )
                    .await?;
                artifacts.push(sample);
            }
            if let Some(cores) = model.as_ref().and_then(|m| m.cores()) {
                let ids: Vec<&str> = cores
                    .clusters
                    .iter()
                    .map(|&r| {
                        rendered
                            .centroids
                            .get(r as usize)
                            .map_or("", |c| c.cluster_id.as_str())
                    })
                    .collect();
                let radius: Vec<Option<f64>> = cores
                    .radius
                    .iter()
                    .map(|&r| r.is_finite().then_some(r))
                    .collect();
                let key = self
                    .store
                    .write_core_points(
                        scope,
                        &run_id,
                        &CorePointsArtifact {
                            cluster_ids: &ids,
                            radius: &radius,
                            vectors: &cores.points,
                        },
                    )
                    .await?;
                artifacts.push(key);
            }
        }

        let response = ExecuteResponse {
            success: true,
            algorithm: req.algorithm,
            num_clusters: rendered.num_clusters,
            num_documents: loaded.document_ids.len(),
            centroids: rendered.centroids,
            execution_time_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            run_id: run_id.clone(),
            metrics,
            parquet_path,
            members_key,
            created_at,
            seed: plan.seed(),
            device: self.device.info(),
            members,
            llm_labeling_errors,
            placed_documents: (!placed.is_empty()).then_some(placed.len()),
        };
        let record = RunRecord {
            run_id,
            status: RunState::Completed,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            request: RunRequestRecord {
                collection_ids: req.collection_ids.clone(),
                algorithm: req.algorithm.as_str().to_owned(),
                algorithm_params: resolved_params,
                vector_name: req.vector_name.clone(),
                normalize_features: req.normalize_features,
                description: req.description.clone(),
                sample_size: req.sample_size,
                compute_metrics: req.compute_metrics,
                store_results: req.store_results,
                save_artifacts: req.save_artifacts,
                llm_labeling: req.labeling.as_ref().map(|l| {
                    serde_json::json!({
                        "enabled": true,
                        "provider": labeller.map(labelling::provider_name),
                        "model_name": labeller
                            .and_then(|p| labelling::model_used(p, l.model_name.as_deref())),
                        "include_keywords": l.include_keywords,
                        "include_summary": l.include_summary,
                        "labeling_inputs": l.inputs,
                    })
                }),
                attribute_config: req.attribute_grouping.as_ref().map(|a| {
                    serde_json::json!({
                        "attributes": a.attributes,
                        "hierarchical_grouping": a.hierarchical,
                        "aggregation_method": a.aggregation.as_str(),
                    })
                }),
            },
            // Inline members stay out of run.json: members.parquet holds them.
            result: ExecuteResponse {
                members: None,
                ..response.clone()
            },
            artifacts,
            placement: model
                .as_ref()
                .filter(|_| req.store_results)
                .map(|m| m.record(req.vector_name.clone(), placed.len())),
        };
        Ok((response, record))
    }

    /// Runs left `running` by a server that died become `failed: interrupted`.
    pub async fn recover_interrupted_runs(&self) -> ApiResult<usize> {
        self.store
            .recover_interrupted_runs(self.config.stale_after)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_have_the_reference_shape_and_sort_newest_first() {
        let a = new_run_id();
        assert!(a.starts_with("run_") && a.len() == 24, "{a}");
        std::thread::sleep(std::time::Duration::from_millis(3));
        let b = new_run_id();
        assert!(b < a, "a later run sorts first: {b} < {a}");
    }
}

/// `--max-run-memory`: `auto` (half the machine's memory, none where it cannot be read),
/// `0` (no limit), bytes, or a number with a binary unit (`16G`, `512M`, `1.5T`).
pub fn parse_run_memory(value: &str) -> Result<Option<u64>, String> {
    let bad = || {
        format!(
            "--max-run-memory must be auto, 0, a number of bytes, or a number with K, M, G \
             or T; got {value:?}"
        )
    };
    let v = value.trim();
    if v.eq_ignore_ascii_case("auto") {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        });
        return Ok(total.map(|kib| kib * 1024 / 2));
    }
    let (number, shift) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&v[..i], shift)
        }
        _ => (v, 0),
    };
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(bad());
    }
    let bytes = n * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok((bytes >= 1.0).then_some(bytes as u64))
}

#[cfg(test)]
mod run_memory_tests {
    use super::parse_run_memory;

    #[test]
    fn run_memory_limits_read_units_auto_and_zero() {
        assert_eq!(parse_run_memory("16G"), Ok(Some(16 << 30)));
        assert_eq!(parse_run_memory("512m"), Ok(Some(512 << 20)));
        assert_eq!(parse_run_memory("1.5K"), Ok(Some(1536)));
        assert_eq!(parse_run_memory("1000"), Ok(Some(1000)));
        assert_eq!(parse_run_memory("0"), Ok(None));
        assert!(parse_run_memory("auto").is_ok());
        for bad in ["", "-1G", "12Q", "lots", "1e400", "NaNG"] {
            assert!(parse_run_memory(bad).is_err(), "{bad}");
        }
    }
}
