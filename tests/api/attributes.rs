//! attribute_based clustering through the service: groups by nested and list-valued
//! attributes, flat and hierarchical, missing values in an explicit null group.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::harness::*;

/// (category, brand, metadata.status or missing, tags)
const DOCS: [(&str, &str, Option<&str>, &[&str]); 8] = [
    ("shoes", "acme", Some("active"), &["red", "sale"]),
    ("shoes", "acme", Some("active"), &["red"]),
    ("shoes", "zeta", Some("retired"), &["blue", "sale"]),
    ("shoes", "zeta", None, &["sale"]),
    ("hats", "acme", Some("active"), &["red"]),
    ("hats", "acme", Some("active"), &[]),
    ("hats", "brim", Some("active"), &["blue"]),
    ("shoes", "acme", Some("active"), &["sale", "red"]),
];

async fn server_with_products() -> TestServer {
    let server = TestServer::start();
    let docs: Vec<Value> = DOCS
        .iter()
        .enumerate()
        .map(|(i, (category, brand, status, tags))| {
            let mut metadata = json!({"sku": i});
            if let Some(s) = status {
                metadata["status"] = json!(s);
            }
            json!({
                "document_id": format!("p{i:04}"),
                "embedding": [i as f32, (i % 2) as f32],
                "category": category,
                "brand": brand,
                "metadata": metadata,
                "tags": tags,
            })
        })
        .collect();
    upload_json_documents(&server, "products", docs).await;
    server
}

fn request(attribute_config: Value, feature_vector: bool) -> Value {
    let mut body = json!({
        "collection_ids": ["products"],
        "config": {
            "algorithm": "attribute_based",
            "attribute_config": attribute_config,
            "normalize_features": false
        },
        "include_members": true,
        "store_results": true
    });
    if feature_vector {
        body["config"]["feature_vector"] = json!({"vector_name": "embedding"});
    }
    body
}

/// cluster_id -> the centroid row.
fn by_id(body: &Value) -> HashMap<String, Value> {
    body["centroids"]
        .as_array()
        .expect("centroids")
        .iter()
        .map(|c| (c["cluster_id"].as_str().expect("id").to_owned(), c.clone()))
        .collect()
}

#[tokio::test]
async fn flat_groups_by_nested_attributes_with_an_explicit_null_group() {
    let server = server_with_products().await;
    let (status, body) = server
        .execute_rest(
            KEY_A,
            &request(
                json!({"attributes": ["category", "metadata.status"]}),
                false,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // shoes/active (3), hats/active (3), shoes/retired, shoes/(null).
    assert_eq!(body["num_clusters"], 4);
    let centroids = by_id(&body);
    let sizes: Vec<u64> = body["centroids"]
        .as_array()
        .expect("centroids")
        .iter()
        .filter_map(|c| c["num_members"].as_u64())
        .collect();
    assert_eq!(sizes, [3, 3, 1, 1], "largest first");
    let null_group = centroids
        .values()
        .find(|c| c["label"].as_str().is_some_and(|l| l.contains("(null)")))
        .expect("the document without metadata.status is in a null group");
    assert_eq!(null_group["num_members"], 1);
    // No feature vector: no centroid, no distance, metrics say why.
    assert!(
        centroids
            .values()
            .all(|c| c["centroid_vector"] == json!([]))
    );
    let members = body["members"].as_array().expect("members");
    assert_eq!(members.len(), DOCS.len(), "every document once");
    assert!(members.iter().all(|m| m["distance_to_centroid"].is_null()));
    assert!(body["metrics"]["note"].as_str().is_some(), "{body}");

    // With a feature vector the centroid is the mean member vector.
    let (status, body) = server
        .execute_rest(
            KEY_A,
            &request(json!({"attributes": ["category", "metadata.status"]}), true),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let first = &body["centroids"][0];
    assert_eq!(first["feature_dimensions"], 2);
    assert!(body["members"][0]["distance_to_centroid"].is_number());
    assert!(body["metrics"]["silhouette_score"].is_number(), "{body}");
}

#[tokio::test]
async fn hierarchical_groups_form_a_tree_of_clusters_over_grpc_and_in_clusters_parquet() {
    let server = server_with_products().await;
    let body = request(
        json!({"attributes": ["category", "brand"], "hierarchical_grouping": true}),
        true,
    );
    let resp = server
        .cluster_client()
        .await
        .execute(authed(to_proto(&body), KEY_A, NS))
        .await
        .expect("attribute_based over gRPC")
        .into_inner();
    // Leaves: shoes/acme, shoes/zeta, hats/acme, hats/brim; plus the two categories.
    assert_eq!(resp.num_clusters, 4);
    assert_eq!(resp.centroids.len(), 6);
    let ids: HashMap<&str, _> = resp
        .centroids
        .iter()
        .map(|c| (c.cluster_id.as_str(), c))
        .collect();
    for c in &resp.centroids {
        match c.level {
            Some(0) => assert!(c.parent_cluster_id.is_none()),
            Some(1) => {
                let parent = ids[c.parent_cluster_id.as_deref().expect("a parent")];
                assert_eq!(parent.level, Some(0));
                let category = parent.label.as_deref().expect("label");
                assert!(
                    c.label.as_deref().expect("label").starts_with(category),
                    "{:?} under {category}",
                    c.label
                );
            }
            other => panic!("level {other:?}"),
        }
    }
    let shoes = resp
        .centroids
        .iter()
        .find(|c| c.level == Some(0) && c.label.as_deref() == Some("category=shoes"))
        .expect("shoes node");
    assert_eq!(shoes.num_members, 5, "a parent counts its subtree");
    // Members belong to the leaves.
    assert_eq!(resp.members.len(), DOCS.len());
    assert!(
        resp.members
            .iter()
            .all(|m| ids[m.cluster_id.as_str()].level == Some(1))
    );

    let batches = server.artifact(&resp.run_id, "clusters.parquet").await;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 6);
    for b in &batches {
        assert!(b.column_by_name("parent_cluster_id").is_some());
        assert!(b.column_by_name("level").is_some());
    }
}

#[tokio::test]
async fn list_attributes_follow_the_aggregation_method() {
    let server = server_with_products().await;
    // all: one membership per tag; the document without tags is in the null group.
    let (status, body) = server
        .execute_rest(
            KEY_A,
            &request(
                json!({"attributes": ["tags"], "aggregation_method": "all"}),
                true,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tags: usize = DOCS.iter().map(|d| d.3.len().max(1)).sum();
    let members = body["members"].as_array().expect("members");
    assert_eq!(members.len(), tags, "one membership per value");
    let p0: Vec<&Value> = members
        .iter()
        .filter(|m| m["document_id"] == "p0000")
        .collect();
    assert_eq!(p0.len(), 2, "red and sale");
    assert!(
        body["metrics"]["note"].as_str().is_some(),
        "not a partition"
    );

    // most_frequent: each document once, under its most frequent tag overall.
    let (status, body) = server
        .execute_rest(
            KEY_A,
            &request(
                json!({"attributes": ["tags"], "aggregation_method": "most_frequent"}),
                true,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let members = body["members"].as_array().expect("members");
    assert_eq!(members.len(), DOCS.len());
    let centroids = by_id(&body);
    let label_of = |doc: &str| {
        let m = members
            .iter()
            .find(|m| m["document_id"] == doc)
            .expect("member");
        centroids[m["cluster_id"].as_str().expect("id")]["label"].clone()
    };
    // red and sale are each on four documents; the tie goes to the smaller value.
    assert_eq!(label_of("p0000"), "tags=red");
    assert_eq!(label_of("p0003"), "tags=sale");
    assert_eq!(label_of("p0005"), "tags=(null)");
}
