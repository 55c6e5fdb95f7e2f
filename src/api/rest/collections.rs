//! `/v1/collections`: upload (Parquet or JSON documents), list, delete.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;

use super::dto::{
    CollectionDeletedJson, CollectionJson, CollectionsPageJson, DocumentsBody, ListQuery,
    UploadJson,
};
use super::openapi::{CollectionIdPath, ErrorBody, ParquetFile};
use super::{RestResult, header, parse_json, parse_query, read_body, scope};
use crate::api::{AppState, page_limit};
use crate::model::{ApiError, ApiResult, DocumentRecord, validate_name};

fn collection_path(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = path.map_err(|e| ApiError::invalid_request("collection_id", e.body_text()))?;
    validate_name("collection_id", &id)?;
    Ok(id)
}

#[utoipa::path(
    post,
    path = "/v1/collections/{collection_id}/documents",
    tag = "collections",
    summary = "Add documents to a collection (created on first upload)",
    description = "A Parquet file (`document_id` column, fixed-size-list float vector \
        columns, other columns attributes), at most `--max-upload-bytes` (default 1 GiB), or \
        JSON documents, at most `--max-json-bytes` (default 8 MiB). Re-uploading a \
        document_id replaces it.",
    params(CollectionIdPath),
    request_body(
        description = "Parquet (any of the three Parquet content types) or JSON documents",
        content(
            (ParquetFile = "application/vnd.apache.parquet"),
            (ParquetFile = "application/x-parquet"),
            (ParquetFile = "application/octet-stream"),
            (DocumentsBody = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "Stored", body = UploadJson),
        (status = 400, description = "Bad collection id, content type, JSON or Parquet", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 409, description = "The columns conflict with the collection's schema", body = ErrorBody),
        (status = 413, description = "Body above --max-upload-bytes (Parquet) or --max-json-bytes (JSON)", body = ErrorBody),
        (status = 422, description = "Well-formed but unusable (NaN/inf in a vector, mixed dimensions)", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not done within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Json<UploadJson>> {
    let scope = scope(&state, &headers)?;
    let collection_id = collection_path(path)?;
    let content_type = header(&headers, "content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let store = state.engine.store();
    let summary = match content_type.as_str() {
        "application/vnd.apache.parquet" | "application/x-parquet" | "application/octet-stream" => {
            let bytes = read_body(&headers, body, state.limits.max_upload_bytes).await?;
            store.upload_parquet(&scope, &collection_id, bytes).await?
        }
        "application/json" => {
            let bytes = read_body(&headers, body, state.limits.max_json_bytes).await?;
            let records = documents_from_json(&bytes)?;
            store
                .upload_documents(&scope, &collection_id, records)
                .await?
        }
        other => {
            return Err(ApiError::invalid_request(
                "Content-Type",
                format!(
                    "{other:?} is not accepted; send application/vnd.apache.parquet or application/json"
                ),
            )
            .into());
        }
    };
    Ok(Json(UploadJson {
        collection_id: summary.collection_id,
        documents: summary.documents,
        part_key: summary.part_key,
    }))
}

/// A JSON documents body (`{"documents": [...]}`) as the upload handler reads it; the
/// fuzz target `documents_json` drives this same function.
pub(crate) fn documents_from_json(bytes: &[u8]) -> ApiResult<Vec<DocumentRecord>> {
    parse_json::<DocumentsBody>(bytes)?
        .documents
        .into_iter()
        .enumerate()
        .map(|(i, d)| document_record(i, d))
        .collect()
}

/// A JSON document: `document_id`, numeric arrays as vector columns, the rest attributes.
fn document_record(
    index: usize,
    mut doc: serde_json::Map<String, serde_json::Value>,
) -> ApiResult<DocumentRecord> {
    let id_field = format!("documents[{index}].document_id");
    let document_id = match doc.remove("document_id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        Some(_) => {
            return Err(ApiError::invalid_request(
                &id_field,
                "must be a non-empty string",
            ));
        }
        None => return Err(ApiError::invalid_request(&id_field, "is required")),
    };
    let mut record = DocumentRecord {
        document_id,
        vectors: Default::default(),
        attributes: Default::default(),
    };
    for (key, value) in doc {
        match value {
            serde_json::Value::Array(items)
                if !items.is_empty() && items.iter().all(serde_json::Value::is_number) =>
            {
                let vector = items
                    .iter()
                    .map(|v| v.as_f64().map(|f| f as f32).unwrap_or(f32::NAN))
                    .collect();
                record.vectors.insert(key, vector);
            }
            other => {
                record.attributes.insert(key, other);
            }
        }
    }
    Ok(record)
}

#[utoipa::path(
    get,
    path = "/v1/collections",
    tag = "collections",
    summary = "List the namespace's collections",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of collections", body = CollectionsPageJson),
        (status = 400, description = "Unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not done within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> RestResult<Json<CollectionsPageJson>> {
    let scope = scope(&state, &headers)?;
    let q: ListQuery = parse_query(query.as_deref())?;
    let limit = page_limit(q.limit)?;
    let page = state
        .engine
        .store()
        .list_collections(&scope, limit, q.page_token.as_deref())
        .await?;
    let collections: Vec<CollectionJson> = page.collections.into_iter().map(Into::into).collect();
    Ok(Json(CollectionsPageJson {
        collections,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/collections/{collection_id}",
    tag = "collections",
    summary = "Delete a collection and its documents",
    params(CollectionIdPath),
    responses(
        (status = 200, description = "Deleted", body = CollectionDeletedJson),
        (status = 400, description = "Bad collection id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not done within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Json<CollectionDeletedJson>> {
    let scope = scope(&state, &headers)?;
    let collection_id = collection_path(path)?;
    state
        .engine
        .store()
        .delete_collection(&scope, &collection_id)
        .await?;
    Ok(Json(CollectionDeletedJson {
        collection_id,
        deleted: true,
    }))
}
