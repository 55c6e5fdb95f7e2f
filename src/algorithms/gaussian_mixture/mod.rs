//! Gaussian mixture, faithful to scikit-learn 1.9.1 `GaussianMixture`
//! (`sklearn/mixture/_gaussian_mixture.py` and `_base.py`): EM from `n_init`
//! initialisations, each stopped when the lower bound (the mean log-likelihood) changes by
//! less than `tol`, the one with the highest lower bound kept, then one last E-step so that
//! the labels are those `fit_predict` gives. Computed in f64 (scikit-learn computes in the
//! dtype it is given; the reference fixtures give it float64).
//!
//! Memory: the `N × K` responsibilities, `K` covariance matrices (`K·d²`), and per worker a
//! block of rows and its products; the data is never copied whole.
//!
//! Determinism: every initialisation draws from its own ChaCha8 stream of `ctx.seed`, and
//! every sum over rows is cut into parts fixed by the problem's shape
//! ([`covariance::reduce_rows`]) and added in order, so the same input and seed give
//! bit-identical output whatever the rayon thread count. scikit-learn's NumPy draws cannot
//! be reproduced, so a given `random_state` starts from other initial parameters than
//! scikit-learn's; the fits are of the same quality (see the fixtures' seed rule).

mod covariance;
mod params;
#[cfg(test)]
mod tests;

pub use params::{CovarianceType, GaussianMixtureParams, MixtureInit};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::algorithms::kmeans::{self, KMeansInit, KMeansParams};
use crate::model::{ApiError, Cancelled, Matrix, ProgressEvent, RunContext};
use covariance::{BLOCK_ROWS, Data, Gaussians};

/// The result of a Gaussian-mixture fit.
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureFit {
    /// The most probable component of each row, in `0..n_components`.
    pub labels: Vec<i64>,
    /// The posterior probability of that component for each row, in `(0, 1]`.
    pub probabilities: Vec<f32>,
    /// `n_components × n_features` component means, in the frame of the input.
    pub means: Matrix,
    /// Mixing weights, summing to 1.
    pub weights: Vec<f64>,
    /// scikit-learn's `score(X)`: the mean over rows of the log-likelihood under the fitted
    /// mixture (from the final E-step).
    pub mean_log_likelihood: f64,
    /// The winning initialisation's last lower bound (scikit-learn's `lower_bound_`); −∞
    /// when `max_iter` is 0.
    pub lower_bound: f64,
    /// Whether the winning initialisation met `tol` within `max_iter` iterations.
    pub converged: bool,
    /// EM iterations of the winning initialisation.
    pub n_iter: usize,
}

/// scikit-learn's message, word for word, less its float32 remark (we compute in f64).
pub const ILL_DEFINED_COVARIANCE: &str = "Fitting the mixture model failed because some \
     components have ill-defined empirical covariance (for instance caused by singleton or \
     collapsed samples). Try to decrease the number of components, increase reg_covar, or \
     scale the input data.";

/// Why a fit gave no mixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MixtureError {
    #[error("the run was cancelled")]
    Cancelled,
    /// A covariance was not positive definite (scikit-learn raises `ValueError`). Depends
    /// on the data and on `reg_covar`, `n_components`; the request may be retried with
    /// other parameters.
    #[error("{}", ILL_DEFINED_COVARIANCE)]
    IllDefinedCovariance,
}

impl From<Cancelled> for MixtureError {
    fn from(_: Cancelled) -> Self {
        MixtureError::Cancelled
    }
}

impl From<MixtureError> for ApiError {
    /// Cancelled as every algorithm's cancellation; an ill-defined covariance as an
    /// `invalid_parameter` on `reg_covar` (the engine prefixes `config.algorithm_params.`),
    /// the parameter that most directly cures it.
    fn from(e: MixtureError) -> Self {
        match e {
            MixtureError::Cancelled => Cancelled.into(),
            MixtureError::IllDefinedCovariance => {
                ApiError::invalid_parameter("reg_covar", ILL_DEFINED_COVARIANCE)
            }
        }
    }
}

const STAGE_INIT: &str = "gaussian_mixture:init";
const STAGE_EM: &str = "gaussian_mixture:em";

/// Fit a Gaussian mixture to the rows of `x`.
///
/// Seeded by `ctx.seed` (the engine resolves `random_state`, or 0, into it): initialisation
/// `r` of `n_init` uses stream `r` of a ChaCha8 generator with that seed. The engine is
/// expected to have called [`GaussianMixtureParams::check_against_data`]; should
/// `n_components` still exceed the number of rows, the fit uses one component per row.
///
/// Progress: `gaussian_mixture:init` as each initialisation starts, and
/// `gaussian_mixture:em` after every EM iteration with `iteration: Some(i)`, fraction
/// `(run + i / max_iter) / n_init` (`i / max_iter` for one initialisation) and no inertia.
pub fn fit(
    x: &Matrix,
    params: &GaussianMixtureParams,
    ctx: &RunContext,
) -> Result<MixtureFit, MixtureError> {
    ctx.checkpoint()?;
    let n = x.rows();
    let d = x.cols();
    let k = params.n_components.min(n);
    // No rows, or rows without features (which scikit-learn refuses before fitting and
    // the engine never sends): nothing to fit, every row in component 0.
    if k == 0 || d == 0 {
        return Ok(MixtureFit {
            labels: vec![0; n],
            probabilities: vec![1.0; n],
            means: Matrix::zeros(k.min(1), d),
            weights: vec![1.0; k.min(1)],
            mean_log_likelihood: 0.0,
            lower_bound: f64::NEG_INFINITY,
            converged: false,
            n_iter: 0,
        });
    }
    let data = Data::new(x);
    let gram = match params.covariance_type {
        CovarianceType::Tied => Some(covariance::gram(&data, ctx)?),
        _ => None,
    };
    let m_step = |resp: &[f64], normalise_by_n: bool| -> Result<Gaussians, MixtureError> {
        let (nk, means, cov) = covariance::estimate_parameters(
            &data,
            resp,
            k,
            params.covariance_type,
            params.reg_covar,
            gram.as_deref(),
            ctx,
        )?;
        // scikit-learn divides the initial masses by n_samples, later ones by their sum.
        let total: f64 = if normalise_by_n {
            n as f64
        } else {
            nk.iter().sum()
        };
        let weights = nk.iter().map(|w| w / total).collect();
        let prec = covariance::precision_cholesky(&cov, d)
            .map_err(|_| MixtureError::IllDefinedCovariance)?;
        Ok(Gaussians::new(weights, means, prec, d))
    };

    let n_init = params.n_init.max(1);
    let max_iter = params.max_iter;
    let mut resp = vec![0f64; n * k];
    let mut best: Option<(Gaussians, f64, usize, bool)> = None;
    let mut max_lower_bound = f64::NEG_INFINITY;
    for run in 0..n_init {
        ctx.stage(STAGE_INIT, run as f32 / n_init as f32);
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        rng.set_stream(run as u64);
        initial_responsibilities(&data, x, params.init_params, k, &mut rng, &mut resp, ctx)?;
        let mut g = m_step(&resp, true)?;
        if max_iter == 0 {
            // As scikit-learn: the initial parameters of the last initialisation are kept.
            best = Some((g, f64::NEG_INFINITY, 0, false));
            continue;
        }
        let mut lower_bound = f64::NEG_INFINITY;
        let mut converged = false;
        let mut n_iter = 0;
        for i in 1..=max_iter {
            n_iter = i;
            let prev = lower_bound;
            lower_bound = e_step(&data, &g, &mut resp, ctx)?;
            g = m_step(&resp, false)?;
            let change = lower_bound - prev;
            tracing::debug!(run, iteration = i, lower_bound, "gaussian mixture EM");
            ctx.progress(ProgressEvent {
                stage: STAGE_EM,
                fraction: ((run as f32 + i as f32 / max_iter as f32) / n_init as f32).min(1.0),
                iteration: Some(i as u32),
                inertia: None,
                documents: None,
            });
            if change.abs() < params.tol {
                converged = true;
                break;
            }
        }
        if lower_bound > max_lower_bound || max_lower_bound == f64::NEG_INFINITY {
            max_lower_bound = lower_bound;
            best = Some((g, lower_bound, n_iter, converged));
        }
    }
    let Some((g, lower_bound, n_iter, converged)) = best else {
        // n_init ≥ 1 always sets `best`; an empty answer is still better than a panic.
        return Err(MixtureError::IllDefinedCovariance);
    };

    // The final E-step: the labels `fit_predict` returns, and `score(X)`.
    let mean_log_likelihood = e_step(&data, &g, &mut resp, ctx)?;
    let (labels, probabilities): (Vec<i64>, Vec<f32>) = resp
        .par_chunks(k)
        .with_min_len(BLOCK_ROWS)
        .map(|row| {
            let mut arg = 0;
            for (c, &v) in row.iter().enumerate() {
                if v > row[arg] {
                    arg = c;
                }
            }
            (arg as i64, row[arg] as f32)
        })
        .unzip();
    let mut means = Matrix::zeros(k, d);
    for c in 0..k {
        for (j, v) in means.row_mut(c).iter_mut().enumerate() {
            *v = (g.means[c * d + j] + data.mean[j]) as f32;
        }
    }
    Ok(MixtureFit {
        labels,
        probabilities,
        means,
        weights: g.weights,
        mean_log_likelihood,
        lower_bound,
        converged,
        n_iter,
    })
}

/// One E-step: `resp` becomes the posterior of every component for every row; returns the
/// mean over rows of `log Σ_k w_k N(x | μ_k, Σ_k)` (the lower bound).
fn e_step(
    data: &Data<'_>,
    g: &Gaussians,
    resp: &mut [f64],
    ctx: &RunContext,
) -> Result<f64, Cancelled> {
    let k = g.n_components();
    let d = data.cols();
    let n = data.rows();
    let sums = resp
        .par_chunks_mut(BLOCK_ROWS * k)
        .enumerate()
        .map(|(b, out)| {
            ctx.checkpoint()?;
            let start = b * BLOCK_ROWS;
            let m = out.len() / k;
            let mut xb = Vec::with_capacity(m * d);
            let mut scratch = Vec::new();
            data.block(start..start + m, &mut xb);
            g.weighted_log_prob(&xb, d, out, &mut scratch);
            let mut sum = 0.0;
            for row in out.chunks_exact_mut(k) {
                sum += log_sum_exp_normalise(row);
            }
            Ok(sum)
        })
        .collect::<Result<Vec<f64>, Cancelled>>()?;
    Ok(sums.iter().sum::<f64>() / n as f64)
}

/// Turns the weighted log densities `v` of one row into its posteriors and returns
/// `log Σ exp(v)`, shifted by the maximum as scikit-learn's `_logsumexp` is. The posterior
/// `exp(v − max) / Σ exp(v − max)` equals scikit-learn's `exp(v − logsumexp)` and needs
/// one exponential per value instead of two.
fn log_sum_exp_normalise(v: &mut [f64]) -> f64 {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        // No component gives the row a finite density: scikit-learn's NaN posteriors.
        v.fill(f64::NAN);
        return max;
    }
    let mut total = 0.0;
    for a in v.iter_mut() {
        *a = (*a - max).exp();
        total += *a;
    }
    for a in v.iter_mut() {
        *a /= total;
    }
    max + total.ln()
}

/// scikit-learn's `_initialize_parameters`: the responsibilities the first M-step starts
/// from, into `resp` (`N × K`).
fn initial_responsibilities(
    data: &Data<'_>,
    x: &Matrix,
    init: MixtureInit,
    k: usize,
    rng: &mut ChaCha8Rng,
    resp: &mut [f64],
    ctx: &RunContext,
) -> Result<(), Cancelled> {
    let n = data.rows();
    resp.fill(0.0);
    match init {
        MixtureInit::KMeans => {
            // scikit-learn: KMeans(n_clusters, n_init=1, random_state) with KMeans's other
            // defaults. The k-means run gets its own seed from this initialisation's
            // stream, and no progress sink (its events would read as ours).
            let km = KMeansParams {
                n_clusters: k,
                init: KMeansInit::KMeansPlusPlus,
                n_init: 1,
                max_iter: 300,
                tol: 1e-4,
                random_state: None,
            };
            let km_ctx = RunContext::new(rng.random::<u64>(), ctx.device)
                .with_cancel(ctx.cancel_token().clone());
            let fit = kmeans::fit(x, &km, &km_ctx)?;
            for (row, &l) in resp.chunks_exact_mut(k).zip(&fit.labels) {
                row[l as usize] = 1.0;
            }
        }
        MixtureInit::KMeansPlusPlus => {
            for (c, i) in kmeans::kmeans_plusplus_rows(x, k, rng, ctx)?
                .into_iter()
                .enumerate()
            {
                resp[i * k + c] = 1.0;
            }
        }
        MixtureInit::Random => {
            for row in resp.chunks_exact_mut(k) {
                for v in row.iter_mut() {
                    *v = rng.random::<f64>();
                }
                let s: f64 = row.iter().sum();
                for v in row.iter_mut() {
                    *v /= s;
                }
            }
        }
        MixtureInit::RandomFromData => {
            let rows = rand::seq::index::sample(rng, n, k);
            for (c, i) in rows.into_iter().enumerate() {
                resp[i * k + c] = 1.0;
            }
        }
    }
    Ok(())
}
