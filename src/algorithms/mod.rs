//! Clustering algorithms, one module each. Each validates its `algorithm_params` into a
//! checked parameter type before fitting, so the fitting code assumes valid input.

pub mod distance;
pub mod kmeans;
pub mod projection;
