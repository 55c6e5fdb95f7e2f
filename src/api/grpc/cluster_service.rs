//! `clusterd.v1.ClusterService`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::pb::cluster_service_server::ClusterService;
use super::{caller_from_metadata, convert, pb, to_status};
use crate::api::streaming::{self, ArtifactPiece, StreamItem};
use crate::api::{AppState, member_cluster, member_offset, page_limit};
use crate::engine::CancelOutcome;
use crate::model::{
    ApiResult, AssignInput, Caller, ExecuteRequest, ProgressEvent, RunState, Scope, validate_name,
};

pub struct ClusterApi {
    state: AppState,
}

impl ClusterApi {
    pub fn new(state: AppState) -> Self {
        ClusterApi { state }
    }

    fn admit(
        &self,
        request: Request<pb::ExecuteClusteringRequest>,
    ) -> ApiResult<(Caller, ExecuteRequest)> {
        let caller = caller_from_metadata(&self.state, request.metadata())?;
        let req = convert::execute_request_from_proto(request.into_inner(), &caller)?;
        Ok((caller, req))
    }
}

fn event(e: pb::execute_event::Event) -> pb::ExecuteEvent {
    pb::ExecuteEvent { event: Some(e) }
}

fn progress_event(e: ProgressEvent) -> pb::ExecuteEvent {
    event(pb::execute_event::Event::Progress(pb::ProgressEvent {
        stage: e.stage.to_owned(),
        fraction: e.fraction,
        iteration: e.iteration.map(|i| i32::try_from(i).unwrap_or(i32::MAX)),
        inertia: e.inertia,
        documents: e.documents.and_then(|d| i64::try_from(d).ok()),
    }))
}

fn artifact_chunk(p: ArtifactPiece) -> pb::ArtifactChunk {
    pb::ArtifactChunk {
        data: p.data.to_vec(),
        name: p.name,
        offset: i64::try_from(p.offset).unwrap_or(i64::MAX),
        last: p.last,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ExecuteEvent, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ArtifactChunk, Status>> + Send>>;

impl ClusterApi {
    fn scope(&self, md: &tonic::metadata::MetadataMap) -> ApiResult<Scope> {
        let caller = caller_from_metadata(&self.state, md)?;
        Scope::new(&caller.org, &caller.namespace)
    }

    async fn submit_inner(
        &self,
        request: Request<pb::ExecuteClusteringRequest>,
    ) -> ApiResult<pb::SubmitClusteringResponse> {
        let (caller, req) = self.admit(request)?;
        let run_id = self.state.engine.submit(&caller, req).await?;
        Ok(pb::SubmitClusteringResponse {
            run_id,
            status: RunState::Running.as_str().to_owned(),
        })
    }

    async fn cancel_run_inner(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> ApiResult<pb::CancelRunResponse> {
        let caller = caller_from_metadata(&self.state, request.metadata())?;
        let run_id = request.into_inner().run_id;
        validate_name("run_id", &run_id)?;
        Ok(match self.state.engine.cancel(&caller, &run_id).await? {
            CancelOutcome::Stopped(view) => pb::CancelRunResponse {
                run_id,
                status: view.status.status.as_str().to_owned(),
                run: Some(convert::run(*view)),
            },
            CancelOutcome::Cancelling => pb::CancelRunResponse {
                run_id,
                status: "cancelling".to_owned(),
                run: None,
            },
        })
    }

    async fn assign_inner(
        &self,
        request: Request<pb::AssignRequest>,
    ) -> ApiResult<pb::AssignResponse> {
        let scope = self.scope(request.metadata())?;
        let r = request.into_inner();
        validate_name("run_id", &r.run_id)?;
        let input = AssignInput::from_parts(
            (!r.vectors.is_empty()).then(|| r.vectors.into_iter().map(|v| v.values).collect()),
            r.collection_id,
            (!r.document_ids.is_empty()).then_some(r.document_ids),
        )?;
        let out = self.state.engine.assign(&scope, &r.run_id, input).await?;
        Ok(pb::AssignResponse {
            run_id: out.run_id,
            algorithm: out.algorithm,
            rule: out.rule,
            assignments: out
                .assignments
                .into_iter()
                .map(|a| pb::Assignment {
                    document_id: a.document_id,
                    cluster_id: a.cluster_id,
                    distance_to_centroid: a.distance_to_centroid,
                    coordinates: a.coordinates.map(|c| c.to_vec()).unwrap_or_default(),
                })
                .collect(),
        })
    }

    async fn get_run_inner(&self, request: Request<pb::GetRunRequest>) -> ApiResult<pb::Run> {
        let scope = self.scope(request.metadata())?;
        let run_id = request.into_inner().run_id;
        validate_name("run_id", &run_id)?;
        let view = self.state.engine.store().get_run(&scope, &run_id).await?;
        Ok(convert::run(view))
    }

    async fn list_runs_inner(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> ApiResult<pb::ListRunsResponse> {
        let scope = self.scope(request.metadata())?;
        let req = request.into_inner();
        let limit = page_limit(req.limit.map(i64::from))?;
        let status = req
            .status
            .as_deref()
            .map(|s| RunState::parse("status", s))
            .transpose()?;
        let page = self
            .state
            .engine
            .store()
            .list_runs(&scope, limit, req.page_token.as_deref(), status)
            .await?;
        Ok(pb::ListRunsResponse {
            runs: page
                .runs
                .into_iter()
                .map(|status| {
                    convert::run(crate::model::RunView {
                        status,
                        record: None,
                    })
                })
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    async fn list_members_inner(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> ApiResult<pb::ListMembersResponse> {
        let scope = self.scope(request.metadata())?;
        let req = request.into_inner();
        validate_name("run_id", &req.run_id)?;
        let offset = member_offset(req.offset)?;
        let limit = page_limit(req.limit.map(i64::from))?;
        let cluster_id = member_cluster(req.cluster_id.as_deref())?;
        let page = self
            .state
            .engine
            .store()
            .read_members_page(&scope, &req.run_id, cluster_id, offset, limit)
            .await?;
        Ok(convert::members_page(page))
    }

    async fn delete_run_inner(
        &self,
        request: Request<pb::DeleteRunRequest>,
    ) -> ApiResult<pb::DeleteRunResponse> {
        let scope = self.scope(request.metadata())?;
        let run_id = request.into_inner().run_id;
        validate_name("run_id", &run_id)?;
        let objects = self.state.engine.delete_run(&scope, &run_id).await?;
        Ok(pb::DeleteRunResponse {
            run_id,
            deleted: true,
            objects_deleted: i32::try_from(objects).unwrap_or(i32::MAX),
        })
    }

    async fn get_artifact_inner(
        &self,
        request: Request<pb::GetArtifactRequest>,
    ) -> ApiResult<ChunkStream> {
        let scope = self.scope(request.metadata())?;
        let req = request.into_inner();
        validate_name("run_id", &req.run_id)?;
        let body = self
            .state
            .engine
            .store()
            .get_artifact(&scope, &req.run_id, &req.name)
            .await?;
        let chunks = streaming::artifact_pieces(&req.name, body)
            .map(|piece| piece.map(artifact_chunk).map_err(to_status));
        Ok(Box::pin(chunks))
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn execute(
        &self,
        request: Request<pb::ExecuteClusteringRequest>,
    ) -> Result<Response<pb::ExecuteClusteringResponse>, Status> {
        let (caller, req) = self.admit(request).map_err(to_status)?;
        if req.stream_artifacts {
            return Err(to_status(streaming::unary_refuses_stream_artifacts(
                "use ExecuteStream, or GetArtifact after this call",
            )));
        }
        let response = crate::api::execute_unary(&self.state, caller, req)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::execute_response(response)))
    }

    type ExecuteStreamStream = EventStream;

    async fn execute_stream(
        &self,
        request: Request<pb::ExecuteClusteringRequest>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        let (caller, req) = self.admit(request).map_err(to_status)?;
        let events = streaming::execute(self.state.engine.clone(), caller, req);
        // tonic drops this stream when the client goes away; the receiver goes with it
        // and the run is cancelled at its next checkpoint.
        let events = ReceiverStream::new(events).map(|item| match item {
            StreamItem::Progress(e) => Ok(progress_event(e)),
            StreamItem::Result(r) => Ok(event(pb::execute_event::Event::Result(
                convert::execute_response(*r),
            ))),
            StreamItem::Artifact(p) => Ok(event(pb::execute_event::Event::ArtifactChunk(
                artifact_chunk(p),
            ))),
            StreamItem::Error(e) => Err(to_status(e)),
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn submit_clustering(
        &self,
        request: Request<pb::ExecuteClusteringRequest>,
    ) -> Result<Response<pb::SubmitClusteringResponse>, Status> {
        self.submit_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::CancelRunResponse>, Status> {
        self.cancel_run_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::Run>, Status> {
        self.get_run_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        self.list_runs_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn assign(
        &self,
        request: Request<pb::AssignRequest>,
    ) -> Result<Response<pb::AssignResponse>, Status> {
        self.assign_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.list_members_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn delete_run(
        &self,
        request: Request<pb::DeleteRunRequest>,
    ) -> Result<Response<pb::DeleteRunResponse>, Status> {
        self.delete_run_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    type GetArtifactStream = ChunkStream;

    async fn get_artifact(
        &self,
        request: Request<pb::GetArtifactRequest>,
    ) -> Result<Response<Self::GetArtifactStream>, Status> {
        self.get_artifact_inner(request)
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}
