//! The isolation matrix: no endpoint, REST or gRPC, reads or writes across organisation or
//! namespace.
//!
//! Organisation A in namespace `production` owns a collection, a completed run (sampled,
//! so it placed members) and a running run. Every endpoint is then called, on both
//! transports, by three callers aiming at A's collection and runs:
//!
//! - organisation B in the same namespace name (`production`);
//! - organisation A itself in namespace `staging` (a key of A listing only `staging`);
//! - A's production key with `X-Namespace: staging`, a namespace it does not list.
//!
//! The first two are authenticated in a scope of their own, so A's objects do not exist
//! for them: NOT_FOUND, answered word for word as for an id nobody ever used (so not even
//! the existence of A's run leaks: a finished run is not a `conflict` for them), and
//! lists hold only their own items. Writes land in their own scope (an upload to A's
//! collection name creates their own collection; a submit of A's collection is a run of
//! their own that fails NOT_FOUND). The third is refused by the key rules of
//! src/api/auth.rs before anything is looked up: 403 / PERMISSION_DENIED everywhere.
//! Afterwards A's collection, runs, members and artifacts read back unchanged, and the
//! running run is still running (A can still cancel it).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;
use clusterd::api::grpc::pb;

const COLLECTION: &str = "col_isolated";
const OWN_COLLECTION: &str = "col_own";
const VECTOR: &str = "embedding";
const DIMENSION: usize = 16;
const UNKNOWN_COLLECTION: &str = "col_never_uploaded";
const UNKNOWN_RUN: &str = "run_fffffe0000000000abcd";
const ARTIFACTS: [&str; 4] = [
    "clusters.parquet",
    "members.parquet",
    "sample.parquet",
    "core_points.parquet",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    OrgB,
    OrgAStaging,
    KeyAOutsideItsNamespace,
}

impl Who {
    fn key(self) -> &'static str {
        match self {
            Who::OrgB => KEY_B,
            Who::OrgAStaging => KEY_A_STAGING,
            Who::KeyAOutsideItsNamespace => KEY_A,
        }
    }

    fn namespace(self) -> &'static str {
        match self {
            Who::OrgB => NS,
            Who::OrgAStaging | Who::KeyAOutsideItsNamespace => "staging",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Rest,
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RunOfA {
    Completed,
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Endpoint {
    ListCollections,
    ListRuns,
    GetRun(RunOfA),
    Artifact(&'static str),
    Members,
    AssignVectors,
    AssignDocuments,
    /// The caller's own completed run, fed A's documents by id.
    AssignDocumentsOfAToOwnRun,
    CancelRun(RunOfA),
    DeleteRun(RunOfA),
    DeleteCollection,
    Execute,
    /// REST: execute with `Accept: text/event-stream`; gRPC: ExecuteStream.
    ExecuteStream,
    Submit,
    Upload,
}

/// Reads first, then writes, uploads last: a write lands in the caller's own scope and
/// must not change what a later row of the same caller expects.
const ENDPOINTS: [Endpoint; 20] = [
    Endpoint::ListCollections,
    Endpoint::ListRuns,
    Endpoint::GetRun(RunOfA::Completed),
    Endpoint::GetRun(RunOfA::Running),
    Endpoint::Artifact(ARTIFACTS[0]),
    Endpoint::Artifact(ARTIFACTS[1]),
    Endpoint::Artifact(ARTIFACTS[2]),
    Endpoint::Artifact(ARTIFACTS[3]),
    Endpoint::Members,
    Endpoint::AssignVectors,
    Endpoint::AssignDocuments,
    Endpoint::AssignDocumentsOfAToOwnRun,
    Endpoint::CancelRun(RunOfA::Completed),
    Endpoint::CancelRun(RunOfA::Running),
    Endpoint::DeleteRun(RunOfA::Completed),
    Endpoint::DeleteRun(RunOfA::Running),
    Endpoint::DeleteCollection,
    Endpoint::Execute,
    Endpoint::ExecuteStream,
    Endpoint::Submit,
];

/// What the row's caller must get when it is authenticated in a scope of its own.
enum Expect {
    /// 200 with exactly the caller's own items.
    OwnItems,
    /// 404 / NOT_FOUND, the same answer as for an id nobody used.
    Hidden,
    /// Accepted as the caller's own run, which fails NOT_FOUND on the collection.
    OwnRunFailsNotFound,
    /// 200, written into the caller's own scope.
    OwnWrite,
}

fn expectation(endpoint: Endpoint) -> Expect {
    match endpoint {
        Endpoint::ListCollections | Endpoint::ListRuns => Expect::OwnItems,
        Endpoint::Submit => Expect::OwnRunFailsNotFound,
        Endpoint::Upload => Expect::OwnWrite,
        _ => Expect::Hidden,
    }
}

/// What a row aims at: A's objects, or ids nobody used.
#[derive(Clone)]
struct Targets {
    collection: String,
    completed: String,
    running: String,
    document_ids: Vec<String>,
}

impl Targets {
    fn run(&self, which: RunOfA) -> &str {
        match which {
            RunOfA::Completed => &self.completed,
            RunOfA::Running => &self.running,
        }
    }

    fn unknown(&self) -> Targets {
        Targets {
            collection: UNKNOWN_COLLECTION.to_owned(),
            completed: UNKNOWN_RUN.to_owned(),
            running: UNKNOWN_RUN.to_owned(),
            document_ids: self.document_ids.clone(),
        }
    }

    /// An error body with the aimed-at ids replaced by placeholders, for comparing the
    /// answer about A's objects with the answer about unknown ones.
    fn normalised_error(&self, answer: &Answer) -> String {
        answer.body["error"]
            .to_string()
            .replace(&self.completed, "<run>")
            .replace(&self.running, "<run>")
            .replace(&self.collection, "<collection>")
    }
}

/// What the caller owns in its own scope (none for a refused key).
#[derive(Clone, Default)]
struct Own {
    run: String,
    runs_listed: Vec<String>,
}

/// One answer, either transport: an HTTP status (gRPC codes mapped as the server maps its
/// error codes), and a JSON body (`{"error": {code, message, field}}` for errors).
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    body: Value,
}

fn grpc_status_code(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        _ => 500,
    }
}

fn status_answer(s: &tonic::Status) -> Answer {
    let md = |name: &str| {
        s.metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Answer {
        status: grpc_status_code(s.code()),
        body: json!({"error": {
            "code": md("x-error-code"),
            "message": s.message(),
            "field": md("x-error-field"),
        }}),
    }
}

fn grpc_answer<T>(
    r: Result<tonic::Response<T>, tonic::Status>,
    ok: impl FnOnce(T) -> Value,
) -> Answer {
    match r {
        Ok(resp) => Answer {
            status: 200,
            body: ok(resp.into_inner()),
        },
        Err(s) => status_answer(&s),
    }
}

/// A REST answer; a list body reduced to its ids.
fn rest_answer((status, body): (u16, Value), list: Option<(&str, &str)>) -> Answer {
    let body = match list {
        Some((items, id)) if status == 200 => json!({"ids": ids(&body[items], id)}),
        _ => body,
    };
    Answer { status, body }
}

fn ids(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn vector(i: usize) -> Vec<f32> {
    (0..DIMENSION)
        .map(|d| ((i * 7 + d * 3) % 11) as f32 - 5.0)
        .collect()
}

fn kmeans_body(collection: &str, n_clusters: u64) -> Value {
    json!({
        "collection_ids": [collection],
        "config": {
            "algorithm": "kmeans",
            "algorithm_params": {"n_clusters": n_clusters, "random_state": 1},
            "feature_vector": {"vector_name": VECTOR}
        }
    })
}

/// A request with optional `Accept: text/event-stream`: the status, the raw body and its
/// content type ([`raw_answer`] reads them).
async fn rest_raw(
    server: &TestServer,
    who_key: &str,
    ns: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    events: bool,
) -> (u16, bytes::Bytes, String) {
    let mut req = reqwest::Client::new()
        .request(method, server.url(path))
        .bearer_auth(who_key)
        .header("X-Namespace", ns);
    if events {
        req = req.header("Accept", "text/event-stream");
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, resp.bytes().await.expect("body"), content_type)
}

/// A JSON body as it is, an event stream through [`sse_body`], a download as `{"bytes": n}`.
fn raw_answer((status, bytes, content_type): (u16, bytes::Bytes, String)) -> Answer {
    let body = if content_type.starts_with("application/json") {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    } else if content_type.starts_with("text/event-stream") {
        sse_body(&String::from_utf8_lossy(&bytes))
    } else {
        json!({"bytes": bytes.len()})
    };
    Answer { status, body }
}

/// A Server-Sent Events body as `{"events": [{event, data}...], "error": ...}`: the events
/// before an `error` event, and that event's error.
fn sse_body(text: &str) -> Value {
    let mut events = Vec::new();
    let mut error = Value::Null;
    for block in text.split("\n\n") {
        let (mut event, mut data) = (None, Value::Null);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = serde_json::from_str(v.trim_start()).unwrap_or(Value::Null);
            }
        }
        match event.as_deref() {
            Some("error") => error = data["error"].clone(),
            Some(name) => events.push(json!({"event": name, "data": data})),
            None => {}
        }
    }
    json!({"events": events, "error": error})
}

/// Poll a submitted run (as its submitter) until it stops: status and error as JSON.
async fn finished_run(server: &TestServer, who: Who, via: Via, run_id: &str) -> Value {
    let start = Instant::now();
    loop {
        let run = match via {
            Via::Rest => {
                let (status, run) = server
                    .send(
                        reqwest::Method::GET,
                        &format!("/v1/clusters/runs/{run_id}"),
                        Some(who.key()),
                        who.namespace(),
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{run}");
                json!({"status": run["status"], "error": run["error"]})
            }
            Via::Grpc => {
                let run = server
                    .cluster_client()
                    .await
                    .get_run(authed(
                        pb::GetRunRequest {
                            run_id: run_id.to_owned(),
                        },
                        who.key(),
                        who.namespace(),
                    ))
                    .await
                    .expect("the submitter reads its run")
                    .into_inner();
                json!({
                    "status": run.status,
                    "error": run.error.map(|e| json!({
                        "code": e.code, "message": e.message, "field": e.field
                    })),
                })
            }
        };
        if run["status"] != "running" {
            return run;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "submitted run {run_id} never stopped: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send one endpoint's request as `who` over `via`, aimed at `t`.
async fn call(
    server: &TestServer,
    who: Who,
    via: Via,
    endpoint: Endpoint,
    t: &Targets,
    own: &Own,
) -> Answer {
    let (key, ns) = (who.key(), who.namespace());
    let send = |method: reqwest::Method, path: String, body: Option<Value>| async move {
        server
            .send(method, &path, Some(key), ns, body.as_ref())
            .await
    };
    let execute_body = {
        let mut b = kmeans_body(&t.collection, 3);
        // Nothing recorded in the caller's scope: a later list row expects only its own.
        b["store_results"] = json!(false);
        b
    };
    let assign_documents = |run_id: &str| {
        (
            run_id.to_owned(),
            json!({"collection_id": t.collection, "document_ids": t.document_ids}),
        )
    };
    match via {
        Via::Rest => match endpoint {
            Endpoint::ListCollections => rest_answer(
                send(reqwest::Method::GET, "/v1/collections".into(), None).await,
                Some(("collections", "collection_id")),
            ),
            Endpoint::ListRuns => rest_answer(
                send(reqwest::Method::GET, "/v1/clusters/runs".into(), None).await,
                Some(("runs", "run_id")),
            ),
            Endpoint::GetRun(which) => rest_answer(
                send(
                    reqwest::Method::GET,
                    format!("/v1/clusters/runs/{}", t.run(which)),
                    None,
                )
                .await,
                None,
            ),
            Endpoint::Artifact(name) => raw_answer(
                rest_raw(
                    server,
                    key,
                    ns,
                    reqwest::Method::GET,
                    &format!("/v1/clusters/runs/{}/artifacts/{name}", t.completed),
                    None,
                    false,
                )
                .await,
            ),
            Endpoint::Members => rest_answer(
                send(
                    reqwest::Method::GET,
                    format!("/v1/clusters/runs/{}/members?limit=1000", t.completed),
                    None,
                )
                .await,
                None,
            ),
            Endpoint::AssignVectors => rest_answer(
                send(
                    reqwest::Method::POST,
                    format!("/v1/clusters/runs/{}/assign", t.completed),
                    Some(json!({"vectors": [vector(1), vector(2)]})),
                )
                .await,
                None,
            ),
            Endpoint::AssignDocuments | Endpoint::AssignDocumentsOfAToOwnRun => {
                let run = if endpoint == Endpoint::AssignDocuments {
                    &t.completed
                } else {
                    &own.run
                };
                let (run, body) = assign_documents(run);
                rest_answer(
                    send(
                        reqwest::Method::POST,
                        format!("/v1/clusters/runs/{run}/assign"),
                        Some(body),
                    )
                    .await,
                    None,
                )
            }
            Endpoint::CancelRun(which) => rest_answer(
                send(
                    reqwest::Method::POST,
                    format!("/v1/clusters/runs/{}/cancel", t.run(which)),
                    None,
                )
                .await,
                None,
            ),
            Endpoint::DeleteRun(which) => rest_answer(
                send(
                    reqwest::Method::DELETE,
                    format!("/v1/clusters/runs/{}", t.run(which)),
                    None,
                )
                .await,
                None,
            ),
            Endpoint::DeleteCollection => rest_answer(
                send(
                    reqwest::Method::DELETE,
                    format!("/v1/collections/{}", t.collection),
                    None,
                )
                .await,
                None,
            ),
            Endpoint::Execute => rest_answer(
                send(
                    reqwest::Method::POST,
                    "/v1/clusters/execute".into(),
                    Some(execute_body),
                )
                .await,
                None,
            ),
            Endpoint::ExecuteStream => raw_answer(
                rest_raw(
                    server,
                    key,
                    ns,
                    reqwest::Method::POST,
                    "/v1/clusters/execute",
                    Some(&execute_body),
                    true,
                )
                .await,
            ),
            Endpoint::Submit => {
                let mut body = kmeans_body(&t.collection, 3);
                body["store_results"] = json!(true);
                let (status, accepted) = send(
                    reqwest::Method::POST,
                    "/v1/clusters/submit".into(),
                    Some(body),
                )
                .await;
                match accepted["run_id"].as_str().map(str::to_owned) {
                    Some(run_id) if status == 202 => Answer {
                        status,
                        body: finished_run(server, who, via, &run_id).await,
                    },
                    _ => Answer {
                        status,
                        body: accepted,
                    },
                }
            }
            Endpoint::Upload => rest_answer(
                send(
                    reqwest::Method::POST,
                    format!("/v1/collections/{}/documents", t.collection),
                    Some(json!({"documents": [
                        {"document_id": "intruder_rest", VECTOR: vector(3)}
                    ]})),
                )
                .await,
                None,
            ),
        },
        Via::Grpc => {
            let mut clusters = server.cluster_client().await;
            let mut collections = server.collection_client().await;
            match endpoint {
                Endpoint::ListCollections => grpc_answer(
                    collections
                        .list_collections(authed(pb::ListCollectionsRequest::default(), key, ns))
                        .await,
                    |r| json!({"ids": r.collections.into_iter().map(|c| c.collection_id).collect::<Vec<_>>()}),
                ),
                Endpoint::ListRuns => grpc_answer(
                    clusters
                        .list_runs(authed(pb::ListRunsRequest::default(), key, ns))
                        .await,
                    |r| json!({"ids": r.runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>()}),
                ),
                Endpoint::GetRun(which) => grpc_answer(
                    clusters
                        .get_run(authed(
                            pb::GetRunRequest {
                                run_id: t.run(which).to_owned(),
                            },
                            key,
                            ns,
                        ))
                        .await,
                    |r| json!({"run": format!("{r:?}")}),
                ),
                Endpoint::Artifact(name) => {
                    let call = clusters
                        .get_artifact(authed(
                            pb::GetArtifactRequest {
                                run_id: t.completed.clone(),
                                name: name.to_owned(),
                            },
                            key,
                            ns,
                        ))
                        .await;
                    match call {
                        Err(s) => status_answer(&s),
                        Ok(resp) => {
                            let mut stream = resp.into_inner();
                            let mut bytes = 0;
                            loop {
                                match stream.message().await {
                                    Ok(Some(chunk)) => bytes += chunk.data.len(),
                                    Ok(None) => {
                                        break Answer {
                                            status: 200,
                                            body: json!({"bytes": bytes}),
                                        };
                                    }
                                    Err(s) => break status_answer(&s),
                                }
                            }
                        }
                    }
                }
                Endpoint::Members => grpc_answer(
                    clusters
                        .list_members(authed(
                            pb::ListMembersRequest {
                                run_id: t.completed.clone(),
                                cluster_id: None,
                                offset: None,
                                limit: Some(1000),
                            },
                            key,
                            ns,
                        ))
                        .await,
                    |r| json!({"members": r.members.len(), "total": r.total}),
                ),
                Endpoint::AssignVectors => grpc_answer(
                    clusters
                        .assign(authed(
                            pb::AssignRequest {
                                run_id: t.completed.clone(),
                                vectors: vec![
                                    pb::AssignVector { values: vector(1) },
                                    pb::AssignVector { values: vector(2) },
                                ],
                                collection_id: None,
                                document_ids: Vec::new(),
                            },
                            key,
                            ns,
                        ))
                        .await,
                    |r| json!({"assignments": r.assignments.len()}),
                ),
                Endpoint::AssignDocuments | Endpoint::AssignDocumentsOfAToOwnRun => {
                    let run_id = if endpoint == Endpoint::AssignDocuments {
                        t.completed.clone()
                    } else {
                        own.run.clone()
                    };
                    grpc_answer(
                        clusters
                            .assign(authed(
                                pb::AssignRequest {
                                    run_id,
                                    vectors: Vec::new(),
                                    collection_id: Some(t.collection.clone()),
                                    document_ids: t.document_ids.clone(),
                                },
                                key,
                                ns,
                            ))
                            .await,
                        |r| json!({"assignments": r.assignments.len()}),
                    )
                }
                Endpoint::CancelRun(which) => grpc_answer(
                    clusters
                        .cancel_run(authed(
                            pb::CancelRunRequest {
                                run_id: t.run(which).to_owned(),
                            },
                            key,
                            ns,
                        ))
                        .await,
                    |r| json!({"status": r.status}),
                ),
                Endpoint::DeleteRun(which) => grpc_answer(
                    clusters
                        .delete_run(authed(
                            pb::DeleteRunRequest {
                                run_id: t.run(which).to_owned(),
                            },
                            key,
                            ns,
                        ))
                        .await,
                    |r| json!({"objects_deleted": r.objects_deleted}),
                ),
                Endpoint::DeleteCollection => grpc_answer(
                    collections
                        .delete_collection(authed(
                            pb::DeleteCollectionRequest {
                                collection_id: t.collection.clone(),
                            },
                            key,
                            ns,
                        ))
                        .await,
                    |r| json!({"deleted": r.deleted}),
                ),
                Endpoint::Execute => grpc_answer(
                    clusters
                        .execute(authed(to_proto(&execute_body), key, ns))
                        .await,
                    |r| json!({"num_documents": r.num_documents}),
                ),
                Endpoint::ExecuteStream => {
                    let call = clusters
                        .execute_stream(authed(to_proto(&execute_body), key, ns))
                        .await;
                    match call {
                        Err(s) => status_answer(&s),
                        Ok(resp) => {
                            let mut stream = resp.into_inner();
                            let mut events = Vec::new();
                            loop {
                                match stream.message().await {
                                    Ok(Some(event)) => events.push(format!("{event:?}")),
                                    Ok(None) => {
                                        break Answer {
                                            status: 200,
                                            body: json!({"events": events}),
                                        };
                                    }
                                    Err(s) => {
                                        let mut answer = status_answer(&s);
                                        answer.body["events"] = json!(events);
                                        break answer;
                                    }
                                }
                            }
                        }
                    }
                }
                Endpoint::Submit => {
                    let mut body = kmeans_body(&t.collection, 3);
                    body["store_results"] = json!(true);
                    match clusters
                        .submit_clustering(authed(to_proto(&body), key, ns))
                        .await
                    {
                        Err(s) => status_answer(&s),
                        Ok(resp) => Answer {
                            // The REST twin's 202: accepted, to be followed.
                            status: 202,
                            body: finished_run(server, who, via, &resp.into_inner().run_id).await,
                        },
                    }
                }
                Endpoint::Upload => {
                    let msg = pb::UpsertDocumentsRequest {
                        collection_id: t.collection.clone(),
                        documents: vec![pb::Document {
                            document_id: "intruder_grpc".into(),
                            vectors: [(VECTOR.to_owned(), pb::Vector { values: vector(4) })]
                                .into_iter()
                                .collect(),
                            attributes: None,
                        }],
                        parquet_chunk: Vec::new(),
                    };
                    grpc_answer(
                        collections
                            .upsert_documents(authed(tokio_stream::iter(vec![msg]), key, ns))
                            .await,
                        |r| json!({"documents": r.documents}),
                    )
                }
            }
        }
    }
}

/// Everything A can read back: compared before and after the matrix.
#[derive(Debug, PartialEq)]
struct Snapshot {
    collections: Value,
    completed_run: Value,
    runs: Vec<(String, String)>,
    members: Value,
    /// Status and length of each artifact; the bytes are compared apart (too long to print).
    artifacts: Vec<(String, u16, usize)>,
}

async fn snapshot(server: &TestServer, t: &Targets) -> (Snapshot, Vec<bytes::Bytes>) {
    let get = |path: String| async move {
        let (status, body) = server
            .send(reqwest::Method::GET, &path, Some(KEY_A), NS, None)
            .await;
        assert_eq!(status, 200, "A reads {path}: {body}");
        body
    };
    let collections = get("/v1/collections".into()).await;
    let completed_run = get(format!("/v1/clusters/runs/{}", t.completed)).await;
    let mut runs: Vec<(String, String)> = get("/v1/clusters/runs".into()).await["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    runs.sort();
    let members = get(format!(
        "/v1/clusters/runs/{}/members?limit=1000",
        t.completed
    ))
    .await;
    let mut artifacts = Vec::new();
    let mut bytes = Vec::new();
    for name in ARTIFACTS {
        let (status, body, _) = rest_raw(
            server,
            KEY_A,
            NS,
            reqwest::Method::GET,
            &format!("/v1/clusters/runs/{}/artifacts/{name}", t.completed),
            None,
            false,
        )
        .await;
        artifacts.push((name.to_owned(), status, body.len()));
        bytes.push(body);
    }
    (
        Snapshot {
            collections,
            completed_run,
            runs,
            members,
            artifacts,
        },
        bytes,
    )
}

/// The caller's own collection and completed run, so a list has something to show and
/// assign has a run of the caller's own to feed A's document ids to.
async fn own_scope(server: &TestServer, who: Who) -> Own {
    let docs: Vec<Value> = (0..30)
        .map(|i| json!({"document_id": format!("own{i}"), VECTOR: vector(i)}))
        .collect();
    let (status, body) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/collections/{OWN_COLLECTION}/documents"),
            Some(who.key()),
            who.namespace(),
            Some(&json!({ "documents": docs })),
        )
        .await;
    assert_eq!(status, 200, "{who:?} uploads its own collection: {body}");
    let (status, body) = server
        .send(
            reqwest::Method::POST,
            "/v1/clusters/execute",
            Some(who.key()),
            who.namespace(),
            Some(&kmeans_body(OWN_COLLECTION, 2)),
        )
        .await;
    assert_eq!(status, 200, "{who:?} clusters its own collection: {body}");
    let run = body["run_id"].as_str().expect("run id").to_owned();
    Own {
        runs_listed: vec![run.clone()],
        run,
    }
}

fn check_row(
    who: Who,
    via: Via,
    endpoint: Endpoint,
    answer: &Answer,
    unknown: Option<&Answer>,
    t: &Targets,
    own: &Own,
) {
    let row = format!("{via:?} {endpoint:?} as {who:?}");
    let text = answer.body.to_string();
    // A refusal may repeat the id it was given; anything else names nothing of A's.
    if !matches!(expectation(endpoint), Expect::Hidden) {
        for secret in [&t.completed, &t.running]
            .into_iter()
            .chain(&t.document_ids)
        {
            assert!(
                !text.contains(secret.as_str()),
                "{row}: {secret} of A leaked: {text}"
            );
        }
    }
    if who == Who::KeyAOutsideItsNamespace {
        assert_eq!(answer.status, 403, "{row}: {text}");
        assert_eq!(
            answer.body["error"]["code"], "permission_denied",
            "{row}: {text}"
        );
        return;
    }
    if who == Who::OrgB {
        assert!(
            !text.contains(ORG_A),
            "{row}: A's organisation named: {text}"
        );
    }
    match expectation(endpoint) {
        Expect::OwnItems => {
            assert_eq!(answer.status, 200, "{row}: {text}");
            let expected = if endpoint == Endpoint::ListCollections {
                vec![OWN_COLLECTION.to_owned()]
            } else {
                own.runs_listed.clone()
            };
            assert_eq!(
                answer.body["ids"],
                json!(expected),
                "{row}: only its own items"
            );
        }
        Expect::Hidden => {
            // An event stream has begun (its `loading` progress sent) when the collection
            // turns out missing: it answers 200 and ends with the error event.
            let status = if via == Via::Rest && endpoint == Endpoint::ExecuteStream {
                200
            } else {
                404
            };
            assert_eq!(answer.status, status, "{row}: {text}");
            assert_eq!(answer.body["error"]["code"], "not_found", "{row}: {text}");
            let unknown = unknown.expect("an answer for unknown ids");
            assert_eq!(
                unknown.status, status,
                "{row} for unknown ids: {:?}",
                unknown.body
            );
            // Events sent before the error (none but progress without counts) are the
            // same as for a collection nobody has.
            assert_eq!(
                answer.body["events"], unknown.body["events"],
                "{row}: the events tell A's collection apart from an unknown one"
            );
            assert!(
                !text.contains("\"result\"") && !text.contains("Result("),
                "{row}: {text}"
            );
            assert_eq!(
                t.normalised_error(answer),
                t.unknown().normalised_error(unknown),
                "{row}: A's object is told apart from an unknown one"
            );
        }
        Expect::OwnRunFailsNotFound => {
            assert_eq!(answer.status, 202, "{row}: {text}");
            assert_eq!(answer.body["status"], "failed", "{row}: {text}");
            assert_eq!(answer.body["error"]["code"], "not_found", "{row}: {text}");
            assert_eq!(
                answer.body["error"]["field"], "collection_ids[0]",
                "{row}: {text}"
            );
            let unknown = unknown.expect("an answer for unknown ids");
            assert_eq!(
                t.normalised_error(answer),
                t.unknown().normalised_error(unknown),
                "{row}: A's collection is told apart from an unknown one"
            );
        }
        Expect::OwnWrite => {
            assert_eq!(answer.status, 200, "{row}: {text}");
            assert_eq!(answer.body["documents"], 1, "{row}: {text}");
        }
    }
}

#[tokio::test]
async fn no_endpoint_reads_or_writes_across_organisation_or_namespace() {
    let server = TestServer::start();
    let bytes = example_parquet(300, DIMENSION, 3, "a_", VECTOR);
    let (status, body) = server.upload_parquet(KEY_A, COLLECTION, bytes).await;
    assert_eq!(status, 200, "{body}");

    // A's completed run: fitted on a sample of 100, the other 200 placed afterwards.
    let mut completed = kmeans_body(COLLECTION, 3);
    completed["sample_size"] = json!(100);
    completed["save_artifacts"] = json!(true);
    let (status, result) = server.execute_rest(KEY_A, &completed).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["placed_documents"], 200, "{result}");
    let completed = result["run_id"].as_str().expect("run id").to_owned();

    // Callers' own scopes, before A's endless run takes a run slot.
    let mut owns = Vec::new();
    for who in [Who::OrgB, Who::OrgAStaging] {
        owns.push((who, own_scope(&server, who).await));
    }
    owns.push((Who::KeyAOutsideItsNamespace, Own::default()));

    // A's running run: k-means restarted a million times does not end during the test.
    let mut endless = kmeans_body(COLLECTION, 40);
    endless["config"]["algorithm_params"]["n_init"] = json!(1_000_000);
    endless["store_results"] = json!(true);
    let (status, submitted) = server
        .send(
            reqwest::Method::POST,
            "/v1/clusters/submit",
            Some(KEY_A),
            NS,
            Some(&endless),
        )
        .await;
    assert_eq!(status, 202, "{submitted}");
    let running = submitted["run_id"].as_str().expect("run id").to_owned();

    let (status, page) = server
        .send(
            reqwest::Method::GET,
            &format!("/v1/clusters/runs/{completed}/members?limit=5"),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let document_ids = ids(&page["members"], "document_id");
    assert_eq!(document_ids.len(), 5, "{page}");
    let targets = Targets {
        collection: COLLECTION.to_owned(),
        completed,
        running,
        document_ids,
    };
    let (before, before_bytes) = snapshot(&server, &targets).await;
    assert_eq!(
        before
            .artifacts
            .iter()
            .map(|(_, s, _)| *s)
            .collect::<Vec<_>>(),
        vec![200, 200, 200, 404],
        "A's run stored clusters, members and sample, and has no core points (k-means)"
    );

    let mut rows = Vec::new();
    for endpoint in ENDPOINTS.into_iter().chain([Endpoint::Upload]) {
        for via in [Via::Rest, Via::Grpc] {
            rows.push((via, endpoint));
        }
    }
    for (who, own) in &owns {
        for &(via, endpoint) in &rows {
            let answer = call(&server, *who, via, endpoint, &targets, own).await;
            let unknown = match expectation(endpoint) {
                Expect::Hidden | Expect::OwnRunFailsNotFound
                    if *who != Who::KeyAOutsideItsNamespace =>
                {
                    Some(call(&server, *who, via, endpoint, &targets.unknown(), own).await)
                }
                _ => None,
            };
            check_row(
                *who,
                via,
                endpoint,
                &answer,
                unknown.as_ref(),
                &targets,
                own,
            );
        }
    }

    // The writes landed in the callers' own scopes: their copy of A's collection name
    // holds the two documents they uploaded, not A's 300.
    for (who, _) in &owns[..2] {
        let (status, listed) = server
            .send(
                reqwest::Method::GET,
                "/v1/collections",
                Some(who.key()),
                who.namespace(),
                None,
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        let theirs = listed["collections"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["collection_id"] == COLLECTION))
            .unwrap_or_else(|| panic!("{who:?} has its own {COLLECTION}: {listed}"));
        assert_eq!(theirs["rows"], 2, "{who:?}: {theirs}");
    }

    // A's collection, runs, members and artifacts are as they were.
    let (after, after_bytes) = snapshot(&server, &targets).await;
    assert_eq!(before, after, "A's data changed");
    for ((name, _, _), (b, a)) in before
        .artifacts
        .iter()
        .zip(before_bytes.iter().zip(&after_bytes))
    {
        assert!(b == a, "A's {name} changed");
    }
    assert!(
        after
            .runs
            .contains(&(targets.running.clone(), "running".to_owned())),
        "A's endless run is still running: {:?}",
        after.runs
    );
    let (status, assigned) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/clusters/runs/{}/assign", targets.completed),
            Some(KEY_A),
            NS,
            Some(&json!({"collection_id": COLLECTION, "document_ids": targets.document_ids})),
        )
        .await;
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["assignments"].as_array().map(Vec::len), Some(5));
    // Only A can stop its run, and it still can.
    let (status, cancelled) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/clusters/runs/{}/cancel", targets.running),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert!(
        ["cancelled", "cancelling"].contains(&cancelled["status"].as_str().unwrap_or_default()),
        "{cancelled}"
    );
}
