//! `/v1/clusters/runs`: get, list and delete runs, page through a run's members, download
//! an artifact.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{ArtifactPath, ErrorBody, ParquetFile, RunIdPath};
use super::{RestResult, parse_query, scope};
use crate::api::{AppState, member_cluster, member_offset, page_limit};
use crate::model::{
    ApiError, ApiResult, ExecuteResponse, RunRequestRecord, RunState, RunStatus, RunView,
    validate_name,
};
use crate::store::{MembersPage, PagedMember};

/// A run as JSON: the status fields, and once completed the result, the resolved request,
/// the version and the artifact keys.
#[derive(Serialize, ToSchema)]
#[schema(as = Run)]
pub struct RunJson {
    #[serde(flatten)]
    status: RunStatus,
    /// Completed runs: the execute answer (without inline members).
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ExecuteResponse>,
    /// Completed runs: the request with every default resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RunRequestRecord>,
    /// Completed runs: the clusterd version that produced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    /// Completed runs: keys of the artifacts written, relative to the store prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    artifacts: Option<Vec<String>>,
}

impl From<RunView> for RunJson {
    fn from(v: RunView) -> Self {
        let (result, request, version, artifacts) = match v.record {
            Some(r) => (
                Some(r.result),
                Some(r.request),
                Some(r.version),
                Some(r.artifacts),
            ),
            None => (None, None, None, None),
        };
        RunJson {
            status: v.status,
            result,
            request,
            version,
            artifacts,
        }
    }
}

fn run_id_from(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = path.map_err(|e| ApiError::invalid_request("run_id", e.body_text()))?;
    validate_name("run_id", &id)?;
    Ok(id)
}

#[utoipa::path(
    get,
    path = "/v1/clusters/runs/{run_id}",
    tag = "runs",
    summary = "A run: its status, and once completed its result",
    params(RunIdPath),
    responses(
        (status = 200, description = "The run", body = RunJson),
        (status = 400, description = "Bad run id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not done within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Json<RunJson>> {
    let scope = scope(&state, &headers)?;
    let run_id = run_id_from(path)?;
    let view = state.engine.store().get_run(&scope, &run_id).await?;
    Ok(Json(view.into()))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListRunsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_page_token` of the previous page.
    #[serde(default)]
    page_token: Option<String>,
    /// Only runs in this state.
    #[serde(default)]
    #[param(value_type = Option<RunState>)]
    status: Option<String>,
}

/// `GET /v1/clusters/runs`: the status of each run, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = RunsPage)]
pub struct RunsPageJson {
    runs: Vec<RunStatus>,
    /// Pass as `page_token` for the next page; null on the last.
    next_page_token: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/clusters/runs",
    tag = "runs",
    summary = "List the namespace's runs",
    params(ListRunsQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunsPageJson),
        (status = 400, description = "Unknown or malformed query parameter, unknown status", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not done within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> RestResult<Json<RunsPageJson>> {
    let scope = scope(&state, &headers)?;
    let q: ListRunsQuery = parse_query(query.as_deref())?;
    let limit = page_limit(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(|s| RunState::parse("status", s))
        .transpose()?;
    let page = state
        .engine
        .store()
        .list_runs(&scope, limit, q.page_token.as_deref(), status)
        .await?;
    Ok(Json(RunsPageJson {
        runs: page.runs,
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/clusters/runs/{run_id}/artifacts/{name}",
    tag = "runs",
    summary = "Download an artifact of a stored run (Parquet)",
    params(ArtifactPath),
    responses(
        (status = 200, description = "The Parquet file, streamed (Content-Length and \
            Content-Disposition set)", body = ParquetFile,
            content_type = "application/vnd.apache.parquet"),
        (status = 400, description = "Bad run id or artifact name", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such run, or the run has no such artifact", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not started within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn artifact(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let scope = scope(&state, &headers)?;
    let Path((run_id, name)) =
        path.map_err(|e| ApiError::invalid_request("run_id", e.body_text()))?;
    validate_name("run_id", &run_id)?;
    let body = state
        .engine
        .store()
        .get_artifact(&scope, &run_id, &name)
        .await?;
    let mut response = Body::from_stream(body.stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apache.parquet"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.size));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `DELETE /v1/clusters/runs/{run_id}`.
#[derive(Serialize, ToSchema)]
#[schema(as = RunDeleted)]
pub struct RunDeletedJson {
    run_id: String,
    deleted: bool,
    /// Objects removed from the store (status, record, artifacts).
    objects_deleted: usize,
}

/// `DELETE /v1/clusters/runs/{run_id}`: the run and everything it stored.
#[utoipa::path(
    delete,
    path = "/v1/clusters/runs/{run_id}",
    tag = "runs",
    summary = "Delete a run and everything it stored",
    params(RunIdPath),
    responses(
        (status = 200, description = "Deleted", body = RunDeletedJson),
        (status = 400, description = "Bad run id", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run is running: cancel it first", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not done within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Json<RunDeletedJson>> {
    let scope = scope(&state, &headers)?;
    let run_id = run_id_from(path)?;
    let objects = state.engine.delete_run(&scope, &run_id).await?;
    Ok(Json(RunDeletedJson {
        run_id,
        deleted: true,
        objects_deleted: objects,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MembersQuery {
    /// Only this cluster's members (`cluster_001`, ..., or `noise`).
    #[serde(default)]
    cluster_id: Option<String>,
    // Numbers are parsed here rather than by serde so a bad one is a 422 naming it.
    /// Members to skip (default 0).
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 0)]
    offset: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A query number, `field` named when it is not an integer.
fn query_integer(field: &str, value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::invalid_parameter(field, format!("must be an integer, got {v:?}"))
            })
        })
        .transpose()
}

/// A member as members.parquet stores it.
#[derive(Serialize, ToSchema)]
#[schema(as = StoredMember)]
struct MemberJson {
    document_id: String,
    collection_id: String,
    /// `cluster_001`, ... or `noise`.
    cluster_id: String,
    /// Null for noise members (no centroid), and where the distance is not a number.
    distance_to_centroid: Option<f32>,
    /// Soft-assignment algorithms (gaussian_mixture): the cluster's posterior.
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f32>,
    /// Runs with a sample_size: whether the document was in the clustered sample (false:
    /// placed afterwards).
    #[serde(skip_serializing_if = "Option::is_none")]
    sampled: Option<bool>,
    /// The member in the run's 2-D projection, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f32>>, min_items = 2, max_items = 2)]
    coordinates: Option<[f32; 2]>,
}

impl From<PagedMember> for MemberJson {
    fn from(m: PagedMember) -> Self {
        MemberJson {
            document_id: m.document_id,
            collection_id: m.collection_id,
            cluster_id: m.cluster_id,
            distance_to_centroid: m.distance_to_centroid,
            probability: m.probability,
            sampled: m.sampled,
            coordinates: m.coordinates,
        }
    }
}

/// One page of a run's members, in members.parquet order.
#[derive(Serialize, ToSchema)]
#[schema(as = MembersPage)]
pub struct MembersPageJson {
    run_id: String,
    /// The `cluster_id` filter, when given.
    cluster_id: Option<String>,
    offset: u64,
    limit: usize,
    /// Members matching the filter in the whole run.
    total: u64,
    /// Where the next page starts; null on the last page.
    next_offset: Option<u64>,
    members: Vec<MemberJson>,
}

fn members_json(page: MembersPage) -> MembersPageJson {
    MembersPageJson {
        run_id: page.run_id,
        cluster_id: page.cluster_id,
        offset: page.offset,
        limit: page.limit,
        total: page.total,
        next_offset: page.next_offset,
        members: page.members.into_iter().map(MemberJson::from).collect(),
    }
}

/// `GET /v1/clusters/runs/{run_id}/members?cluster_id=&offset=&limit=`.
#[utoipa::path(
    get,
    path = "/v1/clusters/runs/{run_id}/members",
    tag = "runs",
    summary = "Page through a stored run's members",
    params(RunIdPath, MembersQuery),
    responses(
        (status = 200, description = "A page of members", body = MembersPageJson),
        (status = 400, description = "Bad run id, unknown query parameter", body = ErrorBody),
        (status = 401, description = "No or unknown API key", body = ErrorBody),
        (status = 403, description = "Namespace not allowed for the key", body = ErrorBody),
        (status = 404, description = "No such run, or it stored no members", body = ErrorBody),
        (status = 422, description = "offset or limit not an integer or out of range", body = ErrorBody),
        (status = 500, description = "Server fault", body = ErrorBody),
        (status = 504, description = "Not done within --request-timeout-s", body = ErrorBody),
    )
)]
pub async fn members(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> RestResult<Json<MembersPageJson>> {
    let scope = scope(&state, &headers)?;
    let run_id = run_id_from(path)?;
    let q: MembersQuery = parse_query(query.as_deref())?;
    let offset = member_offset(query_integer("offset", q.offset.as_deref())?)?;
    let limit = page_limit(query_integer("limit", q.limit.as_deref())?)?;
    let cluster_id = member_cluster(q.cluster_id.as_deref())?;
    let page = state
        .engine
        .store()
        .read_members_page(&scope, &run_id, cluster_id, offset, limit)
        .await?;
    Ok(Json(members_json(page)))
}
