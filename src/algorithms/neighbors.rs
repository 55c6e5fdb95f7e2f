//! The neighbour engine the density algorithms share: exact k-nearest-neighbour and radius
//! queries answered by brute force over blocked GEMM distance tiles.
//!
//! Trees (kd, ball) lose to brute force at the hundreds of dimensions embeddings have, and
//! the GEMM makes brute force run near the machine's peak. The expanded distance
//! `||x||² + ||y||² − 2·x·y` in f32 is only an estimate, though: near neighbours are exactly
//! where it cancels worst. So the tile only *filters* — with a margin that covers its
//! rounding error — and every candidate that passes is re-measured exactly in f64 from the
//! original rows, as scikit-learn measures. Results are therefore exact, and the same for
//! any thread count: each query is handled by one task that visits the data rows in index
//! order.
//!
//! Memory: one `QUERY_BLOCK × BLOCK_ROWS` tile per worker, plus a prepared copy of the data
//! (centred for Euclidean, which keeps the expanded form's cancellation small; unit rows for
//! cosine). Never an N×N matrix.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::algorithms::distance::{BLOCK_ROWS, block_range, n_blocks, row_sq_norms};
use crate::gpu::{self, GpuError};
use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, Cancelled, DeviceKind, Matrix, RunContext};

/// Query rows handled together against each data block.
const QUERY_BLOCK: usize = 256;

/// Top-k heap entries held at once by [`Points::kth_distances`] (16 bytes each).
const KTH_HEAP_BUDGET: usize = 1 << 21;

/// Data blocks every query of a scan sees before the unsatisfied ones are regrouped.
const FIRST_BLOCKS: usize = 4;

/// Rows of a block visited nearest-estimate first while a query's bound is still infinite.
const SEED_VISITS: usize = 32;

/// Distance used by a density algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    /// `1 − cos(a, b)`, as scikit-learn's `cosine_distances`.
    Cosine,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

/// Read `metric`: `"euclidean"` (default; `"l2"` is scikit-learn's alias) or `"cosine"`.
pub fn read_metric(r: &mut ParamReader<'_>) -> ApiResult<Metric> {
    match r.string("metric")? {
        None | Some("euclidean") | Some("l2") => Ok(Metric::Euclidean),
        Some("cosine") => Ok(Metric::Cosine),
        Some(other) => Err(ApiError::invalid_parameter(
            "metric",
            format!("must be one of euclidean, l2, cosine, got {other:?}"),
        )),
    }
}

/// One row's nearest rows: `(exact distance, index)`, ascending.
type Neighbours = Vec<(f64, usize)>;

/// The `k` nearest rows of every row, row-major `n × k`.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    pub k: usize,
    pub indices: Vec<u32>,
    pub distances: Vec<f64>,
}

impl Knn {
    pub fn indices_of(&self, i: usize) -> &[u32] {
        &self.indices[i * self.k..(i + 1) * self.k]
    }
    pub fn distances_of(&self, i: usize) -> &[f64] {
        &self.distances[i * self.k..(i + 1) * self.k]
    }
    /// Distance to the farthest of the `k` (scikit-learn's core distance when `k` is
    /// `min_samples`).
    pub fn kth_distance(&self, i: usize) -> f64 {
        self.distances_of(i).last().copied().unwrap_or(0.0)
    }
}

/// Rows prepared for exact distance queries in one metric.
pub struct Points<'a> {
    x: &'a Matrix,
    metric: Metric,
    /// Centred (Euclidean) or unit (cosine) rows: what the GEMM tiles are built from.
    prepared: Matrix,
    /// Squared norms of the prepared rows.
    prepared_sq: Vec<f32>,
    /// 1/‖row‖ of the original rows in f64 (cosine only; 1 for zero rows, as scikit-learn's
    /// `normalize` leaves them zero).
    inv_norms: Vec<f64>,
    /// A bound on the relative error of an f32 dot product of this length (and of the
    /// norms), with room to spare: the tile filter lets through everything within it.
    rel: f32,
}

impl<'a> Points<'a> {
    pub fn new(x: &'a Matrix, metric: Metric) -> Points<'a> {
        let d = x.cols();
        let rel = (d as f32 + 16.0) * f32::EPSILON;
        let (prepared, inv_norms) = match metric {
            Metric::Euclidean => {
                let mut p = x.clone();
                centre_columns(&mut p);
                (p, Vec::new())
            }
            Metric::Cosine => {
                let inv: Vec<f64> = (0..x.rows())
                    .into_par_iter()
                    .with_min_len(BLOCK_ROWS)
                    .map(|i| {
                        let n = sq_norm64(x.row(i)).sqrt();
                        if n > 0.0 { 1.0 / n } else { 1.0 }
                    })
                    .collect();
                let mut p = x.clone();
                p.as_mut_slice()
                    .par_chunks_mut(d.max(1))
                    .zip(inv.par_iter())
                    .for_each(|(row, &s)| {
                        row.iter_mut().for_each(|v| *v = (f64::from(*v) * s) as f32)
                    });
                (p, inv)
            }
        };
        let prepared_sq = row_sq_norms(&prepared);
        Points {
            x,
            metric,
            prepared,
            prepared_sq,
            inv_norms,
            rel,
        }
    }

    pub fn len(&self) -> usize {
        self.x.rows()
    }

    pub fn is_empty(&self) -> bool {
        self.x.rows() == 0
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Exact distance between rows `i` and `j`, in f64 as scikit-learn computes it, and
    /// symmetric to the last bit.
    pub fn dist(&self, i: usize, j: usize) -> f64 {
        let (a, b) = (self.x.row(i), self.x.row(j));
        match self.metric {
            Metric::Euclidean => lane_sum(a, b, |p, q| (p - q) * (p - q)).sqrt(),
            Metric::Cosine => {
                let dot = lane_sum(a, b, |p, q| p * q);
                (1.0 - dot * (self.inv_norms[i] * self.inv_norms[j])).clamp(0.0, 2.0)
            }
        }
    }

    /// Exact distances from row `i` to every row, into `out` (one per row).
    pub fn dists_from(&self, i: usize, out: &mut [f64]) {
        out[..self.len()]
            .par_iter_mut()
            .with_min_len(4096)
            .enumerate()
            .for_each(|(j, o)| *o = self.dist(i, j));
    }

    /// The `k` nearest rows of every row, the row itself included, ascending by (exact
    /// distance, index). `k` is clamped to the number of rows.
    ///
    /// On a GPU run the WGSL kNN kernel proposes candidates, which are re-measured exactly
    /// and checked (see [`Self::knn_on_gpu`]); rows the check cannot vouch for, and any
    /// device failure, go through the CPU scan, so the answer is the same either way.
    pub fn knn(&self, k: usize, ctx: &RunContext) -> Result<Knn, Cancelled> {
        let n = self.len();
        let k = k.min(n);
        let (mut rows, missing) = proven_on_gpu(n, ctx, "kNN", || self.knn_on_gpu(k));
        ctx.checkpoint()?;
        let heaps = missing.iter().map(|_| TopK::new(k)).collect();
        let heaps = self.scan(&missing, ctx, heaps, TopK::bound, |h, j, d| h.offer(d, j))?;
        for (&i, h) in missing.iter().zip(heaps) {
            rows[i as usize] = Some(h.into_sorted());
        }
        let mut indices = Vec::with_capacity(n * k);
        let mut distances = Vec::with_capacity(n * k);
        for row in rows.into_iter().flatten() {
            for (d, j) in row {
                distances.push(d);
                indices.push(j as u32);
            }
        }
        Ok(Knn {
            k,
            indices,
            distances,
        })
    }

    /// The distance from every row to its `k`-th nearest row (itself included): scikit-learn's
    /// core distance when `k` is `min_samples`. `k` may be as large as the data (OPTICS takes
    /// it as a fraction of N), so beyond what a neighbour list holds cheaply the queries go
    /// in chunks whose top-k heaps together stay within a fixed budget: memory never grows
    /// as N·k.
    pub fn kth_distances(&self, k: usize, ctx: &RunContext) -> Result<Vec<f64>, Cancelled> {
        let k = k.min(self.len());
        if k <= gpu::neighbors::MAX_K {
            let knn = self.knn(k, ctx)?;
            return Ok((0..self.len()).map(|i| knn.kth_distance(i)).collect());
        }
        self.kth_distances_in_chunks(k, (KTH_HEAP_BUDGET / k).max(QUERY_BLOCK), ctx)
    }

    fn kth_distances_in_chunks(
        &self,
        k: usize,
        chunk_rows: usize,
        ctx: &RunContext,
    ) -> Result<Vec<f64>, Cancelled> {
        let all: Vec<u32> = (0..self.len() as u32).collect();
        let mut out = Vec::with_capacity(all.len());
        for chunk in all.chunks(chunk_rows) {
            let heaps = chunk.iter().map(|_| TopK::new(k)).collect();
            let heaps = self.scan(chunk, ctx, heaps, TopK::bound, |h, j, d| h.offer(d, j))?;
            out.extend(heaps.iter().map(TopK::bound));
        }
        Ok(out)
    }

    /// kNN rows from the GPU kernel, exact where proven: the kernel ranks by f32 expanded
    /// distances, so it is asked for extra candidates, every candidate is re-measured
    /// exactly, and a row is kept only if the `k`-th exact distance is below what any row
    /// outside its candidate list can be (that list's last approximate distance less the
    /// f32 error margin). `None` where the kernel does not apply (more neighbours than it
    /// holds; cosine with zero rows, whose unit-row distance is not monotone in cosine).
    fn knn_on_gpu(&self, k: usize) -> Result<Option<Vec<Option<Neighbours>>>, GpuError> {
        let n = self.len();
        let wide = (k + k / 2 + 8).min(gpu::neighbors::MAX_K).min(n);
        if k == 0 || wide < k || (k < n && wide == k) {
            return Ok(None);
        }
        if self.metric == Metric::Cosine && self.has_zero_rows() {
            return Ok(None);
        }
        let context = gpu::shared_context()?;
        let (idx, approx) =
            gpu::neighbors::knn_candidates(&context, &self.prepared, &self.prepared_sq, wide)?;
        let max_sq = self.prepared_sq.iter().copied().fold(0f32, f32::max);
        let rows = (0..n)
            .into_par_iter()
            .map(|i| {
                let cand = &idx[i * wide..(i + 1) * wide];
                let mut exact: Vec<(f64, usize)> = cand
                    .iter()
                    .map(|&j| (self.dist(i, j as usize), j as usize))
                    .collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                exact.truncate(k);
                if wide == n {
                    return Some(exact);
                }
                // Any row outside the list has an approximate squared distance of at
                // least the list's last, hence a true one of at least that less the error.
                let last = approx[(i + 1) * wide - 1];
                let err = self.rel * (self.prepared_sq[i] + max_sq);
                let outside = self.filter_to_distance(last - err);
                let kth = exact.last().map_or(0.0, |e| e.0);
                (kth < outside).then_some(exact)
            })
            .collect();
        Ok(Some(rows))
    }

    /// Whether some prepared row is zero. For cosine that breaks the kernels' premise: a
    /// zero row's squared distance to a unit row is 1, which reads as cosine distance 0.5
    /// where the truth is 1.
    fn has_zero_rows(&self) -> bool {
        self.prepared_sq.contains(&0.0)
    }

    /// A distance from a value in the filter's Euclidean units (squared distance between
    /// prepared rows); for unit rows, squared distance = 2 · cosine distance.
    fn filter_to_distance(&self, sq: f32) -> f64 {
        let sq = f64::from(sq.max(0.0));
        match self.metric {
            Metric::Euclidean => sq.sqrt(),
            Metric::Cosine => sq / 2.0,
        }
    }

    /// Whether each row has at least `min_count` rows (itself included) within `eps`.
    ///
    /// On a GPU run the radius-count kernel counts at a threshold just inside and just
    /// outside `eps` (by the f32 error margin): a row with enough neighbours inside is
    /// certainly dense, a row with too few outside certainly not; only rows between the
    /// two are counted again exactly on the CPU. Elsewhere, one CPU scan that stops
    /// counting a row once it has enough.
    pub fn dense_rows(
        &self,
        eps: f64,
        min_count: usize,
        ctx: &RunContext,
    ) -> Result<Vec<bool>, Cancelled> {
        let n = self.len();
        let (mut dense, unsure) = proven_on_gpu(n, ctx, "radius count", || {
            self.dense_rows_on_gpu(eps, min_count)
        });
        ctx.checkpoint()?;
        let counts = self.scan(
            &unsure,
            ctx,
            vec![0usize; unsure.len()],
            |&c| {
                if c >= min_count {
                    f64::NEG_INFINITY
                } else {
                    eps
                }
            },
            |c, _, d| {
                if d <= eps {
                    *c += 1;
                }
            },
        )?;
        for (&i, c) in unsure.iter().zip(counts) {
            dense[i as usize] = Some(c >= min_count);
        }
        Ok(dense.into_iter().map(|d| d.unwrap_or(false)).collect())
    }

    fn dense_rows_on_gpu(
        &self,
        eps: f64,
        min_count: usize,
    ) -> Result<Option<Vec<Option<bool>>>, GpuError> {
        if self.metric == Metric::Cosine && self.has_zero_rows() {
            return Ok(None);
        }
        let sq = match self.metric {
            Metric::Euclidean => eps * eps,
            Metric::Cosine => 2.0 * eps,
        } as f32;
        let max_sq = self.prepared_sq.iter().copied().fold(0f32, f32::max);
        let err = self.rel * 2.0 * max_sq;
        let context = gpu::shared_context()?;
        let inner = gpu::neighbors::radius_counts(
            &context,
            &self.prepared,
            &self.prepared_sq,
            (sq - err).max(0.0),
        )?;
        let outer =
            gpu::neighbors::radius_counts(&context, &self.prepared, &self.prepared_sq, sq + err)?;
        Ok(Some(
            inner
                .iter()
                .zip(&outer)
                .map(|(&lo, &hi)| {
                    if lo as usize >= min_count {
                        Some(true)
                    } else if (hi as usize) < min_count {
                        Some(false)
                    } else {
                        None
                    }
                })
                .collect(),
        ))
    }

    /// The blocked scan under every query: for each query row `queries[q]`, visit the data
    /// rows `j` whose distance may be at most `bound(&accs[q])`, calling
    /// `visit(&mut accs[q], j, exact_distance)`. The tile filter has a margin, so rows a
    /// little beyond the bound are visited too: `visit` decides on the exact distance.
    /// `bound` is read again after every visit, so a shrinking bound (a top-k) prunes more as
    /// the scan goes. Blocks come in index order and so do the rows within a block, except
    /// that while the bound is infinite the block's few nearest rows by estimate go first:
    /// an accumulator that needs a fixed order must break its ties by index itself.
    pub fn scan<A, B, V>(
        &self,
        queries: &[u32],
        ctx: &RunContext,
        accs: Vec<A>,
        bound: B,
        visit: V,
    ) -> Result<Vec<A>, Cancelled>
    where
        A: Send,
        B: Fn(&A) -> f64 + Sync,
        V: Fn(&mut A, usize, f64) + Sync,
    {
        self.scan_where(queries, ctx, accs, bound, |_, _| true, visit)
    }

    /// [`Self::scan`] visiting only rows `j` with `keep(&acc, j)`, asked before the exact
    /// distance is measured: rows a query has no use for (its own cluster, say) cost no
    /// exact distance.
    pub fn scan_where<A, B, K, V>(
        &self,
        queries: &[u32],
        ctx: &RunContext,
        accs: Vec<A>,
        bound: B,
        keep: K,
        visit: V,
    ) -> Result<Vec<A>, Cancelled>
    where
        A: Send,
        B: Fn(&A) -> f64 + Sync,
        K: Fn(&A, usize) -> bool + Sync,
        V: Fn(&mut A, usize, f64) + Sync,
    {
        assert_eq!(queries.len(), accs.len(), "one accumulator per query");
        let nb = n_blocks(self.len());
        let first = FIRST_BLOCKS.min(nb);
        let accs = self.scan_blocks(queries, 0..first, ctx, accs, &bound, &keep, &visit)?;
        // Queries satisfied by the first blocks (dense rows' counts, typically) drop out,
        // and the rest are regrouped: one unsatisfied query would otherwise keep its whole
        // query block scanning to the end.
        let mut out: Vec<Option<A>> = Vec::with_capacity(accs.len());
        let (mut todo_q, mut todo_acc, mut slots) = (Vec::new(), Vec::new(), Vec::new());
        for (i, a) in accs.into_iter().enumerate() {
            if first < nb && bound(&a) >= 0.0 {
                todo_q.push(queries[i]);
                todo_acc.push(a);
                slots.push(i);
                out.push(None);
            } else {
                out.push(Some(a));
            }
        }
        let rest = self.scan_blocks(&todo_q, first..nb, ctx, todo_acc, &bound, &keep, &visit)?;
        for (slot, a) in slots.into_iter().zip(rest) {
            out[slot] = Some(a);
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The scan over the data blocks `blocks` only.
    #[allow(clippy::too_many_arguments)]
    fn scan_blocks<A, B, K, V>(
        &self,
        queries: &[u32],
        blocks: std::ops::Range<usize>,
        ctx: &RunContext,
        mut accs: Vec<A>,
        bound: &B,
        keep: &K,
        visit: &V,
    ) -> Result<Vec<A>, Cancelled>
    where
        A: Send,
        B: Fn(&A) -> f64 + Sync,
        K: Fn(&A, usize) -> bool + Sync,
        V: Fn(&mut A, usize, f64) + Sync,
    {
        assert_eq!(queries.len(), accs.len(), "one accumulator per query");
        let n = self.len();
        let d = self.x.cols();
        accs.par_chunks_mut(QUERY_BLOCK)
            .zip(queries.par_chunks(QUERY_BLOCK))
            .try_for_each(|(accs, qs)| {
                let q = qs.len();
                let mut qx = Vec::with_capacity(q * d);
                for &i in qs {
                    qx.extend_from_slice(self.prepared.row(i as usize));
                }
                let mut tile = vec![0f32; q * BLOCK_ROWS];
                let mut lower = vec![0f32; BLOCK_ROWS];
                for b in blocks.clone() {
                    ctx.checkpoint()?;
                    // Every query of the block satisfied (counts that reached their
                    // target): the remaining tiles could change nothing.
                    if accs.iter().all(|a| bound(a) < 0.0) {
                        break;
                    }
                    let rows = block_range(b, n);
                    let m = rows.len();
                    // Data rows × queries, column-major: each query's dot products come out
                    // contiguous, and faer writes columns fastest.
                    let lhs = MatRef::from_row_major_slice(
                        self.prepared.rows_slice(rows.start, rows.end),
                        m,
                        d,
                    );
                    let rhs = MatRef::from_row_major_slice(&qx, q, d).transpose();
                    let dst = MatMut::from_column_major_slice_mut(&mut tile[..q * m], m, q);
                    // Sequential inside the tile: parallelism is across query blocks.
                    matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
                    for (t, (&qi, acc)) in qs.iter().zip(accs.iter_mut()).enumerate() {
                        let dots = &tile[t * m..(t + 1) * m];
                        self.lower_bounds(qi as usize, rows.start, dots, &mut lower[..m]);
                        self.visit_block(
                            acc,
                            rows.start,
                            &mut lower[..m],
                            (&bound, &keep, &visit),
                            qi,
                        );
                    }
                }
                Ok(())
            })?;
        Ok(accs)
    }

    /// A lower bound, in the filter's units, of the distance from query row `qi` to each
    /// row of the block starting at `start`, from the block's dot products: squared
    /// Euclidean distance (with norms shrunk by the error margin) or cosine distance less
    /// the margin.
    fn lower_bounds(&self, qi: usize, start: usize, dots: &[f32], out: &mut [f32]) {
        match self.metric {
            Metric::Euclidean => {
                // Norms shrunk by the margin: |2·x·y| ≤ ‖x‖² + ‖y‖², so this takes off at
                // least the dot product's worst error.
                let shrink = 1.0 - self.rel;
                let qs = self.prepared_sq[qi] * shrink;
                let ds = &self.prepared_sq[start..start + dots.len()];
                for ((o, &g), &s) in out.iter_mut().zip(dots).zip(ds) {
                    *o = qs + s * shrink - 2.0 * g;
                }
            }
            Metric::Cosine => {
                let margin = self.rel;
                for (o, &g) in out.iter_mut().zip(dots) {
                    *o = 1.0 - g - margin;
                }
            }
        }
    }

    /// The bound in the filter's units (squared for Euclidean).
    fn filter_threshold(&self, bound: f64) -> f32 {
        if bound == f64::INFINITY {
            return f32::INFINITY;
        }
        // Below every distance: a query that needs nothing more (a finished count) skips
        // every block without a single exact distance.
        if bound.is_nan() || bound < 0.0 {
            return f32::NEG_INFINITY;
        }
        let t = match self.metric {
            Metric::Euclidean => bound * bound,
            Metric::Cosine => bound,
        };
        // Round up so that the f32 threshold never excludes what the f64 bound includes.
        (t as f32).next_up()
    }

    fn visit_block<A, B, K, V>(
        &self,
        acc: &mut A,
        start: usize,
        lower: &mut [f32],
        (bound, keep, visit): (&B, &K, &V),
        qi: u32,
    ) where
        B: Fn(&A) -> f64,
        K: Fn(&A, usize) -> bool,
        V: Fn(&mut A, usize, f64),
    {
        const CHUNK: usize = 16;
        let mut thr = self.filter_threshold(bound(acc));
        if thr == f32::NEG_INFINITY {
            return;
        }
        if thr == f32::INFINITY {
            // Nothing bounds the query yet (an empty top-k): in index order the whole block
            // would be re-measured exactly. The few nearest by estimate go first instead;
            // the bound then filters the rest. Visited rows are marked NaN, which no
            // threshold admits, so that none is visited twice.
            let m = SEED_VISITS.min(lower.len());
            let mut order: Vec<u32> = (0..lower.len() as u32).collect();
            let by_estimate = |a: &u32, b: &u32| lower[*a as usize].total_cmp(&lower[*b as usize]);
            if m < order.len() {
                order.select_nth_unstable_by(m, by_estimate);
            }
            order.truncate(m);
            order.sort_unstable_by(by_estimate);
            for t in order {
                let j = start + t as usize;
                if keep(acc, j) {
                    visit(acc, j, self.dist(qi as usize, j));
                }
                lower[t as usize] = f32::NAN;
            }
            thr = self.filter_threshold(bound(acc));
        }
        let mut c0 = 0;
        while c0 < lower.len() {
            let c1 = (c0 + CHUNK).min(lower.len());
            // Most chunks hold no candidate: test the whole chunk in one vectorised pass.
            if lower[c0..c1].iter().any(|&l| l <= thr) {
                for (t, &l) in lower[c0..c1].iter().enumerate() {
                    let j = start + c0 + t;
                    if l <= thr && keep(acc, j) {
                        let dist = self.dist(qi as usize, j);
                        visit(acc, j, dist);
                        thr = self.filter_threshold(bound(acc));
                    }
                }
            }
            c0 = c1;
        }
    }
}

/// What a GPU kernel proved, row by row (`None`: left to the CPU), and the rows it left.
/// Off the GPU, where the kernel does not apply, or when the device fails, every row is
/// left to the CPU, which gives the same answer.
fn proven_on_gpu<T: Clone>(
    n: usize,
    ctx: &RunContext,
    what: &str,
    kernel: impl FnOnce() -> Result<Option<Vec<Option<T>>>, GpuError>,
) -> (Vec<Option<T>>, Vec<u32>) {
    let mut rows = vec![None; n];
    if ctx.device == DeviceKind::Gpu {
        match kernel() {
            Ok(Some(found)) => rows = found,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "GPU {what} failed; using the CPU"),
        }
    }
    let left = (0..n as u32)
        .filter(|&i| rows[i as usize].is_none())
        .collect();
    (rows, left)
}

fn sq_norm64(v: &[f32]) -> f64 {
    lane_sum(v, v, |p, q| p * q)
}

pub(crate) const LANES: usize = 8;

/// `Σ f(a_k, b_k)` in f64 over eight interleaved partial sums: one sum at a time cannot
/// be vectorised, and exact distances are the inner loop of OPTICS and of every filtered
/// candidate.
#[inline]
pub(crate) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let split = a.len() - a.len() % LANES;
    for (p, q) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += f(f64::from(p[l]), f64::from(q[l]));
        }
    }
    for (l, (&p, &q)) in a[split..].iter().zip(&b[split..]).enumerate() {
        acc[l] += f(f64::from(p), f64::from(q));
    }
    combine_lanes(&acc)
}

/// The eight partial sums of [`lane_sum`] in its fixed order: anything that must agree
/// with it to the bit (assign's early-exit manhattan) combines through this.
#[inline]
pub(crate) fn combine_lanes(acc: &[f64; LANES]) -> f64 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Subtract the column means (computed in f64 over fixed chunks, so the same for any thread
/// count): distances do not change, and the expanded form cancels far less.
fn centre_columns(x: &mut Matrix) {
    let (n, d) = (x.rows(), x.cols());
    if n == 0 || d == 0 {
        return;
    }
    let partial: Vec<Vec<f64>> = (0..n_blocks(n))
        .into_par_iter()
        .map(|b| {
            let mut s = vec![0f64; d];
            for i in block_range(b, n) {
                for (acc, &v) in s.iter_mut().zip(x.row(i)) {
                    *acc += f64::from(v);
                }
            }
            s
        })
        .collect();
    let mut mean = vec![0f64; d];
    for s in partial {
        for (m, v) in mean.iter_mut().zip(s) {
            *m += v;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|&m| (m / n as f64) as f32).collect();
    x.as_mut_slice().par_chunks_mut(d).for_each(|row| {
        for (v, &m) in row.iter_mut().zip(&mean) {
            *v -= m;
        }
    });
}

/// The `k` smallest `(distance, index)` pairs offered, in a max-heap on that pair: visits
/// come in ascending index, so a later row at an equal distance never displaces an earlier
/// one (scikit-learn's tie order).
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Entry>,
}

#[derive(PartialEq)]
struct Entry(f64, usize);

impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }

    fn bound(&self) -> f64 {
        if self.k == 0 {
            return f64::NEG_INFINITY;
        }
        if self.heap.len() < self.k {
            f64::INFINITY
        } else {
            self.heap.peek().map_or(f64::INFINITY, |e| e.0)
        }
    }

    fn offer(&mut self, d: f64, j: usize) {
        if self.k == 0 {
            return;
        }
        let e = Entry(d, j);
        if self.heap.len() < self.k {
            self.heap.push(e);
        } else if self.heap.peek().is_some_and(|top| e < *top) {
            self.heap.pop();
            self.heap.push(e);
        }
    }

    fn into_sorted(self) -> Vec<(f64, usize)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Entry(d, j)| (d, j))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeviceKind, ParamMap, ParamValue};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_matrix(rows: usize, cols: usize, seed: u64, offset: f32) -> Matrix {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = (0..rows * cols)
            .map(|_| offset + rng.random_range(-1.0f32..1.0))
            .collect();
        Matrix::from_vec(rows, cols, data).unwrap()
    }

    fn brute_knn(p: &Points<'_>, k: usize) -> Vec<Vec<(f64, usize)>> {
        (0..p.len())
            .map(|i| {
                let mut all: Vec<(f64, usize)> = (0..p.len()).map(|j| (p.dist(i, j), j)).collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                all.truncate(k);
                all
            })
            .collect()
    }

    fn ctx() -> RunContext {
        RunContext::new(0, DeviceKind::Cpu)
    }

    #[test]
    fn knn_equals_brute_force_in_both_metrics_across_ragged_blocks() {
        // Far from the origin, where the expanded form cancels worst, with duplicate rows.
        let mut x = random_matrix(BLOCK_ROWS + QUERY_BLOCK + 37, 24, 7, 50.0);
        let dup = x.row(5).to_vec();
        x.row_mut(900).copy_from_slice(&dup);
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let p = Points::new(&x, metric);
            let knn = p.knn(9, &ctx()).unwrap();
            let want = brute_knn(&p, 9);
            for (i, w) in want.iter().enumerate() {
                let got: Vec<(f64, usize)> = knn
                    .distances_of(i)
                    .iter()
                    .zip(knn.indices_of(i))
                    .map(|(&d, &j)| (d, j as usize))
                    .collect();
                assert_eq!(&got, w, "{metric:?} row {i}");
            }
        }
    }

    #[test]
    fn a_row_is_its_own_nearest_neighbour_at_distance_zero() {
        let x = random_matrix(300, 5, 3, 0.0);
        let knn = Points::new(&x, Metric::Euclidean).knn(4, &ctx()).unwrap();
        for i in 0..300 {
            assert_eq!(knn.indices_of(i)[0] as usize, i);
            assert_eq!(knn.distances_of(i)[0], 0.0);
        }
    }

    #[test]
    fn kth_distances_equal_the_last_neighbour_in_chunks_of_any_size() {
        let x = random_matrix(1300, 6, 17, 2.0);
        let p = Points::new(&x, Metric::Euclidean);
        let knn = p.knn(100, &ctx()).unwrap();
        let want: Vec<f64> = (0..1300).map(|i| knn.kth_distance(i)).collect();
        assert_eq!(p.kth_distances(100, &ctx()).unwrap(), want);
        assert_eq!(p.kth_distances_in_chunks(100, 300, &ctx()).unwrap(), want);
        let small = p.knn(7, &ctx()).unwrap();
        let want: Vec<f64> = (0..1300).map(|i| small.kth_distance(i)).collect();
        assert_eq!(p.kth_distances(7, &ctx()).unwrap(), want);
    }

    #[test]
    fn k_is_clamped_to_the_number_of_rows() {
        let x = random_matrix(3, 2, 1, 0.0);
        let knn = Points::new(&x, Metric::Euclidean).knn(10, &ctx()).unwrap();
        assert_eq!(knn.k, 3);
        assert_eq!(knn.indices.len(), 9);
    }

    #[test]
    fn radius_scan_finds_exactly_the_rows_within_the_bound() {
        let x = random_matrix(1500, 16, 11, -20.0);
        let p = Points::new(&x, Metric::Euclidean);
        let eps = 1.3;
        let queries: Vec<u32> = (0..1500).step_by(7).collect();
        let accs = queries.iter().map(|_| Vec::new()).collect();
        let got = p
            .scan(
                &queries,
                &ctx(),
                accs,
                |_| eps,
                |v: &mut Vec<usize>, j, d| {
                    if d <= eps {
                        v.push(j)
                    }
                },
            )
            .unwrap();
        for (&q, got) in queries.iter().zip(got) {
            let want: Vec<usize> = (0..1500)
                .filter(|&j| p.dist(q as usize, j) <= eps)
                .collect();
            assert_eq!(got, want, "query {q}");
        }
    }

    #[test]
    fn cosine_distance_matches_scikit_learn_conventions() {
        let x = Matrix::from_vec(3, 2, vec![1.0, 0.0, 0.0, 2.0, 0.0, 0.0]).unwrap();
        let p = Points::new(&x, Metric::Cosine);
        assert!((p.dist(0, 1) - 1.0).abs() < 1e-12);
        // A zero row is at distance 1 from everything, as with scikit-learn's normalize.
        assert!((p.dist(0, 2) - 1.0).abs() < 1e-12);
        assert_eq!(p.dist(0, 0), 0.0);
    }

    #[test]
    fn scan_stops_at_a_cancelled_checkpoint() {
        let x = random_matrix(600, 4, 2, 0.0);
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let ctx = ctx().with_cancel(token);
        assert_eq!(
            Points::new(&x, Metric::Euclidean).knn(3, &ctx),
            Err(Cancelled)
        );
    }

    #[test]
    fn gpu_knn_and_dense_rows_equal_the_cpu_answers() {
        if crate::gpu::test_context().is_none() {
            return;
        }
        let gpu_ctx = RunContext::new(0, DeviceKind::Gpu);
        // Off-centre blobs with duplicates: near-ties the GPU check must catch.
        let mut x = random_matrix(1900, 40, 21, 5.0);
        for i in 0..40 {
            let dup = x.row(i).to_vec();
            x.row_mut(1000 + i).copy_from_slice(&dup);
        }
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let p = Points::new(&x, metric);
            // The kernel really answered, and vouched for nearly every row itself.
            let on_gpu = p.knn_on_gpu(12).unwrap().expect("the kernel applies");
            let vouched = on_gpu.iter().filter(|r| r.is_some()).count();
            assert!(
                vouched >= 1800,
                "{metric:?}: only {vouched} rows proven on the GPU"
            );
            let cpu = p.knn(12, &ctx()).unwrap();
            assert_eq!(p.knn(12, &gpu_ctx).unwrap(), cpu, "{metric:?}");

            // The median 6th-neighbour distance: about half the rows are dense.
            let mut sixth: Vec<f64> = (0..x.rows()).map(|i| cpu.distances_of(i)[5]).collect();
            sixth.sort_by(f64::total_cmp);
            let eps = sixth[sixth.len() / 2];
            let dense_cpu = p.dense_rows(eps, 6, &ctx()).unwrap();
            let n_dense = dense_cpu.iter().filter(|&&d| d).count();
            assert!(
                n_dense > 50 && n_dense < 1850,
                "{metric:?}: {n_dense} dense rows"
            );
            assert!(p.dense_rows_on_gpu(eps, 6).unwrap().is_some());
            assert_eq!(
                p.dense_rows(eps, 6, &gpu_ctx).unwrap(),
                dense_cpu,
                "{metric:?}"
            );
        }
    }

    #[test]
    fn dense_rows_count_the_row_itself_and_rows_at_exactly_eps() {
        let x = Matrix::from_vec(4, 1, vec![0.0, 0.5, 1.0, 3.0]).unwrap();
        let p = Points::new(&x, Metric::Euclidean);
        assert_eq!(
            p.dense_rows(0.5, 3, &ctx()).unwrap(),
            vec![false, true, false, false]
        );
        assert_eq!(p.dense_rows(0.5, 1, &ctx()).unwrap(), vec![true; 4]);
    }

    #[test]
    fn rejects_an_unknown_metric_naming_the_field() {
        let mut m = std::collections::BTreeMap::new();
        m.insert("metric".to_owned(), ParamValue::String("manhattan".into()));
        let params = ParamMap::new(m);
        let err = read_metric(&mut params.reader()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("metric"));
    }
}
