"""The encoder-decoder Transformer of "Attention Is All You Need", with
PyTorch's module names, arguments and state_dict keys (self_attn,
multihead_attn, linear1, linear2, norm1..3, layers.N, encoder.norm, ...).

Differences from PyTorch: batch_first defaults to True; a fully masked
attention row gives zeros instead of NaN.
"""
import copy

import numpy as np

from pytransformer.autograd.tensor import Tensor
from pytransformer.nn import _fast
from pytransformer.nn import functional as F
from pytransformer.nn import init
from pytransformer.nn.attention import MultiheadAttention
from pytransformer.nn.layers import Dropout, LayerNorm, Linear
from pytransformer.nn.module import Module, ModuleList
from pytransformer.validation import int_arg

__all__ = ["Transformer", "TransformerDecoder", "TransformerDecoderLayer",
           "TransformerEncoder", "TransformerEncoderLayer"]


def _activation(activation):
    if callable(activation):
        return activation
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise ValueError(f"activation: expected 'relu', 'gelu' or a callable, got {activation!r}")


class _Layer(Module):
    """What the encoder and decoder layers share: the attention and
    feed-forward sublayers, PyTorch's attribute names and their order (which
    is the state_dict's key order), and the self-attention and feed-forward
    blocks. `cross` adds the decoder's cross-attention and third norm."""

    def __init__(self, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                 batch_first, norm_first, bias, dtype, cross):
        super().__init__()
        mha = dict(dropout=dropout, bias=bias, batch_first=batch_first, dtype=dtype)
        self.self_attn = MultiheadAttention(d_model, nhead, **mha)
        if cross:
            self.multihead_attn = MultiheadAttention(d_model, nhead, **mha)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = bool(norm_first)
        n = 3 if cross else 2
        for i in range(1, n + 1):
            setattr(self, f"norm{i}", LayerNorm(d_model, eps=layer_norm_eps, bias=bias,
                                                dtype=dtype))
        for i in range(1, n + 1):
            setattr(self, f"dropout{i}", Dropout(dropout))
        self._ff_dropout = f"dropout{n}"
        self.activation = _activation(activation)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return getattr(self, self._ff_dropout)(x)


class TransformerEncoderLayer(_Layer):
    """Self-attention then a feed-forward block, each with a residual
    connection and LayerNorm: after the sum (norm_first=False, the paper) or
    before the sublayer (norm_first=True, "pre-norm")."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True,
                 dtype=None):
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                         batch_first, norm_first, bias, dtype, cross=False)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        """src (B, T, d_model) -> (B, T, d_model) ((T, B, d_model) when not
        batch_first). Masks in PyTorch's convention (bool True = may not
        attend; float = added to the scores): src_mask (T, T) or (B*nhead, T,
        T), src_key_padding_mask (B, T); is_causal applies the causal mask
        when src_mask is None. In eval mode under no_grad, without hooks,
        the whole layer runs in C (nn._fast)."""
        if not self.training:
            y = _fast.encoder_forward(self, lambda: [self], None, src, src_mask, src_key_padding_mask,
                                      is_causal)
            if y is not None:
                return y
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x


class TransformerDecoderLayer(_Layer):
    """Masked self-attention, cross-attention over the encoder's memory, and
    a feed-forward block, each with a residual connection and LayerNorm."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True,
                 dtype=None):
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                         batch_first, norm_first, bias, dtype, cross=True)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False,
                cache=None):
        """tgt (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model)
        (sequence-first when not batch_first). Masks as in
        TransformerEncoderLayer.forward: tgt_mask (T, T) and
        tgt_key_padding_mask (B, T) for the self-attention, memory_mask (T, S)
        and memory_key_padding_mask (B, S) for the cross-attention;
        *_is_causal apply the causal mask when the matching mask is None.

        cache: a (self, cross) pair of nn.cache.AttentionCache (one entry of
        DecoderCache.layers) to decode incrementally: tgt holds only the new
        positions, memory is not read (the cross cache holds its keys and
        values) and memory_mask may be the cache's bool mask (B, 1, 1, S),
        True = attend; the other masks are ignored (self-attention is causal
        over the cache)."""
        if cache is not None:
            return self._step(tgt, cache, memory_mask)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask,
                                    memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask,
                                               memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _step(self, x, cache, memory_mask):
        """forward over new positions with a (self, cross) cache pair."""
        self_cache, cross_cache = cache

        def sa(h):
            return self.dropout1(self.self_attn(h, h, h, cache=self_cache)[0])

        def ca(h):
            return self.dropout2(self.multihead_attn(h, None, None, attn_mask=memory_mask,
                                                     cache=cross_cache)[0])
        if self.norm_first:
            x = x + sa(self.norm1(x))
            x = x + ca(self.norm2(x))
            return x + self._ff_block(self.norm3(x))
        x = self.norm1(x + sa(x))
        x = self.norm2(x + ca(x))
        return self.norm3(x + self._ff_block(x))

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask,
                                key_padding_mask=key_padding_mask, need_weights=False,
                                is_causal=is_causal)[0]
        return self.dropout2(x)


def _clones(layer, n):
    n = int_arg("num_layers", n, 0)
    return ModuleList([copy.deepcopy(layer) for _ in range(n)])


class TransformerEncoder(Module):
    """A stack of num_layers copies of encoder_layer, then an optional norm."""

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True,
                 mask_check=True):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = int(num_layers)
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        """src (B, S, d_model) -> memory (B, S, d_model): every layer with the
        same mask (S, S), src_key_padding_mask (B, S) and is_causal (see
        TransformerEncoderLayer.forward), then norm when there is one. In
        eval mode under no_grad, without hooks, the whole stack runs in one
        C call (nn._fast)."""
        if not self.training:
            y = _fast.encoder_forward(self, lambda: list(self.layers), self.norm, src, mask,
                                      src_key_padding_mask, is_causal)
            if y is not None:
                return y
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                      is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """A stack of num_layers copies of decoder_layer, then an optional norm."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = int(num_layers)
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False,
                cache=None):
        """tgt (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model):
        every layer with the same masks (see TransformerDecoderLayer.forward),
        then norm when there is one.

        cache (an nn.cache.DecoderCache, eval mode): decode incrementally.
        tgt holds the T new positions (B, T, d_model) that follow the
        cache.t decoded so far; memory is not read (the cache holds its
        projections; pass None); the masks are ignored (self-attention is
        causal over the cache, cross-attention uses the cache's memory
        mask). Advances cache.t by T. In eval mode under no_grad, without
        hooks, a one-position step runs the whole stack in one C call
        (nn._fast)."""
        if cache is not None and not self.training:
            y = _fast.decoder_step(self, tgt, cache)     # one C call (nn._fast)
            if y is not None:
                return y
        if cache is not None:
            if len(cache.layers) != len(self.layers):
                raise ValueError(f"cache: built for {len(cache.layers)} layers, the decoder "
                                 f"has {len(self.layers)}")
            x = tgt
            for layer, pair in zip(self.layers, cache.layers):
                x = layer(x, None, memory_mask=cache.memory_mask, cache=pair)
            cache.t += tgt.shape[1]
            return self.norm(x) if self.norm is not None else x
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """The encoder-decoder Transformer: Transformer(d_model=512, nhead=8,
    num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
    dropout=0.1, activation='relu', custom_encoder=None, custom_decoder=None,
    layer_norm_eps=1e-5, batch_first=True, norm_first=False, bias=True).

    As in PyTorch, both stacks end with a LayerNorm (encoder.norm,
    decoder.norm) and every parameter with more than one dim is re-drawn
    with Xavier-uniform. No embeddings or output projection: see
    Seq2SeqTransformer."""

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1, activation="relu", custom_encoder=None,
                 custom_decoder=None, layer_norm_eps=1e-5, batch_first=True, norm_first=False,
                 bias=True, dtype=None):
        super().__init__()
        kw = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                  layer_norm_eps=layer_norm_eps, batch_first=batch_first,
                  norm_first=norm_first, bias=bias, dtype=dtype)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(
                TransformerEncoderLayer(d_model, nhead, **kw), num_encoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(
                TransformerDecoderLayer(d_model, nhead, **kw), num_decoder_layers,
                LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype))
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        """src (B, S, d_model), tgt (B, T, d_model) -> (B, T, d_model): the
        encoder's memory of src (src_mask, src_key_padding_mask,
        src_is_causal), then the decoder over tgt and that memory (tgt_*,
        memory_* masks; see TransformerDecoderLayer.forward). ValueError when
        a feature size is not d_model or the batch sizes differ."""
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"the feature size of src and tgt must equal d_model "
                             f"({self.d_model}), got {src.shape} and {tgt.shape}")
        if src.ndim == 3 and tgt.ndim == 3:
            b = 0 if self.batch_first else 1
            if src.shape[b] != tgt.shape[b]:
                raise ValueError(f"the batch size of src and tgt must match, got {src.shape} "
                                 f"and {tgt.shape}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz, dtype=np.float32):
        """(sz, sz) float mask: 0 on and below the diagonal, -inf above
        (position i may attend to j <= i)."""
        return Tensor(np.triu(np.full((sz, sz), -np.inf, dtype=np.dtype(dtype)), 1))
