//! Reading Parquet out of the object store: a small `AsyncFileReader` (parquet's
//! `ParquetObjectReader` is deprecated), the footer, what the schema says about vector
//! columns, and typed views over the columns we decode.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use half::f16;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

pub(crate) const DOCUMENT_ID: &str = "document_id";

/// Most footers fit in one request of this size, so reading one costs a single round trip.
const FOOTER_PREFETCH: usize = 64 * 1024;

fn to_parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// An object of the store, with its size when a listing told us (saves a request).
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub location: Path,
    pub size: u64,
}

/// An `AsyncFileReader` over one object.
#[derive(Debug, Clone)]
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: Option<u64>,
}

impl ObjectReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, part: &Part) -> Self {
        ObjectReader {
            store,
            path: part.location.clone(),
            size: Some(part.size),
        }
    }
}

impl ObjectReader {
    /// A range the footer asks for must lie inside the object. A corrupt file's footer can
    /// point anywhere; asked for as is, the store would fail the request, which reads as
    /// an I/O failure (a 500) instead of what it is: bytes that are not valid Parquet.
    fn check_range(&self, range: &Range<u64>) -> PqResult<()> {
        match self.size {
            Some(size) if range.start > range.end || range.end > size => {
                Err(ParquetError::EOF(format!(
                    "the file refers to bytes {}..{} but holds {size}",
                    range.start, range.end
                )))
            }
            _ => Ok(()),
        }
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, PqResult<Bytes>> {
        if let Err(e) = self.check_range(&range) {
            return futures::future::ready(Err(e)).boxed();
        }
        self.store
            .get_range(&self.path, range)
            .map_err(to_parquet_err)
            .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, PqResult<Vec<Bytes>>> {
        async move {
            for range in &ranges {
                self.check_range(range)?;
            }
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, PqResult<Arc<ParquetMetaData>>> {
        async move {
            let reader = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .with_prefetch_hint(Some(FOOTER_PREFETCH));
            let metadata = match self.size {
                Some(size) => reader.load_and_finish(self, size).await?,
                None => reader.load_via_suffix_and_finish(self).await?,
            };
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Without a known size the footer is found with a suffix request.
impl MetadataSuffixFetch for &mut ObjectReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, PqResult<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let resp = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(to_parquet_err)?;
            resp.bytes().await.map_err(to_parquet_err)
        }
        .boxed()
    }
}

/// The footer of one part, parsed into an Arrow schema.
pub(crate) async fn open_part(
    store: &Arc<dyn ObjectStore>,
    part: &Part,
) -> PqResult<(ObjectReader, ArrowReaderMetadata)> {
    open_part_with(store, part, ArrowReaderOptions::new()).await
}

/// [`open_part`] with the page index (column and offset indexes) when the file has one:
/// a row selection then fetches only the pages it needs.
pub(crate) async fn open_part_indexed(
    store: &Arc<dyn ObjectStore>,
    part: &Part,
) -> PqResult<(ObjectReader, ArrowReaderMetadata)> {
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    open_part_with(store, part, options).await
}

async fn open_part_with(
    store: &Arc<dyn ObjectStore>,
    part: &Part,
    options: ArrowReaderOptions,
) -> PqResult<(ObjectReader, ArrowReaderMetadata)> {
    let mut reader = ObjectReader::new(Arc::clone(store), part);
    let meta = ArrowReaderMetadata::load_async(&mut reader, options).await?;
    check_chunks(&meta, part.size)?;
    Ok((reader, meta))
}

/// Every column chunk the footer declares must lie inside the file: parquet asserts (a
/// panic) on a negative offset or length when it plans the reads of a row group, and a
/// chunk past the end would be asked of the store as is. Both are corrupt uploads.
fn check_chunks(meta: &ArrowReaderMetadata, size: u64) -> PqResult<()> {
    for (g, group) in meta.metadata().row_groups().iter().enumerate() {
        for chunk in group.columns() {
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset());
            let len = chunk.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(s, l)| s.checked_add(l));
            if end.is_none_or(|end| end > size) {
                return Err(ParquetError::General(format!(
                    "row group {g}: the column chunk of {} at offset {start} with {len} bytes \
                     lies outside the file's {size} bytes",
                    chunk.column_path()
                )));
            }
        }
    }
    Ok(())
}

/// Element type of a vector column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElemType {
    F16,
    F32,
    F64,
}

impl ElemType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ElemType::F16 => "float16",
            ElemType::F32 => "float32",
            ElemType::F64 => "float64",
        }
    }
}

/// A vector column as the schema describes it: the element type, and the dimension when
/// the type fixes it (FixedSizeList); List columns carry their length in the data only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VectorType {
    pub elem: ElemType,
    pub fixed_dim: Option<usize>,
}

/// `Some` when `dt` is a FixedSizeList/List/LargeList of Float16/32/64.
pub(crate) fn vector_type(dt: &DataType) -> Option<VectorType> {
    let (child, fixed_dim) = match dt {
        DataType::FixedSizeList(f, n) => (f, usize::try_from(*n).ok()),
        DataType::List(f) | DataType::LargeList(f) => (f, None),
        _ => return None,
    };
    let elem = match child.data_type() {
        DataType::Float16 => ElemType::F16,
        DataType::Float32 => ElemType::F32,
        DataType::Float64 => ElemType::F64,
        _ => return None,
    };
    Some(VectorType { elem, fixed_dim })
}

/// Top-level indices of the named columns (those present), for a projection.
pub(crate) fn root_indices<'a>(
    schema: &Schema,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<usize> {
    let mut out: Vec<usize> = names
        .into_iter()
        .filter_map(|n| schema.index_of(n).ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

pub(crate) fn projection(meta: &ArrowReaderMetadata, roots: Vec<usize>) -> ProjectionMask {
    ProjectionMask::roots(meta.parquet_schema(), roots)
}

/// The length of the first non-null value of a List vector column: the schema does not
/// say, so read until one is found.
/// The next batch of a Parquet stream over a client's bytes (an upload being validated, or
/// a stored part a run reads: upload validation decodes the ids and vectors, not every
/// attribute page). parquet 60 panics on some corrupt pages instead of failing (a
/// dictionary key past the dictionary of a fixed-length column slices out of bounds): that
/// is corrupt data, answered as a Parquet error, not a server failure.
pub(crate) async fn next_checked_batch<S>(stream: &mut S) -> PqResult<Option<RecordBatch>>
where
    S: futures::Stream<Item = PqResult<RecordBatch>> + Unpin,
{
    std::panic::AssertUnwindSafe(stream.try_next())
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(ParquetError::General(
                "a page could not be decoded (the decoder failed on corrupt data)".to_owned(),
            ))
        })
}

pub(crate) async fn first_list_length(
    reader: ObjectReader,
    meta: &ArrowReaderMetadata,
    column: &str,
) -> PqResult<Option<usize>> {
    let roots = root_indices(meta.schema(), [column]);
    if roots.is_empty() {
        return Ok(None);
    }
    let mask = projection(meta, roots);
    let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone())
        .with_projection(mask)
        .build()?;
    while let Some(batch) = next_checked_batch(&mut stream).await? {
        let Some(view) = batch
            .column_by_name(column)
            .and_then(|c| VectorView::new(c.as_ref()))
        else {
            return Ok(None);
        };
        if let Some(i) = (0..view.len()).find(|&i| !view.is_null(i)) {
            return Ok(Some(view.range(i).len()));
        }
    }
    Ok(None)
}

/// A string column of any Arrow string layout.
pub(crate) enum StringColumn<'a> {
    Utf8(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
}

impl<'a> StringColumn<'a> {
    pub(crate) fn new(array: &'a dyn Array) -> Option<Self> {
        match array.data_type() {
            DataType::Utf8 => array.as_string_opt::<i32>().map(StringColumn::Utf8),
            DataType::LargeUtf8 => array.as_string_opt::<i64>().map(StringColumn::Large),
            DataType::Utf8View => array.as_string_view_opt().map(StringColumn::View),
            _ => None,
        }
    }
    pub(crate) fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            StringColumn::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            StringColumn::Large(a) => a.is_valid(i).then(|| a.value(i)),
            StringColumn::View(a) => a.is_valid(i).then(|| a.value(i)),
        }
    }
}

pub(crate) fn is_string_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The `document_id` column of a batch.
pub(crate) fn document_ids(batch: &RecordBatch) -> Option<StringColumn<'_>> {
    batch
        .column_by_name(DOCUMENT_ID)
        .and_then(|c| StringColumn::new(c.as_ref()))
}

enum Offsets<'a> {
    Fixed(usize),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

enum FloatSlice<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Why one vector cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VectorProblem {
    NullElement,
    NonFinite,
}

impl VectorProblem {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            VectorProblem::NullElement => "a null element",
            VectorProblem::NonFinite => "a NaN or infinite value",
        }
    }
}

/// Row-wise access to a float vector column, whatever its list layout and element type.
pub(crate) struct VectorView<'a> {
    len: usize,
    nulls: Option<&'a NullBuffer>,
    offsets: Offsets<'a>,
    values: FloatSlice<'a>,
    value_nulls: Option<&'a NullBuffer>,
}

impl<'a> VectorView<'a> {
    pub(crate) fn new(array: &'a dyn Array) -> Option<Self> {
        let (offsets, child) = match array.data_type() {
            DataType::FixedSizeList(_, n) => {
                let a = array.as_fixed_size_list_opt()?;
                let size = usize::try_from(*n).ok()?;
                (Offsets::Fixed(size), a.values())
            }
            DataType::List(_) => {
                let a = array.as_list_opt::<i32>()?;
                (Offsets::I32(a.value_offsets()), a.values())
            }
            DataType::LargeList(_) => {
                let a = array.as_list_opt::<i64>()?;
                (Offsets::I64(a.value_offsets()), a.values())
            }
            _ => return None,
        };
        let values = match child.data_type() {
            DataType::Float16 => FloatSlice::F16(child.as_primitive_opt::<Float16Type>()?.values()),
            DataType::Float32 => FloatSlice::F32(child.as_primitive_opt::<Float32Type>()?.values()),
            DataType::Float64 => FloatSlice::F64(child.as_primitive_opt::<Float64Type>()?.values()),
            _ => return None,
        };
        Some(VectorView {
            len: array.len(),
            nulls: array.nulls(),
            offsets,
            values,
            value_nulls: child.nulls(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_null(&self, i: usize) -> bool {
        self.nulls.is_some_and(|n| n.is_null(i))
    }

    /// The element range of row `i` in the child values.
    pub(crate) fn range(&self, i: usize) -> Range<usize> {
        match &self.offsets {
            // Arrow slices the child along with a FixedSizeList, so row i starts at i * size.
            Offsets::Fixed(size) => i * size..(i + 1) * size,
            Offsets::I32(o) => {
                let s = usize::try_from(o[i]).unwrap_or(0);
                let e = usize::try_from(o[i + 1]).unwrap_or(s);
                s..e
            }
            Offsets::I64(o) => {
                let s = usize::try_from(o[i]).unwrap_or(0);
                let e = usize::try_from(o[i + 1]).unwrap_or(s);
                s..e
            }
        }
    }

    /// Append row `i` as f32 to `out`; on a problem `out` is left as it was.
    pub(crate) fn append_f32(&self, i: usize, out: &mut Vec<f32>) -> Result<(), VectorProblem> {
        let range = self.range(i);
        if let Some(n) = self.value_nulls
            && range.clone().any(|j| n.is_null(j))
        {
            return Err(VectorProblem::NullElement);
        }
        let start = out.len();
        match &self.values {
            FloatSlice::F16(v) => out.extend(v[range].iter().map(|x| x.to_f32())),
            FloatSlice::F32(v) => out.extend_from_slice(&v[range]),
            // Values beyond f32's range become infinite here and are rejected below.
            FloatSlice::F64(v) => out.extend(v[range].iter().map(|&x| x as f32)),
        }
        if out[start..].iter().any(|x| !x.is_finite()) {
            out.truncate(start);
            return Err(VectorProblem::NonFinite);
        }
        Ok(())
    }

    /// Check row `i` without keeping it.
    pub(crate) fn check(&self, i: usize, scratch: &mut Vec<f32>) -> Result<usize, VectorProblem> {
        scratch.clear();
        self.append_f32(i, scratch)?;
        Ok(scratch.len())
    }
}
