/* The lane products for one type: included by bf_lanes.h with BF_T (the
   type) and BF_S (its suffix) defined. */
#define T BF_T
#define FN(name) BF_CAT(name, BF_S)

#if BF_VECTOR_BYTES > 0

#define V FN(bf_lane_v)
#define VMADD BF_CAT(BF_VMADD_, BF_S)
typedef T V __attribute__((vector_size(BF_LANE_BYTES), aligned(sizeof(T)), may_alias));

/* Z (rows x n_out) = A (rows x n_in) @ W.T + b, in every lane. */
static void FN(bf_lane_abt_)(const T* BF_RESTRICT A, const T* BF_RESTRICT W,
                             const T* BF_RESTRICT b, T* BF_RESTRICT Z, Py_ssize_t rows,
                             Py_ssize_t n_out, Py_ssize_t n_in) {
    const Py_ssize_t G = BF_LANE_BYTES / sizeof(T), blocks = n_in / 8;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const V* a = (const V*)(A + r * n_in * G);
        V* z = (V*)(Z + r * n_out * G);
        Py_ssize_t j0 = 0;
        /* Under eight inputs each output is one short chain: four outputs'
           chains side by side. */
        for (; blocks == 0 && j0 + 4 <= n_out; j0 += 4) {
            const V* w = (const V*)(W + j0 * n_in * G);
            V s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
            for (Py_ssize_t i = 0; i < n_in; i++) {
                s0 = VMADD(a[i], w[i], s0);
                s1 = VMADD(a[i], w[n_in + i], s1);
                s2 = VMADD(a[i], w[2 * n_in + i], s2);
                s3 = VMADD(a[i], w[3 * n_in + i], s3);
            }
            z[j0] = s0 + ((const V*)b)[j0];
            z[j0 + 1] = s1 + ((const V*)b)[j0 + 1];
            z[j0 + 2] = s2 + ((const V*)b)[j0 + 2];
            z[j0 + 3] = s3 + ((const V*)b)[j0 + 3];
        }
        for (Py_ssize_t j = j0; j < n_out; j++) {
            const V* w = (const V*)(W + j * n_in * G);
            V s0 = {0};
            for (Py_ssize_t i = blocks * 8; i < n_in; i++)
                s0 = VMADD(a[i], w[i], s0);
            if (blocks == 0) {
                z[j] = s0 + ((const V*)b)[j];
                continue;
            }
            V s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0}, s6 = {0}, s7 = {0};
            for (Py_ssize_t i = 0; i < blocks * 8; i += 8) {
                s0 = s0 + a[i] * w[i];
                s1 = s1 + a[i + 1] * w[i + 1];
                s2 = s2 + a[i + 2] * w[i + 2];
                s3 = s3 + a[i + 3] * w[i + 3];
                s4 = s4 + a[i + 4] * w[i + 4];
                s5 = s5 + a[i + 5] * w[i + 5];
                s6 = s6 + a[i + 6] * w[i + 6];
                s7 = s7 + a[i + 7] * w[i + 7];
            }
            z[j] = (((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7))) + ((const V*)b)[j];
        }
    }
}

/* P (rows x n_in) = D (rows x n_out) @ W, in every lane. */
static void FN(bf_lane_ab_)(const T* BF_RESTRICT D, const T* BF_RESTRICT W,
                            T* BF_RESTRICT P, Py_ssize_t rows, Py_ssize_t n_out,
                            Py_ssize_t n_in) {
    const Py_ssize_t G = BF_LANE_BYTES / sizeof(T);
    const V* w = (const V*)W;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const V* d = (const V*)(D + r * n_out * G);
        V* p = (V*)(P + r * n_in * G);
        Py_ssize_t i = 0;
        /* Four elements' chains side by side: one alone waits on each
           multiply-add before the next. */
        for (; i + 4 <= n_in; i += 4) {
            V s0 = d[0] * w[i], s1 = d[0] * w[i + 1], s2 = d[0] * w[i + 2],
              s3 = d[0] * w[i + 3];
            for (Py_ssize_t j = 1; j < n_out; j++) {
                const V* wj = w + j * n_in + i;
                s0 = s0 + d[j] * wj[0];
                s1 = s1 + d[j] * wj[1];
                s2 = s2 + d[j] * wj[2];
                s3 = s3 + d[j] * wj[3];
            }
            p[i] = s0;
            p[i + 1] = s1;
            p[i + 2] = s2;
            p[i + 3] = s3;
        }
        for (; i < n_in; i++) {
            V s = d[0] * w[i];
            for (Py_ssize_t j = 1; j < n_out; j++)
                s = s + d[j] * w[j * n_in + i];
            p[i] = s;
        }
    }
}

/* W (n_out x n_in) += alpha D.T @ A, in every lane, alpha one per lane. */
static void FN(bf_lane_sgd_)(const T* BF_RESTRICT alpha, const T* BF_RESTRICT D,
                             const T* BF_RESTRICT A, T* BF_RESTRICT W, Py_ssize_t rows,
                             Py_ssize_t n_out, Py_ssize_t n_in) {
    const Py_ssize_t G = BF_LANE_BYTES / sizeof(T);
    const V al = *(const V*)alpha;
    for (Py_ssize_t j = 0; j < n_out; j++) {
        V* w = (V*)(W + j * n_in * G);
        Py_ssize_t i0 = 0;
        /* bf_atb_few's BF_MADD up to four inputs, _atb_small's c + a * b
           from five on; from eight on, eight weights at a time are held in
           registers down all the rows rather than stored and reloaded at
           every row. */
        for (; i0 + 8 <= n_in; i0 += 8) {
            V s[8];
            for (int q = 0; q < 8; q++)
                s[q] = w[i0 + q];
            for (Py_ssize_t r = 0; r < rows; r++) {
                const V c = al * ((const V*)(D + r * n_out * G))[j];
                const V* a = (const V*)(A + r * n_in * G) + i0;
                for (int q = 0; q < 8; q++)
                    s[q] = s[q] + c * a[q];
            }
            for (int q = 0; q < 8; q++)
                w[i0 + q] = s[q];
        }
        if (i0 == n_in)
            continue;
        for (Py_ssize_t r = 0; r < rows; r++) {
            const V c = al * ((const V*)(D + r * n_out * G))[j];
            const V* a = (const V*)(A + r * n_in * G);
            if (n_in <= 4)
                for (Py_ssize_t i = i0; i < n_in; i++)
                    w[i] = VMADD(c, a[i], w[i]);
            else
                for (Py_ssize_t i = i0; i < n_in; i++)
                    w[i] = w[i] + c * a[i];
        }
    }
}

/* Tiles of the lane product: TR rows by TC columns of C in registers (the
   build's sixteen registers hold a tile of 4 x 2 with its operands). */
#define TR 4
#if BF_LANE_BYTES >= 64
#define TC 4
#else
#define TC 2
#endif

/* One tile of bf_lane_gemm: mr <= TR rows from A and C, nc <= TC columns
   from B and C, TR x TC sums in registers (rows and columns past mr and nc
   repeat the first and are not stored); alpha applied where `scaled`.
   Inlined where these and the unit strides are constants, so that the k
   loop carries no test and its addresses few registers. */
static inline __attribute__((always_inline)) void FN(bf_lane_tile_)(
        int scaled, Py_ssize_t mr, Py_ssize_t nc, Py_ssize_t K, V al,
        const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa, const T* BF_RESTRICT B,
        Py_ssize_t rsb, Py_ssize_t csb, int beta, T* BF_RESTRICT C, Py_ssize_t ldc,
        const T* BF_RESTRICT bias) {
    const Py_ssize_t G = BF_LANE_BYTES / sizeof(T);
    const Py_ssize_t ka = csa * G, kb = rsb * G;
    Py_ssize_t ao[TR], bo[TC];
    V s[TR][TC];
    for (int q = 0; q < TR; q++)
        ao[q] = (q < mr ? q : 0) * rsa * G;
    for (int c = 0; c < TC; c++)
        bo[c] = (c < nc ? c : 0) * csb * G;
    for (int q = 0; q < TR; q++)
        for (int c = 0; c < TC; c++) {
            s[q][c] = -(V){0};
            if (beta)
                s[q][c] = *(const V*)(C + ((q < mr ? q : 0) * ldc + (c < nc ? c : 0)) * G);
        }
    for (Py_ssize_t k = 0; k < K; k++, A += ka, B += kb) {
        V x[TR];
        for (int q = 0; q < TR; q++) {
            x[q] = *(const V*)(A + ao[q]);
            if (scaled)
                x[q] = al * x[q];
        }
        for (int c = 0; c < TC; c++) {
            const V y = *(const V*)(B + bo[c]);
            for (int q = 0; q < TR; q++)
                s[q][c] = VMADD(x[q], y, s[q][c]);
        }
    }
    for (int q = 0; q < TR && q < mr; q++)
        for (int c = 0; c < TC && c < nc; c++) {
            if (bias)
                s[q][c] = s[q][c] + ((const V*)bias)[c];
            *(V*)(C + (q * ldc + c) * G) = s[q][c];
        }
}

/* C (M x N) = C0 + sum over k of (alpha A(r, k)) B(k, j), then + bias[j]
   where bias is given, in every lane: bf_gemm's product (bf_gemm.h), one
   chain of multiply-adds per element, k in order, from C (beta) or -0;
   alpha, one per lane, or NULL for none. Strides count elements of one
   lane (A(r, k) is at (r rsa + k csa) lanes). */
static void FN(bf_lane_gemm_)(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                              const T* BF_RESTRICT alpha, const T* BF_RESTRICT A,
                              Py_ssize_t rsa, Py_ssize_t csa, const T* BF_RESTRICT B,
                              Py_ssize_t rsb, Py_ssize_t csb, int beta, T* BF_RESTRICT C,
                              Py_ssize_t ldc, const T* BF_RESTRICT bias) {
    const Py_ssize_t G = BF_LANE_BYTES / sizeof(T);
    const V al = alpha ? *(const V*)alpha : -(V){0};
    for (Py_ssize_t r0 = 0; r0 < M; r0 += TR)
        for (Py_ssize_t j0 = 0; j0 < N; j0 += TC) {
            const Py_ssize_t mr = M - r0 < TR ? M - r0 : TR, nc = N - j0 < TC ? N - j0 : TC;
            const T* at = A + r0 * rsa * G;
            const T* bt = B + j0 * csb * G;
            T* ct = C + (r0 * ldc + j0) * G;
            const T* bb = bias ? bias + j0 * G : NULL;
            /* Whole tiles of the layouts _lane_batch's products take, with
               their unit strides constant. */
            if (mr == TR && nc == TC && !alpha && csa == 1 && rsb == 1)
                FN(bf_lane_tile_)(0, TR, TC, K, al, at, rsa, 1, bt, 1, csb, beta, ct, ldc, bb);
            else if (mr == TR && nc == TC && !alpha && csa == 1 && csb == 1)
                FN(bf_lane_tile_)(0, TR, TC, K, al, at, rsa, 1, bt, rsb, 1, beta, ct, ldc, bb);
            else if (mr == TR && nc == TC && alpha && rsa == 1 && csb == 1)
                FN(bf_lane_tile_)(1, TR, TC, K, al, at, 1, csa, bt, rsb, 1, beta, ct, ldc, bb);
            else if (alpha)
                FN(bf_lane_tile_)(1, mr, nc, K, al, at, rsa, csa, bt, rsb, csb, beta, ct, ldc,
                                  bb);
            else
                FN(bf_lane_tile_)(0, mr, nc, K, al, at, rsa, csa, bt, rsb, csb, beta, ct, ldc,
                                  bb);
        }
}

#undef TR
#undef TC

#undef VMADD
#undef V

#else

#define G (BF_LANE_BYTES / (Py_ssize_t)sizeof(T))
#define MADD BF_CAT(BF_MADD_, BF_S)

static void FN(bf_lane_abt_)(const T* BF_RESTRICT A, const T* BF_RESTRICT W,
                             const T* BF_RESTRICT b, T* BF_RESTRICT Z, Py_ssize_t rows,
                             Py_ssize_t n_out, Py_ssize_t n_in) {
    const Py_ssize_t blocks = n_in / 8;
    T s[8][G];
    for (Py_ssize_t r = 0; r < rows; r++)
        for (Py_ssize_t j = 0; j < n_out; j++) {
            const T* a = A + r * n_in * G;
            const T* w = W + j * n_in * G;
            for (Py_ssize_t q = 0; q < 8; q++)
                for (Py_ssize_t l = 0; l < G; l++) s[q][l] = 0;
            for (Py_ssize_t i = blocks * 8; i < n_in; i++)
                for (Py_ssize_t l = 0; l < G; l++)
                    s[0][l] = MADD(a[i * G + l], w[i * G + l], s[0][l]);
            for (Py_ssize_t i = 0; i < blocks * 8; i += 8)
                for (Py_ssize_t q = 0; q < 8; q++)
                    for (Py_ssize_t l = 0; l < G; l++)
                        s[q][l] = MADD(a[(i + q) * G + l], w[(i + q) * G + l], s[q][l]);
            for (Py_ssize_t l = 0; l < G; l++)
                Z[(r * n_out + j) * G + l] =
                    (blocks == 0 ? s[0][l]
                     : ((s[0][l] + s[4][l]) + (s[1][l] + s[5][l]))
                       + ((s[2][l] + s[6][l]) + (s[3][l] + s[7][l])))
                    + b[j * G + l];
        }
}

static void FN(bf_lane_ab_)(const T* BF_RESTRICT D, const T* BF_RESTRICT W,
                            T* BF_RESTRICT P, Py_ssize_t rows, Py_ssize_t n_out,
                            Py_ssize_t n_in) {
    for (Py_ssize_t r = 0; r < rows; r++)
        for (Py_ssize_t i = 0; i < n_in; i++)
            for (Py_ssize_t l = 0; l < G; l++) {
                const T* d = D + r * n_out * G + l;
                T s = d[0] * W[i * G + l];
                for (Py_ssize_t j = 1; j < n_out; j++)
                    s = MADD(d[j * G], W[(j * n_in + i) * G + l], s);
                P[(r * n_in + i) * G + l] = s;
            }
}

static void FN(bf_lane_sgd_)(const T* BF_RESTRICT alpha, const T* BF_RESTRICT D,
                             const T* BF_RESTRICT A, T* BF_RESTRICT W, Py_ssize_t rows,
                             Py_ssize_t n_out, Py_ssize_t n_in) {
    for (Py_ssize_t j = 0; j < n_out; j++)
        for (Py_ssize_t r = 0; r < rows; r++)
            for (Py_ssize_t l = 0; l < G; l++) {
                const T c = alpha[l] * D[(r * n_out + j) * G + l];
                for (Py_ssize_t i = 0; i < n_in; i++)
                    W[(j * n_in + i) * G + l] = MADD(c, A[(r * n_in + i) * G + l],
                                                     W[(j * n_in + i) * G + l]);
            }
}

static void FN(bf_lane_gemm_)(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                              const T* BF_RESTRICT alpha, const T* BF_RESTRICT A,
                              Py_ssize_t rsa, Py_ssize_t csa, const T* BF_RESTRICT B,
                              Py_ssize_t rsb, Py_ssize_t csb, int beta, T* BF_RESTRICT C,
                              Py_ssize_t ldc, const T* BF_RESTRICT bias) {
    for (Py_ssize_t r = 0; r < M; r++)
        for (Py_ssize_t j = 0; j < N; j++)
            for (Py_ssize_t l = 0; l < G; l++) {
                T s = beta ? C[(r * ldc + j) * G + l] : -(T)0;
                for (Py_ssize_t k = 0; k < K; k++) {
                    T a = A[(r * rsa + k * csa) * G + l];
                    if (alpha)
                        a = alpha[l] * a;
                    s = MADD(a, B[(k * rsb + j * csb) * G + l], s);
                }
                C[(r * ldc + j) * G + l] = bias ? s + bias[j * G + l] : s;
            }
}

#undef MADD
#undef G

#endif

#undef T
#undef FN
