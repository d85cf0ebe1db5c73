"""What the scikit-learn estimators add to a small call, beside Network's own.

    python benches/estimator_overhead.py [--calls 2000] [--out benches/results/estimator-overhead-<label>.md]

On 20 rows of 4 features, a network of one hidden layer of 5 units, each
pair timed one after the other in one run (the 10th percentile of
``--calls`` calls each, after 50 warm-up calls): ``MLPClassifier.fit`` and
``MLPRegressor.fit`` with ``max_iter=1`` against ``Network.fit(epochs=1)`` of
the same architecture on the same data, and ``predict``, ``predict_proba``
and ``score`` against ``Network.predict``. The ratios are what a user of the
estimators pays on top of the kernel's own entry points for a call this
small. The fits are also compared with the same work done by hand: a new
Network (an estimator's fit makes one) trained one epoch by Adam, the
estimators' default solver, on the full batch; ``partial_fit`` (one more
epoch of the same network) with ``Network.fit`` going on by Adam.
"""
import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
import sklearn

import backprop_fast as bf
from backprop_fast.sklearn import MLPClassifier, MLPRegressor


def p10(f, calls):
    for _ in range(50):
        f()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[calls // 10]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--out", help="also write the table, as Markdown, to this file")
    args = parser.parse_args()
    warnings.simplefilter("ignore")   # max_iter=1 warns about convergence every fit
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4))
    labels = rng.integers(0, 3, 20)
    target = rng.normal(size=20)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=1, random_state=0).fit(X, labels)
    reg = MLPRegressor(hidden_layer_sizes=(5,), max_iter=1, random_state=0).fit(X, target)
    net = bf.Network([4, 5, 3], ["relu", "softmax"], "cross_entropy", seed=0)
    net_r = bf.Network([4, 5, 1], ["relu", "identity"], "squared_error", seed=0)
    # partial_fit goes on training its network by Adam: so do these two.
    net_a = bf.Network([4, 5, 3], ["relu", "softmax"], "cross_entropy", seed=0)
    net_ra = bf.Network([4, 5, 1], ["relu", "identity"], "squared_error", seed=0)
    pairs = [
        ("MLPClassifier.fit / Network.fit", lambda: clf.fit(X, labels),
         lambda: net.fit(X, labels, epochs=1, batch_size=20)),
        ("MLPRegressor.fit / Network.fit", lambda: reg.fit(X, target),
         lambda: net_r.fit(X, target, epochs=1, batch_size=20)),
        ("MLPClassifier.fit / new Network, fit by Adam", lambda: clf.fit(X, labels),
         lambda: bf.Network([4, 5, 3], ["relu", "softmax"], "cross_entropy", seed=0).fit(
             X, labels, epochs=1, batch_size=20, optimizer="adam", learning_rate=1e-3)),
        ("MLPRegressor.fit / new Network, fit by Adam", lambda: reg.fit(X, target),
         lambda: bf.Network([4, 5, 1], ["relu", "identity"], "squared_error", seed=0).fit(
             X, target, epochs=1, batch_size=20, optimizer="adam", learning_rate=1e-3)),
        ("MLPClassifier.partial_fit / Network.fit by Adam", lambda: clf.partial_fit(X, labels),
         lambda: net_a.fit(X, labels, epochs=1, batch_size=20, optimizer="adam",
                           learning_rate=1e-3)),
        ("MLPRegressor.partial_fit / Network.fit by Adam", lambda: reg.partial_fit(X, target),
         lambda: net_ra.fit(X, target, epochs=1, batch_size=20, optimizer="adam",
                            learning_rate=1e-3)),
        ("MLPClassifier.predict / Network.predict", lambda: clf.predict(X),
         lambda: net.predict(X)),
        ("MLPClassifier.predict_proba / Network.predict", lambda: clf.predict_proba(X),
         lambda: net.predict(X)),
        ("MLPClassifier.score / Network.predict", lambda: clf.score(X, labels),
         lambda: net.predict(X)),
        ("MLPRegressor.score / Network.predict", lambda: reg.score(X, target),
         lambda: net_r.predict(X)),
    ]
    from threadpoolctl import threadpool_info
    lines = [f"# Estimator overhead, {platform.processor() or platform.machine()}", "",
             f"Command: `python benches/estimator_overhead.py --calls {args.calls}`; kernel "
             f"variant {bf.kernel_isa}; {os.cpu_count()} CPUs; Python "
             f"{sys.version.split()[0]}; NumPy {np.__version__}; scikit-learn "
             f"{sklearn.__version__}; threadpoolctl: "
             + ", ".join(f"{i['internal_api']} {i.get('architecture', '')} "
                         f"{i['num_threads']} threads" for i in threadpool_info()), "",
             "| call | estimator us | network us | ratio |", "| --- | ---: | ---: | ---: |"]
    print(f"{'call':52s} {'estimator us':>13s} {'network us':>11s} {'ratio':>6s}")
    for name, ours, base in pairs:
        a, b = p10(ours, args.calls), p10(base, args.calls)
        print(f"{name:52s} {a * 1e6:13.1f} {b * 1e6:11.1f} {a / b:6.2f}")
        lines.append(f"| {name} | {a * 1e6:.1f} | {b * 1e6:.1f} | {a / b:.2f} |")
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
