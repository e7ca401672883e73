"""Activations (ReLU, GELU in erf and tanh form), the fused bias +
activation kernel, and the Transformer feed-forward block built from them:

    ffn(x) = linear2(act(linear1(x)))   with linear1 = x @ w1.T (GEMM, no
    bias), then the fused y = act(h + b1), then linear2 = a @ w2.T + b2.

Names follow PyTorch: relu, gelu(approximate='none'|'tanh').
"""
from collections import namedtuple

import numpy as np

from pytransformer import _core
from pytransformer.validation import (c_order, choice_arg, float_checked, no_overlap,
                                      optional_float_checked, out_array, same_shape)
from pytransformer.ops._layout import rows
from pytransformer.ops._linear import check_weight

# bias_act's activation names -> the C kinds (see _core.ACT_KINDS).
ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh")
_GELU_KIND = {"none": "gelu", "tanh": "gelu_tanh"}

# Elementwise ops without a bias run on the flat array cut into rows of this
# many elements (plus one short tail row), so they thread for any shape.
_FLAT_ROW = 4096


def _activation(activation):
    return choice_arg("activation", activation, ACTIVATIONS)


def _gelu_kind(approximate):
    if not isinstance(approximate, str):
        raise TypeError(f"approximate: expected 'none' or 'tanh', got {type(approximate).__name__}")
    return _GELU_KIND[choice_arg("approximate", approximate, tuple(_GELU_KIND))]


def _flat_rows(*arrays):
    """Views of same-size contiguous arrays as [(bulk rows of _FLAT_ROW),
    (one tail row)] pieces: a list of tuples of 2-D views."""
    n = arrays[0].size
    flat = [a.reshape(-1) for a in arrays]
    bulk = n // _FLAT_ROW * _FLAT_ROW
    pieces = []
    if bulk:
        pieces.append(tuple(f[:bulk].reshape(-1, _FLAT_ROW) for f in flat))
    if n > bulk:
        pieces.append(tuple(f[bulk:].reshape(1, -1) for f in flat))
    return pieces


# The activation kernels read each element before writing it: out may be x.
_IN_PLACE = (("out", "x"),)


def _act_elementwise(x, kind, out):
    x = float_checked("x", x)
    y = out_array("out", out, x.shape, x.dtype)
    x = c_order(x)
    no_overlap((("out", out),), (("x", x),), _IN_PLACE)
    for yv, xv in _flat_rows(y, x):
        _core.bias_act_forward(yv, xv, None, kind)
    return y


def _act_backward_elementwise(grad_out, x, kind):
    x = float_checked("x", x)
    dy = float_checked("grad_out", grad_out, x.dtype, shape=x.shape)
    x, dy = c_order(x), c_order(dy)
    dx = np.empty(x.shape, x.dtype)
    for dxv, dyv, xv in _flat_rows(dx, dy, x):
        _core.bias_act_backward(dxv, None, dyv, xv, None, kind, False)
    return dx


def relu(x, out=None):
    """max(x, 0) elementwise (NaN propagates). `out` may be x (in place)."""
    return _act_elementwise(x, "relu", out)


def relu_backward(grad_out, x):
    """grad_out * (x > 0): the gradient of relu (0 at x == 0, as PyTorch)."""
    return _act_backward_elementwise(grad_out, x, "relu")


def gelu(x, approximate="none", out=None):
    """GELU elementwise: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), or with
    approximate='tanh' 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return _act_elementwise(x, _gelu_kind(approximate), out)


def gelu_backward(grad_out, x, approximate="none"):
    """grad_out * gelu'(x), in the same form as gelu(x, approximate)."""
    return _act_backward_elementwise(grad_out, x, _gelu_kind(approximate))


def bias_act(x, bias=None, activation="relu", out=None):
    """act(x + bias) with bias (C,) added over the last axis of x (..., C);
    activation is 'relu', 'gelu' (erf), 'gelu_tanh' or 'none'. `out` may be
    x (in place), and must not overlap it otherwise, nor bias."""
    kind = _activation(activation)
    x = float_checked("x", x, min_ndim=1)
    C = x.shape[-1]
    bias = optional_float_checked("bias", bias, x.dtype, (C,))
    if bias is None:
        return _act_elementwise(x, kind, out)
    N = rows(x)[0]
    y = out_array("out", out, x.shape, x.dtype)
    x, bias = c_order(x), c_order(bias)
    no_overlap((("out", out),), (("x", x), ("bias", bias)), _IN_PLACE)
    _core.bias_act_forward(y.reshape(N, C), x.reshape(N, C), bias, kind)
    return y


def bias_act_backward(grad_out, x, bias=None, activation="relu"):
    """Return (dx, dbias) of bias_act(x, bias, activation): dx = grad_out *
    act'(x + bias), dbias = dx summed over the leading axes (None without
    bias). x is the forward input before the bias."""
    kind = _activation(activation)
    x = float_checked("x", x, min_ndim=1)
    C = x.shape[-1]
    bias = optional_float_checked("bias", bias, x.dtype, (C,))
    if bias is None:
        return _act_backward_elementwise(grad_out, x, kind), None
    dy = float_checked("grad_out", grad_out, x.dtype, shape=x.shape)
    x, bias, dy = c_order(x), c_order(bias), c_order(dy)
    N = rows(x)[0]
    dx = np.empty(x.shape, x.dtype)
    db = np.empty(C, x.dtype)
    _core.bias_act_backward(dx.reshape(N, C), db, dy.reshape(N, C), x.reshape(N, C), bias, kind,
                            False)
    return dx, db


# What ffn_forward keeps for ffn_backward: the block's input x (..., D), the
# pre-activation h = x @ w1.T (..., H) (without b1), the parameters, and
# whether b2 was given. The activation a = act(h + b1) is recomputed in
# backward (one elementwise pass) rather than kept.
FFNSaved = namedtuple("FFNSaved", "x h w1 b1 w2 has_b2 activation")


def ffn_forward(x, w1, b1, w2, b2, activation="relu"):
    """The Transformer feed-forward block on x (..., D):
        h = x @ w1.T,  a = act(h + b1),  y = a @ w2.T + b2
    with w1 (H, D), b1 (H,) or None, w2 (D2, H), b2 (D2,) or None.
    Returns (y, saved) with y of shape (..., D2); saved is for ffn_backward."""
    kind = _activation(activation)
    x = float_checked("x", x, min_ndim=1)
    w1 = check_weight(x, w1, "w1")
    H, D = w1.shape
    b1 = optional_float_checked("b1", b1, x.dtype, (H,))
    w2 = float_checked("w2", w2, x.dtype)
    if w2.ndim != 2 or w2.shape[1] != H:
        raise ValueError(f"w2: expected shape (OUT, {H}) to match w1's first dim {H}, "
                         f"got {w2.shape}")
    D2 = w2.shape[0]
    b2 = optional_float_checked("b2", b2, x.dtype, (D2,))
    x, w1, b1, w2, b2 = (c_order(a) for a in (x, w1, b1, w2, b2))
    N = rows(x)[0]
    lead = x.shape[:-1]
    h = np.empty(lead + (H,), x.dtype)
    a = np.empty(lead + (H,), x.dtype)
    y = np.empty(lead + (D2,), x.dtype)
    h2, a2 = h.reshape(N, H), a.reshape(N, H)
    _core.linear_forward(h2, x.reshape(N, D), w1, None)
    _core.bias_act_forward(a2, h2, b1, kind)
    _core.linear_forward(y.reshape(N, D2), a2, w2, b2)
    return y, FFNSaved(x, h, w1, b1, w2, b2 is not None, kind)


def ffn(x, w1, b1, w2, b2, activation="relu"):
    """The feed-forward block's output; see ffn_forward."""
    return ffn_forward(x, w1, b1, w2, b2, activation)[0]


def ffn_backward(grad_out, saved):
    """Return (dx, dw1, db1, dw2, db2) for ffn_forward's `saved`; db1/db2 are
    None when b1/b2 were None."""
    if not isinstance(saved, FFNSaved):
        raise TypeError(f"saved: expected the FFNSaved of ffn_forward, got {type(saved).__name__}")
    x, h, w1, b1, w2, has_b2, kind = saved
    # A forged or edited FFNSaved must fail by name, not deep inside.
    x = float_checked("saved.x", x, min_ndim=1)
    D = x.shape[-1]
    w1 = float_checked("saved.w1", w1, x.dtype, ndim=2)
    H = w1.shape[0]
    same_shape("saved.w1", w1, (H, D))
    h = float_checked("saved.h", h, x.dtype, shape=x.shape[:-1] + (H,))
    b1 = optional_float_checked("saved.b1", b1, x.dtype, (H,))
    w2 = float_checked("saved.w2", w2, x.dtype, ndim=2)
    D2 = w2.shape[0]
    same_shape("saved.w2", w2, (D2, H))
    N = rows(x)[0]
    dy = float_checked("grad_out", grad_out, x.dtype, shape=x.shape[:-1] + (D2,))
    x, h, w1, w2, b1, dy = (c_order(a) for a in (x, h, w1, w2, b1, dy))
    h2, dy2 = h.reshape(N, H), dy.reshape(N, D2)
    # Recompute a = act(h + b1); after dw2 it becomes the dh buffer. Every
    # gradient is stored into a fresh buffer (accumulate=False): no zeroing.
    buf = np.empty((N, H), x.dtype)
    _core.bias_act_forward(buf, h2, b1, kind)
    da = np.empty((N, H), x.dtype)
    dw2 = np.empty((D2, H), x.dtype)
    db2 = np.empty(D2, x.dtype) if has_b2 else None
    _core.linear_backward(da, dw2, db2, dy2, buf, w2, False)
    dh = buf
    db1 = np.empty(H, x.dtype) if b1 is not None else None
    _core.bias_act_backward(dh, db1, da, h2, b1, kind, False)
    dx = np.empty(x.shape, x.dtype)
    dw1 = np.empty((H, D), x.dtype)
    _core.linear_backward(dx.reshape(N, D), dw1, None, dh, x.reshape(N, D), w1, False)
    return dx, dw1, db1, dw2, db2
