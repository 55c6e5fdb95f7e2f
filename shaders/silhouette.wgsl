// Silhouette accumulation: for every row i and cluster j, the sum of the Euclidean
// distances from row i to the members of cluster j. CPU twin: metrics::silhouette (the
// host turns these sums into a(i), b(i) and s(i)).
//
// The host sorts the rows by cluster, so cluster j is the contiguous range
// cluster_start[j]..cluster_start[j + 1] of the member chunk bound here. A 16×16
// workgroup owns 16 rows (local y) and one cluster (workgroup y), and sweeps that
// cluster's members 16 at a time (local x), staging rows and members through workgroup
// memory 16 features at a time. Distances are direct, (x − y)², not the expanded form,
// which would cancel for near neighbours. Output is N×K sums, added to what previous
// member chunks left there; never an N×N matrix.

const T: u32 = 16u;

struct Params {
    rows: u32,
    d: u32,
    k: u32,
    // Global index of the first row of the member chunk, and its length.
    member_base: u32,
    member_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> members: array<f32>;
@group(0) @binding(3) var<storage, read> cluster_start: array<u32>;
@group(0) @binding(4) var<storage, read_write> sums: array<f32>;

var<workgroup> xs: array<array<f32, 17>, 16>;
var<workgroup> ms: array<array<f32, 17>, 16>;
var<workgroup> red: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let tx = lid.x;
    let ty = lid.y;
    let row = wid.x * T + ty;
    let row_ok = row < p.rows;
    let j = wid.y;
    // This cluster's members within the bound chunk, as chunk-local indices.
    let end = p.member_base + p.member_rows;
    let lo = clamp(cluster_start[j], p.member_base, end) - p.member_base;
    let hi = clamp(cluster_start[j + 1u], p.member_base, end) - p.member_base;
    var sum = 0.0;
    var comp = 0.0;
    for (var m0 = lo; m0 < hi; m0 += T) {
        let member = m0 + tx;
        let load_m = m0 + ty;
        var acc = 0.0;
        for (var f0 = 0u; f0 < p.d; f0 += T) {
            let f = f0 + tx;
            var xv = 0.0;
            if (row_ok && f < p.d) {
                xv = x[row * p.d + f];
            }
            var mv = 0.0;
            if (load_m < hi && f < p.d) {
                mv = members[load_m * p.d + f];
            }
            xs[ty][tx] = xv;
            ms[ty][tx] = mv;
            workgroupBarrier();
            for (var t = 0u; t < T; t++) {
                let diff = xs[ty][t] - ms[tx][t];
                acc = acc + diff * diff;
            }
            workgroupBarrier();
        }
        if (member < hi) {
            let y = sqrt(acc) - comp;
            let s = sum + y;
            comp = (s - sum) - y;
            sum = s;
        }
    }
    red[ty][tx] = sum;
    workgroupBarrier();
    if (tx == 0u && row_ok) {
        var total = 0.0;
        var c = 0.0;
        for (var t = 0u; t < T; t++) {
            let y = red[ty][t] - c;
            let s = total + y;
            c = (s - total) - y;
            total = s;
        }
        sums[row * p.k + j] = sums[row * p.k + j] + total;
    }
}
