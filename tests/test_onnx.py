"""ONNX export: onnxruntime reproduces Network.predict for every activation."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from backprop_fast import Network  # noqa: E402
from backprop_fast.onnx import OPSET, to_onnx, to_onnx_model  # noqa: E402

# The bounds: the runtime and the kernel sum in different orders.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path, X):
    return _session(path).run(None, {"X": X})[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "activations, loss",
    [
        ("sigmoid", "cross_entropy"),
        ("tanh", "squared_error"),
        ("relu", "squared_error"),
        ("identity", "squared_error"),
        (["relu", "tanh", "softmax"], "cross_entropy"),
        (["sigmoid", "identity", "relu"], "squared_error"),
        (["identity", "relu", "sigmoid"], "cross_entropy"),
    ],
)
def test_runtime_matches_predict(tmp_path, dtype, activations, loss):
    rng = np.random.default_rng(0)
    net = Network([6, 9, 7, 4], activations, loss, dtype=dtype, seed=3)
    X = rng.normal(size=(40, 6))
    Y = np.eye(4)[rng.integers(0, 4, 40)]
    net.fit(X, Y, epochs=3, batch_size=8, learning_rate=0.1)  # trained, not just initial
    path = tmp_path / "net.onnx"
    to_onnx(net, path)
    Xd = X.astype(dtype)
    out = _run(path, Xd)
    assert out.dtype == np.dtype(dtype) and out.shape == (40, 4)
    np.testing.assert_allclose(out, net.predict(Xd), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_activation_on_a_wide_layer(tmp_path, dtype):
    """Larger sums (a 64-wide input and 100 samples) stay within the bound."""
    rng = np.random.default_rng(1)
    for act in ("sigmoid", "tanh", "relu", "identity"):
        net = Network([64, 48, 10], [act, "softmax"], "cross_entropy", dtype=dtype, seed=0)
        X = rng.uniform(0, 1, size=(100, 64)).astype(dtype)
        path = tmp_path / f"{act}.onnx"
        to_onnx(net, path)
        np.testing.assert_allclose(_run(path, X), net.predict(X), err_msg=act, **TOL[dtype])


def test_batch_dimension_is_symbolic(tmp_path):
    net = Network([3, 1], "sigmoid", seed=0)
    path = tmp_path / "tiny.onnx"
    to_onnx(net, path)
    sess = _session(path)
    for n in (1, 2, 17):
        X = np.linspace(-2, 2, 3 * n).reshape(n, 3)
        np.testing.assert_allclose(sess.run(None, {"X": X})[0], net.predict(X), **TOL[np.float64])


def test_model_structure(tmp_path):
    net = Network([4, 5, 3], ["tanh", "softmax"], dtype="float32", seed=0)
    model = to_onnx_model(net)
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Tanh", "Gemm", "Softmax"]
    softmax = model.graph.node[-1]
    assert [(a.name, a.i) for a in softmax.attribute] == [("axis", 1)]
    assert all(a.i == 1 for a in model.graph.node[0].attribute if a.name == "transB")
    assert model.opset_import[0].version == OPSET
    assert model.producer_name == "backprop_fast"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["activations"] == "tanh,softmax" and props["dtype"] == "float32"
    # Weights are copies: changing the network afterwards does not change the model.
    W0 = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    net.weights[0][...] = 0
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(model.graph.initializer[0]), W0)


def test_non_finite_parameters_are_refused(tmp_path):
    net = Network([2, 2, 1], seed=0)
    net.biases[0][1] = np.nan
    with pytest.raises(ValueError, match="biases\\[0\\]"):
        to_onnx(net, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_unwritable_destination_leaves_nothing(tmp_path):
    net = Network([2, 2, 1], seed=0)
    with pytest.raises(OSError):
        to_onnx(net, tmp_path / "missing" / "net.onnx")
    assert list(tmp_path.iterdir()) == []


def test_network_method(tmp_path):
    net = Network([2, 3, 1], "tanh", "squared_error", seed=0)
    net.to_onnx(tmp_path / "m.onnx")
    X = np.array([[0.5, -1.0]])
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", X), net.predict(X), **TOL[np.float64])
