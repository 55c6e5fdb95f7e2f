//! The exact minimum spanning tree of the mutual-reachability graph, by Borůvka's algorithm
//! over the k-nearest-neighbour lists, falling back to pruned GEMM scans only where the
//! lists cannot prove a component's cheapest outgoing edge.
//!
//! Mutual reachability: `w(a, b) = max(core_a, core_b, d(a, b) / alpha)`. Edges are totally
//! ordered by `(w, lower index, higher index)`, so the tree is unique and Borůvka cannot
//! close a cycle on ties. Memory is O(n·k): the lists, and a few per-point arrays.

use rayon::prelude::*;

use super::bounds;
use crate::algorithms::neighbors::{Knn, Points};
use crate::model::{Cancelled, Matrix, RunContext};

/// Neighbours listed per point beyond what the core distance needs: a list that reaches
/// past the core distance is what lets most points prove their cheapest edge without a
/// scan (an unlisted point is at least the list's last distance away).
pub const LIST_K: usize = 16;

/// Longest neighbour list kept: the lists only settle cheap edges (the exactness argument
/// holds for any length), and a list as long as a large `min_samples` would cost N·k.
pub const MAX_LIST_K: usize = 64;

/// Queries per component in the first scan wave of a round; later waves double it. The
/// first wave finds every component a good bound from its most promising points, and that
/// bound (the scan radius and the cut-off for the rest) prunes the later waves.
const FIRST_WAVE_PER_COMPONENT: usize = 2;

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
    pub fn new(core_distances: Vec<f64>, alpha: f64, core_scaled: bool) -> Self {
        let core = if core_scaled {
            core_distances.into_iter().map(|d| d / alpha).collect()
        } else {
            core_distances
        };
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

/// Distinct other components a scanned point remembers (see [`Cache`]).
pub const CACHED_COMPONENTS: usize = 4;

/// A scanned point's cheapest edges to its nearest (up to) [`CACHED_COMPONENTS`] distinct
/// other components at scan time, ascending by key, and `floor`, the scan's final radius R
/// (in weight units): the component's best weight when its wave started, or the worst listed
/// weight once the list was full, whichever is less. Only entries of weight ≤ R are kept.
///
/// Exactness. (1) A kept entry is its component's exact cheapest edge from the point: a
/// lighter edge to that component weighs ≤ R, so its row lies within every radius the scan
/// used (the radius only shrinks, and the filter is widened by a few ulps so that ties are
/// visited) and was visited, and a visited row of a listed component replaces a heavier
/// entry. (2) Every edge to a component without a kept entry is heavier, in key order, than
/// every kept entry, and weighs ≥ R: an unvisited row weighs > R; a visited row of a
/// component that ended unlisted was rejected or evicted while the list was full, so its key
/// exceeds the final worst listed key, which is ≥ every kept key and of weight ≥ R; an entry
/// dropped for weighing > R has, by (1)'s argument, no lighter edge to its component.
/// (3) Borůvka only merges: a component of a later round is a union of scan-time
/// components, and the point's cheapest edge to it is the least over those parts. So while
/// any kept entry is still foreign, the first such entry is the point's exact cheapest
/// outgoing edge (its key beats every listed part and, by (2), every unlisted one), and the
/// point needs no scan. Once every kept entry has merged into the point's own component,
/// `floor` is still a true lower bound on its outgoing edges (weights never change), and the
/// point is scanned again only when that bound does not exceed its component's best.
#[derive(Clone, Copy)]
struct Cached {
    key: Key,
    /// The far endpoint: its component, looked up each round, tells whether the entry is
    /// still foreign.
    to: u32,
}

struct Cache {
    entries: Vec<Cached>,
    len: Vec<u8>,
    floor: Vec<f64>,
    scanned: Vec<bool>,
}

impl Cache {
    fn new(n: usize) -> Self {
        Cache {
            entries: vec![
                Cached {
                    key: Key::NONE,
                    to: u32::MAX,
                };
                n * CACHED_COMPONENTS
            ],
            len: vec![0; n],
            floor: vec![0.0; n],
            scanned: vec![false; n],
        }
    }

    fn of(&self, a: usize) -> &[Cached] {
        &self.entries[a * CACHED_COMPONENTS..a * CACHED_COMPONENTS + self.len[a] as usize]
    }
}

/// A scan query's state: the cheapest edge from point `a` to each of the nearest distinct
/// other components seen so far, ascending by key.
struct Probe {
    a: u32,
    comp: u32,
    /// The component's best weight when the wave started: nothing heavier can matter now.
    limit: f64,
    len: usize,
    keys: [Key; CACHED_COMPONENTS],
    comps: [u32; CACHED_COMPONENTS],
    to: [u32; CACHED_COMPONENTS],
}

impl Probe {
    fn new(a: u32, comp: u32, limit: f64) -> Self {
        Probe {
            a,
            comp,
            limit,
            len: 0,
            keys: [Key::NONE; CACHED_COMPONENTS],
            comps: [u32::MAX; CACHED_COMPONENTS],
            to: [u32::MAX; CACHED_COMPONENTS],
        }
    }

    /// Scan radius in weight units: the component's limit, or less once the list is full.
    fn radius(&self) -> f64 {
        if self.len < CACHED_COMPONENTS {
            self.limit
        } else {
            self.keys[CACHED_COMPONENTS - 1].w.min(self.limit)
        }
    }

    fn offer(&mut self, key: Key, comp: u32, to: u32) {
        let mut at = match self.comps[..self.len].iter().position(|&c| c == comp) {
            Some(i) if key.less(&self.keys[i]) => i,
            Some(_) => return,
            None if self.len < CACHED_COMPONENTS => {
                self.len += 1;
                self.len - 1
            }
            None if key.less(&self.keys[CACHED_COMPONENTS - 1]) => CACHED_COMPONENTS - 1,
            None => return,
        };
        self.keys[at] = key;
        self.comps[at] = comp;
        self.to[at] = to;
        while at > 0 && self.keys[at].less(&self.keys[at - 1]) {
            self.keys.swap(at, at - 1);
            self.comps.swap(at, at - 1);
            self.to.swap(at, at - 1);
            at -= 1;
        }
    }
}

/// What one point knows about its cheapest outgoing edge at the start of a round.
#[derive(Clone, Copy)]
enum Known {
    /// Exactly this edge.
    Exact(Key),
    /// Only that no outgoing edge weighs less than `lb`; `candidate` is the lightest one
    /// seen (an upper bound for the component).
    Bound { lb: f64, candidate: Key },
}

/// Work counters, for tests and tuning: per round, the points scanned and the components
/// whose cheapest edge was read from a cache filled in an earlier round.
#[derive(Debug, Default, Clone)]
pub struct MstStats {
    pub scans: Vec<usize>,
    pub cache_answers: Vec<usize>,
}

/// The minimum spanning tree (n − 1 edges, in the order Borůvka found them).
/// `x` holds the rows `points` was built from; progress is reported under `stage` (the
/// caller's algorithm: HDBSCAN and single linkage share this tree).
pub fn minimum_spanning_tree(
    x: &Matrix,
    points: &Points<'_>,
    knn: &Knn,
    reach: &Reachability,
    stage: &'static str,
    ctx: &RunContext,
) -> Result<Vec<MstEdge>, Cancelled> {
    minimum_spanning_tree_with_stats(x, points, knn, reach, stage, ctx).map(|(edges, _)| edges)
}

pub fn minimum_spanning_tree_with_stats(
    x: &Matrix,
    points: &Points<'_>,
    knn: &Knn,
    reach: &Reachability,
    stage: &'static str,
    ctx: &RunContext,
) -> Result<(Vec<MstEdge>, MstStats), Cancelled> {
    let n = points.len();
    let alpha = reach.alpha;
    let list_full = knn.k >= n;
    let mut uf = UnionFind::new(n);
    let mut edges: Vec<MstEdge> = Vec::with_capacity(n.saturating_sub(1));
    let mut cache = Cache::new(n);
    let mut stats = MstStats::default();
    let mut n_components = n;
    let rows = bounds::Rows::new(x, points.metric());
    let mut cells: Option<bounds::Cells> = None;
    // Candidate edges between the cells' fronts, weighed once.
    let mut fronts: Vec<Key> = Vec::new();

    while n_components > 1 {
        ctx.checkpoint()?;
        let comp: Vec<u32> = (0..n as u32).map(|i| uf.find(i)).collect();

        let known: Vec<Known> = (0..n)
            .into_par_iter()
            .with_min_len(1024)
            .map(|a| {
                if cache.scanned[a] {
                    return match cache.of(a).iter().find(|e| comp[e.to as usize] != comp[a]) {
                        Some(e) => Known::Exact(e.key),
                        None => Known::Bound {
                            lb: cache.floor[a],
                            candidate: Key::NONE,
                        },
                    };
                }
                let mut best = Key::NONE;
                for (&j, &d) in knn.indices_of(a).iter().zip(knn.distances_of(a)) {
                    let j = j as usize;
                    if comp[j] != comp[a] {
                        let k = Key::new(reach.weight(a, j, d), a, j);
                        if k.less(&best) {
                            best = k;
                        }
                    }
                }
                if list_full {
                    return Known::Exact(best);
                }
                // Every unlisted row is at least the list's last distance away; an unlisted
                // edge of equal weight could still win on index, hence the strict test.
                let unlisted = reach.core[a].max(knn.kth_distance(a) / alpha);
                if best.w < unlisted {
                    Known::Exact(best)
                } else {
                    Known::Bound {
                        lb: unlisted,
                        candidate: best,
                    }
                }
            })
            .collect();

        // Any edge seen bounds the cheapest edge of both its components. `from_cache`: the
        // component's best so far was read from a cache filled in an earlier round.
        let mut comp_best = vec![Key::NONE; n];
        let mut from_cache = vec![false; n];
        let offer = |comp_best: &mut [Key], from_cache: &mut [bool], c: usize, k: Key, cached| {
            if k.less(&comp_best[c]) {
                comp_best[c] = k;
                from_cache[c] = cached;
            }
        };
        for a in 0..n {
            let ca = comp[a] as usize;
            let scanned = cache.scanned[a];
            match known[a] {
                Known::Exact(k) => offer(&mut comp_best, &mut from_cache, ca, k, scanned),
                Known::Bound { candidate, .. } => {
                    offer(&mut comp_best, &mut from_cache, ca, candidate, false)
                }
            }
            if scanned {
                for e in cache.of(a) {
                    let c = comp[e.to as usize] as usize;
                    if c != ca {
                        offer(&mut comp_best, &mut from_cache, c, e.key, true);
                    }
                }
            } else {
                for (&j, &d) in knn.indices_of(a).iter().zip(knn.distances_of(a)) {
                    let (j, c) = (j as usize, comp[j as usize] as usize);
                    if c != ca {
                        let k = Key::new(reach.weight(a, j, d), a, j);
                        offer(&mut comp_best, &mut from_cache, c, k, false);
                    }
                }
            }
        }

        if cells.is_none() && n_components <= bounds::MAX_COMPONENTS {
            let built = bounds::Cells::new(&rows, &comp, &reach.core);
            fronts = built
                .front_pairs()
                .into_par_iter()
                .map(|(a, b)| {
                    let (a, b) = (a as usize, b as usize);
                    Key::new(reach.weight(a, b, points.dist(a, b)), a, b)
                })
                .collect();
            cells = Some(built);
        }
        for k in &fronts {
            let (ca, cb) = (comp[k.lo as usize] as usize, comp[k.hi as usize] as usize);
            if ca != cb {
                offer(&mut comp_best, &mut from_cache, ca, *k, false);
                offer(&mut comp_best, &mut from_cache, cb, *k, false);
            }
        }
        // Points that might still beat their component's best, most promising first.
        let mut pending: Vec<(f64, u32)> = (0..n)
            .filter_map(|a| match known[a] {
                Known::Bound { lb, .. } if lb <= comp_best[comp[a] as usize].w => {
                    Some((lb, a as u32))
                }
                _ => None,
            })
            .collect();
        if let (Some(cells), false) = (&cells, pending.is_empty()) {
            let wanted: Vec<u32> = pending.iter().map(|p| p.1).collect();
            let floors = cells.floors(&rows, &comp, &reach.core, alpha, &wanted);
            pending = pending
                .into_iter()
                .zip(floors)
                .map(|((lb, a), f)| (lb.max(f), a))
                .filter(|&(lb, a)| lb <= comp_best[comp[a as usize] as usize].w)
                .collect();
        }
        pending.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let mut scans = 0;
        let mut quota = FIRST_WAVE_PER_COMPONENT;
        let mut taken = vec![0usize; n];
        while !pending.is_empty() {
            let mut batch: Vec<u32> = Vec::new();
            taken.iter_mut().for_each(|t| *t = 0);
            pending.retain(|&(lb, a)| {
                let c = comp[a as usize] as usize;
                if lb > comp_best[c].w {
                    return false;
                }
                if taken[c] == quota {
                    return true;
                }
                taken[c] += 1;
                batch.push(a);
                false
            });
            quota *= 2;
            if batch.is_empty() {
                continue;
            }
            scans += batch.len();
            let probes: Vec<Probe> = batch
                .iter()
                .map(|&a| {
                    let c = comp[a as usize];
                    Probe::new(a, c, comp_best[c as usize].w)
                })
                .collect();
            // Slightly wide, so that an edge tying the radius is still visited.
            let bound = |p: &Probe| p.radius() * alpha * (1.0 + 4.0 * f64::EPSILON);
            // Rows of the query's own component are skipped before their exact distance.
            let foreign = |p: &Probe, j: usize| comp[j] != p.comp;
            let probes = points.scan_where(&batch, ctx, probes, bound, foreign, |p, j, d| {
                p.offer(
                    Key::new(reach.weight(p.a as usize, j, d), p.a as usize, j),
                    comp[j],
                    j as u32,
                );
            })?;
            for p in probes {
                let a = p.a as usize;
                let ca = p.comp as usize;
                let slot = &mut cache.entries[a * CACHED_COMPONENTS..(a + 1) * CACHED_COMPONENTS];
                // Only entries within the final radius are known to be their component's
                // cheapest (an unvisited row lies beyond it); the others are still real
                // edges, bounds for their components.
                let radius = p.radius();
                let kept = p.keys[..p.len].iter().take_while(|k| k.w <= radius).count();
                for (i, s) in slot.iter_mut().enumerate().take(p.len) {
                    *s = Cached {
                        key: p.keys[i],
                        to: p.to[i],
                    };
                    let c = p.comps[i] as usize;
                    offer(&mut comp_best, &mut from_cache, c, p.keys[i], false);
                }
                cache.len[a] = kept as u8;
                cache.floor[a] = radius;
                cache.scanned[a] = true;
                if p.len > 0 {
                    offer(&mut comp_best, &mut from_cache, ca, p.keys[0], false);
                }
            }
        }
        stats.scans.push(scans);

        let mut chosen: Vec<Key> = (0..n)
            .filter(|&c| comp[c] as usize == c && comp_best[c].is_some())
            .map(|c| comp_best[c])
            .collect();
        stats.cache_answers.push(
            (0..n)
                .filter(|&c| comp[c] as usize == c && from_cache[c])
                .count(),
        );
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
        ctx.stage(stage, (edges.len() as f32 / (n - 1) as f32).min(1.0));
    }
    Ok((edges, stats))
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
