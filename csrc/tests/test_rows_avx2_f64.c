/*
 * test_rows_avx2_f64.c -- the float64 row kernels of every ISA level this
 * CPU runs, against each other, without Python: softmax / log_softmax
 * forward and backward, cross-entropy forward and backward (label
 * smoothing, ignore_index), GELU erf and tanh forms with bias, forward and
 * backward (dx and dbias). Exit status 1 on failure.
 *
 * Row lengths 1..40, 63, 64, 65 and 1000 (every masked tail of the 4-wide
 * AVX2 and 8-wide AVX-512 rows, the 16-element sum body), each row in its
 * own allocation of exactly C doubles, so that a load or store past a row
 * end shows under make -C csrc sanitize. Rows hold NaN, +-inf, 1e4 logits,
 * all -inf rows, and GELU arguments from 1e-40 to 1e30.
 *
 * Checks: the avx2 and avx512 levels give the same bits (they do the same
 * operations: softmax_avx2_f64.c, activation_avx2_f64.c); every level
 * agrees with the portable one where the portable value is finite, within
 * 1e-13 (1 + |value|) (the tests in tests/test_avx2_f64_rows.py state the
 * tighter per-output bounds), with the same NaN and infinity pattern.
 *
 *     make -C csrc test
 */
#define _POSIX_C_SOURCE 200112L   /* setenv under -std=c99 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"

#include "pt_test.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

#define ROWS 6
static const int64_t LENS[] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
    25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 63, 64, 65, 1000};
#define NLENS ((int)(sizeof LENS / sizeof LENS[0]))
/* Outputs per row length: softmax, log_softmax, their backwards, the
 * cross-entropy gradient, GELU y and dx per form (ROWS x C each), and the
 * per-row loss and lse, the GELU dbias per form (vectors). */
#define NOUT 9

/* One result vector per output, per length: out[len][k], n[len][k] values. */
typedef struct { double *v[NLENS][NOUT + 4]; int64_t n[NLENS][NOUT + 4]; } results;

static double *row_copy(const double *src, int64_t C)
{
    double *r = xmalloc((size_t)C * sizeof *r);
    memcpy(r, src, (size_t)C * sizeof *r);
    return r;
}

/* Each kernel on one row at a time (rows of exactly C doubles), the result
 * appended to out (ROWS x C). */
static void run_level(results *res)
{
    for (int li = 0; li < NLENS; li++) {
        int64_t C = LENS[li];
        rng_state = 88172645463325252ULL + (unsigned long long)C;
        double *x = xmalloc(ROWS * C * sizeof *x), *dy = xmalloc(ROWS * C * sizeof *dy);
        double *gx = xmalloc(ROWS * C * sizeof *gx), *bias = xmalloc(C * sizeof *bias);
        for (int64_t i = 0; i < ROWS * C; i++) {
            x[i] = 3 * urand();
            dy[i] = urand();
            gx[i] = 4 * urand();
        }
        for (int64_t c = 0; c < C; c++) {
            bias[c] = urand();
            x[1 * C + c] = 1e4 * urand();                       /* 1e4 logits */
            x[2 * C + c] = -INFINITY;                           /* all -inf */
            if (c % 3 == 0) x[3 * C + c] = -INFINITY;           /* some -inf, a NaN */
            if (c % 2 == 1) x[5 * C + c] = -INFINITY;
        }
        if (C > 1) x[3 * C + C - 1] = NAN;
        x[4 * C + C / 2] = INFINITY;
        static const double special[] = {INFINITY, -INFINITY, NAN, 0.0, -0.0, 1e-40, -1e-40,
                                         1e19, -1e19, 1e30, -1e30, 86.0, -86.0, 8.49, -8.49};
        for (int k = 0; k < 15 && k < ROWS * C / 2; k++)
            gx[(k * 7) % (ROWS * C)] = special[k];
        int64_t t[ROWS];
        double g[ROWS];
        for (int n = 0; n < ROWS; n++) {
            t[n] = n == 2 ? -100 : (int64_t)((urand() + 1) / 2 * (double)C) % C;
            g[n] = urand();
        }
        for (int k = 0; k < NOUT + 4; k++) {
            res->n[li][k] = k < NOUT ? ROWS * C : k < NOUT + 2 ? ROWS : C;
            res->v[li][k] = xmalloc((size_t)res->n[li][k] * sizeof(double));
        }
        double **o = res->v[li];
        for (int n = 0; n < ROWS; n++) {
            double *xr = row_copy(x + n * C, C), *dyr = row_copy(dy + n * C, C);
            double *y = xmalloc(C * sizeof *y), *d = xmalloc(C * sizeof *d);
            double loss, lse;
            pt_softmax_forward_f64(y, xr, 1, C, 0);
            memcpy(o[0] + n * C, y, C * sizeof *y);
            pt_softmax_backward_f64(d, dyr, y, 1, C, 0, 0);
            memcpy(o[2] + n * C, d, C * sizeof *d);
            pt_softmax_forward_f64(y, xr, 1, C, 1);
            memcpy(o[1] + n * C, y, C * sizeof *y);
            memcpy(d, dyr, C * sizeof *d);
            pt_softmax_backward_f64(d, dyr, y, 1, C, 1, 1);     /* accumulate */
            memcpy(o[3] + n * C, d, C * sizeof *d);
            pt_cross_entropy_forward_f64(&loss, &lse, xr, &t[n], 1, C, -100, 0.1);
            o[NOUT][n] = loss;
            o[NOUT + 1][n] = lse;
            pt_cross_entropy_backward_f64(d, xr, &lse, &t[n], &g[n], 1, 1, C, -100, 0.1, 0);
            memcpy(o[4] + n * C, d, C * sizeof *d);
            free(xr); free(dyr); free(y); free(d);
        }
        for (int form = 0; form < 2; form++) {
            int kind = form ? PT_ACT_GELU_TANH : PT_ACT_GELU_ERF;
            for (int n = 0; n < ROWS; n++) {
                double *xr = row_copy(gx + n * C, C), *y = xmalloc(C * sizeof *y);
                pt_bias_act_forward_f64(y, xr, bias, 1, C, kind);
                memcpy(o[5 + 2 * form] + n * C, y, C * sizeof *y);
                free(xr); free(y);
            }
            double *dx = xmalloc(ROWS * C * sizeof *dx);
            pt_bias_act_backward_f64(dx, o[NOUT + 2 + form], dy, gx, bias, ROWS, C, kind, 0);
            memcpy(o[6 + 2 * form], dx, ROWS * C * sizeof *dx);
            free(dx);
        }
        free(x); free(dy); free(gx); free(bias);
    }
}

static void free_results(results *r)
{
    for (int li = 0; li < NLENS; li++)
        for (int k = 0; k < NOUT + 4; k++) free(r->v[li][k]);
}

static const char *const NAMES[NOUT + 4] = {
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward", "ce_backward",
    "gelu_erf", "gelu_erf dx", "gelu_tanh", "gelu_tanh dx", "ce loss", "ce lse",
    "gelu_erf dbias", "gelu_tanh dbias"};

/* a against the portable p: same NaN / inf pattern, |a - p| <= 1e-13 (1 + |p|). */
static void check_close(const char *level, const results *a, const results *p)
{
    for (int k = 0; k < NOUT + 4; k++) {
        double worst = 0;
        int bad = 0;
        for (int li = 0; li < NLENS; li++)
            for (int64_t i = 0; i < a->n[li][k]; i++) {
                double u = a->v[li][k][i], w = p->v[li][k][i];
                if (isnan(w) || isinf(w)) {
                    if (!(isnan(w) ? isnan(u) : u == w)) bad = 1;
                    continue;
                }
                double e = fabs(u - w) / (1 + fabs(w));
                if (!(e <= 1e-13)) bad = 1;
                if (e > worst || e != e) worst = e != e ? INFINITY : e;
            }
        printf("%-8s %-22s vs portable: max |diff| / (1 + |p|) = %.2e  %s\n", level, NAMES[k],
               worst, bad ? "FAIL" : "ok");
        failures += bad;
    }
}

static void check_bitwise(const results *a, const results *b)
{
    for (int k = 0; k < NOUT + 4; k++) {
        int same = 1;
        for (int li = 0; li < NLENS; li++)
            same &= memcmp(a->v[li][k], b->v[li][k], (size_t)a->n[li][k] * sizeof(double)) == 0;
        printf("avx2 vs avx512 %-22s %s\n", NAMES[k], same ? "bitwise ok" : "differ  FAIL");
        failures += !same;
    }
}

int main(void)
{
    pt_isa_init();
    int cpu = pt_isa_cpu_level();
    const char *env = getenv("PT_ISA");
    if (env && *env) {
        printf("test_rows_avx2_f64: PT_ISA=%s set: compares levels, so runs them all\n", env);
    }
    static results res[PT_ISA_COUNT];
    for (int level = 0; level <= cpu; level++) {
        setenv("PT_ISA", pt_isa_name(level), 1);
        if (pt_isa_init() != level) {
            printf("PT_ISA=%s not taken  FAIL\n", pt_isa_name(level));
            failures++;
        }
        run_level(&res[level]);
    }
    if (env && *env) setenv("PT_ISA", env, 1); else unsetenv("PT_ISA");
    pt_isa_init();
    for (int level = 1; level <= cpu; level++) check_close(pt_isa_name(level), &res[level], &res[0]);
    if (cpu >= PT_ISA_AVX512) check_bitwise(&res[PT_ISA_AVX2], &res[PT_ISA_AVX512]);
    for (int level = cpu + 1; level < PT_ISA_COUNT; level++)
        printf("== ISA level %s skipped: this CPU (or OS) lacks it\n", pt_isa_name(level));
    for (int level = 0; level <= cpu; level++) free_results(&res[level]);
    printf("%s\n", failures ? "FAILED" : "all float64 row tests passed");
    return failures ? 1 : 0;
}
