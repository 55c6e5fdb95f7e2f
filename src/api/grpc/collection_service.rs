//! `clusterd.v1.CollectionService`.

use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::pb::collection_service_server::CollectionService;
use super::{caller_from_metadata, convert, pb, to_status};
use crate::api::{AppState, page_limit};
use crate::model::{ApiError, ApiResult, DocumentRecord, Scope, validate_name};

pub struct CollectionApi {
    state: AppState,
}

impl CollectionApi {
    pub fn new(state: AppState) -> Self {
        CollectionApi { state }
    }

    fn scope(&self, md: &tonic::metadata::MetadataMap) -> ApiResult<Scope> {
        let caller = caller_from_metadata(&self.state, md)?;
        Scope::new(&caller.org, &caller.namespace)
    }

    async fn upsert(
        &self,
        request: Request<Streaming<pb::UpsertDocumentsRequest>>,
    ) -> ApiResult<pb::UpsertDocumentsResponse> {
        let scope = self.scope(request.metadata())?;
        let max_bytes = self.state.limits.max_upload_bytes;
        let mut stream = request.into_inner();
        let mut collection_id: Option<String> = None;
        let mut documents: Vec<DocumentRecord> = Vec::new();
        let mut parquet: Vec<u8> = Vec::new();
        let mut received = 0usize;
        while let Some(message) = stream.message().await.map_err(|s| match s.code() {
            // tonic's per-message limit (max_decoding_message_size): too large, not
            // malformed.
            tonic::Code::OutOfRange => ApiError::payload_too_large(
                None,
                format!(
                    "an upload message exceeds the limit of {} bytes",
                    max_bytes.min(64 << 20)
                ),
            ),
            _ => ApiError::invalid_request("stream", s.message().to_owned()),
        })? {
            received = received.saturating_add(message.encoded_len());
            if received > max_bytes {
                return Err(ApiError::payload_too_large(
                    None,
                    format!("the upload exceeds the limit of {max_bytes} bytes"),
                ));
            }
            match (&collection_id, message.collection_id.as_str()) {
                (None, "") => {
                    return Err(ApiError::invalid_request(
                        "collection_id",
                        "the first message must name the collection",
                    ));
                }
                (None, id) => {
                    validate_name("collection_id", id)?;
                    collection_id = Some(id.to_owned());
                }
                (Some(_), "") => {}
                (Some(first), id) if first != id => {
                    return Err(ApiError::invalid_request(
                        "collection_id",
                        format!("one stream uploads one collection: {first:?}, then {id:?}"),
                    ));
                }
                (Some(_), _) => {}
            }
            if !message.parquet_chunk.is_empty() {
                parquet.extend_from_slice(&message.parquet_chunk);
            }
            for d in message.documents {
                documents.push(convert::document_record(documents.len(), d)?);
            }
            if !parquet.is_empty() && !documents.is_empty() {
                return Err(ApiError::invalid_request(
                    "parquet_chunk",
                    "send documents or Parquet chunks in one stream, not both",
                ));
            }
        }
        let collection_id = collection_id.ok_or_else(|| {
            ApiError::invalid_request("collection_id", "the stream carried no message")
        })?;
        let store = self.state.engine.store();
        let summary = if parquet.is_empty() {
            store
                .upload_documents(&scope, &collection_id, documents)
                .await?
        } else {
            store
                .upload_parquet(&scope, &collection_id, bytes::Bytes::from(parquet))
                .await?
        };
        Ok(pb::UpsertDocumentsResponse {
            collection_id: summary.collection_id,
            documents: i32::try_from(summary.documents).unwrap_or(i32::MAX),
            part_key: summary.part_key,
        })
    }
}

#[tonic::async_trait]
impl CollectionService for CollectionApi {
    async fn upsert_documents(
        &self,
        request: Request<Streaming<pb::UpsertDocumentsRequest>>,
    ) -> Result<Response<pb::UpsertDocumentsResponse>, Status> {
        self.upsert(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_collections(
        &self,
        request: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let result: ApiResult<_> = async {
            let scope = self.scope(request.metadata())?;
            let req = request.into_inner();
            let limit = page_limit(req.limit.map(i64::from))?;
            let page = self
                .state
                .engine
                .store()
                .list_collections(&scope, limit, req.page_token.as_deref())
                .await?;
            Ok(pb::ListCollectionsResponse {
                collections: page
                    .collections
                    .into_iter()
                    .map(convert::collection)
                    .collect(),
                next_page_token: page.next_page_token,
            })
        }
        .await;
        result.map(Response::new).map_err(to_status)
    }

    async fn delete_collection(
        &self,
        request: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        let result: ApiResult<_> = async {
            let scope = self.scope(request.metadata())?;
            let id = request.into_inner().collection_id;
            validate_name("collection_id", &id)?;
            self.state
                .engine
                .store()
                .delete_collection(&scope, &id)
                .await?;
            Ok(pb::DeleteCollectionResponse {
                collection_id: id,
                deleted: true,
            })
        }
        .await;
        result.map(Response::new).map_err(to_status)
    }
}
