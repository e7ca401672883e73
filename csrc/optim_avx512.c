/*
 * optim_avx512.c -- the AdamW element range with AVX-512F (see optim.c for
 * the step, its constants and the order of operations).
 *
 * The same IEEE operations in the same order as the portable and AVX2
 * ranges (multiply, add, sqrt, divide; no FMA), each correctly rounded, so
 * the results are bitwise identical to theirs. The tail (n not a multiple
 * of the vector width) is one masked vector: the same arithmetic, with
 * loads and stores limited to the remaining elements.
 */
#include "pt_real.h"
#include "pt_dispatch.h"

#if PT_X86
#include "pt_avx512.h"

/* One vector of the step: returns the new p; *mo, *vo the new m, v. */
#define ADAMW_BODY(pi_, mi_, vi_, gi_)                                              \
    do {                                                                           \
        zreal gi = (gi_);                                                          \
        mo = Z_ADD(Z_MUL(b1, (mi_)), Z_MUL(c1, gi));                               \
        vo = Z_ADD(Z_MUL(b2, (vi_)), Z_MUL(Z_MUL(c2, gi), gi));                    \
        zreal denom = Z_ADD(Z_MUL(Z_SQRT(vo), inv_bc2), eps);                      \
        po = Z_SUB(Z_MUL((pi_), decay), Z_DIV(Z_MUL(step_size, mo), denom));       \
    } while (0)

PT_TARGET_AVX512
static void PT_SFX(adamw_avx512)(real *restrict p, real *restrict m, real *restrict v,
                                const real *restrict g, int64_t n,
                                const PT_SFX(pt_adamw_consts) *k)
{
    const zreal decay = Z_SET1(k->decay), b1 = Z_SET1(k->b1), c1 = Z_SET1(k->c1);
    const zreal b2 = Z_SET1(k->b2), c2 = Z_SET1(k->c2), step_size = Z_SET1(k->step_size);
    const zreal inv_bc2 = Z_SET1(k->inv_bc2), eps = Z_SET1(k->eps);
    zreal po, mo, vo;
    int64_t i = 0;
    for (; i + ZW <= n; i += ZW) {
        ADAMW_BODY(Z_LOAD(p + i), Z_LOAD(m + i), Z_LOAD(v + i), Z_LOAD(g + i));
        Z_STORE(m + i, mo);
        Z_STORE(v + i, vo);
        Z_STORE(p + i, po);
    }
    if (i < n) {
        zmask t = Z_TAIL(n - i);
        ADAMW_BODY(Z_MLOAD(p + i, t), Z_MLOAD(m + i, t), Z_MLOAD(v + i, t), Z_MLOAD(g + i, t));
        Z_MSTORE(m + i, t, mo);
        Z_MSTORE(v + i, t, vo);
        Z_MSTORE(p + i, t, po);
    }
}

const struct PT_SFX(pt_adamw_kernels) PT_SFX(pt_adamw_avx512) = {"avx512", PT_SFX(adamw_avx512)};

#else
typedef int PT_SFX(optim_avx512_unused);  /* not x86: nothing to compile */
#endif /* PT_X86 */
