//! `GET /openapi.json`: the OpenAPI 3.1 document of the REST API. utoipa derives it from
//! the types the handlers parse and serialise (`ToSchema` on the DTOs and the model's
//! response types) and from the `#[utoipa::path]` on each handler, so a field cannot change
//! in one and not the other. The document answers without an API key: it is documentation,
//! and it holds nothing of any organisation.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::api::{AppState, Limits};
use crate::model::run::ARTIFACT_NAMES;
use crate::model::{ApiError, ErrorCode};

/// Paths that answer without a key (no bearer, no `X-Namespace`).
const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/metrics", "/openapi.json"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "clusterd",
        description = "GPU-accelerated clustering over Parquet collections. Every route \
            but /healthz, /metrics and /openapi.json needs `Authorization: Bearer <key>` and an \
            `X-Namespace` header; every failure is the error body \
            `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    paths(
        super::clusters::execute,
        super::background::submit,
        super::background::cancel,
        super::collections::list,
        super::collections::delete,
        super::collections::upload,
        super::runs::list,
        super::runs::get,
        super::runs::delete,
        super::runs::members,
        super::runs::artifact,
        super::assign::assign,
        super::healthz,
        openapi_json,
        super::metrics,
    ),
    components(schemas(ErrorBody, ParquetFile, ArtifactName, crate::model::Algorithm)),
    modifiers(&Security),
    security(("bearer" = [])),
    tags(
        (name = "clusters", description = "Run clusterings"),
        (name = "runs", description = "Stored runs: results, members, artifacts, placement"),
        (name = "collections", description = "Documents to cluster"),
        (name = "meta", description = "Health and this document (no key)"),
    )
)]
struct ApiDoc;

/// The document, with this server's own body limits in its description.
pub fn document(limits: &Limits) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let base = doc.info.description.take().unwrap_or_default();
    doc.info.description = Some(format!(
        "{base}\n\nThis server's limits: JSON bodies at most {} bytes \
         (`--max-json-bytes`), Parquet uploads at most {} bytes (`--max-upload-bytes`); \
         above them the answer is 413 `payload_too_large`.",
        limits.max_json_bytes, limits.max_upload_bytes
    ));
    doc
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This OpenAPI 3.1 document (no key needed)",
    responses(
        (status = 200, description = "The document", body = serde_json::Value),
    )
)]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    Json(document(&state.limits)).into_response()
}

/// The bearer scheme, the `X-Namespace` header on every keyed operation, and no security
/// on the public ones.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "`Authorization: Bearer <API key>`; the key belongs to one \
                             organisation (internal_id) and its allowed namespaces.",
                        ))
                        .build(),
                ),
            );
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            for op in operations(item) {
                if public {
                    op.security = Some(Vec::new());
                } else {
                    op.parameters
                        .get_or_insert_with(Vec::new)
                        .push(RefOr::T(namespace_header()));
                }
            }
        }
    }
}

fn namespace_header() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("X-Namespace")
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(
            "The namespace the request works in (a name such as `production`); it must be \
             one of the key's namespaces.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// The operations of a path item, whatever their method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// `{"error": {"code", "message", "field"}}`: every failure of every route (DESIGN §1).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
struct ErrorDetail {
    #[schema(schema_with = error_code_schema)]
    code: &'static str,
    /// What went wrong, in words a caller can act on.
    message: String,
    /// The request field it concerns, as a dotted path
    /// (`config.algorithm_params.eps`); null when it concerns no one field.
    field: Option<String>,
}

impl From<&ApiError> for ErrorBody {
    fn from(e: &ApiError) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: e.code.as_str(),
                message: e.message.clone(),
                field: e.field.clone(),
            },
        }
    }
}

/// `code` is a `&str` from [`ErrorCode::as_str`]; the schema lists every one.
fn error_code_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
        .description(Some(
            "invalid_request 400, invalid_parameter 422, unauthenticated 401, \
             permission_denied 403, not_found 404, conflict 409, payload_too_large 413, \
             rate_limited 429, unimplemented 501, deadline_exceeded 504, cancelled 499, \
             internal 500",
        ))
}

/// A Parquet file as a request or answer body (binary; the schema only names its type).
#[allow(dead_code, reason = "a schema only: Parquet bodies stream as bytes")]
pub struct ParquetFile;

impl PartialSchema for ParquetFile {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/vnd.apache.parquet")
            .description(Some("A Parquet file"))
            .into()
    }
}

impl ToSchema for ParquetFile {}

/// The artifact names a run may have.
#[allow(dead_code, reason = "a schema only: the name is a path segment")]
pub struct ArtifactName;

impl PartialSchema for ArtifactName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ARTIFACT_NAMES))
            .into()
    }
}

impl ToSchema for ArtifactName {}

#[allow(dead_code, reason = "path parameters, described for the document only")]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunIdPath {
    /// The run (`run_` + a random id).
    run_id: String,
}

#[allow(dead_code, reason = "path parameters, described for the document only")]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CollectionIdPath {
    /// The collection (letters, digits, `_`, `-`, `.`; at most 128 bytes).
    collection_id: String,
}

#[allow(dead_code, reason = "path parameters, described for the document only")]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ArtifactPath {
    /// The run (`run_` + a random id).
    run_id: String,
    /// The artifact's file name.
    #[param(value_type = ArtifactName)]
    name: String,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// (path, method) of every `.route(...)` in `router()`, read from its source: the
    /// router cannot list its routes, and a second hand-kept list could drift from both.
    fn served_routes() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let router = src
            .split("pub fn router(")
            .nth(1)
            .and_then(|s| s.split("\n}\n").next())
            .expect("router() in mod.rs");
        let compact: String = router.chars().filter(|c| !c.is_whitespace()).collect();
        let mut routes = BTreeSet::new();
        for piece in compact.split(".route(").skip(1) {
            let path = piece.split('"').nth(1).expect("a path literal");
            let handlers = piece.split_once("\",").expect("handlers").1;
            for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
                if handlers.starts_with(&format!("{method}("))
                    || handlers.contains(&format!(".{method}("))
                {
                    routes.insert((path.to_owned(), method.to_owned()));
                }
            }
        }
        routes
    }

    fn documented_routes() -> BTreeSet<(String, String)> {
        let doc = document(&Limits::default());
        let mut routes = BTreeSet::new();
        for (path, item) in doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("delete", &item.delete),
                ("patch", &item.patch),
                ("head", &item.head),
                ("options", &item.options),
            ] {
                if op.is_some() {
                    routes.insert((path.clone(), method.to_owned()));
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_of_the_router_is_documented_and_every_documented_route_is_routed() {
        let served = served_routes();
        assert!(served.len() >= 14, "the router parse found {served:?}");
        assert_eq!(served, documented_routes());
    }

    #[test]
    fn only_health_and_the_document_answer_without_a_key() {
        let doc = serde_json::to_value(document(&Limits::default())).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = op["security"] == serde_json::json!([]);
                assert_eq!(
                    public,
                    PUBLIC_PATHS.contains(&path.as_str()),
                    "{method} {path}"
                );
                let has_namespace = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == "X-Namespace"));
                assert_eq!(has_namespace, !public, "{method} {path}");
            }
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn the_error_code_schema_lists_every_code_and_the_error_body_serialises_to_it() {
        let doc = serde_json::to_value(document(&Limits::default())).unwrap();
        let codes = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"];
        let want: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, &serde_json::json!(want));
        let body = super::super::error_body(&ApiError::invalid_parameter("eps", "bad"));
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "invalid_parameter", "message": "bad", "field": "eps"}})
        );
    }

    #[test]
    fn the_document_names_the_servers_body_limits() {
        let limits = Limits {
            max_json_bytes: 1234,
            max_upload_bytes: 56789,
            request_timeout: None,
        };
        let info = document(&limits).info.description.unwrap_or_default();
        assert!(
            info.contains("1234 bytes") && info.contains("56789 bytes"),
            "{info}"
        );
    }
}
