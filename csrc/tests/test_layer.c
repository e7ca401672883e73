/*
 * test_layer.c -- the whole-layer kernels (layer_encoder.c, layer_decoder.c,
 * attention_decode.c) against a naive double-precision Transformer written
 * out loop by loop below, in float32 and float64: encoder stacks (post- and
 * pre-norm, ReLU and GELU, with and without biases, key masks, attention
 * masks, both, causal; packed variable-length sequences), and decoder
 * stacks stepped position by position against the full causal forward of
 * the prefix. Exit status 1 on failure.
 *
 *     make -C csrc test
 */
#ifndef LT          /* the file includes itself once per dtype */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"

#define PT_TEST_SEED 0x9E3779B97F4A7C15ULL
#include "pt_test.h"
static double *rnd(long n, double scale)
{
    double *v = xcalloc(n, sizeof *v);
    for (long i = 0; i < n; i++) v[i] = urand() * scale;
    return v;
}
static void check(const char *name, double maxdiff, double tol)
{
    int ok = maxdiff <= tol;
    printf("%-58s max|diff| = %.3e  %s\n", name, maxdiff, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

/* ---------------------------------------------------- the naive reference */
typedef struct {
    long E, H, F;
    int norm_first, act, bias;
    double *sa_w, *sa_b, *sa_ow, *sa_ob, *ca_w, *ca_b, *ca_ow, *ca_ob;
    double *ff1_w, *ff1_b, *ff2_w, *ff2_b, *nw[3], *nb[3];
    double eps[3];
} RLayer;

static RLayer rlayer(long E, long H, long F, int norm_first, int act, int bias)
{
    RLayer L;
    memset(&L, 0, sizeof L);
    L.E = E; L.H = H; L.F = F; L.norm_first = norm_first; L.act = act; L.bias = bias;
    double s = 1.0 / sqrt((double)E), sf = 1.0 / sqrt((double)F);
    L.sa_w = rnd(3 * E * E, s); L.sa_ow = rnd(E * E, s);
    L.ca_w = rnd(3 * E * E, s); L.ca_ow = rnd(E * E, s);
    L.ff1_w = rnd(F * E, s); L.ff2_w = rnd(E * F, sf);
    if (bias) {
        L.sa_b = rnd(3 * E, 0.2); L.sa_ob = rnd(E, 0.2); L.ca_b = rnd(3 * E, 0.2);
        L.ca_ob = rnd(E, 0.2); L.ff1_b = rnd(F, 0.2); L.ff2_b = rnd(E, 0.2);
    }
    for (int i = 0; i < 3; i++) {
        L.nw[i] = rnd(E, 0.3);
        for (long c = 0; c < E; c++) L.nw[i][c] += 1;
        L.nb[i] = bias ? rnd(E, 0.2) : NULL;
        L.eps[i] = 1e-5;
    }
    return L;
}
static void rlayer_free(RLayer *L)
{
    double *p[] = {L->sa_w, L->sa_b, L->sa_ow, L->sa_ob, L->ca_w, L->ca_b, L->ca_ow, L->ca_ob,
                   L->ff1_w, L->ff1_b, L->ff2_w, L->ff2_b, L->nw[0], L->nw[1], L->nw[2],
                   L->nb[0], L->nb[1], L->nb[2]};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
}

/* y (N, OUT) = x W^T + b, W rows (OUT, IN) starting at row r0 */
static void r_linear(double *y, const double *x, const double *W, const double *b, long r0,
                     long N, long IN, long OUT)
{
    for (long n = 0; n < N; n++)
        for (long o = 0; o < OUT; o++) {
            double s = b ? b[r0 + o] : 0;
            for (long i = 0; i < IN; i++) s += x[n * IN + i] * W[(r0 + o) * IN + i];
            y[n * OUT + o] = s;
        }
}
static void r_norm(double *x, const double *w, const double *b, double eps, long N, long C)
{
    for (long n = 0; n < N; n++) {
        double *r = x + n * C, m = 0, v = 0;
        for (long c = 0; c < C; c++) m += r[c];
        m /= C;
        for (long c = 0; c < C; c++) v += (r[c] - m) * (r[c] - m);
        double rs = 1.0 / sqrt(v / C + eps);
        for (long c = 0; c < C; c++) r[c] = (r[c] - m) * rs * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
}
static void r_act(double *x, long n, int kind)
{
    for (long i = 0; i < n; i++)
        x[i] = kind == PT_ACT_RELU ? (x[i] > 0 ? x[i] : 0)
             : 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
}
/* Multi-head attention of xq (Tq, E) over xkv (Tk, E) with in_proj W (3E, E)
 * and out_proj Wo: out (Tq, E). Query i sees key j when j < klen, not
 * (causal and j > i), plus mask[i*mi + j] (additive, or NULL). */
static void r_mha(double *out, const double *xq, const double *xkv, long Tq, long Tk,
                  const double *W, const double *b, const double *Wo, const double *bo,
                  long E, long H, long klen, int causal, const double *mask, long mi)
{
    long d = E / H;
    double *q = xcalloc(Tq * E, sizeof *q), *k = xcalloc(Tk * E, sizeof *k);
    double *v = xcalloc(Tk * E, sizeof *v), *a = xcalloc(Tq * E, sizeof *a);
    double *s = xcalloc(Tk, sizeof *s);
    r_linear(q, xq, W, b, 0, Tq, E, E);
    r_linear(k, xkv, W, b, E, Tk, E, E);
    r_linear(v, xkv, W, b, 2 * E, Tk, E, E);
    for (long h = 0; h < H; h++)
        for (long i = 0; i < Tq; i++) {
            double m = -INFINITY;
            for (long j = 0; j < Tk; j++) {
                double t = 0;
                for (long c = 0; c < d; c++) t += q[i * E + h * d + c] * k[j * E + h * d + c];
                t /= sqrt((double)d);
                if (mask) t += mask[i * mi + j];
                if (j >= klen || (causal && j > i)) t = -INFINITY;
                s[j] = t;
                m = t > m ? t : m;
            }
            if (m == -INFINITY) continue;
            double l = 0;
            for (long j = 0; j < Tk; j++) { s[j] = exp(s[j] - m); l += s[j]; }
            for (long c = 0; c < d; c++) {
                double t = 0;
                for (long j = 0; j < Tk; j++) t += s[j] * v[j * E + h * d + c];
                a[i * E + h * d + c] = t / l;
            }
        }
    r_linear(out, a, Wo, bo, 0, Tq, E, E);
    free(q); free(k); free(v); free(a); free(s);
}
/* x (T, E) += sublayer(x) with the layer's norm i in front or behind */
static void r_sublayer_norm(double *x, double *y, const RLayer *L, int i, long T, int pre)
{
    if (pre) {   /* y := norm_i(x) */
        memcpy(y, x, T * L->E * sizeof *y);
        r_norm(y, L->nw[i], L->nb[i], L->eps[i], T, L->E);
    }
}
static void r_residual(double *x, const double *y, const RLayer *L, int i, long T)
{
    for (long j = 0; j < T * L->E; j++) x[j] += y[j];
    if (!L->norm_first) r_norm(x, L->nw[i], L->nb[i], L->eps[i], T, L->E);
}
static void r_ff(double *out, const double *in, const RLayer *L, long T)
{
    double *h = xcalloc(T * L->F, sizeof *h);
    r_linear(h, in, L->ff1_w, L->ff1_b, 0, T, L->E, L->F);
    r_act(h, T * L->F, L->act);
    r_linear(out, h, L->ff2_w, L->ff2_b, 0, T, L->F, L->E);
    free(h);
}
/* One encoder layer on one sequence x (T, E). */
static void r_encoder_layer(double *x, const RLayer *L, long T, long klen, int causal,
                            const double *mask, long mi)
{
    long E = L->E;
    double *n = xcalloc(T * E, sizeof *n), *y = xcalloc(T * E, sizeof *y);
    const double *in = x;
    if (L->norm_first) { r_sublayer_norm(x, n, L, 0, T, 1); in = n; }
    r_mha(y, in, in, T, T, L->sa_w, L->sa_b, L->sa_ow, L->sa_ob, E, L->H, klen, causal, mask, mi);
    r_residual(x, y, L, 0, T);
    in = x;
    if (L->norm_first) { r_sublayer_norm(x, n, L, 1, T, 1); in = n; }
    r_ff(y, in, L, T);
    r_residual(x, y, L, 1, T);
    free(n); free(y);
}
/* One decoder layer on a prefix x (T, E), causal, over memory (S, E) of
 * which the first slen positions are visible (plus smask (S) additive). */
static void r_decoder_layer(double *x, const double *mem, const RLayer *L, long T, long S,
                            long slen, const double *smask)
{
    long E = L->E;
    double *n = xcalloc(T * E, sizeof *n), *y = xcalloc(T * E, sizeof *y);
    const double *in = x;
    if (L->norm_first) { r_sublayer_norm(x, n, L, 0, T, 1); in = n; }
    r_mha(y, in, in, T, T, L->sa_w, L->sa_b, L->sa_ow, L->sa_ob, E, L->H, T, 1, NULL, 0);
    r_residual(x, y, L, 0, T);
    in = x;
    if (L->norm_first) { r_sublayer_norm(x, n, L, 1, T, 1); in = n; }
    r_mha(y, in, mem, T, S, L->ca_w, L->ca_b, L->ca_ow, L->ca_ob, E, L->H, slen, 0, smask, 0);
    r_residual(x, y, L, 1, T);
    in = x;
    if (L->norm_first) { r_sublayer_norm(x, n, L, 2, T, 1); in = n; }
    r_ff(y, in, L, T);
    r_residual(x, y, L, 2, T);
    free(n); free(y);
}

#define LT float
#define LF(name) name##_f32
#define LNAME "f32"
#define LTOL 1e-5
#include "test_layer.c"
#undef LT
#undef LF
#undef LNAME
#undef LTOL
#define LT double
#define LF(name) name##_f64
#define LNAME "f64"
#define LTOL 1e-12
#include "test_layer.c"

int main(void)
{
    pt_isa_init();
    printf("whole-layer kernels: openmp=%d threads=%d isa=%s\n", pt_has_openmp(),
           pt_get_num_threads(), pt_isa_name(pt_isa_level()));
    for (int threads = 1; threads <= 2; threads++) {
        pt_set_num_threads(threads);
        printf("== %d thread(s)\n", threads);
        run_f32();
        run_f64();
    }
    printf("%s\n", failures ? "FAILED" : "all layer tests passed");
    return failures ? 1 : 0;
}

#else  /* LT: the typed body */

static LT *LF(cast)(const double *v, long n)
{
    if (!v) return NULL;
    LT *p = xcalloc(n, sizeof *p);
    for (long i = 0; i < n; i++) p[i] = (LT)v[i];
    return p;
}
static double LF(maxdiff)(const LT *a, const double *b, long n)
{
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return INFINITY;
        m = d > m ? d : m;
    }
    return m;
}
/* The typed pt_layer of a reference layer (arrays leak into `keep`). */
static LF(pt_layer) LF(typed)(const RLayer *R, LT **keep, int *nkeep)
{
    LF(pt_layer) L;
    memset(&L, 0, sizeof L);
    long E = R->E, F = R->F;
    L.E = E; L.H = R->H; L.F = F; L.norm_first = R->norm_first; L.act = R->act;
#define CAST(field, n) do { LT *p_ = LF(cast)(R->field, n); keep[(*nkeep)++] = p_; L.field = p_; } while (0)
    CAST(sa_w, 3 * E * E); CAST(sa_b, 3 * E); CAST(sa_ow, E * E); CAST(sa_ob, E);
    CAST(ca_w, 3 * E * E); CAST(ca_b, 3 * E); CAST(ca_ow, E * E); CAST(ca_ob, E);
    CAST(ff1_w, F * E); CAST(ff1_b, F); CAST(ff2_w, E * F); CAST(ff2_b, E);
    for (int i = 0; i < 3; i++) {
        LT *w_ = LF(cast)(R->nw[i], E), *b_ = LF(cast)(R->nb[i], E);
        keep[(*nkeep)++] = w_; keep[(*nkeep)++] = b_;
        L.norm_w[i] = w_; L.norm_b[i] = b_;
        L.norm_eps[i] = (LT)R->eps[i];
    }
#undef CAST
    return L;
}

/* masks: 0 none, 1 key, 2 attn, 3 both, 4 causal */
static void LF(test_encoder)(int norm_first, int act, int bias, int masks, int nlayers)
{
    const long E = 24, H = 3, F = 40, B = 3, T = 7;
    const long lens[3] = {7, 3, 5};
    RLayer R[2];
    LT *keep[80];
    int nkeep = 0;
    LF(pt_layer) L[2];
    for (int l = 0; l < nlayers; l++) {
        R[l] = rlayer(E, H, F, norm_first, act, bias);
        L[l] = LF(typed)(&R[l], keep, &nkeep);
    }
    double *fw = rnd(E, 0.3), *fb = rnd(E, 0.2);
    for (long c = 0; c < E; c++) fw[c] += 1;
    double *x = rnd(B * T * E, 1.0), *ref = xcalloc(B * T * E, sizeof *ref);
    double *kmask = xcalloc(B * T, sizeof *kmask), *amask = rnd(T * T, 1.0);
    for (long b = 0; b < B; b++)
        for (long t = lens[b]; t < T; t++) kmask[b * T + t] = -INFINITY;
    amask[1 * T + 0] = -INFINITY;
    int use_k = masks == 1 || masks == 3, use_a = masks == 2 || masks == 3, causal = masks == 4;
    memcpy(ref, x, B * T * E * sizeof *ref);
    for (long b = 0; b < B; b++) {
        for (int l = 0; l < nlayers; l++)
            r_encoder_layer(ref + b * T * E, &R[l], T, use_k ? lens[b] : T, causal,
                            use_a ? amask : NULL, T);
        r_norm(ref + b * T * E, fw, fb, 1e-5, T, E);
    }
    LT *xt = LF(cast)(x, B * T * E), *kt = LF(cast)(kmask, B * T), *at = LF(cast)(amask, T * T);
    LT *fwt = LF(cast)(fw, E), *fbt = LF(cast)(fb, E);
    int64_t ws = LF(pt_encoder_workspace)(&L[0], B * T, B, T, use_k && use_a);
    LT *work = xcalloc(ws, sizeof *work);
    int st = LF(pt_encoder_forward)(xt, work, L, nlayers, NULL, use_k ? kt : NULL,
                                    use_a ? at : NULL, B, T, causal, 1, fwt, fbt, (LT)1e-5);
    char name[128];
    snprintf(name, sizeof name, "encoder_%s pre=%d act=%d bias=%d masks=%d layers=%d", LNAME,
             norm_first, act, bias, masks, nlayers);
    check(name, st == PT_OK ? LF(maxdiff)(xt, ref, B * T * E) : INFINITY, LTOL);
    free(work);

    /* packed: the real rows of each sequence only; the reference runs each
     * sequence at its own length (masks 0 and 2, 4 index within it) */
    if (masks != 1 && masks != 3) {
        int64_t off[4] = {0};
        for (long b = 0; b < B; b++) off[b + 1] = off[b] + lens[b];
        long N = off[B];
        LT *xp = xcalloc(N * E, sizeof *xp);
        double *rp = xcalloc(N * E, sizeof *rp);
        for (long b = 0; b < B; b++)
            for (long t = 0; t < lens[b]; t++)
                for (long c = 0; c < E; c++) {
                    xp[(off[b] + t) * E + c] = (LT)x[(b * T + t) * E + c];
                    rp[(off[b] + t) * E + c] = x[(b * T + t) * E + c];
                }
        for (long b = 0; b < B; b++) {
            for (int l = 0; l < nlayers; l++)
                r_encoder_layer(rp + off[b] * E, &R[l], lens[b], lens[b], causal,
                                use_a ? amask : NULL, T);
            r_norm(rp + off[b] * E, fw, fb, 1e-5, lens[b], E);
        }
        work = xcalloc(LF(pt_encoder_workspace)(&L[0], N, B, T, 0), sizeof *work);
        st = LF(pt_encoder_forward)(xp, work, L, nlayers, off, NULL, use_a ? at : NULL, B, T,
                                    causal, 1, fwt, fbt, (LT)1e-5);
        snprintf(name, sizeof name, "encoder_%s packed pre=%d act=%d bias=%d masks=%d",
                 LNAME, norm_first, act, bias, masks);
        check(name, st == PT_OK ? LF(maxdiff)(xp, rp, N * E) : INFINITY, LTOL);
        free(work); free(xp); free(rp);
    }
    /* the projections over packed copies of the weights (pt_linear_pack),
     * padded and, with the masks it takes, packed: to rounding against the
     * reference, and the same bits on 1 thread as on the run's threads
     * (more than one: the stack as one team, layer_encoder.c) */
    LF(pt_layer) P[2];
    for (int l = 0; l < nlayers; l++) {
        P[l] = L[l];
        const LT *w[4] = {L[l].sa_w, L[l].sa_ow, L[l].ff1_w, L[l].ff2_w};
        const long out[4] = {3 * E, E, F, E}, in[4] = {E, E, E, F};
        LT *wp[4];
        for (int i = 0; i < 4; i++) {
            wp[i] = xcalloc(LF(pt_linear_pack_size)(out[i], in[i]), sizeof(LT));
            LF(pt_linear_pack)(wp[i], w[i], out[i], in[i]);
            keep[nkeep++] = wp[i];
        }
        P[l].sa_wp = wp[0]; P[l].sa_owp = wp[1]; P[l].ff1_wp = wp[2]; P[l].ff2_wp = wp[3];
    }
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 1 && (masks == 1 || masks == 3)) break;
        int64_t off[4] = {0};
        for (long b = 0; b < B; b++) off[b + 1] = off[b] + lens[b];
        long N = mode ? off[B] : B * T;
        LT *xs[2];
        double *rp = xcalloc(N * E, sizeof *rp);
        for (int run = 0; run < 2; run++) {
            xs[run] = xcalloc(N * E, sizeof(LT));
            for (long b = 0; b < B; b++)
                for (long t = 0; t < (mode ? lens[b] : T); t++)
                    for (long c = 0; c < E; c++) {
                        long r = mode ? off[b] + t : b * T + t;
                        xs[run][r * E + c] = (LT)x[(b * T + t) * E + c];
                        rp[r * E + c] = mode ? 0 : ref[(b * T + t) * E + c];
                    }
        }
        if (mode)
            for (long b = 0; b < B; b++) {
                for (long t = 0; t < lens[b]; t++)
                    for (long c = 0; c < E; c++)
                        rp[(off[b] + t) * E + c] = x[(b * T + t) * E + c];
                for (int l = 0; l < nlayers; l++)
                    r_encoder_layer(rp + off[b] * E, &R[l], lens[b], lens[b], causal,
                                    use_a ? amask : NULL, T);
                r_norm(rp + off[b] * E, fw, fb, 1e-5, lens[b], E);
            }
        int nth = pt_get_num_threads(), sts[2];
        work = xcalloc(LF(pt_encoder_workspace)(&P[0], N, B, T, !mode && use_k && use_a),
                       sizeof *work);
        for (int run = 0; run < 2; run++) {
            pt_set_num_threads(run ? nth : 1);
            sts[run] = LF(pt_encoder_forward)(xs[run], work, P, nlayers, mode ? off : NULL,
                                              !mode && use_k ? kt : NULL, use_a ? at : NULL, B,
                                              T, causal, 1, fwt, fbt, (LT)1e-5);
        }
        pt_set_num_threads(nth);
        snprintf(name, sizeof name, "encoder_%s %s weights packed pre=%d act=%d bias=%d "
                 "masks=%d", LNAME, mode ? "packed" : "padded", norm_first, act, bias, masks);
        check(name, sts[1] == PT_OK ? LF(maxdiff)(xs[1], rp, N * E) : INFINITY, LTOL);
        check("  the same bits on 1 thread",
              sts[0] == PT_OK && !memcmp(xs[0], xs[1], N * E * sizeof(LT)) ? 0 : 1, 0);
        free(work); free(xs[0]); free(xs[1]); free(rp);
    }
    for (int i = 0; i < nkeep; i++) free(keep[i]);
    for (int l = 0; l < nlayers; l++) rlayer_free(&R[l]);
    free(fw); free(fb); free(x); free(ref); free(kmask); free(amask);
    free(xt); free(kt); free(at); free(fwt); free(fbt);
}

/* Decoder stack of 2 layers, B = 2, stepped t = 0..T-1 against the full
 * causal forward; memory masked by lengths (src_len) or an additive mask. */
static void LF(test_decoder)(int norm_first, int act, int bias, int use_len)
{
    enum { NL = 2 };
    const long E = 16, H = 2, F = 24, B = 2, S = 5, T = 6, cap = 7, d = 8;
    const int64_t slen[2] = {5, 3};
    RLayer R[NL];
    LT *keep[64];
    int nkeep = 0;
    LF(pt_layer) L[NL];
    for (int l = 0; l < NL; l++) {
        R[l] = rlayer(E, H, F, norm_first, act, bias);
        L[l] = LF(typed)(&R[l], keep, &nkeep);
    }
    double *fw = rnd(E, 0.3), *fb = rnd(E, 0.2);
    for (long c = 0; c < E; c++) fw[c] += 1;
    double *mem = rnd(B * S * E, 1.0), *x = rnd(B * T * E, 1.0);
    double *smask = xcalloc(B * S, sizeof *smask);
    for (long b = 0; b < B; b++)
        for (long j = slen[b]; j < S; j++) smask[b * S + j] = -INFINITY;
    smask[1] = 0.5;
    LT *memt = LF(cast)(mem, B * S * E), *smt = LF(cast)(smask, B * S);
    LT *fwt = LF(cast)(fw, E), *fbt = LF(cast)(fb, E);
    LT *sk[NL], *sv[NL], *ck[NL], *cv[NL];
    for (int l = 0; l < NL; l++) {
        sk[l] = xcalloc(B * H * cap * d, sizeof(LT)); sv[l] = xcalloc(B * H * cap * d, sizeof(LT));
        ck[l] = xcalloc(B * H * S * d, sizeof(LT)); cv[l] = xcalloc(B * H * S * d, sizeof(LT));
    }
    LT *work = xcalloc(LF(pt_decoder_cross_kv_workspace)(&L[0], B, S), sizeof *work);
    int st = LF(pt_decoder_cross_kv)(ck, cv, work, L, NL, memt, B, S);
    free(work);
    work = xcalloc(LF(pt_decoder_step_workspace)(&L[0], B, cap, S), sizeof *work);
    double worst = st == PT_OK ? 0 : INFINITY;
    LT *xs = xcalloc(B * E, sizeof *xs);
    double *pre = xcalloc(T * E, sizeof *pre);
    for (long t = 0; t < T && worst < INFINITY; t++) {
        for (long b = 0; b < B; b++)
            for (long c = 0; c < E; c++) xs[b * E + c] = (LT)x[(b * T + t) * E + c];
        st = LF(pt_decoder_step)(xs, sk, sv, work, L, NL, (const LT *const *)ck,
                                 (const LT *const *)cv, use_len ? NULL : smt,
                                 use_len ? slen : NULL, NULL, B, t, cap, S, 1, fwt, fbt,
                                 (LT)1e-5);
        if (st != PT_OK) { worst = INFINITY; break; }
        for (long b = 0; b < B; b++) {   /* the reference: the whole prefix 0..t */
            memcpy(pre, x + b * T * E, (t + 1) * E * sizeof *pre);
            for (int l = 0; l < NL; l++)
                r_decoder_layer(pre, mem + b * S * E, &R[l], t + 1, S, use_len ? slen[b] : S,
                                use_len ? NULL : smask + b * S);
            r_norm(pre, fw, fb, 1e-5, t + 1, E);
            double m = LF(maxdiff)(xs + b * E, pre + t * E, E);
            worst = m > worst ? m : worst;
        }
    }
    char name[128];
    snprintf(name, sizeof name, "decoder_step_%s pre=%d act=%d bias=%d src_len=%d", LNAME,
             norm_first, act, bias, use_len);
    check(name, worst, LTOL);
    check(use_len ? "decoder_step t == capacity refused" : "decoder_step t < 0 refused",
          LF(pt_decoder_step)(xs, sk, sv, work, L, NL, (const LT *const *)ck,
                              (const LT *const *)cv, NULL, NULL, NULL, B, use_len ? cap : -1, cap,
                              S, 0, NULL, NULL, 0) == PT_EINVAL ? 0 : 1, 0);
    for (int l = 0; l < NL; l++) { free(sk[l]); free(sv[l]); free(ck[l]); free(cv[l]); }
    for (int i = 0; i < nkeep; i++) free(keep[i]);
    for (int l = 0; l < NL; l++) rlayer_free(&R[l]);
    free(work); free(xs); free(pre); free(fw); free(fb); free(mem); free(x); free(smask);
    free(memt); free(smt); free(fwt); free(fbt);
}

static void LF(run)(void)
{
    for (int pre = 0; pre < 2; pre++)
        for (int a = 0; a < 2; a++)
            for (int bias = 0; bias < 2; bias++) {
                int act = a ? PT_ACT_GELU_ERF : PT_ACT_RELU;
                for (int masks = 0; masks < 5; masks++)
                    LF(test_encoder)(pre, act, bias, masks, masks == 3 ? 2 : 1);
                LF(test_decoder)(pre, act, bias, bias);
            }
}

#endif
