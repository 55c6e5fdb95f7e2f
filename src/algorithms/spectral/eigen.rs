//! The largest eigenpairs of a symmetric positive semi-definite operator, by restarted
//! block Krylov iteration (block Lanczos with full reorthogonalisation, restarted from the
//! best Ritz vectors).
//!
//! Why a block method: a k-nearest-neighbour graph often falls apart into a few
//! components, and then the wanted eigenvalue 1 of the normalised affinity is exactly
//! multiple. A single-vector Lanczos sees one vector per distinct eigenvalue; a block of
//! `p > k` vectors spans the whole eigenspace. Why restarts with extra vectors: the wanted
//! eigenvalues of a well-clustered graph bunch up just below 1; convergence depends on the
//! gap between the k-th and the (p+1)-th, which the extra `p − k` vectors widen.
//!
//! Sparse operators (k-nearest-neighbour graphs) are cheap to apply, and there most of a
//! Krylov restart goes into orthogonalising the basis; after one Krylov restart has located
//! the spectrum, they switch to Chebyshev-filtered subspace iteration on the block (Zhou &
//! Saad): a polynomial of `M` that damps everything below the block's smallest Ritz value,
//! then one orthonormalisation and Rayleigh–Ritz on `p` vectors.
//!
//! Memory: the basis and its image, 2·N·m f64 with `m = p·(steps + 1)` (dense operators:
//! about 176 columns for 8 clusters, 28 MB at N = 10 000; sparse ones: `m = 3p`, plus three
//! N×p blocks for the filter, so 9·N·p f64 in all: 1.15 KB a row for 8 clusters), never
//! N×N.
//!
//! Determinism: every reduction over the N rows goes through [`gram`], which sums
//! fixed-size row chunks in chunk order, and the small dense factorisations run
//! sequentially, so results do not depend on the rayon thread count.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::model::{Cancelled, RunContext};

/// A symmetric operator `M`, applied to blocks of column vectors.
pub trait SymmetricOperator: Sync {
    fn dim(&self) -> usize;
    /// `y = M x`, computed the same way whatever the thread count.
    fn apply(&self, x: MatRef<'_, f64>, y: MatMut<'_, f64>);
    /// Whether applying `M` costs little next to orthogonalising a Krylov basis (sparse
    /// operators). The solver then follows its first Krylov restart with
    /// Chebyshev-filtered subspace iteration, which needs many products but few
    /// orthogonalisations.
    fn cheap(&self) -> bool {
        false
    }
}

/// Converged (or best-effort) eigenpairs, largest eigenvalue first.
#[derive(Debug, Clone)]
pub struct Eigenpairs {
    pub values: Vec<f64>,
    /// `n × k`, orthonormal columns.
    pub vectors: Mat<f64>,
    /// Restarts used.
    pub restarts: usize,
    /// Largest residual ‖Mv − θv‖ over the returned pairs.
    pub max_residual: f64,
    pub converged: bool,
}

/// Below this dimension the operator is materialised (at most 2 MB) and solved densely:
/// a Krylov basis of the usual size would span the whole space anyway.
pub const DENSE_MAX: usize = 512;

/// Restarts before giving up and returning the best Ritz pairs found.
pub const MAX_RESTARTS: usize = 500;

/// The filter needs room on both sides of its cut: below (the damped interval) and above
/// (up to the top of the spectrum, 2). Outside, a plain Krylov restart is used.
const FILTER_MIN_CUT: f64 = 1e-6;

/// Growth `d·acosh(x)` of the Chebyshev filter at the top of the spectrum.
const FILTER_GROWTH: f64 = 10.0;

/// Matrix–block products per filtered restart at most.
const MAX_FILTER_DEGREE: usize = 60;

/// Row chunk of the deterministic reductions.
const ROW_CHUNK: usize = 2048;

/// Target number of basis columns per restart (before clamping to the dimension).
const BASIS_TARGET: usize = 160;

/// The `k` largest eigenpairs of `op`, to residual `tol`. `report(restart, fraction)` is
/// called after every restart. Start vectors are drawn from `seed`.
pub fn largest(
    op: &dyn SymmetricOperator,
    k: usize,
    tol: f64,
    seed: u64,
    ctx: &RunContext,
    mut report: impl FnMut(usize, f32),
) -> Result<Eigenpairs, Cancelled> {
    let n = op.dim();
    let k = k.min(n);
    ctx.checkpoint()?;
    if n <= DENSE_MAX {
        return dense(op, k);
    }
    // Block size: room for multiplicity and for a gap beyond the k-th eigenvalue.
    let p = (k + k.max(8)).min(n / 4);
    // A cheap operator needs the Krylov basis only to locate the spectrum before the
    // filter takes over: a short one keeps its memory at 6·N·p f64.
    let steps = if op.cheap() {
        2
    } else {
        (BASIS_TARGET / p).clamp(2, 12)
    }
    .min(n / p - 1);
    let m = p * (steps + 1);

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut q = Mat::<f64>::zeros(n, m);
    let mut w = Mat::<f64>::zeros(n, m);
    for j in 0..p {
        for v in q.col_as_slice_mut(j) {
            *v = rng.random::<f64>() * 2.0 - 1.0;
        }
    }
    orthonormalise_block(&mut q, 0, p, &mut rng);
    op.apply(q.as_ref().subcols(0, p), w.as_mut().subcols_mut(0, p));

    let mut best = None;
    let mut previous: Option<Vec<f64>> = None;
    for restart in 0..MAX_RESTARTS {
        let cut = previous
            .as_ref()
            .filter(|_| op.cheap())
            .map(|theta| theta[p - 1])
            .filter(|&cut| cut > FILTER_MIN_CUT && cut < 2.0 - FILTER_MIN_CUT);
        let (theta_top, x, mx) = match cut {
            Some(cut) => {
                let filtered = chebyshev_filter(op, q.as_ref().subcols(0, p), cut, ctx)?;
                q.as_mut().subcols_mut(0, p).copy_from(&filtered);
                drop(filtered);
                orthonormalise_block(&mut q, 0, p, &mut rng);
                op.apply(q.as_ref().subcols(0, p), w.as_mut().subcols_mut(0, p));
                rayleigh_ritz(q.as_ref().subcols(0, p), w.as_ref().subcols(0, p), p)
            }
            None => {
                for step in 0..steps {
                    ctx.checkpoint()?;
                    let (c0, c1) = (step * p, (step + 1) * p);
                    // The next block is M applied to the last one, made orthogonal to the
                    // basis.
                    let next = w.as_ref().subcols(c0, p).to_owned();
                    q.as_mut().subcols_mut(c1, p).copy_from(&next);
                    orthonormalise_block(&mut q, c1, p, &mut rng);
                    let (qs, mut ws) = (q.as_ref().subcols(c1, p), w.as_mut().subcols_mut(c1, p));
                    op.apply(qs, ws.rb_mut());
                }
                ctx.checkpoint()?;
                rayleigh_ritz(q.as_ref(), w.as_ref(), p)
            }
        };
        let residuals: Vec<f64> = (0..k)
            .map(|j| {
                let (xs, ms) = (x.col_as_slice(j), mx.col_as_slice(j));
                residual_norm(xs, ms, theta_top[j])
            })
            .collect();
        let max_residual = residuals.iter().copied().fold(0.0, f64::max);
        let converged = max_residual <= tol;
        // Progress on a log scale: residual 1 is the start, `tol` the end.
        let done_fraction = if max_residual <= tol {
            1.0
        } else if max_residual >= 1.0 || tol >= 1.0 {
            0.0
        } else {
            (max_residual.ln() / tol.ln()).clamp(0.0, 1.0) as f32
        };
        report(restart + 1, if converged { 1.0 } else { done_fraction });
        if converged || restart + 1 == MAX_RESTARTS {
            let vectors = x.as_ref().subcols(0, k).to_owned();
            best = Some(Eigenpairs {
                values: theta_top[..k].to_vec(),
                vectors,
                restarts: restart + 1,
                max_residual,
                converged,
            });
            break;
        }
        // Restart from the p best Ritz vectors; their images are already known.
        q.as_mut().subcols_mut(0, p).copy_from(&x);
        w.as_mut().subcols_mut(0, p).copy_from(&mx);
        previous = Some(theta_top);
    }
    let result = best.unwrap_or_else(|| Eigenpairs {
        values: Vec::new(),
        vectors: Mat::zeros(n, 0),
        restarts: 0,
        max_residual: f64::INFINITY,
        converged: false,
    });
    if !result.converged {
        tracing::warn!(
            residual = result.max_residual,
            tol,
            "spectral: eigensolver stopped at its restart limit; using the best Ritz vectors"
        );
    }
    Ok(result)
}

/// Rayleigh–Ritz on the basis `q` with image `w = M q`: the `p` largest Ritz values,
/// their Ritz vectors and the vectors' images.
fn rayleigh_ritz(
    q: MatRef<'_, f64>,
    w: MatRef<'_, f64>,
    p: usize,
) -> (Vec<f64>, Mat<f64>, Mat<f64>) {
    let m = q.ncols();
    let mut h = gram(q, w);
    for i in 0..m {
        for j in 0..i {
            let s = 0.5 * (h[(i, j)] + h[(j, i)]);
            h[(i, j)] = s;
            h[(j, i)] = s;
        }
    }
    let (theta, y) = symmetric_eigen(h.as_ref());
    // Largest first: faer sorts ascending.
    let y_top = Mat::from_fn(m, p, |i, j| y[(i, m - 1 - j)]);
    let theta_top: Vec<f64> = (0..p).map(|j| theta[m - 1 - j]).collect();
    (theta_top, mul(q, y_top.as_ref()), mul(w, y_top.as_ref()))
}

/// `T_d((M − c)/e) v`, the Chebyshev polynomial that stays within [−1, 1] on `[0, cut]`
/// (where the unwanted spectrum of `M` lies, `M` being positive semi-definite) and grows
/// fast above it. The degree keeps `T_d` at the top of the spectrum (2) near e^10, so the
/// filtered block stays well conditioned for the orthonormalisation that follows.
fn chebyshev_filter(
    op: &dyn SymmetricOperator,
    v: MatRef<'_, f64>,
    cut: f64,
    ctx: &RunContext,
) -> Result<Mat<f64>, Cancelled> {
    let (n, p) = (v.nrows(), v.ncols());
    let (c, e) = (cut / 2.0, cut / 2.0);
    let x_max = (2.0 - c) / e;
    let degree = (FILTER_GROWTH / x_max.acosh())
        .ceil()
        .clamp(2.0, MAX_FILTER_DEGREE as f64) as usize;
    let mut prev = v.to_owned();
    let mut image = Mat::<f64>::zeros(n, p);
    op.apply(v, image.as_mut());
    let mut cur = Mat::from_fn(n, p, |i, j| (image[(i, j)] - c * v[(i, j)]) / e);
    for _ in 1..degree {
        ctx.checkpoint()?;
        op.apply(cur.as_ref(), image.as_mut());
        for j in 0..p {
            let (img, cu) = (image.col_as_slice(j), cur.col_as_slice(j));
            for ((pv, &mv), &cv) in prev.col_as_slice_mut(j).iter_mut().zip(img).zip(cu) {
                *pv = 2.0 * (mv - c * cv) / e - *pv;
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    Ok(cur)
}

/// Small problems: apply the operator to the identity and solve densely.
fn dense(op: &dyn SymmetricOperator, k: usize) -> Result<Eigenpairs, Cancelled> {
    let n = op.dim();
    let mut a = Mat::<f64>::zeros(n, n);
    op.apply(Mat::<f64>::identity(n, n).as_ref(), a.as_mut());
    for i in 0..n {
        for j in 0..i {
            let s = 0.5 * (a[(i, j)] + a[(j, i)]);
            a[(i, j)] = s;
            a[(j, i)] = s;
        }
    }
    let (theta, y) = symmetric_eigen(a.as_ref());
    let values: Vec<f64> = (0..k).map(|j| theta[n - 1 - j]).collect();
    let vectors = Mat::from_fn(n, k, |i, j| y[(i, n - 1 - j)]);
    let mut mv = Mat::<f64>::zeros(n, k);
    op.apply(vectors.as_ref(), mv.as_mut());
    let max_residual = (0..k)
        .map(|j| residual_norm(vectors.col_as_slice(j), mv.col_as_slice(j), values[j]))
        .fold(0.0, f64::max);
    Ok(Eigenpairs {
        values,
        vectors,
        restarts: 0,
        max_residual,
        converged: true,
    })
}

fn residual_norm(x: &[f64], mx: &[f64], theta: f64) -> f64 {
    x.iter()
        .zip(mx)
        .map(|(&a, &b)| (b - theta * a) * (b - theta * a))
        .sum::<f64>()
        .sqrt()
}

/// Eigen-decomposition of a small symmetric matrix, ascending, computed sequentially so
/// that it cannot depend on the thread count.
pub fn symmetric_eigen(a: MatRef<'_, f64>) -> (Vec<f64>, Mat<f64>) {
    let n = a.nrows();
    let mut u = Mat::<f64>::zeros(n, n);
    let mut s = Diag::<f64>::zeros(n);
    let par = Par::Seq;
    let scratch = faer::linalg::evd::self_adjoint_evd_scratch::<f64>(
        n,
        faer::linalg::evd::ComputeEigenvectors::Yes,
        par,
        Default::default(),
    );
    let ok = faer::linalg::evd::self_adjoint_evd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut MemBuffer::new(scratch)),
        Default::default(),
    );
    if ok.is_err() {
        // Non-convergence of the tridiagonal QR is only possible for non-finite input;
        // a zero spectrum with the identity basis keeps the caller well-defined.
        return (vec![0.0; n], Mat::identity(n, n));
    }
    ((0..n).map(|i| s[i]).collect(), u)
}

/// Rows per chunk of a deterministic reduction over `n` rows: fixed by `n` alone, and
/// coarse enough that at most 64 partial results exist.
fn chunk_rows(n: usize) -> usize {
    ROW_CHUNK.max(n.div_ceil(64))
}

/// `aᵀ b`, summed over fixed row chunks in chunk order.
pub fn gram(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> Mat<f64> {
    let n = a.nrows();
    let c = chunk_rows(n);
    let parts: Vec<Mat<f64>> = (0..n.div_ceil(c))
        .into_par_iter()
        .map(|t| {
            let r0 = t * c;
            let len = c.min(n - r0);
            let mut out = Mat::<f64>::zeros(a.ncols(), b.ncols());
            matmul(
                out.as_mut(),
                Accum::Replace,
                a.subrows(r0, len).transpose(),
                b.subrows(r0, len),
                1.0,
                Par::Seq,
            );
            out
        })
        .collect();
    let mut total = Mat::<f64>::zeros(a.ncols(), b.ncols());
    for part in parts {
        for j in 0..total.ncols() {
            for (t, &v) in total
                .col_as_slice_mut(j)
                .iter_mut()
                .zip(part.col_as_slice(j))
            {
                *t += v;
            }
        }
    }
    total
}

/// `a · c` (row-local, so any split of the rows gives the same bits).
pub fn mul(a: MatRef<'_, f64>, c: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(a.nrows(), c.ncols());
    let rows = chunk_rows(a.nrows());
    out.as_mut()
        .par_row_chunks_mut(rows)
        .enumerate()
        .for_each(|(t, dst)| {
            let len = dst.nrows();
            matmul(
                dst,
                Accum::Replace,
                a.subrows(t * rows, len),
                c,
                1.0,
                Par::Seq,
            );
        });
    out
}

/// `b −= a · c`, row-local.
fn sub_mul(b: MatMut<'_, f64>, a: MatRef<'_, f64>, c: MatRef<'_, f64>) {
    let rows = chunk_rows(a.nrows());
    b.par_row_chunks_mut(rows).enumerate().for_each(|(t, dst)| {
        let len = dst.nrows();
        matmul(dst, Accum::Add, a.subrows(t * rows, len), c, -1.0, Par::Seq);
    });
}

/// Make columns `c0..c0+width` of `q` orthonormal and orthogonal to columns `0..c0`.
/// Block Gram–Schmidt twice against the earlier columns ("twice is enough"), then modified
/// Gram–Schmidt, again twice, within the block. A column that vanishes (the Krylov space
/// ran out, e.g. an exact invariant subspace) is replaced by a fresh random direction.
pub fn orthonormalise_block(q: &mut Mat<f64>, c0: usize, width: usize, rng: &mut ChaCha8Rng) {
    let original: Vec<f64> = (c0..c0 + width).map(|j| norm(q.col_as_slice(j))).collect();
    if c0 > 0 {
        for _ in 0..2 {
            let (prev, mut block) = q.as_mut().split_at_col_mut(c0);
            let block = block.rb_mut().subcols_mut(0, width);
            let coeffs = gram(prev.rb(), block.rb());
            sub_mul(block, prev.rb(), coeffs.as_ref());
        }
    }
    for j in c0..c0 + width {
        // The block is already orthogonal to the columns before it; a random replacement
        // is not, and is made orthogonal to everything.
        let mut from = c0;
        let mut before = original[j - c0];
        let mut attempts = 0;
        loop {
            for _ in 0..2 {
                let (prev, mut rest) = q.as_mut().split_at_col_mut(j);
                let prev = prev.rb().subcols(from, j - from);
                let mut col = rest.rb_mut().subcols_mut(0, 1);
                let coeffs = gram(prev, col.rb());
                sub_mul(col.rb_mut(), prev, coeffs.as_ref());
            }
            let after = norm(q.col_as_slice(j));
            // A column that lost all but 1e-10 of its length is rounding noise.
            if after > 1e-10 * before && after > 0.0 {
                q.col_as_slice_mut(j).iter_mut().for_each(|v| *v /= after);
                break;
            }
            attempts += 1;
            if attempts > 8 {
                // The space is exhausted (cannot happen while j < n); leave a zero column.
                q.col_as_slice_mut(j).iter_mut().for_each(|v| *v = 0.0);
                break;
            }
            for v in q.col_as_slice_mut(j) {
                *v = rng.random::<f64>() * 2.0 - 1.0;
            }
            before = norm(q.col_as_slice(j));
            from = 0;
        }
    }
}

fn norm(v: &[f64]) -> f64 {
    // Fixed-order sum: the column is short-lived and summed once, so a sequential pass is
    // both deterministic and cheap next to the Gram products.
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}
