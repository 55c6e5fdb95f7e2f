//! Specs of members paging: pages equal a brute-force filter of the file, whatever the
//! offset, limit and row-group layout, and only the row groups that can hold the cluster
//! are touched.

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use object_store::PutPayload;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::*;
use crate::model::ErrorCode;
use crate::store::test_support::{run_id_at, run_record, run_status, scope, temp_store};

/// Cluster sizes of the test file, in file (= cluster id) order.
const CLUSTERS: [(&str, usize); 5] = [
    ("cluster_001", 17),
    ("cluster_002", 9),
    ("cluster_003", 3),
    ("cluster_004", 1),
    ("noise", 6),
];

fn rows_sorted() -> Vec<PagedMember> {
    let mut rows = Vec::new();
    for (c, n) in CLUSTERS {
        for i in 0..n {
            let k = rows.len();
            rows.push(PagedMember {
                document_id: format!("doc_{k:03}"),
                collection_id: if k % 2 == 0 { "col_a" } else { "col_b" }.to_owned(),
                cluster_id: c.to_owned(),
                distance_to_centroid: (c != "noise").then_some(k as f32 / 10.0),
                probability: (c != "noise").then_some(1.0 - i as f32 / 100.0),
                sampled: Some(k % 3 != 0),
                coordinates: (k != 5).then_some([k as f32, -(k as f32)]),
            });
        }
    }
    rows
}

/// `rows` as a Parquet file with row groups of `group_rows` rows, with or without
/// statistics.
fn parquet_file(rows: &[PagedMember], group_rows: usize, statistics: bool) -> Vec<u8> {
    let item = Arc::new(Field::new_list_field(DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("document_id", DataType::Utf8, false),
        Field::new("collection_id", DataType::Utf8, false),
        Field::new("cluster_id", DataType::Utf8, false),
        Field::new("distance_to_centroid", DataType::Float32, true),
        Field::new("probability", DataType::Float32, true),
        Field::new("sampled", DataType::Boolean, true),
        Field::new(
            "coordinates",
            DataType::FixedSizeList(item.clone(), 2),
            true,
        ),
    ]));
    let mut coordinates = FixedSizeListBuilder::new(Float32Builder::new(), 2).with_field(item);
    for r in rows {
        coordinates
            .values()
            .append_slice(&r.coordinates.unwrap_or_default());
        coordinates.append(r.coordinates.is_some());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.document_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.collection_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.cluster_id.as_str()),
        )),
        Arc::new(Float32Array::from_iter(
            rows.iter().map(|r| r.distance_to_centroid),
        )),
        Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.probability))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.sampled))),
        Arc::new(coordinates.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .set_statistics_enabled(if statistics {
            EnabledStatistics::Chunk
        } else {
            EnabledStatistics::None
        })
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

async fn stored(store: &Store, name: &str, bytes: Vec<u8>) -> Part {
    let location = object_store::path::Path::from(name);
    let size = bytes.len() as u64;
    store
        .inner
        .put(&location, PutPayload::from(bytes))
        .await
        .unwrap();
    Part { location, size }
}

fn brute_force(
    rows: &[PagedMember],
    cluster: Option<&str>,
    offset: u64,
    limit: usize,
) -> (u64, Vec<PagedMember>) {
    let matching: Vec<&PagedMember> = rows
        .iter()
        .filter(|r| cluster.is_none_or(|c| r.cluster_id == c))
        .collect();
    let page = matching
        .iter()
        .skip(offset as usize)
        .take(limit)
        .map(|r| (*r).clone())
        .collect();
    (matching.len() as u64, page)
}

/// Every (cluster, offset, limit) of interest: offsets crossing each row-group edge, the
/// last page, and past the end.
async fn assert_pages_equal_brute_force(store: &Store, part: &Part, rows: &[PagedMember]) {
    let filters: Vec<Option<&str>> = std::iter::once(None)
        .chain(CLUSTERS.iter().map(|(c, _)| Some(*c)))
        .chain([Some("cluster_000"), Some("cluster_0025"), Some("zzz")])
        .collect();
    for cluster in filters {
        for offset in 0..=(rows.len() as u64 + 2) {
            for limit in [1usize, 2, 3, 4, 5, 7, 100] {
                let (page, _) = read_page(&store.inner, part, cluster, offset, limit)
                    .await
                    .unwrap();
                let (total, expected) = brute_force(rows, cluster, offset, limit);
                assert_eq!(
                    page.total, total,
                    "{cluster:?} offset {offset} limit {limit}"
                );
                assert_eq!(
                    page.members, expected,
                    "{cluster:?} offset {offset} limit {limit}"
                );
            }
        }
    }
}

#[tokio::test]
async fn pages_equal_a_brute_force_filter_across_row_group_edges() {
    let store = temp_store("members-pages");
    let rows = rows_sorted();
    for group_rows in [4, 5, 64] {
        let part = stored(
            &store,
            &format!("m{group_rows}.parquet"),
            parquet_file(&rows, group_rows, true),
        )
        .await;
        assert_pages_equal_brute_force(&store, &part, &rows).await;
    }
}

#[tokio::test]
async fn only_the_row_groups_that_can_hold_the_cluster_are_read() {
    let store = temp_store("members-prune");
    let rows = rows_sorted();
    let group_rows = 4;
    let part = stored(&store, "m.parquet", parquet_file(&rows, group_rows, true)).await;
    let groups: Vec<&[PagedMember]> = rows.chunks(group_rows).collect();
    for (c, n) in CLUSTERS {
        let holding: Vec<usize> = (0..groups.len())
            .filter(|&g| groups[g].iter().any(|r| r.cluster_id == c))
            .collect();
        // Groups with the cluster and something else: the only ones whose ids are decoded.
        let edges: Vec<usize> = holding
            .iter()
            .copied()
            .filter(|&g| groups[g].iter().any(|r| r.cluster_id != c))
            .collect();
        let (page, stats) = read_page(&store.inner, &part, Some(c), 0, 1000)
            .await
            .unwrap();
        assert_eq!(page.total, n as u64, "{c}");
        assert_eq!(stats.groups_scanned, edges, "{c}");
        assert_eq!(stats.groups_read, holding, "{c}");

        // A page deep inside the cluster reads one group and skips the whole groups
        // before it by their row counts.
        let (page, stats) = read_page(&store.inner, &part, Some(c), n as u64 - 1, 1)
            .await
            .unwrap();
        assert_eq!(page.members.len(), 1);
        assert_eq!(stats.groups_read, [*holding.last().unwrap()], "{c}");
    }
    // The largest cluster spans four whole groups and one edge group.
    let (_, stats) = read_page(&store.inner, &part, Some("cluster_001"), 5, 2)
        .await
        .unwrap();
    assert_eq!(stats.groups_scanned, [4]);
    assert_eq!(stats.groups_read, [1]);

    // A cluster with no members between two others costs at most the group that
    // straddles the gap, and an id beyond every group costs nothing.
    let (page, stats) = read_page(&store.inner, &part, Some("cluster_0025"), 0, 10)
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    assert!(page.members.is_empty());
    assert!(stats.groups_scanned.len() <= 1, "{stats:?}");
    assert!(stats.groups_read.is_empty());
    let (_, stats) = read_page(&store.inner, &part, Some("zzz"), 0, 10)
        .await
        .unwrap();
    assert_eq!(stats, ReadStats::default());

    // Without a filter the row counts place any offset.
    let (page, stats) = read_page(&store.inner, &part, None, 21, 3).await.unwrap();
    assert_eq!(page.total, rows.len() as u64);
    assert_eq!(page.members, rows[21..24].to_vec());
    assert!(stats.groups_scanned.is_empty());
    assert_eq!(stats.groups_read, [5]);
}

#[tokio::test]
async fn files_without_statistics_or_out_of_order_give_the_same_pages() {
    let store = temp_store("members-nostats");
    let rows = rows_sorted();
    let part = stored(&store, "plain.parquet", parquet_file(&rows, 4, false)).await;
    assert_pages_equal_brute_force(&store, &part, &rows).await;
    let (_, stats) = read_page(&store.inner, &part, Some("cluster_003"), 0, 10)
        .await
        .unwrap();
    assert_eq!(stats.groups_scanned.len(), rows.len().div_ceil(4));

    // Interleaved clusters: every group is partial and the answer is still exact.
    let mut shuffled = rows.clone();
    shuffled.sort_by_key(|r| {
        (
            r.document_id.len(),
            r.document_id.bytes().rev().collect::<Vec<_>>(),
        )
    });
    assert_ne!(shuffled, rows);
    let part = stored(&store, "shuffled.parquet", parquet_file(&shuffled, 4, true)).await;
    assert_pages_equal_brute_force(&store, &part, &shuffled).await;
}

#[tokio::test]
async fn members_carry_every_optional_column_the_file_has() {
    let store = temp_store("members-columns");
    let rows = rows_sorted();
    let part = stored(&store, "m.parquet", parquet_file(&rows, 4, true)).await;
    let (page, _) = read_page(&store.inner, &part, None, 0, 1000).await.unwrap();
    assert_eq!(page.members, rows);
    assert_eq!(page.members[5].coordinates, None);
    assert_eq!(page.members[6].coordinates, Some([6.0, -6.0]));
    assert_eq!(page.members[3].sampled, Some(false));
    let noise = page.members.last().unwrap();
    assert_eq!(noise.cluster_id, "noise");
    assert_eq!(noise.distance_to_centroid, None);
}

/// A completed run with the test members file, for the store-level checks.
async fn completed_run(store: &Store, millis: u64) -> String {
    let s = scope();
    let id = run_id_at(millis, 7);
    store
        .put_run_status(
            &s,
            &run_status(&id, RunState::Completed, std::time::Duration::ZERO),
        )
        .await
        .unwrap();
    let clusters: Vec<&str> = CLUSTERS
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| *c != "noise")
        .collect();
    store
        .put_run_record(&s, &run_record(&id, &clusters))
        .await
        .unwrap();
    let key = paths::run_file(&s, &id, MEMBERS_FILE).unwrap();
    stored(store, key.as_ref(), parquet_file(&rows_sorted(), 4, true)).await;
    id
}

#[tokio::test]
async fn a_page_of_a_completed_run_says_where_the_next_one_starts() {
    let store = temp_store("members-run");
    let s = scope();
    let id = completed_run(&store, 1_000).await;
    let page = store
        .read_members_page(&s, &id, Some("cluster_002"), 0, 4)
        .await
        .unwrap();
    assert_eq!(page.total, 9);
    assert_eq!(page.next_offset, Some(4));
    assert_eq!(page.members.len(), 4);
    assert!(page.members.iter().all(|m| m.cluster_id == "cluster_002"));
    let last = store
        .read_members_page(&s, &id, Some("cluster_002"), 8, 4)
        .await
        .unwrap();
    assert_eq!(last.members.len(), 1);
    assert_eq!(last.next_offset, None);
    let past = store
        .read_members_page(&s, &id, Some("cluster_002"), 50, 4)
        .await
        .unwrap();
    assert!(past.members.is_empty());
    assert_eq!((past.total, past.next_offset), (9, None));
    let noise = store
        .read_members_page(&s, &id, Some("noise"), 0, 100)
        .await
        .unwrap();
    assert_eq!(noise.total, 6);
    let all = store
        .read_members_page(&s, &id, None, 0, 100)
        .await
        .unwrap();
    assert_eq!(all.total, 36);
    assert_eq!(all.cluster_id, None);
}

#[tokio::test]
async fn unknown_runs_and_clusters_are_not_found_and_unfinished_runs_conflict() {
    let store = temp_store("members-errors");
    let s = scope();
    let err = store
        .read_members_page(&s, "run_nope", None, 0, 10)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::NotFound, Some("run_id"))
    );

    let id = completed_run(&store, 2_000).await;
    let err = store
        .read_members_page(&s, &id, Some("cluster_009"), 0, 10)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::NotFound, Some("cluster_id"))
    );

    // A run without noise has no "noise" cluster.
    let clean = run_id_at(3_000, 1);
    store
        .put_run_status(
            &s,
            &run_status(&clean, RunState::Completed, std::time::Duration::ZERO),
        )
        .await
        .unwrap();
    store
        .put_run_record(&s, &run_record(&clean, &["cluster_001"]))
        .await
        .unwrap();
    let only_one: Vec<PagedMember> = rows_sorted()
        .into_iter()
        .filter(|r| r.cluster_id == "cluster_001")
        .collect();
    let key = paths::run_file(&s, &clean, MEMBERS_FILE).unwrap();
    stored(&store, key.as_ref(), parquet_file(&only_one, 4, true)).await;
    let err = store
        .read_members_page(&s, &clean, Some("noise"), 0, 10)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        (ErrorCode::NotFound, Some("cluster_id"))
    );

    for (state, millis) in [
        (RunState::Running, 4_000),
        (RunState::Failed, 5_000),
        (RunState::Cancelled, 6_000),
    ] {
        let id = run_id_at(millis, 1);
        store
            .put_run_status(&s, &run_status(&id, state, std::time::Duration::ZERO))
            .await
            .unwrap();
        let err = store
            .read_members_page(&s, &id, None, 0, 10)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict, "{state:?}");
        assert!(err.message.contains(state.as_str()), "{}", err.message);
    }
}
