"""A hyperparameter search three ways: MLPClassifierCV beside GridSearchCV.

    python benches/search.py                          # prints the table
    python benches/search.py --out benches/results/search.json
    python benches/search.py --candidates 2 --folds 2 --repeats 1   # a quick check
    python benches/search.py --data iris --hidden 10 --max-iter 200

The search: 16 candidates (4 ``learning_rate_init`` x 4 ``alpha``) x 5 folds
on digits (``sklearn.datasets.load_digits``, pixels divided by 16, as
``backprop_fast.datasets.load_digits`` scales them), an MLP with
``hidden_layer_sizes=(32,)``, ``max_iter=50``, ``random_state=0``, refit of
the best on all the data included. ``--data`` takes scikit-learn's iris,
wine or breast_cancer instead (standardised), ``--hidden`` another hidden
layer width, ``--max-iter`` another epoch limit: small data sets, whose
fits are short and whose small networks train in vector lanes (see the
"Many networks at once" page). Three contenders run in this one
process, interleaved, ``--repeats`` times each; the table gives each one's
median time and its ratio to MLPClassifierCV:

- ``backprop_fast.sklearn.MLPClassifierCV`` (every fit in one ``fit_many``
  call, on all the threads the kernel may use);
- ``GridSearchCV(backprop_fast.sklearn.MLPClassifier(...), n_jobs=-1)``;
- ``GridSearchCV(sklearn.neural_network.MLPClassifier(...), n_jobs=-1)``.

It also counts the search's arithmetic and prints the rate each contender
achieves on it. Per sample and epoch, for weight matrices of sizes
n_out x n_in (W entries in all, W_1 in the first layer) and B biases: the
forward pass takes 2 W + B flops (multiply-adds as two, bias additions),
the backward pass 2 W for the weight gradients, B for the bias gradients
and 2 (W - W_1) to carry the error back through the layers above the
first. The update takes, per step and parameter, 14 flops for adam (2 for
the L2 term, 3 and 4 for the two moments, 5 for the step with its square
root and division counted as one each) or 9 for sgd with momentum.
Activations, their derivatives and the cost are left out. The epochs are
those each fit ran (its ``n_iter_``, from the same fits repeated after the
timing, and the timed search's refit); the figure in the "6 x parameters
per sample" convention of the other benchmarks is printed beside it.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
from sklearn import neural_network as sk_nn
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold

import backprop_fast
from backprop_fast import _search
from backprop_fast.sklearn import MLPClassifier, MLPClassifierCV

DATA = {"digits": load_digits, "iris": load_iris, "wine": load_wine,
        "breast_cancer": load_breast_cancer}
RATES = [1e-3, 3e-3, 1e-2, 3e-2]
ALPHAS = [1e-4, 1e-3, 1e-2, 1e-1]
# Flops per parameter per step of the update (see the module's docstring).
UPDATE_FLOPS = {"adam": 14, "sgd": 9}


def _grid(candidates):
    """The first ``candidates`` of the 4 x 4 grid, as one list of dicts."""
    pairs = [(rate, alpha) for rate in RATES for alpha in ALPHAS][:candidates]
    return [{"learning_rate_init": [rate], "alpha": [alpha]} for rate, alpha in pairs]


def _contenders(params, grid, folds):
    return {
        "MLPClassifierCV": lambda: MLPClassifierCV(**params, param_grid=grid, cv=folds),
        "GridSearchCV(backprop_fast)": lambda: GridSearchCV(MLPClassifier(**params), grid,
                                                            cv=folds, n_jobs=-1),
        "GridSearchCV(sklearn)": lambda: GridSearchCV(sk_nn.MLPClassifier(**params), grid,
                                                      cv=folds, n_jobs=-1),
    }


def _fit_flops(layer_sizes, n_rows, epochs, batch, solver):
    """The search's count for one fit (see the module's docstring)."""
    shapes = list(zip(layer_sizes[1:], layer_sizes[:-1]))
    W = sum(o * i for o, i in shapes)
    B = sum(o for o, _ in shapes)
    per_sample = (2 * W + B) + (2 * W + B) + 2 * (W - shapes[0][0] * shapes[0][1])
    steps = math.ceil(n_rows / batch)
    per_epoch = per_sample * n_rows + UPDATE_FLOPS[solver] * (W + B) * steps
    return per_epoch * epochs, 6 * (W + B) * n_rows * epochs


def count_flops(params, grid, folds, X, y, refitted):
    """Flops of the search: every fold of every candidate, and the refit."""
    base = MLPClassifier(**params)
    candidates = [dict(zip(g, (v[0] for v in g.values()))) for g in grid]
    splits = list(StratifiedKFold(folds).split(X, y))
    estimators, subsets = [], []
    for c in candidates:
        for train, _ in splits:
            estimators.append(clone(base).set_params(**c))
            subsets.append(train)
    errors, _ = _search.fit_estimators(estimators, X, y, subsets)
    assert not any(errors), errors
    estimators.append(refitted)
    subsets.append(np.arange(X.shape[0]))
    exact = convention = 0
    for est, rows in zip(estimators, subsets):
        batch = min(200, len(rows)) if est.batch_size == "auto" else est.batch_size
        a, b = _fit_flops(est.network_.layer_sizes, len(rows), est.n_iter_, batch, est.solver)
        exact += a
        convention += b
    return exact, convention, sum(est.n_iter_ for est in estimators)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=16, choices=range(1, 17),
                        metavar="1..16", help="the first this many of the 16 candidates")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--data", choices=sorted(DATA), default="digits")
    parser.add_argument("--hidden", type=int, default=32, help="hidden layer width")
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y = DATA[args.data](return_X_y=True)
    X = X / 16.0 if args.data == "digits" else (X - X.mean(axis=0)) / X.std(axis=0)
    params = dict(hidden_layer_sizes=(args.hidden,), max_iter=args.max_iter, random_state=0)
    grid = _grid(args.candidates)
    contenders = _contenders(params, grid, args.folds)
    times = {name: [] for name in contenders}
    means = {}
    searches = {}
    for _ in range(args.repeats):
        # Interleaved, so that a change in the machine's load hits all three.
        for name, make in contenders.items():
            search = make()
            start = time.perf_counter()
            search.fit(X, y)
            times[name].append(time.perf_counter() - start)
            means[name] = search.cv_results_["mean_test_score"]
            searches[name] = search
    exact, convention, epochs = count_flops(params, grid, args.folds, X, y,
                                            searches["MLPClassifierCV"].best_estimator_)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ours = medians["MLPClassifierCV"]
    fits = args.candidates * args.folds
    print(f"search: {args.candidates} candidates x {args.folds} folds = {fits} fits + refit, "
          f"{args.data} {X.shape}, MLP({args.hidden},), max_iter={args.max_iter}; "
          f"{epochs} epochs run")
    print(f"arithmetic: {exact / 1e9:.2f} GFLOP counted "
          f"({convention / 1e9:.2f} GFLOP as 6 x parameters per sample)")
    same = np.allclose(means["MLPClassifierCV"], means["GridSearchCV(backprop_fast)"], rtol=0,
                       atol=1e-9)
    print(f"same mean_test_score, MLPClassifierCV and GridSearchCV(backprop_fast): {same}")
    print(f"{'contender':30s} {'median':>10s} {'ratio':>8s} {'GFLOP/s':>9s}")
    for name, median in medians.items():
        print(f"{name:30s} {median:9.3f}s {median / ours:7.2f}x {exact / median / 1e9:9.2f}")
    result = {"what": f"MLPClassifierCV vs GridSearchCV, {args.data}, median of interleaved "
                      "repeats",
              "data": args.data, "hidden": args.hidden, "repeats": args.repeats,
              "candidates": args.candidates, "folds": args.folds,
              "max_iter": args.max_iter, "epochs_run": epochs, "flops": exact,
              "flops_6p": convention, "median_s": medians,
              "ratio_to_MLPClassifierCV": {n: m / ours for n, m in medians.items()},
              "gflops_per_s": {n: exact / m / 1e9 for n, m in medians.items()},
              "backprop_fast": backprop_fast.__version__, "python": sys.version.split()[0],
              "numpy": np.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
              "kernel_isa": backprop_fast.kernel_isa}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    main()
