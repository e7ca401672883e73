"""Linear layer in NumPy (reference)."""
import numpy as np


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias; x (..., IN), weight (OUT, IN), bias (OUT,)."""
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def linear_backward(grad_out, x, weight, need_bias_grad=True):
    """(dx, dweight, dbias) of linear(x, weight, bias) for grad_out (..., OUT):
    dx like x, dweight (OUT, IN), dbias (OUT,) or None unless need_bias_grad."""
    IN, OUT = x.shape[-1], weight.shape[0]
    dy = grad_out.reshape(-1, OUT)
    x2 = x.reshape(-1, IN)
    dx = (grad_out @ weight).astype(x.dtype)
    dw = (dy.T @ x2).astype(x.dtype)
    db = dy.sum(axis=0).astype(x.dtype) if need_bias_grad else None
    return dx, dw, db
