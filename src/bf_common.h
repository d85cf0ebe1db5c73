/* What every C helper of the kernel shares: the multiply-add whose
   rounding defines a build's arithmetic, the vector width of the build,
   and the CPU checks that choose among the builds. */
#ifndef BF_COMMON_H
#define BF_COMMON_H

#include <Python.h>

/* c + a b, rounded once where the build has FMA (as gcc contracts the
   multiply-adds written out elsewhere), twice otherwise. Needed for the
   sums down a loop: gcc vectorises those, where the trip count allows, as
   in-order reductions that round each product before adding it, so that
   whether a product was rounded would depend on n. */
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

#if defined(__GNUC__)
#define BF_INLINE __attribute__((always_inline))
#else
#define BF_INLINE
#endif

/* The widest vector register the build may use, in bytes: 0 where the
   code has no vector spelling (a compiler without gcc's and clang's vector
   extension). */
#if defined(__GNUC__) && defined(__AVX512F__)
#define BF_VECTOR_BYTES 64
#elif defined(__GNUC__) && defined(__AVX__)
#define BF_VECTOR_BYTES 32
#else
#define BF_VECTOR_BYTES 0
#endif

/* Which build this is, checked (BACKPROP_FAST_DEBUG: setup.py defines
   BF_CHECKED) or not, as a value an engine can report: its loops index raw
   pointers, so no bounds check can show it. */
#if defined(BF_CHECKED)
#define BF_CHECKED_BUILD 1
#else
#define BF_CHECKED_BUILD 0
#endif

#define BF_CAT_(a, b) a##b
#define BF_CAT(a, b) BF_CAT_(a, b)

/* Asks for the bytes at p to be brought into the cache ahead of use: the
   rows of the next minibatch, which lie anywhere in a data set that other
   work may have evicted. */
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

/* What the CPU and the operating system support, for
   backprop_fast/_kernels.py to choose a build (setup.py lists their
   compiler flags). libgcc and compiler-rt also check, through XGETBV, that
   the operating system saves the AVX and AVX-512 registers. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
static int bf_cpu_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static int bf_cpu_avx512(void) {
    return bf_cpu_avx2() && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl");
}
#else
static int bf_cpu_avx2(void) { return 0; }
static int bf_cpu_avx512(void) { return 0; }
#endif

#endif /* BF_COMMON_H */
