//! The density algorithms through both transports: scikit-learn's clusters, and noise
//! reported as `"noise"` members without a centroid, left out of the metrics and counted.

use serde_json::Value;

use crate::harness::*;
use clusterd::metrics::adjusted_rand_index;

const COLLECTION: &str = "moons";

fn fixture() -> Value {
    reference_fixture("density_moons")
}

/// A server holding the fixture's rows as JSON-uploaded documents.
async fn server_with_moons(f: &Value) -> TestServer {
    let server = TestServer::start();
    upload_fixture_rows(&server, COLLECTION, f).await;
    server
}

/// The first scikit-learn case of `algorithm` in the fixture: (params, labels).
fn case(f: &Value, algorithm: &str) -> (Value, Vec<i64>) {
    let c = f["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["algorithm"] == algorithm)
        .unwrap_or_else(|| panic!("no {algorithm} case"));
    (c["params"].clone(), fixture_labels(&c["labels"]))
}

#[tokio::test]
async fn density_algorithms_match_scikit_learn_over_rest_with_noise_reported_as_noise() {
    let f = fixture();
    let server = server_with_moons(&f).await;
    let n = f["data"].as_array().map_or(0, Vec::len);
    for algorithm in ["dbscan", "hdbscan", "optics"] {
        let (params, want) = case(&f, algorithm);
        let (status, body) = server
            .execute_rest(KEY_A, &fixture_request(COLLECTION, algorithm, &params))
            .await;
        assert_eq!(status, 200, "{algorithm}: {body}");
        assert_eq!(body["algorithm"], algorithm);
        let members = body["members"].as_array().expect("members");
        let got = labels_in_row_order(
            n,
            members.iter().map(|m| {
                (
                    m["document_id"].as_str().expect("document_id"),
                    m["cluster_id"].as_str().expect("cluster_id"),
                )
            }),
        );
        let ari = adjusted_rand_index(&got, &want);
        assert!(ari >= 0.99, "{algorithm} {params}: ARI {ari}");

        let noise = got.iter().filter(|&&l| l == -1).count();
        assert!(noise > 0, "{algorithm}: the fixture has noise");
        assert_eq!(body["metrics"]["num_noise"], noise, "{algorithm}");
        assert!(body["metrics"]["silhouette_score"].is_f64(), "{body}");
        let centroids = body["centroids"].as_array().expect("centroids");
        assert_eq!(body["num_clusters"], centroids.len());
        assert!(centroids.iter().all(|c| c["cluster_id"] != "noise"));
        let clustered: u64 = centroids
            .iter()
            .filter_map(|c| c["num_members"].as_u64())
            .sum();
        assert_eq!(clustered as usize + noise, n, "{algorithm}");
        for m in members.iter().filter(|m| m["cluster_id"] == "noise") {
            assert!(
                m["distance_to_centroid"].is_null(),
                "noise has no centroid: {m}"
            );
        }
        // Noise sorts after every cluster in the inline list as in members.parquet.
        assert_eq!(members.last().expect("members")["cluster_id"], "noise");
        assert!(body["members_key"].is_string());
    }
}

#[tokio::test]
async fn density_algorithms_answer_over_grpc_with_resolved_params_in_the_run_record() {
    let f = fixture();
    let server = server_with_moons(&f).await;
    let n = f["data"].as_array().map_or(0, Vec::len);
    let mut client = server.cluster_client().await;
    for algorithm in ["dbscan", "hdbscan", "optics"] {
        let (params, want) = case(&f, algorithm);
        let resp = client
            .execute(authed(
                to_proto(&fixture_request(COLLECTION, algorithm, &params)),
                KEY_A,
                NS,
            ))
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"))
            .into_inner();
        assert!(resp.success);
        let got = labels_in_row_order(
            n,
            resp.members
                .iter()
                .map(|m| (m.document_id.as_str(), m.cluster_id.as_str())),
        );
        let ari = adjusted_rand_index(&got, &want);
        assert!(ari >= 0.99, "{algorithm} over gRPC: ARI {ari}");
        let noise = got.iter().filter(|&&l| l == -1).count();
        assert_eq!(
            resp.metrics.as_ref().and_then(|m| m.num_noise),
            Some(noise as i32)
        );

        // The run record holds every parameter with its default resolved.
        let (status, run) = server
            .send(
                reqwest::Method::GET,
                &format!("/v1/clusters/runs/{}", resp.run_id),
                Some(KEY_A),
                NS,
                None,
            )
            .await;
        assert_eq!(status, 200, "{run}");
        let resolved = &run["request"]["algorithm_params"];
        assert_eq!(resolved["metric"], "euclidean", "{algorithm}: {resolved}");
        for (k, v) in params.as_object().expect("params object") {
            assert_eq!(&resolved[k], v, "{algorithm}: {k} as run");
        }
    }
}
