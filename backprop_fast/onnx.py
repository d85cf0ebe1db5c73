"""Export a :class:`~backprop_fast.Network`, or a fitted scikit-learn estimator, to ONNX.

The graph is the network's forward pass, one ``Gemm`` and one activation node
per layer::

    X -> Gemm(W0, b0, transB=1) -> Sigmoid/Tanh/Relu/Identity/Softmax(axis=1) -> ...

``Gemm`` with ``transB=1`` computes ``a_prev @ W.T + b``, exactly the layer
formula of ``Network`` (whose ``weights[m]`` have shape (n_out, n_in)), so the
weights are stored as they are, without a transpose. The parameters are
stored in the network's dtype (float32 or float64) and the graph's input and
output have that element type; the batch dimension is symbolic ("N"). A
network of the "mixed_bfloat16" policy exports as a float32 graph: ONNX
runtimes compute its products on the float32 parameters as they are, not on
bfloat16-rounded inputs, so its outputs differ from ``predict``'s by about
bfloat16's precision; the model's metadata records the policy ("precision").

A fitted :class:`~backprop_fast.sklearn.MLPClassifier` or
:class:`~backprop_fast.sklearn.MLPRegressor` is exported the same way, with
the few nodes that turn the network's output into ``predict_proba``'s
columns (both columns of a binary classifier) or ``predict``'s values.
:func:`register_skl2onnx` teaches skl2onnx to convert the estimators, alone
or inside a pipeline; both routes emit the same layer nodes (``_emit_layers``).

Running the file with onnxruntime gives the output of ``Network.predict``
(within 1e-5 in float32 and 1e-12 in float64, the difference between two
summation orders). ``onnx`` is an optional dependency: ``pip install
backprop_fast[onnx]`` installs it together with onnxruntime and skl2onnx.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, List, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from .network import Network

__all__ = ["to_onnx", "to_onnx_model", "register_skl2onnx", "OPSET", "INPUT_NAME",
           "OUTPUT_NAME"]

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
# The aliases under which register_skl2onnx files the estimators.
_SKL2ONNX_ALIASES = {"MLPClassifier": "BackpropFastMLPClassifier",
                    "MLPRegressor": "BackpropFastMLPRegressor"}


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:  # pragma: no cover - exercised without onnx installed
        raise ImportError(
            "ONNX export needs the 'onnx' package: pip install 'backprop_fast[onnx]' "
            f"(or pip install onnx onnxruntime); the import failed with: {exc}") from None
    return onnx, helper, numpy_helper


# ---------------------------------------------------------------- what is exported

def _unwrap(model: Any) -> Tuple["Network", str]:
    """The network inside ``model`` and what its output becomes.

    The second item is "network" (the output as it is), "binary" (one
    sigmoid unit p, exported as the columns 1 - p and p), "multiclass",
    "multilabel" (the units are the probabilities), "regression" or
    "poisson" (the unit holds the log of the mean).
    """
    from .network import Network

    if isinstance(model, Network):
        return model, "network"
    refusal = TypeError("expected a backprop_fast Network or a fitted backprop_fast.sklearn "
                        f"MLPClassifier/MLPRegressor, got {type(model).__name__}")
    try:
        from .sklearn import MLPClassifier, MLPRegressor
    except ImportError:  # without scikit-learn no estimator can exist
        raise refusal from None
    if not isinstance(model, (MLPClassifier, MLPRegressor)):
        raise refusal
    net = model.__dict__.get("network_")
    if net is None:
        from sklearn.exceptions import NotFittedError
        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet: call "
                             "fit before exporting it to ONNX.")
    if isinstance(model, MLPRegressor):
        return net, ("poisson" if model.out_activation_ == "exp" else "regression")
    y_type = model._label_binarizer.y_type_
    if y_type == "multiclass":
        return net, "multiclass"
    if model.n_outputs_ == 1:
        return net, "binary"
    return net, "multilabel"


def _parameters(net: "Network", dtype: np.dtype) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    # Copied under the network's lock: a fit in another thread is either
    # wholly in the export or not at all.
    with net._lock:
        weights = [np.array(W, dtype=dtype) for W in net.weights]
        biases = [np.array(b, dtype=dtype) for b in net.biases]
    for m, (W, b) in enumerate(zip(weights, biases)):
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"cannot export: weights[{m}] or biases[{m}] contain NaN "
                             "or infinity")
    return weights, biases


# ---------------------------------------------------------------- graph building

class _Graph:
    """Where nodes and constants go: a standalone model's lists, or the
    container of a skl2onnx conversion. The layers and the estimators' heads
    are written once, against this interface, for both."""

    def name(self, hint: str) -> str:
        raise NotImplementedError

    def constant(self, hint: str, array: np.ndarray) -> str:
        raise NotImplementedError

    def node(self, op_type: str, inputs: List[str], output: str, hint: str,
             **attrs: Any) -> None:
        raise NotImplementedError


class _ModelGraph(_Graph):
    """A standalone model: the hints are the names (they are unique already),
    so that the file's names stay W0, b0, z0, a0, ... as documented."""

    def __init__(self) -> None:
        _, self.helper, self.numpy_helper = _import_onnx()
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []

    def name(self, hint: str) -> str:
        return hint

    def constant(self, hint: str, array: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(array, hint))
        return hint

    def node(self, op_type, inputs, output, hint, **attrs):
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=hint, **attrs))


class _ConverterGraph(_Graph):
    """A skl2onnx conversion: names come from the scope, unique across the
    whole pipeline's graph."""

    def __init__(self, scope: Any, container: Any) -> None:
        self.scope = scope
        self.container = container

    def name(self, hint: str) -> str:
        return self.scope.get_unique_variable_name(hint)

    def constant(self, hint: str, array: np.ndarray) -> str:
        _, _, numpy_helper = _import_onnx()
        name = self.name(hint)
        tensor = numpy_helper.from_array(array, name)
        if array.dtype.kind in "OSU":
            # add_initializer copies a TensorProto's raw bytes only, where
            # strings are not kept: pass their values instead.
            self.container.add_initializer(name, tensor.data_type, list(array.shape),
                                           list(tensor.string_data))
        else:
            self.container.add_initializer(name, tensor.data_type, list(array.shape), tensor)
        return name

    def node(self, op_type, inputs, output, hint, **attrs):
        self.container.add_node(op_type, inputs, [output],
                                name=self.scope.get_unique_operator_name(hint), **attrs)


def _emit_layers(graph: _Graph, net: "Network", dtype: np.dtype, x: str, out: str) -> None:
    """The forward pass of ``net`` from ``x`` to ``out``, computed in ``dtype``."""
    weights, biases = _parameters(net, dtype)
    current = x
    last = len(weights) - 1
    for m, (W, b, act) in enumerate(zip(weights, biases, net.activations)):
        w_name = graph.constant(f"W{m}", W)
        b_name = graph.constant(f"b{m}", b)
        z_name = graph.name(f"z{m}")
        a_name = out if m == last else graph.name(f"a{m}")
        graph.node("Gemm", [current, w_name, b_name], z_name, f"dense{m}", transB=1)
        attrs = {"axis": 1} if act == "softmax" else {}
        graph.node(_OPS[act], [z_name], a_name, f"{act}{m}", **attrs)
        current = a_name


def _emit_head(graph: _Graph, kind: str, dtype: np.dtype, net_out: str, out: str) -> None:
    """``out`` = the estimator's output (predict_proba's columns, or predict's
    values as one column per target) from the network's output ``net_out``."""
    if kind == "binary":
        one = graph.constant("one", np.array(1, dtype=dtype))
        negative = graph.name("negative_proba")
        graph.node("Sub", [one, net_out], negative, "negative_proba")
        graph.node("Concat", [negative, net_out], out, "proba_columns", axis=1)
    elif kind == "poisson":
        # The unit holds the log of the mean, as in MLPRegressor.predict.
        graph.node("Exp", [net_out], out, "mean")
    else:
        graph.node("Identity", [net_out], out, "output")


# ---------------------------------------------------------------- standalone models

def to_onnx_model(model: Any) -> "onnx.ModelProto":
    """Build the ONNX model (an ``onnx.ModelProto``) of a network or fitted estimator.

    Parameters
    ----------
    model : Network, or fitted MLPClassifier or MLPRegressor
        What to export; its parameters are copied into the model. An
        estimator's graph ends in the values of its ``predict_proba``
        (classifier: one column per class, both columns for a binary target)
        or ``predict`` (regressor: shape (N,) for one target, (N, n_targets)
        otherwise).

    Returns
    -------
    onnx.ModelProto
        A checked model with one input ``"X"`` of shape (N, n_features) and
        one output ``"Y"``, both of the network's dtype.

    Raises
    ------
    ImportError
        If the onnx package is not installed.
    TypeError
        If ``model`` is neither a Network nor a backprop_fast estimator.
    sklearn.exceptions.NotFittedError
        If ``model`` is an estimator that has not been fitted.
    ValueError
        If the network's parameters are not all finite.
    """
    net, kind = _unwrap(model)
    onnx, helper, _ = _import_onnx()
    from . import __version__

    dtype = np.dtype(net.dtype)
    elem = {np.dtype(np.float32): onnx.TensorProto.FLOAT,
            np.dtype(np.float64): onnx.TensorProto.DOUBLE}[dtype]
    width = net.layer_sizes[-1]
    out_shape: List[Union[str, int]] = ["N", width]
    if kind == "binary":
        out_shape = ["N", 2]
    elif kind in ("regression", "poisson") and width == 1:
        out_shape = ["N"]

    graph = _ModelGraph()
    net_out = OUTPUT_NAME if kind == "network" else "network_output"
    _emit_layers(graph, net, dtype, INPUT_NAME, net_out)
    if kind != "network":
        head_out = OUTPUT_NAME if len(out_shape) == 2 else "predictions"
        _emit_head(graph, kind, dtype, net_out, head_out)
        if len(out_shape) == 1:
            # predict gives one target as a 1-D array; so does the model.
            flat = graph.constant("flat_shape", np.array([-1], dtype=np.int64))
            graph.node("Reshape", [head_out, flat], OUTPUT_NAME, "one_target")

    method = "predict" if kind in ("network", "regression", "poisson") else "predict_proba"
    onnx_graph = helper.make_graph(
        graph.nodes, f"backprop_fast.{type(model).__name__}",
        [helper.make_tensor_value_info(INPUT_NAME, elem, ["N", net.layer_sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, elem, out_shape)],
        initializer=graph.initializers,
        doc_string=(f"Dense network {net.layer_sizes}, activations {net.activations}, "
                    f"trained with loss {net.loss!r}; outputs are "
                    f"{type(model).__name__}.{method}'s."),
    )
    onnx_model = helper.make_model(
        onnx_graph, producer_name="backprop_fast", producer_version=__version__,
        opset_imports=[helper.make_opsetid("", OPSET)])
    onnx_model.ir_version = IR_VERSION
    props = {
        "layer_sizes": ",".join(map(str, net.layer_sizes)),
        "activations": ",".join(net.activations),
        "loss": net.loss,
        "dtype": dtype.name,
        "precision": net.precision,
    }
    if kind != "network":
        props["estimator"] = type(model).__name__
    helper.set_model_props(onnx_model, props)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def to_onnx(model: Any, path: Union[str, "os.PathLike[str]"]) -> None:
    """Write the forward pass of a network or fitted estimator to ``path`` as ONNX.

    Parameters
    ----------
    model : Network, or fitted MLPClassifier or MLPRegressor
        See :func:`to_onnx_model` for what an estimator's graph outputs.
    path : str or path-like
        Destination file (conventionally ``*.onnx``); written atomically.

    Raises
    ------
    ImportError
        If the onnx package is not installed.
    TypeError
        If ``model`` is neither a Network nor a backprop_fast estimator.
    sklearn.exceptions.NotFittedError
        If ``model`` is an estimator that has not been fitted.
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

    onnx_model = to_onnx_model(model)
    atomic_write_bytes(path, onnx_model.SerializeToString())


# ---------------------------------------------------------------- skl2onnx

def _class_labels(classes: np.ndarray) -> np.ndarray:
    """The classes as ONNX can hold labels: int64 or strings (as skl2onnx's
    own classifiers label them)."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        return classes.astype(np.int64)
    # scikit-learn takes float labels only where they are whole numbers.
    if classes.dtype.kind == "f" and np.all(classes == np.round(classes)):
        return classes.astype(np.int64)
    if classes.dtype.kind == "U" or all(isinstance(c, str) for c in classes):
        return np.array([str(c) for c in classes], dtype=object)
    raise ValueError(f"cannot export the class labels {classes!r} to ONNX, whose labels are "
                     "int64 or strings: fit on integer or string labels")


def _skl2onnx_types(operator: Any) -> Tuple[Any, np.dtype]:
    """The tensor type of the operator's float outputs, and the dtype the
    graph computes in: the input's, double or (for any other input) float."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    if isinstance(operator.inputs[0].type, DoubleTensorType):
        return DoubleTensorType, np.dtype(np.float64)
    return FloatTensorType, np.dtype(np.float32)


def _skl2onnx_shapes(operator: Any) -> None:
    """skl2onnx's shape calculator for the estimators: label and probabilities
    for a classifier, one column per target for a regressor."""
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType
    from skl2onnx.common.utils_classifier import get_label_classes

    est = operator.raw_operator
    net, kind = _unwrap(est)
    n_outputs = 1 if kind in ("regression", "poisson") else 2
    if len(operator.inputs) != 1 or len(operator.outputs) != n_outputs:
        raise RuntimeError(f"{type(est).__name__} takes 1 input and gives {n_outputs} "
                           f"output(s) in skl2onnx, got {len(operator.inputs)} and "
                           f"{len(operator.outputs)}")
    shape = operator.inputs[0].type.shape
    if len(shape) == 2 and isinstance(shape[1], int) and shape[1] != net.layer_sizes[0]:
        raise ValueError(f"{type(est).__name__} was fitted on {net.layer_sizes[0]} features, "
                         f"but its ONNX input has {shape[1]} columns")
    N = operator.inputs[0].get_first_dimension()
    tensor, _ = _skl2onnx_types(operator)
    if n_outputs == 1:
        operator.outputs[0].type = tensor([N, net.layer_sizes[-1]])
        return
    if kind == "multilabel":
        operator.outputs[0].type = Int64TensorType([N, net.layer_sizes[-1]])
        operator.outputs[1].type = tensor([N, net.layer_sizes[-1]])
        return
    labels = _class_labels(get_label_classes(operator.scope_inst, est))
    if len(labels) < 2:
        raise ValueError(f"{type(est).__name__} was fitted on one class; a classifier needs "
                         "two or more for an ONNX export")
    label_type = StringTensorType if labels.dtype == object else Int64TensorType
    operator.outputs[0].type = label_type([N])
    operator.outputs[1].type = tensor([N, len(labels)])


def _skl2onnx_convert(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx's converter for the estimators: the layers and the head of
    :func:`to_onnx_model`, then a classifier's labels from its probabilities."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from skl2onnx.common.utils_classifier import get_label_classes

    est = operator.raw_operator
    net, kind = _unwrap(est)
    _, dtype = _skl2onnx_types(operator)
    graph = _ConverterGraph(scope, container)
    x = operator.inputs[0].full_name
    if not isinstance(operator.inputs[0].type, (FloatTensorType, DoubleTensorType)):
        cast = graph.name("X_float")
        graph.node("Cast", [x], cast, "cast_input", to=TensorProto.FLOAT)
        x = cast
    net_out = graph.name("network_output")
    _emit_layers(graph, net, dtype, x, net_out)
    if kind in ("regression", "poisson"):
        _emit_head(graph, kind, dtype, net_out, operator.outputs[0].full_name)
        return
    label, proba = operator.outputs[0].full_name, operator.outputs[1].full_name
    _emit_head(graph, kind, dtype, net_out, proba)
    if kind == "multilabel":
        # predict's rule for label indicators: a label is on where its
        # probability exceeds one half.
        half = graph.constant("half", np.array(0.5, dtype=dtype))
        on = graph.name("label_on")
        graph.node("Greater", [proba, half], on, "label_on")
        graph.node("Cast", [on], label, "label_int64", to=TensorProto.INT64)
        return
    # predict's rule: the class of the largest column (the first on a tie;
    # for a binary target, the second class exactly where p > 0.5).
    classes = graph.constant("classes", _class_labels(get_label_classes(scope, est)))
    index = graph.name("class_index")
    graph.node("ArgMax", [proba], index, "class_index", axis=1, keepdims=0)
    graph.node("Gather", [classes, index], label, "class_label", axis=0)


def register_skl2onnx() -> None:
    """Register the estimators' converters with skl2onnx.

    After this call, ``skl2onnx.to_onnx`` (and ``convert_sklearn``) convert
    :class:`~backprop_fast.sklearn.MLPClassifier` and
    :class:`~backprop_fast.sklearn.MLPRegressor`, alone or as steps of a
    pipeline. A classifier gives a label and the probabilities, as
    skl2onnx's own classifiers do, and takes their ``zipmap`` and ``nocl``
    options (``options={"zipmap": False}`` gives the probabilities as one
    tensor); a regressor gives one column per target. The graph computes in
    the float type of its input. Calling it again changes nothing.

    Raises
    ------
    ImportError
        If skl2onnx or scikit-learn is not installed.
    """
    try:
        from skl2onnx import update_registered_converter
    except ImportError as exc:
        raise ImportError(
            "registering the skl2onnx converters needs the 'skl2onnx' package: pip install "
            f"'backprop_fast[onnx]' (or pip install skl2onnx); the import failed with: {exc}"
        ) from None
    from .sklearn import MLPClassifier, MLPRegressor

    update_registered_converter(
        MLPClassifier, _SKL2ONNX_ALIASES["MLPClassifier"], _skl2onnx_shapes, _skl2onnx_convert,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False]})
    update_registered_converter(
        MLPRegressor, _SKL2ONNX_ALIASES["MLPRegressor"], _skl2onnx_shapes, _skl2onnx_convert)
