"""Bad input (design.md, "Errors and bad input"): a ValueError or TypeError that
names the argument, never a crash or a silent wrong answer; and divergence."""
import re

import numpy as np
import pytest

import backprop_fast
from backprop_fast import Network

BAD_TYPE = (TypeError, ValueError)  # a wrong type may reasonably be reported as either


def _names(arg):
    """A regex matching the argument name as a word ("X" must not match "max")."""
    return rf"(?<![A-Za-z_]){re.escape(arg)}(?![A-Za-z_])"


def _id(value):
    """Readable test ids: the value's repr, or the expected exception's name."""
    if value is BAD_TYPE:
        return "TypeOrValueError"
    return value.__name__ if isinstance(value, type) else repr(value)


def _check(excinfo_value, arg):
    msg = str(excinfo_value)
    assert re.search(_names(arg), msg), f"message does not name {arg!r}: {msg!r}"


# ----------------------------------------------------------------------------
# Constructor

@pytest.mark.parametrize(
    "layer_sizes, exc",
    [
        ([3], ValueError),
        ([], ValueError),
        ([3, 0], ValueError),
        ([0, 3], ValueError),
        ([3, -2, 1], ValueError),
        ([3.0, 2], BAD_TYPE),
        ([3, 2.5], BAD_TYPE),
        ([np.float64(3), 2], BAD_TYPE),
        ([True, 2], BAD_TYPE),
        ([3, False], BAD_TYPE),
        ([3, "2"], BAD_TYPE),
        ([[3, 2]], BAD_TYPE),
        ("32", BAD_TYPE),
        (5, BAD_TYPE),
        (None, BAD_TYPE),
    ],
    ids=_id,
)
def test_bad_layer_sizes(layer_sizes, exc):
    with pytest.raises(exc) as e:
        Network(layer_sizes, "sigmoid", "squared_error")
    _check(e.value, "layer_sizes")


@pytest.mark.parametrize(
    "activations, exc",
    [
        ("softmx", ValueError),
        ("sigmoids", ValueError),
        (["tanh"], ValueError),  # one name short
        (["tanh", "tanh", "identity"], ValueError),  # one name too many
        ([], ValueError),
        (["softmax", "identity"], ValueError),  # softmax on a hidden layer
        (["tanh", "logistic"], ValueError),
        ([None, "identity"], BAD_TYPE),
        (3, BAD_TYPE),
    ],
    ids=_id,
)
def test_bad_activations(activations, exc):
    with pytest.raises(exc) as e:
        Network([3, 4, 2], activations, "squared_error")
    _check(e.value, "activations")


def test_softmax_on_every_layer_is_rejected():
    """A single name applies to every layer, so "softmax" would put it on a hidden layer."""
    with pytest.raises(ValueError) as e:
        Network([3, 4, 2], "softmax", "cross_entropy")
    _check(e.value, "activations")
    Network([3, 2], "softmax", "cross_entropy")  # fine with one layer


@pytest.mark.parametrize(
    "loss, exc", [("mse", ValueError), ("CrossEntropy", ValueError), ("", ValueError), (None, BAD_TYPE)], ids=_id
)
def test_bad_loss(loss, exc):
    with pytest.raises(exc) as e:
        Network([3, 4, 2], "sigmoid", loss)
    _check(e.value, "loss")


@pytest.mark.parametrize("output", ["tanh", "relu", "identity"])
def test_cross_entropy_needs_sigmoid_or_softmax_output(output):
    with pytest.raises(ValueError, match="cross_entropy|loss") as e:
        Network([3, 4, 2], ["sigmoid", output], "cross_entropy")
    assert output in str(e.value) or "sigmoid" in str(e.value)  # says what it got or what it needs


@pytest.mark.parametrize("dtype", ["float16", "int32", np.int64, "complex128", "floot64", np.float16, object], ids=_id)
def test_bad_dtype(dtype):
    with pytest.raises(BAD_TYPE) as e:
        Network([3, 2], "sigmoid", dtype=dtype)
    _check(e.value, "dtype")


@pytest.mark.parametrize("seed", ["abc", 1.5, [1, 2], np.float64(3.0)], ids=_id)
def test_bad_seed(seed):
    with pytest.raises(BAD_TYPE) as e:
        Network([3, 2], "sigmoid", seed=seed)
    _check(e.value, "seed")


# ----------------------------------------------------------------------------
# X and y


@pytest.fixture
def net():
    """Two sigmoid outputs with binary cross-entropy: y must lie in [0, 1]."""
    return Network([3, 4, 2], "sigmoid", "cross_entropy", seed=0)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 3)), rng.uniform(size=(5, 2))


METHODS_XY = {
    "evaluate": lambda net, X, y: net.evaluate(X, y),
    "gradients": lambda net, X, y: net.gradients(X, y),
    "train_step": lambda net, X, y: net.train_step(X, y, 0.1),
    "fit": lambda net, X, y: net.fit(X, y, epochs=1),
}
METHODS_X = {"predict": lambda net, X, y: net.predict(X), **METHODS_XY}


def _nan_at(A, value):
    A = A.copy()
    A[2, 1] = value
    return A


def _object(A):
    return A.astype(object)


BAD_X = {
    "too-many-columns": (lambda X: np.ones((5, 4)), ValueError),
    "too-few-columns": (lambda X: X[:, :2], ValueError),
    "3-d": (lambda X: X[None], ValueError),
    "0-d": (lambda X: np.float64(1.0), ValueError),
    "empty": (lambda X: np.empty((0, 3)), ValueError),
    "zero-width": (lambda X: np.empty((5, 0)), ValueError),
    "object": (_object, BAD_TYPE),
    "complex": (lambda X: X.astype(complex), BAD_TYPE),
    "string": (lambda X: X.astype(str), BAD_TYPE),
    "bytes": (lambda X: X.astype(bytes), BAD_TYPE),
    "nan": (lambda X: _nan_at(X, np.nan), ValueError),
    "inf": (lambda X: _nan_at(X, np.inf), ValueError),
    "-inf": (lambda X: _nan_at(X, -np.inf), ValueError),
    "none": (lambda X: None, BAD_TYPE),
    "ragged": (lambda X: [[1.0, 2.0, 3.0], [1.0, 2.0]], ValueError),
}


@pytest.mark.parametrize("case", BAD_X)
@pytest.mark.parametrize("method", METHODS_X)
def test_bad_X(net, data, params_of, method, case):
    X, y = data
    make, exc = BAD_X[case]
    before = params_of(net)
    with pytest.raises(exc) as e:
        METHODS_X[method](net, make(X), y)
    _check(e.value, "X")
    # A rejected call leaves the parameters alone.
    for p, q in zip(before[0] + before[1], net.weights + net.biases):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("which", ["X", "y"])
def test_finite_float64_overflowing_float32(which):
    """1e39 is finite in float64 but inf once converted for a float32 network."""
    net = Network([3, 2], "identity", "squared_error", dtype="float32", seed=0)
    X, y = np.ones((4, 3)), np.ones((4, 2))
    if which == "X":
        X[1, 1] = 1e39
    else:
        y[1, 1] = -1e39
    with pytest.raises(ValueError) as e:
        net.fit(X, y, epochs=1)
    _check(e.value, which)


def test_bad_single_sample_for_predict(net):
    with pytest.raises(ValueError) as e:
        net.predict(np.ones(4))
    _check(e.value, "X")


BAD_Y = {
    "too-few-rows": (lambda y: y[:4], ValueError),
    "too-many-rows": (lambda y: np.vstack([y, y]), ValueError),
    "too-many-columns": (lambda y: np.full((5, 3), 0.5), ValueError),
    "too-few-columns": (lambda y: y[:, :1], ValueError),
    "1-d-for-two-outputs": (lambda y: y[:, 0], ValueError),
    "3-d": (lambda y: y[None], ValueError),
    "0-d": (lambda y: np.float64(0.5), ValueError),
    "empty": (lambda y: np.empty((0, 2)), ValueError),
    "object": (_object, BAD_TYPE),
    "complex": (lambda y: y.astype(complex), BAD_TYPE),
    "string": (lambda y: y.astype(str), BAD_TYPE),
    "nan": (lambda y: _nan_at(y, np.nan), ValueError),
    "inf": (lambda y: _nan_at(y, np.inf), ValueError),
    "above-one-for-binary-cross-entropy": (lambda y: _nan_at(y, 1.5), ValueError),
    "below-zero-for-binary-cross-entropy": (lambda y: _nan_at(y, -0.1), ValueError),
    "none": (lambda y: None, BAD_TYPE),
}


@pytest.mark.parametrize("case", BAD_Y)
@pytest.mark.parametrize("method", METHODS_XY)
def test_bad_y(net, data, params_of, method, case):
    X, y = data
    make, exc = BAD_Y[case]
    before = params_of(net)
    with pytest.raises(exc) as e:
        METHODS_XY[method](net, X, make(y))
    _check(e.value, "y")
    for p, q in zip(before[0] + before[1], net.weights + net.biases):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 0], [0, 1, -1, 2, 0], [0, 1, 2, 2, 99],
                                    [0, 1, 2, 2, 2**63 + 5]],
                         ids=["3-of-3", "-1", "99", "uint64-past-int64"])
@pytest.mark.parametrize("method", METHODS_XY)
def test_softmax_labels_out_of_range(data, method, labels):
    X, _ = data
    net = Network([3, 4, 3], ["tanh", "softmax"], "cross_entropy", seed=0)
    with pytest.raises(ValueError) as e:
        METHODS_XY[method](net, X, np.array(labels))
    _check(e.value, "y")


def test_y_outside_unit_interval_is_fine_for_squared_error(data):
    """Only binary cross-entropy restricts y to [0, 1]."""
    X, y = data
    net = Network([3, 4, 2], "sigmoid", "squared_error", seed=0)
    assert np.isfinite(net.evaluate(X, 3 * y - 1))


def test_binary_cross_entropy_accepts_the_interval_ends(net, data):
    X, _ = data
    y = np.array([[0.0, 1.0]] * 5)
    assert np.isfinite(net.evaluate(X, y))
    assert np.isfinite(net.train_step(X, y, 0.1))


# ----------------------------------------------------------------------------
# Scalars: learning_rate, batch_size, epochs


@pytest.mark.parametrize(
    "lr, exc",
    [(0, ValueError), (0.0, ValueError), (-0.1, ValueError), (np.nan, ValueError), (np.inf, ValueError),
     (-np.inf, ValueError), ("0.1", BAD_TYPE), (None, BAD_TYPE), ([0.1], BAD_TYPE)],
    ids=_id,
)
@pytest.mark.parametrize("method", ["train_step", "fit"])
def test_bad_learning_rate(net, data, params_of, method, lr, exc):
    X, y = data
    before = params_of(net)
    with pytest.raises(exc) as e:
        if method == "fit":
            net.fit(X, y, epochs=1, learning_rate=lr)
        else:
            net.train_step(X, y, lr)
    _check(e.value, "learning_rate")
    for p, q in zip(before[0] + before[1], net.weights + net.biases):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(
    "batch_size, exc", [(0, ValueError), (-1, ValueError), (2.5, BAD_TYPE), ("4", BAD_TYPE), (np.float64(2), BAD_TYPE)],
    ids=_id,
)
def test_bad_batch_size(net, data, batch_size, exc):
    X, y = data
    with pytest.raises(exc) as e:
        net.fit(X, y, epochs=1, batch_size=batch_size)
    _check(e.value, "batch_size")


@pytest.mark.parametrize("epochs, exc", [(-1, ValueError), (-100, ValueError), (1.5, BAD_TYPE),
                                         ("3", BAD_TYPE), (None, BAD_TYPE)], ids=_id)
def test_bad_epochs(net, data, epochs, exc):
    X, y = data
    with pytest.raises(exc) as e:
        net.fit(X, y, epochs=epochs)
    _check(e.value, "epochs")


def test_epochs_is_required(net, data):
    X, y = data
    with pytest.raises(TypeError, match="epochs"):
        net.fit(X, y)


def test_numpy_integer_scalars_are_accepted(net, data):
    X, y = data
    history = net.fit(X, y, epochs=np.int64(2), batch_size=np.int32(2), learning_rate=np.float32(0.1))
    assert len(history.loss) == 2


# ----------------------------------------------------------------------------
# Divergence


def _diverging_problem(dtype):
    """Least squares with a step 1000 times too large: the iterates grow by ~1e3 per step."""
    rng = np.random.default_rng(12)
    X = rng.normal(size=(16, 3)).astype(dtype)
    y = rng.normal(size=(16, 2)).astype(dtype)
    return X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_divergence_raises_and_keeps_a_finite_trajectory_point(dtype, reference_of):
    X, y = _diverging_problem(dtype)
    net = Network([3, 2], "identity", "squared_error", dtype=dtype, seed=0)
    ref = reference_of(net)
    with pytest.raises(backprop_fast.DivergenceError) as e:
        net.fit(X, y, epochs=1000, learning_rate=1e3, shuffle=False)
    assert isinstance(e.value, FloatingPointError)
    assert re.search(r"learning[ _]rate", str(e.value)), str(e.value)
    for p in net.weights + net.biases:
        assert np.all(np.isfinite(p))

    # Nothing already learned is lost: the kept parameters are the full-batch
    # iterate after some step k >= 1, not the initial or a half-updated state.
    states = []
    with np.errstate(all="ignore"):
        for _ in range(1000):
            ref.train_step(X, y, 1e3)
            params = ref.weights + ref.biases
            if not all(np.all(np.isfinite(p)) for p in params):
                break
            states.append([p.copy() for p in params])
    assert len(states) < 1000, "test problem does not diverge in the reference"
    got = net.weights + net.biases
    rtol = 1e-3 if dtype == np.float32 else 1e-8
    matches = [
        k + 1 for k, state in enumerate(states)
        if all(np.allclose(g, s, rtol=rtol, atol=0) for g, s in zip(got, state))
    ]
    assert matches, "kept parameters are not a point of the training trajectory"


@pytest.mark.parametrize("batch_size", [None, 4])
def test_divergence_in_relu_network(batch_size, reference_of):
    rng = np.random.default_rng(13)
    X = rng.normal(size=(16, 3))
    y = rng.normal(size=(16, 1)) * 10
    net = Network([3, 8, 1], ["relu", "identity"], "squared_error", seed=2)
    with np.errstate(all="ignore"):
        ref_history = reference_of(net).fit(X, y, 200, batch_size, 10.0)
    assert not np.all(np.isfinite(ref_history)), "test problem does not diverge in the reference"
    with pytest.raises(backprop_fast.DivergenceError, match=r"learning[ _]rate"):
        net.fit(X, y, epochs=200, batch_size=batch_size, learning_rate=10.0, shuffle=False)
    for p in net.weights + net.biases:
        assert np.all(np.isfinite(p))


@pytest.mark.parametrize("n_samples", [4, 4000])  # a few elements, and several vectors long
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_finite_input_is_found_anywhere(n_samples, where, value, dtype):
    net = Network([3, 2, 1], "sigmoid", "cross_entropy", dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    X = rng.random((n_samples, 3)).astype(dtype)
    y = (rng.random(n_samples) > 0.5).astype(dtype)
    index = {"first": 0, "middle": X.size // 2, "last": X.size - 1}[where]
    bad_X = X.copy()
    bad_X.flat[index] = value
    with pytest.raises(ValueError) as e:
        net.fit(bad_X, y, epochs=1)
    _check(e.value, "X")
    bad_y = y.copy()
    bad_y[index % n_samples] = value
    with pytest.raises(ValueError, match="y"):
        net.fit(X, bad_y, epochs=1)
    # A NaN next to an infinity is found as well.
    bad_X.flat[(index + 1) % X.size] = np.nan if value != value else np.inf
    with pytest.raises(ValueError):
        net.fit(bad_X, y, epochs=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_samples", [7, 5000])  # shorter than a vector, and many
def test_extreme_finite_inputs_pass_and_targets_out_of_range_are_found(n_samples, dtype):
    info, one = np.finfo(dtype), np.dtype(dtype).type(1)
    rng = np.random.default_rng(1)
    net = Network([3, 2, 1], "sigmoid", "cross_entropy", dtype=dtype, seed=0)
    X = rng.random((n_samples, 3)).astype(dtype)
    extreme = X.copy()
    extreme.flat[:6] = [info.max, -info.max, info.tiny, -info.smallest_subnormal, -0.0, 0.0]
    assert net.predict(extreme).shape == (n_samples, 1)  # finite, so accepted
    y = (rng.random(n_samples) > 0.5).astype(dtype)
    y[:2] = [-0.0, 1.0]
    net.fit(X, y, epochs=1)
    for where in (0, n_samples // 2, n_samples - 1):
        for value in (-info.smallest_subnormal, np.nextafter(one, 2 * one)):
            bad = y.copy()
            bad[where] = value
            with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
                net.fit(X, bad, epochs=1)


@pytest.mark.parametrize("sizes", [[3, 2, 1], [3, 3000, 1]])  # 11 and 15,001 parameters
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_fit_refuses_non_finite_parameters(sizes, value):
    net = Network(sizes, "sigmoid", "cross_entropy", seed=0)
    net.biases[-1][0] = value
    X, y = np.ones((4, 3)), np.ones(4)
    with pytest.raises(ValueError, match="weights or biases contain NaN or infinity"):
        net.fit(X, y, epochs=1)


def test_kernel_helpers_of_the_estimators_refuse_what_they_cannot_use():
    """The kernel's label and score helpers check their arguments: they
    never trust a caller with memory they write or read."""
    from backprop_fast._kernels import kernel
    assert kernel.dense_labels(np.array([2, 0, 1, 1], dtype=np.int64)) == 3
    for labels in ([0, 2, 2], [1, 2], [-1, 0, 1], [0, 5], []):
        assert kernel.dense_labels(np.array(labels, dtype=np.int64)) == 0
    Y = np.full((3, 2), 7.0)
    kernel.one_hot(np.array([1, 0, 1], dtype=np.int64), Y)
    np.testing.assert_array_equal(Y, [[0, 1], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="outside"):
        kernel.one_hot(np.array([0, 2, 1], dtype=np.int64), Y)
    with pytest.raises(ValueError, match="one row per label"):
        kernel.one_hot(np.array([0, 1], dtype=np.int64), Y)
    classes = np.array([-3, 2, 9], dtype=np.int64)
    codes = np.full(4, -5, dtype=np.int64)
    assert kernel.label_codes(classes, np.array([9, -3, 9, 9], dtype=np.int64), codes) == 2
    np.testing.assert_array_equal(codes, [2, 0, 2, 2])
    for outsider in (4, -4, 10):
        labels = np.array([9, outsider, 2, 2], dtype=np.int64)
        assert kernel.label_codes(classes, labels, codes) == -1
    with pytest.raises(ValueError, match="sorted and distinct"):
        kernel.label_codes(np.array([2, 2], dtype=np.int64), np.zeros(4, np.int64), codes)
    with pytest.raises(ValueError, match="one entry per label"):
        kernel.label_codes(classes, np.zeros(3, np.int64), codes)
    y = np.array([1.0, 2.0, 4.0])
    assert kernel.r2_terms(y, np.array([1.0, 2.0, 3.0])) == pytest.approx((1.0, 14 / 3))
    with pytest.raises(ValueError):
        kernel.r2_terms(y, np.zeros(2))
