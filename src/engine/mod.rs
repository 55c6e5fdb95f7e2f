//! The pipeline of DESIGN §3: validate -> load -> normalize -> algorithm -> response.
//! It sees domain types only; the transports in `api/` call `Engine::execute`.

mod admission;
mod result;

use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use crate::algorithms::kmeans::{self, KMeansParams};
use crate::gpu;
use crate::model::{
    Algorithm, ApiError, ApiResult, Caller, DeviceInfo, ExecuteRequest, ExecuteResponse,
    ProgressEvent, RunContext, Scope,
};
use crate::store::{LoadRequest, Store};

pub use admission::Admission;

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrent_runs: 2,
            max_queued_runs: 32,
            max_members: 100_000,
            device: gpu::DevicePreference::Auto,
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
}

/// The algorithm with its validated parameters, checked before any data is read.
enum Plan {
    KMeans(KMeansParams),
}

impl Plan {
    fn from_request(req: &ExecuteRequest) -> ApiResult<Self> {
        match req.algorithm {
            Algorithm::KMeans => KMeansParams::from_params(&req.algorithm_params)
                .map(Plan::KMeans)
                .map_err(|e| e.under("config.algorithm_params")),
            other => Err(ApiError::unimplemented(
                "config.algorithm",
                format!(
                    "{} is not available yet in this version of clusterd; kmeans is",
                    other.as_str()
                ),
            )),
        }
    }

    fn seed(&self) -> u64 {
        match self {
            Plan::KMeans(p) => p.random_state.unwrap_or(0),
        }
    }
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Result<Self, EngineError> {
        if config.max_concurrent_runs == 0 {
            return Err(EngineError::NoRunSlots);
        }
        let device = gpu::select_device(config.device)?;
        Ok(Engine {
            store: Arc::new(store),
            admission: Admission::new(config.max_concurrent_runs, config.max_queued_runs),
            config,
            device,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn device_info(&self) -> DeviceInfo {
        self.device.info()
    }

    /// Run one clustering request. `ctx` carries the cancel token and progress sink; its
    /// seed and device are set here from the request and the engine.
    pub async fn execute(
        &self,
        caller: &Caller,
        req: ExecuteRequest,
        ctx: RunContext,
    ) -> ApiResult<ExecuteResponse> {
        let started = Instant::now();
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let run_id = new_run_id();
        let scope = Scope::new(&caller.org, &caller.namespace)?;
        let plan = Plan::from_request(&req)?;
        let mut ctx = ctx;
        ctx.seed = plan.seed();
        ctx.device = self.device.kind();

        let _slot = self.admission.enter(ctx.cancel_token()).await?;
        tracing::info!(%run_id, org = %scope.org(), namespace = %scope.namespace(),
            algorithm = req.algorithm.as_str(), "run started");

        ctx.progress(ProgressEvent {
            stage: "load",
            fraction: 0.0,
            iteration: None,
            inertia: None,
        });
        let mut loaded = self
            .store
            .load(
                &scope,
                &LoadRequest {
                    collection_ids: req.collection_ids.clone(),
                    vector_column: req.vector_name.clone(),
                    attributes: Vec::new(),
                    sample_size: req.sample_size,
                    seed: ctx.seed,
                },
                &ctx,
            )
            .await?;
        let n = loaded.document_ids.len();
        if req.include_members && n > self.config.max_members {
            return Err(ApiError::payload_too_large(
                Some("include_members"),
                format!(
                    "{n} members exceed the inline limit of {}; set sample_size or include_members false",
                    self.config.max_members
                ),
            ));
        }
        // Taken, not cloned: the engine holds one copy of the vectors (k-means makes its centred one).
        let mut vectors = loaded.vectors.take().ok_or_else(|| {
            ApiError::internal("store returned no vectors for a vector algorithm")
        })?;
        ctx.checkpoint()?;

        let labels = match plan {
            Plan::KMeans(params) => {
                params
                    .check_against_data(n)
                    .map_err(|e| e.under("config.algorithm_params"))?;
                let normalize = req.normalize_features;
                let run_ctx = ctx.clone();
                let fit = tokio::task::spawn_blocking(move || {
                    if normalize {
                        vectors.normalize_rows();
                    }
                    kmeans::fit(&vectors, &params, &run_ctx)
                })
                .await
                .map_err(ApiError::internal)??;
                result::Labelled {
                    labels: fit.labels,
                    centers: fit.centers,
                    distances: fit.distances,
                }
            }
        };

        let execution_time_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let response = result::build_response(result::ResponseParts {
            req: &req,
            loaded: &loaded,
            labelled: labels,
            run_id,
            created_at,
            execution_time_ms,
            seed: ctx.seed,
            device: self.device.info(),
        });
        tracing::info!(run_id = %response.run_id, clusters = response.num_clusters,
            documents = response.num_documents, ms = response.execution_time_ms, "run completed");
        Ok(response)
    }
}

fn new_run_id() -> String {
    let id: u64 = rand::rng().random();
    format!("run_{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_have_the_reference_shape() {
        let id = new_run_id();
        assert!(id.starts_with("run_") && id.len() == 20, "{id}");
    }

    #[test]
    fn unbuilt_algorithms_are_unimplemented_not_faked() {
        for alg in Algorithm::ALL {
            if alg == Algorithm::KMeans {
                continue;
            }
            let req = ExecuteRequest {
                collection_ids: vec!["c".into()],
                algorithm: alg,
                algorithm_params: Default::default(),
                vector_name: Some("v".into()),
                normalize_features: true,
                description: None,
                sample_size: None,
                store_results: true,
                include_members: false,
                compute_metrics: true,
                save_artifacts: false,
            };
            let e = Plan::from_request(&req).err().unwrap();
            assert_eq!(e.code, crate::model::ErrorCode::Unimplemented);
            assert!(e.message.contains(alg.as_str()));
        }
    }
}
