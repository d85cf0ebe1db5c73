"""Extreme pre-activations: saturated outputs give finite, correct costs and gradients.

A one-layer network with input x = 1 and weights w has pre-activations z = w,
so the weights set z directly. Expected values are worked out exactly:
sigmoid(+-1e4) is 1 or 0 in floating point, and the costs come from the
pre-activations (softplus, log-sum-exp), never from log(0).
"""
import numpy as np
import pytest

from backprop_fast import Network

BIG = 1e4
ONE = np.array([[1.0]])

# (output, loss, z, y, expected cost, expected dC/dz)
TABLE = [
    # Binary cross-entropy: C = softplus(z) - y z, dC/dz = sigmoid(z) - y.
    ("sigmoid", "cross_entropy", [-BIG], [1.0], BIG, [-1.0]),
    ("sigmoid", "cross_entropy", [BIG], [0.0], BIG, [1.0]),
    ("sigmoid", "cross_entropy", [BIG], [1.0], 0.0, [0.0]),
    ("sigmoid", "cross_entropy", [-BIG], [0.0], 0.0, [0.0]),
    ("sigmoid", "cross_entropy", [BIG, -BIG], [0.5, 0.5], BIG, [0.5, -0.5]),
    # Categorical cross-entropy: C = logsumexp(z) - y.z, dC/dz = softmax(z) - y.
    ("softmax", "cross_entropy", [BIG, -BIG], [0.0, 1.0], 2 * BIG, [1.0, -1.0]),
    ("softmax", "cross_entropy", [BIG, -BIG], [1.0, 0.0], 0.0, [0.0, 0.0]),
    ("softmax", "cross_entropy", [-BIG, -BIG, BIG], [1.0, 0.0, 0.0], 2 * BIG, [-1.0, 0.0, 1.0]),
    # Squared error: C = 0.5 |a - y|^2; saturated sigmoid/tanh/softmax have a' = 0.
    ("sigmoid", "squared_error", [-BIG], [1.0], 0.5, [0.0]),
    ("sigmoid", "squared_error", [BIG], [0.0], 0.5, [0.0]),
    ("tanh", "squared_error", [BIG], [-1.0], 2.0, [0.0]),
    ("tanh", "squared_error", [-BIG], [0.5], 1.125, [0.0]),
    ("softmax", "squared_error", [BIG, -BIG], [0.0, 1.0], 1.0, [0.0, 0.0]),
    ("relu", "squared_error", [BIG], [0.0], 0.5 * BIG**2, [BIG]),
    ("relu", "squared_error", [-BIG], [1.0], 0.5, [0.0]),
    ("identity", "squared_error", [-BIG], [0.0], 0.5 * BIG**2, [-BIG]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output, loss, z, y, cost, dz", TABLE)
def test_saturated_output_layer(output, loss, z, y, cost, dz, dtype):
    k = len(z)
    net = Network([1, k], output, loss, dtype=dtype, seed=0)
    net.weights[0][...] = np.array(z).reshape(k, 1)
    net.biases[0][...] = 0.0
    Y = np.array([y])
    rtol = 1e-6 if dtype == np.float32 else 1e-12

    out = net.predict(ONE)
    assert np.all(np.isfinite(out))
    c = net.evaluate(ONE, Y)
    assert np.isfinite(c)
    assert c == pytest.approx(cost, rel=rtol, abs=1e-6)

    dW, db = net.gradients(ONE, Y)
    for g in dW + db:
        assert np.all(np.isfinite(g))
    # x = 1: dC/dW = dC/dz and dC/db = dC/dz.
    np.testing.assert_allclose(db[0], dz, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(dW[0].ravel(), dz, rtol=rtol, atol=1e-6)

    assert net.train_step(ONE, Y, 1e-3) == pytest.approx(cost, rel=rtol, abs=1e-6)
    for p in net.weights + net.biases:
        assert np.all(np.isfinite(p))


@pytest.mark.parametrize("output", ["sigmoid", "tanh", "relu", "identity", "softmax"])
@pytest.mark.parametrize("sign", [1, -1])
def test_saturated_predictions(output, sign):
    """The activations themselves at z = +-1e4: exact limits, no NaN from inf/inf."""
    net = Network([1, 2], output, "squared_error", seed=0)
    net.weights[0][...] = [[sign * BIG], [-sign * BIG]]
    net.biases[0][...] = 0.0
    a = net.predict(ONE)[0]
    expected = {
        "sigmoid": [1.0, 0.0],
        "tanh": [1.0, -1.0],
        "relu": [BIG, 0.0],
        "identity": [BIG, -BIG],
        "softmax": [1.0, 0.0],
    }[output]
    if sign < 0:
        expected = expected[::-1] if output in ("sigmoid", "relu", "softmax") else [-v for v in expected]
    np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("output, loss", [("sigmoid", "cross_entropy"), ("softmax", "cross_entropy"),
                                          ("identity", "squared_error")])
def test_saturated_hidden_layer_gives_finite_results(hidden, output, loss, dtype, reference_of):
    """Hidden pre-activations of +-1e4 flow through to finite costs and gradients."""
    net = Network([2, 3, 2], [hidden, output], loss, dtype=dtype, seed=0)
    net.weights[0][...] = [[BIG, 0.0], [-BIG, 0.0], [0.0, BIG]]
    net.biases[0][...] = 0.0
    net.weights[1][...] = [[1e-3, -1e-3, 2e-3], [-1e-3, 1e-3, 0.0]]
    net.biases[1][...] = 0.0
    X = np.array([[1.0, -1.0], [-1.0, 1.0]])
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    c = net.evaluate(X, Y)
    assert np.isfinite(c)
    dW, db = net.gradients(X, Y)
    for g in dW + db:
        assert np.all(np.isfinite(g))
    # And the values are the reference's (which is itself overflow-free).
    _, dW_ref, db_ref = reference_of(net).gradients(X.astype(dtype), Y.astype(dtype))
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for g, g_ref in zip(dW + db, dW_ref + db_ref):
        np.testing.assert_allclose(g, g_ref, rtol=rtol, atol=1e-6)
