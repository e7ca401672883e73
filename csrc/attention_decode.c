/*
 * attention_decode.c -- attention of a single new query per (b, h) over
 * keys and values stored with strides (a decoder's key/value caches):
 * GEMV-shaped, so the tiled kernel of attention.c, built for many query
 * rows, would mostly pad. Per (b, h), with n visible keys:
 *   s_j = scale q.k_j + mask_j,  m = max_j s_j,  p_j = exp(s_j - m),
 *   l = sum_j p_j (in double),  out = (sum_j p_j v_j) / l
 * Query row b reads the keys, values, mask row and length of key/value row
 * kv_row[b] (row b when kv_row is NULL): the k hypotheses of a sentence in
 * beam search, or the rows left in a shrinking batch, read their
 * sentence's memory in place, one copy per sentence.
 * A task is one (b, h), computed by one thread with the attention family's
 * `decode` slot (pt_dispatch_slots.h), so the result does not depend on the
 * thread count. Masked keys (-inf) add exactly 0.
 *
 * The portable slot below sums each dot product and each output element in
 * key order with libm's exp; the AVX2 and AVX-512 slots
 * (attention_decode_x86.c) share another fixed order and exp.
 */
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_dispatch.h"

/* The portable `decode` slot: one (b, h), keys j < n at k + j*D. */
void PT_SFX(att_decode_c)(real *o, real *s, const real *q, const real *k, const real *v,
                          const real *mask, int64_t n, int64_t D, real scale)
{
    real m = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const real *kj = k + j * D;
        real dot = 0;
        #pragma omp simd reduction(+:dot)
        for (int64_t c = 0; c < D; c++) dot += q[c] * kj[c];
        real sj = scale * dot;
        if (mask) sj += mask[j];
        s[j] = sj;
        m = sj > m ? sj : m;
    }
    for (int64_t c = 0; c < D; c++) o[c] = 0;
    if (m == -INFINITY) return;        /* no visible key: zeros */
    double l = 0;
    for (int64_t j = 0; j < n; j++) {
        real p = r_exp(s[j] - m);
        l += p;
        if (p == 0) continue;          /* a masked key adds exactly nothing */
        const real *vj = v + j * D;
        #pragma omp simd
        for (int64_t c = 0; c < D; c++) o[c] += p * vj[c];
    }
    real inv = (real)(1.0 / l);
    for (int64_t c = 0; c < D; c++) o[c] *= inv;
}

int PT_FN(pt_attention_decode)(real *out, int64_t out_ld, real *scores,
                               const real *q, int64_t q_ld, const real *k, const real *v,
                               int64_t kv_bstride, int64_t kv_hstride, const real *mask,
                               const int64_t *lengths, const int64_t *kv_row, int64_t B,
                               int64_t H, int64_t Tk, int64_t D, real scale)
{
    if (B < 0 || H < 0 || Tk < 0 || D < 0) return PT_EINVAL;
    if (kv_row)
        for (int64_t b = 0; b < B; b++)
            if (kv_row[b] < 0) return PT_EINVAL;
    int64_t BH = B * H;
    void (*head)(real *, real *, const real *, const real *, const real *, const real *,
                 int64_t, int64_t, real) = PT_KERNELS(att)->decode;
    int nth = pt_get_num_threads();
    (void)nth;                         /* read only by the OpenMP pragma */
    #pragma omp parallel for num_threads(nth) schedule(static) if (BH * Tk * D > (1 << 18))
    for (int64_t bh = 0; bh < BH; bh++) {
        int64_t b = bh / H, h = bh % H, r = kv_row ? kv_row[b] : b;
        int64_t n = Tk;
        if (lengths) n = lengths[r] < 0 ? 0 : (lengths[r] < Tk ? lengths[r] : Tk);
        head(out + b * out_ld + h * D, scores + bh * Tk, q + b * q_ld + h * D,
             k + r * kv_bstride + h * kv_hstride, v + r * kv_bstride + h * kv_hstride,
             mask ? mask + r * Tk : NULL, n, D, scale);
    }
    return PT_OK;
}
