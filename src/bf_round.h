/* The mixed_bfloat16 policy's one rounding: float32 values to the nearest
   bfloat16 (ties to even), kept as float32 values whose low 16 bits are
   zero. The products then run unchanged in the float32 engine: a product
   of two such values is exact in float32 (8 + 8 significant bits), so each
   multiply-add of a chain rounds exactly as a bfloat16 dot-product
   instruction that accumulates in float32 one term at a time would. */
#ifndef BF_ROUND_H
#define BF_ROUND_H

#include <stdint.h>
#include <string.h>

#include "bf_common.h"

/* dst[i] = src[i] rounded to bfloat16; src and dst may be the same array.
   Adding 0x7FFF plus the lowest kept bit and truncating is round to
   nearest even on the bit pattern, and carries correctly into the exponent
   (up to inf for values past bfloat16's largest). A NaN would carry into
   the sign or turn into inf, so it is kept a NaN (made quiet, since its
   payload may lie in the bits cleared). Branch-free, so gcc vectorises
   the loop. */
static void bf_round_bf16(const float* src, float* dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t u, r;
        memcpy(&u, src + i, sizeof u);
        r = (u & 0x7FFFFFFFu) > 0x7F800000u ? u | 0x00400000u
                                            : u + 0x7FFFu + ((u >> 16) & 1u);
        r &= 0xFFFF0000u;
        memcpy(dst + i, &r, sizeof r);
    }
}

#endif /* BF_ROUND_H */
