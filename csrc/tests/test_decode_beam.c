/*
 * test_decode_beam.c -- the beam-search loop (decode_beam.c) against the
 * same search written out as pytransformer.decode's step loop has it,
 * over the public kernels (pt_decoder_step and the generator over the
 * weights packed as the loop packs them, pt_decoder_pack, pt_linear_pack;
 * pt_softmax_forward): every candidate of a sentence sorted (largest
 * first, ties by index), hypotheses in rows of their own order, the
 * caches gathered into fresh arrays at every step, the finished ones
 * sorted at the end (stably, by score). Float32 and float64; random
 * decoder stacks (post- and pre-norm, ReLU and GELU, with and without a
 * final norm and a memory mask); beam widths 1..4; both length penalties;
 * the EOS logit shifted so that hypotheses end at various steps, some at
 * max_len. Counts, tokens, lengths and endings must be equal, scores and
 * token log-probabilities equal to 1e-9 relative. Also the arguments
 * pt_beam_decode refuses. Exit status 1 on failure.
 *
 *     make -C csrc test
 */
#ifndef DT          /* the file includes itself once per dtype */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"
#include "pt_decode.h"
#define PT_TEST_SEED 0x2545F4914F6CDD1DULL
#include "pt_test.h"

#define TMAX 8      /* max_len of every test */

static void check(const char *name, int ok)
{
    printf("%-72s %s\n", name, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

/* A finished hypothesis of the reference, and a candidate. */
typedef struct { double score; long order, len, ended; int64_t ids[TMAX]; double lp[TMAX]; } fin_t;
typedef struct { double v; long f; } cand_t;

static int cand_cmp(const void *pa, const void *pb)
{
    const cand_t *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->f > b->f) - (a->f < b->f);
}

static int fin_cmp(const void *pa, const void *pb)
{
    const fin_t *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->order > b->order) - (a->order < b->order);
}

static double penalty(int kind, double alpha, long tokens, int ended)
{
    if (kind == PT_PENALTY_GNMT) return pow((5.0 + tokens + ended) / 6.0, alpha);
    return pow((double)(tokens + ended), alpha);
}

#define DT float
#define DS(name) name##_f32
#include "test_decode_beam.c"
#undef DT
#undef DS
#define DT double
#define DS(name) name##_f64
#include "test_decode_beam.c"
#undef DT
#undef DS

int main(void)
{
    pt_isa_init();
    run_f32();
    run_f64();
    if (failures) {
        printf("%d beam test(s) FAILED\n", failures);
        return 1;
    }
    printf("all beam tests passed\n");
    return 0;
}

#else   /* ------------------------------------------- once per dtype (DT) */

#include "pt_test_decoder.h"

/* rows [0, n) of a (rows of rs elements) := rows idx[i] of a, through a
 * fresh array (the step loop's gather). */
static void DS(gather)(DT *a, const long *idx, long n, long rs)
{
    DT *fresh = xcalloc(n * rs, sizeof *fresh);
    for (long i = 0; i < n; i++) memcpy(fresh + i * rs, a + idx[i] * rs, rs * sizeof *fresh);
    memcpy(a, fresh, n * rs * sizeof *fresh);
    free(fresh);
}

/* The step loop of pytransformer.decode._beam_batch, spelt out. */
static void DS(reference)(const DS(pt_greedy) *g, DT **sk, DT **sv, DT **ck, DT **cv, DT *m,
                          long B, long S, long T, long k, int kind, double alpha,
                          int64_t *count, int64_t *ids, int64_t *lengths, int64_t *ended,
                          double *scores, double *logp)
{
    long E = g->layers->E, H = g->layers->H, d = E / H, V = g->V, L = g->nlayers, N = B * k;
    long srow = H * T * d, crow = H * S * d, fcap = T * k + k;
    DT *x = xcalloc(N * E, sizeof *x), *lg = xcalloc(N * V, sizeof *lg);
    DT *work = xcalloc(DS(pt_decoder_step_workspace)(g->layers, N, T, S), sizeof *work);
    long *active = xcalloc(B, sizeof *active), *index = xcalloc(N, sizeof *index);
    long *kept = xcalloc(N, sizeof *kept), *still = xcalloc(B, sizeof *still);
    int64_t *seq = xcalloc(N * T, sizeof *seq), *nseq = xcalloc(N * T, sizeof *nseq);
    int64_t *last = xcalloc(N, sizeof *last), *toks = xcalloc(N, sizeof *toks);
    double *lps = xcalloc(N * T, sizeof *lps), *nlps = xcalloc(N * T, sizeof *nlps);
    double *sc = xcalloc(N, sizeof *sc), *nsc = xcalloc(N, sizeof *nsc);
    cand_t *cand = xcalloc(k * V, sizeof *cand);
    fin_t *fin = xcalloc(B * fcap, sizeof *fin);
    long *nfin = xcalloc(B, sizeof *nfin), order = 0;
    double last_pen = fmax(penalty(kind, alpha, T, 0), penalty(kind, alpha, T - 1, 1));
    /* the weights packed as the loop packs them */
    long per = DS(pt_decoder_pack_size)(g->layers);
    DS(pt_layer) layers[TD_L];
    DT *packed = xcalloc(L * per + DS(pt_linear_pack_size)(V, E), sizeof *packed);
    DS(pt_decoder_pack)(layers, packed, g->layers, L);
    DS(pt_linear_pack)(packed + L * per, g->gen_w, V, E);
    for (long b = 0; b < B; b++) { active[b] = b; last[b] = g->bos; }
    long nact = B, kk = 1;
    for (long t = 0; t < T; t++) {
        long n = nact * kk;
        for (long i = 0; i < n; i++)
            for (long c = 0; c < E; c++) {
                DT e = g->embed[last[i] * E + c] * g->embed_scale;
                x[i * E + c] = e + g->positions[t * E + c];
            }
        DS(pt_decoder_step)(x, sk, sv, work, layers, L, (const DT *const *)ck,
                            (const DT *const *)cv, m, NULL, NULL, n, t, T, S, g->final_norm,
                            g->final_w, g->final_b, g->final_eps);
        DS(pt_linear_packed_forward_any)(lg, x, packed + L * per, g->gen_b, n, E, V);
        for (long i = 0; i < n; i++) {
            lg[i * V + g->pad] = -INFINITY;
            lg[i * V + g->bos] = -INFINITY;
        }
        DS(pt_softmax_forward)(lg, lg, n, V, 1);
        double eos_pen = penalty(kind, alpha, t, 1), cut_pen = penalty(kind, alpha, t + 1, 0);
        long ni = 0, ns = 0;
        for (long a = 0; a < nact; a++) {
            long b = active[a], nc = kk * V, nk = 0;
            long krow[8], ktok[8];
            double ksc[8], klp[8];
            for (long f = 0; f < nc; f++) {
                cand[f].v = sc[a * kk + f / V] + (double)lg[(a * kk + f / V) * V + f % V];
                cand[f].f = f;
            }
            qsort(cand, nc, sizeof *cand, cand_cmp);
            for (long q = 0; q < nc && nk < k; q++) {
                if (!isfinite(cand[q].v)) break;
                long row = a * kk + cand[q].f / V, tok = cand[q].f % V;
                double tlp = (double)lg[row * V + tok];
                if (tok == g->eos) {
                    fin_t *h = fin + b * fcap + nfin[b]++;
                    h->score = cand[q].v / eos_pen;
                    h->order = order++;
                    h->len = t;
                    h->ended = 1;
                    memcpy(h->ids, seq + row * T, t * sizeof *seq);
                    memcpy(h->lp, lps + row * T, t * sizeof *lps);
                    h->ids[t] = tok;
                    h->lp[t] = tlp;
                    continue;
                }
                krow[nk] = row; ktok[nk] = tok; ksc[nk] = cand[q].v; klp[nk] = tlp;
                nk++;
            }
            double best = -INFINITY;
            for (long i = 0; i < nfin[b]; i++)
                best = fin[b * fcap + i].score > best ? fin[b * fcap + i].score : best;
            if (nk == 0 || (nfin[b] >= k && ksc[0] / last_pen < best)) continue;
            if (t == T - 1) {
                for (long i = 0; i < nk; i++) {
                    fin_t *h = fin + b * fcap + nfin[b]++;
                    h->score = ksc[i] / cut_pen;
                    h->order = order++;
                    h->len = t + 1;
                    h->ended = 0;
                    memcpy(h->ids, seq + krow[i] * T, t * sizeof *seq);
                    memcpy(h->lp, lps + krow[i] * T, t * sizeof *lps);
                    h->ids[t] = ktok[i];
                    h->lp[t] = klp[i];
                }
                continue;
            }
            for (long i = 0; i < k; i++) {
                long s = i < nk ? i : 0;
                index[ni] = krow[s];
                toks[ni] = ktok[s];
                nsc[ni] = i < nk ? ksc[i] : -INFINITY;
                memcpy(nseq + ni * T, seq + krow[s] * T, t * sizeof *seq);
                memcpy(nlps + ni * T, lps + krow[s] * T, t * sizeof *lps);
                nseq[ni * T + t] = ktok[s];
                nlps[ni * T + t] = klp[s];
                kept[ni] = a * kk;
                ni++;
            }
            still[ns++] = b;
        }
        if (ns == 0) break;
        for (long l = 0; l < L; l++) {
            DS(gather)(sk[l], index, ni, srow);
            DS(gather)(sv[l], index, ni, srow);
            DS(gather)(ck[l], kept, ni, crow);
            DS(gather)(cv[l], kept, ni, crow);
        }
        if (m) DS(gather)(m, kept, ni, S);
        memcpy(seq, nseq, ni * T * sizeof *seq);
        memcpy(lps, nlps, ni * T * sizeof *lps);
        memcpy(sc, nsc, ni * sizeof *sc);
        memcpy(last, toks, ni * sizeof *last);
        memcpy(active, still, ns * sizeof *active);
        nact = ns;
        kk = k;
    }
    for (long b = 0; b < B; b++) {
        fin_t *f = fin + b * fcap;
        qsort(f, nfin[b], sizeof *f, fin_cmp);
        count[b] = nfin[b] < k ? nfin[b] : k;
        for (long i = 0; i < count[b]; i++) {
            long h = b * k + i;
            lengths[h] = f[i].len;
            ended[h] = f[i].ended;
            scores[h] = f[i].score;
            memcpy(ids + h * T, f[i].ids, (f[i].len + f[i].ended) * sizeof *ids);
            memcpy(logp + h * T, f[i].lp, (f[i].len + f[i].ended) * sizeof *logp);
        }
    }
    free(packed);
    free(x); free(lg); free(work); free(active); free(index); free(kept); free(still);
    free(seq); free(nseq); free(last); free(toks); free(lps); free(nlps); free(sc); free(nsc);
    free(cand); free(fin); free(nfin);
}

static void DS(test_beam)(int norm_first, int act, int final, int masked, double eos_shift,
                          long B, long k, int kind, int *mixed)
{
    long E = TD_E, H = TD_H, L = TD_L, S = TD_S, T = TMAX, V = TD_V, d = E / H, N = B * k;
    double alpha = 0.7;
    DS(pt_layer) layers[TD_L];
    DS(pt_greedy) g;
    DT *keep[TD_KEEP];
    int nk = 0;
    DS(random_decoder)(&g, layers, keep, &nk, norm_first, act, final, eos_shift, T);

    /* [copy][layer]: the loop's cross caches hold the B sentences (its
     * rows share them), the reference's a row per hypothesis */
    DT *sk[2][2], *sv[2][2], *ck[2][2], *cv[2][2];
    for (long l = 0; l < L; l++)
        for (int c = 0; c < 2; c++) {
            sk[c][l] = xcalloc(N * H * T * d, sizeof(DT));
            sv[c][l] = xcalloc(N * H * T * d, sizeof(DT));
            ck[c][l] = xcalloc((c ? N : B) * H * S * d, sizeof(DT));
            cv[c][l] = xcalloc((c ? N : B) * H * S * d, sizeof(DT));
            if (c == 0) {
                DT *a = DS(rnd)(B * H * S * d, 1.0), *b = DS(rnd)(B * H * S * d, 1.0);
                memcpy(ck[0][l], a, B * H * S * d * sizeof(DT));
                memcpy(cv[0][l], b, B * H * S * d * sizeof(DT));
                free(a); free(b);
            } else {
                memcpy(ck[1][l], ck[0][l], B * H * S * d * sizeof(DT));
                memcpy(cv[1][l], cv[0][l], B * H * S * d * sizeof(DT));
            }
        }
    DT *mask = NULL, *mask2 = NULL;
    if (masked) {
        mask = xcalloc(B * S, sizeof *mask);
        mask2 = xcalloc(N * S, sizeof *mask2);
        for (long b = 0; b < B; b++)
            for (long s = 0; s < S; s++) mask[b * S + s] = s > b % S ? -INFINITY : 0;
        memcpy(mask2, mask, B * S * sizeof *mask);
    }
    int64_t *cnt = xcalloc(B, sizeof *cnt), *cnt2 = xcalloc(B, sizeof *cnt2);
    int64_t *ids = xcalloc(N * T, sizeof *ids), *ids2 = xcalloc(N * T, sizeof *ids2);
    int64_t *len = xcalloc(N, sizeof *len), *len2 = xcalloc(N, sizeof *len2);
    int64_t *end = xcalloc(N, sizeof *end), *end2 = xcalloc(N, sizeof *end2);
    double *sc = xcalloc(N, sizeof *sc), *sc2 = xcalloc(N, sizeof *sc2);
    double *lp = xcalloc(N * T, sizeof *lp), *lp2 = xcalloc(N * T, sizeof *lp2);
    DT *work = xcalloc(DS(pt_beam_workspace)(&g, B, k, T, S), sizeof *work);
    int64_t *iwork = xcalloc(DS(pt_beam_iworkspace)(B, k, T), sizeof *iwork);
    double *dwork = xcalloc(DS(pt_beam_dworkspace)(B, k, T, 1), sizeof *dwork);
    int st = DS(pt_beam_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, k, kind, alpha,
                                cnt, ids, len, end, sc, lp, work, iwork, dwork);
    DS(reference)(&g, sk[1], sv[1], ck[1], cv[1], mask2, B, S, T, k, kind, alpha, cnt2, ids2,
                  len2, end2, sc2, lp2);
    int same = st == PT_OK, ends[2] = {0, 0};
    double worst = 0;
    long lmin = T, lmax = 0;
    for (long b = 0; b < B; b++) {
        same &= cnt[b] == cnt2[b] && cnt[b] >= 1;
        for (long i = 0; i < cnt[b] && i < cnt2[b]; i++) {
            long h = b * k + i;
            same &= len[h] == len2[h] && end[h] == end2[h];
            if (!same) break;
            ends[end[h]] = 1;
            lmin = len[h] < lmin ? len[h] : lmin;
            lmax = len[h] > lmax ? len[h] : lmax;
            double e = fabs(sc[h] - sc2[h]) / fmax(fabs(sc2[h]), 1e-300);
            worst = e > worst ? e : worst;
            for (long j = 0; j < len[h] + end[h]; j++) {
                same &= ids[h * T + j] == ids2[h * T + j];
                e = fabs(lp[h * T + j] - lp2[h * T + j]) / fmax(fabs(lp2[h * T + j]), 1e-300);
                worst = e > worst ? e : worst;
            }
        }
    }
    if (ends[0] && ends[1] && lmin < lmax) (*mixed)++;
    char name[160];
    snprintf(name, sizeof name, "%s beam %s %s%s%s B=%ld k=%ld %s eos%+.1f lengths %ld..%ld",
             sizeof(DT) == 4 ? "f32" : "f64", norm_first ? "pre" : "post",
             act == PT_ACT_RELU ? "relu" : "gelu", final ? " final" : "", masked ? " mask" : "",
             B, k, kind == PT_PENALTY_GNMT ? "gnmt" : "power", eos_shift, lmin, lmax);
    check(name, same && worst <= 1e-9);

    /* the caller's packed copies (packed_step 1 and gen_wp): no room for
     * packing needed, and the same search bit for bit */
    if (eos_shift == 0 && kind == PT_PENALTY_GNMT) {
        long per = DS(pt_decoder_pack_size)(layers);
        DS(pt_layer) players[TD_L];
        DT *wp = xcalloc(L * per + DS(pt_linear_pack_size)(V, E), sizeof *wp);
        DS(pt_decoder_pack)(players, wp, layers, L);
        DS(pt_linear_pack)(wp + L * per, g.gen_w, V, E);
        DS(pt_greedy) gp = g;
        gp.layers = players;
        gp.gen_wp = wp + L * per;
        int64_t small = DS(pt_beam_workspace)(&gp, B, k, T, S);
        DT *work2 = xcalloc(small, sizeof *work2);
        int64_t *cnt3 = xcalloc(B, sizeof *cnt3), *ids3 = xcalloc(N * T, sizeof *ids3);
        int64_t *len3 = xcalloc(N, sizeof *len3), *end3 = xcalloc(N, sizeof *end3);
        double *sc3 = xcalloc(N, sizeof *sc3), *lp3 = xcalloc(N * T, sizeof *lp3);
        st = DS(pt_beam_decode)(&gp, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, k, kind, alpha,
                                cnt3, ids3, len3, end3, sc3, lp3, work2, iwork, dwork);
        int eq = st == PT_OK && small < DS(pt_beam_workspace)(&g, B, k, T, S)
                 && !memcmp(cnt3, cnt, B * sizeof *cnt);
        for (long b = 0; eq && b < B; b++)
            for (long i = 0; i < cnt[b]; i++) {
                long h = b * k + i;
                eq &= len3[h] == len[h] && end3[h] == end[h] && sc3[h] == sc[h]
                      && !memcmp(ids3 + h * T, ids + h * T, (len[h] + end[h]) * sizeof *ids)
                      && !memcmp(lp3 + h * T, lp + h * T, (len[h] + end[h]) * sizeof *lp);
            }
        char pname[200];
        snprintf(pname, sizeof pname, "%s, the caller's packed copies", name);
        check(pname, eq);
        free(wp); free(work2); free(cnt3); free(ids3); free(len3); free(end3); free(sc3);
        free(lp3);
    }

    /* refusals: k 0, a negative or NaN alpha, an unknown penalty, a bos
     * outside the vocabulary, max_len 0 */
    if (eos_shift == 0 && B > 1 && k == 2 && kind == PT_PENALTY_GNMT) {
        int bad = 0;
        bad += DS(pt_beam_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, 0, kind,
                                  alpha, cnt, ids, len, end, sc, lp, work, iwork, dwork)
               == PT_EINVAL;
        bad += DS(pt_beam_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, k, kind, -1.0,
                                  cnt, ids, len, end, sc, lp, work, iwork, dwork) == PT_EINVAL;
        bad += DS(pt_beam_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, k, kind, NAN,
                                  cnt, ids, len, end, sc, lp, work, iwork, dwork) == PT_EINVAL;
        bad += DS(pt_beam_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, k, 7, alpha,
                                  cnt, ids, len, end, sc, lp, work, iwork, dwork) == PT_EINVAL;
        bad += DS(pt_beam_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, 0, k, kind, alpha,
                                  cnt, ids, len, end, sc, lp, work, iwork, dwork) == PT_EINVAL;
        g.bos = V;
        bad += DS(pt_beam_decode)(&g, sk[0], sv[0], ck[0], cv[0], mask, B, S, T, k, kind, alpha,
                                  cnt, ids, len, end, sc, lp, work, iwork, dwork) == PT_EINVAL;
        g.bos = 1;
        check(sizeof(DT) == 4 ? "f32 beam refuses k 0, alpha < 0 or NaN, a bad kind, ..."
                              : "f64 beam refuses k 0, alpha < 0 or NaN, a bad kind, ...",
              bad == 6);
    }

    for (long l = 0; l < L; l++)
        for (int c = 0; c < 2; c++) {
            free(sk[c][l]); free(sv[c][l]); free(ck[c][l]); free(cv[c][l]);
        }
    for (int i = 0; i < nk; i++) free(keep[i]);
    free(mask); free(mask2); free(cnt); free(cnt2); free(ids); free(ids2); free(len);
    free(len2); free(end); free(end2); free(sc); free(sc2); free(lp); free(lp2);
    free(work); free(iwork); free(dwork);
}

static void DS(run)(void)
{
    int mixed = 0;
    const double shifts[] = {-1.0, 0.0, 1.5};
    for (int cfg = 0; cfg < 8; cfg++)
        for (int s = 0; s < 3; s++)
            for (long k = 1; k <= 4; k++)
                DS(test_beam)(cfg & 1, cfg & 2 ? PT_ACT_GELU_ERF : PT_ACT_RELU, !(cfg & 4),
                              cfg % 3 != 0, shifts[s], cfg == 5 ? 1 : 5, k,
                              (cfg + s + (int)k) % 2 ? PT_PENALTY_POWER : PT_PENALTY_GNMT,
                              &mixed);
    check(sizeof(DT) == 4 ? "f32 some searches had hypotheses ending with EOS and at max_len"
                          : "f64 some searches had hypotheses ending with EOS and at max_len",
          mixed >= 3);
}

#endif
