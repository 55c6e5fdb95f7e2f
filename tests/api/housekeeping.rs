//! Housekeeping (issue 9): a run's members paged from members.parquet, deleting a run,
//! and the server's retention of finished runs — REST and gRPC alike.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;
use clusterd::api::grpc::pb;

const SMALL: &str = "col_small";
const VECTOR: &str = "embedding";

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    server
        .send(reqwest::Method::GET, path, Some(KEY_A), NS, None)
        .await
}

async fn delete(server: &TestServer, run_id: &str) -> (u16, Value) {
    server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/clusters/runs/{run_id}"),
            Some(KEY_A),
            NS,
            None,
        )
        .await
}

/// A server (with `extra_args`) holding 200 small documents in `SMALL` for org A.
async fn server_with_small_collection(extra_args: &[&str]) -> TestServer {
    let server = TestServer::start_with(Options {
        extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    });
    let (status, body) = server
        .upload_parquet(KEY_A, SMALL, example_parquet(200, 8, 3, "h_", VECTOR))
        .await;
    assert_eq!(status, 200, "{body}");
    server
}

/// A quick stored k-means run of `SMALL`; its run id.
async fn small_run(server: &TestServer) -> String {
    let (status, out) = server
        .execute_rest(
            KEY_A,
            &json!({
                "collection_ids": [SMALL],
                "config": {
                    "algorithm": "kmeans",
                    "algorithm_params": {"n_clusters": 3},
                    "feature_vector": {"vector_name": VECTOR},
                },
                "compute_metrics": false,
            }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    out["run_id"].as_str().expect("run_id").to_owned()
}

async fn listed_run_ids(server: &TestServer) -> Vec<String> {
    let (status, page) = get(server, "/v1/clusters/runs?limit=100").await;
    assert_eq!(status, 200, "{page}");
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["run_id"].as_str().expect("run_id").to_owned())
        .collect()
}

/// Every member of `cluster` (None: all) paged over REST `limit` at a time, with the
/// `total` every page reported.
async fn page_rest(
    server: &TestServer,
    run_id: &str,
    cluster: Option<&str>,
    limit: usize,
) -> (Vec<Value>, u64) {
    let mut members = Vec::new();
    let mut offset = 0u64;
    let mut total = None;
    loop {
        let filter = cluster.map_or(String::new(), |c| format!("&cluster_id={c}"));
        let (status, page) = get(
            server,
            &format!("/v1/clusters/runs/{run_id}/members?offset={offset}&limit={limit}{filter}"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["run_id"], run_id);
        assert_eq!(page["offset"], offset);
        assert_eq!(page["limit"], limit);
        assert_eq!(page["cluster_id"], cluster.map_or(Value::Null, Value::from));
        let t = page["total"].as_u64().expect("total");
        assert_eq!(*total.get_or_insert(t), t, "total is stable across pages");
        let got = page["members"].as_array().expect("members").clone();
        assert!(got.len() <= limit);
        members.extend(got);
        match page["next_offset"].as_u64() {
            Some(next) => {
                assert_eq!(next, members.len() as u64);
                offset = next;
            }
            None => break,
        }
    }
    (members, total.unwrap_or(0))
}

fn key_of(m: &Value) -> (String, String) {
    (
        m["collection_id"]
            .as_str()
            .expect("collection_id")
            .to_owned(),
        m["document_id"].as_str().expect("document_id").to_owned(),
    )
}

#[tokio::test]
async fn paging_a_cluster_returns_exactly_its_members_once_on_both_transports() {
    let server = server_with_reference_collections().await;
    let mut body = reference_body();
    body["include_members"] = json!(true);
    body["save_artifacts"] = json!(true);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id").to_owned();

    // The inline members are the truth to compare with, cluster by cluster.
    let mut expected: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for m in out["members"].as_array().expect("inline members") {
        expected
            .entry(m["cluster_id"].as_str().expect("cluster_id").to_owned())
            .or_default()
            .insert(key_of(m));
    }
    // The 2-D coordinates of each document, from sample.parquet.
    let mut xy: BTreeMap<(String, String), [f32; 2]> = BTreeMap::new();
    for batch in server.artifact(&run_id, "sample.parquet").await {
        let ids = batch
            .column_by_name("document_id")
            .unwrap()
            .as_string::<i32>();
        let cols = batch
            .column_by_name("collection_id")
            .unwrap()
            .as_string::<i32>();
        let x = batch
            .column_by_name("x")
            .unwrap()
            .as_primitive::<Float32Type>();
        let y = batch
            .column_by_name("y")
            .unwrap()
            .as_primitive::<Float32Type>();
        for i in 0..batch.num_rows() {
            xy.insert(
                (cols.value(i).to_owned(), ids.value(i).to_owned()),
                [x.value(i), y.value(i)],
            );
        }
    }
    assert_eq!(xy.len(), 600);

    let mut client = server.cluster_client().await;
    for centroid in out["centroids"].as_array().expect("centroids") {
        let cluster = centroid["cluster_id"].as_str().expect("cluster_id");
        let (members, total) = page_rest(&server, &run_id, Some(cluster), 7).await;
        assert_eq!(
            total,
            centroid["num_members"].as_u64().unwrap(),
            "{cluster}"
        );
        assert_eq!(members.len() as u64, total);
        let keys: Vec<(String, String)> = members.iter().map(key_of).collect();
        let unique: BTreeSet<(String, String)> = keys.iter().cloned().collect();
        assert_eq!(unique.len(), keys.len(), "each member once");
        assert_eq!(Some(&unique), expected.get(cluster), "{cluster}");
        for m in &members {
            assert_eq!(m["cluster_id"], cluster);
            assert!(m["distance_to_centroid"].as_f64().is_some(), "{m}");
            let c = m["coordinates"].as_array().expect("coordinates");
            let got = [c[0].as_f64().unwrap() as f32, c[1].as_f64().unwrap() as f32];
            assert_eq!(Some(&got), xy.get(&key_of(m)), "{m}");
        }

        // The same cluster over gRPC, in pages of 50.
        let mut grpc_keys = Vec::new();
        let mut offset = Some(0i64);
        while let Some(o) = offset {
            let page = client
                .list_members(authed(
                    pb::ListMembersRequest {
                        run_id: run_id.clone(),
                        cluster_id: Some(cluster.to_owned()),
                        offset: Some(o),
                        limit: Some(50),
                    },
                    KEY_A,
                    NS,
                ))
                .await
                .expect("ListMembers")
                .into_inner();
            assert_eq!(page.total as u64, total);
            assert!(page.members.iter().all(|m| m.coordinates.len() == 2));
            grpc_keys.extend(
                page.members
                    .into_iter()
                    .map(|m| (m.collection_id, m.document_id)),
            );
            offset = page.next_offset;
        }
        assert_eq!(grpc_keys, keys, "gRPC pages equal REST pages");
    }

    // Without a filter: every membership, in cluster order.
    let (all, total) = page_rest(&server, &run_id, None, 1000).await;
    assert_eq!(total, 600);
    let clusters: Vec<&str> = all
        .iter()
        .map(|m| m["cluster_id"].as_str().unwrap())
        .collect();
    assert!(clusters.is_sorted());

    // Past the end: an empty last page.
    let (status, page) = get(
        &server,
        &format!("/v1/clusters/runs/{run_id}/members?offset=600"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["members"], json!([]));
    assert_eq!(page["next_offset"], Value::Null);
    assert_eq!(page["total"], 600);
    assert_eq!(page["limit"], 100);
}

#[tokio::test]
async fn member_pages_refuse_unknown_runs_and_clusters_and_bad_paging_naming_the_field() {
    let server = server_with_small_collection(&[]).await;
    let run_id = small_run(&server).await;
    let base = format!("/v1/clusters/runs/{run_id}/members");
    for (query, status, field) in [
        ("?cluster_id=cluster_042", 404, "cluster_id"),
        ("?cluster_id=noise", 404, "cluster_id"),
        ("?cluster_id=", 422, "cluster_id"),
        ("?offset=-1", 422, "offset"),
        ("?offset=ten", 422, "offset"),
        ("?limit=0", 422, "limit"),
        ("?limit=1001", 422, "limit"),
        ("?limit=1.5", 422, "limit"),
    ] {
        let (got, body) = get(&server, &format!("{base}{query}")).await;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let (got, body) = get(&server, &format!("{base}?page=2")).await;
    assert_eq!(got, 400, "{body}");
    let (got, body) = get(&server, "/v1/clusters/runs/run_0000000000000000000/members").await;
    assert_eq!(got, 404, "{body}");
    assert_eq!(body["error"]["field"], "run_id");
    // Another organisation does not see the run.
    let (got, _) = server
        .send(reqwest::Method::GET, &base, Some(KEY_B), NS, None)
        .await;
    assert_eq!(got, 404);

    let mut client = server.cluster_client().await;
    let request = |cluster: Option<&str>, offset: Option<i64>| {
        authed(
            pb::ListMembersRequest {
                run_id: run_id.clone(),
                cluster_id: cluster.map(str::to_owned),
                offset,
                limit: None,
            },
            KEY_A,
            NS,
        )
    };
    let err = client
        .list_members(request(Some("cluster_042"), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.metadata()
            .get("x-error-field")
            .and_then(|v| v.to_str().ok()),
        Some("cluster_id")
    );
    let err = client
        .list_members(request(None, Some(-5)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let page = client
        .list_members(request(None, None))
        .await
        .expect("defaults")
        .into_inner();
    assert_eq!((page.offset, page.limit, page.total), (0, 100, 200));
    assert_eq!(page.next_offset, Some(100));
}

#[tokio::test]
async fn deleting_a_run_removes_it_and_its_artifacts_on_both_transports() {
    let server = server_with_small_collection(&[]).await;
    let first = small_run(&server).await;
    let second = small_run(&server).await;

    let (status, body) = delete(&server, &first).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run_id"], first.as_str());
    assert_eq!(body["deleted"], true);
    // status.json, run.json, clusters.parquet and members.parquet at least.
    assert!(body["objects_deleted"].as_u64().unwrap() >= 4, "{body}");
    let (status, body) = get(&server, &format!("/v1/clusters/runs/{first}")).await;
    assert_eq!(status, 404, "{body}");
    for path in [
        "artifacts/members.parquet",
        "artifacts/clusters.parquet",
        "members",
    ] {
        let (status, body) = get(&server, &format!("/v1/clusters/runs/{first}/{path}")).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    assert_eq!(listed_run_ids(&server).await, std::slice::from_ref(&second));
    let (status, body) = delete(&server, &first).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["field"], "run_id");

    // Another organisation cannot delete it; gRPC can.
    let (status, _) = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/clusters/runs/{second}"),
            Some(KEY_B),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let mut client = server.cluster_client().await;
    let deleted = client
        .delete_run(authed(
            pb::DeleteRunRequest {
                run_id: second.clone(),
            },
            KEY_A,
            NS,
        ))
        .await
        .expect("DeleteRun")
        .into_inner();
    assert_eq!(deleted.run_id, second);
    assert!(deleted.deleted && deleted.objects_deleted >= 4);
    let err = client
        .get_run(authed(pb::GetRunRequest { run_id: second }, KEY_A, NS))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(listed_run_ids(&server).await.is_empty());
}

#[tokio::test]
async fn a_running_run_cannot_be_deleted_or_paged_until_it_is_cancelled() {
    let server = TestServer::start();
    let (status, body) = server
        .upload_parquet(
            KEY_A,
            "col_slow",
            example_parquet(20_000, 32, 20, "s_", VECTOR),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // k-means++ restarted a million times: it runs until cancelled.
    let (status, out) = server
        .send(
            reqwest::Method::POST,
            "/v1/clusters/submit",
            Some(KEY_A),
            NS,
            Some(&json!({
                "collection_ids": ["col_slow"],
                "config": {
                    "algorithm": "kmeans",
                    "algorithm_params": {"n_clusters": 40, "n_init": 1_000_000, "tol": 0.0},
                    "feature_vector": {"vector_name": VECTOR},
                },
            })),
        )
        .await;
    assert_eq!(status, 202, "{out}");
    let run_id = first_running_run(&server).await;

    let (status, body) = delete(&server, &run_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["field"], "run_id");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancel it first"),
        "{body}"
    );
    let err = server
        .cluster_client()
        .await
        .delete_run(authed(
            pb::DeleteRunRequest {
                run_id: run_id.clone(),
            },
            KEY_A,
            NS,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let (status, body) = get(&server, &format!("/v1/clusters/runs/{run_id}/members")).await;
    assert_eq!(status, 409, "{body}");

    let (status, body) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/clusters/runs/{run_id}/cancel"),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let start = Instant::now();
    loop {
        let (_, run) = get(&server, &format!("/v1/clusters/runs/{run_id}")).await;
        if run["status"] == "cancelled" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never cancelled: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = get(&server, &format!("/v1/clusters/runs/{run_id}/members")).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{body}"
    );
    let (status, body) = delete(&server, &run_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["objects_deleted"], 1,
        "a cancelled run stored only its status"
    );
    let (status, _) = get(&server, &format!("/v1/clusters/runs/{run_id}")).await;
    assert_eq!(status, 404);
}

/// Poll until `done` holds for the listed run ids (at most 30 s).
async fn wait_for_listing(server: &TestServer, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let ids = listed_run_ids(server).await;
        if done(&ids) {
            return ids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "listing stayed {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn retention_max_runs_2_leaves_the_two_newest_runs_of_the_namespace() {
    let server = server_with_small_collection(&["--retention-max-runs", "2"]).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(small_run(&server).await);
    }
    let left = wait_for_listing(&server, |ids| ids.len() == 2).await;
    // Newest first.
    assert_eq!(left, [runs[2].clone(), runs[1].clone()]);
    let (status, _) = get(&server, &format!("/v1/clusters/runs/{}", runs[0])).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn retention_max_age_removes_a_run_once_it_has_been_finished_that_long() {
    let server =
        server_with_small_collection(&["--retention-max-age", "2s", "--retention-interval-s", "1"])
            .await;
    let started = Instant::now();
    let run_id = small_run(&server).await;
    // Just finished: kept by the sweep its own completion triggers.
    let (status, body) = get(&server, &format!("/v1/clusters/runs/{run_id}")).await;
    assert_eq!(status, 200, "{body}");
    wait_for_listing(&server, |ids| ids.is_empty()).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "removed before it was 2 s old"
    );
    let (status, _) = get(&server, &format!("/v1/clusters/runs/{run_id}")).await;
    assert_eq!(status, 404);
}
