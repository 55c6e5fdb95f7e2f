//! Mean shift with a flat kernel, giving scikit-learn 1.9.1's `MeanShift` labels.
//!
//! scikit-learn climbs one seed at a time, asking a KD-tree for the rows within
//! `bandwidth` of the seed's running mean. Here every still-moving seed climbs in lockstep:
//! each round is one batched ball query (f32 GEMM tiles that only filter, an exact f64
//! decision — see [`ball`]) that sums the rows within reach of each mean. The climb of a
//! seed is exactly scikit-learn's `_mean_shift_single_seed`; only the summation of the
//! mean differs (f64 in index order here, float32 in tree order there), which moves a mean
//! by float32 rounding at most.
//!
//! Post-processing follows `MeanShift.fit` step by step: identical final means collapse
//! (a dict keyed by the mean, the last seed's count winning), centres go by decreasing
//! (count, coordinates), a centre within `bandwidth` of a kept one is dropped, and each row
//! takes its nearest centre.

mod ball;
mod bandwidth;
mod params;
#[cfg(test)]
mod tests;

pub use bandwidth::{Seeds, bin_seeds, estimate_bandwidth};
pub use params::MeanShiftParams;

use std::collections::HashMap;

use rayon::prelude::*;

use crate::model::{ApiError, Cancelled, Matrix, ProgressEvent, RunContext};
use ball::Prepared;

/// Candidate centres checked together against the centres kept so far.
const DEDUP_CHUNK: usize = 1024;

/// A fitted mean shift.
#[derive(Debug, Clone, PartialEq)]
pub struct MeanShiftFit {
    /// Cluster of each row in `0..n_clusters`, or −1 (only with `cluster_all = false`) for
    /// a row farther than `bandwidth` from every centre.
    pub labels: Vec<i64>,
    pub n_clusters: usize,
    /// `cluster_centers_`, `n_clusters × d`, by decreasing number of rows within reach.
    pub centers: Matrix,
    /// The bandwidth used: the one given, or scikit-learn's estimate.
    pub bandwidth: f64,
    /// scikit-learn's `n_iter_`: the most iterations any seed took.
    pub n_iter: usize,
}

/// Why a mean shift produced no clustering.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeanShiftError {
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// No seed had a row within `bandwidth` (scikit-learn raises `ValueError`), or the
    /// grid left no seed at all (`min_bin_freq` above every cell's count).
    #[error(
        "no document was within bandwidth={bandwidth} of any of the {n_seeds} seeds; try a \
         larger bandwidth, a smaller min_bin_freq or bin_seeding=false"
    )]
    NoCenters { bandwidth: f64, n_seeds: usize },
}

impl From<MeanShiftError> for ApiError {
    fn from(e: MeanShiftError) -> Self {
        match e {
            MeanShiftError::Cancelled(c) => c.into(),
            e @ MeanShiftError::NoCenters { .. } => {
                ApiError::invalid_parameter("bandwidth", e.to_string())
            }
        }
    }
}

/// One seed's climb so far.
struct Climb {
    mean: Vec<f64>,
    /// Rows within reach at the last query.
    count: usize,
    iterations: usize,
    done: bool,
}

/// Cluster the rows of `x`.
pub fn fit(
    x: &Matrix,
    params: &MeanShiftParams,
    ctx: &RunContext,
) -> Result<MeanShiftFit, MeanShiftError> {
    ctx.checkpoint()?;
    let (n, d) = (x.rows(), x.cols());

    ctx.stage("mean_shift:bandwidth", 0.0);
    let prepared = Prepared::new(x);
    let bandwidth = match params.bandwidth {
        Some(b) => b,
        None => bandwidth::estimate_on(&prepared, ctx)?,
    };
    ctx.stage("mean_shift:bandwidth", 1.0);

    let seeds = if params.bin_seeding {
        bin_seeds(
            x,
            bandwidth,
            params.bandwidth.is_some(),
            params.min_bin_freq,
        )
    } else {
        Seeds::Rows
    };
    let mut climbs: Vec<Climb> = match seeds {
        Seeds::Rows => (0..n)
            .map(|i| Climb::new(x.row(i).iter().map(|&v| f64::from(v)).collect()))
            .collect(),
        Seeds::Points(p) => p.chunks(d.max(1)).map(|s| Climb::new(s.to_vec())).collect(),
    };
    let n_seeds = climbs.len();
    if n_seeds == 0 {
        return Err(MeanShiftError::NoCenters {
            bandwidth,
            n_seeds: 0,
        });
    }

    climb_all(&prepared, &mut climbs, bandwidth, params.max_iter, ctx)?;
    let n_iter = climbs.iter().map(|c| c.iterations).max().unwrap_or(0);

    ctx.stage("mean_shift:assign", 0.0);
    let centres = distinct_centres(&climbs);
    if centres.is_empty() {
        return Err(MeanShiftError::NoCenters { bandwidth, n_seeds });
    }
    let centres = drop_near_duplicates(centres, bandwidth, ctx)?;
    let k = centres.len() / d.max(1);
    ctx.stage("mean_shift:assign", 0.5);
    let nearest = prepared.nearest(&centres, ctx)?;
    let labels = nearest
        .iter()
        .map(|&(c, sq)| {
            // scikit-learn compares the distance itself (the root of the squared one).
            if params.cluster_all || sq.sqrt() <= bandwidth {
                c as i64
            } else {
                -1
            }
        })
        .collect();
    let centers = Matrix::from_vec(k, d, centres.iter().map(|&v| v as f32).collect())
        .ok_or(MeanShiftError::NoCenters { bandwidth, n_seeds })?;
    ctx.stage("mean_shift:assign", 1.0);
    Ok(MeanShiftFit {
        labels,
        n_clusters: k,
        centers,
        bandwidth,
        n_iter,
    })
}

impl Climb {
    fn new(mean: Vec<f64>) -> Climb {
        Climb {
            mean,
            count: 0,
            iterations: 0,
            done: false,
        }
    }
}

/// Run every seed's `_mean_shift_single_seed` to its end, all moving seeds per round.
fn climb_all(
    prepared: &Prepared<'_>,
    climbs: &mut [Climb],
    bandwidth: f64,
    max_iter: usize,
    ctx: &RunContext,
) -> Result<(), Cancelled> {
    let d = prepared.dim();
    let stop = 1e-3 * bandwidth;
    let total = climbs.len();
    let mut round = 0u32;
    loop {
        let active: Vec<usize> = (0..total).filter(|&s| !climbs[s].done).collect();
        ctx.progress(ProgressEvent {
            stage: "mean_shift:seeds",
            fraction: (total - active.len()) as f32 / total.max(1) as f32,
            iteration: Some(round),
            inertia: None,
            documents: None,
        });
        if active.is_empty() {
            return Ok(());
        }
        let mut queries = Vec::with_capacity(active.len() * d);
        for &s in &active {
            queries.extend_from_slice(&climbs[s].mean);
        }
        let sums = prepared.ball_scan(
            &queries,
            bandwidth,
            ctx,
            || (vec![0f64; d], 0usize),
            |(sum, count), j| {
                for (a, &v) in sum.iter_mut().zip(prepared.row(j)) {
                    *a += f64::from(v);
                }
                *count += 1;
            },
            |(sum, count), (s2, c2)| {
                for (a, b) in sum.iter_mut().zip(s2) {
                    *a += b;
                }
                *count += c2;
            },
        )?;
        for (&s, (sum, count)) in active.iter().zip(sums) {
            step(&mut climbs[s], sum, count, stop, max_iter);
        }
        round = round.saturating_add(1);
    }
}

/// One turn of scikit-learn's loop for one seed, given the rows within reach of its mean.
fn step(c: &mut Climb, sum: Vec<f64>, count: usize, stop: f64, max_iter: usize) {
    c.count = count;
    if count == 0 {
        c.done = true;
        return;
    }
    // The mean is float32 in scikit-learn (the mean of float32 rows).
    let mean: Vec<f64> = sum
        .iter()
        .map(|&s| f64::from((s / count as f64) as f32))
        .collect();
    let shift = mean
        .iter()
        .zip(&c.mean)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    c.mean = mean;
    if shift <= stop || c.iterations == max_iter {
        c.done = true;
    } else {
        c.iterations += 1;
    }
}

/// scikit-learn's `center_intensity_dict` sorted by decreasing `(count, coordinates)`:
/// seeds with no row within reach are gone, identical means are one entry whose count is
/// the last such seed's. Row-major centres.
fn distinct_centres(climbs: &[Climb]) -> Vec<(Vec<f64>, usize)> {
    let mut index: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut entries: Vec<(Vec<f64>, usize)> = Vec::new();
    for c in climbs.iter().filter(|c| c.count > 0) {
        // +0.0: −0.0 and 0.0 are one key, as in a Python tuple.
        let key: Vec<u64> = c.mean.iter().map(|v| (v + 0.0).to_bits()).collect();
        match index.get(&key) {
            Some(&e) => entries[e].1 = c.count,
            None => {
                index.insert(key, entries.len());
                entries.push((c.mean.clone(), c.count));
            }
        }
    }
    entries.sort_by(|a, b| {
        b.1.cmp(&a.1).then_with(|| {
            b.0.iter()
                .zip(&a.0)
                .map(|(p, q)| p.partial_cmp(q).unwrap_or(std::cmp::Ordering::Equal))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    entries
}

/// Keep a centre unless a kept centre lies within `bandwidth` (exact squared f64 ≤
/// bandwidth², scikit-learn's radius test); in order. Equivalent to scikit-learn's marking
/// loop, since the test is symmetric: a kept centre can never be marked by a later one.
/// Candidates go in chunks checked in parallel against the centres kept before the chunk,
/// then in order against those kept within it.
fn drop_near_duplicates(
    centres: Vec<(Vec<f64>, usize)>,
    bandwidth: f64,
    ctx: &RunContext,
) -> Result<Vec<f64>, Cancelled> {
    let r2 = bandwidth * bandwidth;
    let within = |a: &[f64], b: &[f64]| {
        let mut s = 0.0;
        for (&p, &q) in a.iter().zip(b) {
            let t = p - q;
            s += t * t;
        }
        s <= r2
    };
    let mut kept: Vec<Vec<f64>> = Vec::new();
    for chunk in centres.chunks(DEDUP_CHUNK) {
        ctx.checkpoint()?;
        let free: Vec<bool> = chunk
            .par_iter()
            .map(|(c, _)| !kept.iter().any(|k| within(k, c)))
            .collect();
        let before = kept.len();
        for ((c, _), free) in chunk.iter().zip(free) {
            if free && !kept[before..].iter().any(|k| within(k, c)) {
                kept.push(c.clone());
            }
        }
    }
    Ok(kept.into_iter().flatten().collect())
}
