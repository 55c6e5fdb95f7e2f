//! Protobuf messages <-> domain types.

use std::collections::BTreeMap;

use prost_types::value::Kind;

use super::pb;
use crate::model::request::{
    AttributeConfigInput, ConfigInput, FeatureVectorInput, LlmLabelingInput,
};
use crate::model::{
    ApiError, ApiResult, DocumentRecord, ExecuteInput, ExecuteResponse, ParamMap, ParamValue,
    RunView,
};
use crate::store::{CollectionInfo, MembersPage};

fn param_value(v: &prost_types::Value) -> ParamValue {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => ParamValue::Null,
        Some(Kind::NumberValue(n)) => ParamValue::Number(*n),
        Some(Kind::StringValue(s)) => ParamValue::String(s.clone()),
        Some(Kind::BoolValue(b)) => ParamValue::Bool(*b),
        Some(Kind::StructValue(s)) => ParamValue::Map(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), param_value(v)))
                .collect(),
        ),
        Some(Kind::ListValue(l)) => ParamValue::List(l.values.iter().map(param_value).collect()),
    }
}

pub fn json_value(v: &prost_types::Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => {
            // Struct numbers are doubles; keep integers integers so they become Int64.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect(),
        ),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(json_value).collect())
        }
    }
}

pub fn execute_input(req: pb::ExecuteClusteringRequest) -> ExecuteInput {
    ExecuteInput {
        collection_ids: req.collection_ids,
        config: req.config.map(|c| ConfigInput {
            algorithm: c.algorithm,
            algorithm_params: ParamMap::new(
                c.algorithm_params
                    .map(|s| {
                        s.fields
                            .iter()
                            .map(|(k, v)| (k.clone(), param_value(v)))
                            .collect::<BTreeMap<_, _>>()
                    })
                    .unwrap_or_default(),
            ),
            feature_vector: c.feature_vector.map(|f| FeatureVectorInput {
                vector_name: f.vector_name,
                feature_address: f.feature_address,
            }),
            normalize_features: c.normalize_features,
            description: c.description,
            llm_labeling: c.llm_labeling.map(|l| LlmLabelingInput {
                enabled: l.enabled,
                provider: l.provider,
                model_name: l.model_name,
                include_keywords: l.include_keywords,
                include_summary: l.include_summary,
                // A repeated field has no presence: empty means "the default".
                labeling_inputs: (!l.labeling_inputs.is_empty()).then_some(l.labeling_inputs),
            }),
            attribute_config: c.attribute_config.map(|a| AttributeConfigInput {
                attributes: a.attributes,
                hierarchical_grouping: a.hierarchical_grouping,
                aggregation_method: a.aggregation_method,
            }),
        }),
        namespace_id: req.namespace_id,
        internal_id: req.internal_id,
        sample_size: req.sample_size.map(i64::from),
        store_results: req.store_results,
        include_members: req.include_members,
        compute_metrics: req.compute_metrics,
        save_artifacts: req.save_artifacts,
        stream_artifacts: req.stream_artifacts,
    }
}

/// An execute request as the gRPC handler reads it: the message into the checked request.
/// The fuzz target `execute_proto` drives this same function.
pub(crate) fn execute_request_from_proto(
    req: pb::ExecuteClusteringRequest,
    caller: &crate::model::Caller,
) -> ApiResult<crate::model::ExecuteRequest> {
    execute_input(req).validate(caller)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn execute_response(r: ExecuteResponse) -> pb::ExecuteClusteringResponse {
    pb::ExecuteClusteringResponse {
        success: r.success,
        algorithm: r.algorithm.as_str().to_owned(),
        num_clusters: count(r.num_clusters),
        num_documents: count(r.num_documents),
        centroids: r
            .centroids
            .into_iter()
            .map(|c| pb::ClusterCentroid {
                cluster_id: c.cluster_id,
                centroid_vector: c.centroid_vector,
                num_members: count(c.num_members),
                feature_dimensions: count(c.feature_dimensions),
                vector_name: c.vector_name,
                label: c.label,
                keywords: c.keywords.unwrap_or_default(),
                summary: c.summary,
                parent_cluster_id: c.parent_cluster_id,
                level: c.level.map(count),
            })
            .collect(),
        execution_time_ms: i32::try_from(r.execution_time_ms).unwrap_or(i32::MAX),
        run_id: r.run_id,
        metrics: r.metrics.map(|m| pb::ClusteringMetrics {
            silhouette_score: m.silhouette_score,
            davies_bouldin_score: m.davies_bouldin_score,
            calinski_harabasz_score: m.calinski_harabasz_score,
            num_noise: m.num_noise.map(count),
            note: m.note,
        }),
        parquet_path: r.parquet_path,
        members_key: r.members_key,
        created_at: r.created_at,
        seed: u32::try_from(r.seed).unwrap_or(u32::MAX),
        device: Some(pb::DeviceInfo {
            r#type: r.device.kind,
            name: r.device.name,
            backend: r.device.backend,
        }),
        members: r
            .members
            .unwrap_or_default()
            .into_iter()
            .map(|m| pb::ClusterMember {
                document_id: m.document_id,
                collection_id: m.collection_id,
                cluster_id: m.cluster_id,
                distance_to_centroid: m.distance_to_centroid,
                probability: m.probability,
                sampled: None,
                coordinates: Vec::new(),
            })
            .collect(),
        llm_labeling_errors: r
            .llm_labeling_errors
            .unwrap_or_default()
            .into_iter()
            .map(|e| pb::LabelingError {
                cluster_id: e.cluster_id,
                message: e.message,
            })
            .collect(),
        placed_documents: r.placed_documents.and_then(|n| u64::try_from(n).ok()),
    }
}

pub fn document_record(index: usize, d: pb::Document) -> ApiResult<DocumentRecord> {
    if d.document_id.is_empty() {
        return Err(ApiError::invalid_request(
            &format!("documents[{index}].document_id"),
            "must be a non-empty string",
        ));
    }
    let attributes = d
        .attributes
        .map(|s| {
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect()
        })
        .unwrap_or_default();
    Ok(DocumentRecord {
        document_id: d.document_id,
        vectors: d.vectors.into_iter().map(|(k, v)| (k, v.values)).collect(),
        attributes,
    })
}

pub fn collection(c: CollectionInfo) -> pb::Collection {
    pb::Collection {
        collection_id: c.collection_id,
        parts: count(c.parts),
        rows: i32::try_from(c.rows).unwrap_or(i32::MAX),
        bytes: c.bytes as f64,
        vector_columns: c
            .vector_columns
            .into_iter()
            .map(|v| pb::VectorColumn {
                name: v.name,
                dimension: count(v.dimension),
                element_type: v.element_type,
            })
            .collect(),
        attribute_columns: c.attribute_columns,
    }
}

fn prost_value(v: &serde_json::Value) -> prost_types::Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(prost_value).collect(),
        }),
        serde_json::Value::Object(m) => Kind::StructValue(prost_struct(m)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn prost_struct(m: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: m.iter().map(|(k, v)| (k.clone(), prost_value(v))).collect(),
    }
}

pub fn run(view: RunView) -> pb::Run {
    let RunView { status: s, record } = view;
    let (result, request, version, artifacts) = match record {
        Some(r) => {
            let request = match serde_json::to_value(&r.request) {
                Ok(serde_json::Value::Object(m)) => Some(prost_struct(&m)),
                _ => None,
            };
            (
                Some(execute_response(r.result)),
                request,
                Some(r.version),
                r.artifacts,
            )
        }
        None => (None, None, None, Vec::new()),
    };
    pb::Run {
        run_id: s.run_id,
        status: s.status.as_str().to_owned(),
        algorithm: s.algorithm,
        collection_ids: s.collection_ids,
        description: s.description,
        created_at: s.created_at,
        updated_at: s.updated_at,
        heartbeat_at: s.heartbeat_at,
        instance_id: s.instance_id,
        progress: s.progress.map(|p| pb::ProgressEvent {
            stage: p.stage,
            fraction: p.fraction,
            iteration: p.iteration.map(|i| i32::try_from(i).unwrap_or(i32::MAX)),
            inertia: p.inertia,
            documents: p.documents.and_then(|d| i64::try_from(d).ok()),
        }),
        error: s.error.map(|e| pb::RunError {
            code: e.code,
            message: e.message,
            field: e.field,
        }),
        result,
        request,
        version,
        artifacts,
    }
}

pub fn members_page(page: MembersPage) -> pb::ListMembersResponse {
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::ListMembersResponse {
        run_id: page.run_id,
        cluster_id: page.cluster_id,
        offset: to_i64(page.offset),
        limit: count(page.limit),
        total: to_i64(page.total),
        next_offset: page.next_offset.map(to_i64),
        members: page
            .members
            .into_iter()
            .map(|m| pb::ClusterMember {
                document_id: m.document_id,
                collection_id: m.collection_id,
                cluster_id: m.cluster_id,
                distance_to_centroid: m.distance_to_centroid.map(f64::from),
                probability: m.probability.map(f64::from),
                sampled: m.sampled,
                coordinates: m.coordinates.map(Vec::from).unwrap_or_default(),
            })
            .collect(),
    }
}
