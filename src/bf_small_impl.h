/* The small products for one type: included by bf_small.h with BF_T (the
   type), BF_S (its suffix) and BF_TSIZE (its size) defined. */
#define T BF_T
#define FN(name) BF_CAT(name, BF_S)
#define MADD BF_CAT(BF_MADD_, BF_S)

/* bf_dot4: four dot products of x with the rows of w (n apart), each row's
   eight partial sums kept in one order, added pairwise at the end:
   ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)), the tail (n mod 8
   elements) summed first into s0. bf_update_dot4: one online SGD step's
   update of four rows of the first layer, g_r += c_r a (bf_axpy4's
   arithmetic), and the next sample's products with the updated rows,
   out_r = x . g_r (bf_dot4's sums, in its order), in one pass over the rows.

   Three spellings of the same arithmetic in the same order: the eight sums
   as one vector where they fit a register; as two vectors of four for
   doubles where a register holds four (AVX2); as an array otherwise (gcc
   then keeps them on the stack, where each multiply-add waits on a store
   and a reload, but vectors wider than the machine's it splits badly). */
#if BF_VECTOR_BYTES >= 8 * BF_TSIZE

typedef T FN(bf_v8) __attribute__((vector_size(8 * sizeof(T)), aligned(sizeof(T)), may_alias));
#define V8 FN(bf_v8)

static inline T FN(bf_sum8_)(V8 a) {
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

static inline void FN(bf_dot4_)(const T* BF_RESTRICT x, const T* BF_RESTRICT w,
                                Py_ssize_t n, T* BF_RESTRICT out) {
    T t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    Py_ssize_t i, blocks = n / 8;
    for (i = blocks * 8; i < n; i++) {
        t0 = MADD(x[i], w[i], t0);
        t1 = MADD(x[i], w[n + i], t1);
        t2 = MADD(x[i], w[2 * n + i], t2);
        t3 = MADD(x[i], w[3 * n + i], t3);
    }
    V8 s0 = {t0}, s1 = {t1}, s2 = {t2}, s3 = {t3}, xv;
    for (i = 0; i < blocks * 8; i += 8) {
        xv = *(const V8*)(x + i);
        s0 = s0 + xv * *(const V8*)(w + i);
        s1 = s1 + xv * *(const V8*)(w + n + i);
        s2 = s2 + xv * *(const V8*)(w + 2 * n + i);
        s3 = s3 + xv * *(const V8*)(w + 3 * n + i);
    }
    out[0] = FN(bf_sum8_)(s0);
    out[1] = FN(bf_sum8_)(s1);
    out[2] = FN(bf_sum8_)(s2);
    out[3] = FN(bf_sum8_)(s3);
}

static inline void FN(bf_update_dot4_)(T* BF_RESTRICT g, const T* BF_RESTRICT c,
                                       const T* BF_RESTRICT a, const T* BF_RESTRICT x,
                                       Py_ssize_t n, T* BF_RESTRICT out) {
    const T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    T* g1 = g + n;
    T* g2 = g + 2 * n;
    T* g3 = g + 3 * n;
    T t0 = 0, t1 = 0, t2 = 0, t3 = 0;
    Py_ssize_t i, blocks = n / 8;
    for (i = blocks * 8; i < n; i++) {
        g[i] = g[i] + c0 * a[i];
        g1[i] = g1[i] + c1 * a[i];
        g2[i] = g2[i] + c2 * a[i];
        g3[i] = g3[i] + c3 * a[i];
        t0 = MADD(x[i], g[i], t0);
        t1 = MADD(x[i], g1[i], t1);
        t2 = MADD(x[i], g2[i], t2);
        t3 = MADD(x[i], g3[i], t3);
    }
    V8 s0 = {t0}, s1 = {t1}, s2 = {t2}, s3 = {t3}, av, xv, w;
    for (i = 0; i < blocks * 8; i += 8) {
        av = *(const V8*)(a + i);
        xv = *(const V8*)(x + i);
        w = *(V8*)(g + i) + c0 * av;
        *(V8*)(g + i) = w;
        s0 = s0 + xv * w;
        w = *(V8*)(g1 + i) + c1 * av;
        *(V8*)(g1 + i) = w;
        s1 = s1 + xv * w;
        w = *(V8*)(g2 + i) + c2 * av;
        *(V8*)(g2 + i) = w;
        s2 = s2 + xv * w;
        w = *(V8*)(g3 + i) + c3 * av;
        *(V8*)(g3 + i) = w;
        s3 = s3 + xv * w;
    }
    out[0] = FN(bf_sum8_)(s0);
    out[1] = FN(bf_sum8_)(s1);
    out[2] = FN(bf_sum8_)(s2);
    out[3] = FN(bf_sum8_)(s3);
}
#undef V8

#elif BF_VECTOR_BYTES >= 4 * BF_TSIZE

typedef T FN(bf_v4) __attribute__((vector_size(4 * sizeof(T)), aligned(sizeof(T)), may_alias));
#define V4 FN(bf_v4)

static inline T FN(bf_sum44_)(V4 lo, V4 hi) {
    return ((lo[0] + hi[0]) + (lo[1] + hi[1])) + ((lo[2] + hi[2]) + (lo[3] + hi[3]));
}

static inline void FN(bf_dot4_)(const T* BF_RESTRICT x, const T* BF_RESTRICT w,
                                Py_ssize_t n, T* BF_RESTRICT out) {
    T t[4] = {0};
    Py_ssize_t i, blocks = n / 8;
    int r;
    for (i = blocks * 8; i < n; i++)
        for (r = 0; r < 4; r++) t[r] = MADD(x[i], w[r * n + i], t[r]);
    V4 lo[4] = {{t[0]}, {t[1]}, {t[2]}, {t[3]}}, hi[4] = {{0}}, xl, xh;
    for (i = 0; i < blocks * 8; i += 8) {
        xl = *(const V4*)(x + i);
        xh = *(const V4*)(x + i + 4);
        for (r = 0; r < 4; r++) {
            lo[r] = lo[r] + xl * *(const V4*)(w + r * n + i);
            hi[r] = hi[r] + xh * *(const V4*)(w + r * n + i + 4);
        }
    }
    for (r = 0; r < 4; r++) out[r] = FN(bf_sum44_)(lo[r], hi[r]);
}

static inline void FN(bf_update_dot4_)(T* BF_RESTRICT g, const T* BF_RESTRICT c,
                                       const T* BF_RESTRICT a, const T* BF_RESTRICT x,
                                       Py_ssize_t n, T* BF_RESTRICT out) {
    T t[4] = {0}, v;
    Py_ssize_t i, blocks = n / 8;
    int r;
    for (i = blocks * 8; i < n; i++)
        for (r = 0; r < 4; r++) {
            v = g[r * n + i] + c[r] * a[i];
            g[r * n + i] = v;
            t[r] = MADD(x[i], v, t[r]);
        }
    V4 lo[4] = {{t[0]}, {t[1]}, {t[2]}, {t[3]}}, hi[4] = {{0}}, al, ah, xl, xh, wv;
    for (i = 0; i < blocks * 8; i += 8) {
        al = *(const V4*)(a + i);
        ah = *(const V4*)(a + i + 4);
        xl = *(const V4*)(x + i);
        xh = *(const V4*)(x + i + 4);
        for (r = 0; r < 4; r++) {
            wv = *(V4*)(g + r * n + i) + c[r] * al;
            *(V4*)(g + r * n + i) = wv;
            lo[r] = lo[r] + xl * wv;
            wv = *(V4*)(g + r * n + i + 4) + c[r] * ah;
            *(V4*)(g + r * n + i + 4) = wv;
            hi[r] = hi[r] + xh * wv;
        }
    }
    for (r = 0; r < 4; r++) out[r] = FN(bf_sum44_)(lo[r], hi[r]);
}
#undef V4

#else

static inline void FN(bf_dot4_)(const T* BF_RESTRICT x, const T* BF_RESTRICT w,
                                Py_ssize_t n, T* BF_RESTRICT out) {
    T s[4][8] = {{0}};
    Py_ssize_t i, blocks = n / 8;
    int r, l;
    for (i = blocks * 8; i < n; i++)
        for (r = 0; r < 4; r++) s[r][0] = MADD(x[i], w[r * n + i], s[r][0]);
    for (i = 0; i < blocks * 8; i += 8)
        for (r = 0; r < 4; r++)
            for (l = 0; l < 8; l++) s[r][l] = s[r][l] + x[i + l] * w[r * n + i + l];
    for (r = 0; r < 4; r++)
        out[r] = ((s[r][0] + s[r][4]) + (s[r][1] + s[r][5]))
                 + ((s[r][2] + s[r][6]) + (s[r][3] + s[r][7]));
}

static inline void FN(bf_update_dot4_)(T* BF_RESTRICT g, const T* BF_RESTRICT c,
                                       const T* BF_RESTRICT a, const T* BF_RESTRICT x,
                                       Py_ssize_t n, T* BF_RESTRICT out) {
    T s[4][8] = {{0}};
    T w;
    Py_ssize_t i, blocks = n / 8;
    int r, l;
    for (i = blocks * 8; i < n; i++)
        for (r = 0; r < 4; r++) {
            w = g[r * n + i] + c[r] * a[i];
            g[r * n + i] = w;
            s[r][0] = MADD(x[i], w, s[r][0]);
        }
    for (i = 0; i < blocks * 8; i += 8)
        for (r = 0; r < 4; r++)
            for (l = 0; l < 8; l++) {
                w = g[r * n + i + l] + c[r] * a[i + l];
                g[r * n + i + l] = w;
                s[r][l] = s[r][l] + x[i + l] * w;
            }
    for (r = 0; r < 4; r++)
        out[r] = ((s[r][0] + s[r][4]) + (s[r][1] + s[r][5]))
                 + ((s[r][2] + s[r][6]) + (s[r][3] + s[r][7]));
}

#endif

/* g_r += c_r a for four rows, each element of a loaded once. */
static inline void FN(bf_axpy4_)(T* BF_RESTRICT g0, T* BF_RESTRICT g1,
                                 T* BF_RESTRICT g2, T* BF_RESTRICT g3,
                                 const T* BF_RESTRICT c, const T* BF_RESTRICT a,
                                 Py_ssize_t n) {
    const T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    for (Py_ssize_t i = 0; i < n; i++) {
        const T ai = a[i];
        g0[i] = g0[i] + c0 * ai;
        g1[i] = g1[i] + c1 * ai;
        g2[i] = g2[i] + c2 * ai;
        g3[i] = g3[i] + c3 * ai;
    }
}

/* The forward and weight-gradient products of a layer with at most four
   inputs, the input count N compiled in (a switch over 1 to 4). */
#define FEW_INPUTS(ROWS) \
    switch (n_in) {      \
    case 1: ROWS(1) break; \
    case 2: ROWS(2) break; \
    case 3: ROWS(3) break; \
    default: ROWS(4)     \
    }

/* Forward: one chain of multiply-adds from zero for each row and unit
   (the small loops' sum for so few inputs), plus the bias. */
#define ABT_ROWS(N)                                                 \
    for (Py_ssize_t r = 0; r < rows; r++)                           \
        for (Py_ssize_t j = 0; j < n_out; j++) {                    \
            T s = 0;                                                \
            for (Py_ssize_t i = 0; i < (N); i++)                    \
                s = MADD(A[r * (N) + i], W[j * (N) + i], s);        \
            Z[r * n_out + j] = s + b[j];                            \
        }

BF_SCALAR_LOOPS static void FN(bf_abt_few_)(const T* BF_RESTRICT A, const T* BF_RESTRICT W,
                                            const T* BF_RESTRICT b, T* BF_RESTRICT Z,
                                            Py_ssize_t rows, Py_ssize_t n_out,
                                            Py_ssize_t n_in) {
    FEW_INPUTS(ABT_ROWS)
}

/* G (n_out x n_in) += alpha D.T @ A, row after row, one multiply-add into
   each element of G; beta 0 clears G first. */
#define ATB_ROWS(N)                                                         \
    for (Py_ssize_t j = 0; j < n_out; j++)                                  \
        for (Py_ssize_t r = 0; r < rows; r++) {                             \
            const T c = alpha * D[r * n_out + j];                           \
            for (Py_ssize_t i = 0; i < (N); i++)                            \
                G[j * (N) + i] = MADD(c, A[r * (N) + i], G[j * (N) + i]);   \
        }

BF_SCALAR_LOOPS static void FN(bf_atb_few_)(T alpha, const T* BF_RESTRICT D,
                                            const T* BF_RESTRICT A, T beta,
                                            T* BF_RESTRICT G, Py_ssize_t rows,
                                            Py_ssize_t n_out, Py_ssize_t n_in) {
    if (beta == 0)
        for (Py_ssize_t i = 0; i < n_out * n_in; i++) G[i] = 0;
    FEW_INPUTS(ATB_ROWS)
}

#undef FEW_INPUTS
#undef ABT_ROWS
#undef ATB_ROWS
#undef T
#undef FN
#undef MADD
