//! TEMPORARY brute-force stand-in for `crate::algorithms::neighbors` (same API subset) until
//! the shared neighbour engine lands in main. Removed before the branch is finished.

use rayon::prelude::*;

use crate::model::params::ParamReader;
use crate::model::{ApiResult, Cancelled, Matrix, RunContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    Cosine,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

pub fn read_metric(r: &mut ParamReader<'_>) -> ApiResult<Metric> {
    Ok(match r.choice("metric", &["euclidean", "l2", "cosine"])? {
        Some("cosine") => Metric::Cosine,
        _ => Metric::Euclidean,
    })
}

pub struct Points {
    data: Vec<f64>,
    cols: usize,
    n: usize,
    metric: Metric,
    norms: Vec<f64>,
}

pub struct Knn {
    pub k: usize,
    pub distances: Vec<f64>,
}

impl Knn {
    pub fn distances_of(&self, i: usize) -> &[f64] {
        &self.distances[i * self.k..(i + 1) * self.k]
    }
}

impl Points {
    pub fn new(x: &Matrix, metric: Metric) -> Points {
        let data: Vec<f64> = x.as_slice().iter().map(|&v| f64::from(v)).collect();
        let cols = x.cols();
        let norms = (0..x.rows())
            .map(|i| {
                let n = data[i * cols..(i + 1) * cols]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
                    .sqrt();
                if n == 0.0 { 1.0 } else { n }
            })
            .collect();
        Points {
            data,
            cols,
            n: x.rows(),
            metric,
            norms,
        }
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn dist(&self, i: usize, j: usize) -> f64 {
        let a = &self.data[i * self.cols..(i + 1) * self.cols];
        let b = &self.data[j * self.cols..(j + 1) * self.cols];
        match self.metric {
            Metric::Euclidean => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f64>()
                .sqrt(),
            Metric::Cosine => {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                (1.0 - dot / (self.norms[i] * self.norms[j])).clamp(0.0, 2.0)
            }
        }
    }
    pub fn knn(&self, k: usize, ctx: &RunContext) -> Result<Knn, Cancelled> {
        ctx.checkpoint()?;
        let k = k.min(self.n);
        let distances = (0..self.n)
            .into_par_iter()
            .flat_map_iter(|i| {
                let mut d: Vec<f64> = (0..self.n).map(|j| self.dist(i, j)).collect();
                d.sort_by(f64::total_cmp);
                d.truncate(k);
                d
            })
            .collect();
        Ok(Knn { k, distances })
    }
}
