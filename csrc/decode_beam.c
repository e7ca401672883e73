/*
 * decode_beam.c -- beam search of a batch, the whole loop in one call
 * (pt_decode.h): the loop of pytransformer.decode's beam search, with the
 * same kernels on the same rows and the same choices, so that it finds
 * the same hypotheses with the same scores.
 *
 * Rows. The first step runs the B sentences (one row each, every beam
 * would start from the same BOS); then each sentence still decoding owns
 * a block of k rows, sentence a of the batch rows a*k .. a*k + k-1. Within
 * a block the hypotheses have an order (the logical rows 0..k-1: the
 * order of their choice, which decides ties) and a physical row each
 * (slot): when hypothesis i extends hypothesis r, the first extension of
 * r keeps r's row and its self-attention cache as they are, and only
 * further extensions of r copy r's cache into a row whose hypothesis has
 * no extension. A step copies k minus the number of extended hypotheses
 * rows per sentence, instead of k. A sentence that leaves the batch
 * frees its block, which the last block takes (its self-attention
 * caches): one block moves, not every block after it. (The order of the
 * sentences in the batch changes nothing but where their rows sit in the
 * products.) The cross-attention caches and the memory mask hold one row
 * per sentence, read in place by the k rows of its block (mem_row: the
 * sentence of each row), and never move.
 *
 * Per step:
 *   x       = embed[token] * embed_scale + positions[t] (each row)
 *   logits  = generator(decoder stack step), pad and bos set to -inf
 *   logp    = log_softmax(logits) (pt_softmax_forward, in place), read
 *             as double
 *   cand    = score(hypothesis) + logp(token), in double, per sentence
 *             over its rows' V tokens, flat index row * V + token
 *   the 2k best candidates, largest first, ties by flat index (the
 *   order of a stable sort); -inf ones never. A sentence has at most k
 *   EOS candidates (one per hypothesis), so its 2k best hold k others.
 *   In that order, up to the k-th non-EOS one: EOS candidates finish a
 *   hypothesis (score cand / lp(t tokens + EOS)), the others go on.
 *   A sentence leaves when none goes on, or when it has k finished
 *   hypotheses and the best open one cannot beat the best finished one
 *   even at the largest penalty (cand / max(lp(max_len), lp(max_len - 1
 *   + EOS)) below it: penalties grow with the length, log-probabilities
 *   only fall). At max_len the open hypotheses finish (cand / lp(t+1)).
 *   Fewer than k go on: the block is filled with copies of the first,
 *   score -inf (never chosen).
 * Finished hypotheses are kept per sentence in the output, the k best
 * (ties: the one finished first), found by walking back each hypothesis'
 * per-step (token, parent) record.
 *
 * The choices of a sentence depend on its rows alone and are made by one
 * thread, so results do not depend on the thread count. Nothing is
 * allocated: the caller owns the caches and the three workspaces.
 *
 * Weights. Unless the caller gives packed copies of the decoder stack's
 * step weights and the generator's (packed_step and gen_wp: the Python
 * LayerStack keeps them per model), the loop packs them at the start
 * (pt_decoder_pack, pt_linear_pack: the linear family's panels) and every
 * step's products run over those copies (pt_linear_packed_forward_any): a
 * GEMM would pack the weights, and the rows, again at every product.
 * Measured on the shipped translator (128-row products of 128 inputs), the
 * packed kernel wins at every row count the loop runs.
 *
 * Workspace (real elements), for N = B*k rows:
 *   N * E              the step's inputs, then the stack's outputs
 *   N * V              logits, then log-probabilities
 *   pt_decoder_step's  (N, capacity max_len, memory length S)
 *   the packed weights nlayers * pt_decoder_pack_size + the generator's
 * int64: 3B + 7N + 2*N*max_len + 3k; double: 5N + B (+ N*max_len with
 * log-probabilities).
 */
#include <string.h>
#include "pt_real.h"
#include "pt_omp.h"
#include "pt_decode_loop.h"

#define GREEDY PT_FN(pt_greedy)
#define SCAN 16              /* candidates tested together against the threshold */
#define PACK_LAYERS 64       /* the deepest stack the loop packs (its layers sit on the stack) */

/* Elements of the packed weights the loop makes; 0: the weights are read
 * in place, or the caller's packed copies are (every layer's packed_step
 * set and gen_wp). */
static int64_t PT_SFX(beam_pack_size)(const GREEDY *g)
{
    if (g->nlayers < 1 || g->nlayers > PACK_LAYERS) return 0;
    int64_t l = 0;
    while (l < g->nlayers && g->layers[l].packed_step) l++;
    if (l == g->nlayers && g->gen_wp) return 0;
    return g->nlayers * PT_FN(pt_decoder_pack_size)(g->layers)
        + PT_FN(pt_linear_pack_size)(g->V, g->layers->E);
}

int64_t PT_FN(pt_beam_workspace)(const GREEDY *g, int64_t B, int64_t k, int64_t max_len,
                                 int64_t S)
{
    if (!g || !g->layers || B < 0 || k < 1 || max_len < 1 || S < 0) return 0;
    int64_t N = B * k;
    return N * (g->layers->E + g->V)
        + PT_FN(pt_decoder_step_workspace)(g->layers, N, max_len, S)
        + PT_SFX(beam_pack_size)(g);
}

int64_t PT_FN(pt_beam_iworkspace)(int64_t B, int64_t k, int64_t max_len)
{
    if (B < 0 || k < 1 || max_len < 1) return 0;
    return 3 * B + 7 * B * k + 2 * B * k * max_len + 3 * k;
}

int64_t PT_FN(pt_beam_dworkspace)(int64_t B, int64_t k, int64_t max_len, int want_logp)
{
    if (B < 0 || k < 1 || max_len < 1) return 0;
    return 5 * B * k + B + (want_logp ? B * k * max_len : 0);
}

/* The state of one call: the arrays the workspaces are cut into, the
 * outputs and the options. Sentence b's record of step s, hypothesis i,
 * is entry (b * max_len + s) * k + i of tok/par/lp: the token it took,
 * the hypothesis of step s-1 it extended, the token's log-probability. */
typedef struct PT_SFX(beam) {
    const GREEDY *g;
    int64_t k, max_len, V;
    int kind;
    double alpha, last_penalty;
    /* per active sentence a (rows a*k ..), per logical row, per physical row */
    int64_t *sent, *slot, *ptok, *keep_par, *keep_tok, *nkeep, *top_i;
    double *score, *keep_sc, *keep_lp, *top_v;
    /* per sentence b */
    int64_t *hist_tok, *hist_par, *nfin;
    double *hist_lp, *best;
    /* outputs */
    int64_t *count, *ids, *lengths, *ended;
    double *scores, *logp;
} PT_SFX(beam);

/* lp(tokens + ended): GNMT's ((5 + n) / 6)^alpha or n^alpha (as
 * pytransformer.decode's _penalty computes it). */
static double PT_SFX(beam_penalty)(int kind, double alpha, int64_t tokens, int ended)
{
    if (kind == PT_PENALTY_GNMT) return pow((5.0 + (double)tokens + (double)ended) / 6.0, alpha);
    return pow((double)(tokens + ended), alpha);
}

/* score / penalty; -inf for the zero penalty of an empty hypothesis. */
static double PT_SFX(beam_normalized)(double score, double penalty)
{
    return penalty > 0 ? score / penalty : -INFINITY;
}

/* Sentence b finishes a hypothesis with score `score`: hypothesis r of
 * step t-1 (nothing when t == 0) extended by tok (log-probability tlp),
 * EOS when eos is set. Kept when among the k best so far, after those of
 * an equal score. */
static void PT_SFX(beam_finish)(PT_SFX(beam) *c, int64_t b, double score, int64_t r, int64_t t,
                                int64_t tok, double tlp, int eos)
{
    int64_t k = c->k, L = c->max_len;
    c->nfin[b]++;
    if (score > c->best[b]) c->best[b] = score;
    if (score != score) return;
    int64_t n = c->count[b], pos = n;
    double *sc = c->scores + b * k;
    while (pos > 0 && sc[pos - 1] < score) pos--;
    if (pos >= k) return;
    int64_t last = n < k ? n : k - 1;
    for (int64_t q = last; q > pos; q--) {
        int64_t to = b * k + q, from = to - 1;
        int64_t len = c->lengths[from] + c->ended[from];
        memcpy(c->ids + to * L, c->ids + from * L, (size_t)len * sizeof(int64_t));
        if (c->logp) memcpy(c->logp + to * L, c->logp + from * L, (size_t)len * sizeof(double));
        c->lengths[to] = c->lengths[from];
        c->ended[to] = c->ended[from];
        sc[q] = sc[q - 1];
    }
    if (n < k) c->count[b] = n + 1;
    int64_t h = b * k + pos;
    int64_t *out = c->ids + h * L;
    double *olp = c->logp ? c->logp + h * L : NULL;
    out[t] = tok;
    if (olp) olp[t] = tlp;
    for (int64_t s = t - 1, i = r; s >= 0; s--) {
        int64_t e = (b * L + s) * k + i;
        out[s] = c->hist_tok[e];
        if (olp) olp[s] = c->hist_lp[e];
        i = c->hist_par[e];
    }
    c->lengths[h] = eos ? t : t + 1;
    c->ended[h] = eos;
    sc[pos] = score;
}

/* Insert candidate (v, f) into the m best so far, tv/ti (largest first;
 * an equal value stays behind those already there, which have smaller
 * flat indices); returns the new threshold (-inf until m are held). */
static inline double PT_SFX(beam_insert)(double *tv, int64_t *ti, int64_t *cnt, int64_t m,
                                         double v, int64_t f)
{
    int64_t pos = *cnt < m ? (*cnt)++ : m - 1;
    while (pos > 0 && tv[pos - 1] < v) {
        tv[pos] = tv[pos - 1];
        ti[pos] = ti[pos - 1];
        pos--;
    }
    tv[pos] = v;
    ti[pos] = f;
    return *cnt < m ? -INFINITY : tv[m - 1];
}

/* Step t for active sentence a, its kk rows' log-probabilities in lp
 * (physical rows): finishes hypotheses, and sets nkeep[a] (0: the sentence
 * leaves the batch) and keep_par/keep_tok/keep_sc/keep_lp[a*k ..]. */
static void PT_SFX(beam_select)(PT_SFX(beam) *c, const real *lp, int64_t a, int64_t kk,
                                int64_t t)
{
    int64_t k = c->k, V = c->V, m = 2 * k, b = c->sent[a], cnt = 0;
    double *tv = c->top_v + a * m;
    int64_t *ti = c->top_i + a * m;
    double thr = -INFINITY;
    for (int64_t r = 0; r < kk; r++) {
        double s = c->score[a * kk + r];
        if (!(s > -INFINITY)) continue;            /* a padding row: -inf throughout */
        const real *row = lp + c->slot[a * kk + r] * V;
        int64_t base = r * V, j = 0;
        for (; j + SCAN <= V; j += SCAN) {
            int hit = 0;
            for (int q = 0; q < SCAN; q++) hit |= s + (double)row[j + q] > thr;
            if (!hit) continue;
            for (int q = 0; q < SCAN; q++) {
                double v = s + (double)row[j + q];
                if (v > thr) thr = PT_SFX(beam_insert)(tv, ti, &cnt, m, v, base + j + q);
            }
        }
        for (; j < V; j++) {
            double v = s + (double)row[j];
            if (v > thr) thr = PT_SFX(beam_insert)(tv, ti, &cnt, m, v, base + j);
        }
    }
    double eos_pen = PT_SFX(beam_penalty)(c->kind, c->alpha, t, 1);
    int64_t nk = 0, eos = c->g->eos;
    int64_t *kp = c->keep_par + a * k, *kt = c->keep_tok + a * k;
    double *ks = c->keep_sc + a * k, *kl = c->keep_lp + a * k;
    for (int64_t q = 0; q < cnt && nk < k; q++) {
        int64_t r = ti[q] / V, tok = ti[q] % V;
        double tlp = (double)lp[c->slot[a * kk + r] * V + tok];
        if (tok == eos) {
            PT_SFX(beam_finish)(c, b, PT_SFX(beam_normalized)(tv[q], eos_pen), r, t, tok, tlp, 1);
            continue;
        }
        kp[nk] = r;
        kt[nk] = tok;
        ks[nk] = tv[q];
        kl[nk] = tlp;
        nk++;
    }
    c->nkeep[a] = 0;
    if (nk == 0 || (c->nfin[b] >= k && ks[0] / c->last_penalty < c->best[b])) return;
    if (t == c->max_len - 1) {
        double cut_pen = PT_SFX(beam_penalty)(c->kind, c->alpha, t + 1, 0);
        for (int64_t i = 0; i < nk; i++)
            PT_SFX(beam_finish)(c, b, PT_SFX(beam_normalized)(ks[i], cut_pen), kp[i], t, kt[i],
                                kl[i], 0);
        return;
    }
    c->nkeep[a] = nk;
}

/* Hypothesis i of new block j (sentence b) at step t: its score, token,
 * record, and physical row p. */
static inline void PT_SFX(beam_place)(PT_SFX(beam) *c, int64_t a, int64_t j, int64_t i,
                                      int64_t p, int64_t t)
{
    int64_t k = c->k, b = c->sent[a], nk = c->nkeep[a], src = i < nk ? i : 0;
    int64_t e = (b * c->max_len + t) * k + i;
    c->hist_tok[e] = c->keep_tok[a * k + src];
    c->hist_par[e] = c->keep_par[a * k + src];
    if (c->hist_lp) c->hist_lp[e] = c->keep_lp[a * k + src];
    c->ptok[p] = c->keep_tok[a * k + src];
    c->slot[j * k + i] = p;
}

int PT_FN(pt_beam_decode)(const GREEDY *g, real *const *self_k, real *const *self_v,
                          real *const *cross_k, real *const *cross_v, const real *src_mask,
                          int64_t B, int64_t S, int64_t max_len, int64_t k, int penalty_kind,
                          double alpha, int64_t *count, int64_t *ids, int64_t *lengths,
                          int64_t *ended, double *scores, double *logp, real *work,
                          int64_t *iwork, double *dwork)
{
    if (!g || !g->layers || g->nlayers < 1 || B < 0 || S < 0 || max_len < 1 || k < 1)
        return PT_EINVAL;
    if (!g->embed || g->embed_rows < 1 || !g->positions || !g->gen_w || g->V < 1)
        return PT_EINVAL;
    if (g->pad < 0 || g->pad >= g->V || g->bos < 0 || g->bos >= g->V) return PT_EINVAL;
    if ((penalty_kind != PT_PENALTY_GNMT && penalty_kind != PT_PENALTY_POWER) || !(alpha >= 0)
        || alpha == INFINITY)
        return PT_EINVAL;
    if (B == 0) return PT_OK;
    if (!count || !ids || !lengths || !ended || !scores || !work || !iwork || !dwork
        || !self_k || !self_v || !cross_k || !cross_v)
        return PT_EINVAL;
    int64_t E = g->layers->E, V = g->V, N = B * k, L = max_len;
    real *x = work, *lg = x + N * E, *step_work = lg + N * V;
    /* the stack's and the generator's weights packed */
    PT_FN(pt_layer) packed_layers[PACK_LAYERS];
    GREEDY packed_g;
    if (PT_SFX(beam_pack_size)(g)) {
        real *wp = step_work + PT_FN(pt_decoder_step_workspace)(g->layers, N, L, S);
        int st = PT_FN(pt_decoder_pack)(packed_layers, wp, g->layers, g->nlayers);
        if (st != PT_OK) return st;
        wp += g->nlayers * PT_FN(pt_decoder_pack_size)(g->layers);
        st = PT_FN(pt_linear_pack)(wp, g->gen_w, V, E);
        if (st != PT_OK) return st;
        packed_g = *g;
        packed_g.layers = packed_layers;
        packed_g.gen_wp = wp;
        g = &packed_g;
    }
    PT_SFX(beam) c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.k = k;
    c.max_len = L;
    c.V = V;
    c.kind = penalty_kind;
    c.alpha = alpha;
    c.last_penalty = fmax(PT_SFX(beam_penalty)(penalty_kind, alpha, L, 0),
                          PT_SFX(beam_penalty)(penalty_kind, alpha, L - 1, 1));
    int64_t *iw = iwork;
    c.sent = iw; iw += B;
    c.nkeep = iw; iw += B;
    c.nfin = iw; iw += B;
    c.slot = iw; iw += N;
    c.ptok = iw; iw += N;
    c.keep_par = iw; iw += N;
    c.keep_tok = iw; iw += N;
    c.top_i = iw; iw += 2 * N;
    c.hist_tok = iw; iw += N * L;
    c.hist_par = iw; iw += N * L;
    int64_t *mem_row = iw; iw += N;
    int64_t *os = iw, *claimed = os + k, *dup = claimed + k;
    double *dw = dwork;
    c.score = dw; dw += N;
    c.keep_sc = dw; dw += N;
    c.keep_lp = dw; dw += N;
    c.top_v = dw; dw += 2 * N;
    c.best = dw; dw += B;
    c.hist_lp = logp ? dw : NULL;
    c.count = count;
    c.ids = ids;
    c.lengths = lengths;
    c.ended = ended;
    c.scores = scores;
    c.logp = logp;
    for (int64_t b = 0; b < B; b++) {
        c.sent[b] = b;
        c.slot[b] = b;
        c.ptok[b] = g->bos;
        c.score[b] = 0;
        c.nfin[b] = 0;
        c.best[b] = -INFINITY;
        count[b] = 0;
    }
    int64_t nact = B, kk = 1;
    for (int64_t t = 0; t < L && nact > 0; t++) {
        int64_t n = nact * kk;
        for (int64_t r = 0; r < n; r++) mem_row[r] = c.sent[r / kk];
        int st = PT_SFX(dec_embed)(g, x, c.ptok, n, t);
        if (st != PT_OK) return st;
        st = PT_SFX(dec_logits)(g, lg, x, step_work, self_k, self_v, cross_k, cross_v,
                                src_mask, mem_row, n, t, L, S, NULL);
        if (st != PT_OK) return st;
        st = PT_FN(pt_softmax_forward)(lg, lg, n, V, 1);
        if (st != PT_OK) return st;

        int nth = pt_get_num_threads();
        (void)nth;                     /* read only by the OpenMP pragma */
        #pragma omp parallel for num_threads(nth) schedule(dynamic) if (nact > 1 && n * V > 65536)
        for (int64_t a = 0; a < nact; a++) PT_SFX(beam_select)(&c, lg, a, kk, t);

        int64_t j = 0;                 /* the new index of the next survivor */
        if (kk == 1) {
            /* survivors' rows down to 0..j-1, then each copied into its block */
            for (int64_t a = 0; a < nact; a++) {
                if (!c.nkeep[a]) continue;
                if (a != j) {
                    PT_SFX(dec_copy_self)(g, self_k, self_v, a, j, L, t + 1);
                    c.sent[j] = c.sent[a];
                    c.nkeep[j] = c.nkeep[a];
                    memmove(c.keep_par + j * k, c.keep_par + a * k, (size_t)k * sizeof(int64_t));
                    memmove(c.keep_tok + j * k, c.keep_tok + a * k, (size_t)k * sizeof(int64_t));
                    memmove(c.keep_sc + j * k, c.keep_sc + a * k, (size_t)k * sizeof(double));
                    memmove(c.keep_lp + j * k, c.keep_lp + a * k, (size_t)k * sizeof(double));
                }
                j++;
            }
            for (int64_t a = j - 1; a >= 0; a--) {
                for (int64_t i = 0; i < k; i++) {
                    int64_t p = a * k + i;
                    if (p != a) PT_SFX(dec_copy_self)(g, self_k, self_v, a, p, L, t + 1);
                }
                for (int64_t i = 0; i < k; i++) {
                    PT_SFX(beam_place)(&c, a, a, i, a * k + i, t);
                    c.score[a * k + i] = i < c.nkeep[a] ? c.keep_sc[a * k + i] : -INFINITY;
                }
            }
        } else {
            /* survivors stay in their blocks; the block of a sentence that
             * left takes the last survivor's */
            for (int64_t a = 0; a < nact; a++) j += c.nkeep[a] > 0;
            for (int64_t a = 0, last = nact - 1; a < j; a++) {
                int64_t from = a;
                if (!c.nkeep[a]) {
                    while (!c.nkeep[last]) last--;
                    from = last--;
                }
                int64_t nk = c.nkeep[from], ob = from * k, nb = a * k;
                for (int64_t r = 0; r < k; r++) {
                    os[r] = c.slot[ob + r] - ob;
                    claimed[r] = 0;
                }
                /* the first extension of a hypothesis keeps its row */
                for (int64_t i = 0; i < k; i++) {
                    int64_t P = os[c.keep_par[ob + (i < nk ? i : 0)]];
                    dup[i] = claimed[P];
                    if (!claimed[P]) {
                        claimed[P] = 1;
                        if (nb != ob) PT_SFX(dec_copy_self)(g, self_k, self_v, ob + P, nb + P, L,
                                                            t + 1);
                        PT_SFX(beam_place)(&c, from, a, i, nb + P, t);
                    }
                }
                /* further ones take the rows of hypotheses not extended; padding
                 * rows (never chosen) keep whatever finite values that row holds */
                for (int64_t i = 0, f = 0; i < k; i++) {
                    if (!dup[i]) continue;
                    while (claimed[f]) f++;
                    claimed[f] = 1;
                    if (i < nk)
                        PT_SFX(dec_copy_self)(g, self_k, self_v,
                                              ob + os[c.keep_par[ob + i]], nb + f, L, t + 1);
                    PT_SFX(beam_place)(&c, from, a, i, nb + f, t);
                }
                for (int64_t i = 0; i < k; i++)
                    c.score[nb + i] = i < nk ? c.keep_sc[ob + i] : -INFINITY;
                c.sent[a] = c.sent[from];
            }
        }
        nact = j;
        kk = k;
    }
    return PT_OK;
}
