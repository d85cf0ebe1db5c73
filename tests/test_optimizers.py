"""Optimizers of ``Network.fit``: SGD (momentum, Nesterov, weight decay), Adam and AdamW.

Each step must be the one ``torch.optim.SGD``, ``Adam`` and ``AdamW`` take with
the same hyperparameters. The oracle below is written from PyTorch's documented
algorithms (the pseudo-code in the docs of torch.optim.SGD/Adam/AdamW), applied
to the NumPy reference gradients of each minibatch. When torch is importable the
kernel is also compared with torch.optim itself.

Also here: continued training (the optimizer state lives on the network),
partial_fit, and the reset of the state when the optimizer changes.
"""
import numpy as np
import pytest

from backprop_fast import Network
from backprop_fast.reference import ReferenceNetwork

DTYPES = [np.float64, np.float32]

# Tolerances for kernel-versus-oracle after a dozen optimizer steps: the
# gradients agree to a few ulps (different summation order), and the steps
# carry those differences along.
STEP_TOL = {
    np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11),
    np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
}

# (optimizer, hyperparameters passed to fit)
CONFIGS = [
    ("sgd", {}),
    ("sgd", dict(weight_decay=0.05)),
    ("sgd", dict(momentum=0.9)),
    ("sgd", dict(momentum=0.5, weight_decay=0.01)),
    ("sgd", dict(momentum=0.9, nesterov=True)),
    ("sgd", dict(momentum=0.7, nesterov=True, weight_decay=0.02)),
    ("adam", {}),
    ("adam", dict(weight_decay=0.01)),
    ("adam", dict(beta1=0.5, beta2=0.9, epsilon=1e-3)),
    ("adamw", {}),
    ("adamw", dict(weight_decay=0.1)),
    ("adamw", dict(beta1=0.8, beta2=0.99, epsilon=1e-6, weight_decay=0.3)),
]
RATES = {"sgd": 0.2, "adam": 0.01, "adamw": 0.01}


def _config_id(config):
    name, hyper = config
    return name + "".join(f"-{k}{v}" for k, v in hyper.items())


# ----------------------------------------------------------------- helpers

def _problem(kind, dtype, n=23, seed=0):
    """A small network (own seeded parameters) and data for it. "wide" has a
    first layer of 40 x 30: with batches of 5 or more the kernel trains it
    transposed (above 4,096 multiply-adds a batch)."""
    rng = np.random.default_rng(seed)
    if kind in ("softmax", "wide"):
        n_in, n_hidden = (40, 30) if kind == "wide" else (5, 6)
        net = Network([n_in, n_hidden, 3], ["tanh", "softmax"], "cross_entropy", dtype=dtype,
                      seed=seed)
        X = rng.normal(size=(n, n_in))
        Y = np.eye(3)[rng.integers(0, 3, n)]
    else:
        net = Network([4, 5, 2], ["sigmoid", "identity"], "squared_error", dtype=dtype,
                      seed=seed)
        X = rng.normal(size=(n, 4))
        Y = np.stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3]], axis=1)
    for W, b in zip(net.weights, net.biases):
        W[...] = rng.normal(scale=1 / np.sqrt(W.shape[1]), size=W.shape)
        b[...] = rng.normal(scale=0.3, size=b.shape)
    return net, X.astype(dtype), Y.astype(dtype)


def _params(net):
    """A copy of the parameters, in PyTorch's order: W0, b0, W1, b1, ..."""
    out = []
    for W, b in zip(net.weights, net.biases):
        out += [np.array(W), np.array(b)]
    return out


def _flat(net):
    return np.concatenate([p.ravel() for p in _params(net)])


def _snapshots():
    """A callback that records the parameters after every epoch, and its list."""
    shots = []

    def callback(epoch, logs):
        assert epoch == len(shots)
        shots.append(_params(callback.net))

    return callback, shots


class NumpyOptimizer:
    """torch.optim.SGD, Adam and AdamW as PyTorch documents them, in NumPy.

    SGD (dampening 0, maximize False):
        g <- g + wd * p                      if wd != 0
        b <- g (first step), mu * b + g      if mu != 0
        g <- g + mu * b if nesterov else b   if mu != 0
        p <- p - lr * g
    Adam:
        g <- g + wd * p                      if wd != 0
        m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
        m_hat = m / (1 - beta1^t);  v_hat = v / (1 - beta2^t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)
    AdamW: as Adam, but p <- p (1 - lr wd) first and no L2 term in g.
    All arithmetic in the parameters' dtype (as torch does for such tensors).
    """

    def __init__(self, name, lr, momentum=0.0, nesterov=False, beta1=0.9, beta2=0.999,
                 epsilon=1e-8, weight_decay=0.0):
        self.name, self.lr, self.mu, self.nesterov = name, lr, momentum, nesterov
        self.beta1, self.beta2, self.eps, self.wd = beta1, beta2, epsilon, weight_decay
        self.t = 0
        self.state = None

    def step(self, params, grads):
        self.t += 1
        if self.state is None:
            self.state = [dict() for _ in params]
        for p, g, st in zip(params, grads, self.state):
            T = p.dtype.type
            lr, wd = T(self.lr), T(self.wd)
            if self.name == "sgd":
                if self.wd:
                    g = g + wd * p
                if self.mu:
                    mu = T(self.mu)
                    st["b"] = g.copy() if "b" not in st else mu * st["b"] + g
                    g = g + mu * st["b"] if self.nesterov else st["b"]
                p -= lr * g
                continue
            if self.name == "adamw":
                p *= T(1) - lr * wd
            elif self.wd:
                g = g + wd * p
            b1, b2 = T(self.beta1), T(self.beta2)
            if "m" not in st:
                st["m"] = np.zeros_like(p)
                st["v"] = np.zeros_like(p)
            st["m"] = b1 * st["m"] + (T(1) - b1) * g
            st["v"] = b2 * st["v"] + (T(1) - b2) * g * g
            m_hat = st["m"] / T(1 - self.beta1 ** self.t)
            v_hat = st["v"] / T(1 - self.beta2 ** self.t)
            p -= lr * m_hat / (np.sqrt(v_hat) + T(self.eps))


def _oracle_fit(net, X, Y, epochs, batch, opt):
    """Minibatch training in order with ReferenceNetwork gradients and ``opt``.

    Returns (per-epoch mean costs, per-epoch parameter snapshots)."""
    params = _params(net)
    n = X.shape[0]
    batch = n if batch is None else batch
    losses, shots = [], []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, n, batch):
            Xb, Yb = X[start:start + batch], Y[start:start + batch]
            ref = ReferenceNetwork(params[0::2], params[1::2], net.activations, net.loss)
            cost, dW, db = ref.gradients(Xb, Yb)
            grads = [None] * len(params)
            grads[0::2], grads[1::2] = dW, db
            opt.step(params, grads)
            total += cost * Xb.shape[0]
        losses.append(total / n)
        shots.append([p.copy() for p in params])
    return losses, shots


def _assert_shots_close(got, expected, tol):
    assert len(got) == len(expected)
    for e, (g_epoch, x_epoch) in enumerate(zip(got, expected)):
        for k, (g, x) in enumerate(zip(g_epoch, x_epoch)):
            what = f"epoch {e}, {'weights' if k % 2 == 0 else 'biases'}[{k // 2}]"
            np.testing.assert_allclose(g, x, err_msg=what, **tol)


# ------------------------------------------------- steps against the formulas

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [None, 8, 5])
@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_steps_match_pytorch_formulas(config, batch, dtype):
    """Three epochs in order, full batch or minibatches with a partial last one
    (23 = 8+8+7 = 5*4+3): the parameters after every epoch and the per-epoch
    costs equal those of the documented PyTorch step applied to the reference
    gradients of each minibatch."""
    name, hyper = config
    kind = "softmax" if name != "adamw" else "regression"
    net, X, Y = _problem(kind, dtype, seed=len(hyper) + (batch or 0))
    lr = RATES[name]
    expected_loss, expected = _oracle_fit(net, X, Y, 3, batch,
                                          NumpyOptimizer(name, lr, **hyper))
    callback, shots = _snapshots()
    callback.net = net
    history = net.fit(X, Y, epochs=3, batch_size=batch, learning_rate=lr, shuffle=False,
                      optimizer=name, callbacks=[callback], **hyper)
    _assert_shots_close(shots, expected, STEP_TOL[np.dtype(dtype)])
    np.testing.assert_allclose(history.loss, expected_loss, **STEP_TOL[np.dtype(dtype)])
    assert all(p.dtype == np.dtype(dtype) for p in _params(net))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
def test_steps_match_pytorch_formulas_with_the_first_layer_transposed(config, dtype):
    """As above on a network whose first layer the kernel trains transposed,
    optimizer state included (moved in and out of that layout every epoch,
    and kept across fit calls)."""
    name, hyper = config
    net, X, Y = _problem("wide", dtype, seed=len(hyper))
    lr = RATES[name] / 4
    expected_loss, expected = _oracle_fit(net, X, Y, 4, 8, NumpyOptimizer(name, lr, **hyper))
    shots, losses = [], []

    def callback(epoch, logs):
        shots.append(_params(net))

    for _ in range(2):
        history = net.fit(X, Y, epochs=2, batch_size=8, learning_rate=lr, shuffle=False,
                          optimizer=name, callbacks=[callback], **hyper)
        losses += history.loss
    _assert_shots_close(shots, expected, STEP_TOL[np.dtype(dtype)])
    np.testing.assert_allclose(losses, expected_loss, **STEP_TOL[np.dtype(dtype)])


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_steps_match_formulas_for_both_outputs_and_online(name):
    """Online steps (batch_size=1) on the other kind of network."""
    hyper = dict(momentum=0.8, nesterov=True, weight_decay=0.01) if name == "sgd" else \
        dict(weight_decay=0.05)
    kind = "regression" if name != "adamw" else "softmax"
    net, X, Y = _problem(kind, np.float64, n=9, seed=3)
    lr = RATES[name] / 2
    expected_loss, expected = _oracle_fit(net, X, Y, 2, 1, NumpyOptimizer(name, lr, **hyper))
    callback, shots = _snapshots()
    callback.net = net
    history = net.fit(X, Y, epochs=2, batch_size=1, learning_rate=lr, shuffle=False,
                      optimizer=name, callbacks=[callback], **hyper)
    _assert_shots_close(shots, expected, STEP_TOL[np.dtype(np.float64)])
    np.testing.assert_allclose(history.loss, expected_loss, rtol=1e-10)


def test_oracle_is_not_trivially_equal_across_optimizers():
    """Guard for the test itself: the configurations lead to different parameters,
    so the comparisons above do tell the optimizers apart (AdamW without decay
    excepted: it is Adam)."""
    finals = []
    for name, hyper in CONFIGS:
        net, X, Y = _problem("softmax", np.float64)
        _, shots = _oracle_fit(net, X, Y, 2, 8, NumpyOptimizer(name, RATES[name], **hyper))
        finals.append(np.concatenate([p.ravel() for p in shots[-1]]))
    for i in range(len(finals)):
        for j in range(i):
            if {CONFIGS[i][0], CONFIGS[j][0]} == {"adam", "adamw"} and \
                    not CONFIGS[i][1] and not CONFIGS[j][1]:
                continue  # AdamW without weight decay is Adam
            assert not np.allclose(finals[i], finals[j], rtol=1e-6, atol=1e-8), (
                CONFIGS[i], CONFIGS[j])


# ---------------------------------------------------------- torch.optim itself

def _torch_fit(net, X, Y, epochs, batch, name, lr, hyper):
    torch = pytest.importorskip("torch")
    tdtype = torch.float64 if net.dtype == np.float64 else torch.float32
    params = [torch.tensor(p, dtype=tdtype, requires_grad=True) for p in _params(net)]
    if name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=hyper.get("momentum", 0.0),
                              nesterov=hyper.get("nesterov", False),
                              weight_decay=hyper.get("weight_decay", 0.0))
    else:
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        opt = cls(params, lr=lr, betas=(hyper.get("beta1", 0.9), hyper.get("beta2", 0.999)),
                  eps=hyper.get("epsilon", 1e-8),
                  weight_decay=hyper.get("weight_decay", 0.0))
    acts = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda z: z}
    n = X.shape[0]
    batch = n if batch is None else batch
    losses, shots = [], []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, n, batch):
            a = torch.tensor(X[start:start + batch], dtype=tdtype)
            y = torch.tensor(Y[start:start + batch], dtype=tdtype)
            for m, act in enumerate(net.activations):
                z = a @ params[2 * m].T + params[2 * m + 1]
                a = z if m == len(net.activations) - 1 else acts[act](z)
            if net.activations[-1] == "softmax":
                cost = -(y * torch.log_softmax(a, dim=1)).sum(dim=1).mean()
            else:
                cost = 0.5 * ((acts[net.activations[-1]](a) - y) ** 2).sum(dim=1).mean()
            opt.zero_grad()
            cost.backward()
            opt.step()
            total += float(cost.detach()) * y.shape[0]
        losses.append(total / n)
        shots.append([p.detach().numpy().copy() for p in params])
    return losses, shots


TORCH_CONFIGS = [
    ("sgd", dict(momentum=0.9, weight_decay=0.01)),
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", dict(weight_decay=0.01, beta1=0.8)),
    ("adamw", dict(weight_decay=0.1, beta2=0.99)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", TORCH_CONFIGS, ids=_config_id)
def test_steps_match_torch_optim(config, dtype):
    """Same network, same minibatches in order (23 = 8+8+7), torch autograd and
    torch.optim: the parameters after each epoch agree."""
    name, hyper = config
    kind = "softmax" if name != "adamw" else "regression"
    net, X, Y = _problem(kind, dtype, seed=11)
    lr = RATES[name]
    expected_loss, expected = _torch_fit(net, X, Y, 3, 8, name, lr, hyper)
    callback, shots = _snapshots()
    callback.net = net
    history = net.fit(X, Y, epochs=3, batch_size=8, learning_rate=lr, shuffle=False,
                      optimizer=name, callbacks=[callback], **hyper)
    _assert_shots_close(shots, expected, STEP_TOL[np.dtype(dtype)])
    np.testing.assert_allclose(history.loss, expected_loss, **STEP_TOL[np.dtype(dtype)])


# ------------------------------------------------------- continued training

CONTINUE_CONFIGS = [
    ("sgd", {}),
    ("sgd", dict(momentum=0.9)),
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", {}),
    ("adamw", dict(weight_decay=0.05)),
]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", CONTINUE_CONFIGS, ids=_config_id)
def test_two_fits_of_five_epochs_equal_one_of_ten(config, dtype, shuffle):
    """The optimizer state (momentum buffer, Adam's moments and step count) and
    the shuffling generator carry over: bit-identical parameters and costs."""
    name, hyper = config
    nets = []
    for _ in range(2):
        net, X, Y = _problem("softmax", dtype, seed=5)
        nets.append(net)
    kw = dict(batch_size=7, learning_rate=RATES[name] / 2, shuffle=shuffle, optimizer=name,
              **hyper)
    one = nets[0].fit(X, Y, epochs=10, **kw)
    first = nets[1].fit(X, Y, epochs=5, **kw)
    second = nets[1].fit(X, Y, epochs=5, **kw)
    np.testing.assert_array_equal(_flat(nets[0]), _flat(nets[1]))
    assert one.loss == first.loss + second.loss
    # The comparison means something: training moved the parameters.
    net0, _, _ = _problem("softmax", dtype, seed=5)
    assert not np.allclose(_flat(net0), _flat(nets[0]))


def test_continued_training_keeps_state_so_a_fresh_state_differs():
    """Guard: restarting Adam (new network, same parameters) after 5 epochs
    gives other parameters than continuing it, so the test above would notice
    a state that is dropped between calls."""
    net, X, Y = _problem("softmax", np.float64, seed=5)
    net.fit(X, Y, epochs=5, batch_size=7, learning_rate=0.01, shuffle=False, optimizer="adam")
    fresh, _, _ = _problem("softmax", np.float64, seed=5)
    for p, q in zip(fresh.weights + fresh.biases, net.weights + net.biases):
        p[...] = q
    net.fit(X, Y, epochs=5, batch_size=7, learning_rate=0.01, shuffle=False, optimizer="adam")
    fresh.fit(X, Y, epochs=5, batch_size=7, learning_rate=0.01, shuffle=False, optimizer="adam")
    assert not np.allclose(_flat(net), _flat(fresh), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", CONTINUE_CONFIGS, ids=_config_id)
def test_partial_fit_over_pieces_equals_fit_in_order(config, dtype):
    """Each piece one batch: partial_fit over the pieces (two passes) equals
    fit(shuffle=False) with batch_size the piece size over the concatenation,
    bit for bit; the last piece is a partial batch."""
    name, hyper = config
    net_a, X, Y = _problem("softmax", dtype, seed=8)
    net_b, _, _ = _problem("softmax", dtype, seed=8)
    lr = RATES[name] / 2
    history = net_a.fit(X, Y, epochs=2, batch_size=6, learning_rate=lr, shuffle=False,
                        optimizer=name, **hyper)
    costs = []
    for _ in range(2):
        total = 0.0
        for start in range(0, X.shape[0], 6):
            h = net_b.partial_fit(X[start:start + 6], Y[start:start + 6], learning_rate=lr,
                                  optimizer=name, **hyper)
            assert len(h.loss) == 1
            total += h.loss[0] * X[start:start + 6].shape[0]
        costs.append(total / X.shape[0])
    np.testing.assert_array_equal(_flat(net_a), _flat(net_b))
    np.testing.assert_allclose(history.loss, costs, rtol=1e-12 if dtype == np.float64 else 1e-6)


def test_partial_fit_with_batch_size_takes_minibatches_in_order():
    net_a, X, Y = _problem("softmax", np.float64, seed=2)
    net_b, _, _ = _problem("softmax", np.float64, seed=2)
    net_a.fit(X, Y, epochs=1, batch_size=4, learning_rate=0.01, shuffle=False,
              optimizer="adam")
    net_b.partial_fit(X[:12], Y[:12], batch_size=4, learning_rate=0.01, optimizer="adam")
    net_b.partial_fit(X[12:], Y[12:], batch_size=4, learning_rate=0.01, optimizer="adam")
    np.testing.assert_array_equal(_flat(net_a), _flat(net_b))


@pytest.mark.parametrize("option", ["epochs", "shuffle"])
def test_partial_fit_rejects_epochs_and_shuffle(option):
    net, X, Y = _problem("softmax", np.float64)
    with pytest.raises(TypeError, match=option):
        net.partial_fit(X, Y, **{option: 2 if option == "epochs" else True})


@pytest.mark.parametrize("middle", [("sgd", dict(momentum=0.9)), ("adamw", {}),
                                    ("sgd", dict(weight_decay=0.01))],
                         ids=_config_id)
def test_switching_optimizer_resets_the_state(middle):
    """adam, then another optimizer, then adam again: the last Adam run starts
    from zero moments and step count, as a fresh network with the same
    parameters does."""
    mid_name, mid_hyper = middle
    net, X, Y = _problem("softmax", np.float64, seed=4)
    kw = dict(batch_size=6, shuffle=False)
    net.fit(X, Y, epochs=3, learning_rate=0.01, optimizer="adam", **kw)
    net.fit(X, Y, epochs=2, learning_rate=0.05, optimizer=mid_name, **kw, **mid_hyper)
    fresh, _, _ = _problem("softmax", np.float64, seed=4)
    for p, q in zip(fresh.weights + fresh.biases, net.weights + net.biases):
        p[...] = q
    net.fit(X, Y, epochs=3, learning_rate=0.01, optimizer="adam", **kw)
    fresh.fit(X, Y, epochs=3, learning_rate=0.01, optimizer="adam", **kw)
    np.testing.assert_array_equal(_flat(net), _flat(fresh))


def test_switching_from_momentum_to_adam_and_back_resets_the_momentum_buffer():
    net, X, Y = _problem("regression", np.float64, seed=4)
    kw = dict(batch_size=6, shuffle=False)
    net.fit(X, Y, epochs=3, learning_rate=0.05, momentum=0.9, **kw)
    net.fit(X, Y, epochs=1, learning_rate=0.01, optimizer="adam", **kw)
    fresh, _, _ = _problem("regression", np.float64, seed=4)
    for p, q in zip(fresh.weights + fresh.biases, net.weights + net.biases):
        p[...] = q
    net.fit(X, Y, epochs=3, learning_rate=0.05, momentum=0.9, **kw)
    fresh.fit(X, Y, epochs=3, learning_rate=0.05, momentum=0.9, **kw)
    np.testing.assert_array_equal(_flat(net), _flat(fresh))
