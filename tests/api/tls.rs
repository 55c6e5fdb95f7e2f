//! TLS on both transports with a certificate the test makes itself, start-up errors for
//! bad TLS flags, and API keys kept out of the log at its most verbose.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use clusterd::api::grpc::pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::harness::*;

/// The name the server certificate is issued for; clients connect to 127.0.0.1 and check
/// the certificate against this name.
const HOST: &str = "localhost";

struct Pki {
    /// PEM of the CA that signed the server certificate: what clients trust.
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn make_ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "clusterd test CA");
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// A fresh CA and a server certificate for `localhost` signed by it, written as PEM files.
fn make_pki(dir: &Path) -> Pki {
    let ca = make_ca();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &*ca).unwrap();
    let pki = Pki {
        ca_pem: ca.pem(),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

fn tls_options(pki: &Pki) -> Options {
    Options {
        extra_args: vec![
            "--tls-cert".into(),
            pki.cert.display().to_string(),
            "--tls-key".into(),
            pki.key.display().to_string(),
        ],
        ..Options::default()
    }
}

fn https_client(ca_pem: &str, server: &TestServer) -> reqwest::Client {
    let addr: SocketAddr = server.http.parse().unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .resolve(HOST, addr)
        .build()
        .unwrap()
}

fn https_url(server: &TestServer, path: &str) -> String {
    let port = server.http.parse::<SocketAddr>().unwrap().port();
    format!("https://{HOST}:{port}{path}")
}

async fn grpc_tls_channel(
    server: &TestServer,
    ca_pem: &str,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("https://{}", server.grpc))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca_pem))
                .domain_name(HOST),
        )?
        .connect()
        .await
}

async fn list_collections_rest(client: &reqwest::Client, server: &TestServer) -> u16 {
    client
        .get(https_url(server, "/v1/collections"))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .send()
        .await
        .expect("HTTPS request")
        .status()
        .as_u16()
}

async fn list_collections_grpc(channel: Channel) -> Result<usize, tonic::Status> {
    pb::collection_service_client::CollectionServiceClient::new(channel)
        .list_collections(authed(pb::ListCollectionsRequest::default(), KEY_A, NS))
        .await
        .map(|r| r.into_inner().collections.len())
}

#[tokio::test]
async fn rest_and_grpc_serve_tls_with_the_configured_certificate() {
    let dir = temp_dir("tls");
    let pki = make_pki(&dir);
    let server = TestServer::start_with(tls_options(&pki));

    let client = https_client(&pki.ca_pem, &server);
    let health = client
        .get(https_url(&server, "/healthz"))
        .send()
        .await
        .expect("HTTPS health check");
    assert_eq!(health.status(), 200);
    assert_eq!(list_collections_rest(&client, &server).await, 200);

    let channel = grpc_tls_channel(&server, &pki.ca_pem)
        .await
        .expect("gRPC over TLS");
    assert_eq!(list_collections_grpc(channel).await.expect("gRPC call"), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn tls_ports_refuse_plain_text_and_clients_that_do_not_trust_the_certificate() {
    let dir = temp_dir("tls");
    let pki = make_pki(&dir);
    let server = TestServer::start_with(tls_options(&pki));
    let stranger = make_ca().pem();

    // Plain HTTP and plain-text gRPC to the TLS ports.
    let plain = reqwest::Client::new()
        .get(server.url("/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let plain_grpc = match Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
    {
        Ok(channel) => list_collections_grpc(channel)
            .await
            .map_err(|s| s.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(plain_grpc.is_err(), "plain gRPC answered: {plain_grpc:?}");

    // TLS clients that trust another CA.
    let untrusting = https_client(&stranger, &server)
        .get(https_url(&server, "/healthz"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "untrusted HTTPS answered: {untrusting:?}"
    );
    let untrusting_grpc = match grpc_tls_channel(&server, &stranger).await {
        Ok(channel) => list_collections_grpc(channel)
            .await
            .map_err(|s| s.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(
        untrusting_grpc.is_err(),
        "untrusted gRPC answered: {untrusting_grpc:?}"
    );

    // The refused handshakes left both servers serving.
    let client = https_client(&pki.ca_pem, &server);
    assert_eq!(list_collections_rest(&client, &server).await, 200);
    let channel = grpc_tls_channel(&server, &pki.ca_pem).await.unwrap();
    assert!(list_collections_grpc(channel).await.is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_listening_line_says_whether_tls_is_on() {
    let dir = temp_dir("tls");
    let pki = make_pki(&dir);
    let mut args = vec![
        "serve".to_owned(),
        "--store".to_owned(),
        dir.join("data").display().to_string(),
        "--grpc-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--http-addr".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    for tls in [false, true] {
        if tls {
            args.extend(tls_options(&pki).extra_args);
        }
        let mut child = Command::new(bin())
            .args(&args)
            .env_remove("CLUSTERD_API_KEYS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let ready: serde_json::Value = serde_json::from_str(&line).expect("listening line");
        assert_eq!(ready["event"], "listening", "{line}");
        assert_eq!(ready["tls"], tls, "{line}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Start the binary with `tls_args`, expect it to exit with an error before it announces
/// itself (killed after 30 s rather than hanging the suite), and return its stderr.
fn refused_start(dir: &Path, tls_args: &[&str]) -> String {
    let mut child = Command::new(bin())
        .args(["serve", "--store"])
        .arg(dir.join("data"))
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .args(tls_args)
        .env_remove("CLUSTERD_API_KEYS")
        .env_remove("CLUSTERD_TLS_CERT")
        .env_remove("CLUSTERD_TLS_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running with {tls_args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {tls_args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "announced itself with {tls_args:?}");
    stderr
}

#[test]
fn bad_tls_flags_stop_the_server_at_start_up_naming_the_flag() {
    let dir = temp_dir("tls");
    let pki = make_pki(&dir);
    let cert = pki.cert.to_str().unwrap();
    let key = pki.key.to_str().unwrap();
    let missing = dir.join("absent.pem");
    let missing = missing.to_str().unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.to_str().unwrap();
    let other_key = dir.join("other.key");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let other_key = other_key.to_str().unwrap();

    let cases: [(&[&str], &[&str]); 7] = [
        (&["--tls-cert", cert], &["--tls-key"]),
        (&["--tls-key", key], &["--tls-cert"]),
        (
            &["--tls-cert", missing, "--tls-key", key],
            &["--tls-cert", missing],
        ),
        (
            &["--tls-cert", cert, "--tls-key", missing],
            &["--tls-key", missing],
        ),
        (
            &["--tls-cert", garbage, "--tls-key", key],
            &["--tls-cert", "certificate"],
        ),
        // A certificate where the key belongs.
        (
            &["--tls-cert", cert, "--tls-key", cert],
            &["--tls-key", "private key"],
        ),
        // A key that is not the certificate's.
        (
            &["--tls-cert", cert, "--tls-key", other_key],
            &["--tls-key"],
        ),
    ];
    for (args, expected) in cases {
        let stderr = refused_start(&dir, args);
        for word in expected {
            assert!(stderr.contains(word), "{args:?}: {stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn api_keys_never_reach_the_log_even_at_trace_level() {
    const WRONG_KEY: &str = "sk_wrong_key_never_logged";
    for format in ["text", "json"] {
        let server = TestServer::start_with_env(
            Options {
                extra_args: vec![
                    "--log-format".into(),
                    format.into(),
                    "--device".into(),
                    "cpu".into(),
                ],
                ..Options::default()
            },
            &[("RUST_LOG", "trace")],
        );
        for key in [Some(KEY_A), Some(KEY_B), Some(WRONG_KEY), None] {
            let expected = if matches!(key, Some(k) if k == KEY_A || k == KEY_B) {
                200
            } else {
                401
            };
            let (status, body) = server
                .send(reqwest::Method::GET, "/v1/collections", key, NS, None)
                .await;
            assert_eq!(status, expected, "{key:?}: {body}");
            // A request that fails further in, with the key accepted.
            let (status, body) = server
                .send(
                    reqwest::Method::POST,
                    "/v1/clusters/execute",
                    key,
                    NS,
                    Some(&reference_body()),
                )
                .await;
            assert_ne!(status, 200, "{key:?}: {body}");

            let mut collections = server.collection_client().await;
            let listed = match key {
                Some(k) => {
                    collections
                        .list_collections(authed(pb::ListCollectionsRequest::default(), k, NS))
                        .await
                }
                None => {
                    collections
                        .list_collections(
                            tonic::Request::new(pb::ListCollectionsRequest::default()),
                        )
                        .await
                }
            };
            assert_eq!(listed.is_ok(), expected == 200, "{key:?}: {listed:?}");
            if let Some(k) = key {
                let executed = server
                    .cluster_client()
                    .await
                    .execute(authed(to_proto(&reference_body()), k, NS))
                    .await;
                assert!(executed.is_err(), "{key:?}");
            }
        }
        let log = server.log();
        // The log is really at trace level, or finding no key would prove nothing.
        assert!(log.contains("TRACE"), "{format}: {log}");
        for key in [KEY_A, KEY_B, WRONG_KEY] {
            assert!(!log.contains(key), "{format}: {key} in the log:\n{log}");
        }
    }
}
