/*
 * pt_avx2.h -- the AVX2 vector of the file's element type (internal).
 *
 * Included by typed files (after pt_real.h), inside their x86 guard, by the
 * code compiled with __attribute__((target("avx2,fma"))): gemm.c's
 * micro-kernel, attention_tile.c's tile products and optim.c's AdamW
 * step. One name per intrinsic so the float32 and float64 builds share one
 * source: vreal holds VW reals (8 floats or 4 doubles).
 */
#ifndef PT_AVX2_H
#define PT_AVX2_H
#include <immintrin.h>

#if PT_DTYPE == 64
typedef __m256d vreal;
#define VW 4
#define V_ZERO _mm256_setzero_pd
#define V_SET1 _mm256_set1_pd
#define V_BCAST _mm256_broadcast_sd
#define V_LOAD _mm256_loadu_pd
#define V_STORE _mm256_storeu_pd
#define V_MLOAD _mm256_maskload_pd
#define V_MSTORE _mm256_maskstore_pd
#define V_FMA _mm256_fmadd_pd
#define V_MUL _mm256_mul_pd
#define V_ADD _mm256_add_pd
#define V_SUB _mm256_sub_pd
#define V_DIV _mm256_div_pd
#define V_SQRT _mm256_sqrt_pd
#else
typedef __m256 vreal;
#define VW 8
#define V_ZERO _mm256_setzero_ps
#define V_SET1 _mm256_set1_ps
#define V_BCAST _mm256_broadcast_ss
#define V_LOAD _mm256_loadu_ps
#define V_STORE _mm256_storeu_ps
#define V_MLOAD _mm256_maskload_ps
#define V_MSTORE _mm256_maskstore_ps
#define V_FMA _mm256_fmadd_ps
#define V_MUL _mm256_mul_ps
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_DIV _mm256_div_ps
#define V_SQRT _mm256_sqrt_ps
#endif

#endif /* PT_AVX2_H */
