//! Single linkage from the exact minimum spanning tree, without a pairwise matrix.
//! scikit-learn runs Prim's algorithm over the rows (`mst_linkage_core`) or scipy's
//! `mst_single_linkage`; any minimum spanning tree gives the same merges (only merges at
//! exactly equal heights may come in another order).
//!
//! - Euclidean and cosine: the HDBSCAN Borůvka tree with every core distance 0, where the
//!   mutual reachability is the plain distance (GEMM-filtered, exact f64 distances).
//! - Manhattan: Prim's algorithm over distances computed on the fly, in parallel over the
//!   rows outside the tree: O(N·d) memory (an f64 copy of the rows), O(N²·d) time, as
//!   scikit-learn's.

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
    let mut edges = mst::minimum_spanning_tree(x, &points, &knn, &reach, STAGE, ctx)?;
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
    lanes(
        a.iter()
            .zip(b)
            .map(|(&p, &q)| (f64::from(p) - f64::from(q)).abs()),
    )
}

/// [`manhattan`] of rows already in f64: the same sum, to the last bit.
#[inline(always)]
fn manhattan64(a: &[f64], b: &[f64]) -> f64 {
    lanes(a.iter().zip(b).map(|(&p, &q)| (p - q).abs()))
}

#[inline(always)]
fn lanes(terms: impl Iterator<Item = f64>) -> f64 {
    let mut acc = [0.0f64; 4];
    for (k, t) in terms.enumerate() {
        acc[k % 4] += t;
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// Least work (rows outside the tree × columns) for which a Prim step is split across
/// threads: below it waking the pool costs more than the step.
const PARALLEL_PRIM_WORK: usize = 1 << 15;

/// Prim's algorithm under the Manhattan distance from row 0, as scikit-learn's
/// `mst_linkage_core`: the next row is the least (distance to the tree, index). Edges in
/// the order added, each to the tree row that is nearest.
///
/// The rows outside the tree are kept in f64 (as scikit-learn converts them) in a
/// compact copy that follows the outside list, so every step streams through memory.
pub fn prim_manhattan(x: &Matrix, ctx: &RunContext) -> Result<Vec<Step>, Cancelled> {
    ctx.stage(STAGE, 0.0);
    let (n, d) = (x.rows(), x.cols());
    let mut current: Vec<f64> = x.row(0).iter().map(|&v| f64::from(v)).collect();
    // Outside the tree, in step: row, f64 values, distance to the tree, nearest tree row.
    let mut ids: Vec<u32> = (1..n as u32).collect();
    let mut rows: Vec<f64> = x.as_slice()[d..].iter().map(|&v| f64::from(v)).collect();
    let mut to_tree = vec![f64::INFINITY; n - 1];
    let mut from = vec![0u32; n - 1];
    let mut current_id = 0u32;
    let mut steps = Vec::with_capacity(n - 1);
    let every = (n / 100).max(1);
    let none = (f64::INFINITY, u32::MAX, usize::MAX);
    let better = |a: (f64, u32, usize), b: (f64, u32, usize)| {
        if b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).is_lt() {
            b
        } else {
            a
        }
    };
    while !ids.is_empty() {
        ctx.checkpoint()?;
        let step = |offset: usize, ids: &[u32], rows: &[f64], to: &mut [f64], fr: &mut [u32]| {
            let mut best = none;
            for (k, (t, f)) in to.iter_mut().zip(fr.iter_mut()).enumerate() {
                let row = &rows[k * d..(k + 1) * d];
                let dist = manhattan64(&current, row);
                if dist < *t {
                    *t = dist;
                    *f = current_id;
                }
                best = better(best, (*t, ids[k], offset + k));
            }
            best
        };
        let (dist, id, pos) = if ids.len() * d < PARALLEL_PRIM_WORK {
            step(0, &ids, &rows, &mut to_tree, &mut from)
        } else {
            ids.par_chunks(PRIM_CHUNK)
                .zip(rows.par_chunks(PRIM_CHUNK * d))
                .zip(to_tree.par_chunks_mut(PRIM_CHUNK))
                .zip(from.par_chunks_mut(PRIM_CHUNK))
                .enumerate()
                .map(|(c, (((i, r), t), f))| step(c * PRIM_CHUNK, i, r, t, f))
                .reduce(|| none, better)
        };
        steps.push(Step {
            a: from[pos],
            b: id,
            height: dist,
        });
        // The new tree row leaves the outside list; the last one takes its place.
        current.copy_from_slice(&rows[pos * d..(pos + 1) * d]);
        current_id = id;
        let last = ids.len() - 1;
        rows.copy_within(last * d..(last + 1) * d, pos * d);
        rows.truncate(last * d);
        ids.swap_remove(pos);
        to_tree.swap_remove(pos);
        from.swap_remove(pos);
        if steps.len() % every == 0 {
            ctx.stage(STAGE, steps.len() as f32 / (n - 1) as f32);
        }
    }
    Ok(steps)
}
