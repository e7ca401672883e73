/*
 * pt_dispatch.h -- the one table of SIMD kernel paths (internal).
 *
 * The CPU's ISA level is read once (cpuid, and xgetbv for the register
 * state the OS saves) by pt_isa_init() (dispatch.c), which the Python
 * module calls when it loads and the C test calls in main(); PT_ISA in the
 * environment may force a lower level (pt.h). pt_isa_init fills the table
 * below: per kernel family and per dtype, a pointer to a const struct of
 * the functions that family calls in its hot loops. Kernels read the table
 * and never write it; before pt_isa_init runs it holds the portable paths.
 *
 * Each family's file (gemm.c, attention_tile.c, ...) defines its structs,
 * one per path and dtype, e.g. `const struct pt_gemm_kernels_f32
 * pt_gemm_avx2_f32`; dispatch.c lists, per family, which struct each level
 * uses. A new path (say an AVX-512 one in gemm_avx512.c) defines its
 * structs (typed: PT_SFX(pt_gemm_avx512), for both dtypes, or the other
 * dtype keeps its existing struct) with the slot signatures documented in
 * pt_dispatch_slots.h (which already declares pt_<family>_avx512_f32 and
 * _f64), and changes that family's avx512 entry in dispatch.c, e.g.
 *     ROW(pt_gemm, _f32, &pt_gemm_avx2_f32, &pt_gemm_avx512_f32);
 * one line per dtype.
 *
 * Include before or after pt_real.h; a typed file reads its family's
 * entry as PT_KERNELS(gemm)->ukernel (the _f32 or _f64 member).
 */
#ifndef PT_DISPATCH_H
#define PT_DISPATCH_H

#include <stdint.h>
#include "pt.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define PT_X86 1
#else
#define PT_X86 0
#endif

/* The slot structs for float (PT_DREAL float, names _f32) and double
 * (PT_DREAL double, names _f64). */
#define PT_DREAL float
#define PT_DSFX(name) name##_f32
#include "pt_dispatch_slots.h"
#undef PT_DREAL
#undef PT_DSFX
#define PT_DREAL double
#define PT_DSFX(name) name##_f64
#include "pt_dispatch_slots.h"
#undef PT_DREAL
#undef PT_DSFX

/* Kernel families, in the order pt_isa_family_name() lists them. */
enum { PT_FAM_GEMM, PT_FAM_ATTENTION, PT_FAM_ACTIVATION, PT_FAM_LAYERNORM,
       PT_FAM_SOFTMAX, PT_FAM_ADAMW, PT_FAM_LINEAR, PT_FAM_COUNT };

struct pt_dispatch {
    const struct pt_gemm_kernels_f32 *gemm_f32;
    const struct pt_gemm_kernels_f64 *gemm_f64;
    const struct pt_att_kernels_f32 *att_f32;
    const struct pt_att_kernels_f64 *att_f64;
    const struct pt_act_kernels_f32 *act_f32;
    const struct pt_act_kernels_f64 *act_f64;
    const struct pt_ln_kernels_f32 *ln_f32;
    const struct pt_ln_kernels_f64 *ln_f64;
    const struct pt_sm_kernels_f32 *sm_f32;
    const struct pt_sm_kernels_f64 *sm_f64;
    const struct pt_adamw_kernels_f32 *adamw_f32;
    const struct pt_adamw_kernels_f64 *adamw_f64;
    const struct pt_lin_kernels_f32 *lin_f32;
    const struct pt_lin_kernels_f64 *lin_f64;
    /* linear.c's row thresholds, read at init like PT_ISA: below
     * linear_swap_rows, with a BLAS, forward as y^T = w x^T
     * (PT_LINEAR_SWAP_ROWS, else PT_LINEAR_SWAP_ROWS_DEFAULT); up to
     * linear_dot_rows, the float32 dot kernel of the linear path in use
     * (PT_LINEAR_DOT_ROWS, else that path's max_rows). Both environment
     * variables are for benchmarks and tests; 0: never. The dot kernel
     * runs on one thread below linear_par_min multiply-adds
     * (PT_LINEAR_PAR_MIN, else that path's par_min). Over a packed weight
     * (linear_packed.c) the packed kernel runs up to linear_packed_rows
     * (PT_LINEAR_PACKED_ROWS, else PT_LINEAR_PACKED_ROWS_DEFAULT; 0:
     * never). */
    int64_t linear_swap_rows, linear_dot_rows, linear_par_min, linear_packed_rows;
};
/* linear.c and its paths, measured against OpenBLAS: the swapped product
 * below 128 rows; the AVX2 dot kernel up to 20 rows (an AMD EPYC; on an
 * AVX-512 CPU OpenBLAS's SkylakeX sgemm beats it from about 5), the
 * AVX-512 one (linear_avx512.c) up to 64 (level with the sgemm from about
 * 96 rows on an Intel Xeon). */
#define PT_LINEAR_SWAP_ROWS_DEFAULT 128
#define PT_LINEAR_DOT_ROWS_AVX2 20
#define PT_LINEAR_DOT_ROWS_AVX512 64
/* The packed kernel against OpenBLAS over MiniLM's projections (Intel
 * Xeon, 1 thread): faster at 128 rows, level at 480. */
#define PT_LINEAR_PACKED_ROWS_DEFAULT 512

/* Written by pt_isa_init only (before any kernel runs); read by kernels. */
extern struct pt_dispatch pt_dispatch;

/* The threads a linear kernel uses for an (N, IN) x (IN, OUT) product:
 * one below linear_par_min multiply-adds, else nth. */
static inline int pt_linear_threads(int64_t N, int64_t IN, int64_t OUT, int nth)
{
    return (double)N * (double)IN * (double)OUT < (double)pt_dispatch.linear_par_min ? 1 : nth;
}

/* cpu.c: the highest level the CPU and OS run; *why says why not higher. */
int pt_cpu_detect_level(const char **why);

/* This dtype's entry of a family, in a typed file: PT_KERNELS(gemm). */
#define PT_KERNELS(fam) (pt_dispatch.PT_SFX(fam))

#endif /* PT_DISPATCH_H */
