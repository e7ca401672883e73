"""Seq2SeqTransformer: the translation model of "Attention Is All You Need".

token ids -> embeddings * sqrt(d_model) + sinusoidal positions -> dropout
-> Transformer (encoder-decoder) -> Linear to target-vocabulary logits, the
output projection optionally tied to the target embedding.
"""
import dataclasses
import math

import numpy as np

from pytransformer import ops
from pytransformer.autograd.tensor import Tensor, is_grad_enabled
from pytransformer.nn import _fast, init
from pytransformer.nn.layers import Dropout, Embedding, Linear
from pytransformer.nn.cache import DecoderCache
from pytransformer.nn.module import Module
from pytransformer.nn.transformer import Transformer
from pytransformer.validation import int_arg

__all__ = ["Seq2SeqConfig", "Seq2SeqTransformer"]


_INT_MINIMUM = {"src_vocab_size": 1, "tgt_vocab_size": 1, "d_model": 1, "nhead": 1,
                "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 1,
                "max_len": 2, "pad_idx": 0}
_ACTIVATIONS = ("relu", "gelu")


def _int_field(name, v):
    return int_arg(name, v, _INT_MINIMUM[name])


def _float_field(name, v):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                             np.floating)):
        raise ValueError(f"{name}: expected a number, got {type(v).__name__} {v!r:.80}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise ValueError(f"{name}: expected a finite number, got {v!r:.80}")
    return f


def _bool_field(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name}: expected true or false, got {type(v).__name__} {v!r:.80}")
    return bool(v)


@dataclasses.dataclass
class Seq2SeqConfig:
    """The model's hyper-parameters (saved with every checkpoint); each field
    is commented below. Every field is checked on construction, ValueError
    naming it: sizes and layer counts are ints >= 1 (bool, float and str are
    not ints), max_len >= 2, d_model divisible by nhead, dropout a number in
    [0, 1), layer_norm_eps a finite number > 0, activation "relu" or "gelu",
    norm_first and tie_embeddings bools, pad_idx an id of both
    vocabularies. Numbers are stored as Python int / float."""

    src_vocab_size: int            # source vocabulary, specials included
    tgt_vocab_size: int            # target vocabulary, specials included
    d_model: int = 256             # width of every residual stream
    nhead: int = 4                 # attention heads (d_model % nhead == 0)
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024    # hidden width of the feed-forward blocks
    dropout: float = 0.1           # on embeddings, sublayer outputs, attention
    activation: str = "relu"       # "relu" (the paper) or "gelu"
    norm_first: bool = False       # False: post-norm (the paper); True: pre-norm
    layer_norm_eps: float = 1e-5
    max_len: int = 128             # longest sequence the positional table covers
    pad_idx: int = 0               # padding id (same in both vocabularies)
    tie_embeddings: bool = False   # output projection shares the target embedding

    def __post_init__(self):
        for name in _INT_MINIMUM:
            setattr(self, name, _int_field(name, getattr(self, name)))
        for name in ("dropout", "layer_norm_eps"):
            setattr(self, name, _float_field(name, getattr(self, name)))
        for name in ("norm_first", "tie_embeddings"):
            setattr(self, name, _bool_field(name, getattr(self, name)))
        if self.d_model % self.nhead:
            raise ValueError(f"nhead: d_model ({self.d_model}) must be divisible by nhead "
                             f"({self.nhead})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps: expected a number > 0, got "
                             f"{self.layer_norm_eps}")
        if not (isinstance(self.activation, str) and self.activation in _ACTIVATIONS):
            raise ValueError(f"activation: expected 'relu' or 'gelu', got "
                             f"{self.activation!r:.80}")
        if self.pad_idx >= min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"pad_idx: {self.pad_idx} is not an id of both vocabularies "
                             f"(sizes {self.src_vocab_size} and {self.tgt_vocab_size})")

    def to_dict(self):
        """The config as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """A config from to_dict()'s output (e.g. a checkpoint's): a dict with
        the two vocabulary sizes and any of the other fields; ValueError
        naming the key for a field that is unknown, missing or invalid."""
        if not isinstance(d, dict):
            raise ValueError(f"Seq2SeqConfig: expected a dict, got {type(d).__name__}")
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ValueError(f"Seq2SeqConfig: unknown key {unknown[0]!r:.80} "
                             f"({len(unknown)} unknown)")
        for f in fields:
            if f.default is dataclasses.MISSING and f.name not in d:
                raise ValueError(f"{f.name}: missing (required)")
        return cls(**d)

    def num_state_tensors(self):
        """How many entries Seq2SeqTransformer(self).state_dict() has
        (arithmetic, so it is cheap for any layer count)."""
        return 8 + 12 * self.num_encoder_layers + 18 * self.num_decoder_layers

    def state_shapes(self):
        """{key: shape} of Seq2SeqTransformer(self).state_dict(), in its
        order, computed without building the model (nothing is allocated
        but the dict): what a checkpoint's tensors must match. Its size is
        num_state_tensors()."""
        d, ff = self.d_model, self.dim_feedforward
        out = {"src_embed.weight": (self.src_vocab_size, d),
               "tgt_embed.weight": (self.tgt_vocab_size, d)}

        def attention(prefix):
            out[f"{prefix}.in_proj_weight"] = (3 * d, d)
            out[f"{prefix}.in_proj_bias"] = (3 * d,)
            out[f"{prefix}.out_proj.weight"] = (d, d)
            out[f"{prefix}.out_proj.bias"] = (d,)

        for side, n, attns, norms in (("encoder", self.num_encoder_layers, ("self_attn",), 2),
                                      ("decoder", self.num_decoder_layers,
                                       ("self_attn", "multihead_attn"), 3)):
            for i in range(n):
                p = f"transformer.{side}.layers.{i}"
                for a in attns:
                    attention(f"{p}.{a}")
                out.update({f"{p}.linear1.weight": (ff, d), f"{p}.linear1.bias": (ff,),
                            f"{p}.linear2.weight": (d, ff), f"{p}.linear2.bias": (d,)})
                for k in range(1, norms + 1):
                    out[f"{p}.norm{k}.weight"] = out[f"{p}.norm{k}.bias"] = (d,)
            out[f"transformer.{side}.norm.weight"] = out[f"transformer.{side}.norm.bias"] = (d,)
        weight = ("generator.weight", (self.tgt_vocab_size, d))
        bias = ("generator.bias", (self.tgt_vocab_size,))
        # tying re-assigns generator.weight after its bias exists: it comes last
        out.update([bias, weight] if self.tie_embeddings else [weight, bias])
        return out


class Seq2SeqTransformer(Module):
    """Encoder-decoder translator over token ids (batch first).

    ``model(src, tgt_in)`` gives logits (B, T, tgt_vocab_size) for the
    decoder inputs tgt_in (the target shifted right, starting with BOS);
    padding (pad_idx) is masked out of every attention automatically and the
    decoder is causal. ``encode`` and ``decode`` expose the two halves.
    """

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, Seq2SeqConfig):
            raise TypeError(f"config: expected a Seq2SeqConfig, got {type(config).__name__}")
        c = self.config = config
        self.src_embed = Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_idx)
        self.tgt_embed = Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_idx)
        for emb in (self.src_embed, self.tgt_embed):  # unit variance after * sqrt(d)
            init.normal_(emb.weight, 0.0, c.d_model ** -0.5)
            emb.weight.data[c.pad_idx] = 0
        self.register_buffer("positions", ops.sinusoidal_positions(c.max_len, c.d_model),
                             persistent=False)
        self.dropout = Dropout(c.dropout)
        self.transformer = Transformer(c.d_model, c.nhead, c.num_encoder_layers,
                                       c.num_decoder_layers, c.dim_feedforward, c.dropout,
                                       c.activation, layer_norm_eps=c.layer_norm_eps,
                                       batch_first=True, norm_first=c.norm_first)
        self.generator = Linear(c.d_model, c.tgt_vocab_size)
        if c.tie_embeddings:
            self.generator.weight = self.tgt_embed.weight

    def _embed(self, embed, ids):
        ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.ndim != 2:
            raise ValueError(f"token ids: expected shape (batch, length), got {ids.shape}")
        T = ids.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds the model's max_len "
                             f"({self.config.max_len})")
        if type(embed) is Embedding and self._unhooked_eval():
            # the same kernels on arrays, without the module calls and the
            # autograd nodes nobody reads (dropout is off in eval mode)
            W = embed.weight.data
            x = ops.embedding(ids, W)                                  # (B, T, d)
            x *= W.dtype.type(math.sqrt(self.config.d_model))
            x += self.positions[:T].astype(W.dtype, copy=False)
            return Tensor(x)
        x = embed(ids) * math.sqrt(self.config.d_model)             # (B, T, d)
        x = x + Tensor(self.positions[:T].astype(x.dtype, copy=False))
        return self.dropout(x)

    def encode(self, src):
        """src ids (B, S) -> (memory (B, S, d_model), src padding mask (B, S),
        bool, True at pad_idx)."""
        src = np.asarray(src.data if isinstance(src, Tensor) else src)
        pad = src == self.config.pad_idx
        memory = self.transformer.encoder(self._embed(self.src_embed, src),
                                          src_key_padding_mask=pad)
        return memory, pad

    def decode(self, tgt_in, memory, src_pad):
        """Decoder input ids tgt_in (B, T) over memory (B, S, d_model) and
        src_pad (B, S), both from encode -> logits (B, T, tgt_vocab_size).
        Causal; tgt_in's pad_idx positions are masked out."""
        tgt_in = np.asarray(tgt_in.data if isinstance(tgt_in, Tensor) else tgt_in)
        x = self.transformer.decoder(self._embed(self.tgt_embed, tgt_in), memory,
                                     tgt_key_padding_mask=tgt_in == self.config.pad_idx,
                                     memory_key_padding_mask=src_pad, tgt_is_causal=True)
        return self.generator(x)

    def init_cache(self, memory, src_pad, max_len=None):
        """A DecoderCache for decoding over memory (B, S, d_model) and
        src_pad (B, S) from encode, with room for max_len positions (default
        and limit: config.max_len); the cross-attention keys and values are
        projected here, once."""
        limit = self.config.max_len
        max_len = limit if max_len is None else int_arg("max_len", max_len, 1, limit)
        return DecoderCache(self.transformer.decoder, memory, src_pad, max_len)

    def decode_step(self, tokens, cache):
        """Logits (B, tgt_vocab_size) of the token after `tokens` (B,), the
        newest decoder inputs, at position cache.t of `cache` (from
        init_cache); advances the cache. Eval mode, incremental: the same
        logits as decode() on the whole prefix, up to float rounding."""
        if cache.t >= cache.max_len:
            raise ValueError(f"decoding past max_len ({cache.max_len})")
        ids = np.asarray(tokens)[:, None]
        if self._unhooked_eval():
            logits = self._lean_step(ids, cache)
            if logits is not None:
                return logits
        x = self.tgt_embed(ids) * math.sqrt(self.config.d_model)          # (B, 1, d)
        x = x + Tensor(self.positions[cache.t:cache.t + 1].astype(x.dtype, copy=False))
        x = self.transformer.decoder(x, None, cache=cache)
        return self.generator(x).data[:, 0]                               # (B, V)

    def _unhooked_eval(self):
        """Eval mode, autograd off and no forward hook on any module: the
        decoding step may then skip the module calls (the explain tools'
        hooks see every module call otherwise)."""
        if self.training or is_grad_enabled() or not _fast.enabled:
            return False
        return _fast.unhooked(self)

    def _lean_step(self, ids, cache):
        """decode_step without module calls: the same kernels on arrays (the
        embedding, its scale and position, the decoder stack's one C call,
        the generator). None when the C decoder step does not apply."""
        W = self.tgt_embed.weight.data
        x = ops.embedding(ids.reshape(-1), W)                              # (B, d)
        x *= W.dtype.type(math.sqrt(self.config.d_model))
        x += self.positions[cache.t].astype(W.dtype, copy=False)
        y = _fast.decoder_step(self.transformer.decoder, Tensor(x[:, None]), cache)
        if y is None:
            return None
        g = self.generator
        return ops.linear(y.data[:, 0], g.weight.data,
                          None if g.bias is None else g.bias.data)         # (B, V)

    def forward(self, src, tgt_in):
        """src ids (B, S), decoder input ids tgt_in (B, T) (integer arrays or
        Tensors) -> logits (B, T, tgt_vocab_size). ValueError when ids are not
        2-D or a length exceeds config.max_len."""
        memory, src_pad = self.encode(src)
        return self.decode(tgt_in, memory, src_pad)
