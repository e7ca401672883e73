/*
 * test_decode.c -- the greedy loop (decode_greedy.c) against the same loop
 * written out step by step over the public kernels (pt_decoder_step,
 * pt_linear_forward), dropping finished rows by copying the survivors into
 * fresh caches, in float32 and float64: random decoder stacks (post- and
 * pre-norm, ReLU and GELU, with and without a final norm and a memory
 * mask), EOS logits shifted so that rows end at various steps; each
 * also with the step's and the generator's weights packed (pt_decoder_pack
 * with packed_step PT_DECODER_PACKED_ROWS, gen_wp), which the reference
 * reads from the same row counts on. Tokens and lengths must be equal,
 * log-probabilities equal to 1e-12; over packed weights the loop at 1, 2
 * and 3 threads (its team, pt_team.h) gives the same bits. Also the arguments pt_greedy_decode
 * refuses, and the softmax family's argmax_row (the greedy choice) of
 * every level the CPU runs against the rule spelt out: rows of 1..70 and
 * 1448 entries with ties, -inf, +-0 and NaN. Exit status 1 on failure.
 *
 *     make -C csrc test
 */
#ifndef DT          /* the file includes itself once per dtype */
#define _POSIX_C_SOURCE 199309L   /* nanosleep under -std=c99 */
#include <math.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"
#include "pt_decode.h"
#include "pt_dispatch.h"
#include "pt_team.h"
#include "pt_omp.h"
#define PT_TEST_SEED 0x2545F4914F6CDD1DULL
#include "pt_test.h"

static void check(const char *name, int ok)
{
    printf("%-64s %s\n", name, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

#define DT float
#define DS(name) name##_f32
#include "test_decode.c"
#undef DT
#undef DS
#define DT double
#define DS(name) name##_f64
#include "test_decode.c"
#undef DT
#undef DS

/* pt_team: every part of every job done exactly once; a worker's part
 * that stalls (as on a thread that lost its core) sends the leader on
 * alone, and no later part runs on the worker. Each part takes ~20 us so
 * that the worker gets to take its own. */
enum { TJOBS = 400, TPARTS = 2 };
static int team_count[TJOBS][TPARTS], team_on_worker[TJOBS];
static int team_job, team_stall, team_stalled_at;

static void team_part(void *arg, int part, int parts)
{
    (void)arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + t.tv_nsec - t0.tv_nsec < 20000);
    if (omp_get_thread_num() == 1) {
        team_on_worker[team_job] = 1;
        if (team_stall && team_stalled_at < 0) {
            team_stalled_at = team_job;
            struct timespec ts = {0, 3000000};          /* 3 ms */
            nanosleep(&ts, NULL);
        }
    }
    if (parts == TPARTS) team_count[team_job][part]++;
}

/* One run of TJOBS jobs; with stall, the worker's first part sleeps. */
static void team_run(pt_team *team, int stall, int *threads)
{
    memset(team_count, 0, sizeof team_count);
    memset(team_on_worker, 0, sizeof team_on_worker);
    team_stall = stall;
    team_stalled_at = -1;
    pt_team_init(team, TPARTS);
    #pragma omp parallel num_threads(TPARTS)
    {
        if (omp_get_thread_num() == 0) {
            *threads = omp_get_num_threads();
            for (team_job = 0; team_job < TJOBS; team_job++) pt_team_run(team, team_part, NULL);
            pt_team_end(team);
        } else {
            pt_team_work(team, omp_get_thread_num());
        }
    }
}

/* With stall: on a busy machine the stall can go unseen (the worker takes
 * no part at all, or the leader, itself off its core while the worker
 * sleeps, finds the part done), and then the leader rightly stays; such
 * a run is repeated, up to 10 times, until the leader has seen the stall.
 * Every run must do every part once, and a run whose leader went alone
 * must give the worker no later part. */
static void team_test(int stall)
{
    pt_team team;
    int threads = 1, once = 1, later = 0, seen = 0;
    for (int tries = 0; tries < 10 && !seen; tries++) {
        team_run(&team, stall, &threads);
        int run_later = 0;
        for (int j = 0; j < TJOBS; j++) {
            for (int p = 0; p < TPARTS; p++) once &= team_count[j][p] == 1;
            run_later += team_stalled_at >= 0 && j > team_stalled_at && team_on_worker[j];
        }
        if (team.alone) later += run_later;
        seen = !stall || threads == 1 || (team_stalled_at >= 0 && team.alone);
    }
    if (!stall)
        check("team: every part of 400 jobs done once", once);
    else
        check("team: a stalled worker's part done once, the leader goes on alone",
              once && seen && !later);
}

int main(void)
{
    pt_isa_init();
    team_test(0);
    team_test(1);
    run_f32();
    run_f64();
    argmax_f32();
    argmax_f64();
    if (failures) {
        printf("%d decode test(s) FAILED\n", failures);
        return 1;
    }
    printf("all decode tests passed\n");
    return 0;
}

#else   /* ------------------------------------------- once per dtype (DT) */


#include "pt_test_decoder.h"

/* The first NaN, else the first maximum. */
static int64_t DS(argmax_ref)(const DT *x, long n)
{
    long best = 0;
    for (long j = 0; j < n; j++) {
        if (x[j] != x[j]) return j;
        if (x[j] > x[best]) best = j;
    }
    return best;
}

static void DS(argmax)(void)
{
    const struct DS(pt_sm_kernels) *paths[3] = {&DS(pt_sm_portable), &DS(pt_sm_avx2),
                                                &DS(pt_sm_avx512)};
    long lens[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 64, 70, 1448};
    DT *x = xcalloc(1448, sizeof *x);
    int bad = 0, cases = 0;
    for (int li = 0; li < (int)(sizeof lens / sizeof *lens); li++)
        for (int kind = 0; kind < 7; kind++) {
            long n = lens[li];
            DT *r = DS(rnd)(n, 1.0);
            memcpy(x, r, n * sizeof *x);
            free(r);
            long a = n / 3, b = n - 1;
            switch (kind) {
            case 1: x[a] = x[b] = 9; break;                      /* a tie: the first */
            case 2: for (long j = 0; j < n; j++) x[j] = -INFINITY; break;
            case 3: x[b] = NAN; x[a] = 9; break;                 /* NaN after the max */
            case 4: x[a] = NAN; x[b] = NAN; break;               /* the first NaN */
            case 5: for (long j = 0; j < n; j++) x[j] = j % 2 ? (DT)0 : (DT)-0.0; break;
            case 6: x[0] = -INFINITY; if (n > 1) x[1] = -INFINITY; x[b] = 5; break;
            }
            int64_t want = DS(argmax_ref)(x, n);
            for (int lv = 0; lv <= pt_isa_cpu_level(); lv++) {
                cases++;
                bad += paths[lv]->argmax_row(x, n) != want;
            }
        }
    char name[96];
    snprintf(name, sizeof name, "%s argmax_row of every level (%d cases)",
             sizeof(DT) == 4 ? "f32" : "f64", cases);
    check(name, bad == 0);
    free(x);
}

/* The loop spelt out: fresh caches of the surviving rows at every step. */
static void DS(reference)(const DS(pt_greedy) *g, DT **sk, DT **sv, DT **ck, DT **cv,
                          const DT *mask, long B, long S, long T, int64_t *ids,
                          int64_t *lengths, double *logp)
{
    long E = g->layers->E, H = g->layers->H, d = E / H, V = g->V, L = g->nlayers;
    long srow = H * T * d, crow = H * S * d;
    DT *x = xcalloc(B * E, sizeof *x), *lg = xcalloc(B * V, sizeof *lg);
    DT *work = xcalloc(DS(pt_decoder_step_workspace)(g->layers, B, T, S), sizeof *work);
    long *rows = xcalloc(B, sizeof *rows);
    int64_t *tok = xcalloc(B, sizeof *tok);
    DT *m = mask ? xcalloc(B * S, sizeof *m) : NULL;
    if (m) memcpy(m, mask, B * S * sizeof *m);
    for (long b = 0; b < B; b++) { rows[b] = b; tok[b] = g->bos; lengths[b] = T; }
    long n = B;
    for (long t = 0; t < T && n > 0; t++) {
        for (long i = 0; i < n; i++)
            for (long c = 0; c < E; c++) {
                DT e = g->embed[tok[i] * E + c] * g->embed_scale;
                x[i * E + c] = e + g->positions[t * E + c];
            }
        DS(pt_decoder_step)(x, sk, sv, work, g->layers, L, (const DT *const *)ck,
                            (const DT *const *)cv, m, NULL, NULL, n, t, T, S, g->final_norm,
                            g->final_w, g->final_b, g->final_eps);
        if (g->gen_wp && n >= g->layers->packed_step)
            DS(pt_linear_packed_forward_any)(lg, x, g->gen_wp, g->gen_b, n, E, V);
        else
            DS(pt_linear_forward)(lg, x, g->gen_w, g->gen_b, n, E, V);
        long keep = 0;
        long *from = xcalloc(n, sizeof *from);
        for (long i = 0; i < n; i++) {
            DT *row = lg + i * V;
            row[g->pad] = -INFINITY;
            row[g->bos] = -INFINITY;
            long best = 0;
            for (long j = 1; j < V; j++) if (row[j] > row[best]) best = j;
            double s = 0;
            for (long j = 0; j < V; j++) s += exp((double)row[j] - (double)row[best]);
            ids[rows[i] * T + t] = best;
            if (logp) logp[rows[i] * T + t] = -log(s);
            tok[i] = best;
            if (best == g->eos) lengths[rows[i]] = t;
            else from[keep++] = i;
        }
        /* the survivors into fresh caches, as the per-step path gathers them */
        for (long l = 0; l < L; l++) {
            DT *a[4] = {sk[l], sv[l], ck[l], cv[l]};
            long rs[4] = {srow, srow, crow, crow};
            for (int q = 0; q < 4; q++) {
                DT *fresh = xcalloc(B * rs[q], sizeof *fresh);
                for (long i = 0; i < keep; i++)
                    memcpy(fresh + i * rs[q], a[q] + from[i] * rs[q], rs[q] * sizeof *fresh);
                memcpy(a[q], fresh, B * rs[q] * sizeof *fresh);
                free(fresh);
            }
        }
        if (m)
            for (long i = 0; i < keep; i++) memmove(m + i * S, m + from[i] * S, S * sizeof *m);
        for (long i = 0; i < keep; i++) { rows[i] = rows[from[i]]; tok[i] = tok[from[i]]; }
        n = keep;
        free(from);
    }
    free(x); free(lg); free(work); free(rows); free(tok); free(m);
}

static void DS(test_greedy)(int norm_first, int act, int final, int masked, double eos_shift,
                            long B, int packed, int *mixed)
{
    long E = TD_E, H = TD_H, L = TD_L, S = TD_S, T = 9, V = TD_V, d = E / H;
    DS(pt_layer) layers[TD_L], players[TD_L];
    DS(pt_greedy) g;
    DT *keep[TD_KEEP];
    int nk = 0;
    DS(random_decoder)(&g, layers, keep, &nk, norm_first, act, final, eos_shift, T);
    DT *wp = NULL;
    if (packed) {
        long per = DS(pt_decoder_pack_size)(layers);
        wp = xcalloc(L * per + DS(pt_linear_pack_size)(V, E), sizeof *wp);
        DS(pt_decoder_pack)(players, wp, layers, L);
        for (long l = 0; l < L; l++) players[l].packed_step = PT_DECODER_PACKED_ROWS;
        DS(pt_linear_pack)(wp + L * per, g.gen_w, V, E);
        g.layers = players;
        g.gen_wp = wp + L * per;
    }

    DT *sk[2][2], *sv[2][2], *ck[2][2], *cv[2][2];      /* [copy][layer] */
    for (long l = 0; l < L; l++) {
        sk[0][l] = xcalloc(B * H * T * d, sizeof(DT));
        sv[0][l] = xcalloc(B * H * T * d, sizeof(DT));
        sk[1][l] = xcalloc(B * H * T * d, sizeof(DT));
        sv[1][l] = xcalloc(B * H * T * d, sizeof(DT));
        ck[0][l] = DS(rnd)(B * H * S * d, 1.0);
        cv[0][l] = DS(rnd)(B * H * S * d, 1.0);
        ck[1][l] = xcalloc(B * H * S * d, sizeof(DT));
        cv[1][l] = xcalloc(B * H * S * d, sizeof(DT));
        memcpy(ck[1][l], ck[0][l], B * H * S * d * sizeof(DT));
        memcpy(cv[1][l], cv[0][l], B * H * S * d * sizeof(DT));
    }
    DT *mask = NULL, *mask2 = NULL;
    if (masked) {
        mask = xcalloc(B * S, sizeof *mask);
        mask2 = xcalloc(B * S, sizeof *mask2);
        for (long b = 0; b < B; b++)
            for (long s = 0; s < S; s++) mask[b * S + s] = s > b % S ? -INFINITY : 0;
        memcpy(mask2, mask, B * S * sizeof *mask);
    }
    int64_t *ids = xcalloc(B * T, sizeof *ids), *ids2 = xcalloc(B * T, sizeof *ids2);
    int64_t *len = xcalloc(B, sizeof *len), *len2 = xcalloc(B, sizeof *len2);
    double *lp = xcalloc(B * T, sizeof *lp), *lp2 = xcalloc(B * T, sizeof *lp2);
    DT *work = xcalloc(DS(pt_greedy_workspace)(&g, B, T, S), sizeof *work);
    int64_t *iwork = xcalloc(DS(pt_greedy_iworkspace)(B), sizeof *iwork);
    int nth0 = pt_get_num_threads();
    pt_set_num_threads(2);
    int st = DS(pt_greedy_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, ids, len, lp,
                                  work, iwork);
    pt_set_num_threads(nth0);
    if (packed) {
        /* the team of 2 or 3 threads (pt_team.h) against one thread: the
         * same bits */
        int64_t *ids3 = xcalloc(B * T, sizeof *ids3), *len3 = xcalloc(B, sizeof *len3);
        double *lp3 = xcalloc(B * T, sizeof *lp3);
        int same3 = 1;
        for (int nth = 1; nth <= 3; nth += 2) {
            for (long l = 0; l < L; l++) {
                memset(sk[1][l], 0, B * H * T * d * sizeof(DT));
                memset(sv[1][l], 0, B * H * T * d * sizeof(DT));
            }
            memset(ids3, 0, B * T * sizeof *ids3);
            pt_set_num_threads(nth);
            same3 &= DS(pt_greedy_decode)(&g, sk[1], sv[1], ck[1], cv[1], mask, B, S, T, ids3,
                                          len3, lp3, work, iwork) == PT_OK;
            pt_set_num_threads(nth0);
            same3 &= !memcmp(ids, ids3, B * T * sizeof *ids) && !memcmp(len, len3, B * sizeof *len)
                     && !memcmp(lp, lp3, B * T * sizeof *lp);
        }
        char tname[160];
        snprintf(tname, sizeof tname,
                 "%s greedy packed B=%ld cfg %d%d%d%d eos%+.1f: 1, 2, 3 threads bitwise",
                 sizeof(DT) == 4 ? "f32" : "f64", B, norm_first, act == PT_ACT_RELU, final, masked,
                 eos_shift);
        check(tname, same3);
        free(ids3); free(len3); free(lp3);
        for (long l = 0; l < L; l++) {
            memset(sk[1][l], 0, B * H * T * d * sizeof(DT));
            memset(sv[1][l], 0, B * H * T * d * sizeof(DT));
        }
    }
    DS(reference)(&g, sk[1], sv[1], ck[1], cv[1], mask2, B, S, T, ids2, len2, lp2);
    int same = st == PT_OK;
    double worst = 0;
    long lmin = T, lmax = 0;
    for (long b = 0; b < B; b++) {
        same &= len[b] == len2[b];
        lmin = len[b] < lmin ? len[b] : lmin;
        lmax = len[b] > lmax ? len[b] : lmax;
        long n = len[b] < T ? len[b] + 1 : T;
        for (long t = 0; t < n; t++) {
            same &= ids[b * T + t] == ids2[b * T + t];
            double e = fabs(lp[b * T + t] - lp2[b * T + t]);
            worst = e > worst ? e : worst;
        }
    }
    if (B > 1 && lmin < lmax) (*mixed)++;
    char name[160];
    snprintf(name, sizeof name, "%s greedy %s %s%s%s%s B=%ld eos%+.1f lengths %ld..%ld",
             sizeof(DT) == 4 ? "f32" : "f64", norm_first ? "pre" : "post",
             act == PT_ACT_RELU ? "relu" : "gelu", final ? " final" : "", masked ? " mask" : "",
             packed ? " packed" : "", B, eos_shift, lmin, lmax);
    check(name, same && worst <= 1e-12);

    /* refusals: a bos outside the vocabulary, max_len 0 */
    g.bos = V;
    st = DS(pt_greedy_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, ids, len, lp,
                              work, iwork);
    g.bos = 1;
    int st2 = DS(pt_greedy_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, 0, ids, len, lp,
                                   work, iwork);
    if (eos_shift == 0 && B > 1 && !packed)
        check(sizeof(DT) == 4 ? "f32 greedy refuses bos >= V and max_len 0"
                              : "f64 greedy refuses bos >= V and max_len 0",
              st == PT_EINVAL && st2 == PT_EINVAL);

    for (long l = 0; l < L; l++)
        for (int c = 0; c < 2; c++) {
            free(sk[c][l]); free(sv[c][l]); free(ck[c][l]); free(cv[c][l]);
        }
    for (int i = 0; i < nk; i++) free(keep[i]);
    free(mask); free(mask2); free(ids); free(ids2); free(len); free(len2); free(lp); free(lp2);
    free(work); free(iwork); free(wp);
}

static void DS(run)(void)
{
    int mixed = 0;
    const double shifts[] = {-1.0, 0.0, 0.75, 1.5};
    for (int packed = 0; packed < 2; packed++)
        for (int cfg = 0; cfg < 8; cfg++)
            for (int s = 0; s < 4; s++)
                DS(test_greedy)(cfg & 1, cfg & 2 ? PT_ACT_GELU_ERF : PT_ACT_RELU, !(cfg & 4),
                                cfg % 3 != 0, shifts[s], cfg == 5 ? 1 : 6, packed, &mixed);
    check(sizeof(DT) == 4 ? "f32 some batches had rows ending at different steps"
                          : "f64 some batches had rows ending at different steps", mixed >= 6);
}

#endif
