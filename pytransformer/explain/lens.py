"""The logit lens for the decoder: the translation read off each decoder
layer's residual stream.

    from pytransformer.explain.lens import logit_lens, logit_lens_accuracy
    table = logit_lens(translator, "the ball is blue")     # layers x positions of words
    acc = logit_lens_accuracy(translator, splits.test[:1000])
    acc.vs_final, acc.vs_gold                              # (n_layers,) each

The decoder's last layer output goes through the final decoder LayerNorm
(``model.transformer.decoder.norm``) and the generator (the output
projection) to give the logits. The lens applies that same head to the
output of every earlier decoder layer, ``generator(decoder.norm(h_i))``,
and asks what the model would say if it stopped there. On the last layer
the lens *is* the model's own output. The encoder has no lens: its states
never meet the output layer except through cross-attention, so reading them
with the generator means nothing.
"""
import dataclasses

import numpy as np

from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor
from pytransformer.data import EOS

from .ffn import _check_pairs, _check_translator, teacher_forced_traces
from .trace import trace

__all__ = ["LensTable", "LensAccuracy", "logit_lens", "logit_lens_accuracy", "lens_logits"]


def lens_logits(model, hidden):
    """Logits (..., V) float64 of the model's output head applied to decoder
    states `hidden` (..., d_model): generator(decoder.norm(hidden)), run by
    the model's own modules (so the last layer reproduces its logits)."""
    h = np.asarray(hidden)
    d = model.config.d_model
    if h.ndim < 1 or h.shape[-1] != d:
        raise ValueError(f"hidden: expected shape (..., {d}), got {h.shape}")
    dtype = model.generator.weight.data.dtype
    norm = model.transformer.decoder.norm
    with no_grad():
        x = Tensor(np.ascontiguousarray(h, dtype=dtype))
        if norm is not None:
            x = norm(x)
        return np.asarray(model.generator(x).data, np.float64)


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


@dataclasses.dataclass
class LensTable:
    """The logit lens on one sentence. Rows: decoder layers 0..L-1 (the last
    is the model's output); columns: decoder positions, labelled by
    `inputs` (<bos> + translation, what the decoder has read) and `targets`
    (the translation + <eos>, what it should produce there). words (L, T)
    list of the argmax word per layer and position, ids (L, T), probs (L, T)
    its probability, target_probs (L, T) the probability given to `targets`,
    final (T,) the model's own prediction (the last row). source: the source
    tokens (+ <eos>). caption: how to read it."""
    source: list
    inputs: list
    targets: list
    words: list
    ids: np.ndarray
    probs: np.ndarray
    target_probs: np.ndarray
    final: list
    caption: str = ""

    def to_dict(self):
        """A JSON-able dict."""
        return {"source": list(self.source), "inputs": list(self.inputs),
                "targets": list(self.targets), "words": [list(r) for r in self.words],
                "ids": self.ids.tolist(), "probs": self.probs.tolist(),
                "target_probs": self.target_probs.tolist(), "final": list(self.final),
                "caption": self.caption}


@dataclasses.dataclass
class LensAccuracy:
    """The logit lens over a split (teacher-forced on the gold translations,
    every real decoder position, padding excluded): per decoder layer,
    vs_final (L,) the share of positions where the lens's word equals the
    model's final prediction, vs_gold (L,) where it equals the gold next
    word, gold_prob (L,) the mean probability the lens gives the gold next
    word; n_positions, n_pairs; caption."""
    vs_final: np.ndarray
    vs_gold: np.ndarray
    gold_prob: np.ndarray
    n_positions: int
    n_pairs: int
    caption: str = ""

    def to_dict(self):
        """A JSON-able dict."""
        return {"vs_final": self.vs_final.tolist(), "vs_gold": self.vs_gold.tolist(),
                "gold_prob": self.gold_prob.tolist(), "n_positions": self.n_positions,
                "n_pairs": self.n_pairs, "caption": self.caption}


def _decoder_states(t, b=None):
    n = len({r.layer for r in t.layers if r.kind == "decoder"})
    if n == 0:
        raise ValueError("trace: no decoder layers recorded (the logit lens needs a decoder)")
    outs = [t.layer("decoder", i).output for i in range(n)]
    return outs if b is None else [o[b] for o in outs]


def logit_lens(translator, src, tgt=None):
    """The logit lens on one sentence `src` (a str), teacher-forced on `tgt`
    (its translation; None: the model's own greedy translation). Returns a
    LensTable (decoder layers x positions)."""
    _check_translator(translator)
    if not isinstance(src, str):
        raise TypeError(f"src: expected one sentence (a str), got {type(src).__name__}")
    if tgt is not None and not isinstance(tgt, str):
        raise TypeError(f"tgt: expected a translation (a str) or None, got "
                        f"{type(tgt).__name__}")
    t = trace(translator, src, tgt)
    net, tv = translator.model, translator.tgt_vocab
    T = len(t.tgt_in_tokens[0])
    states = np.stack([h[:T] for h in _decoder_states(t, 0)])        # (L, T, E)
    p = _softmax(lens_logits(net, states))                            # (L, T, V)
    ids = p.argmax(-1)
    tgt_ids = np.asarray(tv.encode(t.tgt_out_tokens[0]))
    words = [[tv.id_to_token(int(i)) for i in row] for row in ids]
    L = ids.shape[0]
    caption = (
        f"Logit lens: row i is what the decoder would output if it stopped after layer i "
        f"(the final LayerNorm and the output projection applied to that layer's residual "
        f"stream); the last row (layer {L - 1}) is the model's own prediction. Column j is "
        f"the step that has read '{' '.join(t.tgt_in_tokens[0][:2])}...' up to input j and "
        f"should produce target j. Probabilities are the lens's softmax; watch where the "
        f"right word first appears and how sure each layer is. The encoder has no lens: its "
        f"states reach the output only through cross-attention.")
    return LensTable(source=list(t.src_tokens[0]), inputs=list(t.tgt_in_tokens[0]),
                     targets=list(t.tgt_out_tokens[0]), words=words, ids=ids,
                     probs=np.take_along_axis(p, ids[..., None], -1)[..., 0],
                     target_probs=p[:, np.arange(T), tgt_ids], final=words[-1],
                     caption=caption)


def logit_lens_accuracy(translator, pairs, batch_size=128, traces=None):
    """The logit lens over corpus `pairs` (teacher-forced on their gold
    translations, batched): per decoder layer, the share of positions where
    the lens's argmax equals the model's final argmax and the gold next
    word, and the mean probability of the gold next word. traces: optional
    teacher-forced traces of the pairs to reuse (see
    explain.ffn.teacher_forced_traces). Returns a LensAccuracy."""
    _check_translator(translator)
    pairs = _check_pairs(pairs)
    net = translator.model
    pad = net.config.pad_idx
    hits_final = hits_gold = gold_p = None
    n = 0
    for o, t in teacher_forced_traces(translator, pairs, batch_size, traces):
        tgt = np.asarray(t.tgt_ids)
        B = tgt.shape[0]
        mask = tgt != pad                                             # (B, T)
        gold = np.concatenate([tgt[:, 1:], np.zeros((B, 1), tgt.dtype)], axis=1)
        gold[np.arange(B), mask.sum(1) - 1] = EOS
        gold = gold[mask]                                             # (N,)
        states = np.stack([h[mask] for h in _decoder_states(t)])      # (L, N, E)
        logits = lens_logits(net, states)                             # (L, N, V)
        pred = logits.argmax(-1)
        final = pred[-1]
        p = _softmax(logits)
        hf = (pred == final).sum(1)
        hg = (pred == gold).sum(1)
        gp = p[:, np.arange(len(gold)), gold].sum(1)
        hits_final = hf if hits_final is None else hits_final + hf
        hits_gold = hg if hits_gold is None else hits_gold + hg
        gold_p = gp if gold_p is None else gold_p + gp
        n += len(gold)
    vs_final, vs_gold, gold_prob = hits_final / n, hits_gold / n, gold_p / n
    L = len(vs_final)
    rows = "; ".join(f"layer {i}: {vs_final[i]:.1%} of the final word, {vs_gold[i]:.1%} gold"
                     for i in range(L))
    caption = (
        f"Logit lens over {len(pairs)} sentence pairs ({n} decoder positions, teacher-forced "
        f"on the gold translation): for each decoder layer, how often the word read off its "
        f"residual stream (final LayerNorm + output projection) is already the model's final "
        f"choice and the correct next word. {rows}. The last layer agrees with itself by "
        f"definition; a layer far below it has not yet formed the answer, a layer close to "
        f"it has, and the later layers only refine it.")
    return LensAccuracy(vs_final=vs_final, vs_gold=vs_gold, gold_prob=gold_prob,
                        n_positions=int(n), n_pairs=len(pairs), caption=caption)
