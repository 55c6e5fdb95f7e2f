//! Cluster labelling through the service: the offline labeller finds each cluster's
//! planted words; an OpenAI-compatible provider on loopback names the clusters, and when
//! it fails the run still succeeds with offline labels and the failures listed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use crate::harness::*;

/// Three well-separated groups of documents; each group's texts share planted words
/// among common filler.
const PLANTED: [[&str; 3]; 3] = [
    ["battery", "charger", "voltage"],
    ["recipe", "oven", "flour"],
    ["goalkeeper", "penalty", "stadium"],
];

async fn server_with_planted_texts(opts: Options) -> TestServer {
    let server = TestServer::start_with(opts);
    let filler = ["the", "product", "review", "great", "really", "item"];
    let docs: Vec<Value> = (0..90)
        .map(|i| {
            let g = i % 3;
            let mut v = vec![0.0f32; 4];
            v[g] = 10.0;
            v[3] = (i as f32) * 0.01;
            let words = &PLANTED[g];
            let text = format!(
                "{} {} {} {} and {} {}",
                filler[i % filler.len()],
                words[i % 3],
                filler[(i + 1) % filler.len()],
                words[(i + 1) % 3],
                words[(i + 2) % 3],
                filler[(i + 2) % filler.len()],
            );
            json!({"document_id": format!("d{i:03}"), "embedding": v, "text": text})
        })
        .collect();
    upload_json_documents(&server, "texts", docs).await;
    server
}

fn labelled_request(llm_labeling: Value) -> Value {
    json!({
        "collection_ids": ["texts"],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": 3, "random_state": 0},
            "feature_vector": {"vector_name": "embedding"},
            "normalize_features": false,
            "llm_labeling": llm_labeling
        },
        "store_results": true
    })
}

#[tokio::test]
async fn offline_labels_name_each_cluster_by_its_planted_words_everywhere_they_are_kept() {
    let server = server_with_planted_texts(Options::default()).await;
    let (status, body) = server
        .execute_rest(KEY_A, &labelled_request(json!({"enabled": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    let centroids = body["centroids"].as_array().expect("centroids");
    assert_eq!(centroids.len(), 3);
    let mut found = Vec::new();
    for c in centroids {
        let keywords: Vec<&str> = c["keywords"]
            .as_array()
            .expect("keywords")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let group = PLANTED
            .iter()
            .position(|w| w.contains(&keywords[0]))
            .unwrap_or_else(|| panic!("top keyword {keywords:?} is not planted"));
        for w in PLANTED[group] {
            assert!(
                keywords[..3].contains(&w),
                "{w} in the top 3 of {keywords:?}"
            );
            assert!(c["label"].as_str().expect("label").contains(w));
        }
        assert!(c["summary"].as_str().is_some_and(|s| !s.is_empty()));
        found.push(group);
    }
    found.sort_unstable();
    assert_eq!(found, [0, 1, 2], "each cluster has its own words");
    assert_eq!(body["llm_labeling_errors"], json!([]));

    // clusters.parquet and the run record keep them.
    let run_id = body["run_id"].as_str().expect("run_id");
    let batches = server.artifact(run_id, "clusters.parquet").await;
    let labels: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let col = b
                .column_by_name("label")
                .expect("label column")
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("utf8")
                .clone();
            col.iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let response_labels: Vec<&str> = centroids
        .iter()
        .filter_map(|c| c["label"].as_str())
        .collect();
    assert_eq!(labels, response_labels);
    let run = server.run_view(run_id).await;
    assert_eq!(run["request"]["llm_labeling"]["provider"], "offline");
    assert_eq!(
        run["result"]["centroids"][0]["label"],
        centroids[0]["label"]
    );
}

#[tokio::test]
async fn labelling_errors_name_the_field() {
    let server = server_with_planted_texts(Options::default()).await;
    for (labeling, field, status) in [
        (
            json!({"enabled": true, "provider": "openai"}),
            "config.llm_labeling.provider",
            422,
        ),
        (
            json!({"enabled": true, "provider": "oracle"}),
            "config.llm_labeling.provider",
            422,
        ),
        (
            json!({"enabled": true, "labeling_inputs": ["body"]}),
            "config.llm_labeling.labeling_inputs[0]",
            404,
        ),
    ] {
        let (s, body) = server
            .execute_rest(KEY_A, &labelled_request(labeling.clone()))
            .await;
        assert_eq!(s, status, "{labeling}: {body}");
        assert_eq!(body["error"]["field"], field, "{labeling}: {body}");
    }
}

/// What the fake provider does with each request.
#[derive(Clone, Copy)]
enum Mode {
    Answer,
    Fail,
}

/// An OpenAI-compatible chat-completions server on loopback; returns its base URL and the
/// count of requests it received.
async fn fake_provider(mode: Mode) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                assert_eq!(body["model"], "test-model");
                match mode {
                    Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))),
                    Mode::Answer => {
                        let content = json!({
                            "label": format!("provider label {n}"),
                            "keywords": ["alpha", "beta"],
                            "summary": "a summary from the provider"
                        })
                        .to_string();
                        (
                            StatusCode::OK,
                            Json(json!({"choices": [{"message": {"role": "assistant", "content": content}}]})),
                        )
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), hits)
}

fn with_provider(base_url: &str) -> Options {
    Options {
        extra_args: vec![
            "--llm-base-url".into(),
            base_url.into(),
            "--llm-model".into(),
            "test-model".into(),
            "--llm-max-retries".into(),
            "1".into(),
            "--llm-timeout-s".into(),
            "5".into(),
        ],
        ..Options::default()
    }
}

#[tokio::test]
async fn an_openai_compatible_provider_names_the_clusters() {
    let (url, hits) = fake_provider(Mode::Answer).await;
    let server = server_with_planted_texts(with_provider(&url)).await;
    let (status, body) = server
        .execute_rest(KEY_A, &labelled_request(json!({"enabled": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "one request per cluster");
    for c in body["centroids"].as_array().expect("centroids") {
        assert!(
            c["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("provider label")),
            "{c}"
        );
        assert_eq!(c["keywords"], json!(["alpha", "beta"]));
        assert_eq!(c["summary"], "a summary from the provider");
    }
    assert_eq!(body["llm_labeling_errors"], json!([]));
}

#[tokio::test]
async fn a_failing_provider_leaves_offline_labels_and_lists_the_failures() {
    let (url, hits) = fake_provider(Mode::Fail).await;
    let server = server_with_planted_texts(with_provider(&url)).await;
    let mut client = server.cluster_client().await;
    let resp = client
        .execute(authed(
            to_proto(&labelled_request(json!({"enabled": true}))),
            KEY_A,
            NS,
        ))
        .await
        .expect("the run succeeds without its provider")
        .into_inner();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        6,
        "each cluster tried twice (1 retry)"
    );
    assert_eq!(resp.llm_labeling_errors.len(), 3);
    for c in &resp.centroids {
        let label = c.label.as_deref().expect("an offline label");
        assert!(
            PLANTED.iter().flatten().any(|w| label.contains(w)),
            "offline label {label:?}"
        );
        assert!(
            resp.llm_labeling_errors
                .iter()
                .any(|e| e.cluster_id == c.cluster_id && e.message.contains("500")),
            "{:?}",
            resp.llm_labeling_errors
        );
    }
}
