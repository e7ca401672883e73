"""Capture what a model computes, through forward hooks, without changing it.

    tr = Translator.load(default_model_path())
    t = trace(tr, "the ball is blue")                # translates, then records
    a = t.attention("cross", layer=2)                 # an AttentionRecord
    a.weights[0, h]                                   # (T, S) of head h
    t.ffn("encoder", 0).hidden[0]                     # (S, dim_feedforward)

Every MultiheadAttention, every feed-forward block and every encoder /
decoder layer of the model is recorded while the model runs inside a
:class:`Tracer`; hooks exist only inside it, so a model that is not being
traced runs exactly as before at no cost. The attention hook recomputes, in
float64, the per-head Q, K, V (the module's own projection,
MultiheadAttention.project), the pre-softmax scores, and the weights and
per-head outputs (the attention kernel, ops.scaled_dot_product_attention,
with the module's masks), so the model's run keeps its fast path that never
stores the weights; the recorded per-head outputs, merged and projected,
reproduce the module's output (tests check it).

Records keep the batch dimension: arrays are (B, ...), row b is sentence b.
Kinds of attention: "encoder" (encoder self-attention), "decoder" (masked
decoder self-attention) and "cross" (decoder over the encoder's output).
"""
import dataclasses
import re

import numpy as np

from pytransformer import ops
from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor
from pytransformer.nn.attention import MultiheadAttention, merge_masks
from pytransformer.nn.layers import Embedding
from pytransformer.nn.transformer import TransformerDecoderLayer, TransformerEncoderLayer

__all__ = ["AttentionRecord", "FFNRecord", "LayerRecord", "Trace", "Tracer", "trace",
           "trace_encoder", "ATTENTION_KINDS"]

ATTENTION_KINDS = ("encoder", "decoder", "cross")
_KIND_TITLES = {"encoder": "encoder self-attention",
                "decoder": "decoder masked self-attention",
                "cross": "cross-attention (decoder -> encoder)"}


def _np(x):
    return np.asarray(x.data if isinstance(x, Tensor) else x)


@dataclasses.dataclass
class AttentionRecord:
    """One attention module's computation on one batch (arrays float64).

    query_in (B, L, E), key_in (B, S, E), value_in (B, S, E): the module's
    inputs. q (B, H, L, d), k, v (B, H, S, d): per-head projections, biases
    included. scores (B, H, L, S): q.k / sqrt(d) before any mask. allowed
    (B, H, L, S) bool: where attention may go (padding and causal masks).
    weights (B, H, L, S): softmax of the masked scores (0 where not allowed;
    a fully masked row is all 0). head_out (B, H, L, d) = weights @ v.
    out (B, L, E): the module's output (after out_proj), as the model
    computed it. module: the MultiheadAttention itself (for W_O etc.)."""
    name: str
    kind: str
    layer: int
    query_in: np.ndarray
    key_in: np.ndarray
    value_in: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    scores: np.ndarray
    allowed: np.ndarray
    weights: np.ndarray
    head_out: np.ndarray
    out: np.ndarray
    module: MultiheadAttention = dataclasses.field(repr=False)

    @property
    def num_heads(self):
        """H, the number of heads."""
        return self.q.shape[1]

    @property
    def title(self):
        """'cross-attention (decoder -> encoder), layer 2' and the like."""
        return f"{_KIND_TITLES.get(self.kind, self.kind)}, layer {self.layer}"

    def head_contributions(self):
        """(B, H, L, E): what each head adds to the module's output,
        head_out[h] @ W_O[:, h*d:(h+1)*d]^T; their sum over heads plus the
        out_proj bias is `out`."""
        W = _np(self.module.out_proj.weight).astype(np.float64)       # (E, E)
        H, d = self.q.shape[1], self.q.shape[3]
        Wh = W.reshape(W.shape[0], H, d)                               # (E, H, d)
        return np.einsum("bhld,ehd->bhle", self.head_out, Wh)


@dataclasses.dataclass
class FFNRecord:
    """One feed-forward block: input (B, T, E) into linear1, hidden
    (B, T, F) = activation(linear1(input)) (the "keys" fire here), output
    (B, T, E) = linear2(hidden) (the "values" it writes back). layer_module:
    the encoder/decoder layer holding linear1/linear2."""
    name: str
    kind: str
    layer: int
    input: np.ndarray
    hidden: np.ndarray
    output: np.ndarray
    layer_module: object = dataclasses.field(repr=False)


@dataclasses.dataclass
class LayerRecord:
    """One encoder/decoder layer: the residual stream before (input) and
    after it (output), (B, T, E) each."""
    name: str
    kind: str
    layer: int
    input: np.ndarray
    output: np.ndarray


def _classify(name):
    """Module path -> (kind, layer index). 'transformer.decoder.layers.2.multihead_attn'
    -> ('cross', 2); any path without 'decoder' is an encoder (BERT too)."""
    m = re.search(r"layers?\.(\d+)", name)
    layer = int(m.group(1)) if m else 0
    if "multihead_attn" in name or "crossattention" in name:
        return "cross", layer
    return ("decoder" if "decoder" in name else "encoder"), layer


def attention_parts(module, query, key, value, attn_mask=None, key_padding_mask=None,
                    is_causal=False):
    """Recompute, in float64, what the MultiheadAttention `module` computes
    from its batch-first input Tensors query (B, L, E), key (B, S, kdim) and
    value (B, S, vdim), with masks in the module's convention (see
    MultiheadAttention.forward; is_causal applies when attn_mask is None).
    Returns a dict of arrays: q (B, H, L, d), k and v (B, H, S, d), scores
    (B, H, L, S) = q k^T / sqrt(d) before masking, allowed (B, H, L, S)
    bool, weights (B, H, L, S) and head_out (B, H, L, d), the per-head
    outputs before out_proj. The weights and head_out are the attention
    kernel's (ops.scaled_dot_product_attention) in float64: 0 where not
    allowed, a fully masked row all 0."""
    with no_grad():
        q, k, v = (np.ascontiguousarray(x.data, np.float64)
                   for x in module.project(query, key, value))
    B, H, L, d = q.shape
    S = k.shape[2]
    scores = np.einsum("bhld,bhsd->bhls", q, k) / np.sqrt(d)
    mask = merge_masks(attn_mask, key_padding_mask, B, H, L, S, np.dtype(np.float64))
    causal = bool(is_causal) and attn_mask is None
    head_out, weights = ops.scaled_dot_product_attention(q, k, v, mask, causal,
                                                         need_weights=True)
    allowed = np.ones((B, H, L, S), bool)
    if mask is not None:
        allowed &= np.broadcast_to(mask if mask.dtype == np.bool_ else np.isfinite(mask),
                                   (B, H, L, S))
    if causal:
        allowed &= np.tril(np.ones((L, S), bool))
    return dict(q=q, k=k, v=v, scores=scores, allowed=allowed, weights=weights,
                head_out=head_out)


class Tracer:
    """Context manager: while open, every attention module, feed-forward
    block, layer and embedding of `model` is recorded into a Trace; on exit
    every hook is removed (the model is as before).

        with Tracer(model) as t:
            model(src, tgt)
        t.attention("encoder", 0).weights
    """

    def __init__(self, model):
        self.model = model
        self.trace = Trace()
        self._handles = []

    def __enter__(self):
        try:
            for name, m in self.model.named_modules():
                if isinstance(m, MultiheadAttention):
                    self._handles.append(m.register_forward_hook(self._attn_hook(name),
                                                                 with_kwargs=True))
                elif isinstance(m, (TransformerEncoderLayer, TransformerDecoderLayer)):
                    self._hook_layer(name, m)
                elif isinstance(m, Embedding):
                    self._handles.append(m.register_forward_hook(self._embed_hook(name)))
        except BaseException:
            self.close()
            raise
        return self.trace

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Remove every hook this tracer added."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _attn_hook(self, name):
        kind, layer = _classify(name)

        def hook(module, args, kwargs, output):
            query, key, value = (list(args) + [kwargs.get(n) for n in
                                               ("query", "key", "value")][len(args):])[:3]
            if not module.batch_first:
                query, key, value = (x.transpose(0, 1) for x in (query, key, value))
            parts = attention_parts(module, query, key, value, kwargs.get("attn_mask"),
                                    kwargs.get("key_padding_mask"),
                                    bool(kwargs.get("is_causal", False)))
            out = _np(output[0])
            if not module.batch_first:
                out = out.transpose(1, 0, 2)
            self.trace.attentions.append(AttentionRecord(
                name=name, kind=kind, layer=layer, query_in=_np(query).astype(np.float64),
                key_in=_np(key).astype(np.float64), value_in=_np(value).astype(np.float64),
                out=out.astype(np.float64), module=module, **parts))
        return hook

    def _hook_layer(self, name, layer_module):
        kind, layer = _classify(name)
        state = {}

        def l1(module, args, output):
            state["input"] = _np(args[0]).astype(np.float64)

        def l2(module, args, output):
            self.trace.ffns.append(FFNRecord(
                name=name, kind=kind, layer=layer, input=state.pop("input", None),
                hidden=_np(args[0]).astype(np.float64), output=_np(output).astype(np.float64),
                layer_module=layer_module))

        def whole(module, args, output):
            self.trace.layers.append(LayerRecord(
                name=name, kind=kind, layer=layer, input=_np(args[0]).astype(np.float64),
                output=_np(output).astype(np.float64)))

        self._handles += [layer_module.linear1.register_forward_hook(l1),
                          layer_module.linear2.register_forward_hook(l2),
                          layer_module.register_forward_hook(whole)]

    def _embed_hook(self, name):
        def hook(module, args, output):
            self.trace.embeddings[name] = (_np(args[0]).copy(), _np(output).astype(np.float64))
        return hook


class Trace:
    """What a traced run computed: lists of AttentionRecord, FFNRecord and
    LayerRecord in execution order, embeddings {module path: (ids, vectors)},
    and, when made by :func:`trace`, the tokens: src_tokens (list per
    sentence, <eos> included), tgt_in_tokens (decoder inputs: <bos> + the
    translation) and tgt_out_tokens (what each decoder position produces:
    the translation + <eos>), the ids src_ids (B, S) / tgt_ids (B, T)
    (decoder inputs), and logits (B, T, V)."""

    def __init__(self):
        self.attentions, self.ffns, self.layers = [], [], []
        self.embeddings = {}
        self.src_tokens = self.tgt_in_tokens = self.tgt_out_tokens = None
        self.src_ids = self.tgt_ids = self.logits = None
        self.model = None

    def _find(self, records, kind, layer, what):
        found = [r for r in records if r.kind == kind and r.layer == layer]
        if not found:
            have = sorted({(r.kind, r.layer) for r in records})
            raise KeyError(f"{what}: no record of kind {kind!r} layer {layer}; have {have}")
        return found[-1]

    def attention(self, kind, layer):
        """The AttentionRecord of `kind` ('encoder', 'decoder', 'cross') at
        `layer` (negative counts from the last)."""
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"kind: expected one of {ATTENTION_KINDS}, got {kind!r}")
        return self._find(self.attentions, kind, self._layer_index(self.attentions, kind, layer),
                          "attention")

    def ffn(self, kind, layer):
        """The FFNRecord of the 'encoder' or 'decoder' layer `layer`."""
        return self._find(self.ffns, kind, self._layer_index(self.ffns, kind, layer), "ffn")

    def layer(self, kind, layer):
        """The LayerRecord (residual stream in/out) of an 'encoder' or 'decoder' layer."""
        return self._find(self.layers, kind, self._layer_index(self.layers, kind, layer),
                          "layer")

    def num_layers(self, kind):
        """How many layers of `kind` were recorded."""
        return len({r.layer for r in self.attentions if r.kind == kind})

    def kinds(self):
        """The attention kinds present, in ATTENTION_KINDS order."""
        have = {r.kind for r in self.attentions}
        return [k for k in ATTENTION_KINDS if k in have]

    @staticmethod
    def _layer_index(records, kind, layer):
        if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool):
            raise TypeError(f"layer: expected an int, got {type(layer).__name__}")
        if layer < 0:
            n = len({r.layer for r in records if r.kind == kind})
            layer += n
        return int(layer)

    def tokens(self, kind, b=0):
        """(query tokens, key tokens) labelling the rows and columns of
        attention of `kind` for sentence b."""
        if self.src_tokens is None:
            raise ValueError("tokens: this trace has no tokens (made by Tracer, not trace())")
        if kind == "encoder":
            return self.src_tokens[b], self.src_tokens[b]
        if kind == "decoder":
            return self.tgt_in_tokens[b], self.tgt_in_tokens[b]
        return self.tgt_in_tokens[b], self.src_tokens[b]


def _translator_run(translator, src, tgt):
    """Tokens and ids for a Translator: src (a sentence or list), tgt the
    reference translation(s) or None (greedy translation first)."""
    single = isinstance(src, str)
    sources = [src] if single else list(src)
    src_ids, toks = translator.encode_sources(sources)
    limit = translator.model.config.max_len - 1      # <bos> + tokens fit the decoder
    if tgt is None:
        # an undertrained model may never say <eos>: stop where the traced
        # decoder input (<bos> + tokens) still fits max_len
        targets = translator.translate(sources, max_len=max(limit, 1))
    else:
        targets = [tgt] if isinstance(tgt, str) else list(tgt)
        if len(targets) != len(sources):
            raise ValueError(f"tgt: {len(targets)} translations for {len(sources)} sources")
    tgt_toks = [t.split() for t in targets]
    for t in tgt_toks:
        if len(t) > limit:
            raise ValueError(f"translation: expected at most {limit} words (the model's "
                             f"max_len {limit + 1} with <bos>), got {len(t)}")
    T = max(len(t) for t in tgt_toks) + 1
    tgt_ids = np.zeros((len(sources), T), np.int64)                  # pad 0
    for b, t in enumerate(tgt_toks):
        ids = translator.tgt_vocab.encode(t, add_bos=True)
        tgt_ids[b, :len(ids)] = ids
    src_tokens = [t + ["<eos>"] for t in toks]
    tgt_in = [["<bos>"] + t for t in tgt_toks]
    tgt_out = [t + ["<eos>"] for t in tgt_toks]
    return src_ids, tgt_ids, src_tokens, tgt_in, tgt_out


def trace(model, src, tgt=None):
    """Run `model` once with every attention, FFN and layer recorded.

    model: a Translator (src a sentence or a list of sentences; tgt their
    translations, or None to use the model's own greedy translation), a
    Seq2SeqTransformer (src (B, S) and tgt (B, T) decoder-input ids, tgt
    required), or any model with ``trace_inputs(src)`` returning
    (args, src_tokens) for its forward (the BERT encoder of
    pytransformer.pretrained). Returns a Trace. The model runs in eval mode
    under no_grad; its training flag is restored afterwards."""
    from pytransformer.nn.seq2seq import Seq2SeqTransformer

    from pytransformer.nn.module import Module
    net = getattr(model, "model", model)
    if not isinstance(net, Module):
        raise TypeError(f"model: expected a Translator, a Seq2SeqTransformer or a model "
                        f"with trace_inputs(), got {type(model).__name__}")
    was_training = net.training
    net.eval()
    try:
        tracer = Tracer(net)
        if hasattr(model, "encode_sources"):                      # a Translator
            src_ids, tgt_ids, st, ti, to = _translator_run(model, src, tgt)
            with tracer as t, no_grad():
                t.logits = _np(net(src_ids, tgt_ids)).astype(np.float64)
            t.src_ids, t.tgt_ids = src_ids, tgt_ids
            t.src_tokens, t.tgt_in_tokens, t.tgt_out_tokens = st, ti, to
        elif isinstance(net, Seq2SeqTransformer):
            if tgt is None:
                raise ValueError("tgt: a Seq2SeqTransformer needs decoder-input ids to trace")
            src_ids, tgt_ids = np.asarray(src), np.asarray(tgt)
            with tracer as t, no_grad():
                t.logits = _np(net(src_ids, tgt_ids)).astype(np.float64)
            t.src_ids, t.tgt_ids = src_ids, tgt_ids
        elif hasattr(model, "trace_inputs"):
            args, toks = model.trace_inputs(src)
            with tracer as t, no_grad():
                net(*args)
            t.src_tokens = toks
            t.src_ids = np.asarray(args[0])
        else:
            raise TypeError(f"model: expected a Translator, a Seq2SeqTransformer or a model "
                            f"with trace_inputs(), got {type(model).__name__}")
    finally:
        net.train(was_training)
    t.model = model
    return t


def trace_encoder(net, src_ids):
    """Trace only the encoder of a Seq2SeqTransformer `net` on source ids
    (B, S) (eval mode, no_grad, the training flag restored): about half the
    cost of a full trace when only encoder records are needed. Returns a
    Trace with src_ids set."""
    was_training = net.training
    net.eval()
    try:
        with Tracer(net) as t, no_grad():
            net.encode(src_ids)
    finally:
        net.train(was_training)
    t.src_ids = np.asarray(src_ids)
    return t
