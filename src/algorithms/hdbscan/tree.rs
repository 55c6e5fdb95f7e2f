//! From the minimum spanning tree to labels: scikit-learn 1.9.1's `make_single_linkage`
//! (`_linkage.pyx`) and `_condense_tree`, `_compute_stability`, `_get_clusters`,
//! `epsilon_search` and `_do_labelling` (`_tree.pyx`), ported step by step so that the edge
//! cases come out the same.

use super::mst::MstEdge;
use super::params::SelectionMethod;

/// One merge of the single-linkage tree (scipy's format: node `n + i` is merge `i`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    pub left: usize,
    pub right: usize,
    pub distance: f64,
    pub size: usize,
}

/// One row of the condensed tree: `child` (a point `< n`, or a cluster) leaves `parent` at
/// `lambda = 1 / distance`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CondensedRow {
    pub parent: usize,
    pub child: usize,
    pub lambda: f64,
    pub size: usize,
}

/// The single-linkage tree of `n` points from their spanning tree's edges, which must be
/// sorted by weight already.
pub fn single_linkage(n: usize, sorted: &[MstEdge]) -> Vec<Merge> {
    // scipy's union-find: every merge gets a fresh node that parents both roots.
    let mut parent = vec![usize::MAX; 2 * n - 1];
    let mut size = vec![1usize; 2 * n - 1];
    let find = |parent: &mut Vec<usize>, x: usize| {
        let mut root = x;
        while parent[root] != usize::MAX {
            root = parent[root];
        }
        let mut p = x;
        while p != root && parent[p] != root {
            let next = parent[p];
            parent[p] = root;
            p = next;
        }
        root
    };
    let mut merges = Vec::with_capacity(n - 1);
    for (i, e) in sorted.iter().enumerate() {
        let l = find(&mut parent, e.a as usize);
        let r = find(&mut parent, e.b as usize);
        let node = n + i;
        size[node] = size[l] + size[r];
        parent[l] = node;
        parent[r] = node;
        merges.push(Merge {
            left: l,
            right: r,
            distance: e.weight,
            size: size[node],
        });
    }
    merges
}

/// Nodes of the single-linkage tree under `root`, breadth first (`bfs_from_hierarchy`).
fn bfs_hierarchy(h: &[Merge], n: usize, root: usize, out: &mut Vec<usize>) {
    out.clear();
    out.push(root);
    let mut start = 0;
    while start < out.len() {
        let end = out.len();
        for i in start..end {
            let node = out[i];
            if node >= n {
                let m = h[node - n];
                out.push(m.left);
                out.push(m.right);
            }
        }
        start = end;
    }
}

/// `_condense_tree`: walk the hierarchy from the top; a split where both sides have at
/// least `min_cluster_size` points makes two new clusters, otherwise the small side's
/// points fall out of the current cluster.
pub fn condense_tree(h: &[Merge], min_cluster_size: usize) -> Vec<CondensedRow> {
    let n = h.len() + 1;
    let root = 2 * h.len();
    let mut node_list = Vec::with_capacity(2 * n - 1);
    bfs_hierarchy(h, n, root, &mut node_list);
    let mut relabel = vec![0usize; root + 1];
    relabel[root] = n;
    let mut next_label = n + 1;
    let mut ignore = vec![false; node_list.len()];
    let mut out = Vec::new();
    let mut sub = Vec::new();
    let count = |node: usize| if node >= n { h[node - n].size } else { 1 };

    for &node in &node_list {
        if ignore[node] || node < n {
            continue;
        }
        let m = h[node - n];
        let lambda = if m.distance > 0.0 {
            1.0 / m.distance
        } else {
            f64::INFINITY
        };
        let (lc, rc) = (count(m.left), count(m.right));
        let here = relabel[node];
        let mut fall_out = |side: usize, out: &mut Vec<CondensedRow>, ignore: &mut Vec<bool>| {
            bfs_hierarchy(h, n, side, &mut sub);
            for &s in &sub {
                if s < n {
                    out.push(CondensedRow {
                        parent: here,
                        child: s,
                        lambda,
                        size: 1,
                    });
                }
                ignore[s] = true;
            }
        };
        if lc >= min_cluster_size && rc >= min_cluster_size {
            relabel[m.left] = next_label;
            next_label += 1;
            out.push(CondensedRow {
                parent: relabel[node],
                child: relabel[m.left],
                lambda,
                size: lc,
            });
            relabel[m.right] = next_label;
            next_label += 1;
            out.push(CondensedRow {
                parent: relabel[node],
                child: relabel[m.right],
                lambda,
                size: rc,
            });
        } else if lc < min_cluster_size && rc < min_cluster_size {
            fall_out(m.left, &mut out, &mut ignore);
            fall_out(m.right, &mut out, &mut ignore);
        } else if lc < min_cluster_size {
            relabel[m.right] = relabel[node];
            fall_out(m.left, &mut out, &mut ignore);
        } else {
            relabel[m.left] = relabel[node];
            fall_out(m.right, &mut out, &mut ignore);
        }
    }
    out
}

/// Cluster ids run from `root` (= n) to `root + len − 1`.
struct Clusters {
    root: usize,
    /// `_compute_stability`, indexed by `id − root`.
    stability: Vec<f64>,
    /// Rows of the cluster tree (condensed rows whose child is a cluster), in order.
    tree: Vec<CondensedRow>,
    /// Cluster children of each cluster, in row order.
    children: Vec<Vec<usize>>,
    /// Parent and birth lambda of each non-root cluster.
    parent: Vec<usize>,
    birth: Vec<f64>,
}

impl Clusters {
    fn new(condensed: &[CondensedRow]) -> Clusters {
        let root = condensed.iter().map(|r| r.parent).min().unwrap_or(0);
        let max_parent = condensed.iter().map(|r| r.parent).max().unwrap_or(root);
        let len = max_parent - root + 1;
        // Births of clusters that never become parents are not needed: only parents have a
        // stability, and a cluster always has points falling out of it.
        let mut birth = vec![f64::NAN; len];
        let mut parent = vec![usize::MAX; len];
        birth[0] = 0.0;
        let tree: Vec<CondensedRow> = condensed.iter().copied().filter(|r| r.size > 1).collect();
        let mut children = vec![Vec::new(); len];
        for r in &tree {
            if r.child >= root && r.child - root < len {
                birth[r.child - root] = r.lambda;
                parent[r.child - root] = r.parent;
            }
            children[r.parent - root].push(r.child);
        }
        let mut stability = vec![0f64; len];
        for r in condensed {
            let p = r.parent - root;
            stability[p] += (r.lambda - birth[p]) * r.size as f64;
        }
        Clusters {
            root,
            stability,
            tree,
            children,
            parent,
            birth,
        }
    }

    /// `bfs_from_cluster_tree`, without the start node.
    fn descendants(&self, c: usize) -> Vec<usize> {
        let mut out = vec![c];
        let mut i = 0;
        while i < out.len() {
            let node = out[i];
            out.extend_from_slice(&self.children[node - self.root]);
            i += 1;
        }
        out.remove(0);
        out
    }

    /// `get_cluster_tree_leaves`: leaves of the cluster tree, depth first.
    fn leaves(&self) -> Vec<usize> {
        if self.tree.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut stack = vec![self.root];
        while let Some(node) = stack.pop() {
            let ch = &self.children[node - self.root];
            if ch.is_empty() {
                out.push(node);
            } else {
                stack.extend(ch.iter().rev());
            }
        }
        out
    }

    /// `traverse_upwards`.
    fn traverse_upwards(&self, epsilon: f64, leaf: usize, allow_single: bool) -> usize {
        let mut leaf = leaf;
        loop {
            let parent = self.parent[leaf - self.root];
            if parent == self.root {
                return if allow_single { parent } else { leaf };
            }
            let parent_eps = 1.0 / self.birth[parent - self.root];
            if parent_eps > epsilon {
                return parent;
            }
            leaf = parent;
        }
    }

    /// `epsilon_search`: `candidates` in the order scikit-learn's Python set yields them,
    /// which decides the outcome when nested candidates compete.
    fn epsilon_search(&self, candidates: &[usize], epsilon: f64, allow_single: bool) -> Vec<usize> {
        let mut selected = Vec::new();
        let mut processed = vec![false; self.stability.len()];
        for leaf in py_set_order(candidates) {
            let eps = 1.0 / self.birth[leaf - self.root];
            if eps < epsilon {
                if !processed[leaf - self.root] {
                    let up = self.traverse_upwards(epsilon, leaf, allow_single);
                    selected.push(up);
                    for s in self.descendants(up) {
                        processed[s - self.root] = true;
                    }
                }
            } else {
                selected.push(leaf);
            }
        }
        selected
    }
}

/// The selection options of `_get_clusters`.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub method: SelectionMethod,
    pub allow_single_cluster: bool,
    pub epsilon: f64,
    pub max_cluster_size: Option<usize>,
}

/// `_get_clusters` followed by `_do_labelling`: a label per point, −1 for noise, clusters
/// numbered in the order of their condensed-tree ids. Returns the labels and the number of
/// clusters labelled.
pub fn labels(condensed: &[CondensedRow], n: usize, sel: Selection) -> (Vec<i64>, usize) {
    if condensed.is_empty() {
        return (vec![-1; n], 0);
    }
    let mut cl = Clusters::new(condensed);
    let root = cl.root;
    let len = cl.stability.len();
    // Ids in descending order are a bottom-up order of the tree.
    let node_list: Vec<usize> = (root..root + len)
        .rev()
        .filter(|&c| sel.allow_single_cluster || c != root)
        .collect();
    let mut in_dict = vec![false; len];
    let mut is_cluster = vec![false; len];
    for &c in &node_list {
        in_dict[c - root] = true;
        is_cluster[c - root] = true;
    }
    let n_samples = condensed
        .iter()
        .filter(|r| r.size == 1)
        .map(|r| r.child)
        .max()
        .map_or(0, |m| m + 1);
    let max_cluster_size = sel.max_cluster_size.unwrap_or(n_samples + 1);
    let mut cluster_size = vec![0usize; len];
    for r in &cl.tree {
        cluster_size[r.child - root] = r.size;
    }
    if sel.allow_single_cluster {
        cluster_size[0] = cl
            .tree
            .iter()
            .filter(|r| r.parent == root)
            .map(|r| r.size)
            .sum();
    }

    let selected: Vec<usize> = match sel.method {
        SelectionMethod::Eom => {
            for &node in &node_list {
                let subtree: f64 = cl.children[node - root]
                    .iter()
                    .map(|&c| cl.stability[c - root])
                    .sum();
                if subtree > cl.stability[node - root]
                    || cluster_size[node - root] > max_cluster_size
                {
                    is_cluster[node - root] = false;
                    cl.stability[node - root] = subtree;
                } else {
                    for s in cl.descendants(node) {
                        is_cluster[s - root] = false;
                    }
                }
            }
            let eom: Vec<usize> = node_list
                .iter()
                .copied()
                .filter(|&c| is_cluster[c - root])
                .collect();
            if sel.epsilon != 0.0 && !cl.tree.is_empty() {
                if eom.len() == 1 && eom[0] == root {
                    if sel.allow_single_cluster {
                        eom
                    } else {
                        Vec::new()
                    }
                } else {
                    cl.epsilon_search(&eom, sel.epsilon, sel.allow_single_cluster)
                }
            } else {
                eom
            }
        }
        SelectionMethod::Leaf => {
            let leaves = cl.leaves();
            if sel.epsilon != 0.0 {
                cl.epsilon_search(&leaves, sel.epsilon, sel.allow_single_cluster)
            } else {
                leaves
            }
        }
    };
    // scikit-learn keeps only selected ids that are keys of its `is_cluster` dict.
    let mut clusters: Vec<usize> = selected
        .into_iter()
        .filter(|&c| in_dict[c - root])
        .collect();
    clusters.sort_unstable();
    clusters.dedup();
    let label_of = |c: usize| clusters.binary_search(&c).ok().map(|i| i as i64);

    // `_do_labelling`: every point belongs to its nearest selected ancestor, or the root.
    // The rows run parents before children, so one pass resolves every node.
    let mut owner = vec![
        usize::MAX;
        condensed
            .iter()
            .map(|r| r.child)
            .max()
            .unwrap_or(0)
            .max(root)
            + 1
    ];
    owner[root] = root;
    let mut point_lambda = vec![f64::NAN; n];
    for r in condensed {
        let selected = label_of(r.child).is_some();
        owner[r.child] = if selected { r.child } else { owner[r.parent] };
        if r.child < n {
            point_lambda[r.child] = r.lambda;
        }
    }
    let single = clusters.len() == 1 && sel.allow_single_cluster;
    let threshold = if sel.epsilon != 0.0 {
        1.0 / sel.epsilon
    } else {
        // Only the root's rows matter here: the branch below is for points left at the root.
        condensed
            .iter()
            .filter(|r| r.parent == root)
            .map(|r| r.lambda)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let labels = (0..n)
        .map(|i| {
            let c = owner[i];
            if c != root {
                label_of(c).unwrap_or(-1)
            } else if single && point_lambda[i] >= threshold {
                // scikit-learn would fail looking up an unselected root; noise is the only
                // meaningful answer there.
                label_of(root).unwrap_or(-1)
            } else {
                -1
            }
        })
        .collect::<Vec<i64>>();
    // A lone selected root can end up with no member (every point below the threshold);
    // scikit-learn then reports only noise, so the count is of labels actually given.
    let n_clusters = labels
        .iter()
        .copied()
        .max()
        .map_or(0, |m| (m + 1).max(0) as usize);
    (labels, n_clusters)
}

/// The iteration order of CPython 3.11's `set(keys)` for distinct non-negative integers
/// (callers pass distinct keys; equal keys are not merged)
/// (hash = value): open addressing with linear probes then perturbation, resized by
/// `set_table_resize` as the set fills.
pub fn py_set_order(keys: &[usize]) -> Vec<usize> {
    const LINEAR_PROBES: usize = 9;
    const PERTURB_SHIFT: u32 = 5;
    fn insert(table: &mut [Option<usize>], key: usize) {
        let mask = table.len() - 1;
        let mut perturb = key;
        let mut i = key & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            if let Some(slot) = table[i..=i + probes].iter_mut().find(|s| s.is_none()) {
                *slot = Some(key);
                return;
            }
            perturb >>= PERTURB_SHIFT;
            i = (i.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb)) & mask;
        }
    }
    let mut table: Vec<Option<usize>> = vec![None; 8];
    let mut used = 0usize;
    for &k in keys {
        insert(&mut table, k);
        used += 1;
        let mask = table.len() - 1;
        if used * 5 >= mask * 3 {
            let min_used = if used > 50_000 { used * 2 } else { used * 4 };
            let mut size = 8;
            while size <= min_used {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for k in old.into_iter().flatten() {
                insert(&mut table, k);
            }
        }
    }
    table.into_iter().flatten().collect()
}
