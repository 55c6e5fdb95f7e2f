//! `/v1/collections`: upload (Parquet or JSON documents), list, delete.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;

use super::dto::{CollectionJson, DocumentsBody, ListQuery};
use super::{RestResult, header, parse_json, parse_query, read_body, scope};
use crate::api::{AppState, page_limit};
use crate::model::{ApiError, ApiResult, DocumentRecord, validate_name};

fn collection_path(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = path.map_err(|e| ApiError::invalid_request("collection_id", e.body_text()))?;
    validate_name("collection_id", &id)?;
    Ok(id)
}

pub async fn upload(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Json<serde_json::Value>> {
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
    Ok(Json(serde_json::json!({
        "collection_id": summary.collection_id,
        "documents": summary.documents,
        "part_key": summary.part_key,
    })))
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

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> RestResult<Json<serde_json::Value>> {
    let scope = scope(&state, &headers)?;
    let q: ListQuery = parse_query(query.as_deref())?;
    let limit = page_limit(q.limit)?;
    let page = state
        .engine
        .store()
        .list_collections(&scope, limit, q.page_token.as_deref())
        .await?;
    let collections: Vec<CollectionJson> = page.collections.into_iter().map(Into::into).collect();
    Ok(Json(serde_json::json!({
        "collections": collections,
        "next_page_token": page.next_page_token,
    })))
}

pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Json<serde_json::Value>> {
    let scope = scope(&state, &headers)?;
    let collection_id = collection_path(path)?;
    state
        .engine
        .store()
        .delete_collection(&scope, &collection_id)
        .await?;
    Ok(Json(serde_json::json!({
        "collection_id": collection_id,
        "deleted": true,
    })))
}
