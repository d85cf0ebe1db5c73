"""MLPClassifierCV on a two-worker Dask cluster beside the same search in one process.

    python benches/dask_cv.py                     # prints the table
    python benches/dask_cv.py --out benches/results/dask-cv.json
    python benches/dask_cv.py --candidates 2 --folds 2 --repeats 1   # a quick check

The search: 16 candidates (4 ``learning_rate_init`` x 4 ``alpha``) x 5 folds
on digits (``sklearn.datasets.load_digits``, pixels divided by 16), an MLP
with ``hidden_layer_sizes=(32,)``, ``max_iter=50``, ``random_state=0``,
refit of the best on all the data included. Two runs of it, interleaved,
``--repeats`` times each:

- local: ``MLPClassifierCV(...).fit`` in this process, every fit in one
  ``fit_many`` call on all the threads the kernel may use;
- dask: the same call inside ``joblib.parallel_backend("dask")``, on a
  ``LocalCluster`` of two single-threaded worker processes on the loopback
  interface (started once, before the first repeat, and not timed): the data
  scattered once per search, the fits dealt into slices, each slice one
  ``fit_many`` call on a worker.

The table gives each run's median time and the ratio dask / local; the two
runs must agree on every ``cv_results_`` test score and on the best
parameters, or the script stops with an error.
"""
import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import backprop_fast
from backprop_fast.sklearn import MLPClassifierCV

RATES = [1e-3, 3e-3, 1e-2, 3e-2]
ALPHAS = [1e-4, 1e-3, 1e-2, 1e-1]


def _grid(candidates):
    """The first ``candidates`` of the 4 x 4 grid, as one list of dicts."""
    pairs = [(rate, alpha) for rate in RATES for alpha in ALPHAS][:candidates]
    return [{"learning_rate_init": [rate], "alpha": [alpha]} for rate, alpha in pairs]


def _timed_fit(make, X, y, backend):
    search = make()
    start = time.perf_counter()
    if backend is None:
        search.fit(X, y)
    else:
        with joblib.parallel_backend(backend):
            search.fit(X, y)
    return time.perf_counter() - start, search


def _check_same(local, remote):
    for key, expected in local.cv_results_.items():
        if key.endswith("test_score"):
            if not np.array_equal(remote.cv_results_[key], expected):
                raise SystemExit(f"the dask run's {key} differs from the local run's")
    if remote.best_params_ != local.best_params_:
        raise SystemExit("the dask run's best_params_ differ from the local run's")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=16, choices=range(1, 17),
                        metavar="1..16", help="the first this many of the 16 candidates")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import dask
    import distributed

    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    grid = _grid(args.candidates)

    def make():
        return MLPClassifierCV(hidden_layer_sizes=(32,), max_iter=args.max_iter,
                               random_state=0, param_grid=grid, cv=args.folds)

    runs = {"local (one process)": None, "dask (2 workers x 1 thread)": "dask"}
    times = {name: [] for name in runs}
    start = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        started = time.perf_counter() - start
        # The workers' fits warn as the local ones do; their filters are their own.
        client.run(warnings.simplefilter, "ignore", ConvergenceWarning)
        for _ in range(args.repeats):
            # Interleaved, so that a change in the machine's load hits both.
            searches = {}
            for name, backend in runs.items():
                elapsed, searches[name] = _timed_fit(make, X, y, backend)
                times[name].append(elapsed)
            _check_same(*searches.values())

    medians = {name: statistics.median(t) for name, t in times.items()}
    local, remote = medians.values()
    fits = args.candidates * args.folds
    print(f"search: MLPClassifierCV, {args.candidates} candidates x {args.folds} folds = "
          f"{fits} fits + refit, digits {X.shape}, MLP(32,), max_iter={args.max_iter}; "
          f"{args.repeats} interleaved repeats")
    print(f"cluster start (not timed): {started:.1f} s; cv_results_ test scores and "
          "best_params_ equal in every repeat")
    print(f"{'run':30s} {'median':>10s} {'ratio to local':>15s}")
    for name, median in medians.items():
        print(f"{name:30s} {median:9.3f}s {median / local:14.2f}x")
    result = {"what": "MLPClassifierCV on a 2-worker loopback Dask cluster vs one process, "
                      "digits, median of interleaved repeats",
              "repeats": args.repeats, "candidates": args.candidates, "folds": args.folds,
              "max_iter": args.max_iter, "times_s": times, "median_s": medians,
              "ratio_dask_to_local": remote / local, "cluster_start_s": started,
              "backprop_fast": backprop_fast.__version__, "python": sys.version.split()[0],
              "numpy": np.__version__, "dask": dask.__version__,
              "distributed": distributed.__version__, "joblib": joblib.__version__,
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "kernel_isa": backprop_fast.kernel_isa}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
