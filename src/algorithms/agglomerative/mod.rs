//! Agglomerative (hierarchical) clustering, faithful to scikit-learn 1.9.1
//! `AgglomerativeClustering` without connectivity, which builds the full tree with scipy
//! and cuts it:
//!
//! - ward: scipy's nearest-neighbour chain, over centroids instead of a distance matrix
//!   ([`chain::Centroids`]): O(N·d) memory, O(N²·d) time, bounded by
//!   [`params::WARD_MAX_DOCUMENTS`];
//! - complete, average: scipy's nearest-neighbour chain over the condensed distance matrix
//!   ([`chain::Condensed`]), bounded by [`params::MATRIX_MAX_DOCUMENTS`];
//! - single: the exact minimum spanning tree ([`single`]), unbounded;
//!
//! then scipy's relabelling and scikit-learn's `_hc_cut` ([`tree`]). Distances are exact
//! f64 from the f32 rows, as scipy computes them; cosine distance to an all-zero row is 1
//! (scikit-learn's `cosine_distances`; scipy would give NaN).
//!
//! The tree is scipy's up to rounding: merges at exactly equal heights, or heights within
//! rounding of each other (the ward distance from centroids rounds differently from
//! scipy's Lance–Williams update), may come in another order.
//!
//! Determinism: every parallel step is a per-row computation or a minimum under a total
//! order, so labels do not depend on the thread count.

mod chain;
mod params;
mod single;
#[cfg(test)]
mod tests;
mod tree;

pub use params::{
    AgglomerativeMetric, AgglomerativeParams, Cut, Linkage, MATRIX_MAX_DOCUMENTS,
    WARD_MAX_DOCUMENTS,
};

use crate::algorithms::ClusterLabels;
use crate::algorithms::neighbors::{Metric, Points};
use crate::model::{Cancelled, Matrix, RunContext};

const MERGE_STAGE: &str = "agglomerative:merge";
const DISTANCE_STAGE: &str = "agglomerative:distances";
const CUT_STAGE: &str = "agglomerative:cut";

/// Cluster the rows of `x`. `params` must have passed `check_against_data(x.rows())`, and
/// the caller enforces [`AgglomerativeParams::max_documents`]; with fewer than two rows
/// each row is its own cluster.
pub fn fit(
    x: &Matrix,
    params: &AgglomerativeParams,
    ctx: &RunContext,
) -> Result<ClusterLabels, Cancelled> {
    ctx.checkpoint()?;
    let n = x.rows();
    if n < 2 {
        return Ok(ClusterLabels {
            labels: (0..n as i64).collect(),
            n_clusters: n,
        });
    }
    let merges = merge_tree(x, params, ctx)?;
    ctx.checkpoint()?;
    ctx.stage(CUT_STAGE, 0.0);
    let k = match params.cut {
        Cut::Clusters(k) => k.clamp(1, n),
        Cut::Threshold(t) => tree::clusters_at_threshold(&merges, t),
    };
    let labels = tree::cut(n, &merges, k);
    ctx.stage(CUT_STAGE, 1.0);
    Ok(ClusterLabels {
        labels,
        n_clusters: k,
    })
}

/// The full tree (`n ≥ 2`), in scipy's format.
fn merge_tree(
    x: &Matrix,
    params: &AgglomerativeParams,
    ctx: &RunContext,
) -> Result<Vec<tree::Merge>, Cancelled> {
    let n = x.rows();
    let steps = match (params.linkage, params.metric) {
        (Linkage::Single, AgglomerativeMetric::Euclidean) => {
            single::boruvka(x, Metric::Euclidean, ctx)?
        }
        (Linkage::Single, AgglomerativeMetric::Cosine) => single::boruvka(x, Metric::Cosine, ctx)?,
        (Linkage::Single, AgglomerativeMetric::Manhattan) => single::prim_manhattan(x, ctx)?,
        // Validation admits ward with the Euclidean metric only.
        (Linkage::Ward, _) => {
            ctx.stage(MERGE_STAGE, 0.0);
            let mut space = chain::Centroids::new(n, x.cols(), x.as_slice());
            chain::nn_chain(n, &mut space, MERGE_STAGE, ctx)?
        }
        (Linkage::Complete | Linkage::Average, metric) => {
            let update = if params.linkage == Linkage::Complete {
                chain::Update::Complete
            } else {
                chain::Update::Average
            };
            ctx.stage(DISTANCE_STAGE, 0.0);
            let mut space = match metric {
                AgglomerativeMetric::Manhattan => chain::Condensed::new(
                    n,
                    update,
                    |i, j| single::manhattan(x.row(i), x.row(j)),
                    DISTANCE_STAGE,
                    ctx,
                )?,
                AgglomerativeMetric::Euclidean | AgglomerativeMetric::Cosine => {
                    let points = Points::new(
                        x,
                        if metric == AgglomerativeMetric::Cosine {
                            Metric::Cosine
                        } else {
                            Metric::Euclidean
                        },
                    );
                    chain::Condensed::new(n, update, |i, j| points.dist(i, j), DISTANCE_STAGE, ctx)?
                }
            };
            ctx.checkpoint()?;
            ctx.stage(MERGE_STAGE, 0.0);
            chain::nn_chain(n, &mut space, MERGE_STAGE, ctx)?
        }
    };
    Ok(tree::tree_from_steps(n, steps))
}
