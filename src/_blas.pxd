# The three matrix products of backpropagation on row-major buffers.
#
# Products of at most SMALL_PRODUCT multiply-adds (a 2-2-1 network, a single
# sample) run in the loops below and in bf_small.h; their inner loops are
# unit-stride with independent lanes, so gcc vectorises them without
# reassociating any sum. Larger ones run in bf_gemm (bf_gemm.h), the one
# engine for wide products in every build: one chain of multiply-adds per
# element, k in order, on the call's threads, in the call's workspace.
from cython cimport floating

# Below this many multiply-adds a product runs in the loops here, where
# blocking and packing would cost more than the arithmetic.
cdef enum:
    SMALL_PRODUCT = 4096


cdef inline floating _madd(floating a, floating b, floating c) noexcept nogil:
    if floating is double:
        return BF_MADD_d(a, b, c)
    else:
        return BF_MADD_s(a, b, c)


cdef inline floating _dot(const floating* x, const floating* y,
                          Py_ssize_t n) noexcept nogil:
    # Eight independent partial sums: vectorisable without reassociation,
    # and the same summation order on every machine (the AVX2 and AVX-512
    # builds fuse each multiply-add, so they round differently).
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
    cdef Py_ssize_t i, blocks = n // 8
    for i in range(blocks * 8, n):
        s0 = _madd(x[i], y[i], s0)
    if blocks == 0:
        return s0
    for i in range(0, blocks * 8, 8):
        s0 = s0 + x[i] * y[i]
        s1 = s1 + x[i + 1] * y[i + 1]
        s2 = s2 + x[i + 2] * y[i + 2]
        s3 = s3 + x[i + 3] * y[i + 3]
        s4 = s4 + x[i + 4] * y[i + 4]
        s5 = s5 + x[i + 5] * y[i + 5]
        s6 = s6 + x[i + 6] * y[i + 6]
        s7 = s7 + x[i + 7] * y[i + 7]
    return ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))


# Four rows at a time, in C for `restrict` (no overlap to check at run
# time). bf_dot4: four of _dot's sums, each row of w keeping _dot's eight
# partial sums and their order (the results are _dot's, bit for bit), each
# element of x loaded once for four rows.
cdef extern from "bf_small.h" nogil:
    double BF_MADD_d(double a, double b, double c)
    float BF_MADD_s(float a, float b, float c)
    void bf_fetch(const void* p, Py_ssize_t bytes)
    void bf_dot4_d(const double* x, const double* w, Py_ssize_t n, double* out)
    void bf_dot4_s(const float* x, const float* w, Py_ssize_t n, float* out)
    void bf_update_dot4_d(double* g, const double* c, const double* a, const double* x,
                          Py_ssize_t n, double* out)
    void bf_update_dot4_s(float* g, const float* c, const float* a, const float* x,
                          Py_ssize_t n, float* out)
    void bf_axpy4_d(double* g0, double* g1, double* g2, double* g3, const double* c,
                    const double* a, Py_ssize_t n)
    void bf_axpy4_s(float* g0, float* g1, float* g2, float* g3, const float* c,
                    const float* a, Py_ssize_t n)
    void bf_abt_few_d(const double* A, const double* W, const double* b, double* Z,
                      Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_abt_few_s(const float* A, const float* W, const float* b, float* Z,
                      Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_atb_few_d(double alpha, const double* D, const double* A, double beta,
                      double* G, Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_atb_few_s(float alpha, const float* D, const float* A, float beta,
                      float* G, Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in)

cdef extern from "bf_gemm.h" nogil:
    ctypedef struct bf_gemm_ctx:
        void* buf
        Py_ssize_t bytes
        int threads
    int BF_GEMM_VB
    int bf_watch_forks()
    int bf_threads(int requested)
    int bf_thread_num()
    void bf_run_tasks(Py_ssize_t n, int threads,
                      void (*task)(void*, Py_ssize_t) noexcept nogil, void* arg)
    int bf_flag_get(const int* f)
    void bf_flag_set(int* f)
    Py_ssize_t bf_gemm_space_d(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int most)
    Py_ssize_t bf_gemm_space_s(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int most)
    void bf_gemm_d(const bf_gemm_ctx* ctx, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                   double alpha, const double* A, Py_ssize_t rsa, Py_ssize_t csa,
                   const double* B, Py_ssize_t rsb, Py_ssize_t csb, int beta,
                   double* C, Py_ssize_t ldc, const double* bias)
    void bf_gemm_s(const bf_gemm_ctx* ctx, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                   float alpha, const float* A, Py_ssize_t rsa, Py_ssize_t csa,
                   const float* B, Py_ssize_t rsb, Py_ssize_t csb, int beta,
                   float* C, Py_ssize_t ldc, const float* bias)


# The loops for small products of layers with five or more inputs (those
# with at most four run in bf_abt_few and bf_atb_few above; _ab_small is
# called with n_in a literal 1..4 where it is that small, so that after
# inlining gcc unrolls the inner loop: at these sizes loop control costs more
# than the arithmetic).

cdef inline void _abt_small(const floating* A, const floating* W,
                            const floating* b, floating* Z, Py_ssize_t rows,
                            Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    cdef Py_ssize_t r, j, q
    cdef floating out[4]
    for r in range(rows):
        j = 0
        if n_in >= 8:
            while j + 4 <= n_out:
                if floating is double:
                    bf_dot4_d(A + r * n_in, W + j * n_in, n_in, out)
                else:
                    bf_dot4_s(A + r * n_in, W + j * n_in, n_in, out)
                for q in range(4):
                    Z[r * n_out + j + q] = out[q] + b[j + q]
                j += 4
        while j < n_out:
            Z[r * n_out + j] = _dot(A + r * n_in, W + j * n_in, n_in) + b[j]
            j += 1


cdef inline void _ab_small(const floating* D, const floating* W, floating* P,
                           Py_ssize_t rows, Py_ssize_t n_out,
                           Py_ssize_t n_in) noexcept nogil:
    cdef Py_ssize_t r, j, i
    cdef floating d0, d1, d2, d3
    cdef floating* p
    cdef const floating* d
    for r in range(rows):
        p = P + r * n_in
        d = D + r * n_out
        d0 = d[0]
        for i in range(n_in):
            p[i] = d0 * W[i]
        # Four rows of W per pass over p; the sum runs in the order of j.
        j = 1
        while j + 4 <= n_out:
            d0 = d[j]
            d1 = d[j + 1]
            d2 = d[j + 2]
            d3 = d[j + 3]
            for i in range(n_in):
                p[i] = (((p[i] + d0 * W[j * n_in + i]) + d1 * W[(j + 1) * n_in + i])
                        + d2 * W[(j + 2) * n_in + i]) + d3 * W[(j + 3) * n_in + i]
            j += 4
        while j < n_out:
            d0 = d[j]
            for i in range(n_in):
                p[i] = p[i] + d0 * W[j * n_in + i]
            j += 1


cdef inline void _atb_small(floating alpha, const floating* D,
                            const floating* A, floating beta, floating* G,
                            Py_ssize_t rows, Py_ssize_t n_out,
                            Py_ssize_t n_in) noexcept nogil:
    cdef Py_ssize_t r, j, i, q
    cdef floating c0
    cdef floating c[4]
    cdef const floating* ar
    cdef floating* g
    if beta == 0:
        for i in range(n_out * n_in):
            G[i] = 0
    # Four rows of G per pass over a row of A.
    j = 0
    while j + 4 <= n_out:
        g = G + j * n_in
        for r in range(rows):
            for q in range(4):
                c[q] = alpha * D[r * n_out + j + q]
            if floating is double:
                bf_axpy4_d(g, g + n_in, g + 2 * n_in, g + 3 * n_in, c, A + r * n_in, n_in)
            else:
                bf_axpy4_s(g, g + n_in, g + 2 * n_in, g + 3 * n_in, c, A + r * n_in, n_in)
        j += 4
    while j < n_out:
        g = G + j * n_in
        for r in range(rows):
            c0 = alpha * D[r * n_out + j]
            ar = A + r * n_in
            for i in range(n_in):
                g[i] = g[i] + c0 * ar[i]
        j += 1


cdef inline bint _wide(const bf_gemm_ctx* ctx, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       floating alpha, const floating* A, Py_ssize_t rsa, Py_ssize_t csa,
                       const floating* B, Py_ssize_t rsb, Py_ssize_t csb, bint beta,
                       floating* C, Py_ssize_t ldc, const floating* bias) noexcept nogil:
    """bf_gemm for a product past SMALL_PRODUCT; False (C untouched) for a
    smaller one, which the caller's loops do."""
    if M * N * K <= SMALL_PRODUCT:
        return False
    if floating is double:
        bf_gemm_d(ctx, M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias)
    else:
        bf_gemm_s(ctx, M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias)
    return True


cdef inline Py_ssize_t gemm_space(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c,
                                  int threads, bint single) noexcept nogil:
    """Elements of workspace that any of the products whose dimensions are
    a, b and c, in any order, may need (floats where single, else doubles)."""
    cdef Py_ssize_t dims[3]
    cdef Py_ssize_t most = 0, need
    cdef int i, j
    dims[0] = a
    dims[1] = b
    dims[2] = c
    if a * b * c <= SMALL_PRODUCT:
        return 0
    for i in range(3):
        for j in range(3):
            if i != j:
                if single:
                    need = bf_gemm_space_s(dims[i], dims[j], dims[3 - i - j], threads)
                else:
                    need = bf_gemm_space_d(dims[i], dims[j], dims[3 - i - j], threads)
                most = max(most, need)
    return most


cdef inline void matmul_abt_bias(const bf_gemm_ctx* ctx, const floating* A,
                                 const floating* W, const floating* b, floating* Z,
                                 Py_ssize_t rows, Py_ssize_t n_out,
                                 Py_ssize_t n_in) noexcept nogil:
    """Z (rows x n_out) = A (rows x n_in) @ W.T + b, W being n_out x n_in."""
    if _wide(ctx, rows, n_out, n_in, <floating>1, A, n_in, 1, W, 1, n_in, False,
             Z, n_out, b):
        return
    if n_in <= 4:
        if floating is double:
            bf_abt_few_d(A, W, b, Z, rows, n_out, n_in)
        else:
            bf_abt_few_s(A, W, b, Z, rows, n_out, n_in)
    else:
        _abt_small(A, W, b, Z, rows, n_out, n_in)


cdef inline void matmul_ab(const bf_gemm_ctx* ctx, const floating* D, const floating* W,
                           const floating* c, floating* P, Py_ssize_t rows,
                           Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    """P (rows x n_in) = D (rows x n_out) @ W (+ c), W being n_out x n_in.

    c, a row added to every row of P, or NULL. With A for D and the
    transposed weights for W this is the forward product in its plain (NN)
    form, which reads the weights where they lie.
    """
    cdef Py_ssize_t r, i
    if _wide(ctx, rows, n_in, n_out, <floating>1, D, n_out, 1, W, n_in, 1, False,
             P, n_in, c):
        return
    if n_in == 1:
        _ab_small(D, W, P, rows, n_out, 1)
    elif n_in == 2:
        _ab_small(D, W, P, rows, n_out, 2)
    elif n_in == 3:
        _ab_small(D, W, P, rows, n_out, 3)
    elif n_in == 4:
        _ab_small(D, W, P, rows, n_out, 4)
    else:
        _ab_small(D, W, P, rows, n_out, n_in)
    if c != NULL:
        for r in range(rows):
            for i in range(n_in):
                P[r * n_in + i] = P[r * n_in + i] + c[i]


cdef inline void matmul_atb_acc(const bf_gemm_ctx* ctx, floating alpha, const floating* D,
                                const floating* A, floating beta, floating* G,
                                Py_ssize_t rows, Py_ssize_t n_out,
                                Py_ssize_t n_in) noexcept nogil:
    """G (n_out x n_in) = alpha D.T @ A + beta G, beta being 0 or 1.

    With G the weights, beta = 1 and alpha = -rate / batch this is the SGD
    update folded into the weight-gradient product.
    """
    if _wide(ctx, n_out, n_in, rows, alpha, D, 1, n_out, A, n_in, 1, beta != 0,
             G, n_in, NULL):
        return
    if n_in <= 4:
        if floating is double:
            bf_atb_few_d(alpha, D, A, beta, G, rows, n_out, n_in)
        else:
            bf_atb_few_s(alpha, D, A, beta, G, rows, n_out, n_in)
    else:
        _atb_small(alpha, D, A, beta, G, rows, n_out, n_in)


cdef inline void update_forward(floating alpha, const floating* d, const floating* a,
                                floating* W, const floating* b, const floating* x,
                                floating* z, Py_ssize_t n_out,
                                Py_ssize_t n_in) noexcept nogil:
    """W += alpha d a^T, then z = W x + b: an online SGD step's update of a
    first layer folded into the next sample's forward product, one pass over
    W. The arithmetic of matmul_atb_acc and then matmul_abt_bias with one
    row, bit for bit, for products that run in the loops here with n_in >= 8.
    """
    cdef Py_ssize_t j = 0, i, q
    cdef floating c0
    cdef floating c[4]
    cdef floating out[4]
    cdef floating* w
    while j + 4 <= n_out:
        for q in range(4):
            c[q] = alpha * d[j + q]
        if floating is double:
            bf_update_dot4_d(W + j * n_in, c, a, x, n_in, out)
        else:
            bf_update_dot4_s(W + j * n_in, c, a, x, n_in, out)
        for q in range(4):
            z[j + q] = out[q] + b[j + q]
        j += 4
    while j < n_out:
        c0 = alpha * d[j]
        w = W + j * n_in
        for i in range(n_in):
            w[i] = w[i] + c0 * a[i]
        z[j] = _dot(x, w, n_in) + b[j]
        j += 1
