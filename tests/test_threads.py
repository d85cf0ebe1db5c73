"""Threads: separate networks train in parallel; one shared network never tears.

``Network`` holds a ``threading.Lock`` around every kernel call and the kernel
releases the GIL, so

* separate networks trained in separate Python threads run at the same time
  (the parallel speed-up is measured and printed — run with ``-s`` to see it —
  never asserted: the machine may be shared);
* one network trained in one thread while others predict, evaluate, take
  gradients or train it too only ever exposes parameters of a finished kernel
  call: every prediction equals the prediction of some consistent state;
* the wide products run on several threads: the kernel's own (OpenMP) in
  every build but the AVX-512 one, BLAS's there; threadpoolctl limits both,
  and the result does not depend on how many there are.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import backprop_fast
from backprop_fast import Network


def _problem(seed, n=256, n_in=8, n_out=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    y = np.tanh(X[:, :n_out] + 0.5 * X[:, n_out:2 * n_out] ** 2) * 0.5 + 0.5
    return X, y


# The measurement runs in a child process with one BLAS thread, so that BLAS's
# own threads cannot hide (or fake) the parallelism of the Python threads.
_MEASURE = textwrap.dedent("""
    import json, sys, threading, time
    import numpy as np
    from backprop_fast import Network

    def problem(seed, n=512):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, 32))
        y = (np.sin(X[:, :4]) > 0).astype(float)
        return X, y

    def train(seed, out):
        X, y = problem(seed)
        net = Network([32, 64, 64, 4], ["tanh", "relu", "sigmoid"], "cross_entropy", seed=seed)
        h = net.fit(X, y, epochs=EPOCHS, batch_size=32, learning_rate=0.05)
        out[seed] = (h.loss, [p.tolist() for p in net.weights + net.biases])

    EPOCHS = 1
    t = time.perf_counter(); train(0, {}); one = time.perf_counter() - t
    EPOCHS = max(2, int(float(sys.argv[1]) / one))   # about that many seconds per network
    best_seq = best_par = float("inf")
    for _ in range(2):
        serial, threaded = {}, {}
        t = time.perf_counter()
        train(1, serial); train(2, serial)
        best_seq = min(best_seq, time.perf_counter() - t)
        threads = [threading.Thread(target=train, args=(s, threaded)) for s in (1, 2)]
        t = time.perf_counter()
        for th in threads: th.start()
        for th in threads: th.join()
        best_par = min(best_par, time.perf_counter() - t)
        assert serial == threaded, "threaded training differs from serial training"
    print(json.dumps({"sequential": best_seq, "parallel": best_par, "epochs": EPOCHS}))
""")


def test_separate_networks_train_in_parallel(record_property, tmp_path):
    """Two networks in two threads against the same two in sequence: the ratio
    is reported (ideally 2 on two idle cores), the results must be identical."""
    # The child imports the backprop_fast this process imports (installed, or an
    # editable source tree), and runs in an empty folder so that a source tree
    # in the working directory cannot shadow it.
    parent = os.path.dirname(os.path.dirname(os.path.abspath(backprop_fast.__file__)))
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=parent + (os.pathsep + path if path else ""))
    seconds = os.environ.get("BACKPROP_FAST_THREAD_SECONDS", "0.5")
    proc = subprocess.run([sys.executable, "-c", _MEASURE, seconds], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = result["sequential"] / result["parallel"]
    record_property("parallel_speedup", round(ratio, 3))
    print(f"\n[threads] two networks, {result['epochs']} epochs each, {os.cpu_count()} CPUs: "
          f"sequential {result['sequential']:.3f} s, two threads {result['parallel']:.3f} s, "
          f"speed-up {ratio:.2f}x")


def _state(net):
    return np.concatenate([np.ravel(p) for p in net.weights + net.biases])


def _with_state(template, state):
    """A new network like ``template`` holding the flat parameter vector ``state``."""
    net = Network(template.layer_sizes, template.activations, template.loss,
                  dtype=template.dtype, seed=0)
    off = 0
    for p in net.weights + net.biases:
        p[...] = state[off:off + p.size].reshape(p.shape)
        off += p.size
    return net


def _matches_some_state(result, expected, what):
    """``result`` equals one of ``expected`` (arrays from consistent states),
    bit for bit or, failing that, far closer to one state than the states are
    to each other (a different BLAS thread split may change the last bits)."""
    for e in expected:
        if np.array_equal(result, e):
            return
    dist = [float(np.max(np.abs(result - e))) for e in expected]
    best = int(np.argmin(dist))
    scale = 1 + float(np.max(np.abs(expected[best])))
    assert dist[best] <= 1e-12 * scale, (
        f"{what} matches no consistent parameter state (nearest off by {dist[best]:.3g}): "
        "a kernel call saw half-updated parameters")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shared_network_never_tears(dtype):
    """One thread trains (several minibatch steps per fit call) while three
    threads predict, evaluate and take gradients: every result is that of the
    parameters before or after some whole fit call."""
    X, y = _problem(0)
    Xq = X[:5]
    net = Network([8, 16, 16, 4], ["tanh", "relu", "sigmoid"], "squared_error", dtype=dtype, seed=4)
    states = [_state(net)]
    done = threading.Event()
    seen = {"predict": [], "evaluate": [], "gradients": []}
    errors = []
    start = threading.Barrier(4)

    def trainer():
        try:
            start.wait()
            for _ in range(40):
                net.fit(X, y, epochs=2, batch_size=16, learning_rate=0.2)
                states.append(_state(net))  # only this thread writes: a consistent copy
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader(kind):
        try:
            start.wait()
            while True:  # at least one call, then until training ends
                if kind == "predict":
                    seen[kind].append(net.predict(Xq))
                elif kind == "evaluate":
                    seen[kind].append(net.evaluate(Xq, y[:5]))
                else:
                    dW, db = net.gradients(Xq, y[:5])
                    seen[kind].append(np.concatenate([np.ravel(g) for g in dW + db]))
                if done.is_set():
                    break
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=trainer)] + [
        threading.Thread(target=reader, args=(k,)) for k in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert not errors, errors
    assert len(states) == 41
    assert all(len(v) > 0 for v in seen.values()), {k: len(v) for k, v in seen.items()}

    replicas = [_with_state(net, s) for s in states]
    expected = {
        "predict": [r.predict(Xq) for r in replicas],
        "evaluate": [np.array(r.evaluate(Xq, y[:5])) for r in replicas],
        "gradients": [np.concatenate([np.ravel(g) for g in sum(r.gradients(Xq, y[:5]), [])])
                      for r in replicas],
    }
    # The states are far apart: a torn state could not pass for a real one.
    pred = expected["predict"]
    assert min(np.max(np.abs(a - b)) for a, b in zip(pred, pred[1:])) > 1e-5
    for kind, results in seen.items():
        for got in {np.asarray(r).tobytes(): np.asarray(r) for r in results}.values():
            _matches_some_state(got, expected[kind], kind)


def test_concurrent_train_steps_serialise():
    """Four threads taking 25 full-batch steps each on the same data give exactly
    the parameters of 100 steps in sequence (each step is atomic)."""
    X, y = _problem(1, n=64)

    def new():
        return Network([8, 12, 4], ["tanh", "sigmoid"], "cross_entropy", seed=9)

    serial = new()
    for _ in range(100):
        serial.train_step(X, y, 0.1)

    shared = new()
    barrier = threading.Barrier(4)

    def steps():
        barrier.wait()
        for _ in range(25):
            shared.train_step(X, y, 0.1)

    threads = [threading.Thread(target=steps) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for p, q in zip(shared.weights + shared.biases, serial.weights + serial.biases):
        np.testing.assert_array_equal(p, q)


def test_concurrent_fits_with_shuffling_are_seeded_consistently():
    """Shuffled fits from two threads draw their seeds under the lock: the result
    equals one of the two serial orders of the same two calls."""
    X, y = _problem(2, n=1024)

    def new():
        return Network([8, 10, 4], ["relu", "sigmoid"], "cross_entropy", seed=13)

    def run(net, rate):
        net.fit(X, y, epochs=20, batch_size=8, learning_rate=rate, shuffle=True)

    outcomes = []
    for order in [(0.05, 0.2), (0.2, 0.05)]:
        net = new()
        for rate in order:
            run(net, rate)
        outcomes.append(_state(net))

    shared = new()
    barrier = threading.Barrier(2)

    def worker(rate):
        barrier.wait()
        run(shared, rate)

    threads = [threading.Thread(target=worker, args=(r,)) for r in (0.05, 0.2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    got = _state(shared)
    assert any(np.array_equal(got, o) for o in outcomes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pools", ["blas", None])
def test_results_do_not_depend_on_the_number_of_threads(kernel_variant, dtype, pools):
    """Products this wide (about 8 million multiply-adds) run on every thread
    that is allowed (the kernel's OpenMP threads, or BLAS's); each
    output element is still summed by one thread in one order, so one and two
    threads train to the same bits. OpenBLAS's Haswell kernels (on AVX2-only
    CPUs, AMD's Zen 3 among them) round a float32 product differently where a
    second thread moves the edges of their blocks: the kernel does those
    products itself in every build but the AVX-512 one. pools: the pools
    limited, BLAS only or all."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(7)
    X = rng.normal(size=(512, 256)).astype(dtype)
    y = rng.integers(0, 10, 512)
    results = []
    for threads in (1, 2, 1):
        net = Network([256, 128, 10], ["relu", "softmax"], "cross_entropy", dtype=dtype, seed=3)
        with threadpoolctl.threadpool_limits(limits=threads, user_api=pools):
            history = net.fit(X, y, epochs=2, batch_size=256, learning_rate=0.05)
            results.append((history.loss, net.predict(X),
                            np.concatenate([w.ravel() for w in net.weights])))
    for other in results[1:]:
        assert other[0] == results[0][0]
        np.testing.assert_array_equal(other[1], results[0][1])
        np.testing.assert_array_equal(other[2], results[0][2])
