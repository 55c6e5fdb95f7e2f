//! The error table of DESIGN §1, each case on both transports: REST status + JSON body,
//! gRPC code + the field in `x-error-field`.

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;

/// A Parquet file with one NaN vector, as a user could drop it into the store directly
/// (uploads refuse it, so it can only arrive that way).
fn parquet_with_nan() -> Vec<u8> {
    let mut vectors = FixedSizeListBuilder::new(Float32Builder::new(), 4)
        .with_field(Arc::new(Field::new("item", DataType::Float32, false)));
    for i in 0..6 {
        for j in 0..4 {
            let v = if i == 3 && j == 2 {
                f32::NAN
            } else {
                (i * j) as f32
            };
            vectors.values().append_value(v);
        }
        vectors.append(true);
    }
    let vectors = vectors.finish();
    let schema = Arc::new(Schema::new(vec![
        Field::new("document_id", DataType::Utf8, false),
        Field::new(
            REF_VECTOR,
            arrow_array::Array::data_type(&vectors).clone(),
            false,
        ),
    ]));
    let ids = StringArray::from((0..6).map(|i| format!("nan_doc_{i}")).collect::<Vec<_>>());
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(vectors)])
        .expect("batch");
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    buf
}

struct Case {
    name: &'static str,
    body: Value,
    http: u16,
    code: &'static str,
    field: Option<&'static str>,
    grpc: Code,
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut b = reference_body();
    f(&mut b);
    b
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "unknown algorithm",
            body: with(|b| b["config"]["algorithm"] = json!("kmeanz")),
            http: 400,
            code: "invalid_request",
            field: Some("config.algorithm"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "unknown parameter",
            body: with(|b| b["config"]["algorithm_params"]["n_clusterz"] = json!(3)),
            http: 400,
            code: "invalid_request",
            field: Some("config.algorithm_params.n_clusterz"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "out-of-range parameter",
            body: with(|b| b["config"]["algorithm_params"]["n_clusters"] = json!(0)),
            http: 422,
            code: "invalid_parameter",
            field: Some("config.algorithm_params.n_clusters"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "fractional integer parameter",
            body: with(|b| b["config"]["algorithm_params"]["n_clusters"] = json!(5.5)),
            http: 400,
            code: "invalid_request",
            field: Some("config.algorithm_params.n_clusters"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "n_clusters above the number of documents",
            body: with(|b| b["config"]["algorithm_params"]["n_clusters"] = json!(601)),
            http: 422,
            code: "invalid_parameter",
            field: Some("config.algorithm_params.n_clusters"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "missing collection",
            body: with(|b| b["collection_ids"] = json!(["col_products_v1", "col_missing"])),
            http: 404,
            code: "not_found",
            field: Some("collection_ids[1]"),
            grpc: Code::NotFound,
        },
        Case {
            name: "missing vector column",
            body: with(|b| {
                b["config"]["feature_vector"] = json!({"vector_name": "no_such_column"})
            }),
            http: 404,
            code: "not_found",
            field: Some("config.feature_vector"),
            grpc: Code::NotFound,
        },
        Case {
            name: "dimension mismatch across collections",
            body: with(|b| b["collection_ids"] = json!(["col_products_v1", "col_dim8"])),
            http: 422,
            code: "invalid_parameter",
            field: Some("collection_ids"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "NaN in a vector",
            body: with(|b| b["collection_ids"] = json!(["col_nan"])),
            http: 422,
            code: "invalid_parameter",
            field: Some("config.feature_vector"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "malformed feature_address",
            body: with(|b| {
                b["config"]["feature_vector"] =
                    json!({"feature_address": "text_extractor_v1_embedding"})
            }),
            http: 400,
            code: "invalid_request",
            field: Some("config.feature_vector.feature_address"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "empty collection_ids",
            body: with(|b| b["collection_ids"] = json!([])),
            http: 400,
            code: "invalid_request",
            field: Some("collection_ids"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "collection name with ..",
            body: with(|b| b["collection_ids"] = json!(["../int_org_b"])),
            http: 400,
            code: "invalid_request",
            field: Some("collection_ids[0]"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "collection name with /",
            body: with(|b| b["collection_ids"] = json!(["col_products_v1", "a/b"])),
            http: 400,
            code: "invalid_request",
            field: Some("collection_ids[1]"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "namespace_id differs from X-Namespace",
            body: with(|b| b["namespace_id"] = json!("staging")),
            http: 400,
            code: "invalid_request",
            field: Some("namespace_id"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "internal_id of another organisation",
            body: with(|b| b["internal_id"] = json!("int_org_b")),
            http: 403,
            code: "permission_denied",
            field: Some("internal_id"),
            grpc: Code::PermissionDenied,
        },
        Case {
            name: "attribute_based without attribute_config",
            body: with(|b| {
                b["config"]["algorithm"] = json!("attribute_based");
                b["config"]
                    .as_object_mut()
                    .map(|c| c.remove("algorithm_params"));
            }),
            http: 400,
            code: "invalid_request",
            field: Some("config.attribute_config"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "attribute path that no collection has",
            body: with(|b| {
                b["config"]["algorithm"] = json!("attribute_based");
                b["config"]["attribute_config"] = json!({"attributes": ["metadata.nope"]});
                b["config"]
                    .as_object_mut()
                    .map(|c| c.remove("algorithm_params"));
            }),
            http: 404,
            code: "not_found",
            field: Some("config.attribute_config.attributes[0]"),
            grpc: Code::NotFound,
        },
        Case {
            name: "artifacts of a run without vectors",
            body: with(|b| {
                b["config"]["algorithm"] = json!("attribute_based");
                b["config"]["attribute_config"] = json!({"attributes": ["category"]});
                b["config"]
                    .as_object_mut()
                    .map(|c| c.remove("algorithm_params"));
                b["config"]
                    .as_object_mut()
                    .map(|c| c.remove("feature_vector"));
                b["save_artifacts"] = json!(true);
            }),
            http: 400,
            code: "invalid_request",
            field: Some("save_artifacts"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "unknown aggregation method",
            body: with(|b| {
                b["config"]["algorithm"] = json!("attribute_based");
                b["config"]["attribute_config"] =
                    json!({"attributes": ["category"], "aggregation_method": "median"});
                b["config"]
                    .as_object_mut()
                    .map(|c| c.remove("algorithm_params"));
            }),
            http: 422,
            code: "invalid_parameter",
            field: Some("config.attribute_config.aggregation_method"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "density parameter out of range",
            body: with(|b| {
                b["config"]["algorithm"] = json!("dbscan");
                b["config"]["algorithm_params"] = json!({"eps": -0.5});
            }),
            http: 422,
            code: "invalid_parameter",
            field: Some("config.algorithm_params.eps"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "unknown metric for a density algorithm",
            body: with(|b| {
                b["config"]["algorithm"] = json!("dbscan");
                b["config"]["algorithm_params"] = json!({"metric": "hamming"});
            }),
            http: 422,
            code: "invalid_parameter",
            field: Some("config.algorithm_params.metric"),
            grpc: Code::InvalidArgument,
        },
        Case {
            name: "zero sample_size",
            body: with(|b| b["sample_size"] = json!(0)),
            http: 422,
            code: "invalid_parameter",
            field: Some("sample_size"),
            grpc: Code::InvalidArgument,
        },
    ]
}

async fn server_for_errors() -> TestServer {
    let server = server_with_reference_collections().await;
    let (status, body) = server
        .upload_parquet(
            KEY_A,
            "col_dim8",
            example_parquet(20, 8, 2, "d8_", REF_VECTOR),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Dropped into the store by another writer, so it never went through upload validation.
    server
        .put_object(
            &format!("{ORG_A}/{NS}/collections/col_nan/dropped.parquet"),
            parquet_with_nan(),
        )
        .await;
    server
}

#[tokio::test]
async fn every_error_case_answers_with_its_code_and_field_on_both_transports() {
    let server = server_for_errors().await;
    let mut client = server.cluster_client().await;
    for case in cases() {
        let (status, body) = server.execute_rest(KEY_A, &case.body).await;
        assert_eq!(status, case.http, "{}: REST status, body {body}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert_eq!(
            body["error"]["field"].as_str(),
            case.field,
            "{}: {body}",
            case.name
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: message",
            case.name
        );

        let status = client
            .execute(authed(to_proto(&case.body), KEY_A, NS))
            .await
            .expect_err(case.name);
        assert_eq!(
            status.code(),
            case.grpc,
            "{}: gRPC code: {status:?}",
            case.name
        );
        let field = status
            .metadata()
            .get("x-error-field")
            .and_then(|v| v.to_str().ok());
        assert_eq!(field, case.field, "{}: gRPC field", case.name);
        let code = status
            .metadata()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok());
        assert_eq!(code, Some(case.code), "{}: gRPC code metadata", case.name);
    }
}

#[tokio::test]
async fn nan_error_names_the_document() {
    let server = server_for_errors().await;
    let body = with(|b| b["collection_ids"] = json!(["col_nan"]));
    let (_, resp) = server.execute_rest(KEY_A, &body).await;
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nan_doc_3"), "{message}");
}

#[tokio::test]
async fn body_that_is_not_json_is_invalid_request() {
    let server = TestServer::start();
    for raw in ["{not json", "", "[1,2", "null"] {
        let resp = reqwest::Client::new()
            .post(server.url("/v1/clusters/execute"))
            .bearer_auth(KEY_A)
            .header("X-Namespace", NS)
            .header("Content-Type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 400, "{raw:?}");
        let body: Value = resp.json().await.expect("JSON error body");
        assert_eq!(body["error"]["code"], "invalid_request", "{raw:?}");
    }
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_name_the_field() {
    let server = TestServer::start();
    let cases = [
        (with(|b| b["sample_size"] = json!("ten")), "sample_size"),
        (with(|b| b["sample_size"] = json!(10.5)), "sample_size"),
        (with(|b| b["colection_ids"] = json!(["x"])), "colection_ids"),
        (
            with(|b| b["config"]["feature_vector"]["vectorname"] = json!("x")),
            "config.feature_vector.vectorname",
        ),
        (
            with(|b| {
                b.as_object_mut().map(|m| m.remove("collection_ids"));
            }),
            "collection_ids",
        ),
        (with(|b| b["store_results"] = json!("yes")), "store_results"),
    ];
    for (body, field) in cases {
        let (status, resp) = server.execute_rest(KEY_A, &body).await;
        assert_eq!(status, 400, "{field}: {resp}");
        assert_eq!(resp["error"]["field"], field, "{resp}");
    }
}

#[tokio::test]
async fn framework_defaults_do_not_leak() {
    let server = TestServer::start_with(Options {
        keys: true,
        extra_args: vec!["--max-json-bytes".into(), "2048".into()],
    });
    // Our limit, our body (not axum's plain-text 413).
    let mut big = reference_body();
    big["config"]["description"] = json!("x".repeat(4096));
    let (status, body) = server.execute_rest(KEY_A, &big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // Unknown routes and methods answer with the JSON error body too.
    let resp = reqwest::get(server.url("/v1/nope")).await.expect("request");
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "not_found");
    let resp = reqwest::get(server.url("/v1/clusters/execute"))
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 405);
    let body: Value = resp.json().await.expect("JSON");
    assert!(body["error"]["message"].is_string());
}

#[tokio::test]
async fn grpc_accepts_messages_above_tonics_default_cap() {
    // tonic's default is 4 MiB; our --max-json-bytes (8 MiB) governs instead.
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["config"]["description"] = json!("d".repeat(3000));
    body["include_members"] = json!(true);
    let mut req = to_proto(&body);
    // Pad the request past 4 MiB with (valid, distinct) collection ids that are absent:
    // the server must parse it and answer not_found, not refuse its size.
    req.collection_ids
        .extend((0..45_000).map(|i| format!("pad_{i:0>100}")));
    let status = server
        .cluster_client()
        .await
        .execute(authed(req, KEY_A, NS))
        .await
        .expect_err("too many collections");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("collection_ids"), "{status:?}");
}

#[tokio::test]
async fn members_above_the_inline_limit_are_refused_with_413() {
    let server = TestServer::start_with(Options {
        keys: true,
        extra_args: vec!["--max-members".into(), "100".into()],
    });
    let (s, b) = server
        .upload_parquet(
            KEY_A,
            "col_products_v1",
            example_parquet(300, 16, 3, "m_", REF_VECTOR),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let body = with(|b| {
        b["collection_ids"] = json!(["col_products_v1"]);
        b["include_members"] = json!(true);
    });
    let (status, resp) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 413, "{resp}");
    assert_eq!(resp["error"]["field"], "include_members");
    // With a sample within the limit the same request succeeds.
    let body = with(|b| {
        b["collection_ids"] = json!(["col_products_v1"]);
        b["include_members"] = json!(true);
        b["sample_size"] = json!(100);
    });
    let (status, resp) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{resp}");
}

/// Sends raw bytes as a gRPC message, to see how the server treats malformed protobuf.
#[derive(Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

#[tokio::test]
async fn message_that_is_not_protobuf_is_invalid_argument_not_internal() {
    let server = TestServer::start();
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/clusterd.v1.ClusterService/Execute");
    let status = grpc
        .unary(
            authed(vec![0xff, 0xff, 0xff, 0xff], KEY_A, NS),
            path,
            RawCodec,
        )
        .await
        .expect_err("garbage is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let code = status
        .metadata()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok());
    assert_eq!(code, Some("invalid_request"));
}
