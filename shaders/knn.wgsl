// Neighbour queries over squared Euclidean distances ||q||² + ||y||² − 2q·y, clamped at 0.
// CPU twin: a brute-force scan in f64 (the candidates feed `algorithms::neighbors`,
// which refines them with exact distances, so these values are approximations).
//
// One invocation owns one query row; a workgroup of 64 queries sweeps a slice of data
// rows TJ at a time. Queries and data rows are staged through workgroup memory TF
// features at a time (coalesced loads), and each invocation keeps the TJ dot products
// of the current data tile in registers. The N×N distance matrix never exists: a
// dispatch covers one slice of data rows, and what a query has seen so far lives in
// its running state (the sorted top-K list, or the count), which the host keeps on the
// device between dispatches.
//
// Data rows are visited in ascending index order, across dispatches too, so a
// candidate that only ties the current K-th entry always has the larger index and is
// rejected: ties go to the lower index without comparing indices.

const WG: u32 = 64u;
const TJ: u32 = 32u;
const TF: u32 = 16u;
const MAX_K: u32 = 64u;
// Larger than any finite distance; WGSL has no infinity literal.
const FAR: f32 = 0x1.fffffep+127f;
const NONE: u32 = 0xffffffffu;

struct Params {
    // Queries: every row of the query chunk; global index q_base + chunk-local index.
    q_rows: u32,
    q_base: u32,
    d: u32,
    // Data: rows y_off..y_off + y_rows of the data chunk, global index y_base + local.
    y_off: u32,
    y_rows: u32,
    y_base: u32,
    k: u32,
    // 1 on the first slice of data rows: the state starts empty instead of being read.
    first: u32,
    threshold_sq: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qx: array<f32>;
@group(0) @binding(2) var<storage, read> qx_sq: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read> y_sq: array<f32>;
// knn: q_rows × k indices and distances of the query chunk; radius_count: one
// count per query in best_i (bindings 0..5, so its layout has no gap).
@group(0) @binding(5) var<storage, read_write> best_i: array<u32>;
@group(0) @binding(6) var<storage, read_write> best_d: array<f32>;

// One column of padding keeps the row-wise reads of a tile off a single memory bank.
var<workgroup> qs: array<array<f32, 17>, 64>;
// Data tile transposed into vec4s: yt[t][jj][c] is feature f0 + t of data row 4jj + c, so
// one broadcast load feeds four pairs at once.
var<workgroup> yt: array<array<vec4<f32>, 8>, 16>;

// Squared distances from query `lq` (block-local, may be out of range) to data rows
// t0..t0 + TJ of the slice (slice-local), into `out`; rows past the slice get FAR.
// Every invocation of the workgroup must call this (it holds barriers).
fn distance_tile(lid: u32, wg_q0: u32, t0: u32, out: ptr<function, array<f32, 32>>) {
    // Named accumulators, not an array: they must live in registers, and a compiler
    // may leave a dynamically indexed array in memory.
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    for (var f0 = 0u; f0 < p.d; f0 += TF) {
        // 64 × 16 query values, then 32 × 16 data values, consecutive threads reading
        // consecutive features.
        for (var e = lid; e < WG * TF; e += WG) {
            let r = e / TF;
            let f = f0 + e % TF;
            let lq = wg_q0 + r;
            var v = 0.0;
            if (lq < p.q_rows && f < p.d) {
                v = qx[lq * p.d + f];
            }
            qs[r][e % TF] = v;
        }
        for (var e = lid; e < TJ * TF; e += WG) {
            let r = e / TF;
            let f = f0 + e % TF;
            let ly = t0 + r;
            var v = 0.0;
            if (ly < p.y_rows && f < p.d) {
                v = y[(p.y_off + ly) * p.d + f];
            }
            yt[e % TF][r / 4u][r % 4u] = v;
        }
        workgroupBarrier();
        for (var t = 0u; t < TF; t++) {
            let qv = qs[lid][t];
            a0 = a0 + qv * yt[t][0];
            a1 = a1 + qv * yt[t][1];
            a2 = a2 + qv * yt[t][2];
            a3 = a3 + qv * yt[t][3];
            a4 = a4 + qv * yt[t][4];
            a5 = a5 + qv * yt[t][5];
            a6 = a6 + qv * yt[t][6];
            a7 = a7 + qv * yt[t][7];
        }
        workgroupBarrier();
    }
    let acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    let lq = wg_q0 + lid;
    var q_norm = 0.0;
    if (lq < p.q_rows) {
        q_norm = qx_sq[lq];
    }
    for (var j = 0u; j < TJ; j++) {
        let ly = t0 + j;
        if (ly < p.y_rows) {
            // Same association for every pair, so identical data rows get identical
            // values and tie exactly.
            (*out)[j] = max(q_norm + y_sq[p.y_off + ly] - 2.0 * acc[j / 4u][j % 4u], 0.0);
        } else {
            (*out)[j] = FAR;
        }
    }
}

@compute @workgroup_size(64)
fn knn(
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let lid = lid3.x;
    let wg_q0 = wid.x * WG;
    let lq = wg_q0 + lid;
    let q_ok = lq < p.q_rows;
    let k = p.k;
    var ld: array<f32, 64>;
    var li: array<u32, 64>;
    for (var s = 0u; s < MAX_K; s++) {
        ld[s] = FAR;
        li[s] = NONE;
    }
    if (q_ok && p.first == 0u) {
        for (var s = 0u; s < k; s++) {
            ld[s] = best_d[lq * k + s];
            li[s] = best_i[lq * k + s];
        }
    }
    var dist: array<f32, 32>;
    for (var t0 = 0u; t0 < p.y_rows; t0 += TJ) {
        distance_tile(lid, wg_q0, t0, &dist);
        if (q_ok) {
            for (var j = 0u; j < TJ; j++) {
                let v = dist[j];
                // Strict: an equal distance seen later has the larger index and loses.
                if (t0 + j < p.y_rows && v < ld[k - 1u]) {
                    var s = k - 1u;
                    while (s > 0u && ld[s - 1u] > v) {
                        ld[s] = ld[s - 1u];
                        li[s] = li[s - 1u];
                        s--;
                    }
                    ld[s] = v;
                    li[s] = p.y_base + p.y_off + t0 + j;
                }
            }
        }
    }
    if (q_ok) {
        for (var s = 0u; s < k; s++) {
            best_d[lq * k + s] = ld[s];
            best_i[lq * k + s] = li[s];
        }
    }
}

@compute @workgroup_size(64)
fn radius_count(
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let lid = lid3.x;
    let wg_q0 = wid.x * WG;
    let lq = wg_q0 + lid;
    let q_ok = lq < p.q_rows;
    let q_global = p.q_base + lq;
    var count = 0u;
    if (q_ok && p.first == 0u) {
        count = best_i[lq];
    }
    var dist: array<f32, 32>;
    for (var t0 = 0u; t0 < p.y_rows; t0 += TJ) {
        distance_tile(lid, wg_q0, t0, &dist);
        if (q_ok) {
            for (var j = 0u; j < TJ; j++) {
                let ly = t0 + j;
                // The query itself always counts, even where rounding leaves its
                // distance to itself a hair above a zero threshold.
                let is_self = p.y_base + p.y_off + ly == q_global;
                if (ly < p.y_rows && (dist[j] <= p.threshold_sq || is_self)) {
                    count++;
                }
            }
        }
    }
    if (q_ok) {
        best_i[lq] = count;
    }
}
