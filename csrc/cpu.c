/*
 * cpu.c -- may the hand-vectorised AVX2+FMA kernels run on this CPU?
 * Not typed: compiled once.
 *
 * The default build targets the baseline ISA (SSE2 on x86-64); the GEMM
 * micro-kernel, the attention tiles, layer norm rows, the float32 GELU and
 * the few-row Linear dot kernel also carry AVX2+FMA versions
 * (compiled with __attribute__((target("avx2,fma")))) and ask here which to
 * use. PT_PORTABLE=1 in the environment forces the portable C versions, so
 * tests can cover them on an AVX2 machine.
 */
#include <stdlib.h>
#include "pt.h"

int pt_cpu_avx2_fma(void)
{
    const char *env = getenv("PT_PORTABLE");
    if (env && env[0] && env[0] != '0') return 0;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}
