//! Keys, organisations and namespaces, on both transports.

use serde_json::json;
use tonic::Code;

use crate::harness::*;
use clusterd::api::grpc::pb;

#[tokio::test]
async fn missing_or_unknown_key_is_unauthenticated_on_both_transports() {
    let server = server_with_reference_collections().await;
    for key in [None, Some("sk_wrong_key_123")] {
        let (status, body) = server
            .send(
                reqwest::Method::POST,
                "/v1/clusters/execute",
                key,
                NS,
                Some(&reference_body()),
            )
            .await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "unauthenticated");
        let (status, _) = server
            .send(reqwest::Method::GET, "/v1/collections", key, NS, None)
            .await;
        assert_eq!(status, 401);
    }
    let mut client = server.cluster_client().await;
    let err = client
        .execute(tonic::Request::new(to_proto(&reference_body())))
        .await
        .expect_err("no key");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .execute(authed(to_proto(&reference_body()), "sk_wrong_key_123", NS))
        .await
        .expect_err("wrong key");
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_key_may_not_use_a_namespace_it_does_not_list() {
    let server = server_with_reference_collections().await;
    let (status, body) = server
        .send(
            reqwest::Method::POST,
            "/v1/clusters/execute",
            Some(KEY_A),
            "staging",
            Some(&reference_body()),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
    let (status, _) = server
        .send(
            reqwest::Method::GET,
            "/v1/collections",
            Some(KEY_A),
            "staging",
            None,
        )
        .await;
    assert_eq!(status, 403);
    let err = server
        .cluster_client()
        .await
        .execute(authed(to_proto(&reference_body()), KEY_A, "staging"))
        .await
        .expect_err("namespace not allowed");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = server
        .collection_client()
        .await
        .list_collections(authed(
            pb::ListCollectionsRequest::default(),
            KEY_A,
            "staging",
        ))
        .await
        .expect_err("namespace not allowed");
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn another_organisation_cannot_see_or_cluster_our_collections() {
    let server = server_with_reference_collections().await;
    // Org B may use every namespace of its own, including "production", but org A's
    // collections there are not its collections.
    let (status, body) = server
        .send(
            reqwest::Method::GET,
            "/v1/collections",
            Some(KEY_B),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["collections"], json!([]));
    let (status, body) = server
        .send(
            reqwest::Method::POST,
            "/v1/clusters/execute",
            Some(KEY_B),
            NS,
            Some(&reference_body()),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["field"], "collection_ids[0]");
    let (status, _) = server
        .send(
            reqwest::Method::DELETE,
            "/v1/collections/col_products_v1",
            Some(KEY_B),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 404);

    let listed = server
        .collection_client()
        .await
        .list_collections(authed(pb::ListCollectionsRequest::default(), KEY_B, NS))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.collections.is_empty());
    let err = server
        .cluster_client()
        .await
        .execute(authed(to_proto(&reference_body()), KEY_B, NS))
        .await
        .expect_err("org B cannot cluster org A's collections");
    assert_eq!(err.code(), Code::NotFound);
    // Org A still sees both.
    let (_, body) = server
        .send(
            reqwest::Method::GET,
            "/v1/collections",
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(body["collections"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn development_mode_runs_without_keys_on_loopback() {
    let server = TestServer::start_with(Options {
        keys: false,
        extra_args: vec![],
    });
    let (status, body) = server
        .send(
            reqwest::Method::GET,
            "/v1/collections",
            None,
            "anything",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
    assert!(log.contains("development mode"), "{log}");
}

#[test]
fn development_mode_is_refused_on_a_public_address() {
    let out = std::process::Command::new(bin())
        .args([
            "serve",
            "--grpc-addr",
            "0.0.0.0:0",
            "--http-addr",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(std::env::temp_dir().join("clusterd-refused-store"))
        .env_remove("CLUSTERD_API_KEYS")
        .output()
        .expect("run clusterd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-dev-mode"), "{stderr}");
}

#[tokio::test]
async fn health_needs_no_key() {
    let server = TestServer::start();
    let resp = reqwest::get(server.url("/healthz")).await.expect("healthz");
    assert_eq!(resp.status().as_u16(), 200);
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
