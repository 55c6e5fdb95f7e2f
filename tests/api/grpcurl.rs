//! grpcurl, as people use it: reflection, health, and the reference JSON pasted verbatim.

use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn grpcurl_lists_services_checks_health_and_executes_reference_json() {
    let Some(grpcurl) = grpcurl() else { return };
    let server = server_with_reference_collections().await;
    let (ok, out, err) = run_grpcurl(&grpcurl, &["-plaintext", &server.grpc, "list"]);
    assert!(ok, "{err}");
    for service in [
        "clusterd.v1.ClusterService",
        "clusterd.v1.CollectionService",
        "grpc.health.v1.Health",
    ] {
        assert!(out.lines().any(|l| l == service), "{service} in {out}");
    }
    let (ok, out, err) = run_grpcurl(
        &grpcurl,
        &["-plaintext", &server.grpc, "grpc.health.v1.Health/Check"],
    );
    assert!(ok && out.contains("SERVING"), "{out}{err}");

    let auth = format!("authorization: Bearer {KEY_A}");
    let ns = format!("x-namespace: {NS}");
    let (ok, out, err) = run_grpcurl(
        &grpcurl,
        &[
            "-plaintext",
            "-H",
            &auth,
            "-H",
            &ns,
            "-d",
            REFERENCE_JSON,
            &server.grpc,
            "clusterd.v1.ClusterService/Execute",
        ],
    );
    assert!(ok, "{err}");
    let body: Value = serde_json::from_str(&out).expect("grpcurl prints JSON");
    // The proto JSON mapping prints the reference's snake_case shape.
    assert_eq!(body["success"], true);
    assert_eq!(body["algorithm"], "kmeans");
    assert_eq!(body["num_clusters"], 5);
    assert_eq!(body["num_documents"], 600);
    assert_eq!(body["centroids"][0]["cluster_id"], "cluster_001");
    assert_eq!(body["centroids"][0]["feature_dimensions"], 16);
    assert!(
        body["run_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("run_"))
    );

    // Errors reach grpcurl users with the field named.
    let bad = REFERENCE_JSON.replace("\"kmeans\"", "\"kmeanz\"");
    let (ok, out, err) = run_grpcurl(
        &grpcurl,
        &[
            "-plaintext",
            "-H",
            &auth,
            "-H",
            &ns,
            "-d",
            &bad,
            &server.grpc,
            "clusterd.v1.ClusterService/Execute",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("InvalidArgument") && err.contains("config.algorithm"),
        "{err}"
    );
}

#[tokio::test]
async fn grpcurl_describes_fields_with_snake_case_json_names() {
    let Some(grpcurl) = grpcurl() else { return };
    let server = TestServer::start();
    let (ok, out, err) = run_grpcurl(
        &grpcurl,
        &[
            "-plaintext",
            &server.grpc,
            "describe",
            "clusterd.v1.ClusteringConfig",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("json_name = \"algorithm_params\""), "{out}");
    assert!(
        out.contains("google.protobuf.Struct algorithm_params"),
        "{out}"
    );
}
