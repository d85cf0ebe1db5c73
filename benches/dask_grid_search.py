"""GridSearchCV of backprop_fast's MLPClassifier: locally and on a Dask cluster.

16 candidates x 5 folds on digits, hidden_layer_sizes=(32,), max_iter=50,
timed once each way: local n_jobs=1, local n_jobs=2 (joblib's loky), and
joblib's dask backend on a LocalCluster of two single-threaded worker
processes on the loopback interface (its start is timed apart). Prints a
Markdown report; the three runs must give the same cv_results_ scores.

    python benches/dask_grid_search.py > benches/results/dask-grid-DATE.md
"""
import logging
import os
import platform
import time
import warnings

import joblib
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

import backprop_fast
from backprop_fast.datasets import load_digits
from backprop_fast.sklearn import MLPClassifier

GRID = {"alpha": [1e-4, 1e-3, 1e-2, 1e-1], "learning_rate_init": [1e-3, 3e-3, 1e-2, 3e-2]}


def search(n_jobs, backend=None):
    grid = GridSearchCV(MLPClassifier((32,), max_iter=50, random_state=0), GRID, cv=5,
                        n_jobs=n_jobs)
    X, y = load_digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        if backend is None:
            grid.fit(X, y)
        else:
            with joblib.parallel_backend(backend):
                grid.fit(X, y)
        return time.perf_counter() - start, grid


def main():
    import dask
    import distributed

    rows = []
    t1, g1 = search(1)
    rows.append(("local, n_jobs=1", t1, g1))
    t2, g2 = search(2)
    rows.append(("local, n_jobs=2 (loky)", t2, g2))
    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        started = time.perf_counter() - start
        td, gd = search(-1, "dask")
    rows.append(("dask, LocalCluster 2 workers x 1 thread", td, gd))

    same = all(np.array_equal(g.cv_results_["mean_test_score"], g1.cv_results_["mean_test_score"])
               for _, _, g in rows)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print("# GridSearchCV on a Dask LocalCluster vs locally (digits, 16 candidates x 5 folds)\n")
    print("Command: `python benches/dask_grid_search.py`\n")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average before "
          f"the end: {load} (1, 5, 15 min)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"software: backprop_fast {backprop_fast.__version__}, Python "
          f"{platform.python_version()}, NumPy {np.__version__}, joblib {joblib.__version__}, "
          f"dask {dask.__version__}, distributed {distributed.__version__}")
    print("search: MLPClassifier(hidden_layer_sizes=(32,), max_iter=50, random_state=0), "
          f"grid {GRID}, cv=5: 80 fits")
    print(f"cluster start (not in the dask time): {started:.1f} s")
    print(f"same cv_results_ mean_test_score in all three runs: {same}\n")
    print("| run | time | speed-up over local n_jobs=1 |")
    print("| --- | ---: | ---: |")
    for name, t, _ in rows:
        print(f"| {name} | {t:.1f} s | {t1 / t:.2f}x |")


if __name__ == "__main__":
    main()
