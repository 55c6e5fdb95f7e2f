//! Exact ball queries around arbitrary points (seed means, centres), answered by blocked
//! f32 GEMM tiles that only filter, and an exact f64 decision on every candidate.
//!
//! `neighbors::Points` queries rows of the data; mean shift queries points that are not
//! rows (the running means), so it has its own small engine on the same principle. The
//! exact test is scikit-learn's KD-tree test (its choice below 16 features): the squared
//! distance summed in f64 feature by feature, compared with `bandwidth²`.
//!
//! Memory: a centred f32 copy of the data, plus one `QUERY_BLOCK × BLOCK_ROWS` tile and the
//! partial results of one group of queries per call — never N×N.

use std::ops::Range;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::algorithms::distance::{BLOCK_ROWS, block_range, n_blocks};
use crate::model::{Cancelled, Matrix, RunContext};

/// Queries handled together against each data block.
const QUERY_BLOCK: usize = 256;

/// Rows of the smallest data segment. Segments let a few queries (bin seeds) use every
/// core; their number and bounds depend only on N, so results never depend on threads.
const SEGMENT_MIN_ROWS: usize = 8 * BLOCK_ROWS;

/// At most this many segments, so that per-segment partial results stay small.
const MAX_SEGMENTS: usize = 16;

/// Rows whose distance estimates to every row [`Prepared::kth_distances`] holds at once.
const KTH_QUERIES: usize = 32;

/// Bytes of per-(query, segment) partial results one group of queries may hold.
const PARTIAL_BUDGET: usize = 64 << 20;

/// The data, centred and ready for tiles.
pub struct Prepared<'a> {
    x: &'a Matrix,
    /// Column means rounded to f32, in f64: the origin of the prepared rows and queries.
    origin: Vec<f64>,
    /// `x − origin`, rounded once to f32, rows in `order`.
    prepared: Matrix,
    prepared_sq: Vec<f32>,
    /// The row at each position of `prepared`: a k-d order, so that each block of
    /// `BLOCK_ROWS` positions is a compact cell and a block beyond reach of a query is
    /// skipped whole. Fixed by the data alone.
    order: Vec<u32>,
    /// Per block, the per-feature bounds of its rows (f64), `[lo, hi]` interleaved.
    boxes: Vec<Vec<[f64; 2]>>,
    /// A bound on the relative error of an f32 squared distance built from these tiles
    /// (rounding of the centred rows and queries, the dot product and the norms), with
    /// room to spare.
    rel: f32,
}

impl<'a> Prepared<'a> {
    pub fn new(x: &'a Matrix) -> Prepared<'a> {
        let (n, d) = (x.rows(), x.cols());
        let mut sums = vec![0f64; d];
        // Fixed blocks summed in block order: the same origin for any thread count.
        let partial: Vec<Vec<f64>> = (0..n_blocks(n))
            .into_par_iter()
            .map(|b| {
                let mut s = vec![0f64; d];
                for i in block_range(b, n) {
                    for (a, &v) in s.iter_mut().zip(x.row(i)) {
                        *a += f64::from(v);
                    }
                }
                s
            })
            .collect();
        for p in partial {
            for (s, v) in sums.iter_mut().zip(p) {
                *s += v;
            }
        }
        let origin: Vec<f64> = sums
            .iter()
            .map(|&s| f64::from((s / n.max(1) as f64) as f32))
            .collect();
        let order = kd_order(n, d, BLOCK_ROWS, |i, k| f64::from(x.row(i)[k]));
        let mut prepared = Matrix::zeros(n, d);
        prepared
            .as_mut_slice()
            .par_chunks_mut(d.max(1))
            .zip(order.par_iter())
            .for_each(|(row, &i)| {
                for ((v, &o), &a) in row.iter_mut().zip(&origin).zip(x.row(i as usize)) {
                    *v = (f64::from(a) - o) as f32;
                }
            });
        let prepared_sq = prepared_sq_norms(&prepared);
        let boxes = (0..n_blocks(n))
            .into_par_iter()
            .map(|b| {
                let mut bx = vec![[f64::INFINITY, f64::NEG_INFINITY]; d];
                for p in block_range(b, n) {
                    for (l, &v) in bx.iter_mut().zip(x.row(order[p] as usize)) {
                        l[0] = l[0].min(f64::from(v));
                        l[1] = l[1].max(f64::from(v));
                    }
                }
                bx
            })
            .collect();
        Prepared {
            x,
            origin,
            prepared,
            prepared_sq,
            order,
            boxes,
            rel: (2.0 * d as f32 + 32.0) * f32::EPSILON,
        }
    }

    pub fn len(&self) -> usize {
        self.x.rows()
    }

    pub fn dim(&self) -> usize {
        self.x.cols()
    }

    pub fn row(&self, j: usize) -> &[f32] {
        self.x.row(j)
    }

    /// Squared distance from `q` to row `j`, in f64, summed feature by feature as
    /// scikit-learn's KD-tree sums it.
    pub fn exact_sq(&self, q: &[f64], j: usize) -> f64 {
        sq_dist(q, self.x.row(j))
    }

    fn centred(&self, q: &[f64], out: &mut Vec<f32>) {
        out.extend(q.iter().zip(&self.origin).map(|(&v, &o)| (v - o) as f32));
    }

    /// Segments of the data rows, block-aligned, fixed by N alone.
    fn segments(&self) -> Vec<Range<usize>> {
        let n = self.len();
        let per = n.div_ceil(MAX_SEGMENTS).div_ceil(BLOCK_ROWS) * BLOCK_ROWS;
        let per = per.max(SEGMENT_MIN_ROWS);
        (0..n.div_ceil(per).max(1))
            .map(|s| s * per..((s + 1) * per).min(n))
            .collect()
    }

    /// For every query point (row-major `d` values each), visit the data rows `j` within
    /// `radius` (exact squared f64 distance ≤ `radius²`), per segment of the data:
    /// `visit(&mut acc, j)` folds one segment's rows into an accumulator from `init`, and
    /// `merge` folds the segments' accumulators in segment order. Rows come in the fixed
    /// k-d order of the data (not by index), the same for every query and thread count.
    pub fn ball_scan<A, I, V, M>(
        &self,
        queries: &[f64],
        radius: f64,
        ctx: &RunContext,
        init: I,
        visit: V,
        merge: M,
    ) -> Result<Vec<A>, Cancelled>
    where
        A: Send,
        I: Fn() -> A + Sync,
        V: Fn(&mut A, usize) + Sync,
        M: Fn(&mut A, A),
    {
        let d = self.dim();
        let n_queries = queries.len().checked_div(d).unwrap_or(0);
        let r2 = radius * radius;
        // Round up so the f32 threshold never excludes what the f64 test includes.
        let thr = (r2 as f32).next_up();
        let segments = self.segments();
        let group = (PARTIAL_BUDGET / (segments.len() * (d + 2) * 8).max(1))
            .max(QUERY_BLOCK)
            .div_ceil(QUERY_BLOCK)
            * QUERY_BLOCK;
        // Neighbouring queries share a chunk, so the blocks a chunk must tile are few; the
        // chunking only saves work, each query's answer is its own.
        let qorder = kd_order(n_queries, d, QUERY_BLOCK, |i, k| queries[i * d + k]);
        let queries: Vec<f64> = qorder
            .iter()
            .flat_map(|&i| &queries[i as usize * d..(i as usize + 1) * d])
            .copied()
            .collect();
        let queries = &queries[..];
        let mut out = Vec::with_capacity(n_queries);
        let mut g0 = 0;
        while g0 < n_queries {
            ctx.checkpoint()?;
            let g1 = (g0 + group).min(n_queries);
            let chunks: Vec<Range<usize>> = (g0..g1)
                .step_by(QUERY_BLOCK)
                .map(|c| c..(c + QUERY_BLOCK).min(g1))
                .collect();
            let tasks: Vec<(usize, usize)> = (0..chunks.len())
                .flat_map(|c| (0..segments.len()).map(move |s| (c, s)))
                .collect();
            let parts: Vec<Vec<A>> = tasks
                .par_iter()
                .map(|&(c, s)| {
                    let qs = &queries[chunks[c].start * d..chunks[c].end * d];
                    self.scan_segment(qs, segments[s].clone(), r2, thr, ctx, &init, &visit)
                })
                .collect::<Result<_, _>>()?;
            let mut parts = parts.into_iter();
            for chunk in &chunks {
                let mut accs: Vec<A> = match parts.next() {
                    Some(first) => first,
                    None => break,
                };
                for _ in 1..segments.len() {
                    if let Some(next) = parts.next() {
                        for (a, b) in accs.iter_mut().zip(next) {
                            merge(a, b);
                        }
                    }
                }
                debug_assert_eq!(accs.len(), chunk.len());
                out.extend(accs);
            }
            g0 = g1;
        }
        let mut slots: Vec<Option<A>> = (0..n_queries).map(|_| None).collect();
        for (&i, a) in qorder.iter().zip(out) {
            slots[i as usize] = Some(a);
        }
        Ok(slots.into_iter().flatten().collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_segment<A, I, V>(
        &self,
        qs: &[f64],
        rows: Range<usize>,
        r2: f64,
        thr: f32,
        ctx: &RunContext,
        init: &I,
        visit: &V,
    ) -> Result<Vec<A>, Cancelled>
    where
        I: Fn() -> A,
        V: Fn(&mut A, usize),
    {
        let d = self.dim();
        let q = qs.len().checked_div(d).unwrap_or(0);
        let mut accs: Vec<A> = (0..q).map(|_| init()).collect();
        let mut qx = Vec::with_capacity(q * d);
        for t in 0..q {
            self.centred(&qs[t * d..(t + 1) * d], &mut qx);
        }
        let q_sq: Vec<f32> = (0..q).map(|t| sq_norm32(&qx[t * d..(t + 1) * d])).collect();
        let mut tile = vec![0f32; q * BLOCK_ROWS];
        let shrink = 1.0 - self.rel;
        // Below r² in f32 whatever its rounding.
        let inside = (r2 as f32).next_down();
        // A box bound a hair above r² cannot hide a row whose f64 distance is ≤ r².
        let reach2 = r2 * (1.0 + 1e-9);
        let mut b0 = rows.start;
        while b0 < rows.end {
            ctx.checkpoint()?;
            let b1 = (b0 + BLOCK_ROWS).min(rows.end);
            let m = b1 - b0;
            let ds = &self.prepared_sq[b0..b1];
            let bx = &self.boxes[b0 / BLOCK_ROWS];
            let reach: Vec<bool> = (0..q)
                .map(|t| box_sq(&qs[t * d..(t + 1) * d], bx) <= reach2)
                .collect();
            if !reach.contains(&true) {
                b0 = b1;
                continue;
            }
            if d > 0 {
                let lhs = MatRef::from_row_major_slice(self.prepared.rows_slice(b0, b1), m, d);
                let rhs = MatRef::from_row_major_slice(&qx, q, d).transpose();
                let dst = MatMut::from_column_major_slice_mut(&mut tile[..q * m], m, q);
                matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
            } else {
                tile[..q * m].fill(0.0);
            }
            for (t, acc) in accs.iter_mut().enumerate() {
                if !reach[t] {
                    continue;
                }
                let dots = &tile[t * m..(t + 1) * m];
                let query = &qs[t * d..(t + 1) * d];
                let qn = q_sq[t];
                let lower = |i: usize| (qn + ds[i]) * shrink - 2.0 * dots[i];
                for c0 in (0..m).step_by(16) {
                    let c1 = (c0 + 16).min(m);
                    // Most chunks of a small ball hold no candidate: one vectorised test.
                    if !(c0..c1).any(|i| lower(i) <= thr) {
                        continue;
                    }
                    for (i, &s) in ds.iter().enumerate().take(c1).skip(c0) {
                        let lo = lower(i);
                        if lo > thr {
                            continue;
                        }
                        let j = self.order[b0 + i] as usize;
                        // Inside even at the far end of the error margin: the exact test
                        // could only agree, so the bulk of a wide ball skips it.
                        let hi = lo + 2.0 * self.rel * (qn + s);
                        if hi < inside || self.exact_sq(query, j) <= r2 {
                            visit(acc, j);
                        }
                    }
                }
            }
            b0 = b1;
        }
        Ok(accs)
    }

    /// The exact distance from every row to its `k`-th nearest row (itself included).
    ///
    /// For a few rows at a time, the f32 tiles give every distance to within its error
    /// bound; the k-th smallest lower bound and the k-th smallest upper bound bracket the
    /// answer, rows whose bounds lie wholly below the bracket are counted, rows wholly above
    /// it are dropped, and only the rows left between are measured exactly. Memory:
    /// `KTH_QUERIES × N` estimates per worker, whatever `k` is.
    pub fn kth_distances(&self, k: usize, ctx: &RunContext) -> Result<Vec<f64>, Cancelled> {
        let (n, d) = (self.len(), self.dim());
        let k = k.clamp(1, n.max(1));
        let chunks: Vec<Range<usize>> = (0..n)
            .step_by(KTH_QUERIES)
            .map(|p| p..(p + KTH_QUERIES).min(n))
            .collect();
        let per_chunk: Vec<Vec<f64>> = chunks
            .par_iter()
            .map(|c| {
                ctx.checkpoint()?;
                let q = c.len();
                let mut approx = vec![0f32; q * n];
                let mut tile = vec![0f32; q * BLOCK_ROWS];
                let qx = self.prepared.rows_slice(c.start, c.end);
                for b in 0..n_blocks(n) {
                    let rows = block_range(b, n);
                    let m = rows.len();
                    if d > 0 {
                        let lhs = MatRef::from_row_major_slice(
                            self.prepared.rows_slice(rows.start, rows.end),
                            m,
                            d,
                        );
                        let rhs = MatRef::from_row_major_slice(qx, q, d).transpose();
                        let dst = MatMut::from_column_major_slice_mut(&mut tile[..q * m], m, q);
                        matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
                    }
                    for t in 0..q {
                        let qn = self.prepared_sq[c.start + t];
                        let out = &mut approx[t * n + rows.start..t * n + rows.end];
                        let dots = &tile[t * m..(t + 1) * m];
                        for ((o, &g), &s) in out
                            .iter_mut()
                            .zip(dots)
                            .zip(&self.prepared_sq[rows.clone()])
                        {
                            *o = qn + s - 2.0 * g;
                        }
                    }
                }
                let mut lows = vec![0f32; n];
                let mut highs = vec![0f32; n];
                let mut band = Vec::new();
                let mut out = Vec::with_capacity(q);
                for t in 0..q {
                    ctx.checkpoint()?;
                    let p = c.start + t;
                    let qn = self.prepared_sq[p];
                    let a = &approx[t * n..(t + 1) * n];
                    for (j, &v) in a.iter().enumerate() {
                        let e = self.rel * (qn + self.prepared_sq[j]);
                        lows[j] = v - e;
                        highs[j] = v + e;
                    }
                    let (l, u) = {
                        let mut sel = lows.clone();
                        let l = *sel.select_nth_unstable_by(k - 1, f32::total_cmp).1;
                        sel.copy_from_slice(&highs);
                        let u = *sel.select_nth_unstable_by(k - 1, f32::total_cmp).1;
                        (l, u)
                    };
                    let query: Vec<f64> = self
                        .x
                        .row(self.order[p] as usize)
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect();
                    band.clear();
                    let mut below = 0;
                    for j in 0..n {
                        if highs[j] < l {
                            below += 1;
                        } else if lows[j] <= u {
                            band.push(sq_dist(&query, self.x.row(self.order[j] as usize)));
                        }
                    }
                    let kth = *band.select_nth_unstable_by(k - 1 - below, f64::total_cmp).1;
                    out.push(kth.sqrt());
                }
                Ok(out)
            })
            .collect::<Result<_, Cancelled>>()?;
        let mut by_row = vec![0f64; n];
        for (&i, v) in self.order.iter().zip(per_chunk.into_iter().flatten()) {
            by_row[i as usize] = v;
        }
        Ok(by_row)
    }

    /// The nearest of `centres` (row-major `d` values each) to every data row: its index
    /// (the first on equal distances) and its exact squared distance. The f32 tile proposes
    /// every centre that can be nearest within its error bound; those are re-measured
    /// exactly.
    pub fn nearest(
        &self,
        centres: &[f64],
        ctx: &RunContext,
    ) -> Result<Vec<(usize, f64)>, Cancelled> {
        let d = self.dim();
        let k = centres.len().checked_div(d).unwrap_or(0);
        let n = self.len();
        let mut cx = Vec::with_capacity(k * d);
        for c in 0..k {
            self.centred(&centres[c * d..(c + 1) * d], &mut cx);
        }
        let c_sq: Vec<f32> = (0..k).map(|c| sq_norm32(&cx[c * d..(c + 1) * d])).collect();
        let blocks: Vec<Vec<(usize, f64)>> = (0..n_blocks(n))
            .into_par_iter()
            .map(|b| {
                ctx.checkpoint()?;
                let rows = block_range(b, n);
                let m = rows.len();
                let mut out = Vec::with_capacity(m);
                for c0 in (0..k).step_by(QUERY_BLOCK) {
                    ctx.checkpoint()?;
                    let c1 = (c0 + QUERY_BLOCK).min(k);
                    let q = c1 - c0;
                    let mut tile = vec![0f32; m * q];
                    if d > 0 {
                        let lhs = MatRef::from_row_major_slice(
                            self.prepared.rows_slice(rows.start, rows.end),
                            m,
                            d,
                        );
                        let rhs =
                            MatRef::from_row_major_slice(&cx[c0 * d..c1 * d], q, d).transpose();
                        let dst = MatMut::from_row_major_slice_mut(&mut tile, m, q);
                        matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
                    }
                    for (i, j) in rows.clone().enumerate() {
                        let dots = &tile[i * q..(i + 1) * q];
                        let xs = self.prepared_sq[j];
                        // Upper bound on the nearest squared distance of this chunk, then
                        // every centre whose lower bound does not exceed it.
                        let mut upper = f32::INFINITY;
                        for (t, &g) in dots.iter().enumerate() {
                            let s = xs + c_sq[c0 + t];
                            upper = upper.min(s - 2.0 * g + self.rel * s);
                        }
                        let mut best: Option<(usize, f64)> =
                            if c0 == 0 { None } else { Some(out[i]) };
                        for (t, &g) in dots.iter().enumerate() {
                            let s = xs + c_sq[c0 + t];
                            if s - 2.0 * g - self.rel * s <= upper {
                                let c = c0 + t;
                                let row = self.x.row(self.order[j] as usize);
                                let e = sq_dist(&centres[c * d..(c + 1) * d], row);
                                if best.is_none_or(|(_, be)| e < be) {
                                    best = Some((c, e));
                                }
                            }
                        }
                        let best = best.unwrap_or((0, f64::INFINITY));
                        if c0 == 0 {
                            out.push(best);
                        } else {
                            out[i] = best;
                        }
                    }
                }
                if k == 0 {
                    out.resize(m, (0, f64::INFINITY));
                }
                Ok(out)
            })
            .collect::<Result<_, Cancelled>>()?;
        let mut by_row = vec![(0, f64::INFINITY); n];
        for (&i, v) in self.order.iter().zip(blocks.into_iter().flatten()) {
            by_row[i as usize] = v;
        }
        Ok(by_row)
    }
}

/// A k-d order of `n` points (`coord(i, k)`): split at a multiple of `leaf` positions
/// along the widest feature until parts are at most `leaf` long, so that every aligned run
/// of `leaf` positions is one compact cell. Ties go by index: the order is a function of
/// the points alone.
fn kd_order(
    n: usize,
    d: usize,
    leaf: usize,
    coord: impl Fn(usize, usize) -> f64 + Sync,
) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    split(&mut order, d, leaf, &coord);
    order
}

fn split(part: &mut [u32], d: usize, leaf: usize, coord: &(impl Fn(usize, usize) -> f64 + Sync)) {
    if part.len() <= leaf || d == 0 {
        return;
    }
    let widest = (0..d)
        .map(|k| {
            let (lo, hi) = part
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &i| {
                    let v = coord(i as usize, k);
                    (lo.min(v), hi.max(v))
                });
            hi - lo
        })
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (k, w)| {
            if w > best.1 { (k, w) } else { best }
        })
        .0;
    let mid = (part.len() / 2).div_ceil(leaf) * leaf;
    let mid = mid.min(part.len() - 1);
    part.select_nth_unstable_by(mid, |&a, &b| {
        coord(a as usize, widest)
            .total_cmp(&coord(b as usize, widest))
            .then(a.cmp(&b))
    });
    let (left, right) = part.split_at_mut(mid);
    rayon::join(
        || split(left, d, leaf, coord),
        || split(right, d, leaf, coord),
    );
}

/// Squared distance from `q` to the nearest point of a box (0 inside it).
fn box_sq(q: &[f64], bx: &[[f64; 2]]) -> f64 {
    let mut s = 0.0;
    for (&v, &[lo, hi]) in q.iter().zip(bx) {
        let t = (lo - v).max(v - hi).max(0.0);
        s += t * t;
    }
    s
}

/// `Σ (q_k − x_k)²` in f64, in feature order.
pub fn sq_dist(q: &[f64], x: &[f32]) -> f64 {
    let mut s = 0.0;
    for (&a, &b) in q.iter().zip(x) {
        let t = a - f64::from(b);
        s += t * t;
    }
    s
}

fn sq_norm32(v: &[f32]) -> f32 {
    v.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>() as f32
}

fn prepared_sq_norms(p: &Matrix) -> Vec<f32> {
    (0..p.rows())
        .into_par_iter()
        .with_min_len(BLOCK_ROWS)
        .map(|i| sq_norm32(p.row(i)))
        .collect()
}
