/*
 * pt_alias.h -- which way an elementwise row loop that reads `in` and
 * writes `out` (same stride) walks, so that its loads do not wait on its
 * own older stores.
 *
 * Measured on the Xeon (Sapphire/Emerald Rapids class) of
 * docs/benchmarks.md: with out 16-256 bytes above in modulo 1 MB, on 2 MB
 * pages (where those address bits are the physical ones; NumPy asks for
 * such pages for large arrays), the GELU forward rows run 2-3x slower on
 * every ISA path, as if each load waited on the stores just before it;
 * 4 KB, 64 KB or 512 KB apart costs nothing. Two arrays whose size is a
 * multiple of 2 MB, allocated back to back by malloc, sit exactly there:
 * 16 bytes apart. Walked downwards, every store lies above the loads that
 * follow it and the rows run at full speed; results do not change (each
 * element is computed alone). Walking down costs some speed where nothing
 * aliases, so only the layout above walks down. The layer norm forward
 * and the GELU backward slow down at the same layout too, but walking
 * down measured no faster there: they walk up.
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
#endif
