//! Test support: scikit-learn 1.9.1 reference answers for the density algorithms
//! (`tests/fixtures/density_*.json`, written by `scripts/reference/generate_density.py`)
//! compared through [`crate::metrics::adjusted_rand_index`].

use std::rc::Rc;

pub use crate::metrics::adjusted_rand_index;
use crate::model::{Matrix, ParamMap};

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
        ParamMap::from_json(&self.params).expect("fixture params must be an object")
    }
}

pub fn load(dataset: &str) -> DensityFixture {
    let v = crate::reference_fixtures::read(&format!("density_{dataset}"));
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
        data: crate::reference_fixtures::data(&v),
        cases,
    }
}

/// Every (fixture, case index) pair for one algorithm, across all data sets; each data set
/// is read once and shared by its cases.
pub fn cases_for(algorithm: &str) -> Vec<(Rc<DensityFixture>, usize)> {
    let mut out = Vec::new();
    for name in DATASETS {
        let f = Rc::new(load(name));
        for i in 0..f.cases.len() {
            if f.cases[i].algorithm == algorithm {
                out.push((Rc::clone(&f), i));
            }
        }
    }
    out
}
