"""``backprop_fast.fit_many``: many networks in one native call.

The contract: the result equals the sequential loop ``net.fit(X[s], y[s],
**options_k)`` network by network, in parameters, optimizer state, shuffling
generator and History, bit for bit (each network's arithmetic is the same
whatever else runs), for every option and both dtypes; a diverging network
stops alone and says so; Ctrl-C leaves every network consistent.
"""
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

from backprop_fast import DivergenceError, Network, StoppingState, fit_many

DTYPES = [np.float64, np.float32]
COMPARED = ("loss", "val_loss", "val_accuracy", "learning_rate", "val_score")


def _data(n=120, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, :classes] + 0.3 * rng.normal(size=(n, classes))).argmax(axis=1)
    return X, y


def _nets(count, dtype, sizes=(6, 10, 3), seed=0):
    return [Network(list(sizes), ["tanh", "softmax"], "cross_entropy", dtype=dtype,
                    seed=seed + k) for k in range(count)]


def _state(net):
    return (net._params.copy(), None if net._opt_m1 is None else net._opt_m1.copy(),
            None if net._opt_m2 is None else net._opt_m2.copy(), net._opt_step.copy(),
            net._rng_state.copy())


def _same(a, b):
    for x, y in zip(_state(a), _state(b)):
        if (x is None) != (y is None):
            return False
        if x is not None and not np.array_equal(x, y):
            return False
    return True


def _same_history(h, g):
    return (len(h) == len(g) and h.stopped_early == g.stopped_early
            and h.best_epoch == g.best_epoch and h.diverged == g.diverged
            and all(np.array_equal(getattr(h, f), getattr(g, f), equal_nan=True)
                    for f in COMPARED))


def _check_equal(make, X, y, epochs, subsets=None, sample_weight=None, n_threads=None,
                 **options):
    """fit_many (on n_threads) against the sequential loop, for the
    per-network options given as lists and the shared ones as they are."""
    many = make()
    alone = make()
    count = len(many)
    hs = fit_many(many, X, y, epochs=epochs, subsets=subsets,
                  sample_weight=sample_weight, n_threads=n_threads, **options)
    for k in range(count):
        opts = {name: (v[k] if isinstance(v, list) else v) for name, v in options.items()}
        s = None if subsets is None else subsets[k]
        w = sample_weight[k] if isinstance(sample_weight, list) else sample_weight
        Xk, yk = (X, y) if s is None else (X[s], y[s])
        if w is not None and s is not None:
            w = np.asarray(w)[s]
        g = alone[k].fit(Xk, yk, epochs=epochs[k] if isinstance(epochs, list) else epochs,
                         sample_weight=w, **opts)
        assert _same(many[k], alone[k]), f"network {k}: state differs from its own fit"
        assert _same_history(hs[k], g), f"network {k}: history differs"
        assert _same_history(many[k].history, alone[k].history)
    return hs


OPTION_SETS = {
    "sgd": dict(learning_rate=[0.05, 0.1, 0.2], batch_size=16),
    "momentum-nesterov": dict(learning_rate=0.05, momentum=[0.5, 0.9, 0.9],
                              nesterov=[False, False, True], batch_size=8),
    "adam-decay": dict(optimizer="adam", learning_rate=[1e-3, 3e-3, 1e-2],
                       weight_decay=[0.0, 1e-3, 1e-2], batch_size=32),
    "adamw": dict(optimizer="adamw", learning_rate=3e-3, weight_decay=1e-2,
                  beta1=[0.8, 0.9, 0.95], batch_size=[8, 16, 200]),
    "mixed-optimizers": dict(optimizer=["sgd", "adam", "adamw"],
                             learning_rate=[0.1, 1e-3, 1e-3], batch_size=10),
    "schedules": dict(lr_schedule=["invscaling", "cosine", "constant"], power_t=0.3,
                      learning_rate=0.1, batch_size=16),
    "online": dict(batch_size=1, learning_rate=0.02, shuffle=[True, False, True]),
    "validation-early-stopping": dict(validation_split=0.25, early_stopping=True,
                                      patience=[1, 2, 3], learning_rate=0.3, batch_size=16),
    "plateau": dict(lr_schedule="plateau", patience=2, early_stopping=[True, False, True],
                    learning_rate=0.5, batch_size=4),
    "sklearn-rules": dict(stopping="sklearn", validation_split=0.2,
                          validation_metric="accuracy", tol=[1e-4, 1e-2, 0.0],
                          n_iter_no_change=[2, 3, 1000], loss_penalty=1e-3,
                          optimizer="adam", learning_rate=1e-2, batch_size=20),
    "sklearn-adaptive": dict(stopping="sklearn", lr_schedule=["adaptive", "invscaling",
                                                              "constant"],
                             tol=1e-2, n_iter_no_change=2, learning_rate=0.2, batch_size=30),
    "class-weight": dict(class_weight=["balanced", None, {0: 2.0, 1: 1.0, 2: 0.5}],
                         learning_rate=0.1, batch_size=16),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_equals_the_sequential_loop(name, dtype):
    X, y = _data()
    _check_equal(lambda: _nets(3, dtype), X, y, epochs=[6, 9, 12], **OPTION_SETS[name])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_subsets_and_sample_weights(dtype):
    X, y = _data(n=150)
    rng = np.random.default_rng(1)
    folds = np.array_split(rng.permutation(150), 3)
    subsets = [np.concatenate([f for j, f in enumerate(folds) if j != k]) for k in range(3)]
    subsets.append(rng.integers(0, 150, size=150))      # a bootstrap, rows repeated
    subsets.append(rng.random(150) < 0.5)                # a boolean mask
    weights = [rng.random(150) + 0.1 for _ in range(5)]
    _check_equal(lambda: _nets(5, dtype), X, y, epochs=5, subsets=subsets,
                 sample_weight=weights, learning_rate=0.1, batch_size=12)
    _check_equal(lambda: _nets(5, dtype), X, y, epochs=5, subsets=subsets,
                 sample_weight=weights[0], optimizer="adam", learning_rate=1e-2)


def test_networks_of_every_kind_in_one_call():
    """Architectures, losses and dtypes differ; a wide layer runs the wide
    product engine (its own workspace per network)."""
    X, y = _data(n=96, d=6)
    Y3 = np.eye(3)[y]

    def make():
        return [Network([6, 10, 3], ["tanh", "softmax"], "cross_entropy", seed=1),
                Network([6, 300, 3], ["relu", "sigmoid"], "squared_error",
                        dtype=np.float32, seed=2),
                Network([6, 3], ["identity"], "squared_error", seed=3),
                Network([6, 64, 32, 3], ["sigmoid", "tanh", "softmax"], "cross_entropy",
                        dtype=np.float32, seed=4)]
    _check_equal(make, X, Y3, epochs=4, learning_rate=[0.1, 0.01, 0.05, 0.2],
                 batch_size=[16, 64, 96, 1])


def test_sparse_X():
    X, y = _data(n=100)
    X[np.abs(X) < 0.8] = 0
    Xs = sp.csr_matrix(X)
    subsets = [np.arange(0, 80), np.arange(20, 100)]
    _check_equal(lambda: _nets(2, np.float64), Xs, y, epochs=4, subsets=subsets,
                 learning_rate=0.1, batch_size=10, optimizer=["sgd", "adam"])


def test_thread_count_does_not_change_results():
    X, y = _data()
    a, b = _nets(4, np.float32), _nets(4, np.float32)
    fit_many(a, X, y, epochs=5, n_threads=1, learning_rate=0.1, batch_size=8)
    fit_many(b, X, y, epochs=5, n_threads=2, learning_rate=0.1, batch_size=8)
    assert all(_same(p, q) for p, q in zip(a, b))


def test_callbacks_shared_and_per_network():
    X, y = _data()
    seen = {k: [] for k in range(3)}
    per = [[lambda e, logs, k=k: seen[k].append(e)] for k in range(3)]
    many = _nets(3, np.float64)
    fit_many(many, X, y, epochs=[3, 4, 5], callbacks=per, learning_rate=0.1)
    assert seen == {0: [0, 1, 2], 1: [0, 1, 2, 3], 2: [0, 1, 2, 3, 4]}
    # A tuple is one value shared by all; a callback may stop its network.
    stopper = (lambda e, logs: e == 1,)
    hs = fit_many(_nets(3, np.float64), X, y, epochs=5, callbacks=stopper)
    assert [len(h) for h in hs] == [2, 2, 2] and all(h.stopped_early for h in hs)


def test_a_callbacks_exception_stops_all_consistently():
    X, y = _data()
    nets = _nets(3, np.float64)

    def boom(epoch, logs):
        if epoch == 2:
            raise RuntimeError("from a callback")

    with pytest.raises(RuntimeError, match="from a callback"):
        fit_many(nets, X, y, epochs=6, callbacks=[None, [boom], None], learning_rate=0.1)
    # The networks before it finished, it kept its three epochs, the one
    # after it never started; every lock is free again.
    assert [len(n.history) for n in nets] == [6, 3, 0]
    for n in nets:
        n.fit(X, y, epochs=1)


def test_a_diverging_network_stops_alone():
    X, _ = _data()
    y = X @ np.arange(1.0, 7.0)
    rates = [1e-3, 10.0, 2e-3]

    def make():
        return [Network([6, 10, 1], ["relu", "identity"], "squared_error", seed=k)
                for k in range(3)]
    many = make()
    hs = fit_many(many, X, y, epochs=8, learning_rate=rates, batch_size=4, momentum=0.9)
    assert [h.diverged for h in hs] == [False, True, False]
    assert hs[1].stopped_early and len(hs[1]) < 8
    for k, net in enumerate(make()):
        if k == 1:
            with pytest.raises(DivergenceError):
                net.fit(X, y, epochs=8, learning_rate=rates[k], batch_size=4, momentum=0.9)
        else:
            assert _same_history(
                net.fit(X, y, epochs=8, learning_rate=rates[k], batch_size=4, momentum=0.9),
                hs[k])
        assert np.array_equal(net._params, many[k]._params)
        assert np.isfinite(many[k]._params).all()
    assert many[1]._optimizer is None   # the state that diverged is dropped


def test_stopping_state_per_network_continues():
    X, y = _data()
    states_many = [StoppingState() for _ in range(2)]
    states_alone = [StoppingState() for _ in range(2)]
    many, alone = _nets(2, np.float64), _nets(2, np.float64)
    for _ in range(3):
        fit_many(many, X, y, epochs=2, stopping="sklearn", stopping_state=states_many,
                 lr_schedule="invscaling", learning_rate=0.2, tol=1e-3)
        for net, st in zip(alone, states_alone):
            net.fit(X, y, epochs=2, stopping="sklearn", stopping_state=st,
                    lr_schedule="invscaling", learning_rate=0.2, tol=1e-3)
    for a, b, s, t in zip(many, alone, states_many, states_alone):
        assert _same(a, b)
        assert (s.samples_seen, s.learning_rate, s.best_loss) == (
            t.samples_seen, t.learning_rate, t.best_loss)


def test_zero_epochs_and_empty_list():
    X, y = _data()
    nets = _nets(2, np.float64)
    before = [n._params.copy() for n in nets]
    hs = fit_many(nets, X, y, epochs=[0, 3])
    assert len(hs[0]) == 0 and len(hs[1]) == 3
    assert np.array_equal(nets[0]._params, before[0])
    assert fit_many([], X, y, epochs=3) == []


@pytest.mark.parametrize("call, error, match", [
    (lambda n, X, y: fit_many(n, X, y, epochs=2, learning_rate=[0.1]), ValueError,
     "one value per network"),
    (lambda n, X, y: fit_many(n, X, y, epochs=2, learning_rat=0.1), TypeError,
     "unknown option"),
    (lambda n, X, y: fit_many([n[0], n[0]], X, y, epochs=2), ValueError, "more than once"),
    (lambda n, X, y: fit_many([n[0], "net"], X, y, epochs=2), TypeError, "not a Network"),
    (lambda n, X, y: fit_many(n, X, y, epochs=2, subsets=[[0, 1], [0, 10**6]]), IndexError,
     "outside"),
    (lambda n, X, y: fit_many(n, X, y, epochs=2, subsets=[None, [[0, 1]]]), ValueError,
     "1-D"),
    (lambda n, X, y: fit_many(n, X, y, epochs=2, sample_weight=[np.ones(3), None]),
     ValueError, "one weight per row"),
    (lambda n, X, y: fit_many(n, X, y, epochs=2, stopping_state=StoppingState()), TypeError,
     "one value per network"),
    (lambda n, X, y: fit_many(n, X, y[:-1], epochs=2), ValueError, "samples"),
    (lambda n, X, y: fit_many(n, X, y, epochs=[2, -1]), ValueError, "epochs"),
    (lambda n, X, y: fit_many(n, X, y, epochs=2, n_threads=0), ValueError, "n_threads"),
])
def test_bad_arguments_are_refused_before_training(call, error, match):
    X, y = _data()
    nets = _nets(2, np.float64)
    before = [n._params.copy() for n in nets]
    with pytest.raises(error, match=match):
        call(nets, X, y)
    assert all(np.array_equal(n._params, b) for n, b in zip(nets, before))
    assert all(len(n.history) == 0 for n in nets)


# Networks of a few units train together, one in each lane of a vector
# (see _fit_lanes in src/_engine.pyx): the results must still be each
# network's own fit, bit for bit, optimizer state included.

def _tiny(count, dtype, sizes, acts, loss, seed=0):
    return lambda: [Network(list(sizes), list(acts), loss, dtype=dtype, seed=seed + k)
                    for k in range(count)]


TINY_NETS = {
    "xor-sigmoid": ((2, 2, 1), ("sigmoid", "sigmoid"), "squared_error"),
    "tanh-logistic": ((3, 4, 1), ("tanh", "sigmoid"), "cross_entropy"),
    "relu-identity-deep": ((9, 5, 3, 2), ("relu", "tanh", "identity"), "squared_error"),
    "poisson": ((3, 4, 1), ("tanh", "identity"), "poisson"),
    "wide-input": ((12, 3, 2), ("sigmoid", "relu"), "squared_error"),
}

TINY_OPTIONS = {
    "full-batch": dict(learning_rate=[0.01 * (k + 1) for k in range(19)]),
    "minibatches": dict(batch_size=7, learning_rate=0.1, shuffle=[k % 3 != 0 for k in range(19)]),
    "online": dict(batch_size=1, learning_rate=0.02),
    "schedules": dict(batch_size=8, learning_rate=0.1, power_t=0.4,
                      lr_schedule=["invscaling", "cosine", "constant", "plateau"] * 4
                      + ["constant"] * 3),
    "stopping": dict(batch_size=10, learning_rate=0.2, early_stopping=True,
                     patience=[1, 2, 5] * 6 + [1], min_delta=1e-3),
    "sklearn-rules": dict(stopping="sklearn", batch_size=12, learning_rate=0.3,
                          lr_schedule=["adaptive", "invscaling", "constant"] * 6 + ["constant"],
                          tol=1e-3, n_iter_no_change=2, loss_penalty=1e-3),
    "adam": dict(optimizer="adam", batch_size=9, learning_rate=[1e-3 * (1 + k % 5)
                                                                for k in range(19)],
                 weight_decay=[0.0, 1e-2] * 9 + [0.0], beta2=[0.999, 0.99] * 9 + [0.9]),
    "momentum-decay": dict(momentum=[0.5, 0.9] * 9 + [0.9], weight_decay=1e-3, batch_size=8,
                           learning_rate=0.05),
}


def _tiny_data(sizes, loss, n=40, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, sizes[0]))
    y = rng.uniform(0, 1, size=(n, sizes[-1]))
    if loss == "poisson":
        y = rng.poisson(2.0, size=(n, sizes[-1])).astype(float)
    return X, y if sizes[-1] > 1 else y[:, 0]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("options", sorted(TINY_OPTIONS))
@pytest.mark.parametrize("kind", sorted(TINY_NETS))
def test_tiny_networks_in_lanes_equal_their_own_fits(kind, options, dtype):
    sizes, acts, loss = TINY_NETS[kind]
    X, y = _tiny_data(sizes, loss)
    epochs = [15 + k % 4 for k in range(19)]   # more networks than lanes, unequal epochs
    _check_equal(_tiny(19, dtype, sizes, acts, loss), X, y, epochs,
                 **TINY_OPTIONS[options])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_lanes_with_subsets_weights_and_other_networks(dtype):
    """Bootstraps (as many rows, other rows), per-network sample weights,
    and networks that cannot share the others' lanes (another optimizer, a
    softmax output, another width) in one call."""
    sizes, acts, loss = TINY_NETS["tanh-logistic"]
    X, y = _tiny_data(sizes, loss, n=30)
    y = (y > 0.5).astype(int)   # labels for the softmax network, targets for the others
    rng = np.random.default_rng(3)
    count = 11
    subsets = [rng.integers(0, 30, 30) for _ in range(count)]
    weights = [rng.uniform(0.5, 2.0, 30) if k % 2 else None for k in range(count)]

    def make():
        nets = _tiny(count - 3, dtype, sizes, acts, loss)()
        nets.append(Network([3, 4, 1], ["tanh", "sigmoid"], "cross_entropy", dtype=dtype,
                            seed=50))
        nets.append(Network([3, 4, 2], ["tanh", "softmax"], "cross_entropy", dtype=dtype,
                            seed=51))
        nets.append(Network([3, 40, 1], ["tanh", "sigmoid"], "cross_entropy", dtype=dtype,
                            seed=52))
        return nets
    options = dict(optimizer=["sgd"] * (count - 3) + ["adam", "sgd", "sgd"], batch_size=6,
                   learning_rate=0.1)
    many = make()
    hs = fit_many(many, X, y, epochs=12, subsets=subsets, sample_weight=weights, **options)
    for k, net in enumerate(make()):
        s = subsets[k]
        w = None if weights[k] is None else weights[k][s]
        g = net.fit(X[s], y[s], epochs=12, sample_weight=w,
                    **{n: (v[k] if isinstance(v, list) else v) for n, v in options.items()})
        assert _same(many[k], net), f"network {k}"
        assert _same_history(hs[k], g), f"network {k}"


# Wider networks share lanes too, in full groups where there are enough of
# them for every thread (n_threads=1 here), each product in the spelling the
# network alone gives it: bf_gemm's chains past SMALL_PRODUCT, the small
# loops' below (a short last batch), the first layer transposed where fit
# transposes it.
WIDE_NETS = {
    "softmax-transposed-first": ((20, 16, 5), ("tanh", "softmax"), "cross_entropy", 16),
    "deep-middle-wide": ((6, 40, 30, 3), ("relu", "sigmoid", "softmax"), "cross_entropy", 8),
    "squared-error": ((12, 48, 2), ("sigmoid", "identity"), "squared_error", 10),
    "online": ((70, 64, 3), ("tanh", "sigmoid"), "cross_entropy", 1),
}


WIDE_OPTIONS = {
    "sgd": dict(learning_rate=[0.02 * (1 + k % 5) for k in range(19)]),
    "adam": dict(optimizer="adam", learning_rate=[1e-3 * (1 + k % 5) for k in range(19)],
                 weight_decay=[0.0, 1e-3] * 9 + [0.0]),
    "adamw": dict(optimizer="adamw", learning_rate=3e-3, weight_decay=1e-2,
                  beta1=[0.8, 0.9] * 9 + [0.9]),
    "nesterov": dict(momentum=0.9, nesterov=True, learning_rate=[0.01, 0.02] * 9 + [0.03]),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("options", sorted(WIDE_OPTIONS))
@pytest.mark.parametrize("kind", sorted(WIDE_NETS))
def test_wider_networks_in_lanes_equal_their_own_fits(kind, options, dtype):
    sizes, acts, loss, batch = WIDE_NETS[kind]
    rng = np.random.default_rng(4)
    n = 70
    X = rng.uniform(-1, 1, size=(n, sizes[0]))
    if acts[-1] == "softmax":
        y = rng.integers(0, sizes[-1], n)
    else:
        y = rng.uniform(0, 1, size=(n, sizes[-1]))
    count = 19   # a full group and more, of every lane width, and some alone
    subsets = [rng.integers(0, n, n) if k % 3 == 1 else None for k in range(count)]
    weights = [rng.uniform(0.5, 2.0, n) if k % 4 == 2 else None for k in range(count)]
    _check_equal(_tiny(count, dtype, sizes, acts, loss), X, y, [3 + k % 2 for k in range(count)],
                 subsets=subsets, sample_weight=weights, n_threads=1, batch_size=batch,
                 shuffle=[k % 5 != 0 for k in range(count)], **WIDE_OPTIONS[options])


def test_a_diverging_network_in_a_lane_stops_alone():
    X, _ = _data(d=3)
    y = X @ np.arange(1.0, 4.0)
    rates = [1e-3, 50.0, 2e-3, 1e-2]
    make = _tiny(4, np.float64, (3, 4, 1), ("relu", "identity"), "squared_error")
    many = make()
    hs = fit_many(many, X, y, epochs=30, learning_rate=rates, batch_size=4)
    assert [h.diverged for h in hs] == [False, True, False, False]
    for k, net in enumerate(make()):
        if k == 1:
            with pytest.raises(DivergenceError):
                net.fit(X, y, epochs=30, learning_rate=rates[k], batch_size=4)
        else:
            assert _same_history(net.fit(X, y, epochs=30, learning_rate=rates[k],
                                         batch_size=4), hs[k])
        assert np.array_equal(net._params, many[k]._params)
        assert np.isfinite(many[k]._params).all()



@pytest.mark.skipif(sys.platform == "win32" or not hasattr(signal, "SIGINT"),
                    reason="needs POSIX signals")
@pytest.mark.parametrize("d, hidden, batch, count", [(16, 48, 40, 3), (4, 6, 10, 12)],
                         ids=["one-by-one", "lanes"])
def test_ctrl_c_leaves_every_network_consistent(d, hidden, batch, count):
    """SIGINT during a long fit_many: KeyboardInterrupt promptly; each network
    holds the parameters of a whole number of minibatch steps (replayed by
    train_step), its history its finished epochs, and its lock is free."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default KeyboardInterrupt handler here")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, d))
    y = (X[:, :4] > 0).astype(float)
    rate = 0.05

    def make():
        return [Network([d, hidden, 4], ["tanh", "sigmoid"], "cross_entropy", seed=k)
                for k in range(count)]
    nets = make()
    start = [n._params.copy() for n in nets]
    probe = make()[0]
    t = time.perf_counter()
    probe.fit(X, y, epochs=20, batch_size=batch, learning_rate=rate, shuffle=False)
    per_epoch = (time.perf_counter() - t) / 20
    epochs = max(100, int(3.0 / per_epoch))
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fit_many(nets, X, y, epochs=epochs, batch_size=batch, learning_rate=rate,
                     shuffle=False)
    finally:
        timer.cancel()
        timer.join()
    assert time.perf_counter() - t0 < 0.5 * 3 * per_epoch * epochs
    steps = X.shape[0] // batch
    for net, p0 in zip(nets, start):
        done = len(net.history)
        assert done < epochs
        # The epochs recorded, replayed by fit (fit_many's networks train as
        # alone), then at most one more epoch step by step.
        replay = make()[0]
        replay._params[...] = p0
        if done:
            replay.fit(X, y, epochs=done, batch_size=batch, learning_rate=rate, shuffle=False)
        for step in range(steps + 1):
            if np.array_equal(replay._params, net._params):
                break
            replay.train_step(X[step * batch:(step + 1) * batch],
                              y[step * batch:(step + 1) * batch], rate)
        else:
            pytest.fail("a network's parameters match no whole number of steps")
        net.fit(X, y, epochs=1)   # usable: the lock was released


@pytest.mark.parametrize("split", [0.0, [0.25, 0.0, 0.0, 0.0, 0.2, 0.0]])
def test_networks_given_the_same_rows_to_convert(split):
    """X and y that every network converts (integers, 1-D labels), networks
    of both dtypes, outputs and losses, with and without validation rows
    split off: the checked rows of one network serve the next of its kind,
    with the same result as each converting its own."""
    X, y = _data(n=90)
    Xi = np.rint(X * 4).astype(np.int64)

    def make():
        return ([Network([6, 5, 3], ["tanh", "softmax"], dtype=dt, seed=k)
                 for k, dt in enumerate([np.float64, np.float32, np.float64])]
                + [Network([6, 4, 1], ["relu", "sigmoid"], dtype="mixed_bfloat16", seed=7),
                   Network([6, 4, 1], ["relu", "sigmoid"], dtype=np.float32, seed=8),
                   Network([6, 1], ["identity"], "squared_error", seed=9)])
    yb = (y == 1).astype(np.int64)
    _check_equal(make, Xi, yb, epochs=3, learning_rate=0.05, batch_size=16,
                 validation_split=split)
    subsets = [np.arange(60), np.arange(60), np.arange(30, 90), None, None, np.arange(60)]
    _check_equal(make, Xi, yb, epochs=3, subsets=subsets, learning_rate=0.05,
                 batch_size=16, validation_split=split)
