"""Benchmark workloads shared by the pytest-benchmark suite and compare.py.

Each workload trains ``backprop_fast.Network`` and the pure-NumPy
``ReferenceNetwork`` on the same data from the same initial weights. A
:class:`Pair` holds both, their saved initial parameters and everything the
timed call needs, built beforehand so that the timed region allocates no large
buffer of its own: ``reset()`` copies the initial parameters back in place,
``run_fast()`` / ``run_reference()`` train and return the final epoch's mean
cost.

Workloads (names as in the project's benchmark plan):

W1  XOR 2-2-1, sigmoid, cross-entropy, 4 samples full batch, lr 1.0, float64,
    1,000 epochs in one ``fit``; timed per epoch.
W2  digits 64-32-10, tanh/softmax, cross-entropy, batch 32, lr 0.1, float32
    and float64; timed per step (minibatch).
W3  as W2 with batch 1 (online SGD); timed per step.
W5  1024-2048-2048-1024, relu/relu/identity, squared error, batch 512,
    lr 0.001, float32, 4,096 synthetic samples; timed per step.

FLOP rates count 6 x samples x parameters per epoch (2 for the forward
products, 4 for the backward ones), i.e. 6 x batch x n_parameters per step.
"""
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

try:
    from backprop_fast import Network
except ImportError as exc:  # pragma: no cover - explained to the user
    raise ImportError(
        "benches need backprop_fast with its compiled kernel: run "
        "`python setup.py build_ext --inplace` or `pip install --no-build-isolation -e .` "
        f"in the repository first ({exc})"
    ) from exc
from backprop_fast.datasets import load_digits
from backprop_fast.reference import ReferenceNetwork

SEED = 1234
XOR_X = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)


def n_parameters(layer_sizes):
    """Number of weights and biases of a dense network."""
    return sum(m * n + n for m, n in zip(layer_sizes[:-1], layer_sizes[1:]))


def one_hot(labels, n_classes, dtype):
    """Labels as rows of a one-hot matrix of ``dtype``."""
    out = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


@dataclass
class Pair:
    """One workload: a kernel network and a reference network, ready to time."""

    name: str
    layer_sizes: list
    activations: list
    loss: str
    dtype: str
    X: np.ndarray
    y: np.ndarray
    batch_size: object          # int, or None for the full batch
    learning_rate: float
    fast_epochs: int            # epochs per timed call of the kernel
    ref_epochs: int             # epochs per timed call of the reference
    shuffle: bool = True
    net: object = None
    ref: object = None
    init: tuple = None
    orders: list = field(default_factory=list)

    def __post_init__(self):
        self.net = Network(self.layer_sizes, self.activations, self.loss,
                           dtype=self.dtype, seed=SEED)
        self.init = ([w.copy() for w in self.net.weights], [b.copy() for b in self.net.biases])
        self.ref = ReferenceNetwork(self.net.weights, self.net.biases,
                                    self.net.activations, self.net.loss)
        if self.shuffle:
            # Permutations drawn before timing; the reference only indexes with them.
            rng = np.random.default_rng(SEED)
            self.orders = [rng.permutation(self.n_samples) for _ in range(self.ref_epochs)]

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def batch(self):
        return self.n_samples if self.batch_size is None else min(self.batch_size, self.n_samples)

    @property
    def steps_per_epoch(self):
        return math.ceil(self.n_samples / self.batch)

    @property
    def flops_per_epoch(self):
        return 6.0 * self.n_samples * n_parameters(self.layer_sizes)

    def reset(self):
        """Copy the initial parameters back into both networks, in place."""
        W0, b0 = self.init
        for dst, src in zip(self.net.weights + self.net.biases, W0 + b0):
            dst[...] = src
        for dst, src in zip(self.ref.weights + self.ref.biases, W0 + b0):
            dst[...] = src

    def run_fast(self):
        history = self.net.fit(self.X, self.y, epochs=self.fast_epochs,
                               batch_size=self.batch_size,
                               learning_rate=self.learning_rate, shuffle=self.shuffle)
        return float(history.loss[-1])

    def run_reference(self):
        order = self.orders.__getitem__ if self.shuffle else None
        history = self.ref.fit(self.X, self.y, self.ref_epochs, self.batch_size,
                               self.learning_rate, order=order)
        return float(history[-1])

    def epochs(self, impl):
        return self.fast_epochs if impl == "backprop_fast" else self.ref_epochs

    def run(self, impl):
        return self.run_fast() if impl == "backprop_fast" else self.run_reference()

    def figures(self, impl, seconds):
        """Per-epoch and per-step time and GFLOP/s for one timed call of ``impl``."""
        epochs = self.epochs(impl)
        per_epoch = seconds / epochs
        return {
            "per_epoch_s": per_epoch,
            "per_step_s": per_epoch / self.steps_per_epoch,
            "gflops": self.flops_per_epoch / per_epoch / 1e9,
        }


def xor_pair(fast_epochs=1000, ref_epochs=1000):
    """W1: the tutorial's XOR network, full batch, no shuffling."""
    return Pair("W1 xor 2-2-1 f64 full", [2, 2, 1], ["sigmoid", "sigmoid"], "cross_entropy",
                "float64", XOR_X.copy(), XOR_Y.copy(), None, 1.0,
                fast_epochs, ref_epochs, shuffle=False)


def digits_data(dtype):
    """The digits as (X, one-hot Y), C-contiguous in ``dtype``: the kernel converts nothing."""
    X, y = load_digits()
    return np.ascontiguousarray(X, dtype=dtype), one_hot(y, 10, dtype)


def digits_pair(dtype, batch_size, fast_epochs, ref_epochs):
    """W2 (batch 32) or W3 (batch 1): the digits classifier."""
    X, Y = digits_data(dtype)
    tag = "W2" if batch_size != 1 else "W3"
    short = {"float32": "f32", "float64": "f64"}[dtype]
    return Pair(f"{tag} digits 64-32-10 {short} b{batch_size}", [64, 32, 10], ["tanh", "softmax"],
                "cross_entropy", dtype, X, Y, batch_size, 0.1, fast_epochs, ref_epochs)


W5_LAYERS = [1024, 2048, 2048, 1024]


def synthetic_regression(n_samples=4096, n_in=1024, n_out=1024, dtype="float32", seed=SEED):
    """Synthetic regression data: Gaussian inputs, targets from a random tanh teacher."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_in), dtype=np.float32)
    teacher = rng.standard_normal((n_in, n_out), dtype=np.float32) / np.float32(math.sqrt(n_in))
    Y = X @ teacher
    np.tanh(Y, out=Y)  # in place: no transient copy (compare.py's memory check)
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(Y, dtype=dtype)


def wide_pair(fast_epochs=1, ref_epochs=1, n_samples=4096):
    """W5: a wide ReLU regression network, float32, batch 512."""
    X, Y = synthetic_regression(n_samples)
    return Pair("W5 relu 1024-2048-2048-1024 f32 b512", W5_LAYERS,
                ["relu", "relu", "identity"], "squared_error", "float32", X, Y, 512, 0.001,
                fast_epochs, ref_epochs)


class Matmul:
    """NumPy's bare float32 2048x2048 matrix product into a preallocated output."""

    name = "matmul f32 2048^3 (NumPy BLAS ceiling)"

    def __init__(self, n=2048):
        rng = np.random.default_rng(SEED)
        self.n = n
        self.a = rng.standard_normal((n, n), dtype=np.float32)
        self.b = rng.standard_normal((n, n), dtype=np.float32)
        self.out = np.empty((n, n), dtype=np.float32)

    @property
    def flops(self):
        return 2.0 * self.n ** 3

    def run(self):
        np.matmul(self.a, self.b, out=self.out)


def blas_info():
    """The BLAS libraries loaded and their thread counts (needs threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed: BLAS threads unknown"
    parts = []
    for pool in threadpool_info():
        library = os.path.basename(pool.get("filepath", ""))
        parts.append(f"{pool.get('internal_api')} {pool.get('version')} {library} "
                     f"threads={pool.get('num_threads')}")
    return "; ".join(parts) or "no BLAS thread pool found"


def environment():
    """One line about the interpreter, NumPy and the machine."""
    return (f"Python {sys.version.split()[0]}, NumPy {np.__version__}, "
            f"{os.cpu_count()} CPUs; {blas_info()}")


def fmt_time(seconds):
    """A duration with a unit that keeps three significant figures readable."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.2f} us"
