"""Choosing the kernel variant: baseline, AVX2 or AVX-512 (backprop_fast/_kernels.py).

The numerical tests (test_activations, test_gradients, test_reference_agreement)
run on every variant through the ``kernel_variant`` fixture; these check the
choice itself.
"""
import os
import platform
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import backprop_fast
from backprop_fast import Network, _kernels
from backprop_fast import network as network_module


def _run(code, isa, tmp_path):
    """Run code in a child that imports this backprop_fast with BACKPROP_FAST_ISA=isa."""
    parent = os.path.dirname(os.path.dirname(os.path.abspath(backprop_fast.__file__)))
    env = dict(os.environ, PYTHONPATH=parent)
    env.pop("BACKPROP_FAST_ISA", None)
    if isa is not None:
        env["BACKPROP_FAST_ISA"] = isa
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def test_default_is_the_widest_available():
    usable = _kernels.available()
    assert usable[-1] == "baseline"
    assert set(usable) <= set(_kernels.ISAS)
    if os.environ.get("BACKPROP_FAST_ISA", "auto") in ("", "auto"):
        assert backprop_fast.kernel_isa == usable[0]
    assert backprop_fast.kernel_isa in usable


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or sys.platform == "win32",
                    reason="variants are built with gcc or clang on x86-64 only")
def test_variants_this_cpu_runs_are_built():
    """A release build on x86-64 carries every variant; those the CPU runs are usable."""
    from backprop_fast import _kernel
    for isa in ("avx2", "avx512"):
        if _kernel.cpu_supports(isa):
            assert isa in _kernels.available(), f"the {isa} kernel was not built"


def test_avx512_implies_avx2():
    from backprop_fast import _kernel
    if _kernel.cpu_supports("avx512"):
        assert _kernel.cpu_supports("avx2")
    with pytest.raises(ValueError, match="unknown instruction set"):
        _kernel.cpu_supports("sse9")


def test_load_rejects_unknown_and_unusable_names(monkeypatch):
    with pytest.raises(ValueError, match="BACKPROP_FAST_ISA must be one of"):
        _kernels.load("avx1024")
    monkeypatch.setattr(_kernels, "available", lambda: ["baseline"])
    with pytest.raises(ImportError, match="available here: baseline"):
        _kernels.load("avx512")
    engine, isa = _kernels.load("auto")
    assert isa == "baseline" and engine is _kernels._baseline


@pytest.mark.parametrize("isa", _kernels.available())
def test_environment_variable_chooses_the_variant(isa, tmp_path):
    code = ("import backprop_fast, backprop_fast.network as n; "
            "print(backprop_fast.kernel_isa, n._kernel.engine.__name__)")
    out = _run(code, isa, tmp_path)
    assert out.returncode == 0, out.stderr
    suffix = "" if isa == "baseline" else "_" + isa
    assert out.stdout.split() == [isa, f"backprop_fast._engine{suffix}"]


def test_environment_variable_with_a_bad_name_fails_the_import(tmp_path):
    out = _run("import backprop_fast", "neon", tmp_path)
    assert out.returncode != 0
    assert "BACKPROP_FAST_ISA must be one of auto, avx512, avx2, baseline; got 'neon'" in out.stderr


def test_variants_train_alike(kernel_variant):
    """The same fit on each variant ends within rounding of the baseline's."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 9))
    y = rng.integers(0, 4, 64)
    results = []
    for engine in (kernel_variant.engine, _kernels._baseline):
        kernel_variant.use(engine)
        net = Network([9, 16, 4], ["tanh", "softmax"], "cross_entropy", seed=5)
        net.fit(X, y, epochs=5, batch_size=8, learning_rate=0.1)
        results.append(np.concatenate([w.ravel() for w in net.weights]))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [[8, 4, 2], [12, 9, 3], [21, 7, 5, 1], [5, 6, 2]])
@pytest.mark.parametrize("shuffle", [False, True])
def test_online_sgd_trains_as_one_sample_at_a_time(kernel_variant, dtype, sizes, shuffle,
                                                    monkeypatch):
    """Online SGD folds each step's first-layer update into the next sample's
    forward product (inputs of 8 or more); fit calls of one sample each have
    no next sample, so nothing is folded. Both must train alike, bit for bit,
    in the order fit took the samples."""
    # The order is read from the network's kept scratch, which small fits
    # otherwise leave to the kernel.
    monkeypatch.setattr(network_module, "_OWN_SCRATCH_BYTES", 0)
    rng = np.random.default_rng(sum(sizes))
    X = rng.normal(size=(25, sizes[0])).astype(dtype)
    Y = rng.random(size=(25, sizes[-1])).astype(dtype)
    acts = ["tanh"] * (len(sizes) - 2) + ["sigmoid"]
    nets = [Network(sizes, acts, "cross_entropy", dtype=dtype, seed=0) for _ in range(2)]
    nets[0].fit(X, Y, epochs=1, batch_size=1, learning_rate=0.3, shuffle=shuffle)
    order = nets[0]._scratch["order"][:len(X)] if shuffle else range(len(X))
    for i in order:
        nets[1].fit(X[i:i + 1], Y[i:i + 1], epochs=1, batch_size=1, learning_rate=0.3)
    assert sorted(order) == list(range(len(X)))
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_array_equal(a, b)


def test_a_short_sum_rounds_alike_at_every_length(kernel_variant):
    """A unit with under eight inputs sums them as one chain of multiply-adds,
    each rounded once where the build fuses them (FMA) and twice where it
    does not, the same at every length: gcc vectorises such a loop, where the
    trip count allows, as a reduction that rounds each product first."""
    rng = np.random.default_rng(11)

    def chains(x, w):
        fused = plain = 0.0
        for xi, wi in zip(x.tolist(), w.tolist()):
            fused = float(Fraction(xi) * Fraction(wi) + Fraction(fused))  # rounded once
            plain = plain + xi * wi
        return fused, plain

    kinds = []
    for n_in in range(1, 8):
        net = Network([n_in, 1], "identity", "squared_error", seed=n_in)
        net.biases[0][...] = 0
        X = rng.normal(size=(32, n_in))
        z = net.predict(X)[:, 0]
        fused, plain = np.array([chains(x, net.weights[0][0]) for x in X]).T
        kinds.append({kind for kind, want in (("fused", fused), ("plain", plain))
                      if np.array_equal(z, want)})
    # One inputs' products are never added: both models hold there.
    assert kinds[0] == {"fused", "plain"}
    assert set.intersection(*kinds), kinds


def _chains(a, b):
    """sum a_k b_k as one chain of multiply-adds, k in order, from -0: each
    rounded once (fused), and each product rounded before it is added."""
    fused = plain = -0.0
    for ak, bk in zip(a, b):
        fused = float(Fraction(ak) * Fraction(bk) + Fraction(fused))
        plain = plain + ak * bk
    return fused, plain


@pytest.mark.parametrize("rows, n_in, n_out", [(64, 70, 22), (16, 300, 22), (13, 40, 9), (40, 30, 5)])
def test_wide_products_are_one_chain_per_element(kernel_variant, rows, n_in, n_out):
    """On every variant each element of a wide forward product and of the
    weight gradient is one chain of multiply-adds, k in order, fused where
    the build has FMA: exact arithmetic says what every bit must be, whatever
    the blocking (row panels of 6, column panels of two vectors, chunks of k)
    cuts through, and where a forward product into fewer units than a panel
    is done as its transpose."""
    assert rows * n_in * n_out > kernel_variant.SMALL_PRODUCT_MACS
    rng = np.random.default_rng(rows + n_in)
    net = Network([n_in, n_out], "identity", "squared_error", seed=1)
    X = rng.normal(size=(rows, n_in))
    Y = rng.normal(size=(rows, n_out))
    W, b = net.weights[0], net.biases[0]
    sums = np.array([[_chains(x, w) for w in W.tolist()] for x in X.tolist()])
    Z = net.predict(X)
    kinds = [k for k in (0, 1) if np.array_equal(Z, sums[..., k] + b)]
    assert kinds, "the forward product is neither chain, fused nor plain"
    kind = kinds[0]
    # dC/dW = (D / rows).T @ X with D = Z - Y: each (D / rows) rounded first.
    D = (Z - Y) * (1.0 / rows)
    sums = np.array([[_chains(d, x)[kind] for x in X.T.tolist()] for d in D.T.tolist()])
    grad_w, _ = net.gradients(X, Y)
    np.testing.assert_array_equal(grad_w[0], sums)
    if kernel_variant.engine is not _kernels._baseline:
        assert kind == 0, "the FMA builds fuse every multiply-add"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_in", [3, 5, 8, 21])
def test_units_are_computed_alike_wherever_they_sit(kernel_variant, dtype, n_in):
    """The small products take output units four at a time and the rest one
    by one; a unit's sums must not depend on which: permuting a layer's units
    permutes its outputs and its training exactly, bit for bit."""
    rng = np.random.default_rng(n_in)
    n_out = 7                      # one block of four, three units on their own
    perm = rng.permutation(n_out)
    X = rng.normal(size=(40, n_in)).astype(dtype)
    Y = rng.normal(size=(40, n_out)).astype(dtype)
    nets = [Network([n_in, n_out], "tanh", "squared_error", dtype=dtype, seed=0)
            for _ in range(2)]
    nets[1].weights[0][...] = nets[0].weights[0][perm]
    nets[1].biases[0][...] = nets[0].biases[0][perm]
    for net, targets in zip(nets, (Y, Y[:, perm])):
        # Batches of one: every product is small enough for the kernel's loops.
        net.fit(X, targets, epochs=2, batch_size=1, learning_rate=0.05, shuffle=False)
    np.testing.assert_array_equal(nets[1].weights[0], nets[0].weights[0][perm])
    np.testing.assert_array_equal(nets[1].biases[0], nets[0].biases[0][perm])
    for x in X[:3]:
        np.testing.assert_array_equal(nets[1].predict(x), nets[0].predict(x)[perm])
