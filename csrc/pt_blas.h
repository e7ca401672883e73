/* pt_blas.h -- internal: the BLAS pointers set by pt_set_blas (blas.c). */
#ifndef PT_BLAS_H
#define PT_BLAS_H
#include "pt.h"
extern pt_sgemm_fn pt_blas_sgemm;
extern pt_dgemm_fn pt_blas_dgemm;
#endif
