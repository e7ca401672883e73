# _core_dropout.pxi: bindings for csrc/rng.c (mask) and csrc/dropout.c
# (included by _core.pyx).

def dropout_mask(object keep, double p, object seed):
    """keep (n,) uint8 := 1 with probability 1 - p, from (seed, index) only."""
    cdef int64_t n = keep.shape[0]
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"p: must be in [0, 1], got {p}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: must be in [0, 2**64), got {seed}")
    cdef uint64_t s = seed
    cdef void *pk = _ptr(keep)
    cdef int st
    with nogil:
        st = pt_dropout_mask(<uint8_t *>pk, n, p, s)
    check_status(st)


def dropout_apply(object y, object x, object keep, double p):
    """y (n,) := x (n,) * keep (n,) uint8 / (1 - p); y may be x."""
    dt = x.dtype
    cdef int64_t n = x.shape[0]
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"p: must be in [0, 1], got {p}")
    cdef void *py = _ptr(y)
    cdef void *px = _ptr(x)
    cdef void *pk = _ptr(keep)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_dropout_apply_f32(<float *>py, <float *>px, <uint8_t *>pk, n, <float>p)
    else:
        with nogil:
            st = pt_dropout_apply_f64(<double *>py, <double *>px, <uint8_t *>pk, n, p)
    check_status(st)
