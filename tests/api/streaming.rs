//! Streaming execution: the REST Server-Sent Events twin of ExecuteStream, and the stored
//! artifacts streamed after the result when `stream_artifacts` asks for them.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::*;
use clusterd::api::grpc::pb;

/// One parsed Server-Sent Event.
#[derive(Debug)]
struct SseEvent {
    event: String,
    data: Value,
}

/// POST the body with `Accept: text/event-stream`; the status, the content type, and the
/// events read incrementally from the byte stream (keep-alive comments skipped).
async fn execute_sse(
    server: &TestServer,
    key: &str,
    body: &Value,
) -> (u16, String, Vec<SseEvent>, Value) {
    let mut resp = reqwest::Client::new()
        .post(server.url("/v1/clusters/execute"))
        .bearer_auth(key)
        .header("X-Namespace", NS)
        .header("Accept", "text/event-stream")
        .json(body)
        .send()
        .await
        .expect("http request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !content_type.starts_with("text/event-stream") {
        let json = resp.json().await.unwrap_or(Value::Null);
        return (status, content_type, Vec::new(), json);
    }
    let mut buffer: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("body chunk") {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8(block).expect("UTF-8 event");
            let (mut event, mut data) = (None, Vec::new());
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.trim_start().to_owned());
                }
            }
            let Some(event) = event else { continue };
            assert_eq!(data.len(), 1, "one data line per event: {text}");
            events.push(SseEvent {
                event,
                data: serde_json::from_str(&data[0]).expect("JSON data"),
            });
        }
    }
    (status, content_type, events, Value::Null)
}

fn seeded_body() -> Value {
    let mut body = reference_body();
    body["include_members"] = json!(true);
    body["config"]["algorithm_params"]["random_state"] = json!(7);
    body
}

fn rows(bytes: Vec<u8>) -> usize {
    read_parquet(bytes::Bytes::from(bytes))
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

#[tokio::test]
async fn sse_streams_progress_then_a_result_equal_to_the_plain_execute() {
    let server = server_with_reference_collections().await;
    let (status, plain) = server.execute_rest(KEY_A, &seeded_body()).await;
    assert_eq!(status, 200, "{plain}");

    let (status, content_type, events, _) = execute_sse(&server, KEY_A, &seeded_body()).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let (last, progress) = events.split_last().expect("events");
    assert_eq!(last.event, "result", "the stream ends with the result");
    assert!(progress.iter().all(|e| e.event == "progress"), "{events:?}");
    let stages: Vec<&str> = progress
        .iter()
        .map(|e| e.data["stage"].as_str().expect("stage"))
        .collect();
    // The pipeline's stages in order around the algorithm's own.
    assert_eq!(stages.first(), Some(&"loading"), "{stages:?}");
    let at = |s: &str| {
        stages
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("no {s} in {stages:?}"))
    };
    assert!(at("loading") < at("normalizing") && at("normalizing") < at("clustering"));
    assert!(
        at("clustering") < at("metrics") && at("metrics") < at("writing"),
        "{stages:?}"
    );
    assert!(
        progress
            .iter()
            .any(|e| e.data["stage"] == "loading" && e.data["documents"] == plain["num_documents"]),
        "loading reports the documents loaded: {events:?}"
    );
    assert!(stages.iter().any(|s| s.starts_with("kmeans")), "{stages:?}");
    assert_eq!(stages.last(), Some(&"writing"), "{stages:?}");
    for e in progress {
        let f = e.data["fraction"].as_f64().expect("fraction");
        assert!((0.0..=1.0).contains(&f), "{}", e.data);
        assert!(e.data.get("iteration").is_some() && e.data.get("inertia").is_some());
    }

    let streamed = &last.data;
    assert_eq!(streamed["success"], true);
    assert_ne!(streamed["run_id"], plain["run_id"], "two runs");
    assert_eq!(streamed["num_clusters"], plain["num_clusters"]);
    assert_eq!(streamed["num_documents"], plain["num_documents"]);
    assert_eq!(streamed["seed"], plain["seed"]);
    assert_eq!(streamed["centroids"], plain["centroids"]);
    assert_eq!(streamed["metrics"], plain["metrics"]);
    assert_eq!(labels_by_document(streamed), labels_by_document(&plain));
}

/// Refusals before the run starts keep the plain JSON error and its status (see the
/// handler's doc comment); a failure once events flow is an `error` event.
#[tokio::test]
async fn sse_refusals_before_the_run_answer_the_plain_json_error_with_its_status() {
    let server = server_with_reference_collections().await;
    let mut body = seeded_body();
    body["config"]["algorithm_params"]["n_clusters"] = json!(0);
    let (status, content_type, events, error) = execute_sse(&server, KEY_A, &body).await;
    assert_eq!(status, 422, "{error}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(events.is_empty());
    assert_eq!(error["error"]["code"], "invalid_parameter");
    assert_eq!(
        error["error"]["field"],
        "config.algorithm_params.n_clusters"
    );

    let (status, _, _, error) = execute_sse(&server, "sk_wrong", &seeded_body()).await;
    assert_eq!(status, 401, "{error}");
    assert_eq!(error["error"]["code"], "unauthenticated");
}

#[tokio::test]
async fn sse_failure_after_the_first_event_is_an_error_event_ending_the_stream() {
    let server = server_with_reference_collections().await;
    let mut body = seeded_body();
    body["collection_ids"] = json!(["col_products_v1", "no_such_collection"]);
    let (status, _, events, error) = execute_sse(&server, KEY_A, &body).await;
    assert_eq!(status, 200, "{error}");
    let (last, before) = events.split_last().expect("events");
    assert!(
        before.iter().all(|e| e.event == "progress") && !before.is_empty(),
        "{events:?}"
    );
    assert_eq!(last.event, "error", "{events:?}");
    assert_eq!(last.data["error"]["code"], "not_found", "{}", last.data);
}

#[tokio::test]
async fn stream_artifacts_needs_store_results_and_a_streaming_execute() {
    let server = server_with_reference_collections().await;
    let mut body = seeded_body();
    body["stream_artifacts"] = json!(true);
    body["store_results"] = json!(false);
    let (status, _, _, error) = execute_sse(&server, KEY_A, &body).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["field"], "stream_artifacts");

    body["store_results"] = json!(true);
    let (status, error) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["field"], "stream_artifacts");
    let refused = server
        .cluster_client()
        .await
        .execute(authed(to_proto(&body), KEY_A, NS))
        .await
        .expect_err("unary Execute has no stream for artifacts");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

/// Artifacts reassembled from (name, offset, bytes, last) pieces, checking that each
/// artifact's pieces are contiguous and that only its final piece is marked last.
fn reassemble(
    pieces: impl IntoIterator<Item = (String, u64, Vec<u8>, bool)>,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for (name, offset, data, last) in pieces {
        match out.last_mut() {
            Some((n, bytes, done)) if *n == name => {
                assert!(!*done, "{name}: a piece after the last one");
                assert_eq!(offset, bytes.len() as u64, "{name}: contiguous offsets");
                bytes.extend_from_slice(&data);
                *done = last;
            }
            _ => {
                assert!(
                    out.iter().all(|(n, _, _)| *n != name),
                    "{name} streamed twice"
                );
                assert!(
                    out.last().is_none_or(|(_, _, done)| *done),
                    "interleaved artifacts"
                );
                assert_eq!(offset, 0, "{name} starts at 0");
                out.push((name, data, last));
            }
        }
    }
    assert!(
        out.iter().all(|(_, _, done)| *done),
        "every artifact ends with a last piece"
    );
    out.into_iter().map(|(n, b, _)| (n, b)).collect()
}

fn check_artifacts(artifacts: Vec<(String, Vec<u8>)>, num_clusters: usize) {
    let names: Vec<&str> = artifacts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["clusters.parquet", "members.parquet", "sample.parquet"]
    );
    let counts: Vec<usize> = artifacts.into_iter().map(|(_, b)| rows(b)).collect();
    assert_eq!(counts, [num_clusters, 600, 600]);
}

#[tokio::test]
async fn grpc_execute_stream_sends_artifact_chunks_after_the_result_that_reassemble_into_parquet() {
    let server = server_with_reference_collections().await;
    let mut body = seeded_body();
    body["stream_artifacts"] = json!(true);
    body["save_artifacts"] = json!(true);
    let mut stream = server
        .cluster_client()
        .await
        .execute_stream(authed(to_proto(&body), KEY_A, NS))
        .await
        .expect("execute_stream")
        .into_inner();
    let (mut result, mut pieces, mut progress) = (None, Vec::new(), 0);
    while let Some(event) = stream.message().await.expect("stream message") {
        match event.event {
            Some(pb::execute_event::Event::Progress(_)) => {
                assert!(result.is_none(), "progress after the result");
                progress += 1;
            }
            Some(pb::execute_event::Event::Result(r)) => result = Some(r),
            Some(pb::execute_event::Event::ArtifactChunk(c)) => {
                assert!(result.is_some(), "artifacts follow the result");
                pieces.push((
                    c.name,
                    u64::try_from(c.offset).expect("offset"),
                    c.data,
                    c.last,
                ));
            }
            None => panic!("empty event"),
        }
    }
    assert!(progress > 0);
    let result = result.expect("a result");
    let artifacts = reassemble(pieces);
    // The streamed bytes are the stored artifact, byte for byte.
    let (status, stored) = server
        .get_bytes(
            KEY_A,
            &format!(
                "/v1/clusters/runs/{}/artifacts/members.parquet",
                result.run_id
            ),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(artifacts[1].1, stored.to_vec());
    check_artifacts(artifacts, result.num_clusters as usize);
}

#[tokio::test]
async fn sse_with_stream_artifacts_sends_base64_artifact_events_that_reassemble_into_parquet() {
    let server = server_with_reference_collections().await;
    let mut body = seeded_body();
    body["stream_artifacts"] = json!(true);
    body["save_artifacts"] = json!(true);
    let (status, _, events, error) = execute_sse(&server, KEY_A, &body).await;
    assert_eq!(status, 200, "{error}");
    let at = events
        .iter()
        .position(|e| e.event == "result")
        .expect("a result");
    assert!(events[..at].iter().all(|e| e.event == "progress"));
    assert!(
        events[at + 1..].iter().all(|e| e.event == "artifact"),
        "{:?}",
        events.last()
    );
    let pieces = events[at + 1..].iter().map(|e| {
        let d = &e.data;
        (
            d["name"].as_str().expect("name").to_owned(),
            d["offset"].as_u64().expect("offset"),
            base64::engine::general_purpose::STANDARD
                .decode(d["data_base64"].as_str().expect("data_base64"))
                .expect("base64"),
            d["last"].as_bool().expect("last"),
        )
    });
    let num_clusters = events[at].data["num_clusters"]
        .as_u64()
        .expect("num_clusters");
    check_artifacts(reassemble(pieces), num_clusters as usize);
}

#[tokio::test]
async fn a_client_that_disconnects_from_the_event_stream_cancels_the_run() {
    let server = TestServer::start();
    // Large enough that the run is still computing when the client goes away: 200
    // k-means++ restarts of 50 clusters over 20 000 points take far longer than the
    // cancellation needs to reach a checkpoint.
    let bytes = example_parquet(20_000, 64, 50, "big_", REF_VECTOR);
    let (status, body) = server.upload_parquet(KEY_A, "big", bytes).await;
    assert_eq!(status, 200, "{body}");
    let body = json!({
        "collection_ids": ["big"],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": 50, "n_init": 200, "random_state": 1},
            "feature_vector": {"vector_name": REF_VECTOR}
        }
    });
    let mut resp = reqwest::Client::new()
        .post(server.url("/v1/clusters/execute"))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .header("Accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .expect("http request");
    assert_eq!(resp.status().as_u16(), 200);
    let mut seen = String::new();
    while !seen.contains("\"stage\":\"kmeans") {
        let chunk = resp
            .chunk()
            .await
            .expect("chunk")
            .expect("events until kmeans");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let runs = loop {
        let page = server.runs_page().await;
        let runs = page["runs"].as_array().cloned().unwrap_or_default();
        if runs.iter().any(|r| r["status"] != "running") {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never stopped: {runs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "cancelled", "{:?}", runs[0]);
}
