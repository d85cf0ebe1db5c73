"""backprop_fast.sklearn beside scikit-learn's MLP on scikit-learn's bundled data.

    python benches/sklearn_bundled.py                 # writes benches/results/sklearn_bundled.json
    python benches/sklearn_bundled.py --repeats 1 --out /tmp/x.json

What a new user would try: breast cancer, wine, iris, digits and diabetes
(target standardised), each split 75/25 with random_state=0, in two settings:
the estimator's defaults, and make_pipeline(StandardScaler(),
Estimator(hidden_layer_sizes=(64,), early_stopping=True, max_iter=500)).
Both libraries run in this one process, interleaved, with random_state=0;
each fit (set-up, training and scoring of the test split) is timed best of
``--repeats``. The result file lists, per fit, both times, their ratio and
both test scores, and the geometric mean of the ratios.
"""
import argparse
import json
import math
import os
import platform
import sys
import time
import warnings

import numpy as np
from sklearn import datasets
from sklearn import neural_network as sk_nn
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from backprop_fast import sklearn as bf_sk

DATA = {
    "breast_cancer": (datasets.load_breast_cancer, True),
    "wine": (datasets.load_wine, True),
    "iris": (datasets.load_iris, True),
    "digits": (datasets.load_digits, True),
    "diabetes": (datasets.load_diabetes, False),
}


def _estimator(module, classifier, setting):
    cls = module.MLPClassifier if classifier else module.MLPRegressor
    if setting == "default":
        return cls(random_state=0)
    return make_pipeline(StandardScaler(), cls(hidden_layer_sizes=(64,), early_stopping=True,
                                               max_iter=500, random_state=0))


def _run(module, classifier, setting, split):
    X_train, X_test, y_train, y_test = split
    est = _estimator(module, classifier, setting)
    start = time.perf_counter()
    est.fit(X_train, y_train)
    score = est.score(X_test, y_test)
    return time.perf_counter() - start, float(score)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "sklearn_bundled.json"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    rows = []
    for name, (load, classifier) in DATA.items():
        X, y = load(return_X_y=True)
        if not classifier:
            y = (y - y.mean()) / y.std()
        split = train_test_split(X, y, test_size=0.25, random_state=0)
        for setting in ("default", "scaled_early_stopping"):
            times = {"sklearn": [], "backprop_fast": []}
            scores = {}
            for _ in range(args.repeats):
                # Interleaved, so that a change in the machine's load hits both.
                for label, module in (("sklearn", sk_nn), ("backprop_fast", bf_sk)):
                    seconds, scores[label] = _run(module, classifier, setting, split)
                    times[label].append(seconds)
            best = {label: min(t) for label, t in times.items()}
            rows.append({"data": name, "setting": setting,
                         "sklearn_s": best["sklearn"], "backprop_fast_s": best["backprop_fast"],
                         "speedup": best["sklearn"] / best["backprop_fast"],
                         "sklearn_score": scores["sklearn"],
                         "backprop_fast_score": scores["backprop_fast"]})
            r = rows[-1]
            print(f"{name:14s} {setting:22s} sklearn {r['sklearn_s'] * 1e3:9.2f} ms  "
                  f"backprop_fast {r['backprop_fast_s'] * 1e3:8.2f} ms  "
                  f"x{r['speedup']:6.2f}  scores {r['sklearn_score']:.4f} "
                  f"{r['backprop_fast_score']:.4f}", flush=True)
    speedups = [r["speedup"] for r in rows]
    geomean = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
    print(f"geometric mean x{geomean:.2f}, min x{min(speedups):.2f}")
    import sklearn

    result = {"what": "backprop_fast.sklearn vs sklearn.neural_network, bundled data, "
                      "fit + test-split score, best of repeats",
              "repeats": args.repeats, "python": sys.version.split()[0],
              "sklearn": sklearn.__version__, "numpy": np.__version__,
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "rows": rows, "geometric_mean_speedup": geomean,
              "min_speedup": min(speedups)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
