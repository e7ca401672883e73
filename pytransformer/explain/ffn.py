"""Feed-forward layers as key-value memories (Geva et al. 2021), measured
on a translator and a corpus split.

    from pytransformer.explain.ffn import ffn_memories
    m = ffn_memories(translator, splits.test[:1000])
    m.layer("decoder", 2).summary["agreement"]
    m.to_dict()                                   # JSON-able

A feed-forward block computes ``linear2(relu(linear1(x)))``. Geva et al.
read it as a memory: row i of linear1 is a *key*, a pattern in the input;
the hidden unit relu(k_i . x + b_i) (neuron i) says how strongly the key
matches; column i of linear2 (``linear2.weight[:, i]``) is the *value* that
neuron writes back into the residual stream, scaled by its activation.

What is measured, per encoder and decoder layer, over every real token of
the pairs (teacher-forced on the gold translation, padding excluded):

* activation statistics of every neuron (mean, max, firing rate over
  tokens); the top neurons, ranked by mean (default) or max activation;
* for each top neuron its top-k *trigger examples*: the tokens where it
  fired most, with the sentence, position, token, left context and (decoder)
  the next gold target word;
* what the triggers share: for each top neuron, the share of its top-k
  triggers carrying its most common label (word identity, source POS,
  absolute position; decoder: word identity, position and the next target
  word -- the corpus has no target POS), averaged per layer and set against
  the same share for k tokens drawn at random from the split;
* the target words each value promotes: ``generator.weight @ value`` (the
  output embedding, no LayerNorm and no output bias, as Geva et al. do).
  Encoder values never meet the output layer directly (the decoder reads
  them through cross-attention); they are projected the same way anyway, to
  see whether the encoder already writes target-word directions;
* Geva's agreement (decoder): how often the value's top word is the next
  gold target word of the neuron's trigger contexts, against chance 1/|V|
  and against the top word's unigram frequency among next words. For the
  encoder the analogue is the value's top word being a gold translation
  (aligned target word) of the trigger token;
* Geva's ablation: the relative drop (a - a') / a of a trigger's activation
  a when the trigger's last word is removed. Decoder: a' is the activation
  on the prefix without its last word, which the causal decoder computes at
  the previous position of the same teacher-forced run (so no re-run is
  needed; the tests check it against a re-run). Encoder: the word is
  deleted from the source and the encoder re-run; a' is read at the word
  before it (the same reading as the decoder's prefix); a second variant
  replaces the word by <unk> in place and reads its own slot.
"""
import dataclasses
from collections import Counter
from typing import Optional

import numpy as np

from pytransformer.data import BOS, EOS, UNK

from .trace import trace, trace_encoder
from pytransformer.validation import int_arg

__all__ = ["Trigger", "NeuronMemory", "LayerMemories", "FFNMemories", "ffn_memories",
           "teacher_forced_traces", "value_promotions"]

RANK_BY = ("mean", "max")
_EOS_POS = "<eos>"            # the POS label given to the source <eos> position


# ----------------------------------------------------------------------------
# results


@dataclasses.dataclass
class Trigger:
    """One trigger example of a neuron: the token at `position` of sentence
    `sentence` (index into the pairs), its `activation`, the `token` and its
    left `context` (tokens up to and including it; decoder: '<bos>' + the
    target prefix), `pos` (source POS tag, encoder only; '<eos>' for the end
    of sentence), `next_token` (decoder: the gold target word produced at
    this position; encoder: None), `aligned` (encoder: the gold target
    words the token is aligned to; decoder: None), `ablated` (the
    activation once the last word is removed, see the module docstring;
    None when this trigger was not ablated), `ablated_unk` (encoder: the
    activation with the word replaced by <unk> in place) and `text` (the
    whole sentence: the source for the encoder, the target for the
    decoder)."""
    sentence: int
    position: int
    token: str
    context: list
    activation: float
    text: str = ""
    pos: Optional[str] = None
    next_token: Optional[str] = None
    aligned: Optional[list] = None
    ablated: Optional[float] = None
    ablated_unk: Optional[float] = None

    def to_dict(self):
        """A JSON-able dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class NeuronMemory:
    """One top neuron of a layer: its activation `mean`, `max` and
    `fire_rate` over the split's tokens, `triggers` (top-k, highest first),
    `promoted` [(target word, score)] (the words its value vector promotes
    through the output embedding, best first), `shares` {label: (most
    common label among the triggers, share of triggers carrying it)},
    `agreement` (decoder: share of triggers whose next word is the top
    promoted word; encoder: share whose aligned target words contain it) and
    `ablation_drop` (mean relative drop of the ablated triggers'
    activations, NaN when none could be ablated)."""
    neuron: int
    mean: float
    max: float
    fire_rate: float
    triggers: list
    promoted: list
    shares: dict
    agreement: float
    ablation_drop: float
    ablation_drop_unk: Optional[float] = None

    def to_dict(self):
        """A JSON-able dict."""
        return {"neuron": self.neuron, "mean": self.mean, "max": self.max,
                "fire_rate": self.fire_rate, "triggers": [t.to_dict() for t in self.triggers],
                "promoted": [[w, float(s)] for w, s in self.promoted],
                "shares": {k: [v[0], float(v[1])] for k, v in self.shares.items()},
                "agreement": _f(self.agreement), "ablation_drop": _f(self.ablation_drop),
                "ablation_drop_unk": _f(self.ablation_drop_unk)}


@dataclasses.dataclass
class LayerMemories:
    """The FFN of one encoder/decoder layer.

    mean_activation, max_activation, fire_rate: (F,) arrays over the split's
    real tokens (words only when the special slots are excluded). top:
    (n,) the top neurons' indices (ranked by `rank_by`).
    neurons: a NeuronMemory per top neuron. summary: per-layer numbers --
    ``share_<label>`` (mean over top neurons of the share of top-k triggers
    with the most common label) and ``share_<label>_random`` (the same for
    k random tokens of the split), ``agreement`` / ``agreement_top1``
    (trigger-level rate / share of neurons whose top trigger agrees) with
    ``agreement_chance`` (1/|V|) and ``agreement_unigram`` (the top words'
    frequency among next words), ``ablation_drop`` (mean relative drop),
    ``ablation_drop_median``, ``ablation_halved`` (share of ablated
    triggers that lost at least half their activation), ``n_ablated``,
    ``dead`` (neurons that never fire on the split, special slots included),
    ``special_mass`` (share of the layer's total activation on the <eos> /
    <bos> slots) against ``special_tokens`` (their share of the tokens).
    caption: how to read it. activations (N, F) float32 and where (N, 2)
    (sentence, position) of each row: every real token's hidden activations,
    only when asked for (keep_activations=True; never in to_dict)."""
    kind: str
    layer: int
    mean_activation: np.ndarray
    max_activation: np.ndarray
    fire_rate: np.ndarray
    top: np.ndarray
    neurons: list
    summary: dict
    caption: str = ""
    activations: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    where: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)

    def to_dict(self):
        """A JSON-able dict (without the activations)."""
        return {"kind": self.kind, "layer": self.layer,
                "mean_activation": self.mean_activation.tolist(),
                "max_activation": self.max_activation.tolist(),
                "fire_rate": self.fire_rate.tolist(), "top": self.top.tolist(),
                "neurons": [n.to_dict() for n in self.neurons],
                "summary": {k: _f(v) for k, v in self.summary.items()},
                "caption": self.caption}


@dataclasses.dataclass
class FFNMemories:
    """Measure 6 over a split: `layers` (LayerMemories, encoder layers then
    decoder layers), `n_pairs`, `n_tokens` {kind: real tokens seen},
    `rank_by` ('mean' or 'max'), `top_k`, `vocab_size` (|V| of the target),
    `caption`."""
    layers: list
    n_pairs: int
    n_tokens: dict
    rank_by: str
    top_k: int
    vocab_size: int
    caption: str = ""

    def layer(self, kind, layer):
        """The LayerMemories of ('encoder' | 'decoder', layer index)."""
        for lm in self.layers:
            if lm.kind == kind and lm.layer == layer:
                return lm
        have = [(lm.kind, lm.layer) for lm in self.layers]
        raise KeyError(f"layer: no FFN memories for ({kind!r}, {layer}); have {have}")

    def summary_table(self):
        """One row (dict) per layer: kind, layer and its summary numbers."""
        return [dict(kind=lm.kind, layer=lm.layer, **lm.summary) for lm in self.layers]

    def to_dict(self):
        """A JSON-able dict."""
        return {"layers": [lm.to_dict() for lm in self.layers], "n_pairs": self.n_pairs,
                "n_tokens": dict(self.n_tokens), "rank_by": self.rank_by,
                "top_k": self.top_k, "vocab_size": self.vocab_size, "caption": self.caption}


def _f(x):
    """A float for JSON: None for None and NaN."""
    if x is None:
        return None
    x = float(x)
    return None if np.isnan(x) else x


# ----------------------------------------------------------------------------
# input checks and traces


def _check_translator(translator):
    for a in ("model", "src_vocab", "tgt_vocab", "encode_sources"):
        if not hasattr(translator, a):
            raise TypeError(f"translator: expected a Translator (with .model, .src_vocab, "
                            f".tgt_vocab), got {type(translator).__name__}")
    return translator


def _check_pairs(pairs):
    if isinstance(pairs, (str, bytes)):
        raise TypeError("pairs: expected a list of corpus Pairs, got a str")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs: expected at least one corpus Pair, got none")
    for i, p in enumerate(pairs):
        if not (hasattr(p, "src") and hasattr(p, "tgt")) or not p.src or not p.tgt:
            raise TypeError(f"pairs[{i}]: expected a corpus Pair with non-empty src and tgt, "
                            f"got {p!r}")
    return pairs


def _check_int(name, value, low, high=None):
    int_arg(name, value, low, high)
    return int(value)


def teacher_forced_traces(translator, pairs, batch_size=128, traces=None):
    """Yield (offset, Trace) over `pairs` in batches of `batch_size`: each
    Trace is ``explain.trace(translator, sources, gold targets)``, rows
    offset.. of the pairs. With `traces` (a list of such traces made by the
    caller, in order, covering the pairs exactly), those are checked and
    yielded instead, so several measures can share one pass."""
    _check_translator(translator)
    pairs = _check_pairs(pairs)
    batch_size = _check_int("batch_size", batch_size, 1)
    if traces is None:
        for o in range(0, len(pairs), batch_size):
            chunk = pairs[o:o + batch_size]
            yield o, trace(translator, [p.source for p in chunk], [p.target for p in chunk])
        return
    o = 0
    for k, t in enumerate(traces):
        if t.src_tokens is None or t.tgt_out_tokens is None:
            raise ValueError(f"traces[{k}]: not a translator trace (no tokens)")
        for b in range(len(t.src_tokens)):
            if o + b >= len(pairs):
                raise ValueError(f"traces: cover more sentences than the {len(pairs)} pairs")
            p = pairs[o + b]
            if (list(t.src_tokens[b][:-1]) != list(p.src)
                    or list(t.tgt_out_tokens[b][:-1]) != list(p.tgt)):
                raise ValueError(f"traces[{k}] row {b}: does not match pairs[{o + b}] "
                                 f"(expected a teacher-forced trace of the gold translation)")
        yield o, t
        o += len(t.src_tokens)
    if o != len(pairs):
        raise ValueError(f"traces: cover {o} sentences, expected the {len(pairs)} pairs")


# ----------------------------------------------------------------------------
# pure helpers (arrays in, arrays out)


def value_promotions(value_matrix, output_embedding, columns, n=5):
    """Top target ids promoted by value vectors: for each column c of
    `columns`, ``output_embedding @ value_matrix[:, c]`` (V,) sorted
    descending. value_matrix (E, F) = linear2.weight, output_embedding
    (V, E) = generator.weight. Returns (ids (len(columns), n), scores
    (len(columns), n))."""
    W = np.asarray(value_matrix, np.float64)
    G = np.asarray(output_embedding, np.float64)
    if W.ndim != 2 or G.ndim != 2 or G.shape[1] != W.shape[0]:
        raise ValueError(f"value_promotions: expected value_matrix (E, F) and output_embedding "
                         f"(V, E), got {W.shape} and {G.shape}")
    cols = np.asarray(columns, np.int64)
    scores = G @ W[:, cols]                                           # (V, n_cols)
    n = min(int(n), G.shape[0])
    ids = np.argsort(-scores, axis=0, kind="stable")[:n].T            # (n_cols, n)
    return ids, np.take_along_axis(scores.T, ids, axis=1)


def _mode_share(labels):
    """(most common label, its share) of a 1-D label array; ('', nan) if empty."""
    if len(labels) == 0:
        return "", float("nan")
    (lab, c), = Counter(labels.tolist()).most_common(1)
    return lab, c / len(labels)


def _random_mode_share(labels, k, rng, draws=300):
    """Mean share of the most common label among k tokens drawn at random
    (without replacement) from `labels` (ints): what an unselective neuron's
    triggers would give."""
    n = len(labels)
    k = min(k, n)
    if k == 0:
        return float("nan")
    idx = np.argsort(rng.random((draws, n)), axis=1)[:, :k] if n <= 4 * k else \
        np.stack([rng.choice(n, k, replace=False) for _ in range(draws)])
    lab = labels[idx]                                                 # (draws, k)
    lab = np.sort(lab, axis=1)
    best = np.ones(draws, np.int64)
    run = np.ones(draws, np.int64)
    for j in range(1, k):
        run = np.where(lab[:, j] == lab[:, j - 1], run + 1, 1)
        best = np.maximum(best, run)
    return float((best / k).mean())


def _top_triggers(col, k):
    """Indices of the k largest positive entries of col, largest first."""
    k = min(k, len(col))
    idx = np.argpartition(-col, k - 1)[:k]
    idx = idx[np.argsort(-col[idx], kind="stable")]
    return idx[col[idx] > 0]


# ----------------------------------------------------------------------------
# collection


class _Side:
    """Everything gathered for one kind ('encoder' or 'decoder') over the split."""

    def __init__(self, kind, n_layers):
        self.kind = kind
        self.acts = [[] for _ in range(n_layers)]     # per layer: list of (n_b, F) float32
        self.sent, self.posn, self.tok = [], [], []   # per token: sentence, position, token id
        self.extra = []                               # encoder: POS label id; decoder: next id

    def finish(self, special_id):
        self.acts = [np.concatenate(a).astype(np.float32, copy=False) for a in self.acts]
        self.sent, self.posn, self.tok, self.extra = (np.concatenate(x) for x in
                                                      (self.sent, self.posn, self.tok,
                                                       self.extra))
        self.special = self.tok == special_id         # encoder <eos> / decoder <bos> slots


def _collect(translator, pairs, batch_size, traces):
    net = translator.model
    n_enc = len(net.transformer.encoder.layers)
    n_dec = len(net.transformer.decoder.layers)
    enc, dec = _Side("encoder", n_enc), _Side("decoder", n_dec)
    pos_ids = {}
    for o, t in teacher_forced_traces(translator, pairs, batch_size, traces):
        src, tgt = np.asarray(t.src_ids), np.asarray(t.tgt_ids)
        B = src.shape[0]
        m_src = src != net.config.pad_idx                             # (B, S) real tokens
        m_tgt = tgt != net.config.pad_idx                             # (B, T) <bos> + words
        for side, mask, ids, n in ((enc, m_src, src, n_enc), (dec, m_tgt, tgt, n_dec)):
            for layer in range(n):
                side.acts[layer].append(t.ffn(side.kind, layer).hidden[mask].astype(np.float32))
            b, p = np.nonzero(mask)
            side.sent.append(b + o)
            side.posn.append(p)
            side.tok.append(ids[mask])
        tags = []
        for b in range(B):
            for tag in list(pairs[o + b].pos or ()) + [_EOS_POS]:
                tags.append(pos_ids.setdefault(tag, len(pos_ids)))
        if len(tags) != m_src.sum():
            raise ValueError(f"pairs[{o}:{o + B}]: POS tags do not cover the source tokens "
                             f"(Pair.pos is needed, one tag per source word)")
        enc.extra.append(np.asarray(tags, np.int64))
        nxt = np.concatenate([tgt[:, 1:], np.zeros((B, 1), tgt.dtype)], axis=1)
        nxt[np.arange(B), m_tgt.sum(1) - 1] = EOS                     # the last input makes <eos>
        dec.extra.append(nxt[m_tgt])
    enc.finish(EOS)
    dec.finish(BOS)
    return enc, dec, {v: k for k, v in pos_ids.items()}


def _encoder_ablation(translator, pairs, cases):
    """Re-run the encoder on ablated sources. cases: list of (sentence, j).
    Returns {(sentence, j): (delete_hidden, unk_hidden)}, each a list over
    encoder layers of (S', F) arrays: delete = the source with word j
    removed, unk = word j replaced by <unk>."""
    if not cases:
        return {}
    net, sv = translator.model, translator.src_vocab
    rows = []
    for s, j in cases:
        ids = sv.encode(list(pairs[s].src), add_eos=True)
        rows.append(ids[:j] + ids[j + 1:])
        unk = list(ids)
        unk[j] = UNK
        rows.append(unk)
    L = max(len(r) for r in rows)
    src = np.full((len(rows), L), net.config.pad_idx, np.int64)
    for i, r in enumerate(rows):
        src[i, :len(r)] = r
    n_enc = len(net.transformer.encoder.layers)
    t = trace_encoder(net, src)
    hidden = [t.ffn("encoder", layer).hidden for layer in range(n_enc)]
    return {c: ([h[2 * i] for h in hidden], [h[2 * i + 1] for h in hidden])
            for i, c in enumerate(cases)}


# ----------------------------------------------------------------------------
# the measure


def ffn_memories(translator, pairs, top_neurons=16, top_k=10, rank_by="mean", n_promoted=5,
                 n_ablate=5, exclude_special=True, keep_activations=False, batch_size=128,
                 traces=None, seed=0):
    """Measure 6 (Geva et al. 2021, FFN layers as key-value memories) over
    `pairs` (corpus Pairs with POS tags), teacher-forced on their gold
    translations.

    top_neurons: neurons kept per layer (at most all of them), ranked by
    `rank_by`, 'mean' or 'max' activation over the split's tokens; top_k:
    trigger examples per neuron; n_promoted: promoted target words per
    value; n_ablate: the first n_ablate triggers of each top neuron are
    ablated; exclude_special: rank neurons and pick triggers over words
    only, leaving out the source <eos> and the decoder's <bos> slots (many
    neurons fire mostly there; the layer summary's ``special_mass`` says how
    much); keep_activations: also return every token's activations
    (LayerMemories.activations); batch_size: pairs per trace; traces: optional list of
    teacher-forced traces of `pairs` to reuse (see teacher_forced_traces);
    seed: for the random baselines. Returns an FFNMemories."""
    _check_translator(translator)
    pairs = _check_pairs(pairs)
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by: expected one of {RANK_BY}, got {rank_by!r}")
    net = translator.model
    top_neurons = min(_check_int("top_neurons", top_neurons, 1), net.config.dim_feedforward)
    top_k = _check_int("top_k", top_k, 1)
    n_promoted = _check_int("n_promoted", n_promoted, 1)
    n_ablate = _check_int("n_ablate", n_ablate, 0, top_k)

    enc, dec, pos_names = _collect(translator, pairs, batch_size, traces)
    an = _Analysis(translator, pairs, enc, dec, pos_names, exclude_special, top_k, n_ablate,
                   np.random.default_rng(seed))
    # choose every layer's top neurons and triggers first: the encoder ablations are one re-run
    plans = [(side, li, mod) + an.rank(side, li, rank_by, top_neurons)
             for side, layers in ((enc, net.transformer.encoder.layers),
                                  (dec, net.transformer.decoder.layers))
             for li, mod in enumerate(layers)]
    an.rerun_encoder([t for side, *_rest, trig in plans if side is enc for t in trig])
    layers = [an.layer(side, li, mod, stats, top, trig, n_promoted, rank_by)
              for side, li, mod, stats, top, trig in plans]
    if keep_activations:
        for lm, (side, li, *_rest) in zip(layers, plans):
            lm.activations, lm.where = side.acts[li], np.stack([side.sent, side.posn], 1)
    return FFNMemories(layers=layers, n_pairs=len(pairs),
                       n_tokens={"encoder": len(enc.tok), "decoder": len(dec.tok)},
                       rank_by=rank_by, top_k=top_k, vocab_size=an.V,
                       caption=_caption(rank_by, top_k, top_neurons, an.V))


class _Analysis:
    """The per-layer and per-neuron computations of ffn_memories, sharing
    the split's labels, vocabularies and encoder re-runs."""

    def __init__(self, translator, pairs, enc, dec, pos_names, exclude_special, top_k,
                 n_ablate, rng):
        self.tr, self.pairs, self.enc, self.dec = translator, pairs, enc, dec
        self.pos_names, self.top_k, self.n_ablate = pos_names, top_k, n_ablate
        self.sv, self.tv = translator.src_vocab, translator.tgt_vocab
        self.G = np.asarray(translator.model.generator.weight.data, np.float64)  # (V, E)
        self.V = V = self.G.shape[0]
        # how often each target word is the next word (decoder) / in the targets (encoder)
        self.next_freq = np.bincount(dec.extra, minlength=V) / max(len(dec.extra), 1)
        self.tgt_freq = (np.bincount(np.concatenate([self.tv.encode(list(p.tgt)) for p in pairs]),
                                     minlength=V) / sum(len(p.tgt) for p in pairs))
        self.labels = {"encoder": {"token": enc.tok, "pos": enc.extra, "position": enc.posn},
                       "decoder": {"token": dec.tok, "position": dec.posn, "next": dec.extra}}
        self.keep = {side.kind: (~side.special if exclude_special
                                 else np.ones(len(side.tok), bool)) for side in (enc, dec)}
        self.random_share = {kind: {name: _random_mode_share(lab[self.keep[kind]], top_k, rng)
                                    for name, lab in labs.items()}
                             for kind, labs in self.labels.items()}
        self.reruns = {}

    def rank(self, side, li, rank_by, top_neurons):
        """((mean, max, fire rate, special mass), top neurons, their trigger indices)."""
        A, k = side.acts[li], self.keep[side.kind]                   # (N, F), (N,)
        Aw = A[k]
        mean, mx = Aw.mean(0, dtype=np.float64), Aw.max(0).astype(np.float64)
        fire = (Aw > 0).mean(0, dtype=np.float64)
        top = np.argsort(-(mean if rank_by == "mean" else mx), kind="stable")[:top_neurons]
        trig = [_top_triggers(np.where(k, A[:, n], -1.0), self.top_k) for n in top]
        total = A.sum(dtype=np.float64)
        special = float(A[side.special].sum(dtype=np.float64) / total) if total > 0 \
            else float("nan")
        return (mean, mx, fire, special), top, trig

    def rerun_encoder(self, trigger_indices):
        """Re-run the encoder once for every (sentence, word) among the first
        n_ablate triggers of the encoder's top neurons (not the first word,
        which has no word before it, nor <eos>)."""
        e = self.enc
        cases = sorted({(int(e.sent[i]), int(e.posn[i])) for idx in trigger_indices
                        for i in idx[:self.n_ablate] if e.posn[i] >= 1 and e.tok[i] != EOS})
        self.reruns = _encoder_ablation(self.tr, self.pairs, cases)

    def layer(self, side, li, mod, stats, top, trig, n_promoted, rank_by):
        """The LayerMemories of layer li of `side`."""
        kind = side.kind
        mean, mx, fire, special_mass = stats
        W2 = np.asarray(mod.linear2.weight.data, np.float64)          # (E, F): values as columns
        pids, pscores = value_promotions(W2, self.G, top, n_promoted)
        neurons, acc = [], {"drops": [], "drops_unk": [], "agree": [], "agree1": [],
                            "unigram": [], **{f"share_{name}": [] for name in self.labels[kind]}}
        for r, n in enumerate(top):
            nm = self.neuron(side, li, int(n), trig[r], pids[r], pscores[r], stats, acc)
            neurons.append(nm)
        summary = {}
        for name in self.labels[kind]:
            summary[f"share_{name}"] = _nanmean(acc[f"share_{name}"])
            summary[f"share_{name}_random"] = self.random_share[kind][name]
        drops = np.asarray(acc["drops"], np.float64)
        summary.update(
            agreement=_nanmean(acc["agree"]), agreement_top1=_nanmean(acc["agree1"]),
            agreement_chance=1.0 / self.V, agreement_unigram=_nanmean(acc["unigram"]),
            ablation_drop=_nanmean(drops),
            ablation_drop_median=float(np.median(drops)) if drops.size else float("nan"),
            ablation_halved=float(np.mean(drops >= 0.5)) if drops.size else float("nan"),
            n_ablated=int(drops.size), dead=int((side.acts[li].max(0) <= 0).sum()),
            mean_fire_rate=float(fire.mean()), special_mass=special_mass,
            special_tokens=float(side.special.mean()))
        if kind == "encoder":
            summary["ablation_drop_unk"] = _nanmean(acc["drops_unk"])
        return LayerMemories(kind=kind, layer=li, mean_activation=mean, max_activation=mx,
                             fire_rate=fire, top=top, neurons=neurons, summary=summary,
                             caption=_layer_caption(kind, li, summary, rank_by, self.top_k))

    def neuron(self, side, li, n, idx, pids, pscores, stats, acc):
        """The NeuronMemory of neuron n (trigger indices idx); appends its
        shares, agreement and drops to the layer's accumulators `acc`."""
        kind, col = side.kind, side.acts[li][:, n]
        mean, mx, fire, _ = stats
        triggers = [_trigger(kind, int(i), side, col, self.pairs, self.pos_names) for i in idx]
        shares = {}
        for name, lab in self.labels[kind].items():
            v, share = _mode_share(lab[idx])
            shares[name] = (self._label_name(kind, name, v) if len(idx) else "", share)
            acc[f"share_{name}"].append(share)
        w_top = int(pids[0])
        if kind == "decoder":       # the value's top word is the word produced next
            hits = [int(side.extra[i] == w_top) for i in idx]
            acc["unigram"].append(self.next_freq[w_top])
        else:                       # ... is a gold translation of the trigger word
            hits = [int(w_top in self.tv.encode(t.aligned)) for t in triggers]
            acc["unigram"].append(self.tgt_freq[w_top])
        agreement = float(np.mean(hits)) if hits else float("nan")
        acc["agree"].append(agreement)
        acc["agree1"].append(hits[0] if hits else float("nan"))
        drops, drops_unk = [], []
        for t, i in zip(triggers, idx[:self.n_ablate]):
            if kind == "decoder":
                if side.posn[i] < 1:
                    continue                                          # <bos>: no shorter prefix
                t.ablated = float(col[i - 1])                         # same sentence, position - 1
            else:
                if (t.sentence, t.position) not in self.reruns:
                    continue                                          # first word or <eos>
                h_del, h_unk = self.reruns[(t.sentence, t.position)]
                t.ablated = float(h_del[li][t.position - 1, n])
                t.ablated_unk = float(h_unk[li][t.position, n])
                drops_unk.append((t.activation - t.ablated_unk) / t.activation)
            drops.append((t.activation - t.ablated) / t.activation)
        acc["drops"] += drops
        acc["drops_unk"] += drops_unk
        return NeuronMemory(
            neuron=n, mean=float(mean[n]), max=float(mx[n]), fire_rate=float(fire[n]),
            triggers=triggers,
            promoted=[(self.tv.id_to_token(int(w)), float(sc)) for w, sc in zip(pids, pscores)],
            shares=shares, agreement=agreement, ablation_drop=_nanmean(drops),
            ablation_drop_unk=_nanmean(drops_unk) if kind == "encoder" else None)

    def _label_name(self, kind, name, v):
        if name == "position":
            return str(int(v))
        if name == "pos":
            return self.pos_names[int(v)]
        vocab = self.sv if (kind == "encoder" and name == "token") else self.tv
        return vocab.id_to_token(int(v))


def _nanmean(xs):
    xs = np.asarray(xs, np.float64)
    xs = xs[~np.isnan(xs)]
    return float(xs.mean()) if xs.size else float("nan")


def _trigger(kind, i, side, col, pairs, pos_names):
    s, p = int(side.sent[i]), int(side.posn[i])
    pair = pairs[s]
    if kind == "encoder":
        toks = list(pair.src) + ["<eos>"]
        aligned = [pair.tgt[j] for j in (pair.align[p] or ())] \
            if pair.align is not None and p < len(pair.src) else []
        return Trigger(sentence=s, position=p, token=toks[p], context=toks[:p + 1],
                       activation=float(col[i]), text=pair.source,
                       pos=pos_names[int(side.extra[i])], aligned=aligned)
    toks = ["<bos>"] + list(pair.tgt)
    nxt = (list(pair.tgt) + ["<eos>"])[p]
    return Trigger(sentence=s, position=p, token=toks[p], context=toks[:p + 1],
                   activation=float(col[i]), text=pair.target, next_token=nxt)


def _caption(rank_by, top_k, top_neurons, V):
    return (
        "Feed-forward layers as key-value memories (Geva et al. 2021). Each hidden unit "
        "(neuron) of an FFN has a key (its row of linear1) that fires on some inputs and a "
        "value (its column of linear2) that it adds to the residual stream when it fires. "
        f"Per layer, the {top_neurons} neurons with the highest {rank_by} activation over the "
        f"split are shown with their top-{top_k} trigger tokens (where they fired most) and the "
        "target words their value pushes up through the output embedding (value times "
        "generator.weight, no LayerNorm, no bias; encoder values are projected the same way "
        "though the encoder never reaches the output layer directly). 'share' numbers say how "
        "many of a neuron's triggers have the same word / part of speech / position / next "
        "word; compare them with the 'random' share that k random tokens would give: far "
        "above random means the neuron detects that property. 'agreement' is how often the "
        "value's top word is the word the decoder produces next at the trigger (encoder: a "
        f"gold translation of the trigger word), against chance 1/|V| = {1 / V:.4f}. "
        "'ablation drop' is how much a trigger's activation falls, relative, when its last "
        "word is removed (decoder: read on the shorter prefix; encoder: the word deleted from "
        "the source, read at the word before it): near 1 means the neuron goes silent without "
        "that word, near 0 that the rest of the context is enough to fire it.")


def _layer_caption(kind, layer, s, rank_by, top_k):
    if kind == "encoder":
        what = (f"token {s['share_token']:.2f} (random {s['share_token_random']:.2f}), "
                f"POS {s['share_pos']:.2f} (random {s['share_pos_random']:.2f}), "
                f"position {s['share_position']:.2f} (random "
                f"{s['share_position_random']:.2f})")
        agree = (f"value's top word is a gold translation of the trigger word in "
                 f"{s['agreement']:.0%} of triggers")
    else:
        what = (f"token {s['share_token']:.2f} (random {s['share_token_random']:.2f}), "
                f"position {s['share_position']:.2f} (random "
                f"{s['share_position_random']:.2f}), next word {s['share_next']:.2f} "
                f"(random {s['share_next_random']:.2f}); no target POS in the corpus")
        agree = (f"value's top word is the next target word in {s['agreement']:.0%} of "
                 f"triggers (chance {s['agreement_chance']:.4f})")
    return (f"{kind} layer {layer}: the top neurons' top-{top_k} triggers share {what}; "
            f"{agree}; removing the trigger's last word drops its activation by "
            f"{s['ablation_drop']:.0%} on average. {s['dead']} neurons never fire; "
            f"{s['special_mass']:.0%} of all activation sits on the "
            f"{'<eos>' if kind == 'encoder' else '<bos>'} slot, which is "
            f"{s['special_tokens']:.0%} of the tokens.")
