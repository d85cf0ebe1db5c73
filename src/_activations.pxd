# Elementwise math for the kernel: exp, expm1 and log1p on the ranges the
# activations and costs need, written branch-free so that gcc vectorises the
# loops that call them with the baseline instruction set (SSE2). libm's scalar
# calls would cost more than the rest of a small network's step put together.
#
# Accuracy: within 3 ulp of the correctly rounded result in either
# precision (tests/test_activations.py
# compares them with NumPy over the whole input range). NaN propagates through
# every function, so divergence is never hidden.
from libc.math cimport INFINITY, copysign, copysignf, fabs, fabsf
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy

cimport cython
from cython cimport floating

# Activation codes shared with backprop_fast/network.py.
cdef enum:
    ACT_SIGMOID = 0
    ACT_TANH = 1
    ACT_RELU = 2
    ACT_IDENTITY = 3
    ACT_SOFTMAX = 4

# Cost codes shared with backprop_fast/network.py.
cdef enum:
    LOSS_SQUARED_ERROR = 0
    LOSS_CROSS_ENTROPY = 1
    # Half the Poisson deviance on an identity output layer read as the log
    # of the mean (a log link), as scikit-learn's MLPRegressor(loss="poisson").
    LOSS_POISSON = 2


cdef inline double _f64(int64_t bits) noexcept nogil:
    cdef double x
    memcpy(&x, &bits, sizeof(x))
    return x


cdef inline int64_t _i64(double x) noexcept nogil:
    cdef int64_t bits
    memcpy(&bits, &x, sizeof(bits))
    return bits


cdef inline float _f32(int32_t bits) noexcept nogil:
    cdef float x
    memcpy(&x, &bits, sizeof(x))
    return x


cdef inline int32_t _i32(float x) noexcept nogil:
    cdef int32_t bits
    memcpy(&bits, &x, sizeof(bits))
    return bits


cdef inline floating abs_(floating x) noexcept nogil:
    if floating is double:
        return fabs(x)
    else:
        return fabsf(x)


cdef inline floating copysign_(floating x, floating y) noexcept nogil:
    if floating is double:
        return copysign(x, y)
    else:
        return copysignf(x, y)


cdef inline double _expm1_core_d(double x, double* scale) noexcept nogil:
    """Return q and set *scale = 2**k with exp(x) = scale * (1 + q), for x <= 0.

    x = k ln2 + r with |r| <= ln2/2; q = exp(r) - 1 by its Taylor series to
    degree 13 (truncation error 4e-18 relative). The scale is built as
    2**(k+54) * 2**-54 so that results in the subnormal range are rounded once.
    """
    cdef double t, k, r, q
    cdef int64_t kbits
    # exp(-745.2) is below half the smallest subnormal: clamping there keeps
    # k + 54 + 1023 positive. The comparison is false for NaN, which passes on.
    if x < -745.5:
        x = -745.5
    # Adding 1.5 * 2**52 rounds to an integer and leaves it in the low bits.
    t = x * 1.4426950408889634 + 6755399441055744.0
    k = t - 6755399441055744.0
    kbits = _i64(t) - _i64(6755399441055744.0)
    scale[0] = _f64((kbits + 54 + 1023) << 52) * 5.551115123125783e-17
    # Cody-Waite: k * LN2_HI is exact for |k| < 2**11.
    r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
    q = 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    return (q * r) * r + r


cdef inline float _expm1_core_f(float x, float* scale) noexcept nogil:
    """Float version of _expm1_core_d: Taylor to degree 7 (error 7e-9 relative)."""
    cdef float t, k, r, q
    cdef int32_t kbits
    # exp(-104) is below half the smallest float subnormal.
    if x < <float>-104.0:
        x = <float>-104.0
    t = x * <float>1.44269504 + <float>12582912.0
    k = t - <float>12582912.0
    kbits = _i32(t) - _i32(<float>12582912.0)
    scale[0] = _f32((kbits + 24 + 127) << 23) * <float>5.9604645e-08
    # LN2_HI has 9 significant bits: k * LN2_HI is exact for |k| < 2**15.
    r = (x - k * <float>0.693359375) - k * <float>-2.12194440e-4
    q = <float>(1.0 / 5040.0)
    q = q * r + <float>(1.0 / 720.0)
    q = q * r + <float>(1.0 / 120.0)
    q = q * r + <float>(1.0 / 24.0)
    q = q * r + <float>(1.0 / 6.0)
    q = q * r + <float>0.5
    return (q * r) * r + r


cdef inline floating exp_neg(floating x) noexcept nogil:
    """exp(x) for x <= 0 (or NaN)."""
    cdef double sd
    cdef float sf
    cdef double qd
    cdef float qf
    if floating is double:
        qd = _expm1_core_d(x, &sd)
        return sd + sd * qd
    else:
        qf = _expm1_core_f(x, &sf)
        return sf + sf * qf


cdef inline floating expm1_neg(floating x) noexcept nogil:
    """exp(x) - 1 for x <= 0 (or NaN), accurate near zero."""
    cdef double sd
    cdef float sf
    cdef double qd
    cdef float qf
    if floating is double:
        qd = _expm1_core_d(x, &sd)
        # sd - 1 is exact for the scales that matter (k >= -53).
        return sd * qd + (sd - 1.0)
    else:
        qf = _expm1_core_f(x, &sf)
        return sf * qf + (sf - <float>1.0)


cdef inline floating log1p_unit(floating x) noexcept nogil:
    """log(1 + x) for 0 <= x <= 1 (or NaN).

    u = 1 + x is written u = 2**k m with m in [sqrt(1/2), sqrt(2)],
    log m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| <= 0.1716, by its odd
    series; the rounding of 1 + x is put back by (x - (u - 1)) / u, which
    keeps full relative accuracy for tiny x.
    """
    cdef floating u, m, k, s, s2, p, c
    cdef floating one = 1
    u = one + x
    c = (x - (u - one)) / u
    # u in (sqrt(2), 2] is halved: a select, so the loop stays vectorisable.
    k = one if u > <floating>1.4142135623730951 else 0
    m = u * <floating>0.5 if u > <floating>1.4142135623730951 else u
    s = (m - one) / (m + one)
    s2 = s * s
    if floating is double:
        p = 1.0 / 21.0
        p = p * s2 + 1.0 / 19.0
        p = p * s2 + 1.0 / 17.0
        p = p * s2 + 1.0 / 15.0
        p = p * s2 + 1.0 / 13.0
        p = p * s2 + 1.0 / 11.0
        p = p * s2 + 1.0 / 9.0
        p = p * s2 + 1.0 / 7.0
        p = p * s2 + 1.0 / 5.0
        p = p * s2 + 1.0 / 3.0
        return (k * 6.93147180369123816490e-01
                + ((s + s) * (p * s2) + (c + k * 1.90821492927058770002e-10))) + (s + s)
    else:
        p = <float>(1.0 / 11.0)
        p = p * s2 + <float>(1.0 / 9.0)
        p = p * s2 + <float>(1.0 / 7.0)
        p = p * s2 + <float>(1.0 / 5.0)
        p = p * s2 + <float>(1.0 / 3.0)
        return (k * <float>0.693359375
                + ((s + s) * (p * s2) + (c + k * <float>-2.12194440e-4))) + (s + s)


cdef inline double log_ge1(double x) noexcept nogil:
    """log(x) for x >= 1 (or +inf, NaN), branch-free.

    x = 2**k m with m in [1, 2): log x = k ln2 + log(m), log(m) by log1p_unit
    (m - 1 is exact); k comes from the exponent bits, converted through
    2**52 so that the loop vectorises without a 64-bit integer conversion.
    Below 1, k = -1 with m near 2 would cancel: not for that domain.
    """
    cdef int64_t bits = _i64(x)
    cdef double k = _f64((bits >> 52) | 0x4330000000000000LL) - 4503599627371519.0
    cdef double m = _f64((bits & 0x000FFFFFFFFFFFFFLL) | 0x3FF0000000000000LL)
    cdef double r = (k * 6.93147180369123816490e-01
                     + (log1p_unit(m - 1.0) + k * 1.90821492927058770002e-10))
    # The exponent bits of inf and NaN would give a finite r.
    return r if x < INFINITY else x


cdef inline floating sigmoid(floating z) noexcept nogil:
    # exp of -|z| only, so no overflow for any z.
    cdef floating one = 1
    cdef floating e = exp_neg(-abs_(z))
    cdef floating r = one / (one + e)
    return r if z >= 0 else e * r


cdef inline floating tanh_(floating z) noexcept nogil:
    # tanh|z| = -expm1(-2|z|) / (2 + expm1(-2|z|)): no cancellation near 0.
    cdef floating two = 2
    cdef floating em = expm1_neg(-two * abs_(z))
    return copysign_(-em / (two + em), z)


cdef inline floating relu(floating z) noexcept nogil:
    # Written so that NaN passes through (max(z, 0) would turn it into 0).
    cdef floating zero = 0
    return zero if z < zero else z


cdef inline floating softplus(floating z) noexcept nogil:
    """log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))."""
    cdef floating zero = 0
    return (z if z > zero else zero) + log1p_unit(exp_neg(-abs_(z)))


cdef inline floating activate(int act, floating z) noexcept nogil:
    if act == ACT_SIGMOID:
        return sigmoid(z)
    elif act == ACT_TANH:
        return tanh_(z)
    elif act == ACT_RELU:
        return relu(z)
    return z


cdef inline floating derivative(int act, floating a) noexcept nogil:
    """da/dz of an elementwise activation from its output a."""
    cdef floating one = 1, zero = 0
    if act == ACT_SIGMOID:
        return a * (one - a)
    elif act == ACT_TANH:
        return one - a * a
    elif act == ACT_RELU:
        return one if a > zero else zero
    return one
