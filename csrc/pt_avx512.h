/*
 * pt_avx512.h -- the AVX-512 vector of the file's element type (internal).
 *
 * Included by typed files (after pt_real.h), inside their x86 guard, by code
 * compiled with PT_TARGET_AVX512 (below). One name per intrinsic so the
 * float32 and float64 builds share one source: zreal holds ZW reals
 * (16 floats or 8 doubles), zmask one bit per lane. The names differ from
 * pt_avx2.h's (vreal, V_*), so one file may include both.
 *
 * Tails: Z_TAIL(n) is the mask of the first n lanes (none for n <= 0, all
 * for n >= ZW). Z_MLOAD zeroes the lanes outside the mask and does not
 * touch their memory (no fault past the end of an array), Z_MSTORE writes
 * only the lanes inside it; both cost the same as the unmasked forms.
 */
#ifndef PT_AVX512_H
#define PT_AVX512_H
#include <immintrin.h>

/* The feature set every AVX-512 kernel may use (Skylake-SP and later,
 * Zen 4): F, BW, DQ, VL, plus FMA for the 128/256-bit forms. */
#define PT_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

#if PT_DTYPE == 64
typedef __m512d zreal;
typedef __mmask8 zmask;
#define ZW 8
#define Z_ZERO _mm512_setzero_pd
#define Z_SET1 _mm512_set1_pd
#define Z_BCAST(p) _mm512_set1_pd(*(p))                 /* one real from memory */
#define Z_LOAD _mm512_loadu_pd
#define Z_STORE _mm512_storeu_pd
#define Z_MLOAD(p, k) _mm512_maskz_loadu_pd((k), (p))   /* lanes outside k: 0 */
#define Z_MSTORE(p, k, x) _mm512_mask_storeu_pd((p), (k), (x))
#define Z_FMA _mm512_fmadd_pd                           /* a*b + c */
#define Z_FMS _mm512_fmsub_pd                           /* a*b - c */
#define Z_FNMA _mm512_fnmadd_pd                         /* c - a*b */
#define Z_MUL _mm512_mul_pd
#define Z_ADD _mm512_add_pd
#define Z_SUB _mm512_sub_pd
#define Z_DIV _mm512_div_pd
#define Z_SQRT _mm512_sqrt_pd
#define Z_MAX _mm512_max_pd                             /* max(a, b): b when either is NaN */
#define Z_MIN _mm512_min_pd
#define Z_ABS _mm512_abs_pd                             /* |a| (clears the sign bit) */
#define Z_MASK_ADD _mm512_mask_add_pd                   /* (src, k, a, b) */
#define Z_MASK_MOV _mm512_mask_mov_pd                   /* (src, k, a) */
#define Z_KEEP(k, x) _mm512_maskz_mov_pd((k), (x))      /* lanes outside k: 0 */
#define Z_CMP_MASK _mm512_cmp_pd_mask                   /* (a, b, _CMP_*) -> zmask */
#define Z_REDUCE_ADD _mm512_reduce_add_pd               /* fixed tree over the lanes */
#define Z_REDUCE_MAX _mm512_reduce_max_pd
#else
typedef __m512 zreal;
typedef __mmask16 zmask;
#define ZW 16
#define Z_ZERO _mm512_setzero_ps
#define Z_SET1 _mm512_set1_ps
#define Z_BCAST(p) _mm512_set1_ps(*(p))
#define Z_LOAD _mm512_loadu_ps
#define Z_STORE _mm512_storeu_ps
#define Z_MLOAD(p, k) _mm512_maskz_loadu_ps((k), (p))
#define Z_MSTORE(p, k, x) _mm512_mask_storeu_ps((p), (k), (x))
#define Z_FMA _mm512_fmadd_ps
#define Z_FMS _mm512_fmsub_ps
#define Z_FNMA _mm512_fnmadd_ps
#define Z_MUL _mm512_mul_ps
#define Z_ADD _mm512_add_ps
#define Z_SUB _mm512_sub_ps
#define Z_DIV _mm512_div_ps
#define Z_SQRT _mm512_sqrt_ps
#define Z_MAX _mm512_max_ps
#define Z_MIN _mm512_min_ps
#define Z_ABS _mm512_abs_ps
#define Z_MASK_ADD _mm512_mask_add_ps
#define Z_MASK_MOV _mm512_mask_mov_ps
#define Z_KEEP(k, x) _mm512_maskz_mov_ps((k), (x))
#define Z_CMP_MASK _mm512_cmp_ps_mask
#define Z_REDUCE_ADD _mm512_reduce_add_ps
#define Z_REDUCE_MAX _mm512_reduce_max_ps
#endif

/* Mask of the first n lanes of a zreal: 0 for n <= 0, all ZW for n >= ZW.
 * n is evaluated more than once. */
#define Z_TAIL(n) ((zmask)((n) >= ZW ? (1u << ZW) - 1u : (n) <= 0 ? 0u : (1u << (n)) - 1u))

#endif /* PT_AVX512_H */
