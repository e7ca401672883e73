/*
 * test_exp2f.c -- attention's exp (pt_exp2f_x86.h) without Python: the
 * AVX2 and AVX-512 twins against libm's exp2 and exp, and against each
 * other. Exit status 1 on failure.
 *
 * Checks, on every level this CPU runs:
 *   - every 17th float t in [-30, 0] (by bit pattern: 6.5e7 of them, every
 *     exponent and every residue of the low mantissa bits) and every 97th
 *     in (PT_EXP2F_LO, -30): at most 2.5 ulp from exp2(t);
 *   - t below PT_EXP2F_LO (-125.4856), -inf: +0; NaN: NaN; 0 and -0: 1;
 *   - pt_expf_diff (exp(s - b)) for random s, b in [-40, 40]: within 4e-7 relative of exp(s - b)
 *     (in double) for s - b in [-1, 0], within 2.5e-6 for [-20, 0] (the
 *     roundings of s - b and of t grow with |t|);
 *   - the AVX2 and AVX-512 results are the same bits on every input.
 *
 *     make -C csrc test
 */
#define _POSIX_C_SOURCE 200112L   /* snprintf, nextafterf under -std=c99 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "pt.h"

#define PT_TEST_SEED 0x9E3779B97F4A7C15ULL
#include "pt_test.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#include "pt_exp2f_x86.h"

#define CHUNK 4096

__attribute__((target("avx2,fma")))
static void run_avx2(const float *t, float *y, int n)
{
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(y + i, pt_exp2f_neg_avx2(_mm256_loadu_ps(t + i)));
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
static void run_avx512(const float *t, float *y, int n)
{
    for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(y + i, pt_exp2f_neg_avx512(_mm512_loadu_ps(t + i)));
}

__attribute__((target("avx2,fma")))
static void diff_avx2(const float *s, const float *b, float *y, int n)
{
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(y + i, pt_expf_diff_avx2(_mm256_loadu_ps(s + i), _mm256_loadu_ps(b + i)));
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
static void diff_avx512(const float *s, const float *b, float *y, int n)
{
    for (int i = 0; i < n; i += 16)
        _mm512_storeu_ps(y + i, pt_expf_diff_avx512(_mm512_loadu_ps(s + i),
                                                    _mm512_loadu_ps(b + i)));
}

static int level;
static double worst_ulp, worst_rel;
static long mismatches;

/* y for the chunk t[0..n) on the highest level, checked against the other. */
static void eval(const float *t, float *y, int n)
{
    static float y2[CHUNK];
    if (level >= PT_ISA_AVX512) {
        run_avx512(t, y, n);
        run_avx2(t, y2, n);
        for (int i = 0; i < n; i++)
            if (memcmp(y + i, y2 + i, sizeof(float))) mismatches++;
    } else {
        run_avx2(t, y, n);
    }
}

static void check_ulp(const float *t, const float *y, int n)
{
    for (int i = 0; i < n; i++) {
        double want = exp2((double)t[i]);
        double ulp = nextafterf((float)want, INFINITY) - (float)want;
        double e = fabs((double)y[i] - want) / ulp;
        if (!(e <= worst_ulp)) worst_ulp = e;     /* NaN too */
    }
}

static void report(const char *name, double got, double tol)
{
    int ok = got <= tol;
    printf("%-52s %.3g (limit %.3g)  %s\n", name, got, tol, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

int main(void)
{
    pt_isa_init();
    level = pt_isa_cpu_level();
    if (level < PT_ISA_AVX2) {
        printf("test_exp2f: skipped, this CPU (or OS) runs neither AVX2 nor AVX-512\n");
        return 0;
    }
    printf("test_exp2f: levels avx2%s\n", level >= PT_ISA_AVX512 ? " and avx512 (compared)" : "");
    static float t[CHUNK], y[CHUNK];
    /* every 17th float in [-30, 0]: bit patterns from -0 up to -30 */
    uint32_t lo = 0x80000000u, hi;
    float m30 = -30.0f;
    memcpy(&hi, &m30, 4);
    for (uint64_t u = lo; u <= hi; ) {
        int n = 0;
        for (; n < CHUNK && u <= hi; n++, u += 17) {
            uint32_t b = (uint32_t)u;
            memcpy(t + n, &b, 4);
        }
        for (int i = n; i < CHUNK; i++) t[i] = 0;
        eval(t, y, CHUNK);
        check_ulp(t, y, n);
    }
    report("2^t, every 17th float t in [-30, 0]: max ulp", worst_ulp, 2.5);
    /* every 97th float in (PT_EXP2F_LO, -30) */
    worst_ulp = 0;
    float m125 = PT_EXP2F_LO;
    uint32_t end;
    memcpy(&end, &m125, 4);
    for (uint64_t u = hi; u < end; ) {
        int n = 0;
        for (; n < CHUNK && u < end; n++, u += 97) {
            uint32_t b = (uint32_t)u;
            memcpy(t + n, &b, 4);
        }
        for (int i = n; i < CHUNK; i++) t[i] = 0;
        eval(t, y, CHUNK);
        check_ulp(t, y, n);
    }
    report("2^t, every 97th float t in (lo, -30): max ulp", worst_ulp, 2.5);
    /* special values */
    const float sp[16] = {-125.4857f, -126.0f, -200.0f, -1e30f, -INFINITY, NAN, 0.0f, -0.0f,
                          -125.0f, -1.0f, -0.5f, 1e-8f, -3e38f, -150.0f, -149.5f, -127.0f};
    eval(sp, y, 16);
    int ok = y[0] == 0 && y[1] == 0 && y[2] == 0 && y[3] == 0 && y[4] == 0 && !signbit(y[4])
             && isnan(y[5]) && y[6] == 1.0f && y[7] == 1.0f && y[8] == exp2f(-125.0f)
             && y[9] == 0.5f && fabs(y[10] - sqrt(0.5)) < 3e-7 && y[11] >= 1.0f && y[12] == 0
             && y[13] == 0 && y[14] == 0 && y[15] == 0;
    printf("%-52s %s\n", "special values (below the range, -inf, NaN, 0, -1)", ok ? "ok" : "FAIL");
    if (!ok) failures++;
    /* exp(s - b), s - b in [-w, 0] */
    static float s[CHUNK], b[CHUNK];
    const double width[2] = {1, 20}, limit[2] = {4e-7, 2.5e-6};
    for (int w = 0; w < 2; w++) {
        worst_rel = 0;
        for (int rep = 0; rep < 256; rep++) {
            for (int i = 0; i < CHUNK; i++) {
                b[i] = (float)(40 * urand());
                s[i] = (float)(b[i] + width[w] * (urand() - 1) / 2);
                if (s[i] > b[i]) s[i] = b[i];
            }
            if (level >= PT_ISA_AVX512) {
                diff_avx512(s, b, y, CHUNK);
                diff_avx2(s, b, t, CHUNK);
                for (int i = 0; i < CHUNK; i++)
                    if (memcmp(y + i, t + i, sizeof(float))) mismatches++;
            } else {
                diff_avx2(s, b, y, CHUNK);
            }
            for (int i = 0; i < CHUNK; i++) {
                double want = exp((double)s[i] - (double)b[i]);
                double e = fabs((double)y[i] - want) / want;
                if (!(e <= worst_rel)) worst_rel = e;
            }
        }
        char name[64];
        snprintf(name, sizeof name, "exp(s - b), s - b in [-%g, 0]: max rel. error", width[w]);
        report(name, worst_rel, limit[w]);
    }
    if (level >= PT_ISA_AVX512) {
        printf("%-52s %ld  %s\n", "avx512 vs avx2: lanes with different bits", mismatches,
               mismatches ? "FAIL" : "ok");
        if (mismatches) failures++;
    }
    if (failures) { printf("test_exp2f: %d FAILED\n", failures); return 1; }
    printf("test_exp2f: all passed\n");
    return 0;
}
#else
int main(void)
{
    printf("test_exp2f: skipped, not an x86 build\n");
    return 0;
}
#endif
