# The three matrix products of backpropagation on row-major buffers.
#
# A row-major r x c matrix is the column-major c x r matrix of its transpose,
# so each product is handed to BLAS with operands swapped and transpose flags
# chosen accordingly. Products too small to pay for a BLAS call (a 2-2-1
# network, a single sample) run in the loops below; their inner loops are
# unit-stride with independent lanes, so gcc vectorises them without
# reassociating any sum.
from scipy.linalg.cython_blas cimport dgemm, sgemm
from cython cimport floating
from libc.string cimport memcpy

# Below this many multiply-adds a product runs in the loops here: measured on
# the benchmark networks, where a BLAS call's fixed cost (about 0.1 us) is
# more than the arithmetic.
cdef enum:
    SMALL_PRODUCT = 4096


cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       floating alpha, const floating* a, int lda,
                       const floating* b, int ldb, floating beta,
                       floating* c, int ldc) noexcept nogil:
    """Column-major C = alpha op(A) op(B) + beta C."""
    if floating is double:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*>a, &lda,
              <double*>b, &ldb, &beta, c, &ldc)
    else:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*>a, &lda,
              <float*>b, &ldb, &beta, c, &ldc)


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
# element of x loaded once for four rows. bf_axpy4: g_r += c_r a for four
# rows, each element of a loaded once.
cdef extern from *:
    """
    /* c + a b, rounded once where the build has FMA (as gcc contracts the
       multiply-adds written out elsewhere here), twice otherwise. Needed for
       the sums down a loop: gcc vectorises those, where the trip count
       allows, as in-order reductions that round each product before adding
       it, so that whether a product was rounded would depend on n. */
    #if defined(__FMA__)
    #define BF_MADD_d(a, b, c) __builtin_fma(a, b, c)
    #define BF_MADD_s(a, b, c) __builtin_fmaf(a, b, c)
    #else
    #define BF_MADD_d(a, b, c) ((c) + (a) * (b))
    #define BF_MADD_s(a, b, c) ((c) + (a) * (b))
    #endif
    #if defined(_MSC_VER)
    #define BF_RESTRICT __restrict
    #else
    #define BF_RESTRICT __restrict__
    #endif
    /* bf_dot4 in two spellings. With the partial sums in an array (the
       portable one) gcc keeps them on the stack, where each multiply-add
       waits on a store and a reload; as a vector variable (gcc's and clang's
       vector extension) they stay in a register. Vectors wider than the
       machine's gcc splits badly, so a type gets the vector spelling where
       its eight sums fit one register. Same arithmetic, same order. */
    #if defined(__GNUC__) && defined(__AVX512F__)
    #define BF_VECTOR_BYTES 64
    #elif defined(__GNUC__) && defined(__AVX__)
    #define BF_VECTOR_BYTES 32
    #else
    #define BF_VECTOR_BYTES 0
    #endif
    #define BF_DOT4_VECTOR(T, S) \
    typedef T bf_v8##S __attribute__((vector_size(8 * sizeof(T)), aligned(sizeof(T)), \
                                      may_alias)); \
    static inline T bf_sum8_##S(bf_v8##S a) { \
        return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])); \
    } \
    static inline void bf_dot4_##S(const T* BF_RESTRICT x, const T* BF_RESTRICT w, \
                                   Py_ssize_t n, T* BF_RESTRICT out) { \
        T t0 = 0, t1 = 0, t2 = 0, t3 = 0; \
        Py_ssize_t i, blocks = n / 8; \
        for (i = blocks * 8; i < n; i++) { \
            t0 = BF_MADD_##S(x[i], w[i], t0); \
            t1 = BF_MADD_##S(x[i], w[n + i], t1); \
            t2 = BF_MADD_##S(x[i], w[2 * n + i], t2); \
            t3 = BF_MADD_##S(x[i], w[3 * n + i], t3); \
        } \
        bf_v8##S s0 = {t0}, s1 = {t1}, s2 = {t2}, s3 = {t3}, xv; \
        for (i = 0; i < blocks * 8; i += 8) { \
            xv = *(const bf_v8##S*)(x + i); \
            s0 = s0 + xv * *(const bf_v8##S*)(w + i); \
            s1 = s1 + xv * *(const bf_v8##S*)(w + n + i); \
            s2 = s2 + xv * *(const bf_v8##S*)(w + 2 * n + i); \
            s3 = s3 + xv * *(const bf_v8##S*)(w + 3 * n + i); \
        } \
        out[0] = bf_sum8_##S(s0); \
        out[1] = bf_sum8_##S(s1); \
        out[2] = bf_sum8_##S(s2); \
        out[3] = bf_sum8_##S(s3); \
    }
    #define BF_DOT4_ARRAY(T, S) \
    static inline void bf_dot4_##S(const T* BF_RESTRICT x, const T* BF_RESTRICT w, \
                                   Py_ssize_t n, T* BF_RESTRICT out) { \
        T s[4][8] = {{0}}; \
        Py_ssize_t i, blocks = n / 8; \
        int r, l; \
        for (i = blocks * 8; i < n; i++) \
            for (r = 0; r < 4; r++) s[r][0] = BF_MADD_##S(x[i], w[r * n + i], s[r][0]); \
        for (i = 0; i < blocks * 8; i += 8) \
            for (r = 0; r < 4; r++) \
                for (l = 0; l < 8; l++) s[r][l] = s[r][l] + x[i + l] * w[r * n + i + l]; \
        for (r = 0; r < 4; r++) \
            out[r] = ((s[r][0] + s[r][4]) + (s[r][1] + s[r][5])) \
                     + ((s[r][2] + s[r][6]) + (s[r][3] + s[r][7])); \
    }
    /* bf_update_dot4: one online SGD step's update of four rows of the first
       layer, g_r += c_r a (bf_axpy4's arithmetic), and the next sample's
       products with the updated rows, out_r = x . g_r (bf_dot4's sums, in
       its order), in one pass over the rows. */
    #define BF_UPDATE_DOT4_VECTOR(T, S) \
    static inline void bf_update_dot4_##S(T* BF_RESTRICT g, const T* BF_RESTRICT c, \
                                          const T* BF_RESTRICT a, const T* BF_RESTRICT x, \
                                          Py_ssize_t n, T* BF_RESTRICT out) { \
        const T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3]; \
        T* g1 = g + n; \
        T* g2 = g + 2 * n; \
        T* g3 = g + 3 * n; \
        T t0 = 0, t1 = 0, t2 = 0, t3 = 0; \
        Py_ssize_t i, blocks = n / 8; \
        for (i = blocks * 8; i < n; i++) { \
            g[i] = g[i] + c0 * a[i]; \
            g1[i] = g1[i] + c1 * a[i]; \
            g2[i] = g2[i] + c2 * a[i]; \
            g3[i] = g3[i] + c3 * a[i]; \
            t0 = BF_MADD_##S(x[i], g[i], t0); \
            t1 = BF_MADD_##S(x[i], g1[i], t1); \
            t2 = BF_MADD_##S(x[i], g2[i], t2); \
            t3 = BF_MADD_##S(x[i], g3[i], t3); \
        } \
        bf_v8##S s0 = {t0}, s1 = {t1}, s2 = {t2}, s3 = {t3}, av, xv, w; \
        for (i = 0; i < blocks * 8; i += 8) { \
            av = *(const bf_v8##S*)(a + i); \
            xv = *(const bf_v8##S*)(x + i); \
            w = *(bf_v8##S*)(g + i) + c0 * av; \
            *(bf_v8##S*)(g + i) = w; \
            s0 = s0 + xv * w; \
            w = *(bf_v8##S*)(g1 + i) + c1 * av; \
            *(bf_v8##S*)(g1 + i) = w; \
            s1 = s1 + xv * w; \
            w = *(bf_v8##S*)(g2 + i) + c2 * av; \
            *(bf_v8##S*)(g2 + i) = w; \
            s2 = s2 + xv * w; \
            w = *(bf_v8##S*)(g3 + i) + c3 * av; \
            *(bf_v8##S*)(g3 + i) = w; \
            s3 = s3 + xv * w; \
        } \
        out[0] = bf_sum8_##S(s0); \
        out[1] = bf_sum8_##S(s1); \
        out[2] = bf_sum8_##S(s2); \
        out[3] = bf_sum8_##S(s3); \
    }
    #define BF_UPDATE_DOT4_ARRAY(T, S) \
    static inline void bf_update_dot4_##S(T* BF_RESTRICT g, const T* BF_RESTRICT c, \
                                          const T* BF_RESTRICT a, const T* BF_RESTRICT x, \
                                          Py_ssize_t n, T* BF_RESTRICT out) { \
        T s[4][8] = {{0}}; \
        T w; \
        Py_ssize_t i, blocks = n / 8; \
        int r, l; \
        for (i = blocks * 8; i < n; i++) \
            for (r = 0; r < 4; r++) { \
                w = g[r * n + i] + c[r] * a[i]; \
                g[r * n + i] = w; \
                s[r][0] = BF_MADD_##S(x[i], w, s[r][0]); \
            } \
        for (i = 0; i < blocks * 8; i += 8) \
            for (r = 0; r < 4; r++) \
                for (l = 0; l < 8; l++) { \
                    w = g[r * n + i + l] + c[r] * a[i + l]; \
                    g[r * n + i + l] = w; \
                    s[r][l] = s[r][l] + x[i + l] * w; \
                } \
        for (r = 0; r < 4; r++) \
            out[r] = ((s[r][0] + s[r][4]) + (s[r][1] + s[r][5])) \
                     + ((s[r][2] + s[r][6]) + (s[r][3] + s[r][7])); \
    }
    /* The same with each row's eight sums in two vectors of four (sums 0-3
       and 4-7), for doubles where a register holds four (AVX2): the array
       spelling would keep them on the stack. Same arithmetic, same order. */
    #define BF_HALVES(T, S) \
    typedef T bf_v4##S __attribute__((vector_size(4 * sizeof(T)), aligned(sizeof(T)), \
                                      may_alias)); \
    static inline T bf_sum44_##S(bf_v4##S lo, bf_v4##S hi) { \
        return ((lo[0] + hi[0]) + (lo[1] + hi[1])) + ((lo[2] + hi[2]) + (lo[3] + hi[3])); \
    }
    #define BF_DOT4_HALVES(T, S) \
    static inline void bf_dot4_##S(const T* BF_RESTRICT x, const T* BF_RESTRICT w, \
                                   Py_ssize_t n, T* BF_RESTRICT out) { \
        T t[4] = {0}; \
        Py_ssize_t i, blocks = n / 8; \
        int r; \
        for (i = blocks * 8; i < n; i++) \
            for (r = 0; r < 4; r++) t[r] = BF_MADD_##S(x[i], w[r * n + i], t[r]); \
        bf_v4##S lo[4] = {{t[0]}, {t[1]}, {t[2]}, {t[3]}}, hi[4] = {{0}}, xl, xh; \
        for (i = 0; i < blocks * 8; i += 8) { \
            xl = *(const bf_v4##S*)(x + i); \
            xh = *(const bf_v4##S*)(x + i + 4); \
            for (r = 0; r < 4; r++) { \
                lo[r] = lo[r] + xl * *(const bf_v4##S*)(w + r * n + i); \
                hi[r] = hi[r] + xh * *(const bf_v4##S*)(w + r * n + i + 4); \
            } \
        } \
        for (r = 0; r < 4; r++) out[r] = bf_sum44_##S(lo[r], hi[r]); \
    }
    #define BF_UPDATE_DOT4_HALVES(T, S) \
    static inline void bf_update_dot4_##S(T* BF_RESTRICT g, const T* BF_RESTRICT c, \
                                          const T* BF_RESTRICT a, const T* BF_RESTRICT x, \
                                          Py_ssize_t n, T* BF_RESTRICT out) { \
        T t[4] = {0}, v; \
        Py_ssize_t i, blocks = n / 8; \
        int r; \
        for (i = blocks * 8; i < n; i++) \
            for (r = 0; r < 4; r++) { \
                v = g[r * n + i] + c[r] * a[i]; \
                g[r * n + i] = v; \
                t[r] = BF_MADD_##S(x[i], v, t[r]); \
            } \
        bf_v4##S lo[4] = {{t[0]}, {t[1]}, {t[2]}, {t[3]}}, hi[4] = {{0}}, al, ah, xl, xh, wv; \
        for (i = 0; i < blocks * 8; i += 8) { \
            al = *(const bf_v4##S*)(a + i); \
            ah = *(const bf_v4##S*)(a + i + 4); \
            xl = *(const bf_v4##S*)(x + i); \
            xh = *(const bf_v4##S*)(x + i + 4); \
            for (r = 0; r < 4; r++) { \
                wv = *(bf_v4##S*)(g + r * n + i) + c[r] * al; \
                *(bf_v4##S*)(g + r * n + i) = wv; \
                lo[r] = lo[r] + xl * wv; \
                wv = *(bf_v4##S*)(g + r * n + i + 4) + c[r] * ah; \
                *(bf_v4##S*)(g + r * n + i + 4) = wv; \
                hi[r] = hi[r] + xh * wv; \
            } \
        } \
        for (r = 0; r < 4; r++) out[r] = bf_sum44_##S(lo[r], hi[r]); \
    }
    #if BF_VECTOR_BYTES >= 64
    BF_DOT4_VECTOR(double, d)
    BF_UPDATE_DOT4_VECTOR(double, d)
    #elif BF_VECTOR_BYTES >= 32
    BF_HALVES(double, d)
    BF_DOT4_HALVES(double, d)
    BF_UPDATE_DOT4_HALVES(double, d)
    #else
    BF_DOT4_ARRAY(double, d)
    BF_UPDATE_DOT4_ARRAY(double, d)
    #endif
    #if BF_VECTOR_BYTES >= 32
    BF_DOT4_VECTOR(float, s)
    BF_UPDATE_DOT4_VECTOR(float, s)
    #else
    BF_DOT4_ARRAY(float, s)
    BF_UPDATE_DOT4_ARRAY(float, s)
    #endif
    #define BF_AXPY4(T, S) \
    static inline void bf_axpy4_##S(T* BF_RESTRICT g0, T* BF_RESTRICT g1, \
                                    T* BF_RESTRICT g2, T* BF_RESTRICT g3, \
                                    const T* BF_RESTRICT c, const T* BF_RESTRICT a, \
                                    Py_ssize_t n) { \
        const T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3]; \
        for (Py_ssize_t i = 0; i < n; i++) { \
            const T ai = a[i]; \
            g0[i] = g0[i] + c0 * ai; \
            g1[i] = g1[i] + c1 * ai; \
            g2[i] = g2[i] + c2 * ai; \
            g3[i] = g3[i] + c3 * ai; \
        } \
    }
    BF_AXPY4(double, d)
    BF_AXPY4(float, s)
    /* The forward and weight-gradient products of a layer with at most
       four inputs, the input count compiled in. Kept out of gcc's
       vectoriser, which would run each call through the set-up and alias
       checks of a loop across units, for layers of one or two units that
       then run its scalar tail. */
    #if defined(__GNUC__) && !defined(__clang__)
    #define BF_SCALAR_LOOPS __attribute__((optimize("no-tree-vectorize")))
    #else
    #define BF_SCALAR_LOOPS
    #endif
    /* ROWS(T, S, N) with N = n_in, compiled for each of 1 to 4. */
    #define BF_FOR_FEW_INPUTS(ROWS, T, S) \
        switch (n_in) { \
        case 1: ROWS(T, S, 1) break; \
        case 2: ROWS(T, S, 2) break; \
        case 3: ROWS(T, S, 3) break; \
        default: ROWS(T, S, 4) \
        }
    /* Forward: _dot's sum (one chain of multiply-adds from zero) for each
       row and unit, plus the bias. */
    #define BF_ABT_FEW_ROWS(T, S, N) \
        for (Py_ssize_t r = 0; r < rows; r++) \
            for (Py_ssize_t j = 0; j < n_out; j++) { \
                T s = 0; \
                for (Py_ssize_t i = 0; i < (N); i++) \
                    s = BF_MADD_##S(A[r * (N) + i], W[j * (N) + i], s); \
                Z[r * n_out + j] = s + b[j]; \
            }
    #define BF_ABT_FEW(T, S) \
    BF_SCALAR_LOOPS static void bf_abt_few_##S(const T* BF_RESTRICT A, \
                                               const T* BF_RESTRICT W, \
                                               const T* BF_RESTRICT b, T* BF_RESTRICT Z, \
                                               Py_ssize_t rows, Py_ssize_t n_out, \
                                               Py_ssize_t n_in) { \
        BF_FOR_FEW_INPUTS(BF_ABT_FEW_ROWS, T, S) \
    }
    /* G (n_out x n_in) += alpha D.T @ A for at most four inputs, in
       matmul_atb_acc's order: row after row, one multiply-add into each
       element of G; beta 0 clears G first. */
    #define BF_ATB_FEW_ROWS(T, S, N) \
        for (Py_ssize_t j = 0; j < n_out; j++) \
            for (Py_ssize_t r = 0; r < rows; r++) { \
                const T c = alpha * D[r * n_out + j]; \
                for (Py_ssize_t i = 0; i < (N); i++) \
                    G[j * (N) + i] = BF_MADD_##S(c, A[r * (N) + i], G[j * (N) + i]); \
            }
    #define BF_ATB_FEW(T, S) \
    BF_SCALAR_LOOPS static void bf_atb_few_##S(T alpha, const T* BF_RESTRICT D, \
                                               const T* BF_RESTRICT A, T beta, \
                                               T* BF_RESTRICT G, Py_ssize_t rows, \
                                               Py_ssize_t n_out, Py_ssize_t n_in) { \
        if (beta == 0) \
            for (Py_ssize_t i = 0; i < n_out * n_in; i++) G[i] = 0; \
        BF_FOR_FEW_INPUTS(BF_ATB_FEW_ROWS, T, S) \
    }
    BF_ABT_FEW(double, d)
    BF_ABT_FEW(float, s)
    BF_ATB_FEW(double, d)
    BF_ATB_FEW(float, s)
    """
    void bf_dot4_d(const double* x, const double* w, Py_ssize_t n, double* out) nogil
    void bf_dot4_s(const float* x, const float* w, Py_ssize_t n, float* out) nogil
    void bf_update_dot4_d(double* g, const double* c, const double* a, const double* x,
                          Py_ssize_t n, double* out) nogil
    void bf_update_dot4_s(float* g, const float* c, const float* a, const float* x,
                          Py_ssize_t n, float* out) nogil
    void bf_axpy4_d(double* g0, double* g1, double* g2, double* g3, const double* c,
                    const double* a, Py_ssize_t n) nogil
    void bf_axpy4_s(float* g0, float* g1, float* g2, float* g3, const float* c,
                    const float* a, Py_ssize_t n) nogil
    void bf_abt_few_d(const double* A, const double* W, const double* b, double* Z,
                      Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in) nogil
    void bf_abt_few_s(const float* A, const float* W, const float* b, float* Z,
                      Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in) nogil
    void bf_atb_few_d(double alpha, const double* D, const double* A, double beta,
                      double* G, Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in) nogil
    void bf_atb_few_s(float alpha, const float* D, const float* A, float beta,
                      float* G, Py_ssize_t rows, Py_ssize_t n_out, Py_ssize_t n_in) nogil
    double BF_MADD_d(double a, double b, double c) nogil
    float BF_MADD_s(float a, float b, float c) nogil


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


cdef inline void matmul_abt_bias(const floating* A, const floating* W,
                                 const floating* b, floating* Z,
                                 Py_ssize_t rows, Py_ssize_t n_out,
                                 Py_ssize_t n_in) noexcept nogil:
    """Z (rows x n_out) = A (rows x n_in) @ W.T + b, W being n_out x n_in."""
    cdef Py_ssize_t r
    if rows * n_out * n_in > SMALL_PRODUCT:
        for r in range(rows):
            memcpy(Z + r * n_out, b, n_out * sizeof(floating))
        _gemm(c'T', c'N', <int>n_out, <int>rows, <int>n_in, <floating>1.0,
              W, <int>n_in, A, <int>n_in, <floating>1.0, Z, <int>n_out)
    elif n_in <= 4:
        if floating is double:
            bf_abt_few_d(A, W, b, Z, rows, n_out, n_in)
        else:
            bf_abt_few_s(A, W, b, Z, rows, n_out, n_in)
    else:
        _abt_small(A, W, b, Z, rows, n_out, n_in)


cdef inline void matmul_ab(const floating* D, const floating* W,
                           const floating* c, floating* P, Py_ssize_t rows,
                           Py_ssize_t n_out, Py_ssize_t n_in) noexcept nogil:
    """P (rows x n_in) = D (rows x n_out) @ W (+ c), W being n_out x n_in.

    c, a row added to every row of P, or NULL. With A for D and the
    transposed weights for W this is the forward product in its plain (NN)
    form, which BLAS's small-matrix kernels run much faster than A @ W.T.
    """
    cdef Py_ssize_t r, i
    if rows * n_out * n_in > SMALL_PRODUCT:
        if c != NULL:
            for r in range(rows):
                memcpy(P + r * n_in, c, n_in * sizeof(floating))
        _gemm(c'N', c'N', <int>n_in, <int>rows, <int>n_out, <floating>1.0,
              W, <int>n_in, D, <int>n_out, <floating>(0.0 if c == NULL else 1.0),
              P, <int>n_in)
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


cdef inline void matmul_atb_acc(floating alpha, const floating* D,
                                const floating* A, floating beta, floating* G,
                                Py_ssize_t rows, Py_ssize_t n_out,
                                Py_ssize_t n_in) noexcept nogil:
    """G (n_out x n_in) = alpha D.T @ A + beta G, beta being 0 or 1.

    With G the weights, beta = 1 and alpha = -rate / batch this is the SGD
    update folded into the weight-gradient product.
    """
    if rows * n_out * n_in > SMALL_PRODUCT:
        _gemm(c'N', c'T', <int>n_in, <int>n_out, <int>rows, alpha,
              A, <int>n_in, D, <int>n_out, beta, G, <int>n_in)
    elif n_in <= 4:
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
