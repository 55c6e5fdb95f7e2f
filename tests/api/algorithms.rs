//! Agglomerative, spectral, Gaussian-mixture and mean-shift clustering through both
//! transports: scikit-learn's labels (deterministic ones) or its quality against the
//! ground truth (stochastic ones), soft-assignment probabilities on the members, and the
//! size bound of the algorithms that keep an N×N structure.

use serde_json::{Value, json};
use tonic::Code;

use crate::harness::*;
use clusterd::algorithms::agglomerative::MATRIX_MAX_DOCUMENTS;
use clusterd::api::grpc::pb;
use clusterd::metrics::adjusted_rand_index;

/// The first case of a fixture whose params satisfy `pick`.
fn case(f: &Value, pick: impl Fn(&Value) -> bool) -> &Value {
    f["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| pick(&c["params"]))
        .unwrap_or_else(|| panic!("no such case in {}", f["dataset"]))
}

fn rest_labels(body: &Value, n: usize) -> Vec<i64> {
    labels_in_row_order(
        n,
        body["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    m["document_id"].as_str().expect("document_id"),
                    m["cluster_id"].as_str().expect("cluster_id"),
                )
            }),
    )
}

fn rows(f: &Value) -> usize {
    f["data"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn agglomerative_and_mean_shift_give_scikit_learns_labels_over_rest() {
    let server = TestServer::start();
    let iris = reference_fixture("agglomerative_iris");
    upload_fixture_rows(&server, "iris", &iris).await;
    let n = rows(&iris);
    let linkages = [
        case(&iris, |p| {
            p["linkage"] == "ward" && p["n_clusters"].is_number()
        }),
        case(&iris, |p| p["linkage"] == "average"),
        case(&iris, |p| p["linkage"] == "single"),
        case(&iris, |p| p["distance_threshold"].is_number()),
    ];
    for c in linkages {
        let params = &c["params"];
        let (status, body) = server
            .execute_rest(KEY_A, &fixture_request("iris", "agglomerative", params))
            .await;
        assert_eq!(status, 200, "{params}: {body}");
        let got = rest_labels(&body, n);
        let ari = adjusted_rand_index(&got, &fixture_labels(&c["labels"]));
        assert!(ari >= 0.99, "agglomerative {params}: ARI {ari}");
        assert_eq!(
            body["metrics"]["num_noise"], 0,
            "hierarchies leave no noise"
        );
        let sizes: u64 = body["centroids"]
            .as_array()
            .expect("centroids")
            .iter()
            .filter_map(|c| c["num_members"].as_u64())
            .sum();
        assert_eq!(sizes as usize, n);
    }

    // Mean-shift with the bandwidth left to scikit-learn's estimate; the run record keeps
    // the bandwidth used, so that sending it back reproduces the run.
    let ms = reference_fixture("mean_shift_iris");
    upload_fixture_rows(&server, "iris_ms", &ms).await;
    let c = case(&ms, |p| p.get("bandwidth").is_none());
    let (status, body) = server
        .execute_rest(
            KEY_A,
            &fixture_request("iris_ms", "mean_shift", &c["params"]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ari = adjusted_rand_index(
        &rest_labels(&body, rows(&ms)),
        &fixture_labels(&c["labels"]),
    );
    assert!(ari >= 0.99, "mean_shift: ARI {ari}");
    let (status, run) = server
        .send(
            reqwest::Method::GET,
            &format!(
                "/v1/clusters/runs/{}",
                body["run_id"].as_str().expect("run_id")
            ),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let used = run["request"]["algorithm_params"]["bandwidth"]
        .as_f64()
        .expect("the bandwidth used is recorded");
    let estimated = ms["estimated_bandwidth"].as_f64().expect("estimate");
    assert!(
        (used - estimated).abs() <= 1e-6 * estimated,
        "bandwidth {used} vs scikit-learn's estimate {estimated}"
    );

    // cluster_all=false leaves the rows out of every kernel's reach as noise.
    let noisy = reference_fixture("mean_shift_noise");
    upload_fixture_rows(&server, "noisy", &noisy).await;
    let c = case(&noisy, |p| p["cluster_all"] == false);
    let (status, body) = server
        .execute_rest(KEY_A, &fixture_request("noisy", "mean_shift", &c["params"]))
        .await;
    assert_eq!(status, 200, "{body}");
    let want = fixture_labels(&c["labels"]);
    let got = rest_labels(&body, rows(&noisy));
    assert!(adjusted_rand_index(&got, &want) >= 0.99);
    let noise = want.iter().filter(|&&l| l == -1).count();
    assert!(noise > 0, "the fixture leaves rows out of reach");
    assert_eq!(body["metrics"]["num_noise"], noise);
}

#[tokio::test]
async fn spectral_and_gaussian_mixture_match_scikit_learns_quality_over_grpc() {
    let server = TestServer::start();
    let mut client = server.cluster_client().await;
    for (fixture, algorithm) in [
        ("spectral_iris", "spectral"),
        ("gaussian_mixture_iris", "gaussian_mixture"),
    ] {
        let f = reference_fixture(fixture);
        upload_fixture_rows(&server, fixture, &f).await;
        let truth = fixture_labels(&f["truth"]);
        let c = case(&f, |_| true);
        let resp = client
            .execute(authed(
                to_proto(&fixture_request(fixture, algorithm, &c["params"])),
                KEY_A,
                NS,
            ))
            .await
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"))
            .into_inner();
        let got = labels_in_row_order(
            truth.len(),
            resp.members
                .iter()
                .map(|m| (m.document_id.as_str(), m.cluster_id.as_str())),
        );
        let ari = adjusted_rand_index(&got, &truth);
        let theirs = c["ari"].as_f64().expect("scikit-learn's ARI");
        assert!(
            ari >= theirs - 0.02,
            "{algorithm} {}: ARI vs truth {ari}, scikit-learn {theirs}",
            c["params"]
        );
        let soft = algorithm == "gaussian_mixture";
        for m in &resp.members {
            match m.probability {
                Some(p) => assert!(soft && p > 0.0 && p <= 1.0, "{algorithm}: {p}"),
                None => assert!(!soft, "a mixture member carries its probability"),
            }
        }
    }
}

#[tokio::test]
async fn gaussian_mixture_streams_em_progress_and_stores_member_probabilities() {
    let server = TestServer::start();
    let f = reference_fixture("gaussian_mixture_iris");
    upload_fixture_rows(&server, "iris", &f).await;
    let c = case(&f, |_| true);
    let mut stream = server
        .cluster_client()
        .await
        .execute_stream(authed(
            to_proto(&fixture_request("iris", "gaussian_mixture", &c["params"])),
            KEY_A,
            NS,
        ))
        .await
        .expect("execute_stream")
        .into_inner();
    let mut em_iterations = Vec::new();
    let mut result = None;
    while let Some(event) = stream.message().await.expect("stream message") {
        match event.event {
            Some(pb::execute_event::Event::Progress(p)) if p.stage == "gaussian_mixture:em" => {
                em_iterations.push(p.iteration.expect("EM progress names its iteration"));
            }
            Some(pb::execute_event::Event::Progress(_)) => {}
            Some(pb::execute_event::Event::Result(r)) => result = Some(r),
            Some(pb::execute_event::Event::ArtifactChunk(_)) => panic!("artifacts not asked for"),
            None => panic!("empty event"),
        }
    }
    assert!(!em_iterations.is_empty(), "EM reports its iterations");
    assert!(em_iterations.is_sorted(), "{em_iterations:?}");
    let result = result.expect("the stream ends with the result");

    let batches = server.artifact(&result.run_id, "members.parquet").await;
    let mut stored = 0;
    for b in &batches {
        let p = b
            .column_by_name("probability")
            .expect("members.parquet has a probability column")
            .as_any()
            .downcast_ref::<arrow_array::Float32Array>()
            .expect("float32 probabilities");
        assert!(p.iter().all(|p| p.is_some_and(|p| p > 0.0 && p <= 1.0)));
        stored += p.len();
    }
    assert_eq!(stored, rows(&f));
}

#[tokio::test]
async fn linkages_with_a_distance_matrix_refuse_more_documents_than_their_bound_naming_sample_size()
{
    let server = TestServer::start();
    let (status, body) = server
        .upload_parquet(
            KEY_A,
            "big",
            example_parquet(MATRIX_MAX_DOCUMENTS + 1, 4, 3, "d_", "embedding"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let params = json!({"linkage": "complete", "n_clusters": 3});
    let mut body = fixture_request("big", "agglomerative", &params);
    body["include_members"] = json!(false);

    let (status, answer) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_parameter");
    assert_eq!(answer["error"]["field"], "sample_size", "{answer}");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&MATRIX_MAX_DOCUMENTS.to_string()),
        "{message}"
    );

    let e = server
        .cluster_client()
        .await
        .execute(authed(to_proto(&body), KEY_A, NS))
        .await
        .expect_err("above the bound over gRPC too");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("sample_size"), "{}", e.message());

    // The cure the error names works; single linkage (an MST) has no bound at all.
    body["sample_size"] = json!(500);
    let (status, answer) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["num_documents"], 500);
    body["sample_size"] = Value::Null;
    body["config"]["algorithm_params"] = json!({"linkage": "single", "n_clusters": 3});
    let (status, answer) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["num_documents"], MATRIX_MAX_DOCUMENTS + 1);
}
