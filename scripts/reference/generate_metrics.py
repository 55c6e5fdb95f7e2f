#!/usr/bin/env python3
"""Generate the cluster-metric parity fixtures (DESIGN §4 "Metrics", §6) from scikit-learn 1.9.1.

How to run (from the repository root):

    python3 -m venv /tmp/skvenv
    /tmp/skvenv/bin/pip install -r scripts/reference/requirements.txt
    /tmp/skvenv/bin/python scripts/reference/generate_metrics.py

What it writes: tests/fixtures/metrics_<name>.json for each dataset below, with

    sklearn_version     the scikit-learn that produced the answers (must be 1.9.1)
    data                the rows, exactly the float32 values scikit-learn was given (each
                        written as the shortest decimal that reads back as that float32;
                        the script checks the round trip)
    labels              one label per row; -1 is noise
    silhouette          silhouette_score(X, labels) (exact, no sampling)
    davies_bouldin      davies_bouldin_score(X, labels)
    calinski_harabasz   calinski_harabasz_score(X, labels)

Noise rows (-1) are left out of every score, as the service does: the expected values are
scikit-learn's on the non-noise rows only. The Rust tests in src/metrics/tests.rs read
these files, so CI needs no Python. Re-running the script rewrites them deterministically.
A sampled silhouette has no fixture: numpy's permutation and our ChaCha stream pick
different samples, so sampling is tested by determinism and closeness instead.
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.cluster import DBSCAN, KMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)

REQUIRED_SKLEARN = "1.9.1"
OUT_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
)


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def blobs():
    """Well separated: 400 x 8, 4 clusters, labels = the generating truth."""
    x, y = make_blobs(n_samples=400, n_features=8, centers=4, cluster_std=1.0, random_state=11)
    return f32(x), y


def anisotropic():
    """Overlapping, stretched clusters away from the origin (which is where the expanded
    distance formula loses precision): 500 x 16, labels from KMeans(n_clusters=6)."""
    x, _ = make_blobs(n_samples=500, n_features=16, centers=6, cluster_std=3.0, random_state=5)
    rng = np.random.RandomState(5)
    transform = rng.normal(size=(16, 16)) * np.linspace(0.2, 2.0, 16)
    x = f32(x @ transform + 40.0)
    labels = KMeans(n_clusters=6, n_init=10, random_state=0).fit(x).labels_
    return x, labels


def digits():
    """scikit-learn's digits, 1797 x 64 (integer pixel values), labels from KMeans(10)."""
    x = f32(load_digits().data)
    labels = KMeans(n_clusters=10, n_init=10, random_state=0).fit(x).labels_
    return x, labels


def singleton():
    """Three blobs plus one far point in a cluster of its own (s(i) = 0 for it); the
    labels are not contiguous (0, 2, 5, 9)."""
    x, y = make_blobs(n_samples=240, n_features=5, centers=3, cluster_std=1.5, random_state=3)
    x = np.vstack([x, np.full((1, 5), 30.0)])
    y = np.array([0, 2, 5])[y]
    y = np.concatenate([y, [9]])
    return f32(x), y


def noise():
    """Blobs plus uniform background points, labelled by DBSCAN (noise = -1)."""
    x, _ = make_blobs(n_samples=300, n_features=6, centers=4, cluster_std=0.8, random_state=8)
    rng = np.random.RandomState(8)
    background = rng.uniform(x.min(), x.max(), size=(40, 6))
    x = f32(np.vstack([x, background]))
    labels = DBSCAN(eps=2.0, min_samples=5).fit(x).labels_
    assert (labels == -1).sum() > 0, "the noise fixture needs noise"
    assert len(set(labels) - {-1}) >= 2
    return x, labels


def f32_text(v):
    """Shortest decimal that reads back as this float32, checked through the float64
    path a JSON reader takes (parse to float64, then round to float32). Integral values
    drop the ".0" to keep the files small."""
    s = str(np.float32(v))
    if s.endswith(".0"):
        s = s[:-2]
    if np.float32(float(s)) != v:
        raise AssertionError(f"{s} does not round-trip to float32 {v!r}")
    return s


def write(name, x, labels):
    assert x.dtype == np.float32
    labels = np.asarray(labels, dtype=np.int64)
    keep = labels != -1
    xs, ls = x[keep], labels[keep]
    header = {
        "sklearn_version": sklearn.__version__,
        "silhouette": float(silhouette_score(xs, ls)),
        "davies_bouldin": float(davies_bouldin_score(xs, ls)),
        "calinski_harabasz": float(calinski_harabasz_score(xs, ls)),
        "labels": [int(v) for v in labels],
    }
    rows = ",\n".join("[" + ",".join(f32_text(v) for v in row) + "]" for row in x)
    # json for the small fields, the data rows by hand so that each value keeps its
    # float32 spelling.
    body = json.dumps(header)[:-1] + ',\n"data": [\n' + rows + "\n]}\n"
    back = np.array(json.loads(body)["data"], dtype=np.float64).astype(np.float32)
    assert np.array_equal(back, x), "written data differs from the data scored"
    path = os.path.join(OUT_DIR, f"metrics_{name}.json")
    with open(path, "w") as f:
        f.write(body)
    print(
        f"{path}: {x.shape[0]}x{x.shape[1]}, {len(set(ls.tolist()))} clusters, "
        f"{int((~keep).sum())} noise; silhouette={header['silhouette']:.6g} "
        f"db={header['davies_bouldin']:.6g} ch={header['calinski_harabasz']:.6g}; "
        f"{len(body) // 1024} KiB"
    )


def main():
    if sklearn.__version__ != REQUIRED_SKLEARN:
        sys.exit(f"need scikit-learn {REQUIRED_SKLEARN}, found {sklearn.__version__}")
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, make in [
        ("blobs", blobs),
        ("anisotropic", anisotropic),
        ("digits", digits),
        ("singleton", singleton),
        ("noise", noise),
    ]:
        x, labels = make()
        write(name, x, labels)


if __name__ == "__main__":
    main()
