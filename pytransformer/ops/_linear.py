"""Fully connected layer: y = x @ weight.T + bias over the last axis of x
(torch.nn.functional.linear), through the GEMM (BLAS or the C fallback)."""
import numpy as np

from pytransformer import _core
from pytransformer.validation import (c_order, float_checked, no_overlap, optional_float_checked,
                                      out_array)
from pytransformer.ops._layout import rows


def check_weight(x, weight, name="weight", x_name="x"):
    """weight checked (not copied) as a float array of x's dtype, shape
    (OUT, x.shape[-1])."""
    IN = x.shape[-1]
    weight = float_checked(name, weight, x.dtype)
    if weight.ndim != 2 or weight.shape[1] != IN:
        raise ValueError(f"{name}: expected shape (OUT, {IN}) to match {x_name}'s last dim "
                         f"{IN}, got {weight.shape}")
    return weight


def linear(x, weight, bias=None, out=None):
    """y = x @ weight.T + bias for x (..., IN), weight (OUT, IN), bias (OUT,)
    or None; y has shape (..., OUT). `out` may be given (written and
    returned); it must not overlap x, weight or bias (ValueError)."""
    x = float_checked("x", x, min_ndim=1)
    weight = check_weight(x, weight)
    OUT, IN = weight.shape
    bias = optional_float_checked("bias", bias, x.dtype, (OUT,))
    N = rows(x)[0]
    y = out_array("out", out, x.shape[:-1] + (OUT,), x.dtype)
    x, weight, bias = c_order(x), c_order(weight), c_order(bias)
    no_overlap((("out", out),), (("x", x), ("weight", weight), ("bias", bias)))
    _core.linear_forward(y.reshape(N, OUT), x.reshape(N, IN), weight, bias)
    return y


def linear_backward(grad_out, x, weight, need_bias_grad=True):
    """Return (dx, dweight, dbias) of linear(x, weight, bias) for grad_out of
    shape (..., OUT); dbias is None when need_bias_grad is False."""
    x = float_checked("x", x, min_ndim=1)
    weight = check_weight(x, weight)
    OUT, IN = weight.shape
    dy = float_checked("grad_out", grad_out, x.dtype, shape=x.shape[:-1] + (OUT,))
    x, weight, dy = c_order(x), c_order(weight), c_order(dy)
    N = rows(x)[0]
    # fresh buffers, stored into (accumulate=False): no zeroing pass
    dx = np.empty(x.shape, x.dtype)
    dw = np.empty((OUT, IN), x.dtype)
    db = np.empty(OUT, x.dtype) if need_bias_grad else None
    _core.linear_backward(dx.reshape(N, IN), dw, db, dy.reshape(N, OUT), x.reshape(N, IN), weight,
                          False)
    return dx, dw, db
