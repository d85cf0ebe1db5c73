"""Property-based tests (hypothesis) of the public API.

The kernel runs without bounds checks, so ``Network`` is the only guard
between a caller's data and the native code. Each property below draws
inputs — architectures, activations, costs, both dtypes, shapes including
zero-size ones, values including NaN, +-inf, huge, tiny and subnormal ones,
memory layouts, wrong types and objects — and accepts exactly two kinds of
outcome:

* a correct result, compared with ``backprop_fast.reference.ReferenceNetwork``
  (predictions and costs within a computed forward error bound of a float64
  evaluation; gradients and training steps within per-dtype tolerances), or
  bit-identical to the result for the same data in canonical form;
* a documented exception: ``ValueError``/``TypeError`` whose message names the
  offending argument (the network's parameters unchanged), or
  ``DivergenceError`` (the parameters finite).

Anything else — a crash, a hang, another exception type, a silently wrong
answer — fails. The number of examples per property comes from the hypothesis
profile (tests/conftest.py): "quick" by default, "long" (10,000 per property)
on demand: ``pytest tests/test_properties.py --hypothesis-profile=long``.
"""
import math
import numbers
import os
import re
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backprop_fast import DivergenceError, History, Network
from backprop_fast.reference import ReferenceNetwork, activate

HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
OUTPUT_LOSS = [
    ("sigmoid", "squared_error"),
    ("tanh", "squared_error"),
    ("relu", "squared_error"),
    ("identity", "squared_error"),
    ("softmax", "squared_error"),
    ("sigmoid", "cross_entropy"),
    ("softmax", "cross_entropy"),
]
DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]

# Values that sit on the edges of floating point: signed zeros, the smallest
# subnormals of both dtypes, the smallest normals, and a few tiny normals.
TINY = [0.0, -0.0, 5e-324, -5e-324, 1e-310, 2.2250738585072014e-308, 1e-300,
        1.401298464324817e-45, -1.401298464324817e-45, 1.1754943508222875e-38, 1e-30]


# ----------------------------------------------------------------------------
# Strategies


@st.composite
def architectures(draw, max_layers=4, max_width=6):
    """(layer_sizes, activations, loss, dtype): any valid combination."""
    n_layers = draw(st.integers(1, max_layers))
    hidden = draw(st.lists(st.sampled_from(HIDDEN), min_size=n_layers - 1,
                           max_size=n_layers - 1))
    output, loss = draw(st.sampled_from(OUTPUT_LOSS))
    sizes = draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1,
                          max_size=n_layers + 1))
    dtype = draw(st.sampled_from(DTYPES))
    return sizes, hidden + [output], loss, dtype


def _set_parameters(net, seed, scale):
    """Parameters drawn from a seeded generator, std scale/sqrt(fan_in), written
    through the writable views (so tests do not depend on the initialisation)."""
    rng = np.random.default_rng(seed)
    for W, b in zip(net.weights, net.biases):
        W[...] = rng.normal(scale=scale / math.sqrt(W.shape[1]), size=W.shape)
        b[...] = rng.normal(scale=0.5 * scale, size=b.shape)


def _x_elements(scale):
    """Finite inputs around [-8, 8] * scale, with the edge values of TINY mixed in."""
    return st.one_of(
        st.floats(-8, 8, allow_subnormal=True).map(lambda v: v * scale),
        st.sampled_from(TINY),
    )


@st.composite
def targets(draw, n, n_out, output, loss):
    """(y as passed to the API, y as a 2-D float64 array for the reference)."""
    if output == "softmax" and loss == "cross_entropy":
        kind = draw(st.sampled_from(["labels", "onehot", "soft"]))
        if kind in ("labels", "onehot"):
            labels = np.array(draw(st.lists(st.integers(0, n_out - 1), min_size=n,
                                            max_size=n)), dtype=np.int64)
            onehot = np.eye(n_out)[labels]
            if kind == "labels" and n_out > 1:
                return labels, onehot
            return onehot, onehot
        y = draw(hnp.arrays(np.float64, (n, n_out), elements=st.floats(0, 1)))
        return y, y
    if loss == "cross_entropy" or output == "sigmoid":
        elements = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 5e-324, 1e-300]))
    elif output == "softmax":
        elements = st.floats(0, 1)
    else:
        elements = st.one_of(st.floats(-4, 4), st.sampled_from(TINY))
    y = draw(hnp.arrays(np.float64, (n, n_out), elements=elements))
    if n_out == 1 and draw(st.booleans()):
        return y[:, 0], y  # 1-D y for a single output unit
    return y, y


@st.composite
def problems(draw, max_samples=8, scales=(1.0, 1e-3, 1e-200, 30.0), param_scales=(0.0, 0.5, 1.0, 3.0)):
    """A network with seeded parameters and a data set that suits it."""
    sizes, acts, loss, dtype = draw(architectures())
    net = Network(sizes, acts, loss, dtype=dtype, seed=0)
    _set_parameters(net, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(param_scales)))
    n = draw(st.integers(1, max_samples))
    scale = draw(st.sampled_from(scales))
    X = draw(hnp.arrays(np.float64, (n, sizes[0]), elements=_x_elements(scale)))
    y, Y = draw(targets(n, sizes[-1], acts[-1], loss))
    single = n == 1 and draw(st.booleans())
    if single:  # one sample as a 1-D X (and a 1-D y if it has the output's width)
        X = X[0]
        if y.ndim == 2:
            y = y[0]
    note(f"sizes={sizes} activations={acts} loss={loss} dtype={dtype.name} "
         f"n={n} scale={scale} single={single}")
    return net, X, y, Y


# ----------------------------------------------------------------------------
# The oracle: a float64 reference evaluation and a bound on the kernel's error


def _ref64(net):
    """The reference network, in float64, with exactly the kernel's parameters."""
    return ReferenceNetwork([w.astype(np.float64) for w in net.weights],
                            [b.astype(np.float64) for b in net.biases],
                            net.activations, net.loss)


def _forward_bound(net, X64):
    """Forward pass in float64 with a running bound on the kernel's rounding error.

    Returns (z_L, a_L, Ez, Ea, headroom): the last layer's pre-activations and
    outputs, elementwise error bounds for the kernel's values of both (computed
    in the network's dtype), and the largest magnitude met on the way.

    Model: a dot product of n terms computed in any order is off by at most
    (n + 1) eps times the sum of the terms' magnitudes (plus underflow); every
    activation is 1-Lipschitz (softmax mixes a row, so it takes the row's
    largest error) and is evaluated within 4 ulp. The bound is doubled for
    safety; it is still ~1e5 times tighter than any real mistake.
    """
    eps = float(np.finfo(net.dtype).eps)
    tiny = float(np.finfo(net.dtype).tiny)
    a = X64
    absa = np.abs(X64)
    E = np.zeros_like(X64)
    largest = float(absa.max(initial=0.0))
    z = Ez = None
    for W, b, act in zip(net.weights, net.biases, net.activations):
        W = W.astype(np.float64)
        b = b.astype(np.float64)
        aW = np.abs(W)
        n_in = W.shape[1]
        with np.errstate(all="ignore"):
            z = a @ W.T + b
            mag = absa @ aW.T + np.abs(b)
            Ez = E @ aW.T + (n_in + 2) * eps * mag + (n_in + 2) * tiny
            a = activate(act, z)
            absa = np.abs(a)
            spread = Ez.max(axis=1, keepdims=True) if act == "softmax" else Ez
            E = spread + 4 * eps * absa + 4 * tiny
        largest = max(largest, float(np.nanmax(mag, initial=0.0)))
    return z, a, 2 * Ez, 2 * E, largest


def _cost_bound(net, z, a, Ez, Ea, Y):
    """Error bound for the mean cost, from the output error bounds."""
    eps = float(np.finfo(net.dtype).eps)
    n_out = Y.shape[1]
    ay = np.abs(Y)
    with np.errstate(all="ignore"):
        if net.loss == "cross_entropy":
            # |dC/dz| <= sum(y) + |y| (softmax) or |a - y| <= 1 + |y| (sigmoid)
            slope = 1 + ay + ay.sum(axis=1, keepdims=True)
            terms = np.abs(z) * (1 + ay) + 1
            err = slope * Ez
        else:
            slope = np.abs(a) + ay + Ea
            terms = (np.abs(a) + ay) ** 2
            err = slope * Ea
        # Per-element costs are computed in the network's dtype (summed in
        # double): each may underflow by up to the dtype's smallest subnormal.
        underflow = 4 * float(np.finfo(net.dtype).smallest_subnormal)
        per_sample = np.sum(err + 2 * (n_out + 4) * eps * terms + underflow, axis=1)
    return float(np.mean(per_sample)) * 2


def _assert_within(got, want, bound, what):
    got = np.asarray(got, dtype=np.float64)
    diff = np.abs(got - want)
    bad = ~(diff <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, diff - bound, -np.inf)), bad.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} value(s) outside the error bound; worst at {i}: "
            f"got {got[i]!r}, reference {want[i]!r}, bound {bound[i]!r}")


def _as_2d(X):
    return X.reshape(1, -1) if np.ndim(X) == 1 else X


def _assert_predict_correct(net, X, P):
    """P = net.predict(X) agrees with the float64 reference within the bound."""
    X64 = _as_2d(np.asarray(X, dtype=net.dtype)).astype(np.float64)
    assert P.dtype == net.dtype
    assert P.shape == ((net.layer_sizes[-1],) if np.ndim(X) == 1
                       else (X64.shape[0], net.layer_sizes[-1]))
    z, a, Ez, Ea, largest = _forward_bound(net, X64)
    if not largest < np.finfo(net.dtype).max / 1e6:
        # Parameters grown huge (a training run at a huge learning rate): the
        # forward pass overflows, and NaN/inf outputs are the IEEE result.
        note(f"predict not compared: magnitudes reach {largest:g}")
        return None
    _assert_within(_as_2d(P), a, Ea, "predict")
    return z, a, Ez, Ea


def _params(net):
    return [np.array(p) for p in net.weights + net.biases]


def _assert_unchanged(net, before):
    for p, q in zip(_params(net), before):
        np.testing.assert_array_equal(p, q)


def _names(argument):
    """A regex that finds the argument's name as a word in an error message."""
    return re.compile(rf"\b{re.escape(argument)}\b")


def _raises_naming(argument, call, net=None, types=(ValueError, TypeError)):
    """call() must raise one of ``types`` naming ``argument``, changing no parameter."""
    before = _params(net) if net is not None else None
    with pytest.raises(types) as info:
        call()
    assert _names(argument).search(str(info.value)), \
        f"the error does not name {argument!r}: {info.value}"
    if net is not None:
        _assert_unchanged(net, before)
    return info.value


# Per-dtype tolerances for gradients and training steps against the reference
# computed in the same dtype: relative to the largest gradient component plus
# one (the same formulas, BLAS versus NumPy summation order).
GRAD_TOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-10}


def _assert_close_scaled(got, want, dtype, what):
    want = np.asarray(want, dtype=np.float64)
    scale = 1.0 + float(np.abs(want).max(initial=0.0))
    tol = GRAD_TOL[np.dtype(dtype)]
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want,
                               rtol=tol, atol=tol * scale, err_msg=what)


def _relu_margin_ok(net, X64):
    """No ReLU pre-activation within rounding distance of its kink at 0 (where
    the derivative jumps and two correct implementations may disagree)."""
    eps = float(np.finfo(net.dtype).eps)
    a, absa = X64, np.abs(X64)
    for W, b, act in zip(net.weights, net.biases, net.activations):
        W = W.astype(np.float64)
        z = a @ W.T + b
        mag = absa @ np.abs(W).T + np.abs(b)
        if act == "relu" and np.any((np.abs(z) <= 64 * (W.shape[1] + 2) * eps * mag) & (mag > 0)):
            return False
        a = activate(act, z)
        absa = np.abs(a)
    return True


# ----------------------------------------------------------------------------
# Correct results


@given(problems())
def test_predict_evaluate_gradients_match_reference(problem):
    net, X, y, Y = problem
    Xc = _as_2d(np.asarray(X, dtype=net.dtype))
    X64 = Xc.astype(np.float64)

    P = net.predict(X)
    z, a, Ez, Ea = _assert_predict_correct(net, X, P)  # moderate values: always checkable

    cost = net.evaluate(X, y)
    assert isinstance(cost, float)
    Yc = np.asarray(Y, dtype=net.dtype).astype(np.float64)
    want = _ref64(net).evaluate(X64, Yc)
    bound = _cost_bound(net, z, a, Ez, Ea, Yc)
    assert abs(cost - want) <= bound, f"evaluate: {cost!r} vs reference {want!r} (bound {bound:g})"

    dW, db = net.gradients(X, y)
    assert [g.shape for g in dW] == [w.shape for w in net.weights]
    assert [g.shape for g in db] == [b.shape for b in net.biases]
    assert all(g.dtype == net.dtype for g in dW + db)
    if _relu_margin_ok(net, X64):
        ref = ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
        _, rW, rb = ref.gradients(Xc, Yc.astype(net.dtype))
        scale = max(float(np.abs(g).max()) for g in rW + rb)
        for m, (g, r) in enumerate(zip(dW + db, rW + rb)):
            np.testing.assert_allclose(
                g.astype(np.float64), r.astype(np.float64),
                rtol=GRAD_TOL[net.dtype], atol=GRAD_TOL[net.dtype] * (1 + scale),
                err_msg=f"gradient array {m}")


@given(problems(max_samples=9, scales=(1.0, 1e-3), param_scales=(0.5, 1.0)),
       st.integers(1, 3), st.one_of(st.none(), st.integers(1, 10)),
       st.sampled_from([0.01, 0.1, 0.5]))
def test_training_matches_reference(problem, epochs, batch_size, learning_rate):
    """fit (in order) is the composition of its minibatch steps, and every step
    is the reference's step from the same parameters.

    Steps are judged one at a time, not whole trajectories: training on a
    problem with saturated units is chaotic enough that two correct float32
    runs (the kernel's activations are within 3 ulp, NumPy's within 1) drift
    apart by far more than their per-step rounding.
    """
    net, X, y, Y = problem
    Xc = _as_2d(np.asarray(X, dtype=net.dtype))
    Yc = np.asarray(Y, dtype=net.dtype)
    assume(_relu_margin_ok(net, Xc.astype(np.float64)))
    # A precondition on the problem, not a check of the kernel: one that the
    # float64 reference drives far from its start is diverging (tested elsewhere).
    probe = _ref64(net)
    with np.errstate(all="ignore"):
        probe.fit(Xc.astype(np.float64), Yc.astype(np.float64), epochs,
                  batch_size=batch_size, learning_rate=learning_rate)
    assume(all(np.isfinite(p).all() and np.abs(p).max() < 10
               for p in probe.weights + probe.biases))
    replay = Network(net.layer_sizes, net.activations, net.loss, dtype=net.dtype, seed=0)
    for p, q in zip(replay.weights + replay.biases, net.weights + net.biases):
        p[...] = q

    history = net.fit(X, y, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, shuffle=False)
    assert isinstance(history, History) and len(history.loss) == epochs

    n = Xc.shape[0]
    batch = n if batch_size is None else min(batch_size, n)
    tol = GRAD_TOL[net.dtype]
    costs = []
    for epoch in range(epochs):
        total = 0.0
        for start in range(0, n, batch):
            xb, yb = Xc[start:start + batch], Yc[start:start + batch]
            before = _params(replay)
            exact = _ref64(replay)
            want = exact.train_step(xb.astype(np.float64), yb.astype(np.float64), learning_rate)
            cost = replay.train_step(xb, yb, learning_rate)
            assert isinstance(cost, float)
            _assert_close_scaled(cost, want, net.dtype, f"cost of step {start // batch} "
                                 f"of epoch {epoch}")
            for m, (p, p0, e) in enumerate(zip(_params(replay), before,
                                               exact.weights + exact.biases)):
                # The step itself, against the float64 step from the same point.
                step = np.asarray(p, np.float64) - p0
                want_step = e - p0.astype(np.float64)
                scale = 1 + float(np.abs(p0).max())
                np.testing.assert_allclose(step, want_step, rtol=tol, atol=tol * scale,
                                           err_msg=f"parameter array {m}, step "
                                                   f"{start // batch} of epoch {epoch}")
            total += cost * xb.shape[0]
        costs.append(total / n)
    # fit runs exactly these steps: the same arithmetic, the same result.
    for p, q in zip(_params(net), _params(replay)):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_allclose(history.loss, costs, rtol=1e-12 if net.dtype == np.float64 else 1e-6)


# ----------------------------------------------------------------------------
# Extreme values: an error, or a result that is right wherever it can be checked

ANY_FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([np.nan, np.inf, -np.inf, 1.7976931348623157e308, -1e308, 3.4028235e38,
                     3.5e38, -1e39, 1e30, 1e200] + TINY),
)


def _overflows(values, dtype):
    """True if converting the (finite float64) values to dtype gives an infinity."""
    with np.errstate(over="ignore"):
        return not np.isfinite(np.asarray(values, dtype=np.float64).astype(dtype)).all()


def _check_extreme_predict(net, X):
    Xf = np.asarray(X, dtype=np.float64)
    if not np.isfinite(Xf).all():
        _raises_naming("X", lambda: net.predict(X), net, ValueError)
        return False
    if _overflows(Xf, net.dtype):  # finite in float64, too large for float32
        _raises_naming("X", lambda: net.predict(X), net, ValueError)
        return False
    P = net.predict(X)
    assert P.dtype == net.dtype and P.shape == (Xf.shape[0], net.layer_sizes[-1])
    out = net.activations[-1]
    with np.errstate(invalid="ignore"):
        low = {"sigmoid": 0, "softmax": 0, "tanh": -1, "relu": 0}.get(out, -np.inf)
        high = {"sigmoid": 1, "softmax": 1, "tanh": 1}.get(out, np.inf)
        ok = np.isnan(P) | ((P >= low) & (P <= high))
    assert ok.all(), f"{out} output out of range: {P}"
    X64 = np.asarray(X, dtype=net.dtype).astype(np.float64)
    z, a, Ez, Ea, largest = _forward_bound(net, X64)
    # Where nothing in the float64 evaluation comes near the dtype's overflow
    # threshold the kernel's result is checkable: it must be right.
    if np.isfinite(largest) and largest < np.finfo(net.dtype).max / 1e6:
        _assert_within(P, a, Ea, "predict")
        return True
    note(f"not compared: magnitudes reach {largest:g}")
    return False


@given(architectures(), st.integers(0, 2**32 - 1), st.integers(1, 5), st.data())
def test_extreme_inputs(arch, seed, n, data):
    """X and y with NaN, +-inf, huge, tiny and subnormal values, in both dtypes."""
    sizes, acts, loss, dtype = arch
    net = Network(sizes, acts, loss, dtype=dtype, seed=seed)
    X = data.draw(hnp.arrays(np.float64, (n, sizes[0]), elements=ANY_FLOAT), label="X")
    checkable = _check_extreme_predict(net, X)
    Xf = np.asarray(X, dtype=np.float64)
    X_ok = np.isfinite(Xf).all() and not _overflows(Xf, dtype)

    # Targets: the valid domain (or not) with extreme values mixed in.
    if loss == "cross_entropy":
        elements = st.one_of(st.floats(0, 1), ANY_FLOAT)
    else:
        elements = ANY_FLOAT
    y = data.draw(hnp.arrays(np.float64, (n, sizes[-1]), elements=elements), label="y")
    with np.errstate(all="ignore"):
        y_net = y.astype(dtype)  # the range check applies to the converted targets:
        y_ok = (np.isfinite(y).all() and not _overflows(y, dtype)  # -1e-72 is -0.0 in float32
                and (loss != "cross_entropy" or ((y_net >= 0) & (y_net <= 1)).all()))
    before = _params(net)
    if not X_ok:
        for call in (lambda: net.evaluate(X, y), lambda: net.gradients(X, y),
                     lambda: net.fit(X, y, epochs=1, learning_rate=0.1)):
            _raises_naming("X", call, net, ValueError)
        return
    if not y_ok:
        for call in (lambda: net.evaluate(X, y), lambda: net.gradients(X, y),
                     lambda: net.fit(X, y, epochs=1, learning_rate=0.1)):
            _raises_naming("y", call, net, ValueError)
        return

    cost = net.evaluate(X, y)
    assert isinstance(cost, float) and not cost < 0, cost
    if checkable:
        X64 = np.asarray(X, dtype=dtype).astype(np.float64)
        Y64 = np.asarray(y, dtype=dtype).astype(np.float64)
        z, a, Ez, Ea, largest = _forward_bound(net, X64)
        with np.errstate(all="ignore"):
            want = _ref64(net).evaluate(X64, Y64)
        if np.isfinite(want) and abs(want) < float(np.finfo(dtype).max) / 1e6:
            bound = _cost_bound(net, z, a, Ez, Ea, Y64)
            assert abs(cost - want) <= bound, (cost, want, bound)
    dW, db = net.gradients(X, y)
    assert all(g.dtype == dtype for g in dW + db)
    _assert_unchanged(net, before)

    # Training: a finished run with finite costs and parameters, or a
    # DivergenceError that keeps finite parameters.
    try:
        history = net.fit(X, y, epochs=2, batch_size=data.draw(st.integers(1, n)),
                          learning_rate=0.1)
    except DivergenceError as exc:
        assert "learning_rate" in str(exc)
    else:
        assert len(history.loss) == 2 and np.isfinite(history.loss).all()
    assert all(np.isfinite(p).all() for p in _params(net))
    assert net.predict(X).shape == (n, sizes[-1])


@given(problems(max_samples=6, scales=(1.0, 30.0)), st.integers(1, 4),
       st.one_of(st.none(), st.integers(1, 6)),
       st.sampled_from([1.0, 10.0, 1e3, 1e10, 1e100, 1e200, 1e300, 1e308,
                        1.7976931348623157e308]))
def test_large_learning_rates_diverge_cleanly(problem, epochs, batch_size, learning_rate):
    net, X, y, _ = problem
    try:
        history = net.fit(X, y, epochs=epochs, batch_size=batch_size,
                          learning_rate=learning_rate)
    except DivergenceError as exc:
        assert isinstance(exc, FloatingPointError)
        assert "learning_rate" in str(exc)
    else:
        assert len(history.loss) == epochs and np.isfinite(history.loss).all()
    assert all(np.isfinite(p).all() for p in _params(net))
    # The network stays usable.
    _assert_predict_correct(net, X, net.predict(X))


def test_epoch_cost_overflow_is_divergence():
    """Found by the long hypothesis profile (test_large_learning_rates_diverge_cleanly
    at learning_rate=1.8e308); minimal form."""
    net = Network([1, 1], "sigmoid", "cross_entropy", seed=0)
    X = np.zeros((8, 1))
    y = np.array([1.0, 0.0] * 4)
    try:
        history = net.fit(X, y, epochs=1, batch_size=1, learning_rate=1e308, shuffle=False)
    except DivergenceError:
        pass
    else:
        assert np.isfinite(history.loss).all(), f"history.loss = {history.loss}"
    assert all(np.isfinite(p).all() for p in _params(net))


# ----------------------------------------------------------------------------
# Shapes, including zero-size ones


def _x_valid(shape, n_in):
    if len(shape) == 1:
        return shape[0] == n_in
    return len(shape) == 2 and shape[0] >= 1 and shape[1] == n_in


def _y_valid(shape, n, n_out, single):
    if shape == (n, n_out):
        return True
    return len(shape) == 1 and ((n_out == 1 and shape[0] == n) or (single and shape[0] == n_out))


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@given(architectures(max_layers=2, max_width=3), st.one_of(SHAPES, st.sampled_from([(0,), (0, 0)])),
       st.one_of(SHAPES, st.sampled_from([(0,), (0, 0)])),
       st.sampled_from(["predict", "evaluate", "gradients", "fit", "train_step"]))
def test_shapes(arch, x_shape, y_shape, method):
    sizes, acts, loss, dtype = arch
    net = Network(sizes, acts, loss, dtype=dtype, seed=1)
    X = np.full(x_shape, 0.25)
    y = np.full(y_shape, 0.5)  # a valid target value for every cost
    call = {
        "predict": lambda: net.predict(X),
        "evaluate": lambda: net.evaluate(X, y),
        "gradients": lambda: net.gradients(X, y),
        "fit": lambda: net.fit(X, y, epochs=1, batch_size=2, learning_rate=0.1),
        "train_step": lambda: net.train_step(X, y, 0.1),
    }[method]
    if not _x_valid(x_shape, sizes[0]):
        _raises_naming("X", call, net, ValueError)
        return
    single = len(x_shape) == 1
    n = 1 if single else x_shape[0]
    if method != "predict" and not _y_valid(y_shape, n, sizes[-1], single):
        _raises_naming("y", call, net, ValueError)
        return
    result = call()
    if method == "predict":
        assert result.shape == ((sizes[-1],) if single else (n, sizes[-1]))
        _assert_predict_correct(net, X, result)


# ----------------------------------------------------------------------------
# Memory layouts and foreign dtypes: bit-identical to the canonical array


def _layouts(A, tmpdir, kind):
    """``A`` (2-D float64) in a given layout, with the same values."""
    if kind == "fortran":
        return np.asfortranarray(A)
    if kind == "strided":
        big = np.zeros((2 * A.shape[0] + 1, 3 * A.shape[1] + 2))
        view = big[1::2, 2::3]
        view[...] = A
        return view
    if kind == "reversed":
        return A[::-1, ::-1].copy()[::-1, ::-1]
    if kind == "readonly":
        B = A.copy()
        B.flags.writeable = False
        return B
    if kind in ("memmap", "memmap_readonly"):
        path = os.path.join(tmpdir, f"{kind}.dat")
        mm = np.memmap(path, dtype=np.float64, mode="w+", shape=A.shape)
        mm[...] = A
        mm.flush()
        del mm
        return np.memmap(path, dtype=np.float64, mode="r" if kind == "memmap_readonly" else "r+",
                         shape=A.shape)
    if kind == "bigendian":
        return A.astype(">f8")
    if kind == "float32":
        return A.astype(np.float32)
    if kind == "float16":
        return A.astype(np.float16)
    if kind == "longdouble":
        return A.astype(np.longdouble)
    if kind == "list":
        return A.tolist()
    if kind == "tuple":
        return tuple(map(tuple, A.tolist()))
    if kind == "broadcast":  # zero stride along the rows
        return np.broadcast_to(A[:1], A.shape)
    if kind == "matrix":  # deprecated, but users still pass them
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(A)
    raise AssertionError(kind)


LAYOUTS = ["fortran", "strided", "reversed", "readonly", "memmap", "memmap_readonly",
           "bigendian", "float32", "float16", "longdouble", "list", "tuple", "broadcast",
           "matrix"]


@given(problems(max_samples=6, scales=(1.0,)), st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS),
       st.sampled_from(["predict", "evaluate", "gradients", "fit"]))
def test_layouts_give_bit_identical_results(problem, x_layout, y_layout, method):
    net, X, y, _ = problem
    X = _as_2d(np.asarray(X))
    y = np.asarray(y)
    if y.ndim == 1 and X.shape[0] == 1 and net.layer_sizes[-1] > 1 and y.dtype.kind == "f":
        y = y.reshape(1, -1)
    if y.ndim == 1 or y.dtype.kind != "f":
        y_layout = "fortran" if y.ndim == 2 else "readonly"
    clone = Network(net.layer_sizes, net.activations, net.loss, dtype=net.dtype, seed=0)
    for p, q in zip(clone.weights + clone.biases, net.weights + net.biases):
        p[...] = q
    with tempfile.TemporaryDirectory() as tmpdir:
        Xv = _layouts(X, tmpdir, x_layout)
        yv = _layouts(y, tmpdir, y_layout) if y.ndim == 2 else _layouts(y[:, None], tmpdir, y_layout)
        if y.ndim == 1:
            yv = np.asarray(yv)[:, 0] if y_layout != "list" else [r[0] for r in yv]
        # The canonical form: what the values become in the network's dtype.
        Xc = np.ascontiguousarray(np.asarray(Xv), dtype=net.dtype)
        yc = np.ascontiguousarray(np.asarray(yv), dtype=net.dtype if y.dtype.kind == "f" else y.dtype)
        Xv_before = np.array(Xv, copy=True)
        if method == "predict":
            np.testing.assert_array_equal(net.predict(Xv), clone.predict(Xc))
        elif method == "evaluate":
            assert net.evaluate(Xv, yv) == clone.evaluate(Xc, yc)
        elif method == "gradients":
            got, want = net.gradients(Xv, yv), clone.gradients(Xc, yc)
            for g, h in zip(got[0] + got[1], want[0] + want[1]):
                np.testing.assert_array_equal(g, h)
        else:
            outcomes = []
            for network, Xa, ya in ((net, Xv, yv), (clone, Xc, yc)):
                try:  # some drawn problems diverge (the reference's too)
                    outcomes.append(network.fit(Xa, ya, epochs=2, batch_size=2,
                                                learning_rate=0.1).loss)
                except DivergenceError as exc:
                    outcomes.append(str(exc))
            assert outcomes[0] == outcomes[1]
            for p, q in zip(_params(net), _params(clone)):
                np.testing.assert_array_equal(p, q)
        # The caller's arrays are never written.
        np.testing.assert_array_equal(np.array(Xv, copy=True), Xv_before)
        del Xv, yv


# ----------------------------------------------------------------------------
# Wrong types and objects


class _Opaque:
    pass


class _BadArray:
    """An object that claims to be array-like and fails to convert."""

    def __array__(self, *args, **kwargs):
        raise ValueError("no array here")

    def __len__(self):
        return 3


BAD_DATA = st.one_of(
    st.none(),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.just({}),
    st.just({"a": 1}),
    st.sets(st.integers(0, 3), max_size=3),
    st.builds(_Opaque),
    st.complex_numbers(allow_nan=False, allow_infinity=False, max_magnitude=10).map(
        lambda c: np.full((2, 3), complex(c.real, c.imag or 1.0))),
    st.just(np.array([[1.0, "a", None]], dtype=object)),
    st.just(np.array([[1.0, 2.0, 3.0]], dtype=object)),
    st.just(np.zeros((2, 3), dtype="M8[s]")),
    st.just(np.zeros((2, 3), dtype="m8[s]")),
    st.just(np.zeros((2, 3), dtype=[("a", "f8")])),
    st.just(np.full((2, 3), "1.0")),
    st.just(np.full((2, 3), b"1")),
    st.just([[1.0, 2.0, 3.0], [1.0, 2.0]]),
    st.just([[1.0, [2.0], 3.0]]),
    st.just([["1", "2", "3"]]),
    st.just(np.float64(np.nan)),
    st.just(np.nan),
    st.just(3.0),
)


@given(architectures(max_layers=2, max_width=4), BAD_DATA, st.sampled_from(["X", "y"]),
       st.sampled_from(["predict", "evaluate", "gradients", "fit", "train_step"]))
def test_wrong_types_and_objects(arch, bad, which, method):
    sizes, acts, loss, dtype = arch
    net = Network(sizes, acts, loss, dtype=dtype, seed=2)
    if method == "predict":
        which = "X"
    X = bad if which == "X" else np.full((2, sizes[0]), 0.5)
    y = bad if which == "y" else np.full((2, sizes[-1]), 0.5)
    call = {
        "predict": lambda: net.predict(X),
        "evaluate": lambda: net.evaluate(X, y),
        "gradients": lambda: net.gradients(X, y),
        "fit": lambda: net.fit(X, y, epochs=1, learning_rate=0.1),
        "train_step": lambda: net.train_step(X, y, 0.1),
    }[method]
    _raises_naming(which, call, net)


def test_array_conversion_failure_is_not_hidden():
    """An object whose __array__ raises: its own error comes through (or a
    ValueError naming X), never a crash."""
    net = Network([3, 1], seed=0)
    with pytest.raises((ValueError, TypeError)):
        net.predict(_BadArray())


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _lr_ok(v):
    return (isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
            and math.isfinite(float(v)) and float(v) > 0)


HYPER_JUNK = st.one_of(st.none(), st.text(max_size=3), st.just([1]), st.just(1j),
                       st.just(np.array([1.0])), st.builds(_Opaque), st.booleans(),
                       st.just(np.bool_(True)))


@given(architectures(max_layers=2, max_width=3),
       st.one_of(st.integers(-3, 3), st.floats(-2, 3), st.just(np.int64(2)),
                 st.just(np.uint8(1)), HYPER_JUNK),
       st.one_of(st.none(), st.integers(-3, 8), st.just(2**70), st.just(np.int32(2)),
                 st.floats(0, 3), HYPER_JUNK),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 3),
                 st.sampled_from([np.float32(0.1), np.float16(0.5), np.int64(1), 1e-320,
                                  1e300]), HYPER_JUNK),
       st.one_of(st.booleans(), st.just(np.bool_(False)), st.just(0), st.just(1),
                 st.none(), st.just("yes")))
def test_fit_hyperparameters(arch, epochs, batch_size, learning_rate, shuffle):
    sizes, acts, loss, dtype = arch
    net = Network(sizes, acts, loss, dtype=dtype, seed=2)
    X = np.linspace(-1, 1, 4 * sizes[0]).reshape(4, sizes[0])
    y = np.full((4, sizes[-1]), 0.5)

    def call():
        return net.fit(X, y, epochs=epochs, batch_size=batch_size,
                       learning_rate=learning_rate, shuffle=shuffle)

    checks = [
        ("epochs", _is_int(epochs) and epochs >= 0),
        ("batch_size", batch_size is None or (_is_int(batch_size) and batch_size >= 1)),
        ("learning_rate", _lr_ok(learning_rate)),
        ("shuffle", isinstance(shuffle, (bool, np.bool_))),
    ]
    for name, ok in checks:
        if not ok:
            err = _raises_naming(name, call, net)
            note(f"{type(err).__name__}: {err}")
            return
    try:
        history = call()
    except DivergenceError:
        assert float(learning_rate) > 1  # only a huge step can diverge on this problem
    else:
        assert len(history.loss) == epochs
    assert all(np.isfinite(p).all() for p in _params(net))


# ----------------------------------------------------------------------------
# The constructor


def _sizes_ok(sizes):
    try:
        items = list(sizes)
    except TypeError:
        return False
    return (not isinstance(sizes, (str, bytes)) and len(items) >= 2
            and all(_is_int(s) and s >= 1 for s in items))


def _dtype_ok(dtype):
    try:
        return np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))
    except TypeError:
        return False


@given(
    st.one_of(
        st.lists(st.one_of(st.integers(-1, 5), st.sampled_from([True, 2.0, "3", None, np.int16(2)])),
                 max_size=5),
        st.lists(st.integers(1, 5), min_size=2, max_size=5),
        st.sampled_from([None, 3, "3,2", b"32", np.array([3, 2]), (3, 2), range(1, 4)]),
    ),
    st.one_of(
        st.sampled_from(HIDDEN + ["softmax", "Sigmoid", "", "logistic", None, 3]),
        st.lists(st.sampled_from(HIDDEN + ["softmax", "nope"]), max_size=5),
    ),
    st.sampled_from(["squared_error", "cross_entropy", "mse", None, 0]),
    st.sampled_from(["float32", "float64", np.float32, np.float64, float, "f4", "<f8", ">f8",
                     "float16", "int64", np.int32, "complex128", "nonsense", None, object]),
    st.one_of(st.none(), st.integers(-2, 2**64), st.sampled_from([1.5, "1", True, np.int64(7)])),
)
def test_constructor(layer_sizes, activations, loss, dtype, seed):
    """A network exactly when every argument is valid; otherwise a TypeError or
    ValueError that names the first invalid one."""
    sizes_ok = _sizes_ok(layer_sizes)
    expected = []
    if not sizes_ok:
        expected.append("layer_sizes")
    else:
        n_layers = len(list(layer_sizes)) - 1
        names = [activations] * n_layers if isinstance(activations, str) else activations
        acts_ok = (isinstance(names, list) and len(names) == n_layers
                   and all(isinstance(a, str) and a in HIDDEN + ["softmax"] for a in names)
                   and "softmax" not in names[:-1])
        if not acts_ok:
            expected.append("activations")
        elif loss not in ("squared_error", "cross_entropy") or (
                loss == "cross_entropy" and names[-1] not in ("sigmoid", "softmax")):
            expected.append("loss")
        elif not _dtype_ok(dtype):
            expected.append("dtype")
        elif seed is not None and not (_is_int(seed) and seed >= 0):
            expected.append("seed")
    if expected:
        with pytest.raises((TypeError, ValueError)) as info:
            Network(layer_sizes, activations, loss, dtype=dtype, seed=seed)
        assert _names(expected[0]).search(str(info.value)), info.value
        return
    net = Network(layer_sizes, activations, loss, dtype=dtype, seed=seed)
    assert net.layer_sizes == tuple(int(s) for s in layer_sizes)
    assert net.dtype == np.dtype(dtype)
    assert all(np.isfinite(p).all() for p in _params(net))


# ----------------------------------------------------------------------------
# Attribute mutation: the architecture is read-only, the parameter lists copy


MUTATIONS = st.sampled_from(["set", "item", "append", "del"])
NEW_VALUES = st.sampled_from([1, 2, 0, -1, 2**40, "softmax", "identity", "squared_error",
                              "float32", np.float16, None, [1, 1], (2, 2)])


@given(architectures(max_layers=3, max_width=4),
       st.sampled_from(["layer_sizes", "activations", "loss", "dtype"]), MUTATIONS, NEW_VALUES,
       st.integers(-3, 3))
def test_architecture_attributes_cannot_be_changed(arch, attribute, how, value, index):
    """Whatever is assigned to an architecture attribute, or into it, raises
    and leaves the network predicting and training exactly as before."""
    sizes, activations, loss, dtype = arch
    net = Network(sizes, activations, loss, dtype=dtype, seed=0)
    twin = Network(sizes, activations, loss, dtype=dtype, seed=0)
    X = np.random.default_rng(1).normal(size=(3, sizes[0]))
    before = getattr(net, attribute)
    with pytest.raises((AttributeError, TypeError)):
        if how == "set":
            setattr(net, attribute, value)
        elif how == "item":
            getattr(net, attribute)[index] = value
        elif how == "append":
            getattr(net, attribute).append(value)
        else:
            del getattr(net, attribute)[index]
    assert getattr(net, attribute) == before
    assert net.layer_sizes == tuple(sizes) and net.activations == tuple(activations)
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))
    y = twin.predict(X)
    if loss == "cross_entropy":
        y = (y > 0.5 * y.max(axis=1, keepdims=True)).astype(float)
        if activations[-1] == "softmax":
            y = np.eye(sizes[-1])[np.argmax(y, axis=1)]
    for n in (net, twin):
        n.fit(X, y, epochs=2, learning_rate=0.1, shuffle=False)
    np.testing.assert_array_equal(net.predict(X), twin.predict(X))


@given(architectures(max_layers=3, max_width=4), st.sampled_from(["weights", "biases"]),
       st.integers(-4, 4), st.sampled_from(["right", "transposed", "short", "nan", "inf",
                                             "masked", "object", "scalar", "list"]))
def test_assigning_a_layer_of_parameters(arch, which, index, kind):
    """``net.weights[m] = W`` copies W into the network when it has the
    layer's shape and finite values; anything else raises (naming the layer)
    and changes nothing."""
    sizes, activations, loss, dtype = arch
    net = Network(sizes, activations, loss, dtype=dtype, seed=0)
    arrays = getattr(net, which)
    if not -len(arrays) <= index < len(arrays):
        with pytest.raises(IndexError):
            arrays[index] = np.zeros(1)
        return
    shape = arrays[index].shape
    rng = np.random.default_rng(index + 5)
    value = {"right": lambda: rng.normal(size=shape),
             "transposed": lambda: rng.normal(size=shape[::-1] + (1,)),
             "short": lambda: np.zeros(shape[0] + 1),
             "nan": lambda: np.full(shape, np.nan),
             "inf": lambda: np.full(shape, np.inf),
             "masked": lambda: np.ma.masked_array(np.ones(shape), mask=True),
             "object": lambda: np.full(shape, None, dtype=object),
             "scalar": lambda: 1.0,
             "list": lambda: rng.normal(size=shape).tolist()}[kind]()
    before = _params(net)
    if kind in ("right", "list"):
        arrays[index] = value
        np.testing.assert_array_equal(getattr(net, which)[index],
                                      np.asarray(value, dtype=dtype))
        assert sum(not np.array_equal(p, q) for p, q in zip(_params(net), before)) <= 1
        return
    if kind == "scalar" and shape == ():
        return
    with pytest.raises((TypeError, ValueError)) as info:
        arrays[index] = value
    assert f"{which}[{index}]" in str(info.value), info.value
    _assert_unchanged(net, before)
