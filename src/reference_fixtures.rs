//! Test support: reading the scikit-learn reference fixtures under `tests/fixtures/`
//! (written by `scripts/reference/*.py`, committed so that tests need no Python).

use crate::model::Matrix;

/// `tests/fixtures/{file}.json`, checked to come from the pinned scikit-learn.
pub fn read(file: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{file}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    assert_eq!(v["sklearn_version"], "1.9.1", "{path}");
    v
}

/// The fixture's `data`: rows of numbers, as the float32 values the service sees.
pub fn data(v: &serde_json::Value) -> Matrix {
    let rows = v["data"].as_array().expect("data is a list");
    let cols = rows[0].as_array().expect("rows are lists").len();
    let data: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.as_array().expect("rows are lists"))
        .map(|x| x.as_f64().expect("numbers") as f32)
        .collect();
    Matrix::from_vec(rows.len(), cols, data).expect("rectangular data")
}
