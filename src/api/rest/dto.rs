//! The JSON shapes of the REST API, field for field the reference document's.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};

use crate::model::request::{
    AttributeConfigInput, ConfigInput, FeatureVectorInput, LlmLabelingInput,
};
use crate::model::{ExecuteInput, ParamMap, ParamValue};
use crate::store::CollectionInfo;

/// An integer that may be written as an integral float (`5.0`), but not `5.5`.
fn integral<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v: Option<serde_json::Number> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(serde::de::Error::custom(format!(
                    "expected an integer, got {n}"
                ))),
            }
        }
    }
}

/// Request to execute clustering on one or more collections (the reference's body; the
/// whole body is at most `--max-json-bytes`, default 8 MiB).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExecuteRequest)]
pub struct ExecuteBody {
    /// IDs of the collections to cluster together.
    #[schema(min_items = 1, max_items = 256)]
    collection_ids: Vec<String>,
    config: ConfigBody,
    /// When given, must equal the `X-Namespace` header.
    #[serde(default)]
    namespace_id: Option<String>,
    /// When given, must be the API key's organisation.
    #[serde(default)]
    internal_id: Option<String>,
    /// Documents to sample for clustering; absent or null: all of them. An integral float
    /// (`5.0`) is accepted.
    #[serde(default, deserialize_with = "integral")]
    sample_size: Option<i64>,
    /// Store the run (run.json, clusters.parquet, members.parquet).
    #[serde(default)]
    #[schema(default = true)]
    store_results: Option<bool>,
    /// Return the members inline (at most `--max-members`, default 100000; above: 413).
    #[serde(default)]
    #[schema(default = false)]
    include_members: Option<bool>,
    /// Compute the quality metrics (silhouette on a sample of large runs).
    #[serde(default)]
    #[schema(default = true)]
    compute_metrics: Option<bool>,
    /// Save the artifacts (Parquet) with the run.
    #[serde(default)]
    #[schema(default = false)]
    save_artifacts: Option<bool>,
    /// Send the artifacts as `event: artifact` pieces of the event stream
    /// (`Accept: text/event-stream` only; a plain JSON execute refuses it).
    #[serde(default)]
    #[schema(default = false)]
    stream_artifacts: Option<bool>,
}

/// Clustering configuration: the algorithm and its parameters.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClusteringConfig)]
struct ConfigBody {
    #[schema(value_type = crate::model::Algorithm)]
    algorithm: String,
    /// scikit-learn 1.9.1's parameter names, defaults and meaning for the algorithm
    /// (`n_clusters`, `max_iter`, `eps`, `min_samples`, `min_cluster_size`, ...); an
    /// unknown parameter is a 400 naming it, a value out of range a 422.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    algorithm_params: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    feature_vector: Option<FeatureVectorBody>,
    /// L2-normalise the vectors first; default true for vector algorithms.
    #[serde(default)]
    normalize_features: Option<bool>,
    /// Kept in the run record (at most 4096 bytes).
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    llm_labeling: Option<LlmLabelingBody>,
    /// Required by, and only accepted with, `attribute_based`.
    #[serde(default)]
    attribute_config: Option<AttributeConfigBody>,
}

/// The vector column: `{"vector_name": "X"}` or
/// `{"feature_address": "mixpeek://extractor@version/X"}`, both naming column `X`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FeatureVector)]
struct FeatureVectorBody {
    #[serde(default)]
    vector_name: Option<String>,
    #[serde(default)]
    feature_address: Option<String>,
}

/// Cluster labels, keywords and summaries from an OpenAI-compatible provider (or the
/// built-in offline labeller).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LlmLabeling)]
struct LlmLabelingBody {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    include_keywords: Option<bool>,
    #[serde(default)]
    include_summary: Option<bool>,
    /// Dotted attribute paths whose text the labeller reads (1 to 8; default `["text"]`).
    #[serde(default)]
    labeling_inputs: Option<Vec<String>>,
}

/// Grouping by attribute values (`attribute_based`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AttributeConfig)]
struct AttributeConfigBody {
    /// Dotted attribute paths, 1 to 16.
    #[serde(default)]
    attributes: Vec<String>,
    #[serde(default)]
    hierarchical_grouping: Option<bool>,
    #[serde(default)]
    aggregation_method: Option<String>,
}

impl From<ExecuteBody> for ExecuteInput {
    fn from(b: ExecuteBody) -> Self {
        let c = b.config;
        ExecuteInput {
            collection_ids: b.collection_ids,
            config: Some(ConfigInput {
                algorithm: c.algorithm,
                algorithm_params: ParamMap::new(
                    c.algorithm_params
                        .unwrap_or_default()
                        .iter()
                        .map(|(k, v)| (k.clone(), ParamValue::from(v)))
                        .collect(),
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
                    labeling_inputs: l.labeling_inputs,
                }),
                attribute_config: c.attribute_config.map(|a| AttributeConfigInput {
                    attributes: a.attributes,
                    hierarchical_grouping: a.hierarchical_grouping,
                    aggregation_method: a.aggregation_method,
                }),
            }),
            namespace_id: b.namespace_id,
            internal_id: b.internal_id,
            sample_size: b.sample_size,
            store_results: b.store_results,
            include_members: b.include_members,
            compute_metrics: b.compute_metrics,
            save_artifacts: b.save_artifacts,
            stream_artifacts: b.stream_artifacts,
        }
    }
}

/// JSON documents to add to a collection (the body is at most `--max-json-bytes`, default
/// 8 MiB; larger collections upload as Parquet).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DocumentsUpload)]
pub struct DocumentsBody {
    #[schema(schema_with = documents_schema)]
    pub documents: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// A document is an open object, so the derive cannot say what the server requires of it.
fn documents_schema() -> impl Into<RefOr<Schema>> {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "document_id",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1)),
                )
                .required("document_id")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(true),
                ))
                .description(Some(
                    "One document: `document_id`, then each key a column: a non-empty array \
                     of numbers is a vector column (e.g. `embedding`), anything else an \
                     attribute (`category`, `metadata` objects, ...).",
                )),
        )
        .description(Some(
            "The documents; re-uploading a document_id replaces it.",
        ))
}

/// Paging of the list endpoints.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_page_token` of the previous page.
    #[serde(default)]
    pub page_token: Option<String>,
}

/// `POST /v1/collections/{collection_id}/documents`: what was stored.
#[derive(Serialize, ToSchema)]
#[schema(as = UploadSummary)]
pub struct UploadJson {
    pub collection_id: String,
    /// Documents in this upload.
    pub documents: usize,
    /// The part written, relative to the store prefix.
    pub part_key: String,
}

/// `GET /v1/collections`.
#[derive(Serialize, ToSchema)]
#[schema(as = CollectionsPage)]
pub struct CollectionsPageJson {
    pub collections: Vec<CollectionJson>,
    /// Pass as `page_token` for the next page; null on the last.
    pub next_page_token: Option<String>,
}

/// `DELETE /v1/collections/{collection_id}`.
#[derive(Serialize, ToSchema)]
#[schema(as = CollectionDeleted)]
pub struct CollectionDeletedJson {
    pub collection_id: String,
    pub deleted: bool,
}

/// `GET /healthz`: always `{"status": "ok"}` while the server answers.
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
pub struct HealthJson {
    #[schema(schema_with = ok_schema)]
    pub status: &'static str,
}

fn ok_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(["ok"]))
}

#[derive(Serialize, ToSchema)]
#[schema(as = VectorColumn)]
struct VectorColumnJson {
    name: String,
    dimension: usize,
    /// `float16`, `float32` or `float64`.
    element_type: String,
}

/// A collection of the caller's namespace.
#[derive(Serialize, ToSchema)]
#[schema(as = Collection)]
pub struct CollectionJson {
    collection_id: String,
    parts: usize,
    /// Rows stored, before de-duplication of re-uploaded documents.
    rows: u64,
    bytes: u64,
    vector_columns: Vec<VectorColumnJson>,
    attribute_columns: Vec<String>,
}

impl From<CollectionInfo> for CollectionJson {
    fn from(c: CollectionInfo) -> Self {
        CollectionJson {
            collection_id: c.collection_id,
            parts: c.parts,
            rows: c.rows,
            bytes: c.bytes,
            vector_columns: c
                .vector_columns
                .into_iter()
                .map(|v| VectorColumnJson {
                    name: v.name,
                    dimension: v.dimension,
                    element_type: v.element_type,
                })
                .collect(),
            attribute_columns: c.attribute_columns,
        }
    }
}
