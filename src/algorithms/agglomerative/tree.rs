//! From merges to labels: scipy's `label` (relabelling merges as tree nodes) and
//! scikit-learn 1.9.1's `_hc_cut` (cutting the tree into `n_clusters`) and its
//! `distance_threshold` rule, ported so that label numbering is the same too.

/// A merge as an algorithm found it: the clusters are named by a representative row (the
/// nearest-neighbour chain's convention: a merged cluster keeps the higher index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub a: u32,
    pub b: u32,
    pub height: f64,
}

/// One merge of the tree in scipy's format: node `n + i` is merge `i`, `left < right`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    pub left: usize,
    pub right: usize,
    pub height: f64,
}

/// The tree of `n` rows from its `n − 1` steps: sorted by height, stably (scipy's
/// `argsort(kind='mergesort')`), then relabelled by union–find as scipy's `label` does.
pub fn tree_from_steps(n: usize, mut steps: Vec<Step>) -> Vec<Merge> {
    steps.sort_by(|x, y| x.height.total_cmp(&y.height));
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    let find = |parent: &mut Vec<usize>, x: usize| {
        let mut root = x;
        while parent[root] != root {
            root = parent[root];
        }
        let mut p = x;
        while parent[p] != root {
            let next = parent[p];
            parent[p] = root;
            p = next;
        }
        root
    };
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ra = find(&mut parent, s.a as usize);
            let rb = find(&mut parent, s.b as usize);
            let node = n + i;
            parent[ra] = node;
            parent[rb] = node;
            Merge {
                left: ra.min(rb),
                right: ra.max(rb),
                height: s.height,
            }
        })
        .collect()
}

/// scikit-learn's rule for `distance_threshold`: one cluster plus one per merge at a
/// height at or above the threshold.
pub fn clusters_at_threshold(merges: &[Merge], threshold: f64) -> usize {
    merges.iter().filter(|m| m.height >= threshold).count() + 1
}

/// `_hc_cut`: split the highest node until there are `k` (1 ≤ k ≤ n); each row is labelled
/// by the position of its top node in the heap, as scikit-learn numbers them.
pub fn cut(n: usize, merges: &[Merge], k: usize) -> Vec<i64> {
    // Python's heapq over negated node ids, so the highest node sits at the top.
    let root = merges.last().map_or(0, |m| m.right + 1);
    let mut heap: Vec<i64> = vec![-(root as i64)];
    for _ in 1..k {
        let top = (-heap[0]) as usize;
        let m = merges[top - n];
        heap_push(&mut heap, -(m.left as i64));
        heap_push_pop(&mut heap, -(m.right as i64));
    }
    let mut labels = vec![0i64; n];
    let mut stack = Vec::new();
    for (label, &node) in heap.iter().enumerate() {
        stack.push((-node) as usize);
        while let Some(v) = stack.pop() {
            if v < n {
                labels[v] = label as i64;
            } else {
                let m = merges[v - n];
                stack.push(m.left);
                stack.push(m.right);
            }
        }
    }
    labels
}

fn heap_push(heap: &mut Vec<i64>, item: i64) {
    heap.push(item);
    let last = heap.len() - 1;
    sift_down(heap, 0, last);
}

/// `heapq.heappushpop`: push, then pop the smallest (the item itself if it is smallest).
fn heap_push_pop(heap: &mut [i64], item: i64) -> i64 {
    if !heap.is_empty() && heap[0] < item {
        let out = heap[0];
        heap[0] = item;
        sift_up(heap, 0);
        out
    } else {
        item
    }
}

fn sift_down(heap: &mut [i64], start: usize, mut pos: usize) {
    let item = heap[pos];
    while pos > start {
        let parent = (pos - 1) >> 1;
        if item < heap[parent] {
            heap[pos] = heap[parent];
            pos = parent;
        } else {
            break;
        }
    }
    heap[pos] = item;
}

fn sift_up(heap: &mut [i64], mut pos: usize) {
    let end = heap.len();
    let start = pos;
    let item = heap[pos];
    let mut child = 2 * pos + 1;
    while child < end {
        let right = child + 1;
        if right < end && heap[child] >= heap[right] {
            child = right;
        }
        heap[pos] = heap[child];
        pos = child;
        child = 2 * pos + 1;
    }
    heap[pos] = item;
    sift_down(heap, start, pos);
}
