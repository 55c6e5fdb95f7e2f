// Row L2 normalisation: out[i, :] = x[i, :] / ||x[i, :]||, rows of norm 0 stay 0.
// CPU twin: model::Matrix::normalize_rows. One invocation per row; the norm is a
// compensated (Kahan) sum because WGSL has no f64 and the twin sums in f64.

struct Params {
    rows: u32,
    d: u32,
    grid_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y * p.grid_x * 256u + gid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.d;
    var sum = 0.0;
    var comp = 0.0;
    for (var f = 0u; f < p.d; f++) {
        let v = x[base + f];
        let y = v * v - comp;
        let t = sum + y;
        comp = (t - sum) - y;
        sum = t;
    }
    let norm = sqrt(sum);
    var inv = 0.0;
    if (norm > 0.0) {
        inv = 1.0 / norm;
    }
    for (var f = 0u; f < p.d; f++) {
        // A zero row keeps its zeros (0 * 0), and so stays 0 like the twin.
        out[base + f] = select(x[base + f], x[base + f] * inv, norm > 0.0);
    }
}
