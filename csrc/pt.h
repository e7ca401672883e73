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
 *   - Backward kernels take `accumulate` last: != 0 adds into the gradient
 *     buffers (dx, dw, ...), 0 stores into them without reading them (no
 *     zeroing pass); pt_kernels.h states it in full. A NULL gradient
 *     pointer means "not needed".
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

/* ------------------------------------------------------------ ISA levels
 * The SIMD path of every kernel family is chosen once, by level (dispatch.c):
 *   portable  the baseline ISA the build targets (SSE2 on x86-64)
 *   avx2      AVX2 + FMA (and the OS saves the YMM state)
 *   avx512    AVX-512 F, BW, DQ, VL + FMA (and the OS saves the ZMM and
 *             opmask state)
 * pt_isa_init() reads the CPU (cpuid, xgetbv) and the environment:
 * PT_ISA=portable|avx2|avx512 forces a level at or below the CPU's (a
 * higher or unknown value leaves the CPU's level, and the reason says so);
 * PT_PORTABLE=1 is an alias of PT_ISA=portable. It fills the dispatch table
 * and returns the level. Call it once at load, before any kernel runs (the
 * Python module and the C test do; until then every family runs its
 * portable path); calling it again re-reads the environment and rewrites
 * the table, so never while a kernel runs. */
enum { PT_ISA_PORTABLE = 0, PT_ISA_AVX2 = 1, PT_ISA_AVX512 = 2, PT_ISA_COUNT = 3 };
int pt_isa_init(void);
int pt_isa_level(void);            /* the level in use */
int pt_isa_cpu_level(void);        /* the highest level this CPU and OS run */
const char *pt_isa_name(int level);  /* "portable", "avx2", "avx512"; NULL if out of range */
const char *pt_isa_reason(void);   /* why the level in use: CPU, PT_ISA, PT_PORTABLE */
/* Kernel families (gemm, attention, activation, layernorm, softmax, adamw,
 * linear) and the path each takes for float32 (dtype 32) or float64 (64):
 * the name of the level whose code it runs ("avx2" for a family whose
 * avx512 slot still holds the AVX2 code). */
int pt_isa_family_count(void);
const char *pt_isa_family_name(int family);
const char *pt_isa_family_path(int family, int dtype);

/* Measured fp32 multiply-add throughput (FLOP/s, an FMA counting 2) of
 * nthreads threads running iters rounds each of register-only FMA chains
 * (peak.c) with the vectors of ISA level `level` (one lane for portable);
 * 0 for a level this CPU does not run. The benchmarks' 100% is the peak of
 * the level in use. */
double pt_fma_peak_flops_isa(int level, int nthreads, int64_t iters);
/* The same at the level in use. */
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

/* cache_gather.c: dst row i := src row index[i] of a (B, H, capacity, d)
 * key/value cache of elem-byte numbers, the first t positions of each head
 * only (beam search's reordering); dst holds n rows, never overlaps src. */
int pt_cache_gather(void *dst, const void *src, const int64_t *index, int64_t n, int64_t B,
                    int64_t H, int64_t capacity, int64_t t, int64_t d, int64_t elem);

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
