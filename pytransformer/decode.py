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
    encoder output. ``reorder(index)`` follows beams being reshuffled.

    KVCache(model, memory, src_pad, max_len): model a Seq2SeqTransformer,
    memory (B, S, d_model) and src_pad (B, S) bool from model.encode, max_len
    the most decoder positions to hold. Arrays are (B, H, max_len, d) for
    self-attention and (B, H, S, d) for cross-attention, memory's dtype;
    ``t`` counts the positions filled."""

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
        """Keep rows `index` of the batch (beam search's survivors): both the
        self-attention entries and the encoder's keys/values."""
        self.reorder_self(index)
        self.reorder_cross(index)

    def reorder_self(self, index):
        """Keep rows `index` of the self-attention keys/values (only the
        t positions filled so far are copied)."""
        t = self.t

        def pick(x):                                     # (B, H, max_len, d) -> (n, H, max_len, d)
            out = np.empty((len(index),) + x.shape[1:], x.dtype)
            out[:, :, :t] = x[index, :, :t]
            return out
        self.self_k = [pick(x) for x in self.self_k]
        self.self_v = [pick(x) for x in self.self_v]

    def reorder_cross(self, index):
        """Keep rows `index` of the encoder's keys/values and source mask
        (beam search calls it only when sentences leave the batch: the rows
        of one sentence's beams all hold the same ones)."""
        self.cross_k = [x[index] for x in self.cross_k]
        self.cross_v = [x[index] for x in self.cross_v]
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
    """Greedy decoding by `model` (a Seq2SeqTransformer, run in eval mode
    without gradients) of a batch of source id sequences src (B, S), padded
    with the model's pad id. Decoding starts from `bos` and runs for at most
    max_len steps (default and upper limit: the model's max_len) or until
    every row produced `eos`. Returns a list of B int64 id arrays (no BOS,
    cut at EOS). use_cache=False re-runs the decoder on the whole prefix
    every step. ValueError for src not 2-D or max_len out of range."""
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


def beam_search(model, src, beam=4, max_len=None, length_penalty=0.6, bos=1, eos=2,
                use_cache=True):
    """Beam search for a batch of source id sequences (B, S), padded with the
    model's pad id, all sentences decoded together.

    Scores are summed log-probabilities divided by GNMT's length penalty
    ((5 + n) / 6) ** length_penalty, n the length including EOS. Returns, per
    sentence, the `beam` best finished hypotheses as (ids, score), best
    first (ids without BOS/EOS); hypotheses still open at max_len count as
    finished there. The B sentences' k = `beam` hypotheses share one batch of
    B * k rows (sentence b owns rows b*k .. b*k + k-1); each step keeps, per
    sentence, the k best extensions and gathers the KV cache's rows to
    follow them; a sentence leaves the batch once no open hypothesis can
    beat its k finished ones. A sentence gets the hypotheses it gets when
    decoded alone, their scores equal up to float32 rounding (GEMMs over
    more rows round differently); tested against one-at-a-time decoding.
    use_cache=False re-runs the decoder on the whole prefix every step."""
    if isinstance(beam, bool) or not isinstance(beam, (int, np.integer)) or beam < 1:
        raise ValueError(f"beam: expected a positive int, got {beam!r}")
    src, max_len = _check(model, src, max_len)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return _beam_batch(model, src, int(beam), max_len, length_penalty, bos, eos,
                               use_cache)
    finally:
        model.train(was_training)


def _top_in_order(cand, n):
    """Indices of the n largest entries of each row of `cand` (R, C) and any
    ties with the n-th, in the order a stable argsort of -cand gives them
    (largest first, ties by index): argsort's prefix without sorting all C."""
    n = min(n, cand.shape[1])
    thr = -np.partition(-cand, n - 1, axis=1)[:, n - 1]             # n-th largest per row
    out = []
    for row, t in zip(cand, thr):
        idx = np.flatnonzero(row >= t) if np.isfinite(t) else np.arange(len(row))
        out.append(idx[np.argsort(-row[idx], kind="stable")])
    return out


def _beam_batch(model, src, k, max_len, alpha, bos, eos, use_cache):
    B = len(src)
    memory, src_pad = model.encode(src)
    rows = np.repeat(np.arange(B), k)                   # row -> sentence (B * k,)
    if use_cache:
        cache = KVCache(model, memory, src_pad, max_len)
        cache.reorder(rows)                             # k copies of each sentence
    mem, mpad = memory.data, np.asarray(src_pad)
    active = list(range(B))                             # sentences still in the batch
    seqs = np.full((B * k, 1), bos, dtype=np.int64)
    scores = np.zeros((B, k))
    scores[:, 1:] = -np.inf                             # start from one live beam each
    scores = scores.reshape(-1)
    finished = [[] for _ in range(B)]
    last_penalty = _length_penalty(max_len, alpha)
    for t in range(max_len):
        if use_cache:
            logits = step_logits(model, cache, seqs[:, -1])
        else:
            logits = model.decode(seqs, Tensor(mem[rows]), mpad[rows]).data[:, -1]
        logp = ops.log_softmax(_never(logits.astype(np.float64), model, bos))  # (N, V)
        V = logp.shape[1]
        cand = (scores[:, None] + logp).reshape(len(active), k * V)  # per sentence
        penalty = _length_penalty(t + 1, alpha)
        # each beam has one EOS candidate, so the 2k best hold k that go on
        tops = _top_in_order(cand, 2 * k)
        index, toks, new_scores, still, kept = [], [], [], [], []
        for a, b in enumerate(active):
            done, keep_rows, keep_tok, keep_score = finished[b], [], [], []
            for flat in tops[a]:
                sc = cand[a, flat]
                if not np.isfinite(sc):
                    break
                row, tok = divmod(int(flat), V)
                row += a * k
                if tok == eos:
                    done.append((seqs[row, 1:].copy(), sc / penalty))
                else:
                    keep_rows.append(row)
                    keep_tok.append(tok)
                    keep_score.append(sc)
                if len(keep_rows) == k:
                    break
            best_done = max((f[1] for f in done), default=-np.inf)
            # no live beam can beat the best finished one any more: the penalty
            # only grows with length and log-probabilities only fall
            if not keep_rows or (len(done) >= k and max(keep_score) / last_penalty < best_done):
                continue
            if t == max_len - 1:
                for row, tok, sc in zip(keep_rows, keep_tok, keep_score):
                    done.append((np.append(seqs[row, 1:], tok), sc / penalty))
                continue
            pad = k - len(keep_rows)                    # fewer than k finite candidates
            index += keep_rows + [keep_rows[0]] * pad
            toks += keep_tok + [keep_tok[0]] * pad
            new_scores += keep_score + [-np.inf] * pad
            still.append(b)
            kept.append(a)
        if not still:
            break
        index = np.array(index)
        if use_cache:
            cache.reorder_self(index)
            if len(still) < len(active):                # sentences left: their rows go
                cache.reorder_cross((np.array(kept)[:, None] * k + np.arange(k)).reshape(-1))
        rows = rows[index]
        seqs = np.concatenate([seqs[index], np.array(toks, dtype=np.int64)[:, None]], 1)
        scores = np.array(new_scores)
        active = still
    out = []
    for done in finished:
        done.sort(key=lambda f: -f[1])
        out.append([(ids.astype(np.int64), float(score)) for ids, score in done[:k]])
    return out
