//! Silhouette coefficient, as scikit-learn 1.9.1's `silhouette_score` (Euclidean):
//! `a(i)` is the mean distance from `i` to the other members of its cluster, `b(i)` the
//! smallest mean distance to the members of another cluster, `s(i) = (b − a) / max(a, b)`
//! (0 for a member of a singleton cluster), and the score is the mean of `s(i)`.
//!
//! Every pair's distance is needed, but never all at once: the rows, sorted by cluster,
//! are swept one block of "centre" rows at a time through the blocked GEMM distance
//! primitive, and each row keeps only a running sum for the cluster being swept, its own
//! cluster's sum and the best other mean so far. Memory is O(BLOCK_ROWS² per worker + N).

use crate::algorithms::distance::{block_range, fold_lanes, n_blocks, row_sq_norms};
use crate::gpu::{self, GpuError};
use crate::model::{Cancelled, DeviceKind, Matrix, ProgressEvent, RunContext};

/// Rows per block of "centres". As wide as the row blocks: a square tile keeps the GEMM
/// efficient, and a 1024 × 1024 f32 tile (4 MiB) per worker bounds memory.
pub(super) const COL_BLOCK: usize = 1024;

/// Mean silhouette of the rows `rows` of `x` under the dense labels `labels` (one per
/// entry of `rows`); `None` when fewer than two clusters are present, where it is
/// undefined.
pub(super) fn score(
    x: &Matrix,
    rows: &[usize],
    labels: &[u32],
    ctx: &RunContext,
) -> Result<Option<f64>, Cancelled> {
    let m = rows.len();
    // Sorting by cluster makes each cluster a contiguous run of columns, so a row's sum
    // for a cluster is complete the moment its run ends and needs no N × k table. The
    // sort is stable, so ties keep row order and the result depends on the data alone.
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by_key(|&p| labels[p]);
    let mut sorted_labels = Vec::with_capacity(m);
    let mut counts: Vec<usize> = Vec::new();
    let mut prev = None;
    for &p in &order {
        if prev != Some(labels[p]) {
            prev = Some(labels[p]);
            counts.push(0);
        }
        if let Some(c) = counts.last_mut() {
            *c += 1;
        }
        sorted_labels.push((counts.len() - 1) as u32);
    }
    if counts.len() < 2 {
        return Ok(None);
    }
    if ctx.device == DeviceKind::Gpu {
        ctx.checkpoint()?;
        match gpu_samples(x, rows, labels, counts.len()) {
            Ok(s) => return Ok(Some(s.iter().sum::<f64>() / m as f64)),
            // The CPU twin gives the same score; a device fault must not fail the run.
            Err(e) => tracing::warn!(error = %e, "GPU silhouette failed; computing it on the CPU"),
        }
    }

    // Centred on the column mean, as k-means does: far from the origin the expanded form
    // `‖x‖² + ‖y‖² − 2x·y` cancels away most of an f32's digits.
    let sorted_rows: Vec<usize> = order.iter().map(|&p| rows[p]).collect();
    let xs = centred_rows(x, &sorted_rows, ctx)?;
    let s = samples(&xs, &sorted_labels, &counts, COL_BLOCK, ctx)?;
    Ok(Some(s.iter().sum::<f64>() / m as f64))
}

/// `s(i)` for the given rows through the GPU kernel (`shaders/silhouette.wgsl`), which
/// returns each row's sum of distances to every cluster (O(N·K) memory); `a`, `b` and `s`
/// follow here exactly as on the CPU path. `labels` are dense, `0..k`.
pub(super) fn gpu_samples(
    x: &Matrix,
    rows: &[usize],
    labels: &[u32],
    k: usize,
) -> Result<Vec<f64>, GpuError> {
    let context = gpu::shared_context()?;
    let d = x.cols();
    let mut data = Vec::with_capacity(rows.len() * d);
    for &r in rows {
        data.extend_from_slice(x.row(r));
    }
    let sub = Matrix::from_vec(rows.len(), d, data)
        .ok_or_else(|| GpuError::Unsupported("silhouette rows do not form a matrix".into()))?;
    let sums = gpu::silhouette::silhouette_sums(&context, &sub, labels, k)?;
    let mut counts = vec![0usize; k];
    for &l in labels {
        counts[l as usize] += 1;
    }
    Ok(labels
        .iter()
        .enumerate()
        .map(|(i, &own)| {
            let own = own as usize;
            if counts[own] <= 1 {
                return 0.0;
            }
            let row = &sums[i * k..(i + 1) * k];
            let a = row[own] / (counts[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && counts[c] > 0)
                .map(|c| row[c] / counts[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let denom = a.max(b);
            if denom > 0.0 && denom.is_finite() {
                (b - a) / denom
            } else {
                0.0
            }
        })
        .collect())
}

/// The given rows of `x`, in that order, minus their column mean.
fn centred_rows(x: &Matrix, rows: &[usize], ctx: &RunContext) -> Result<Matrix, Cancelled> {
    let d = x.cols();
    let m = rows.len();
    let sums = super::cluster_sums(x, rows, &vec![0; m], 1, ctx)?;
    let inv = 1.0 / m.max(1) as f64;
    let mean: Vec<f64> = sums.iter().map(|s| s * inv).collect();
    let mut out = Matrix::zeros(m, d);
    if d > 0 {
        use rayon::prelude::*;
        out.as_mut_slice()
            .par_chunks_mut(d)
            .zip(rows)
            .with_min_len(1024)
            .for_each(|(dst, &r)| {
                for ((o, &v), &mu) in dst.iter_mut().zip(x.row(r)).zip(&mean) {
                    *o = (f64::from(v) - mu) as f32;
                }
            });
    }
    Ok(out)
}

/// One block of rows' running state across the sweep over the centre blocks.
struct Lane {
    /// Sum of distances to the cluster whose columns are being swept.
    cur: Vec<f64>,
    /// Sum of distances to the other members of the row's own cluster.
    own: Vec<f64>,
    /// Smallest mean distance to another cluster so far.
    best: Vec<f64>,
    /// Scratch: one column of squared distances.
    col: Vec<f32>,
    /// f32 partial sums of up to [`F32_RUN`] columns, flushed into `cur` in f64.
    part: Vec<f32>,
    /// Columns added into `part` since its last flush.
    in_part: usize,
}

/// Columns summed in f32 before the partial sum is added to the f64 total: keeps the
/// inner loop in f32 (16 lanes, no conversion) at a relative rounding of about
/// `F32_RUN · 2⁻²⁴`, far below the metric tolerance. Fixed, so the order of every sum
/// depends on the data alone.
const F32_RUN: usize = 32;

impl Lane {
    fn flush(&mut self) {
        for (c, p) in self.cur.iter_mut().zip(self.part.iter_mut()) {
            *c += f64::from(std::mem::take(p));
        }
        self.in_part = 0;
    }
}

/// `s(i)` for every row of `xs`, whose rows are sorted by `labels` (dense, ascending;
/// `counts[c]` rows carry label `c`). Centre blocks are `col_block` rows wide; rows are
/// taken in the distance primitive's blocks. Each row's per-cluster sums run over the
/// columns in order, so the result does not depend on the thread count.
pub(super) fn samples(
    xs: &Matrix,
    labels: &[u32],
    counts: &[usize],
    col_block: usize,
    ctx: &RunContext,
) -> Result<Vec<f64>, Cancelled> {
    let n = xs.rows();
    let d = xs.cols();
    let col_block = col_block.max(1);
    let x_sq = row_sq_norms(xs);
    // One lane per row block: each lane's state is that block's, and lanes never share rows.
    let mut lanes: Vec<Lane> = (0..n_blocks(n))
        .map(|b| {
            let len = block_range(b, n).len();
            Lane {
                cur: vec![0.0; len],
                own: vec![0.0; len],
                best: vec![f64::INFINITY; len],
                col: vec![0.0; len],
                part: vec![0.0; len],
                in_part: 0,
            }
        })
        .collect();
    let n_cols = n.div_ceil(col_block);
    for cb in 0..n_cols {
        ctx.checkpoint()?;
        ctx.progress(ProgressEvent {
            stage: "metrics",
            fraction: cb as f32 / n_cols as f32,
            iteration: None,
            inertia: None,
            documents: None,
        });
        let c0 = cb * col_block;
        let c1 = (c0 + col_block).min(n);
        let mut centers = Matrix::zeros(c1 - c0, d);
        centers
            .as_mut_slice()
            .copy_from_slice(xs.rows_slice(c0, c1));
        let c_sq = &x_sq[c0..c1];
        lanes = fold_lanes(xs, &x_sq, &centers, c_sq, ctx, lanes, |lane, blk| {
            let m = blk.rows();
            let r0 = blk.start;
            for j in c0..c1 {
                if (r0..r0 + m).contains(&j) {
                    // A row's distance to itself is exactly 0 (scikit-learn zeroes the
                    // diagonal too); the expanded form would leave rounding noise there.
                    blk.sq_dist_col(j - c0, &mut lane.col);
                    lane.col[j - r0] = 0.0;
                    for (acc, &d2) in lane.part.iter_mut().zip(&lane.col[..m]) {
                        *acc += d2.sqrt();
                    }
                } else {
                    blk.add_dist_col(j - c0, &mut lane.part);
                }
                lane.in_part += 1;
                let l = labels[j];
                let run_ends = j + 1 == n || labels[j + 1] != l;
                if run_ends || lane.in_part == F32_RUN {
                    lane.flush();
                }
                if run_ends {
                    // The last column of cluster `l`: its sums are complete.
                    let inv = 1.0 / counts[l as usize] as f64;
                    for i in 0..m {
                        let sum = std::mem::take(&mut lane.cur[i]);
                        if labels[r0 + i] == l {
                            lane.own[i] = sum;
                        } else {
                            lane.best[i] = lane.best[i].min(sum * inv);
                        }
                    }
                }
            }
        })?;
    }

    let mut out = Vec::with_capacity(n);
    for lane in &lanes {
        for (&own, &best) in lane.own.iter().zip(&lane.best) {
            let i = out.len();
            let size = counts[labels[i] as usize];
            out.push(coefficient(own, best, size));
        }
    }
    Ok(out)
}

/// `s(i)` from the sum of distances to the own cluster's other members, the best other
/// cluster's mean distance, and the own cluster's size. Like scikit-learn, the undefined
/// cases (a singleton cluster, or `a = b = 0`) count as 0.
fn coefficient(own_sum: f64, best: f64, size: usize) -> f64 {
    if size <= 1 {
        return 0.0;
    }
    let a = own_sum / (size - 1) as f64;
    let s = (best - a) / a.max(best);
    if s.is_finite() { s } else { 0.0 }
}
