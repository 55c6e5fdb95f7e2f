//! Lloyd's iteration with the assignment and the centre sums on the GPU
//! (`shaders/assign_nearest.wgsl`, `shaders/centroid_update.wgsl`). Everything else —
//! initialisation, empty-cluster relocation, stopping rules, the final exact inertia — is
//! the CPU path's own code, so both devices follow the same algorithm step for step.

use std::sync::Arc;

use super::lloyd::{LloydStep, RunResult, drive};
use crate::gpu::centroid::cluster_sums;
use crate::gpu::{GpuContext, GpuError, GpuMatrix, assign::assign_nearest};
use crate::model::{Cancelled, Matrix, RunContext};

/// Why a GPU run stopped early: a cancellation ends the fit, a device error sends the
/// caller back to the CPU path.
#[derive(Debug)]
pub(super) enum Stop {
    Cancelled(Cancelled),
    Gpu(GpuError),
}

impl From<Cancelled> for Stop {
    fn from(c: Cancelled) -> Self {
        Stop::Cancelled(c)
    }
}

impl From<GpuError> for Stop {
    fn from(e: GpuError) -> Self {
        Stop::Gpu(e)
    }
}

/// Bytes of a fit's data kept on the device. wgpu cannot ask an adapter how much memory
/// it has, so this is a budget (override: `CLUSTERD_GPU_RESIDENT_BYTES`); data above it —
/// or data whose upload runs out of device memory — is streamed through the device one
/// window of rows at a time in every iteration instead of falling back to the CPU.
pub(super) const RESIDENT_BUDGET_BYTES: u64 = 4 << 30;

fn resident_budget() -> u64 {
    std::env::var("CLUSTERD_GPU_RESIDENT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RESIDENT_BUDGET_BYTES)
}

/// Where the data of a fit lives while it runs.
enum Placement {
    /// Uploaded once, shared by every iteration and every `n_init` run.
    Resident(GpuMatrix),
    /// Uploaded window by window (`window_rows` rows, each in chunks of `chunk_rows`) in
    /// every pass; device memory holds one window.
    Streamed {
        window_rows: usize,
        chunk_rows: Option<usize>,
    },
}

/// The (centred) data of one fit, on the device for its `n_init` runs.
pub(super) struct GpuLloyd {
    ctx: Arc<GpuContext>,
    data: Placement,
}

/// One assignment and the centre sums of its labels.
struct Step {
    labels: Vec<u32>,
    sq_dists: Vec<f32>,
    sums: Vec<f64>,
    counts: Vec<usize>,
}

impl GpuLloyd {
    /// Upload `x` to the shared device in chunks of `chunk_rows` rows (the device's
    /// default when `None`).
    pub(super) fn new(x: &Matrix, chunk_rows: Option<usize>) -> Result<Self, GpuError> {
        let ctx = crate::gpu::shared_context()?;
        Self::with_context(ctx, x, chunk_rows)
    }

    pub(super) fn with_context(
        ctx: Arc<GpuContext>,
        x: &Matrix,
        chunk_rows: Option<usize>,
    ) -> Result<Self, GpuError> {
        Self::with_budget(ctx, x, chunk_rows, resident_budget())
    }

    /// As [`Self::with_context`], keeping at most `budget` bytes of the data resident.
    pub(super) fn with_budget(
        ctx: Arc<GpuContext>,
        x: &Matrix,
        chunk_rows: Option<usize>,
        budget: u64,
    ) -> Result<Self, GpuError> {
        let row_bytes = (x.cols() as u64 + 1) * 4;
        let streamed = Placement::Streamed {
            window_rows: usize::try_from(budget / row_bytes)
                .unwrap_or(usize::MAX)
                .max(1),
            chunk_rows,
        };
        let data = if row_bytes.saturating_mul(x.rows() as u64) <= budget {
            match GpuMatrix::upload(&ctx, x, chunk_rows) {
                Ok(m) => Placement::Resident(m),
                Err(GpuError::OutOfMemory) => {
                    tracing::info!("k-means: the data does not fit on the device; streaming it");
                    streamed
                }
                Err(e) => return Err(e),
            }
        } else {
            streamed
        };
        Ok(GpuLloyd { ctx, data })
    }

    /// Whether the data streams through the device (for tests and logs).
    pub(super) fn is_streamed(&self) -> bool {
        matches!(self.data, Placement::Streamed { .. })
    }

    /// Rows `start..end` of `x` on the device.
    fn window(
        &self,
        x: &Matrix,
        start: usize,
        end: usize,
        chunk_rows: Option<usize>,
    ) -> Result<GpuMatrix, GpuError> {
        let rows = Matrix::from_vec(end - start, x.cols(), x.rows_slice(start, end).to_vec())
            .ok_or_else(|| GpuError::Unsupported("window rows do not form a matrix".into()))?;
        GpuMatrix::upload(&self.ctx, &rows, chunk_rows)
    }

    fn windows(&self, n: usize) -> Vec<(usize, usize)> {
        match self.data {
            Placement::Resident(_) => vec![(0, n)],
            Placement::Streamed { window_rows, .. } => (0..n)
                .step_by(window_rows)
                .map(|s| (s, (s + window_rows).min(n)))
                .collect(),
        }
    }

    /// Nearest centre of every row.
    fn assign(&self, x: &Matrix, centers: &Matrix) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
        match &self.data {
            Placement::Resident(m) => assign_nearest(&self.ctx, m, centers),
            Placement::Streamed { chunk_rows, .. } => {
                let (mut labels, mut sq) =
                    (Vec::with_capacity(x.rows()), Vec::with_capacity(x.rows()));
                for (start, end) in self.windows(x.rows()) {
                    let w = self.window(x, start, end, *chunk_rows)?;
                    let (l, s) = assign_nearest(&self.ctx, &w, centers)?;
                    labels.extend(l);
                    sq.extend(s);
                }
                Ok((labels, sq))
            }
        }
    }

    /// Assignment and centre sums in one pass over the data (one upload per window when
    /// streaming). Windows are summed in order, so the result is deterministic.
    fn step(&self, x: &Matrix, centers: &Matrix, k: usize) -> Result<Step, GpuError> {
        match &self.data {
            Placement::Resident(m) => {
                let (labels, sq_dists) = assign_nearest(&self.ctx, m, centers)?;
                let s = cluster_sums(&self.ctx, m, &labels, k)?;
                Ok(Step {
                    labels,
                    sq_dists,
                    sums: s.sums.iter().map(|&v| f64::from(v)).collect(),
                    counts: s.counts,
                })
            }
            Placement::Streamed { chunk_rows, .. } => {
                let mut step = Step {
                    labels: Vec::with_capacity(x.rows()),
                    sq_dists: Vec::with_capacity(x.rows()),
                    sums: vec![0.0; k * x.cols()],
                    counts: vec![0; k],
                };
                for (start, end) in self.windows(x.rows()) {
                    let w = self.window(x, start, end, *chunk_rows)?;
                    let (l, s) = assign_nearest(&self.ctx, &w, centers)?;
                    let part = cluster_sums(&self.ctx, &w, &l, k)?;
                    for (acc, &v) in step.sums.iter_mut().zip(&part.sums) {
                        *acc += f64::from(v);
                    }
                    for (acc, c) in step.counts.iter_mut().zip(part.counts) {
                        *acc += c;
                    }
                    step.labels.extend(l);
                    step.sq_dists.extend(s);
                }
                Ok(step)
            }
        }
    }

    /// One Lloyd run from `centers`, with the same contract as [`super::lloyd::run`];
    /// `x` is the host copy of the uploaded data.
    pub(super) fn run(
        &self,
        x: &Matrix,
        centers: Matrix,
        max_iter: usize,
        tol_abs: f64,
        ctx: &RunContext,
        on_iter: impl FnMut(usize, f64),
    ) -> Result<RunResult, Stop> {
        let mut step = GpuStep { lloyd: self, x };
        drive(x, centers, max_iter, tol_abs, ctx, &mut step, on_iter)
    }
}

/// The GPU's [`LloydStep`]: the kernels over the resident or streamed data.
struct GpuStep<'a> {
    lloyd: &'a GpuLloyd,
    x: &'a Matrix,
}

impl LloydStep for GpuStep<'_> {
    type Error = Stop;

    fn assign_and_sum(
        &mut self,
        centers: &Matrix,
        labels: &mut Vec<u32>,
        sq_dists: &mut Vec<f32>,
    ) -> Result<(f64, Vec<f64>, Vec<usize>), Stop> {
        let step = self.lloyd.step(self.x, centers, centers.rows())?;
        *labels = step.labels;
        *sq_dists = step.sq_dists;
        let inertia = sq_dists.iter().map(|&v| f64::from(v)).sum();
        Ok((inertia, step.sums, step.counts))
    }

    fn assign(
        &mut self,
        centers: &Matrix,
        labels: &mut Vec<u32>,
        sq_dists: &mut Vec<f32>,
    ) -> Result<(), Stop> {
        (*labels, *sq_dists) = self.lloyd.assign(self.x, centers)?;
        Ok(())
    }
}
