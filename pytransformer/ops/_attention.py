"""Scaled dot-product attention (torch.nn.functional.scaled_dot_product_attention
without dropout), forward and backward.

Shapes: q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv) -> out (B, H, Tq, Dv).
Exactly 4-D inputs are accepted (reshape (B, T, d) inputs to (B, 1, T, d)).

    S = scale * q k^T + attn_mask  (+ causal: S[..., i, j] = -inf for j > i,
                                    top-left aligned like PyTorch's is_causal)
    P = softmax(S, axis=-1),  out = P v

attn_mask (optional), any shape broadcastable to (B, H, Tq, Tk) by NumPy rules:
  * boolean: True = the key takes part in attention (PyTorch's convention),
    False = masked (becomes -inf);
  * float: added to the scores; its dtype must equal q's dtype (TypeError
    otherwise: like every op here, nothing is cast silently).
The mask is never expanded to (B, H, Tq, Tk): the C kernel reads it through
element strides, 0 along broadcast dimensions.

A fully masked row (every score -inf, including Tk == 0) gives out = 0,
lse = -inf and zero gradients, never NaN. scale defaults to 1/sqrt(D)
(1 when D == 0).

Without need_weights the kernel runs a tiled online-softmax (FlashAttention)
path whose memory is O(T), never O(Tq x Tk); need_weights=True materialises
the (B, H, Tq, Tk) probabilities. is_causal and attn_mask may be combined
(PyTorch refuses that; here the causal -inf is simply added to the mask).
`out=` must not overlap q, k, v or attn_mask (ValueError naming both). Results
do not depend on the thread count.
"""
import math

import numpy as np

from pytransformer import _core
from pytransformer.validation import (array_checked, c_order, float_checked, no_overlap,
                                      out_array, real_arg, stored_elements)


def _inputs(q, k, v):
    """q, k, v checked (not copied yet) as 4-D arrays of one float dtype
    and matching sizes."""
    q = float_checked("q", q, ndim=4)
    k = float_checked("k", k, dtype=q.dtype, ndim=4)
    v = float_checked("v", v, dtype=q.dtype, ndim=4)
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    if k.shape[:2] != (B, H) or k.shape[3] != D:
        raise ValueError(f"k: expected shape ({B}, {H}, Tk, {D}) to match q {q.shape}, "
                         f"got {k.shape}")
    if v.shape[:3] != (B, H, Tk):
        raise ValueError(f"v: expected shape ({B}, {H}, {Tk}, Dv) to match q {q.shape} "
                         f"and k {k.shape}, got {v.shape}")
    return q, k, v


def _scale(scale, D):
    if scale is None:
        return 1.0 / math.sqrt(D) if D > 0 else 1.0
    return real_arg("scale", scale)


def _mask(attn_mask, dtype, shape):
    """(additive mask array, 4 element strides) or (None, None).

    The result has the mask's own (broadcast) shape left-padded to 4 dims;
    strides are 0 along its size-1 dimensions. The shape is checked before
    anything is copied, and a broadcast view's stride-0 axes are kept at
    length 1 (stored_elements), so a broadcast mask is never materialised."""
    if attn_mask is None:
        return None, None
    array_checked("attn_mask", attn_mask, (np.bool_, dtype), dtype_of="q")
    try:
        ok = attn_mask.ndim <= 4 and np.broadcast_shapes(attn_mask.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"attn_mask: shape {attn_mask.shape} does not broadcast to "
                         f"(B, H, Tq, Tk) = {tuple(shape)}")
    m = stored_elements(attn_mask)
    if m.dtype == np.bool_:
        m = np.where(m, dtype.type(0), dtype.type(-np.inf)).astype(dtype, copy=False)
    m = c_order(m.reshape((1,) * (4 - m.ndim) + m.shape))
    strides = [0 if n == 1 else s // m.itemsize for n, s in zip(m.shape, m.strides)]
    return m, np.array(strides, dtype=np.int64)


def attention_forward(q, k, v, attn_mask=None, is_causal=False, scale=None,
                      need_weights=False, out=None):
    """Return (out, lse, weights): out (B,H,Tq,Dv); lse (B,H,Tq), the row
    logsumexp of the scores, which attention_backward needs; weights
    (B,H,Tq,Tk) = P when need_weights, else None (tiled O(T)-memory path)."""
    return _forward(q, k, v, attn_mask, is_causal, scale, need_weights, out, need_lse=True)


def _forward(q, k, v, attn_mask, is_causal, scale, need_weights, out, need_lse):
    """attention_forward; lse is None unless need_lse (inference skips it)."""
    q, k, v = _inputs(q, k, v)
    B, H, Tq, D = q.shape
    Tk, Dv = k.shape[2], v.shape[3]
    s = _scale(scale, D)
    o = out_array("out", out, (B, H, Tq, Dv), q.dtype)
    mask, strides = _mask(attn_mask, q.dtype, (B, H, Tq, Tk))
    q, k, v = c_order(q), c_order(k), c_order(v)
    no_overlap((("out", out),), (("q", q), ("k", k), ("v", v), ("attn_mask", mask)))
    lse = np.empty((B, H, Tq), q.dtype) if need_lse else None
    w = np.empty((B, H, Tq, Tk), q.dtype) if need_weights else None
    _core.attention_forward(o, lse, w, q, k, v, mask, strides, bool(is_causal), s)
    return o, lse, w


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None,
                                 need_weights=False, out=None):
    """Attention output (B,H,Tq,Dv), or (out, weights) when need_weights;
    see the module docstring for shapes, masks and scale."""
    o, _, w = _forward(q, k, v, attn_mask, is_causal, scale, need_weights, out, need_lse=False)
    return (o, w) if need_weights else o


def attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False,
                       scale=None):
    """Return (dq, dk, dv) for attention_forward's out and lse; attn_mask,
    is_causal and scale must be those of the forward call."""
    q, k, v = _inputs(q, k, v)
    B, H, Tq, D = q.shape
    Tk, Dv = k.shape[2], v.shape[3]
    s = _scale(scale, D)
    g = float_checked("grad_out", grad_out, dtype=q.dtype, shape=(B, H, Tq, Dv))
    out = float_checked("out", out, dtype=q.dtype, shape=(B, H, Tq, Dv))
    lse = float_checked("lse", lse, dtype=q.dtype, shape=(B, H, Tq))
    mask, strides = _mask(attn_mask, q.dtype, (B, H, Tq, Tk))
    q, k, v, g, out, lse = (c_order(a) for a in (q, k, v, g, out, lse))
    dq = np.empty(q.shape, q.dtype)
    dk = np.empty(k.shape, q.dtype)
    dv = np.empty(v.shape, q.dtype)
    _core.attention_backward(dq, dk, dv, g, q, k, v, out, lse, mask, strides,
                             bool(is_causal), s, False)
    return dq, dk, dv
