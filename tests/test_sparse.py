"""Sparse X (scipy.sparse) against the same X dense.

The first layer's products on CSR rows sum each element over the row's
stored values in column order; the dense products sum over every column,
zeros included, and for small products in eight partial sums: so costs and
parameters agree to rounding, not always in every bit.
"""
import tracemalloc
import warnings

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

from backprop_fast import Network  # noqa: E402
from backprop_fast._kernels import kernel  # noqa: E402

TOL = {"float64": dict(rtol=1e-9, atol=1e-11), "float32": dict(rtol=2e-4, atol=2e-5)}


def _data(n=60, d=30, density=0.2, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, random_state=seed, format="csr",
                  data_rvs=lambda k: rng.standard_normal(k))
    y = rng.integers(0, classes, n)
    return X, y


def _pair(dtype, sizes=(30, 16, 3), acts=("tanh", "softmax")):
    return [Network(list(sizes), list(acts), "cross_entropy", dtype=dtype, seed=3)
            for _ in range(2)]


def _close(a, b, dtype):
    for u, v in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(u, v, **TOL[dtype])


OPTIONS = [
    dict(optimizer="sgd"),
    dict(optimizer="sgd", momentum=0.9),
    dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-3),
    dict(optimizer="adam"),
    dict(optimizer="adam", weight_decay=1e-3),
    dict(optimizer="adamw", weight_decay=1e-2),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
@pytest.mark.parametrize("batch_size", [None, 7, 1])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_matches_dense(dtype, options, batch_size, shuffle):
    X, y = _data()
    a, b = _pair(dtype)
    ha = a.fit(X, y, epochs=3, batch_size=batch_size, learning_rate=0.05, shuffle=shuffle,
               **options)
    hb = b.fit(X.toarray(), y, epochs=3, batch_size=batch_size, learning_rate=0.05,
               shuffle=shuffle, **options)
    np.testing.assert_allclose(ha.loss, hb.loss, **TOL[dtype])
    _close(a, b, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_products_match_dense(dtype):
    # Past SMALL_PRODUCT the dense first layer runs in bf_gemm (and, for
    # some batch sizes, transposed): the sparse path must still agree.
    X, y = _data(n=300, d=200, density=0.05, seed=1, classes=4)
    a, b = _pair(dtype, (200, 40, 4), ("relu", "softmax"))
    for net, data in ((a, X), (b, X.toarray())):
        net.fit(data, y, epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam")
    _close(a, b, dtype)
    np.testing.assert_allclose(a.predict(X), b.predict(X.toarray()), **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_evaluate_gradients_match_dense(dtype):
    X, y = _data(seed=2)
    net = _pair(dtype)[0]
    D = X.toarray()
    np.testing.assert_allclose(net.predict(X), net.predict(D), **TOL[dtype])
    np.testing.assert_allclose(net.predict(X[3]), net.predict(D[3:4]), **TOL[dtype])
    np.testing.assert_allclose(net.evaluate(X, y), net.evaluate(D, y), **TOL[dtype])
    for gs, gd in zip(net.gradients(X, y), net.gradients(D, y)):
        for u, v in zip(gs, gd):
            np.testing.assert_allclose(u, v, **TOL[dtype])
    a, b = _pair(dtype)
    np.testing.assert_allclose(a.train_step(X, y, 0.1), b.train_step(D, y, 0.1),
                               **TOL[dtype])
    a.partial_fit(X, y, batch_size=10, learning_rate=0.1)
    b.partial_fit(D, y, batch_size=10, learning_rate=0.1)
    _close(a, b, dtype)


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "csr_array", "csc_array",
                                 "coo_matrix", "lil_matrix"])
def test_formats(fmt):
    X, y = _data(seed=4)
    ref = _pair("float64")[0]
    a, b = _pair("float64")
    a.fit(X, y, epochs=2, batch_size=8, learning_rate=0.1)
    b.fit(getattr(sp, fmt)(X), y, epochs=2, batch_size=8, learning_rate=0.1)
    for u, v in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(ref.predict(X), ref.predict(getattr(sp, fmt)(X)))


def test_integer_and_float32_data_are_converted():
    X, y = _data(seed=5)
    Xi = X.copy()
    Xi.data = np.round(Xi.data * 3).astype(np.int32)
    net = _pair("float64")[0]
    np.testing.assert_allclose(net.predict(Xi), net.predict(Xi.toarray()), rtol=1e-12)
    net32 = _pair("float32")[0]
    np.testing.assert_allclose(net32.predict(X.astype(np.float64)),
                               net32.predict(X.toarray().astype(np.float32)), rtol=2e-5,
                               atol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_validation_sparse(dtype):
    X, y = _data(n=80, seed=6)
    Xv, yv = _data(n=20, seed=7)
    a, b = _pair(dtype)
    ha = a.fit(X, y, epochs=3, batch_size=16, learning_rate=0.05, optimizer="adam",
               validation_data=(Xv, yv))
    hb = b.fit(X.toarray(), y, epochs=3, batch_size=16, learning_rate=0.05,
               optimizer="adam", validation_data=(Xv.toarray(), yv))
    np.testing.assert_allclose(ha.val_loss, hb.val_loss, **TOL[dtype])
    np.testing.assert_array_equal(ha.val_accuracy, hb.val_accuracy)
    # Sparse training data with a dense validation set, and the other way.
    c = _pair(dtype)[0]
    hc = c.fit(X, y, epochs=3, batch_size=16, learning_rate=0.05, optimizer="adam",
               validation_data=(Xv.toarray(), yv))
    np.testing.assert_allclose(hc.val_loss, hb.val_loss, **TOL[dtype])
    a, b = _pair(dtype)
    ha = a.fit(X, y, epochs=3, batch_size=16, learning_rate=0.05, validation_split=0.25,
               early_stopping=True, patience=2)
    hb = b.fit(X.toarray(), y, epochs=3, batch_size=16, learning_rate=0.05,
               validation_split=0.25, early_stopping=True, patience=2)
    np.testing.assert_allclose(ha.loss, hb.loss, **TOL[dtype])
    np.testing.assert_allclose(ha.val_loss, hb.val_loss, **TOL[dtype])
    _close(a, b, dtype)


def test_empty_rows_and_columns():
    X, y = _data(seed=8)
    X = X.tolil()
    X[5, :] = 0
    X[:, 4] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    a, b = _pair("float64")
    a.fit(X, y, epochs=2, batch_size=4, learning_rate=0.1, optimizer="adam")
    b.fit(X.toarray(), y, epochs=2, batch_size=4, learning_rate=0.1, optimizer="adam")
    _close(a, b, "float64")
    all_zero = sp.csr_matrix((3, 30))
    np.testing.assert_array_equal(a.predict(all_zero), a.predict(np.zeros((3, 30))))


def test_same_bits_for_any_thread_count():
    # Large enough that the sparse products split between threads.
    X, y = _data(n=2000, d=2000, density=0.05, seed=9, classes=4)
    results = []
    for threads in (1, 2, 3):
        net = Network([2000, 64, 4], ["relu", "softmax"], "cross_entropy", seed=0,
                      n_threads=threads)
        net.fit(X, y, epochs=1, batch_size=500, learning_rate=0.01, optimizer="adam")
        h = net.fit(X, y, epochs=1, batch_size=500, learning_rate=0.01)
        results.append((h.loss, [w.copy() for w in net.weights], net.predict(X)))
    for loss, weights, out in results[1:]:
        assert loss == results[0][0]
        for u, v in zip(weights, results[0][1]):
            np.testing.assert_array_equal(u, v)
        np.testing.assert_array_equal(out, results[0][2])


def test_unsorted_and_duplicate_indices_are_summed_on_a_copy():
    X, y = _data(n=20, seed=10)
    D = X.toarray()
    # Each row's entries reversed, and one value split into two duplicates.
    indptr, indices, data = X.indptr.copy(), X.indices.copy(), X.data.copy()
    for i in range(X.shape[0]):
        s = slice(indptr[i], indptr[i + 1])
        indices[s] = indices[s][::-1]
        data[s] = data[s][::-1]
    k = indptr[1]  # the first entry of row 1
    indices = np.insert(indices, k, indices[k])
    data = np.insert(data, k, 0.25)
    D[1, indices[k]] += 0.25
    indptr[2:] += 1
    messy = sp.csr_matrix((data, indices, indptr), shape=X.shape)
    assert not messy.has_canonical_format
    before = (messy.indices.copy(), messy.data.copy())
    net = _pair("float64")[0]
    np.testing.assert_allclose(net.predict(messy), net.predict(D), rtol=1e-12)
    np.testing.assert_array_equal(messy.indices, before[0])
    np.testing.assert_array_equal(messy.data, before[1])


def test_bad_sparse_input():
    X, y = _data(seed=11)
    net = _pair("float64")[0]
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.fit(bad, y, epochs=1)
    bad.data[3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.predict(bad)
    with pytest.raises(ValueError, match="validation_data"):
        net.fit(X, y, epochs=1, validation_data=(bad, y))
    with pytest.raises(ValueError, match="features per sample"):
        net.predict(sp.random(4, 29, density=0.5, format="csr"))
    with pytest.raises(ValueError, match="empty"):
        net.predict(sp.csr_matrix((0, 30)))
    with pytest.raises(ValueError, match="59 labels but X has 60 samples"):
        net.fit(X, y[:-1], epochs=1)
    with pytest.raises(TypeError, match="real numbers"):
        net.predict(X.astype(np.complex128))
    too_large = X.copy()
    too_large.data[0] = 1e300
    with pytest.raises(ValueError, match="too large"):
        _pair("float32")[0].predict(too_large)


def test_kernel_refuses_a_bad_csr():
    net = _pair("float64")[0]
    params, sizes, acts = net._net_views()
    empty = np.empty((0, 30))
    out = np.empty((2, 3))
    work = np.empty(kernel.workspace_size(sizes, acts, 2, True))
    indptr = np.array([0, 1, 2], dtype=np.int64)
    data = np.ones(2)
    for indices in (np.array([0, 30], dtype=np.int64), np.array([-1, 0], dtype=np.int64)):
        with pytest.raises(ValueError, match="out of range"):
            kernel.predict(params, sizes, acts, empty, out, work, 2, 0,
                           (indptr, indices, data))
    with pytest.raises(ValueError, match="CSR"):
        kernel.predict(params, sizes, acts, empty, out, work, 2, 0,
                       (np.array([0, 1, 3], dtype=np.int64), np.zeros(2, np.int64), data))
    with pytest.raises(ValueError, match="out of range"):  # decreasing offsets
        kernel.predict(params, sizes, acts, empty, out, work, 2, 0,
                       (np.array([0, 3, 2], dtype=np.int64), np.zeros(2, np.int64), data))


def _large(n, d, per_row, seed):
    """An n x d CSR matrix of about per_row values a row, made row by row
    (scipy.sparse.random draws from all n d positions, which at this size
    takes gigabytes itself)."""
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.integers(0, d, size=(n, per_row)), axis=1)
    X = sp.csr_matrix((rng.random(n * per_row), indices.ravel(),
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    return X


def test_a_large_sparse_matrix_is_never_densified():
    # 20,000 x 200,000: dense it would take 32 GB in float64 (16 GB in float32).
    n, d = 20_000, 200_000
    X = _large(n, d, 20, 12)  # density 1e-4
    y = np.random.default_rng(12).integers(0, 2, n)
    net = Network([d, 4, 2], ["relu", "softmax"], "cross_entropy", seed=0)
    dense_bytes = n * d * 8
    tracemalloc.start()
    try:
        net.fit(X, y, epochs=1, batch_size=200, learning_rate=0.001, optimizer="adam",
                validation_split=0.1)
        net.predict(X)
        net.evaluate(X, y)
        net.gradients(X[:5000], y[:5000])
        net.fit(X, y, epochs=1, learning_rate=0.01)  # one batch of every row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The parameters and the optimizer's state (a few copies of 800,000
    # weights) and the CSR arrays dominate: a few tens of MB.
    assert peak < 200e6
    assert peak < dense_bytes / 100


# ---------------------------------------------------------------- the estimators

def _estimators():
    return pytest.importorskip("backprop_fast.sklearn")


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_classifier_sparse_matches_dense(solver, dtype):
    est = _estimators()
    X, y = _data(n=90, d=40, density=0.15, seed=13, classes=3)
    X = abs(X)
    kw = dict(hidden_layer_sizes=(12,), solver=solver, max_iter=8, random_state=0,
              dtype=dtype, tol=0)
    with pytest.warns(Warning):  # not converged in 8 iterations
        a = est.MLPClassifier(**kw).fit(X, y)
    with pytest.warns(Warning):
        b = est.MLPClassifier(**kw).fit(X.toarray(), y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()),
                               **TOL[dtype])
    np.testing.assert_array_equal(a.predict(X.tocsc()), b.predict(X.toarray()))
    assert a.score(X, y) == b.score(X.toarray(), y)


def test_estimators_sparse_options():
    est = _estimators()
    X, y = _data(n=120, d=40, density=0.15, seed=14, classes=2)
    w = np.linspace(0.5, 2, 120)
    for kw in (dict(solver="lbfgs"), dict(early_stopping=True, validation_fraction=0.2)):
        a = est.MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=1, **kw)
        b = est.MLPClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=1, **kw)
        sw = w if kw.get("solver") == "lbfgs" else None
        with pytest.warns(Warning):  # not converged in 5 iterations
            a.fit(X, y, sample_weight=sw)
        with pytest.warns(Warning):
            b.fit(X.toarray(), y, sample_weight=sw)
        np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()),
                                   rtol=1e-7, atol=1e-9)
    reg_a = est.MLPRegressor(hidden_layer_sizes=(6,), random_state=2)
    reg_b = est.MLPRegressor(hidden_layer_sizes=(6,), random_state=2)
    target = np.asarray(X.sum(axis=1)).ravel()
    for lo in range(0, 120, 40):
        reg_a.partial_fit(X[lo:lo + 40], target[lo:lo + 40])
        reg_b.partial_fit(X[lo:lo + 40].toarray(), target[lo:lo + 40])
    np.testing.assert_allclose(reg_a.predict(X), reg_b.predict(X.toarray()), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(reg_a.score(X, target), reg_b.score(X.toarray(), target),
                               rtol=1e-9)


def test_estimator_never_densifies():
    est = _estimators()
    n, d = 5_000, 200_000
    X = _large(n, d, 20, 15)  # density 1e-4
    y = np.random.default_rng(15).integers(0, 3, n)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not converged after one epoch
            clf = est.MLPClassifier(hidden_layer_sizes=(4,), max_iter=1,
                                    random_state=0).fit(X, y)
        clf.predict_proba(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200e6 < n * d * 8


@pytest.mark.parametrize("metric, loss, acts", [("accuracy", "cross_entropy", ["tanh", "softmax"]),
                                                ("r2", "squared_error", ["tanh", "identity"])])
def test_sparse_validation_scores_like_dense(metric, loss, acts):
    """stopping="sklearn" scores a sparse validation set as the same rows dense."""
    X, y = _data(n=90, d=30, density=0.2, seed=21, classes=3)
    target = y if loss == "cross_entropy" else np.asarray(X.sum(axis=1)).ravel()
    histories = []
    for to_dense in (False, True):
        net = Network([30, 5, 3 if loss == "cross_entropy" else 1], acts, loss, seed=4)
        Xt, Xv = X[:60], X[60:]
        if to_dense:
            Xt, Xv = Xt.toarray(), Xv.toarray()
        histories.append(net.fit(Xt, target[:60], epochs=4, batch_size=20, stopping="sklearn",
                                 validation_data=(Xv, target[60:]),
                                 validation_metric=metric, early_stopping=True))
    assert np.all(np.isfinite(histories[0].val_score))
    np.testing.assert_allclose(histories[0].val_score, histories[1].val_score, rtol=1e-9)
