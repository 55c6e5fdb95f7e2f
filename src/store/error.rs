//! Errors of the store layer. `open` has its own typed error (it fails at start-up, before
//! any request exists); everything a request triggers becomes an `ApiError` here.

use parquet::errors::ParquetError;

use crate::model::ApiError;

/// Why `Store::open` could not give a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL {0:?}: use a local path, file:///path or s3://bucket/prefix")]
    UnsupportedScheme(String),
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create the store directory {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error(
        "the store {store} cannot be read (check the bucket, AWS_ENDPOINT_URL and the credentials): {source}"
    )]
    Unreachable {
        store: String,
        #[source]
        source: object_store::Error,
    },
}

/// An object-store failure during a request is the server's problem, never the caller's.
pub(crate) fn internal_os(e: object_store::Error) -> ApiError {
    ApiError::internal(e)
}

/// Split Parquet failures: I/O underneath (our reader wraps object-store errors as
/// `External`) is internal, anything else means the bytes are not valid Parquet and the
/// caller gets `on_data(message)`. parquet wraps data errors as `External` too (invalid
/// UTF-8 in a string column, a corrupt snappy or zstd page, an Arrow error while
/// decoding), so only an object-store error inside is the server's problem.
pub(crate) fn parquet_error(e: ParquetError, on_data: impl FnOnce(String) -> ApiError) -> ApiError {
    if is_store_failure(&e) {
        ApiError::internal(e)
    } else {
        on_data(e.to_string())
    }
}

/// The store failed underneath a Parquet read (the server's problem), as opposed to bytes
/// that are not valid Parquet (see [`parquet_error`]).
pub(crate) fn is_store_failure(e: &ParquetError) -> bool {
    matches!(e, ParquetError::External(inner) if inner.is::<object_store::Error>())
}
