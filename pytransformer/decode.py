"""Greedy and beam-search decoding for Seq2SeqTransformer, over a KV cache.

With the cache each new token costs one step of every decoder layer: its
query attends over the keys and values kept from earlier steps (self
attention) and over the encoder's keys and values, projected once per
sentence (cross attention). Without it (``use_cache=False``) every step
re-runs the decoder on the whole prefix, which is what the cache saves; the
two give the same tokens (tests check it). Sentences that are finished
leave the batch (their cache rows are dropped), so a step costs only the
sentences still being decoded. Greedy decoding and beam search run their
whole loop in C (embedding, decoder stack, generator, the choice of tokens
or hypotheses, the dropping of finished rows: csrc/decode_greedy.c,
decode_beam.c) unless a hook or a training module asks for the module
path; the step loop here is then the one that runs, and the reference the
C loops are tested against.

    out = greedy(model, src_ids, max_len=40)           # list of id arrays
    hyps = beam_search(model, src_ids, beam=4)         # best first, per sentence
    hyps = beam_search(model, src_ids, return_scores=True)   # Hypothesis objects

Ids: ``bos`` starts every target and ``eos`` ends it (defaults 1 and 2, the
vocabulary's specials); the returned sequences exclude BOS and stop before
EOS. Padding and BOS are never generated.

Scores: a token's score is its log-probability (natural log, float64) under
the distribution decoding chooses from (the model's softmax with padding and
BOS excluded). A hypothesis' score is the sum of its tokens' scores (EOS
included when it was produced) divided by a length penalty lp(n):

* ``length_penalty_kind="gnmt"`` (the default): GNMT's ((5 + n) / 6) ** alpha
  (Wu et al. 2016), n the number of tokens *including* EOS;
* ``"power"``: CTranslate2's n ** alpha, n the number of tokens *including*
  EOS when the hypothesis produced it (measured against CTranslate2 4.8:
  its beam scores are the summed log-probabilities over (words + 1) **
  alpha; tests/test_export_ctranslate2.py checks it).

alpha = ``length_penalty`` >= 0; 0 gives the plain sum of log-probabilities
with either kind. Beam search ranks finished hypotheses by this score;
greedy decoding only reports it.
"""
import contextlib
import math
from typing import NamedTuple

import numpy as np

from pytransformer import ops
from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor
from pytransformer.nn import _fast
from pytransformer.validation import choice_arg, int_arg, real_arg

__all__ = ["Hypothesis", "LENGTH_PENALTY_KINDS", "beam_search", "greedy", "length_penalty"]

LENGTH_PENALTY_KINDS = ("gnmt", "power")


class Hypothesis(NamedTuple):
    """One decoded sequence with its scores (what ``return_scores=True``
    returns): ids, the int64 token ids (no BOS, cut before EOS); score, the
    hypothesis score (summed token scores over the length penalty, see the
    module docstring); token_scores, float64 log-probabilities of the
    generated tokens, EOS last when it was produced (so len(ids) + 1
    entries, or len(ids) for a hypothesis stopped at max_len)."""
    ids: np.ndarray
    score: float
    token_scores: np.ndarray


def _check_penalty(alpha, kind):
    """(alpha as float, kind) or ValueError naming the argument."""
    kind = choice_arg("length_penalty_kind", kind, LENGTH_PENALTY_KINDS)
    return real_arg("length_penalty", alpha, low=0.0, below=math.inf), kind


def length_penalty(tokens, ended, alpha, kind="gnmt"):
    """The divisor lp(n) of a hypothesis of `tokens` tokens (EOS not
    counted) that ended with EOS (`ended`) or stopped at max_len: GNMT's
    ((5 + n) / 6) ** alpha or, for kind "power", CTranslate2's n ** alpha,
    with n = tokens + ended in both. ValueError for an unknown kind or
    alpha < 0."""
    alpha, kind = _check_penalty(alpha, kind)
    return _penalty(tokens, ended, alpha, kind)


def _penalty(tokens, ended, alpha, kind):
    if kind == "gnmt":
        return ((5.0 + tokens + bool(ended)) / 6.0) ** alpha
    return float(tokens + bool(ended)) ** alpha


def _normalized(score, penalty):
    """score / penalty; -inf for the zero penalty of an empty hypothesis."""
    return score / penalty if penalty > 0 else -math.inf


@contextlib.contextmanager
def _eval_mode(model):
    """Run the body with every module of `model` in eval mode; afterwards
    every module has the root's former mode (what model.train(mode) gives).
    A model already wholly in eval mode is left alone: no walk over its
    modules beyond the check, which at batch 1 is a visible share of a
    sentence's decoding."""
    was_training = model.training
    switch = was_training or _fast.tree(model).training()
    if switch:
        model.eval()
    try:
        yield
    finally:
        if switch:
            model.train(was_training)


def _never(logits, model, bos):
    """Padding and BOS are never generated (a pad in the prefix would also be
    masked out of the full decoder's attention, unlike the cache's)."""
    logits[:, model.config.pad_idx] = -np.inf
    logits[:, bos] = -np.inf
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


def greedy(model, src, max_len=None, bos=1, eos=2, use_cache=True, *, return_scores=False,
           length_penalty=0.0, length_penalty_kind="gnmt"):
    """Greedy decoding by `model` (a Seq2SeqTransformer, run in eval mode
    without gradients) of a batch of source id sequences src (B, S), padded
    with the model's pad id. Decoding starts from `bos` and runs for at most
    max_len steps (default and upper limit: the model's max_len); a sentence
    leaves the batch at its `eos`, and decoding stops when none is left.
    Returns a list of B int64 id arrays (no BOS, cut at EOS), or, with
    return_scores=True, a list of B Hypothesis (ids, score, token_scores);
    length_penalty (alpha) and length_penalty_kind ("gnmt" or "power") only
    set how that score is normalised (see the module docstring; the default
    alpha 0 gives the summed log-probabilities). use_cache=False re-runs the
    decoder on the whole prefix every step. ValueError for src not 2-D,
    max_len out of range or a bad length penalty."""
    src, max_len = _check(model, src, max_len)
    alpha, kind = _check_penalty(length_penalty, length_penalty_kind)
    with _eval_mode(model), no_grad():
        ids, lengths, lps = _greedy(model, src, max_len, bos, eos, use_cache, return_scores)
    if not return_scores:
        return [ids[b, :n].copy() for b, n in enumerate(lengths)]
    out = []
    for b, n in enumerate(lengths):
        ended = n < max_len                         # EOS at step n
        ts = lps[b, :n + ended].copy()
        out.append(Hypothesis(ids[b, :n].copy(), _normalized(float(ts.sum()),
                                                      _penalty(n, ended, alpha, kind)), ts))
    return out


def _greedy(model, src, max_len, bos, eos, use_cache, return_scores):
    """(ids (B, max_len), tokens before EOS per sentence (B,), token
    log-probabilities (B, max_len) or None). With the cache the whole loop
    is one C call when the model allows it (nn._fast.greedy: no hook, no
    module in training mode, the plain embedding and generator); otherwise
    it steps through model.decode_step here, the same kernels on the same
    rows. Row i of a step's batch is sentence rows[i]; a sentence's rows
    leave the batch (and the cache) at the step that gives its EOS."""
    memory, src_pad = model.encode(src)
    B = len(src)
    ids = np.zeros((B, max_len), np.int64)
    lengths = np.full(B, max_len)
    lps = np.zeros((B, max_len)) if return_scores else None
    rows = np.arange(B)
    nxt = np.full(B, bos, np.int64)
    if use_cache:
        cache = model.init_cache(memory, src_pad, max_len)
        done = _fast.greedy(model, cache, bos, eos, return_scores)    # the loop in C
        if done is not None:
            return done
    else:
        mem, mpad = memory.data, np.asarray(src_pad)
    for t in range(max_len):
        if use_cache:
            logits = model.decode_step(nxt, cache)
        else:
            prefix = np.concatenate([np.full((len(rows), 1), bos, np.int64), ids[rows, :t]], 1)
            logits = model.decode(prefix, Tensor(mem[rows]), mpad[rows]).data[:, -1]
        logits = _never(logits, model, bos)
        nxt = logits.argmax(-1)
        ids[rows, t] = nxt
        if return_scores:
            logp = ops.log_softmax(logits.astype(np.float64))
            lps[rows, t] = logp[np.arange(len(rows)), nxt]
        ended = nxt == eos
        if ended.any():
            lengths[rows[ended]] = t
            keep = np.flatnonzero(~ended)
            if keep.size == 0:
                break
            rows, nxt = rows[keep], nxt[keep]
            if use_cache:
                cache.reorder(keep)
    return ids, lengths, lps


def beam_search(model, src, beam=4, max_len=None, length_penalty=0.6, bos=1, eos=2,
                use_cache=True, *, length_penalty_kind="gnmt", return_scores=False):
    """Beam search for a batch of source id sequences (B, S), padded with the
    model's pad id, all sentences decoded together.

    A hypothesis' score is its summed log-probabilities divided by the length
    penalty: GNMT's ((5 + n) / 6) ** length_penalty (n the length including
    EOS) by default, or CTranslate2's n ** length_penalty (n without EOS)
    with length_penalty_kind="power" (see the module docstring). Returns, per
    sentence, the `beam` best finished hypotheses as (ids, score), best
    first (ids without BOS/EOS), or, with return_scores=True, as Hypothesis
    (ids, score, token_scores); hypotheses still open at max_len count as
    finished there. The first step runs the B sentences once; then their
    k = `beam` hypotheses share one batch of B * k rows (sentence b owns
    rows b*k .. b*k + k-1); each step keeps, per sentence, the k best
    extensions and gathers the KV cache's rows to follow them; a sentence
    leaves the batch once no open hypothesis can beat its k finished ones.
    A sentence gets the hypotheses it gets when decoded alone, their scores
    equal up to float32 rounding (GEMMs over more rows round differently);
    tested against one-at-a-time decoding. use_cache=False re-runs the
    decoder on the whole prefix every step. ValueError for a beam that is
    not a positive int, a bad length penalty, or as greedy."""
    beam = int_arg("beam", beam, 1)
    alpha, kind = _check_penalty(length_penalty, length_penalty_kind)
    src, max_len = _check(model, src, max_len)
    with _eval_mode(model), no_grad():
        found = _beam_batch(model, src, int(beam), max_len, alpha, kind, bos, eos, use_cache,
                            return_scores)
    if return_scores:
        return [[Hypothesis(*h) for h in hyps] for hyps in found]
    return [[(ids, score) for ids, score, _ in hyps] for hyps in found]


def _top_in_order(cand, n):
    """Indices of the n largest entries of each row of `cand` (R, C) and any
    ties with the n-th, in the order a stable argsort of -cand gives them
    (largest first, ties by index): argsort's prefix without sorting all C."""
    C = cand.shape[1]
    n = min(n, C)
    thr = np.partition(cand, C - n, axis=1)[:, C - n]              # n-th largest per row
    out = []
    for row, t in zip(cand, thr):
        idx = np.flatnonzero(row >= t) if np.isfinite(t) else np.arange(len(row))
        out.append(idx[np.argsort(-row[idx], kind="stable")])
    return out


def _beam_batch(model, src, k, max_len, alpha, kind, bos, eos, use_cache, want_lps):
    """Per sentence, the k best (ids, score, token log-probabilities or
    None), best first. `kk` is the rows per sentence in the current batch:
    1 at the first step (every beam would start from the same BOS), then k.
    With the cache the whole loop is one C call when the model allows it
    (nn._fast.beam, the same choices on the same rows); otherwise it steps
    through model.decode_step here."""
    B = len(src)
    memory, src_pad = model.encode(src)
    if use_cache:
        done = _fast.beam(model, memory, src_pad, k, max_len, alpha, kind, bos, eos, want_lps)
        if done is not None:
            return done
    rows = np.arange(B)                                 # row -> sentence
    if use_cache:
        cache = model.init_cache(memory, src_pad, max_len)
    mem, mpad = memory.data, np.asarray(src_pad)
    active = list(range(B))                             # sentences still in the batch
    seqs = np.full((B, 1), bos, dtype=np.int64)
    lps = np.zeros((B, 0))                              # token log-probabilities per row
    scores = np.zeros(B)
    kk = 1
    finished = [[] for _ in range(B)]
    last_penalty = max(_penalty(max_len, False, alpha, kind),
                       _penalty(max_len - 1, True, alpha, kind))
    for t in range(max_len):
        if use_cache:
            logits = model.decode_step(seqs[:, -1], cache)
        else:
            logits = model.decode(seqs, Tensor(mem[rows]), mpad[rows]).data[:, -1]
        # the float32 kernel (SIMD) and float64 sums of its values: exact enough for
        # ranking (scores agree with a float64 log-softmax to ~1e-7 per token)
        logp = ops.log_softmax(_never(logits, model, bos)).astype(np.float64)  # (N, V)
        V = logp.shape[1]
        cand = (scores[:, None] + logp).reshape(len(active), kk * V)  # per sentence
        eos_penalty = _penalty(t, True, alpha, kind)    # t tokens, then EOS
        cut_penalty = _penalty(t + 1, False, alpha, kind)
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
                row += a * kk
                if tok == eos:
                    done.append((seqs[row, 1:].copy(), _normalized(sc, eos_penalty),
                                 np.append(lps[row], logp[row, tok]) if want_lps else None))
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
                    done.append((np.append(seqs[row, 1:], tok), _normalized(sc, cut_penalty),
                                 np.append(lps[row], logp[row, tok]) if want_lps else None))
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
        toks = np.array(toks, dtype=np.int64)
        if use_cache:
            cache.reorder_self(index)
            if kk != k or len(still) < len(active):     # the first step, or sentences left
                cache.reorder_cross(np.repeat(np.array(kept) * kk, k))
        if want_lps:
            lps = np.concatenate([lps[index], logp[index, toks][:, None]], 1)
        rows = rows[index]
        seqs = np.concatenate([seqs[index], toks[:, None]], 1)
        scores = np.array(new_scores)
        active = still
        kk = k
    out = []
    for done in finished:
        done.sort(key=lambda f: -f[1])
        out.append([(ids.astype(np.int64), float(score), lp) for ids, score, lp in done[:k]])
    return out
