"""The ``Network`` class: validation, parameter ownership and the calls into the kernel."""
from __future__ import annotations

import collections.abc
import contextlib
import json
import math
import numbers
import os
import sys
import threading
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._checks import (
    _MAX_COUNT,
    _check_choice,
    _check_finite,
    _check_int,
    _check_rate,
    _check_real,
    _is_count,
    _normalise_weights,
    _numeric_array,
    _short,
)
from ._io import atomic_open
from ._kernels import kernel as _kernel
from .history import History, ProgressBar, StoppingState

__all__ = ["Network", "History", "DivergenceError", "ParameterList"]

PathLike = Union[str, "os.PathLike[str]"]
Callback = Callable[[int, Dict[str, float]], Any]

ACTIVATIONS = _kernel.ACTIVATION_CODES
LOSSES = _kernel.LOSS_CODES
OPTIMIZERS = _kernel.OPTIMIZER_CODES
_OPTIMIZER_NAMES = {code: name for name, code in OPTIMIZERS.items()}
# The arrays a saved file may hold.
_FILE_ARRAYS = {"meta", "params", "rng_state", "opt_m1", "opt_m2"}
SCHEDULES = _kernel.SCHEDULE_CODES
STOPPING = _kernel.STOPPING_CODES
VALIDATION_METRICS = _kernel.METRIC_CODES
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The precision policy that is not a NumPy dtype: float32 parameters, the
# matrix products' inputs rounded to bfloat16 (docs/numerics.md).
MIXED_BFLOAT16 = "mixed_bfloat16"
PRECISIONS = ("float32", "float64", MIXED_BFLOAT16)
FORMAT_VERSION = 1

# Rows per kernel call in predict/evaluate: bounds the workspace for large X.
_CHUNK_ELEMENTS = 1 << 20
# Fits whose scratch is at most this size have the kernel allocate it for
# the run: below the C library's threshold for fresh mappings, so it costs
# no page faults, where a kept array's new view costs more.
_OWN_SCRATCH_BYTES = 1 << 16


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a non-finite cost or parameter and was stopped.

    Also a ValueError, the class scikit-learn raises for a solver that
    produced non-finite weights.
    """


def _is_sparse(X) -> bool:
    """Whether X is a scipy.sparse matrix or array (scipy imported only if
    it is already loaded: nothing else can have made X)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


class _Csr:
    """A sparse X as the kernel takes it: CSR with int64 offsets and column
    indices, sorted within each row, no duplicates, finite values of the
    network's dtype. Rows are sliced (for validation_split) without
    densifying."""

    __slots__ = ("shape", "indptr", "indices", "data", "empty")

    def __init__(self, m, dtype, empty):
        self.shape = m.shape
        self.indptr = np.ascontiguousarray(m.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(m.indices, dtype=np.int64)
        self.data = np.ascontiguousarray(m.data, dtype=dtype)
        # The dense X the kernel is given alongside: no rows.
        self.empty = empty

    def arrays(self):
        return (self.indptr, self.indices, self.data)

    def __getitem__(self, rows: slice) -> "_Csr":
        start, stop, _ = rows.indices(self.shape[0])
        a, b = self.indptr[start], self.indptr[stop]
        out = _Csr.__new__(_Csr)
        out.shape = (stop - start, self.shape[1])
        out.indptr = self.indptr[start:stop + 1] - a
        out.indices = self.indices[a:b]
        out.data = self.data[a:b]
        out.empty = self.empty
        return out


def _one_hot(labels, k, dtype):
    """The (n, k) indicator rows, of ``dtype``, of integer labels in 0..k-1."""
    Y = np.empty((labels.shape[0], k), dtype=dtype)
    _kernel.one_hot(np.ascontiguousarray(labels, dtype=np.int64), Y)
    return Y


def _kernel_X(Xc):
    """(the dense X argument, the x_sparse argument) of a kernel call."""
    if isinstance(Xc, _Csr):
        return Xc.empty, Xc.arrays()
    return Xc, None


class ParameterList(collections.abc.Sequence):
    """The weights (or biases) of a network, one array per layer.

    A read-only sequence of writable views: ``net.weights[m][...] = W`` and
    ``net.weights[m] = W`` both copy ``W`` into the parameters the kernel
    trains (the second under the network's lock, after checking that ``W``
    has the layer's shape and finite values). The sequence itself has a
    fixed length: layers cannot be added, removed or replaced by other
    objects. ``+`` with another sequence gives a plain list.
    """

    __slots__ = ("_net", "_arrays", "_name")

    def __init__(self, net, arrays, name):
        self._net = net
        self._arrays = arrays
        self._name = name

    def __len__(self):
        return len(self._arrays)

    def __getitem__(self, index):
        # A fresh view each time: setting .shape or .dtype on what is returned
        # changes that view only, never the network's own.
        if isinstance(index, slice):
            return [arr.view() for arr in self._arrays[index]]
        return self._arrays[index].view()

    def __setitem__(self, index, value):
        if isinstance(index, slice) or isinstance(index, (bool, np.bool_)) or not isinstance(
                index, numbers.Integral):
            raise TypeError(f"{self._name}[{index!r}] = ...: give one layer's index")
        target = self._arrays[index]  # IndexError out of range, as a list
        name = f"{self._name}[{index}]"
        arr = _numeric_array(value, name)
        if arr.shape != target.shape:
            raise ValueError(f"{name} must have shape {target.shape}, got shape {arr.shape}")
        with np.errstate(over="ignore"):
            new = arr.astype(target.dtype)
        if not np.isfinite(new).all():
            raise ValueError(f"{name} must hold finite values representable in "
                             f"{target.dtype}")
        with self._net._lock:
            target[...] = new

    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __repr__(self):
        return f"ParameterList({list(self._arrays)!r})"


# Largest layer width: BLAS takes int dimensions.
_MAX_WIDTH = 2**31 - 1
# Largest JSON description read from a model file.
_MAX_META_BYTES = 1 << 24


def _npy_header(archive, info):
    """(shape, fortran_order, dtype) of one .npy member, reading only its header."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(fh)
        raise ValueError(f"member {info.filename!r} has .npy format version {version}")


def _read_npy(archive, info):
    with archive.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _check_metadata(metadata):
    """A dict of JSON values with str keys (as save stores and load returns
    it), or a TypeError/ValueError."""
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"metadata must be a dict with str keys, got {_short(metadata)}")
    try:
        json.dumps(metadata, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must hold JSON values (dict, list, str, number, bool, "
                        f"None): {exc}") from None
    return metadata


def _check_saved_state(meta):
    """Check the optimizer and history entries of a model file's description
    by type and range; a ValueError says which entry is wrong."""
    opt = meta.get("optimizer")
    if opt is not None:
        if not isinstance(opt, dict):
            raise ValueError(f"optimizer must be an object, got {_short(opt)}")
        name = opt.get("name")
        if name is not None and (not isinstance(name, str) or name not in OPTIMIZERS):
            raise ValueError(f"optimizer name {_short(name)} is not one of "
                             f"{sorted(OPTIMIZERS)}")
        step = opt.get("step", 0)
        if not _is_count(step):
            raise ValueError(f"optimizer step {_short(step)} is not a count in "
                             f"0..{_MAX_COUNT}")
    figures = meta.get("history")
    if figures is None:
        return
    if not isinstance(figures, dict):
        raise ValueError(f"history must be an object, got {_short(figures)}")
    lengths = {}
    for figure in History.FIGURES:
        values = figures.get(figure, [])
        # Numbers as JSON gives them: floats (NaN where not measured), no
        # booleans, no integers beyond a float's range.
        if not isinstance(values, list) or not all(
                type(v) is float and not math.isinf(v)
                or type(v) is int and abs(v) <= 2**53 for v in values):
            raise ValueError(f"history.{figure} is not a list of finite numbers or NaN")
        lengths[figure] = len(values)
    epochs = lengths["loss"]
    for figure, length in lengths.items():
        # Validation figures exist for the epochs of fits that had validation data.
        if length > epochs or length < epochs and not figure.startswith("val_"):
            raise ValueError(f"history.{figure} has {length} entries for {epochs} epochs")


def _read_model_archive(archive, what):
    """The description and arrays of a model file, checked header by header."""
    members = {}
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        if name not in _FILE_ARRAYS:
            raise ValueError(f"{what}: it holds a member {info.filename!r}")
        members[name] = info
    if not {"meta", "params", "rng_state"} <= set(members):
        raise ValueError(f"{what}: it holds arrays {sorted(members)}")
    shape, _, dtype = _npy_header(archive, members["meta"])
    if shape != () or dtype.kind != "U" or dtype.itemsize > _MAX_META_BYTES:
        raise ValueError(f"{what}: its description is not a JSON string")
    meta = json.loads(str(_read_npy(archive, members["meta"])[()]))
    if not isinstance(meta, dict) or meta.get("format") != "backprop_fast.Network":
        raise ValueError(f"{what}: no backprop_fast metadata")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not (
            1 <= version <= FORMAT_VERSION):
        raise ValueError(f"{archive.filename!r} uses model format version {version!r}; this "
                         f"backprop_fast reads versions up to {FORMAT_VERSION}. "
                         "Upgrade backprop_fast to load it.")
    sizes = meta.get("layer_sizes")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(type(s) is int and 1 <= s <= _MAX_WIDTH for s in sizes)):
        raise ValueError(f"{what}: invalid layer_sizes {sizes!r}")
    # Only the two names save writes: np.dtype would also read None (as
    # float64), numbers, structured and string dtypes.
    dtype_name = meta.get("dtype")
    if not isinstance(dtype_name, str) or dtype_name not in ("float32", "float64"):
        raise ValueError(f"{what}: invalid dtype {_short(dtype_name)}; expected "
                         "'float32' or 'float64'")
    dtype = np.dtype(dtype_name)
    # Files written before the policy existed have no precision: their dtype's.
    precision = meta.setdefault("precision", dtype_name)
    if not isinstance(precision, str) or precision not in PRECISIONS or (
            precision != dtype_name and not (precision == MIXED_BFLOAT16
                                             and dtype_name == "float32")):
        raise ValueError(f"{what}: invalid precision {_short(precision)} for dtype "
                         f"{dtype_name!r}; expected the dtype's name, or "
                         "'mixed_bfloat16' for float32")
    try:
        _check_saved_state(meta)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if not isinstance(meta.get("activations"), list):
        raise ValueError(f"{what}: invalid activations {_short(meta.get('activations'))}")
    try:
        Network._check_loss(meta.get("loss"), Network._check_activations(
            meta.get("activations"), len(sizes) - 1)[-1])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: invalid description: {exc}") from None
    n_params = sum(o * (i + 1) for i, o in zip(sizes, sizes[1:]))
    expected = {"params": (dtype, (n_params,)), "rng_state": (np.dtype(np.uint64), (4,)),
                "opt_m1": (dtype, (n_params,)), "opt_m2": (dtype, (n_params,))}
    arrays = {}
    for name, info in members.items():
        if name == "meta":
            continue
        shape, _, member_dtype = _npy_header(archive, info)
        if (member_dtype, shape) != expected[name]:
            raise ValueError(f"{what}: array {name!r} of dtype {member_dtype} and shape "
                             f"{shape} does not match the described network "
                             f"({expected[name][0]}, {expected[name][1]})")
        if info.file_size < n_params * dtype.itemsize and name != "rng_state":
            raise ValueError(f"{what}: array {name!r} is truncated")
        arrays[name] = _read_npy(archive, info)
    return meta, arrays



# The kernel views of an architecture's layer sizes and activation codes and
# its fit layouts, shared by all its networks: a fresh network (a search's,
# an ensemble's) would otherwise spend more on making views than a tiny
# network's fit takes. Keyed by the kernel module too, whose views they are.
_SHARED: Dict[Any, Any] = {}


def _code_arrays(layer_sizes, activations):
    """The kernel's read-only arrays of layer sizes and activation codes."""
    sizes = np.array(layer_sizes, dtype=np.intp)
    acts = np.array([ACTIVATIONS[a] for a in activations], dtype=np.intc)
    sizes.flags.writeable = False
    acts.flags.writeable = False
    return sizes, acts


class _Architecture:
    """A checked architecture: what every network made with it shares."""

    __slots__ = ("layer_sizes", "activations", "loss", "dtype", "bf16", "sizes", "acts",
                 "n_params", "_draws")

    def __init__(self, layer_sizes, activations, loss, dtype, bf16):
        self.layer_sizes, self.activations, self.loss = layer_sizes, activations, loss
        self.dtype, self.bf16 = dtype, bf16
        self.sizes, self.acts = _code_arrays(layer_sizes, activations)
        self.n_params = sum(o * (i + 1) for i, o in zip(layer_sizes, layer_sizes[1:]))
        self._draws = None

    @staticmethod
    def key(layer_sizes, activations, loss, dtype):
        """A key that names the constructor's arguments exactly, where they
        are plain values (a list or tuple of ints; a name or a list or tuple
        of names; a name; a dtype name, NumPy float type or canonical float
        dtype); None otherwise. Exact types, as 4.0 == 4 and True == 1:
        arguments that compare equal must pass the same checks."""
        t = type(layer_sizes)
        if not (t is list or t is tuple) or not all(type(s) is int for s in layer_sizes):
            return None
        t = type(activations)
        if t is list or t is tuple:
            if not all(type(a) is str for a in activations):
                return None
            activations = tuple(activations)
        elif t is not str:
            return None
        if type(loss) is not str or not (type(dtype) is str or dtype is np.float64
                                         or dtype is np.float32 or dtype is DTYPES[0]
                                         or dtype is DTYPES[1]):
            return None
        return (tuple(layer_sizes), activations, loss, type(dtype), dtype)

    def init_draws(self):
        """(parameters, bound) of each layer: the count of its weights and
        biases, and the bound of their uniform start (see Network's Notes)."""
        if self._draws is None:
            draws = []
            for n_in, n_out, act in zip(self.layer_sizes, self.layer_sizes[1:],
                                        self.activations):
                if act == "relu":
                    bound = np.sqrt(6.0 / n_in)
                else:
                    bound = np.sqrt((2.0 if act == "sigmoid" else 6.0) / (n_in + n_out))
                draws.append((n_out * (n_in + 1), bound))
            self._draws = tuple(draws)
        return self._draws


# Checked architectures by their constructor arguments (_Architecture.key):
# a search's or an ensemble's networks would otherwise each spend more on
# the same checks and arrays than on drawing their parameters.
_CHECKED: Dict[Any, _Architecture] = {}


class Network:
    """A dense feed-forward network trained by backpropagation.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths of the layers, input first; at least two entries, each >= 1.
    activations : str or sequence of str, default "sigmoid"
        One name for every layer, or one per layer (``len(layer_sizes) - 1``):
        "sigmoid", "tanh", "relu", "identity", or "softmax" (last layer only).
    loss : {"cross_entropy", "squared_error", "poisson"}, default "cross_entropy"
        cross_entropy needs a sigmoid output (binary cross-entropy per unit)
        or a softmax output (categorical cross-entropy). poisson needs an
        identity output, read as the log of the predicted mean (a log link):
        the cost is half the Poisson deviance, exp(z) - y z + y log y - y per
        unit, for targets y >= 0; ``predict`` returns z, the log-means.
    dtype : {"float64", "float32", "mixed_bfloat16"} or numpy dtype, default "float64"
        Precision of the parameters and of all computation.
        "mixed_bfloat16" keeps the parameters, optimizer state, activations
        and deltas in float32 and rounds the inputs of every matrix product
        to bfloat16, accumulating in float32 (see the numerics page).
    seed : int or None
        Seeds the initial weights and the shuffling; the same seed, data and
        settings give bit-identical results.
    n_threads : int or None, default None
        The most threads the kernel may use for this network's wide matrix
        products; None for as many as OpenMP allows (all cores, unless
        ``OMP_NUM_THREADS`` or ``threadpoolctl.threadpool_limits`` says
        fewer, which caps an explicit count too). Results are bit-identical
        for any thread count. A runtime setting: not saved with the model.

    Attributes
    ----------
    layer_sizes, activations : tuple
        The architecture, read-only.
    loss : str
        Read-only.
    dtype : numpy.dtype
        Read-only: the type of the parameter arrays (float32 under
        "mixed_bfloat16").
    precision : str
        Read-only: "float32", "float64" or "mixed_bfloat16", the ``dtype``
        argument's policy; ``Network(..., dtype=net.precision)`` computes
        as ``net`` does.
    weights : ParameterList of ndarray
        ``weights[m]`` has shape (layer_sizes[m+1], layer_sizes[m]). The
        arrays are writable views of the parameters the kernel trains, and
        ``net.weights[m] = W`` copies ``W`` into them (same shape, finite).
    biases : ParameterList of ndarray
        ``biases[m]`` has shape (layer_sizes[m+1],), the same.
    history : History
        Every epoch trained so far, across fit calls.
    n_threads : int or None
        As the argument; may be changed at any time.

    Notes
    -----
    Weights start Glorot-uniform (bound sqrt(6 / (fan_in + fan_out)), with
    factor 2 instead of 6 for sigmoid layers as scikit-learn does), He-uniform
    (sqrt(6 / fan_in)) for ReLU layers; biases are drawn the same way.
    """

    def __init__(self, layer_sizes: Sequence[int],
                 activations: Union[str, Sequence[str]] = "sigmoid",
                 loss: str = "cross_entropy", *, dtype: DTypeLike = "float64",
                 seed: Optional[int] = None, n_threads: Optional[int] = None) -> None:
        arch = self._setup(layer_sizes, activations, loss, dtype, n_threads)
        if seed is not None and (type(seed) is not int or seed < 0):
            seed = _check_int(seed, "seed", 0)
        rng = np.random.default_rng(seed)
        self._initialise(rng, arch)
        # The shuffling seed is rng.integers(0, 2**63): for a range of a
        # power of two, the generator's bounded draw is the top bits of one
        # raw word, which random_raw gives without that call's set-up.
        _kernel.rng_seed(self._rng_state, rng.bit_generator.random_raw() >> 1)

    @classmethod
    def _from_start(cls, layer_sizes, activations, loss, dtype, weights, biases,
                    shuffle_seed: int, like: Optional["Network"] = None) -> "Network":
        """A network with the given starting weights (each (n_out, n_in)),
        biases and shuffling seed, drawing none of its own: for the
        estimators, which draw scikit-learn's starting point.

        ``like``, a network that this one replaces (an estimator's previous
        fit): where it has the same architecture, its checked architecture
        is taken as it stands, and the scratch buffers of its fits move to
        the new network (see ``_take_scratch``)."""
        net = cls.__new__(cls)
        net._setup(layer_sizes, activations, loss, dtype, None)
        if like is not None and like._architecture_key() == net._architecture_key():
            net._take_scratch(like)
        for W, b, W0, b0 in zip(net._weights, net._biases, weights, biases):
            W[...] = W0
            b[...] = b0
        net._reseed(shuffle_seed)
        return net

    def _reseed(self, seed: int) -> None:
        """Seed the shuffling generator (a whole number below 2**64)."""
        _kernel.rng_seed(self._rng_state, int(seed))

    def _setup(self, layer_sizes, activations, loss, dtype, n_threads) -> "_Architecture":
        """Everything but the starting parameters and the shuffling seed;
        returns the checked architecture."""
        key = _Architecture.key(layer_sizes, activations, loss, dtype)
        arch = _CHECKED.get(key) if key is not None else None
        if arch is None:
            sizes = tuple(self._check_sizes(layer_sizes))
            acts = tuple(self._check_activations(activations, len(sizes) - 1))
            loss = self._check_loss(loss, acts[-1])
            arch = _Architecture(sizes, acts, loss, *self._check_precision(dtype))
            if key is not None:
                if len(_CHECKED) >= 256:
                    _CHECKED.clear()
                _CHECKED[key] = arch
        # The architecture lives in private tuples behind read-only
        # properties: every size the kernel is given derives from them, so no
        # assignment to a public attribute can disagree with the parameters.
        self._layer_sizes = arch.layer_sizes
        self._activations = arch.activations
        self._loss = arch.loss
        self._dtype, self._bf16 = arch.dtype, arch.bf16
        # Read-only, so the networks of an architecture share them.
        self._sizes, self._acts = arch.sizes, arch.acts
        self._allocate(n_threads, arch.n_params)
        return arch

    def _allocate(self, n_threads, n_params):
        """The parameters and the state of a new network, its architecture set."""
        self.n_threads = n_threads
        self._params = np.empty(n_params, dtype=self._dtype)
        self._make_views()
        # Re-entrant, so that callbacks of fit may use predict or evaluate.
        self._lock = threading.RLock()
        self._in_fit = False
        # The shuffling generator and the optimizer state live on the network,
        # so that training continued over several fit calls is one training.
        self._rng_state = np.empty(4, dtype=np.uint64)
        self._optimizer = None
        self._opt_m1 = self._opt_m2 = None
        self._opt_step = np.zeros(1, dtype=np.int64)
        self._scratch: Dict[Any, Any] = {}
        # Every epoch trained so far, across fit calls (saved with the network).
        self._history = History()
        # What an application stores with the model (see save).
        self.metadata: Dict[str, Any] = {}
        # During a fit with callbacks: [kernel history array, validation,
        # classifier, epochs finished], so that a save or copy taken in a
        # callback holds the epochs that produced its parameters.
        self._pending: Optional[list] = None

    def _make_codes(self):
        """The kernel's read-only arrays of layer sizes and activation codes."""
        self._sizes, self._acts = _code_arrays(self._layer_sizes, self._activations)

    def _architecture_key(self) -> Tuple[Any, ...]:
        """What two networks of one architecture (and precision) share."""
        return self._layer_sizes, self._activations, self._loss, self._dtype, self._bf16

    def _take_scratch(self, other: "Network") -> None:
        """Move the scratch buffers of ``other``'s fits (same architecture)
        to this network, unless ``other`` is in use (its lock held).
        ``other`` keeps none, and allocates its own if it trains again: the
        two never share a buffer. Kernel views of ``other``'s own arrays
        are dropped, so that they keep nothing of it alive."""
        if not other._lock.acquire(blocking=False):
            return
        try:
            if other._in_fit:
                return
            scratch, other._scratch = other._scratch, {}
        finally:
            other._lock.release()
        views = scratch.get("views")
        if views is not None:
            # A predict of ``other`` that began before the move may still add
            # a view to this dict: list() copies it in one step.
            scratch["views"] = {name: hit for name, hit in list(views.items())
                                if hit[0] is scratch.get(name)}
        self._scratch = scratch

    # ------------------------------------------------------------ architecture

    @property
    def layer_sizes(self) -> Tuple[int, ...]:
        """Widths of the layers, input first (read-only)."""
        return self._layer_sizes

    @layer_sizes.setter
    def layer_sizes(self, value):
        self._read_only("layer_sizes")

    @property
    def activations(self) -> Tuple[str, ...]:
        """The activation of each layer (read-only)."""
        return self._activations

    @activations.setter
    def activations(self, value):
        self._read_only("activations")

    @property
    def loss(self) -> str:
        """The cost function (read-only)."""
        return self._loss

    @loss.setter
    def loss(self, value):
        self._read_only("loss")

    @property
    def dtype(self) -> np.dtype:
        """Precision of the parameters and of all computation (read-only)."""
        return self._dtype

    @dtype.setter
    def dtype(self, value):
        self._read_only("dtype")

    @property
    def precision(self) -> str:
        """"float32", "float64" or "mixed_bfloat16" (read-only)."""
        return MIXED_BFLOAT16 if self._bf16 else self._dtype.name

    @precision.setter
    def precision(self, value):
        self._read_only("precision")

    @property
    def n_threads(self) -> Optional[int]:
        """The most threads the kernel may use for this network (None: no
        limit of its own)."""
        return self.__dict__.get("_n_threads")

    @n_threads.setter
    def n_threads(self, value: Optional[int]) -> None:
        self._n_threads = None if value is None else _check_int(value, "n_threads", 1, 2**31 - 1)

    def _kernel_threads(self) -> int:
        # The kernel's convention: 0 for no limit of the caller's own.
        return self.n_threads or 0

    @staticmethod
    def _read_only(name):
        raise AttributeError(f"{name} is read-only: the parameters were allocated for "
                             "this architecture; create a new Network for another one")

    @property
    def history(self) -> History:
        """Every epoch trained so far, across fit calls (saved with the network).

        Read under the network's lock: fit adds the epochs of a call in one
        step, together with the parameters they produced.
        """
        with self._lock:
            return self._history

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
            if s > _MAX_WIDTH:
                raise ValueError(f"layer_sizes[{i}] = {s} is wider than {_MAX_WIDTH}, the "
                                 "largest width BLAS can address")
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
        if loss == "poisson" and output != "identity":
            raise ValueError(f'loss="poisson" needs an identity output layer (the log of '
                             f'the mean), got {output!r}')
        return loss

    @staticmethod
    def _check_dtype(dtype):
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be 'float32', 'float64' or 'mixed_bfloat16', "
                            f"got {dtype!r}") from None
        if dt not in DTYPES:
            raise ValueError(f"dtype must be 'float32', 'float64' or 'mixed_bfloat16', "
                             f"got {dt}")
        return dt

    @staticmethod
    def _check_precision(dtype) -> Tuple[np.dtype, bool]:
        """(the parameters' dtype, whether products round to bfloat16)."""
        # Compared by type first: a NumPy dtype or array compared with a
        # string would not give one bool.
        if isinstance(dtype, str) and dtype == MIXED_BFLOAT16:
            return np.dtype(np.float32), True
        return Network._check_dtype(dtype), False

    def _check_sparse_X(self, X, name):
        """A scipy.sparse X as a _Csr: converted to CSR (CSC and the other
        formats by tocsr, never toarray), its indices sorted and duplicates
        summed on a copy, its values converted and checked finite."""
        import scipy.sparse as sp

        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, {self._layer_sizes[0]}), "
                             f"got a sparse array of shape {X.shape}")
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got a sparse matrix of "
                            f"dtype {X.dtype}")
        self._check_rows_and_features(X.shape, name)
        m = X.tocsr() if X.format != "csr" else X
        if not m.has_canonical_format:
            # On a copy: the caller's matrix is left as it was.
            m = sp.csr_matrix(m, copy=True)
            m.sum_duplicates()
        with np.errstate(over="ignore"):
            Xc = _Csr(m, self._dtype, np.empty((0, self._layer_sizes[0]), dtype=self._dtype))
        if not _kernel.all_finite(Xc.data):
            if not np.isfinite(m.data).all():
                raise ValueError(f"{name} contains NaN or infinity among its stored "
                                 "values; remove or impute them first")
            raise ValueError(f"{name} has values too large for {self._dtype} "
                             f"(largest magnitude {np.max(np.abs(m.data)):g})")
        if self._bf16:
            # The kernel rounds a dense X's rows as it reads them, but a
            # sparse X's values where they lie: into a copy, as Xc.data may
            # be the caller's array.
            data = np.empty_like(Xc.data)
            _kernel.round_bfloat16(Xc.data, data)
            if not _kernel.all_finite(data):
                raise ValueError(f"{name} has values too large for bfloat16 "
                                 f"(largest magnitude {np.max(np.abs(m.data)):g})")
            Xc.data = data
        return Xc

    def _check_X(self, X, name="X"):
        """X as a C-contiguous (n, n_features) array of the network's dtype,
        or, for a scipy.sparse X, as a _Csr (never densified)."""
        if _is_sparse(X):
            return self._check_sparse_X(X, name), False
        # Already so: only its values need checking (any other X, or one that
        # fails, goes the long way, which says what is wrong with it).
        if (type(X) is np.ndarray and X.ndim == 2 and X.shape[0]
                and X.shape[1] == self._layer_sizes[0]
                and (X.dtype is self._dtype or X.dtype == self._dtype)):
            try:
                if _kernel.finite_rows(X, False):
                    return X, False
            except ValueError:  # not C-contiguous
                pass
        arr = _numeric_array(X, name)
        single = arr.ndim == 1
        if single:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, {self._layer_sizes[0]}) or "
                             f"1-D for one sample, got shape {arr.shape}")
        self._check_rows_and_features(arr.shape, name)
        return self._convert(arr, name), single

    def _check_rows_and_features(self, shape, name):
        """A 2-D X (dense or sparse) of at least one sample, layer_sizes[0] wide."""
        if shape[0] == 0:
            raise ValueError(f"{name} is empty: shape {shape}; at least one sample "
                             "is needed")
        if shape[1] != self._layer_sizes[0]:
            raise ValueError(f"{name} has {shape[1]} features per sample, but the "
                             f"network expects {self._layer_sizes[0]} (layer_sizes[0]); "
                             f"got shape {shape}")

    def _check_y(self, y, n, single):
        """y as a C-contiguous (n, n_outputs) array of the network's dtype."""
        # As in _check_X: an array already so has only its values checked.
        if (type(y) is np.ndarray and y.ndim == 2 and y.shape == (n, self._layer_sizes[-1])
                and (y.dtype is self._dtype or y.dtype == self._dtype)):
            try:
                if _kernel.finite_rows(y, self._loss == "cross_entropy") and (
                        self._loss != "poisson" or _kernel.extremes(y.reshape(-1))[0] >= 0):
                    return y
            except ValueError:  # not C-contiguous
                pass
        arr = _numeric_array(y, "y")
        n_out = self._layer_sizes[-1]
        output = self._activations[-1]
        if arr.ndim == 1 and output == "softmax" and arr.dtype.kind in "iu" and n_out > 1:
            if arr.shape[0] != n:
                raise ValueError(f"y has {arr.shape[0]} labels but X has {n} samples")
            try:
                return _one_hot(arr, n_out, self._dtype)
            except ValueError:
                # The kernel checks every label's range; the message names it.
                raise ValueError(f"y holds class labels outside 0..{n_out - 1}: "
                                 f"min {arr.min()}, max {arr.max()}") from None
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
        if self._loss == "cross_entropy" and out.size:
            lo, hi = _kernel.extremes(out.reshape(-1))
            if lo < 0 or hi > 1:
                raise ValueError("y must lie in [0, 1] for cross_entropy (targets are "
                                 f"probabilities), got values in [{lo}, {hi}]")
        if self._loss == "poisson" and out.size:
            lo, _ = _kernel.extremes(out.reshape(-1))
            if lo < 0:
                raise ValueError(f"y must be >= 0 for loss='poisson' (counts or rates), got "
                                 f"a minimum of {lo}")
        return out

    def _convert(self, arr, name):
        """A C-contiguous copy (or view) of arr in the network's dtype, all finite."""
        if arr.dtype == self._dtype and arr.flags.c_contiguous:
            out = arr
        else:
            with np.errstate(over="ignore"):
                out = np.ascontiguousarray(arr, dtype=self._dtype)
        if not _kernel.all_finite(out.reshape(-1)):
            _check_finite(arr, name)
            raise ValueError(f"{name} has values too large for {self._dtype} "
                             f"(largest magnitude {np.max(np.abs(arr)):g})")
        return out

    def _check_params_finite(self):
        if not _kernel.all_finite(self._kview("params", self._params)):
            raise ValueError("the network's weights or biases contain NaN or infinity; "
                             "set them to finite values (or create a new Network)")

    # ------------------------------------------------------------ parameters

    def _make_views(self):
        self._weights, self._biases = [], []
        off = 0
        for n_in, n_out in zip(self._layer_sizes, self._layer_sizes[1:]):
            self._weights.append(self._params[off:off + n_out * n_in].reshape(n_out, n_in))
            off += n_out * n_in
            self._biases.append(self._params[off:off + n_out])
            off += n_out

    def _initialise(self, rng, arch: "_Architecture"):
        """Draw the starting weights and biases from ``rng``."""
        # A layer's weights (row by row) and then its biases lie together in
        # _params, in the order drawn, and share the bound: one draw each.
        params, off = self._params, 0
        for count, bound in arch.init_draws():
            params[off:off + count] = rng.uniform(-bound, bound, size=count)
            off += count

    @property
    def weights(self) -> "ParameterList":
        """``weights[m]``, shape (layer_sizes[m+1], layer_sizes[m]): see ParameterList."""
        return ParameterList(self, self._weights, "weights")

    @property
    def biases(self) -> "ParameterList":
        """``biases[m]``, shape (layer_sizes[m+1],): see ParameterList."""
        return ParameterList(self, self._biases, "biases")

    @property
    def n_parameters(self) -> int:
        """Total number of weights and biases."""
        return self._params.size

    # ------------------------------------------------------------ kernel calls

    def _workspace(self, rows, sparse=False):
        _, sizes, acts = self._net_views()
        return (np.empty(_kernel.workspace_size(sizes, acts, rows, sparse), dtype=self._dtype),
                np.empty(_kernel.bsum_size(sizes, acts, rows)))

    def _net_views(self):
        """The kernel views of the parameters, layer sizes and activations."""
        sizes, acts = self._architecture()[:2]
        return self._kview("params", self._params), sizes, acts

    def _architecture(self):
        """What every network of this architecture and dtype shares with it
        (see _shared): the kernel views of its layer sizes and activation
        codes, and a dict of fit layouts."""
        arch = self._scratch.get("architecture")
        if arch is None or arch[3] is not _kernel:
            key = (_kernel, self._dtype, tuple(self._layer_sizes), tuple(self._acts.tolist()))
            arch = _SHARED.get(key)
            if arch is None:
                if len(_SHARED) >= 256:
                    _SHARED.clear()
                arch = _SHARED[key] = (_kernel.view_readonly(self._sizes.copy()),
                                       _kernel.view_readonly(self._acts.copy()), {}, _kernel)
            self._scratch["architecture"] = arch
        return arch

    def _fit_layout(self, batch, sparse=False):
        """(workspace length, bsum length, the kernel view of an empty array,
        the kernel views of an empty validation set, and those of empty
        order and bsum arrays) for fit with batches of ``batch`` rows (of a
        sparse X where ``sparse``), shared by the networks of this
        architecture."""
        sizes, acts, layouts, _ = self._architecture()
        layout = layouts.get((batch, sparse))
        if layout is None:
            layout = layouts[(batch, sparse)] = (
                _kernel.workspace_size(sizes, acts, batch, sparse),
                _kernel.bsum_size(sizes, acts, batch),
                _kernel.view(np.empty(0, dtype=self._dtype)),
                (_kernel.view2(np.empty((0, self._layer_sizes[0]), dtype=self._dtype)),
                 _kernel.view2(np.empty((0, self._layer_sizes[-1]), dtype=self._dtype))),
                (_kernel.view(np.empty(0, dtype=np.intp)),
                 _kernel.view(np.empty(0, dtype=np.float64))))
        return layout

    def _kview(self, name, arr, size=None):
        """The kernel's typed view of ``arr`` (of its first ``size``
        elements), kept for the next call while ``name`` stands for the same
        array: unpacking an array costs the kernel call about 0.2 us an
        argument, a view next to nothing. For the network's own arrays only,
        so that no caller's data is kept alive."""
        views = self._scratch.get("views")
        if views is None:
            views = self._scratch["views"] = {}
        hit = views.get(name)
        if hit is None or hit[0] is not arr or hit[1] != size:
            part = arr if size is None else arr[:size]
            hit = views[name] = (arr, size, _kernel.view(part) if part.flags.writeable
                                 else _kernel.view_readonly(part))
        return hit[2]

    def _fit_buffer(self, name, size, dtype=None):
        """The kernel view of a scratch array of ``size`` elements for fit,
        kept for the next call.

        Fresh large arrays page-fault on first touch, which costs more than a
        short fit (tens of ms for a wide network's workspace and parameter
        snapshot), so fit reuses its buffers; they are not pickled or saved.
        """
        buf = self._scratch.get(name)
        if buf is None or buf.size < size:
            buf = self._scratch[name] = np.empty(size, self._dtype if dtype is None else dtype)
        return self._kview(name, buf, size)

    def _chunk_rows(self, n, sparse=False):
        # A sparse X's rows take no room in the workspace.
        width = sum(self._layer_sizes[1:] if sparse else self._layer_sizes)
        return max(1, min(n, _CHUNK_ELEMENTS // width))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Output activations for the samples in X.

        Parameters
        ----------
        X : array_like, shape (n_samples, layer_sizes[0]) or (layer_sizes[0],)

        Returns
        -------
        ndarray, shape (n_samples, layer_sizes[-1]), or (layer_sizes[-1],) for a 1-D X.
        """
        Xc, single = self._check_X(X)
        out = np.empty((Xc.shape[0], self._layer_sizes[-1]), dtype=self._dtype)
        Xd, xs = _kernel_X(Xc)
        rows = self._chunk_rows(Xc.shape[0], xs is not None)
        work, _ = self._workspace(rows, xs is not None)
        with self._lock:
            _kernel.predict(*self._net_views(), Xd, out, work, rows, self._kernel_threads(),
                            xs, self._bf16)
        return out[0] if single else out

    def evaluate(self, X: ArrayLike, y: ArrayLike,
                 sample_weight: Optional[ArrayLike] = None) -> float:
        """Mean over the samples of the per-sample cost.

        Parameters
        ----------
        X : array_like, shape (n_samples, layer_sizes[0])
        y : array_like, shape (n_samples, layer_sizes[-1]); 1-D for one output
            unit, or integer class labels for a softmax output.
        sample_weight : array_like, shape (n_samples,), optional
            Non-negative weights, not all zero: the weighted mean of the
            costs (the weights scaled to mean 1, as in ``fit``).

        Returns
        -------
        float
        """
        Xc, single = self._check_X(X)
        Y = self._check_y(y, Xc.shape[0], single)
        w = self._weights_for(sample_weight, Y)
        Xd, xs = _kernel_X(Xc)
        rows = self._chunk_rows(Xc.shape[0], xs is not None)
        work, bsum = self._workspace(rows, xs is not None)
        with self._lock:
            total = _kernel.evaluate(*self._net_views(), LOSSES[self._loss], Xd, Y, work,
                                     bsum, rows, self._kernel_threads(), xs, w, self._bf16)
        return total / Xc.shape[0]

    def gradients(self, X: ArrayLike, y: ArrayLike, sample_weight: Optional[ArrayLike] = None
                  ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
        """Gradient of ``evaluate(X, y, sample_weight)`` with respect to every
        parameter.

        Returns
        -------
        dW, db : lists of ndarray shaped like ``weights`` and ``biases``.
        """
        Xc, single = self._check_X(X)
        Y = self._check_y(y, Xc.shape[0], single)
        w = self._weights_for(sample_weight, Y)
        grad = np.empty_like(self._params)
        Xd, xs = _kernel_X(Xc)
        work, bsum = self._workspace(Xc.shape[0], xs is not None)
        with self._lock:
            _kernel.gradients(*self._net_views(), LOSSES[self._loss], Xd, Y, grad, work, bsum,
                              self._kernel_threads(), xs, w, self._bf16)
        dW, db, off = [], [], 0
        for W in self._weights:
            n_out, n_in = W.shape
            dW.append(grad[off:off + n_out * n_in].reshape(n_out, n_in))
            off += n_out * n_in
            db.append(grad[off:off + n_out])
            off += n_out
        return dW, db

    def train_step(self, X: ArrayLike, y: ArrayLike, learning_rate: float) -> float:
        """One gradient-descent step on the batch (X, y).

        Returns
        -------
        float
            The batch's mean cost before the step.
        """
        return self.fit(X, y, epochs=1, batch_size=None, learning_rate=learning_rate,
                        shuffle=False).loss[0]

    def partial_fit(self, X: ArrayLike, y: ArrayLike, **options: Any) -> History:
        """One pass over (X, y) in order, continuing the training so far.

        For online learning on data that arrives in pieces: each call takes
        the minibatches of (X, y) in order (``batch_size`` as in ``fit``,
        default the whole piece) and continues the optimizer state. Takes the
        keyword arguments of ``fit`` except ``epochs`` and ``shuffle``.

        Returns
        -------
        History
            One epoch.
        """
        for name in ("epochs", "shuffle"):
            if name in options:
                raise TypeError(f"partial_fit makes one pass in order; {name} is not an option")
        return self.fit(X, y, epochs=1, shuffle=False, **options)

    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int,
            batch_size: Optional[int] = None, learning_rate: float = 0.1,
            shuffle: bool = True, optimizer: str = "sgd", momentum: float = 0.0,
            nesterov: bool = False, beta1: float = 0.9, beta2: float = 0.999,
            epsilon: float = 1e-8, weight_decay: float = 0.0,
            lr_schedule: str = "constant", power_t: float = 0.5,
            validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None,
            validation_split: float = 0.0, early_stopping: bool = False,
            patience: int = 10, min_delta: float = 0.0, restore_best: bool = True,
            sample_weight: Optional[ArrayLike] = None,
            class_weight: Union[None, str, Dict[int, float]] = None, verbose: int = 0,
            callbacks: Optional[Sequence[Callback]] = None, stopping: str = "patience",
            tol: float = 1e-4, n_iter_no_change: float = 10,
            validation_metric: Optional[str] = None, loss_penalty: float = 0.0,
            stopping_state: Optional[StoppingState] = None,
            validation_weight: Optional[ArrayLike] = None) -> History:
        """Train by minibatch gradient descent, all epochs in one native call.

        Parameters
        ----------
        X : array_like or scipy.sparse matrix, shape (n_samples, layer_sizes[0])
            A sparse X (CSR, CSC or any other scipy.sparse format, matrix or
            array) is never densified: it is converted to CSR (duplicates
            summed and indices sorted on a copy, the values to the network's
            dtype and checked finite), and the first layer's products read
            its stored values only; a shuffled minibatch names its rows
            rather than copying them. Results agree with those of the same
            X dense to rounding (the sums skip the zeros), not always in
            every bit. ``validation_data`` may be sparse too, and
            ``validation_split`` takes the last rows of a sparse X.
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
        optimizer : {"sgd", "adam", "adamw"}
            The step of ``torch.optim.SGD``, ``Adam`` or ``AdamW`` with the same
            hyperparameters. Its state (momentum buffer, Adam's moments and
            step count) lives on the network and carries over to the next
            ``fit`` call with the same optimizer.
        momentum : float, 0 <= momentum < 1
            For "sgd".
        nesterov : bool
            Nesterov momentum as PyTorch defines it, for "sgd".
        beta1, beta2, epsilon : float
            For "adam" and "adamw".
        weight_decay : float >= 0
            L2 penalty added to the gradient ("sgd", "adam") or decoupled decay
            ("adamw"). Applies to weights and biases alike, as in PyTorch.
        lr_schedule : {"constant", "invscaling", "cosine", "plateau", "adaptive"}
            Learning rate of epoch e (0-based) of this call: constant;
            learning_rate / (e + 1) ** power_t; learning_rate * (1 + cos(pi e /
            epochs)) / 2; or divided by 5 whenever the monitored cost has not
            improved by more than ``min_delta`` for ``patience`` epochs.
            With ``stopping="sklearn"``, scikit-learn's schedules instead:
            "invscaling" sets the rate to learning_rate / (t + 1) ** power_t
            after each epoch, t the samples trained on
            (``stopping_state.samples_seen``); "adaptive" divides the rate by
            5 where the rule would stop, while the rate exceeds 1e-6.
        power_t : float
            Exponent of "invscaling".
        validation_data : (X_val, y_val), optional
            Evaluated by the kernel after each epoch (``history.val_loss``,
            and ``history.val_accuracy`` for classifiers).
        validation_split : float in [0, 1)
            Without ``validation_data``: hold out this fraction of (X, y), the
            last samples, before any shuffling.
        early_stopping : bool
            Stop once the monitored cost (validation cost if there is
            validation data, otherwise training cost) has not improved by more
            than ``min_delta`` for ``patience`` epochs. With the "plateau"
            schedule each reduced rate gets its own ``patience`` epochs first.
        patience : int >= 1
        min_delta : float >= 0
        restore_best : bool
            With early stopping, end with the parameters of the best epoch.
        sample_weight : array_like, shape (n_samples,), optional
            Non-negative weights of the samples in the cost. They are scaled
            to mean 1 over the training set, so a full-batch cost is the
            weighted mean and minibatch costs are unbiased estimates of it.
        class_weight : dict or "balanced", optional
            For sigmoid (single unit) and softmax outputs: a weight per class
            (label or 0/1 target), multiplied into ``sample_weight``.
            "balanced" uses n_samples / (n_classes * count of the class).
        verbose : {0, 1, 2}
            0 silent, 1 one progress bar for the whole fit, 2 one line per
            epoch (to standard error).
        callbacks : list of callables, optional
            Each is called after every epoch as ``callback(epoch, logs)``,
            ``logs`` a dict of that epoch's figures; one that returns True
            stops training after that epoch.
        stopping : {"patience", "sklearn"}
            "patience": ``early_stopping``, ``patience`` and ``min_delta`` as
            above. "sklearn": the rules of scikit-learn's MLP estimators,
            always on: after each epoch, the validation score (with
            ``validation_metric`` and validation data) or else the training
            cost counts as not improved when it is not better than the best
            so far by more than ``tol``; training stops once more than
            ``n_iter_no_change`` epochs in a row did not improve (or the
            "adaptive" schedule lowers the rate instead). With a validation
            score the parameters of the best-scoring epoch are kept (unless
            ``restore_best=False``; after Ctrl-C too), and a diverging epoch
            does not raise:
            it and the epochs left are recorded as NaN, as scikit-learn
            records them, and the best epoch's parameters are kept.
        tol : float >= 0
            For ``stopping="sklearn"``.
        n_iter_no_change : int >= 1 or inf
            For ``stopping="sklearn"``.
        validation_metric : {None, "accuracy", "r2"}
            A score of the validation data after each epoch
            (``history.val_score``): "accuracy", the (weighted) fraction of
            samples classified right (all units right, for several sigmoid
            outputs), for cross-entropy networks; "r2", the coefficient of
            determination averaged over the outputs, as
            ``sklearn.metrics.r2_score`` computes it.
        loss_penalty : float >= 0
            Adds ``loss_penalty`` times the sum of the squared weights
            (biases left out) at the epoch's end to each epoch's
            ``history.loss``: an L2 term in the reported and monitored cost,
            such as scikit-learn's ``alpha / (2 n)``.
        validation_weight : array_like, shape (n_val,), optional
            Non-negative weights of the ``validation_data`` samples in
            ``validation_metric``.
        stopping_state : StoppingState, optional
            The state of ``stopping="sklearn"`` to continue from and update;
            a new one if None.

        Returns
        -------
        History

        Raises
        ------
        DivergenceError
            If the cost or a parameter becomes non-finite. The network keeps
            the last finite parameters (unless a callback made them
            non-finite, which the message then says) and its optimizer state
            is reset.
        KeyboardInterrupt
            Ctrl-C stops training at the next minibatch boundary; the network
            holds the parameters of a finished step.

        Whatever ends the call (an exception included), the epochs that
        finished are recorded in ``net.history``, so that it agrees with the
        parameters, the optimizer state and the shuffling generator.
        """
        run = self._prepare_fit(X, y, epochs, batch_size, learning_rate, shuffle, optimizer,
                                momentum, nesterov, beta1, beta2, epsilon, weight_decay,
                                lr_schedule, power_t, validation_data, validation_split,
                                early_stopping, patience, min_delta, restore_best,
                                sample_weight, class_weight, verbose, callbacks, stopping, tol,
                                n_iter_no_change, validation_metric, loss_penalty,
                                stopping_state, validation_weight)
        if run is None:
            return History()
        _run_fits([run], self._kernel_threads())
        history, error = run.history()
        if error is not None:
            raise error
        return history

    def _prepare_fit(self, X, y, epochs, batch_size, learning_rate, shuffle, optimizer,
                     momentum, nesterov, beta1, beta2, epsilon, weight_decay, lr_schedule,
                     power_t, validation_data, validation_split, early_stopping, patience,
                     min_delta, restore_best, sample_weight, class_weight, verbose, callbacks,
                     stopping, tol, n_iter_no_change, validation_metric, loss_penalty,
                     stopping_state, validation_weight) -> Optional["_FitRun"]:
        """fit's checks: the _FitRun of these arguments (None for no epochs)."""
        # Plain values pass on their type tests alone, without the checking
        # functions' calls: with its caches cold (a call between other work),
        # every call and look-up on the way to the kernel costs microseconds.
        if type(epochs) is not int or not 0 <= epochs <= _MAX_COUNT:
            epochs = _check_int(epochs, "epochs", 0, _MAX_COUNT)
        if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
            batch_size = _check_int(batch_size, "batch_size", 1)
        rate = (learning_rate if type(learning_rate) is float and 0 < learning_rate < math.inf
                else _check_rate(learning_rate))
        settings = _kernel.Settings()
        settings.learning_rate = rate
        # Options left at their defaults (the very objects of the signature)
        # are valid as they stand, and so are plain floats in range (the
        # estimators pass theirs so): a short fit spends its time on checks.
        inf = math.inf
        # Settings starts at zeros: "sgd", no momentum or decay, "constant".
        d = _FIT_DEFAULTS
        for flag, name in ((shuffle, "shuffle"), (nesterov, "nesterov"),
                           (early_stopping, "early_stopping"),
                           (restore_best, "restore_best")):
            if flag is not True and flag is not False and not isinstance(flag, np.bool_):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        settings.shuffle = bool(shuffle)
        settings.early_stopping = bool(early_stopping)
        settings.restore_best = bool(restore_best)
        if optimizer is not d["optimizer"]:
            settings.optimizer = OPTIMIZERS[_check_choice(optimizer, "optimizer", OPTIMIZERS)]
        if momentum is not d["momentum"]:
            settings.momentum = (momentum if type(momentum) is float and 0 <= momentum < 1
                                 else _check_real(momentum, "momentum", 0, 1, high_open=True))
        if nesterov and settings.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        settings.nesterov = bool(nesterov)
        settings.beta1 = (beta1 if beta1 is d["beta1"] or type(beta1) is float and 0 <= beta1 < 1
                          else _check_real(beta1, "beta1", 0, 1, high_open=True))
        settings.beta2 = (beta2 if beta2 is d["beta2"] or type(beta2) is float and 0 <= beta2 < 1
                          else _check_real(beta2, "beta2", 0, 1, high_open=True))
        settings.epsilon = (epsilon if epsilon is d["epsilon"]
                            or type(epsilon) is float and 0 < epsilon < inf
                            else _check_real(epsilon, "epsilon", 0, low_open=True))
        if weight_decay is not d["weight_decay"]:
            settings.weight_decay = (weight_decay if type(weight_decay) is float
                                     and 0 <= weight_decay < inf
                                     else _check_real(weight_decay, "weight_decay", 0))
        if lr_schedule is not d["lr_schedule"]:
            settings.schedule = SCHEDULES[_check_choice(lr_schedule, "lr_schedule",
                                                        SCHEDULES)]
        settings.power_t = (power_t if power_t is d["power_t"]
                            or type(power_t) is float and 0 <= power_t < inf
                            else _check_real(power_t, "power_t", 0))
        settings.patience = (patience if patience is d["patience"]
                             else _check_int(patience, "patience", 1, _MAX_COUNT))
        if min_delta is not d["min_delta"]:
            settings.min_delta = _check_real(min_delta, "min_delta", 0)
        split = (0.0 if validation_split is d["validation_split"] else
                 _check_real(validation_split, "validation_split", 0, 1, high_open=True))
        if verbose is not d["verbose"] and (verbose not in (0, 1, 2)
                                            or isinstance(verbose, bool)):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        callbacks = () if callbacks is None else self._check_callbacks(callbacks)
        sk = False
        if stopping is not d["stopping"]:
            sk = (STOPPING[_check_choice(stopping, "stopping", STOPPING)]
                  == STOPPING["sklearn"])
        metric = 0
        if validation_metric is not None:
            metric = VALIDATION_METRICS[_check_choice(validation_metric, "validation_metric",
                                                      ("accuracy", "r2"))]
            if metric == VALIDATION_METRICS["accuracy"] and self._loss != "cross_entropy":
                raise ValueError("validation_metric='accuracy' needs a cross_entropy network")
        if loss_penalty is not d["loss_penalty"]:
            settings.loss_penalty = (loss_penalty if type(loss_penalty) is float
                                     and 0 <= loss_penalty < inf
                                     else _check_real(loss_penalty, "loss_penalty", 0))
        if sk and settings.schedule in (SCHEDULES["cosine"], SCHEDULES["plateau"]):
            raise ValueError(f'stopping="sklearn" takes lr_schedule "constant", "invscaling" '
                             f'or "adaptive", got {lr_schedule!r}')
        if sk:
            settings.stopping = STOPPING["sklearn"]
            settings.early_stopping = True
            settings.tol = (tol if tol is d["tol"] or type(tol) is float and 0 <= tol < inf
                            else _check_real(tol, "tol", 0))
            if not (n_iter_no_change == math.inf or _is_count(n_iter_no_change)
                    and n_iter_no_change >= 1):
                raise ValueError(f"n_iter_no_change must be an integer >= 1 or inf, got "
                                 f"{n_iter_no_change!r}")
            settings.n_iter_no_change = float(n_iter_no_change)
            if stopping_state is None:
                stopping_state = StoppingState()
            elif not isinstance(stopping_state, StoppingState):
                raise TypeError(f"stopping_state must be a StoppingState, got "
                                f"{type(stopping_state).__name__}")
            st = stopping_state
            settings.best_loss = float(st.best_loss)
            settings.best_score = float(st.best_score)
            settings.no_improvement = float(st.no_improvement_count)
            settings.samples_seen = float(st.samples_seen)
            settings.rate = rate if st.learning_rate is None else float(st.learning_rate)
        elif settings.schedule == SCHEDULES["adaptive"]:
            raise ValueError('lr_schedule="adaptive" needs stopping="sklearn"')

        Xc, single = self._check_X(X)
        Y = self._check_y(y, Xc.shape[0], single)
        sw = None
        if sample_weight is not None:
            sw = _numeric_array(sample_weight, "sample_weight")
            if sw.shape != (Xc.shape[0],):
                raise ValueError(f"sample_weight must have shape ({Xc.shape[0]},), one "
                                 f"weight per sample, got shape {sw.shape}")
        w_val = None
        if validation_data is not None:
            if split:
                raise ValueError("give validation_data or validation_split, not both")
            X_val, Y_val = self._check_validation(validation_data)
            if validation_weight is not None:
                w_val = _numeric_array(validation_weight, "validation_weight")
                if w_val.shape != (X_val.shape[0],):
                    raise ValueError(f"validation_weight must have shape ({X_val.shape[0]},), "
                                     f"one weight per validation sample, got shape "
                                     f"{w_val.shape}")
                if not np.isfinite(w_val).all() or (w_val < 0).any():
                    raise ValueError("validation_weight must be finite and non-negative")
                w_val = np.ascontiguousarray(w_val, dtype=self._dtype)
        elif split:
            n_val = int(math.floor(split * Xc.shape[0]))
            if n_val == 0 or n_val == Xc.shape[0]:
                raise ValueError(f"validation_split={split} leaves {n_val} of "
                                 f"{Xc.shape[0]} samples for validation; it needs at "
                                 "least one for each side")
            Xc, X_val = Xc[:-n_val], Xc[-n_val:]
            Y, Y_val = Y[:-n_val], Y[-n_val:]
            if sw is not None:
                sw = sw[:-n_val]
        else:
            X_val = Y_val = None
        # Class weights count the training samples only.
        weights = (None if sw is None and class_weight is None
                   else _normalise_weights(self._sample_weights(sw, class_weight, Y),
                                           self._dtype))

        if epochs == 0:
            return None
        if patience > epochs:
            # Equivalent for training (it never runs out), and the kernel's
            # count of waiting epochs stays far from overflowing.
            settings.patience = epochs + 1
        n = Xc.shape[0]
        settings.batch = n if batch_size is None else min(batch_size, n)
        settings.epochs = epochs
        validation = X_val is not None
        if metric and not validation:
            raise ValueError("validation_metric needs validation_data or validation_split")
        if validation_weight is not None and validation_data is None:
            raise ValueError("validation_weight weighs validation_data: give both")
        settings.val_metric = metric if validation else 0
        val_stats = None
        if settings.val_metric:
            val_stats = np.zeros(2 * self._layer_sizes[-1])
            if settings.val_metric == VALIDATION_METRICS["r2"]:
                # r2_score's denominators: the weighted sum of squares of each
                # target about its weighted mean.
                Yv = np.asarray(Y_val, dtype=np.float64)
                wv = None if w_val is None else w_val.astype(np.float64)
                mean = np.average(Yv, axis=0, weights=wv)
                sq = (Yv - mean) ** 2
                val_stats[:Yv.shape[1]] = (sq if wv is None else sq * wv[:, None]).sum(axis=0)
        # The kernel writes the cost of each epoch it finishes (always finite)
        # and times epochs in blocks; NaN marks what it has not written, so
        # that the epochs finished before an exception can be found.
        try:
            out = np.full((epochs, len(History.FIGURES)), np.nan)
        except (MemoryError, ValueError):
            raise MemoryError(f"epochs={epochs}: recording the history of that many "
                              f"epochs needs {epochs * len(History.FIGURES) * 8:.3g} "
                              "bytes; train in several shorter fit calls") from None
        return _FitRun(self, settings, Xc, Y, weights, X_val, Y_val, w_val, val_stats, out,
                       verbose, callbacks, stopping_state if sk else None, rate)

    # ------------------------------------------------------------ fit helpers

    @staticmethod
    def _check_callbacks(callbacks):
        if callbacks is None:
            return []
        if callable(callbacks):
            callbacks = [callbacks]
        try:
            callbacks = list(callbacks)
        except TypeError:
            raise TypeError(f"callbacks must be a list of callables, got {callbacks!r}") from None
        for i, cb in enumerate(callbacks):
            if not callable(cb):
                raise TypeError(f"callbacks[{i}] = {cb!r} is not callable")
        return callbacks

    def _check_validation(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a tuple (X_val, y_val), got "
                            f"{type(validation_data).__name__}")
        X_val, y_val = validation_data
        X_val, single = self._check_X(X_val, "validation_data[0] (X_val)")
        try:
            Y_val = self._check_y(y_val, X_val.shape[0], single)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"validation_data[1] (y_val): {exc}") from None
        return X_val, Y_val

    def _weights_for(self, sample_weight, Y):
        """``sample_weight`` checked, scaled to mean 1, in the network's
        dtype; None for None."""
        if sample_weight is None:
            return None
        sw = _numeric_array(sample_weight, "sample_weight")
        if sw.shape != (Y.shape[0],):
            raise ValueError(f"sample_weight must have shape ({Y.shape[0]},), one "
                             f"weight per sample, got shape {sw.shape}")
        return _normalise_weights(self._sample_weights(sw, None, Y), self._dtype)

    def _sample_weights(self, sw, class_weight, Y):
        """Per-sample weights (sample_weight times class_weight), or None.

        ``sw`` is None or a numeric array already checked to hold one weight
        per row of Y.
        """
        n = Y.shape[0]
        weights = None
        if sw is not None:
            _check_finite(sw, "sample_weight")
            if sw.size and sw.min() < 0:
                raise ValueError("sample_weight must be >= 0, got a minimum of "
                                 f"{sw.min()}")
            weights = sw.astype(np.float64)
        if class_weight is not None:
            output = self._activations[-1]
            if self._loss != "cross_entropy" or (output == "sigmoid" and Y.shape[1] != 1):
                raise ValueError("class_weight needs a classifier: a softmax output, or "
                                 "a single sigmoid unit, with cross_entropy")
            if output == "softmax":
                if not np.all((Y == 0) | (Y == 1)) or not np.all(Y.sum(axis=1) == 1):
                    raise ValueError("class_weight needs one-hot targets or class labels y")
                classes = np.argmax(Y, axis=1)
                n_classes = Y.shape[1]
            else:
                if not np.all((Y == 0) | (Y == 1)):
                    raise ValueError("class_weight needs 0/1 targets y")
                classes = Y[:, 0].astype(np.intp)
                n_classes = 2
            if isinstance(class_weight, str):
                if class_weight != "balanced":
                    raise ValueError(f"class_weight = {class_weight!r}: give a dict or "
                                     "'balanced'")
                counts = np.bincount(classes, minlength=n_classes).astype(np.float64)
                per_class = np.where(counts > 0, n / (np.count_nonzero(counts) *
                                                      np.maximum(counts, 1)), 0.0)
            elif isinstance(class_weight, dict):
                per_class = np.ones(n_classes)
                for label, w in class_weight.items():
                    if (isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral)
                            or not 0 <= label < n_classes):
                        raise ValueError(f"class_weight has class {label!r}; classes are "
                                         f"0..{n_classes - 1}")
                    per_class[label] = _check_real(w, f"class_weight[{label}]", 0)
            else:
                raise TypeError("class_weight must be a dict {class: weight} or "
                                f"'balanced', got {class_weight!r}")
            cw = per_class[classes]
            if weights is None:
                weights = cw
            else:
                with np.errstate(over="ignore"):  # an overflow is refused by the caller
                    weights = weights * cw
        return weights

    def _optimizer_buffers(self, settings, no_buffer, own_scratch=False):
        """Kernel views of grad, m1, m2, keeping the state of the last fit
        (``no_buffer``, the kernel view of an empty array, where unused, and
        for grad where the kernel allocates the fit's scratch)."""
        kind = settings.optimizer
        sgd = OPTIMIZERS["sgd"]
        fold = kind == sgd and settings.momentum == 0 and settings.weight_decay == 0
        if fold:
            return no_buffer, no_buffer, no_buffer
        if self._optimizer != kind:
            # Allocated before any is assigned: a MemoryError leaves the
            # previous state whole.
            m1 = np.zeros_like(self._params)
            m2 = (np.zeros_like(self._params) if kind != sgd
                  else np.empty(0, dtype=self._dtype))
            self._optimizer, self._opt_m1, self._opt_m2 = kind, m1, m2
            self._opt_step[0] = 0
        return (no_buffer if own_scratch else self._fit_buffer("grad", self._params.size),
                self._kview("m1", self._opt_m1), self._kview("m2", self._opt_m2))

    # ------------------------------------------------------------ persistence

    def save(self, path: PathLike, metadata: Optional[Dict[str, Any]] = None) -> None:
        """Write the network to ``path`` (an .npz file, written atomically).

        The file holds arrays — the parameters, the optimizer state and the
        shuffling generator's state — and a JSON description: format version,
        architecture, dtype, optimizer name and step count, and the history of
        every epoch trained so far. ``Network.load`` reads it without pickle,
        and training continues exactly where it stopped.

        ``metadata``, a dict of JSON values (str keys), is stored in the
        description as it is (replacing the network's own ``metadata``, which
        is saved otherwise) and comes back as ``Network.load(path).metadata``:
        the place for what an application knows about the model (the command
        line keeps its column names and scaling there).

        The state is copied under the network's lock, so a save while another
        thread trains the network holds the parameters between two fit calls.
        A file that is replaced keeps its permission bits (a new one gets the
        umask's default, as ``open`` would give it). If ``path`` is a symbolic
        link, the file it points to is replaced and the link kept.
        """
        arrays = self._file_arrays(metadata)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)

    def _history_now(self) -> History:
        """A copy of the history with the epochs a running fit has finished
        (when called from one of its callbacks); under the lock."""
        with self._lock:
            history = self._history._copy()
            if self._pending is not None and self._pending[3]:
                out, validation, classifier, done, scored = self._pending
                history._add((out[:done].copy(), validation, classifier, scored))
            return history

    def _file_arrays(self, metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The arrays of a model file, copied under the lock: a fit running in
        another thread is either wholly in them or not at all; ``metadata``
        (None: the network's own) in the description."""
        metadata = _check_metadata(self.metadata if metadata is None else metadata)
        with self._lock:
            meta = {
                "format": "backprop_fast.Network",
                "format_version": FORMAT_VERSION,
                "layer_sizes": list(self._layer_sizes),
                "activations": list(self._activations),
                "loss": self._loss,
                "dtype": self._dtype.name,
                "precision": self.precision,
                "optimizer": {"name": (None if self._optimizer is None
                                       else _OPTIMIZER_NAMES[self._optimizer]),
                              "step": int(self._opt_step[0])},
                "history": {name: list(values)
                            for name, values in self._history_now()._figures().items()},
            }
            arrays: Dict[str, Any] = {"params": self._params.copy(),
                                      "rng_state": self._rng_state.copy()}
            if self._optimizer is not None:
                arrays["opt_m1"] = self._opt_m1.copy()
                if self._opt_m2.size:
                    arrays["opt_m2"] = self._opt_m2.copy()
        if metadata:
            meta["metadata"] = metadata
        return {"meta": np.array(json.dumps(meta)), **arrays}

    @classmethod
    def load(cls, path: PathLike) -> "Network":
        """Read a network written by ``save``.

        Every member's header is checked against the description before any
        data is read, so a hostile file cannot make ``load`` allocate more
        than the network it describes; nothing is unpickled.

        Raises
        ------
        ValueError
            If the file is not a backprop_fast model, is truncated or corrupt,
            comes from a newer format version, or describes an inconsistent
            network.
        """
        path = os.fspath(path)
        what = f"{path!r} is not a readable backprop_fast model file"
        try:
            with zipfile.ZipFile(path) as archive:
                meta, arrays = _read_model_archive(archive, what)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError,
                UnicodeDecodeError, json.JSONDecodeError, RecursionError,
                NotImplementedError, OverflowError, TypeError, MemoryError) as exc:
            raise ValueError(f"{what}: {type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            if str(exc).startswith(what) or str(exc).startswith(f"{path!r} uses"):
                raise
            raise ValueError(f"{what}: {exc}") from None
        net = cls(meta["layer_sizes"], meta["activations"], meta["loss"],
                  dtype=meta["precision"])
        try:
            net._restore_state(meta, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{what}: {exc}") from None
        return net

    def _restore_state(self, meta, arrays):
        """Parameters, optimizer, generator and history from a saved file's contents."""
        def take(name, dtype, shape):
            arr = arrays[name]
            if arr.dtype != dtype or arr.shape != shape:
                raise ValueError(f"array {name!r} of dtype {arr.dtype} and shape "
                                 f"{arr.shape} does not match the described network "
                                 f"({np.dtype(dtype)}, {shape})")
            return arr

        self._params[...] = take("params", self._dtype, self._params.shape)
        self._rng_state[...] = take("rng_state", np.uint64, (4,))
        _check_saved_state(meta)  # again: meta may not come from _read_model_archive
        opt = meta.get("optimizer") or {}
        name = opt.get("name")
        if name is not None:
            if "opt_m1" not in arrays or (name != "sgd") != ("opt_m2" in arrays):
                raise ValueError(f"optimizer state {name!r} is incomplete")
            self._optimizer = OPTIMIZERS[name]
            self._opt_m1 = take("opt_m1", self._dtype, self._params.shape).copy()
            self._opt_m2 = (take("opt_m2", self._dtype, self._params.shape).copy()
                            if name != "sgd" else np.empty(0, dtype=self._dtype))
            self._opt_step[0] = opt.get("step", 0)
        self.metadata = _check_metadata(meta.get("metadata") or {})
        figures = meta.get("history") or {}
        self._history._add({figure: [float(v) for v in figures.get(figure, [])]
                            for figure in History.FIGURES})

    def to_onnx(self, path: PathLike) -> None:
        """Write the forward pass to ``path`` as an ONNX model (needs the ``onnx`` extra).

        The graph is Gemm and activation nodes in the network's dtype;
        onnxruntime reproduces ``predict``. Called on the class with a fitted
        ``backprop_fast.sklearn`` estimator, ``Network.to_onnx(estimator,
        path)``, it exports the estimator (as ``estimator.to_onnx(path)``
        does): see :func:`backprop_fast.onnx.to_onnx`.
        """
        from .onnx import to_onnx
        to_onnx(self, path)

    # pickle and copy.deepcopy: a fresh lock and fresh views into the
    # unpickled parameters; the optimizer and shuffling state travel along.
    def __getstate__(self):
        from ._pickling import network_getstate
        return network_getstate(self)

    def __setstate__(self, state):
        from ._pickling import network_setstate
        network_setstate(self, state)

    def __repr__(self):
        return (f"Network({list(self._layer_sizes)}, activations={list(self._activations)}, "
                f"loss={self._loss!r}, dtype={self.precision!r})")


class _FitRun:
    """One network's fit, checked (``Network._prepare_fit``) and then run by
    ``_run_fits``, alone (``Network.fit``) or with others (``fit_many``)."""

    def __init__(self, net, settings, X, Y, weights, X_val, Y_val, w_val, val_stats, out,
                 verbose, callbacks, stopping_state, rate):
        self.net = net
        self.settings = settings
        self.data = (X, Y, weights, X_val, Y_val, w_val, val_stats)
        self.out = out
        self.epochs = out.shape[0]
        self.validation = X_val is not None
        self.classifier = net._loss == "cross_entropy"
        self.scored = bool(settings.val_metric)
        self.verbose = verbose
        self.callbacks = callbacks
        self.stopping_state = stopping_state
        self.rate = rate
        self.progress: Optional[ProgressBar] = None
        self.outcome: Optional[Tuple[int, int, int]] = None

    def _epoch_end(self, epoch):
        self.pending[3] = epoch + 1
        row = self.out[epoch]
        logs = {"loss": float(row[0])}
        if self.validation:
            logs["val_loss"] = float(row[1])
            if self.classifier:
                logs["val_accuracy"] = float(row[2])
        logs["learning_rate"] = float(row[3])
        logs["time"] = float(row[4])
        if self.scored:
            logs["val_score"] = float(row[5])
        if self.progress is not None:
            self.progress(epoch, logs)
        stop = False
        for callback in self.callbacks:
            stop = bool(callback(epoch, logs)) or stop
        return stop

    def start(self):
        """The kernel's FitCall, with the network's lock held: from here on
        the network is in fit until ``end``."""
        net = self.net
        if net._in_fit:
            raise RuntimeError("fit was called from a callback of fit on the same "
                               "network; train it after the outer fit returns")
        net._check_params_finite()
        net._in_fit = True
        net._pending = self.pending = [self.out, self.validation, self.classifier, 0,
                                       self.scored]
        settings = self.settings
        X, Y, weights, X_val, Y_val, w_val, val_stats = self.data
        Xd, xs = _kernel_X(X)
        work_size, bsum_size, no_weights, no_val, (no_order, no_bsum) = net._fit_layout(
            settings.batch, xs is not None)
        rows = Xd.shape[0] if xs is None else X.shape[0]
        size = net._params.size
        # A small network's scratch comes from the kernel, allocated for the
        # run (see fit_call); a large one's is kept, as fresh pages cost
        # more than a short fit.
        own = ((work_size + 3 * size) * net._params.itemsize + (bsum_size + rows) * 8
               <= _OWN_SCRATCH_BYTES)
        if weights is None:
            weights = no_weights
        if X_val is None:
            X_val, Y_val = no_val
        X_val, val_sparse = _kernel_X(X_val)
        extra: Tuple[Any, ...] = ()
        if self.scored:
            extra = (no_weights if w_val is None else w_val, val_stats)
        grad, m1, m2 = net._optimizer_buffers(settings, no_weights, own)
        if own:
            order, work, bsum, snapshot, best = no_order, no_weights, no_bsum, no_weights, no_weights
        else:
            order = net._fit_buffer("order", rows, np.intp)
            work = net._fit_buffer("work", work_size)
            bsum = net._fit_buffer("bsum", bsum_size, np.float64)
            snapshot = net._fit_buffer("snapshot", size)
            best = (net._fit_buffer("best", size)
                    if settings.early_stopping and settings.restore_best else no_weights)
        if self.verbose:
            self.progress = ProgressBar(self.epochs, every_epoch=self.verbose == 2)
        # Without callbacks or progress the kernel never calls back: the
        # history is read from its array afterwards.
        hook = self._epoch_end if (self.callbacks or self.progress is not None) else None
        kv = net._kview
        return _kernel.fit_call(
            *net._net_views(), LOSSES[net._loss], Xd, Y, weights, X_val, Y_val, settings,
            kv("rng_state", net._rng_state), kv("step", net._opt_step), order, work, bsum,
            grad, m1, m2, snapshot, best, self.out, hook, *extra, x_sparse=xs,
            val_sparse=val_sparse, bf16=net._bf16, own_scratch=own)

    def record_finished(self):
        """After an exception: the epochs that finished go into the network's
        history, as the parameters, optimizer and generator have advanced by
        them."""
        finished = np.isnan(self.out[:, 0])
        done = int(finished.argmax()) if finished.any() else self.epochs
        if done:
            self.net._history._add((self.out[:done], self.validation, self.classifier,
                                    self.scored))

    def save_state(self):
        st = self.stopping_state
        if st is not None:
            s = self.settings
            st.best_loss = s.best_loss
            st.best_score = s.best_score
            st.no_improvement_count = int(s.no_improvement)
            st.samples_seen = int(s.samples_seen)
            st.learning_rate = s.rate

    def finish(self, outcome):
        """With the lock held, the kernel's outcome into the network."""
        self.outcome = outcome
        status, done, _ = outcome
        net = self.net
        if done:
            # Under the lock with the parameters they produced: a reader
            # (save, pickle) sees both or neither.
            net._history._add((self.out[:done], self.validation, self.classifier,
                               self.scored))
        if status not in (0, _kernel.STATUS_DIVERGED_KEPT_BEST_CODE):
            net._optimizer = None  # the state may hold NaN/inf
            self.finite = _kernel.all_finite(net._kview("params", net._params))

    def end(self):
        self.net._in_fit = False
        self.net._pending = None
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def history(self) -> Tuple[History, Optional["DivergenceError"]]:
        """This fit's History, and the DivergenceError where it diverged."""
        assert self.outcome is not None
        _, done, best_epoch = self.outcome
        error = self.error()
        history = History()
        history._add((self.out[:done], self.validation, self.classifier, self.scored))
        history.stopped_early = done < self.epochs
        history.best_epoch = int(best_epoch) if best_epoch >= 0 else None
        history.diverged = error is not None
        return history, error

    def figure(self, name: str) -> List[float]:
        """One figure (as History names them) of the epochs this fit
        finished, without building a History."""
        assert self.outcome is not None
        return self.out[:self.outcome[1], History.FIGURES.index(name)].tolist()

    def error(self) -> Optional["DivergenceError"]:
        """The DivergenceError of a fit that diverged, else None."""
        assert self.outcome is not None
        status, done, _ = self.outcome
        error = None
        # stopping="sklearn" with a validation score: a divergence ends
        # training as scikit-learn ends it, with the best epoch's parameters,
        # and raises nothing.
        if status not in (0, _kernel.STATUS_DIVERGED_KEPT_BEST_CODE):
            what = "the cost" if status == _kernel.STATUS_NONFINITE_COST_CODE else "a parameter"
            if self.finite:
                kept = "The network keeps its last finite parameters."
            else:
                # Only a change from outside the kernel (a callback, another
                # thread writing into the weights) can leave them so.
                kept = ("The network's parameters were already NaN or infinite when the "
                        "epoch began (were they changed by a callback?), so they are "
                        "not finite now: set them to finite values before training on.")
            error = DivergenceError(
                f"training diverged in epoch {done + 1}: {what} became NaN or infinite "
                f"at learning_rate={self.rate:g}. {kept} Try a smaller learning_rate, scale "
                "the inputs to unit range, or use a larger batch_size.")
        return error


def _run_fits(runs: List[_FitRun], n_threads: int) -> None:
    """Run fits in one kernel call, each network's lock held (taken in one
    global order, so that two calls over the same networks cannot
    deadlock); each run's ``outcome`` is set on return."""
    if len(runs) == 1:
        with runs[0].net._lock:
            _run_locked(runs, n_threads)
        return
    nets = [run.net for run in runs]
    if len({id(net) for net in nets}) != len(nets):
        raise ValueError("a network appears more than once in one call")
    with contextlib.ExitStack() as stack:
        for net in sorted(nets, key=id):
            stack.enter_context(net._lock)
        _run_locked(runs, n_threads)


def _run_locked(runs: List[_FitRun], n_threads: int) -> None:
    """_run_fits with the locks held."""
    started: List[_FitRun] = []
    try:
        calls = []
        for run in runs:
            started.append(run)
            calls.append(run.start())
        # Callbacks run on this thread (which holds the networks' locks,
        # so that they may save or read them), one network at a time.
        hooks = any(run.callbacks or run.verbose for run in runs)
        try:
            outcomes = _kernel.run_fits(calls, n_threads, not hooks)
        except BaseException:
            # Ctrl-C or a callback's exception: every network keeps what
            # it finished.
            for run in runs:
                run.record_finished()
            raise
        finally:
            for run in runs:
                run.save_state()
        for run, outcome in zip(runs, outcomes):
            run.finish(outcome)
    finally:
        for run in started:
            run.end()


_FIT_DEFAULTS: Dict[str, Any] = Network.fit.__kwdefaults__  # type: ignore[assignment]
