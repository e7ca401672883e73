"""Word alignments read off cross-attention, scored against gold (measure 4).

    from pytransformer.explain.alignment import alignment_scores, write_pharaoh
    s = alignment_scores(translator, splits.test[:1000])
    s.best            # {'layer': 1, 'head': 'avg', 'offset': 'shift', 'aer': 0.08, ...}
    write_pharaoh("pred.align", s.links)

Pharaoh format: one sentence per line, whitespace-separated "i-j" links
(0-based source index i, target index j); an empty line is a sentence with
no links.

AER (Och & Ney 2003): with predicted links A, sure gold links S and possible
gold links P (S is a subset of P; we use P := P | S),
``AER = 1 - (|A & S| + |A & P|) / (|A| + |S|)``, summed over the corpus
before dividing. Precision = |A & P| / |A|, recall = |A & S| / |S|.

Alignment from attention (Garg et al. 2019): each target word is linked to
the source word that gets the most cross-attention, from one head or from
the heads of a layer averaged. Two rows can be read for target word j:

  * "produce": the decoder position whose *output* is word j (decoder input
    index j, i.e. tgt_out_tokens[j] is word j);
  * "shift" (Chen et al. 2020): the position where word j is the decoder
    *input* (decoder input index j + 1), i.e. while the next word is
    predicted. Traced teacher-forced on the full gold translation, every
    target word has such a row (the decoder input is <bos> + all words);
    only <eos>, which is never linked, would lack one.

<bos>/<eos> are never linked. Columns are restricted to the real source
words: the source <eos> and padding are dropped and each head's row is
renormalised over the real words (before heads are averaged), so the
argmax is always a word. Every target word gets exactly one link (also
words the gold leaves unaligned, such as "¿": they count against
precision, as in Garg et al.).

Diagonal baseline: target word j -> source word floor(j * n_src / n_tgt + 0.5)
(clipped to n_src - 1), which needs no model.
"""
import dataclasses
import os

import numpy as np

from pytransformer._atomic import atomic_write
from pytransformer.data import CorpusError, parse_pharaoh

__all__ = ["OFFSETS", "read_pharaoh", "write_pharaoh", "aer", "precision_recall",
           "cross_attention_argmax", "alignment_from_weights", "diagonal_alignment",
           "trace_pairs", "AlignmentAccumulator", "AlignmentScores", "alignment_scores",
           "CheckpointAER", "aer_over_checkpoints"]

OFFSETS = ("produce", "shift")


# ------------------------------------------------------------------ Pharaoh files

def _parse_links(line):
    links = []
    for item in line.split():
        i, sep, j = item.partition("-")
        if not sep or not i.isdigit() or not j.isdigit():
            raise ValueError(f"alignment {item!r} is not of the form i-j with 0-based integers")
        links.append((int(i), int(j)))
    return sorted(set(links))


def read_pharaoh(source, sizes=None):
    """Read Pharaoh alignments: `source` is a file path (str or PathLike) or
    an iterable of lines (str). Returns one sorted list of (i, j) links per
    line (an empty line is a sentence without links).

    sizes: optional list of (n_src, n_tgt) per line; links out of range then
    raise too (checked by pytransformer.data.parse_pharaoh). A malformed line
    raises CorpusError naming the file (or "<lines>") and the 1-based line
    number."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            lineno = raw[:e.start].count(b"\n") + 1
            raise CorpusError(f"not valid UTF-8 ({e.reason})", name, lineno) from None
        lines = text.splitlines()
    elif isinstance(source, bytes):
        raise TypeError("source: expected a path or an iterable of str lines, got bytes")
    else:
        name = "<lines>"
        try:
            lines = list(source)
        except TypeError:
            raise TypeError(f"source: expected a path or an iterable of str lines, got "
                            f"{type(source).__name__}") from None
    if sizes is not None:
        sizes = list(sizes)
        if len(sizes) != len(lines):
            raise ValueError(f"sizes: {len(sizes)} (n_src, n_tgt) entries for {len(lines)} "
                             f"lines in {name}")
    out = []
    for k, line in enumerate(lines):
        if not isinstance(line, str):
            raise TypeError(f"source: line {k + 1} is {type(line).__name__}, expected str")
        try:
            links = _parse_links(line)
            if sizes is not None:
                n_src, n_tgt = sizes[k]
                parse_pharaoh(line, n_src, n_tgt)                   # range checks
        except ValueError as e:
            raise CorpusError(str(e), name, k + 1) from None
        out.append(links)
    return out


def _check_link(link, where):
    try:
        i, j = link
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected an (i, j) pair, got {link!r}") from None
    for v in (i, j):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{where}: expected non-negative int indices, got {link!r}")
    return int(i), int(j)


def write_pharaoh(path, alignments):
    """Write one line of sorted "i-j" links per sentence to `path` (UTF-8),
    atomically (a previous file is left intact on any error). alignments:
    a list with, per sentence, an iterable of (source i, target j) pairs."""
    lines = []
    for k, links in enumerate(alignments):
        try:
            items = list(links)
        except TypeError:
            raise ValueError(f"alignments[{k}]: expected an iterable of (i, j) links, got "
                             f"{type(links).__name__}") from None
        pairs = sorted({_check_link(l, f"alignments[{k}]") for l in items})
        lines.append(" ".join(f"{i}-{j}" for i, j in pairs) + "\n")
    atomic_write(path, ["".join(lines).encode("utf-8")])


# ------------------------------------------------------------------ scores

def _link_sets(name, value, n=None):
    if isinstance(value, (set, frozenset)) or (value and isinstance(value, (list, tuple))
                                                and len(value) == 2
                                                and all(isinstance(v, (int, np.integer))
                                                        for v in value)):
        raise TypeError(f"{name}: expected a list of link sets (one per sentence), got a "
                        f"single {type(value).__name__}")
    out = []
    for k, links in enumerate(value):
        out.append({_check_link(l, f"{name}[{k}]") for l in links})
    if n is not None and len(out) != n:
        raise ValueError(f"{name}: {len(out)} sentences, expected {n} (as predicted)")
    return out


def _counts(predicted, sure, possible):
    A = _link_sets("predicted", predicted)
    S = _link_sets("sure", sure, len(A))
    P = S if possible is None else _link_sets("possible", possible, len(A))
    a = s = a_s = a_p = 0
    for Ak, Sk, Pk in zip(A, S, P):
        Pk = Pk | Sk
        a += len(Ak)
        s += len(Sk)
        a_s += len(Ak & Sk)
        a_p += len(Ak & Pk)
    return a, s, a_s, a_p


def aer(predicted, sure, possible=None):
    """Corpus-level alignment error rate (Och & Ney):
    1 - (|A&S| + |A&P|) / (|A| + |S|), counts summed over sentences.
    predicted, sure, possible: lists (one entry per sentence) of iterables
    of (i, j) links; possible defaults to sure and is taken as P | S.
    0 is perfect, 1 shares no link. NaN when there are no predicted and no
    sure links at all."""
    a, s, a_s, a_p = _counts(predicted, sure, possible)
    return float("nan") if a + s == 0 else 1.0 - (a_s + a_p) / (a + s)


def precision_recall(predicted, sure, possible=None):
    """(precision |A&P| / |A|, recall |A&S| / |S|), corpus-level, with the
    same arguments as :func:`aer`; NaN where the denominator is 0."""
    a, s, a_s, a_p = _counts(predicted, sure, possible)
    return (a_p / a if a else float("nan"), a_s / s if s else float("nan"))


# ------------------------------------------------------------------ links from weights

def _int_vector(name, v, B):
    v = np.asarray(v)
    if v.shape != (B,) or not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{name}: expected {B} ints (one per sentence), got shape {v.shape} "
                         f"dtype {v.dtype}")
    return v.astype(np.int64)


def cross_attention_argmax(weights, n_src, n_tgt, offset="produce"):
    """For every target word, the source word with the most cross-attention.

    weights: (B, H, T_in, S) cross-attention of one layer (rows: decoder
    inputs <bos> + words; columns: source words, then <eos>, then padding).
    n_src, n_tgt: (B,) numbers of real source / target words. offset:
    "produce" (row j for word j) or "shift" (row j + 1). Returns an int array
    (B, H + 1, max n_tgt): [:, h, j] the source index linked to target word j
    by head h, [:, H, j] by the heads averaged; -1 beyond n_tgt. Each head's
    row is restricted to the first n_src columns and renormalised before
    averaging."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"weights: expected (B, H, T_in, S), got shape {w.shape}")
    if offset not in OFFSETS:
        raise ValueError(f"offset: expected one of {OFFSETS}, got {offset!r}")
    B, H, T_in, S = w.shape
    n_src, n_tgt = _int_vector("n_src", n_src, B), _int_vector("n_tgt", n_tgt, B)
    shift = 1 if offset == "shift" else 0
    if B and (n_src.min() < 1 or n_src.max() > S):
        raise ValueError(f"n_src: expected values in 1..{S} (weights' S), got {n_src.tolist()}")
    if B and (n_tgt.min() < 1 or n_tgt.max() + shift > T_in):
        raise ValueError(f"n_tgt: expected values in 1..{T_in - shift} (weights' T_in "
                         f"{T_in} with offset {offset!r}), got {n_tgt.tolist()}")
    Tmax = int(n_tgt.max()) if B else 0
    rows = w[:, :, shift:shift + Tmax, :]                              # (B, H, Tmax, S)
    real = np.arange(S)[None, :] < n_src[:, None]                       # (B, S)
    rows = np.where(real[:, None, None, :], rows, 0.0)
    z = rows.sum(-1, keepdims=True)
    rows = np.divide(rows, z, out=np.zeros_like(rows), where=z > 0)
    avg = rows.mean(1, keepdims=True)                                   # (B, 1, Tmax, S)
    best = np.concatenate([rows, avg], 1).argmax(-1)                    # (B, H+1, Tmax)
    valid = np.arange(Tmax)[None, :] < n_tgt[:, None]
    return np.where(valid[:, None, :], best, -1)


def alignment_from_weights(weights, n_src, n_tgt, offset="produce"):
    """Links [(i, j), ...] of one sentence from its cross-attention weights
    (T_in, S) of one head or (H, T_in, S) of a layer (heads averaged), as
    :func:`cross_attention_argmax` reads them."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (2, 3):
        raise ValueError(f"weights: expected (T_in, S) or (H, T_in, S), got shape {w.shape}")
    w4 = w[None, None] if w.ndim == 2 else w[None]
    best = cross_attention_argmax(w4, [int(n_src)], [int(n_tgt)], offset)[0, -1]
    return [(int(i), j) for j, i in enumerate(best[:n_tgt])]


def diagonal_alignment(n_src, n_tgt):
    """The diagonal baseline: target word j -> source word
    floor(j * n_src / n_tgt + 0.5), at most n_src - 1. Returns the links."""
    if n_src < 1 or n_tgt < 1:
        raise ValueError(f"n_src, n_tgt: expected positive lengths, got {n_src}, {n_tgt}")
    return [(min(int(np.floor(j * n_src / n_tgt + 0.5)), n_src - 1), j) for j in range(n_tgt)]


# ------------------------------------------------------------------ tracing pairs in batches

def _check_pairs(pairs, need):
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs: expected at least one sentence pair, got none")
    for k, p in enumerate(pairs):
        if not hasattr(p, "src") or not hasattr(p, "tgt"):
            raise TypeError(f"pairs[{k}]: expected a data.Pair, got {type(p).__name__}")
        if need and getattr(p, need, None) is None:
            raise ValueError(f"pairs[{k}]: this pair has no {need} (needed here)")
    return pairs


def trace_pairs(translator, pairs, batch_size=128, encoder_only=False):
    """Trace `pairs` teacher-forced on their gold translations, in batches
    of similar lengths (less padding); yields (indices into pairs, the
    batch's pairs, Trace). encoder_only: run only the encoder (enough for
    encoder attention; about half the time). Several measures can share one
    pass by feeding each batch to their accumulators."""
    from pytransformer.explain.trace import trace, trace_encoder

    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    pairs = _check_pairs(pairs, None)
    order = sorted(range(len(pairs)), key=lambda k: (len(pairs[k].src), len(pairs[k].tgt)))
    net = translator.model
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = [pairs[k] for k in idx]
        if encoder_only:
            src_ids, toks = translator.encode_sources([p.source for p in batch])
            t = trace_encoder(net, src_ids)
            t.src_tokens, t.model = [x + ["<eos>"] for x in toks], translator
        else:
            t = trace(translator, [p.source for p in batch], tgt=[p.target for p in batch])
        for k, p, toks in zip(idx, batch, t.src_tokens):
            if tuple(toks[:-1]) != tuple(p.src):
                raise ValueError(f"pairs[{k}]: the source tokenizes to {toks[:-1]}, not to "
                                 f"the pair's tokens {list(p.src)}")
        yield idx, batch, t


# ------------------------------------------------------------------ corpus scores

_CAPTION = ("Word alignment read off cross-attention: each target word is linked to the "
            "source word it attends to most, per layer and head (and heads averaged per "
            "layer), at the step that produces the word ('produce') or the step where it "
            "is the decoder input ('shift'). AER against the gold alignment: 0 is perfect, "
            "1 shares no link; the diagonal baseline links word j to the proportional "
            "source position. A head far below the diagonal has learned which source word "
            "each target word translates.")


@dataclasses.dataclass
class AlignmentScores:
    """AER of attention-based alignments over a set of pairs.

    aer_head (2, L, H): per offset (OFFSETS order), layer and head;
    aer_avg (2, L): heads averaged per layer; precision / recall (2, L, H+1)
    (last column: averaged heads); diagonal: {'aer', 'precision',
    'recall'}; best: the lowest AER {'layer', 'head' (int or 'avg'),
    'offset', 'aer', 'precision', 'recall'}; links: per pair (input order)
    the best configuration's links, for write_pharaoh; n_pairs,
    n_target_words (= |A|), n_gold_links (= |S|); caption."""
    num_layers: int
    num_heads: int
    aer_head: np.ndarray
    aer_avg: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    diagonal: dict
    best: dict
    links: list
    n_pairs: int
    n_target_words: int
    n_gold_links: int
    caption: str = _CAPTION
    offsets: tuple = OFFSETS
    _argmax: list = dataclasses.field(default=None, repr=False)

    def links_for(self, layer, head, offset):
        """Per pair, the links of one configuration (head an int or 'avg')."""
        o = self.offsets.index(offset)
        c = self.num_heads if head == "avg" else int(head)
        return [[(int(i), j) for j, i in enumerate(a[layer, o, c])] for a in self._argmax]

    def to_dict(self):
        """JSON-able: lists and numbers (NaN stays float('nan'))."""
        return {"num_layers": self.num_layers, "num_heads": self.num_heads,
                "offsets": list(self.offsets), "aer_head": self.aer_head.tolist(),
                "aer_avg": self.aer_avg.tolist(), "precision": self.precision.tolist(),
                "recall": self.recall.tolist(), "diagonal": dict(self.diagonal),
                "best": dict(self.best), "links": [[list(l) for l in s] for s in self.links],
                "n_pairs": self.n_pairs, "n_target_words": self.n_target_words,
                "n_gold_links": self.n_gold_links, "caption": self.caption}


class AlignmentAccumulator:
    """Streams traced batches into alignment counts: add(indices, pairs,
    trace) per batch (as trace_pairs yields them), then result()."""

    def __init__(self):
        self.hits = None            # (L, 2, H+1) |A & S| (= |A & P|: the corpus has sure links)
        self.diag_hits = 0
        self.n_words = 0
        self.n_gold = 0
        self.argmax = {}            # pair index -> (L, 2, H+1, n_tgt)

    def add(self, indices, pairs, trace):
        """Count one traced batch; pairs need .align (gold links)."""
        pairs = _check_pairs(pairs, "align")
        L = trace.num_layers("cross")
        if L == 0:
            raise ValueError("trace: no cross-attention recorded (trace the full model)")
        B = len(pairs)
        n_src = np.array([len(p.src) for p in pairs])
        n_tgt = np.array([len(p.tgt) for p in pairs])
        Tmax, Smax = int(n_tgt.max()), int(n_src.max())
        gold = np.zeros((B, Tmax, Smax), bool)                         # [b, j, i]
        for b, p in enumerate(pairs):
            for i, j in p.links():
                gold[b, j, i] = True
        valid = np.arange(Tmax)[None, :] < n_tgt[:, None]               # (B, Tmax)
        per = []
        for layer in range(L):
            w = trace.attention("cross", layer).weights
            per.append([cross_attention_argmax(w, n_src, n_tgt, o) for o in OFFSETS])
        am = np.array(per)                                              # (L, 2, B, C, Tmax)
        bi = np.arange(B)[:, None]
        ji = np.arange(Tmax)[None, :]
        hit = gold[bi[None, None, :, None], ji[None, None, None], np.maximum(am, 0)]
        hit &= valid[None, None, :, None, :]
        h = hit.sum((2, 4))
        self.hits = h if self.hits is None else self.hits + h
        for b, p in enumerate(pairs):
            diag = diagonal_alignment(len(p.src), len(p.tgt))
            self.diag_hits += sum(gold[b, j, i] for i, j in diag)
            self.argmax[indices[b]] = am[:, :, b, :, :len(p.tgt)].astype(np.int16)
        self.n_words += int(n_tgt.sum())
        self.n_gold += int(gold.sum())

    def result(self):
        """The AlignmentScores of everything added so far."""
        if self.hits is None:
            raise ValueError("AlignmentAccumulator: nothing added")
        a, s, hits = self.n_words, self.n_gold, self.hits.astype(np.float64)
        err = 1.0 - 2.0 * hits / (a + s)                                # (L, 2, C)
        prec, rec = hits / a, hits / s if s else np.full_like(hits, np.nan)
        L, _, C = err.shape
        l, o, c = np.unravel_index(int(np.argmin(err)), err.shape)
        head = "avg" if c == C - 1 else int(c)
        best = {"layer": int(l), "head": head, "offset": OFFSETS[o], "aer": float(err[l, o, c]),
                "precision": float(prec[l, o, c]), "recall": float(rec[l, o, c])}
        dh = float(self.diag_hits)
        keys = sorted(self.argmax)
        argmax = [self.argmax[k] for k in keys]
        out = AlignmentScores(
            num_layers=L, num_heads=C - 1, aer_head=err[:, :, :-1].transpose(1, 0, 2).copy(),
            aer_avg=err[:, :, -1].T.copy(), precision=prec.transpose(1, 0, 2).copy(),
            recall=rec.transpose(1, 0, 2).copy(),
            diagonal={"aer": 1.0 - 2.0 * dh / (a + s), "precision": dh / a,
                      "recall": dh / s if s else float("nan")},
            best=best, links=None, n_pairs=len(keys), n_target_words=a, n_gold_links=s,
            _argmax=argmax)
        out.links = out.links_for(best["layer"], head, best["offset"])
        return out


def alignment_scores(translator, pairs, batch_size=128):
    """Trace `pairs` (data.Pair with gold alignments) teacher-forced on their
    gold translations and score cross-attention alignments of every layer,
    head, heads-averaged layer and offset by AER, with the diagonal baseline.
    Returns AlignmentScores."""
    acc = AlignmentAccumulator()
    for idx, batch, t in trace_pairs(translator, _check_pairs(pairs, "align"), batch_size):
        acc.add(idx, batch, t)
    return acc.result()


# ------------------------------------------------------------------ over training

@dataclasses.dataclass
class CheckpointAER:
    """Alignment quality per checkpoint: paths, steps (None when the file
    has none), best_aer (n,) and best (configuration dicts), aer_avg
    (n, 2, L) heads averaged per layer and offset, aer_at_final_best (n,)
    the AER of the last checkpoint's best configuration in every checkpoint,
    diagonal_aer (the same for all: it needs no model); caption."""
    paths: list
    steps: list
    best_aer: np.ndarray
    best: list
    aer_avg: np.ndarray
    aer_at_final_best: np.ndarray
    diagonal_aer: float
    caption: str = ("How alignment emerges during training: per checkpoint, the best AER "
                    "over layers, heads and offsets, the heads-averaged AER per layer, and "
                    "the AER of the final model's best head at each checkpoint, against the "
                    "diagonal baseline (lower is better).")

    def to_dict(self):
        """JSON-able: lists and numbers."""
        return {"paths": list(self.paths), "steps": list(self.steps),
                "best_aer": self.best_aer.tolist(), "best": [dict(b) for b in self.best],
                "aer_avg": self.aer_avg.tolist(),
                "aer_at_final_best": self.aer_at_final_best.tolist(),
                "diagonal_aer": self.diagonal_aer, "caption": self.caption}


def aer_over_checkpoints(paths, pairs, batch_size=128):
    """alignment_scores for each checkpoint file in `paths` (Translator.load
    each; all must have the same number of layers and heads). Returns
    CheckpointAER."""
    from pytransformer import checkpoint
    from pytransformer.translator import Translator

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("paths: expected at least one checkpoint file, got none")
    pairs = _check_pairs(pairs, "align")
    scores, steps = [], []
    for p in paths:
        scores.append(alignment_scores(Translator.load(p), pairs, batch_size))
        steps.append(checkpoint.load_checkpoint(p).step)
        shape = (scores[0].num_layers, scores[0].num_heads)
        if (scores[-1].num_layers, scores[-1].num_heads) != shape:
            raise ValueError(f"paths: {p} has {scores[-1].num_layers} layers x "
                             f"{scores[-1].num_heads} heads, {paths[0]} has {shape[0]} x "
                             f"{shape[1]}")
    fb = scores[-1].best
    o = OFFSETS.index(fb["offset"])

    def at(s):
        return float(s.aer_avg[o, fb["layer"]] if fb["head"] == "avg"
                     else s.aer_head[o, fb["layer"], fb["head"]])
    return CheckpointAER(paths=paths, steps=steps,
                         best_aer=np.array([s.best["aer"] for s in scores]),
                         best=[s.best for s in scores],
                         aer_avg=np.array([s.aer_avg for s in scores]),
                         aer_at_final_best=np.array([at(s) for s in scores]),
                         diagonal_aer=scores[0].diagonal["aer"])
