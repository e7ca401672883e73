/*
 * blas.c -- the BLAS hook. The Python layer (pytransformer/_blas.pyx) hands
 * us scipy.linalg.cython_blas's sgemm/dgemm at import; without SciPy the
 * pointers stay NULL and gemm.c uses its own fallback. Not typed.
 */
#include <stddef.h>
#include "pt.h"
#include "pt_blas.h"

pt_sgemm_fn pt_blas_sgemm = NULL;
pt_dgemm_fn pt_blas_dgemm = NULL;

void pt_set_blas(pt_sgemm_fn sgemm, pt_dgemm_fn dgemm)
{
    pt_blas_sgemm = sgemm;
    pt_blas_dgemm = dgemm;
}

int pt_blas_available(void) { return pt_blas_sgemm != NULL && pt_blas_dgemm != NULL; }
