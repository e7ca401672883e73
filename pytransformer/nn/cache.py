"""Key/value caches for incremental decoding.

A decoder that generates one token at a time needs, at step t, the keys and
values of every earlier position (self-attention) and of the encoder's
output (cross-attention). Recomputing them each step costs the whole prefix;
the caches keep them:

* :class:`AttentionCache` holds one MultiheadAttention's keys and values,
  (B, H, capacity, head_dim) arrays. A *growing* cache (self-attention)
  appends the new positions' keys/values at each call; a *static* one
  (cross-attention) holds the memory's, projected once.
* :class:`DecoderCache` holds a TransformerDecoder's: one growing and one
  static cache per layer, the memory's key-padding mask, and ``t``, the
  positions decoded so far.

    cache = DecoderCache(model.transformer.decoder, memory, src_pad, max_len=32)
    y = model.transformer.decoder(x_t, None, cache=cache)   # x_t (B, 1, E)

``reorder_self``/``reorder_cross`` keep chosen batch rows (beam search's
survivors, sentences leaving the batch).
"""
import numpy as np

from pytransformer import _core
from pytransformer.autograd.tensor import Tensor
from pytransformer.nn import _fast
from pytransformer.validation import int_arg

__all__ = ["AttentionCache", "DecoderCache"]


class AttentionCache:
    """One attention's keys and values between calls.

    AttentionCache(k, v, length, static): k, v (B, H, capacity, d) arrays
    whose first `length` positions are filled. A static cache (cross
    attention) is only read; a growing one (self-attention) takes the new
    positions' keys and values at [length, length + L) on each call."""

    __slots__ = ("k", "v", "length", "static", "_spare")

    def __init__(self, k, v, length=0, static=False):
        self.k, self.v = k, v
        self.length = int(length)
        self.static = bool(static)
        self._spare = None            # keep()'s second pair of buffers, reused

    @classmethod
    def empty(cls, batch, heads, capacity, head_dim, dtype):
        """A growing cache with room for `capacity` positions."""
        shape = (batch, heads, capacity, head_dim)
        return cls(np.zeros(shape, dtype), np.zeros(shape, dtype), 0, False)

    @property
    def capacity(self):
        """Positions the arrays have room for."""
        return self.k.shape[2]

    def append(self, k, v):
        """Store k, v (B, H, L, d) after the filled positions; returns the
        filled keys and values (B, H, length, d) as views."""
        L = k.shape[2]
        t = self.length
        if t + L > self.capacity:
            raise ValueError(f"cache: {t + L} positions exceed its capacity ({self.capacity})")
        self.k[:, :, t:t + L] = k
        self.v[:, :, t:t + L] = v
        self.length = t + L
        return self.k[:, :, :t + L], self.v[:, :, :t + L]

    def filled(self):
        """The filled keys and values (B, H, length, d), as views."""
        return self.k[:, :, :self.length], self.v[:, :, :self.length]

    def keep(self, index):
        """Keep batch rows `index`. A growing cache gathers the filled
        positions into a second pair of buffers that it keeps and swaps
        with the first, so the beam search's reordering at every step
        allocates nothing once the buffers exist."""
        if self.static:
            self.k, self.v = self.k[index], self.v[index]
            return
        B = self.k.shape[0]
        index = np.asarray(index, dtype=np.intp).reshape(-1)
        index = np.where(index < 0, index + B, index)
        if index.size and (index.min() < 0 or index.max() >= B):
            raise IndexError(f"keep: row indices must be in [-{B}, {B}), got "
                             f"[{index.min()}, {index.max()}]")
        n = len(index)
        spare = self._spare
        if spare is None or spare[0].shape[0] < n or spare[0].shape[1:] != self.k.shape[1:]:
            shape = (n,) + self.k.shape[1:]
            spare = (np.empty(shape, self.k.dtype), np.empty(shape, self.v.dtype))
        new = (spare[0][:n], spare[1][:n])           # leading rows: C-contiguous views
        index = index.astype(np.int64, copy=False)
        for src, dst in zip((self.k, self.v), new):
            if src.flags.c_contiguous:      # only the filled positions, in C
                _core.cache_gather(dst, src, index, self.length)
            else:
                np.take(src, index, axis=0, out=dst, mode="clip")
        self._spare = (self.k, self.v)
        self.k, self.v = new


class DecoderCache:
    """The caches of a TransformerDecoder for decoding position by position.

    DecoderCache(decoder, memory, memory_key_padding_mask=None, max_len):
    decoder a TransformerDecoder (batch_first), memory (B, S, E) its
    encoder output (Tensor or array), memory_key_padding_mask (B, S) bool
    (True = padding, PyTorch's convention) or None, max_len the most
    positions to decode. The cross-attention keys and values of every layer
    are projected here, once. ``t`` counts the positions decoded;
    ``layers[i]`` is layer i's (self, cross) pair of AttentionCaches;
    ``memory_mask`` is the (B, 1, 1, S) bool mask, True = attend, or None."""

    def __init__(self, decoder, memory, memory_key_padding_mask=None, max_len=None):
        mem = memory if isinstance(memory, Tensor) else Tensor(np.asarray(memory))
        if mem.ndim != 3:
            raise ValueError(f"memory: expected shape (batch, length, d_model), got {mem.shape}")
        max_len = int_arg("max_len", max_len, 1)
        B, S, _ = mem.shape
        self.t = 0
        self.max_len = int(max_len)
        self.memory_mask = None
        if memory_key_padding_mask is not None:
            pad = np.asarray(memory_key_padding_mask.data
                             if isinstance(memory_key_padding_mask, Tensor)
                             else memory_key_padding_mask)
            if pad.shape != (B, S) or pad.dtype != np.bool_:
                raise ValueError(f"memory_key_padding_mask: expected bool of shape {(B, S)}, "
                                 f"got {pad.dtype} {pad.shape}")
            if pad.any():
                self.memory_mask = ~pad[:, None, None, :]
        self.layers = []
        kv = _fast.cross_kv(decoder, mem)    # all layers in one C call (eval, no_grad)
        for i, layer in enumerate(decoder.layers):
            sa = layer.self_attn
            self_cache = AttentionCache.empty(B, sa.num_heads, self.max_len, sa.head_dim,
                                              mem.dtype)
            if kv is not None:
                k, v = kv[i]
            else:
                k, v = (t.data for t in layer.multihead_attn.project_kv(mem))
            self.layers.append((self_cache, AttentionCache(k, v, S, static=True)))

    @property
    def batch_size(self):
        """Rows in the batch."""
        return self.layers[0][0].k.shape[0] if self.layers else 0

    def reorder(self, index):
        """Keep batch rows `index` of every cache and of the memory mask."""
        self.reorder_self(index)
        self.reorder_cross(index)

    def reorder_self(self, index):
        """Keep rows `index` of the self-attention caches (the positions
        decoded so far)."""
        for self_cache, _ in self.layers:
            self_cache.keep(index)

    def reorder_cross(self, index):
        """Keep rows `index` of the cross-attention caches and memory mask
        (beam search calls it only when sentences leave the batch: the rows
        of one sentence's beams all hold the same ones)."""
        for _, cross in self.layers:
            cross.keep(index)
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask[index]
