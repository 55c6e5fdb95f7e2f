//! Agreement between two labellings of the same rows.

use std::collections::HashMap;

/// Adjusted Rand index of two labellings, as scikit-learn's `adjusted_rand_score`: every
/// distinct label (noise −1 included) is one class.
pub fn adjusted_rand_index(a: &[i64], b: &[i64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    let mut pairs: HashMap<(i64, i64), u64> = HashMap::new();
    let mut rows: HashMap<i64, u64> = HashMap::new();
    let mut cols: HashMap<i64, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *pairs.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let comb2 = |c: u64| (c as f64) * (c as f64 - 1.0) / 2.0;
    let index: f64 = pairs.values().map(|&c| comb2(c)).sum();
    let sum_a: f64 = rows.values().map(|&c| comb2(c)).sum();
    let sum_b: f64 = cols.values().map(|&c| comb2(c)).sum();
    let expected = sum_a * sum_b / comb2(a.len() as u64).max(1.0);
    let max = (sum_a + sum_b) / 2.0;
    // scikit-learn's special cases: identical trivial partitions score 1.
    if (max - expected).abs() < f64::EPSILON || n < 2.0 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::adjusted_rand_index;

    #[test]
    fn ari_is_one_for_a_relabelling_and_low_for_unrelated_labels() {
        let a = [0, 0, 1, 1, -1, 2];
        let b = [5, 5, 3, 3, 9, 7];
        assert!((adjusted_rand_index(&a, &b) - 1.0).abs() < 1e-12);
        let c = [0, 1, 0, 1, 0, 1];
        assert!(adjusted_rand_index(&a, &c) < 0.2);
    }

    #[test]
    fn ari_matches_scikit_learn_on_a_known_case() {
        // sklearn.metrics.adjusted_rand_score([0,0,1,1],[0,0,1,2]) == 0.5714285714285715
        let v = adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]);
        assert!((v - 0.571_428_571_428_571_5).abs() < 1e-12, "{v}");
    }
}
