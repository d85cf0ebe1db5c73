"""fit_many against one fit call per network, side by side in one run.

    python benches/many.py [--repeats 15] [--out benches/results/many-<label>.md]

Two workloads, each timed in alternation with its baseline (the median of
``--repeats`` rounds; every round builds fresh networks, outside the clock):

* "16 digits nets": 16 networks of 64-32-10 (tanh, softmax, float32) on
  the bundled digits, batch 32, 5 epochs, one learning rate per network:
  ``fit_many`` (on every thread, and on one) against 16 ``Network.fit``
  calls.
* "32 digits nets": the same with 32 networks (enough for a full group of
  vector lanes on each of two threads).
* "64 XOR nets": 64 networks of 2-2-1 (sigmoid, squared error) on XOR,
  1,000 full-batch epochs, 64 seeds: ``fit_many`` against one such network
  trained alone.

JAX's ``vmap`` of a jitted ``lax.scan`` over the 16 digits networks joins
the first workload when JAX is importable (timed after the others, in the
same run).
"""
import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

import backprop_fast as bf
from backprop_fast.datasets import load_digits


def digits_case(count=16):
    X, y = load_digits()
    X = X.astype(np.float32)
    rates = list(np.geomspace(0.01, 0.3, count))

    def nets():
        return [bf.Network([64, 32, 10], ["tanh", "softmax"], "cross_entropy",
                           dtype=np.float32, seed=k) for k in range(count)]

    def one_by_one(ns):
        for net, rate in zip(ns, rates):
            net.fit(X, y, epochs=5, batch_size=32, learning_rate=float(rate))

    def many(threads):
        return lambda ns: bf.fit_many(ns, X, y, epochs=5, batch_size=32, n_threads=threads,
                                      learning_rate=[float(r) for r in rates])

    # fit_many on one thread does each network's own arithmetic in one call:
    # beside the loop of fit calls, it shows what the threads add.
    return ({f"{count} Network.fit calls": (nets, one_by_one), "fit_many": (nets, many(None)),
             "fit_many on one thread": (nets, many(1))},
            _jax_digits(X, y, rates) if count == 16 else None)


def _jax_digits(X, y, rates):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    n = X.shape[0] // 32 * 32
    Xb = jnp.asarray(X[:n].reshape(-1, 32, 64))
    Yb = jnp.asarray(np.eye(10, dtype=np.float32)[y[:n]].reshape(-1, 32, 10))
    lr = jnp.asarray(np.array(rates, dtype=np.float32))

    def loss(p, xb, yb):
        h = jnp.tanh(xb @ p[0].T + p[1])
        z = h @ p[2].T + p[3]
        return -jnp.mean(jnp.sum(yb * jax.nn.log_softmax(z), axis=1))

    def train(p, rate):
        def step(p, batch):
            g = jax.grad(loss)(p, *batch)
            return [a - rate * b for a, b in zip(p, g)], None

        def epoch(p, _):
            return jax.lax.scan(step, p, (Xb, Yb))[0], None
        return jax.lax.scan(epoch, p, None, length=5)[0]

    run = jax.jit(jax.vmap(train))

    def params():
        rng = np.random.default_rng(0)
        return [jnp.asarray(rng.normal(0, 0.1, (16,) + s).astype(np.float32))
                for s in [(32, 64), (32,), (10, 32), (10,)]]

    jax.block_until_ready(run(params(), lr))   # compile outside the clock
    return params, lambda p: jax.block_until_ready(run(p, lr))


def xor_case():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float)
    y = np.array([0, 1, 1, 0], float)

    def nets(count):
        return lambda: [bf.Network([2, 2, 1], ["sigmoid", "sigmoid"], "squared_error", seed=k)
                        for k in range(count)]

    def alone(ns):
        ns[0].fit(X, y, epochs=1000, learning_rate=0.5)

    def many(ns):
        bf.fit_many(ns, X, y, epochs=1000, learning_rate=0.5)

    return {"one XOR net alone": (nets(1), alone), "64 XOR nets, fit_many": (nets(64), many)}, None


def measure(runners, repeats):
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (make, run) in runners.items():
            state = make()
            t = time.perf_counter()
            run(state)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out")
    args = parser.parse_args()
    from threadpoolctl import threadpool_info
    lines = [f"# fit_many, {platform.processor() or platform.machine()}",
             "", f"Command: `python benches/many.py --repeats {args.repeats}`; kernel "
             f"variant {bf.kernel_isa}; {os.cpu_count()} CPUs; OpenMP threads as the "
             f"environment allows; Python {sys.version.split()[0]}; threadpoolctl: "
             + ", ".join(f"{i['internal_api']} {i.get('architecture', '')} "
                         f"{i['num_threads']} threads" for i in threadpool_info()), ""]
    for title, (runners, jax_runner), base in (
            ("16 digits nets", digits_case(), "16 Network.fit calls"),
            ("32 digits nets", digits_case(32), "32 Network.fit calls"),
            ("64 XOR nets", xor_case(), "one XOR net alone")):
        med = measure(runners, args.repeats)
        if jax_runner is not None:
            # After the others, not between them: XLA's worker threads spin a
            # while after each call and would take the second core from them.
            med.update(measure({"JAX vmap in one jitted scan": jax_runner}, args.repeats))
        lines += [f"## {title}", "", "| how | median ms | ratio to the first |",
                  "| --- | ---: | ---: |"]
        for name, t in med.items():
            lines.append(f"| {name} | {t * 1e3:.2f} | {t / med[base]:.2f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
