# _core_optim.pxi: bindings for csrc/optim.c (included by _core.pyx).

def adamw_step(object param, object exp_avg, object exp_avg_sq, object grad,
               int64_t step, double lr, double beta1, double beta2, double eps,
               double weight_decay):
    """One in-place AdamW step on 1-D C-contiguous param, exp_avg, exp_avg_sq
    (written) and grad (read), all of one dtype and length."""
    dt = param.dtype
    cdef int64_t n = param.shape[0]
    if step < 1:
        raise ValueError(f"step: must be >= 1, got {step}")
    if not (lr >= 0 and eps >= 0 and weight_decay >= 0
            and 0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError("adamw_step: need lr >= 0, eps >= 0, weight_decay >= 0, "
                         "0 <= beta1, beta2 < 1")
    cdef void *pp = _ptr(param)
    cdef void *pm = _ptr(exp_avg)
    cdef void *pv = _ptr(exp_avg_sq)
    cdef void *pg = _ptr(grad)
    cdef int st
    if dt == np.float32:
        with nogil:
            st = pt_adamw_step_f32(<float *>pp, <float *>pm, <float *>pv, <float *>pg, n,
                                   lr, beta1, beta2, eps, weight_decay, step)
    else:
        with nogil:
            st = pt_adamw_step_f64(<double *>pp, <double *>pm, <double *>pv, <double *>pg, n,
                                   lr, beta1, beta2, eps, weight_decay, step)
    check_status(st)
