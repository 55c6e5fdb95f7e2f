//! Host side of `shaders/centroid_update.wgsl`: per-cluster sums and counts of rows.

use super::device::grid;
use super::{GpuContext, GpuError, GpuMatrix};

const SHADER: &str = include_str!("../../shaders/centroid_update.wgsl");
/// Rows per segment: short enough that one workgroup's serial compensated sum stays
/// cheap, long enough that the partials are a small fraction of the data.
const SEGMENT_ROWS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    count: u32,
    grid_x: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Segment {
    start: u32,
    end: u32,
    slot: u32,
    _pad: u32,
}

/// Per-cluster column sums (`k × d`, row-major) and member counts. A cluster with count
/// 0 is empty: the caller relocates it as the CPU path does.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSums {
    pub sums: Vec<f32>,
    pub counts: Vec<usize>,
}

/// One chunk's rows sorted by label, and its segments of that order.
struct ChunkPlan {
    order: Vec<u32>,
    segments: Vec<Segment>,
}

/// Sum the rows of `x` per cluster of `labels` (one label in `0..k` per row).
pub fn cluster_sums(
    ctx: &GpuContext,
    x: &GpuMatrix,
    labels: &[u32],
    k: usize,
) -> Result<ClusterSums, GpuError> {
    let d = x.cols;
    if labels.len() != x.rows {
        return Err(GpuError::Unsupported(format!(
            "{} labels for {} rows",
            labels.len(),
            x.rows
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(GpuError::Unsupported(format!("label {bad} outside 0..{k}")));
    }
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l as usize] += 1;
    }
    if k == 0 || d == 0 {
        return Ok(ClusterSums {
            sums: vec![0.0; k * d],
            counts,
        });
    }

    // Segments per (cluster, chunk), then slots numbered cluster-major so that each
    // cluster's partials are contiguous and in chunk order.
    let n_chunks = x.chunks.len();
    let mut per = vec![0usize; k * n_chunks];
    for (c, chunk) in x.chunks.iter().enumerate() {
        for &l in &labels[chunk.start..chunk.start + chunk.rows] {
            per[l as usize * n_chunks + c] += 1;
        }
    }
    let mut slot_start = vec![0u32; k + 1];
    for j in 0..k {
        let segs: usize = per[j * n_chunks..(j + 1) * n_chunks]
            .iter()
            .map(|&m| m.div_ceil(SEGMENT_ROWS))
            .sum();
        slot_start[j + 1] = slot_start[j] + segs as u32;
    }
    let n_slots = slot_start[k] as usize;
    if (n_slots * d * 4) as u64 > ctx.max_binding_bytes()
        || (k * d * 4) as u64 > ctx.max_binding_bytes()
    {
        return Err(GpuError::Unsupported(format!(
            "partial sums for {k} clusters of {d} features exceed one storage binding"
        )));
    }
    let mut next_slot: Vec<u32> = slot_start[..k].to_vec();
    let plans: Vec<ChunkPlan> = x
        .chunks
        .iter()
        .enumerate()
        .map(|(c, chunk)| {
            let local = &labels[chunk.start..chunk.start + chunk.rows];
            let mut offsets = vec![0usize; k + 1];
            for j in 0..k {
                offsets[j + 1] = offsets[j] + per[j * n_chunks + c];
            }
            let mut fill = offsets.clone();
            let mut order = vec![0u32; local.len()];
            for (i, &l) in local.iter().enumerate() {
                order[fill[l as usize]] = i as u32;
                fill[l as usize] += 1;
            }
            let mut segments = Vec::new();
            for j in 0..k {
                for start in (offsets[j]..offsets[j + 1]).step_by(SEGMENT_ROWS) {
                    segments.push(Segment {
                        start: start as u32,
                        end: (start + SEGMENT_ROWS).min(offsets[j + 1]) as u32,
                        slot: next_slot[j],
                        _pad: 0,
                    });
                    next_slot[j] += 1;
                }
            }
            ChunkPlan { order, segments }
        })
        .collect();

    let seg_pipeline = ctx.pipeline("centroid_update.segment_sums", SHADER, "segment_sums")?;
    let sum_pipeline = ctx.pipeline("centroid_update.cluster_sums", SHADER, "cluster_sums")?;
    let (binds, sums_buf) = ctx.scoped(|| {
        let partials = ctx.output("partials", n_slots * d);
        let mut binds = Vec::new();
        for (chunk, plan) in x.chunks.iter().zip(&plans) {
            if plan.segments.is_empty() {
                continue;
            }
            let g = grid(ctx, plan.segments.len());
            let params = Params {
                d: d as u32,
                count: plan.segments.len() as u32,
                grid_x: g[0],
                _pad: 0,
            };
            let uniform = ctx.uniform("segment params", &params);
            let order = ctx.storage("order", &plan.order);
            let segments = ctx.storage("segments", &plan.segments);
            binds.push((
                true,
                ctx.bind(
                    &seg_pipeline,
                    &[&uniform, &chunk.x, &order, &segments, &partials],
                ),
                g,
            ));
        }
        let g = grid(ctx, k);
        let params = Params {
            d: d as u32,
            count: k as u32,
            grid_x: g[0],
            _pad: 0,
        };
        let uniform = ctx.uniform("cluster params", &params);
        let starts = ctx.storage("slot starts", &slot_start);
        let sums = ctx.output("sums", k * d);
        binds.push((
            false,
            ctx.bind(&sum_pipeline, &[&uniform, &partials, &starts, &sums]),
            g,
        ));
        (binds, sums)
    })?;
    let dispatches: Vec<_> = binds
        .iter()
        .map(|(seg, bind, g)| {
            let p: &wgpu::ComputePipeline = if *seg { &seg_pipeline } else { &sum_pipeline };
            (p, bind, *g)
        })
        .collect();
    ctx.run(&dispatches)?;
    let sums = ctx.read::<f32>(&sums_buf, k * d)?;
    Ok(ClusterSums { sums, counts })
}
