//! Squared Euclidean distances between the rows of a data matrix and a small set of
//! centres, computed block by block as `||x||² + ||c||² − 2·x·cᵀ` with one GEMM per block.
//!
//! Only one `BLOCK_ROWS × k` block per worker exists at a time, so memory stays at
//! O(threads · BLOCK_ROWS · k) however many rows there are. Blocks are fixed in size and
//! every reduction over them is combined in block order, so results are bit-identical
//! whatever the size of the rayon pool.

use std::ops::Range;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::model::{Cancelled, Matrix, RunContext};

/// Rows per block: large enough for the GEMM to run near peak, small enough that the
/// block and its distance tile stay in cache. Never derived from the thread count.
pub const BLOCK_ROWS: usize = 1024;

/// Rows whose running minima the argmin keeps in registers at once.
const ARGMIN_GROUP: usize = 16;

/// Number of blocks covering `n_rows` rows.
pub fn n_blocks(n_rows: usize) -> usize {
    n_rows.div_ceil(BLOCK_ROWS)
}

/// The rows of block `b`.
pub fn block_range(b: usize, n_rows: usize) -> Range<usize> {
    let start = b * BLOCK_ROWS;
    start..(start + BLOCK_ROWS).min(n_rows)
}

/// Squared L2 norm of every row. Accumulated in f64 so that the norm term, which is large
/// next to the distances it is used to recover, carries no avoidable rounding.
pub fn row_sq_norms(x: &Matrix) -> Vec<f32> {
    (0..x.rows())
        .into_par_iter()
        .with_min_len(BLOCK_ROWS)
        .map(|i| sq_norm(x.row(i)) as f32)
        .collect()
}

fn sq_norm(v: &[f32]) -> f64 {
    v.iter().map(|&a| f64::from(a) * f64::from(a)).sum()
}

/// One block of rows and its distances to every centre.
pub struct DistanceBlock<'a> {
    /// Index of the block's first row in the whole matrix.
    pub start: usize,
    /// The block's rows, row-major.
    pub x: &'a [f32],
    /// Squared norms of the block's rows.
    pub x_sq: &'a [f32],
    /// `−2·x_i·c_j`, column-major (`j`-major): the GEMM runs faster writing columns, and
    /// the argmin then sweeps whole contiguous columns, which vectorises.
    cross: &'a [f32],
    /// Squared norms of the centres.
    c_sq: &'a [f32],
    k: usize,
}

impl DistanceBlock<'_> {
    pub fn rows(&self) -> usize {
        self.x_sq.len()
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// `||c_j||² − 2·x_i·c_j`: the squared distance less the row's own norm, which is
    /// all a ranking of centres needs (and is what scikit-learn ranks).
    pub fn partial(&self, i: usize, j: usize) -> f32 {
        self.cross[j * self.rows() + i] + self.c_sq[j]
    }

    /// Squared distance from row `i` of the block to centre `j`, clamped at zero because
    /// the expanded form can go slightly negative through cancellation.
    pub fn sq_dist(&self, i: usize, j: usize) -> f32 {
        (self.x_sq[i] + self.partial(i, j)).max(0.0)
    }

    /// Squared distances of every row of the block to centre `j`, clamped at zero, into
    /// `out` (one per row): the column-wise form of [`Self::sq_dist`], which vectorises.
    pub fn sq_dist_col(&self, j: usize, out: &mut [f32]) {
        let m = self.rows();
        let cj = self.c_sq[j];
        let col = &self.cross[j * m..(j + 1) * m];
        for ((o, &g), &xn) in out[..m].iter_mut().zip(col).zip(self.x_sq) {
            *o = (xn + (g + cj)).max(0.0);
        }
    }

    /// Add the Euclidean distance of every row of the block to centre `j` into `acc`
    /// (one per row; squared distances clamped at zero before the root): the fused form of
    /// [`Self::sq_dist_col`] + `sqrt` + add, which vectorises.
    pub fn add_dist_col(&self, j: usize, acc: &mut [f32]) {
        let m = self.rows();
        let cj = self.c_sq[j];
        let col = &self.cross[j * m..(j + 1) * m];
        for ((a, &g), &xn) in acc[..m].iter_mut().zip(col).zip(self.x_sq) {
            *a += (xn + (g + cj)).max(0.0).sqrt();
        }
    }

    /// The nearest centre of every row (the first one on ties) and its squared distance,
    /// written into `labels` and `sq` (one per row of the block); returns the sum of the
    /// squared distances. With no centres at all, labels are 0 and distances `+inf`.
    pub fn nearest_into(&self, labels: &mut [u32], sq: &mut [f32]) -> f64 {
        let m = self.rows();
        let labels = &mut labels[..m];
        let sq = &mut sq[..m];
        // Rows go in groups of ARGMIN_GROUP whose running minima stay in registers while
        // the centres' columns stream past; a fixed group width lets the compiler unroll
        // and vectorise the compare-and-select.
        let mut i0 = 0;
        while i0 + ARGMIN_GROUP <= m {
            let mut best = [f32::INFINITY; ARGMIN_GROUP];
            let mut arg = [0u32; ARGMIN_GROUP];
            for (j, &cj) in self.c_sq.iter().enumerate() {
                let col = &self.cross[j * m + i0..j * m + i0 + ARGMIN_GROUP];
                for t in 0..ARGMIN_GROUP {
                    // Strict: the first centre wins ties, as in scikit-learn's argmin.
                    let v = col[t] + cj;
                    let better = v < best[t];
                    best[t] = if better { v } else { best[t] };
                    arg[t] = if better { j as u32 } else { arg[t] };
                }
            }
            sq[i0..i0 + ARGMIN_GROUP].copy_from_slice(&best);
            labels[i0..i0 + ARGMIN_GROUP].copy_from_slice(&arg);
            i0 += ARGMIN_GROUP;
        }
        for i in i0..m {
            let (mut best, mut arg) = (f32::INFINITY, 0u32);
            for j in 0..self.k {
                let v = self.partial(i, j);
                if v < best {
                    best = v;
                    arg = j as u32;
                }
            }
            sq[i] = best;
            labels[i] = arg;
        }
        if self.k == 0 {
            return f64::INFINITY;
        }
        let mut sum = 0.0f64;
        for (s, &xn) in sq.iter_mut().zip(self.x_sq) {
            *s = (*s + xn).max(0.0);
            sum += f64::from(*s);
        }
        sum
    }
}

/// Fill `buf` with the block of rows `rows` against all centres and describe it.
fn compute_block<'a>(
    x: &'a Matrix,
    x_sq: &'a [f32],
    rhs: MatRef<'_, f32>,
    c_sq: &'a [f32],
    rows: Range<usize>,
    buf: &'a mut Vec<f32>,
) -> DistanceBlock<'a> {
    let d = x.cols();
    let k = c_sq.len();
    let m = rows.len();
    let xb = x.rows_slice(rows.start, rows.end);
    buf.clear();
    buf.resize(m * k, 0.0);
    let lhs = MatRef::from_row_major_slice(xb, m, d);
    let dst = MatMut::from_column_major_slice_mut(&mut buf[..], m, k);
    // Sequential inside the block: parallelism is across blocks, which keeps the
    // arithmetic of every block independent of the pool size.
    matmul(dst, Accum::Replace, lhs, rhs, -2.0f32, Par::Seq);
    DistanceBlock {
        start: rows.start,
        x: xb,
        x_sq: &x_sq[rows],
        cross: &buf[..],
        c_sq,
        k,
    }
}

thread_local! {
    /// Each worker's distance tile, kept between calls: a fresh `BLOCK_ROWS × k` buffer
    /// per block (or per lane) is an mmap and munmap each time at these sizes, whose page
    /// faults and cross-core TLB shoot-downs showed up as a tenth of a Lloyd iteration.
    /// Only scratch: every use overwrites what it reads.
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's tile buffer (a fresh one if the tile is already in use
/// further up this thread's stack, as when rayon runs a nested task while waiting).
fn with_tile<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    TILE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Compute the distance block of every block of rows of `x` against the rows of `centers`
/// and map each through `f`, in parallel; the results come back in block order.
/// `x_sq` and `c_sq` are the squared row norms of `x` and `centers` ([`row_sq_norms`]).
/// The run is checked for cancellation before each block.
pub fn map_blocks<R, F>(
    x: &Matrix,
    x_sq: &[f32],
    centers: &Matrix,
    c_sq: &[f32],
    ctx: &RunContext,
    f: F,
) -> Result<Vec<R>, Cancelled>
where
    R: Send,
    F: Fn(&DistanceBlock<'_>) -> R + Sync + Send,
{
    check_shapes(x, x_sq, centers, c_sq);
    let n = x.rows();
    // The transposed centre matrix is a free view: row-major k×d read as column-major d×k.
    let rhs =
        MatRef::from_row_major_slice(centers.as_slice(), centers.rows(), x.cols()).transpose();
    (0..n_blocks(n))
        .into_par_iter()
        .map(|b| {
            ctx.checkpoint()?;
            with_tile(|buf| {
                let block = compute_block(x, x_sq, rhs, c_sq, block_range(b, n), buf);
                Ok(f(&block))
            })
        })
        .collect()
}

/// Rows covered by each of `lanes` lanes: contiguous runs of whole blocks, as even as
/// possible. Depends only on `n_rows` and `lanes`.
pub fn lane_ranges(n_rows: usize, lanes: usize) -> Vec<Range<usize>> {
    let nb = n_blocks(n_rows);
    let lanes = lanes.max(1);
    (0..lanes)
        .map(|g| {
            let b0 = g * nb / lanes;
            let b1 = (g + 1) * nb / lanes;
            (b0 * BLOCK_ROWS).min(n_rows)..(b1 * BLOCK_ROWS).min(n_rows)
        })
        .collect()
}

/// Fold the distance blocks of `x` into one accumulator per lane: lane `g` visits, in
/// order, the blocks of `lane_ranges(x.rows(), accs.len())[g]`; lanes run in parallel and
/// come back in order. Because the lane count is the caller's choice (from the problem's
/// shape, never from the pool size), sums kept in the accumulators and combined in lane
/// order are the same whatever the thread count, while each lane needs only one
/// accumulator instead of one per block.
pub fn fold_lanes<A, F>(
    x: &Matrix,
    x_sq: &[f32],
    centers: &Matrix,
    c_sq: &[f32],
    ctx: &RunContext,
    accs: Vec<A>,
    fold: F,
) -> Result<Vec<A>, Cancelled>
where
    A: Send,
    F: Fn(&mut A, &DistanceBlock<'_>) + Sync + Send,
{
    check_shapes(x, x_sq, centers, c_sq);
    let n = x.rows();
    let rhs =
        MatRef::from_row_major_slice(centers.as_slice(), centers.rows(), x.cols()).transpose();
    let ranges = lane_ranges(n, accs.len());
    accs.into_par_iter()
        .zip(ranges)
        .map(|(mut acc, lane)| {
            with_tile(|buf| {
                let mut start = lane.start;
                while start < lane.end {
                    ctx.checkpoint()?;
                    let end = (start + BLOCK_ROWS).min(lane.end);
                    let block = compute_block(x, x_sq, rhs, c_sq, start..end, buf);
                    fold(&mut acc, &block);
                    start = end;
                }
                Ok(())
            })?;
            Ok(acc)
        })
        .collect()
}

fn check_shapes(x: &Matrix, x_sq: &[f32], centers: &Matrix, c_sq: &[f32]) {
    // Internal invariants (the callers compute the norms themselves), not input checks.
    assert_eq!(x.cols(), centers.cols(), "data and centres differ in width");
    assert_eq!(x_sq.len(), x.rows(), "one norm per data row");
    assert_eq!(c_sq.len(), centers.rows(), "one norm per centre");
}

/// Nearest centre of every row of `x`: writes labels and squared distances into the given
/// slices (length `x.rows()`) and returns the sum of the squared distances, accumulated
/// per block in f64 and combined in block order.
pub fn nearest_centers_into(
    x: &Matrix,
    x_sq: &[f32],
    centers: &Matrix,
    c_sq: &[f32],
    ctx: &RunContext,
    labels: &mut [u32],
    sq_dists: &mut [f32],
) -> Result<f64, Cancelled> {
    let n = x.rows();
    let per_block = map_blocks(x, x_sq, centers, c_sq, ctx, |blk| {
        let mut l = vec![0u32; blk.rows()];
        let mut dd = vec![0f32; blk.rows()];
        let sum = blk.nearest_into(&mut l, &mut dd);
        (l, dd, sum)
    })?;
    let mut total = 0.0f64;
    for (b, (l, dd, sum)) in per_block.into_iter().enumerate() {
        let r = block_range(b, n);
        labels[r.clone()].copy_from_slice(&l);
        sq_dists[r].copy_from_slice(&dd);
        total += sum;
    }
    Ok(total)
}

/// Nearest centre of every row of `x`: `(labels, squared distances)`.
pub fn nearest_centers(
    x: &Matrix,
    x_sq: &[f32],
    centers: &Matrix,
    c_sq: &[f32],
    ctx: &RunContext,
) -> Result<(Vec<u32>, Vec<f32>), Cancelled> {
    let mut labels = vec![0u32; x.rows()];
    let mut sq = vec![0f32; x.rows()];
    nearest_centers_into(x, x_sq, centers, c_sq, ctx, &mut labels, &mut sq)?;
    Ok((labels, sq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceKind;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = (0..rows * cols)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        Matrix::from_vec(rows, cols, data).expect("shape is consistent")
    }

    fn plain_sq_dist(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| {
                let t = f64::from(p) - f64::from(q);
                t * t
            })
            .sum()
    }

    #[test]
    fn blocked_distances_match_a_plain_loop() {
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        // Row count deliberately not a multiple of the block size (two full blocks and a
        // ragged one), and a centre count and width that fit no SIMD lane count evenly.
        let n = 2 * BLOCK_ROWS + 37;
        let x = random_matrix(n, 19, 1);
        let c = random_matrix(7, 19, 2);
        let x_sq = row_sq_norms(&x);
        let c_sq = row_sq_norms(&c);
        let all = map_blocks(&x, &x_sq, &c, &c_sq, &ctx, |blk| {
            (0..blk.rows())
                .flat_map(|i| (0..blk.k()).map(move |j| (i, j)))
                .map(|(i, j)| (blk.start + i, j, blk.sq_dist(i, j)))
                .collect::<Vec<_>>()
        })
        .unwrap();
        assert_eq!(all.len(), 3);
        let mut seen = 0;
        for (i, j, d2) in all.into_iter().flatten() {
            let want = plain_sq_dist(x.row(i), c.row(j));
            assert!(
                (f64::from(d2) - want).abs() <= 1e-4 * (1.0 + want),
                "row {i} centre {j}: {d2} vs {want}"
            );
            seen += 1;
        }
        assert_eq!(seen, n * 7);

        let (labels, sq) = nearest_centers(&x, &x_sq, &c, &c_sq, &ctx).unwrap();
        for i in 0..n {
            let dists: Vec<f64> = (0..7).map(|j| plain_sq_dist(x.row(i), c.row(j))).collect();
            let best = dists.iter().cloned().fold(f64::INFINITY, f64::min);
            // Either the same centre, or one whose distance is equal within rounding.
            assert!(dists[labels[i] as usize] - best <= 1e-4 * (1.0 + best));
            assert!((f64::from(sq[i]) - best).abs() <= 1e-4 * (1.0 + best));
        }
    }

    #[test]
    fn lanes_visit_every_row_once_in_order() {
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        let n = 5 * BLOCK_ROWS + 11;
        let x = random_matrix(n, 4, 3);
        let c = random_matrix(3, 4, 4);
        let (x_sq, c_sq) = (row_sq_norms(&x), row_sq_norms(&c));
        for lanes in [1, 3, 7] {
            let accs = vec![Vec::<usize>::new(); lanes];
            let got = fold_lanes(&x, &x_sq, &c, &c_sq, &ctx, accs, |acc, blk| {
                acc.extend(blk.start..blk.start + blk.rows());
            })
            .unwrap();
            let flat: Vec<usize> = got.into_iter().flatten().collect();
            assert_eq!(flat, (0..n).collect::<Vec<_>>(), "{lanes} lanes");
        }
    }

    #[test]
    fn cancelled_context_stops_the_blocks() {
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        ctx.cancel_token().cancel();
        let x = random_matrix(10, 3, 1);
        let x_sq = row_sq_norms(&x);
        assert_eq!(
            nearest_centers(&x, &x_sq, &x, &x_sq, &ctx).unwrap_err(),
            Cancelled
        );
    }
}
