//! Placing vectors into an existing clustering: the rows a run left out of its sample, and
//! new vectors sent later, each get the cluster a fitted model gives them, or noise.
//!
//! The rules, by algorithm (this is their user-facing definition):
//!
//! - **k-means, Gaussian mixture, mean-shift** ([`PlacementRule::NearestCentroid`]): the
//!   cluster of the nearest centroid (Euclidean, in the clustered space, so after
//!   normalisation when the run normalised); always a cluster, never noise. Gaussian
//!   mixture placements are hard: they carry no probability. The ranking is that of the
//!   fit's own assignment step (f32 distances from one GEMM per block, or the GPU kernel
//!   on a GPU run); on an exact tie the lowest cluster index wins.
//! - **DBSCAN**: the cluster of the nearest *core sample* if it lies within `eps` of it
//!   (under the run's metric), else noise — a new vector is a border point of the
//!   cluster whose core reaches it. Of several cores within `eps` the nearest decides
//!   (DBSCAN itself would take the cluster its search reached first).
//! - **HDBSCAN**: the cluster of the nearest clustered (non-noise) sample point if the
//!   vector lies within that point's core distance (its distance to its `min_samples`-th
//!   nearest sample, itself included, as HDBSCAN computes it; unscaled by `alpha`), else
//!   noise: the vector is then no farther from that point than the point's own densest
//!   neighbourhood reaches, so its mutual reachability to it is the point's core distance.
//! - **OPTICS**, Xi extraction: as HDBSCAN, over every clustered sample point whose core
//!   distance is finite (at most `max_eps`).
//!   **OPTICS**, `cluster_method="dbscan"` at `eps`: as DBSCAN at `eps` over the
//!   clustered points that are core at `eps` (core distance ≤ `eps`): the extraction
//!   labels a point by whether its reachability — `max(core distance, distance)` from a
//!   point processed before it — is within `eps`, which for a new vector is exactly being
//!   within `eps` of a point that is core at `eps`.
//! - **agglomerative, spectral**: the cluster of the nearest clustered sample point (1-NN
//!   in the sample), always a cluster; under agglomerative's metric (euclidean, cosine or
//!   manhattan), Euclidean for spectral.
//!
//! Nearest means least exact distance, computed in f64 from the f32 rows as the density
//! algorithms compute it (cosine distance `1 − cos`, with an all-zero row at distance 1 from
//! everything, as scikit-learn's `cosine_distances`); ties go to the lowest sample index.
//! The radius test is `distance ≤ radius`. Every placement's `distance` is the Euclidean
//! distance to the centroid of its cluster, as a member's `distance_to_centroid`.
//!
//! The core search filters with blocked GEMM tiles in f32 whose error is bounded, and
//! decides on exact f64 distances, so its answer equals a brute-force f64 search; manhattan
//! has no GEMM form and is measured exactly throughout. Memory is one
//! `QUERY_BLOCK × BLOCK_ROWS` tile per worker, never a batch × cores matrix; every row is
//! handled by one task, so answers do not depend on the thread count.

#[cfg(test)]
mod tests;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::algorithms::agglomerative::{AgglomerativeMetric, AgglomerativeParams};
use crate::algorithms::dbscan::DbscanParams;
use crate::algorithms::distance::{
    BLOCK_ROWS, block_range, n_blocks, nearest_centers, row_sq_norms,
};
use crate::algorithms::hdbscan::HdbscanParams;
use crate::algorithms::neighbors::{LANES, Metric, combine_lanes, lane_sum};
use crate::algorithms::optics::{ClusterMethod, OpticsParams};
use crate::gpu::{self, GpuError, GpuMatrix};
use crate::model::{ApiError, ApiResult, Cancelled, DeviceKind, Matrix, RunContext};

/// Query rows handled together against each block of cores.
const QUERY_BLOCK: usize = 256;

/// Rows per parallel task in the per-row passes (distances to centroids, centring).
const ROW_TASK: usize = 1024;

/// The distance under which a core search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignMetric {
    Euclidean,
    /// `1 − cos(a, b)`, as scikit-learn's `cosine_distances`.
    Cosine,
    /// Sum of absolute differences.
    Manhattan,
}

impl AssignMetric {
    /// The canonical names and scikit-learn's aliases (`l2`, `l1`, `cityblock`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "euclidean" | "l2" => Some(AssignMetric::Euclidean),
            "cosine" => Some(AssignMetric::Cosine),
            "manhattan" | "l1" | "cityblock" => Some(AssignMetric::Manhattan),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AssignMetric::Euclidean => "euclidean",
            AssignMetric::Cosine => "cosine",
            AssignMetric::Manhattan => "manhattan",
        }
    }
}

impl From<Metric> for AssignMetric {
    fn from(m: Metric) -> Self {
        match m {
            Metric::Euclidean => AssignMetric::Euclidean,
            Metric::Cosine => AssignMetric::Cosine,
        }
    }
}

impl From<AgglomerativeMetric> for AssignMetric {
    fn from(m: AgglomerativeMetric) -> Self {
        match m {
            AgglomerativeMetric::Euclidean => AssignMetric::Euclidean,
            AgglomerativeMetric::Cosine => AssignMetric::Cosine,
            AgglomerativeMetric::Manhattan => AssignMetric::Manhattan,
        }
    }
}

/// How a fitted clustering places a new vector (the module documentation defines each
/// algorithm's rule).
#[derive(Debug, Clone, PartialEq)]
pub enum PlacementRule {
    /// k-means, Gaussian mixture, mean-shift: the nearest centroid (Euclidean, in the
    /// clustered space), always a cluster.
    NearestCentroid,
    /// Density and graph algorithms: the nearest "core" sample row `rows[i]` (ascending;
    /// its cluster is that row's label) if the new vector lies within `radius[i]` of it
    /// under `metric`, else noise. A radius of `f64::INFINITY` always places.
    NearestCore {
        rows: Vec<u32>,
        radius: Vec<f64>,
        metric: AssignMetric,
    },
}

impl PlacementRule {
    /// DBSCAN: the core samples (`is_core`, one per sample row), within `eps`.
    pub fn dbscan(labels: &[i64], is_core: &[bool], params: &DbscanParams) -> Self {
        Self::clustered(
            labels,
            |i| {
                is_core
                    .get(i)
                    .copied()
                    .unwrap_or(false)
                    .then_some(params.eps)
            },
            params.metric.into(),
        )
    }

    /// HDBSCAN: every clustered sample, within its core distance (one per sample row).
    pub fn hdbscan(labels: &[i64], core_distances: &[f64], params: &HdbscanParams) -> Self {
        Self::clustered(
            labels,
            |i| core_distances.get(i).copied().filter(|d| d.is_finite()),
            params.metric.into(),
        )
    }

    /// OPTICS: Xi extraction, every clustered sample with a finite core distance, within
    /// it; DBSCAN extraction at `eps`, the clustered samples core at `eps`, within `eps`.
    pub fn optics(labels: &[i64], core_distances: &[f64], params: &OpticsParams) -> Self {
        let core = |i: usize| core_distances.get(i).copied().unwrap_or(f64::INFINITY);
        match params.cluster_method {
            ClusterMethod::Dbscan { eps } => Self::clustered(
                labels,
                |i| (core(i) <= eps).then_some(eps),
                params.metric.into(),
            ),
            ClusterMethod::Xi { .. } => Self::clustered(
                labels,
                |i| Some(core(i)).filter(|d| d.is_finite()),
                params.metric.into(),
            ),
        }
    }

    /// Agglomerative: 1-NN among the clustered samples under the run's metric.
    pub fn agglomerative(labels: &[i64], params: &AgglomerativeParams) -> Self {
        Self::clustered(labels, |_| Some(f64::INFINITY), params.metric.into())
    }

    /// Spectral: 1-NN among the clustered samples, Euclidean.
    pub fn spectral(labels: &[i64]) -> Self {
        Self::clustered(labels, |_| Some(f64::INFINITY), AssignMetric::Euclidean)
    }

    /// The rows with a label (not noise) and a radius, ascending.
    fn clustered(
        labels: &[i64],
        radius_of: impl Fn(usize) -> Option<f64>,
        metric: AssignMetric,
    ) -> Self {
        let (rows, radius) = labels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l >= 0)
            .filter_map(|(i, _)| radius_of(i).map(|r| (i as u32, r)))
            .unzip();
        PlacementRule::NearestCore {
            rows,
            radius,
            metric,
        }
    }

    /// The assigner of a fit: `sample` and `labels` are the rows the rule was fitted on and
    /// their labels, `centroids` the clusters' centroids (row `c` for cluster `c`). Fails,
    /// as an internal error, when they do not fit together (a row or label out of range).
    pub fn assigner(
        &self,
        sample: &Matrix,
        labels: &[i64],
        centroids: Matrix,
    ) -> ApiResult<Assigner> {
        let rule = match self {
            PlacementRule::NearestCentroid => Rule::NearestCentroid,
            PlacementRule::NearestCore {
                rows,
                radius,
                metric,
            } => {
                let d = sample.cols();
                let mut points = Vec::with_capacity(rows.len() * d);
                let mut clusters = Vec::with_capacity(rows.len());
                for &r in rows {
                    let r = r as usize;
                    let label = labels
                        .get(r)
                        .and_then(|&l| u32::try_from(l).ok())
                        .filter(|_| r < sample.rows())
                        .ok_or_else(|| {
                            ApiError::internal(format!(
                                "core row {r} is not a clustered row of the {} sampled",
                                sample.rows()
                            ))
                        })?;
                    points.extend_from_slice(sample.row(r));
                    clusters.push(label);
                }
                let points = Matrix::from_vec(rows.len(), d, points)
                    .ok_or_else(|| ApiError::internal("core rows of uneven width"))?;
                Rule::NearestCore(Cores {
                    points,
                    clusters,
                    radius: radius.clone(),
                    metric: *metric,
                })
            }
        };
        Assigner::new(centroids, rule)
    }
}

/// The core points of a [`PlacementRule::NearestCore`] rule, gathered: row `i` of
/// `points` belongs to cluster `clusters[i]` and places vectors within `radius[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cores {
    pub points: Matrix,
    pub clusters: Vec<u32>,
    pub radius: Vec<f64>,
    pub metric: AssignMetric,
}

/// A [`PlacementRule`] with its core points gathered from the sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    NearestCentroid,
    NearestCore(Cores),
}

/// A fitted clustering ready to place vectors: cluster `c` has centroid row `c`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigner {
    pub centroids: Matrix,
    pub rule: Rule,
}

/// Where one vector goes: its cluster and its Euclidean distance to that cluster's
/// centroid, or noise (both `None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub cluster: Option<u32>,
    pub distance: Option<f32>,
}

impl Placement {
    pub const NOISE: Placement = Placement {
        cluster: None,
        distance: None,
    };
}

impl Assigner {
    /// Check that the parts fit together (an internal error otherwise: they come from the
    /// server's own fit or artifacts): cores as wide as the centroids, one cluster and one
    /// radius per core, every cluster a centroid row, no NaN radius.
    pub fn new(centroids: Matrix, rule: Rule) -> ApiResult<Assigner> {
        if let Rule::NearestCore(c) = &rule {
            let n = c.points.rows();
            if c.clusters.len() != n || c.radius.len() != n {
                return Err(ApiError::internal(format!(
                    "{n} core points, {} clusters, {} radii",
                    c.clusters.len(),
                    c.radius.len()
                )));
            }
            if n > 0 && c.points.cols() != centroids.cols() {
                return Err(ApiError::internal(format!(
                    "core points have {} features, centroids {}",
                    c.points.cols(),
                    centroids.cols()
                )));
            }
            if let Some(&bad) = c.clusters.iter().find(|&&k| k as usize >= centroids.rows()) {
                return Err(ApiError::internal(format!(
                    "core cluster {bad} has no centroid ({} centroids)",
                    centroids.rows()
                )));
            }
            if c.radius.iter().any(|r| r.is_nan()) {
                return Err(ApiError::internal("a core radius is NaN"));
            }
        }
        Ok(Assigner { centroids, rule })
    }

    /// The width of the vectors this clustering places.
    pub fn dims(&self) -> usize {
        self.centroids.cols()
    }

    /// The check a caller makes before [`Self::assign`]: vectors of `cols` features fit
    /// this clustering. `field` names the request field the vectors came from.
    pub fn check_width(&self, cols: usize, field: &str) -> ApiResult<()> {
        if cols == self.dims() {
            Ok(())
        } else {
            Err(ApiError::invalid_parameter(
                field,
                format!(
                    "vectors have {cols} dimensions, but the run clustered vectors of {}",
                    self.dims()
                ),
            ))
        }
    }

    /// One placement per row of `x`, which must be [`Self::dims`] wide
    /// ([`Self::check_width`]). `distance` is the Euclidean distance (f64, rounded once
    /// to f32) from the row to `centroids[cluster]`, the same meaning as a member's
    /// `distance_to_centroid`, and `None` for noise.
    pub fn assign(&self, x: &Matrix, ctx: &RunContext) -> Result<Vec<Placement>, Cancelled> {
        ctx.checkpoint()?;
        if x.rows() == 0 {
            return Ok(Vec::new());
        }
        // An internal invariant, like the shapes in `distance`: callers check the width
        // of request data first.
        assert_eq!(x.cols(), self.dims(), "vectors as wide as the centroids");
        let clusters: Vec<Option<u32>> = match &self.rule {
            Rule::NearestCentroid => {
                if self.centroids.rows() == 0 {
                    vec![None; x.rows()]
                } else {
                    self.nearest_centroids(x, ctx)?
                        .into_iter()
                        .map(Some)
                        .collect()
                }
            }
            Rule::NearestCore(cores) => {
                let nearest = CoreSearch::new(cores).nearest(x, ctx)?;
                nearest
                    .into_iter()
                    .map(|found| {
                        found
                            .filter(|&(j, d)| d <= cores.radius[j as usize])
                            .map(|(j, _)| cores.clusters[j as usize])
                    })
                    .collect()
            }
        };
        ctx.checkpoint()?;
        Ok(clusters
            .par_iter()
            .with_min_len(ROW_TASK)
            .enumerate()
            .map(|(i, &cluster)| match cluster {
                Some(c) => Placement {
                    cluster: Some(c),
                    distance: Some(euclidean(x.row(i), self.centroids.row(c as usize)) as f32),
                },
                None => Placement::NOISE,
            })
            .collect())
    }

    /// The nearest centroid of every row, ranked as the fit ranks: f32 expanded distances
    /// (after centring both sides on the centroids' mean, which leaves distances alone
    /// and keeps the expanded form's cancellation small), lowest index on ties. On a GPU
    /// run the assign kernel ranks; a device failure falls back to the CPU twin.
    fn nearest_centroids(&self, x: &Matrix, ctx: &RunContext) -> Result<Vec<u32>, Cancelled> {
        let mean = column_mean(&self.centroids);
        let xc = centred(x, &mean);
        let cc = centred(&self.centroids, &mean);
        ctx.checkpoint()?;
        if ctx.device == DeviceKind::Gpu {
            match nearest_centroids_on_gpu(&xc, &cc) {
                Ok(labels) => return Ok(labels),
                Err(e) => tracing::warn!(error = %e, "GPU assignment failed; using the CPU"),
            }
        }
        let (x_sq, c_sq) = (row_sq_norms(&xc), row_sq_norms(&cc));
        Ok(nearest_centers(&xc, &x_sq, &cc, &c_sq, ctx)?.0)
    }
}

/// The GPU twin of the CPU ranking in [`Assigner::nearest_centroids`].
fn nearest_centroids_on_gpu(x: &Matrix, centroids: &Matrix) -> Result<Vec<u32>, GpuError> {
    let context = gpu::shared_context()?;
    let gx = GpuMatrix::upload(&context, x, None)?;
    Ok(gpu::assign::assign_nearest(&context, &gx, centroids)?.0)
}

/// Column means in f64, rounded to f32.
fn column_mean(m: &Matrix) -> Vec<f32> {
    let mut sum = vec![0f64; m.cols()];
    for i in 0..m.rows() {
        for (s, &v) in sum.iter_mut().zip(m.row(i)) {
            *s += f64::from(v);
        }
    }
    let n = m.rows().max(1) as f64;
    sum.into_iter().map(|s| (s / n) as f32).collect()
}

/// `x` with `mean` subtracted from every row.
fn centred(x: &Matrix, mean: &[f32]) -> Matrix {
    let mut out = x.clone();
    if x.cols() > 0 {
        out.as_mut_slice()
            .par_chunks_mut(x.cols() * ROW_TASK)
            .for_each(|rows| {
                for row in rows.chunks_mut(mean.len()) {
                    row.iter_mut().zip(mean).for_each(|(v, &m)| *v -= m);
                }
            });
    }
    out
}

/// Euclidean distance in f64, summed in row order (as a member's `distance_to_centroid`).
fn euclidean(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| {
            let t = f64::from(p) - f64::from(q);
            t * t
        })
        .sum::<f64>()
        .sqrt()
}

/// The cores prepared for one search: for the GEMM filter, the core rows centred on their
/// mean (Euclidean) or scaled to unit length (cosine), as the neighbour engine prepares
/// its rows.
struct CoreSearch<'a> {
    cores: &'a Cores,
    prepared: Matrix,
    prepared_sq: Vec<f32>,
    /// Euclidean: the column means subtracted from cores and queries alike.
    mean: Vec<f32>,
    /// Cosine: 1/‖core‖ in f64 (1 for a zero row, which stays zero).
    inv_norms: Vec<f64>,
    /// A bound on the relative error of an f32 dot product of this length and of the
    /// norms, with room to spare: the filter lets through everything within it.
    rel: f32,
}

impl<'a> CoreSearch<'a> {
    fn new(cores: &'a Cores) -> CoreSearch<'a> {
        let p = &cores.points;
        let (prepared, mean, inv_norms) = match cores.metric {
            AssignMetric::Euclidean => {
                let mean = column_mean(p);
                (centred(p, &mean), mean, Vec::new())
            }
            AssignMetric::Cosine => {
                let inv: Vec<f64> = (0..p.rows())
                    .into_par_iter()
                    .with_min_len(ROW_TASK)
                    .map(|i| inv_norm(p.row(i)))
                    .collect();
                let mut u = p.clone();
                if p.cols() > 0 {
                    u.as_mut_slice()
                        .par_chunks_mut(p.cols())
                        .zip(inv.par_iter())
                        .for_each(|(row, &s)| scale_into(row, s));
                }
                (u, Vec::new(), inv)
            }
            // Measured exactly throughout: nothing to prepare.
            AssignMetric::Manhattan => (Matrix::zeros(0, p.cols()), Vec::new(), Vec::new()),
        };
        let prepared_sq = row_sq_norms(&prepared);
        CoreSearch {
            cores,
            prepared,
            prepared_sq,
            mean,
            inv_norms,
            rel: (p.cols() as f32 + 16.0) * f32::EPSILON,
        }
    }

    /// The nearest core of every row of `x` and its exact distance (least distance, then
    /// least core index); `None` where there are no cores (or the row is not finite).
    fn nearest(&self, x: &Matrix, ctx: &RunContext) -> Result<Vec<Option<(u32, f64)>>, Cancelled> {
        let mut out = vec![None; x.rows()];
        if self.cores.points.rows() == 0 {
            return Ok(out);
        }
        out.par_chunks_mut(QUERY_BLOCK)
            .enumerate()
            .try_for_each(|(qb, out)| {
                let first = qb * QUERY_BLOCK;
                match self.cores.metric {
                    AssignMetric::Manhattan => self.manhattan_block(x, first, out, ctx),
                    AssignMetric::Euclidean | AssignMetric::Cosine => {
                        self.filtered_block(x, first, out, ctx)
                    }
                }
            })?;
        Ok(out)
    }

    /// Exact distance from query row `q` (with 1/‖q‖ for cosine) to core `j`, as the
    /// neighbour engine measures it (to the last bit, so a sample row placed back meets
    /// the same radius decisions as in the fit).
    fn exact(&self, q: &[f32], q_inv: f64, j: usize) -> f64 {
        let c = self.cores.points.row(j);
        match self.cores.metric {
            AssignMetric::Euclidean => lane_sum(q, c, |a, b| (a - b) * (a - b)).sqrt(),
            AssignMetric::Cosine => {
                let dot = lane_sum(q, c, |a, b| a * b);
                (1.0 - dot * (q_inv * self.inv_norms[j])).clamp(0.0, 2.0)
            }
            AssignMetric::Manhattan => lane_sum(q, c, |a, b| (a - b).abs()),
        }
    }

    /// Queries `first..first + out.len()` against every core by brute force, exact (a
    /// core is given up on once its partial distance exceeds the best so far).
    fn manhattan_block(
        &self,
        x: &Matrix,
        first: usize,
        out: &mut [Option<(u32, f64)>],
        ctx: &RunContext,
    ) -> Result<(), Cancelled> {
        let nc = self.cores.points.rows();
        for b in 0..n_blocks(nc) {
            ctx.checkpoint()?;
            for (t, best) in out.iter_mut().enumerate() {
                let q = x.row(first + t);
                for j in block_range(b, nc) {
                    let bound = best.map_or(f64::INFINITY, |(_, d)| d);
                    if let Some(d) = manhattan_within(q, self.cores.points.row(j), bound) {
                        offer(best, j, d);
                    }
                }
            }
        }
        Ok(())
    }

    /// Queries `first..first + out.len()` against every block of cores: one GEMM tile of
    /// dot products per block gives a lower bound on each distance; only cores whose bound
    /// does not exceed the query's best exact distance so far are measured exactly.
    fn filtered_block(
        &self,
        x: &Matrix,
        first: usize,
        out: &mut [Option<(u32, f64)>],
        ctx: &RunContext,
    ) -> Result<(), Cancelled> {
        let nc = self.cores.points.rows();
        let d = x.cols();
        let q = out.len();
        let mut qx = Vec::with_capacity(q * d);
        let mut q_inv = Vec::with_capacity(q);
        for t in 0..q {
            let row = x.row(first + t);
            match self.cores.metric {
                AssignMetric::Cosine => {
                    let s = inv_norm(row);
                    q_inv.push(s);
                    let start = qx.len();
                    qx.extend_from_slice(row);
                    scale_into(&mut qx[start..], s);
                }
                _ => {
                    q_inv.push(1.0);
                    qx.extend(row.iter().zip(&self.mean).map(|(&v, &m)| v - m));
                }
            }
        }
        let q_sq: Vec<f32> = (0..q)
            .map(|t| {
                let r = &qx[t * d..(t + 1) * d];
                lane_sum(r, r, |a, b| a * b) as f32
            })
            .collect();
        let mut tile = vec![0f32; q * BLOCK_ROWS.min(nc)];
        let mut lower = vec![0f32; BLOCK_ROWS.min(nc)];
        for b in 0..n_blocks(nc) {
            ctx.checkpoint()?;
            let rows = block_range(b, nc);
            let m = rows.len();
            // Cores × queries, column-major: each query's dot products come out contiguous.
            let lhs =
                MatRef::from_row_major_slice(self.prepared.rows_slice(rows.start, rows.end), m, d);
            let rhs = MatRef::from_row_major_slice(&qx, q, d).transpose();
            let dst = MatMut::from_column_major_slice_mut(&mut tile[..q * m], m, q);
            // Sequential inside the tile: parallelism is across query blocks.
            matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
            for (t, best) in out.iter_mut().enumerate() {
                let lower = &mut lower[..m];
                self.lower_bounds(q_sq[t], rows.start, &tile[t * m..(t + 1) * m], lower);
                let row = x.row(first + t);
                self.visit_block(best, row, q_inv[t], rows.start, lower);
            }
        }
        Ok(())
    }

    /// A lower bound, in the filter's units, of the distance from a query (its prepared
    /// squared norm `q_sq`) to each core of the block starting at `start`, from their dot
    /// products: squared Euclidean distance with norms shrunk by the error margin, or
    /// cosine distance less the margin.
    fn lower_bounds(&self, q_sq: f32, start: usize, dots: &[f32], out: &mut [f32]) {
        match self.cores.metric {
            AssignMetric::Cosine => {
                for (o, &g) in out.iter_mut().zip(dots) {
                    *o = 1.0 - g - self.rel;
                }
            }
            _ => {
                // |2·x·y| ≤ ‖x‖² + ‖y‖²: shrinking both norms by the margin takes off at
                // least the dot product's worst error (and the centring's rounding).
                let shrink = 1.0 - self.rel;
                let qs = q_sq * shrink;
                let cs = &self.prepared_sq[start..start + dots.len()];
                for ((o, &g), &s) in out.iter_mut().zip(dots).zip(cs) {
                    *o = qs + s * shrink - 2.0 * g;
                }
            }
        }
    }

    /// The filter's threshold for a best exact distance so far: everything whose lower
    /// bound is at most this may be as near.
    fn threshold(&self, best: &Option<(u32, f64)>) -> f32 {
        let Some((_, d)) = *best else {
            return f32::INFINITY;
        };
        let t = match self.cores.metric {
            AssignMetric::Cosine => d,
            _ => d * d,
        };
        // Rounded up, so the f32 threshold never excludes what the f64 distance admits
        // (an equal distance at a lower index must still be measured).
        (t as f32).next_up()
    }

    /// Measure the block's cores that may beat `best`: first the one with the least bound
    /// (which gives an unbounded query its first exact distance), then every core whose
    /// bound is within the threshold, in index order.
    fn visit_block(
        &self,
        best: &mut Option<(u32, f64)>,
        q: &[f32],
        q_inv: f64,
        start: usize,
        lower: &[f32],
    ) {
        const CHUNK: usize = 16;
        let mut thr = self.threshold(best);
        let mut seed = None;
        let mut least = f32::INFINITY;
        for (t, &l) in lower.iter().enumerate() {
            if l < least {
                least = l;
                seed = Some(t);
            }
        }
        let Some(seed) = seed.filter(|_| least <= thr) else {
            return;
        };
        offer(best, start + seed, self.exact(q, q_inv, start + seed));
        thr = self.threshold(best);
        for (c, chunk) in lower.chunks(CHUNK).enumerate() {
            // Most chunks hold no candidate: one vectorised test for the whole chunk.
            if !chunk.iter().any(|&l| l <= thr) {
                continue;
            }
            for (t, &l) in chunk.iter().enumerate() {
                let t = c * CHUNK + t;
                if l <= thr && t != seed {
                    offer(best, start + t, self.exact(q, q_inv, start + t));
                    thr = self.threshold(best);
                }
            }
        }
    }
}

/// Keep `(j, d)` if it is nearer than `best`, or as near at a lower index.
fn offer(best: &mut Option<(u32, f64)>, j: usize, d: f64) {
    if d.is_nan() {
        return;
    }
    let j = j as u32;
    if best.is_none_or(|(bj, bd)| d < bd || (d == bd && j < bj)) {
        *best = Some((j, d));
    }
}

/// 1/‖v‖ in f64, or 1 for a zero row (which stays zero, as scikit-learn's `normalize`).
fn inv_norm(v: &[f32]) -> f64 {
    let n = lane_sum(v, v, |a, b| a * b).sqrt();
    if n > 0.0 { 1.0 / n } else { 1.0 }
}

fn scale_into(row: &mut [f32], s: f64) {
    row.iter_mut().for_each(|v| *v = (f64::from(*v) * s) as f32);
}

/// Lane chunks summed between two looks at the running total in [`manhattan_within`].
const CHECK_EVERY: usize = 4;

/// The manhattan distance of `a` and `b`, to the bit as [`lane_sum`] gives it, or `None`
/// once the partial sum exceeds `bound`: every term is non-negative and rounding is
/// monotone, so a partial total above `bound` means the whole one is too, and most
/// cores of other clusters are given up on after a fraction of the features.
fn manhattan_within(a: &[f32], b: &[f32], bound: f64) -> Option<f64> {
    let mut acc = [0.0f64; LANES];
    let split = a.len() - a.len() % LANES;
    for (k, (p, q)) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
        .enumerate()
    {
        for l in 0..LANES {
            acc[l] += (f64::from(p[l]) - f64::from(q[l])).abs();
        }
        if k % CHECK_EVERY == CHECK_EVERY - 1 && combine_lanes(&acc) > bound {
            return None;
        }
    }
    for (l, (&p, &q)) in a[split..].iter().zip(&b[split..]).enumerate() {
        acc[l] += (f64::from(p) - f64::from(q)).abs();
    }
    Some(combine_lanes(&acc))
}
