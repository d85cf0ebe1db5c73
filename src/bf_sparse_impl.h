/* bf_sparse.h's products for one type: included with BF_T (the type) and
   BF_S (its suffix) defined. */
#define T BF_T
#define FN(name) BF_CAT(name, BF_S)
#define MADD BF_CAT(BF_MADD_, BF_S)

/* Z (rows x n_out) = X_rows @ W.T + b, W being n_out x n_in (row-major).
   Rows are split between threads; each element is one chain. */
static void FN(bf_csr_abt_bias_)(const bf_gemm_ctx* ctx, const bf_csr* x, Py_ssize_t rows,
                                 const T* BF_RESTRICT W, const T* BF_RESTRICT b,
                                 T* BF_RESTRICT Z, Py_ssize_t n_out, Py_ssize_t n_in) {
    const T* data = (const T*)x->data;
    const int64_t* idx = x->indices;
    const int threads = bf_product_threads(bf_csr_nnz(x, rows) * n_out,
                                           ctx ? ctx->threads : 1);
    (void)n_in;
    (void)threads;
    BF_PRAGMA_OMP(parallel for num_threads(threads) if(threads > 1) schedule(static))
    for (Py_ssize_t r = 0; r < rows; r++) {
        const Py_ssize_t i = bf_csr_row(x, r);
        const int64_t k0 = x->indptr[i], k1 = x->indptr[i + 1];
        T* z = Z + r * n_out;
        for (Py_ssize_t j = 0; j < n_out; j++) {
            const T* w = W + j * n_in;
            T s = -(T)0;
            for (int64_t k = k0; k < k1; k++)
                s = MADD(data[k], w[idx[k]], s);
            z[j] = s + b[j];
        }
    }
}

/* g += alpha D[:, j] @ X_rows: row j of the weight gradient, over the
   columns the batch stores, each element's chain over the batch's rows in
   order, with alpha D rounded first, as bf_gemm does. */
static inline void FN(bf_csr_row_acc_)(T alpha, const T* BF_RESTRICT D, const bf_csr* x,
                                       Py_ssize_t rows, Py_ssize_t j, Py_ssize_t n_out,
                                       T* BF_RESTRICT g) {
    const T* data = (const T*)x->data;
    const int64_t* idx = x->indices;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const Py_ssize_t i = bf_csr_row(x, r);
        const T a = alpha * D[r * n_out + j];
        for (int64_t k = x->indptr[i]; k < x->indptr[i + 1]; k++)
            g[idx[k]] = MADD(a, data[k], g[idx[k]]);
    }
}

/* G (n_out x n_in) = alpha D.T @ X_rows + beta G, beta 0 or 1; D is
   rows x n_out. With G the weights, beta 1 and alpha = -rate / rows, the
   plain SGD step folded into the product: only the columns the batch
   stores are written (all of G where beta is 0, to zero first). Rows of G
   are split between threads. */
static void FN(bf_csr_atb_)(const bf_gemm_ctx* ctx, T alpha, const T* BF_RESTRICT D,
                            const bf_csr* x, Py_ssize_t rows, int beta,
                            T* BF_RESTRICT G, Py_ssize_t n_out, Py_ssize_t n_in) {
    const double work = bf_csr_nnz(x, rows) * n_out + (beta ? 0.0 : (double)n_out * n_in);
    const int threads = bf_product_threads(work, ctx ? ctx->threads : 1);
    (void)threads;
    BF_PRAGMA_OMP(parallel for num_threads(threads) if(threads > 1) schedule(static))
    for (Py_ssize_t j = 0; j < n_out; j++) {
        T* g = G + j * n_in;
        if (!beta)
            for (Py_ssize_t c = 0; c < n_in; c++)
                g[c] = 0;
        FN(bf_csr_row_acc_)(alpha, D, x, rows, j, n_out, g);
    }
}

/* One Adam (or AdamW) step of the weights W (n_out x n_in) on the gradient
   alpha D.T @ X_rows, fused: each row of the gradient is made in a
   thread's scratch row (zeroed, then the batch's stored values added, as
   bf_csr_atb_ does) and spent at once on that row of W and of the moments
   M and V, while it is in cache: the dense gradient never goes to memory,
   and each parameter is read and written once a step. The step's
   arithmetic is _kernel.pyx's _optimizer_step's: step = rate / bc1,
   bc2_sqrt = sqrt(bc2), wd the L2 weight decay (0 for AdamW) and decay
   the decoupled one (1 for Adam). `scratch` holds n_in elements for each
   of up to ctx->threads threads (at most n_out of them run). */
static void FN(bf_csr_adam_)(const bf_gemm_ctx* ctx, T alpha, const T* BF_RESTRICT D,
                             const bf_csr* x, Py_ssize_t rows, T* BF_RESTRICT W,
                             T* BF_RESTRICT M, T* BF_RESTRICT V, T* BF_RESTRICT scratch,
                             Py_ssize_t n_out, Py_ssize_t n_in, T step, T bc2_sqrt,
                             T b1, T b2, T eps, T wd, T decay) {
    const double work = bf_csr_nnz(x, rows) * n_out + 4.0 * n_out * n_in;
    int threads = bf_product_threads(work, ctx ? ctx->threads : 1);
    const T one = 1;
    if (threads > n_out)
        threads = (int)n_out;
    BF_PRAGMA_OMP(parallel for num_threads(threads) if(threads > 1) schedule(static))
    for (Py_ssize_t j = 0; j < n_out; j++) {
        T* g = scratch + (Py_ssize_t)bf_thread_num() * n_in;
        T* p = W + j * n_in;
        T* m = M + j * n_in;
        T* v = V + j * n_in;
        for (Py_ssize_t c = 0; c < n_in; c++)
            g[c] = 0;
        FN(bf_csr_row_acc_)(alpha, D, x, rows, j, n_out, g);
        if (decay != one)
            for (Py_ssize_t c = 0; c < n_in; c++)
                p[c] = p[c] * decay;
        for (Py_ssize_t c = 0; c < n_in; c++) {
            const T d = g[c] + wd * p[c];
            m[c] = b1 * m[c] + (one - b1) * d;
            v[c] = b2 * v[c] + (one - b2) * d * d;
            p[c] = p[c] - step * m[c] / (BF_CAT(bf_sqrt_, BF_S)(v[c]) / bc2_sqrt + eps);
        }
    }
}

#undef T
#undef FN
#undef MADD
