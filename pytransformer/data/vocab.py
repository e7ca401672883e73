"""Word-level tokenizer and vocabulary, and padded batches for training.

Special ids are fixed: pad = 0, bos = 1, eos = 2, unk = 3 (tokens "<pad>",
"<bos>", "<eos>", "<unk>"); words get ids 4, 5, ... in order of decreasing
frequency, ties broken alphabetically, so a vocabulary is a function of its
data. A Vocab round-trips through ``to_dict()``/``from_dict()`` (plain JSON
types), which is how it is saved in a checkpoint's metadata.
"""
import re
from collections import Counter

import numpy as np

__all__ = ["Vocab", "tokenize", "batch", "iter_batches", "PAD", "BOS", "EOS", "UNK",
           "SPECIALS"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
_FORMAT = "pytransformer.vocab/1"
_TOKEN_RE = re.compile(r"[¿¡?!.,;:\"()]|[^\s¿¡?!.,;:\"()]+")


def tokenize(text):
    """Split raw text the way the generated corpus is written: lower-case,
    punctuation (¿ ¡ ? ! . , ; : " ( )) as separate tokens, words split on
    whitespace. "Does the cat drink milk?" -> ['does', 'the', 'cat', 'drink',
    'milk', '?']."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize: text must be a str, got {type(text).__name__}")
    return _TOKEN_RE.findall(text.lower())


class Vocab:
    """A word-level vocabulary: the four specials, then `tokens` (ids 4, 5, ...)."""

    def __init__(self, tokens=()):
        tokens = list(tokens)
        index = {s: i for i, s in enumerate(SPECIALS)}
        for t in tokens:
            if not isinstance(t, str) or not t or t != "".join(t.split()):
                raise ValueError(f"Vocab: tokens must be non-empty str without whitespace, "
                                 f"got {t!r}")
            if t in index:
                raise ValueError(f"Vocab: token {t!r} is repeated or a special token")
            index[t] = len(index)
        self._index = index
        self._tokens = list(SPECIALS) + tokens

    @classmethod
    def build(cls, token_lists, min_freq=1, max_size=None):
        """A Vocab of the words in `token_lists` (an iterable of token
        sequences) seen at least `min_freq` times, most frequent first (ties
        alphabetical), at most `max_size` words besides the specials."""
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"Vocab.build: min_freq must be an int >= 1, got {min_freq!r}")
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise ValueError(f"Vocab.build: max_size must be None or an int >= 0, got "
                             f"{max_size!r}")
        counts = Counter()
        for toks in token_lists:
            if isinstance(toks, str):
                raise TypeError("Vocab.build: token_lists must hold token sequences, got a "
                                "str (split it first, e.g. with tokenize)")
            counts.update(toks)
        for s in SPECIALS:
            counts.pop(s, None)
        words = sorted((w for w, c in counts.items() if c >= min_freq),
                       key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[:max_size]
        return cls(words)

    def __len__(self):
        return len(self._tokens)

    def __contains__(self, token):
        return token in self._index

    def __eq__(self, other):
        return isinstance(other, Vocab) and self._tokens == other._tokens

    def __repr__(self):
        return f"Vocab({len(self)} tokens)"

    @property
    def tokens(self):
        """All tokens in id order, specials first (a copy)."""
        return list(self._tokens)

    def token_to_id(self, token):
        """The id of `token`, or UNK (3) when it is not in the vocabulary."""
        return self._index.get(token, UNK)

    def id_to_token(self, i):
        """The token of id `i`; ValueError if out of range."""
        if not 0 <= int(i) < len(self._tokens):
            raise ValueError(f"id_to_token: id {i} out of range [0, {len(self._tokens)})")
        return self._tokens[int(i)]

    def encode(self, tokens, add_bos=False, add_eos=False):
        """Ids of `tokens` (a sequence of str; unknown words -> UNK), with BOS
        prepended and/or EOS appended if asked."""
        if isinstance(tokens, str):
            raise TypeError("encode: tokens must be a sequence of str, got a str (split it "
                            "first, e.g. with tokenize)")
        get = self._index.get
        ids = [get(t, UNK) for t in tokens]
        if add_bos:
            ids.insert(0, BOS)
        if add_eos:
            ids.append(EOS)
        return ids

    def decode(self, ids):
        """Tokens of `ids` (ints or a 1-d integer array): stops at the first
        EOS, skips PAD and BOS, UNK decodes to "<unk>"."""
        if not isinstance(ids, (list, tuple)):
            arr = np.asarray(ids)
            if arr.ndim != 1:
                raise ValueError(f"decode: ids must be 1-d, got shape {arr.shape}")
            ids = arr.tolist()
        out = []
        n = len(self._tokens)
        for i in ids:
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
                raise TypeError(f"decode: ids must be integers, got {i!r}")
            if not 0 <= i < n:
                raise ValueError(f"decode: id {i} out of range [0, {n})")
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self._tokens[i])
        return out

    def unknown(self, tokens):
        """The distinct words of `tokens` not in the vocabulary, in order of
        first appearance (what a translator warns about)."""
        seen, out = set(), []
        for t in tokens:
            if t not in self._index and t not in seen:
                seen.add(t)
                out.append(t)
        return out

    def to_dict(self):
        """A JSON-able dict: {"format": ..., "specials": [...], "tokens": [...]}."""
        return {"format": _FORMAT, "specials": list(SPECIALS), "tokens": self._tokens[4:]}

    @classmethod
    def from_dict(cls, d):
        """The Vocab of a to_dict() result; ValueError naming the part that
        is not one: a key other than format/specials/tokens, a wrong format
        or specials, tokens not a list, a token (by index) that is not a
        non-empty str without whitespace or is repeated or a special."""
        where = "Vocab.from_dict"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a dict, got {type(d).__name__}")
        unknown = [k for k in d if k not in ("format", "specials", "tokens")]
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r:.80}")
        if d.get("format") != _FORMAT:
            raise ValueError(f"{where}: 'format' must be {_FORMAT!r}, got "
                             f"{d.get('format')!r:.80}")
        if d.get("specials") != list(SPECIALS):
            raise ValueError(f"{where}: 'specials' must be {list(SPECIALS)}, got "
                             f"{d.get('specials')!r:.80}")
        tokens = d.get("tokens")
        if not isinstance(tokens, list):
            raise ValueError(f"{where}: 'tokens' must be a list, got {type(tokens).__name__}")
        seen = set(SPECIALS)
        for i, t in enumerate(tokens):
            if not isinstance(t, str) or not t or t != "".join(t.split()):
                raise ValueError(f"{where}: tokens[{i}] must be a non-empty str without "
                                 f"whitespace, got {t!r:.80}")
            if t in seen:
                raise ValueError(f"{where}: tokens[{i}] {t!r:.80} is "
                                 f"{'a special token' if t in SPECIALS else 'repeated'}")
            seen.add(t)
        return cls(tokens)


# ------------------------------------------------------------------ batching

def _sides(p, k):
    src = getattr(p, "src", None)
    if src is None:
        if not isinstance(p, (tuple, list)) or len(p) < 2:
            raise ValueError(f"batch: pairs[{k}] must be a Pair or a (src, tgt) tuple")
        return p[0], p[1]
    return src, p.tgt


def batch(pairs, src_vocab, tgt_vocab, src_eos=True, max_len=None):
    """Padded int64 arrays (src, tgt_in, tgt_out) for a list of pairs.

    src: (B, S) source ids, followed by EOS if `src_eos`; tgt_in: (B, T) BOS +
    target ids; tgt_out: (B, T) target ids + EOS (tgt_in shifted left). Padding
    is PAD = 0 on the right. Pairs are Pair objects or (src tokens, tgt
    tokens). With `max_len`, a sequence longer than it (specials included)
    raises ValueError naming the pair and the limit.
    """
    if len(pairs) == 0:
        raise ValueError("batch: pairs is empty")
    srcs, tgts = [], []
    for k, p in enumerate(pairs):
        s, t = _sides(p, k)
        srcs.append(src_vocab.encode(s, add_eos=src_eos))
        tgts.append(tgt_vocab.encode(t))
    S = max(len(s) for s in srcs)
    T = max(len(t) for t in tgts) + 1
    if max_len is not None:
        for k, (s, t) in enumerate(zip(srcs, tgts)):
            if len(s) > max_len or len(t) + 1 > max_len:
                raise ValueError(f"batch: pairs[{k}] has {len(s)} source / {len(t) + 1} "
                                 f"target positions, more than max_len={max_len}")
    B = len(pairs)
    src = np.zeros((B, S), dtype=np.int64)
    tgt_in = np.zeros((B, T), dtype=np.int64)
    tgt_out = np.zeros((B, T), dtype=np.int64)
    for b, (s, t) in enumerate(zip(srcs, tgts)):
        src[b, :len(s)] = s
        tgt_in[b, 0] = BOS
        tgt_in[b, 1:len(t) + 1] = t
        tgt_out[b, :len(t)] = t
        tgt_out[b, len(t)] = EOS
    return src, tgt_in, tgt_out


def iter_batches(pairs, src_vocab, tgt_vocab, batch_size, seed=0, epoch=0, shuffle=True,
                 drop_last=False, start=0, **batch_kwargs):
    """Yield batch(...) tuples over `pairs` in a deterministic order.

    The order of an epoch is np.random.default_rng([seed, epoch]).permutation
    (or the given order if not `shuffle`), so (seed, epoch) fixes it whatever
    happened before; `start` skips that many batches of the epoch, which is
    how a resumed run continues with the same data order.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"iter_batches: batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"iter_batches: start must be an int >= 0, got {start!r}")
    n = len(pairs)
    order = (np.random.default_rng([seed, epoch]).permutation(n) if shuffle
             else np.arange(n))
    stop = n - n % batch_size if drop_last else n
    for lo in range(start * batch_size, stop, batch_size):
        idx = order[lo:lo + batch_size]
        yield batch([pairs[i] for i in idx], src_vocab, tgt_vocab, **batch_kwargs)
