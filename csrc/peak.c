/*
 * peak.c -- the machine's fp32 multiply-add throughput, measured: the 100%
 * of the benchmark's "% peak" column. Not typed: compiled once.
 *
 * The nominal peak (cores x clock x FLOP per cycle) misses turbo clocks
 * and a VM's share of the host, so the benchmark also runs this: every
 * thread runs ACC independent chains of vector FMAs on registers (no
 * memory traffic) for `iters` rounds, with the vectors of one ISA level:
 * 8-lane ymm FMAs (AVX2), 16-lane zmm FMAs (AVX-512), or scalar C. ACC =
 * 10 independent chains cover two FMA pipes of up to 5 cycles' latency,
 * for either vector width. The result is FLOP per second over all
 * threads; a multiply-add counts as two FLOP, as in GEMM FLOP counts.
 */
#define _POSIX_C_SOURCE 199309L   /* clock_gettime under -std=c99 */
#include <time.h>
#include "pt.h"
#include "pt_omp.h"
#include "pt_dispatch.h"

#define ACC 10

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if PT_X86
#include <immintrin.h>
/* iters rounds of ACC 8-lane FMAs; returns a value that depends on every
 * chain, so that the compiler keeps them. */
__attribute__((target("avx2,fma")))
static float fma_chains_avx2(int64_t iters)
{
    __m256 a[ACC];
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int c = 0; c < ACC; c++) a[c] = _mm256_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < ACC; c++) a[c] = _mm256_fmadd_ps(a[c], x, y);
    __m256 s = a[0];
    for (int c = 1; c < ACC; c++) s = _mm256_add_ps(s, a[c]);
    float t[8];
    _mm256_storeu_ps(t, s);
    return t[0] + t[7];
}

/* The same with 16-lane zmm FMAs (AVX-512F). */
__attribute__((target("avx512f")))
static float fma_chains_avx512(int64_t iters)
{
    __m512 a[ACC];
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int c = 0; c < ACC; c++) a[c] = _mm512_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < ACC; c++) a[c] = _mm512_fmadd_ps(a[c], x, y);
    __m512 s = a[0];
    for (int c = 1; c < ACC; c++) s = _mm512_add_ps(s, a[c]);
    float t[16];
    _mm512_storeu_ps(t, s);
    return t[0] + t[15];
}
#endif

/* Portable: ACC scalar chains of a * x + y (the compiler may vectorize). */
static float fma_chains_c(int64_t iters)
{
    float a[ACC];
    for (int c = 0; c < ACC; c++) a[c] = (float)c;
    for (int64_t i = 0; i < iters; i++)
        for (int c = 0; c < ACC; c++) a[c] = a[c] * 0.999999f + 1e-7f;
    float s = 0;
    for (int c = 0; c < ACC; c++) s += a[c];
    return s;
}

static float fma_chains(int level, int64_t iters)
{
#if PT_X86
    if (level == PT_ISA_AVX512) return fma_chains_avx512(iters);
    if (level == PT_ISA_AVX2) return fma_chains_avx2(iters);
#endif
    return fma_chains_c(iters);
}

double pt_fma_peak_flops_isa(int level, int nthreads, int64_t iters)
{
    if (nthreads < 1 || iters < 1) return 0;
    if (level < 0 || level > pt_isa_cpu_level()) return 0;
    int lanes = level == PT_ISA_AVX512 ? 16 : level == PT_ISA_AVX2 ? 8 : 1, used = 1;
    float sum = 0;
    double t0 = now();
    #pragma omp parallel num_threads(nthreads) reduction(+ : sum)
    {
        sum += fma_chains(level, iters);
        if (omp_get_thread_num() == 0) used = omp_get_num_threads();
    }
    double dt = now() - t0;
    volatile float sink = sum;     /* keep the chains' results alive */
    (void)sink;
    return dt > 0 ? 2.0 * ACC * lanes * (double)iters * used / dt : 0;
}

double pt_fma_peak_flops(int nthreads, int64_t iters)
{
    return pt_fma_peak_flops_isa(pt_isa_level(), nthreads, iters);
}
