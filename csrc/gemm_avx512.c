/*
 * gemm_avx512.c -- the fallback GEMM's AVX-512F micro-kernel (see gemm.c
 * for the driver and pt_dispatch_slots.h for the slot).
 *
 * Register tile ZMR x ZNR = 14 x (two 512-bit vectors): 28 accumulators +
 * 2 B vectors + 1 broadcast A = 31 of the 32 zmm registers. Per p it loads
 * one row of the B strip, broadcasts the 14 values of the A column and does
 * 28 vector multiply-adds: 14 broadcasts + 2 loads per 28 FMAs, well within
 * the load ports while both FMA ports stay busy.
 *
 * Every C element is the same chain as in the AVX2 kernel: acc = 0, then
 * acc = fma(a_p, b_p, acc) for p = 0..kc-1 within a K block, then
 * alpha*acc (+ C or + beta*C) with separate multiply and add. With the
 * same K block (KC = 256) the results are bitwise those of the AVX2 path.
 * Edge tiles (m < ZMR rows or n < ZNR columns) use the same arithmetic;
 * only the loads and stores of C are masked.
 *
 * Cache blocks: a kc x ZNR strip of Bp (32 KiB float32, 32 KiB float64 with
 * ZNR = 16) in the 48 KiB L1d, the mc x kc block Ap (224 KiB float32) in L2.
 */
#include "pt_real.h"
#include "pt_dispatch.h"

#if PT_X86
#include "pt_avx512.h"

#if PT_DTYPE == 64
#define ZMC 112
#else
#define ZMC 224
#endif
#define ZMR 14
#define ZNV 2                 /* vectors per tile row */
#define ZNR (ZNV * ZW)
#define ZKC 256

PT_TARGET_AVX512
static void PT_SFX(kernel_avx512)(int64_t kc, const real *restrict Ap, const real *restrict Bp,
                                  int64_t ldbp, real *C, int64_t ldc, int64_t m, int64_t n,
                                  real alpha, real beta)
{
    zreal acc[ZMR][ZNV];
    #pragma GCC unroll 16
    for (int i = 0; i < ZMR; i++)
        #pragma GCC unroll 4
        for (int h = 0; h < ZNV; h++) acc[i][h] = Z_ZERO();
    /* Fetch the C tile now; it is needed only after the loop. (Prefetches
     * past the end of an array, here or of Ap below, are harmless.) */
    for (int64_t i = 0; i < m; i++) {
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + ZNR - 1), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < kc; p++) {
        _mm_prefetch((const char *)(Ap + 8 * ZMR), _MM_HINT_T0);  /* A streams from L2 */
        zreal b[ZNV];
        #pragma GCC unroll 4
        for (int h = 0; h < ZNV; h++) b[h] = Z_LOAD(Bp + h * ZW);
        #pragma GCC unroll 16
        for (int i = 0; i < ZMR; i++) {
            zreal a = Z_SET1(Ap[i]);
            #pragma GCC unroll 4
            for (int h = 0; h < ZNV; h++) acc[i][h] = Z_FMA(a, b[h], acc[i][h]);
        }
        Ap += ZMR;
        Bp += ldbp;
    }
    zmask mask[ZNV];
    for (int h = 0; h < ZNV; h++) mask[h] = Z_TAIL(n - h * ZW);
    zreal va = Z_SET1(alpha), vb = Z_SET1(beta);
    #pragma GCC unroll 16
    for (int i = 0; i < ZMR; i++) {
        if (i >= m) break;
        real *c = C + i * ldc;
        #pragma GCC unroll 4
        for (int h = 0; h < ZNV; h++) {
            zreal r = Z_MUL(va, acc[i][h]);
            if (beta == 1) r = Z_ADD(r, Z_MLOAD(c + h * ZW, mask[h]));
            else if (beta != 0) r = Z_ADD(r, Z_MUL(vb, Z_MLOAD(c + h * ZW, mask[h])));
            Z_MSTORE(c + h * ZW, mask[h], r);
        }
    }
}

const struct PT_SFX(pt_gemm_kernels) PT_SFX(pt_gemm_avx512) = {
    "avx512", PT_SFX(kernel_avx512), ZMR, ZNR, ZMC, ZKC};

#else
typedef int PT_SFX(gemm_avx512_unused);  /* not x86: nothing to compile */
#endif /* PT_X86 */
