#!/usr/bin/env python3
"""Generate the mean-shift parity fixtures from scikit-learn 1.9.1.

How to run (from the repository root):

    /tmp/skvenv/bin/python scripts/reference/generate_mean_shift.py

What it writes: tests/fixtures/mean_shift_<name>.json for name in blobs, noise, iris, wine:

    sklearn_version     the scikit-learn that produced the answers (must be 1.9.1)
    dataset, description
    estimated_bandwidth sklearn.cluster.estimate_bandwidth(X) (quantile 0.3, all rows): what
                        MeanShift uses when bandwidth is null
    data                the rows, exactly the float32 values scikit-learn was given (shortest
                        decimal that reads back as that float32; checked)
    cases               [{"params": {...}, "labels": [...], "n_clusters": k,
                          "bandwidth": the bandwidth used, "n_iter": n_iter_,
                          "centers": cluster_centers_}]

`params` is passed to MeanShift exactly as written (the float32 data, as clusterd sees it)
and is exactly the `algorithm_params` the Rust tests send. Labels are `labels_`, -1 = noise
(cluster_all=false only).

Tie rule. Mean-shift labels can hinge on a hair: a row a rounding error from the
bandwidth of a mean changes that mean, a centre a hair from the bandwidth of a kept centre
survives or not, a row nearly equidistant from two centres. clusterd sums each mean in f64
(scikit-learn in float32, in KD-tree order), so a case decided by such a hair cannot be
matched. Every case is therefore rerun on the data times (1 + 1e-6 * N(0, 1)) (seeded,
PERTURB_SEED) with the same params, and kept only if the adjusted Rand index of the two
labellings (noise as one class) is >= 0.995 and the number of clusters is unchanged;
otherwise the script fails and the case's parameters are changed. The real datasets
(integer-valued measurements with exact duplicates) are standardised and jittered with
seeded N(0, 0.01) noise before the float32 rounding, so no two rows coincide.

Re-running the script rewrites the files deterministically.
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.cluster import MeanShift, estimate_bandwidth
from sklearn.datasets import load_iris, load_wine, make_blobs
from sklearn.metrics import adjusted_rand_score

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
MIN_ARI = 0.995
PERTURB_SEED = 12345


def f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def blobs():
    x, _ = make_blobs(n_samples=600, centers=4, n_features=2, cluster_std=0.8, random_state=7)
    return f32(x), "make_blobs(n_samples=600, centers=4, n_features=2, cluster_std=0.8, random_state=7)"


def noise():
    x, _ = make_blobs(n_samples=500, centers=3, n_features=3, cluster_std=0.6, random_state=11)
    rng = np.random.RandomState(5)
    background = rng.uniform(x.min(axis=0) - 2, x.max(axis=0) + 2, size=(40, 3))
    return f32(np.vstack([x, background])), (
        "make_blobs(n_samples=500, centers=3, n_features=3, cluster_std=0.6, random_state=11) "
        "plus 40 uniform background points (RandomState(5)) over the bounding box grown by 2"
    )


def standardised(x, seed):
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    rng = np.random.RandomState(seed)
    return f32(x + rng.normal(0.0, 0.01, size=x.shape))


def iris():
    return standardised(load_iris().data, 0), (
        "load_iris().data standardised (z-scores) + N(0, 0.01) jitter (RandomState(0))"
    )


def wine():
    return standardised(load_wine().data, 1), (
        "load_wine().data standardised (z-scores) + N(0, 0.01) jitter (RandomState(1))"
    )


DATASETS = {
    "blobs": (
        blobs,
        [
            {"bandwidth": 1.5},
            {},
            {"bandwidth": 1.2, "bin_seeding": True},
            {"bin_seeding": True, "min_bin_freq": 5},
            {"bandwidth": 1.0, "max_iter": 3},
        ],
    ),
    "noise": (
        noise,
        [
            {"bandwidth": 1.5, "cluster_all": False},
            {"cluster_all": False, "bin_seeding": True, "min_bin_freq": 3},
            {"bandwidth": 1.5},
        ],
    ),
    "iris": (
        iris,
        [
            {},
            {"bandwidth": 1.0},
            {"bandwidth": 1.2, "bin_seeding": True, "cluster_all": False},
        ],
    ),
    "wine": (
        wine,
        [
            {},
            {"bandwidth": 3.0, "cluster_all": False},
        ],
    ),
}


def fit(params, x):
    return MeanShift(**params).fit(x)


def perturbed(x):
    rng = np.random.RandomState(PERTURB_SEED)
    return f32(x.astype(np.float64) * (1.0 + 1e-6 * rng.standard_normal(x.shape)))


def f32_text(v):
    s = str(np.float32(v))
    if s.endswith(".0"):
        s = s[:-2]
    if np.float32(float(s)) != v:
        raise AssertionError(f"{s} does not round-trip to float32 {v!r}")
    return s


def write(name, description, x, est, cases):
    assert x.dtype == np.float32
    header = {
        "sklearn_version": sklearn.__version__,
        "dataset": name,
        "description": description,
        "estimated_bandwidth": est,
    }
    rows = ",\n".join("[" + ",".join(f32_text(v) for v in row) + "]" for row in x)
    case_text = ",\n".join(json.dumps(c) for c in cases)
    body = json.dumps(header)[:-1] + ',\n"cases": [\n' + case_text + '\n],\n"data": [\n' + rows + "\n]}\n"
    back = json.loads(body)
    assert np.array_equal(np.array(back["data"], dtype=np.float64).astype(np.float32), x)
    path = os.path.join(OUT_DIR, f"mean_shift_{name}.json")
    with open(path, "w") as f:
        f.write(body)
    print(f"{path}: {x.shape[0]}x{x.shape[1]}, {len(cases)} cases, {len(body) // 1024} KiB")


def main():
    assert sklearn.__version__ == "1.9.1", sklearn.__version__
    failed = []
    for name, (make, params_list) in DATASETS.items():
        x, description = make()
        est = float(estimate_bandwidth(x))
        xp = perturbed(x)
        cases = []
        for params in params_list:
            m = fit(params, x)
            mp = fit(params, xp)
            ari = adjusted_rand_score(m.labels_, mp.labels_)
            k = len(m.cluster_centers_)
            n_noise = int((m.labels_ == -1).sum())
            bw = params.get("bandwidth", est)
            print(f"{name:6} {json.dumps(params):60} k={k:3} noise={n_noise:3} n_iter={m.n_iter_:3} "
                  f"bw={bw:.4f} ari_perturbed={ari:.4f}")
            if ari < MIN_ARI or len(mp.cluster_centers_) != k:
                failed.append((name, params, ari))
            if k < 2:
                failed.append((name, params, "fewer than two clusters"))
            cases.append({
                "params": params,
                "labels": [int(v) for v in m.labels_],
                "n_clusters": k,
                "bandwidth": float(bw),
                "n_iter": int(m.n_iter_),
                "centers": [[float(v) for v in c] for c in m.cluster_centers_],
            })
        write(name, description, x, est, cases)
    if failed:
        print("fragile or degenerate cases:", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
