//! One Lloyd run from given initial centres, following scikit-learn 1.9.1's
//! `_kmeans_single_lloyd`: assign, update (relocating empty clusters), stop on unchanged
//! labels or on a centre shift within tolerance, then re-assign if the stop was not strict.

use rayon::prelude::*;

use crate::algorithms::distance::{
    BLOCK_ROWS, block_range, fold_lanes, lane_ranges, n_blocks, nearest_centers_into, row_sq_norms,
};
use crate::model::{Cancelled, Matrix, RunContext};

/// Features per task in the centre update: splits wide rows so that a handful of
/// clusters still spreads over every core.
const FEATURE_CHUNK: usize = 64;

/// The fused assignment-and-sum step keeps one `k × d` f64 sum per lane: at most this many
/// lanes, and at most this much memory for all of them.
const MAX_LANES: usize = 64;
const LANE_BUDGET_BYTES: usize = 256 << 20;
/// Below this many lanes the fused step would starve the cores; such shapes (huge `k·d`)
/// are dominated by the GEMM anyway, so the separate gather pass costs little there.
const MIN_LANES: usize = 4;

pub(super) struct RunResult {
    pub labels: Vec<u32>,
    /// Final centres, in the frame of the data given to [`run`].
    pub centers: Matrix,
    /// Exact sum of squared distances of rows to their centres.
    pub inertia: f64,
    /// Exact squared distance of each row to its centre.
    pub sq_dists: Vec<f32>,
    pub n_iter: usize,
}

/// What differs between devices in a Lloyd run: how rows are assigned and summed.
/// Everything else — stopping rules, the final re-assignment, the exact inertia — is
/// [`drive`], shared, so both devices follow scikit-learn's loop step for step.
pub(super) trait LloydStep {
    type Error: From<Cancelled>;
    /// Assign every row to its nearest of `centers` (into `labels`, `sq_dists`) and return
    /// the assignment's inertia and the per-cluster sums (k × d, f64) and counts.
    fn assign_and_sum(
        &mut self,
        centers: &Matrix,
        labels: &mut Vec<u32>,
        sq_dists: &mut Vec<f32>,
    ) -> Result<(f64, Vec<f64>, Vec<usize>), Self::Error>;
    /// Assign only (the re-assignment after a non-strict stop).
    fn assign(
        &mut self,
        centers: &Matrix,
        labels: &mut Vec<u32>,
        sq_dists: &mut Vec<f32>,
    ) -> Result<(), Self::Error>;
}

/// scikit-learn 1.9.1's `_kmeans_single_lloyd` over any [`LloydStep`]. `tol_abs` is the
/// absolute tolerance on the sum of squared centre shifts; `on_iter` is told the
/// (0-based) iteration and the inertia of that iteration's assignment.
pub(super) fn drive<S: LloydStep>(
    x: &Matrix,
    mut centers: Matrix,
    max_iter: usize,
    tol_abs: f64,
    ctx: &RunContext,
    step: &mut S,
    mut on_iter: impl FnMut(usize, f64),
) -> Result<RunResult, S::Error> {
    let n = x.rows();
    // scikit-learn starts from labels of -1, so the first iteration never counts as
    // converged; u32::MAX plays that part.
    let mut labels = vec![u32::MAX; n];
    let mut labels_old = vec![u32::MAX; n];
    let mut sq_dists = vec![0f32; n];
    let mut strict = false;
    let mut n_iter = 0;
    for i in 0..max_iter {
        ctx.checkpoint()?;
        let (inertia, sums, counts) = step.assign_and_sum(&centers, &mut labels, &mut sq_dists)?;
        ctx.checkpoint()?;
        let new_centers = finish_centers(x, &labels, &sq_dists, sums, counts);
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
        step.assign(&centers, &mut labels, &mut sq_dists)?;
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

/// The CPU step: blocked GEMM distances, fused with the sums when the lanes fit.
struct CpuStep<'a> {
    x: &'a Matrix,
    x_sq: &'a [f32],
    ctx: &'a RunContext,
    lanes: Option<usize>,
    /// The lanes' k × d sums live for the whole run: allocating them afresh every
    /// iteration cost page faults and, on freeing, TLB shoot-downs across the cores.
    lane_pool: Vec<Vec<f64>>,
}

impl LloydStep for CpuStep<'_> {
    type Error = Cancelled;

    fn assign_and_sum(
        &mut self,
        centers: &Matrix,
        labels: &mut Vec<u32>,
        sq_dists: &mut Vec<f32>,
    ) -> Result<(f64, Vec<f64>, Vec<usize>), Cancelled> {
        let c_sq = row_sq_norms(centers);
        match self.lanes {
            Some(lanes) => assign_and_sum(
                self.x,
                self.x_sq,
                centers,
                &c_sq,
                lanes,
                self.ctx,
                labels,
                sq_dists,
                &mut self.lane_pool,
            ),
            None => {
                let inertia = nearest_centers_into(
                    self.x, self.x_sq, centers, &c_sq, self.ctx, labels, sq_dists,
                )?;
                self.ctx.checkpoint()?;
                let (sums, counts) = gather_sums(self.x, labels, centers.rows());
                Ok((inertia, sums, counts))
            }
        }
    }

    fn assign(
        &mut self,
        centers: &Matrix,
        labels: &mut Vec<u32>,
        sq_dists: &mut Vec<f32>,
    ) -> Result<(), Cancelled> {
        let c_sq = row_sq_norms(centers);
        nearest_centers_into(
            self.x, self.x_sq, centers, &c_sq, self.ctx, labels, sq_dists,
        )?;
        Ok(())
    }
}

/// Run Lloyd's iteration on `x` (with squared row norms `x_sq`) from `centers` on the CPU.
pub(super) fn run(
    x: &Matrix,
    x_sq: &[f32],
    centers: Matrix,
    max_iter: usize,
    tol_abs: f64,
    ctx: &RunContext,
    on_iter: impl FnMut(usize, f64),
) -> Result<RunResult, Cancelled> {
    let mut step = CpuStep {
        x,
        x_sq,
        ctx,
        lanes: lane_count(x.rows(), centers.rows(), x.cols()),
        lane_pool: Vec::new(),
    };
    drive(x, centers, max_iter, tol_abs, ctx, &mut step, on_iter)
}

/// How many lanes the fused step uses for this shape, or `None` for the gather path.
/// A function of the shape only, so that the summation order never depends on the pool.
fn lane_count(n: usize, k: usize, d: usize) -> Option<usize> {
    let per_lane = (k * d.max(1) * 8).max(1);
    let lanes = (LANE_BUDGET_BYTES / per_lane)
        .min(MAX_LANES)
        .min(n_blocks(n));
    (lanes >= MIN_LANES.min(n_blocks(n)) && lanes > 0).then_some(lanes)
}

struct LaneAcc<'a> {
    labels: &'a mut [u32],
    sq_dists: &'a mut [f32],
    /// Index of the lane's first row.
    row0: usize,
    sums: Vec<f64>,
    counts: Vec<usize>,
    inertia: f64,
}

/// Assignment and centre sums in one pass over the data, each block summed while it is
/// still in cache. Returns the inertia of the assignment, the per-cluster f64 sums and
/// the counts; every total is combined in lane order.
#[allow(clippy::too_many_arguments)]
fn assign_and_sum(
    x: &Matrix,
    x_sq: &[f32],
    centers: &Matrix,
    c_sq: &[f32],
    lanes: usize,
    ctx: &RunContext,
    labels: &mut [u32],
    sq_dists: &mut [f32],
    pool: &mut Vec<Vec<f64>>,
) -> Result<(f64, Vec<f64>, Vec<usize>), Cancelled> {
    let (k, d) = (centers.rows(), x.cols());
    let mut accs = Vec::with_capacity(lanes);
    let (mut l_rest, mut s_rest) = (labels, sq_dists);
    for r in lane_ranges(x.rows(), lanes) {
        let (l, lt) = l_rest.split_at_mut(r.len());
        let (s, st) = s_rest.split_at_mut(r.len());
        (l_rest, s_rest) = (lt, st);
        accs.push(LaneAcc {
            labels: l,
            sq_dists: s,
            row0: r.start,
            sums: match pool.pop() {
                Some(mut v) if v.len() == k * d => {
                    v.fill(0.0);
                    v
                }
                _ => vec![0f64; k * d],
            },
            counts: vec![0usize; k],
            inertia: 0.0,
        });
    }
    let accs = fold_lanes(x, x_sq, centers, c_sq, ctx, accs, |acc, blk| {
        let off = blk.start - acc.row0;
        let m = blk.rows();
        let labels = &mut acc.labels[off..off + m];
        acc.inertia += blk.nearest_into(labels, &mut acc.sq_dists[off..off + m]);
        if d == 0 {
            return;
        }
        add_block_sums(blk.x, labels, d, &mut acc.sums, &mut acc.counts);
    })?;
    ctx.checkpoint()?;
    let inertia = accs.iter().map(|a| a.inertia).sum();
    let mut counts = vec![0usize; k];
    for a in &accs {
        for (c, &v) in counts.iter_mut().zip(&a.counts) {
            *c += v;
        }
    }
    let mut sums = vec![0f64; k * d];
    // Element-wise over the lanes, in lane order; parallel over the elements.
    sums.par_chunks_mut(FEATURE_CHUNK * 16)
        .enumerate()
        .for_each(|(ci, out)| {
            let o0 = ci * FEATURE_CHUNK * 16;
            let len = out.len();
            for a in &accs {
                for (o, &v) in out.iter_mut().zip(&a.sums[o0..o0 + len]) {
                    *o += v;
                }
            }
        });
    pool.extend(accs.into_iter().map(|a| a.sums));
    Ok((inertia, sums, counts))
}

/// Features summed per register tile in [`add_block_sums`]: 32 f64 = four AVX-512 registers.
const SUM_TILE: usize = 32;

/// Add the rows of one block (row-major, `d` wide) into their clusters' f64 sums.
///
/// The rows are grouped by cluster first (a stable counting sort), and each cluster's
/// sum is then carried in registers, `SUM_TILE` features at a time, across all of its
/// rows in the block: the k × d sums are read and written once per cluster and block
/// instead of once per row (adding row by row in data order cycles through all k sums,
/// k·d·8 bytes, far past L1). Every element still receives its rows in row order, so the
/// result is bit-identical to adding row by row.
fn add_block_sums(xb: &[f32], labels: &[u32], d: usize, sums: &mut [f64], counts: &mut [usize]) {
    let k = counts.len();
    let m = labels.len();
    let mut start = vec![0u32; k + 1];
    for &l in labels {
        start[l as usize + 1] += 1;
    }
    for j in 0..k {
        start[j + 1] += start[j];
    }
    let mut fill = start.clone();
    let mut order = vec![0u32; m];
    for (i, &l) in labels.iter().enumerate() {
        order[fill[l as usize] as usize] = i as u32;
        fill[l as usize] += 1;
    }
    for j in 0..k {
        let rows = &order[start[j] as usize..start[j + 1] as usize];
        if rows.is_empty() {
            continue;
        }
        counts[j] += rows.len();
        let s = &mut sums[j * d..(j + 1) * d];
        let mut f0 = 0;
        while f0 + SUM_TILE <= d {
            let mut t = [0f64; SUM_TILE];
            t.copy_from_slice(&s[f0..f0 + SUM_TILE]);
            for &r in rows {
                let xr = &xb[r as usize * d + f0..r as usize * d + f0 + SUM_TILE];
                for q in 0..SUM_TILE {
                    t[q] += f64::from(xr[q]);
                }
            }
            s[f0..f0 + SUM_TILE].copy_from_slice(&t);
            f0 += SUM_TILE;
        }
        if f0 < d {
            for &r in rows {
                let xr = &xb[r as usize * d + f0..(r as usize + 1) * d];
                for (t, &v) in s[f0..].iter_mut().zip(xr) {
                    *t += f64::from(v);
                }
            }
        }
    }
}

/// Per-cluster f64 sums and counts by gathering each cluster's members (a counting sort
/// gives each cluster its member list, so rows are summed in row order whatever the
/// split of the work). Needs no per-lane memory.
fn gather_sums(x: &Matrix, labels: &[u32], k: usize) -> (Vec<f64>, Vec<usize>) {
    let d = x.cols();
    let mut offsets = vec![0usize; k + 1];
    for &l in labels {
        offsets[l as usize + 1] += 1;
    }
    for j in 0..k {
        offsets[j + 1] += offsets[j];
    }
    let mut fill = offsets.clone();
    let mut members = vec![0u32; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        members[fill[l as usize]] = i as u32;
        fill[l as usize] += 1;
    }

    let mut sums = vec![0f64; k * d];
    if d > 0 {
        sums.par_chunks_mut(d).enumerate().for_each(|(j, row)| {
            let mine = &members[offsets[j]..offsets[j + 1]];
            row.par_chunks_mut(FEATURE_CHUNK)
                .enumerate()
                .for_each(|(fc, seg)| {
                    let f0 = fc * FEATURE_CHUNK;
                    for &i in mine {
                        let xs = &x.row(i as usize)[f0..f0 + seg.len()];
                        for (s, &v) in seg.iter_mut().zip(xs) {
                            *s += f64::from(v);
                        }
                    }
                });
        });
    }
    let counts = offsets.windows(2).map(|w| w[1] - w[0]).collect();
    (sums, counts)
}

/// New centres from the sums: empty clusters first take the rows farthest from their
/// centres, as scikit-learn's `_relocate_empty_clusters_dense` does, then each sum is
/// divided by its count.
pub(super) fn finish_centers(
    x: &Matrix,
    labels: &[u32],
    sq_dists: &[f32],
    mut sums: Vec<f64>,
    mut counts: Vec<usize>,
) -> Matrix {
    let d = x.cols();
    let k = counts.len();
    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
    if !empty.is_empty() {
        for (&new, far) in empty.iter().zip(farthest_rows(sq_dists, empty.len())) {
            let old = labels[far] as usize;
            let xr = x.row(far);
            for f in 0..d {
                sums[old * d + f] -= f64::from(xr[f]);
                sums[new * d + f] = f64::from(xr[f]);
            }
            counts[old] = counts[old].saturating_sub(1);
            counts[new] = 1;
        }
    }

    let mut centers = Matrix::zeros(k, d);
    for j in 0..k {
        // A cluster left with no member keeps its raw sum, as in scikit-learn.
        let scale = if counts[j] > 0 {
            1.0 / counts[j] as f64
        } else {
            1.0
        };
        for (c, &s) in centers.row_mut(j).iter_mut().zip(&sums[j * d..(j + 1) * d]) {
            *c = (s * scale) as f32;
        }
    }
    centers
}

/// Indices of the `m` rows with the largest squared distance, farthest first (ties by
/// lower index).
fn farthest_rows(sq_dists: &[f32], m: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..sq_dists.len()).collect();
    let by_far = |a: &usize, b: &usize| sq_dists[*b].total_cmp(&sq_dists[*a]).then(a.cmp(b));
    let m = m.min(idx.len());
    if m == 0 {
        return Vec::new();
    }
    if m < idx.len() {
        idx.select_nth_unstable_by(m - 1, by_far);
        idx.truncate(m);
    }
    idx.sort_by(by_far);
    idx
}

/// Sum over centres of the squared distance each one moved.
pub(super) fn sq_shift(old: &Matrix, new: &Matrix) -> f64 {
    old.as_slice()
        .iter()
        .zip(new.as_slice())
        .map(|(&a, &b)| {
            let t = f64::from(a) - f64::from(b);
            t * t
        })
        .sum()
}

/// Recompute each row's squared distance to its centre directly (no expansion, so no
/// cancellation), as scikit-learn's `_inertia_dense` does; returns the total, summed per
/// block and combined in block order.
pub(super) fn exact_sq_dists(
    x: &Matrix,
    centers: &Matrix,
    labels: &[u32],
    sq_dists: &mut [f32],
    ctx: &RunContext,
) -> Result<f64, Cancelled> {
    let n = x.rows();
    let sums: Vec<f64> = sq_dists
        .par_chunks_mut(BLOCK_ROWS)
        .enumerate()
        .map(|(b, out)| {
            ctx.checkpoint()?;
            let mut sum = 0.0f64;
            for (o, i) in out.iter_mut().zip(block_range(b, n)) {
                let c = centers.row(labels[i] as usize);
                let v: f64 = x
                    .row(i)
                    .iter()
                    .zip(c)
                    .map(|(&a, &b)| {
                        let t = f64::from(a) - f64::from(b);
                        t * t
                    })
                    .sum();
                *o = v as f32;
                sum += v;
            }
            Ok(sum)
        })
        .collect::<Result<_, Cancelled>>()?;
    debug_assert_eq!(sums.len(), n_blocks(n));
    Ok(sums.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceKind;

    #[test]
    fn fused_and_gather_sums_agree() {
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        let n = 2 * BLOCK_ROWS + 300;
        let d = 70; // more than one feature chunk, and not a multiple of it
        let data: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
            .collect();
        let x = Matrix::from_vec(n, d, data).unwrap();
        let x_sq = row_sq_norms(&x);
        let centers = Matrix::from_vec(3, d, x.rows_slice(10, 13).to_vec()).unwrap();
        let c_sq = row_sq_norms(&centers);
        let mut labels = vec![0u32; n];
        let mut sq = vec![0f32; n];
        let (_, sums, counts) = assign_and_sum(
            &x,
            &x_sq,
            &centers,
            &c_sq,
            3,
            &ctx,
            &mut labels,
            &mut sq,
            &mut Vec::new(),
        )
        .unwrap();
        let (g_sums, g_counts) = gather_sums(&x, &labels, 3);
        assert_eq!(counts, g_counts);
        assert_eq!(counts.iter().sum::<usize>(), n);
        for (a, b) in sums.iter().zip(&g_sums) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn farthest_rows_are_ordered_and_break_ties_by_index() {
        assert_eq!(farthest_rows(&[1.0, 5.0, 3.0, 5.0, 0.0], 3), vec![1, 3, 2]);
        assert_eq!(farthest_rows(&[1.0], 3), vec![0]);
        assert!(farthest_rows(&[], 1).is_empty());
    }
}
