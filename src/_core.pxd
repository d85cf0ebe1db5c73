# What the kernel's two halves share: src/_kernel.pyx (the Python-facing
# glue, compiled once) and src/_engine.pyx (the hot loops, compiled once per
# instruction set). Structs laid out here are passed between the two, so
# both must be built from this one declaration.
from libc.stdint cimport int64_t, uint64_t
from cpython.ref cimport PyObject

from _blas cimport SMALL_PRODUCT, bf_gemm_ctx

# The first layer's products on the CSR rows of a sparse X (bf_sparse.h).
cdef extern from "bf_sparse.h" nogil:
    ctypedef struct bf_csr:
        const int64_t* indptr
        const int64_t* indices
        const void* data
        const Py_ssize_t* rows
        Py_ssize_t first
    void bf_csr_abt_bias_d(const bf_gemm_ctx* ctx, const bf_csr* x, Py_ssize_t rows,
                           const double* W, const double* b, double* Z, Py_ssize_t n_out,
                           Py_ssize_t n_in)
    void bf_csr_abt_bias_s(const bf_gemm_ctx* ctx, const bf_csr* x, Py_ssize_t rows,
                           const float* W, const float* b, float* Z, Py_ssize_t n_out,
                           Py_ssize_t n_in)
    void bf_csr_atb_d(const bf_gemm_ctx* ctx, double alpha, const double* D, const bf_csr* x,
                      Py_ssize_t rows, int beta, double* G, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_csr_atb_s(const bf_gemm_ctx* ctx, float alpha, const float* D, const bf_csr* x,
                      Py_ssize_t rows, int beta, float* G, Py_ssize_t n_out, Py_ssize_t n_in)
    void bf_csr_adam_d(const bf_gemm_ctx* ctx, double alpha, const double* D, const bf_csr* x,
                       Py_ssize_t rows, double* W, double* M, double* V, double* scratch,
                       Py_ssize_t n_out, Py_ssize_t n_in, double step, double bc2_sqrt,
                       double b1, double b2, double eps, double wd, double decay)
    void bf_csr_adam_s(const bf_gemm_ctx* ctx, float alpha, const float* D, const bf_csr* x,
                       Py_ssize_t rows, float* W, float* M, float* V, float* scratch,
                       Py_ssize_t n_out, Py_ssize_t n_in, float step, float bc2_sqrt,
                       float b1, float b2, float eps, float wd, float decay)



# Status codes returned by fit; backprop_fast/network.py turns them into errors.
cdef enum:
    STATUS_OK = 0
    STATUS_NONFINITE_COST = 1
    STATUS_NONFINITE_PARAMS = 2
    # scikit-learn's rules with a validation score: the epoch that diverged
    # and the rest are recorded as NaN, the best epoch's parameters are kept.
    STATUS_DIVERGED_KEPT_BEST = 3

# Codes shared with backprop_fast/network.py.
cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_ADAMW = 2

cdef enum:
    SCHED_CONSTANT = 0
    SCHED_INVSCALING = 1
    SCHED_COSINE = 2
    SCHED_PLATEAU = 3
    SCHED_ADAPTIVE = 4

# Stopping rules and validation scores (Settings.stopping, .val_metric).
cdef enum:
    STOP_PATIENCE = 0
    STOP_SKLEARN = 1

cdef enum:
    METRIC_NONE = 0
    METRIC_ACCURACY = 1
    METRIC_R2 = 2
    # History.val_accuracy, kernel-internal: the fraction of rows whose
    # largest softmax output is the target's largest entry, or of sigmoid
    # units whose rounded output equals the rounded target.
    METRIC_UNITS = 3

# Columns of the history array fit fills, one row per epoch.
cdef enum:
    H_LOSS = 0
    H_VAL_LOSS = 1
    H_VAL_ACCURACY = 2
    H_RATE = 3
    H_TIME = 4
    H_VAL_SCORE = 5
    H_COLUMNS = 6


cdef struct Net:
    Py_ssize_t n_layers
    const Py_ssize_t* sizes     # n_layers + 1 widths, input first
    const int* acts             # n_layers activation codes
    int loss
    Py_ssize_t n_params
    Py_ssize_t widest           # widest layer after the input
    bf_gemm_ctx gemm            # the wide products' workspace and threads
    bint bf16                   # mixed_bfloat16: products read bfloat16-rounded inputs
    void* rw                    # with bf16: the parameters rounded (n_params),
    void* ra                    # a layer's input rounded (rows x most),
    void* rd                    # and its delta rounded (rows x most)
    Py_ssize_t most             # the widest layer, input included




cdef inline Py_ssize_t _total_width(const Net* net) noexcept nogil:
    cdef Py_ssize_t m, t = 0
    for m in range(1, net.n_layers + 1):
        t += net.sizes[m]
    return t


cdef inline bint _transposed_first(const Net* net, Py_ssize_t batch) noexcept nogil:
    """Whether fit trains the first layer's weights transposed.

    Held as W0.T (n_0 x n_1), the first layer's forward product is a plain
    product (A @ W0.T becomes A @ WT) and its update the transposed twin of
    the usual one; no delta goes back through the first layer. OpenBLAS's
    small-matrix kernels run the plain form 1.4 to 1.6 times faster for a
    batch of 32 on a 64-32 layer, in float32 and float64, for a loss of a
    tenth of that on the update. The products that run in _blas.pxd's loops
    gain nothing, and from about a million multiply-adds on BLAS packs
    either form at the same speed. In the builds where bf_gemm does these
    products, the plain form reads WT where it lies instead of packing W
    transposed; the two forms were not timed against each other there. The
    cost: two transposes of W0 (and of the optimizer's state for it) an
    epoch and 4 n_0 n_1 elements of workspace: W0.T, its gradient and the
    two state buffers, transposed.
    """
    cdef Py_ssize_t macs = batch * net.sizes[0] * net.sizes[1]
    # Under mixed_bfloat16 the products read the rounded copy of params
    # (_rounded), W0 untransposed in it: the first layer stays in params.
    return SMALL_PRODUCT < macs <= (1 << 20) and not net.bf16




cdef struct Rng:
    uint64_t s0, s1, s2, s3




cdef struct Opts:
    Py_ssize_t epochs, batch, patience
    double learning_rate, momentum, beta1, beta2, epsilon
    double weight_decay, power_t, min_delta
    int optimizer, schedule
    bint nesterov, shuffle, early_stopping, restore_best
    int stopping, val_metric
    double tol, n_iter_no_change, loss_penalty
    double best_loss, best_score, no_improvement, samples_seen, rate




cdef struct Optim:
    int kind                    # OPT_SGD, OPT_ADAM, OPT_ADAMW
    bint fold                   # plain SGD: update folded into the products
    double momentum, beta1, beta2, epsilon, weight_decay
    bint nesterov
    double bc1, bc2             # Adam's bias corrections for this step


# One network's fit: its arrays (as pointers into the buffers its FitCall
# keeps alive), options and, once run, its outcome. The floating arrays are
# of the network's type, which ``dbl`` tells.
cdef struct Run:
    Net net
    Opts s
    bint dbl
    void* params
    const void* X
    const void* Y
    const void* sw            # NULL: weights of 1
    const void* Xv
    const void* Yv
    const void* vw            # NULL: validation weights of 1
    double* vstats
    Py_ssize_t n, n_val
    bint is_sp, val_sp
    bf_csr xs, vs
    uint64_t* rng_state
    int64_t* step
    Py_ssize_t* order
    void* work
    double* bsum
    void* grad
    void* m1
    void* m2
    void* snapshot
    void* best
    double* history
    PyObject* hook            # borrowed from the FitCall, or NULL
    int* abort                # shared by the runs of one run_fits call
    PyObject* error           # owned: what ended this run, or NULL
    bint busy
    int status
    Py_ssize_t done, best_epoch




# The engine's entry points, one table per compiled engine (its ENGINE
# capsule): the glue calls the variant chosen at import through it.
ctypedef struct Engine:
    # sizeof(Engine) + sizeof(Run) as the engine was built: a module left
    # from an older build of the other half is refused rather than misread.
    size_t size
    bint checked
    int (*threads)(int requested) noexcept nogil
    int (*gemm_start)(Net* net, Py_ssize_t batch, int n_threads, size_t itemsize,
                      bint sparse) except -1
    void (*gemm_end)(Net* net) noexcept
    void (*run_tasks)(Py_ssize_t m, int threads, Run** runs) noexcept nogil
    double (*batch_d)(const Net* net, double* params, const double* X,
                      const double* Y, const double* sw, Py_ssize_t rows,
                      Py_ssize_t batch, double* work, double* bsum,
                      const Optim* opt, double rate, double* grad,
                      double* m1, double* m2, double* wt,
                      const double* x_next, bint z_ready,
                      const bf_csr* sp) noexcept nogil
    double (*batch_s)(const Net* net, float* params, const float* X,
                      const float* Y, const float* sw, Py_ssize_t rows,
                      Py_ssize_t batch, float* work, double* bsum,
                      const Optim* opt, double rate, float* grad,
                      float* m1, float* m2, float* wt,
                      const float* x_next, bint z_ready,
                      const bf_csr* sp) noexcept nogil
    const float* (*rounded_s)(const Net* net, const float* a, Py_ssize_t n,
                              void* dst) noexcept nogil
    void (*forward_chunk_d)(const Net* net, const double* params, const double* pw,
                            const double* X, double* out, Py_ssize_t rows,
                            Py_ssize_t batch, double* work, const bf_csr* sp) noexcept nogil
    void (*forward_chunk_s)(const Net* net, const float* params, const float* pw,
                            const float* X, float* out, Py_ssize_t rows,
                            Py_ssize_t batch, float* work, const bf_csr* sp) noexcept nogil
    void (*output_forward_d)(int act, double* Z, Py_ssize_t rows, Py_ssize_t n) noexcept nogil
    void (*output_forward_s)(int act, float* Z, Py_ssize_t rows, Py_ssize_t n) noexcept nogil
    double (*output_delta_d)(const Net* net, double* Z, const double* Y,
                             const double* sw, double* D, double* bsum,
                             Py_ssize_t rows) noexcept nogil
    double (*output_delta_s)(const Net* net, float* Z, const float* Y,
                             const float* sw, float* D, double* bsum,
                             Py_ssize_t rows) noexcept nogil
    bint (*all_finite_d)(const double* x, Py_ssize_t n) noexcept nogil
    bint (*all_finite_s)(const float* x, Py_ssize_t n) noexcept nogil
    void (*extremes_d)(const double* x, Py_ssize_t n, double* lo, double* hi) noexcept nogil
    void (*extremes_s)(const float* x, Py_ssize_t n, float* lo, float* hi) noexcept nogil
    void (*round_bf16)(const float* src, float* dst, Py_ssize_t n) noexcept nogil
    void (*elementwise_d)(int which, double* x, Py_ssize_t n) noexcept nogil
    void (*elementwise_s)(int which, float* x, Py_ssize_t n) noexcept nogil
