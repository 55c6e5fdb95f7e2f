//! Host side of `shaders/normalize_rows.wgsl`.

use super::device::grid;
use super::matrix::default_chunk_rows;
use super::{GpuContext, GpuError};
use crate::model::Matrix;

const SHADER: &str = include_str!("../../shaders/normalize_rows.wgsl");
const WORKGROUP: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    d: u32,
    grid_x: u32,
    _pad: u32,
}

/// L2-normalise the rows of `x` in place on the device, `chunk_rows` rows at a time
/// (the device default when `None`). Rows of norm 0 stay 0.
pub fn normalize_rows(
    ctx: &GpuContext,
    x: &mut Matrix,
    chunk_rows: Option<usize>,
) -> Result<(), GpuError> {
    let d = x.cols();
    if x.rows() == 0 || d == 0 {
        return Ok(());
    }
    let pipeline = ctx.pipeline("normalize_rows", SHADER, "main")?;
    let max = default_chunk_rows(ctx, d)?;
    let chunk_rows = chunk_rows.unwrap_or(max).clamp(1, max);
    // One chunk on the device at a time: each row is independent, so data of any size
    // streams through (device memory holds one chunk and its output).
    for start in (0..x.rows()).step_by(chunk_rows) {
        let rows = (x.rows() - start).min(chunk_rows);
        let g = grid(ctx, rows.div_ceil(WORKGROUP));
        let params = Params {
            rows: rows as u32,
            d: d as u32,
            grid_x: g[0],
            _pad: 0,
        };
        let (out, bind) = ctx.scoped(|| {
            let input = ctx.storage("x chunk", x.rows_slice(start, start + rows));
            let uniform = ctx.uniform("normalize params", &params);
            let out = ctx.output("normalized", rows * d);
            let bind = ctx.bind(&pipeline, &[&uniform, &input, &out]);
            (out, bind)
        })?;
        ctx.run(&[(&pipeline, &bind, g)])?;
        let normalized: Vec<f32> = ctx.read(&out, rows * d)?;
        x.as_mut_slice()[start * d..(start + rows) * d].copy_from_slice(&normalized);
    }
    Ok(())
}
