// Per-cluster sums of rows for the k-means centre update, without float atomics, in a
// fixed order (so the same input always gives the same bits). CPU twin: the per-cluster
// f64 sums of algorithms::kmeans (lloyd.rs).
//
// The host sorts each chunk's rows by label (it has the labels already) and cuts every
// cluster's run of rows into segments of at most 256 rows. Pass 1 (`segment_sums`): one
// workgroup per segment writes that segment's compensated column sums into its slot of
// `partials`. Slots are numbered cluster-major, so pass 2 (`cluster_sums`): one workgroup
// per cluster adds its contiguous slots in order.

struct SegParams {
    d: u32,
    n_segments: u32,
    grid_x: u32,
    _pad: u32,
}

struct Segment {
    // Range of `order` holding the segment's rows.
    start: u32,
    end: u32,
    // Slot in `partials`.
    slot: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> sp: SegParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read> segments: array<Segment>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(64)
fn segment_sums(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let s = wid.y * sp.grid_x + wid.x;
    if (s >= sp.n_segments) {
        return;
    }
    let seg = segments[s];
    for (var f = lid.x; f < sp.d; f += 64u) {
        var sum = 0.0;
        var comp = 0.0;
        for (var i = seg.start; i < seg.end; i++) {
            let y = x[order[i] * sp.d + f] - comp;
            let t = sum + y;
            comp = (t - sum) - y;
            sum = t;
        }
        partials[seg.slot * sp.d + f] = sum;
    }
}

struct ClusterParams {
    d: u32,
    k: u32,
    grid_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> cp: ClusterParams;
@group(0) @binding(1) var<storage, read> all_partials: array<f32>;
// Cluster j owns slots slot_start[j]..slot_start[j + 1].
@group(0) @binding(2) var<storage, read> slot_start: array<u32>;
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;

@compute @workgroup_size(64)
fn cluster_sums(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let j = wid.y * cp.grid_x + wid.x;
    if (j >= cp.k) {
        return;
    }
    let a = slot_start[j];
    let b = slot_start[j + 1u];
    for (var f = lid.x; f < cp.d; f += 64u) {
        var sum = 0.0;
        var comp = 0.0;
        for (var s = a; s < b; s++) {
            let y = all_partials[s * cp.d + f] - comp;
            let t = sum + y;
            comp = (t - sum) - y;
            sum = t;
        }
        sums[j * cp.d + f] = sum;
    }
}
