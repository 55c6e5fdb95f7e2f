//! Criterion benches of the CPU twins at sizes that run in seconds:
//! `cargo bench --bench cpu [-- FILTER]`. The peer comparison at full size is
//! `scripts/bench/compare.py` (driving the `kmeans` bench binary).

use std::hint::black_box;
use std::time::Duration;

use clusterd::algorithms::assign::{AssignMetric, Assigner, Cores, Rule};
use clusterd::algorithms::distance::{nearest_centers, row_sq_norms};
use clusterd::algorithms::kmeans::{self, KMeansInit, KMeansParams};
use clusterd::metrics::{self, MetricsOptions};
use clusterd::model::{DeviceKind, Matrix, RunContext};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n × d` Gaussian-ish blobs around `k` uniform centres, seeded.
fn blobs(n: usize, d: usize, k: usize, seed: u64) -> (Matrix, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..k * d).map(|_| rng.random_range(-3.0..3.0)).collect();
    let mut data = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % k;
        labels.push(c as i64);
        for j in 0..d {
            data.push(centres[c * d + j] + rng.random_range(-2.0f32..2.0));
        }
    }
    (Matrix::from_vec(n, d, data).expect("shape"), labels)
}

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn distances(c: &mut Criterion) {
    let (x, _) = blobs(20_000, 768, 100, 1);
    let (cent, _) = blobs(100, 768, 100, 2);
    let (x_sq, c_sq) = (row_sq_norms(&x), row_sq_norms(&cent));
    let mut g = c.benchmark_group("distance");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(20_000u64 * 768 * 100 * 2));
    g.bench_function("nearest_centers 20000x768 k=100", |b| {
        b.iter(|| nearest_centers(black_box(&x), &x_sq, &cent, &c_sq, &ctx()).unwrap())
    });
    g.finish();
}

fn kmeans_fit(c: &mut Criterion) {
    let (x, _) = blobs(20_000, 768, 100, 3);
    let mut g = c.benchmark_group("kmeans");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, init, iters) in [
        (
            "lloyd 10 it, random init, 20000x768 k=100",
            KMeansInit::Random,
            10,
        ),
        (
            "k-means++ + 1 it, 20000x768 k=100",
            KMeansInit::KMeansPlusPlus,
            1,
        ),
    ] {
        let params = KMeansParams {
            n_clusters: 100,
            init,
            n_init: 1,
            max_iter: iters,
            tol: 0.0,
            random_state: Some(0),
        };
        g.bench_function(name, |b| {
            b.iter(|| kmeans::fit(black_box(&x), &params, &ctx()).unwrap())
        });
    }
    g.finish();
}

fn silhouette(c: &mut Criterion) {
    let (x, labels) = blobs(5_000, 384, 20, 4);
    let options = MetricsOptions {
        exact_silhouette_max: usize::MAX,
        silhouette_sample_size: usize::MAX,
        ..MetricsOptions::default()
    };
    let mut g = c.benchmark_group("metrics");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("exact silhouette + DB + CH 5000x384 k=20", |b| {
        b.iter(|| metrics::compute(black_box(&x), &labels, &options, &ctx()).unwrap())
    });
    g.finish();
}

/// Placing 100 000 × 128 vectors among 100 centroids and among 20 000 core points (1-NN,
/// as agglomerative and spectral runs place; manhattan, which is measured exactly
/// throughout, on a tenth of the vectors).
fn assign(c: &mut Criterion) {
    let (x, _) = blobs(100_000, 128, 100, 5);
    let (centroids, _) = blobs(100, 128, 100, 6);
    let (points, labels) = blobs(20_000, 128, 100, 6);
    let clusters: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let mut g = c.benchmark_group("assign");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let by_centroid = Assigner::new(centroids.clone(), Rule::NearestCentroid).expect("valid");
    g.bench_function("nearest centroid 100000x128 k=100", |b| {
        b.iter(|| by_centroid.assign(black_box(&x), &ctx()).unwrap())
    });
    let few = Matrix::from_vec(10_000, 128, x.rows_slice(0, 10_000).to_vec()).expect("shape");
    for (metric, rows) in [
        (AssignMetric::Euclidean, &x),
        (AssignMetric::Cosine, &x),
        (AssignMetric::Manhattan, &few),
    ] {
        let rule = Rule::NearestCore(Cores {
            points: points.clone(),
            clusters: clusters.clone(),
            radius: vec![f64::INFINITY; points.rows()],
            metric,
        });
        let by_core = Assigner::new(centroids.clone(), rule).expect("valid");
        let name = format!(
            "nearest core {} {}x128 among 20000",
            metric.as_str(),
            rows.rows()
        );
        g.bench_function(name, |b| {
            b.iter(|| by_core.assign(black_box(rows), &ctx()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, distances, kmeans_fit, silhouette, assign);
criterion_main!(benches);
