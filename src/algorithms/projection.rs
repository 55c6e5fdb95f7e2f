//! 2-D coordinates for drawing a run (`save_artifacts`): each row projected on the first
//! two principal axes of the data. The axes are fitted on at most `PCA_FIT_ROWS` rows (a
//! seeded sample above that) so the cost stays bounded: the covariance is d×d, never N×N.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::model::{Cancelled, Matrix, RunContext};

/// Rows used to fit the axes.
pub const PCA_FIT_ROWS: usize = 20_000;
const MAX_SWEEPS: usize = 300;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalize(v: &mut [f64]) -> f64 {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    n
}

/// Covariance-times-vector for a symmetric d×d matrix stored row-major.
fn mul(cov: &[f64], d: usize, v: &[f64]) -> Vec<f64> {
    (0..d).map(|i| dot(&cov[i * d..(i + 1) * d], v)).collect()
}

/// The first two principal axes of a data set and its mean: fitted once (on the sample a
/// run clusters) and reusable for any rows of the same width, so that rows placed later
/// are drawn in the same picture.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pca2d {
    /// Column means of the fitted rows (all of them, not only the rows the axes came from).
    pub mean: Vec<f64>,
    /// The two unit axes, largest variance first, each with its largest component positive.
    pub axes: [Vec<f64>; 2],
}

impl Pca2d {
    /// Fit the axes of `x`: the mean over every row, the axes from at most
    /// [`PCA_FIT_ROWS`] rows (a sample seeded by `seed` above that). With no rows or no
    /// columns the axes are zero and every projection is the origin.
    pub fn fit(x: &Matrix, seed: u64, ctx: &RunContext) -> Result<Pca2d, Cancelled> {
        let (n, d) = (x.rows(), x.cols());
        if n == 0 || d == 0 {
            return Ok(Pca2d {
                mean: vec![0.0; d],
                axes: [vec![0.0; d], vec![0.0; d]],
            });
        }
        let mut mean = vec![0f64; d];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(x.row(i)) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);

        let fit_rows: Vec<usize> = if n <= PCA_FIT_ROWS {
            (0..n).collect()
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut idx = rand::seq::index::sample(&mut rng, n, PCA_FIT_ROWS).into_vec();
            idx.sort_unstable();
            idx
        };
        let s = fit_rows.len();
        let mut centred = Vec::with_capacity(s * d);
        for &i in &fit_rows {
            centred.extend(
                x.row(i)
                    .iter()
                    .zip(&mean)
                    .map(|(&v, &m)| (f64::from(v) - m) as f32),
            );
        }
        ctx.checkpoint()?;
        let mut cov32 = vec![0f32; d * d];
        {
            let a = MatRef::from_row_major_slice(&centred, s, d);
            let dst = MatMut::from_column_major_slice_mut(&mut cov32[..], d, d);
            // Sequential: the result must not depend on the thread count.
            matmul(dst, Accum::Replace, a.transpose(), a, 1.0f32, Par::Seq);
        }
        ctx.checkpoint()?;
        let cov: Vec<f64> = cov32.iter().map(|&v| f64::from(v)).collect();

        // Subspace iteration on two vectors, seeded deterministically, then a 2×2
        // Rayleigh–Ritz step to order and separate the two axes.
        let mut v1: Vec<f64> = (0..d).map(|i| 1.0 + (i % 7) as f64 * 0.1).collect();
        let mut v2: Vec<f64> = (0..d)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        normalize(&mut v1);
        for sweep in 0..MAX_SWEEPS {
            if sweep % 32 == 0 {
                ctx.checkpoint()?;
            }
            let mut w1 = mul(&cov, d, &v1);
            let mut w2 = mul(&cov, d, &v2);
            normalize(&mut w1);
            let p = dot(&w2, &w1);
            w2.iter_mut().zip(&w1).for_each(|(b, a)| *b -= p * a);
            normalize(&mut w2);
            let moved = 1.0 - dot(&w1, &v1).abs();
            v1 = w1;
            v2 = w2;
            if moved < 1e-12 && sweep > 8 {
                break;
            }
        }
        let cv1 = mul(&cov, d, &v1);
        let cv2 = mul(&cov, d, &v2);
        let (h11, h12, h22) = (dot(&v1, &cv1), dot(&v1, &cv2), dot(&v2, &cv2));
        let theta = 0.5 * (2.0 * h12).atan2(h11 - h22);
        let (c, s_) = (theta.cos(), theta.sin());
        let mut a1: Vec<f64> = v1.iter().zip(&v2).map(|(p, q)| c * p + s_ * q).collect();
        let mut a2: Vec<f64> = v1.iter().zip(&v2).map(|(p, q)| -s_ * p + c * q).collect();
        // An eigenvector's sign is arbitrary: fix it so the same data draws the same picture.
        for axis in [&mut a1, &mut a2] {
            let big = axis
                .iter()
                .copied()
                .fold(0f64, |acc, v| if v.abs() > acc.abs() { v } else { acc });
            if big < 0.0 {
                axis.iter_mut().for_each(|v| *v = -*v);
            }
        }
        Ok(Pca2d {
            mean,
            axes: [a1, a2],
        })
    }

    /// The number of columns the axes were fitted on.
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// The 2-D coordinates of every row of `x`, which must have [`Self::dims`] columns
    /// (the caller checks: a row of another width would be projected on a truncated axis).
    pub fn project(&self, x: &Matrix) -> Vec<[f32; 2]> {
        let [a1, a2] = &self.axes;
        (0..x.rows())
            .into_par_iter()
            .map(|i| {
                let (mut p, mut q) = (0f64, 0f64);
                for ((&v, &m), (&u1, &u2)) in x.row(i).iter().zip(&self.mean).zip(a1.iter().zip(a2))
                {
                    let c = f64::from(v) - m;
                    p += c * u1;
                    q += c * u2;
                }
                [p as f32, q as f32]
            })
            .collect()
    }
}

/// First two principal coordinates of every row of `x`: [`Pca2d::fit`] then
/// [`Pca2d::project`] on the same rows.
pub fn pca_2d(x: &Matrix, seed: u64, ctx: &RunContext) -> Result<Vec<[f32; 2]>, Cancelled> {
    Ok(Pca2d::fit(x, seed, ctx)?.project(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceKind;

    #[test]
    fn recovers_the_dominant_axes_of_a_stretched_cloud() {
        // Points spread along (1,1,0) with weight 10 and along (1,-1,0) with weight 2.
        let mut data = Vec::new();
        for i in 0..200 {
            let t = (i as f32 - 100.0) / 10.0;
            let u = ((i * 37) % 200) as f32 / 100.0 - 1.0;
            data.extend([t + u, t - u, 0.01 * u]);
        }
        let x = Matrix::from_vec(200, 3, data).unwrap();
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        let coords = pca_2d(&x, 0, &ctx).unwrap();
        let var = |k: usize| coords.iter().map(|c| f64::from(c[k]).powi(2)).sum::<f64>();
        assert!(var(0) > var(1) * 5.0, "first axis carries most variance");
        // The first coordinate is the position along (1,1,0)/√2 (that is √2·t), the second
        // along (1,−1,0)/√2 (√2·u), each up to sign.
        let corr = |k: usize, truth: &dyn Fn(usize) -> f64| {
            let a: Vec<f64> = coords.iter().map(|c| f64::from(c[k])).collect();
            let b: Vec<f64> = (0..200).map(truth).collect();
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (ma, mb) = (mean(&a), mean(&b));
            let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
            let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
            let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
            cov / (va * vb).sqrt()
        };
        let t = |i: usize| (i as f64 - 100.0) / 10.0;
        let u = |i: usize| ((i * 37) % 200) as f64 / 100.0 - 1.0;
        assert!(corr(0, &t).abs() > 0.999, "first axis: {}", corr(0, &t));
        assert!(corr(1, &u).abs() > 0.99, "second axis: {}", corr(1, &u));
        assert_eq!(coords, pca_2d(&x, 0, &ctx).unwrap(), "deterministic");
    }

    #[test]
    fn degenerate_inputs_give_zeros() {
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        assert!(pca_2d(&Matrix::zeros(0, 4), 0, &ctx).unwrap().is_empty());
        assert_eq!(
            pca_2d(&Matrix::zeros(3, 4), 0, &ctx).unwrap(),
            vec![[0.0, 0.0]; 3]
        );
    }

    #[test]
    fn a_fitted_basis_projects_other_rows_in_the_same_picture_and_survives_serde() {
        let ctx = RunContext::new(0, DeviceKind::Cpu);
        let x =
            Matrix::from_vec(6, 2, vec![0., 0., 2., 1., 4., 2., 6., 3., 1., 0., 5., 3.]).unwrap();
        let pca = Pca2d::fit(&x, 0, &ctx).unwrap();
        assert_eq!(pca.dims(), 2);
        let mut both = x.as_slice().to_vec();
        both.extend([8.0, 4.0, -2.0, -1.0]);
        let more = Matrix::from_vec(8, 2, both).unwrap();
        let coords = pca.project(&more);
        assert_eq!(coords[..6], pca.project(&x)[..]);
        // (8, 4) and (−2, −1) mirror each other about the mean (3, 1.5): so do their
        // coordinates, on either side of the origin along the first axis.
        assert_eq!(coords[7], [-coords[6][0], -coords[6][1]]);
        assert!(coords[6][0] > 0.0);
        let json = serde_json::to_string(&pca).unwrap();
        let back: Pca2d = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pca);
    }
}
