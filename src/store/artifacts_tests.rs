//! Specs of the result files: written through the store, read back with parquet's own
//! Arrow reader, as a pyarrow/polars/DuckDB user would see them.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatchReader};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::model::ErrorCode;
use crate::store::run_key;
use crate::store::test_support::{scope, temp_store};

const RUN: &str = "run_ffffffffff0000000001";

async fn read_object(store: &Store, key: &str) -> Bytes {
    store
        .inner
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

/// The whole file as one batch (the reader's batches span row groups), plus its schema.
async fn read_back(store: &Store, key: &str) -> (SchemaRef, RecordBatch) {
    let bytes = read_object(store, key).await;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    let schema = reader.schema();
    let mut batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    (schema, batches.remove(0))
}

fn names(schema: &SchemaRef) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

fn utf8(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

fn cluster(id: &str, size: u64, centroid: Vec<f32>) -> ClusterRow {
    ClusterRow {
        cluster_id: id.to_owned(),
        label: None,
        size,
        centroid,
        keywords: Vec::new(),
        summary: None,
        parent_cluster_id: None,
        level: None,
        vector_name: Some("embedding".to_owned()),
    }
}

#[tokio::test]
async fn clusters_parquet_schema_and_values_read_back() {
    let store = temp_store("clusters");
    let s = scope();
    let mut a = cluster("cluster_001", 7, vec![1.0, 2.0, 3.0]);
    a.label = Some("Shoes".to_owned());
    a.keywords = vec!["running".to_owned(), "trail".to_owned()];
    a.summary = Some("Footwear".to_owned());
    a.level = Some(0);
    let mut b = cluster("cluster_002", 3, Vec::new());
    b.parent_cluster_id = Some("cluster_001".to_owned());
    b.level = Some(1);
    b.vector_name = None;
    let rows = vec![a, b];
    let key = store.write_clusters(&s, RUN, &rows, 3).await.unwrap();
    assert_eq!(key, run_key(&s, RUN, "clusters.parquet"));

    let (schema, batch) = read_back(&store, &key).await;
    assert_eq!(
        names(&schema),
        [
            "cluster_id",
            "label",
            "size",
            "centroid",
            "keywords",
            "summary",
            "parent_cluster_id",
            "level",
            "vector_name"
        ]
    );
    let field = |n: &str| schema.field_with_name(n).unwrap().clone();
    assert_eq!(field("cluster_id").data_type(), &DataType::Utf8);
    assert!(!field("cluster_id").is_nullable());
    assert_eq!(field("size").data_type(), &DataType::Int64);
    assert!(!field("size").is_nullable());
    assert_eq!(
        field("centroid").data_type(),
        &DataType::FixedSizeList(f32_item(), 3)
    );
    assert_eq!(
        field("keywords").data_type(),
        &DataType::List(string_item())
    );
    assert!(!field("keywords").is_nullable());
    assert_eq!(field("level").data_type(), &DataType::Int32);

    assert_eq!(batch.num_rows(), 2);
    assert_eq!(
        utf8(&batch, "cluster_id"),
        [
            Some("cluster_001".to_owned()),
            Some("cluster_002".to_owned())
        ]
    );
    assert_eq!(utf8(&batch, "label"), [Some("Shoes".to_owned()), None]);
    let sizes = batch
        .column_by_name("size")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(sizes.values().to_vec(), [7, 3]);
    let centroid = batch
        .column_by_name("centroid")
        .unwrap()
        .as_fixed_size_list();
    assert!(centroid.is_valid(0));
    assert!(centroid.is_null(1));
    assert_eq!(
        centroid
            .value(0)
            .as_primitive::<Float32Type>()
            .values()
            .to_vec(),
        [1.0, 2.0, 3.0]
    );
    let keywords = batch.column_by_name("keywords").unwrap().as_list::<i32>();
    let kw0 = keywords.value(0);
    let kw0: Vec<_> = kw0.as_string::<i32>().iter().flatten().collect();
    assert_eq!(kw0, ["running", "trail"]);
    assert_eq!(keywords.value(1).len(), 0);
    assert!(keywords.is_valid(1));
    assert_eq!(utf8(&batch, "summary"), [Some("Footwear".to_owned()), None]);
    assert_eq!(
        utf8(&batch, "parent_cluster_id"),
        [None, Some("cluster_001".to_owned())]
    );
    let level = batch
        .column_by_name("level")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(level.iter().collect::<Vec<_>>(), [Some(0), Some(1)]);
    assert_eq!(
        utf8(&batch, "vector_name"),
        [Some("embedding".to_owned()), None]
    );

    // Without vectors (attribute clustering) the centroid column is a plain list.
    let key = store
        .write_clusters(&s, RUN, &[cluster("cluster_001", 1, Vec::new())], 0)
        .await
        .unwrap();
    let (schema, batch) = read_back(&store, &key).await;
    assert_eq!(
        schema.field_with_name("centroid").unwrap().data_type(),
        &DataType::List(f32_item())
    );
    assert!(batch.column_by_name("centroid").unwrap().is_null(0));

    // A centroid of the wrong length is refused rather than written shifted.
    let e = store
        .write_clusters(&s, RUN, &[cluster("cluster_001", 1, vec![1.0])], 3)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
}

fn member(doc: &str, cluster: &str, distance: Option<f32>, xy: Option<[f32; 2]>) -> MemberRow {
    MemberRow {
        document_id: doc.to_owned(),
        collection_id: "c1".to_owned(),
        cluster_id: cluster.to_owned(),
        distance_to_centroid: distance,
        probability: None,
        coordinates: xy,
        sampled: true,
    }
}

#[tokio::test]
async fn members_parquet_carries_probabilities_of_soft_assignments() {
    let store = temp_store("members-probability");
    let s = scope();
    let rows = vec![
        MemberRow {
            probability: Some(0.75),
            ..member("a", "cluster_001", Some(1.0), None)
        },
        MemberRow {
            probability: Some(0.5),
            ..member("b", "cluster_002", Some(2.0), None)
        },
    ];
    let key = store.write_members(&s, RUN, &rows).await.unwrap();
    let (schema, batch) = read_back(&store, &key).await;
    assert_eq!(
        names(&schema),
        [
            "document_id",
            "collection_id",
            "cluster_id",
            "distance_to_centroid",
            "probability",
            "sampled"
        ]
    );
    let p = batch
        .column_by_name("probability")
        .unwrap()
        .as_primitive::<Float32Type>();
    assert_eq!(p.values().to_vec(), [0.75, 0.5]);
}

#[tokio::test]
async fn members_parquet_is_sorted_by_cluster_id_even_if_given_unsorted() {
    let store = temp_store("members");
    let s = scope();
    // More than one batch, so that the sort has to hold across batch boundaries.
    let n = BATCH_ROWS + 10;
    let clusters = ["noise", "cluster_002", "cluster_001", "cluster_003"];
    let rows: Vec<MemberRow> = (0..n)
        .map(|i| {
            let xy = (!i.is_multiple_of(5)).then_some([i as f32, -(i as f32)]);
            let d = (!i.is_multiple_of(7)).then_some(i as f32 * 0.5);
            member(&format!("doc{i:06}"), clusters[i % 4], d, xy)
        })
        .collect();
    let key = store.write_members(&s, RUN, &rows).await.unwrap();
    assert_eq!(key, run_key(&s, RUN, "members.parquet"));

    let (schema, batch) = read_back(&store, &key).await;
    assert_eq!(
        names(&schema),
        [
            "document_id",
            "collection_id",
            "cluster_id",
            "distance_to_centroid",
            "coordinates",
            "sampled"
        ]
    );
    assert_eq!(
        schema.field_with_name("coordinates").unwrap().data_type(),
        &DataType::FixedSizeList(f32_item(), 2)
    );
    assert_eq!(batch.num_rows(), n);
    let cluster_ids = utf8(&batch, "cluster_id");
    assert!(cluster_ids.is_sorted());
    // Stable: within a cluster the input order (= document order here) is kept, and each
    // row keeps its own values.
    let docs = utf8(&batch, "document_id");
    let distances = batch
        .column_by_name("distance_to_centroid")
        .unwrap()
        .as_primitive::<Float32Type>();
    let coordinates = batch
        .column_by_name("coordinates")
        .unwrap()
        .as_fixed_size_list();
    for w in 0..n {
        let doc = docs[w].as_deref().unwrap();
        let i: usize = doc["doc".len()..].parse().unwrap();
        assert_eq!(cluster_ids[w].as_deref(), Some(clusters[i % 4]));
        assert_eq!(distances.is_valid(w), !i.is_multiple_of(7));
        if !i.is_multiple_of(7) {
            assert_eq!(distances.value(w), i as f32 * 0.5);
        }
        assert_eq!(coordinates.is_valid(w), !i.is_multiple_of(5));
        if !i.is_multiple_of(5) {
            let xy = coordinates.value(w);
            assert_eq!(
                xy.as_primitive::<Float32Type>().values().to_vec(),
                [i as f32, -(i as f32)]
            );
        }
        if w > 0 && cluster_ids[w - 1] == cluster_ids[w] {
            assert!(docs[w - 1] < docs[w], "not stable at row {w}");
        }
    }

    // Without any coordinates the column is left out.
    let rows = vec![
        member("b", "cluster_002", Some(1.0), None),
        member("a", "cluster_001", None, None),
    ];
    let key = store.write_members(&s, RUN, &rows).await.unwrap();
    let (schema, batch) = read_back(&store, &key).await;
    assert_eq!(
        names(&schema),
        [
            "document_id",
            "collection_id",
            "cluster_id",
            "distance_to_centroid",
            "sampled"
        ]
    );
    assert_eq!(
        utf8(&batch, "document_id"),
        [Some("a".to_owned()), Some("b".to_owned())]
    );
}

#[tokio::test]
async fn sample_parquet_reads_back() {
    let store = temp_store("sample");
    let s = scope();
    let ids: Vec<String> = vec!["d1".into(), "d2".into(), "d3".into()];
    let collections: Vec<String> = vec!["c1".into(), "c1".into(), "c2".into()];
    let clusters: Vec<String> = vec!["cluster_001".into(), "noise".into(), "cluster_001".into()];
    let coordinates = [[0.5, 1.5], [2.5, 3.5], [4.5, 5.5]];
    let vectors = Matrix::from_vec(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let sample = SampleArtifact {
        document_ids: &ids,
        collection_ids: &collections,
        cluster_ids: &clusters,
        coordinates: &coordinates,
        vectors: &vectors,
    };
    let key = store.write_sample(&s, RUN, &sample).await.unwrap();
    assert_eq!(key, run_key(&s, RUN, "sample.parquet"));
    let (schema, batch) = read_back(&store, &key).await;
    assert_eq!(
        names(&schema),
        [
            "document_id",
            "collection_id",
            "cluster_id",
            "x",
            "y",
            "vector"
        ]
    );
    assert_eq!(
        schema.field_with_name("vector").unwrap().data_type(),
        &DataType::FixedSizeList(f32_item(), 2)
    );
    assert_eq!(
        utf8(&batch, "document_id"),
        ids.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    assert_eq!(
        utf8(&batch, "collection_id"),
        collections.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    assert_eq!(
        utf8(&batch, "cluster_id"),
        clusters.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    let x = batch
        .column_by_name("x")
        .unwrap()
        .as_primitive::<Float32Type>();
    let y = batch
        .column_by_name("y")
        .unwrap()
        .as_primitive::<Float32Type>();
    assert_eq!(x.values().to_vec(), [0.5, 2.5, 4.5]);
    assert_eq!(y.values().to_vec(), [1.5, 3.5, 5.5]);
    let v = batch.column_by_name("vector").unwrap().as_fixed_size_list();
    let flat = v.values().as_primitive::<Float32Type>().values().to_vec();
    assert_eq!(flat, vectors.as_slice());

    // Columns of different lengths are an engine bug, refused before anything is written.
    let short = SampleArtifact {
        coordinates: &coordinates[..2],
        ..sample
    };
    let e = store
        .write_sample(&s, "run_other", &short)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
    let missing = store.get_artifact(&s, "run_other", "sample.parquet").await;
    assert_eq!(missing.unwrap_err().code, ErrorCode::NotFound);
}

#[tokio::test]
async fn artifact_download_streams_the_bytes() {
    let store = temp_store("download");
    let s = scope();
    let rows: Vec<ClusterRow> = (0..50)
        .map(|i| cluster(&format!("cluster_{i:03}"), i, vec![i as f32; 16]))
        .collect();
    let key = store.write_clusters(&s, RUN, &rows, 16).await.unwrap();
    let written = read_object(&store, &key).await;

    let body = store
        .get_artifact(&s, RUN, "clusters.parquet")
        .await
        .unwrap();
    assert_eq!(body.size, written.len() as u64);
    let chunks: Vec<Bytes> = body.stream.try_collect().await.unwrap();
    let downloaded: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    assert_eq!(downloaded, written.to_vec());

    let e = store
        .get_artifact(&s, RUN, "members.parquet")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.field.as_deref(), Some("artifact"));
}

#[tokio::test]
async fn unknown_artifact_name_is_not_found() {
    let store = temp_store("unknown");
    let s = scope();
    // Objects of the run that are not artifacts must not be served through this door.
    for file in ["status.json", "run.json"] {
        let key = Path::from(run_key(&s, RUN, file));
        store
            .inner
            .put(&key, Bytes::from_static(b"{}").into())
            .await
            .unwrap();
    }
    for name in ["status.json", "run.json", "../run.json", "clusters.csv", ""] {
        let e = store.get_artifact(&s, RUN, name).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound, "{name}");
        assert_eq!(e.field.as_deref(), Some("artifact"), "{name}");
    }
    let e = store
        .get_artifact(&s, "../x", "clusters.parquet")
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
}

/// Past the `BufWriter` capacity (10 MiB) the file goes up as a multipart upload; it must
/// come back whole.
#[tokio::test]
async fn large_artifact_goes_through_multipart_upload() {
    let store = temp_store("large");
    let s = scope();
    let n = 20_000;
    let d = 256;
    let mut state = 12345u32;
    let data: Vec<f32> = (0..n * d)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state as f32
        })
        .collect();
    let vectors = Matrix::from_vec(n, d, data).unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
    let coords = vec![[0.0f32, 1.0]; n];
    let sample = SampleArtifact {
        document_ids: &ids,
        collection_ids: &ids,
        cluster_ids: &ids,
        coordinates: &coords,
        vectors: &vectors,
    };
    let key = store.write_sample(&s, RUN, &sample).await.unwrap();
    let body = store.get_artifact(&s, RUN, "sample.parquet").await.unwrap();
    assert!(body.size > 15 << 20);
    let (_, batch) = read_back(&store, &key).await;
    assert_eq!(batch.num_rows(), n);
    let v = batch.column_by_name("vector").unwrap().as_fixed_size_list();
    assert_eq!(
        v.values().as_primitive::<Float32Type>().values().to_vec(),
        vectors.as_slice()
    );
}

#[tokio::test]
async fn members_parquet_row_groups_are_small_and_carry_cluster_id_statistics() {
    let store = temp_store("members-groups");
    let s = scope();
    let n = 2 * super::MEMBERS_ROW_GROUP_ROWS + 5;
    let rows: Vec<MemberRow> = (0..n)
        .map(|i| {
            let cluster = format!("cluster_{:03}", 1 + i * 4 / n);
            MemberRow {
                sampled: i % 3 != 0,
                ..member(&format!("doc{i:07}"), &cluster, Some(1.0), None)
            }
        })
        .collect();
    let key = store.write_members(&s, RUN, &rows).await.unwrap();
    let bytes = read_object(&store, &key).await;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let meta = builder.metadata().clone();
    assert_eq!(
        meta.num_row_groups(),
        3,
        "groups of at most MEMBERS_ROW_GROUP_ROWS"
    );
    let cluster_col = builder
        .schema()
        .index_of("cluster_id")
        .expect("cluster_id column");
    for g in meta.row_groups() {
        assert!(g.num_rows() as usize <= super::MEMBERS_ROW_GROUP_ROWS);
        let stats = g.column(cluster_col).statistics().expect("statistics");
        assert!(stats.min_bytes_opt().is_some() && stats.max_bytes_opt().is_some());
    }
    let sampled: Vec<bool> = builder
        .build()
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            let col = b.column_by_name("sampled").unwrap().as_boolean().clone();
            (0..col.len())
                .map(move |i| col.value(i))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(sampled, rows.iter().map(|r| r.sampled).collect::<Vec<_>>());
}
