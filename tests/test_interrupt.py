"""Ctrl-C during ``Network.fit``.

fit runs all its epochs in one native call with the GIL released; the kernel
checks for signals at minibatch boundaries. A SIGINT sent to the process (from
a timer thread, as a terminal's Ctrl-C would arrive) must raise
KeyboardInterrupt in the caller promptly, and the network must hold the
parameters of a finished step, ready for evaluate and further training.
"""
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from backprop_fast import Network

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGINT") or sys.platform == "win32",
    reason="needs POSIX signals (os.kill with SIGINT to the own process)")

# Time from the signal to KeyboardInterrupt in the caller. The kernel checks
# every few milliseconds; the bound leaves room for a loaded 2-core machine.
PROMPT = 2.0


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler (raises KeyboardInterrupt), restored after."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _interrupt(net, X, y, delay, **fit_options):
    """Run fit, SIGINT after ``delay`` s from a timer thread; return the latency.

    The fit is sized to run for well over ``delay`` but finishes on its own
    (the test then fails) if the signal is never acted on.
    """
    sent = []

    def send():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(delay, send)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            net.fit(X, y, **fit_options)
        caught = time.perf_counter()
    finally:
        timer.cancel()
        timer.join()
    assert sent, "fit ended before the signal was sent; make the workload longer"
    return caught - sent[0]


def _flat(net):
    return np.concatenate([a.ravel() for W, b in zip(net.weights, net.biases) for a in (W, b)])


def _problem(n, n_in, n_hidden, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in)).astype(dtype)
    y = (X[:, :10] + 0.5 * rng.normal(size=(n, 10))).argmax(axis=1)
    net = Network([n_in, n_hidden, 10], ["tanh", "softmax"], "cross_entropy", dtype=dtype,
                  seed=seed)
    return net, X, y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ctrl_c_stops_fit_promptly_and_keeps_a_usable_network(optimizer, dtype,
                                                             default_sigint, deadline):
    net, X, y = _problem(2000, 64, 128, dtype=dtype)
    before = _flat(net)
    latency = _interrupt(net, X, y, 0.3, epochs=3000, batch_size=32, learning_rate=0.01,
                         optimizer=optimizer, momentum=0.0, validation_split=0.1)
    assert latency < PROMPT
    params = _flat(net)
    assert np.isfinite(params).all()
    assert not np.array_equal(params, before)  # it did train for a while
    with deadline(20):
        cost = net.evaluate(X, y)
        assert np.isfinite(cost)
        history = net.fit(X, y, epochs=2, batch_size=32, learning_rate=0.01,
                          optimizer=optimizer)
    assert len(history.loss) == 2 and np.isfinite(history.loss).all()
    assert np.isfinite(_flat(net)).all()


def test_ctrl_c_leaves_the_parameters_of_a_finished_step(default_sigint, deadline):
    """Full-batch plain SGD: each epoch is one step. Replaying the steps from
    the same start reaches the interrupted network's parameters exactly after
    some whole number of steps."""
    net, X, y = _problem(256, 32, 64, seed=1)
    start = _flat(net)
    latency = _interrupt(net, X, y, 0.3, epochs=5000, learning_rate=0.05)
    assert latency < PROMPT
    target = _flat(net)
    assert np.isfinite(target).all() and not np.array_equal(target, start)

    replay = Network(net.layer_sizes, net.activations, net.loss, seed=1)
    np.testing.assert_array_equal(_flat(replay), start)
    matched = []
    give_up = time.perf_counter() + 20

    def compare(epoch, logs):
        if np.array_equal(_flat(replay), target):
            matched.append(epoch + 1)
            return True
        return time.perf_counter() > give_up

    with deadline(30):
        replay.fit(X, y, epochs=5000, learning_rate=0.05, callbacks=[compare])
    assert matched, "the interrupted parameters are not those of any finished step"


def test_fit_runs_normally_after_an_interrupt(default_sigint, deadline):
    """The interrupt leaves nothing half-done behind (the lock, the
    parameters): a fit after it equals the same fit on a new network given
    the interrupted network's parameters (plain SGD in order, so that no
    optimizer or shuffling state is involved)."""
    net, X, y = _problem(2000, 64, 128, seed=2)
    _interrupt(net, X, y, 0.2, epochs=3000, batch_size=50, learning_rate=0.01)
    twin = Network(net.layer_sizes, net.activations, net.loss, seed=2)
    for p, q in zip(twin.weights + twin.biases, net.weights + net.biases):
        p[...] = q
    with deadline(20):
        ha = net.fit(X, y, epochs=2, batch_size=50, learning_rate=0.01, shuffle=False)
        hb = twin.fit(X, y, epochs=2, batch_size=50, learning_rate=0.01, shuffle=False)
    assert ha.loss == hb.loss
    np.testing.assert_array_equal(_flat(net), _flat(twin))
