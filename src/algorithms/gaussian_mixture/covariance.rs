//! The Gaussian side of the mixture, per covariance type, as scikit-learn 1.9.1
//! `_gaussian_mixture.py` does it: `_estimate_gaussian_parameters` (the M-step statistics),
//! `_compute_precision_cholesky`, `_compute_log_det_cholesky` and
//! `_estimate_log_gaussian_prob`, in f64 on data centred on its column means.
//!
//! Every sum over rows goes through [`reduce_rows`], whose partition depends only on the
//! shape of the problem, so the results are bit-identical for any rayon thread count.

use std::ops::Range;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::params::CovarianceType;
use crate::model::{Cancelled, Matrix, RunContext};

/// Rows per block of the E-step and of the sums over rows: enough for the GEMMs to run
/// near peak, small enough that a block and its `d`-wide products stay in cache.
pub(super) const BLOCK_ROWS: usize = 512;

/// Memory the partial sums of one reduction may take together. More partials let more
/// threads work at once; the cap keeps `K·d²`-sized partials (full covariances) bounded.
const PARTIALS_BYTES: usize = 64 << 20;

/// The data, centred on its column means (the expanded sums of the tied and diagonal
/// covariances, `E[x²] − μ²`, lose precision far from the origin) and read as f64 one
/// block of rows at a time, so that no f64 copy of the whole matrix exists.
pub(super) struct Data<'a> {
    x: &'a Matrix,
    pub mean: Vec<f64>,
}

impl<'a> Data<'a> {
    pub fn new(x: &'a Matrix) -> Self {
        let d = x.cols();
        let n = x.rows();
        let sums = reduce_rows(n, d, |rows, acc| {
            for i in rows {
                for (a, &v) in acc.iter_mut().zip(x.row(i)) {
                    *a += f64::from(v);
                }
            }
        });
        let mean = sums.into_iter().map(|s| s / n.max(1) as f64).collect();
        Data { x, mean }
    }

    pub fn rows(&self) -> usize {
        self.x.rows()
    }

    pub fn cols(&self) -> usize {
        self.x.cols()
    }

    /// Rows `rows`, centred, row-major, into `out`.
    pub fn block(&self, rows: Range<usize>, out: &mut Vec<f64>) {
        out.clear();
        for i in rows {
            out.extend(
                self.x
                    .row(i)
                    .iter()
                    .zip(&self.mean)
                    .map(|(&v, &m)| f64::from(v) - m),
            );
        }
    }
}

/// Sum `f` over the rows `0..n` into a vector of `len` values. The rows are cut into
/// contiguous parts whose number depends only on `n` and `len` (never on the thread
/// count); each part is summed sequentially, in parallel with the others, and the parts
/// are added in order.
pub(super) fn reduce_rows(
    n: usize,
    len: usize,
    f: impl Fn(Range<usize>, &mut [f64]) + Sync,
) -> Vec<f64> {
    let by_memory = (PARTIALS_BYTES / (8 * len.max(1))).max(1);
    let parts = n.div_ceil(4 * BLOCK_ROWS).clamp(1, by_memory);
    let per_part = n.div_ceil(parts).max(1);
    let partials: Vec<Vec<f64>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut acc = vec![0f64; len];
            f(p * per_part..((p + 1) * per_part).min(n), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0f64; len];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// `range` cut into blocks of [`BLOCK_ROWS`].
pub(super) fn blocks(range: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    let end = range.end;
    range
        .step_by(BLOCK_ROWS)
        .map(move |s| s..(s + BLOCK_ROWS).min(end))
}

/// Covariances as estimated by the M-step, regularised.
pub(super) enum Covariances {
    /// `K` row-major `d × d` matrices.
    Full(Vec<f64>),
    /// One `d × d` matrix.
    Tied(Vec<f64>),
    /// `K × d` variances.
    Diag(Vec<f64>),
    /// `K` variances.
    Spherical(Vec<f64>),
}

/// Cholesky factors of the precisions (scikit-learn's `precisions_cholesky_`).
#[derive(Debug, Clone)]
pub(super) enum PrecisionsCholesky {
    /// `K` row-major upper-triangular `d × d` matrices `U` with `U·Uᵀ` the precision.
    Full(Vec<f64>),
    /// One such matrix, shared.
    Tied(Vec<f64>),
    /// `K × d` inverse standard deviations.
    Diag(Vec<f64>),
    /// `K` inverse standard deviations.
    Spherical(Vec<f64>),
}

/// A component's covariance is not positive definite: its Cholesky factorisation failed
/// (full, tied) or a variance is not positive (diag, spherical).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IllDefined;

/// The mixture's parameters in the centred frame, with what the E-step derives from them.
#[derive(Debug, Clone)]
pub(super) struct Gaussians {
    pub weights: Vec<f64>,
    /// `K × d`, row-major.
    pub means: Vec<f64>,
    pub prec: PrecisionsCholesky,
    /// Per component: `Σ log diag(U)` (scikit-learn's `_compute_log_det_cholesky`) plus
    /// `log weight − d·log(2π)/2`, the constant part of its weighted log density.
    offset: Vec<f64>,
    /// Full, tied: `μ_k·U_k`, `K × d`; diag, spherical: empty.
    mean_prec: Vec<f64>,
    /// Diag, spherical: the precisions `p` per feature (`K × d`), `μ∘p` (`K × d`) and
    /// `Σ μ²p` (`K`); full, tied: empty.
    quad: Vec<f64>,
    lin: Vec<f64>,
    quad_const: Vec<f64>,
}

impl Gaussians {
    pub fn new(weights: Vec<f64>, means: Vec<f64>, prec: PrecisionsCholesky, d: usize) -> Self {
        let k = weights.len();
        let log_det: Vec<f64> = match &prec {
            PrecisionsCholesky::Full(u) => (0..k)
                .map(|c| (0..d).map(|a| u[c * d * d + a * d + a].ln()).sum())
                .collect(),
            PrecisionsCholesky::Tied(u) => {
                let ld: f64 = (0..d).map(|a| u[a * d + a].ln()).sum();
                vec![ld; k]
            }
            PrecisionsCholesky::Diag(p) => (0..k)
                .map(|c| p[c * d..(c + 1) * d].iter().map(|v| v.ln()).sum())
                .collect(),
            PrecisionsCholesky::Spherical(p) => p.iter().map(|v| d as f64 * v.ln()).collect(),
        };
        let half_log_2pi = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let offset = log_det
            .iter()
            .zip(&weights)
            .map(|(ld, w)| ld + w.ln() - half_log_2pi)
            .collect();
        let mean_prec = match &prec {
            PrecisionsCholesky::Full(u) => (0..k)
                .flat_map(|c| mat_vec_t(&means[c * d..(c + 1) * d], &u[c * d * d..(c + 1) * d * d]))
                .collect(),
            PrecisionsCholesky::Tied(u) => (0..k)
                .flat_map(|c| mat_vec_t(&means[c * d..(c + 1) * d], u))
                .collect(),
            _ => Vec::new(),
        };
        let quad: Vec<f64> = match &prec {
            PrecisionsCholesky::Diag(p) => p.iter().map(|v| v * v).collect(),
            PrecisionsCholesky::Spherical(p) => p
                .iter()
                .flat_map(|v| std::iter::repeat_n(v * v, d))
                .collect(),
            _ => Vec::new(),
        };
        let lin: Vec<f64> = quad.iter().zip(&means).map(|(q, m)| q * m).collect();
        let quad_const = if matches!(
            prec,
            PrecisionsCholesky::Full(_) | PrecisionsCholesky::Tied(_)
        ) {
            Vec::new()
        } else {
            (0..k)
                .map(|c| {
                    let r = c * d..(c + 1) * d;
                    lin[r.clone()]
                        .iter()
                        .zip(&means[r])
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect()
        };
        Gaussians {
            weights,
            means,
            prec,
            offset,
            mean_prec,
            quad,
            lin,
            quad_const,
        }
    }

    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// Weighted log densities `log w_k + log N(x_i | μ_k, Σ_k)` of the `m` centred rows in
    /// `xb` (row-major), into `out` (`m × K`, row-major). `scratch` is reused between calls.
    pub fn weighted_log_prob(&self, xb: &[f64], d: usize, out: &mut [f64], scratch: &mut Vec<f64>) {
        let k = self.n_components();
        let m = out.len() / k.max(1);
        match &self.prec {
            PrecisionsCholesky::Full(u) => {
                for c in 0..k {
                    project(xb, m, d, &u[c * d * d..(c + 1) * d * d], scratch);
                    self.sq_norms_into(scratch, m, d, c, out);
                }
            }
            PrecisionsCholesky::Tied(u) => {
                project(xb, m, d, u, scratch);
                for c in 0..k {
                    self.sq_norms_into(scratch, m, d, c, out);
                }
            }
            PrecisionsCholesky::Diag(_) | PrecisionsCholesky::Spherical(_) => {
                // scikit-learn's expanded form, two GEMMs: Σ_j p_j (x_j − μ_j)² =
                // x²·p − 2·x·(μ∘p) + μ²·p, fine in f64 on centred data.
                scratch.clear();
                scratch.extend(xb.iter().map(|v| v * v));
                matmul(
                    MatMut::from_row_major_slice_mut(out, m, k),
                    Accum::Replace,
                    MatRef::from_row_major_slice(scratch, m, d),
                    MatRef::from_row_major_slice(&self.quad, k, d).transpose(),
                    1.0,
                    Par::Seq,
                );
                matmul(
                    MatMut::from_row_major_slice_mut(out, m, k),
                    Accum::Add,
                    MatRef::from_row_major_slice(xb, m, d),
                    MatRef::from_row_major_slice(&self.lin, k, d).transpose(),
                    -2.0,
                    Par::Seq,
                );
                for row in out.chunks_exact_mut(k) {
                    for ((v, &o), &q) in row.iter_mut().zip(&self.offset).zip(&self.quad_const) {
                        *v = o - 0.5 * (q + *v);
                    }
                }
            }
        }
    }

    /// `out[i, c] = offset_c − ½·|y_i − μ_c·U|²` for the projected rows `y` (column-major
    /// `m × d` in `proj`).
    fn sq_norms_into(&self, proj: &[f64], m: usize, d: usize, c: usize, out: &mut [f64]) {
        let k = self.n_components();
        let mp = &self.mean_prec[c * d..(c + 1) * d];
        let mut sq = vec![0f64; m];
        for (col, &shift) in proj.chunks_exact(m.max(1)).zip(mp) {
            for (s, &y) in sq.iter_mut().zip(col) {
                let v = y - shift;
                *s += v * v;
            }
        }
        for (i, s) in sq.into_iter().enumerate() {
            out[i * k + c] = self.offset[c] - 0.5 * s;
        }
    }
}

/// `v·U` for a row vector `v` and a row-major square `U`.
fn mat_vec_t(v: &[f64], u: &[f64]) -> Vec<f64> {
    let d = v.len();
    (0..d)
        .map(|b| (0..d).map(|a| v[a] * u[a * d + b]).sum())
        .collect()
}

/// `xb·U` (one GEMM), column-major `m × d`, into `out`.
fn project(xb: &[f64], m: usize, d: usize, u: &[f64], out: &mut Vec<f64>) {
    out.clear();
    out.resize(m * d, 0.0);
    let lhs = MatRef::from_row_major_slice(xb, m, d);
    let rhs = MatRef::from_row_major_slice(u, d, d);
    let dst = MatMut::from_column_major_slice_mut(&mut out[..], m, d);
    matmul(dst, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
}

/// `X_centredᵀ·X_centred` (`d × d`, row-major): the tied covariance's first term, which
/// does not change between iterations.
pub(super) fn gram(data: &Data<'_>, ctx: &RunContext) -> Result<Vec<f64>, Cancelled> {
    let d = data.cols();
    ctx.checkpoint()?;
    let total = reduce_rows(data.rows(), d * d, |rows, acc| {
        let mut xb = Vec::new();
        for blk in blocks(rows) {
            if ctx.checkpoint().is_err() {
                return;
            }
            let m = blk.len();
            data.block(blk, &mut xb);
            let a = MatRef::from_row_major_slice(&xb, m, d);
            let dst = MatMut::from_column_major_slice_mut(acc, d, d);
            matmul(dst, Accum::Add, a.transpose(), a, 1.0, Par::Seq);
        }
    });
    ctx.checkpoint()?;
    Ok(total)
}

/// scikit-learn's `_estimate_gaussian_parameters`: component masses `nk` (plus 10 ε, so
/// that an empty component divides by something), means and regularised covariances, from
/// the responsibilities `resp` (`N × K`, row-major). `gram` is [`gram`]'s matrix (tied only).
pub(super) fn estimate_parameters(
    data: &Data<'_>,
    resp: &[f64],
    k: usize,
    covariance_type: CovarianceType,
    reg_covar: f64,
    gram: Option<&[f64]>,
    ctx: &RunContext,
) -> Result<(Vec<f64>, Vec<f64>, Covariances), Cancelled> {
    let n = data.rows();
    let d = data.cols();
    let squares = matches!(
        covariance_type,
        CovarianceType::Diag | CovarianceType::Spherical
    );
    // One pass: [Σ r_k (K) | Σ r_k·x (K × d) | Σ r_k·x² (K × d, diag and spherical)].
    let len = k + k * d + if squares { k * d } else { 0 };
    ctx.checkpoint()?;
    let sums = reduce_rows(n, len, |rows, acc| {
        let (nk, rest) = acc.split_at_mut(k);
        let (sx, sxx) = rest.split_at_mut(k * d);
        let mut xb = Vec::new();
        let mut x2 = Vec::new();
        for blk in blocks(rows) {
            if ctx.checkpoint().is_err() {
                return;
            }
            let m = blk.len();
            let r = &resp[blk.start * k..blk.end * k];
            for row in r.chunks_exact(k) {
                for (a, &v) in nk.iter_mut().zip(row) {
                    *a += v;
                }
            }
            data.block(blk, &mut xb);
            let rt = MatRef::from_row_major_slice(r, m, k).transpose();
            matmul(
                MatMut::from_row_major_slice_mut(sx, k, d),
                Accum::Add,
                rt,
                MatRef::from_row_major_slice(&xb, m, d),
                1.0,
                Par::Seq,
            );
            if squares {
                x2.clear();
                x2.extend(xb.iter().map(|v| v * v));
                matmul(
                    MatMut::from_row_major_slice_mut(sxx, k, d),
                    Accum::Add,
                    rt,
                    MatRef::from_row_major_slice(&x2, m, d),
                    1.0,
                    Par::Seq,
                );
            }
        }
    });
    ctx.checkpoint()?;
    let nk: Vec<f64> = sums[..k].iter().map(|s| s + 10.0 * f64::EPSILON).collect();
    let means: Vec<f64> = (0..k * d).map(|i| sums[k + i] / nk[i / d.max(1)]).collect();
    let covariances = match covariance_type {
        CovarianceType::Full => {
            Covariances::Full(full_covariances(data, resp, &nk, &means, reg_covar, ctx)?)
        }
        CovarianceType::Tied => {
            let mut cov = gram.map_or_else(|| vec![0.0; d * d], <[f64]>::to_vec);
            let total: f64 = nk.iter().sum();
            for (c, &w) in nk.iter().enumerate() {
                let mu = &means[c * d..(c + 1) * d];
                for a in 0..d {
                    for b in 0..d {
                        cov[a * d + b] -= w * mu[a] * mu[b];
                    }
                }
            }
            for v in &mut cov {
                *v /= total;
            }
            for a in 0..d {
                cov[a * d + a] += reg_covar;
            }
            Covariances::Tied(cov)
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            let sxx = &sums[k + k * d..];
            let diag: Vec<f64> = (0..k * d)
                .map(|i| sxx[i] / nk[i / d] - means[i] * means[i] + reg_covar)
                .collect();
            if covariance_type == CovarianceType::Diag {
                Covariances::Diag(diag)
            } else {
                // With no features this is 0/0: NaN, refused as ill-defined.
                Covariances::Spherical(
                    (0..k)
                        .map(|c| diag[c * d..(c + 1) * d].iter().sum::<f64>() / d as f64)
                        .collect(),
                )
            }
        }
    };
    Ok((nk, means, covariances))
}

/// `Σ_i r_ik (x_i − μ_k)(x_i − μ_k)ᵀ / nk_k + reg·I` for every `k`, as scikit-learn's
/// `_estimate_gaussian_covariances_full` (two-pass, around the new means).
fn full_covariances(
    data: &Data<'_>,
    resp: &[f64],
    nk: &[f64],
    means: &[f64],
    reg_covar: f64,
    ctx: &RunContext,
) -> Result<Vec<f64>, Cancelled> {
    let k = nk.len();
    let d = data.cols();
    let mut cov = reduce_rows(data.rows(), k * d * d, |rows, acc| {
        let mut xb = Vec::new();
        let mut diff = Vec::new();
        let mut weighted = Vec::new();
        for blk in blocks(rows) {
            if ctx.checkpoint().is_err() {
                return;
            }
            let m = blk.len();
            let r = &resp[blk.start * k..blk.end * k];
            data.block(blk, &mut xb);
            for c in 0..k {
                let mu = &means[c * d..(c + 1) * d];
                diff.resize(m * d, 0.0);
                weighted.resize(m * d, 0.0);
                for (i, ((row, dr), wr)) in xb
                    .chunks_exact(d)
                    .zip(diff.chunks_exact_mut(d))
                    .zip(weighted.chunks_exact_mut(d))
                    .enumerate()
                {
                    let w = r[i * k + c];
                    for (((&x, &mu), dv), wv) in row.iter().zip(mu).zip(dr).zip(wr) {
                        *dv = x - mu;
                        *wv = w * (x - mu);
                    }
                }
                matmul(
                    MatMut::from_column_major_slice_mut(&mut acc[c * d * d..(c + 1) * d * d], d, d),
                    Accum::Add,
                    MatRef::from_row_major_slice(&weighted, m, d).transpose(),
                    MatRef::from_row_major_slice(&diff, m, d),
                    1.0,
                    Par::Seq,
                );
            }
        }
    });
    ctx.checkpoint()?;
    for (c, s) in cov.chunks_exact_mut((d * d).max(1)).enumerate() {
        for v in s.iter_mut() {
            *v /= nk[c];
        }
        for a in 0..d {
            s[a * d + a] += reg_covar;
        }
    }
    Ok(cov)
}

/// scikit-learn's `_compute_precision_cholesky`: for a matrix `Σ = L·Lᵀ`, the upper
/// triangular `U = L⁻ᵀ` (so `U·Uᵀ = Σ⁻¹`); for variances, `1/√σ²`.
pub(super) fn precision_cholesky(
    cov: &Covariances,
    d: usize,
) -> Result<PrecisionsCholesky, IllDefined> {
    Ok(match cov {
        Covariances::Full(c) => {
            let mut out = Vec::with_capacity(c.len());
            for s in c.chunks_exact((d * d).max(1)) {
                out.extend(inverse_cholesky_t(s, d)?);
            }
            PrecisionsCholesky::Full(out)
        }
        Covariances::Tied(c) => PrecisionsCholesky::Tied(inverse_cholesky_t(c, d)?),
        Covariances::Diag(v) => PrecisionsCholesky::Diag(inverse_sqrt(v)?),
        Covariances::Spherical(v) => PrecisionsCholesky::Spherical(inverse_sqrt(v)?),
    })
}

fn inverse_sqrt(v: &[f64]) -> Result<Vec<f64>, IllDefined> {
    // NaN too: a collapsed component can produce it.
    if v.iter().any(|&x| x <= 0.0 || x.is_nan()) {
        return Err(IllDefined);
    }
    Ok(v.iter().map(|&x| 1.0 / x.sqrt()).collect())
}

/// `L⁻ᵀ` (row-major) for the Cholesky factor `L` of the row-major `d × d` matrix `s`, whose
/// lower triangle is read. Sequential, so that the thread count cannot change it.
fn inverse_cholesky_t(s: &[f64], d: usize) -> Result<Vec<f64>, IllDefined> {
    let mut l = Mat::<f64>::from_fn(d, d, |i, j| if j <= i { s[i * d + j] } else { 0.0 });
    let mut mem = MemBuffer::new(cholesky_in_place_scratch::<f64>(
        d,
        Par::Seq,
        Default::default(),
    ));
    cholesky_in_place(
        l.as_mut(),
        Default::default(),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|_| IllDefined)?;
    // Only the lower triangle is the factor; whatever the factorisation left above it must
    // not enter the solve.
    for j in 1..d {
        for i in 0..j {
            l[(i, j)] = 0.0;
        }
    }
    let mut inv = Mat::<f64>::identity(d, d);
    solve_lower_triangular_in_place(l.as_ref(), inv.as_mut(), Par::Seq);
    let mut out = vec![0f64; d * d];
    for a in 0..d {
        for b in 0..d {
            out[a * d + b] = inv[(b, a)];
        }
    }
    Ok(out)
}
