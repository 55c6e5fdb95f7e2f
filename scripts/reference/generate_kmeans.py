#!/usr/bin/env python3
"""Generate the k-means parity fixtures (DESIGN §6) from scikit-learn 1.9.1.

How to run (from the repository root):

    python3 -m venv /tmp/skvenv
    /tmp/skvenv/bin/pip install -r scripts/reference/requirements.txt
    /tmp/skvenv/bin/python scripts/reference/generate_kmeans.py

What it writes: tests/fixtures/kmeans_<name>.json for each dataset below, with

    sklearn_version       the scikit-learn that produced the answers (must be 1.9.1)
    n_clusters            k
    data                  the rows, exactly the float32 values scikit-learn was given
                          (each written as the shortest decimal that reads back as that
                          float32; the script checks the round trip)
    sklearn_inertia       inertia_ of KMeans(n_clusters=k, n_init=10, random_state=0)
    sklearn_labels        labels_ of that fit
    sklearn_inertia_n_init_auto   inertia_ with the defaults (n_init="auto", i.e. 1 run)

The datasets are small (each file well under 300 KB) so that CI needs no Python: the Rust
tests in src/algorithms/kmeans/tests.rs read these files. Re-running the script rewrites
them deterministically.
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

REQUIRED_SKLEARN = "1.9.1"
OUT_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
)


def blobs():
    """Well separated: 600 x 8, 5 clusters."""
    x, _ = make_blobs(
        n_samples=600, n_features=8, centers=5, cluster_std=1.0, random_state=42
    )
    return x, 5


def anisotropic():
    """Overlapping, stretched clusters: 800 x 16, 7 clusters with large spread, then a
    random linear map so that clusters are elongated, not round."""
    x, _ = make_blobs(
        n_samples=800, n_features=16, centers=7, cluster_std=3.5, random_state=7
    )
    rng = np.random.RandomState(7)
    transform = rng.normal(size=(16, 16)) * np.linspace(0.2, 2.0, 16)
    return x @ transform, 7


def embeddings():
    """Cosine-style embeddings: 500 x 32, 6 directions plus noise, rows L2-normalised."""
    rng = np.random.RandomState(3)
    directions = rng.normal(size=(6, 32))
    which = rng.randint(0, 6, size=500)
    x = directions[which] + rng.normal(scale=0.8, size=(500, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, 6


def f32_text(v):
    """Shortest decimal that reads back as this float32, checked through the float64
    path a JSON reader takes (parse to float64, then round to float32)."""
    s = str(np.float32(v))
    if np.float32(float(s)) != v:
        raise AssertionError(f"{s} does not round-trip to float32 {v!r}")
    return s


def write(name, x64, k):
    x = np.ascontiguousarray(x64, dtype=np.float32)
    best = KMeans(n_clusters=k, n_init=10, random_state=0).fit(x)
    auto = KMeans(n_clusters=k, random_state=0).fit(x)
    rows = ",\n".join("[" + ",".join(f32_text(v) for v in row) + "]" for row in x)
    header = {
        "sklearn_version": sklearn.__version__,
        "n_clusters": k,
        "sklearn_inertia": float(best.inertia_),
        "sklearn_inertia_n_init_auto": float(auto.inertia_),
        "sklearn_labels": [int(v) for v in best.labels_],
    }
    # json for the small fields, the data rows by hand so that each value keeps its
    # float32 spelling.
    body = json.dumps(header)[:-1] + ',\n"data": [\n' + rows + "\n]}\n"
    json.loads(body)  # well-formed
    path = os.path.join(OUT_DIR, f"kmeans_{name}.json")
    with open(path, "w") as f:
        f.write(body)
    print(
        f"{path}: {x.shape[0]}x{x.shape[1]} k={k} inertia={best.inertia_:.6g} "
        f"(n_init=auto: {auto.inertia_:.6g}), {len(body) // 1024} KiB"
    )


def main():
    if sklearn.__version__ != REQUIRED_SKLEARN:
        sys.exit(f"need scikit-learn {REQUIRED_SKLEARN}, found {sklearn.__version__}")
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, make in [
        ("blobs", blobs),
        ("anisotropic", anisotropic),
        ("embeddings", embeddings),
    ]:
        x, k = make()
        write(name, x, k)


if __name__ == "__main__":
    main()
