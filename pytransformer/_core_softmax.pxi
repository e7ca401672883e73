# _core_softmax.pxi: bindings for csrc/softmax.c (included by _core.pyx).

def softmax_forward(object y, object x, bint log):
    """y := softmax(x) (or log_softmax when log) over the last axis of x (N, C).
    y may be x itself (in place)."""
    dt = x.dtype
    cdef int64_t N = x.shape[0], C = x.shape[1]
    cdef void *py = _ptr(y)
    cdef void *px = _ptr(x)
    cdef int lg = log
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_softmax_forward_f32(<float *>py, <float *>px, N, C, lg)
    else:
        with nogil:
            st = pt_softmax_forward_f64(<double *>py, <double *>px, N, C, lg)
    check_status(st)


def softmax_backward(object dx, object dy, object y, bint log, bint accumulate=True):
    """dx += gradient of softmax (or log_softmax) given the forward output y
    (with accumulate=False: dx := it, dx not read)."""
    dt = y.dtype
    cdef int64_t N = y.shape[0], C = y.shape[1]
    cdef void *pdx = _ptr(dx)
    cdef void *pdy = _ptr(dy)
    cdef void *py = _ptr(y)
    cdef int lg = log
    cdef int acc = accumulate
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_softmax_backward_f32(<float *>pdx, <float *>pdy, <float *>py, N, C, lg, acc)
    else:
        with nogil:
            st = pt_softmax_backward_f64(<double *>pdx, <double *>pdy, <double *>py, N, C, lg,
                                         acc)
    check_status(st)


def cross_entropy_forward(object loss, object lse, object logits, object targets,
                          int64_t ignore_index, double label_smoothing):
    """loss (N,), lse (N,) := per-row cross-entropy of logits (N, C) against
    int64 targets (N,) in [0, C) or == ignore_index."""
    dt = logits.dtype
    cdef int64_t N = logits.shape[0], C = logits.shape[1]
    if not (0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing}")
    cdef void *pl = _ptr(loss)
    cdef void *pe = _ptr(lse)
    cdef void *px = _ptr(logits)
    cdef const int64_t *pt = <const int64_t *>_ptr(targets)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_cross_entropy_forward_f32(<float *>pl, <float *>pe, <float *>px, pt,
                                              N, C, ignore_index, <float>label_smoothing)
    else:
        with nogil:
            st = pt_cross_entropy_forward_f64(<double *>pl, <double *>pe, <double *>px, pt,
                                              N, C, ignore_index, label_smoothing)
    if st == PT_EINVAL:
        raise ValueError(f"targets: a value is outside [0, {C}) and != ignore_index {ignore_index}")
    check_status(st)


def cross_entropy_backward(object dlogits, object logits, object lse, object targets,
                           object dloss, int64_t ignore_index, double label_smoothing,
                           bint accumulate=True):
    """dlogits (N, C) += dloss[n] * (softmax(logits[n]) - smoothed one-hot)
    (with accumulate=False: := it, dlogits not read; ignored rows get 0).
    dloss is (N,) (one gradient per row) or 0-d (the same for every row)."""
    dt = logits.dtype
    cdef int64_t N = logits.shape[0], C = logits.shape[1]
    cdef int64_t stride = 0 if dloss.ndim == 0 else 1
    if not (0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing}")
    cdef void *pd = _ptr(dlogits)
    cdef void *px = _ptr(logits)
    cdef void *pe = _ptr(lse)
    cdef void *pg = _ptr(dloss)
    cdef const int64_t *pt = <const int64_t *>_ptr(targets)
    cdef int acc = accumulate
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_cross_entropy_backward_f32(<float *>pd, <float *>px, <float *>pe, pt,
                                               <float *>pg, stride, N, C, ignore_index,
                                               <float>label_smoothing, acc)
    else:
        with nogil:
            st = pt_cross_entropy_backward_f64(<double *>pd, <double *>px, <double *>pe, pt,
                                               <double *>pg, stride, N, C, ignore_index,
                                               label_smoothing, acc)
    if st == PT_EINVAL:
        raise ValueError(f"targets: a value is outside [0, {C}) and != ignore_index {ignore_index}")
    check_status(st)
