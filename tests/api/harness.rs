//! Starts the real `clusterd` binary on ephemeral ports with its own store directory,
//! and gives tests a real HTTP client, a real tonic client and grpcurl.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use clusterd::api::grpc::pb;
use serde_json::Value;

pub const KEY_A: &str = "sk_test_org_a_key";
pub const KEY_B: &str = "sk_test_org_b_key";
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
    pub dir: PathBuf,
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

    /// Start on an existing directory (its `data/` is the store), e.g. one prepared with
    /// files a previous server left behind.
    pub fn start_in(dir: &Path) -> Self {
        Self::start_in_with(dir.to_path_buf(), Options::default())
    }

    pub fn start_in_with(dir: PathBuf, opts: Options) -> Self {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--store")
            .arg(dir.join("data"))
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(&opts.extra_args)
            .env_remove("CLUSTERD_API_KEYS")
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
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn store_root(&self) -> PathBuf {
        self.dir.join("data")
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
