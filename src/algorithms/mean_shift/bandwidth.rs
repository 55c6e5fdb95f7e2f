//! scikit-learn's `estimate_bandwidth` and `get_bin_seeds`.

use std::collections::HashMap;

use super::ball::Prepared;
use crate::model::{Cancelled, Matrix, RunContext};

/// scikit-learn's default `quantile` for `estimate_bandwidth`, the one `MeanShift` uses.
pub const QUANTILE: f64 = 0.3;

/// The neighbour whose distance `estimate_bandwidth` averages: `int(N · 0.3)`, at least 1,
/// counting the row itself (scikit-learn queries the fitted rows themselves).
pub fn bandwidth_neighbours(n: usize) -> usize {
    ((n as f64 * QUANTILE) as usize).max(1)
}

/// `estimate_bandwidth(X)`: the mean over rows of the exact distance to the
/// `int(N · 0.3)`-th nearest row, measured in f64 as the KD-tree measures. No N × 0.3N
/// matrix: see [`Prepared::kth_distances`] (bracketing by f32 estimates, a few rows at a
/// time), which is many times faster at this large `k` than the top-k heaps of
/// `neighbors::Points::kth_distances`.
pub fn estimate_bandwidth(x: &Matrix, ctx: &RunContext) -> Result<f64, Cancelled> {
    let n = x.rows();
    if n == 0 {
        return Ok(0.0);
    }
    estimate_on(&Prepared::new(x), ctx)
}

/// [`estimate_bandwidth`] on data already prepared for the climb.
pub(super) fn estimate_on(prepared: &Prepared<'_>, ctx: &RunContext) -> Result<f64, Cancelled> {
    let n = prepared.len();
    if n == 0 {
        return Ok(0.0);
    }
    let kth = prepared.kth_distances(bandwidth_neighbours(n), ctx)?;
    Ok(kth.iter().sum::<f64>() / n as f64)
}

/// Initial kernel positions, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Seeds {
    /// Every row, in order (scikit-learn's `seeds = X`).
    Rows,
    /// Grid-cell seeds, `d` values each, in order of each cell's first row.
    Points(Vec<f64>),
}

/// `get_bin_seeds(X, bandwidth, min_bin_freq)`: cells `round(x / bandwidth)` (half to
/// even, as `np.round`), the cells holding at least `min_bin_freq` rows, each seeded at
/// `cell · bandwidth`; every row when the bandwidth is 0 or when as many cells qualify as
/// there are rows.
///
/// scikit-learn's arithmetic depends on where the bandwidth came from (NumPy 2 promotion):
/// a bandwidth the client gave is a Python float, which float32 data absorbs, so the cells
/// and seeds are computed in f32; an estimated one is a NumPy float64, which promotes them
/// to f64. `given` says which.
pub fn bin_seeds(x: &Matrix, bandwidth: f64, given: bool, min_bin_freq: usize) -> Seeds {
    let (n, d) = (x.rows(), x.cols());
    if bandwidth == 0.0 {
        return Seeds::Rows;
    }
    let bw32 = bandwidth as f32;
    // Cells keyed by their f32 coordinates' bits; +0.0 makes −0.0 the same key, as Python
    // tuples of floats compare equal.
    let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut cells: Vec<(Vec<f32>, usize)> = Vec::new();
    for i in 0..n {
        let cell: Vec<f32> = x
            .row(i)
            .iter()
            .map(|&v| {
                let c = if given {
                    (v / bw32).round_ties_even()
                } else {
                    (f64::from(v) / bandwidth).round_ties_even() as f32
                };
                c + 0.0
            })
            .collect();
        let key: Vec<u32> = cell.iter().map(|c| c.to_bits()).collect();
        match index.get(&key) {
            Some(&k) => cells[k].1 += 1,
            None => {
                index.insert(key, cells.len());
                cells.push((cell, 1));
            }
        }
    }
    let kept: Vec<&Vec<f32>> = cells
        .iter()
        .filter(|(_, count)| *count >= min_bin_freq)
        .map(|(cell, _)| cell)
        .collect();
    if kept.len() == n {
        return Seeds::Rows;
    }
    let mut seeds = Vec::with_capacity(kept.len() * d);
    for cell in kept {
        for &c in cell {
            seeds.push(if given {
                f64::from(c * bw32)
            } else {
                f64::from(c) * bandwidth
            });
        }
    }
    Seeds::Points(seeds)
}
