# _core_layernorm.pxi: bindings for csrc/layernorm.c (included by _core.pyx).

def layernorm_forward(object y, object mean, object rstd, object x,
                      object w, object b, double eps):
    """y, mean, rstd := layer norm of x (N, C) with optional w, b (C,)."""
    dt = x.dtype
    cdef int64_t N = x.shape[0], C = x.shape[1]
    cdef void *py = _ptr(y)
    cdef void *pm = _ptr(mean)
    cdef void *pr = _ptr(rstd)
    cdef void *px = _ptr(x)
    cdef void *pw = _ptr(w)
    cdef void *pb = _ptr(b)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_layernorm_forward_f32(<float *>py, <float *>pm, <float *>pr, <float *>px,
                                          <float *>pw, <float *>pb, N, C, <float>eps)
    else:
        with nogil:
            st = pt_layernorm_forward_f64(<double *>py, <double *>pm, <double *>pr, <double *>px,
                                          <double *>pw, <double *>pb, N, C, eps)
    check_status(st)


def layernorm_backward(object dx, object dw, object db, object dy, object x,
                       object w, object mean, object rstd, bint accumulate=True):
    """dx, dw, db += the gradients of layer norm (accumulate) or := them (not
    accumulate: the buffers are not read, and dx may be dy itself). Any of
    dx, dw, db may be None."""
    dt = x.dtype
    cdef int64_t N = x.shape[0], C = x.shape[1]
    cdef void *pdx = _ptr(dx)
    cdef void *pdw = _ptr(dw)
    cdef void *pdb = _ptr(db)
    cdef void *pdy = _ptr(dy)
    cdef void *px = _ptr(x)
    cdef void *pw = _ptr(w)
    cdef void *pm = _ptr(mean)
    cdef void *pr = _ptr(rstd)
    cdef int acc = 1 if accumulate else 0
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_layernorm_backward_f32(<float *>pdx, <float *>pdw, <float *>pdb, <float *>pdy,
                                           <float *>px, <float *>pw, <float *>pm, <float *>pr, N, C, acc)
    else:
        with nogil:
            st = pt_layernorm_backward_f64(<double *>pdx, <double *>pdw, <double *>pdb, <double *>pdy,
                                           <double *>px, <double *>pw, <double *>pm, <double *>pr, N, C, acc)
    check_status(st)
