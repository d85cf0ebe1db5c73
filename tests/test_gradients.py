"""Gradients checked without the reference: worked by hand, and by finite differences."""
import math
import re

import numpy as np
import pytest

from backprop_fast import Network

# Every test runs once on each kernel variant this machine runs.
pytestmark = pytest.mark.usefixtures("kernel_variant")


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_hand_worked_2_2_1_sigmoid_cross_entropy(dtype, rtol):
    """One sample through a 2-2-1 sigmoid network, forward and backward by hand."""
    net = Network([2, 2, 1], "sigmoid", "cross_entropy", dtype=dtype, seed=0)
    net.weights[0][...] = [[0.5, -0.25], [0.25, 0.5]]
    net.biases[0][...] = [0.0, -0.25]
    net.weights[1][...] = [[1.0, -2.0]]
    net.biases[1][...] = [0.5]
    x, y = np.array([[1.0, 2.0]]), np.array([[1.0]])

    # Forward: z1 = W1 x + b1 = [0.5 - 0.5 + 0, 0.25 + 1.0 - 0.25] = [0, 1].
    a1 = [_sigmoid(0.0), _sigmoid(1.0)]  # [0.5, 0.7310585786]
    z2 = 1.0 * a1[0] - 2.0 * a1[1] + 0.5  # -0.4621171573
    a2 = _sigmoid(z2)  # 0.3864836956
    cost = -math.log(a2)  # y = 1: C = -log a
    assert a2 == pytest.approx(0.38648369564127283, rel=1e-12)
    assert cost == pytest.approx(0.9506655964724702, rel=1e-12)

    # Backward: delta2 = a2 - y; delta1 = W2^T delta2 * a1 (1 - a1).
    d2 = a2 - 1.0  # -0.6135163044
    d1 = [1.0 * d2 * a1[0] * (1 - a1[0]), -2.0 * d2 * a1[1] * (1 - a1[1])]
    dW2 = [[d2 * a1[0], d2 * a1[1]]]
    dW1 = [[d1[0] * 1.0, d1[0] * 2.0], [d1[1] * 1.0, d1[1] * 2.0]]
    assert dW1[1][1] == pytest.approx(0.4824985067005549, rel=1e-12)

    np.testing.assert_allclose(net.predict(x), [[a2]], rtol=rtol)
    np.testing.assert_allclose(net.evaluate(x, y), cost, rtol=rtol)
    dW, db = net.gradients(x, y)
    np.testing.assert_allclose(dW[1], dW2, rtol=rtol)
    np.testing.assert_allclose(db[1], [d2], rtol=rtol)
    np.testing.assert_allclose(dW[0], dW1, rtol=rtol)
    np.testing.assert_allclose(db[0], d1, rtol=rtol)

    # A step of learning rate 0.5 moves every parameter by -0.5 * gradient.
    assert net.train_step(x, y, 0.5) == pytest.approx(cost, rel=rtol)
    np.testing.assert_allclose(net.weights[0], np.array([[0.5, -0.25], [0.25, 0.5]]) - 0.5 * np.array(dW1), rtol=rtol)
    np.testing.assert_allclose(net.biases[0], np.array([0.0, -0.25]) - 0.5 * np.array(d1), rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(net.weights[1], np.array([[1.0, -2.0]]) - 0.5 * np.array(dW2), rtol=rtol)
    np.testing.assert_allclose(net.biases[1], [0.5 - 0.5 * d2], rtol=rtol)


def test_hand_worked_identity_squared_error_sign():
    """dC/da = a - y (the tutorial prints y - a): a step must move the output towards y."""
    net = Network([1, 1], "identity", "squared_error", seed=0)
    net.weights[0][...] = 2.0
    net.biases[0][...] = 1.0
    x, y = np.array([[3.0]]), np.array([[4.0]])
    # z = 2 * 3 + 1 = 7; C = 0.5 * (7 - 4)^2 = 4.5; dC/dz = 3; dW = 3 * 3 = 9; db = 3.
    assert net.evaluate(x, y) == 4.5
    dW, db = net.gradients(x, y)
    np.testing.assert_array_equal(dW[0], [[9.0]])
    np.testing.assert_array_equal(db[0], [3.0])
    assert net.train_step(x, y, 0.1) == 4.5
    np.testing.assert_allclose(net.weights[0], [[2.0 - 0.9]], rtol=1e-15)
    np.testing.assert_allclose(net.biases[0], [1.0 - 0.3], rtol=1e-15)
    assert abs(net.predict(x)[0, 0] - 4.0) < 3.0


def test_hand_worked_softmax_cross_entropy():
    """z = [0, log 3] gives a = [1/4, 3/4]; with y = [1, 0], C = log 4 and dC/dz = a - y."""
    net = Network([1, 2], "softmax", "cross_entropy", seed=0)
    net.weights[0][...] = [[0.0], [0.0]]
    net.biases[0][...] = [0.0, math.log(3.0)]
    x, y = np.array([[1.0]]), np.array([[1.0, 0.0]])
    np.testing.assert_allclose(net.predict(x), [[0.25, 0.75]], rtol=1e-14)
    assert net.evaluate(x, y) == pytest.approx(math.log(4.0), rel=1e-14)
    dW, db = net.gradients(x, y)
    np.testing.assert_allclose(db[0], [-0.75, 0.75], rtol=1e-14)
    np.testing.assert_allclose(dW[0], [[-0.75], [0.75]], rtol=1e-14)


FD_CASES = [
    (["sigmoid", "sigmoid"], "cross_entropy"),
    (["tanh", "tanh", "softmax"], "cross_entropy"),
    (["relu", "relu", "identity"], "squared_error"),
    (["sigmoid", "tanh"], "squared_error"),
    (["identity", "softmax"], "squared_error"),
    (["tanh", "relu", "relu"], "squared_error"),
    (["relu", "sigmoid"], "squared_error"),
    (["identity"], "squared_error"),
]


@pytest.mark.parametrize("activations, loss", FD_CASES, ids=lambda v: "-".join(v) if isinstance(v, list) else v)
def test_gradients_match_central_finite_differences(activations, loss, randomise, make_targets):
    """Perturb every parameter through the writable views and difference evaluate()."""
    rng = np.random.default_rng(1234)
    sizes = [3] + [4] * (len(activations) - 1) + [3]
    net = Network(sizes, activations, loss, seed=0)
    randomise(net, rng)
    X = rng.normal(size=(6, sizes[0]))
    Y = make_targets(rng, 6, sizes[-1], activations[-1], loss)
    dW, db = net.gradients(X, Y)

    h = 1e-6
    analytic, numeric = [], []
    for params, grads in [(net.weights, dW), (net.biases, db)]:
        for p, g in zip(params, grads):
            for idx in np.ndindex(p.shape):
                saved = p[idx]
                p[idx] = saved + h
                c_plus = net.evaluate(X, Y)
                p[idx] = saved - h
                c_minus = net.evaluate(X, Y)
                p[idx] = saved
                numeric.append((c_plus - c_minus) / (2 * h))
                analytic.append(g[idx])
    analytic, numeric = np.array(analytic), np.array(numeric)
    assert np.linalg.norm(analytic) > 1e-3, "degenerate test problem: zero gradient"
    rel = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert rel < 1e-6


@pytest.mark.parametrize("y", [[[0.5, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]]], ids=["half", "zeros", "two"])
def test_softmax_cross_entropy_targets_that_are_not_distributions(y):
    """-sum(y log a) has dC/dz = sum(y) a - y, which is a - y only when a row of y
    sums to 1. Targets in [0, 1] whose rows do not sum to 1 must either be refused
    with an error naming y, or get the true gradient: never a silently wrong one."""
    net = Network([2, 3], "softmax", "cross_entropy", seed=0)
    X, y = np.array([[0.3, -0.7]]), np.array(y)
    try:
        _, db = net.gradients(X, y)
    except ValueError as e:
        assert re.search(r"(?<![A-Za-z_])y(?![A-Za-z_])", str(e)), str(e)
        return
    numeric = []
    for j in range(3):
        b, saved = net.biases[0], net.biases[0][j]
        b[j] = saved + 1e-6
        c_plus = net.evaluate(X, y)
        b[j] = saved - 1e-6
        c_minus = net.evaluate(X, y)
        b[j] = saved
        numeric.append((c_plus - c_minus) / 2e-6)
    np.testing.assert_allclose(db[0], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sample_weight_in_evaluate_and_gradients(dtype):
    """Weighted cost and gradient: integer weights equal repeating the rows,
    and any weights give the weighted mean of the per-sample figures."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(30, 5))
    y = rng.integers(0, 3, size=30)
    net = Network([5, 7, 3], ["tanh", "softmax"], "cross_entropy", dtype=dtype, seed=2)
    counts = rng.integers(0, 4, size=30)
    counts[0] = 1
    rep = np.repeat(np.arange(30), counts)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert net.evaluate(X, y, sample_weight=counts) == pytest.approx(
        net.evaluate(X[rep], y[rep]), rel=tol)
    for a, b in zip(sum(net.gradients(X, y, sample_weight=counts), []),
                    sum(net.gradients(X[rep], y[rep]), [])):
        np.testing.assert_allclose(a, b, rtol=tol * 100, atol=tol)
    w = rng.random(30) + 0.05
    per = np.array([net.evaluate(X[i:i + 1], y[i:i + 1]) for i in range(30)])
    assert net.evaluate(X, y, sample_weight=w) == pytest.approx(
        np.dot(w, per) / w.sum(), rel=tol)
    grads = [net.gradients(X[i:i + 1], y[i:i + 1]) for i in range(30)]
    dW, db = net.gradients(X, y, sample_weight=w)
    for m in range(2):
        np.testing.assert_allclose(
            dW[m], sum(wi * g[0][m] for wi, g in zip(w, grads)) / w.sum(), rtol=tol * 100,
            atol=tol)
        np.testing.assert_allclose(
            db[m], sum(wi * g[1][m] for wi, g in zip(w, grads)) / w.sum(), rtol=tol * 100,
            atol=tol)
    with pytest.raises(ValueError, match="shape"):
        net.evaluate(X, y, sample_weight=w[:-1])
    with pytest.raises(ValueError, match=">= 0"):
        net.gradients(X, y, sample_weight=-w)
    with pytest.raises(ValueError, match="positive sum"):
        net.evaluate(X, y, sample_weight=np.zeros(30))
