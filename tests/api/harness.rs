//! Starts the real `clusterd` binary on ephemeral ports with its own store, and gives tests
//! a real HTTP client, a real tonic client and grpcurl.
//!
//! The store is a local directory, or, with `CLUSTERD_TEST_STORE=s3`, a bucket of its own
//! on one `moto_server` (a real S3-compatible server) that this test process starts. Tests
//! that look at stored objects go through [`TestStore`] (`put_object`, `get_object`,
//! `list_keys`), which works on both, so the whole suite runs against either store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clusterd::api::grpc::pb;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

pub const KEY_A: &str = "sk_test_org_a_key";
pub const KEY_B: &str = "sk_test_org_b_key";
/// Organisation A again, in namespace `staging` only (tests/api/isolation.rs).
pub const KEY_A_STAGING: &str = "sk_test_org_a_staging_key";
pub const ORG_A: &str = "int_org_a";
pub const NS: &str = "production";

const KEYS_TOML: &str = r#"
[[keys]]
key = "sk_test_org_a_key"
org = "int_org_a"
namespaces = ["production"]

[[keys]]
key = "sk_test_org_b_key"
org = "int_org_b"
namespaces = ["*"]

[[keys]]
key = "sk_test_org_a_staging_key"
org = "int_org_a"
namespaces = ["staging"]
"#;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_clusterd")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "clusterd-it-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub struct TestServer {
    child: Child,
    /// Left in place on drop (a later server restarts on it).
    keep_dir: bool,
    /// Logs and the key file; also names the store (see [`TestStore::for_dir`]).
    pub dir: PathBuf,
    store: TestStore,
    pub grpc: String,
    pub http: String,
}

pub struct Options {
    pub keys: bool,
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keys: true,
            extra_args: Vec::new(),
        }
    }
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Self {
        Self::start_in_with(temp_dir("srv"), opts)
    }

    /// Start on an existing directory and the store it names ([`TestStore::for_dir`]),
    /// e.g. the one a killed server left behind, or one prepared with `put_object`.
    pub fn start_in(dir: &Path) -> Self {
        Self::start_in_with(dir.to_path_buf(), Options::default())
    }

    pub fn start_in_with(dir: PathBuf, opts: Options) -> Self {
        let store = TestStore::for_dir(&dir);
        Self::launch(dir, store, opts)
    }

    /// A server on a local directory store in every pass, for the few tests that are about
    /// a directory (say why where you use it).
    pub fn start_local() -> Self {
        Self::start_local_with(Options::default())
    }

    pub fn start_local_with(opts: Options) -> Self {
        let dir = temp_dir("srv");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("create the store directory");
        Self::launch(dir, TestStore::Local(data), opts)
    }

    /// A server on the given store, whatever the suite's mode (tests/api/s3.rs).
    pub fn start_on(store: TestStore, opts: Options) -> Self {
        Self::launch(temp_dir("srv"), store, opts)
    }

    /// Like [`TestServer::start_with`], with extra environment variables for the server
    /// process (e.g. `RUST_LOG`); its stderr is kept in `server.log` ([`TestServer::log`]).
    pub fn start_with_env(opts: Options, env: &[(&str, &str)]) -> Self {
        let dir = temp_dir("srv");
        let store = TestStore::for_dir(&dir);
        Self::launch_with_env(dir, store, opts, env)
    }

    /// Everything the server wrote to stderr (its log) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn launch(dir: PathBuf, store: TestStore, opts: Options) -> Self {
        Self::launch_with_env(dir, store, opts, &[])
    }

    fn launch_with_env(
        dir: PathBuf,
        store: TestStore,
        opts: Options,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--store")
            .arg(store.url())
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(&opts.extra_args)
            .env_remove("CLUSTERD_API_KEYS")
            .envs(store.env())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("server.log")).expect("log file"),
            ));
        if opts.keys {
            let keys = dir.join("keys.toml");
            std::fs::write(&keys, KEYS_TOML).expect("write keys");
            cmd.arg("--api-keys").arg(keys);
        }
        let mut child = cmd.spawn().expect("start clusterd");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("server did not start ({e}): {line:?}\n{log}")
        });
        TestServer {
            child,
            keep_dir: false,
            grpc: ready["grpc"].as_str().expect("grpc addr").to_owned(),
            http: ready["http"].as_str().expect("http addr").to_owned(),
            dir,
            store,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The store directory, for a server started with `start_local*`. In the S3 pass it
    /// panics rather than hand out a directory that stays empty (a test asserting that a
    /// file is absent would pass without testing anything): use `list_keys`,
    /// `get_object`, `put_object` instead, which work on both stores.
    pub fn store_root(&self) -> PathBuf {
        match &self.store {
            TestStore::Local(dir) => dir.clone(),
            TestStore::S3 { .. } => panic!(
                "store_root() is for local stores: this server runs on {}; use \
                 list_keys/get_object/put_object, or start_local() for a test about a directory",
                self.store.url()
            ),
        }
    }

    /// Where this server keeps its data.
    pub fn store(&self) -> &TestStore {
        &self.store
    }

    /// Write an object under the store (key relative to `--store`, e.g.
    /// `int_org_a/production/collections/c/part.parquet`), as another writer would.
    pub async fn put_object(&self, key: &str, bytes: impl Into<bytes::Bytes>) {
        self.store.put_object(key, bytes).await;
    }

    /// An object of the store, `None` when it does not exist.
    pub async fn get_object(&self, key: &str) -> Option<bytes::Bytes> {
        self.store.get_object(key).await
    }

    /// Every key under `prefix` (whole path segments, relative to `--store`), sorted.
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        self.store.list_keys(prefix).await
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect gRPC")
    }

    pub async fn cluster_client(
        &self,
    ) -> pb::cluster_service_client::ClusterServiceClient<tonic::transport::Channel> {
        pb::cluster_service_client::ClusterServiceClient::new(self.channel().await)
            .max_decoding_message_size(usize::MAX)
    }

    pub async fn collection_client(
        &self,
    ) -> pb::collection_service_client::CollectionServiceClient<tonic::transport::Channel> {
        pb::collection_service_client::CollectionServiceClient::new(self.channel().await)
    }

    /// POST a JSON body to /v1/clusters/execute as `key` in namespace `NS`.
    pub async fn execute_rest(&self, key: &str, body: &Value) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(self.url("/v1/clusters/execute"))
            .bearer_auth(key)
            .header("X-Namespace", NS)
            .json(body)
            .send()
            .await
            .expect("http request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    /// Any REST call: `key` as bearer token (none when `None`), `ns` as X-Namespace, an
    /// optional JSON body; the status and the JSON answer (null when there is none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        ns: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method, self.url(path))
            .header("X-Namespace", ns);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Organisation A's first page of runs in `NS` (`GET /v1/clusters/runs`, 200 asserted).
    pub async fn runs_page(&self) -> Value {
        let (status, page) = self
            .send(
                reqwest::Method::GET,
                "/v1/clusters/runs",
                Some(KEY_A),
                NS,
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page
    }

    /// Organisation A's run `run_id` in `NS` (`GET /v1/clusters/runs/{run_id}`, 200 asserted).
    pub async fn run_view(&self, run_id: &str) -> Value {
        let (status, run) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/clusters/runs/{run_id}"),
                Some(KEY_A),
                NS,
                None,
            )
            .await;
        assert_eq!(status, 200, "{run}");
        run
    }

    /// GET `path` as `key` in namespace `NS`, returning the raw body (artifacts).
    /// A stored artifact of a run of organisation A, read as Parquet (200 asserted).
    pub async fn artifact(&self, run_id: &str, name: &str) -> Vec<arrow_array::RecordBatch> {
        let (status, bytes) = self
            .get_bytes(
                KEY_A,
                &format!("/v1/clusters/runs/{run_id}/artifacts/{name}"),
            )
            .await;
        assert_eq!(status, 200, "{name} of {run_id}");
        read_parquet(bytes)
    }

    pub async fn get_bytes(&self, key: &str, path: &str) -> (u16, bytes::Bytes) {
        let resp = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(key)
            .header("X-Namespace", NS)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body"))
    }

    /// Upload a Parquet file as `key` into `collection`.
    pub async fn upload_parquet(
        &self,
        key: &str,
        collection: &str,
        bytes: Vec<u8>,
    ) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(self.url(&format!("/v1/collections/{collection}/documents")))
            .bearer_auth(key)
            .header("X-Namespace", NS)
            .header("Content-Type", "application/vnd.apache.parquet")
            .body(bytes)
            .send()
            .await
            .expect("http request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }
}

impl TestServer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash: nothing gets to run. The store stays for a restart.
    pub fn kill_keeping_store(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.keep_dir = true;
        self.dir.clone()
    }

    /// Wait up to `timeout` for the process to exit by itself; the store stays.
    pub fn wait_exit(
        mut self,
        timeout: std::time::Duration,
    ) -> (Option<std::process::ExitStatus>, PathBuf) {
        let deadline = std::time::Instant::now() + timeout;
        self.keep_dir = true;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (Some(status), self.dir.clone());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (None, self.dir.clone())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
            // moto keeps objects in memory for the whole test process.
            if matches!(self.store, TestStore::S3 { .. }) {
                self.store.remove_all();
            }
        }
    }
}

/// Example Parquet from `clusterd example-data`.
pub fn example_parquet(
    documents: usize,
    dimension: usize,
    clusters: usize,
    id_prefix: &str,
    vector_name: &str,
) -> Vec<u8> {
    let dir = temp_dir("ex");
    let out = dir.join("example.parquet");
    let status = Command::new(bin())
        .arg("example-data")
        .arg("--out")
        .arg(&out)
        .args(["--documents", &documents.to_string()])
        .args(["--dimension", &dimension.to_string()])
        .args(["--clusters", &clusters.to_string()])
        .args(["--id-prefix", id_prefix])
        .args(["--vector-name", vector_name])
        .stderr(Stdio::null())
        .status()
        .expect("run example-data");
    assert!(status.success());
    let bytes = std::fs::read(&out).expect("read example");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// The grpcurl binary: $CLUSTERD_GRPCURL, else `grpcurl` on PATH. In CI a missing
/// grpcurl is a failure; on a developer machine the test says it skips.
pub fn grpcurl() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CLUSTERD_GRPCURL") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("grpcurl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("grpcurl not found in CI: scripts/test.sh installs it into .venv");
        }
        eprintln!("SKIPPED: grpcurl not found (run scripts/test.sh, which installs it)");
    }
    found
}

pub fn run_grpcurl(grpcurl: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(grpcurl)
        .args(args)
        .output()
        .expect("run grpcurl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Authenticated gRPC request.
pub fn authed<T>(msg: T, key: &str, namespace: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("metadata"),
    );
    r.metadata_mut()
        .insert("x-namespace", namespace.parse().expect("metadata"));
    r
}

/// The same JSON request as a protobuf message, so every case runs on both transports.
pub fn to_proto(body: &Value) -> pb::ExecuteClusteringRequest {
    fn s(v: &Value) -> Option<String> {
        v.as_str().map(str::to_owned)
    }
    fn pv(v: &Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.iter().map(pv).collect(),
            }),
            Value::Object(m) => Kind::StructValue(prost_types::Struct {
                fields: m.iter().map(|(k, v)| (k.clone(), pv(v))).collect(),
            }),
        };
        prost_types::Value { kind: Some(kind) }
    }
    let c = &body["config"];
    pb::ExecuteClusteringRequest {
        collection_ids: body["collection_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(s).collect())
            .unwrap_or_default(),
        config: c.is_object().then(|| pb::ClusteringConfig {
            algorithm: s(&c["algorithm"]).unwrap_or_default(),
            algorithm_params: c["algorithm_params"]
                .as_object()
                .map(|m| prost_types::Struct {
                    fields: m.iter().map(|(k, v)| (k.clone(), pv(v))).collect(),
                }),
            feature_vector: c["feature_vector"].is_object().then(|| pb::FeatureVector {
                vector_name: s(&c["feature_vector"]["vector_name"]),
                feature_address: s(&c["feature_vector"]["feature_address"]),
            }),
            normalize_features: c["normalize_features"].as_bool(),
            description: s(&c["description"]),
            llm_labeling: c["llm_labeling"].is_object().then(|| {
                let l = &c["llm_labeling"];
                pb::LlmLabeling {
                    enabled: l["enabled"].as_bool(),
                    provider: s(&l["provider"]),
                    model_name: s(&l["model_name"]),
                    include_keywords: l["include_keywords"].as_bool(),
                    include_summary: l["include_summary"].as_bool(),
                    labeling_inputs: l["labeling_inputs"]
                        .as_array()
                        .map(|a| a.iter().filter_map(s).collect())
                        .unwrap_or_default(),
                }
            }),
            attribute_config: c["attribute_config"].is_object().then(|| {
                let a = &c["attribute_config"];
                pb::AttributeConfig {
                    attributes: a["attributes"]
                        .as_array()
                        .map(|v| v.iter().filter_map(s).collect())
                        .unwrap_or_default(),
                    hierarchical_grouping: a["hierarchical_grouping"].as_bool(),
                    aggregation_method: s(&a["aggregation_method"]),
                }
            }),
        }),
        namespace_id: s(&body["namespace_id"]),
        internal_id: s(&body["internal_id"]),
        sample_size: body["sample_size"].as_f64().map(|f| f as i32),
        store_results: body["store_results"].as_bool(),
        include_members: body["include_members"].as_bool(),
        compute_metrics: body["compute_metrics"].as_bool(),
        save_artifacts: body["save_artifacts"].as_bool(),
        stream_artifacts: body["stream_artifacts"].as_bool(),
    }
}

/// The reference document's example body, exactly as the document prints it.
pub const REFERENCE_JSON: &str = r#"{
  "collection_ids": [
    "col_products_v1",
    "col_products_v2"
  ],
  "compute_metrics": true,
  "config": {
    "algorithm": "kmeans",
    "algorithm_params": {
      "max_iter": 300,
      "n_clusters": 5
    },
    "feature_vector": {
      "vector_name": "text_extractor_v1_embedding"
    },
    "normalize_features": true
  },
  "include_members": false,
  "sample_size": 10000,
  "store_results": true
}"#;

pub fn reference_body() -> Value {
    serde_json::from_str(REFERENCE_JSON).expect("reference JSON parses")
}

pub const REF_VECTOR: &str = "text_extractor_v1_embedding";

/// A server with the reference's two collections loaded for org A (600 documents).
pub async fn server_with_reference_collections() -> TestServer {
    server_with_reference_collections_using(Options::default()).await
}

pub async fn server_with_reference_collections_using(opts: Options) -> TestServer {
    let server = TestServer::start_with(opts);
    for (i, col) in ["col_products_v1", "col_products_v2"]
        .into_iter()
        .enumerate()
    {
        let bytes = example_parquet(300, 16, 5, &format!("c{i}_"), REF_VECTOR);
        let (status, body) = server.upload_parquet(KEY_A, col, bytes).await;
        assert_eq!(status, 200, "{body}");
    }
    server
}

/// (document_id, cluster_id) of every inline member of a response, sorted.
pub fn labels_by_document(body: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["document_id"].as_str().unwrap_or_default().to_owned(),
                m["cluster_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `tests/fixtures/{file}.json`: a scikit-learn reference fixture (data and answers).
pub fn reference_fixture(file: &str) -> Value {
    let path = format!("{}/tests/fixtures/{file}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON")
}

/// Document id of fixture row `i`; [`labels_in_row_order`] reads it back.
pub fn row_document_id(i: usize) -> String {
    format!("p{i:04}")
}

/// Upload JSON documents into `collection` (organisation A, namespace NS).
pub async fn upload_json_documents(server: &TestServer, collection: &str, docs: Vec<Value>) {
    let (status, body) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/collections/{collection}/documents"),
            Some(KEY_A),
            NS,
            Some(&serde_json::json!({ "documents": docs })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Upload a fixture's `data` rows as JSON documents (`embedding` vectors) into `collection`.
pub async fn upload_fixture_rows(server: &TestServer, collection: &str, fixture: &Value) {
    let docs: Vec<Value> = fixture["data"]
        .as_array()
        .expect("data")
        .iter()
        .enumerate()
        .map(|(i, row)| serde_json::json!({"document_id": row_document_id(i), "embedding": row}))
        .collect();
    upload_json_documents(server, collection, docs).await;
}

/// Every record batch of a Parquet file.
pub fn read_parquet(bytes: bytes::Bytes) -> Vec<arrow_array::RecordBatch> {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("a Parquet file")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

/// Labels in fixture row order from (document_id, cluster_id) members: noise is −1, every
/// cluster id another integer.
pub fn labels_in_row_order<'a>(
    n: usize,
    members: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<i64> {
    let mut ids: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut labels = vec![i64::MIN; n];
    for (doc, cluster) in members {
        let next = ids.len() as i64;
        let label = if cluster == "noise" {
            -1
        } else {
            *ids.entry(cluster).or_insert(next)
        };
        let row: usize = doc[1..].parse().expect("document id p<row>");
        labels[row] = label;
    }
    assert!(
        labels.iter().all(|&l| l != i64::MIN),
        "every row is a member"
    );
    labels
}

/// A fixture's integer label list under `key` (`labels`, `truth`).
pub fn fixture_labels(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_i64().expect("label"))
        .collect()
}

/// An execute request clustering a fixture's uploaded rows as scikit-learn did: raw rows
/// (no normalisation), members inline, stored.
pub fn fixture_request(collection: &str, algorithm: &str, params: &Value) -> Value {
    serde_json::json!({
        "collection_ids": [collection],
        "config": {
            "algorithm": algorithm,
            "algorithm_params": params,
            "feature_vector": {"vector_name": "embedding"},
            "normalize_features": false
        },
        "include_members": true,
        "compute_metrics": true,
        "store_results": true
    })
}

/// The id of organisation A's newest `running` run, polled until one shows (at most 60 s).
pub async fn first_running_run(server: &TestServer) -> String {
    let start = std::time::Instant::now();
    loop {
        let (status, page) = server
            .send(
                reqwest::Method::GET,
                "/v1/clusters/runs?status=running",
                Some(KEY_A),
                NS,
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        if let Some(id) = page["runs"][0]["run_id"].as_str() {
            return id.to_owned();
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no run ever showed as running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The store under test: a local directory, or a bucket on this process's moto server.

/// Whether this test process runs its servers against S3: `CLUSTERD_TEST_STORE=s3` and a
/// `moto_server` to start. Without moto it stays local (and says so), unless
/// `CLUSTERD_REQUIRE_S3=1`, which makes a missing moto a failure.
pub fn s3_mode() -> bool {
    static MODE: OnceLock<bool> = OnceLock::new();
    *MODE.get_or_init(|| {
        if std::env::var("CLUSTERD_TEST_STORE").as_deref() != Ok("s3") {
            return false;
        }
        let found = moto().is_some();
        if !found {
            eprintln!(
                "SKIPPED S3 mode: CLUSTERD_TEST_STORE=s3 but no moto_server; running on local stores"
            );
        }
        found
    })
}

fn s3_required() -> bool {
    std::env::var("CLUSTERD_REQUIRE_S3").as_deref() == Ok("1")
}

/// `$CLUSTERD_MOTO_SERVER`, else `.venv/bin/moto_server` of the repository, else
/// `moto_server` on PATH.
fn moto_server_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CLUSTERD_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

/// The one moto server of this test process, started on first use; `None` when there is
/// no moto_server (a failure instead with `CLUSTERD_REQUIRE_S3=1`).
pub fn moto() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| match moto_server_binary() {
        Some(bin) => Some(Moto::start(&bin)),
        None if s3_required() => panic!(
            "CLUSTERD_REQUIRE_S3=1 but moto_server was not found: scripts/test.sh installs it \
             into .venv (or set CLUSTERD_MOTO_SERVER)"
        ),
        None => None,
    })
    .as_ref()
}

/// For tests that exist only for S3 (tests/api/s3.rs): the moto server, or `None` after a
/// visible SKIPPED line when there is none and none is required.
pub fn moto_for_s3_tests() -> Option<&'static Moto> {
    let found = moto();
    if found.is_none() {
        eprintln!("SKIPPED: moto_server not found (run scripts/test.sh, which installs it)");
    }
    found
}

/// Fake credentials: moto accepts any, and without them object_store would go looking for
/// instance credentials on the network.
const S3_ACCESS_KEY: &str = "clusterd-test";
const S3_SECRET_KEY: &str = "clusterd-test-secret";
const S3_REGION: &str = "us-east-1";

/// The endpoint, fake credentials and region for a clusterd child on an S3 store
/// (plain-HTTP endpoints also need `AWS_ALLOW_HTTP=true`).
pub fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.to_owned()),
        ("AWS_REGION", S3_REGION.to_owned()),
    ]
}

/// A `moto_server` on 127.0.0.1 that lives as long as this test process.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    /// moto runs under a small shell that waits for EOF on this pipe and then kills it.
    /// The pipe's write end is held here, in a static that is never dropped, and the
    /// kernel closes it when this process ends, however it ends (success, a failed
    /// assertion, a signal), so no moto outlives `cargo test`.
    _lifeline: ChildStdin,
    _shell: Child,
}

/// `sh -c` body: moto in the background, a watcher that kills it at EOF on stdin (fd 3,
/// since a background list's stdin is /dev/null), and the shell itself exits when moto
/// does, so that a moto that cannot start is seen at once.
const MOTO_WRAPPER: &str = r#"
exec 3<&0
"$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 </dev/null &
moto=$!
{ while read -r _; do :; done <&3; kill "$moto" 2>/dev/null; } &
wait "$moto"
"#;

impl Moto {
    fn start(bin: &Path) -> Moto {
        let mut last_error = String::new();
        // A free port can be taken between finding it and moto binding it: try again.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = std::env::temp_dir()
                .join(format!("clusterd-moto-{}-{port}.log", std::process::id()));
            let mut shell = Command::new("sh")
                .arg("-c")
                .arg(MOTO_WRAPPER)
                .arg("sh")
                .arg(bin)
                .arg(port.to_string())
                .arg(&log)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start sh for moto_server");
            let lifeline = shell.stdin.take().expect("moto lifeline pipe");
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(shell.try_wait(), Ok(None)) {
                if block_on(reqwest::get(&endpoint)).is_ok_and(|r| r.status().is_success()) {
                    // The request log of a whole suite is not worth keeping on disk; moto
                    // keeps writing to the unlinked file.
                    let _ = std::fs::remove_file(&log);
                    return Moto {
                        endpoint,
                        _lifeline: lifeline,
                        _shell: shell,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_error = std::fs::read_to_string(&log).unwrap_or_default();
            drop(lifeline);
            let _ = shell.wait();
            let _ = std::fs::remove_file(&log);
        }
        panic!(
            "{} did not answer on 127.0.0.1: {last_error}",
            bin.display()
        )
    }

    /// What a clusterd child needs to reach this server (set on the child only).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = s3_env(&self.endpoint);
        env.push(("AWS_ALLOW_HTTP", "true".to_owned()));
        env
    }

    /// Create `bucket` with a plain HTTP PUT, as the S3 API does (moto answers 200 for a
    /// bucket that exists already).
    pub fn create_bucket(&self, bucket: &str) {
        let url = format!("{}/{bucket}", self.endpoint);
        let status = block_on(async { reqwest::Client::new().put(&url).send().await })
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"))
            .status();
        assert!(status.is_success(), "PUT {url}: {status}");
    }

    /// The whole bucket, no prefix: what a reader of the bucket sees.
    pub fn bucket_store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region(S3_REGION)
                .with_access_key_id(S3_ACCESS_KEY)
                .with_secret_access_key(S3_SECRET_KEY)
                .build()
                .expect("an S3 client for moto"),
        )
    }
}

/// Run a future to completion on a thread of its own, so that sync code (server start,
/// `Drop`) can make async calls whether or not it runs inside a test's runtime.
fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(f)
        })
        .join()
        .expect("the helper thread")
    })
}

/// A bucket name from a test directory's name: lower case, digits and dashes, ≤ 63.
fn bucket_for(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut bucket: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    bucket.truncate(63);
    let bucket = bucket.trim_matches('-').to_owned();
    assert!(bucket.len() >= 3, "no bucket name in {}", dir.display());
    bucket
}

/// The prefix every suite server's store sits under in its bucket: more than one segment,
/// so that the key layout below a prefix is exercised everywhere.
const SUITE_PREFIX: &str = "clusterd/data";

/// Where a test server keeps its data.
#[derive(Debug, Clone)]
pub enum TestStore {
    /// A directory (`--store DIR`).
    Local(PathBuf),
    /// `--store s3://{bucket}/{prefix}` on the moto server.
    S3 {
        moto: &'static Moto,
        bucket: String,
        prefix: String,
    },
}

impl TestStore {
    /// The store of a test directory: its `data/` directory when that exists (a local
    /// server ran there) or the suite is local; in the S3 pass a bucket named after the
    /// directory. The same directory always names the same store, so a server restarted
    /// on the directory a killed one left (`kill_keeping_store`) finds its data.
    pub fn for_dir(dir: &Path) -> TestStore {
        let data = dir.join("data");
        if !data.is_dir()
            && s3_mode()
            && let Some(moto) = moto()
        {
            return TestStore::s3(moto, &bucket_for(dir), SUITE_PREFIX);
        }
        TestStore::Local(data)
    }

    /// A store under `prefix` in `bucket`, created if missing.
    pub fn s3(moto: &'static Moto, bucket: &str, prefix: &str) -> TestStore {
        moto.create_bucket(bucket);
        TestStore::S3 {
            moto,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, TestStore::S3 { .. })
    }

    /// The `--store` argument.
    pub fn url(&self) -> String {
        match self {
            TestStore::Local(dir) => dir.display().to_string(),
            TestStore::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The environment a server on this store needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            TestStore::Local(_) => Vec::new(),
            TestStore::S3 { moto, .. } => moto.env(),
        }
    }

    /// The store as the server sees it: keys relative to `--store`.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        match self {
            TestStore::Local(dir) => {
                std::fs::create_dir_all(dir).expect("create the store directory");
                Arc::new(LocalFileSystem::new_with_prefix(dir).expect("a local object store"))
            }
            TestStore::S3 {
                moto,
                bucket,
                prefix,
            } => Arc::new(PrefixStore::new(
                AmazonS3Builder::new()
                    .with_endpoint(&moto.endpoint)
                    .with_allow_http(true)
                    .with_bucket_name(bucket)
                    .with_region(S3_REGION)
                    .with_access_key_id(S3_ACCESS_KEY)
                    .with_secret_access_key(S3_SECRET_KEY)
                    .build()
                    .expect("an S3 client for moto"),
                ObjectPath::from(prefix.as_str()),
            )),
        }
    }

    pub async fn put_object(&self, key: &str, bytes: impl Into<bytes::Bytes>) {
        let bytes: bytes::Bytes = bytes.into();
        self.object_store()
            .put(&object_key(key), bytes.into())
            .await
            .unwrap_or_else(|e| panic!("put {key} into {}: {e}", self.url()));
    }

    pub async fn get_object(&self, key: &str) -> Option<bytes::Bytes> {
        match self.object_store().get(&object_key(key)).await {
            Ok(got) => Some(got.bytes().await.expect("object body")),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("get {key} from {}: {e}", self.url()),
        }
    }

    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        let prefix = object_key(prefix);
        let mut keys: Vec<String> = self
            .object_store()
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("list {prefix} of {}: {e}", self.url()));
        keys.sort();
        keys
    }

    /// Delete every object of the store (best effort: for cleaning up).
    fn remove_all(&self) {
        let store = self.object_store();
        block_on(async move {
            let locations = store.list(None).map_ok(|m| m.location).boxed();
            let _ = store.delete_stream(locations).try_collect::<Vec<_>>().await;
        });
    }
}

/// A key given as text (`a/b/c`, surrounding slashes ignored) as an object path.
fn object_key(key: &str) -> ObjectPath {
    ObjectPath::parse(key.trim_matches('/'))
        .unwrap_or_else(|e| panic!("{key:?} is not a valid object key: {e}"))
}
