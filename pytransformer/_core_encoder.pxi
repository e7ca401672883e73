# _core_encoder.pxi: bindings for csrc/linear_rows.c, the encoder's
# projections for inputs of few rows (included by _core.pyx).

cdef extern from "pt_linear_rows.h" nogil:
    int64_t PT_LINEAR_ROWS_MAX
    int64_t pt_linear_rows_max
    int pt_linear_rows_forward_f32(float *y, const float *x, const float *w, const float *b,
                                   int64_t N, int64_t IN, int64_t OUT)
    int pt_linear_rows_forward_f64(double *y, const double *x, const double *w,
                                   const double *b, int64_t N, int64_t IN, int64_t OUT)


def linear_rows_forward(object x, object w, object b=None):
    """y (N, OUT) = x (N, IN) w (OUT, IN)^T + b (OUT,) or no bias, as the
    encoder stack computes its projections: linear_rows.c's kernel for
    float32 inputs of at most linear_rows_max() rows on an avx512 CPU,
    else linear_forward's path. Arrays C-contiguous, one float dtype;
    TypeError/ValueError name the first that is not."""
    dt = _float_dtype("x", x)
    if x.ndim != 2 or not isinstance(w, np.ndarray) or w.ndim != 2:
        raise ValueError("x, w: expected 2-D arrays (N, IN) and (OUT, IN)")
    cdef int64_t N = x.shape[0], IN = x.shape[1], OUT = w.shape[0]
    _check("x", x, dt, (N, IN))
    _check("w", w, dt, (OUT, IN))
    _check("b", b, dt, (OUT,), optional=True)
    y = np.empty((N, OUT), dt)
    cdef void *py = _ptr(y)
    cdef void *px = _ptr(x)
    cdef void *pw = _ptr(w)
    cdef void *pb = _ptr(b)
    cdef int st
    cdef bint f32 = dt == np.float32
    with nogil:
        if f32:
            st = pt_linear_rows_forward_f32(<float *>py, <float *>px, <float *>pw, <float *>pb,
                                            N, IN, OUT)
        else:
            st = pt_linear_rows_forward_f64(<double *>py, <double *>px, <double *>pw,
                                            <double *>pb, N, IN, OUT)
    check_status(st)
    return y


def linear_rows_max(object n=None):
    """The row count up to which the encoder's projections use
    linear_rows.c's kernel (float32, avx512); with n (an int >= 0, 0 =
    never), set it and return the previous value. For benchmarks and
    tests: the default is the measured PT_LINEAR_ROWS_MAX."""
    global pt_linear_rows_max
    cdef int64_t old = pt_linear_rows_max
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n: expected an int >= 0, got {n!r}")
        pt_linear_rows_max = n
    return old
