//! The GPU-only modes of the benchmark binary: what the adapter is, and the kernels timed
//! on their own, each against its CPU twin on the same data.
//!
//! Times are host wall-clock (`Instant`), never wgpu timestamp queries: the shared device
//! is opened without `TIMESTAMP_QUERY`, and a second device just for timing would not be
//! the one the engine uses. "End to end" is one call of the host wrapper as the engine
//! makes it (centre upload, one submission and wait per chunk, read-back of the results).
//! "Kernel" is one submission holding `reps` passes of the kernel over every chunk,
//! back to back, divided by `reps`: the submission's and the wait's fixed cost is spread
//! over the passes, so this approaches the GPU's own execution time.

use std::sync::Arc;
use std::time::Instant;

use clusterd::algorithms::distance::{nearest_centers, row_sq_norms};
use clusterd::algorithms::neighbors::{Metric, Points};
use clusterd::gpu::device::grid;
use clusterd::gpu::matrix::default_chunk_rows;
use clusterd::gpu::{self, GpuContext, GpuMatrix};
use clusterd::model::{DeviceKind, Matrix, RunContext};

use super::{blobs, fail, labels_hash, parse, warnings};

/// `shaders/assign_nearest.wgsl`, the kernel `gpu::assign::assign_nearest` dispatches.
const ASSIGN_SHADER: &str = include_str!("../../shaders/assign_nearest.wgsl");

/// Rows per workgroup of the assignment kernel (`T` in the shader).
const ROW_TILE: usize = 16;

/// The assignment kernel's uniform, laid out as `Params` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AssignParams {
    rows: u32,
    d: u32,
    k: u32,
    grid_x: u32,
}

fn context() -> Arc<GpuContext> {
    gpu::shared_context().unwrap_or_else(|e| fail(&format!("no wgpu device: {e}")))
}

fn or_fail<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| fail(&format!("{what}: {e}")))
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `--mode adapter`: the device the engine opens, its limits, and how the kernels will
/// chunk the data on it.
pub fn adapter() -> serde_json::Value {
    let t = Instant::now();
    let ctx = context();
    let open_s = secs(t);
    let i = &ctx.adapter_info;
    let l = &ctx.limits;
    let chunk_rows: serde_json::Map<String, serde_json::Value> = [128usize, 384, 768]
        .iter()
        .map(|&d| {
            let rows = default_chunk_rows(&ctx, d).map_err(|e| e.to_string());
            (format!("d{d}"), serde_json::json!(rows.ok()))
        })
        .collect();
    serde_json::json!({
        "name": i.name,
        "backend": i.backend.to_str(),
        "device_type": format!("{:?}", i.device_type),
        "vendor": format!("{:#06x}", i.vendor),
        "device": format!("{:#06x}", i.device),
        "driver": i.driver,
        "driver_info": i.driver_info,
        "open_seconds": open_s,
        "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
        "max_buffer_size": l.max_buffer_size,
        "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
        "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
        "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
        "chunk_rows": chunk_rows,
        "warnings": warnings(),
    })
}

/// `k` rows spread evenly through `x`, as the `gemm` mode picks its centres.
fn spread_rows(x: &Matrix, k: usize) -> Matrix {
    let mut centers = Matrix::zeros(k, x.cols());
    let step = (x.rows() / k.max(1)).max(1);
    for j in 0..k.min(x.rows()) {
        centers.row_mut(j).copy_from_slice(x.row(j * step));
    }
    centers
}

/// `--mode gpu-assign`: the fused distance + argmin kernel of every Lloyd iteration,
/// N×D data against K centres, end to end and kernel only; then the CPU twin on the first
/// `--check` rows (default 20000) for agreement.
pub fn bench_assign(args: &[String]) -> serde_json::Value {
    let n: usize = parse(args, "--n", 100_000);
    let d: usize = parse(args, "--d", 128);
    let k: usize = parse(args, "--k", 100);
    let reps: usize = parse::<usize>(args, "--reps", 5).max(1);
    let check: usize = parse::<usize>(args, "--check", 20_000).min(n);
    let t = Instant::now();
    let x = blobs(n, d, k, parse(args, "--box", 10.0));
    let generate_s = secs(t);
    let centers = spread_rows(&x, k);
    let ctx = context();

    let t = Instant::now();
    let gx = or_fail("upload", GpuMatrix::upload(&ctx, &x, None));
    let upload_s = secs(t);

    // The first call compiles the pipeline; it is not timed.
    let t = Instant::now();
    let (labels, sq) = or_fail("assign", gpu::assign::assign_nearest(&ctx, &gx, &centers));
    let first_s = secs(t);
    let mut e2e = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        or_fail("assign", gpu::assign::assign_nearest(&ctx, &gx, &centers));
        e2e.push(secs(t));
    }

    let pipeline = or_fail(
        "pipeline",
        ctx.pipeline("assign_nearest", ASSIGN_SHADER, "main"),
    );
    let c_sq = row_sq_norms(&centers);
    let binds = or_fail(
        "bind",
        ctx.scoped(|| {
            let c_buf = ctx.storage("centres", centers.as_slice());
            let c_sq_buf = ctx.storage("centre norms", &c_sq);
            gx.chunks
                .iter()
                .map(|chunk| {
                    let g = grid(&ctx, chunk.rows.div_ceil(ROW_TILE));
                    let params = AssignParams {
                        rows: chunk.rows as u32,
                        d: d as u32,
                        k: k as u32,
                        grid_x: g[0],
                    };
                    let uniform = ctx.uniform("assign params", &params);
                    let l_buf = ctx.output("labels", chunk.rows);
                    let s_buf = ctx.output("min sq", chunk.rows);
                    let bind = ctx.bind(
                        &pipeline,
                        &[
                            &uniform,
                            &chunk.x,
                            &chunk.x_sq,
                            &c_buf,
                            &c_sq_buf,
                            &l_buf,
                            &s_buf,
                        ],
                    );
                    (bind, g)
                })
                .collect::<Vec<_>>()
        }),
    );
    let pass: Vec<_> = binds.iter().map(|(b, g)| (&*pipeline, b, *g)).collect();
    or_fail("warm-up pass", ctx.run(&pass));
    let all: Vec<_> = (0..reps).flat_map(|_| pass.iter().copied()).collect();
    let t = Instant::now();
    or_fail("kernel passes", ctx.run(&all));
    let kernel_s = secs(t) / reps as f64;

    let t = Instant::now();
    let xs = Matrix::from_vec(check, d, x.rows_slice(0, check).to_vec())
        .unwrap_or_else(|| fail("check rows"));
    let cpu_ctx = RunContext::new(0, DeviceKind::Cpu);
    let (cpu_labels, cpu_sq) = or_fail(
        "cpu twin",
        nearest_centers(&xs, &row_sq_norms(&xs), &centers, &c_sq, &cpu_ctx),
    );
    let cpu_check_s = secs(t);
    let label_mismatches = cpu_labels
        .iter()
        .zip(&labels)
        .filter(|(a, b)| a != b)
        .count();
    // Relative to ‖x‖² + ‖c‖², the size of the terms the expanded form cancels: a row that
    // is one of the centres has a distance of ~0 on both devices, and any ratio to that
    // would be noise.
    let x_sq = row_sq_norms(&xs);
    let max_rel_sq_diff = (0..check)
        .map(|i| {
            let scale = f64::from(x_sq[i]) + f64::from(c_sq[cpu_labels[i] as usize]);
            (f64::from(cpu_sq[i]) - f64::from(sq[i])).abs() / scale.max(f64::MIN_POSITIVE)
        })
        .fold(0.0, f64::max);

    let flops = 2.0 * n as f64 * d as f64 * k as f64;
    let e2e_best = e2e.iter().copied().fold(f64::INFINITY, f64::min);
    serde_json::json!({
        "engine": "clusterd-gpu-assign",
        "n": n, "d": d, "k": k, "reps": reps,
        "chunks": gx.chunks.len(), "chunk_rows": gx.chunk_rows,
        "generate_seconds": generate_s,
        "upload_seconds": upload_s,
        "upload_gb_per_s": (n * (d + 1) * 4) as f64 / upload_s / 1e9,
        "first_call_seconds": first_s,
        "e2e_seconds_best": e2e_best,
        "e2e_seconds_median": median(e2e),
        "e2e_gflops": flops / e2e_best / 1e9,
        "kernel_seconds": kernel_s,
        "kernel_gflops": flops / kernel_s / 1e9,
        "check_rows": check,
        "check_label_mismatches": label_mismatches,
        "check_max_rel_sq_diff": max_rel_sq_diff,
        "cpu_check_seconds": cpu_check_s,
        "cpu_check_gflops": 2.0 * check as f64 * d as f64 * k as f64 / cpu_check_s / 1e9,
        "threads": rayon::current_num_threads(),
        "warnings": warnings(),
    })
}

/// The silhouette kernel alone (`gpu::silhouette::silhouette_sums`: upload, one submission
/// per row chunk, read-back of the N×K sums), for its rate: 3 flops (subtract, multiply,
/// add) per pair and feature.
pub fn silhouette_kernel(x: &Matrix, labels: &[i64]) -> serde_json::Value {
    let ctx = context();
    let k = labels.iter().copied().max().map_or(0, |m| m + 1) as usize;
    let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let t = Instant::now();
    let sums = or_fail(
        "silhouette kernel",
        gpu::silhouette::silhouette_sums(&ctx, x, &labels, k),
    );
    let seconds = secs(t);
    let n = x.rows() as f64;
    serde_json::json!({
        "seconds": seconds,
        "gflops": 3.0 * n * n * x.cols() as f64 / seconds / 1e9,
        "sums": sums.len(),
    })
}

/// The data centred on its column means: what `Points` hands the neighbour kernels.
fn centred(x: &Matrix) -> Matrix {
    let (n, d) = (x.rows(), x.cols());
    let mut mean = vec![0f64; d];
    for i in 0..n {
        for (m, &v) in mean.iter_mut().zip(x.row(i)) {
            *m += f64::from(v);
        }
    }
    let mean: Vec<f32> = mean.iter().map(|&m| (m / n.max(1) as f64) as f32).collect();
    let mut c = x.clone();
    for i in 0..n {
        for (v, &m) in c.row_mut(i).iter_mut().zip(&mean) {
            *v -= m;
        }
    }
    c
}

/// `--mode gpu-knn`: the neighbour kernels of DBSCAN/HDBSCAN/OPTICS on N×D blobs: the kNN
/// candidate and radius-count kernels alone, then the exact `Points::knn` and
/// `Points::dense_rows` (kernel + exact refinement) on the GPU against the CPU engine,
/// whose answers must be identical. `--k` neighbours (the kernel is asked for
/// `k + k/2 + 8`, as `Points` asks); the radius is the median distance to the k-th
/// neighbour, so that about half the rows are dense.
pub fn bench_knn(args: &[String]) -> serde_json::Value {
    let n: usize = parse(args, "--n", 50_000);
    let d: usize = parse(args, "--d", 128);
    let k: usize = parse::<usize>(args, "--k", 16).clamp(1, n.max(1));
    let clusters: usize = parse(args, "--clusters", 50);
    let x = blobs(n, d, clusters, parse(args, "--box", 10.0));
    let ctx = context();
    let xc = centred(&x);
    let xc_sq = row_sq_norms(&xc);
    let wide = (k + k / 2 + 8).min(gpu::neighbors::MAX_K).min(n).max(k);
    let flops = 2.0 * n as f64 * n as f64 * d as f64;

    let t = Instant::now();
    or_fail(
        "knn kernel",
        gpu::neighbors::knn_candidates(&ctx, &xc, &xc_sq, wide),
    );
    let knn_kernel_s = secs(t);

    let points = Points::new(&x, Metric::Euclidean);
    let gpu_ctx = RunContext::new(0, DeviceKind::Gpu);
    let cpu_ctx = RunContext::new(0, DeviceKind::Cpu);
    let t = Instant::now();
    let knn_gpu = or_fail("gpu knn", points.knn(k, &gpu_ctx));
    let knn_gpu_s = secs(t);
    let t = Instant::now();
    let knn_cpu = or_fail("cpu knn", points.knn(k, &cpu_ctx));
    let knn_cpu_s = secs(t);
    let knn_rows_differing = (0..n)
        .filter(|&i| {
            knn_gpu.indices_of(i) != knn_cpu.indices_of(i)
                || knn_gpu.distances_of(i) != knn_cpu.distances_of(i)
        })
        .count();

    let eps = median((0..n).map(|i| knn_cpu.kth_distance(i)).collect());
    let t = Instant::now();
    or_fail(
        "radius kernel",
        gpu::neighbors::radius_counts(&ctx, &xc, &xc_sq, (eps * eps) as f32),
    );
    let radius_kernel_s = secs(t);
    let t = Instant::now();
    let dense_gpu = or_fail("gpu dense rows", points.dense_rows(eps, k, &gpu_ctx));
    let dense_gpu_s = secs(t);
    let t = Instant::now();
    let dense_cpu = or_fail("cpu dense rows", points.dense_rows(eps, k, &cpu_ctx));
    let dense_cpu_s = secs(t);

    serde_json::json!({
        "engine": "clusterd-gpu-knn",
        "n": n, "d": d, "k": k, "candidates": wide, "clusters": clusters,
        "knn_kernel_seconds": knn_kernel_s,
        "knn_kernel_gflops": flops / knn_kernel_s / 1e9,
        "knn_gpu_seconds": knn_gpu_s,
        "knn_cpu_seconds": knn_cpu_s,
        "knn_rows_differing": knn_rows_differing,
        "knn_hash": labels_hash(knn_gpu.indices.iter().map(|&j| u64::from(j))),
        "eps": eps,
        "radius_kernel_seconds": radius_kernel_s,
        "radius_kernel_gflops": flops / radius_kernel_s / 1e9,
        "dense_gpu_seconds": dense_gpu_s,
        "dense_cpu_seconds": dense_cpu_s,
        "dense_rows": dense_cpu.iter().filter(|&&b| b).count(),
        "dense_rows_differing": dense_gpu.iter().zip(&dense_cpu).filter(|(a, b)| a != b).count(),
        "threads": rayon::current_num_threads(),
        "warnings": warnings(),
    })
}
