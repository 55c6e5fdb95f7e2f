//! Loading documents for a run (DESIGN §2, §3), streamed in two passes so that memory
//! holds the selected rows' vectors and nothing more:
//!
//! 1. read only `document_id` of every part (collections in request order, parts in key
//!    order) and keep, per collection and id, the last occurrence: a re-uploaded document
//!    replaces the earlier row;
//! 2. after the optional seeded sample, read the vector and attribute columns of the kept
//!    rows only (row groups without one are not fetched) into one contiguous buffer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, RowSelection};
use parquet::arrow::async_reader::ParquetRecordBatchStream;

use super::error::parquet_error;
use super::reader::{self, DOCUMENT_ID, ObjectReader, Part, StringColumn, VectorView, vector_type};
use super::sample::sample_indices;
use super::{FOOTER_CONCURRENCY, LoadRequest, LoadedDocuments, Store, paths};
use crate::model::{ApiError, ApiResult, Matrix, RunContext, Scope};

const F_VECTOR: &str = "config.feature_vector";
const F_COLLECTIONS: &str = "collection_ids";

fn attr_field(req: &LoadRequest, k: usize) -> String {
    req.attribute_fields
        .get(k)
        .cloned()
        .unwrap_or_else(|| format!("config.attribute_config.attributes[{k}]"))
}

/// One part of one requested collection, with its footer and, after pass 1, the rows
/// (ascending) and document ids that survive de-duplication and sampling.
struct PartState {
    collection: usize,
    part: Part,
    reader: ObjectReader,
    meta: ArrowReaderMetadata,
    kept: Vec<(usize, String)>,
}

impl PartState {
    fn file(&self) -> String {
        paths::file_name(&self.part.location)
    }
}

/// Where a dotted attribute path lands in one part's schema: the top-level column and the
/// struct fields below it.
#[derive(Debug, Clone)]
struct AttrPath {
    root: String,
    children: Vec<String>,
}

impl Store {
    pub async fn load(
        &self,
        scope: &Scope,
        req: &LoadRequest,
        ctx: &RunContext,
    ) -> ApiResult<LoadedDocuments> {
        Ok(self.load_with_remainder(scope, req, false, ctx).await?.0)
    }

    /// [`Self::load`], and with `keep_remainder` (and a vector column) the documents the
    /// sample left out, to be streamed afterwards in batches: `None` when nothing was left
    /// out. Their ids stay in memory (the de-duplication pass read them anyway); their
    /// vectors are read batch by batch.
    pub async fn load_with_remainder(
        &self,
        scope: &Scope,
        req: &LoadRequest,
        keep_remainder: bool,
        ctx: &RunContext,
    ) -> ApiResult<(LoadedDocuments, Option<Remainder>)> {
        if req.collection_ids.is_empty() {
            return Err(ApiError::invalid_parameter(
                F_COLLECTIONS,
                "name at least one collection",
            ));
        }
        if req.sample_size == Some(0) {
            return Err(ApiError::invalid_parameter(
                "sample_size",
                "must be at least 1",
            ));
        }
        let mut parts = Vec::new();
        for (i, id) in req.collection_ids.iter().enumerate() {
            let field = format!("collection_ids[{i}]");
            if req.collection_ids[..i].contains(id) {
                return Err(ApiError::invalid_request(
                    &field,
                    format!("collection {id} is named twice"),
                ));
            }
            let dir = paths::collection_dir(scope, &field, id)?;
            let found = self.list_parts(&dir).await?;
            if found.is_empty() {
                return Err(ApiError::not_found(
                    Some(&field),
                    format!("collection {id} does not exist"),
                ));
            }
            parts.extend(found.into_iter().map(|p| (i, p)));
        }
        ctx.checkpoint()?;

        let mut states: Vec<PartState> =
            futures::stream::iter(parts.into_iter().map(|(c, part)| {
                let store = Arc::clone(&self.inner);
                let id = &req.collection_ids[c];
                async move {
                    // With the page index: the windowed reads below fetch only their pages.
                    let (reader, meta) = reader::open_part_indexed(&store, &part).await.map_err(
                        |e| {
                            parquet_error(e, |m| {
                                ApiError::invalid_parameter(
                                    &format!("collection_ids[{c}]"),
                                    format!(
                                        "part {} of collection {id} is not readable Parquet: {m}",
                                        paths::file_name(&part.location)
                                    ),
                                )
                            })
                        },
                    )?;
                    Ok::<_, ApiError>(PartState {
                        collection: c,
                        part,
                        reader,
                        meta,
                        kept: Vec::new(),
                    })
                }
            }))
            .buffered(FOOTER_CONCURRENCY)
            .try_collect()
            .await?;

        if let Some(column) = &req.vector_column {
            check_vector_column(req, &states, column)?;
        }
        let attr_paths = resolve_attributes(req, &states)?;

        dedup_pass(req, &mut states, ctx).await?;
        if let Some(wanted) = &req.document_ids {
            keep_only(req, wanted, &mut states)?;
        }
        let total: usize = states.iter().map(|s| s.kept.len()).sum();
        if total == 0 {
            return Err(ApiError::invalid_parameter(
                F_COLLECTIONS,
                "the collections hold no documents",
            ));
        }
        let mut left_out = None;
        if let Some(amount) = req.sample_size
            && amount < total
        {
            left_out = Some(apply_sample(
                &mut states,
                &sample_indices(total, amount, req.seed),
            ));
        }

        let selected: usize = states.iter().map(|s| s.kept.len()).sum();
        if let Some(column) = &req.vector_column {
            let dimension = vector_dimension(&states, column).await?;
            req.limits.check(selected, dimension)?;
        } else {
            req.limits.check(selected, 0)?;
        }
        let mut out = LoadedDocuments {
            document_ids: Vec::with_capacity(selected),
            collection_index: Vec::with_capacity(selected),
            vectors: None,
            vector_dimension: None,
            attributes: vec![Vec::with_capacity(selected); req.attributes.len()],
            total_documents: total,
        };
        let mut vectors = VectorSink::default();
        for (p, state) in states.iter().enumerate() {
            if state.kept.is_empty() {
                continue;
            }
            if req.vector_column.is_some() || !req.attributes.is_empty() {
                read_columns(req, state, &attr_paths[p], &mut vectors, &mut out, ctx).await?;
            }
            let c = u32::try_from(state.collection).map_err(ApiError::internal)?;
            out.collection_index
                .extend(std::iter::repeat_n(c, state.kept.len()));
            out.document_ids
                .extend(state.kept.iter().map(|(_, id)| id.clone()));
        }
        let mut remainder = None;
        if let Some(column) = &req.vector_column {
            let dim = vectors.dim.map(|(d, _)| d).unwrap_or(0);
            let rows = out.document_ids.len();
            if keep_remainder && let Some(rest) = left_out {
                let parts: Vec<PartState> = states
                    .into_iter()
                    .zip(rest)
                    .filter(|(_, rest)| !rest.is_empty())
                    .map(|(state, rest)| PartState {
                        kept: rest,
                        ..state
                    })
                    .collect();
                remainder = Some(Remainder {
                    req: LoadRequest {
                        attributes: Vec::new(),
                        attribute_fields: Vec::new(),
                        ..req.clone()
                    },
                    column: column.clone(),
                    dim: vectors.dim,
                    remaining: parts.iter().map(|p| p.kept.len()).sum(),
                    parts: parts.into(),
                    part: None,
                    window: None,
                });
            }
            out.vectors = Some(
                Matrix::from_vec(rows, dim, vectors.data)
                    .ok_or_else(|| ApiError::internal("vector buffer does not match its shape"))?,
            );
            out.vector_dimension = Some(dim);
        }
        Ok((out, remainder))
    }
}

/// A batch of the documents a sample left out: ids, the collection of each (index into the
/// request's `collection_ids`) and their vectors.
#[derive(Debug)]
pub struct RemainderBatch {
    pub document_ids: Vec<String>,
    pub collection_index: Vec<u32>,
    pub vectors: Matrix,
}

/// The documents a sample left out, streamed part by part, batch by batch, in bounded
/// memory: a part written with an offset index (as arrow-rs and clusterd's own uploads
/// write) is read in windows of [`WINDOW_ROWS`] file rows, each on its own row selection,
/// so only the pages of one window are fetched at a time; a part without one (pyarrow's
/// default) is read by row groups, holding one row group's vector column chunk.
pub struct Remainder {
    req: LoadRequest,
    column: String,
    /// The dimension the sample had, and the collection that set it (for errors).
    dim: Option<(usize, usize)>,
    remaining: usize,
    parts: VecDeque<PartState>,
    /// The part being read and its windows still to open (ranges of its `kept`).
    part: Option<(PartState, VecDeque<Range<usize>>)>,
    /// The open window: its stream and the `kept` rows it has still to return.
    window: Option<(ParquetRecordBatchStream<ObjectReader>, Range<usize>)>,
}

impl std::fmt::Debug for Remainder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remainder")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl Remainder {
    /// Documents not yet returned.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The next documents, at least `max_rows` unless the remainder ends first (a batch
    /// may overshoot by less than one reader batch), `None` when all came.
    pub async fn next_batch(
        &mut self,
        max_rows: usize,
        ctx: &RunContext,
    ) -> ApiResult<Option<RemainderBatch>> {
        let max_rows = max_rows.max(1);
        let mut batch = RemainderBatch {
            document_ids: Vec::new(),
            collection_index: Vec::new(),
            vectors: Matrix::zeros(0, 0),
        };
        let mut sink = VectorSink {
            data: Vec::new(),
            dim: self.dim,
        };
        let mut scratch = Vec::new();
        while batch.document_ids.len() < max_rows {
            ctx.checkpoint()?;
            if self.part.is_none() {
                let Some(part) = self.parts.pop_front() else {
                    break;
                };
                let windows = windows(&part.meta, &part.kept).into();
                self.part = Some((part, windows));
            }
            let Some((part, windows)) = self.part.as_mut() else {
                break;
            };
            if self.window.is_none() {
                let Some(range) = windows.pop_front() else {
                    self.part = None;
                    continue;
                };
                let stream = open_rows(&self.req, part, &part.kept[range.clone()], &self.column)?;
                self.window = Some((stream, range));
            }
            let Some((stream, range)) = self.window.as_mut() else {
                continue;
            };
            let c = part.collection;
            let file = part.file();
            let collection = &self.req.collection_ids[c];
            let bad = |m: String| {
                ApiError::invalid_parameter(
                    &format!("collection_ids[{c}]"),
                    format!("part {file} of collection {collection}: {m}"),
                )
            };
            match super::reader::next_checked_batch(stream)
                .await
                .map_err(|e| parquet_error(e, bad))?
            {
                Some(rb) => {
                    let rows = rb.num_rows();
                    let ids = part
                        .kept
                        .get_mut(range.start..range.start + rows)
                        .filter(|_| range.start + rows <= range.end)
                        .ok_or_else(|| {
                            ApiError::internal("the reader returned more rows than selected")
                        })?;
                    append_vectors(
                        &self.req,
                        &rb,
                        &self.column,
                        c,
                        ids,
                        &mut sink,
                        &mut scratch,
                    )?;
                    // The id moves into the batch; the part's copy is not read again.
                    batch
                        .document_ids
                        .extend(ids.iter_mut().map(|(_, id)| std::mem::take(id)));
                    let index = u32::try_from(c).map_err(ApiError::internal)?;
                    batch
                        .collection_index
                        .extend(std::iter::repeat_n(index, rows));
                    range.start += rows;
                }
                None => {
                    if range.start < range.end {
                        return Err(ApiError::internal(format!(
                            "{} selected rows of {file} were not read",
                            range.end - range.start
                        )));
                    }
                    self.window = None;
                }
            }
        }
        if batch.document_ids.is_empty() {
            return Ok(None);
        }
        self.dim = sink.dim;
        let rows = batch.document_ids.len();
        let dim = sink.dim.map(|(d, _)| d).unwrap_or(0);
        batch.vectors = Matrix::from_vec(rows, dim, sink.data)
            .ok_or_else(|| ApiError::internal("vector buffer does not match its shape"))?;
        self.remaining = self.remaining.saturating_sub(rows);
        Ok(Some(batch))
    }
}

/// File rows per window when a part has an offset index: 16 MiB of 256-d vectors.
const WINDOW_ROWS: usize = 16_384;

/// Ranges of `kept` (rows ascending) read on one row selection each: windows of
/// [`WINDOW_ROWS`] file rows when the part has an offset index (each window then fetches
/// only its own pages), else one range per row group (a row group's column chunk is
/// fetched whole anyway).
pub(super) fn windows(meta: &ArrowReaderMetadata, kept: &[(usize, String)]) -> Vec<Range<usize>> {
    let md = meta.metadata();
    let indexed = md.num_row_groups() > 0
        && md.row_groups().iter().all(|rg| {
            rg.columns()
                .iter()
                .all(|c| c.offset_index_offset().is_some())
        });
    let mut bounds = Vec::new();
    let mut end = 0usize;
    for rg in md.row_groups() {
        let n = usize::try_from(rg.num_rows()).unwrap_or(0);
        if indexed {
            let mut w = end;
            while w + WINDOW_ROWS < end + n {
                w += WINDOW_ROWS;
                bounds.push(w);
            }
        }
        end += n;
        bounds.push(end);
    }
    let mut out = Vec::new();
    let mut start = 0usize;
    for b in bounds {
        let stop = start + kept[start..].partition_point(|(row, _)| *row < b);
        if stop > start {
            out.push(start..stop);
        }
        start = stop;
    }
    if start < kept.len() {
        out.push(start..kept.len());
    }
    out
}

/// A stream of the vector column of `kept` rows of one part (the remainder's reads).
fn open_rows(
    req: &LoadRequest,
    part: &PartState,
    kept: &[(usize, String)],
    column: &str,
) -> ApiResult<ParquetRecordBatchStream<ObjectReader>> {
    let c = part.collection;
    let collection = &req.collection_ids[c];
    if part.meta.schema().field_with_name(column).is_err() {
        let doc = kept.first().map(|(_, id)| id.as_str()).unwrap_or_default();
        return Err(ApiError::invalid_parameter(
            F_VECTOR,
            format!("document {doc:?} of collection {collection} has no {column} vector"),
        ));
    }
    let roots = reader::root_indices(part.meta.schema(), [column]);
    let (groups, selection) = plan_rows(&part.meta, kept);
    ParquetRecordBatchStreamBuilder::new_with_metadata(part.reader.clone(), part.meta.clone())
        .with_projection(reader::projection(&part.meta, roots))
        .with_row_groups(groups)
        .with_row_selection(selection)
        .build()
        .map_err(|e| {
            parquet_error(e, |m| {
                ApiError::invalid_parameter(
                    &format!("collection_ids[{c}]"),
                    format!("part {} of collection {collection}: {m}", part.file()),
                )
            })
        })
}

/// The dimension of the vector column, from the first part's schema (fixed-size lists)
/// or its first value (lists): what the memory estimate needs before any vector is read.
async fn vector_dimension(states: &[PartState], column: &str) -> ApiResult<usize> {
    for s in states.iter().filter(|s| !s.kept.is_empty()) {
        let Ok(field) = s.meta.schema().field_with_name(column) else {
            continue;
        };
        if let Some(d) = vector_type(field.data_type()).and_then(|t| t.fixed_dim) {
            return Ok(d);
        }
        let corrupt = |m: String| {
            ApiError::invalid_parameter(
                &format!("collection_ids[{}]", s.collection),
                format!(
                    "part {}: the first {column} vector does not decode: {m}",
                    s.file()
                ),
            )
        };
        if let Some(d) = reader::first_list_length(s.reader.clone(), &s.meta, column)
            .await
            .map_err(|e| parquet_error(e, corrupt))?
        {
            return Ok(d);
        }
    }
    Ok(0)
}

/// Keep only the wanted documents; every one of them must be there.
fn keep_only(req: &LoadRequest, wanted: &[String], states: &mut [PartState]) -> ApiResult<()> {
    let set: HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let mut found: HashSet<String> = HashSet::with_capacity(set.len());
    for s in states.iter_mut() {
        s.kept.retain(|(_, id)| set.contains(id.as_str()));
        found.extend(s.kept.iter().map(|(_, id)| id.clone()));
    }
    if let Some((i, id)) = wanted
        .iter()
        .enumerate()
        .find(|(_, id)| !found.contains(*id))
    {
        let collections = req.collection_ids.join(", ");
        return Err(ApiError::not_found(
            Some(&format!("{}[{i}]", req.document_ids_field)),
            format!("document {id:?} is not in collection {collections}"),
        ));
    }
    Ok(())
}

/// Every collection must have the column, as a float vector, and fixed dimensions must
/// agree across collections before any data is read.
fn check_vector_column(req: &LoadRequest, states: &[PartState], column: &str) -> ApiResult<()> {
    let mut first_fixed: Option<(usize, usize)> = None;
    for (c, id) in req.collection_ids.iter().enumerate() {
        let mut present = false;
        for s in states.iter().filter(|s| s.collection == c) {
            let Ok(field) = s.meta.schema().field_with_name(column) else {
                continue;
            };
            present = true;
            let Some(vt) = vector_type(field.data_type()) else {
                return Err(ApiError::invalid_parameter(
                    F_VECTOR,
                    format!(
                        "column {column} of collection {id} is {}, not a list of floats",
                        field.data_type()
                    ),
                ));
            };
            if let Some(d) = vt.fixed_dim {
                match first_fixed {
                    None => first_fixed = Some((d, c)),
                    Some((d0, c0)) if d0 != d && c0 != c => {
                        return Err(dimension_mismatch(req, column, (c0, d0), (c, d)));
                    }
                    _ => {}
                }
            }
        }
        if !present {
            return Err(ApiError::not_found(
                Some(F_VECTOR),
                format!("collection {id} has no vector column {column}"),
            ));
        }
    }
    Ok(())
}

fn dimension_mismatch(
    req: &LoadRequest,
    column: &str,
    a: (usize, usize),
    b: (usize, usize),
) -> ApiError {
    ApiError::invalid_parameter(
        F_COLLECTIONS,
        format!(
            "vector column {column} has dimension {} in collection {} but {} in collection {}",
            a.1, req.collection_ids[a.0], b.1, req.collection_ids[b.0]
        ),
    )
}

/// Resolve each requested dotted path in each part: `[part][attribute]`, `None` where the
/// part lacks it (its rows read as null). A path that no part has is `not_found`.
fn resolve_attributes(
    req: &LoadRequest,
    states: &[PartState],
) -> ApiResult<Vec<Vec<Option<AttrPath>>>> {
    let mut out = vec![Vec::with_capacity(req.attributes.len()); states.len()];
    for (k, path) in req.attributes.iter().enumerate() {
        let field = attr_field(req, k);
        if path.is_empty() {
            return Err(ApiError::invalid_request(&field, "must not be empty"));
        }
        let mut found = false;
        for (p, s) in states.iter().enumerate() {
            let resolved = resolve_path(s.meta.schema(), path);
            if let Some((attr, leaf)) = &resolved {
                check_leaf_type(&field, path, leaf)?;
                found = true;
                out[p].push(Some(attr.clone()));
            } else {
                out[p].push(None);
            }
        }
        if !found {
            return Err(ApiError::not_found(
                Some(&field),
                format!("no collection has an attribute {path}"),
            ));
        }
    }
    Ok(out)
}

/// A top-level column named exactly `path` wins over navigating `a.b` into a struct, so a
/// column whose name contains dots stays reachable.
fn resolve_path(schema: &Schema, path: &str) -> Option<(AttrPath, Field)> {
    if let Ok(f) = schema.field_with_name(path) {
        return Some((
            AttrPath {
                root: path.to_owned(),
                children: Vec::new(),
            },
            f.clone(),
        ));
    }
    let mut segments = path.split('.');
    let root = segments.next()?;
    let mut field = schema.field_with_name(root).ok()?.clone();
    let mut children = Vec::new();
    for seg in segments {
        let DataType::Struct(fields) = field.data_type() else {
            return None;
        };
        field = fields.iter().find(|f| f.name() == seg)?.as_ref().clone();
        children.push(seg.to_owned());
    }
    Some((
        AttrPath {
            root: root.to_owned(),
            children,
        },
        field,
    ))
}

fn check_leaf_type(field: &str, path: &str, leaf: &Field) -> ApiResult<()> {
    if let DataType::Struct(fields) = leaf.data_type() {
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        return Err(ApiError::invalid_parameter(
            field,
            format!(
                "attribute {path} is an object; name one of its fields: {}",
                names.join(", ")
            ),
        ));
    }
    if !value_type_supported(leaf.data_type()) {
        return Err(ApiError::invalid_parameter(
            field,
            format!(
                "attribute {path} has type {}, which cannot be used as a value",
                leaf.data_type()
            ),
        ));
    }
    Ok(())
}

fn value_type_supported(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Null => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            value_type_supported(f.data_type())
        }
        DataType::Dictionary(_, v) => value_type_supported(v),
        _ => false,
    }
}

/// Pass 1: the `document_id` column of every part; parts are fetched a few at a time but
/// merged strictly in order, which is what makes "latest part wins" hold.
async fn dedup_pass(
    req: &LoadRequest,
    states: &mut [PartState],
    ctx: &RunContext,
) -> ApiResult<()> {
    let inputs: Vec<_> = states
        .iter()
        .map(|s| (s.reader.clone(), s.meta.clone(), s.collection, s.file()))
        .collect();
    let reads = inputs.into_iter().map(|(reader, meta, c, file)| {
        let id = req.collection_ids[c].clone();
        let ctx = ctx.clone();
        async move { read_ids(reader, meta, &ctx, c, &id, &file).await }
    });
    let mut stream = futures::stream::iter(reads).buffered(FOOTER_CONCURRENCY);
    // (collection) -> id -> (part index, row); one map per collection, drained into the
    // parts when the next collection starts.
    let mut latest: HashMap<String, (usize, usize)> = HashMap::new();
    let mut current = None;
    let mut p = 0usize;
    while let Some(ids) = stream.try_next().await? {
        let c = states[p].collection;
        if current != Some(c) {
            drain(&mut latest, states);
            current = Some(c);
        }
        for (row, id) in ids.into_iter().enumerate() {
            latest.insert(id, (p, row));
        }
        p += 1;
    }
    drain(&mut latest, states);
    for s in states.iter_mut() {
        s.kept.sort_unstable_by_key(|(row, _)| *row);
    }
    Ok(())
}

fn drain(latest: &mut HashMap<String, (usize, usize)>, states: &mut [PartState]) {
    for (id, (p, row)) in latest.drain() {
        states[p].kept.push((row, id));
    }
}

async fn read_ids(
    reader: ObjectReader,
    meta: ArrowReaderMetadata,
    ctx: &RunContext,
    c: usize,
    collection: &str,
    file: &str,
) -> ApiResult<Vec<String>> {
    let field = format!("collection_ids[{c}]");
    let bad = |m: String| {
        ApiError::invalid_parameter(
            &field,
            format!("part {file} of collection {collection}: {m}"),
        )
    };
    match meta.schema().field_with_name(DOCUMENT_ID) {
        Ok(f) if reader::is_string_type(f.data_type()) => {}
        Ok(f) => {
            return Err(bad(format!(
                "document_id is {}, not a string",
                f.data_type()
            )));
        }
        Err(_) => return Err(bad("there is no document_id column".to_owned())),
    }
    let roots = reader::root_indices(meta.schema(), [DOCUMENT_ID]);
    let mask = reader::projection(&meta, roots);
    let rows = usize::try_from(meta.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
        .with_projection(mask)
        .build()
        .map_err(|e| parquet_error(e, bad))?;
    let mut out = Vec::with_capacity(rows);
    while let Some(batch) = super::reader::next_checked_batch(&mut stream)
        .await
        .map_err(|e| parquet_error(e, bad))?
    {
        ctx.checkpoint()?;
        let ids = reader::document_ids(&batch)
            .ok_or_else(|| ApiError::internal("document_id vanished from a projected batch"))?;
        for r in 0..batch.num_rows() {
            match ids.get(r) {
                Some(id) => out.push(id.to_owned()),
                None => return Err(bad(format!("row {} has a null document_id", out.len()))),
            }
        }
    }
    Ok(out)
}

/// Keep the rows whose position in (collection, part, row) order is in `picked` (sorted);
/// the rows left out, per part, are returned.
fn apply_sample(states: &mut [PartState], picked: &[usize]) -> Vec<Vec<(usize, String)>> {
    let mut offset = 0usize;
    let mut next = 0usize;
    let mut left_out = Vec::with_capacity(states.len());
    for s in states.iter_mut() {
        let len = s.kept.len();
        let end = offset + len;
        let start_pick = next;
        while next < picked.len() && picked[next] < end {
            next += 1;
        }
        let mine = &picked[start_pick..next];
        let old = std::mem::take(&mut s.kept);
        let mut mine_iter = mine.iter().peekable();
        let mut rest = Vec::with_capacity(len - mine.len());
        for (i, row) in old.into_iter().enumerate() {
            if mine_iter.peek().is_some_and(|&&g| g == offset + i) {
                mine_iter.next();
                s.kept.push(row);
            } else {
                rest.push(row);
            }
        }
        left_out.push(rest);
        offset = end;
    }
    left_out
}

/// The one vector buffer and the dimension it holds, with the collection that set it (for
/// the error when another disagrees).
#[derive(Default)]
struct VectorSink {
    data: Vec<f32>,
    dim: Option<(usize, usize)>,
}

/// Which row groups hold kept rows, and the selection of those rows within them.
fn plan_rows(meta: &ArrowReaderMetadata, kept: &[(usize, String)]) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut group_start = 0usize;
    let mut concat_start = 0usize;
    let mut k = 0usize;
    for (g, rg) in meta.metadata().row_groups().iter().enumerate() {
        let n = usize::try_from(rg.num_rows()).unwrap_or(0);
        let end = group_start + n;
        let first = k;
        while k < kept.len() && kept[k].0 < end {
            let local = kept[k].0 - group_start + concat_start;
            match ranges.last_mut() {
                Some(r) if r.end == local => r.end += 1,
                _ => ranges.push(local..local + 1),
            }
            k += 1;
        }
        if k > first {
            groups.push(g);
            concat_start += n;
        }
        group_start = end;
    }
    (
        groups,
        RowSelection::from_consecutive_ranges(ranges.into_iter(), concat_start),
    )
}

/// Pass 2 for one part: the vector and attribute columns of its kept rows.
async fn read_columns(
    req: &LoadRequest,
    state: &PartState,
    attrs: &[Option<AttrPath>],
    vectors: &mut VectorSink,
    out: &mut LoadedDocuments,
    ctx: &RunContext,
) -> ApiResult<()> {
    let c = state.collection;
    let collection = &req.collection_ids[c];
    let schema = state.meta.schema();
    let vector_col = req
        .vector_column
        .as_deref()
        .filter(|v| schema.field_with_name(v).is_ok());
    if let (Some(column), None) = (&req.vector_column, vector_col) {
        let doc = state
            .kept
            .first()
            .map(|(_, id)| id.as_str())
            .unwrap_or_default();
        return Err(ApiError::invalid_parameter(
            F_VECTOR,
            format!("document {doc:?} of collection {collection} has no {column} vector"),
        ));
    }
    let roots = reader::root_indices(
        schema,
        vector_col
            .into_iter()
            .chain(attrs.iter().flatten().map(|a| a.root.as_str())),
    );
    if roots.is_empty() {
        // Nothing of this part is wanted beyond the ids: its rows have null attributes.
        for values in out.attributes.iter_mut() {
            values.extend(std::iter::repeat_n(Vec::new(), state.kept.len()));
        }
        return Ok(());
    }
    let bad = |m: String| {
        ApiError::invalid_parameter(
            &format!("collection_ids[{c}]"),
            format!("part {} of collection {collection}: {m}", state.file()),
        )
    };
    // A sample touches pages all over the file: read it window by window so that only
    // one window's pages are in memory (see `windows`).
    let meta = &state.meta;
    let mask = reader::projection(meta, roots);
    let mut scratch = Vec::new();
    let mut read = 0usize;
    for range in windows(meta, &state.kept) {
        let kept = &state.kept[range];
        let (groups, selection) = plan_rows(meta, kept);
        let mut stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(state.reader.clone(), meta.clone())
                .with_projection(mask.clone())
                .with_row_groups(groups)
                .with_row_selection(selection)
                .build()
                .map_err(|e| parquet_error(e, bad))?;
        let mut row = 0usize;
        while let Some(batch) = super::reader::next_checked_batch(&mut stream)
            .await
            .map_err(|e| parquet_error(e, bad))?
        {
            ctx.checkpoint()?;
            let n = batch.num_rows();
            let ids = kept
                .get(row..row + n)
                .ok_or_else(|| ApiError::internal("the reader returned more rows than selected"))?;
            if let Some(column) = vector_col {
                append_vectors(req, &batch, column, c, ids, vectors, &mut scratch)?;
            }
            for (k, attr) in attrs.iter().enumerate() {
                let values = &mut out.attributes[k];
                match attr.as_ref().and_then(|a| attribute_values(&batch, a)) {
                    Some(v) => values.extend(v),
                    None => values.extend(std::iter::repeat_n(Vec::new(), n)),
                }
            }
            row += n;
        }
        read += row;
    }
    if read != state.kept.len() {
        return Err(ApiError::internal(format!(
            "selected {} rows of {} but read {read}",
            state.kept.len(),
            state.file()
        )));
    }
    Ok(())
}

fn append_vectors(
    req: &LoadRequest,
    batch: &RecordBatch,
    column: &str,
    c: usize,
    ids: &[(usize, String)],
    sink: &mut VectorSink,
    scratch: &mut Vec<f32>,
) -> ApiResult<()> {
    let collection = &req.collection_ids[c];
    let view = batch
        .column_by_name(column)
        .and_then(|a| VectorView::new(a.as_ref()))
        .ok_or_else(|| ApiError::internal(format!("vector column {column} could not be viewed")))?;
    for (r, (_, doc)) in ids.iter().enumerate() {
        if view.is_null(r) {
            return Err(ApiError::invalid_parameter(
                F_VECTOR,
                format!("document {doc:?} of collection {collection} has no {column} vector"),
            ));
        }
        let len = view.check(r, scratch).map_err(|p| {
            ApiError::invalid_parameter(
                F_VECTOR,
                format!(
                    "the {column} vector of document {doc:?} in collection {collection} contains {}",
                    p.describe()
                ),
            )
        })?;
        match sink.dim {
            None if len == 0 => {
                return Err(ApiError::invalid_parameter(
                    F_VECTOR,
                    format!(
                        "the {column} vector of document {doc:?} in collection {collection} is empty"
                    ),
                ));
            }
            None => {
                sink.dim = Some((len, c));
                // Reserve once the dimension is known; the caller knows the row count.
                sink.data.reserve(len * (ids.len() - r));
            }
            Some((d, c0)) if d != len => {
                return Err(if c0 != c {
                    dimension_mismatch(req, column, (c0, d), (c, len))
                } else {
                    ApiError::invalid_parameter(
                        F_VECTOR,
                        format!(
                            "the {column} vector of document {doc:?} in collection {collection} has {len} values; other documents have {d}"
                        ),
                    )
                });
            }
            Some(_) => {}
        }
        sink.data.extend_from_slice(scratch);
    }
    Ok(())
}

/// The values of one attribute for every row of the batch: `None` if the column is not in
/// the batch (that part lacks it).
fn attribute_values(batch: &RecordBatch, path: &AttrPath) -> Option<Vec<Vec<String>>> {
    let mut levels: Vec<ArrayRef> = vec![Arc::clone(batch.column_by_name(&path.root)?)];
    for child in &path.children {
        let next = levels.last()?.as_struct_opt()?.column_by_name(child)?;
        levels.push(Arc::clone(next));
    }
    let leaf = levels.last()?;
    let mut values = column_strings(leaf.as_ref())?;
    // A struct's null does not always show in its children's null masks.
    for level in &levels[..levels.len() - 1] {
        if level.null_count() > 0 {
            for (i, v) in values.iter_mut().enumerate() {
                if level.is_null(i) {
                    v.clear();
                }
            }
        }
    }
    Some(values)
}

/// Every row of a column as strings: empty for null, one per element for lists.
fn column_strings(array: &dyn Array) -> Option<Vec<Vec<String>>> {
    fn prim<T>(array: &dyn Array) -> Option<Vec<Vec<String>>>
    where
        T: arrow_array::ArrowPrimitiveType,
        T::Native: ToString,
    {
        let a = array.as_primitive_opt::<T>()?;
        Some(
            (0..a.len())
                .map(|i| {
                    if a.is_valid(i) {
                        vec![a.value(i).to_string()]
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        )
    }
    /// Flatten the child values of each row's range; `None` ranges are null rows.
    fn lists(
        ranges: impl Iterator<Item = Option<Range<usize>>>,
        child: &dyn Array,
    ) -> Option<Vec<Vec<String>>> {
        let flat = column_strings(child)?;
        Some(
            ranges
                .map(|r| match r {
                    Some(r) => flat[r].iter().flatten().cloned().collect(),
                    None => Vec::new(),
                })
                .collect(),
        )
    }
    let n = array.len();
    Some(match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = StringColumn::new(array)?;
            (0..n)
                .map(|i| s.get(i).map(|v| vec![v.to_owned()]).unwrap_or_default())
                .collect()
        }
        DataType::Boolean => {
            let b = array.as_boolean_opt()?;
            (0..n)
                .map(|i| {
                    if b.is_valid(i) {
                        vec![b.value(i).to_string()]
                    } else {
                        Vec::new()
                    }
                })
                .collect()
        }
        DataType::Int8 => prim::<Int8Type>(array)?,
        DataType::Int16 => prim::<Int16Type>(array)?,
        DataType::Int32 => prim::<Int32Type>(array)?,
        DataType::Int64 => prim::<Int64Type>(array)?,
        DataType::UInt8 => prim::<UInt8Type>(array)?,
        DataType::UInt16 => prim::<UInt16Type>(array)?,
        DataType::UInt32 => prim::<UInt32Type>(array)?,
        DataType::UInt64 => prim::<UInt64Type>(array)?,
        DataType::Float16 => prim::<Float16Type>(array)?,
        DataType::Float32 => prim::<Float32Type>(array)?,
        DataType::Float64 => prim::<Float64Type>(array)?,
        DataType::Null => vec![Vec::new(); n],
        DataType::List(_) => {
            let l = array.as_list_opt::<i32>()?;
            let o = l.value_offsets();
            let ranges = (0..n).map(|i| {
                l.is_valid(i).then(|| {
                    usize::try_from(o[i]).unwrap_or(0)..usize::try_from(o[i + 1]).unwrap_or(0)
                })
            });
            lists(ranges, l.values().as_ref())?
        }
        DataType::LargeList(_) => {
            let l = array.as_list_opt::<i64>()?;
            let o = l.value_offsets();
            let ranges = (0..n).map(|i| {
                l.is_valid(i).then(|| {
                    usize::try_from(o[i]).unwrap_or(0)..usize::try_from(o[i + 1]).unwrap_or(0)
                })
            });
            lists(ranges, l.values().as_ref())?
        }
        DataType::FixedSizeList(_, size) => {
            let l = array.as_fixed_size_list_opt()?;
            let size = usize::try_from(*size).ok()?;
            let ranges = (0..n).map(|i| {
                l.is_valid(i).then(|| {
                    let s = l.value_offset_at(i);
                    s..s + size
                })
            });
            lists(ranges, l.values().as_ref())?
        }
        DataType::Dictionary(_, _) => {
            let d = array.as_any_dictionary_opt()?;
            let values = column_strings(d.values().as_ref())?;
            let keys = d.normalized_keys();
            (0..n)
                .map(|i| {
                    if d.keys().is_valid(i) {
                        values.get(keys[i]).cloned().unwrap_or_default()
                    } else {
                        Vec::new()
                    }
                })
                .collect()
        }
        _ => return None,
    })
}
