//! The GPU Lloyd loop against the CPU one. Each test drives [`gpu::GpuLloyd`] directly
//! as well as through [`fit`], because `fit` falls back to the CPU silently and would
//! pass whether or not a kernel ran.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::algorithms::distance::row_sq_norms;
use crate::gpu::test_context;

/// `n` points around `k` centres 20 apart, noise of unit scale.
fn blobs(n: usize, d: usize, k: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..k * d)
        .map(|_| rng.random_range(-50.0f32..50.0))
        .collect();
    let data = (0..n)
        .flat_map(|i| {
            let c = i % k;
            (0..d)
                .map(|f| centres[c * d + f] + rng.random_range(-1.0f32..1.0))
                .collect::<Vec<_>>()
        })
        .collect();
    Matrix::from_vec(n, d, data).expect("n × d values")
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn gpu_lloyd_matches_cpu_lloyd_from_the_same_init_including_tiny_chunks() {
    let Some(gpu) = test_context() else { return };
    let ctx = RunContext::new(0, DeviceKind::Cpu);
    for (n, d, k) in [(1037, 3, 5), (1000, 17, 7), (600, 128, 4)] {
        let x = blobs(n, d, k, (n + d) as u64);
        let x_sq = row_sq_norms(&x);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let init = init::kmeans_plusplus(&x, &x_sq, k, &mut rng, &ctx).expect("not cancelled");
        let cpu =
            lloyd::run(&x, &x_sq, init.clone(), 300, 1e-4, &ctx, |_, _| {}).expect("not cancelled");
        for chunk in [None, Some(37)] {
            let lloyd_gpu = gpu::GpuLloyd::with_context(gpu.clone(), &x, chunk).expect("upload");
            let got = lloyd_gpu
                .run(&x, init.clone(), 300, 1e-4, &ctx, |_, _| {})
                .expect("the GPU run completes");
            assert_eq!(got.labels, cpu.labels, "n={n} d={d} k={k} chunk={chunk:?}");
            assert_eq!(got.n_iter, cpu.n_iter);
            assert!(
                rel(got.inertia, cpu.inertia) <= 1e-4,
                "{} vs {}",
                got.inertia,
                cpu.inertia
            );
            for (g, c) in got.centers.as_slice().iter().zip(cpu.centers.as_slice()) {
                assert!((g - c).abs() <= 1e-3 * (1.0 + c.abs()), "{g} vs {c}");
            }
        }
    }
}

#[test]
fn gpu_lloyd_relocates_empty_clusters_like_the_cpu() {
    let Some(gpu) = test_context() else { return };
    let ctx = RunContext::new(0, DeviceKind::Cpu);
    let x = blobs(500, 4, 3, 9);
    let x_sq = row_sq_norms(&x);
    // Two identical starting centres: the second can never win a row in the first
    // assignment, so it starts empty and must be relocated.
    let mut data = x.row(0).to_vec();
    data.extend_from_slice(x.row(0));
    data.extend_from_slice(x.row(1));
    let init = Matrix::from_vec(3, 4, data).expect("3 × 4 values");
    let cpu = lloyd::run(&x, &x_sq, init.clone(), 300, 1e-4, &ctx, |_, _| {}).expect("cpu");
    let got = gpu::GpuLloyd::with_context(gpu, &x, None)
        .expect("upload")
        .run(&x, init, 300, 1e-4, &ctx, |_, _| {})
        .expect("the GPU run completes");
    assert_eq!(got.labels, cpu.labels);
    assert!(rel(got.inertia, cpu.inertia) <= 1e-4);
}

#[test]
fn fit_on_the_gpu_device_matches_the_cpu_fit() {
    if test_context().is_none() {
        return;
    }
    let x = blobs(1200, 8, 5, 3);
    let params = KMeansParams {
        n_clusters: 5,
        init: KMeansInit::KMeansPlusPlus,
        n_init: 3,
        max_iter: 300,
        tol: 1e-4,
        random_state: Some(0),
    };
    let cpu = fit(&x, &params, &RunContext::new(42, DeviceKind::Cpu)).expect("cpu fit");
    let gpu = fit(&x, &params, &RunContext::new(42, DeviceKind::Gpu)).expect("gpu fit");
    assert_eq!(gpu.labels, cpu.labels);
    assert_eq!(gpu.n_iter, cpu.n_iter);
    assert!(
        rel(gpu.inertia, cpu.inertia) <= 1e-4,
        "{} vs {}",
        gpu.inertia,
        cpu.inertia
    );
}

#[test]
fn a_cancelled_gpu_run_is_cancelled_not_retried_on_the_cpu() {
    let Some(gpu) = test_context() else { return };
    let x = blobs(100, 2, 2, 1);
    let ctx = RunContext::new(0, DeviceKind::Gpu);
    ctx.cancel_token().cancel();
    let init = Matrix::from_vec(2, 2, x.rows_slice(0, 2).to_vec()).expect("2 × 2 values");
    let got = gpu::GpuLloyd::with_context(gpu, &x, None)
        .expect("upload")
        .run(&x, init, 10, 1e-4, &ctx, |_, _| {});
    assert!(matches!(got, Err(gpu::Stop::Cancelled(_))));
    let params = KMeansParams {
        n_clusters: 2,
        init: KMeansInit::Random,
        n_init: 1,
        max_iter: 10,
        tol: 1e-4,
        random_state: None,
    };
    assert!(fit(&x, &params, &ctx).is_err());
}

#[test]
fn data_beyond_the_resident_budget_streams_through_the_device_with_the_same_answer() {
    let Some(gpu) = test_context() else { return };
    let ctx = RunContext::new(0, DeviceKind::Cpu);
    let (n, d, k) = (1037, 17, 6);
    let x = blobs(n, d, k, 77);
    let x_sq = row_sq_norms(&x);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let init = init::kmeans_plusplus(&x, &x_sq, k, &mut rng, &ctx).expect("not cancelled");
    let resident = gpu::GpuLloyd::with_context(gpu.clone(), &x, None).expect("upload");
    assert!(!resident.is_streamed());
    // A budget of 100 rows: eleven windows per pass, each in 37-row chunks.
    let budget = 100 * (d as u64 + 1) * 4;
    let streamed =
        gpu::GpuLloyd::with_budget(gpu.clone(), &x, Some(37), budget).expect("streamed setup");
    assert!(streamed.is_streamed());
    let a = resident
        .run(&x, init.clone(), 300, 1e-4, &ctx, |_, _| {})
        .expect("resident run");
    let b = streamed
        .run(&x, init, 300, 1e-4, &ctx, |_, _| {})
        .expect("streamed run");
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.n_iter, b.n_iter);
    assert!(
        rel(b.inertia, a.inertia) <= 1e-4,
        "{} vs {}",
        b.inertia,
        a.inertia
    );
}
