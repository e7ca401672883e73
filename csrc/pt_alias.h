/*
 * pt_alias.h -- how a row loop that reads `in` and writes `out` (same
 * stride) orders its loads and stores, so that its loads do not wait on
 * its own older stores.
 *
 * Measured on the Xeon (Sapphire/Emerald Rapids class) of
 * docs/benchmarks.md: with out 16-256 bytes above in modulo 1 MB, on 2 MB
 * pages (where those address bits are the physical ones; NumPy asks for
 * such pages for large arrays), a loop that walks up, loading in[c] and
 * then storing out[c], runs 1.5-4x slower on every ISA path: a load that
 * closely follows, in program order, a store to its address modulo 1 MB
 * waits on that store, so each block's loads wait on the previous block's
 * loads and arithmetic and stop overlapping. 512 bytes apart or more
 * (4 KB, 64 KB, 512 KB) costs nothing, and so does a load that comes
 * before the store in program order. Two arrays whose size is a multiple
 * of 2 MB, allocated back to back by malloc, sit exactly there: 16 bytes
 * apart.
 *
 * Two cures, each leaving every element computed as before (same bits),
 * each taken only in that layout (pt_walk_down, pt_store_close_above):
 *  - Walking down: every store lies above the loads that follow it. Only
 *    the float32 GELU forward rows (compute bound, measured cured) walk
 *    down: memory-bound rows whose stores straddle cache lines (out - in
 *    not a multiple of 64) run slower walking down than up in any layout.
 *  - Loading ahead, for every other loop: the loads of a block of in
 *    (256 bytes to 1 KB) are issued before the stores of the block
 *    before it. Loops written with intrinsics hold the next block in
 *    registers (the layer norm forward's normalize pass and the GELU
 *    backward on the AVX2 and AVX-512 paths, the AVX-512 softmax and
 *    log_softmax forward); loops left to the compiler, which cannot order
 *    their own loads and stores, compute a piece of 256 elements into a
 *    stack buffer before storing it, so a load waits only at a piece's
 *    start (the softmax backward, the portable and AVX2 softmax forward).
 *    It measured slower for the layer norm where nothing aliases, hence
 *    the layout test.
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
