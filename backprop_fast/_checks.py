"""Argument checks shared by Network, the scikit-learn estimators and the
command line: one family, one wording of every error."""
from __future__ import annotations

import math
import numbers

import numpy as np

# Largest count (epochs, patience) fit takes: the kernel counts in 64-bit
# integers and must be able to add to and double them.
_MAX_COUNT = 2**62


def _check_int(value, name, minimum, maximum=None):
    # The type test first: the ABC isinstance checks cost microseconds a call.
    if type(value) is not int and (isinstance(value, (bool, np.bool_))
                                   or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def _normalise_weights(weights, dtype):
    """Per-sample weights scaled to mean 1, in ``dtype``, or a ValueError.

    Divided by their largest value first, so that neither the sum of huge
    weights overflows nor tiny ones underflow on the way to mean 1.
    """
    if not np.isfinite(weights).all():
        raise ValueError("sample_weight times class_weight overflows (a product is "
                         "infinite); scale the weights down")
    peak = float(weights.max()) if weights.size else 0.0
    if not peak > 0:
        raise ValueError("sample_weight (times class_weight) must have a positive sum "
                         "over the training samples, got all zeros")
    if peak < np.finfo(np.float64).tiny:
        raise ValueError(f"sample_weight (times class_weight): the largest weight, "
                         f"{peak:g}, is subnormal, too small for the ratios between the "
                         "weights to be exact; multiply all weights by a constant")
    scaled = weights / peak
    return (scaled / scaled.mean()).astype(dtype)


def _check_real(value, name, low=None, high=None, low_open=False, high_open=False):
    """A finite float in the given range, or a TypeError/ValueError naming ``name``."""
    if type(value) is not float and type(value) is not int and (
            isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high or (high_open and value == high)
    if bad:
        lo = "" if low is None else f"{low} {'<' if low_open else '<='} "
        hi = "" if high is None else f" {'<' if high_open else '<='} {high}"
        raise ValueError(f"{name} must be a finite number with {lo}{name}{hi}, got {value}")
    return value


def _check_rate(value, name="learning_rate"):
    return _check_real(value, name, low=0, low_open=True)


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} = {value!r} is not one of {sorted(choices)}")
    return value


def _numeric_array(data, name):
    """``data`` as a real numeric array (not yet converted), or a clear error."""
    if data is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    if isinstance(data, np.ma.MaskedArray):
        # np.asarray would drop the mask and train on the masked values.
        raise TypeError(f"{name} is a masked array; masks are not supported: drop or "
                        "impute the masked entries and pass a plain array (e.g. "
                        f"{name}.filled(...) or {name}.compressed())")
    try:
        arr = np.asarray(data)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{name} must be a rectangular array of numbers: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers, got an array of dtype {arr.dtype}"
            + (" (complex values are not supported)" if arr.dtype.kind == "c" else ""))
    return arr


def _check_finite(arr, name):
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); "
                         "remove or impute them before training")


def _short(value, limit=60):
    """repr(value), cut to ``limit`` characters (hostile files hold anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_count(value, maximum=_MAX_COUNT):
    return type(value) is int and 0 <= value <= maximum


def _is_int(value) -> bool:
    """An integer, bools excluded (the type test first: the ABC isinstance
    checks cost microseconds a call)."""
    return type(value) is int or (isinstance(value, numbers.Integral)
                                  and not isinstance(value, (bool, np.bool_)))


def _is_real(value) -> bool:
    """A real number, bools excluded."""
    return type(value) is float or type(value) is int or (
        isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)))


def _check_bool(value, name):
    if value is not True and value is not False and not isinstance(value, np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
