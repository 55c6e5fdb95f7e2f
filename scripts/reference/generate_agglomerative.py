#!/usr/bin/env python3
"""Generate the agglomerative-clustering parity fixtures from scikit-learn 1.9.1.

How to run (from the repository root):

    python3 -m venv /tmp/skvenv
    /tmp/skvenv/bin/pip install -r scripts/reference/requirements.txt
    /tmp/skvenv/bin/python scripts/reference/generate_agglomerative.py

What it writes: tests/fixtures/agglomerative_<name>.json for name in blobs, aniso, iris:

    sklearn_version   the scikit-learn that produced the answers (must be 1.9.1)
    dataset, description
    data              the rows, exactly the float32 values scikit-learn was given (shortest
                      decimal that reads back as that float32; checked). scikit-learn (scipy)
                      runs on them as float64.
    cases             [{"params": {...}, "labels": [...], "n_clusters": k,
                        "distances": [...] (only on the first case of each linkage x metric:
                        the merge heights of the tree in merge order, scikit-learn's
                        `distances_` from a fit with compute_distances=True)}]

`params` is passed to AgglomerativeClustering exactly as written; it is exactly the
`algorithm_params` the Rust tests send. Every linkage x metric pair is covered (ward with
euclidean only; complete, average and single with euclidean, cosine and manhattan), each with
an n_clusters case and a distance_threshold case.

The tie rule. Hierarchical labels can hinge on a near-tie between two merge heights (which
pair scipy's nearest-neighbour chain merges first, or which merge a cut undoes). A case is
kept only if its labels are stable: the data times (1 + 1e-6 * N(0, 1)) under three seeds
must give labels with adjusted Rand index >= 0.995 (MIN_ARI) against the kept labels, and a
distance_threshold must lie at least 1e-4 (relative) away from every merge height. Cases
that fail are dropped and printed; the script fails if a linkage x metric pair is left
without an n_clusters case or without a distance_threshold case. Thresholds are chosen in
the widest gap between consecutive merge heights that leaves 2..12 clusters, rounded to
3 significant digits.

Re-running the script rewrites the files deterministically.
"""

import json
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn.cluster import AgglomerativeClustering
from sklearn.datasets import load_iris, make_blobs
from sklearn.metrics import adjusted_rand_score

REQUIRED_SKLEARN = "1.9.1"
MIN_ARI = 0.995
THRESHOLD_MARGIN = 1e-4
OUT_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures"))

PAIRS = [("ward", "euclidean")] + [
    (linkage, metric)
    for linkage in ("complete", "average", "single")
    for metric in ("euclidean", "cosine", "manhattan")
]


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def blobs():
    x, _ = make_blobs(n_samples=300, n_features=5, centers=4, cluster_std=[1.0, 1.6, 0.7, 2.2],
                      random_state=11)
    return f32(x), ("make_blobs(n_samples=300, n_features=5, centers=4, "
                    "cluster_std=[1.0, 1.6, 0.7, 2.2], random_state=11)"), 4


def aniso():
    x, _ = make_blobs(n_samples=[160, 60, 30], n_features=2, cluster_std=[1.0, 0.6, 0.4],
                      random_state=170)
    x = x @ np.array([[0.6, -0.64], [-0.41, 0.85]])
    # Off the origin, so that cosine distances (angles) separate groups too.
    x = x + np.array([12.0, 9.0])
    return f32(x), ("make_blobs(n_samples=[160, 60, 30], n_features=2, cluster_std=[1.0, 0.6, 0.4], "
                    "random_state=170) @ [[0.6, -0.64], [-0.41, 0.85]] + [12, 9] (uneven sizes, "
                    "anisotropic)"), 3


def iris():
    x = load_iris().data
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    # Iris has duplicate rows and values on a 0.1 grid: exact distance ties. Seeded jitter
    # (1e-3 of a standard deviation) breaks them; 5 decimals keep the file small.
    rng = np.random.RandomState(0)
    x = np.round(x + rng.normal(0.0, 1e-3, size=x.shape), 5)
    return f32(x), ("load_iris().data standardised per column, + N(0, 1e-3) jitter "
                    "(RandomState(0)), rounded to 5 decimals"), 3


DATASETS = {"blobs": blobs, "aniso": aniso, "iris": iris}


def fit(params, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AgglomerativeClustering(**params).fit(x)
    return model


def stable(params, x, labels):
    worst = 1.0
    for seed in (1, 2, 3):
        rng = np.random.RandomState(seed)
        xp = f32(x.astype(np.float64) * (1.0 + 1e-6 * rng.normal(size=x.shape)))
        worst = min(worst, adjusted_rand_score(labels, fit(params, xp).labels_))
    return worst


def pick_threshold(heights):
    """A round threshold in the widest (relative) gap between merge heights leaving 2..12
    clusters."""
    h = np.sort(heights)
    n = len(h)
    best = None
    for k in range(2, 13):
        lo, hi = h[n - k], h[n - k + 1]  # k clusters: the top k - 1 merges are undone
        if lo <= 0:
            continue
        gap = hi / lo
        if best is None or gap > best[0]:
            best = (gap, lo, hi)
    _, lo, hi = best
    t = float(f"{np.sqrt(lo * hi):.3g}")
    if not (lo < t < hi):
        t = float(np.sqrt(lo * hi))
    return t


def f32_text(v):
    s = str(np.float32(v))
    if s.endswith(".0"):
        s = s[:-2]
    if np.float32(float(s)) != v:
        raise AssertionError(f"{s} does not round-trip to float32 {v!r}")
    return s


def write(name, description, x, cases):
    header = {"sklearn_version": sklearn.__version__, "dataset": name, "description": description}
    rows = ",\n".join("[" + ",".join(f32_text(v) for v in row) + "]" for row in x)
    case_text = ",\n".join(json.dumps(c) for c in cases)
    body = json.dumps(header)[:-1] + ',\n"cases": [\n' + case_text + '\n],\n"data": [\n' + rows + "\n]}\n"
    back = json.loads(body)
    assert np.array_equal(np.array(back["data"], dtype=np.float64).astype(np.float32), x)
    path = os.path.join(OUT_DIR, f"agglomerative_{name}.json")
    with open(path, "w") as f:
        f.write(body)
    print(f"{path}: {x.shape[0]}x{x.shape[1]}, {len(cases)} cases, {len(body) // 1024} KiB")


def main():
    if sklearn.__version__ != REQUIRED_SKLEARN:
        sys.exit(f"need scikit-learn {REQUIRED_SKLEARN}, found {sklearn.__version__}")
    failed = False
    for name, make in DATASETS.items():
        x, description, true_k = make()
        cases, dropped = [], []
        for linkage, metric in PAIRS:
            base = {"linkage": linkage, "metric": metric}
            full = fit({**base, "n_clusters": 2, "compute_distances": True}, x)
            heights = full.distances_
            threshold = pick_threshold(heights)
            ks = sorted({true_k, true_k + 3} if linkage != "single" else {true_k + 2, 8})
            candidates = [{**base, "n_clusters": k} for k in ks]
            candidates.append({**base, "n_clusters": None, "distance_threshold": threshold})
            kept = {"n": 0, "t": 0}
            for params in candidates:
                model = fit(params, x)
                labels = model.labels_
                ari = stable(params, x, labels)
                t = params.get("distance_threshold")
                margin = np.min(np.abs(heights - t)) / t if t is not None else np.inf
                if ari < MIN_ARI or margin < THRESHOLD_MARGIN:
                    dropped.append((json.dumps(params), ari, margin))
                    continue
                case = {"params": params, "n_clusters": int(model.n_clusters_),
                        "labels": [int(v) for v in labels]}
                if kept["n"] + kept["t"] == 0:
                    case["distances"] = [float(v) for v in heights]
                cases.append(case)
                kept["t" if t is not None else "n"] += 1
            if kept["n"] == 0 or kept["t"] == 0:
                print(f"{name}: {linkage}/{metric} left without an n_clusters or threshold case")
                failed = True
        for params, ari, margin in dropped:
            print(f"  {name}: dropped {params}: perturbed ARI {ari:.4f}, threshold margin {margin:.2e}")
        write(name, description, x, cases)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
