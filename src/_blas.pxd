# The three matrix products of backpropagation on row-major buffers.
#
# Products too small to pay for a BLAS call (a 2-2-1 network, a single
# sample) run in the loops below; their inner loops are unit-stride with
# independent lanes, so gcc vectorises them without reassociating any sum.
# Larger ones run in bf_gemm (below), except in the AVX-512 build, which
# hands them to BLAS: a row-major r x c matrix is the column-major c x r
# matrix of its transpose, so operands go swapped and transpose flags are
# chosen accordingly.
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
    /* The products past SMALL_PRODUCT, in the builds where OpenBLAS runs
       its Haswell (or older) kernels. Those give float32 results that depend
       on how many threads split a product (their edge paths round
       differently and a split moves the edges), and for a few ten thousand
       multiply-adds they spend as long packing operands as multiplying.

       bf_gemm: C (M x N) = C0 + sum over k of (alpha A(r, k)) B(k, j), with
       A(r, k) = A[r rsa + k csa], B(k, j) = B[k rsb + j csb], C row-major
       (ldc), C0 = C where beta is set, else -0 (the identity of addition:
       the first term comes out as a plain product); then + bias[j] where
       bias is given. Every element is one chain of multiply-adds, k in
       order: the result does not depend on the blocking, on where threads
       split C, or on how many there are, and it is _ab_small's (A = D) and
       _atb_small's (A(r, k) = D[k, r]) bit for bit, but for the sign of an
       exact zero (_atb_small starts from +0).

       The loops of a cache-blocked product: BF_KC values of k at a time,
       B copied into panels of two vectors' width (unless its rows are
       contiguous and the chunk is small), BF_MC rows of A at a time, read
       where they lie (copied, times alpha, where alpha is not 1), and each
       BF_MR x panel block of C keeping its sums in twelve registers. */
    #define BF_MR 6
    #define BF_KC 256
    #define BF_MC 144
    #define BF_GEMM_STACK 49152
    #define BF_UNPACKED_B 4096
    #define BF_PANEL_A_COLUMNS 256
    /* Products from this many multiply-adds are split between threads. */
    #define BF_THREAD_PRODUCT (1 << 20)
    /* bf_tile2: a block of R rows (BF_MR or 4, a constant where it is
       inlined) by two vectors of columns; bf_tile1: one vector. Row q of A
       at a + q ars, its k-th value acs further on; B's rows bs apart. Rows
       from mr on repeat row 0 (of A, and of C where C is loaded) and are not
       stored. */
    #if defined(__GNUC__)
    /* c + a b on vectors, fused where the build has FMA, like BF_MADD:
       gcc contracts the expression when it optimises (and allocates
       registers better for it than for the intrinsic); the checked build's
       -O0 contracts nothing and gets the intrinsic. bf_splat: a vector of
       x, signed zeros kept (x - 0 is x). */
    #if defined(__FMA__) && !defined(__OPTIMIZE__)
    #include <immintrin.h>
    #define BF_VMADD_s(a, b, c) _mm256_fmadd_ps(a, b, c)
    #define BF_VMADD_d(a, b, c) _mm256_fmadd_pd(a, b, c)
    #else
    #define BF_VMADD_s(a, b, c) ((c) + (a) * (b))
    #define BF_VMADD_d(a, b, c) ((c) + (a) * (b))
    #endif
    #define bf_splat(x, V) ((x) - (V){0})
    #define BF_PREFETCH(p) __builtin_prefetch((p), 1)
    /* A tile's types (V in registers, U in memory), its vector length, -0,
       and the six rows of C and of A it works on; rows from mr on repeat
       row 0. */
    #define BF_TILE_START(T, S) \
        typedef bf_rv##S V; \
        typedef bf_gv##S U; \
        enum { L = 32 / sizeof(T) }; \
        const V nz = -(V){0}; \
        T* c0 = C; \
        T* c1 = mr > 1 ? C + ldc : C; \
        T* c2 = mr > 2 ? C + 2 * ldc : C; \
        T* c3 = mr > 3 ? C + 3 * ldc : C; \
        T* c4 = mr > 4 ? C + 4 * ldc : C; \
        T* c5 = mr > 5 ? C + 5 * ldc : C; \
        const T* a0 = a; \
        const T* a1 = mr > 1 ? a + ars : a; \
        const T* a2 = mr > 2 ? a + 2 * ars : a; \
        const T* a3 = mr > 3 ? a + 3 * ars : a; \
        const T* a4 = mr > 4 ? a + 4 * ars : a; \
        const T* a5 = mr > 5 ? a + 5 * ars : a;
    /* One k of a tile: the six rows' values of A times B's vectors.
       Where A's rows lie side by side (a copy), one pointer reaches all six:
       the loop then issues a fifth fewer instructions, which is what counts
       on a core shared with another thread (1.1-1.2x, 512 x 1024 x 2048,
       one thread). */
    #define BF_UNROLL_4 _Pragma("GCC unroll 4")
    #define BF_INLINE __attribute__((always_inline))
    #define BF_TILE2_STEP(S, x0, x1, x2, x3, x4, x5) { \
            const V b0 = *(const U*)b, b1 = *(const U*)(b + L); \
            V x; \
            x = bf_splat(x0, V); s00 = BF_VMADD_##S(x, b0, s00); s01 = BF_VMADD_##S(x, b1, s01); \
            x = bf_splat(x1, V); s10 = BF_VMADD_##S(x, b0, s10); s11 = BF_VMADD_##S(x, b1, s11); \
            x = bf_splat(x2, V); s20 = BF_VMADD_##S(x, b0, s20); s21 = BF_VMADD_##S(x, b1, s21); \
            x = bf_splat(x3, V); s30 = BF_VMADD_##S(x, b0, s30); s31 = BF_VMADD_##S(x, b1, s31); \
            if (R > 4) { \
                x = bf_splat(x4, V); s40 = BF_VMADD_##S(x, b0, s40); s41 = BF_VMADD_##S(x, b1, s41); \
                x = bf_splat(x5, V); s50 = BF_VMADD_##S(x, b0, s50); s51 = BF_VMADD_##S(x, b1, s51); \
            } \
        }
    #define BF_TILE1_STEP(S, x0, x1, x2, x3, x4, x5) { \
            const V b0 = *(const U*)b; \
            s0 = BF_VMADD_##S(bf_splat(x0, V), b0, s0); \
            s1 = BF_VMADD_##S(bf_splat(x1, V), b0, s1); \
            s2 = BF_VMADD_##S(bf_splat(x2, V), b0, s2); \
            s3 = BF_VMADD_##S(bf_splat(x3, V), b0, s3); \
            if (R > 4) { \
                s4 = BF_VMADD_##S(bf_splat(x4, V), b0, s4); \
                s5 = BF_VMADD_##S(bf_splat(x5, V), b0, s5); \
            } \
        }
    /* The k loop of a tile: one pointer for rows side by side, else one per
       row (those past mr repeating row 0). */
    #define BF_TILE_LOOP(STEP, S) \
        if (ars == 1 && mr == R) { \
            BF_UNROLL_4 \
            for (Py_ssize_t k = 0; k < K; k++, a += acs, b += bs) \
                STEP(S, a[0], a[1], a[2], a[3], a[4], a[5]) \
        } else { \
            BF_UNROLL_4 \
            for (Py_ssize_t k = 0, ak = 0; k < K; k++, ak += acs, b += bs) \
                STEP(S, a0[ak], a1[ak], a2[ak], a3[ak], a4[ak], a5[ak]) \
        }
    #define BF_TILE(T, S) \
    typedef T bf_gv##S __attribute__((vector_size(32), aligned(sizeof(T)), may_alias)); \
    typedef T bf_rv##S __attribute__((vector_size(32))); \
    static inline BF_INLINE void bf_tile2_##S(const int R, Py_ssize_t mr, Py_ssize_t K, \
                                              const T* BF_RESTRICT a, Py_ssize_t ars, \
                                              Py_ssize_t acs, const T* BF_RESTRICT b, \
                                              Py_ssize_t bs, T* BF_RESTRICT C, \
                                              Py_ssize_t ldc, int load, \
                                              const T* BF_RESTRICT bias) { \
        BF_TILE_START(T, S) \
        V s00 = nz, s01 = nz, s10 = nz, s11 = nz, s20 = nz, s21 = nz; \
        V s30 = nz, s31 = nz, s40 = nz, s41 = nz, s50 = nz, s51 = nz; \
        if (load) { \
            s00 = *(U*)c0; s01 = *(U*)(c0 + L); s10 = *(U*)c1; s11 = *(U*)(c1 + L); \
            s20 = *(U*)c2; s21 = *(U*)(c2 + L); s30 = *(U*)c3; s31 = *(U*)(c3 + L); \
            if (R > 4) { \
                s40 = *(U*)c4; s41 = *(U*)(c4 + L); s50 = *(U*)c5; s51 = *(U*)(c5 + L); \
            } \
        } \
        BF_TILE_LOOP(BF_TILE2_STEP, S) \
        if (bias) { \
            const V h0 = *(const U*)bias, h1 = *(const U*)(bias + L); \
            s00 = s00 + h0; s01 = s01 + h1; s10 = s10 + h0; s11 = s11 + h1; \
            s20 = s20 + h0; s21 = s21 + h1; s30 = s30 + h0; s31 = s31 + h1; \
            s40 = s40 + h0; s41 = s41 + h1; s50 = s50 + h0; s51 = s51 + h1; \
        } \
        *(U*)c0 = s00; *(U*)(c0 + L) = s01; \
        if (mr > 1) { *(U*)c1 = s10; *(U*)(c1 + L) = s11; } \
        if (mr > 2) { *(U*)c2 = s20; *(U*)(c2 + L) = s21; } \
        if (mr > 3) { *(U*)c3 = s30; *(U*)(c3 + L) = s31; } \
        if (R > 4 && mr > 4) { *(U*)c4 = s40; *(U*)(c4 + L) = s41; } \
        if (R > 4 && mr > 5) { *(U*)c5 = s50; *(U*)(c5 + L) = s51; } \
    } \
    static inline BF_INLINE void bf_tile1_##S(const int R, Py_ssize_t mr, Py_ssize_t K, \
                                              const T* BF_RESTRICT a, Py_ssize_t ars, \
                                              Py_ssize_t acs, const T* BF_RESTRICT b, \
                                              Py_ssize_t bs, T* BF_RESTRICT C, \
                                              Py_ssize_t ldc, int load, \
                                              const T* BF_RESTRICT bias) { \
        BF_TILE_START(T, S) \
        V s0 = nz, s1 = nz, s2 = nz, s3 = nz, s4 = nz, s5 = nz; \
        if (load) { \
            s0 = *(U*)c0; s1 = *(U*)c1; s2 = *(U*)c2; \
            s3 = *(U*)c3; \
            if (R > 4) { s4 = *(U*)c4; s5 = *(U*)c5; } \
        } \
        BF_TILE_LOOP(BF_TILE1_STEP, S) \
        if (bias) { \
            const V h = *(const U*)bias; \
            s0 = s0 + h; s1 = s1 + h; s2 = s2 + h; s3 = s3 + h; s4 = s4 + h; s5 = s5 + h; \
        } \
        *(U*)c0 = s0; \
        if (mr > 1) *(U*)c1 = s1; \
        if (mr > 2) *(U*)c2 = s2; \
        if (mr > 3) *(U*)c3 = s3; \
        if (R > 4 && mr > 4) *(U*)c4 = s4; \
        if (R > 4 && mr > 5) *(U*)c5 = s5; \
    }
    #else
    #define BF_TILE_COLUMNS(T, S, NAME, W) \
    static inline void NAME(const int R, Py_ssize_t mr, Py_ssize_t K, const T* BF_RESTRICT a, \
                            Py_ssize_t ars, Py_ssize_t acs, const T* BF_RESTRICT b, \
                            Py_ssize_t bs, T* BF_RESTRICT C, \
                            Py_ssize_t ldc, int load, const T* BF_RESTRICT bias) { \
        (void)R; \
        bf_columns_##S(mr, (W), K, a, ars, acs, b, bs, C, ldc, load, bias); \
    }
    #define BF_TILE(T, S) \
    BF_TILE_COLUMNS(T, S, bf_tile2_##S, 64 / sizeof(T)) \
    BF_TILE_COLUMNS(T, S, bf_tile1_##S, 32 / sizeof(T))
    #define BF_PREFETCH(p)
    #endif
    /* Blocks of four rows or fewer (the last of a product whose rows are
       not a multiple of six: W2's 10 and 32) in a tile of four rows, whose
       loop issues two thirds of the six-row one's instructions. */
    #define BF_TILE_ROWS(tile, mr, ...) \
        do { \
            if ((mr) <= 4) \
                tile(4, (mr), __VA_ARGS__); \
            else \
                tile(BF_MR, (mr), __VA_ARGS__); \
        } while (0)
    #define BF_GEMM(T, S) \
    /* nr columns of mr rows of C one at a time, each a chain of BF_MADD. */ \
    static inline void bf_columns_##S(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t K, \
                                      const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs, \
                                      const T* BF_RESTRICT b, Py_ssize_t bs, \
                                      T* BF_RESTRICT C, Py_ssize_t ldc, int load, \
                                      const T* BF_RESTRICT bias) { \
        for (Py_ssize_t q = 0; q < mr; q++) \
            for (Py_ssize_t l = 0; l < nr; l++) { \
                T s = load ? C[q * ldc + l] : -(T)0; \
                for (Py_ssize_t k = 0; k < K; k++) \
                    s = BF_MADD_##S(a[q * ars + k * acs], b[k * bs + l], s); \
                C[q * ldc + l] = bias ? s + bias[l] : s; \
            } \
    } \
    BF_TILE(T, S) \
    /* The last columns, fewer than a vector: in a packed panel through a
       copy (the panel's zeros fill the vector), else one at a time. */ \
    static void bf_edge_##S(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t K, \
                            const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs, \
                            const T* BF_RESTRICT b, Py_ssize_t bs, \
                            T* BF_RESTRICT C, Py_ssize_t ldc, int load, \
                            const T* BF_RESTRICT bias) { \
        enum { L = 32 / sizeof(T) }; \
        T t[BF_MR * L]; \
        if (bs != 2 * L) { \
            bf_columns_##S(mr, nr, K, a, ars, acs, b, bs, C, ldc, load, bias); \
            return; \
        } \
        if (load) \
            for (Py_ssize_t q = 0; q < mr; q++) \
                for (Py_ssize_t l = 0; l < nr; l++) \
                    t[q * L + l] = C[q * ldc + l]; \
        BF_TILE_ROWS(bf_tile1_##S, mr, K, a, ars, acs, b, bs, t, L, load, NULL); \
        for (Py_ssize_t q = 0; q < mr; q++) \
            for (Py_ssize_t l = 0; l < nr; l++) \
                C[q * ldc + l] = bias ? t[q * L + l] + bias[l] : t[q * L + l]; \
    } \
    /* A block of C: a panel of mr rows of A by nr columns of B, whose rows
       are bs apart. */ \
    static inline void bf_block_##S(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t K, \
                                    const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs, \
                                    const T* BF_RESTRICT b, Py_ssize_t bs, \
                                    T* BF_RESTRICT C, Py_ssize_t ldc, \
                                    int load, const T* BF_RESTRICT bias) { \
        enum { L = 32 / sizeof(T) }; \
        if (nr == 2 * L) { \
            BF_TILE_ROWS(bf_tile2_##S, mr, K, a, ars, acs, b, bs, C, ldc, load, bias); \
            return; \
        } \
        if (nr >= L) { \
            BF_TILE_ROWS(bf_tile1_##S, mr, K, a, ars, acs, b, bs, C, ldc, load, bias); \
            b += L; \
            C += L; \
            nr -= L; \
            if (bias) \
                bias += L; \
        } \
        if (nr > 0) \
            bf_edge_##S(mr, nr, K, a, ars, acs, b, bs, C, ldc, load, bias); \
    } \
    /* alpha A, rows 0..mc-1 and k 0..kc-1, in panels of BF_MR rows,
       k-major within a panel (zeros past mc): the weight-gradient products'
       operand, rounded once times alpha as _atb_small rounds it (its rows
       are contiguous, rsa 1), and a large product's rows, which lie far
       apart. */ \
    static void bf_panel_a_##S(Py_ssize_t mc, Py_ssize_t kc, T alpha, \
                               const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa, \
                               T* BF_RESTRICT Ap) { \
        for (Py_ssize_t p = 0; p < mc; p += BF_MR, Ap += BF_MR * kc) { \
            if (p + BF_MR <= mc) { \
                for (Py_ssize_t k = 0; k < kc; k++) \
                    for (Py_ssize_t q = 0; q < BF_MR; q++) \
                        Ap[k * BF_MR + q] = alpha * A[(p + q) * rsa + k * csa]; \
            } else { \
                for (Py_ssize_t k = 0; k < kc; k++) \
                    for (Py_ssize_t q = 0; q < BF_MR; q++) \
                        Ap[k * BF_MR + q] = p + q < mc ? alpha * A[(p + q) * rsa + k * csa] \
                                                       : 0; \
            } \
        } \
    } \
    /* alpha A, rows 0..mc-1 and k 0..kc-1, at As[k mc + r]: the copy for
       smaller products, which reads the weight-gradient operand (rsa 1)
       along its rows. */ \
    static void bf_scale_a_##S(Py_ssize_t mc, Py_ssize_t kc, T alpha, \
                               const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa, \
                               T* BF_RESTRICT As) { \
        for (Py_ssize_t k = 0; k < kc; k++) \
            for (Py_ssize_t r = 0; r < mc; r++) \
                As[k * mc + r] = alpha * A[r * rsa + k * csa]; \
    } \
    /* Columns of B in panels of NR (k-major within a panel), read along
       whichever of B's two directions is contiguous. */ \
    static void bf_pack_b_##S(Py_ssize_t nc, Py_ssize_t kc, const T* BF_RESTRICT B, \
                              Py_ssize_t rsb, Py_ssize_t csb, T* BF_RESTRICT Bp) { \
        enum { NR = 64 / sizeof(T) }; \
        for (Py_ssize_t j = 0; j < nc; j += NR, Bp += NR * kc) { \
            const Py_ssize_t nr = nc - j < NR ? nc - j : NR; \
            if (csb == 1 && nr == NR) { \
                for (Py_ssize_t k = 0; k < kc; k++) \
                    for (Py_ssize_t l = 0; l < NR; l++) \
                        Bp[k * NR + l] = B[k * rsb + j + l]; \
            } else if (csb == 1) { \
                for (Py_ssize_t k = 0; k < kc; k++) \
                    for (Py_ssize_t l = 0; l < NR; l++) \
                        Bp[k * NR + l] = l < nr ? B[k * rsb + j + l] : 0; \
            } else { \
                /* The squares the registers transpose, then what is left. */ \
                const Py_ssize_t k0 = rsb == 1 && nr == NR ? bf_tpanel_##S(kc, B + j * csb, csb, Bp) \
                                                           : 0; \
                for (Py_ssize_t l = 0; l < NR; l++) \
                    for (Py_ssize_t k = k0; k < kc; k++) \
                        Bp[k * NR + l] = l < nr ? B[k * rsb + (j + l) * csb] : 0; \
            } \
        } \
    } \
    /* The rows of the block of C after (p, j): a chunk of k after the first
       starts each block by loading it, which would otherwise wait on the
       last level of cache or on memory (1.03-1.06x, W5's products). */ \
    static inline void bf_fetch_next_##S(Py_ssize_t p, Py_ssize_t mc, Py_ssize_t j, \
                                         Py_ssize_t N, Py_ssize_t i0, const T* c, \
                                         const T* C, Py_ssize_t ldc) { \
        enum { NR = 64 / sizeof(T) }; \
        const T* next = p + BF_MR < mc ? c + BF_MR * ldc \
                        : j + NR < N ? C + i0 * ldc + j + NR : NULL; \
        const Py_ssize_t rows = p + BF_MR < mc ? mc - p - BF_MR : mc; \
        for (Py_ssize_t q = 0; next != NULL && q < BF_MR && q < rows; q++) { \
            BF_PREFETCH(next + q * ldc); \
            BF_PREFETCH(next + q * ldc + NR - 1); \
        } \
    } \
    /* Rows i0..i0+mc-1 of C for k0..k0+kc-1, A's part copied to Ap where
       panel_a or scale_a; Bp the packed chunk of B where pack_b. */ \
    static inline void bf_rows_##S(Py_ssize_t i0, Py_ssize_t mc, Py_ssize_t k0, \
                                   Py_ssize_t kc, Py_ssize_t N, T alpha, \
                                   const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa, \
                                   const T* BF_RESTRICT B, Py_ssize_t rsb, \
                                   const T* BF_RESTRICT Bp, int pack_b, int panel_a, \
                                   int scale_a, int load, const T* BF_RESTRICT bias, \
                                   T* BF_RESTRICT C, Py_ssize_t ldc, T* BF_RESTRICT Ap) { \
        enum { NR = 64 / sizeof(T) }; \
        if (panel_a) \
            bf_panel_a_##S(mc, kc, alpha, A + i0 * rsa + k0 * csa, rsa, csa, Ap); \
        else if (scale_a) \
            bf_scale_a_##S(mc, kc, alpha, A + i0 * rsa + k0 * csa, rsa, csa, Ap); \
        for (Py_ssize_t j = 0; j < N; j += NR) { \
            const Py_ssize_t nr = N - j < NR ? N - j : NR; \
            const T* hb = bias ? bias + j : NULL; \
            for (Py_ssize_t p = 0; p < mc; p += BF_MR) { \
                const Py_ssize_t mr = mc - p < BF_MR ? mc - p : BF_MR; \
                T* c = C + (i0 + p) * ldc + j; \
                const T* a = panel_a ? Ap + p * kc : scale_a ? Ap + p \
                             : A + (i0 + p) * rsa + k0 * csa; \
                const T* b = pack_b ? Bp + j * kc : B + k0 * rsb + j; \
                if (load) \
                    bf_fetch_next_##S(p, mc, j, N, i0, c, C, ldc); \
                bf_block_##S(mr, nr, kc, a, panel_a || scale_a ? 1 : rsa, \
                             panel_a ? BF_MR : scale_a ? mc : csa, \
                             b, pack_b ? NR : rsb, c, ldc, load, hb); \
            } \
        } \
    } \
    /* The product in blocks of mcs rows, on `threads` threads (OpenMP) \
       where there are more than one: each chunk of B is packed by all of \
       them into shared panels, then the blocks of rows go to whichever \
       thread is free (a core the machine slows takes fewer). buf: the \
       panels of B (kcs x N rounded up to panels), then mcs x kcs a thread. */ \
    static void bf_gemm_run_##S(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, T alpha, \
                                const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa, \
                                const T* BF_RESTRICT B, Py_ssize_t rsb, Py_ssize_t csb, \
                                int beta, T* BF_RESTRICT C, Py_ssize_t ldc, \
                                const T* BF_RESTRICT bias, Py_ssize_t mcs, int threads, \
                                T* BF_RESTRICT buf) { \
        enum { NR = 64 / sizeof(T) }; \
        const Py_ssize_t nk = (K + BF_KC - 1) / BF_KC, kcs = (K + nk - 1) / nk; \
        const Py_ssize_t panels = (N + NR - 1) / NR, blocks = (M + mcs - 1) / mcs; \
        T* Bp = buf; \
        /* B is read where it lies when its rows are contiguous and a chunk \
           of them fits the first-level cache. */ \
        const int pack_b = csb != 1 || kcs * N > BF_UNPACKED_B; \
        /* A is copied into panels where C is wide enough to pay for it, \
           else read where it lies, or from a copy times alpha. */ \
        const int panel_a = N >= BF_PANEL_A_COLUMNS; \
        const int scale_a = !panel_a && alpha != 1; \
        if (threads <= 1) { \
            for (Py_ssize_t k0 = 0; k0 < K; k0 += kcs) { \
                const Py_ssize_t kc = K - k0 < kcs ? K - k0 : kcs; \
                if (pack_b) \
                    bf_pack_b_##S(N, kc, B + k0 * rsb, rsb, csb, Bp); \
                /* A chain cut at k0 goes on from the sums stored in C. */ \
                for (Py_ssize_t i0 = 0; i0 < M; i0 += mcs) \
                    bf_rows_##S(i0, M - i0 < mcs ? M - i0 : mcs, k0, kc, N, alpha, A, rsa, \
                                csa, B, rsb, Bp, pack_b, panel_a, scale_a, beta || k0 > 0, \
                                k0 + kc == K ? bias : NULL, C, ldc, buf + panels * NR * kcs); \
            } \
            return; \
        } \
        BF_PRAGMA_OMP(parallel num_threads(threads)) \
        { \
            T* Ap = buf + panels * NR * kcs + bf_thread_num() * mcs * kcs; \
            for (Py_ssize_t k0 = 0; k0 < K; k0 += kcs) { \
                const Py_ssize_t kc = K - k0 < kcs ? K - k0 : kcs; \
                if (pack_b) { \
                    BF_PRAGMA_OMP(for schedule(static)) \
                    for (Py_ssize_t q = 0; q < panels; q++) \
                        bf_pack_b_##S(N - q * NR < NR ? N - q * NR : NR, kc, \
                                      B + k0 * rsb + q * NR * csb, rsb, csb, \
                                      Bp + q * NR * kc); \
                } \
                BF_PRAGMA_OMP(for schedule(dynamic, 1)) \
                for (Py_ssize_t q = 0; q < blocks; q++) \
                    bf_rows_##S(q * mcs, M - q * mcs < mcs ? M - q * mcs : mcs, k0, kc, N, \
                                alpha, A, rsa, csa, B, rsb, Bp, pack_b, panel_a, scale_a, \
                                beta || k0 > 0, k0 + kc == K ? bias : NULL, C, ldc, Ap); \
            } \
        } \
    } \
    /* Rows a block: up to BF_MC, as even as that allows; with threads, \
       blocks enough for four a thread. */ \
    static Py_ssize_t bf_gemm_rows_##S(Py_ssize_t M, int threads) { \
        const Py_ssize_t nm = (M + BF_MC - 1) / BF_MC; \
        Py_ssize_t mcs = ((M + nm - 1) / nm + BF_MR - 1) / BF_MR * BF_MR; \
        if (threads > 1) { \
            const Py_ssize_t few = ((M + 4 * threads - 1) / (4 * threads) + BF_MR - 1) \
                                   / BF_MR * BF_MR; \
            if (few < mcs) \
                mcs = few; \
        } \
        return mcs; \
    } \
    static Py_ssize_t bf_gemm_space_##S(Py_ssize_t N, Py_ssize_t K, Py_ssize_t mcs, \
                                        int threads) { \
        enum { NR = 64 / sizeof(T) }; \
        const Py_ssize_t nk = (K + BF_KC - 1) / BF_KC, kcs = (K + nk - 1) / nk; \
        return kcs * ((N + NR - 1) / NR * NR + threads * mcs); \
    } \
    /* Returns -1, before C is touched, where a buffer could not be
       allocated; else 0. Small products keep their buffer on the stack,
       large ones take it from bf_buffer. */ \
    static int bf_gemm_##S(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, T alpha, \
                           const T* A, Py_ssize_t rsa, Py_ssize_t csa, \
                           const T* B, Py_ssize_t rsb, Py_ssize_t csb, int beta, \
                           T* C, Py_ssize_t ldc, const T* bias) { \
        enum { NR = 64 / sizeof(T) }; \
        T stack[BF_GEMM_STACK / sizeof(T)] __attribute__((aligned(64))); \
        T* buf = stack; \
        size_t held = 0; \
        const int threads = bf_gemm_threads((double)M * N * K); \
        /* C narrower than a panel (a forward product into a few units) is \
           done as its transpose, C.T = B.T A.T, whose rows fill the panels \
           (products commute exactly: the same chains), into buf. */ \
        const int swap = threads == 1 && N < NR && M >= NR && alpha == 1 && !beta; \
        const Py_ssize_t mcs = bf_gemm_rows_##S(swap ? N : M, threads); \
        const Py_ssize_t space = swap ? bf_gemm_space_##S(M, K, mcs, 1) + M * N \
                                      : bf_gemm_space_##S(N, K, mcs, threads); \
        if (M <= 0 || N <= 0) \
            return 0; \
        if (space > (Py_ssize_t)(BF_GEMM_STACK / sizeof(T))) { \
            buf = (T*)bf_buffer(space * sizeof(T), &held); \
            if (buf == NULL) \
                return -1; \
        } \
        if (swap) { \
            bf_gemm_run_##S(N, M, K, 1, B, csb, rsb, A, csa, rsa, 0, buf, M, NULL, mcs, 1, \
                            buf + M * N); \
            for (Py_ssize_t r = 0; r < M; r++) \
                for (Py_ssize_t j = 0; j < N; j++) \
                    C[r * ldc + j] = bias ? buf[j * M + r] + bias[j] : buf[j * M + r]; \
        } else { \
            bf_gemm_run_##S(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias, \
                            mcs, threads, buf); \
        } \
        if (buf != stack) \
            bf_buffer_back(buf, held); \
        return 0; \
    }
    /* The buffers of large products, kept between calls in a few slots
       shared by all threads: training allocates none after its first steps
       (a fresh block would fault on every page it touches). bf_buffer
       returns at least bytes (its size in *held), or NULL; bf_buffer_back
       keeps the larger blocks and frees the rest. */
    #define BF_SLOTS 4
    static void* bf_slot[BF_SLOTS];
    static size_t bf_slot_bytes[BF_SLOTS];
    #if defined(__GNUC__)
    static int bf_slot_lock;
    #define BF_LOCK() while (__atomic_exchange_n(&bf_slot_lock, 1, __ATOMIC_ACQUIRE)) {}
    #define BF_UNLOCK() __atomic_store_n(&bf_slot_lock, 0, __ATOMIC_RELEASE)
    #define BF_SLOTS_USED BF_SLOTS
    #else
    #define BF_LOCK()
    #define BF_UNLOCK()
    #define BF_SLOTS_USED 0
    #endif
    static void* bf_buffer(size_t bytes, size_t* held) {
        void* p = NULL;
        BF_LOCK();
        for (int i = 0; i < BF_SLOTS_USED; i++)
            if (bf_slot[i] != NULL && bf_slot_bytes[i] >= bytes) {
                p = bf_slot[i];
                *held = bf_slot_bytes[i];
                bf_slot[i] = NULL;
                break;
            }
        BF_UNLOCK();
        if (p == NULL) {
            p = malloc(bytes);
            *held = bytes;
        }
        return p;
    }
    static void bf_buffer_back(void* p, size_t held) {
        BF_LOCK();
        for (int i = 0; i < BF_SLOTS_USED && p != NULL; i++)
            if (bf_slot[i] == NULL || bf_slot_bytes[i] < held) {
                void* out = bf_slot[i];
                size_t out_bytes = bf_slot_bytes[i];
                bf_slot[i] = p;
                bf_slot_bytes[i] = held;
                p = out;
                held = out_bytes;
            }
        BF_UNLOCK();
        free(p);
    }
    #if defined(_OPENMP)
    #include <omp.h>
    #define BF_PRAGMA(x) _Pragma(#x)
    #define BF_PRAGMA_OMP(x) BF_PRAGMA(omp x)
    #define bf_thread_num() omp_get_thread_num()
    /* As many threads as OpenMP allows (threadpoolctl, OMP_NUM_THREADS), one
       per 2**19 multiply-adds at most; one below BF_THREAD_PRODUCT. */
    static int bf_gemm_threads(double macs) {
        int most = omp_get_max_threads();
        if (macs < BF_THREAD_PRODUCT || most <= 1 || omp_in_parallel())
            return 1;
        double cap = macs / (BF_THREAD_PRODUCT / 2);
        return cap < most ? (int)cap : most;
    }
    #else
    #define BF_PRAGMA_OMP(x)
    #define bf_thread_num() 0
    static int bf_gemm_threads(double macs) { (void)macs; return 1; }
    #endif
    static Py_ssize_t bf_tpanel_s(Py_ssize_t kc, const float* B, Py_ssize_t csb, float* Bp);
    static Py_ssize_t bf_tpanel_d(Py_ssize_t kc, const double* B, Py_ssize_t csb, double* Bp);
    BF_GEMM(double, d)
    BF_GEMM(float, s)
    /* A full panel of B stored transposed (B(k, j) = B[j csb]: a forward
       product's weights), NR rows of it read along k and transposed in
       registers, eight floats or four doubles square at a time. */
    #if defined(__GNUC__)
    typedef int bf_i8 __attribute__((vector_size(32)));
    typedef long long bf_l4 __attribute__((vector_size(32)));
    #define BF_SH(a, b, ...) __builtin_shuffle(a, b, (bf_i8){__VA_ARGS__})
    #define BF_SHD(a, b, ...) __builtin_shuffle(a, b, (bf_l4){__VA_ARGS__})
    static Py_ssize_t bf_tpanel_s(Py_ssize_t kc, const float* BF_RESTRICT B, Py_ssize_t csb,
                                  float* BF_RESTRICT Bp) {
        typedef bf_gvs V;
        Py_ssize_t k = 0;
        for (int h = 0; h < 2; h++) {
            const float* r = B + 8 * h * csb;
            for (k = 0; k + 8 <= kc; k += 8) {
                const V x0 = *(const V*)(r + k), x1 = *(const V*)(r + csb + k);
                const V x2 = *(const V*)(r + 2 * csb + k), x3 = *(const V*)(r + 3 * csb + k);
                const V x4 = *(const V*)(r + 4 * csb + k), x5 = *(const V*)(r + 5 * csb + k);
                const V x6 = *(const V*)(r + 6 * csb + k), x7 = *(const V*)(r + 7 * csb + k);
                const V t0 = BF_SH(x0, x1, 0, 8, 1, 9, 4, 12, 5, 13);
                const V t1 = BF_SH(x0, x1, 2, 10, 3, 11, 6, 14, 7, 15);
                const V t2 = BF_SH(x2, x3, 0, 8, 1, 9, 4, 12, 5, 13);
                const V t3 = BF_SH(x2, x3, 2, 10, 3, 11, 6, 14, 7, 15);
                const V t4 = BF_SH(x4, x5, 0, 8, 1, 9, 4, 12, 5, 13);
                const V t5 = BF_SH(x4, x5, 2, 10, 3, 11, 6, 14, 7, 15);
                const V t6 = BF_SH(x6, x7, 0, 8, 1, 9, 4, 12, 5, 13);
                const V t7 = BF_SH(x6, x7, 2, 10, 3, 11, 6, 14, 7, 15);
                const V u0 = BF_SH(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
                const V u1 = BF_SH(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
                const V u2 = BF_SH(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
                const V u3 = BF_SH(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
                const V u4 = BF_SH(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
                const V u5 = BF_SH(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
                const V u6 = BF_SH(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
                const V u7 = BF_SH(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
                float* o = Bp + k * 16 + 8 * h;
                *(V*)o = BF_SH(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11);
                *(V*)(o + 16) = BF_SH(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11);
                *(V*)(o + 32) = BF_SH(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11);
                *(V*)(o + 48) = BF_SH(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11);
                *(V*)(o + 64) = BF_SH(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15);
                *(V*)(o + 80) = BF_SH(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15);
                *(V*)(o + 96) = BF_SH(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15);
                *(V*)(o + 112) = BF_SH(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15);
            }
        }
        return k;
    }
    static Py_ssize_t bf_tpanel_d(Py_ssize_t kc, const double* BF_RESTRICT B, Py_ssize_t csb,
                                  double* BF_RESTRICT Bp) {
        typedef bf_gvd V;
        Py_ssize_t k = 0;
        for (int h = 0; h < 2; h++) {
            const double* r = B + 4 * h * csb;
            for (k = 0; k + 4 <= kc; k += 4) {
                const V x0 = *(const V*)(r + k), x1 = *(const V*)(r + csb + k);
                const V x2 = *(const V*)(r + 2 * csb + k), x3 = *(const V*)(r + 3 * csb + k);
                const V t0 = BF_SHD(x0, x1, 0, 4, 2, 6), t1 = BF_SHD(x0, x1, 1, 5, 3, 7);
                const V t2 = BF_SHD(x2, x3, 0, 4, 2, 6), t3 = BF_SHD(x2, x3, 1, 5, 3, 7);
                double* o = Bp + k * 8 + 4 * h;
                *(V*)o = BF_SHD(t0, t2, 0, 1, 4, 5);
                *(V*)(o + 8) = BF_SHD(t1, t3, 0, 1, 4, 5);
                *(V*)(o + 16) = BF_SHD(t0, t2, 2, 3, 6, 7);
                *(V*)(o + 24) = BF_SHD(t1, t3, 2, 3, 6, 7);
            }
        }
        return k;
    }
    #else
    static Py_ssize_t bf_tpanel_s(Py_ssize_t kc, const float* B, Py_ssize_t csb, float* Bp) {
        return 0;
    }
    static Py_ssize_t bf_tpanel_d(Py_ssize_t kc, const double* B, Py_ssize_t csb, double* Bp) {
        return 0;
    }
    #endif
    /* Whether bf_gemm takes the products past SMALL_PRODUCT: in every build
       but the AVX-512 one, which runs where OpenBLAS has AVX-512 kernels
       (small-matrix ones among them), fast on a Xeon and giving the same
       bits for one and two threads there; bf_gemm's 256-bit tiles were not
       measured against them. */
    #if BF_VECTOR_BYTES >= 64
    #define BF_OWN_PRODUCTS 0
    #else
    #define BF_OWN_PRODUCTS 1
    #endif
    /* Asks for the bytes at p to be brought into the cache ahead of use:
       the rows of the next minibatch, which lie anywhere in a data set
       that other work may have evicted. */
    static inline void bf_fetch(const void* p, Py_ssize_t bytes) {
    #if defined(__GNUC__)
        const char* c = (const char*)p;
        for (Py_ssize_t i = 0; i < bytes; i += 64)
            __builtin_prefetch(c + i, 0);
        __builtin_prefetch(c + bytes - 1, 0);
    #else
        (void)p;
        (void)bytes;
    #endif
    }
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
    int bf_gemm_d(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, double alpha, const double* A,
                  Py_ssize_t rsa, Py_ssize_t csa, const double* B, Py_ssize_t rsb,
                  Py_ssize_t csb, int beta, double* C, Py_ssize_t ldc, const double* bias) nogil
    int bf_gemm_s(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, float alpha, const float* A,
                  Py_ssize_t rsa, Py_ssize_t csa, const float* B, Py_ssize_t rsb,
                  Py_ssize_t csb, int beta, float* C, Py_ssize_t ldc, const float* bias) nogil
    bint BF_OWN_PRODUCTS
    void bf_fetch(const void* p, Py_ssize_t bytes) nogil
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


cdef inline bint _own_product(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, floating alpha,
                              const floating* A, Py_ssize_t rsa, Py_ssize_t csa,
                              const floating* B, Py_ssize_t rsb, Py_ssize_t csb, bint beta,
                              floating* C, Py_ssize_t ldc, const floating* bias) noexcept nogil:
    """bf_gemm where this build takes products past SMALL_PRODUCT itself;
    False where it does not, or could not have its buffer (BLAS then does
    the product: C is untouched)."""
    if not BF_OWN_PRODUCTS or M * N * K <= SMALL_PRODUCT:
        return False
    if floating is double:
        return bf_gemm_d(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias) == 0
    else:
        return bf_gemm_s(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias) == 0


cdef inline void matmul_abt_bias(const floating* A, const floating* W,
                                 const floating* b, floating* Z,
                                 Py_ssize_t rows, Py_ssize_t n_out,
                                 Py_ssize_t n_in) noexcept nogil:
    """Z (rows x n_out) = A (rows x n_in) @ W.T + b, W being n_out x n_in."""
    cdef Py_ssize_t r
    if _own_product(rows, n_out, n_in, <floating>1, A, n_in, 1, W, 1, n_in, False,
                    Z, n_out, b):
        return
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
    if _own_product(rows, n_in, n_out, <floating>1, D, n_out, 1, W, n_in, 1, False,
                    P, n_in, c):
        return
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
    if _own_product(n_out, n_in, rows, alpha, D, 1, n_out, A, n_in, 1, beta != 0,
                    G, n_in, NULL):
        return
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
