//! Lower bounds on how far each point is from every other component, from projections on
//! the lines joining component centroids: for any unit vector `u`, `‖b − a‖ ≥ ⟨b − a, u⟩`,
//! so with `u` pointing from component A's centroid to B's, a point `a` of A is at least
//! `min_{b∈B} ⟨b, u⟩ − ⟨a, u⟩` from every point of B. Once components are whole clusters,
//! most points sit well inside their own side of every such line, which proves them unable
//! to carry their component's cheapest edge without a scan of all rows.
//!
//! Cost O(n·c·d) for c cells, memory O(c²·d): used only while c is small.

use rayon::prelude::*;

use crate::algorithms::neighbors::Metric;
use crate::model::Matrix;

/// Components above this count are left to the other bounds (the work grows as c·n·d).
pub const MAX_COMPONENTS: usize = 64;

/// Points per parallel task.
const CHUNK: usize = 256;

/// Each row as the vector the metric compares: itself (Euclidean), or itself over its norm
/// (cosine; a zero row stays zero). The scale is kept per row and applied on the fly.
pub struct Rows<'a> {
    x: &'a Matrix,
    scale: Vec<f64>,
    metric: Metric,
    /// Relative rounding allowance of a length-d dot product in f64, with room to spare.
    tol: f64,
    /// Largest scaled row norm: the projections' absolute error is relative to it.
    max_norm: f64,
}

impl<'a> Rows<'a> {
    pub fn new(x: &'a Matrix, metric: Metric) -> Self {
        let norms: Vec<f64> = (0..x.rows())
            .into_par_iter()
            .with_min_len(1024)
            .map(|i| {
                x.row(i)
                    .iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        let scale: Vec<f64> = match metric {
            Metric::Euclidean => vec![1.0; x.rows()],
            Metric::Cosine => norms
                .iter()
                .map(|&n| if n > 0.0 { 1.0 / n } else { 0.0 })
                .collect(),
        };
        let max_norm = norms
            .iter()
            .zip(&scale)
            .map(|(&n, &s)| n * s)
            .fold(0.0, f64::max);
        Rows {
            x,
            scale,
            metric,
            tol: 64.0 * (x.cols() as f64 + 8.0) * f64::EPSILON,
            max_norm,
        }
    }

    fn dot(&self, i: usize, u: &[f64]) -> f64 {
        let s = self.scale[i];
        self.x
            .row(i)
            .iter()
            .zip(u)
            .map(|(&v, &w)| f64::from(v) * w)
            .sum::<f64>()
            * s
    }

    /// A lower bound on the metric's distance (as `Points::dist` computes it) between two
    /// rows whose projections on a unit direction differ by `gap`.
    fn distance_floor(&self, gap: f64) -> f64 {
        // The projections' own rounding, then the direction's norm and the distance's
        // rounding, each well inside `tol`.
        let euclid = (gap - 2.0 * self.tol * self.max_norm).max(0.0) * (1.0 - self.tol);
        match self.metric {
            Metric::Euclidean => euclid,
            // 1 − cos(a, b) = ‖â − b̂‖² / 2 for unit rows; with a zero row the distance is 1
            // while the half square is at most 1/2, so the bound still holds.
            Metric::Cosine => (euclid * euclid / 2.0 - self.tol).clamp(0.0, 2.0),
        }
    }
}

/// A fixed partition of the rows into cells, each inside one component for good (the
/// components of the round that built it: Borůvka only merges), with the projection data
/// between every pair of cells. A point's floor is the least bound over the cells that are
/// still foreign to it, so merged components, however elongated, keep the sharp lines
/// between their parts.
pub struct Cells {
    c: usize,
    d: usize,
    cell: Vec<u32>,
    /// A member of each cell: its component is the cell's component.
    rep: Vec<u32>,
    min_core: Vec<f64>,
    /// `dir[(G·c + H)·d ..]`: unit vector from G's centroid towards H's; the reverse is its
    /// exact negation, so both sides of a pair project on the same line. Zero where the
    /// centroids coincide, which gives no bound.
    dir: Vec<f64>,
    /// `far[H·c + G]`: the largest projection of a point of H on the line from H towards G,
    /// so that every point of H projects at least `−far` on the line from G towards H.
    far: Vec<f64>,
    /// `front[H·c + G]`: the point of H attaining `far` (the lowest index among equals): the
    /// two fronts of a pair of cells make a good candidate edge between them.
    front: Vec<u32>,
}

impl Cells {
    /// Cells from the current components (`comp[i]`: the root of row `i`'s component).
    pub fn new(rows: &Rows<'_>, comp: &[u32], core: &[f64]) -> Self {
        let n = comp.len();
        let d = rows.x.cols();
        let mut dense = vec![u32::MAX; n];
        let mut rep = Vec::new();
        let cell: Vec<u32> = comp
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                if dense[r as usize] == u32::MAX {
                    dense[r as usize] = rep.len() as u32;
                    rep.push(i as u32);
                }
                dense[r as usize]
            })
            .collect();
        let c = rep.len();

        let (mut centroid, count, min_core) = (0..n)
            .into_par_iter()
            .with_min_len(CHUNK)
            .fold(
                || (vec![0f64; c * d], vec![0usize; c], vec![f64::INFINITY; c]),
                |(mut sum, mut count, mut min_core), i| {
                    let k = cell[i] as usize;
                    let s = rows.scale[i];
                    for (acc, &v) in sum[k * d..(k + 1) * d].iter_mut().zip(rows.x.row(i)) {
                        *acc += f64::from(v) * s;
                    }
                    count[k] += 1;
                    min_core[k] = min_core[k].min(core[i]);
                    (sum, count, min_core)
                },
            )
            .reduce(
                || (vec![0f64; c * d], vec![0usize; c], vec![f64::INFINITY; c]),
                |(mut s1, mut n1, mut m1), (s2, n2, m2)| {
                    s1.iter_mut().zip(s2).for_each(|(a, b)| *a += b);
                    n1.iter_mut().zip(n2).for_each(|(a, b)| *a += b);
                    m1.iter_mut().zip(m2).for_each(|(a, b)| *a = a.min(b));
                    (s1, n1, m1)
                },
            );
        for k in 0..c {
            let inv = 1.0 / count[k].max(1) as f64;
            centroid[k * d..(k + 1) * d]
                .iter_mut()
                .for_each(|v| *v *= inv);
        }

        let mut dir = vec![0f64; c * c * d];
        for g in 0..c {
            for h in g + 1..c {
                let (cg, ch) = (&centroid[g * d..(g + 1) * d], &centroid[h * d..(h + 1) * d]);
                let len = cg
                    .iter()
                    .zip(ch)
                    .map(|(x, y)| (y - x) * (y - x))
                    .sum::<f64>()
                    .sqrt();
                if !(len > 0.0 && len.is_finite()) {
                    continue;
                }
                for t in 0..d {
                    let u = (ch[t] - cg[t]) / len;
                    dir[(g * c + h) * d + t] = u;
                    dir[(h * c + g) * d + t] = -u;
                }
            }
        }

        let mut cells = Cells {
            c,
            d,
            cell,
            rep,
            min_core,
            dir,
            far: Vec::new(),
            front: Vec::new(),
        };
        // Ties go to the lower index whatever the split into tasks, so the fronts (and the
        // candidate edges built from them) do not depend on the thread count.
        let better = |p: f64, i: u32, q: f64, j: u32| p > q || (p == q && i < j);
        let (far, front) = (0..n)
            .into_par_iter()
            .with_min_len(CHUNK)
            .fold(
                || (vec![f64::NEG_INFINITY; c * c], vec![u32::MAX; c * c]),
                |(mut far, mut front), i| {
                    let h = cells.cell[i] as usize;
                    for g in (0..c).filter(|&g| g != h) {
                        let p = rows.dot(i, cells.dir(h, g));
                        let at = h * c + g;
                        if better(p, i as u32, far[at], front[at]) {
                            far[at] = p;
                            front[at] = i as u32;
                        }
                    }
                    (far, front)
                },
            )
            .reduce(
                || (vec![f64::NEG_INFINITY; c * c], vec![u32::MAX; c * c]),
                |(mut far, mut front), (far2, front2)| {
                    for at in 0..c * c {
                        if better(far2[at], front2[at], far[at], front[at]) {
                            far[at] = far2[at];
                            front[at] = front2[at];
                        }
                    }
                    (far, front)
                },
            );
        cells.far = far;
        cells.front = front;
        cells
    }

    /// For every pair of cells, the pair of their fronts facing each other: real edges,
    /// usually close to the cheapest between the two cells.
    pub fn front_pairs(&self) -> Vec<(u32, u32)> {
        let c = self.c;
        (0..c)
            .flat_map(|g| (g + 1..c).map(move |h| (g, h)))
            .map(|(g, h)| (self.front[g * c + h], self.front[h * c + g]))
            .filter(|&(a, b)| a != u32::MAX && b != u32::MAX)
            .collect()
    }

    fn dir(&self, from: usize, to: usize) -> &[f64] {
        let at = (from * self.c + to) * self.d;
        &self.dir[at..at + self.d]
    }

    /// For each point `a` of `wanted`, a lower bound on `max(core_a, core_b, d(a, b) / alpha)`
    /// over every `b` outside its current component (`comp`: roots, as for [`Self::new`]).
    pub fn floors(
        &self,
        rows: &Rows<'_>,
        comp: &[u32],
        core: &[f64],
        alpha: f64,
        wanted: &[u32],
    ) -> Vec<f64> {
        let cell_comp: Vec<u32> = self.rep.iter().map(|&r| comp[r as usize]).collect();
        wanted
            .par_iter()
            .with_min_len(CHUNK / 4)
            .map(|&i| {
                let i = i as usize;
                let g = self.cell[i] as usize;
                let mut floor = f64::INFINITY;
                for h in (0..self.c).filter(|&h| cell_comp[h] != comp[i]) {
                    let gap = -self.far[h * self.c + g] - rows.dot(i, self.dir(g, h));
                    let w = core[i]
                        .max(self.min_core[h])
                        .max(rows.distance_floor(gap) / alpha);
                    floor = floor.min(w);
                }
                floor
            })
            .collect()
    }
}
