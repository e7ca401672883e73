"""Activations, bias + activation and the feed-forward block in NumPy
(reference). Computed in float64, returned in the input's dtype."""
import math

import numpy as np

from pytransformer.reference._linear import linear, linear_backward

# The reference needs only NumPy: erf elementwise through the standard library.
erf = np.vectorize(math.erf, otypes=[np.float64])

SQRT_2_PI = np.sqrt(2.0 / np.pi)
GELU_C = 0.044715


def relu(x):
    """max(x, 0) elementwise, in x's dtype; NaN stays NaN."""
    return np.where(x < 0, 0, x).astype(x.dtype)   # NaN stays NaN


def relu_backward(grad_out, x):
    """grad_out * (x > 0) (0 at x == 0), in x's dtype; x is relu's input."""
    return np.where(x > 0, grad_out, 0).astype(x.dtype)


def gelu(x, approximate="none"):
    """x Phi(x), or PyTorch's tanh approximation."""
    z = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * z * (1 + np.tanh(SQRT_2_PI * (z + GELU_C * z ** 3)))
    else:
        y = 0.5 * z * (1 + erf(z / np.sqrt(2.0)))
    return y.astype(x.dtype)


def gelu_backward(grad_out, x, approximate="none"):
    """grad_out * gelu'(x) for the same `approximate` form, computed in
    float64 and returned in x's dtype; x is gelu's input."""
    z = x.astype(np.float64)
    if approximate == "tanh":
        t = np.tanh(SQRT_2_PI * (z + GELU_C * z ** 3))
        d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * SQRT_2_PI * (1 + 3 * GELU_C * z * z)
    else:
        cdf = 0.5 * (1 + erf(z / np.sqrt(2.0)))
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
        d = cdf + z * pdf
    return (grad_out * d).astype(x.dtype)


def _act(z, activation):
    if activation == "relu":
        return relu(z)
    if activation == "gelu":
        return gelu(z)
    if activation == "gelu_tanh":
        return gelu(z, "tanh")
    return z


def _act_backward(grad_out, z, activation):
    if activation == "relu":
        return relu_backward(grad_out, z)
    if activation == "gelu":
        return gelu_backward(grad_out, z)
    if activation == "gelu_tanh":
        return gelu_backward(grad_out, z, "tanh")
    return grad_out.copy()


def bias_act(x, bias=None, activation="relu"):
    """act(x + bias), bias over the last axis."""
    z = x + bias if bias is not None else x
    return _act(z, activation).astype(x.dtype)


def bias_act_backward(grad_out, x, bias=None, activation="relu"):
    """(dx, dbias): dx = grad_out * act'(x + bias), dbias its sum over rows."""
    z = x + bias if bias is not None else x
    dx = _act_backward(grad_out, z, activation).astype(x.dtype)
    db = None
    if bias is not None:
        db = dx.reshape(-1, x.shape[-1]).sum(axis=0).astype(x.dtype)
    return dx, db


def ffn(x, w1, b1, w2, b2, activation="relu"):
    """linear(act(linear(x, w1, b1)), w2, b2)."""
    return linear(bias_act(linear(x, w1), b1, activation), w2, b2)


def ffn_backward(grad_out, x, w1, b1, w2, b2, activation="relu"):
    """(dx, dw1, db1, dw2, db2) of ffn; db1/db2 None when b1/b2 are None."""
    h = linear(x, w1)
    a = bias_act(h, b1, activation)
    da, dw2, db2 = linear_backward(grad_out, a, w2, need_bias_grad=b2 is not None)
    dh, db1 = bias_act_backward(da, h, b1, activation)
    dx, dw1, _ = linear_backward(dh, x, w1, need_bias_grad=False)
    return dx, dw1, db1, dw2, db2
