/*
 * test_core.c -- the C core without Python (after llama2.c's test.c and
 * llm.c's test_gpt2.c): each kernel against a naive C reference, in float32
 * and float64, with the max difference printed. Exit status 1 on failure.
 *
 *     make -C csrc test
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"

static int failures = 0;

/* Print the max abs difference of a against b; fail above tol. */
static void check_tensor(const char *name, const double *a, const double *b, long n, double tol)
{
    double maxdiff = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > maxdiff || d != d) maxdiff = d != d ? INFINITY : d;
    }
    int ok = maxdiff <= tol;
    printf("%-40s max|diff| = %.3e  %s\n", name, maxdiff, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

static void check_status(const char *name, int got, int want)
{
    int ok = got == want;
    printf("%-40s status %d (%s)  %s\n", name, got, pt_strerror(got), ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

/* Deterministic pseudo-random numbers in [-1, 1). */
static unsigned long long rng_state = 88172645463325252ULL;
static double urand(void)
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static double *rand_vec(long n) { double *v = malloc(n * sizeof *v); for (long i = 0; i < n; i++) v[i] = urand(); return v; }
static float *to_f32(const double *v, long n) { float *f = malloc(n * sizeof *f); for (long i = 0; i < n; i++) f[i] = (float)v[i]; return f; }
static double *from_f32(const float *f, long n) { double *v = malloc(n * sizeof *v); for (long i = 0; i < n; i++) v[i] = f[i]; return v; }

/* ------------------------------------------------------------------ gemm */
static void test_gemm(int ta, int tb)
{
    const long M = 37, N = 45, K = 29;
    double *A = rand_vec(M * K), *B = rand_vec(K * N), *C = calloc(M * N, sizeof(double));
    double *ref = calloc(M * N, sizeof(double));
    for (long i = 0; i < M; i++)
        for (long j = 0; j < N; j++) {
            double s = 0;
            for (long p = 0; p < K; p++)
                s += (ta ? A[p * M + i] : A[i * K + p]) * (tb ? B[j * K + p] : B[p * N + j]);
            ref[i * N + j] = s;
        }
    char name[64];
    snprintf(name, sizeof name, "gemm_fallback_f64 ta=%d tb=%d", ta, tb);
    check_status(name, pt_gemm_fallback_f64(ta, tb, M, N, K, 1.0, A, ta ? M : K, B, tb ? K : N,
                                            0.0, C, N), PT_OK);
    check_tensor(name, C, ref, M * N, 1e-12);
    float *Af = to_f32(A, M * K), *Bf = to_f32(B, K * N), *Cf = calloc(M * N, sizeof(float));
    snprintf(name, sizeof name, "gemm_f32 ta=%d tb=%d", ta, tb);
    check_status(name, pt_gemm_f32(ta, tb, M, N, K, 1.0f, Af, ta ? M : K, Bf, tb ? K : N,
                                   0.0f, Cf, N), PT_OK);
    double *Cd = from_f32(Cf, M * N);
    check_tensor(name, Cd, ref, M * N, 1e-5);
    free(A); free(B); free(C); free(ref); free(Af); free(Bf); free(Cf); free(Cd);
}

/* ------------------------------------------------------------- layernorm */
static void test_layernorm(void)
{
    const long N = 13, C = 67;
    double *x = rand_vec(N * C), *w = rand_vec(C), *b = rand_vec(C);
    for (long i = 0; i < N * C; i++) x[i] += 1e4;          /* large mean */
    double *y = malloc(N * C * sizeof(double)), *ref = malloc(N * C * sizeof(double));
    double mean[13], rstd[13];
    for (long n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (long c = 0; c < C; c++) m += x[n * C + c];
        m /= C;
        for (long c = 0; c < C; c++) v += (x[n * C + c] - m) * (x[n * C + c] - m);
        v /= C;
        for (long c = 0; c < C; c++)
            ref[n * C + c] = (x[n * C + c] - m) / sqrt(v + 1e-5) * w[c] + b[c];
    }
    check_status("layernorm_forward_f64", pt_layernorm_forward_f64(y, mean, rstd, x, w, b, N, C, 1e-5), PT_OK);
    check_tensor("layernorm_forward_f64 (mean 1e4)", y, ref, N * C, 1e-9);
    float *xf = to_f32(x, N * C), *wf = to_f32(w, C), *bf = to_f32(b, C), *yf = malloc(N * C * sizeof(float));
    float meanf[13], rstdf[13];
    check_status("layernorm_forward_f32", pt_layernorm_forward_f32(yf, meanf, rstdf, xf, wf, bf, N, C, 1e-5f), PT_OK);
    double *yd = from_f32(yf, N * C);
    check_tensor("layernorm_forward_f32 (mean 1e4)", yd, ref, N * C, 5e-3);
    check_status("layernorm_forward_f64 N<0", pt_layernorm_forward_f64(y, mean, rstd, x, w, b, -1, C, 1e-5), PT_EINVAL);
    free(x); free(w); free(b); free(y); free(ref); free(xf); free(wf); free(bf); free(yf); free(yd);
}


/* --------------------------------------------------------------- softmax */
static void test_softmax(void)
{
    const long N = 7, C = 45;
    double *x = rand_vec(N * C), *y = malloc(N * C * sizeof(double)), *ref = malloc(N * C * sizeof(double));
    for (long i = 0; i < N * C; i++) x[i] *= 1e4;             /* huge logits */
    for (long c = 0; c < C; c++) x[3 * C + c] = -INFINITY;    /* a fully masked row */
    x[5 * C + 2] = -INFINITY;
    for (long n = 0; n < N; n++) {
        double m = -INFINITY, s = 0;
        for (long c = 0; c < C; c++) m = x[n * C + c] > m ? x[n * C + c] : m;
        for (long c = 0; c < C; c++) s += m == -INFINITY ? 0 : exp(x[n * C + c] - m);
        for (long c = 0; c < C; c++) ref[n * C + c] = s == 0 ? 0 : exp(x[n * C + c] - m) / s;
    }
    check_status("softmax_forward_f64", pt_softmax_forward_f64(y, x, N, C, 0), PT_OK);
    check_tensor("softmax_forward_f64 (1e4 logits, -inf)", y, ref, N * C, 1e-12);
    float *xf = to_f32(x, N * C), *yf = malloc(N * C * sizeof(float));
    check_status("softmax_forward_f32", pt_softmax_forward_f32(yf, xf, N, C, 0), PT_OK);
    double *yd = from_f32(yf, N * C);
    check_tensor("softmax_forward_f32 (1e4 logits, -inf)", yd, ref, N * C, 1e-6);
    free(x); free(y); free(ref); free(xf); free(yf); free(yd);
}

static void test_cross_entropy(void)
{
    const long N = 6, C = 11;
    double *x = rand_vec(N * C), loss[6], lse[6], ref[6];
    int64_t t[6] = {0, 10, 3, -100, 5, 5};
    const double ls = 0.1;
    for (long n = 0; n < N; n++) {
        double m = -INFINITY, s = 0, sum_logp = 0;
        for (long c = 0; c < C; c++) m = x[n * C + c] > m ? x[n * C + c] : m;
        for (long c = 0; c < C; c++) s += exp(x[n * C + c] - m);
        double l = m + log(s);
        for (long c = 0; c < C; c++) sum_logp += x[n * C + c] - l;
        ref[n] = t[n] == -100 ? 0 : -(1 - ls) * (x[n * C + t[n]] - l) - ls / C * sum_logp;
    }
    check_status("cross_entropy_forward_f64",
                 pt_cross_entropy_forward_f64(loss, lse, x, t, N, C, -100, ls), PT_OK);
    check_tensor("cross_entropy_forward_f64 (ls=0.1, ignore)", loss, ref, N, 1e-12);
    t[1] = 11;
    check_status("cross_entropy_forward_f64 bad target",
                 pt_cross_entropy_forward_f64(loss, lse, x, t, N, C, -100, ls), PT_EINVAL);
    free(x);
}

/* ------------------------------------------------------------- attention */
static void naive_attention(double *out, const double *q, const double *k, const double *v,
                            long T, long D, int causal)
{
    double *s = malloc(T * sizeof(double));
    for (long i = 0; i < T; i++) {
        double m = -INFINITY, z = 0;
        for (long j = 0; j < T; j++) {
            double d = 0;
            for (long c = 0; c < D; c++) d += q[i * D + c] * k[j * D + c];
            s[j] = causal && j > i ? -INFINITY : d / sqrt((double)D);
            m = s[j] > m ? s[j] : m;
        }
        for (long j = 0; j < T; j++) { s[j] = exp(s[j] - m); z += s[j]; }
        for (long c = 0; c < D; c++) {
            double acc = 0;
            for (long j = 0; j < T; j++) acc += s[j] / z * v[j * D + c];
            out[i * D + c] = acc;
        }
    }
    free(s);
}

static void test_attention(int causal)
{
    const long B = 2, H = 3, T = 150, D = 17;       /* T past one key tile */
    const long n = B * H * T * D;
    double *q = rand_vec(n), *k = rand_vec(n), *v = rand_vec(n);
    double *out = malloc(n * sizeof(double)), *ref = malloc(n * sizeof(double));
    double *lse = malloc(B * H * T * sizeof(double));
    for (long bh = 0; bh < B * H; bh++)
        naive_attention(ref + bh * T * D, q + bh * T * D, k + bh * T * D, v + bh * T * D, T, D, causal);
    char name[64];
    snprintf(name, sizeof name, "attention_forward_f64 causal=%d", causal);
    check_status(name, pt_attention_forward_f64(out, lse, NULL, q, k, v, NULL, NULL,
                                                B, H, T, T, D, D, causal, 1.0 / sqrt((double)D)), PT_OK);
    check_tensor(name, out, ref, n, 1e-12);
    float *qf = to_f32(q, n), *kf = to_f32(k, n), *vf = to_f32(v, n), *of = malloc(n * sizeof(float));
    snprintf(name, sizeof name, "attention_forward_f32 causal=%d", causal);
    check_status(name, pt_attention_forward_f32(of, NULL, NULL, qf, kf, vf, NULL, NULL,
                                                B, H, T, T, D, D, causal, 1.0f / sqrtf((float)D)), PT_OK);
    double *od = from_f32(of, n);
    check_tensor(name, od, ref, n, 1e-5);
    free(q); free(k); free(v); free(out); free(ref); free(lse); free(qf); free(kf); free(vf); free(of); free(od);
}

/* ------------------------------------------------ embedding and AdamW */
static void test_embedding(void)
{
    const long V = 9, C = 5, N = 4;
    double *table = rand_vec(V * C), y[20], dtable[45] = {0}, dy[20];
    int64_t ids[4] = {3, 0, 3, 8};
    for (long i = 0; i < N * C; i++) dy[i] = 1.0;
    check_status("embedding_forward_f64", pt_embedding_forward_f64(y, ids, table, N, V, C), PT_OK);
    double ref[20];
    for (long i = 0; i < N; i++) memcpy(ref + i * C, table + ids[i] * C, C * sizeof(double));
    check_tensor("embedding_forward_f64", y, ref, N * C, 0);
    check_status("embedding_backward_f64", pt_embedding_backward_f64(dtable, dy, ids, N, V, C), PT_OK);
    double row3 = dtable[3 * C], row1 = dtable[1 * C];
    check_tensor("embedding_backward_f64 repeated id sums", &row3, &(double){2.0}, 1, 0);
    check_tensor("embedding_backward_f64 unused row", &row1, &(double){0.0}, 1, 0);
    ids[2] = 9;
    check_status("embedding_forward_f64 id out of range", pt_embedding_forward_f64(y, ids, table, N, V, C), PT_EINVAL);
    free(table);
}

static void test_adamw(void)
{
    double p[3] = {1.0, -2.0, 0.5}, g[3] = {0.1, -0.3, 0.0}, m[3] = {0}, v[3] = {0}, ref[3];
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    for (int i = 0; i < 3; i++) {            /* first step: mhat = g, vhat = g^2 */
        double pp = p[i] * (1 - lr * wd);
        ref[i] = pp - lr * g[i] / (fabs(g[i]) + eps);
    }
    check_status("adamw_step_f64", pt_adamw_step_f64(p, m, v, g, 3, lr, b1, b2, eps, wd, 1), PT_OK);
    check_tensor("adamw_step_f64 first step", p, ref, 3, 1e-12);
}

/* --------------------------------------------------- linear, activation */
static void test_linear_gelu(void)
{
    const long N = 5, IN = 13, OUT = 7;
    double *x = rand_vec(N * IN), *w = rand_vec(OUT * IN), *b = rand_vec(OUT);
    double y[35], ref[35], g[35], gref[35];
    for (long n = 0; n < N; n++)
        for (long o = 0; o < OUT; o++) {
            double s = b[o];
            for (long i = 0; i < IN; i++) s += x[n * IN + i] * w[o * IN + i];
            ref[n * OUT + o] = s;
            gref[n * OUT + o] = 0.5 * s * (1 + erf(s / sqrt(2.0)));
        }
    check_status("linear_forward_f64", pt_linear_forward_f64(y, x, w, b, N, IN, OUT), PT_OK);
    check_tensor("linear_forward_f64", y, ref, N * OUT, 1e-12);
    check_status("bias_act_forward_f64 gelu", pt_bias_act_forward_f64(g, y, NULL, N, OUT, PT_ACT_GELU_ERF), PT_OK);
    check_tensor("bias_act_forward_f64 gelu(erf)", g, gref, N * OUT, 1e-12);
    free(x); free(w); free(b);
}

/* --------------------------------------------------------------- dropout */
static void test_dropout(void)
{
    enum { n = 100000 };
    static uint8_t a[n], b[n];
    check_status("dropout_mask", pt_dropout_mask(a, n, 0.25, 42), PT_OK);
    pt_dropout_mask(b, n, 0.25, 42);
    double same = memcmp(a, b, n) == 0, kept = 0;
    for (long i = 0; i < n; i++) kept += a[i];
    check_tensor("dropout_mask same seed, same mask", &same, &(double){1.0}, 1, 0);
    double frac = kept / n;        /* 1 - p within ~5 standard deviations */
    check_tensor("dropout_mask keep fraction vs 0.75", &frac, &(double){0.75}, 1, 0.007);
    double x[4] = {1, 2, 3, 4}, y[4], ref[4];
    uint8_t keep[4] = {1, 0, 1, 1};
    for (int i = 0; i < 4; i++) ref[i] = keep[i] ? x[i] / 0.75 : 0;
    check_status("dropout_apply_f64", pt_dropout_apply_f64(y, x, keep, 4, 0.25), PT_OK);
    check_tensor("dropout_apply_f64 (x * keep / (1 - p))", y, ref, 4, 1e-15);
}

int main(void)
{
    printf("pytransformer C core: openmp=%d threads=%d blas=%d\n",
           pt_has_openmp(), pt_get_num_threads(), pt_blas_available());
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            test_gemm(ta, tb);
    test_layernorm();
    test_softmax();
    test_cross_entropy();
    test_attention(0);
    test_attention(1);
    test_embedding();
    test_adamw();
    test_linear_gelu();
    test_dropout();
    printf("%s\n", failures ? "FAILED" : "all C tests passed");
    return failures ? 1 : 0;
}
