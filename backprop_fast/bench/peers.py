"""One small adapter per peer for ``python -m backprop_fast bench`` and benches/.

Every adapter takes a :class:`backprop_fast.bench.Problem` and a thread count
and offers:

``unavailable()``      (class method) None, or why the peer cannot run here
                       (not installed: the note says how to install it)
``skip_reason(p)``     (class method) None, or why the peer cannot run problem p
``reset()``            put the problem's initial parameters back (untimed)
``run()``              train ``epochs`` epochs; returns when the work is done
``parameters()``       (weights, biases) as NumPy arrays, weights[m] of shape
                       (n_out, n_in), or None for a peer that does not train
``close()``            drop large buffers

The adapters build everything the timed call needs beforehand (tensors,
index arrays, compiled functions), so that ``run`` times training alone.
Peers that accept an order of the samples visit them in the problem's
pre-drawn ``orders``; backprop_fast and scikit-learn shuffle with their own
seeded random streams (neither takes an order from outside).

The adapters sit in this optional submodule, imported only when the bench
command runs, so that ``python -m backprop_fast bench`` works from an installed
package while ``import backprop_fast`` never loads them or their peers.
"""
import importlib
import warnings
from typing import Optional

import numpy as np

from ..network import Network
from ..reference import ReferenceNetwork

__all__ = ["PEERS", "select", "prepare", "BackpropFast", "NumpyReference", "Sklearn",
           "TorchEager", "JaxJit", "JaxScan", "NumpyMatmuls"]


class Peer:
    name = "?"
    label = "?"
    module: Optional[str] = None   # import name of the peer's library
    install: Optional[str] = None  # how to install it

    @classmethod
    def unavailable(cls):
        if cls.module is None:
            return None
        try:
            importlib.import_module(cls.module)
        except ImportError:
            return f"{cls.module} not installed ({cls.install})"
        return None

    @classmethod
    def skip_reason(cls, problem):
        return None

    @classmethod
    def prepare(cls, threads):
        """Import the library and set its thread count (once per run)."""

    def __init__(self, problem, threads):
        self.problem = problem

    def reset(self):
        raise NotImplementedError

    def run(self):
        raise NotImplementedError

    def parameters(self):
        raise NotImplementedError

    def close(self):
        self.__dict__.clear()


class BackpropFast(Peer):
    """``Network.fit``: every epoch of a call in one native call."""

    name, label = "backprop_fast", "backprop_fast"

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        p = problem
        self.net = Network(list(p.layer_sizes), list(p.activations), p.loss, dtype=p.dtype,
                           seed=1234)

    def reset(self):
        W0, b0 = self.problem.init
        for dst, src in zip(self.net.weights + self.net.biases, W0 + b0):
            dst[...] = src

    def run(self):
        p = self.problem
        self.net.fit(p.X, p.Y, epochs=p.epochs, batch_size=p.workload.batch_size,
                     learning_rate=p.learning_rate, shuffle=p.shuffle)

    def parameters(self):
        return self.net.weights, self.net.biases


class NumpyReference(Peer):
    """The package's pure-NumPy ``ReferenceNetwork`` (one NumPy expression per formula)."""

    name, label = "numpy", "numpy reference"

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        W0, b0 = problem.init
        self.ref = ReferenceNetwork(W0, b0, problem.activations, problem.loss)
        self.order = None if problem.orders is None else problem.orders.__getitem__

    def reset(self):
        W0, b0 = self.problem.init
        for dst, src in zip(self.ref.weights + self.ref.biases, W0 + b0):
            dst[...] = src

    def run(self):
        p = self.problem
        self.ref.fit(p.X, p.Y, p.epochs, p.workload.batch_size, p.learning_rate,
                     order=self.order)

    def parameters(self):
        return self.ref.weights, self.ref.biases


class Sklearn(Peer):
    """MLPClassifier / MLPRegressor: solver "sgd", momentum 0, alpha 0, constant
    learning rate, no early stopping, float32 kept float32. The initial weights
    are set by writing coefs_/intercepts_ (after a one-batch partial_fit that
    creates them) and training with warm_start=True, max_iter=epochs."""

    name, label = "sklearn", "scikit-learn"
    module, install = "sklearn", "pip install scikit-learn"
    ACTIVATIONS = {"sigmoid": "logistic", "tanh": "tanh", "relu": "relu",
                   "identity": "identity"}

    @classmethod
    def skip_reason(cls, problem):
        hidden, out = problem.activations[:-1], problem.activations[-1]
        if len(set(hidden)) > 1:
            return "scikit-learn takes one activation for all hidden layers"
        if hidden and hidden[0] not in cls.ACTIVATIONS:
            return f"scikit-learn has no {hidden[0]} hidden activation"
        n_out = problem.layer_sizes[-1]
        if problem.loss == "cross_entropy":
            if problem.labels is None:
                return "scikit-learn's classifier needs class labels"
            if not ((out == "softmax" and n_out >= 3) or (out == "sigmoid" and n_out == 1)):
                return "scikit-learn's classifier: softmax with >= 3 classes or 1 sigmoid output"
        elif out != "identity":
            return "scikit-learn's regressor has an identity output"
        return None

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        p = problem
        hidden = p.activations[:-1]
        classify = p.loss == "cross_entropy"
        est_class = MLPClassifier if classify else MLPRegressor
        self.est = est_class(
            hidden_layer_sizes=tuple(p.layer_sizes[1:-1]),
            activation=self.ACTIVATIONS[hidden[0]] if hidden else "identity",
            solver="sgd", alpha=0.0, batch_size=p.batch, learning_rate="constant",
            learning_rate_init=p.learning_rate, momentum=0.0, nesterovs_momentum=False,
            max_iter=p.epochs, shuffle=p.shuffle, random_state=1234, tol=0.0,
            early_stopping=False, n_iter_no_change=2 ** 31 - 1, warm_start=True)
        self.y = p.labels if classify else p.Y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if classify:  # with warm_start every call must see every class
                classes, first = np.unique(self.y, return_index=True)
                self.est.partial_fit(p.X[first], self.y[first], classes=classes)
            else:
                self.est.partial_fit(p.X[:p.batch], self.y[:p.batch])
        assert self.est.coefs_[0].dtype == p.X.dtype, "scikit-learn changed the dtype"
        self.reset()

    def reset(self):
        W0, b0 = self.problem.init
        for coef, W in zip(self.est.coefs_, W0):
            coef[...] = W.T
        for intercept, b in zip(self.est.intercepts_, b0):
            intercept[...] = b

    def run(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached, on purpose
            self.est.fit(self.problem.X, self.y)

    def parameters(self):
        return [c.T for c in self.est.coefs_], list(self.est.intercepts_)


class TorchEager(Peer):
    """PyTorch eager on the CPU: nn.Sequential of nn.Linear and activations,
    optim.SGD (plain), pre-made tensors; each step gathers its minibatch with
    index_select, zeroes the gradients, runs forward, backward and the step."""

    name, label = "torch", "torch eager"
    module, install = "torch", "pip install torch==2.13.0"

    @classmethod
    def prepare(cls, threads):
        import torch
        torch.set_num_threads(threads)

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        import torch
        from torch import nn
        torch.set_num_threads(threads)
        p = problem
        dtype = {"float32": torch.float32, "float64": torch.float64}[p.dtype]
        acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU,
                "identity": nn.Identity}
        layers = []
        sizes = p.layer_sizes
        for m, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out, dtype=dtype))
            if m < len(sizes) - 2:
                layers.append(acts[p.activations[m]]())
        self.model = nn.Sequential(*layers)  # outputs the last layer's pre-activations
        self.linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
        self.X = torch.from_numpy(p.X)
        out, loss = p.activations[-1], p.loss
        F = torch.nn.functional
        if loss == "cross_entropy" and out == "softmax":
            self.Y = torch.from_numpy(np.asarray(p.labels, dtype=np.int64))
            self.loss = F.cross_entropy
        elif loss == "cross_entropy":  # sigmoid output: binary cross-entropy per unit
            self.Y = torch.from_numpy(p.Y)
            self.loss = lambda z, y: F.binary_cross_entropy_with_logits(
                z, y, reduction="sum") / z.shape[0]
        else:
            self.Y = torch.from_numpy(p.Y)
            post = {"identity": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                    "relu": torch.relu, "softmax": lambda z: torch.softmax(z, 1)}[out]
            self.loss = lambda z, y: 0.5 * F.mse_loss(post(z), y, reduction="sum") / z.shape[0]
        self.opt = torch.optim.SGD(self.model.parameters(), lr=p.learning_rate)
        if p.orders is None and p.batch == p.n_samples:
            self.batches = None  # full batch in order: no gather
        else:
            self.batches = [[torch.from_numpy(np.ascontiguousarray(idx)) for idx in
                             p.batches(e)] for e in range(p.epochs)]
        self.torch = torch
        self.reset()

    def reset(self):
        W0, b0 = self.problem.init
        with self.torch.no_grad():
            for layer, W, b in zip(self.linears, W0, b0):
                layer.weight.copy_(self.torch.from_numpy(W))
                layer.bias.copy_(self.torch.from_numpy(b))

    def _step(self, xb, yb):
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(xb), yb).backward()
        self.opt.step()

    def run(self):
        X, Y = self.X, self.Y
        if self.batches is None:
            for _ in range(self.problem.epochs):
                self._step(X, Y)
            return
        for epoch in self.batches:
            for idx in epoch:
                self._step(X.index_select(0, idx), Y.index_select(0, idx))

    def parameters(self):
        return ([layer.weight.detach().numpy().copy() for layer in self.linears],
                [layer.bias.detach().numpy().copy() for layer in self.linears])


def _jax_setup():
    import jax
    jax.config.update("jax_enable_x64", True)  # float64 workloads; float32 stays float32
    return jax


def _jax_sgd_step(problem):
    """A pure function (params, xb, yb) -> params: one plain SGD step."""
    import jax
    import jax.numpy as jnp

    acts, loss, out = problem.activations, problem.loss, problem.activations[-1]
    rate = problem.learning_rate
    fns = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu,
           "identity": lambda z: z, "softmax": lambda z: jax.nn.softmax(z, axis=1)}

    def cost(params, xb, yb):
        a = xb
        for m, (W, b) in enumerate(params):
            z = a @ W.T + b
            if m < len(params) - 1:
                a = fns[acts[m]](z)
        if loss == "cross_entropy" and out == "softmax":
            per = -jnp.sum(yb * jax.nn.log_softmax(z, axis=1), axis=1)
        elif loss == "cross_entropy":
            per = jnp.sum(jax.nn.softplus(z) - yb * z, axis=1)
        else:
            per = 0.5 * jnp.sum((fns[out](z) - yb) ** 2, axis=1)
        return jnp.mean(per)

    grad = jax.grad(cost)

    def step(params, xb, yb):
        g = grad(params, xb, yb)
        return tuple((W - rate * gW, b - rate * gb) for (W, b), (gW, gb) in zip(params, g))

    return step


class _Jax(Peer):
    module, install = "jax", "pip install jax"

    @classmethod
    def prepare(cls, threads):
        _jax_setup()

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        self.jax = jax = _jax_setup()
        W0, b0 = problem.init
        self.init = tuple((jax.device_put(W), jax.device_put(b)) for W, b in zip(W0, b0))
        self.X = jax.device_put(problem.X)
        self.Y = jax.device_put(problem.Y)
        self.step = _jax_sgd_step(problem)
        self.params = self.init

    def reset(self):
        self.params = self.init  # parameters are never donated: the initial arrays stay

    def parameters(self):
        return ([np.asarray(W) for W, _ in self.params], [np.asarray(b) for _, b in self.params])


class JaxJit(_Jax):
    """A jitted SGD step (minibatch gather inside) called from a Python loop."""

    name, label = "jax_jit", "jax jit step"

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        jax = self.jax
        step = self.step
        p = problem
        if p.orders is None and p.batch == p.n_samples:
            self.batches = None
            self.jstep = jax.jit(step)
        else:
            self.batches = [[jax.device_put(idx) for idx in p.batches(e)]
                            for e in range(p.epochs)]
            self.jstep = jax.jit(lambda params, X, Y, idx: step(params, X[idx], Y[idx]))

    def run(self):
        params, X, Y, jstep = self.params, self.X, self.Y, self.jstep
        if self.batches is None:
            for _ in range(self.problem.epochs):
                params = jstep(params, X, Y)
        else:
            for epoch in self.batches:
                for idx in epoch:
                    params = jstep(params, X, Y, idx)
        self.params = self.jax.block_until_ready(params)


class JaxScan(_Jax):
    """The whole call jitted: lax.scan over the epochs, and within each epoch
    lax.scan over the full minibatches (gathered from the pre-drawn order inside
    the scan), then one step on the remainder if the batch does not divide the data."""

    name, label = "jax_scan", "jax scan"

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        jax = self.jax
        lax = jax.lax
        step = self.step
        p = problem
        n, b = p.n_samples, p.batch
        full, rem = divmod(n, b)
        if p.orders is None and b == n:
            def train(params, X, Y):
                def epoch(params, _):
                    return step(params, X, Y), None
                return lax.scan(epoch, params, None, length=p.epochs)[0]
            self.args = ()
            self.train = jax.jit(train)
        else:
            orders = p.orders if p.orders is not None else np.tile(np.arange(n), (p.epochs, 1))
            idx_full = orders[:, :full * b].reshape(p.epochs, full, b)
            idx_rem = orders[:, full * b:]

            def train_in_orders(params, X, Y, idx_full, idx_rem):
                def batch_step(params, idx):
                    return step(params, X[idx], Y[idx]), None

                def epoch(params, xs):
                    i_full, i_rem = xs
                    params = lax.scan(batch_step, params, i_full)[0]
                    if rem:
                        params = step(params, X[i_rem], Y[i_rem])
                    return params, None
                return lax.scan(epoch, params, (idx_full, idx_rem))[0]
            self.args = (jax.device_put(idx_full), jax.device_put(idx_rem))
            self.train = jax.jit(train_in_orders)

    def run(self):
        self.params = self.jax.block_until_ready(
            self.train(self.params, self.X, self.Y, *self.args))


class NumpyMatmuls(Peer):
    """A ceiling, not a trainer: only the matrix products of each step (forward
    a @ W.T, weight gradient delta.T @ a, back-propagated delta @ W) through
    NumPy's BLAS into preallocated outputs, on full-size batches. For the large
    workloads (W4, W5) only."""

    name, label = "matmul", "numpy matmuls only"
    MIN_PARAMETERS = 100_000

    @classmethod
    def skip_reason(cls, problem):
        if problem.n_parameters < cls.MIN_PARAMETERS:
            return "ceiling shown for large networks only"
        return None

    def __init__(self, problem, threads):
        super().__init__(problem, threads)
        p = problem
        dt = np.dtype(p.dtype)
        rng = np.random.default_rng(0)
        self.W = [W.copy() for W in p.init[0]]
        self.a = [np.ascontiguousarray(p.X[:p.batch])] + [
            np.empty((p.batch, n), dt) for n in p.layer_sizes[1:]]
        self.d = [rng.standard_normal((p.batch, n)).astype(dt) for n in p.layer_sizes[1:]]
        self.dW = [np.empty_like(W) for W in self.W]
        self.steps = p.epochs * p.steps_per_epoch

    def reset(self):
        pass

    def run(self):
        W, a, d, dW = self.W, self.a, self.d, self.dW
        layers = len(W)
        for _ in range(self.steps):
            for m in range(layers):
                np.matmul(a[m], W[m].T, out=a[m + 1])
            for m in range(layers - 1, -1, -1):
                np.matmul(d[m].T, a[m], out=dW[m])
                if m > 0:
                    np.matmul(d[m], W[m], out=d[m - 1])

    def parameters(self):
        return None


PEERS = (BackpropFast, NumpyReference, Sklearn, TorchEager, JaxJit, JaxScan, NumpyMatmuls)


def select(names=None):
    """The peer classes named (all by default), backprop_fast always first."""
    if not names:
        return list(PEERS)
    by_name = {cls.name: cls for cls in PEERS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)}; known: {', '.join(by_name)}")
    chosen = [BackpropFast] + [by_name[n] for n in names if n != "backprop_fast"]
    return [cls for cls in PEERS if cls in chosen]


def prepare(classes, threads):
    """Import every available peer's library and set its threads, before measuring."""
    for cls in classes:
        if cls.unavailable() is None:
            cls.prepare(threads)
