"""The public API of design.md: attributes, shapes, target forms, input conversion, init."""
import numpy as np
import pytest

import backprop_fast
from backprop_fast import Network


def test_public_names():
    assert backprop_fast.Network is Network
    assert issubclass(backprop_fast.DivergenceError, FloatingPointError)


def test_attributes():
    net = Network((3, 5, 4, 2), ["tanh", "relu", "softmax"], "cross_entropy", dtype="float32", seed=1)
    assert net.layer_sizes == (3, 5, 4, 2)
    assert all(type(s) is int for s in net.layer_sizes)
    assert net.activations == ("tanh", "relu", "softmax")
    assert net.loss == "cross_entropy"
    assert net.dtype == np.dtype(np.float32) and isinstance(net.dtype, np.dtype)
    assert [w.shape for w in net.weights] == [(5, 3), (4, 5), (2, 4)]
    assert [b.shape for b in net.biases] == [(5,), (4,), (2,)]
    assert all(p.dtype == np.float32 for p in net.weights + net.biases)


def test_defaults_and_single_activation_name():
    net = Network([2, 3, 1])
    assert net.activations == ("sigmoid", "sigmoid")
    assert net.loss == "cross_entropy"
    assert net.dtype == np.float64
    assert Network([2, 3, 1], "tanh", "squared_error").activations == ("tanh", "tanh")


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32"),
                                   "float64", np.float64, np.dtype("float64")])
def test_dtype_spellings(dtype):
    net = Network([2, 3, 1], dtype=dtype, seed=0)
    assert net.dtype == np.dtype(dtype)
    assert net.weights[0].dtype == np.dtype(dtype)
    assert net.predict(np.ones((2, 2))).dtype == np.dtype(dtype)


def test_numpy_integer_layer_sizes_and_seed_are_accepted():
    net = Network([np.int64(2), np.int32(3), 1], seed=np.int64(5))
    assert net.layer_sizes == (2, 3, 1)
    np.testing.assert_array_equal(net.weights[0], Network([2, 3, 1], seed=5).weights[0])


def test_weights_and_biases_are_writable_views():
    net = Network([2, 3, 1], "tanh", "squared_error", seed=0)
    X = np.array([[0.5, -1.0]])
    views = net.weights + net.biases
    views[0][...] = 0.0
    views[2][...] = 0.0
    # tanh(0) = 0 feeds the output layer, so the output is tanh of its bias.
    np.testing.assert_allclose(net.predict(X), [np.tanh(net.biases[1])], rtol=1e-15)
    # Views taken before training keep tracking the parameters the kernel trains.
    net.train_step(X, np.array([[1.0]]), 0.5)
    assert np.any(views[0] != 0)
    for v, current in zip(views, net.weights + net.biases):
        np.testing.assert_array_equal(v, current)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_shapes(dtype):
    net = Network([3, 4, 2], "sigmoid", "cross_entropy", dtype=dtype, seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    out = net.predict(X)
    assert out.shape == (5, 2) and out.dtype == dtype
    one = net.predict(X[1])
    assert one.shape == (2,)
    np.testing.assert_allclose(one, out[1], rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert net.predict(X[:1]).shape == (1, 2)
    single = Network([3, 1], "sigmoid", seed=0)
    assert single.predict(X).shape == (5, 1)
    assert single.predict(X[0]).shape == (1,)


def test_predict_ranges():
    X = np.random.default_rng(1).normal(scale=3, size=(50, 4))
    p = Network([4, 6, 5], ["tanh", "softmax"], "cross_entropy", seed=0).predict(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
    assert np.all(p > 0) and np.all(p < 1)
    s = Network([4, 6, 3], "sigmoid", seed=0).predict(X)
    assert np.all(s > 0) and np.all(s < 1)
    t = Network([4, 3], "tanh", "squared_error", seed=0).predict(X)
    assert np.all(np.abs(t) < 1)
    r = Network([4, 3], "relu", "squared_error", seed=0).predict(X)
    assert np.all(r >= 0) and np.any(r > 0)


def test_return_types():
    net = Network([3, 4, 2], "tanh", "squared_error", seed=0)
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    assert isinstance(net.evaluate(X, y), float)
    dW, db = net.gradients(X, y)
    assert [g.shape for g in dW] == [(4, 3), (2, 4)] and [g.shape for g in db] == [(4,), (2,)]
    assert isinstance(net.train_step(X, y, 0.1), float)
    history = net.fit(X, y, epochs=2)
    assert len(history.loss) == 2 and all(isinstance(v, float) for v in history.loss)


def test_read_only_methods_do_not_change_parameters(params_of):
    net = Network([3, 4, 2], "tanh", "squared_error", seed=0)
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    before = params_of(net)
    net.predict(X)
    net.evaluate(X, y)
    net.gradients(X, y)
    for p, q in zip(before[0] + before[1], net.weights + net.biases):
        np.testing.assert_array_equal(p, q)


def test_training_does_not_modify_the_inputs():
    """In-kernel shuffling must permute indices or a private copy, never the caller's arrays."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    X0, y0 = X.copy(), y.copy()
    net = Network([3, 4, 2], "tanh", "squared_error", seed=0)
    net.fit(X, y, epochs=3, batch_size=4, shuffle=True)
    net.train_step(X, y, 0.1)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


# ----------------------------------------------------------------------------
# Target forms: 1-D y for one output unit, integer labels for softmax.

def _all_results(net_factory, X, y):
    """evaluate, gradients, train_step and fit results of fresh networks on (X, y)."""
    net = net_factory()
    dW, db = net.gradients(X, y)
    results = [net.evaluate(X, y), *dW, *db]
    results.append(net.train_step(X, y, 0.1))
    results += net.weights + net.biases
    net = net_factory()
    results += net.fit(X, y, epochs=2, batch_size=3, learning_rate=0.1, shuffle=False).loss
    results += net.weights + net.biases
    return results


def _assert_same(a, b):
    """Equal up to rounding: conversion bugs show up as O(1) or float16-sized errors."""
    assert len(a) == len(b)
    for u, v in zip(a, b):
        single = np.asarray(u).dtype == np.float32
        np.testing.assert_allclose(u, v, rtol=1e-6 if single else 1e-13, atol=1e-7 if single else 1e-15)


@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
def test_one_dimensional_y_for_single_output(loss):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(7, 3))
    y = (rng.uniform(size=7) > 0.5).astype(np.float64)
    factory = lambda: Network([3, 4, 1], "sigmoid", loss, seed=6)  # noqa: E731
    _assert_same(_all_results(factory, X, y), _all_results(factory, X, y[:, None]))


@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_integer_labels_equal_one_hot_for_softmax(loss, label_dtype):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(7, 3))
    labels = np.array([0, 2, 1, 3, 3, 0, 2], dtype=label_dtype)
    one_hot = np.eye(4)[labels]
    factory = lambda: Network([3, 5, 4], ["tanh", "softmax"], loss, seed=6)  # noqa: E731
    _assert_same(_all_results(factory, X, labels), _all_results(factory, X, one_hot))


def test_integer_one_hot_matrix_is_converted():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(7, 3))
    one_hot = np.eye(4, dtype=np.int64)[[0, 2, 1, 3, 3, 0, 2]]
    factory = lambda: Network([3, 5, 4], ["tanh", "softmax"], "cross_entropy", seed=6)  # noqa: E731
    _assert_same(_all_results(factory, X, one_hot), _all_results(factory, X, one_hot.astype(float)))


# ----------------------------------------------------------------------------
# Input conversion: awkward layouts and dtypes give the clean input's results.

def _read_only(A):
    A = A.copy()
    A.setflags(write=False)
    return A


def _strided(A):
    wide = np.zeros((A.shape[0], 2 * A.shape[1]))
    wide[:, ::2] = A
    return wide[:, ::2]


# Each holds the same numbers as the C-contiguous float64 array it is given.
LAYOUTS = {
    "read-only": _read_only,  # passed to the kernel as is for float64: const memoryviews
    "strided": _strided,
    "negative-stride": lambda A: A[::-1].copy()[::-1],
    "fortran": np.asfortranarray,
    "list": lambda A: A.tolist(),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", ["X", "y"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_awkward_layouts_are_converted(dtype, which, layout):
    rng = np.random.default_rng(6)
    X = np.round(rng.normal(size=(9, 3)), 3)
    y = np.round(rng.normal(size=(9, 2)), 3)
    factory = lambda: Network([3, 4, 2], ["tanh", "identity"], "squared_error", dtype=dtype, seed=1)  # noqa: E731
    clean = _all_results(factory, X, y)
    odd_X = LAYOUTS[layout](X) if which == "X" else X
    odd_y = LAYOUTS[layout](y) if which == "y" else y
    _assert_same(_all_results(factory, odd_X, odd_y), clean)
    if which == "X":
        np.testing.assert_array_equal(factory().predict(odd_X), factory().predict(X))


@pytest.mark.parametrize("net_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("input_dtype", [np.int8, np.int32, np.int64, np.uint16, np.float16, np.float32, np.float64])
def test_foreign_dtypes_are_converted(net_dtype, input_dtype):
    """Inputs of another dtype give the results of the same numbers cast to the network dtype."""
    rng = np.random.default_rng(7)
    X = rng.integers(0, 5, size=(9, 3)).astype(input_dtype)
    y = rng.integers(0, 3, size=(9, 2)).astype(input_dtype)
    factory = lambda: Network([3, 4, 2], ["tanh", "identity"], "squared_error", dtype=net_dtype, seed=1)  # noqa: E731
    clean = _all_results(factory, X.astype(net_dtype), y.astype(net_dtype))
    _assert_same(_all_results(factory, X, y), clean)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_narrow_float_input_to_float64_network(dtype):
    """Non-integer float16/float32 X into a float64 network equals X converted to float64 first."""
    X = np.random.default_rng(8).normal(size=(5, 3)).astype(dtype)
    net = Network([3, 4, 2], "tanh", "squared_error", seed=1)
    np.testing.assert_array_equal(net.predict(X), net.predict(X.astype(np.float64)))


# ----------------------------------------------------------------------------
# Initialisation.

def test_init_is_seeded():
    a = Network([4, 8, 3], ["relu", "softmax"], "cross_entropy", seed=9)
    b = Network([4, 8, 3], ["relu", "softmax"], "cross_entropy", seed=9)
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(p, q)


def test_unseeded_init_is_finite_and_not_zero():
    net = Network([4, 8, 3], "tanh", "squared_error")
    for p in net.weights + net.biases:
        assert np.all(np.isfinite(p))
    assert np.any(net.weights[0] != 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["tanh", "identity", "softmax"])
def test_glorot_uniform_init(activation, dtype):
    """Glorot-uniform: U(-r, r) with r = sqrt(6 / (fan_in + fan_out)), biases too."""
    fan_in, fan_out = 150, 100
    net = Network([fan_in, fan_out], activation, "squared_error", dtype=dtype, seed=3)
    bound = np.sqrt(6 / (fan_in + fan_out))
    W, b = net.weights[0], net.biases[0]
    assert np.abs(W).max() <= bound * (1 + 1e-6) and np.abs(b).max() <= bound * (1 + 1e-6)
    assert np.abs(W).max() > 0.99 * bound  # 15000 draws reach the edge
    assert np.std(W) == pytest.approx(bound / np.sqrt(3), rel=0.05)  # std of U(-r, r)
    assert abs(np.mean(W)) < 0.05 * bound


def test_glorot_init_for_sigmoid_uses_factor_2():
    """scikit-learn's rule for logistic layers: r = sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = 150, 100
    W = Network([fan_in, fan_out], "sigmoid", "squared_error", seed=3).weights[0]
    bound = np.sqrt(2 / (fan_in + fan_out))
    assert np.abs(W).max() <= bound * (1 + 1e-12)
    assert np.abs(W).max() > 0.99 * bound
    assert np.std(W) == pytest.approx(bound / np.sqrt(3), rel=0.05)


def test_he_init_for_relu():
    """He initialisation: standard deviation sqrt(2 / fan_in) (uniform or normal)."""
    fan_in, fan_out = 150, 100
    W = Network([fan_in, fan_out], "relu", "squared_error", seed=3).weights[0]
    assert np.std(W) == pytest.approx(np.sqrt(2 / fan_in), rel=0.05)
    assert abs(np.mean(W)) < 0.05 * np.sqrt(2 / fan_in)


def test_init_uses_each_layers_own_activation():
    net = Network([200, 100, 300], ["relu", "tanh"], "squared_error", seed=3)
    assert np.std(net.weights[0]) == pytest.approx(np.sqrt(2 / 200), rel=0.05)
    assert np.std(net.weights[1]) == pytest.approx(np.sqrt(2 / 400), rel=0.05)
