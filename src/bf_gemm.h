/* bf_gemm: the kernel's one engine for products past SMALL_PRODUCT, on
   every CPU and in every build.

   C (M x N) = C0 + sum over k of (alpha A(r, k)) B(k, j), with
   A(r, k) = A[r rsa + k csa], B(k, j) = B[k rsb + j csb], C row-major
   (ldc), C0 = C where beta is set, else -0 (the identity of addition: the
   first term comes out as a plain product); then + bias[j] where bias is
   given. Every element is one chain of multiply-adds, k in order. So the
   result does not depend on the blocking, on the vector width, on where
   threads split C or on how many there are: builds differ only in whether
   a multiply-add is fused (FMA), never in the order of a sum. The small
   loops of _blas.pxd compute the same chains, bit for bit, but for the
   sign of an exact zero.

   Why a GEMM of our own rather than a library's: OpenBLAS's results
   change with its thread count and kernel choice (float32 products on its
   Haswell and SkylakeX kernels alike), and BLIS's packaged build falls back
   to a generic kernel on CPUs it does not recognise. The design notes in
   docs/ record the comparison.

   The loops of a cache-blocked product: BF_KC values of k at a time, B
   copied into panels of two vectors' width (unless its rows are
   contiguous and the chunk is small), BF_MC rows of A at a time, read
   where they lie (copied, times alpha, where alpha is not 1), and each
   BF_MR x panel block of C keeping its sums in twelve vector registers.

   Nothing here allocates: a product's buffer is the caller's workspace
   (bf_gemm_space_* gives its size), or the stack for small ones.

   Threads: OpenMP's, never after a fork (libgomp's pool does not survive
   one: a child that opened a parallel region would wait forever for
   threads that do not exist), never nested in another parallel region. */
#ifndef BF_GEMM_H
#define BF_GEMM_H

#include "bf_common.h"

#define BF_MR 6
#define BF_KC 256
#define BF_MC 144
#define BF_GEMM_STACK 49152
#define BF_UNPACKED_B 4096
#define BF_PANEL_A_COLUMNS 256
/* Products from this many multiply-adds are split between threads. */
#define BF_THREAD_PRODUCT (1 << 20)

/* What a call gives its products: a workspace of `bytes` bytes (or
   NULL), sized with bf_gemm_space_*, and the threads they may use. */
typedef struct {
    void* buf;
    Py_ssize_t bytes;
    int threads;
} bf_gemm_ctx;

/* Where a workspace proves too short for a product (a test build counts). */
#if !defined(BF_GEMM_SHORT)
#define BF_GEMM_SHORT()
#endif

/* A tile's vector: the build's widest register (the baseline build's
   SSE2 has sixteen of 128 bits: the tile's twelve sums and three operands
   fit them). */
#if !defined(BF_GEMM_VB) && BF_VECTOR_BYTES >= 64
#define BF_GEMM_VB 64
#elif !defined(BF_GEMM_VB) && BF_VECTOR_BYTES >= 32
#define BF_GEMM_VB 32
#elif !defined(BF_GEMM_VB)
#define BF_GEMM_VB 16
#endif

#if defined(_OPENMP)
#include <omp.h>
#define BF_PRAGMA(x) _Pragma(#x)
#define BF_PRAGMA_OMP(x) BF_PRAGMA(omp x)
#define bf_thread_num() omp_get_thread_num()
#if !defined(_WIN32)
#include <pthread.h>
static volatile int bf_forked = 0;
static void bf_mark_forked(void) { bf_forked = 1; }
/* Called once, when the module loads. */
static int bf_watch_forks(void) { return pthread_atfork(NULL, NULL, bf_mark_forked); }
#else
static const int bf_forked = 0;
static int bf_watch_forks(void) { return 0; }
#endif
/* The threads a call may use: `requested` (<= 0: no request), capped by
   OpenMP's limit for the calling thread (OMP_NUM_THREADS, threadpoolctl);
   one in a forked child or inside a parallel region. */
static int bf_threads(int requested) {
    int most;
    if (bf_forked || omp_in_parallel())
        return 1;
    most = omp_get_max_threads();
    if (requested > 0 && requested < most)
        most = requested;
    return most < 1 ? 1 : most;
}
#else
#define BF_PRAGMA_OMP(x)
#define bf_thread_num() 0
static int bf_watch_forks(void) { return 0; }
static int bf_threads(int requested) { (void)requested; return 1; }
#endif

/* Runs task(arg, i) once for each i in [0, n) on `threads` threads, the
   i handed out one at a time: tasks (one network's fit each) differ widely
   in length. */
static void bf_run_tasks(Py_ssize_t n, int threads, void (*task)(void*, Py_ssize_t),
                         void* arg) {
    Py_ssize_t i;
    BF_PRAGMA_OMP(parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1))
    for (i = 0; i < n; i++)
        task(arg, i);
}

/* A flag one thread raises and the others poll between minibatches. */
#if defined(__GNUC__)
static inline int bf_flag_get(const int* f) { return __atomic_load_n(f, __ATOMIC_RELAXED); }
static inline void bf_flag_set(int* f) { __atomic_store_n(f, 1, __ATOMIC_RELAXED); }
#else
static inline int bf_flag_get(const int* f) { return *(const volatile int*)f; }
static inline void bf_flag_set(int* f) { *(volatile int*)f = 1; }
#endif

/* Threads for one product of `macs` multiply-adds when `most` may run:
   one per 2**19 multiply-adds at most, none below BF_THREAD_PRODUCT. */
static inline int bf_product_threads(double macs, int most) {
    double cap;
    if (macs < BF_THREAD_PRODUCT || most <= 1)
        return 1;
    cap = macs / (BF_THREAD_PRODUCT / 2);
    return cap < most ? (int)cap : most;
}

#if defined(__GNUC__)
#define BF_PREFETCH(p) __builtin_prefetch((p), 1)
#define BF_UNROLL_4 _Pragma("GCC unroll 4")
/* c + a b on vectors, fused where the build has FMA, like BF_MADD: gcc
   contracts the expression when it optimises (and allocates registers
   better for it than for the intrinsic); the checked build's -O0
   contracts nothing and gets the intrinsic. */
#if defined(__FMA__) && !defined(__OPTIMIZE__)
#include <immintrin.h>
#if BF_GEMM_VB == 64
#define BF_VMADD_s(a, b, c) _mm512_fmadd_ps(a, b, c)
#define BF_VMADD_d(a, b, c) _mm512_fmadd_pd(a, b, c)
#else
#define BF_VMADD_s(a, b, c) _mm256_fmadd_ps(a, b, c)
#define BF_VMADD_d(a, b, c) _mm256_fmadd_pd(a, b, c)
#endif
#else
#define BF_VMADD_s(a, b, c) ((c) + (a) * (b))
#define BF_VMADD_d(a, b, c) ((c) + (a) * (b))
#endif
/* A vector of x, signed zeros kept (x - 0 is x). */
#define bf_splat(x, V) ((x) - (V){0})

/* A full panel of B stored transposed (B(k, j) = B[j csb]: a forward
   product's weights), NR rows of it read along k and transposed in
   registers, eight floats or four doubles square at a time. Returns how
   many values of k it did; the caller copies the rest. */
typedef float bf_q8s __attribute__((vector_size(32), aligned(4), may_alias));
typedef double bf_q4d __attribute__((vector_size(32), aligned(8), may_alias));
typedef int bf_i8 __attribute__((vector_size(32)));
typedef long long bf_l4 __attribute__((vector_size(32)));
#define BF_SH(a, b, ...) __builtin_shuffle(a, b, (bf_i8){__VA_ARGS__})
#define BF_SHD(a, b, ...) __builtin_shuffle(a, b, (bf_l4){__VA_ARGS__})
static Py_ssize_t bf_tpanel_s(Py_ssize_t kc, const float* BF_RESTRICT B, Py_ssize_t csb,
                              float* BF_RESTRICT Bp) {
    typedef bf_q8s V;
    enum { NR = 2 * BF_GEMM_VB / sizeof(float) };
    Py_ssize_t k = 0;
    for (int h = 0; h < NR / 8; h++) {
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
            float* o = Bp + k * NR + 8 * h;
            *(V*)o = BF_SH(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11);
            *(V*)(o + NR) = BF_SH(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11);
            *(V*)(o + 2 * NR) = BF_SH(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11);
            *(V*)(o + 3 * NR) = BF_SH(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11);
            *(V*)(o + 4 * NR) = BF_SH(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15);
            *(V*)(o + 5 * NR) = BF_SH(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15);
            *(V*)(o + 6 * NR) = BF_SH(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15);
            *(V*)(o + 7 * NR) = BF_SH(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15);
        }
    }
    return k;
}
static Py_ssize_t bf_tpanel_d(Py_ssize_t kc, const double* BF_RESTRICT B, Py_ssize_t csb,
                              double* BF_RESTRICT Bp) {
    typedef bf_q4d V;
    enum { NR = 2 * BF_GEMM_VB / sizeof(double) };
    Py_ssize_t k = 0;
    for (int h = 0; h < NR / 4; h++) {
        const double* r = B + 4 * h * csb;
        for (k = 0; k + 4 <= kc; k += 4) {
            const V x0 = *(const V*)(r + k), x1 = *(const V*)(r + csb + k);
            const V x2 = *(const V*)(r + 2 * csb + k), x3 = *(const V*)(r + 3 * csb + k);
            const V t0 = BF_SHD(x0, x1, 0, 4, 2, 6), t1 = BF_SHD(x0, x1, 1, 5, 3, 7);
            const V t2 = BF_SHD(x2, x3, 0, 4, 2, 6), t3 = BF_SHD(x2, x3, 1, 5, 3, 7);
            double* o = Bp + k * NR + 4 * h;
            *(V*)o = BF_SHD(t0, t2, 0, 1, 4, 5);
            *(V*)(o + NR) = BF_SHD(t1, t3, 0, 1, 4, 5);
            *(V*)(o + 2 * NR) = BF_SHD(t0, t2, 2, 3, 6, 7);
            *(V*)(o + 3 * NR) = BF_SHD(t1, t3, 2, 3, 6, 7);
        }
    }
    return k;
}
#else
#define BF_PREFETCH(p)
#define BF_UNROLL_4
static Py_ssize_t bf_tpanel_s(Py_ssize_t kc, const float* B, Py_ssize_t csb, float* Bp) {
    (void)kc; (void)B; (void)csb; (void)Bp;
    return 0;
}
static Py_ssize_t bf_tpanel_d(Py_ssize_t kc, const double* B, Py_ssize_t csb, double* Bp) {
    (void)kc; (void)B; (void)csb; (void)Bp;
    return 0;
}
#endif

/* Blocks of four rows or fewer (the last of a product whose rows are not
   a multiple of six) go to a tile of four rows, whose loop issues two
   thirds of the six-row one's instructions. */
#define BF_TILE_ROWS(tile, mr, ...)           \
    do {                                      \
        if ((mr) <= 4)                        \
            tile(4, (mr), __VA_ARGS__);       \
        else                                  \
            tile(BF_MR, (mr), __VA_ARGS__);   \
    } while (0)

#define BF_T double
#define BF_S d
#include "bf_gemm_impl.h"
#undef BF_T
#undef BF_S

#define BF_T float
#define BF_S s
#include "bf_gemm_impl.h"
#undef BF_T
#undef BF_S

#endif /* BF_GEMM_H */
