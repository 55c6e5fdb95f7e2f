//! Test support: scikit-learn 1.9.1 reference answers for the density algorithms
//! (`tests/fixtures/density_*.json`, written by `scripts/reference/generate_density.py`)
//! and the adjusted Rand index they are compared with.

use std::collections::HashMap;

use crate::model::{Matrix, ParamMap, ParamValue};

/// Data sets with density fixtures.
pub const DATASETS: [&str; 4] = ["blobs", "moons", "varied", "digits"];

/// One data set (float32 values, as the service sees them) and scikit-learn's labels for
/// each algorithm and parameter variant run on it.
pub struct DensityFixture {
    pub dataset: String,
    pub data: Matrix,
    pub cases: Vec<DensityCase>,
}

pub struct DensityCase {
    /// `dbscan`, `hdbscan` or `optics`.
    pub algorithm: String,
    /// `algorithm_params` exactly as a client would send them.
    pub params: serde_json::Value,
    /// scikit-learn's `labels_` (−1 = noise).
    pub labels: Vec<i64>,
}

impl DensityCase {
    pub fn param_map(&self) -> ParamMap {
        match ParamValue::from(&self.params) {
            ParamValue::Map(m) => ParamMap::new(m),
            _ => panic!("fixture params must be an object"),
        }
    }
}

pub fn load(dataset: &str) -> DensityFixture {
    let path = format!(
        "{}/tests/fixtures/density_{dataset}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    assert_eq!(v["sklearn_version"], "1.9.1", "{path}");
    let rows = v["data"].as_array().expect("data is a list");
    let cols = rows[0].as_array().expect("rows are lists").len();
    let data: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.as_array().expect("rows are lists"))
        .map(|x| x.as_f64().expect("numbers") as f32)
        .collect();
    let cases = v["cases"]
        .as_array()
        .expect("cases is a list")
        .iter()
        .map(|c| DensityCase {
            algorithm: c["algorithm"].as_str().expect("algorithm").to_owned(),
            params: c["params"].clone(),
            labels: c["labels"]
                .as_array()
                .expect("labels")
                .iter()
                .map(|l| l.as_i64().expect("integer label"))
                .collect(),
        })
        .collect();
    DensityFixture {
        dataset: dataset.to_owned(),
        data: Matrix::from_vec(rows.len(), cols, data).expect("rectangular data"),
        cases,
    }
}

/// Every (fixture, case) pair for one algorithm, across all data sets.
pub fn cases_for(algorithm: &str) -> Vec<(DensityFixture, usize)> {
    let mut out = Vec::new();
    for name in DATASETS {
        let f = load(name);
        let idx: Vec<usize> = (0..f.cases.len())
            .filter(|&i| f.cases[i].algorithm == algorithm)
            .collect();
        if idx.is_empty() {
            continue;
        }
        // One fixture value per case keeps the callers simple; the data sets are small.
        for i in idx {
            out.push((load(name), i));
        }
    }
    out
}

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
