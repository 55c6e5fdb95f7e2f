//! Cluster extraction from an OPTICS ordering: scikit-learn 1.9.1's
//! `cluster_optics_dbscan` and `cluster_optics_xi` (with `_xi_cluster`, `_extend_region`,
//! `_update_filter_sdas`, `_correct_predecessor` and `_extract_xi_labels`), ported line by
//! line so that ties and edge cases resolve as they do there.

/// DBSCAN-like labels for a cut of the reachability plot at `eps`: a point whose
/// reachability exceeds `eps` starts a new cluster if it is core at `eps`, and is noise
/// otherwise; every other point joins the cluster of the points before it in the ordering.
/// Returns the labels (−1 noise) and the number of clusters.
pub fn cluster_optics_dbscan(
    reachability: &[f64],
    core_distances: &[f64],
    ordering: &[usize],
    eps: f64,
) -> (Vec<i64>, usize) {
    let n = core_distances.len();
    let far_reach = |p: usize| reachability[p] > eps;
    let near_core = |p: usize| core_distances[p] <= eps;
    let mut labels = vec![0i64; n];
    // labels[ordering] = cumsum(far_reach & near_core over the ordering) − 1
    let mut starts = 0i64;
    for &p in ordering {
        if far_reach(p) && near_core(p) {
            starts += 1;
        }
        labels[p] = starts - 1;
    }
    for (p, label) in labels.iter_mut().enumerate() {
        if far_reach(p) && !near_core(p) {
            *label = -1;
        }
    }
    (labels, starts as usize)
}

/// Xi-steep extraction. `min_samples` and `min_cluster_size` are already resolved to
/// counts. Returns the labels (−1 noise), the number of labelled clusters, and the
/// cluster hierarchy as inclusive `[start, end]` ranges of the ordering, smaller clusters
/// before the larger ones that contain them.
pub fn cluster_optics_xi(
    reachability: &[f64],
    predecessor: &[i64],
    ordering: &[usize],
    min_samples: usize,
    min_cluster_size: usize,
    xi: f64,
    predecessor_correction: bool,
) -> (Vec<i64>, usize, Vec<(usize, usize)>) {
    let reach_plot: Vec<f64> = ordering.iter().map(|&p| reachability[p]).collect();
    let pred_plot: Vec<i64> = ordering.iter().map(|&p| predecessor[p]).collect();
    let clusters = xi_cluster(
        &reach_plot,
        &pred_plot,
        ordering,
        xi,
        min_samples,
        min_cluster_size,
        predecessor_correction,
    );
    let (labels, n_clusters) = extract_xi_labels(ordering, &clusters);
    (labels, n_clusters, clusters)
}

/// A steep down area and the maximum reachability seen between it and the current point.
struct SteepDownArea {
    start: usize,
    end: usize,
    mib: f64,
}

/// `_extend_region`: the end of the maximal steep region starting at `start`, allowing at
/// most `min_samples` consecutive points that are neither steep nor against the direction.
fn extend_region(steep: &[bool], xward: &[bool], start: usize, min_samples: usize) -> usize {
    let mut non_xward_points = 0;
    let mut end = start;
    for index in start..steep.len() {
        if steep[index] {
            non_xward_points = 0;
            end = index;
        } else if !xward[index] {
            // Not steep, but still going the same way.
            non_xward_points += 1;
            if non_xward_points > min_samples {
                break;
            }
        } else {
            return end;
        }
    }
    end
}

/// `_update_filter_sdas`: drop the steep down areas that the new maximum-in-between
/// rules out, and raise the maximum of the rest.
fn update_filter_sdas(
    sdas: Vec<SteepDownArea>,
    mib: f64,
    xi_complement: f64,
    reach_plot: &[f64],
) -> Vec<SteepDownArea> {
    if mib.is_infinite() {
        return Vec::new();
    }
    sdas.into_iter()
        .filter(|sda| mib <= reach_plot[sda.start] * xi_complement)
        .map(|sda| SteepDownArea {
            mib: py_max(sda.mib, mib),
            ..sda
        })
        .collect()
}

/// `_correct_predecessor` (Schubert & Gertz 2018, algorithm 2): shrink the end of the
/// cluster `[s, e]` until its last point's predecessor lies inside it. `position[p]` is
/// p's index in the ordering, which turns scikit-learn's scan of `ordering[s..e]` for the
/// predecessor into one lookup with the same answer.
fn correct_predecessor(
    reach_plot: &[f64],
    pred_plot: &[i64],
    position: &[usize],
    s: usize,
    mut e: usize,
) -> Option<(usize, usize)> {
    while s < e {
        if reach_plot[s] > reach_plot[e] {
            return Some((s, e));
        }
        if let Ok(p_e) = usize::try_from(pred_plot[e])
            && (s..e).contains(&position[p_e])
        {
            return Some((s, e));
        }
        e -= 1;
    }
    None
}

/// `_xi_cluster`: Figure 19 of the OPTICS paper, with scikit-learn's corrections.
fn xi_cluster(
    reach_plot: &[f64],
    pred_plot: &[i64],
    ordering: &[usize],
    xi: f64,
    min_samples: usize,
    min_cluster_size: usize,
    predecessor_correction: bool,
) -> Vec<(usize, usize)> {
    let n = reach_plot.len();
    // A trailing inf lets a cluster that runs to the end of the plot close there even
    // without an upward region after it.
    let mut r = Vec::with_capacity(n + 1);
    r.extend_from_slice(reach_plot);
    r.push(f64::INFINITY);
    let mut position = vec![0usize; n];
    for (i, &p) in ordering.iter().enumerate() {
        position[p] = i;
    }

    let xi_complement = 1.0 - xi;
    let mut sdas: Vec<SteepDownArea> = Vec::new();
    let mut clusters = Vec::new();
    let mut index = 0usize;
    let mut mib = 0.0f64;

    // inf/inf and 0/0 are NaN and compare false everywhere, as in NumPy.
    let ratio: Vec<f64> = (0..n).map(|i| r[i] / r[i + 1]).collect();
    let steep_upward: Vec<bool> = ratio.iter().map(|&q| q <= xi_complement).collect();
    let steep_downward: Vec<bool> = ratio.iter().map(|&q| q >= 1.0 / xi_complement).collect();
    let downward: Vec<bool> = ratio.iter().map(|&q| q > 1.0).collect();
    let upward: Vec<bool> = ratio.iter().map(|&q| q < 1.0).collect();

    for steep_index in (0..n).filter(|&i| steep_upward[i] || steep_downward[i]) {
        // Already inside a region found earlier.
        if steep_index < index {
            continue;
        }
        let local_max = r[index..=steep_index]
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        mib = py_max(mib, local_max);

        if steep_downward[steep_index] {
            sdas = update_filter_sdas(sdas, mib, xi_complement, &r);
            let d_start = steep_index;
            let d_end = extend_region(&steep_downward, &upward, d_start, min_samples);
            sdas.push(SteepDownArea {
                start: d_start,
                end: d_end,
                mib: 0.0,
            });
            index = d_end + 1;
            mib = r[index];
        } else {
            sdas = update_filter_sdas(sdas, mib, xi_complement, &r);
            let u_start = steep_index;
            let u_end = extend_region(&steep_upward, &downward, u_start, min_samples);
            index = u_end + 1;
            mib = r[index];

            let mut u_clusters = Vec::new();
            for d in &sdas {
                let mut c_start = d.start;
                let mut c_end = u_end;

                // line (**), sc2*
                if r[c_end + 1] * xi_complement < d.mib {
                    continue;
                }

                // Definition 11, criterion 4.
                let d_max = r[d.start];
                if d_max * xi_complement >= r[c_end + 1] {
                    // First index from the left almost level with the cluster's end.
                    while r[c_start + 1] > r[c_end + 1] && c_start < d.end {
                        c_start += 1;
                    }
                } else if r[c_end + 1] * xi_complement >= d_max {
                    // First index from the right almost level with the cluster's start
                    // (the paper's r(x) < r(sD) corrected to r(x) > r(sD)).
                    while r[c_end - 1] > d_max && c_end > u_start {
                        c_end -= 1;
                    }
                }

                if predecessor_correction {
                    match correct_predecessor(&r, pred_plot, &position, c_start, c_end) {
                        Some((s, e)) => (c_start, c_end) = (s, e),
                        None => continue,
                    }
                }

                // Definition 11: criteria 3.a, 1 and 2.
                if c_end + 1 - c_start < min_cluster_size || c_start > d.end || c_end < u_start {
                    continue;
                }
                u_clusters.push((c_start, c_end));
            }
            // Smaller clusters first.
            u_clusters.reverse();
            clusters.extend(u_clusters);
        }
    }
    clusters
}

/// `_extract_xi_labels`: each cluster, smallest first, takes its points if none of them
/// is labelled yet. Returns labels by sample and the number of labels used.
fn extract_xi_labels(ordering: &[usize], clusters: &[(usize, usize)]) -> (Vec<i64>, usize) {
    let mut by_position = vec![-1i64; ordering.len()];
    let mut label = 0i64;
    for &(start, end) in clusters {
        let span = &mut by_position[start..=end];
        if span.iter().all(|&l| l == -1) {
            span.fill(label);
            label += 1;
        }
    }
    let mut labels = vec![-1i64; ordering.len()];
    for (i, &p) in ordering.iter().enumerate() {
        labels[p] = by_position[i];
    }
    (labels, label as usize)
}

/// Python's `max(a, b)` on floats: `b` only if it is strictly greater.
fn py_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}
