"""pickle and copy.deepcopy of a Network: exact, independent, still trainable."""
import copy
import io
import pickle
import threading

import numpy as np
import pytest

from backprop_fast import Network
from backprop_fast._pickling import STATE_VERSION, network_getstate, network_setstate


def _trained(dtype=np.float64, activations=("tanh", "relu", "softmax")):
    rng = np.random.default_rng(0)
    net = Network([5, 6, 4, 3], list(activations), "cross_entropy", dtype=dtype, seed=2)
    X = rng.normal(size=(30, 5))
    y = rng.integers(0, 3, 30)
    net.fit(X, y, epochs=3, batch_size=7, learning_rate=0.2)
    return net, X, y


def _assert_same(a, b):
    assert (a.layer_sizes, a.activations, a.loss, a.dtype) == (b.layer_sizes, b.activations,
                                                                b.loss, b.dtype)
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)


def _round_trips():
    yield "deepcopy", copy.deepcopy
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        yield f"pickle{protocol}", lambda n, p=protocol: pickle.loads(pickle.dumps(n, p))


ROUND_TRIPS = dict(_round_trips())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
def test_round_trip_is_exact_and_independent(dtype, how):
    net, X, y = _trained(dtype)
    back = ROUND_TRIPS[how](net)
    _assert_same(net, back)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    # Independent parameters ...
    before = np.array(net.weights[0])
    back.fit(X, y, epochs=1, learning_rate=0.5)
    np.testing.assert_array_equal(net.weights[0], before)
    # ... still seen through writable views, and a working lock.
    back.weights[1][...] = 0
    assert np.all(back.weights[1] == 0)
    assert back.predict(X).shape == (30, 3)
    assert back._lock is not net._lock and back._lock.acquire(blocking=False)
    back._lock.release()


@pytest.mark.parametrize("how", ["deepcopy", "pickle5"])
def test_training_continues_exactly_where_it_stopped(how):
    """The random stream travels too: the same further fit gives identical parameters."""
    net, X, y = _trained()
    back = ROUND_TRIPS[how](net)
    h1 = net.fit(X, y, epochs=4, batch_size=5, learning_rate=0.1, shuffle=True)
    h2 = back.fit(X, y, epochs=4, batch_size=5, learning_rate=0.1, shuffle=True)
    assert h1.loss == h2.loss
    _assert_same(net, back)


@pytest.mark.parametrize("options", [dict(optimizer="adam", learning_rate=0.01),
                                     dict(optimizer="sgd", momentum=0.9, nesterov=True),
                                     dict(optimizer="adamw", weight_decay=0.1)])
def test_optimizer_state_travels(options):
    """Adam's moments and step count, the momentum buffer and the kernel's random
    stream all come along: a copy continues exactly like the original."""
    net, X, y = _trained()
    net.fit(X, y, epochs=2, batch_size=7, **options)
    back = pickle.loads(pickle.dumps(net))
    h1 = net.fit(X, y, epochs=3, batch_size=7, **options)
    h2 = back.fit(X, y, epochs=3, batch_size=7, **options)
    assert h1.loss == h2.loss
    _assert_same(net, back)


def test_pickled_while_another_thread_trains():
    """Pickling never captures the lock state: the copy is usable at once."""
    net, X, y = _trained()
    with net._lock:  # as if a fit were running
        data = pickle.dumps(net)
    back = pickle.loads(data)
    assert back._lock.acquire(timeout=1)
    back._lock.release()


def test_copy_module_and_joblib():
    net, X, _ = _trained()
    np.testing.assert_array_equal(copy.copy(net).predict(X), net.predict(X))
    joblib = pytest.importorskip("joblib")
    buf = io.BytesIO()
    joblib.dump(net, buf)
    buf.seek(0)
    np.testing.assert_array_equal(joblib.load(buf).predict(X), net.predict(X))


def test_state_from_a_newer_version_is_refused():
    net, _, _ = _trained()
    state = network_getstate(net)
    state["version"] = STATE_VERSION + 1
    fresh = Network.__new__(Network)
    with pytest.raises(ValueError, match="version"):
        network_setstate(fresh, state)


def test_state_holds_no_lock_and_no_views():
    net, _, _ = _trained()
    state = network_getstate(net)
    attrs = state["attributes"]
    assert "_lock" not in attrs and "_weights" not in attrs and "_biases" not in attrs
    assert state["locks"] == {"_lock": "rlock"}
    assert not any(isinstance(v, type(threading.Lock())) for v in attrs.values())


def test_fit_scratch_memory_is_not_pickled():
    """fit keeps its workspace and parameter snapshot for the next call; a pickle
    or copy carries the network, not that scratch memory (here 20 times the
    parameters' size), and the copy trains as the original does."""
    rng = np.random.default_rng(1)
    net = Network([20, 30, 2], ["tanh", "softmax"], "cross_entropy", seed=0)
    X = rng.normal(size=(2000, 20))
    y = rng.integers(0, 2, 2000)
    before = len(pickle.dumps(net))
    net.fit(X, y, epochs=1, batch_size=2000, learning_rate=0.1, early_stopping=True)
    assert len(pickle.dumps(net)) < before + 4 * net.n_parameters * 8
    copies = [copy.deepcopy(net), pickle.loads(pickle.dumps(net))]
    for other in [net] + copies:
        other.fit(X, y, epochs=2, batch_size=500, learning_rate=0.1)
    for other in copies:
        _assert_same(net, other)
