//! Turning labels into the public result: clusters ranked by size (`cluster_001` is the
//! largest), centroids, members.

use crate::model::response::cluster_id;
use crate::model::{Centroid, DeviceInfo, ExecuteRequest, ExecuteResponse, Matrix, Member};
use crate::store::LoadedDocuments;

/// An algorithm's answer in internal label space (labels index `centers` rows).
pub struct Labelled {
    pub labels: Vec<u32>,
    pub centers: Matrix,
    /// Euclidean distance of each row to its centre, in the clustered space.
    pub distances: Vec<f32>,
}

pub struct ResponseParts<'a> {
    pub req: &'a ExecuteRequest,
    pub loaded: &'a LoadedDocuments,
    pub labelled: Labelled,
    pub run_id: String,
    pub created_at: String,
    pub execution_time_ms: u64,
    pub seed: u64,
    pub device: DeviceInfo,
}

/// Internal label -> public rank: larger clusters first, ties by internal label so the
/// order is deterministic. Empty clusters are dropped.
fn rank_clusters(labels: &[u32], n_clusters: usize) -> (Vec<Option<usize>>, Vec<usize>) {
    let mut sizes = vec![0usize; n_clusters];
    for &l in labels {
        if let Some(s) = sizes.get_mut(l as usize) {
            *s += 1;
        }
    }
    let mut order: Vec<usize> = (0..n_clusters).filter(|&c| sizes[c] > 0).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut rank_of = vec![None; n_clusters];
    for (rank, &c) in order.iter().enumerate() {
        rank_of[c] = Some(rank);
    }
    (rank_of, order.iter().map(|&c| sizes[c]).collect())
}

pub fn build_response(parts: ResponseParts<'_>) -> ExecuteResponse {
    let ResponseParts {
        req,
        loaded,
        labelled,
        run_id,
        created_at,
        execution_time_ms,
        seed,
        device,
    } = parts;
    let k = labelled.centers.rows();
    let (rank_of, sizes) = rank_clusters(&labelled.labels, k);
    let vector_name = req.vector_name.clone().unwrap_or_default();
    let mut by_rank: Vec<(usize, usize)> = rank_of
        .iter()
        .enumerate()
        .filter_map(|(label, r)| r.map(|r| (r, label)))
        .collect();
    by_rank.sort_unstable();
    let centroids = by_rank
        .iter()
        .map(|&(rank, label)| Centroid {
            cluster_id: cluster_id(rank),
            centroid_vector: labelled.centers.row(label).to_vec(),
            num_members: sizes[rank],
            feature_dimensions: labelled.centers.cols(),
            vector_name: vector_name.clone(),
        })
        .collect::<Vec<_>>();

    let members = req.include_members.then(|| {
        let mut rows: Vec<(usize, usize)> = labelled
            .labels
            .iter()
            .enumerate()
            .filter_map(|(row, &l)| rank_of.get(l as usize).copied().flatten().map(|r| (r, row)))
            .collect();
        // Sorted by cluster, then by load order, as members.parquet will be.
        rows.sort_unstable();
        rows.into_iter()
            .map(|(rank, row)| Member {
                document_id: loaded.document_ids[row].clone(),
                collection_id: req
                    .collection_ids
                    .get(loaded.collection_index[row] as usize)
                    .cloned()
                    .unwrap_or_default(),
                cluster_id: cluster_id(rank),
                distance_to_centroid: labelled.distances.get(row).map(|&d| f64::from(d)),
            })
            .collect()
    });

    ExecuteResponse {
        success: true,
        algorithm: req.algorithm,
        num_clusters: centroids.len(),
        num_documents: labelled.labels.len(),
        centroids,
        execution_time_ms,
        run_id,
        // Metrics and stored artifacts are not computed by this version: absent and
        // null rather than invented.
        metrics: None,
        parquet_path: None,
        members_key: None,
        created_at,
        seed,
        device,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_size_then_label_and_drops_empty_clusters() {
        let labels = [2, 0, 2, 1, 2, 0];
        let (rank_of, sizes) = rank_clusters(&labels, 4);
        assert_eq!(rank_of, vec![Some(1), Some(2), Some(0), None]);
        assert_eq!(sizes, vec![3, 2, 1]);
    }
}
