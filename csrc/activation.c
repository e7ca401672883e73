/*
 * activation.c -- fused bias + activation, forward and backward.
 *
 * Shapes: x, y, dx, dy (N, C); bias, dbias (C). z = x + bias (bias may be
 * NULL: z = x; a zero bias is then used internally).
 *
 *   NONE       a(z) = z                                    a'(z) = 1
 *   RELU       a(z) = max(z, 0)   (NaN stays NaN)          a'(z) = [z > 0]  (0 at 0, as PyTorch)
 *   GELU_ERF   a(z) = z Phi(z),   Phi(z) = (1 + erf(z/sqrt2)) / 2
 *              a'(z) = Phi(z) + z phi(z),  phi(z) = exp(-z^2/2) / sqrt(2 pi)
 *   GELU_TANH  u = k0 (z + k1 z^3), k0 = sqrt(2/pi), k1 = 0.044715, t = tanh(u)
 *              a(z) = z (1 + t) / 2       (PyTorch approximate='tanh')
 *              a'(z) = (1 + t) / 2 + z (1 - t^2) k0 (1 + 3 k1 z^2) / 2
 *
 * forward:  y = a(x + bias); y may equal x (in place).
 * backward: g = dy * a'(x + bias); dx += g; dbias += sum_n g.
 *
 * Forward: OpenMP over rows. Backward: OpenMP over tiles of fixed RB-row
 * chunks times CB-column blocks; each tile sums its g in row order into a
 * double partial per chunk, and the partials are added in chunk order, so
 * dbias has no races and does not depend on the thread count.
 */
#include <stdlib.h>
#include "pt_real.h"
#include "pt_omp.h"

#define RB 256   /* rows per partial-sum chunk (fixed: thread-count independent) */
#define CB 512   /* columns per tile */

#define K_SQRT1_2   0.70710678118654752440    /* 1/sqrt(2) */
#define K_INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */
#define K_SQRT_2_PI 0.79788456080286535588    /* sqrt(2/pi) */
#define K_GELU_C    0.044715

/* ---- float32 GELU pieces, written so the loops vectorise (libm's erff and
 * tanhf are scalar calls of ~40 ns each here, more than the GEMMs around
 * them). float64 uses libm (exact to ~1 ulp).
 *
 * exp: pt_expf (pt_expf.h), vectorisable, ~2 ulp, flushes below -86.98 to 0.
 * erfc(x) = e^(-x^2) t P(t), t = 1 / (1 + x/2), x >= 0, with P of degree 8
 *   fitted here (weighted least squares on x in [0, 10] for relative
 *   error): 4.3e-8 relative in exact arithmetic, ~4e-7 evaluated in float32.
 *   For z < 0, Phi(z) = erfc(|z|/sqrt2)/2 is computed directly, so the
 *   negative tail keeps its relative accuracy (1 + erf(z/sqrt2) would
 *   cancel).
 * tanh form: with e = exp(-2|u|), 1 + tanh(u) = 2/(1+e) for u >= 0 and
 *   2e/(1+e) for u < 0, 1 - tanh(u)^2 = 4e/(1+e)^2: no cancellation. */
#if PT_DTYPE == 32
#include <stdint.h>
#include <string.h>
#include "pt_expf.h"
/* cond ? a : b by bit masks. A plain ?: whose result feeds further float
 * arithmetic is turned into a branch by GCC (without -ffast-math the
 * arithmetic may trap and cannot be speculated) and stops vectorisation. */
static inline float sel_f32(int cond, float a, float b)
{
    int32_t ia, ib, m = -(int32_t)(cond != 0);
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    int32_t r = (ia & m) | (ib & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

/* Phi(z) = (1 + erf(z / sqrt 2)) / 2 and, through *pdf, phi(z). */
static inline float gelu_cdf_f32(float z, float *pdf)
{
    float x = z * 0.70710678118654752f;
    float e = pt_expf(-x * x);               /* = exp(-z^2 / 2) */
    float t = 1.0f / (1.0f + 0.5f * fabsf(x));
    float p = -5.9073070114e-02f;
    p = p * t + 2.8459255514e-01f;
    p = p * t - 4.8723127932e-01f;
    p = p * t + 2.7809737991e-01f;
    p = p * t - 2.6642664005e-02f;
    p = p * t + 2.0269250254e-01f;
    p = p * t + 2.4310271257e-01f;
    p = p * t + 2.8237540531e-01f;
    p = p * t + 2.8208641478e-01f;
    float q = 0.5f * e * t * p;               /* = erfc(|x|) / 2 */
    *pdf = 0.39894228040143268f * e;
    return sel_f32(z < 0, q, 1.0f - q);
}

/* 1 + tanh(u) and, through *omt2, 1 - tanh(u)^2. */
static inline float tanh_parts_f32(float u, float *omt2)
{
    float e = pt_expf(-2.0f * fabsf(u));
    float d = 1.0f / (1.0f + e);
    *omt2 = 4.0f * e * d * d;
    return sel_f32(u < 0, 2.0f * e, 2.0f) * d;
}
#define GELU_CDF(z, pdf) gelu_cdf_f32(z, pdf)
#define TANH_PARTS(u, omt2) tanh_parts_f32(u, omt2)
#else
static inline double gelu_cdf_f64(double z, double *pdf)
{
    *pdf = K_INV_SQRT_2PI * exp(-0.5 * z * z);
    return 0.5 * (1 + erf(z * K_SQRT1_2));
}
static inline double tanh_parts_f64(double u, double *omt2)
{
    double t = tanh(u);
    *omt2 = 1 - t * t;
    return 1 + t;
}
#define GELU_CDF(z, pdf) gelu_cdf_f64(z, pdf)
#define TANH_PARTS(u, omt2) tanh_parts_f64(u, omt2)
#endif

/* a(x + bias) for one row segment [c0, c1). One loop per kind, so the
 * simple ones (none, relu) vectorise. */
static void PT_SFX(act_row)(real *y, const real *x, const real *bias,
                            int64_t c0, int64_t c1, int kind)
{
    int64_t c;
    switch (kind) {
    case PT_ACT_NONE:
        for (c = c0; c < c1; c++) y[c] = x[c] + bias[c];
        break;
    case PT_ACT_RELU:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c];
            y[c] = z < 0 ? 0 : z;
        }
        break;
    case PT_ACT_GELU_ERF:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c], pdf;
            y[c] = z * GELU_CDF(z, &pdf);
        }
        break;
    case PT_ACT_GELU_TANH:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c], omt2;
            real u = (real)K_SQRT_2_PI * (z + (real)K_GELU_C * z * z * z);
            y[c] = (real)0.5 * z * TANH_PARTS(u, &omt2);
        }
        break;
    }
}

/* g[c] = dy[c] * a'(x[c] + bias[c]) for c in [c0, c1) (pointers already
 * offset by the caller to the segment). */
static void PT_SFX(grad_row)(real *g, const real *dy, const real *x,
                             const real *bias, int64_t c0, int64_t c1, int kind)
{
    int64_t c;
    switch (kind) {
    case PT_ACT_NONE:
        for (c = c0; c < c1; c++) g[c] = dy[c];
        break;
    case PT_ACT_RELU:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c], d = dy[c];   /* unconditional load: vectorises */
            g[c] = z > 0 ? d : 0;
        }
        break;
    case PT_ACT_GELU_ERF:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c], pdf;
            real cdf = GELU_CDF(z, &pdf);
            g[c] = dy[c] * (cdf + z * pdf);
        }
        break;
    case PT_ACT_GELU_TANH:
        for (c = c0; c < c1; c++) {
            real z = x[c] + bias[c];
            real z2 = z * z;
            real u = (real)K_SQRT_2_PI * (z + (real)K_GELU_C * z2 * z);
            real omt2, opt = TANH_PARTS(u, &omt2);   /* 1 + t, 1 - t^2 */
            real du = (real)K_SQRT_2_PI * (1 + 3 * (real)K_GELU_C * z2);
            g[c] = dy[c] * (real)0.5 * (opt + z * omt2 * du);
        }
        break;
    }
}

int PT_FN(pt_bias_act_forward)(real *y, const real *x, const real *bias,
                               int64_t N, int64_t C, int kind)
{
    if (N < 0 || C < 0 || kind < PT_ACT_NONE || kind > PT_ACT_GELU_TANH) return PT_EINVAL;
    if (N == 0 || C == 0) return PT_OK;
    /* No bias: a zero bias, so the row loops have no branch on it. */
    real *zeros = NULL;
    if (!bias) {
        zeros = calloc((size_t)C, sizeof(real));
        if (!zeros) return PT_ENOMEM;
        bias = zeros;
    }
    /* Cheap kinds are memory bound: go parallel only for big arrays. */
    int64_t work = N * C * (kind >= PT_ACT_GELU_ERF ? 8 : 1);
    (void)work;  /* read only by the OpenMP pragma */
    #pragma omp parallel for num_threads(pt_get_num_threads()) if (work > 65536)
    for (int64_t n = 0; n < N; n++)
        PT_SFX(act_row)(y + n * C, x + n * C, bias, 0, C, kind);
    free(zeros);
    return PT_OK;
}

int PT_FN(pt_bias_act_backward)(real *dx, real *dbias, const real *dy,
                                const real *x, const real *bias,
                                int64_t N, int64_t C, int kind)
{
    if (N < 0 || C < 0 || kind < PT_ACT_NONE || kind > PT_ACT_GELU_TANH) return PT_EINVAL;
    if (N == 0 || C == 0 || (!dx && !dbias)) return PT_OK;
    int nth = pt_get_num_threads();
    int64_t work = N * C * (kind >= PT_ACT_GELU_ERF ? 8 : 1);
    (void)nth; (void)work;  /* read only by the OpenMP pragmas */
    int64_t nchunks = (N + RB - 1) / RB, nblocks = (C + CB - 1) / CB;
    double *part = NULL;
    if (dbias) {
        part = malloc((size_t)(nchunks * C) * sizeof(double));
        if (!part) return PT_ENOMEM;
    }
    real *zeros = NULL;   /* no bias: a zero bias (see forward) */
    if (!bias) {
        zeros = calloc((size_t)C, sizeof(real));
        if (!zeros) { free(part); return PT_ENOMEM; }
        bias = zeros;
    }
    int status = PT_OK;
    #pragma omp parallel num_threads(nth) if (work > 65536)
    {
        /* One scratch segment of g per thread (CB wide). */
        real *g = malloc(CB * sizeof(real));
        if (!g) {
            #pragma omp atomic write
            status = PT_ENOMEM;
        }
        #pragma omp for collapse(2) schedule(static)
        for (int64_t r = 0; r < nchunks; r++)
            for (int64_t cb = 0; cb < nblocks; cb++) {
                if (!g) continue;
                int64_t n0 = r * RB, n1 = n0 + RB < N ? n0 + RB : N;
                int64_t c0 = cb * CB, c1 = c0 + CB < C ? c0 + CB : C;
                double *p = part ? part + r * C : NULL;
                if (p) for (int64_t c = c0; c < c1; c++) p[c] = 0;
                for (int64_t n = n0; n < n1; n++) {
                    PT_SFX(grad_row)(g, dy + n * C + c0, x + n * C + c0,
                                     bias + c0, 0, c1 - c0, kind);
                    if (dx) {
                        real *dxr = dx + n * C;
                        for (int64_t c = c0; c < c1; c++) dxr[c] += g[c - c0];
                    }
                    if (p) for (int64_t c = c0; c < c1; c++) p[c] += g[c - c0];
                }
            }
        free(g);
        /* After the implicit barrier of the loop above, status is the same
         * for every thread. */
        if (part && status == PT_OK) {
            #pragma omp for schedule(static)
            for (int64_t c = 0; c < C; c++) {
                double s = 0;
                for (int64_t r = 0; r < nchunks; r++) s += part[r * C + c];
                dbias[c] += (real)s;
            }
        }
    }
    free(part);
    free(zeros);
    return status;
}
