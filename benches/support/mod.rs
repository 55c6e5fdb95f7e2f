//! What the benchmark binaries driven by `scripts/bench/compare.py` share: argument lookup
//! and the raw data file the script writes for every engine.

use clusterd::model::Matrix;

/// The value after `name` on the command line.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The `i`-th little-endian u64 of `bytes`.
pub fn word(bytes: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

/// A raw data file: u64 rows, u64 cols, then rows×cols little-endian f32.
pub fn read_raw(path: &str) -> Matrix {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let (n, d) = (word(&bytes, 0) as usize, word(&bytes, 1) as usize);
    let data: Vec<f32> = bytes[16..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Matrix::from_vec(n, d, data).unwrap_or_else(|| panic!("{path}: size does not match {n}x{d}"))
}
