"""``python -m backprop_fast bench``: backprop_fast beside its peers, in one run.

Every workload (W1 to W5, below) is trained by backprop_fast and by each peer
that is installed, in one process, from the same initial weights, on the same
data, for the same number of epochs, with the same number of threads:

==================  ===========================================================
backprop_fast       ``Network.fit``: every epoch in one native call
numpy reference     ``backprop_fast.reference.ReferenceNetwork`` (always there)
scikit-learn        MLPClassifier / MLPRegressor, solver "sgd", momentum 0,
                    alpha 0, constant rate, no early stopping, warm start
torch eager         nn.Linear stack + optim.SGD over pre-made CPU tensors
jax jit step        one jitted SGD step, called from a Python loop
jax scan            the whole run (epochs x steps) jitted under lax.scan
numpy matmuls       W4/W5 only: just the step's matrix products through
                    NumPy's BLAS (no activations, no update): a ceiling
==================  ===========================================================

The peers' code is in :mod:`backprop_fast.bench.peers`. The timed calls
alternate between the peers (the order rotates every repeat), after one
untimed warm-up call each (JIT compilation, page faults, thread start-up), so
that drift of a shared machine hits every peer alike; the table gives medians.

For each peer and workload the table shows the time per epoch (W1) or per
step (minibatch; for W3 a step is one sample), the ratio of that time to
backprop_fast's (above 1: backprop_fast is faster), GFLOP/s counted as
6 x batch x parameters per step, the resident memory the peer added when it
was set up (its copies of data and parameters, compiled code) and the extra
peak resident memory during a training call, and the final cost: the mean
cost of the trained parameters on (up to 8,192 of) the training samples,
computed by the same float64 NumPy code for every peer, so a reader can see
that every peer did the same work. The costs agree closely but not exactly:
backprop_fast and scikit-learn shuffle with their own random streams, the
other peers visit the samples in the same pre-drawn orders.

Threads: BLAS and OpenMP pools are limited through threadpoolctl, PyTorch
through ``torch.set_num_threads`` and XLA through ``XLA_FLAGS`` (set before
JAX is first imported; XLA can only be told "1 thread" or "all cores").
"""
import argparse
import gc
import math
import os
import platform
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass, replace

import numpy as np

from ..datasets import load_digits
from ..network import Network
from ..reference import ReferenceNetwork

__all__ = ["Workload", "Problem", "WORKLOADS", "workloads", "run",
           "format_table", "plot_speedups", "environment", "main", "add_bench_command"]

SEED = 1234
EVAL_ROWS = 8192    # samples the final cost is computed on
XOR_X = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)
W4_LAYERS = (784, 256, 256, 10)
W5_LAYERS = (1024, 2048, 2048, 1024)


# ---------------------------------------------------------------- workloads

@dataclass(frozen=True)
class Workload:
    """One benchmark workload: network, data, schedule."""

    key: str                 # unique: "W2-f32"
    group: str               # what --only selects: "W2"
    title: str
    layer_sizes: tuple
    activations: tuple
    loss: str
    dtype: str
    data: str                # "xor", "digits", "classification", "regression"
    batch_size: object       # int, or None for the whole set
    learning_rate: float
    epochs: int              # epochs per timed call (every peer)
    n_samples: object = None  # None: the data set's own size
    shuffle: bool = True
    repeats: int = 7         # timed calls per peer (after one warm-up call)
    # Seconds of pause before each timed call, for calls long enough not to
    # mind: the previous peer's idle thread pools (OpenBLAS, OpenMP, XLA) spin
    # for about 0.1 s after its call, on the cores the next call needs.
    settle: float = 0.0

    @property
    def unit(self):
        """What the time column is per: an epoch for full-batch runs, else a step."""
        return "epoch" if self.batch_size is None else "step"


WORKLOADS = (
    Workload("W1", "W1", "W1 xor 2-2-1 sigmoid, cross-entropy, full batch, f64",
             (2, 2, 1), ("sigmoid", "sigmoid"), "cross_entropy", "float64", "xor",
             None, 1.0, 1000, shuffle=False),
    Workload("W2-f32", "W2", "W2 digits 64-32-10 tanh/softmax, batch 32, f32",
             (64, 32, 10), ("tanh", "softmax"), "cross_entropy", "float32", "digits",
             32, 0.1, 5),
    Workload("W2-f64", "W2", "W2 digits 64-32-10 tanh/softmax, batch 32, f64",
             (64, 32, 10), ("tanh", "softmax"), "cross_entropy", "float64", "digits",
             32, 0.1, 5),
    Workload("W3-f32", "W3", "W3 digits 64-32-10 tanh/softmax, batch 1, f32",
             (64, 32, 10), ("tanh", "softmax"), "cross_entropy", "float32", "digits",
             1, 0.1, 1, repeats=5),
    Workload("W3-f64", "W3", "W3 digits 64-32-10 tanh/softmax, batch 1, f64",
             (64, 32, 10), ("tanh", "softmax"), "cross_entropy", "float64", "digits",
             1, 0.1, 1, repeats=5),
    Workload("W4", "W4", "W4 784-256-256-10 relu/softmax, batch 128, 60,000 synthetic, f32",
             W4_LAYERS, ("relu", "relu", "softmax"), "cross_entropy", "float32",
             "classification", 128, 0.01, 1, n_samples=60000, repeats=5, settle=0.25),
    Workload("W5", "W5", "W5 1024-2048-2048-1024 relu/identity, squared error, batch 512, f32",
             W5_LAYERS, ("relu", "relu", "identity"), "squared_error", "float32",
             "regression", 512, 0.001, 1, n_samples=4096, repeats=5, settle=0.25),
)

# --quick: fewer repeats; W1 300 epochs, W2 1 epoch; W3 on the first 512 digits; W4 on 2,048
# of its samples (16 steps), W5 on 1,024 (2 steps). Per-step times are
# comparable with the full run's; final costs are not.
_QUICK = {"W1": dict(epochs=300, repeats=3), "W2-f32": dict(epochs=1, repeats=3),
          "W2-f64": dict(epochs=1, repeats=3), "W3-f32": dict(n_samples=512, repeats=3),
          "W3-f64": dict(n_samples=512, repeats=3), "W4": dict(n_samples=2048, repeats=3),
          "W5": dict(n_samples=1024, repeats=3)}
QUICK_BUDGET = 1.5   # seconds of timed calls per peer and workload, after the first
FULL_BUDGET = 30.0


def workloads(quick=False, only=None):
    """The workloads to run: ``only`` is a list of groups ("W2") or keys ("W2-f32")."""
    chosen = []
    for w in WORKLOADS:
        if only and w.group not in only and w.key not in only:
            continue
        chosen.append(replace(w, **_QUICK.get(w.key, {})) if quick else w)
    return chosen


def n_parameters(layer_sizes):
    """Number of weights and biases of a dense network."""
    return sum(m * n + n for m, n in zip(layer_sizes[:-1], layer_sizes[1:]))


def one_hot(labels, n_classes, dtype):
    """Labels as rows of a one-hot matrix of ``dtype``."""
    out = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def digits_data(dtype):
    """The digits as (X, one-hot Y, labels), C-contiguous in ``dtype``."""
    X, y = load_digits()
    return np.ascontiguousarray(X, dtype=dtype), one_hot(y, 10, dtype), y


def synthetic_classification(n_samples=60000, n_in=784, n_classes=10, dtype="float32",
                             seed=SEED):
    """MNIST-shaped synthetic data: inputs uniform in [0, 1), labels from a random
    linear teacher on the centred inputs (argmax), so that there is something to
    learn and the classes are about equally frequent.

    Returns (X, one-hot Y, labels).
    """
    rng = np.random.default_rng(seed)
    X = rng.random((n_samples, n_in), dtype=np.float32)
    teacher = rng.standard_normal((n_in, n_classes), dtype=np.float32)
    labels = np.argmax((X - np.float32(0.5)) @ teacher, axis=1)
    return (np.ascontiguousarray(X, dtype=dtype), one_hot(labels, n_classes, dtype),
            labels.astype(np.int64))


def synthetic_regression(n_samples=4096, n_in=1024, n_out=1024, dtype="float32", seed=SEED):
    """Synthetic regression data: Gaussian inputs, targets from a random tanh teacher."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_in), dtype=np.float32)
    teacher = rng.standard_normal((n_in, n_out), dtype=np.float32) / np.float32(math.sqrt(n_in))
    Y = X @ teacher
    np.tanh(Y, out=Y)  # in place: no transient copy (benches/compare.py's memory check)
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(Y, dtype=dtype)


def make_data(w):
    """(X, Y, labels) for a workload: Y is 2-D in the workload's dtype; labels are
    integer classes for a classification workload, else None."""
    if w.data == "xor":
        return XOR_X.astype(w.dtype), XOR_Y.astype(w.dtype), XOR_Y[:, 0].astype(np.int64)
    if w.data == "digits":
        X, Y, labels = digits_data(w.dtype)
        n = w.n_samples or X.shape[0]
        return X[:n], Y[:n], labels[:n]
    if w.data == "classification":
        return synthetic_classification(w.n_samples or 60000, w.layer_sizes[0],
                                        w.layer_sizes[-1], w.dtype)
    if w.data == "regression":
        X, Y = synthetic_regression(w.n_samples or 4096, w.layer_sizes[0],
                                    w.layer_sizes[-1], w.dtype)
        return X, Y, None
    raise ValueError(f"unknown data {w.data!r}")


class Problem:
    """A workload made concrete: data, initial parameters, sample orders.

    Attributes: ``workload``, ``X``, ``Y`` (2-D targets in the dtype),
    ``labels`` (int64 classes or None), ``init`` = (weights, biases) with
    ``weights[m]`` of shape (n_out, n_in), ``orders`` (epochs x n_samples
    permutations drawn beforehand, or None without shuffling).
    """

    def __init__(self, workload):
        self.workload = w = workload
        self.X, self.Y, self.labels = make_data(w)
        net = Network(list(w.layer_sizes), list(w.activations), w.loss, dtype=w.dtype,
                      seed=SEED)
        self.init = ([W.copy() for W in net.weights], [b.copy() for b in net.biases])
        del net
        if w.shuffle:
            rng = np.random.default_rng(SEED)
            self.orders = np.stack([rng.permutation(self.n_samples) for _ in range(w.epochs)])
        else:
            self.orders = None
        rows = min(self.n_samples, EVAL_ROWS)
        self._eval = (self.X[:rows].astype(np.float64), self.Y[:rows].astype(np.float64))

    def __getattr__(self, name):  # layer_sizes, activations, loss, dtype, ... of the workload
        if name == "workload":
            raise AttributeError(name)
        return getattr(self.workload, name)

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def batch(self):
        b = self.workload.batch_size
        return self.n_samples if b is None else min(b, self.n_samples)

    @property
    def steps_per_epoch(self):
        return math.ceil(self.n_samples / self.batch)

    @property
    def n_parameters(self):
        return n_parameters(self.workload.layer_sizes)

    @property
    def flops_per_epoch(self):
        """6 x samples x parameters: 2 for the forward products, 4 for the backward ones."""
        return 6.0 * self.n_samples * self.n_parameters

    def batches(self, epoch):
        """The sample indices of each step of ``epoch`` (a list of int64 arrays)."""
        order = np.arange(self.n_samples) if self.orders is None else self.orders[epoch]
        b = self.batch
        return [order[s:s + b] for s in range(0, self.n_samples, b)]

    def final_cost(self, weights, biases):
        """Mean cost of the given parameters on the evaluation rows, in float64 NumPy."""
        ref = ReferenceNetwork([np.asarray(W, dtype=np.float64) for W in weights],
                               [np.asarray(b, dtype=np.float64) for b in biases],
                               self.workload.activations, self.workload.loss)
        return ref.evaluate(*self._eval)


# ---------------------------------------------------------------- measuring

def _malloc_trim():
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes():
    """Current resident memory of this process in bytes (None where unknown)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def reset_peak():
    """Reset the peak-RSS mark (Linux >= 4.0); return the current RSS or None."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return rss_bytes()


def peak_bytes():
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def time_peer(peer, repeats_out, peaks_out, settle=0.0):
    """One timed call: reset (untimed), run (timed); append seconds and extra peak RSS.

    ``settle``: seconds to wait before the call (see Workload.settle).
    """
    peer.reset()
    gc.collect()
    if settle:
        time.sleep(settle)
    mark = reset_peak()
    t0 = time.perf_counter()
    peer.run()
    seconds = time.perf_counter() - t0
    repeats_out.append(seconds)
    if mark is not None:
        peaks_out.append(max(0, peak_bytes() - mark))


def compare(problem, peer_classes, threads, repeats=None, budget=30.0, log=None):
    """Set up every peer on ``problem``, time them interleaved; return result rows.

    A row is a dict: peer, label, seconds (median of a call), per_unit
    (seconds per epoch or step), gflops, state_bytes, peak_bytes, final_cost,
    spread (max-min over median), note (why a peer was skipped, or None).
    A peer whose first timed call takes long gets fewer repeats (at least one),
    so that its timed calls take about ``budget`` seconds at most.
    """
    w = problem.workload
    repeats = repeats or w.repeats
    peers, rows = [], []
    for cls in peer_classes:
        reason = cls.unavailable() or cls.skip_reason(problem)
        if reason:
            rows.append(dict(peer=cls.name, label=cls.label, note=reason))
            continue
        gc.collect()
        _malloc_trim()
        before = rss_bytes()
        try:
            peer = cls(problem, threads)
        except Exception as exc:  # a broken peer install must not stop the run
            rows.append(dict(peer=cls.name, label=cls.label,
                             note=f"set-up failed: {type(exc).__name__}: {exc}"))
            continue
        after = rss_bytes()
        peers.append(peer)
        rows.append(dict(peer=cls.name, label=cls.label, note=None, times=[], peaks=[],
                         state_bytes=None if before is None else max(0, after - before)))
    live = [(p, r) for p, r in zip(peers, [r for r in rows if r["note"] is None])]
    for peer, row in list(live):  # warm-up: compilation, first-touch page faults
        try:
            peer.reset()
            peer.run()
        except Exception as exc:
            row["note"] = f"failed: {type(exc).__name__}: {exc}"
            live.remove((peer, row))
    # What exists now (the peers' libraries, data, compiled functions) is
    # moved out of the collector's reach: time_peer's collection then walks
    # only the garbage of the timed calls, rather than evicting from the
    # caches, before each call, the code and data about to be timed.
    gc.collect()
    gc.freeze()
    try:
        for r in range(repeats):
            k = r % max(1, len(live))
            for peer, row in live[k:] + live[:k]:
                if r == 0 or len(row["times"]) < budget / row["times"][0]:
                    time_peer(peer, row["times"], row["peaks"], w.settle)
            if log:
                log(f"  {w.key}: repeat {r + 1}/{repeats}")
    finally:
        gc.unfreeze()
    units = w.epochs * (1 if w.unit == "epoch" else problem.steps_per_epoch)
    for peer, row in live:
        seconds = statistics.median(row["times"])
        params = peer.parameters()
        row.update(
            seconds=seconds, per_unit=seconds / units,
            gflops=problem.flops_per_epoch * w.epochs / seconds / 1e9,
            peak_bytes=max(row["peaks"]) if row["peaks"] else None,
            final_cost=None if params is None else problem.final_cost(*params),
            repeats=len(row["times"]),
            spread=(max(row["times"]) - min(row["times"])) / seconds)
        peer.close()
    fast = next((r for r in rows if r["peer"] == "backprop_fast" and r["note"] is None), None)
    for row in rows:
        if row["note"] is None and fast is not None:
            row["ratio"] = row["seconds"] / fast["seconds"]
    return rows


# ---------------------------------------------------------------- threads

def limit_threads(threads):
    """Limit BLAS/OpenMP pools (threadpoolctl) and tell XLA before JAX loads.

    Returns (context manager, notes). The XLA flag only takes effect if JAX
    has not been imported yet in this process.
    """
    notes = []
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    cpus = _cpu_count()
    if 1 < threads < cpus:
        notes.append(f"XLA cannot be limited to {threads} threads (only 1 or all {cpus}): "
                     "JAX uses all cores")
    if threads > cpus:
        notes.append(f"{threads} threads on {cpus} cores: oversubscribed")
    if "jax" in sys.modules and threads == 1:
        notes.append("JAX was imported before the thread limit was set: it may use all cores")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        notes.append("threadpoolctl not installed: BLAS/OpenMP threads not limited "
                     "(pip install threadpoolctl)")
        import contextlib
        return contextlib.nullcontext(), notes
    return threadpool_limits(limits=threads), notes


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------- environment

def cpu_model():
    """The CPU's model name (as lscpu reports it), or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    """The BLAS/OpenMP libraries loaded and their thread counts (needs threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (threadpoolctl not installed)"
    parts = []
    for pool in threadpool_info():
        library = os.path.basename(pool.get("filepath", ""))
        if pool.get("user_api") == "blas":
            parts.append(f"{pool.get('internal_api')} {pool.get('version')} "
                         f"({pool.get('architecture')}, {library}) threads={pool.get('num_threads')}")
    return "; ".join(parts) or "no BLAS thread pool found"


def environment():
    """A few lines about the machine and the software."""
    from .. import __version__, kernel_isa
    versions = [f"backprop_fast {__version__} ({kernel_isa} kernel)",
                f"Python {sys.version.split()[0]}", f"NumPy {np.__version__}"]
    for module in ("scipy", "sklearn", "torch", "jax"):
        mod = sys.modules.get(module)
        if mod is not None:
            versions.append(f"{module} {getattr(mod, '__version__', '?')}")
    try:
        load = "load average {:.2f} {:.2f} {:.2f} (1, 5, 15 min)".format(*os.getloadavg())
    except (AttributeError, OSError):
        load = "load average unknown"
    return (f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; {load}\n"
            f"machine: {cpu_model()}, {os.cpu_count()} cores ({_cpu_count()} usable), "
            f"{platform.system()} {platform.machine()}\n"
            f"BLAS: {blas_info()}\n"
            f"software: {', '.join(versions)}")


# ---------------------------------------------------------------- output

def fmt_time(seconds):
    """A duration with a unit that keeps three significant figures readable."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.2f} us"


def _fmt_mib(nbytes):
    return "-" if nbytes is None else f"{nbytes / 2 ** 20:.1f}"


def _fmt_ratio(ratio):
    return f"{ratio:.3g}" if ratio < 100 else f"{ratio:.0f}"


def format_table(results, markdown=False):
    """The results ([(workload, rows), ...]) as a text or GitHub-markdown table."""
    head = ("workload / peer", "time", "vs bf", "GFLOP/s", "state MiB", "run MiB", "final cost")
    lines = []
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("| --- | " + " | ".join(["---:"] * (len(head) - 1)) + " |")
    else:
        lines.append(f"{head[0]:<22}{head[1]:>16}{head[2]:>8}{head[3]:>9}"
                     f"{head[4]:>11}{head[5]:>9}{head[6]:>12}")
        lines.append("-" * len(lines[0]))
    for w, problem, rows in results:
        title = (f"{w.title}, lr {w.learning_rate:g}, {problem.n_samples} samples, "
                 f"{w.epochs} epoch{'s' if w.epochs > 1 else ''}/call: per {w.unit}")
        lines.append(f"| **{title}** |" + " |" * (len(head) - 1) if markdown else title)
        for row in rows:
            if row["note"] is not None:
                cells = (row["label"], f"skipped: {row['note']}")
                if markdown:
                    lines.append(f"| {cells[0]} | {cells[1]} |" + " |" * (len(head) - 2))
                else:
                    lines.append(f"  {cells[0]:<20}  {cells[1]}")
                continue
            cost = "-" if row["final_cost"] is None else f"{row['final_cost']:.5g}"
            ratio = row.get("ratio")
            cells = (row["label"], f"{fmt_time(row['per_unit'])}/{w.unit[:2]}",
                     "-" if ratio is None else _fmt_ratio(ratio), f"{row['gflops']:.3g}",
                     _fmt_mib(row["state_bytes"]), _fmt_mib(row["peak_bytes"]), cost)
            if markdown:
                lines.append("| " + " | ".join(cells) + " |")
            else:
                lines.append(f"  {cells[0]:<20}{cells[1]:>16}{cells[2]:>8}{cells[3]:>9}"
                             f"{cells[4]:>11}{cells[5]:>9}{cells[6]:>12}")
    return "\n".join(lines)


LEGEND = ("time: median per epoch (ep) or step (st; W3: one sample) over interleaved calls; "
          "vs bf: that time / backprop_fast's (above 1: backprop_fast is faster); "
          "GFLOP/s: 6 x batch x parameters per step; state MiB: resident memory added by "
          "setting the peer up; run MiB: extra peak resident memory during a training call; "
          "final cost: mean cost of the trained parameters on the training data "
          f"(first {EVAL_ROWS:,} samples at most), same float64 code for every peer. "
          "Peers without their own shuffling share one pre-drawn order and agree to rounding; "
          "backprop_fast and scikit-learn draw their own orders, which moves the final cost "
          "of shuffled runs (much for online SGD, W3).")


def plot_speedups(results, path, threads=None):
    """Bar chart of each peer's time / backprop_fast's time, per workload (log scale)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [w.key for w, _, _ in results]
    peers = []
    for _, _, rows in results:
        for row in rows:
            if row["peer"] != "backprop_fast" and row.get("ratio") and row["peer"] not in peers:
                peers.append(row["peer"])
    labels = {}
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(keys) + 2), 4.5))
    width = 0.8 / max(1, len(peers))
    for j, peer in enumerate(peers):
        xs, ys = [], []
        for i, (_, _, rows) in enumerate(results):
            for row in rows:
                if row["peer"] == peer and row.get("ratio"):
                    xs.append(i + (j - (len(peers) - 1) / 2) * width)
                    ys.append(row["ratio"])
                    labels[peer] = row["label"]
        ax.bar(xs, ys, width, label=labels.get(peer, peer))
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)), keys)
    ax.set_ylabel("peer time / backprop_fast time\n(above 1: backprop_fast is faster)")
    ax.set_title("backprop_fast speed-up over each peer (medians"
                 + (f", {threads} threads each)" if threads else ")"))
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- driver

def run(only=None, quick=False, threads=2, peers=None, repeats=None, plot=None,
        markdown=False, out=None, log=None):
    """Run the comparison, print the table to ``out``; return the results.

    ``peers`` is a list of peer names (see ``backprop_fast.bench.peers.PEERS``), default all.
    Returns [(workload, problem, rows), ...].
    """
    from . import peers as bench_peers

    out = out or sys.stdout
    chosen = workloads(quick, only)
    if not chosen:
        raise ValueError(f"no workload matches --only {','.join(only)}; "
                         f"known: {', '.join(w.key for w in WORKLOADS)}")
    classes = bench_peers.select(peers)
    context, notes = limit_threads(threads)
    results = []
    with context:
        bench_peers.prepare(classes, threads)  # imports: before any memory is measured
        env = environment()  # the load average before this run's own load
        for w in chosen:
            if log:
                log(f"{w.key}: building data and peers")
            problem = Problem(w)
            rows = compare(problem, classes, threads, repeats=repeats,
                           budget=QUICK_BUDGET if quick else FULL_BUDGET, log=log)
            results.append((w, problem, rows))
    print(env, file=out)
    print(f"threads: {threads} for every peer" + "".join(f"; {n}" for n in notes), file=out)
    command = "python -m backprop_fast bench" + (" --quick" if quick else "") + (
        f" --only {','.join(only)}" if only else "") + f" --threads {threads}"
    print(f"command: {command}" + (f" --peers {','.join(peers)}" if peers else ""), file=out)
    print(file=out)
    print(format_table(results, markdown=markdown), file=out)
    print(file=out)
    print(textwrap.fill(LEGEND, 100), file=out)
    noisy = [f"{w.key} {row['label']}" for w, _, rows in results for row in rows
             if row["note"] is None and row["spread"] > 0.25]
    if noisy:
        print(f"noisy (max-min above 25% of the median): {', '.join(noisy)}", file=out)
    fewer = [f"{w.key} {row['label']} ({row['repeats']})" for w, _, rows in results
             for row in rows if row["note"] is None and row["repeats"] < (repeats or w.repeats)]
    if fewer:
        print(f"fewer timed calls (time budget): {', '.join(fewer)}", file=out)
    if plot:
        try:
            plot_speedups(results, plot, threads)
            print(f"\nspeed-up chart written to {plot}", file=out)
        except ImportError:
            print("\nno chart: matplotlib is not installed "
                  "(pip install 'backprop_fast[plot]')", file=out)
    return results


def _comma_list(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def configure_parser(parser):
    """Add the bench options to ``parser`` and set its ``func``."""
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, smaller W4/W5 data: well under two minutes")
    parser.add_argument("--only", type=_comma_list, metavar="W2,W5",
                        help="workload groups (W1..W5) or keys (W2-f32) to run")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a bar chart of the speed-ups (needs matplotlib)")
    parser.add_argument("--threads", type=int, default=2, metavar="N",
                        help="threads for every peer (BLAS, OpenMP, PyTorch, XLA); default 2")
    parser.add_argument("--peers", type=_comma_list, metavar="NAMES",
                        help="peers to run (default: all installed): backprop_fast, numpy, "
                             "sklearn, torch, jax_jit, jax_scan, matmul")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="timed calls per peer (default: per workload)")
    parser.add_argument("--markdown", action="store_true",
                        help="print the table as GitHub markdown")
    parser.set_defaults(func=_run_command)
    return parser


def _run_command(args):
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)
    try:
        run(only=args.only, quick=args.quick, threads=args.threads, peers=args.peers,
            repeats=args.repeats, plot=args.plot, markdown=args.markdown, log=log)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    return 0


def add_bench_command(commands):
    """Register ``bench`` on the subparsers of ``python -m backprop_fast``."""
    parser = commands.add_parser(
        "bench", help="time backprop_fast against NumPy, scikit-learn, PyTorch and JAX",
        description=__doc__.split("\n\n")[0])
    return configure_parser(parser)


def main(argv=None):
    """``python -m backprop_fast.bench [options]``: the same as the ``bench`` command."""
    parser = configure_parser(argparse.ArgumentParser(prog="python -m backprop_fast bench"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
