/*
 * attention.c -- scaled dot-product attention, forward and backward.
 *
 * Per (b, h), with q (Tq,D), k (Tk,D), v (Tk,Dv):
 *   S = scale * q k^T + mask (+ causal: S[i,j] = -inf for j > i)
 *   P = softmax(S) over j,  out = P v,  lse[i] = log sum_j exp(S[i,j])
 * A fully masked row (every S[i,j] = -inf) gives out[i] = 0, lse[i] = -inf.
 *
 * Forward, two paths:
 *   - weights != NULL: S is written straight into weights (B,H,Tq,Tk), then
 *     softmaxed in place, then out = P v;
 *   - weights == NULL: FlashAttention-style online softmax. A task is a
 *     few query tiles of BQ rows of one (b, h); it walks key tiles of BK
 *     keys, each met by every query tile of the task in turn, each query
 *     tile keeping a running row max m, row sum l and output accumulator
 *     acc (BQ,Dv):
 *       m' = max(m, max_j S),  p_j = exp(S_j - m'),  a = exp(m - m')
 *       l' = a l + sum_j p_j,  acc' = a acc + sum_j p_j v_j
 *     and finally out = acc / l, lse = m + log l. Scratch per thread is
 *     O(BQ*BK + Tk*D + ATT_FG*BQ*Dv) (the current head's keys
 *     transposed): nothing proportional to Tq x Tk.
 *
 * Backward (FlashAttention-2: P recomputed from q, k and lse):
 *   Drow_i = sum_d dout[i,d] out[i,d]
 *   P = exp(S - lse),  dP = dout v^T,  dS = P * (dP - Drow)
 *   dv += P^T dout,  dk += scale dS^T q,  dq += scale dS k
 * computed per (query tile, key tile) pair, each thread holding its current
 * key tile transposed and its head's Drow (O(Tq), computed by each thread
 * that meets the head, in its task: the whole backward is one parallel
 * region); q, k, v and dout are read in place (see att_alloc). With accumulate == 0 the first pair that reaches
 * a gradient tile stores into it (the tile product with beta = 0) and the
 * later ones add, so the buffers are never read before they are written;
 * key tiles that no query reaches (causal, Tk > Tq) are zeroed. With at
 * least as many heads as threads a task is one head (key tiles outer,
 * query tiles inner); with fewer heads, two passes: (head, key tile) tasks
 * for dk/dv, then (head, query tile) tasks for dq. Every gradient element
 * receives the same products in the same order either way, and no two
 * threads write the same element: the result is bitwise independent of the
 * thread count.
 *
 * Inner loops (attention_tile.c): every product here (q k^T, P v,
 * dout v^T, P^T dout, dS^T q, dS k) is the small tile product pt_att_mm,
 * C = alpha op(A) B + beta C, register-blocked and vectorized over
 * contiguous columns of B, with AVX2 and AVX-512 kernels chosen once by
 * ISA level (dispatch.c); the key (and value) tiles are transposed into kT
 * (D,BK) first so that q k^T has contiguous columns too, and P^T, dS^T are
 * read in place (trans_a). The elementwise steps between the products
 * (pt_att_softmax_step in the forward, pt_att_bwd_ds in the backward) are
 * table entries too, and so is the finiteness scan of the causal diagonal
 * tiles (pt_att_maxabs). Where a backward tile has no mask (a causal
 * diagonal tile: no mask besides its own triangle), P and dS come straight
 * out of their products (pt_att_mm_exp, pt_att_mm_ds: on AVX2 and AVX-512
 * the exp and dS step run on the accumulators, saving a pass over the
 * tile). The forward keeps its step a separate pass over
 * the stored scores (on AVX-512 16 rows at a time, their row maxima and
 * sums reduced across the rows), which measured faster than the step on
 * each row of a product block. exp is a branch-free polynomial,
 * vectorized for float32. Nothing needs -ffast-math; every sum runs in a
 * fixed order that depends neither on the thread count nor on where a row
 * or column lies in its tile.
 */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "attention_tile.h"

#define BQ 64   /* query rows per tile */
#define BK 64   /* keys per tile */
/* A skipped key tail starts at a multiple of ATT_KROUND keys, so that the
 * tile kernels keep to whole (unmasked) vectors: AVX2 masked loads and
 * stores are slow on AMD (measured: nk = 11 instead of 16 made T = 16 ~1.5x
 * slower). */
#define ATT_KROUND 16
#if PT_DTYPE == 64
#define ATT_REAL_MAX DBL_MAX
#else
#define ATT_REAL_MAX FLT_MAX
#endif
/* Scratch aligned to 64 bytes (a cache line, one zmm vector): the tile
 * products load rows of their B operand a vector at a time, and a load
 * that straddles two lines costs two. The caller's operands that are B
 * of a product (v of P v, k of dS k, q of dS^T q, dout of P^T dout) are
 * read in place, aligned or not: a copy of a head to such scratch costs
 * more than the split loads it saves (measured on AVX-512 and AVX2).
 * NULL when out of memory; att_free(NULL) does nothing. */
static void *PT_SFX(att_alloc)(size_t bytes)
{
    unsigned char *raw = malloc(bytes + 64 + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void PT_SFX(att_free)(void *p)
{
    if (p) free(((void **)p)[-1]);
}

/* kT[d*BK + j] = k[(j0 + j)*D + d] for j < nk: the key tile, transposed. */
static void PT_SFX(att_transpose)(real *kT, const real *k, int64_t j0, int nk, int64_t D)
{
    PT_SFX(pt_att_transpose)(kT, BK, k + j0 * D, D, nk, D);
}

/* One head's keys k (T, D) -> kT: per tile of BK keys, the tile
 * transposed, kT[kt*D*BK + d*BK + j] = k[kt*BK + j, d] (columns j past T
 * are left unset and never read). */
static void PT_SFX(att_transpose_head)(real *kT, const real *k, int64_t T, int64_t D)
{
    for (int64_t j0 = 0; j0 < T; j0 += BK) {
        int nk = (int)(T - j0 < BK ? T - j0 : BK);
        PT_SFX(att_transpose)(kT + (j0 / BK) * D * BK, k, j0, nk, D);
    }
}

/* Finish the score tile S (nq,nk) holding scale q k^T, whose element
 * (i, j) is query i0 + i, key j0 + j: S += mask, then the causal -inf.
 * mrow is the mask at (b, h), or NULL. */
static void PT_SFX(att_mask)(real *S, int64_t lds, int64_t i0, int nq, int64_t j0, int nk,
                             const real *mrow, const int64_t *ms, int is_causal)
{
    /* without a mask, only a tile that reaches past its first row's query
     * (the causal diagonal) has anything to set */
    if (!mrow && (!is_causal || j0 + nk <= i0 + 1)) return;
    for (int i = 0; i < nq; i++) {
        real *s = S + (int64_t)i * lds;
        /* first causally masked j in the tile: from there on s[j] = -inf,
         * whatever the mask or s[j] (which a diagonal tile leaves unset) */
        int64_t first = is_causal ? i0 + i + 1 - j0 : nk;
        int e = (int)(first < 0 ? 0 : first < nk ? first : nk);
        if (mrow) {
            const real *m = mrow + (i0 + i) * ms[2] + j0 * ms[3];
            if (ms[3] == 1) {
                for (int j = 0; j < e; j++) s[j] += m[j];
            } else {
                for (int j = 0; j < e; j++) s[j] += m[j * ms[3]];
            }
        }
        for (int j = e; j < nk; j++) s[j] = -INFINITY;
    }
}

/* Number of key tiles query tile [i0, i0+nq) needs (causal: keys <= i0+nq-1). */
static int64_t PT_SFX(att_key_end)(int64_t i0, int nq, int64_t Tk, int is_causal)
{
    if (!is_causal) return Tk;
    int64_t e = i0 + nq;
    return e < Tk ? e : Tk;
}

/* Causal diagonal tiles. In the tile pair with i0 == j0 (BQ == BK, so the
 * only pair that is partly masked), query row i sees keys j <= i only. The
 * products run per group of ATT_DG rows (one register block of the AVX2
 * and AVX-512 kernels, so each block sums and stores no more than its own
 * rows need) on just the part a group needs:
 *   - scores (q k^T, dout v^T): rows [r0, r1) need columns j < r1,
 *     rounded up to ATT_DROUND (whole vectors); the masked rest of q k^T
 *     is set to -inf by att_mask, the rest of dout v^T to 0 (its P is 0),
 *     or, in a backward tile without a mask, P and dS come from mm_exp
 *     and mm_ds on those columns and their masked part is set to 0
 *     (att_diag_fix);
 *   - the forward's mask and softmax step: per band of ATT_SBAND rows,
 *     over the columns the band's row groups read (the rest is -inf, whose
 *     exp adds exactly 0 to a row sum and nothing to a row max);
 *   - P v, dS k (sum over keys): rows [r0, r1) sum over keys j < r1;
 *   - P^T dout, dS^T q (sum over queries): key rows [c0, c1) sum over
 *     queries i >= c0.
 * Every term left out is (exactly zero) x (a finite operand), as long as
 * the operands it multiplies are finite (att_diag_ok) and, in the
 * backward, the rows' lse is not NaN and Drow is finite (else a masked P
 * or dS is NaN, not 0); a chain that starts
 * later starts from the same +0, and one that stops earlier differs at
 * most in the sign of a zero. */
#define ATT_DG 6
#define ATT_DROUND 16
/* Rows per softmax step call on a diagonal tile: the AVX-512 step's batch. */
#define ATT_SBAND 16

/* Columns rows [0, r1) of a diagonal tile with nk keys need. */
static int PT_SFX(att_diag_cols)(int r1, int nk)
{
    int n = (r1 + ATT_DROUND - 1) / ATT_DROUND * ATT_DROUND;
    return n < nk ? n : nk;
}

/* The masked part of rows [r0, r1) of a diagonal tile whose P and dS came
 * straight from mm_exp and mm_ds (P = exp(S - lse) and dS over columns
 * j < n, unmasked): P[i][j] = 0 for i < j < nk, dS[i][j] = 0 for n <= j <
 * nk (below n, dS = (scale 0) (dP - Drow) = +-0 already). Only columns j
 * <= i + ATT_DG - 1 are set: the products that read the tile (P v's and
 * dS k's row groups, P^T dout's and dS^T q's key groups) read no further.
 * P or dS may be NULL. */
static void PT_SFX(att_diag_fix)(real *P, real *dS, int r0, int r1, int n, int nk)
{
    for (int i = r0; i < r1; i++) {
        int e = i + ATT_DG < nk ? i + ATT_DG : nk;
        for (int j = i + 1; P && j < e; j++) P[i * BK + j] = 0;
        for (int j = n > i + 1 ? n : i + 1; dS && j < e; j++) dS[i * BK + j] = 0;
    }
}

/* Masked key tail. With a key-padding mask the last keys are -inf for
 * every query row of a tile; their scores are -inf, their exp exactly 0,
 * and they add exactly nothing (0 to the row sums, 0 * v to acc) -- as long
 * as no score there is NaN or +inf, i.e. q, k and v are finite there and
 * |scale q.k| cannot overflow. Then the tiled forward stops at the last
 * key some row of the tile can see, with bitwise the same result (up to
 * the sign of a zero); otherwise it runs all keys, so NaN and Inf still
 * propagate as IEEE arithmetic says. */

/* 1 + the last key j < kend whose mask is not -inf in some row of query
 * rows [i0, i0+nq) (0 when every one is -inf); kend without a mask. */
static int64_t PT_SFX(att_mask_kend)(const real *mrow, const int64_t *ms, int64_t i0, int nq,
                                     int64_t kend)
{
    if (!mrow) return kend;
    int rows = ms[2] == 0 ? 1 : nq;    /* a mask broadcast over queries: one row */
    int64_t e = 0;
    for (int i = 0; i < rows && e < kend; i++) {
        const real *m = mrow + (i0 + i) * ms[2];
        for (int64_t j = kend - 1; j >= e; j--)
            if (m[j * ms[3]] != -INFINITY) { e = j + 1; break; }
    }
    return e;
}

/* The key count the tiled forward must run for query rows [i0, i0+nq)
 * (see above): e = att_mask_kend rounded up to ATT_KROUND when keys
 * [e, kend) are safe to skip, else kend. q, k, v are the head's. */
static int64_t PT_SFX(att_fwd_kend)(const real *q, const real *k, const real *v,
                                    const real *mrow, const int64_t *ms, int64_t i0, int nq,
                                    int64_t kend, int64_t D, int64_t Dv, real scale)
{
    int64_t e = PT_SFX(att_mask_kend)(mrow, ms, i0, nq, kend);
    e = (e + ATT_KROUND - 1) / ATT_KROUND * ATT_KROUND;
    if (e >= kend) return kend;
    double mq = PT_SFX(pt_att_maxabs)(q + i0 * D, nq * D);
    double mk = PT_SFX(pt_att_maxabs)(k + e * D, (kend - e) * D);
    double mv = PT_SFX(pt_att_maxabs)(v + e * Dv, (kend - e) * Dv);
    if (mq < 0 || mk < 0 || mv < 0) return kend;
    double bound = mq * mk * (double)D * r_fabs(scale);
    return bound < 0.25 * ATT_REAL_MAX ? e : kend;
}

/* May a causal diagonal tile leave out its masked terms? Only if the
 * operands it multiplies them with, x[t][0:len[t]] for t < nx (at most 4),
 * are finite (then 0 x each is exactly 0), and, with dp != 0, |dout . v|
 * cannot overflow (x[0] = dout, x[1] = v: the dP that is left out). */
static int PT_SFX(att_diag_ok)(const real *const *x, const int64_t *len, int nx, int dp,
                               int64_t Dv)
{
    double m[4];
    for (int t = 0; t < nx; t++) {
        m[t] = PT_SFX(pt_att_maxabs)(x[t], len[t]);
        if (m[t] < 0) return 0;
    }
    return !dp || m[0] * m[1] * (double)Dv < 0.25 * ATT_REAL_MAX;
}

/* ---------------------------------------------------------- forward paths */

/* One task of the weights path: rows [i0, i0+nq) of head (b, h); kT is
 * the head's keys transposed tile by tile (att_transpose_head). */
static void PT_SFX(att_fwd_weights)(real *out, real *lse, real *W, const real *q,
                                    const real *kT, const real *v, const real *mrow,
                                    const int64_t *ms, int64_t i0, int nq, int64_t Tk,
                                    int64_t D, int64_t Dv, int is_causal, real scale)
{
    real *Wt = W + i0 * Tk;                   /* rows i0.. of P, ld Tk */
    for (int64_t j0 = 0; j0 < Tk; j0 += BK) {
        int nk = (int)(Tk - j0 < BK ? Tk - j0 : BK);
        const real *kTt = kT + (j0 / BK) * D * BK;   /* this key tile, (D, BK) */
        PT_SFX(pt_att_mm)(Wt + j0, Tk, q + i0 * D, D, 0, kTt, BK, nq, nk, D, scale, 0);
        PT_SFX(att_mask)(Wt + j0, Tk, i0, nq, j0, nk, mrow, ms, is_causal);
    }
    for (int i = 0; i < nq; i++) {
        real *p = Wt + i * Tk;
        real m = PT_SFX(pt_att_rowmax)(p, Tk, -INFINITY);
        if (m == -INFINITY) {          /* fully masked row (or Tk == 0) */
            for (int64_t j = 0; j < Tk; j++) p[j] = 0;
            if (lse) lse[i0 + i] = -INFINITY;
            continue;
        }
        double l;
        PT_SFX(pt_att_exp_rows)(p, Tk, 1, Tk, &m, &l);
        real inv = (real)(1.0 / l);
        for (int64_t j = 0; j < Tk; j++) p[j] *= inv;
        if (lse) lse[i0 + i] = m + (real)log(l);
    }
    /* out rows = P rows v */
    PT_SFX(pt_att_mm)(out + i0 * Dv, Dv, Wt, Tk, 0, v, Dv, nq, Dv, Tk, 1, 0);
}

/* Query tiles the tiled forward runs together against each key tile: the
 * key and value tile (2 x 16 KB at D = Dv = 64) is read from memory once
 * for the group and then from the core's caches, instead of once per query
 * tile (a long head's keys and values, 4 MB at T = 8192, do not stay in
 * L2). Each query tile's operations are the same in either order. */
#define ATT_FG 4

/* Running state of one query tile of the tiled forward. */
typedef struct {
    real m[BQ];          /* row max */
    double l[BQ];        /* row sum */
    int64_t i0, kend;    /* its first row; keys it runs */
    int nq;              /* its rows */
} PT_SFX(att_fstate);

/* One task of the tiled path: query tiles it0 .. it0+ng-1 (ng <= ATT_FG)
 * of head (b, h); k is the head's keys, kT as in att_fwd_weights. Key
 * tiles outer, query tiles inner; each query tile i0 runs exactly the
 * operations it would alone: keys past att_fwd_kend skipped, the causal
 * diagonal tile (j0 == i0) in row groups. Scratch: S (BQ*BK), acc
 * (ATT_FG*BQ*Dv: tile g's rows at acc + g*BQ*Dv). acc is not cleared:
 * every query tile starts at key tile 0, whose P v stores its rows (beta
 * = 0; the same bits as adding to +0, since a sum that starts from +0 is
 * never -0), and that tile's softmax step does not read them (every row
 * max is still -inf: nothing to rescale); a row no key tile reaches has
 * l = 0 and gets zeros without its acc being read. */
static void PT_SFX(att_fwd_tiled)(real *out, real *lse, const real *q, const real *k,
                                  const real *kT, const real *v, const real *mrow,
                                  const int64_t *ms, int64_t it0, int ng, int64_t Tq,
                                  int64_t Tk, int64_t D, int64_t Dv, int is_causal, real scale,
                                  real *S, real *acc)
{
    PT_SFX(att_fstate) st[ATT_FG];
    int64_t kmax = 0;
    for (int g = 0; g < ng; g++) {
        int64_t i0 = st[g].i0 = (it0 + g) * BQ;
        int nq = st[g].nq = (int)(Tq - i0 < BQ ? Tq - i0 : BQ);
        for (int i = 0; i < nq; i++) { st[g].m[i] = -INFINITY; st[g].l[i] = 0; }
        int64_t kend = PT_SFX(att_key_end)(i0, nq, Tk, is_causal);
        st[g].kend = PT_SFX(att_fwd_kend)(q, k, v, mrow, ms, i0, nq, kend, D, Dv, scale);
        if (st[g].kend > kmax) kmax = st[g].kend;
    }
    for (int64_t j0 = 0; j0 < kmax; j0 += BK) {
        const real *kTt = kT + (j0 / BK) * D * BK;   /* this key tile, (D, BK) */
        const real *vt = v + j0 * Dv;
        for (int g = 0; g < ng; g++) {
            if (j0 >= st[g].kend) continue;
            int64_t i0 = st[g].i0;
            int nq = st[g].nq;
            int nk = (int)(st[g].kend - j0 < BK ? st[g].kend - j0 : BK);
            real *ag = acc + (int64_t)g * BQ * Dv;
            int64_t vlen = (int64_t)nk * Dv;
            int diag = is_causal && j0 == i0 && PT_SFX(att_diag_ok)(&vt, &vlen, 1, 0, Dv);
            if (diag) {
                for (int r0 = 0; r0 < nq; r0 += ATT_DG) {
                    int r1 = nq - r0 < ATT_DG ? nq : r0 + ATT_DG;
                    PT_SFX(pt_att_mm)(S + r0 * BK, BK, q + (i0 + r0) * D, D, 0, kTt, BK,
                                      r1 - r0, PT_SFX(att_diag_cols)(r1, nk), D, scale, 0);
                }
                /* the softmax step per band of ATT_SBAND rows, over the
                 * columns its rows' P v groups read (the rest is -inf) */
                for (int b0 = 0; b0 < nq; b0 += ATT_SBAND) {
                    int b1 = nq - b0 < ATT_SBAND ? nq : b0 + ATT_SBAND;
                    int r1 = ((b1 - 1) / ATT_DG + 1) * ATT_DG;
                    int n = PT_SFX(att_diag_cols)(r1 < nq ? r1 : nq, nk);
                    PT_SFX(att_mask)(S + b0 * BK, BK, i0 + b0, b1 - b0, j0, n, mrow, ms, 1);
                    PT_SFX(pt_att_softmax_step)(S + b0 * BK, BK, b1 - b0, n, st[g].m + b0,
                                                st[g].l + b0, ag + b0 * Dv, Dv, Dv);
                }
            } else {
                PT_SFX(pt_att_mm)(S, BK, q + i0 * D, D, 0, kTt, BK, nq, nk, D, scale, 0);
                PT_SFX(att_mask)(S, BK, i0, nq, j0, nk, mrow, ms, is_causal);
                /* m, l, acc rescaled to the new row max; P = exp(S - m); l += row sums */
                PT_SFX(pt_att_softmax_step)(S, BK, nq, nk, st[g].m, st[g].l, ag, Dv, Dv);
            }
            /* acc(nq,Dv) += P(nq,nk) v[j0:j0+nk] (= at key tile 0) */
            if (diag) {
                for (int r0 = 0; r0 < nq; r0 += ATT_DG) {
                    int r1 = nq - r0 < ATT_DG ? nq : r0 + ATT_DG;
                    PT_SFX(pt_att_mm)(ag + r0 * Dv, Dv, S + r0 * BK, BK, 0, vt, Dv, r1 - r0,
                                      Dv, r1 < nk ? r1 : nk, 1, j0 > 0);
                }
            } else {
                PT_SFX(pt_att_mm)(ag, Dv, S, BK, 0, vt, Dv, nq, Dv, nk, 1, j0 > 0);
            }
        }
    }
    for (int g = 0; g < ng; g++) {
        int64_t i0 = st[g].i0;
        for (int i = 0; i < st[g].nq; i++) {
            real *o = out + (i0 + i) * Dv;
            const real *a = acc + ((int64_t)g * BQ + i) * Dv;
            double l = st[g].l[i];
            if (l == 0) {
                for (int64_t d = 0; d < Dv; d++) o[d] = 0;
                if (lse) lse[i0 + i] = -INFINITY;
            } else {
                real inv = (real)(1.0 / l);
                for (int64_t d = 0; d < Dv; d++) o[d] = a[d] * inv;
                if (lse) lse[i0 + i] = st[g].m[i] + (real)log(l);
            }
        }
    }
}

int PT_FN(pt_attention_forward)(real *out, real *lse, real *weights,
                                const real *q, const real *k, const real *v,
                                const real *mask, const int64_t *mask_strides,
                                int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                                int64_t D, int64_t Dv, int is_causal, real scale)
{
    if (B < 0 || H < 0 || Tq < 0 || Tk < 0 || D < 0 || Dv < 0) return PT_EINVAL;
    if (mask && !mask_strides) return PT_EINVAL;
    int64_t BH = B * H, nqt = (Tq + BQ - 1) / BQ;
    if (BH * nqt == 0) return PT_OK;
    int64_t work = BH * Tq * (Tk + 1) * (D + Dv + 1);
    (void)work;                        /* unused without OpenMP */
    int status = PT_OK;
    /* Each thread keeps the keys of its current head transposed, tile by
     * tile (kT, att_transpose_head), redone when the head changes. A task is a group of
     * fg query tiles (the tiled path: ATT_FG, unless that leaves fewer
     * than 4 tasks per thread; the weights path: 1). With enough heads a
     * chunk of tasks is a whole head (every query tile), so each head is
     * transposed once; else chunks of one task, and causal heads hand out
     * their last (longest) query tiles first, so that the shortest tasks
     * come last and the threads end together. */
    int nth = pt_get_num_threads();
    int64_t fg = 1;
    while (!weights && 2 * fg <= ATT_FG && BH * ((nqt + 2 * fg - 1) / (2 * fg)) >= 4 * nth)
        fg *= 2;
    int64_t nqg = (nqt + fg - 1) / fg, ntask = BH * nqg;
    int64_t nkt = (Tk + BK - 1) / BK, chunk = BH >= 2 * nth ? nqg : 1;
    (void)chunk;                       /* unused without OpenMP */
    #pragma omp parallel num_threads(nth) if (work > 65536)
    {
        real *kT = PT_SFX(att_alloc)(sizeof(real) * (size_t)(nkt > 0 ? nkt : 1)
                                     * (size_t)(D > 0 ? D : 1) * BK);
        real *S = weights ? NULL : PT_SFX(att_alloc)(sizeof(real) * BQ * BK);
        real *acc = weights ? NULL
                            : PT_SFX(att_alloc)(sizeof(real) * (size_t)fg * BQ
                                                * (size_t)(Dv > 0 ? Dv : 1));
        int ok = kT && (weights || (S && acc));
        int64_t kT_bh = -1;                /* head whose keys kT holds */
        if (!ok) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        #pragma omp for schedule(dynamic, chunk) nowait
        for (int64_t t = 0; t < ntask; t++) {
            if (!ok) continue;
            int64_t bh = t / nqg, gi = t % nqg, b = bh / H, h = bh % H;
            int64_t it0 = (is_causal ? nqg - 1 - gi : gi) * fg;   /* first query tile */
            int ng = (int)(nqt - it0 < fg ? nqt - it0 : fg);
            const real *mrow = mask ? mask + b * mask_strides[0] + h * mask_strides[1] : NULL;
            const real *qh = q + bh * Tq * D, *kTh = kT;
            const real *vh = v + bh * Tk * Dv;
            if (bh != kT_bh) {
                PT_SFX(att_transpose_head)(kT, k + bh * Tk * D, Tk, D);
                kT_bh = bh;
            }
            real *oh = out + bh * Tq * Dv, *lh = lse ? lse + bh * Tq : NULL;
            if (weights) {
                int64_t i0 = it0 * BQ;
                int nq = (int)(Tq - i0 < BQ ? Tq - i0 : BQ);
                PT_SFX(att_fwd_weights)(oh, lh, weights + bh * Tq * Tk, qh, kTh, vh, mrow,
                                        mask_strides, i0, nq, Tk, D, Dv, is_causal, scale);
            } else {
                PT_SFX(att_fwd_tiled)(oh, lh, qh, k + bh * Tk * D, kTh, vh, mrow, mask_strides,
                                      it0, ng, Tq, Tk, D, Dv, is_causal, scale, S, acc);
            }
        }
        PT_SFX(att_free)(kT);
        PT_SFX(att_free)(S);
        PT_SFX(att_free)(acc);
    }
    return status;
}

/* ---------------------------------------------------------------- backward */

/* Per-thread scratch of the backward. */
typedef struct {
    real *kT, *vT;      /* (D,BK), (Dv,BK): key / value tile transposed */
    real *P, *dS;       /* (BQ,BK) */
    real *Drow;         /* (Tq): head Dbh's row dots */
    int64_t Dbh;        /* -1 before the first head */
} PT_SFX(att_bscratch);

/* Row dots of head bh into w->Drow, unless it holds them already:
 * Drow[i] = sum_d dout[i,d] out[i,d] (dout, out: every head's). */
static void PT_SFX(att_bwd_drow)(PT_SFX(att_bscratch) *w, int64_t bh, const real *dout,
                                 const real *out, int64_t Tq, int64_t Dv)
{
    if (w->Dbh == bh) return;
    const real *g = dout + bh * Tq * Dv, *o = out + bh * Tq * Dv;
    for (int64_t i = 0; i < Tq; i++)
        w->Drow[i] = (real)PT_SFX(pt_att_dot)(g + i * Dv, o + i * Dv, Dv);
    w->Dbh = bh;
}

/* Does query tile i0 meet key tile j0 at all? (causal: some i >= j0) */
static int PT_SFX(att_bwd_pair)(int64_t i0, int64_t j0, int is_causal)
{
    return !is_causal || i0 >= (j0 / BQ) * BQ;
}

/* Is every lse[i], i < nq, above -inf (no fully masked row, whose P and
 * dS pt_att_bwd_ds sets to 0)? */
static int PT_SFX(att_rows_seen)(const real *lse, int nq)
{
    for (int i = 0; i < nq; i++)
        if (lse[i] == -INFINITY) return 0;
    return 1;
}

/* Gradient contributions of one (query tile i0, key tile j0) pair of one
 * head, with kT, vT already holding the key tile transposed:
 *   S = scale q kT + mask,  dP = dout vT  (nq,nk)
 *   P = exp(S - lse),  dS = scale P (dP - Drow)
 *   dv[tile] += P^T dout,  dk[tile] += dS^T q,  dq[rows] += dS k
 * (= instead of += for dk, dv when !acc_kv, for dq when !acc_q). Any of
 * dq, dk, dv (head base pointers) may be NULL. */
static void PT_SFX(att_bwd_tile)(real *dq, real *dk, real *dv, const real *dout,
                                 const real *q, const real *k, const real *v,
                                 const real *lse,
                                 const real *Drow, const real *mrow, const int64_t *ms,
                                 int64_t i0, int nq, int64_t j0, int nk, int64_t D,
                                 int64_t Dv, int is_causal, real scale, int acc_kv,
                                 int acc_q, PT_SFX(att_bscratch) *w)
{
    real *P = w->P, *dS = w->dS;
    int diag = 0;
    if (is_causal && i0 == j0) {
        /* a whole key tile: its transposes (the same numbers), just written */
        const real *x[4] = {dout + i0 * Dv, nk == BK ? w->vT : v + j0 * Dv, q + i0 * D,
                            nk == BK ? w->kT : k + j0 * D};
        int64_t len[4] = {(int64_t)nq * Dv, (int64_t)nk * Dv, (int64_t)nq * D,
                          (int64_t)nk * D};
        diag = PT_SFX(att_diag_ok)(x, len, 4, 1, Dv);
        /* and every left-out P is 0 and dS is 0 (lse not NaN, Drow finite) */
        for (int i = 0; i < nq && diag; i++)
            diag = lse[i0 + i] == lse[i0 + i] && Drow[i0 + i] - Drow[i0 + i] == 0;
    }
    /* No mask and no fully masked row: P and dS straight from their
     * products (the same bits), the causal diagonal's masked part then set
     * to 0 (att_diag_fix) */
    int fused = !mrow && (!is_causal || i0 != j0 || diag)
                && PT_SFX(att_rows_seen)(lse + i0, nq);
    if (diag) {   /* see "Causal diagonal tiles" */
        for (int r0 = 0; r0 < nq; r0 += ATT_DG) {
            int r1 = nq - r0 < ATT_DG ? nq : r0 + ATT_DG, n = PT_SFX(att_diag_cols)(r1, nk);
            if (fused) {
                PT_SFX(pt_att_mm_exp)(P + r0 * BK, BK, q + (i0 + r0) * D, D, w->kT, BK,
                                      r1 - r0, n, D, scale, lse + i0 + r0);
                PT_SFX(att_diag_fix)(P, NULL, r0, r1, nk, nk);
                PT_SFX(pt_att_mm_ds)(dS + r0 * BK, BK, dout + (i0 + r0) * Dv, Dv, w->vT, BK,
                                     r1 - r0, n, Dv, 1, Drow + i0 + r0, P + r0 * BK, BK, scale);
                PT_SFX(att_diag_fix)(NULL, dS, r0, r1, n, nk);
                continue;
            }
            PT_SFX(pt_att_mm)(P + r0 * BK, BK, q + (i0 + r0) * D, D, 0, w->kT, BK, r1 - r0, n,
                              D, scale, 0);
            PT_SFX(pt_att_mm)(dS + r0 * BK, BK, dout + (i0 + r0) * Dv, Dv, 0, w->vT, BK,
                              r1 - r0, n, Dv, 1, 0);
            for (int i = r0; i < r1 && n < nk; i++)
                memset(dS + i * BK + n, 0, sizeof(real) * (size_t)(nk - n));
        }
    } else if (fused) {
        PT_SFX(pt_att_mm_exp)(P, BK, q + i0 * D, D, w->kT, BK, nq, nk, D, scale, lse + i0);
        PT_SFX(pt_att_mm_ds)(dS, BK, dout + i0 * Dv, Dv, w->vT, BK, nq, nk, Dv, 1, Drow + i0,
                             P, BK, scale);
    } else {
        PT_SFX(pt_att_mm)(P, BK, q + i0 * D, D, 0, w->kT, BK, nq, nk, D, scale, 0);
        PT_SFX(pt_att_mm)(dS, BK, dout + i0 * Dv, Dv, 0, w->vT, BK, nq, nk, Dv, 1, 0);
    }
    if (!fused) {
        PT_SFX(att_mask)(P, BK, i0, nq, j0, nk, mrow, ms, is_causal);
        /* P = exp(S - lse), dS = scale P (dP - Drow); fully masked rows 0 */
        PT_SFX(pt_att_bwd_ds)(P, dS, BK, nq, nk, lse + i0, Drow + i0, scale);
    }
    if (diag) {
        for (int c0 = 0; c0 < nk; c0 += ATT_DG) {   /* key rows [c0, c1): queries >= c0 */
            int c1 = nk - c0 < ATT_DG ? nk : c0 + ATT_DG, K = nq > c0 ? nq - c0 : 0;
            int64_t a0 = (int64_t)c0 * BK + c0;        /* P[c0, c0], dS[c0, c0] */
            int64_t i1 = i0 + (K > 0 ? c0 : 0);         /* first query summed */
            if (dv)
                PT_SFX(pt_att_mm)(dv + (j0 + c0) * Dv, Dv, P + a0, BK, 1, dout + i1 * Dv, Dv,
                                  c1 - c0, Dv, K, 1, acc_kv);
            if (dk)
                PT_SFX(pt_att_mm)(dk + (j0 + c0) * D, D, dS + a0, BK, 1, q + i1 * D, D,
                                  c1 - c0, D, K, 1, acc_kv);
        }
        if (dq) {
            for (int r0 = 0; r0 < nq; r0 += ATT_DG) {   /* query rows: keys < r1 */
                int r1 = nq - r0 < ATT_DG ? nq : r0 + ATT_DG;
                PT_SFX(pt_att_mm)(dq + (i0 + r0) * D, D, dS + r0 * BK, BK, 0, k + j0 * D, D,
                                  r1 - r0, D, r1 < nk ? r1 : nk, 1, acc_q);
            }
        }
        return;
    }
    if (dv) {
        PT_SFX(pt_att_mm)(dv + j0 * Dv, Dv, P, BK, 1, dout + i0 * Dv, Dv, nk, Dv, nq, 1,
                          acc_kv);
    }
    if (dk) {
        PT_SFX(pt_att_mm)(dk + j0 * D, D, dS, BK, 1, q + i0 * D, D, nk, D, nq, 1, acc_kv);
    }
    if (dq)
        PT_SFX(pt_att_mm)(dq + i0 * D, D, dS, BK, 0, k + j0 * D, D, nq, D, nk, 1, acc_q);
}

int PT_FN(pt_attention_backward)(real *dq, real *dk, real *dv,
                                 const real *dout, const real *q, const real *k,
                                 const real *v, const real *out, const real *lse,
                                 const real *mask, const int64_t *mask_strides,
                                 int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                                 int64_t D, int64_t Dv, int is_causal, real scale,
                                 int accumulate)
{
    if (B < 0 || H < 0 || Tq < 0 || Tk < 0 || D < 0 || Dv < 0) return PT_EINVAL;
    if (mask && !mask_strides) return PT_EINVAL;
    int64_t BH = B * H;
    if (BH == 0 || Tq == 0 || Tk == 0 || (!dq && !dk && !dv)) {
        if (!accumulate) {   /* no query or no key: every gradient is 0 */
            if (dq) memset(dq, 0, sizeof(real) * (size_t)(BH * Tq * D));
            if (dk) memset(dk, 0, sizeof(real) * (size_t)(BH * Tk * D));
            if (dv) memset(dv, 0, sizeof(real) * (size_t)(BH * Tk * Dv));
        }
        return PT_OK;
    }
    int nth = pt_get_num_threads();
    int64_t work = BH * Tq * Tk * (D + Dv + 1);
    int use_omp = work > 65536;
    (void)use_omp;                     /* unused without OpenMP */
    int64_t nqt = (Tq + BQ - 1) / BQ, nkt = (Tk + BK - 1) / BK;
    /* With at least as many heads as threads, one task = one head, walking
     * key tiles (outer) and query tiles (inner). With fewer heads (long
     * sequences), two passes instead: tasks (head, key tile) for dk, dv,
     * then tasks (head, query tile) for dq. Both schemes add the same
     * products in the same order, so the result is bitwise the same
     * whichever runs. One parallel region runs both passes, without a
     * barrier between them (the second reads nothing the first writes). */
    int split = BH < nth;
    int npass = split ? 2 : 1;
    int status = PT_OK;
    #pragma omp parallel num_threads(nth) if (use_omp)
    {
        size_t Dm = (size_t)(D > 0 ? D : 1), Dvm = (size_t)(Dv > 0 ? Dv : 1);
        PT_SFX(att_bscratch) w;
        w.kT = PT_SFX(att_alloc)(sizeof(real) * Dm * BK);
        w.vT = PT_SFX(att_alloc)(sizeof(real) * Dvm * BK);
        w.P = PT_SFX(att_alloc)(sizeof(real) * BQ * BK);
        w.dS = PT_SFX(att_alloc)(sizeof(real) * BQ * BK);
        w.Drow = PT_SFX(att_alloc)(sizeof(real) * (size_t)Tq);
        w.Dbh = -1;
        int ok = w.kT && w.vT && w.P && w.dS && w.Drow;
        if (!ok) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        for (int pass = 0; pass < npass; pass++) {
            int64_t ntask = !split ? BH : pass == 0 ? BH * nkt : BH * nqt;
            if (split && pass == 0 && !dk && !dv) continue;
            if (split && pass == 1 && !dq) continue;
            #pragma omp for schedule(dynamic, 1) nowait
            for (int64_t t = 0; t < ntask; t++) {
                if (!ok) continue;
                int64_t bh = !split ? t : pass == 0 ? t / nkt : t / nqt;
                int64_t b = bh / H, h = bh % H;
                const real *mrow = mask ? mask + b * mask_strides[0] + h * mask_strides[1] : NULL;
                PT_SFX(att_bwd_drow)(&w, bh, dout, out, Tq, Dv);
                const real *qh = q + bh * Tq * D, *kh = k + bh * Tk * D, *vh = v + bh * Tk * Dv;
                const real *gh = dout + bh * Tq * Dv, *lh = lse + bh * Tq, *Dh = w.Drow;
                real *dqh = dq && pass == npass - 1 ? dq + bh * Tq * D : NULL;
                real *dkh = dk && pass == 0 ? dk + bh * Tk * D : NULL;
                real *dvh = dv && pass == 0 ? dv + bh * Tk * Dv : NULL;
                /* key tiles [jt0, jt1) x query tiles [it0, it1) of this task */
                int64_t jt0 = 0, jt1 = nkt, it0 = 0, it1 = nqt;
                if (split && pass == 0) { jt0 = t % nkt; jt1 = jt0 + 1; }
                if (split && pass == 1) { it0 = t % nqt; it1 = it0 + 1; }
                for (int64_t jt = jt0; jt < jt1; jt++) {
                    int64_t j0 = jt * BK;
                    int nk = (int)(Tk - j0 < BK ? Tk - j0 : BK);
                    int any = 0;
                    for (int64_t it = it0; it < it1; it++)
                        any |= PT_SFX(att_bwd_pair)(it * BQ, j0, is_causal);
                    if (!any) {      /* no query reaches these keys */
                        if (!accumulate && dkh)
                            memset(dkh + j0 * D, 0, sizeof(real) * (size_t)(nk * D));
                        if (!accumulate && dvh)
                            memset(dvh + j0 * Dv, 0, sizeof(real) * (size_t)(nk * Dv));
                        continue;
                    }
                    PT_SFX(att_transpose)(w.kT, kh, j0, nk, D);
                    PT_SFX(att_transpose)(w.vT, vh, j0, nk, Dv);
                    /* Stores (accumulate == 0): dk, dv at the first query
                     * tile that meets this key tile; dq rows at key tile 0,
                     * which every query tile meets and every task walks
                     * first. */
                    int acc_kv = accumulate;
                    for (int64_t it = it0; it < it1; it++) {
                        int64_t i0 = it * BQ;
                        int nq = (int)(Tq - i0 < BQ ? Tq - i0 : BQ);
                        if (!PT_SFX(att_bwd_pair)(i0, j0, is_causal)) continue;
                        PT_SFX(att_bwd_tile)(dqh, dkh, dvh, gh, qh, kh, vh, lh, Dh, mrow,
                                             mask_strides, i0, nq, j0, nk, D, Dv,
                                             is_causal, scale, acc_kv, accumulate || jt > 0,
                                             &w);
                        acc_kv = 1;
                    }
                }
            }
        }
        PT_SFX(att_free)(w.kT);
        PT_SFX(att_free)(w.vT);
        PT_SFX(att_free)(w.P);
        PT_SFX(att_free)(w.dS);
        PT_SFX(att_free)(w.Drow);
    }
    return status;
}
