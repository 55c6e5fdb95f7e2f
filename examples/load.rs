//! Load generator: N concurrent clients (64 by default) send a weighted mix of requests to
//! clusterd for a bounded time and report throughput, latency percentiles, errors by kind
//! and the server's RSS.
//!
//! ```sh
//! cargo build --release && cargo run --release --example load -- --clients 64 --seconds 120
//! ```
//!
//! Without `--http`/`--grpc` it starts its own server (`target/release/clusterd serve`, next
//! to this example's binary) on ephemeral ports with a temporary store, in development mode,
//! with the server's default run queue (2 computing, 32 waiting), which 64 clients overfill,
//! so some run-taking requests are refused with 429 (counted apart, not as errors), and
//! samples its RSS every second. With
//! `--http URL --grpc URL` it drives a running server (`--server-pid` to sample its RSS).
//! The exit status is 1 when any request failed other than by a 429 queue-full refusal.

#[path = "load/report.rs"]
mod report;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use clusterd::api::grpc::pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use report::{Outcome, Report, Rss, Tally};

#[derive(Parser)]
#[command(about = "Drive clusterd with concurrent clients of mixed requests")]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long the clients send requests (requests in flight then finish).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// REST base URL of a running server (e.g. http://127.0.0.1:8080); needs --grpc.
    #[arg(long, requires = "grpc")]
    http: Option<String>,
    /// gRPC URL of a running server (e.g. http://127.0.0.1:50051); needs --http.
    #[arg(long, requires = "http")]
    grpc: Option<String>,
    /// Bearer token (any token works on a server in development mode).
    #[arg(long, default_value = "load-test")]
    api_key: String,
    #[arg(long, default_value = "load")]
    namespace: String,
    /// Process id of the running server, to sample its RSS (a spawned server is sampled
    /// anyway).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The clusterd binary to spawn; default: `clusterd` in the directory above this
    /// example's binary (target/release/clusterd).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// --max-concurrent-runs of the spawned server.
    #[arg(long, default_value_t = 2)]
    max_concurrent_runs: usize,
    /// --max-queued-runs of the spawned server (the server's default): 64 clients keep
    /// more runs waiting than that, so a full queue refuses some with 429.
    #[arg(long, default_value_t = 32)]
    max_queued_runs: usize,
    /// Prefix of the collections this run creates.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of the data and of each client's choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

const VECTOR: &str = "embedding";
/// Documents per seeding upload, well under the 8 MiB JSON body limit at 128 dimensions.
const SEED_BATCH: usize = 500;
/// Documents per upload in the mix.
const UPLOAD_DOCS: usize = 32;
const UPLOAD_DIM: usize = 32;
/// A refused client waits this long before its next request. The server asks for 5 s
/// (retry-after); a shorter pause keeps the queue under pressure in a short run.
const REFUSED_BACKOFF: Duration = Duration::from_millis(500);
/// A request still unanswered after this is a transport error (a hang is a bug).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Completed runs kept for the read requests to choose from.
const POOL: usize = 256;

/// A seeded collection: (documents, dimension, blobs).
const COLLECTIONS: [(usize, usize, usize); 3] = [(1000, 32, 6), (2000, 64, 8), (4000, 128, 10)];

/// The request mix: kind and weight. Execute kinds run small parameters so one takes tens
/// to hundreds of milliseconds on a few cores.
const MIX: [(Kind, u32); 14] = [
    (Kind::RestKmeans, 10),
    (Kind::RestDbscan, 3),
    (Kind::RestHdbscan, 3),
    (Kind::RestAgglomerative, 3),
    (Kind::RestGaussianMixture, 3),
    (Kind::GrpcExecute, 8),
    (Kind::Submit, 6),
    (Kind::Upload, 10),
    (Kind::RunsList, 8),
    (Kind::RunGet, 10),
    (Kind::MembersPage, 10),
    (Kind::Artifact, 6),
    (Kind::Assign, 10),
    (Kind::Healthz, 2),
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    RestKmeans,
    RestDbscan,
    RestHdbscan,
    RestAgglomerative,
    RestGaussianMixture,
    GrpcExecute,
    Submit,
    Upload,
    RunsList,
    RunGet,
    MembersPage,
    Artifact,
    Assign,
    Healthz,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RestKmeans => "rest execute kmeans",
            Kind::RestDbscan => "rest execute dbscan",
            Kind::RestHdbscan => "rest execute hdbscan",
            Kind::RestAgglomerative => "rest execute agglomerative",
            Kind::RestGaussianMixture => "rest execute gmm",
            Kind::GrpcExecute => "grpc execute",
            Kind::Submit => "rest submit",
            Kind::Upload => "rest upload",
            Kind::RunsList => "rest runs list",
            Kind::RunGet => "rest run get",
            Kind::MembersPage => "rest members page",
            Kind::Artifact => "rest artifact",
            Kind::Assign => "rest assign",
            Kind::Healthz => "rest healthz",
        }
    }
}

/// A stored run the read requests can use.
#[derive(Clone)]
struct RunRef {
    id: String,
    dim: usize,
}

/// What every client shares.
struct Shared {
    http: String,
    grpc: String,
    key: String,
    namespace: String,
    prefix: String,
    client: reqwest::Client,
    /// Completed runs (members, artifacts, assign).
    completed: Mutex<Vec<RunRef>>,
    /// Submitted runs (run get only: they may still be running).
    submitted: Mutex<Vec<String>>,
}

fn push_bounded<T>(pool: &Mutex<Vec<T>>, item: T) {
    if let Ok(mut v) = pool.lock() {
        if v.len() >= POOL {
            v.remove(0);
        }
        v.push(item);
    }
}

fn pick<T: Clone>(pool: &Mutex<Vec<T>>, rng: &mut StdRng) -> Option<T> {
    let v = pool.lock().ok()?;
    if v.is_empty() {
        return None;
    }
    Some(v[rng.random_range(0..v.len())].clone())
}

/// The server this process started; killed and its store removed on drop.
struct Spawned {
    child: Child,
    dir: PathBuf,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Spawned {
    fn start(args: &Args) -> Result<(Self, String, String), String> {
        let bin = match &args.server_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("where is this binary: {e}"))?
                .parent()
                .and_then(|examples| examples.parent())
                .map(|release| release.join("clusterd"))
                .ok_or("no directory above this example's binary")?,
        };
        if !bin.is_file() {
            return Err(format!(
                "{} not found: build the server first (cargo build --release) or pass --server-bin",
                bin.display()
            ));
        }
        let dir = std::env::temp_dir().join(format!("clusterd-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).map_err(|e| format!("{e}"))?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| format!("{e}"))?;
        let mut child = Command::new(&bin)
            .arg("serve")
            .arg("--store")
            .arg(dir.join("store"))
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args([
                "--max-concurrent-runs",
                &args.max_concurrent_runs.to_string(),
            ])
            .args(["--max-queued-runs", &args.max_queued_runs.to_string()])
            .env_remove("CLUSTERD_API_KEYS")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let spawned = Spawned { child, dir };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("read the listening line: {e}"))?;
        let ready: Value = serde_json::from_str(&line).map_err(|e| {
            format!(
                "the server did not start ({e}): {line:?}\n{}",
                spawned.log_tail(false)
            )
        })?;
        let http = ready["http"].as_str().ok_or("no http address")?.to_owned();
        let grpc = ready["grpc"].as_str().ok_or("no grpc address")?.to_owned();
        Ok((spawned, format!("http://{http}"), format!("http://{grpc}")))
    }

    /// The last lines of the server's log; with `problems`, only its warnings and errors.
    fn log_tail(&self, problems: bool) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !problems || l.contains("WARN") || l.contains("ERROR"))
            .collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.trim_end_matches('/').to_owned()
    } else {
        format!("http://{}", url.trim_end_matches('/'))
    }
}

/// KiB of a `/proc/<pid>/status` field (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Documents around `blobs` random centres, in the JSON upload shape.
fn documents(
    rng: &mut StdRng,
    ids: std::ops::Range<usize>,
    id_prefix: &str,
    centres: &[Vec<f32>],
) -> Value {
    let docs: Vec<Value> = ids
        .map(|i| {
            let c = rng.random_range(0..centres.len());
            let v: Vec<f32> = centres[c]
                .iter()
                .map(|x| x + 0.25 * gaussian(rng))
                .collect();
            json!({"document_id": format!("{id_prefix}{i:06}"), VECTOR: v, "category": format!("g{c}")})
        })
        .collect();
    json!({ "documents": docs })
}

fn centres(rng: &mut StdRng, k: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..k)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect()
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

impl Shared {
    fn collection(&self, i: usize) -> String {
        format!("{}_seed_{i}", self.prefix)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.http))
            .bearer_auth(&self.key)
            .header("X-Namespace", &self.namespace)
            .timeout(REQUEST_TIMEOUT)
    }
}

/// A REST answer: how it ended, and the JSON body when it was a success.
async fn rest(req: reqwest::RequestBuilder) -> (Outcome, String, Option<Value>) {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (transport(&e), e.to_string(), None),
    };
    let status = resp.status().as_u16();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (transport(&e), e.to_string(), None),
    };
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    if (200..300).contains(&status) {
        return (Outcome::Ok, String::new(), body.or(Some(Value::Null)));
    }
    let code = body
        .as_ref()
        .and_then(|b| b["error"]["code"].as_str())
        .unwrap_or("no error body")
        .to_owned();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status == 429 && code == "rate_limited" {
        return (Outcome::Refused, text, None);
    }
    (Outcome::Error(format!("http {status} {code}")), text, None)
}

fn transport(e: &reqwest::Error) -> Outcome {
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    Outcome::Error(format!("transport {what}"))
}

fn grpc_outcome(status: &tonic::Status) -> Outcome {
    let code = status
        .metadata()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    if status.code() == tonic::Code::ResourceExhausted && code == "rate_limited" {
        return Outcome::Refused;
    }
    Outcome::Error(format!("grpc {:?} {code}", status.code()))
}

fn execute_body(collection: &str, algorithm: &str, params: Value, store: bool) -> Value {
    json!({
        "collection_ids": [collection],
        "config": {
            "algorithm": algorithm,
            "algorithm_params": params,
            "feature_vector": {"vector_name": VECTOR},
        },
        "store_results": store,
        "include_members": false,
        "compute_metrics": true,
    })
}

fn proto_value(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind as K;
    let kind = match v {
        Value::Null => K::NullValue(0),
        Value::Bool(b) => K::BoolValue(*b),
        Value::Number(n) => K::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => K::StringValue(s.clone()),
        Value::Array(a) => K::ListValue(prost_types::ListValue {
            values: a.iter().map(proto_value).collect(),
        }),
        Value::Object(m) => K::StructValue(prost_types::Struct {
            fields: m.iter().map(|(k, v)| (k.clone(), proto_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// One client: its own gRPC connection, its own upload collection, its own random stream.
struct Client {
    id: usize,
    shared: Arc<Shared>,
    grpc: Option<pb::cluster_service_client::ClusterServiceClient<tonic::transport::Channel>>,
    rng: StdRng,
    uploads: usize,
    tally: Tally,
}

impl Client {
    async fn run(mut self, until: Instant) -> Tally {
        let total: u32 = MIX.iter().map(|m| m.1).sum();
        while Instant::now() < until {
            let mut roll = self.rng.random_range(0..total);
            let kind = MIX
                .iter()
                .find(|(_, w)| {
                    if roll < *w {
                        true
                    } else {
                        roll -= w;
                        false
                    }
                })
                .map_or(Kind::Healthz, |m| m.0);
            let started = Instant::now();
            let (outcome, detail) = self.one(kind).await;
            let refused = matches!(outcome, Outcome::Refused);
            self.tally
                .record(kind.name(), started.elapsed(), outcome, &detail);
            if refused {
                tokio::time::sleep(REFUSED_BACKOFF).await;
            }
        }
        self.tally
    }

    /// A seeded collection and its dimension; the larger ones for the cheaper algorithms.
    fn seeded(&mut self, largest: usize) -> (String, usize) {
        let i = self.rng.random_range(0..=largest);
        (self.shared.collection(i), COLLECTIONS[i].1)
    }

    async fn execute_rest(
        &mut self,
        algorithm: &str,
        largest: usize,
        params: Value,
    ) -> (Outcome, String) {
        let (collection, dim) = self.seeded(largest);
        let body = execute_body(&collection, algorithm, params, true);
        let req = self
            .shared
            .request(reqwest::Method::POST, "/v1/clusters/execute")
            .json(&body);
        let (outcome, detail, body) = rest(req).await;
        if let Some(id) = body.as_ref().and_then(|b| b["run_id"].as_str()) {
            push_bounded(
                &self.shared.completed,
                RunRef {
                    id: id.to_owned(),
                    dim,
                },
            );
        }
        (outcome, detail)
    }

    async fn one(&mut self, kind: Kind) -> (Outcome, String) {
        match kind {
            Kind::RestKmeans => {
                let k = self.rng.random_range(3..=12);
                self.execute_rest("kmeans", 2, json!({"n_clusters": k, "max_iter": 50}))
                    .await
            }
            Kind::RestDbscan => {
                let eps = [0.2, 0.3, 0.4][self.rng.random_range(0..3)];
                self.execute_rest("dbscan", 1, json!({"eps": eps, "min_samples": 5}))
                    .await
            }
            Kind::RestHdbscan => {
                self.execute_rest("hdbscan", 1, json!({"min_cluster_size": 15}))
                    .await
            }
            Kind::RestAgglomerative => {
                let linkage = ["ward", "single"][self.rng.random_range(0..2)];
                self.execute_rest(
                    "agglomerative",
                    0,
                    json!({"n_clusters": 6, "linkage": linkage}),
                )
                .await
            }
            Kind::RestGaussianMixture => {
                self.execute_rest(
                    "gaussian_mixture",
                    1,
                    json!({"n_components": 6, "covariance_type": "diag", "max_iter": 50}),
                )
                .await
            }
            Kind::GrpcExecute => self.execute_grpc().await,
            Kind::Submit => {
                let (collection, _) = self.seeded(2);
                let body = execute_body(&collection, "kmeans", json!({"n_clusters": 8}), true);
                let req = self
                    .shared
                    .request(reqwest::Method::POST, "/v1/clusters/submit")
                    .json(&body);
                let (outcome, detail, body) = rest(req).await;
                if let Some(id) = body.as_ref().and_then(|b| b["run_id"].as_str()) {
                    push_bounded(&self.shared.submitted, id.to_owned());
                }
                (outcome, detail)
            }
            Kind::Upload => {
                // A collection per client: uploads never race over one schema.
                let collection = format!("{}_upload_{:03}", self.shared.prefix, self.id);
                let centres = centres(&mut self.rng, 3, UPLOAD_DIM);
                let start = self.uploads * UPLOAD_DOCS;
                self.uploads += 1;
                let docs = documents(
                    &mut self.rng,
                    start..start + UPLOAD_DOCS,
                    &format!("u{}_", self.id),
                    &centres,
                );
                let req = self
                    .shared
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/collections/{collection}/documents"),
                    )
                    .json(&docs);
                let (outcome, detail, _) = rest(req).await;
                (outcome, detail)
            }
            Kind::RunsList => {
                let req = self
                    .shared
                    .request(reqwest::Method::GET, "/v1/clusters/runs?limit=20");
                let (outcome, detail, _) = rest(req).await;
                (outcome, detail)
            }
            Kind::RunGet => {
                let id = if self.rng.random_bool(0.5) {
                    pick(&self.shared.submitted, &mut self.rng)
                } else {
                    pick(&self.shared.completed, &mut self.rng).map(|r| r.id)
                };
                let Some(id) = id else {
                    return Box::pin(self.one(Kind::RunsList)).await;
                };
                let req = self
                    .shared
                    .request(reqwest::Method::GET, &format!("/v1/clusters/runs/{id}"));
                let (outcome, detail, _) = rest(req).await;
                (outcome, detail)
            }
            Kind::MembersPage | Kind::Artifact | Kind::Assign => {
                let Some(run) = pick(&self.shared.completed, &mut self.rng) else {
                    return Box::pin(self.one(Kind::RunsList)).await;
                };
                let req = match kind {
                    Kind::MembersPage => {
                        let offset = self.rng.random_range(0..5) * 100;
                        self.shared.request(
                            reqwest::Method::GET,
                            &format!(
                                "/v1/clusters/runs/{}/members?offset={offset}&limit=100",
                                run.id
                            ),
                        )
                    }
                    Kind::Artifact => {
                        let name =
                            ["clusters.parquet", "members.parquet"][self.rng.random_range(0..2)];
                        self.shared.request(
                            reqwest::Method::GET,
                            &format!("/v1/clusters/runs/{}/artifacts/{name}", run.id),
                        )
                    }
                    _ => {
                        let vectors: Vec<Vec<f32>> = (0..16)
                            .map(|_| (0..run.dim).map(|_| gaussian(&mut self.rng)).collect())
                            .collect();
                        self.shared
                            .request(
                                reqwest::Method::POST,
                                &format!("/v1/clusters/runs/{}/assign", run.id),
                            )
                            .json(&json!({ "vectors": vectors }))
                    }
                };
                let (outcome, detail, _) = rest(req).await;
                (outcome, detail)
            }
            Kind::Healthz => {
                let req = self.shared.request(reqwest::Method::GET, "/healthz");
                let (outcome, detail, _) = rest(req).await;
                (outcome, detail)
            }
        }
    }

    async fn execute_grpc(&mut self) -> (Outcome, String) {
        let (algorithm, params, largest) = if self.rng.random_bool(0.7) {
            let k = self.rng.random_range(3..=12);
            ("kmeans", json!({"n_clusters": k, "max_iter": 50}), 2)
        } else {
            ("hdbscan", json!({"min_cluster_size": 15}), 1)
        };
        let (collection, dim) = self.seeded(largest);
        if self.grpc.is_none() {
            match tonic::transport::Endpoint::from_shared(self.shared.grpc.clone()) {
                Ok(endpoint) => match endpoint.connect().await {
                    Ok(channel) => {
                        self.grpc = Some(
                            pb::cluster_service_client::ClusterServiceClient::new(channel)
                                .max_decoding_message_size(64 << 20),
                        );
                    }
                    Err(e) => return (Outcome::Error("grpc connect".into()), e.to_string()),
                },
                Err(e) => return (Outcome::Error("grpc endpoint".into()), e.to_string()),
            }
        }
        let Some(client) = self.grpc.as_mut() else {
            return (Outcome::Error("grpc connect".into()), String::new());
        };
        let fields = params
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), proto_value(v))).collect())
            .unwrap_or_default();
        let msg = pb::ExecuteClusteringRequest {
            collection_ids: vec![collection],
            config: Some(pb::ClusteringConfig {
                algorithm: algorithm.to_owned(),
                algorithm_params: Some(prost_types::Struct { fields }),
                feature_vector: Some(pb::FeatureVector {
                    vector_name: Some(VECTOR.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            store_results: Some(true),
            include_members: Some(false),
            compute_metrics: Some(true),
            ..Default::default()
        };
        let mut req = tonic::Request::new(msg);
        req.set_timeout(REQUEST_TIMEOUT);
        let md = req.metadata_mut();
        for (k, v) in [
            ("authorization", format!("Bearer {}", self.shared.key)),
            ("x-namespace", self.shared.namespace.clone()),
        ] {
            match v.parse() {
                Ok(v) => {
                    md.insert(k, v);
                }
                Err(_) => return (Outcome::Error(format!("bad {k} metadata")), String::new()),
            }
        }
        match client.execute(req).await {
            Ok(resp) => {
                let id = resp.into_inner().run_id;
                if !id.is_empty() {
                    push_bounded(&self.shared.completed, RunRef { id, dim });
                }
                (Outcome::Ok, String::new())
            }
            Err(status) => (grpc_outcome(&status), status.message().to_owned()),
        }
    }
}

/// Upload the seeded collections and run one k-means on each, so the read requests have
/// runs from the first second.
async fn seed(shared: &Shared, rng: &mut StdRng) -> Result<Value, String> {
    let mut made = Vec::new();
    for (i, &(n, dim, blobs)) in COLLECTIONS.iter().enumerate() {
        let collection = shared.collection(i);
        let centres = centres(rng, blobs, dim);
        let started = Instant::now();
        for start in (0..n).step_by(SEED_BATCH) {
            let docs = documents(rng, start..(start + SEED_BATCH).min(n), "d", &centres);
            let req = shared
                .request(
                    reqwest::Method::POST,
                    &format!("/v1/collections/{collection}/documents"),
                )
                .json(&docs);
            let (outcome, detail, _) = rest(req).await;
            if !matches!(outcome, Outcome::Ok) {
                return Err(format!("seeding {collection}: {outcome:?} {detail}"));
            }
        }
        let upload_s = started.elapsed().as_secs_f64();
        // One idle execute per collection: what a run costs without load.
        let started = Instant::now();
        let body = execute_body(
            &collection,
            "kmeans",
            json!({"n_clusters": 8, "max_iter": 50}),
            true,
        );
        let req = shared
            .request(reqwest::Method::POST, "/v1/clusters/execute")
            .json(&body);
        let (outcome, detail, body) = rest(req).await;
        if !matches!(outcome, Outcome::Ok) {
            return Err(format!(
                "first execute on {collection}: {outcome:?} {detail}"
            ));
        }
        if let Some(id) = body.as_ref().and_then(|b| b["run_id"].as_str()) {
            push_bounded(
                &shared.completed,
                RunRef {
                    id: id.to_owned(),
                    dim,
                },
            );
        }
        made.push(json!({
            "collection": collection, "documents": n, "dimension": dim, "blobs": blobs,
            "upload_s": upload_s, "idle_kmeans_ms": started.elapsed().as_secs_f64() * 1000.0,
        }));
    }
    Ok(Value::Array(made))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match drive(args).await {
        Ok(clean) => std::process::exit(if clean { 0 } else { 1 }),
        Err(e) => {
            eprintln!("load: {e}");
            std::process::exit(2);
        }
    }
}

/// The whole run; true when no request failed other than by a 429 refusal.
async fn drive(args: Args) -> Result<bool, String> {
    let (spawned, http, grpc) = match (&args.http, &args.grpc) {
        (Some(h), Some(g)) => (None, with_scheme(h), with_scheme(g)),
        _ => {
            let (s, h, g) = Spawned::start(&args)?;
            (Some(s), h, g)
        }
    };
    let pid = spawned.as_ref().map(|s| s.child.id()).or(args.server_pid);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let shared = Arc::new(Shared {
        http,
        grpc,
        key: args.api_key.clone(),
        namespace: args.namespace.clone(),
        prefix: args.prefix.clone(),
        client,
        completed: Mutex::new(Vec::new()),
        submitted: Mutex::new(Vec::new()),
    });
    let mut rng = StdRng::seed_from_u64(args.seed);
    eprintln!("load: seeding {} collections", COLLECTIONS.len());
    let seeded = match seed(&shared, &mut rng).await {
        Ok(s) => s,
        Err(e) => {
            let tail = spawned
                .as_ref()
                .map(|s| s.log_tail(false))
                .unwrap_or_default();
            return Err(format!("{e}\n{tail}"));
        }
    };

    let rss = Arc::new(Mutex::new(Rss::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let sampler = pid.map(|pid| {
        let rss = rss.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let (Some(kib), Ok(mut r)) = (proc_status_kib(pid, "VmRSS"), rss.lock()) {
                    r.samples.push((started.elapsed().as_secs_f64(), kib));
                }
            }
        })
    });
    eprintln!(
        "load: {} clients for {} s against {}",
        args.clients, args.seconds, shared.http
    );
    let tasks: Vec<_> = (0..args.clients)
        .map(|id| {
            let c = Client {
                id,
                shared: shared.clone(),
                grpc: None,
                rng: StdRng::seed_from_u64(args.seed.wrapping_add(1 + id as u64)),
                uploads: 0,
                tally: Tally::default(),
            };
            tokio::spawn(c.run(until))
        })
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        match t.await {
            Ok(t) => tally.merge(t),
            Err(e) => return Err(format!("a client task failed: {e}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(s) = sampler {
        s.abort();
    }
    let mut rss = pid.map(|pid| {
        let mut r = rss.lock().map(|r| r.clone()).unwrap_or_default();
        if let Some(kib) = proc_status_kib(pid, "VmRSS") {
            r.samples.push((seconds, kib));
        }
        r.peak_kib = proc_status_kib(pid, "VmHWM");
        r
    });
    if rss.as_ref().is_some_and(|r| r.samples.is_empty()) {
        rss = None;
    }
    let mut report = Report {
        clients: args.clients,
        seconds,
        setup: json!({
            "server": if spawned.is_some() { "spawned" } else { "running" },
            "max_concurrent_runs": spawned.as_ref().map(|_| args.max_concurrent_runs),
            "max_queued_runs": spawned.as_ref().map(|_| args.max_queued_runs),
            "mix": MIX.iter().map(|(k, w)| json!([k.name(), w])).collect::<Vec<_>>(),
            "collections": seeded,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        }),
        tally,
        rss,
    };
    let unexpected = report.tally.unexpected_errors();
    let json = report.summary();
    print!("{}", Report::to_text(&json));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if unexpected > 0
        && let Some(s) = &spawned
    {
        eprintln!(
            "load: the server's last warnings and errors:\n{}",
            s.log_tail(true)
        );
    }
    let ok = json["overall"]["ok"].as_u64().unwrap_or(0);
    if ok == 0 {
        eprintln!("load: no request succeeded");
    }
    Ok(unexpected == 0 && ok > 0)
}
