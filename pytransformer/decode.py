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
import numpy as np

from pytransformer import ops
from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor

__all__ = ["beam_search", "greedy"]


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
            cache = model.init_cache(memory, src_pad, max_len) if use_cache else None
            for _ in range(max_len):
                if use_cache:
                    logits = model.decode_step(out[:, -1], cache)
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
        cache = model.init_cache(memory, src_pad, max_len)
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
            logits = model.decode_step(seqs[:, -1], cache)
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
