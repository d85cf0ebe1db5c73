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


# Wide enough for every product to be split between threads: the shapes
# where OpenBLAS's results change with its thread count, and a wide network
# of four layers (trained one step of 512 rows).
_WIDE = [
    ([300, 700, 10], ["tanh", "softmax"], 600, 300),
    ([784, 256, 256, 10], ["relu", "relu", "softmax"], 256, 128),
]
_W5 = ([1024, 2048, 2048, 1024], ["relu", "relu", "identity"], 512, 512)


def _wide_results(sizes, acts, n, batch, dtype, **limit):
    """predict, gradients, and the parameters and cost of a short fit, with
    the kernel's threads limited by ``limit``: n_threads=k on the network,
    or pools=k through threadpoolctl."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(sizes[0])
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    loss = "cross_entropy" if acts[-1] == "softmax" else "squared_error"
    y = (rng.integers(0, sizes[-1], n) if loss == "cross_entropy"
         else rng.normal(size=(n, sizes[-1])).astype(dtype))
    net = Network(sizes, acts, loss, dtype=dtype, seed=3, n_threads=limit.get("n_threads"))
    with threadpoolctl.threadpool_limits(limits=limit.get("pools")):
        out = [net.predict(X)]
        dW, db = net.gradients(X[:batch], y[:batch])
        out += dW + db
        history = net.fit(X, y, epochs=1, batch_size=batch, learning_rate=0.01)
        out += list(net.weights) + list(net.biases) + [np.array(history.loss)]
    return out


def _assert_same_bits(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", range(len(_WIDE)))
def test_results_do_not_depend_on_the_number_of_threads(kernel_variant, dtype, shape):
    """Each output element is summed by one thread in one order, so one and
    two threads give the same bits, set per network or through threadpoolctl,
    for predict, gradients and fit, on every variant."""
    if kernel_variant.threads() < 2:
        pytest.skip("the kernel has one thread here")
    sizes, acts, n, batch = _WIDE[shape]
    first = _wide_results(sizes, acts, n, batch, dtype, n_threads=1)
    _assert_same_bits(_wide_results(sizes, acts, n, batch, dtype, n_threads=2), first)
    _assert_same_bits(_wide_results(sizes, acts, n, batch, dtype, pools=1), first)
    _assert_same_bits(_wide_results(sizes, acts, n, batch, dtype), first)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_wide_network_trains_alike_on_one_and_two_threads(dtype):
    """One step of a 1024-2048-2048-1024 network on 512 rows: every product
    is split into many blocks of rows and chunks of k (on the default
    variant: the others run the same blocking, smaller shapes above)."""
    if backprop_fast.network._kernel.threads() < 2:
        pytest.skip("the kernel has one thread here")
    sizes, acts, n, batch = _W5
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = rng.normal(size=(n, sizes[-1])).astype(dtype)
    states = []
    for threads in (2, 1):
        net = Network(sizes, acts, "squared_error", dtype=dtype, seed=5, n_threads=threads)
        loss = net.fit(X, Y, epochs=1, batch_size=batch, learning_rate=1e-3).loss
        states.append([np.array(loss)] + list(net.weights) + list(net.biases))
    _assert_same_bits(states[0], states[1])


def test_thread_limits():
    """n_threads caps the kernel's threads per network; threadpoolctl caps
    them for the calling thread, an explicit count included; bad counts are
    refused."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    kernel = backprop_fast.network._kernel
    assert kernel.threads(1) == 1
    assert kernel.threads(0) >= 1
    with threadpoolctl.threadpool_limits(limits=1):
        assert kernel.threads(0) == 1
        assert kernel.threads(2) == 1
    net = Network([3, 2], seed=0)
    assert net.n_threads is None
    net.n_threads = 2
    assert net.n_threads == 2
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)):
        with pytest.raises(error, match="n_threads"):
            net.n_threads = bad
        with pytest.raises(error, match="n_threads"):
            Network([3, 2], n_threads=bad)
    assert net.n_threads == 2


# The same results, hashed, in a fresh process under each setting of the
# environment variables that steer BLAS and OpenMP: none may change a bit.
_HASH = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from backprop_fast import Network
    digest = hashlib.sha256()
    for dtype in ("float32", "float64"):
        for sizes, acts, n, batch in SHAPES:
            rng = np.random.default_rng(sizes[0])
            X = rng.normal(size=(n, sizes[0])).astype(dtype)
            y = rng.integers(0, sizes[-1], n)
            net = Network(sizes, acts, dtype=dtype, seed=3)
            digest.update(net.predict(X).tobytes())
            for g in sum(net.gradients(X[:batch], y[:batch]), []):
                digest.update(g.tobytes())
            net.fit(X, y, epochs=1, batch_size=batch, learning_rate=0.01)
            for p in list(net.weights) + list(net.biases):
                digest.update(p.tobytes())
    print(digest.hexdigest())
""").replace("SHAPES", repr(_WIDE))


@pytest.mark.parametrize("isa", backprop_fast._kernels.available())
def test_no_environment_setting_changes_a_bit(isa, tmp_path):
    parent = os.path.dirname(os.path.dirname(os.path.abspath(backprop_fast.__file__)))
    base = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                         "OPENBLAS_NUM_THREADS")}
    path = base.get("PYTHONPATH")
    base.update(BACKPROP_FAST_ISA=isa, PYTHONPATH=parent + (os.pathsep + path if path else ""))
    settings = [{}, {"OPENBLAS_CORETYPE": "Haswell"}, {"OMP_NUM_THREADS": "1"},
                {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"}]
    digests = set()
    for extra in settings:
        proc = subprocess.run([sys.executable, "-c", _HASH], env=dict(base, **extra),
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1


def _wide_work(sizes):
    """A wide predict and fit: the kernel's threads, where it has them."""
    rng = np.random.default_rng(1)
    net = Network(sizes, ["relu", "softmax"], dtype="float32", seed=2)
    X = rng.normal(size=(2000, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 2000)
    pred = net.predict(X)
    net.fit(X, y, epochs=1, batch_size=500, learning_rate=0.01)
    return pred, np.array(net.weights[0])


def _child_work(conn, sizes):
    try:
        conn.send((backprop_fast.network._kernel.threads(), *_wide_work(sizes)))
    except BaseException as exc:  # reported to the parent, not lost in the child
        conn.send(repr(exc))
    finally:
        conn.close()


def test_a_forked_child_trains_after_the_parent_used_threads(kernel_variant):
    """libgomp's threads do not survive fork: a child that opened a parallel
    region would wait forever. A child forked after the parent ran wide
    products on its threads runs them on one thread, with the same results."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    sizes = [256, 512, 10]
    expected_pred, expected_w = _wide_work(sizes)
    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_work, args=(child_conn, sizes))
    child.start()
    child_conn.close()
    try:
        assert parent_conn.poll(120), "the forked child hung in the kernel"
        got = parent_conn.recv()
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert not isinstance(got, str), got
    threads, pred, w = got
    assert threads == 1
    np.testing.assert_array_equal(pred, expected_pred)
    np.testing.assert_array_equal(w, expected_w)
