//! The execute request: what the transports hand over (`ExecuteInput`, wire-neutral but
//! unchecked) and what the engine runs (`ExecuteRequest`, validated here, in one place,
//! for REST and gRPC alike).

use super::error::{ApiError, ApiResult};
use super::names::validate_name;
use super::params::ParamMap;

/// The public algorithm names, in the reference's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    KMeans,
    Dbscan,
    Hdbscan,
    Agglomerative,
    Spectral,
    GaussianMixture,
    MeanShift,
    Optics,
    AttributeBased,
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::KMeans,
        Algorithm::Dbscan,
        Algorithm::Hdbscan,
        Algorithm::Agglomerative,
        Algorithm::Spectral,
        Algorithm::GaussianMixture,
        Algorithm::MeanShift,
        Algorithm::Optics,
        Algorithm::AttributeBased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::KMeans => "kmeans",
            Algorithm::Dbscan => "dbscan",
            Algorithm::Hdbscan => "hdbscan",
            Algorithm::Agglomerative => "agglomerative",
            Algorithm::Spectral => "spectral",
            Algorithm::GaussianMixture => "gaussian_mixture",
            Algorithm::MeanShift => "mean_shift",
            Algorithm::Optics => "optics",
            Algorithm::AttributeBased => "attribute_based",
        }
    }

    pub fn parse(field: &str, name: &str) -> ApiResult<Self> {
        Self::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
            ApiError::invalid_request(
                field,
                format!("unknown algorithm {name:?}; one of {}", names.join(", ")),
            )
        })
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether the algorithm clusters a vector column (all but attribute_based).
    pub fn uses_vectors(self) -> bool {
        self != Algorithm::AttributeBased
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The JSON is the public name (custom `Serialize`), so the schema is written by hand: a
/// string, one of the names of [`Algorithm::ALL`].
impl utoipa::PartialSchema for Algorithm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Self::ALL.iter().map(|a| a.as_str())))
            .description(Some(
                "The clustering algorithm (scikit-learn's, by its public name).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Algorithm {}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown algorithm {name:?}")))
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureVectorInput {
    pub vector_name: Option<String>,
    pub feature_address: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmLabelingInput {
    pub enabled: Option<bool>,
    pub provider: Option<String>,
    pub model_name: Option<String>,
    pub include_keywords: Option<bool>,
    pub include_summary: Option<bool>,
    /// Dotted attribute paths whose text the labeller reads; default `["text"]`.
    pub labeling_inputs: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttributeConfigInput {
    pub attributes: Vec<String>,
    pub hierarchical_grouping: Option<bool>,
    pub aggregation_method: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigInput {
    pub algorithm: String,
    pub algorithm_params: ParamMap,
    pub feature_vector: Option<FeatureVectorInput>,
    pub normalize_features: Option<bool>,
    pub description: Option<String>,
    pub llm_labeling: Option<LlmLabelingInput>,
    pub attribute_config: Option<AttributeConfigInput>,
}

/// The request as a transport parsed it: types are right, meaning is unchecked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecuteInput {
    pub collection_ids: Vec<String>,
    pub config: Option<ConfigInput>,
    pub namespace_id: Option<String>,
    pub internal_id: Option<String>,
    pub sample_size: Option<i64>,
    pub store_results: Option<bool>,
    pub include_members: Option<bool>,
    pub compute_metrics: Option<bool>,
    pub save_artifacts: Option<bool>,
    pub stream_artifacts: Option<bool>,
}

/// A validated request. Algorithm parameters are checked by the algorithm's own
/// validator (the engine calls it before loading any data).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteRequest {
    pub collection_ids: Vec<String>,
    pub algorithm: Algorithm,
    pub algorithm_params: ParamMap,
    /// The vector column (None only for attribute_based).
    pub vector_name: Option<String>,
    pub normalize_features: bool,
    pub description: Option<String>,
    pub sample_size: Option<usize>,
    pub store_results: bool,
    pub include_members: bool,
    pub compute_metrics: bool,
    pub save_artifacts: bool,
    /// Send the stored artifacts after the result (streaming transports only; needs
    /// `store_results`, since the chunks are read back from the store).
    pub stream_artifacts: bool,
    /// Cluster labelling, when `llm_labeling.enabled`.
    pub labeling: Option<LabelingRequest>,
    /// `attribute_based` grouping (required for it, refused for the others).
    pub attribute_grouping: Option<AttributeGroupingRequest>,
}

/// Which labeller a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelingProvider {
    /// `provider` absent: the server's configured provider, else the offline labeller.
    ServerDefault,
    Offline,
    OpenAi,
}

/// A validated `llm_labeling` with `enabled: true`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelingRequest {
    pub provider: LabelingProvider,
    pub model_name: Option<String>,
    pub include_keywords: bool,
    pub include_summary: bool,
    /// Dotted attribute paths holding each document's text (concatenated in this order).
    pub inputs: Vec<String>,
    /// Whether `inputs` was given (else it is the default `["text"]`), for error messages.
    pub inputs_given: bool,
}

/// How list-valued attributes place a document (`attribute_config.aggregation_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeAggregation {
    MostFrequent,
    First,
    All,
}

impl AttributeAggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeAggregation::MostFrequent => "most_frequent",
            AttributeAggregation::First => "first",
            AttributeAggregation::All => "all",
        }
    }
}

/// A validated `attribute_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeGroupingRequest {
    /// Dotted paths into the documents, outermost level first when hierarchical.
    pub attributes: Vec<String>,
    pub hierarchical: bool,
    pub aggregation: AttributeAggregation,
}

/// Most attributes one attribute_based request may group by.
pub const MAX_GROUPING_ATTRIBUTES: usize = 16;
/// Most text attributes a labelling request may read.
pub const MAX_LABELING_INPUTS: usize = 8;

/// The caller's identity as established by the transport from its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub org: String,
    pub namespace: String,
}

/// Longest description kept in the run record.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Most collections one request may cluster together.
pub const MAX_COLLECTIONS: usize = 256;

impl ExecuteInput {
    /// Check everything that does not need the data, in one place for both transports.
    pub fn validate(self, caller: &Caller) -> ApiResult<ExecuteRequest> {
        if let Some(ns) = &self.namespace_id
            && ns != &caller.namespace
        {
            return Err(ApiError::invalid_request(
                "namespace_id",
                format!(
                    "{ns:?} differs from the X-Namespace header {:?}",
                    caller.namespace
                ),
            ));
        }
        if let Some(id) = &self.internal_id
            && id != &caller.org
        {
            return Err(ApiError::permission_denied(
                Some("internal_id"),
                "internal_id is not the organisation of this API key",
            ));
        }
        if self.collection_ids.is_empty() {
            return Err(ApiError::invalid_request(
                "collection_ids",
                "must name at least one collection",
            ));
        }
        if self.collection_ids.len() > MAX_COLLECTIONS {
            return Err(ApiError::invalid_request(
                "collection_ids",
                format!("at most {MAX_COLLECTIONS} collections per request"),
            ));
        }
        for (i, id) in self.collection_ids.iter().enumerate() {
            validate_name(&format!("collection_ids[{i}]"), id)?;
            if self.collection_ids[..i].contains(id) {
                return Err(ApiError::invalid_request(
                    &format!("collection_ids[{i}]"),
                    format!("{id:?} is listed twice"),
                ));
            }
        }
        let sample_size = match self.sample_size {
            None => None,
            Some(n) if n >= 1 => Some(usize::try_from(n).map_err(|_| {
                ApiError::invalid_parameter("sample_size", "is too large for this machine")
            })?),
            Some(n) => {
                return Err(ApiError::invalid_parameter(
                    "sample_size",
                    format!("must be at least 1, got {n}"),
                ));
            }
        };
        let config = self
            .config
            .ok_or_else(|| ApiError::invalid_request("config", "is required"))?;
        let algorithm = Algorithm::parse("config.algorithm", &config.algorithm)?;

        let vector_name = match (&config.feature_vector, algorithm.uses_vectors()) {
            (Some(fv), _) => Some(resolve_feature_vector(fv)?),
            (None, true) => {
                return Err(ApiError::invalid_request(
                    "config.feature_vector",
                    format!(
                        "is required for {}: give {{\"vector_name\": \"<column>\"}}",
                        algorithm.as_str()
                    ),
                ));
            }
            (None, false) => None,
        };
        if let Some(d) = &config.description
            && d.len() > MAX_DESCRIPTION_LEN
        {
            return Err(ApiError::invalid_request(
                "config.description",
                format!("must be at most {MAX_DESCRIPTION_LEN} bytes"),
            ));
        }
        if config.attribute_config.is_some() && algorithm != Algorithm::AttributeBased {
            return Err(ApiError::invalid_request(
                "config.attribute_config",
                format!(
                    "applies to attribute_based only, not {}",
                    algorithm.as_str()
                ),
            ));
        }
        let labeling = config
            .llm_labeling
            .as_ref()
            .map(validate_labeling)
            .transpose()?
            .flatten();
        let attribute_grouping = match (&config.attribute_config, algorithm) {
            (Some(a), Algorithm::AttributeBased) => Some(validate_attribute_config(a)?),
            (None, Algorithm::AttributeBased) => {
                return Err(ApiError::invalid_request(
                    "config.attribute_config",
                    "is required for attribute_based: give {\"attributes\": [\"<path>\", ...]}",
                ));
            }
            (_, _) => None,
        };
        let store_results = self.store_results.unwrap_or(true);
        let save_artifacts = self.save_artifacts.unwrap_or(false);
        if save_artifacts && vector_name.is_none() {
            return Err(ApiError::invalid_request(
                "save_artifacts",
                "sample.parquet holds the clustered vectors and their 2-D projection; \
                 attribute_based without a feature_vector has neither",
            ));
        }
        if save_artifacts && !store_results {
            return Err(ApiError::invalid_request(
                "save_artifacts",
                "needs store_results: with store_results false nothing is persisted",
            ));
        }
        let stream_artifacts = self.stream_artifacts.unwrap_or(false);
        if stream_artifacts && !store_results {
            return Err(ApiError::invalid_request(
                "stream_artifacts",
                "needs store_results: the artifacts streamed are the ones the run stores",
            ));
        }
        Ok(ExecuteRequest {
            collection_ids: self.collection_ids,
            algorithm,
            algorithm_params: config.algorithm_params,
            vector_name,
            normalize_features: config.normalize_features.unwrap_or(true),
            description: config.description,
            sample_size,
            store_results,
            include_members: self.include_members.unwrap_or(false),
            compute_metrics: self.compute_metrics.unwrap_or(true),
            save_artifacts,
            stream_artifacts,
            labeling,
            attribute_grouping,
        })
    }
}

/// `llm_labeling`: None when disabled (`enabled` false or absent: labelling is opt-in).
fn validate_labeling(l: &LlmLabelingInput) -> ApiResult<Option<LabelingRequest>> {
    if l.enabled != Some(true) {
        return Ok(None);
    }
    let provider = match l.provider.as_deref() {
        None => LabelingProvider::ServerDefault,
        Some("offline") => LabelingProvider::Offline,
        Some("openai") => LabelingProvider::OpenAi,
        Some(other) => {
            return Err(ApiError::invalid_parameter(
                "config.llm_labeling.provider",
                format!("unknown provider {other:?}; use \"offline\" or \"openai\" (or omit it)"),
            ));
        }
    };
    if let Some(m) = &l.model_name
        && (m.is_empty() || m.len() > 256 || m.chars().any(char::is_control))
    {
        return Err(ApiError::invalid_parameter(
            "config.llm_labeling.model_name",
            "must be a non-empty model name of at most 256 bytes",
        ));
    }
    let inputs_given = l.labeling_inputs.is_some();
    let inputs = l
        .labeling_inputs
        .clone()
        .unwrap_or_else(|| vec!["text".to_owned()]);
    if inputs.is_empty() || inputs.len() > MAX_LABELING_INPUTS {
        return Err(ApiError::invalid_parameter(
            "config.llm_labeling.labeling_inputs",
            format!("must name 1 to {MAX_LABELING_INPUTS} text attributes"),
        ));
    }
    for (i, path) in inputs.iter().enumerate() {
        validate_attribute_path(&format!("config.llm_labeling.labeling_inputs[{i}]"), path)?;
    }
    Ok(Some(LabelingRequest {
        provider,
        model_name: l.model_name.clone(),
        include_keywords: l.include_keywords.unwrap_or(true),
        include_summary: l.include_summary.unwrap_or(true),
        inputs,
        inputs_given,
    }))
}

fn validate_attribute_config(a: &AttributeConfigInput) -> ApiResult<AttributeGroupingRequest> {
    if a.attributes.is_empty() || a.attributes.len() > MAX_GROUPING_ATTRIBUTES {
        return Err(ApiError::invalid_request(
            "config.attribute_config.attributes",
            format!("must name 1 to {MAX_GROUPING_ATTRIBUTES} attributes"),
        ));
    }
    for (i, path) in a.attributes.iter().enumerate() {
        let field = format!("config.attribute_config.attributes[{i}]");
        validate_attribute_path(&field, path)?;
        if a.attributes[..i].contains(path) {
            return Err(ApiError::invalid_request(
                &field,
                format!("{path:?} is listed twice"),
            ));
        }
    }
    let aggregation = match a.aggregation_method.as_deref() {
        None | Some("most_frequent") => AttributeAggregation::MostFrequent,
        Some("first") => AttributeAggregation::First,
        Some("all") => AttributeAggregation::All,
        Some(other) => {
            return Err(ApiError::invalid_parameter(
                "config.attribute_config.aggregation_method",
                format!("unknown method {other:?}; use most_frequent, first or all"),
            ));
        }
    };
    Ok(AttributeGroupingRequest {
        attributes: a.attributes.clone(),
        hierarchical: a.hierarchical_grouping.unwrap_or(false),
        aggregation,
    })
}

/// A dotted path into a document: non-empty segments, bounded length, no control chars.
fn validate_attribute_path(field: &str, path: &str) -> ApiResult<()> {
    if path.is_empty()
        || path.len() > 256
        || path.split('.').any(str::is_empty)
        || path.chars().any(char::is_control)
    {
        return Err(ApiError::invalid_request(
            field,
            "must be a dotted attribute path such as \"category\" or \"metadata.status\"",
        ));
    }
    Ok(())
}

/// `{"vector_name": "X"}` or `{"feature_address": "mixpeek://extractor@version/X"}`;
/// both select column `X`, and when both are given they must agree.
fn resolve_feature_vector(fv: &FeatureVectorInput) -> ApiResult<String> {
    let from_address = fv
        .feature_address
        .as_deref()
        .map(parse_feature_address)
        .transpose()?;
    let name = match (&fv.vector_name, from_address) {
        (Some(n), Some(a)) if *n != a => {
            return Err(ApiError::invalid_request(
                "config.feature_vector",
                format!("vector_name {n:?} and feature_address column {a:?} disagree"),
            ));
        }
        (Some(n), _) => n.clone(),
        (None, Some(a)) => a,
        (None, None) => {
            return Err(ApiError::invalid_request(
                "config.feature_vector",
                "give vector_name or feature_address",
            ));
        }
    };
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_request(
            "config.feature_vector.vector_name",
            "must be a non-empty column name of at most 256 bytes",
        ));
    }
    Ok(name)
}

/// `mixpeek://<extractor>@<version>/<column>` -> `<column>`.
pub fn parse_feature_address(address: &str) -> ApiResult<String> {
    const FIELD: &str = "config.feature_vector.feature_address";
    let malformed = || {
        ApiError::invalid_request(
            FIELD,
            format!("{address:?} is not of the form mixpeek://<extractor>@<version>/<column>"),
        )
    };
    let rest = address.strip_prefix("mixpeek://").ok_or_else(malformed)?;
    let (extractor_version, column) = rest.split_once('/').ok_or_else(malformed)?;
    let (extractor, version) = extractor_version.split_once('@').ok_or_else(malformed)?;
    if extractor.is_empty() || version.is_empty() || column.is_empty() || column.contains('/') {
        return Err(malformed());
    }
    Ok(column.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorCode;

    fn caller() -> Caller {
        Caller {
            org: "int_abc123".into(),
            namespace: "production".into(),
        }
    }

    fn kmeans_input() -> ExecuteInput {
        ExecuteInput {
            collection_ids: vec!["col_a".into()],
            config: Some(ConfigInput {
                algorithm: "kmeans".into(),
                feature_vector: Some(FeatureVectorInput {
                    vector_name: Some("embedding".into()),
                    feature_address: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn applies_reference_defaults() {
        let r = kmeans_input().validate(&caller()).unwrap();
        assert!(r.store_results && r.compute_metrics && r.normalize_features);
        assert!(!r.include_members && !r.save_artifacts);
        assert_eq!(r.sample_size, None);
    }

    #[test]
    fn stream_artifacts_is_off_by_default_and_needs_store_results() {
        assert!(!kmeans_input().validate(&caller()).unwrap().stream_artifacts);
        let asked = ExecuteInput {
            stream_artifacts: Some(true),
            ..kmeans_input()
        };
        assert!(asked.clone().validate(&caller()).unwrap().stream_artifacts);
        let e = ExecuteInput {
            store_results: Some(false),
            ..asked
        }
        .validate(&caller())
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(e.field.as_deref(), Some("stream_artifacts"));
    }

    #[test]
    fn feature_address_selects_its_column() {
        assert_eq!(
            parse_feature_address("mixpeek://text_extractor@v1/text_extractor_v1_embedding")
                .unwrap(),
            "text_extractor_v1_embedding"
        );
        for bad in [
            "text_extractor@v1/x",
            "mixpeek://text_extractor/x",
            "mixpeek://@v1/x",
            "mixpeek://e@v1/",
            "mixpeek://e@v1/a/b",
        ] {
            let e = parse_feature_address(bad).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                Some("config.feature_vector.feature_address")
            );
        }
    }

    #[test]
    fn rejects_namespace_id_that_differs_from_header() {
        let mut i = kmeans_input();
        i.namespace_id = Some("other".into());
        let e = i.validate(&caller()).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidRequest, Some("namespace_id"))
        );
    }

    #[test]
    fn rejects_foreign_internal_id() {
        let mut i = kmeans_input();
        i.internal_id = Some("int_other".into());
        assert_eq!(
            i.validate(&caller()).unwrap_err().code,
            ErrorCode::PermissionDenied
        );
    }

    #[test]
    fn rejects_unknown_algorithm() {
        let mut i = kmeans_input();
        if let Some(c) = i.config.as_mut() {
            c.algorithm = "kmeanz".into();
        }
        let e = i.validate(&caller()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("config.algorithm"));
    }

    #[test]
    fn rejects_zero_sample_size() {
        let mut i = kmeans_input();
        i.sample_size = Some(0);
        assert_eq!(
            i.validate(&caller()).unwrap_err().code,
            ErrorCode::InvalidParameter
        );
    }
}
