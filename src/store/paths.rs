//! The key layout of DESIGN §2, relative to the store prefix. Every function re-validates
//! the names it puts in a key, so that no caller can build a key from an unchecked string.

use object_store::path::Path;
use rand::RngCore;

use crate::model::{ApiResult, Scope, validate_name};

pub(crate) const COLLECTIONS: &str = "collections";
pub(crate) const STAGING: &str = "_staging";

/// `{org}/{namespace}/collections`
pub(crate) fn collections_root(scope: &Scope) -> Path {
    Path::from_iter([scope.org(), scope.namespace(), COLLECTIONS])
}

/// `{org}/{namespace}/collections/{collection_id}`; `field` names the request field the
/// id came from, for the error.
pub(crate) fn collection_dir(scope: &Scope, field: &str, collection_id: &str) -> ApiResult<Path> {
    validate_name(field, collection_id)?;
    Ok(collections_root(scope).join(collection_id))
}

/// A new part key. The zero-padded millisecond prefix makes lexicographic key order equal
/// upload order (the "latest part wins" rule reads parts in key order); the random suffix
/// keeps two uploads in the same millisecond apart.
pub(crate) fn new_part_key(dir: &Path) -> Path {
    let millis = chrono::Utc::now().timestamp_millis().max(0);
    dir.clone()
        .join(format!("part-{millis:013}-{}.parquet", random_hex(8)))
}

/// `{org}/{namespace}/_staging/{random}.parquet`
pub(crate) fn new_staging_key(scope: &Scope) -> Path {
    Path::from_iter([scope.org(), scope.namespace(), STAGING])
        .join(format!("{}.parquet", random_hex(16)))
}

/// Whether `location` is a part of the collection at `dir`: a direct child ending in
/// `.parquet`. Names starting with `.` or `_` are skipped because writers such as Spark and
/// Hadoop use them for markers and temporary files (`_SUCCESS`, `.part-0.crc`).
pub(crate) fn is_part(dir: &Path, location: &Path) -> bool {
    let Some(rest) = location.prefix_match(dir) else {
        return false;
    };
    let parts: Vec<_> = rest.collect();
    match parts.as_slice() {
        [name] => {
            let name = name.as_ref();
            name.ends_with(".parquet") && !name.starts_with('.') && !name.starts_with('_')
        }
        _ => false,
    }
}

pub(crate) const RUNS: &str = "engine_cluster_build";
pub(crate) const STATUS_FILE: &str = "status.json";
pub(crate) const RECORD_FILE: &str = "run.json";

/// `{org}/{namespace}/engine_cluster_build/{run_id}/{file}`, relative to the store prefix.
/// This is the key callers show to users (`parquet_path`, `members_key`); it does not
/// validate, so build store locations with [`run_file`] instead.
pub fn run_key(scope: &Scope, run_id: &str, file: &str) -> String {
    format!(
        "{}/{}/{RUNS}/{run_id}/{file}",
        scope.org(),
        scope.namespace()
    )
}

/// `{org}/{namespace}/engine_cluster_build`
pub(crate) fn runs_root(scope: &Scope) -> Path {
    Path::from_iter([scope.org(), scope.namespace(), RUNS])
}

/// `{org}/{namespace}/engine_cluster_build/{run_id}/{file}`, with the run id validated.
/// `file` is always one of our constant names, never request input.
pub(crate) fn run_file(scope: &Scope, run_id: &str, file: &str) -> ApiResult<Path> {
    validate_name("run_id", run_id)?;
    Ok(runs_root(scope).join(run_id).join(file))
}

/// The file name of a key, for messages (the prefix above it is ours, not the caller's).
pub(crate) fn file_name(location: &Path) -> String {
    location.filename().unwrap_or_default().to_owned()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_keys_sort_in_upload_order_and_are_parts() {
        let scope = Scope::new("int_abc", "prod").unwrap();
        let dir = collection_dir(&scope, "collection_id", "c1").unwrap();
        assert_eq!(dir.as_ref(), "int_abc/prod/collections/c1");
        let a = new_part_key(&dir);
        assert!(is_part(&dir, &a));
        assert!(a.as_ref().starts_with("int_abc/prod/collections/c1/part-"));
        assert!(!is_part(&dir, &dir.clone().join("_SUCCESS.parquet")));
        assert!(!is_part(&dir, &dir.clone().join("x.json")));
        assert!(!is_part(&dir, &dir.clone().join("sub").join("x.parquet")));
        assert!(collection_dir(&scope, "collection_id", "../x").is_err());
        let staging = new_staging_key(&scope);
        assert!(staging.as_ref().starts_with("int_abc/prod/_staging/"));
    }
}
