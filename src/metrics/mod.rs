//! Cluster quality metrics (silhouette, Davies–Bouldin, Calinski–Harabasz) at
//! scikit-learn parity. Not computed by this version: responses leave `metrics` absent
//! rather than inventing numbers.
