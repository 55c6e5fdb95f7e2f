#!/usr/bin/env python3
"""Compare clusterd's CPU k-means with scikit-learn 1.9.1 and FAISS on the same data.

    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install -r scripts/bench/requirements.txt
    cargo build --release --bench kmeans
    /tmp/benchvenv/bin/python scripts/bench/compare_kmeans.py [--shapes 100000x128x50 30000x768x100]

Each shape NxDxK is float32 Gaussian blobs (seed 0), written once to a raw file that all
three engines read. Two regimes per shape:
  * fixed work: k-means++ then exactly --iters Lloyd iterations (tol=0) for everyone, so
    time compares like with like (FAISS uses its own random init: it has no k-means++);
  * to convergence: each engine's defaults (tol=1e-4, max_iter=300; FAISS niter=25).
FAISS trains on all points (max_points_per_centroid raised to cover the data).
Prints a Markdown table with time ratios peer/clusterd (> 1 means clusterd is faster),
inertia ratios clusterd/peer (< 1 means clusterd found a better clustering) and peak RSS.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np


def bench_binary(root):
    deps = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "release", "deps")
    candidates = [os.path.join(deps, f) for f in os.listdir(deps)
                  if f.startswith("kmeans-") and os.access(os.path.join(deps, f), os.X_OK) and "." not in f]
    if not candidates:
        sys.exit("build it first: cargo build --release --bench kmeans")
    return max(candidates, key=os.path.getmtime)


def run_ours(binary, path, k, iters, tol):
    out = subprocess.run([binary, "--data", path, "--k", str(k), "--max-iter", str(iters), "--tol", str(tol)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_peer(engine, path, k, iters, tol):
    """Run a peer in its own process (so its peak RSS is its own) on the same file."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", engine, "--data", path,
                          "--k", str(k), "--iters", str(iters), "--tol", str(tol)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def load_raw(path):
    with open(path, "rb") as f:
        n, d = struct.unpack("<QQ", f.read(16))
        return np.fromfile(f, dtype="<f4").reshape(n, d)


def worker(args):
    x = load_raw(args.data)
    if args.worker == "sklearn":
        res = run_sklearn(x, args.k, args.iters, args.tol)
    else:
        res = run_faiss(x, args.k, args.iters)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec from the parent,
    # which holds the generated data; VmHWM belongs to this process's own memory.
    with open("/proc/self/status") as f:
        hwm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    res["peak_rss_mb"] = hwm_kb / 1024.0
    print(json.dumps(res))


def run_sklearn(x, k, iters, tol):
    from sklearn.cluster import KMeans
    t = time.perf_counter()
    km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=iters, tol=tol, random_state=0).fit(x)
    return {"seconds": time.perf_counter() - t, "inertia": float(km.inertia_), "n_iter": int(km.n_iter_)}


def run_faiss(x, k, iters):
    import faiss
    n, d = x.shape
    t = time.perf_counter()
    km = faiss.Kmeans(d, k, niter=iters, seed=0, verbose=False, max_points_per_centroid=n // k + 1)
    km.train(x)
    secs = time.perf_counter() - t
    dist, _ = km.index.search(x, 1)
    return {"seconds": secs, "inertia": float(dist.sum()), "n_iter": iters}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", nargs="+", default=["100000x128x50", "30000x768x100"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--worker", choices=["sklearn", "faiss"])
    ap.add_argument("--data")
    ap.add_argument("--k", type=int)
    ap.add_argument("--tol", type=float)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    binary = bench_binary(root)
    from sklearn.datasets import make_blobs
    from threadpoolctl import threadpool_info
    print(f"threads: {os.cpu_count()}; BLAS: {[(i['internal_api'], i.get('architecture')) for i in threadpool_info()]}",
          file=sys.stderr)
    rows = []
    for shape in args.shapes:
        n, d, k = (int(v) for v in shape.split("x"))
        x, _ = make_blobs(n_samples=n, n_features=d, centers=k, cluster_std=4.0, random_state=0)
        x = np.ascontiguousarray(x, dtype=np.float32)
        with tempfile.NamedTemporaryFile(suffix=".f32", delete=False) as f:
            f.write(struct.pack("<QQ", n, d))
            f.write(x.tobytes())
            path = f.name
        try:
            for regime, iters, tol in [("fixed work", args.iters, 0.0), ("to convergence", 300, 1e-4)]:
                ours = run_ours(binary, path, k, iters, tol)
                sk = run_peer("sklearn", path, k, iters, tol)
                fa = run_peer("faiss", path, k, iters if tol == 0.0 else 25, tol)
                rows.append((shape, regime, ours, sk, fa))
        finally:
            os.unlink(path)
    print("| N×D×K | regime | clusterd s | sklearn s | FAISS s | time sklearn/clusterd | time FAISS/clusterd "
          "| inertia clusterd/sklearn | inertia clusterd/FAISS | peak MB clusterd / sklearn / FAISS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape, regime, o, s, f in rows:
        print(f"| {shape} | {regime} | {o['seconds']:.3f} ({o['n_iter']} it) | {s['seconds']:.3f} ({s['n_iter']} it) "
              f"| {f['seconds']:.3f} | {s['seconds'] / o['seconds']:.2f} | {f['seconds'] / o['seconds']:.2f} "
              f"| {o['inertia'] / s['inertia']:.4f} | {o['inertia'] / f['inertia']:.4f} "
              f"| {o['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
