//! A row-major matrix resident on the device, split into chunks of rows so that no
//! binding exceeds the device's limit and no dispatch exceeds its workgroup grid.

use super::{GpuContext, GpuError};
use crate::algorithms::distance::row_sq_norms;
use crate::model::Matrix;

/// Rows per workgroup of the row-tiled kernels (assign, silhouette): with one workgroup
/// per tile a chunk must stay under `max_compute_workgroups_per_dimension` tiles.
pub(crate) const ROW_TILE: usize = 16;

/// At most this many bytes of `x` per chunk, whatever the binding limit: large bindings
/// are slow to allocate and a smaller chunk lets several runs share the device.
pub const CHUNK_BUDGET_BYTES: u64 = 256 << 20;

/// One chunk of rows `start..start + rows`, with its squared row norms.
#[derive(Debug)]
pub struct GpuChunk {
    pub start: usize,
    pub rows: usize,
    pub x: wgpu::Buffer,
    pub x_sq: wgpu::Buffer,
}

#[derive(Debug)]
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    pub chunk_rows: usize,
    pub chunks: Vec<GpuChunk>,
}

/// The most rows per chunk for `d` features on this device: bounded by the binding size,
/// by [`CHUNK_BUDGET_BYTES`] and by the workgroup grid of the row-tiled kernels.
pub fn default_chunk_rows(ctx: &GpuContext, d: usize) -> Result<usize, GpuError> {
    let row_bytes = (d.max(1) * 4) as u64;
    let by_bytes = ctx.max_binding_bytes().min(CHUNK_BUDGET_BYTES) / row_bytes;
    if by_bytes == 0 {
        return Err(GpuError::Unsupported(format!(
            "one row of {d} features exceeds a storage binding ({} bytes)",
            ctx.max_binding_bytes()
        )));
    }
    let by_grid = ctx.limits.max_compute_workgroups_per_dimension as usize * ROW_TILE;
    Ok((by_bytes as usize).min(by_grid).max(1))
}

impl GpuMatrix {
    /// Upload `x` in chunks of `chunk_rows` rows (the device default when `None`; a
    /// requested size is capped at it).
    pub fn upload(
        ctx: &GpuContext,
        x: &Matrix,
        chunk_rows: Option<usize>,
    ) -> Result<Self, GpuError> {
        let d = x.cols();
        let max = default_chunk_rows(ctx, d)?;
        let chunk_rows = chunk_rows.unwrap_or(max).clamp(1, max);
        let x_sq = row_sq_norms(x);
        let chunks = upload_chunks(ctx, x, &x_sq, chunk_rows)?;
        Ok(GpuMatrix {
            rows: x.rows(),
            cols: d,
            chunk_rows,
            chunks,
        })
    }
}

/// `x` in chunks of `chunk_rows` rows with the caller's squared norms (which may come
/// from a prepared copy of the data, so they are not recomputed here).
pub(crate) fn upload_chunks(
    ctx: &GpuContext,
    x: &Matrix,
    x_sq: &[f32],
    chunk_rows: usize,
) -> Result<Vec<GpuChunk>, GpuError> {
    ctx.scoped(|| {
        (0..x.rows())
            .step_by(chunk_rows)
            .map(|start| {
                let end = (start + chunk_rows).min(x.rows());
                GpuChunk {
                    start,
                    rows: end - start,
                    x: ctx.storage("x chunk", x.rows_slice(start, end)),
                    x_sq: ctx.storage("x_sq chunk", &x_sq[start..end]),
                }
            })
            .collect()
    })
}
