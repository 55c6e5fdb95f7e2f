//! Entry points of the fuzz targets (`fuzz/fuzz_targets/*.rs`, `scripts/fuzz.sh`): each
//! takes the raw bytes a client could send and runs them through the code the server runs
//! on them, so the targets are one-line wrappers and the regression tests below replay
//! their findings through the very same functions.
//!
//! An `Err` is the expected answer to hostile bytes. A panic is a finding, and so is an
//! `internal` error: the server would answer a request's own bytes with a 500.

use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message;

use crate::api::grpc::pb;
use crate::model::{ApiError, ApiResult, Caller, DeviceKind, ErrorCode, RunContext, Scope};
use crate::store::{LoadLimits, LoadRequest, Store};

const ORG: &str = "int_fuzz";
const NAMESPACE: &str = "fuzzing";
const COLLECTION: &str = "fuzzed";

/// Document counts the algorithm parameters are checked against, as after loading: the
/// smallest collections (where `n_clusters > N` and friends bite) and a large one (where
/// the size bounds of the N×N algorithms bite).
const DOCUMENT_COUNTS: [usize; 4] = [1, 2, 50, 1_000_000];

fn caller() -> Caller {
    Caller {
        org: ORG.to_owned(),
        namespace: NAMESPACE.to_owned(),
    }
}

/// `POST /v1/clusters/execute` body: parsed and validated as the REST handler does, then
/// the algorithm parameters as the engine checks them before reading any data.
pub fn execute_json(bytes: &[u8]) -> ApiResult<()> {
    log_errors();
    fn run(bytes: &[u8]) -> ApiResult<()> {
        let req = crate::api::rest::execute_request_from_json(bytes, &caller())?;
        params(&req)
    }
    checked(run(bytes))
}

/// `ClusterService.ExecuteClustering` message: decoded, converted and validated as the
/// gRPC handler does, then the algorithm parameters as for [`execute_json`].
pub fn execute_proto(bytes: &[u8]) -> ApiResult<()> {
    log_errors();
    fn run(bytes: &[u8]) -> ApiResult<()> {
        // tonic answers a message prost cannot decode with `internal` before the handler
        // runs; here it is simply not a request.
        let message = pb::ExecuteClusteringRequest::decode(bytes)
            .map_err(|e| ApiError::invalid_request("body", e.to_string()))?;
        let req = crate::api::grpc::execute_request_from_proto(message, &caller())?;
        params(&req)
    }
    checked(run(bytes))
}

/// A Parquet upload body (`POST /v1/collections/{id}/documents`) into an empty in-memory
/// store, as the upload endpoint runs it; once accepted, the same bytes again (checked
/// against the collection's first part), then every way a run reads the collection back.
pub fn documents_parquet(bytes: &[u8]) -> ApiResult<()> {
    log_errors();
    let body = Bytes::copy_from_slice(bytes);
    checked(block_on(async {
        let store = Store::in_memory();
        let scope = scope()?;
        store
            .upload_parquet(&scope, COLLECTION, body.clone())
            .await?;
        if let Err(e) = store.upload_parquet(&scope, COLLECTION, body).await {
            panic!("an accepted Parquet upload was refused the second time: {e:?}");
        }
        read_back(&store, &scope).await
    }))
}

/// A JSON documents upload body (`{"documents": [...]}`): decoded as the REST handler
/// does, uploaded into an empty in-memory store, then read back as a run reads it.
pub fn documents_json(bytes: &[u8]) -> ApiResult<()> {
    log_errors();
    fn run(bytes: &[u8]) -> ApiResult<()> {
        let records = crate::api::rest::documents_from_json(bytes)?;
        block_on(async {
            let store = Store::in_memory();
            let scope = scope()?;
            store.upload_documents(&scope, COLLECTION, records).await?;
            read_back(&store, &scope).await
        })
    }
    checked(run(bytes))
}

/// The algorithm parameters into their typed form, then against each of
/// [`DOCUMENT_COUNTS`] (where refusing is often right: `n_clusters` above the count); the
/// resolved parameters must serialise, since the run record holds them.
fn params(req: &crate::model::ExecuteRequest) -> ApiResult<()> {
    let resolved = crate::engine::check_params(req, None)?;
    serde_json::to_vec(&resolved).map_err(ApiError::internal)?;
    for n in DOCUMENT_COUNTS {
        // Each count's answer is checked on its own; only a panic or a 500 is a finding.
        let _ = checked(crate::engine::check_params(req, Some(n)));
    }
    Ok(())
}

/// Read the uploaded collection as runs do: each vector column with every attribute, or
/// the attributes alone when there is no vector column, whole and as a sample of one.
async fn read_back(store: &Store, scope: &Scope) -> ApiResult<()> {
    let page = store.list_collections(scope, 10, None).await?;
    let Some(info) = page.collections.into_iter().next() else {
        panic!("an accepted upload left no collection behind");
    };
    let attributes = info.attribute_columns;
    let mut vectors: Vec<Option<String>> = info
        .vector_columns
        .into_iter()
        .map(|v| Some(v.name))
        .collect();
    if vectors.is_empty() {
        vectors.push(None);
    }
    for vector_column in vectors {
        for sample_size in [None, Some(1)] {
            let req = LoadRequest {
                collection_ids: vec![COLLECTION.to_owned()],
                vector_column: vector_column.clone(),
                attributes: attributes.clone(),
                attribute_fields: Vec::new(),
                sample_size,
                seed: 7,
                document_ids: None,
                document_ids_field: "document_ids".to_owned(),
                limits: LoadLimits::default(),
            };
            let ctx = RunContext::new(7, DeviceKind::Cpu);
            // Refusing is a fine answer (a document without this vector, an attribute of
            // a type runs cannot group by); only a panic or a 500 is a finding.
            if let Ok(loaded) = checked(store.load(scope, &req, &ctx).await)
                && loaded.document_ids.is_empty()
            {
                panic!("a run loaded no documents from an accepted upload");
            }
        }
    }
    Ok(())
}

fn scope() -> ApiResult<Scope> {
    Scope::new(ORG, NAMESPACE)
}

/// A request's own bytes must never reach a 500.
fn checked<T>(result: ApiResult<T>) -> ApiResult<T> {
    if let Err(e) = &result
        && e.code == ErrorCode::Internal
    {
        panic!("the bytes of a request caused an internal error: {e:?}");
    }
    result
}

/// `ApiError::internal` keeps its detail for the log: show error events on stderr, so a
/// finding's output says what failed.
fn log_errors() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::ERROR)
            .try_init();
    });
}

/// One runtime for every input: the store and the upload path are async, and the upload
/// spawns tasks and blocking work, as it does in the server.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot start the fuzzing runtime: {e}"))
        })
        .block_on(future)
}

#[cfg(test)]
mod tests;
