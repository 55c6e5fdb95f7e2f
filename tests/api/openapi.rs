//! `GET /openapi.json`: the document is valid OpenAPI 3.1 (by the official schema), the
//! reference's example body and answer fit it, and the server's real answers and
//! refusals fit what it documents, route by route.
//!
//! `tests/fixtures/openapi-3.1-schema.json` is the OpenAPI Initiative's schema of OAS 3.1
//! documents (https://spec.openapis.org/oas/3.1/schema/2022-10-07, Apache-2.0), as
//! shipped by the `openapi-spec-validator` Python package: that address is not reachable
//! from CI, so the schema is kept here.

use jsonschema::Draft;
use serde_json::{Value, json};

use crate::harness::*;

const DOCUMENT_METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

async fn fetch_document(server: &TestServer) -> Value {
    // No key, no namespace: the document is public.
    let resp = reqwest::get(server.url("/openapi.json"))
        .await
        .expect("GET /openapi.json");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("JSON document")
}

/// A validator of `schema` in the context of the whole document, so that its
/// `#/components/schemas/...` references resolve: the document's own keys (`openapi`,
/// `paths`, ...) are no JSON Schema keywords, and `allOf` applies the schema.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["allOf"] = json!([schema]);
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
}

fn component(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The errors of `instance` against `schema`, as readable lines (empty: valid).
fn errors(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    validator(doc, schema)
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_valid(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let errs = errors(doc, schema, instance);
    assert!(
        errs.is_empty(),
        "{what} does not fit {schema}: {errs:#?}\n{instance:#}"
    );
}

/// The schema the document gives for `method path` answering `status` as `content_type`.
fn response_schema(
    doc: &Value,
    path: &str,
    method: &str,
    status: u16,
    content_type: &str,
) -> Value {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]
        [content_type]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} documents no {status} answer as {content_type}"
    );
    schema.clone()
}

/// Assert that a real answer fits its documented schema.
fn assert_answer(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let schema = response_schema(doc, path, method, status, "application/json");
    assert_valid(doc, &schema, body, &format!("{method} {path} {status}"));
}

fn reference_response() -> Value {
    let path = format!(
        "{}/tests/fixtures/reference_execute_response.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

#[tokio::test]
async fn the_document_is_a_valid_openapi_3_1_document_by_the_official_schema() {
    let server = TestServer::start();
    let doc = fetch_document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let path = format!(
        "{}/tests/fixtures/openapi-3.1-schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let oas: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("OAS schema")).expect("JSON");
    let oas = jsonschema::validator_for(&oas).expect("the OAS 3.1 schema compiles");
    let errs: Vec<String> = oas
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errs.is_empty(), "not a valid OAS 3.1 document: {errs:#?}");

    // The OAS schema leaves Schema Objects to the JSON Schema dialect: check each one.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert!(schemas.len() >= 20, "{:?}", schemas.keys());
    for (name, schema) in schemas {
        if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
            panic!("components.schemas.{name} is not a JSON Schema: {e}");
        }
    }

    // The validator can fail: a document without `info`, or with an answer that is not
    // a Response Object, is refused.
    let mut broken = doc.clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!oas.is_valid(&broken));
    let mut broken = doc.clone();
    broken["paths"]["/healthz"]["get"]["responses"]["200"] = json!("ok");
    assert!(!oas.is_valid(&broken));
}

#[tokio::test]
async fn the_reference_example_body_and_answer_fit_the_document() {
    let server = TestServer::start();
    let doc = fetch_document(&server).await;
    // REFERENCE_JSON is the reference's curl `--data`, copied verbatim.
    let request_schema = &doc["paths"]["/v1/clusters/execute"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(request_schema, &component("ExecuteRequest"));
    assert_valid(
        &doc,
        request_schema,
        &reference_body(),
        "the reference body",
    );
    let answer = response_schema(
        &doc,
        "/v1/clusters/execute",
        "post",
        200,
        "application/json",
    );
    assert_valid(
        &doc,
        &answer,
        &reference_response(),
        "the reference's example answer",
    );
}

#[tokio::test]
async fn bodies_the_server_refuses_for_their_shape_also_fail_the_schema() {
    let server = TestServer::start();
    let doc = fetch_document(&server).await;
    let schema = component("ExecuteRequest");
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut body = reference_body();
    body.as_object_mut().unwrap().remove("collection_ids");
    cases.push(("missing collection_ids", body));
    let mut body = reference_body();
    body.as_object_mut().unwrap().remove("config");
    cases.push(("missing config", body));
    let mut body = reference_body();
    body["config"]["algorithm"] = json!(5);
    cases.push(("algorithm a number", body));
    let mut body = reference_body();
    body["sample_size"] = json!("10000");
    cases.push(("sample_size a string", body));
    let mut body = reference_body();
    body["sample_size"] = json!(5.5);
    cases.push(("sample_size not integral", body));
    let mut body = reference_body();
    body["store_results"] = json!("yes");
    cases.push(("store_results a string", body));
    let mut body = reference_body();
    body["collection_ids"] = json!("col_products_v1");
    cases.push(("collection_ids a string", body));
    let mut body = reference_body();
    body["colection_ids"] = json!(["x"]);
    cases.push(("an unknown field", body));
    let mut body = reference_body();
    body["config"]["feature_vector"]["vector"] = json!("x");
    cases.push(("an unknown nested field", body));
    for (what, body) in cases {
        let (status, answer) = server.execute_rest(KEY_A, &body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_answer(&doc, "/v1/clusters/execute", "post", 400, &answer);
        assert!(
            !errors(&doc, &schema, &body).is_empty(),
            "{what}: the server refuses it but the schema accepts it"
        );
    }
    // An integral float is an integer to both.
    let mut body = reference_body();
    body["sample_size"] = json!(10000.0);
    assert_valid(&doc, &schema, &body, "sample_size 10000.0");
}

#[tokio::test]
async fn real_answers_and_refusals_fit_their_documented_schemas() {
    let server = server_with_reference_collections().await;
    let doc = fetch_document(&server).await;

    // The reference request, as it is, on the reference's two collections.
    let (status, answer) = server.execute_rest(KEY_A, &reference_body()).await;
    assert_eq!(status, 200, "{answer}");
    assert_answer(&doc, "/v1/clusters/execute", "post", 200, &answer);
    let run_id = answer["run_id"].as_str().expect("run_id").to_owned();

    // With members inline, and with a soft-assignment algorithm (probabilities).
    let mut body = reference_body();
    body["include_members"] = json!(true);
    body["config"]["algorithm"] = json!("gaussian_mixture");
    body["config"]["algorithm_params"] = json!({"n_components": 3, "random_state": 1});
    let (status, answer) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["members"][0]["probability"].is_number(), "{answer}");
    assert_answer(&doc, "/v1/clusters/execute", "post", 200, &answer);

    // The event stream's `result` is the same schema.
    let text = reqwest::Client::new()
        .post(server.url("/v1/clusters/execute"))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .header("Accept", "text/event-stream")
        .json(&reference_body())
        .send()
        .await
        .expect("SSE execute")
        .text()
        .await
        .expect("SSE body");
    let result = text
        .split("\n\n")
        .find(|event| event.lines().any(|l| l == "event: result"))
        .and_then(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .unwrap_or_else(|| panic!("no result event in {text}"));
    let result: Value = serde_json::from_str(result).expect("result JSON");
    assert_answer(&doc, "/v1/clusters/execute", "post", 200, &result);
    assert!(
        doc["paths"]["/v1/clusters/execute"]["post"]["responses"]["200"]["content"]
            ["text/event-stream"]
            .is_object()
    );

    let get = reqwest::Method::GET;
    let (status, run) = server
        .send(
            get.clone(),
            &format!("/v1/clusters/runs/{run_id}"),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_answer(&doc, "/v1/clusters/runs/{run_id}", "get", 200, &run);

    let page = server.runs_page().await;
    assert_answer(&doc, "/v1/clusters/runs", "get", 200, &page);

    let (status, members) = server
        .send(
            get.clone(),
            &format!("/v1/clusters/runs/{run_id}/members?limit=5&offset=2"),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{members}");
    assert_answer(
        &doc,
        "/v1/clusters/runs/{run_id}/members",
        "get",
        200,
        &members,
    );

    let (status, collections) = server
        .send(
            get.clone(),
            "/v1/collections?limit=10",
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{collections}");
    assert_answer(&doc, "/v1/collections", "get", 200, &collections);

    let (status, placed) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/clusters/runs/{run_id}/assign"),
            Some(KEY_A),
            NS,
            Some(&json!({"vectors": [vec![0.5f32; 16]]})),
        )
        .await;
    assert_eq!(status, 200, "{placed}");
    assert_answer(
        &doc,
        "/v1/clusters/runs/{run_id}/assign",
        "post",
        200,
        &placed,
    );

    // The artifact answers with the content type the document names.
    let resp = reqwest::Client::new()
        .get(server.url(&format!(
            "/v1/clusters/runs/{run_id}/artifacts/clusters.parquet"
        )))
        .bearer_auth(KEY_A)
        .header("X-Namespace", NS)
        .send()
        .await
        .expect("artifact");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    response_schema(
        &doc,
        "/v1/clusters/runs/{run_id}/artifacts/{name}",
        "get",
        200,
        &content_type,
    );

    let (status, submitted) = server
        .send(
            reqwest::Method::POST,
            "/v1/clusters/submit",
            Some(KEY_A),
            NS,
            Some(&reference_body()),
        )
        .await;
    assert_eq!(status, 202, "{submitted}");
    assert_answer(&doc, "/v1/clusters/submit", "post", 202, &submitted);

    // Refusals: an unknown algorithm parameter (400), one out of range (422), a run that
    // does not exist (404), no key (401), a completed run cancelled (409).
    let mut body = reference_body();
    body["config"]["algorithm_params"]["n_clusterz"] = json!(3);
    let (status, unknown) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 400, "{unknown}");
    assert_eq!(
        unknown["error"]["field"],
        "config.algorithm_params.n_clusterz"
    );
    assert_answer(&doc, "/v1/clusters/execute", "post", 400, &unknown);
    let mut body = reference_body();
    body["config"]["algorithm_params"]["n_clusters"] = json!(0);
    let (status, refused) = server.execute_rest(KEY_A, &body).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(
        refused["error"]["field"],
        "config.algorithm_params.n_clusters"
    );
    assert_answer(&doc, "/v1/clusters/execute", "post", 422, &refused);

    let (status, missing) = server
        .send(
            get.clone(),
            "/v1/clusters/runs/run_missing",
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_answer(&doc, "/v1/clusters/runs/{run_id}", "get", 404, &missing);

    let (status, anonymous) = server
        .send(get.clone(), "/v1/collections", None, NS, None)
        .await;
    assert_eq!(status, 401, "{anonymous}");
    assert_answer(&doc, "/v1/collections", "get", 401, &anonymous);

    let (status, conflict) = server
        .send(
            reqwest::Method::POST,
            &format!("/v1/clusters/runs/{run_id}/cancel"),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 409, "{conflict}");
    assert_answer(
        &doc,
        "/v1/clusters/runs/{run_id}/cancel",
        "post",
        409,
        &conflict,
    );

    // An error body that the schema refuses: the error schema is not `{}`.
    let schema = response_schema(
        &doc,
        "/v1/clusters/execute",
        "post",
        422,
        "application/json",
    );
    let mut wrong = refused.clone();
    wrong["error"]["code"] = json!("no_such_code");
    assert!(!errors(&doc, &schema, &wrong).is_empty());
    assert!(!errors(&doc, &schema, &json!({"message": "flat"})).is_empty());

    let (status, health) = server.send(get.clone(), "/healthz", None, NS, None).await;
    assert_eq!(status, 200);
    assert_answer(&doc, "/healthz", "get", 200, &health);

    let (status, deleted) = server
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/clusters/runs/{run_id}"),
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_answer(&doc, "/v1/clusters/runs/{run_id}", "delete", 200, &deleted);

    let (status, deleted) = server
        .send(
            reqwest::Method::DELETE,
            "/v1/collections/col_products_v2",
            Some(KEY_A),
            NS,
            None,
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_answer(
        &doc,
        "/v1/collections/{collection_id}",
        "delete",
        200,
        &deleted,
    );
}

#[tokio::test]
async fn every_documented_upload_content_type_is_accepted() {
    let server = TestServer::start();
    let doc = fetch_document(&server).await;
    let path = "/v1/collections/{collection_id}/documents";
    let content = doc["paths"][path]["post"]["requestBody"]["content"]
        .as_object()
        .expect("upload content types");
    assert!(content.contains_key("application/json"));
    let client = reqwest::Client::new();
    for (i, content_type) in content.keys().enumerate() {
        let collection = format!("c_upload_{i}");
        let body = if content_type == "application/json" {
            let docs = json!({"documents": [
                {"document_id": "d1", "embedding": [0.1, 0.2], "category": "a"},
                {"document_id": "d2", "embedding": [0.3, 0.4], "metadata": {"status": "x"}},
            ]});
            assert_valid(
                &doc,
                &content[content_type]["schema"],
                &docs,
                "the JSON documents",
            );
            serde_json::to_vec(&docs).unwrap()
        } else {
            example_parquet(20, 4, 2, "p_", "embedding")
        };
        let resp = client
            .post(server.url(&format!("/v1/collections/{collection}/documents")))
            .bearer_auth(KEY_A)
            .header("X-Namespace", NS)
            .header("Content-Type", content_type.as_str())
            .body(body)
            .send()
            .await
            .expect("upload");
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.expect("JSON");
        assert_eq!(status, 200, "{content_type}: {answer}");
        assert_answer(&doc, path, "post", 200, &answer);
    }
    // A document without its id is refused by both.
    let schema = &content["application/json"]["schema"];
    let no_id = json!({"documents": [{"embedding": [0.1, 0.2]}]});
    assert!(!errors(&doc, schema, &no_id).is_empty());
    let (status, refused) = server
        .send(
            reqwest::Method::POST,
            "/v1/collections/c_no_id/documents",
            Some(KEY_A),
            NS,
            Some(&no_id),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_answer(&doc, path, "post", 400, &refused);
}

/// Each documented operation reaches its handler (not the 404/405 fallbacks), and every
/// other method on a documented path is 405: the router serves what the document says
/// on these paths. (That the router has no route the document lacks is the unit test
/// `every_route_of_the_router_is_documented_and_every_documented_route_is_routed`.)
#[tokio::test]
async fn every_documented_operation_is_served_and_no_other_method_is() {
    let server = TestServer::start();
    let doc = fetch_document(&server).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{:?}", paths.keys());
    let client = reqwest::Client::new();
    for (path, item) in paths {
        let url = path
            .replace("{run_id}", "run_missing")
            .replace("{collection_id}", "c_missing")
            .replace("{name}", "clusters.parquet");
        for method in DOCUMENT_METHODS {
            let resp = client
                .request(method.to_uppercase().parse().unwrap(), server.url(&url))
                .bearer_auth(KEY_A)
                .header("X-Namespace", NS)
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if item.get(method).is_some() {
                assert_ne!(status, 405, "{method} {path} is documented but not routed");
                assert_ne!(
                    body["error"]["message"], "no such endpoint",
                    "{method} {path} is documented but not routed"
                );
                let documented = &item[method]["responses"][status.to_string()];
                assert!(
                    documented.is_object(),
                    "{method} {path} answered {status}, which it does not document: {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is routed but not documented: {body}"
                );
            }
        }
    }
}
