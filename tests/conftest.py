"""Shared fixtures for the backprop_fast test suite.

The suite runs with ``--import-mode=importlib``, so test modules cannot import
each other or this file; shared helpers are handed out as fixtures instead.
Every test draws its random numbers from an explicitly seeded generator.
"""
import contextlib
import os
import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import backprop_fast.network
from backprop_fast import _kernels
from backprop_fast.reference import ReferenceNetwork

# Hypothesis profiles for the property-based tests (tests/test_properties.py).
# "quick" runs by default: 30 examples per property, derandomised, so that the
# suite stays a few seconds long and draws the same examples on every run, as
# the rest of the suite does. "long" is the on-demand fuzzing run, randomised,
# 10,000 examples per property:
#     pytest tests/test_properties.py --hypothesis-profile=long
# or  BACKPROP_FAST_HYPOTHESIS_PROFILE=long pytest tests/test_properties.py
# No deadline: the same tests run against the checked (-O0) build and under
# valgrind, where one example can take a hundred times longer. (No example can
# hang: each trains for a few bounded steps on a few samples.)
_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("quick", max_examples=30, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=10_000, **_COMMON)
settings.load_profile(os.environ.get("BACKPROP_FAST_HYPOTHESIS_PROFILE", "quick"))

# Per-dtype tolerances for comparing the kernel with the NumPy reference: the
# two compute the same formulas in a different summation order (BLAS versus
# NumPy), so they agree to a few ulps of the largest term of each sum.
TOLERANCES = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}


@pytest.fixture
def tol():
    """``tol(dtype)`` -> keyword arguments for ``np.testing.assert_allclose``."""
    return lambda dtype: TOLERANCES[np.dtype(dtype)]


@pytest.fixture
def reference_of():
    """``reference_of(net)`` -> a ReferenceNetwork with a copy of net's parameters."""
    return lambda net: ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)


def _targets(rng, n, n_out, output, loss, dtype=np.float64):
    """A 2-D target array that suits the output activation and the cost."""
    if output == "softmax":
        return np.eye(n_out, dtype=dtype)[rng.integers(0, n_out, n)]
    if loss == "cross_entropy" or output == "sigmoid":
        # Binary cross-entropy takes soft targets in [0, 1]; include the ends.
        y = rng.uniform(0, 1, (n, n_out))
        y[rng.uniform(size=y.shape) < 0.3] = 0.0
        y[rng.uniform(size=y.shape) < 0.3] = 1.0
        return y.astype(dtype)
    if output == "tanh":
        return rng.uniform(-1, 1, (n, n_out)).astype(dtype)
    if output == "relu":
        return np.abs(rng.normal(size=(n, n_out))).astype(dtype)
    return rng.normal(size=(n, n_out)).astype(dtype)


@pytest.fixture
def make_targets():
    """``make_targets(rng, n, n_out, output, loss, dtype)`` -> 2-D targets."""
    return _targets


def _randomise(net, rng, scale=1.0):
    """Overwrite net's parameters (through the writable views) with fresh
    normal draws of standard deviation scale/sqrt(fan_in), so that tests do not
    depend on the library's own initialisation."""
    for W, b in zip(net.weights, net.biases):
        W[...] = rng.normal(scale=scale / np.sqrt(W.shape[1]), size=W.shape)
        b[...] = rng.normal(scale=0.5 * scale, size=b.shape)


@pytest.fixture
def randomise():
    """``randomise(net, rng, scale=1.0)``: new parameters drawn from ``rng``."""
    return _randomise


@pytest.fixture
def assert_params_close():
    """``assert_params_close(net, ref, **tol)``: compare every W and b."""

    def check(net, ref, **kw):
        assert len(net.weights) == len(ref.weights)
        for m, (W, Wr, b, br) in enumerate(zip(net.weights, ref.weights, net.biases, ref.biases)):
            np.testing.assert_allclose(W, Wr, err_msg=f"weights[{m}]", **kw)
            np.testing.assert_allclose(b, br, err_msg=f"biases[{m}]", **kw)

    return check


@pytest.fixture
def params_of():
    """``params_of(net)`` -> a deep copy of (weights, biases)."""
    return lambda net: ([np.array(w) for w in net.weights], [np.array(b) for b in net.biases])


@pytest.fixture
def deadline():
    """``with deadline(seconds):`` turns a hang of the main thread (a lock left
    held, a fit that ignores Ctrl-C) into a TimeoutError instead of a stuck run.
    Where there is no SIGALRM timer it does nothing."""
    @contextlib.contextmanager
    def guard(seconds):
        if not hasattr(signal, "setitimer"):
            yield
            return

        def expire(signum, frame):
            raise TimeoutError(f"still blocked after {seconds} s")

        old = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    return guard


@pytest.fixture(params=_kernels.available())
def kernel_variant(request):
    """Each kernel variant this machine runs (baseline, avx2, avx512), in turn,
    as the engine of the kernel every Network calls: the module using it runs
    once per variant. Returns the kernel module."""
    engine, _ = _kernels.load(request.param)
    kernel = backprop_fast.network._kernel
    previous = kernel.engine
    kernel.use(engine)
    yield kernel
    kernel.use(previous)
