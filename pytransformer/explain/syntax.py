"""Syntactic heads: does an encoder head attend to the gold related word? (measure 5)

    from pytransformer.explain.syntax import syntax_scores
    s = syntax_scores(translator, splits.test[:1000])
    for row in s.table: print(row["relation"], row["layer"], row["head"], row["accuracy"])

Following Clark et al. (2019, "What does BERT look at?"): for every encoder
self-attention head and every dependency relation (dependent, head, label)
of the source (data.Pair.deps, source-token indices), the head's prediction
is the word its attention row puts the most weight on. Two directions:

  * "dep->head": the row of the dependent; correct when its argmax is the
    head word (e.g. det: "the" -> "cat");
  * "head->dep": the row of the head word; correct when its argmax is a
    dependent of that head with that label (e.g. "cat" -> "the").

The argmax runs over the real source words only: attention to the source
<eos> (a common "no-op" target, as [SEP] is in BERT) and to padding is left
out (include_eos=True keeps <eos> as a possible, always wrong, answer).
Attending to the word itself is allowed and always wrong.

Positional baselines per relation and direction (need no model): always the
previous word, always the next word, and the best fixed relative offset
(the single offset k, chosen per relation on the data scored, that
maximises accuracy: Clark's baseline). A missing neighbour counts as wrong.
"""
import dataclasses

import numpy as np

from pytransformer.data import LABELS

from .alignment import _check_pairs, trace_pairs

__all__ = ["DIRECTIONS", "encoder_argmax", "positional_baselines", "SyntaxAccumulator",
           "SyntaxScores", "syntax_scores"]

DIRECTIONS = ("dep->head", "head->dep")
_LABELS = tuple(sorted(LABELS))
_LABEL_ID = {l: k for k, l in enumerate(_LABELS)}


def encoder_argmax(weights, n_src, include_eos=False):
    """The most-attended source word per row of encoder self-attention.

    weights: (B, H, S, S) (rows and columns: source words, then <eos>, then
    padding); n_src: (B,) numbers of real words. Returns int (B, H, S): the
    column index of the largest weight among the first n_src columns (n_src
    + 1 with include_eos, the last being <eos>); -1 in rows that are not
    real words."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"weights: expected (B, H, S, S), got shape {w.shape}")
    B, H, S, _ = w.shape
    n_src = np.asarray(n_src)
    if n_src.shape != (B,) or not np.issubdtype(n_src.dtype, np.integer):
        raise ValueError(f"n_src: expected {B} ints, got shape {n_src.shape} dtype {n_src.dtype}")
    limit = n_src + (1 if include_eos else 0)
    if B and (n_src.min() < 1 or limit.max() > S):
        raise ValueError(f"n_src: expected values in 1..{S - int(include_eos)} (weights' S "
                         f"{S}{' with <eos>' if include_eos else ''}), got {n_src.tolist()}")
    cols = np.arange(S)[None, :] < limit[:, None]                      # (B, S)
    best = np.where(cols[:, None, None, :], w, -np.inf).argmax(-1)      # (B, H, S)
    rows = np.arange(S)[None, :] < n_src[:, None]
    return np.where(rows[:, None, :], best, -1)


def _relations(pairs):
    """Flattened relations of a batch: b, dependent, head, label id (N,) each."""
    rel = [(b, d, h, _LABEL_ID[l]) for b, p in enumerate(pairs) for d, h, l in p.deps]
    if not rel:
        return (np.zeros(0, np.int64),) * 4
    return tuple(np.array(c, np.int64) for c in zip(*rel))


def _dependents(pairs, S):
    """M (B, S, S, n_labels) bool: M[b, h, d, l] when d is an l-dependent of h."""
    M = np.zeros((len(pairs), S, S, len(_LABELS)), bool)
    for b, p in enumerate(pairs):
        for d, h, l in p.deps:
            M[b, h, d, _LABEL_ID[l]] = True
    return M


def positional_baselines(pairs):
    """Positional baselines per relation label: {label: {direction: {'prev',
    'next', 'offset', 'offset_accuracy', 'count'}}} (accuracies in [0, 1];
    'offset' the best fixed relative position k: the predicted word is
    i + k for row i)."""
    pairs = _check_pairs(pairs, "deps")
    hits = {}                              # (label, direction) -> {offset k: hits}
    counts = {}
    for p in pairs:
        deps_of = {}
        for d, h, l in p.deps:
            deps_of.setdefault((h, l), set()).add(d)
        for d, h, l in p.deps:
            counts[l] = counts.get(l, 0) + 1
            c = hits.setdefault((l, DIRECTIONS[0]), {})
            c[h - d] = c.get(h - d, 0) + 1
            c = hits.setdefault((l, DIRECTIONS[1]), {})
            for d2 in deps_of[(h, l)]:
                c[d2 - h] = c.get(d2 - h, 0) + 1
    out = {}
    for l, n in counts.items():
        out[l] = {}
        for direction in DIRECTIONS:
            c = hits[(l, direction)]
            k = max(sorted(c), key=lambda o: c[o])          # ties: the most negative offset
            out[l][direction] = {"prev": c.get(-1, 0) / n, "next": c.get(1, 0) / n,
                                 "offset": int(k), "offset_accuracy": c[k] / n, "count": n}
    return out


_CAPTION = ("Syntactic heads: for each dependency relation of the source, the encoder head "
            "whose most-attended word is most often the gold related word, reading the row of "
            "the dependent (dep->head: does 'the' look at its noun?) or of the head word "
            "(head->dep). Accuracy is the fraction of relations it gets right; compare it with "
            "the positional baselines (always the previous word, always the next word, the "
            "best fixed offset): a head well above them tracks syntax, not position. "
            "Attention to <eos> is left out of the argmax.")


@dataclasses.dataclass
class SyntaxScores:
    """Per relation and encoder head, the accuracy of the most-attended word.

    labels: relations present, most frequent first; counts (n,); accuracy
    (n, 2, L, H) per label, direction (DIRECTIONS order), layer, head;
    baselines: {label: {direction: {'prev', 'next', 'offset',
    'offset_accuracy', 'count'}}}; table: one dict per label with the best
    head (layer, head, direction, accuracy) and the baselines in that
    direction (baseline_prev, baseline_next, baseline_offset,
    baseline_offset_accuracy, best_baseline); eos_argmax (L, H): fraction
    of word rows whose argmax including <eos> is <eos>; include_eos;
    n_pairs; caption."""
    labels: list
    counts: np.ndarray
    accuracy: np.ndarray
    baselines: dict
    table: list
    eos_argmax: np.ndarray
    include_eos: bool
    n_pairs: int
    caption: str = _CAPTION
    directions: tuple = DIRECTIONS

    def to_dict(self):
        """JSON-able: lists, dicts and numbers."""
        return {"labels": list(self.labels), "counts": self.counts.tolist(),
                "directions": list(self.directions), "accuracy": self.accuracy.tolist(),
                "baselines": self.baselines, "table": [dict(r) for r in self.table],
                "eos_argmax": self.eos_argmax.tolist(), "include_eos": self.include_eos,
                "n_pairs": self.n_pairs, "caption": self.caption}


class SyntaxAccumulator:
    """Streams batches into per-relation head accuracies: add(indices, pairs,
    trace) per traced batch (trace_pairs), or add_weights(list of per-layer
    encoder weights (B, H, S, S), pairs) directly; then result()."""

    def __init__(self, include_eos=False):
        self.include_eos = bool(include_eos)
        self.hits = None                  # (n_labels, 2, L, H)
        self.eos_hits = None              # (L, H)
        self.n_rows = 0
        self.counts = np.zeros(len(_LABELS), np.int64)
        self.pairs = []

    def add(self, indices, pairs, trace):
        """Count one traced batch (encoder attention of every layer)."""
        L = trace.num_layers("encoder")
        if L == 0:
            raise ValueError("trace: no encoder attention recorded")
        self.add_weights([trace.attention("encoder", l).weights for l in range(L)], pairs)

    def add_weights(self, layers, pairs):
        """Count a batch given its encoder weights: layers is a list (one per
        layer) of (B, H, S, S) arrays for the B pairs (data.Pair with deps)."""
        pairs = _check_pairs(pairs, "deps")
        if not layers:
            raise ValueError("layers: expected at least one layer of weights, got none")
        B = len(pairs)
        n_src = np.array([len(p.src) for p in pairs])
        b, d, h, lab = _relations(pairs)
        hits, eos = [], []
        for k, w in enumerate(layers):
            w = np.asarray(w)
            if w.ndim != 4 or w.shape[0] != B:
                raise ValueError(f"layers[{k}]: expected ({B}, H, S, S), got shape {w.shape}")
            S = w.shape[2]
            if hits and w.shape[1] != hits[0][0].shape[-1]:
                raise ValueError(f"layers[{k}]: {w.shape[1]} heads, layer 0 has "
                                 f"{hits[0][0].shape[-1]}")
            am = encoder_argmax(w, n_src, self.include_eos)             # (B, H, S)
            if k == 0:
                M = _dependents(pairs, S)
            H = w.shape[1]
            lab_hits = np.zeros((len(_LABELS), 2, H), np.int64)
            if len(b):
                to_head = am[b, :, d] == h[:, None]                     # (N, H)
                guess = am[b, :, h]                                     # (N, H)
                to_dep = M[b[:, None], h[:, None], np.maximum(guess, 0), lab[:, None]]
                to_dep &= guess >= 0
                np.add.at(lab_hits[:, 0], lab, to_head.astype(np.int64))
                np.add.at(lab_hits[:, 1], lab, to_dep.astype(np.int64))
            hits.append(lab_hits)
            with_eos = encoder_argmax(w, n_src, include_eos=True)
            is_eos = with_eos == n_src[:, None, None]                   # (B, H, S)
            eos.append(is_eos.sum((0, 2)))
        h_arr = np.stack(hits, 2)                                       # (n_labels, 2, L, H)
        e_arr = np.stack(eos)                                           # (L, H)
        if self.hits is not None and self.hits.shape != h_arr.shape:
            raise ValueError(f"layers: {h_arr.shape[2]} layers x {h_arr.shape[3]} heads, "
                             f"earlier batches had {self.hits.shape[2]} x {self.hits.shape[3]}")
        self.hits = h_arr if self.hits is None else self.hits + h_arr
        self.eos_hits = e_arr if self.eos_hits is None else self.eos_hits + e_arr
        self.n_rows += int(n_src.sum())
        np.add.at(self.counts, lab, 1)
        self.pairs.extend(pairs)

    def result(self):
        """The SyntaxScores of everything added so far."""
        if self.hits is None:
            raise ValueError("SyntaxAccumulator: nothing added")
        present = [k for k in np.argsort(-self.counts, kind="stable") if self.counts[k] > 0]
        labels = [_LABELS[k] for k in present]
        counts = self.counts[present]
        acc = self.hits[present] / counts[:, None, None, None]
        base = positional_baselines(self.pairs)
        table = []
        for r, l in enumerate(labels):
            o, ly, hd = np.unravel_index(int(np.argmax(acc[r])), acc[r].shape)
            bl = base[l][DIRECTIONS[o]]
            table.append({"relation": l, "count": int(counts[r]), "layer": int(ly),
                          "head": int(hd), "direction": DIRECTIONS[o],
                          "accuracy": float(acc[r, o, ly, hd]),
                          "baseline_prev": bl["prev"], "baseline_next": bl["next"],
                          "baseline_offset": bl["offset"],
                          "baseline_offset_accuracy": bl["offset_accuracy"],
                          "best_baseline": max(bl["prev"], bl["next"], bl["offset_accuracy"])})
        return SyntaxScores(labels=labels, counts=counts, accuracy=acc, baselines=base,
                            table=table, eos_argmax=self.eos_hits / max(self.n_rows, 1),
                            include_eos=self.include_eos, n_pairs=len(self.pairs))


def syntax_scores(translator, pairs, batch_size=128, include_eos=False):
    """Trace the encoder over `pairs` (data.Pair with deps) in batches and
    score every encoder head on every relation, both directions, against
    positional baselines. Returns SyntaxScores."""
    acc = SyntaxAccumulator(include_eos)
    pairs = _check_pairs(pairs, "deps")
    for idx, batch, t in trace_pairs(translator, pairs, batch_size, encoder_only=True):
        acc.add(idx, batch, t)
    return acc.result()
