//! The JSON shapes of the REST API, field for field the reference document's.

use serde::{Deserialize, Deserializer, Serialize};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    collection_ids: Vec<String>,
    config: ConfigBody,
    #[serde(default)]
    namespace_id: Option<String>,
    #[serde(default)]
    internal_id: Option<String>,
    #[serde(default, deserialize_with = "integral")]
    sample_size: Option<i64>,
    #[serde(default)]
    store_results: Option<bool>,
    #[serde(default)]
    include_members: Option<bool>,
    #[serde(default)]
    compute_metrics: Option<bool>,
    #[serde(default)]
    save_artifacts: Option<bool>,
    #[serde(default)]
    stream_artifacts: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    algorithm: String,
    #[serde(default)]
    algorithm_params: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    feature_vector: Option<FeatureVectorBody>,
    #[serde(default)]
    normalize_features: Option<bool>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    llm_labeling: Option<LlmLabelingBody>,
    #[serde(default)]
    attribute_config: Option<AttributeConfigBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureVectorBody {
    #[serde(default)]
    vector_name: Option<String>,
    #[serde(default)]
    feature_address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    labeling_inputs: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeConfigBody {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentsBody {
    pub documents: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub page_token: Option<String>,
}

#[derive(Serialize)]
struct VectorColumnJson {
    name: String,
    dimension: usize,
    element_type: String,
}

#[derive(Serialize)]
pub struct CollectionJson {
    collection_id: String,
    parts: usize,
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
