/*
 * cpu.c -- the highest ISA level (pt.h) this CPU and its OS can run.
 * Not typed: compiled once. dispatch.c calls it once, from pt_isa_init.
 *
 * A vector extension is usable when the CPU has it (cpuid) and the OS
 * saves its registers on a context switch (XCR0, read with xgetbv, which
 * cpuid's OSXSAVE bit says is available): bits 1-2 (SSE and YMM state) for
 * AVX2, and bits 5-7 (opmask, upper halves of ZMM0-15, ZMM16-31) too for
 * AVX-512. A kernel compiled with target("avx512f,...") on a CPU whose OS
 * does not save ZMM state would fault, hence the check.
 */
#include <stdint.h>
#include "pt.h"
#include "pt_dispatch.h"

#if PT_X86
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

int pt_cpu_detect_level(const char **why)
{
#if PT_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        *why = "cpuid leaf 1 unavailable";
        return PT_ISA_PORTABLE;
    }
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!avx || !osxsave) {
        *why = "the CPU has no AVX (or the OS no XSAVE)";
        return PT_ISA_PORTABLE;
    }
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) {
        *why = "the OS does not save the YMM state";
        return PT_ISA_PORTABLE;
    }
    if (__get_cpuid_max(0, NULL) < 7) {
        *why = "the CPU has no AVX2";
        return PT_ISA_PORTABLE;
    }
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (!avx2 || !fma) {
        *why = "the CPU has no AVX2+FMA";
        return PT_ISA_PORTABLE;
    }
    if (!(f && dq && bw && vl)) {
        *why = "the CPU has AVX2+FMA, not AVX-512 F/BW/DQ/VL";
        return PT_ISA_AVX2;
    }
    if ((xcr0 & 0xe6) != 0xe6) {
        *why = "the CPU has AVX-512 but the OS does not save the ZMM/opmask state";
        return PT_ISA_AVX2;
    }
    *why = "the CPU has AVX-512 F/BW/DQ/VL + FMA";
    return PT_ISA_AVX512;
#else
    *why = "not x86";
    return PT_ISA_PORTABLE;
#endif
}
