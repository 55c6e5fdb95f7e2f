//! Uploads: stage the Parquet (an S3 object appears whole or not at all, and a Parquet
//! footer comes last, so nothing half-written may sit under `collections/`), read it back,
//! validate it against the rules of DESIGN §2 and the collection's schema, then publish it
//! as a new part. JSON documents are first turned into Parquet here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int64Array,
    RecordBatch, StringArray, StructArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::{ArrowWriter, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use super::error::{internal_os, parquet_error};
use super::paths;
use super::reader::{self, DOCUMENT_ID, Part, VectorType, VectorView, is_string_type, vector_type};
use super::{Store, UploadSummary};
use crate::model::{ApiError, ApiResult, DocumentRecord, Scope};

const PARQUET_MAGIC: &[u8] = b"PAR1";

impl Store {
    /// Publish a Parquet body as a new part of the collection.
    pub async fn upload_parquet(
        &self,
        scope: &Scope,
        collection_id: &str,
        body: Bytes,
    ) -> ApiResult<UploadSummary> {
        let dir = paths::collection_dir(scope, "collection_id", collection_id)?;
        // Cheap early answer for the common mistake (a CSV or JSON body); the footer parse
        // below catches everything subtler.
        if body.len() < 12 || !body.starts_with(PARQUET_MAGIC) || !body.ends_with(PARQUET_MAGIC) {
            return Err(ApiError::invalid_request(
                "body",
                "the body is not a Parquet file (it does not start and end with PAR1)",
            ));
        }
        self.stage_and_publish(scope, collection_id, dir, body)
            .await
    }

    /// Turn JSON documents into a Parquet part (zstd) and publish it like an upload.
    pub async fn upload_documents(
        &self,
        scope: &Scope,
        collection_id: &str,
        docs: Vec<DocumentRecord>,
    ) -> ApiResult<UploadSummary> {
        let dir = paths::collection_dir(scope, "collection_id", collection_id)?;
        if docs.is_empty() {
            return Err(ApiError::invalid_request(
                "documents",
                "there are no documents to upload",
            ));
        }
        // Encoding and compressing is CPU work: keep it off the async executor.
        let body = tokio::task::spawn_blocking(move || documents_to_parquet(&docs))
            .await
            .map_err(ApiError::internal)??;
        self.stage_and_publish(scope, collection_id, dir, body)
            .await
    }

    async fn stage_and_publish(
        &self,
        scope: &Scope,
        collection_id: &str,
        dir: Path,
        body: Bytes,
    ) -> ApiResult<UploadSummary> {
        let staging = paths::new_staging_key(scope);
        let size = body.len() as u64;
        let store = self.clone();
        let collection_id = collection_id.to_owned();
        // Its own task, so that a client that hangs up mid-way cannot stop us between the
        // staging write and its cleanup.
        tokio::spawn(async move {
            store
                .inner
                .put(&staging, body.into())
                .await
                .map_err(internal_os)?;
            let staged = Part {
                location: staging.clone(),
                size,
            };
            let result = store
                .validate_and_publish(&collection_id, &dir, &staged)
                .await;
            if result.is_err() {
                store.delete_quietly(&staging).await;
            }
            result
        })
        .await
        .map_err(ApiError::internal)?
    }

    async fn validate_and_publish(
        &self,
        collection_id: &str,
        dir: &Path,
        staged: &Part,
    ) -> ApiResult<UploadSummary> {
        let upload = validate_staged(self, staged).await?;
        self.check_against_collection(dir, &upload).await?;
        let key = paths::new_part_key(dir);
        self.inner
            .rename(&staged.location, &key)
            .await
            .map_err(internal_os)?;
        tracing::info!(collection_id, key = %key, documents = upload.rows, "published a part");
        Ok(UploadSummary {
            collection_id: collection_id.to_owned(),
            documents: upload.rows,
            part_key: key.to_string(),
        })
    }

    /// A vector column must keep the dimension and element type the collection has (as
    /// the newest part declares it), or readers could not stack the rows into one matrix.
    async fn check_against_collection(&self, dir: &Path, upload: &StagedUpload) -> ApiResult<()> {
        let parts = self.list_parts(dir).await?;
        let Some(newest) = parts.last() else {
            return Ok(());
        };
        // A newest part that is not valid Parquet (written past our checks, into the
        // collection's folder) is the collection's state, not a server failure.
        let corrupt = |m: String| {
            ApiError::conflict(
                Some("collection_id"),
                format!(
                    "the collection's newest part {} is not readable Parquet, so this upload \
                     cannot be checked against it: {m}",
                    paths::file_name(&newest.location)
                ),
            )
        };
        let (existing_reader, existing) = reader::open_part(&self.inner, newest)
            .await
            .map_err(|e| parquet_error(e, corrupt))?;
        for field in existing.schema().fields() {
            let name = field.name();
            let ours = upload.columns.get(name.as_str());
            let Some(ours) = ours else { continue };
            let theirs = vector_type(field.data_type());
            match (ours, theirs) {
                (Some((vt, dim)), Some(et)) => {
                    if vt.elem != et.elem {
                        return Err(ApiError::conflict(
                            Some(name),
                            format!(
                                "vector column {name} holds {} in the collection but {} in this upload",
                                et.elem.name(),
                                vt.elem.name()
                            ),
                        ));
                    }
                    let existing_dim = match et.fixed_dim {
                        Some(d) => Some(d),
                        None => reader::first_list_length(existing_reader.clone(), &existing, name)
                            .await
                            .map_err(|e| parquet_error(e, corrupt))?,
                    };
                    if let (Some(a), Some(b)) = (existing_dim, dim)
                        && a != *b
                    {
                        return Err(ApiError::conflict(
                            Some(name),
                            format!(
                                "vector column {name} has dimension {a} in the collection but {b} in this upload"
                            ),
                        ));
                    }
                }
                (Some((vt, _)), None) => {
                    return Err(ApiError::conflict(
                        Some(name),
                        format!(
                            "column {name} is a vector column of {} in this upload but a {} attribute in the collection",
                            vt.elem.name(),
                            field.data_type()
                        ),
                    ));
                }
                (None, Some(et)) => {
                    return Err(ApiError::conflict(
                        Some(name),
                        format!(
                            "column {name} is a vector column of {} in the collection but not a float vector in this upload",
                            et.elem.name()
                        ),
                    ));
                }
                (None, None) => {}
            }
        }
        Ok(())
    }
}

/// What validation learnt about an upload.
struct StagedUpload {
    rows: usize,
    /// Every column except `document_id` -> `Some((type, dimension if any row has one))`
    /// for vector columns, `None` for attributes.
    columns: HashMap<String, Option<(VectorType, Option<usize>)>>,
}

/// Read the staged object back and check every row: document ids present and non-empty,
/// vectors of one length, finite, without null elements.
async fn validate_staged(store: &Store, staged: &Part) -> ApiResult<StagedUpload> {
    let not_parquet = |m: String| {
        ApiError::invalid_request(
            "body",
            format!("the body is not a readable Parquet file: {m}"),
        )
    };
    let (reader, meta) = reader::open_part(&store.inner, staged)
        .await
        .map_err(|e| parquet_error(e, not_parquet))?;
    let rows = usize::try_from(meta.metadata().file_metadata().num_rows()).unwrap_or(0);
    if rows == 0 {
        return Err(ApiError::invalid_request(
            "body",
            "the upload has no documents",
        ));
    }
    let schema = Arc::clone(meta.schema());
    match schema.field_with_name(DOCUMENT_ID) {
        Err(_) => {
            return Err(ApiError::invalid_request(
                DOCUMENT_ID,
                "the upload has no document_id column",
            ));
        }
        Ok(f) if !is_string_type(f.data_type()) => {
            return Err(ApiError::invalid_request(
                DOCUMENT_ID,
                format!("document_id must be a string column, not {}", f.data_type()),
            ));
        }
        Ok(_) => {}
    }
    let mut columns: HashMap<String, Option<(VectorType, Option<usize>)>> = HashMap::new();
    let mut vector_names = Vec::new();
    for field in schema.fields() {
        if field.name() == DOCUMENT_ID {
            continue;
        }
        let vt = vector_type(field.data_type());
        if vt.is_some() {
            vector_names.push(field.name().clone());
        }
        columns.insert(field.name().clone(), vt.map(|vt| (vt, vt.fixed_dim)));
    }
    if let Some((name, _)) = columns
        .iter()
        .find(|(_, c)| matches!(c, Some((_, Some(0)))))
    {
        return Err(ApiError::invalid_parameter(
            name,
            format!("vector column {name} has dimension 0"),
        ));
    }

    let roots = reader::root_indices(
        &schema,
        std::iter::once(DOCUMENT_ID).chain(vector_names.iter().map(String::as_str)),
    );
    let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone())
        .with_projection(reader::projection(&meta, roots))
        .build()
        .map_err(|e| parquet_error(e, not_parquet))?;
    let mut row_base = 0usize;
    let mut scratch = Vec::new();
    while let Some(batch) = super::reader::next_checked_batch(&mut stream)
        .await
        .map_err(|e| parquet_error(e, not_parquet))?
    {
        let ids = reader::document_ids(&batch)
            .ok_or_else(|| ApiError::internal("document_id vanished from a projected batch"))?;
        for r in 0..batch.num_rows() {
            match ids.get(r) {
                None => {
                    return Err(ApiError::invalid_request(
                        DOCUMENT_ID,
                        format!("row {} has a null document_id", row_base + r),
                    ));
                }
                Some("") => {
                    return Err(ApiError::invalid_request(
                        DOCUMENT_ID,
                        format!("row {} has an empty document_id", row_base + r),
                    ));
                }
                Some(_) => {}
            }
        }
        for name in &vector_names {
            let Some(view) = batch
                .column_by_name(name)
                .and_then(|c| VectorView::new(c.as_ref()))
            else {
                return Err(ApiError::internal(format!(
                    "vector column {name} could not be viewed"
                )));
            };
            let Some(Some((_, dim))) = columns.get_mut(name) else {
                continue;
            };
            for r in 0..view.len() {
                if view.is_null(r) {
                    continue;
                }
                let doc = ids.get(r).unwrap_or_default();
                let len = view.check(r, &mut scratch).map_err(|p| {
                    ApiError::invalid_parameter(
                        name,
                        format!(
                            "the {name} vector of document {doc:?} contains {}",
                            p.describe()
                        ),
                    )
                })?;
                match *dim {
                    None if len == 0 => {
                        return Err(ApiError::invalid_parameter(
                            name,
                            format!("the {name} vector of document {doc:?} is empty"),
                        ));
                    }
                    None => *dim = Some(len),
                    Some(d) if d != len => {
                        return Err(ApiError::invalid_parameter(
                            name,
                            format!(
                                "the {name} vector of document {doc:?} has {len} values; earlier documents have {d}"
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        row_base += batch.num_rows();
    }
    Ok(StagedUpload { rows, columns })
}

/// The inferred Arrow type of a JSON attribute.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Null,
    Utf8,
    Int,
    Float,
    Bool,
    StrList,
    Struct(BTreeMap<String, Ty>),
}

impl Ty {
    fn name(&self) -> &'static str {
        match self {
            Ty::Null => "null",
            Ty::Utf8 => "string",
            Ty::Int => "integer",
            Ty::Float => "number",
            Ty::Bool => "boolean",
            Ty::StrList => "array of strings",
            Ty::Struct(_) => "object",
        }
    }

    fn of(value: &Value, field: &str) -> ApiResult<Ty> {
        Ok(match value {
            Value::Null => Ty::Null,
            Value::Bool(_) => Ty::Bool,
            Value::Number(n) if n.is_i64() => Ty::Int,
            Value::Number(_) => Ty::Float,
            Value::String(_) => Ty::Utf8,
            Value::Array(items) => {
                if items.iter().all(|v| v.is_string() || v.is_null()) {
                    Ty::StrList
                } else {
                    return Err(ApiError::invalid_request(
                        field,
                        "only arrays of strings are supported as attributes (numeric arrays are vectors)",
                    ));
                }
            }
            Value::Object(map) => {
                let mut fields = BTreeMap::new();
                for (k, v) in map {
                    fields.insert(k.clone(), Ty::of(v, &format!("{field}.{k}"))?);
                }
                Ty::Struct(fields)
            }
        })
    }

    /// Widen `self` to also hold `other`; integers and floats mix as floats (as JSON does
    /// not tell 1 from 1.0 by type); anything else that differs is the caller's mistake.
    fn merge(&mut self, other: Ty, field: &str) -> ApiResult<()> {
        match (&mut *self, other) {
            (_, Ty::Null) => {}
            (Ty::Null, o) => *self = o,
            (Ty::Int, Ty::Float) => *self = Ty::Float,
            (Ty::Float, Ty::Int) => {}
            (Ty::Struct(mine), Ty::Struct(theirs)) => {
                for (k, t) in theirs {
                    let path = format!("{field}.{k}");
                    match mine.get_mut(&k) {
                        Some(m) => m.merge(t, &path)?,
                        None => {
                            mine.insert(k, t);
                        }
                    }
                }
            }
            (a, b) if *a == b => {}
            (a, b) => {
                return Err(ApiError::invalid_request(
                    field,
                    format!(
                        "is {} here but {} in an earlier document",
                        b.name(),
                        a.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parquet cannot store a struct without fields; an always-empty object is stored as a
    /// null string column instead.
    fn settle(self) -> Ty {
        match self {
            Ty::Struct(f) if f.is_empty() => Ty::Null,
            Ty::Struct(f) => Ty::Struct(f.into_iter().map(|(k, t)| (k, t.settle())).collect()),
            t => t,
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Ty::Null | Ty::Utf8 => DataType::Utf8,
            Ty::Int => DataType::Int64,
            Ty::Float => DataType::Float64,
            Ty::Bool => DataType::Boolean,
            Ty::StrList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            Ty::Struct(fields) => DataType::Struct(struct_fields(fields)),
        }
    }

    fn build(&self, values: &[Option<&Value>]) -> ApiResult<ArrayRef> {
        Ok(match self {
            Ty::Null | Ty::Utf8 => Arc::new(StringArray::from_iter(
                values.iter().map(|v| v.and_then(Value::as_str)),
            )),
            Ty::Int => Arc::new(Int64Array::from_iter(
                values.iter().map(|v| v.and_then(Value::as_i64)),
            )),
            Ty::Float => Arc::new(Float64Array::from_iter(
                values.iter().map(|v| v.and_then(Value::as_f64)),
            )),
            Ty::Bool => Arc::new(BooleanArray::from_iter(
                values.iter().map(|v| v.and_then(Value::as_bool)),
            )),
            Ty::StrList => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for v in values {
                    match v.and_then(Value::as_array) {
                        Some(items) => {
                            for item in items {
                                b.values().append_option(item.as_str());
                            }
                            b.append(true);
                        }
                        None => b.append(false),
                    }
                }
                Arc::new(b.finish())
            }
            Ty::Struct(fields) => {
                let objects: Vec<Option<&serde_json::Map<String, Value>>> = values
                    .iter()
                    .map(|v| v.and_then(Value::as_object))
                    .collect();
                let mut children = Vec::with_capacity(fields.len());
                for (k, t) in fields {
                    let child: Vec<Option<&Value>> = objects
                        .iter()
                        .map(|o| o.and_then(|o| o.get(k)).filter(|v| !v.is_null()))
                        .collect();
                    children.push(t.build(&child)?);
                }
                let nulls = NullBuffer::from_iter(objects.iter().map(Option::is_some));
                Arc::new(
                    StructArray::try_new(struct_fields(fields), children, Some(nulls))
                        .map_err(ApiError::internal)?,
                )
            }
        })
    }
}

fn struct_fields(fields: &BTreeMap<String, Ty>) -> Fields {
    fields
        .iter()
        .map(|(k, t)| Field::new(k, t.data_type(), true))
        .collect()
}

/// JSON documents -> one record batch -> Parquet bytes (zstd).
fn documents_to_parquet(docs: &[DocumentRecord]) -> ApiResult<Bytes> {
    let batch = documents_to_batch(docs)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(ApiError::internal)?;
    writer.write(&batch).map_err(ApiError::internal)?;
    writer.close().map_err(ApiError::internal)?;
    Ok(Bytes::from(buf))
}

fn documents_to_batch(docs: &[DocumentRecord]) -> ApiResult<RecordBatch> {
    // Vector column -> dimension, fixed by the first document that has it.
    let mut dims: BTreeMap<&str, usize> = BTreeMap::new();
    let mut attr_types: BTreeMap<&str, Ty> = BTreeMap::new();
    for (i, doc) in docs.iter().enumerate() {
        if doc.document_id.is_empty() {
            return Err(ApiError::invalid_request(
                &format!("documents[{i}].document_id"),
                "must be a non-empty string",
            ));
        }
        for (name, v) in &doc.vectors {
            let field = format!("documents[{i}].{name}");
            if name == DOCUMENT_ID || doc.attributes.contains_key(name) {
                return Err(ApiError::invalid_request(&field, "is given twice"));
            }
            if v.is_empty() {
                return Err(ApiError::invalid_parameter(
                    &field,
                    "a vector must not be empty",
                ));
            }
            if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                return Err(ApiError::invalid_parameter(
                    &field,
                    format!(
                        "value {j} of the {name} vector of document {:?} is NaN or infinite",
                        doc.document_id
                    ),
                ));
            }
            let d = *dims.entry(name.as_str()).or_insert(v.len());
            if d != v.len() {
                return Err(ApiError::invalid_parameter(
                    &field,
                    format!(
                        "the {name} vector of document {:?} has {} values; earlier documents have {d}",
                        doc.document_id,
                        v.len()
                    ),
                ));
            }
        }
        for (name, value) in &doc.attributes {
            let field = format!("documents[{i}].{name}");
            if name == DOCUMENT_ID {
                return Err(ApiError::invalid_request(&field, "is given twice"));
            }
            let ty = Ty::of(value, &field)?;
            attr_types
                .entry(name.as_str())
                .or_insert(Ty::Null)
                .merge(ty, &field)?;
        }
    }
    if let Some((name, i)) = dims.keys().find_map(|n| {
        docs.iter()
            .position(|d| d.attributes.contains_key(*n))
            .map(|i| (*n, i))
    }) {
        return Err(ApiError::invalid_request(
            &format!("documents[{i}].{name}"),
            format!("{name} is a vector in one document and an attribute in another"),
        ));
    }

    let mut fields = vec![Field::new(DOCUMENT_ID, DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
        docs.iter().map(|d| d.document_id.as_str()),
    ))];
    for (name, &dim) in &dims {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let mut values = Vec::with_capacity(docs.len() * dim);
        let mut valid = Vec::with_capacity(docs.len());
        for doc in docs {
            match doc.vectors.get(*name) {
                Some(v) => {
                    values.extend_from_slice(v);
                    valid.push(true);
                }
                None => {
                    // A null row still occupies `dim` child slots in a FixedSizeList.
                    values.extend(std::iter::repeat_n(0.0f32, dim));
                    valid.push(false);
                }
            }
        }
        let size = i32::try_from(dim).map_err(|_| {
            ApiError::invalid_parameter(&format!("documents[0].{name}"), "the vector is too long")
        })?;
        let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
        let array = FixedSizeListArray::try_new(
            Arc::clone(&item),
            size,
            Arc::new(Float32Array::from(values)),
            nulls,
        )
        .map_err(ApiError::internal)?;
        fields.push(Field::new(*name, array.data_type().clone(), true));
        columns.push(Arc::new(array));
    }
    for (name, ty) in attr_types {
        let ty = ty.settle();
        let values: Vec<Option<&Value>> = docs
            .iter()
            .map(|d| d.attributes.get(name).filter(|v| !v.is_null()))
            .collect();
        fields.push(Field::new(name, ty.data_type(), true));
        columns.push(ty.build(&values)?);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(ApiError::internal)
}
