/*
 * layer_encoder_team.c -- the encoder stack's forward (layer_encoder.c)
 * as one team of threads, for few rows: the same steps over the same
 * workspace regions, each shared out by parts.
 *
 * With few rows (the packed projections' range) and more than one thread,
 * the whole stack runs in one parallel region. Each layer is a chain of
 * steps (the projections, split into heads, attention, merge, residual and
 * norm, activation), each cut into one part per thread (a run of panels,
 * of rows, or of the (sequence, head) pairs); the parts of all steps are numbered in order
 * as tickets, and each thread takes the next ticket, waits until every
 * part of the earlier steps is done, and does its part. Nobody waits for
 * a thread that is not working: a second thread that is still waking up
 * (libgomp lets idle threads sleep, runtime.py) or has lost its core finds
 * its share taken by the first. A region per kernel would instead pay a
 * fork and join each time, and leave the second thread idle through the
 * steps too small to share, long enough to fall asleep before the next.
 * Each row, column and head is computed by one thread with the kernels of
 * the serial steps: the same bits whatever thread does which part. */
#include "pt_real.h"
#include "pt_dispatch.h"
#include "pt_layer.h"
#include "pt_team.h"

/* Parts per thread of each step: one, a contiguous run as a static split
 * would give (two threads awake: one half each, the panels of a run
 * prefetched in turn); a thread that finds the other's part untaken does
 * it too. */
#define ENC_PARTS 1

enum { ES_NORM0, ES_QKV, ES_SPLIT, ES_ATT, ES_MERGE, ES_OPROJ, ES_RES0, ES_NORM1, ES_FF1,
       ES_ACT, ES_FF2, ES_RES1, ES_STEPS };

typedef struct PT_SFX(enc_team) {
    real *x, *work;
    const PT_FN(pt_layer) *layers;
    const PT_SFX(lay_seqs) *s;
    int64_t N, nlayers, parts;
    const real *mask;
    const int64_t *ms;
    int is_causal;
    int64_t next, done;   /* the next ticket; parts done (atomics) */
    int status;
} PT_SFX(enc_team);

/* Units step `step` shares out: panels, rows, or (sequence, head) pairs. */
static int64_t PT_SFX(enc_units)(const PT_SFX(enc_team) *c, const PT_FN(pt_layer) *L, int step)
{
    int64_t E = L->E, F = L->F, N = c->N;
    switch (step) {
    case ES_NORM0: case ES_NORM1: return L->norm_first ? N : 0;
    case ES_QKV: return (3 * E + PT_LINEAR_PANEL - 1) / PT_LINEAR_PANEL;
    case ES_OPROJ: case ES_FF2: return (E + PT_LINEAR_PANEL - 1) / PT_LINEAR_PANEL;
    case ES_FF1: return (F + PT_LINEAR_PANEL - 1) / PT_LINEAR_PANEL;
    case ES_ATT: return c->s->B * L->H;
    case ES_ACT: return L->act != PT_ACT_NONE ? N : 0;
    default: return N;
    }
}

/* Heads [p0, p1) of the (sequence, head) pairs in order, consecutive heads
 * of one sequence in one call. */
static int PT_SFX(enc_attention_pairs)(real *O, const real *q, const real *k, const real *v,
                                       const PT_SFX(lay_seqs) *s, int64_t E, int64_t H,
                                       const real *mask, const int64_t *ms, int is_causal,
                                       real scale, int64_t p0, int64_t p1)
{
    int64_t d = E / H;
    for (int64_t p = p0; p < p1;) {
        int64_t b = p / H, h0 = p % H, h1 = p1 - b * H < H ? p1 - b * H : H;
        int64_t o = PT_SFX(lay_off)(s, b), n = PT_SFX(lay_off)(s, b + 1) - o;
        int64_t at = o * E + h0 * n * d;
        const real *mb = mask ? mask + b * ms[0] + h0 * ms[1] : NULL;
        LAY_TRY(PT_FN(pt_attention_forward)(O + at, NULL, NULL, q + at, k + at, v + at, mb, ms,
                                            1, h1 - h0, n, n, d, d, is_causal, scale));
        p += h1 - h0;
    }
    return PT_OK;
}

/* Units [u0, u1) of step `step` of layer L, over layer_encoder.c's
 * workspace regions. */
static int PT_SFX(enc_part)(PT_SFX(enc_team) *c, const PT_FN(pt_layer) *L, int step, int64_t u0,
                            int64_t u1)
{
    int64_t E = L->E, H = L->H, F = L->F, N = c->N, d = E / H;
    PT_SFX(lay_enc_ws) w = PT_SFX(lay_enc_regions)(c->work, L, N);
    real *x = c->x, *A = w.A, *P = w.P, *O = w.O, *Y = w.Y, *mean = w.mean, *rstd = w.rstd;
    const real *in = L->norm_first ? Y : x;
    switch (step) {
    case ES_NORM0: case ES_NORM1: {
        int i = step == ES_NORM1;
        return PT_FN(pt_layernorm_forward)(Y + u0 * E, mean + u0, rstd + u0, x + u0 * E,
                                           L->norm_w[i], L->norm_b[i], u1 - u0, E,
                                           L->norm_eps[i]);
    }
    case ES_QKV:
        return PT_FN(pt_linear_packed_panels)(A, in, L->sa_wp, L->sa_b, N, E, 3 * E, u0, u1);
    case ES_SPLIT:
        for (int64_t r = u0; r < u1; r++)
            PT_SFX(lay_split_row)(P, A, 3 * E, 3, c->s, N, E, H, r);
        return PT_OK;
    case ES_ATT:
        return PT_SFX(enc_attention_pairs)(O, P, P + N * E, P + 2 * N * E, c->s, E, H, c->mask,
                                           c->ms, c->is_causal,
                                           (real)(1.0 / sqrt((double)d)), u0, u1);
    case ES_MERGE:
        for (int64_t r = u0; r < u1; r++) PT_SFX(lay_merge_row)(P, O, c->s, E, H, r);
        return PT_OK;
    case ES_OPROJ:
        return PT_FN(pt_linear_packed_panels)(Y, P, L->sa_owp, L->sa_ob, N, E, E, u0, u1);
    case ES_RES0: return PT_SFX(lay_residual_rows)(x, Y, mean, rstd, L, 0, u0, u1);
    case ES_FF1:
        return PT_FN(pt_linear_packed_panels)(A, in, L->ff1_wp, L->ff1_b, N, E, F, u0, u1);
    case ES_ACT:
        return PT_FN(pt_bias_act_forward)(A + u0 * F, A + u0 * F, NULL, u1 - u0, F, L->act);
    case ES_FF2:
        return PT_FN(pt_linear_packed_panels)(P, A, L->ff2_wp, L->ff2_b, N, F, E, u0, u1);
    default: return PT_SFX(lay_residual_rows)(x, P, mean, rstd, L, 1, u0, u1);
    }
}

/* Until at least `target` parts are done. */
static void PT_SFX(enc_wait)(PT_SFX(enc_team) *c, int64_t target)
{
    unsigned spins = 0;
    for (;;) {
        int64_t d;
        #pragma omp atomic read seq_cst
        d = c->done;
        if (d >= target) return;
        pt_team_pause(&spins);
    }
}

/* What every thread of the team runs. */
static void PT_SFX(enc_team_run)(PT_SFX(enc_team) *c)
{
    int64_t step = 0, base = 0;   /* the step (layer * ES_STEPS + its step), its first ticket */
    int64_t steps = c->nlayers * ES_STEPS;
    const PT_FN(pt_layer) *L = c->layers;
    int64_t units = PT_SFX(enc_units)(c, L, 0), nparts = units < c->parts ? units : c->parts;
    for (;;) {
        int64_t t;
        #pragma omp atomic capture seq_cst
        t = c->next++;
        while (t >= base + nparts) {          /* past this step: on to the ticket's */
            base += nparts;
            if (++step == steps) return;
            L = c->layers + step / ES_STEPS;
            units = PT_SFX(enc_units)(c, L, (int)(step % ES_STEPS));
            nparts = units < c->parts ? units : c->parts;
        }
        PT_SFX(enc_wait)(c, base);
        int64_t j = t - base;
        int st = PT_SFX(enc_part)(c, L, (int)(step % ES_STEPS), units * j / nparts,
                                  units * (j + 1) / nparts);
        if (st != PT_OK) {
            #pragma omp atomic write
            c->status = st;
        }
        #pragma omp atomic update seq_cst
        c->done++;
    }
}

int PT_FN(pt_encoder_team_fits)(const PT_FN(pt_layer) *layers, int64_t nlayers, int64_t N)
{
    if (pt_get_num_threads() < 2 || N > pt_dispatch.linear_packed_rows) return 0;
    for (int64_t l = 0; l < nlayers; l++) {
        const PT_FN(pt_layer) *L = layers + l;
        if (!L->sa_wp || !L->sa_owp || !L->ff1_wp || !L->ff2_wp || L->packed_step) return 0;
    }
    return 1;
}

int PT_FN(pt_encoder_team_forward)(real *x, real *work, const PT_FN(pt_layer) *layers,
                                   int64_t nlayers, const PT_SFX(lay_seqs) *s, int64_t N,
                                   const real *mask, const int64_t *ms, int is_causal)
{
    int nth = pt_get_num_threads();
    PT_SFX(enc_team) c = {x, work, layers, s, N, nlayers, ENC_PARTS * nth, mask, ms, is_causal,
                          0, 0, PT_OK};
    #pragma omp parallel num_threads(nth)
    PT_SFX(enc_team_run)(&c);
    return c.status;
}
