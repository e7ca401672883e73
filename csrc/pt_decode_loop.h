/*
 * pt_decode_loop.h -- the pieces of a step that the decoding loops share
 * (internal: included by decode_greedy.c and decode_beam.c after
 * pt_real.h, so each helper exists once per dtype):
 *
 *   dec_embed   x_i = embed[tok_i] * embed_scale + positions[t]
 *   dec_logits  the decoder stack's cached step on x (final norm
 *               included), the generator, pad and bos set to -inf
 *   dec_copy_self   a row of every self-attention cache to another row
 *                   (its filled positions only)
 *
 * The cross-attention caches and the memory mask hold one row per
 * sentence and never move: each batch row reads its sentence's row
 * (pt_decoder_step's mem_row).
 *
 * The arithmetic is Seq2SeqTransformer.decode_step's: the scale, then the
 * position added (two roundings, as the module path has them), the same
 * step and generator kernels on the same rows.
 */
#ifndef PT_DECODE_LOOP_H
#define PT_DECODE_LOOP_H

#include <string.h>
#include "pt_decode.h"
#include "pt_team.h"

/* x (n, E) := the inputs of position t for the newest tokens tok (n).
 * PT_EINVAL for a token outside the embedding. */
static inline int PT_SFX(dec_embed)(const PT_FN(pt_greedy) *g, real *x, const int64_t *tok,
                                    int64_t n, int64_t t)
{
    int64_t E = g->layers->E;
    const real *pos = g->positions + t * E;
    for (int64_t i = 0; i < n; i++) {
        if (tok[i] < 0 || tok[i] >= g->embed_rows) return PT_EINVAL;
        const real *e = g->embed + tok[i] * E;
        real *xi = x + i * E;
        for (int64_t c = 0; c < E; c++) xi[c] = e[c] * g->embed_scale;
        for (int64_t c = 0; c < E; c++) xi[c] = xi[c] + pos[c];
    }
    return PT_OK;
}

/* logits (n, V) of position t: the stack's step on x (n, E; overwritten)
 * over the caches (capacity cap, memory length S, mask (sentences, S) or
 * NULL; row i reads sentence mem_row[i]), then the generator: over its
 * packed copy g->gen_wp when there is one and n reaches the stack's
 * packed_step (the rows from which its products read packed copies),
 * else over gen_w; pad and bos are set to -inf. With a team (pt_team.h;
 * NULL: none) the products over packed copies are shared out by it. */
static inline int PT_SFX(dec_logits)(const PT_FN(pt_greedy) *g, real *logits, real *x,
                                     real *step_work, real *const *self_k,
                                     real *const *self_v, real *const *cross_k,
                                     real *const *cross_v, const real *src_mask,
                                     const int64_t *mem_row, int64_t n, int64_t t, int64_t cap,
                                     int64_t S, struct pt_team *team)
{
    const real *gen_wp = g->gen_wp && n >= g->layers->packed_step ? g->gen_wp : NULL;
    int64_t E = g->layers->E, V = g->V;
    int st = PT_FN(pt_decoder_step_team)(x, self_k, self_v, step_work, g->layers, g->nlayers,
                                         (const real *const *)cross_k,
                                         (const real *const *)cross_v, src_mask, NULL, mem_row,
                                         n, t, cap, S, g->final_norm, g->final_w, g->final_b,
                                         g->final_eps, team);
    if (st != PT_OK) return st;
    if (gen_wp && team)
        st = PT_FN(pt_linear_packed_team)(team, logits, x, gen_wp, g->gen_b, n, E, V);
    else if (gen_wp)
        st = PT_FN(pt_linear_packed_forward_any)(logits, x, gen_wp, g->gen_b, n, E, V);
    else
        st = PT_FN(pt_linear_forward)(logits, x, g->gen_w, g->gen_b, n, E, V);
    if (st != PT_OK) return st;
    for (int64_t i = 0; i < n; i++) {
        logits[i * V + g->pad] = -INFINITY;
        logits[i * V + g->bos] = -INFINITY;
    }
    return PT_OK;
}

/* Row `from` of every self-attention cache (B, H, cap, d) to row `to`
 * (from != to): the first `filled` positions of each head. */
static inline void PT_SFX(dec_copy_self)(const PT_FN(pt_greedy) *g, real *const *self_k,
                                         real *const *self_v, int64_t from, int64_t to,
                                         int64_t cap, int64_t filled)
{
    int64_t H = g->layers->H, d = g->layers->E / H, srow = H * cap * d;
    size_t head = (size_t)(filled * d) * sizeof(real);
    for (int64_t l = 0; l < g->nlayers; l++)
        for (int64_t h = 0; h < H; h++) {
            memcpy(self_k[l] + to * srow + h * cap * d, self_k[l] + from * srow + h * cap * d,
                   head);
            memcpy(self_v[l] + to * srow + h * cap * d, self_v[l] + from * srow + h * cap * d,
                   head);
        }
}

#endif /* PT_DECODE_LOOP_H */
