"""Fused backpropagation for dense networks.

Layout. The parameters of all layers live in one flat buffer, layer after
layer: W_m (n_out x n_in, row-major) then b_m (n_out). Rows are samples:
z = a_prev @ W.T + b. The workspace for a batch of B rows holds, in order,
the activations of layers 1..L (B x n_m each), two delta buffers (B x widest)
and gather buffers for a shuffled minibatch of X (B x n_0), Y (B x n_L) and
the sample weights (B), then, for layers where _transposed_first says so,
room for the first layer's weights transposed; ``workspace_size`` gives its
length.
A double buffer, ``bsum``, of ``bsum_size`` elements accumulates bias gradients
(and holds per-row sums of the softmax cost before that).

Contract. The ``def`` functions take only contiguous typed memoryviews and
scalars whose shapes the caller (backprop_fast.Network) has checked; they run
with the GIL released, allocate nothing, and report trouble by a status code.
Costs are summed over samples in double; the caller divides.

Engines. This module, the same for every CPU, is compiled once; the hot
loops it calls live in src/_engine.pyx, compiled once per instruction set,
and run through the table of the engine that ``use`` chose.
"""
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from cpython.ref cimport PyObject, Py_XDECREF
from cpython.pycapsule cimport PyCapsule_GetPointer

# What the CPU and the operating system support, for backprop_fast/_kernels.py
# to choose a variant of this module.
cdef extern from "bf_common.h":
    int bf_cpu_avx2() nogil
    int bf_cpu_avx512() nogil

from cython cimport floating

from _activations cimport (
    ACT_IDENTITY, ACT_RELU, ACT_SIGMOID, ACT_SOFTMAX, ACT_TANH,
    LOSS_CROSS_ENTROPY, LOSS_POISSON, LOSS_SQUARED_ERROR,
)
from _blas cimport SMALL_PRODUCT
from _core cimport (
    bf_csr, Engine, Net, Opts, Optim, Rng, Run, _total_width, _transposed_first,
    STATUS_OK, STATUS_NONFINITE_COST, STATUS_NONFINITE_PARAMS,
    STATUS_DIVERGED_KEPT_BEST, OPT_SGD, OPT_ADAM, OPT_ADAMW, SCHED_CONSTANT,
    SCHED_INVSCALING, SCHED_COSINE, SCHED_PLATEAU, SCHED_ADAPTIVE, STOP_PATIENCE,
    STOP_SKLEARN, METRIC_NONE, METRIC_ACCURACY, METRIC_R2, METRIC_UNITS, H_LOSS,
    H_VAL_LOSS, H_VAL_ACCURACY, H_RATE, H_TIME, H_VAL_SCORE, H_COLUMNS,
)


cdef Py_ssize_t _csr_open(object arrays, Py_ssize_t n_in, bf_csr* x,
                          const floating* like) except -1:
    """Check a CSR matrix given as (indptr, indices, data), int64, int64 and
    the network's type, and describe it in x; returns its number of rows.

    The kernel's own check, as _check_rows is: every offset and column the
    products read must lie inside the arrays and the layer."""
    cdef const int64_t[::1] indptr
    cdef const int64_t[::1] indices
    cdef const floating[::1] data
    cdef Py_ssize_t n, i, nnz
    cdef bint ok = True
    indptr, indices, data = arrays
    n = indptr.shape[0] - 1
    nnz = indices.shape[0]
    if n < 1 or data.shape[0] != nnz or indptr[0] != 0 or indptr[n] != nnz:
        raise ValueError("the sparse X's arrays do not describe a CSR matrix")
    with nogil:
        for i in range(n):
            if indptr[i + 1] < indptr[i]:
                ok = False
        for i in range(nnz):
            if indices[i] < 0 or indices[i] >= n_in:
                ok = False
    if not ok:
        raise ValueError("the sparse X's offsets or column indices are out of range")
    x.indptr = &indptr[0]
    x.indices = &indices[0] if nnz > 0 else NULL
    x.data = &data[0] if nnz > 0 else NULL
    x.rows = NULL
    x.first = 0
    return n


HISTORY_COLUMNS = ("loss", "val_loss", "val_accuracy", "learning_rate", "time", "val_score")
# The codes of the names backprop_fast/network.py takes, from the enums
# above and _activations.pxd: one source for the module and its caller.
ACTIVATION_CODES = {"sigmoid": ACT_SIGMOID, "tanh": ACT_TANH, "relu": ACT_RELU,
                    "identity": ACT_IDENTITY, "softmax": ACT_SOFTMAX}
LOSS_CODES = {"squared_error": LOSS_SQUARED_ERROR, "cross_entropy": LOSS_CROSS_ENTROPY,
              "poisson": LOSS_POISSON}
OPTIMIZER_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM, "adamw": OPT_ADAMW}
SCHEDULE_CODES = {"constant": SCHED_CONSTANT, "invscaling": SCHED_INVSCALING,
                  "cosine": SCHED_COSINE, "plateau": SCHED_PLATEAU,
                  "adaptive": SCHED_ADAPTIVE}
STOPPING_CODES = {"patience": STOP_PATIENCE, "sklearn": STOP_SKLEARN}
METRIC_CODES = {None: METRIC_NONE, "accuracy": METRIC_ACCURACY, "r2": METRIC_R2}
STATUS_NONFINITE_COST_CODE = STATUS_NONFINITE_COST
# A divergence that scikit-learn's rules absorb (see fit_call): not an error.
STATUS_DIVERGED_KEPT_BEST_CODE = STATUS_DIVERGED_KEPT_BEST
# Products of more multiply-adds than this leave the small loops for bf_gemm
# (one chain of multiply-adds per element, k in order, on the call's threads).
SMALL_PRODUCT_MACS = SMALL_PRODUCT


# The engine every call runs on: the table of one of the _engine modules,
# chosen by use().
cdef const Engine* E = NULL
engine = None


def use(module):
    """Run every call from now on with the hot loops of ``module``, one of
    the ``backprop_fast._engine*`` modules (backprop_fast/_kernels.py
    chooses it)."""
    global E, engine
    cdef const Engine* e = <const Engine*>PyCapsule_GetPointer(module.ENGINE,
                                                               "backprop_fast engine")
    if e.size != sizeof(Engine) + sizeof(Run):
        raise ImportError(f"{module.__name__} was built from other sources than "
                          f"{__name__}: rebuild backprop_fast")
    E = e
    engine = module


def checked():
    """Whether the engine in use was built in the checked mode."""
    return bool(E.checked)


# Until backprop_fast/_kernels.py chooses, the baseline engine: no call ever
# finds the table empty.
from . import _engine as _baseline
use(_baseline)


# The engine's entry points, under the names the calls below use.
cdef inline int _gemm_start(Net* net, Py_ssize_t batch, int n_threads, size_t itemsize,
                            bint sparse=False) except -1:
    return E.gemm_start(net, batch, n_threads, itemsize, sparse)


cdef inline void _gemm_end(Net* net) noexcept:
    E.gemm_end(net)


cdef inline double _batch(const Net* net, floating* params, const floating* X,
                          const floating* Y, const floating* sw, Py_ssize_t rows,
                          Py_ssize_t batch, floating* work, double* bsum,
                          const Optim* opt, double rate, floating* grad,
                          floating* m1, floating* m2, floating* wt,
                          const floating* x_next, bint z_ready,
                          const bf_csr* sp) noexcept nogil:
    if floating is double:
        return E.batch_d(net, params, X, Y, sw, rows, batch, work, bsum, opt, rate, grad,
                         m1, m2, wt, x_next, z_ready, sp)
    else:
        return E.batch_s(net, params, X, Y, sw, rows, batch, work, bsum, opt, rate, grad,
                         m1, m2, wt, x_next, z_ready, sp)


cdef inline const floating* _rounded(const Net* net, const floating* a, Py_ssize_t n,
                                     void* dst) noexcept nogil:
    if floating is double:
        return a
    else:
        return E.rounded_s(net, a, n, dst)


cdef inline void _forward_chunk(const Net* net, const floating* params, const floating* pw,
                                const floating* X, floating* out, Py_ssize_t rows,
                                Py_ssize_t batch, floating* work,
                                const bf_csr* sp) noexcept nogil:
    if floating is double:
        E.forward_chunk_d(net, params, pw, X, out, rows, batch, work, sp)
    else:
        E.forward_chunk_s(net, params, pw, X, out, rows, batch, work, sp)


cdef inline void _output_forward(int act, floating* Z, Py_ssize_t rows,
                                 Py_ssize_t n) noexcept nogil:
    if floating is double:
        E.output_forward_d(act, Z, rows, n)
    else:
        E.output_forward_s(act, Z, rows, n)


cdef inline double _output_delta(const Net* net, floating* Z, const floating* Y,
                                 const floating* sw, floating* D, double* bsum,
                                 Py_ssize_t rows) noexcept nogil:
    if floating is double:
        return E.output_delta_d(net, Z, Y, sw, D, bsum, rows)
    else:
        return E.output_delta_s(net, Z, Y, sw, D, bsum, rows)


cdef inline bint _all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return E.all_finite_d(x, n)
    else:
        return E.all_finite_s(x, n)


cdef inline void _extremes(const floating* x, Py_ssize_t n, floating* lo,
                           floating* hi) noexcept nogil:
    if floating is double:
        E.extremes_d(x, n, lo, hi)
    else:
        E.extremes_s(x, n, lo, hi)


def threads(int n_threads=0):
    """How many threads a call's wide products may use: ``n_threads`` (0 for
    no limit of its own) capped by OpenMP's limit for the calling thread
    (OMP_NUM_THREADS, threadpoolctl); 1 in a process forked from one that
    used the kernel's threads."""
    return E.threads(n_threads)


cdef int _init_net(Net* net, const Py_ssize_t[::1] sizes, const int[::1] acts,
                   int loss, bint bf16=False) except -1:
    cdef Py_ssize_t m
    net.n_params = 0
    net.widest = 0
    net.most = 0
    net.bf16 = bf16
    net.rw = net.ra = net.rd = NULL
    if sizes.shape[0] != acts.shape[0] + 1 or acts.shape[0] < 1:
        raise ValueError("sizes must have one entry more than acts")
    for m in range(sizes.shape[0]):
        if sizes[m] < 1:
            raise ValueError("layer sizes must be positive")
    for m in range(acts.shape[0]):
        if not ACT_SIGMOID <= acts[m] <= ACT_SOFTMAX or (
                acts[m] == ACT_SOFTMAX and m != acts.shape[0] - 1):
            raise ValueError("unknown activation code, or softmax before the last layer")
    if loss != LOSS_SQUARED_ERROR and loss != LOSS_CROSS_ENTROPY and not (
            loss == LOSS_POISSON and acts[acts.shape[0] - 1] == ACT_IDENTITY):
        raise ValueError("unknown loss code, or poisson without an identity output")
    net.n_layers = acts.shape[0]
    net.gemm.buf = NULL
    net.gemm.bytes = 0
    net.gemm.threads = 1
    net.sizes = &sizes[0]
    net.acts = &acts[0]
    net.loss = loss
    for m in range(net.n_layers):
        net.n_params += sizes[m + 1] * (sizes[m] + 1)
        net.widest = max(net.widest, sizes[m + 1])
    net.most = max(net.widest, sizes[0])
    return 0


cdef Py_ssize_t _bsum_size(const Net* net, Py_ssize_t batch) noexcept nogil:
    # Bias gradients, or three numbers a row for the softmax cost.
    return max(net.widest, 3 * batch)


def bsum_size(const Py_ssize_t[::1] sizes, const int[::1] acts, Py_ssize_t batch):
    """Length of the double buffer ``bsum`` for batches of ``batch`` rows."""
    cdef Net net
    _init_net(&net, sizes, acts, 0)
    return _bsum_size(&net, batch)


cdef Py_ssize_t _workspace_size(const Net* net, Py_ssize_t batch) noexcept nogil:
    return (batch * (_total_width(net) + 2 * net.widest + net.sizes[0]
                     + net.sizes[net.n_layers] + 1)
            + (4 * net.sizes[0] * net.sizes[1] if _transposed_first(net, batch) else 0))


cdef Py_ssize_t _workspace_size_csr(const Net* net, Py_ssize_t batch) noexcept nogil:
    # A sparse X's rows are named, not gathered, and its first layer is not
    # transposed: no room for either.
    return batch * (_total_width(net) + 2 * net.widest + net.sizes[net.n_layers] + 1)


def workspace_size(const Py_ssize_t[::1] sizes, const int[::1] acts,
                   Py_ssize_t batch, bint sparse=False):
    """Length of the floating workspace for batches of ``batch`` rows (of a
    sparse X where ``sparse``)."""
    cdef Net net
    _init_net(&net, sizes, acts, 0)
    return _workspace_size_csr(&net, batch) if sparse else _workspace_size(&net, batch)


cdef int _check_rows(const Net* net, Py_ssize_t n, Py_ssize_t x_rows, Py_ssize_t x_cols,
                     Py_ssize_t y_rows, Py_ssize_t y_cols) except -1:
    """The kernel's own check that X (and Y, where y_rows >= 0) match the
    network: never trust a caller with memory the kernel reads unchecked."""
    if x_rows != n or x_cols != net.sizes[0] or (
            y_rows >= 0 and (y_rows != n or y_cols != net.sizes[net.n_layers])):
        raise ValueError("arrays do not match the network's layer sizes")
    return 0


def all_finite(const floating[::1] x):
    """Whether every element of x is finite: one pass over memory, at its
    speed (NumPy's isfinite(x).all() makes a boolean array first)."""
    cdef bint finite
    with nogil:
        finite = x.shape[0] == 0 or _all_finite(&x[0], x.shape[0])
    return finite


def extremes(const floating[::1] x):
    """(min, max) of a non-empty x as floats: both finite exactly when
    every element is (both NaN if one is NaN; an infinity shows).

    One pass, for the range checks of targets: NumPy's min, max and
    isfinite are three, and cost tens of microseconds in dispatch on a cold
    cache.
    """
    cdef floating lo, hi
    if x.shape[0] == 0:
        raise ValueError("extremes of an empty array")
    with nogil:
        _extremes(&x[0], x.shape[0], &lo, &hi)
    return float(lo), float(hi)


def dense_labels(const int64_t[::1] y):
    """k where the labels y are exactly the classes 0..k-1, each occurring
    at least once, else 0: scikit-learn's classes and label codes are then
    y's own values (``np.unique`` would sort a copy to find them)."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef int64_t lo, hi
    cdef unsigned char* seen
    cdef Py_ssize_t k = 0
    if n == 0:
        return 0
    lo = hi = y[0]
    for i in range(1, n):
        lo = min(lo, y[i])
        hi = max(hi, y[i])
    if lo != 0 or hi >= n:
        return 0
    seen = <unsigned char*>malloc(hi + 1)
    if seen == NULL:
        raise MemoryError()
    memset(seen, 0, hi + 1)
    for i in range(n):
        k += not seen[y[i]]
        seen[y[i]] = 1
    free(seen)
    return hi + 1 if k == hi + 1 else 0


def label_codes(const int64_t[::1] classes, const int64_t[::1] y, int64_t[::1] codes):
    """codes[i] = the position of y[i] in ``classes`` (sorted, distinct),
    found by bisection; returns how many of the classes occur in y, or -1
    where a label is not one of them (codes then partly written)."""
    cdef Py_ssize_t i, lo, hi, mid, k = classes.shape[0], n = y.shape[0], seen = 0
    cdef unsigned char* hit
    if codes.shape[0] != n:
        raise ValueError("label_codes: codes needs one entry per label")
    for i in range(1, k):
        if not classes[i - 1] < classes[i]:
            raise ValueError("label_codes: the classes must be sorted and distinct")
    hit = <unsigned char*>calloc(k + 1, 1)
    if hit == NULL:
        raise MemoryError()
    for i in range(n):
        lo = 0
        hi = k
        while lo < hi:
            mid = (lo + hi) // 2
            if classes[mid] < y[i]:
                lo = mid + 1
            else:
                hi = mid
        if lo == k or classes[lo] != y[i]:
            seen = -1
            break
        codes[i] = lo
        seen += not hit[lo]
        hit[lo] = 1
    free(hit)
    return seen


def one_hot(const int64_t[::1] y, floating[:, ::1] Y):
    """Y[i] = the indicator row of class y[i], every entry written: the
    targets of integer labels for a softmax output."""
    cdef Py_ssize_t i, j, n = y.shape[0], k = Y.shape[1]
    if Y.shape[0] != n:
        raise ValueError("one_hot: Y needs one row per label")
    for i in range(n):
        if not 0 <= y[i] < k:
            raise ValueError(f"one_hot: label {y[i]} outside 0..{k - 1}")
    with nogil:
        for i in range(n):
            for j in range(k):
                Y[i, j] = 0
            Y[i, y[i]] = 1


def r2_terms(const double[::1] y, const floating[::1] pred):
    """(sum of (y - pred)**2, sum of (y - mean(y))**2) in double: the
    numerator and denominator of r2_score for one unweighted target, in one
    call (the regressors' score on a small input would spend more on
    NumPy's dispatch for these sums than on the forward pass)."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef double s = 0, mean, e, c, sse = 0, sst = 0
    if pred.shape[0] != n or n == 0:
        raise ValueError("r2_terms needs two non-empty arrays of one length")
    with nogil:
        for i in range(n):
            s += y[i]
        mean = s / n
        for i in range(n):
            e = y[i] - pred[i]
            c = y[i] - mean
            sse += e * e
            sst += c * c
    return sse, sst


def finite_rows(const floating[:, ::1] a, bint unit):
    """Whether the 2-D array a holds only finite values, all within [0, 1]
    where ``unit``: fit's checks of an X or y that is already C-contiguous
    in the network's dtype, made on the array as it is (a flattened view,
    its flags and its dtype each cost tens of microseconds with cold
    caches, as a call between other work has them)."""
    cdef Py_ssize_t n = a.shape[0] * a.shape[1]
    cdef floating lo, hi
    cdef bint ok
    if n == 0:
        return True
    with nogil:
        if unit:
            _extremes(&a[0, 0], n, &lo, &hi)
            ok = isfinite(lo) and isfinite(hi) and lo >= 0 and hi <= 1
        else:
            ok = _all_finite(&a[0, 0], n)
    return ok

# --------------------------------------------------------------- shuffling


# --------------------------------------------------------------- shuffling

cdef void _rng_seed(Rng* rng, uint64_t seed) noexcept nogil:
    # splitmix64 fills the xoshiro256** state from one 64-bit seed.
    cdef uint64_t z
    cdef uint64_t* s = &rng.s0
    cdef int i
    for i in range(4):
        seed += 0x9E3779B97F4A7C15ULL
        z = seed
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
        s[i] = z ^ (z >> 31)




def rng_seed(uint64_t[::1] state, uint64_t seed):
    """Fill a 4-word xoshiro256** state from one 64-bit seed."""
    cdef Rng rng
    if state.shape[0] != 4:
        raise ValueError("state must have 4 words")
    _rng_seed(&rng, seed)
    memcpy(&state[0], &rng, sizeof(Rng))


# ------------------------------------------------------------ typed views

ctypedef fused _item:
    float
    double
    Py_ssize_t
    int
    uint64_t


def view(_item[::1] a):
    """``a`` as the typed memoryview object that the functions here take in
    without acquiring and checking its buffer again: for arrays passed on
    every call, about 0.2 us saved an argument."""
    return a


def view_readonly(const _item[::1] a):
    """``view`` for a read-only array: for parameters ``const`` here only."""
    return a


def view2(floating[:, ::1] a):
    """``view`` for a 2-D array."""
    return a




cdef inline floating* _ptr(floating[::1] a) noexcept:
    # NULL for an empty buffer: its data pointer must not be taken by index.
    return &a[0] if a.shape[0] > 0 else NULL




cdef class Settings:
    """Scalar options of one fit call, set by backprop_fast.Network."""
    cdef public Py_ssize_t epochs, batch, patience
    cdef public double learning_rate, momentum, beta1, beta2, epsilon
    cdef public double weight_decay, power_t, min_delta
    cdef public int optimizer, schedule
    cdef public bint nesterov, shuffle, early_stopping, restore_best
    # scikit-learn's rules (stopping == STOP_SKLEARN): tol, n_iter_no_change
    # (may be inf), the validation score, and loss_penalty times the sum of
    # the squared weights added to each epoch's training cost.
    cdef public int stopping, val_metric
    cdef public double tol, n_iter_no_change, loss_penalty
    # IN/OUT state of those rules, carried from call to call: the best
    # training cost and validation score so far, the epochs without
    # improvement, the samples trained on (for invscaling) and the rate.
    cdef public double best_loss, best_score, no_improvement, samples_seen, rate


# Settings as a C struct, for the training loop without the GIL.


cdef void _read_settings(Settings s, Opts* o) noexcept:
    o.epochs = s.epochs
    o.batch = s.batch
    o.patience = s.patience
    o.learning_rate = s.learning_rate
    o.momentum = s.momentum
    o.beta1 = s.beta1
    o.beta2 = s.beta2
    o.epsilon = s.epsilon
    o.weight_decay = s.weight_decay
    o.power_t = s.power_t
    o.min_delta = s.min_delta
    o.optimizer = s.optimizer
    o.schedule = s.schedule
    o.nesterov = s.nesterov
    o.shuffle = s.shuffle
    o.early_stopping = s.early_stopping
    o.restore_best = s.restore_best
    o.stopping = s.stopping
    o.val_metric = s.val_metric
    o.tol = s.tol
    o.n_iter_no_change = s.n_iter_no_change
    o.loss_penalty = s.loss_penalty
    o.best_loss = s.best_loss
    o.best_score = s.best_score
    o.no_improvement = s.no_improvement
    o.samples_seen = s.samples_seen
    o.rate = s.rate


cdef void _write_state(const Opts* o, Settings s) noexcept:
    """The stopping rules' state back into the caller's Settings."""
    s.best_loss = o.best_loss
    s.best_score = o.best_score
    s.no_improvement = o.no_improvement
    s.samples_seen = o.samples_seen
    s.rate = o.rate


cdef inline const floating* _cptr(const floating[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


cdef class FitCall:
    """One network's fit, checked against its network by ``fit_call`` and
    run by ``run_fits``. It keeps alive every buffer it points into."""
    cdef Run r
    cdef object keep
    cdef Settings settings
    cdef object hook
    cdef void* scratch      # the run's own scratch (fit_call's own_scratch), or NULL

    def __dealloc__(self):
        Py_XDECREF(self.r.error)
        self.r.error = NULL
        free(self.scratch)
        self.scratch = NULL


cdef inline size_t _lines(size_t nbytes) noexcept nogil:
    """nbytes rounded up to whole 64-byte lines."""
    return (nbytes + 63) // 64 * 64


cdef int _own_scratch(FitCall c, Py_ssize_t n, size_t work_bytes, Py_ssize_t bsum_size,
                      size_t params_bytes, bint best, bint grad) except -1:
    """c's run's scratch (see fit_call's own_scratch) in one block of
    64-byte-aligned parts."""
    cdef Run* r = &c.r
    cdef size_t total = (_lines(n * sizeof(Py_ssize_t)) + _lines(work_bytes)
                         + _lines(bsum_size * sizeof(double))
                         + (1 + best + grad) * _lines(params_bytes))
    cdef char* block = <char*>malloc(total + 64)
    if block == NULL:
        raise MemoryError()
    c.scratch = block
    block += (64 - <size_t>block % 64) % 64
    r.order = <Py_ssize_t*>block
    block += _lines(n * sizeof(Py_ssize_t))
    r.work = block
    block += _lines(work_bytes)
    r.bsum = <double*>block
    block += _lines(bsum_size * sizeof(double))
    r.snapshot = block
    block += _lines(params_bytes)
    r.best = NULL
    r.grad = NULL
    if best:
        r.best = block
        block += _lines(params_bytes)
    if grad:
        r.grad = block
    return 0


def fit_call(floating[::1] params, const Py_ssize_t[::1] sizes, const int[::1] acts,
             int loss, const floating[:, ::1] X, const floating[:, ::1] Y,
             const floating[::1] sample_weight, const floating[:, ::1] X_val,
             const floating[:, ::1] Y_val, Settings settings not None,
             uint64_t[::1] rng_state, int64_t[::1] step, Py_ssize_t[::1] order,
             floating[::1] work, double[::1] bsum, floating[::1] grad,
             floating[::1] m1, floating[::1] m2, floating[::1] snapshot,
             floating[::1] best, double[:, ::1] history, object epoch_end,
             const floating[::1] val_weight=None, double[::1] val_stats=None,
             object x_sparse=None, object val_sparse=None, bint bf16=False,
             bint own_scratch=False):
    """Check one fit's arguments against its network; returns the FitCall
    that ``run_fits`` runs.

    IN: X (n x n_0), Y (n x n_L); sample_weight (n, or empty for weights of
    1); X_val, Y_val (empty for no validation); settings.
    SCRATCH: order (n), work and bsum as laid out by workspace_size for
    settings.batch rows, snapshot (n_params), grad (n_params, or empty for
    plain SGD), best (n_params, or empty without restore_best).
    IN/OUT: params; m1, m2 the optimizer state (momentum buffer, Adam's
    moments; empty where unused); step, Adam's step count; rng_state, the
    shuffling generator, continued across calls.
    OUT: history[e, :] = loss, val_loss, val_accuracy, learning rate,
    seconds and validation score of epoch e (NaN where not measured).

    With settings.stopping == STOP_SKLEARN the epoch loop applies
    scikit-learn's MLP rules: after each epoch the training cost (plus the
    L2 term) or, with settings.val_metric, the validation score (val_weight,
    n_val weights or empty; val_stats, 2 * n_L doubles, the first n_L the
    weighted sums of squares of Y_val's columns for R^2) updates the count
    of epochs without an improvement of more than tol; invscaling sets the
    rate from the samples seen; past n_iter_no_change the "adaptive"
    schedule divides the rate by 5 (while above 1e-6), the others stop. The
    rules' state lives in settings, written back when the run ends.

    ``x_sparse``, ``val_sparse``: None, or X (X_val) as a CSR matrix in a
    tuple (indptr, indices, data) of int64, int64 and the network's type,
    its indices sorted within each row; X (X_val) is then an empty
    (0, n_0) array. Minibatches of a sparse X name their rows in the
    shuffled order rather than copy them.

    ``epoch_end``, None or a callable, is called with the GIL after each
    epoch as epoch_end(e); a true result stops training.

    ``bf16``: the mixed_bfloat16 policy (float32 only): every product reads
    its inputs rounded to bfloat16 (the caller rounds a sparse X's values,
    see round_bfloat16); parameters, optimizer state, activations and
    deltas stay float32.

    ``own_scratch``: the FitCall allocates order, work, bsum, snapshot,
    grad and best itself, for the run only (those arguments are then not
    read): for a small network, where a fresh buffer's view costs more than
    its allocation (a large one's scratch would page-fault on every call).
    """
    cdef FitCall c = FitCall.__new__(FitCall)
    cdef Run* r = &c.r
    cdef Net* net = &r.net
    cdef Py_ssize_t n = X.shape[0], n_val = X_val.shape[0], batch = settings.batch
    cdef bint is_sp = x_sparse is not None, val_sp = val_sparse is not None
    cdef bint weighted = sample_weight.shape[0] > 0
    cdef floating* p = &params[0]
    cdef bint keep_best, fold
    cdef int metric
    cdef Py_ssize_t work_size
    _check_bf16(bf16, p)
    _init_net(net, sizes, acts, loss, bf16)
    if is_sp:
        n = _csr_open(x_sparse, sizes[0], &r.xs, p)
    if val_sp:
        n_val = _csr_open(val_sparse, sizes[0], &r.vs, p)
    # Set once the validation rows are counted, dense or sparse.
    metric = settings.val_metric if n_val > 0 else METRIC_NONE
    keep_best = (settings.early_stopping and settings.restore_best
                 and (settings.stopping != STOP_SKLEARN or metric != METRIC_NONE))
    work_size = _workspace_size(net, batch) if not is_sp else _workspace_size_csr(net, batch)
    if (params.shape[0] != net.n_params or history.shape[0] < settings.epochs
            or history.shape[1] != H_COLUMNS or rng_state.shape[0] != 4
            or (weighted and sample_weight.shape[0] != n)
            or batch < 1 or settings.epochs < 0 or step.shape[0] < 1
            or not own_scratch and (work.shape[0] < work_size
                                    or bsum.shape[0] < _bsum_size(net, batch)
                                    or snapshot.shape[0] != net.n_params
                                    or order.shape[0] < n)):
        raise ValueError("buffers do not match the network")
    _check_rows(net, n, n if is_sp else X.shape[0], X.shape[1], Y.shape[0], Y.shape[1])
    if n_val > 0:
        _check_rows(net, n_val, n_val if val_sp else X_val.shape[0],
                    X_val.shape[1], Y_val.shape[0], Y_val.shape[1])
    fold = (settings.optimizer == OPT_SGD and settings.momentum == 0
            and settings.weight_decay == 0)
    if not fold and (not own_scratch and grad.shape[0] != net.n_params
                     or (settings.optimizer != OPT_SGD or settings.momentum != 0)
                     and m1.shape[0] != net.n_params
                     or settings.optimizer != OPT_SGD and m2.shape[0] != net.n_params):
        raise ValueError("optimizer buffers do not match the network")
    if keep_best and not own_scratch and best.shape[0] != net.n_params:
        raise ValueError("best must hold the parameters")
    r.vw = NULL
    r.vstats = NULL
    if metric != METRIC_NONE:
        if val_weight is not None and val_weight.shape[0] > 0:
            if val_weight.shape[0] != n_val:
                raise ValueError("val_weight must hold one weight per validation row")
            r.vw = &val_weight[0]
        if val_stats is None or val_stats.shape[0] < 2 * sizes[net.n_layers]:
            raise ValueError("val_stats must hold 2 * n_L numbers")
        r.vstats = &val_stats[0]
    _read_settings(settings, &r.s)
    r.s.val_metric = metric
    r.dbl = floating is double
    r.params = p
    r.X = &X[0, 0] if X.shape[0] > 0 else NULL
    r.Y = &Y[0, 0] if Y.shape[0] > 0 else NULL
    r.sw = _cptr(sample_weight)
    r.Xv = &X_val[0, 0] if n_val > 0 and not val_sp else NULL
    r.Yv = &Y_val[0, 0] if n_val > 0 else NULL
    r.n = n
    r.n_val = n_val
    r.is_sp = is_sp
    r.val_sp = val_sp
    r.rng_state = &rng_state[0]
    r.step = &step[0]
    r.m1 = _ptr(m1)
    r.m2 = _ptr(m2)
    if own_scratch:
        _own_scratch(c, n, work_size * sizeof(floating), _bsum_size(net, batch),
                     net.n_params * sizeof(floating), keep_best, not fold)
    else:
        r.order = &order[0] if order.shape[0] > 0 else NULL
        r.work = &work[0]
        r.bsum = &bsum[0]
        r.grad = _ptr(grad)
        r.snapshot = &snapshot[0]
        r.best = _ptr(best)
    r.history = &history[0, 0] if history.shape[0] > 0 else NULL
    r.hook = NULL if epoch_end is None else <PyObject*>epoch_end
    r.abort = NULL
    r.error = NULL
    r.busy = False
    c.hook = epoch_end
    c.settings = settings
    # The buffers the pointers above lead into.
    c.keep = (params, sizes, acts, X, Y, sample_weight, X_val, Y_val, rng_state, step,
              order, work, bsum, grad, m1, m2, snapshot, best, history, val_weight,
              val_stats, x_sparse, val_sparse)
    return c


def run_fits(list calls, int n_threads=0, bint spread=True):
    """Run the FitCalls of ``calls`` in one native call, the GIL released.

    With ``spread``, several calls spread over ``n_threads`` threads (see
    ``threads``), one network per thread at a time and each network's
    products on its own thread, and networks that the engine's _lane_ready
    and _lane_mates accept train together in the lanes of one vector
    (_fit_lanes, grouped by _group), a group being one task. Otherwise
    (callbacks: each network's epochs end where the callbacks run) the
    calls run one after another, each on its own, in order, on the calling
    thread, their products on all of them. Every network's arithmetic is
    that of a call on its own, so results do not depend on how the calls
    are grouped.

    Signals are checked every million or so multiply-adds, so Ctrl-C stops
    every network at a minibatch boundary. An exception (Ctrl-C, or one
    raised by an epoch_end callback) stops all the calls so, and is raised
    once each has stopped and kept what it finished.

    Returns one (status, epochs_done, best_epoch) per call. On a non-finite
    cost the parameters of the last finished step are kept if finite,
    otherwise those at the start of the epoch (checked finite) are restored.
    """
    cdef Py_ssize_t m = len(calls), k
    cdef int most = E.threads(n_threads)
    cdef bint in_order = not spread
    spread = spread and m > 1 and most > 1
    cdef int abort = 0
    cdef Run** runs
    cdef FitCall c
    cdef object error = None
    for k in range(m):
        if not isinstance(calls[k], FitCall):
            raise TypeError("run_fits takes a list of FitCall objects")
        if (<FitCall>calls[k]).r.busy:
            raise ValueError("a FitCall is already running, or given twice")
    if m == 0:
        return []
    runs = <Run**>malloc(m * sizeof(Run*))
    if runs == NULL:
        raise MemoryError()
    try:
        for k in range(m):
            c = calls[k]
            runs[k] = &c.r
            c.r.busy = True
            c.r.abort = &abort
            Py_XDECREF(c.r.error)
            c.r.error = NULL
            c.r.status = STATUS_OK
            c.r.done = 0
            c.r.best_epoch = -1
            # A dense validation set of a sparse X still needs the dense
            # first layer.
            _gemm_start(&c.r.net, c.r.s.batch, 1 if spread else most,
                        sizeof(double) if c.r.dbl else sizeof(float),
                        c.r.is_sp and (c.r.n_val == 0 or c.r.val_sp))
        with nogil:
            if in_order:
                for k in range(m):
                    E.run_tasks(1, 1, runs + k)
            else:
                E.run_tasks(m, most if spread else 1, runs)
    finally:
        for k in range(m):
            c = calls[k]
            if c.r.busy:
                _gemm_end(&c.r.net)
                _write_state(&c.r.s, c.settings)
                c.r.abort = NULL
                c.r.busy = False
        free(runs)
    for k in range(m):
        c = calls[k]
        if c.r.error != NULL:
            # Ctrl-C before any callback's exception: the user asked to stop.
            if error is None or (isinstance(<object>c.r.error, KeyboardInterrupt)
                                 and not isinstance(error, KeyboardInterrupt)):
                error = <object>c.r.error
            Py_XDECREF(c.r.error)
            c.r.error = NULL
    if error is not None:
        raise error
    return [((<FitCall>c).r.status, (<FitCall>c).r.done, (<FitCall>c).r.best_epoch)
            for c in calls]




cdef const floating* _weights(const floating[::1] w, Py_ssize_t n) except? NULL:
    """The weights' data, NULL for None; one per row or a ValueError."""
    if w is None:
        return NULL
    if w.shape[0] != n:
        raise ValueError("sample_weight must hold one weight per row")
    return &w[0] if n > 0 else NULL


def gradients(const floating[::1] params, const Py_ssize_t[::1] sizes,
              const int[::1] acts, int loss, const floating[:, ::1] X,
              const floating[:, ::1] Y, floating[::1] grad,
              floating[::1] work, double[::1] bsum, int n_threads=0,
              object x_sparse=None, const floating[::1] sample_weight=None,
              bint bf16=False):
    """Mean gradient over all rows of X into grad; returns the cost sum.
    ``x_sparse``: as for fit (X is then an empty (0, n_0) array).
    ``sample_weight``: None, or one weight per row multiplying its cost.
    ``bf16``: as for fit_call."""
    cdef Net net
    cdef double cost
    cdef Py_ssize_t n = X.shape[0]
    cdef bf_csr xs
    cdef bint is_sp = x_sparse is not None
    cdef const floating* xp = NULL
    cdef const floating* sw
    _check_bf16(bf16, &params[0])
    _init_net(&net, sizes, acts, loss, bf16)
    if x_sparse is not None:
        n = _csr_open(x_sparse, sizes[0], &xs, &params[0])
    elif n > 0:
        xp = &X[0, 0]
    if (params.shape[0] != net.n_params or grad.shape[0] != net.n_params
            or work.shape[0] < (_workspace_size(&net, n) if not is_sp
                                else _workspace_size_csr(&net, n))
            or bsum.shape[0] < _bsum_size(&net, n) or n < 1):
        raise ValueError("buffers do not match the network")
    _check_rows(&net, n, n if is_sp else X.shape[0], X.shape[1],
                Y.shape[0], Y.shape[1])
    sw = _weights(sample_weight, n)
    _gemm_start(&net, n, n_threads, sizeof(floating), is_sp)
    try:
        with nogil:
            # _batch only writes params when grad is NULL.
            cost = _batch(&net, <floating*>&params[0], xp, &Y[0, 0], sw, n,
                          n, &work[0], &bsum[0], NULL, 0.0, &grad[0], NULL, NULL, NULL,
                          NULL, False, &xs if is_sp else NULL)
    finally:
        _gemm_end(&net)
    return cost




def predict(const floating[::1] params, const Py_ssize_t[::1] sizes,
            const int[::1] acts, const floating[:, ::1] X,
            floating[:, ::1] out, floating[::1] work, Py_ssize_t batch, int n_threads=0,
            object x_sparse=None, bint bf16=False):
    """Output activations of all rows of X, ``batch`` rows at a time.
    ``x_sparse``: as for fit (X is then an empty (0, n_0) array).
    ``bf16``: as for fit_call."""
    cdef Net net
    cdef Py_ssize_t n = X.shape[0], start, rows, n_out, L
    cdef bf_csr xs
    cdef bint is_sp = x_sparse is not None
    cdef const floating* pw
    _check_bf16(bf16, &params[0])
    _init_net(&net, sizes, acts, 0, bf16)
    if x_sparse is not None:
        n = _csr_open(x_sparse, sizes[0], &xs, &params[0])
    if (params.shape[0] != net.n_params or batch < 1
            or work.shape[0] < (_workspace_size(&net, batch) if not is_sp
                                else _workspace_size_csr(&net, batch))):
        raise ValueError("buffers do not match the network")
    _check_rows(&net, n, n if is_sp else X.shape[0], X.shape[1],
                out.shape[0], out.shape[1])
    L = net.n_layers
    n_out = sizes[L]
    _gemm_start(&net, min(batch, n), n_threads, sizeof(floating), is_sp)
    try:
        with nogil:
            pw = _rounded(&net, &params[0], net.n_params, net.rw)
            start = 0
            while start < n:
                rows = min(batch, n - start)
                xs.first = start
                _forward_chunk(&net, &params[0], pw,
                               &X[start, 0] if not is_sp else NULL,
                               &out[start, 0], rows, batch, &work[0],
                               &xs if is_sp else NULL)
                _output_forward(acts[L - 1], &out[start, 0], rows, n_out)
                start += rows
    finally:
        _gemm_end(&net)


def evaluate(const floating[::1] params, const Py_ssize_t[::1] sizes,
             const int[::1] acts, int loss, const floating[:, ::1] X,
             const floating[:, ::1] Y, floating[::1] work, double[::1] bsum,
             Py_ssize_t batch, int n_threads=0, object x_sparse=None,
             const floating[::1] sample_weight=None, bint bf16=False):
    """Sum over the rows of X of the per-sample cost, ``batch`` rows at a time.
    ``x_sparse``: as for fit (X is then an empty (0, n_0) array).
    ``sample_weight``: None, or one weight per row multiplying its cost.
    ``bf16``: as for fit_call."""
    cdef Net net
    cdef const floating* sw
    cdef Py_ssize_t n = X.shape[0], start, rows, n_out, L
    cdef double cost = 0
    cdef floating* z
    cdef bf_csr xs
    cdef bint is_sp = x_sparse is not None
    cdef const floating* pw
    _check_bf16(bf16, &params[0])
    _init_net(&net, sizes, acts, loss, bf16)
    if x_sparse is not None:
        n = _csr_open(x_sparse, sizes[0], &xs, &params[0])
    if (params.shape[0] != net.n_params or batch < 1
            or work.shape[0] < (_workspace_size(&net, batch) if not is_sp
                                else _workspace_size_csr(&net, batch))
            or bsum.shape[0] < _bsum_size(&net, batch)):
        raise ValueError("buffers do not match the network")
    _check_rows(&net, n, n if is_sp else X.shape[0], X.shape[1],
                Y.shape[0], Y.shape[1])
    sw = _weights(sample_weight, n)
    L = net.n_layers
    n_out = sizes[L]
    z = &work[0] + batch * (_total_width(&net) - n_out)
    _gemm_start(&net, min(batch, n), n_threads, sizeof(floating), is_sp)
    try:
        with nogil:
            pw = _rounded(&net, &params[0], net.n_params, net.rw)
            start = 0
            while start < n:
                rows = min(batch, n - start)
                xs.first = start
                _forward_chunk(&net, &params[0], pw,
                               &X[start, 0] if not is_sp else NULL, z, rows, batch,
                               &work[0], &xs if is_sp else NULL)
                cost += _output_delta(&net, z, &Y[start, 0], sw + start if sw != NULL else NULL,
                                      z + batch * n_out, &bsum[0], rows)
                start += rows
    finally:
        _gemm_end(&net)
    return cost


cdef int _check_bf16(bint bf16, const floating* p) except -1:
    # p only carries the type: bfloat16 rounding is defined on float32.
    if bf16 and floating is double:
        raise ValueError("the mixed_bfloat16 policy needs float32 parameters")
    return 0


def round_bfloat16(const float[::1] x, float[::1] out):
    """out = x rounded to the nearest bfloat16 (ties to even), as float32
    values: the rounding every product applies under mixed_bfloat16. NaN
    stays NaN, inf stays inf; x and out may be the same array."""
    if out.shape[0] != x.shape[0]:
        raise ValueError("out must have x's length")
    if x.shape[0] > 0:
        with nogil:
            E.round_bf16(&x[0], &out[0], x.shape[0])


def cpu_supports(str isa):
    """Whether this CPU can run the kernel variant ``isa`` ("avx2", "avx512")."""
    if isa == "avx2":
        return bool(bf_cpu_avx2())
    if isa == "avx512":
        return bool(bf_cpu_avx512())
    raise ValueError(f"unknown instruction set {isa!r}")


# ------------------------------------------------ shims for the test suite

def _test_element(const floating[::1] x, Py_ssize_t i):
    """x[i], indexed as the kernel indexes: in a checked build an index out
    of range raises IndexError (tests/test_checked_build.py's probe)."""
    return x[i]


def _test_elementwise(str name, floating[::1] x):
    """Apply one of the kernel's scalar functions to x in place."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int which = ["exp_neg", "expm1_neg", "log1p_unit", "sigmoid", "tanh",
                      "relu", "softplus", "log_ge1"].index(name)
    with nogil:
        if floating is double:
            E.elementwise_d(which, &x[0] if n > 0 else NULL, n)
        else:
            E.elementwise_s(which, &x[0] if n > 0 else NULL, n)
