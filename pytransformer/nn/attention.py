"""MultiheadAttention, PyTorch-shaped: the packed in_proj_weight (3E, E),
in_proj_bias (3E,), out_proj (a Linear); masks in PyTorch's module
convention (bool True = NOT allowed to attend; float = added to the scores).
"""
import numpy as np

from pytransformer.autograd.basic import Permute
from pytransformer.autograd.tensor import Function, Parameter, Tensor
from pytransformer.autograd import kernels
from pytransformer.nn import functional as F
from pytransformer.nn import init
from pytransformer.nn.layers import Linear, _dtype, _positive
from pytransformer.nn.module import Module

__all__ = ["MultiheadAttention", "merge_masks"]


class SplitHeads(Function):
    """x (B, L, n*E) -> n contiguous tensors (B, H, L, E/H): the packed
    projection split into q/k/v and into heads in one copy; the backward
    writes the n gradients back into one (B, L, n*E) buffer."""

    saves_inputs = False
    none_grads_ok = True

    def forward(self, x, n, heads):
        B, L, nE = x.shape
        self.shape, self.dtype, self.n, self.heads = x.shape, x.dtype, n, heads
        parts = x.reshape(B, L, n, heads, nE // (n * heads)).transpose(2, 0, 3, 1, 4)
        return tuple(np.ascontiguousarray(p) for p in parts)  # n x (B, H, L, d)

    def backward(self, *grads):
        B, L, nE = self.shape
        g = np.zeros((B, L, self.n, self.heads, nE // (self.n * self.heads)), self.dtype)
        for i, gi in enumerate(grads):
            if gi is not None:
                g[:, :, i] = gi.transpose(0, 2, 1, 3)
        return g.reshape(self.shape)


def _split(x, n, heads):
    out = SplitHeads.apply(x, n, heads)
    return out if isinstance(out, tuple) else (out,)


def _raw_mask(name, m):
    if m is None:
        return None
    m = m.data if isinstance(m, Tensor) else np.asarray(m)
    if m.dtype != np.bool_ and m.dtype.kind != "f":
        raise TypeError(f"{name}: expected a bool or float mask, got dtype {m.dtype}")
    return m


def merge_masks(attn_mask, key_padding_mask, B, H, L, S, dtype):
    """PyTorch-convention masks -> one mask for our kernel, or None.

    attn_mask (L, S) or (B*H, L, S); key_padding_mask (B, S). Bool True
    means "may not attend" there (PyTorch's nn.MultiheadAttention); floats
    are added to the scores. The result is bool with True = attend (when
    every input is bool) or an additive float mask of `dtype`, with shape
    broadcastable to (B, H, L, S)."""
    parts = []
    m = _raw_mask("attn_mask", attn_mask)
    if m is not None:
        if m.shape == (L, S):
            parts.append(m.reshape(1, 1, L, S))
        elif m.shape == (B * H, L, S):
            parts.append(m.reshape(B, H, L, S))
        else:
            raise ValueError(f"attn_mask: expected shape ({L}, {S}) or ({B * H}, {L}, {S}), "
                             f"got {m.shape}")
    m = _raw_mask("key_padding_mask", key_padding_mask)
    if m is not None:
        if m.shape != (B, S):
            raise ValueError(f"key_padding_mask: expected shape ({B}, {S}), got {m.shape}")
        parts.append(m.reshape(B, 1, 1, S))
    if not parts:
        return None
    if all(p.dtype == np.bool_ for p in parts):
        blocked = parts[0] if len(parts) == 1 else parts[0] | parts[1]
        if not blocked.any():   # e.g. a batch without padding: no mask at all
            return None
        return ~blocked
    total = None
    for p in parts:
        add = (np.where(p, dtype.type(-np.inf), dtype.type(0)) if p.dtype == np.bool_
               else p.astype(dtype, copy=False))
        total = add if total is None else total + add
    return total


class MultiheadAttention(Module):
    """Multi-head attention (Vaswani et al. 2017), PyTorch's parameters and call.

    MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True,
    kdim=None, vdim=None, batch_first=True, dtype=None). Note batch_first
    defaults to True here (PyTorch: False): inputs are (B, L, E).

    forward(query, key, value, key_padding_mask=None, need_weights=True,
    attn_mask=None, average_attn_weights=True, is_causal=False) returns
    (attn_output, attn_weights): weights (B, L, S) averaged over heads, or
    (B, H, L, S), or None when need_weights is False -- which runs the fused
    kernel that never stores the (L, S) matrix. Fully masked query rows give
    zeros (PyTorch gives NaN). is_causal=True without attn_mask applies the
    causal mask itself.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=True, dtype=None):
        super().__init__()
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv/add_zero_attn are "
                                      "not supported")
        self.embed_dim = _positive("embed_dim", embed_dim)
        self.num_heads = _positive("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout: must be in [0, 1], got {dropout}")
        self.head_dim = embed_dim // num_heads
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.kdim = embed_dim if kdim is None else _positive("kdim", kdim)
        self.vdim = embed_dim if vdim is None else _positive("vdim", vdim)
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        dtype = _dtype(dtype)
        E = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * E, E), dtype))
            for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(n, None)
        else:
            self.register_parameter("in_proj_weight", None)
            self.q_proj_weight = Parameter(np.empty((E, E), dtype))
            self.k_proj_weight = Parameter(np.empty((E, self.kdim), dtype))
            self.v_proj_weight = Parameter(np.empty((E, self.vdim), dtype))
        if bias:
            self.in_proj_bias = Parameter(np.zeros(3 * E, dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype)
        # PyTorch's _reset_parameters: xavier on the projections, zero biases
        for n in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            if self._parameters[n] is not None:
                init.xavier_uniform_(self._parameters[n])
        if self.out_proj.bias is not None:
            init.zeros_(self.out_proj.bias)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")

    # --- projections --------------------------------------------------------
    def _bias(self, i, n=1):
        b = self.in_proj_bias
        E = self.embed_dim
        return None if b is None else b[i * E:(i + n) * E]

    def project(self, query, key, value):
        """The per-head q (B, H, L, d), k (B, H, S, d), v (B, H, S, d) of
        batch-first inputs (what attention then combines)."""
        if self._qkv_same_embed_dim and query is key and key is value:
            # self-attention: one GEMM
            return _split(F.linear(query, self.in_proj_weight, self.in_proj_bias), 3,
                          self.num_heads)
        return (self._project_q(query),) + tuple(self.project_kv(key, value))

    def project_kv(self, key, value=None):
        """The per-head keys and values (B, H, S, d) of batch-first key and
        value (value defaults to key): what a cross-attention cache holds."""
        E, H = self.embed_dim, self.num_heads
        value = key if value is None else value
        if self._qkv_same_embed_dim:
            W = self.in_proj_weight
            if key is value:
                return _split(F.linear(key, W[E:], self._bias(1, 2)), 2, H)
            (k,) = _split(F.linear(key, W[E:2 * E], self._bias(1)), 1, H)
            (v,) = _split(F.linear(value, W[2 * E:], self._bias(2)), 1, H)
            return k, v
        (k,) = _split(F.linear(key, self.k_proj_weight, self._bias(1)), 1, H)
        (v,) = _split(F.linear(value, self.v_proj_weight, self._bias(2)), 1, H)
        return k, v

    def _project_q(self, query):
        W = (self.in_proj_weight[:self.embed_dim] if self._qkv_same_embed_dim
             else self.q_proj_weight)
        (q,) = _split(F.linear(query, W, self._bias(0)), 1, self.num_heads)
        return q

    def _cached(self, query, cache, attn_mask):
        """Attention of the new positions `query` (B, L, E) through `cache`
        (an AttentionCache): a static cache supplies the keys/values; a
        growing one takes the new positions' and attends causally over
        everything it holds. attn_mask: bool (B, 1, 1, S) True = attend, or
        None. Returns the (B, H, L, d) output."""
        if cache.static:
            q = self._project_q(query)
            k, v = cache.filled()
            return kernels.scaled_dot_product_attention(q, Tensor(k), Tensor(v), attn_mask,
                                                        False)
        q, k, v = self.project(query, query, query)
        L, t = query.shape[1], cache.length
        k, v = cache.append(k.data, v.data)
        mask = None
        if L > 1:   # new position i sees the cache and new positions j <= i
            mask = np.tril(np.ones((L, t + L), bool), t)[None, None]
        return kernels.scaled_dot_product_attention(q, Tensor(k), Tensor(v), mask, False)

    # --- forward --------------------------------------------------------------
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False, cache=None):
        """Attend from query to key/value; returns (attn_output, attn_weights).

        query (B, L, E), key (B, S, kdim), value (B, S, vdim): 3-D Tensors
        ((L, B, E) ... when batch_first is False). key_padding_mask (B, S) and
        attn_mask (L, S) or (B*H, L, S): bool (True = may not attend) or float
        (added to the scores), arrays or Tensors. is_causal masks j > i itself
        when attn_mask is None. attn_output has query's shape; attn_weights is
        (B, L, S) (averaged over heads), (B, H, L, S) when not
        average_attn_weights, or None when need_weights is False.

        cache (an nn.cache.AttentionCache, eval only): decode incrementally.
        A growing cache (self-attention) appends the keys/values of query's
        new positions and attends causally over all it holds (key, value and
        the masks are ignored: pass query three times); a static cache
        (cross-attention) supplies keys/values projected once (key and value
        may be None) and attn_mask may be its (B, 1, 1, S) bool mask, True =
        attend. Weights are not returned with a cache. Raises TypeError for
        a non-Tensor input and ValueError for wrong shapes."""
        if cache is not None:
            if self.training and self.dropout > 0.0:
                raise ValueError("cache: incremental decoding runs in eval mode")
            if not self.batch_first:
                raise ValueError("cache: needs batch_first=True")
            out = self._cached(query, cache, attn_mask)
            B, L = query.shape[:2]
            out = Permute.apply(out, (0, 2, 1, 3)).reshape(B, L, self.embed_dim)
            return self.out_proj(out), None
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}: expected a Tensor, got {type(t).__name__}")
            if t.ndim != 3:
                raise ValueError(f"{name}: expected 3 dims (batched input), got shape {t.shape}")
        if not self.batch_first:  # (L, B, E) -> (B, L, E), keeping identity for self-attn
            same_kv = key is value
            same_qk = query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        B, L, Eq = query.shape
        S = key.shape[1]
        if Eq != self.embed_dim:
            raise ValueError(f"query: expected last dim {self.embed_dim}, got {query.shape}")
        if key.shape[0] != B or value.shape[:2] != (B, S):
            raise ValueError(f"key/value: batch and length must match query {query.shape}: "
                             f"got key {key.shape}, value {value.shape}")
        if key.shape[2] != self.kdim or value.shape[2] != self.vdim:
            raise ValueError(f"key/value: expected last dims {self.kdim}/{self.vdim}, "
                             f"got {key.shape[2]}/{value.shape[2]}")
        q, k, v = self.project(query, key, value)          # (B, H, L|S, d)
        mask = merge_masks(attn_mask, key_padding_mask, B, self.num_heads, L, S, q.dtype)
        causal = bool(is_causal) and attn_mask is None
        p = self.dropout if self.training else 0.0
        weights = None
        if p > 0.0:
            out, weights = _attention_dropout(q, k, v, mask, causal, p)
        elif need_weights:
            out, weights = kernels.scaled_dot_product_attention(q, k, v, mask, causal,
                                                                need_weights=True)
        else:
            out = kernels.scaled_dot_product_attention(q, k, v, mask, causal)
        out = Permute.apply(out, (0, 2, 1, 3)).reshape(B, L, self.embed_dim)  # (B, L, E)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(dim=1)                    # (B, L, S)
        return out, weights


def _additive_mask(mask, causal, dtype, shape):
    """The additive mask, broadcastable to `shape` (B, H, L, S), that the
    attention kernel applies for `mask` (merge_masks' result: bool True =
    attend, an additive float mask of `dtype`, or None) and `causal` (-inf
    above the diagonal, top-left aligned); None when there is neither. The
    mask conversion is ops' own (the array the C kernel reads)."""
    from pytransformer.ops._attention import _mask
    add = None if mask is None else _mask(mask, dtype, shape)[0]
    if causal:
        L, S = shape[-2:]
        tri = np.triu(np.full((L, S), -np.inf, dtype), 1)
        add = tri if add is None else add + tri
    return add


def _attention_dropout(q, k, v, mask, causal, p):
    """Attention with dropout on the probabilities (training only): the
    explicit path, scores -> softmax (C) -> dropout (C) -> @ v, masked as
    the kernel masks (_additive_mask)."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    scores = (q @ k.transpose(-1, -2)) * scale                 # (B, H, L, S)
    add = _additive_mask(mask, causal, q.dtype, scores.shape)
    if add is not None:
        scores = scores + Tensor(add)
    weights = F.dropout(F.softmax(scores, -1), p, True)
    return weights @ v, weights
