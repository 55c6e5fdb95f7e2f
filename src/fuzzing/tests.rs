use std::path::{Path, PathBuf};

use super::*;

type Entry = fn(&[u8]) -> ApiResult<()>;

const TARGETS: [(&str, Entry); 4] = [
    ("execute_json", execute_json),
    ("execute_proto", execute_proto),
    ("documents_parquet", documents_parquet),
    ("documents_json", documents_json),
];

/// Inputs above this are left to the fuzz runs; the test suite stays quick.
const MAX_REPLAYED_BYTES: u64 = 256 * 1024;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the folder is absent.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_runs_through_its_target_without_panicking() {
    let mut replayed = 0;
    let mut panicked = Vec::new();
    for kind in ["corpus", "regressions"] {
        for (target, entry) in TARGETS {
            for path in inputs(kind, target) {
                let len = std::fs::metadata(&path).expect("metadata").len();
                if len > MAX_REPLAYED_BYTES {
                    continue;
                }
                let bytes = std::fs::read(&path).expect("read an input");
                if std::panic::catch_unwind(|| entry(&bytes)).is_err() {
                    panicked.push(path.display().to_string());
                }
                replayed += 1;
            }
        }
    }
    assert!(panicked.is_empty(), "these inputs panic: {panicked:?}");
    // The seeds alone are more than this: an empty replay means the folders moved.
    assert!(replayed >= 20, "only {replayed} inputs were replayed");
}

#[test]
fn every_seed_of_the_corpora_is_accepted_so_the_fuzzers_start_from_valid_inputs() {
    for (target, entry) in TARGETS {
        let seeds = inputs("corpus", target);
        assert!(!seeds.is_empty(), "{target} has no seed corpus");
        for path in seeds {
            let bytes = std::fs::read(&path).expect("read a seed");
            if let Err(e) = entry(&bytes) {
                panic!("the seed {} is refused: {e:?}", path.display());
            }
        }
    }
}

#[test]
fn an_internal_error_is_a_finding_not_an_answer() {
    let internal = || -> ApiResult<()> { Err(ApiError::internal("boom")) };
    assert!(std::panic::catch_unwind(|| checked(internal())).is_err());
    let refused = || -> ApiResult<()> { Err(ApiError::invalid_request("body", "no")) };
    assert_eq!(
        checked(refused()).map_err(|e| e.code),
        Err(ErrorCode::InvalidRequest)
    );
}

#[test]
fn a_body_that_is_not_parquet_is_refused_naming_the_body() {
    let e = documents_parquet(b"document_id,embedding\nd1,1\n").expect_err("not Parquet");
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(e.field.as_deref(), Some("body"));
}

fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("regressions").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_not_parquet(e: ApiError) {
    assert_eq!(e.code, ErrorCode::InvalidRequest, "{e:?}");
    assert_eq!(e.field.as_deref(), Some("body"), "{e:?}");
    assert!(e.message.contains("not a readable Parquet file"), "{e:?}");
}

#[test]
fn a_parquet_upload_with_invalid_utf8_in_a_string_is_refused_naming_the_body_not_a_500() {
    for name in ["invalid_utf8_string", "invalid_utf8_string_small"] {
        let bytes = regression("documents_parquet", name);
        assert_not_parquet(documents_parquet(&bytes).expect_err("invalid UTF-8"));
    }
}

#[test]
fn a_parquet_column_chunk_at_a_negative_offset_is_refused_naming_the_body_not_a_panic() {
    let bytes = regression("documents_parquet", "negative_column_chunk_offset");
    assert_not_parquet(documents_parquet(&bytes).expect_err("a negative offset"));
}

#[test]
fn a_parquet_column_chunk_past_the_end_of_the_upload_is_refused_naming_the_body_not_a_500() {
    let bytes = regression("documents_parquet", "column_chunk_past_the_end");
    assert_not_parquet(documents_parquet(&bytes).expect_err("a chunk past the end"));
}

/// libFuzzer still reports this input: its panic hook aborts before the upload catches
/// the panic inside parquet. The server answers it as below.
#[test]
fn a_parquet_dictionary_key_past_its_dictionary_is_refused_naming_the_body_not_a_panic() {
    let bytes = regression(
        "documents_parquet",
        "dictionary_key_past_a_fixed_length_dictionary",
    );
    assert_not_parquet(documents_parquet(&bytes).expect_err("a corrupt page"));
}
