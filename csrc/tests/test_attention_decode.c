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
 * Then the driver pt_attention_decode with kv_row (query rows reading
 * shared key/value rows, their mask rows and lengths) against the same
 * call on a per-row copy of the keys, values, mask and lengths (kv_row
 * NULL): bitwise equal, float32 and float64, at every level (PT_ISA set
 * in turn); a negative kv_row entry refused.
 * Exit status 1 on failure.
 *
 *     make -C csrc test
 */
#define _POSIX_C_SOURCE 200112L   /* setenv under -std=c99 */
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

/* The driver with kv_row vs per-row copies: B query rows, H heads, M
 * key/value rows of Tk keys (D columns), row b reading row kv_row[b]; the
 * mask (mode 1), the lengths (mode 2) or neither (mode 0). */
#define KV_ROW_CASE(T, SFX)                                                                    \
static int kv_row_##SFX(int64_t B, int64_t H, int64_t M, int64_t Tk, int64_t D, int mode)    \
{                                                                                             \
    int64_t kvb = H * Tk * D, rows[16];                                                       \
    T *q = malloc(sizeof(T) * B * H * D), *k = malloc(sizeof(T) * M * kvb);                   \
    T *v = malloc(sizeof(T) * M * kvb), *mask = malloc(sizeof(T) * M * Tk);                   \
    T *kc = malloc(sizeof(T) * B * kvb), *vc = malloc(sizeof(T) * B * kvb);                   \
    T *mc = malloc(sizeof(T) * B * Tk), *sc = malloc(sizeof(T) * B * H * Tk);                 \
    T *o1 = malloc(sizeof(T) * B * H * D), *o2 = malloc(sizeof(T) * B * H * D);               \
    int64_t len[16], lc[16];                                                                  \
    for (int64_t i = 0; i < B * H * D; i++) q[i] = (T)(urand() * 3);                          \
    for (int64_t i = 0; i < M * kvb; i++) { k[i] = (T)urand(); v[i] = (T)urand(); }           \
    for (int64_t i = 0; i < M * Tk; i++) mask[i] = i % 5 == 2 ? (T)-INFINITY : (T)urand();    \
    for (int64_t r = 0; r < M; r++) len[r] = (r * 7 + 3) % (Tk + 2);                          \
    for (int64_t b = 0; b < B; b++) {                                                         \
        rows[b] = (b * 5 + 1) % M;                                                            \
        memcpy(kc + b * kvb, k + rows[b] * kvb, sizeof(T) * kvb);                             \
        memcpy(vc + b * kvb, v + rows[b] * kvb, sizeof(T) * kvb);                             \
        memcpy(mc + b * Tk, mask + rows[b] * Tk, sizeof(T) * Tk);                             \
        lc[b] = len[rows[b]];                                                                 \
    }                                                                                         \
    T scale = (T)(1.0 / sqrt((double)D));                                                     \
    int st1 = pt_attention_decode_##SFX(o1, H * D, sc, q, H * D, k, v, kvb, Tk * D,            \
                                        mode == 1 ? mask : NULL, mode == 2 ? len : NULL,      \
                                        rows, B, H, Tk, D, scale);                            \
    int st2 = pt_attention_decode_##SFX(o2, H * D, sc, q, H * D, kc, vc, kvb, Tk * D,          \
                                        mode == 1 ? mc : NULL, mode == 2 ? lc : NULL, NULL,   \
                                        B, H, Tk, D, scale);                                  \
    int ok = st1 == PT_OK && st2 == PT_OK                                                     \
             && memcmp(o1, o2, sizeof(T) * B * H * D) == 0;                                   \
    rows[B - 1] = -1;                                                                         \
    ok &= pt_attention_decode_##SFX(o1, H * D, sc, q, H * D, k, v, kvb, Tk * D, NULL, NULL,   \
                                    rows, B, H, Tk, D, scale) == PT_EINVAL;                   \
    free(q); free(k); free(v); free(mask); free(kc); free(vc); free(mc); free(sc);            \
    free(o1); free(o2);                                                                       \
    return ok;                                                                                \
}
KV_ROW_CASE(float, f32)
KV_ROW_CASE(double, f64)
#undef KV_ROW_CASE

static void kv_rows(void)
{
    static const int64_t shapes[][5] = {{8, 3, 3, 17, 64}, {12, 2, 4, 9, 33}, {1, 1, 1, 1, 1},
                                        {16, 4, 5, 40, 16}};
    for (int lv = 0; lv <= pt_isa_cpu_level(); lv++) {
        setenv("PT_ISA", pt_isa_name(lv), 1);
        pt_isa_init();
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
            for (int mode = 0; mode < 3; mode++) {
                const int64_t *z = shapes[i];
                char name[160];
                snprintf(name, sizeof name, "%s kv_row == per-row copies, B=%ld H=%ld M=%ld "
                         "Tk=%ld D=%ld mode=%d", pt_isa_name(pt_isa_level()), (long)z[0],
                         (long)z[1], (long)z[2], (long)z[3], (long)z[4], mode);
                check(name, kv_row_f32(z[0], z[1], z[2], z[3], z[4], mode)
                            && kv_row_f64(z[0], z[1], z[2], z[3], z[4], mode));
            }
    }
    unsetenv("PT_ISA");
    pt_isa_init();
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
    kv_rows();
    printf("attention decode slots: %d cases on levels portable..%s: %s\n", cases,
           pt_isa_name(pt_isa_cpu_level()), failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
