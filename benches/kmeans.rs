//! CPU-engine benchmark binary used by `scripts/bench/compare.py`; prints one JSON line.
//!
//! ```text
//! cargo bench --bench kmeans -- --mode kmeans     [--data FILE | --n N --d D] --k K
//!                                                 [--max-iter I] [--tol T] [--n-init R]
//!                                                 [--init k-means++|random]
//! cargo bench --bench kmeans -- --mode silhouette --data FILE --labels FILE
//! cargo bench --bench kmeans -- --mode gemm       [--data FILE | --n N --d D] --k K [--reps R]
//! ```
//!
//! `--data` reads a raw little-endian file (u64 rows, u64 cols, then rows×cols f32) as
//! written by the compare script, so that scikit-learn and FAISS see the same numbers;
//! without it a seeded Gaussian-blob set of N×D is generated. `--labels` is a raw file of
//! u64 count then that many i64 labels.
//!
//! k-means reports the whole fit (`seconds`), and the Lloyd iterations alone
//! (`seconds_per_iter`: the time between the first and the last iteration's progress
//! event, over the iterations in between, so the initialisation, the centring copy and the
//! final exact inertia are left out). `gemm` times the blocked distance GEMM
//! (`−2·X·Cᵀ` for every row block, nothing else) over the whole data against K rows: the
//! floor under one Lloyd iteration of this design.

mod support;

use std::hint::black_box;
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

fn blobs(n: usize, d: usize, k: usize) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<f32> = (0..k * d).map(|_| rng.random_range(-10.0..10.0)).collect();
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
        None => blobs(parse(args, "--n", 100_000), parse(args, "--d", 128), k),
    }
}

fn bench_kmeans(args: &[String]) -> serde_json::Value {
    let k: usize = parse(args, "--k", 50);
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
    let ctx = RunContext::new(0, DeviceKind::Cpu).with_progress(tx);
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
        "engine": "clusterd-cpu",
        "threads": rayon::current_num_threads(),
        "n": x.rows(), "d": x.cols(), "k": k,
        "seconds": seconds,
        "seconds_per_iter": per_iter,
        "init_seconds_approx": init_s,
        "inertia": fit.inertia,
        "n_iter": fit.n_iter,
        "peak_rss_mb": peak_rss_mb(),
        "data_rss_mb": rss_data,
    })
}

fn bench_silhouette(args: &[String]) -> serde_json::Value {
    let x = data(args, 10);
    let labels = read_labels(&arg(args, "--labels").expect("--labels FILE"));
    let rss_data = current_rss_mb();
    let ctx = RunContext::new(0, DeviceKind::Cpu);
    let options = MetricsOptions {
        exact_silhouette_max: usize::MAX,
        silhouette_sample_size: usize::MAX,
        ..MetricsOptions::default()
    };
    let start = Instant::now();
    let m = metrics::compute(&x, &labels, &options, &ctx).unwrap_or_else(|e| panic!("{e}"));
    let seconds = start.elapsed().as_secs_f64();
    serde_json::json!({
        "engine": "clusterd-cpu",
        "threads": rayon::current_num_threads(),
        "n": x.rows(), "d": x.cols(),
        "seconds": seconds,
        "silhouette": m.silhouette_score,
        "peak_rss_mb": peak_rss_mb(),
        "data_rss_mb": rss_data,
    })
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
    let args: Vec<String> = std::env::args().collect();
    let out = match arg(&args, "--mode").as_deref() {
        Some("silhouette") => bench_silhouette(&args),
        Some("gemm") => bench_gemm(&args),
        Some("layouts") => bench_layouts(&args),
        _ => bench_kmeans(&args),
    };
    println!("{out}");
}
