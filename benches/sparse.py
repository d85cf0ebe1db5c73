"""Sparse input: backprop_fast's MLPClassifier against scikit-learn's on a
text-like CSR matrix, and the peak memory of a fit on a larger one.

    python benches/sparse.py [--epochs 3] [--out benches/results/sparse-<label>.md]

Part 1: a 20,000 x 50,000 CSR matrix at density 0.001 with a 4-class
target (each class has its own informative columns; rows L2-normalised as
TF-IDF rows are), both estimators with the same settings (adam, one hidden
layer of 100 relu units, batch 200, alpha 1e-4, learning_rate_init 1e-3,
tol 0 so that both run the same number of epochs), each fit timed once;
accuracies on 5,000 held-out rows.
Part 2: a 50,000 x 200,000 CSR matrix at density 0.0005 (the dense form:
80 GB), one adam epoch of backprop_fast's MLPClassifier in a fresh process;
its peak resident set size (ru_maxrss).

One run of each, on whatever else the machine was doing: a single
measurement, not a distribution.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp


def text_like(n, d, density, classes, seed):
    """CSR rows of about density * d values: a third from the row's class's
    own columns, the rest anywhere; positive values, rows of unit norm."""
    rng = np.random.default_rng(seed)
    per_row = max(2, int(round(density * d)))
    y = rng.integers(0, classes, n)
    informative = d // (4 * classes)  # each class's own block of columns
    own = per_row // 3
    cols = np.empty((n, per_row), dtype=np.int64)
    cols[:, :own] = y[:, None] * informative + rng.integers(0, informative, (n, own))
    cols[:, own:] = rng.integers(0, d, (n, per_row - own))
    cols.sort(axis=1)
    vals = rng.random((n, per_row)) + 0.1
    vals /= np.linalg.norm(vals, axis=1, keepdims=True)
    X = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * per_row + 1, per_row)),
                      shape=(n, d))
    X.sum_duplicates()
    return X, y


SETTINGS = dict(hidden_layer_sizes=(100,), solver="adam", batch_size=200, alpha=1e-4,
                learning_rate_init=1e-3, tol=0.0, random_state=0)


def compare(epochs):
    from sklearn.neural_network import MLPClassifier as SkMLP

    from backprop_fast.sklearn import MLPClassifier

    X, y = text_like(25_000, 50_000, 0.001, 4, seed=0)
    Xtr, ytr, Xte, yte = X[:20_000], y[:20_000], X[20_000:], y[20_000:]
    out = {}
    for name, cls in (("backprop_fast", MLPClassifier), ("scikit-learn", SkMLP)):
        est = cls(max_iter=epochs, **SETTINGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not converged: the epochs are fixed
            t = time.perf_counter()
            est.fit(Xtr, ytr)
            seconds = time.perf_counter() - t
        out[name] = dict(seconds=seconds, accuracy=float(est.score(Xte, yte)),
                         epochs=int(est.n_iter_))
    return out


def memory_child():
    from backprop_fast.sklearn import MLPClassifier

    X, y = text_like(50_000, 200_000, 0.0005, 4, seed=1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    est = MLPClassifier(max_iter=1, **SETTINGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(peak_mb=peak / 1024, before_fit_mb=base / 1024, seconds=seconds,
                          nnz=int(X.nnz), dtype=str(est.network_.dtype))))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child()
        return
    cmp = compare(args.epochs)
    proc = subprocess.run([sys.executable, __file__, "--memory-child"], capture_output=True,
                          text=True, check=True)
    mem = json.loads(proc.stdout.strip().splitlines()[-1])
    bf, sk = cmp["backprop_fast"], cmp["scikit-learn"]
    lines = [
        "# Sparse input: backprop_fast vs scikit-learn's MLPClassifier",
        "",
        f"Command: `python benches/sparse.py --epochs {args.epochs}`; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        "shared with other jobs during the run (one measurement, not a distribution).",
        "",
        "## 20,000 x 50,000 CSR, density 0.001, 4 classes (5,000 held-out rows)",
        "",
        f"Settings: {SETTINGS}, max_iter={args.epochs}.",
        "",
        "| estimator | fit seconds | epochs | test accuracy |",
        "|---|---|---|---|",
        f"| backprop_fast | {bf['seconds']:.2f} | {bf['epochs']} | {bf['accuracy']:.4f} |",
        f"| scikit-learn | {sk['seconds']:.2f} | {sk['epochs']} | {sk['accuracy']:.4f} |",
        "",
        f"scikit-learn's time / backprop_fast's: {sk['seconds'] / bf['seconds']:.2f}x; "
        f"accuracy difference {100 * (bf['accuracy'] - sk['accuracy']):+.2f} points.",
        "",
        "## 50,000 x 200,000 CSR, density 0.0005 (dense: 80 GB in float64)",
        "",
        f"One adam epoch of backprop_fast's MLPClassifier ({mem['dtype']}, "
        f"{mem['nnz']:,} stored values) in a fresh process: peak resident set "
        f"{mem['peak_mb']:.0f} MB ({mem['before_fit_mb']:.0f} MB before fit, the data "
        f"included); the epoch took {mem['seconds']:.1f} s.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
