//! OPTICS as scikit-learn 1.9.1 computes it (`sklearn/cluster/_optics.py`): core
//! distances from a k-nearest-neighbour query, then the cluster ordering built one point
//! at a time by always taking the unprocessed point of least reachability, then a Xi or
//! DBSCAN extraction of clusters from the reachability plot.
//!
//! Like scikit-learn's (which keeps no heap), the ordering costs O(N²·d) distance work; it
//! holds O(N) memory. Each step is one parallel pass over the still-unprocessed points that
//! both relaxes their reachability from the new point and finds the next point.

mod extract;
mod params;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

pub use extract::{cluster_optics_dbscan, cluster_optics_xi};
pub use params::{ClusterMethod, NeighborAlgorithm, OpticsParams, SampleCount};

use super::ClusterLabels;
use super::neighbors::{Metric, Points, read_metric};
use crate::model::{Cancelled, Matrix, RunContext};

/// Coordinates of distance work per parallel task in the ordering pass (slots × columns):
/// enough to outweigh scheduling, small enough to spread a few thousand points over cores.
/// Never derived from the thread count, so neither are the results.
const CHUNK_WORK: usize = 1 << 16;
/// Fewest unprocessed points per parallel task.
const MIN_CHUNK: usize = 256;
/// Steps between cancellation checkpoints and progress reports in the ordering.
const PROGRESS_STEPS: usize = 256;

/// The reachability graph of `compute_optics_graph`, indexed by sample.
#[derive(Debug, Clone, PartialEq)]
pub struct OpticsGraph {
    /// Samples in cluster order.
    pub ordering: Vec<usize>,
    /// Distance at which each sample becomes core; infinite where it never does within
    /// `max_eps`.
    pub core_distances: Vec<f64>,
    /// Reachability of each sample when it was ordered; infinite for the first sample of
    /// each connected part.
    pub reachability: Vec<f64>,
    /// The sample each one was reached from, −1 for the seeds.
    pub predecessor: Vec<i64>,
}

/// Fit OPTICS and extract clusters with the configured `cluster_method`. Call
/// `params.check_against_data(x.rows())` first.
pub fn fit(
    x: &Matrix,
    params: &OpticsParams,
    ctx: &RunContext,
) -> Result<ClusterLabels, Cancelled> {
    Ok(fit_with_graph(x, params, ctx)?.0)
}

/// [`fit`], also giving the reachability graph, whose core distances place new vectors:
/// [`crate::algorithms::assign::PlacementRule::optics`].
pub fn fit_with_graph(
    x: &Matrix,
    params: &OpticsParams,
    ctx: &RunContext,
) -> Result<(ClusterLabels, OpticsGraph), Cancelled> {
    let graph = compute_optics_graph(x, params, ctx)?;
    ctx.stage("optics:extract", 0.0);
    let n = x.rows();
    let (labels, n_clusters) = match params.cluster_method {
        ClusterMethod::Dbscan { eps } => cluster_optics_dbscan(
            &graph.reachability,
            &graph.core_distances,
            &graph.ordering,
            eps,
        ),
        ClusterMethod::Xi {
            xi,
            predecessor_correction,
            min_cluster_size,
        } => {
            let min_samples = params.min_samples.resolve(n);
            let min_cluster_size = min_cluster_size.map_or(min_samples, |m| m.resolve(n));
            let (labels, n_clusters, _) = cluster_optics_xi(
                &graph.reachability,
                &graph.predecessor,
                &graph.ordering,
                min_samples,
                min_cluster_size,
                xi,
                predecessor_correction,
            );
            (labels, n_clusters)
        }
    };
    ctx.stage("optics:extract", 1.0);
    Ok((ClusterLabels { labels, n_clusters }, graph))
}

/// scikit-learn's `compute_optics_graph`, with the same rounding and tie rules.
pub fn compute_optics_graph(
    x: &Matrix,
    params: &OpticsParams,
    ctx: &RunContext,
) -> Result<OpticsGraph, Cancelled> {
    ctx.checkpoint()?;
    let n = x.rows();
    let max_eps = params.max_eps;
    let points = Points::new(x, params.metric);

    ctx.stage("optics:core_distances", 0.0);
    let k = params.min_samples.resolve(n);
    // Only the k-th distance is kept: k may be a large fraction of N.
    let kth = if k == 0 {
        vec![f64::INFINITY; n]
    } else {
        points.kth_distances(k, ctx)?
    };
    let core_distances: Vec<f64> = kth
        .into_iter()
        .map(|d| round_like_numpy(if d > max_eps { f64::INFINITY } else { d }))
        .collect();
    ctx.stage("optics:core_distances", 1.0);

    let mut reachability = vec![f64::INFINITY; n];
    let mut predecessor = vec![-1i64; n];
    let mut ordering = Vec::with_capacity(n);
    // The unprocessed points, ascending, with their current reachability and predecessor
    // alongside so that parallel chunks own disjoint slices. A point's values are final
    // when it is processed (only unprocessed points are ever relaxed), so they are copied
    // out then. Processed slots are dropped in bulk once they are half the list.
    let mut alive = Alive::new(n);
    let chunk = (CHUNK_WORK / x.cols().max(1)).max(MIN_CHUNK);
    let mut next = (n > 0).then_some(0usize);
    ctx.stage("optics:ordering", 0.0);
    while let Some(slot) = next {
        let step = ordering.len();
        if step % PROGRESS_STEPS == 0 && step > 0 {
            ctx.checkpoint()?;
            ctx.stage("optics:ordering", step as f32 / n as f32);
        }
        let point = alive.index[slot] as usize;
        reachability[point] = alive.reach[slot];
        predecessor[point] = alive.pred[slot];
        ordering.push(point);
        alive.kill(slot);
        let core = core_distances[point];
        next = if core.is_finite() {
            alive.relax_and_argmin(|j| points.dist(point, j), point, core, max_eps, chunk)
        } else {
            alive.argmin()
        };
        if alive.dead * 2 > alive.index.len() {
            alive.compact();
            next = next.map(|s| alive.remap(s));
        }
    }
    ctx.stage("optics:ordering", 1.0);
    Ok(OpticsGraph {
        ordering,
        core_distances,
        reachability,
        predecessor,
    })
}

/// Unprocessed points in ascending index order, struct-of-arrays so that chunks of slots
/// can be relaxed in parallel.
struct Alive {
    index: Vec<u32>,
    reach: Vec<f64>,
    pred: Vec<i64>,
    live: Vec<bool>,
    dead: usize,
    /// Slot positions before the last compaction, for `remap`.
    old_to_new: Vec<usize>,
}

/// Best candidate of a chunk: least reachability, then least sample index (slots are in
/// index order, so the first slot wins a tie). Infinite reachabilities take part, so a
/// fresh seed is the smallest unprocessed index, as in scikit-learn.
#[derive(Clone, Copy)]
struct Candidate {
    reach: f64,
    slot: usize,
}

fn better(a: Option<Candidate>, b: Option<Candidate>) -> Option<Candidate> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.reach < x.reach { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Alive {
    fn new(n: usize) -> Self {
        Alive {
            index: (0..n as u32).collect(),
            reach: vec![f64::INFINITY; n],
            pred: vec![-1; n],
            live: vec![true; n],
            dead: 0,
            old_to_new: Vec::new(),
        }
    }

    fn kill(&mut self, slot: usize) {
        self.live[slot] = false;
        self.dead += 1;
    }

    /// scikit-learn's `_set_reach_dist` for `point` fused with the next step's argmin:
    /// every unprocessed neighbour within `max_eps` gets `round(max(dist, core))` as its
    /// reachability if that is strictly smaller, with `point` as predecessor.
    fn relax_and_argmin(
        &mut self,
        dist: impl Fn(usize) -> f64 + Sync,
        point: usize,
        core: f64,
        max_eps: f64,
        chunk_len: usize,
    ) -> Option<usize> {
        let pred = point as i64;
        let chunk = |base: usize,
                     index: &[u32],
                     reach: &mut [f64],
                     preds: &mut [i64],
                     live: &[bool]|
         -> Option<Candidate> {
            let mut best: Option<Candidate> = None;
            for s in 0..index.len() {
                if !live[s] {
                    continue;
                }
                let d = dist(index[s] as usize);
                if d <= max_eps {
                    let r = round_like_numpy(d.max(core));
                    if r < reach[s] {
                        reach[s] = r;
                        preds[s] = pred;
                    }
                }
                if best.is_none_or(|b| reach[s] < b.reach) {
                    best = Some(Candidate {
                        reach: reach[s],
                        slot: base + s,
                    });
                }
            }
            best
        };
        let len = self.index.len();
        let best = if len <= chunk_len {
            chunk(0, &self.index, &mut self.reach, &mut self.pred, &self.live)
        } else {
            self.index
                .par_chunks(chunk_len)
                .zip(self.reach.par_chunks_mut(chunk_len))
                .zip(self.pred.par_chunks_mut(chunk_len))
                .zip(self.live.par_chunks(chunk_len))
                .enumerate()
                .map(|(c, (((index, reach), preds), live))| {
                    chunk(c * chunk_len, index, reach, preds, live)
                })
                // Chunks combine in slot order, keeping the earlier one on ties.
                .reduce(|| None, better)
        };
        best.map(|b| b.slot)
    }

    /// The next point when the current one is not core and relaxes nothing.
    fn argmin(&self) -> Option<usize> {
        let mut best: Option<Candidate> = None;
        for s in 0..self.index.len() {
            if self.live[s] && best.is_none_or(|b| self.reach[s] < b.reach) {
                best = Some(Candidate {
                    reach: self.reach[s],
                    slot: s,
                });
            }
        }
        best.map(|b| b.slot)
    }

    fn compact(&mut self) {
        self.old_to_new.clear();
        let mut w = 0;
        for s in 0..self.index.len() {
            self.old_to_new.push(w);
            if self.live[s] {
                self.index[w] = self.index[s];
                self.reach[w] = self.reach[s];
                self.pred[w] = self.pred[s];
                w += 1;
            }
        }
        self.index.truncate(w);
        self.reach.truncate(w);
        self.pred.truncate(w);
        self.live.clear();
        self.live.resize(w, true);
        self.dead = 0;
    }

    fn remap(&self, old_slot: usize) -> usize {
        self.old_to_new[old_slot]
    }
}

/// `np.around(x, decimals=np.finfo(np.float64).precision)`, i.e. 15 decimals: NumPy
/// scales by 1e15, rounds half to even and scales back. scikit-learn applies it to core
/// and reachability distances, which turns near-equal distances into exact ties that the
/// ordering then breaks by index; doing the same operations reproduces those ties.
fn round_like_numpy(x: f64) -> f64 {
    const SCALE: f64 = 1e15;
    (x * SCALE).round_ties_even() / SCALE
}
