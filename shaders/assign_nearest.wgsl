// Fused k-means assignment: for every row of x, the nearest centre and the squared
// distance ||x||² + ||c||² − 2x·c, clamped at 0. CPU twin:
// algorithms::distance::nearest_centers (ties go to the lowest centre index).
//
// A 16×16 workgroup owns 16 rows (local y) and sweeps the centres 16 at a time (local x).
// Rows and centres are staged through workgroup memory 16 features at a time, so each
// value read from memory is used 16 times. Each invocation keeps the running argmin of
// its own centres in registers; the 16 minima of a row are reduced at the end. The N×K
// distance matrix never exists.

const T: u32 = 16u;

struct Params {
    rows: u32,
    d: u32,
    k: u32,
    grid_x: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x_sq: array<f32>;
@group(0) @binding(3) var<storage, read> c: array<f32>;
@group(0) @binding(4) var<storage, read> c_sq: array<f32>;
@group(0) @binding(5) var<storage, read_write> labels: array<u32>;
@group(0) @binding(6) var<storage, read_write> min_sq: array<f32>;

// One column of padding keeps the column reads of a tile off a single memory bank.
var<workgroup> xs: array<array<f32, 17>, 16>;
var<workgroup> cs: array<array<f32, 17>, 16>;
var<workgroup> red_v: array<array<f32, 16>, 16>;
var<workgroup> red_i: array<array<u32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let tx = lid.x;
    let ty = lid.y;
    let row = (wid.y * p.grid_x + wid.x) * T + ty;
    let row_ok = row < p.rows;
    // Larger than any finite distance; WGSL has no infinity literal.
    var best = bitcast<f32>(0x7f7fffffu);
    var arg = 0u;
    let n_ct = (p.k + T - 1u) / T;
    for (var ct = 0u; ct < n_ct; ct++) {
        let centre = ct * T + tx;
        // The centre this invocation loads (by local y), not the one it scores.
        let load_c = ct * T + ty;
        var dot = 0.0;
        for (var f0 = 0u; f0 < p.d; f0 += T) {
            let f = f0 + tx;
            var xv = 0.0;
            if (row_ok && f < p.d) {
                xv = x[row * p.d + f];
            }
            var cv = 0.0;
            if (load_c < p.k && f < p.d) {
                cv = c[load_c * p.d + f];
            }
            xs[ty][tx] = xv;
            cs[ty][tx] = cv;
            workgroupBarrier();
            for (var t = 0u; t < T; t++) {
                dot = dot + xs[ty][t] * cs[tx][t];
            }
            workgroupBarrier();
        }
        if (centre < p.k) {
            // Same association as the twin: c² + (−2·x·c), then + x² after the argmin.
            let v = c_sq[centre] + (-2.0 * dot);
            if (v < best) {
                best = v;
                arg = centre;
            }
        }
    }
    red_v[ty][tx] = best;
    red_i[ty][tx] = arg;
    workgroupBarrier();
    if (tx == 0u && row_ok) {
        var b = red_v[ty][0];
        var a = red_i[ty][0];
        for (var t = 1u; t < T; t++) {
            let v = red_v[ty][t];
            let i = red_i[ty][t];
            if (v < b || (v == b && i < a)) {
                b = v;
                a = i;
            }
        }
        labels[row] = a;
        min_sq[row] = max(b + x_sq[row], 0.0);
    }
}
