//! scipy's nearest-neighbour chain (`_hierarchy.nn_chain`), which scikit-learn calls for
//! ward, complete and average linkage, over two cluster spaces:
//!
//! - [`Condensed`]: scipy's own form, the condensed pairwise distance matrix updated by the
//!   Lance–Williams formula (complete, average); O(N²) memory, bounded by the caller;
//! - [`Centroids`]: ward without a matrix. The ward distance of clusters A and B is
//!   `sqrt(2·|A|·|B| / (|A| + |B|)) · ‖c_A − c_B‖` (what scipy's Lance–Williams update
//!   computes), so the chain only needs each cluster's centroid and size: O(N·d) memory.
//!
//! The chain follows scipy step for step: clusters are named by a row (a merge keeps the
//! higher of its two names), a chain starts at the lowest live name, and the nearest
//! neighbour is the lowest name among equals unless the chain's previous cluster is at
//! that distance (scipy keeps the previous on ties, which is what ends a chain).
//!
//! Determinism: each nearest-neighbour search is a parallel minimum under the total order
//! (distance, name), the same for any split; updates are per cluster.

use rayon::prelude::*;

use super::tree::Step;
use crate::model::{Cancelled, RunContext};

/// Live clusters scanned per rayon task.
const SCAN_CHUNK: usize = 1024;

/// Least work (live clusters × cost of one distance) for which a nearest-neighbour scan
/// is split across threads: below it a scan takes microseconds, less than waking the
/// pool costs.
const PARALLEL_SCAN_WORK: usize = 1 << 16;

/// Merges between progress reports: about a hundred per run.
fn report_every(n: usize) -> usize {
    (n / 100).max(1)
}

/// A set of clusters the chain can query and merge.
pub trait Space: Sync {
    /// The linkage distance between live clusters `a` and `b` (any monotone transform of
    /// it, consistently; [`Space::height`] maps it back).
    fn dist(&self, a: usize, b: usize) -> f64;
    /// The cost of one [`Space::dist`], in units of a matrix read.
    fn dist_cost(&self) -> usize;
    /// The nearest live cluster to `x`: least (distance, name).
    fn nearest(&self, x: usize, live: &[u32]) -> (f64, usize) {
        nearest_by(live, x, self.dist_cost(), |i| self.dist(x, i))
    }
    /// Merge `x` into `y` (`x < y`), at linkage distance `d`; `size` holds the sizes before
    /// the merge, `live` the live clusters (both still listed).
    fn merge(&mut self, x: usize, y: usize, d: f64, size: &[usize], live: &[u32]);
    /// The merge height scipy reports for a chain distance.
    fn height(&self, d: f64) -> f64 {
        d
    }
}

/// The `n − 1` merges of `n` clusters, in the order the chain finds them.
pub fn nn_chain<S: Space>(
    n: usize,
    space: &mut S,
    stage: &'static str,
    ctx: &RunContext,
) -> Result<Vec<Step>, Cancelled> {
    let mut live: Vec<u32> = (0..n as u32).collect();
    let mut size = vec![1usize; n];
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut steps = Vec::with_capacity(n.saturating_sub(1));
    let every = report_every(n);
    for k in 0..n.saturating_sub(1) {
        ctx.checkpoint()?;
        if chain.is_empty() {
            chain.push(live[0] as usize);
        }
        let (x, y, d) = loop {
            let x = chain[chain.len() - 1];
            let prev = (chain.len() > 1).then(|| chain[chain.len() - 2]);
            let (best_d, best) = space.nearest(x, &live);
            let (y, d) = match prev {
                Some(p) => {
                    let dp = space.dist(x, p);
                    if best_d < dp { (best, best_d) } else { (p, dp) }
                }
                None => (best, best_d),
            };
            if Some(y) == prev {
                break (x, y, d);
            }
            chain.push(y);
        };
        chain.truncate(chain.len() - 2);
        let (x, y) = (x.min(y), x.max(y));
        space.merge(x, y, d, &size, &live);
        size[y] += size[x];
        size[x] = 0;
        if let Ok(pos) = live.binary_search(&(x as u32)) {
            live.remove(pos);
        }
        steps.push(Step {
            a: x as u32,
            b: y as u32,
            height: space.height(d),
        });
        if (k + 1) % every == 0 {
            ctx.stage(stage, (k + 1) as f32 / (n - 1) as f32);
        }
    }
    Ok(steps)
}

/// Least (distance, name) over the clusters of `live` other than `x`.
fn nearest_by(
    live: &[u32],
    x: usize,
    cost: usize,
    dist: impl Fn(usize) -> f64 + Sync,
) -> (f64, usize) {
    let scan = |chunk: &[u32]| {
        chunk
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| i != x)
            .fold(NONE, |acc, i| better(acc, (dist(i), i)))
    };
    if live.len() * cost < PARALLEL_SCAN_WORK {
        scan(live)
    } else {
        live.par_chunks(SCAN_CHUNK)
            .map(scan)
            .reduce(|| NONE, better)
    }
}

const NONE: (f64, usize) = (f64::INFINITY, usize::MAX);

#[inline]
fn better(a: (f64, usize), b: (f64, usize)) -> (f64, usize) {
    if b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).is_lt() {
        b
    } else {
        a
    }
}

/// Lance–Williams update of the linkage distance from the merged cluster to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Complete,
    Average,
}

/// scipy's condensed matrix: the distance of rows `i < j` at
/// `n·i − i·(i+1)/2 + (j − i − 1)`.
pub struct Condensed {
    d: Vec<f64>,
    update: Update,
    /// `row[i] + j` is the index of `(i, j)`, `i < j`.
    row: Vec<usize>,
}

impl Condensed {
    /// `dist(i, j)` for every pair, filled in parallel (row by row).
    pub fn new(
        n: usize,
        update: Update,
        dist: impl Fn(usize, usize) -> f64 + Sync,
        stage: &'static str,
        ctx: &RunContext,
    ) -> Result<Self, Cancelled> {
        let mut d = vec![0f64; n * n.saturating_sub(1) / 2];
        let mut rows: Vec<(usize, &mut [f64])> = Vec::with_capacity(n);
        let mut rest = d.as_mut_slice();
        for i in 0..n {
            let (row, tail) = rest.split_at_mut(n - i - 1);
            rows.push((i, row));
            rest = tail;
        }
        // Rows shrink along the matrix; chunks of 64 balance well enough and let a
        // cancellation stop the fill within a few hundred thousand distances.
        let every = report_every(n / 64 + 1);
        rows.par_chunks_mut(64)
            .enumerate()
            .try_for_each(|(c, chunk)| {
                ctx.checkpoint()?;
                for (i, row) in chunk.iter_mut() {
                    let i = *i;
                    for (o, j) in row.iter_mut().zip(i + 1..n) {
                        *o = dist(i, j);
                    }
                }
                if c % every == 0 {
                    ctx.stage(stage, (c * 64) as f32 / n as f32);
                }
                Ok(())
            })?;
        // n·i − i·(i+1)/2 − i − 1, which is −1 at i = 0: wrapping, as j ≥ 1 there.
        let row = (0..n)
            .map(|i| (n * i).wrapping_sub(i * (i + 1) / 2 + i + 1))
            .collect();
        Ok(Condensed { d, update, row })
    }

    #[inline]
    fn index(&self, a: usize, b: usize) -> usize {
        let (i, j) = if a < b { (a, b) } else { (b, a) };
        self.row[i].wrapping_add(j)
    }
}

impl Space for Condensed {
    #[inline]
    fn dist(&self, a: usize, b: usize) -> f64 {
        self.d[self.index(a, b)]
    }

    fn dist_cost(&self) -> usize {
        1
    }

    /// Sequential, in name order (so a strict `<` keeps the lowest name among equals), in
    /// two runs: live clusters below `x` (a column of the condensed matrix) and above it
    /// (a stretch of row `x`), so no pair needs ordering.
    fn nearest(&self, x: usize, live: &[u32]) -> (f64, usize) {
        let split = live.partition_point(|&i| (i as usize) < x);
        let (below, above) = live.split_at(split);
        let mut best = NONE;
        for &i in below {
            let d = self.d[self.row[i as usize].wrapping_add(x)];
            if d < best.0 {
                best = (d, i as usize);
            }
        }
        let base = self.row[x];
        for &i in above.iter().filter(|&&i| i as usize != x) {
            let d = self.d[base.wrapping_add(i as usize)];
            if d < best.0 {
                best = (d, i as usize);
            }
        }
        best
    }

    fn merge(&mut self, x: usize, y: usize, _d: f64, size: &[usize], live: &[u32]) {
        let (nx, ny) = (size[x] as f64, size[y] as f64);
        for &i in live {
            let i = i as usize;
            if i == x || i == y {
                continue;
            }
            let (ix, iy) = (self.index(i, x), self.index(i, y));
            let (dx, dy) = (self.d[ix], self.d[iy]);
            self.d[iy] = match self.update {
                Update::Complete => dx.max(dy),
                Update::Average => (nx * dx + ny * dy) / (nx + ny),
            };
        }
    }
}

/// Ward over cluster centroids (f64, row-major) and sizes. Chain distances are squared
/// ward distances (the same order; no square root in the scan).
pub struct Centroids {
    dim: usize,
    c: Vec<f64>,
    size: Vec<f64>,
}

impl Centroids {
    pub fn new(rows: usize, dim: usize, data: &[f32]) -> Self {
        Centroids {
            dim,
            c: data.iter().map(|&v| f64::from(v)).collect(),
            size: vec![1.0; rows],
        }
    }

    fn centroid(&self, i: usize) -> &[f64] {
        &self.c[i * self.dim..(i + 1) * self.dim]
    }
}

impl Space for Centroids {
    fn dist_cost(&self) -> usize {
        self.dim
    }

    #[inline]
    fn dist(&self, a: usize, b: usize) -> f64 {
        let (na, nb) = (self.size[a], self.size[b]);
        let sq = sq_dist(self.centroid(a), self.centroid(b));
        2.0 * na * nb / (na + nb) * sq
    }

    fn merge(&mut self, x: usize, y: usize, _d: f64, _size: &[usize], _live: &[u32]) {
        let (nx, ny) = (self.size[x], self.size[y]);
        let total = nx + ny;
        let (head, tail) = self.c.split_at_mut(y * self.dim);
        let cx = &head[x * self.dim..(x + 1) * self.dim];
        for (cy, &cx) in tail[..self.dim].iter_mut().zip(cx) {
            *cy = (nx * cx + ny * *cy) / total;
        }
        self.size[y] = total;
        self.size[x] = 0.0;
    }

    fn height(&self, d: f64) -> f64 {
        d.sqrt()
    }
}

const LANES: usize = 4;

/// `‖a − b‖²` over four interleaved partial sums (vectorisable; symmetric in a, b to the
/// last bit, which the chain's termination relies on).
#[inline]
fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let split = a.len() - a.len() % LANES;
    for (p, q) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let t = p[l] - q[l];
            acc[l] += t * t;
        }
    }
    for (l, (&p, &q)) in a[split..].iter().zip(&b[split..]).enumerate() {
        let t = p - q;
        acc[l] += t * t;
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}
