"""torch.nn.functional's names and signatures, on our autograd and kernels.

Every function takes Tensors (integer ids and masks may also be NumPy
arrays) and returns Tensors. Differences from PyTorch are stated per function.
"""
import numpy as np

from pytransformer import _random
from pytransformer.autograd import kernels
from pytransformer.autograd.basic import Permute
from pytransformer.autograd.tensor import Tensor

__all__ = ["cross_entropy", "dropout", "embedding", "gelu", "layer_norm", "linear",
           "log_softmax", "relu", "scaled_dot_product_attention", "softmax"]


def linear(input, weight, bias=None):
    """y = input @ weight^T + bias; weight is (out_features, in_features)."""
    return kernels.linear(input, weight, bias)


def relu(input):
    """max(input, 0) elementwise (NaN propagates); input is a Tensor or array,
    the result a Tensor of the same shape and dtype."""
    return kernels.ReLU.apply(kernels._tensor("input", input))


def gelu(input, approximate="none"):
    """GELU: x * Phi(x) (approximate='none', erf form) or the tanh form
    (approximate='tanh')."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
    return kernels.GELU.apply(kernels._tensor("input", input), approximate)


def softmax(input, dim=-1):
    """softmax along `dim` (required in PyTorch; defaults to the last axis here).
    A row that is entirely -inf gives zeros, not NaN."""
    return kernels.softmax(input, dim)


def log_softmax(input, dim=-1):
    """log_softmax along `dim` (defaults to the last axis here)."""
    return kernels.log_softmax(input, dim)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation of input (..., C) over its last dim, then * weight
    + bias (each (C,) or None), eps inside the square root. normalized_shape
    must be (C,) or C: NotImplementedError for more than one dim, ValueError
    when it is not the input's last dim."""
    if isinstance(normalized_shape, (int, np.integer)):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(normalized_shape)
    x = kernels._tensor("input", input)
    if len(normalized_shape) != 1:
        raise NotImplementedError("layer_norm: only one normalised (last) dim is supported, "
                                  f"got normalized_shape={normalized_shape}")
    if x.shape[-1:] != normalized_shape:
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} does not match "
                         f"the input's last dim (input shape {x.shape})")
    return kernels.layer_norm(x, weight, bias, eps)


def embedding(input, weight, padding_idx=None):
    """Rows of weight (num_embeddings, dim) at the integer ids `input`; the
    padding_idx row gets no gradient."""
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    return kernels.embedding(input, weight, padding_idx)


def dropout(input, p=0.5, training=True, seed=None):
    """Zero each element with probability p and scale the rest by 1/(1-p)
    when training; the identity (the same Tensor) otherwise. The mask comes
    from `seed`, or from the library's generator (pytransformer.manual_seed)."""
    x = kernels._tensor("input", input)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    return kernels.Dropout.apply(x, float(p), _random.dropout_seed(x.shape) if seed is None
                                 else seed)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy of logits `input` against class ids `target`, fused with
    log_softmax. Shapes as PyTorch: input (N, C) with target (N,), or (C,)
    with a 0-d target, or (N, C, d1, ...) with target (N, d1, ...).
    ignore_index, reduction ('mean', 'sum', 'none') and label_smoothing as
    in PyTorch; see ops.cross_entropy_forward. Class weights are not
    supported (weight must be None)."""
    if weight is not None:
        raise NotImplementedError("cross_entropy: class weights are not supported")
    x = kernels._tensor("input", input)
    if x.ndim > 2:  # classes on axis 1 -> move them last
        axes = (0,) + tuple(range(2, x.ndim)) + (1,)
        x = Permute.apply(x, axes)
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if t.shape != x.shape[:-1]:
        raise ValueError(f"cross_entropy: target shape {t.shape} does not match input "
                         f"shape {input.shape}")
    return kernels.cross_entropy(x, t, ignore_index=ignore_index,
                                 label_smoothing=label_smoothing, reduction=reduction)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None):
    """softmax(query key^T * scale + attn_mask) value over (..., L, E) tensors
    with the same leading dims (B, H, ... as PyTorch).

    attn_mask: bool (True = takes part in attention, as in PyTorch's function)
    or float added to the scores, broadcastable to (..., L, S). A fully masked
    row gives zeros (PyTorch gives NaN). Runs the fused O(T)-memory kernel.
    dropout_p must be 0 (attention dropout lives in MultiheadAttention)."""
    if dropout_p:
        raise NotImplementedError("scaled_dot_product_attention: dropout_p > 0 is not "
                                  "supported; use MultiheadAttention(dropout=...)")
    q, k, v = (kernels._tensor(n, t) for n, t in (("query", query), ("key", key),
                                                    ("value", value)))
    if not q.ndim == k.ndim == v.ndim or q.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: query, key and value need the "
                         f"same number (>= 2) of dims, got {q.shape}, {k.shape}, {v.shape}")
    if q.ndim == 4:
        return kernels.scaled_dot_product_attention(q, k, v, attn_mask, is_causal, scale)
    # the kernel is (B, H, T, d): view the leading dims as (B, 1)
    lead = q.shape[:-2]
    mask = attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask
    if mask is not None:
        mask = np.asarray(mask)
        if mask.ndim > 2:
            mask = np.broadcast_to(mask, lead + mask.shape[-2:]).reshape((-1, 1) + mask.shape[-2:])

    def fold(t):
        return t.reshape((-1, 1) + t.shape[-2:])

    out = kernels.scaled_dot_product_attention(fold(q), fold(k), fold(v), mask, is_causal, scale)
    return out.reshape(lead + out.shape[-2:])
