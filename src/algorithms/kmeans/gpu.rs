//! Lloyd's iteration with the assignment and the centre sums on the GPU
//! (`shaders/assign_nearest.wgsl`, `shaders/centroid_update.wgsl`). Everything else —
//! initialisation, empty-cluster relocation, stopping rules, the final exact inertia — is
//! the CPU path's own code, so both devices follow the same algorithm step for step.

use std::sync::Arc;

use super::lloyd::{RunResult, exact_sq_dists, finish_centers, sq_shift};
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

/// The (centred) data of one fit, uploaded once and shared by its `n_init` runs.
pub(super) struct GpuLloyd {
    ctx: Arc<GpuContext>,
    x: GpuMatrix,
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
        let x = GpuMatrix::upload(&ctx, x, chunk_rows)?;
        Ok(GpuLloyd { ctx, x })
    }

    /// One Lloyd run from `centers`, with the same contract as [`super::lloyd::run`];
    /// `x` is the host copy of the uploaded data.
    pub(super) fn run(
        &self,
        x: &Matrix,
        mut centers: Matrix,
        max_iter: usize,
        tol_abs: f64,
        ctx: &RunContext,
        mut on_iter: impl FnMut(usize, f64),
    ) -> Result<RunResult, Stop> {
        let n = x.rows();
        let k = centers.rows();
        // As on the CPU path: no first iteration can count as converged.
        let mut labels_old = vec![u32::MAX; n];
        let mut labels = labels_old.clone();
        let mut sq_dists = vec![0f32; n];
        let mut strict = false;
        let mut n_iter = 0;
        for i in 0..max_iter {
            ctx.checkpoint()?;
            (labels, sq_dists) = assign_nearest(&self.ctx, &self.x, &centers)?;
            let inertia: f64 = sq_dists.iter().map(|&v| f64::from(v)).sum();
            ctx.checkpoint()?;
            let sums = cluster_sums(&self.ctx, &self.x, &labels, k)?;
            let sums_f64 = sums.sums.iter().map(|&v| f64::from(v)).collect();
            let new_centers = finish_centers(x, &labels, &sq_dists, sums_f64, sums.counts);
            let shift = sq_shift(&centers, &new_centers);
            centers = new_centers;
            n_iter = i + 1;
            on_iter(i, inertia);
            if labels == labels_old {
                strict = true;
                break;
            }
            if shift <= tol_abs {
                break;
            }
            std::mem::swap(&mut labels, &mut labels_old);
        }
        if !strict {
            // The centres moved after the last assignment: label against where they ended up.
            (labels, sq_dists) = assign_nearest(&self.ctx, &self.x, &centers)?;
        }
        let inertia = exact_sq_dists(x, &centers, &labels, &mut sq_dists, ctx)?;
        Ok(RunResult {
            labels,
            centers,
            inertia,
            sq_dists,
            n_iter,
        })
    }
}
