"""Benchmark workloads for benches/: shared with ``python -m backprop_fast bench``.

The workload definitions (W1 to W5), their data and the ``Problem`` that
makes one concrete (data, initial weights, pre-drawn sample orders, the
common final-cost evaluation) live in the package, in
``backprop_fast/bench/__init__.py``; this module re-exports them for the
pytest-benchmark suite and compare.py, and adds the bare-matmul ceiling.

W1  XOR 2-2-1, sigmoid, cross-entropy, 4 samples full batch, lr 1.0, float64,
    1,000 epochs per call; timed per epoch.
W2  digits 64-32-10, tanh/softmax, cross-entropy, batch 32, lr 0.1, float32
    and float64; timed per step (minibatch).
W3  as W2 with batch 1 (online SGD); timed per step (= per sample).
W4  784-256-256-10, relu/relu/softmax, cross-entropy, batch 128, lr 0.01,
    60,000 synthetic samples, float32; timed per step.
W5  1024-2048-2048-1024, relu/relu/identity, squared error, batch 512,
    lr 0.001, float32, 4,096 synthetic samples; timed per step.

FLOP rates count 6 x batch x n_parameters per step (2 for the forward
products, 4 for the backward ones).
"""
import numpy as np

try:
    from backprop_fast import Network  # noqa: F401  (compare.py's memory check)
    from backprop_fast.bench import (  # noqa: F401  (re-exports)
        SEED,
        W4_LAYERS,
        W5_LAYERS,
        WORKLOADS,
        Problem,
        Workload,
        digits_data,
        environment,
        fmt_time,
        n_parameters,
        one_hot,
        synthetic_classification,
        synthetic_regression,
        workloads,
    )
except ImportError as exc:  # pragma: no cover - explained to the user
    raise ImportError(
        "benches need backprop_fast with its compiled kernel: run "
        "`python setup.py build_ext --inplace` or `pip install --no-build-isolation -e .` "
        f"in the repository first ({exc})"
    ) from exc


def workload(key, quick=False):
    """The workload with this key ("W1", "W2-f32", ..., "W5")."""
    for w in workloads(quick):
        if w.key == key:
            return w
    raise KeyError(key)


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
