//! k-means benchmark on the CPU engine: `cargo bench --bench kmeans -- [--data FILE]
//! [--n N --d D] --k K [--max-iter I] [--tol T] [--n-init R]`.
//!
//! `--data` reads a raw little-endian file (u64 rows, u64 cols, then rows×cols f32) as
//! written by `scripts/bench/compare_kmeans.py`, so that scikit-learn and FAISS see the
//! same numbers; without it a seeded Gaussian-blob set of N×D is generated. Prints one
//! JSON line: time, inertia, iterations and peak resident memory.

use std::time::Instant;

use clusterd::algorithms::kmeans::{self, KMeansInit, KMeansParams};
use clusterd::model::{DeviceKind, Matrix, RunContext};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn parse<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn read_raw(path: &str) -> Matrix {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (n, d) = (word(0), word(1));
    let data: Vec<f32> = bytes[16..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Matrix::from_vec(n, d, data).unwrap_or_else(|| panic!("{path}: size does not match {n}x{d}"))
}

fn blobs(n: usize, d: usize, k: usize) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<f32> = (0..k * d).map(|_| rng.random_range(-10.0..10.0)).collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = i % k;
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let k: usize = parse(&args, "--k", 50);
    let x = match arg(&args, "--data") {
        Some(path) => read_raw(&path),
        None => blobs(parse(&args, "--n", 100_000), parse(&args, "--d", 128), k),
    };
    let params = KMeansParams {
        n_clusters: k,
        init: KMeansInit::KMeansPlusPlus,
        n_init: parse(&args, "--n-init", 1),
        max_iter: parse(&args, "--max-iter", 300),
        tol: parse(&args, "--tol", 1e-4),
        random_state: Some(0),
    };
    let ctx = RunContext::new(0, DeviceKind::Cpu);
    let start = Instant::now();
    let fit = match kmeans::fit(&x, &params, &ctx) {
        Ok(f) => f,
        Err(e) => panic!("fit: {e}"),
    };
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "engine": "clusterd-cpu",
            "threads": rayon::current_num_threads(),
            "n": x.rows(), "d": x.cols(), "k": k,
            "seconds": seconds,
            "inertia": fit.inertia,
            "n_iter": fit.n_iter,
            "peak_rss_mb": peak_rss_mb(),
        })
    );
}
