"""Training behaviour: XOR, determinism, shuffling, precision, minibatch edge cases."""
import threading

import numpy as np
import pytest

from backprop_fast import Network

XOR_X = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float64)
XOR_Y = np.array([0, 1, 1, 0], dtype=np.float64)

# The tutorial's example: a 2-2-1 sigmoid network, cross-entropy, full-batch
# descent with learning rate 1.0, 1000 epochs. Some 2-2-1 starting points end
# in a local minimum (with this library's seeded initialisation, seeds 2, 4 and
# 11 of 0..14 do); seed 1 was picked by searching seeds 0..14: it is solved
# after 750 epochs and after 1000 its outputs are [0.023, 0.970, 0.978, 0.020].
XOR_SEED = 1
XOR_EPOCHS = 1000


def _solves_xor(net):
    return np.array_equal(np.round(net.predict(XOR_X)).ravel(), XOR_Y)


def test_tutorial_xor_2_2_1():
    net = Network([2, 2, 1], "sigmoid", "cross_entropy", seed=XOR_SEED)
    history = net.fit(XOR_X, XOR_Y, epochs=XOR_EPOCHS, learning_rate=1.0)
    assert len(history.loss) == XOR_EPOCHS
    assert history.loss[-1] < history.loss[0]
    np.testing.assert_array_equal(np.round(net.predict(XOR_X)).ravel(), [0, 1, 1, 0])
    # Confident, not just on the right side of 0.5 (a stuck network sits near log 2).
    assert net.evaluate(XOR_X, XOR_Y) < 0.1


def test_xor_2_4_1_solved_from_most_seeds():
    """A wider hidden layer avoids XOR's local minima from nearly every start
    (all ten seeds need at most 1000 epochs at the time of writing)."""
    solved = []
    for seed in range(10):
        net = Network([2, 4, 1], "sigmoid", "cross_entropy", seed=seed)
        net.fit(XOR_X, XOR_Y, epochs=2000, learning_rate=1.0)
        solved.append(_solves_xor(net))
    assert sum(solved) >= 9, f"solved for seeds {[s for s in range(10) if solved[s]]}"


def test_xor_from_integer_inputs_and_labels():
    """The tutorial's own integer arrays are accepted and train the same network."""
    a = Network([2, 4, 1], "sigmoid", "cross_entropy", seed=3)
    b = Network([2, 4, 1], "sigmoid", "cross_entropy", seed=3)
    ha = a.fit(XOR_X.astype(np.int64), XOR_Y.astype(np.int64), epochs=50, learning_rate=1.0)
    hb = b.fit(XOR_X, XOR_Y, epochs=50, learning_rate=1.0)
    assert ha.loss == hb.loss
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(wa, wb)


def _regression_problem(seed=7, n=40):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = np.stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2], np.cos(X[:, 3])], axis=1)
    return X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_gives_bit_identical_training(dtype):
    """Initialisation and the in-kernel shuffle are both driven by the seed."""
    X, y = _regression_problem()
    runs = []
    for _ in range(2):
        net = Network([5, 8, 6, 2], ["tanh", "relu", "identity"], "squared_error", dtype=dtype, seed=42)
        history = net.fit(X, y, epochs=5, batch_size=3, learning_rate=0.05, shuffle=True)
        runs.append((history.loss, net.weights + net.biases))
    assert runs[0][0] == runs[1][0]
    for p, q in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(p, q)


def test_different_seeds_differ():
    a = Network([5, 8, 2], "tanh", "squared_error", seed=1)
    b = Network([5, 8, 2], "tanh", "squared_error", seed=2)
    assert not np.array_equal(a.weights[0], b.weights[0])


def test_shuffle_changes_the_order():
    """With minibatches smaller than the data set, shuffle=True must not be the identity order."""
    X, y = _regression_problem()
    nets = [Network([5, 8, 2], ["tanh", "identity"], "squared_error", seed=5) for _ in range(2)]
    h_shuffled = nets[0].fit(X, y, epochs=2, batch_size=4, learning_rate=0.05, shuffle=True)
    h_ordered = nets[1].fit(X, y, epochs=2, batch_size=4, learning_rate=0.05, shuffle=False)
    assert h_shuffled.loss != h_ordered.loss
    assert not np.array_equal(nets[0].weights[0], nets[1].weights[0])


def _order_probe(shuffle):
    """Online SGD with learning rate 1 on one bias (X = 0, identity, squared error):
    each step sets b to the sample's y, so an epoch's loss is the mean of
    0.5 (y_prev - y_i)^2 over consecutive samples, a fingerprint of the order."""
    net = Network([1, 1], "identity", "squared_error", seed=0)
    net.weights[0][...] = 0.0
    net.biases[0][...] = 0.0
    X = np.zeros((6, 1))
    y = np.array([0.0, 1.0, 3.0, 7.0, 15.0, 31.0])
    return net.fit(X, y, epochs=12, batch_size=1, learning_rate=1.0, shuffle=shuffle).loss


def test_each_epoch_has_a_new_order():
    ordered = _order_probe(shuffle=False)
    assert len(set(ordered[1:])) == 1  # the probe is order-sensitive only
    shuffled = _order_probe(shuffle=True)
    assert len(set(shuffled[1:])) > 1, "the same order every epoch"


def test_shuffled_epoch_visits_every_sample_once(params_of, reference_of):
    """One online epoch with a tiny learning rate equals, to first order in the
    learning rate, one full-batch step of n times that rate, whatever the order;
    a sample skipped or repeated by the shuffle would change the sum."""
    X, y = _regression_problem(n=23)
    n, lr = X.shape[0], 1e-7
    net = Network([5, 6, 2], ["sigmoid", "identity"], "squared_error", seed=11)
    W0, b0 = params_of(net)
    ref = reference_of(net)
    cost0 = ref.evaluate(X, y)
    history = net.fit(X, y, epochs=1, batch_size=1, learning_rate=lr, shuffle=True)
    ref.train_step(X, y, n * lr)
    for m in range(len(W0)):
        for got, want, start in [(net.weights[m], ref.weights[m], W0[m]), (net.biases[m], ref.biases[m], b0[m])]:
            step = want - start
            # second-order terms are ~ n * lr = 2e-6 of the step; 1e-4 leaves room
            np.testing.assert_allclose(got - start, step, rtol=1e-4, atol=1e-4 * np.abs(step).max())
    # The epoch's cost is the mean of the per-sample costs before each step.
    np.testing.assert_allclose(history.loss[0], cost0, rtol=1e-4)


def test_shuffled_full_batch_equals_ordered_full_batch(reference_of, assert_params_close):
    """Shuffling the rows of the one full batch changes only the summation order."""
    X, y = _regression_problem()
    net = Network([5, 7, 2], ["tanh", "identity"], "squared_error", seed=3)
    ref = reference_of(net)
    history = net.fit(X, y, epochs=4, learning_rate=0.1, shuffle=True)
    np.testing.assert_allclose(history.loss, ref.fit(X, y, 4, None, 0.1), rtol=1e-10)
    assert_params_close(net, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_size", [40, 41, 1000])
def test_batch_size_at_least_n_is_full_batch(batch_size):
    X, y = _regression_problem(n=40)
    a = Network([5, 4, 2], ["relu", "identity"], "squared_error", seed=8)
    b = Network([5, 4, 2], ["relu", "identity"], "squared_error", seed=8)
    ha = a.fit(X, y, epochs=3, batch_size=batch_size, learning_rate=0.1, shuffle=False)
    hb = b.fit(X, y, epochs=3, batch_size=None, learning_rate=0.1, shuffle=False)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-12)
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_size", [3, 9, 39])
def test_batch_size_not_dividing_n(batch_size, reference_of, assert_params_close):
    """The last minibatch is smaller (40 = 13*3 + 1 = 4*9 + 4 = 39 + 1)."""
    X, y = _regression_problem(n=40)
    net = Network([5, 4, 2], ["tanh", "identity"], "squared_error", seed=8)
    ref = reference_of(net)
    history = net.fit(X, y, epochs=2, batch_size=batch_size, learning_rate=0.1, shuffle=False)
    np.testing.assert_allclose(history.loss, ref.fit(X, y, 2, batch_size, 0.1), rtol=1e-10)
    assert_params_close(net, ref, rtol=1e-10, atol=1e-12)


def test_epochs_zero_does_nothing(params_of):
    X, y = _regression_problem()
    net = Network([5, 4, 2], "tanh", "squared_error", seed=8)
    before = params_of(net)
    history = net.fit(X, y, epochs=0, learning_rate=0.1)
    assert list(history.loss) == []
    for p, q in zip(before[0] + before[1], net.weights + net.biases):
        np.testing.assert_array_equal(p, q)


def test_fit_reduces_the_cost():
    X, y = _regression_problem()
    net = Network([5, 16, 2], ["tanh", "identity"], "squared_error", seed=0)
    start = net.evaluate(X, y)
    history = net.fit(X, y, epochs=200, batch_size=8, learning_rate=0.05)
    assert all(np.isfinite(history.loss))
    assert net.evaluate(X, y) < 0.5 * start
    assert history.loss[-1] < history.loss[0]


def test_float32_agrees_with_float64():
    """Same starting parameters (rounded to float32); training in float32 tracks float64."""
    X, y = _regression_problem()
    n64 = Network([5, 8, 6, 2], ["sigmoid", "tanh", "identity"], "squared_error", dtype="float64", seed=4)
    n32 = Network([5, 8, 6, 2], ["sigmoid", "tanh", "identity"], "squared_error", dtype="float32", seed=4)
    assert n32.dtype == np.float32 and n64.dtype == np.float64
    for p64, p32 in zip(n64.weights + n64.biases, n32.weights + n32.biases):
        p32[...] = p64
        p64[...] = p32  # both now hold exactly the float32-representable values
    X32 = X.astype(np.float32).astype(np.float64)
    y32 = y.astype(np.float32).astype(np.float64)

    np.testing.assert_allclose(n32.predict(X32), n64.predict(X32), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n32.evaluate(X32, y32), n64.evaluate(X32, y32), rtol=1e-5)
    dW32, db32 = n32.gradients(X32, y32)
    dW64, db64 = n64.gradients(X32, y32)
    for g32, g64 in zip(dW32 + db32, dW64 + db64):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-6)

    h32 = n32.fit(X32, y32, epochs=5, batch_size=8, learning_rate=0.1, shuffle=False)
    h64 = n64.fit(X32, y32, epochs=5, batch_size=8, learning_rate=0.1, shuffle=False)
    np.testing.assert_allclose(h32.loss, h64.loss, rtol=1e-4)
    for p32, p64 in zip(n32.weights + n32.biases, n64.weights + n64.biases):
        assert p32.dtype == np.float32
        np.testing.assert_allclose(p32, p64, rtol=1e-4, atol=1e-5)


def test_separate_networks_train_in_parallel_threads():
    """No shared state in the kernel: threads give the same results as a serial run."""
    X, y = _regression_problem(n=200)

    def train(seed, out):
        net = Network([5, 32, 32, 2], ["tanh", "relu", "identity"], "squared_error", seed=seed)
        h = net.fit(X, y, epochs=20, batch_size=16, learning_rate=0.01)
        out[seed] = (h.loss, [np.array(p) for p in net.weights + net.biases])

    serial, threaded = {}, {}
    for seed in range(4):
        train(seed, serial)
    threads = [threading.Thread(target=train, args=(seed, threaded)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in range(4):
        assert threaded[seed][0] == serial[seed][0]
        for p, q in zip(threaded[seed][1], serial[seed][1]):
            np.testing.assert_array_equal(p, q)


def test_one_network_trained_from_two_threads():
    """Concurrent fits on one network are serialised: the result is one of the two
    serial orders, never an interleaving of two half-updated states."""
    X1, y1 = _regression_problem(seed=1, n=300)
    X2, y2 = _regression_problem(seed=2, n=300)

    def new():
        return Network([5, 32, 2], ["tanh", "identity"], "squared_error", seed=21)

    def run(net, X, y):
        net.fit(X, y, epochs=30, batch_size=10, learning_rate=0.01, shuffle=False)

    serial = []
    for first, second in [((X1, y1), (X2, y2)), ((X2, y2), (X1, y1))]:
        net = new()
        run(net, *first)
        run(net, *second)
        serial.append([np.array(p) for p in net.weights + net.biases])

    shared = new()
    threads = [threading.Thread(target=run, args=(shared, X, y)) for X, y in [(X1, y1), (X2, y2)]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = shared.weights + shared.biases
    assert any(all(np.array_equal(g, s) for g, s in zip(got, order)) for order in serial)


def test_float32_reductions_accumulate_in_double():
    """A million positive per-sample costs and output deltas. Summed one by one in
    float32 they would be off by ~6e-5 (costs) and ~1.5e-3 (deltas, the last bias
    gradient); accumulated in double, the float32 network matches float64 to
    about 1e-7. The full-batch train_step cost is one unchunked reduction."""
    rng = np.random.default_rng(17)
    X = rng.uniform(0, 1, size=(1_000_000, 2)).astype(np.float32).astype(np.float64)
    y = np.zeros(X.shape[0])  # sigmoid CE with y = 0: every output delta a - y > 0
    n32 = Network([2, 3, 1], "sigmoid", "cross_entropy", dtype="float32", seed=0)
    n64 = Network([2, 3, 1], "sigmoid", "cross_entropy", dtype="float64", seed=0)
    for p32, p64 in zip(n32.weights + n32.biases, n64.weights + n64.biases):
        p64[...] = p32
    np.testing.assert_allclose(n32.evaluate(X, y), n64.evaluate(X, y), rtol=2e-6)
    np.testing.assert_allclose(n32.gradients(X, y)[1][-1], n64.gradients(X, y)[1][-1], rtol=2e-6)
    np.testing.assert_allclose(n32.train_step(X, y, 1e-3), n64.train_step(X, y, 1e-3), rtol=2e-6)


def test_buffers_kept_between_fit_calls_train_as_fresh_ones():
    """fit keeps its scratch arrays, and the kernel's views of them and of the
    optimizer state, for the next call. Across calls that grow the data and
    the batch, switch the optimizer (new state arrays) and turn validation
    and sample weights on and off, one network must train exactly as a copy
    taken before each call, which starts with nothing kept."""
    import copy
    rng = np.random.default_rng(5)
    calls = [
        dict(n=40, batch_size=8, optimizer="sgd"),
        dict(n=90, batch_size=32, optimizer="adam", validation=True),
        dict(n=20, batch_size=None, optimizer="adam", weighted=True),
        dict(n=120, batch_size=1, optimizer="sgd", momentum=0.5),
        dict(n=60, batch_size=16, optimizer="sgd", early_stopping=True),
    ]
    kept = Network([5, 7, 3], ["tanh", "softmax"], "cross_entropy", seed=2)
    for call in calls:
        n = call.pop("n")
        X = rng.normal(size=(n, 5))
        y = rng.integers(0, 3, n)
        options = dict(epochs=3, learning_rate=0.05, **call)
        if options.pop("validation", False):
            options["validation_data"] = (X[:10], y[:10])
        if options.pop("weighted", False):
            options["sample_weight"] = rng.uniform(0.5, 2.0, n)
        fresh = copy.deepcopy(kept)
        loss_kept = kept.fit(X, y, **options).loss
        loss_fresh = fresh.fit(X, y, **options).loss
        assert loss_kept == loss_fresh
        for a, b in zip(kept.weights + kept.biases, fresh.weights + fresh.biases):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(kept.predict(X), fresh.predict(X))
