"""Differential tests: the kernel against the pure-NumPy ReferenceNetwork.

Every valid (hidden activation, output activation, cost) combination, both
dtypes, and three architectures: a single layer, three layers with a hidden
layer of width 1, and five layers. Parameters are drawn by the test and written
through the writable ``weights``/``biases`` views, then copied into the
reference, so both start from identical numbers. Each kernel variant that
this machine runs (baseline, AVX2, AVX-512) is checked in turn.
"""
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backprop_fast import Network

# Every test runs once on each kernel variant this machine runs.
pytestmark = pytest.mark.usefixtures("kernel_variant")

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
COMBOS = [
    pytest.param(h, o, loss, id=f"{h}-{o}-{loss}") for h in HIDDEN for o, loss in OUTPUT_LOSS
]
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]
ARCHS = ["1-layer", "3-layer", "5-layer"]
N_SAMPLES = 20  # 7 does not divide it: the last minibatch of batch_size 7 has 6 rows


def _layer_sizes(arch, output, rng):
    n_in = int(rng.integers(1, 6))
    n_out = int(rng.integers(2, 5)) if output == "softmax" else int(rng.integers(1, 5))
    if arch == "1-layer":
        return [n_in, n_out]
    if arch == "3-layer":
        hidden = [int(rng.integers(2, 7)), 1]  # one hidden layer of width 1
        rng.shuffle(hidden)
        return [n_in, *hidden, n_out]
    return [n_in, *(int(h) for h in rng.integers(1, 7, size=4)), n_out]


def _assert_well_conditioned(ref):
    """A precondition on the test problem, not a check of the kernel: parameters
    that grow large mean training is diverging, and float32 rounding is then
    amplified past any sensible tolerance (all problems stay below 2.6)."""
    largest = max(np.abs(p).max() for p in ref.weights + ref.biases)
    assert largest < 10, f"test problem diverges in the reference (|param| up to {largest:.3g})"


@pytest.fixture
def problem(hidden, output, loss, arch, dtype, randomise, make_targets):
    """(net, X, Y) for the test's parametrised combination, architecture and dtype.

    Sizes, parameters and data depend only on the combination and the
    architecture (not the dtype), through a seed derived from their names.
    """
    rng = np.random.default_rng(zlib.crc32(f"{hidden}/{output}/{loss}/{arch}".encode()))
    sizes = _layer_sizes(arch, output, rng)
    activations = [hidden] * (len(sizes) - 2) + [output]
    net = Network(sizes, activations, loss, dtype=dtype, seed=0)
    randomise(net, rng)
    X = rng.normal(size=(N_SAMPLES, sizes[0])).astype(dtype)
    Y = make_targets(rng, N_SAMPLES, sizes[-1], output, loss, dtype)
    return net, X, Y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("hidden, output, loss", COMBOS)
def test_forward_and_gradients_match_reference(problem, reference_of, tol, dtype):
    net, X, Y = problem
    ref = reference_of(net)
    kw = tol(dtype)

    np.testing.assert_allclose(net.predict(X), ref.predict(X), **kw)
    np.testing.assert_allclose(net.evaluate(X, Y), ref.evaluate(X, Y), **kw)

    dW, db = net.gradients(X, Y)
    cost, dW_ref, db_ref = ref.gradients(X, Y)
    assert len(dW) == len(dW_ref) and len(db) == len(db_ref)
    for m in range(len(dW_ref)):
        assert dW[m].dtype == dtype and db[m].dtype == dtype
        np.testing.assert_allclose(dW[m], dW_ref[m], err_msg=f"dW[{m}]", **kw)
        np.testing.assert_allclose(db[m], db_ref[m], err_msg=f"db[{m}]", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("hidden, output, loss", COMBOS)
def test_train_steps_match_reference(problem, reference_of, tol, assert_params_close, dtype):
    """Three steps on batches of 1, 7 and all rows; each returns the cost before its step."""
    net, X, Y = problem
    ref = reference_of(net)
    kw = tol(dtype)
    for rows, lr in [(slice(0, 1), 0.05), (slice(1, 8), 0.03), (slice(None), 0.02)]:
        cost = net.train_step(X[rows], Y[rows], lr)
        cost_ref = ref.train_step(X[rows], Y[rows], lr)
        np.testing.assert_allclose(cost, cost_ref, **kw)
    _assert_well_conditioned(ref)
    assert_params_close(net, ref, **kw)


@pytest.mark.parametrize("batch_size", [1, 7, None], ids=["batch1", "batch7", "full"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("hidden, output, loss", COMBOS)
def test_fit_without_shuffle_matches_reference(problem, reference_of, tol, assert_params_close, dtype, batch_size):
    net, X, Y = problem
    ref = reference_of(net)
    kw = tol(dtype)
    epochs, lr = 3, 0.05
    history = net.fit(X, Y, epochs=epochs, batch_size=batch_size, learning_rate=lr, shuffle=False)
    history_ref = ref.fit(X, Y, epochs, batch_size, lr)
    _assert_well_conditioned(ref)
    assert len(history.loss) == epochs
    np.testing.assert_allclose(history.loss, history_ref, **kw)
    assert_params_close(net, ref, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wider_layers_and_more_samples(dtype, randomise, reference_of, tol, assert_params_close):
    """Widths past BLAS block sizes, and more rows than one predict/evaluate chunk
    (2503 samples of 300 + 200 + 10 values; predict/evaluate work in chunks of about
    a million values): the row-major GEMM mapping and the chunk loop show up here
    and not in the small problems above."""
    rng = np.random.default_rng(99)
    sizes = [300, 200, 10]
    net = Network(sizes, ["tanh", "softmax"], "cross_entropy", dtype=dtype, seed=0)
    randomise(net, rng)
    X = rng.normal(size=(2503, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], X.shape[0])]
    ref = reference_of(net)
    kw = tol(dtype)
    np.testing.assert_allclose(net.predict(X), ref.predict(X), **kw)
    np.testing.assert_allclose(net.evaluate(X, Y), ref.evaluate(X, Y), **kw)
    dW, db = net.gradients(X, Y)
    _, dW_ref, db_ref = ref.gradients(X, Y)
    for g, g_ref in zip(dW + db, dW_ref + db_ref):
        np.testing.assert_allclose(g, g_ref, **kw)
    history = net.fit(X, Y, epochs=1, batch_size=1000, learning_rate=0.1, shuffle=False)
    np.testing.assert_allclose(history.loss, ref.fit(X, Y, 1, 1000, 0.1), **kw)
    assert_params_close(net, ref, **kw)


@st.composite
def _random_problems(draw):
    """Any valid combination, 1-4 layers of width 1-40, 1-120 samples, any batch size.
    Products of more than 4096 multiply-adds go to BLAS, smaller ones to the
    kernel's own loops; these sizes straddle that switch, also within one fit
    (a full minibatch on one side, the smaller last one on the other)."""
    hidden = draw(st.sampled_from(HIDDEN))
    output, loss = draw(st.sampled_from(OUTPUT_LOSS))
    n_layers = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 40), min_size=n_layers + 1, max_size=n_layers + 1))
    if output == "softmax":
        sizes[-1] = max(sizes[-1], 2)
    n = draw(st.integers(1, 120))
    batch_size = draw(st.one_of(st.none(), st.integers(1, n + 5)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    return hidden, output, loss, sizes, n, batch_size, dtype, seed


# The fixtures used here hand out stateless helper functions, so sharing them
# across hypothesis examples is safe.
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_random_problems())
def test_random_problems_match_reference(case, randomise, make_targets, reference_of, tol, assert_params_close):
    hidden, output, loss, sizes, n, batch_size, dtype, seed = case
    rng = np.random.default_rng(seed)
    net = Network(sizes, [hidden] * (len(sizes) - 2) + [output], loss, dtype=dtype, seed=0)
    randomise(net, rng)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = make_targets(rng, n, sizes[-1], output, loss, dtype)
    ref = reference_of(net)
    kw = tol(dtype)

    dW, db = net.gradients(X, Y)
    _, dW_ref, db_ref = ref.gradients(X, Y)
    for g, g_ref in zip(dW + db, dW_ref + db_ref):
        np.testing.assert_allclose(g, g_ref, **kw)
    history = net.fit(X, Y, epochs=2, batch_size=batch_size, learning_rate=0.01, shuffle=False)
    history_ref = ref.fit(X, Y, 2, batch_size, 0.01)
    _assert_well_conditioned(ref)
    np.testing.assert_allclose(history.loss, history_ref, **kw)
    assert_params_close(net, ref, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes, batch_size", [([64, 32, 10], 32), ([50, 40], 17),
                                                ([30, 40, 5, 3], 9)])
def test_transposed_first_layer_matches_reference(sizes, batch_size, dtype, randomise,
                                                  reference_of, tol, assert_params_close):
    """Plain SGD on first layers of 2**12 to 2**20 multiply-adds a batch trains a
    transposed copy of the first layer's weights, written back at the end of each
    epoch: callbacks see the current weights, and an exception from one leaves
    the network with the weights of the finished epochs."""
    rng = np.random.default_rng(sum(sizes) + batch_size)
    net = Network(sizes, ["tanh"] * (len(sizes) - 2) + ["softmax"], "cross_entropy",
                  dtype=dtype, seed=0)
    randomise(net, rng)
    X = rng.normal(size=(100, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], X.shape[0])]
    ref = reference_of(net)
    kw = tol(dtype)
    seen = []

    def callback(epoch, logs):
        seen.append([W.copy() for W in net.weights])
        if epoch == 2:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        net.fit(X, Y, epochs=5, batch_size=batch_size, learning_rate=0.05, shuffle=False,
                callbacks=[callback])
    for epoch in range(3):
        ref.fit(X, Y, 1, batch_size, 0.05)
        for W, W_ref in zip(seen[epoch], ref.weights):
            np.testing.assert_allclose(W, W_ref, **kw)
    assert_params_close(net, ref, **kw)
    history = net.fit(X, Y, epochs=2, batch_size=batch_size, learning_rate=0.05, shuffle=False)
    np.testing.assert_allclose(history.loss, ref.fit(X, Y, 2, batch_size, 0.05), **kw)
    assert_params_close(net, ref, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_first_layer_with_training_options(dtype, randomise, tol):
    """Validation data, early stopping with restore_best, sample weights and a
    callback around the transposed first layer: plain SGD (which trains the
    first layer transposed) ends where the same SGD through the optimizer
    path does (weight_decay=1e-300 takes that path and changes no sum)."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(300, 64)).astype(dtype)
    y = rng.integers(0, 10, 300)
    # Unrelated validation data: its cost rises, so training stops early and
    # restores the best epoch's parameters.
    X_val, y_val = rng.normal(size=(50, 64)).astype(dtype), rng.integers(0, 10, 50)
    weights = rng.uniform(0.5, 2.0, 300)
    nets, seen = [], []
    for decay in (0.0, 1e-300):
        net = Network([64, 32, 10], ["tanh", "softmax"], "cross_entropy", dtype=dtype, seed=4)
        randomise(net, np.random.default_rng(12))
        norms = []
        history = net.fit(X, y, epochs=12, batch_size=32, learning_rate=0.3,
                          weight_decay=decay, validation_data=(X_val, y_val),
                          early_stopping=True, patience=2, restore_best=True,
                          sample_weight=weights,
                          callbacks=[lambda e, logs, norms=norms, net=net:
                                     norms.append(np.abs(net.weights[0]).sum())])
        nets.append((net, history))
        seen.append(norms)
    (a, ha), (b, hb) = nets
    kw = tol(dtype)
    assert ha.stopped_early and ha.best_epoch < len(ha.loss) - 1
    assert ha.best_epoch == hb.best_epoch and len(ha.loss) == len(hb.loss)
    np.testing.assert_allclose(ha.loss, hb.loss, **kw)
    np.testing.assert_allclose(ha.val_loss, hb.val_loss, **kw)
    np.testing.assert_allclose(seen[0], seen[1], **kw)
    for W, W_b in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(W, W_b, **kw)
