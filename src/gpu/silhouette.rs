//! Host side of `shaders/silhouette.wgsl`: per-row sums of distances to each cluster.

use super::matrix::{ROW_TILE, default_chunk_rows};
use super::{GpuContext, GpuError, GpuMatrix};
use crate::model::Matrix;

const SHADER: &str = include_str!("../../shaders/silhouette.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    k: u32,
    member_base: u32,
    member_rows: u32,
    _pad: [u32; 3],
}

/// `sums[i * k + j]` = sum of the Euclidean distances from row `i` of `x` to every row
/// labelled `j` (row `i` itself included, at distance 0). `a(i)`, `b(i)` and `s(i)` follow
/// on the host from these and the cluster sizes. Memory is O(N·K), never O(N²).
pub fn silhouette_sums(
    ctx: &GpuContext,
    x: &Matrix,
    labels: &[u32],
    k: usize,
) -> Result<Vec<f64>, GpuError> {
    silhouette_sums_chunked(ctx, x, labels, k, None)
}

/// [`silhouette_sums`] with at most `chunk_rows` rows per chunk (the device default when
/// `None`).
pub fn silhouette_sums_chunked(
    ctx: &GpuContext,
    x: &Matrix,
    labels: &[u32],
    k: usize,
    chunk_rows: Option<usize>,
) -> Result<Vec<f64>, GpuError> {
    let n = x.rows();
    let d = x.cols();
    if labels.len() != n {
        return Err(GpuError::Unsupported(format!(
            "{} labels for {n} rows",
            labels.len()
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(GpuError::Unsupported(format!("label {bad} outside 0..{k}")));
    }
    if n == 0 || k == 0 {
        return Ok(vec![0.0; n * k]);
    }
    if k > ctx.limits.max_compute_workgroups_per_dimension as usize {
        return Err(GpuError::Unsupported(format!(
            "{k} clusters exceed one dispatch dimension"
        )));
    }
    if n > u32::MAX as usize {
        return Err(GpuError::Unsupported(format!(
            "{n} rows exceed 32-bit indexing"
        )));
    }
    // Each chunk of rows also owns a rows × k block of sums, which must fit one binding.
    let by_sums = (ctx.max_binding_bytes() / (k as u64 * 4)) as usize;
    if by_sums == 0 {
        return Err(GpuError::Unsupported(format!(
            "one row of {k} sums exceeds a storage binding"
        )));
    }
    let chunk_rows = chunk_rows
        .unwrap_or(usize::MAX)
        .min(default_chunk_rows(ctx, d)?)
        .min(by_sums)
        .max(1);

    // Sorted by cluster (stably, so row order within a cluster is kept), each cluster is
    // one contiguous range of rows.
    let mut start = vec![0u32; k + 1];
    for &l in labels {
        start[l as usize + 1] += 1;
    }
    for j in 0..k {
        start[j + 1] += start[j];
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; n];
    for (i, &l) in labels.iter().enumerate() {
        order[fill[l as usize] as usize] = i;
        fill[l as usize] += 1;
    }
    let sorted_data = order
        .iter()
        .flat_map(|&i| x.row(i).iter().copied())
        .collect();
    let sorted = Matrix::from_vec(n, d, sorted_data)
        .ok_or_else(|| GpuError::Unsupported("row permutation lost values".to_owned()))?;

    let pipeline = ctx.pipeline("silhouette", SHADER, "main")?;
    let dev = GpuMatrix::upload(ctx, &sorted, Some(chunk_rows))?;
    let starts = ctx.scoped(|| ctx.storage("cluster starts", &start))?;
    let mut out = vec![0f64; n * k];
    for rows in &dev.chunks {
        // wgpu zero-initialises buffers, so the first member chunk adds onto zeros; the
        // member chunks are then added in order, one compute pass each.
        let (sums, binds) = ctx.scoped(|| {
            let sums = ctx.output("silhouette sums", rows.rows * k);
            let binds: Vec<wgpu::BindGroup> = dev
                .chunks
                .iter()
                .map(|members| {
                    let params = Params {
                        rows: rows.rows as u32,
                        d: d as u32,
                        k: k as u32,
                        member_base: members.start as u32,
                        member_rows: members.rows as u32,
                        _pad: [0; 3],
                    };
                    let uniform = ctx.uniform("silhouette params", &params);
                    ctx.bind(&pipeline, &[&uniform, &rows.x, &members.x, &starts, &sums])
                })
                .collect();
            (sums, binds)
        })?;
        let g = [rows.rows.div_ceil(ROW_TILE) as u32, k as u32];
        let dispatches: Vec<_> = binds.iter().map(|b| (&*pipeline, b, g)).collect();
        ctx.run(&dispatches)?;
        let got: Vec<f32> = ctx.read(&sums, rows.rows * k)?;
        for (r, row_sums) in got.chunks_exact(k).enumerate() {
            let i = order[rows.start + r];
            for (o, &v) in out[i * k..(i + 1) * k].iter_mut().zip(row_sums) {
                *o = f64::from(v);
            }
        }
    }
    Ok(out)
}
