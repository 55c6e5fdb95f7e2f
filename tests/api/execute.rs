//! Clustering through both transports: the reference request, members, determinism.

use serde_json::{Value, json};

use crate::harness::*;
use clusterd::api::grpc::pb;

#[tokio::test]
async fn reference_request_works_verbatim_over_rest() {
    let server = server_with_reference_collections().await;
    let (status, body) = server.execute_rest(KEY_A, &reference_body()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["algorithm"], "kmeans");
    assert_eq!(body["num_clusters"], 5);
    // sample_size 10000 exceeds the 600 documents: all are clustered.
    assert_eq!(body["num_documents"], 600);
    let centroids = body["centroids"].as_array().expect("centroids");
    assert_eq!(centroids.len(), 5);
    let mut total = 0;
    let mut previous = u64::MAX;
    for (i, c) in centroids.iter().enumerate() {
        assert_eq!(c["cluster_id"], format!("cluster_{:03}", i + 1));
        assert_eq!(c["feature_dimensions"], 16);
        assert_eq!(c["vector_name"], REF_VECTOR);
        assert_eq!(c["centroid_vector"].as_array().map(Vec::len), Some(16));
        let n = c["num_members"].as_u64().expect("num_members");
        assert!(n <= previous, "clusters are ordered by size, largest first");
        previous = n;
        total += n;
    }
    assert_eq!(total, 600);
    let run_id = body["run_id"].as_str().expect("run_id");
    assert!(run_id.starts_with("run_"), "{run_id}");
    let created = body["created_at"].as_str().expect("created_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    assert!(created.ends_with('Z'));
    assert!(body["execution_time_ms"].is_u64());
    // Real metrics (compute_metrics defaults to true) and fetchable artifact keys.
    let m = &body["metrics"];
    let sil = m["silhouette_score"].as_f64().expect("silhouette");
    assert!((-1.0..=1.0).contains(&sil), "{m}");
    assert!(
        m["davies_bouldin_score"].as_f64().is_some_and(|v| v >= 0.0),
        "{m}"
    );
    assert!(
        m["calinski_harabasz_score"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert_eq!(m["num_noise"], 0);
    let prefix = format!("{ORG_A}/{NS}/engine_cluster_build/{run_id}");
    assert_eq!(body["parquet_path"], format!("{prefix}/clusters.parquet"));
    assert_eq!(body["members_key"], format!("{prefix}/members.parquet"));
    assert!(body.get("members").is_none());
    assert_eq!(body["seed"], 0);
    assert_eq!(body["device"]["type"], "cpu");
}

#[tokio::test]
async fn reference_request_works_over_grpc_and_streaming() {
    let server = server_with_reference_collections().await;
    let mut client = server.cluster_client().await;
    let resp = client
        .execute(authed(to_proto(&reference_body()), KEY_A, NS))
        .await
        .expect("execute")
        .into_inner();
    assert!(resp.success);
    assert_eq!((resp.num_clusters, resp.num_documents), (5, 600));
    assert_eq!(resp.centroids[0].cluster_id, "cluster_001");
    assert!(
        resp.parquet_path
            .as_deref()
            .is_some_and(|p| p.ends_with(&format!("{}/clusters.parquet", resp.run_id)))
    );
    assert!(
        resp.metrics
            .as_ref()
            .and_then(|m| m.silhouette_score)
            .is_some()
    );

    let mut stream = client
        .execute_stream(authed(to_proto(&reference_body()), KEY_A, NS))
        .await
        .expect("execute_stream")
        .into_inner();
    let mut progress = 0;
    let mut result = None;
    while let Some(event) = stream.message().await.expect("stream message") {
        match event.event {
            Some(pb::execute_event::Event::Progress(_)) => progress += 1,
            Some(pb::execute_event::Event::Result(r)) => result = Some(r),
            Some(pb::execute_event::Event::ArtifactChunk(_)) => panic!("artifacts not asked for"),
            None => panic!("empty event"),
        }
    }
    let result = result.expect("the stream ends with the result");
    assert_eq!(result.num_clusters, 5);
    assert!(progress >= 1, "progress events precede the result");
}

#[tokio::test]
async fn include_members_lists_every_document_sorted_by_cluster() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["include_members"] = json!(true);
    let (status, resp) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{resp}");
    let members = resp["members"].as_array().expect("members");
    assert_eq!(members.len(), 600);
    let clusters: Vec<&str> = members
        .iter()
        .map(|m| m["cluster_id"].as_str().unwrap_or_default())
        .collect();
    assert!(
        clusters.windows(2).all(|w| w[0] <= w[1]),
        "sorted by cluster_id"
    );
    for m in members {
        let col = m["collection_id"].as_str().unwrap_or_default();
        let id = m["document_id"].as_str().unwrap_or_default();
        let expected = if id.starts_with("c0_") {
            "col_products_v1"
        } else {
            "col_products_v2"
        };
        assert_eq!(col, expected);
        assert!(m["distance_to_centroid"].as_f64().is_some_and(|d| d >= 0.0));
    }
    // The same members over gRPC.
    let mut client = server.cluster_client().await;
    let grpc = client
        .execute(authed(to_proto(&body), KEY_A, NS))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(grpc.members.len(), 600);
}

#[tokio::test]
async fn same_request_twice_gives_same_labels() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["include_members"] = json!(true);
    body["config"]["algorithm_params"]["random_state"] = json!(42);
    let (_, first) = server.execute_rest(KEY_A, &body).await;
    let (_, second) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(first["seed"], 42);
    assert_eq!(labels_by_document(&first), labels_by_document(&second));
    assert_eq!(first["centroids"], second["centroids"]);
}

#[tokio::test]
async fn sample_size_is_a_seeded_reproducible_sample() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["sample_size"] = json!(150);
    body["include_members"] = json!(true);
    body["config"]["algorithm_params"]["random_state"] = json!(7);
    let (status, a) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["num_documents"], 150);
    let (_, b) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(labels_by_document(&a), labels_by_document(&b));
    body["config"]["algorithm_params"]["random_state"] = json!(8);
    let (_, c) = server.execute_rest(KEY_A, &body).await;
    let ids = |v: &Value| {
        labels_by_document(v)
            .into_iter()
            .map(|(d, _)| d)
            .collect::<Vec<_>>()
    };
    assert_ne!(ids(&a), ids(&c), "another seed draws another sample");
}

#[tokio::test]
async fn feature_address_and_integral_float_params_are_accepted() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["config"]["feature_vector"] =
        json!({"feature_address": "mixpeek://text_extractor@v1/text_extractor_v1_embedding"});
    body["config"]["algorithm_params"] =
        json!({"n_clusters": 3.0, "max_iter": 50.0, "init": "random", "n_init": 2});
    body["sample_size"] = json!(600.0);
    let (status, resp) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["num_clusters"], 3);
}

#[tokio::test]
async fn json_documents_upload_then_cluster_over_grpc_upsert() {
    let server = TestServer::start();
    let mut client = server.collection_client().await;
    // Two well separated groups in 4-d, sent as two stream messages.
    let doc = |i: usize| {
        let base = if i.is_multiple_of(2) { 10.0 } else { -10.0 };
        pb::Document {
            document_id: format!("g{i}"),
            vectors: [(
                "emb".to_owned(),
                pb::Vector {
                    values: vec![base + i as f32 * 0.01, base, 1.0, 0.5],
                },
            )]
            .into_iter()
            .collect(),
            attributes: None,
        }
    };
    let messages = vec![
        pb::UpsertDocumentsRequest {
            collection_id: "grpc_docs".into(),
            documents: (0..10).map(doc).collect(),
            parquet_chunk: Vec::new(),
        },
        pb::UpsertDocumentsRequest {
            collection_id: String::new(),
            documents: (10..20).map(doc).collect(),
            parquet_chunk: Vec::new(),
        },
    ];
    let resp = client
        .upsert_documents(authed(tokio_stream::iter(messages), KEY_A, NS))
        .await
        .expect("upsert")
        .into_inner();
    assert_eq!(resp.documents, 20);
    let body = json!({
        "collection_ids": ["grpc_docs"],
        "config": {"algorithm": "kmeans", "algorithm_params": {"n_clusters": 2},
                   "feature_vector": {"vector_name": "emb"}, "normalize_features": false},
        "include_members": true
    });
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let sizes: Vec<u64> = out["centroids"]
        .as_array()
        .expect("centroids")
        .iter()
        .map(|c| c["num_members"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(sizes, vec![10, 10]);
}
