# _core_activation.pxi: bindings for csrc/activation.c (included by _core.pyx).

ACT_KINDS = {"none": PT_ACT_NONE, "relu": PT_ACT_RELU,
             "gelu": PT_ACT_GELU_ERF, "gelu_tanh": PT_ACT_GELU_TANH}


cdef int _act_kind(object kind) except -1:
    if kind not in ACT_KINDS:
        raise ValueError(f"activation: expected one of {sorted(ACT_KINDS)}, got {kind!r}")
    return ACT_KINDS[kind]


def bias_act_forward(object y, object x, object bias, object kind):
    """y (N, C) := act(x + bias) with bias (C,) or None; y may be x (in place).
    kind: 'none', 'relu', 'gelu' (erf form) or 'gelu_tanh'."""
    cdef int k = _act_kind(kind)
    dt = x.dtype
    cdef int64_t N = x.shape[0], C = x.shape[1]
    cdef void *py = _ptr(y)
    cdef void *px = _ptr(x)
    cdef void *pb = _ptr(bias)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_bias_act_forward_f32(<float *>py, <float *>px, <float *>pb, N, C, k)
    else:
        with nogil:
            st = pt_bias_act_forward_f64(<double *>py, <double *>px, <double *>pb, N, C, k)
    check_status(st)


def bias_act_backward(object dx, object dbias, object dy, object x, object bias, object kind,
                      bint accumulate=True):
    """dx (N, C) += dy * act'(x + bias);  dbias (C,) += its column sums
    (with accumulate=False: = instead of +=, the buffers are not read).
    dx or dbias may be None; x is the forward input (before the bias)."""
    cdef int k = _act_kind(kind)
    dt = x.dtype
    cdef int64_t N = x.shape[0], C = x.shape[1]
    cdef void *pdx = _ptr(dx)
    cdef void *pdb = _ptr(dbias)
    cdef void *pdy = _ptr(dy)
    cdef void *px = _ptr(x)
    cdef void *pb = _ptr(bias)
    cdef int acc = accumulate
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_bias_act_backward_f32(<float *>pdx, <float *>pdb, <float *>pdy,
                                          <float *>px, <float *>pb, N, C, k, acc)
    else:
        with nogil:
            st = pt_bias_act_backward_f64(<double *>pdx, <double *>pdb, <double *>pdy,
                                          <double *>px, <double *>pb, N, C, k, acc)
    check_status(st)
