//! HDBSCAN, faithful to scikit-learn 1.9.1 `HDBSCAN`: core distances from the exact
//! `min_samples` nearest neighbours, the exact minimum spanning tree of the
//! mutual-reachability graph (Borůvka over the neighbour lists, [`mst`]), then scikit-learn's
//! single-linkage, condensing, stability and selection steps ([`tree`]).
//!
//! Where scikit-learn's answer depends on an arbitrary order we cannot reproduce, we fix one:
//! its spanning tree comes from Prim's algorithm and is sorted with NumPy's unstable
//! argsort, so merges at exactly equal weights may come in a different order here (ours:
//! by weight, then by the lower and the higher point index). Merges at equal heights give
//! the same partitions at every height either way; only how points falling out at that very
//! height are attributed can differ.
//!
//! Determinism: the spanning tree is unique under that total order, and every parallel step
//! computes per point or per query, so labels do not depend on the thread count.

mod bounds;
pub(crate) mod mst;
mod params;
#[cfg(test)]
mod tests;
mod tree;

pub use params::{HdbscanAlgorithm, HdbscanParams, SelectionMethod};

use crate::algorithms::ClusterLabels;
use crate::algorithms::neighbors::Points;
use crate::model::{Cancelled, Matrix, RunContext};

/// Cluster the rows of `x`. `params` must have passed `check_against_data(x.rows())`; with
/// fewer than two rows every row is noise.
pub fn fit(
    x: &Matrix,
    params: &HdbscanParams,
    ctx: &RunContext,
) -> Result<ClusterLabels, Cancelled> {
    Ok(fit_with_core_distances(x, params, ctx)?.0)
}

/// [`fit`], also giving every row's core distance (to its `min_samples`-th nearest row,
/// itself included; not scaled by `alpha`), which places new vectors:
/// [`crate::algorithms::assign::PlacementRule::hdbscan`]. With fewer than two rows, every
/// row is noise and its core distance infinite.
pub fn fit_with_core_distances(
    x: &Matrix,
    params: &HdbscanParams,
    ctx: &RunContext,
) -> Result<(ClusterLabels, Vec<f64>), Cancelled> {
    ctx.checkpoint()?;
    let n = x.rows();
    if n < 2 {
        let labels = ClusterLabels {
            labels: vec![-1; n],
            n_clusters: 0,
        };
        return Ok((labels, vec![f64::INFINITY; n]));
    }
    let points = Points::new(x, params.metric);
    let min_samples = params.effective_min_samples().clamp(1, n);

    ctx.stage("hdbscan:knn", 0.0);
    let knn = points.knn(min_samples.clamp(mst::LIST_K, mst::MAX_LIST_K), ctx)?;
    let core = if min_samples <= knn.k {
        (0..n)
            .map(|i| knn.distances_of(i)[min_samples - 1])
            .collect()
    } else {
        points.kth_distances(min_samples, ctx)?
    };
    let reach = mst::Reachability::new(
        core.clone(),
        params.alpha,
        params.algorithm == HdbscanAlgorithm::Brute,
    );

    ctx.stage("hdbscan:mst", 0.0);
    let mut edges = mst::minimum_spanning_tree(x, &points, &knn, &reach, "hdbscan:mst", ctx)?;
    drop(knn);
    edges.sort_by(|x, y| {
        x.weight
            .total_cmp(&y.weight)
            .then(x.a.cmp(&y.a))
            .then(x.b.cmp(&y.b))
    });

    ctx.checkpoint()?;
    ctx.stage("hdbscan:tree", 0.0);
    let hierarchy = tree::single_linkage(n, &edges);
    let condensed = tree::condense_tree(&hierarchy, params.min_cluster_size);
    let (labels, n_clusters) = tree::labels(
        &condensed,
        n,
        tree::Selection {
            method: params.cluster_selection_method,
            allow_single_cluster: params.allow_single_cluster,
            epsilon: params.cluster_selection_epsilon,
            max_cluster_size: params.max_cluster_size,
        },
    );
    ctx.stage("hdbscan:tree", 1.0);
    Ok((ClusterLabels { labels, n_clusters }, core))
}
