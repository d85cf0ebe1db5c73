/* bf_gemm (src/bf_gemm.h) against the chain it promises for every element:
   one multiply-add after another, k in order, A's values times alpha
   rounded first (bf_gemm_plain), bit for bit, over shapes, layouts of A and
   B, alpha, beta, bias and thread counts. Prints the number of cases, of
   mismatches, of products whose workspace proved short, and a checksum of
   every result: builds that differ only in vector width must print the same
   checksum. tests/test_gemm_engine.py compiles and runs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int shorts = 0;
#define BF_GEMM_SHORT() (shorts++)
#include "bf_gemm.h"

static unsigned long long rs = 88172645463325252ULL;

static double draw(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0 * 2 - 1;
}

#define CHECK(T, S)                                                                          \
static int check_##S(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int ta, int tb, T alpha,      \
                     int beta, int bias, int threads, unsigned long long* sum) {             \
    T* A = malloc(sizeof(T) * M * K);                                                        \
    T* B = malloc(sizeof(T) * K * N);                                                        \
    T* C = malloc(sizeof(T) * M * N);                                                        \
    T* R = malloc(sizeof(T) * M * N);                                                        \
    T* h = malloc(sizeof(T) * N);                                                            \
    for (Py_ssize_t i = 0; i < M * K; i++) A[i] = (T)draw();                                 \
    for (Py_ssize_t i = 0; i < K * N; i++) B[i] = (T)draw();                                 \
    for (Py_ssize_t i = 0; i < M * N; i++) C[i] = R[i] = (T)draw();                          \
    for (Py_ssize_t i = 0; i < N; i++) h[i] = (T)draw();                                     \
    const Py_ssize_t rsa = ta ? 1 : K, csa = ta ? M : 1, rsb = tb ? 1 : N, csb = tb ? K : 1; \
    const Py_ssize_t space = bf_gemm_space_##S(M, N, K, threads);                            \
    bf_gemm_ctx ctx = {malloc(space * sizeof(T) + 1), space * (Py_ssize_t)sizeof(T), threads}; \
    bf_gemm_##S(&ctx, M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, N, bias ? h : NULL); \
    bf_gemm_plain_##S(M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, R, N, bias ? h : NULL); \
    const int bad = memcmp(C, R, sizeof(T) * M * N) != 0;                                    \
    for (Py_ssize_t i = 0; i < M * N; i++) {                                                 \
        unsigned long long u = 0;                                                            \
        memcpy(&u, C + i, sizeof(T));                                                        \
        *sum = *sum * 1000003ULL + u;                                                        \
    }                                                                                        \
    free(A); free(B); free(C); free(R); free(h); free(ctx.buf);                              \
    return bad;                                                                              \
}

CHECK(float, s)
CHECK(double, d)

int main(void) {
    static const Py_ssize_t dims[] = {1, 5, 6, 7, 8, 13, 16, 17, 31, 32, 33, 64, 100, 150, 257};
    static const Py_ssize_t big[][3] = {{128, 256, 784}, {300, 10, 700}, {150, 520, 300}};
    const int nd = sizeof(dims) / sizeof(dims[0]);
    int bad = 0, cases = 0;
    unsigned long long sum = 0;
    for (int i = 0; i < nd; i++)
        for (int j = 0; j < nd; j++)
            for (int k = i % 3; k < nd; k += 3) {
                const int v = i * 31 + j * 7 + k;
                const int ta = v & 1, tb = (v >> 1) & 1, beta = (v >> 2) & 1, bias = (v >> 3) & 1;
                const int threads = 1 + ((v >> 4) & 1);
                const double alpha = v % 3 == 0 ? 1.0 : -0.37;
                bad += check_s(dims[i], dims[j], dims[k], ta, tb, (float)alpha, beta, bias,
                               threads, &sum);
                bad += check_d(dims[i], dims[j], dims[k], ta, tb, alpha, beta, bias, threads,
                               &sum);
                cases += 2;
            }
    /* Chunks of k, many blocks of rows, two threads. */
    for (int b = 0; b < 3; b++)
        for (int threads = 1; threads <= 2; threads++)
            for (int t = 0; t < 4; t++) {
                bad += check_s(big[b][0], big[b][1], big[b][2], t & 1, t >> 1,
                               t == 3 ? 0.5f : 1.0f, t == 2, t == 1, threads, &sum);
                bad += check_d(big[b][0], big[b][1], big[b][2], t & 1, t >> 1,
                               t == 3 ? 0.5 : 1.0, t == 2, t == 1, threads, &sum);
                cases += 2;
            }
    printf("%d %d %d %llx\n", cases, bad, shorts, sum);
    return bad != 0 || shorts != 0;
}
