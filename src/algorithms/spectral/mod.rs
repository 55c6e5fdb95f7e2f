//! Spectral clustering, faithful to scikit-learn 1.9.1 `SpectralClustering`: an affinity
//! graph (dense rbf kernel, or the symmetrised k-nearest-neighbour connectivity), the
//! eigenvectors of its normalised Laplacian for the `n_components` smallest eigenvalues
//! ([`embedding`], [`eigen`]), then labels by k-means, `discretize` or `cluster_qr`
//! ([`assign`]).
//!
//! Where we differ: scikit-learn finds the eigenvectors with ARPACK in shift-invert mode
//! from a Mersenne-Twister start vector; we run a restarted block Krylov solver on
//! `I + D^-½ A D^-½` from a ChaCha8 start block. Both converge to the same invariant
//! subspace, so the embedding agrees up to the solver tolerance (and, within a repeated
//! eigenvalue, up to a rotation that none of the label assignments is sensitive to); the
//! random draws of k-means and `discretize` differ, so labels agree as partitions of
//! equal quality, not bit for bit.
//!
//! Memory: `nearest_neighbors` is O(N·(n_neighbors + basis)) and unbounded in N; `rbf`
//! keeps the dense N×N kernel and is bounded by [`RBF_MAX_DOCUMENTS`]
//! ([`SpectralParams::max_documents`]).
//!
//! Determinism: the neighbour lists are exact, every reduction over rows is summed in
//! fixed chunks, and the small dense factorisations run sequentially, so labels do not
//! depend on the thread count.

mod assign;
mod eigen;
mod embedding;
mod params;
#[cfg(test)]
mod tests;

pub use params::{Affinity, AssignLabels, EigenSolver, RBF_MAX_DOCUMENTS, SpectralParams};

use crate::algorithms::ClusterLabels;
use crate::model::{Cancelled, Matrix, ProgressEvent, RunContext};
use eigen::SymmetricOperator;

/// The rng stream of the eigensolver's start block (k-means and `discretize` draw from
/// other streams of the same seed).
const EIGEN_STREAM_SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// Cluster the rows of `x`. `params` must have passed `check_against_data(x.rows())` and,
/// for rbf, the [`SpectralParams::max_documents`] bound. Seeded by `ctx.seed` (the engine
/// resolves `random_state`, or 0, into it).
pub fn fit(
    x: &Matrix,
    params: &SpectralParams,
    ctx: &RunContext,
) -> Result<ClusterLabels, Cancelled> {
    ctx.checkpoint()?;
    let n = x.rows();
    if n < 2 {
        return Ok(ClusterLabels {
            labels: vec![0; n],
            n_clusters: n,
        });
    }
    // Beyond the data only if the caller skipped check_against_data: clamp, don't fail.
    let k = params.effective_n_components().clamp(1, n);
    let n_clusters = params.n_clusters.clamp(1, n);

    ctx.stage("spectral:affinity", 0.0);
    let (op, dd): (Box<dyn SymmetricOperator>, Vec<f64>) = match params.affinity {
        Affinity::NearestNeighbors => {
            let op = embedding::KnnOperator::new(x, params.n_neighbors.clamp(1, n), ctx)?;
            let dd = op.dd.clone();
            (Box::new(op), dd)
        }
        Affinity::Rbf => {
            let op = embedding::RbfOperator::new(x, params.gamma, ctx)?;
            let dd = op.dd.clone();
            (Box::new(op), dd)
        }
    };
    ctx.stage("spectral:affinity", 1.0);

    ctx.checkpoint()?;
    ctx.stage("spectral:eigen", 0.0);
    let pairs = eigen::largest(
        op.as_ref(),
        k,
        params.solver_tolerance(),
        ctx.seed ^ EIGEN_STREAM_SEED_MIX,
        ctx,
        |restart, fraction| {
            ctx.progress(ProgressEvent {
                stage: "spectral:eigen",
                fraction,
                iteration: Some(restart as u32),
                inertia: None,
                documents: None,
            })
        },
    )?;
    drop(op);
    tracing::debug!(
        restarts = pairs.restarts,
        residual = pairs.max_residual,
        smallest_laplacian_eigenvalue = pairs.values.first().map(|v| 2.0 - v),
        "spectral: eigenvectors found"
    );
    let maps = embedding::embedding(pairs.vectors.as_ref(), &dd);
    let k = pairs.vectors.ncols();

    ctx.checkpoint()?;
    ctx.stage("spectral:assign", 0.0);
    let mut labels = match params.assign_labels {
        AssignLabels::KMeans => assign::kmeans_labels(&maps, n, k, n_clusters, params.n_init, ctx)?,
        AssignLabels::Discretize => assign::discretize(&maps, n, k, ctx.seed),
        AssignLabels::ClusterQr => assign::cluster_qr(&maps, n, k),
    };
    let n_clusters = assign::compact(&mut labels);
    ctx.stage("spectral:assign", 1.0);
    Ok(ClusterLabels { labels, n_clusters })
}
