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

int main(void)
{
    printf("pytransformer C core: openmp=%d threads=%d blas=%d\n",
           pt_has_openmp(), pt_get_num_threads(), pt_blas_available());
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            test_gemm(ta, tb);
    test_layernorm();
    printf("%s\n", failures ? "FAILED" : "all C tests passed");
    return failures ? 1 : 0;
}
