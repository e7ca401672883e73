# _core_embedding.pxi: bindings for csrc/embedding.c (included by _core.pyx).

def embedding_forward(object y, object ids, object table):
    """y (N, C) := table (V, C)[ids (N,) int64]. Every id must be in [0, V)
    (the C kernel re-checks and writes nothing otherwise)."""
    dt = table.dtype
    cdef int64_t N = ids.shape[0], V = table.shape[0], C = table.shape[1]
    cdef void *py = _ptr(y)
    cdef void *pi = _ptr(ids)
    cdef void *pt = _ptr(table)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_embedding_forward_f32(<float *>py, <int64_t *>pi, <float *>pt, N, V, C)
    else:
        with nogil:
            st = pt_embedding_forward_f64(<double *>py, <int64_t *>pi, <double *>pt, N, V, C)
    check_status(st)


def embedding_backward(object dtable, object dy, object ids, bint accumulate=True):
    """dtable (V, C) += scatter-add of dy (N, C) at ids (N,) int64 (with
    accumulate=False: dtable := it, rows no id reaches set to 0);
    deterministic (serial order of additions, whatever the thread count)."""
    dt = dtable.dtype
    cdef int64_t N = ids.shape[0], V = dtable.shape[0], C = dtable.shape[1]
    cdef void *pd = _ptr(dtable)
    cdef void *py = _ptr(dy)
    cdef void *pi = _ptr(ids)
    cdef int acc = accumulate
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_embedding_backward_f32(<float *>pd, <float *>py, <int64_t *>pi, N, V, C, acc)
    else:
        with nogil:
            st = pt_embedding_backward_f64(<double *>pd, <double *>py, <int64_t *>pi, N, V, C,
                                           acc)
    check_status(st)


def sinusoidal_positions(object out, double base):
    """out (T, C) := sinusoidal position table with the given base (> 0)."""
    dt = out.dtype
    if not base > 0:
        raise ValueError(f"base: must be > 0, got {base}")
    cdef int64_t T = out.shape[0], C = out.shape[1]
    cdef void *po = _ptr(out)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_sinusoidal_positions_f32(<float *>po, T, C, <float>base)
    else:
        with nogil:
            st = pt_sinusoidal_positions_f64(<double *>po, T, C, base)
    check_status(st)
