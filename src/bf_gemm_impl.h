/* bf_gemm for one type: included by bf_gemm.h with BF_T (the type) and
   BF_S (its suffix) defined. L: a vector's length; NR: a panel of B, two
   vectors wide. */
#define T BF_T
#define FN(name) BF_CAT(name, BF_S)
#define MADD BF_CAT(BF_MADD_, BF_S)
#define VMADD BF_CAT(BF_VMADD_, BF_S)
enum { FN(bf_L_) = BF_GEMM_VB / sizeof(T), FN(bf_NR_) = 2 * BF_GEMM_VB / sizeof(T) };
#define L FN(bf_L_)
#define NR FN(bf_NR_)

/* nr columns of mr rows of C one at a time, each a chain of MADD. */
static inline void FN(bf_columns_)(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t K,
                                   const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs,
                                   const T* BF_RESTRICT b, Py_ssize_t bs,
                                   T* BF_RESTRICT C, Py_ssize_t ldc, int load,
                                   const T* BF_RESTRICT bias) {
    for (Py_ssize_t q = 0; q < mr; q++)
        for (Py_ssize_t l = 0; l < nr; l++) {
            T s = load ? C[q * ldc + l] : -(T)0;
            for (Py_ssize_t k = 0; k < K; k++)
                s = MADD(a[q * ars + k * acs], b[k * bs + l], s);
            C[q * ldc + l] = bias ? s + bias[l] : s;
        }
}

#if defined(__GNUC__)
typedef T FN(bf_gv) __attribute__((vector_size(BF_GEMM_VB), aligned(sizeof(T)), may_alias));
typedef T FN(bf_rv) __attribute__((vector_size(BF_GEMM_VB)));

/* bf_tile2: a block of R rows (BF_MR or 4, a constant where it is
   inlined) by two vectors of columns; bf_tile1: one vector. Row q of A at
   a + q ars, its k-th value acs further on; B's rows bs apart. Rows from
   mr on repeat row 0 (of A, and of C where C is loaded) and are not
   stored. V: a vector in registers; U: one in memory. */
#define TILE_START                                 \
    typedef FN(bf_rv) V;                           \
    typedef FN(bf_gv) U;                           \
    const V nz = -(V){0};                          \
    T* c0 = C;                                     \
    T* c1 = mr > 1 ? C + ldc : C;                  \
    T* c2 = mr > 2 ? C + 2 * ldc : C;              \
    T* c3 = mr > 3 ? C + 3 * ldc : C;              \
    T* c4 = mr > 4 ? C + 4 * ldc : C;              \
    T* c5 = mr > 5 ? C + 5 * ldc : C;              \
    const T* a0 = a;                               \
    const T* a1 = mr > 1 ? a + ars : a;            \
    const T* a2 = mr > 2 ? a + 2 * ars : a;        \
    const T* a3 = mr > 3 ? a + 3 * ars : a;        \
    const T* a4 = mr > 4 ? a + 4 * ars : a;        \
    const T* a5 = mr > 5 ? a + 5 * ars : a;

/* One k of a tile: the six rows' values of A times B's vectors. */
#define TILE2_STEP(x0, x1, x2, x3, x4, x5) {                                      \
        const V b0 = *(const U*)b, b1 = *(const U*)(b + L);                       \
        V x;                                                                      \
        x = bf_splat(x0, V); s00 = VMADD(x, b0, s00); s01 = VMADD(x, b1, s01);    \
        x = bf_splat(x1, V); s10 = VMADD(x, b0, s10); s11 = VMADD(x, b1, s11);    \
        x = bf_splat(x2, V); s20 = VMADD(x, b0, s20); s21 = VMADD(x, b1, s21);    \
        x = bf_splat(x3, V); s30 = VMADD(x, b0, s30); s31 = VMADD(x, b1, s31);    \
        if (R > 4) {                                                              \
            x = bf_splat(x4, V); s40 = VMADD(x, b0, s40); s41 = VMADD(x, b1, s41); \
            x = bf_splat(x5, V); s50 = VMADD(x, b0, s50); s51 = VMADD(x, b1, s51); \
        }                                                                         \
    }
#define TILE1_STEP(x0, x1, x2, x3, x4, x5) {             \
        const V b0 = *(const U*)b;                       \
        s0 = VMADD(bf_splat(x0, V), b0, s0);             \
        s1 = VMADD(bf_splat(x1, V), b0, s1);             \
        s2 = VMADD(bf_splat(x2, V), b0, s2);             \
        s3 = VMADD(bf_splat(x3, V), b0, s3);             \
        if (R > 4) {                                     \
            s4 = VMADD(bf_splat(x4, V), b0, s4);         \
            s5 = VMADD(bf_splat(x5, V), b0, s5);         \
        }                                                \
    }

/* The k loop of a tile. Where A's rows lie side by side (a copy), one
   pointer reaches all six: the loop then issues a fifth fewer
   instructions, which is what counts on a core shared with another
   thread. Else one pointer per row (those past mr repeating row 0). */
#define TILE_LOOP(STEP)                                                      \
    if (ars == 1 && mr == R) {                                               \
        BF_UNROLL_4                                                          \
        for (Py_ssize_t k = 0; k < K; k++, a += acs, b += bs)                \
            STEP(a[0], a[1], a[2], a[3], a[4], a[5])                         \
    } else {                                                                 \
        BF_UNROLL_4                                                          \
        for (Py_ssize_t k = 0, ak = 0; k < K; k++, ak += acs, b += bs)       \
            STEP(a0[ak], a1[ak], a2[ak], a3[ak], a4[ak], a5[ak])             \
    }

static inline BF_INLINE void FN(bf_tile2_)(const int R, Py_ssize_t mr, Py_ssize_t K,
                                           const T* BF_RESTRICT a, Py_ssize_t ars,
                                           Py_ssize_t acs, const T* BF_RESTRICT b,
                                           Py_ssize_t bs, T* BF_RESTRICT C,
                                           Py_ssize_t ldc, int load,
                                           const T* BF_RESTRICT bias) {
    TILE_START
    V s00 = nz, s01 = nz, s10 = nz, s11 = nz, s20 = nz, s21 = nz;
    V s30 = nz, s31 = nz, s40 = nz, s41 = nz, s50 = nz, s51 = nz;
    if (load) {
        s00 = *(U*)c0; s01 = *(U*)(c0 + L); s10 = *(U*)c1; s11 = *(U*)(c1 + L);
        s20 = *(U*)c2; s21 = *(U*)(c2 + L); s30 = *(U*)c3; s31 = *(U*)(c3 + L);
        if (R > 4) {
            s40 = *(U*)c4; s41 = *(U*)(c4 + L); s50 = *(U*)c5; s51 = *(U*)(c5 + L);
        }
    }
    TILE_LOOP(TILE2_STEP)
    if (bias) {
        const V h0 = *(const U*)bias, h1 = *(const U*)(bias + L);
        s00 = s00 + h0; s01 = s01 + h1; s10 = s10 + h0; s11 = s11 + h1;
        s20 = s20 + h0; s21 = s21 + h1; s30 = s30 + h0; s31 = s31 + h1;
        s40 = s40 + h0; s41 = s41 + h1; s50 = s50 + h0; s51 = s51 + h1;
    }
    *(U*)c0 = s00; *(U*)(c0 + L) = s01;
    if (mr > 1) { *(U*)c1 = s10; *(U*)(c1 + L) = s11; }
    if (mr > 2) { *(U*)c2 = s20; *(U*)(c2 + L) = s21; }
    if (mr > 3) { *(U*)c3 = s30; *(U*)(c3 + L) = s31; }
    if (R > 4 && mr > 4) { *(U*)c4 = s40; *(U*)(c4 + L) = s41; }
    if (R > 4 && mr > 5) { *(U*)c5 = s50; *(U*)(c5 + L) = s51; }
}

static inline BF_INLINE void FN(bf_tile1_)(const int R, Py_ssize_t mr, Py_ssize_t K,
                                           const T* BF_RESTRICT a, Py_ssize_t ars,
                                           Py_ssize_t acs, const T* BF_RESTRICT b,
                                           Py_ssize_t bs, T* BF_RESTRICT C,
                                           Py_ssize_t ldc, int load,
                                           const T* BF_RESTRICT bias) {
    TILE_START
    V s0 = nz, s1 = nz, s2 = nz, s3 = nz, s4 = nz, s5 = nz;
    if (load) {
        s0 = *(U*)c0; s1 = *(U*)c1; s2 = *(U*)c2;
        s3 = *(U*)c3;
        if (R > 4) { s4 = *(U*)c4; s5 = *(U*)c5; }
    }
    TILE_LOOP(TILE1_STEP)
    if (bias) {
        const V h = *(const U*)bias;
        s0 = s0 + h; s1 = s1 + h; s2 = s2 + h; s3 = s3 + h; s4 = s4 + h; s5 = s5 + h;
    }
    *(U*)c0 = s0;
    if (mr > 1) *(U*)c1 = s1;
    if (mr > 2) *(U*)c2 = s2;
    if (mr > 3) *(U*)c3 = s3;
    if (R > 4 && mr > 4) *(U*)c4 = s4;
    if (R > 4 && mr > 5) *(U*)c5 = s5;
}
#undef TILE_START
#undef TILE2_STEP
#undef TILE1_STEP
#undef TILE_LOOP

#else
/* Without vector types: the tiles' columns one at a time. */
static inline void FN(bf_tile2_)(const int R, Py_ssize_t mr, Py_ssize_t K,
                                 const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs,
                                 const T* BF_RESTRICT b, Py_ssize_t bs, T* BF_RESTRICT C,
                                 Py_ssize_t ldc, int load, const T* BF_RESTRICT bias) {
    (void)R;
    FN(bf_columns_)(mr, 2 * L, K, a, ars, acs, b, bs, C, ldc, load, bias);
}
static inline void FN(bf_tile1_)(const int R, Py_ssize_t mr, Py_ssize_t K,
                                 const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs,
                                 const T* BF_RESTRICT b, Py_ssize_t bs, T* BF_RESTRICT C,
                                 Py_ssize_t ldc, int load, const T* BF_RESTRICT bias) {
    (void)R;
    FN(bf_columns_)(mr, L, K, a, ars, acs, b, bs, C, ldc, load, bias);
}
#endif

/* The last columns, fewer than a vector: in a packed panel through a copy
   (the panel's zeros fill the vector), else one at a time. */
static void FN(bf_edge_)(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t K,
                         const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs,
                         const T* BF_RESTRICT b, Py_ssize_t bs,
                         T* BF_RESTRICT C, Py_ssize_t ldc, int load,
                         const T* BF_RESTRICT bias) {
    T t[BF_MR * L];
    if (bs != NR) {
        FN(bf_columns_)(mr, nr, K, a, ars, acs, b, bs, C, ldc, load, bias);
        return;
    }
    if (load)
        for (Py_ssize_t q = 0; q < mr; q++)
            for (Py_ssize_t l = 0; l < nr; l++)
                t[q * L + l] = C[q * ldc + l];
    BF_TILE_ROWS(FN(bf_tile1_), mr, K, a, ars, acs, b, bs, t, L, load, NULL);
    for (Py_ssize_t q = 0; q < mr; q++)
        for (Py_ssize_t l = 0; l < nr; l++)
            C[q * ldc + l] = bias ? t[q * L + l] + bias[l] : t[q * L + l];
}

/* A block of C: a panel of mr rows of A by nr columns of B, whose rows are
   bs apart. */
static inline void FN(bf_block_)(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t K,
                                 const T* BF_RESTRICT a, Py_ssize_t ars, Py_ssize_t acs,
                                 const T* BF_RESTRICT b, Py_ssize_t bs,
                                 T* BF_RESTRICT C, Py_ssize_t ldc,
                                 int load, const T* BF_RESTRICT bias) {
    if (nr == NR) {
        BF_TILE_ROWS(FN(bf_tile2_), mr, K, a, ars, acs, b, bs, C, ldc, load, bias);
        return;
    }
    if (nr >= L) {
        BF_TILE_ROWS(FN(bf_tile1_), mr, K, a, ars, acs, b, bs, C, ldc, load, bias);
        b += L;
        C += L;
        nr -= L;
        if (bias)
            bias += L;
    }
    if (nr > 0)
        FN(bf_edge_)(mr, nr, K, a, ars, acs, b, bs, C, ldc, load, bias);
}

/* alpha A, rows 0..mc-1 and k 0..kc-1, in panels of BF_MR rows, k-major
   within a panel (zeros past mc): the weight-gradient products' operand,
   rounded once times alpha as the small loops round it (its rows are
   contiguous, rsa 1), and a large product's rows, which lie far apart. */
static void FN(bf_panel_a_)(Py_ssize_t mc, Py_ssize_t kc, T alpha,
                            const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa,
                            T* BF_RESTRICT Ap) {
    for (Py_ssize_t p = 0; p < mc; p += BF_MR, Ap += BF_MR * kc) {
        if (p + BF_MR <= mc) {
            for (Py_ssize_t k = 0; k < kc; k++)
                for (Py_ssize_t q = 0; q < BF_MR; q++)
                    Ap[k * BF_MR + q] = alpha * A[(p + q) * rsa + k * csa];
        } else {
            for (Py_ssize_t k = 0; k < kc; k++)
                for (Py_ssize_t q = 0; q < BF_MR; q++)
                    Ap[k * BF_MR + q] = p + q < mc ? alpha * A[(p + q) * rsa + k * csa] : 0;
        }
    }
}

/* alpha A, rows 0..mc-1 and k 0..kc-1, at As[k mc + r]: the copy for
   smaller products, which reads the weight-gradient operand (rsa 1) along
   its rows. */
static void FN(bf_scale_a_)(Py_ssize_t mc, Py_ssize_t kc, T alpha,
                            const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa,
                            T* BF_RESTRICT As) {
    for (Py_ssize_t k = 0; k < kc; k++)
        for (Py_ssize_t r = 0; r < mc; r++)
            As[k * mc + r] = alpha * A[r * rsa + k * csa];
}

/* Columns of B in panels of NR (k-major within a panel), read along
   whichever of B's two directions is contiguous. */
static void FN(bf_pack_b_)(Py_ssize_t nc, Py_ssize_t kc, const T* BF_RESTRICT B,
                           Py_ssize_t rsb, Py_ssize_t csb, T* BF_RESTRICT Bp) {
    for (Py_ssize_t j = 0; j < nc; j += NR, Bp += NR * kc) {
        const Py_ssize_t nr = nc - j < NR ? nc - j : NR;
        if (csb == 1 && nr == NR) {
            for (Py_ssize_t k = 0; k < kc; k++)
                for (Py_ssize_t l = 0; l < NR; l++)
                    Bp[k * NR + l] = B[k * rsb + j + l];
        } else if (csb == 1) {
            for (Py_ssize_t k = 0; k < kc; k++)
                for (Py_ssize_t l = 0; l < NR; l++)
                    Bp[k * NR + l] = l < nr ? B[k * rsb + j + l] : 0;
        } else {
            /* The squares the registers transpose, then what is left. */
            const Py_ssize_t k0 = rsb == 1 && nr == NR ? FN(bf_tpanel_)(kc, B + j * csb, csb, Bp)
                                                       : 0;
            for (Py_ssize_t l = 0; l < NR; l++)
                for (Py_ssize_t k = k0; k < kc; k++)
                    Bp[k * NR + l] = l < nr ? B[k * rsb + (j + l) * csb] : 0;
        }
    }
}

/* The rows of the block of C after (p, j): a chunk of k after the first
   starts each block by loading it, which would otherwise wait on the last
   level of cache or on memory. */
static inline void FN(bf_fetch_next_)(Py_ssize_t p, Py_ssize_t mc, Py_ssize_t j,
                                      Py_ssize_t N, Py_ssize_t i0, const T* c,
                                      const T* C, Py_ssize_t ldc) {
    const T* next = p + BF_MR < mc ? c + BF_MR * ldc
                    : j + NR < N ? C + i0 * ldc + j + NR : NULL;
    const Py_ssize_t rows = p + BF_MR < mc ? mc - p - BF_MR : mc;
    for (Py_ssize_t q = 0; next != NULL && q < BF_MR && q < rows; q++) {
        BF_PREFETCH(next + q * ldc);
        BF_PREFETCH(next + q * ldc + NR - 1);
    }
}

/* Rows i0..i0+mc-1 of C for k0..k0+kc-1, A's part copied to Ap where
   panel_a or scale_a; Bp the packed chunk of B where pack_b. */
static inline void FN(bf_rows_)(Py_ssize_t i0, Py_ssize_t mc, Py_ssize_t k0,
                                Py_ssize_t kc, Py_ssize_t N, T alpha,
                                const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa,
                                const T* BF_RESTRICT B, Py_ssize_t rsb,
                                const T* BF_RESTRICT Bp, int pack_b, int panel_a,
                                int scale_a, int load, const T* BF_RESTRICT bias,
                                T* BF_RESTRICT C, Py_ssize_t ldc, T* BF_RESTRICT Ap) {
    if (panel_a)
        FN(bf_panel_a_)(mc, kc, alpha, A + i0 * rsa + k0 * csa, rsa, csa, Ap);
    else if (scale_a)
        FN(bf_scale_a_)(mc, kc, alpha, A + i0 * rsa + k0 * csa, rsa, csa, Ap);
    for (Py_ssize_t j = 0; j < N; j += NR) {
        const Py_ssize_t nr = N - j < NR ? N - j : NR;
        const T* hb = bias ? bias + j : NULL;
        for (Py_ssize_t p = 0; p < mc; p += BF_MR) {
            const Py_ssize_t mr = mc - p < BF_MR ? mc - p : BF_MR;
            T* c = C + (i0 + p) * ldc + j;
            const T* a = panel_a ? Ap + p * kc : scale_a ? Ap + p
                         : A + (i0 + p) * rsa + k0 * csa;
            const T* b = pack_b ? Bp + j * kc : B + k0 * rsb + j;
            if (load)
                FN(bf_fetch_next_)(p, mc, j, N, i0, c, C, ldc);
            FN(bf_block_)(mr, nr, kc, a, panel_a || scale_a ? 1 : rsa,
                          panel_a ? BF_MR : scale_a ? mc : csa,
                          b, pack_b ? NR : rsb, c, ldc, load, hb);
        }
    }
}

/* The product in blocks of mcs rows, on `threads` threads (OpenMP) where
   there are more than one: each chunk of B is packed by all of them into
   shared panels, then the blocks of rows go to whichever thread is free (a
   core the machine slows takes fewer). buf: the panels of B (kcs x N
   rounded up to panels), then mcs x kcs a thread. */
static void FN(bf_gemm_run_)(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, T alpha,
                             const T* BF_RESTRICT A, Py_ssize_t rsa, Py_ssize_t csa,
                             const T* BF_RESTRICT B, Py_ssize_t rsb, Py_ssize_t csb,
                             int beta, T* BF_RESTRICT C, Py_ssize_t ldc,
                             const T* BF_RESTRICT bias, Py_ssize_t mcs, int threads,
                             T* BF_RESTRICT buf) {
    const Py_ssize_t nk = (K + BF_KC - 1) / BF_KC, kcs = (K + nk - 1) / nk;
    const Py_ssize_t panels = (N + NR - 1) / NR, blocks = (M + mcs - 1) / mcs;
    T* Bp = buf;
    /* B is read where it lies when its rows are contiguous and a chunk of
       them fits the first-level cache. */
    const int pack_b = csb != 1 || kcs * N > BF_UNPACKED_B;
    /* A is copied into panels where C is wide enough to pay for it, else
       read where it lies, or from a copy times alpha. */
    const int panel_a = N >= BF_PANEL_A_COLUMNS;
    const int scale_a = !panel_a && alpha != 1;
    if (threads <= 1) {
        for (Py_ssize_t k0 = 0; k0 < K; k0 += kcs) {
            const Py_ssize_t kc = K - k0 < kcs ? K - k0 : kcs;
            if (pack_b)
                FN(bf_pack_b_)(N, kc, B + k0 * rsb, rsb, csb, Bp);
            /* A chain cut at k0 goes on from the sums stored in C. */
            for (Py_ssize_t i0 = 0; i0 < M; i0 += mcs)
                FN(bf_rows_)(i0, M - i0 < mcs ? M - i0 : mcs, k0, kc, N, alpha, A, rsa,
                             csa, B, rsb, Bp, pack_b, panel_a, scale_a, beta || k0 > 0,
                             k0 + kc == K ? bias : NULL, C, ldc, buf + panels * NR * kcs);
        }
        return;
    }
    BF_PRAGMA_OMP(parallel num_threads(threads))
    {
        T* Ap = buf + panels * NR * kcs + bf_thread_num() * mcs * kcs;
        for (Py_ssize_t k0 = 0; k0 < K; k0 += kcs) {
            const Py_ssize_t kc = K - k0 < kcs ? K - k0 : kcs;
            if (pack_b) {
                BF_PRAGMA_OMP(for schedule(static))
                for (Py_ssize_t q = 0; q < panels; q++)
                    FN(bf_pack_b_)(N - q * NR < NR ? N - q * NR : NR, kc,
                                   B + k0 * rsb + q * NR * csb, rsb, csb, Bp + q * NR * kc);
            }
            BF_PRAGMA_OMP(for schedule(dynamic, 1))
            for (Py_ssize_t q = 0; q < blocks; q++)
                FN(bf_rows_)(q * mcs, M - q * mcs < mcs ? M - q * mcs : mcs, k0, kc, N,
                             alpha, A, rsa, csa, B, rsb, Bp, pack_b, panel_a, scale_a,
                             beta || k0 > 0, k0 + kc == K ? bias : NULL, C, ldc, Ap);
        }
    }
}

/* Rows a block: up to BF_MC, as even as that allows; with threads, blocks
   enough for four a thread. */
static Py_ssize_t FN(bf_gemm_rows_)(Py_ssize_t M, int threads) {
    const Py_ssize_t nm = (M + BF_MC - 1) / BF_MC;
    Py_ssize_t mcs = ((M + nm - 1) / nm + BF_MR - 1) / BF_MR * BF_MR;
    if (threads > 1) {
        const Py_ssize_t few = ((M + 4 * threads - 1) / (4 * threads) + BF_MR - 1)
                               / BF_MR * BF_MR;
        if (few < mcs)
            mcs = few;
    }
    return mcs;
}

/* Elements of buffer a run of bf_gemm_run needs. */
static Py_ssize_t FN(bf_run_space_)(Py_ssize_t N, Py_ssize_t K, Py_ssize_t mcs, int threads) {
    const Py_ssize_t nk = (K + BF_KC - 1) / BF_KC, kcs = (K + nk - 1) / nk;
    return kcs * ((N + NR - 1) / NR * NR + threads * mcs);
}

/* C narrower than a panel (a forward product into a few units) is done as
   its transpose, C.T = B.T A.T, whose rows fill the panels (products
   commute exactly: the same chains), into the buffer. */
static inline int FN(bf_swaps_)(Py_ssize_t M, Py_ssize_t N, int threads, T alpha, int beta) {
    return threads == 1 && N < NR && M >= NR && alpha == 1 && !beta;
}

/* Elements of workspace enough for any product of at most M x N x K on
   up to `most` threads, whatever its alpha and beta: the size for a caller
   to allocate once for all the products of a call. */
static Py_ssize_t FN(bf_gemm_space_)(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int most) {
    const Py_ssize_t kc = K < BF_KC ? K : BF_KC;
    const Py_ssize_t mc = (M < BF_MC ? M : BF_MC) + BF_MR - 1;
    const Py_ssize_t nc = (N < BF_MC ? N : BF_MC) + BF_MR - 1;
    const Py_ssize_t plain = kc * ((N + NR - 1) / NR * NR + (most < 1 ? 1 : most) * mc);
    const Py_ssize_t swapped = kc * ((M + NR - 1) / NR * NR + nc) + M * N;
    return plain > swapped ? plain : swapped;
}

/* Each element alone, one chain of MADD with A's values times alpha
   rounded first, as the blocked loops compute it: for a caller whose
   workspace is short. */
static void FN(bf_gemm_plain_)(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, T alpha,
                               const T* A, Py_ssize_t rsa, Py_ssize_t csa,
                               const T* B, Py_ssize_t rsb, Py_ssize_t csb, int beta,
                               T* C, Py_ssize_t ldc, const T* bias) {
    for (Py_ssize_t r = 0; r < M; r++)
        for (Py_ssize_t j = 0; j < N; j++) {
            T s = beta ? C[r * ldc + j] : -(T)0;
            for (Py_ssize_t k = 0; k < K; k++)
                s = MADD(alpha * A[r * rsa + k * csa], B[k * rsb + j * csb], s);
            C[r * ldc + j] = bias ? s + bias[j] : s;
        }
}

/* The product on at most ctx->threads threads, its buffer on the stack or
   in ctx's workspace (ctx may be NULL: one thread, stack only). */
static void FN(bf_gemm_)(const bf_gemm_ctx* ctx, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                         T alpha, const T* A, Py_ssize_t rsa, Py_ssize_t csa,
                         const T* B, Py_ssize_t rsb, Py_ssize_t csb, int beta,
                         T* C, Py_ssize_t ldc, const T* bias) {
    T stack[BF_GEMM_STACK / sizeof(T)] __attribute__((aligned(64)));
    T* buf = stack;
    const int threads = bf_product_threads((double)M * N * K, ctx ? ctx->threads : 1);
    const int swap = FN(bf_swaps_)(M, N, threads, alpha, beta);
    const Py_ssize_t mcs = FN(bf_gemm_rows_)(swap ? N : M, threads);
    const Py_ssize_t space = swap ? FN(bf_run_space_)(M, K, mcs, 1) + M * N
                                  : FN(bf_run_space_)(N, K, mcs, threads);
    if (M <= 0 || N <= 0)
        return;
    if (space > (Py_ssize_t)(BF_GEMM_STACK / sizeof(T))) {
        if (ctx == NULL || ctx->buf == NULL || space > ctx->bytes / (Py_ssize_t)sizeof(T)) {
            BF_GEMM_SHORT();
            FN(bf_gemm_plain_)(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias);
            return;
        }
        buf = (T*)ctx->buf;
    }
    if (swap) {
        FN(bf_gemm_run_)(N, M, K, 1, B, csb, rsb, A, csa, rsa, 0, buf, M, NULL, mcs, 1,
                         buf + M * N);
        for (Py_ssize_t r = 0; r < M; r++)
            for (Py_ssize_t j = 0; j < N; j++)
                C[r * ldc + j] = bias ? buf[j * M + r] + bias[j] : buf[j * M + r];
    } else {
        FN(bf_gemm_run_)(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, bias,
                         mcs, threads, buf);
    }
}

#undef L
#undef NR
#undef T
#undef FN
#undef MADD
#undef VMADD
