"""Autograd Functions over the compiled core: forward and backward both call
:mod:`pytransformer.ops` (the C kernels), never a NumPy re-implementation.

Each function below takes Tensors (and plain options), checks what the
kernel cannot know (which argument is a Tensor, a mask's dtype), and applies
its Function. :mod:`pytransformer.nn.functional` exposes them under PyTorch's
names and signatures.
"""
import numpy as np

from pytransformer import ops
from pytransformer.autograd.basic import Permute
from pytransformer.autograd.tensor import Function, Tensor


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _tensor(name, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
    return x


# ----------------------------------------------------------------------------
# linear, activations, FFN


class Linear(Function):
    """y = x W^T + b (ops.linear); grads from ops.linear_backward."""

    def forward(self, x, w, b=None):
        self.x, self.w, self.has_b = x, w, b is not None
        return ops.linear(x, w, b)

    def backward(self, g):
        dx, dw, db = ops.linear_backward(g, self.x, self.w, need_bias_grad=self.has_b)
        return (dx, dw, db) if self.has_b else (dx, dw)


def linear(x, weight, bias=None):
    """x (..., IN) @ weight (OUT, IN)^T + bias (OUT,)."""
    args = (_tensor("input", x), _tensor("weight", weight))
    if bias is not None:
        args += (_tensor("bias", bias),)
    return Linear.apply(*args)


class ReLU(Function):
    def forward(self, x):
        self.x = x
        return ops.relu(x)

    def backward(self, g):
        return ops.relu_backward(g, self.x)


class GELU(Function):
    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        return ops.gelu(x, approximate=approximate)

    def backward(self, g):
        return ops.gelu_backward(g, self.x, approximate=self.approximate)


class BiasAct(Function):
    """act(x + bias), fused (ops.bias_act)."""

    def forward(self, x, bias, activation):
        self.x, self.bias, self.activation = x, bias, activation
        return ops.bias_act(x, bias, activation=activation)

    def backward(self, g):
        dx, db = ops.bias_act_backward(g, self.x, self.bias, activation=self.activation)
        return dx, db


class FFN(Function):
    """The feed-forward block act(x W1^T + b1) W2^T + b2 in one kernel call."""

    def forward(self, x, w1, b1, w2, b2, activation):
        y, self.saved = ops.ffn_forward(x, w1, b1, w2, b2, activation=activation)
        return y

    def backward(self, g):
        return ops.ffn_backward(g, self.saved)


def ffn(x, w1, b1, w2, b2, activation="relu"):
    """Fused feed-forward block (all five tensors required)."""
    for name, t in (("input", x), ("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)):
        _tensor(name, t)
    return FFN.apply(x, w1, b1, w2, b2, activation=activation)


# ----------------------------------------------------------------------------
# softmax family


class Softmax(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = ops.softmax(x)
        return self.y

    def backward(self, g):
        return ops.softmax_backward(g, self.y)


class LogSoftmax(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = ops.log_softmax(x)
        return self.y

    def backward(self, g):
        return ops.log_softmax_backward(g, self.y)


def _last_axis(fn, x, dim):
    """Apply a last-axis Function along `dim` (moved last and back)."""
    x = _tensor("input", x)
    if x.ndim == 0:
        raise ValueError("softmax: expected at least 1 dim, got a 0-d tensor")
    dim = dim % x.ndim
    if dim == x.ndim - 1:
        return fn.apply(x)
    axes = list(range(x.ndim))
    axes[dim], axes[-1] = axes[-1], axes[dim]
    return Permute.apply(fn.apply(Permute.apply(x, tuple(axes))), tuple(axes))


def softmax(x, dim=-1):
    """softmax along `dim` (C kernel on the last axis)."""
    return _last_axis(Softmax, x, dim)


def log_softmax(x, dim=-1):
    """log_softmax along `dim` (C kernel on the last axis)."""
    return _last_axis(LogSoftmax, x, dim)


class CrossEntropy(Function):
    def forward(self, logits, targets, ignore_index, label_smoothing, reduction):
        self.logits, self.targets = logits, targets
        self.opts = dict(ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction=reduction)
        loss, self.lse = ops.cross_entropy_forward(logits, targets, **self.opts)
        return np.asarray(loss)

    def backward(self, g):
        return ops.cross_entropy_backward(g, self.logits, self.targets, self.lse, **self.opts)


def cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Fused log_softmax + negative log likelihood over the last axis of
    logits (..., C); targets (...) are integer class ids (array or Tensor)."""
    _tensor("input", logits)
    targets = np.asarray(_raw(targets))
    return CrossEntropy.apply(logits, targets, ignore_index, label_smoothing, reduction)


# ----------------------------------------------------------------------------
# layer norm


class LayerNorm(Function):
    def forward(self, x, weight, bias, eps):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        y, self.mean, self.rstd = ops.layer_norm_forward(x, weight, bias, eps=eps)
        return y

    def backward(self, g):
        need_w = self.weight is not None and (self.needs_input_grad[1]
                                              or (self.has_bias and self.needs_input_grad[-1]))
        dx, dw, db = ops.layer_norm_backward(g, self.x, self.weight, self.mean, self.rstd,
                                             need_weight_grads=need_w)
        if self.has_bias and db is None:  # bias without weight, or weight grads skipped
            db = g.reshape(-1, g.shape[-1]).sum(axis=0)
        grads = (dx,)
        if self.weight is not None:
            grads += (dw,)
        if self.has_bias:
            grads += (db,)
        return grads


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """Normalise the last axis of x, then scale by weight and shift by bias."""
    _tensor("input", x)
    args = [x, weight if weight is None else _tensor("weight", weight),
            bias if bias is None else _tensor("bias", bias)]
    return LayerNorm.apply(*args, eps)


# ----------------------------------------------------------------------------
# embedding, dropout


class Embedding(Function):
    def forward(self, ids, weight, padding_idx):
        self.ids, self.V, self.padding_idx = ids, weight.shape[0], padding_idx
        return ops.embedding(ids, weight, padding_idx=padding_idx)

    def backward(self, g):
        return ops.embedding_backward(g, self.ids, self.V, padding_idx=self.padding_idx)


def embedding(ids, weight, padding_idx=None):
    """Rows of weight (V, C) at integer ids (array or Tensor)."""
    _tensor("weight", weight)
    return Embedding.apply(np.asarray(_raw(ids)), weight, padding_idx)


class Dropout(Function):
    saves_inputs = False

    def forward(self, x, p, seed):
        self.p = p
        y, self.mask = ops.dropout_forward(x, p=p, seed=seed, training=True)
        return y

    def backward(self, g):
        return ops.dropout_backward(g, self.mask, self.p)


# ----------------------------------------------------------------------------
# attention


class Attention(Function):
    """Fused attention without weights: O(T) memory forward (online
    softmax) and a backward that recomputes the probabilities."""

    saves_output = True

    def forward(self, q, k, v, attn_mask, is_causal, scale):
        self.q, self.k, self.v = q, k, v
        self.opts = dict(attn_mask=attn_mask, is_causal=is_causal, scale=scale)
        self.out, self.lse, _ = ops.attention_forward(q, k, v, **self.opts)
        return self.out

    def backward(self, g):
        return ops.attention_backward(g, self.q, self.k, self.v, self.out, self.lse,
                                      **self.opts)


class AttentionWithWeights(Function):
    """Attention that also returns the (B, H, Tq, Tk) probabilities P, which
    are differentiable too (as in PyTorch's MultiheadAttention)."""

    saves_output = True
    none_grads_ok = True

    def forward(self, q, k, v, attn_mask, is_causal, scale):
        self.q, self.k, self.v = q, k, v
        self.opts = dict(attn_mask=attn_mask, is_causal=is_causal, scale=scale)
        self.out, self.lse, self.p = ops.attention_forward(q, k, v, need_weights=True,
                                                           **self.opts)
        self.scale = scale if scale is not None else (
            1.0 / np.sqrt(q.shape[-1]) if q.shape[-1] else 1.0)
        return self.out, self.p

    def backward(self, g_out, g_p):
        if g_p is None:
            if g_out is None:
                g_out = np.zeros_like(self.out)
            return ops.attention_backward(g_out, self.q, self.k, self.v, self.out, self.lse,
                                          **self.opts)
        dp = g_p if g_out is None else g_p + np.matmul(g_out, np.swapaxes(self.v, -1, -2))
        ds = ops.softmax_backward(np.ascontiguousarray(dp, dtype=self.p.dtype), self.p)
        ds *= np.asarray(self.scale, ds.dtype)              # dS/dq k^T scaled
        dq = np.matmul(ds, self.k)                          # (B, H, Tq, D)
        dk = np.matmul(np.swapaxes(ds, -1, -2), self.q)     # (B, H, Tk, D)
        dv = (np.matmul(np.swapaxes(self.p, -1, -2), g_out) if g_out is not None
              else np.zeros_like(self.v))
        return dq, dk, dv


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None,
                                 need_weights=False):
    """softmax(q k^T * scale + mask) v on 4-D (B, H, T, d) tensors.

    attn_mask: bool (True = attend, PyTorch's F.scaled_dot_product_attention
    convention) or additive float, broadcastable to (B, H, Tq, Tk); it gets
    no gradient. With need_weights, returns (out, weights) and keeps the
    weights for backward; otherwise only out, through the O(T) kernel.
    """
    for name, t in (("query", q), ("key", k), ("value", v)):
        _tensor(name, t)
    mask = _raw(attn_mask)
    if isinstance(attn_mask, Tensor) and attn_mask.requires_grad:
        raise ValueError("attn_mask: a mask that requires grad is not supported "
                         "(it gets no gradient); pass attn_mask.detach()")
    if need_weights:
        return AttentionWithWeights.apply(q, k, v, mask, is_causal, scale)
    return Attention.apply(q, k, v, mask, is_causal, scale)
