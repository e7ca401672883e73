/*
 * linear_packed_x86.c -- the avx2 and avx512 packed_panels slots of the
 * linear family (pt_dispatch_slots.h), float32: y = x w^T + b over w
 * packed in panels of 64 output columns (linear_packed.c).
 *
 * avx512: a tile is up to 6 rows of x by one whole panel, 24 accumulators
 * of 16 lanes; per k, 4 loads of the panel's row (256 contiguous bytes), 6
 * broadcasts of x (folded into the FMAs) and 24 FMAs. avx2: up to 6 rows
 * by 16 columns of a panel, 12 accumulators of 8 lanes; per k, 2 loads, 6
 * broadcasts, 12 FMAs. No reduction: output (i, j) lives in one lane.
 *
 * The rows of x go in tiles of at most 6, as even as they come (17: 6, 6,
 * 5). Each panel (96-384 KiB for IN = 384-1536) is read once per row tile,
 * from L2 after the first: while a panel's row tiles run, the thread's
 * next panel is prefetched into L2 (at batch 1 the weights come from L3
 * or memory, read once). avx512 spreads those prefetches over all the row
 * tiles (2 lines per k step for 17 rows) rather than issuing them all in
 * the first (4 per step): less demand at once on L3 and memory. A call
 * computes a run of panels on one thread (linear_packed.c shares the
 * panels out), the next panel prefetched within the run: every output is
 * acc = fma(x[i,k], w[j,k], acc) for k in order from acc = 0, then + b[j],
 * on both paths (the same bits), independent of the thread count and of N.
 */
#include <stdint.h>
#include <string.h>
#include "pt_real.h"
#include "pt_dispatch.h"

#if PT_DTYPE != 64 && PT_X86
#include <immintrin.h>

#define PW PT_LINEAR_PANEL         /* 64 columns per panel */
#define LP_MR 6                    /* most rows of x per tile */

/* the rows of tile t of ntiles over N rows: [*r, *r + return) */
static inline int64_t lp_rows(int64_t t, int64_t ntiles, int64_t N, int64_t *r)
{
    *r = t * N / ntiles;
    return (t + 1) * N / ntiles - *r;
}

/* ----------------------------------------------------------------- avx512 */
#define L5_INLINE __attribute__((always_inline, target("avx512f"))) static inline

/* y[i*ldy + j] = sum_k x[i*IN + k] panel[k*PW + j] (+ b[j]) for i < mr
 * (compile-time through always_inline), the lanes of m[q] stored of
 * columns 16q..16q+15. pf, when not NULL, is the next panel (4 IN cache
 * lines): at step k, its lines line0 + k*per .. + per - 1 (those below 4
 * IN) are prefetched into L2. */
L5_INLINE void l5_tile(float *y, int64_t ldy, const float *x, int64_t IN, const float *panel,
                       const float *b, const int mr, const __mmask16 *m, const float *pf,
                       int64_t line0, int per)
{
    /* the accumulators spelled out (not an array), so that they stay in
     * registers at any optimisation level */
    const __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
    __m512 c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
    __m512 c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
#define L5_ROW(i)                                                                       \
    if (mr > i) {                                                                       \
        __m512 a = _mm512_set1_ps(x[i * IN + k]);                                       \
        c##i##0 = _mm512_fmadd_ps(a, w0, c##i##0); c##i##1 = _mm512_fmadd_ps(a, w1, c##i##1); \
        c##i##2 = _mm512_fmadd_ps(a, w2, c##i##2); c##i##3 = _mm512_fmadd_ps(a, w3, c##i##3); \
    }
#define L5_STEP                                                                         \
    {                                                                                   \
        const float *p = panel + k * PW;                                                \
        __m512 w0 = _mm512_loadu_ps(p), w1 = _mm512_loadu_ps(p + 16);                   \
        __m512 w2 = _mm512_loadu_ps(p + 32), w3 = _mm512_loadu_ps(p + 48);              \
        L5_ROW(0) L5_ROW(1) L5_ROW(2) L5_ROW(3) L5_ROW(4) L5_ROW(5)                     \
    }
    int64_t k = 0;
    if (pf) {
        const char *q = (const char *)pf + 64 * line0;
        int64_t left = 4 * IN - line0;      /* lines of the panel from line0 on */
        for (; k < IN && left > 0; k++, q += 64 * per, left -= per) {
            for (int j = 0; j < per && j < left; j++) _mm_prefetch(q + 64 * j, _MM_HINT_T1);
            L5_STEP
        }
    }
    for (; k < IN; k++) L5_STEP
#undef L5_STEP
#undef L5_ROW
    __m512 b0 = z, b1 = z, b2 = z, b3 = z;
    if (b) {
        b0 = _mm512_maskz_loadu_ps(m[0], b);
        b1 = _mm512_maskz_loadu_ps(m[1], b + 16);
        b2 = _mm512_maskz_loadu_ps(m[2], b + 32);
        b3 = _mm512_maskz_loadu_ps(m[3], b + 48);
    }
#define L5_PUT(i, q) \
    _mm512_mask_storeu_ps(y + i * ldy + 16 * q, m[q], b ? _mm512_add_ps(c##i##q, b##q) : c##i##q);
#define L5_STORE(i) \
    if (mr > i) { L5_PUT(i, 0) L5_PUT(i, 1) L5_PUT(i, 2) L5_PUT(i, 3) }
    L5_STORE(0) L5_STORE(1) L5_STORE(2) L5_STORE(3) L5_STORE(4) L5_STORE(5)
#undef L5_STORE
#undef L5_PUT
}

__attribute__((target("avx512f")))
void pt_linear_packed_avx512_f32(float *y, const float *x, const float *wp, const float *b,
                                 int64_t N, int64_t IN, int64_t OUT, int64_t g0, int64_t g1)
{
    int64_t ntiles = (N + LP_MR - 1) / LP_MR;
    for (int64_t g = g0; g < g1; g++) {
        int64_t cols = OUT - g * PW < PW ? OUT - g * PW : PW;
        __mmask16 m[4];
        for (int q = 0; q < 4; q++) {
            int64_t n = cols - 16 * q;
            m[q] = (__mmask16)(n >= 16 ? 0xFFFF : n > 0 ? (1u << n) - 1 : 0);
        }
        const float *panel = wp + g * IN * PW, *bg = b ? b + g * PW : NULL;
        /* the next panel's 4 IN lines, per a k step, spread over the row
         * tiles in order (one tile: 4 per step; 3 tiles: 2, the third none) */
        const float *pf = g + 1 < g1 ? panel + IN * PW : NULL;
        int per = (int)((4 + ntiles - 1) / ntiles);
        for (int64_t t = 0; t < ntiles; t++) {
            int64_t r, mr = lp_rows(t, ntiles, N, &r), l0 = t * IN * per;
            float *yt = y + r * OUT + g * PW;
            const float *xt = x + r * IN;
            switch (mr) {
            case 6: l5_tile(yt, OUT, xt, IN, panel, bg, 6, m, pf, l0, per); break;
            case 5: l5_tile(yt, OUT, xt, IN, panel, bg, 5, m, pf, l0, per); break;
            case 4: l5_tile(yt, OUT, xt, IN, panel, bg, 4, m, pf, l0, per); break;
            case 3: l5_tile(yt, OUT, xt, IN, panel, bg, 3, m, pf, l0, per); break;
            case 2: l5_tile(yt, OUT, xt, IN, panel, bg, 2, m, pf, l0, per); break;
            default: l5_tile(yt, OUT, xt, IN, panel, bg, 1, m, pf, l0, per); break;
            }
        }
    }
}

/* ------------------------------------------------------------------- avx2 */
#define L2_INLINE __attribute__((always_inline, target("avx2,fma"))) static inline

/* y[i*ldy + j] = sum_k x[i*IN + k] sub[k*PW + j] (+ b[j]) for i < mr, j <
 * cols (<= 16) of a 16-column strip sub of a panel. pf: a strip of the
 * next panel to prefetch into L2, or NULL. */
L2_INLINE void l2_tile(float *y, int64_t ldy, const float *x, int64_t IN, const float *sub,
                       const float *b, const int mr, int64_t cols, const float *pf)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z;
    __m256 c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
#define L2_ROW(i)                                                                       \
    if (mr > i) {                                                                       \
        __m256 a = _mm256_broadcast_ss(x + i * IN + k);                                 \
        c##i##0 = _mm256_fmadd_ps(a, w0, c##i##0); c##i##1 = _mm256_fmadd_ps(a, w1, c##i##1); \
    }
#define L2_STEP                                                                         \
    {                                                                                   \
        __m256 w0 = _mm256_loadu_ps(sub + k * PW), w1 = _mm256_loadu_ps(sub + k * PW + 8); \
        L2_ROW(0) L2_ROW(1) L2_ROW(2) L2_ROW(3) L2_ROW(4) L2_ROW(5)                     \
    }
    int64_t k = 0;
    if (pf) {
        for (; k < IN; k++) {
            _mm_prefetch((const char *)(pf + k * PW), _MM_HINT_T1);
            L2_STEP
        }
    }
    for (; k < IN; k++) L2_STEP
#undef L2_STEP
#undef L2_ROW
    float bb[16] = {0};
    if (b) memcpy(bb, b, (size_t)cols * sizeof(float));
    __m256 b0 = _mm256_loadu_ps(bb), b1 = _mm256_loadu_ps(bb + 8);
    float out[16];
#define L2_STORE(i)                                                                     \
    if (mr > i) {                                                                       \
        __m256 r0 = b ? _mm256_add_ps(c##i##0, b0) : c##i##0;                           \
        __m256 r1 = b ? _mm256_add_ps(c##i##1, b1) : c##i##1;                           \
        float *yi = cols == 16 ? y + i * ldy : out;                                     \
        _mm256_storeu_ps(yi, r0);                                                       \
        _mm256_storeu_ps(yi + 8, r1);                                                   \
        if (cols < 16) memcpy(y + i * ldy, out, (size_t)cols * sizeof(float));          \
    }
    L2_STORE(0) L2_STORE(1) L2_STORE(2) L2_STORE(3) L2_STORE(4) L2_STORE(5)
#undef L2_STORE
}

__attribute__((target("avx2,fma")))
void pt_linear_packed_avx2_f32(float *y, const float *x, const float *wp, const float *b,
                               int64_t N, int64_t IN, int64_t OUT, int64_t g0, int64_t g1)
{
    int64_t ntiles = (N + LP_MR - 1) / LP_MR;
    for (int64_t g = g0; g < g1; g++) {
        const float *panel = wp + g * IN * PW;
        for (int64_t t = 0; t < ntiles; t++) {
            int64_t r, mr = lp_rows(t, ntiles, N, &r);
            for (int q = 0; q < PW / 16; q++) {
                int64_t c0 = g * PW + 16 * q, cols = OUT - c0 < 16 ? OUT - c0 : 16;
                if (cols <= 0) break;
                float *yt = y + r * OUT + c0;
                const float *xt = x + r * IN, *sub = panel + 16 * q, *bt = b ? b + c0 : NULL;
                const float *pf = t == 0 && g + 1 < g1 ? sub + IN * PW : NULL;
                switch (mr) {
                case 6: l2_tile(yt, OUT, xt, IN, sub, bt, 6, cols, pf); break;
                case 5: l2_tile(yt, OUT, xt, IN, sub, bt, 5, cols, pf); break;
                case 4: l2_tile(yt, OUT, xt, IN, sub, bt, 4, cols, pf); break;
                case 3: l2_tile(yt, OUT, xt, IN, sub, bt, 3, cols, pf); break;
                case 2: l2_tile(yt, OUT, xt, IN, sub, bt, 2, cols, pf); break;
                default: l2_tile(yt, OUT, xt, IN, sub, bt, 1, cols, pf); break;
                }
            }
        }
    }
}
#endif
