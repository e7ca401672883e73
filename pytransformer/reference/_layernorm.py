"""Layer norm in NumPy (reference)."""
import numpy as np


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def layer_norm_backward(grad_out, x, weight=None, eps=1e-5):
    """(dx, dweight, dbias) of layer_norm(x, weight, bias, eps) for grad_out
    of x's shape (mean and rstd recomputed from x); dweight/dbias (C,), None
    without weight."""
    C = x.shape[-1]
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    g = grad_out * weight if weight is not None else grad_out
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    if weight is None:
        return dx.astype(x.dtype), None, None
    lead = tuple(range(x.ndim - 1))
    dw = (grad_out * xhat).sum(axis=lead)
    db = grad_out.sum(axis=lead)
    return dx.astype(x.dtype), dw.reshape(C).astype(x.dtype), db.reshape(C).astype(x.dtype)
