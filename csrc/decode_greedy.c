/*
 * decode_greedy.c -- greedy decoding of a batch, the whole loop in one
 * call (pt_decode.h): per step the target embedding (scaled) plus its
 * position, the decoder stack's cached step (layer_decoder.c), the
 * generator, the argmax with pad and bos excluded, and the chosen token's
 * log-probability; rows that give EOS leave the batch, the last row
 * moving into the place of each (one row of self-attention caches copied
 * per leaving row; the cross-attention caches and the memory mask stay
 * where they are, each row reading its sentence's). Nothing is allocated:
 * the caller owns the caches and the workspaces.
 *
 * Workspace (real elements), for batch B:
 *   B * E                    the step's inputs, then the stack's outputs
 *   B * V                    logits
 *   pt_decoder_step's        (B, capacity max_len, memory length S)
 * int64 workspace: 2B, the sentence of each row and its newest token.
 *
 * The choice of a row depends on its logits alone and is made by one
 * thread, so results do not depend on the thread count; the kernels give
 * a row the same result wherever it sits in the batch, so the moves
 * change nothing either.
 */
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_dispatch.h"
#include "pt_decode_loop.h"

#define GREEDY PT_FN(pt_greedy)

int64_t PT_FN(pt_greedy_workspace)(const GREEDY *g, int64_t B, int64_t max_len, int64_t S)
{
    if (!g || !g->layers || B < 0 || max_len < 1 || S < 0) return 0;
    return B * (g->layers->E + g->V)
        + PT_FN(pt_decoder_step_workspace)(g->layers, B, max_len, S);
}

int64_t PT_FN(pt_greedy_iworkspace)(int64_t B)
{
    return B < 0 ? 0 : 2 * B;
}

/* The first maximum of row (n entries; NaN counts as the maximum, as
 * numpy's argmax has it: the softmax family's argmax_row) and, when lp is
 * set, its log-probability: -log(sum_j exp(row_j - max)), summed in
 * double. */
static int64_t PT_SFX(greedy_choose)(const real *row, int64_t n, double *lp)
{
    int64_t best = PT_KERNELS(sm)->argmax_row(row, n);
    real bv = row[best];
    if (lp) {
        double m = (double)bv, s = 0;
        for (int64_t j = 0; j < n; j++) s += exp((double)row[j] - m);
        *lp = -log(s);
    }
    return best;
}

int PT_FN(pt_greedy_decode)(const GREEDY *g, real *const *self_k, real *const *self_v,
                            real *const *cross_k, real *const *cross_v,
                            const real *src_mask,
                            int64_t B, int64_t S, int64_t max_len, int64_t *ids,
                            int64_t *lengths, double *logp, real *work, int64_t *iwork)
{
    if (!g || !g->layers || g->nlayers < 1 || B < 0 || S < 0 || max_len < 1) return PT_EINVAL;
    if (!g->embed || g->embed_rows < 1 || !g->positions || !g->gen_w || g->V < 1)
        return PT_EINVAL;
    if (g->pad < 0 || g->pad >= g->V || g->bos < 0 || g->bos >= g->V) return PT_EINVAL;
    if (B == 0) return PT_OK;
    if (!ids || !lengths || !work || !iwork || !self_k || !self_v || !cross_k || !cross_v)
        return PT_EINVAL;
    int64_t E = g->layers->E, V = g->V;
    real *x = work, *logits = x + B * E, *step_work = logits + B * V;
    int64_t *rows = iwork, *tok = iwork + B;
    for (int64_t b = 0; b < B; b++) {
        rows[b] = b;
        tok[b] = g->bos;
        lengths[b] = max_len;
    }
    int64_t n = B;
    for (int64_t t = 0; t < max_len && n > 0; t++) {
        int st = PT_SFX(dec_embed)(g, x, tok, n, t);
        if (st != PT_OK) return st;
        st = PT_SFX(dec_logits)(g, logits, x, step_work, self_k, self_v, cross_k, cross_v,
                                src_mask, rows, n, t, max_len, S);
        if (st != PT_OK) return st;
        int nth = pt_get_num_threads();
        (void)nth;                     /* read only by the OpenMP pragma */
        #pragma omp parallel for num_threads(nth) schedule(static) if (n * V * (logp ? 8 : 1) > 65536)
        for (int64_t i = 0; i < n; i++) {
            const real *row = logits + i * V;
            double lp = 0;
            tok[i] = PT_SFX(greedy_choose)(row, V, logp ? &lp : NULL);
            ids[rows[i] * max_len + t] = tok[i];
            if (logp) logp[rows[i] * max_len + t] = lp;
        }
        /* a finished row leaves: the last unfinished row takes its place */
        for (int64_t i = 0; i < n;) {
            if (tok[i] != g->eos) {
                i++;
                continue;
            }
            lengths[rows[i]] = t;
            n--;
            while (n > i && tok[n] == g->eos) lengths[rows[n--]] = t;
            if (n > i) {
                PT_SFX(dec_copy_self)(g, self_k, self_v, n, i, max_len, t + 1);
                rows[i] = rows[n];
                tok[i] = tok[n];
                i++;
            }
        }
    }
    return PT_OK;
}
