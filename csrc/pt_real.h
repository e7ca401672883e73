/*
 * pt_real.h -- the element type of a typed kernel file.
 *
 * Typed files (gemm.c, softmax.c, ...) are compiled twice, with
 * -DPT_DTYPE=32 and -DPT_DTYPE=64. They write `real` for the element type,
 * PT_FN(name) for a public kernel name (name_f32 / name_f64) and
 * PT_SFX(name) for a file-local helper that must not clash between the two
 * builds when statically linked.
 *
 * Math: use the type-generic helpers below instead of expf/exp.
 */
#ifndef PT_REAL_H
#define PT_REAL_H

#include <math.h>
#include "pt.h"

#if !defined(PT_DTYPE) || PT_DTYPE == 32
#define real float
#define PT_FN(name) name##_f32
#define PT_SFX(name) name##_f32
#define r_exp expf
#define r_log logf
#define r_sqrt sqrtf
#define r_erf erff
#define r_tanh tanhf
#define r_sin sinf
#define r_cos cosf
#define r_pow powf
#define r_fabs fabsf
#elif PT_DTYPE == 64
#define real double
#define PT_FN(name) name##_f64
#define PT_SFX(name) name##_f64
#define r_exp exp
#define r_log log
#define r_sqrt sqrt
#define r_erf erf
#define r_tanh tanh
#define r_sin sin
#define r_cos cos
#define r_pow pow
#define r_fabs fabs
#else
#error "PT_DTYPE must be 32 or 64"
#endif

#endif /* PT_REAL_H */
