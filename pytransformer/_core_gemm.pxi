# _core_gemm.pxi: bindings for csrc/gemm.c (included by _core.pyx).

def gemm(object c, object a, object b, bint trans_a=False, bint trans_b=False,
         double alpha=1.0, double beta=0.0, bint fallback=False):
    """c := alpha * op(a) @ op(b) + beta * c on 2-D C-contiguous arrays.

    fallback=True forces the C fallback even when a BLAS is installed.
    """
    dt = a.dtype
    cdef int64_t M = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t K = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t N = b.shape[0] if trans_b else b.shape[1]
    cdef int64_t lda = a.shape[1], ldb = b.shape[1], ldc = N
    cdef void *pa = _ptr(a)
    cdef void *pb = _ptr(b)
    cdef void *pc = _ptr(c)
    cdef int st, ta = trans_a, tb = trans_b, fb = fallback
    if dt == np.float32:
        with nogil:
            if fb:
                st = pt_gemm_fallback_f32(ta, tb, M, N, K, <float>alpha, <float *>pa, lda,
                                          <float *>pb, ldb, <float>beta, <float *>pc, ldc)
            else:
                st = pt_gemm_f32(ta, tb, M, N, K, <float>alpha, <float *>pa, lda,
                                 <float *>pb, ldb, <float>beta, <float *>pc, ldc)
    else:
        with nogil:
            if fb:
                st = pt_gemm_fallback_f64(ta, tb, M, N, K, alpha, <double *>pa, lda,
                                          <double *>pb, ldb, beta, <double *>pc, ldc)
            else:
                st = pt_gemm_f64(ta, tb, M, N, K, alpha, <double *>pa, lda,
                                 <double *>pb, ldb, beta, <double *>pc, ldc)
    check_status(st)
    return c
