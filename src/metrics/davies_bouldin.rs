//! Davies–Bouldin index, as scikit-learn 1.9.1's `davies_bouldin_score`: the mean over
//! clusters of the worst ratio `(s_i + s_j) / d(c_i, c_j)`, where `s` is the mean distance
//! of a cluster's members to its centroid.

use rayon::prelude::*;

use super::{ClusterStats, chunk_ranges};
use crate::model::{Cancelled, RunContext};

/// Clusters whose centroid distances are taken between two cancellation checkpoints:
/// the pass is O(k²·d), which matters for the many small clusters density algorithms make.
const CLUSTER_CHUNK: usize = 256;

/// scikit-learn's `isclose(v, 0)` (absolute tolerance 1e-8), which decides the
/// degenerate cases.
const ZERO_ATOL: f64 = 1e-8;

pub(super) fn score(stats: &ClusterStats, ctx: &RunContext) -> Result<f64, Cancelled> {
    let k = stats.k();
    let intra: Vec<f64> = (0..k)
        .map(|c| stats.dist_sums[c] / stats.counts[c].max(1) as f64)
        .collect();
    // Each cluster's worst ratio and whether any centroid distance from it is non-zero;
    // each entry depends on its own row only, so the pool size cannot change it.
    let mut rows: Vec<(f64, bool)> = Vec::with_capacity(k);
    for chunk in chunk_ranges(k, CLUSTER_CHUNK) {
        ctx.checkpoint()?;
        let part: Vec<(f64, bool)> = chunk
            .into_par_iter()
            .map(|i| {
                let ci = stats.centroid(i);
                let mut worst = 0f64;
                let mut any_apart = false;
                for j in 0..k {
                    let dij = stats
                        .centroid(j)
                        .iter()
                        .zip(ci)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                        .sqrt();
                    any_apart |= dij > ZERO_ATOL;
                    // scikit-learn sets zero centroid distances (the diagonal, coinciding
                    // centroids) to infinity, so those pairs contribute a ratio of 0.
                    if dij != 0.0 {
                        worst = worst.max((intra[i] + intra[j]) / dij);
                    }
                }
                (worst, any_apart)
            })
            .collect();
        rows.extend(part);
    }
    let all_tight = intra.iter().all(|&s| s.abs() <= ZERO_ATOL);
    let all_together = rows.iter().all(|&(_, apart)| !apart);
    if all_tight || all_together {
        return Ok(0.0);
    }
    Ok(rows.iter().map(|&(w, _)| w).sum::<f64>() / k as f64)
}
