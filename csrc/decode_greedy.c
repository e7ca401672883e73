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
 *
 * Threads: with more than one, and products each below the linear
 * kernels' threshold for a second thread (few rows), the loop runs in one
 * parallel region as a team (pt_team.h, step_team.c): thread 0 runs it,
 * and each product over the packed copies (layer_decoder.c's dec_linear,
 * the generator) and the rows' choice are cut into one part per thread,
 * each thread's the same columns at every step, so that its share of the
 * weights stays in its core's cache. Otherwise the products use their own
 * threads.
 */
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_dispatch.h"
#include "pt_decode_loop.h"
#include "pt_team.h"

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

/* The choice of rows [i0, i1) of the step's logits. */
typedef struct PT_SFX(greedy_rows) {
    const PT_FN(pt_greedy) *g;
    const real *logits;
    int64_t *tok, *ids;
    const int64_t *rows;
    double *logp;
    int64_t n, t, max_len;
} PT_SFX(greedy_rows);

static void PT_SFX(greedy_choose_rows)(const PT_SFX(greedy_rows) *c, int64_t i0, int64_t i1)
{
    int64_t V = c->g->V;
    for (int64_t i = i0; i < i1; i++) {
        double lp = 0;
        c->tok[i] = PT_SFX(greedy_choose)(c->logits + i * V, V, c->logp ? &lp : NULL);
        c->ids[c->rows[i] * c->max_len + c->t] = c->tok[i];
        if (c->logp) c->logp[c->rows[i] * c->max_len + c->t] = lp;
    }
}

/* Part `part` of `parts` of the rows, as a team's job. */
static void PT_SFX(greedy_choose_part)(void *arg, int part, int parts)
{
    const PT_SFX(greedy_rows) *c = arg;
    PT_SFX(greedy_choose_rows)(c, c->n * part / parts, c->n * (part + 1) / parts);
}

/* The loop of pt_greedy_decode (arguments checked), its products shared
 * out by team when there is one. */
static int PT_SFX(greedy_loop)(const GREEDY *g, real *const *self_k, real *const *self_v,
                               real *const *cross_k, real *const *cross_v,
                               const real *src_mask, int64_t B, int64_t S, int64_t max_len,
                               int64_t *ids, int64_t *lengths, double *logp, real *work,
                               int64_t *iwork, pt_team *team)
{
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
                                src_mask, rows, n, t, max_len, S, team);
        if (st != PT_OK) return st;
        PT_SFX(greedy_rows) c = {g, logits, tok, ids, rows, logp, n, t, max_len};
        int par = n * V * (logp ? 8 : 1) > 65536;
        if (team && par) {
            pt_team_run(team, PT_SFX(greedy_choose_part), &c);
        } else {
            int nth = pt_get_num_threads();
            (void)nth;                 /* read only by the OpenMP pragma */
            #pragma omp parallel num_threads(nth) if (par && !team)
            {
                int p = omp_get_thread_num(), np = omp_get_num_threads();
                PT_SFX(greedy_choose_rows)(&c, n * p / np, n * (p + 1) / np);
            }
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
    const PT_FN(pt_layer) *L = g->layers;
    int64_t a = 3 * L->E > L->F ? 3 * L->E : L->F;
    int nth = pt_get_num_threads();
    /* A team when the step's products would run on one thread each and
     * read packed copies (the team shares out only those). */
    if (nth < 2 || !g->gen_wp || !L->packed_step || B < L->packed_step
        || pt_linear_threads(B, L->E, a, nth) > 1)
        return PT_SFX(greedy_loop)(g, self_k, self_v, cross_k, cross_v, src_mask, B, S,
                                   max_len, ids, lengths, logp, work, iwork, NULL);
    pt_team team;
    pt_team_init(&team, nth);
    int st = PT_OK;
    #pragma omp parallel num_threads(nth)
    {
        if (omp_get_thread_num() == 0) {
            st = PT_SFX(greedy_loop)(g, self_k, self_v, cross_k, cross_v, src_mask, B, S,
                                     max_len, ids, lengths, logp, work, iwork, &team);
            pt_team_end(&team);
        } else {
            pt_team_work(&team, omp_get_thread_num());
        }
    }
    return st;
}
