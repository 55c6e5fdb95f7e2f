//! The Parquet results of a run (DESIGN §4): `clusters.parquet`, `members.parquet` and
//! `sample.parquet`, and their download. Plain Arrow types only (no extension types), so
//! that pyarrow, polars and DuckDB read the files as they are.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::Store;
use super::error::internal_os;
use super::paths;
use crate::model::run::ARTIFACT_NAMES;
use crate::model::{ApiError, ApiResult, Matrix, Scope};

const CLUSTERS_FILE: &str = "clusters.parquet";
const MEMBERS_FILE: &str = "members.parquet";
const SAMPLE_FILE: &str = "sample.parquet";

/// Rows per record batch: big enough for efficient encoding, small enough that one batch
/// of ids and distances stays a few MiB.
const BATCH_ROWS: usize = 65_536;
/// Rows of 768-dimensional vectors are 3 KiB each: batches carrying vectors are cut by
/// bytes as well, so that building one never copies hundreds of MiB.
const BATCH_BYTES: usize = 32 << 20;
/// The writer buffers a whole row group before flushing it to the object store; this
/// bounds that buffer for vector-heavy files.
const ROW_GROUP_BYTES: usize = 128 << 20;
/// Row groups of `members.parquet` stay small: the members page reader fetches whole row
/// groups, and their `cluster_id` statistics let it skip every group of other clusters.
pub(crate) const MEMBERS_ROW_GROUP_ROWS: usize = 32_768;

/// One row of `clusters.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    pub cluster_id: String,
    pub label: Option<String>,
    pub size: u64,
    /// Empty for clusters without vectors (attribute grouping): written as null.
    pub centroid: Vec<f32>,
    pub keywords: Vec<String>,
    pub summary: Option<String>,
    pub parent_cluster_id: Option<String>,
    pub level: Option<i32>,
    pub vector_name: Option<String>,
}

/// One row of `members.parquet`: a (document, cluster) membership.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub document_id: String,
    pub collection_id: String,
    pub cluster_id: String,
    pub distance_to_centroid: Option<f32>,
    /// Posterior probability of the cluster (soft-assignment algorithms only); the
    /// `probability` column is written when any row has one.
    pub probability: Option<f32>,
    pub coordinates: Option<[f32; 2]>,
    /// Whether the document was in the clustered sample (false: placed afterwards into the
    /// fitted clusters).
    pub sampled: bool,
}

/// One row of `members.parquet`, borrowed: what a [`MemberTable`] hands the writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberRef<'a> {
    pub document_id: &'a str,
    pub collection_id: &'a str,
    pub cluster_id: &'a str,
    pub distance_to_centroid: Option<f32>,
    pub probability: Option<f32>,
    pub coordinates: Option<[f32; 2]>,
    pub sampled: bool,
}

/// The rows of `members.parquet` in file order (sorted by `cluster_id`), produced one at a
/// time: a run over millions of documents keeps them in compact form and never builds a
/// row struct with owned strings per document.
pub trait MemberTable: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn row(&self, i: usize) -> MemberRef<'_>;
    /// Whether to write the `probability` column.
    fn has_probability(&self) -> bool;
    /// Whether to write the `coordinates` column.
    fn has_coordinates(&self) -> bool;
}

/// Owned rows in the order `order` gives.
struct SortedRows<'a> {
    rows: &'a [MemberRow],
    order: Vec<usize>,
}

impl MemberTable for SortedRows<'_> {
    fn len(&self) -> usize {
        self.order.len()
    }
    fn row(&self, i: usize) -> MemberRef<'_> {
        let r = &self.rows[self.order[i]];
        MemberRef {
            document_id: &r.document_id,
            collection_id: &r.collection_id,
            cluster_id: &r.cluster_id,
            distance_to_centroid: r.distance_to_centroid,
            probability: r.probability,
            coordinates: r.coordinates,
            sampled: r.sampled,
        }
    }
    fn has_probability(&self) -> bool {
        self.rows.iter().any(|r| r.probability.is_some())
    }
    fn has_coordinates(&self) -> bool {
        self.rows.iter().any(|r| r.coordinates.is_some())
    }
}

/// The columns of `sample.parquet`, borrowed from the run: row `i` of every slice and of
/// `vectors` describe the same document.
#[derive(Debug, Clone, Copy)]
pub struct SampleArtifact<'a> {
    pub document_ids: &'a [String],
    pub collection_ids: &'a [String],
    pub cluster_ids: &'a [String],
    pub coordinates: &'a [[f32; 2]],
    pub vectors: &'a Matrix,
}

/// An artifact being downloaded: its size (for `Content-Length`) and its bytes, streamed.
pub struct ArtifactBody {
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes, ApiError>>,
}

impl fmt::Debug for ArtifactBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactBody")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Write `clusters.parquet`; every non-empty centroid must have `dimension` values.
    pub async fn write_clusters(
        &self,
        scope: &Scope,
        run_id: &str,
        rows: &[ClusterRow],
        dimension: usize,
    ) -> ApiResult<String> {
        let key = paths::run_file(scope, run_id, CLUSTERS_FILE)?;
        let centroid_type = vector_type(dimension)?;
        let schema = Arc::new(Schema::new(vec![
            Field::new("cluster_id", DataType::Utf8, false),
            Field::new("label", DataType::Utf8, true),
            Field::new("size", DataType::Int64, false),
            Field::new("centroid", centroid_type, true),
            Field::new("keywords", DataType::List(string_item()), false),
            Field::new("summary", DataType::Utf8, true),
            Field::new("parent_cluster_id", DataType::Utf8, true),
            Field::new("level", DataType::Int32, true),
            Field::new("vector_name", DataType::Utf8, true),
        ]));
        let batch_rows = rows_per_batch(dimension * 4 + 256);
        self.write_parquet(&key, &schema, rows.len(), batch_rows, None, |range| {
            clusters_batch(&schema, &rows[range], dimension)
        })
        .await?;
        Ok(key.as_ref().to_owned())
    }

    /// Write `members.parquet`, sorted by `cluster_id`. The engine sorts; input that is not
    /// sorted is sorted here (stably, on indices) so that the file's promise always holds.
    pub async fn write_members(
        &self,
        scope: &Scope,
        run_id: &str,
        rows: &[MemberRow],
    ) -> ApiResult<String> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        if !rows.is_sorted_by(|a, b| a.cluster_id <= b.cluster_id) {
            // Not a debug_assert: the spec test feeds unsorted rows on purpose, and a caller
            // bug here costs only a sort, not a wrong file.
            tracing::warn!(
                run_id,
                "members were not sorted by cluster_id; sorting them"
            );
            order.sort_by(|&a, &b| rows[a].cluster_id.cmp(&rows[b].cluster_id));
        }
        self.write_member_table(scope, run_id, &SortedRows { rows, order })
            .await
    }

    /// Write `members.parquet` from rows already in `cluster_id` order; rows out of order
    /// are an engine bug and refused rather than written into a file that promises order.
    pub async fn write_member_table(
        &self,
        scope: &Scope,
        run_id: &str,
        table: &dyn MemberTable,
    ) -> ApiResult<String> {
        let key = paths::run_file(scope, run_id, MEMBERS_FILE)?;
        if let Some(i) =
            (1..table.len()).find(|&i| table.row(i - 1).cluster_id > table.row(i).cluster_id)
        {
            return Err(ApiError::internal(format!(
                "members are not sorted by cluster_id at row {i}"
            )));
        }
        let with_coordinates = table.has_coordinates();
        let with_probability = table.has_probability();
        let mut fields = vec![
            Field::new("document_id", DataType::Utf8, false),
            Field::new("collection_id", DataType::Utf8, false),
            Field::new("cluster_id", DataType::Utf8, false),
            Field::new("distance_to_centroid", DataType::Float32, true),
        ];
        if with_probability {
            fields.push(Field::new("probability", DataType::Float32, true));
        }
        if with_coordinates {
            fields.push(Field::new(
                "coordinates",
                DataType::FixedSizeList(f32_item(), 2),
                true,
            ));
        }
        fields.push(Field::new("sampled", DataType::Boolean, false));
        let schema = Arc::new(Schema::new(fields));
        self.write_parquet(
            &key,
            &schema,
            table.len(),
            BATCH_ROWS.min(MEMBERS_ROW_GROUP_ROWS),
            Some(MEMBERS_ROW_GROUP_ROWS),
            |range| members_batch(&schema, table, range, with_probability, with_coordinates),
        )
        .await?;
        Ok(key.as_ref().to_owned())
    }

    /// Write `sample.parquet`: ids, 2-D coordinates and the clustered vectors.
    pub async fn write_sample(
        &self,
        scope: &Scope,
        run_id: &str,
        sample: &SampleArtifact<'_>,
    ) -> ApiResult<String> {
        let key = paths::run_file(scope, run_id, SAMPLE_FILE)?;
        let n = sample.vectors.rows();
        let lengths = [
            sample.document_ids.len(),
            sample.collection_ids.len(),
            sample.cluster_ids.len(),
            sample.coordinates.len(),
        ];
        if lengths.iter().any(|&l| l != n) {
            return Err(ApiError::internal(format!(
                "sample columns disagree in length: ids/collections/clusters/coordinates \
                 {lengths:?}, vectors {n}"
            )));
        }
        let dimension = sample.vectors.cols();
        let schema = Arc::new(Schema::new(vec![
            Field::new("document_id", DataType::Utf8, false),
            Field::new("collection_id", DataType::Utf8, false),
            Field::new("cluster_id", DataType::Utf8, false),
            Field::new("x", DataType::Float32, false),
            Field::new("y", DataType::Float32, false),
            Field::new("vector", vector_type(dimension)?, false),
        ]));
        let batch_rows = rows_per_batch(dimension * 4 + 64);
        self.write_parquet(&key, &schema, n, batch_rows, None, |range| {
            sample_batch(&schema, sample, range)
        })
        .await?;
        Ok(key.as_ref().to_owned())
    }

    /// Stream one artifact of a run. Only the names of `ARTIFACT_NAMES` are served, so a
    /// caller cannot read `status.json` or anything else through this door.
    pub async fn get_artifact(
        &self,
        scope: &Scope,
        run_id: &str,
        name: &str,
    ) -> ApiResult<ArtifactBody> {
        if !ARTIFACT_NAMES.contains(&name) {
            return Err(ApiError::not_found(
                Some("artifact"),
                format!(
                    "unknown artifact {name:?}; one of {}",
                    ARTIFACT_NAMES.join(", ")
                ),
            ));
        }
        let key = paths::run_file(scope, run_id, name)?;
        let got = match self.inner.get(&key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(
                    Some("artifact"),
                    format!("run {run_id} has no {name}"),
                ));
            }
            Err(e) => return Err(internal_os(e)),
        };
        Ok(ArtifactBody {
            size: got.meta.size,
            stream: got.into_stream().map_err(internal_os).boxed(),
        })
    }

    /// Stream batches into `key` through a multipart `BufWriter`: only one batch and one
    /// row group are ever in memory. `build` makes the batch of a row range.
    pub(super) async fn write_parquet(
        &self,
        key: &Path,
        schema: &SchemaRef,
        rows: usize,
        batch_rows: usize,
        max_row_group_rows: Option<usize>,
        mut build: impl FnMut(Range<usize>) -> ApiResult<RecordBatch>,
    ) -> ApiResult<()> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES));
        if let Some(rows) = max_row_group_rows {
            props = props.set_max_row_group_row_count(Some(rows));
        }
        let props = props.build();
        let sink = BufWriter::new(Arc::clone(&self.inner), key.clone());
        let mut writer = AsyncArrowWriter::try_new(sink, Arc::clone(schema), Some(props))
            .map_err(ApiError::internal)?;
        let mut written = Ok(());
        let mut start = 0;
        while start < rows {
            let end = rows.min(start + batch_rows);
            let batch = match build(start..end) {
                Ok(b) => b,
                Err(e) => {
                    written = Err(e);
                    break;
                }
            };
            if let Err(e) = writer.write(&batch).await {
                written = Err(ApiError::internal(e));
                break;
            }
            start = end;
        }
        if let Err(e) = written {
            // Before shutdown the multipart upload can still be abandoned cleanly, so no
            // partial object or orphaned parts stay behind.
            if let Err(abort) = writer.into_inner().abort().await {
                tracing::warn!(error = %abort, key = %key, "could not abort an artifact upload");
            }
            return Err(e);
        }
        writer.close().await.map_err(ApiError::internal)?;
        Ok(())
    }
}

pub(super) fn rows_per_batch(bytes_per_row: usize) -> usize {
    (BATCH_BYTES / bytes_per_row.max(1)).clamp(1, BATCH_ROWS)
}

/// The conventional list item field (`item`, nullable), as pyarrow writes it.
pub(super) fn f32_item() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Float32, true))
}

fn string_item() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Utf8, true))
}

/// FixedSizeList of the dimension; a plain List when there is no dimension, since a
/// zero-sized FixedSizeList is not something every reader accepts.
pub(super) fn vector_type(dimension: usize) -> ApiResult<DataType> {
    if dimension == 0 {
        return Ok(DataType::List(f32_item()));
    }
    let size = i32::try_from(dimension)
        .map_err(|_| ApiError::internal(format!("vector dimension {dimension} is too large")))?;
    Ok(DataType::FixedSizeList(f32_item(), size))
}

pub(super) fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn clusters_batch(
    schema: &SchemaRef,
    rows: &[ClusterRow],
    dimension: usize,
) -> ApiResult<RecordBatch> {
    let sizes = rows
        .iter()
        .map(|r| {
            i64::try_from(r.size).map_err(|_| {
                ApiError::internal(format!(
                    "cluster {} size {} overflows",
                    r.cluster_id, r.size
                ))
            })
        })
        .collect::<ApiResult<Vec<i64>>>()?;
    let centroid = centroid_array(rows, dimension)?;
    let mut keywords = ListBuilder::new(StringBuilder::new()).with_field(string_item());
    for r in rows {
        for k in &r.keywords {
            keywords.values().append_value(k);
        }
        keywords.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.cluster_id.as_str())),
        optional_strings(rows.iter().map(|r| r.label.as_deref())),
        Arc::new(Int64Array::from(sizes)),
        centroid,
        Arc::new(keywords.finish()),
        optional_strings(rows.iter().map(|r| r.summary.as_deref())),
        optional_strings(rows.iter().map(|r| r.parent_cluster_id.as_deref())),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.level))),
        optional_strings(rows.iter().map(|r| r.vector_name.as_deref())),
    ];
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(ApiError::internal)
}

/// Empty centroids become nulls; any other length than `dimension` is an engine bug that
/// must not produce a file with silently shifted vectors.
fn centroid_array(rows: &[ClusterRow], dimension: usize) -> ApiResult<ArrayRef> {
    if dimension == 0 {
        let mut b = ListBuilder::new(Float32Builder::new()).with_field(f32_item());
        for r in rows {
            b.values().append_slice(&r.centroid);
            b.append(!r.centroid.is_empty());
        }
        return Ok(Arc::new(b.finish()));
    }
    let size = i32::try_from(dimension)
        .map_err(|_| ApiError::internal(format!("vector dimension {dimension} is too large")))?;
    let mut b =
        FixedSizeListBuilder::new(Float32Builder::with_capacity(rows.len() * dimension), size)
            .with_field(f32_item());
    let filler = vec![0.0f32; dimension];
    for r in rows {
        if r.centroid.is_empty() {
            // A null slot still occupies `dimension` child values.
            b.values().append_slice(&filler);
            b.append(false);
        } else if r.centroid.len() == dimension {
            b.values().append_slice(&r.centroid);
            b.append(true);
        } else {
            return Err(ApiError::internal(format!(
                "cluster {} has a centroid of {} values, expected {dimension}",
                r.cluster_id,
                r.centroid.len()
            )));
        }
    }
    Ok(Arc::new(b.finish()))
}

fn members_batch(
    schema: &SchemaRef,
    table: &dyn MemberTable,
    range: Range<usize>,
    with_probability: bool,
    with_coordinates: bool,
) -> ApiResult<RecordBatch> {
    let picked = || range.clone().map(|i| table.row(i));
    let mut columns: Vec<ArrayRef> = vec![
        strings(picked().map(|r| r.document_id)),
        strings(picked().map(|r| r.collection_id)),
        strings(picked().map(|r| r.cluster_id)),
        Arc::new(Float32Array::from_iter(
            picked().map(|r| r.distance_to_centroid),
        )),
    ];
    if with_probability {
        columns.push(Arc::new(Float32Array::from_iter(
            picked().map(|r| r.probability),
        )));
    }
    if with_coordinates {
        let mut b = FixedSizeListBuilder::new(Float32Builder::with_capacity(range.len() * 2), 2)
            .with_field(f32_item());
        for r in picked() {
            b.values().append_slice(&r.coordinates.unwrap_or_default());
            b.append(r.coordinates.is_some());
        }
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(BooleanArray::from_iter(
        picked().map(|r| Some(r.sampled)),
    )));
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(ApiError::internal)
}

/// Rows `range` of `vectors` as a FixedSizeList column (a List of empty rows when the
/// matrix has no columns, as [`vector_type`] declares it).
pub(super) fn fixed_vectors(vectors: &Matrix, range: Range<usize>) -> ApiResult<ArrayRef> {
    let dimension = vectors.cols();
    if dimension == 0 {
        let mut b = ListBuilder::new(Float32Builder::new()).with_field(f32_item());
        for _ in range {
            b.append(true);
        }
        return Ok(Arc::new(b.finish()));
    }
    let size = i32::try_from(dimension)
        .map_err(|_| ApiError::internal(format!("vector dimension {dimension} is too large")))?;
    let values = vectors.rows_slice(range.start, range.end);
    Ok(Arc::new(
        FixedSizeListArray::try_new(
            f32_item(),
            size,
            Arc::new(Float32Array::from(values.to_vec())),
            None,
        )
        .map_err(ApiError::internal)?,
    ))
}

fn sample_batch(
    schema: &SchemaRef,
    sample: &SampleArtifact<'_>,
    range: Range<usize>,
) -> ApiResult<RecordBatch> {
    let coordinates = &sample.coordinates[range.clone()];
    let vectors = fixed_vectors(sample.vectors, range.clone())?;
    let columns: Vec<ArrayRef> = vec![
        strings(
            sample.document_ids[range.clone()]
                .iter()
                .map(String::as_str),
        ),
        strings(
            sample.collection_ids[range.clone()]
                .iter()
                .map(String::as_str),
        ),
        strings(sample.cluster_ids[range].iter().map(String::as_str)),
        Arc::new(Float32Array::from_iter_values(
            coordinates.iter().map(|c| c[0]),
        )),
        Arc::new(Float32Array::from_iter_values(
            coordinates.iter().map(|c| c[1]),
        )),
        vectors,
    ];
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(ApiError::internal)
}

#[cfg(test)]
#[path = "artifacts_tests.rs"]
mod tests;
