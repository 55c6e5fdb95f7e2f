//! Benchmark binary of the label-producing algorithms, used by `scripts/bench/compare.py
//! --density` and `--algorithms`; prints one JSON line.
//!
//! ```text
//! cargo bench --bench algorithms -- --algo ALGO --data FILE [--labels-out FILE] [--params JSON]
//! ALGO: dbscan | hdbscan | optics | agglomerative | spectral | gaussian_mixture | mean_shift
//! ```
//!
//! `--data` is the raw little-endian file the compare script writes (u64 rows, u64 cols,
//! then rows×cols f32), so that every engine sees the same numbers. `--params` is the
//! `algorithm_params` object exactly as a client sends it (default `{}`), validated by the
//! algorithm's own `from_params`. `--labels-out` receives the labels as u64 count then that
//! many i64 (−1 = noise), for the script's ARI against scikit-learn.
//!
//! `seconds` is the fit alone (validation and data loading are left out); `peak_rss_mb`
//! is this process's VmHWM and `data_rss_mb` its resident size right after loading, so
//! the difference is what the fit itself added.

mod support;

use std::time::Instant;

use clusterd::algorithms::ClusterLabels;
use clusterd::algorithms::{
    agglomerative, dbscan, gaussian_mixture, hdbscan, mean_shift, optics, spectral,
};
use clusterd::model::{ApiError, Cancelled, DeviceKind, ParamMap, RunContext};
use support::{arg, read_raw};

fn write_labels(path: &str, labels: &[i64]) {
    let mut bytes = Vec::with_capacity(8 * (labels.len() + 1));
    bytes.extend_from_slice(&(labels.len() as u64).to_le_bytes());
    for &l in labels {
        bytes.extend_from_slice(&l.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn param_map(text: &str) -> ParamMap {
    let json: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("--params is not JSON: {e}"));
    ParamMap::from_json(&json).expect("--params must be a JSON object")
}

fn bad<T>(algo: &str, params: &str, e: ApiError) -> T {
    panic!("{algo} params {params}: {e:?}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let algo = arg(&args, "--algo").expect("--algo ALGO");
    let x = read_raw(&arg(&args, "--data").expect("--data FILE"));
    let params_text = arg(&args, "--params").unwrap_or_else(|| "{}".to_owned());
    let params = param_map(&params_text);
    let (n, d) = (x.rows(), x.cols());
    let rss_data = status_mb("VmRSS:");
    let ctx = RunContext::new(0, DeviceKind::Cpu);
    let seeded = |seed: Option<u64>| RunContext::new(seed.unwrap_or(0), DeviceKind::Cpu);

    // Validate first, so that `seconds` is the fit alone.
    let run: Box<dyn Fn() -> Result<ClusterLabels, Cancelled>> = match algo.as_str() {
        "dbscan" => {
            let p = dbscan::DbscanParams::from_params(&params)
                .unwrap_or_else(|e| bad(&algo, &params_text, e));
            Box::new(move || dbscan::fit(&x, &p, &ctx))
        }
        "hdbscan" => {
            let p = hdbscan::HdbscanParams::from_params(&params)
                .unwrap_or_else(|e| bad(&algo, &params_text, e));
            Box::new(move || hdbscan::fit(&x, &p, &ctx))
        }
        "optics" => {
            let p = optics::OpticsParams::from_params(&params)
                .unwrap_or_else(|e| bad(&algo, &params_text, e));
            Box::new(move || optics::fit(&x, &p, &ctx))
        }
        "agglomerative" => {
            let p = agglomerative::AgglomerativeParams::from_params(&params)
                .unwrap_or_else(|e| bad(&algo, &params_text, e));
            Box::new(move || agglomerative::fit(&x, &p, &ctx))
        }
        "spectral" => {
            let p = spectral::SpectralParams::from_params(&params)
                .unwrap_or_else(|e| bad(&algo, &params_text, e));
            let ctx = seeded(p.random_state);
            Box::new(move || spectral::fit(&x, &p, &ctx))
        }
        "gaussian_mixture" => {
            let p = gaussian_mixture::GaussianMixtureParams::from_params(&params)
                .unwrap_or_else(|e| bad(&algo, &params_text, e));
            let ctx = seeded(p.random_state);
            Box::new(move || {
                let fit = gaussian_mixture::fit(&x, &p, &ctx)
                    .unwrap_or_else(|e| panic!("gaussian_mixture: {e}"));
                // Components that end up with no row are not clusters.
                let mut used = fit.labels.clone();
                used.sort_unstable();
                used.dedup();
                Ok(ClusterLabels {
                    labels: fit.labels,
                    n_clusters: used.len(),
                })
            })
        }
        "mean_shift" => {
            let p = mean_shift::MeanShiftParams::from_params(&params)
                .unwrap_or_else(|e| bad(&algo, &params_text, e));
            Box::new(move || {
                let fit =
                    mean_shift::fit(&x, &p, &ctx).unwrap_or_else(|e| panic!("mean_shift: {e}"));
                Ok(ClusterLabels {
                    labels: fit.labels,
                    n_clusters: fit.n_clusters,
                })
            })
        }
        other => panic!("unknown --algo {other}"),
    };
    let start = Instant::now();
    let fit = run();
    let seconds = start.elapsed().as_secs_f64();
    let fit = fit.unwrap_or_else(|_| panic!("fit was cancelled"));

    if let Some(path) = arg(&args, "--labels-out") {
        write_labels(&path, &fit.labels);
    }
    let n_noise = fit.labels.iter().filter(|&&l| l < 0).count();
    let out = serde_json::json!({
        "engine": "clusterd-cpu",
        "algo": algo,
        "params": serde_json::from_str::<serde_json::Value>(&params_text).unwrap_or_default(),
        "threads": rayon::current_num_threads(),
        "n": n, "d": d,
        "seconds": seconds,
        "n_clusters": fit.n_clusters,
        "n_noise": n_noise,
        "peak_rss_mb": status_mb("VmHWM:"),
        "data_rss_mb": rss_data,
    });
    println!("{out}");
}
