//! Background runs: submit answers at once and the run is followed through the runs API;
//! cancel stops a running run (REST and gRPC) and leaves it `cancelled` with no record
//! and no artifacts; finished, unknown and foreign runs are refused.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;
use clusterd::api::grpc::pb;

const SLOW: &str = "col_slow";
const VECTOR: &str = "embedding";

/// A server holding 20k 32-d documents for org A.
async fn server_with_slow_collection(extra_args: &[&str]) -> TestServer {
    let server = TestServer::start_with(Options {
        extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    });
    let bytes = example_parquet(20_000, 32, 20, "s_", VECTOR);
    let (status, body) = server.upload_parquet(KEY_A, SLOW, bytes).await;
    assert_eq!(status, 200, "{body}");
    server
}

/// k-means restarted `n_init` times: each restart is a full k-means++ seeding over 20k
/// rows, so the run's length scales with `n_init` and it checkpoints throughout.
fn kmeans_body(n_init: u64) -> Value {
    json!({
        "collection_ids": [SLOW],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": 40, "n_init": n_init, "tol": 0.0},
            "feature_vector": {"vector_name": VECTOR},
        },
        "store_results": true,
        "save_artifacts": true
    })
}

/// Long enough to still run when cancelled a few seconds in, on a loaded 2-core machine.
const FOREVER: u64 = 1_000_000;

async fn submit(server: &TestServer, key: &str, body: &Value) -> (u16, Value) {
    server
        .send(
            reqwest::Method::POST,
            "/v1/clusters/submit",
            Some(key),
            NS,
            Some(body),
        )
        .await
}

async fn get_run(server: &TestServer, key: &str, run_id: &str) -> (u16, Value) {
    server
        .send(
            reqwest::Method::GET,
            &format!("/v1/clusters/runs/{run_id}"),
            Some(key),
            NS,
            None,
        )
        .await
}

async fn cancel_rest(server: &TestServer, key: &str, run_id: &str) -> (u16, Value) {
    server
        .send(
            reqwest::Method::POST,
            &format!("/v1/clusters/runs/{run_id}/cancel"),
            Some(key),
            NS,
            None,
        )
        .await
}

/// Poll the run until `done` accepts it (panics after `limit`).
async fn wait_for(
    server: &TestServer,
    run_id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (status, run) = get_run(server, KEY_A, run_id).await;
        assert_eq!(status, 200, "{run}");
        if done(&run) {
            return run;
        }
        assert!(
            start.elapsed() < limit,
            "run {run_id} did not get there in {limit:?}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn running_with_progress(run: &Value) -> bool {
    run["status"] == "running" && run["progress"]["stage"].is_string()
}

/// The file names of every object in the run's directory of the store.
async fn files_of_run(server: &TestServer, run_id: &str) -> Vec<String> {
    let dir = format!("{ORG_A}/{NS}/engine_cluster_build/{run_id}");
    server
        .list_keys(&dir)
        .await
        .into_iter()
        .map(|k| k.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

/// A cancelled run: status `cancelled` with the cancelled error, no result, no artifacts
/// over the API, and nothing but its status file in the store.
async fn assert_cancelled_without_record(server: &TestServer, run_id: &str) {
    let run = wait_for(server, run_id, Duration::from_secs(30), |r| {
        r["status"] != "running"
    })
    .await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["error"]["code"], "cancelled", "{run}");
    assert!(
        run.get("result").is_none() && run.get("artifacts").is_none(),
        "{run}"
    );
    for name in ["clusters.parquet", "members.parquet", "sample.parquet"] {
        let (status, _) = server
            .get_bytes(
                KEY_A,
                &format!("/v1/clusters/runs/{run_id}/artifacts/{name}"),
            )
            .await;
        assert_eq!(status, 404, "{name} of a cancelled run");
    }
    let files = files_of_run(server, run_id).await;
    assert!(
        !files
            .iter()
            .any(|f| f == "run.json" || f.ends_with(".parquet")),
        "a cancelled run leaves only its status: {files:?}"
    );
}

#[tokio::test]
async fn submitted_run_answers_at_once_shows_progress_while_running_then_completes_with_its_record()
{
    let server = server_with_slow_collection(&[]).await;
    let started = Instant::now();
    let (status, out) = submit(&server, KEY_A, &kmeans_body(60)).await;
    let answered_in = started.elapsed();
    assert_eq!(status, 202, "{out}");
    assert_eq!(out["status"], "running");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();

    // Recorded before the answer: the first GET already finds it.
    let (status, first) = get_run(&server, KEY_A, &run_id).await;
    assert_eq!(status, 200, "{first}");
    let running = wait_for(&server, &run_id, Duration::from_secs(60), |r| {
        running_with_progress(r) || r["status"] == "completed"
    })
    .await;
    let completed = wait_for(&server, &run_id, Duration::from_secs(300), |r| {
        r["status"] != "running"
    })
    .await;
    let took = started.elapsed();
    eprintln!("submit answered in {answered_in:?}; the run took {took:?}");
    assert!(
        answered_in * 4 < took,
        "submit answered in {answered_in:?}, the run took {took:?}"
    );
    assert_eq!(
        running["status"], "running",
        "progress seen while running: {running}"
    );
    assert_eq!(completed["status"], "completed", "{completed}");
    assert_eq!(completed["result"]["num_documents"], 20_000);
    assert_eq!(completed["result"]["num_clusters"], 40);
    assert_eq!(completed["request"]["algorithm_params"]["n_init"], 60);
    assert_eq!(completed["progress"]["stage"], "done");
    let files = files_of_run(&server, &run_id).await;
    assert!(files.iter().any(|f| f == "run.json"), "{files:?}");
    let (status, _) = server
        .get_bytes(
            KEY_A,
            &format!("/v1/clusters/runs/{run_id}/artifacts/members.parquet"),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn cancelling_a_submitted_run_over_rest_leaves_it_cancelled_without_record_or_artifacts() {
    let server = server_with_slow_collection(&[]).await;
    let (status, out) = submit(&server, KEY_A, &kmeans_body(FOREVER)).await;
    assert_eq!(status, 202, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();
    wait_for(&server, &run_id, Duration::from_secs(60), |r| {
        running_with_progress(r) && r["progress"]["stage"] != "loading"
    })
    .await;

    // Another organisation cannot see, let alone stop, the run.
    let (status, body) = cancel_rest(&server, KEY_B, &run_id).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (_, still) = get_run(&server, KEY_A, &run_id).await;
    assert_eq!(still["status"], "running", "{still}");

    let (status, body) = cancel_rest(&server, KEY_A, &run_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run_id"], run_id.as_str());
    assert!(
        body["status"] == "cancelled" || body["status"] == "cancelling",
        "{body}"
    );
    assert_cancelled_without_record(&server, &run_id).await;

    // Once stopped it is finished: a second cancel is a conflict.
    let (status, body) = cancel_rest(&server, KEY_A, &run_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["message"], "run is cancelled");
}

#[tokio::test]
async fn cancelling_a_submitted_run_over_grpc_leaves_it_cancelled_without_record_or_artifacts() {
    let server = server_with_slow_collection(&[]).await;
    let mut client = server.cluster_client().await;
    let submitted = client
        .submit_clustering(authed(to_proto(&kmeans_body(FOREVER)), KEY_A, NS))
        .await
        .expect("submit")
        .into_inner();
    assert_eq!(submitted.status, "running");
    let run_id = submitted.run_id;
    wait_for(&server, &run_id, Duration::from_secs(60), |r| {
        running_with_progress(r) && r["progress"]["stage"] != "loading"
    })
    .await;

    let foreign = client
        .cancel_run(authed(
            pb::CancelRunRequest {
                run_id: run_id.clone(),
            },
            KEY_B,
            NS,
        ))
        .await
        .expect_err("another org's run");
    assert_eq!(foreign.code(), Code::NotFound);

    let cancelled = client
        .cancel_run(authed(
            pb::CancelRunRequest {
                run_id: run_id.clone(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.run_id, run_id);
    assert!(
        cancelled.status == "cancelled" || cancelled.status == "cancelling",
        "{}",
        cancelled.status
    );
    if cancelled.status == "cancelled" {
        let run = cancelled.run.expect("the stopped run");
        assert_eq!(run.status, "cancelled");
        assert_eq!(run.error.expect("error").code, "cancelled");
        assert!(run.result.is_none() && run.artifacts.is_empty());
    }
    assert_cancelled_without_record(&server, &run_id).await;

    let again = client
        .get_run(authed(
            pb::GetRunRequest {
                run_id: run_id.clone(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("get run")
        .into_inner();
    assert_eq!(again.status, "cancelled");
}

#[tokio::test]
async fn cancelling_a_completed_run_is_a_conflict_and_an_unknown_run_is_not_found() {
    let server = server_with_reference_collections().await;
    let (status, out) = server.execute_rest(KEY_A, &reference_body()).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();

    let (status, body) = cancel_rest(&server, KEY_A, &run_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(body["error"]["message"], "run is completed");
    let (_, run) = get_run(&server, KEY_A, &run_id).await;
    assert_eq!(run["status"], "completed", "{run}");

    let (status, body) = cancel_rest(&server, KEY_B, &run_id).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = cancel_rest(&server, KEY_A, "run_0000000000000000ffff").await;
    assert_eq!(status, 404, "{body}");

    let e = server
        .cluster_client()
        .await
        .cancel_run(authed(pb::CancelRunRequest { run_id }, KEY_A, NS))
        .await
        .expect_err("completed");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().ends_with("run is completed"), "{}", e.message());
}

#[tokio::test]
async fn submit_needs_store_results_and_refuses_a_full_queue_at_once() {
    let server =
        server_with_slow_collection(&["--max-concurrent-runs", "1", "--max-queued-runs", "0"])
            .await;
    let mut unstored = kmeans_body(1);
    unstored["store_results"] = json!(false);
    unstored["save_artifacts"] = json!(false);
    let (status, body) = submit(&server, KEY_A, &unstored).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "store_results");

    let (status, out) = submit(&server, KEY_A, &kmeans_body(FOREVER)).await;
    assert_eq!(status, 202, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();
    let (status, body) = submit(&server, KEY_A, &kmeans_body(1)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");

    let (status, body) = cancel_rest(&server, KEY_A, &run_id).await;
    assert_eq!(status, 200, "{body}");
    assert_cancelled_without_record(&server, &run_id).await;
}

#[tokio::test]
async fn a_waiting_execute_call_is_cancelled_by_run_id_and_answers_cancelled() {
    let server = server_with_slow_collection(&[]).await;
    let url = server.url("/v1/clusters/execute");
    let call = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(KEY_A)
            .header("X-Namespace", NS)
            .json(&kmeans_body(FOREVER))
            .send()
            .await
            .expect("execute");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.expect("JSON"))
    });
    // The execute call does not answer until the end; its run id comes from the list.
    let run_id = first_running_run(&server).await;
    let (status, body) = cancel_rest(&server, KEY_A, &run_id).await;
    assert_eq!(status, 200, "{body}");
    let (status, answer) = call.await.expect("execute task");
    assert_eq!(status, 499, "{answer}");
    assert_eq!(answer["error"]["code"], "cancelled");
    assert_cancelled_without_record(&server, &run_id).await;
}
