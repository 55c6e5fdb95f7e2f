//! `attribute_based` runs: the documents' attribute values form the groups (flat, or a
//! tree when hierarchical), rendered as clusters. Every node of a tree is a cluster with
//! its parent and level; members belong to the leaves. With a feature vector a cluster's
//! centroid is the mean vector of its members (a parent's: of its whole subtree) and
//! members carry their distance to their leaf's centroid; without one there is no
//! centroid and no distance.

use crate::algorithms::attribute_grouping::{self, Grouping};
use crate::model::response::cluster_id;
use crate::model::{Centroid, Matrix};

use super::result::{Membership, Rendered, euclidean};

/// The groups as public clusters, ranked by size (largest first; ties by group order).
/// Returns the rendered result and the group index of each rank.
pub fn render(
    grouping: &Grouping,
    attribute_names: &[String],
    hierarchical: bool,
    vectors: Option<&Matrix>,
    vector_name: &str,
) -> (Rendered, Vec<usize>) {
    let groups = &grouping.groups;
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| groups[b].size.cmp(&groups[a].size).then(a.cmp(&b)));
    let mut rank_of = vec![0usize; groups.len()];
    for (rank, &g) in order.iter().enumerate() {
        rank_of[g] = rank;
    }
    let ids: Vec<String> = (0..groups.len())
        .map(|rank| cluster_id(rank, groups.len()))
        .collect();
    let centres = vectors.map(|x| group_means(grouping, x));
    let d = vectors.map_or(0, Matrix::cols);

    let centroids = order
        .iter()
        .map(|&g| {
            let group = &groups[g];
            Centroid {
                cluster_id: ids[rank_of[g]].clone(),
                centroid_vector: centres
                    .as_ref()
                    .map(|c| c.row(g).to_vec())
                    .unwrap_or_default(),
                num_members: group.size,
                feature_dimensions: d,
                vector_name: vector_name.to_owned(),
                // The attribute values name the group; a labeller may replace it.
                label: Some(attribute_grouping::describe(group, attribute_names)),
                keywords: None,
                summary: None,
                parent_cluster_id: group.parent.map(|p| ids[rank_of[p]].clone()),
                level: hierarchical.then_some(group.level),
            }
        })
        .collect();

    let mut memberships: Vec<Membership> = grouping
        .memberships
        .iter()
        .map(|&(row, g)| {
            let (row, g) = (row as usize, g as usize);
            let distance = match (vectors, &centres) {
                (Some(x), Some(c)) => Some(euclidean(x.row(row), c.row(g))),
                _ => None,
            };
            Membership {
                rank: Some(rank_of[g]),
                row,
                distance,
                probability: None,
            }
        })
        .collect();
    memberships.sort_unstable_by_key(|m| (m.rank, m.row));
    let rendered = Rendered {
        centroids,
        num_clusters: groups.iter().filter(|g| g.is_leaf).count(),
        memberships,
    };
    (rendered, order)
}

/// Each group's mean member vector; a parent's mean covers its subtree. Sums in f64, in
/// membership order.
fn group_means(grouping: &Grouping, x: &Matrix) -> Matrix {
    let d = x.cols();
    let n_groups = grouping.groups.len();
    let mut sums = vec![0f64; n_groups * d];
    for &(row, g) in &grouping.memberships {
        let (row, g) = (row as usize, g as usize);
        for (s, &v) in sums[g * d..(g + 1) * d].iter_mut().zip(x.row(row)) {
            *s += f64::from(v);
        }
    }
    // Children come after their parents: walking backwards adds every subtree up.
    for g in (0..n_groups).rev() {
        if let Some(p) = grouping.groups[g].parent {
            for k in 0..d {
                sums[p * d + k] += sums[g * d + k];
            }
        }
    }
    let mut means = Matrix::zeros(n_groups, d);
    for (g, group) in grouping.groups.iter().enumerate() {
        let size = group.size.max(1) as f64;
        for (o, &s) in means.row_mut(g).iter_mut().zip(&sums[g * d..(g + 1) * d]) {
            *o = (s / size) as f32;
        }
    }
    means
}

/// One label per row for the metrics: the row's leaf, when every row is in exactly one.
pub fn single_labels(grouping: &Grouping, n_rows: usize) -> Option<Vec<i64>> {
    if grouping.memberships.len() != n_rows {
        return None;
    }
    let mut labels = vec![-1i64; n_rows];
    for &(row, g) in &grouping.memberships {
        let slot = labels.get_mut(row as usize)?;
        if *slot != -1 {
            return None;
        }
        *slot = i64::from(g);
    }
    Some(labels)
}

/// Every group a membership counts in: its leaf and, in a tree, each ancestor (for the
/// labeller's corpus, so that a parent is named by its whole subtree).
pub fn with_ancestors(grouping: &Grouping, leaf: usize) -> impl Iterator<Item = usize> + '_ {
    std::iter::successors(Some(leaf), |&g| {
        grouping.groups.get(g).and_then(|x| x.parent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::attribute_grouping::{Aggregation, GroupingOptions, group};
    use crate::model::{DeviceKind, RunContext};

    fn column(values: &[&[&str]]) -> Vec<Vec<String>> {
        values
            .iter()
            .map(|v| v.iter().map(|s| (*s).to_owned()).collect())
            .collect()
    }

    #[test]
    fn a_tree_renders_every_node_with_its_parent_level_and_subtree_mean() {
        let attributes = vec![
            column(&[&["shoes"], &["shoes"], &["shoes"], &["hats"]]),
            column(&[&["acme"], &["acme"], &["zeta"], &["acme"]]),
        ];
        let options = GroupingOptions {
            hierarchical: true,
            aggregation: Aggregation::MostFrequent,
        };
        let grouping = group(
            &attributes,
            4,
            &options,
            &RunContext::new(0, DeviceKind::Cpu),
        )
        .unwrap();
        let x = Matrix::from_vec(4, 1, vec![0.0, 2.0, 4.0, 10.0]).unwrap();
        let names = vec!["category".to_owned(), "brand".to_owned()];
        let (r, _) = render(&grouping, &names, true, Some(&x), "v");
        // shoes (3), shoes/acme (2), then the single-member nodes.
        assert_eq!(r.centroids[0].num_members, 3);
        assert_eq!(r.centroids[0].level, Some(0));
        assert_eq!(r.centroids[0].parent_cluster_id, None);
        assert_eq!(r.centroids[0].centroid_vector, vec![2.0]);
        assert_eq!(r.centroids[1].num_members, 2);
        assert_eq!(r.centroids[1].level, Some(1));
        assert_eq!(
            r.centroids[1].parent_cluster_id.as_deref(),
            Some(r.centroids[0].cluster_id.as_str())
        );
        assert_eq!(r.centroids[1].centroid_vector, vec![1.0]);
        assert_eq!(
            r.num_clusters, 3,
            "leaves: shoes/acme, shoes/zeta, hats/acme"
        );
        assert_eq!(r.memberships.len(), 4, "members belong to the leaves");
        assert!(r.memberships.iter().all(|m| m.distance.is_some()));
        assert!(
            r.centroids[0]
                .label
                .as_deref()
                .unwrap()
                .contains("category=shoes")
        );
    }

    #[test]
    fn without_vectors_groups_have_no_centroid_and_members_no_distance() {
        let attributes = vec![column(&[&["a"], &[], &["a"]])];
        let options = GroupingOptions {
            hierarchical: false,
            aggregation: Aggregation::First,
        };
        let grouping = group(
            &attributes,
            3,
            &options,
            &RunContext::new(0, DeviceKind::Cpu),
        )
        .unwrap();
        let (r, _) = render(&grouping, &["status".to_owned()], false, None, "");
        assert_eq!(r.centroids.len(), 2, "a and the explicit null group");
        assert!(r.centroids.iter().all(|c| c.centroid_vector.is_empty()));
        assert!(r.centroids.iter().all(|c| c.level.is_none()));
        assert!(r.memberships.iter().all(|m| m.distance.is_none()));
        assert_eq!(single_labels(&grouping, 3).map(|l| l.len()), Some(3));
    }
}
