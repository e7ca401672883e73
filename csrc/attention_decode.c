/*
 * attention_decode.c -- attention of a single new query per (b, h) over
 * keys and values stored with strides (a decoder's key/value caches):
 * GEMV-shaped, so the tiled kernel of attention.c, built for many query
 * rows, would mostly pad. Per (b, h), with n visible keys:
 *   s_j = scale q.k_j + mask_j,  m = max_j s_j,  p_j = exp(s_j - m),
 *   l = sum_j p_j (in double),  out = (sum_j p_j v_j) / l
 * A task is one (b, h), summed in key order by one thread, so the result
 * does not depend on the thread count. Masked keys (-inf) add exactly 0.
 */
#include "pt_real.h"
#include "pt_omp.h"

int PT_FN(pt_attention_decode)(real *out, int64_t out_ld, real *scores,
                               const real *q, int64_t q_ld, const real *k, const real *v,
                               int64_t kv_bstride, int64_t kv_hstride, const real *mask,
                               const int64_t *lengths, int64_t B, int64_t H, int64_t Tk,
                               int64_t D, real scale)
{
    if (B < 0 || H < 0 || Tk < 0 || D < 0) return PT_EINVAL;
    int64_t BH = B * H;
    int nth = pt_get_num_threads();
    (void)nth;                         /* read only by the OpenMP pragma */
    #pragma omp parallel for num_threads(nth) schedule(static) if (BH * Tk * D > (1 << 18))
    for (int64_t bh = 0; bh < BH; bh++) {
        int64_t b = bh / H, h = bh % H;
        int64_t n = Tk;
        if (lengths) n = lengths[b] < 0 ? 0 : (lengths[b] < Tk ? lengths[b] : Tk);
        const real *qh = q + b * q_ld + h * D;
        const real *kh = k + b * kv_bstride + h * kv_hstride;
        const real *vh = v + b * kv_bstride + h * kv_hstride;
        const real *mrow = mask ? mask + b * Tk : NULL;
        real *s = scores + bh * Tk, *o = out + b * out_ld + h * D;
        real m = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            const real *kj = kh + j * D;
            real dot = 0;
            #pragma omp simd reduction(+:dot)
            for (int64_t c = 0; c < D; c++) dot += qh[c] * kj[c];
            real sj = scale * dot;
            if (mrow) sj += mrow[j];
            s[j] = sj;
            m = sj > m ? sj : m;
        }
        for (int64_t c = 0; c < D; c++) o[c] = 0;
        if (m == -INFINITY) continue;  /* no visible key: zeros */
        double l = 0;
        for (int64_t j = 0; j < n; j++) {
            real p = r_exp(s[j] - m);
            l += p;
            if (p == 0) continue;      /* a masked key adds exactly nothing */
            const real *vj = vh + j * D;
            #pragma omp simd
            for (int64_t c = 0; c < D; c++) o[c] += p * vj[c];
        }
        real inv = (real)(1.0 / l);
        for (int64_t c = 0; c < D; c++) o[c] *= inv;
    }
    return PT_OK;
}
