//! The stored placement model of a run: the centroids (from `clusters.parquet`) and, for
//! density and graph algorithms, `core_points.parquet` — the sample points a new vector is
//! matched against, each with its cluster and radius. Both are small (bounded by the
//! clustered sample), so they are read whole.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use super::Store;
use super::artifacts::{rows_per_batch, strings, vector_type};
use super::error::{internal_os, parquet_error};
use super::paths;
use super::reader::{self, Part, StringColumn, VectorView};
use crate::model::{ApiError, ApiResult, Matrix, Scope};

const CORE_POINTS_FILE: &str = "core_points.parquet";
const CLUSTERS_FILE: &str = "clusters.parquet";

/// Core points of a run, borrowed for writing: row `i` of `vectors` belongs to cluster
/// `cluster_ids[i]` and reaches `radius[i]` (None: unbounded).
#[derive(Debug, Clone, Copy)]
pub struct CorePointsArtifact<'a> {
    pub cluster_ids: &'a [&'a str],
    pub radius: &'a [Option<f64>],
    pub vectors: &'a Matrix,
}

/// Core points as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCorePoints {
    pub cluster_ids: Vec<String>,
    pub radius: Vec<Option<f64>>,
    pub vectors: Matrix,
}

/// Centroids as read back from clusters.parquet, in file (rank) order.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCentroids {
    pub cluster_ids: Vec<String>,
    pub vectors: Matrix,
}

impl Store {
    pub async fn write_core_points(
        &self,
        scope: &Scope,
        run_id: &str,
        cores: &CorePointsArtifact<'_>,
    ) -> ApiResult<String> {
        let key = paths::run_file(scope, run_id, CORE_POINTS_FILE)?;
        let n = cores.vectors.rows();
        if cores.cluster_ids.len() != n || cores.radius.len() != n {
            return Err(ApiError::internal(format!(
                "core point columns disagree in length: clusters {}, radius {}, vectors {n}",
                cores.cluster_ids.len(),
                cores.radius.len()
            )));
        }
        let dimension = cores.vectors.cols();
        let schema = Arc::new(Schema::new(vec![
            Field::new("cluster_id", DataType::Utf8, false),
            Field::new("radius", DataType::Float64, true),
            Field::new("vector", vector_type(dimension)?, false),
        ]));
        let batch_rows = rows_per_batch(dimension * 4 + 32);
        self.write_parquet(&key, &schema, n, batch_rows, None, |range| {
            let vectors = super::artifacts::fixed_vectors(cores.vectors, range.clone())?;
            let columns: Vec<ArrayRef> = vec![
                strings(cores.cluster_ids[range.clone()].iter().copied()),
                Arc::new(Float64Array::from_iter(cores.radius[range].iter().copied())),
                vectors,
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).map_err(ApiError::internal)
        })
        .await?;
        Ok(key.as_ref().to_owned())
    }

    pub async fn read_core_points(
        &self,
        scope: &Scope,
        run_id: &str,
    ) -> ApiResult<StoredCorePoints> {
        let key = paths::run_file(scope, run_id, CORE_POINTS_FILE)?;
        let batches = self.read_small(&key, run_id, CORE_POINTS_FILE).await?;
        let mut out = StoredCorePoints {
            cluster_ids: Vec::new(),
            radius: Vec::new(),
            vectors: Matrix::zeros(0, 0),
        };
        let mut data = Vec::new();
        let mut dim = None;
        for b in &batches {
            let ids = column_strings(b, "cluster_id", CORE_POINTS_FILE)?;
            let radius = b
                .column_by_name("radius")
                .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
                .ok_or_else(|| corrupt(CORE_POINTS_FILE, "radius"))?;
            out.cluster_ids.extend(ids);
            out.radius.extend(radius.iter());
            append_vectors(b, "vector", CORE_POINTS_FILE, &mut data, &mut dim)?;
        }
        out.vectors = matrix(out.cluster_ids.len(), dim, data)?;
        Ok(out)
    }

    /// The centroids of a run with vectors; clusters without a centroid (attribute
    /// grouping) make this an error for the caller to map.
    pub async fn read_centroids(&self, scope: &Scope, run_id: &str) -> ApiResult<StoredCentroids> {
        let key = paths::run_file(scope, run_id, CLUSTERS_FILE)?;
        let batches = self.read_small(&key, run_id, CLUSTERS_FILE).await?;
        let mut cluster_ids = Vec::new();
        let mut data = Vec::new();
        let mut dim = None;
        for b in &batches {
            cluster_ids.extend(column_strings(b, "cluster_id", CLUSTERS_FILE)?);
            append_vectors(b, "centroid", CLUSTERS_FILE, &mut data, &mut dim)?;
        }
        let vectors = matrix(cluster_ids.len(), dim, data)?;
        Ok(StoredCentroids {
            cluster_ids,
            vectors,
        })
    }

    async fn read_small(
        &self,
        key: &Path,
        run_id: &str,
        name: &str,
    ) -> ApiResult<Vec<RecordBatch>> {
        let meta = match self.inner.head(key).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(
                    Some("run_id"),
                    format!("run {run_id} has no {name}"),
                ));
            }
            Err(e) => return Err(internal_os(e)),
        };
        let part = Part {
            location: key.clone(),
            size: meta.size,
        };
        let (reader, meta) = reader::open_part(&self.inner, &part)
            .await
            .map_err(|e| parquet_error(e, ApiError::internal))?;
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
            .build()
            .map_err(|e| parquet_error(e, ApiError::internal))?
            .try_collect()
            .await
            .map_err(|e| parquet_error(e, ApiError::internal))
    }
}

fn corrupt(file: &str, column: &str) -> ApiError {
    ApiError::internal(format!("{file} has no readable {column} column"))
}

fn column_strings(b: &RecordBatch, column: &str, file: &str) -> ApiResult<Vec<String>> {
    let col = b
        .column_by_name(column)
        .and_then(|c| StringColumn::new(c.as_ref()))
        .ok_or_else(|| corrupt(file, column))?;
    (0..b.num_rows())
        .map(|i| {
            col.get(i)
                .map(str::to_owned)
                .ok_or_else(|| corrupt(file, column))
        })
        .collect()
}

fn append_vectors(
    b: &RecordBatch,
    column: &str,
    file: &str,
    data: &mut Vec<f32>,
    dim: &mut Option<usize>,
) -> ApiResult<()> {
    let view = b
        .column_by_name(column)
        .and_then(|c| VectorView::new(c.as_ref()))
        .ok_or_else(|| corrupt(file, column))?;
    if matches!(
        b.column_by_name(column).map(|c| c.data_type()),
        Some(DataType::List(_))
    ) {
        // Runs without vectors write centroids as a null List column.
        return Err(ApiError::conflict(
            Some("run_id"),
            "the run has no vector centroids (attribute grouping); there is nothing to place vectors against",
        ));
    }
    for i in 0..view.len() {
        if view.is_null(i) {
            return Err(corrupt(file, column));
        }
        let before = data.len();
        view.append_f32(i, data)
            .map_err(|_| corrupt(file, column))?;
        let len = data.len() - before;
        match *dim {
            None => *dim = Some(len),
            Some(d) if d != len => return Err(corrupt(file, column)),
            Some(_) => {}
        }
    }
    Ok(())
}

fn matrix(rows: usize, dim: Option<usize>, data: Vec<f32>) -> ApiResult<Matrix> {
    Matrix::from_vec(rows, dim.unwrap_or(0), data)
        .ok_or_else(|| ApiError::internal("stored vectors do not match their shape"))
}
