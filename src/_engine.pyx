"""The kernel's hot loops: the epoch loop, the forward and backward passes,
the optimizer steps and the products, all ``noexcept nogil``.

setup.py compiles this module once per instruction set (``_engine``,
``_engine_avx2``, ``_engine_avx512``); everything that does not differ
between those builds lives in src/_kernel.pyx, compiled once, which calls
the chosen engine through the table this module exports as ``ENGINE``.
Layout and contract: see src/_kernel.pyx.
"""
from libc.math cimport INFINITY, M_PI, NAN, cos, exp, isfinite, log, pow, sqrt, sqrtf
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int timespec_get(timespec* ts, int base)
    int TIME_UTC

# Reported in the table, for tests/test_checked_build.py.
cdef extern from "bf_common.h":
    int BF_CHECKED_BUILD

cdef extern from "bf_round.h" nogil:
    void bf_round_bf16(const float* src, float* dst, Py_ssize_t n)

from cython cimport floating

from _activations cimport (
    ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX, ACT_TANH,
    LOSS_CROSS_ENTROPY, LOSS_POISSON, LOSS_SQUARED_ERROR,
    abs_, activate, derivative, exp_neg, expm1_neg, log1p_unit, log_ge1, relu,
    sigmoid, softplus, tanh_,
)
from _blas cimport (
    SMALL_PRODUCT, bf_fetch, bf_flag_get, bf_flag_set, bf_gemm_ctx, bf_run_tasks,
    bf_thread_num, bf_threads, bf_watch_forks, gemm_space, matmul_ab, matmul_abt_bias,
    matmul_atb_acc, update_forward,
)
from cpython.pycapsule cimport PyCapsule_New
from _core cimport (
    bf_csr, bf_csr_abt_bias_d, bf_csr_abt_bias_s, bf_csr_adam_d, bf_csr_adam_s,
    bf_csr_atb_d, bf_csr_atb_s, Engine, Net, Opts, Optim, Rng, Run, _total_width, _transposed_first,
    STATUS_OK, STATUS_NONFINITE_COST, STATUS_NONFINITE_PARAMS,
    STATUS_DIVERGED_KEPT_BEST, OPT_SGD, OPT_ADAM, OPT_ADAMW, SCHED_CONSTANT,
    SCHED_INVSCALING, SCHED_COSINE, SCHED_PLATEAU, SCHED_ADAPTIVE, STOP_PATIENCE,
    STOP_SKLEARN, METRIC_NONE, METRIC_ACCURACY, METRIC_R2, METRIC_UNITS, H_LOSS,
    H_VAL_LOSS, H_VAL_ACCURACY, H_RATE, H_TIME, H_VAL_SCORE, H_COLUMNS,
)


cdef inline void _csr_abt_bias(const bf_gemm_ctx* ctx, const bf_csr* x, Py_ssize_t rows,
                               const floating* W, const floating* b, floating* Z,
                               Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    """Z (rows x n_out) = X_rows @ W.T + b for the batch's sparse rows x."""
    if floating is double:
        bf_csr_abt_bias_d(ctx, x, rows, W, b, Z, n_out, n_in)
    else:
        bf_csr_abt_bias_s(ctx, x, rows, W, b, Z, n_out, n_in)


cdef inline void _csr_atb(const bf_gemm_ctx* ctx, floating alpha, const floating* D,
                          const bf_csr* x, Py_ssize_t rows, bint beta, floating* G,
                          Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    """G = alpha D.T @ X_rows + beta G (beta 0 or 1) for the batch's sparse rows x."""
    if floating is double:
        bf_csr_atb_d(ctx, alpha, D, x, rows, beta, G, n_out, n_in)
    else:
        bf_csr_atb_s(ctx, alpha, D, x, rows, beta, G, n_out, n_in)




# A child forked after this process used the kernel's threads runs its
# products on one thread.
if bf_watch_forks() != 0:
    raise ImportError("backprop_fast could not register its fork handler")


cdef bint _fuses_first(const Net* net, Py_ssize_t batch) noexcept nogil:
    """Whether plain SGD steps of one sample fold the first layer's update
    into the next sample's forward product (_blas.pxd's update_forward):
    one pass over the first layer's weights a sample instead of two."""
    # At or under SMALL_PRODUCT the first layer is not transposed either.
    # update_forward reads the weights it writes: no rounded copy between.
    return (batch == 1 and net.sizes[0] >= 8 and not net.bf16
            and net.sizes[0] * net.sizes[1] <= SMALL_PRODUCT)




cdef int _gemm_start(Net* net, Py_ssize_t batch, int n_threads, size_t itemsize,
                     bint sparse) except -1:
    """Give the call's wide products their threads and, once for the whole
    call, a workspace large enough for any of them on ``batch`` rows (the
    first layer's left out for a sparse X: bf_sparse.h's products need
    none)."""
    cdef Py_ssize_t m, space = 0
    net.gemm.threads = bf_threads(n_threads)
    for m in range(1 if sparse else 0, net.n_layers):
        space = max(space, gemm_space(batch, net.sizes[m], net.sizes[m + 1],
                                      net.gemm.threads, itemsize == sizeof(float)))
    if space > 0:
        net.gemm.buf = malloc(space * itemsize)
        if net.gemm.buf == NULL:
            raise MemoryError("no memory for the matrix products' workspace")
        net.gemm.bytes = space * itemsize
    if net.bf16:
        net.rw = malloc((net.n_params + 2 * batch * net.most) * itemsize)
        if net.rw == NULL:
            _gemm_end(net)
            raise MemoryError("no memory for the bfloat16-rounded operands")
        net.ra = <char*>net.rw + net.n_params * itemsize
        net.rd = <char*>net.ra + batch * net.most * itemsize
    return 0


cdef void _gemm_end(Net* net) noexcept:
    free(net.gemm.buf)
    net.gemm.buf = NULL
    net.gemm.bytes = 0
    free(net.rw)
    net.rw = net.ra = net.rd = NULL


cdef inline const floating* _rounded(const Net* net, const floating* a, Py_ssize_t n,
                                     void* dst) noexcept nogil:
    """What a product reads for the n values at a: a itself or, under
    mixed_bfloat16, the values rounded to bfloat16 in dst (bf_round.h)."""
    if floating is float:
        if net.bf16:
            bf_round_bf16(a, <float*>dst, n)
            return <const float*>dst
    return a




# ---------------------------------------------------------------- layer passes

cdef void _activate(int act, floating* z, Py_ssize_t n) noexcept nogil:
    """z <- act(z) over n contiguous elements (not softmax)."""
    cdef Py_ssize_t i
    if act == ACT_SIGMOID:
        for i in range(n):
            z[i] = sigmoid(z[i])
    elif act == ACT_TANH:
        for i in range(n):
            z[i] = tanh_(z[i])
    elif act == ACT_RELU:
        for i in range(n):
            z[i] = relu(z[i])


cdef floating _row_max(const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating zmax = z[0]
    for j in range(1, n):
        if z[j] > zmax:
            zmax = z[j]
    return zmax


cdef void _softmax_exp(floating* Z, const floating* Y, double* syz,
                       Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """Z <- exp(Z - its row's max) in place, rows x n.

    With Y (else NULL): syz[r] <- sum_j Y[r, j] (Z[r, j] - max) for row r,
    taken before the exps. The exps run as one loop over the whole block:
    rows of a few classes are too short to vectorise one at a time.
    """
    cdef Py_ssize_t r, j
    cdef floating zmax
    cdef floating* zr
    cdef double t
    for r in range(rows):
        zr = Z + r * n
        zmax = _row_max(zr, n)
        for j in range(n):
            zr[j] = zr[j] - zmax
        if Y != NULL:
            t = 0
            for j in range(n):
                t += Y[r * n + j] * (<double>zr[j])
            syz[r] = t
    for j in range(rows * n):
        Z[j] = exp_neg(Z[j])


cdef inline double _row_sum(const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef double s = 0
    for j in range(n):
        s += z[j]
    return s


cdef void _output_forward(int act, floating* Z, Py_ssize_t rows,
                          Py_ssize_t n) noexcept nogil:
    """Output activations from pre-activations, in place."""
    cdef Py_ssize_t r, j
    cdef floating inv
    cdef floating* zr
    if act != ACT_SOFTMAX:
        _activate(act, Z, rows * n)
        return
    _softmax_exp(Z, <const floating*>NULL, NULL, rows, n)
    for r in range(rows):
        zr = Z + r * n
        inv = <floating>(1.0 / _row_sum(zr, n))
        for j in range(n):
            zr[j] = zr[j] * inv


cdef void _column_sums(const floating* D, double* bsum, Py_ssize_t rows,
                       Py_ssize_t n) noexcept nogil:
    # Each column summed down its rows in order; eight columns at a time in
    # locals (a sum kept in bsum would be stored and reloaded for every row:
    # bsum might alias D, for all the compiler knows), then the rest.
    cdef Py_ssize_t r, j, j0
    cdef double s, s0, s1, s2, s3, s4, s5, s6, s7
    cdef const floating* d
    for j0 in range(0, n - 7, 8):
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0
        for r in range(rows):
            d = D + r * n + j0
            s0 += d[0]
            s1 += d[1]
            s2 += d[2]
            s3 += d[3]
            s4 += d[4]
            s5 += d[5]
            s6 += d[6]
            s7 += d[7]
        bsum[j0] = s0
        bsum[j0 + 1] = s1
        bsum[j0 + 2] = s2
        bsum[j0 + 3] = s3
        bsum[j0 + 4] = s4
        bsum[j0 + 5] = s5
        bsum[j0 + 6] = s6
        bsum[j0 + 7] = s7
    for j in range(n - n % 8, n):
        s = 0
        for r in range(rows):
            s += D[r * n + j]
        bsum[j] = s


cdef void _weighted_sums(double* c, const floating* sw, Py_ssize_t rows, Py_ssize_t lanes,
                         double* sums) noexcept nogil:
    """sums[l] <- the sum over rows of c's costs times their weights (sw, or
    NULL for weights of 1), for ``lanes`` networks interleaved (row r of
    network l at r * lanes + l); c is scratch. Each product is rounded
    before it is added, in a pass of its own: how a compiler fuses a
    multiply and an add must not depend on the loop around them."""
    cdef Py_ssize_t r, l
    if sw != NULL:
        for r in range(rows * lanes):
            c[r] = c[r] * sw[r]
    for l in range(lanes):
        sums[l] = 0
    for r in range(rows):
        for l in range(lanes):
            sums[l] += c[r * lanes + l]


cdef double _output_delta(const Net* net, floating* Z, const floating* Y,
                          const floating* sw, floating* D, double* bsum,
                          Py_ssize_t rows) noexcept nogil:
    """Output layer of a training pass.

    IN: Z = a_prev @ W.T + b (rows x n), the targets Y, the sample weights sw
    (or NULL for weights of 1).
    OUT: D = dC/dz per sample times its weight (not divided by rows), bsum =
    column sums of D, and the return value: the weighted sum over rows of the
    per-sample costs. Z is used as scratch, and so is bsum (it holds
    _bsum_size(net, rows) doubles) before the column sums go there.
    """
    cdef Py_ssize_t r, i, j
    cdef Py_ssize_t n = net.sizes[net.n_layers]
    cdef int act = net.acts[net.n_layers - 1]
    cdef floating z, e, a, g, inv
    cdef floating one = 1, zero = 0, half = 0.5
    cdef floating* zr
    cdef floating* dr
    cdef const floating* yr
    cdef double cost = 0, s, sy, ga, sq
    cdef bint ce
    if act == ACT_SOFTMAX:
        ce = net.loss == LOSS_CROSS_ENTROPY
        _softmax_exp(Z, Y if ce else <const floating*>NULL, bsum, rows, n)
        for r in range(rows):
            zr = Z + r * n
            dr = D + r * n
            yr = Y + r * n
            s = _row_sum(zr, n)
            if ce:
                sy = 0
                for j in range(n):
                    sy += yr[j]
                # dC/dz = sum(y) a - y: a - y for targets that sum to 1.
                inv = <floating>(sy / s)
                for j in range(n):
                    dr[j] = zr[j] * inv - yr[j]
                # The costs' logs wait for a loop of their own, which vectorises.
                bsum[rows + r] = s
                bsum[2 * rows + r] = sy
            else:
                # dC/dz_j = a_j (g_j - sum_k g_k a_k), g = a - y.
                inv = <floating>(1.0 / s)
                ga = 0
                sq = 0
                for j in range(n):
                    a = zr[j] * inv
                    g = a - yr[j]
                    zr[j] = a
                    dr[j] = g
                    ga += g * a
                    sq += g * g
                for j in range(n):
                    dr[j] = zr[j] * (dr[j] - <floating>ga)
                bsum[r] = 0.5 * sq
            if sw != NULL:
                for j in range(n):
                    dr[j] = dr[j] * sw[r]
        if ce:
            # -sum y log a = sum(y) (zmax + log s) - sum y z, with s the sum
            # of exp(z - zmax) >= 1: finite for any finite z.
            for r in range(rows):
                bsum[r] = bsum[2 * rows + r] * log_ge1(bsum[rows + r]) - bsum[r]
        _weighted_sums(bsum, sw, rows, 1, &cost)
        _column_sums(D, bsum, rows, n)
        return cost
    _output_pointwise(net, Z, Y, D, rows * n)
    _row_costs(Z, D, sw, rows, n, 1, &cost)
    _column_sums(D, bsum, rows, n)
    return cost


cdef void _output_pointwise(const Net* net, floating* Z, const floating* Y, floating* D,
                            Py_ssize_t count) noexcept nogil:
    """An output layer's deltas and costs element by element, for every
    output but softmax: D <- dC/dz, Z <- the elements' costs, over ``count``
    elements of Z (pre-activations) and Y laid out alike."""
    cdef Py_ssize_t i
    cdef int act = net.acts[net.n_layers - 1]
    cdef floating z, e, a, g, inv
    cdef floating one = 1, zero = 0, half = 0.5
    cdef double c
    if act == ACT_SIGMOID and net.loss == LOSS_CROSS_ENTROPY:
        # -[y log a + (1-y) log(1-a)] = softplus(z) - y z; dC/dz = a - y.
        for i in range(count):
            z = Z[i]
            e = exp_neg(-abs_(z))
            inv = one / (one + e)
            a = inv if z >= zero else e * inv
            D[i] = a - Y[i]
            Z[i] = ((z if z > zero else zero) - Y[i] * z) + log1p_unit(e)
    elif net.loss == LOSS_POISSON:
        # C = exp(z) - y z + y log y - y: half the Poisson deviance of the
        # mean exp(z), zero where it equals y; dC/dz = exp(z) - y.
        for i in range(count):
            z = Z[i]
            a = <floating>exp(z)
            D[i] = a - Y[i]
            c = a - Y[i] * z - Y[i]
            if Y[i] > 0:
                c += Y[i] * log(Y[i])
            Z[i] = <floating>c
    elif act == ACT_IDENTITY:
        for i in range(count):
            g = Z[i] - Y[i]
            D[i] = g
            Z[i] = half * g * g
    else:
        # Squared error: C = 0.5 ||a - y||^2, dC/dz = (a - y) f'(a).
        _activate(act, Z, count)
        # One loop per activation, so that derivative's choice is made once
        # and each loop vectorises.
        if act == ACT_SIGMOID:
            _squared_error_delta(ACT_SIGMOID, Z, Y, D, count)
        elif act == ACT_TANH:
            _squared_error_delta(ACT_TANH, Z, Y, D, count)
        else:
            _squared_error_delta(ACT_RELU, Z, Y, D, count)


cdef inline void _squared_error_delta(int act, floating* Z, const floating* Y, floating* D,
                                      Py_ssize_t count) noexcept nogil:
    """D <- (a - y) f'(a), Z <- 0.5 (a - y)^2 from the outputs a in Z;
    inlined where act is a constant."""
    cdef Py_ssize_t i
    cdef floating a, g, half = 0.5
    for i in range(count):
        a = Z[i]
        g = a - Y[i]
        D[i] = g * derivative(act, a)
        Z[i] = half * g * g


cdef inline void _row_costs(const floating* Z, floating* D, const floating* sw,
                            Py_ssize_t rows, Py_ssize_t n, Py_ssize_t lanes,
                            double* costs) noexcept nogil:
    """costs[l] <- the sum over rows of each row's cost (the sum of its n
    elements of Z, times its weight), D's rows times their weights, for
    ``lanes`` (at most 16) networks whose numbers are interleaved (element
    j of row r of network l at (r * n + j) * lanes + l; sw, or NULL for
    weights of 1, at r * lanes + l). Lanes innermost, so that they
    vectorise."""
    cdef Py_ssize_t r, j, l
    cdef double c[16]
    for l in range(lanes):
        costs[l] = 0
    for r in range(rows):
        for l in range(lanes):
            c[l] = Z[r * n * lanes + l]
        for j in range(1, n):
            for l in range(lanes):
                c[l] += Z[(r * n + j) * lanes + l]
        if sw != NULL:
            for l in range(lanes):
                c[l] *= sw[r * lanes + l]
            for j in range(n):
                for l in range(lanes):
                    D[(r * n + j) * lanes + l] = D[(r * n + j) * lanes + l] * sw[r * lanes + l]
        for l in range(lanes):
            costs[l] += c[l]


cdef void _hidden_delta(int act, floating* P, const floating* A, double* bsum,
                        Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """P <- P * f'(A) in place (P = next delta @ W), bsum <- column sums."""
    cdef Py_ssize_t i
    cdef floating one = 1, zero = 0
    if act == ACT_SIGMOID:
        for i in range(rows * n):
            P[i] = P[i] * (A[i] * (one - A[i]))
    elif act == ACT_TANH:
        for i in range(rows * n):
            P[i] = P[i] * (one - A[i] * A[i])
    elif act == ACT_RELU:
        for i in range(rows * n):
            P[i] = P[i] if A[i] > zero else zero
    _column_sums(P, bsum, rows, n)


# ------------------------------------------------------------- the optimizers



cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is double:
        return sqrt(x)
    else:
        return sqrtf(x)


cdef void _optimizer_step(const Optim* o, double rate, floating* p,
                          const floating* g, floating* m, floating* v,
                          Py_ssize_t n) noexcept nogil:
    """One step of torch.optim.SGD / Adam / AdamW on n parameters.

    IN: g the gradient. IN/OUT: p the parameters, m the momentum buffer or
    Adam's first moment, v Adam's second moment. Weight decay is added to the
    gradient (L2) for SGD and Adam, and decoupled for AdamW.
    """
    cdef Py_ssize_t i
    cdef floating lr = <floating>rate, wd = <floating>o.weight_decay
    cdef floating mu = <floating>o.momentum, d, one = 1
    cdef floating b1 = <floating>o.beta1, b2 = <floating>o.beta2
    cdef floating eps = <floating>o.epsilon
    cdef floating step, bc2_sqrt, decay
    if o.kind == OPT_SGD:
        if mu == 0:
            for i in range(n):
                p[i] = p[i] - lr * (g[i] + wd * p[i])
        elif o.nesterov:
            for i in range(n):
                d = g[i] + wd * p[i]
                m[i] = mu * m[i] + d
                p[i] = p[i] - lr * (d + mu * m[i])
        else:
            # A zero buffer makes the first step's buffer the gradient itself,
            # as PyTorch does (dampening 0).
            for i in range(n):
                m[i] = mu * m[i] + (g[i] + wd * p[i])
                p[i] = p[i] - lr * m[i]
        return
    step = <floating>(rate / o.bc1)
    bc2_sqrt = <floating>sqrt(o.bc2)
    if o.kind == OPT_ADAMW:
        decay = <floating>(1.0 - rate * o.weight_decay)
        for i in range(n):
            p[i] = p[i] * decay
        wd = 0
    for i in range(n):
        d = g[i] + wd * p[i]
        m[i] = b1 * m[i] + (one - b1) * d
        v[i] = b2 * v[i] + (one - b2) * d * d
        p[i] = p[i] - step * m[i] / (_sqrt(v[i]) / bc2_sqrt + eps)


cdef inline void _csr_adam(const bf_gemm_ctx* ctx, const Optim* o, double rate,
                           const floating* D, const bf_csr* x, Py_ssize_t rows,
                           floating* W, floating* m1, floating* m2, floating* scratch,
                           Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    """_optimizer_step's Adam or AdamW step of a first layer's weights W on
    the gradient of the batch's sparse rows x, fused into the gradient's
    product (bf_csr_adam): scratch holds n_in elements a thread."""
    cdef floating wd = <floating>o.weight_decay, decay = 1
    if o.kind == OPT_ADAMW:
        decay = <floating>(1.0 - rate * o.weight_decay)
        wd = 0
    if floating is double:
        bf_csr_adam_d(ctx, 1.0 / rows, D, x, rows, W, m1, m2, scratch, n_out, n_in,
                      rate / o.bc1, sqrt(o.bc2), o.beta1, o.beta2, o.epsilon, wd, decay)
    else:
        bf_csr_adam_s(ctx, <float>(1.0 / rows), D, x, rows, W, m1, m2, scratch, n_out,
                      n_in, <float>(rate / o.bc1), <float>sqrt(o.bc2), <float>o.beta1,
                      <float>o.beta2, <float>o.epsilon, wd, decay)


# ------------------------------------------------------------- the whole step

cdef double _batch(const Net* net, floating* params, const floating* X,
                   const floating* Y, const floating* sw, Py_ssize_t rows,
                   Py_ssize_t batch, floating* work, double* bsum,
                   const Optim* opt, double rate, floating* grad,
                   floating* m1, floating* m2, floating* wt,
                   const floating* x_next, bint z_ready,
                   const bf_csr* sp) noexcept nogil:
    """Forward and backward pass over ``rows`` samples; returns the cost sum.

    With opt NULL the mean gradient is written to grad (laid out like params)
    and params are left alone. Otherwise the parameters take one optimizer
    step of ``rate``: for plain SGD folded into the weight-gradient product,
    for the others through grad and the optimizer state m1, m2, layer by
    layer. ``batch`` is the row capacity the workspace was laid out for.
    wt, or NULL: the first layer's weights transposed (n_0 x n_1), used and
    trained in place of those in params; after it, as many elements each for
    their gradient and (where m1, m2 are used) the optimizer's state for
    them, transposed alike.
    x_next, or NULL: for a one-row plain SGD step whose first layer runs in
    _blas.pxd's loops with n_0 >= 8 (see _fuses_first), the next sample; its
    first-layer pre-activations are computed with the first layer's update,
    into the workspace, and the next call, with z_ready, starts from them.
    sp, or NULL: the batch's rows of a sparse X, used in place of X (then
    NULL) by the first layer's products; wt and x_next are then NULL.
    Under mixed_bfloat16 (net.bf16; wt and x_next NULL) every product reads
    bfloat16-rounded copies of its inputs, the weights' taken once at the
    start (each layer's delta goes back through the weights of before the
    step), while the activations, deltas and updates stay float32.
    """
    cdef Py_ssize_t L = net.n_layers
    cdef Py_ssize_t m, j, n, n_in, n_out, w_off, a_off
    cdef Py_ssize_t total = _total_width(net)
    cdef floating* D = work + batch * total
    cdef floating* P = D + batch * net.widest
    cdef floating* swap
    cdef floating* W
    cdef floating* b = NULL
    cdef const floating* a_in
    cdef const floating* a_r = NULL
    cdef const floating* d_r
    cdef const floating* pw = _rounded(net, params, net.n_params, net.rw)
    cdef double cost
    cdef bint fold = opt != NULL and opt.fold

    # Forward: activations of layer m+1 at work + batch * a_off.
    w_off = 0
    a_off = 0
    a_in = X
    for m in range(L):
        n_in = net.sizes[m]
        n_out = net.sizes[m + 1]
        W = params + w_off
        b = W + n_out * n_in
        if m == 0 and sp != NULL:
            _csr_abt_bias(&net.gemm, sp, rows, pw + w_off, b, work + batch * a_off,
                          n_out, n_in)
        elif m == 0 and z_ready:
            pass
        elif m == 0 and wt != NULL:
            matmul_ab(&net.gemm, a_in, wt, b, work + batch * a_off, rows, n_in, n_out)
        else:
            a_r = _rounded(net, a_in, rows * n_in, net.ra)
            matmul_abt_bias(&net.gemm, a_r, pw + w_off, b, work + batch * a_off, rows,
                            n_out, n_in)
        if m < L - 1:
            _activate(net.acts[m], work + batch * a_off, rows * n_out)
            a_in = work + batch * a_off
            a_off += n_out
            w_off += n_out * (n_in + 1)
    cost = _output_delta(net, work + batch * a_off, Y, sw, D, bsum, rows)

    # Backward, last layer first. Each layer's delta is propagated through its
    # weights before those weights change.
    for m in range(L - 1, -1, -1):
        n_in = net.sizes[m]
        n_out = net.sizes[m + 1]
        W = params + w_off
        b = W + n_out * n_in
        if m > 0:
            a_off -= n_in
            a_in = work + batch * a_off
        else:
            a_in = X
        if fold:
            for j in range(n_out):
                b[j] = b[j] + <floating>(-rate * bsum[j] / rows)
        else:
            for j in range(n_out):
                grad[w_off + n_out * n_in + j] = <floating>(bsum[j] / rows)
        d_r = _rounded(net, D, rows * n_out, net.rd)
        if m > 0:
            matmul_ab(&net.gemm, d_r, pw + w_off, NULL, P, rows, n_out, n_in)
            _hidden_delta(net.acts[m - 1], P, a_in, bsum, rows, n_in)
        if sp == NULL or m > 0:
            a_r = _rounded(net, a_in, rows * n_in, net.ra)
        if m == 0 and sp != NULL:
            # Plain SGD writes only the weights of the columns the batch
            # stores; the other optimizers step every parameter.
            if fold:
                _csr_atb(&net.gemm, <floating>(-rate / rows), d_r, sp, rows, True, W,
                         n_out, n_in)
            elif opt != NULL and opt.kind != OPT_SGD:
                # The weights' gradient is spent row by row as it is made
                # (in grad's rows for scratch), the biases' through grad.
                _csr_adam(&net.gemm, opt, rate, d_r, sp, rows, W, m1 + w_off, m2 + w_off,
                          grad + w_off, n_out, n_in)
                n = n_out * n_in
                _optimizer_step(opt, rate, W + n, grad + w_off + n, m1 + w_off + n,
                                m2 + w_off + n, n_out)
            else:
                _csr_atb(&net.gemm, <floating>(1.0 / rows), d_r, sp, rows, False,
                         grad + w_off, n_out, n_in)
                if opt != NULL:
                    _optimizer_step(opt, rate, W, grad + w_off, m1 + w_off,
                                    m2 + w_off, n_out * (n_in + 1))
        elif fold and m == 0 and x_next != NULL:
            update_forward(<floating>(-rate / rows), D, a_in, W, b, x_next, work,
                           n_out, n_in)
        elif fold and m == 0 and wt != NULL:
            matmul_atb_acc(&net.gemm, <floating>(-rate / rows), a_in, D, <floating>1, wt,
                           rows, n_in, n_out)
        elif fold:
            matmul_atb_acc(&net.gemm, <floating>(-rate / rows), d_r, a_r, <floating>1, W,
                           rows, n_out, n_in)
        elif m == 0 and wt != NULL:
            # The optimizer's step is elementwise: any layout will do, as long
            # as weights, gradient and state share it.
            n = n_out * n_in
            matmul_atb_acc(&net.gemm, <floating>(1.0 / rows), a_in, D, <floating>0, wt + n,
                           rows, n_in, n_out)
            _optimizer_step(opt, rate, wt, wt + n, wt + 2 * n, wt + 3 * n, n)
            _optimizer_step(opt, rate, b, grad + n, m1 + n, m2 + n, n_out)
        else:
            matmul_atb_acc(&net.gemm, <floating>(1.0 / rows), d_r, a_r, <floating>0,
                           grad + w_off, rows, n_out, n_in)
            if opt != NULL:
                _optimizer_step(opt, rate, W, grad + w_off, m1 + w_off,
                                m2 + w_off, n_out * (n_in + 1))
        swap = D
        D = P
        P = swap
        if m > 0:
            w_off -= n_in * (net.sizes[m - 1] + 1)
    return cost


cdef inline void _copy(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil:
    # A loop rather than memcpy: a minibatch row is short enough that the
    # library call costs more than the copy.
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = src[i]


cdef void _transpose(const floating* src, floating* dst, Py_ssize_t rows,
                     Py_ssize_t cols) noexcept nogil:
    """dst (cols x rows) = src (rows x cols) transposed."""
    cdef Py_ssize_t i, j
    for i in range(rows):
        for j in range(cols):
            dst[j * rows + i] = src[i * cols + j]


cdef void _first_layer(floating* p, floating* m1, floating* m2, floating* wt,
                       Py_ssize_t n_in, Py_ssize_t n_out, bint out) noexcept nogil:
    """Copy the first layer's weights (and optimizer state, where m1, m2 are
    not NULL) from params into wt's transposed layout, or back if ``out``."""
    cdef Py_ssize_t n = n_in * n_out
    if out:
        _transpose(wt, p, n_in, n_out)
        if m1 != NULL:
            _transpose(wt + 2 * n, m1, n_in, n_out)
        if m2 != NULL:
            _transpose(wt + 3 * n, m2, n_in, n_out)
    else:
        _transpose(p, wt, n_out, n_in)
        if m1 != NULL:
            _transpose(m1, wt + 2 * n, n_out, n_in)
        if m2 != NULL:
            _transpose(m2, wt + 3 * n, n_out, n_in)


# Extremes and finiteness on the numbers' bit patterns. Compared as signed
# integers, the keys b ^ ((b >> 63) & ~sign) of IEEE numbers order as the
# numbers do (-inf first, +inf last), and |x|'s bits exceed those of inf
# exactly for NaN: integer max and min, which vectorise (the comparisons of
# floats do not, as their order is not total), in one pass over memory.

cdef inline int64_t _key64(int64_t b) noexcept nogil:
    return b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFFLL)


cdef inline int32_t _key32(int32_t b) noexcept nogil:
    return b ^ ((b >> 31) & 0x7FFFFFFF)


cdef void _extremes(const floating* x, Py_ssize_t n, floating* lo,
                    floating* hi) noexcept nogil:
    """lo, hi <- min and max of x (n > 0). With a NaN in x both are NaN;
    otherwise an infinity in x shows in them.

    A NaN's key lies beyond the infinities' (below -inf's for a negative
    NaN), and keys map back to the numbers they came from, so a NaN comes
    out as lo or hi.
    """
    cdef Py_ssize_t i
    cdef const int64_t* b64
    cdef const int32_t* b32
    cdef int64_t k64, kmin64, kmax64
    cdef int32_t k32, kmin32, kmax32
    if floating is double:
        b64 = <const int64_t*>x
        kmin64 = kmax64 = _key64(b64[0])
        for i in range(n):
            k64 = _key64(b64[i])
            kmin64 = k64 if k64 < kmin64 else kmin64
            kmax64 = k64 if k64 > kmax64 else kmax64
        k64 = _key64(kmin64)
        memcpy(lo, &k64, sizeof(double))
        k64 = _key64(kmax64)
        memcpy(hi, &k64, sizeof(double))
    else:
        b32 = <const int32_t*>x
        kmin32 = kmax32 = _key32(b32[0])
        for i in range(n):
            k32 = _key32(b32[i])
            kmin32 = k32 if k32 < kmin32 else kmin32
            kmax32 = k32 if k32 > kmax32 else kmax32
        k32 = _key32(kmin32)
        memcpy(lo, &k32, sizeof(float))
        k32 = _key32(kmax32)
        memcpy(hi, &k32, sizeof(float))
    if lo[0] != lo[0] or hi[0] != hi[0]:
        lo[0] = hi[0] = NAN


cdef bint _all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef const int64_t* b64
    cdef const int32_t* b32
    cdef int64_t a64, amax64 = 0
    cdef int32_t a32, amax32 = 0
    if floating is double:
        b64 = <const int64_t*>x
        for i in range(n):
            a64 = b64[i] & 0x7FFFFFFFFFFFFFFFLL
            amax64 = a64 if a64 > amax64 else amax64
        return amax64 < 0x7FF0000000000000LL
    else:
        b32 = <const int32_t*>x
        for i in range(n):
            a32 = b32[i] & 0x7FFFFFFF
            amax32 = a32 if a32 > amax32 else amax32
        return amax32 < 0x7F800000




# --------------------------------------------------------------- shuffling

cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))




cdef uint64_t _rng_next(Rng* rng) noexcept nogil:
    cdef uint64_t result = _rotl(rng.s1 * 5, 7) * 9
    cdef uint64_t t = rng.s1 << 17
    rng.s2 ^= rng.s0
    rng.s3 ^= rng.s1
    rng.s1 ^= rng.s2
    rng.s0 ^= rng.s3
    rng.s2 ^= t
    rng.s3 = _rotl(rng.s3, 45)
    return result


cdef uint64_t _rng_below(Rng* rng, uint64_t bound) noexcept nogil:
    """Uniform integer in [0, bound), without modulo bias.

    Below 2**32, Lemire's multiply-shift: the high half of x * bound for a
    32-bit x, with a division only when the low half falls in the rejection
    zone (probability below bound / 2**32).
    """
    cdef uint64_t x, m, threshold
    cdef uint32_t b32
    if bound <= 0xFFFFFFFFULL:
        b32 = <uint32_t>bound
        m = (_rng_next(rng) >> 32) * bound
        if <uint32_t>m < b32:
            threshold = (<uint32_t>(0 - b32)) % b32  # 2**32 mod bound
            while <uint32_t>m < threshold:
                m = (_rng_next(rng) >> 32) * bound
        return m >> 32
    threshold = (0 - bound) % bound
    x = _rng_next(rng)
    while x < threshold:
        x = _rng_next(rng)
    return x % bound


cdef void _shuffle(Rng* rng, Py_ssize_t* order, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j, t
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>_rng_below(rng, <uint64_t>(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t




cdef inline double _now() noexcept nogil:
    cdef timespec ts
    timespec_get(&ts, TIME_UTC)
    return ts.tv_sec + 1e-9 * ts.tv_nsec




cdef double _validate_score(const Net* net, const floating* params,
                            const floating* X, const floating* Y, const floating* w,
                            Py_ssize_t n, Py_ssize_t batch, floating* work, double* bsum,
                            int metric, double* stats, double* score,
                            const bf_csr* sp) noexcept nogil:
    """Sum of the per-sample costs over n rows, ``batch`` rows at a time
    (the rows of the sparse sp in place of X, where sp is not NULL), and the
    score scikit-learn's estimators report, in one forward pass.

    IN: w, n weights or NULL for weights of 1; for METRIC_R2, stats[j] the
    weighted sum of squares of target j about its weighted mean.
    SCRATCH: stats[n_out + j].
    OUT: *score. METRIC_ACCURACY: the weighted fraction of rows predicted
    right, a row right when its largest softmax output is the target's largest
    entry, or (sigmoid outputs) when every unit is on the target's side of
    0.5, as accuracy_score counts labels and label sets. METRIC_UNITS: that
    of History.val_accuracy, unweighted (w NULL). METRIC_R2: r2_score
    averaged over the targets (1 for a constant target predicted exactly, 0
    for one predicted otherwise, as r2_score does); NaN if a prediction is
    not finite, as scikit-learn scores such a model.
    """
    cdef Py_ssize_t L = net.n_layers, n_out = net.sizes[net.n_layers]
    cdef Py_ssize_t start = 0, rows, r, j, jz, jy
    cdef int act = net.acts[L - 1]
    cdef floating* z = work + batch * (_total_width(net) - n_out)
    cdef const floating* zr
    cdef const floating* yr
    cdef double cost = 0, wr, right = 0, wsum = 0, e, s
    cdef bint ok
    cdef bf_csr chunk
    cdef const floating* pw = _rounded(net, params, net.n_params, net.rw)
    if sp != NULL:
        chunk = sp[0]
    if metric == METRIC_R2:
        for j in range(n_out):
            stats[n_out + j] = 0
    while start < n:
        rows = min(batch, n - start)
        chunk.first = start
        _forward_chunk(net, params, pw, X + start * net.sizes[0] if sp == NULL else NULL, z,
                       rows, batch, work, &chunk if sp != NULL else NULL)
        for r in range(rows):
            zr = z + r * n_out
            yr = Y + (start + r) * n_out
            wr = 1 if w == NULL else w[start + r]
            wsum += wr
            if metric == METRIC_R2:
                for j in range(n_out):
                    # A Poisson network's output is the log of its prediction.
                    e = yr[j] - (exp(zr[j]) if net.loss == LOSS_POISSON else zr[j])
                    stats[n_out + j] += wr * e * e
            elif act == ACT_SOFTMAX:
                jz = 0
                jy = 0
                for j in range(1, n_out):
                    if zr[j] > zr[jz]:
                        jz = j
                    if yr[j] > yr[jy]:
                        jy = j
                if jz == jy:
                    right += wr
            elif metric == METRIC_UNITS:
                if act == ACT_SIGMOID:
                    # sigmoid(z) > 0.5 exactly when z > 0.
                    wsum += n_out - 1
                    for j in range(n_out):
                        right += (zr[j] > 0) == (yr[j] > 0.5)
            else:
                ok = True
                for j in range(n_out):
                    ok = ok and ((zr[j] > 0) == (yr[j] > 0.5))
                if ok:
                    right += wr
        cost += _output_delta(net, z, Y + start * n_out, NULL, z + batch * n_out,
                              bsum, rows)
        start += rows
    if metric == METRIC_R2:
        s = 0
        for j in range(n_out):
            e = stats[n_out + j]
            if not isfinite(e):
                s = NAN
            elif stats[j] != 0:
                s += 1 - e / stats[j]
            elif e == 0:
                s += 1
        score[0] = s / n_out
    else:
        score[0] = right / wsum if wsum > 0 else NAN
    return cost


cdef double _weights_sq(const Net* net, const floating* p) noexcept nogil:
    """Sum of the squared weights of all layers (biases left out), in double."""
    cdef Py_ssize_t m, i, k, off = 0
    cdef double s = 0
    for m in range(net.n_layers):
        k = net.sizes[m + 1] * net.sizes[m]
        for i in range(k):
            s += <double>p[off + i] * p[off + i]
        off += k + net.sizes[m + 1]
    return s


# The tasks of one run_fits call: task t runs tasks.runs[bounds[t]] up to
# tasks.runs[bounds[t + 1]], several of them together in vector lanes.
cdef struct Tasks:
    Run** runs
    Py_ssize_t* bounds


cdef bint _lane_wide(const Run* r) noexcept nogil:
    """Whether any of a run's products at its batch size is past
    SMALL_PRODUCT (run by bf_gemm when alone)."""
    cdef Py_ssize_t m
    for m in range(r.net.n_layers):
        if r.s.batch * r.net.sizes[m] * r.net.sizes[m + 1] > SMALL_PRODUCT:
            return True
    return False


cdef Py_ssize_t _group(Run** runs, Py_ssize_t m, int threads, Tasks* tasks) noexcept nogil:
    """The m runs as tasks, those _fit_lanes can train together in groups
    of up to a vector's lanes, each other run a task of its own; returns the
    number of tasks. runs[k] is set to NULL once placed.

    A group is one task, on one thread. Networks of a few units gain from
    lanes whatever their number; wider ones (_lane_wide) gain less than a
    thread of their own each would, so they share lanes only in full groups,
    and only where there are enough of them for a full group on every
    thread."""
    cdef Py_ssize_t k, k2, size, limit, mates, pos = 0, t = 0
    cdef Py_ssize_t lanes
    cdef Run* r
    cdef Run* wide_head = NULL
    tasks.bounds[0] = 0
    for k in range(m):
        r = runs[k]
        if r == NULL:
            continue
        tasks.runs[pos] = r
        pos += 1
        size = 1
        lanes = BF_LANE_BYTES // (sizeof(double) if r.dbl else sizeof(float))
        limit = lanes if _lane_ready(r) else 1
        if limit > 1 and _lane_wide(r):
            mates = 1
            for k2 in range(k + 1, m):
                if mates == lanes * threads:
                    break
                if runs[k2] != NULL and _lane_ready(runs[k2]) and _lane_mates(r, runs[k2]):
                    mates += 1
            if mates < lanes or (mates < lanes * threads and not (
                    wide_head != NULL and _lane_mates(r, wide_head))):
                limit = 1
            else:
                wide_head = r
        for k2 in range(k + 1, m):
            if size == limit:
                break
            if runs[k2] != NULL and _lane_ready(runs[k2]) and _lane_mates(r, runs[k2]):
                tasks.runs[pos] = runs[k2]
                runs[k2] = NULL
                pos += 1
                size += 1
        runs[k] = NULL
        t += 1
        tasks.bounds[t] = pos
    return t


cdef void _run_task(void* arg, Py_ssize_t t) noexcept nogil:
    cdef Tasks* tasks = <Tasks*>arg
    cdef Run** rs = tasks.runs + tasks.bounds[t]
    cdef Py_ssize_t count = tasks.bounds[t + 1] - tasks.bounds[t]
    if count == 1:
        _run_alone(rs[0])
    # A task not yet started when another stopped them all is left untouched.
    elif bf_flag_get(rs[0].abort):
        return
    elif rs[0].dbl:
        _fit_lanes(rs, count, <double*>NULL)
    else:
        _fit_lanes(rs, count, <float*>NULL)


cdef void _run_alone(Run* r) noexcept nogil:
    if bf_flag_get(r.abort):
        return
    if r.dbl:
        _fit_run(r, <double*>r.params)
    else:
        _fit_run(r, <float*>r.params)


cdef void _keep_error(Run* r, object error) noexcept:
    """Record what ends the run (the first thing only) and stop the others."""
    if r.error == NULL:
        Py_INCREF(error)
        r.error = <PyObject*>error
    bf_flag_set(r.abort)


cdef bint _interrupted(Run* r) noexcept nogil:
    """Whether the run must stop: Ctrl-C, which the main thread (the first of
    the team) sees, or another run's exception."""
    if bf_thread_num() == 0:
        with gil:
            try:
                PyErr_CheckSignals()
            except BaseException as error:
                _keep_error(r, error)
    return bf_flag_get(r.abort) != 0


cdef bint _call_hook(Run* r, Py_ssize_t epoch) noexcept nogil:
    """epoch_end(epoch): whether it asks to stop (an exception stops all)."""
    cdef bint stop = False
    with gil:
        try:
            stop = bool((<object>r.hook)(epoch))
        except BaseException as error:
            _keep_error(r, error)
            stop = True
    return stop


# The state of one network's epoch loop that outlives an epoch, so that the
# loop's bookkeeping (_loop_start, _epoch_start, _epoch_finish, _loop_end) is
# one source for a network trained on its own (_fit_run) and for each of the
# networks trained in lockstep in vector lanes (_fit_lanes).
cdef struct Loop:
    Rng rng
    Optim opt
    Py_ssize_t done, wait, best_epoch, timed, stride
    double rate, base_rate, best_monitor, t0
    int status
    bint gather, sk, keep_best, stop, aborted


cdef void _loop_start(Run* r, Loop* lp) noexcept nogil:
    cdef Opts* s = &r.s
    lp.opt.kind = s.optimizer
    lp.opt.momentum = s.momentum
    lp.opt.nesterov = s.nesterov
    lp.opt.beta1 = s.beta1
    lp.opt.beta2 = s.beta2
    lp.opt.epsilon = s.epsilon
    lp.opt.weight_decay = s.weight_decay
    lp.opt.fold = (s.optimizer == OPT_SGD and s.momentum == 0 and s.weight_decay == 0)
    lp.done = 0
    lp.wait = 0
    lp.best_epoch = -1
    lp.timed = 0
    lp.stride = 1
    lp.status = STATUS_OK
    lp.stop = False
    lp.aborted = False
    lp.gather = s.shuffle and s.batch < r.n
    lp.sk = s.stopping == STOP_SKLEARN
    lp.keep_best = (s.early_stopping and s.restore_best
                    and (not lp.sk or s.val_metric != METRIC_NONE))
    lp.base_rate = s.learning_rate
    lp.best_monitor = INFINITY
    memcpy(&lp.rng, r.rng_state, sizeof(Rng))
    # A partial fit under scikit-learn's rules continues the rate where the
    # last call left it.
    lp.rate = s.rate if lp.sk else lp.base_rate
    # One clock read an epoch: each epoch ends where the next begins.
    lp.t0 = _now()


cdef void _epoch_start(Run* r, floating* p, Loop* lp, Py_ssize_t epoch) noexcept nogil:
    """The epoch's rate, the parameters it starts from, and its order."""
    cdef Opts* s = &r.s
    cdef Py_ssize_t i
    if lp.sk:
        pass  # the rate changes at each epoch's end
    elif s.schedule == SCHED_INVSCALING:
        lp.rate = lp.base_rate / pow(epoch + 1.0, s.power_t)
    elif s.schedule == SCHED_COSINE:
        lp.rate = 0.5 * lp.base_rate * (1 + cos(M_PI * epoch / s.epochs))
    memcpy(r.snapshot, p, r.net.n_params * sizeof(floating))
    if lp.gather:
        # Each epoch's order depends only on the generator's state, so
        # training continued over several calls repeats a single call.
        for i in range(r.n):
            r.order[i] = i
        _shuffle(&lp.rng, r.order, r.n)


cdef bint _epoch_finish(Run* r, floating* p, Loop* lp, Py_ssize_t epoch, double total,
                        floating* work) noexcept nogil:
    """After an epoch's last batch (total: the sum of its costs, lp.status
    what the batches found): divergence, the history's row, the stopping
    rules, the clock and the callback. Whether training stops here."""
    cdef Net* net = &r.net
    cdef Opts* s = &r.s
    cdef Py_ssize_t n = r.n, n_val = r.n_val, epochs = s.epochs
    cdef Py_ssize_t n_params = net.n_params, i, e2
    cdef int metric = s.val_metric
    cdef double* history = r.history
    cdef floating* snapshot = <floating*>r.snapshot
    cdef floating* best = <floating*>r.best
    cdef const bf_csr* vsp = &r.vs if r.val_sp else NULL
    cdef double cost, monitor, val_acc, t1
    cdef double val_score = NAN
    if lp.status == STATUS_OK and not isfinite(total):
        # Every batch's cost was finite, their sum is not: the costs are
        # near the largest double, as good as diverged.
        lp.status = STATUS_NONFINITE_COST
    if lp.status == STATUS_OK and not _all_finite(p, n_params):
        lp.status = STATUS_NONFINITE_PARAMS
    if lp.status != STATUS_OK:
        if not _all_finite(p, n_params):
            memcpy(p, snapshot, n_params * sizeof(floating))
        if lp.sk and metric != METRIC_NONE:
            # scikit-learn trains on with NaN costs and scores to max_iter
            # (a NaN never counts as no improvement), then takes the best
            # epoch's parameters: the same record.
            lp.status = STATUS_DIVERGED_KEPT_BEST
            for e2 in range(epoch, epochs):
                history[e2 * H_COLUMNS + H_LOSS] = NAN
                history[e2 * H_COLUMNS + H_VAL_LOSS] = NAN
                history[e2 * H_COLUMNS + H_VAL_ACCURACY] = NAN
                history[e2 * H_COLUMNS + H_VAL_SCORE] = NAN
                history[e2 * H_COLUMNS + H_RATE] = lp.rate
                history[e2 * H_COLUMNS + H_TIME] = 0
            s.samples_seen += n * (epochs - epoch)
            s.no_improvement = 0
            lp.done = epochs
        return True
    cost = total / n
    if s.loss_penalty != 0:
        cost += s.loss_penalty * _weights_sq(net, p)
    history[epoch * H_COLUMNS + H_LOSS] = cost
    history[epoch * H_COLUMNS + H_RATE] = lp.rate
    monitor = cost
    history[epoch * H_COLUMNS + H_VAL_LOSS] = NAN
    history[epoch * H_COLUMNS + H_VAL_ACCURACY] = NAN
    history[epoch * H_COLUMNS + H_VAL_SCORE] = NAN
    if metric != METRIC_NONE:
        monitor = _validate_score(net, p, <const floating*>r.Xv, <const floating*>r.Yv,
                                  <const floating*>r.vw, n_val, s.batch, work, r.bsum,
                                  metric, r.vstats, &val_score, vsp) / n_val
        history[epoch * H_COLUMNS + H_VAL_LOSS] = monitor
        history[epoch * H_COLUMNS + H_VAL_SCORE] = val_score
        if metric == METRIC_ACCURACY:
            history[epoch * H_COLUMNS + H_VAL_ACCURACY] = val_score
    elif n_val > 0:
        monitor = _validate_score(net, p, <const floating*>r.Xv, <const floating*>r.Yv,
                                  NULL, n_val, s.batch, work, r.bsum, METRIC_UNITS, NULL,
                                  &val_acc, vsp) / n_val
        history[epoch * H_COLUMNS + H_VAL_LOSS] = monitor
        history[epoch * H_COLUMNS + H_VAL_ACCURACY] = val_acc
    lp.done += 1
    if lp.sk:
        # scikit-learn's _update_no_improvement_count, then its
        # optimizer's iteration_ends and trigger_stopping, in its order.
        # A NaN score counts as neither better nor worse.
        if metric != METRIC_NONE:
            if val_score < s.best_score + s.tol:
                s.no_improvement += 1
            else:
                s.no_improvement = 0
            if val_score > s.best_score:
                s.best_score = val_score
                lp.best_epoch = epoch
                if lp.keep_best:
                    memcpy(best, p, n_params * sizeof(floating))
        else:
            if cost > s.best_loss - s.tol:
                s.no_improvement += 1
            else:
                s.no_improvement = 0
            if cost < s.best_loss:
                s.best_loss = cost
                lp.best_epoch = epoch
        s.samples_seen += n
        if s.schedule == SCHED_INVSCALING:
            lp.rate = lp.base_rate / pow(s.samples_seen + 1, s.power_t)
        if s.no_improvement > s.n_iter_no_change:
            if s.schedule == SCHED_ADAPTIVE and lp.rate > 1e-6:
                lp.rate /= 5
                s.no_improvement = 0
            else:
                lp.stop = True
        s.rate = lp.rate
    # Early stopping and the plateau schedule watch the validation cost
    # when there is one, the training cost otherwise.
    elif monitor < lp.best_monitor - s.min_delta:
        lp.best_monitor = monitor
        lp.best_epoch = epoch
        lp.wait = 0
        if s.early_stopping and s.restore_best:
            memcpy(best, p, n_params * sizeof(floating))
    else:
        lp.wait += 1
        if s.schedule == SCHED_PLATEAU and lp.wait % s.patience == 0:
            lp.rate /= 5
        # With the plateau schedule each reduced rate gets its own
        # patience before training stops.
        if s.early_stopping and lp.wait >= s.patience * (
                2 if s.schedule == SCHED_PLATEAU else 1):
            lp.stop = True
    # Epochs shorter than ~20 us are timed in blocks (each gets the
    # block's mean) so that reading the clock costs under 1 %.
    if (epoch + 1 - lp.timed >= lp.stride or epoch + 1 == epochs or lp.stop
            or r.hook != NULL):
        t1 = _now()
        for i in range(lp.timed, epoch + 1):
            history[i * H_COLUMNS + H_TIME] = (t1 - lp.t0) / (epoch + 1 - lp.timed)
        if (t1 - lp.t0) / (epoch + 1 - lp.timed) < 20e-6 and lp.stride < 4096:
            lp.stride *= 2
        lp.t0 = t1
        lp.timed = epoch + 1
    if r.hook != NULL:
        lp.stop = _call_hook(r, epoch) or lp.stop
        if r.error != NULL:
            lp.aborted = True
    return lp.stop


cdef void _loop_end(Run* r, floating* p, Loop* lp) noexcept nogil:
    """The parameters training ends with, and the run's outcome."""
    cdef Py_ssize_t n_params = r.net.n_params
    cdef floating* best = <floating*>r.best
    if lp.aborted:
        if lp.sk and lp.keep_best and lp.best_epoch >= 0:
            # scikit-learn restores the best epoch's parameters after Ctrl-C too.
            memcpy(p, best, n_params * sizeof(floating))
    elif ((lp.status == STATUS_OK or lp.status == STATUS_DIVERGED_KEPT_BEST)
            and lp.keep_best and lp.best_epoch >= 0
            and (lp.best_epoch != lp.done - 1 or lp.status == STATUS_DIVERGED_KEPT_BEST)):
        memcpy(p, best, n_params * sizeof(floating))
    # Kept whatever ended the run.
    memcpy(r.rng_state, &lp.rng, sizeof(Rng))
    r.status = lp.status
    r.done = lp.done
    r.best_epoch = lp.best_epoch


cdef void _fit_run(Run* r, floating* p) noexcept nogil:
    """Train one network over whole epochs: fit_call's contract, the
    outcome in r.status, r.done and r.best_epoch."""
    cdef Net* net = &r.net
    cdef Opts* s = &r.s
    cdef Loop lp
    cdef Optim* opt = &lp.opt
    cdef Py_ssize_t n = r.n
    cdef Py_ssize_t batch = s.batch, epochs = s.epochs
    cdef Py_ssize_t n_in, n_out, epoch, start, rows, i
    cdef Py_ssize_t countdown, check_every
    cdef double total, cost
    cdef bint gather
    cdef bint weighted = r.sw != NULL
    cdef const floating* X = <const floating*>r.X
    cdef const floating* Y = <const floating*>r.Y
    cdef const floating* sw = <const floating*>r.sw
    cdef Py_ssize_t* order = r.order
    cdef floating* work = <floating*>r.work
    cdef floating* xg
    cdef floating* yg
    cdef floating* wg
    cdef const floating* xb
    cdef const floating* yb
    cdef const floating* wb
    cdef floating* g = <floating*>r.grad
    cdef floating* s1 = <floating*>r.m1
    cdef floating* s2 = <floating*>r.m2
    cdef floating* wt = NULL
    cdef bint wt_live = False   # wt holds the first layer's weights, params not
    cdef const floating* x_next
    cdef bint z_ready = False
    cdef bint fuse
    cdef Py_ssize_t n_params = net.n_params
    cdef const bf_csr* xsp = &r.xs if r.is_sp else NULL
    n_in = net.sizes[0]
    n_out = net.sizes[net.n_layers]
    xg = work + batch * (_total_width(net) + 2 * net.widest)
    yg = xg + batch * n_in if not r.is_sp else xg
    wg = yg + batch * n_out
    if _transposed_first(net, batch) and not r.is_sp:
        wt = wg + batch
    if r.is_sp:
        # Unshuffled batches of a sparse X run from their first row on.
        for i in range(n):
            order[i] = i
    # Check for Ctrl-C about every 2**20 multiply-adds (well under a ms).
    check_every = max(1, (1 << 20) // (batch * n_params))
    countdown = check_every
    _loop_start(r, &lp)
    gather = lp.gather
    fuse = opt.fold and _fuses_first(net, batch) and not r.is_sp
    for epoch in range(epochs):
        _epoch_start(r, p, &lp, epoch)
        if wt != NULL:
            # Taken afresh each epoch: a callback may change weights.
            _first_layer(p, s1, s2, wt, n_in, net.sizes[1], False)
            wt_live = True
        total = 0
        start = 0
        z_ready = False
        while start < n:
            rows = min(batch, n - start)
            wb = NULL
            if r.is_sp:
                # The rows' numbers stand for the rows; Y and the weights are
                # gathered as for a dense X.
                xb = NULL
                r.xs.rows = &order[start] if gather else NULL
                r.xs.first = start
                if gather:
                    for i in range(rows):
                        _copy(yg + i * n_out, Y + order[start + i] * n_out, n_out)
                        if weighted:
                            wg[i] = sw[order[start + i]]
                    yb = yg
                    if weighted:
                        wb = wg
                else:
                    yb = Y + start * n_out
                    if weighted:
                        wb = sw + start
            elif gather and rows == 1:
                # One row is contiguous where it lies.
                xb = X + order[start] * n_in
                yb = Y + order[start] * n_out
                if weighted:
                    wb = sw + order[start]
                # The next step's rows, as for minibatches below (with fuse
                # this step reads the next x, so the one after).
                i = start + 2 if fuse else start + 1
                if i < n:
                    bf_fetch(X + order[i] * n_in, n_in * sizeof(floating))
                if start + 1 < n:
                    bf_fetch(Y + order[start + 1] * n_out, n_out * sizeof(floating))
            elif gather:
                for i in range(rows):
                    _copy(xg + i * n_in, X + order[start + i] * n_in, n_in)
                    _copy(yg + i * n_out, Y + order[start + i] * n_out, n_out)
                    if weighted:
                        wg[i] = sw[order[start + i]]
                xb = xg
                yb = yg
                if weighted:
                    wb = wg
                # The next batch's rows arrive while this one trains (where
                # they are few: W2's 8 KiB paid, W4's 400 did not, and they
                # would crowd out the step's own data).
                if rows * n_in * sizeof(floating) <= 65536:
                    for i in range(start + rows, min(start + 2 * rows, n)):
                        bf_fetch(X + order[i] * n_in, n_in * sizeof(floating))
            else:
                xb = X + start * n_in
                yb = Y + start * n_out
                if weighted:
                    wb = sw + start
            if opt.kind != OPT_SGD:
                r.step[0] += 1
                opt.bc1 = 1 - pow(opt.beta1, <double>r.step[0])
                opt.bc2 = 1 - pow(opt.beta2, <double>r.step[0])
            x_next = NULL
            if fuse and start + 1 < n:
                x_next = X + (order[start + 1] if gather else start + 1) * n_in
            cost = _batch(net, p, xb, yb, wb, rows, batch, work, r.bsum, opt, lp.rate,
                          g, s1, s2, wt, x_next, z_ready, xsp)
            z_ready = x_next != NULL
            if not isfinite(cost):
                lp.status = STATUS_NONFINITE_COST
                break
            total += cost
            start += rows
            # A countdown, not steps % check_every: no division a step.
            countdown -= 1
            if countdown == 0:
                countdown = check_every
                if _interrupted(r):
                    lp.aborted = True
                    break
        if wt_live:
            _first_layer(p, s1, s2, wt, n_in, net.sizes[1], True)
            wt_live = False
        if lp.aborted or _epoch_finish(r, p, &lp, epoch, total, work):
            break
    _loop_end(r, p, &lp)


# ------------------------------------------------ networks in vector lanes
#
# A network of a few units leaves a vector register nearly empty and spends
# its step in loop control and calls; one of a few dozen spends much of it
# packing small matrix products. Networks of one architecture and optimizer
# branch, each on rows of its own, are therefore trained together: lane l of
# every vector holds network l's number (element e of a buffer of network l
# at e * LANES + l, LANES being as many as a vector register of the build
# holds, at most 16), so each instruction advances all of them. Every lane
# does the arithmetic of the network's own fit in its order, operation for
# operation (each product's chains of multiply-adds as the small loops or
# bf_gemm spell them, then the bias, in bf_lanes.h; the same elementwise
# functions and optimizer steps with the lane's own settings; the same sums
# in the same order), so the results are those of _fit_run bit for bit.

# The lane products, in C (bf_lanes.h): vector types spell the lanes, which
# gcc would not vectorise as loops over them.
cdef extern from "bf_lanes.h" nogil:
    int BF_LANE_BYTES
    void bf_lane_abt_d(const double* A, const double* W, const double* b, double* Z,
                       Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_lane_abt_s(const float* A, const float* W, const float* b, float* Z,
                       Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_lane_ab_d(const double* D, const double* W, double* P, Py_ssize_t rows,
                      Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_lane_ab_s(const float* D, const float* W, float* P, Py_ssize_t rows,
                      Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_lane_sgd_d(const double* alpha, const double* D, const double* A, double* W,
                       Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_lane_sgd_s(const float* alpha, const float* D, const float* A, float* W,
                       Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_lane_gemm_d(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double* alpha,
                        const double* A, Py_ssize_t rsa, Py_ssize_t csa, const double* B,
                        Py_ssize_t rsb, Py_ssize_t csb, bint beta, double* C, Py_ssize_t ldc,
                        const double* bias)
    void bf_lane_gemm_s(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* alpha,
                        const float* A, Py_ssize_t rsa, Py_ssize_t csa, const float* B,
                        Py_ssize_t rsb, Py_ssize_t csb, bint beta, float* C, Py_ssize_t ldc,
                        const float* bias)


# A group's buffers (every lane's parameters, optimizer state, rows and
# activations) are kept within a core's second-level cache, where
# interleaving pays.
cdef enum:
    LANE_BLOCK = 1 << 20


cdef inline bint _folds(const Opts* s) noexcept nogil:
    """Whether the run trains by plain SGD, its update folded into the
    weight-gradient product (no gradient or optimizer state)."""
    return s.optimizer == OPT_SGD and s.momentum == 0 and s.weight_decay == 0


cdef inline Py_ssize_t _lane_floats(const Net* net, Py_ssize_t batch,
                                    bint state) noexcept nogil:
    """A lane's share of a group's buffers, in numbers of its type: the
    parameters, the workspace of _lane_batch and the batch's rows, and
    (state) the gradient and the optimizer's two state buffers."""
    return (net.n_params * (4 if state else 1)
            + batch * (_total_width(net) + 2 * net.widest + net.sizes[0]
                       + net.sizes[net.n_layers] + 1))


cdef bint _lane_ready(const Run* r) noexcept nogil:
    """Whether a run may train in a lane: dense rows with neither validation
    rows nor a callback, a softmax output only with cross-entropy, and a
    group's buffers no larger than LANE_BLOCK."""
    cdef const Net* net = &r.net
    if (r.is_sp or net.bf16 or r.n_val > 0 or r.hook != NULL or r.n < 1
            or (net.acts[net.n_layers - 1] == ACT_SOFTMAX
                and net.loss != LOSS_CROSS_ENTROPY)):
        return False
    return BF_LANE_BYTES * _lane_floats(net, r.s.batch, not _folds(&r.s)) <= LANE_BLOCK


cdef bint _lane_mates(const Run* a, const Run* b) noexcept nogil:
    """Whether two ready runs can share a group: one architecture and type,
    as many rows, the same batch size and the same branch of the optimizer
    (its settings may differ)."""
    cdef Py_ssize_t m
    if (a.dbl != b.dbl or a.n != b.n or a.s.batch != b.s.batch
            or a.net.n_layers != b.net.n_layers or a.net.loss != b.net.loss
            or a.s.optimizer != b.s.optimizer or _folds(&a.s) != _folds(&b.s)
            or (a.s.momentum == 0) != (b.s.momentum == 0) or a.s.nesterov != b.s.nesterov):
        return False
    for m in range(a.net.n_layers):
        if (a.net.sizes[m + 1] != b.net.sizes[m + 1]
                or a.net.acts[m] != b.net.acts[m]):
            return False
    return a.net.sizes[0] == b.net.sizes[0]


cdef inline void _lane_abt(const floating* A, const floating* W, const floating* b,
                           floating* Z, Py_ssize_t rows, Py_ssize_t n_out,
                           Py_ssize_t n_in) noexcept nogil:
    if floating is double:
        bf_lane_abt_d(A, W, b, Z, rows, n_out, n_in)
    else:
        bf_lane_abt_s(A, W, b, Z, rows, n_out, n_in)


cdef inline void _lane_ab(const floating* D, const floating* W, floating* P, Py_ssize_t rows,
                          Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    if floating is double:
        bf_lane_ab_d(D, W, P, rows, n_out, n_in)
    else:
        bf_lane_ab_s(D, W, P, rows, n_out, n_in)


cdef inline void _lane_sgd(const floating* alpha, const floating* D, const floating* A,
                           floating* W, Py_ssize_t rows, Py_ssize_t n_out,
                           Py_ssize_t n_in) noexcept nogil:
    if floating is double:
        bf_lane_sgd_d(alpha, D, A, W, rows, n_out, n_in)
    else:
        bf_lane_sgd_s(alpha, D, A, W, rows, n_out, n_in)


cdef inline void _lane_gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating* alpha,
                            const floating* A, Py_ssize_t rsa, Py_ssize_t csa,
                            const floating* B, Py_ssize_t rsb, Py_ssize_t csb, bint beta,
                            floating* C, Py_ssize_t ldc,
                            const floating* bias) noexcept nogil:
    if floating is double:
        bf_lane_gemm_d(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias)
    else:
        bf_lane_gemm_s(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias)


cdef inline void _lane_sums(const floating* x, Py_ssize_t n, Py_ssize_t G,
                            double* sums) noexcept nogil:
    """sums[l] <- x[l] + x[G + l] + ... (n terms, in order, in double)."""
    # Summed in locals: sums might alias x, for all the compiler knows, so
    # sums kept there would be stored lane by lane and reloaded as a vector.
    cdef Py_ssize_t j, l
    cdef double t[16]
    for l in range(G):
        t[l] = 0
    for j in range(n):
        for l in range(G):
            t[l] += x[j * G + l]
    for l in range(G):
        sums[l] = t[l]


cdef void _lane_softmax(floating* Z, const floating* Y, const floating* sw, floating* D,
                        double* scratch, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t G,
                        double* costs) noexcept nogil:
    """_output_delta's softmax with cross-entropy, in every lane: D, each
    lane's cost sum in costs. SCRATCH: 3 * rows * G doubles."""
    cdef Py_ssize_t r, j, l
    cdef floating zmax[16]
    cdef floating inv[16]
    cdef double t[16]
    cdef double* syz = scratch
    cdef double* ssum = scratch + rows * G
    cdef double* sy = ssum + rows * G
    cdef floating* zr
    cdef floating* dr
    cdef const floating* yr
    for r in range(rows):
        zr = Z + r * n * G
        yr = Y + r * n * G
        for l in range(G):
            zmax[l] = zr[l]
        for j in range(1, n):
            for l in range(G):
                if zr[j * G + l] > zmax[l]:
                    zmax[l] = zr[j * G + l]
        for j in range(n):
            for l in range(G):
                zr[j * G + l] = zr[j * G + l] - zmax[l]
        for l in range(G):
            t[l] = 0
        for j in range(n):
            for l in range(G):
                t[l] += yr[j * G + l] * (<double>zr[j * G + l])
        for l in range(G):
            syz[r * G + l] = t[l]
    for j in range(rows * n * G):
        Z[j] = exp_neg(Z[j])
    for r in range(rows):
        zr = Z + r * n * G
        dr = D + r * n * G
        yr = Y + r * n * G
        _lane_sums(zr, n, G, ssum + r * G)
        _lane_sums(yr, n, G, sy + r * G)
        for l in range(G):
            inv[l] = <floating>(sy[r * G + l] / ssum[r * G + l])
        for j in range(n):
            for l in range(G):
                dr[j * G + l] = zr[j * G + l] * inv[l] - yr[j * G + l]
        if sw != NULL:
            for j in range(n):
                for l in range(G):
                    dr[j * G + l] = dr[j * G + l] * sw[r * G + l]
    for r in range(rows):
        for l in range(G):
            syz[r * G + l] = sy[r * G + l] * log_ge1(ssum[r * G + l]) - syz[r * G + l]
    _weighted_sums(syz, sw, rows, G, costs)


cdef inline void _lane_weights(bint transposed, const floating* alpha, const floating* A,
                               const floating* D, bint beta, floating* C, Py_ssize_t rows,
                               Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    """C (n_out x n_in) = alpha D.T @ A (+ C where beta) in every lane, as
    matmul_atb_acc spells it at this size; or, for the first layer held
    transposed, C (n_in x n_out) = alpha A.T @ D (+ C), alpha scaling A.
    alpha: one per lane. (The small loops start from zeros, bf_gemm from
    -0: the sums differ only in the sign of an exact zero.)"""
    cdef Py_ssize_t G = BF_LANE_BYTES // sizeof(floating), j
    if rows * n_out * n_in > SMALL_PRODUCT:
        if transposed:
            _lane_gemm(n_in, n_out, rows, alpha, A, 1, n_in, D, n_out, 1, beta, C, n_out, NULL)
        else:
            _lane_gemm(n_out, n_in, rows, alpha, D, 1, n_out, A, n_in, 1, beta, C, n_in, NULL)
        return
    if not beta:
        for j in range(n_out * n_in * G):
            C[j] = 0
    if transposed:
        _lane_sgd(alpha, A, D, C, rows, n_in, n_out)
    else:
        _lane_sgd(alpha, D, A, C, rows, n_out, n_in)


cdef void _lane_step(const Optim** opts, const double* rate, floating* p,
                     const floating* g, floating* m, floating* v, Py_ssize_t n,
                     Py_ssize_t G) noexcept nogil:
    """_optimizer_step in every lane, each with its own settings (one
    branch for all: _lane_mates), on n interleaved parameters."""
    cdef Py_ssize_t i, l
    cdef const Optim* o = opts[0]
    cdef floating lr[16]
    cdef floating wd[16]
    cdef floating mu[16]
    cdef floating b1[16]
    cdef floating b2[16]
    cdef floating eps[16]
    cdef floating step[16]
    cdef floating bc2_sqrt[16]
    cdef floating decay[16]
    cdef floating d, one = 1
    for l in range(G):
        lr[l] = <floating>rate[l]
        wd[l] = <floating>opts[l].weight_decay
        mu[l] = <floating>opts[l].momentum
        b1[l] = <floating>opts[l].beta1
        b2[l] = <floating>opts[l].beta2
        eps[l] = <floating>opts[l].epsilon
    if o.kind == OPT_SGD:
        if o.momentum == 0:
            for i in range(n):
                for l in range(G):
                    p[i * G + l] = p[i * G + l] - lr[l] * (g[i * G + l] + wd[l] * p[i * G + l])
        elif o.nesterov:
            for i in range(n):
                for l in range(G):
                    d = g[i * G + l] + wd[l] * p[i * G + l]
                    m[i * G + l] = mu[l] * m[i * G + l] + d
                    p[i * G + l] = p[i * G + l] - lr[l] * (d + mu[l] * m[i * G + l])
        else:
            for i in range(n):
                for l in range(G):
                    m[i * G + l] = mu[l] * m[i * G + l] + (g[i * G + l] + wd[l] * p[i * G + l])
                    p[i * G + l] = p[i * G + l] - lr[l] * m[i * G + l]
        return
    for l in range(G):
        step[l] = <floating>(rate[l] / opts[l].bc1)
        bc2_sqrt[l] = <floating>sqrt(opts[l].bc2)
    if o.kind == OPT_ADAMW:
        for l in range(G):
            decay[l] = <floating>(1.0 - rate[l] * opts[l].weight_decay)
            wd[l] = 0
        for i in range(n):
            for l in range(G):
                p[i * G + l] = p[i * G + l] * decay[l]
    for i in range(n):
        for l in range(G):
            d = g[i * G + l] + wd[l] * p[i * G + l]
            m[i * G + l] = b1[l] * m[i * G + l] + (one - b1[l]) * d
            v[i * G + l] = b2[l] * v[i * G + l] + (one - b2[l]) * d * d
            p[i * G + l] = (p[i * G + l] - step[l] * m[i * G + l]
                            / (_sqrt(v[i * G + l]) / bc2_sqrt[l] + eps[l]))


cdef void _lane_batch(const Net* net, floating* PL, const floating* X, const floating* Y,
                      const floating* sw, Py_ssize_t rows, Py_ssize_t batch,
                      floating* work, double* bsum, const double* rate,
                      const Optim** opts, floating* GL, floating* M1, floating* M2,
                      double* costs) noexcept nogil:
    """One optimizer step of every lane on its ``rows`` samples: _batch's
    passes (see there) with every buffer interleaved, each product in the
    small loops' spelling or bf_gemm's as _blas.pxd chooses for the network
    alone, the first layer transposed where _transposed_first has it so.
    IN: X, Y, sw (or NULL) the lanes' rows; rate and opts, one per lane.
    IN/OUT: PL the lanes' parameters; M1, M2 their optimizer state (laid
    out like PL; NULL where unused). OUT: costs, each lane's cost sum.
    SCRATCH: work (batch * (total width + 2 * widest) * LANES), bsum
    (max(widest, 3 * batch) * LANES), GL (like PL; NULL for plain SGD,
    whose update is folded into the weight-gradient product)."""
    cdef Py_ssize_t G = BF_LANE_BYTES // sizeof(floating)
    cdef Py_ssize_t L = net.n_layers
    cdef Py_ssize_t m, j, l, r, n_in, n_out, w_off = 0, a_off = 0
    cdef floating* D = work + batch * _total_width(net) * G
    cdef floating* P = D + batch * net.widest * G
    cdef floating* swap
    cdef floating* W
    cdef floating* b
    cdef floating* Z
    cdef const floating* a_in = X
    cdef floating alpha[16]
    cdef floating mean[16]
    cdef floating* GW = NULL
    cdef bint wt = _transposed_first(net, batch)
    cdef bint fold = GL == NULL
    for m in range(L):
        n_in = net.sizes[m]
        n_out = net.sizes[m + 1]
        W = PL + w_off * G
        b = W + n_out * n_in * G
        Z = work + batch * a_off * G
        if m == 0 and wt:
            # matmul_ab's forward product, through W0.T (n_in x n_out).
            if rows * n_out * n_in > SMALL_PRODUCT:
                _lane_gemm(rows, n_out, n_in, NULL, a_in, n_in, 1, W, n_out, 1, False, Z,
                           n_out, b)
            else:
                _lane_ab(a_in, W, Z, rows, n_in, n_out)
                for r in range(rows):
                    for j in range(n_out * G):
                        Z[r * n_out * G + j] = Z[r * n_out * G + j] + b[j]
        elif rows * n_out * n_in > SMALL_PRODUCT:
            _lane_gemm(rows, n_out, n_in, NULL, a_in, n_in, 1, W, 1, n_in, False, Z, n_out, b)
        else:
            _lane_abt(a_in, W, b, Z, rows, n_out, n_in)
        if m < L - 1:
            _activate(net.acts[m], Z, rows * n_out * G)
            a_in = Z
            a_off += n_out
            w_off += n_out * (n_in + 1)
    n_out = net.sizes[L]
    Z = work + batch * a_off * G
    if net.acts[L - 1] == ACT_SOFTMAX:
        _lane_softmax(Z, Y, sw, D, bsum, rows, n_out, G, costs)
    else:
        _output_pointwise(net, Z, Y, D, rows * n_out * G)
        _row_costs(Z, D, sw, rows, n_out, G, costs)
    _column_sums(D, bsum, rows, n_out * G)
    for l in range(G):
        alpha[l] = <floating>(-rate[l] / rows)
        mean[l] = <floating>(1.0 / rows)
    for m in range(L - 1, -1, -1):
        n_in = net.sizes[m]
        n_out = net.sizes[m + 1]
        W = PL + w_off * G
        b = W + n_out * n_in * G
        if m > 0:
            a_off -= n_in
            a_in = work + batch * a_off * G
        else:
            a_in = X
        if fold:
            for j in range(n_out):
                for l in range(G):
                    b[j * G + l] = b[j * G + l] + <floating>(-rate[l] * bsum[j * G + l] / rows)
        else:
            GW = GL + w_off * G
            for j in range(n_out * G):
                GW[n_out * n_in * G + j] = <floating>(bsum[j] / rows)
        if m > 0:
            if rows * n_in * n_out > SMALL_PRODUCT:
                _lane_gemm(rows, n_in, n_out, NULL, D, n_out, 1, W, n_in, 1, False, P, n_in,
                           NULL)
            else:
                _lane_ab(D, W, P, rows, n_out, n_in)
            _hidden_delta(net.acts[m - 1], P, a_in, bsum, rows, n_in * G)
        if not fold:
            # The weights' mean gradient, then the step of the layer's
            # weights and biases.
            _lane_weights(m == 0 and wt, mean, a_in, D, False, GW, rows, n_out, n_in)
            _lane_step(opts, rate, W, GW, M1 + w_off * G if M1 != NULL else NULL,
                       M2 + w_off * G if M2 != NULL else NULL, n_out * (n_in + 1), G)
        else:
            _lane_weights(m == 0 and wt, alpha, a_in, D, True, W, rows, n_out, n_in)
        swap = D
        D = P
        P = swap
        if m > 0:
            w_off -= n_in * (net.sizes[m - 1] + 1)


cdef void _lane_params(const Net* net, Py_ssize_t batch, floating* PL, const floating* p,
                       Py_ssize_t l, bint out) noexcept nogil:
    """p, laid out like a network's parameters, into lane l of PL, or (out)
    back; the first layer's weights transposed in PL where _lane_batch
    trains them so."""
    cdef Py_ssize_t G = BF_LANE_BYTES // sizeof(floating)
    cdef Py_ssize_t i, j, start = 0
    cdef Py_ssize_t n0 = net.sizes[0], n1 = net.sizes[1]
    cdef floating* q = <floating*>p
    if _transposed_first(net, batch):
        start = n0 * n1
        for j in range(n1):
            for i in range(n0):
                if out:
                    q[j * n0 + i] = PL[(i * n1 + j) * G + l]
                else:
                    PL[(i * n1 + j) * G + l] = p[j * n0 + i]
    if out:
        for i in range(start, net.n_params):
            q[i] = PL[i * G + l]
    else:
        for i in range(start, net.n_params):
            PL[i * G + l] = p[i]


cdef void _lane_state(const Net* net, Py_ssize_t batch, floating* PL, floating* M1,
                      floating* M2, Run* r, Py_ssize_t l, bint out) noexcept nogil:
    """Network r's parameters and optimizer state (where the lanes keep
    it and the network has it) into lane l, or (out) back."""
    _lane_params(net, batch, PL, <floating*>r.params, l, out)
    if M1 != NULL and r.m1 != NULL:
        _lane_params(net, batch, M1, <floating*>r.m1, l, out)
    if M2 != NULL and r.m2 != NULL:
        _lane_params(net, batch, M2, <floating*>r.m2, l, out)


cdef inline void _lane_row(const floating** src, Py_ssize_t n, floating* dst,
                           Py_ssize_t G) noexcept nogil:
    """dst[c * G + l] = src[l][c]: a row of every lane, interleaved a column
    at a time, so that the stores fill one line after another."""
    cdef Py_ssize_t c, l
    for c in range(n):
        for l in range(G):
            dst[c * G + l] = src[l][c]


cdef void _fit_lanes(Run** runs, Py_ssize_t m, floating* unused) noexcept nogil:
    """Train m (2 to LANES) networks that _lane_ready and _lane_mates
    accept, network l in lane l, each as _fit_run would train it alone.
    Lanes past m, and those of networks that have stopped, go on computing
    on some network's rows; their results are dropped."""
    cdef Py_ssize_t G = BF_LANE_BYTES // sizeof(floating)
    cdef Net* net = &runs[0].net
    cdef Py_ssize_t n = runs[0].n, batch = runs[0].s.batch
    cdef Py_ssize_t n_in = net.sizes[0], n_out = net.sizes[net.n_layers]
    cdef Py_ssize_t n_params = net.n_params
    cdef Py_ssize_t k, l, i, c, row, start, rows, epoch, epochs = 0, countdown, check_every
    cdef Loop lps[16]
    cdef Run* lane[16]          # whose rows and rate each lane takes
    cdef bint live[16]          # still training
    cdef bint broke[16]         # stopped inside this epoch on a non-finite cost
    cdef bint gathers[16]       # whether the lane's rows come shuffled
    cdef double totals[16]
    cdef double costs[16]
    cdef double rates[16]
    cdef bint weighted = False, aborted = False, any_live, once
    cdef floating* PL
    cdef floating* GL = NULL
    cdef floating* M1 = NULL
    cdef floating* M2 = NULL
    cdef floating* XL
    cdef floating* YL
    cdef floating* WL
    cdef floating* work
    cdef double* bsum
    cdef const floating* xs[16]
    cdef const floating* ys[16]
    cdef const Optim* opts[16]
    cdef Opts* s0 = &runs[0].s
    cdef bint state = not _folds(s0)
    cdef Py_ssize_t floats = G * _lane_floats(net, batch, state)
    cdef Py_ssize_t doubles = G * max(net.widest, 3 * batch)
    cdef void* block
    if m < 1:
        return
    block = malloc(doubles * sizeof(double) + floats * sizeof(floating) + 64)
    if block == NULL:
        # No room to interleave: each network trains on its own.
        for k in range(m):
            _fit_run(runs[k], <floating*>runs[k].params)
        return
    # Every buffer's lanes in one whole vector: a vector split over two
    # cache lines loads at half speed.
    bsum = <double*>(<char*>block + (64 - <size_t>block % 64) % 64)
    PL = <floating*>(bsum + doubles)
    work = PL + n_params * G
    if state:
        GL = work
        M1 = GL + n_params * G
        M2 = M1 + n_params * G
        work = M2 + n_params * G
    XL = work + batch * (_total_width(net) + 2 * net.widest) * G
    YL = XL + batch * n_in * G
    WL = YL + batch * n_out * G
    for k in range(m):
        weighted = weighted or runs[k].sw != NULL
        epochs = max(epochs, runs[k].s.epochs)
        _loop_start(runs[k], &lps[k])
        live[k] = runs[k].s.epochs > 0
    for l in range(G):
        lane[l] = runs[l] if l < m else runs[0]
        gathers[l] = lps[l if l < m else 0].gather
        opts[l] = &lps[l if l < m else 0].opt
    # Rows that every epoch takes in the same order, in one batch, are
    # interleaved once.
    once = batch >= n
    for l in range(G):
        once = once and not gathers[l]
    # Between epochs a network's parameters change only where it stops, so
    # they enter the lanes once.
    for l in range(G):
        _lane_state(net, batch, PL, M1, M2, lane[l], l, False)
    check_every = max(1, (1 << 20) // (batch * n_params * G))
    countdown = check_every
    for epoch in range(epochs):
        any_live = False
        for k in range(m):
            broke[k] = False
            totals[k] = 0
            if live[k]:
                any_live = True
                _epoch_start(runs[k], <floating*>runs[k].params, &lps[k], epoch)
        if not any_live:
            break
        for l in range(G):
            rates[l] = lps[l].rate if l < m else lps[0].rate
        start = 0
        while start < n:
            rows = min(batch, n - start)
            for i in range(rows if epoch == 0 or not once else 0):
                for l in range(G):
                    row = start + i
                    if gathers[l]:
                        row = lane[l].order[row]
                    xs[l] = <const floating*>lane[l].X + row * n_in
                    ys[l] = <const floating*>lane[l].Y + row * n_out
                    if weighted:
                        WL[i * G + l] = (1 if lane[l].sw == NULL
                                         else (<const floating*>lane[l].sw)[row])
                _lane_row(xs, n_in, XL + i * n_in * G, G)
                _lane_row(ys, n_out, YL + i * n_out * G, G)
            if s0.optimizer != OPT_SGD:
                for k in range(m):
                    if live[k] and not broke[k]:
                        runs[k].step[0] += 1
                        lps[k].opt.bc1 = 1 - pow(lps[k].opt.beta1, <double>runs[k].step[0])
                        lps[k].opt.bc2 = 1 - pow(lps[k].opt.beta2, <double>runs[k].step[0])
            _lane_batch(net, PL, XL, YL, WL if weighted else NULL, rows, batch, work, bsum,
                        rates, opts, GL, M1, M2, costs)
            for k in range(m):
                if live[k] and not broke[k]:
                    if isfinite(costs[k]):
                        totals[k] += costs[k]
                    else:
                        # The network stops here, its parameters those of
                        # after this step, as _fit_run leaves them.
                        lps[k].status = STATUS_NONFINITE_COST
                        broke[k] = True
                        _lane_state(net, batch, PL, M1, M2, runs[k], k, True)
            start += rows
            countdown -= 1
            if countdown == 0:
                countdown = check_every
                if _interrupted(runs[0]):
                    aborted = True
                    break
        for k in range(m):
            if live[k] and not broke[k]:
                _lane_state(net, batch, PL, M1, M2, runs[k], k, True)
        if aborted:
            for k in range(m):
                if live[k]:
                    lps[k].aborted = True
            break
        for k in range(m):
            if live[k]:
                if (_epoch_finish(runs[k], <floating*>runs[k].params, &lps[k], epoch,
                                  totals[k], <floating*>runs[k].work)
                        or epoch + 1 == runs[k].s.epochs):
                    live[k] = False
    for k in range(m):
        _loop_end(runs[k], <floating*>runs[k].params, &lps[k])
    free(block)


cdef void _forward_chunk(const Net* net, const floating* params, const floating* pw,
                         const floating* X, floating* out, Py_ssize_t rows,
                         Py_ssize_t batch, floating* work,
                         const bf_csr* sp) noexcept nogil:
    """Forward pass; the last layer's pre-activations go to ``out``.
    pw: the parameters the products read (see _rounded), params the biases.
    sp, or NULL: the chunk's rows of a sparse X, read in place of X."""
    cdef Py_ssize_t m, n_in, n_out, w_off = 0, a_off = 0
    cdef const floating* a_in = X
    cdef floating* z
    for m in range(net.n_layers):
        n_in = net.sizes[m]
        n_out = net.sizes[m + 1]
        z = out if m == net.n_layers - 1 else work + batch * a_off
        if m == 0 and sp != NULL:
            _csr_abt_bias(&net.gemm, sp, rows, pw, params + n_out * n_in, z, n_out, n_in)
        else:
            matmul_abt_bias(&net.gemm, _rounded(net, a_in, rows * n_in, net.ra), pw + w_off,
                            params + w_off + n_out * n_in, z, rows, n_out, n_in)
        if m < net.n_layers - 1:
            _activate(net.acts[m], z, rows * n_out)
            a_in = z
            a_off += n_out
            w_off += n_out * (n_in + 1)




cdef void _run_tasks(Py_ssize_t m, int threads, Run** runs) noexcept nogil:
    """The m runs on ``threads`` threads, those that can share vector lanes
    in groups (_group)."""
    cdef Tasks tasks
    cdef Py_ssize_t k
    cdef Run** placed = <Run**>malloc(2 * m * sizeof(Run*) + (m + 1) * sizeof(Py_ssize_t))
    if placed == NULL:
        # No room to group them: each on its own, one after another.
        for k in range(m):
            _run_alone(runs[k])
        return
    memcpy(placed, runs, m * sizeof(Run*))
    tasks.runs = placed + m
    tasks.bounds = <Py_ssize_t*>(placed + 2 * m)
    bf_run_tasks(_group(placed, m, threads, &tasks), threads, _run_task, &tasks)
    free(placed)


cdef void _elementwise(int which, floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if which == 0:
            x[i] = exp_neg(x[i])
        elif which == 1:
            x[i] = expm1_neg(x[i])
        elif which == 2:
            x[i] = log1p_unit(x[i])
        elif which == 3:
            x[i] = sigmoid(x[i])
        elif which == 4:
            x[i] = tanh_(x[i])
        elif which == 5:
            x[i] = relu(x[i])
        elif which == 6:
            x[i] = softplus(x[i])
        else:
            x[i] = <floating>log_ge1(x[i])


cdef Engine engine
engine.size = sizeof(Engine) + sizeof(Run)
engine.checked = BF_CHECKED_BUILD
engine.threads = bf_threads
engine.gemm_start = _gemm_start
engine.gemm_end = _gemm_end
engine.run_tasks = _run_tasks
engine.batch_d = _batch[double]
engine.batch_s = _batch[float]
engine.rounded_s = _rounded[float]
engine.forward_chunk_d = _forward_chunk[double]
engine.forward_chunk_s = _forward_chunk[float]
engine.output_forward_d = _output_forward[double]
engine.output_forward_s = _output_forward[float]
engine.output_delta_d = _output_delta[double]
engine.output_delta_s = _output_delta[float]
engine.all_finite_d = _all_finite[double]
engine.all_finite_s = _all_finite[float]
engine.extremes_d = _extremes[double]
engine.extremes_s = _extremes[float]
engine.round_bf16 = bf_round_bf16
engine.elementwise_d = _elementwise[double]
engine.elementwise_s = _elementwise[float]
ENGINE = PyCapsule_New(&engine, "backprop_fast engine", NULL)
