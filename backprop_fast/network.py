"""The ``Network`` class: validation, parameter ownership and the calls into the kernel."""
import json
import numbers
import os
import tempfile
import threading
import zipfile

import numpy as np

from . import _kernel

__all__ = ["Network", "History", "DivergenceError"]

ACTIVATIONS = {"sigmoid": 0, "tanh": 1, "relu": 2, "identity": 3, "softmax": 4}
LOSSES = {"squared_error": 0, "cross_entropy": 1}
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
FORMAT_VERSION = 1

# Rows per kernel call in predict/evaluate: bounds the workspace for large X.
_CHUNK_ELEMENTS = 1 << 20


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost or parameter and was stopped."""


class History:
    """Per-epoch figures of one ``fit`` call.

    Attributes
    ----------
    loss : list of float
        Mean training cost of each epoch: the mean over all samples of the
        cost their minibatch had before its step.
    """

    def __init__(self, loss=None):
        self.loss = list(loss) if loss is not None else []

    def __len__(self):
        return len(self.loss)

    def __repr__(self):
        return f"History(epochs={len(self.loss)}, loss={self.loss[-1:] or None})"


def _check_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_rate(value, name="learning_rate"):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _numeric_array(data, name):
    """``data`` as a real numeric array (not yet converted), or a clear error."""
    if data is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    try:
        arr = np.asarray(data)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{name} must be a rectangular array of numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers, got an array of dtype {arr.dtype}"
            + (" (complex values are not supported)" if arr.dtype.kind == "c" else ""))
    return arr


def _check_finite(arr, name):
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); "
                         "remove or impute them before training")


class Network:
    """A dense feed-forward network trained by backpropagation.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths of the layers, input first; at least two entries, each >= 1.
    activations : str or sequence of str, default "sigmoid"
        One name for every layer, or one per layer (``len(layer_sizes) - 1``):
        "sigmoid", "tanh", "relu", "identity", or "softmax" (last layer only).
    loss : {"cross_entropy", "squared_error"}, default "cross_entropy"
        cross_entropy needs a sigmoid output (binary cross-entropy per unit)
        or a softmax output (categorical cross-entropy).
    dtype : {"float64", "float32"} or numpy dtype, default "float64"
        Precision of the parameters and of all computation.
    seed : int or None
        Seeds the initial weights and the shuffling; the same seed, data and
        settings give bit-identical results.

    Attributes
    ----------
    weights : list of ndarray
        ``weights[m]`` has shape (layer_sizes[m+1], layer_sizes[m]). These are
        writable views of the parameters the kernel trains.
    biases : list of ndarray
        ``biases[m]`` has shape (layer_sizes[m+1],), also writable views.

    Notes
    -----
    Weights start Glorot-uniform (bound sqrt(6 / (fan_in + fan_out)), with
    factor 2 instead of 6 for sigmoid layers as scikit-learn does), He-uniform
    (sqrt(6 / fan_in)) for ReLU layers; biases are drawn the same way.
    """

    def __init__(self, layer_sizes, activations="sigmoid", loss="cross_entropy",
                 *, dtype="float64", seed=None):
        self.layer_sizes = self._check_sizes(layer_sizes)
        n_layers = len(self.layer_sizes) - 1
        self.activations = self._check_activations(activations, n_layers)
        self.loss = self._check_loss(loss, self.activations[-1])
        self.dtype = self._check_dtype(dtype)
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
        self._rng = np.random.default_rng(seed)
        self._sizes = np.array(self.layer_sizes, dtype=np.intp)
        self._acts = np.array([ACTIVATIONS[a] for a in self.activations], dtype=np.intc)
        n_params = sum(o * (i + 1) for i, o in zip(self.layer_sizes, self.layer_sizes[1:]))
        self._params = np.empty(n_params, dtype=self.dtype)
        self._make_views()
        self._initialise()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ validation

    @staticmethod
    def _check_sizes(layer_sizes):
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
            raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}")
        sizes = list(layer_sizes)
        if len(sizes) < 2:
            raise ValueError("layer_sizes needs at least 2 entries (input and output "
                             f"widths), got {sizes!r}")
        out = []
        for i, s in enumerate(sizes):
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
                raise TypeError(f"layer_sizes[{i}] must be an int, got "
                                f"{type(s).__name__} {s!r}")
            if s < 1:
                raise ValueError(f"layer_sizes[{i}] must be >= 1, got {s}")
            out.append(int(s))
        return out

    @staticmethod
    def _check_activations(activations, n_layers):
        if isinstance(activations, str):
            names = [activations] * n_layers
        else:
            try:
                names = list(activations)
            except TypeError:
                raise TypeError("activations must be a name or a list of names, got "
                                f"{activations!r}") from None
            if len(names) != n_layers:
                raise ValueError(f"activations must have one name per layer "
                                 f"({n_layers}), got {len(names)}: {names!r}")
        for i, a in enumerate(names):
            if not isinstance(a, str) or a not in ACTIVATIONS:
                raise ValueError(f"activations[{i}] = {a!r} is not one of "
                                 f"{sorted(ACTIVATIONS)}")
        if "softmax" in names[:-1]:
            if isinstance(activations, str):
                raise ValueError('activations="softmax" can only be used for the last '
                                 'layer; give a list such as ["tanh", "softmax"]')
            raise ValueError("activations: softmax is only allowed on the last layer, got "
                             f"{names!r}")
        return names

    @staticmethod
    def _check_loss(loss, output):
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss = {loss!r} is not one of {sorted(LOSSES)}")
        if loss == "cross_entropy" and output not in ("sigmoid", "softmax"):
            raise ValueError(f'loss="cross_entropy" needs a sigmoid or softmax output '
                             f'layer, got {output!r}; use loss="squared_error" or change '
                             f"the last activation")
        return loss

    @staticmethod
    def _check_dtype(dtype):
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
        if dt not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dt}")
        return dt

    def _check_X(self, X, name="X"):
        """X as a C-contiguous (n, n_features) array of the network's dtype."""
        arr = _numeric_array(X, name)
        single = arr.ndim == 1
        if single:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, {self.layer_sizes[0]}) or "
                             f"1-D for one sample, got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty: shape {arr.shape}; at least one sample "
                             "is needed")
        if arr.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"{name} has {arr.shape[1]} features per sample, but the "
                             f"network expects {self.layer_sizes[0]} (layer_sizes[0]); "
                             f"got shape {arr.shape}")
        return self._convert(arr, name), single

    def _check_y(self, y, n, single):
        """y as a C-contiguous (n, n_outputs) array of the network's dtype."""
        arr = _numeric_array(y, "y")
        n_out = self.layer_sizes[-1]
        output = self.activations[-1]
        if arr.ndim == 1 and output == "softmax" and arr.dtype.kind in "iu" and n_out > 1:
            if arr.shape[0] != n:
                raise ValueError(f"y has {arr.shape[0]} labels but X has {n} samples")
            if arr.size and (arr.min() < 0 or arr.max() >= n_out):
                raise ValueError(f"y holds class labels outside 0..{n_out - 1}: "
                                 f"min {arr.min()}, max {arr.max()}")
            onehot = np.zeros((n, n_out), dtype=self.dtype)
            onehot[np.arange(n), arr] = 1
            return onehot
        if arr.ndim == 1:
            if n_out == 1:
                arr = arr.reshape(-1, 1)
            elif single and arr.shape[0] == n_out:
                arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape != (n, n_out):
            hint = (" (1-D integer labels are accepted for a softmax output)"
                    if output == "softmax" else "")
            raise ValueError(f"y must have shape ({n}, {n_out}) to match X and the "
                             f"output layer, got shape {np.shape(y)}{hint}")
        out = self._convert(arr, "y")
        if self.loss == "cross_entropy" and out.size and (out.min() < 0 or out.max() > 1):
            raise ValueError("y must lie in [0, 1] for cross_entropy (targets are "
                             f"probabilities), got values in [{out.min()}, {out.max()}]")
        return out

    def _convert(self, arr, name):
        """A C-contiguous copy (or view) of arr in the network's dtype, all finite."""
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(arr, dtype=self.dtype)
        if not np.isfinite(out).all():
            _check_finite(arr, name)
            raise ValueError(f"{name} has values too large for {self.dtype} "
                             f"(largest magnitude {np.max(np.abs(arr)):g})")
        return out

    def _check_params_finite(self):
        if not np.isfinite(self._params).all():
            raise ValueError("the network's weights or biases contain NaN or infinity; "
                             "set them to finite values (or create a new Network)")

    # ------------------------------------------------------------ parameters

    def _make_views(self):
        self._weights, self._biases = [], []
        off = 0
        for n_in, n_out in zip(self.layer_sizes, self.layer_sizes[1:]):
            self._weights.append(self._params[off:off + n_out * n_in].reshape(n_out, n_in))
            off += n_out * n_in
            self._biases.append(self._params[off:off + n_out])
            off += n_out

    def _initialise(self):
        for W, b, act in zip(self._weights, self._biases, self.activations):
            n_out, n_in = W.shape
            if act == "relu":
                bound = np.sqrt(6.0 / n_in)
            else:
                bound = np.sqrt((2.0 if act == "sigmoid" else 6.0) / (n_in + n_out))
            W[...] = self._rng.uniform(-bound, bound, size=W.shape)
            b[...] = self._rng.uniform(-bound, bound, size=b.shape)

    @property
    def weights(self):
        return list(self._weights)

    @property
    def biases(self):
        return list(self._biases)

    @property
    def n_parameters(self):
        """Total number of weights and biases."""
        return self._params.size

    # ------------------------------------------------------------ kernel calls

    def _workspace(self, rows):
        size = _kernel.workspace_size(self._sizes, self._acts, rows)
        return np.empty(size, dtype=self.dtype), np.empty(max(self.layer_sizes[1:]))

    def _chunk_rows(self, n):
        return max(1, min(n, _CHUNK_ELEMENTS // sum(self.layer_sizes)))

    def predict(self, X):
        """Output activations for the samples in X.

        Parameters
        ----------
        X : array_like, shape (n_samples, layer_sizes[0]) or (layer_sizes[0],)

        Returns
        -------
        ndarray, shape (n_samples, layer_sizes[-1]), or (layer_sizes[-1],) for a 1-D X.
        """
        X, single = self._check_X(X)
        out = np.empty((X.shape[0], self.layer_sizes[-1]), dtype=self.dtype)
        rows = self._chunk_rows(X.shape[0])
        work, _ = self._workspace(rows)
        with self._lock:
            _kernel.predict(self._params, self._sizes, self._acts, X, out, work, rows)
        return out[0] if single else out

    def evaluate(self, X, y):
        """Mean over the samples of the per-sample cost.

        Parameters
        ----------
        X : array_like, shape (n_samples, layer_sizes[0])
        y : array_like, shape (n_samples, layer_sizes[-1]); 1-D for one output
            unit, or integer class labels for a softmax output.

        Returns
        -------
        float
        """
        X, single = self._check_X(X)
        Y = self._check_y(y, X.shape[0], single)
        rows = self._chunk_rows(X.shape[0])
        work, bsum = self._workspace(rows)
        with self._lock:
            total = _kernel.evaluate(self._params, self._sizes, self._acts,
                                     LOSSES[self.loss], X, Y, work, bsum, rows)
        return total / X.shape[0]

    def gradients(self, X, y):
        """Gradient of ``evaluate(X, y)`` with respect to every parameter.

        Returns
        -------
        dW, db : lists of ndarray shaped like ``weights`` and ``biases``.
        """
        X, single = self._check_X(X)
        Y = self._check_y(y, X.shape[0], single)
        grad = np.empty_like(self._params)
        work, bsum = self._workspace(X.shape[0])
        with self._lock:
            _kernel.gradients(self._params, self._sizes, self._acts, LOSSES[self.loss],
                              X, Y, grad, work, bsum)
        dW, db, off = [], [], 0
        for W in self._weights:
            n_out, n_in = W.shape
            dW.append(grad[off:off + n_out * n_in].reshape(n_out, n_in))
            off += n_out * n_in
            db.append(grad[off:off + n_out])
            off += n_out
        return dW, db

    def train_step(self, X, y, learning_rate):
        """One gradient-descent step on the batch (X, y).

        Returns
        -------
        float
            The batch's mean cost before the step.
        """
        return self.fit(X, y, epochs=1, batch_size=None, learning_rate=learning_rate,
                        shuffle=False).loss[0]

    def fit(self, X, y, *, epochs, batch_size=None, learning_rate=0.1, shuffle=True):
        """Train by minibatch gradient descent, all epochs in one native call.

        Parameters
        ----------
        X : array_like, shape (n_samples, layer_sizes[0])
        y : array_like, shape (n_samples, layer_sizes[-1]); 1-D for one output
            unit, or integer class labels for a softmax output.
        epochs : int
            Passes over the data (0 does nothing).
        batch_size : int or None
            Samples per step; None uses the whole set (full-batch descent), 1
            is online SGD. A last, smaller batch takes the remainder.
        learning_rate : float
        shuffle : bool
            Visit the samples in a new random order each epoch (seeded by the
            network's seed); False takes them in order.

        Returns
        -------
        History
            ``history.loss[e]``: mean training cost of epoch e.

        Raises
        ------
        DivergenceError
            If the cost or a parameter becomes non-finite. The network keeps
            the last finite parameters.
        """
        epochs = _check_int(epochs, "epochs", 0)
        if batch_size is not None:
            batch_size = _check_int(batch_size, "batch_size", 1)
        rate = _check_rate(learning_rate)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        X, single = self._check_X(X)
        Y = self._check_y(y, X.shape[0], single)
        n = X.shape[0]
        batch = n if batch_size is None else min(batch_size, n)
        if epochs == 0:
            return History()
        work, bsum = self._workspace(batch)
        order = np.empty(n, dtype=np.intp)
        losses = np.empty(epochs)
        with self._lock:
            self._check_params_finite()
            snapshot = np.empty_like(self._params)
            seed = int(self._rng.integers(0, 2**63))
            status, done = _kernel.fit(
                self._params, self._sizes, self._acts, LOSSES[self.loss], X, Y,
                epochs, batch, rate, bool(shuffle), seed, order, work, bsum,
                snapshot, losses)
        if status != 0:
            what = "the cost" if status == 1 else "a parameter"
            raise DivergenceError(
                f"training diverged in epoch {done + 1}: {what} became NaN or infinite "
                f"at learning_rate={rate:g}. The network keeps its last finite "
                "parameters. Try a smaller learning_rate, scale the inputs to unit "
                "range, or use a larger batch_size.")
        return History(losses[:done].tolist())

    # ------------------------------------------------------------ persistence

    def save(self, path):
        """Write the network to ``path`` (an .npz file, written atomically).

        The file holds the parameters and a JSON description; it is read
        without pickle by ``Network.load``.
        """
        meta = {
            "format": "backprop_fast.Network",
            "format_version": FORMAT_VERSION,
            "layer_sizes": self.layer_sizes,
            "activations": self.activations,
            "loss": self.loss,
            "dtype": self.dtype.name,
        }
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".backprop_fast-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), params=self._params)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path):
        """Read a network written by ``save``.

        Raises
        ------
        ValueError
            If the file is not a backprop_fast model, is truncated or corrupt,
            or describes an inconsistent network.
        """
        path = os.fspath(path)
        what = f"{path!r} is not a readable backprop_fast model file"
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError(f"{what}: it holds a single array, not an .npz archive")
            with data:
                if set(data.files) != {"meta", "params"}:
                    raise ValueError(f"{what}: it holds arrays {sorted(data.files)}")
                meta = json.loads(str(data["meta"][()]))
                params = data["params"]
        except (zipfile.BadZipFile, EOFError, OSError, KeyError, UnicodeDecodeError,
                json.JSONDecodeError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{what}: {exc}") from None
        except ValueError as exc:
            if str(exc).startswith(what):
                raise
            raise ValueError(f"{what}: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != "backprop_fast.Network":
            raise ValueError(f"{what}: no backprop_fast metadata")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{path!r} uses model format version {version!r}; this "
                             f"backprop_fast reads versions up to {FORMAT_VERSION}. "
                             "Upgrade backprop_fast to load it.")
        try:
            net = cls(meta["layer_sizes"], meta["activations"], meta["loss"],
                      dtype=meta["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{what}: invalid description: {exc}") from None
        if params.dtype != net.dtype or params.shape != net._params.shape:
            raise ValueError(f"{what}: parameters of dtype {params.dtype} and shape "
                             f"{params.shape} do not match the described network "
                             f"({net.dtype}, {net._params.shape})")
        net._params[...] = params
        return net

    def __repr__(self):
        return (f"Network({self.layer_sizes}, activations={self.activations}, "
                f"loss={self.loss!r}, dtype={self.dtype.name!r})")
