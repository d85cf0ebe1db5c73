"""scikit-learn estimators backed by ``backprop_fast.Network``.

:class:`MLPClassifier` and :class:`MLPRegressor` take scikit-learn's
parameter names (those of ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor``) and keep its semantics where they overlap: the same
defaults, output layers and losses, the same stopping rule (``tol`` and
``n_iter_no_change`` on the training cost, or on the validation score with
``early_stopping``), the same learning-rate schedules (``invscaling``,
``adaptive``), the same fitted attributes (``coefs_`` in scikit-learn's layout
(n_in, n_out)). They add ``dtype``, ``class_weight`` and one activation per
hidden layer.

Training runs in backprop_fast's kernel, a whole fit of the stochastic
solvers in one native call (``Network.fit(stopping="sklearn")`` applies the
schedule and the stopping rule inside its epoch loop); ``solver="lbfgs"`` runs
SciPy's L-BFGS-B on the kernel's cost and gradient. scikit-learn is an
optional dependency: ``pip install backprop_fast[sklearn]``.
"""
from __future__ import annotations

import inspect
import math
import threading
import warnings
from itertools import compress
from operator import is_not
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning, NotFittedError
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - exercised without scikit-learn
    raise ImportError(
        "backprop_fast.sklearn needs scikit-learn >= 1.6: pip install "
        f"'backprop_fast[sklearn]' (the import failed with: {exc})") from None

from . import _checks
from ._checks import _is_int, _is_real
from ._cluster import LostWorkError
from ._kernels import kernel as _kernel
from .network import (
    _FIT_DEFAULTS,
    DivergenceError,
    Network,
    PathLike,
    StoppingState,
    _one_hot,
    _run_fits,
)

__all__ = ["MLPClassifier", "MLPRegressor", "MLPClassifierCV", "MLPRegressorCV",
           "MLPEnsembleClassifier", "MLPEnsembleRegressor", "LostWorkError"]

_SOLVERS = ("sgd", "adam", "lbfgs")
_SCHEDULES = ("constant", "invscaling", "adaptive")
# scikit-learn's activation names and ours.
_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "sigmoid": "sigmoid",
           "tanh": "tanh", "relu": "relu"}
_SKLEARN_NAME = {"sigmoid": "logistic", "softmax": "softmax", "identity": "identity"}


# ---------------------------------------------------------------- parameter checks

def _check_real(est, name, low, high=None, low_open=False, high_open=False):
    value = getattr(est, name)
    # A plain float in range passes on the comparisons alone (NaN fails them).
    if (type(value) is float and (low < value or low == value and not low_open)
            and (value < math.inf if high is None
                 else value < high or value == high and not high_open)):
        return value
    return _checks._check_real(value, name, low, high, low_open, high_open)


_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _plain(X) -> bool:
    """Whether X is a plain, non-empty, C-contiguous 2-D float array of
    finite values: one that scikit-learn's validation would pass unchanged,
    and which takes the fast path past it. Anything else takes the full
    path."""
    return (type(X) is np.ndarray and X.ndim == 2 and X.dtype in _FLOATS
            and X.flags.c_contiguous and X.size > 0 and _kernel.finite_rows(X, False))


def _all_finite(a) -> bool:
    """Whether the float array ``a`` (1-D or 2-D) holds finite values only:
    one pass in the kernel where it is C-contiguous (NumPy's reductions cost
    more in dispatch than a small array in arithmetic)."""
    if a.flags.c_contiguous:
        return _kernel.finite_rows(a.reshape(a.shape[0], -1), False)
    return bool(np.isfinite(a).all())


def _exact_int64(dtype) -> bool:
    """Whether values of the integer ``dtype`` convert to int64 exactly:
    every integer type but uint64."""
    return dtype.kind == "i" or dtype.kind == "u" and dtype.itemsize < 8


def _label_codes(y):
    """``np.unique(y, return_inverse=True)`` of 1-D integer labels: for
    labels 0..k-1 that all occur, y's own values (one pass in the kernel,
    and no sort); else np.unique itself."""
    if _exact_int64(y.dtype):
        k = _kernel.dense_labels(np.ascontiguousarray(y, dtype=np.int64))
        if k:
            return np.arange(k, dtype=y.dtype), y
    return np.unique(y, return_inverse=True)


def _refuse_masked(value, name):
    """Masked arrays are refused: converting one drops its mask, and the
    masked entries would be trained on."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; masks are not supported: drop or "
                        "impute the masked entries and pass a plain array")


def _check_bool(est, name):
    return _checks._check_bool(getattr(est, name), name)


def _check_choice(est, name, choices):
    return _checks._check_choice(getattr(est, name), name, choices)


_DEFAULTS: Dict[type, Tuple[Any, ...]] = {}


def _check_batch_size(est, name):
    value = est.batch_size
    if not (isinstance(value, str) and value == "auto") and (not _is_int(value) or value < 1):
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {value!r}")


def _check_count(est, name):
    value = getattr(est, name)
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_patience(est, name):
    n = est.n_iter_no_change
    if not ((_is_int(n) and n >= 1) or (_is_real(n) and n == np.inf)):
        raise ValueError(f"n_iter_no_change must be an integer >= 1 or np.inf, got {n!r}")


def _check_unit(est, name):
    _check_real(est, name, 0, 1, high_open=True)


def _check_positive(est, name):
    _check_real(est, name, 0, low_open=True)


def _check_non_negative(est, name):
    _check_real(est, name, 0)


# The parameters that _check_params checks one by one, and their checks.
_CHECKS: Dict[str, Any] = {
    "solver": lambda est, name: _check_choice(est, name, _SOLVERS),
    "alpha": _check_non_negative,
    "batch_size": _check_batch_size,
    "learning_rate": lambda est, name: _check_choice(est, name, _SCHEDULES),
    "learning_rate_init": _check_positive,
    "power_t": _check_non_negative,
    "max_iter": _check_count,
    "shuffle": _check_bool,
    "tol": _check_non_negative,
    "warm_start": _check_bool,
    "momentum": _check_unit,
    "nesterovs_momentum": _check_bool,
    "early_stopping": _check_bool,
    "validation_fraction": _check_unit,
    "beta_1": _check_unit,
    "beta_2": _check_unit,
    "epsilon": _check_positive,
    "n_iter_no_change": _check_patience,
    "max_fun": _check_count,
}


def _signature_defaults(cls) -> Tuple[Any, ...]:
    """The default of each parameter of _CHECKS in ``cls.__init__``, in
    _CHECKS's order, where that __init__ is this package's own (whose
    defaults are valid); a value no parameter holds where it has none."""
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        params = (inspect.signature(cls.__init__).parameters
                  if cls.__init__.__module__.startswith("backprop_fast.") else {})
        defaults = _DEFAULTS[cls] = tuple(
            params[name].default if name in params else _DEFAULTS for name in _CHECKS)
    return defaults


_PARAM_NAMES: Dict[type, Tuple[str, ...]] = {}


class _ParamNamesOnce:
    """scikit-learn's ``get_params`` reads the constructor's signature anew at
    every call (twice in every ``clone``, once more in ``set_params``), which
    costs more than a small network's whole fit; a class's signature does not
    change, so its parameter names are read once per class."""

    @classmethod
    def _get_param_names(cls) -> List[str]:
        names = _PARAM_NAMES.get(cls)
        if names is None:
            names = _PARAM_NAMES[cls] = tuple(super()._get_param_names())  # type: ignore[misc]
        return list(names)


class _BaseMLP(_ParamNamesOnce, BaseEstimator):
    """What MLPClassifier and MLPRegressor share: parameters, checks, training."""

    # Fitted attributes (set by fit, not by __init__).
    network_: Network
    loss_: float
    loss_curve_: List[float]
    best_loss_: Any  # float, or None with early stopping
    validation_scores_: Optional[List[float]]
    best_validation_score_: Any  # float, or None without early stopping
    n_iter_: int
    t_: int

    def _check_solver(self) -> bool:
        """partial_fit exists for the stochastic solvers only (as in scikit-learn)."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype=None, n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads

    # ------------------------------------------------------------ checks

    def _check_params(self) -> None:
        """Validate the hyperparameters (at fit time, as scikit-learn requires)."""
        # A parameter that is still the very default object of the class's
        # signature (clone and get_params keep it so) is valid as it stands:
        # only the others are checked, as a short fit spends its time on checks.
        for name in compress(_CHECKS, map(is_not, map(self.__dict__.get, _CHECKS),
                                          _signature_defaults(type(self)))):
            _CHECKS[name](self, name)
        if self.dtype is not None and not (isinstance(self.dtype, str)
                                           and self.dtype == "mixed_bfloat16"):
            try:
                dt = np.dtype(self.dtype)
            except TypeError:
                dt = None
            if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise ValueError(f"dtype must be None, 'float32', 'float64' or "
                                 f"'mixed_bfloat16', got {self.dtype!r}")
        if self.early_stopping and self.validation_fraction == 0:
            raise ValueError("early_stopping=True needs validation_fraction > 0")
        if self.n_threads is not None and (not _is_int(self.n_threads) or self.n_threads < 1):
            raise ValueError(f"n_threads must be None or an integer >= 1, got "
                             f"{self.n_threads!r}")

    def _hidden(self) -> Tuple[List[int], List[str]]:
        """Hidden layer widths and our activation name for each (lists the
        caller must not change)."""
        sizes, act = self.hidden_layer_sizes, self.activation
        checked = self.__dict__.get("_hidden_checked")
        # The very objects an earlier fit checked, immutable: checked still.
        if checked is not None and checked[0] is sizes and checked[1] is act:
            return checked[2]
        result = self._check_hidden(sizes, act)
        if type(sizes) in (tuple, int) and type(act) is str:
            self._hidden_checked = (sizes, act, result)
        return result

    @staticmethod
    def _check_hidden(sizes, act) -> Tuple[List[int], List[str]]:
        if _is_int(sizes):
            sizes = [sizes]
        elif isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got "
                            f"{sizes!r}")
        sizes = list(sizes)
        for s in sizes:
            if not _is_int(s) or s < 1:
                raise ValueError(f"hidden_layer_sizes must hold integers >= 1, got {sizes!r}")
        names = [act] * len(sizes) if isinstance(act, str) else list(act)
        if not isinstance(act, str) and len(names) != len(sizes):
            raise ValueError(f"activation: give one name, or one per hidden layer "
                             f"({len(sizes)}), got {act!r}")
        for a in names:
            if not isinstance(a, str) or a not in _HIDDEN:
                raise ValueError(f"activation {a!r} is not one of "
                                 f"{', '.join(map(repr, sorted(_HIDDEN)))}")
        return [int(s) for s in sizes], [_HIDDEN[a] for a in names]

    def _validate_X(self, X, reset: bool) -> np.ndarray:
        _refuse_masked(X, "X")
        X = validate_data(self, X, accept_sparse=["csr", "csc"],
                          dtype=(np.float64, np.float32), reset=reset)
        return X

    @staticmethod
    def _as_kernel_X(X, dtype):
        """X in the network's dtype, converted once for all the epochs: a
        dense X C-contiguous, a sparse one CSR, its indices sorted (never
        densified), as Network takes them without another copy."""
        if not sp.issparse(X):
            return np.ascontiguousarray(X, dtype=dtype)
        X = X.tocsr().astype(dtype, copy=False)
        if not X.has_canonical_format:
            X = X.copy()  # the caller's matrix stays as it was
            X.sum_duplicates()
        return X

    def _net_dtype(self, X) -> Any:
        if isinstance(self.dtype, str) and self.dtype == "mixed_bfloat16":
            return self.dtype  # Network's policy name: float32 parameters
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return X.dtype if X.dtype == np.float32 else np.dtype(np.float64)

    def _sample_weight(self, sample_weight, X, y_raw) -> Optional[np.ndarray]:
        """Per-sample weights (with class weights folded in), or None if uniform."""
        n = X.shape[0]
        if sample_weight is not None:
            if np.isscalar(sample_weight):
                sample_weight = np.full(n, sample_weight, dtype=np.float64)
            sw = np.asarray(sample_weight)
            if sw.dtype.kind not in "biuf":
                raise TypeError(f"sample_weight must hold numbers, got dtype {sw.dtype}")
            sw = sw.astype(np.float64)
            if sw.ndim != 1 or sw.shape[0] != n:
                raise ValueError(f"sample_weight must have shape ({n},) to match X, got "
                                 f"shape {sw.shape}")
            if not np.isfinite(sw).all() or (sw < 0).any():
                raise ValueError("sample_weight must be finite and non-negative")
        else:
            sw = None
        class_weight = getattr(self, "class_weight", None)
        if class_weight is not None:
            cw = compute_sample_weight(class_weight, y_raw)
            sw = cw if sw is None else sw * cw
        if sw is None:
            return None
        if not sw.sum() > 0:
            raise ValueError("sample_weight (with class_weight) sums to zero: at least "
                             "one sample needs a non-zero weight")
        return sw

    # ------------------------------------------------------------ fitted views

    def _fitted_net(self) -> Network:
        net = self.__dict__.get("network_")
        if net is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; "
                                 "call fit first.")
        return net

    @property
    def coefs_(self) -> List[np.ndarray]:
        """Weights per layer in scikit-learn's layout (n_in, n_out): writable
        views of the network's parameters (``network_.weights[m].T``)."""
        return [W.T for W in self._fitted_net().weights]

    @coefs_.setter
    def coefs_(self, values):
        weights = self._fitted_net().weights
        if len(values) != len(weights):
            raise ValueError(f"coefs_ needs {len(weights)} arrays, got {len(values)}")
        for W, V in zip(weights, values):
            W[...] = np.asarray(V).T

    @property
    def intercepts_(self) -> List[np.ndarray]:
        """Biases per layer: writable views of the network's parameters."""
        return list(self._fitted_net().biases)

    @intercepts_.setter
    def intercepts_(self, values):
        biases = self._fitted_net().biases
        if len(values) != len(biases):
            raise ValueError(f"intercepts_ needs {len(biases)} arrays, got {len(values)}")
        for b, v in zip(biases, values):
            b[...] = v

    def to_onnx(self, path: PathLike) -> None:
        """Write the fitted estimator to ``path`` as an ONNX model (needs the
        ``onnx`` extra): input ``"X"``, output ``"Y"``, the values of
        ``predict_proba`` for a classifier (both columns for a binary target)
        and of ``predict`` for a regressor. See
        :func:`backprop_fast.onnx.to_onnx`; for pipelines,
        :func:`backprop_fast.onnx.register_skl2onnx`.
        """
        from .onnx import to_onnx
        to_onnx(self, path)

    # ------------------------------------------------------------ training

    def _output(self, y2d) -> Tuple[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fast_features(self, X, reset: bool) -> bool:
        """For the fast path of a plain X: with ``reset``, record what
        validate_data(reset=True) records about X, and return True; else
        whether validate_data(reset=False) would pass X without a word (the
        fit saw as many features, and no feature names)."""
        if reset:
            self.n_features_in_ = X.shape[1]
            self.__dict__.pop("feature_names_in_", None)
            return True
        return (X.shape[1] == self.__dict__.get("n_features_in_")
                and "feature_names_in_" not in self.__dict__)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        X, Y, y_raw, sw, rs = self._begin_fit(X, y, sample_weight, incremental)
        if self.solver == "lbfgs":
            # No minibatches: the shuffling seed stays unused.
            self.__dict__.pop("_unseeded", None)
            self._fit_lbfgs(X, np.ascontiguousarray(Y, dtype=self.network_.dtype), sw)
            if not all(np.isfinite(p).all() for p in self.network_.weights
                       + self.network_.biases):
                raise DivergenceError(_NONFINITE)
        else:
            self._run_stochastic(self._stochastic_job(X, Y, sw, incremental, rs))
        return self

    def _begin_fit(self, X, y, sample_weight, incremental):
        """Checks, validation and (on a first pass) a new network: what every
        fit does before it trains. Returns X in the network's dtype, the
        targets Y (2-D, as the output layer reads them, not yet in that
        dtype), the validated labels, the sample weights and the random
        stream the fit goes on drawing from."""
        self._check_params()
        _refuse_masked(X, "X")
        _refuse_masked(y, "y")
        _refuse_masked(sample_weight, "sample_weight")
        hidden, activations = self._hidden()
        first_pass = self.__dict__.get("network_") is None or (
            not self.warm_start and not incremental)
        X, y_raw, Y = self._validate_input(X, y, incremental, reset=first_pass)
        sw = self._sample_weight(sample_weight, X, y_raw)
        n_samples, n_features = X.shape
        layer_units = [n_features] + hidden + [Y.shape[1]]
        # The random stream is drawn from only for a new network, the
        # validation split and a network's first shuffling seed (in that order).
        rs = (_random_state(self.random_state)
              if first_pass or self.early_stopping or "_unseeded" in self.__dict__ else None)
        if first_pass:
            try:
                self._initialize(Y, layer_units, activations, self._net_dtype(X), rs)
            except MemoryError:
                n_params = sum((i + 1) * o for i, o in zip(layer_units, layer_units[1:]))
                raise ValueError(f"hidden_layer_sizes={self.hidden_layer_sizes!r}: a network "
                                 f"with layers {layer_units} has {n_params:,} parameters, "
                                 "more than fit in memory") from None
        elif tuple(self.network_.layer_sizes) != tuple(layer_units):
            raise ValueError(f"warm_start/partial_fit: the fitted network has layers "
                             f"{self.network_.layer_sizes}, but hidden_layer_sizes and the "
                             f"data now ask for {layer_units}; set warm_start=False to start "
                             "over")
        # A runtime setting: it follows set_params between calls.
        self.network_.n_threads = self.n_threads
        # One conversion here, for every call on the data that follows.
        X = self._as_kernel_X(X, self.network_.dtype)
        return X, Y, y_raw, sw, rs

    def _initialize(self, Y, layer_units, activations, dtype, rs) -> None:
        output, loss = self._output(Y)
        # scikit-learn's initialisation, drawn from the same stream in the same
        # order, so that the same random_state gives the same starting weights:
        # Glorot-uniform, factor 2 instead of 6 for logistic layers (the output
        # layer takes the factor of the last hidden layer), biases alike.
        factors = [2.0 if a == "sigmoid" else 6.0 for a in activations]
        factors.append(factors[-1] if factors else 6.0)
        # scikit-learn draws each layer's coefficients and then its
        # intercepts by rs.uniform(-bound, bound, shape), which computes
        # -bound + (bound - -bound) * u for the stream's next doubles u in
        # turn: one random_sample for all of them gives the same u, and the
        # same two roundings give the same values, without a call per array.
        sizes = [fan_in * fan_out + fan_out
                 for fan_in, fan_out in zip(layer_units, layer_units[1:])]
        draws = rs.random_sample(sum(sizes))
        weights, intercepts = [], []
        off = 0
        for fan_in, fan_out, factor, size in zip(layer_units, layer_units[1:], factors, sizes):
            bound = math.sqrt(factor / (fan_in + fan_out))  # as np.sqrt rounds it
            part = draws[off:off + size]
            part *= bound - -bound
            part += -bound
            weights.append(part[:fan_in * fan_out].reshape(fan_in, fan_out).T)
            intercepts.append(part[fan_in * fan_out:])
            off += size
        # The kernel's shuffling seed is drawn later, after the validation
        # split (_stochastic_job): the stream reaches the split as in
        # scikit-learn. The network of a previous fit lends this one its
        # checked architecture and its scratch buffers where they fit.
        self.network_ = Network._from_start(layer_units, activations + [output], loss, dtype,
                                            weights, intercepts, 0,
                                            like=self.__dict__.get("network_"))
        self._unseeded = True
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = "exp" if loss == "poisson" else _SKLEARN_NAME[output]
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._learning_rate = float(self.learning_rate_init)
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _fit_options(self, batch: int, mean_weight: float, sw) -> Dict[str, Any]:
        """Optimizer, regularisation and weights, as Network.fit keyword arguments.

        scikit-learn adds alpha * W / (sum of the batch's sample weights) to the
        gradient of each step: weight decay alpha / (batch * mean weight).
        """
        options: Dict[str, Any] = {"weight_decay": self.alpha / (batch * mean_weight),
                                   "sample_weight": sw}
        if self.solver == "sgd":
            options.update(optimizer="sgd", momentum=float(self.momentum),
                           nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        else:
            options.update(optimizer="adam", beta1=float(self.beta_1),
                           beta2=float(self.beta_2), epsilon=float(self.epsilon))
        return options

    def _stochastic_job(self, X, Y, sw, incremental, rs) -> "_StochasticJob":
        """Everything an sgd/adam fit passes to ``Network.fit``, and what
        ``_finish_stochastic`` needs afterwards: the whole fit short of the
        training, so that it can run alone (``_run_stochastic``) or with
        other estimators' fits in one ``fit_many`` call."""
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        if not incremental:
            # Each fit starts its schedule afresh (scikit-learn builds a new
            # optimizer); partial_fit continues it.
            self._learning_rate = float(self.learning_rate_init)
        early_stopping = self.early_stopping
        # A warm start may switch early stopping on or off: keep the records valid.
        if early_stopping:
            if self.validation_scores_ is None:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
        elif self.best_loss_ is None:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf
        rows = None
        options: Dict[str, Any] = {}
        if early_stopping:
            # scikit-learn stratifies on its binarised (boolean) target, so its
            # message for a class too small to split names the class 'True'.
            # The split is drawn on row numbers, which train_test_split
            # shuffles as it would shuffle the data: the training rows stay
            # rows of X, as fit_many takes them.
            stratify = Y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
            rows, val = train_test_split(np.arange(X.shape[0]), random_state=rs,
                                         test_size=self.validation_fraction, stratify=stratify)
            if val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            options["validation_data"] = (X[val], Y[val])
            options["validation_weight"] = None if sw is None else sw[val]
            options["validation_metric"] = "accuracy" if is_classifier(self) else "r2"
            if sw is not None:
                sw = sw[rows]
        if self.__dict__.pop("_unseeded", False):
            self.network_._reseed(rs.randint(_INT32_MAX))
        n_samples = X.shape[0] if rows is None else rows.shape[0]
        if self.batch_size == "auto":
            batch = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", stacklevel=4)
            batch = int(np.clip(self.batch_size, 1, n_samples))
        mean_weight = 1.0
        if sw is not None:
            mean_weight = float(sw.mean())
            sw = sw / mean_weight  # mean 1: the weighted mean cost sum(w c) / sum(w)
            if np.all(sw == 1.0):
                sw = None
        options.update(self._fit_options(batch, mean_weight, sw))
        scale = self._loss_scale()
        # The whole fit is one kernel call under scikit-learn's rules. Our
        # cost is scikit-learn's divided by ``scale``: so are the L2 term, the
        # best cost and the tolerance on it.
        state = StoppingState()
        state.best_loss = np.inf if self.best_loss_ is None else self.best_loss_ / scale
        state.best_score = (-np.inf if self.best_validation_score_ is None
                            else self.best_validation_score_)
        state.no_improvement_count = self._no_improvement_count
        state.samples_seen = self.t_
        state.learning_rate = self._learning_rate
        schedule = "constant"
        if self.solver == "sgd" and self.learning_rate != "constant":
            schedule = self.learning_rate
        verbose = None
        stuck = ""  # printed with verbose only
        if self.verbose:
            what = "Validation score" if early_stopping else "Training loss"
            stuck = (f"{what} did not improve more than tol={self.tol:f} for "
                     f"{self.n_iter_no_change} consecutive epochs.")
            verbose = _VerboseEpochs(scale, early_stopping, schedule == "adaptive", stuck)
            options["callbacks"] = [verbose]
        options.update(epochs=1 if incremental else self.max_iter, batch_size=batch,
                       learning_rate=float(self.learning_rate_init), shuffle=self.shuffle,
                       lr_schedule=schedule, power_t=float(self.power_t), stopping="sklearn",
                       tol=float(self.tol) if early_stopping else self.tol / scale,
                       n_iter_no_change=self.n_iter_no_change,
                       loss_penalty=0.5 * self.alpha / (n_samples * mean_weight),
                       stopping_state=state)
        return _StochasticJob(X, Y, rows, options, state, scale, n_samples, incremental,
                              verbose, schedule, stuck)

    def _run_stochastic(self, job: "_StochasticJob") -> None:
        """Train the job's network alone, and finish the estimator."""
        t_before = self.t_
        interrupted = False
        X, Y = (job.X, job.Y) if job.rows is None else (job.X[job.rows], job.Y[job.rows])
        net = self.network_
        try:
            # Network.fit's own path short of its History: the figures are
            # read off the kernel's array.
            run = net._prepare_fit(X, Y, **{**_FIT_DEFAULTS, **job.options})
            assert run is not None  # max_iter >= 1: epochs to train
            _run_fits([run], net._kernel_threads())
            error = run.error()
            if error is not None:
                raise error
            losses = run.figure("loss")
            scores = run.figure("val_score") if run.scored else []
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
            interrupted = True
            done = (job.state.samples_seen - t_before) // job.n_samples
            record = self.network_.history
            losses = record.loss[len(record.loss) - done:] if done else []
            scores = record.val_score[len(record.val_score) - done:] if done else []
        except DivergenceError as exc:
            raise DivergenceError(f"{_NONFINITE} ({exc})") from None
        self._finish_stochastic(job, losses, scores, interrupted)

    def _finish_stochastic(self, job: "_StochasticJob", losses, scores,
                           interrupted: bool) -> None:
        """The fitted attributes from the epochs the job's network trained."""
        state, scale = job.state, job.scale
        self.n_iter_ = len(losses)
        self.t_ = int(state.samples_seen)
        self.loss_curve_.extend(loss * scale for loss in losses)
        if losses:
            self.loss_ = self.loss_curve_[-1]
        self._no_improvement_count = state.no_improvement_count
        self._learning_rate = float(state.learning_rate)
        if self.early_stopping:
            assert self.validation_scores_ is not None
            self.validation_scores_.extend(scores)
            self.best_validation_score_ = state.best_score
        else:
            self.best_loss_ = state.best_loss * scale
        stopped = self._no_improvement_count > self.n_iter_no_change
        if job.verbose is not None:
            job.verbose.rate_now(self._learning_rate)
            if stopped:
                small = " Learning rate too small." if job.schedule == "adaptive" else ""
                print(f"{job.stuck}{small} Stopping.")
        if (not job.incremental and not interrupted and not stopped
                and self.n_iter_ == self.max_iter):
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=5)

    def _fit_lbfgs(self, X, Y, sw) -> None:
        from scipy.optimize import minimize

        net = self.network_
        params = net.weights + net.biases
        sizes = [p.size for p in params]
        bounds = np.cumsum([0] + sizes)
        n_eff = float(sw.sum()) if sw is not None else float(X.shape[0])
        alpha = float(self.alpha)
        if sw is not None and np.all(sw == sw[0]):
            sw = None  # equal weights: the unweighted cost and gradient
        curve: List[float] = []

        def loss_grad(theta):
            for p, lo, hi in zip(params, bounds[:-1], bounds[1:]):
                p[...] = theta[lo:hi].reshape(p.shape)
            loss = net.evaluate(X, Y, sample_weight=sw)
            dW, db = net.gradients(X, Y, sample_weight=sw)
            loss += 0.5 * alpha * _squared_norm(net.weights) / n_eff
            grads = [g + alpha * W / n_eff for g, W in zip(dW, net.weights)] + list(db)
            return loss, np.concatenate([g.ravel() for g in grads]).astype(np.float64)

        def record(intermediate_result):
            curve.append(float(intermediate_result.fun) * scale)

        scale = self._loss_scale()
        theta0 = np.concatenate([p.ravel() for p in params]).astype(np.float64)
        result = minimize(loss_grad, theta0, method="L-BFGS-B", jac=True, callback=record,
                          options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                   "gtol": self.tol})
        for p, lo, hi in zip(params, bounds[:-1], bounds[1:]):
            p[...] = result.x[lo:hi].reshape(p.shape)
        self.n_iter_ = int(result.nit)
        self.t_ += X.shape[0]
        self.loss_ = float(result.fun) * scale
        self.loss_curve_.extend(curve)
        if self.verbose:
            print(f"L-BFGS-B: {result.message} after {self.n_iter_} iterations, "
                  f"loss = {self.loss_:.8f}")
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}): {result.message}. Increase max_iter "
                          "(or max_fun) or scale the data.", ConvergenceWarning, stacklevel=4)

    def _loss_scale(self) -> float:
        return 1.0

    # ------------------------------------------------------------ prediction

    def _forward(self, X) -> np.ndarray:
        net = self.__dict__.get("network_")
        if (net is not None and type(X) is np.ndarray and X.ndim == 2
                and X.dtype in _FLOATS and X.shape[1] == self.n_features_in_
                and "feature_names_in_" not in self.__dict__):
            # The fast path: Network.predict checks such an array itself.
            # For a non-finite X, the full path below gives scikit-learn's
            # message.
            net.n_threads = self.__dict__.get("n_threads")
            try:
                return net.predict(X)
            except ValueError:
                pass
        check_is_fitted(self, "network_")
        X = self._validate_X(X, reset=False)
        self.network_.n_threads = self.__dict__.get("n_threads")
        return self.network_.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


# scikit-learn's message for a fit that produced non-finite parameters.
_NONFINITE = ("Solver produced non-finite parameter weights. The input data may contain "
              "large values and need to be preprocessed.")


class _StochasticJob:
    """One sgd/adam fit of an estimator, ready for ``Network.fit``.

    ``X`` and ``Y`` are the validated data (``Y`` in the targets' own dtype,
    which ``Network.fit`` converts); ``rows`` the rows trained on (None for
    all of them, else the training part of the early-stopping split);
    ``options`` the keyword arguments of ``Network.fit`` (epochs and
    ``sample_weight`` of the ``rows`` included). The rest is for
    ``_finish_stochastic``.
    """

    def __init__(self, X, Y, rows, options, state, scale, n_samples, incremental, verbose,
                 schedule, stuck) -> None:
        self.X = X
        self.Y = Y
        self.rows = rows
        self.options = options
        self.state = state
        self.scale = scale
        self.n_samples = n_samples
        self.incremental = incremental
        self.verbose = verbose
        self.schedule = schedule
        self.stuck = stuck


class _VerboseEpochs:
    """Network.fit callback printing scikit-learn's verbose lines per epoch.

    The "adaptive" schedule's lowered rate shows in the next epoch's figures,
    so its message is printed then (before that epoch's lines, where
    scikit-learn prints it too), or after the fit for the last epoch.
    """

    def __init__(self, scale: float, early_stopping: bool, adaptive: bool, stuck: str) -> None:
        self.scale = scale
        self.early_stopping = early_stopping
        self.adaptive = adaptive
        self.stuck = stuck
        self.rate: Optional[float] = None

    def rate_now(self, rate: float) -> None:
        if self.adaptive and self.rate is not None and rate < self.rate:
            print(f"{self.stuck} Setting learning rate to {rate:f}")
        self.rate = rate

    def __call__(self, epoch, logs) -> bool:
        self.rate_now(logs["learning_rate"])
        print(f"Iteration {epoch + 1}, loss = {logs['loss'] * self.scale:.8f}")
        if self.early_stopping:
            print(f"Validation score: {logs.get('val_score', np.nan):f}")
        return False


_spare = threading.local()

# np.iinfo(np.int32).max, the bound of scikit-learn's draw of a seed.
_INT32_MAX = 2**31 - 1


def _random_state(seed):
    """check_random_state, without its cost for an integer seed: a new
    RandomState seeds its generator from the operating system before the
    legacy seeding replaces that state, which costs more than a small fit.
    Each thread reseeds a RandomState of its own instead; a fit draws from
    it only while it prepares (the starting weights, the validation split,
    the shuffling seed), so the next fit in that thread may reseed it."""
    if _is_int(seed) and 0 <= seed < 2**32:
        rs = getattr(_spare, "rs", None)
        if rs is None:
            rs = _spare.rs = np.random.RandomState()
        rs.seed(int(seed))
        return rs
    return check_random_state(seed)


def _squared_norm(arrays) -> float:
    return float(sum(np.dot(a.ravel(), a.ravel()) for a in arrays))


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by backprop_fast's kernel.

    Binary targets get one sigmoid output unit, multi-class targets a softmax
    layer, multi-label targets (an indicator matrix) one sigmoid unit per
    label; the cost is cross-entropy. The parameters are scikit-learn's
    ``MLPClassifier``'s, plus ``dtype`` and ``class_weight``.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer; ``()`` for none.
    activation : str or sequence of str, default="relu"
        "identity", "logistic" (or "sigmoid"), "tanh" or "relu": one name for
        every hidden layer or one per hidden layer.
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        "sgd" and "adam" train by minibatches in the kernel; "lbfgs" runs
        SciPy's L-BFGS-B on the full-batch cost and gradient.
    alpha : float, default=0.0001
        L2 penalty, scaled as scikit-learn does: the gradient of each step
        gets ``alpha * W / batch_size``.
    batch_size : int or "auto", default="auto"
        Minibatch size; "auto" is ``min(200, n_samples)``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule for solver="sgd": invscaling sets the rate to
        ``learning_rate_init / (t + 1) ** power_t`` after each epoch (t the
        samples seen); adaptive divides it by 5 whenever the stopping rule
        would otherwise stop.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs (sgd, adam) or iterations (lbfgs).
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the shuffling and the validation split.
    tol : float, default=1e-4
    verbose : bool, default=False
        Print the cost after each epoch.
    warm_start : bool, default=False
        Continue from the previous fit's network (and optimizer state).
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified) and stop
        when its accuracy has not improved by ``tol`` for
        ``n_iter_no_change`` epochs; the best epoch's parameters are kept.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's coefficients.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        Cost evaluations allowed to lbfgs.
    dtype : {None, "float32", "float64", "mixed_bfloat16"}, default=None
        Precision of the network; None follows X (float32 stays float32).
        "mixed_bfloat16": float32 parameters, matrix products on
        bfloat16-rounded inputs (``Network``'s policy of that name).
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight``.
    n_threads : int or None, default=None
        The most threads the kernel may use for this estimator's network
        (``Network(n_threads=...)``); None for as many as OpenMP allows
        (``OMP_NUM_THREADS``, which a Dask worker sets to 1). Results are the
        same bits for any count. A runtime setting, read at each fit and
        predict.

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
    coefs_ : list of ndarray
        ``coefs_[m]`` has shape (n_in, n_out), scikit-learn's layout: views of
        ``network_.weights[m].T``.
    intercepts_ : list of ndarray
    loss_ : float
    loss_curve_ : list of float
        Training cost per epoch (cross-entropy, mean over samples).
    best_loss_ : float or None
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    t_ : int
        Training samples seen.
    n_iter_ : int
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
        "logistic" or "softmax", in scikit-learn's naming.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had column names.
    network_ : backprop_fast.Network
        The trained network (for ``save``, ``to_onnx`` and the like).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype=None, class_weight=None,
                 n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype, n_threads=n_threads)
        self.class_weight = class_weight

    def _validate_input(self, X, y, incremental, reset):
        fast = (type(y) is np.ndarray and y.ndim == 1 and y.dtype.kind in "iu"
                and _plain(X) and y.shape[0] == X.shape[0])
        if fast and (incremental or self.warm_start) and "classes_" in self.__dict__:
            # The fast path for integer labels of the classes a previous
            # call set: their codes among them, directly. Anything else
            # (labels outside them, other features) takes the full path,
            # which gives scikit-learn's messages.
            codes = self._fast_codes(y, every=not incremental)
            if codes is not None and self._fast_features(X, reset):
                k = self.classes_.size
                if k == 2:
                    return X, y, codes.reshape(-1, 1).astype(X.dtype)
                return X, y, _one_hot(codes, k, X.dtype)
        elif fast and reset:
            # The fast path for integer labels: the binariser gets what its
            # fit would find in them (without its checks), and the targets
            # are built directly.
            classes, codes = _label_codes(y)
            if classes.size >= 2:
                self._fast_features(X, True)
                lb = self._label_binarizer = LabelBinarizer()
                lb.y_type_ = "binary" if classes.size == 2 else "multiclass"
                lb.sparse_input_ = False
                lb.classes_ = classes
                self.classes_ = self._label_binarizer.classes_
                if classes.size == 2:
                    return X, y, codes.reshape(-1, 1).astype(X.dtype)
                return X, y, _one_hot(codes, classes.size, X.dtype)
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously "
                                     f"got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        Y = self._label_binarizer.transform(y)
        return X, y, (Y.reshape(-1, 1) if Y.ndim == 1 else Y)

    def _fast_codes(self, y, every: bool) -> Optional[np.ndarray]:
        """The codes (int64) of the integer labels y among ``classes_``, set
        from single labels (not multi-label) of an integer type; None where
        that is not so, where a label is not one of them or (``every``, as
        warm_start asks) where one of them does not occur in y."""
        classes = self.classes_
        lb = self.__dict__.get("_label_binarizer")
        if (type(classes) is not np.ndarray or not _exact_int64(classes.dtype)
                or not _exact_int64(y.dtype) or classes.size < 2 or lb is None
                or lb.y_type_ not in ("binary", "multiclass")):
            return None
        codes = np.empty(y.shape[0], dtype=np.int64)
        seen = _kernel.label_codes(np.ascontiguousarray(classes, dtype=np.int64),
                                   np.ascontiguousarray(y, dtype=np.int64), codes)
        if seen < 0 or every and seen != classes.size:
            return None
        return codes

    def _output(self, Y):
        multiclass = self._label_binarizer.y_type_ == "multiclass"
        return ("softmax" if multiclass else "sigmoid"), "cross_entropy"

    def fit(self, X: ArrayLike, y: ArrayLike,
            sample_weight: Optional[ArrayLike] = None) -> "MLPClassifier":
        """Fit the network to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a label indicator matrix (multi-label).
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None,
                    classes: Optional[ArrayLike] = None) -> "MLPClassifier":
        """One epoch over the given data, continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole stream: required on the first call,
            ignored afterwards.

        Returns
        -------
        self : MLPClassifier
        """
        if "classes_" not in self.__dict__:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.asarray(classes),
                                                        np.asarray(self.classes_)):
            raise ValueError(f"`classes={classes!r}` is not the same as on the first call "
                             f"to partial_fit, which was: {self.classes_!r}")
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted classes (or label indicator rows for multi-label targets).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_labels)
        """
        out = self._forward(X)
        y_type = self._label_binarizer.y_type_
        # LabelBinarizer.inverse_transform's rules, without its checks: the
        # largest output's class, or the class of a sigmoid output > 0.5.
        if y_type == "multiclass":
            return self.classes_.take(out.argmax(axis=1), mode="clip")
        if y_type == "binary" and self.n_outputs_ == 1 and len(self.classes_) == 2:
            return self.classes_[(out.ravel() > 0.5).astype(np.intp)]
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            For a binary target the two columns are 1 - p and p; for
            multi-label targets one independent probability per label.
        """
        out = self._forward(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None) -> float:
        """Mean accuracy of ``predict(X)`` against y (``accuracy_score``).

        Plain label arrays without weights are scored directly, without the
        scorer's input checks; anything else goes through scikit-learn's.
        """
        if (sample_weight is None and type(y) is np.ndarray and y.ndim == 1
                and type(X) is np.ndarray and X.ndim == 2 and 0 < y.shape[0] == X.shape[0]
                and "classes_" in self.__dict__ and y.dtype.kind in "iub"
                and y.dtype.kind == self.classes_.dtype.kind):
            pred = self.predict(X)
            if pred.ndim == 1:
                return np.count_nonzero(pred == y) / y.shape[0]  # as np.mean rounds it
        return float(super().score(X, y, sample_weight=sample_weight))

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Logarithm of ``predict_proba(X)``."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by backprop_fast's kernel.

    An identity output layer with one unit per target and the squared error
    cost, or with ``loss="poisson"`` an exponential output (a log link) and
    half the Poisson deviance, for targets y >= 0, as in scikit-learn. The
    parameters are scikit-learn's ``MLPRegressor``'s, plus ``dtype``; see
    :class:`MLPClassifier` for their meaning. Early stopping monitors the
    validation R^2.

    Attributes
    ----------
    loss_curve_ : list of float
        Training cost per epoch in scikit-learn's convention:
        ``0.5 * mean((y - prediction) ** 2)`` over samples and targets.
    coefs_, intercepts_, loss_, best_loss_, validation_scores_,
    best_validation_score_, t_, n_iter_, n_layers_, n_outputs_,
    out_activation_ ("identity", or "exp" for Poisson), n_features_in_,
    feature_names_in_, network_
        As for :class:`MLPClassifier`.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error",
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, dtype=None, n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dtype=dtype, n_threads=n_threads)
        self.loss = loss

    def _check_params(self) -> None:
        super()._check_params()
        _check_choice(self, "loss", ("squared_error", "poisson"))

    def _validate_input(self, X, y, incremental, reset):
        if (type(y) is np.ndarray and y.dtype in _FLOATS and _plain(X)
                and (y.ndim == 1 or y.ndim == 2 and y.shape[1] > 1)
                and y.shape[0] == X.shape[0] and _all_finite(y)
                and self._fast_features(X, reset)):
            return X, y, (y.reshape(-1, 1) if y.ndim == 1 else y)
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y, (y.reshape(-1, 1) if y.ndim == 1 else y)

    def _output(self, Y):
        # Poisson: an identity layer holding the log of the mean, which the
        # kernel's Poisson cost reads through exp (scikit-learn's "exp" output).
        return "identity", ("poisson" if self.loss == "poisson" else "squared_error")

    def _loss_scale(self) -> float:
        # Our per-sample cost sums over the targets; scikit-learn averages them.
        return 1.0 / self.n_outputs_

    def fit(self, X: ArrayLike, y: ArrayLike,
            sample_weight: Optional[ArrayLike] = None) -> "MLPRegressor":
        """Fit the network to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: Optional[ArrayLike] = None) -> "MLPRegressor":
        """One epoch over the given data, continuing from the current state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        out = self._forward(X)
        if self.out_activation_ == "exp":
            out = np.exp(out, out=out)
        return out.ravel() if out.shape[1] == 1 else out

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None) -> float:
        """Coefficient of determination R^2 of ``predict(X)`` (``r2_score``).

        A plain float target of one output without weights is scored
        directly, without the scorer's input checks, by r2_score's formula;
        anything else goes through scikit-learn's.
        """
        if (sample_weight is None and type(y) is np.ndarray and y.ndim == 1
                and y.dtype in _FLOATS and type(X) is np.ndarray and X.ndim == 2
                and 2 <= y.shape[0] == X.shape[0] and self.__dict__.get("n_outputs_") == 1):
            numerator, denominator = _kernel.r2_terms(
                np.ascontiguousarray(y, dtype=np.float64), self.predict(X))
            if math.isfinite(numerator):
                if denominator == 0:
                    return 1.0 if numerator == 0 else 0.0
                return 1.0 - numerator / denominator
        return float(super().score(X, y, sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags



# The search and the ensembles build on the estimators above: their module
# imports this one, so it is loaded on first use of one of their names.
if TYPE_CHECKING:
    from ._search import (
        MLPClassifierCV,
        MLPEnsembleClassifier,
        MLPEnsembleRegressor,
        MLPRegressorCV,
    )

_MANY = ("MLPClassifierCV", "MLPRegressorCV", "MLPEnsembleClassifier", "MLPEnsembleRegressor")


def __getattr__(name: str) -> Any:
    if name in _MANY:
        from . import _search
        return getattr(_search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_MANY))
