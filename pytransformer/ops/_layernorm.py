"""Layer normalisation over the last axis (torch.nn.functional.layer_norm
with normalized_shape = x.shape[-1:])."""
import numpy as np

from pytransformer import _core
from pytransformer.validation import (c_order, flag_arg, float_checked, gradient_out, no_overlap,
                                      optional_float_checked, out_array, real_arg)
from pytransformer.ops._layout import rows


def layer_norm_forward(x, weight=None, bias=None, eps=1e-5, out=None,
                       mean_out=None, rstd_out=None):
    """Return (y, mean, rstd): y = (x - mean) * rstd * weight + bias over the
    last axis of x (any leading shape); mean and rstd have shape x.shape[:-1]
    and are what layer_norm_backward needs.

    out, mean_out, rstd_out: optional caller-owned buffers (shapes x.shape,
    x.shape[:-1], x.shape[:-1]; x's dtype; C-contiguous) that are written
    and returned instead of fresh arrays; out may be x itself (in place).
    Otherwise none of them may overlap x, weight, bias or each other."""
    x = float_checked("x", x, min_ndim=1)
    C = x.shape[-1]
    weight = optional_float_checked("weight", weight, x.dtype, (C,))
    bias = optional_float_checked("bias", bias, x.dtype, (C,))
    eps = real_arg("eps", eps)
    if not eps >= 0:
        raise ValueError(f"eps: must be >= 0, got {eps}")
    N, _ = rows(x)
    y = out_array("out", out, x.shape, x.dtype)
    mean = out_array("mean_out", mean_out, x.shape[:-1], x.dtype)
    rstd = out_array("rstd_out", rstd_out, x.shape[:-1], x.dtype)
    x, weight, bias = c_order(x), c_order(weight), c_order(bias)
    # each row's statistics are taken before the row is written: out may be x
    no_overlap((("out", out), ("mean_out", mean_out), ("rstd_out", rstd_out)),
               (("x", x), ("weight", weight), ("bias", bias)), (("out", "x"),))
    _core.layernorm_forward(y.reshape(N, C), mean.reshape(N), rstd.reshape(N),
                            x.reshape(N, C), weight, bias, eps)
    return y, mean, rstd


def layer_norm(x, weight=None, bias=None, eps=1e-5, out=None):
    """Layer norm over the last axis of x; see layer_norm_forward."""
    return layer_norm_forward(x, weight, bias, eps, out)[0]


def layer_norm_backward(grad_out, x, weight, mean, rstd, need_weight_grads=True,
                        grad_input=None, accumulate=False):
    """Return (dx, dweight, dbias) for layer_norm_forward's (mean, rstd).
    dweight/dbias are None when weight is None or need_weight_grads is False.

    grad_input: optional caller-owned buffer (x's shape and dtype,
    C-contiguous) that dx is written to and returned: overwritten, or with
    accumulate=True (which needs grad_input) added to. Overwritten, it may
    be grad_out itself (in place); it must not overlap any other argument."""
    x = float_checked("x", x, min_ndim=1)
    C = x.shape[-1]
    N, _ = rows(x)
    dy = float_checked("grad_out", grad_out, x.dtype, shape=x.shape)
    weight = optional_float_checked("weight", weight, x.dtype, (C,))
    mean = optional_float_checked("mean", mean, x.dtype, x.shape[:-1])
    rstd = optional_float_checked("rstd", rstd, x.dtype, x.shape[:-1])
    if mean is None or rstd is None:
        raise TypeError("mean, rstd: required (from layer_norm_forward)")
    accumulate = flag_arg("accumulate", accumulate)
    dx = gradient_out("grad_input", grad_input, x.shape, x.dtype, accumulate)
    x, dy, weight, mean, rstd = (c_order(a) for a in (x, dy, weight, mean, rstd))
    # a row of grad_out is reduced before that row of dx is stored (not added)
    no_overlap((("grad_input", grad_input),),
               (("grad_out", dy), ("x", x), ("weight", weight), ("mean", mean), ("rstd", rstd)),
               () if accumulate else (("grad_input", "grad_out"),))
    want = weight is not None and need_weight_grads
    # dweight, dbias are fresh: stored (no zeroing pass), or added to zeros
    # of C elements when dx is added to (one flag per kernel call)
    new = np.zeros if accumulate else np.empty
    dw = new(C, x.dtype) if want else None
    db = new(C, x.dtype) if want else None
    _core.layernorm_backward(dx.reshape(N, C), dw, db, dy.reshape(N, C), x.reshape(N, C),
                             weight, mean.reshape(N), rstd.reshape(N), accumulate)
    return dx, dw, db
