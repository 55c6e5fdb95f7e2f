//! Host side of `shaders/knn.wgsl`: k-nearest-neighbour candidates and radius counts
//! over all rows of a matrix, from approximate squared Euclidean distances. The exact
//! answer is `algorithms::neighbors`, which refines these candidates.

use super::matrix::{default_chunk_rows, upload_chunks};
use super::{GpuContext, GpuError};
use crate::model::Matrix;

const SHADER: &str = include_str!("../../shaders/knn.wgsl");

/// The most neighbours a query may ask for: each invocation keeps its sorted list in
/// private memory, sized at compile time.
pub const MAX_K: usize = 64;

/// Queries per workgroup (`WG` in the shader).
const WG: usize = 64;

/// Data rows per tile (`TJ` in the shader); a data slice is a whole number of tiles.
const TJ: usize = 32;

/// Work per dispatch, in query × data-row × (features + bookkeeping) steps: about 0.2 s
/// on lavapipe and well under a millisecond of arithmetic on hardware. Measured on
/// lavapipe: dispatches of 2 s or more came back with rows never written and no error
/// from wgpu, so no dispatch may come near a driver's watchdog, whatever the data size.
const DISPATCH_WORK: u64 = 1 << 28;

/// Fewest data tiles a dispatch sweeps: bounds the queries per chunk (every query of a
/// chunk is in every one of its dispatches) so that a dispatch stays within
/// [`DISPATCH_WORK`].
const MIN_TILES: u64 = 4;

/// Per-pair cost besides the features: the distance, the comparison, the odd insertion.
const PAIR_OVERHEAD: u64 = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    q_rows: u32,
    q_base: u32,
    d: u32,
    y_off: u32,
    y_rows: u32,
    y_base: u32,
    k: u32,
    first: u32,
    threshold_sq: f32,
    _pad: [u32; 3],
}

#[derive(Clone, Copy)]
enum Query {
    Knn { k: usize },
    Radius { threshold_sq: f32 },
}

/// The `k` nearest rows of every row of `x` by approximate squared distance
/// `x_sq[i] + x_sq[j] − 2·xᵢ·xⱼ` (clamped at 0; `x_sq` holds the squared row norms),
/// the row itself included, ascending by (distance, index): `n·k` indices and their
/// distances. `k` is clamped to the number of rows, as the CPU `Points::knn` does;
/// more than [`MAX_K`] is [`GpuError::Unsupported`].
pub fn knn_candidates(
    ctx: &GpuContext,
    x: &Matrix,
    x_sq: &[f32],
    k: usize,
) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    knn_candidates_chunked(ctx, x, x_sq, k, None)
}

/// [`knn_candidates`] with at most `chunk_rows` rows per chunk (the device default when
/// `None`).
pub fn knn_candidates_chunked(
    ctx: &GpuContext,
    x: &Matrix,
    x_sq: &[f32],
    k: usize,
    chunk_rows: Option<usize>,
) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    let k = k.min(x.rows());
    if k > MAX_K {
        return Err(GpuError::Unsupported(format!(
            "{k} neighbours exceed the kernel's {MAX_K}"
        )));
    }
    if k == 0 {
        check_shape(x, x_sq)?;
        return Ok((Vec::new(), Vec::new()));
    }
    sweep(ctx, x, x_sq, Query::Knn { k }, chunk_rows)
}

/// For every row of `x`, how many rows (itself included) lie within approximate
/// squared distance `threshold_sq` of it, computed as in [`knn_candidates`].
pub fn radius_counts(
    ctx: &GpuContext,
    x: &Matrix,
    x_sq: &[f32],
    threshold_sq: f32,
) -> Result<Vec<u32>, GpuError> {
    radius_counts_chunked(ctx, x, x_sq, threshold_sq, None)
}

/// [`radius_counts`] with at most `chunk_rows` rows per chunk (the device default when
/// `None`).
pub fn radius_counts_chunked(
    ctx: &GpuContext,
    x: &Matrix,
    x_sq: &[f32],
    threshold_sq: f32,
    chunk_rows: Option<usize>,
) -> Result<Vec<u32>, GpuError> {
    if threshold_sq.is_nan() {
        return Err(GpuError::Unsupported("a NaN radius".to_owned()));
    }
    sweep(ctx, x, x_sq, Query::Radius { threshold_sq }, chunk_rows).map(|(counts, _)| counts)
}

fn check_shape(x: &Matrix, x_sq: &[f32]) -> Result<(), GpuError> {
    if x_sq.len() != x.rows() {
        return Err(GpuError::Unsupported(format!(
            "{} squared norms for {} rows",
            x_sq.len(),
            x.rows()
        )));
    }
    // u32::MAX marks an empty slot of a neighbour list.
    if x.rows() >= u32::MAX as usize {
        return Err(GpuError::Unsupported(format!(
            "{} rows exceed 32-bit indexing",
            x.rows()
        )));
    }
    Ok(())
}

/// Every chunk of rows as queries against every chunk as data, in ascending data order
/// (the kernel's tie rule depends on it), one bounded slice of data rows per dispatch.
/// Returns the per-row state read back: (indices, distances) for kNN, (counts, []) for
/// radius queries.
fn sweep(
    ctx: &GpuContext,
    x: &Matrix,
    x_sq: &[f32],
    query: Query,
    chunk_rows: Option<usize>,
) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    check_shape(x, x_sq)?;
    let n = x.rows();
    let d = x.cols();
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let (entry, words, k, threshold_sq) = match query {
        Query::Knn { k } => ("knn", k, k, 0.0),
        Query::Radius { threshold_sq } => ("radius_count", 1, 0, threshold_sq),
    };
    // A chunk's per-row state must fit one binding, its queries one grid dimension, and
    // a dispatch of its queries against a few tiles of data the work budget.
    let pair_cost = d as u64 + PAIR_OVERHEAD;
    let by_state = (ctx.max_binding_bytes() / (words as u64 * 4)) as usize;
    let by_grid = ctx.limits.max_compute_workgroups_per_dimension as usize * WG;
    let by_work = (DISPATCH_WORK / (pair_cost * TJ as u64 * MIN_TILES)) as usize / WG * WG;
    let chunk_rows = chunk_rows
        .unwrap_or(usize::MAX)
        .min(default_chunk_rows(ctx, d)?)
        .min(by_state)
        .min(by_grid)
        .min(by_work.max(WG))
        .max(1);
    let pipeline = ctx.pipeline(entry, SHADER, entry)?;
    let chunks = upload_chunks(ctx, x, x_sq, chunk_rows)?;

    let mut indices = Vec::with_capacity(n * words);
    let mut distances = Vec::with_capacity(if k > 0 { n * k } else { 0 });
    for qc in &chunks {
        let tiles = (DISPATCH_WORK / (qc.rows as u64 * pair_cost * TJ as u64)).max(1);
        let slice_rows = usize::try_from(tiles)
            .unwrap_or(usize::MAX)
            .saturating_mul(TJ);
        let groups = qc.rows.div_ceil(WG) as u32;
        let (state_i, state_d) = ctx.scoped(|| {
            (
                ctx.output("neighbour state", qc.rows * words),
                ctx.output("neighbour distances", qc.rows * k.max(1)),
            )
        })?;
        let mut first = true;
        for yc in &chunks {
            for y_off in (0..yc.rows).step_by(slice_rows) {
                let params = Params {
                    q_rows: qc.rows as u32,
                    q_base: qc.start as u32,
                    d: d as u32,
                    y_off: y_off as u32,
                    y_rows: (yc.rows - y_off).min(slice_rows) as u32,
                    y_base: yc.start as u32,
                    k: k as u32,
                    first: u32::from(first),
                    threshold_sq,
                    _pad: [0; 3],
                };
                let bind = ctx.scoped(|| {
                    let uniform = ctx.uniform("neighbour params", &params);
                    let mut buffers = vec![&uniform, &qc.x, &qc.x_sq, &yc.x, &yc.x_sq, &state_i];
                    if k > 0 {
                        buffers.push(&state_d);
                    }
                    ctx.bind(&pipeline, &buffers)
                })?;
                // One submission per slice: each waits for the last, keeping every
                // command buffer short.
                ctx.run(&[(&pipeline, &bind, [groups, 1])])?;
                first = false;
            }
        }
        indices.extend(ctx.read::<u32>(&state_i, qc.rows * words)?);
        if k > 0 {
            distances.extend(ctx.read::<f32>(&state_d, qc.rows * k)?);
        }
    }
    Ok((indices, distances))
}
