//! The seeded uniform sample of DESIGN §3: the same request picks the same documents.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `amount` distinct indices of `0..total`, ascending so that the caller keeps the
/// documents in (collection, file, row) order. `amount >= total` keeps everything.
pub(crate) fn sample_indices(total: usize, amount: usize, seed: u64) -> Vec<usize> {
    if amount >= total {
        return (0..total).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picked = rand::seq::index::sample(&mut rng, total, amount).into_vec();
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_indices_are_sorted_distinct_and_seeded() {
        let a = sample_indices(1000, 50, 7);
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&i| i < 1000));
        assert_eq!(a, sample_indices(1000, 50, 7));
        assert_ne!(a, sample_indices(1000, 50, 8));
        assert_eq!(sample_indices(3, 10, 1), vec![0, 1, 2]);
    }
}
