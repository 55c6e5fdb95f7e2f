//! Initial centres: greedy k-means++ and uniform random rows, as scikit-learn 1.9.1 does
//! them (`_kmeans_plusplus`, and `init="random"`).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::algorithms::distance::{block_range, map_blocks};
use crate::model::{Cancelled, Matrix, RunContext};

/// `k` distinct rows of `x`, uniformly. Requires `k <= x.rows()`.
pub(super) fn random_rows(x: &Matrix, k: usize, rng: &mut ChaCha8Rng) -> Matrix {
    let idx = rand::seq::index::sample(rng, x.rows(), k);
    gather_rows(x, &idx.into_vec())
}

fn gather_rows(x: &Matrix, ids: &[usize]) -> Matrix {
    let mut m = Matrix::zeros(ids.len(), x.cols());
    for (r, &i) in ids.iter().enumerate() {
        m.row_mut(r).copy_from_slice(x.row(i));
    }
    m
}

/// Greedy k-means++: the first centre is a uniform row; each next one is the best of
/// `2 + floor(ln k)` candidates sampled with probability proportional to the squared
/// distance to the closest centre so far, "best" meaning the lowest resulting potential
/// (sum of closest squared distances). Requires `1 <= k <= x.rows()`.
///
/// Candidate distances come from the blocked GEMM; the closest distances are kept as one
/// f32 per row, with their per-block sums, so that sampling a candidate costs a walk over
/// block sums and then over one block instead of a cumulative sum over every row.
pub(super) fn kmeans_plusplus(
    x: &Matrix,
    x_sq: &[f32],
    k: usize,
    rng: &mut ChaCha8Rng,
    ctx: &RunContext,
) -> Result<Matrix, Cancelled> {
    kmeans_plusplus_rows(x, x_sq, k, rng, ctx).map(|ids| gather_rows(x, &ids))
}

/// The rows [`kmeans_plusplus`] picks, in order (a Gaussian mixture's `k-means++` init
/// needs the rows themselves, not their copies).
pub(crate) fn kmeans_plusplus_rows(
    x: &Matrix,
    x_sq: &[f32],
    k: usize,
    rng: &mut ChaCha8Rng,
    ctx: &RunContext,
) -> Result<Vec<usize>, Cancelled> {
    let n = x.rows();
    let n_local_trials = 2 + (k as f64).ln().floor() as usize;
    let mut chosen = Vec::with_capacity(k);

    let first = rng.random_range(0..n);
    chosen.push(first);
    let first_m = gather_rows(x, &[first]);
    let per_block = map_blocks(x, x_sq, &first_m, &[x_sq[first]], ctx, |blk| {
        let mut d = vec![0f32; blk.rows()];
        blk.sq_dist_col(0, &mut d);
        let sum = d.iter().map(|&v| f64::from(v)).sum::<f64>();
        (d, sum)
    })?;
    let mut closest = Vec::with_capacity(n);
    let mut block_sums = Vec::with_capacity(per_block.len());
    for (d, s) in per_block {
        closest.extend_from_slice(&d);
        block_sums.push(s);
    }

    for _ in 1..k {
        ctx.checkpoint()?;
        let pot: f64 = block_sums.iter().sum();
        let ids: Vec<usize> = (0..n_local_trials)
            .map(|_| {
                let r = rng.random::<f64>() * pot;
                sample_index(&closest, &block_sums, r)
            })
            .collect();
        let cands = gather_rows(x, &ids);
        let cand_sq: Vec<f32> = ids.iter().map(|&i| x_sq[i]).collect();
        let closest_ref = &closest;
        // For each block: the would-be closest distances under every candidate (stored
        // candidate-major, a few floats per row) and their per-candidate sums.
        let per_block = map_blocks(x, x_sq, &cands, &cand_sq, ctx, |blk| {
            let rows = blk.rows();
            let mut mins = vec![0f32; rows * n_local_trials];
            let mut pots = vec![0f64; n_local_trials];
            let cur = &closest_ref[blk.start..blk.start + rows];
            for (j, (pot, out)) in pots.iter_mut().zip(mins.chunks_exact_mut(rows)).enumerate() {
                blk.sq_dist_col(j, out);
                for (o, &c) in out.iter_mut().zip(cur) {
                    *o = o.min(c);
                    *pot += f64::from(*o);
                }
            }
            (mins, pots)
        })?;
        let mut best = 0usize;
        let mut best_pot = f64::INFINITY;
        for j in 0..n_local_trials {
            let p: f64 = per_block.iter().map(|(_, pots)| pots[j]).sum();
            if p < best_pot {
                best_pot = p;
                best = j;
            }
        }
        for (b, (mins, pots)) in per_block.iter().enumerate() {
            let r = block_range(b, n);
            let rows = r.len();
            closest[r].copy_from_slice(&mins[best * rows..(best + 1) * rows]);
            block_sums[b] = pots[best];
        }
        chosen.push(ids[best]);
    }
    Ok(chosen)
}

/// The first row whose cumulative closest distance exceeds `r` (scikit-learn's
/// `searchsorted` over the cumulative sum; strict so that rows at distance zero, such as
/// chosen centres, are never picked). Rounding can leave `r` just past the end; like
/// scikit-learn we then clip to a valid row, preferring one at non-zero distance.
fn sample_index(closest: &[f32], block_sums: &[f64], r: f64) -> usize {
    let n = closest.len();
    let mut acc = 0.0f64;
    for (b, &s) in block_sums.iter().enumerate() {
        if acc + s > r {
            let range = block_range(b, n);
            for i in range.clone() {
                acc += f64::from(closest[i]);
                if acc > r {
                    return i;
                }
            }
            return last_positive(closest, range.start, range.end);
        }
        acc += s;
    }
    last_positive(closest, 0, n)
}

fn last_positive(closest: &[f32], start: usize, end: usize) -> usize {
    (start..end)
        .rev()
        .find(|&i| closest[i] > 0.0)
        .unwrap_or(end.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::distance::n_blocks;

    #[test]
    fn sample_index_follows_the_cumulative_sum() {
        let n = crate::algorithms::distance::BLOCK_ROWS + 3;
        let mut closest = vec![0f32; n];
        closest[5] = 1.0;
        closest[n - 1] = 3.0;
        let sums = [1.0, 3.0];
        assert_eq!(n_blocks(n), 2);
        assert_eq!(sample_index(&closest, &sums, 0.0), 5);
        assert_eq!(sample_index(&closest, &sums, 0.999), 5);
        assert_eq!(sample_index(&closest, &sums, 1.5), n - 1);
        assert_eq!(sample_index(&closest, &sums, 4.0), n - 1);
    }
}
