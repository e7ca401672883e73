/*
 * layer_encoder.c -- a Transformer encoder stack's forward for inference:
 * per layer, self-attention and the feed-forward block, each with its
 * residual connection and LayerNorm (post- or pre-norm), composed of the
 * linear, attention, activation and layernorm kernels over a caller-owned
 * workspace (pt_layer.h holds the shared sublayers).
 *
 * Workspace regions, for N rows:
 *   A  N * max(3E, F)  the packed q/k/v projection, later the FFN hidden
 *   P  3 * N * E       q, k, v split into heads; later the merged
 *                      attention rows and the FFN output
 *   O  N * E           the attention output, per head
 *   Y  N * E           a sublayer's projection output / the normed input
 *   2N                 LayerNorm mean and rstd (not kept)
 *   B*T*T              the key mask and attention mask summed, when both
 *
 * Padded mode runs one attention call over (B, H, T, d); packed mode one
 * per sequence of its own length, so padding costs nothing anywhere.
 *
 * A layer's projections read its packed weights (pt_layer's *_wp) where
 * it has them, through lay_linear (pt_layer.h). With more than one thread
 * and rows few enough for the packed kernel, the stack runs instead as one
 * team of threads over the same workspace (layer_encoder_team.c).
 */
#include "pt_real.h"
#include "pt_layer.h"

int64_t PT_FN(pt_encoder_workspace)(const PT_FN(pt_layer) *layer, int64_t N, int64_t B,
                                    int64_t T, int both_masks)
{
    int64_t E = layer->E, F = layer->F;
    int64_t a = 3 * E > F ? 3 * E : F;
    return N * (a + 3 * E + E + E) + 2 * N + (both_masks ? B * T * T : 0);
}

/* One layer on x (N, E); the mask is already in its final form. */
static int PT_SFX(enc_layer)(real *x, real *work, const PT_FN(pt_layer) *L,
                             const PT_SFX(lay_seqs) *s, int64_t N, const real *mask,
                             const int64_t *ms, int is_causal)
{
    int64_t E = L->E, H = L->H, d = E / H;
    PT_SFX(lay_enc_ws) w = PT_SFX(lay_enc_regions)(work, L, N);
    real *A = w.A, *P = w.P, *O = w.O, *Y = w.Y, *mean = w.mean, *rstd = w.rstd;
    const real *in;
    real scale = (real)(1.0 / sqrt((double)d));

    /* self-attention */
    LAY_TRY(PT_SFX(lay_norm_in)(&in, Y, mean, rstd, x, L, 0, N));
    LAY_TRY(PT_SFX(lay_linear)(A, in, L, L->sa_wp, L->sa_w, L->sa_b, N, E, 3 * E));
    PT_SFX(lay_split_heads)(P, A, 3 * E, 3, s, N, E, H);
    const real *q = P, *k = P + N * E, *v = P + 2 * N * E;
    if (!s->offsets) {
        LAY_TRY(PT_FN(pt_attention_forward)(O, NULL, NULL, q, k, v, mask, ms, s->B, H, s->T,
                                            s->T, d, d, is_causal, scale));
    } else {
        for (int64_t b = 0; b < s->B; b++) {
            int64_t o = s->offsets[b], n = s->offsets[b + 1] - o;
            LAY_TRY(PT_FN(pt_attention_forward)(O + o * E, NULL, NULL, q + o * E, k + o * E,
                                                v + o * E, mask, ms, 1, H, n, n, d, d,
                                                is_causal, scale));
        }
    }
    PT_SFX(lay_merge_heads)(P, O, s, N, E, H);
    LAY_TRY(PT_SFX(lay_linear)(Y, P, L, L->sa_owp, L->sa_ow, L->sa_ob, N, E, E));
    LAY_TRY(PT_SFX(lay_residual)(x, Y, mean, rstd, L, 0, N));

    /* feed-forward */
    LAY_TRY(PT_SFX(lay_norm_in)(&in, Y, mean, rstd, x, L, 1, N));
    LAY_TRY(PT_SFX(lay_ff_block)(P, A, in, L, N));
    return PT_SFX(lay_residual)(x, P, mean, rstd, L, 1, N);
}

int PT_FN(pt_encoder_forward)(real *x, real *work, const PT_FN(pt_layer) *layers,
                              int64_t nlayers, const int64_t *offsets, const real *key_mask,
                              const real *attn_mask, int64_t B, int64_t T, int is_causal,
                              int final_norm, const real *final_w, const real *final_b,
                              real final_eps)
{
    LAY_TRY(PT_SFX(lay_check)(layers, nlayers));
    if (B < 0 || T < 0 || (offsets && key_mask)) return PT_EINVAL;
    int64_t N = B * T;
    if (offsets) {
        if (offsets[0] != 0) return PT_EINVAL;
        for (int64_t b = 0; b < B; b++) {
            int64_t n = offsets[b + 1] - offsets[b];
            if (n < 0 || n > T) return PT_EINVAL;
        }
        N = offsets[B];
    }
    if (N == 0) return PT_OK;
    int64_t E = layers->E;
    PT_SFX(lay_seqs) s = {offsets, B, T};
    /* the attention mask and its element strides over (b, h, i, j) */
    const real *mask = NULL;
    int64_t ms[4] = {0, 0, 0, 0};
    if (key_mask && attn_mask) {
        real *M = PT_SFX(lay_enc_regions)(work, layers, N).rstd + N;
        #pragma omp parallel for num_threads(pt_get_num_threads()) if (B * T * T > LAY_PAR_MIN)
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < T; i++)
                for (int64_t j = 0; j < T; j++)
                    M[(b * T + i) * T + j] = attn_mask[i * T + j] + key_mask[b * T + j];
        mask = M;
        ms[0] = T * T; ms[2] = T; ms[3] = 1;
    } else if (key_mask) {
        mask = key_mask;
        ms[0] = T; ms[3] = 1;
    } else if (attn_mask) {
        mask = attn_mask;
        ms[2] = T; ms[3] = 1;
    }
    if (PT_FN(pt_encoder_team_fits)(layers, nlayers, N)) {
        LAY_TRY(PT_FN(pt_encoder_team_forward)(x, work, layers, nlayers, &s, N, mask, ms,
                                               is_causal));
    } else {
        for (int64_t l = 0; l < nlayers; l++)
            LAY_TRY(PT_SFX(enc_layer)(x, work, layers + l, &s, N, mask, ms, is_causal));
    }
    real *mean = work, *rstd = work + N;   /* the layers are done with the workspace */
    return PT_SFX(lay_final_norm)(x, mean, rstd, final_norm, final_w, final_b, final_eps, N, E);
}
