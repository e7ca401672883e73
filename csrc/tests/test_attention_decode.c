/*
 * test_attention_decode.c -- the `decode` slots of the attention family
 * (attention_decode.c, attention_decode_x86.c), called directly on every
 * path the CPU runs, against a double-precision reference: n keys from 0
 * to 40 and D from 1 to 129 (around the 8-key blocks, the 16-lane dot
 * products and the 32/64-column chunks), no mask, masks with -inf keys
 * (whose values hold NaN: a masked key must add nothing), fully masked
 * rows (zeros), NaN in q (NaN everywhere, as the portable slot gives).
 *   float32 AVX2 vs AVX-512: bitwise equal (the same operations in the
 *     same order), NaN in the same places.
 *   float32, each path vs the reference: |diff| <= 2e-6 (values in
 *     [-1, 1]; the paths differ by about 2e-7); float64 (portable at
 *     every level): 1e-13.
 * Exit status 1 on failure.
 *
 *     make -C csrc test
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"
#include "pt_dispatch.h"

#define PT_TEST_SEED 0x853C49E6748FEA9BULL
#include "pt_test.h"
static void check(const char *name, int ok)
{
    if (!ok) {
        printf("%-70s FAIL\n", name);
        failures++;
    }
}

/* The reference: softmax over the visible keys in double. */
static void ref(double *o, const double *q, const double *k, const double *v,
                const double *mask, int n, int D, double scale)
{
    double s[64], m = -INFINITY, l = 0;
    for (int j = 0; j < n; j++) {
        double d = 0;
        for (int c = 0; c < D; c++) d += q[c] * k[j * D + c];
        s[j] = scale * d + (mask ? mask[j] : 0);
        if (s[j] > m) m = s[j];
    }
    for (int c = 0; c < D; c++) o[c] = 0;
    if (m == -INFINITY) return;
    for (int j = 0; j < n; j++) {
        double p = exp(s[j] - m);
        l += p;
        if (p == 0) continue;
        for (int c = 0; c < D; c++) o[c] += p * v[j * D + c];
    }
    for (int c = 0; c < D; c++) o[c] /= l;
}

/* mode 0: no mask; 1: every third key masked (its values NaN); 2: all
 * masked; 3: q[0] NaN. */
static void one(int n, int D, int mode)
{
    int N = n * D + 1;
    double *q = calloc(D, sizeof *q), *k = calloc(N, sizeof *k), *v = calloc(N, sizeof *v);
    double *mask = calloc(n + 1, sizeof *mask), *o = calloc(D, sizeof *o);
    float *qf = calloc(D, sizeof *qf), *kf = calloc(N, sizeof *kf), *vf = calloc(N, sizeof *vf);
    float *mf = calloc(n + 1, sizeof *mf), *sf = calloc(n + 1, sizeof *sf);
    float *of[3];
    double *qd = calloc(D, sizeof *qd), *sd = calloc(n + 1, sizeof *sd), *od = calloc(D, sizeof *od);
    for (int c = 0; c < D; c++) q[c] = urand() * 3;
    for (int i = 0; i < N; i++) { k[i] = urand(); v[i] = urand(); }
    for (int j = 0; j < n; j++) {
        mask[j] = mode == 2 || (mode == 1 && j % 3 == 1) ? -INFINITY : urand();
        if (mask[j] == -INFINITY)
            for (int c = 0; c < D; c++) v[j * D + c] = NAN;
    }
    if (mode == 3) q[0] = NAN;
    /* the float inputs, and the reference on exactly those values */
    for (int c = 0; c < D; c++) q[c] = qf[c] = (float)q[c];
    for (int i = 0; i < N; i++) { k[i] = kf[i] = (float)k[i]; v[i] = vf[i] = (float)v[i]; }
    for (int j = 0; j < n; j++) mask[j] = mf[j] = (float)mask[j];
    const double *mk = mode ? mask : NULL;
    const float *mkf = mode ? mf : NULL;
    double scale = 1.0 / sqrt((double)D);
    ref(o, q, k, v, mk, n, D, scale);
    char name[160];
    const struct pt_att_kernels_f32 *paths32[3] = {&pt_att_portable_f32, &pt_att_avx2_f32,
                                                   &pt_att_avx512_f32};
    const struct pt_att_kernels_f64 *paths64[3] = {&pt_att_portable_f64, &pt_att_avx2_f64,
                                                   &pt_att_avx512_f64};
    for (int lv = 0; lv <= pt_isa_cpu_level(); lv++) {
        of[lv] = calloc(D, sizeof(float));
        paths32[lv]->decode(of[lv], sf, qf, kf, vf, mkf, n, D, (float)scale);
        double worst = 0;
        int nan_ok = 1;
        for (int c = 0; c < D; c++) {
            if (o[c] != o[c] || of[lv][c] != of[lv][c]) {
                nan_ok &= (o[c] != o[c]) == (of[lv][c] != of[lv][c]);
                continue;
            }
            double d = fabs((double)of[lv][c] - o[c]);
            if (d > worst) worst = d;
        }
        snprintf(name, sizeof name, "f32 %s n=%d D=%d mode=%d: max|diff| %.2e", pt_isa_name(lv),
                 n, D, mode, worst);
        check(name, nan_ok && worst <= 2e-6);

        for (int c = 0; c < D; c++) qd[c] = q[c];
        paths64[lv]->decode(od, sd, qd, k, v, mk, n, D, scale);
        worst = 0;
        nan_ok = 1;
        for (int c = 0; c < D; c++) {
            if (o[c] != o[c] || od[c] != od[c]) {
                nan_ok &= (o[c] != o[c]) == (od[c] != od[c]);
                continue;
            }
            double d = fabs(od[c] - o[c]);
            if (d > worst) worst = d;
        }
        snprintf(name, sizeof name, "f64 %s n=%d D=%d mode=%d: max|diff| %.2e", pt_isa_name(lv),
                 n, D, mode, worst);
        check(name, nan_ok && worst <= 1e-13);
    }
    if (pt_isa_cpu_level() >= PT_ISA_AVX512) {
        snprintf(name, sizeof name, "f32 avx512 == avx2 bitwise, n=%d D=%d mode=%d", n, D, mode);
        check(name, memcmp(of[1], of[2], (size_t)D * sizeof(float)) == 0);
    }
    for (int lv = 0; lv <= pt_isa_cpu_level(); lv++) free(of[lv]);
    free(q); free(k); free(v); free(mask); free(o); free(qf); free(kf); free(vf); free(mf);
    free(sf); free(qd); free(sd); free(od);
}

int main(void)
{
    pt_isa_init();
    static const int ns[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 40};
    static const int Ds[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 100, 129};
    int cases = 0;
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof Ds / sizeof *Ds; b++)
            for (int mode = 0; mode < 4; mode++) {
                one(ns[a], Ds[b], mode);
                cases++;
            }
    printf("attention decode slots: %d cases on levels portable..%s: %s\n", cases,
           pt_isa_name(pt_isa_cpu_level()), failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
