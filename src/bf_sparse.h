/* The first layer's products on CSR rows of X, for fit, predict, evaluate
   and gradients when X is a scipy.sparse matrix: nothing of the size of a
   dense X is ever made.

   The arithmetic. Each output element is one chain of multiply-adds over
   the row's stored values, in the order the row stores them (ascending
   column: the caller sorts the indices), and it is summed by one thread:
   so the result is the same for any thread count. A dense product's chain
   runs over every column, the zeros included; a product with an exact
   zero leaves a finite sum as it was (but for the sign of a zero sum), so
   where the dense engine sums in column order too (bf_gemm's chains) the
   two agree but for that sign, and elsewhere (the small products' eight
   partial sums) they agree to rounding, not in every bit.

   The batch's rows are named by their row numbers in X (`rows`, the
   shuffled order of fit) or run from `first` on: a minibatch gathers row
   numbers, never the rows' values. */
#ifndef BF_SPARSE_H
#define BF_SPARSE_H

#include <stdint.h>
#include "bf_gemm.h"

typedef struct {
    const int64_t* indptr;     /* n + 1 offsets into indices and data */
    const int64_t* indices;    /* column of each stored value, ascending in a row */
    const void* data;          /* the stored values, in the network's type */
    const Py_ssize_t* rows;    /* the batch's row numbers, or NULL: */
    Py_ssize_t first;          /* rows first, first + 1, ... */
} bf_csr;

static inline Py_ssize_t bf_csr_row(const bf_csr* x, Py_ssize_t r) {
    return x->rows ? x->rows[r] : x->first + r;
}

/* Stored values in the batch's `rows` rows. */
static inline double bf_csr_nnz(const bf_csr* x, Py_ssize_t rows) {
    double nnz = 0;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const Py_ssize_t i = bf_csr_row(x, r);
        nnz += (double)(x->indptr[i + 1] - x->indptr[i]);
    }
    return nnz;
}

#include <math.h>
static inline double bf_sqrt_d(double x) { return sqrt(x); }
static inline float bf_sqrt_s(float x) { return sqrtf(x); }

#define BF_T double
#define BF_S d
#include "bf_sparse_impl.h"
#undef BF_T
#undef BF_S

#define BF_T float
#define BF_S s
#include "bf_sparse_impl.h"
#undef BF_T
#undef BF_S

#endif /* BF_SPARSE_H */
