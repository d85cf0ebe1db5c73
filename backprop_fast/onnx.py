"""Export a :class:`~backprop_fast.Network` to ONNX.

The graph is the network's forward pass, one ``Gemm`` and one activation node
per layer::

    X -> Gemm(W0, b0, transB=1) -> Sigmoid/Tanh/Relu/Identity/Softmax(axis=1) -> ...

``Gemm`` with ``transB=1`` computes ``a_prev @ W.T + b``, exactly the layer
formula of ``Network`` (whose ``weights[m]`` have shape (n_out, n_in)), so the
weights are stored as they are, without a transpose. The parameters are
stored in the network's dtype (float32 or float64) and the graph's input and
output have that element type; the batch dimension is symbolic ("N").

Running the file with onnxruntime gives the output of ``Network.predict``
(within 1e-5 in float32 and 1e-12 in float64, the difference between two
summation orders). ``onnx`` is an optional dependency: ``pip install
backprop_fast[onnx]`` installs it together with onnxruntime.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from .network import Network

__all__ = ["to_onnx", "OPSET", "INPUT_NAME", "OUTPUT_NAME"]

#: The ONNX operator set the graph declares. Softmax from opset 13 on
#: normalises along one axis (axis=1 here: over the units of a sample), the
#: semantics of Network's softmax; opset 13 runs on every onnxruntime since 1.7.
OPSET = 13
#: IR version 7 is the one that goes with opset 13, so that older runtimes
#: accept the file (onnx.helper would otherwise stamp its own, newer one).
IR_VERSION = 7
INPUT_NAME = "X"
OUTPUT_NAME = "Y"

_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu",
        "identity": "Identity", "softmax": "Softmax"}


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:  # pragma: no cover - exercised without onnx installed
        raise ImportError(
            "ONNX export needs the 'onnx' package: pip install 'backprop_fast[onnx]' "
            f"(or pip install onnx onnxruntime); the import failed with: {exc}") from None
    return onnx, helper, numpy_helper


def to_onnx_model(net: "Network") -> "onnx.ModelProto":
    """Build the ONNX model (an ``onnx.ModelProto``) of ``net``'s forward pass.

    Parameters
    ----------
    net : Network
        The network to export; its parameters are copied into the model.

    Returns
    -------
    onnx.ModelProto
        A checked model with one input ``"X"`` of shape (N, layer_sizes[0])
        and one output ``"Y"`` of shape (N, layer_sizes[-1]), both of the
        network's dtype.

    Raises
    ------
    ImportError
        If the onnx package is not installed.
    ValueError
        If the network's parameters are not all finite.
    """
    onnx, helper, numpy_helper = _import_onnx()
    from . import __version__

    dtype = np.dtype(net.dtype)
    elem = {np.dtype(np.float32): onnx.TensorProto.FLOAT,
            np.dtype(np.float64): onnx.TensorProto.DOUBLE}[dtype]
    # Copied under the network's lock: a fit in another thread is either
    # wholly in the export or not at all.
    with net._lock:
        weights = [np.array(W, dtype=dtype) for W in net.weights]
        biases = [np.array(b, dtype=dtype) for b in net.biases]
    for m, (W, b) in enumerate(zip(weights, biases)):
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"cannot export: weights[{m}] or biases[{m}] contain NaN "
                             "or infinity")

    nodes, initializers = [], []
    current = INPUT_NAME
    last = len(weights) - 1
    for m, (W, b, act) in enumerate(zip(weights, biases, net.activations)):
        w_name, b_name, z_name = f"W{m}", f"b{m}", f"z{m}"
        a_name = OUTPUT_NAME if m == last else f"a{m}"
        initializers.append(numpy_helper.from_array(np.array(W, dtype=dtype), w_name))
        initializers.append(numpy_helper.from_array(np.array(b, dtype=dtype), b_name))
        nodes.append(helper.make_node("Gemm", [current, w_name, b_name], [z_name],
                                      name=f"dense{m}", transB=1))
        attrs = {"axis": 1} if act == "softmax" else {}
        nodes.append(helper.make_node(_OPS[act], [z_name], [a_name],
                                      name=f"{act}{m}", **attrs))
        current = a_name

    graph = helper.make_graph(
        nodes, "backprop_fast.Network",
        [helper.make_tensor_value_info(INPUT_NAME, elem, ["N", net.layer_sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, elem, ["N", net.layer_sizes[-1]])],
        initializer=initializers,
        doc_string=(f"Dense network {net.layer_sizes}, activations {net.activations}, "
                    f"trained with loss {net.loss!r}; outputs are Network.predict's."),
    )
    model = helper.make_model(
        graph, producer_name="backprop_fast", producer_version=__version__,
        opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {
        "layer_sizes": ",".join(map(str, net.layer_sizes)),
        "activations": ",".join(net.activations),
        "loss": net.loss,
        "dtype": dtype.name,
    })
    onnx.checker.check_model(model, full_check=True)
    return model


def to_onnx(net: "Network", path: Union[str, "os.PathLike[str]"]) -> None:
    """Write ``net``'s forward pass to ``path`` as an ONNX model.

    Parameters
    ----------
    net : Network
    path : str or path-like
        Destination file (conventionally ``*.onnx``); written atomically.

    Raises
    ------
    ImportError
        If the onnx package is not installed.
    ValueError
        If the network's parameters are not all finite.

    Examples
    --------
    >>> import onnxruntime as ort                                 # doctest: +SKIP
    >>> to_onnx(net, "net.onnx")                                  # doctest: +SKIP
    >>> sess = ort.InferenceSession("net.onnx")                   # doctest: +SKIP
    >>> sess.run(None, {"X": X.astype(net.dtype)})[0]             # == net.predict(X)
    """
    from ._io import atomic_write_bytes

    model = to_onnx_model(net)
    atomic_write_bytes(path, model.SerializeToString())
