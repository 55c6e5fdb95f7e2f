//! Every kernel against its CPU twin on seeded random data, with sizes that are not
//! multiples of the workgroup sizes and chunks forced down to a few rows.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::assign::assign_nearest;
use super::centroid::cluster_sums;
use super::device::grid;
use super::normalize::normalize_rows;
use super::*;
use crate::algorithms::distance::{nearest_centers, row_sq_norms};
use crate::model::{Matrix, RunContext};

fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..rows * cols)
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect();
    Matrix::from_vec(rows, cols, data).expect("rows × cols values")
}

/// `k` rows of `x` picked by a seeded generator.
fn pick_rows(x: &Matrix, k: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..k)
        .flat_map(|_| x.row(rng.random_range(0..x.rows())).to_vec())
        .collect();
    Matrix::from_vec(k, x.cols(), data).expect("k × d values")
}

fn exact_sq(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum()
}

#[test]
fn select_device_cpu_is_always_the_cpu_engine() {
    let d = select_device(DevicePreference::Cpu).expect("the CPU is always there");
    assert_eq!(d.kind(), crate::model::DeviceKind::Cpu);
    assert_eq!(d.info().kind, "cpu");
}

#[test]
fn select_device_gpu_takes_any_adapter_and_auto_only_hardware() {
    let Some(ctx) = test_context() else { return };
    let gpu = select_device(DevicePreference::Gpu).expect("an adapter is open");
    assert_eq!(gpu.kind(), crate::model::DeviceKind::Gpu);
    assert_eq!(gpu.info().kind, "gpu");
    assert_eq!(gpu.info().name, ctx.adapter_info.name);
    assert_eq!(gpu.info().backend, ctx.adapter_info.backend.to_str());
    let auto = select_device(DevicePreference::Auto).expect("auto never fails");
    let hardware = matches!(
        ctx.adapter_info.device_type,
        wgpu::DeviceType::DiscreteGpu
            | wgpu::DeviceType::IntegratedGpu
            | wgpu::DeviceType::VirtualGpu
    );
    let expected = if hardware {
        crate::model::DeviceKind::Gpu
    } else {
        crate::model::DeviceKind::Cpu
    };
    assert_eq!(auto.kind(), expected);
}

#[test]
fn device_preference_parses_the_three_names_only() {
    assert_eq!("auto".parse(), Ok(DevicePreference::Auto));
    assert_eq!("gpu".parse(), Ok(DevicePreference::Gpu));
    assert_eq!("cpu".parse(), Ok(DevicePreference::Cpu));
    assert!("GPU".parse::<DevicePreference>().is_err());
}

#[test]
fn invalid_shader_is_a_typed_error_not_a_panic() {
    let Some(ctx) = test_context() else { return };
    let err = ctx
        .compile("broken", "@compute @workgroup_size(1) fn main( {", "main")
        .expect_err("a WGSL syntax error must not compile");
    assert!(matches!(err, GpuError::Validation(_)), "{err:?}");
    let err = ctx
        .compile(
            "no entry",
            "@compute @workgroup_size(1) fn main() {}",
            "absent",
        )
        .expect_err("a missing entry point must not compile");
    assert!(matches!(err, GpuError::Validation(_)), "{err:?}");
    // The device is still usable afterwards.
    ctx.compile("fine", "@compute @workgroup_size(1) fn main() {}", "main")
        .expect("a valid shader compiles");
}

#[test]
fn grid_grows_a_second_dimension_past_the_per_dimension_limit() {
    let Some(ctx) = test_context() else { return };
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    assert_eq!(grid(&ctx, 0), [1, 1]);
    assert_eq!(grid(&ctx, 5), [5, 1]);
    assert_eq!(grid(&ctx, max as usize), [max, 1]);
    assert_eq!(grid(&ctx, max as usize + 1), [max, 2]);
}

#[test]
fn normalize_rows_matches_cpu_twin() {
    let Some(ctx) = test_context() else { return };
    for (n, d) in [(1000, 3), (1037, 17), (257, 128), (1, 1)] {
        let mut x = random_matrix(n, d, (n * d) as u64);
        // Zero rows must stay zero, not become NaN.
        x.row_mut(0).fill(0.0);
        let mut want = x.clone();
        want.normalize_rows();
        for chunk in [None, Some(37)] {
            let mut got = x.clone();
            normalize_rows(&ctx, &mut got, chunk).expect("normalize on the device");
            for (i, (g, w)) in got.as_slice().iter().zip(want.as_slice()).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-6,
                    "n={n} d={d} chunk={chunk:?} [{i}]: {g} vs {w}"
                );
            }
            assert!(got.row(0).iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn assign_nearest_matches_cpu_twin() {
    let Some(ctx) = test_context() else { return };
    let run = RunContext::new(0, crate::model::DeviceKind::Cpu);
    for (n, d, k) in [
        (1000, 3, 5),
        (1037, 17, 67),
        (300, 128, 1),
        (1037, 128, 5),
        (40, 2, 67),
    ] {
        let x = random_matrix(n, d, (n + d + k) as u64);
        let centers = pick_rows(&x, k, 7);
        let (want_l, want_s) = nearest_centers(
            &x,
            &row_sq_norms(&x),
            &centers,
            &row_sq_norms(&centers),
            &run,
        )
        .expect("not cancelled");
        let dev = GpuMatrix::upload(&ctx, &x, None).expect("upload");
        let (got_l, got_s) = assign_nearest(&ctx, &dev, &centers).expect("assign on the device");
        assert_eq!(got_l.len(), n);
        let mut differ = 0;
        for i in 0..n {
            let (g, w) = (got_l[i] as usize, want_l[i] as usize);
            assert!(g < k);
            let scale = 1.0 + f64::from(row_sq_norms(&x)[i]);
            if g != w {
                // Only a near-tie may go either way under a different summation order.
                differ += 1;
                let dg = exact_sq(x.row(i), centers.row(g));
                let dw = exact_sq(x.row(i), centers.row(w));
                assert!(
                    (dg - dw).abs() <= 1e-4 * scale,
                    "row {i}: {g} ({dg}) vs {w} ({dw})"
                );
            }
            assert!(got_s[i] >= 0.0);
            let err = (f64::from(got_s[i]) - f64::from(want_s[i])).abs();
            assert!(
                err <= 1e-4 * scale,
                "row {i}: {} vs {}",
                got_s[i],
                want_s[i]
            );
        }
        assert!(differ <= n / 100, "{differ} of {n} labels differ");
    }
}

#[test]
fn assign_nearest_breaks_exact_ties_toward_the_lowest_index() {
    let Some(ctx) = test_context() else { return };
    let x = random_matrix(500, 9, 11);
    let base = pick_rows(&x, 5, 3);
    // 40 centres repeating the same 5: copies sit in other tiles and other lanes, and
    // only the first copy may ever win.
    let data = (0..40).flat_map(|j| base.row(j % 5).to_vec()).collect();
    let centers = Matrix::from_vec(40, 9, data).expect("40 × 9 values");
    let dev = GpuMatrix::upload(&ctx, &x, None).expect("upload");
    let (labels, _) = assign_nearest(&ctx, &dev, &centers).expect("assign on the device");
    let (only_base, _) = assign_nearest(&ctx, &dev, &base).expect("assign on the device");
    assert_eq!(labels, only_base);
}

#[test]
fn assign_nearest_with_no_centres_matches_the_twin_convention() {
    let Some(ctx) = test_context() else { return };
    let x = random_matrix(10, 4, 1);
    let dev = GpuMatrix::upload(&ctx, &x, None).expect("upload");
    let (labels, sq) = assign_nearest(&ctx, &dev, &Matrix::zeros(0, 4)).expect("no centres");
    assert_eq!(labels, vec![0; 10]);
    assert!(sq.iter().all(|v| v.is_infinite()));
}

#[test]
fn tiny_chunks_give_the_same_assignment_as_one_chunk() {
    let Some(ctx) = test_context() else { return };
    let x = random_matrix(1037, 17, 5);
    let centers = pick_rows(&x, 67, 9);
    let whole = GpuMatrix::upload(&ctx, &x, None).expect("upload");
    let tiny = GpuMatrix::upload(&ctx, &x, Some(37)).expect("upload");
    assert_eq!(whole.chunks.len(), 1);
    assert_eq!(tiny.chunks.len(), 1037usize.div_ceil(37));
    // Rows are independent, so chunking must not change a single bit.
    assert_eq!(
        assign_nearest(&ctx, &whole, &centers).expect("assign"),
        assign_nearest(&ctx, &tiny, &centers).expect("assign")
    );
}

fn cpu_cluster_sums(x: &Matrix, labels: &[u32], k: usize) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let d = x.cols();
    let (mut sums, mut abs, mut counts) = (vec![0f64; k * d], vec![0f64; k * d], vec![0; k]);
    for (i, &l) in labels.iter().enumerate() {
        let l = l as usize;
        counts[l] += 1;
        for (f, &v) in x.row(i).iter().enumerate() {
            sums[l * d + f] += f64::from(v);
            abs[l * d + f] += f64::from(v).abs();
        }
    }
    (sums, abs, counts)
}

#[test]
fn cluster_sums_match_cpu_twin_with_empty_clusters_and_tiny_chunks() {
    let Some(ctx) = test_context() else { return };
    for (n, d, k) in [(1000, 3, 5), (1037, 17, 67), (1037, 128, 1), (600, 5, 3)] {
        let x = random_matrix(n, d, (3 * n + d) as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        // Cluster 1 is left empty whenever there is one; and with k = 3 one cluster
        // takes almost every row, so its run spans many segments.
        let labels: Vec<u32> = (0..n)
            .map(|_| {
                let l = rng.random_range(0..k as u32);
                if k > 1 && l == 1 { 0 } else { l }
            })
            .collect();
        let (want, abs, want_counts) = cpu_cluster_sums(&x, &labels, k);
        for chunk in [None, Some(37)] {
            let dev = GpuMatrix::upload(&ctx, &x, chunk).expect("upload");
            let got = cluster_sums(&ctx, &dev, &labels, k).expect("sums on the device");
            assert_eq!(got.counts, want_counts);
            if k > 1 {
                assert_eq!(got.counts[1], 0);
            }
            for (i, ((&g, &w), &a)) in got.sums.iter().zip(&want).zip(&abs).enumerate() {
                let err = (f64::from(g) - w).abs();
                assert!(
                    err <= 1e-6 * (1.0 + a),
                    "n={n} d={d} k={k} chunk={chunk:?} [{i}]: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn cluster_sums_are_bit_identical_across_calls() {
    let Some(ctx) = test_context() else { return };
    let x = random_matrix(1037, 17, 2);
    let labels: Vec<u32> = (0..1037u32).map(|i| (i * 7) % 5).collect();
    let dev = GpuMatrix::upload(&ctx, &x, Some(100)).expect("upload");
    let a = cluster_sums(&ctx, &dev, &labels, 5).expect("sums");
    let b = cluster_sums(&ctx, &dev, &labels, 5).expect("sums");
    assert_eq!(a, b);
}

#[test]
fn cluster_sums_reject_a_label_out_of_range() {
    let Some(ctx) = test_context() else { return };
    let x = random_matrix(10, 2, 2);
    let dev = GpuMatrix::upload(&ctx, &x, None).expect("upload");
    let err = cluster_sums(&ctx, &dev, &[5; 10], 5).expect_err("label 5 of 5 clusters");
    assert!(matches!(err, GpuError::Unsupported(_)));
}

/// The twin's definition, pair by pair in f64.
fn naive_silhouette_sums(x: &Matrix, labels: &[u32], k: usize) -> Vec<f64> {
    let n = x.rows();
    let mut out = vec![0f64; n * k];
    for i in 0..n {
        for (m, &l) in labels.iter().enumerate() {
            out[i * k + l as usize] += exact_sq(x.row(i), x.row(m)).sqrt();
        }
    }
    out
}

#[test]
fn silhouette_sums_match_pairwise_distances_with_tiny_chunks() {
    let Some(ctx) = test_context() else { return };
    for (n, d, k) in [(1037, 3, 5), (300, 17, 1), (200, 128, 67)] {
        let x = random_matrix(n, d, (n * 3 + k) as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(d as u64);
        let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
        let want = naive_silhouette_sums(&x, &labels, k);
        for chunk in [None, Some(37)] {
            let got = silhouette::silhouette_sums_chunked(&ctx, &x, &labels, k, chunk)
                .expect("silhouette on the device");
            assert_eq!(got.len(), n * k);
            for (e, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (1.0 + w),
                    "n={n} d={d} k={k} chunk={chunk:?} [{e}]: {g} vs {w}"
                );
            }
        }
    }
}
