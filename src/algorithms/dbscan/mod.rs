//! DBSCAN, giving scikit-learn 1.9.1's labels in O(N) memory.
//!
//! scikit-learn keeps every row's whole neighbourhood (O(N·neighbours), which grows to
//! O(N²) with a generous `eps`) and then runs a depth-first search from each unlabelled core
//! point in index order. The same labels follow from three streaming passes over the
//! neighbour engine, none of which stores a neighbourhood:
//!
//! 1. count each row's neighbours within `eps` (the row included) → core points;
//! 2. union every pair of core points within `eps` (a lock-free union-find whose roots are
//!    always the smallest index of their set) → clusters, numbered in the order of their
//!    smallest core index, which is the order scikit-learn's search starts them;
//! 3. a non-core row within `eps` of core points joins, of their clusters, the one that
//!    starts first — exactly the cluster whose search reaches it first in scikit-learn,
//!    since a search labels every unlabelled row it touches and never relabels one.

mod params;
#[cfg(test)]
mod tests;

pub use params::DbscanParams;

use std::sync::atomic::{AtomicU32, Ordering};

use crate::algorithms::ClusterLabels;
use crate::algorithms::neighbors::Points;
use crate::model::{Cancelled, Matrix, RunContext};

/// Cluster the rows of `x`.
pub fn fit(
    x: &Matrix,
    params: &DbscanParams,
    ctx: &RunContext,
) -> Result<ClusterLabels, Cancelled> {
    Ok(fit_with_cores(x, params, ctx)?.0)
}

/// [`fit`], also telling which rows are core samples (what places new vectors:
/// [`crate::algorithms::assign::PlacementRule::dbscan`]).
pub fn fit_with_cores(
    x: &Matrix,
    params: &DbscanParams,
    ctx: &RunContext,
) -> Result<(ClusterLabels, Vec<bool>), Cancelled> {
    ctx.checkpoint()?;
    let n = x.rows();
    let eps = params.eps;
    let min_samples = params.min_samples;
    let points = Points::new(x, params.metric);
    let all: Vec<u32> = (0..n as u32).collect();

    ctx.stage("dbscan:core_points", 0.0);
    let is_core = points.dense_rows(eps, min_samples, ctx)?;

    ctx.stage("dbscan:clusters", 0.0);
    let parent: Vec<AtomicU32> = (0..n as u32).map(AtomicU32::new).collect();
    let cores: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&i| is_core[i as usize])
        .collect();
    // A pair already in one set needs no exact distance: after the first few unions of a
    // dense region that is nearly every pair.
    points.scan_where(
        &cores,
        ctx,
        cores.clone(),
        |_| eps,
        |&q, j| is_core[j] && find(&parent, q) != find(&parent, j as u32),
        |&mut q, j, d| {
            if d <= eps {
                union(&parent, q, j as u32);
            }
        },
    )?;

    // Clusters in the order of their smallest core index: the roots, ascending.
    let mut cluster_of_root = vec![u32::MAX; n];
    let mut n_clusters = 0usize;
    let mut labels = vec![-1i64; n];
    for &c in &cores {
        let r = find(&parent, c) as usize;
        if cluster_of_root[r] == u32::MAX {
            cluster_of_root[r] = n_clusters as u32;
            n_clusters += 1;
        }
        labels[c as usize] = i64::from(cluster_of_root[r]);
    }

    ctx.stage("dbscan:border_points", 0.0);
    let others: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&i| !is_core[i as usize])
        .collect();
    let first_root = points.scan(
        &others,
        ctx,
        vec![u32::MAX; others.len()],
        |_| eps,
        |best, j, d| {
            if d <= eps && is_core[j] {
                *best = (*best).min(find(&parent, j as u32));
            }
        },
    )?;
    for (&i, &r) in others.iter().zip(&first_root) {
        if r != u32::MAX {
            labels[i as usize] = i64::from(cluster_of_root[r as usize]);
        }
    }
    ctx.stage("dbscan:border_points", 1.0);
    Ok((ClusterLabels { labels, n_clusters }, is_core))
}

/// Root of `i`'s set, halving the path on the way (a benign race: every write points a
/// node at one of its ancestors).
fn find(parent: &[AtomicU32], mut i: u32) -> u32 {
    loop {
        let p = parent[i as usize].load(Ordering::Acquire);
        if p == i {
            return i;
        }
        let gp = parent[p as usize].load(Ordering::Acquire);
        if gp != p {
            let _ = parent[i as usize].compare_exchange(p, gp, Ordering::AcqRel, Ordering::Acquire);
        }
        i = gp;
    }
}

/// Merge the sets of `a` and `b`, always hanging the larger root under the smaller, so a
/// root is the smallest index of its set whatever order the unions come in.
fn union(parent: &[AtomicU32], a: u32, b: u32) {
    loop {
        let (ra, rb) = (find(parent, a), find(parent, b));
        if ra == rb {
            return;
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        if parent[hi as usize]
            .compare_exchange(hi, lo, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
    }
}
