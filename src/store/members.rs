//! Members paging (issue 9): one page of a completed run's `members.parquet`, optionally
//! of one cluster, without loading the file. The file is sorted by `cluster_id`, so the
//! row-group min/max statistics of that column say which groups can hold a cluster; a group
//! whose min and max are both the cluster is skipped (for the offset) or counted (for the
//! total) by its row count alone; only the `cluster_id` column of the groups at a
//! cluster's edges is read. The other columns are read for the returned rows only.
//! Pruning never decides membership on its own, so the answer does not depend on the sort:
//! a file without statistics, or unsorted, is read correctly, just with more I/O.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::BooleanBufferBuilder;
use arrow_schema::DataType;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, RowSelection};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::metadata::RowGroupMetaData;

use super::Store;
use super::error::internal_os;
use super::paths;
use super::reader::{self, ObjectReader, Part, StringColumn, VectorView};
use crate::model::response::NOISE_CLUSTER_ID;
use crate::model::{ApiError, ApiResult, RunState, Scope};

const MEMBERS_FILE: &str = "members.parquet";
const CLUSTER_ID: &str = "cluster_id";
/// Rows decoded at once while scanning `cluster_id`: a few hundred KiB of ids.
const SCAN_BATCH_ROWS: usize = 8192;

/// One membership as `members.parquet` stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct PagedMember {
    pub document_id: String,
    pub collection_id: String,
    pub cluster_id: String,
    /// None for noise (and rows without a centroid).
    pub distance_to_centroid: Option<f32>,
    /// When the file has a `probability` column (soft-assignment algorithms).
    pub probability: Option<f32>,
    /// When the file has a `sampled` column: whether the document was in the clustered
    /// sample rather than placed afterwards.
    pub sampled: Option<bool>,
    /// When the run computed the 2-D projection.
    pub coordinates: Option<[f32; 2]>,
}

/// One page of a run's members, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MembersPage {
    pub run_id: String,
    pub cluster_id: Option<String>,
    pub offset: u64,
    pub limit: usize,
    /// Members matching the filter in the whole run.
    pub total: u64,
    /// Where the next page starts; None on the last page.
    pub next_offset: Option<u64>,
    pub members: Vec<PagedMember>,
}

impl Store {
    /// Members `offset..offset + limit` of a completed run, of `cluster_id` when given.
    /// An unknown run, or a cluster the run does not have, is `not_found`; a run that is
    /// running, failed or was cancelled has no members and is a `conflict`.
    pub async fn read_members_page(
        &self,
        scope: &Scope,
        run_id: &str,
        cluster_id: Option<&str>,
        offset: u64,
        limit: usize,
    ) -> ApiResult<MembersPage> {
        let view = self.get_run(scope, run_id).await?;
        let record = match (view.status.status, view.record) {
            (RunState::Completed, Some(record)) => record,
            (RunState::Running, _) => {
                return Err(ApiError::conflict(
                    Some("run_id"),
                    format!(
                        "run {run_id} is still running; its members are readable once it completes"
                    ),
                ));
            }
            (state, _) => {
                let what = match state {
                    RunState::Cancelled => "was cancelled",
                    // A status that reads completed without its record is reported failed.
                    _ => "failed",
                };
                return Err(ApiError::conflict(
                    Some("run_id"),
                    format!("run {run_id} {what}: it has no members"),
                ));
            }
        };
        // The run record lists every cluster (attribute trees included); noise has no
        // centroid row, so whether a run has noise is answered by the file itself below.
        let listed = cluster_id.is_none_or(|c| {
            record
                .result
                .centroids
                .iter()
                .any(|centroid| centroid.cluster_id == c)
        });
        if !listed && cluster_id != Some(NOISE_CLUSTER_ID) {
            return Err(unknown_cluster(run_id, cluster_id.unwrap_or_default()));
        }
        if record.result.members_key.is_none() {
            return Err(ApiError::not_found(
                Some("run_id"),
                format!("run {run_id} stored no members.parquet"),
            ));
        }
        let key = paths::run_file(scope, run_id, MEMBERS_FILE)?;
        let size = match self.inner.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(
                    Some("run_id"),
                    format!("members.parquet of run {run_id} is missing"),
                ));
            }
            Err(e) => return Err(internal_os(e)),
        };
        let part = Part {
            location: key,
            size,
        };
        let (rows, _) = read_page(&self.inner, &part, cluster_id, offset, limit)
            .await
            .map_err(|e| ApiError::internal(format!("members.parquet of run {run_id}: {e}")))?;
        if !listed && rows.total == 0 {
            return Err(unknown_cluster(run_id, NOISE_CLUSTER_ID));
        }
        let end = offset.saturating_add(rows.members.len() as u64);
        Ok(MembersPage {
            run_id: run_id.to_owned(),
            cluster_id: cluster_id.map(str::to_owned),
            offset,
            limit,
            total: rows.total,
            next_offset: (end < rows.total && !rows.members.is_empty()).then_some(end),
            members: rows.members,
        })
    }
}

fn unknown_cluster(run_id: &str, cluster_id: &str) -> ApiError {
    ApiError::not_found(
        Some("cluster_id"),
        format!("run {run_id} has no cluster {cluster_id:?}"),
    )
}

/// What a page read found.
#[derive(Debug)]
pub(crate) struct PageRows {
    pub total: u64,
    pub members: Vec<PagedMember>,
}

/// How much of the file a page read touched (for the tests that prove the pruning).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReadStats {
    /// Row groups whose `cluster_id` column was decoded to find the cluster's rows.
    pub groups_scanned: Vec<usize>,
    /// Row groups the page's rows were read from.
    pub groups_read: Vec<usize>,
}

/// How a row group relates to the wanted cluster, by its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    /// Cannot hold the cluster.
    Outside,
    /// Holds the cluster only: its row count is its match count.
    Whole,
    /// May hold some: the `cluster_id` column decides.
    Partial,
}

/// The rows of one row group that fall in the page.
struct Pick {
    group: usize,
    ranges: Vec<Range<usize>>,
}

/// Read one page of the members file at `part`.
pub(crate) async fn read_page(
    store: &Arc<dyn ObjectStore>,
    part: &Part,
    cluster_id: Option<&str>,
    offset: u64,
    limit: usize,
) -> PqResult<(PageRows, ReadStats)> {
    // The offset index lets a row selection fetch only the pages it touches.
    let (reader, meta) = reader::open_part_indexed(store, part).await?;
    let column = cluster_column(&meta)?;
    let groups = meta.metadata().row_groups();
    let fits: Vec<Fit> = groups
        .iter()
        .map(|g| match cluster_id {
            None => Fit::Whole,
            Some(c) => fit(g, column, c.as_bytes()),
        })
        .collect();

    let mut stats = ReadStats::default();
    let partial: Vec<usize> = (0..groups.len())
        .filter(|&g| fits[g] == Fit::Partial)
        .collect();
    let mut scan = match (cluster_id, partial.is_empty()) {
        (Some(c), false) => {
            stats.groups_scanned = partial.clone();
            let mask = reader::projection(&meta, reader::root_indices(meta.schema(), [CLUSTER_ID]));
            let stream =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), meta.clone())
                    .with_row_groups(partial)
                    .with_projection(mask)
                    .with_batch_size(SCAN_BATCH_ROWS)
                    .build()?;
            Some(ClusterScan::new(stream, c))
        }
        _ => None,
    };

    let window_start = offset;
    let window_end = offset.saturating_add(limit as u64);
    let mut matched = 0u64;
    let mut picks: Vec<Pick> = Vec::new();
    for (g, (group, fit)) in groups.iter().zip(&fits).enumerate() {
        let rows = group_rows(group)?;
        match fit {
            Fit::Outside => {}
            Fit::Whole => {
                let k = rows as u64;
                let lo = window_start.max(matched);
                let hi = window_end.min(matched + k);
                if lo < hi {
                    let start = (lo - matched) as usize;
                    let end = (hi - matched) as usize;
                    picks.push(Pick {
                        group: g,
                        // One run of rows (a literal `vec![a..b]` reads like a range of vecs).
                        ranges: std::iter::once(start..end).collect(),
                    });
                }
                matched += k;
            }
            Fit::Partial => {
                let Some(scan) = scan.as_mut() else {
                    return Err(ParquetError::General(
                        "a partial row group without a scan".to_owned(),
                    ));
                };
                let hits = scan.next_group(rows).await?;
                let mut ranges: Vec<Range<usize>> = Vec::new();
                for row in hits {
                    if matched >= window_start && matched < window_end {
                        match ranges.last_mut() {
                            Some(r) if r.end == row => r.end = row + 1,
                            _ => ranges.push(row..row + 1),
                        }
                    }
                    matched += 1;
                }
                if !ranges.is_empty() {
                    picks.push(Pick { group: g, ranges });
                }
            }
        }
    }

    stats.groups_read = picks.iter().map(|p| p.group).collect();
    let members = if picks.is_empty() {
        Vec::new()
    } else {
        read_rows(reader, meta, &picks).await?
    };
    Ok((
        PageRows {
            total: matched,
            members,
        },
        stats,
    ))
}

/// The leaf index of the `cluster_id` column; the file must have it as a string.
fn cluster_column(meta: &ArrowReaderMetadata) -> PqResult<usize> {
    let is_string = meta
        .schema()
        .field_with_name(CLUSTER_ID)
        .is_ok_and(|f| reader::is_string_type(f.data_type()));
    let leaf = meta
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [CLUSTER_ID]);
    match leaf {
        Some(i) if is_string => Ok(i),
        _ => Err(ParquetError::General(
            "the file has no string cluster_id column".to_owned(),
        )),
    }
}

fn group_rows(group: &RowGroupMetaData) -> PqResult<usize> {
    usize::try_from(group.num_rows())
        .map_err(|_| ParquetError::General(format!("a row group has {} rows", group.num_rows())))
}

/// Where a row group stands against `want` by its `cluster_id` statistics. Truncated
/// bounds still enclose the values, so they can rule a group out but never make it whole;
/// statistics in the deprecated signed order, or a group with nulls, are not trusted.
fn fit(group: &RowGroupMetaData, column: usize, want: &[u8]) -> Fit {
    let Some(s) = group.column(column).statistics() else {
        return Fit::Partial;
    };
    if s.is_min_max_deprecated() {
        return Fit::Partial;
    }
    let (Some(min), Some(max)) = (s.min_bytes_opt(), s.max_bytes_opt()) else {
        return Fit::Partial;
    };
    if want < min || want > max {
        return Fit::Outside;
    }
    let exact = s.min_is_exact() && s.max_is_exact() && s.null_count_opt() == Some(0);
    if exact && min == want && max == want {
        Fit::Whole
    } else {
        Fit::Partial
    }
}

/// The `cluster_id` column of the partial row groups, in order, one group at a time.
struct ClusterScan<'a> {
    stream: ParquetRecordBatchStream<ObjectReader>,
    want: &'a str,
    /// The unread tail of the last batch: whether each row matches.
    pending: Vec<bool>,
    pending_at: usize,
}

impl<'a> ClusterScan<'a> {
    fn new(stream: ParquetRecordBatchStream<ObjectReader>, want: &'a str) -> Self {
        ClusterScan {
            stream,
            want,
            pending: Vec::new(),
            pending_at: 0,
        }
    }

    /// The positions of the matching rows among the next `rows` rows (one row group).
    /// Batches are cut by row count, so a batch that spans two groups is split here.
    async fn next_group(&mut self, rows: usize) -> PqResult<Vec<usize>> {
        let mut hits = BooleanBufferBuilder::new(rows);
        while hits.len() < rows {
            if self.pending_at == self.pending.len() {
                let Some(batch) = self.stream.try_next().await? else {
                    return Err(ParquetError::General(
                        "the cluster_id column ended before its row groups".to_owned(),
                    ));
                };
                self.pending = matches(&batch, self.want)?;
                self.pending_at = 0;
            }
            let take = (rows - hits.len()).min(self.pending.len() - self.pending_at);
            for &m in &self.pending[self.pending_at..self.pending_at + take] {
                hits.append(m);
            }
            self.pending_at += take;
        }
        Ok(hits.finish().set_indices().collect())
    }
}

fn matches(batch: &RecordBatch, want: &str) -> PqResult<Vec<bool>> {
    let column = batch
        .column_by_name(CLUSTER_ID)
        .and_then(|c| StringColumn::new(c.as_ref()))
        .ok_or_else(|| ParquetError::General("cluster_id is not a string column".to_owned()))?;
    Ok((0..batch.num_rows())
        .map(|i| column.get(i) == Some(want))
        .collect())
}

/// Read the picked rows, every column the page shows, from the picked row groups only.
async fn read_rows(
    reader: ObjectReader,
    meta: ArrowReaderMetadata,
    picks: &[Pick],
) -> PqResult<Vec<PagedMember>> {
    let groups = meta.metadata().row_groups();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut base = 0usize;
    for pick in picks {
        ranges.extend(pick.ranges.iter().map(|r| r.start + base..r.end + base));
        base += group_rows(&groups[pick.group])?;
    }
    let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), base);
    let mask = reader::projection(
        &meta,
        reader::root_indices(
            meta.schema(),
            [
                "document_id",
                "collection_id",
                CLUSTER_ID,
                "distance_to_centroid",
                "probability",
                "sampled",
                "coordinates",
            ],
        ),
    );
    let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
        .with_row_groups(picks.iter().map(|p| p.group).collect())
        .with_row_selection(selection)
        .with_projection(mask)
        .build()?;
    let mut members = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        members_of(&batch, &mut members)?;
    }
    Ok(members)
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> PqResult<StringColumn<'a>> {
    batch
        .column_by_name(name)
        .and_then(|c| StringColumn::new(c.as_ref()))
        .ok_or_else(|| ParquetError::General(format!("{name} is not a string column")))
}

/// A float column read as f32 per row, whichever float width it was written in.
fn floats(batch: &RecordBatch, name: &str) -> PqResult<Option<Vec<Option<f32>>>> {
    let Some(c) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let values: Vec<Option<f32>> = match c.data_type() {
        DataType::Float32 => c.as_primitive::<Float32Type>().iter().collect(),
        DataType::Float64 => c
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map(|x| x as f32))
            .collect(),
        other => {
            return Err(ParquetError::General(format!(
                "{name} is {other}, not a float column"
            )));
        }
    };
    Ok(Some(values))
}

fn members_of(batch: &RecordBatch, out: &mut Vec<PagedMember>) -> PqResult<()> {
    let documents = strings(batch, "document_id")?;
    let collections = strings(batch, "collection_id")?;
    let clusters = strings(batch, CLUSTER_ID)?;
    let distances = floats(batch, "distance_to_centroid")?;
    let probabilities = floats(batch, "probability")?;
    let sampled =
        match batch.column_by_name("sampled") {
            None => None,
            Some(c) => Some(c.as_boolean_opt().ok_or_else(|| {
                ParquetError::General("sampled is not a boolean column".to_owned())
            })?),
        };
    let coordinates = match batch.column_by_name("coordinates") {
        None => None,
        Some(c) => Some(VectorView::new(c.as_ref()).ok_or_else(|| {
            ParquetError::General("coordinates is not a float list column".to_owned())
        })?),
    };
    let required = |v: Option<&str>, name: &str| {
        v.map(str::to_owned)
            .ok_or_else(|| ParquetError::General(format!("a member has a null {name}")))
    };
    let mut point = Vec::with_capacity(2);
    for i in 0..batch.num_rows() {
        let coordinates = match &coordinates {
            Some(view) if !view.is_null(i) => {
                point.clear();
                match view.append_f32(i, &mut point) {
                    Ok(()) if point.len() == 2 => Some([point[0], point[1]]),
                    _ => None,
                }
            }
            _ => None,
        };
        out.push(PagedMember {
            document_id: required(documents.get(i), "document_id")?,
            collection_id: required(collections.get(i), "collection_id")?,
            cluster_id: required(clusters.get(i), CLUSTER_ID)?,
            distance_to_centroid: distances.as_ref().and_then(|d| d[i]),
            probability: probabilities.as_ref().and_then(|p| p[i]),
            sampled: sampled.and_then(|s| s.is_valid(i).then(|| s.value(i))),
            coordinates,
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "members_tests.rs"]
mod tests;
