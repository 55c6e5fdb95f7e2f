#!/usr/bin/env python3
"""Compare clusterd's CPU engine with scikit-learn and FAISS-CPU on the same data, in one run.

    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -r scripts/bench/requirements.txt
    cargo build --release --bench kmeans --bench algorithms
    /tmp/benchvenv/bin/python scripts/bench/compare.py [--write BENCHMARKS.md]
        [--kmeans 200000x768x100 100000x128x50] [--iters 20] [--silhouette 20000x384x20]
        [--density hdbscan:50000x16 hdbscan:20000x384 dbscan:100000x16 optics:4000x16]
        [--algorithms agglomerative:5000x16 spectral:20000x16 gaussian_mixture:50000x16 mean_shift:10000x8]
        [--no-clusterd]

k-means, per shape NxDxK (float32 Gaussian blobs, seed 0, written once to a raw file that
every engine reads; the centres overlap, so that 20 iterations run without converging):
  * clusterd: k-means++ then exactly --iters Lloyd iterations (tol=0); the per-iteration
    time is the span between the first and last iteration's progress events;
  * scikit-learn: `kmeans_plusplus` (timed as init), then `KMeans(init=those centres,
    n_init=1, tol=0)` with max_iter 1, --iters, and 1 again; per iteration =
    (T(iters) - T(1)) / (iters - 1) with the smaller T(1), which cancels the fixed costs
    of a fit (validation, centring, norms, the final assignment, first-call warm-up);
  * FAISS: `faiss.Kmeans(max_points_per_centroid` covering the data, so it trains on every
    point) from the same scikit-learn k-means++ centres, niter 1, --iters, 1, same formula.
The GEMM floor is clusterd's blocked `-2·X·Cᵀ` alone over the data (`--mode gemm`).

Exact silhouette at N×D (labels of the blobs): clusterd's metrics pass (silhouette plus
Davies-Bouldin and Calinski-Harabasz, which cost O(N·d)) vs `sklearn.metrics.silhouette_score`.

Density (--density ALGO:NxD[:PARAMS], float32 Gaussian blobs, 20 centres, seed 0, written
once to the raw file): clusterd (`benches/algorithms.rs`, `cargo build --release --bench algorithms`)
vs scikit-learn's DBSCAN / HDBSCAN / OPTICS with the same params, and for HDBSCAN also the
`hdbscan` library (`HDBSCAN(algorithm="boruvka_kdtree")`); each fit timed alone, with the
adjusted Rand index of clusterd's labels vs scikit-learn's (noise as one class).
--algorithms ALGO:NxD[:PARAMS] does the same for agglomerative, spectral, gaussian_mixture and
mean_shift against their scikit-learn estimators, adding each engine's ARI vs the blobs' truth
(the fair yardstick for the stochastic spectral and mixture fits).
`--no-clusterd` times the peers only (before the density bench builds).

Every engine runs in its own process; peak memory is that process's VmHWM, and "extra" is
VmHWM minus the resident size right after the data was loaded. The peers run in the
environment as given (OPENBLAS_* etc. untouched); each worker reports threadpoolctl's view
of the BLAS it loaded.
"""
import argparse
import datetime
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
BEGIN, END = "<!-- compare.py:begin -->", "<!-- compare.py:end -->"
DENSITY_BEGIN, DENSITY_END = "<!-- compare.py:density:begin -->", "<!-- compare.py:density:end -->"
ALGORITHMS_BEGIN, ALGORITHMS_END = "<!-- compare.py:algorithms:begin -->", "<!-- compare.py:algorithms:end -->"


# ---------------------------------------------------------------- helpers
def bench_binary(name="kmeans"):
    deps = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "deps")
    cands = [os.path.join(deps, f) for f in (os.listdir(deps) if os.path.isdir(deps) else [])
             if f.startswith(name + "-") and "." not in f and os.access(os.path.join(deps, f), os.X_OK)]
    if not cands:
        sys.exit(f"build it first: cargo build --release --bench {name}")
    return max(cands, key=os.path.getmtime)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def busy_cores(window=1.0):
    """CPUs busy over `window` seconds, from /proc/stat (other work on the machine)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(window)
    t1, i1 = snap()
    return (os.cpu_count() or 1) * (1.0 - (i1 - i0) / max(t1 - t0, 1))


NOISE = []


def wait_idle(label, max_wait=180.0, threshold=0.3):
    """Wait (up to max_wait s) until the other load on the machine is under `threshold`
    CPUs, so that a concurrent compile does not distort a timing; record what was seen."""
    start = time.time()
    busy = busy_cores()
    while busy > threshold and time.time() - start < max_wait:
        busy = busy_cores(2.0)
    NOISE.append((label, busy, time.time() - start))
    return busy


def run_ours(binary, *args):
    wait_idle("clusterd " + " ".join(map(str, args[:2])))
    out = subprocess.run([binary, *map(str, args)], check=True, capture_output=True, text=True).stdout
    return last_json(out)


def run_worker(*args):
    wait_idle(str(args[0]))
    out = subprocess.run([sys.executable, HERE, "--worker", *map(str, args)],
                         check=True, capture_output=True, text=True).stdout
    return last_json(out)


def write_raw(x):
    f = tempfile.NamedTemporaryFile(suffix=".f32", delete=False)
    f.write(struct.pack("<QQ", *x.shape))
    f.write(np.ascontiguousarray(x, dtype="<f4").tobytes())
    f.close()
    return f.name


def write_labels(labels):
    f = tempfile.NamedTemporaryFile(suffix=".i64", delete=False)
    f.write(struct.pack("<Q", len(labels)))
    f.write(np.asarray(labels, dtype="<i8").tobytes())
    f.close()
    return f.name


def load_raw(path):
    with open(path, "rb") as f:
        n, d = struct.unpack("<QQ", f.read(16))
        return np.fromfile(f, dtype="<f4").reshape(n, d)


def load_labels(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return np.fromfile(f, dtype="<i8", count=n)


def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024.0


def blas_info():
    from threadpoolctl import threadpool_info
    return [{k: i.get(k) for k in ("internal_api", "architecture", "num_threads", "threading_layer", "filepath")}
            for i in threadpool_info()]


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            fl = next(line for line in f if line.startswith("flags")).split()
        flags = "AVX-512" if "avx512f" in fl else ("AVX2" if "avx2" in fl else "")
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs, {model} ({flags}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


# ---------------------------------------------------------------- workers (own process)
def worker(a):
    x = load_raw(a.data)
    base = status_mb("VmRSS")
    if a.worker == "sk-kmeans":
        res = sk_kmeans(x, a.k, a.iters)
    elif a.worker == "faiss-kmeans":
        res = faiss_kmeans(x, a.k, a.iters, np.load(a.init))
    elif a.worker == "sk-silhouette":
        from sklearn.metrics import silhouette_score
        labels = load_labels(a.labels)
        t = time.perf_counter()
        s = silhouette_score(x, labels)
        res = {"seconds": time.perf_counter() - t, "silhouette": float(s)}
    elif a.worker in LABEL_WORKERS:
        res = label_peer(a.worker, x, json.loads(a.params or "{}"), a.labels_out)
    else:
        raise SystemExit(a.worker)
    res["blas"] = blas_info()
    res["peak_rss_mb"] = status_mb("VmHWM")  # VmHWM: this process's own peak (not the parent's)
    res["data_rss_mb"] = base
    print(json.dumps(res))


def sk_kmeans(x, k, iters):
    from sklearn.cluster import KMeans, kmeans_plusplus
    t = time.perf_counter()
    c0, _ = kmeans_plusplus(x, k, random_state=0)
    init_s = time.perf_counter() - t
    times, fits = [], []
    # 1, iters, 1 again: the first fit in a process also pays one-time costs (thread pools,
    # first touch of the data), which the min over the two one-iteration fits leaves out.
    for it in (1, iters, 1):
        t = time.perf_counter()
        km = KMeans(n_clusters=k, init=c0, n_init=1, max_iter=it, tol=0.0, random_state=0).fit(x)
        times.append(time.perf_counter() - t)
        fits.append(km)
    times[0] = min(times[0], times[2])
    n_it = int(fits[1].n_iter_)
    per = (times[1] - times[0]) / max(n_it - 1, 1)
    init_path = os.environ["CLUSTERD_BENCH_INIT"]
    np.save(init_path, c0.astype(np.float32))
    return {"init_seconds": init_s, "seconds": times[1], "seconds_1": times[0], "seconds_per_iter": per,
            "n_iter": n_it, "inertia": float(fits[1].inertia_)}


def faiss_kmeans(x, k, iters, c0):
    import faiss
    n, d = x.shape
    times, inertia = [], None
    for it in (1, iters, 1):  # as for scikit-learn: min of the one-iteration fits
        km = faiss.Kmeans(d, k, niter=it, seed=0, verbose=False, max_points_per_centroid=n // k + 1)
        t = time.perf_counter()
        km.train(x, init_centroids=c0)
        times.append(time.perf_counter() - t)
        if it == iters and inertia is None:
            dist, _ = km.index.search(x, 1)
            inertia = float(dist.astype(np.float64).sum())
    times[0] = min(times[0], times[2])
    return {"seconds": times[1], "seconds_1": times[0],
            "seconds_per_iter": (times[1] - times[0]) / max(iters - 1, 1),
            "n_iter": iters, "inertia": inertia, "faiss_threads": faiss.omp_get_max_threads()}


def label_peer(which, x, params, labels_out):
    """One peer fit of a label-producing algorithm (density, hierarchical, spectral,
    mixture, mean-shift), timed alone."""
    import warnings
    if which == "hdbscan-lib":
        import hdbscan
        est = hdbscan.HDBSCAN(algorithm="boruvka_kdtree", **params)
    else:
        from sklearn.cluster import (DBSCAN, HDBSCAN, OPTICS, AgglomerativeClustering, MeanShift,
                                     SpectralClustering)
        from sklearn.mixture import GaussianMixture
        est = {"sk-dbscan": DBSCAN, "sk-hdbscan": HDBSCAN, "sk-optics": OPTICS,
               "sk-agglomerative": AgglomerativeClustering, "sk-spectral": SpectralClustering,
               "sk-gaussian_mixture": GaussianMixture, "sk-mean_shift": MeanShift}[which](**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        # fit_predict: GaussianMixture has no labels_, and its fit_predict runs the final
        # E-step the way clusterd's fit does.
        labels = est.fit_predict(x) if which == "sk-gaussian_mixture" else est.fit(x).labels_
        seconds = time.perf_counter() - t
    labels = np.asarray(labels, dtype=np.int64)
    if labels_out:
        with open(labels_out, "wb") as f:
            f.write(struct.pack("<Q", len(labels)))
            f.write(labels.astype("<i8").tobytes())
    return {"seconds": seconds, "n_clusters": len(set(labels.tolist()) - {-1}),
            "n_noise": int((labels == -1).sum())}


# ---------------------------------------------------------------- driver
def kmeans_rows(binary, shapes, iters):
    from sklearn.datasets import make_blobs
    rows = []
    for shape in shapes:
        n, d, k = (int(v) for v in shape.split("x"))
        # center_box (-1, 1) with unit spread: heavily overlapping clusters, so Lloyd keeps
        # moving for all the iterations (equal work for everyone).
        x, _ = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=1.0, center_box=(-1.0, 1.0),
                          random_state=0)
        path = write_raw(x.astype(np.float32))
        del x
        init = tempfile.NamedTemporaryFile(suffix=".npy", delete=False).name
        os.environ["CLUSTERD_BENCH_INIT"] = init
        try:
            gemm = run_ours(binary, "--mode", "gemm", "--data", path, "--k", k, "--reps", 3)
            ours = run_ours(binary, "--mode", "kmeans", "--data", path, "--k", k, "--max-iter", iters, "--tol", 0)
            sk = run_worker("sk-kmeans", "--data", path, "--k", k, "--iters", iters)
            fa = run_worker("faiss-kmeans", "--data", path, "--k", k, "--iters", iters, "--init", init)
            rows.append((shape, gemm, ours, sk, fa))
            print(f"{shape}: gemm {gemm['seconds']:.3f}s ours {ours['seconds_per_iter']:.3f}s/it "
                  f"sk {sk['seconds_per_iter']:.3f}s/it faiss {fa['seconds_per_iter']:.3f}s/it", file=sys.stderr)
        finally:
            os.unlink(path)
            if os.path.exists(init):
                os.unlink(init)
    return rows


def silhouette_rows(binary, shapes):
    from sklearn.datasets import make_blobs
    rows = []
    for shape in shapes:
        n, d, k = (int(v) for v in shape.split("x"))
        x, y = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=4.0, random_state=0)
        path, lpath = write_raw(x.astype(np.float32)), write_labels(y)
        try:
            ours = run_ours(binary, "--mode", "silhouette", "--data", path, "--labels", lpath)
            sk = run_worker("sk-silhouette", "--data", path, "--labels", lpath)
            rows.append((shape, ours, sk))
            print(f"silhouette {shape}: ours {ours['seconds']:.3f}s sk {sk['seconds']:.3f}s", file=sys.stderr)
        finally:
            os.unlink(path)
            os.unlink(lpath)
    return rows


# Params per algorithm for the density rows (spec ALGO:NxD:JSON overrides). The data are
# 20 unit-variance blobs in the default centre box (-10, 10): well separated, so every
# engine should find the 20 blobs. DBSCAN: at 100000x16 the 10th-neighbour distance is
# 2.7-3.7 (10th-90th percentile), so eps 4 makes almost every point core (few noise points).
DENSITY_PARAMS = {"hdbscan": {}, "dbscan": {"eps": 4.0, "min_samples": 10}, "optics": {"min_samples": 10}}
DENSITY_DEFAULT = ["hdbscan:50000x16", "hdbscan:20000x384", "dbscan:100000x16", "optics:4000x16"]
DENSITY_PEERS = {"hdbscan": ["sk-hdbscan", "hdbscan-lib"], "dbscan": ["sk-dbscan"], "optics": ["sk-optics"]}
# The other label algorithms (issue 6) on the same blobs; stochastic ones seeded alike.
# Agglomerative ward/average stay under their documented size bound; single linkage has none.
ALGORITHM_PARAMS = {
    "agglomerative": {"n_clusters": 20},
    "spectral": {"n_clusters": 20, "affinity": "nearest_neighbors", "random_state": 0},
    "gaussian_mixture": {"n_components": 20, "random_state": 0},
    "mean_shift": {"bandwidth": 3.0},
}
ALGORITHMS_DEFAULT = [
    "agglomerative:5000x16", 'agglomerative:8000x16:{"n_clusters":20,"linkage":"average"}',
    'agglomerative:50000x16:{"n_clusters":20,"linkage":"single"}',
    "spectral:20000x16", 'spectral:3000x16:{"n_clusters":20,"affinity":"rbf","gamma":0.05,"random_state":0}',
    "gaussian_mixture:50000x16",
    'gaussian_mixture:50000x16:{"n_components":20,"covariance_type":"diag","random_state":0}',
    # The estimated bandwidth (quantile 0.3) spans several of the 20 blobs, so both engines
    # find one cluster: the rows give the bandwidth instead.
    'mean_shift:10000x8:{"bandwidth":3.0}', 'mean_shift:100000x8:{"bandwidth":3.0,"bin_seeding":true}',
]
PEERS = {**DENSITY_PEERS, **{algo: ["sk-" + algo] for algo in ALGORITHM_PARAMS}}
DEFAULT_PARAMS = {**DENSITY_PARAMS, **ALGORITHM_PARAMS}
LABEL_WORKERS = {p for peers in PEERS.values() for p in peers}


def label_rows(binary, specs):
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score
    rows = []
    for spec in specs:
        parts = spec.split(":", 2)
        algo, (n, d) = parts[0], (int(v) for v in parts[1].split("x"))
        params = json.loads(parts[2]) if len(parts) > 2 else DEFAULT_PARAMS[algo]
        x, truth = make_blobs(n_samples=n, n_features=d, centers=20, cluster_std=1.0, random_state=0)
        path = write_raw(x.astype(np.float32))
        del x
        outs = {}
        try:
            res = {}
            for peer in PEERS[algo]:
                outs[peer] = tempfile.NamedTemporaryFile(suffix=".i64", delete=False).name
                res[peer] = run_worker(peer, "--data", path, "--params", json.dumps(params),
                                       "--labels-out", outs[peer])
            if binary:
                outs["clusterd"] = tempfile.NamedTemporaryFile(suffix=".i64", delete=False).name
                res["clusterd"] = run_ours(binary, "--algo", algo, "--data", path, "--params", json.dumps(params),
                                           "--labels-out", outs["clusterd"])
            ref = load_labels(outs[PEERS[algo][0]])
            for k, r in res.items():
                r["ari_vs_sklearn"] = float(adjusted_rand_score(ref, load_labels(outs[k])))
                r["ari_vs_truth"] = float(adjusted_rand_score(truth, load_labels(outs[k])))
            rows.append({"algo": algo, "shape": f"{n}x{d}", "params": params, **res})
            print(f"{algo} {n}x{d}: " + " ".join(f"{k} {r['seconds']:.2f}s ({r['n_clusters']} clusters, "
                                                 f"{r['n_noise']} noise, ARI {r['ari_vs_sklearn']:.4f})"
                                                 for k, r in res.items()), file=sys.stderr)
        finally:
            os.unlink(path)
            for f in outs.values():
                if os.path.exists(f):
                    os.unlink(f)
    return rows


def extra(r):
    return r["peak_rss_mb"] - r["data_rss_mb"]


def report(km, sil, blas, cmd, iters, dens=(), algs=()):
    out = []
    threads = (km[0][2]["threads"] if km else sil[0][1]["threads"] if sil
               else next((r["clusterd"]["threads"] for r in [*dens, *algs] if "clusterd" in r), "?"))
    out.append(f"Measured {datetime.date.today().isoformat()} on {machine()}; rayon threads {threads}.")
    out.append("")
    out.append("BLAS (threadpoolctl, in each peer's process): " + "; ".join(
        f"{w}: " + ", ".join(f"{b['internal_api']} {b['architecture']} ×{b['num_threads']}"
                             f" ({os.path.basename(b['filepath'] or '')})" for b in info)
        for w, info in blas.items()))
    worst = max(NOISE, key=lambda t: t[1]) if NOISE else None
    if worst:
        out.append(f"Other load on the machine just before each measurement: at most {worst[1]:.2f} CPUs "
                   f"(before {worst[0]}); measurements wait up to 3 min for it to drop under 0.3.")
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_", "NVPL"))}
    out.append(f"Environment left as found: {env or 'no OPENBLAS_/OMP_/MKL_ variables'}.")
    out.append("")
    out.append("Command:")
    out.append("")
    out.append("```sh")
    if km or sil:
        out.append("cargo build --release --bench kmeans")
    if any("clusterd" in r for r in [*dens, *algs]):
        out.append("cargo build --release --bench algorithms")
    out.append(cmd)
    out.append("```")
    out.append("")
    if km:
        out.append(f"k-means, seconds per Lloyd iteration ({iters} iterations, tol 0; FAISS and scikit-learn "
                   "from the same k-means++ centres, clusterd from its own):")
        out.append("")
        out.append("| N×D×K | GEMM floor s | clusterd s/it | sklearn s/it | FAISS s/it | clusterd/sklearn (goal ≤ 0.25) "
                   "| clusterd/FAISS (goal ≤ 0.5) | init s clusterd / sklearn | inertia clusterd/sklearn "
                   "| inertia FAISS/sklearn | peak MB clusterd / sklearn / FAISS | extra MB clusterd / sklearn / FAISS |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for shape, g, o, s, f in km:
            op = o["seconds_per_iter"]
            out.append(
                f"| {shape} | {g['seconds']:.3f} ({g['gflops']:.0f} GFLOP/s) | {op:.3f} | {s['seconds_per_iter']:.3f} "
                f"| {f['seconds_per_iter']:.3f} | {op / s['seconds_per_iter']:.2f} | {op / f['seconds_per_iter']:.2f} "
                f"| {o['init_seconds_approx']:.2f} / {s['init_seconds']:.2f} | {o['inertia'] / s['inertia']:.4f} "
                f"| {f['inertia'] / s['inertia']:.4f} "
                f"| {o['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f} "
                f"| {extra(o):.0f} / {extra(s):.0f} / {extra(f):.0f} |")
        out.append("")
    if sil:
        out.append("Exact silhouette (clusterd: the whole metrics pass, silhouette + Davies-Bouldin + "
                   "Calinski-Harabasz; scikit-learn: `silhouette_score` alone):")
        out.append("")
        out.append("| N×D (k) | clusterd s | sklearn s | time clusterd/sklearn (goal ≤ 0.2) | |Δ score| "
                   "| peak MB clusterd / sklearn | extra MB clusterd / sklearn |")
        out.append("|---|---|---|---|---|---|---|")
        for shape, o, s in sil:
            n, d, k = shape.split("x")
            out.append(f"| {n}×{d} ({k}) | {o['seconds']:.3f} | {s['seconds']:.3f} | {o['seconds'] / s['seconds']:.3f} "
                       f"| {abs(o['silhouette'] - s['silhouette']):.1e} "
                       f"| {o['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} | {extra(o):.0f} / {extra(s):.0f} |")
        out.append("")
    if dens:
        out.append("Density clustering (20 Gaussian blobs, float32; each fit timed alone; ARI of each engine's "
                   "labels vs scikit-learn's, noise as one class; hdbscan = the `hdbscan` library, "
                   "`algorithm=\"boruvka_kdtree\"`):")
        out.append("")
        out.append("| algorithm | N×D | params | clusterd s | sklearn s | hdbscan s | clusterd/sklearn "
                   "| clusterd/hdbscan | ARI clusterd vs sklearn | clusters (noise) clusterd / sklearn "
                   "| peak MB clusterd / sklearn / hdbscan | extra MB clusterd / sklearn / hdbscan |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        dash = "—"
        for r in dens:
            o, s_, h = r.get("clusterd"), r["sk-" + r["algo"]], r.get("hdbscan-lib")
            f = lambda v, fmt: dash if v is None else format(v, fmt)
            cn = lambda e: dash if e is None else f"{e['n_clusters']} ({e['n_noise']})"
            out.append(
                f"| {r['algo']} | {r['shape'].replace('x', '×')} | `{json.dumps(r['params'])}` "
                f"| {f(o and o['seconds'], '.2f')} | {s_['seconds']:.2f} | {f(h and h['seconds'], '.2f')} "
                f"| {f(o and o['seconds'] / s_['seconds'], '.3f')} "
                f"| {f(o and h and o['seconds'] / h['seconds'], '.3f')} "
                f"| {f(o and o['ari_vs_sklearn'], '.4f')} | {cn(o)} / {cn(s_)} "
                f"| {f(o and o['peak_rss_mb'], '.0f')} / {s_['peak_rss_mb']:.0f} / {f(h and h['peak_rss_mb'], '.0f')} "
                f"| {f(o and extra(o), '.0f')} / {extra(s_):.0f} / {f(h and extra(h), '.0f')} |")
        out.append("")
    if algs:
        out.append("Hierarchical, spectral, mixture and mean-shift clustering (20 Gaussian blobs, float32; "
                   "each fit timed alone; ARI of each engine's labels vs scikit-learn's and vs the blobs' "
                   "true labels):")
        out.append("")
        out.append("| algorithm | N×D | params | clusterd s | sklearn s | clusterd/sklearn (goal < 1) "
                   "| ARI clusterd vs sklearn | ARI vs truth clusterd / sklearn | clusters clusterd / sklearn "
                   "| peak MB clusterd / sklearn | extra MB clusterd / sklearn |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        dash = "—"
        for r in algs:
            o, s_ = r.get("clusterd"), r["sk-" + r["algo"]]
            f = lambda v, fmt: dash if v is None else format(v, fmt)
            out.append(
                f"| {r['algo']} | {r['shape'].replace('x', '×')} | `{json.dumps(r['params'])}` "
                f"| {f(o and o['seconds'], '.2f')} | {s_['seconds']:.2f} "
                f"| {f(o and o['seconds'] / s_['seconds'], '.3f')} | {f(o and o['ari_vs_sklearn'], '.4f')} "
                f"| {f(o and o['ari_vs_truth'], '.4f')} / {s_['ari_vs_truth']:.4f} "
                f"| {f(o and o['n_clusters'], 'd')} / {s_['n_clusters']} "
                f"| {f(o and o['peak_rss_mb'], '.0f')} / {s_['peak_rss_mb']:.0f} "
                f"| {f(o and extra(o), '.0f')} / {extra(s_):.0f} |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kmeans", nargs="*", default=["200000x768x100", "100000x128x50"])
    ap.add_argument("--silhouette", nargs="*", default=["20000x384x20"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--density", nargs="*", default=DENSITY_DEFAULT,
                    help="ALGO:NxD[:PARAMS_JSON] with ALGO dbscan, hdbscan or optics")
    ap.add_argument("--algorithms", nargs="*", default=ALGORITHMS_DEFAULT,
                    help="ALGO:NxD[:PARAMS_JSON] with ALGO agglomerative, spectral, gaussian_mixture or mean_shift")
    ap.add_argument("--no-clusterd", action="store_true", help="label-algorithm rows: time the peers only")
    ap.add_argument("--write", help="replace the block between the compare.py markers in this file")
    ap.add_argument("--json", help="also dump the raw results here")
    # worker mode
    ap.add_argument("--worker")
    ap.add_argument("--data")
    ap.add_argument("--labels")
    ap.add_argument("--init")
    ap.add_argument("--k", type=int)
    ap.add_argument("--params")
    ap.add_argument("--labels-out")
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    binary = bench_binary() if (a.kmeans or a.silhouette) else None
    km = kmeans_rows(binary, a.kmeans, a.iters)
    sil = silhouette_rows(binary, a.silhouette)
    labels_binary = None if a.no_clusterd or not (a.density or a.algorithms) else bench_binary("algorithms")
    dens = label_rows(labels_binary, a.density) if a.density else []
    algs = label_rows(labels_binary, a.algorithms) if a.algorithms else []
    blas = {}
    if km:
        blas["scikit-learn"], blas["FAISS"] = km[0][3]["blas"], km[0][4]["blas"]
    elif sil:
        blas["scikit-learn"] = sil[0][2]["blas"]
    elif dens or algs:
        blas["scikit-learn"] = next(iter(r["sk-" + r["algo"]]["blas"] for r in [*dens, *algs]))
    cmd = "python scripts/bench/compare.py " + " ".join(
        ([f"--kmeans {' '.join(a.kmeans)}"] if a.kmeans else ["--kmeans"]) +
        [f"--iters {a.iters}"] +
        ([f"--silhouette {' '.join(a.silhouette)}"] if a.silhouette else ["--silhouette"]) +
        ([f"--density {' '.join(a.density)}"] if a.density else ["--density"]) +
        ([f"--algorithms {' '.join(repr(x) if ' ' in x or '{' in x else x for x in a.algorithms)}"]
         if a.algorithms else ["--algorithms"]) +
        (["--no-clusterd"] if a.no_clusterd else []) +
        ([f"--write {a.write}"] if a.write else []))
    text = report(km, sil, blas, cmd, a.iters, dens, algs)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"kmeans": km, "silhouette": sil, "density": dens, "algorithms": algs, "blas": blas},
                      f, indent=1)
    if a.write:
        # A density-only or algorithms-only run owns its own block, so that it leaves the
        # tables of an earlier run in place (and the other way round).
        sections = [name for name, rows in (("main", km or sil), ("density", dens), ("algorithms", algs)) if rows]
        begin, end = {"density": (DENSITY_BEGIN, DENSITY_END),
                      "algorithms": (ALGORITHMS_BEGIN, ALGORITHMS_END)}.get(
            sections[0] if len(sections) == 1 else "main", (BEGIN, END))
        with open(a.write) as f:
            doc = f.read()
        if begin in doc and end in doc:
            head, rest = doc.split(begin, 1)
            _, tail = rest.split(end, 1)
            doc = f"{head}{begin}\n{text}\n{end}{tail}"
        else:
            doc = f"{doc.rstrip()}\n\n{begin}\n{text}\n{end}\n"
        with open(a.write, "w") as f:
            f.write(doc)


if __name__ == "__main__":
    main()
