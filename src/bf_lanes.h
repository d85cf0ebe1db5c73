/* The products of networks trained side by side in vector lanes
   (_fit_lanes in src/_engine.pyx): network l's element e of a buffer lies
   at e * lanes + l, with as many lanes as one of the build's vector
   registers holds, so one vector operation does the same step of every
   network.

   Each lane does the arithmetic of its network's own products, operation
   for operation. Past SMALL_PRODUCT, bf_lane_gemm repeats bf_gemm's chains
   (one multiply-add per k, in order, from C or -0, then the bias). Below
   it, the small loops (src/_blas.pxd, bf_small.h): the forward
   product as _dot sums (the n_in mod 8 last terms from zero into the first
   of eight partial sums, the blocks of eight into the eight, added
   pairwise, then the bias), the product through the weights as the first
   product and then one multiply-add a unit, and the SGD update as one
   multiply-add of alpha d into each weight a row. Each multiply-add is
   spelled as in the loop it mirrors: BF_MADD (bf_gemm.h's BF_VMADD on
   vectors) where that loop calls it, rounded once wherever the build has
   FMA; c + a * b where that loop writes it, which the compiler contracts
   when it optimises and not in the checked build (-O0), for both alike. Builds without a vector
   spelling (BF_VECTOR_BYTES 0: the baseline build, compilers without gcc's
   vector extension) loop over the lanes.

   bf_lanes_impl.h holds the code once, for the type BF_T with suffix BF_S;
   it is included once per type. */
#ifndef BF_LANES_H
#define BF_LANES_H

#include "bf_common.h"
#include "bf_gemm.h"   /* BF_VMADD, BF_MADD on vectors of BF_GEMM_VB bytes */

/* A register's bytes (the product engine's vectors): vectors wider than the
   machine's gcc splits badly. The baseline x86-64 build has SSE2's 16. */
#if BF_VECTOR_BYTES > 0
#define BF_LANE_BYTES BF_GEMM_VB
#else
#define BF_LANE_BYTES 16
#endif

#define BF_T double
#define BF_S d
#include "bf_lanes_impl.h"
#undef BF_T
#undef BF_S

#define BF_T float
#define BF_S s
#include "bf_lanes_impl.h"
#undef BF_T
#undef BF_S

#endif /* BF_LANES_H */
