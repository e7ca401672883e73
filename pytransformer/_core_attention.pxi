# _core_attention.pxi: bindings for csrc/attention.c (included by _core.pyx).

cdef object _attention_sizes(object q, object k, object v):
    """(dtype, B, H, Tq, Tk, D, Dv) of 4-D q (B,H,Tq,D), k (B,H,Tk,D), v (B,H,Tk,Dv)."""
    dt = q.dtype
    B, H, Tq, D = q.shape
    Tk, Dv = k.shape[2], v.shape[3]
    return dt, B, H, Tq, Tk, D, Dv


cdef object _attention_mask(object mask, object mask_strides, object dt,
                            int64_t B, int64_t H, int64_t Tq, int64_t Tk):
    """The 4 element strides (0 = broadcast) of an additive mask as int64,
    checked so that every index b*s0 + h*s1 + i*s2 + j*s3 stays inside the
    mask: the kernel reads through them, and no array check sees them (ops
    derives them from the mask it builds)."""
    if mask is None:
        return None
    st = np.ascontiguousarray(mask_strides, dtype=np.int64)
    if st.shape != (4,):
        raise ValueError(f"mask_strides: expected 4 strides, got shape {st.shape}")
    if (st < 0).any():
        raise ValueError(f"mask_strides: must be >= 0, got {tuple(st)}")
    if B and H and Tq and Tk:
        # Python ints: no int64 overflow however large the strides
        last = ((B - 1) * int(st[0]) + (H - 1) * int(st[1]) + (Tq - 1) * int(st[2])
                + (Tk - 1) * int(st[3]))
        if last >= mask.size:
            raise ValueError(f"attn_mask: strides {tuple(st)} reach element {last} "
                             f"of a mask of {mask.size} elements")
    return st


def attention_forward(object out, object lse, object weights, object q, object k,
                      object v, object mask, object mask_strides, bint is_causal,
                      double scale):
    """out (B,H,Tq,Dv), lse (B,H,Tq) or None, weights (B,H,Tq,Tk) or None :=
    attention of q, k, v with an optional additive mask read through
    mask_strides (4 element strides, 0 broadcasts)."""
    dt, B, H, Tq, Tk, D, Dv = _attention_sizes(q, k, v)
    st = _attention_mask(mask, mask_strides, dt, B, H, Tq, Tk)
    cdef void *po = _ptr(out)
    cdef void *pl = _ptr(lse)
    cdef void *pw = _ptr(weights)
    cdef void *pq = _ptr(q)
    cdef void *pk = _ptr(k)
    cdef void *pv = _ptr(v)
    cdef void *pm = _ptr(mask)
    cdef int64_t *ps = <int64_t *>_ptr(st)
    cdef int64_t b = B, h = H, tq = Tq, tk = Tk, d = D, dv = Dv
    cdef int causal = is_causal, status
    if dt == np.float32:
        with nogil:
            status = pt_attention_forward_f32(<float *>po, <float *>pl, <float *>pw,
                                              <float *>pq, <float *>pk, <float *>pv,
                                              <float *>pm, ps, b, h, tq, tk, d, dv,
                                              causal, <float>scale)
    else:
        with nogil:
            status = pt_attention_forward_f64(<double *>po, <double *>pl, <double *>pw,
                                              <double *>pq, <double *>pk, <double *>pv,
                                              <double *>pm, ps, b, h, tq, tk, d, dv,
                                              causal, scale)
    check_status(status)


def attention_backward(object dq, object dk, object dv, object dout, object q,
                       object k, object v, object out, object lse, object mask,
                       object mask_strides, bint is_causal, double scale,
                       bint accumulate=True):
    """dq, dk, dv (any may be None) += gradients of attention, recomputing P
    from q, k and the forward's lse (with accumulate=False: := them, the
    buffers not read)."""
    dt, B, H, Tq, Tk, D, Dv = _attention_sizes(q, k, v)
    st = _attention_mask(mask, mask_strides, dt, B, H, Tq, Tk)
    cdef void *pdq = _ptr(dq)
    cdef void *pdk = _ptr(dk)
    cdef void *pdv = _ptr(dv)
    cdef void *pg = _ptr(dout)
    cdef void *pq = _ptr(q)
    cdef void *pk = _ptr(k)
    cdef void *pv = _ptr(v)
    cdef void *po = _ptr(out)
    cdef void *pl = _ptr(lse)
    cdef void *pm = _ptr(mask)
    cdef int64_t *ps = <int64_t *>_ptr(st)
    cdef int64_t b = B, h = H, tq = Tq, tk = Tk, d = D, dvv = Dv
    cdef int causal = is_causal, acc = accumulate, status
    if dt == np.float32:
        with nogil:
            status = pt_attention_backward_f32(<float *>pdq, <float *>pdk, <float *>pdv,
                                               <float *>pg, <float *>pq, <float *>pk,
                                               <float *>pv, <float *>po, <float *>pl,
                                               <float *>pm, ps, b, h, tq, tk, d, dvv,
                                               causal, <float>scale, acc)
    else:
        with nogil:
            status = pt_attention_backward_f64(<double *>pdq, <double *>pdk, <double *>pdv,
                                               <double *>pg, <double *>pq, <double *>pk,
                                               <double *>pv, <double *>po, <double *>pl,
                                               <double *>pm, ps, b, h, tq, tk, d, dvv,
                                               causal, scale, acc)
    check_status(status)
