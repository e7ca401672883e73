/*
 * layernorm_avx512.c -- layer norm's row functions (layernorm.c) with
 * AVX-512 intrinsics, float32 and float64: the dispatch table's avx512
 * entries pt_ln_avx512_f32 / _f64.
 *
 * The same operations in the same order as the portable rows: row sums in
 * the LANES = 16 double lanes of pt_lanes.h (lane k takes the elements
 * c = k mod 16; one 16-float vector converts to the two 8-double halves
 * that hold lanes 0-7 and 8-15, or two 8-double vectors), combined by
 * lane_sum; elementwise formulas in `real` with no FMA. So the results
 * are bitwise those of the portable and AVX2 rows. Row tails use masked
 * loads and masked adds (lanes past the row are not touched), so a tail
 * element goes to the same lane as in the portable loop. The float32
 * forward takes the AVX2 path's row pipeline (layernorm.c; 256-bit
 * vectors, the same bits), which measured faster than this file's passes,
 * except when y lies just above x. The passes here sum FWD_ROWS rows side
 * by side, each in its own lanes (layernorm.c), and write y with whole
 * vectors, masking only the row's tail. Both
 * directions prefetch the rows ahead as the portable rows do (layernorm.c).
 */
#include "pt_real.h"
#include "pt_dispatch.h"

#if PT_X86
#include "pt_avx512.h"
#include "pt_lanes.h"   /* LANES, lane_sum */
#include "pt_alias.h"

#define A512 PT_TARGET_AVX512
#define INL static inline __attribute__((always_inline))

#define NV (LANES / ZW)                /* vectors per block of LANES */
#define GROUP 4                        /* dwdb_group's full group (layernorm.c) */
#define FWD_ROWS 2                     /* rows whose sums run side by side */
#define PF_ROWS 2                      /* rows ahead the forward prefetches (layernorm.c) */
#define BWD_PF_ROWS 4                  /* rows ahead the backward prefetches */
#define AHEAD 8                        /* vectors per block of rows_norm_ahead */

/* acc (the 16 lanes as two 8-double halves) += v, v being vector j of a
 * block, in the lanes m selects (m all ones: a plain add). */
A512 INL void PT_SFX(acc_add)(__m512d acc[2], int j, zreal v, zmask m)
{
#if PT_DTYPE == 64
    acc[j] = _mm512_mask_add_pd(acc[j], m, acc[j], v);
#else
    (void)j;
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    acc[0] = _mm512_mask_add_pd(acc[0], (__mmask8)m, acc[0], lo);
    acc[1] = _mm512_mask_add_pd(acc[1], (__mmask8)(m >> 8), acc[1], hi);
#endif
}

/* acc += a * b in double (a, b converted first), in the lanes m selects. */
A512 INL void PT_SFX(acc_fma_free)(__m512d acc[2], int j, zreal a, zreal b, zmask m)
{
#if PT_DTYPE == 64
    acc[j] = _mm512_mask_add_pd(acc[j], m, acc[j], _mm512_mul_pd(a, b));
#else
    (void)j;
    __m512d alo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
    __m512d ahi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1));
    __m512d blo = _mm512_cvtps_pd(_mm512_castps512_ps256(b));
    __m512d bhi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(b, 1));
    acc[0] = _mm512_mask_add_pd(acc[0], (__mmask8)m, acc[0], _mm512_mul_pd(alo, blo));
    acc[1] = _mm512_mask_add_pd(acc[1], (__mmask8)(m >> 8), acc[1], _mm512_mul_pd(ahi, bhi));
#endif
}

/* acc += the 16 elements at p (a whole block, vector j of it for float64),
 * in double. The float32 halves convert straight from memory (vcvtps2pd
 * zmm, m256), which takes no shuffle to bring the upper half down. */
A512 INL void PT_SFX(acc_add_mem)(__m512d acc[2], int j, const real *p)
{
#if PT_DTYPE == 64
    acc[j] = _mm512_add_pd(acc[j], _mm512_loadu_pd(p));
#else
    (void)j;
    acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm256_loadu_ps(p)));
    acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(_mm256_loadu_ps(p + 8)));
#endif
}

/* lane_sum of the two halves. */
A512 INL double PT_SFX(acc_sum)(const __m512d acc[2])
{
    double a[LANES];
    _mm512_storeu_pd(a, acc[0]);
    _mm512_storeu_pd(a + 8, acc[1]);
    return PT_SFX(lane_sum)(a);
}

/* mean[r], rstd[r] of the R rows of stride C at x (R a constant 1..FWD_ROWS:
 * the loops over r unroll). The rows are summed side by side, so 2R add
 * chains run at once instead of 2: each row's sums are still its own
 * lanes in its own order. The first pass prefetches the rows PF_ROWS
 * further on (layernorm.c). */
A512 INL void PT_SFX(rows_stats)(real *mean, real *rstd, const real *x, int64_t C, real eps,
                                 int R)
{
    const zmask all = (zmask)~(zmask)0;
    __m512d acc[FWD_ROWS][2];
    zreal vm[FWD_ROWS];
    int64_t rem = C % LANES, cf = C - rem, c;
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_pd();
    for (c = 0; c < cf; c += LANES)
        for (int r = 0; r < R; r++)
            for (int j = 0; j < NV; j++) {
                if (j * ZW * sizeof(real) % 64 == 0)
                    _mm_prefetch((const char *)(x + (r + PF_ROWS) * C + c + j * ZW),
                                 _MM_HINT_T0);
                PT_SFX(acc_add_mem)(acc[r], j, x + r * C + c + j * ZW);
            }
    for (int j = 0; rem && j < NV; j++) {
        zmask m = Z_TAIL(rem - j * ZW);
        for (int r = 0; r < R; r++)
            PT_SFX(acc_add)(acc[r], j, Z_MLOAD(x + r * C + c + j * ZW, m), m);
    }
    for (int r = 0; r < R; r++) {
        mean[r] = (real)(PT_SFX(acc_sum)(acc[r]) / C);
        vm[r] = Z_SET1(mean[r]);
        acc[r][0] = acc[r][1] = _mm512_setzero_pd();
    }
    /* sum (x - m)^2: the difference rounded to real, squared in double */
    for (c = 0; c < cf; c += LANES)
        for (int r = 0; r < R; r++)
            for (int j = 0; j < NV; j++) {
                zreal d = Z_SUB(Z_LOAD(x + r * C + c + j * ZW), vm[r]);
                PT_SFX(acc_fma_free)(acc[r], j, d, d, all);
            }
    for (int j = 0; rem && j < NV; j++) {
        zmask m = Z_TAIL(rem - j * ZW);
        for (int r = 0; r < R; r++) {
            zreal d = Z_KEEP(m, Z_SUB(Z_MLOAD(x + r * C + c + j * ZW, m), vm[r]));
            PT_SFX(acc_fma_free)(acc[r], j, d, d, m);
        }
    }
    for (int r = 0; r < R; r++)
        rstd[r] = (real)(1.0 / sqrt(PT_SFX(acc_sum)(acc[r]) / C + eps));
}

/* ((v - m) * rs) * w[c..c+ZW) + b[c..c+ZW), the terms present, w and b
 * read in the lanes k selects (v: x[c..c+ZW), already loaded). */
A512 INL zreal PT_SFX(norm_val)(zreal v, const real *w, const real *b, zreal vm, zreal vrs,
                                int64_t c, zmask k, int full)
{
    v = Z_MUL(Z_SUB(v, vm), vrs);
    if (w) v = Z_MUL(v, full ? Z_LOAD(w + c) : Z_MLOAD(w + c, k));
    if (b) v = Z_ADD(v, full ? Z_LOAD(b + c) : Z_MLOAD(b + c, k));
    return v;
}

/* y[c..c+ZW) = ((x - m) * rs) * w + b in the lanes k selects. */
A512 INL void PT_SFX(norm_vec)(real *y, const real *x, const real *w, const real *b, zreal vm,
                               zreal vrs, int64_t c, zmask k, int full)
{
    zreal v = PT_SFX(norm_val)(full ? Z_LOAD(x + c) : Z_MLOAD(x + c, k), w, b, vm, vrs, c, k,
                               full);
    if (full)
        Z_STORE(y + c, v);
    else
        Z_MSTORE(y + c, k, v);
}

/* One row's y: whole vectors unmasked, the tail masked. */
A512 INL void PT_SFX(row_norm)(real *y, const real *x, const real *w, const real *b, real m,
                               real rs, int64_t C)
{
    zreal vm = Z_SET1(m), vrs = Z_SET1(rs);
    int64_t cf = C - C % ZW;
    for (int64_t c = 0; c < cf; c += ZW)
        PT_SFX(norm_vec)(y, x, w, b, vm, vrs, c, (zmask)~(zmask)0, 1);
    if (cf < C) PT_SFX(norm_vec)(y, x, w, b, vm, vrs, cf, Z_TAIL(C - cf), 0);
}

/* v[0..AHEAD) = x[c..c + AHEAD * ZW) of a row of C, masked past its end. */
A512 INL void PT_SFX(ahead_load)(zreal v[AHEAD], const real *x, int64_t c, int64_t C)
{
    if (c + AHEAD * ZW <= C)
        for (int j = 0; j < AHEAD; j++) v[j] = Z_LOAD(x + c + j * ZW);
    else
        for (int j = 0; j < AHEAD; j++) v[j] = Z_MLOAD(x + c + j * ZW, Z_TAIL(C - c - j * ZW));
}

/* The y of R rows (stride C) when y lies just above x (pt_alias.h): the
 * rows, last to first, as one stream of blocks of AHEAD vectors walking
 * up each row, the x of each block loaded before the stores of the block
 * before it (a row's first block before the last stores of the row after
 * it), so that no load closely follows a store to its address modulo
 * PT_ALIAS_SPAN. Last to first: the stores that end the stream (row 0's
 * end) alias the start of row 1, already read, not that of the next
 * rows, which rows_stats reads next. Each element is computed as in
 * row_norm. */
A512 INL void PT_SFX(rows_norm_ahead)(real *y, const real *x, const real *w, const real *b,
                                      const real *mean, const real *rstd, int R, int64_t C)
{
    zreal cur[AHEAD], nxt[AHEAD];
    PT_SFX(ahead_load)(cur, x + (R - 1) * C, 0, C);
    for (int j = 0; j < AHEAD; j++) nxt[j] = Z_ZERO();
    for (int r = R - 1; r >= 0; r--) {
        zreal vm = Z_SET1(mean[r]), vrs = Z_SET1(rstd[r]);
        const real *xr = x + r * C;
        real *yr = y + r * C;
        for (int64_t c = 0; c < C; c += AHEAD * ZW) {
            if (c + AHEAD * ZW < C)
                PT_SFX(ahead_load)(nxt, xr, c + AHEAD * ZW, C);
            else if (r > 0)
                PT_SFX(ahead_load)(nxt, xr - C, 0, C);
            if (c + AHEAD * ZW <= C)
                for (int j = 0; j < AHEAD; j++)
                    Z_STORE(yr + c + j * ZW,
                            PT_SFX(norm_val)(cur[j], w, b, vm, vrs, c + j * ZW, 0, 1));
            else
                for (int j = 0; j < AHEAD; j++) {
                    zmask k = Z_TAIL(C - c - j * ZW);
                    Z_MSTORE(yr + c + j * ZW, k,
                             PT_SFX(norm_val)(cur[j], w, b, vm, vrs, c + j * ZW, k, 0));
                }
            for (int j = 0; j < AHEAD; j++) cur[j] = nxt[j];
        }
    }
}

A512 static void PT_SFX(ln_fwd_rows_avx512)(real *y, real *mean, real *rstd, const real *x,
                                            const real *w, const real *b, int64_t nr, int64_t C,
                                            real eps)
{
    int ahead = pt_store_close_above(y, x);
#if PT_DTYPE == 32
    /* float32: the AVX2 path's row pipeline (ln_fwd_pipe_avx2, layernorm.c),
     * the same bits, measured faster than the passes below, except when y
     * lies just above x */
    if (!ahead) {
        pt_ln_avx2_f32.fwd_rows(y, mean, rstd, x, w, b, nr, C, eps);
        return;
    }
#endif
    while (nr > 0) {
        int R = nr >= FWD_ROWS ? FWD_ROWS : 1;
        if (R == FWD_ROWS)
            PT_SFX(rows_stats)(mean, rstd, x, C, eps, FWD_ROWS);
        else
            PT_SFX(rows_stats)(mean, rstd, x, C, eps, 1);
        if (ahead)
            PT_SFX(rows_norm_ahead)(y, x, w, b, mean, rstd, R, C);
        else
            for (int r = 0; r < R; r++)
                PT_SFX(row_norm)(y + r * C, x + r * C, w, b, mean[r], rstd[r], C);
        y += R * C, x += R * C, mean += R, rstd += R, nr -= R;
    }
}

A512 static void PT_SFX(ln_bwd_row_avx512)(real *dx, const real *dy, const real *x, const real *w,
                                      real mr, real rs, int64_t C, int accumulate)
{
    const zmask all = (zmask)~(zmask)0;
    __m512d ag[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    __m512d agx[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    zreal vm = Z_SET1(mr), vrs = Z_SET1(rs);
    int64_t c = 0, rem;
    for (; c + LANES <= C; c += LANES)
        for (int j = 0; j < NV; j++) {
            int64_t o = c + j * ZW;
            if (j * ZW * sizeof(real) % 64 == 0) {
                _mm_prefetch((const char *)(x + BWD_PF_ROWS * C + o), _MM_HINT_T0);
                _mm_prefetch((const char *)(dy + BWD_PF_ROWS * C + o), _MM_HINT_T0);
            }
            zreal h = Z_MUL(Z_SUB(Z_LOAD(x + o), vm), vrs);
            zreal g = w ? Z_MUL(Z_LOAD(dy + o), Z_LOAD(w + o)) : Z_LOAD(dy + o);
            PT_SFX(acc_add)(ag, j, g, all);
            PT_SFX(acc_fma_free)(agx, j, g, h, all);
        }
    rem = C - c;
    for (int j = 0; rem && j < NV; j++) {
        int64_t o = c + j * ZW;
        zmask m = Z_TAIL(rem - j * ZW);
        zreal h = Z_MUL(Z_SUB(Z_MLOAD(x + o, m), vm), vrs);
        zreal g = Z_MLOAD(dy + o, m);
        if (w) g = Z_MUL(g, Z_MLOAD(w + o, m));
        PT_SFX(acc_add)(ag, j, g, m);
        PT_SFX(acc_fma_free)(agx, j, g, h, m);
    }
    zreal mg = Z_SET1((real)(PT_SFX(acc_sum)(ag) / C));
    zreal mgx = Z_SET1((real)(PT_SFX(acc_sum)(agx) / C));
    /* dx = or += rs * ((dy * w - mg) - ((x - m) * rs) * mgx) */
    for (c = 0; c < C; c += ZW) {
        zmask m = Z_TAIL(C - c);
        zreal g = Z_MLOAD(dy + c, m);
        if (w) g = Z_MUL(g, Z_MLOAD(w + c, m));
        zreal h = Z_MUL(Z_SUB(Z_MLOAD(x + c, m), vm), vrs);
        zreal v = Z_MUL(vrs, Z_SUB(Z_SUB(g, mg), Z_MUL(h, mgx)));
        if (accumulate) v = Z_ADD(Z_MLOAD(dx + c, m), v);
        Z_MSTORE(dx + c, m, v);
    }
}

/* p[0..ZW) += (double)v in the lanes m selects. */
A512 INL void PT_SFX(part_add)(double *p, zreal v, zmask m)
{
#if PT_DTYPE == 64
    _mm512_mask_storeu_pd(p, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, p), v));
#else
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
    __mmask8 ml = (__mmask8)m, mh = (__mmask8)(m >> 8);
    _mm512_mask_storeu_pd(p, ml, _mm512_add_pd(_mm512_maskz_loadu_pd(ml, p), lo));
    _mm512_mask_storeu_pd(p + 8, mh, _mm512_add_pd(_mm512_maskz_loadu_pd(mh, p + 8), hi));
#endif
}

A512 static void PT_SFX(ln_dwdb_group_avx512)(double *restrict pdw, double *restrict pdb,
                                         const real *dy, const real *x, const real *mean,
                                         const real *rstd, int nr, int64_t C)
{
    if (nr == GROUP) {
        const real *x0 = x, *x1 = x + C, *x2 = x + 2 * C, *x3 = x + 3 * C;
        const real *d0 = dy, *d1 = dy + C, *d2 = dy + 2 * C, *d3 = dy + 3 * C;
        zreal m0 = Z_SET1(mean[0]), m1 = Z_SET1(mean[1]), m2 = Z_SET1(mean[2]);
        zreal m3 = Z_SET1(mean[3]);
        zreal r0 = Z_SET1(rstd[0]), r1 = Z_SET1(rstd[1]), r2 = Z_SET1(rstd[2]);
        zreal r3 = Z_SET1(rstd[3]);
        for (int64_t c = 0; c < C; c += ZW) {
            zmask m = Z_TAIL(C - c);
            zreal e0 = Z_MLOAD(d0 + c, m), e1 = Z_MLOAD(d1 + c, m);
            zreal e2 = Z_MLOAD(d2 + c, m), e3 = Z_MLOAD(d3 + c, m);
            zreal h0 = Z_MUL(Z_SUB(Z_MLOAD(x0 + c, m), m0), r0);
            zreal h1 = Z_MUL(Z_SUB(Z_MLOAD(x1 + c, m), m1), r1);
            zreal h2 = Z_MUL(Z_SUB(Z_MLOAD(x2 + c, m), m2), r2);
            zreal h3 = Z_MUL(Z_SUB(Z_MLOAD(x3 + c, m), m3), r3);
            zreal sw = Z_ADD(Z_ADD(Z_MUL(e0, h0), Z_MUL(e1, h1)),
                          Z_ADD(Z_MUL(e2, h2), Z_MUL(e3, h3)));
            zreal sb = Z_ADD(Z_ADD(e0, e1), Z_ADD(e2, e3));
            PT_SFX(part_add)(pdw + c, sw, m);
            PT_SFX(part_add)(pdb + c, sb, m);
        }
        return;
    }
    for (int r = 0; r < nr; r++) {
        const real *xr = x + r * C, *dr = dy + r * C;
        zreal vm = Z_SET1(mean[r]), vrs = Z_SET1(rstd[r]);
        for (int64_t c = 0; c < C; c += ZW) {
            zmask m = Z_TAIL(C - c);
            zreal d = Z_MLOAD(dr + c, m);
            zreal h = Z_MUL(Z_SUB(Z_MLOAD(xr + c, m), vm), vrs);
            PT_SFX(part_add)(pdw + c, Z_MUL(d, h), m);
            PT_SFX(part_add)(pdb + c, d, m);
        }
    }
}
const struct PT_SFX(pt_ln_kernels) PT_SFX(pt_ln_avx512) = {
    "avx512", PT_SFX(ln_fwd_rows_avx512), PT_SFX(ln_bwd_row_avx512),
    PT_SFX(ln_dwdb_group_avx512)
};
#else
typedef int PT_SFX(pt_layernorm_avx512_unused);
#endif /* PT_X86 */
