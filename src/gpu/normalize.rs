//! Host side of `shaders/normalize_rows.wgsl`.

use super::device::grid;
use super::{GpuContext, GpuError, GpuMatrix};
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
    let dev = GpuMatrix::upload(ctx, x, chunk_rows)?;
    for chunk in &dev.chunks {
        let g = grid(ctx, chunk.rows.div_ceil(WORKGROUP));
        let params = Params {
            rows: chunk.rows as u32,
            d: d as u32,
            grid_x: g[0],
            _pad: 0,
        };
        let (out, bind) = ctx.scoped(|| {
            let uniform = ctx.uniform("normalize params", &params);
            let out = ctx.output("normalized", chunk.rows * d);
            let bind = ctx.bind(&pipeline, &[&uniform, &chunk.x, &out]);
            (out, bind)
        })?;
        ctx.run(&[(&pipeline, &bind, g)])?;
        let rows: Vec<f32> = ctx.read(&out, chunk.rows * d)?;
        x.as_mut_slice()[chunk.start * d..(chunk.start + chunk.rows) * d].copy_from_slice(&rows);
    }
    Ok(())
}
