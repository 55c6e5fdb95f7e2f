//! Specs of run persistence, over a local directory per test.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::*;
use crate::model::{
    Algorithm, DeviceInfo, ErrorCode, ExecuteResponse, RunRecord, RunRequestRecord,
};
use crate::store::run_key;
use crate::store::test_support::{scope, temp_store};

/// The id the engine gives a run started at `millis`.
fn run_id(millis: u64, suffix: u32) -> String {
    format!("run_{:012x}{suffix:08x}", 0xFFFF_FFFF_FFFF_u64 - millis)
}

fn ago(d: Duration) -> String {
    (Utc::now() - TimeDelta::from_std(d).unwrap()).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn status(id: &str, state: RunState, heartbeat_age: Duration) -> RunStatus {
    RunStatus {
        run_id: id.to_owned(),
        status: state,
        algorithm: "kmeans".to_owned(),
        collection_ids: vec!["c1".to_owned()],
        description: None,
        created_at: ago(heartbeat_age),
        updated_at: ago(heartbeat_age),
        heartbeat_at: ago(heartbeat_age),
        instance_id: "test-instance".to_owned(),
        progress: None,
        error: None,
    }
}

fn record(id: &str) -> RunRecord {
    RunRecord {
        run_id: id.to_owned(),
        status: RunState::Completed,
        version: "0.1.0".to_owned(),
        request: RunRequestRecord {
            collection_ids: vec!["c1".to_owned()],
            algorithm: "kmeans".to_owned(),
            algorithm_params: serde_json::json!({"n_clusters": 2}),
            vector_name: Some("embedding".to_owned()),
            normalize_features: false,
            description: None,
            sample_size: None,
            compute_metrics: true,
            store_results: true,
            save_artifacts: false,
            llm_labeling: None,
            attribute_config: None,
        },
        result: ExecuteResponse {
            success: true,
            algorithm: Algorithm::KMeans,
            num_clusters: 2,
            num_documents: 10,
            centroids: Vec::new(),
            execution_time_ms: 5,
            run_id: id.to_owned(),
            metrics: None,
            parquet_path: None,
            members_key: None,
            created_at: ago(Duration::ZERO),
            seed: 0,
            llm_labeling_errors: None,
            placed_documents: None,
            device: DeviceInfo {
                kind: "cpu".to_owned(),
                name: "test".to_owned(),
                backend: "cpu".to_owned(),
            },
            members: None,
        },
        artifacts: Vec::new(),
        placement: None,
    }
}

const FRESH: Duration = Duration::from_secs(1);

#[tokio::test]
async fn status_then_record_round_trip() {
    let store = temp_store("roundtrip");
    let s = scope();
    let id = run_id(1_000, 1);
    let mut running = status(&id, RunState::Running, FRESH);
    running.progress = Some(crate::model::RunProgress {
        stage: "writing".to_owned(),
        fraction: 0.0,
        iteration: None,
        inertia: None,
        documents: None,
    });
    store.put_run_status(&s, &running).await.unwrap();
    let view = store.get_run(&s, &id).await.unwrap();
    assert_eq!(view.status, running);
    assert_eq!(view.record, None);

    // The record alone already makes the run completed: the server may die before it
    // updates status.json.
    let rec = record(&id);
    store.put_run_record(&s, &rec).await.unwrap();
    let view = store.get_run(&s, &id).await.unwrap();
    assert_eq!(view.status.status, RunState::Completed);
    assert_eq!(
        view.status.progress,
        Some(crate::model::RunProgress::done()),
        "a completed run reads as done, whatever progress status.json last had"
    );
    assert_eq!(view.record.as_ref(), Some(&rec));

    let mut done = running.clone();
    done.status = RunState::Completed;
    done.progress = Some(crate::model::RunProgress::done());
    store.put_run_status(&s, &done).await.unwrap();
    let view = store.get_run(&s, &id).await.unwrap();
    assert_eq!(view.status, done);
    assert_eq!(view.record, Some(rec));

    let key = Path::from(run_key(&s, &id, "status.json"));
    assert!(store.inner.head(&key).await.is_ok());
    assert_eq!(
        run_key(&s, &id, "run.json"),
        format!("int_abc123/production/engine_cluster_build/{id}/run.json")
    );
}

#[tokio::test]
async fn run_without_record_is_never_completed() {
    let store = temp_store("norecord");
    let s = scope();
    let id = run_id(2_000, 1);
    store
        .put_run_status(&s, &status(&id, RunState::Completed, FRESH))
        .await
        .unwrap();
    let view = store.get_run(&s, &id).await.unwrap();
    assert_eq!(view.status.status, RunState::Failed);
    assert_eq!(view.record, None);
    let error = view.status.error.unwrap();
    assert_eq!(error.code, "internal");
    assert_eq!(error.message, "the run record (run.json) is missing");

    let page = store.list_runs(&s, 10, None, None).await.unwrap();
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.runs[0].status, RunState::Failed);
    let completed = store
        .list_runs(&s, 10, None, Some(RunState::Completed))
        .await
        .unwrap();
    assert!(completed.runs.is_empty());
}

#[tokio::test]
async fn get_missing_run_is_not_found() {
    let store = temp_store("missing");
    let s = scope();
    let e = store.get_run(&s, &run_id(1, 1)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.field.as_deref(), Some("run_id"));

    // A record without a status is not a run either.
    let id = run_id(2, 1);
    store.put_run_record(&s, &record(&id)).await.unwrap();
    let e = store.get_run(&s, &id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    let e = store.get_run(&s, "../secrets").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(e.field.as_deref(), Some("run_id"));
}

#[tokio::test]
async fn list_runs_newest_first_and_pages() {
    let store = temp_store("pages");
    let s = scope();
    // Written out of order, and two in the same millisecond.
    let millis = [3_000u64, 1_000, 5_000, 2_000, 4_000, 4_000];
    for (i, m) in millis.iter().enumerate() {
        let id = run_id(*m, u32::try_from(i).unwrap());
        store
            .put_run_status(&s, &status(&id, RunState::Running, FRESH))
            .await
            .unwrap();
    }
    // A run directory without status.json (a run that died before its first write, or
    // debris) is skipped.
    let debris = Path::from(run_key(&s, &run_id(4_500, 0), "clusters.parquet"));
    store
        .inner
        .put(&debris, bytes::Bytes::from_static(b"x").into())
        .await
        .unwrap();

    let mut expected: Vec<String> = millis
        .iter()
        .enumerate()
        .map(|(i, m)| run_id(*m, u32::try_from(i).unwrap()))
        .collect();
    expected.sort();
    // Ascending id order is descending start time.
    assert!(expected[0].starts_with(&run_id(5_000, 0)[..16]));

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_runs(&s, 2, token.as_deref(), None)
            .await
            .unwrap();
        pages += 1;
        assert!(page.runs.len() <= 2);
        seen.extend(page.runs.iter().map(|r| r.run_id.clone()));
        match page.next_page_token {
            Some(t) => {
                assert_eq!(Some(&t), seen.last());
                token = Some(t);
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    let all = store.list_runs(&s, 100, None, None).await.unwrap();
    assert_eq!(all.runs.len(), 6);
    assert_eq!(all.next_page_token, None);

    let e = store
        .list_runs(&s, 2, Some("../x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("page_token"));
}

#[tokio::test]
async fn list_runs_filters_by_status() {
    let store = temp_store("filter");
    let s = scope();
    let states = [
        RunState::Running,
        RunState::Failed,
        RunState::Completed,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Failed,
    ];
    for (i, state) in states.iter().enumerate() {
        let id = run_id(1_000 + i as u64, 0);
        store
            .put_run_status(&s, &status(&id, *state, FRESH))
            .await
            .unwrap();
        if *state == RunState::Completed {
            store.put_run_record(&s, &record(&id)).await.unwrap();
        }
    }
    let failed = store
        .list_runs(&s, 2, None, Some(RunState::Failed))
        .await
        .unwrap();
    assert_eq!(failed.runs.len(), 2);
    assert!(failed.runs.iter().all(|r| r.status == RunState::Failed));
    // Newest first: the highest millis (index 5) comes first.
    assert_eq!(failed.runs[0].run_id, run_id(1_005, 0));
    assert_eq!(failed.runs[1].run_id, run_id(1_003, 0));
    let rest = store
        .list_runs(
            &s,
            2,
            failed.next_page_token.as_deref(),
            Some(RunState::Failed),
        )
        .await
        .unwrap();
    assert_eq!(rest.runs.len(), 1);
    assert_eq!(rest.runs[0].run_id, run_id(1_001, 0));
    assert_eq!(rest.next_page_token, None);

    let completed = store
        .list_runs(&s, 10, None, Some(RunState::Completed))
        .await
        .unwrap();
    assert_eq!(completed.runs.len(), 1);
    assert_eq!(completed.runs[0].run_id, run_id(1_002, 0));
    let running = store
        .list_runs(&s, 10, None, Some(RunState::Running))
        .await
        .unwrap();
    assert_eq!(running.runs.len(), 1);
}

#[tokio::test]
async fn runs_are_isolated_by_org_and_namespace() {
    let store = temp_store("isolated");
    let a = scope();
    let other_ns = Scope::new("int_abc123", "staging").unwrap();
    let other_org = Scope::new("int_zzz", "production").unwrap();
    let id = run_id(1_000, 7);
    store
        .put_run_status(&a, &status(&id, RunState::Running, FRESH))
        .await
        .unwrap();
    store.put_run_record(&a, &record(&id)).await.unwrap();
    assert!(store.get_run(&a, &id).await.is_ok());
    for s in [&other_ns, &other_org] {
        let e = store.get_run(s, &id).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(
            store
                .list_runs(s, 10, None, None)
                .await
                .unwrap()
                .runs
                .is_empty()
        );
    }
    assert_eq!(
        store
            .list_runs(&a, 10, None, None)
            .await
            .unwrap()
            .runs
            .len(),
        1
    );
}

#[tokio::test]
async fn stale_running_runs_become_failed_interrupted() {
    let store = temp_store("recover");
    let s = scope();
    let other = Scope::new("int_other", "ns2").unwrap();
    let hour = Duration::from_secs(3600);
    let stale = run_id(1_000, 1);
    let fresh = run_id(2_000, 1);
    let completed = run_id(3_000, 1);
    let finished_unmarked = run_id(4_000, 1);
    let stale_elsewhere = run_id(5_000, 1);
    store
        .put_run_status(&s, &status(&stale, RunState::Running, hour))
        .await
        .unwrap();
    store
        .put_run_status(&s, &status(&fresh, RunState::Running, FRESH))
        .await
        .unwrap();
    let completed_status = status(&completed, RunState::Completed, hour);
    store.put_run_status(&s, &completed_status).await.unwrap();
    store.put_run_record(&s, &record(&completed)).await.unwrap();
    // Died after run.json, before its status said so: it finished, it was not interrupted.
    let unmarked_status = status(&finished_unmarked, RunState::Running, hour);
    store.put_run_status(&s, &unmarked_status).await.unwrap();
    store
        .put_run_record(&s, &record(&finished_unmarked))
        .await
        .unwrap();
    store
        .put_run_status(&other, &status(&stale_elsewhere, RunState::Running, hour))
        .await
        .unwrap();
    // A damaged status file is skipped, not a failure of start-up.
    let damaged = Path::from(run_key(&s, &run_id(6_000, 1), "status.json"));
    store
        .inner
        .put(&damaged, bytes::Bytes::from_static(b"{not json").into())
        .await
        .unwrap();
    // Documents are not runs.
    let part = Path::from("int_abc123/production/collections/c1/part-1.parquet");
    store
        .inner
        .put(&part, bytes::Bytes::from_static(b"PAR1").into())
        .await
        .unwrap();

    let before = Utc::now();
    let n = store
        .recover_interrupted_runs(Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(n, 2);

    for (sc, id) in [(&s, &stale), (&other, &stale_elsewhere)] {
        let view = store.get_run(sc, id).await.unwrap();
        assert_eq!(view.status.status, RunState::Failed);
        let error = view.status.error.unwrap();
        assert_eq!(error.code, "internal");
        assert_eq!(
            error.message,
            "interrupted: the server stopped before the run finished"
        );
        let updated = chrono::DateTime::parse_from_rfc3339(&view.status.updated_at).unwrap();
        assert!(updated >= before - TimeDelta::seconds(1));
    }
    let view = store.get_run(&s, &fresh).await.unwrap();
    assert_eq!(view.status.status, RunState::Running);
    assert_eq!(view.status.error, None);
    let view = store.get_run(&s, &completed).await.unwrap();
    assert_eq!(
        view.status,
        RunStatus {
            progress: Some(crate::model::RunProgress::done()),
            ..completed_status.clone()
        }
    );
    let view = store.get_run(&s, &finished_unmarked).await.unwrap();
    assert_eq!(view.status.status, RunState::Completed);
    assert_eq!(view.status.error, None);

    // Idempotent: nothing left to recover.
    let again = store
        .recover_interrupted_runs(Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(again, 0);
}

/// The gRPC layer needs `Send` futures; the listing's buffered stream is where that could
/// silently break.
#[test]
fn store_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let store = temp_store("send");
    let s = scope();
    let list = store.list_runs(&s, 1, None, None);
    assert_send(&list);
    let recover = store.recover_interrupted_runs(Duration::from_secs(1));
    assert_send(&recover);
    let get = store.get_run(&s, "run_x");
    assert_send(&get);
}

#[test]
fn a_run_is_deleted_record_first_and_status_last() {
    let s = scope();
    let key = |f: &str| Path::from(run_key(&s, "run_x", f));
    let mut keys = vec![
        key("status.json"),
        key("sample.parquet"),
        key("run.json"),
        key("clusters.parquet"),
        key("members.parquet"),
    ];
    deletion_order(&mut keys, &key("run.json"), &key("status.json"));
    assert_eq!(
        keys,
        [
            key("run.json"),
            key("clusters.parquet"),
            key("members.parquet"),
            key("sample.parquet"),
            key("status.json"),
        ]
    );
}

#[tokio::test]
async fn deleting_a_run_removes_every_object_under_its_prefix_and_nothing_else() {
    let store = temp_store("delete");
    let s = scope();
    let id = run_id(1_000, 1);
    // An id that extends the deleted one: a prefix match on the key string would take it.
    let neighbour = format!("{id}0");
    for run in [&id, &neighbour] {
        store
            .put_run_status(&s, &status(run, RunState::Completed, FRESH))
            .await
            .unwrap();
        store.put_run_record(&s, &record(run)).await.unwrap();
        for name in ["clusters.parquet", "members.parquet", "notes/extra.txt"] {
            store
                .inner
                .put(&Path::from(run_key(&s, run, name)), b"x".to_vec().into())
                .await
                .unwrap();
        }
    }
    let stored = store.stored_run(&s, &id).await.unwrap().unwrap();
    assert!(stored.has_record);
    assert_eq!(stored.status.status, RunState::Completed);

    assert_eq!(store.delete_run(&s, &id).await.unwrap(), 5);
    assert_eq!(store.stored_run(&s, &id).await.unwrap(), None);
    let err = store.get_run(&s, &id).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let listed = store.list_runs(&s, 10, None, None).await.unwrap();
    assert_eq!(
        listed
            .runs
            .iter()
            .map(|r| r.run_id.as_str())
            .collect::<Vec<_>>(),
        [neighbour.as_str()]
    );
    assert!(store.get_run(&s, &neighbour).await.is_ok());
    let err = store.delete_run(&s, &id).await.unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::NotFound, Some("run_id"))
    );
}
