//! Run persistence (DESIGN §2): `status.json` is written when a run starts and kept
//! current, `run.json` is written last. Readers apply one rule everywhere: the run is
//! completed exactly when `run.json` exists, whatever `status.json` says, because a server
//! can die between the two writes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Store;
use super::error::internal_os;
use super::paths::{self, RECORD_FILE, STATUS_FILE};
use crate::model::{
    ApiError, ApiResult, RunError, RunProgress, RunRecord, RunState, RunStatus, RunView, Scope,
    validate_name,
};

/// How many status files are read at once; S3 latency, not bandwidth, bounds a listing.
const STATUS_CONCURRENCY: usize = 8;

const MISSING_RECORD: &str = "the run record (run.json) is missing";
const INTERRUPTED: &str = "interrupted: the server stopped before the run finished";

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub runs: Vec<RunStatus>,
    /// The last run id of this page, when more runs may follow.
    pub next_page_token: Option<String>,
}

impl Store {
    /// Write `status.json`. A single put replaces the object whole on every backend, so a
    /// reader never sees a half-written status.
    pub async fn put_run_status(&self, scope: &Scope, status: &RunStatus) -> ApiResult<()> {
        let key = paths::run_file(scope, &status.run_id, STATUS_FILE)?;
        put_json(self.inner.as_ref(), &key, status).await
    }

    /// Write `run.json`; from then on the run reads as completed.
    pub async fn put_run_record(&self, scope: &Scope, record: &RunRecord) -> ApiResult<()> {
        let key = paths::run_file(scope, &record.run_id, RECORD_FILE)?;
        put_json(self.inner.as_ref(), &key, record).await
    }

    /// The run's status, and its record once completed; `not_found` without `status.json`.
    pub async fn get_run(&self, scope: &Scope, run_id: &str) -> ApiResult<RunView> {
        let status_key = paths::run_file(scope, run_id, STATUS_FILE)?;
        let record_key = paths::run_file(scope, run_id, RECORD_FILE)?;
        let (status, record) = futures::try_join!(
            get_json::<RunStatus>(self.inner.as_ref(), &status_key),
            get_json::<RunRecord>(self.inner.as_ref(), &record_key),
        )?;
        let Some(mut status) = status else {
            return Err(ApiError::not_found(
                Some("run_id"),
                format!("run {run_id} does not exist"),
            ));
        };
        reconcile(&mut status, record.is_some());
        Ok(RunView { status, record })
    }

    /// Runs of the scope, newest first (run ids sort that way), `limit` per page, optionally
    /// only those in `status`; the token is the last run id of the previous page.
    pub async fn list_runs(
        &self,
        scope: &Scope,
        limit: usize,
        page_token: Option<&str>,
        status: Option<RunState>,
    ) -> ApiResult<RunPage> {
        if let Some(token) = page_token {
            validate_name("page_token", token)?;
        }
        let limit = limit.max(1);
        let mut ids = self.run_ids(scope).await?;
        ids.retain(|id| page_token.is_none_or(|t| id.as_str() > t));

        let total = ids.len();
        // Owned inputs per future, for the same `Send` reason as `describe_collection`.
        let mut reads = futures::stream::iter(ids.into_iter().map(|id| {
            let store = Arc::clone(&self.inner);
            let scope = scope.clone();
            async move { read_listed_status(store.as_ref(), &scope, &id).await }
        }))
        .buffered(STATUS_CONCURRENCY);

        let mut runs = Vec::new();
        let mut consumed = 0usize;
        while runs.len() < limit {
            let Some(read) = reads.next().await else {
                break;
            };
            consumed += 1;
            if let Some(run) = read?
                && status.is_none_or(|s| run.status == s)
            {
                runs.push(run);
            }
        }
        let next_page_token = if runs.len() == limit && consumed < total {
            runs.last().map(|r| r.run_id.clone())
        } else {
            None
        };
        Ok(RunPage {
            runs,
            next_page_token,
        })
    }

    /// The run ids of the scope, newest first (run ids sort that way).
    pub(crate) async fn run_ids(&self, scope: &Scope) -> ApiResult<Vec<String>> {
        let listing = self
            .inner
            .list_with_delimiter(Some(&paths::runs_root(scope)))
            .await
            .map_err(internal_os)?;
        let mut ids: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            // Directories we could never have written are not runs.
            .filter(|id| validate_name("run_id", id).is_ok())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// `status.json` as written (not reconciled with `run.json`), and whether `run.json`
    /// exists: what housekeeping needs to tell a finished run from one still writing its
    /// results. `None` when the run has no readable status.
    pub async fn stored_run(&self, scope: &Scope, run_id: &str) -> ApiResult<Option<StoredRun>> {
        let status_key = paths::run_file(scope, run_id, STATUS_FILE)?;
        let record_key = paths::run_file(scope, run_id, RECORD_FILE)?;
        let store = self.inner.as_ref();
        let (bytes, has_record) =
            futures::try_join!(get_bytes(store, &status_key), exists(store, &record_key))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        match serde_json::from_slice::<RunStatus>(&bytes) {
            Ok(status) => Ok(Some(StoredRun { status, has_record })),
            Err(e) => {
                tracing::warn!(error = %e, key = %status_key, "skipping an unreadable run status");
                Ok(None)
            }
        }
    }

    /// Delete every object under the run's prefix and return how many went. The order
    /// keeps every intermediate state honest: `run.json` goes first (from then on the run
    /// reads as failed, never as completed without artifacts), then the artifacts and
    /// anything else the run wrote (listed, not assumed), and `status.json` last, so a
    /// crash half-way leaves a run that is still listed and can be deleted again.
    /// `not_found` when the prefix holds nothing.
    pub async fn delete_run(&self, scope: &Scope, run_id: &str) -> ApiResult<usize> {
        let record_key = paths::run_file(scope, run_id, RECORD_FILE)?;
        let status_key = paths::run_file(scope, run_id, STATUS_FILE)?;
        let dir = paths::runs_root(scope).join(run_id);
        let mut listed: Vec<Path> = self
            .inner
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(internal_os)?;
        if listed.is_empty() {
            return Err(ApiError::not_found(
                Some("run_id"),
                format!("run {run_id} does not exist"),
            ));
        }
        deletion_order(&mut listed, &record_key, &status_key);
        let mut deleted = 0usize;
        for location in &listed {
            match self.inner.delete(location).await {
                Ok(()) => deleted += 1,
                // Someone else (another sweep, another request) got there first.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(internal_os(e)),
            }
        }
        Ok(deleted)
    }

    /// At start-up: every `running` run in the whole store whose heartbeat is older than
    /// `stale_after` lost its server, so it becomes `failed` ("interrupted"). Returns how
    /// many were marked.
    pub async fn recover_interrupted_runs(&self, stale_after: Duration) -> ApiResult<usize> {
        // A bound too large for chrono means "never stale".
        let stale_after = TimeDelta::from_std(stale_after).unwrap_or(TimeDelta::MAX);
        let mut recovered = 0usize;
        for scope in self.scopes().await? {
            let root = paths::runs_root(&scope);
            // One recursive listing per namespace instead of one request per run directory:
            // a run has only a handful of objects.
            let listed: Vec<object_store::ObjectMeta> = self
                .inner
                .list(Some(&root))
                .try_collect()
                .await
                .map_err(internal_os)?;
            let run_ids: Vec<String> = listed
                .iter()
                .filter_map(|m| {
                    let rest: Vec<_> = m.location.prefix_match(&root)?.collect();
                    match rest.as_slice() {
                        [run_id, file] if file.as_ref() == STATUS_FILE => {
                            Some(run_id.as_ref().to_owned())
                        }
                        _ => None,
                    }
                })
                .filter(|id| validate_name("run_id", id).is_ok())
                .collect();
            let marked: Vec<bool> = futures::stream::iter(run_ids.into_iter().map(|id| {
                let store = Arc::clone(&self.inner);
                let scope = scope.clone();
                async move { recover_one(store.as_ref(), &scope, &id, stale_after).await }
            }))
            .buffer_unordered(STATUS_CONCURRENCY)
            .try_collect()
            .await?;
            recovered += marked.into_iter().filter(|m| *m).count();
        }
        Ok(recovered)
    }

    /// Every `{org}/{namespace}` pair present in the store, as far as its names are valid
    /// (anything else is not ours and cannot hold runs we wrote).
    pub(crate) async fn scopes(&self) -> ApiResult<Vec<Scope>> {
        let orgs = self
            .inner
            .list_with_delimiter(None)
            .await
            .map_err(internal_os)?;
        let mut scopes = Vec::new();
        for org_dir in orgs.common_prefixes {
            let Some(org) = org_dir.filename().map(str::to_owned) else {
                continue;
            };
            if validate_name("org", &org).is_err() {
                continue;
            }
            let namespaces = self
                .inner
                .list_with_delimiter(Some(&org_dir))
                .await
                .map_err(internal_os)?;
            for ns_dir in namespaces.common_prefixes {
                if let Some(ns) = ns_dir.filename()
                    && let Ok(scope) = Scope::new(&org, ns)
                {
                    scopes.push(scope);
                }
            }
        }
        Ok(scopes)
    }
}

/// The record first, the status last, everything else between (in key order).
fn deletion_order(keys: &mut [Path], record_key: &Path, status_key: &Path) {
    let rank = |p: &Path| {
        if p == record_key {
            0
        } else if p == status_key {
            2
        } else {
            1
        }
    };
    keys.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.as_ref().cmp(b.as_ref()))
    });
}

/// A run as stored: see [`Store::stored_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    /// `status.json` exactly as the run last wrote it.
    pub status: RunStatus,
    /// Whether `run.json` exists.
    pub has_record: bool,
}

/// The status a run shows: `run.json` alone decides whether it completed.
fn reconcile(status: &mut RunStatus, has_record: bool) {
    if has_record {
        // Between run.json and the final status.json a reader still finds the last
        // progress ("writing") in the status: a completed run reads as done.
        status.status = RunState::Completed;
        status.progress = Some(RunProgress::done());
        status.error = None;
        return;
    }
    if status.status == RunState::Completed {
        status.status = RunState::Failed;
        status.error = Some(RunError {
            code: "internal".to_owned(),
            message: MISSING_RECORD.to_owned(),
            field: None,
        });
    }
}

/// The reconciled status of one listed run directory; `None` when it has no status file.
/// A status file that does not parse is skipped with a warning rather than failing the
/// whole listing: one damaged run must not hide all the others.
async fn read_listed_status(
    store: &dyn ObjectStore,
    scope: &Scope,
    run_id: &str,
) -> ApiResult<Option<RunStatus>> {
    let status_key = paths::run_file(scope, run_id, STATUS_FILE)?;
    let record_key = paths::run_file(scope, run_id, RECORD_FILE)?;
    let (bytes, has_record) =
        futures::try_join!(get_bytes(store, &status_key), exists(store, &record_key))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    match serde_json::from_slice::<RunStatus>(&bytes) {
        Ok(mut status) => {
            reconcile(&mut status, has_record);
            Ok(Some(status))
        }
        Err(e) => {
            tracing::warn!(error = %e, key = %status_key, "skipping an unreadable run status");
            Ok(None)
        }
    }
}

/// Mark one stale `running` status as interrupted; `true` when it did.
async fn recover_one(
    store: &dyn ObjectStore,
    scope: &Scope,
    run_id: &str,
    stale_after: TimeDelta,
) -> ApiResult<bool> {
    let key = &paths::run_file(scope, run_id, STATUS_FILE)?;
    let Some(bytes) = get_bytes(store, key).await? else {
        // Deleted since the listing.
        return Ok(false);
    };
    let mut status = match serde_json::from_slice::<RunStatus>(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, key = %key, "skipping an unreadable run status");
            return Ok(false);
        }
    };
    if status.status != RunState::Running {
        return Ok(false);
    }
    let heartbeat = match DateTime::parse_from_rfc3339(&status.heartbeat_at) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => {
            tracing::warn!(error = %e, key = %key, "skipping a run status with an unreadable heartbeat");
            return Ok(false);
        }
    };
    let now = Utc::now();
    if now.signed_duration_since(heartbeat) <= stale_after {
        return Ok(false);
    }
    // The run wrote its record and died before updating its status: it completed, and
    // every reader already reports it so.
    if exists(store, &paths::run_file(scope, run_id, RECORD_FILE)?).await? {
        return Ok(false);
    }
    status.status = RunState::Failed;
    status.error = Some(RunError {
        code: "internal".to_owned(),
        message: INTERRUPTED.to_owned(),
        field: None,
    });
    status.updated_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    put_json(store, key, &status).await?;
    tracing::info!(run_id = %status.run_id, key = %key, "marked an interrupted run as failed");
    Ok(true)
}

async fn put_json<T: Serialize>(store: &dyn ObjectStore, key: &Path, value: &T) -> ApiResult<()> {
    let body = serde_json::to_vec_pretty(value).map_err(ApiError::internal)?;
    store
        .put(key, PutPayload::from(body))
        .await
        .map_err(internal_os)?;
    Ok(())
}

/// The object, or `None` when it does not exist.
async fn get_bytes(store: &dyn ObjectStore, key: &Path) -> ApiResult<Option<Bytes>> {
    let got = match store.get(key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(internal_os(e)),
    };
    got.bytes().await.map(Some).map_err(internal_os)
}

/// A file we wrote ourselves that does not parse is a server-side fault.
async fn get_json<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &Path,
) -> ApiResult<Option<T>> {
    let Some(bytes) = get_bytes(store, key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("{key}: {e}")))
}

async fn exists(store: &dyn ObjectStore, key: &Path) -> ApiResult<bool> {
    match store.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(internal_os(e)),
    }
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
