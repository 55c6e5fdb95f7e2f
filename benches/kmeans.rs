//! Engine benchmark binary used by `scripts/bench/compare.py` and
//! `scripts/bench/gpu_device.sh`; prints one JSON line.
//!
//! ```text
//! cargo bench --bench kmeans -- --mode kmeans     [--data FILE | --n N --d D] --k K
//!                                                 [--max-iter I] [--tol T] [--n-init R]
//!                                                 [--init k-means++|random] [--device cpu|gpu]
//! cargo bench --bench kmeans -- --mode silhouette [--data FILE --labels FILE | --n N --d D --k K]
//!                                                 [--device cpu|gpu]
//! cargo bench --bench kmeans -- --mode gemm       [--data FILE | --n N --d D] --k K [--reps R]
//! cargo bench --bench kmeans -- --mode adapter
//! cargo bench --bench kmeans -- --mode gpu-assign --n N --d D --k K [--reps R] [--check ROWS]
//! cargo bench --bench kmeans -- --mode gpu-knn    --n N --d D --k K [--clusters C]
//! ```
//!
//! `--data` reads a raw little-endian file (u64 rows, u64 cols, then rows×cols f32) as
//! written by the compare script, so that scikit-learn and FAISS see the same numbers;
//! without it a seeded blob set of N×D is generated (K blobs, centres uniform in
//! `±--box` (default 10), uniform noise in ±1 per feature; `--box 1` makes them overlap, so
//! that Lloyd runs all its iterations). `--labels` is a raw file of u64 count then that
//! many i64 labels; without it the silhouette scores the generated blob labels.
//!
//! `--device gpu` runs the fit or the metrics pass with `DeviceKind::Gpu` on the shared
//! wgpu device, and fails (exit 2) rather than time the CPU when no adapter opens. A GPU
//! fault inside the engine falls back to the CPU silently, so every line reports
//! `warnings`: the warnings logged while it ran (non-zero means look at stderr). The
//! GPU-only modes are in `kmeans/gpu.rs`.
//!
//! k-means reports the whole fit (`seconds`), and the Lloyd iterations alone
//! (`seconds_per_iter`: the time between the first and the last iteration's progress
//! event, over the iterations in between, so the initialisation, the centring copy and the
//! final exact inertia are left out). `gemm` times the blocked distance GEMM
//! (`−2·X·Cᵀ` for every row block, nothing else) over the whole data against K rows: the
//! floor under one Lloyd iteration of this design.

#[path = "kmeans/gpu.rs"]
mod gpu;
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clusterd::algorithms::distance::{map_blocks, row_sq_norms};
use clusterd::algorithms::kmeans::{self, KMeansInit, KMeansParams};
use clusterd::metrics::{self, MetricsOptions};
use clusterd::model::{DeviceKind, Matrix, ProgressEvent, RunContext};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::{arg, read_raw, word};

fn parse<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn read_labels(path: &str) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let n = word(&bytes, 0) as usize;
    (0..n).map(|i| word(&bytes, i + 1) as i64).collect()
}

fn blobs(n: usize, d: usize, k: usize, half_width: f32) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<f32> = (0..k * d)
        .map(|_| rng.random_range(-half_width..half_width))
        .collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % k.max(1);
        for j in 0..d {
            data.push(centres[c * d + j] + rng.random_range(-1.0f32..1.0));
        }
    }
    Matrix::from_vec(n, d, data).unwrap_or_else(|| Matrix::zeros(0, d))
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn current_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn data(args: &[String], k: usize) -> Matrix {
    match arg(args, "--data") {
        Some(path) => read_raw(&path),
        None => blobs(
            parse(args, "--n", 100_000),
            parse(args, "--d", 128),
            k,
            parse(args, "--box", 10.0),
        ),
    }
}

/// `--device`: `cpu` (default) or `gpu`. For `gpu` the shared device must open: a timing
/// of the CPU fallback under a GPU label would be worse than none.
fn device(args: &[String]) -> DeviceKind {
    match arg(args, "--device").as_deref() {
        Some("gpu") => {
            if let Err(e) = clusterd::gpu::shared_context() {
                fail(&format!("--device gpu: no wgpu device: {e}"));
            }
            DeviceKind::Gpu
        }
        Some("cpu") | None => DeviceKind::Cpu,
        Some(other) => fail(&format!("--device must be cpu or gpu, not {other:?}")),
    }
}

fn engine(device: DeviceKind) -> &'static str {
    match device {
        DeviceKind::Gpu => "clusterd-gpu",
        DeviceKind::Cpu => "clusterd-cpu",
    }
}

/// Print `{"error": ..}` as the line and exit 2, so the driving script records the step
/// as failed and goes on.
fn fail(msg: &str) -> ! {
    println!("{}", serde_json::json!({ "error": msg }));
    std::process::exit(2)
}

/// FNV-1a over the labels: equal hashes on two devices mean identical labellings.
fn labels_hash(labels: impl IntoIterator<Item = u64>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in labels {
        for b in l.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Counts warnings and errors logged through `tracing`: the engine reports a GPU fault it
/// recovered from only as a warning.
struct WarnCount(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarnCount {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

static WARNINGS: std::sync::OnceLock<Arc<AtomicUsize>> = std::sync::OnceLock::new();

fn warnings() -> usize {
    WARNINGS.get().map_or(0, |w| w.load(Ordering::Relaxed))
}

/// Logs to stderr (`RUST_LOG`, default warnings and the device's opening line) and counts
/// the warnings for the JSON line.
fn init_logging() {
    use tracing_subscriber::prelude::*;
    let count = Arc::new(AtomicUsize::new(0));
    let _ = WARNINGS.set(count.clone());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,clusterd::gpu=info"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(filter),
        )
        .with(WarnCount(count))
        .try_init();
}

fn bench_kmeans(args: &[String]) -> serde_json::Value {
    let k: usize = parse(args, "--k", 50);
    let device = device(args);
    let x = data(args, k);
    let rss_data = current_rss_mb();
    let init = match arg(args, "--init").as_deref() {
        Some("random") => KMeansInit::Random,
        _ => KMeansInit::KMeansPlusPlus,
    };
    let params = KMeansParams {
        n_clusters: k,
        init,
        n_init: parse(args, "--n-init", 1),
        max_iter: parse(args, "--max-iter", 300),
        tol: parse(args, "--tol", 1e-4),
        random_state: Some(0),
    };
    // Timestamp every iteration's progress event on its own thread.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
    let stamps = std::thread::spawn(move || {
        let mut out = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            if ev.iteration.is_some() {
                out.push(Instant::now());
            }
        }
        out
    });
    let ctx = RunContext::new(0, device).with_progress(tx);
    let start = Instant::now();
    let fit = kmeans::fit(&x, &params, &ctx).unwrap_or_else(|e| panic!("fit: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    drop(ctx);
    let stamps = stamps.join().unwrap_or_default();
    let per_iter = match (stamps.first(), stamps.last()) {
        (Some(a), Some(b)) if stamps.len() > 1 => {
            Some(b.duration_since(*a).as_secs_f64() / (stamps.len() - 1) as f64)
        }
        _ => None,
    };
    let init_s = stamps.first().map(|t| {
        let first_iter = per_iter.unwrap_or(0.0);
        t.duration_since(start).as_secs_f64() - first_iter
    });
    serde_json::json!({
        "engine": engine(device),
        "threads": rayon::current_num_threads(),
        "n": x.rows(), "d": x.cols(), "k": k,
        "seconds": seconds,
        "seconds_per_iter": per_iter,
        "init_seconds_approx": init_s,
        "inertia": fit.inertia,
        "n_iter": fit.n_iter,
        "labels_hash": labels_hash(fit.labels.iter().map(|&l| u64::from(l))),
        "warnings": warnings(),
        "peak_rss_mb": peak_rss_mb(),
        "data_rss_mb": rss_data,
    })
}

fn bench_silhouette(args: &[String]) -> serde_json::Value {
    let device = device(args);
    let k: usize = parse(args, "--k", 10);
    let x = data(args, k);
    let labels = match arg(args, "--labels") {
        Some(path) => read_labels(&path),
        // The blob each generated row was drawn from.
        None if arg(args, "--data").is_none() => {
            (0..x.rows()).map(|i| (i % k.max(1)) as i64).collect()
        }
        None => fail("--data needs --labels"),
    };
    let rss_data = current_rss_mb();
    let ctx = RunContext::new(0, device);
    let options = MetricsOptions {
        exact_silhouette_max: usize::MAX,
        exact_silhouette_max_gpu: usize::MAX,
        silhouette_sample_size: usize::MAX,
    };
    let start = Instant::now();
    let m = metrics::compute(&x, &labels, &options, &ctx).unwrap_or_else(|e| panic!("{e}"));
    let seconds = start.elapsed().as_secs_f64();
    let mut out = serde_json::json!({
        "engine": engine(device),
        "threads": rayon::current_num_threads(),
        "n": x.rows(), "d": x.cols(),
        "seconds": seconds,
        "silhouette": m.silhouette_score,
        "warnings": warnings(),
        "peak_rss_mb": peak_rss_mb(),
        "data_rss_mb": rss_data,
    });
    if device == DeviceKind::Gpu && arg(args, "--kernel").is_some_and(|v| v == "1") {
        out["kernel"] = gpu::silhouette_kernel(&x, &labels);
    }
    out
}

fn bench_gemm(args: &[String]) -> serde_json::Value {
    let k: usize = parse(args, "--k", 100);
    let reps: usize = parse(args, "--reps", 5);
    let x = data(args, k);
    let mut centers = Matrix::zeros(k, x.cols());
    for j in 0..k.min(x.rows()) {
        centers
            .row_mut(j)
            .copy_from_slice(x.row(j * (x.rows() / k.max(1)).max(1)));
    }
    let (x_sq, c_sq) = (row_sq_norms(&x), row_sq_norms(&centers));
    let ctx = RunContext::new(0, DeviceKind::Cpu);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let _ = map_blocks(&x, &x_sq, &centers, &c_sq, &ctx, |blk| blk.rows());
        best = best.min(t.elapsed().as_secs_f64());
    }
    let flops = 2.0 * x.rows() as f64 * x.cols() as f64 * k as f64;
    serde_json::json!({
        "engine": "clusterd-cpu-gemm",
        "threads": rayon::current_num_threads(),
        "n": x.rows(), "d": x.cols(), "k": k,
        "seconds": best,
        "gflops": flops / best / 1e9,
    })
}

/// Layout experiment: the same `−2·X_b·Cᵀ` per 1024-row block, three ways
/// (single-thread faer, one block at a time).
fn bench_layouts(args: &[String]) -> serde_json::Value {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let k: usize = parse(args, "--k", 100);
    let x = data(args, k);
    let (n, d) = (x.rows(), x.cols());
    let m: usize = parse(args, "--block", 1024);
    let nb = n / m;
    let c: Vec<f32> = x.as_slice()[..k * d].to_vec();
    let mut ct = vec![0f32; k * d]; // column-major k×d
    for j in 0..k {
        for f in 0..d {
            ct[f * k + j] = c[j * d + f];
        }
    }
    // Blocks stored column-major.
    let mut xcm = vec![0f32; nb * m * d];
    for b in 0..nb {
        for i in 0..m {
            for f in 0..d {
                xcm[b * m * d + f * m + i] = x.as_slice()[(b * m + i) * d + f];
            }
        }
    }
    let mut buf = vec![0f32; m * k];
    let mut res = serde_json::Map::new();
    for variant in ["rowmajor_lhs", "transposed_problem", "colmajor_blocks"] {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            for b in 0..nb {
                let xb = &x.as_slice()[b * m * d..(b + 1) * m * d];
                match variant {
                    "rowmajor_lhs" => {
                        let lhs = MatRef::from_row_major_slice(xb, m, d);
                        let rhs = MatRef::from_row_major_slice(&c, k, d).transpose();
                        let dst = MatMut::from_column_major_slice_mut(&mut buf, m, k);
                        matmul(dst, Accum::Replace, lhs, rhs, -2.0f32, Par::Seq);
                    }
                    "transposed_problem" => {
                        let lhs = MatRef::from_column_major_slice(&ct, k, d);
                        let rhs = MatRef::from_column_major_slice(xb, d, m);
                        let dst = MatMut::from_column_major_slice_mut(&mut buf, k, m);
                        matmul(dst, Accum::Replace, lhs, rhs, -2.0f32, Par::Seq);
                    }
                    _ => {
                        let xb = &xcm[b * m * d..(b + 1) * m * d];
                        let lhs = MatRef::from_column_major_slice(xb, m, d);
                        let rhs = MatRef::from_row_major_slice(&c, k, d).transpose();
                        let dst = MatMut::from_column_major_slice_mut(&mut buf, m, k);
                        matmul(dst, Accum::Replace, lhs, rhs, -2.0f32, Par::Seq);
                    }
                }
                black_box(&buf);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (nb * m) as f64 * d as f64 * k as f64;
        res.insert(
            variant.into(),
            serde_json::json!({"seconds_1thread": best, "gflops": flops / best / 1e9}),
        );
    }
    serde_json::Value::Object(res)
}

fn main() {
    init_logging();
    let args: Vec<String> = std::env::args().collect();
    let out = match arg(&args, "--mode").as_deref() {
        Some("silhouette") => bench_silhouette(&args),
        Some("gemm") => bench_gemm(&args),
        Some("layouts") => bench_layouts(&args),
        Some("adapter") => gpu::adapter(),
        Some("gpu-assign") => gpu::bench_assign(&args),
        Some("gpu-knn") => gpu::bench_knn(&args),
        _ => bench_kmeans(&args),
    };
    println!("{out}");
}
