//! Placing documents into a fitted clustering: every document beyond `sample_size` in
//! members.parquet (with `sampled`), and `assign` against a stored run over REST and gRPC.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, BooleanArray, Float32Array, Float64Array, RecordBatch, StringArray};
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;
use clusterd::api::grpc::pb;

/// One column of every batch, as its concrete array type.
fn arrays<A: Array + Clone + 'static>(batches: &[RecordBatch], column: &str) -> Vec<A> {
    batches
        .iter()
        .map(|b| {
            b.column_by_name(column)
                .expect("column")
                .as_any()
                .downcast_ref::<A>()
                .expect("column type")
                .clone()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    arrays::<StringArray>(batches, column)
        .iter()
        .flat_map(|a| a.iter().map(|v| v.expect("no nulls").to_owned()))
        .collect()
}

fn floats(batches: &[RecordBatch], column: &str) -> Vec<Option<f32>> {
    arrays::<Float32Array>(batches, column)
        .iter()
        .flat_map(|a| a.iter().collect::<Vec<_>>())
        .collect()
}

fn bools(batches: &[RecordBatch], column: &str) -> Vec<bool> {
    arrays::<BooleanArray>(batches, column)
        .iter()
        .flat_map(|a| a.iter().map(|v| v.expect("no nulls")).collect::<Vec<_>>())
        .collect()
}

/// Rows of a FixedSizeList<Float32> column (null rows as None).
fn vectors(batches: &[RecordBatch], column: &str) -> Vec<Option<Vec<f32>>> {
    batches
        .iter()
        .flat_map(|b| {
            let list = b
                .column_by_name(column)
                .expect("column")
                .as_fixed_size_list()
                .clone();
            (0..list.len()).map(move |i| {
                (!list.is_null(i)).then(|| {
                    list.value(i)
                        .as_primitive::<Float32Type>()
                        .values()
                        .to_vec()
                })
            })
        })
        .collect()
}

fn fixture_rows(fixture: &Value) -> Vec<Vec<f32>> {
    fixture["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    server
        .send(reqwest::Method::POST, path, Some(KEY_A), NS, Some(body))
        .await
}

#[tokio::test]
async fn a_sampled_kmeans_run_places_every_other_document_at_its_nearest_centroid() {
    let fixture = reference_fixture("kmeans_blobs");
    let rows = fixture_rows(&fixture);
    let n = rows.len();
    let server = TestServer::start();
    upload_fixture_rows(&server, "blobs", &fixture).await;
    let mut body = fixture_request(
        "blobs",
        "kmeans",
        &json!({"n_clusters": fixture["n_clusters"], "random_state": 0}),
    );
    body["sample_size"] = json!(150);
    body["include_members"] = json!(false);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["num_documents"], 150,
        "the response describes the clustered sample"
    );
    assert_eq!(out["placed_documents"], n - 150);
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();

    let clusters = server.artifact(&run_id, "clusters.parquet").await;
    let cluster_ids = strings(&clusters, "cluster_id");
    let centroids: Vec<Vec<f32>> = vectors(&clusters, "centroid")
        .into_iter()
        .map(|c| c.expect("centroid"))
        .collect();

    let members = server.artifact(&run_id, "members.parquet").await;
    let docs = strings(&members, "document_id");
    let assigned = strings(&members, "cluster_id");
    let sampled = bools(&members, "sampled");
    let distance = floats(&members, "distance_to_centroid");
    let coordinates = vectors(&members, "coordinates");
    assert_eq!(docs.len(), n, "members.parquet covers the whole collection");
    assert_eq!(
        docs.iter().collect::<HashSet<_>>().len(),
        n,
        "each document once"
    );
    assert_eq!(sampled.iter().filter(|&&s| s).count(), 150);
    assert!(
        assigned.windows(2).all(|w| w[0] <= w[1]),
        "sorted by cluster_id"
    );
    assert!(
        coordinates.iter().all(Option::is_some),
        "every member is drawn"
    );

    for i in 0..n {
        let row: usize = docs[i][1..].parse().expect("p<row>");
        let x = &rows[row];
        let (best, best_d) = centroids
            .iter()
            .enumerate()
            .map(|(c, m)| (c, sq_dist(x, m)))
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if !sampled[i] {
            assert_eq!(
                assigned[i], cluster_ids[best],
                "{} is placed at its nearest centroid",
                docs[i]
            );
        }
        let mine = cluster_ids
            .iter()
            .position(|c| *c == assigned[i])
            .expect("a cluster");
        let d = distance[i].expect("distance");
        assert!(
            (f64::from(d) - sq_dist(x, &centroids[mine]).sqrt()).abs() < 1e-3,
            "distance_to_centroid of {}",
            docs[i]
        );
        let _ = best_d;
    }

    // The run records what it did.
    let run = server.run_view(&run_id).await;
    assert_eq!(run["result"]["placed_documents"], n - 150);
}

#[tokio::test]
async fn a_sampled_dbscan_run_places_documents_within_a_core_radius_or_as_noise() {
    let fixture = reference_fixture("density_blobs");
    let rows = fixture_rows(&fixture);
    let n = rows.len();
    let server = TestServer::start();
    upload_fixture_rows(&server, "dense", &fixture).await;
    let eps = 1.0f64;
    let mut body = fixture_request("dense", "dbscan", &json!({"eps": eps, "min_samples": 5}));
    body["sample_size"] = json!(400);
    body["include_members"] = json!(false);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["placed_documents"], n - 400);
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();

    let cores = server.artifact(&run_id, "core_points.parquet").await;
    let core_clusters = strings(&cores, "cluster_id");
    let core_vectors: Vec<Vec<f32>> = vectors(&cores, "vector")
        .into_iter()
        .map(|v| v.expect("vector"))
        .collect();
    let radius: Vec<f64> = arrays::<Float64Array>(&cores, "radius")
        .iter()
        .flat_map(|a| a.values().to_vec())
        .collect();
    assert!(!core_vectors.is_empty());
    assert!(
        radius.iter().all(|&r| (r - eps).abs() < 1e-12),
        "DBSCAN's radius is eps"
    );

    let members = server.artifact(&run_id, "members.parquet").await;
    let docs = strings(&members, "document_id");
    let assigned = strings(&members, "cluster_id");
    let sampled = bools(&members, "sampled");
    assert_eq!(docs.len(), n);
    let mut noise = 0;
    for i in (0..n).filter(|&i| !sampled[i]) {
        let row: usize = docs[i][1..].parse().expect("p<row>");
        let nearest = core_vectors
            .iter()
            .enumerate()
            .map(|(c, v)| (c, sq_dist(&rows[row], v).sqrt()))
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if nearest.1 <= eps {
            assert_eq!(
                assigned[i], core_clusters[nearest.0],
                "{} joins its nearest core's cluster",
                docs[i]
            );
        } else {
            assert_eq!(
                assigned[i], "noise",
                "{} is beyond every core's radius",
                docs[i]
            );
            noise += 1;
        }
    }
    let _ = noise;
}

#[tokio::test]
async fn assign_places_vectors_and_documents_over_rest_and_grpc_as_the_run_did() {
    let fixture = reference_fixture("kmeans_blobs");
    let server = TestServer::start();
    upload_fixture_rows(&server, "blobs", &fixture).await;
    let body = fixture_request(
        "blobs",
        "kmeans",
        &json!({"n_clusters": fixture["n_clusters"], "random_state": 0}),
    );
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();
    let path = format!("/v1/clusters/runs/{run_id}/assign");

    // Each centroid lands in its own cluster, at distance 0.
    let centroids: Vec<Value> = out["centroids"].as_array().expect("centroids").clone();
    let vectors: Vec<Value> = centroids
        .iter()
        .map(|c| c["centroid_vector"].clone())
        .collect();
    let (status, placed) = post(&server, &path, &json!({"vectors": vectors})).await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["rule"], "nearest_centroid");
    assert_eq!(placed["algorithm"], "kmeans");
    for (c, a) in centroids
        .iter()
        .zip(placed["assignments"].as_array().expect("assignments"))
    {
        assert_eq!(a["cluster_id"], c["cluster_id"]);
        assert!(
            a["distance_to_centroid"].as_f64().expect("distance") < 1e-4,
            "{a}"
        );
        assert_eq!(a["coordinates"].as_array().map(Vec::len), Some(2));
    }

    // Documents by id get the cluster the run gave them, in request order.
    let members: HashMap<String, String> = labels_by_document(&out).into_iter().collect();
    let ids: Vec<String> = (0..40).rev().map(row_document_id).collect();
    let (status, placed) = post(
        &server,
        &path,
        &json!({"collection_id": "blobs", "document_ids": ids}),
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    for (id, a) in ids
        .iter()
        .zip(placed["assignments"].as_array().expect("assignments"))
    {
        assert_eq!(a["document_id"], json!(id));
        assert_eq!(a["cluster_id"], json!(members[id]), "{id}");
    }

    // gRPC: the same answer.
    let mut client = server.cluster_client().await;
    let got = client
        .assign(authed(
            pb::AssignRequest {
                run_id: run_id.clone(),
                vectors: Vec::new(),
                collection_id: Some("blobs".into()),
                document_ids: ids.clone(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("assign over gRPC")
        .into_inner();
    assert_eq!(got.rule, "nearest_centroid");
    for (id, a) in ids.iter().zip(&got.assignments) {
        assert_eq!(a.document_id.as_deref(), Some(id.as_str()));
        assert_eq!(a.cluster_id, members[id]);
        assert_eq!(a.coordinates.len(), 2);
    }
    let err = client
        .assign(authed(
            pb::AssignRequest {
                run_id: run_id.clone(),
                vectors: vec![pb::AssignVector {
                    values: vec![1.0, 2.0],
                }],
                collection_id: None,
                document_ids: Vec::new(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect_err("a vector of the wrong width");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("vectors[0]"), "{}", err.message());
}

#[tokio::test]
async fn assign_to_a_density_run_gives_noise_far_from_every_core() {
    let fixture = reference_fixture("density_blobs");
    let rows = fixture_rows(&fixture);
    let server = TestServer::start();
    upload_fixture_rows(&server, "dense", &fixture).await;
    let body = fixture_request("dense", "dbscan", &json!({"eps": 1.0, "min_samples": 5}));
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();
    let members: HashMap<String, String> = labels_by_document(&out).into_iter().collect();
    // A clustered row of the sample goes back to its cluster; a point far away is noise.
    let (row, cluster) = (0..rows.len())
        .map(|i| (i, members[&row_document_id(i)].clone()))
        .find(|(_, c)| c != "noise")
        .expect("a clustered row");
    let far = vec![1.0e4f32; rows[0].len()];
    let (status, placed) = post(
        &server,
        &format!("/v1/clusters/runs/{run_id}/assign"),
        &json!({"vectors": [rows[row], far]}),
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["rule"], "nearest_core");
    assert_eq!(placed["assignments"][0]["cluster_id"], json!(cluster));
    assert_eq!(placed["assignments"][1]["cluster_id"], "noise");
    assert!(placed["assignments"][1]["distance_to_centroid"].is_null());
}

#[tokio::test]
async fn assign_to_a_run_that_found_only_noise_places_every_vector_as_noise() {
    // Found by the load generator (examples/load.rs): such a run stores no centroid row,
    // and assign panicked on a model zero features wide (500) instead of answering noise.
    let fixture = reference_fixture("density_blobs");
    let rows = fixture_rows(&fixture);
    let server = TestServer::start();
    upload_fixture_rows(&server, "dense", &fixture).await;
    let body = fixture_request("dense", "dbscan", &json!({"eps": 1.0e-6, "min_samples": 5}));
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["num_clusters"], 0, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();
    let path = format!("/v1/clusters/runs/{run_id}/assign");
    let (status, placed) = post(&server, &path, &json!({"vectors": [rows[0], rows[1]]})).await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["rule"], "nearest_core");
    for a in placed["assignments"].as_array().expect("assignments") {
        assert_eq!(a["cluster_id"], "noise", "{placed}");
        assert!(a["distance_to_centroid"].is_null(), "{placed}");
    }
    // The width is still the run's: a vector of another width is the caller's error.
    let (status, err) = post(
        &server,
        &path,
        &json!({"vectors": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]}),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["field"], "vectors[0]", "{err}");
}

#[tokio::test]
async fn assign_rejects_bad_requests_naming_the_field() {
    let fixture = reference_fixture("kmeans_blobs");
    let server = TestServer::start();
    upload_fixture_rows(&server, "blobs", &fixture).await;
    let body = fixture_request("blobs", "kmeans", &json!({"n_clusters": 3}));
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();
    let path = format!("/v1/clusters/runs/{run_id}/assign");
    let d = fixture["data"][0].as_array().expect("row").len();
    let good = vec![0.0f32; d];
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "vectors"),
        (json!({"vectors": []}), 400, "vectors"),
        (
            json!({"vectors": [good], "collection_id": "blobs", "document_ids": ["p0000"]}),
            400,
            "vectors",
        ),
        (json!({"document_ids": ["p0000"]}), 400, "collection_id"),
        (json!({"collection_id": "blobs"}), 400, "document_ids"),
        (json!({"vectors": [good, [1.0]]}), 422, "vectors[1]"),
        (json!({"vectors": "x"}), 400, "vectors"),
        (json!({"vectors": [good], "extra": 1}), 400, "extra"),
        (
            json!({"collection_id": "blobs", "document_ids": ["p0000", "nope"]}),
            404,
            "document_ids[1]",
        ),
        (
            json!({"collection_id": "no_such", "document_ids": ["p0000"]}),
            404,
            "collection_id",
        ),
        (
            json!({"collection_id": "../x", "document_ids": ["p0000"]}),
            400,
            "collection_id",
        ),
        (
            json!({"vectors": vec![good.clone(); 10_001]}),
            413,
            "vectors",
        ),
    ];
    for (body, want, field) in cases {
        let (status, err) = post(&server, &path, &body).await;
        assert_eq!(status, want, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{err}");
    }
    let (status, err) = post(
        &server,
        "/v1/clusters/runs/run_nope/assign",
        &json!({"vectors": [good]}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["field"], "run_id");

    // Another organisation does not see the run at all.
    let (status, _) = server
        .send(
            reqwest::Method::POST,
            &path,
            Some(KEY_B),
            NS,
            Some(&json!({"vectors": [good]})),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_attribute_grouping_run_has_nothing_to_assign_to() {
    let server = TestServer::start();
    let docs: Vec<Value> = (0..6)
        .map(|i| json!({"document_id": format!("d{i}"), "embedding": [i as f32, 1.0], "category": if i % 2 == 0 {"a"} else {"b"}}))
        .collect();
    upload_json_documents(&server, "attrs", docs).await;
    let body = json!({
        "collection_ids": ["attrs"],
        "config": {"algorithm": "attribute_based", "attribute_config": {"attributes": ["category"]}},
        "store_results": true
    });
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id");
    let (status, err) = post(
        &server,
        &format!("/v1/clusters/runs/{run_id}/assign"),
        &json!({"vectors": [[1.0, 2.0]]}),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["field"], "run_id");
}
