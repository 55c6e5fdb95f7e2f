//! Cluster quality metrics at scikit-learn 1.9.1 parity: silhouette, Davies–Bouldin and
//! Calinski–Harabasz, within `|a − b| ≤ 1e-4 · max(1, |b|)` of scikit-learn on the same
//! float32 data and labels (DESIGN §4 "Metrics").
//!
//! Noise rows (label −1) are left out of every score and counted. Every sum is taken in
//! f64 in an order fixed by the data alone, so the scores do not depend on the size of the
//! rayon pool.

mod agreement;
mod calinski_harabasz;
mod davies_bouldin;
mod silhouette;
#[cfg(test)]
mod tests;

pub use agreement::adjusted_rand_index;

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::model::{Cancelled, DeviceKind, Matrix, Metrics, RunContext};

/// The label that marks a noise row.
pub const NOISE: i64 = -1;

/// Stream of the seeded generator that draws the silhouette sample, so that the sample
/// is not correlated with the draws an algorithm made from the same seed (k-means uses
/// streams `0..n_init`).
const SAMPLE_STREAM: u64 = 0x006d_6574_7269_6373; // "metrics" in ASCII

/// Features summed per task in the centroid pass: wide enough that a task reads whole
/// cache lines of every row, narrow enough that 768-wide embeddings give a dozen tasks.
const FEATURE_CHUNK: usize = 32;

/// Rows per step of the passes over the data, with a cancellation checkpoint between
/// steps; fixed, so never a function of the thread count.
const ROW_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Exact silhouette up to this many (non-noise) points; above it a seeded uniform
    /// sample of `silhouette_sample_size` points (scikit-learn's
    /// `silhouette_score(sample_size=..)` semantics: sample points, then the score of the
    /// sample against the sample).
    pub exact_silhouette_max: usize,
    /// The same bound when the run computes on a GPU, where the O(N²·d) pair work is
    /// cheap enough to stay exact further.
    pub exact_silhouette_max_gpu: usize,
    /// Points in the silhouette sample when the exact score is above the bound.
    pub silhouette_sample_size: usize,
}

impl Default for MetricsOptions {
    /// The exact silhouette costs O(N²·d): every pair's distance. At 20 000 × 768 that is
    /// about 6·10¹¹ flops, measured at about 4 s on two cores, which is as much as a
    /// metric should add to a run. Above that, 10 000 sampled points cost a quarter of
    /// that bound (about 1 s) whatever N, and a mean of 10 000 values in [−1, 1] has a
    /// standard error of at most about 0.01.
    fn default() -> Self {
        MetricsOptions {
            exact_silhouette_max: 20_000,
            exact_silhouette_max_gpu: 100_000,
            silhouette_sample_size: 10_000,
        }
    }
}

/// Silhouette, Davies–Bouldin and Calinski–Harabasz scores of a labelling of the rows of `x`.
///
/// `labels`: one per row of `x`; −1 = noise (excluded from every metric, counted in
/// `num_noise`); others are cluster indices (need not be contiguous).
///
/// Returns all three scores, `num_noise = Some(count)`, and a `note` when the silhouette
/// was sampled ("silhouette_score computed on a seeded sample of S of N documents (seed
/// X)") or when the metrics are skipped: with fewer than 2 clusters among the non-noise
/// points (or fewer than 3 non-noise points, or as many clusters as points) all three
/// scores are `None` and the note gives the reason, as scikit-learn refuses these
/// ("Number of labels is N. Valid values are 2 to n_samples - 1").
///
/// The sample is seeded by `ctx.seed`; the same input gives the same output whatever the
/// thread count.
pub fn compute(
    x: &Matrix,
    labels: &[i64],
    options: &MetricsOptions,
    ctx: &RunContext,
) -> Result<Metrics, Cancelled> {
    ctx.checkpoint()?;
    if labels.len() != x.rows() {
        // A caller bug, not bad input; a run still gets its clusters, without metrics.
        return Ok(Metrics {
            note: Some(format!(
                "metrics skipped: {} labels for {} documents",
                labels.len(),
                x.rows()
            )),
            ..Metrics::default()
        });
    }
    let clustering = Clustering::new(labels);
    let num_noise = labels.len() - clustering.rows.len();
    if let Some(reason) = clustering.skip_reason(num_noise) {
        return Ok(Metrics {
            num_noise: Some(num_noise),
            note: Some(reason),
            ..Metrics::default()
        });
    }

    let stats = ClusterStats::new(x, &clustering, ctx)?;
    let davies_bouldin = davies_bouldin::score(&stats, ctx)?;
    let calinski_harabasz = calinski_harabasz::score(&stats);
    ctx.checkpoint()?;

    let n = clustering.rows.len();
    let exact_max = if ctx.device == DeviceKind::Gpu {
        options.exact_silhouette_max_gpu
    } else {
        options.exact_silhouette_max
    };
    let (silhouette, note) = if n <= exact_max || options.silhouette_sample_size >= n {
        let s = silhouette::score(x, &clustering.rows, &clustering.labels, ctx)?;
        (s, None)
    } else {
        let size = options.silhouette_sample_size;
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.seed);
        rng.set_stream(SAMPLE_STREAM);
        let mut picked = rand::seq::index::sample(&mut rng, n, size).into_vec();
        // Order does not change which pairs are scored; sorted rows read memory in order.
        picked.sort_unstable();
        let rows: Vec<usize> = picked.iter().map(|&p| clustering.rows[p]).collect();
        let sub_labels: Vec<u32> = picked.iter().map(|&p| clustering.labels[p]).collect();
        let k = distinct(&sub_labels);
        if 1 < k && k < size {
            let s = silhouette::score(x, &rows, &sub_labels, ctx)?;
            let note = format!(
                "silhouette_score computed on a seeded sample of {size} of {n} documents \
                 (seed {})",
                ctx.seed
            );
            (s, Some(note))
        } else {
            let note = format!(
                "silhouette_score skipped: the seeded sample of {size} of {n} documents \
                 (seed {}) holds {k} clusters; it needs 2 to {} (scikit-learn's rule)",
                ctx.seed,
                size.saturating_sub(1)
            );
            (None, Some(note))
        }
    };

    Ok(Metrics {
        silhouette_score: silhouette,
        davies_bouldin_score: Some(davies_bouldin),
        calinski_harabasz_score: Some(calinski_harabasz),
        num_noise: Some(num_noise),
        note,
    })
}

/// The non-noise rows and their labels renumbered densely, as scikit-learn's
/// `LabelEncoder` does (ascending order of the original labels).
struct Clustering {
    /// Indices of the non-noise rows of the data, ascending.
    rows: Vec<usize>,
    /// Dense label (`0..k`) of each of `rows`.
    labels: Vec<u32>,
    /// Rows per dense label.
    counts: Vec<usize>,
}

impl Clustering {
    fn new(labels: &[i64]) -> Self {
        let mut classes: Vec<i64> = labels.iter().copied().filter(|&l| l != NOISE).collect();
        classes.sort_unstable();
        classes.dedup();
        let mut counts = vec![0usize; classes.len()];
        let mut rows = Vec::new();
        let mut dense = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            if l == NOISE {
                continue;
            }
            // Every non-noise label is in `classes`, built from these same labels.
            if let Ok(c) = classes.binary_search(&l) {
                counts[c] += 1;
                rows.push(i);
                dense.push(c as u32);
            }
        }
        Clustering {
            rows,
            labels: dense,
            counts,
        }
    }

    fn k(&self) -> usize {
        self.counts.len()
    }

    /// Why no score is defined, where scikit-learn would refuse the labelling.
    fn skip_reason(&self, num_noise: usize) -> Option<String> {
        let n = self.rows.len();
        let k = self.k();
        if 1 < k && k < n {
            return None;
        }
        let why = if n == 0 {
            format!("no clustered documents (all {num_noise} are noise)")
        } else if k < 2 {
            format!("{k} cluster among {n} non-noise documents; at least 2 clusters are needed")
        } else {
            format!("{k} clusters for {n} non-noise documents (every document is its own cluster)")
        };
        Some(format!(
            "metrics skipped: {why}; scikit-learn defines these scores for 2 to \
             n_samples - 1 clusters"
        ))
    }
}

fn distinct(labels: &[u32]) -> usize {
    let mut v = labels.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// What Davies–Bouldin and Calinski–Harabasz both need: cluster sizes and centroids, the
/// overall mean, and per cluster the sum of the members' distances and squared distances
/// to their centroid. All in f64, each sum taken in row order.
struct ClusterStats {
    d: usize,
    counts: Vec<usize>,
    /// `k × d`, row-major: the mean of each cluster's members.
    centroids: Vec<f64>,
    /// Mean of all non-noise rows.
    mean: Vec<f64>,
    /// Per cluster: Σ ‖x − c‖ over its members.
    dist_sums: Vec<f64>,
    /// Per cluster: Σ ‖x − c‖² over its members.
    sq_dist_sums: Vec<f64>,
}

impl ClusterStats {
    fn new(x: &Matrix, clustering: &Clustering, ctx: &RunContext) -> Result<Self, Cancelled> {
        let d = x.cols();
        let k = clustering.k();
        let counts = clustering.counts.clone();
        let sums = cluster_sums(x, &clustering.rows, &clustering.labels, k, ctx)?;
        let mut centroids = vec![0f64; k * d];
        let mut mean = vec![0f64; d];
        for c in 0..k {
            let inv = 1.0 / counts[c].max(1) as f64;
            for f in 0..d {
                centroids[c * d + f] = sums[c * d + f] * inv;
                mean[f] += sums[c * d + f];
            }
        }
        let n = clustering.rows.len().max(1) as f64;
        mean.iter_mut().for_each(|m| *m /= n);

        // Each row's squared distance to its own centroid, taken directly (no expanded
        // formula, so no cancellation), then summed per cluster in row order.
        let mut dist_sums = vec![0f64; k];
        let mut sq_dist_sums = vec![0f64; k];
        for step in chunk_ranges(clustering.rows.len(), ROW_CHUNK) {
            ctx.checkpoint()?;
            let rows = &clustering.rows[step.clone()];
            let labels = &clustering.labels[step];
            let sq: Vec<f64> = rows
                .par_iter()
                .zip(labels)
                .with_min_len(1024)
                .map(|(&r, &l)| {
                    let c = &centroids[l as usize * d..(l as usize + 1) * d];
                    sq_dist_f64(x.row(r), c)
                })
                .collect();
            for (&l, s) in labels.iter().zip(sq) {
                dist_sums[l as usize] += s.sqrt();
                sq_dist_sums[l as usize] += s;
            }
        }
        Ok(ClusterStats {
            d,
            counts,
            centroids,
            mean,
            dist_sums,
            sq_dist_sums,
        })
    }

    fn k(&self) -> usize {
        self.counts.len()
    }

    fn n(&self) -> usize {
        self.counts.iter().sum()
    }

    fn centroid(&self, c: usize) -> &[f64] {
        &self.centroids[c * self.d..(c + 1) * self.d]
    }
}

fn sq_dist_f64(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| {
            let t = f64::from(p) - q;
            t * t
        })
        .sum()
}

/// `0..n` cut into consecutive ranges of `size` (the last one shorter).
fn chunk_ranges(n: usize, size: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n.div_ceil(size)).map(move |c| c * size..((c + 1) * size).min(n))
}

/// Per-cluster sums of the given rows, `k × d` row-major, in f64. Parallel across
/// feature chunks, each summing its features over the rows in row order, so every sum
/// has the same rounding whatever the thread count, in O(k·d) memory.
fn cluster_sums(
    x: &Matrix,
    rows: &[usize],
    labels: &[u32],
    k: usize,
    ctx: &RunContext,
) -> Result<Vec<f64>, Cancelled> {
    let d = x.cols();
    let features: Vec<Range<usize>> = chunk_ranges(d, FEATURE_CHUNK).collect();
    let mut parts: Vec<Vec<f64>> = features.iter().map(|f| vec![0f64; k * f.len()]).collect();
    for step in chunk_ranges(rows.len(), ROW_CHUNK) {
        ctx.checkpoint()?;
        let rows = &rows[step.clone()];
        let labels = &labels[step];
        parts.par_iter_mut().zip(&features).for_each(|(part, f)| {
            let w = f.len();
            for (&r, &l) in rows.iter().zip(labels) {
                let dst = &mut part[l as usize * w..(l as usize + 1) * w];
                for (acc, &v) in dst.iter_mut().zip(&x.row(r)[f.clone()]) {
                    *acc += f64::from(v);
                }
            }
        });
    }
    let mut sums = vec![0f64; k * d];
    for (part, f) in parts.iter().zip(&features) {
        let w = f.len();
        for c in 0..k {
            sums[c * d + f.start..c * d + f.end].copy_from_slice(&part[c * w..(c + 1) * w]);
        }
    }
    Ok(sums)
}
