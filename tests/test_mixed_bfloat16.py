"""The "mixed_bfloat16" policy: float32 parameters and state, every matrix
product on bfloat16-rounded inputs accumulated in float32.

The oracle is NumPy: each product's inputs rounded to bfloat16 by the bit
arithmetic below (written here, independently of the kernel's C), the
product accumulated in float32 by NumPy. The kernel sums each element in its
own order, NumPy's BLAS in another, so results agree to float32
accumulation-order tolerance; each comparison also checks that plain float32
products would miss that tolerance, so that the rounding is seen to happen.
"""
import copy
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from backprop_fast import Network, _kernels, fit_many
from backprop_fast.datasets import load_digits
from backprop_fast.reference import activate, derivative, output_delta, sample_costs

MIXED = "mixed_bfloat16"
# Sums of products of bfloat16 values, in float32, in two orders: a few ulps
# of float32 of the largest partial sum.
TOL = dict(rtol=2e-5, atol=2e-6)


def bf16(a):
    """a (float32) rounded to the nearest bfloat16, ties to even, as float32."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    out = r.view(np.float32).copy()
    nan = np.isnan(a)
    out[nan] = a[nan]
    return out


def plain(a):
    """No rounding: the float32 products the policy replaces."""
    return np.asarray(a, dtype=np.float32)


def forward(net, X, r=bf16, dt=np.float32):
    """Pre-activations and activations of every layer, as lists, in dt,
    each product's inputs passed through r."""
    acts, zs = [np.asarray(X, dtype=dt)], []
    for W, b, name in zip(net.weights, net.biases, net.activations):
        z = r(acts[-1]).astype(dt) @ r(W).astype(dt).T + b.astype(dt)
        zs.append(z)
        acts.append(activate(name, z).astype(dt))
    return zs, acts


def gradients(net, X, Y, r=bf16, dt=np.float32):
    """Mean cost and (dW, db) in dt, each product's inputs passed through r."""
    zs, acts = forward(net, X, r, dt)
    n = X.shape[0]
    out = net.activations[-1]
    cost = float(sample_costs(net.loss, out, zs[-1], acts[-1], Y).mean())
    delta = output_delta(net.loss, out, acts[-1], Y.astype(dt)).astype(dt)
    dW, db = [None] * len(net.weights), [None] * len(net.weights)
    for m in range(len(net.weights) - 1, -1, -1):
        dW[m] = (r(delta).astype(dt).T @ r(acts[m]).astype(dt)) / dt(n)
        db[m] = (delta.astype(np.float64).sum(axis=0) / n).astype(dt)
        if m > 0:
            delta = ((r(delta).astype(dt) @ r(net.weights[m]).astype(dt))
                     * derivative(net.activations[m - 1], acts[m])).astype(dt)
    return cost, dW, db


def assert_rounding_seen(actual, rounded, unrounded):
    """actual matches the rounded oracle and, by more than the tolerance,
    misses the unrounded one."""
    np.testing.assert_allclose(actual, rounded, **TOL)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(actual, unrounded, **TOL)


def _net(sizes, acts, loss, seed=0, dtype=MIXED):
    return Network(list(sizes), acts, loss, dtype=dtype, seed=seed)


def _data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = rng.random((n, k)).astype(np.float32)
    return X, Y


# ------------------------------------------------------------- the rounding

def test_rounding_matches_numpy_bit_for_bit():
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, -np.nan,
                        np.finfo(np.float32).max, -np.finfo(np.float32).max,
                        np.finfo(np.float32).tiny, np.float32(1e-45), 3.3895314e38,
                        1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1 + 2.0 ** -9, 1 + 2.0 ** -8 + 2.0 ** -20],
                       dtype=np.float32)
    # Ties both ways, and NaNs whose payload lies only in the low bits.
    bits = np.array([0x3F808000, 0x3F818000, 0x3F80FFFF, 0x7F800001, 0xFF800001,
                     0x7FFFFFFF, 0x7F7FFFFF, 0x00008000, 0x00018000], dtype=np.uint32)
    rng = np.random.default_rng(1)
    x = np.concatenate([special, bits.view(np.float32),
                        rng.normal(scale=100, size=4000).astype(np.float32),
                        rng.integers(0, 2**32, 4000, dtype=np.uint32).view(np.float32)])
    out = np.empty_like(x)
    _kernels.kernel.round_bfloat16(x, out)
    want = bf16(x)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(out), nan)
    assert np.array_equal(out[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert not (out.view(np.uint32) & 0xFFFF).any()
    assert np.array_equal(np.signbit(out[nan]), np.signbit(x[nan]))
    # In place too.
    y = x.copy()
    _kernels.kernel.round_bfloat16(y, y)
    assert np.array_equal(y.view(np.uint32), out.view(np.uint32))
    # Spot values: ties to even, and overflow to inf past bfloat16's largest.
    assert bf16(np.float32(1 + 2.0 ** -8))[()] == 1.0
    assert bf16(np.float32(1 + 3 * 2.0 ** -8))[()] == 1 + 2.0 ** -6
    assert np.isinf(bf16(np.finfo(np.float32).max)[()])


# ---------------------------------------------------- products against NumPy

# Small products (the loops of _blas.pxd) and wide ones (bf_gemm), with
# sigmoid, tanh, relu, identity and softmax layers.
CASES = [
    ((5, 7, 3), ["tanh", "sigmoid"], "cross_entropy", 6),
    ((3, 4, 2), ["relu", "identity"], "squared_error", 2),
    ((40, 300, 50, 10), ["relu", "tanh", "softmax"], "cross_entropy", 64),
    ((64, 32, 10), ["tanh", "softmax"], "cross_entropy", 257),
]


@pytest.mark.parametrize("sizes, acts, loss, n", CASES)
def test_predict_matches_rounded_products(sizes, acts, loss, n):
    net = _net(sizes, acts, loss)
    X, _ = _data(n, sizes[0], sizes[-1])
    got = net.predict(X)
    assert got.dtype == np.float32
    zs, a = forward(net, X)
    _, a_plain = forward(net, X, r=plain)
    assert_rounding_seen(got, a[-1], a_plain[-1])


@pytest.mark.parametrize("sizes, acts, loss, n", CASES)
def test_gradients_and_cost_match_rounded_products(sizes, acts, loss, n):
    """To bfloat16 tolerance: a float32 difference in the order of a sum can
    move a delta or an activation across a bfloat16 rounding boundary, and
    the next product then reads a value one bfloat16 step away from the
    oracle's. test_exact_products rules that out and compares bit for bit."""
    net = _net(sizes, acts, loss, seed=3)
    X, Y = _data(n, sizes[0], sizes[-1], seed=4)
    if acts[-1] == "softmax":
        Y = np.eye(sizes[-1], dtype=np.float32)[np.arange(n) % sizes[-1]]
    dW, db = net.gradients(X, Y)
    cost, rW, rb = gradients(net, X, Y)
    for m in range(len(dW)):
        assert dW[m].dtype == np.float32
        scale = 2.0 ** -8 * np.abs(rW[m]).max()
        np.testing.assert_allclose(dW[m], rW[m], rtol=2.0 ** -8, atol=scale)
        np.testing.assert_allclose(db[m], rb[m], rtol=2.0 ** -8,
                                   atol=2.0 ** -8 * np.abs(rb[m]).max())
    np.testing.assert_allclose(net.evaluate(X, Y), cost, rtol=1e-5)


def _on_grid(rng, shape, steps):
    """Multiples of 1/8 in [-steps/8, steps/8], each moved by a relative
    2**-14 to 2**-11: below half a bfloat16 step, so rounding to bfloat16
    gives the multiple back, while float32 keeps the move."""
    grid = rng.integers(-steps, steps + 1, shape) / 8
    move = rng.uniform(2.0 ** -14, 2.0 ** -11, shape) * rng.choice([-1, 1], shape)
    return (grid * (1 + move)).astype(np.float32)


# (sizes, rows): small products (bf_abt_few and the _blas.pxd loops) and
# wide ones (bf_gemm), the rows a power of two so that the mean is exact.
EXACT = [((3, 4, 2), 4), ((6, 9, 5), 8), ((24, 64, 8), 32), ((40, 96, 16), 64)]


@pytest.mark.parametrize("sizes, n", EXACT)
def test_exact_products(sizes, n):
    """Bit for bit, on data where every sum is exact in float32: inputs
    whose bfloat16 values are multiples of 1/8, a ReLU hidden layer, an
    identity output with squared error. Every product's result is then the
    same in any order of summation and with or without fused multiply-adds,
    so the kernel (any variant) must equal the oracle exactly; and the
    float32 products of the unrounded values differ."""
    rng = np.random.default_rng(sum(sizes) + n)
    net = _net(sizes, ["relu", "identity"], "squared_error")
    for m, W in enumerate(net.weights):
        net.weights[m] = _on_grid(rng, W.shape, 2)
        net.biases[m] = (rng.integers(-4, 5, net.biases[m].shape) / 8).astype(np.float32)
    X = _on_grid(rng, (n, sizes[0]), 8)
    Y = (rng.integers(-8, 9, (n, sizes[-1])) / 8).astype(np.float32)

    _, acts = forward(net, X)
    _, rW, rb = gradients(net, X, Y)
    # The precondition: float64 sums give the same numbers, so no float32
    # sum rounded.
    _, acts64 = forward(net, X, dt=np.float64)
    _, wW, _ = gradients(net, X, Y, dt=np.float64)
    assert np.array_equal(acts[-1], acts64[-1])
    for m in range(2):
        assert np.array_equal(rW[m], wW[m])

    assert np.array_equal(net.predict(X), acts[-1])
    dW, db = net.gradients(X, Y)
    for m in range(2):
        assert np.array_equal(dW[m], rW[m])
        assert np.array_equal(db[m], rb[m])
    _, unrounded = forward(net, X, r=plain)
    assert not np.array_equal(unrounded[-1], acts[-1])
    _, pW, _ = gradients(net, X, Y, r=plain)
    assert not np.array_equal(pW[0], rW[0])


def test_sgd_step_updates_float32_parameters():
    """A plain SGD step (the update folded into the weight-gradient product)
    and a momentum step (through the gradient buffer) both move the float32
    parameters by the rounded products' gradient: parameters are not
    rounded themselves."""
    X, Y = _data(48, 30, 6, seed=5)
    for options in (dict(optimizer="sgd"), dict(optimizer="sgd", momentum=0.5)):
        net = _net((30, 200, 6), ["tanh", "sigmoid"], "cross_entropy", seed=6)
        W0 = [W.copy() for W in net.weights]
        b0 = [b.copy() for b in net.biases]
        _, rW, rb = gradients(net, X, Y)
        net.fit(X, Y, epochs=1, batch_size=None, learning_rate=0.5, shuffle=False,
                **options)
        for m in range(2):
            np.testing.assert_allclose(net.weights[m], W0[m] - 0.5 * rW[m], rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(net.biases[m], b0[m] - 0.5 * rb[m], rtol=1e-5,
                                       atol=1e-6)
        # Full float32 parameters: most have bits below bfloat16's.
        assert (net.weights[0].view(np.uint32) & 0xFFFF).any()


def test_float32_is_unchanged_and_differs_from_mixed():
    X, Y = _data(64, 40, 10, seed=7)
    a = _net((40, 300, 10), ["relu", "softmax"], "cross_entropy", dtype="float32")
    b = _net((40, 300, 10), ["relu", "softmax"], "cross_entropy")
    assert np.array_equal(a._params, b._params)
    _, acts = forward(a, X, r=plain)
    np.testing.assert_allclose(a.predict(X), acts[-1], **TOL)
    assert not np.array_equal(a.predict(X), b.predict(X))


def test_sparse_X_matches_dense():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 50)).astype(np.float32)
    X[rng.random(X.shape) < 0.7] = 0
    Y = np.eye(4, dtype=np.float32)[np.arange(60) % 4]
    net = _net((50, 80, 4), ["tanh", "softmax"], "cross_entropy", seed=9)
    Xs = sp.csr_matrix(X)
    data_before = Xs.data.copy()
    np.testing.assert_allclose(net.predict(Xs), net.predict(X), **TOL)
    for g, h in zip(net.gradients(Xs, Y)[0], net.gradients(X, Y)[0]):
        np.testing.assert_allclose(g, h, **TOL)
    # The caller's matrix is not rounded in place.
    assert np.array_equal(Xs.data, data_before)
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    history = a.fit(Xs, Y, epochs=2, batch_size=16, learning_rate=0.1,
                    validation_data=(Xs[:20], Y[:20]))
    b.fit(X, Y, epochs=2, batch_size=16, learning_rate=0.1)
    np.testing.assert_allclose(a._params, b._params, rtol=1e-4, atol=1e-5)
    # The sparse validation rows are rounded as evaluate rounds them (the
    # two differ in float32's last bits, as they do for a float32 network).
    assert history.val_loss[-1] == pytest.approx(a.evaluate(Xs[:20], Y[:20]), rel=1e-6)
    f32 = Network([50, 80, 4], ["tanh", "softmax"], "cross_entropy", dtype="float32")
    f32._params[...] = a._params
    assert history.val_loss[-1] != pytest.approx(f32.evaluate(Xs[:20], Y[:20]), rel=1e-5)


def test_validation_and_train_step_use_the_policy():
    """fit's validation pass and train_step round as evaluate does: the
    costs agree with the rounded evaluation, not with float32's."""
    X, Y = _data(96, 30, 8, seed=14)
    Xv, Yv = _data(40, 30, 8, seed=15)
    net = _net((30, 120, 8), ["relu", "sigmoid"], "cross_entropy", seed=16)
    history = net.fit(X, Y, epochs=1, batch_size=32, learning_rate=0.1,
                      validation_data=(Xv, Yv))
    assert history.val_loss[-1] == pytest.approx(net.evaluate(Xv, Yv), rel=1e-12)
    f32 = Network([30, 120, 8], ["relu", "sigmoid"], "cross_entropy", dtype="float32")
    f32._params[...] = net._params
    assert f32.evaluate(Xv, Yv) != pytest.approx(net.evaluate(Xv, Yv), rel=1e-7)
    before = net.evaluate(X[:16], Y[:16])
    assert net.train_step(X[:16], Y[:16], 0.1) == pytest.approx(before, rel=1e-12)


def test_thread_count_changes_no_bit():
    X, Y = _data(256, 64, 16, seed=10)
    nets = [_net((64, 256, 16), ["relu", "identity"], "squared_error", seed=11)
            for _ in range(2)]
    for net, threads in zip(nets, (1, 2)):
        net.n_threads = threads
        net.fit(X, Y, epochs=2, batch_size=128, learning_rate=0.01, optimizer="adam")
    assert np.array_equal(nets[0]._params, nets[1]._params)


# ------------------------------------------------------------ training curves

def test_digits_training_ends_near_float32():
    X, y = load_digits()
    losses = {}
    for dtype in ("float32", MIXED):
        net = Network([64, 32, 10], ["tanh", "softmax"], "cross_entropy", dtype=dtype,
                      seed=0)
        history = net.fit(X, y, epochs=20, batch_size=32, learning_rate=0.1)
        losses[dtype] = history.loss[-1]
        assert history.loss[-1] < 0.25 * history.loss[0]
    assert losses[MIXED] != losses["float32"]
    assert abs(losses[MIXED] - losses["float32"]) <= 0.02 * losses["float32"]


def test_wide_regression_training_ends_near_float32():
    """W5's shape scaled down (relu/identity, squared error, the bench's
    synthetic teacher): every product runs in bf_gemm."""
    from backprop_fast.bench import synthetic_regression

    X, Y = synthetic_regression(1024, 256, 256, seed=0)
    losses = {}
    for dtype in ("float32", MIXED):
        net = Network([256, 512, 512, 256], ["relu", "relu", "identity"], "squared_error",
                      dtype=dtype, seed=0)
        history = net.fit(X, Y, epochs=3, batch_size=256, learning_rate=0.01)
        losses[dtype] = history.loss[-1]
        assert history.loss[-1] < 0.5 * history.loss[0]
    assert losses[MIXED] != losses["float32"]
    assert abs(losses[MIXED] - losses["float32"]) <= 0.02 * losses["float32"]


# -------------------------------------------------------------- the plumbing

def test_attributes_and_repr():
    net = _net((3, 4, 2), "sigmoid", "cross_entropy")
    assert net.dtype == np.float32
    assert net.precision == MIXED
    assert all(W.dtype == np.float32 for W in net.weights)
    assert "dtype='mixed_bfloat16'" in repr(net)
    with pytest.raises(AttributeError):
        net.precision = "float32"
    assert Network([3, 2], dtype="float32").precision == "float32"
    assert Network([3, 2], dtype=np.float64).precision == "float64"


@pytest.mark.parametrize("bad", ["bfloat16", "mixed_float16", "Mixed_BFloat16",
                                 "mixed_bfloat16 ", "float16", np.float16, "int32"])
def test_bad_dtype_refused(bad):
    with pytest.raises((TypeError, ValueError), match="mixed_bfloat16"):
        Network([3, 2], dtype=bad)


def test_save_load_round_trip(tmp_path):
    X, Y = _data(32, 5, 3, seed=12)
    net = _net((5, 8, 3), ["tanh", "sigmoid"], "cross_entropy", seed=13)
    net.fit(X, Y, epochs=2, batch_size=8, optimizer="adam", learning_rate=0.01)
    path = tmp_path / "m.npz"
    net.save(path)
    meta = json.loads(str(np.load(path)["meta"][()]))
    assert (meta["dtype"], meta["precision"]) == ("float32", MIXED)
    back = Network.load(path)
    assert back.precision == MIXED and back.dtype == np.float32
    assert np.array_equal(back._params, net._params)
    assert np.array_equal(back.predict(X), net.predict(X))
    # Training goes on exactly where it stopped.
    net.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", learning_rate=0.01)
    back.fit(X, Y, epochs=1, batch_size=8, optimizer="adam", learning_rate=0.01)
    assert np.array_equal(back._params, net._params)


def _rewrite_meta(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "meta.npy":
                meta = json.loads(str(np.load(io.BytesIO(data))[()]))
                change(meta)
                buf = io.BytesIO()
                np.save(buf, np.array(json.dumps(meta)))
                data = buf.getvalue()
            zout.writestr(info, data)


def test_files_without_precision_load_as_their_dtype(tmp_path):
    net = Network([4, 3, 2], dtype="float32", seed=1)
    net.save(tmp_path / "a.npz")
    _rewrite_meta(tmp_path / "a.npz", tmp_path / "old.npz", lambda m: m.pop("precision"))
    old = Network.load(tmp_path / "old.npz")
    assert old.precision == "float32"
    assert np.array_equal(old._params, net._params)


@pytest.mark.parametrize("dtype, precision", [("float64", MIXED), ("float32", "float64"),
                                              ("float32", "bfloat16"), ("float32", 3)])
def test_inconsistent_precision_refused(tmp_path, dtype, precision):
    net = Network([4, 3, 2], dtype=dtype, seed=1)
    net.save(tmp_path / "a.npz")

    def change(meta):
        meta["precision"] = precision
    _rewrite_meta(tmp_path / "a.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match="precision"):
        Network.load(tmp_path / "bad.npz")


def test_pickle_and_deepcopy_keep_the_policy():
    net = _net((4, 6, 2), "tanh", "squared_error", seed=2)
    X, _ = _data(5, 4, 2)
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert other.precision == MIXED
        assert np.array_equal(other.predict(X), net.predict(X))


def test_onnx_export_is_a_float32_graph(tmp_path):
    onnx = pytest.importorskip("onnx")
    net = _net((6, 9, 3), ["relu", "softmax"], "cross_entropy", seed=3)
    path = tmp_path / "m.onnx"
    net.to_onnx(path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    props = {p.key: p.value for p in model.metadata_props}
    assert (props["dtype"], props["precision"]) == ("float32", MIXED)
    ort = pytest.importorskip("onnxruntime")
    X, _ = _data(10, 6, 3, seed=4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: X})[0]
    # The graph's products are float32's, not the rounded ones.
    _, acts = forward(net, X, r=plain)
    np.testing.assert_allclose(got, acts[-1], **TOL)


def test_fit_many_equals_separate_fits():
    X, y = load_digits()
    X, y = X[:300], y[:300]

    def make():
        return [Network([64, 24, 10], ["relu", "softmax"], "cross_entropy", dtype=d,
                        seed=k) for k, d in enumerate([MIXED, MIXED, "float32"])]
    together, alone = make(), make()
    subsets = [np.arange(0, 200), None, np.arange(100, 300)]
    options = dict(epochs=3, batch_size=[16, 32, 16], learning_rate=0.05,
                   optimizer=["sgd", "adam", "sgd"])
    fit_many(together, X, y, subsets=subsets, **options)
    for k, net in enumerate(alone):
        s = subsets[k] if subsets[k] is not None else slice(None)
        net.fit(X[s], y[s], epochs=3, batch_size=options["batch_size"][k],
                learning_rate=0.05, optimizer=options["optimizer"][k])
    for a, b in zip(together, alone):
        assert a.precision == b.precision
        assert np.array_equal(a._params, b._params)


def test_sklearn_estimators_take_the_policy():
    sklearn = pytest.importorskip("sklearn")
    assert sklearn
    from backprop_fast.sklearn import MLPClassifier, MLPRegressor

    X, y = load_digits()
    X, y = X[:200], y[:200]
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, dtype=MIXED,
                        random_state=0)
    with pytest.warns(Warning):
        clf.fit(X, y)
    assert clf.network_.precision == MIXED
    assert clf.predict_proba(X).dtype == np.float32
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, dtype="bfloat16")
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        reg.fit(X, y.astype(float))
