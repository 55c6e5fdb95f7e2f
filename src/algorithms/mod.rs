//! Clustering algorithms, one module each. Each validates its `algorithm_params` into a
//! checked parameter type before fitting, so the fitting code assumes valid input.

pub mod agglomerative;
pub mod assign;
pub mod attribute_grouping;
pub mod dbscan;
#[cfg(test)]
pub mod density_fixtures;
pub mod distance;
pub mod gaussian_mixture;
pub mod hdbscan;
pub mod kmeans;
pub mod mean_shift;
pub mod neighbors;
pub mod optics;
pub mod projection;
pub mod spectral;
#[cfg(test)]
pub mod test_support;

/// The answer of an algorithm that finds its own clusters (and may leave noise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLabels {
    /// Cluster of each row in `0..n_clusters`, or −1 for noise.
    pub labels: Vec<i64>,
    pub n_clusters: usize,
}
