//! Where documents live (DESIGN §2): collections of Parquet parts under
//! `{org}/{namespace}/collections/{collection_id}/` in one object store, a local directory
//! or S3. Uploads are staged, validated and published as new parts; reading streams the
//! parts, keeps the latest row of each document id, samples, and projects only the
//! columns a run needs.

mod artifacts;
mod counting;
mod error;
mod load;
mod members;
mod paths;
mod placement;
mod reader;
mod runs;
mod sample;
mod upload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, RetryConfig};
use prometheus_client::metrics::counter::Counter;

use crate::model::{ApiError, ApiResult, Matrix, Scope, validate_name};

pub use artifacts::{ArtifactBody, ClusterRow, MemberRef, MemberRow, MemberTable, SampleArtifact};
pub use error::StoreError;
use error::{internal_os, parquet_error};
pub use load::{Remainder, RemainderBatch};
pub use members::{MembersPage, PagedMember};
pub use paths::run_key;
pub use placement::{CorePointsArtifact, StoredCentroids, StoredCorePoints};
use reader::{DOCUMENT_ID, Part, vector_type};
pub use runs::{RunPage, StoredRun};

/// How many footers are fetched at once when a call needs many (S3 latency dominates).
const FOOTER_CONCURRENCY: usize = 8;

/// The result of one upload: the part it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    pub collection_id: String,
    pub documents: usize,
    pub part_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorColumnInfo {
    pub name: String,
    pub dimension: usize,
    /// "float16", "float32" or "float64".
    pub element_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionInfo {
    pub collection_id: String,
    pub parts: usize,
    /// Rows stored, from the footers, before de-duplication of re-uploaded documents.
    pub rows: u64,
    pub bytes: u64,
    pub vector_columns: Vec<VectorColumnInfo>,
    pub attribute_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionPage {
    pub collections: Vec<CollectionInfo>,
    pub next_page_token: Option<String>,
}

/// What a run needs from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    pub collection_ids: Vec<String>,
    pub vector_column: Option<String>,
    /// Dotted paths into struct columns, e.g. `metadata.status`.
    pub attributes: Vec<String>,
    /// The request field that named each attribute, for errors; where absent,
    /// `config.attribute_config.attributes[k]`.
    pub attribute_fields: Vec<String>,
    pub sample_size: Option<usize>,
    pub seed: u64,
    /// Only these documents (of the de-duplicated collections), each of which must exist;
    /// the error names `{document_ids_field}[i]` for a missing one.
    pub document_ids: Option<Vec<String>>,
    pub document_ids_field: String,
    /// Checked once the documents to load are known, before any vector is read.
    pub limits: LoadLimits,
}

/// What one run may load. The memory estimate is `documents × (dimension ×
/// bytes_per_value + PER_DOCUMENT_BYTES)`: the engine says how many bytes per vector
/// value its run holds (copies included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadLimits {
    pub max_documents: Option<usize>,
    pub max_bytes: Option<u64>,
    pub bytes_per_value: u64,
}

/// Bytes a run holds per document besides its vector: its id, collection index, label,
/// distance, membership and ranking entries.
pub const PER_DOCUMENT_BYTES: u64 = 96;

impl LoadLimits {
    /// The estimated bytes of a run over `documents` vectors of `dimension` values.
    pub fn estimate(&self, documents: usize, dimension: usize) -> u64 {
        (documents as u64).saturating_mul(
            (dimension as u64)
                .saturating_mul(self.bytes_per_value)
                .saturating_add(PER_DOCUMENT_BYTES),
        )
    }

    /// Refuse a run above a limit, naming `sample_size` (the cure) and what it needs.
    pub fn check(&self, documents: usize, dimension: usize) -> ApiResult<()> {
        if let Some(max) = self.max_documents
            && documents > max
        {
            return Err(ApiError::payload_too_large(
                Some("sample_size"),
                format!(
                    "the run would load {documents} documents, above the limit of {max} per \
                     run; set sample_size to at most {max}"
                ),
            ));
        }
        let needed = self.estimate(documents, dimension);
        if let Some(max) = self.max_bytes
            && needed > max
        {
            let per = self.estimate(1, dimension).max(1);
            return Err(ApiError::payload_too_large(
                Some("sample_size"),
                format!(
                    "the run needs about {} ({documents} documents × {dimension} dimensions), \
                     above the limit of {} per run; set sample_size to at most {}",
                    human_bytes(needed),
                    human_bytes(max),
                    max / per
                ),
            ));
        }
        Ok(())
    }
}

/// `1.5 GiB`, `320.0 MiB`: sizes in messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDocuments {
    pub document_ids: Vec<String>,
    /// Row -> index into `LoadRequest::collection_ids`.
    pub collection_index: Vec<u32>,
    pub vectors: Option<Matrix>,
    pub vector_dimension: Option<usize>,
    /// `[attribute][row]` -> values: empty for null, several for a list.
    pub attributes: Vec<Vec<Vec<String>>>,
    /// Documents after de-duplication, before sampling.
    pub total_documents: usize,
}

/// The document store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The same store with few retries, for [`Store::check_access`]: requests keep
    /// object_store's patient default (10 retries, up to 3 minutes), which would hold a
    /// start-up against a wrong endpoint for about a minute before saying why.
    probe: Arc<dyn ObjectStore>,
    description: String,
    /// Bytes `inner` has handed to readers (the `/metrics` counter; the probe's listing
    /// reads no object).
    bytes_read: Counter,
}

/// Retries of the start-up probe: enough to ride out one dropped connection, few enough
/// that a wrong endpoint or bucket is reported within seconds.
fn probe_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    }
}

impl Store {
    /// A local path (or `file://` URL) becomes a directory store, created if missing;
    /// `s3://bucket/prefix` an S3 store configured from the standard `AWS_*` variables
    /// (including `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` for S3-compatible servers).
    pub fn open(url: &str) -> Result<Store, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::InvalidUrl {
                    url: url.to_owned(),
                    reason: "the bucket name is missing".to_owned(),
                });
            }
            let prefix = prefix.trim_matches('/');
            let builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let s3 = builder.clone().build()?;
            let probe = builder.with_retry(probe_retry()).build()?;
            if prefix.is_empty() {
                return Ok(Store::counted(
                    Arc::new(s3),
                    Arc::new(probe),
                    format!("s3://{bucket}"),
                ));
            }
            let p = Path::parse(prefix).map_err(|e| StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
            return Ok(Store::counted(
                Arc::new(PrefixStore::new(s3, p.clone())),
                Arc::new(PrefixStore::new(probe, p)),
                format!("s3://{bucket}/{prefix}"),
            ));
        }
        let local = match url.strip_prefix("file://") {
            Some(p) => p,
            None if url.contains("://") => {
                return Err(StoreError::UnsupportedScheme(url.to_owned()));
            }
            None => url,
        };
        if local.is_empty() {
            return Err(StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: "the path is empty".to_owned(),
            });
        }
        let dir = PathBuf::from(local);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let abs = std::fs::canonicalize(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&abs)?);
        Ok(Store::counted(
            Arc::clone(&fs),
            fs,
            format!("local:{}", abs.display()),
        ))
    }

    fn counted(
        inner: Arc<dyn ObjectStore>,
        probe: Arc<dyn ObjectStore>,
        description: String,
    ) -> Self {
        let bytes_read = Counter::default();
        Store {
            inner: Arc::new(counting::CountingStore::new(inner, bytes_read.clone())),
            probe,
            description,
            bytes_read,
        }
    }

    /// The running total of bytes read from the object store by this process.
    pub fn bytes_read(&self) -> Counter {
        self.bytes_read.clone()
    }

    /// A store held in memory, for `crate::fuzzing`: one per input, nothing to clean up.
    pub(crate) fn in_memory() -> Store {
        let mem: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        Store::counted(Arc::clone(&mem), mem, "memory".to_owned())
    }

    /// One listing of the store root, so that a missing bucket, a wrong endpoint or bad
    /// credentials stop the server at start-up with the cause, instead of turning every
    /// later request into an internal error.
    pub async fn check_access(&self) -> Result<(), StoreError> {
        self.probe
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Unreachable {
                store: self.description.clone(),
                source,
            })
    }

    /// Where the store points, for logs.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The underlying object store, for the result writers that share it.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.inner)
    }

    /// The parts of a collection, in key order (= upload order for our own uploads).
    pub(crate) async fn list_parts(&self, dir: &Path) -> ApiResult<Vec<Part>> {
        let listed: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(internal_os)?;
        let mut parts: Vec<Part> = listed
            .into_iter()
            .filter(|m| paths::is_part(dir, &m.location))
            .map(|m| Part {
                location: m.location,
                size: m.size,
            })
            .collect();
        parts.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        Ok(parts)
    }

    /// Collections of the scope sorted by id, `limit` per page; the token is the last id of
    /// the previous page.
    pub async fn list_collections(
        &self,
        scope: &Scope,
        limit: usize,
        page_token: Option<&str>,
    ) -> ApiResult<CollectionPage> {
        if let Some(token) = page_token {
            validate_name("page_token", token)?;
        }
        let limit = limit.max(1);
        let root = paths::collections_root(scope);
        let listing = self
            .inner
            .list_with_delimiter(Some(&root))
            .await
            .map_err(internal_os)?;
        let mut ids: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            // Directories we could never have written (or been asked for) are not collections.
            .filter(|id| validate_name("collection_id", id).is_ok())
            .filter(|id| page_token.is_none_or(|t| id.as_str() > t))
            .collect();
        ids.sort();
        ids.dedup();

        let mut collections = Vec::new();
        let mut next_page_token = None;
        for id in ids {
            let dir = paths::collection_dir(scope, "collection_id", &id)?;
            let parts = self.list_parts(&dir).await?;
            if parts.is_empty() {
                // A directory left behind by a delete on a local store.
                continue;
            }
            if collections.len() == limit {
                next_page_token = collections
                    .last()
                    .map(|c: &CollectionInfo| c.collection_id.clone());
                break;
            }
            collections.push(self.describe_collection(&id, parts).await?);
        }
        Ok(CollectionPage {
            collections,
            next_page_token,
        })
    }

    async fn describe_collection(&self, id: &str, parts: Vec<Part>) -> ApiResult<CollectionInfo> {
        // Owned inputs per future: borrowed ones make the future's Send-ness depend on
        // higher-ranked lifetimes that the gRPC layer's `async_trait` cannot prove.
        let footers: Vec<_> = futures::stream::iter(parts.iter().cloned().map(|p| {
            let store = Arc::clone(&self.inner);
            let id = id.to_owned();
            async move {
                reader::open_part(&store, &p).await.map_err(|e| {
                    parquet_error(e, |m| {
                        ApiError::invalid_parameter(
                            "collection_id",
                            format!(
                                "part {} of collection {id} is not readable Parquet: {m}",
                                paths::file_name(&p.location)
                            ),
                        )
                    })
                })
            }
        }))
        .buffered(FOOTER_CONCURRENCY)
        .try_collect()
        .await?;

        let mut rows = 0u64;
        let bytes = parts.iter().map(|p| p.size).sum();
        // Column name -> (newest part index having it, vector type); insertion order kept
        // separately so columns are listed in the order they first appeared.
        let mut vectors: BTreeMap<String, (usize, reader::VectorType)> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut attributes: Vec<String> = Vec::new();
        for (i, (_, meta)) in footers.iter().enumerate() {
            rows += u64::try_from(meta.metadata().file_metadata().num_rows()).unwrap_or(0);
            for field in meta.schema().fields() {
                let name = field.name();
                if name == DOCUMENT_ID {
                    continue;
                }
                match vector_type(field.data_type()) {
                    Some(vt) => {
                        if !vectors.contains_key(name) {
                            order.push(name.clone());
                        }
                        vectors.insert(name.clone(), (i, vt));
                    }
                    None => {
                        if !attributes.contains(name) {
                            attributes.push(name.clone());
                        }
                    }
                }
            }
        }
        attributes.retain(|a| !vectors.contains_key(a));

        let mut vector_columns = Vec::new();
        for name in order {
            let Some(&(i, vt)) = vectors.get(&name) else {
                continue;
            };
            let dimension = match vt.fixed_dim {
                Some(d) => d,
                None => {
                    let (reader, meta) = &footers[i];
                    match reader::first_list_length(reader.clone(), meta, &name).await {
                        Ok(d) => d.unwrap_or(0),
                        // A store failure is ours (500); a part whose pages do not decode
                        // (written past the upload's checks) leaves the dimension unknown
                        // in the listing, and a run reading it fails naming the part.
                        Err(e) if error::is_store_failure(&e) => {
                            return Err(ApiError::internal(e));
                        }
                        Err(e) => {
                            tracing::warn!(
                                collection = id,
                                column = name.as_str(),
                                "a part's first vector does not decode: {e}"
                            );
                            0
                        }
                    }
                }
            };
            vector_columns.push(VectorColumnInfo {
                name,
                dimension,
                element_type: vt.elem.name().to_owned(),
            });
        }
        Ok(CollectionInfo {
            collection_id: id.to_owned(),
            parts: parts.len(),
            rows,
            bytes,
            vector_columns,
            attribute_columns: attributes,
        })
    }

    /// Delete every object of a collection; `not_found` when it has no parts.
    pub async fn delete_collection(&self, scope: &Scope, collection_id: &str) -> ApiResult<()> {
        let dir = paths::collection_dir(scope, "collection_id", collection_id)?;
        if self.list_parts(&dir).await?.is_empty() {
            return Err(ApiError::not_found(
                Some("collection_id"),
                format!("collection {collection_id} does not exist"),
            ));
        }
        let locations = self.inner.list(Some(&dir)).map_ok(|m| m.location).boxed();
        self.inner
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await
            .map_err(internal_os)?;
        Ok(())
    }

    /// Delete an object whose failure to go is only worth a warning (staging leftovers).
    pub(crate) async fn delete_quietly(&self, location: &Path) {
        if let Err(e) = self.inner.delete(location).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            tracing::warn!(error = %e, key = %location, "could not delete a staging object");
        }
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
