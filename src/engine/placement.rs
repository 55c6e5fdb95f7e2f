//! Placing documents into a fitted clustering: the documents a `sample_size` left out
//! (streamed from the store batch by batch after the fit, so that `members.parquet` covers
//! the whole collection), and vectors sent to `assign` later against the stored model.
//!
//! The rule is the algorithm's (see `algorithms::assign`): k-means, Gaussian mixture and
//! mean-shift place a vector at its nearest centroid; density and graph algorithms at the
//! cluster of its nearest core point when it lies within that point's radius, else noise.

use std::sync::Arc;

use crate::algorithms::assign::{AssignMetric, Assigner, Cores, PlacementRule, Rule};
use crate::algorithms::projection::Pca2d;
use crate::model::response::NOISE_CLUSTER_ID;
use crate::model::{
    ApiError, ApiResult, AssignInput, AssignResponse, Assignment, DeviceKind, MAX_ASSIGN_ITEMS,
    Matrix, PlacementRecord, ProgressEvent, RunContext, Scope,
};
use crate::store::{LoadLimits, LoadRequest, Remainder, RemainderBatch};

use super::result::{Placed, Rendered};
use super::{Engine, normalize_rows};

/// Documents read and placed per step: a few tens of MiB of 768-d vectors.
const PLACE_BATCH_ROWS: usize = 16_384;

pub(super) const NEAREST_CENTROID: &str = "nearest_centroid";
pub(super) const NEAREST_CORE: &str = "nearest_core";

/// What places a vector: the assigner in rank space, the run's projection and whether
/// vectors are normalised first.
pub(super) struct RunModel {
    pub assigner: Assigner,
    pub pca: Option<Pca2d>,
    pub normalize: bool,
}

impl RunModel {
    /// Place the rows of `x` (normalising them first when the run did): cluster rank,
    /// distance to its centroid, 2-D coordinates.
    pub fn place(&self, mut x: Matrix, ctx: &RunContext) -> ApiResult<Vec<PlacedVector>> {
        if self.normalize {
            normalize_rows(&mut x, ctx);
        }
        let placements = self.assigner.assign(&x, ctx)?;
        let coordinates = self.pca.as_ref().map(|p| p.project(&x));
        Ok(placements
            .into_iter()
            .enumerate()
            .map(|(i, p)| PlacedVector {
                rank: p.cluster.map(|c| c as usize),
                distance: p.distance,
                coordinates: coordinates.as_ref().and_then(|c| c.get(i).copied()),
            })
            .collect())
    }

    /// The core points, for `nearest_core` rules.
    pub fn cores(&self) -> Option<&Cores> {
        match &self.assigner.rule {
            Rule::NearestCore(c) => Some(c),
            Rule::NearestCentroid => None,
        }
    }

    pub fn record(&self, vector_name: Option<String>, placed_documents: usize) -> PlacementRecord {
        let (rule, metric, core_points) = match &self.assigner.rule {
            Rule::NearestCentroid => (NEAREST_CENTROID, None, None),
            Rule::NearestCore(c) => (
                NEAREST_CORE,
                Some(c.metric.as_str().to_owned()),
                Some(c.points.rows()),
            ),
        };
        PlacementRecord {
            rule: rule.to_owned(),
            metric,
            normalize: self.normalize,
            vector_name,
            dimension: self.assigner.centroids.cols(),
            core_points,
            projection: self.pca.as_ref().and_then(|p| serde_json::to_value(p).ok()),
            placed_documents,
        }
    }
}

/// One placed vector: cluster rank (None: noise), distance to the cluster's centroid, and
/// its coordinates in the run's projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PlacedVector {
    pub rank: Option<usize>,
    pub distance: Option<f32>,
    pub coordinates: Option<[f32; 2]>,
}

/// The fitted rule in rank space: centroids by rank, each core row's cluster its rank (a
/// row ranked as noise is no core).
pub(super) fn assigner(
    vectors: &Matrix,
    rendered: &Rendered,
    rule: &PlacementRule,
) -> ApiResult<Assigner> {
    let d = vectors.cols();
    let mut centroids = Matrix::zeros(rendered.centroids.len(), d);
    for (r, c) in rendered.centroids.iter().enumerate() {
        if c.centroid_vector.len() == d {
            centroids.row_mut(r).copy_from_slice(&c.centroid_vector);
        }
    }
    let mut rank_labels = vec![-1i64; vectors.rows()];
    for m in &rendered.memberships {
        if let (Some(slot), Some(rank)) = (rank_labels.get_mut(m.row), m.rank) {
            *slot = rank as i64;
        }
    }
    rule.assigner(vectors, &rank_labels, centroids)
}

/// The model stored with a run, rebuilt: centroids (rank order, as clusters.parquet
/// lists them) and, for `nearest_core`, the core points with their cluster ranks.
pub(super) fn stored_assigner(
    record: &PlacementRecord,
    centroids: Matrix,
    cluster_ids: &[String],
    cores: Option<crate::store::StoredCorePoints>,
) -> ApiResult<Assigner> {
    let rule = match (record.rule.as_str(), cores) {
        (NEAREST_CENTROID, _) => Rule::NearestCentroid,
        (NEAREST_CORE, Some(c)) => {
            let metric = record
                .metric
                .as_deref()
                .and_then(AssignMetric::parse)
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "the run's placement metric {:?} is unknown",
                        record.metric
                    ))
                })?;
            let clusters = c
                .cluster_ids
                .iter()
                .map(|id| {
                    cluster_ids
                        .iter()
                        .position(|k| k == id)
                        .map(|r| r as u32)
                        .ok_or_else(|| {
                            ApiError::internal(format!(
                                "core point of cluster {id} has no centroid in clusters.parquet"
                            ))
                        })
                })
                .collect::<ApiResult<Vec<u32>>>()?;
            Rule::NearestCore(Cores {
                points: c.vectors,
                clusters,
                radius: c
                    .radius
                    .into_iter()
                    .map(|r| r.unwrap_or(f64::INFINITY))
                    .collect(),
                metric,
            })
        }
        (rule, _) => {
            return Err(ApiError::internal(format!(
                "the run's placement rule {rule:?} has no stored model"
            )));
        }
    };
    // A run that found no cluster (all noise) stores no centroid row, so clusters.parquet
    // cannot tell their width; the record can, and vectors are checked against it.
    let centroids = if centroids.rows() == 0 {
        Matrix::zeros(0, record.dimension)
    } else {
        centroids
    };
    Assigner::new(centroids, rule)
}

/// Stream the remainder through the model: every left-out document placed, in bounded
/// memory (one batch of vectors at a time).
pub(super) async fn place_remainder(
    mut remainder: Remainder,
    model: Arc<RunModel>,
    ctx: &RunContext,
) -> ApiResult<Vec<Placed>> {
    let total = remainder.remaining().max(1);
    let mut placed: Vec<Placed> = Vec::with_capacity(remainder.remaining());
    ctx.progress(placing(0.0, None));
    while let Some(batch) = remainder.next_batch(PLACE_BATCH_ROWS, ctx).await? {
        let RemainderBatch {
            document_ids,
            collection_index,
            vectors,
        } = batch;
        let job_model = Arc::clone(&model);
        let job_ctx = ctx.clone();
        let span = tracing::Span::current();
        let placements = tokio::task::spawn_blocking(move || {
            span.in_scope(|| job_model.place(vectors, &job_ctx))
        })
        .await
        .map_err(ApiError::internal)??;
        placed.extend(
            document_ids
                .into_iter()
                .zip(collection_index)
                .zip(placements)
                .map(|((document_id, collection), p)| Placed {
                    document_id,
                    collection,
                    rank: p.rank,
                    distance: p.distance,
                    coordinates: p.coordinates,
                }),
        );
        ctx.progress(placing(
            (placed.len() as f64 / total as f64) as f32,
            u64::try_from(placed.len()).ok(),
        ));
    }
    Ok(placed)
}

fn placing(fraction: f32, documents: Option<u64>) -> ProgressEvent {
    ProgressEvent {
        stage: "placing",
        fraction,
        iteration: None,
        inertia: None,
        documents,
    }
}

/// Stored models kept in memory, newest last: a client placing vectors in a loop pays
/// the Parquet reads once. A completed run never changes, so an entry is never stale; a
/// deleted run is caught by reading its record first on every call.
const MODEL_CACHE_RUNS: usize = 16;

#[derive(Default)]
pub(super) struct ModelCache {
    entries: std::sync::Mutex<std::collections::VecDeque<(String, Arc<StoredModel>)>>,
}

/// A stored run's model with the cluster ids of its ranks.
pub(super) struct StoredModel {
    model: RunModel,
    cluster_ids: Vec<String>,
    record: PlacementRecord,
}

impl ModelCache {
    fn get(&self, key: &str) -> Option<Arc<StoredModel>> {
        let entries = self.entries.lock().ok()?;
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, m)| Arc::clone(m))
    }

    fn put(&self, key: String, model: Arc<StoredModel>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(k, _)| *k != key);
            if entries.len() == MODEL_CACHE_RUNS {
                entries.pop_front();
            }
            entries.push_back((key, model));
        }
    }
}

impl Engine {
    /// Place vectors, or documents of a collection, into a completed run's clusters with
    /// the run's own rule (see the module doc).
    pub async fn assign(
        &self,
        scope: &Scope,
        run_id: &str,
        input: AssignInput,
    ) -> ApiResult<AssignResponse> {
        let count = match &input {
            AssignInput::Vectors(v) => v.len(),
            AssignInput::Documents { document_ids, .. } => document_ids.len(),
        };
        let field = match &input {
            AssignInput::Vectors(_) => "vectors",
            AssignInput::Documents { .. } => "document_ids",
        };
        if count == 0 {
            return Err(ApiError::invalid_request(
                field,
                "give at least one vector or document id",
            ));
        }
        if count > MAX_ASSIGN_ITEMS {
            return Err(ApiError::payload_too_large(
                Some(field),
                format!("{count} items exceed the limit of {MAX_ASSIGN_ITEMS} per request"),
            ));
        }
        let view = self.store().get_run(scope, run_id).await?;
        let Some(run) = view.record else {
            return Err(ApiError::conflict(
                Some("run_id"),
                format!(
                    "run {run_id} is {}; only a completed run places vectors",
                    view.status.status.as_str()
                ),
            ));
        };
        let Some(record) = run.placement.clone() else {
            return Err(ApiError::conflict(
                Some("run_id"),
                format!(
                    "run {run_id} has no placement model: it grouped attributes \
                     (attribute_based) or was stored by an older version"
                ),
            ));
        };
        let key = format!("{}/{}/{run_id}", scope.org(), scope.namespace());
        let stored = match self.models.get(&key) {
            Some(m) => m,
            None => {
                let m = Arc::new(self.load_model(scope, run_id, record).await?);
                self.models.put(key, Arc::clone(&m));
                m
            }
        };
        let dimension = stored.record.dimension;
        let (x, document_ids) = match input {
            AssignInput::Vectors(vectors) => (vectors_matrix(&vectors, dimension)?, None),
            AssignInput::Documents {
                collection_id,
                document_ids,
            } => {
                let x = self
                    .documents_matrix(scope, &stored.record, &collection_id, &document_ids)
                    .await?;
                (x, Some(document_ids))
            }
        };
        let ctx = RunContext::new(0, self.device.kind());
        let job = Arc::clone(&stored);
        let placed = tokio::task::spawn_blocking(move || job.model.place(x, &ctx))
            .await
            .map_err(ApiError::internal)??;
        let assignments = placed
            .into_iter()
            .enumerate()
            .map(|(i, p)| Assignment {
                document_id: document_ids.as_ref().and_then(|d| d.get(i).cloned()),
                cluster_id: p
                    .rank
                    .and_then(|r| stored.cluster_ids.get(r).cloned())
                    .unwrap_or_else(|| NOISE_CLUSTER_ID.to_owned()),
                distance_to_centroid: p.distance.map(f64::from),
                coordinates: p.coordinates,
            })
            .collect();
        Ok(AssignResponse {
            run_id: run_id.to_owned(),
            algorithm: run.request.algorithm,
            rule: stored.record.rule.clone(),
            assignments,
        })
    }

    async fn load_model(
        &self,
        scope: &Scope,
        run_id: &str,
        record: PlacementRecord,
    ) -> ApiResult<StoredModel> {
        let centroids = self.store().read_centroids(scope, run_id).await?;
        let cores = if record.rule == NEAREST_CORE {
            Some(self.store().read_core_points(scope, run_id).await?)
        } else {
            None
        };
        let pca = match &record.projection {
            Some(v) => Some(serde_json::from_value::<Pca2d>(v.clone()).map_err(|e| {
                ApiError::internal(format!("run {run_id}'s projection is unreadable: {e}"))
            })?),
            None => None,
        };
        let assigner = stored_assigner(&record, centroids.vectors, &centroids.cluster_ids, cores)?;
        Ok(StoredModel {
            model: RunModel {
                assigner,
                pca,
                normalize: record.normalize,
            },
            cluster_ids: centroids.cluster_ids,
            record,
        })
    }

    /// The vectors of `document_ids` (in that order) from the run's vector column.
    async fn documents_matrix(
        &self,
        scope: &Scope,
        record: &PlacementRecord,
        collection_id: &str,
        document_ids: &[String],
    ) -> ApiResult<Matrix> {
        let column = record.vector_name.clone().ok_or_else(|| {
            ApiError::conflict(
                Some("document_ids"),
                "the run names no vector column to read documents by; send vectors instead",
            )
        })?;
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        let loaded = self
            .store()
            .load(
                scope,
                &LoadRequest {
                    collection_ids: vec![collection_id.to_owned()],
                    vector_column: Some(column.clone()),
                    attributes: Vec::new(),
                    attribute_fields: Vec::new(),
                    sample_size: None,
                    seed: 0,
                    document_ids: Some(document_ids.to_vec()),
                    document_ids_field: "document_ids".to_owned(),
                    // At most MAX_ASSIGN_ITEMS documents: nothing to bound here.
                    limits: LoadLimits::default(),
                },
                &ctx,
            )
            .await
            .map_err(|e| rename_collection_field(e, "collection_id"))?;
        let vectors = loaded
            .vectors
            .ok_or_else(|| ApiError::internal("store returned no vectors"))?;
        if vectors.cols() != record.dimension {
            return Err(ApiError::invalid_parameter(
                "collection_id",
                format!(
                    "{column} vectors of collection {collection_id} have {} values; the run \
                     clustered {}",
                    vectors.cols(),
                    record.dimension
                ),
            ));
        }
        let row_of: std::collections::HashMap<&str, usize> = loaded
            .document_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let d = vectors.cols();
        let mut data = Vec::with_capacity(document_ids.len() * d);
        for (i, id) in document_ids.iter().enumerate() {
            let row = row_of.get(id.as_str()).ok_or_else(|| {
                ApiError::not_found(
                    Some(&format!("document_ids[{i}]")),
                    format!("document {id:?} is not in collection {collection_id}"),
                )
            })?;
            data.extend_from_slice(vectors.row(*row));
        }
        Matrix::from_vec(document_ids.len(), d, data)
            .ok_or_else(|| ApiError::internal("document vectors do not match their shape"))
    }
}

/// The store names the collection `collection_ids[0]` (a run's list); here it is one
/// `collection_id`.
fn rename_collection_field(mut e: ApiError, field: &str) -> ApiError {
    if e.field.as_deref() == Some("collection_ids[0]")
        || e.field.as_deref() == Some("collection_ids")
    {
        e.field = Some(field.to_owned());
    }
    e
}

/// Inline vectors as a matrix: each of the run's dimension, every value finite.
fn vectors_matrix(vectors: &[Vec<f32>], dimension: usize) -> ApiResult<Matrix> {
    let mut data = Vec::with_capacity(vectors.len() * dimension);
    for (i, v) in vectors.iter().enumerate() {
        if v.len() != dimension {
            return Err(ApiError::invalid_parameter(
                &format!("vectors[{i}]"),
                format!("has {} values; the run clustered {dimension}", v.len()),
            ));
        }
        if let Some(j) = v.iter().position(|x| !x.is_finite()) {
            return Err(ApiError::invalid_parameter(
                &format!("vectors[{i}]"),
                format!("value {j} is not a finite number"),
            ));
        }
        data.extend_from_slice(v);
    }
    Matrix::from_vec(vectors.len(), dimension, data)
        .ok_or_else(|| ApiError::internal("vectors do not match their shape"))
}
