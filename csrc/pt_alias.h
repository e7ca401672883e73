/*
 * pt_alias.h -- how a row loop that reads `in` and writes `out` (same
 * stride) orders its loads and stores, so that its loads do not wait on
 * its own older stores.
 *
 * Measured on the Xeon (Sapphire/Emerald Rapids class) of
 * docs/benchmarks.md: with out 16-256 bytes above in modulo 1 MB, on 2 MB
 * pages (where those address bits are the physical ones; NumPy asks for
 * such pages for large arrays), a loop that walks up, loading in[c] and
 * then storing out[c], runs 1.5-3x slower on every ISA path: a load that
 * closely follows, in program order, a store to its address modulo 1 MB
 * waits on that store, so each block's loads wait on the previous block's
 * loads and arithmetic and stop overlapping. 512 bytes apart or more
 * (4 KB, 64 KB, 512 KB) costs nothing, and so does a load that comes
 * before the store in program order. Two arrays whose size is a multiple
 * of 2 MB, allocated back to back by malloc, sit exactly there: 16 bytes
 * apart.
 *
 * Two cures, each leaving every element computed as before (same bits):
 *  - Walking down (pt_walk_down): every store lies above the loads that
 *    follow it. The GELU forward rows (compute bound) walk down. Walking
 *    down costs some speed where nothing aliases, and memory-bound rows
 *    whose stores straddle cache lines (out - in not a multiple of 64)
 *    run slower walking down than up in any layout, so the other loops
 *    do not.
 *  - Loading ahead (pt_store_close_above): the loop loads a block of in
 *    (a few hundred bytes) before it stores the block before it, so no
 *    load follows a store to its address closely: the layer norm
 *    forward's normalize pass and the GELU backward (for dx just above x;
 *    float64 AVX-512: x and dy, for dx just above either) on the AVX2 and
 *    AVX-512 paths, the AVX-512 softmax and log_softmax forward. Loops left to the compiler compute a piece of a row (1 KB
 *    or 2 KB) into a buffer before storing any of it, so that a load
 *    waits only at a piece's start: the softmax backward (dx just above y
 *    or dy) and the portable and AVX2 softmax forward. Loading ahead
 *    measured slower for the layer norm where nothing aliases, so each is
 *    taken only for out less than PT_ALIAS_CLOSE bytes above in.
 */
#ifndef PT_ALIAS_H
#define PT_ALIAS_H
#include <stdint.h>

#define PT_ALIAS_SPAN ((uintptr_t)1 << 20)   /* address bits that matter */
#define PT_ALIAS_NEAR ((uintptr_t)4096)      /* "just above": stores still in flight */

/* 1 when out lies 1..PT_ALIAS_NEAR-1 bytes above in modulo PT_ALIAS_SPAN:
 * walk down. In place (out == in) walks up: each element is loaded before
 * it is stored. */
static inline int pt_walk_down(const void *out, const void *in)
{
    uintptr_t d = ((uintptr_t)out - (uintptr_t)in) & (PT_ALIAS_SPAN - 1);
    return d != 0 && d < PT_ALIAS_NEAR;
}

/* 1 when out lies 1..PT_ALIAS_CLOSE-1 bytes above in modulo PT_ALIAS_SPAN:
 * load ahead. In place (out == in) needs nothing: each element is loaded
 * before it is stored. */
#define PT_ALIAS_CLOSE ((uintptr_t)512)
static inline int pt_store_close_above(const void *out, const void *in)
{
    uintptr_t d = ((uintptr_t)out - (uintptr_t)in) & (PT_ALIAS_SPAN - 1);
    return d != 0 && d < PT_ALIAS_CLOSE;
}
#endif
