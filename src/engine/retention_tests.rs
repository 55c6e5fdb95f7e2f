//! Specs of run deletion and retention: the policy in isolation, then applied to a store.

use super::*;
use crate::engine::EngineConfig;
use crate::gpu::DevicePreference;

const HOUR: Duration = Duration::from_secs(3_600);

fn finished(age: Duration) -> RunFacts {
    RunFacts {
        finished: true,
        finished_at: Some(Utc::now() - TimeDelta::from_std(age).unwrap()),
    }
}

fn running() -> RunFacts {
    RunFacts {
        finished: false,
        finished_at: Some(Utc::now()),
    }
}

fn policy(max_age: Option<Duration>, max_runs: Option<usize>) -> RetentionPolicy {
    RetentionPolicy {
        max_age,
        max_runs,
        ..RetentionPolicy::default()
    }
}

#[test]
fn ages_are_seconds_or_a_number_with_a_unit() {
    assert_eq!(parse_age("3600"), Ok(Duration::from_secs(3_600)));
    assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
    assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5_400)));
    assert_eq!(parse_age("12h"), Ok(Duration::from_secs(43_200)));
    assert_eq!(parse_age("30d"), Ok(Duration::from_secs(2_592_000)));
    for bad in [
        "",
        "0",
        "0d",
        "d",
        "1w",
        "-5",
        "1.5h",
        "99999999999999999999d",
    ] {
        assert!(parse_age(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn max_runs_keeps_the_newest_finished_runs_and_skips_running_ones() {
    let p = policy(None, Some(2));
    let mut sweep = Sweep::new(&p, Utc::now());
    // Newest first, as a sweep reads them.
    let verdicts: Vec<Option<Reason>> = [
        running(),
        finished(HOUR),
        running(),
        finished(2 * HOUR),
        finished(3 * HOUR),
        running(),
        finished(4 * HOUR),
    ]
    .iter()
    .map(|r| sweep.judge(r))
    .collect();
    assert_eq!(
        verdicts,
        [
            None,
            None,
            None,
            None,
            Some(Reason::MaxRuns),
            None,
            Some(Reason::MaxRuns)
        ]
    );
}

#[test]
fn max_age_removes_runs_finished_longer_ago_and_both_bounds_combine() {
    let p = policy(Some(HOUR), None);
    let mut sweep = Sweep::new(&p, Utc::now());
    assert_eq!(sweep.judge(&finished(Duration::from_secs(60))), None);
    assert_eq!(sweep.judge(&finished(2 * HOUR)), Some(Reason::MaxAge));
    assert_eq!(
        sweep.judge(&RunFacts {
            finished: true,
            finished_at: None
        }),
        None,
        "an unknown finish time is never too old"
    );
    assert_eq!(
        sweep.judge(&RunFacts {
            finished: false,
            finished_at: Some(Utc::now() - TimeDelta::days(400)),
        }),
        None,
        "a running run is never removed, however old"
    );

    // A run removed for its age does not take a place among the kept ones.
    let p = policy(Some(HOUR), Some(1));
    let mut sweep = Sweep::new(&p, Utc::now());
    assert_eq!(sweep.judge(&finished(2 * HOUR)), Some(Reason::MaxAge));
    assert_eq!(sweep.judge(&finished(Duration::ZERO)), None);
    assert_eq!(
        sweep.judge(&finished(Duration::ZERO)),
        Some(Reason::MaxRuns)
    );
}

fn status(run_id: &str, state: RunState, heartbeat_age: Duration) -> RunStatus {
    let at = (Utc::now() - TimeDelta::from_std(heartbeat_age).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    serde_json::from_value(serde_json::json!({
        "run_id": run_id, "status": state.as_str(), "algorithm": "kmeans",
        "collection_ids": ["c1"], "created_at": at, "updated_at": at, "heartbeat_at": at,
        "instance_id": "other-instance",
    }))
    .unwrap()
}

#[test]
fn a_run_is_finished_by_its_status_or_by_its_record_once_its_heartbeat_is_stale() {
    let now = Utc::now();
    let stale = Duration::from_secs(60);
    let facts = |state, age, has_record, held| {
        RunFacts::of(
            &StoredRun {
                status: status("run_x", state, age),
                has_record,
            },
            held,
            now,
            stale,
        )
        .finished
    };
    assert!(facts(RunState::Completed, Duration::ZERO, true, false));
    assert!(facts(RunState::Failed, Duration::ZERO, false, false));
    assert!(facts(RunState::Cancelled, Duration::ZERO, false, false));
    // Between run.json and the final status: still writing.
    assert!(!facts(RunState::Running, Duration::ZERO, true, false));
    // Its server died after the record: completed.
    assert!(facts(RunState::Running, HOUR, true, false));
    // Running without a record stays untouched even when stale (start-up recovery
    // decides those).
    assert!(!facts(RunState::Running, HOUR, false, false));
    // Held by this process: never finished for housekeeping.
    assert!(!facts(RunState::Completed, Duration::ZERO, true, true));
}

fn temp_engine(tag: &str, retention: RetentionPolicy) -> (Engine, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "clusterd-retention-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let store = Store::open(dir.to_str().unwrap()).unwrap();
    let engine = Engine::new(
        store,
        EngineConfig {
            device: DevicePreference::Cpu,
            retention,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    (engine, dir)
}

/// Run ids as the engine makes them: a later start sorts first.
fn run_id(millis: u64) -> String {
    format!("run_{:012x}{:08x}", 0xFFFF_FFFF_FFFF_u64 - millis, 1)
}

async fn put(engine: &Engine, scope: &Scope, status: RunStatus, artifacts: &[&str]) {
    let store = engine.store();
    store.put_run_status(scope, &status).await.unwrap();
    let inner = store.object_store();
    for name in artifacts {
        let key =
            object_store::path::Path::from(crate::store::run_key(scope, &status.run_id, name));
        object_store::ObjectStoreExt::put(inner.as_ref(), &key, b"x".to_vec().into())
            .await
            .unwrap();
    }
}

async fn remaining(engine: &Engine, scope: &Scope) -> Vec<String> {
    let mut ids = engine.store().run_ids(scope).await.unwrap();
    let mut present = Vec::new();
    for id in ids.drain(..) {
        if engine
            .store()
            .stored_run(scope, &id)
            .await
            .unwrap()
            .is_some()
        {
            present.push(id);
        }
    }
    present
}

#[tokio::test]
async fn a_sweep_keeps_the_newest_finished_runs_of_each_namespace_and_every_running_one() {
    let (engine, dir) = temp_engine("sweep", policy(None, Some(2)));
    let scope = Scope::new("org_a", "prod").unwrap();
    let other = Scope::new("org_a", "staging").unwrap();
    let ids: Vec<String> = (1..=7).map(|i| run_id(i * 1_000)).collect();
    // Oldest (ids[0]) to newest (ids[6]).
    let states = [
        RunState::Completed,
        RunState::Failed,
        RunState::Running,
        RunState::Cancelled,
        RunState::Completed,
        RunState::Running,
        RunState::Completed,
    ];
    for (id, state) in ids.iter().zip(states) {
        put(
            &engine,
            &scope,
            status(id, state, Duration::ZERO),
            &["members.parquet"],
        )
        .await;
    }
    // The newest completed run is still held by this process (its final status written,
    // its registration not yet gone): it neither goes nor counts.
    let _held = engine
        .runs
        .register(&ids[6], scope.clone(), CancellationToken::new());
    // Another namespace has its own count.
    put(
        &engine,
        &other,
        status(&ids[0], RunState::Completed, HOUR),
        &[],
    )
    .await;

    let removed = engine
        .retention
        .sweep_all(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let mut expected = vec![
        ids[6].clone(),
        ids[5].clone(),
        ids[4].clone(),
        ids[3].clone(),
        ids[2].clone(),
    ];
    expected.sort();
    assert_eq!(remaining(&engine, &scope).await, expected);
    assert_eq!(remaining(&engine, &other).await, [ids[0].clone()]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_sweep_by_age_removes_only_runs_finished_before_the_bound() {
    let (engine, dir) = temp_engine("age", policy(Some(HOUR), None));
    let scope = Scope::new("org_a", "prod").unwrap();
    let (old, recent, stuck) = (run_id(1_000), run_id(2_000), run_id(500));
    put(
        &engine,
        &scope,
        status(&old, RunState::Failed, 2 * HOUR),
        &[],
    )
    .await;
    put(
        &engine,
        &scope,
        status(&recent, RunState::Completed, Duration::ZERO),
        &[],
    )
    .await;
    // A run left running for days by a dead server, without a record: never touched.
    put(
        &engine,
        &scope,
        status(&stuck, RunState::Running, 48 * HOUR),
        &[],
    )
    .await;
    let stop = CancellationToken::new();
    assert_eq!(engine.retention.sweep_all(&stop).await.unwrap(), 1);
    let mut expected = vec![recent, stuck];
    expected.sort();
    assert_eq!(remaining(&engine, &scope).await, expected);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn deleting_a_run_removes_its_objects_and_refuses_running_runs() {
    let (engine, dir) = temp_engine("delete", RetentionPolicy::default());
    let scope = Scope::new("org_a", "prod").unwrap();
    let done = run_id(1_000);
    put(
        &engine,
        &scope,
        status(&done, RunState::Completed, Duration::ZERO),
        &[
            "run.json",
            "clusters.parquet",
            "members.parquet",
            "sample.parquet",
            "extra.bin",
        ],
    )
    .await;
    assert_eq!(engine.delete_run(&scope, &done).await.unwrap(), 6);
    let err = engine.store().get_run(&scope, &done).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = engine.delete_run(&scope, &done).await.unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::NotFound, Some("run_id"))
    );

    // Running here.
    let mine = run_id(2_000);
    put(
        &engine,
        &scope,
        status(&mine, RunState::Running, Duration::ZERO),
        &[],
    )
    .await;
    let registration = engine
        .runs
        .register(&mine, scope.clone(), CancellationToken::new());
    let err = engine.delete_run(&scope, &mine).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains("cancel it first"), "{}", err.message);
    drop(registration);

    // Running in another live server: still a conflict. Its server dead: deletable.
    let err = engine.delete_run(&scope, &mine).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(err.message.contains("other-instance"), "{}", err.message);
    let dead = run_id(3_000);
    put(&engine, &scope, status(&dead, RunState::Running, HOUR), &[]).await;
    assert_eq!(engine.delete_run(&scope, &dead).await.unwrap(), 1);

    // Another namespace's run is not there to delete.
    let err = engine
        .delete_run(&Scope::new("org_b", "prod").unwrap(), &mine)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let _ = std::fs::remove_dir_all(dir);
}
