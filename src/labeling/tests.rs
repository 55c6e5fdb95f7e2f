//! The OpenAI provider against a local OpenAI-compatible server (axum on 127.0.0.1:0).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::*;

const TOPICS: [&str; 3] = ["battery", "pasta", "goalkeeper"];
const KEY: &str = "sk-test-0123456789";

#[derive(Clone, Copy)]
enum Behaviour {
    /// Labels each cluster by the topic word found in its prompt.
    Answer,
    /// Answers only after this long.
    Sleep(Duration),
    Status(u16),
    /// The first request gets 429, the rest are answered.
    TooManyOnce,
    /// A completion whose content is not JSON.
    Malformed,
    /// 400 whose body echoes the Authorization header.
    EchoAuth,
}

struct Server {
    behaviour: Behaviour,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
    authorizations: Mutex<Vec<Option<String>>>,
}

fn completion(content: &str) -> String {
    json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
        .to_string()
}

fn topic_answer(body: &Value) -> String {
    let prompt = body
        .pointer("/messages/1/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let topic = TOPICS
        .iter()
        .find(|t| prompt.contains(*t))
        .copied()
        .unwrap_or("unknown");
    let answer = json!({
        "label": format!("All about {topic}"),
        "keywords": [topic, "llm"],
        "summary": format!("Texts on {topic}."),
    });
    completion(&answer.to_string())
}

async fn chat(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, String) {
    let n = server.requests.fetch_add(1, Ordering::SeqCst);
    let now = server.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    server.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    server
        .authorizations
        .lock()
        .unwrap()
        .push(authorization.clone());
    server.bodies.lock().unwrap().push(body.clone());
    let answer = match server.behaviour {
        Behaviour::Answer => (StatusCode::OK, topic_answer(&body)),
        Behaviour::Sleep(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, topic_answer(&body))
        }
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            "{\"error\": \"boom\"}".to_owned(),
        ),
        Behaviour::TooManyOnce if n == 0 => (StatusCode::TOO_MANY_REQUESTS, "slow down".to_owned()),
        Behaviour::TooManyOnce => (StatusCode::OK, topic_answer(&body)),
        Behaviour::Malformed => (StatusCode::OK, completion("Sure! The label is: chargers")),
        Behaviour::EchoAuth => (
            StatusCode::BAD_REQUEST,
            format!("bad key {}", authorization.unwrap_or_default()),
        ),
    };
    server.in_flight.fetch_sub(1, Ordering::SeqCst);
    answer
}

/// Starts the server; returns its state and the `base_url` to configure.
async fn serve(behaviour: Behaviour) -> (Arc<Server>, String) {
    let server = Arc::new(Server {
        behaviour,
        requests: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        bodies: Mutex::new(Vec::new()),
        authorizations: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, format!("http://{address}/v1"))
}

fn config(base_url: String) -> OpenAiConfig {
    OpenAiConfig {
        base_url,
        api_key: Some(KEY.to_owned()),
        default_model: "test-model".to_owned(),
        timeout: Duration::from_secs(5),
        max_retries: 2,
        backoff: Duration::from_millis(1),
        max_concurrency: 4,
    }
}

/// One cluster per topic word, each text mixing its topic with shared filler.
fn corpus(n_clusters: usize) -> Corpus {
    let mut builder = CorpusBuilder::new(n_clusters);
    for c in 0..n_clusters {
        let topic = TOPICS[c % TOPICS.len()];
        for i in 0..5 {
            builder.add(
                c,
                &format!("{topic} review number {i} of the {topic} product"),
            );
        }
        builder.set_representatives(c, vec![format!("Representative {c}: my {topic} story")]);
    }
    builder.finish()
}

#[tokio::test]
async fn server_labels_replace_offline_ones_and_request_carries_model_and_texts() {
    let (server, url) = serve(Behaviour::Answer).await;
    let corpus = corpus(3);
    let labels = label(
        &corpus,
        &LabelingOptions::default(),
        &Provider::OpenAi(config(url)),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(labels.errors, []);
    for (c, topic) in TOPICS.iter().enumerate() {
        assert_eq!(
            labels.labels[c],
            ClusterLabel {
                label: format!("All about {topic}"),
                keywords: vec![topic.to_string(), "llm".into()],
                summary: Some(format!("Texts on {topic}.")),
            }
        );
    }
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3);
    for body in bodies.iter() {
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["temperature"], 0);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_eq!(body["messages"][0]["role"], "system");
        let prompt = body["messages"][1]["content"].as_str().unwrap();
        let c = (0..3)
            .find(|c| prompt.contains(&format!("Representative {c}:")))
            .unwrap();
        assert!(
            prompt.contains(&format!("my {} story", TOPICS[c])),
            "{prompt}"
        );
        assert!(
            prompt.contains(TOPICS[c]),
            "offline keywords in the prompt: {prompt}"
        );
    }
    let bearer = format!("Bearer {KEY}");
    assert!(
        server
            .authorizations
            .lock()
            .unwrap()
            .iter()
            .all(|a| a.as_deref() == Some(bearer.as_str()))
    );
}

#[tokio::test]
async fn requested_model_overrides_default_and_no_key_sends_no_authorization() {
    let (server, url) = serve(Behaviour::Answer).await;
    let mut config = config(url);
    config.api_key = None;
    let options = LabelingOptions {
        include_keywords: false,
        include_summary: false,
        model_name: Some("other-model".into()),
    };
    let labels = label(
        &corpus(1),
        &options,
        &Provider::OpenAi(config),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(labels.errors, []);
    assert_eq!(
        labels.labels[0],
        ClusterLabel {
            label: "All about battery".into(),
            keywords: vec![],
            summary: None
        }
    );
    assert_eq!(server.bodies.lock().unwrap()[0]["model"], "other-model");
    assert_eq!(*server.authorizations.lock().unwrap(), [None]);
}

#[tokio::test]
async fn server_error_is_retried_max_retries_times_then_offline_label_and_error() {
    let (server, url) = serve(Behaviour::Status(500)).await;
    let corpus = corpus(1);
    let options = LabelingOptions::default();
    let labels = label(
        &corpus,
        &options,
        &Provider::OpenAi(config(url)),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    assert_eq!(labels.labels, offline_labels(&corpus, &options));
    assert_eq!(
        labels.errors,
        [LabelingError {
            cluster: 0,
            message: "HTTP 500 after 3 attempts".into()
        }]
    );
}

#[tokio::test]
async fn client_error_is_not_retried_and_the_key_never_appears_in_the_error() {
    let (server, url) = serve(Behaviour::EchoAuth).await;
    let labels = label(
        &corpus(1),
        &LabelingOptions::default(),
        &Provider::OpenAi(config(url)),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(labels.errors.len(), 1);
    let message = &labels.errors[0].message;
    assert!(
        message.starts_with("HTTP 400: bad key Bearer <redacted>"),
        "{message}"
    );
    assert!(!message.contains(KEY));
}

#[tokio::test]
async fn slow_server_times_out_to_offline_label_and_error_naming_the_timeout() {
    let (server, url) = serve(Behaviour::Sleep(Duration::from_secs(3))).await;
    let mut config = config(url);
    config.timeout = Duration::from_millis(200);
    config.max_retries = 1;
    let corpus = corpus(1);
    let options = LabelingOptions::default();
    let started = Instant::now();
    let labels = label(
        &corpus,
        &options,
        &Provider::OpenAi(config),
        &CancellationToken::new(),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(labels.labels, offline_labels(&corpus, &options));
    assert_eq!(
        labels.errors,
        [LabelingError {
            cluster: 0,
            message: "timed out after 200ms (2 attempts)".into()
        }]
    );
}

#[tokio::test]
async fn malformed_answer_keeps_offline_label_with_an_error() {
    let (server, url) = serve(Behaviour::Malformed).await;
    let corpus = corpus(2);
    let options = LabelingOptions::default();
    let labels = label(
        &corpus,
        &options,
        &Provider::OpenAi(config(url)),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        2,
        "a bad answer is not retried"
    );
    assert_eq!(labels.labels, offline_labels(&corpus, &options));
    assert_eq!(
        labels.errors.iter().map(|e| e.cluster).collect::<Vec<_>>(),
        [0, 1]
    );
    for error in &labels.errors {
        assert!(
            error
                .message
                .starts_with("answer was not the JSON asked for: "),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("Sure! The label is"),
            "{}",
            error.message
        );
    }
}

#[tokio::test]
async fn too_many_requests_is_retried_and_then_succeeds() {
    let (server, url) = serve(Behaviour::TooManyOnce).await;
    let labels = label(
        &corpus(1),
        &LabelingOptions::default(),
        &Provider::OpenAi(config(url)),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(labels.errors, []);
    assert_eq!(labels.labels[0].label, "All about battery");
}

#[tokio::test]
async fn no_more_than_max_concurrency_clusters_are_in_flight() {
    let (server, url) = serve(Behaviour::Sleep(Duration::from_millis(100))).await;
    let mut config = config(url);
    config.max_concurrency = 3;
    let labels = label(
        &corpus(9),
        &LabelingOptions::default(),
        &Provider::OpenAi(config),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(labels.errors, []);
    assert_eq!(server.requests.load(Ordering::SeqCst), 9);
    let max = server.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn unreachable_server_is_retried_then_reported_as_a_failed_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut config = config(format!("http://{address}/v1"));
    config.max_retries = 1;
    let labels = label(
        &corpus(1),
        &LabelingOptions::default(),
        &Provider::OpenAi(config),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(labels.errors.len(), 1);
    assert!(
        labels.errors[0]
            .message
            .starts_with("request failed after 2 attempts"),
        "{}",
        labels.errors[0].message
    );
}

#[tokio::test]
async fn malformed_base_url_is_reported_per_cluster_without_retries() {
    let started = Instant::now();
    let mut config = config("not a url".into());
    config.backoff = Duration::from_secs(5);
    let labels = label(
        &corpus(2),
        &LabelingOptions::default(),
        &Provider::OpenAi(config),
        &CancellationToken::new(),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(labels.errors.len(), 2);
    for error in &labels.errors {
        assert!(
            error.message.starts_with("request failed: "),
            "{}",
            error.message
        );
    }
}

#[tokio::test]
async fn cancelled_before_start_sends_nothing_and_marks_every_cluster_cancelled() {
    let (server, url) = serve(Behaviour::Answer).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let corpus = corpus(3);
    let options = LabelingOptions::default();
    let labels = label(&corpus, &options, &Provider::OpenAi(config(url)), &cancel).await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    assert_eq!(labels.labels, offline_labels(&corpus, &options));
    assert_eq!(
        labels.errors,
        (0..3)
            .map(|cluster| LabelingError {
                cluster,
                message: "cancelled".into()
            })
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn cancelling_mid_run_stops_waiting_and_keeps_offline_labels() {
    let (_server, url) = serve(Behaviour::Sleep(Duration::from_secs(10))).await;
    let mut config = config(url);
    config.timeout = Duration::from_secs(30);
    config.max_concurrency = 2;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        trigger.cancel();
    });
    let corpus = corpus(5);
    let started = Instant::now();
    let labels = label(
        &corpus,
        &LabelingOptions::default(),
        &Provider::OpenAi(config),
        &cancel,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        labels.labels,
        offline_labels(&corpus, &LabelingOptions::default())
    );
    assert_eq!(labels.errors.len(), 5);
    assert!(labels.errors.iter().all(|e| e.message == "cancelled"));
}

#[tokio::test]
async fn offline_provider_gives_offline_labels_without_errors() {
    let corpus = corpus(3);
    let options = LabelingOptions::default();
    let labels = label(
        &corpus,
        &options,
        &Provider::Offline,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(labels.labels, offline_labels(&corpus, &options));
    assert_eq!(labels.labels[0].keywords[0], "battery");
    assert!(labels.errors.is_empty());
}

#[tokio::test]
async fn clusters_without_text_are_not_sent_to_the_provider() {
    let (server, url) = serve(Behaviour::Answer).await;
    let mut builder = CorpusBuilder::new(2);
    builder.add(1, "pasta with tomato");
    let labels = label(
        &builder.finish(),
        &LabelingOptions::default(),
        &Provider::OpenAi(config(url)),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(labels.labels[0].label, NO_TEXT_LABEL);
    assert_eq!(labels.labels[1].label, "All about pasta");
    assert!(labels.errors.is_empty());
}

#[test]
fn labelling_future_can_be_spawned_on_a_multi_thread_runtime() {
    fn assert_send<T: Send>(_: &T) {}
    let corpus = corpus(1);
    let options = LabelingOptions::default();
    let provider = Provider::OpenAi(config("http://127.0.0.1:1/v1".into()));
    let cancel = CancellationToken::new();
    assert_send(&label(&corpus, &options, &provider, &cancel));
}

#[test]
fn debug_of_openai_config_hides_the_key() {
    let config = config("http://127.0.0.1:1/v1".into());
    let debug = format!("{config:?} {:?}", Provider::OpenAi(config.clone()));
    assert!(!debug.contains(KEY), "{debug}");
    assert!(
        debug.contains("<redacted>") && debug.contains("test-model"),
        "{debug}"
    );
}
