use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::algorithms::density_fixtures::{adjusted_rand_index, cases_for};
use crate::algorithms::kmeans::{self, KMeansInit, KMeansParams};
use crate::algorithms::test_support::{cancelled_context, on_threads};
use crate::algorithms::{agglomerative, dbscan, hdbscan, optics};
use crate::model::ParamMap;

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn params(json: serde_json::Value) -> ParamMap {
    ParamMap::from_json(&json).expect("params must be an object")
}

/// Uniform values in `offset ± 1`: far from the origin, where the expanded distance
/// cancels worst.
fn random_matrix(rows: usize, cols: usize, seed: u64, offset: f32) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..rows * cols)
        .map(|_| offset + rng.random_range(-1.0f32..1.0))
        .collect();
    Matrix::from_vec(rows, cols, data).unwrap()
}

/// `n` points around `k` centres `gap` apart on average, uniform noise of half-width
/// `spread`, row `i` in blob `i % k`.
fn blobs(n: usize, d: usize, k: usize, gap: f32, spread: f32, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..k * d).map(|_| rng.random_range(-gap..gap)).collect();
    let data = (0..n)
        .flat_map(|i| {
            let c = i % k;
            (0..d)
                .map(|f| centres[c * d + f] + rng.random_range(-spread..spread))
                .collect::<Vec<_>>()
        })
        .collect();
    Matrix::from_vec(n, d, data).unwrap()
}

fn rows_of(x: &Matrix, rows: &[usize]) -> Matrix {
    let data = rows.iter().flat_map(|&i| x.row(i).to_vec()).collect();
    Matrix::from_vec(rows.len(), x.cols(), data).unwrap()
}

/// Plain f64 sums in row order: the definition the filtered search must reproduce.
fn plain_distance(metric: AssignMetric, a: &[f32], b: &[f32]) -> f64 {
    let pairs = || a.iter().zip(b).map(|(&p, &q)| (f64::from(p), f64::from(q)));
    match metric {
        AssignMetric::Euclidean => pairs().map(|(p, q)| (p - q) * (p - q)).sum::<f64>().sqrt(),
        AssignMetric::Manhattan => pairs().map(|(p, q)| (p - q).abs()).sum(),
        AssignMetric::Cosine => {
            let na = pairs().map(|(p, _)| p * p).sum::<f64>().sqrt();
            let nb = pairs().map(|(_, q)| q * q).sum::<f64>().sqrt();
            let dot: f64 = pairs().map(|(p, q)| p * q).sum();
            // A zero row stays zero: cosine similarity 0, distance 1 (scikit-learn).
            let cos = if na > 0.0 && nb > 0.0 {
                dot / (na * nb)
            } else {
                0.0
            };
            (1.0 - cos).clamp(0.0, 2.0)
        }
    }
}

/// The search's exact distance (a brute-force reference needs it to the bit to decide
/// the same ties and radius tests).
fn exact(cores: &Cores, q: &[f32], j: usize) -> f64 {
    CoreSearch::new(cores).exact(q, inv_norm(q), j)
}

/// Brute force: every core measured, least (distance, index), then the radius.
fn brute_core_placement(cores: &Cores, centroids: &Matrix, q: &[f32]) -> Placement {
    let search = CoreSearch::new(cores);
    let q_inv = inv_norm(q);
    let mut best: Option<(f64, usize)> = None;
    for j in 0..cores.points.rows() {
        let d = search.exact(q, q_inv, j);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, j));
        }
    }
    match best {
        Some((d, j)) if d <= cores.radius[j] => {
            let c = cores.clusters[j];
            Placement {
                cluster: Some(c),
                distance: Some(euclidean(q, centroids.row(c as usize)) as f32),
            }
        }
        _ => Placement::NOISE,
    }
}

/// Brute force in f64: the nearest centroid, lowest index on ties.
fn brute_centroid(centroids: &Matrix, q: &[f32]) -> (u32, f64) {
    let mut best = (0u32, f64::INFINITY);
    for c in 0..centroids.rows() {
        let d = plain_distance(AssignMetric::Euclidean, q, centroids.row(c));
        if d < best.1 {
            best = (c as u32, d);
        }
    }
    best
}

fn core_assigner(
    points: Matrix,
    clusters: Vec<u32>,
    radius: Vec<f64>,
    metric: AssignMetric,
) -> Assigner {
    let k = clusters.iter().max().map_or(0, |&c| c as usize + 1);
    let centroids = random_matrix(k, points.cols(), 99, 0.0);
    Assigner::new(
        centroids,
        Rule::NearestCore(Cores {
            points,
            clusters,
            radius,
            metric,
        }),
    )
    .unwrap()
}

fn cores_of(a: &Assigner) -> &Cores {
    match &a.rule {
        Rule::NearestCore(c) => c,
        Rule::NearestCentroid => panic!("a core rule"),
    }
}

#[test]
fn metric_names_parse_with_scikit_learn_aliases_and_round_trip() {
    for (name, m) in [
        ("euclidean", AssignMetric::Euclidean),
        ("l2", AssignMetric::Euclidean),
        ("cosine", AssignMetric::Cosine),
        ("manhattan", AssignMetric::Manhattan),
        ("l1", AssignMetric::Manhattan),
        ("cityblock", AssignMetric::Manhattan),
    ] {
        assert_eq!(AssignMetric::parse(name), Some(m), "{name}");
        assert_eq!(AssignMetric::parse(m.as_str()), Some(m));
    }
    assert_eq!(AssignMetric::parse("chebyshev"), None);
}

#[test]
fn the_exact_distance_is_the_plain_f64_definition() {
    let x = random_matrix(40, 37, 5, 3.0);
    let mut with_zero = x.clone();
    with_zero.row_mut(3).fill(0.0);
    for metric in [
        AssignMetric::Euclidean,
        AssignMetric::Cosine,
        AssignMetric::Manhattan,
    ] {
        let cores = Cores {
            points: with_zero.clone(),
            clusters: vec![0; 40],
            radius: vec![1.0; 40],
            metric,
        };
        for i in 0..40 {
            for j in 0..40 {
                let (q, want) = (
                    with_zero.row(i),
                    plain_distance(metric, with_zero.row(i), with_zero.row(j)),
                );
                let got = exact(&cores, q, j);
                assert!(
                    (got - want).abs() <= 1e-12 * (1.0 + want),
                    "{metric:?} {i} {j}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn a_manhattan_distance_is_given_up_on_only_above_its_bound() {
    let x = random_matrix(30, 45, 6, 0.0);
    for i in 0..30 {
        for j in 0..30 {
            let (a, b) = (x.row(i), x.row(j));
            let full = lane_sum(a, b, |p, q| (p - q).abs());
            assert_eq!(manhattan_within(a, b, f64::INFINITY), Some(full));
            assert_eq!(
                manhattan_within(a, b, full),
                Some(full),
                "a tie is measured"
            );
            assert_eq!(manhattan_within(a, b, full.next_up()), Some(full));
            // Below the total: given up on, or measured in full (too late to tell).
            let below = manhattan_within(a, b, full * 0.25);
            assert!(below.is_none() || below == Some(full));
        }
    }
    // A large first chunk exceeds a small bound before the rest is read.
    let far = vec![100.0f32; 64];
    assert_eq!(manhattan_within(&far, &[0.0; 64], 1.0), None);
}

#[test]
fn nearest_centroid_equals_brute_force_on_random_data() {
    // Ragged against the block size; a width no SIMD lane count divides; off the origin.
    let x = random_matrix(2 * BLOCK_ROWS + 77, 19, 1, 20.0);
    let centroids = random_matrix(9, 19, 2, 20.0);
    let a = Assigner::new(centroids.clone(), Rule::NearestCentroid).unwrap();
    let got = a.assign(&x, &ctx()).unwrap();
    for (i, p) in got.iter().enumerate() {
        let (c, d) = brute_centroid(&centroids, x.row(i));
        assert_eq!(p.cluster, Some(c), "row {i}");
        assert_eq!(p.distance, Some(d as f32), "row {i}");
    }
}

#[test]
fn nearest_centroid_breaks_exact_ties_toward_the_lowest_index() {
    // Centroids 1 and 3 are equal; 0 and 2 mirror each other about the origin.
    let centroids =
        Matrix::from_vec(4, 2, vec![3.0, 4.0, 10.0, 10.0, -3.0, -4.0, 10.0, 10.0]).unwrap();
    let a = Assigner::new(centroids, Rule::NearestCentroid).unwrap();
    let x = Matrix::from_vec(3, 2, vec![0.0, 0.0, 10.0, 10.0, 9.0, 11.0]).unwrap();
    let got = a.assign(&x, &ctx()).unwrap();
    let clusters: Vec<_> = got.iter().map(|p| p.cluster).collect();
    assert_eq!(clusters, vec![Some(0), Some(1), Some(1)]);
    assert_eq!(got[0].distance, Some(5.0));
    assert_eq!(got[1].distance, Some(0.0));
}

#[test]
fn gpu_nearest_centroid_equals_the_cpu() {
    if crate::gpu::test_context().is_none() {
        return;
    }
    let x = blobs(3000, 40, 12, 30.0, 3.0, 8);
    let centroids = blobs(12, 40, 12, 30.0, 0.5, 8);
    let a = Assigner::new(centroids.clone(), Rule::NearestCentroid).unwrap();
    // The kernel itself, not only the fallback path.
    let mean = column_mean(&centroids);
    let on_gpu = nearest_centroids_on_gpu(&centred(&x, &mean), &centred(&centroids, &mean))
        .expect("the GPU kernel runs");
    let cpu = a.assign(&x, &ctx()).unwrap();
    let cpu_labels: Vec<u32> = cpu.iter().map(|p| p.cluster.unwrap()).collect();
    assert_eq!(on_gpu, cpu_labels);
    let gpu = a.assign(&x, &RunContext::new(0, DeviceKind::Gpu)).unwrap();
    assert_eq!(gpu, cpu);
}

#[test]
fn nearest_core_equals_brute_force_in_every_metric_with_finite_and_infinite_radii() {
    // Cores over two blocks and a ragged one, queries over several query blocks; exact
    // duplicates across clusters (ties to the lowest index); zero rows on both sides.
    let n_cores = 2 * BLOCK_ROWS + 45;
    let mut points = random_matrix(n_cores, 21, 11, 30.0);
    for (dup, of) in [(700, 5), (1500, 5), (2090, 900)] {
        let row = points.row(of).to_vec();
        points.row_mut(dup).copy_from_slice(&row);
    }
    points.row_mut(1200).fill(0.0);
    let clusters: Vec<u32> = (0..n_cores as u32).map(|i| (i * 7) % 13).collect();
    let mut queries = random_matrix(3 * QUERY_BLOCK + 19, 21, 12, 30.0);
    for (q, of) in [(0, 5), (1, 900), (2, 2090)] {
        let row = points.row(of).to_vec();
        queries.row_mut(q).copy_from_slice(&row);
    }
    queries.row_mut(3).fill(0.0);
    for metric in [
        AssignMetric::Euclidean,
        AssignMetric::Cosine,
        AssignMetric::Manhattan,
    ] {
        // The median nearest distance as radius: about half the queries are noise.
        let probe = core_assigner(
            points.clone(),
            clusters.clone(),
            vec![f64::INFINITY; n_cores],
            metric,
        );
        let search = CoreSearch::new(cores_of(&probe));
        let mut nearest: Vec<f64> = search
            .nearest(&queries, &ctx())
            .unwrap()
            .iter()
            .map(|b| b.unwrap().1)
            .collect();
        nearest.sort_by(f64::total_cmp);
        let median = nearest[nearest.len() / 2];
        let finite: Vec<f64> = (0..n_cores)
            .map(|j| median * (0.9 + 0.2 * ((j % 5) as f64 / 4.0)))
            .collect();
        for radius in [vec![f64::INFINITY; n_cores], finite] {
            let a = core_assigner(points.clone(), clusters.clone(), radius, metric);
            let got = a.assign(&queries, &ctx()).unwrap();
            let mut noise = 0;
            for (i, p) in got.iter().enumerate() {
                let want = brute_core_placement(cores_of(&a), &a.centroids, queries.row(i));
                assert_eq!(*p, want, "{metric:?} query {i}");
                noise += usize::from(p.cluster.is_none());
            }
            let infinite = cores_of(&a).radius[0].is_infinite();
            if infinite {
                assert_eq!(noise, 0, "{metric:?}: an infinite radius always places");
            } else {
                assert!(
                    noise > 50 && noise < got.len() - 50,
                    "{metric:?}: {noise} noise"
                );
            }
            // Duplicated cores: the lowest index decides.
            assert_eq!(got[0].cluster, Some(clusters[5]), "{metric:?}");
            if infinite {
                assert_eq!(got[1].cluster, Some(clusters[900]), "{metric:?}");
                assert_eq!(got[2].cluster, Some(clusters[900]), "{metric:?}");
            }
        }
    }
}

#[test]
fn rows_just_inside_a_radius_are_placed_and_just_outside_are_noise() {
    for metric in [
        AssignMetric::Euclidean,
        AssignMetric::Cosine,
        AssignMetric::Manhattan,
    ] {
        // Far-apart cores; each query a small step from its own core.
        let points = random_matrix(300, 16, 3, 0.0);
        let queries = {
            let mut q = points.clone();
            let mut rng = ChaCha8Rng::seed_from_u64(4);
            q.as_mut_slice()
                .iter_mut()
                .for_each(|v| *v += rng.random_range(-0.01f32..0.01));
            q
        };
        let cores = Cores {
            points: points.clone(),
            clusters: (0..300).collect(),
            radius: vec![0.0; 300],
            metric,
        };
        // Radius exactly the distance (inside: ≤) for even cores, one ulp less for odd.
        let radius: Vec<f64> = (0..300)
            .map(|j| {
                let d = exact(&cores, queries.row(j), j);
                if j % 2 == 0 { d } else { d.next_down() }
            })
            .collect();
        let a = core_assigner(points, (0..300).collect(), radius, metric);
        let got = a.assign(&queries, &ctx()).unwrap();
        for (j, p) in got.iter().enumerate() {
            let want = if j % 2 == 0 { Some(j as u32) } else { None };
            assert_eq!(p.cluster, want, "{metric:?} core {j}");
            assert_eq!(
                *p,
                brute_core_placement(cores_of(&a), &a.centroids, queries.row(j))
            );
        }
    }
}

#[test]
fn zero_rows_under_cosine_are_at_distance_one_from_everything() {
    let points = Matrix::from_vec(3, 2, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).unwrap();
    let queries = Matrix::from_vec(2, 2, vec![0.0, 0.0, -1.0, 0.0]).unwrap();
    let cores = Cores {
        points: points.clone(),
        clusters: vec![0, 1, 2],
        radius: vec![1.0; 3],
        metric: AssignMetric::Cosine,
    };
    // The zero query: distance 1 to every core, so the first core at radius 1.
    assert_eq!(exact(&cores, queries.row(0), 0), 1.0);
    assert_eq!(exact(&cores, queries.row(0), 2), 1.0);
    let placed = core_assigner(
        points.clone(),
        vec![0, 1, 2],
        vec![1.0; 3],
        AssignMetric::Cosine,
    );
    let got = placed.assign(&queries, &ctx()).unwrap();
    assert_eq!(got[0].cluster, Some(0));
    // (−1, 0): distance 2 from core 0, 1 from core 1 and from the zero core 2.
    assert_eq!(got[1].cluster, Some(1));
    let tight = core_assigner(points, vec![0, 1, 2], vec![0.999; 3], AssignMetric::Cosine);
    let got = tight.assign(&queries, &ctx()).unwrap();
    assert_eq!(got, vec![Placement::NOISE; 2]);
}

#[test]
fn no_cores_place_everything_as_noise() {
    let a = core_assigner(Matrix::zeros(0, 3), vec![], vec![], AssignMetric::Euclidean);
    let x = random_matrix(5, 3, 1, 0.0);
    assert_eq!(a.assign(&x, &ctx()).unwrap(), vec![Placement::NOISE; 5]);
    assert!(a.assign(&Matrix::zeros(0, 3), &ctx()).unwrap().is_empty());
}

#[test]
fn a_pre_cancelled_run_places_nothing() {
    let x = random_matrix(300, 4, 1, 0.0);
    let centroid = Assigner::new(random_matrix(3, 4, 2, 0.0), Rule::NearestCentroid).unwrap();
    assert_eq!(centroid.assign(&x, &cancelled_context()), Err(Cancelled));
    for metric in [
        AssignMetric::Euclidean,
        AssignMetric::Cosine,
        AssignMetric::Manhattan,
    ] {
        let a = core_assigner(x.clone(), vec![0; 300], vec![1.0; 300], metric);
        assert_eq!(a.assign(&x, &cancelled_context()), Err(Cancelled));
    }
}

#[test]
fn placements_do_not_depend_on_the_thread_count() {
    let points = random_matrix(BLOCK_ROWS + 300, 12, 21, 5.0);
    let x = random_matrix(2 * QUERY_BLOCK + 50, 12, 22, 5.0);
    let clusters: Vec<u32> = (0..points.rows() as u32).map(|i| i % 4).collect();
    let mut assigners =
        vec![Assigner::new(random_matrix(6, 12, 23, 5.0), Rule::NearestCentroid).unwrap()];
    for metric in [
        AssignMetric::Euclidean,
        AssignMetric::Cosine,
        AssignMetric::Manhattan,
    ] {
        let radius = vec![
            if metric == AssignMetric::Cosine {
                0.02
            } else {
                1.5
            };
            points.rows()
        ];
        assigners.push(core_assigner(
            points.clone(),
            clusters.clone(),
            radius,
            metric,
        ));
    }
    for a in &assigners {
        let one = on_threads(1, || a.assign(&x, &ctx()).unwrap());
        let three = on_threads(3, || a.assign(&x, &ctx()).unwrap());
        assert_eq!(one, three);
    }
}

#[test]
fn an_inconsistent_assigner_is_refused_and_a_wrong_width_names_the_field() {
    let centroids = Matrix::zeros(2, 3);
    let cores = |clusters: Vec<u32>, radius: Vec<f64>, cols: usize| {
        Rule::NearestCore(Cores {
            points: Matrix::zeros(2, cols),
            clusters,
            radius,
            metric: AssignMetric::Euclidean,
        })
    };
    assert!(Assigner::new(centroids.clone(), cores(vec![0, 2], vec![1.0; 2], 3)).is_err());
    assert!(Assigner::new(centroids.clone(), cores(vec![0], vec![1.0; 2], 3)).is_err());
    assert!(Assigner::new(centroids.clone(), cores(vec![0, 1], vec![1.0; 2], 4)).is_err());
    assert!(Assigner::new(centroids.clone(), cores(vec![0, 1], vec![f64::NAN; 2], 3)).is_err());
    let a = Assigner::new(centroids, cores(vec![0, 1], vec![1.0; 2], 3)).unwrap();
    assert!(a.check_width(3, "vectors").is_ok());
    let e = a.check_width(4, "vectors").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("vectors"));
    assert_eq!(e.code, crate::model::ErrorCode::InvalidParameter);
}

#[test]
fn a_rule_gathers_its_core_rows_with_their_labels() {
    let sample = random_matrix(5, 2, 1, 0.0);
    let labels = vec![1, -1, 0, 1, 0];
    let rule = PlacementRule::NearestCore {
        rows: vec![0, 3, 4],
        radius: vec![0.5, 0.25, f64::INFINITY],
        metric: AssignMetric::Cosine,
    };
    let a = rule
        .assigner(&sample, &labels, Matrix::zeros(2, 2))
        .unwrap();
    let c = cores_of(&a);
    assert_eq!(c.points, rows_of(&sample, &[0, 3, 4]));
    assert_eq!(c.clusters, vec![1, 1, 0]);
    assert_eq!(c.radius, vec![0.5, 0.25, f64::INFINITY]);
    assert_eq!(c.metric, AssignMetric::Cosine);
    // A noise row or a row past the sample is no core.
    let bad = PlacementRule::NearestCore {
        rows: vec![1],
        radius: vec![1.0],
        metric: AssignMetric::Euclidean,
    };
    assert!(bad.assigner(&sample, &labels, Matrix::zeros(2, 2)).is_err());
    let past = PlacementRule::NearestCore {
        rows: vec![5],
        radius: vec![1.0],
        metric: AssignMetric::Euclidean,
    };
    assert!(
        past.assigner(&sample, &labels, Matrix::zeros(2, 2))
            .is_err()
    );
}

/// The assigner of a fit on `x`, with member-mean centroids.
fn assigner_of(rule: &PlacementRule, x: &Matrix, labels: &[i64]) -> Assigner {
    let k = labels.iter().max().map_or(0, |&l| (l + 1).max(0) as usize);
    let mut centroids = Matrix::zeros(k, x.cols());
    let mut counts = vec![0f32; k];
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 {
            counts[l as usize] += 1.0;
            for (c, &v) in centroids.row_mut(l as usize).iter_mut().zip(x.row(i)) {
                *c += v;
            }
        }
    }
    for (c, &n) in counts.iter().enumerate() {
        centroids
            .row_mut(c)
            .iter_mut()
            .for_each(|v| *v /= n.max(1.0));
    }
    rule.assigner(x, labels, centroids).unwrap()
}

fn core_rows(rule: &PlacementRule) -> &[u32] {
    match rule {
        PlacementRule::NearestCore { rows, .. } => rows,
        PlacementRule::NearestCentroid => panic!("a core rule"),
    }
}

/// Every core row of a fitted sample, placed back, gets its own label.
fn assert_core_rows_keep_their_labels(
    what: &str,
    rule: &PlacementRule,
    x: &Matrix,
    labels: &[i64],
) -> Vec<Placement> {
    let a = assigner_of(rule, x, labels);
    let got = a.assign(x, &ctx()).unwrap();
    let rows = core_rows(rule);
    for &r in rows {
        let r = r as usize;
        assert_eq!(
            got[r].cluster.map(i64::from),
            Some(labels[r]),
            "{what}: core row {r}"
        );
    }
    got
}

#[test]
fn dbscan_places_its_own_rows_back_as_it_labelled_them() {
    let cases = cases_for("dbscan");
    assert!(!cases.is_empty());
    for (fixture, i) in cases {
        let case = &fixture.cases[i];
        let what = format!("{} {}", fixture.dataset, case.params);
        let params = DbscanParams::from_params(&case.param_map()).unwrap();
        let x = &fixture.data;
        let (found, is_core) = dbscan::fit_with_cores(x, &params, &ctx()).unwrap();
        let rule = PlacementRule::dbscan(&found.labels, &is_core, &params);
        let rows = core_rows(&rule);
        assert_eq!(rows.len(), is_core.iter().filter(|&&c| c).count(), "{what}");
        let got = assert_core_rows_keep_their_labels(&what, &rule, x, &found.labels);
        let a = assigner_of(&rule, x, &found.labels);
        let cores = cores_of(&a);
        let search = CoreSearch::new(cores);
        for (r, p) in got.iter().enumerate() {
            if is_core[r] {
                continue;
            }
            match found.labels[r] {
                // Noise: no core within eps, so still noise.
                -1 => assert_eq!(*p, Placement::NOISE, "{what}: noise row {r}"),
                // Border: a cluster with a core within eps.
                _ => {
                    let c = p
                        .cluster
                        .unwrap_or_else(|| panic!("{what}: border row {r} placed"));
                    assert!(
                        (0..rows.len()).any(|j| cores.clusters[j] == c
                            && search.exact(x.row(r), inv_norm(x.row(r)), j) <= params.eps),
                        "{what}: border row {r} in cluster {c} without a core within eps"
                    );
                }
            }
        }
    }
}

#[test]
fn hdbscan_places_its_clustered_rows_back_in_their_clusters() {
    let cases = cases_for("hdbscan");
    assert!(!cases.is_empty());
    for (fixture, i) in cases {
        let case = &fixture.cases[i];
        let what = format!("{} {}", fixture.dataset, case.params);
        let p = HdbscanParams::from_params(&case.param_map()).unwrap();
        let x = &fixture.data;
        let (found, core) = hdbscan::fit_with_core_distances(x, &p, &ctx()).unwrap();
        let rule = PlacementRule::hdbscan(&found.labels, &core, &p);
        let clustered = found.labels.iter().filter(|&&l| l >= 0).count();
        assert_eq!(core_rows(&rule).len(), clustered, "{what}");
        assert_core_rows_keep_their_labels(&what, &rule, x, &found.labels);
    }
}

#[test]
fn optics_places_its_core_rows_back_in_their_clusters() {
    let cases = cases_for("optics");
    assert!(!cases.is_empty());
    for (fixture, i) in cases {
        let case = &fixture.cases[i];
        let what = format!("{} {}", fixture.dataset, case.params);
        let p = OpticsParams::from_params(&case.param_map()).unwrap();
        let x = &fixture.data;
        let (found, graph) = optics::fit_with_graph(x, &p, &ctx()).unwrap();
        let rule = PlacementRule::optics(&found.labels, &graph.core_distances, &p);
        if let PlacementRule::NearestCore { rows, radius, .. } = &rule {
            for (&r, &rad) in rows.iter().zip(radius) {
                let core = graph.core_distances[r as usize];
                assert!(core <= rad && rad <= p.max_eps, "{what}: row {r}");
            }
        }
        assert_core_rows_keep_their_labels(&what, &rule, x, &found.labels);
    }
}

#[test]
fn graph_algorithms_place_by_the_nearest_clustered_sample() {
    let x = blobs(400, 5, 4, 10.0, 1.0, 31);
    for metric in ["euclidean", "cosine", "manhattan"] {
        let p = crate::algorithms::agglomerative::AgglomerativeParams::from_params(&params(
            serde_json::json!({"n_clusters": 4, "linkage": "average", "metric": metric}),
        ))
        .unwrap();
        let found = agglomerative::fit(&x, &p, &ctx()).unwrap();
        let rule = PlacementRule::agglomerative(&found.labels, &p);
        let PlacementRule::NearestCore {
            rows,
            radius,
            metric: m,
        } = &rule
        else {
            panic!("a core rule")
        };
        assert_eq!(rows.len(), 400);
        assert!(radius.iter().all(|r| r.is_infinite()));
        assert_eq!(Some(*m), AssignMetric::parse(metric));
        assert_core_rows_keep_their_labels(metric, &rule, &x, &found.labels);
    }
    let rule = PlacementRule::spectral(&[0, 1, -1, 1]);
    assert_eq!(
        rule,
        PlacementRule::NearestCore {
            rows: vec![0, 1, 3],
            radius: vec![f64::INFINITY; 3],
            metric: AssignMetric::Euclidean,
        }
    );
}

/// Fit on a seeded half, place the other half; the agreement with a fit on everything.
fn sampled_agreement(
    x: &Matrix,
    fit: impl Fn(&Matrix) -> (Vec<i64>, PlacementRule, Option<Matrix>),
) -> f64 {
    let n = x.rows();
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut sampled = rand::seq::index::sample(&mut rng, n, n / 2).into_vec();
    sampled.sort_unstable();
    let mut in_sample = vec![false; n];
    sampled.iter().for_each(|&i| in_sample[i] = true);
    let rest: Vec<usize> = (0..n).filter(|&i| !in_sample[i]).collect();

    let (whole, _, _) = fit(x);
    let sample = rows_of(x, &sampled);
    let (labels, rule, centers) = fit(&sample);
    let a = match centers {
        Some(c) => rule.assigner(&sample, &labels, c).unwrap(),
        None => assigner_of(&rule, &sample, &labels),
    };
    let placed = a.assign(&rows_of(x, &rest), &ctx()).unwrap();
    let mut combined = vec![-1i64; n];
    for (&i, &l) in sampled.iter().zip(&labels) {
        combined[i] = l;
    }
    for (&i, p) in rest.iter().zip(&placed) {
        combined[i] = p.cluster.map_or(-1, i64::from);
    }
    adjusted_rand_index(&whole, &combined)
}

#[test]
fn a_sampled_fit_places_the_rest_as_a_fit_on_everything_would() {
    let x = blobs(3000, 3, 5, 20.0, 1.0, 41);
    let kmeans_ari = sampled_agreement(&x, |s| {
        let p = KMeansParams {
            n_clusters: 5,
            init: KMeansInit::KMeansPlusPlus,
            n_init: 3,
            max_iter: 300,
            tol: 1e-4,
            random_state: Some(0),
        };
        let fit = kmeans::fit(s, &p, &ctx()).unwrap();
        let labels = fit.labels.iter().map(|&l| i64::from(l)).collect();
        (labels, PlacementRule::NearestCentroid, Some(fit.centers))
    });
    assert!(kmeans_ari >= 0.95, "k-means: ARI {kmeans_ari}");

    let p = DbscanParams::from_params(&params(serde_json::json!({"eps": 0.5, "min_samples": 5})))
        .unwrap();
    let dbscan_ari = sampled_agreement(&x, |s| {
        let (found, core) = dbscan::fit_with_cores(s, &p, &ctx()).unwrap();
        let rule = PlacementRule::dbscan(&found.labels, &core, &p);
        (found.labels, rule, None)
    });
    assert!(dbscan_ari >= 0.95, "DBSCAN: ARI {dbscan_ari}");

    let p =
        HdbscanParams::from_params(&params(serde_json::json!({"min_cluster_size": 20}))).unwrap();
    let hdbscan_ari = sampled_agreement(&x, |s| {
        let (found, core) = hdbscan::fit_with_core_distances(s, &p, &ctx()).unwrap();
        let rule = PlacementRule::hdbscan(&found.labels, &core, &p);
        (found.labels, rule, None)
    });
    assert!(hdbscan_ari >= 0.95, "HDBSCAN: ARI {hdbscan_ari}");

    let p =
        AgglomerativeParams::from_params(&params(serde_json::json!({"n_clusters": 5}))).unwrap();
    let ward_ari = sampled_agreement(&x, |s| {
        let found = agglomerative::fit(s, &p, &ctx()).unwrap();
        let rule = PlacementRule::agglomerative(&found.labels, &p);
        (found.labels, rule, None)
    });
    assert!(ward_ari >= 0.95, "agglomerative: ARI {ward_ari}");
}
