"""ONNX export of the scikit-learn estimators: alone, and in skl2onnx pipelines.

onnxruntime runs the exported graphs; their outputs must equal the estimators'
predict_proba / predict (within 1e-5 in float32, the difference between two
summation orders) and their labels predict's.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from backprop_fast import Network  # noqa: E402
from backprop_fast.onnx import register_skl2onnx, to_onnx, to_onnx_model  # noqa: E402
from backprop_fast.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
ACTIVATIONS = ["logistic", "tanh", "relu", "identity"]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def skl2onnx():
    module = pytest.importorskip("skl2onnx")
    register_skl2onnx()
    return module


def _data(dtype=np.float32, n=80, d=6, seed=0):
    rng = np.random.default_rng(seed)
    # Off-centre and unevenly scaled, so that the scaler has work to do.
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 4.0, d) + rng.uniform(-3, 3, d)
    return X.astype(dtype), rng


def _targets(kind, X, rng):
    n = X.shape[0]
    if kind == "binary":
        return (X[:, 0] + 0.3 * X[:, 1] > np.median(X[:, 0] + 0.3 * X[:, 1])).astype(int)
    if kind == "multiclass":
        return np.digitize(X[:, 2] - X[:, 3], np.quantile(X[:, 2] - X[:, 3], [0.25, 0.5, 0.75]))
    if kind == "strings":
        return np.array(["cat", "dog", "eel"])[rng.integers(0, 3, n)]
    if kind == "multilabel":
        return (X[:, :3] > np.median(X[:, :3], axis=0)).astype(int)
    raise AssertionError(kind)


def _run(model_proto, X):
    sess = ort.InferenceSession(model_proto.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})


def _classifier(activation, dtype="float32", **kw):
    return MLPClassifier((8, 5), activation, max_iter=30, learning_rate_init=0.01,
                         random_state=0, dtype=dtype, **kw)


def _regressor(activation, dtype="float32", **kw):
    return MLPRegressor((8, 5), activation, max_iter=30, learning_rate_init=0.01,
                        random_state=0, dtype=dtype, **kw)


# ---------------------------------------------------------------- skl2onnx pipelines

@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_pipeline_probabilities_and_labels(skl2onnx, activation, kind):
    X, rng = _data()
    y = _targets(kind, X, rng)
    pipe = make_pipeline(StandardScaler(), _classifier(activation)).fit(X, y)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={MLPClassifier: {"zipmap": False}})
    labels, proba = _run(onx, X)
    expected = pipe.predict_proba(X)
    assert proba.dtype == np.float32 and proba.shape == expected.shape
    assert expected.shape[1] == (2 if kind == "binary" else 4)
    np.testing.assert_allclose(proba, expected, **TOL[np.float32])
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, pipe.predict(X))
    # Both classes are predicted somewhere: the labels are not one constant.
    assert len(np.unique(labels)) > 1


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_pipeline_zipmap_and_string_labels(skl2onnx, activation):
    """skl2onnx's default for classifiers: one {class: probability} per row."""
    X, rng = _data()
    y = _targets("strings", X, rng)
    pipe = make_pipeline(StandardScaler(), _classifier(activation)).fit(X, y)
    labels, rows = _run(skl2onnx.to_onnx(pipe, X[:1]), X)
    assert list(labels) == list(pipe.predict(X))
    assert all(sorted(row) == ["cat", "dog", "eel"] for row in rows)
    proba = np.array([[row[c] for c in pipe.classes_] for row in rows])
    np.testing.assert_allclose(proba, pipe.predict_proba(X), **TOL[np.float32])


def test_zipmap_columns_and_nocl(skl2onnx):
    X, rng = _data()
    clf = _classifier("relu").fit(X, _targets("strings", X, rng))
    expected = clf.predict_proba(X)
    labels, *columns = _run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": "columns"}), X)
    assert list(labels) == list(clf.predict(X))
    np.testing.assert_allclose(np.column_stack(columns), expected, **TOL[np.float32])
    # nocl: column numbers instead of the classes.
    numbers, proba = _run(skl2onnx.to_onnx(clf, X[:1], options={"nocl": True, "zipmap": False}),
                          X)
    np.testing.assert_array_equal(clf.classes_[numbers], clf.predict(X))
    np.testing.assert_allclose(proba, expected, **TOL[np.float32])


def test_pipeline_multilabel(skl2onnx):
    X, rng = _data()
    Y = _targets("multilabel", X, rng)
    pipe = make_pipeline(StandardScaler(), _classifier("tanh")).fit(X, Y)
    labels, proba = _run(skl2onnx.to_onnx(pipe, X[:1], options={MLPClassifier: {"zipmap": False}}),
                         X)
    np.testing.assert_allclose(proba, pipe.predict_proba(X), **TOL[np.float32])
    assert labels.shape == Y.shape
    np.testing.assert_array_equal(labels, pipe.predict(X))


@pytest.mark.parametrize("n_targets", [1, 2])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_pipeline_regressor(skl2onnx, activation, n_targets):
    X, rng = _data()
    y = X[:, :n_targets] @ rng.normal(size=(n_targets, n_targets)) + 0.1 * X[:, 3:4] ** 2
    y = y.ravel() if n_targets == 1 else y
    pipe = make_pipeline(StandardScaler(), _regressor(activation)).fit(X, y)
    (out,) = _run(skl2onnx.to_onnx(pipe, X[:1]), X)
    # skl2onnx's regressors give one column per target.
    assert out.dtype == np.float32 and out.shape == (X.shape[0], n_targets)
    np.testing.assert_allclose(out.reshape(y.shape), pipe.predict(X), **TOL[np.float32])


def test_pipeline_poisson_regressor(skl2onnx):
    X, rng = _data()
    y = rng.poisson(np.exp(0.3 * X[:, 0] - 0.2 * X[:, 1]).clip(0, 20)).astype(np.float32)
    pipe = make_pipeline(StandardScaler(), _regressor("relu", loss="poisson")).fit(X, y)
    (out,) = _run(skl2onnx.to_onnx(pipe, X[:1]), X)
    np.testing.assert_allclose(out.ravel(), pipe.predict(X), **TOL[np.float32])


def test_pipeline_in_double(skl2onnx):
    """A float64 input makes a float64 graph, as close to predict_proba as float64 allows."""
    X, rng = _data(np.float64)
    y = _targets("multiclass", X, rng)
    pipe = make_pipeline(StandardScaler(), _classifier("tanh", dtype="float64")).fit(X, y)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={MLPClassifier: {"zipmap": False}})
    labels, proba = _run(onx, X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(labels, pipe.predict(X))


def test_estimator_alone_and_integer_input(skl2onnx):
    """skl2onnx converts the estimator outside a pipeline too; an int64 input
    is computed in float32."""
    X, rng = _data()
    Xi = np.round(X).astype(np.int64)
    y = _targets("binary", X, rng)
    clf = _classifier("relu").fit(Xi.astype(np.float32), y)
    labels, proba = _run(skl2onnx.to_onnx(clf, Xi[:1], options={"zipmap": False}), Xi)
    np.testing.assert_allclose(proba, clf.predict_proba(Xi.astype(np.float32)),
                               **TOL[np.float32])
    np.testing.assert_array_equal(labels, clf.predict(Xi.astype(np.float32)))


@pytest.mark.parametrize("labels", [np.array([-1.0, 2.0, 7.0]), np.array([True, False]),
                                    np.array([4, 8, 15], dtype=np.uint8)])
def test_label_types(skl2onnx, labels):
    """Whole-number floats, booleans and unsigned integers become int64 labels."""
    X, rng = _data()
    y = labels[_targets("multiclass", X, rng) % len(labels)]
    clf = _classifier("tanh").fit(X, y)
    labels_out, proba = _run(skl2onnx.to_onnx(clf, X[:1], options={"zipmap": False}), X)
    assert labels_out.dtype == np.int64
    np.testing.assert_array_equal(labels_out, clf.predict(X).astype(np.int64))
    np.testing.assert_allclose(proba, clf.predict_proba(X), **TOL[np.float32])


def test_registration_is_repeatable(skl2onnx):
    register_skl2onnx()  # a second call (the fixture made the first) changes nothing
    X, rng = _data()
    reg = _regressor("tanh").fit(X, X[:, 0])
    (out,) = _run(skl2onnx.to_onnx(reg, X[:1]), X)
    np.testing.assert_allclose(out.ravel(), reg.predict(X), **TOL[np.float32])


def test_skl2onnx_refusals(skl2onnx):
    X, rng = _data()
    # (An unfitted classifier stops in skl2onnx's own classifier parser, before
    # the converter is reached; a regressor reaches the shape calculator.)
    with pytest.raises(NotFittedError, match="MLPRegressor instance is not fitted"):
        skl2onnx.to_onnx(MLPRegressor(), X[:1])
    clf = _classifier("tanh").fit(X, _targets("binary", X, rng))
    with pytest.raises(ValueError, match="fitted on 6 features.*3 columns"):
        skl2onnx.to_onnx(clf, X[:1, :3])


# ---------------------------------------------------------------- to_onnx of an estimator

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_to_onnx_classifier_exports_predict_proba(tmp_path, dtype, kind):
    X, rng = _data(dtype)
    clf = _classifier("tanh", dtype=np.dtype(dtype).name).fit(X, _targets(kind, X, rng))
    path = tmp_path / "clf.onnx"
    clf.to_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["X"]
    assert [o.name for o in sess.get_outputs()] == ["Y"]
    (out,) = sess.run(None, {"X": X})
    expected = clf.predict_proba(X)
    assert out.dtype == np.dtype(dtype) and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss, n_targets", [("squared_error", 1), ("squared_error", 3),
                                             ("poisson", 1), ("poisson", 2)])
def test_to_onnx_regressor_exports_predict(dtype, loss, n_targets):
    X, rng = _data(dtype)
    y = np.abs(X[:, :n_targets] + 0.5 * X[:, 3:4]) * 0.3
    y = y.ravel() if n_targets == 1 else y
    reg = _regressor("relu", dtype=np.dtype(dtype).name, loss=loss).fit(X, y)
    (out,) = _run(to_onnx_model(reg), X)
    expected = reg.predict(X)
    assert out.dtype == np.dtype(dtype) and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **TOL[dtype])


def test_every_route_to_a_file_gives_the_same_model(tmp_path):
    X, rng = _data()
    clf = _classifier("logistic").fit(X, _targets("binary", X, rng))
    to_onnx(clf, tmp_path / "function.onnx")
    clf.to_onnx(tmp_path / "method.onnx")
    Network.to_onnx(clf, tmp_path / "network.onnx")
    first = (tmp_path / "function.onnx").read_bytes()
    assert (tmp_path / "method.onnx").read_bytes() == first
    assert (tmp_path / "network.onnx").read_bytes() == first
    model = onnx.load(str(tmp_path / "function.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["estimator"] == "MLPClassifier" and props["activations"] == "sigmoid,sigmoid,sigmoid"
    # The layers are the network's own export, then the two probability columns.
    ops = [n.op_type for n in model.graph.node]
    assert ops[:6] == [n.op_type for n in to_onnx_model(clf.network_).graph.node]
    assert ops[6:] == ["Sub", "Concat"]


def test_unfitted_estimator_is_refused(tmp_path):
    for est in (MLPClassifier(), MLPRegressor()):
        with pytest.raises(NotFittedError, match=f"{type(est).__name__} instance is not fitted"):
            to_onnx(est, tmp_path / "unfitted.onnx")
        with pytest.raises(NotFittedError, match="not fitted"):
            est.to_onnx(tmp_path / "unfitted.onnx")
        with pytest.raises(NotFittedError, match="not fitted"):
            Network.to_onnx(est, tmp_path / "unfitted.onnx")
    assert list(tmp_path.iterdir()) == []


def test_other_objects_are_refused():
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    X, rng = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = SklearnMLP((3,), max_iter=5).fit(X, _targets("binary", X, rng))
    for obj in (theirs, "net.onnx", None):
        with pytest.raises(TypeError, match="Network or a fitted backprop_fast.sklearn"):
            to_onnx_model(obj)
