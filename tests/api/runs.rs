//! Stored runs: the lifecycle, the runs API on both transports, artifacts readable as
//! Parquet, isolation, and interrupted runs.

use arrow_array::{Array, RecordBatch, StringArray};
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;
use clusterd::api::grpc::pb;

async fn get_json(server: &TestServer, key: &str, path: &str) -> (u16, Value) {
    server
        .send(reqwest::Method::GET, path, Some(key), NS, None)
        .await
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(column).expect("column");
            let s = col.as_any().downcast_ref::<StringArray>().expect("utf8");
            (0..s.len())
                .map(|i| s.value(i).to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn completed_run_is_stored_with_readable_artifacts() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["config"]["description"] = json!("nightly product clusters");
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();

    // The run over REST: completed, with the full result and the resolved request.
    let (status, run) = get_json(&server, KEY_A, &format!("/v1/clusters/runs/{run_id}")).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["description"], "nightly product clusters");
    assert_eq!(run["result"]["num_clusters"], 5);
    assert_eq!(run["result"]["metrics"], out["metrics"]);
    assert_eq!(run["request"]["algorithm_params"]["n_clusters"], 5);
    assert_eq!(run["request"]["algorithm_params"]["init"], "k-means++");
    assert_eq!(run["request"]["algorithm_params"]["n_init"], 1);
    assert_eq!(run["request"]["algorithm_params"]["tol"], 0.0001);
    assert!(run["version"].is_string());
    assert!(run["heartbeat_at"].is_string() && run["instance_id"].is_string());

    // clusters.parquet: one row per cluster, in id order, with centroids.
    let clusters = server.artifact(&run_id, "clusters.parquet").await;
    assert_eq!(
        strings(&clusters, "cluster_id"),
        [
            "cluster_001",
            "cluster_002",
            "cluster_003",
            "cluster_004",
            "cluster_005"
        ]
    );
    let schema = clusters[0].schema();
    for column in [
        "size",
        "centroid",
        "keywords",
        "label",
        "summary",
        "parent_cluster_id",
        "level",
    ] {
        assert!(
            schema.field_with_name(column).is_ok(),
            "clusters.parquet has {column}"
        );
    }

    // members.parquet: every document once, sorted by cluster_id.
    let (status, bytes) = server
        .get_bytes(
            KEY_A,
            &format!("/v1/clusters/runs/{run_id}/artifacts/members.parquet"),
        )
        .await;
    assert_eq!(status, 200);
    let members = read_parquet(bytes.clone());
    let ids = strings(&members, "cluster_id");
    assert_eq!(ids.len(), 600);
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "sorted by cluster_id");
    let mut docs = strings(&members, "document_id");
    docs.sort();
    docs.dedup();
    assert_eq!(docs.len(), 600);
    assert!(
        members[0]
            .schema()
            .field_with_name("distance_to_centroid")
            .is_ok()
    );

    // The same bytes over gRPC, in chunks.
    let mut stream = server
        .cluster_client()
        .await
        .get_artifact(authed(
            pb::GetArtifactRequest {
                run_id: run_id.clone(),
                name: "members.parquet".into(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("get_artifact")
        .into_inner();
    let mut grpc_bytes = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        grpc_bytes.extend_from_slice(&chunk.data);
    }
    assert_eq!(grpc_bytes, bytes.to_vec());

    // And the run over gRPC.
    let run = server
        .cluster_client()
        .await
        .get_run(authed(
            pb::GetRunRequest {
                run_id: run_id.clone(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("get_run")
        .into_inner();
    assert_eq!(run.status, "completed");
    assert_eq!(run.result.map(|r| r.num_clusters), Some(5));
    assert!(run.artifacts.iter().any(|a| a.ends_with("members.parquet")));
}

#[tokio::test]
async fn store_results_false_persists_nothing() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["store_results"] = json!(false);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["parquet_path"], Value::Null);
    assert_eq!(out["members_key"], Value::Null);
    assert!(
        out["metrics"]["silhouette_score"].is_number(),
        "metrics still computed"
    );
    let run_id = out["run_id"].as_str().expect("run_id");
    let (status, _) = get_json(&server, KEY_A, &format!("/v1/clusters/runs/{run_id}")).await;
    assert_eq!(status, 404);
    let written = server
        .list_keys(&format!("{ORG_A}/{NS}/engine_cluster_build"))
        .await;
    assert!(written.is_empty(), "nothing written for runs: {written:?}");
}

#[tokio::test]
async fn compute_metrics_false_leaves_metrics_out() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["compute_metrics"] = json!(false);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    assert!(out.get("metrics").is_none(), "{out}");
}

#[tokio::test]
async fn save_artifacts_adds_sample_parquet_with_coordinates() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["save_artifacts"] = json!(true);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id");
    let sample = server.artifact(run_id, "sample.parquet").await;
    let schema = sample[0].schema();
    for column in [
        "document_id",
        "collection_id",
        "cluster_id",
        "x",
        "y",
        "vector",
    ] {
        assert!(
            schema.field_with_name(column).is_ok(),
            "sample.parquet has {column}"
        );
    }
    assert_eq!(sample.iter().map(RecordBatch::num_rows).sum::<usize>(), 600);
    let (_, bytes) = server
        .get_bytes(
            KEY_A,
            &format!("/v1/clusters/runs/{run_id}/artifacts/members.parquet"),
        )
        .await;
    let members = read_parquet(bytes);
    assert!(members[0].schema().field_with_name("coordinates").is_ok());

    // Without store_results there is nowhere to save them.
    body["store_results"] = json!(false);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 400, "{out}");
    assert_eq!(out["error"]["field"], "save_artifacts");
}

#[tokio::test]
async fn runs_list_newest_first_pages_and_filters_by_status() {
    let server = server_with_reference_collections().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, out) = server.execute_rest(KEY_A, &reference_body()).await;
        ids.push(out["run_id"].as_str().expect("run_id").to_owned());
    }
    // A run that fails after it started (its collection vanished): recorded as failed.
    let mut missing = reference_body();
    missing["collection_ids"] = json!(["col_gone"]);
    let (status, failed) = server.execute_rest(KEY_A, &missing).await;
    assert_eq!(status, 404, "{failed}");

    let (status, page) = get_json(&server, KEY_A, "/v1/clusters/runs?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["run_id"].as_str())
        .collect();
    assert_eq!(listed.len(), 2);
    let token = page["next_page_token"].as_str().expect("more pages");
    let (_, rest) = get_json(
        &server,
        KEY_A,
        &format!("/v1/clusters/runs?limit=10&page_token={token}"),
    )
    .await;
    let mut all: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    all.extend(
        rest["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter_map(|r| r["run_id"].as_str().map(str::to_owned)),
    );
    assert_eq!(all.len(), 4);
    // Newest first: the failed run was last, the first completed run is oldest.
    assert_eq!(all[3], ids[0]);
    assert_eq!(
        &all[1..4],
        &[ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );

    let (_, failed_only) = get_json(&server, KEY_A, "/v1/clusters/runs?status=failed").await;
    let failed_runs = failed_only["runs"].as_array().expect("runs");
    assert_eq!(failed_runs.len(), 1, "{failed_only}");
    assert_eq!(failed_runs[0]["error"]["code"], "not_found");
    assert_eq!(failed_runs[0]["collection_ids"], json!(["col_gone"]));

    let (status, bad) = get_json(&server, KEY_A, "/v1/clusters/runs?status=done").await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (400, Some("status"))
    );

    let listed = server
        .cluster_client()
        .await
        .list_runs(authed(
            pb::ListRunsRequest {
                limit: Some(10),
                page_token: None,
                status: Some("completed".into()),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("list_runs")
        .into_inner();
    let grpc_ids: Vec<String> = listed.runs.into_iter().map(|r| r.run_id).collect();
    assert_eq!(grpc_ids, [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
}

#[tokio::test]
async fn runs_are_isolated_by_organisation() {
    let server = server_with_reference_collections().await;
    let (_, out) = server.execute_rest(KEY_A, &reference_body()).await;
    let run_id = out["run_id"].as_str().expect("run_id");
    let (status, _) = get_json(&server, KEY_B, &format!("/v1/clusters/runs/{run_id}")).await;
    assert_eq!(status, 404);
    let (status, _) = server
        .get_bytes(
            KEY_B,
            &format!("/v1/clusters/runs/{run_id}/artifacts/clusters.parquet"),
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = get_json(&server, KEY_B, "/v1/clusters/runs").await;
    assert_eq!(list["runs"], json!([]));
    let err = server
        .cluster_client()
        .await
        .get_run(authed(
            pb::GetRunRequest {
                run_id: run_id.into(),
            },
            KEY_B,
            NS,
        ))
        .await
        .expect_err("other org");
    assert_eq!(err.code(), Code::NotFound);
    let (status, _) = get_json(&server, KEY_A, "/v1/clusters/runs/run_..%2F..").await;
    assert_eq!(status, 400);
    let (status, body) = get_json(
        &server,
        KEY_A,
        &format!("/v1/clusters/runs/{run_id}/artifacts/secrets.txt"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_run_left_running_by_a_dead_server_is_failed_at_start_up() {
    // A status.json as a crashed server leaves it: running, heartbeat long ago.
    let dir = temp_dir("stale");
    let status = json!({
        "run_id": "run_stale0000000000000001", "status": "running", "algorithm": "kmeans",
        "collection_ids": ["col_products_v1"], "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "heartbeat_at": "2026-01-01T00:00:00Z",
        "instance_id": "dead", "progress": {"stage": "kmeans", "fraction": 0.4}
    });
    TestStore::for_dir(&dir)
        .put_object(
            &format!("{ORG_A}/{NS}/engine_cluster_build/run_stale0000000000000001/status.json"),
            status.to_string(),
        )
        .await;
    let server = TestServer::start_in(&dir);
    let (code, run) = get_json(
        &server,
        KEY_A,
        "/v1/clusters/runs/run_stale0000000000000001",
    )
    .await;
    assert_eq!(code, 200, "{run}");
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("interrupted")),
        "{run}"
    );
}
