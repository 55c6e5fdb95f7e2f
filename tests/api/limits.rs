//! Run limits (issue 10): documents and estimated memory per run, refused before loading
//! with what the run needs; request deadlines abandon the request and cancel its run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;

fn with(args: &[&str]) -> Options {
    Options {
        extra_args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    }
}

/// A k-means run that restarts practically forever, checkpointing throughout.
fn endless(collection: &str) -> Value {
    json!({
        "collection_ids": [collection],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": 40, "n_init": 1_000_000, "tol": 0.0},
            "feature_vector": {"vector_name": REF_VECTOR}
        },
        "store_results": true
    })
}

#[tokio::test]
async fn a_run_above_the_document_or_memory_limit_is_refused_with_what_it_needs() {
    // 600 documents of 16 values: 600 × (16 × 8 + 96) = 134 400 bytes by the estimate.
    let server = server_with_reference_collections_using(with(&["--max-run-memory", "40K"])).await;
    let mut body = reference_body();
    let (status, err) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["code"], "payload_too_large");
    assert_eq!(err["error"]["field"], "sample_size");
    let message = err["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("131.2 KiB")
            && message.contains("40.0 KiB")
            && message.contains("at most 182"),
        "{message}"
    );
    // The refused run is recorded as failed with that error, and stored nothing else.
    let runs = server.runs_page().await;
    assert_eq!(runs["runs"][0]["status"], "failed", "{runs}");
    assert_eq!(
        runs["runs"][0]["error"]["code"], "payload_too_large",
        "{runs}"
    );
    let run_id = runs["runs"][0]["run_id"].as_str().expect("run_id");
    let (status, _) = server
        .get_bytes(
            KEY_A,
            &format!("/v1/clusters/runs/{run_id}/artifacts/members.parquet"),
        )
        .await;
    assert_eq!(status, 404, "no artifacts for a refused run");
    body["sample_size"] = json!(182);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");

    // The same over gRPC: RESOURCE_EXHAUSTED naming sample_size.
    let mut client = server.cluster_client().await;
    let err = client
        .execute(authed(to_proto(&reference_body()), KEY_A, NS))
        .await
        .expect_err("above the memory limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("sample_size"), "{}", err.message());

    let server = server_with_reference_collections_using(with(&["--max-documents", "300"])).await;
    let mut body = reference_body();
    body["sample_size"] = json!(null);
    let (status, err) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"]["field"], "sample_size");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("600 documents"),
        "{err}"
    );
    body["sample_size"] = json!(300);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
}

#[tokio::test]
async fn a_rest_request_past_the_server_deadline_is_answered_504_and_its_run_cancelled() {
    let server = server_with_reference_collections_using(with(&["--request-timeout-s", "1"])).await;
    let started = Instant::now();
    let (status, err) = server
        .execute_rest(KEY_A, &endless("col_products_v1"))
        .await;
    assert_eq!(status, 504, "{err}");
    assert_eq!(err["error"]["code"], "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_cancelled_soon(&server).await;
}

#[tokio::test]
async fn a_grpc_deadline_abandons_the_call_and_cancels_its_run() {
    let server = server_with_reference_collections().await;
    let mut client = server.cluster_client().await;
    let mut request = authed(to_proto(&endless("col_products_v1")), KEY_A, NS);
    request.set_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let err = client
        .execute(request)
        .await
        .expect_err("past its deadline");
    assert!(
        matches!(err.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_cancelled_soon(&server).await;
}

/// The abandoned run ends `cancelled` at its next checkpoint, within seconds.
async fn assert_cancelled_soon(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = server.runs_page().await;
        let states: Vec<&str> = page["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter_map(|r| r["status"].as_str())
            .collect();
        if states == ["cancelled"] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the run was not cancelled: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
