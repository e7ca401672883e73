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



def linear_pack_size(int64_t OUT, int64_t IN):
    """Elements of the packed copy of a float32 weight (OUT, IN)."""
    return pt_linear_pack_size_f32(OUT, IN)


def linear_pack(object wp, object w):
    """wp (linear_pack_size(OUT, IN),) := w (OUT, IN) packed into the column
    panels of the linear family's packed kernel (csrc/linear_packed.c);
    float32, C-contiguous."""
    if not isinstance(w, np.ndarray) or w.ndim != 2:
        raise ValueError("w: expected a 2-D array (OUT, IN)")
    cdef int64_t OUT = w.shape[0], IN = w.shape[1]
    _check("w", w, np.float32, (OUT, IN))
    _check("wp", wp, np.float32, (pt_linear_pack_size_f32(OUT, IN),), out=True)
    check_status(pt_linear_pack_f32(<float *>_ptr(wp), <float *>_ptr(w), OUT, IN))


def linear_pack_matches(object wp, object w):
    """Whether wp holds w's values at the fixed sample of elements
    pt_linear_pack_matches compares."""
    cdef int64_t OUT = w.shape[0], IN = w.shape[1]
    _check("w", w, np.float32, (OUT, IN))
    _check("wp", wp, np.float32, (pt_linear_pack_size_f32(OUT, IN),))
    return bool(pt_linear_pack_matches_f32(<float *>_ptr(wp), <float *>_ptr(w), OUT, IN))


def linear_packed_forward(object y, object x, object wp, object w, object b):
    """y (N, OUT) := x (N, IN) @ w^T + b over wp (linear_pack of w) with the
    packed kernel of the linear path in use, up to the table's
    linear_packed_rows (PT_LINEAR_PACKED_ROWS); else pt_linear_forward over
    w. float32; b may be None."""
    if not isinstance(w, np.ndarray) or w.ndim != 2 or not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ValueError("x, w: expected 2-D arrays")
    cdef int64_t N = x.shape[0], IN = w.shape[1], OUT = w.shape[0]
    _check("w", w, np.float32, (OUT, IN))
    _check("x", x, np.float32, (N, IN))
    _check("wp", wp, np.float32, (pt_linear_pack_size_f32(OUT, IN),))
    _check("b", b, np.float32, (OUT,), optional=True)
    _check("y", y, np.float32, (N, OUT), out=True)
    cdef float *py = <float *>_ptr(y)
    cdef float *px = <float *>_ptr(x)
    cdef float *pp = <float *>_ptr(wp)
    cdef float *pw = <float *>_ptr(w)
    cdef float *pb = <float *>_ptr(b)
    cdef int st
    with nogil:
        st = pt_linear_packed_forward_f32(py, px, pp, pw, pb, N, IN, OUT)
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
