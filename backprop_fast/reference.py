"""Pure-NumPy backpropagation: the test oracle and the benchmark baseline.

The math is the one the kernel implements (see ``Network``): rows are samples,
``z = a_prev @ W.T + b``, derivatives taken from the outputs, the output delta
of a matched cost (sigmoid or softmax with cross-entropy, identity with squared
error) computed directly as ``a - y``, costs computed from the pre-activations
and reported as means over the samples. It is written plainly, one NumPy
expression per formula, so that it can be read against the tutorial.
"""
import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity", "softmax")
LOSSES = ("squared_error", "cross_entropy")


def activate(name, z):
    """Return the activation ``name`` applied to the pre-activations ``z``."""
    if name == "sigmoid":
        # exp of a non-positive argument only: no overflow for any z.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    if name == "identity":
        return z.copy()
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name, a):
    """Return da/dz of an elementwise activation, from its outputs ``a``."""
    if name == "sigmoid":
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "identity":
        return np.ones_like(a)
    raise ValueError(f"{name!r} has no elementwise derivative")


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def sample_costs(loss, output, z, a, y):
    """Per-sample cost, from the pre-activations ``z`` where the output saturates."""
    z = z.astype(np.float64)
    y = y.astype(np.float64)
    if loss == "squared_error":
        return 0.5 * np.sum((a.astype(np.float64) - y) ** 2, axis=1)
    if loss == "poisson":
        # Half the Poisson deviance of the mean exp(z).
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
        return np.sum(np.exp(z) - y * z + ylogy - y, axis=1)
    if output == "sigmoid":
        # -[y log a + (1-y) log(1-a)] with a = sigmoid(z) is softplus(z) - y z.
        return np.sum(_softplus(z) - y * z, axis=1)
    # softmax: -sum y log a = sum(y) logsumexp(z) - sum y z
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.sum(np.exp(z - zmax), axis=1))
    return y.sum(axis=1) * lse - np.sum(y * z, axis=1)


def output_delta(loss, output, a, y):
    """dC/dz of the last layer for one sample per row (not yet averaged)."""
    g = a - y
    if loss == "poisson":
        return np.exp(a) - y
    if loss == "cross_entropy" and output == "softmax":
        # -sum y log a gives sum(y) a - y: a - y when the targets sum to 1.
        return y.sum(axis=1, keepdims=True) * a - y
    if loss == "cross_entropy" or output == "identity":
        return g
    if output == "softmax":
        return a * (g - np.sum(g * a, axis=1, keepdims=True))
    return g * derivative(output, a)


class ReferenceNetwork:
    """A dense network trained by backpropagation in NumPy.

    Parameters
    ----------
    weights, biases : lists of arrays
        ``weights[m]`` has shape (n_out, n_in), ``biases[m]`` shape (n_out,).
        They are copied; the dtype of ``weights[0]`` is used throughout.
    activations : list of str
        One name per layer.
    loss : {"squared_error", "cross_entropy"}
    """

    def __init__(self, weights, biases, activations, loss):
        dtype = np.asarray(weights[0]).dtype
        self.weights = [np.array(w, dtype=dtype) for w in weights]
        self.biases = [np.array(b, dtype=dtype) for b in biases]
        self.activations = list(activations)
        self.loss = loss
        self.dtype = dtype

    def _forward(self, X):
        zs, acts = [], [np.asarray(X, dtype=self.dtype)]
        for W, b, name in zip(self.weights, self.biases, self.activations):
            z = acts[-1] @ W.T + b
            zs.append(z)
            acts.append(activate(name, z))
        return zs, acts

    def predict(self, X):
        return self._forward(X)[1][-1]

    def evaluate(self, X, y):
        zs, acts = self._forward(X)
        y = np.asarray(y, dtype=self.dtype)
        return float(np.mean(sample_costs(self.loss, self.activations[-1], zs[-1], acts[-1], y)))

    def gradients(self, X, y):
        """Return (cost, dW, db): the mean cost and its gradients."""
        X = np.asarray(X, dtype=self.dtype)
        zs, acts = self._forward(X)
        y = np.asarray(y, dtype=self.dtype)
        n = X.shape[0]
        cost = float(np.mean(sample_costs(self.loss, self.activations[-1], zs[-1], acts[-1], y)))
        delta = output_delta(self.loss, self.activations[-1], acts[-1], y)
        dW = [None] * len(self.weights)
        db = [None] * len(self.weights)
        for m in range(len(self.weights) - 1, -1, -1):
            dW[m] = (delta.T @ acts[m]) / self.dtype.type(n)
            db[m] = (delta.astype(np.float64).sum(axis=0) / n).astype(self.dtype)
            if m > 0:
                delta = (delta @ self.weights[m]) * derivative(self.activations[m - 1], acts[m])
        return cost, dW, db

    def train_step(self, X, y, learning_rate):
        cost, dW, db = self.gradients(X, y)
        lr = self.dtype.type(learning_rate)
        for W, b, gW, gb in zip(self.weights, self.biases, dW, db):
            W -= lr * gW
            b -= lr * gb
        return cost

    def fit(self, X, y, epochs, batch_size=None, learning_rate=0.1, order=None):
        """Minibatch gradient descent; returns the per-epoch mean batch costs.

        ``order`` is an optional callable ``epoch -> permutation`` of the
        sample indices; without it the samples are visited in order.
        """
        X = np.asarray(X, dtype=self.dtype)
        y = np.asarray(y, dtype=self.dtype)
        n = X.shape[0]
        batch = n if batch_size is None else min(batch_size, n)
        history = []
        for epoch in range(epochs):
            idx = np.arange(n) if order is None else order(epoch)
            total = 0.0
            for start in range(0, n, batch):
                sel = idx[start:start + batch]
                total += self.train_step(X[sel], y[sel], learning_rate) * len(sel)
            history.append(total / n)
        return history
