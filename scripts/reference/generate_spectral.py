#!/usr/bin/env python3
"""Generate the spectral-clustering parity fixtures from scikit-learn 1.9.1.

How to run (from the repository root):

    /tmp/skvenv/bin/python scripts/reference/generate_spectral.py

What it writes: tests/fixtures/spectral_<name>.json for name in blobs, circles, moons, iris,
blobs_large, digits:

    sklearn_version   the scikit-learn that produced the answers (must be 1.9.1)
    dataset           the name
    description       how the data were made
    data              the rows, exactly the float32 values scikit-learn was given (each
                      written as the shortest decimal that reads back as that float32).
                      scikit-learn converts them to float64, as it does for any input.
    truth             the ground-truth class of every row
    cases             [{"params": {...}, "labels": [...], "ari": ARI of labels vs truth}]

`params` go to `SpectralClustering(**params)` exactly as written; they are also exactly the
`algorithm_params` the Rust tests send. A port cannot reproduce NumPy's Mersenne Twister
(ARPACK's start vector, k-means++ and discretize draws), so the tests compare the quality
of the partition, the adjusted Rand index against the ground truth, not the labels.

Stability rule. A case whose scikit-learn ARI depends on the seed is no fair yardstick, so
every case is rerun with random_state 0..STABILITY_SEEDS-1 and must stay within
MAX_SPREAD of the recorded ARI; otherwise the script fails and the case is changed.

Tie rule. Iris and digits have duplicated rows and values on a grid; exact ties make the k-nearest
neighbour graph depend on the order ties are broken in. Its standardised values get a
seeded N(0, 1e-3) jitter (seed 7) before the float32 conversion, which removes the ties
without changing the classes; digits (integers 0..16, divided by 16) get N(0, 1e-3)
with seed 5. The synthetic sets are continuous and have no ties.
"""

import json
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn.cluster import SpectralClustering
from sklearn.datasets import load_digits, load_iris, make_blobs, make_circles, make_moons
from sklearn.metrics import adjusted_rand_score

REQUIRED_SKLEARN = "1.9.1"
STABILITY_SEEDS = 5
MAX_SPREAD = 0.01
OUT_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
)


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def short(v):
    """The shortest decimal that reads back as this float32."""
    s = np.format_float_positional(np.float32(v), unique=True, trim="-")
    assert np.float32(float(s)) == np.float32(v)
    return float(s)


def standardise(x):
    return (x - x.mean(axis=0)) / x.std(axis=0)


def datasets():
    out = {}
    x, y = make_blobs(n_samples=300, centers=4, n_features=3, cluster_std=1.2, random_state=3)
    out["blobs"] = (
        "make_blobs(300, centers=4, n_features=3, cluster_std=1.2, random_state=3), standardised",
        f32(standardise(x)),
        y,
        [
            {"n_clusters": 4, "random_state": 0},
            {"n_clusters": 4, "assign_labels": "discretize", "random_state": 0},
            {"n_clusters": 4, "assign_labels": "cluster_qr"},
            {"n_clusters": 4, "gamma": 0.2, "random_state": 0},
            {"n_clusters": 4, "affinity": "nearest_neighbors", "random_state": 0},
        ],
    )
    x, y = make_circles(n_samples=300, factor=0.5, noise=0.05, random_state=1)
    out["circles"] = (
        "make_circles(300, factor=0.5, noise=0.05, random_state=1)",
        f32(x),
        y,
        [
            {"n_clusters": 2, "affinity": "nearest_neighbors", "random_state": 0},
            {"n_clusters": 2, "affinity": "nearest_neighbors", "assign_labels": "discretize",
             "random_state": 0},
            {"n_clusters": 2, "affinity": "nearest_neighbors", "assign_labels": "cluster_qr"},
            {"n_clusters": 2, "affinity": "nearest_neighbors", "n_neighbors": 6,
             "random_state": 0},
            {"n_clusters": 2, "gamma": 30.0, "random_state": 0},
            {"n_clusters": 2, "random_state": 0},
        ],
    )
    x, y = make_moons(n_samples=300, noise=0.06, random_state=2)
    out["moons"] = (
        "make_moons(300, noise=0.06, random_state=2)",
        f32(x),
        y,
        [
            {"n_clusters": 2, "affinity": "nearest_neighbors", "random_state": 0},
            {"n_clusters": 2, "affinity": "nearest_neighbors", "n_neighbors": 20,
             "assign_labels": "cluster_qr"},
            {"n_clusters": 2, "affinity": "nearest_neighbors", "n_components": 4,
             "assign_labels": "discretize", "random_state": 0},
            {"n_clusters": 2, "gamma": 15.0, "random_state": 0},
        ],
    )
    iris = load_iris()
    rng = np.random.RandomState(7)
    xi = standardise(iris.data) + rng.normal(0, 1e-3, iris.data.shape)
    out["iris"] = (
        "load_iris(), standardised, plus seeded N(0, 1e-3) jitter (seed 7)",
        f32(xi),
        iris.target,
        [
            {"n_clusters": 3, "random_state": 0},
            {"n_clusters": 3, "affinity": "nearest_neighbors", "assign_labels": "discretize",
             "random_state": 0},
            {"n_clusters": 3, "gamma": 0.3, "random_state": 0},
            {"n_clusters": 3, "affinity": "nearest_neighbors", "random_state": 0},
            {"n_clusters": 3, "affinity": "nearest_neighbors", "n_neighbors": 15,
             "assign_labels": "cluster_qr"},
        ],
    )
    # Larger than the Rust solver's dense cut-off (512 rows): these exercise the Krylov path.
    x, y = make_blobs(n_samples=1500, centers=6, n_features=5, cluster_std=1.5, random_state=11)
    out["blobs_large"] = (
        "make_blobs(1500, centers=6, n_features=5, cluster_std=1.5, random_state=11), "
        "standardised",
        f32(standardise(x)),
        y,
        [
            {"n_clusters": 6, "random_state": 0},
            {"n_clusters": 6, "gamma": 0.5, "assign_labels": "discretize", "random_state": 0},
            {"n_clusters": 6, "affinity": "nearest_neighbors", "assign_labels": "cluster_qr"},
        ],
    )
    digits = load_digits()
    rng = np.random.RandomState(5)
    xd = digits.data[:900] / 16.0 + rng.normal(0, 1e-3, (900, 64))
    out["digits"] = (
        "load_digits(), first 900 rows, divided by 16, plus seeded N(0, 1e-3) jitter (seed 5)",
        f32(xd),
        digits.target[:900],
        [
            {"n_clusters": 10, "affinity": "nearest_neighbors", "random_state": 0},
            {"n_clusters": 10, "affinity": "nearest_neighbors", "n_neighbors": 15,
             "assign_labels": "cluster_qr"},
            {"n_clusters": 10, "gamma": 0.3, "assign_labels": "cluster_qr"},
            {"n_clusters": 10, "gamma": 0.5, "random_state": 0},
        ],
    )
    return out


def run(x, params, seed=None):
    p = dict(params)
    if seed is not None:
        p["random_state"] = seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SpectralClustering(**p).fit(x.astype(np.float64)).labels_


def main():
    if sklearn.__version__ != REQUIRED_SKLEARN:
        sys.exit(f"need scikit-learn {REQUIRED_SKLEARN}, have {sklearn.__version__}")
    failed = False
    for name, (description, x, y, cases) in datasets().items():
        out_cases = []
        for params in cases:
            labels = run(x, params)
            ari = adjusted_rand_score(y, labels)
            spread = [adjusted_rand_score(y, run(x, params, s)) for s in range(STABILITY_SEEDS)]
            worst = max(abs(a - ari) for a in spread)
            ok = worst <= MAX_SPREAD
            failed |= not ok
            print(f"{name:8} {json.dumps(params):90} ARI {ari:.4f} spread {worst:.4f}"
                  f"{'' if ok else '  UNSTABLE'}")
            out_cases.append({"params": params, "labels": [int(v) for v in labels],
                              "ari": round(float(ari), 6)})
        doc = {
            "sklearn_version": sklearn.__version__,
            "dataset": name,
            "description": description,
            "data": [[short(v) for v in row] for row in x],
            "truth": [int(v) for v in y],
            "cases": out_cases,
        }
        path = os.path.join(OUT_DIR, f"spectral_{name}.json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
    if failed:
        sys.exit("unstable cases: change them")


if __name__ == "__main__":
    main()
