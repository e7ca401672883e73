"""BERT encoders (Devlin et al. 2018) on our nn modules, loading Hugging Face
`BertModel` checkpoints (config.json + model.safetensors).

The model is built from the same modules as the translator, so forward hooks
see a BERT exactly as they see any nn.TransformerEncoderLayer stack:

    BertModel
      embeddings: BertEmbeddings
        word_embeddings        nn.Embedding (vocab_size, hidden)
        position_embeddings    nn.Embedding (max_position_embeddings, hidden)
        token_type_embeddings  nn.Embedding (type_vocab_size, hidden)
        norm                   nn.LayerNorm (hidden, eps=layer_norm_eps)
      layers: nn.ModuleList of nn.TransformerEncoderLayer(hidden, heads,
              intermediate, activation='gelu' (erf), post-norm, batch_first)
        self_attn (MultiheadAttention: packed in_proj, out_proj), linear1,
        linear2, norm1, norm2

Hugging Face key -> ours (layer i):

    embeddings.{word,position,token_type}_embeddings.weight  same names
    embeddings.LayerNorm.{weight,bias}                       embeddings.norm.*
    encoder.layer.i.attention.self.{query,key,value}.*       layers.i.self_attn.in_proj_*
                                                             (rows q, k, v stacked)
    encoder.layer.i.attention.output.dense.*                 layers.i.self_attn.out_proj.*
    encoder.layer.i.attention.output.LayerNorm.*             layers.i.norm1.*
    encoder.layer.i.intermediate.dense.*                     layers.i.linear1.*
    encoder.layer.i.output.dense.*                           layers.i.linear2.*
    encoder.layer.i.output.LayerNorm.*                       layers.i.norm2.*

Ignored when present: pooler.* (the [CLS] pooler, unused by sentence
embeddings) and embeddings.position_ids (a constant buffer). A "bert."
prefix on every key (BertFor... checkpoints saved the base model under it)
is accepted.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from pytransformer import nn, ops
from pytransformer.nn import _fast
from pytransformer.autograd.tensor import Tensor
from pytransformer.checkpoint import load_file

__all__ = ["BertConfig", "BertEmbeddings", "BertModel", "hf_to_ours"]

_SUPPORTED_ACTS = ("gelu",)   # erf GELU; gelu_new / gelu_pytorch_tanh are tanh forms


@dataclasses.dataclass
class BertConfig:
    """The fields of a Hugging Face BertConfig that shape the encoder.

    from_dict / from_json check model_type == 'bert', architectures (when
    given) == ['BertModel'], hidden_act == 'gelu' (erf) and
    position_embedding_type == 'absolute'; anything else is a ValueError."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        for f in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"config.{f}: expected a positive int, got {v!r:.80}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"config: hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.hidden_act not in _SUPPORTED_ACTS:
            raise ValueError(f"config.hidden_act: expected one of {_SUPPORTED_ACTS} (erf "
                             f"GELU), got {self.hidden_act!r:.80}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) \
                or not 0 < eps < math.inf:
            raise ValueError(f"config.layer_norm_eps: expected a finite positive number, "
                             f"got {eps!r:.80}")
        self.layer_norm_eps = float(eps)

    def num_state_tensors(self):
        """How many entries BertModel(self).state_dict() has (arithmetic)."""
        return 5 + 12 * self.num_hidden_layers

    def state_shapes(self):
        """{key: shape} of BertModel(self).state_dict() in its order (our
        names, see the module docstring), computed without building the
        model: what a checkpoint's tensors must match."""
        H, I = self.hidden_size, self.intermediate_size
        out = {"embeddings.word_embeddings.weight": (self.vocab_size, H),
               "embeddings.position_embeddings.weight": (self.max_position_embeddings, H),
               "embeddings.token_type_embeddings.weight": (self.type_vocab_size, H),
               "embeddings.norm.weight": (H,), "embeddings.norm.bias": (H,)}
        for i in range(self.num_hidden_layers):
            p = f"layers.{i}."
            out.update({p + "self_attn.in_proj_weight": (3 * H, H),
                        p + "self_attn.in_proj_bias": (3 * H,),
                        p + "self_attn.out_proj.weight": (H, H),
                        p + "self_attn.out_proj.bias": (H,),
                        p + "linear1.weight": (I, H), p + "linear1.bias": (I,),
                        p + "linear2.weight": (H, I), p + "linear2.bias": (H,),
                        p + "norm1.weight": (H,), p + "norm1.bias": (H,),
                        p + "norm2.weight": (H,), p + "norm2.bias": (H,)})
        return out

    @classmethod
    def from_dict(cls, d, where="config"):
        """A config.json dict -> BertConfig (unknown keys ignored, see the class
        docstring for what is refused). `where` names the source in errors."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        mt = d.get("model_type")
        if mt != "bert":
            raise ValueError(f"{where}: unsupported architecture: model_type {mt!r}, "
                             f"expected 'bert'")
        arch = d.get("architectures")
        if arch is not None and arch != ["BertModel"]:
            raise ValueError(f"{where}: unsupported architecture: architectures {arch!r}, "
                             f"expected ['BertModel']")
        pe = d.get("position_embedding_type", "absolute")
        if pe != "absolute":
            raise ValueError(f"{where}: position_embedding_type {pe!r} is not supported "
                             f"(only 'absolute')")
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError(f"{where}: decoder BERT configs (is_decoder/add_cross_attention) "
                             f"are not supported")
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in fields})
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    @classmethod
    def from_json(cls, path):
        """Read config.json at `path`."""
        path = Path(path)
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, where=str(path))


def _embedding(n, dim):
    """nn.Embedding(n, dim) holding zeros: the weights are loaded next, and
    skipping the N(0, 1) draw of a 30k x 384 table saves about a second."""
    e = nn.Embedding(1, dim)
    e.weight = nn.Parameter(np.zeros((n, dim), np.float32))
    e.num_embeddings = n
    return e


class BertEmbeddings(nn.Module):
    """word + position + token-type embeddings, then LayerNorm (no dropout at
    inference)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        H = config.hidden_size
        self.word_embeddings = _embedding(config.vocab_size, H)
        self.position_embeddings = _embedding(config.max_position_embeddings, H)
        self.token_type_embeddings = _embedding(config.type_vocab_size, H)
        self.norm = nn.LayerNorm(H, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids=None):
        """input_ids (B, T) ints -> (B, T, hidden); positions 0..T-1."""
        B, T = input_ids.shape
        x = self.word_embeddings(input_ids)                          # (B, T, H)
        pos = self.position_embeddings.weight[:T]                    # (T, H)
        if token_type_ids is None or not np.any(token_type_ids):
            x = x + (pos + self.token_type_embeddings.weight[0])     # broadcast over B
        else:
            x = x + pos + self.token_type_embeddings(token_type_ids)
        return self.norm(x)


class BertModel(nn.Module):
    """The BERT encoder: embeddings, then num_hidden_layers post-norm encoder
    layers with erf-GELU. forward returns the last hidden state (B, T, hidden)
    as a Tensor (and, with output_hidden_states, the tuple of the embedding
    output and every layer's output, as Hugging Face's hidden_states)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config: expected a BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(
                config.hidden_size, config.num_attention_heads,
                dim_feedforward=config.intermediate_size, dropout=0.0, activation="gelu",
                layer_norm_eps=config.layer_norm_eps, batch_first=True, norm_first=False)
            for _ in range(config.num_hidden_layers)])
        self.eval()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                output_hidden_states=False):
        """input_ids (B, T) integer ids; attention_mask (B, T) 1 = token,
        0 = padding (None: no padding); token_type_ids (B, T) or None (zeros).
        T may not exceed max_position_embeddings. Returns the last hidden
        state, a (B, T, hidden) Tensor, or (it, hidden_states) with
        output_hidden_states (see the class docstring); ValueError for a bad
        shape, length or id."""
        ids = np.asarray(input_ids.data if isinstance(input_ids, Tensor) else input_ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"input_ids: expected a 2-D integer array (B, T), got "
                             f"{ids.dtype} shape {ids.shape}")
        B, T = ids.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"input_ids: sequence length {T} exceeds "
                             f"max_position_embeddings ({self.config.max_position_embeddings})")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"input_ids: ids must lie in [0, {self.config.vocab_size}), got "
                             f"[{ids.min()}, {ids.max()}]")
        pad = None
        if attention_mask is not None:
            m = np.asarray(attention_mask)
            if m.shape != (B, T):
                raise ValueError(f"attention_mask: expected shape {(B, T)}, got {m.shape}")
            pad = m == 0                                             # (B, T) True = padding
            if not pad.any():
                pad = None
        if token_type_ids is not None:
            token_type_ids = np.asarray(token_type_ids)
            if token_type_ids.shape != (B, T):
                raise ValueError(f"token_type_ids: expected shape {(B, T)}, got "
                                 f"{token_type_ids.shape}")
        st = _fast.layer_stack(self, lambda: list(self.layers))
        if st is not None:
            hidden = self._lean_forward(st, ids, pad, token_type_ids, output_hidden_states)
            x = hidden[-1]
        else:
            x = self.embeddings(ids, token_type_ids)                 # (B, T, H)
            hidden = [x]
            for layer in self.layers:
                x = layer(x, src_key_padding_mask=pad)
                hidden.append(x)
        return (x, tuple(hidden)) if output_hidden_states else x

    def _lean_forward(self, st, ids, pad, token_type_ids, all_hidden):
        """The forward pass without autograd or module calls (used in eval
        mode under no_grad when no hook is registered, see nn._fast): the
        embeddings on NumPy arrays, then the encoder layers in C through
        the LayerStack st, in place.

        With padding, everything runs on the real tokens only, packed into
        (n, E) rows, sequence after sequence (the C layer's packed mode:
        attention per sequence over its own tokens). Padding positions of
        the returned hidden states hold zeros. Returns the hidden states as
        (B, T, E) Tensors: embedding output, then each layer's
        (all_hidden), or only the last."""
        B, T = ids.shape
        E = self.config.hidden_size
        emb = self.embeddings
        keep = None if pad is None else np.flatnonzero(~pad.reshape(-1))  # real rows of B*T
        flat_ids = ids.reshape(-1) if keep is None else ids.reshape(-1)[keep]
        x = ops.embedding(flat_ids, emb.word_embeddings.weight.data)  # (n, E), n = B*T or real
        pos = emb.position_embeddings.weight.data[:T]                 # (T, E)
        # x viewed so that pos broadcasts: (B, T, E), or (n, E) with each row's position
        xv, pos = (x.reshape(B, T, E), pos) if keep is None else (x, pos[keep % T])
        tt = emb.token_type_embeddings.weight.data
        if token_type_ids is None or not np.any(token_type_ids):
            xv += pos + tt[0]
        else:
            xv += pos
            tti = token_type_ids if keep is None else token_type_ids.reshape(-1)[keep]
            xv += tt[tti]
        ops.layer_norm(x, emb.norm.weight.data, emb.norm.bias.data, emb.norm.eps, out=x)
        offsets = None
        if keep is not None:           # sequence b is rows offsets[b]:offsets[b+1] of x
            offsets = np.zeros(B + 1, np.int64)
            np.cumsum((~pad).sum(axis=1), out=offsets[1:])

        def unpack(rows):              # (n, C) -> (B, T, C), zeros at padding
            if keep is None:
                return rows.reshape(B, T, -1)
            full = np.zeros((B * T, rows.shape[1]), rows.dtype)
            full[keep] = rows
            return full.reshape(B, T, -1)

        hidden = [x]
        if all_hidden:
            for i in range(len(self.layers)):
                x = x.copy()
                st.encoder_forward(x, offsets, None, None, B, T, False, i, i + 1)
                hidden.append(x)
        else:
            st.encoder_forward(x, offsets, None, None, B, T)
        return [Tensor(unpack(h)) for h in (hidden if all_hidden else hidden[-1:])]

    # --- weights -------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path):
        """Build from a directory holding config.json and model.safetensors."""
        path = Path(path)
        for name in ("config.json", "model.safetensors"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path / name}: missing (a BERT model directory "
                                        f"needs config.json and model.safetensors)")
        config = BertConfig.from_json(path / "config.json")
        where = str(path / "model.safetensors")
        ours = _check_tensors(config, load_file(path / "model.safetensors"), where)
        return cls(config)._load_ours(ours)

    def load_hf_state_dict(self, tensors, where="state_dict"):
        """Load Hugging Face BertModel tensors ({name: array}) into this model.
        Missing, unexpected, mis-shaped or non-float tensors raise one
        ValueError naming the first few of each and `where`."""
        return self._load_ours(_check_tensors(self.config, tensors, where))

    def _load_ours(self, ours):
        self.load_state_dict({k: np.ascontiguousarray(v, dtype=np.float32)
                              for k, v in ours.items()})
        return self


_LAYER_MAP = {
    "attention.output.dense.weight": "self_attn.out_proj.weight",
    "attention.output.dense.bias": "self_attn.out_proj.bias",
    "attention.output.LayerNorm.weight": "norm1.weight",
    "attention.output.LayerNorm.bias": "norm1.bias",
    "intermediate.dense.weight": "linear1.weight",
    "intermediate.dense.bias": "linear1.bias",
    "output.dense.weight": "linear2.weight",
    "output.dense.bias": "linear2.bias",
    "output.LayerNorm.weight": "norm2.weight",
    "output.LayerNorm.bias": "norm2.bias",
}
_EMB_MAP = {
    "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight": "embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.norm.bias",
}
_IGNORED_PREFIXES = ("pooler.",)
_IGNORED = ("embeddings.position_ids",)
_QKV = ("query", "key", "value")


def _listed(keys, limit=3):
    """The Hugging Face names of the first `limit` keys, and the count."""
    more = f" and {len(keys) - limit} more ({len(keys)} in all)" if len(keys) > limit else ""
    return f"{_hf_names(keys[:limit])}{more}"


def _check_tensors(config, tensors, where):
    """Hugging Face tensors -> our state dict for `config`, checked against
    config.state_shapes() without building a model: ValueError naming
    `where` and the first few missing, unexpected, mis-shaped or non-float
    tensors. A config with far more layers than the file holds is refused
    from its tensor count, so the check costs no more than the file."""
    if config.num_state_tensors() > 2 * len(tensors) + 64:
        raise ValueError(f"{where}: config.json num_hidden_layers "
                         f"{config.num_hidden_layers} needs {config.num_state_tensors()} "
                         f"tensors; the file has {len(tensors)}")
    ours = hf_to_ours(tensors, config.num_hidden_layers, where)
    expected = config.state_shapes()
    missing = [k for k in expected if k not in ours]
    unexpected = [k for k in ours if k not in expected]
    shapes = [f"{_hf_names([k])[0]}: expected {str(want):.80}, got {tuple(ours[k].shape)}"
              for k, want in expected.items() if k in ours and ours[k].shape != want]
    problems = []
    if missing:
        problems.append(f"missing tensors {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_listed(unexpected)}")
    if shapes:
        problems.append("tensors whose shape does not match config.json: "
                        + "; ".join(shapes[:3])
                        + (f" and {len(shapes) - 3} more" if len(shapes) > 3 else ""))
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    for k, v in ours.items():
        if v.dtype.kind != "f":
            raise ValueError(f"{where}: {_hf_names([k])[0]}: expected floating-point weights, "
                             f"got {v.dtype}")
    return ours


def _hf_names(ours_keys):
    """Our keys -> the Hugging Face names a user would look for in the file."""
    inv = {v: k for k, v in _EMB_MAP.items()}
    out = []
    for k in ours_keys:
        if k in inv:
            out.append(inv[k])
        elif k.startswith("layers."):
            _, i, rest = k.split(".", 2)
            if rest.startswith("self_attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                out.append(f"encoder.layer.{i}.attention.self.{{query,key,value}}.{kind}")
            else:
                hf = {v: k2 for k2, v in _LAYER_MAP.items()}.get(rest, rest)
                out.append(f"encoder.layer.{i}.{hf}")
        else:
            out.append(k)
    return out


def hf_to_ours(tensors, num_layers, where="state_dict"):
    """Rename Hugging Face BertModel tensors to our state_dict keys, packing
    query/key/value into in_proj_weight (3H, H) / in_proj_bias (3H,).
    Names this function does not know are returned unchanged (so the caller
    reports them as unexpected); a q/k/v triple with a part missing or
    mis-shaped is a ValueError naming it."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors: expected a dict of name -> array, got "
                        f"{type(tensors).__name__}")
    if tensors and all(k.startswith("bert.") for k in tensors):
        tensors = {k[5:]: v for k, v in tensors.items()}
    ours, qkv = {}, {}
    for name, value in tensors.items():
        if name in _IGNORED or name.startswith(_IGNORED_PREFIXES):
            continue
        if name in _EMB_MAP:
            ours[_EMB_MAP[name]] = value
            continue
        parts = name.split(".")
        if len(parts) > 3 and parts[0] == "encoder" and parts[1] == "layer" \
                and parts[2].isdigit():
            i, rest = int(parts[2]), ".".join(parts[3:])
            if rest in _LAYER_MAP:
                ours[f"layers.{i}.{_LAYER_MAP[rest]}"] = value
                continue
            if len(parts) == 7 and parts[3:5] == ["attention", "self"] and parts[5] in _QKV \
                    and parts[6] in ("weight", "bias"):
                qkv.setdefault((i, parts[6]), {})[parts[5]] = (name, value)
                continue
        ours[name] = value
    for (i, kind), got in sorted(qkv.items()):
        absent = [f"encoder.layer.{i}.attention.self.{p}.{kind}" for p in _QKV if p not in got]
        if absent:
            raise ValueError(f"{where}: missing tensors {absent}")
        arrays = [np.asarray(got[p][1]) for p in _QKV]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"{where}: tensors whose shape does not match config.json: "
                             + "; ".join(f"{got[p][0]}: {a.shape}" for p, a in zip(_QKV, arrays)))
        ours[f"layers.{i}.self_attn.in_proj_{kind}"] = np.concatenate(arrays, axis=0)
    return ours
