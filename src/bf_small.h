/* Products too small to pay for blocking: a 2-2-1 network, a single
   sample, a layer of a few units. Their inner loops are unit-stride with
   independent lanes, so gcc vectorises them without reassociating any sum;
   where a loop's sums are spelled as vectors, they stay in registers.

   bf_small_impl.h holds the code once, for the type BF_T with suffix BF_S
   (d: double, s: float); it is included once per type. */
#ifndef BF_SMALL_H
#define BF_SMALL_H

#include "bf_common.h"

/* The few-input loops are kept out of gcc's vectoriser, which would run
   each call through the set-up and alias checks of a loop across units,
   for layers of one or two units that then run its scalar tail. */
#if defined(__GNUC__) && !defined(__clang__)
#define BF_SCALAR_LOOPS __attribute__((optimize("no-tree-vectorize")))
#else
#define BF_SCALAR_LOOPS
#endif

#define BF_T double
#define BF_S d
#define BF_TSIZE 8
#include "bf_small_impl.h"
#undef BF_T
#undef BF_S
#undef BF_TSIZE

#define BF_T float
#define BF_S s
#define BF_TSIZE 4
#include "bf_small_impl.h"
#undef BF_T
#undef BF_S
#undef BF_TSIZE

#endif /* BF_SMALL_H */
