//! k-means, faithful to scikit-learn 1.9.1 `KMeans` (Lloyd's algorithm, greedy k-means++
//! or random initialisation, best of `n_init` runs by inertia), on a CPU path built from
//! blocked GEMM distances ([`crate::algorithms::distance`]) and rayon.
//!
//! Determinism: every run draws from its own ChaCha8 stream of `ctx.seed`, and every
//! parallel reduction works on fixed-size blocks combined in block order, so the same input
//! and seed give bit-identical output whatever the rayon thread count.

mod gpu;
#[cfg(test)]
mod gpu_tests;
mod init;
mod lloyd;
mod params;
#[cfg(test)]
mod tests;

pub use params::{KMeansInit, KMeansParams};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::algorithms::distance::{BLOCK_ROWS, row_sq_norms};
use crate::model::{Cancelled, DeviceKind, Matrix, ProgressEvent, RunContext};

/// The result of a k-means fit.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansFit {
    /// Cluster of each row, in `0..n_clusters`.
    pub labels: Vec<u32>,
    /// `n_clusters × n_features` centres, in the frame of the input.
    pub centers: Matrix,
    /// Sum of squared distances of rows to their centres.
    pub inertia: f64,
    /// Lloyd iterations of the winning run.
    pub n_iter: usize,
    /// Euclidean (not squared) distance of each row to its centre.
    pub distances: Vec<f32>,
}

/// Rows per partial sum when reducing over columns (mean, variance): fixed, so the sums
/// do not depend on the thread count, and coarse, so the partials stay few.
const REDUCE_ROWS: usize = 16 * BLOCK_ROWS;

/// Fit k-means to the rows of `x`.
///
/// Seeded by `ctx.seed` (the engine resolves `random_state`, or 0, into it); run `r` of
/// `n_init` uses stream `r` of a ChaCha8 generator with that seed. The engine is expected
/// to have called [`KMeansParams::check_against_data`]; should `n_clusters` still exceed
/// the number of rows, the fit uses one cluster per row rather than fail.
///
/// As scikit-learn does, the data is centred on its column means before fitting (the
/// expanded distance `||x||² + ||c||² − 2x·c` loses precision far from the origin); this
/// costs one copy of `x`.
pub fn fit(x: &Matrix, params: &KMeansParams, ctx: &RunContext) -> Result<KMeansFit, Cancelled> {
    ctx.checkpoint()?;
    let n = x.rows();
    let d = x.cols();
    let k = params.n_clusters.min(n);
    if k == 0 {
        return Ok(KMeansFit {
            labels: vec![0; n],
            centers: Matrix::zeros(0, d),
            inertia: 0.0,
            n_iter: 0,
            distances: vec![0.0; n],
        });
    }

    let mean = column_means(x);
    let xc = centred(x, &mean);
    ctx.checkpoint()?;
    let x_sq = row_sq_norms(&xc);
    // scikit-learn's `_tolerance`: tol times the mean per-feature variance.
    let tol_abs = if d == 0 {
        0.0
    } else {
        mean_variance(&xc) * params.tol
    };

    let n_init = params.n_init.max(1);
    let max_iter = params.max_iter;
    // The data goes to the device once per fit; if it cannot, the fit runs on the CPU.
    let gpu_lloyd = match ctx.device {
        DeviceKind::Gpu => gpu::GpuLloyd::new(&xc, None)
            .inspect(|g| {
                if g.is_streamed() {
                    tracing::info!(
                        rows = n,
                        "k-means: data streams through the device each iteration"
                    );
                }
            })
            .inspect_err(
                |e| tracing::warn!(error = %e, "k-means: GPU unavailable, using the CPU path"),
            )
            .ok(),
        DeviceKind::Cpu => None,
    };
    let run_once = |run: usize| -> Result<lloyd::RunResult, Cancelled> {
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        rng.set_stream(run as u64);
        let centers = match params.init {
            KMeansInit::KMeansPlusPlus => init::kmeans_plusplus(&xc, &x_sq, k, &mut rng, ctx)?,
            KMeansInit::Random => init::random_rows(&xc, k, &mut rng),
        };
        let report = |i: usize, inertia: f64| {
            let done = run as f32 + (i + 1) as f32 / max_iter.max(1) as f32;
            ctx.progress(ProgressEvent {
                stage: "kmeans",
                fraction: (done / n_init as f32).min(1.0),
                iteration: Some((i + 1) as u32),
                inertia: Some(inertia),
                documents: None,
            });
        };
        if let Some(g) = &gpu_lloyd {
            match g.run(&xc, centers.clone(), max_iter, tol_abs, ctx, report) {
                Ok(result) => return Ok(result),
                Err(gpu::Stop::Cancelled(c)) => return Err(c),
                // A device failure must not fail the run: redo this run on the CPU.
                Err(gpu::Stop::Gpu(e)) => {
                    tracing::warn!(error = %e, run, "k-means: GPU run failed, using the CPU path");
                }
            }
        }
        lloyd::run(&xc, &x_sq, centers, max_iter, tol_abs, ctx, report)
    };
    let mut best = run_once(0)?;
    for run in 1..n_init {
        let result = run_once(run)?;
        // Strictly lower only: on a tie the earlier run stays, as in scikit-learn.
        if result.inertia < best.inertia {
            best = result;
        }
    }

    let mut centers = best.centers;
    for j in 0..k {
        for (c, &m) in centers.row_mut(j).iter_mut().zip(&mean) {
            *c = (f64::from(*c) + m) as f32;
        }
    }
    Ok(KMeansFit {
        labels: best.labels,
        centers,
        inertia: best.inertia,
        n_iter: best.n_iter,
        distances: best.sq_dists.iter().map(|&v| v.sqrt()).collect(),
    })
}

/// Per-feature sums of `f(value)` over all rows, in f64, combined in fixed row chunks.
fn column_sums(x: &Matrix, f: impl Fn(f32) -> f64 + Sync) -> Vec<f64> {
    let n = x.rows();
    let d = x.cols();
    let partials: Vec<Vec<f64>> = (0..n.div_ceil(REDUCE_ROWS))
        .into_par_iter()
        .map(|b| {
            let mut s = vec![0f64; d];
            for i in b * REDUCE_ROWS..((b + 1) * REDUCE_ROWS).min(n) {
                for (acc, &v) in s.iter_mut().zip(x.row(i)) {
                    *acc += f(v);
                }
            }
            s
        })
        .collect();
    let mut total = vec![0f64; d];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// scikit-learn's `kmeans_plusplus` seeding alone: the `k` rows (`1 <= k <= rows`) greedy
/// k-means++ picks, on the centred data as the fit does.
pub(crate) fn kmeans_plusplus_rows(
    x: &Matrix,
    k: usize,
    rng: &mut ChaCha8Rng,
    ctx: &RunContext,
) -> Result<Vec<usize>, Cancelled> {
    let xc = centred(x, &column_means(x));
    let x_sq = row_sq_norms(&xc);
    init::kmeans_plusplus_rows(&xc, &x_sq, k, rng, ctx)
}

fn column_means(x: &Matrix) -> Vec<f64> {
    let n = x.rows().max(1) as f64;
    column_sums(x, f64::from)
        .into_iter()
        .map(|s| s / n)
        .collect()
}

/// Mean over features of the per-feature (population) variance of already-centred data.
fn mean_variance(xc: &Matrix) -> f64 {
    let n = xc.rows().max(1) as f64;
    let d = xc.cols().max(1) as f64;
    column_sums(xc, |v| f64::from(v) * f64::from(v))
        .iter()
        .map(|s| s / n)
        .sum::<f64>()
        / d
}

fn centred(x: &Matrix, mean: &[f64]) -> Matrix {
    let mut out = x.clone();
    let d = x.cols();
    if d > 0 {
        out.as_mut_slice()
            .par_chunks_mut(d)
            .with_min_len(BLOCK_ROWS)
            .for_each(|row| {
                for (v, &m) in row.iter_mut().zip(mean) {
                    *v = (f64::from(*v) - m) as f32;
                }
            });
    }
    out
}
