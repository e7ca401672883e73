"""Seq2SeqTransformer: the translation model of "Attention Is All You Need".

token ids -> embeddings * sqrt(d_model) + sinusoidal positions -> dropout
-> Transformer (encoder-decoder) -> Linear to target-vocabulary logits, the
output projection optionally tied to the target embedding.
"""
import dataclasses
import math

import numpy as np

from pytransformer import ops
from pytransformer.autograd.tensor import Tensor
from pytransformer.nn import init
from pytransformer.nn.layers import Dropout, Embedding, Linear
from pytransformer.nn.module import Module
from pytransformer.nn.transformer import Transformer

__all__ = ["Seq2SeqConfig", "Seq2SeqTransformer"]


@dataclasses.dataclass
class Seq2SeqConfig:
    """The model's hyper-parameters (saved with every checkpoint); each field
    is commented below. ValueError for a size that is not a positive int,
    d_model not divisible by nhead, or pad_idx outside either vocabulary."""

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
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "nhead", "dim_feedforward",
                     "max_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        if self.d_model % self.nhead:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by nhead "
                             f"({self.nhead})")
        if not 0 <= self.pad_idx < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"pad_idx: {self.pad_idx} is not an id of both vocabularies")

    def to_dict(self):
        """The config as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """A config from to_dict()'s output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Seq2SeqConfig: unknown keys {unknown}")
        return cls(**d)


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

    def forward(self, src, tgt_in):
        """src ids (B, S), decoder input ids tgt_in (B, T) (integer arrays or
        Tensors) -> logits (B, T, tgt_vocab_size). ValueError when ids are not
        2-D or a length exceeds config.max_len."""
        memory, src_pad = self.encode(src)
        return self.decode(tgt_in, memory, src_pad)
