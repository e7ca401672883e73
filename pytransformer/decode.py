"""Greedy and beam-search decoding for Seq2SeqTransformer, over a KV cache.

With the cache each new token costs one step of every decoder layer: its
query attends over the keys and values kept from earlier steps (self
attention) and over the encoder's keys and values, projected once per
sentence (cross attention). Without it (``use_cache=False``) every step
re-runs the decoder on the whole prefix, which is what the cache saves; the
two give the same tokens (tests check it).

    out = greedy(model, src_ids, max_len=40)           # list of id arrays
    hyps = beam_search(model, src_ids, beam=4)         # best first, per sentence

Ids: ``bos`` starts every target and ``eos`` ends it (defaults 1 and 2, the
vocabulary's specials); the returned sequences exclude BOS and stop before
EOS. Padding and BOS are never generated.
"""
import math

import numpy as np

from pytransformer import ops
from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor
from pytransformer.nn.attention import _split
from pytransformer.nn import functional as F

__all__ = ["KVCache", "beam_search", "greedy"]


class KVCache:
    """Per decoder layer: the self-attention keys/values of the tokens so far
    (preallocated to max_len) and the cross-attention keys/values of the
    encoder output. ``reorder(index)`` follows beams being reshuffled."""

    def __init__(self, model, memory, src_pad, max_len):
        layers = model.transformer.decoder.layers
        B, S, E = memory.shape
        self.t = 0
        self.max_len = max_len
        self.src_attend = ~np.asarray(src_pad)[:, None, None, :]   # (B, 1, 1, S) True = attend
        self.self_k, self.self_v, self.cross_k, self.cross_v = [], [], [], []
        for layer in layers:
            mha = layer.self_attn
            H, d = mha.num_heads, mha.head_dim
            self.self_k.append(np.zeros((B, H, max_len, d), memory.dtype))
            self.self_v.append(np.zeros((B, H, max_len, d), memory.dtype))
            ca = layer.multihead_attn
            W, b = ca.in_proj_weight, ca.in_proj_bias
            k, v = _split(F.linear(memory, W[E:], None if b is None else b[E:]), 2, H)
            self.cross_k.append(k.data)                               # (B, H, S, d)
            self.cross_v.append(v.data)

    def reorder(self, index):
        """Keep rows `index` of the batch (beam search's survivors)."""
        pick = lambda xs: [x[index] for x in xs]  # noqa: E731
        self.self_k, self.self_v = pick(self.self_k), pick(self.self_v)
        self.cross_k, self.cross_v = pick(self.cross_k), pick(self.cross_v)
        self.src_attend = self.src_attend[index]


def _merge_heads(out):
    B, H, T, d = out.shape
    return out.permute(0, 2, 1, 3).reshape(B, T, H * d)            # (B, T, E)


def _self_attention(layer, x, cache, i):
    """One step of masked self-attention: the new token's q, k, v; k and v
    join the cache; q attends over every cached position (all earlier)."""
    mha = layer.self_attn
    q, k, v = mha.project(x, x, x)                                   # (B, H, 1, d)
    t = cache.t
    cache.self_k[i][:, :, t] = k.data[:, :, 0]
    cache.self_v[i][:, :, t] = v.data[:, :, 0]
    K = Tensor(cache.self_k[i][:, :, :t + 1])
    V = Tensor(cache.self_v[i][:, :, :t + 1])
    out = F.scaled_dot_product_attention(q, K, V)                    # (B, H, 1, d)
    return mha.out_proj(_merge_heads(out))


def _cross_attention(layer, x, cache, i):
    mha = layer.multihead_attn
    E, H = mha.embed_dim, mha.num_heads
    b = mha.in_proj_bias
    (q,) = _split(F.linear(x, mha.in_proj_weight[:E], None if b is None else b[:E]), 1, H)
    out = F.scaled_dot_product_attention(q, Tensor(cache.cross_k[i]), Tensor(cache.cross_v[i]),
                                         attn_mask=cache.src_attend)
    return mha.out_proj(_merge_heads(out))


def _layer_step(layer, x, cache, i):
    """The decoder layer on one new position (post- or pre-norm as built)."""
    if layer.norm_first:
        x = x + _self_attention(layer, layer.norm1(x), cache, i)
        x = x + _cross_attention(layer, layer.norm2(x), cache, i)
        return x + layer._ff_block(layer.norm3(x))
    x = layer.norm1(x + _self_attention(layer, x, cache, i))
    x = layer.norm2(x + _cross_attention(layer, x, cache, i))
    return layer.norm3(x + layer._ff_block(x))


def step_logits(model, cache, tokens):
    """Logits (B, V) of the next token after `tokens` (B,), the newest
    decoder input, at position cache.t; advances the cache."""
    if cache.t >= cache.max_len:
        raise ValueError(f"decoding past max_len ({cache.max_len})")
    c = model.config
    x = model.tgt_embed(np.asarray(tokens)[:, None]) * math.sqrt(c.d_model)   # (B, 1, d)
    x = x + Tensor(model.positions[cache.t:cache.t + 1].astype(x.dtype, copy=False))
    dec = model.transformer.decoder
    for i, layer in enumerate(dec.layers):
        x = _layer_step(layer, x, cache, i)
    if dec.norm is not None:
        x = dec.norm(x)
    cache.t += 1
    return model.generator(x).data[:, 0]                            # (B, V)


def _never(logits, model, bos):
    """Padding and BOS are never generated (a pad in the prefix would also be
    masked out of the full decoder's attention, unlike the cache's)."""
    logits[:, [model.config.pad_idx, bos]] = -np.inf
    return logits


def _check(model, src, max_len):
    src = np.asarray(src.data if isinstance(src, Tensor) else src)
    if src.ndim != 2 or src.shape[1] == 0:
        raise ValueError(f"src: expected token ids of shape (batch, length >= 1), got {src.shape}")
    limit = model.config.max_len
    if max_len is None:
        max_len = limit
    if not 1 <= max_len <= limit:
        raise ValueError(f"max_len: must be in [1, {limit}] (the model's max_len), got {max_len}")
    return src, max_len


def _strip(row, eos):
    row = list(row)
    return np.array(row[:row.index(eos)] if eos in row else row, dtype=np.int64)


def greedy(model, src, max_len=None, bos=1, eos=2, use_cache=True):
    """Greedy decoding of a batch of source id sequences (B, S), padded with
    the model's pad id. Returns a list of B id arrays (no BOS, cut at EOS).
    use_cache=False re-runs the decoder on the whole prefix every step."""
    src, max_len = _check(model, src, max_len)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            memory, src_pad = model.encode(src)
            B = len(src)
            out = np.full((B, 1), bos, dtype=np.int64)
            done = np.zeros(B, bool)
            cache = KVCache(model, memory, src_pad, max_len) if use_cache else None
            for _ in range(max_len):
                if use_cache:
                    logits = step_logits(model, cache, out[:, -1])
                else:
                    logits = model.decode(out, memory, src_pad).data[:, -1]
                nxt = _never(logits, model, bos).argmax(-1)
                nxt[done] = eos
                out = np.concatenate([out, nxt[:, None]], 1)
                done |= nxt == eos
                if done.all():
                    break
    finally:
        model.train(was_training)
    return [_strip(r[1:], eos) for r in out]


def _length_penalty(length, alpha):
    """GNMT's ((5 + length) / 6) ** alpha (1 when alpha is 0)."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(model, src, beam=4, max_len=None, length_penalty=0.6, bos=1, eos=2):
    """Beam search over the KV cache for each source sequence of the batch.

    Scores are summed log-probabilities divided by GNMT's length penalty
    ((5 + n) / 6) ** length_penalty, n the length including EOS. Returns, per
    sentence, the `beam` best finished hypotheses as (ids, score), best
    first (ids without BOS/EOS); hypotheses still open at max_len count as
    finished there."""
    if isinstance(beam, bool) or not isinstance(beam, (int, np.integer)) or beam < 1:
        raise ValueError(f"beam: expected a positive int, got {beam!r}")
    src, max_len = _check(model, src, max_len)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return [_beam_one(model, src[i:i + 1], beam, max_len, length_penalty, bos, eos)
                    for i in range(len(src))]
    finally:
        model.train(was_training)


def _beam_one(model, src, k, max_len, alpha, bos, eos):
    memory, src_pad = model.encode(src)
    cache = KVCache(model, memory, src_pad, max_len)
    cache.reorder(np.zeros(k, dtype=np.int64))                   # k copies of the sentence
    seqs = np.full((k, 1), bos, dtype=np.int64)
    scores = np.zeros(k)
    scores[1:] = -np.inf                                         # start from one live beam
    finished = []
    for t in range(max_len):
        logits = _never(step_logits(model, cache, seqs[:, -1]).astype(np.float64), model, bos)
        logp = ops.log_softmax(logits)
        cand = (scores[:, None] + logp).reshape(-1)              # (k * V,)
        V = logp.shape[1]
        order = np.argsort(-cand, kind="stable")
        keep_rows, keep_tok, keep_score = [], [], []
        for flat in order:
            s = cand[flat]
            if not np.isfinite(s):
                break
            row, tok = divmod(int(flat), V)
            if tok == eos:
                finished.append((seqs[row, 1:].copy(), s / _length_penalty(t + 1, alpha)))
            else:
                keep_rows.append(row)
                keep_tok.append(tok)
                keep_score.append(s)
            if len(keep_rows) == k:
                break
        best_done = max((f[1] for f in finished), default=-np.inf)
        # no live beam can beat the best finished one any more: the penalty
        # only grows with length and log-probabilities only fall
        if not keep_rows or (len(finished) >= k and
                             max(keep_score) / _length_penalty(max_len, alpha) < best_done):
            break
        if t == max_len - 1:
            for row, tok, s in zip(keep_rows, keep_tok, keep_score):
                finished.append((np.append(seqs[row, 1:], tok), s / _length_penalty(t + 1, alpha)))
            break
        index = np.array(keep_rows + [keep_rows[0]] * (k - len(keep_rows)))
        cache.reorder(index)
        seqs = np.concatenate([seqs[index], np.array(keep_tok + [keep_tok[0]] * (
            k - len(keep_tok)))[:, None]], 1)
        scores = np.array(keep_score + [-np.inf] * (k - len(keep_score)))
    finished.sort(key=lambda f: -f[1])
    return [(ids.astype(np.int64), float(score)) for ids, score in finished[:k]]
