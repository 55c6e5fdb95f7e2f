//! `shaders/knn.wgsl` against a brute-force scan in f64 on seeded data: blobs (so that
//! neighbourhoods and radius counts vary), sizes that are not multiples of the tiles,
//! duplicate rows, and chunks forced small enough to split queries and data.
//!
//! The kernel ranks by the expanded form ||x||² + ||y||² − 2x·y in f32, whose rounding
//! error scales with the squared norms involved, so "a tie" below means two exact
//! squared distances within `1e-4 · (1 + ||xᵢ||² + d_k)` of each other.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::neighbors::{
    MAX_K, knn_candidates, knn_candidates_chunked, radius_counts, radius_counts_chunked,
};
use super::*;
use crate::algorithms::distance::row_sq_norms;
use crate::model::Matrix;

/// `n` rows around `centres` random centres in [-10, 10]^d, each coordinate spread
/// uniformly ±`spread` around its centre.
fn blobs(n: usize, d: usize, centres: usize, spread: f32, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c: Vec<f32> = (0..centres * d)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    let data = (0..n)
        .flat_map(|_| {
            let j = rng.random_range(0..centres);
            (0..d)
                .map(|f| c[j * d + f] + rng.random_range(-spread..spread))
                .collect::<Vec<_>>()
        })
        .collect();
    Matrix::from_vec(n, d, data).expect("n × d values")
}

/// `x` with `extra` copies of its own rows inserted at random places, so that copies
/// come both before and after their originals.
fn with_duplicates(x: &Matrix, extra: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<Vec<f32>> = (0..x.rows()).map(|i| x.row(i).to_vec()).collect();
    for _ in 0..extra {
        let src = rng.random_range(0..rows.len());
        let copy = rows[src].clone();
        let at = rng.random_range(0..=rows.len());
        rows.insert(at, copy);
    }
    let n = rows.len();
    Matrix::from_vec(n, x.cols(), rows.concat()).expect("n × d values")
}

/// Row `i` as bits: the key under which identical rows meet.
fn row_bits(x: &Matrix, i: usize) -> Vec<u32> {
    x.row(i).iter().map(|v| v.to_bits()).collect()
}

fn exact_sq(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2))
        .sum()
}

/// Exact squared distances from row `i` to every row.
fn exact_row(x: &Matrix, i: usize) -> Vec<f64> {
    (0..x.rows())
        .map(|j| exact_sq(x.row(i), x.row(j)))
        .collect()
}

fn tolerance(x_sq_i: f32, scale: f64) -> f64 {
    1e-4 * (1.0 + f64::from(x_sq_i) + scale)
}

/// Asserts that `(indices, distances)` are the k nearest rows of every row of `x`,
/// except for swaps between near-ties, and returns how many rows differ from the
/// brute-force answer at all.
fn assert_knn_matches_brute_force(
    x: &Matrix,
    k: usize,
    indices: &[u32],
    distances: &[f32],
    label: &str,
) -> usize {
    let n = x.rows();
    let x_sq = row_sq_norms(x);
    assert_eq!(indices.len(), n * k, "{label}");
    assert_eq!(distances.len(), n * k, "{label}");
    let differ: usize = (0..n)
        .into_par_iter()
        .map(|i| {
            let exact = exact_row(x, i);
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_by(|&a, &b| {
                exact[a as usize]
                    .total_cmp(&exact[b as usize])
                    .then(a.cmp(&b))
            });
            let want = &order[..k];
            let dk = exact[want[k - 1] as usize];
            let tol = tolerance(x_sq[i], dk);
            let gi = &indices[i * k..(i + 1) * k];
            let gd = &distances[i * k..(i + 1) * k];
            for s in 0..k {
                let j = gi[s] as usize;
                assert!(j < n, "{label} row {i}: index {j} of {n}");
                assert!(
                    (f64::from(gd[s]) - exact[j]).abs() <= tol,
                    "{label} row {i}: distance to {j} {} vs exact {}",
                    gd[s],
                    exact[j]
                );
                assert!(
                    exact[j] <= dk + tol,
                    "{label} row {i}: {j} at {} is beyond the k-th distance {dk}",
                    exact[j]
                );
                if s > 0 {
                    assert!(
                        (gd[s - 1], gi[s - 1]) < (gd[s], gi[s]),
                        "{label} row {i}: not ascending by (distance, index) at {s}: {gi:?} {gd:?}"
                    );
                }
            }
            for &j in want {
                if exact[j as usize] < dk - tol {
                    assert!(
                        gi.contains(&j),
                        "{label} row {i}: {j} at {} (k-th {dk}) is missing from {gi:?}",
                        exact[j as usize]
                    );
                }
            }
            let mut got = gi.to_vec();
            got.sort_unstable();
            let mut want = want.to_vec();
            want.sort_unstable();
            usize::from(got != want)
        })
        .sum();
    // Near-ties at the k-th place are rare on continuous data.
    assert!(
        differ <= n / 100 + 1,
        "{label}: {differ} of {n} rows differ"
    );
    differ
}

#[test]
fn knn_candidates_match_brute_force_knn() {
    let Some(ctx) = test_context() else { return };
    for (n, d, k, chunk) in [
        (3000, 40, 16, None),
        // Ragged: not a multiple of the 64-query workgroup, the 32-row tile nor the
        // 16-feature slab; and split into query and data chunks.
        (1037, 43, 7, Some(300)),
        (1037, 43, MAX_K, None),
        (700, 3, 1, Some(256)),
        (500, 384, 16, None),
    ] {
        let x = blobs(n, d, 12, 2.0, (n * d + k) as u64);
        let x_sq = row_sq_norms(&x);
        let (gi, gd) =
            knn_candidates_chunked(&ctx, &x, &x_sq, k, chunk).expect("kNN on the device");
        let label = format!("n={n} d={d} k={k} chunk={chunk:?}");
        assert_knn_matches_brute_force(&x, k, &gi, &gd, &label);
        // Every row is its own nearest neighbour up to a tie with an identical row.
        for i in 0..n {
            assert!(
                gi[i * k..(i + 1) * k].contains(&(i as u32)),
                "{label} row {i}"
            );
        }
    }
}

#[test]
fn knn_candidates_match_brute_force_knn_with_duplicate_rows() {
    let Some(ctx) = test_context() else { return };
    let x = with_duplicates(&blobs(1500, 40, 8, 2.0, 21), 500, 22);
    let x_sq = row_sq_norms(&x);
    let k = 16;
    let (gi, gd) = knn_candidates_chunked(&ctx, &x, &x_sq, k, Some(777)).expect("kNN");
    assert_knn_matches_brute_force(&x, k, &gi, &gd, "duplicates");
    // Identical rows tie exactly on the device too, so of a group of copies the lower
    // indices always come first and are never skipped.
    let mut groups: HashMap<Vec<u32>, Vec<u32>> = HashMap::new();
    for i in 0..x.rows() {
        groups.entry(row_bits(&x, i)).or_default().push(i as u32);
    }
    let group_of: Vec<&Vec<u32>> = (0..x.rows()).map(|i| &groups[&row_bits(&x, i)]).collect();
    for i in 0..x.rows() {
        let list = &gi[i * k..(i + 1) * k];
        for &j in list {
            for &lower in group_of[j as usize].iter().filter(|&&m| m < j) {
                assert!(
                    list.contains(&lower),
                    "row {i}: copy {j} listed without its lower copy {lower}: {list:?}"
                );
            }
        }
    }
}

#[test]
fn knn_candidates_break_exact_ties_toward_the_lowest_index() {
    let Some(ctx) = test_context() else { return };
    // 203 rows repeating 7 base rows: each row has 29 identical rows (itself included),
    // spread over every tile, workgroup and chunk, and only the 16 lowest may be listed.
    let base = blobs(7, 40, 7, 0.5, 5);
    let data = (0..203).flat_map(|r| base.row(r % 7).to_vec()).collect();
    let x = Matrix::from_vec(203, 40, data).expect("203 × 40 values");
    let x_sq = row_sq_norms(&x);
    for chunk in [None, Some(50)] {
        let (gi, _) = knn_candidates_chunked(&ctx, &x, &x_sq, 16, chunk).expect("kNN");
        for i in 0..203 {
            let want: Vec<u32> = (0..16).map(|m| (i % 7 + 7 * m) as u32).collect();
            assert_eq!(
                &gi[i * 16..(i + 1) * 16],
                &want[..],
                "row {i} chunk={chunk:?}"
            );
        }
    }
}

#[test]
fn knn_candidates_are_the_same_bits_whatever_the_chunking() {
    let Some(ctx) = test_context() else { return };
    let x = blobs(1037, 17, 5, 1.0, 9);
    let x_sq = row_sq_norms(&x);
    let whole = knn_candidates(&ctx, &x, &x_sq, 9).expect("kNN");
    // Each pair's distance is summed in the same order whichever dispatch holds it.
    assert_eq!(
        whole,
        knn_candidates_chunked(&ctx, &x, &x_sq, 9, Some(37)).expect("kNN")
    );
    assert_eq!(whole, knn_candidates(&ctx, &x, &x_sq, 9).expect("kNN"));
}

#[test]
fn knn_candidates_clamp_k_to_the_rows_and_reject_more_than_the_kernel_holds() {
    let Some(ctx) = test_context() else { return };
    let x = blobs(10, 4, 2, 1.0, 3);
    let x_sq = row_sq_norms(&x);
    let (gi, gd) = knn_candidates(&ctx, &x, &x_sq, 25).expect("k clamped to 10");
    assert_eq!(gi.len(), 100);
    assert_knn_matches_brute_force(&x, 10, &gi, &gd, "k > n");
    let big = blobs(200, 4, 2, 1.0, 3);
    let err = knn_candidates(&ctx, &big, &row_sq_norms(&big), MAX_K + 1)
        .expect_err("more neighbours than the kernel keeps");
    assert!(matches!(err, GpuError::Unsupported(_)), "{err:?}");
    let err = knn_candidates(&ctx, &big, &x_sq, 5).expect_err("10 norms for 200 rows");
    assert!(matches!(err, GpuError::Unsupported(_)), "{err:?}");
    let empty = Matrix::zeros(0, 4);
    assert_eq!(
        knn_candidates(&ctx, &empty, &[], 5).expect("no rows"),
        (vec![], vec![])
    );
}

/// Asserts the device's radius counts against exact ones, allowing a row to differ only
/// by rows whose distance is within the tolerance of the threshold. Returns how many
/// rows differ (all of them near-ties).
fn assert_counts_match_brute_force(
    x: &Matrix,
    threshold_sq: f32,
    got: &[u32],
    label: &str,
) -> usize {
    let n = x.rows();
    let x_sq = row_sq_norms(x);
    assert_eq!(got.len(), n, "{label}");
    let thr = f64::from(threshold_sq);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let exact = exact_row(x, i);
            let tol = tolerance(x_sq[i], thr);
            let want = exact.iter().filter(|&&e| e <= thr).count();
            // The row itself always counts, even at a threshold below rounding.
            let lo = exact.iter().filter(|&&e| e < thr - tol).count().max(1);
            let hi = exact.iter().filter(|&&e| e <= thr + tol).count().max(1);
            let g = got[i] as usize;
            assert!(
                (lo..=hi).contains(&g),
                "{label} row {i}: {g} rows within {thr}, exact {want} (near-ties allow {lo}..={hi})"
            );
            usize::from(g != want.max(1))
        })
        .sum()
}

/// A threshold that about `fraction` of the pairs of rows fall within, from a sample.
fn quantile_threshold(x: &Matrix, fraction: f64) -> f32 {
    let mut sample: Vec<f64> = (0..x.rows())
        .step_by(x.rows().div_ceil(50))
        .flat_map(|i| exact_row(x, i))
        .collect();
    sample.sort_by(f64::total_cmp);
    sample[((sample.len() - 1) as f64 * fraction) as usize] as f32
}

#[test]
fn radius_counts_match_brute_force_counts() {
    let Some(ctx) = test_context() else { return };
    for (n, d, chunk) in [
        (3000, 40, None),
        (1037, 43, Some(300)),
        (700, 3, Some(256)),
        (500, 384, None),
    ] {
        let x = blobs(n, d, 12, 2.0, (n + d) as u64);
        let x_sq = row_sq_norms(&x);
        for fraction in [0.005, 0.05, 0.3] {
            let thr = quantile_threshold(&x, fraction);
            let got = radius_counts_chunked(&ctx, &x, &x_sq, thr, chunk).expect("counts");
            let label = format!("n={n} d={d} chunk={chunk:?} threshold={thr}");
            let differ = assert_counts_match_brute_force(&x, thr, &got, &label);
            // Near-ties with a threshold are rare on continuous data.
            assert!(
                differ <= n / 100 + 1,
                "{label}: {differ} of {n} rows differ"
            );
            // Blobs make the counts vary; a constant answer would not test much.
            let (min, max) = (got.iter().min(), got.iter().max());
            assert!(min < max, "{label}: every count is {min:?}");
        }
    }
}

#[test]
fn radius_counts_match_brute_force_counts_with_duplicate_rows() {
    let Some(ctx) = test_context() else { return };
    let x = with_duplicates(&blobs(1500, 40, 8, 2.0, 31), 500, 32);
    let x_sq = row_sq_norms(&x);
    let thr = quantile_threshold(&x, 0.01);
    let got = radius_counts_chunked(&ctx, &x, &x_sq, thr, Some(777)).expect("counts");
    let differ = assert_counts_match_brute_force(&x, thr, &got, "duplicates");
    assert!(differ <= x.rows() / 100 + 1, "{differ} rows differ");
    // At a zero radius every copy is a near-tie (its rounded distance may land a hair
    // above zero), so only the tolerance bounds hold, not a count of differing rows.
    let got = radius_counts_chunked(&ctx, &x, &x_sq, 0.0, Some(777)).expect("counts");
    assert_counts_match_brute_force(&x, 0.0, &got, "duplicates at radius 0");
    // At a radius far below any distance between distinct rows, a row's count is the
    // number of its copies, itself included.
    let mut copies: HashMap<Vec<u32>, u32> = HashMap::new();
    for i in 0..x.rows() {
        *copies.entry(row_bits(&x, i)).or_default() += 1;
    }
    let got = radius_counts(&ctx, &x, &x_sq, 0.05).expect("counts");
    for (i, &g) in got.iter().enumerate() {
        assert_eq!(g, copies[&row_bits(&x, i)], "row {i}");
    }
    assert!(copies.values().any(|&c| c > 1));
}

#[test]
fn radius_counts_reject_a_nan_radius_and_count_nothing_on_no_rows() {
    let Some(ctx) = test_context() else { return };
    let x = blobs(10, 4, 2, 1.0, 3);
    let err = radius_counts(&ctx, &x, &row_sq_norms(&x), f32::NAN).expect_err("NaN radius");
    assert!(matches!(err, GpuError::Unsupported(_)), "{err:?}");
    assert_eq!(
        radius_counts(&ctx, &Matrix::zeros(0, 4), &[], 1.0).expect("no rows"),
        Vec::<u32>::new()
    );
}
