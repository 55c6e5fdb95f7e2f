//! The exact minimum spanning tree of the mutual-reachability graph, by Borůvka's algorithm
//! over the k-nearest-neighbour lists, falling back to pruned GEMM scans only where the
//! lists cannot prove a component's cheapest outgoing edge.
//!
//! Mutual reachability: `w(a, b) = max(core_a, core_b, d(a, b) / alpha)`. Edges are totally
//! ordered by `(w, lower index, higher index)`, so the tree is unique and Borůvka cannot
//! close a cycle on ties. Memory is O(n·k): the lists, and a few per-point arrays.

use rayon::prelude::*;

use crate::algorithms::neighbors::{Knn, Points};
use crate::model::{Cancelled, ProgressEvent, RunContext};

/// Neighbours listed per point beyond what the core distance needs: a list that reaches
/// past the core distance is what lets most points prove their cheapest edge without a
/// scan (an unlisted point is at least the list's last distance away).
pub const LIST_K: usize = 16;

/// Queries in the first scan wave of a round; later waves double. Small first waves let the
/// most promising points tighten each component's bound before the rest are considered.
const FIRST_WAVE: usize = 512;

/// One tree edge, `a < b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MstEdge {
    pub a: u32,
    pub b: u32,
    pub weight: f64,
}

/// An edge as Borůvka compares them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key {
    w: f64,
    lo: u32,
    hi: u32,
}

impl Key {
    const NONE: Key = Key {
        w: f64::INFINITY,
        lo: u32::MAX,
        hi: u32::MAX,
    };

    fn new(w: f64, a: usize, b: usize) -> Key {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        Key {
            w,
            lo: lo as u32,
            hi: hi as u32,
        }
    }

    fn less(&self, o: &Key) -> bool {
        self.w
            .total_cmp(&o.w)
            .then(self.lo.cmp(&o.lo))
            .then(self.hi.cmp(&o.hi))
            .is_lt()
    }

    fn is_some(&self) -> bool {
        self.lo != u32::MAX
    }
}

/// Core distances and the mutual-reachability weight.
pub struct Reachability {
    pub core: Vec<f64>,
    pub alpha: f64,
}

impl Reachability {
    /// `core_scaled`: scikit-learn's brute path divides the whole distance matrix by
    /// `alpha`, core distances included; its tree paths divide only the pairwise term.
    pub fn new(knn: &Knn, min_samples: usize, alpha: f64, core_scaled: bool) -> Self {
        let n = knn.indices.len() / knn.k.max(1);
        let core = (0..n)
            .map(|i| {
                let d = knn.distances_of(i)[min_samples - 1];
                if core_scaled { d / alpha } else { d }
            })
            .collect();
        Reachability { core, alpha }
    }

    #[inline]
    pub fn weight(&self, a: usize, b: usize, d: f64) -> f64 {
        self.core[a].max(self.core[b]).max(d / self.alpha)
    }
}

struct UnionFind {
    parent: Vec<u32>,
    rank: Vec<u8>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
            rank: vec![0; n],
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        let mut root = x;
        while self.parent[root as usize] != root {
            root = self.parent[root as usize];
        }
        while self.parent[x as usize] != root {
            let next = self.parent[x as usize];
            self.parent[x as usize] = root;
            x = next;
        }
        root
    }

    fn union(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (ra, rb) = if self.rank[ra as usize] < self.rank[rb as usize] {
            (rb, ra)
        } else {
            (ra, rb)
        };
        self.parent[rb as usize] = ra;
        if self.rank[ra as usize] == self.rank[rb as usize] {
            self.rank[ra as usize] += 1;
        }
        true
    }
}

/// A scan query's state: the best edge found from point `a` to another component.
struct Probe {
    a: u32,
    comp: u32,
    best: Key,
    /// The component's best edge weight when the wave started: nothing heavier can matter.
    limit: f64,
    /// The nearest point of another component seen.
    nearest_other: f64,
}

/// The minimum spanning tree (n − 1 edges, in the order Borůvka found them).
pub fn minimum_spanning_tree(
    points: &Points<'_>,
    knn: &Knn,
    reach: &Reachability,
    ctx: &RunContext,
) -> Result<Vec<MstEdge>, Cancelled> {
    let n = points.len();
    let alpha = reach.alpha;
    let list_full = knn.k >= n;
    let mut uf = UnionFind::new(n);
    let mut edges: Vec<MstEdge> = Vec::with_capacity(n.saturating_sub(1));
    // A lower bound on the distance from each point to any point outside its component.
    // Components only grow, so a bound once proved stays true.
    let mut out_lb = vec![0f64; n];
    let mut n_components = n;

    while n_components > 1 {
        ctx.checkpoint()?;
        let comp: Vec<u32> = (0..n as u32).map(|i| uf.find(i)).collect();

        // Each point's cheapest listed edge, and its nearest listed point elsewhere.
        let listed: Vec<(Key, f64)> = (0..n)
            .into_par_iter()
            .with_min_len(1024)
            .map(|a| {
                let mut best = Key::NONE;
                let mut nearest = f64::INFINITY;
                for (&j, &d) in knn.indices_of(a).iter().zip(knn.distances_of(a)) {
                    let j = j as usize;
                    if comp[j] == comp[a] {
                        continue;
                    }
                    nearest = nearest.min(d);
                    let k = Key::new(reach.weight(a, j, d), a, j);
                    if k.less(&best) {
                        best = k;
                    }
                }
                (best, nearest)
            })
            .collect();

        // A listed edge bounds the cheapest edge of both its components.
        let mut comp_best = vec![Key::NONE; n];
        for a in 0..n {
            let (best, nearest) = listed[a];
            let ca = comp[a] as usize;
            if best.less(&comp_best[ca]) {
                comp_best[ca] = best;
            }
            let lb = if nearest.is_finite() {
                nearest
            } else {
                knn.kth_distance(a)
            };
            out_lb[a] = out_lb[a].max(lb);
            for (&j, &d) in knn.indices_of(a).iter().zip(knn.distances_of(a)) {
                let cj = comp[j as usize] as usize;
                if cj == ca {
                    continue;
                }
                let k = Key::new(reach.weight(a, j as usize, d), a, j as usize);
                if k.less(&comp_best[cj]) {
                    comp_best[cj] = k;
                }
            }
        }

        if !list_full {
            // Points whose unlisted edges might still beat their component's best: every
            // unlisted point is at least max(d_k, out_lb) away.
            let unlisted_lb =
                |a: usize| reach.core[a].max(knn.kth_distance(a).max(out_lb[a]) / alpha);
            let mut pending: Vec<(f64, u32)> = (0..n)
                .filter_map(|a| {
                    let lb = unlisted_lb(a);
                    (lb <= comp_best[comp[a] as usize].w).then_some((lb, a as u32))
                })
                .collect();
            pending.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let mut wave = FIRST_WAVE;
            let mut pos = 0;
            while pos < pending.len() {
                let mut batch: Vec<u32> = Vec::with_capacity(wave);
                while pos < pending.len() && batch.len() < wave {
                    let (lb, a) = pending[pos];
                    pos += 1;
                    if lb <= comp_best[comp[a as usize] as usize].w {
                        batch.push(a);
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let probes: Vec<Probe> = batch
                    .iter()
                    .map(|&a| Probe {
                        a,
                        comp: comp[a as usize],
                        best: listed[a as usize].0,
                        limit: comp_best[comp[a as usize] as usize].w,
                        nearest_other: f64::INFINITY,
                    })
                    .collect();
                let bound = |p: &Probe| {
                    // Slightly wide, so that an edge tying the limit is still visited.
                    p.best.w.min(p.limit) * alpha * (1.0 + 4.0 * f64::EPSILON)
                };
                let probes = points.scan(&batch, ctx, probes, bound, |p, j, d| {
                    if comp[j] == p.comp {
                        return;
                    }
                    p.nearest_other = p.nearest_other.min(d);
                    let k = Key::new(reach.weight(p.a as usize, j, d), p.a as usize, j);
                    if k.less(&p.best) {
                        p.best = k;
                    }
                })?;
                for p in probes {
                    let a = p.a as usize;
                    // Rows the scan skipped lie beyond its final radius.
                    let radius = p.best.w.min(p.limit) * alpha;
                    out_lb[a] = out_lb[a].max(p.nearest_other.min(radius));
                    let c = p.comp as usize;
                    if p.best.less(&comp_best[c]) {
                        comp_best[c] = p.best;
                    }
                }
                wave *= 2;
            }
        }

        let mut chosen: Vec<Key> = (0..n)
            .filter(|&c| comp[c] as usize == c && comp_best[c].is_some())
            .map(|c| comp_best[c])
            .collect();
        chosen.sort_by(|x, y| {
            x.w.total_cmp(&y.w)
                .then(x.lo.cmp(&y.lo))
                .then(x.hi.cmp(&y.hi))
        });
        chosen.dedup_by(|x, y| x.lo == y.lo && x.hi == y.hi);
        for k in chosen {
            if uf.union(k.lo, k.hi) {
                edges.push(MstEdge {
                    a: k.lo,
                    b: k.hi,
                    weight: k.w,
                });
                n_components -= 1;
            }
        }
        ctx.progress(ProgressEvent {
            stage: "hdbscan:mst",
            fraction: (edges.len() as f32 / (n - 1) as f32).min(1.0),
            iteration: None,
            inertia: None,
        });
    }
    Ok(edges)
}

/// Prim's algorithm over exact distances: O(n²) time, O(n) memory. The oracle the tests
/// check Borůvka against.
#[cfg(test)]
pub fn prim_weight(points: &Points<'_>, reach: &Reachability) -> f64 {
    let n = points.len();
    let mut in_tree = vec![false; n];
    let mut best = vec![f64::INFINITY; n];
    let mut row = vec![0f64; n];
    let mut current = 0;
    let mut total = 0.0;
    for _ in 1..n {
        in_tree[current] = true;
        points.dists_from(current, &mut row);
        let mut next = usize::MAX;
        for j in 0..n {
            if in_tree[j] {
                continue;
            }
            best[j] = best[j].min(reach.weight(current, j, row[j]));
            if next == usize::MAX || best[j] < best[next] {
                next = j;
            }
        }
        total += best[next];
        current = next;
    }
    total
}
