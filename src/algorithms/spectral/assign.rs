//! Labels from the spectral embedding: k-means, scikit-learn's `discretize` (Yu & Shi's
//! multiclass spectral clustering) and `cluster_qr` (Damle, Minden & Ying), each ported
//! from `sklearn/cluster/_spectral.py`.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::{Mat, MatRef, Par};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::algorithms::kmeans::{self, KMeansInit, KMeansParams};
use crate::model::{Cancelled, DeviceKind, Matrix, RunContext};

/// scikit-learn's `discretize` limits.
const MAX_SVD_RESTARTS: usize = 30;
const N_ITER_MAX: usize = 20;

/// The rng stream `discretize` draws from (k-means uses its own streams of the seed).
const DISCRETIZE_STREAM: u64 = 1 << 32;

/// `k_means(maps, n_clusters, random_state, n_init)` with scikit-learn's other defaults
/// (k-means++, 300 iterations, tol 1e-4). The embedding is converted to f32, the precision
/// our k-means works in: it is `n × k` with entries of size about 1/√N, well within it.
pub fn kmeans_labels(
    maps: &[f64],
    n: usize,
    k: usize,
    n_clusters: usize,
    n_init: usize,
    ctx: &RunContext,
) -> Result<Vec<i64>, Cancelled> {
    let data: Vec<f32> = maps.iter().map(|&v| v as f32).collect();
    let x = match Matrix::from_vec(n, k, data) {
        Some(x) => x,
        // Cannot happen (the embedding is n × k by construction); one cluster is the
        // answer that fails no caller.
        None => return Ok(vec![0; n]),
    };
    let params = KMeansParams {
        n_clusters,
        init: KMeansInit::KMeansPlusPlus,
        n_init,
        max_iter: 300,
        tol: 1e-4,
        random_state: Some(ctx.seed),
    };
    // Its own context: the same seed and cancellation, but k-means' progress events would
    // name a stage of another algorithm, so they are not forwarded. The embedding is small
    // (n × k), so the CPU path is used whatever the run's device.
    let sub = RunContext::new(ctx.seed, DeviceKind::Cpu).with_cancel(ctx.cancel_token().clone());
    let fit = kmeans::fit(&x, &params, &sub)?;
    Ok(fit.labels.into_iter().map(i64::from).collect())
}

/// scikit-learn's `discretize(maps, random_state)`: labels in `0..k` (k = the embedding
/// dimension, which may exceed `n_clusters`, as in scikit-learn).
pub fn discretize(maps: &[f64], n: usize, k: usize, seed: u64) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(DISCRETIZE_STREAM);
    let mut v = maps.to_vec();
    let norm_ones = (n as f64).sqrt();
    for c in 0..k {
        let norm = (0..n)
            .map(|i| v[i * k + c] * v[i * k + c])
            .sum::<f64>()
            .sqrt();
        let first = v[c];
        let sign = if first > 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            let mut x = v[i * k + c] / norm * norm_ones;
            // scikit-learn makes the first entry of every column negative.
            if first != 0.0 {
                x *= sign;
            }
            v[i * k + c] = if x.is_finite() { x } else { 0.0 };
        }
    }
    for row in v.chunks_mut(k) {
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }

    let eps = f64::EPSILON;
    let mut labels = vec![0i64; n];
    for _ in 0..MAX_SVD_RESTARTS {
        let mut rotation = Mat::<f64>::zeros(k, k);
        let start = rng.random_range(0..n);
        for a in 0..k {
            rotation[(a, 0)] = v[start * k + a];
        }
        let mut c = vec![0.0f64; n];
        for j in 1..k {
            let mut arg = 0;
            for i in 0..n {
                let dot: f64 = (0..k).map(|a| v[i * k + a] * rotation[(a, j - 1)]).sum();
                c[i] += dot.abs();
                if c[i] < c[arg] {
                    arg = i;
                }
            }
            for a in 0..k {
                rotation[(a, j)] = v[arg * k + a];
            }
        }
        let mut last_objective = 0.0;
        let mut n_iter = 0;
        loop {
            n_iter += 1;
            // Labels: the largest coordinate of each rotated row (the first on ties).
            let mut t_svd = Mat::<f64>::zeros(k, k);
            for i in 0..n {
                let row = &v[i * k..(i + 1) * k];
                let mut best = (0usize, f64::NEG_INFINITY);
                for j in 0..k {
                    let t: f64 = (0..k).map(|a| row[a] * rotation[(a, j)]).sum();
                    if t > best.1 {
                        best = (j, t);
                    }
                }
                labels[i] = best.0 as i64;
                for a in 0..k {
                    t_svd[(best.0, a)] += row[a];
                }
            }
            // scikit-learn restarts from a new random rotation when the SVD fails.
            let Some((u, s, vt)) = svd(t_svd.as_ref()) else {
                break;
            };
            let ncut = 2.0 * (n as f64 - s.iter().sum::<f64>());
            if (ncut - last_objective).abs() < eps || n_iter > N_ITER_MAX {
                return labels;
            }
            last_objective = ncut;
            // rotation = Vh.T @ U.T = V Uᵀ
            rotation = Mat::from_fn(k, k, |a, b| (0..k).map(|t| vt[(t, a)] * u[(b, t)]).sum());
        }
    }
    // scikit-learn raises after 30 failed SVDs, which only non-finite input can cause; the
    // last labels are returned instead.
    labels
}

/// scikit-learn's `cluster_qr(maps)`: the `k` rows chosen by QR with column pivoting of
/// `mapsᵀ` fix a rotation (from an SVD) towards which every row is labelled by its
/// largest absolute coordinate.
pub fn cluster_qr(maps: &[f64], n: usize, k: usize) -> Vec<i64> {
    let piv = pivot_rows(maps, n, k);
    // B = vectors[piv[:k], :].T, so B[a][b] = maps[piv[b]][a].
    let b = Mat::<f64>::from_fn(k, k, |a, c| maps[piv[c] * k + a]);
    let Some((u, _, vt)) = svd(b.as_ref()) else {
        return vec![0; n];
    };
    let rot = Mat::<f64>::from_fn(k, k, |a, c| (0..k).map(|t| u[(a, t)] * vt[(t, c)]).sum());
    (0..n)
        .map(|i| {
            let row = &maps[i * k..(i + 1) * k];
            let mut best = (0usize, f64::NEG_INFINITY);
            for c in 0..k {
                let t = (0..k).map(|a| row[a] * rot[(a, c)]).sum::<f64>().abs();
                if t > best.1 {
                    best = (c, t);
                }
            }
            best.0 as i64
        })
        .collect()
}

/// The first `k` pivots of QR with column pivoting of `mapsᵀ` (columns = rows of `maps`):
/// greedily the row of largest norm after projecting out the rows already chosen, as
/// LAPACK's `geqp3` picks them (the first on ties).
fn pivot_rows(maps: &[f64], n: usize, k: usize) -> Vec<usize> {
    let mut r = maps.to_vec();
    let mut norms: Vec<f64> = r
        .chunks(k)
        .map(|row| row.iter().map(|x| x * x).sum())
        .collect();
    let mut piv = Vec::with_capacity(k);
    for _ in 0..k {
        let mut p = 0;
        for i in 0..n {
            if norms[i] > norms[p] {
                p = i;
            }
        }
        piv.push(p);
        let len = norms[p].sqrt();
        if len == 0.0 {
            continue;
        }
        let q: Vec<f64> = r[p * k..(p + 1) * k].iter().map(|x| x / len).collect();
        for (i, row) in r.chunks_mut(k).enumerate() {
            let dot: f64 = row.iter().zip(&q).map(|(a, b)| a * b).sum();
            row.iter_mut().zip(&q).for_each(|(a, b)| *a -= dot * b);
            norms[i] = row.iter().map(|x| x * x).sum();
        }
    }
    piv
}

/// Full SVD of a small square matrix, sequential: `(U, singular values, Vᵀ)`.
fn svd(a: MatRef<'_, f64>) -> Option<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let (m, n) = (a.nrows(), a.ncols());
    let mut u = Mat::<f64>::zeros(m, m);
    let mut v = Mat::<f64>::zeros(n, n);
    let mut s = Diag::<f64>::zeros(m.min(n));
    let par = Par::Seq;
    let compute = faer::linalg::svd::ComputeSvdVectors::Full;
    let scratch =
        faer::linalg::svd::svd_scratch::<f64>(m, n, compute, compute, par, Default::default());
    faer::linalg::svd::svd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        par,
        MemStack::new(&mut MemBuffer::new(scratch)),
        Default::default(),
    )
    .ok()?;
    let values = (0..m.min(n)).map(|i| s[i]).collect();
    let vt = v.transpose().to_owned();
    Some((u, values, vt))
}

/// Labels renumbered `0..c` in order of their value, dropping unused ones (k-means never
/// leaves a cluster empty, `discretize` and `cluster_qr` may): the count of clusters found.
pub fn compact(labels: &mut [i64]) -> usize {
    let max = labels.iter().copied().max().unwrap_or(-1);
    let mut used = vec![false; (max + 1).max(0) as usize];
    for &l in labels.iter() {
        used[l as usize] = true;
    }
    let mut map = vec![0i64; used.len()];
    let mut next = 0;
    for (m, &u) in map.iter_mut().zip(&used) {
        if u {
            *m = next;
            next += 1;
        }
    }
    for l in labels.iter_mut() {
        *l = map[*l as usize];
    }
    next as usize
}
