/*
 * layer_decoder.c -- a Transformer decoder stack for incremental decoding:
 * the cross-attention keys/values of the memory, projected once per
 * sentence (pt_decoder_cross_kv), and one step of the whole stack for one
 * new position (pt_decoder_step): per layer, causal self-attention over the
 * key/value cache (the new position's keys/values appended in place),
 * cross-attention over the memory's (a row reads the memory row it is
 * given, so the rows of one sentence share one copy), and the feed-forward
 * block, each with its residual connection and LayerNorm (pt_layer.h,
 * shared with the encoder). The single-query attentions are
 * pt_attention_decode.
 *
 * Step workspace, for batch B:
 *   A  B * max(3E, F)   the q/k/v projection, the cross query, the FFN hidden
 *   O  B * E            attention output rows
 *   Y  B * E            projection output / the normed input
 *   Z  B * E            FFN output
 *   2B                  LayerNorm mean and rstd
 *   B*H*max(cap, S)     attention scores
 */
#include "pt_real.h"
#include "pt_layer.h"

int64_t PT_FN(pt_decoder_cross_kv_workspace)(const PT_FN(pt_layer) *layer, int64_t B,
                                             int64_t S)
{
    return B * S * 2 * layer->E;
}

int PT_FN(pt_decoder_cross_kv)(real *const *k, real *const *v, real *work,
                               const PT_FN(pt_layer) *layers, int64_t nlayers,
                               const real *memory, int64_t B, int64_t S)
{
    LAY_TRY(PT_SFX(lay_check)(layers, nlayers));
    if (B < 0 || S < 0) return PT_EINVAL;
    int64_t E = layers->E, H = layers->H, N = B * S;
    if (N == 0) return PT_OK;
    PT_SFX(lay_seqs) s = {NULL, B, S};
    for (int64_t l = 0; l < nlayers; l++) {
        const PT_FN(pt_layer) *L = layers + l;
        if (!L->ca_w || !k[l] || !v[l]) return PT_EINVAL;
        /* rows E..3E of the packed in_proj: keys and values in one product */
        LAY_TRY(PT_FN(pt_linear_forward)(work, memory, L->ca_w + E * E,
                                         L->ca_b ? L->ca_b + E : NULL, N, E, 2 * E));
        PT_SFX(lay_split_heads)(k[l], work, 2 * E, 1, &s, N, E, H);
        PT_SFX(lay_split_heads)(v[l], work + E, 2 * E, 1, &s, N, E, H);
    }
    return PT_OK;
}

int64_t PT_FN(pt_decoder_pack_size)(const PT_FN(pt_layer) *layer)
{
    int64_t E = layer->E, F = layer->F;
    return PT_FN(pt_linear_pack_size)(3 * E, E) + 3 * PT_FN(pt_linear_pack_size)(E, E)
        + PT_FN(pt_linear_pack_size)(F, E) + PT_FN(pt_linear_pack_size)(E, F);
}

int PT_FN(pt_decoder_pack)(PT_FN(pt_layer) *out, real *wp, const PT_FN(pt_layer) *layers,
                           int64_t nlayers)
{
    LAY_TRY(PT_SFX(lay_check)(layers, nlayers));
    if (!out || !wp) return PT_EINVAL;
    int64_t E = layers->E, F = layers->F;
    for (int64_t l = 0; l < nlayers; l++) {
        const PT_FN(pt_layer) *L = layers + l;
        if (!L->ca_w || !L->ca_ow) return PT_EINVAL;
        PT_FN(pt_layer) *o = out + l;
        *o = *L;
        /* (weight, its rows, inputs, where the copy goes) */
        const real *w[6] = {L->sa_w, L->sa_ow, L->ca_w, L->ca_ow, L->ff1_w, L->ff2_w};
        int64_t rows[6] = {3 * E, E, E, E, F, E}, ins[6] = {E, E, E, E, E, F};
        const real **dst[6] = {&o->sa_wp, &o->sa_owp, &o->ca_qwp, &o->ca_owp, &o->ff1_wp,
                               &o->ff2_wp};
        for (int i = 0; i < 6; i++) {
            LAY_TRY(PT_FN(pt_linear_pack)(wp, w[i], rows[i], ins[i]));
            *dst[i] = wp;
            wp += PT_FN(pt_linear_pack_size)(rows[i], ins[i]);
        }
        o->packed_step = 1;
    }
    return PT_OK;
}

/* A product of the step: shared out by the team over the packed copy
 * where the step reads packed copies, else lay_linear's. */
static inline int PT_SFX(dec_linear)(struct pt_team *team, real *y, const real *x,
                                     const PT_FN(pt_layer) *L, const real *wp, const real *w,
                                     const real *b, int64_t N, int64_t IN, int64_t OUT)
{
    if (team && L->packed_step && N >= L->packed_step)
        return PT_FN(pt_linear_packed_team)(team, y, x, wp, b, N, IN, OUT);
    return PT_SFX(lay_linear)(y, x, L, wp, w, b, N, IN, OUT);
}

int64_t PT_FN(pt_decoder_step_workspace)(const PT_FN(pt_layer) *layer, int64_t B,
                                         int64_t capacity, int64_t S)
{
    int64_t E = layer->E, F = layer->F;
    int64_t a = 3 * E > F ? 3 * E : F, tk = capacity > S ? capacity : S;
    return B * (a + 3 * E) + 2 * B + B * layer->H * tk;
}

int PT_FN(pt_decoder_step_team)(real *x, real *const *self_k, real *const *self_v, real *work,
                           const PT_FN(pt_layer) *layers, int64_t nlayers,
                           const real *const *cross_k, const real *const *cross_v,
                           const real *src_mask, const int64_t *src_len,
                           const int64_t *mem_row, int64_t B, int64_t t, int64_t capacity,
                           int64_t S,
                           int final_norm, const real *final_w, const real *final_b,
                           real final_eps, struct pt_team *team)
{
    LAY_TRY(PT_SFX(lay_check)(layers, nlayers));
    if (B < 0 || S < 0 || t < 0 || t >= capacity) return PT_EINVAL;
    if (B == 0) return PT_OK;
    int64_t E = layers->E, H = layers->H, F = layers->F, d = E / H;
    int64_t a = 3 * E > F ? 3 * E : F;
    real *A = work, *O = A + B * a, *Y = O + B * E, *Z = Y + B * E;
    real *mean = Z + B * E, *rstd = mean + B, *scores = rstd + B;
    real scale = (real)(1.0 / sqrt((double)d));
    int64_t hs = capacity * d;         /* cache stride of a head */
    const real *in;
    for (int64_t l = 0; l < nlayers; l++) {
        const PT_FN(pt_layer) *L = layers + l;
        if (!L->ca_w || !L->ca_ow) return PT_EINVAL;
        real *sk = self_k[l], *sv = self_v[l];

        /* self-attention: project, append position t, attend over 0..t */
        LAY_TRY(PT_SFX(lay_norm_in)(&in, Y, mean, rstd, x, L, 0, B));
        LAY_TRY(PT_SFX(dec_linear)(team, A, in, L, L->sa_wp, L->sa_w, L->sa_b, B, E, 3 * E));
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                int64_t dst = (b * H + h) * hs + t * d;
                memcpy(sk + dst, A + b * 3 * E + E + h * d, (size_t)d * sizeof(real));
                memcpy(sv + dst, A + b * 3 * E + 2 * E + h * d, (size_t)d * sizeof(real));
            }
        LAY_TRY(PT_FN(pt_attention_decode)(O, E, scores, A, 3 * E, sk, sv, H * hs, hs,
                                           NULL, NULL, NULL, B, H, t + 1, d, scale));
        LAY_TRY(PT_SFX(dec_linear)(team, Y, O, L, L->sa_owp, L->sa_ow, L->sa_ob, B, E, E));
        LAY_TRY(PT_SFX(lay_residual)(x, Y, mean, rstd, L, 0, B));

        /* cross-attention over the memory's keys/values */
        LAY_TRY(PT_SFX(lay_norm_in)(&in, Y, mean, rstd, x, L, 1, B));
        LAY_TRY(PT_SFX(dec_linear)(team, A, in, L, L->ca_qwp, L->ca_w, L->ca_b, B, E, E));
        LAY_TRY(PT_FN(pt_attention_decode)(O, E, scores, A, E, cross_k[l], cross_v[l],
                                           H * S * d, S * d, src_mask, src_len, mem_row, B,
                                           H, S, d, scale));
        LAY_TRY(PT_SFX(dec_linear)(team, Y, O, L, L->ca_owp, L->ca_ow, L->ca_ob, B, E, E));
        LAY_TRY(PT_SFX(lay_residual)(x, Y, mean, rstd, L, 1, B));

        /* feed-forward */
        LAY_TRY(PT_SFX(lay_norm_in)(&in, Y, mean, rstd, x, L, 2, B));
        LAY_TRY(PT_SFX(dec_linear)(team, A, in, L, L->ff1_wp, L->ff1_w, L->ff1_b, B, E, F));
        if (L->act != PT_ACT_NONE)
            LAY_TRY(PT_FN(pt_bias_act_forward)(A, A, NULL, B, F, L->act));
        LAY_TRY(PT_SFX(dec_linear)(team, Z, A, L, L->ff2_wp, L->ff2_w, L->ff2_b, B, F, E));
        LAY_TRY(PT_SFX(lay_residual)(x, Z, mean, rstd, L, 2, B));
    }
    return PT_SFX(lay_final_norm)(x, mean, rstd, final_norm, final_w, final_b, final_eps, B, E);
}

int PT_FN(pt_decoder_step)(real *x, real *const *self_k, real *const *self_v, real *work,
                           const PT_FN(pt_layer) *layers, int64_t nlayers,
                           const real *const *cross_k, const real *const *cross_v,
                           const real *src_mask, const int64_t *src_len,
                           const int64_t *mem_row, int64_t B, int64_t t, int64_t capacity,
                           int64_t S,
                           int final_norm, const real *final_w, const real *final_b,
                           real final_eps)
{
    return PT_FN(pt_decoder_step_team)(x, self_k, self_v, work, layers, nlayers, cross_k, cross_v,
                                       src_mask, src_len, mem_row, B, t, capacity, S, final_norm,
                                       final_w, final_b, final_eps, NULL);
}
