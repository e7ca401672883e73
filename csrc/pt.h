/*
 * pt.h -- the one public header of the pytransformer C core.
 *
 * Plain C99 + optional OpenMP; no Python headers. Every kernel exists for
 * float32 (suffix _f32) and float64 (suffix _f64); the typed bodies are
 * written once with `real` and `PT_FN(name)` (see pt_real.h) and compiled
 * twice, with -DPT_DTYPE=32 and -DPT_DTYPE=64.
 *
 * Conventions, once for every kernel (after llm.c):
 *   - Argument order: outputs, then what forward saves for backward
 *     (caches), then inputs, then sizes, then scalar options.
 *   - All arrays are C-contiguous, caller-owned, and do not alias unless the
 *     kernel says so. C allocates nothing it does not free before returning,
 *     and never exits.
 *   - Backward kernels ADD into the gradient buffers (dx, dw, ...), which the
 *     caller zeroes first. A NULL gradient pointer means "not needed".
 *   - Every kernel returns an int status: PT_OK, or PT_EINVAL / PT_ENOMEM,
 *     which pt_strerror() turns into text. Shapes are checked by the caller
 *     (the Cython layer); C re-checks only what would otherwise read or write
 *     out of bounds (sizes < 0, index ranges).
 *   - Threads: kernels use pt_get_num_threads() OpenMP threads.
 *
 * Size legend: N rows (all leading dims flattened), C channels (last dim),
 * B batch, H heads, Tq/Tk query/key lengths, D head size of q and k, Dv head
 * size of v, V vocabulary size.
 */
#ifndef PT_H
#define PT_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */
enum { PT_OK = 0, PT_EINVAL = 1, PT_ENOMEM = 2 };
const char *pt_strerror(int status);

/* --------------------------------------------------------------- threads */
#define PT_MAX_THREADS 1024       /* more would only exhaust the OS */
int pt_has_openmp(void);          /* 1 when built with OpenMP */
void pt_set_num_threads(int n);   /* clamped to [1, PT_MAX_THREADS] */
int pt_get_num_threads(void);     /* threads the kernels use */
int pt_num_procs(void);           /* processors OpenMP sees (1 without it) */

/* 1 when the AVX2+FMA kernels may run (CPU has them, PT_PORTABLE unset). */
int pt_cpu_avx2_fma(void);

/* Measured fp32 multiply-add throughput (FLOP/s, an FMA counting 2) of
 * nthreads threads running iters rounds each of register-only FMA chains
 * (peak.c): the benchmark's 100%. */
double pt_fma_peak_flops(int nthreads, int64_t iters);

/* ------------------------------------------------------------------ BLAS */
/* Fortran (column-major) ?gemm, exactly the signature scipy.linalg.cython_blas
 * exports. pt_set_blas(NULL, NULL) selects the C fallback. */
typedef void (*pt_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            float *alpha, float *a, int *lda, float *b, int *ldb,
                            float *beta, float *c, int *ldc);
typedef void (*pt_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            double *alpha, double *a, int *lda, double *b, int *ldb,
                            double *beta, double *c, int *ldc);
void pt_set_blas(pt_sgemm_fn sgemm, pt_dgemm_fn dgemm);
int pt_blas_available(void);      /* 1 when a BLAS pointer is set */

/* Activation kinds for pt_bias_act_*. */
enum { PT_ACT_NONE = 0, PT_ACT_RELU = 1, PT_ACT_GELU_ERF = 2, PT_ACT_GELU_TANH = 3 };

/* Dropout mask: deterministic in (seed, element index), whatever the
 * thread count. keep[i] = 1 with probability 1 - p. */
int pt_dropout_mask(uint8_t *keep, int64_t n, double p, uint64_t seed);

/* The typed kernels, declared once per dtype. */
#define real float
#define PT_FN(name) name##_f32
#include "pt_kernels.h"
#undef real
#undef PT_FN
#define real double
#define PT_FN(name) name##_f64
#include "pt_kernels.h"
#undef real
#undef PT_FN

#ifdef __cplusplus
}
#endif
#endif /* PT_H */
