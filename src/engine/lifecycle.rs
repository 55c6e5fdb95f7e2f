//! The run lifecycle of DESIGN §2: `status.json` written when a run starts and kept
//! current by a heartbeat, artifacts next, `run.json` last, then the final status.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::{
    ApiError, ApiResult, ErrorCode, ProgressEvent, RunError, RunProgress, RunRecord, RunState,
    RunStatus, Scope,
};
use crate::store::Store;

/// How often a running run refreshes `status.json`.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A `running` run whose heartbeat is older than this was interrupted (checked at
/// start-up). Twelve missed heartbeats: long enough for a slow object store.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub struct RunRecorder {
    store: Arc<Store>,
    scope: Scope,
    status: Arc<Mutex<RunStatus>>,
    stop: CancellationToken,
    /// Woken when the run enters a new stage, so readers see stages as they begin rather
    /// than up to a heartbeat later (a handful of writes per run).
    stage_changed: Arc<Notify>,
    heartbeat: JoinHandle<()>,
}

fn snapshot(status: &Mutex<RunStatus>) -> RunStatus {
    match status.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn update(status: &Mutex<RunStatus>, f: impl FnOnce(&mut RunStatus)) {
    match status.lock() {
        Ok(mut s) => f(&mut s),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

impl RunRecorder {
    /// Write the initial `status.json` (a failure here fails the request: a run we cannot
    /// record must not run unrecorded) and start the heartbeat.
    pub async fn start(store: Arc<Store>, scope: Scope, status: RunStatus) -> ApiResult<Self> {
        store.put_run_status(&scope, &status).await?;
        let status = Arc::new(Mutex::new(status));
        let stop = CancellationToken::new();
        let stage_changed = Arc::new(Notify::new());
        let heartbeat = tokio::spawn({
            let (store, scope, status, stop, stage_changed) = (
                store.clone(),
                scope.clone(),
                status.clone(),
                stop.clone(),
                stage_changed.clone(),
            );
            async move {
                let mut tick = tokio::time::interval(HEARTBEAT);
                tick.tick().await;
                loop {
                    let beat = tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => true,
                        _ = stage_changed.notified() => false,
                    };
                    let now = now_rfc3339();
                    update(&status, |s| {
                        if beat {
                            s.heartbeat_at = now.clone();
                        }
                        s.updated_at = now;
                    });
                    let current = snapshot(&status);
                    if let Err(e) = store.put_run_status(&scope, &current).await {
                        tracing::warn!(run_id = %current.run_id, error = %e, "heartbeat not written");
                    }
                }
            }
        });
        Ok(RunRecorder {
            store,
            scope,
            status,
            stop,
            stage_changed,
            heartbeat,
        })
    }

    /// Remember the latest progress; the next heartbeat writes it.
    pub fn progress(&self, e: &ProgressEvent) {
        let mut new_stage = false;
        update(&self.status, |s| {
            new_stage = s.progress.as_ref().is_none_or(|p| p.stage != e.stage);
            s.progress = Some(RunProgress {
                stage: e.stage.to_owned(),
                fraction: e.fraction,
                iteration: e.iteration,
                inertia: e.inertia,
                documents: e.documents,
            })
        });
        if new_stage {
            self.stage_changed.notify_one();
        }
    }

    async fn stop_heartbeat(&mut self) {
        self.stop.cancel();
        let _ = (&mut self.heartbeat).await;
    }

    /// `run.json` first, then the status: a reader never sees "completed" without the
    /// record.
    pub async fn complete(mut self, record: &RunRecord) -> ApiResult<()> {
        self.stop_heartbeat().await;
        self.store.put_run_record(&self.scope, record).await?;
        let now = now_rfc3339();
        update(&self.status, |s| {
            s.status = RunState::Completed;
            s.heartbeat_at = now.clone();
            s.updated_at = now;
            s.progress = Some(RunProgress::done());
        });
        self.store
            .put_run_status(&self.scope, &snapshot(&self.status))
            .await
    }

    /// Record a failure (or a cancellation). Errors writing it are logged: the caller is
    /// already answering with the run's own error.
    pub async fn fail(mut self, error: &ApiError) {
        self.stop_heartbeat().await;
        let now = now_rfc3339();
        update(&self.status, |s| {
            s.status = if error.code == ErrorCode::Cancelled {
                RunState::Cancelled
            } else {
                RunState::Failed
            };
            s.error = Some(RunError::from(error));
            s.heartbeat_at = now.clone();
            s.updated_at = now;
        });
        let status = snapshot(&self.status);
        if let Err(e) = self.store.put_run_status(&self.scope, &status).await {
            tracing::error!(run_id = %status.run_id, error = %e, "final run status not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(run_id: &str) -> RunStatus {
        let now = now_rfc3339();
        RunStatus {
            run_id: run_id.to_owned(),
            status: RunState::Running,
            algorithm: "kmeans".to_owned(),
            collection_ids: vec!["col".to_owned()],
            description: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            heartbeat_at: now,
            instance_id: "test".to_owned(),
            progress: None,
            error: None,
        }
    }

    #[tokio::test]
    async fn a_new_stage_is_readable_before_the_next_heartbeat_and_a_cancel_is_recorded_cancelled()
    {
        let dir = std::env::temp_dir().join(format!(
            "clusterd-lifecycle-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let store = Arc::new(Store::open(&dir.display().to_string()).unwrap());
        let scope = Scope::new("org", "ns").unwrap();
        let run_id = "run_000000000000deadbeef";
        let recorder = RunRecorder::start(store.clone(), scope.clone(), status(run_id))
            .await
            .unwrap();
        recorder.progress(&ProgressEvent {
            stage: "kmeans:lloyd",
            fraction: 0.25,
            iteration: Some(3),
            inertia: None,
            documents: None,
        });
        let deadline = std::time::Instant::now() + HEARTBEAT / 2;
        loop {
            let view = store.get_run(&scope, run_id).await.unwrap();
            if let Some(p) = view.status.progress {
                assert_eq!(p.stage, "kmeans:lloyd");
                assert_eq!(p.iteration, Some(3));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the stage was not written ahead of the heartbeat"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        recorder
            .fail(&ApiError::cancelled("the run was cancelled"))
            .await;
        let view = store.get_run(&scope, run_id).await.unwrap();
        assert_eq!(view.status.status, RunState::Cancelled);
        assert_eq!(
            view.status.error.map(|e| e.code),
            Some("cancelled".to_owned())
        );
        assert!(view.record.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
