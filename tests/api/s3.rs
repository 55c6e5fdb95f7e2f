//! What only S3 has: the key layout under `s3://bucket/prefix` as a reader of the bucket
//! sees it, staging that leaves nothing behind, objects above the multipart threshold, and
//! a store that cannot be reached (missing bucket, closed port, a TLS endpoint that is not
//! TLS) refusing the start-up with its cause, never a panic. These tests start their own
//! buckets on the process's moto server, so they run in the local pass as in the S3 pass.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::json;

use crate::harness::*;

/// object_store's `BufWriter` switches to a multipart upload above this many bytes (its
/// default capacity), which is how the artifacts are written.
const MULTIPART_THRESHOLD: u64 = 10 * 1024 * 1024;

fn unique_bucket(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "s3-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Every key of the bucket, sorted, as any reader of the bucket lists it.
async fn bucket_keys(moto: &Moto, bucket: &str) -> Vec<String> {
    let mut keys: Vec<String> = moto
        .bucket_store(bucket)
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list the bucket");
    keys.sort();
    keys
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name(column).expect("column");
        let s = col.as_any().downcast_ref::<StringArray>().expect("utf8");
        out.extend((0..s.len()).map(|i| s.value(i).to_owned()));
    }
    out
}

#[tokio::test]
async fn an_s3_store_keeps_collections_and_run_files_under_its_prefix() {
    let Some(moto) = moto_for_s3_tests() else {
        return;
    };
    let bucket = unique_bucket("layout");
    let server = TestServer::start_on(
        TestStore::s3(moto, &bucket, "tenants/acme"),
        Options::default(),
    );
    assert!(server.store().is_s3());
    for (i, col) in ["col_products_v1", "col_products_v2"]
        .into_iter()
        .enumerate()
    {
        let bytes = example_parquet(300, 16, 5, &format!("c{i}_"), REF_VECTOR);
        let (status, body) = server.upload_parquet(KEY_A, col, bytes).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut body = reference_body();
    body["save_artifacts"] = json!(true);
    let (status, out) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id");

    let keys = bucket_keys(moto, &bucket).await;
    assert!(
        keys.iter().all(|k| k.starts_with("tenants/acme/")),
        "everything under the prefix: {keys:?}"
    );
    for col in ["col_products_v1", "col_products_v2"] {
        let part = format!("tenants/acme/{ORG_A}/{NS}/collections/{col}/part-");
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&part) && k.ends_with(".parquet")),
            "a part of {col}: {keys:?}"
        );
    }
    for file in [
        "clusters.parquet",
        "members.parquet",
        "sample.parquet",
        "status.json",
        "run.json",
    ] {
        let key = format!("tenants/acme/{ORG_A}/{NS}/engine_cluster_build/{run_id}/{file}");
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    assert!(
        !keys.iter().any(|k| k.contains("/_staging/")),
        "published uploads leave no staged copy: {keys:?}"
    );
    // The keys the response names are relative to the store prefix.
    for field in ["parquet_path", "members_key"] {
        let key = format!("tenants/acme/{}", out[field].as_str().expect(field));
        assert!(keys.contains(&key), "{field} {key} in {keys:?}");
    }

    // Listings go through the prefix too (S3 delimiter listings, not directories).
    let (status, page) = server
        .send(
            reqwest::Method::GET,
            "/v1/collections",
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .filter_map(|c| c["collection_id"].as_str())
        .collect();
    assert_eq!(ids, ["col_products_v1", "col_products_v2"]);
    let runs = server.runs_page().await;
    assert_eq!(runs["runs"][0]["run_id"], run_id, "{runs}");
    assert_eq!(runs["runs"][0]["status"], "completed", "{runs}");

    // A download is the stored object, byte for byte.
    let (status, downloaded) = server
        .get_bytes(
            KEY_A,
            &format!("/v1/clusters/runs/{run_id}/artifacts/members.parquet"),
        )
        .await;
    assert_eq!(status, 200);
    let stored = server
        .get_object(&format!(
            "{ORG_A}/{NS}/engine_cluster_build/{run_id}/members.parquet"
        ))
        .await
        .expect("members.parquet in the store");
    assert_eq!(downloaded, stored);
}

#[tokio::test]
async fn a_rejected_upload_to_s3_leaves_no_staged_object_and_no_part() {
    let Some(moto) = moto_for_s3_tests() else {
        return;
    };
    let bucket = unique_bucket("staging");
    let server = TestServer::start_on(TestStore::s3(moto, &bucket, "p"), Options::default());
    let (status, body) = server
        .upload_parquet(KEY_A, "c", example_parquet(20, 16, 2, "a_", "embedding"))
        .await;
    assert_eq!(status, 200, "{body}");
    // Staged, read back, and refused after staging: another dimension for the same column.
    let (status, body) = server
        .upload_parquet(KEY_A, "c", example_parquet(20, 8, 2, "b_", "embedding"))
        .await;
    assert_eq!(status, 409, "{body}");
    let keys = bucket_keys(moto, &bucket).await;
    assert!(
        !keys.iter().any(|k| k.contains("/_staging/")),
        "the refused upload's staged object is gone: {keys:?}"
    );
    let parts = keys
        .iter()
        .filter(|k| k.contains("/collections/c/"))
        .count();
    assert_eq!(parts, 1, "only the accepted part: {keys:?}");
}

#[tokio::test]
async fn an_upload_and_an_artifact_above_the_multipart_threshold_round_trip_through_s3() {
    let Some(moto) = moto_for_s3_tests() else {
        return;
    };
    let bucket = unique_bucket("large");
    let server = TestServer::start_on(TestStore::s3(moto, &bucket, "p"), Options::default());
    // 5000 × 768 float32 of noise: ~15 MB that zstd cannot shrink below the threshold.
    let upload = example_parquet(5000, 768, 4, "big_", "embedding");
    assert!(
        upload.len() as u64 > MULTIPART_THRESHOLD,
        "the upload is {} bytes",
        upload.len()
    );
    let (status, body) = server.upload_parquet(KEY_A, "big", upload.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["documents"], 5000);
    let part_key = body["part_key"].as_str().expect("part_key");
    let stored = server.get_object(part_key).await.expect("the part");
    assert!(
        stored == upload.as_slice(),
        "the part is the upload, byte for byte"
    );

    let (status, out) = server
        .execute_rest(
            KEY_A,
            &json!({
                "collection_ids": ["big"],
                "config": {
                    "algorithm": "kmeans",
                    "algorithm_params": {"n_clusters": 4},
                    "feature_vector": {"vector_name": "embedding"}
                },
                "sample_size": 5000,
                "store_results": true,
                "save_artifacts": true
            }),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    let run_id = out["run_id"].as_str().expect("run_id");

    // sample.parquet carries every clustered vector: written in parts.
    let key = format!("p/{ORG_A}/{NS}/engine_cluster_build/{run_id}/sample.parquet");
    let meta = moto
        .bucket_store(&bucket)
        .head(&ObjectPath::from(key.as_str()))
        .await
        .expect("sample.parquet in the bucket");
    assert!(
        meta.size > MULTIPART_THRESHOLD,
        "sample.parquet is {} bytes",
        meta.size
    );
    // S3 gives a multipart object the ETag `<md5 of the part md5s>-<parts>`.
    let etag = meta.e_tag.clone().unwrap_or_default();
    assert!(
        etag.trim_matches('"').contains('-'),
        "a multipart upload's ETag: {etag}"
    );
    let (status, downloaded) = server
        .get_bytes(
            KEY_A,
            &format!("/v1/clusters/runs/{run_id}/artifacts/sample.parquet"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(downloaded.len() as u64, meta.size);
    let sample = read_parquet(downloaded);
    let mut ids = strings(&sample, "document_id");
    ids.sort();
    let mut uploaded = strings(&read_parquet(upload.into()), "document_id");
    uploaded.sort();
    assert_eq!(ids, uploaded, "every uploaded document is in the sample");
}

/// `clusterd serve` on `store` with `env`, which must exit by itself (a store it cannot
/// read): its exit status and stderr. Killed and failed after 60 s.
fn serve_until_exit(store: &str, env: &[(&'static str, String)]) -> (bool, String) {
    let dir = temp_dir("s3-refused");
    let log = dir.join("stderr.log");
    let mut child = Command::new(bin())
        .args(["serve", "--store", store])
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env_remove("CLUSTERD_API_KEYS")
        .env_remove("AWS_ALLOW_HTTP")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start clusterd");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "clusterd kept running on {store}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    (status.success(), stderr)
}

#[test]
fn an_s3_store_whose_bucket_is_missing_refuses_to_start_naming_it() {
    let Some(moto) = moto_for_s3_tests() else {
        return;
    };
    let bucket = unique_bucket("never-created");
    let store = format!("s3://{bucket}/p");
    let (ok, stderr) = serve_until_exit(&store, &moto.env());
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("the store {store} cannot be read")),
        "{stderr}"
    );
    assert!(stderr.contains("NoSuchBucket"), "{stderr}");
}

#[test]
fn an_unreachable_s3_endpoint_refuses_to_start_with_the_cause() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let mut env = s3_env(&endpoint);
    env.push(("AWS_ALLOW_HTTP", "true".to_owned()));
    let started = Instant::now();
    let (ok, stderr) = serve_until_exit("s3://some-bucket/p", &env);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("the store s3://some-bucket/p cannot be read"),
        "{stderr}"
    );
    assert!(stderr.contains(&endpoint), "names the endpoint: {stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused in seconds, not after a minute of retries: {:?}",
        started.elapsed()
    );
}

/// The process's one rustls crypto provider at work: a real handshake against something
/// that is not TLS ends in an error, not in rustls' "no process-level CryptoProvider"
/// panic.
#[test]
fn an_https_endpoint_that_does_not_speak_tls_is_an_error_not_a_panic() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answering = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut connections = 0u32;
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        connections += 1;
                        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            connections
        })
    };
    let (ok, stderr) = serve_until_exit(
        "s3://some-bucket/p",
        &s3_env(&format!("https://127.0.0.1:{port}")),
    );
    stop.store(true, Ordering::SeqCst);
    let connections = answering.join().expect("listener thread");
    assert!(!ok, "{stderr}");
    assert!(connections > 0, "the client reached the endpoint: {stderr}");
    assert!(
        stderr.contains("the store s3://some-bucket/p cannot be read"),
        "{stderr}"
    );
}

/// The harness itself: `CLUSTERD_TEST_STORE=s3` (with a moto to run) puts every suite
/// server on S3, anything else on a local directory, and the harness's object calls see
/// what the server stored.
#[tokio::test]
async fn suite_servers_run_on_the_store_their_pass_asks_for() {
    let server = TestServer::start();
    let wanted_s3 = std::env::var("CLUSTERD_TEST_STORE").as_deref() == Ok("s3") && s3_mode();
    assert_eq!(server.store().is_s3(), wanted_s3, "{:?}", server.store());
    let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
    // The server's own account of its store (its start-up log line).
    let named = if wanted_s3 {
        server.store().url()
    } else {
        "local:/".to_owned()
    };
    assert!(log.contains(&named), "{named} in {log}");

    let (status, body) = server
        .upload_parquet(KEY_A, "c", example_parquet(10, 4, 2, "d_", "embedding"))
        .await;
    assert_eq!(status, 200, "{body}");
    let part = body["part_key"].as_str().expect("part_key");
    let keys = server
        .list_keys(&format!("{ORG_A}/{NS}/collections/c"))
        .await;
    assert_eq!(keys, [part]);
    assert!(server.get_object(part).await.is_some());
}
