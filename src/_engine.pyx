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
    cdef double cost = 0, c, s, sy, ga, sq
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
        for r in range(rows):
            c = bsum[r]
            if sw != NULL:
                c *= sw[r]
            cost += c
        _column_sums(D, bsum, rows, n)
        return cost
    if act == ACT_SIGMOID and net.loss == LOSS_CROSS_ENTROPY:
        # -[y log a + (1-y) log(1-a)] = softplus(z) - y z; dC/dz = a - y.
        for i in range(rows * n):
            z = Z[i]
            e = exp_neg(-abs_(z))
            inv = one / (one + e)
            a = inv if z >= zero else e * inv
            D[i] = a - Y[i]
            Z[i] = ((z if z > zero else zero) - Y[i] * z) + log1p_unit(e)
    elif net.loss == LOSS_POISSON:
        # C = exp(z) - y z + y log y - y: half the Poisson deviance of the
        # mean exp(z), zero where it equals y; dC/dz = exp(z) - y.
        for i in range(rows * n):
            z = Z[i]
            a = <floating>exp(z)
            D[i] = a - Y[i]
            c = a - Y[i] * z - Y[i]
            if Y[i] > 0:
                c += Y[i] * log(Y[i])
            Z[i] = <floating>c
    elif act == ACT_IDENTITY:
        for i in range(rows * n):
            g = Z[i] - Y[i]
            D[i] = g
            Z[i] = half * g * g
    else:
        # Squared error: C = 0.5 ||a - y||^2, dC/dz = (a - y) f'(a).
        _activate(act, Z, rows * n)
        for i in range(rows * n):
            a = Z[i]
            g = a - Y[i]
            D[i] = g * derivative(act, a)
            Z[i] = half * g * g
    for r in range(rows):
        c = Z[r * n]
        for j in range(1, n):
            c += Z[r * n + j]
        if sw != NULL:
            c *= sw[r]
            for j in range(n):
                D[r * n + j] = D[r * n + j] * sw[r]
        cost += c
    _column_sums(D, bsum, rows, n)
    return cost


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


cdef void _run_task(void* runs, Py_ssize_t k) noexcept nogil:
    cdef Run* r = (<Run**>runs)[k]
    # A run not yet started when another stopped them all is left untouched.
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


cdef void _fit_run(Run* r, floating* p) noexcept nogil:
    """Train one network over whole epochs: fit_call's contract, the
    outcome in r.status, r.done and r.best_epoch."""
    cdef Net* net = &r.net
    cdef Opts* s = &r.s
    cdef Rng rng
    cdef Optim opt
    cdef Py_ssize_t n = r.n, n_val = r.n_val
    cdef Py_ssize_t batch = s.batch, epochs = s.epochs
    cdef Py_ssize_t n_in, n_out, epoch, start, rows, i, done = 0
    cdef Py_ssize_t wait = 0, best_epoch = -1, countdown, check_every
    cdef Py_ssize_t timed = 0, stride = 1
    cdef int status = STATUS_OK
    cdef double total, cost, rate, base_rate = s.learning_rate
    cdef double monitor, best_monitor = INFINITY, val_acc, t0, t1
    cdef bint gather = s.shuffle and batch < n
    cdef bint weighted = r.sw != NULL
    cdef bint stop = False, aborted = False
    cdef const floating* X = <const floating*>r.X
    cdef const floating* Y = <const floating*>r.Y
    cdef const floating* sw = <const floating*>r.sw
    cdef Py_ssize_t* order = r.order
    cdef floating* work = <floating*>r.work
    cdef floating* snapshot = <floating*>r.snapshot
    cdef floating* best = <floating*>r.best
    cdef double* history = r.history
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
    cdef bint sk = s.stopping == STOP_SKLEARN
    cdef int metric = s.val_metric
    cdef bint keep_best = (s.early_stopping and s.restore_best
                           and (not sk or metric != METRIC_NONE))
    cdef double val_score = NAN
    cdef Py_ssize_t e2
    cdef Py_ssize_t n_params = net.n_params
    cdef const bf_csr* xsp = &r.xs if r.is_sp else NULL
    cdef const bf_csr* vsp = &r.vs if r.val_sp else NULL
    opt.kind = s.optimizer
    opt.momentum = s.momentum
    opt.nesterov = s.nesterov
    opt.beta1 = s.beta1
    opt.beta2 = s.beta2
    opt.epsilon = s.epsilon
    opt.weight_decay = s.weight_decay
    opt.fold = (opt.kind == OPT_SGD and opt.momentum == 0 and opt.weight_decay == 0)
    n_in = net.sizes[0]
    n_out = net.sizes[net.n_layers]
    xg = work + batch * (_total_width(net) + 2 * net.widest)
    yg = xg + batch * n_in if not r.is_sp else xg
    wg = yg + batch * n_out
    if _transposed_first(net, batch) and not r.is_sp:
        wt = wg + batch
    fuse = opt.fold and _fuses_first(net, batch) and not r.is_sp
    if r.is_sp:
        # Unshuffled batches of a sparse X run from their first row on.
        for i in range(n):
            order[i] = i
    # Check for Ctrl-C about every 2**20 multiply-adds (well under a ms).
    check_every = max(1, (1 << 20) // (batch * n_params))
    countdown = check_every
    memcpy(&rng, r.rng_state, sizeof(Rng))
    rate = base_rate
    if sk:
        # A partial fit continues the rate where the last call left it.
        rate = s.rate
    # One clock read an epoch: each epoch ends where the next begins.
    t0 = _now()
    for epoch in range(epochs):
        if sk:
            pass  # the rate changes at each epoch's end
        elif s.schedule == SCHED_INVSCALING:
            rate = base_rate / pow(epoch + 1.0, s.power_t)
        elif s.schedule == SCHED_COSINE:
            rate = 0.5 * base_rate * (1 + cos(M_PI * epoch / epochs))
        memcpy(snapshot, p, n_params * sizeof(floating))
        if wt != NULL:
            # Taken afresh each epoch: a callback may change weights.
            _first_layer(p, s1, s2, wt, n_in, net.sizes[1], False)
            wt_live = True
        if gather:
            # Each epoch's order depends only on the generator's state, so
            # training continued over several calls repeats a single call.
            for i in range(n):
                order[i] = i
            _shuffle(&rng, order, n)
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
            cost = _batch(net, p, xb, yb, wb, rows, batch, work, r.bsum, &opt, rate,
                          g, s1, s2, wt, x_next, z_ready, xsp)
            z_ready = x_next != NULL
            if not isfinite(cost):
                status = STATUS_NONFINITE_COST
                break
            total += cost
            start += rows
            # A countdown, not steps % check_every: no division a step.
            countdown -= 1
            if countdown == 0:
                countdown = check_every
                if _interrupted(r):
                    aborted = True
                    break
        if wt_live:
            _first_layer(p, s1, s2, wt, n_in, net.sizes[1], True)
            wt_live = False
        if aborted:
            break
        if status == STATUS_OK and not isfinite(total):
            # Every batch's cost was finite, their sum is not: the costs are
            # near the largest double, as good as diverged.
            status = STATUS_NONFINITE_COST
        if status == STATUS_OK and not _all_finite(p, n_params):
            status = STATUS_NONFINITE_PARAMS
        if status != STATUS_OK:
            if not _all_finite(p, n_params):
                memcpy(p, snapshot, n_params * sizeof(floating))
            if sk and metric != METRIC_NONE:
                # scikit-learn trains on with NaN costs and scores to max_iter
                # (a NaN never counts as no improvement), then takes the best
                # epoch's parameters: the same record.
                status = STATUS_DIVERGED_KEPT_BEST
                for e2 in range(epoch, epochs):
                    history[e2 * H_COLUMNS + H_LOSS] = NAN
                    history[e2 * H_COLUMNS + H_VAL_LOSS] = NAN
                    history[e2 * H_COLUMNS + H_VAL_ACCURACY] = NAN
                    history[e2 * H_COLUMNS + H_VAL_SCORE] = NAN
                    history[e2 * H_COLUMNS + H_RATE] = rate
                    history[e2 * H_COLUMNS + H_TIME] = 0
                s.samples_seen += n * (epochs - epoch)
                s.no_improvement = 0
                done = epochs
            break
        cost = total / n
        if s.loss_penalty != 0:
            cost += s.loss_penalty * _weights_sq(net, p)
        history[epoch * H_COLUMNS + H_LOSS] = cost
        history[epoch * H_COLUMNS + H_RATE] = rate
        monitor = cost
        history[epoch * H_COLUMNS + H_VAL_LOSS] = NAN
        history[epoch * H_COLUMNS + H_VAL_ACCURACY] = NAN
        history[epoch * H_COLUMNS + H_VAL_SCORE] = NAN
        if metric != METRIC_NONE:
            monitor = _validate_score(net, p, <const floating*>r.Xv, <const floating*>r.Yv,
                                      <const floating*>r.vw, n_val, batch, work, r.bsum,
                                      metric, r.vstats, &val_score, vsp) / n_val
            history[epoch * H_COLUMNS + H_VAL_LOSS] = monitor
            history[epoch * H_COLUMNS + H_VAL_SCORE] = val_score
            if metric == METRIC_ACCURACY:
                history[epoch * H_COLUMNS + H_VAL_ACCURACY] = val_score
        elif n_val > 0:
            monitor = _validate_score(net, p, <const floating*>r.Xv, <const floating*>r.Yv,
                                      NULL, n_val, batch, work, r.bsum, METRIC_UNITS, NULL,
                                      &val_acc, vsp) / n_val
            history[epoch * H_COLUMNS + H_VAL_LOSS] = monitor
            history[epoch * H_COLUMNS + H_VAL_ACCURACY] = val_acc
        done += 1
        if sk:
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
                    best_epoch = epoch
                    if keep_best:
                        memcpy(best, p, n_params * sizeof(floating))
            else:
                if cost > s.best_loss - s.tol:
                    s.no_improvement += 1
                else:
                    s.no_improvement = 0
                if cost < s.best_loss:
                    s.best_loss = cost
                    best_epoch = epoch
            s.samples_seen += n
            if s.schedule == SCHED_INVSCALING:
                rate = base_rate / pow(s.samples_seen + 1, s.power_t)
            if s.no_improvement > s.n_iter_no_change:
                if s.schedule == SCHED_ADAPTIVE and rate > 1e-6:
                    rate /= 5
                    s.no_improvement = 0
                else:
                    stop = True
            s.rate = rate
        # Early stopping and the plateau schedule watch the validation cost
        # when there is one, the training cost otherwise.
        elif monitor < best_monitor - s.min_delta:
            best_monitor = monitor
            best_epoch = epoch
            wait = 0
            if s.early_stopping and s.restore_best:
                memcpy(best, p, n_params * sizeof(floating))
        else:
            wait += 1
            if s.schedule == SCHED_PLATEAU and wait % s.patience == 0:
                rate /= 5
            # With the plateau schedule each reduced rate gets its own
            # patience before training stops.
            if s.early_stopping and wait >= s.patience * (
                    2 if s.schedule == SCHED_PLATEAU else 1):
                stop = True
        # Epochs shorter than ~20 us are timed in blocks (each gets the
        # block's mean) so that reading the clock costs under 1 %.
        if (epoch + 1 - timed >= stride or epoch + 1 == epochs or stop
                or r.hook != NULL):
            t1 = _now()
            for i in range(timed, epoch + 1):
                history[i * H_COLUMNS + H_TIME] = (t1 - t0) / (epoch + 1 - timed)
            if (t1 - t0) / (epoch + 1 - timed) < 20e-6 and stride < 4096:
                stride *= 2
            t0 = t1
            timed = epoch + 1
        if r.hook != NULL:
            stop = _call_hook(r, epoch) or stop
            if r.error != NULL:
                aborted = True
        if stop:
            break
    if aborted:
        if sk and keep_best and best_epoch >= 0:
            # scikit-learn restores the best epoch's parameters after Ctrl-C too.
            memcpy(p, best, n_params * sizeof(floating))
    elif ((status == STATUS_OK or status == STATUS_DIVERGED_KEPT_BEST) and keep_best
            and best_epoch >= 0 and (best_epoch != done - 1
                                     or status == STATUS_DIVERGED_KEPT_BEST)):
        memcpy(p, best, n_params * sizeof(floating))
    # Kept whatever ended the run.
    memcpy(r.rng_state, &rng, sizeof(Rng))
    r.status = status
    r.done = done
    r.best_epoch = best_epoch


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
    bf_run_tasks(m, threads, _run_task, runs)


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
