//! Collection upload (Parquet and JSON), upsert, list paging, delete, conflicts.

use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;
use clusterd::api::grpc::pb;

async fn post_json(server: &TestServer, collection: &str, body: &Value) -> (u16, Value) {
    let path = format!("/v1/collections/{collection}/documents");
    server
        .send(reqwest::Method::POST, &path, Some(KEY_A), NS, Some(body))
        .await
}

async fn list(server: &TestServer, query: &str) -> (u16, Value) {
    let path = format!("/v1/collections{query}");
    server
        .send(reqwest::Method::GET, &path, Some(KEY_A), NS, None)
        .await
}

#[tokio::test]
async fn json_documents_upload_with_nested_attributes_and_upsert_by_document_id() {
    let server = TestServer::start();
    let docs = json!({"documents": [
        {"document_id": "d1", "embedding": [1.0, 0.0, 0.0], "category": "x", "metadata": {"status": "a"}},
        {"document_id": "d2", "embedding": [0.0, 1.0, 0.0], "category": "y", "metadata": {"status": "b"}},
        {"document_id": "d3", "embedding": [0.0, 0.0, 1.0], "category": "y", "metadata": {"status": "b"}}
    ]});
    let (status, body) = post_json(&server, "docs", &docs).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["documents"], 3);
    // d1 again, moved next to d2: the later upload wins.
    let again = json!({"documents": [
        {"document_id": "d1", "embedding": [0.0, 0.9, 0.1], "category": "y", "metadata": {"status": "b"}}
    ]});
    let (status, _) = post_json(&server, "docs", &again).await;
    assert_eq!(status, 200);
    let (_, listed) = list(&server, "").await;
    let c = &listed["collections"][0];
    assert_eq!(c["collection_id"], "docs");
    assert_eq!(c["parts"], 2);
    assert_eq!(c["vector_columns"][0]["name"], "embedding");
    assert_eq!(c["vector_columns"][0]["dimension"], 3);

    let run = json!({
        "collection_ids": ["docs"],
        "config": {"algorithm": "kmeans", "algorithm_params": {"n_clusters": 2, "random_state": 1},
                   "feature_vector": {"vector_name": "embedding"}},
        "include_members": true
    });
    let (status, out) = server.execute_rest(KEY_A, &run).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["num_documents"], 3, "d1 counted once: {out}");
    let members = out["members"].as_array().expect("members");
    let cluster_of = |id: &str| {
        members
            .iter()
            .find(|m| m["document_id"] == id)
            .map(|m| m["cluster_id"].clone())
    };
    assert_eq!(cluster_of("d1"), cluster_of("d2"), "{out}");
}

#[tokio::test]
async fn upload_with_another_dimension_is_a_409_conflict() {
    let server = TestServer::start();
    let (s, _) = server
        .upload_parquet(KEY_A, "col", example_parquet(10, 16, 2, "a_", "embedding"))
        .await;
    assert_eq!(s, 200);
    let (s, body) = server
        .upload_parquet(KEY_A, "col", example_parquet(10, 8, 2, "b_", "embedding"))
        .await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let docs = json!({"documents": [{"document_id": "z", "embedding": [1.0, 2.0]}]});
    let (s, body) = post_json(&server, "col", &docs).await;
    assert_eq!(s, 409, "{body}");
    // Over gRPC the same conflict is FAILED_PRECONDITION.
    let msg = pb::UpsertDocumentsRequest {
        collection_id: "col".into(),
        documents: vec![pb::Document {
            document_id: "z".into(),
            vectors: [(
                "embedding".to_owned(),
                pb::Vector {
                    values: vec![1.0, 2.0],
                },
            )]
            .into_iter()
            .collect(),
            attributes: None,
        }],
        parquet_chunk: Vec::new(),
    };
    let err = server
        .collection_client()
        .await
        .upsert_documents(authed(tokio_stream::iter(vec![msg]), KEY_A, NS))
        .await
        .expect_err("conflict");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // Nothing was published by the refused uploads.
    let (_, listed) = list(&server, "").await;
    assert_eq!(listed["collections"][0]["parts"], 1);
}

#[tokio::test]
async fn rejects_bad_uploads_with_named_fields() {
    let server = TestServer::start();
    let (s, body) = server
        .upload_parquet(KEY_A, "col", b"definitely not parquet".to_vec())
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = post_json(
        &server,
        "col",
        &json!({"documents": [{"embedding": [1.0]}]}),
    )
    .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (400, Some("documents[0].document_id")),
        "{body}"
    );
    let (s, _) = post_json(&server, "col", &json!({"documents": []})).await;
    assert_eq!(s, 400);
    let (s, body) = post_json(
        &server,
        "col",
        &json!({"documents": [
            {"document_id": "a", "embedding": [1.0, 2.0]},
            {"document_id": "b", "embedding": [1.0, 2.0, 3.0]}
        ]}),
    )
    .await;
    assert_eq!(s, 422, "{body}");
    // Traversal in the path segment.
    let resp = reqwest::Client::new()
        .post(server.url("/v1/collections/..%2Fescape/documents"))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .json(&json!({"documents": [{"document_id": "a", "embedding": [1.0]}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = reqwest::Client::new()
        .post(server.url("/v1/collections/col/documents"))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .header("Content-Type", "text/csv")
        .body("a,b")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn list_pages_and_delete_on_both_transports() {
    let server = TestServer::start();
    for name in ["c1", "c2", "c3"] {
        let (s, _) = server
            .upload_parquet(KEY_A, name, example_parquet(5, 4, 1, "x_", "embedding"))
            .await;
        assert_eq!(s, 200);
    }
    let (_, page1) = list(&server, "?limit=2").await;
    let ids: Vec<&str> = page1["collections"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["collection_id"].as_str())
        .collect();
    assert_eq!(ids, ["c1", "c2"]);
    let token = page1["next_page_token"]
        .as_str()
        .expect("next page")
        .to_owned();
    let (_, page2) = list(&server, &format!("?limit=2&page_token={token}")).await;
    assert_eq!(page2["collections"][0]["collection_id"], "c3");
    assert_eq!(page2["next_page_token"], Value::Null);
    let (s, body) = list(&server, "?limit=0").await;
    assert_eq!((s, body["error"]["field"].as_str()), (422, Some("limit")));

    let mut client = server.collection_client().await;
    let p = client
        .list_collections(authed(
            pb::ListCollectionsRequest {
                limit: Some(2),
                page_token: None,
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(p.collections.len(), 2);
    assert!(p.next_page_token.is_some());

    let resp = reqwest::Client::new()
        .delete(server.url("/v1/collections/c1"))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    client
        .delete_collection(authed(
            pb::DeleteCollectionRequest {
                collection_id: "c2".into(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("delete over gRPC");
    let err = client
        .delete_collection(authed(
            pb::DeleteCollectionRequest {
                collection_id: "c2".into(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect_err("already deleted");
    assert_eq!(err.code(), Code::NotFound);
    let (_, rest) = list(&server, "").await;
    assert_eq!(rest["collections"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn parquet_upload_over_grpc_in_chunks() {
    let server = TestServer::start();
    let bytes = example_parquet(50, 8, 2, "p_", "embedding");
    let messages: Vec<pb::UpsertDocumentsRequest> = bytes
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| pb::UpsertDocumentsRequest {
            collection_id: if i == 0 {
                "chunked".into()
            } else {
                String::new()
            },
            documents: Vec::new(),
            parquet_chunk: chunk.to_vec(),
        })
        .collect();
    let resp = server
        .collection_client()
        .await
        .upsert_documents(authed(tokio_stream::iter(messages), KEY_A, NS))
        .await
        .expect("upsert")
        .into_inner();
    assert_eq!(resp.documents, 50);
}
