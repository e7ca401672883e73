# _core_linear.pxi: bindings for csrc/linear.c (included by _core.pyx).

def linear_forward(object y, object x, object w, object b):
    """y (N, OUT) := x (N, IN) @ w (OUT, IN)^T + b (OUT,); b may be None."""
    dt = x.dtype
    cdef int64_t N = x.shape[0], IN = x.shape[1], OUT = w.shape[0]
    cdef void *py = _ptr(y)
    cdef void *px = _ptr(x)
    cdef void *pw = _ptr(w)
    cdef void *pb = _ptr(b)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_linear_forward_f32(<float *>py, <float *>px, <float *>pw, <float *>pb,
                                       N, IN, OUT)
    else:
        with nogil:
            st = pt_linear_forward_f64(<double *>py, <double *>px, <double *>pw, <double *>pb,
                                       N, IN, OUT)
    check_status(st)


def linear_backward(object dx, object dw, object db, object dy, object x, object w,
                    bint accumulate=True):
    """dx (N, IN) += dy @ w;  dw (OUT, IN) += dy^T @ x;  db (OUT,) += dy.sum(0)
    (with accumulate=False: = instead of +=, the buffers are not read).
    Any of dx, dw, db may be None."""
    dt = x.dtype
    cdef int64_t N = x.shape[0], IN = x.shape[1], OUT = w.shape[0]
    cdef void *pdx = _ptr(dx)
    cdef void *pdw = _ptr(dw)
    cdef void *pdb = _ptr(db)
    cdef void *pdy = _ptr(dy)
    cdef void *px = _ptr(x)
    cdef void *pw = _ptr(w)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_linear_backward_f32(<float *>pdx, <float *>pdw, <float *>pdb, <float *>pdy,
                                        <float *>px, <float *>pw, N, IN, OUT, accumulate)
    else:
        with nogil:
            st = pt_linear_backward_f64(<double *>pdx, <double *>pdw, <double *>pdb, <double *>pdy,
                                        <double *>px, <double *>pw, N, IN, OUT, accumulate)
    check_status(st)


# The linear layers' GEMMs go through the BLAS; its threads (csrc/blas.c).
cdef extern from *:
    """
    int pt_blas_share_threads(void *set_callback);
    int pt_blas_threads_shared(void);
    """
    int pt_blas_share_threads(void *set_callback)
    int pt_blas_threads_shared()


def blas_share_threads():
    """Have SciPy's OpenBLAS run its threaded calls on our OpenMP threads
    (csrc/blas.c) instead of its own pool. The hook's address comes only
    from pytransformer._blas. Returns whether the threads are shared (False
    without SciPy or with a BLAS that has no such hook)."""
    from pytransformer import _blas
    addr = _blas.openblas_threads_hook()
    if addr is None:
        return bool(pt_blas_threads_shared())
    cdef uintptr_t a = addr
    check_status(pt_blas_share_threads(<void *>a))
    return True


def blas_threads_shared():
    """Whether SciPy's OpenBLAS runs its threaded calls on our OpenMP threads."""
    return bool(pt_blas_threads_shared())
