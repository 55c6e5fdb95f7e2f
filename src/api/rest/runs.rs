//! `/v1/clusters/runs`: get, list and delete runs, page through a run's members, download
//! an artifact.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{RestResult, parse_query, scope};
use crate::api::{AppState, member_cluster, member_offset, page_limit};
use crate::model::{
    ApiError, ApiResult, ExecuteResponse, RunRequestRecord, RunState, RunStatus, RunView,
    validate_name,
};
use crate::store::{MembersPage, PagedMember};

/// A run as JSON: the status fields, and once completed the result, the resolved request,
/// the version and the artifact keys.
#[derive(Serialize)]
pub struct RunJson {
    #[serde(flatten)]
    status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ExecuteResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RunRequestRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRunsQuery {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> RestResult<Json<serde_json::Value>> {
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
    Ok(Json(serde_json::json!({
        "runs": page.runs,
        "next_page_token": page.next_page_token,
    })))
}

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

/// `DELETE /v1/clusters/runs/{run_id}`: the run and everything it stored.
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> RestResult<Json<serde_json::Value>> {
    let scope = scope(&state, &headers)?;
    let run_id = run_id_from(path)?;
    let objects = state.engine.delete_run(&scope, &run_id).await?;
    Ok(Json(serde_json::json!({
        "run_id": run_id,
        "deleted": true,
        "objects_deleted": objects,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersQuery {
    #[serde(default)]
    cluster_id: Option<String>,
    // Numbers are parsed here rather than by serde so a bad one is a 422 naming it.
    #[serde(default)]
    offset: Option<String>,
    #[serde(default)]
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

#[derive(Serialize)]
struct MemberJson<'a> {
    document_id: &'a str,
    collection_id: &'a str,
    cluster_id: &'a str,
    distance_to_centroid: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probability: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sampled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    coordinates: Option<[f32; 2]>,
}

impl<'a> From<&'a PagedMember> for MemberJson<'a> {
    fn from(m: &'a PagedMember) -> Self {
        MemberJson {
            document_id: &m.document_id,
            collection_id: &m.collection_id,
            cluster_id: &m.cluster_id,
            distance_to_centroid: m.distance_to_centroid,
            probability: m.probability,
            sampled: m.sampled,
            coordinates: m.coordinates,
        }
    }
}

fn members_json(page: &MembersPage) -> serde_json::Value {
    let members: Vec<MemberJson<'_>> = page.members.iter().map(MemberJson::from).collect();
    serde_json::json!({
        "run_id": page.run_id,
        "cluster_id": page.cluster_id,
        "offset": page.offset,
        "limit": page.limit,
        "total": page.total,
        "next_offset": page.next_offset,
        "members": members,
    })
}

/// `GET /v1/clusters/runs/{run_id}/members?cluster_id=&offset=&limit=`.
pub async fn members(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> RestResult<Json<serde_json::Value>> {
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
    Ok(Json(members_json(&page)))
}
