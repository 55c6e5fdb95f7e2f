//! Observability: `GET /metrics` (Prometheus text format, no key) counts exactly the runs
//! that happened, by status, algorithm and device, with their latency, documents and the
//! bytes read from the store; the queue gauges follow a queued run; JSON logs carry the
//! run span's fields on every line of a run and end with how it ended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const SMALL: &str = "col_small";
const SLOW: &str = "col_slow";
const VECTOR: &str = "embedding";
const SMALL_DOCS: u64 = 300;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed strictly: every line is `# HELP`, `# TYPE` or a sample of a declared
/// family; anything else fails the test.
#[derive(Debug)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {key:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("dangling escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn parse_exposition(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            helps.insert(name.to_owned(), help.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "unknown type in {line:?}"
            );
            assert!(helps.contains_key(name), "TYPE before HELP: {line:?}");
            types.insert(name.to_owned(), kind.to_owned());
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                    (name, parse_labels(inner, line))
                }
                None => (series, BTreeMap::new()),
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(name);
            assert!(
                types.contains_key(family),
                "sample of an undeclared family: {line:?}"
            );
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
    }
    Exposition { types, samples }
}

impl Exposition {
    /// The sample with exactly these labels; 0 when absent (a family shows a label set
    /// only once it has been used).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map_or(0.0, |s| s.value)
    }

    /// Every sample of `name`, whatever its labels.
    fn total(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

/// `GET /metrics` without credentials: status, content type, parsed body.
async fn scrape(server: &TestServer) -> (u16, String, Exposition) {
    let resp = reqwest::Client::new()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("metrics body");
    (status, content_type, parse_exposition(&text))
}

async fn metrics(server: &TestServer) -> Exposition {
    let (status, _, m) = scrape(server).await;
    assert_eq!(status, 200);
    m
}

/// Scrape until `done` holds (panics after 60 s).
async fn metrics_when(server: &TestServer, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let start = Instant::now();
    loop {
        let m = metrics(server).await;
        if done(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "metrics never got there: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn upload(server: &TestServer, collection: &str, bytes: Vec<u8>) {
    let (status, body) = server.upload_parquet(KEY_A, collection, bytes).await;
    assert_eq!(status, 200, "{body}");
}

fn kmeans(collection: &str, n_clusters: u64, n_init: u64) -> Value {
    json!({
        "collection_ids": [collection],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": n_clusters, "n_init": n_init, "random_state": 3},
            "feature_vector": {"vector_name": VECTOR},
        },
        "store_results": true
    })
}

async fn post(server: &TestServer, path: &str, body: Option<&Value>) -> (u16, Value) {
    server
        .send(reqwest::Method::POST, path, Some(KEY_A), NS, body)
        .await
}

/// Long enough to still run when cancelled, on a loaded 2-core machine.
const FOREVER: u64 = 1_000_000;

/// A background k-means on the slow collection, returned once it holds a run slot (the
/// in-progress gauge says 1); it computes until cancelled.
async fn submit_a_run_that_computes_until_cancelled(server: &TestServer) -> String {
    let (status, out) = post(
        server,
        "/v1/clusters/submit",
        Some(&kmeans(SLOW, 40, FOREVER)),
    )
    .await;
    assert_eq!(status, 202, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();
    metrics_when(server, |m| m.value("clusterd_runs_in_progress", &[]) == 1.0).await;
    run_id
}

#[tokio::test]
async fn metrics_answer_without_a_key_in_the_prometheus_text_format_while_other_routes_need_one() {
    let server = TestServer::start_with(Options::default());
    let (status, content_type, m) = scrape(&server).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "{content_type}"
    );
    for (name, kind) in [
        ("clusterd_runs_queued", "gauge"),
        ("clusterd_runs_in_progress", "gauge"),
        ("clusterd_documents_clustered_total", "counter"),
        ("clusterd_documents_placed_total", "counter"),
        ("clusterd_store_read_bytes_total", "counter"),
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    assert_eq!(m.value("clusterd_runs_in_progress", &[]), 0.0);

    let (status, body) = server
        .send(reqwest::Method::GET, "/v1/collections", None, NS, None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = server
        .send(reqwest::Method::GET, "/no/such/path", None, NS, None)
        .await;
    assert_eq!(status, 404);

    // Requests are counted by route template and status, unknown paths as one route.
    let m = metrics(&server).await;
    let requests = |route: &str, status: &str| {
        m.value(
            "clusterd_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("/v1/collections", "401"), 1.0, "{m:?}");
    assert_eq!(requests("unmatched", "404"), 1.0, "{m:?}");
    assert_eq!(requests("/metrics", "200"), 1.0, "the first scrape: {m:?}");
}

#[tokio::test]
async fn run_counters_grow_by_exactly_the_runs_that_completed_failed_and_were_cancelled() {
    let server = TestServer::start();
    let small = example_parquet(SMALL_DOCS as usize, 8, 3, "d_", VECTOR);
    let small_len = small.len() as f64;
    upload(&server, SMALL, small).await;
    upload(&server, SLOW, example_parquet(20_000, 32, 20, "s_", VECTOR)).await;
    let before = metrics(&server).await;

    // Completed: REST (sampled, the rest placed), gRPC, and the REST event stream.
    let mut sampled = kmeans(SMALL, 3, 1);
    sampled["sample_size"] = json!(100);
    let (status, rest) = server.execute_rest(KEY_A, &sampled).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["num_documents"], 100);
    assert_eq!(rest["placed_documents"], SMALL_DOCS - 100);
    let device = rest["device"]["type"]
        .as_str()
        .expect("device kind")
        .to_owned();

    let mut client = server.cluster_client().await;
    let grpc = client
        .execute(authed(to_proto(&kmeans(SMALL, 3, 1)), KEY_A, NS))
        .await
        .expect("gRPC execute")
        .into_inner();
    assert_eq!(grpc.num_documents as u64, SMALL_DOCS);

    let sse = reqwest::Client::new()
        .post(server.url("/v1/clusters/execute"))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .header("Accept", "text/event-stream")
        .json(&kmeans(SMALL, 3, 1))
        .send()
        .await
        .expect("SSE execute");
    assert_eq!(sse.status().as_u16(), 200);
    let events = sse.text().await.expect("event stream");
    assert!(events.contains("event: result"), "{events}");

    // Refused before a run exists: not a run.
    let (status, body) = server.execute_rest(KEY_A, &kmeans(SMALL, 0, 1)).await;
    assert_eq!(status, 422, "{body}");

    // Failed: the run starts, then finds no such collection.
    let (status, body) = server
        .execute_rest(KEY_A, &kmeans("col_missing", 3, 1))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    // Cancelled: a background run stopped while it computes.
    let run_id = submit_a_run_that_computes_until_cancelled(&server).await;
    let (status, body) = post(&server, &format!("/v1/clusters/runs/{run_id}/cancel"), None).await;
    assert_eq!(status, 200, "{body}");

    let runs =
        |m: &Exposition| m.total("clusterd_runs_total") - before.total("clusterd_runs_total");
    let after = metrics_when(&server, |m| runs(m) >= 5.0).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(runs(&after), 5.0, "{after:?}");
    assert_eq!(
        delta(
            "clusterd_runs_total",
            &[("algorithm", "kmeans"), ("status", "completed")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "clusterd_runs_total",
            &[
                ("algorithm", "kmeans"),
                ("status", "failed"),
                ("error_code", "not_found")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "clusterd_runs_total",
            &[("algorithm", "kmeans"), ("status", "cancelled")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "clusterd_run_duration_seconds_count",
            &[("algorithm", "kmeans")]
        ),
        5.0
    );
    assert_eq!(
        delta(
            "clusterd_run_duration_seconds_bucket",
            &[("algorithm", "kmeans"), ("le", "+Inf")]
        ),
        5.0
    );
    assert!(
        delta(
            "clusterd_run_duration_seconds_sum",
            &[("algorithm", "kmeans")]
        ) > 0.0
    );
    assert_eq!(
        delta("clusterd_documents_clustered_total", &[]),
        (100 + 2 * SMALL_DOCS) as f64
    );
    assert_eq!(
        delta("clusterd_documents_placed_total", &[]),
        (SMALL_DOCS - 100) as f64
    );
    // Every one of the five took a run slot on the server's device.
    assert_eq!(
        delta("clusterd_device_runs_total", &[("device", device.as_str())]),
        5.0
    );
    assert_eq!(
        after.total("clusterd_device_runs_total") - before.total("clusterd_device_runs_total"),
        5.0
    );
    // Each completed run read the small file (its footer prefetch alone covers the file).
    let read = delta("clusterd_store_read_bytes_total", &[]);
    assert!(
        read >= small_len,
        "read {read} bytes, the file has {small_len}"
    );
    assert_eq!(after.value("clusterd_runs_in_progress", &[]), 0.0);
    assert_eq!(server.run_view(&run_id).await["status"], "cancelled");
}

#[tokio::test]
async fn queue_depth_shows_a_submitted_run_waiting_for_the_only_slot_then_zero_when_done() {
    let server = TestServer::start_with(Options {
        extra_args: vec!["--max-concurrent-runs".into(), "1".into()],
        ..Options::default()
    });
    upload(&server, SLOW, example_parquet(20_000, 32, 20, "s_", VECTOR)).await;
    upload(
        &server,
        SMALL,
        example_parquet(SMALL_DOCS as usize, 8, 3, "d_", VECTOR),
    )
    .await;
    let m = metrics(&server).await;
    assert_eq!(m.value("clusterd_runs_queued", &[]), 0.0);

    let holder = submit_a_run_that_computes_until_cancelled(&server).await;

    let (status, out) = post(&server, "/v1/clusters/submit", Some(&kmeans(SMALL, 3, 1))).await;
    assert_eq!(status, 202, "{out}");
    let waiting = out["run_id"].as_str().expect("run_id").to_owned();
    let m = metrics(&server).await;
    assert_eq!(m.value("clusterd_runs_queued", &[]), 1.0, "{m:?}");
    assert_eq!(m.value("clusterd_runs_in_progress", &[]), 1.0);

    let (status, body) = post(&server, &format!("/v1/clusters/runs/{holder}/cancel"), None).await;
    assert_eq!(status, 200, "{body}");
    let start = Instant::now();
    while server.run_view(&waiting).await["status"] == "running" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the queued run never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.run_view(&waiting).await["status"], "completed");
    let m = metrics_when(&server, |m| {
        m.value("clusterd_runs_in_progress", &[]) == 0.0
    })
    .await;
    assert_eq!(m.value("clusterd_runs_queued", &[]), 0.0);
}

#[tokio::test]
async fn json_log_lines_of_a_run_carry_its_span_fields_and_the_last_says_how_it_ended() {
    let server = TestServer::start_with_env(
        Options {
            extra_args: vec!["--log-format".into(), "json".into()],
            ..Options::default()
        },
        &[("RUST_LOG", "info")],
    );
    upload(
        &server,
        SMALL,
        example_parquet(SMALL_DOCS as usize, 8, 3, "d_", VECTOR),
    )
    .await;
    let (status, out) = server.execute_rest(KEY_A, &kmeans(SMALL, 3, 1)).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id");
    let device = out["device"]["type"].as_str().expect("device kind");

    let log = server.log();
    // stderr also holds what native libraries print (the Vulkan loader): only the lines
    // that are objects are ours, and each of them must be whole JSON.
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_run: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["run_id"] == run_id)
        .collect();
    let messages: Vec<&str> = of_run
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(
        messages.first() == Some(&"run started") && messages.last() == Some(&"run ended"),
        "{messages:?}\n{log}"
    );
    for line in &of_run {
        let span = &line["span"];
        assert_eq!(span["name"], "run", "{line}");
        assert_eq!(span["namespace"], NS, "{line}");
        assert_eq!(span["org"], ORG_A, "{line}");
        assert_eq!(span["algorithm"], "kmeans", "{line}");
        assert_eq!(span["device"], device, "{line}");
        assert!(
            line["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["run_id"] == run_id)),
            "{line}"
        );
    }
    let end = of_run.last().expect("an end event");
    assert_eq!(end["span"]["documents"], SMALL_DOCS, "{end}");
    assert_eq!(end["fields"]["state"], "completed", "{end}");
    assert!(end["fields"]["elapsed_ms"].is_u64(), "{end}");
    assert!(end["fields"].get("error_code").is_none(), "{end}");
}

#[tokio::test]
async fn a_gpu_server_counts_its_runs_under_gpu_and_its_run_span_says_gpu() {
    // Skips (visibly) without an adapter; fails instead under CLUSTERD_REQUIRE_GPU=1.
    if clusterd::gpu::test_context().is_none() {
        return;
    }
    let server = TestServer::start_with_env(
        Options {
            extra_args: vec![
                "--device".into(),
                "gpu".into(),
                "--log-format".into(),
                "json".into(),
            ],
            ..Options::default()
        },
        &[("RUST_LOG", "info")],
    );
    upload(
        &server,
        SMALL,
        example_parquet(SMALL_DOCS as usize, 8, 3, "d_", VECTOR),
    )
    .await;
    let (status, out) = server.execute_rest(KEY_A, &kmeans(SMALL, 3, 1)).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["device"]["type"], "gpu", "{out}");
    let m = metrics(&server).await;
    assert_eq!(
        m.value("clusterd_device_runs_total", &[("device", "gpu")]),
        1.0
    );
    assert_eq!(
        m.value("clusterd_device_runs_total", &[("device", "cpu")]),
        0.0
    );
    let run_id = out["run_id"].as_str().expect("run_id");
    let ended = server
        .log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON log line"))
        .find(|l| l["span"]["run_id"] == run_id && l["fields"]["message"] == "run ended")
        .expect("the run's end event");
    assert_eq!(ended["span"]["device"], "gpu", "{ended}");
}
