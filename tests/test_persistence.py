"""save / Network.load: exact round trips, atomic writes, no pickle, clear errors."""
import json
import os
import pathlib

import numpy as np
import pytest

from backprop_fast import Network


def _trained(activations, loss, dtype, sizes=(4, 5, 3, 2)):
    rng = np.random.default_rng(0)
    net = Network(list(sizes), activations, loss, dtype=dtype, seed=1)
    X = rng.normal(size=(12, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], 12)]
    net.fit(X, y, epochs=3, batch_size=5, learning_rate=0.1)
    return net, X


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "activations, loss",
    [
        (["tanh", "relu", "softmax"], "cross_entropy"),
        ("sigmoid", "cross_entropy"),
        (["identity", "sigmoid", "relu"], "squared_error"),
    ],
)
def test_round_trip_is_exact(tmp_path, activations, loss, dtype):
    net, X = _trained(activations, loss, dtype)
    path = tmp_path / "net.npz"
    net.save(path)
    back = Network.load(path)
    assert back.layer_sizes == net.layer_sizes
    assert back.activations == net.activations
    assert back.loss == net.loss
    assert back.dtype == net.dtype
    for p, q in zip(net.weights + net.biases, back.weights + back.biases):
        assert q.dtype == p.dtype and q.shape == p.shape
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_str_and_pathlib_paths(tmp_path):
    net, X = _trained("sigmoid", "cross_entropy", np.float64)
    net.save(str(tmp_path / "a.npz"))
    net.save(pathlib.Path(tmp_path / "b.npz"))
    for name in ("a.npz", "b.npz"):
        for path in (tmp_path / name, str(tmp_path / name)):
            np.testing.assert_array_equal(Network.load(path).predict(X), net.predict(X))


def test_loaded_network_is_independent_and_trainable(tmp_path):
    net, X = _trained(["tanh", "relu", "softmax"], "cross_entropy", np.float64)
    net.save(tmp_path / "net.npz")
    back = Network.load(tmp_path / "net.npz")
    before = np.array(net.weights[0])
    back.fit(X, np.zeros(12, dtype=np.int64), epochs=2, learning_rate=0.5)
    np.testing.assert_array_equal(net.weights[0], before)
    assert not np.array_equal(back.weights[0], before)
    # Its weights are writable views, as for a constructed network.
    back.weights[0][...] = 0.0
    assert np.all(back.weights[0] == 0.0)


def test_save_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "net.npz"
    path.write_bytes(b"old contents, not a network")
    net, X = _trained("sigmoid", "cross_entropy", np.float64)
    net.save(path)
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]
    np.testing.assert_array_equal(Network.load(path).predict(X), net.predict(X))

    other, _ = _trained(["relu", "tanh", "sigmoid"], "squared_error", np.float32)
    other.save(path)
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]
    assert Network.load(path).activations == ("relu", "tanh", "sigmoid")


def test_save_to_a_missing_directory_fails_cleanly(tmp_path):
    net, _ = _trained("sigmoid", "cross_entropy", np.float64)
    with pytest.raises(OSError):
        net.save(tmp_path / "missing" / "net.npz")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# Corrupt or foreign files: ValueError, never a crash, a pickle load or a KeyError.


@pytest.fixture
def saved(tmp_path):
    """Path of a saved network and its bytes."""
    net, _ = _trained(["tanh", "relu", "softmax"], "cross_entropy", np.float64)
    path = tmp_path / "net.npz"
    net.save(path)
    return path, path.read_bytes()


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, saved, keep):
    _, data = saved
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError):
        Network.load(bad)


def test_random_bytes(tmp_path):
    bad = tmp_path / "random.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError):
        Network.load(bad)


def test_text_file(tmp_path):
    bad = tmp_path / "net.npz"
    bad.write_text("layer_sizes = [2, 2, 1]\n")
    with pytest.raises(ValueError):
        Network.load(bad)


def test_npz_with_unrelated_arrays(tmp_path):
    bad = tmp_path / "other.npz"
    np.savez(bad, a=np.arange(3), b=np.eye(2))
    with pytest.raises(ValueError):
        Network.load(bad)


def test_plain_npy_file(tmp_path):
    bad = tmp_path / "array.npy"
    np.save(bad, np.arange(10.0))
    with pytest.raises(ValueError):
        Network.load(bad)


class _Exploit:
    """Unpickling this would create a marker file: load must never unpickle."""

    marker = None

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _members(path):
    """The arrays of the .npz ``path``, by name (read without pickle)."""
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def _rewrite(src, dst, replace):
    """Copy the .npz ``src`` to ``dst`` with each array replaced by ``replace(name, array)``."""
    np.savez(dst, **{name: replace(name, array) for name, array in _members(src).items()})


def test_npz_with_pickled_object_array(tmp_path, saved):
    """Every member of a real save file replaced by a pickled object array."""
    path, _ = saved
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    bad = tmp_path / "pickled.npz"

    def replace(name, array):
        a = np.empty(1, dtype=object)
        a[0] = _Exploit()
        return a

    _rewrite(path, bad, replace)
    with pytest.raises(ValueError):
        Network.load(bad)
    assert not marker.exists()


def _is_float(array):
    return array.dtype.kind == "f" and array.ndim >= 1


def test_npz_with_one_pickled_member(tmp_path, saved):
    """Only the first parameter (float) array replaced by an object array of its
    shape: still refused, without unpickling."""
    path, _ = saved
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    bad = tmp_path / "pickled.npz"
    done = []

    def replace(name, array):
        if not done and _is_float(array):
            done.append(name)
            a = np.zeros(array.shape, dtype=object)
            a.flat[0] = _Exploit()
            return a
        return array

    _rewrite(path, bad, replace)
    assert done, "the save file holds no float array"
    with pytest.raises(ValueError):
        Network.load(bad)
    assert not marker.exists()


def test_npz_with_wrongly_sized_parameters(tmp_path, saved):
    """Parameter arrays one element short along their last axis do not fit the network."""
    path, _ = saved
    bad = tmp_path / "short.npz"
    done = []

    def replace(name, array):
        if _is_float(array):
            done.append(name)
            return np.ascontiguousarray(array[..., :-1])
        return array

    _rewrite(path, bad, replace)
    assert done, "the save file holds no float array"
    with pytest.raises(ValueError):
        Network.load(bad)


def test_npz_with_parameters_of_another_dtype(tmp_path, saved):
    """float64 parameters stored as float16: not what the description says."""
    path, _ = saved
    bad = tmp_path / "half.npz"
    _rewrite(path, bad, lambda name, a: a.astype(np.float16) if _is_float(a) else a)
    with pytest.raises(ValueError):
        Network.load(bad)


@pytest.mark.parametrize("text", ["not json {", "{}", "[1, 2]", '{"layer_sizes": [0]}', "null"])
def test_npz_with_garbled_description(tmp_path, saved, text):
    """Every text member (the network's description) replaced by nonsense."""
    path, _ = saved
    bad = tmp_path / "garbled.npz"
    done = []

    def replace(name, array):
        if array.dtype.kind in "US":
            done.append(name)
            return np.array(text)
        return array

    _rewrite(path, bad, replace)
    assert done, "the save file holds no text member"
    with pytest.raises(ValueError):
        Network.load(bad)


@pytest.mark.parametrize("which", ["first", "last"])
def test_npz_with_a_missing_member(tmp_path, saved, which):
    path, _ = saved
    arrays = _members(path)
    assert len(arrays) > 1
    del arrays[sorted(arrays)[0 if which == "first" else -1]]
    bad = tmp_path / "partial.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError):
        Network.load(bad)


def test_load_of_missing_file(tmp_path):
    """A missing file is not a corrupt one: the usual FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        Network.load(tmp_path / "nope.npz")


# ---------------------------------------------------------------- the format


@pytest.mark.parametrize("options", [dict(optimizer="adam", learning_rate=1e-2),
                                     dict(momentum=0.9, nesterov=True),
                                     dict(optimizer="adamw", weight_decay=0.1),
                                     dict()])
def test_saved_network_continues_training_exactly(tmp_path, options):
    """Optimizer state, step count and the shuffling generator travel in the file."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
    net = Network([4, 6, 3], ["tanh", "softmax"], seed=3)
    twin = Network([4, 6, 3], ["tanh", "softmax"], seed=3)
    net.fit(X, y, epochs=3, batch_size=8, **options)
    twin.fit(X, y, epochs=3, batch_size=8, **options)
    net.save(tmp_path / "m.npz")
    loaded = Network.load(tmp_path / "m.npz")
    loaded.fit(X, y, epochs=2, batch_size=8, **options)
    twin.fit(X, y, epochs=2, batch_size=8, **options)
    for a, b in zip(loaded.weights + loaded.biases, twin.weights + twin.biases):
        np.testing.assert_array_equal(a, b)
    assert loaded.history.loss == twin.history.loss
    assert len(loaded.history.loss) == 5


def test_history_of_all_fits_is_saved(tmp_path):
    X = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)
    y = np.array([0, 1, 1, 0])
    net = Network([2, 3, 1], seed=0)
    net.fit(X, y, epochs=4, learning_rate=0.5, validation_data=(X, y))
    net.fit(X, y, epochs=2, learning_rate=0.5)
    assert len(net.history.loss) == 6 and len(net.history.val_loss) == 4
    net.save(tmp_path / "h.npz")
    loaded = Network.load(tmp_path / "h.npz")
    for figure in ("loss", "val_loss", "val_accuracy", "learning_rate", "time"):
        assert getattr(loaded.history, figure) == getattr(net.history, figure)


def _edit_file(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"][()]))
    for key, value in changes.pop("meta", {}).items():
        meta[key] = value
    arrays["meta"] = np.array(json.dumps(meta))
    arrays.update(changes)
    np.savez(path, **arrays)


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    Network([2, 2, 1], seed=0).save(path)
    _edit_file(path, meta={"format_version": 99})
    with pytest.raises(ValueError, match="version 99.*Upgrade"):
        Network.load(path)


@pytest.mark.parametrize("change", [
    dict(params=np.zeros(5)),                                   # wrong length
    dict(params=np.zeros(9, dtype=np.float32)),                 # wrong dtype
    dict(rng_state=np.zeros(3, dtype=np.uint64)),
    dict(meta={"layer_sizes": [2, 3, 1]}),                      # params no longer fit
    dict(meta={"optimizer": {"name": "adam", "step": 1}}),      # state arrays missing
    dict(meta={"history": {"loss": ["a"]}}),
])
def test_inconsistent_file_is_refused(tmp_path, change):
    path = tmp_path / "m.npz"
    Network([2, 2, 1], seed=0).save(path)
    _edit_file(path, **change)
    with pytest.raises(ValueError, match="not a readable backprop_fast model"):
        Network.load(path)


def test_metadata_is_saved_and_loaded(tmp_path):
    net = Network([3, 4, 2], ["tanh", "softmax"], "cross_entropy", seed=1)
    assert net.metadata == {}
    path = tmp_path / "m.npz"
    info = {"columns": ["a", "b", "c"], "scale": [1.0, 2.5], "note": None, "n": 3}
    net.save(path, metadata=info)
    back = Network.load(path)
    assert back.metadata == info
    # Saved again, a loaded network keeps its metadata; a new dict replaces it.
    back.save(path)
    assert Network.load(path).metadata == info
    back.save(path, metadata={"other": True})
    assert Network.load(path).metadata == {"other": True}
    with pytest.raises(TypeError, match="metadata"):
        net.save(path, metadata={"x": object()})
    with pytest.raises(TypeError, match="metadata"):
        net.save(path, metadata={1: "int key"})
    assert Network.load(path).metadata == {"other": True}   # the failed saves wrote nothing
