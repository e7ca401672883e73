"""Dropout (torch.nn.functional.dropout) with a reproducible mask.

The mask is a pure function of (seed, element index) -- see csrc/rng.c --
so the same seed gives the same mask whatever the thread count; pass a new
seed per call (e.g. a step counter) for fresh masks.
"""
import numpy as np

from pytransformer import _core
from pytransformer.validation import (array_checked, c_order, float_checked, int_arg,
                                      no_overlap, out_array, real_arg)

# dropout_apply is elementwise (each element read before it is written): the
# result buffer may be the input itself.
_IN_PLACE = (("out", "x"), ("out", "grad_out"))


def _check_p(p):
    p = real_arg("p", p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: dropout probability must be in [0, 1], got {p}")
    return p


def _check_seed(seed):
    return int_arg("seed", seed, 0, 2**64)


def dropout_forward(x, p=0.5, seed=0, training=True, out=None):
    """Return (y, mask): y = x * mask / (1 - p) with mask (uint8, x's shape)
    keeping each element with probability 1 - p. When not training or p == 0
    the mask is None and y is x itself (or a copy of x into `out`). p == 1
    gives zeros (NaN/Inf inputs stay NaN, per IEEE, as in PyTorch). `out`
    may be x itself, and must not overlap it otherwise."""
    x = float_checked("x", x)
    p = _check_p(p)
    seed = _check_seed(seed)
    if not training or p == 0.0:
        if out is None:
            return c_order(x), None
        y = out_array("out", out, x.shape, x.dtype)
        np.copyto(y, x)          # copyto handles any overlap
        return y, None
    y = out_array("out", out, x.shape, x.dtype)
    x = c_order(x)
    no_overlap((("out", y),), (("x", x),), _IN_PLACE)
    mask = np.empty(x.shape, np.uint8)
    _core.dropout_mask(mask.reshape(-1), p, seed)
    _core.dropout_apply(y.reshape(-1), x.reshape(-1), mask.reshape(-1), p)
    return y, mask


def dropout(x, p=0.5, seed=0, training=True, out=None):
    """y = dropout of x; see dropout_forward."""
    return dropout_forward(x, p, seed, training, out)[0]


def dropout_backward(grad_out, mask, p, out=None):
    """Return dx = grad_out * mask / (1 - p) for dropout_forward's mask
    (uint8 or bool, grad_out's shape); mask None means dropout was the
    identity, so dx is grad_out itself (copied into `out` when given).
    `out` may be grad_out itself; it must not overlap the mask."""
    dy = float_checked("grad_out", grad_out)
    p = _check_p(p)
    if mask is None:
        if out is None:
            return c_order(dy)
        # the identity, but `out` is still the documented result buffer
        dx = out_array("out", out, dy.shape, dy.dtype)
        np.copyto(dx, dy)
        return dx
    mask = array_checked("mask", mask, (np.uint8, np.bool_), dy.shape)
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    dx = out_array("out", out, dy.shape, dy.dtype)
    mask, dy = c_order(mask), c_order(dy)
    no_overlap((("out", dx),), (("grad_out", dy), ("mask", mask)), _IN_PLACE)
    _core.dropout_apply(dx.reshape(-1), dy.reshape(-1), mask.reshape(-1), p)
    return dx
