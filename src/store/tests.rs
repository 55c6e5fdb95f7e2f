//! Specs of the store, over a local directory per test and real Parquet files.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeListBuilder, Float16Builder, Float32Builder, Float64Builder, LargeListBuilder,
    ListBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use bytes::Bytes;
use futures::TryStreamExt;
use half::f16;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use super::*;
use crate::model::{DeviceKind, DocumentRecord, ErrorCode, RunContext};
use crate::store::test_support::{scope, temp_store};

fn ctx() -> RunContext {
    RunContext::new(0, DeviceKind::Cpu)
}

fn doc(id: &str, v: &[f32], attrs: serde_json::Value) -> DocumentRecord {
    let mut vectors = BTreeMap::new();
    vectors.insert("embedding".to_owned(), v.to_vec());
    let attributes = match attrs {
        serde_json::Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    DocumentRecord {
        document_id: id.to_owned(),
        vectors,
        attributes,
    }
}

fn req(ids: &[&str], vector: Option<&str>) -> LoadRequest {
    LoadRequest {
        collection_ids: ids.iter().map(|s| s.to_string()).collect(),
        vector_column: vector.map(str::to_owned),
        attributes: Vec::new(),
        attribute_fields: Vec::new(),
        sample_size: None,
        seed: 0,
        document_ids: None,
        document_ids_field: "document_ids".to_owned(),
        limits: LoadLimits::default(),
    }
}

fn parquet(columns: Vec<(&str, ArrayRef)>, row_group: Option<usize>) -> Bytes {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let mut props = WriterProperties::builder();
    if let Some(n) = row_group {
        props = props.set_max_row_group_row_count(Some(n));
    }
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.build())).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Bytes::from(buf)
}

fn ids(ids: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(ids.to_vec()))
}

fn fixed_f32(rows: &[Option<Vec<f32>>], dim: i32) -> ArrayRef {
    let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim);
    for r in rows {
        match r {
            Some(v) => {
                b.values().append_slice(v);
                b.append(true);
            }
            None => {
                b.values().append_slice(&vec![0.0; dim as usize]);
                b.append(false);
            }
        }
    }
    Arc::new(b.finish())
}

fn embeddings(n: usize, dim: usize) -> Vec<Option<Vec<f32>>> {
    (0..n)
        .map(|i| Some((0..dim).map(|j| (i * dim + j) as f32).collect()))
        .collect()
}

async fn put_raw(store: &Store, collection: &str, name: &str, body: Bytes) {
    let key = Path::from(format!(
        "int_abc123/production/collections/{collection}/{name}"
    ));
    store.inner.put(&key, body.into()).await.unwrap();
}

async fn staging_objects(store: &Store) -> usize {
    let prefix = Path::from("int_abc123/production/_staging");
    let all: Vec<_> = store.inner.list(Some(&prefix)).try_collect().await.unwrap();
    all.len()
}

#[tokio::test]
async fn upload_then_load_round_trips_vectors() {
    let store = temp_store("roundtrip");
    let s = scope();
    let summary = store
        .upload_documents(
            &s,
            "c1",
            vec![
                doc("a", &[1.0, 2.0, 3.0], json!({"category": "x"})),
                doc("b", &[4.0, 5.0, 6.0], json!({"category": "y"})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(summary.documents, 2);
    assert!(
        summary
            .part_key
            .starts_with("int_abc123/production/collections/c1/part-")
    );
    let out = store
        .load(&s, &req(&["c1"], Some("embedding")), &ctx())
        .await
        .unwrap();
    assert_eq!(out.document_ids, vec!["a", "b"]);
    assert_eq!(out.collection_index, vec![0, 0]);
    assert_eq!(out.vector_dimension, Some(3));
    assert_eq!(out.total_documents, 2);
    assert_eq!(
        out.vectors.unwrap().as_slice(),
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert_eq!(staging_objects(&store).await, 0);
}

#[tokio::test]
async fn reupload_replaces_document_latest_part_wins() {
    let store = temp_store("latest");
    let s = scope();
    store
        .upload_documents(
            &s,
            "c1",
            vec![
                doc("a", &[1.0, 1.0], json!({})),
                doc("b", &[2.0, 2.0], json!({})),
            ],
        )
        .await
        .unwrap();
    // Same millisecond prefixes would still order by the random suffix; wait to be sure the
    // second part sorts after the first.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store
        .upload_documents(&s, "c1", vec![doc("a", &[9.0, 9.0], json!({}))])
        .await
        .unwrap();
    let out = store
        .load(&s, &req(&["c1"], Some("embedding")), &ctx())
        .await
        .unwrap();
    assert_eq!(out.total_documents, 2);
    assert_eq!(out.document_ids, vec!["b", "a"]);
    assert_eq!(out.vectors.unwrap().as_slice(), &[2.0, 2.0, 9.0, 9.0]);
    let page = store.list_collections(&s, 10, None).await.unwrap();
    assert_eq!(page.collections[0].rows, 3);
    assert_eq!(page.collections[0].parts, 2);
}

#[tokio::test]
async fn rejects_dimension_conflict_with_409() {
    let store = temp_store("conflict");
    let s = scope();
    store
        .upload_documents(&s, "c1", vec![doc("a", &[1.0, 2.0, 3.0], json!({}))])
        .await
        .unwrap();
    let err = store
        .upload_documents(&s, "c1", vec![doc("b", &[1.0, 2.0], json!({}))])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(
        err.message.contains("embedding") && err.message.contains('3') && err.message.contains('2'),
        "{err}"
    );

    // Same dimension, other element type.
    let mut b = ListBuilder::new(Float64Builder::new());
    b.values().append_slice(&[1.0, 2.0, 3.0]);
    b.append(true);
    let body = parquet(
        vec![
            ("document_id", ids(&["c"])),
            ("embedding", Arc::new(b.finish())),
        ],
        None,
    );
    let err = store.upload_parquet(&s, "c1", body).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert!(
        err.message.contains("float32") && err.message.contains("float64"),
        "{err}"
    );
    assert_eq!(staging_objects(&store).await, 0);
}

#[tokio::test]
async fn rejects_non_parquet_body() {
    let store = temp_store("notparquet");
    let s = scope();
    let err = store
        .upload_parquet(&s, "c1", Bytes::from_static(b"document_id,x\n"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    let err = store
        .upload_parquet(
            &s,
            "c1",
            Bytes::from_static(b"PAR1 this is not really parquet PAR1"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(err.field.as_deref(), Some("body"));
}

#[tokio::test]
async fn loads_fixed_size_and_list_vectors_of_f16_f32_f64() {
    let store = temp_store("types");
    let s = scope();
    let mut h = FixedSizeListBuilder::new(Float16Builder::new(), 2);
    h.values()
        .append_slice(&[f16::from_f32(0.5), f16::from_f32(1.5)]);
    h.append(true);
    let mut l = ListBuilder::new(Float32Builder::new());
    l.values().append_slice(&[2.0, 3.0]);
    l.append(true);
    let mut ll = LargeListBuilder::new(Float64Builder::new());
    ll.values().append_slice(&[4.0, 5.0]);
    ll.append(true);
    for (c, arr) in [
        ("h", Arc::new(h.finish()) as ArrayRef),
        ("l", Arc::new(l.finish())),
        ("ll", Arc::new(ll.finish())),
    ] {
        let body = parquet(vec![("document_id", ids(&[c])), ("vec", arr)], None);
        store.upload_parquet(&s, c, body).await.unwrap();
    }
    let out = store
        .load(&s, &req(&["h", "l", "ll"], Some("vec")), &ctx())
        .await
        .unwrap();
    assert_eq!(out.document_ids, vec!["h", "l", "ll"]);
    assert_eq!(out.collection_index, vec![0, 1, 2]);
    assert_eq!(
        out.vectors.unwrap().as_slice(),
        &[0.5, 1.5, 2.0, 3.0, 4.0, 5.0]
    );
    let page = store.list_collections(&s, 10, None).await.unwrap();
    let types: Vec<_> = page
        .collections
        .iter()
        .map(|c| {
            (
                c.vector_columns[0].element_type.clone(),
                c.vector_columns[0].dimension,
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("float16".into(), 2),
            ("float32".into(), 2),
            ("float64".into(), 2)
        ]
    );
}

async fn hundred(store: &Store, s: &Scope) {
    let names: Vec<String> = (0..100).map(|i| format!("d{i:03}")).collect();
    let id_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Small row groups so that sampling skips whole groups and selects inside others.
    let body = parquet(
        vec![
            ("document_id", ids(&id_refs)),
            ("embedding", fixed_f32(&embeddings(100, 2), 2)),
        ],
        Some(16),
    );
    store.upload_parquet(s, "big", body).await.unwrap();
}

#[tokio::test]
async fn sample_is_seeded_and_reproducible() {
    let store = temp_store("sample");
    let s = scope();
    hundred(&store, &s).await;
    let mut r = req(&["big"], Some("embedding"));
    r.sample_size = Some(10);
    r.seed = 42;
    let a = store.load(&s, &r, &ctx()).await.unwrap();
    let b = store.load(&s, &r, &ctx()).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(a.document_ids.len(), 10);
    assert_eq!(a.total_documents, 100);
    let mut sorted = a.document_ids.clone();
    sorted.sort();
    assert_eq!(sorted, a.document_ids, "kept in file order");
    let m = a.vectors.unwrap();
    for (row, id) in a.document_ids.iter().enumerate() {
        let i: usize = id[1..].parse().unwrap();
        assert_eq!(m.row(row), &[(2 * i) as f32, (2 * i + 1) as f32], "{id}");
    }
}

#[tokio::test]
async fn sample_differs_by_seed() {
    let store = temp_store("seed");
    let s = scope();
    hundred(&store, &s).await;
    let mut r = req(&["big"], Some("embedding"));
    r.sample_size = Some(10);
    r.seed = 1;
    let a = store.load(&s, &r, &ctx()).await.unwrap();
    r.seed = 2;
    let b = store.load(&s, &r, &ctx()).await.unwrap();
    assert_ne!(a.document_ids, b.document_ids);
    r.sample_size = Some(1000);
    let all = store.load(&s, &r, &ctx()).await.unwrap();
    assert_eq!(all.document_ids.len(), 100);
}

#[tokio::test]
async fn dimension_mismatch_across_collections_names_both() {
    let store = temp_store("dims");
    let s = scope();
    store
        .upload_documents(&s, "three", vec![doc("a", &[1.0, 2.0, 3.0], json!({}))])
        .await
        .unwrap();
    store
        .upload_documents(&s, "two", vec![doc("b", &[1.0, 2.0], json!({}))])
        .await
        .unwrap();
    let err = store
        .load(&s, &req(&["three", "two"], Some("embedding")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert_eq!(err.field.as_deref(), Some("collection_ids"));
    for needle in ["three", "two", "3", "2"] {
        assert!(err.message.contains(needle), "{err}");
    }
    // List vectors carry the dimension in the data only.
    let mut l = ListBuilder::new(Float32Builder::new());
    l.values().append_slice(&[2.0, 3.0]);
    l.append(true);
    store
        .upload_parquet(
            &s,
            "list2",
            parquet(
                vec![
                    ("document_id", ids(&["x"])),
                    ("embedding", Arc::new(l.finish())),
                ],
                None,
            ),
        )
        .await
        .unwrap();
    let err = store
        .load(&s, &req(&["three", "list2"], Some("embedding")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("collection_ids"));
    assert!(
        err.message.contains("three") && err.message.contains("list2"),
        "{err}"
    );
}

#[tokio::test]
async fn nan_vector_names_document() {
    let store = temp_store("nan");
    let s = scope();
    let body = parquet(
        vec![
            ("document_id", ids(&["ok", "bad"])),
            (
                "embedding",
                fixed_f32(&[Some(vec![1.0, 2.0]), Some(vec![f32::NAN, 1.0])], 2),
            ),
        ],
        None,
    );
    let err = store
        .upload_parquet(&s, "c1", body.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert!(
        err.message.contains("\"bad\"") && err.message.contains("embedding"),
        "{err}"
    );

    // A file dropped in the prefix is not validated on the way in: loading names it.
    put_raw(&store, "c1", "dropped.parquet", body).await;
    let err = store
        .load(&s, &req(&["c1"], Some("embedding")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert_eq!(err.field.as_deref(), Some("config.feature_vector"));
    assert!(err.message.contains("\"bad\""), "{err}");

    let err = store
        .upload_documents(&s, "c2", vec![doc("a", &[1.0, f32::INFINITY], json!({}))])
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert_eq!(err.field.as_deref(), Some("documents[0].embedding"));
}

#[tokio::test]
async fn null_vector_is_rejected_at_load() {
    let store = temp_store("nullvec");
    let s = scope();
    let mut other = doc("b", &[], json!({}));
    other.vectors.clear();
    other.vectors.insert("other".into(), vec![1.0]);
    store
        .upload_documents(&s, "c1", vec![doc("a", &[1.0, 2.0], json!({})), other])
        .await
        .unwrap();
    let err = store
        .load(&s, &req(&["c1"], Some("embedding")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("config.feature_vector"));
    assert!(err.message.contains("\"b\""), "{err}");
}

#[tokio::test]
async fn missing_vector_column_is_not_found() {
    let store = temp_store("missingvec");
    let s = scope();
    store
        .upload_documents(&s, "c1", vec![doc("a", &[1.0], json!({"category": "x"}))])
        .await
        .unwrap();
    let err = store
        .load(&s, &req(&["c1"], Some("nope")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(err.field.as_deref(), Some("config.feature_vector"));
    assert!(
        err.message.contains("nope") && err.message.contains("c1"),
        "{err}"
    );
    let err = store
        .load(&s, &req(&["c1"], Some("category")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert_eq!(err.field.as_deref(), Some("config.feature_vector"));
    let err = store
        .load(&s, &req(&["c1", "ghost"], Some("embedding")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(err.field.as_deref(), Some("collection_ids[1]"));
}

#[tokio::test]
async fn nested_attribute_by_dotted_path() {
    let store = temp_store("attrs");
    let s = scope();
    store
        .upload_documents(
            &s,
            "c1",
            vec![
                doc("a", &[1.0], json!({"metadata": {"status": "active", "n": 1}, "tags": ["x", "y"], "price": 2.5})),
                doc("b", &[2.0], json!({"metadata": {"n": 2.5}, "tags": null, "price": 3})),
                doc("c", &[3.0], json!({"flag": true})),
            ],
        )
        .await
        .unwrap();
    let mut r = req(&["c1"], None);
    r.attributes = vec![
        "metadata.status".into(),
        "tags".into(),
        "metadata.n".into(),
        "price".into(),
        "flag".into(),
    ];
    let out = store.load(&s, &r, &ctx()).await.unwrap();
    assert!(out.vectors.is_none());
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(out.attributes[0], vec![v(&["active"]), v(&[]), v(&[])]);
    assert_eq!(out.attributes[1], vec![v(&["x", "y"]), v(&[]), v(&[])]);
    assert_eq!(out.attributes[2], vec![v(&["1"]), v(&["2.5"]), v(&[])]);
    assert_eq!(out.attributes[3], vec![v(&["2.5"]), v(&["3"]), v(&[])]);
    assert_eq!(out.attributes[4], vec![v(&[]), v(&[]), v(&["true"])]);

    r.attributes = vec!["price".into(), "metadata.missing".into()];
    let err = store.load(&s, &r, &ctx()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(
        err.field.as_deref(),
        Some("config.attribute_config.attributes[1]")
    );
    r.attributes = vec!["metadata".into()];
    let err = store.load(&s, &r, &ctx()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert!(err.message.contains("status"), "{err}");
}

#[tokio::test]
async fn json_type_conflict_names_document_key() {
    let store = temp_store("jsontypes");
    let s = scope();
    let err = store
        .upload_documents(
            &s,
            "c1",
            vec![
                doc("a", &[1.0], json!({"category": "x"})),
                doc("b", &[1.0], json!({"category": true})),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(err.field.as_deref(), Some("documents[1].category"));
    let err = store
        .upload_documents(
            &s,
            "c1",
            vec![
                doc("a", &[1.0, 2.0], json!({})),
                doc("b", &[1.0], json!({})),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert_eq!(err.field.as_deref(), Some("documents[1].embedding"));
    let err = store
        .upload_documents(&s, "c1", vec![doc("", &[1.0], json!({}))])
        .await
        .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("documents[0].document_id"));
    let err = store.upload_documents(&s, "c1", vec![]).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn rejects_null_document_id_and_empty_upload() {
    let store = temp_store("nullid");
    let s = scope();
    let ids_arr: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
    let body = parquet(
        vec![
            ("document_id", ids_arr),
            ("embedding", fixed_f32(&embeddings(2, 2), 2)),
        ],
        None,
    );
    let err = store.upload_parquet(&s, "c1", body).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(err.field.as_deref(), Some("document_id"));
    let body = parquet(vec![("id", ids(&["a"]))], None);
    let err = store.upload_parquet(&s, "c1", body).await.unwrap_err();
    assert_eq!(err.field.as_deref(), Some("document_id"));
    let body = parquet(vec![("document_id", ids(&[]))], None);
    let err = store.upload_parquet(&s, "c1", body).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert_eq!(staging_objects(&store).await, 0);
}

#[tokio::test]
async fn list_collections_pages() {
    let store = temp_store("list");
    let s = scope();
    for c in ["c3", "c1", "c2"] {
        store
            .upload_documents(&s, c, vec![doc("a", &[1.0, 2.0], json!({"category": "x"}))])
            .await
            .unwrap();
    }
    let p1 = store.list_collections(&s, 2, None).await.unwrap();
    let names: Vec<_> = p1
        .collections
        .iter()
        .map(|c| c.collection_id.as_str())
        .collect();
    assert_eq!(names, vec!["c1", "c2"]);
    assert_eq!(p1.next_page_token.as_deref(), Some("c2"));
    let info = &p1.collections[0];
    assert_eq!((info.parts, info.rows), (1, 1));
    assert!(info.bytes > 0);
    assert_eq!(
        info.vector_columns,
        vec![VectorColumnInfo {
            name: "embedding".into(),
            dimension: 2,
            element_type: "float32".into()
        }]
    );
    assert_eq!(info.attribute_columns, vec!["category".to_string()]);
    let p2 = store
        .list_collections(&s, 2, p1.next_page_token.as_deref())
        .await
        .unwrap();
    let names: Vec<_> = p2
        .collections
        .iter()
        .map(|c| c.collection_id.as_str())
        .collect();
    assert_eq!(names, vec!["c3"]);
    assert_eq!(p2.next_page_token, None);
    let other = Scope::new("int_abc123", "staging").unwrap();
    assert!(
        store
            .list_collections(&other, 10, None)
            .await
            .unwrap()
            .collections
            .is_empty()
    );
}

#[tokio::test]
async fn delete_collection_then_not_found() {
    let store = temp_store("delete");
    let s = scope();
    store
        .upload_documents(&s, "c1", vec![doc("a", &[1.0], json!({}))])
        .await
        .unwrap();
    store.delete_collection(&s, "c1").await.unwrap();
    let err = store
        .load(&s, &req(&["c1"], Some("embedding")), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(err.field.as_deref(), Some("collection_ids[0]"));
    let err = store.delete_collection(&s, "c1").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(
        store
            .list_collections(&s, 10, None)
            .await
            .unwrap()
            .collections
            .is_empty()
    );
}

#[tokio::test]
async fn staging_is_cleaned_after_failed_upload() {
    let store = temp_store("staging");
    let s = scope();
    let _ = store
        .upload_parquet(&s, "c1", Bytes::from_static(b"PAR1 garbage garbage PAR1"))
        .await;
    let _ = store
        .upload_parquet(
            &s,
            "c1",
            parquet(
                vec![
                    ("document_id", ids(&["a"])),
                    ("embedding", fixed_f32(&[Some(vec![f32::NAN])], 1)),
                ],
                None,
            ),
        )
        .await;
    assert_eq!(staging_objects(&store).await, 0);
    assert!(
        store
            .list_collections(&s, 10, None)
            .await
            .unwrap()
            .collections
            .is_empty()
    );
}

#[tokio::test]
async fn user_dropped_parts_are_read_in_key_order() {
    let store = temp_store("dropped");
    let s = scope();
    put_raw(
        &store,
        "c1",
        "a.parquet",
        parquet(
            vec![
                ("document_id", ids(&["x", "y"])),
                ("embedding", fixed_f32(&embeddings(2, 1), 1)),
            ],
            None,
        ),
    )
    .await;
    put_raw(
        &store,
        "c1",
        "b.parquet",
        parquet(
            vec![
                ("document_id", ids(&["x"])),
                ("embedding", fixed_f32(&[Some(vec![7.0])], 1)),
            ],
            None,
        ),
    )
    .await;
    put_raw(&store, "c1", "_SUCCESS", Bytes::from_static(b"")).await;
    let out = store
        .load(&s, &req(&["c1"], Some("embedding")), &ctx())
        .await
        .unwrap();
    assert_eq!(out.document_ids, vec!["y", "x"]);
    assert_eq!(out.vectors.unwrap().as_slice(), &[1.0, 7.0]);
}

#[tokio::test]
async fn cancelled_run_stops_loading() {
    let store = temp_store("cancel");
    let s = scope();
    hundred(&store, &s).await;
    let c = ctx();
    c.cancel_token().cancel();
    let err = store
        .load(&s, &req(&["big"], Some("embedding")), &c)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Cancelled);
}

#[test]
fn open_accepts_paths_and_rejects_unknown_schemes() {
    assert!(matches!(
        Store::open("ftp://x/y"),
        Err(StoreError::UnsupportedScheme(_))
    ));
    let dir = std::env::temp_dir().join(format!("clusterd-store-open-{}", std::process::id()));
    let store = Store::open(&format!("file://{}", dir.display())).unwrap();
    assert!(
        store.describe().starts_with("local:/"),
        "{}",
        store.describe()
    );
    assert!(dir.is_dir());
}

/// The gRPC layer's `async_trait` needs every public future to be `Send`.
#[allow(dead_code)]
fn public_futures_are_send(store: &Store, s: &Scope, r: &LoadRequest, c: &RunContext) {
    fn send<T: Send>(_: T) {}
    send(store.load(s, r, c));
    send(store.list_collections(s, 1, None));
    send(store.delete_collection(s, "c"));
    send(store.upload_parquet(s, "c", Bytes::new()));
    send(store.upload_documents(s, "c", Vec::new()));
}

/// Two collections: one part with an offset index and more rows than a read window (in
/// two row groups), one part without (pyarrow's default layout), one re-upload replacing
/// rows of the first.
async fn remainder_fixture(store: &Store) -> usize {
    let big = 40_000usize;
    let names: Vec<String> = (0..big).map(|i| format!("a{i:06}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let rows: Vec<Option<Vec<f32>>> = (0..big).map(|i| Some(vec![i as f32, 1.0])).collect();
    put_raw(
        store,
        "a",
        "part-1.parquet",
        parquet(
            vec![
                ("document_id", ids(&refs)),
                ("embedding", fixed_f32(&rows, 2)),
            ],
            Some(25_000),
        ),
    )
    .await;
    // Re-uploaded documents: the later part wins.
    put_raw(
        store,
        "a",
        "part-2.parquet",
        parquet(
            vec![
                ("document_id", ids(&["a000003", "a039999"])),
                (
                    "embedding",
                    fixed_f32(&[Some(vec![-3.0, 2.0]), Some(vec![-4.0, 2.0])], 2),
                ),
            ],
            None,
        ),
    )
    .await;
    let small: Vec<String> = (0..500).map(|i| format!("b{i:04}")).collect();
    let refs: Vec<&str> = small.iter().map(String::as_str).collect();
    let rows: Vec<Option<Vec<f32>>> = (0..500).map(|i| Some(vec![i as f32, 3.0])).collect();
    let props = WriterProperties::builder()
        .set_offset_index_disabled(true)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
        .build();
    let batch = RecordBatch::try_from_iter(vec![
        ("document_id", ids(&refs)),
        ("embedding", fixed_f32(&rows, 2)),
    ])
    .unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    put_raw(store, "b", "part-1.parquet", Bytes::from(buf)).await;
    big + 500
}

/// The vector a remainder fixture document must come back with.
fn remainder_vector(id: &str) -> Vec<f32> {
    let n: f32 = id[1..].parse().unwrap();
    match id {
        "a000003" => vec![-3.0, 2.0],
        "a039999" => vec![-4.0, 2.0],
        _ if id.starts_with('a') => vec![n, 1.0],
        _ => vec![n, 3.0],
    }
}

#[tokio::test]
async fn the_remainder_of_a_sample_streams_every_other_document_once_in_bounded_batches() {
    let store = temp_store("remainder");
    let s = scope();
    let total = remainder_fixture(&store).await;
    let mut r = req(&["a", "b"], Some("embedding"));
    r.sample_size = Some(1_000);
    r.seed = 11;
    let (loaded, rest) = store
        .load_with_remainder(&s, &r, true, &ctx())
        .await
        .unwrap();
    assert_eq!(loaded.document_ids.len(), 1_000);
    assert_eq!(loaded.total_documents, total);
    let mut rest = rest.expect("a sample leaves documents out");
    assert_eq!(rest.remaining(), total - 1_000);

    let mut seen: std::collections::HashSet<String> = loaded.document_ids.iter().cloned().collect();
    let vectors = loaded.vectors.as_ref().unwrap();
    for (i, id) in loaded.document_ids.iter().enumerate() {
        assert_eq!(vectors.row(i), remainder_vector(id).as_slice(), "{id}");
    }
    let mut batches = 0;
    while let Some(b) = rest.next_batch(3_000, &ctx()).await.unwrap() {
        batches += 1;
        // At least what was asked unless the end came; a reader batch may overshoot.
        assert!(
            b.document_ids.len() <= 3_000 + 1_024,
            "{}",
            b.document_ids.len()
        );
        assert_eq!(b.vectors.rows(), b.document_ids.len());
        assert_eq!(b.collection_index.len(), b.document_ids.len());
        for (i, id) in b.document_ids.iter().enumerate() {
            assert_eq!(b.vectors.row(i), remainder_vector(id).as_slice(), "{id}");
            let want = u32::from(id.starts_with('b'));
            assert_eq!(b.collection_index[i], want, "{id}");
            assert!(seen.insert(id.clone()), "{id} came twice");
        }
    }
    assert_eq!(
        seen.len(),
        total,
        "every document, sampled or not, exactly once"
    );
    assert!(batches >= (total - 1_000) / (3_000 + 1_024));
    assert_eq!(rest.remaining(), 0);
}

#[test]
fn windows_cut_indexed_parts_by_file_rows_and_the_others_by_row_group() {
    let kept: Vec<(usize, String)> = [0, 5, 16_383, 16_384, 20_000, 24_999, 25_000, 39_999]
        .into_iter()
        .map(|r| (r, String::new()))
        .collect();
    let mk = |offset_index: bool| {
        let rows: Vec<Option<Vec<f32>>> = (0..40_000).map(|i| Some(vec![i as f32])).collect();
        let names: Vec<String> = (0..40_000).map(|i| format!("d{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("document_id", ids(&refs)),
            ("embedding", fixed_f32(&rows, 1)),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(25_000))
            .set_offset_index_disabled(!offset_index)
            .set_statistics_enabled(if offset_index {
                parquet::file::properties::EnabledStatistics::Page
            } else {
                parquet::file::properties::EnabledStatistics::Chunk
            })
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        parquet::arrow::arrow_reader::ArrowReaderMetadata::load(
            &Bytes::from(buf),
            Default::default(),
        )
        .unwrap()
    };
    // Indexed: windows at 16384 within the first group (0..25000), then 25000..40000.
    assert_eq!(
        super::load::windows(&mk(true), &kept),
        vec![0..3, 3..6, 6..8]
    );
    // Not indexed: one range per row group.
    assert_eq!(super::load::windows(&mk(false), &kept), vec![0..6, 6..8]);
}

#[tokio::test]
async fn a_run_above_its_limits_is_refused_before_reading_vectors_naming_sample_size() {
    let store = temp_store("limits");
    let s = scope();
    hundred(&store, &s).await;
    let mut r = req(&["big"], Some("embedding"));
    r.limits = LoadLimits {
        max_documents: Some(40),
        max_bytes: None,
        bytes_per_value: 8,
    };
    let e = store.load(&s, &r, &ctx()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    assert_eq!(e.field.as_deref(), Some("sample_size"));
    assert!(
        e.message.contains("100 documents") && e.message.contains("at most 40"),
        "{}",
        e.message
    );
    r.sample_size = Some(40);
    assert_eq!(
        store.load(&s, &r, &ctx()).await.unwrap().document_ids.len(),
        40
    );

    // The memory estimate: 100 documents of 2 values at 8 bytes + 96 bytes each = 11 200.
    r.sample_size = None;
    r.limits = LoadLimits {
        max_documents: None,
        max_bytes: Some(10_000),
        bytes_per_value: 8,
    };
    assert_eq!(r.limits.estimate(100, 2), 11_200);
    let e = store.load(&s, &r, &ctx()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    assert_eq!(e.field.as_deref(), Some("sample_size"));
    assert!(
        e.message.contains("10.9 KiB") && e.message.contains("at most 89"),
        "{}",
        e.message
    );
    r.sample_size = Some(89);
    assert!(store.load(&s, &r, &ctx()).await.is_ok());
}

/// A part that reached the store without the upload's checks (written by another tool into
/// the collection's folder) whose pages make parquet 60 panic while decoding (the fuzzer's
/// dictionary key past a fixed-length dictionary): the listing still answers (it decoded
/// the first vector to learn the dimension: that panic was a 500), and a run fails naming
/// the collection and the part, as for any corrupt part. (This file's run fails at its page
/// index already; the run's batch reads carry the same panic guard as the upload's.)
#[tokio::test]
async fn a_stored_part_whose_pages_make_the_decoder_panic_is_listed_and_fails_runs_naming_it() {
    let bytes =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "fuzz/regressions/documents_parquet/dictionary_key_past_a_fixed_length_dictionary",
        ))
        .unwrap();
    let store = temp_store("decoder-panic");
    let s = scope();
    put_raw(
        &store,
        "c1",
        "part-0000000000001-0badf00d.parquet",
        Bytes::from(bytes),
    )
    .await;
    let info = store
        .list_collections(&s, 10, None)
        .await
        .unwrap()
        .collections
        .into_iter()
        .next()
        .expect("the part's footer is readable");
    let mut vectors: Vec<Option<String>> = info
        .vector_columns
        .into_iter()
        .map(|v| Some(v.name))
        .collect();
    if vectors.is_empty() {
        vectors.push(None);
    }
    let mut refused = 0;
    for vector in vectors {
        let mut r = req(&["c1"], vector.as_deref());
        r.attributes = info.attribute_columns.clone();
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        let load = tokio::spawn({
            let store = store.clone();
            let s = s.clone();
            async move { store.load(&s, &r, &ctx).await.map(|_| ()) }
        });
        let answer = load.await.expect("the load answers instead of panicking");
        if let Err(e) = answer {
            assert_ne!(e.code, ErrorCode::Internal, "{e:?}");
            assert_eq!(e.field.as_deref(), Some("collection_ids[0]"), "{e:?}");
            refused += 1;
        }
    }
    assert!(refused > 0, "no read of the corrupt part was refused");
}

/// The same corrupt part as the newest of a collection: an upload whose vector column it
/// shares cannot be checked against it, and is refused naming the collection and the part
/// (409), not answered 500.
#[tokio::test]
async fn an_upload_onto_a_newest_part_that_does_not_decode_is_a_conflict_naming_the_part() {
    let bytes =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "fuzz/regressions/documents_parquet/dictionary_key_past_a_fixed_length_dictionary",
        ))
        .unwrap();
    let store = temp_store("corrupt-newest");
    let s = scope();
    put_raw(
        &store,
        "c1",
        "part-0000000000001-0badf00d.parquet",
        Bytes::from(bytes),
    )
    .await;
    // The corrupt part's `v16` (a list of float16, whose dictionary page is the corrupt
    // one): the same column type reaches the dimension check, which decodes the part's
    // first vector.
    let mut v16 = ListBuilder::new(Float16Builder::new());
    v16.values()
        .append_slice(&[f16::from_f32(1.0), f16::from_f32(2.0)]);
    v16.append(true);
    let body = parquet(
        vec![
            ("document_id", ids(&["d1"])),
            ("v16", Arc::new(v16.finish())),
        ],
        None,
    );
    let e = store.upload_parquet(&s, "c1", body).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
    assert_eq!(e.field.as_deref(), Some("collection_id"), "{e:?}");
    assert!(
        e.message.contains("part-0000000000001-0badf00d.parquet"),
        "{e:?}"
    );
}
