/*
 * test_attention_fused.c -- the backward's fused tile steps against the
 * stored-tile ones, float32, on every ISA level the CPU runs (PT_ISA set
 * per level). Exit status 1 on failure.
 *
 *   pt_att_mm_exp(alpha, shift) == pt_att_mm(alpha) then pt_att_exp_rows
 *   pt_att_mm_ds(alpha, Drow, P, scale) == pt_att_mm(alpha) then
 *       (scale P) (C - Drow), each step rounded
 *
 * bitwise, for alpha a power of two (where the AVX2 and AVX-512 epilogues
 * form alpha acc - b in one FMA: att_scale_pow2), 1, 2^-126 and others;
 * products of ordinary size and products that fall below 2^-126 (rounded
 * to a subnormal when stored), against shifts of 0, of about 2^-100 and
 * below, and ordinary ones. attention.c relies on the equality: a tile
 * takes the fused steps or, with a mask, the stored ones.
 *
 *     make -C csrc test
 */
#define _POSIX_C_SOURCE 200112L   /* setenv under -std=c99 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pt.h"
#include "pt_real.h"
#include "attention_tile.h"

#define PT_TEST_SEED 0xD1B54A32D192ED03ULL
#include "pt_test.h"

#define LD 80   /* leading dimension of every tile (n <= 70) */

/* One case: m x n tiles from A (m x K) and B (K x n), A's and B's values
 * times amp; the row values (shift / Drow) from sh[]. */
static void run(int m, int n, int K, float alpha, double amp, const float *sh, long *cases)
{
    static float A[64 * 64], B[64 * LD], P[64 * LD], C1[64 * LD], C2[64 * LD];
    static double sum[64];
    char name[128];
    for (int i = 0; i < m * K; i++) A[i] = (float)(amp * urand());
    for (int i = 0; i < K * LD; i++) B[i] = (float)(amp * urand());
    for (int i = 0; i < 64 * LD; i++) P[i] = (float)((urand() + 1) / 2);
    /* mm_exp */
    pt_att_mm_exp_f32(C1, LD, A, K, B, LD, m, n, K, alpha, sh);
    pt_att_mm_f32(C2, LD, A, K, 0, B, LD, m, n, K, alpha, 0);
    pt_att_exp_rows_f32(C2, LD, m, n, sh, sum);
    int bad = 0;
    for (int i = 0; i < m; i++) bad += memcmp(C1 + i * LD, C2 + i * LD, sizeof(float) * n) != 0;
    snprintf(name, sizeof name, "%s mm_exp %dx%dx%d alpha %g amp %g: rows differing",
             pt_isa_name(pt_isa_level()), m, n, K, alpha, amp);
    if (bad) { printf("%-72s %d  FAIL\n", name, bad); failures++; }
    /* mm_ds */
    const float scale = 0.125f;
    pt_att_mm_ds_f32(C1, LD, A, K, B, LD, m, n, K, alpha, sh, P, LD, scale);
    pt_att_mm_f32(C2, LD, A, K, 0, B, LD, m, n, K, alpha, 0);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float e = scale * P[i * LD + j], d = C2[i * LD + j] - sh[i];
            C2[i * LD + j] = e * d;
        }
    bad = 0;
    for (int i = 0; i < m; i++) bad += memcmp(C1 + i * LD, C2 + i * LD, sizeof(float) * n) != 0;
    snprintf(name, sizeof name, "%s mm_ds %dx%dx%d alpha %g amp %g: rows differing",
             pt_isa_name(pt_isa_level()), m, n, K, alpha, amp);
    if (bad) { printf("%-72s %d  FAIL\n", name, bad); failures++; }
    *cases += 2;
}

int main(void)
{
    const int dims[4][3] = {{64, 64, 64}, {7, 37, 13}, {13, 70, 5}, {64, 16, 64}};
    const float alphas[7] = {0.125f, 0.25f, 1.0f, 0x1p-126f, 0.1767767f, 0.3f, 0.5f};
    /* amp 1: ordinary products; 1e-19: products near 1e-38 (alpha acc below
     * 2^-126 for the powers of two under 1) */
    const double amps[2] = {1.0, 1e-19};
    float sh[64];
    long cases = 0;
    pt_isa_init();
    for (int lv = 0; lv <= pt_isa_cpu_level(); lv++) {
        setenv("PT_ISA", pt_isa_name(lv), 1);
        pt_isa_init();
        for (int d = 0; d < 4; d++)
            for (int a = 0; a < 7; a++)
                for (int p = 0; p < 2; p++) {
                    /* shifts: 0, +-2^-100 and below (subnormal too), ordinary */
                    for (int i = 0; i < 64; i++) {
                        switch (i % 6) {
                        case 0: sh[i] = 0; break;
                        case 1: sh[i] = (float)(0x1p-100 * urand()); break;
                        case 2: sh[i] = (float)(1e-39 * urand()); break;
                        case 3: sh[i] = (float)(1e-37 * urand()); break;
                        case 4: sh[i] = -0.0f; break;
                        default: sh[i] = (float)(3 * urand()); break;
                        }
                    }
                    run(dims[d][0], dims[d][1], dims[d][2], alphas[a], amps[p], sh, &cases);
                }
    }
    unsetenv("PT_ISA");
    pt_isa_init();
    printf("attention fused tile steps: %ld cases on levels portable..%s: %s\n", cases,
           pt_isa_name(pt_isa_cpu_level()), failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
