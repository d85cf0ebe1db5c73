"""The kernel's own scalar math against long-double NumPy, over the whole input range.

src/_activations.pxd replaces libm's exp, expm1, tanh and log1p with branch-free
polynomial versions and documents them as within 3 ulp of the correctly rounded
result in either precision, with NaN passed through. The private shim
``_kernel._test_elementwise(name, x)`` applies one of them to x in place. Every
test runs on each kernel variant this machine runs (the AVX2 and AVX-512 builds
fuse multiply-adds, so their rounding differs from the baseline's).
References are computed in np.longdouble (80-bit on x86-64, 11 more bits than
float64), so a reference rounded to float64 is itself within about 1/2 ulp.
"""
import numpy as np
import pytest

import backprop_fast.network

pytestmark = pytest.mark.usefixtures("kernel_variant")

LD = np.longdouble
MAX_ULP = 3
DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]


def _apply(name, x, dtype):
    out = np.array(x, dtype=dtype)  # a fresh contiguous copy: the shim works in place
    backprop_fast.network._kernel._test_elementwise(name, out)
    return out


def _ulp_error(got, ref, dtype):
    """|got - ref| in units of the last place of ref rounded to dtype."""
    spacing = np.spacing(np.abs(ref.astype(dtype))).astype(LD)
    return np.abs(got.astype(LD) - ref) / spacing


def _grid(dtype, lo_exp, hi):
    """Magnitudes from the smallest subnormal's decade up to ``hi``, log and linear spaced."""
    tiny = np.finfo(dtype).smallest_subnormal
    mags = np.concatenate([
        np.logspace(np.log10(tiny), np.log10(hi), 20000),
        np.linspace(0, hi, 20001),
        [tiny, 2 * tiny, np.finfo(dtype).smallest_normal, np.finfo(dtype).eps, 0.5, 1.0, 2.0],
        np.logspace(lo_exp, 0, 200),
    ])
    mags = mags[mags <= hi]
    return np.unique(mags.astype(dtype))


def _exp_domain(dtype):
    # exp_neg/expm1_neg take x <= 0; below -745.2 (float64) or -103.3 (float32)
    # exp(x) rounds to zero. Include both sides of the normal/subnormal and
    # zero boundaries and the range-reduction steps k ln 2.
    lim = 760.0 if dtype == np.float64 else 110.0
    specials = [708.39, 708.4, 745.1, 745.2, 745.5, 87.33, 87.34, 103.2, 103.3, 104.0]
    steps = np.log(2) * (np.arange(1, int(lim / np.log(2))) + 0.5)  # |r| = ln2/2
    x = np.concatenate([_grid(dtype, -30, lim), specials, steps, np.nextafter(steps, 0)])
    return -np.unique(x[x <= lim].astype(dtype))


def _real_domain(dtype):
    lim = 800.0 if dtype == np.float64 else 120.0
    m = np.concatenate([_grid(dtype, -30, 60.0), np.linspace(60, lim, 500)])
    return np.unique(np.concatenate([-m, m]).astype(dtype))


def _unit_domain(dtype):
    # log1p_unit takes 0 <= x <= 1; the reduction switches at 1 + x = sqrt(2).
    edge = np.sqrt(2) - 1
    near = [np.nextafter(dtype(edge), dtype(0)), dtype(edge), np.nextafter(dtype(edge), dtype(1))]
    x = np.concatenate([_grid(dtype, -30, 1.0), near, [0.0, 1.0]])
    return np.unique(x.astype(dtype))


def _ge1_domain(dtype):
    # log_ge1 takes x >= 1 (the kernel's are sums of exps, one of them 1).
    info = np.finfo(dtype)
    # The exponents in float64: in float32, log10(max) - 1e-6 rounds back to
    # log10(max) and the top of the grid overflows.
    x = np.concatenate([np.logspace(0, np.log10(float(info.max)) - 1e-6, 40001),
                        np.linspace(1, 64, 20001), [1.0, 2.0, np.sqrt(2), info.max],
                        np.nextafter(dtype(1), dtype(2)) + np.arange(100) * np.finfo(dtype).eps])
    x = x.astype(dtype)
    return np.unique(x[np.isfinite(x) & (x >= 1)])


def _softplus_ref(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


CASES = {
    # name: (domain, reference on long doubles)
    "exp_neg": (_exp_domain, np.exp),
    "expm1_neg": (_exp_domain, np.expm1),
    "log1p_unit": (_unit_domain, np.log1p),
    "sigmoid": (_real_domain, lambda z: 1 / (1 + np.exp(-z))),
    "tanh": (_real_domain, np.tanh),
    "softplus": (_real_domain, _softplus_ref),
    "log_ge1": (_ge1_domain, np.log),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_within_3_ulp(name, dtype):
    domain, reference = CASES[name]
    x = domain(dtype)
    got = _apply(name, x, dtype)
    ref = reference(x.astype(LD))
    err = _ulp_error(got, ref, dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP, (
        f"{name}({x[worst]!r}) = {got[worst]!r}, expected {ref[worst]!r}: {float(err[worst]):.2f} ulp"
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_is_exact(dtype):
    z = _real_domain(dtype)
    np.testing.assert_array_equal(_apply("relu", z, dtype), np.where(z < 0, 0, z))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [*CASES, "relu"])
def test_nan_passes_through(name, dtype):
    """NaN in, NaN out: divergence must never be turned into a finite number."""
    assert np.isnan(_apply(name, [np.nan], dtype)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name, x, expected",
    [
        ("exp_neg", 0.0, 1.0),
        ("exp_neg", -np.inf, 0.0),
        ("expm1_neg", 0.0, 0.0),
        ("expm1_neg", -np.inf, -1.0),
        ("log1p_unit", 0.0, 0.0),
        ("sigmoid", 0.0, 0.5),
        ("sigmoid", np.inf, 1.0),
        ("sigmoid", -np.inf, 0.0),
        ("tanh", 0.0, 0.0),
        ("tanh", np.inf, 1.0),
        ("tanh", -np.inf, -1.0),
        ("softplus", -np.inf, 0.0),
        ("softplus", np.inf, np.inf),
        ("softplus", 0.0, np.log(2.0)),
        ("log_ge1", 1.0, 0.0),
        ("log_ge1", np.inf, np.inf),
    ],
)
def test_exact_values(name, x, expected, dtype):
    got = _apply(name, [x], dtype)[0]
    assert got == dtype(expected) or abs(got - expected) <= np.spacing(dtype(expected))


@pytest.mark.parametrize("dtype", DTYPES)
def test_ranges_and_symmetry(dtype):
    """sigmoid in [0, 1] and |tanh| <= 1 everywhere, so a(1 - a) and 1 - a^2 are never
    negative; tanh is odd bit for bit (it is built with copysign)."""
    z = _real_domain(dtype)
    s = _apply("sigmoid", z, dtype)
    t = _apply("tanh", z, dtype)
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(np.abs(t) <= 1)
    np.testing.assert_array_equal(_apply("tanh", -z, dtype), -t)
    assert np.signbit(_apply("tanh", [-0.0], dtype)[0])
