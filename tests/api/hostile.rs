//! The bad-input matrix: malformed and hostile requests over REST and gRPC, each answered
//! with the error table's status, code, a message and (where one applies) the field; after
//! every one the server still answers, nothing new sits under the collections or in
//! `_staging/`, and no run was recorded.

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use clusterd::api::grpc::pb;
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;

const MAX_JSON: usize = 64 * 1024;
const MAX_UPLOAD: usize = 256 * 1024;
const DIM: usize = 8;
const COLLECTIONS: &str = "int_org_a/production/collections/";
const STAGING: &str = "int_org_a/production/_staging/";

fn parquet_of(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect())
        .expect("batch");
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    buf
}

fn ids(n: usize) -> ArrayRef {
    Arc::new(StringArray::from(
        (0..n).map(|i| format!("h{i}")).collect::<Vec<_>>(),
    ))
}

/// `n` float32 vectors of `dim`, with `poison` at row 1, value 0.
fn vectors(n: usize, dim: usize, poison: Option<f32>) -> ArrayRef {
    let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32)
        .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
    for i in 0..n {
        for j in 0..dim {
            let v = match poison {
                Some(p) if i == 1 && j == 0 => p,
                _ => (i + j) as f32,
            };
            b.values().append_value(v);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn string_vectors(n: usize) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for _ in 0..n {
        b.values().append_value("a");
        b.values().append_value("b");
        b.append(true);
    }
    Arc::new(b.finish())
}

fn valid_parquet() -> Vec<u8> {
    parquet_of(vec![
        ("document_id", ids(4)),
        ("embedding", vectors(4, DIM, None)),
    ])
}

fn execute_body() -> Value {
    json!({
        "collection_ids": ["col_ok"],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": 3},
            "feature_vector": {"vector_name": "embedding"},
            "normalize_features": false
        },
        "store_results": true
    })
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut b = execute_body();
    f(&mut b);
    b
}

/// The execute body with `"__RAW__"` replaced by raw JSON text serde_json cannot hold
/// (`1e309`, `NaN`, a nesting past any parser's depth).
fn raw_execute(set: impl FnOnce(&mut Value), raw: &str) -> Vec<u8> {
    let mut b = execute_body();
    set(&mut b);
    b.to_string().replace("\"__RAW__\"", raw).into_bytes()
}

fn json_bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn deep_brackets(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

struct RestRow {
    name: &'static str,
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn post(
    name: &'static str,
    path: impl Into<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> RestRow {
    RestRow {
        name,
        method: reqwest::Method::POST,
        path: path.into(),
        content_type,
        body,
        status,
        code,
        field,
    }
}

fn get(
    name: &'static str,
    path: impl Into<String>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> RestRow {
    RestRow {
        name,
        method: reqwest::Method::GET,
        path: path.into(),
        content_type: None,
        body: Vec::new(),
        status,
        code,
        field,
    }
}

const JSON: Option<&str> = Some("application/json");
const PARQUET: Option<&str> = Some("application/vnd.apache.parquet");
const EXECUTE: &str = "/v1/clusters/execute";

fn rest_rows(run_id: &str) -> Vec<RestRow> {
    let upload = |c: &str| format!("/v1/collections/{c}/documents");
    let members = format!("/v1/clusters/runs/{run_id}/members");
    let assign = format!("/v1/clusters/runs/{run_id}/assign");
    let valid = valid_parquet();
    let big_name = "a".repeat(10_000);
    vec![
        // Execute: wrong types.
        post(
            "sample_size as a string",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["sample_size"] = json!("ten"))),
            400,
            "invalid_request",
            Some("sample_size"),
        ),
        post(
            "sample_size as a bool",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["sample_size"] = json!(true))),
            400,
            "invalid_request",
            Some("sample_size"),
        ),
        post(
            "n_clusters as a string",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| {
                b["config"]["algorithm_params"]["n_clusters"] = json!("five")
            })),
            400,
            "invalid_request",
            Some("config.algorithm_params.n_clusters"),
        ),
        post(
            "collection_ids as a string",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["collection_ids"] = json!("col_ok"))),
            400,
            "invalid_request",
            Some("collection_ids"),
        ),
        post(
            "config as a string",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["config"] = json!("kmeans"))),
            400,
            "invalid_request",
            Some("config"),
        ),
        post(
            "unknown top-level field",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["bogus"] = json!(1))),
            400,
            "invalid_request",
            Some("bogus"),
        ),
        // Execute: huge and negative numbers.
        post(
            "sample_size 1e309",
            EXECUTE,
            JSON,
            raw_execute(|b| b["sample_size"] = json!("__RAW__"), "1e309"),
            400,
            "invalid_request",
            None,
        ),
        post(
            "sample_size one past u64::MAX",
            EXECUTE,
            JSON,
            raw_execute(
                |b| b["sample_size"] = json!("__RAW__"),
                "18446744073709551616",
            ),
            400,
            "invalid_request",
            Some("sample_size"),
        ),
        post(
            "n_clusters u64::MAX",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| {
                b["config"]["algorithm_params"]["n_clusters"] = json!(u64::MAX)
            })),
            400,
            "invalid_request",
            Some("config.algorithm_params.n_clusters"),
        ),
        post(
            "n_clusters 1e309",
            EXECUTE,
            JSON,
            raw_execute(
                |b| b["config"]["algorithm_params"]["n_clusters"] = json!("__RAW__"),
                "1e309",
            ),
            400,
            "invalid_request",
            None,
        ),
        post(
            "n_clusters NaN",
            EXECUTE,
            JSON,
            raw_execute(
                |b| b["config"]["algorithm_params"]["n_clusters"] = json!("__RAW__"),
                "NaN",
            ),
            400,
            "invalid_request",
            None,
        ),
        post(
            "negative sample_size",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["sample_size"] = json!(-1))),
            422,
            "invalid_parameter",
            Some("sample_size"),
        ),
        post(
            "negative n_clusters",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| {
                b["config"]["algorithm_params"]["n_clusters"] = json!(-3)
            })),
            422,
            "invalid_parameter",
            Some("config.algorithm_params.n_clusters"),
        ),
        post(
            "empty collection_ids",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["collection_ids"] = json!([]))),
            400,
            "invalid_request",
            Some("collection_ids"),
        ),
        // Execute: nesting and structure.
        post(
            "10 000 unclosed [",
            EXECUTE,
            JSON,
            "[".repeat(10_000).into_bytes(),
            400,
            "invalid_request",
            None,
        ),
        post(
            "10 000 nested arrays as a parameter",
            EXECUTE,
            JSON,
            raw_execute(
                |b| b["config"]["algorithm_params"]["n_clusters"] = json!("__RAW__"),
                &deep_brackets(10_000),
            ),
            400,
            "invalid_request",
            None,
        ),
        post(
            "the body as a positional array",
            EXECUTE,
            JSON,
            json_bytes(&json!([["col_ok"], execute_body()["config"]])),
            400,
            "invalid_request",
            None,
        ),
        post(
            "empty body",
            EXECUTE,
            JSON,
            Vec::new(),
            400,
            "invalid_request",
            None,
        ),
        post(
            "XML body",
            EXECUTE,
            Some("application/xml"),
            b"<execute/>".to_vec(),
            400,
            "invalid_request",
            None,
        ),
        post(
            "body past --max-json-bytes",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| {
                b["config"]["description"] = json!("x".repeat(MAX_JSON))
            })),
            413,
            "payload_too_large",
            None,
        ),
        // Execute: hostile collection names.
        post(
            "collection id with ..",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["collection_ids"] = json!(["../int_org_b"]))),
            400,
            "invalid_request",
            Some("collection_ids[0]"),
        ),
        post(
            "collection id with /",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["collection_ids"] = json!(["col_ok", "a/b"]))),
            400,
            "invalid_request",
            Some("collection_ids[1]"),
        ),
        post(
            "collection id with NUL",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["collection_ids"] = json!(["col\u{0}ok"]))),
            400,
            "invalid_request",
            Some("collection_ids[0]"),
        ),
        post(
            "collection id of 10 000 chars",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["collection_ids"] = json!([big_name.clone()]))),
            400,
            "invalid_request",
            Some("collection_ids[0]"),
        ),
        post(
            "collection id with an RTL override",
            EXECUTE,
            JSON,
            json_bytes(&with(|b| b["collection_ids"] = json!(["col\u{202E}ko"]))),
            400,
            "invalid_request",
            Some("collection_ids[0]"),
        ),
        // Uploads: JSON documents.
        post(
            "JSON vector holding 1e999",
            upload("col_new"),
            JSON,
            br#"{"documents": [{"document_id": "d", "embedding": [1e999, 1.0]}]}"#.to_vec(),
            400,
            "invalid_request",
            None,
        ),
        post(
            "JSON vector beyond float32",
            upload("col_new"),
            JSON,
            json_bytes(&json!({"documents": [{"document_id": "d", "embedding": [1e300, 1.0]}]})),
            422,
            "invalid_parameter",
            Some("documents[0].embedding"),
        ),
        post(
            "no JSON documents",
            upload("col_new"),
            JSON,
            json_bytes(&json!({"documents": []})),
            400,
            "invalid_request",
            Some("documents"),
        ),
        post(
            "documents as a string",
            upload("col_new"),
            JSON,
            json_bytes(&json!({"documents": "many"})),
            400,
            "invalid_request",
            Some("documents"),
        ),
        post(
            "document_id as a number",
            upload("col_new"),
            JSON,
            json_bytes(&json!({"documents": [{"document_id": 5, "embedding": [1.0]}]})),
            400,
            "invalid_request",
            Some("documents[0].document_id"),
        ),
        post(
            "JSON upload past --max-json-bytes",
            upload("col_new"),
            JSON,
            json_bytes(&json!({"documents": [{"document_id": "d", "text": "y".repeat(MAX_JSON)}]})),
            413,
            "payload_too_large",
            None,
        ),
        // Uploads: Parquet.
        post(
            "NaN in a Parquet vector",
            upload("col_new"),
            PARQUET,
            parquet_of(vec![
                ("document_id", ids(4)),
                ("embedding", vectors(4, DIM, Some(f32::NAN))),
            ]),
            422,
            "invalid_parameter",
            Some("embedding"),
        ),
        post(
            "infinity in a Parquet vector",
            upload("col_new"),
            PARQUET,
            parquet_of(vec![
                ("document_id", ids(4)),
                ("embedding", vectors(4, DIM, Some(f32::INFINITY))),
            ]),
            422,
            "invalid_parameter",
            Some("embedding"),
        ),
        post(
            "truncated Parquet",
            upload("col_new"),
            PARQUET,
            valid[..valid.len() / 2].to_vec(),
            400,
            "invalid_request",
            Some("body"),
        ),
        post(
            "Parquet cut in the middle, footer magic kept",
            upload("col_new"),
            PARQUET,
            [&valid[..40], &valid[valid.len() - 8..]].concat(),
            400,
            "invalid_request",
            Some("body"),
        ),
        post(
            "Parquet without document_id",
            upload("col_new"),
            PARQUET,
            parquet_of(vec![("doc", ids(4)), ("embedding", vectors(4, DIM, None))]),
            400,
            "invalid_request",
            Some("document_id"),
        ),
        post(
            "Parquet with an integer document_id",
            upload("col_new"),
            PARQUET,
            parquet_of(vec![
                (
                    "document_id",
                    Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
                ),
                ("embedding", vectors(4, DIM, None)),
            ]),
            400,
            "invalid_request",
            Some("document_id"),
        ),
        post(
            "Parquet vector of strings over a float vector",
            upload("col_ok"),
            PARQUET,
            parquet_of(vec![
                ("document_id", ids(4)),
                ("embedding", string_vectors(4)),
            ]),
            409,
            "conflict",
            Some("embedding"),
        ),
        post(
            "Parquet vector of another dimension",
            upload("col_ok"),
            PARQUET,
            parquet_of(vec![
                ("document_id", ids(4)),
                ("embedding", vectors(4, DIM / 2, None)),
            ]),
            409,
            "conflict",
            Some("embedding"),
        ),
        post(
            "Parquet as text/csv",
            upload("col_new"),
            Some("text/csv"),
            valid.clone(),
            400,
            "invalid_request",
            Some("Content-Type"),
        ),
        post(
            "upload without a Content-Type",
            upload("col_new"),
            None,
            valid.clone(),
            400,
            "invalid_request",
            Some("Content-Type"),
        ),
        post(
            "Parquet declared as JSON",
            upload("col_new"),
            JSON,
            valid.clone(),
            400,
            "invalid_request",
            None,
        ),
        post(
            "Parquet past --max-upload-bytes",
            upload("col_new"),
            PARQUET,
            [b"PAR1".as_slice(), &vec![7u8; MAX_UPLOAD], b"PAR1"].concat(),
            413,
            "payload_too_large",
            None,
        ),
        // Uploads: hostile collection names in the path.
        post(
            "upload into ..%2F",
            upload("..%2Fint_org_b"),
            PARQUET,
            valid.clone(),
            400,
            "invalid_request",
            Some("collection_id"),
        ),
        post(
            "upload into a NUL name",
            upload("col%00x"),
            PARQUET,
            valid.clone(),
            400,
            "invalid_request",
            Some("collection_id"),
        ),
        post(
            "upload into a 10 000-char name",
            upload(&big_name),
            PARQUET,
            valid.clone(),
            400,
            "invalid_request",
            Some("collection_id"),
        ),
        post(
            "upload into an RTL name",
            upload("col%E2%80%AEko"),
            PARQUET,
            valid.clone(),
            400,
            "invalid_request",
            Some("collection_id"),
        ),
        // Query strings.
        get(
            "members offset -1",
            format!("{members}?offset=-1"),
            422,
            "invalid_parameter",
            Some("offset"),
        ),
        get(
            "members limit 0",
            format!("{members}?limit=0"),
            422,
            "invalid_parameter",
            Some("limit"),
        ),
        get(
            "members limit past u64",
            format!("{members}?limit=18446744073709551616"),
            422,
            "invalid_parameter",
            Some("limit"),
        ),
        get(
            "members unknown parameter",
            format!("{members}?bogus=1"),
            400,
            "invalid_request",
            Some("query"),
        ),
        get(
            "members of an empty cluster id",
            format!("{members}?cluster_id="),
            422,
            "invalid_parameter",
            Some("cluster_id"),
        ),
        get(
            "members of a run named ..%2F..",
            "/v1/clusters/runs/..%2F..%2Fint_org_b/members",
            400,
            "invalid_request",
            Some("run_id"),
        ),
        get(
            "runs limit -5",
            "/v1/clusters/runs?limit=-5",
            422,
            "invalid_parameter",
            Some("limit"),
        ),
        get(
            "collections limit past i64",
            "/v1/collections?limit=99999999999999999999",
            400,
            "invalid_request",
            Some("query"),
        ),
        // Assign.
        post(
            "assign an empty object",
            assign.clone(),
            JSON,
            b"{}".to_vec(),
            400,
            "invalid_request",
            Some("vectors"),
        ),
        post(
            "assign no vectors",
            assign.clone(),
            JSON,
            json_bytes(&json!({"vectors": []})),
            400,
            "invalid_request",
            Some("vectors"),
        ),
        post(
            "assign a vector of the wrong dimension",
            assign.clone(),
            JSON,
            json_bytes(&json!({"vectors": [[1.0, 2.0]]})),
            422,
            "invalid_parameter",
            Some("vectors[0]"),
        ),
        post(
            "assign a vector beyond float32",
            assign.clone(),
            JSON,
            json_bytes(&json!({"vectors": [[1e300, 0, 0, 0, 0, 0, 0, 0]]})),
            422,
            "invalid_parameter",
            Some("vectors[0]"),
        ),
        post(
            "assign vectors and documents at once",
            assign.clone(),
            JSON,
            json_bytes(
                &json!({"vectors": [vec![0.0f32; DIM]], "collection_id": "col_ok", "document_ids": ["h0"]}),
            ),
            400,
            "invalid_request",
            Some("vectors"),
        ),
        post(
            "assign from a collection named ..",
            assign.clone(),
            JSON,
            json_bytes(&json!({"collection_id": "../int_org_b", "document_ids": ["h0"]})),
            400,
            "invalid_request",
            Some("collection_id"),
        ),
        post(
            "assign no document ids",
            assign.clone(),
            JSON,
            json_bytes(&json!({"collection_id": "col_ok", "document_ids": []})),
            400,
            "invalid_request",
            Some("document_ids"),
        ),
        post(
            "assign with an unknown field",
            assign.clone(),
            JSON,
            json_bytes(&json!({"vector": [vec![0.0f32; DIM]]})),
            400,
            "invalid_request",
            Some("vector"),
        ),
    ]
}

/// What must not change whatever a refused request did.
#[derive(Debug, PartialEq)]
struct Snapshot {
    collections: Vec<String>,
    staging: Vec<String>,
    runs: Vec<String>,
}

async fn snapshot(server: &TestServer) -> Snapshot {
    let page = server.runs_page().await;
    let runs = page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["run_id"].as_str().expect("run_id").to_owned())
        .collect();
    Snapshot {
        collections: server.list_keys(COLLECTIONS).await,
        staging: server.list_keys(STAGING).await,
        runs,
    }
}

/// `/healthz`, a listing and a gRPC listing answer; nothing was written or recorded.
async fn assert_unharmed(server: &TestServer, before: &Snapshot, row: &str) {
    let health = reqwest::get(server.url("/healthz")).await.expect(row);
    assert_eq!(health.status().as_u16(), 200, "{row}: /healthz");
    let (status, body) = server
        .send(
            reqwest::Method::GET,
            "/v1/collections",
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{row}: listing collections: {body}");
    server
        .collection_client()
        .await
        .list_collections(authed(pb::ListCollectionsRequest::default(), KEY_A, NS))
        .await
        .unwrap_or_else(|e| panic!("{row}: gRPC listing: {e:?}"));
    let after = snapshot(server).await;
    assert!(after.staging.is_empty(), "{row}: staging left {after:?}");
    assert_eq!(&after, before, "{row}: something was written");
}

/// A small server (tight limits keep the oversized rows cheap) with one collection of 60
/// documents and one stored k-means run to assign into.
async fn hostile_server() -> (TestServer, String) {
    let server = TestServer::start_with(Options {
        keys: true,
        extra_args: vec![
            "--max-json-bytes".into(),
            MAX_JSON.to_string(),
            "--max-upload-bytes".into(),
            MAX_UPLOAD.to_string(),
        ],
    });
    let (status, body) = server
        .upload_parquet(
            KEY_A,
            "col_ok",
            example_parquet(60, DIM, 3, "ok_", "embedding"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.execute_rest(KEY_A, &execute_body()).await;
    assert_eq!(status, 200, "{body}");
    let run_id = body["run_id"].as_str().expect("run_id").to_owned();
    (server, run_id)
}

fn assert_error_body(row: &str, body: &Value, code: &str, field: Option<&str>) {
    assert_eq!(body["error"]["code"], code, "{row}: {body}");
    assert_eq!(body["error"]["field"].as_str(), field, "{row}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "{row}: message in {body}"
    );
}

#[tokio::test]
async fn hostile_rest_requests_get_the_error_table_answer_and_leave_nothing_behind() {
    let (server, run_id) = hostile_server().await;
    let before = snapshot(&server).await;
    let rows = rest_rows(&run_id);
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let client = reqwest::Client::new();
    for row in rows {
        let mut req = client
            .request(row.method.clone(), server.url(&row.path))
            .bearer_auth(KEY_A)
            .header("X-Namespace", NS)
            .timeout(std::time::Duration::from_secs(10))
            .body(row.body);
        if let Some(ct) = row.content_type {
            req = req.header("Content-Type", ct);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", row.name));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not a JSON error body ({e}): {text:?}", row.name));
        assert_eq!(status, row.status, "{}: {body}", row.name);
        assert_error_body(row.name, &body, row.code, row.field);
        assert_unharmed(&server, &before, row.name).await;
    }
}

struct GrpcRow {
    name: &'static str,
    code: Code,
    error_code: &'static str,
    field: Option<&'static str>,
}

fn grpc_row(
    name: &'static str,
    code: Code,
    error_code: &'static str,
    field: Option<&'static str>,
) -> GrpcRow {
    GrpcRow {
        name,
        code,
        error_code,
        field,
    }
}

fn assert_status(row: &GrpcRow, result: Result<(), tonic::Status>) {
    let status = match result {
        Ok(()) => panic!("{}: accepted", row.name),
        Err(s) => s,
    };
    assert_eq!(status.code(), row.code, "{}: {status:?}", row.name);
    let md = |k: &str| status.metadata().get(k).and_then(|v| v.to_str().ok());
    assert_eq!(
        md("x-error-code"),
        Some(row.error_code),
        "{}: {status:?}",
        row.name
    );
    assert_eq!(md("x-error-field"), row.field, "{}: {status:?}", row.name);
    assert!(!status.message().trim().is_empty(), "{}: message", row.name);
}

fn number(n: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(n)),
    }
}

/// `depth` lists inside each other, past prost's recursion limit.
fn nested_list(depth: usize) -> prost_types::Value {
    let mut v = number(1.0);
    for _ in 0..depth {
        v = prost_types::Value {
            kind: Some(prost_types::value::Kind::ListValue(
                prost_types::ListValue { values: vec![v] },
            )),
        };
    }
    v
}

fn proto_with(f: impl FnOnce(&mut pb::ExecuteClusteringRequest)) -> pb::ExecuteClusteringRequest {
    let mut r = to_proto(&execute_body());
    f(&mut r);
    r
}

fn set_param(r: &mut pb::ExecuteClusteringRequest, name: &str, v: prost_types::Value) {
    if let Some(p) = r.config.as_mut().and_then(|c| c.algorithm_params.as_mut()) {
        p.fields.insert(name.to_owned(), v);
    }
}

fn upsert_parquet(collection: &str, bytes: Vec<u8>) -> Vec<pb::UpsertDocumentsRequest> {
    vec![pb::UpsertDocumentsRequest {
        collection_id: collection.to_owned(),
        documents: Vec::new(),
        parquet_chunk: bytes,
    }]
}

fn upsert_document(collection: &str, values: Vec<f32>) -> Vec<pb::UpsertDocumentsRequest> {
    vec![pb::UpsertDocumentsRequest {
        collection_id: collection.to_owned(),
        documents: vec![pb::Document {
            document_id: "d".to_owned(),
            vectors: [("embedding".to_owned(), pb::Vector { values })].into(),
            attributes: None,
        }],
        parquet_chunk: Vec::new(),
    }]
}

#[tokio::test]
async fn hostile_grpc_requests_get_the_error_table_answer_and_leave_nothing_behind() {
    let (server, run_id) = hostile_server().await;
    let before = snapshot(&server).await;
    let mut clusters = server.cluster_client().await;
    let mut collections = server.collection_client().await;
    let valid = valid_parquet();
    let big_name = "a".repeat(10_000);
    let mut rows = 0usize;

    let executes: Vec<(GrpcRow, pb::ExecuteClusteringRequest)> = vec![
        (
            grpc_row(
                "empty collection_ids",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_ids"),
            ),
            proto_with(|r| r.collection_ids.clear()),
        ),
        (
            grpc_row(
                "collection id with ..",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_ids[0]"),
            ),
            proto_with(|r| r.collection_ids = vec!["../int_org_b".into()]),
        ),
        (
            grpc_row(
                "collection id with NUL",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_ids[0]"),
            ),
            proto_with(|r| r.collection_ids = vec!["col\u{0}ok".into()]),
        ),
        (
            grpc_row(
                "collection id of 10 000 chars",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_ids[0]"),
            ),
            proto_with(|r| r.collection_ids = vec![big_name.clone()]),
        ),
        (
            grpc_row(
                "collection id with an RTL override",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_ids[0]"),
            ),
            proto_with(|r| r.collection_ids = vec!["col\u{202E}ko".into()]),
        ),
        (
            grpc_row(
                "negative sample_size",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("sample_size"),
            ),
            proto_with(|r| r.sample_size = Some(-1)),
        ),
        (
            grpc_row(
                "n_clusters 1e300",
                Code::InvalidArgument,
                "invalid_request",
                Some("config.algorithm_params.n_clusters"),
            ),
            proto_with(|r| set_param(r, "n_clusters", number(1e300))),
        ),
        (
            grpc_row(
                "n_clusters NaN",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("config.algorithm_params.n_clusters"),
            ),
            proto_with(|r| set_param(r, "n_clusters", number(f64::NAN))),
        ),
        (
            grpc_row(
                "n_clusters infinite",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("config.algorithm_params.n_clusters"),
            ),
            proto_with(|r| set_param(r, "n_clusters", number(f64::INFINITY))),
        ),
        (
            grpc_row(
                "negative n_clusters",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("config.algorithm_params.n_clusters"),
            ),
            proto_with(|r| set_param(r, "n_clusters", number(-3.0))),
        ),
        (
            grpc_row(
                "n_clusters as a string",
                Code::InvalidArgument,
                "invalid_request",
                Some("config.algorithm_params.n_clusters"),
            ),
            proto_with(|r| {
                set_param(
                    r,
                    "n_clusters",
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue("five".into())),
                    },
                )
            }),
        ),
        (
            grpc_row(
                "parameters nested past the decoder's depth",
                Code::InvalidArgument,
                "invalid_request",
                Some("body"),
            ),
            proto_with(|r| set_param(r, "n_clusters", nested_list(200))),
        ),
        (
            grpc_row(
                "message past --max-json-bytes",
                Code::ResourceExhausted,
                "payload_too_large",
                None,
            ),
            proto_with(|r| {
                if let Some(c) = r.config.as_mut() {
                    c.description = Some("x".repeat(MAX_JSON));
                }
            }),
        ),
    ];
    for (row, req) in executes {
        let result = clusters.execute(authed(req, KEY_A, NS)).await.map(|_| ());
        assert_status(&row, result);
        assert_unharmed(&server, &before, row.name).await;
        rows += 1;
    }

    let upserts: Vec<(GrpcRow, Vec<pb::UpsertDocumentsRequest>)> = vec![
        (
            grpc_row(
                "NaN in a document vector",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("documents[0].embedding"),
            ),
            upsert_document("col_new", vec![1.0, f32::NAN]),
        ),
        (
            grpc_row(
                "infinity in a document vector",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("documents[0].embedding"),
            ),
            upsert_document("col_new", vec![f32::INFINITY, 1.0]),
        ),
        (
            grpc_row(
                "an empty document vector",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("documents[0].embedding"),
            ),
            upsert_document("col_new", Vec::new()),
        ),
        (
            grpc_row(
                "upsert into ..",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_id"),
            ),
            upsert_parquet("../int_org_b", valid.clone()),
        ),
        (
            grpc_row(
                "upsert into a NUL name",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_id"),
            ),
            upsert_parquet("col\u{0}x", valid.clone()),
        ),
        (
            grpc_row(
                "an empty stream",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_id"),
            ),
            Vec::new(),
        ),
        (
            grpc_row(
                "truncated Parquet",
                Code::InvalidArgument,
                "invalid_request",
                Some("body"),
            ),
            upsert_parquet("col_new", valid[..valid.len() / 2].to_vec()),
        ),
        (
            grpc_row(
                "Parquet without document_id",
                Code::InvalidArgument,
                "invalid_request",
                Some("document_id"),
            ),
            upsert_parquet(
                "col_new",
                parquet_of(vec![("doc", ids(4)), ("embedding", vectors(4, DIM, None))]),
            ),
        ),
        (
            grpc_row(
                "NaN in a Parquet vector",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("embedding"),
            ),
            upsert_parquet(
                "col_new",
                parquet_of(vec![
                    ("document_id", ids(4)),
                    ("embedding", vectors(4, DIM, Some(f32::NAN))),
                ]),
            ),
        ),
        (
            grpc_row(
                "Parquet vector of strings over a float vector",
                Code::FailedPrecondition,
                "conflict",
                Some("embedding"),
            ),
            upsert_parquet(
                "col_ok",
                parquet_of(vec![
                    ("document_id", ids(4)),
                    ("embedding", string_vectors(4)),
                ]),
            ),
        ),
        (
            grpc_row(
                "one message past --max-upload-bytes",
                Code::ResourceExhausted,
                "payload_too_large",
                None,
            ),
            upsert_parquet("col_new", vec![7u8; MAX_UPLOAD + 1]),
        ),
        (
            grpc_row(
                "a stream past --max-upload-bytes",
                Code::ResourceExhausted,
                "payload_too_large",
                None,
            ),
            (0..5)
                .map(|_| pb::UpsertDocumentsRequest {
                    collection_id: "col_new".into(),
                    documents: Vec::new(),
                    parquet_chunk: vec![7u8; MAX_UPLOAD / 4],
                })
                .collect(),
        ),
    ];
    for (row, messages) in upserts {
        let result = collections
            .upsert_documents(authed(futures::stream::iter(messages), KEY_A, NS))
            .await
            .map(|_| ());
        assert_status(&row, result);
        assert_unharmed(&server, &before, row.name).await;
        rows += 1;
    }

    let r = |name, code, error_code, field| grpc_row(name, code, error_code, field);
    let members = |offset: Option<i64>, limit: Option<i32>, cluster_id: Option<&str>| {
        pb::ListMembersRequest {
            run_id: run_id.clone(),
            cluster_id: cluster_id.map(str::to_owned),
            offset,
            limit,
        }
    };
    let assign = |vectors: Vec<Vec<f32>>, collection_id: Option<&str>, document_ids: Vec<&str>| {
        pb::AssignRequest {
            run_id: run_id.clone(),
            vectors: vectors
                .into_iter()
                .map(|values| pb::AssignVector { values })
                .collect(),
            collection_id: collection_id.map(str::to_owned),
            document_ids: document_ids.into_iter().map(str::to_owned).collect(),
        }
    };
    let mut others: Vec<(GrpcRow, Result<(), tonic::Status>)> = vec![
        (
            r(
                "members offset -1",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("offset"),
            ),
            clusters
                .list_members(authed(members(Some(-1), None, None), KEY_A, NS))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "members limit 0",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("limit"),
            ),
            clusters
                .list_members(authed(members(None, Some(0), None), KEY_A, NS))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "members of an empty cluster id",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("cluster_id"),
            ),
            clusters
                .list_members(authed(members(None, None, Some("")), KEY_A, NS))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "runs limit -5",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("limit"),
            ),
            clusters
                .list_runs(authed(
                    pb::ListRunsRequest {
                        limit: Some(-5),
                        ..Default::default()
                    },
                    KEY_A,
                    NS,
                ))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "run id with NUL",
                Code::InvalidArgument,
                "invalid_request",
                Some("run_id"),
            ),
            clusters
                .get_run(authed(
                    pb::GetRunRequest {
                        run_id: "run\u{0}x".into(),
                    },
                    KEY_A,
                    NS,
                ))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "delete a collection named ..",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_id"),
            ),
            collections
                .delete_collection(authed(
                    pb::DeleteCollectionRequest {
                        collection_id: "..".into(),
                    },
                    KEY_A,
                    NS,
                ))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "assign nothing",
                Code::InvalidArgument,
                "invalid_request",
                Some("vectors"),
            ),
            clusters
                .assign(authed(assign(Vec::new(), None, Vec::new()), KEY_A, NS))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "assign a vector of the wrong dimension",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("vectors[0]"),
            ),
            clusters
                .assign(authed(
                    assign(vec![vec![1.0, 2.0]], None, Vec::new()),
                    KEY_A,
                    NS,
                ))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "assign a NaN vector",
                Code::InvalidArgument,
                "invalid_parameter",
                Some("vectors[0]"),
            ),
            clusters
                .assign(authed(
                    assign(vec![vec![f32::NAN; DIM]], None, Vec::new()),
                    KEY_A,
                    NS,
                ))
                .await
                .map(|_| ()),
        ),
        (
            r(
                "assign from a collection named ..",
                Code::InvalidArgument,
                "invalid_request",
                Some("collection_id"),
            ),
            clusters
                .assign(authed(
                    assign(Vec::new(), Some("../int_org_b"), vec!["h0"]),
                    KEY_A,
                    NS,
                ))
                .await
                .map(|_| ()),
        ),
    ];
    others.push((
        r(
            "a unary call without a message",
            Code::InvalidArgument,
            "invalid_request",
            None,
        ),
        execute_without_a_message(&server).await,
    ));
    for (row, result) in others {
        assert_status(&row, result);
        assert_unharmed(&server, &before, row.name).await;
        rows += 1;
    }
    assert!(rows >= 30, "{rows} rows");
}

/// Execute called as a client stream that ends before its one message (a client that hangs
/// up half-way, or a hand-made frame).
async fn execute_without_a_message(server: &TestServer) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/clusterd.v1.ClusterService/Execute");
    let codec = tonic_prost::ProstCodec::<
        pb::ExecuteClusteringRequest,
        pb::ExecuteClusteringResponse,
    >::default();
    grpc.client_streaming(
        authed(
            futures::stream::empty::<pb::ExecuteClusteringRequest>(),
            KEY_A,
            NS,
        ),
        path,
        codec,
    )
    .await
    .map(|_| ())
}
