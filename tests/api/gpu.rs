//! The GPU engine end to end: `--device gpu` runs k-means and the silhouette through the
//! WGSL kernels (on lavapipe in CI) and answers like the CPU engine, placing the documents
//! beyond a sample included.

use serde_json::{Value, json};

use crate::harness::*;

/// The reference collections on a `--device gpu` server and on a `--device cpu` one.
async fn servers_on_both_devices() -> (TestServer, TestServer) {
    let gpu = server_with_reference_collections_using(Options {
        keys: true,
        extra_args: vec!["--device".into(), "gpu".into()],
    })
    .await;
    let cpu = server_with_reference_collections_using(Options {
        keys: true,
        extra_args: vec!["--device".into(), "cpu".into()],
    })
    .await;
    (gpu, cpu)
}

#[tokio::test]
async fn gpu_device_answers_like_the_cpu_engine() {
    // Skips (visibly) without an adapter; fails instead under CLUSTERD_REQUIRE_GPU=1.
    if clusterd::gpu::test_context().is_none() {
        return;
    }
    let (gpu, cpu) = servers_on_both_devices().await;
    let mut body = reference_body();
    body["include_members"] = json!(true);
    body["config"]["algorithm_params"]["random_state"] = json!(3);
    let (status, on_gpu) = gpu.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{on_gpu}");
    let (status, on_cpu) = cpu.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{on_cpu}");

    assert_eq!(on_gpu["device"]["type"], "gpu", "{}", on_gpu["device"]);
    assert_eq!(on_cpu["device"]["type"], "cpu");
    assert_eq!(
        labels_by_document(&on_gpu),
        labels_by_document(&on_cpu),
        "same labels on both engines"
    );
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().expect("a"), b.as_f64().expect("b"));
        (a - b).abs() <= 1e-4 * b.abs().max(1.0)
    };
    for m in [
        "silhouette_score",
        "davies_bouldin_score",
        "calinski_harabasz_score",
    ] {
        assert!(
            close(&on_gpu["metrics"][m], &on_cpu["metrics"][m]),
            "{m}: {} vs {}",
            on_gpu["metrics"][m],
            on_cpu["metrics"][m]
        );
    }
    // The run record says which device ran.
    let run_id = on_gpu["run_id"].as_str().expect("run_id");
    let resp = reqwest::Client::new()
        .get(gpu.url(&format!("/v1/clusters/runs/{run_id}")))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .send()
        .await
        .expect("get run");
    let run: Value = resp.json().await.expect("run");
    assert_eq!(run["result"]["device"]["type"], "gpu");
}

#[tokio::test]
async fn density_algorithms_on_the_gpu_device_answer_like_the_cpu_engine() {
    if clusterd::gpu::test_context().is_none() {
        return;
    }
    let (gpu, cpu) = servers_on_both_devices().await;
    // HDBSCAN's core distances come from the kNN kernel, DBSCAN's core points from the
    // radius-count kernel; both are proven exact, so the labels must not differ at all.
    for (algorithm, params) in [
        ("hdbscan", json!({"min_cluster_size": 10})),
        ("dbscan", json!({"eps": 0.5, "min_samples": 8})),
        (
            "dbscan",
            json!({"eps": 0.3, "min_samples": 5, "metric": "cosine"}),
        ),
    ] {
        let mut body = reference_body();
        body["include_members"] = json!(true);
        body["config"]["algorithm"] = json!(algorithm);
        body["config"]["algorithm_params"] = params.clone();
        let (status, on_gpu) = gpu.execute_rest(KEY_A, &body).await;
        assert_eq!(status, 200, "{on_gpu}");
        let (status, on_cpu) = cpu.execute_rest(KEY_A, &body).await;
        assert_eq!(status, 200, "{on_cpu}");
        assert_eq!(on_gpu["device"]["type"], "gpu");
        assert!(
            on_cpu["num_clusters"].as_u64().is_some_and(|c| c >= 2),
            "{algorithm} {params}: a real clustering, not all noise: {}",
            on_cpu["num_clusters"]
        );
        assert_eq!(
            labels_by_document(&on_gpu),
            labels_by_document(&on_cpu),
            "{algorithm} {params}: same labels on both engines"
        );
    }
}

#[tokio::test]
async fn documents_beyond_the_sample_are_placed_on_the_gpu_as_on_the_cpu() {
    if clusterd::gpu::test_context().is_none() {
        return;
    }
    let (gpu, cpu) = servers_on_both_devices().await;
    let mut body = reference_body();
    body["sample_size"] = json!(200);
    body["compute_metrics"] = json!(false);
    body["config"]["algorithm_params"]["random_state"] = json!(5);
    let mut members = Vec::new();
    for server in [&gpu, &cpu] {
        let (status, out) = server.execute_rest(KEY_A, &body).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["placed_documents"], 400, "{out}");
        let run_id = out["run_id"].as_str().expect("run_id");
        let batches = server.artifact(run_id, "members.parquet").await;
        let mut rows: Vec<(String, String, bool)> = Vec::new();
        for b in &batches {
            let col = |name: &str| {
                b.column_by_name(name)
                    .expect("column")
                    .as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .expect("utf8")
                    .clone()
            };
            let (docs, clusters) = (col("document_id"), col("cluster_id"));
            let sampled = b
                .column_by_name("sampled")
                .expect("sampled")
                .as_any()
                .downcast_ref::<arrow_array::BooleanArray>()
                .expect("bool")
                .clone();
            for i in 0..b.num_rows() {
                rows.push((
                    docs.value(i).to_owned(),
                    clusters.value(i).to_owned(),
                    sampled.value(i),
                ));
            }
        }
        rows.sort();
        assert_eq!(rows.len(), 600);
        members.push(rows);
    }
    assert_eq!(
        members[0], members[1],
        "the GPU places every document as the CPU does"
    );
}
