//! Runs across the server's own life: a server killed mid-run leaves a run that the next
//! start-up marks `failed: interrupted`; SIGTERM stops running work at a checkpoint,
//! records it as cancelled and exits within its grace period.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// A run that takes many seconds on two cores (OPTICS is O(N²) with checkpoints), so that
/// the tests can act on it while it runs.
fn slow_request() -> Value {
    json!({
        "collection_ids": ["big"],
        "config": {
            "algorithm": "optics",
            "algorithm_params": {"min_samples": 5},
            "feature_vector": {"vector_name": "embedding"}
        },
        "store_results": true
    })
}

fn options(extra: &[&str]) -> Options {
    Options {
        extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    }
}

/// Upload the big collection and start the slow run in the background; returns once the
/// run is recorded as running, with its id.
async fn start_slow_run(server: &TestServer) -> (String, tokio::task::JoinHandle<(u16, Value)>) {
    start_run_on(server, 60_000).await
}

async fn start_run_on(
    server: &TestServer,
    documents: usize,
) -> (String, tokio::task::JoinHandle<(u16, Value)>) {
    let (status, body) = server
        .upload_parquet(
            KEY_A,
            "big",
            example_parquet(documents, 16, 8, "d_", "embedding"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let url = server.url("/v1/clusters/execute");
    let call = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(KEY_A)
            .header("X-Namespace", NS)
            .json(&slow_request())
            .send()
            .await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            // The server went away (killed): no answer.
            Err(_) => (0, Value::Null),
        }
    });
    (first_running_run(server).await, call)
}

#[tokio::test]
async fn a_server_killed_mid_run_leaves_a_run_that_the_next_start_marks_interrupted() {
    let flags = ["--run-stale-after-s", "1"];
    let server = TestServer::start_with(options(&flags));
    let (run_id, call) = start_slow_run(&server).await;
    let dir = server.kill_keeping_store();
    let _ = call.await;
    // Older than the stale bound (the dead server's last heartbeat was ≤ 5 s ago).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = TestServer::start_in_with(dir, options(&flags));
    let run = restarted.run_view(&run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("interrupted")),
        "{run}"
    );
}

#[tokio::test]
async fn sigterm_stops_running_work_records_it_cancelled_and_exits_in_time() {
    let flags = ["--shutdown-grace-s", "20"];
    let server = TestServer::start_with(options(&flags));
    let (run_id, call) = start_slow_run(&server).await;
    let term = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let started = Instant::now();
    let (exit, dir) =
        tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(25)))
            .await
            .expect("waiter");
    let exit = exit.expect("the server exits after SIGTERM");
    assert!(exit.success(), "clean exit: {exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped at a checkpoint, not at the grace deadline: {:?}",
        started.elapsed()
    );
    // The caller got the cancellation as an answer, not a dropped connection.
    let (status, body) = call.await.expect("caller");
    assert_eq!(status, 499, "{body}");
    assert_eq!(body["error"]["code"], "cancelled");

    let restarted = TestServer::start_in_with(dir, Options::default());
    let run = restarted.run_view(&run_id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
}

/// Local directory only, in both passes: the fault is a directory standing where the
/// artifact goes, which S3 (no directories) cannot be made to refuse.
#[tokio::test]
async fn a_store_failure_mid_run_fails_the_run_with_its_error_and_no_run_json() {
    let server = TestServer::start_local();
    // Long enough (seconds) to place the obstacle while it computes.
    let (run_id, call) = start_run_on(&server, 20_000).await;
    // clusters.parquet, the first artifact, cannot be written where a directory stands.
    let run_dir = server
        .store_root()
        .join(format!("{ORG_A}/{NS}/engine_cluster_build/{run_id}"));
    std::fs::create_dir_all(run_dir.join("clusters.parquet/blocked")).expect("obstacle");
    let (status, body) = call.await.expect("caller");
    assert_eq!(status, 500, "a store fault is the server's: {body}");
    assert_eq!(body["error"]["code"], "internal");
    let run = server.run_view(&run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"]["message"].is_string(), "{run}");
    assert!(
        !run_dir.join("run.json").exists(),
        "no result record for a failed run"
    );
}
