use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::algorithms::distance::BLOCK_ROWS;
use crate::model::DeviceKind;

const FIXTURES: [&str; 5] = ["blobs", "anisotropic", "digits", "singleton", "noise"];

struct Fixture {
    data: Matrix,
    labels: Vec<i64>,
    silhouette: f64,
    davies_bouldin: f64,
    calinski_harabasz: f64,
}

fn fixture(name: &str) -> Fixture {
    let v = crate::reference_fixtures::read(&format!("metrics_{name}"));
    let score = |key: &str| v[key].as_f64().unwrap_or_else(|| panic!("{name}: {key}"));
    Fixture {
        data: crate::reference_fixtures::data(&v),
        labels: v["labels"]
            .as_array()
            .expect("labels")
            .iter()
            .map(|l| l.as_i64().expect("integer label"))
            .collect(),
        silhouette: score("silhouette"),
        davies_bouldin: score("davies_bouldin"),
        calinski_harabasz: score("calinski_harabasz"),
    }
}

fn ctx(seed: u64) -> RunContext {
    RunContext::new(seed, DeviceKind::Cpu)
}

fn exact() -> MetricsOptions {
    MetricsOptions {
        exact_silhouette_max: usize::MAX,
        ..MetricsOptions::default()
    }
}

/// DESIGN §4's parity bound: |ours − sklearn| ≤ 1e-4 · max(1, |sklearn|).
fn assert_parity(name: &str, metric: &str, ours: Option<f64>, sklearn: f64) {
    let ours = ours.unwrap_or_else(|| panic!("{name}: no {metric}"));
    let diff = (ours - sklearn).abs();
    let bound = 1e-4 * sklearn.abs().max(1.0);
    eprintln!("{name:12} {metric:18} ours {ours:.9} sklearn {sklearn:.9} |diff| {diff:.3e}");
    assert!(
        diff <= bound,
        "{name}: {metric} {ours} vs scikit-learn {sklearn} (|diff| {diff:e} > {bound:e})"
    );
}

fn fixture_metrics(name: &str) -> (Fixture, Metrics) {
    let f = fixture(name);
    let m = compute(&f.data, &f.labels, &exact(), &ctx(0)).unwrap();
    assert!(m.note.is_none(), "{name}: unexpected note {:?}", m.note);
    (f, m)
}

#[test]
fn silhouette_matches_scikit_learn_on_fixtures() {
    for name in FIXTURES {
        let (f, m) = fixture_metrics(name);
        assert_parity(name, "silhouette", m.silhouette_score, f.silhouette);
    }
}

#[test]
fn davies_bouldin_matches_scikit_learn_on_fixtures() {
    for name in FIXTURES {
        let (f, m) = fixture_metrics(name);
        assert_parity(
            name,
            "davies_bouldin",
            m.davies_bouldin_score,
            f.davies_bouldin,
        );
    }
}

#[test]
fn calinski_harabasz_matches_scikit_learn_on_fixtures() {
    for name in FIXTURES {
        let (f, m) = fixture_metrics(name);
        assert_parity(
            name,
            "calinski_harabasz",
            m.calinski_harabasz_score,
            f.calinski_harabasz,
        );
    }
}

#[test]
fn noise_is_excluded_and_counted() {
    let f = fixture("noise");
    let noise = f.labels.iter().filter(|&&l| l == NOISE).count();
    assert!(noise > 0);
    let with_noise = compute(&f.data, &f.labels, &exact(), &ctx(0)).unwrap();
    assert_eq!(with_noise.num_noise, Some(noise));

    // The same scores, to the bit, as on the data with the noise rows removed.
    let kept: Vec<usize> = (0..f.labels.len())
        .filter(|&i| f.labels[i] != NOISE)
        .collect();
    let d = f.data.cols();
    let data: Vec<f32> = kept.iter().flat_map(|&i| f.data.row(i).to_vec()).collect();
    let sub = Matrix::from_vec(kept.len(), d, data).unwrap();
    let sub_labels: Vec<i64> = kept.iter().map(|&i| f.labels[i]).collect();
    let without = compute(&sub, &sub_labels, &exact(), &ctx(0)).unwrap();
    assert_eq!(without.num_noise, Some(0));
    assert_eq!(with_noise.silhouette_score, without.silhouette_score);
    assert_eq!(
        with_noise.davies_bouldin_score,
        without.davies_bouldin_score
    );
    assert_eq!(
        with_noise.calinski_harabasz_score,
        without.calinski_harabasz_score
    );
}

#[test]
fn fewer_than_two_clusters_skips_with_a_reason() {
    let x = random_blobs(12, 3, 3, 1).0;
    let cases: [(&str, Vec<i64>, usize, &str); 5] = [
        ("one cluster", vec![4; 12], 0, "1 cluster among 12"),
        (
            "one cluster and noise",
            (0..12).map(|i| if i < 5 { -1 } else { 2 }).collect(),
            5,
            "1 cluster among 7",
        ),
        ("all noise", vec![-1; 12], 12, "all 12 are noise"),
        (
            "every point its own cluster",
            (0..12).collect(),
            0,
            "12 clusters for 12",
        ),
        (
            "two points left",
            (0..12).map(|i| if i < 10 { -1 } else { i }).collect(),
            10,
            "2 clusters for 2",
        ),
    ];
    for (what, labels, noise, reason) in cases {
        let m = compute(&x, &labels, &exact(), &ctx(0)).unwrap();
        assert_eq!(m.silhouette_score, None, "{what}");
        assert_eq!(m.davies_bouldin_score, None, "{what}");
        assert_eq!(m.calinski_harabasz_score, None, "{what}");
        assert_eq!(m.num_noise, Some(noise), "{what}");
        let note = m.note.unwrap_or_default();
        assert!(note.starts_with("metrics skipped"), "{what}: {note}");
        assert!(note.contains(reason), "{what}: {note}");
    }
}

#[test]
fn sampled_silhouette_is_seeded_and_says_so() {
    let f = fixture("blobs");
    let n = f.data.rows();
    let exact_score = compute(&f.data, &f.labels, &exact(), &ctx(7))
        .unwrap()
        .silhouette_score
        .unwrap();
    let sampled = MetricsOptions {
        exact_silhouette_max: 100,
        silhouette_sample_size: 200,
        ..MetricsOptions::default()
    };
    let a = compute(&f.data, &f.labels, &sampled, &ctx(7)).unwrap();
    let b = compute(&f.data, &f.labels, &sampled, &ctx(7)).unwrap();
    assert_eq!(a, b, "same seed, same answer");
    let s = a.silhouette_score.unwrap();
    assert!((s - exact_score).abs() < 0.05, "{s} vs exact {exact_score}");
    let note = a.note.unwrap_or_default();
    assert!(
        note.contains(&format!("seeded sample of 200 of {n} documents (seed 7)")),
        "{note}"
    );
    // The other two scores never sample.
    assert_parity(
        "blobs",
        "davies_bouldin",
        a.davies_bouldin_score,
        f.davies_bouldin,
    );

    let other = compute(&f.data, &f.labels, &sampled, &ctx(8)).unwrap();
    assert!(other.note.unwrap_or_default().contains("(seed 8)"));
    assert_ne!(
        other.silhouette_score, a.silhouette_score,
        "another seed, another sample"
    );

    // At or below the bound the score is exact and says nothing.
    let at_bound = MetricsOptions {
        exact_silhouette_max: n,
        silhouette_sample_size: 200,
        ..MetricsOptions::default()
    };
    let m = compute(&f.data, &f.labels, &at_bound, &ctx(7)).unwrap();
    assert_eq!(m.note, None);
    assert_eq!(m.silhouette_score, Some(exact_score));
}

#[test]
fn thread_count_does_not_change_the_scores() {
    // Several row blocks, and more than one centre block, in both the exact and the
    // sampled path.
    let (x, labels) = random_blobs(2 * BLOCK_ROWS + 301, 24, 6, 5);
    let sampled = MetricsOptions {
        exact_silhouette_max: 1000,
        silhouette_sample_size: 1500,
        ..MetricsOptions::default()
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                compute(&x, &labels, &exact(), &ctx(3)).unwrap(),
                compute(&x, &labels, &sampled, &ctx(3)).unwrap(),
            )
        })
    };
    let bits = |m: &Metrics| {
        [
            m.silhouette_score,
            m.davies_bouldin_score,
            m.calinski_harabasz_score,
        ]
        .map(|v| v.map(f64::to_bits))
    };
    let (one_exact, one_sampled) = run(1);
    let (two_exact, two_sampled) = run(2);
    assert_eq!(bits(&one_exact), bits(&two_exact));
    assert_eq!(bits(&one_sampled), bits(&two_sampled));
    assert_eq!(one_sampled.note, two_sampled.note);
}

#[test]
fn cancelled_context_stops_silhouette() {
    let (x, labels) = random_blobs(300, 4, 3, 2);
    let c = ctx(0);
    c.cancel_token().cancel();
    let rows: Vec<usize> = (0..300).collect();
    let dense: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    assert_eq!(silhouette::score(&x, &rows, &dense, &c), Err(Cancelled));
    assert_eq!(compute(&x, &labels, &exact(), &c), Err(Cancelled));
}

#[test]
fn silhouette_tiles_of_ragged_sizes_match_a_plain_loop() {
    // Rows: two full blocks and a ragged one; centre blocks of 300 and of 1000 cut across
    // row blocks and clusters alike; a width that fits no SIMD lane count.
    let n = 2 * BLOCK_ROWS + 37;
    let (x, labels) = random_blobs(n, 13, 5, 9);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| labels[i]);
    let data: Vec<f32> = order.iter().flat_map(|&i| x.row(i).to_vec()).collect();
    let xs = Matrix::from_vec(n, 13, data).unwrap();
    let sorted: Vec<u32> = order.iter().map(|&i| labels[i] as u32).collect();
    let mut counts = vec![0usize; 5];
    sorted.iter().for_each(|&l| counts[l as usize] += 1);

    let want = plain_silhouette_samples(&xs, &sorted, &counts);
    for col_block in [300, 1000, silhouette::COL_BLOCK] {
        let got = silhouette::samples(&xs, &sorted, &counts, col_block, &ctx(0)).unwrap();
        assert_eq!(got.len(), n);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-5,
                "col_block {col_block}, row {i}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn coinciding_members_follow_scikit_learn() {
    // Every cluster collapsed onto one point: W = 0 gives CH = 1.0 and all-zero spreads
    // give DB = 0.0, as scikit-learn answers; every s(i) is 1.
    let points = [[0.0f32, 0.0], [3.0, 4.0], [-6.0, 8.0]];
    let data: Vec<f32> = (0..12).flat_map(|i| points[i % 3]).collect();
    let x = Matrix::from_vec(12, 2, data).unwrap();
    let labels: Vec<i64> = (0..12).map(|i| (i % 3) as i64 * 10).collect();
    let m = compute(&x, &labels, &exact(), &ctx(0)).unwrap();
    assert_eq!(m.calinski_harabasz_score, Some(1.0));
    assert_eq!(m.davies_bouldin_score, Some(0.0));
    assert_eq!(m.silhouette_score, Some(1.0));
}

#[test]
fn mismatched_label_count_is_reported_not_panicked() {
    let (x, _) = random_blobs(10, 2, 2, 1);
    let m = compute(&x, &[0, 1, 0], &exact(), &ctx(0)).unwrap();
    assert_eq!(m.silhouette_score, None);
    assert!(
        m.note
            .unwrap_or_default()
            .contains("3 labels for 10 documents")
    );
}

/// `n` points around `k` random centres in `d` dimensions, offset from the origin, and
/// their true labels `0..k`.
fn random_blobs(n: usize, d: usize, k: usize, seed: u64) -> (Matrix, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..k * d)
        .map(|_| rng.random_range(-8.0f32..8.0) + 20.0)
        .collect();
    let mut data = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..k);
        labels.push(c as i64);
        for f in 0..d {
            let spread: f32 = (0..3).map(|_| rng.random_range(-1.5f32..1.5)).sum();
            data.push(centres[c * d + f] + spread);
        }
    }
    (Matrix::from_vec(n, d, data).unwrap(), labels)
}

/// s(i) by the definition, in f64, one pair at a time.
fn plain_silhouette_samples(x: &Matrix, labels: &[u32], counts: &[usize]) -> Vec<f64> {
    let n = x.rows();
    let k = counts.len();
    (0..n)
        .map(|i| {
            let mut sums = vec![0f64; k];
            for j in 0..n {
                let d2: f64 = x
                    .row(i)
                    .iter()
                    .zip(x.row(j))
                    .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                    .sum();
                sums[labels[j] as usize] += d2.sqrt();
            }
            let own = labels[i] as usize;
            if counts[own] <= 1 {
                return 0.0;
            }
            let a = sums[own] / (counts[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own)
                .map(|c| sums[c] / counts[c] as f64)
                .fold(f64::INFINITY, f64::min);
            (b - a) / a.max(b)
        })
        .collect()
}

#[test]
fn gpu_silhouette_matches_scikit_learn_on_fixtures() {
    // Skips (visibly) without an adapter; fails instead under CLUSTERD_REQUIRE_GPU=1.
    if crate::gpu::test_context().is_none() {
        return;
    }
    for name in FIXTURES {
        let f = fixture(name);
        let c = Clustering::new(&f.labels);
        // Called directly: through `compute` a device fault would fall back to the CPU
        // twin and this test could not tell.
        let s = silhouette::gpu_samples(&f.data, &c.rows, &c.labels, c.k())
            .unwrap_or_else(|e| panic!("{name}: GPU silhouette failed: {e}"));
        let score = s.iter().sum::<f64>() / s.len() as f64;
        assert_parity(name, "silhouette (GPU)", Some(score), f.silhouette);
    }
}

#[test]
fn gpu_device_context_scores_like_the_cpu() {
    if crate::gpu::test_context().is_none() {
        return;
    }
    let f = fixture("blobs");
    let cpu = compute(&f.data, &f.labels, &exact(), &ctx(0)).unwrap();
    let gpu_ctx = RunContext::new(0, DeviceKind::Gpu);
    let gpu = compute(&f.data, &f.labels, &exact(), &gpu_ctx).unwrap();
    let (a, b) = (
        gpu.silhouette_score.unwrap_or(f64::NAN),
        cpu.silhouette_score.unwrap_or(f64::NAN),
    );
    assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    assert_eq!(gpu.davies_bouldin_score, cpu.davies_bouldin_score);
}
