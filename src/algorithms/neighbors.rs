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
use crate::model::params::ParamReader;
use crate::model::{ApiError, ApiResult, Cancelled, Matrix, RunContext};

/// Query rows handled together against each data block.
const QUERY_BLOCK: usize = 256;

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
    /// Squared norms of the prepared rows, shrunk by the filter margin (see [`Self::new`]).
    shrunk_sq: Vec<f32>,
    /// 1/‖row‖ of the original rows in f64 (cosine only; 1 for zero rows, as scikit-learn's
    /// `normalize` leaves them zero).
    inv_norms: Vec<f64>,
    /// Margin on the cosine tile: an absolute bound on the f32 dot product's error.
    cos_margin: f32,
}

impl<'a> Points<'a> {
    pub fn new(x: &'a Matrix, metric: Metric) -> Points<'a> {
        let d = x.cols();
        // A bound on the relative error of an f32 dot product of length d (and of the
        // norms), with room to spare; the filter lets through everything within it.
        let rel = (d as f32 + 16.0) * f32::EPSILON;
        let (prepared, shrunk_sq, inv_norms) = match metric {
            Metric::Euclidean => {
                let mut p = x.clone();
                centre_columns(&mut p);
                let sq = row_sq_norms(&p)
                    .into_iter()
                    .map(|s| s * (1.0 - rel))
                    .collect();
                (p, sq, Vec::new())
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
                (p, Vec::new(), inv)
            }
        };
        Points {
            x,
            metric,
            prepared,
            shrunk_sq,
            inv_norms,
            cos_margin: rel,
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
    pub fn knn(&self, k: usize, ctx: &RunContext) -> Result<Knn, Cancelled> {
        let n = self.len();
        let k = k.min(n);
        let queries: Vec<u32> = (0..n as u32).collect();
        let heaps = (0..n).map(|_| TopK::new(k)).collect();
        let heaps = self.scan(&queries, ctx, heaps, TopK::bound, |h, j, d| h.offer(d, j))?;
        let mut indices = Vec::with_capacity(n * k);
        let mut distances = Vec::with_capacity(n * k);
        for h in heaps {
            for (d, j) in h.into_sorted() {
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

    /// The blocked scan under every query: for each query row `queries[q]`, visit the data
    /// rows `j` (ascending) whose distance may be at most `bound(&accs[q])`, calling
    /// `visit(&mut accs[q], j, exact_distance)`. The tile filter has a margin, so rows a
    /// little beyond the bound are visited too: `visit` decides on the exact distance.
    /// `bound` is read again after every visit, so a shrinking bound (a top-k) prunes more as
    /// the scan goes.
    pub fn scan<A, B, V>(
        &self,
        queries: &[u32],
        ctx: &RunContext,
        mut accs: Vec<A>,
        bound: B,
        visit: V,
    ) -> Result<Vec<A>, Cancelled>
    where
        A: Send,
        B: Fn(&A) -> f64 + Sync,
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
                for b in 0..n_blocks(n) {
                    ctx.checkpoint()?;
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
                        self.visit_block(acc, rows.start, &lower[..m], &bound, &visit, qi);
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
                let qs = self.shrunk_sq[qi];
                let ds = &self.shrunk_sq[start..start + dots.len()];
                for ((o, &g), &s) in out.iter_mut().zip(dots).zip(ds) {
                    *o = qs + s - 2.0 * g;
                }
            }
            Metric::Cosine => {
                let margin = self.cos_margin;
                for (o, &g) in out.iter_mut().zip(dots) {
                    *o = 1.0 - g - margin;
                }
            }
        }
    }

    /// The bound in the filter's units (squared for Euclidean).
    fn filter_threshold(&self, bound: f64) -> f32 {
        if !bound.is_finite() {
            return f32::INFINITY;
        }
        let t = match self.metric {
            Metric::Euclidean => bound * bound,
            Metric::Cosine => bound,
        };
        // Round up so that the f32 threshold never excludes what the f64 bound includes.
        (t as f32).next_up()
    }

    fn visit_block<A, B, V>(
        &self,
        acc: &mut A,
        start: usize,
        lower: &[f32],
        bound: &B,
        visit: &V,
        qi: u32,
    ) where
        B: Fn(&A) -> f64,
        V: Fn(&mut A, usize, f64),
    {
        const CHUNK: usize = 16;
        let mut thr = self.filter_threshold(bound(acc));
        let mut c0 = 0;
        while c0 < lower.len() {
            let c1 = (c0 + CHUNK).min(lower.len());
            // Most chunks hold no candidate: test the whole chunk in one vectorised pass.
            if lower[c0..c1].iter().any(|&l| l <= thr) {
                for (t, &l) in lower[c0..c1].iter().enumerate() {
                    if l <= thr {
                        let j = start + c0 + t;
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

fn sq_norm64(v: &[f32]) -> f64 {
    lane_sum(v, v, |p, q| p * q)
}

const LANES: usize = 8;

/// `Σ f(a_k, b_k)` in f64 over eight interleaved partial sums: one sum at a time cannot
/// be vectorised, and exact distances are the inner loop of OPTICS and of every filtered
/// candidate.
#[inline]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
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
    fn rejects_an_unknown_metric_naming_the_field() {
        let mut m = std::collections::BTreeMap::new();
        m.insert("metric".to_owned(), ParamValue::String("manhattan".into()));
        let params = ParamMap::new(m);
        let err = read_metric(&mut params.reader()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("metric"));
    }
}
