//! Single linkage from the exact minimum spanning tree, without a pairwise matrix.
//! scikit-learn runs Prim's algorithm over the rows (`mst_linkage_core`) or scipy's
//! `mst_single_linkage`; any minimum spanning tree gives the same merges (only merges at
//! exactly equal heights may come in another order).
//!
//! - Euclidean and cosine: the HDBSCAN Borůvka tree with every core distance 0, where the
//!   mutual reachability is the plain distance (GEMM-filtered, exact f64 distances).
//! - Manhattan: Prim's algorithm over distances computed on the fly, in parallel over the
//!   rows outside the tree: O(N) memory, O(N²·d) time, as scikit-learn's.

use rayon::prelude::*;

use super::tree::Step;
use crate::algorithms::hdbscan::mst;
use crate::algorithms::neighbors::{Metric, Points};
use crate::model::{Cancelled, Matrix, RunContext};

/// Rows outside the tree per rayon task in Prim's scan.
const PRIM_CHUNK: usize = 2048;

pub const STAGE: &str = "agglomerative:mst";

/// The spanning tree's edges under `metric` (Euclidean or cosine), by Borůvka.
pub fn boruvka(x: &Matrix, metric: Metric, ctx: &RunContext) -> Result<Vec<Step>, Cancelled> {
    let n = x.rows();
    let points = Points::new(x, metric);
    ctx.stage(STAGE, 0.0);
    let knn = points.knn(mst::LIST_K, ctx)?;
    let reach = mst::Reachability::new(vec![0.0; n], 1.0, false);
    let mut edges = mst::minimum_spanning_tree(x, &points, &knn, &reach, ctx)?;
    // A fixed order for equal heights (the later sort is stable).
    edges.sort_by(|p, q| {
        p.weight
            .total_cmp(&q.weight)
            .then(p.a.cmp(&q.a))
            .then(p.b.cmp(&q.b))
    });
    Ok(edges
        .into_iter()
        .map(|e| Step {
            a: e.a,
            b: e.b,
            height: e.weight,
        })
        .collect())
}

/// Manhattan distance in f64, over four interleaved partial sums.
#[inline]
pub fn manhattan(a: &[f32], b: &[f32]) -> f64 {
    const LANES: usize = 4;
    let mut acc = [0.0f64; LANES];
    let split = a.len() - a.len() % LANES;
    for (p, q) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += (f64::from(p[l]) - f64::from(q[l])).abs();
        }
    }
    for (l, (&p, &q)) in a[split..].iter().zip(&b[split..]).enumerate() {
        acc[l] += (f64::from(p) - f64::from(q)).abs();
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// Prim's algorithm from row 0 under `dist`, as scikit-learn's `mst_linkage_core`: the
/// next row is the least (distance to the tree, index). Edges in the order added, each
/// to the tree row that is nearest.
pub fn prim(
    n: usize,
    dist: impl Fn(usize, usize) -> f64 + Sync,
    ctx: &RunContext,
) -> Result<Vec<Step>, Cancelled> {
    ctx.stage(STAGE, 0.0);
    // Outside the tree: (row, distance to the tree, nearest tree row).
    let mut outside: Vec<(u32, f64, u32)> = (1..n as u32).map(|j| (j, f64::INFINITY, 0)).collect();
    let mut steps = Vec::with_capacity(n.saturating_sub(1));
    let mut current = 0usize;
    let every = (n / 100).max(1);
    while !outside.is_empty() {
        ctx.checkpoint()?;
        let better = |a: (f64, u32, usize), b: (f64, u32, usize)| {
            if b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).is_lt() {
                b
            } else {
                a
            }
        };
        let none = (f64::INFINITY, u32::MAX, usize::MAX);
        let (d, j, pos) = outside
            .par_chunks_mut(PRIM_CHUNK)
            .enumerate()
            .map(|(c, chunk)| {
                let mut best = none;
                for (k, (j, to_tree, from)) in chunk.iter_mut().enumerate() {
                    let d = dist(current, *j as usize);
                    if d < *to_tree {
                        *to_tree = d;
                        *from = current as u32;
                    }
                    best = better(best, (*to_tree, *j, c * PRIM_CHUNK + k));
                }
                best
            })
            .reduce(|| none, better);
        let (_, _, from) = outside.swap_remove(pos);
        steps.push(Step {
            a: from,
            b: j,
            height: d,
        });
        current = j as usize;
        if steps.len() % every == 0 {
            ctx.stage(STAGE, steps.len() as f32 / (n - 1) as f32);
        }
    }
    Ok(steps)
}
