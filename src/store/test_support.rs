//! Fixtures shared by the store's test modules.

use super::Store;
use crate::model::Scope;

/// A store over a fresh directory of its own under the system temp dir.
pub(super) fn temp_store(name: &str) -> Store {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "clusterd-store-{name}-{}-{nanos}",
        std::process::id()
    ));
    Store::open(dir.to_str().expect("temp dir is UTF-8")).expect("open a local store")
}

pub(super) fn scope() -> Scope {
    Scope::new("int_abc123", "production").expect("valid names")
}

/// The id the engine gives a run started at `millis` (newest sorts first).
pub(super) fn run_id_at(millis: u64, suffix: u32) -> String {
    format!("run_{:012x}{suffix:08x}", 0xFFFF_FFFF_FFFF_u64 - millis)
}

/// `status.json` of a run in `state` last written `age` ago. Built from JSON, as the
/// store reads it, so fields added later with defaults do not break these fixtures.
pub(super) fn run_status(
    run_id: &str,
    state: crate::model::RunState,
    age: std::time::Duration,
) -> crate::model::RunStatus {
    let at = (chrono::Utc::now() - chrono::TimeDelta::from_std(age).expect("small age"))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    serde_json::from_value(serde_json::json!({
        "run_id": run_id,
        "status": state.as_str(),
        "algorithm": "kmeans",
        "collection_ids": ["c1"],
        "created_at": at,
        "updated_at": at,
        "heartbeat_at": at,
        "instance_id": "test-instance",
    }))
    .expect("a run status")
}

/// `run.json` of a completed run whose clusters are `cluster_ids` and whose members are
/// stored (`members_key` set).
pub(super) fn run_record(run_id: &str, cluster_ids: &[&str]) -> crate::model::RunRecord {
    let centroids: Vec<serde_json::Value> = cluster_ids
        .iter()
        .map(|c| {
            serde_json::json!({
                "cluster_id": c, "centroid_vector": [0.0, 0.0], "num_members": 1,
                "feature_dimensions": 2, "vector_name": "embedding",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "run_id": run_id,
        "status": "completed",
        "version": "0.1.0",
        "request": {
            "collection_ids": ["c1"], "algorithm": "kmeans", "algorithm_params": {},
            "vector_name": "embedding", "normalize_features": false, "description": null,
            "sample_size": null, "compute_metrics": false, "store_results": true,
            "save_artifacts": false,
        },
        "result": {
            "success": true, "algorithm": "kmeans", "num_clusters": cluster_ids.len(),
            "num_documents": 0, "centroids": centroids, "execution_time_ms": 1,
            "run_id": run_id, "parquet_path": null,
            "members_key": format!("x/{run_id}/members.parquet"),
            "created_at": "2026-01-01T00:00:00Z", "seed": 0,
            "device": {"type": "cpu", "name": "test", "backend": "cpu"},
        },
        "artifacts": [],
    }))
    .expect("a run record")
}
