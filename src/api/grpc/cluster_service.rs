//! `clusterd.v1.ClusterService`.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::pb::cluster_service_server::ClusterService;
use super::{caller_from_metadata, convert, pb, to_status};
use crate::api::AppState;
use crate::model::{ApiResult, Caller, DeviceKind, ExecuteRequest, ProgressEvent, RunContext};

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
        let req = convert::execute_input(request.into_inner()).validate(&caller)?;
        Ok((caller, req))
    }
}

fn progress_event(e: ProgressEvent) -> pb::ExecuteEvent {
    pb::ExecuteEvent {
        event: Some(pb::execute_event::Event::Progress(pb::ProgressEvent {
            stage: e.stage.to_owned(),
            fraction: e.fraction,
            iteration: e.iteration.map(|i| i32::try_from(i).unwrap_or(i32::MAX)),
            inertia: e.inertia,
        })),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ExecuteEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn execute(
        &self,
        request: Request<pb::ExecuteClusteringRequest>,
    ) -> Result<Response<pb::ExecuteClusteringResponse>, Status> {
        let (caller, req) = self.admit(request).map_err(to_status)?;
        // A client that goes away drops this future; the guard then cancels the run at
        // its next checkpoint instead of letting it compute for nobody.
        let cancel = CancellationToken::new();
        let _guard = cancel.clone().drop_guard();
        let ctx = RunContext::new(0, DeviceKind::Cpu).with_cancel(cancel);
        let response = self
            .state
            .engine
            .execute(&caller, req, ctx)
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
        let (tx, rx) = mpsc::channel::<Result<pb::ExecuteEvent, Status>>(64);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let ctx = RunContext::new(0, DeviceKind::Cpu)
            .with_cancel(cancel.clone())
            .with_progress(progress_tx);
        let engine = self.state.engine.clone();
        tokio::spawn(async move {
            let run = engine.execute(&caller, req, ctx);
            tokio::pin!(run);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut run => break outcome,
                    Some(event) = progress_rx.recv() => {
                        if tx.send(Ok(progress_event(event))).await.is_err() {
                            cancel.cancel();
                        }
                    }
                    _ = tx.closed(), if !cancel.is_cancelled() => cancel.cancel(),
                }
            };
            while let Ok(event) = progress_rx.try_recv() {
                let _ = tx.send(Ok(progress_event(event))).await;
            }
            let last = outcome
                .map(|r| pb::ExecuteEvent {
                    event: Some(pb::execute_event::Event::Result(convert::execute_response(
                        r,
                    ))),
                })
                .map_err(to_status);
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
