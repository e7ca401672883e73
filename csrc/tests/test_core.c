/*
 * test_core.c -- the C core without Python (after llama2.c's test.c and
 * llm.c's test_gpt2.c): each kernel against a naive C reference, in float32
 * and float64, with the max difference printed. Exit status 1 on failure.
 * Then an edge sweep (end of file): every kernel, forward and backward, on
 * awkward shapes, for the sanitizers (make -C csrc sanitize) and valgrind.
 * Everything runs once per ISA level this CPU runs (portable, avx2,
 * avx512: PT_ISA set in turn, then pt_isa_init), or at the one level
 * PT_ISA names when it is set.
 *
 *     make -C csrc test
 */
#ifndef SWEEP_T     /* the file includes itself once per dtype for the sweep */
#define _POSIX_C_SOURCE 200112L   /* setenv under -std=c99 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"

#include "pt_test.h"

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
    check_status("embedding_backward_f64", pt_embedding_backward_f64(dtable, dy, ids, N, V, C, 1), PT_OK);
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

/* ----------------------------------------------------------- edge sweep
 * Every kernel on shapes around its tile, vector and threading edges
 * (including 0 and 1), forward and backward, with and without the optional
 * arguments, on buffers malloc'ed to their exact size so that AddressSanitizer
 * sees one element past the end. Outputs a kernel must write in full are
 * filled with NaN first and then checked for NaN (every input is finite or
 * -inf, which gives no NaN): an element left unwritten fails. Run without
 * and with a naive column-major "BLAS" (pt_set_blas), which sends pt_gemm and
 * linear's few-row transposed product through their BLAS branches. The
 * typed body is below, included once per dtype. */
static long sweep_nan = 0;       /* NaN elements seen by the sweep's checks */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { printf("out of memory\n"); exit(2); }
    return p;
}

#define SWEEP_OK(call) check_sweep_status(#call, __LINE__, (call))
static void check_sweep_status(const char *call, int line, int st)
{
    if (st == PT_OK) return;
    printf("sweep line %d: status %d from %.60s  FAIL\n", line, st, call);
    failures++;
}

/* Naive column-major sgemm/dgemm with the Fortran signature, leading
 * dimensions honoured (beta == 0: C not read). */
#define NAIVE_GEMM(NAME, T)                                                              \
    static void NAME(char *ta, char *tb, int *m, int *n, int *k, T *al, T *a, int *lda,  \
                     T *b, int *ldb, T *be, T *c, int *ldc)                             \
    {                                                                                    \
        for (int j = 0; j < *n; j++)                                                     \
            for (int i = 0; i < *m; i++) {                                               \
                double acc = 0;                                                          \
                for (int l = 0; l < *k; l++)                                             \
                    acc += (double)(*ta == 'N' ? a[i + l * *lda] : a[l + i * *lda]) *    \
                           (*tb == 'N' ? b[l + j * *ldb] : b[j + l * *ldb]);             \
                T *cc = c + i + j * *ldc;                                                \
                *cc = (T)(*al * acc + (*be == 0 ? 0 : *be * *cc));                       \
            }                                                                            \
    }
NAIVE_GEMM(naive_sgemm, float)
NAIVE_GEMM(naive_dgemm, double)

#define SWEEP_T float
#define SW(name) name##_f32
#include "test_core.c"
#undef SWEEP_T
#undef SW
#define SWEEP_T double
#define SW(name) name##_f64
#include "test_core.c"
#undef SWEEP_T
#undef SW

static void test_sweep(void)
{
    for (int blas = 0; blas < 2; blas++) {
        pt_set_blas(blas ? naive_sgemm : NULL, blas ? naive_dgemm : NULL);
        int before = failures;
        sweep_nan = 0;
        sweep_f32();
        sweep_f64();
        char name[64];
        snprintf(name, sizeof name, "edge sweep (blas=%d): unwritten / NaN", blas);
        double nan_seen = (double)sweep_nan;
        check_tensor(name, &nan_seen, &(double){0.0}, 1, 0);
        if (failures == before) printf("%-40s all kernels ran  ok\n", "edge sweep");
    }
    pt_set_blas(NULL, NULL);
}

/* Everything, at the level pt_isa_init chose. */
static void run_all(void)
{
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
    test_sweep();
}

static void check_level(const char *name, int got, int want)
{
    int ok = got == want;
    printf("%-40s level %s  %s\n", name, pt_isa_name(got), ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

/* PT_ISA: a level at or below the CPU's is taken; a higher or unknown one
 * leaves the CPU's level; PT_PORTABLE=1 is portable. */
static void test_isa_env(void)
{
    int cpu = pt_isa_cpu_level();
    setenv("PT_ISA", "avx512", 1);
    int got = pt_isa_init();
    check_level("PT_ISA=avx512 (capped at the CPU)", got, cpu);
    setenv("PT_ISA", "sse9", 1);
    got = pt_isa_init();
    check_level("PT_ISA=sse9 (unknown: the CPU's level)", got, cpu);
    if (!strstr(pt_isa_reason(), "sse9")) {
        printf("PT_ISA=sse9: reason does not name it: %s  FAIL\n", pt_isa_reason());
        failures++;
    }
    unsetenv("PT_ISA");
    setenv("PT_PORTABLE", "1", 1);
    got = pt_isa_init();
    check_level("PT_PORTABLE=1 (portable)", got, PT_ISA_PORTABLE);
    unsetenv("PT_PORTABLE");
    for (int f = 0; f < pt_isa_family_count(); f++)
        if (strcmp(pt_isa_family_path(f, 32), "portable") || strcmp(pt_isa_family_path(f, 64), "portable")) {
            printf("PT_PORTABLE=1: %s takes %s  FAIL\n", pt_isa_family_name(f),
                   pt_isa_family_path(f, 32));
            failures++;
        }
}

int main(void)
{
    pt_isa_init();
    printf("pytransformer C core: openmp=%d threads=%d blas=%d cpu isa=%s\n",
           pt_has_openmp(), pt_get_num_threads(), pt_blas_available(),
           pt_isa_name(pt_isa_cpu_level()));
    const char *env = getenv("PT_ISA");
    if (env && *env) {
        printf("== ISA level %s (%s)\n", pt_isa_name(pt_isa_level()), pt_isa_reason());
        run_all();
    } else {
        test_isa_env();
        for (int level = 0; level <= pt_isa_cpu_level(); level++) {
            setenv("PT_ISA", pt_isa_name(level), 1);
            int got = pt_isa_init();
            printf("== ISA level %s (%s)\n", pt_isa_name(got), pt_isa_reason());
            check_level("PT_ISA selects the level", got, level);
            run_all();
        }
        unsetenv("PT_ISA");
        for (int level = pt_isa_cpu_level() + 1; level < PT_ISA_COUNT; level++)
            printf("== ISA level %s skipped: this CPU (or OS) lacks it\n", pt_isa_name(level));
    }
    printf("%s\n", failures ? "FAILED" : "all C tests passed");
    return failures ? 1 : 0;
}

#else  /* SWEEP_T: the sweep's typed body, for real = SWEEP_T */

/* n uniform values in [-1, 1) */
static SWEEP_T *SW(rnd)(long n)
{
    SWEEP_T *p = xmalloc((size_t)n * sizeof *p);
    for (long i = 0; i < n; i++) p[i] = (SWEEP_T)urand();
    return p;
}
/* n NaN: an output the kernel must overwrite */
static SWEEP_T *SW(nans)(long n)
{
    SWEEP_T *p = xmalloc((size_t)n * sizeof *p);
    for (long i = 0; i < n; i++) p[i] = (SWEEP_T)NAN;
    return p;
}
static void SW(no_nan)(const SWEEP_T *a, long n)
{
    for (long i = 0; i < n; i++) sweep_nan += a[i] != a[i];
}
/* n zeros, exactly n elements (calloc of 0 may return NULL) */
static SWEEP_T *SW(zeros)(long n)
{
    SWEEP_T *p = xmalloc((size_t)n * sizeof *p);
    for (long i = 0; i < n; i++) p[i] = 0;
    return p;
}
/* The backward convention (pt_kernels.h): `stored` (accumulate = 0, over a
 * buffer of NaN) holds bit for bit what `added` (accumulate = 1, into
 * +0.0) holds, up to the sign of an exact zero (stored + 0 is compared). */
static void SW(same_store)(const char *what, int line, const SWEEP_T *stored,
                           const SWEEP_T *added, long n)
{
    for (long i = 0; i < n; i++) {
        SWEEP_T s = stored[i] + (SWEEP_T)0, a = added[i];
        if (memcmp(&s, &a, sizeof s)) {
            printf("sweep line %d: %s[%ld]: accumulate=0 gives %.9g, accumulate=1 into "
                   "zeros %.9g  FAIL\n", line, what, i, (double)stored[i], (double)a);
            failures++;
            return;
        }
    }
}
#define SAME_STORE(a, b, n) SW(same_store)(#a, __LINE__, a, b, n)

static void SW(sweep_gemm)(void)
{
    static const long Ms[] = {1, 6, 7, 49, 150}, Ns[] = {1, 8, 9, 17, 33}, Ks[] = {1, 3, 257};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++)
                    for (int c = 0; c < 3; c++)
                        for (int pad = 0; pad < 2; pad++) {
                            long M = Ms[a], N = Ns[b], K = Ks[c];
                            /* leading dims past the minimum; the last row exact */
                            long lda = (ta ? M : K) + 3 * pad, ldb = (tb ? K : N) + 5 * pad;
                            long ldc = N + 2 * pad;
                            SWEEP_T *A = SW(rnd)((ta ? K : M) * lda - 3 * pad);
                            SWEEP_T *B = SW(rnd)((tb ? N : K) * ldb - 5 * pad);
                            SWEEP_T *C = SW(nans)(M * ldc - 2 * pad);
                            SWEEP_OK(SW(pt_gemm)(ta, tb, M, N, K, 1, A, lda, B, ldb, 0, C, ldc));
                            for (long i = 0; i < M; i++) SW(no_nan)(C + i * ldc, N);
                            SWEEP_T beta = pad ? (SWEEP_T)0.5 : 1;
                            SWEEP_OK(SW(pt_gemm_fallback)(ta, tb, M, N, K, (SWEEP_T)1.5, A, lda,
                                                          B, ldb, beta, C, ldc));
                            free(A); free(B); free(C);
                        }
}

/* The packed weight of w (linear_packed.c): the same product as y (to a
 * bound of IN float roundings of the largest term sum), every element
 * written, the copy matching w at its samples. */
static void SW(sweep_packed)(const SWEEP_T *y, const SWEEP_T *x, const SWEEP_T *w,
                             const SWEEP_T *bias, long N, long IN, long OUT)
{
    SWEEP_T *wp = malloc((size_t)SW(pt_linear_pack_size)(OUT, IN) * sizeof *wp);
    SWEEP_T *yp = SW(nans)(N * OUT);
    SWEEP_OK(SW(pt_linear_pack)(wp, w, OUT, IN));
    SWEEP_OK(SW(pt_linear_packed_forward)(yp, x, wp, w, bias, N, IN, OUT));
    SW(no_nan)(yp, N * OUT);
    double eps = sizeof(SWEEP_T) == 4 ? 1.2e-7 : 2.3e-16;
    for (long i = 0; i < N; i++)
        for (long o = 0; o < OUT; o++) {
            double mag = bias ? fabs((double)bias[o]) : 0;
            for (long k = 0; k < IN; k++) mag += fabs((double)x[i * IN + k] * w[o * IN + k]);
            if (fabs((double)yp[i * OUT + o] - y[i * OUT + o]) > 4 * (IN + 1) * eps * mag) {
                printf("sweep packed N=%ld IN=%ld OUT=%ld (%ld, %ld): %g vs %g  FAIL\n", N, IN,
                       OUT, i, o, (double)yp[i * OUT + o], (double)y[i * OUT + o]);
                failures++;
                i = N;
                break;
            }
        }
    if (!SW(pt_linear_pack_matches)(wp, w, OUT, IN)) {
        printf("sweep packed N=%ld IN=%ld OUT=%ld: pack_matches 0  FAIL\n", N, IN, OUT);
        failures++;
    }
    free(wp);
    free(yp);
}

static void SW(sweep_linear)(void)
{
    static const long Ns[] = {1, 2, 3, 20, 21, 130}, INs[] = {1, 8, 9, 33}, OUTs[] = {1, 4, 5, 65};
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++)
                for (int hb = 0; hb < 2; hb++) {
                    long N = Ns[a], IN = INs[b], OUT = OUTs[c];
                    SWEEP_T *x = SW(rnd)(N * IN), *w = SW(rnd)(OUT * IN);
                    SWEEP_T *bias = hb ? SW(rnd)(OUT) : NULL, *dy = SW(rnd)(N * OUT);
                    SWEEP_T *y = SW(nans)(N * OUT), *dx = SW(nans)(N * IN);
                    SWEEP_T *dw = SW(nans)(OUT * IN), *db = SW(nans)(OUT);
                    SWEEP_OK(SW(pt_linear_forward)(y, x, w, bias, N, IN, OUT));
                    SW(sweep_packed)(y, x, w, bias, N, IN, OUT);
                    SWEEP_OK(SW(pt_linear_backward)(dx, dw, db, dy, x, w, N, IN, OUT, 0));
                    SWEEP_T *dx1 = SW(zeros)(N * IN), *dw1 = SW(zeros)(OUT * IN);
                    SWEEP_T *db1 = SW(zeros)(OUT);
                    SWEEP_OK(SW(pt_linear_backward)(dx1, dw1, db1, dy, x, w, N, IN, OUT, 1));
                    SAME_STORE(dx, dx1, N * IN); SAME_STORE(dw, dw1, OUT * IN);
                    SAME_STORE(db, db1, OUT);
                    free(dx1); free(dw1); free(db1);
                    SWEEP_OK(SW(pt_linear_backward)(dx, NULL, db, dy, x, w, N, IN, OUT, 1));
                    SW(no_nan)(y, N * OUT); SW(no_nan)(dx, N * IN);
                    SW(no_nan)(dw, OUT * IN); SW(no_nan)(db, OUT);
                    free(x); free(w); free(bias); free(dy); free(y); free(dx); free(dw); free(db);
                }
}

static void SW(sweep_activation)(void)
{
    static const long Ns[] = {1, 3, 257}, Cs[] = {1, 7, 8, 9, 16, 17, 513};
    for (int kind = PT_ACT_NONE; kind <= PT_ACT_GELU_TANH; kind++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 7; b++)
                for (int hb = 0; hb < 2; hb++) {
                    long N = Ns[a], C = Cs[b];
                    SWEEP_T *x = SW(rnd)(N * C), *bias = hb ? SW(rnd)(C) : NULL;
                    SWEEP_T *dy = SW(rnd)(N * C), *y = SW(nans)(N * C);
                    SWEEP_T *dx = SW(nans)(N * C), *db = SW(nans)(C);
                    SWEEP_T *dx1 = SW(zeros)(N * C), *db1 = SW(zeros)(C);
                    SWEEP_OK(SW(pt_bias_act_forward)(y, x, bias, N, C, kind));
                    SWEEP_OK(SW(pt_bias_act_backward)(dx, db, dy, x, bias, N, C, kind, 0));
                    SWEEP_OK(SW(pt_bias_act_backward)(dx1, db1, dy, x, bias, N, C, kind, 1));
                    SAME_STORE(dx, dx1, N * C); SAME_STORE(db, db1, C);
                    free(dx1); free(db1);
                    SWEEP_OK(SW(pt_bias_act_backward)(NULL, db, dy, x, bias, N, C, kind, 1));
                    SWEEP_OK(SW(pt_bias_act_backward)(dx, NULL, dy, x, bias, N, C, kind, 1));
                    SWEEP_OK(SW(pt_bias_act_forward)(x, x, bias, N, C, kind));   /* in place */
                    SW(no_nan)(y, N * C); SW(no_nan)(x, N * C);
                    SW(no_nan)(dx, N * C); SW(no_nan)(db, C);
                    free(x); free(bias); free(dy); free(y); free(dx); free(db);
                }
}

static void SW(sweep_softmax)(void)
{
    static const long Ns[] = {1, 3, 40}, Cs[] = {1, 2, 15, 16, 17, 33, 1000};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 7; b++) {
            long N = Ns[a], C = Cs[b];
            SWEEP_T *x = SW(rnd)(N * C), *dy = SW(rnd)(N * C), *dl = SW(rnd)(N);
            SWEEP_T *y = SW(nans)(N * C), *loss = SW(nans)(N), *lse = SW(nans)(N);
            SWEEP_T *dx = SW(nans)(N * C), *dx1 = SW(zeros)(N * C);
            int64_t *t = xmalloc((size_t)N * sizeof *t);
            for (long n = 0; n < N; n++) t[n] = n % 3 == 1 ? -100 : (n * 7) % C;
            if (C > 1) x[1] = -INFINITY;          /* a masked logit, not the target */
            for (int lg = 0; lg < 2; lg++) {
                SWEEP_OK(SW(pt_softmax_forward)(y, x, N, C, lg));
                for (long i = 0; i < N * C; i++) { dx[i] = (SWEEP_T)NAN; dx1[i] = 0; }
                SWEEP_OK(SW(pt_softmax_backward)(dx, dy, y, N, C, lg, 0));
                SWEEP_OK(SW(pt_softmax_backward)(dx1, dy, y, N, C, lg, 1));
                SAME_STORE(dx, dx1, N * C);
                SWEEP_OK(SW(pt_softmax_backward)(dx, dy, y, N, C, lg, 1));
            }
            SW(no_nan)(y, N * C);
            for (int ls = 0; ls < 2; ls++) {
                SWEEP_T smooth = (SWEEP_T)(0.1 * ls);
                SWEEP_OK(SW(pt_cross_entropy_forward)(NULL, lse, x, t, N, C, -100, smooth));
                SWEEP_OK(SW(pt_cross_entropy_forward)(loss, lse, x, t, N, C, -100, smooth));
                for (long i = 0; i < N * C; i++) { dx[i] = (SWEEP_T)NAN; dx1[i] = 0; }
                SWEEP_OK(SW(pt_cross_entropy_backward)(dx, x, lse, t, dl, ls, N, C, -100, smooth,
                                                       0));
                SWEEP_OK(SW(pt_cross_entropy_backward)(dx1, x, lse, t, dl, ls, N, C, -100, smooth,
                                                       1));
                SAME_STORE(dx, dx1, N * C);
                SWEEP_OK(SW(pt_cross_entropy_backward)(dx, x, lse, t, dl, ls, N, C, -100, smooth,
                                                       1));
            }
            SW(no_nan)(loss, N); SW(no_nan)(lse, N); SW(no_nan)(dx, N * C);
            free(x); free(dy); free(dl); free(y); free(loss); free(lse); free(dx); free(dx1);
            free(t);
        }
}

static void SW(sweep_layernorm)(void)
{
    static const long Ns[] = {1, 3, 4, 5, 32, 33, 67, 200}, Cs[] = {1, 16, 17, 100};
    for (int a = 0; a < 8; a++)
        for (int b = 0; b < 4; b++)
            for (int opt = 0; opt < 4; opt++) {       /* weight and bias NULL or not */
                long N = Ns[a], C = Cs[b];
                SWEEP_T *x = SW(rnd)(N * C), *dy = SW(rnd)(N * C);
                SWEEP_T *w = opt & 1 ? SW(rnd)(C) : NULL, *bb = opt & 2 ? SW(rnd)(C) : NULL;
                SWEEP_T *y = SW(nans)(N * C), *m = SW(nans)(N), *r = SW(nans)(N);
                SWEEP_T *dx = SW(nans)(N * C);
                SWEEP_T *dw = SW(nans)(C), *db = SW(nans)(C);
                SWEEP_T *dx1 = SW(zeros)(N * C), *dw1 = SW(zeros)(C), *db1 = SW(zeros)(C);
                SWEEP_OK(SW(pt_layernorm_forward)(y, NULL, NULL, x, w, bb, N, C, (SWEEP_T)1e-5));
                SWEEP_OK(SW(pt_layernorm_forward)(y, m, r, x, w, bb, N, C, (SWEEP_T)1e-5));
                SWEEP_OK(SW(pt_layernorm_backward)(dx, dw, db, dy, x, w, m, r, N, C, 0));
                SWEEP_OK(SW(pt_layernorm_backward)(dx1, dw1, db1, dy, x, w, m, r, N, C, 1));
                SAME_STORE(dx, dx1, N * C); SAME_STORE(dw, dw1, C); SAME_STORE(db, db1, C);
                free(dx1); free(dw1); free(db1);
                SWEEP_OK(SW(pt_layernorm_backward)(dx, NULL, NULL, dy, x, w, m, r, N, C, 1));
                SWEEP_OK(SW(pt_layernorm_backward)(NULL, dw, NULL, dy, x, w, m, r, N, C, 1));
                SW(no_nan)(y, N * C); SW(no_nan)(m, N); SW(no_nan)(r, N);
                SW(no_nan)(dx, N * C); SW(no_nan)(dw, C); SW(no_nan)(db, C);
                SWEEP_OK(SW(pt_layernorm_backward)(dy, NULL, NULL, dy, x, w, m, r, N, C, 0));
                SW(no_nan)(dy, N * C);                  /* dx = dy, in place */
                free(x); free(dy); free(w); free(bb); free(y); free(m); free(r); free(dx);
                free(dw); free(db);
            }
}

static void SW(sweep_misc)(void)
{
    for (long C = 0; C < 6; C++)
        for (long N = 0; N < 5; N++) {
            const long V = 3;
            SWEEP_T *tab = SW(rnd)(V * C), *dy = SW(rnd)(N * C);
            SWEEP_T *y = SW(nans)(N * C), *pos = SW(nans)(N * C);
            SWEEP_T *dt = SW(nans)(V * C), *dt1 = SW(zeros)(V * C);
            int64_t *ids = xmalloc((size_t)N * sizeof *ids);
            for (long n = 0; n < N; n++) ids[n] = (n * 2) % V;
            SWEEP_OK(SW(pt_embedding_forward)(y, ids, tab, N, V, C));
            SWEEP_OK(SW(pt_embedding_backward)(dt, dy, ids, N, V, C, 0));
            SWEEP_OK(SW(pt_embedding_backward)(dt1, dy, ids, N, V, C, 1));
            SAME_STORE(dt, dt1, V * C);
            SWEEP_OK(SW(pt_embedding_backward)(dt, dy, ids, N, V, C, 1));
            free(dt1);
            SWEEP_OK(SW(pt_sinusoidal_positions)(pos, N, C, (SWEEP_T)10000));
            SW(no_nan)(y, N * C); SW(no_nan)(dt, V * C); SW(no_nan)(pos, N * C);
            free(tab); free(dy); free(y); free(pos); free(dt); free(ids);
        }
    {   /* enough work for the threaded embedding backward */
        const long N = 300, C = 200, V = 50;
        SWEEP_T *dt = SW(nans)(V * C), *dt1 = SW(zeros)(V * C), *dy = SW(rnd)(N * C);
        int64_t *ids = xmalloc((size_t)N * sizeof *ids);
        for (long n = 0; n < N; n++) ids[n] = (n * n) % V;
        SWEEP_OK(SW(pt_embedding_backward)(dt, dy, ids, N, V, C, 0));
        SWEEP_OK(SW(pt_embedding_backward)(dt1, dy, ids, N, V, C, 1));
        SAME_STORE(dt, dt1, V * C);
        SW(no_nan)(dt, V * C);
        free(dt); free(dt1); free(dy); free(ids);
    }
    static const long ns[] = {0, 1, 7, 8, 9, 63, 64, 65, 70001};
    for (int i = 0; i < 9; i++) {
        long n = ns[i];
        SWEEP_T *p = SW(rnd)(n), *m = SW(rnd)(n), *v = SW(rnd)(n), *g = SW(rnd)(n);
        SWEEP_T *y = SW(nans)(n);
        uint8_t *keep = xmalloc((size_t)n);
        for (long j = 0; j < n; j++) v[j] = v[j] < 0 ? -v[j] : v[j];
        SWEEP_OK(SW(pt_adamw_step)(p, m, v, g, n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3));
        SWEEP_OK(pt_dropout_mask(keep, n, 0.3, 7));
        SWEEP_OK(SW(pt_dropout_apply)(y, p, keep, n, (SWEEP_T)0.3));
        SW(no_nan)(p, n); SW(no_nan)(m, n); SW(no_nan)(v, n); SW(no_nan)(y, n);
        free(p); free(m); free(v); free(g); free(y); free(keep);
    }
}

/* Attention of (B, H, Tq, Tk, D, Dv) with mask kind 0 (none), 1 (key
 * padding, (B,1,1,Tk) broadcast: the tiled path's key skip) or 2 (full
 * (B,H,Tq,Tk), random -inf), both forward paths and the backward. */
static void SW(sweep_attention_one)(long B, long H, long Tq, long Tk, long D, long Dv,
                                    int maskkind, int causal)
{
    long nq = B * H * Tq, nk = B * H * Tk;
    SWEEP_T *q = SW(rnd)(nq * D), *k = SW(rnd)(nk * D), *v = SW(rnd)(nk * Dv);
    SWEEP_T *dout = SW(rnd)(nq * Dv), *out = SW(nans)(nq * Dv), *lse = SW(nans)(nq);
    SWEEP_T *W = SW(nans)(nq * Tk);
    SWEEP_T *dq = SW(nans)(nq * D), *dk = SW(nans)(nk * D), *dv = SW(nans)(nk * Dv);
    SWEEP_T *dq1 = SW(zeros)(nq * D), *dk1 = SW(zeros)(nk * D), *dv1 = SW(zeros)(nk * Dv);
    SWEEP_T *mask = NULL;
    int64_t ms[4] = {0, 0, 0, 0};
    if (maskkind == 1) {
        mask = SW(rnd)(B * Tk);
        for (long b = 0; b < B; b++)
            for (long j = 0; j < Tk; j++)
                mask[b * Tk + j] = j > 0 && j >= Tk - 3 * (b + 1) ? (SWEEP_T)-INFINITY : 0;
        ms[0] = Tk; ms[3] = 1;
    } else if (maskkind == 2) {
        mask = SW(rnd)(nq * Tk);
        for (long i = 0; i < nq * Tk; i++) if (mask[i] > (SWEEP_T)0.8) mask[i] = (SWEEP_T)-INFINITY;
        ms[0] = H * Tq * Tk; ms[1] = Tq * Tk; ms[2] = Tk; ms[3] = 1;
    }
    SWEEP_T sc = (SWEEP_T)(1 / sqrt((double)(D > 0 ? D : 1)));
    SWEEP_OK(SW(pt_attention_forward)(out, lse, W, q, k, v, mask, ms, B, H, Tq, Tk, D, Dv, causal, sc));
    SW(no_nan)(W, nq * Tk);
    SWEEP_OK(SW(pt_attention_forward)(out, NULL, NULL, q, k, v, mask, ms, B, H, Tq, Tk, D, Dv, causal, sc));
    SWEEP_OK(SW(pt_attention_forward)(out, lse, NULL, q, k, v, mask, ms, B, H, Tq, Tk, D, Dv, causal, sc));
    SW(no_nan)(out, nq * Dv); SW(no_nan)(lse, nq);
    SWEEP_OK(SW(pt_attention_backward)(dq, dk, dv, dout, q, k, v, out, lse, mask, ms,
                                       B, H, Tq, Tk, D, Dv, causal, sc, 0));
    SWEEP_OK(SW(pt_attention_backward)(dq1, dk1, dv1, dout, q, k, v, out, lse, mask, ms,
                                       B, H, Tq, Tk, D, Dv, causal, sc, 1));
    SAME_STORE(dq, dq1, nq * D); SAME_STORE(dk, dk1, nk * D); SAME_STORE(dv, dv1, nk * Dv);
    SWEEP_OK(SW(pt_attention_backward)(dq, NULL, NULL, dout, q, k, v, out, lse, mask, ms,
                                       B, H, Tq, Tk, D, Dv, causal, sc, 1));
    SWEEP_OK(SW(pt_attention_backward)(NULL, dk, NULL, dout, q, k, v, out, lse, mask, ms,
                                       B, H, Tq, Tk, D, Dv, causal, sc, 1));
    SW(no_nan)(dq, nq * D); SW(no_nan)(dk, nk * D); SW(no_nan)(dv, nk * Dv);
    free(q); free(k); free(v); free(dout); free(out); free(lse); free(W);
    free(dq); free(dk); free(dv); free(dq1); free(dk1); free(dv1); free(mask);
}

static void SW(sweep_attention)(void)
{
    static const long Ts[] = {1, 5, 16, 17, 64, 65, 130}, Ds[] = {1, 3, 8, 17};
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 7; b += 1 + a % 2)
            for (int c = 0; c < 4; c++)
                for (int variant = 0; variant < 6; variant++)
                    SW(sweep_attention_one)(1 + (variant & 1), variant < 2 ? 1 : 3, Ts[a], Ts[b],
                                            Ds[c], Ds[(c + variant) % 4], variant / 2,
                                            variant == 3 || variant == 5);
    /* no keys, no q/k features, no v features */
    SW(sweep_attention_one)(1, 2, 4, 0, 3, 2, 0, 0);
    SW(sweep_attention_one)(1, 2, 4, 5, 0, 2, 0, 1);
    SW(sweep_attention_one)(1, 2, 4, 5, 3, 0, 1, 0);
}

static void SW(sweep)(void)
{
    SW(sweep_gemm)();
    SW(sweep_linear)();
    SW(sweep_activation)();
    SW(sweep_softmax)();
    SW(sweep_layernorm)();
    SW(sweep_misc)();
    SW(sweep_attention)();
}
#endif /* SWEEP_T */
