//! Affinity graphs, the normalised Laplacian and the spectral embedding, as
//! scikit-learn's `SpectralClustering.fit` and `_spectral_embedding` build them.
//!
//! scipy's `laplacian(normed=True)` ignores the diagonal of the affinity (the self-loops of
//! `include_self=True` and `exp(0) = 1` of rbf), takes degrees `w` from the off-diagonal
//! entries, and gives isolated nodes `w = 1`; scikit-learn then sets the diagonal to 1:
//! `L = I − D^-½ A D^-½`. We want its smallest eigenvectors, which are the largest of
//! `M = 2I − L = I + D^-½ A D^-½`, positive semi-definite with spectrum in [0, 2]: the form
//! the Krylov solver wants.

use faer::linalg::matmul::matmul;
use faer::reborrow::ReborrowMut;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::eigen::SymmetricOperator;
use crate::algorithms::neighbors::{Metric, Points};
use crate::model::{Cancelled, Matrix, RunContext};

/// Rows per task when building the dense kernel and applying either operator.
const ROW_BLOCK: usize = 256;

/// `I + D^-½ A D^-½` for the symmetrised k-nearest-neighbour connectivity, in CSR form
/// without the diagonal. Memory: at most 2·N·k entries (12 bytes each).
pub struct KnnOperator {
    n: usize,
    row_start: Vec<usize>,
    cols: Vec<u32>,
    values: Vec<f64>,
    /// `sqrt(degree)` (1 for isolated rows): scikit-learn's `dd`.
    pub dd: Vec<f64>,
}

impl KnnOperator {
    /// `kneighbors_graph(X, n_neighbors, include_self=True)` symmetrised as
    /// `0.5·(A + Aᵀ)`, then normalised.
    pub fn new(x: &Matrix, n_neighbors: usize, ctx: &RunContext) -> Result<Self, Cancelled> {
        let n = x.rows();
        let points = Points::new(x, Metric::Euclidean);
        let knn = points.knn(n_neighbors, ctx)?;
        ctx.checkpoint()?;
        // Each directed edge i→j contributes 0.5 to (i, j) and to (j, i); self-loops are
        // dropped because the Laplacian ignores the diagonal.
        let mut edges: Vec<(u32, u32)> = Vec::with_capacity(2 * n * knn.k);
        for i in 0..n {
            for &j in knn.indices_of(i) {
                if j as usize != i {
                    edges.push((i as u32, j));
                    edges.push((j, i as u32));
                }
            }
        }
        drop(knn);
        edges.par_sort_unstable();
        ctx.checkpoint()?;
        let mut row_start = vec![0usize; n + 1];
        let mut cols = Vec::with_capacity(edges.len());
        let mut values: Vec<f64> = Vec::with_capacity(edges.len());
        let mut last: Option<(u32, u32)> = None;
        for &(i, j) in &edges {
            if last == Some((i, j)) {
                if let Some(v) = values.last_mut() {
                    *v += 0.5;
                }
            } else {
                row_start[i as usize + 1] += 1;
                cols.push(j);
                values.push(0.5);
                last = Some((i, j));
            }
        }
        drop(edges);
        for i in 0..n {
            row_start[i + 1] += row_start[i];
        }
        let dd: Vec<f64> = (0..n)
            .map(|i| {
                let w: f64 = values[row_start[i]..row_start[i + 1]].iter().sum();
                if w == 0.0 { 1.0 } else { w.sqrt() }
            })
            .collect();
        for i in 0..n {
            for e in row_start[i]..row_start[i + 1] {
                values[e] /= dd[i] * dd[cols[e] as usize];
            }
        }
        Ok(KnnOperator {
            n,
            row_start,
            cols,
            values,
            dd,
        })
    }
}

impl SymmetricOperator for KnnOperator {
    fn dim(&self) -> usize {
        self.n
    }

    fn cheap(&self) -> bool {
        true
    }

    fn apply(&self, x: MatRef<'_, f64>, y: MatMut<'_, f64>) {
        let width = x.ncols();
        y.par_row_chunks_mut(ROW_BLOCK)
            .enumerate()
            .for_each(|(t, mut dst)| {
                for local in 0..dst.nrows() {
                    let i = t * ROW_BLOCK + local;
                    let range = self.row_start[i]..self.row_start[i + 1];
                    for c in 0..width {
                        let mut s = x[(i, c)];
                        for e in range.clone() {
                            s += self.values[e] * x[(self.cols[e] as usize, c)];
                        }
                        dst[(local, c)] = s;
                    }
                }
            });
    }
}

/// `I + D^-½ K D^-½` for the dense rbf kernel `K = exp(−γ‖x − y‖²)` with zero diagonal,
/// N×N f64 (bounded by [`super::RBF_MAX_DOCUMENTS`]).
pub struct RbfOperator {
    n: usize,
    /// Row-major (and symmetric) normalised kernel.
    kernel: Vec<f64>,
    pub dd: Vec<f64>,
}

impl RbfOperator {
    pub fn new(x: &Matrix, gamma: f64, ctx: &RunContext) -> Result<Self, Cancelled> {
        let n = x.rows();
        let d = x.cols();
        // scikit-learn computes in f64 by the expanded form; centring first keeps its
        // cancellation small without changing any distance.
        let mut mean = vec![0.0f64; d];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(x.row(i)) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let xc = faer::Mat::<f64>::from_fn(n, d, |i, j| f64::from(x.row(i)[j]) - mean[j]);
        let sq: Vec<f64> = (0..n)
            .map(|i| (0..d).map(|j| xc[(i, j)] * xc[(i, j)]).sum())
            .collect();
        let mut kernel = vec![0.0f64; n * n];
        let cancelled = std::sync::atomic::AtomicBool::new(false);
        kernel
            .par_chunks_mut(ROW_BLOCK * n.max(1))
            .enumerate()
            .for_each(|(t, rows)| {
                if ctx.checkpoint().is_err() {
                    cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                let r0 = t * ROW_BLOCK;
                let len = rows.len() / n;
                let mut dst = MatMut::from_row_major_slice_mut(rows, len, n);
                matmul(
                    dst.rb_mut(),
                    Accum::Replace,
                    xc.as_ref().subrows(r0, len),
                    xc.as_ref().transpose(),
                    1.0,
                    Par::Seq,
                );
                for a in 0..len {
                    let i = r0 + a;
                    for (j, v) in rows[a * n..(a + 1) * n].iter_mut().enumerate() {
                        let d2 = (sq[i] + sq[j] - 2.0 * *v).max(0.0);
                        *v = if i == j { 0.0 } else { (-gamma * d2).exp() };
                    }
                }
            });
        if cancelled.into_inner() {
            return Err(Cancelled);
        }
        ctx.checkpoint()?;
        let dd: Vec<f64> = kernel
            .par_chunks(n.max(1))
            .map(|row| {
                let w: f64 = row.iter().sum();
                if w == 0.0 { 1.0 } else { w.sqrt() }
            })
            .collect();
        kernel
            .par_chunks_mut(n.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                for (v, &dj) in row.iter_mut().zip(&dd) {
                    *v /= dd[i] * dj;
                }
            });
        Ok(RbfOperator { n, kernel, dd })
    }
}

impl SymmetricOperator for RbfOperator {
    fn dim(&self) -> usize {
        self.n
    }

    fn apply(&self, x: MatRef<'_, f64>, y: MatMut<'_, f64>) {
        let n = self.n;
        let k = MatRef::from_row_major_slice(&self.kernel, n, n);
        y.par_row_chunks_mut(ROW_BLOCK)
            .enumerate()
            .for_each(|(t, mut dst)| {
                let r0 = t * ROW_BLOCK;
                let len = dst.nrows();
                dst.copy_from(x.subrows(r0, len));
                matmul(dst, Accum::Add, k.subrows(r0, len), x, 1.0, Par::Seq);
            });
    }
}

/// scikit-learn's embedding from the eigenvectors of `M` (`n × k`, largest first): divide
/// by `dd`, then `_deterministic_vector_sign_flip` (each component made positive at its
/// largest absolute entry, the first on ties). Row-major `n × k`.
pub fn embedding(vectors: MatRef<'_, f64>, dd: &[f64]) -> Vec<f64> {
    let (n, k) = (vectors.nrows(), vectors.ncols());
    let mut out = vec![0.0f64; n * k];
    for c in 0..k {
        let mut best = (0usize, -1.0f64);
        for (i, &d) in dd.iter().enumerate() {
            let v = vectors[(i, c)] / d;
            out[i * k + c] = v;
            if v.abs() > best.1 {
                best = (i, v.abs());
            }
        }
        if out[best.0 * k + c] < 0.0 {
            for i in 0..n {
                out[i * k + c] = -out[i * k + c];
            }
        }
    }
    out
}
