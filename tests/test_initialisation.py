"""A network's start: exactly the documented recipe, drawn from
``np.random.default_rng(seed)``, however the architecture is written.

The recipe: for each layer in turn, its weights (row by row) and then its
biases from ``rng.uniform(-bound, bound)`` (Glorot-uniform, factor 2 for
sigmoid layers, He-uniform for ReLU layers), then the seed of the shuffling
generator from ``rng.integers(0, 2**63)``. The constructor may draw these
any way that gives the same numbers; these tests hold it to them.
"""
import numpy as np
import pytest

from backprop_fast import Network
from backprop_fast.network import _kernel

ARCHITECTURES = [
    ([4, 5, 3], ["relu", "softmax"], "cross_entropy"),
    ([2, 2, 1], ["sigmoid", "sigmoid"], "cross_entropy"),
    ([3, 1], ["identity"], "poisson"),
    ([7, 6, 5, 4], ["tanh", "relu", "identity"], "squared_error"),
    ([130, 140, 2], ["relu", "sigmoid"], "cross_entropy"),
]
SEEDS = [0, 1, 12345, 2**32 - 1, 2**32 + 5, 2**63 + 7, 2**70 + 3, 2**128 - 1, 2**130 + 11]


def _recipe(sizes, activations, dtype, seed):
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out, act in zip(sizes, sizes[1:], activations):
        if act == "relu":
            bound = np.sqrt(6.0 / n_in)
        else:
            bound = np.sqrt((2.0 if act == "sigmoid" else 6.0) / (n_in + n_out))
        weights.append(rng.uniform(-bound, bound, size=(n_out, n_in)).astype(dtype))
        biases.append(rng.uniform(-bound, bound, size=n_out).astype(dtype))
    state = np.empty(4, dtype=np.uint64)
    _kernel.rng_seed(state, int(rng.integers(0, 2**63)))
    return weights, biases, state


def _assert_start(net, weights, biases, state):
    for got, want in zip(list(net.weights) + list(net.biases), weights + biases):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
    assert np.array_equal(net._rng_state, state)


@pytest.mark.parametrize("precision", ["float64", "float32", "mixed_bfloat16"])
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: "-".join(map(str, a[0])))
def test_the_start_is_the_recipe(arch, precision):
    sizes, activations, loss = arch
    dtype = np.float64 if precision == "float64" else np.float32
    for seed in SEEDS:
        net = Network(sizes, activations, loss, dtype=precision, seed=seed)
        _assert_start(net, *_recipe(sizes, activations, dtype, seed))


def test_every_spelling_of_an_architecture_gives_the_same_start():
    sizes, activations = [5, 4, 3], ["tanh", "tanh"]
    want = _recipe(sizes, activations, np.float32, 99)
    spellings = [
        (sizes, activations, "float32"),
        (tuple(sizes), tuple(activations), np.float32),
        (np.array(sizes), "tanh", np.dtype(np.float32)),
        ([np.int64(5), 4, np.int32(3)], np.array(activations), "f4"),
        (sizes, "tanh", np.dtype("float32").newbyteorder("=")),
    ]
    for layer_sizes, acts, dtype in spellings * 2:  # again, once each is known
        net = Network(layer_sizes, acts, "squared_error", dtype=dtype, seed=np.int64(99))
        assert net.layer_sizes == (5, 4, 3) and net.activations == ("tanh", "tanh")
        assert net.dtype == np.float32 and net.precision == "float32"
        _assert_start(net, *want)


def test_a_known_architecture_is_still_checked():
    """Arguments equal to a valid architecture's but of another type, or
    invalid in combination, are refused as ever after the valid one was
    made."""
    Network([2, 3], "sigmoid", "cross_entropy", dtype="float64", seed=0)
    Network([2, 3], "relu", "squared_error", dtype="float64", seed=0)
    with pytest.raises(TypeError, match=r"layer_sizes\[0\] must be an int, got float 2.0"):
        Network([2.0, 3], "sigmoid", "cross_entropy", seed=0)
    with pytest.raises(TypeError, match=r"layer_sizes\[0\] must be an int, got bool True"):
        Network([True, 3], "sigmoid", "cross_entropy", seed=0)
    with pytest.raises(ValueError, match="needs a sigmoid or softmax output"):
        Network([2, 3], "relu", "cross_entropy", seed=0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        Network([2, 3], "sigmoid", seed=True)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        Network([2, 3], "sigmoid", seed=-1)
    with pytest.raises(ValueError, match="dtype must be"):
        Network([2, 3], "sigmoid", dtype="float16", seed=0)


def test_networks_of_one_architecture_own_their_parameters():
    a = Network([3, 4, 2], "tanh", "squared_error", seed=1)
    b = Network([3, 4, 2], "tanh", "squared_error", seed=1)
    assert np.array_equal(a._params, b._params)
    a.weights[0][...] = 0.5
    assert not np.array_equal(a._params, b._params)
    assert not np.shares_memory(a._params, b._params)
    with pytest.raises(AttributeError, match="read-only"):
        a.layer_sizes = (3, 5, 2)


def test_no_seed_draws_fresh_entropy():
    a = Network([3, 4, 2], seed=None)
    b = Network([3, 4, 2], seed=None)
    assert not np.array_equal(a._params, b._params)
    assert not np.array_equal(a._rng_state, b._rng_state)
