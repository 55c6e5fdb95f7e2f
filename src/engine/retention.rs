//! Housekeeping (issue 9): deleting a run, and the retention policy the server applies to
//! stored runs — at start-up, every `interval`, and after each run of a namespace ends.
//! Only finished runs (completed, failed, cancelled) are ever removed; a run still
//! computing, here or in another server sharing the store, is never touched.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::registry::Registry;
use crate::model::{ApiError, ApiResult, ErrorCode, RunState, RunStatus, Scope, validate_name};
use crate::store::{Store, StoredRun};

/// How many status files a sweep reads at once (object-store latency bound).
const SWEEP_CONCURRENCY: usize = 8;

/// Which finished runs the server removes. Both bounds are off by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Remove a finished run this long after it finished.
    pub max_age: Option<Duration>,
    /// Keep at most this many finished runs per namespace (the newest).
    pub max_runs: Option<usize>,
    /// How often the server sweeps every namespace.
    pub interval: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            max_age: None,
            max_runs: None,
            interval: Duration::from_secs(300),
        }
    }
}

impl RetentionPolicy {
    pub fn is_active(&self) -> bool {
        self.max_age.is_some() || self.max_runs.is_some()
    }
}

/// A duration for `--retention-max-age`: plain seconds (`3600`) or a number with one unit,
/// `s`, `m`, `h` or `d` (`90m`, `12h`, `30d`). Zero is refused: it would remove every run
/// the moment it finishes.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_s) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3_600),
        Some((i, 'd')) => (&text[..i], 86_400),
        _ => (text, 1),
    };
    let n: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: give seconds, or a number with s, m, h or d (30d)")
    })?;
    match n.checked_mul(unit_s) {
        Some(0) => Err("must be more than zero".to_owned()),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("{text:?} is too long")),
    }
}

/// Why retention removed a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MaxAge,
    MaxRuns,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MaxAge => "max_age",
            Reason::MaxRuns => "max_runs",
        }
    }
}

/// What the policy needs to know of one stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    pub finished: bool,
    /// When it finished (its last status write); None when unreadable, which keeps the
    /// run from being removed by age.
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunFacts {
    /// A run is finished when its status file says so, or when its record exists and its
    /// heartbeat is stale (its server died between writing `run.json` and the final
    /// status). A run this process holds, or whose status still says running, is not:
    /// it may be writing its results right now.
    pub fn of(
        stored: &StoredRun,
        held_here: bool,
        now: DateTime<Utc>,
        stale_after: Duration,
    ) -> Self {
        let status = &stored.status;
        let finished = !held_here
            && match status.status {
                RunState::Completed | RunState::Failed | RunState::Cancelled => true,
                RunState::Running => {
                    stored.has_record && !heartbeat_fresh(status, now, stale_after)
                }
            };
        RunFacts {
            finished,
            finished_at: parse_time(&status.updated_at),
        }
    }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a `running` status was refreshed within `stale_after` (an unreadable heartbeat
/// counts as stale, as at start-up recovery).
fn heartbeat_fresh(status: &RunStatus, now: DateTime<Utc>, stale_after: Duration) -> bool {
    let bound = TimeDelta::from_std(stale_after).unwrap_or(TimeDelta::MAX);
    parse_time(&status.heartbeat_at).is_some_and(|t| now.signed_duration_since(t) <= bound)
}

/// The policy applied to one namespace, run by run, newest first.
pub struct Sweep<'a> {
    policy: &'a RetentionPolicy,
    now: DateTime<Utc>,
    /// Finished runs kept so far (all newer than the run being judged).
    kept: usize,
}

impl<'a> Sweep<'a> {
    pub fn new(policy: &'a RetentionPolicy, now: DateTime<Utc>) -> Self {
        Sweep {
            policy,
            now,
            kept: 0,
        }
    }

    /// Whether to remove the next run (each run once, newest first); running runs are
    /// never removed and do not count towards `max_runs`.
    pub fn judge(&mut self, run: &RunFacts) -> Option<Reason> {
        if !run.finished {
            return None;
        }
        if self.policy.max_runs.is_some_and(|n| self.kept >= n) {
            return Some(Reason::MaxRuns);
        }
        let too_old = match (self.policy.max_age, run.finished_at) {
            (Some(max), Some(at)) => {
                let bound = TimeDelta::from_std(max).unwrap_or(TimeDelta::MAX);
                self.now.signed_duration_since(at) > bound
            }
            _ => false,
        };
        if too_old {
            return Some(Reason::MaxAge);
        }
        self.kept += 1;
        None
    }
}

/// The retention machinery the engine holds; cheap to clone into tasks.
#[derive(Clone)]
pub(super) struct Retention {
    store: Arc<Store>,
    runs: Arc<Registry>,
    policy: RetentionPolicy,
    stale_after: Duration,
    /// Namespaces with a sweep queued by `after_run`: a burst of runs ending in one
    /// namespace queues one sweep, not one each.
    queued: Arc<Mutex<HashSet<(String, String)>>>,
}

impl Retention {
    pub(super) fn new(
        store: Arc<Store>,
        runs: Arc<Registry>,
        policy: RetentionPolicy,
        stale_after: Duration,
    ) -> Self {
        Retention {
            store,
            runs,
            policy,
            stale_after,
            queued: Arc::default(),
        }
    }

    fn queued(&self) -> MutexGuard<'_, HashSet<(String, String)>> {
        // The set holds no invariant a panic could break half-way.
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stored run of `scope` just ended: apply the policy to its namespace in the
    /// background (the caller's answer does not wait for it).
    pub(super) fn after_run(&self, scope: &Scope) {
        let key = (scope.org().to_owned(), scope.namespace().to_owned());
        if !self.policy.is_active() || !self.queued().insert(key.clone()) {
            return;
        }
        let this = self.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            // Dequeued before sweeping, so a run ending during the sweep queues another.
            this.queued().remove(&key);
            if let Err(e) = this.sweep_scope(&scope, None).await {
                tracing::warn!(error = %e.message, org = %scope.org(), namespace = %scope.namespace(),
                    "retention sweep failed");
            }
        });
    }

    /// Sweep every namespace of the store, until done or `stop` fires; the runs removed.
    async fn sweep_all(&self, stop: &CancellationToken) -> ApiResult<usize> {
        let mut removed = 0;
        for scope in self.store.scopes().await? {
            if stop.is_cancelled() {
                break;
            }
            removed += self.sweep_scope(&scope, Some(stop)).await?;
        }
        Ok(removed)
    }

    /// Apply the policy to one namespace: status files are read newest first, a few at a
    /// time, and each run is judged as it arrives, so memory holds the run ids only.
    pub(super) async fn sweep_scope(
        &self,
        scope: &Scope,
        stop: Option<&CancellationToken>,
    ) -> ApiResult<usize> {
        let ids = self.store.run_ids(scope).await?;
        let now = Utc::now();
        let mut sweep = Sweep::new(&self.policy, now);
        let mut reads = futures::stream::iter(ids.into_iter().map(|id| {
            let store = Arc::clone(&self.store);
            let scope = scope.clone();
            async move {
                let stored = store.stored_run(&scope, &id).await;
                (id, stored)
            }
        }))
        .buffered(SWEEP_CONCURRENCY);
        let mut removed = 0;
        while let Some((run_id, stored)) = reads.next().await {
            if stop.is_some_and(CancellationToken::is_cancelled) {
                break;
            }
            let Some(stored) = stored? else {
                continue;
            };
            let held = self.runs.holds(scope, &run_id);
            let facts = RunFacts::of(&stored, held, now, self.stale_after);
            let Some(reason) = sweep.judge(&facts) else {
                continue;
            };
            match self.store.delete_run(scope, &run_id).await {
                Ok(objects) => {
                    removed += 1;
                    tracing::info!(%run_id, org = %scope.org(), namespace = %scope.namespace(),
                        reason = reason.as_str(), status = stored.status.status.as_str(), objects,
                        "retention removed a run");
                }
                // Deleted meanwhile by a request or another sweep.
                Err(e) if e.code == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

impl Engine {
    /// Delete a run of `scope` and every object it stored; the number of objects removed.
    /// A run computing here, or `running` with a fresh heartbeat in another server, is a
    /// `conflict` (cancel it first); an unknown run is `not_found`.
    pub async fn delete_run(&self, scope: &Scope, run_id: &str) -> ApiResult<usize> {
        validate_name("run_id", run_id)?;
        let cancel_first = |how: String| {
            ApiError::conflict(
                Some("run_id"),
                format!("run {run_id} is running{how}; cancel it first"),
            )
        };
        if self.runs.holds(scope, run_id) {
            return Err(cancel_first(String::new()));
        }
        if let Some(stored) = self.store.stored_run(scope, run_id).await?
            && stored.status.status == RunState::Running
            && heartbeat_fresh(&stored.status, Utc::now(), self.config.stale_after)
        {
            return Err(cancel_first(format!(
                " in another server process ({})",
                stored.status.instance_id
            )));
        }
        // Without a readable status there is nothing running to protect; whatever the
        // prefix holds goes (and an empty prefix is `not_found`).
        let objects = self.store.delete_run(scope, run_id).await?;
        tracing::info!(%run_id, org = %scope.org(), namespace = %scope.namespace(), objects,
            "run deleted");
        Ok(objects)
    }

    /// Start the retention sweeper when a policy is set: one sweep at once (start-up),
    /// then one every `interval`, until the engine shuts down.
    pub fn start_retention(&self) -> Option<JoinHandle<()>> {
        let policy = &self.config.retention;
        if !policy.is_active() {
            return None;
        }
        tracing::info!(
            max_age_s = policy.max_age.map(|d| d.as_secs()),
            max_runs = policy.max_runs,
            interval_s = policy.interval.as_secs(),
            "retention on"
        );
        let retention = self.retention.clone();
        let stop = self.shutdown.clone();
        let interval = policy.interval.max(Duration::from_secs(1));
        Some(tokio::spawn(async move {
            loop {
                match retention.sweep_all(&stop).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(runs = n, "retention sweep done"),
                    Err(e) => tracing::warn!(error = %e.message, "retention sweep failed"),
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }))
    }
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
