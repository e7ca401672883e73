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
 *   - weights == NULL: FlashAttention-style online softmax. A task is one
 *     (b, h, query tile of BQ rows); it walks key tiles of BK keys keeping a
 *     running row max m, row sum l and output accumulator acc (BQ,Dv):
 *       m' = max(m, max_j S),  p_j = exp(S_j - m'),  a = exp(m - m')
 *       l' = a l + sum_j p_j,  acc' = a acc + sum_j p_j v_j
 *     and finally out = acc / l, lse = m + log l. Scratch per task is
 *     O(BQ*BK + BK*D + BQ*Dv): nothing proportional to Tq x Tk.
 *
 * Backward (FlashAttention-2: P recomputed from q, k and lse), per (b, h):
 *   Drow_i = sum_d dout[i,d] out[i,d]
 *   P = exp(S - lse),  dP = dout v^T,  dS = P * (dP - Drow)
 *   dv += P^T dout,  dk += scale dS^T q,  dq += scale dS k
 * One task is one (b, h), so dk/dv/dq are written by one thread only, in a
 * fixed order: the result does not depend on the thread count.
 *
 * Inner loops: a key tile is transposed into kT (D,BK) so q k^T becomes,
 * for each query row, D axpys over the BK contiguous scores; P v and the
 * gradient products are axpys over contiguous D / Dv. All of these
 * vectorize at -O3 without reassociation (no -ffast-math needed).
 */
#include <stdlib.h>
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"

#define BQ 32   /* query rows per tile */
#define BK 64   /* keys per tile */

/* kT[d*BK + j] = k[(j0 + j)*D + d] for j < nk: the key tile, transposed. */
static void PT_SFX(att_transpose)(real *kT, const real *k, int64_t j0, int nk, int64_t D)
{
    for (int j = 0; j < nk; j++) {
        const real *kr = k + (j0 + j) * D;
        for (int64_t d = 0; d < D; d++) kT[d * BK + j] = kr[d];
    }
}

/* S[i*lds + j] = alpha * sum_d a[i*D + d] * bT[d*BK + j], i < nq, j < nk.
 * Rows of a are contiguous (D each); bT is a transposed tile (D,BK). Four
 * rows at a time so each bT row is loaded once per four rows. */
static void PT_SFX(att_scores)(real *S, int64_t lds, const real *a, int nq,
                               const real *bT, int nk, int64_t D, real alpha)
{
    int i = 0;
    for (; i + 4 <= nq; i += 4) {
        real *s0 = S + (int64_t)i * lds, *s1 = s0 + lds, *s2 = s1 + lds, *s3 = s2 + lds;
        const real *a0 = a + (int64_t)i * D, *a1 = a0 + D, *a2 = a1 + D, *a3 = a2 + D;
        real t0[BK], t1[BK], t2[BK], t3[BK];
        for (int j = 0; j < nk; j++) { t0[j] = 0; t1[j] = 0; t2[j] = 0; t3[j] = 0; }
        for (int64_t d = 0; d < D; d++) {
            const real *br = bT + d * BK;
            real x0 = a0[d], x1 = a1[d], x2 = a2[d], x3 = a3[d];
            for (int j = 0; j < nk; j++) {
                real bj = br[j];
                t0[j] += x0 * bj;
                t1[j] += x1 * bj;
                t2[j] += x2 * bj;
                t3[j] += x3 * bj;
            }
        }
        for (int j = 0; j < nk; j++) {
            s0[j] = alpha * t0[j];
            s1[j] = alpha * t1[j];
            s2[j] = alpha * t2[j];
            s3[j] = alpha * t3[j];
        }
    }
    for (; i < nq; i++) {
        real *s0 = S + (int64_t)i * lds;
        const real *a0 = a + (int64_t)i * D;
        real t0[BK];
        for (int j = 0; j < nk; j++) t0[j] = 0;
        for (int64_t d = 0; d < D; d++) {
            const real *br = bT + d * BK;
            real x0 = a0[d];
            for (int j = 0; j < nk; j++) t0[j] += x0 * br[j];
        }
        for (int j = 0; j < nk; j++) s0[j] = alpha * t0[j];
    }
}

/* Add the mask and the causal -inf to the score tile S (nq,nk), whose
 * element (i, j) is query i0 + i, key j0 + j. mrow is the mask at (b, h). */
static void PT_SFX(att_mask)(real *S, int64_t lds, int64_t i0, int nq, int64_t j0, int nk,
                             const real *mrow, const int64_t *ms, int is_causal)
{
    if (mrow) {
        for (int i = 0; i < nq; i++) {
            real *s = S + (int64_t)i * lds;
            const real *m = mrow + (i0 + i) * ms[2] + j0 * ms[3];
            if (ms[3] == 1) {
                for (int j = 0; j < nk; j++) s[j] += m[j];
            } else {
                for (int j = 0; j < nk; j++) s[j] += m[j * ms[3]];
            }
        }
    }
    if (is_causal) {
        for (int i = 0; i < nq; i++) {
            real *s = S + (int64_t)i * lds;
            int64_t first = i0 + i + 1 - j0;   /* first masked j in the tile */
            for (int64_t j = first < 0 ? 0 : first; j < nk; j++) s[j] = -INFINITY;
        }
    }
}

/* y[0:n] += alpha * x[0:n] */
static inline void PT_SFX(att_axpy)(real *y, real alpha, const real *x, int64_t n)
{
    for (int64_t d = 0; d < n; d++) y[d] += alpha * x[d];
}

/* Number of key tiles query tile [i0, i0+nq) needs (causal: keys <= i0+nq-1). */
static int64_t PT_SFX(att_key_end)(int64_t i0, int nq, int64_t Tk, int is_causal)
{
    if (!is_causal) return Tk;
    int64_t e = i0 + nq;
    return e < Tk ? e : Tk;
}

/* ---------------------------------------------------------- forward paths */

/* One task of the weights path: rows [i0, i0+nq) of head (b, h). */
static void PT_SFX(att_fwd_weights)(real *out, real *lse, real *W, const real *q,
                                    const real *k, const real *v, const real *mrow,
                                    const int64_t *ms, int64_t i0, int nq, int64_t Tk,
                                    int64_t D, int64_t Dv, int is_causal, real scale,
                                    real *kT)
{
    /* scores, tile by tile, into W rows i0.. (ld Tk) */
    for (int64_t j0 = 0; j0 < Tk; j0 += BK) {
        int nk = (int)(Tk - j0 < BK ? Tk - j0 : BK);
        PT_SFX(att_transpose)(kT, k, j0, nk, D);
        real *S = W + i0 * Tk + j0;
        PT_SFX(att_scores)(S, Tk, q + i0 * D, nq, kT, nk, D, scale);
        PT_SFX(att_mask)(S, Tk, i0, nq, j0, nk, mrow, ms, is_causal);
    }
    for (int i = 0; i < nq; i++) {
        real *p = W + (i0 + i) * Tk;
        real *o = out + (i0 + i) * Dv;
        real m = -INFINITY;
        for (int64_t j = 0; j < Tk; j++) m = p[j] > m ? p[j] : m;
        for (int64_t d = 0; d < Dv; d++) o[d] = 0;
        if (m == -INFINITY) {          /* fully masked row (or Tk == 0) */
            for (int64_t j = 0; j < Tk; j++) p[j] = 0;
            if (lse) lse[i0 + i] = -INFINITY;
            continue;
        }
        double l = 0;
        for (int64_t j = 0; j < Tk; j++) {
            real e = r_exp(p[j] - m);
            p[j] = e;
            l += e;
        }
        real inv = (real)(1.0 / l);
        for (int64_t j = 0; j < Tk; j++) {
            p[j] *= inv;
            if (p[j] != 0) PT_SFX(att_axpy)(o, p[j], v + j * Dv, Dv);
        }
        if (lse) lse[i0 + i] = m + (real)log(l);
    }
}

/* One task of the tiled path: rows [i0, i0+nq) of head (b, h).
 * Scratch: kT (D*BK), S (BQ*BK), acc (BQ*Dv). */
static void PT_SFX(att_fwd_tiled)(real *out, real *lse, const real *q, const real *k,
                                  const real *v, const real *mrow, const int64_t *ms,
                                  int64_t i0, int nq, int64_t Tk, int64_t D, int64_t Dv,
                                  int is_causal, real scale, real *kT, real *S, real *acc)
{
    real m[BQ];
    double l[BQ];
    for (int i = 0; i < nq; i++) { m[i] = -INFINITY; l[i] = 0; }
    memset(acc, 0, sizeof(real) * (size_t)nq * (size_t)Dv);
    int64_t kend = PT_SFX(att_key_end)(i0, nq, Tk, is_causal);
    for (int64_t j0 = 0; j0 < kend; j0 += BK) {
        int nk = (int)(kend - j0 < BK ? kend - j0 : BK);
        PT_SFX(att_transpose)(kT, k, j0, nk, D);
        PT_SFX(att_scores)(S, BK, q + i0 * D, nq, kT, nk, D, scale);
        PT_SFX(att_mask)(S, BK, i0, nq, j0, nk, mrow, ms, is_causal);
        for (int i = 0; i < nq; i++) {
            real *s = S + i * BK;
            real mx = m[i];
            for (int j = 0; j < nk; j++) mx = s[j] > mx ? s[j] : mx;
            if (mx == -INFINITY) continue;     /* nothing unmasked yet */
            real *a = acc + (int64_t)i * Dv;
            if (mx != m[i]) {
                real alpha = r_exp(m[i] - mx);     /* 0 when m[i] = -inf */
                l[i] *= alpha;
                for (int64_t d = 0; d < Dv; d++) a[d] *= alpha;
                m[i] = mx;
            }
            double sum = 0;
            for (int j = 0; j < nk; j++) {
                real e = r_exp(s[j] - mx);
                s[j] = e;
                sum += e;
            }
            l[i] += sum;
            for (int j = 0; j < nk; j++)
                if (s[j] != 0) PT_SFX(att_axpy)(a, s[j], v + (j0 + j) * Dv, Dv);
        }
    }
    for (int i = 0; i < nq; i++) {
        real *o = out + (i0 + i) * Dv;
        const real *a = acc + (int64_t)i * Dv;
        if (l[i] == 0) {
            for (int64_t d = 0; d < Dv; d++) o[d] = 0;
            if (lse) lse[i0 + i] = -INFINITY;
        } else {
            real inv = (real)(1.0 / l[i]);
            for (int64_t d = 0; d < Dv; d++) o[d] = a[d] * inv;
            if (lse) lse[i0 + i] = m[i] + (real)log(l[i]);
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
    int64_t BH = B * H, nqt = (Tq + BQ - 1) / BQ, ntask = BH * nqt;
    if (ntask == 0) return PT_OK;
    int64_t work = BH * Tq * (Tk + 1) * (D + Dv + 1);
    int status = PT_OK;
    #pragma omp parallel num_threads(pt_get_num_threads()) if (work > 65536)
    {
        real *kT = malloc(sizeof(real) * (size_t)(D > 0 ? D : 1) * BK);
        real *S = weights ? NULL : malloc(sizeof(real) * BQ * BK);
        real *acc = weights ? NULL : malloc(sizeof(real) * BQ * (size_t)(Dv > 0 ? Dv : 1));
        int ok = kT && (weights || (S && acc));
        if (!ok) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntask; t++) {
            if (!ok) continue;
            int64_t bh = t / nqt, i0 = (t % nqt) * BQ, b = bh / H, h = bh % H;
            int nq = (int)(Tq - i0 < BQ ? Tq - i0 : BQ);
            const real *mrow = mask ? mask + b * mask_strides[0] + h * mask_strides[1] : NULL;
            const real *qh = q + bh * Tq * D, *kh = k + bh * Tk * D, *vh = v + bh * Tk * Dv;
            real *oh = out + bh * Tq * Dv, *lh = lse ? lse + bh * Tq : NULL;
            if (weights)
                PT_SFX(att_fwd_weights)(oh, lh, weights + bh * Tq * Tk, qh, kh, vh, mrow,
                                        mask_strides, i0, nq, Tk, D, Dv, is_causal, scale, kT);
            else
                PT_SFX(att_fwd_tiled)(oh, lh, qh, kh, vh, mrow, mask_strides, i0, nq, Tk,
                                      D, Dv, is_causal, scale, kT, S, acc);
        }
        free(kT);
        free(S);
        free(acc);
    }
    return status;
}

/* ---------------------------------------------------------------- backward */

/* Gradients of one head (b, h). Scratch: kT (D*BK), vT (Dv*BK),
 * P and dS (BQ*BK each), Drow (Tq). */
static void PT_SFX(att_bwd_head)(real *dq, real *dk, real *dv, const real *dout,
                                 const real *q, const real *k, const real *v,
                                 const real *out, const real *lse, const real *mrow,
                                 const int64_t *ms, int64_t Tq, int64_t Tk, int64_t D,
                                 int64_t Dv, int is_causal, real scale, real *kT,
                                 real *vT, real *P, real *dS, real *Drow)
{
    for (int64_t i = 0; i < Tq; i++) {
        double s = 0;
        for (int64_t d = 0; d < Dv; d++) s += (double)dout[i * Dv + d] * out[i * Dv + d];
        Drow[i] = (real)s;
    }
    for (int64_t j0 = 0; j0 < Tk; j0 += BK) {
        int nk = (int)(Tk - j0 < BK ? Tk - j0 : BK);
        PT_SFX(att_transpose)(kT, k, j0, nk, D);
        PT_SFX(att_transpose)(vT, v, j0, nk, Dv);
        /* causal: query rows i < j0 see none of these keys */
        int64_t qstart = is_causal ? (j0 / BQ) * BQ : 0;
        for (int64_t i0 = qstart; i0 < Tq; i0 += BQ) {
            int nq = (int)(Tq - i0 < BQ ? Tq - i0 : BQ);
            PT_SFX(att_scores)(P, BK, q + i0 * D, nq, kT, nk, D, scale);
            PT_SFX(att_mask)(P, BK, i0, nq, j0, nk, mrow, ms, is_causal);
            PT_SFX(att_scores)(dS, BK, dout + i0 * Dv, nq, vT, nk, Dv, 1);
            for (int i = 0; i < nq; i++) {
                real *p = P + i * BK, *ds = dS + i * BK;
                real L = lse[i0 + i], Dr = Drow[i0 + i];
                if (L == -INFINITY) {          /* fully masked row */
                    for (int j = 0; j < nk; j++) { p[j] = 0; ds[j] = 0; }
                    continue;
                }
                for (int j = 0; j < nk; j++) {
                    p[j] = r_exp(p[j] - L);
                    ds[j] = scale * p[j] * (ds[j] - Dr);
                }
            }
            for (int i = 0; i < nq; i++) {
                const real *p = P + i * BK, *ds = dS + i * BK;
                const real *qi = q + (i0 + i) * D, *gi = dout + (i0 + i) * Dv;
                real *dqi = dq ? dq + (i0 + i) * D : NULL;
                for (int j = 0; j < nk; j++) {
                    if (p[j] == 0 && ds[j] == 0) continue;
                    int64_t jj = j0 + j;
                    if (dv) PT_SFX(att_axpy)(dv + jj * Dv, p[j], gi, Dv);
                    if (dk) PT_SFX(att_axpy)(dk + jj * D, ds[j], qi, D);
                    if (dqi) PT_SFX(att_axpy)(dqi, ds[j], k + jj * D, D);
                }
            }
        }
    }
}

int PT_FN(pt_attention_backward)(real *dq, real *dk, real *dv,
                                 const real *dout, const real *q, const real *k,
                                 const real *v, const real *out, const real *lse,
                                 const real *mask, const int64_t *mask_strides,
                                 int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                                 int64_t D, int64_t Dv, int is_causal, real scale)
{
    if (B < 0 || H < 0 || Tq < 0 || Tk < 0 || D < 0 || Dv < 0) return PT_EINVAL;
    if (mask && !mask_strides) return PT_EINVAL;
    int64_t BH = B * H;
    if (BH == 0 || Tq == 0 || Tk == 0 || (!dq && !dk && !dv)) return PT_OK;
    int64_t work = BH * Tq * Tk * (D + Dv + 1);
    int status = PT_OK;
    #pragma omp parallel num_threads(pt_get_num_threads()) if (work > 65536)
    {
        size_t Dm = (size_t)(D > 0 ? D : 1), Dvm = (size_t)(Dv > 0 ? Dv : 1);
        real *kT = malloc(sizeof(real) * Dm * BK);
        real *vT = malloc(sizeof(real) * Dvm * BK);
        real *P = malloc(sizeof(real) * BQ * BK);
        real *dS = malloc(sizeof(real) * BQ * BK);
        real *Drow = malloc(sizeof(real) * (size_t)Tq);
        int ok = kT && vT && P && dS && Drow;
        if (!ok) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < BH; bh++) {
            if (!ok) continue;
            int64_t b = bh / H, h = bh % H;
            const real *mrow = mask ? mask + b * mask_strides[0] + h * mask_strides[1] : NULL;
            PT_SFX(att_bwd_head)(dq ? dq + bh * Tq * D : NULL, dk ? dk + bh * Tk * D : NULL,
                                 dv ? dv + bh * Tk * Dv : NULL, dout + bh * Tq * Dv,
                                 q + bh * Tq * D, k + bh * Tk * D, v + bh * Tk * Dv,
                                 out + bh * Tq * Dv, lse + bh * Tq, mrow, mask_strides,
                                 Tq, Tk, D, Dv, is_causal, scale, kT, vT, P, dS, Drow);
        }
        free(kT);
        free(vT);
        free(P);
        free(dS);
        free(Drow);
    }
    return status;
}
