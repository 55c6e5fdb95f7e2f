//! Fixtures shared by the store's test modules.

use super::Store;
use crate::model::Scope;

/// A store over a fresh directory of its own under the system temp dir.
pub(super) fn temp_store(name: &str) -> Store {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "clusterd-store-{name}-{}-{nanos}",
        std::process::id()
    ));
    Store::open(dir.to_str().expect("temp dir is UTF-8")).expect("open a local store")
}

pub(super) fn scope() -> Scope {
    Scope::new("int_abc123", "production").expect("valid names")
}
