//! Host side of `shaders/assign_nearest.wgsl`.

use super::device::grid;
use super::matrix::ROW_TILE;
use super::{GpuContext, GpuError, GpuMatrix};
use crate::algorithms::distance::row_sq_norms;
use crate::model::Matrix;

const SHADER: &str = include_str!("../../shaders/assign_nearest.wgsl");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    k: u32,
    grid_x: u32,
}

/// The nearest of `centers` for every row of `x` (lowest index on ties) and its squared
/// distance, clamped at 0. With no centres, labels are 0 and distances `+inf`, as in the
/// CPU twin.
pub fn assign_nearest(
    ctx: &GpuContext,
    x: &GpuMatrix,
    centers: &Matrix,
) -> Result<(Vec<u32>, Vec<f32>), GpuError> {
    let k = centers.rows();
    if k == 0 || x.rows == 0 {
        return Ok((vec![0; x.rows], vec![f32::INFINITY; x.rows]));
    }
    if centers.cols() != x.cols {
        return Err(GpuError::Unsupported(format!(
            "centres have {} features, data {}",
            centers.cols(),
            x.cols
        )));
    }
    if (centers.as_slice().len() * 4) as u64 > ctx.max_binding_bytes() {
        return Err(GpuError::Unsupported(format!(
            "{k} centres of {} features exceed one storage binding",
            x.cols
        )));
    }
    let pipeline = ctx.pipeline("assign_nearest", SHADER, "main")?;
    let c_sq = row_sq_norms(centers);
    let (c_buf, c_sq_buf) = ctx.scoped(|| {
        (
            ctx.storage("centres", centers.as_slice()),
            ctx.storage("centre norms", &c_sq),
        )
    })?;
    let mut labels = Vec::with_capacity(x.rows);
    let mut sq = Vec::with_capacity(x.rows);
    for chunk in &x.chunks {
        let g = grid(ctx, chunk.rows.div_ceil(ROW_TILE));
        let params = Params {
            rows: chunk.rows as u32,
            d: x.cols as u32,
            k: k as u32,
            grid_x: g[0],
        };
        let (l_buf, s_buf, bind) = ctx.scoped(|| {
            let uniform = ctx.uniform("assign params", &params);
            let l_buf = ctx.output("labels", chunk.rows);
            let s_buf = ctx.output("min sq", chunk.rows);
            let bind = ctx.bind(
                &pipeline,
                &[
                    &uniform,
                    &chunk.x,
                    &chunk.x_sq,
                    &c_buf,
                    &c_sq_buf,
                    &l_buf,
                    &s_buf,
                ],
            );
            (l_buf, s_buf, bind)
        })?;
        ctx.run(&[(&pipeline, &bind, g)])?;
        labels.extend(ctx.read::<u32>(&l_buf, chunk.rows)?);
        sq.extend(ctx.read::<f32>(&s_buf, chunk.rows)?);
    }
    Ok((labels, sq))
}
