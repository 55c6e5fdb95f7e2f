"""scikit-learn 1.9.1 OPTICS answers for the optics module's own tests (reference.json).

Run with a Python that has scikit-learn 1.9.1:
    python src/algorithms/optics/testdata/generate.py
Data are float32 (what the service clusters), given to scikit-learn as float64.
"""

import json
import math
import os

import numpy as np
import sklearn
from sklearn.cluster import OPTICS
from sklearn.datasets import make_blobs

assert sklearn.__version__ == "1.9.1", sklearn.__version__


def sk_params(params):
    """Our algorithm_params → scikit-learn keyword arguments (euclidean is sklearn's
    default minkowski p=2; absent max_eps is inf)."""
    kw = dict(params)
    if kw.get("metric") == "euclidean":
        del kw["metric"]
    return kw


def fit(data, params):
    return OPTICS(**sk_params(params)).fit(data.astype(np.float64))


def finite_or_none(v):
    return [None if math.isinf(x) else float(x) for x in v]


rng = np.random.default_rng(7)
blobs, _ = make_blobs(n_samples=150, centers=3, n_features=2, cluster_std=0.6, random_state=3)
noise = rng.uniform(-12, 12, size=(15, 2))
blobs = np.vstack([blobs, noise]).astype(np.float32)

# Directions matter for cosine: blobs around points far from the origin in 5-D.
angular, _ = make_blobs(n_samples=120, centers=4, n_features=5, cluster_std=0.8,
                        center_box=(-6, 6), random_state=11)
angular = angular.astype(np.float32)

cases = [
    ("blobs", {}),
    ("blobs", {"xi": 0.1, "min_cluster_size": 0.1}),
    ("blobs", {"cluster_method": "dbscan", "eps": 0.8}),
    ("blobs", {"max_eps": 1.5}),
    ("blobs", {"cluster_method": "dbscan", "max_eps": 1.2}),
    ("blobs", {"min_samples": 0.05}),
    ("blobs", {"min_samples": 10, "predecessor_correction": False}),
    ("angular", {"metric": "cosine"}),
    ("angular", {"metric": "cosine", "cluster_method": "dbscan", "eps": 0.05}),
]
datasets = {"blobs": blobs, "angular": angular}
out = {
    "sklearn_version": sklearn.__version__,
    "datasets": {k: v.tolist() for k, v in datasets.items()},
    "cases": [],
}
for name, params in cases:
    labels = fit(datasets[name], params).labels_
    out["cases"].append({"dataset": name, "params": params, "labels": labels.tolist()})

# Continuous random points: no two distances tie, so the ordering is unambiguous.
tie_free = rng.uniform(0, 10, size=(60, 3)).astype(np.float32)
graphs = []
for params in [{"min_samples": 4}, {"min_samples": 6, "max_eps": 2.5}]:
    m = fit(tie_free, params)
    graphs.append({
        "params": params,
        "ordering": m.ordering_.tolist(),
        "core_distances": finite_or_none(m.core_distances_),
        "reachability": finite_or_none(m.reachability_),
        "predecessor": m.predecessor_.tolist(),
    })
out["tie_free"] = {"data": tie_free.tolist(), "graphs": graphs}

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.json")
with open(path, "w") as f:
    json.dump(out, f)
for c in out["cases"]:
    labs = np.array(c["labels"])
    print(c["dataset"], c["params"], "clusters", labs.max() + 1, "noise", (labs == -1).sum())
