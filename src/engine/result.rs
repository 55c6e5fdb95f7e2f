//! Turning labels into the public result: clusters ranked by size (`cluster_001` is the
//! largest), noise as `"noise"` without a centroid, members sorted by cluster id.

use rayon::prelude::*;

use crate::labeling::Labels;
use crate::model::response::{NOISE_CLUSTER_ID, cluster_id};
use crate::model::{Centroid, LabelingFailure, Matrix, Member};
use crate::store::{ClusterRow, LoadedDocuments, MemberRef, MemberTable};

/// An algorithm's answer in internal label space: `labels[i]` indexes a row of `centers`,
/// or is −1 for noise.
pub struct Labelled {
    pub labels: Vec<i64>,
    pub centers: Matrix,
    /// Euclidean distance of each row to its centre, in the clustered space (ignored for
    /// noise).
    pub distances: Vec<f32>,
    /// Posterior probability of each row's cluster, for soft-assignment algorithms.
    pub probabilities: Option<Vec<f32>>,
}

impl Labelled {
    /// The answer of an algorithm without centres of its own (density, hierarchical...):
    /// each cluster's centroid is the mean of its members (summed in f64, in row order),
    /// and distances are to that mean. Noise (−1) has neither.
    pub fn from_labels(x: &Matrix, labels: Vec<i64>, n_clusters: usize) -> Labelled {
        let d = x.cols();
        let mut sums = vec![0f64; n_clusters * d];
        let mut counts = vec![0usize; n_clusters];
        for (row, &l) in labels.iter().enumerate() {
            if let Some(c) = usize::try_from(l).ok().filter(|&c| c < n_clusters) {
                counts[c] += 1;
                for (s, &v) in sums[c * d..(c + 1) * d].iter_mut().zip(x.row(row)) {
                    *s += f64::from(v);
                }
            }
        }
        let mut centers = Matrix::zeros(n_clusters, d);
        for c in 0..n_clusters {
            let count = counts[c].max(1) as f64;
            for (o, &s) in centers.row_mut(c).iter_mut().zip(&sums[c * d..(c + 1) * d]) {
                *o = (s / count) as f32;
            }
        }
        Labelled::with_centers(x, labels, centers)
    }

    /// The answer of an algorithm with centres of its own (Gaussian mixture means,
    /// mean-shift modes): distances are to those centres.
    pub fn with_centers(x: &Matrix, labels: Vec<i64>, centers: Matrix) -> Labelled {
        let k = centers.rows();
        let distances = labels
            .par_iter()
            .enumerate()
            .map(
                |(row, &l)| match usize::try_from(l).ok().filter(|&c| c < k) {
                    Some(c) => euclidean(x.row(row), centers.row(c)),
                    None => 0.0,
                },
            )
            .collect();
        Labelled {
            labels,
            centers,
            distances,
            probabilities: None,
        }
    }

    pub fn with_probabilities(self, probabilities: Vec<f32>) -> Labelled {
        Labelled {
            probabilities: Some(probabilities),
            ..self
        }
    }
}

/// Euclidean distance in f64, rounded once to f32.
pub(super) fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| {
            let t = f64::from(a) - f64::from(b);
            t * t
        })
        .sum::<f64>()
        .sqrt() as f32
}

/// Internal label -> public rank: larger clusters first, ties by internal label so the
/// order is deterministic. Empty clusters are dropped.
pub struct Ranking {
    rank_of: Vec<Option<usize>>,
    /// Size of each rank.
    sizes: Vec<usize>,
    /// Internal label of each rank.
    label_of: Vec<usize>,
}

impl Ranking {
    pub fn new(labels: &[i64], n_clusters: usize) -> Self {
        let mut sizes = vec![0usize; n_clusters];
        for &l in labels {
            if let Some(s) = usize::try_from(l).ok().and_then(|l| sizes.get_mut(l)) {
                *s += 1;
            }
        }
        let mut order: Vec<usize> = (0..n_clusters).filter(|&c| sizes[c] > 0).collect();
        order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
        let mut rank_of = vec![None; n_clusters];
        for (rank, &c) in order.iter().enumerate() {
            rank_of[c] = Some(rank);
        }
        Ranking {
            rank_of,
            sizes: order.iter().map(|&c| sizes[c]).collect(),
            label_of: order,
        }
    }

    pub fn num_clusters(&self) -> usize {
        self.sizes.len()
    }

    fn rank(&self, label: i64) -> Option<usize> {
        usize::try_from(label)
            .ok()
            .and_then(|l| self.rank_of.get(l).copied().flatten())
    }

    fn id(&self, rank: Option<usize>) -> String {
        match rank {
            Some(r) => cluster_id(r, self.num_clusters()),
            None => NOISE_CLUSTER_ID.to_owned(),
        }
    }
}

pub fn centroids(labelled: &Labelled, ranking: &Ranking, vector_name: &str) -> Vec<Centroid> {
    ranking
        .label_of
        .iter()
        .enumerate()
        .map(|(rank, &label)| Centroid {
            cluster_id: ranking.id(Some(rank)),
            centroid_vector: labelled.centers.row(label).to_vec(),
            num_members: ranking.sizes[rank],
            feature_dimensions: labelled.centers.cols(),
            vector_name: vector_name.to_owned(),
            label: None,
            keywords: None,
            summary: None,
            parent_cluster_id: None,
            level: None,
        })
        .collect()
}

pub fn cluster_rows(centroids: &[Centroid]) -> Vec<ClusterRow> {
    centroids
        .iter()
        .map(|c| ClusterRow {
            cluster_id: c.cluster_id.clone(),
            label: c.label.clone(),
            size: c.num_members as u64,
            centroid: c.centroid_vector.clone(),
            keywords: c.keywords.clone().unwrap_or_default(),
            summary: c.summary.clone(),
            parent_cluster_id: c.parent_cluster_id.clone(),
            level: c.level.and_then(|l| i32::try_from(l).ok()),
            vector_name: Some(c.vector_name.clone()),
        })
        .collect()
}

/// One (document, cluster) membership of the public result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Membership {
    /// Cluster rank (index into `Rendered::centroids`), None for noise.
    pub rank: Option<usize>,
    pub row: usize,
    pub distance: Option<f32>,
    pub probability: Option<f32>,
}

/// The public clusters of a run: centroid rows by rank, and the memberships in
/// `members.parquet` order (by cluster id, noise last, then load order).
pub struct Rendered {
    pub centroids: Vec<Centroid>,
    /// Clusters in `num_clusters` (for hierarchies: the leaves).
    pub num_clusters: usize,
    pub memberships: Vec<Membership>,
}

impl Rendered {
    /// A labelled answer as the public result: ranks by size, members by cluster id.
    pub fn from_labelled(labelled: &Labelled, vector_name: &str) -> Rendered {
        let ranking = Ranking::new(&labelled.labels, labelled.centers.rows());
        let mut memberships: Vec<Membership> = labelled
            .labels
            .iter()
            .enumerate()
            .map(|(row, &l)| {
                let rank = ranking.rank(l);
                Membership {
                    rank,
                    row,
                    distance: rank.and(labelled.distances.get(row).copied()),
                    probability: rank.and(
                        labelled
                            .probabilities
                            .as_ref()
                            .and_then(|p| p.get(row).copied()),
                    ),
                }
            })
            .collect();
        // None (noise) after every cluster: "noise" sorts after "cluster_…".
        memberships.sort_unstable_by_key(|m| (m.rank.is_none(), m.rank, m.row));
        Rendered {
            centroids: centroids(labelled, &ranking, vector_name),
            num_clusters: ranking.num_clusters(),
            memberships,
        }
    }

    fn id(&self, rank: Option<usize>) -> String {
        rank.and_then(|r| self.centroids.get(r))
            .map_or_else(|| NOISE_CLUSTER_ID.to_owned(), |c| c.cluster_id.clone())
    }

    /// Put each cluster's label, keywords and summary on its centroid (`labels` is by
    /// rank) and name the clusters whose provider failed.
    pub fn apply_labels(&mut self, labels: Labels) -> Vec<LabelingFailure> {
        let Labels { labels, errors } = labels;
        for (centroid, l) in self.centroids.iter_mut().zip(labels) {
            centroid.label = Some(l.label);
            centroid.keywords = (!l.keywords.is_empty()).then_some(l.keywords);
            centroid.summary = l.summary;
        }
        errors
            .into_iter()
            .filter_map(|e| {
                Some(LabelingFailure {
                    cluster_id: self.centroids.get(e.cluster)?.cluster_id.clone(),
                    message: e.message,
                })
            })
            .collect()
    }
}

pub struct MemberSource<'a> {
    pub rendered: &'a Rendered,
    pub loaded: &'a LoadedDocuments,
    pub collection_ids: &'a [String],
    pub coordinates: Option<&'a [[f32; 2]]>,
}

impl MemberSource<'_> {
    fn collection(&self, row: usize) -> String {
        self.collection_ids
            .get(self.loaded.collection_index[row] as usize)
            .cloned()
            .unwrap_or_default()
    }

    pub fn member(&self, m: &Membership) -> Member {
        Member {
            document_id: self.loaded.document_ids[m.row].clone(),
            collection_id: self.collection(m.row),
            cluster_id: self.rendered.id(m.rank),
            distance_to_centroid: m.distance.map(f64::from),
            probability: m.probability.map(f64::from),
        }
    }

    /// Cluster id of each row, in load order (a row in several clusters: its first).
    pub fn cluster_ids(&self) -> Vec<String> {
        let mut ranks: Vec<Option<Option<usize>>> = vec![None; self.loaded.document_ids.len()];
        for m in &self.rendered.memberships {
            if let Some(slot @ None) = ranks.get_mut(m.row) {
                *slot = Some(m.rank);
            }
        }
        ranks
            .into_iter()
            .map(|r| self.rendered.id(r.flatten()))
            .collect()
    }

    pub fn collection_of_rows(&self) -> Vec<String> {
        (0..self.loaded.document_ids.len())
            .map(|r| self.collection(r))
            .collect()
    }
}

/// A document of the collections that the sample left out, placed into the fitted
/// clusters after the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub document_id: String,
    /// Index into the request's `collection_ids`.
    pub collection: u32,
    /// Cluster rank, None for noise.
    pub rank: Option<usize>,
    pub distance: Option<f32>,
    pub coordinates: Option<[f32; 2]>,
}

/// Where row `i` of `members.parquet` comes from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Sampled(usize),
    Placed(usize),
}

/// The rows of `members.parquet` of a run: the sample's memberships and the placed
/// documents merged in cluster id order (within a cluster, sampled documents first), in
/// compact form; [`MemberTable`] turns one into a row when the writer asks.
pub struct RunMembers<'a> {
    source: &'a MemberSource<'a>,
    placed: &'a [Placed],
    ids: Vec<String>,
    order: Vec<Slot>,
}

impl<'a> RunMembers<'a> {
    pub fn new(source: &'a MemberSource<'a>, placed: &'a [Placed]) -> RunMembers<'a> {
        let key = |rank: Option<usize>| (rank.is_none(), rank);
        let mut by_cluster: Vec<usize> = (0..placed.len()).collect();
        by_cluster.sort_by_key(|&i| key(placed[i].rank));
        let sampled = &source.rendered.memberships;
        let mut order = Vec::with_capacity(sampled.len() + placed.len());
        let (mut a, mut b) = (0, 0);
        while a < sampled.len() || b < by_cluster.len() {
            let take_sampled = match (sampled.get(a), by_cluster.get(b)) {
                (Some(m), Some(&p)) => key(m.rank) <= key(placed[p].rank),
                (Some(_), None) => true,
                _ => false,
            };
            if take_sampled {
                order.push(Slot::Sampled(a));
                a += 1;
            } else {
                order.push(Slot::Placed(by_cluster[b]));
                b += 1;
            }
        }
        let mut ids: Vec<String> = (0..source.rendered.centroids.len())
            .map(|r| source.rendered.id(Some(r)))
            .collect();
        ids.push(NOISE_CLUSTER_ID.to_owned());
        RunMembers {
            source,
            placed,
            ids,
            order,
        }
    }

    fn cluster(&self, rank: Option<usize>) -> &str {
        let noise = self.ids.len() - 1;
        &self.ids[rank.filter(|&r| r < noise).unwrap_or(noise)]
    }

    fn collection(&self, index: u32) -> &str {
        self.source
            .collection_ids
            .get(index as usize)
            .map_or("", String::as_str)
    }
}

impl MemberTable for RunMembers<'_> {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn row(&self, i: usize) -> MemberRef<'_> {
        match self.order[i] {
            Slot::Sampled(k) => {
                let m = &self.source.rendered.memberships[k];
                let loaded = self.source.loaded;
                MemberRef {
                    document_id: &loaded.document_ids[m.row],
                    collection_id: self.collection(loaded.collection_index[m.row]),
                    cluster_id: self.cluster(m.rank),
                    distance_to_centroid: m.distance,
                    probability: m.probability,
                    coordinates: self.source.coordinates.and_then(|c| c.get(m.row).copied()),
                    sampled: true,
                }
            }
            Slot::Placed(k) => {
                let p = &self.placed[k];
                MemberRef {
                    document_id: &p.document_id,
                    collection_id: self.collection(p.collection),
                    cluster_id: self.cluster(p.rank),
                    distance_to_centroid: p.distance,
                    probability: None,
                    coordinates: p.coordinates,
                    sampled: false,
                }
            }
        }
    }

    fn has_probability(&self) -> bool {
        self.source
            .rendered
            .memberships
            .iter()
            .any(|m| m.probability.is_some())
    }

    fn has_coordinates(&self) -> bool {
        self.source.coordinates.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_size_then_label_and_drops_empty_clusters() {
        let r = Ranking::new(&[2, 0, 2, 1, 2, 0, -1], 4);
        assert_eq!(r.rank_of, vec![Some(1), Some(2), Some(0), None]);
        assert_eq!(r.sizes, vec![3, 2, 1]);
        assert_eq!(r.id(r.rank(-1)), "noise");
        assert_eq!(r.id(r.rank(2)), "cluster_001");
    }

    #[test]
    fn noise_comes_after_every_cluster_in_membership_order() {
        let labelled = Labelled {
            labels: vec![-1, 1, 0, 1],
            centers: Matrix::zeros(2, 1),
            distances: vec![0.0; 4],
            probabilities: None,
        };
        let rendered = Rendered::from_labelled(&labelled, "v");
        let order: Vec<(Option<usize>, usize)> = rendered
            .memberships
            .iter()
            .map(|m| (m.rank, m.row))
            .collect();
        assert_eq!(
            order,
            vec![(Some(0), 1), (Some(0), 3), (Some(1), 2), (None, 0)]
        );
    }

    #[test]
    fn centroids_of_label_only_algorithms_are_member_means_and_noise_has_none() {
        let x = Matrix::from_vec(4, 2, vec![0.0, 0.0, 2.0, 0.0, 10.0, 10.0, 5.0, 5.0]).unwrap();
        let l = Labelled::from_labels(&x, vec![0, 0, 1, -1], 2);
        assert_eq!(l.centers.row(0), &[1.0, 0.0]);
        assert_eq!(l.centers.row(1), &[10.0, 10.0]);
        assert_eq!(l.distances, vec![1.0, 1.0, 0.0, 0.0]);
        let ranking = Ranking::new(&l.labels, 2);
        let c = centroids(&l, &ranking, "v");
        assert_eq!(c.len(), 2, "noise has no centroid row");
        assert_eq!(c[0].num_members, 2);
    }

    #[test]
    fn placed_documents_merge_into_cluster_order_after_the_sampled_ones() {
        let labelled = Labelled {
            labels: vec![-1, 1, 0, 1],
            centers: Matrix::zeros(2, 1),
            distances: vec![0.5; 4],
            probabilities: None,
        };
        let rendered = Rendered::from_labelled(&labelled, "v");
        let loaded = LoadedDocuments {
            document_ids: ["s0", "s1", "s2", "s3"].map(String::from).to_vec(),
            collection_index: vec![0; 4],
            vectors: None,
            vector_dimension: None,
            attributes: Vec::new(),
            total_documents: 7,
        };
        let collections = vec!["c".to_owned()];
        let source = MemberSource {
            rendered: &rendered,
            loaded: &loaded,
            collection_ids: &collections,
            coordinates: None,
        };
        let place = |id: &str, rank| Placed {
            document_id: id.to_owned(),
            collection: 0,
            rank,
            distance: rank.map(|_| 1.0),
            coordinates: None,
        };
        let placed = vec![
            place("p0", None),
            place("p1", Some(1)),
            place("p2", Some(0)),
        ];
        let members = RunMembers::new(&source, &placed);
        let rows: Vec<(&str, &str, bool)> = (0..members.len())
            .map(|i| {
                let r = members.row(i);
                (r.document_id, r.cluster_id, r.sampled)
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("s1", "cluster_001", true),
                ("s3", "cluster_001", true),
                ("p2", "cluster_001", false),
                ("s2", "cluster_002", true),
                ("p1", "cluster_002", false),
                ("s0", "noise", true),
                ("p0", "noise", false),
            ]
        );
    }

    #[test]
    fn wide_runs_pad_every_id_alike() {
        assert_eq!(cluster_id(0, 5), "cluster_001");
        assert_eq!(cluster_id(9, 1500), "cluster_0010");
        assert!(cluster_id(999, 1500) < cluster_id(1000, 1500));
    }
}
