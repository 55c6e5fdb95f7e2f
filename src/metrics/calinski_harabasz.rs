//! Calinski–Harabasz index, as scikit-learn 1.9.1's `calinski_harabasz_score`: the ratio
//! of between-cluster to within-cluster dispersion, `[B / (k − 1)] / [W / (n − k)]`.

use super::ClusterStats;

pub(super) fn score(stats: &ClusterStats) -> f64 {
    let k = stats.k();
    let n = stats.n();
    let between: f64 = (0..k)
        .map(|c| {
            let spread: f64 = stats
                .centroid(c)
                .iter()
                .zip(&stats.mean)
                .map(|(a, m)| (a - m) * (a - m))
                .sum();
            stats.counts[c] as f64 * spread
        })
        .sum();
    let within: f64 = stats.sq_dist_sums.iter().sum();
    // Every cluster collapsed onto its centroid: scikit-learn answers 1.0 rather than
    // dividing by zero.
    if within == 0.0 {
        return 1.0;
    }
    between * (n - k) as f64 / (within * (k as f64 - 1.0))
}
