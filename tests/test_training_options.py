"""Training options of ``Network.fit`` other than the optimizer step itself.

Learning-rate schedules, validation (data and split), early stopping and
restore_best, sample and class weights, callbacks, progress output, the
History object and the validation of all these options. The expected values
come from the docstrings of ``Network.fit`` and ``History`` (the spec), computed
independently here with NumPy and the reference implementation.
"""
import math

import numpy as np
import pytest

from backprop_fast import Network
from backprop_fast.network import StoppingState
from backprop_fast.reference import ReferenceNetwork

DTYPES = [np.float64, np.float32]
FIGURES = ("loss", "val_loss", "val_accuracy", "learning_rate", "time")


# ----------------------------------------------------------------- helpers

def _flat(net):
    return np.concatenate([a.ravel() for W, b in zip(net.weights, net.biases) for a in (W, b)])


class Snapshots:
    """Callback recording the parameters (flat copy) and the logs after every epoch."""

    def __init__(self, net):
        self.net = net
        self.params, self.logs = [], []

    def __call__(self, epoch, logs):
        assert epoch == len(self.params)
        self.params.append(_flat(self.net))
        self.logs.append(dict(logs))


def _twin(net, flat):
    """A new network like ``net`` holding the flat parameters ``flat``."""
    twin = Network(net.layer_sizes, net.activations, net.loss, dtype=net.dtype)
    off = 0
    for W, b in zip(twin.weights, twin.biases):
        W[...] = flat[off:off + W.size].reshape(W.shape)
        off += W.size
        b[...] = flat[off:off + b.size]
        off += b.size
    return twin


def _softmax_problem(dtype=np.float64, n=30, seed=0, n_val=0):
    rng = np.random.default_rng(seed)
    net = Network([4, 6, 3], ["tanh", "softmax"], "cross_entropy", dtype=dtype, seed=seed)
    X = rng.normal(size=(n + n_val, 4))
    labels = (np.argmax(X[:, :3] + 0.5 * rng.normal(size=(n + n_val, 3)), axis=1))
    return net, X.astype(dtype), labels


def _binary_problem(dtype=np.float64, n=30, seed=0, n_out=1):
    rng = np.random.default_rng(seed)
    net = Network([3, 5, n_out], ["tanh", "sigmoid"], "cross_entropy", dtype=dtype, seed=seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, :n_out] + 0.7 * rng.normal(size=(n, n_out)) > 0).astype(np.float64)
    return net, X.astype(dtype), (y[:, 0] if n_out == 1 else y)


def _regression_problem(dtype=np.float64, n=30, seed=0):
    rng = np.random.default_rng(seed)
    net = Network([3, 5, 2], ["tanh", "identity"], "squared_error", dtype=dtype, seed=seed)
    X = rng.normal(size=(n, 3))
    y = np.stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] ** 2], axis=1)
    return net, X.astype(dtype), y.astype(dtype)


def _u_shape(dtype=np.float64):
    """A [1, 1] linear network whose validation cost falls, then rises.

    Training pulls w from 1 towards 3 (targets 3x) by full-batch descent; the
    validation targets are 2x, so the validation cost is smallest when w
    passes 2 (epoch 5 with these numbers) and grows after that.
    """
    net = Network([1, 1], "identity", "squared_error", dtype=dtype, seed=0)
    net.weights[0][...] = 1.0
    net.biases[0][...] = 0.0
    x = np.linspace(-1, 1, 20).reshape(-1, 1).astype(dtype)
    return net, x, 3 * x, x, 2 * x


def _scripted(costs):
    """A network whose per-epoch training cost is ``costs`` (to 1e-8).

    [1, 1] identity network, one sample x = 0, y = 0: the cost is b^2 / 2. A
    learning rate of 1e-9 makes the steps negligible, and a callback (the
    returned one, to be passed first) sets b after each epoch so that the next
    epoch's cost (taken before its step) is the next scripted value. This pins
    down what the plateau schedule and early stopping see.
    """
    net = Network([1, 1], "identity", "squared_error", seed=0)
    net.weights[0][...] = 0.5
    net.biases[0][...] = math.sqrt(2 * costs[0])

    def script(epoch, logs):
        if epoch + 1 < len(costs):
            net.biases[0][...] = math.sqrt(2 * costs[epoch + 1])

    return net, np.zeros((1, 1)), np.zeros((1, 1)), script


def _plateau_rates(monitor, lr, patience, min_delta):
    """The documented rule: the rate is divided by 5 whenever the monitored cost
    has not improved on the best so far by more than min_delta for patience
    epochs; the rate of an epoch is the one in force when it starts."""
    rates, best, wait, rate = [], math.inf, 0, lr
    for value in monitor:
        rates.append(rate)
        if value < best - min_delta:
            best, wait = value, 0
        else:
            wait += 1
            if wait % patience == 0:
                rate /= 5
    return rates


def _early_stop(monitor, patience, min_delta):
    """(number of epochs run, best epoch) under the documented early-stopping rule."""
    best, best_epoch, wait = math.inf, None, 0
    for epoch, value in enumerate(monitor):
        if value < best - min_delta:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch + 1, best_epoch
    return len(monitor), best_epoch


# ------------------------------------------------------------ lr schedules

def test_constant_schedule_is_the_default():
    net, X, y = _regression_problem()
    h = net.fit(X, y, epochs=4, learning_rate=0.05, batch_size=8)
    assert h.learning_rate == [0.05] * 4
    h = net.fit(X, y, epochs=3, learning_rate=0.02, lr_schedule="constant")
    assert h.learning_rate == [0.02] * 3


@pytest.mark.parametrize("power_t", [None, 0.25, 1.0, 0.0])
def test_invscaling_schedule(power_t):
    net, X, y = _regression_problem()
    kw = {} if power_t is None else dict(power_t=power_t)
    p = 0.5 if power_t is None else power_t
    h = net.fit(X, y, epochs=6, learning_rate=0.08, lr_schedule="invscaling", **kw)
    expected = [0.08 / (e + 1) ** p for e in range(6)]
    np.testing.assert_allclose(h.learning_rate, expected, rtol=1e-14)
    # The epochs are counted per call.
    h = net.fit(X, y, epochs=2, learning_rate=0.08, lr_schedule="invscaling", **kw)
    np.testing.assert_allclose(h.learning_rate, expected[:2], rtol=1e-14)


@pytest.mark.parametrize("epochs", [1, 2, 7])
def test_cosine_schedule(epochs):
    net, X, y = _regression_problem()
    h = net.fit(X, y, epochs=epochs, learning_rate=0.1, lr_schedule="cosine")
    expected = [0.1 * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    np.testing.assert_allclose(h.learning_rate, expected, rtol=1e-14, atol=1e-17)
    assert h.learning_rate[0] == pytest.approx(0.1)
    assert all(r > 0 for r in h.learning_rate)


@pytest.mark.parametrize("schedule", ["invscaling", "cosine", "plateau"])
def test_schedule_rate_is_the_rate_used(schedule):
    """The reported rate is the one the steps used: full-batch plain SGD from the
    same start with the reported rates, one epoch per call, gives the same
    parameters."""
    net, X, y = _regression_problem(seed=3)
    twin, _, _ = _regression_problem(seed=3)
    h = net.fit(X, y, epochs=5, learning_rate=0.05, lr_schedule=schedule, patience=1,
                min_delta=10.0, shuffle=False)
    for rate in h.learning_rate:
        twin.fit(X, y, epochs=1, learning_rate=rate, shuffle=False)
    np.testing.assert_allclose(_flat(net), _flat(twin), rtol=1e-13, atol=1e-15)
    assert len(set(h.learning_rate)) > 1


def test_plateau_divides_by_5_when_training_stalls():
    """With a tiny rate the cost improves by far less than min_delta: after the
    first epoch, every `patience` epochs the rate is divided by 5."""
    net, X, y = _regression_problem()
    lr = 1e-7
    h = net.fit(X, y, epochs=9, learning_rate=lr, lr_schedule="plateau", patience=2,
                min_delta=1e-3)
    assert max(h.loss) - min(h.loss) < 1e-3
    expected = [lr, lr, lr, lr / 5, lr / 5, lr / 25, lr / 25, lr / 125, lr / 125]
    np.testing.assert_allclose(h.learning_rate, expected, rtol=1e-12)


def test_plateau_never_reduces_while_improving():
    net, X, y = _regression_problem()
    h = net.fit(X, y, epochs=8, learning_rate=0.05, lr_schedule="plateau", patience=1,
                shuffle=False)
    assert all(b < a for a, b in zip(h.loss, h.loss[1:]))
    assert h.learning_rate == [0.05] * 8


def test_plateau_scripted_costs():
    """Improvement is measured against the best cost so far by more than
    min_delta: 0.9 -> 0.87 -> 0.84 is an improvement at 0.84 (0.06 below the
    best) although neither step alone is."""
    costs = [1.0, 0.9, 0.87, 0.84, 0.83, 0.82, 0.81, 0.5, 0.49, 0.48, 0.6, 0.2]
    net, X, y, script = _scripted(costs)
    lr = 1e-9
    h = net.fit(X, y, epochs=len(costs), learning_rate=lr, lr_schedule="plateau",
                patience=2, min_delta=0.05, callbacks=[script])
    np.testing.assert_allclose(h.loss, costs, rtol=1e-7)
    expected = _plateau_rates(costs, lr, 2, 0.05)
    # Written out: improvements at 1.0, .9, .84 (not .87), .5 and .2; the rate
    # is divided after .83, .82 and after .49, .48.
    np.testing.assert_allclose(expected, [lr] * 6 + [lr / 5] * 4 + [lr / 25] * 2,
                               rtol=1e-12)
    np.testing.assert_allclose(h.learning_rate, expected, rtol=1e-12)
    assert h.best_epoch == 11


def test_plateau_monitors_the_validation_cost():
    """With validation data the plateau schedule watches val_loss: here the
    training cost keeps falling while the validation cost rises."""
    net, X, y, X_val, y_val = _u_shape()
    h = net.fit(X, y, epochs=14, learning_rate=0.3, lr_schedule="plateau", patience=2,
                validation_data=(X_val, y_val))
    assert all(b < a for a, b in zip(h.loss, h.loss[1:]))
    expected = _plateau_rates(h.val_loss, 0.3, 2, 0.0)
    assert expected[-1] < 0.3 / 5  # the case reduces more than once
    np.testing.assert_allclose(h.learning_rate, expected, rtol=1e-12)


# -------------------------------------------------------------- validation

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["softmax", "softmax-onehot", "binary", "multilabel",
                                  "regression"])
def test_validation_figures_equal_evaluate_and_predict(kind, dtype):
    if kind.startswith("softmax"):
        net, X, y = _softmax_problem(dtype, n=40, n_val=17)
        if kind == "softmax-onehot":
            y = np.eye(3)[y]
    elif kind == "binary":
        net, X, y = _binary_problem(dtype, n=57)
    elif kind == "multilabel":
        net, X, y = _binary_problem(dtype, n=57, n_out=2)
    else:
        net, X, y = _regression_problem(dtype, n=57)
    X, X_val, y, y_val = X[:40], X[40:], y[:40], y[40:]
    snap = Snapshots(net)
    h = net.fit(X, y, epochs=4, batch_size=8, learning_rate=0.1,
                validation_data=(X_val, y_val), callbacks=[snap])
    twins = [_twin(net, p) for p in snap.params]
    evaluated = [t.evaluate(X_val, y_val) for t in twins]
    predicted = [t.predict(X_val) for t in twins]
    tol = dict(rtol=1e-12) if dtype == np.float64 else dict(rtol=1e-5)
    np.testing.assert_allclose(h.val_loss, evaluated, **tol)
    assert len(h.val_loss) == 4
    if kind == "regression":
        assert h.val_accuracy == []
        assert all("val_accuracy" not in logs for logs in snap.logs)
        return
    Y_val = np.asarray(y_val)
    accuracy = []
    for pred in predicted:
        if kind == "softmax":
            accuracy.append(np.mean(np.argmax(pred, axis=1) == Y_val))
        elif kind == "softmax-onehot":
            accuracy.append(np.mean(np.argmax(pred, axis=1) == np.argmax(Y_val, axis=1)))
        else:
            accuracy.append(np.mean((pred > 0.5) == (Y_val.reshape(pred.shape) > 0.5)))
    np.testing.assert_allclose(h.val_accuracy, accuracy, rtol=1e-12)
    assert all(0 <= a <= 1 for a in h.val_accuracy)


def test_validation_is_evaluated_with_each_epochs_parameters():
    """val_loss changes from epoch to epoch as the parameters do (guards the
    test above against comparing constants)."""
    net, X, y, X_val, y_val = _u_shape()
    h = net.fit(X, y, epochs=4, learning_rate=0.3, validation_data=(X_val, y_val))
    assert len(set(h.val_loss)) == 4


def test_no_validation_means_empty_validation_lists():
    net, X, y = _softmax_problem()
    h = net.fit(X, y, epochs=3, batch_size=10)
    assert h.val_loss == [] and h.val_accuracy == []
    assert len(h.loss) == len(h.learning_rate) == len(h.time) == 3


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("split, n_val", [(0.25, 5), (0.33, 7), (0.05, 1)])
def test_validation_split_holds_out_the_last_samples(split, n_val, shuffle):
    """validation_split holds out the last floor(split * n) samples before any
    shuffling: the same as validation_data with those samples, bit for bit."""
    net_a, X, y = _softmax_problem(n=22, seed=2)
    net_b, _, _ = _softmax_problem(n=22, seed=2)
    kw = dict(epochs=3, batch_size=4, learning_rate=0.2, shuffle=shuffle)
    ha = net_a.fit(X, y, validation_split=split, **kw)
    hb = net_b.fit(X[:-n_val], y[:-n_val], validation_data=(X[-n_val:], y[-n_val:]), **kw)
    np.testing.assert_array_equal(_flat(net_a), _flat(net_b))
    for name in FIGURES[:3]:
        assert getattr(ha, name) == getattr(hb, name), name


def test_validation_split_with_sample_weight():
    """The weights of the held-out samples go with them; the rest are scaled
    to mean 1 over the training part."""
    net_a, X, y = _regression_problem(n=20, seed=4)
    net_b, _, _ = _regression_problem(n=20, seed=4)
    w = np.random.default_rng(0).uniform(0.2, 3.0, 20)
    kw = dict(epochs=2, batch_size=6, learning_rate=0.05, shuffle=True)
    ha = net_a.fit(X, y, validation_split=0.2, sample_weight=w, **kw)
    hb = net_b.fit(X[:16], y[:16], sample_weight=w[:16], validation_data=(X[16:], y[16:]),
                   **kw)
    np.testing.assert_array_equal(_flat(net_a), _flat(net_b))
    assert ha.loss == hb.loss and ha.val_loss == hb.val_loss


def test_balanced_class_weight_with_validation_split_counts_training_samples():
    """'balanced' balances the samples that are trained on: with a split, the
    held-out samples do not enter the class counts."""
    net_a, X, y = _softmax_problem(n=24, seed=6)
    net_b, _, _ = _softmax_problem(n=24, seed=6)
    y = y.copy()
    y[-6:] = 0  # the held-out part is all class 0, so the counts differ
    kw = dict(epochs=2, batch_size=6, learning_rate=0.1, shuffle=False,
              class_weight="balanced")
    net_a.fit(X, y, validation_split=0.25, **kw)
    net_b.fit(X[:-6], y[:-6], validation_data=(X[-6:], y[-6:]), **kw)
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------- early stopping

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_on_validation_cost(restore_best, dtype):
    net, X, y, X_val, y_val = _u_shape(dtype)
    snap = Snapshots(net)
    h = net.fit(X, y, epochs=50, learning_rate=0.3, validation_data=(X_val, y_val),
                early_stopping=True, patience=3, restore_best=restore_best,
                callbacks=[snap])
    best = int(np.argmin(h.val_loss))
    assert 3 <= best <= 8  # the constructed case: falls, then rises
    assert all(b < a for a, b in zip(h.val_loss[:best + 1], h.val_loss[1:best + 1]))
    assert all(v > h.val_loss[best] for v in h.val_loss[best + 1:])
    assert len(h.loss) == best + 3 + 1
    assert h.stopped_early is True
    assert h.best_epoch == best
    expected = snap.params[best] if restore_best else snap.params[-1]
    np.testing.assert_array_equal(_flat(net), expected)
    assert not np.array_equal(snap.params[best], snap.params[-1])
    # The kept parameters are the ones whose validation cost was reported.
    assert net.evaluate(X_val, y_val) == pytest.approx(
        h.val_loss[best] if restore_best else h.val_loss[-1], rel=1e-5)


def test_early_stopping_on_training_cost_with_min_delta():
    """No validation data: the training cost is monitored; with a tiny rate it
    never improves by min_delta after the first epoch."""
    net, X, y = _regression_problem()
    snap = Snapshots(net)
    h = net.fit(X, y, epochs=100, learning_rate=1e-6, early_stopping=True, patience=4,
                min_delta=1e-3, callbacks=[snap])
    assert len(h.loss) == 5
    assert h.best_epoch == 0 and h.stopped_early
    assert h.loss[-1] < h.loss[0]  # it did improve, by less than min_delta
    np.testing.assert_array_equal(_flat(net), snap.params[0])


def test_early_stopping_scripted_costs():
    """min_delta is measured against the best cost so far."""
    costs = [1.0, 0.9, 0.87, 0.84, 0.83, 0.82, 0.1, 0.05]
    net, X, y, script = _scripted(costs)
    h = net.fit(X, y, epochs=len(costs), learning_rate=1e-9, early_stopping=True,
                patience=2, min_delta=0.05, restore_best=False, callbacks=[script])
    assert _early_stop(costs, 2, 0.05) == (6, 3)
    assert len(h.loss) == 6
    assert h.best_epoch == 3
    assert h.stopped_early


def test_early_stopping_patience_counts_non_improving_epochs():
    costs = [1.0, 2.0, 0.5, 0.6, 0.7, 0.4, 0.45, 0.45, 0.45, 0.45]
    for patience in (1, 2, 3, 4):
        net, X, y, script = _scripted(costs)
        h = net.fit(X, y, epochs=len(costs), learning_rate=1e-9, early_stopping=True,
                    patience=patience, restore_best=False, callbacks=[script])
        run, best = _early_stop(costs, patience, 0.0)
        assert (len(h.loss), h.best_epoch) == (run, best), patience
        assert h.stopped_early == (run < len(costs))


def test_restore_best_applies_when_epochs_run_out_first():
    """restore_best: with early stopping, training ends with the parameters of
    the best epoch even when the epochs run out before the patience does."""
    net, X, y, X_val, y_val = _u_shape()
    probe = Snapshots(net)
    h = net.fit(X, y, epochs=20, learning_rate=0.3, validation_data=(X_val, y_val),
                callbacks=[probe])
    best = int(np.argmin(h.val_loss))
    assert h.best_epoch == best  # also reported without early stopping
    assert h.stopped_early is False
    net2, X, y, X_val, y_val = _u_shape()
    h2 = net2.fit(X, y, epochs=best + 3, learning_rate=0.3, validation_data=(X_val, y_val),
                  early_stopping=True, patience=10)
    assert len(h2.loss) == best + 3 and not h2.stopped_early
    assert h2.best_epoch == best
    np.testing.assert_array_equal(_flat(net2), probe.params[best])


def test_best_epoch_is_last_when_always_improving():
    net, X, y, X_val, y_val = _u_shape()
    snap = Snapshots(net)
    h = net.fit(X, y, epochs=3, learning_rate=0.3, validation_data=(X_val, y_val),
                early_stopping=True, patience=2, callbacks=[snap])
    assert h.best_epoch == 2 and not h.stopped_early
    np.testing.assert_array_equal(_flat(net), snap.params[-1])


@pytest.mark.parametrize("verbose", [0, 2])
def test_the_stopping_epoch_reaches_history_callbacks_and_progress(verbose, capsys):
    """The epoch in which early stopping triggers is a finished epoch like the
    others: it is in the history, the callbacks see it and progress shows it,
    and the history is the same with or without callbacks."""
    net, X, y, X_val, y_val = _u_shape()
    plain = net.fit(X, y, epochs=50, learning_rate=0.3, validation_data=(X_val, y_val),
                    early_stopping=True, patience=3)
    net, X, y, X_val, y_val = _u_shape()
    seen = []
    h = net.fit(X, y, epochs=50, learning_rate=0.3, validation_data=(X_val, y_val),
                early_stopping=True, patience=3, verbose=verbose,
                callbacks=[lambda e, logs: seen.append(e)])
    assert plain.stopped_early and h.stopped_early
    assert h.loss == plain.loss and h.val_loss == plain.val_loss
    assert seen == list(range(len(plain.loss)))
    if verbose == 2:
        assert len(capsys.readouterr().err.splitlines()) == len(plain.loss)


def test_early_stopping_with_plateau_gives_each_reduced_rate_its_patience():
    """With the plateau schedule, the rate is divided after `patience` epochs
    without improvement and training stops only after the reduced rate has had
    its own `patience` epochs."""
    net, X, y, X_val, y_val = _u_shape()
    h = net.fit(X, y, epochs=50, learning_rate=0.3, validation_data=(X_val, y_val),
                early_stopping=True, patience=2, lr_schedule="plateau")
    best = h.best_epoch
    assert best == int(np.argmin(h.val_loss))
    assert len(h.loss) == best + 2 * 2 + 1
    np.testing.assert_allclose(h.learning_rate,
                               [0.3] * (best + 3) + [0.3 / 5] * 2, rtol=1e-12)


def test_continued_fit_restarts_the_monitoring():
    """Each fit call has its own best epoch (indices are of that call)."""
    net, X, y, X_val, y_val = _u_shape()
    net.fit(X, y, epochs=2, learning_rate=0.3, validation_data=(X_val, y_val))
    h = net.fit(X, y, epochs=30, learning_rate=0.3, validation_data=(X_val, y_val),
                early_stopping=True, patience=2)
    assert h.best_epoch == int(np.argmin(h.val_loss))
    assert len(h.loss) == h.best_epoch + 3


# ----------------------------------------------------------- sample weights

def _weighted_oracle(net, X, Y, w):
    """(cost, flat gradient) of the weighted mean cost sum(w c_i) / sum(w)."""
    ref = ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
    cost, grad = 0.0, 0.0
    for i in range(X.shape[0]):
        c, dW, db = ref.gradients(X[i:i + 1], Y[i:i + 1])
        g = np.concatenate([a.ravel().astype(np.float64)
                            for pair in zip(dW, db) for a in pair])
        cost += w[i] * c
        grad = grad + w[i] * g
    return cost / w.sum(), grad / w.sum()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["softmax", "regression", "binary"])
def test_full_batch_step_is_the_weighted_mean(kind, dtype):
    maker = {"softmax": _softmax_problem, "regression": _regression_problem,
             "binary": _binary_problem}[kind]
    net, X, y = maker(dtype, n=12, seed=9)
    w = np.random.default_rng(1).uniform(0.0, 4.0, 12)
    w[3] = 0
    Y = np.eye(3)[y] if kind == "softmax" else np.asarray(y).reshape(12, -1)
    cost, grad = _weighted_oracle(net, X, Y.astype(dtype), w)
    before = _flat(net).astype(np.float64)
    h = net.fit(X, y, epochs=1, learning_rate=0.5, sample_weight=w)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert h.loss[0] == pytest.approx(cost, rel=tol["rtol"])
    np.testing.assert_allclose(_flat(net), before - 0.5 * grad, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_integer_weights_equal_duplicated_samples(optimizer, dtype):
    net_a, X, y = _softmax_problem(dtype, n=15, seed=3)
    net_b, _, _ = _softmax_problem(dtype, n=15, seed=3)
    w = np.random.default_rng(2).integers(1, 4, 15)
    kw = dict(epochs=4, learning_rate=0.05, optimizer=optimizer, momentum=0.0)
    ha = net_a.fit(X, y, sample_weight=w, **kw)
    hb = net_b.fit(np.repeat(X, w, axis=0), np.repeat(y, w), **kw)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=tol["rtol"])
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), **tol)


def test_float_weights_are_scaled_not_absolute():
    """Multiplying all weights by a constant changes nothing (mean 1 scaling)."""
    net_a, X, y = _regression_problem(n=15, seed=3)
    net_b, _, _ = _regression_problem(n=15, seed=3)
    w = np.random.default_rng(2).uniform(0.5, 2.0, 15)
    ha = net_a.fit(X, y, epochs=3, batch_size=4, learning_rate=0.05, sample_weight=w)
    hb = net_b.fit(X, y, epochs=3, batch_size=4, learning_rate=0.05, sample_weight=w * 8)
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)


def test_uniform_weights_equal_no_weights():
    net_a, X, y = _regression_problem(n=15, seed=3)
    net_b, _, _ = _regression_problem(n=15, seed=3)
    net_a.fit(X, y, epochs=3, batch_size=4, learning_rate=0.05, sample_weight=np.full(15, 3))
    net_b.fit(X, y, epochs=3, batch_size=4, learning_rate=0.05)
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch", [None, 4])
def test_zero_weight_ignores_the_sample_in_full_batch(batch):
    """Full batch: a zero-weight sample is as if absent (its target may be
    anything). With minibatches it still occupies a slot of its batch, so
    only the full-batch case is an exact equality."""
    net_a, X, y = _regression_problem(n=12, seed=5)
    net_b, _, _ = _regression_problem(n=12, seed=5)
    w = np.ones(12)
    w[[2, 7]] = 0
    y_bad = y.copy()
    y_bad[[2, 7]] = 1e3
    keep = w > 0
    ha = net_a.fit(X, y_bad, epochs=3, learning_rate=0.05, sample_weight=w,
                   batch_size=batch, shuffle=False)
    if batch is None:
        hb = net_b.fit(X[keep], y[keep], epochs=3, learning_rate=0.05, shuffle=False)
        np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-10)
    else:
        assert np.isfinite(_flat(net_a)).all()
        assert max(ha.loss) < 100  # the huge targets do not enter the cost


def test_minibatch_steps_use_weights_scaled_to_mean_one():
    """Minibatches in order: each step is sum(w'_i g_i) / rows with w' the weights
    scaled to mean 1 over the training set, and history.loss the weighted mean
    of the batch costs."""
    net, X, y = _regression_problem(n=13, seed=8)
    w = np.random.default_rng(4).uniform(0.0, 3.0, 13)
    ws = w * 13 / w.sum()
    lr, batch = 0.1, 5
    ref_net, _, _ = _regression_problem(n=13, seed=8)
    total = 0.0
    for start in range(0, 13, batch):
        sl = slice(start, start + batch)
        rows = len(ws[sl])
        cost, grad = _weighted_oracle(ref_net, X[sl], y[sl], ws[sl])
        # _weighted_oracle divides by sum(w'); the step divides by rows.
        scale = ws[sl].sum() / rows
        flat = _flat(ref_net) - lr * grad * scale
        off = 0
        for W, b in zip(ref_net.weights, ref_net.biases):
            W[...] = flat[off:off + W.size].reshape(W.shape)
            off += W.size
            b[...] = flat[off:off + b.size]
            off += b.size
        total += cost * scale * rows
    h = net.fit(X, y, epochs=1, batch_size=batch, learning_rate=lr, shuffle=False,
                sample_weight=w)
    np.testing.assert_allclose(_flat(net), _flat(ref_net), rtol=1e-10, atol=1e-12)
    assert h.loss[0] == pytest.approx(total / 13, rel=1e-10)


@pytest.mark.parametrize("labels", ["int", "onehot"])
def test_class_weight_dict_equals_sample_weight_softmax(labels):
    net_a, X, y = _softmax_problem(n=24, seed=7)
    net_b, _, _ = _softmax_problem(n=24, seed=7)
    target = y if labels == "int" else np.eye(3)[y]
    cw = {0: 2.5, 2: 0.5}  # class 1 keeps weight 1
    sw = np.array([cw.get(c, 1.0) for c in y])
    kw = dict(epochs=3, batch_size=5, learning_rate=0.1)
    ha = net_a.fit(X, target, class_weight=cw, **kw)
    hb = net_b.fit(X, target, sample_weight=sw, **kw)
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-13)


def test_class_weight_dict_equals_sample_weight_sigmoid():
    net_a, X, y = _binary_problem(n=24, seed=7)
    net_b, _, _ = _binary_problem(n=24, seed=7)
    sw = np.where(y == 1, 3.0, 0.75)
    kw = dict(epochs=3, batch_size=5, learning_rate=0.1)
    net_a.fit(X, y, class_weight={1: 3.0, 0: 0.75}, **kw)
    net_b.fit(X, y, sample_weight=sw, **kw)
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", ["softmax", "binary"])
def test_balanced_class_weight(kind):
    """'balanced': n_samples / (n_classes * count of the class), times any
    sample_weight."""
    if kind == "softmax":
        net_a, X, y = _softmax_problem(n=26, seed=1)
        net_b, _, _ = _softmax_problem(n=26, seed=1)
        classes, n_classes = y, 3
    else:
        net_a, X, y = _binary_problem(n=26, seed=1)
        net_b, _, _ = _binary_problem(n=26, seed=1)
        y = y.copy()
        y[:5] = 1
        classes, n_classes = y.astype(int), 2
    counts = np.bincount(classes, minlength=n_classes)
    assert (counts > 0).all() and len(set(counts)) > 1  # unbalanced, all present
    extra = np.random.default_rng(0).uniform(0.5, 1.5, 26)
    sw = 26 / (n_classes * counts[classes]) * extra
    kw = dict(epochs=3, batch_size=6, learning_rate=0.1)
    ha = net_a.fit(X, y, class_weight="balanced", sample_weight=extra, **kw)
    hb = net_b.fit(X, y, sample_weight=sw, **kw)
    np.testing.assert_allclose(_flat(net_a), _flat(net_b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)


def _bad_weight_cases():
    n = 10
    return [
        (dict(sample_weight=-np.ones(n)), ValueError, "sample_weight"),
        (dict(sample_weight=np.r_[np.ones(n - 1), -0.5]), ValueError, "sample_weight"),
        (dict(sample_weight=np.ones(n - 1)), ValueError, "sample_weight"),
        (dict(sample_weight=np.ones((n, 1))), ValueError, "sample_weight"),
        (dict(sample_weight=np.r_[np.ones(n - 1), np.nan]), ValueError, "sample_weight"),
        (dict(sample_weight=np.r_[np.ones(n - 1), np.inf]), ValueError, "sample_weight"),
        (dict(sample_weight=np.zeros(n)), ValueError, "sample_weight"),
        (dict(sample_weight=["a"] * n), TypeError, "sample_weight"),
        (dict(sample_weight=np.ones(n) + 1j), TypeError, "sample_weight"),
        (dict(class_weight="unbalanced"), ValueError, "class_weight"),
        (dict(class_weight={0: -1.0}), ValueError, "class_weight"),
        (dict(class_weight={0: np.nan}), ValueError, "class_weight"),
        (dict(class_weight={5: 1.0}), ValueError, "class_weight"),
        (dict(class_weight={0: 0.0, 1: 0.0, 2: 0.0}), ValueError, "class_weight"),
        (dict(class_weight=[1.0, 2.0, 3.0]), TypeError, "class_weight"),
        (dict(class_weight={0: "heavy"}), TypeError, "class_weight"),
    ]


@pytest.mark.parametrize("kwargs, exc, name", _bad_weight_cases(),
                         ids=lambda v: None if isinstance(v, dict) else str(v))
def test_bad_weights_raise_naming_the_argument(kwargs, exc, name):
    net, X, y = _softmax_problem(n=10, seed=0)
    before = _flat(net)
    with pytest.raises(exc, match=name):
        net.fit(X, y, epochs=1, **kwargs)
    np.testing.assert_array_equal(_flat(net), before)


def test_zero_weights_on_the_training_part_raise():
    net, X, y = _softmax_problem(n=10, seed=0)
    w = np.r_[np.zeros(8), np.ones(2)]
    with pytest.raises(ValueError, match="sample_weight"):
        net.fit(X, y, epochs=1, sample_weight=w, validation_split=0.2)


@pytest.mark.parametrize("maker", [_regression_problem,
                                   lambda: _binary_problem(n_out=2)],
                         ids=["regression", "multi-unit-sigmoid"])
def test_class_weight_needs_a_classifier(maker):
    net, X, y = maker()
    with pytest.raises(ValueError, match="class_weight"):
        net.fit(X, y, epochs=1, class_weight={0: 1.0})
    with pytest.raises(ValueError, match="class_weight"):
        net.fit(X, y, epochs=1, class_weight="balanced")


def test_class_weight_needs_hard_targets():
    net, X, y = _binary_problem()
    soft = np.clip(y * 0.8 + 0.1, 0, 1)
    with pytest.raises(ValueError, match="class_weight"):
        net.fit(X, soft, epochs=1, class_weight="balanced")


# -------------------------------------------------------------- callbacks

def test_callbacks_receive_epoch_and_the_history_figures():
    net, X, y = _softmax_problem(n=30, n_val=10)
    calls = []
    h = net.fit(X[:30], y[:30], epochs=4, batch_size=8, validation_data=(X[30:], y[30:]),
                callbacks=[lambda e, logs: calls.append((e, dict(logs)))])
    assert [e for e, _ in calls] == [0, 1, 2, 3]
    for e, logs in calls:
        assert set(logs) == set(FIGURES)
        for name in FIGURES:
            assert logs[name] == getattr(h, name)[e], name


def test_regression_callback_logs_have_no_accuracy():
    net, X, y = _regression_problem()
    calls = []
    net.fit(X, y, epochs=2, validation_split=0.2,
            callbacks=lambda e, logs: calls.append(dict(logs)))
    assert [set(c) for c in calls] == [{"loss", "val_loss", "learning_rate", "time"}] * 2
    calls.clear()
    net.fit(X, y, epochs=1, callbacks=[lambda e, logs: calls.append(dict(logs))])
    assert set(calls[0]) == {"loss", "learning_rate", "time"}


@pytest.mark.parametrize("method", ["evaluate", "predict", "gradients"])
def test_callbacks_may_use_the_network(method, deadline):
    """A callback can evaluate the network it is watching (the natural way to
    log a custom metric at epoch end): it sees the parameters of that epoch,
    and does not block."""
    net, X, y = _softmax_problem(n=30, n_val=10)
    X, X_val, y, y_val = X[:30], X[30:], y[:30], y[30:]
    seen, snap = [], Snapshots(net)

    def callback(epoch, logs):
        seen.append(getattr(net, method)(X_val, y_val) if method != "predict"
                    else net.predict(X_val))

    with deadline(2):
        h = net.fit(X, y, epochs=3, batch_size=8, validation_data=(X_val, y_val),
                    callbacks=[snap, callback])
    assert len(seen) == 3
    if method == "evaluate":
        np.testing.assert_allclose(h.val_loss, seen, rtol=1e-12)
    elif method == "predict":
        for p, pred in zip(snap.params, seen):
            np.testing.assert_array_equal(pred, _twin(net, p).predict(X_val))


def test_callback_returning_true_stops_after_that_epoch():
    net_a, X, y = _softmax_problem(seed=3)
    net_b, _, _ = _softmax_problem(seed=3)
    seen = []
    h = net_a.fit(X, y, epochs=10, batch_size=7, learning_rate=0.1, optimizer="adam",
                  callbacks=[lambda e, logs: e == 2, lambda e, logs: seen.append(e)])
    assert len(h.loss) == 3 and h.stopped_early
    assert seen == [0, 1, 2]  # every callback runs in the stopping epoch
    hb = net_b.fit(X, y, epochs=3, batch_size=7, learning_rate=0.1, optimizer="adam")
    assert h.loss == hb.loss
    np.testing.assert_array_equal(_flat(net_a), _flat(net_b))


def test_callback_returning_falsy_continues():
    net, X, y = _softmax_problem()
    h = net.fit(X, y, epochs=3, callbacks=[lambda e, logs: None, lambda e, logs: False])
    assert len(h.loss) == 3 and not h.stopped_early


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("shuffle", [True, False])
def test_callback_exception_propagates_and_leaves_a_consistent_network(shuffle):
    """The exception reaches the caller; the network holds the parameters and
    optimizer state of the epochs done, and a later fit continues exactly as
    if those epochs had been a fit of their own."""
    net_a, X, y = _softmax_problem(seed=4)
    net_b, _, _ = _softmax_problem(seed=4)
    kw = dict(batch_size=7, learning_rate=0.02, optimizer="adam", shuffle=shuffle)

    def boom(epoch, logs):
        if epoch == 2:
            raise Boom("from the callback")

    with pytest.raises(Boom):
        net_a.fit(X, y, epochs=8, callbacks=[boom], **kw)
    net_b.fit(X, y, epochs=3, **kw)
    np.testing.assert_array_equal(_flat(net_a), _flat(net_b))
    assert np.isfinite(net_a.evaluate(X, y))
    ha = net_a.fit(X, y, epochs=2, **kw)
    hb = net_b.fit(X, y, epochs=2, **kw)
    assert ha.loss == hb.loss
    np.testing.assert_array_equal(_flat(net_a), _flat(net_b))


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_writes_progress_to_stderr(verbose, capsys):
    net, X, y = _softmax_problem(n=30, n_val=10)
    net.fit(X[:30], y[:30], epochs=5, batch_size=10, verbose=verbose,
            validation_data=(X[30:], y[30:]))
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n")
    assert "5/5" in err
    if verbose == 2:
        lines = err.splitlines()
        assert len(lines) == 5
        for e, line in enumerate(lines):
            assert f"{e + 1}/5" in line
    else:
        # Not a terminal: about ten lines over the run, no redrawing.
        lines = err.splitlines()
        assert "\r" not in err and 1 <= len(lines) <= 10
        assert all("/5 [" in line for line in lines)


def test_verbose_0_writes_nothing(capsys):
    net, X, y = _softmax_problem(n=30, n_val=10)
    net.fit(X[:30], y[:30], epochs=3, verbose=0, validation_data=(X[30:], y[30:]))
    net.fit(X[:30], y[:30], epochs=3)
    assert capsys.readouterr() == ("", "")


def test_verbose_with_early_stop_ends_the_line(capsys):
    net, X, y = _softmax_problem()
    h = net.fit(X, y, epochs=10, verbose=1, callbacks=[lambda e, logs: e == 1])
    assert len(h.loss) == 2
    err = capsys.readouterr().err
    assert err.endswith("\n") and "2/10" in err


# --------------------------------------------------------------- History

def test_history_has_one_entry_per_epoch():
    net, X, y = _softmax_problem(n=30, n_val=10)
    h = net.fit(X[:30], y[:30], epochs=6, batch_size=8, validation_data=(X[30:], y[30:]),
                lr_schedule="cosine")
    for name in FIGURES:
        values = getattr(h, name)
        assert isinstance(values, list) and len(values) == 6, name
        assert all(type(v) is float and math.isfinite(v) for v in values), name
    assert len(h) == 6
    assert all(t >= 0 for t in h.time)
    assert all(0 <= a <= 1 for a in h.val_accuracy)
    assert h.stopped_early is False
    assert h.best_epoch in range(6)


def test_history_time_is_plausible():
    import time
    net, X, y = _softmax_problem(n=200)
    start = time.perf_counter()
    h = net.fit(X, y, epochs=5, batch_size=4)
    elapsed = time.perf_counter() - start
    assert 0 < sum(h.time) <= elapsed


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_histories_read_after_later_fits_keep_their_own_epochs(schedule):
    """fit's figures come from an array the kernel writes each call: a
    History read only after later fits (longer, shorter, with and without
    validation) still holds its own epochs, as does the network's (neither
    would if that array were reused for the next call without a copy)."""
    net, X, y = _softmax_problem(n=30, n_val=10)
    twin = _twin(net, _flat(net))
    calls = [dict(epochs=5), dict(epochs=3, validation_data=(X[30:], y[30:])),
             dict(epochs=7), dict(epochs=2)]
    late, early = [], []
    for kwargs in calls:
        options = dict(batch_size=8, learning_rate=0.2, lr_schedule=schedule, shuffle=False,
                       **kwargs)
        late.append(net.fit(X[:30], y[:30], **options))
        h = twin.fit(X[:30], y[:30], **options)
        early.append({name: list(getattr(h, name)) for name in FIGURES})
    for h, read, kwargs in zip(late, early, calls):
        assert len(h) == kwargs["epochs"]
        for name in FIGURES:
            if name == "time":
                assert len(h.time) == len(read["time"]) and all(t >= 0 for t in h.time)
            else:
                assert getattr(h, name) == read[name], name
    rates = late[0].learning_rate
    if schedule == "constant":
        assert rates == [0.2] * 5
    else:
        assert rates[0] == 0.2 and rates[1] < 0.2
    assert net.history.loss == [v for read in early for v in read["loss"]]
    assert len(net.history.val_loss) == 3 and len(net.history.learning_rate) == 17


def test_zero_epochs_give_an_empty_history():
    net, X, y = _softmax_problem()
    before = _flat(net)
    h = net.fit(X, y, epochs=0, validation_split=0.2)
    assert len(h) == 0 and all(getattr(h, name) == [] for name in FIGURES)
    np.testing.assert_array_equal(_flat(net), before)


# ---------------------------------------------------------- bad options

def _bad_option_cases():
    return [
        (dict(optimizer="rmsprop"), ValueError, "optimizer"),
        (dict(optimizer="SGD"), ValueError, "optimizer"),
        (dict(optimizer=None), (ValueError, TypeError), "optimizer"),
        (dict(momentum=1.0), ValueError, "momentum"),
        (dict(momentum=-0.1), ValueError, "momentum"),
        (dict(momentum=np.nan), ValueError, "momentum"),
        (dict(momentum="0.9"), TypeError, "momentum"),
        (dict(nesterov=True), ValueError, "nesterov"),
        (dict(nesterov=True, momentum=0.0), ValueError, "nesterov"),
        (dict(nesterov="yes", momentum=0.9), TypeError, "nesterov"),
        (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
        (dict(weight_decay=np.inf), ValueError, "weight_decay"),
        (dict(beta1=1.0, optimizer="adam"), ValueError, "beta1"),
        (dict(beta2=-0.5, optimizer="adam"), ValueError, "beta2"),
        (dict(epsilon=0.0, optimizer="adam"), ValueError, "epsilon"),
        # Plain floats pass on a range test alone: its edges and NaN.
        (dict(beta1=np.nan, optimizer="adam"), ValueError, "beta1"),
        (dict(beta2=1.0, optimizer="adam"), ValueError, "beta2"),
        (dict(epsilon=np.inf, optimizer="adam"), ValueError, "epsilon"),
        (dict(epsilon=np.nan, optimizer="adam"), ValueError, "epsilon"),
        (dict(weight_decay=np.nan), ValueError, "weight_decay"),
        (dict(power_t=np.inf, lr_schedule="invscaling"), ValueError, "power_t"),
        (dict(loss_penalty=-0.5), ValueError, "loss_penalty"),
        (dict(loss_penalty=np.inf), ValueError, "loss_penalty"),
        (dict(tol=-1e-4, stopping="sklearn"), ValueError, "tol"),
        (dict(tol=np.nan, stopping="sklearn"), ValueError, "tol"),
        (dict(lr_schedule="step"), ValueError, "lr_schedule"),
        (dict(lr_schedule=None), (ValueError, TypeError), "lr_schedule"),
        (dict(power_t=-1.0, lr_schedule="invscaling"), ValueError, "power_t"),
        (dict(validation_split=1.0), ValueError, "validation_split"),
        (dict(validation_split=-0.1), ValueError, "validation_split"),
        (dict(validation_split=1.5), ValueError, "validation_split"),
        (dict(validation_split=0.01), ValueError, "validation_split"),  # 0 of 30
        (dict(validation_split="0.2"), TypeError, "validation_split"),
        (dict(patience=0), ValueError, "patience"),
        (dict(patience=-3, early_stopping=True), ValueError, "patience"),
        (dict(patience=2.5), TypeError, "patience"),
        (dict(min_delta=-0.1), ValueError, "min_delta"),
        (dict(early_stopping="yes"), TypeError, "early_stopping"),
        (dict(restore_best=1), TypeError, "restore_best"),
        (dict(verbose=3), ValueError, "verbose"),
        (dict(verbose=-1), ValueError, "verbose"),
        (dict(verbose="loud"), (ValueError, TypeError), "verbose"),
        (dict(callbacks=[print, 3]), TypeError, "callbacks"),
        (dict(callbacks=5), TypeError, "callbacks"),
    ]


@pytest.mark.parametrize("kwargs, exc, name", _bad_option_cases(),
                         ids=lambda v: None if isinstance(v, dict) else str(v))
def test_bad_options_raise_naming_them(kwargs, exc, name):
    net, X, y = _softmax_problem()
    before = _flat(net)
    with pytest.raises(exc, match=name):
        net.fit(X, y, epochs=2, **kwargs)
    np.testing.assert_array_equal(_flat(net), before)


def _bad_validation_data(X, y):
    return [
        ((X[:5],), TypeError),
        ((X[:5], y[:5], None), TypeError),
        (X[:5], TypeError),                      # an array, not a pair
        (X[:2], (TypeError, ValueError)),        # a 2-row array unpacks as a "pair"
        (5, TypeError),
        ((X[:5, :3], y[:5]), ValueError),        # wrong number of features
        ((X[:5], y[:4]), ValueError),            # mismatched lengths
        ((X[:5], np.full(5, 7)), ValueError),    # label out of range
        ((np.full((5, 4), np.nan), y[:5]), ValueError),
        ((X[:0], y[:0]), ValueError),            # empty
        ((X[:5], ["a"] * 5), TypeError),
    ]


@pytest.mark.parametrize("case", range(11))
def test_malformed_validation_data_raises_naming_it(case):
    net, X, y = _softmax_problem()
    data, exc = _bad_validation_data(X, y)[case]
    before = _flat(net)
    with pytest.raises(exc, match="validation_data"):
        net.fit(X, y, epochs=1, validation_data=data)
    np.testing.assert_array_equal(_flat(net), before)


def test_validation_data_given_as_one_array_raises():
    """A (2, n_features) array unpacks into two rows; when the widths happen to
    match (here 3 inputs, 3 outputs) it must not be taken for (X_val, y_val)."""
    net = Network([3, 4, 3], "sigmoid", "cross_entropy", seed=0)
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(10, 3))
    with pytest.raises((TypeError, ValueError), match="validation_data"):
        net.fit(X, (X > 0.5).astype(float), epochs=1,
                validation_data=np.array([[0.1, 0.2, 0.3], [0.0, 1.0, 1.0]]))


def test_validation_data_and_split_together_raise():
    net, X, y = _softmax_problem()
    with pytest.raises(ValueError, match="validation"):
        net.fit(X, y, epochs=1, validation_data=(X[:5], y[:5]), validation_split=0.2)


# ---------------------------------------------------------------- stopping="sklearn"

def test_validation_metric_scores_as_scikit_learn():
    sk_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.RandomState(0)
    X, Xv = rng.normal(size=(60, 4)), rng.normal(size=(30, 4))
    wv = rng.uniform(0.1, 2.0, 30)
    y, yv = rng.normal(size=(60, 2)), rng.normal(size=(30, 2))
    net = Network([4, 5, 2], ["tanh", "identity"], "squared_error", seed=0)
    h = net.fit(X, y, epochs=1, stopping="sklearn", validation_data=(Xv, yv),
                validation_metric="r2", validation_weight=wv)
    assert h.val_score[0] == pytest.approx(
        sk_metrics.r2_score(yv, net.predict(Xv), sample_weight=wv), rel=1e-12)
    labels, labels_v = rng.randint(0, 3, 60), rng.randint(0, 3, 30)
    clf = Network([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=0)
    h = clf.fit(X, labels, epochs=1, stopping="sklearn", validation_data=(Xv, labels_v),
                validation_metric="accuracy", validation_weight=wv)
    assert h.val_score[0] == pytest.approx(sk_metrics.accuracy_score(
        labels_v, clf.predict(Xv).argmax(axis=1), sample_weight=wv), rel=1e-12)
    assert h.val_accuracy == h.val_score


def test_sklearn_stopping_rule_state_and_penalty():
    rng = np.random.RandomState(1)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    net = Network([3, 4, 1], ["relu", "identity"], "squared_error", seed=0)
    state = StoppingState()
    h = net.fit(X, y, epochs=500, learning_rate=0.01, stopping="sklearn", tol=1e-2,
                n_iter_no_change=2, loss_penalty=0.5, stopping_state=state)
    # Stopped once more than n_iter_no_change epochs in a row did not improve.
    assert len(h.loss) < 500 and state.no_improvement_count == 3
    assert state.samples_seen == 40 * len(h.loss)
    assert state.best_loss == min(h.loss)
    # The L2 term is in the reported cost.
    raw = net.evaluate(X, y)
    penalty = 0.5 * sum(float((W ** 2).sum()) for W in net.weights)
    assert h.loss[-1] >= penalty and raw < h.loss[-1]
    with pytest.raises(ValueError, match="adaptive"):
        net.fit(X, y, epochs=1, lr_schedule="adaptive")
    with pytest.raises(ValueError, match="n_iter_no_change"):
        net.fit(X, y, epochs=1, stopping="sklearn", n_iter_no_change=0)
    with pytest.raises(ValueError, match="validation_metric"):
        net.fit(X, y, epochs=1, validation_metric="f1")
    with pytest.raises(ValueError, match="validation_data"):
        net.fit(X, y, epochs=1, validation_metric="r2")
    with pytest.raises(ValueError, match="cosine"):
        net.fit(X, y, epochs=1, stopping="sklearn", lr_schedule="cosine")


def test_sklearn_stopping_keeps_the_best_epoch_after_ctrl_c():
    rng = np.random.RandomState(2)
    X, Xv = rng.normal(size=(50, 3)), rng.normal(size=(20, 3))
    y, yv = X @ [1.0, -1.0, 0.5], Xv @ [1.0, -1.0, 0.5]
    net = Network([3, 6, 1], ["tanh", "identity"], "squared_error", seed=0)
    scores = []

    def interrupt(epoch, logs):
        scores.append(logs["val_score"])
        if epoch == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=50, learning_rate=1.0, batch_size=10, stopping="sklearn",
                validation_data=(Xv, yv), validation_metric="r2", callbacks=[interrupt])
    assert max(scores) > scores[-1]  # the best epoch is not the last
    pred = net.predict(Xv)[:, 0]
    r2 = 1 - np.sum((yv - pred) ** 2) / np.sum((yv - yv.mean()) ** 2)
    assert r2 == pytest.approx(max(scores), rel=1e-9)
    assert net.history.val_score == scores
