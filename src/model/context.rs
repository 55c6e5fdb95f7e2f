//! What every run carries down the pipeline: cancellation, progress, seed and device.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;

/// Where the dense work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
}

/// A progress event for streaming clients (stage, fraction of the stage done, and for
/// iterative algorithms the iteration and current objective).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEvent {
    pub stage: &'static str,
    pub fraction: f32,
    pub iteration: Option<u32>,
    pub inertia: Option<f64>,
    /// Documents loaded so far (the `loading` stage reports it once loaded).
    pub documents: Option<u64>,
}

/// The run was cancelled at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the run was cancelled")]
pub struct Cancelled;

impl From<Cancelled> for ApiError {
    fn from(_: Cancelled) -> Self {
        ApiError::cancelled("the run was cancelled")
    }
}

#[derive(Debug, Clone)]
pub struct RunContext {
    cancel: CancellationToken,
    progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
    pub seed: u64,
    pub device: DeviceKind,
}

impl RunContext {
    pub fn new(seed: u64, device: DeviceKind) -> Self {
        RunContext {
            cancel: CancellationToken::new(),
            progress: None,
            seed,
            device,
        }
    }
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }
    pub fn with_progress(mut self, tx: mpsc::UnboundedSender<ProgressEvent>) -> Self {
        self.progress = Some(tx);
        self
    }
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }
    /// A cancellation checkpoint: heavy loops call this at least about once a second.
    pub fn checkpoint(&self) -> Result<(), Cancelled> {
        if self.cancel.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }
    /// Report how far a stage of an algorithm is, with no iteration or objective to give.
    pub fn stage(&self, stage: &'static str, fraction: f32) {
        self.progress(ProgressEvent {
            stage,
            fraction,
            iteration: None,
            inertia: None,
            documents: None,
        });
    }

    /// Report progress; a client that stopped listening is not an error here (the cancel
    /// token is what stops the run).
    pub fn progress(&self, event: ProgressEvent) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(event);
        }
    }
}
