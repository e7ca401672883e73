/*
 * linear_avx512.c -- the avx512 path of the linear family (pt_dispatch.h):
 * its dot_forward, y = x w^T + b for inputs of few rows, float32, reading
 * w in place. float64 keeps the portable path (the GEMM).
 *
 * Shapes: x (N, IN), w (OUT, IN) row-major, b (OUT) or NULL, y (N, OUT).
 *
 * Why: a GEMM packs w into its panel layout on every call. With few rows
 * of x (a sentence or two, a decoder step), that packing costs as much as
 * the products (OpenBLAS's SkylakeX sgemm at 17 x 384 -> 1152:
 * sgemm_oncopy and sgemm_kernel take about equal time). Here each output
 * is a dot product of a row of x and a row of w, both contiguous along
 * IN, so nothing is packed and w is read once per call. pt_linear_forward
 * (linear.c) calls it up to the path's max_rows (PT_LINEAR_DOT_ROWS_AVX512,
 * pt_dispatch.h) rows, above which OpenBLAS matches it.
 *
 * Tile: up to 6 rows of x x 4 rows of w, 24 accumulators of 16 lanes;
 * per 16 k: 6 x loads, 4 w loads, 24 FMAs. The accumulators of each 4
 * rows are then summed into one vector of 16 outputs by a
 * transpose-and-add tree (30 shuffles and 15 adds), the bias added, and
 * each row's 4 outputs stored. The rows of x are cut into tiles of at
 * most 6, as even as they come (17 rows: 6, 6, 5), so no tile is left
 * with a row or two that would cost a whole pass over w. Rows of w go in
 * blocks of LR_NB (24-96 KiB for IN = 384-1536, kept in L1/L2 while
 * every row tile passes), the blocks split statically between the
 * threads. At batch 1 w comes from L3 or memory, read once: while the
 * first row tile of a block runs, the next block's rows are prefetched
 * into L2 (without it the loads of w and the FMAs take turns instead of
 * overlapping). A single row of x (N = 1: a decoding step at batch 1)
 * goes against 16 rows of w at a time instead (lr_row16): 16 independent
 * FMA chains where a 1 x 4 tile has 4, and one reduction tree per 16
 * outputs instead of per 4.
 *
 * Every output is one thread's fixed-order sum (lane l holds the k = l
 * mod 16 terms in k order, the IN % 16 tail in masked lanes, then the
 * tree), so results do not depend on the thread count, on N, or on where
 * a row sits in x: a sentence gets the same bits alone or in a batch.
 * Below LR_PAR_MIN multiply-adds (the path's par_min; the table's
 * linear_par_min, which PT_LINEAR_PAR_MIN overrides) it runs on one
 * thread: a second thread saves at most half of a product that small,
 * which a thread that has to be woken, or that waits for a core on a
 * busy machine, costs back.
 */
#include <stdint.h>
#include "pt_real.h"
#include "pt_dispatch.h"
#include "pt_omp.h"

#if PT_DTYPE != 64 && PT_X86
#include <immintrin.h>

#define LR_NB 16                   /* rows of w per block (a multiple of 4) */
#define LR_MR 6                    /* most rows of x per tile */
#define LR_PAR_MIN (1 << 22)       /* multiply-adds below which one thread runs */
#define LR_TARGET __attribute__((target("avx512f")))
#define LR_INLINE __attribute__((always_inline, target("avx512f"))) static inline

/* a + b of the two 256-bit halves paired by shuffle_f32x4 immediates. */
#define LR_PAIR4(a, b, lo, hi) \
    _mm512_add_ps(_mm512_shuffle_f32x4((a), (b), lo), _mm512_shuffle_f32x4((a), (b), hi))
#define LR_PAIR(a, b, lo, hi) \
    _mm512_add_ps(_mm512_shuffle_ps((a), (b), lo), _mm512_shuffle_ps((a), (b), hi))

/* The sums of the 16 lanes of each of a0..a15, as one vector: lane
 * 4g + p holds the sum of a[{0,8,4,12}[g] + {0,2,1,3}[p]]. */
LR_INLINE __m512 lr_sum16(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4, __m512 a5,
                          __m512 a6, __m512 a7, __m512 a8, __m512 a9, __m512 a10,
                          __m512 a11, __m512 a12, __m512 a13, __m512 a14, __m512 a15)
{
    /* 16 -> 8: 128-bit lanes 0+2, 1+3 of a_n and of a_{n+8} */
    __m512 b0 = LR_PAIR4(a0, a8, 0x44, 0xEE), b1 = LR_PAIR4(a1, a9, 0x44, 0xEE);
    __m512 b2 = LR_PAIR4(a2, a10, 0x44, 0xEE), b3 = LR_PAIR4(a3, a11, 0x44, 0xEE);
    __m512 b4 = LR_PAIR4(a4, a12, 0x44, 0xEE), b5 = LR_PAIR4(a5, a13, 0x44, 0xEE);
    __m512 b6 = LR_PAIR4(a6, a14, 0x44, 0xEE), b7 = LR_PAIR4(a7, a15, 0x44, 0xEE);
    /* 8 -> 4: c_n's 128-bit lanes hold 4 partial sums of a_n, a_{n+8},
     * a_{n+4}, a_{n+12} */
    __m512 c0 = LR_PAIR4(b0, b4, 0x88, 0xDD), c1 = LR_PAIR4(b1, b5, 0x88, 0xDD);
    __m512 c2 = LR_PAIR4(b2, b6, 0x88, 0xDD), c3 = LR_PAIR4(b3, b7, 0x88, 0xDD);
    /* 4 -> 2 -> 1 inside the 128-bit lanes */
    __m512 d0 = LR_PAIR(c0, c2, 0x44, 0xEE), d1 = LR_PAIR(c1, c3, 0x44, 0xEE);
    return LR_PAIR(d0, d1, 0x88, 0xDD);
}

/* y[i*ldy + j] = sum_k x[i*IN + k] w[j*IN + k] (+ b[j]) for i < mr, j < nr
 * (mr <= LR_MR compile-time through always_inline; rows past nr read row
 * 0 of w and are not stored); tail masks the lanes of IN % 16. pf, when
 * not NULL, is 4 rows of w (stride IN) to prefetch into L2 meanwhile. */
LR_INLINE void lr_tile(float *y, int64_t ldy, const float *x, const float *w, const float *b,
                       int64_t IN, const int mr, int nr, __mmask16 tail, const float *pf)
{
    __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
    __m512 c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
    __m512 c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
    const float *x0 = x, *x1 = mr > 1 ? x + IN : x, *x2 = mr > 2 ? x + 2 * IN : x;
    const float *x3 = mr > 3 ? x + 3 * IN : x, *x4 = mr > 4 ? x + 4 * IN : x;
    const float *x5 = mr > 5 ? x + 5 * IN : x;
    const float *w0 = w, *w1 = nr > 1 ? w + IN : w, *w2 = nr > 2 ? w + 2 * IN : w;
    const float *w3 = nr > 3 ? w + 3 * IN : w;
#define LR_ROW(i, LD)                                                                   \
    if (mr > i) {                                                                       \
        __m512 u = LD(x##i + k);                                                        \
        c##i##0 = _mm512_fmadd_ps(u, v0, c##i##0); c##i##1 = _mm512_fmadd_ps(u, v1, c##i##1); \
        c##i##2 = _mm512_fmadd_ps(u, v2, c##i##2); c##i##3 = _mm512_fmadd_ps(u, v3, c##i##3); \
    }
#define LR_STEP(LD)                                                                     \
    {                                                                                   \
        __m512 v0 = LD(w0 + k), v1 = LD(w1 + k), v2 = LD(w2 + k), v3 = LD(w3 + k);      \
        LR_ROW(0, LD) LR_ROW(1, LD) LR_ROW(2, LD) LR_ROW(3, LD) LR_ROW(4, LD) LR_ROW(5, LD) \
    }
#define LR_LOAD(p) _mm512_loadu_ps(p)
#define LR_LOADT(p) _mm512_maskz_loadu_ps(tail, p)
    int64_t k = 0;
    if (pf) {
        for (; k + 16 <= IN; k += 16) {
            _mm_prefetch((const char *)(pf + k), _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + IN + k), _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + 2 * IN + k), _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + 3 * IN + k), _MM_HINT_T1);
            LR_STEP(LR_LOAD)
        }
    }
    for (; k + 16 <= IN; k += 16) LR_STEP(LR_LOAD)
    if (k < IN) LR_STEP(LR_LOADT)
#undef LR_LOAD
#undef LR_LOADT
#undef LR_STEP
#undef LR_ROW
    /* output (i, j) of rows 0-3 in lane 4i + j of s, rows 4-5 in lanes
     * 4(i-4) + j of t: accumulator index {0,8,4,12}[i] + {0,2,1,3}[j] */
    __m512 s = lr_sum16(c00, c02, c01, c03, c20, c22, c21, c23,
                        c10, c12, c11, c13, c30, c32, c31, c33);
    __m512 t = z;
    if (mr > 4)
        t = lr_sum16(c40, c42, c41, c43, z, z, z, z, c50, c52, c51, c53, z, z, z, z);
    __mmask16 cols = (__mmask16)((1u << nr) - 1);
    if (b) {
        __m512 bv = _mm512_maskz_loadu_ps(cols, b);
        bv = _mm512_shuffle_f32x4(bv, bv, 0x00);
        s = _mm512_add_ps(s, bv);
        t = _mm512_add_ps(t, bv);
    }
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int i = 0; i < mr; i++) {
        __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(4 * (i & 3)));
        __m512 r = _mm512_permutexvar_ps(idx, i < 4 ? s : t);
        _mm512_mask_storeu_ps(y + i * ldy, cols, r);
    }
}

/* y[j] = sum_k x[k] w[j*IN + k] (+ b[j]) for j < nr <= 16: one row of x
 * against 16 rows of w (a row past nr reads row nr - 1 and is not
 * stored), 16 accumulators and one lr_sum16 for 16 outputs. Each output
 * is summed in the order lr_tile sums it (the tree treats every
 * accumulator alike), so a row gets the same bits alone (N = 1) as in a
 * batch. The rows of w are addressed from one pointer (w + k) and the
 * row stride, so the 16 loads need no register each; no software
 * prefetch: the 16 sequential streams are the hardware prefetcher's. */
LR_INLINE void lr_row16(float *y, const float *x, const float *w, const float *b, int64_t IN,
                        int nr, __mmask16 tail)
{
    __m512 a[16];
    int64_t off[16];
    for (int j = 0; j < 16; j++) {
        a[j] = _mm512_setzero_ps();
        off[j] = (j < nr ? j : nr - 1) * IN;
    }
#define LR_STEP1(LD)                                                  \
    {                                                                 \
        __m512 u = LD(x + k);                                         \
        for (int j = 0; j < 16; j++)                                  \
            a[j] = _mm512_fmadd_ps(u, LD(w + off[j] + k), a[j]);      \
    }
#define LR_LOAD(p) _mm512_loadu_ps(p)
#define LR_LOADT(p) _mm512_maskz_loadu_ps(tail, p)
    int64_t k = 0;
    if (nr == 16) {                 /* row j at j * IN: offsets the compiler forms */
        for (; k + 16 <= IN; k += 16) {
            __m512 u = LR_LOAD(x + k);
            for (int j = 0; j < 16; j++)
                a[j] = _mm512_fmadd_ps(u, LR_LOAD(w + j * IN + k), a[j]);
        }
    }
    for (; k + 16 <= IN; k += 16) LR_STEP1(LR_LOAD)
    if (k < IN) LR_STEP1(LR_LOADT)
#undef LR_LOAD
#undef LR_LOADT
#undef LR_STEP1
    /* lane 4g + p of lr_sum16 holds argument {0,8,4,12}[g] + {0,2,1,3}[p]:
     * row j of w goes where its output lands in lane j */
    __m512 s = lr_sum16(a[0], a[2], a[1], a[3], a[8], a[10], a[9], a[11],
                        a[4], a[6], a[5], a[7], a[12], a[14], a[13], a[15]);
    __mmask16 cols = (__mmask16)((1u << nr) - 1);
    if (b) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(cols, b));
    _mm512_mask_storeu_ps(y, cols, s);
}

/* The dot_forward slot: y(N,OUT) = x(N,IN) w(OUT,IN)^T (+ b), N, IN, OUT > 0. */
LR_TARGET static void lr_forward(float *y, const float *x, const float *w, const float *b,
                                 int64_t N, int64_t IN, int64_t OUT)
{
    int nth = pt_linear_threads(N, IN, OUT, pt_get_num_threads());
    int64_t nblocks = (OUT + LR_NB - 1) / LR_NB;
    /* row tiles of at most LR_MR rows, as even as they come (17 -> 6, 6, 5) */
    int64_t ntiles = (N + LR_MR - 1) / LR_MR;
    __mmask16 tail = (__mmask16)((1u << (IN % 16)) - 1);
    (void)nth;   /* read only by the OpenMP pragma */
    #pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        int64_t o1 = (blk + 1) * LR_NB < OUT ? (blk + 1) * LR_NB : OUT;
        if (N == 1) {            /* one row: 16 rows of w per tile, not 4 */
            lr_row16(y + blk * LR_NB, x, w + blk * LR_NB * IN, b ? b + blk * LR_NB : NULL, IN,
                     (int)(o1 - blk * LR_NB), tail);
            continue;
        }
        for (int64_t tile = 0; tile < ntiles; tile++) {
            int64_t r = tile * N / ntiles, mr = (tile + 1) * N / ntiles - r;
            for (int64_t o = blk * LR_NB; o < o1; o += 4) {
                int nr = (int)(o1 - o < 4 ? o1 - o : 4);
                float *yt = y + r * OUT + o;
                const float *xt = x + r * IN, *wt = w + o * IN, *bt = b ? b + o : NULL;
                /* the first row tile brings the next block's rows of w into L2 */
                const float *pf = tile == 0 && o + LR_NB + 4 <= OUT ? wt + LR_NB * IN : NULL;
                switch (mr) {
                case 6: lr_tile(yt, OUT, xt, wt, bt, IN, 6, nr, tail, pf); break;
                case 5: lr_tile(yt, OUT, xt, wt, bt, IN, 5, nr, tail, pf); break;
                case 4: lr_tile(yt, OUT, xt, wt, bt, IN, 4, nr, tail, pf); break;
                case 3: lr_tile(yt, OUT, xt, wt, bt, IN, 3, nr, tail, pf); break;
                case 2: lr_tile(yt, OUT, xt, wt, bt, IN, 2, nr, tail, pf); break;
                default: lr_tile(yt, OUT, xt, wt, bt, IN, 1, nr, tail, pf); break;
                }
            }
        }
    }
}

const struct pt_lin_kernels_f32 pt_lin_avx512_f32 = {"avx512", lr_forward,
                                                     PT_LINEAR_DOT_ROWS_AVX512, LR_PAR_MIN,
                                                     pt_linear_packed_avx512_f32};
#endif
