"""Feed-forward layers as key-value memories (Geva et al. 2021), measured
on a translator and a corpus split.

    from pytransformer.explain.ffn import ffn_memories
    m = ffn_memories(translator, splits.test[:1000])
    m.layer("decoder", 2).summary["agreement"]
    m.to_dict()                                   # JSON-able

    c = corpus_ffn(translator)                    # every neuron over 600 test pairs, cached
    n = int(c.top["encoder"][0][0])               # layer 0's most active neuron
    c.describe("encoder", 0, n).text              # e.g. 'determiners at the start of the sentence'
    sentence_ffn(translator, trace(translator, s), s, c)   # per layer: neurons, ablation

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

What a neuron fires on is also said in words (NeuronDescription): the
conjunction of lexicon and context features (token_features) that most of
its top activations carry and few other words do, with the share it covers.
corpus_ffn gathers every neuron's top activations over a corpus sample with
the linear CKA between the layers' FFN outputs and the overlap of their
trigger sets (is each layer a different function?); sentence_ffn and
ffn_section put them on the sentence page with each FFN zeroed in turn
(ablation.ablate_ffn); ffn_answer is analyze's answer for the encoder.
"""
import dataclasses
import functools
from collections import Counter
from typing import Optional

import numpy as np

from pytransformer.data import BOS, EOS, UNK

from .trace import trace, trace_encoder
from pytransformer.validation import int_arg

__all__ = ["Trigger", "NeuronMemory", "LayerMemories", "FFNMemories", "ffn_memories",
           "teacher_forced_traces", "value_promotions",
           # what a neuron fires on, in words; the sentence page's section
           "FEATURE_KINDS", "FeatureTable", "NeuronDescription", "CorpusFFN", "SentenceNeuron",
           "LayerEffect", "word_classes", "token_features", "choose_features",
           "describe_features", "describe_neuron", "default_corpus", "cache_dir", "corpus_ffn",
           "sentence_ffn", "neuron_sentence", "ablation_sentence", "layer_pairs", "similarity_sentence",
           "ffn_section", "ffn_answer"]

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
    promoted word; encoder: share whose aligned target words contain it),
    `ablation_drop` (mean relative drop of the ablated triggers'
    activations, NaN when none could be ablated) and `description` (what it
    fires on in words, a NeuronDescription over its top describe_k
    activations)."""
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
    description: Optional["NeuronDescription"] = None

    def to_dict(self):
        """A JSON-able dict."""
        return {"neuron": self.neuron,
                "description": self.description.to_dict() if self.description else None,
                "mean": self.mean, "max": self.max,
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
    `caption`, and `corpus` (the CorpusFFN of the split: every neuron's top
    activations, the CKA of the layers' FFN outputs, the trigger-set
    overlaps; see ffn_answer)."""
    layers: list
    n_pairs: int
    n_tokens: dict
    rank_by: str
    top_k: int
    vocab_size: int
    caption: str = ""
    corpus: Optional["CorpusFFN"] = dataclasses.field(default=None, repr=False)

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
        c = self.corpus
        sim = None if c is None else {
            kind: {"cka": c.cka[kind].tolist(), "overlap": c.overlap[kind].tolist(),
                   "overlap_chance": c.overlap_chance[kind].tolist(),
                   "profile": c.profile[kind]} for kind in c.cka}
        return {"layers": [lm.to_dict() for lm in self.layers], "n_pairs": self.n_pairs,
                "n_tokens": dict(self.n_tokens), "rank_by": self.rank_by,
                "top_k": self.top_k, "vocab_size": self.vocab_size, "caption": self.caption,
                "similarity": sim}


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
            # words outside the vocabulary are labelled '<unk:word>' in a trace
            if ([_unmark(w) for w in t.src_tokens[b][:-1]] != list(p.src)
                    or [_unmark(w) for w in t.tgt_out_tokens[b][:-1]] != list(p.tgt)):
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
        self.outs = [[] for _ in range(n_layers)]     # per layer: (n_b, E) FFN outputs, if kept
        self.sent, self.posn, self.tok = [], [], []   # per token: sentence, position, token id
        self.extra = []                               # encoder: POS label id; decoder: next id

    def finish(self, special_id):
        self.acts = [np.concatenate(a).astype(np.float32, copy=False) for a in self.acts]
        self.outs = [np.concatenate(a).astype(np.float32, copy=False) if a else None
                     for a in self.outs]
        self.sent, self.posn, self.tok, self.extra = (np.concatenate(x) for x in
                                                      (self.sent, self.posn, self.tok,
                                                       self.extra))
        self.special = self.tok == special_id         # encoder <eos> / decoder <bos> slots


def _collect(translator, pairs, batch_size, traces, outputs=False):
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
                rec = t.ffn(side.kind, layer)
                side.acts[layer].append(rec.hidden[mask].astype(np.float32))
                if outputs:
                    side.outs[layer].append(rec.output[mask].astype(np.float32))
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
                 traces=None, seed=0, describe_k=20):
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
    seed: for the random baselines; describe_k: top activations per neuron
    behind its description in words (NeuronMemory.description) and the
    layer comparison (FFNMemories.corpus). Returns an FFNMemories."""
    _check_translator(translator)
    pairs = _check_pairs(pairs)
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by: expected one of {RANK_BY}, got {rank_by!r}")
    net = translator.model
    top_neurons = min(_check_int("top_neurons", top_neurons, 1), net.config.dim_feedforward)
    top_k = _check_int("top_k", top_k, 1)
    n_promoted = _check_int("n_promoted", n_promoted, 1)
    n_ablate = _check_int("n_ablate", n_ablate, 0, top_k)
    describe_k = _check_int("describe_k", describe_k, 1)

    enc, dec, pos_names = _collect(translator, pairs, batch_size, traces, outputs=True)
    tables, contexts, tag_of = _sample_tables(pairs)
    corpus = _corpus_from_arrays(_arrays_from_sides((enc, dec), tables, describe_k), pairs,
                                 tables, contexts, tag_of, describe_k, top_neurons)
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
    for lm in layers:
        for nm in lm.neurons:
            nm.description = corpus.describe(lm.kind, lm.layer, nm.neuron)
    if keep_activations:
        for lm, (side, li, *_rest) in zip(layers, plans):
            lm.activations, lm.where = side.acts[li], np.stack([side.sent, side.posn], 1)
    return FFNMemories(layers=layers, n_pairs=len(pairs),
                       n_tokens={"encoder": len(enc.tok), "decoder": len(dec.tok)},
                       rank_by=rank_by, top_k=top_k, vocab_size=an.V,
                       caption=_caption(rank_by, top_k, top_neurons, an.V), corpus=corpus)


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


# ----------------------------------------------------------------------------
# what a neuron fires on, in words
#
# Every token of a corpus sample gets a set of binary features: the word, its
# word class from the lexicon (part of speech, number, gender, noun class,
# tense), its neighbours and its place in the sentence (decoder: the word read
# and the word written next). A neuron's description is the conjunction of at
# most three features, carried by at least half of the neuron's top
# activations where possible, that maximises c * log(c / b) (the best pair
# found exhaustively, a third feature added greedily), c the share
# of the neuron's top-k activations carrying all of them (its coverage), b the
# share of all words carrying them: frequent among the triggers, rare
# elsewhere. The coverage is printed beside the words, so every description
# is checked by a number.

_POS_PLURAL = {"NOUN": "nouns", "VERB": "verbs", "ADJ": "adjectives", "DET": "determiners",
               "NUM": "number words", "PRON": "pronouns", "AUX": "auxiliaries",
               "ADP": "prepositions", "PART": "negations", "PUNCT": "punctuation marks"}
_POS_SINGULAR = {"NOUN": "noun", "VERB": "verb", "ADJ": "adjective", "DET": "determiner",
                 "NUM": "number word", "PRON": "pronoun", "AUX": "auxiliary",
                 "ADP": "preposition", "PART": "negation", "PUNCT": "punctuation mark"}
_NUMBER = {"sg": "singular", "pl": "plural"}
_GENDER = {"m": "masculine", "f": "feminine"}
# which aspect of a token a feature is about (for the per-layer profile)
FEATURE_KINDS = ("word", "word class", "context", "next word")
_KIND_OF = {"word": "word", "pos": "word class", "number": "word class", "gender": "word class",
            "class": "word class", "tense": "word class", "wword": "next word",
            "wpos": "next word", "wnumber": "next word", "wgender": "next word"}


@functools.lru_cache(maxsize=1)
def word_classes():
    """({English word: info}, {Spanish word: info}) from the lexicon, info
    a dict with 'pos' and, where the lexicon knows them, 'number' ('sg' |
    'pl'), 'gender' ('m' | 'f'; for an English noun the gender of its
    Spanish translation), 'class' (noun class) and 'tense' ('present' |
    'past')."""
    from pytransformer.data import lexicon as lx
    en, es = {}, {}

    def put(d, word, **info):
        if word and word not in d:
            d[word] = {k: v for k, v in info.items() if v is not None}

    def forms(d, words, pos, genders, numbers, **extra):
        # one form may stand for several genders / numbers: keep only what is certain
        seen = {}
        for w, g, n in zip(words, genders, numbers):
            if w is not None:
                seen.setdefault(w, set()).add((g, n))
        for w, gn in seen.items():
            gs, ns = {g for g, _ in gn}, {n for _, n in gn}
            put(d, w, pos=pos, gender=gs.pop() if len(gs) == 1 else None,
                number=ns.pop() if len(ns) == 1 else None, **extra)

    for n in lx.NOUNS:
        put(en, n.en, pos="NOUN", number="sg", gender=n.gender, **{"class": n.cls})
        put(en, n.en_pl, pos="NOUN", number="pl", gender=n.gender, **{"class": n.cls})
        put(es, n.es, pos="NOUN", number="sg", gender=n.gender, **{"class": n.cls})
        put(es, n.es_pl, pos="NOUN", number="pl", gender=n.gender, **{"class": n.cls})
    gn = (("m", "sg"), ("f", "sg"), ("m", "pl"), ("f", "pl"))
    for d in lx.DETERMINERS:
        put(en, d.en, pos=d.pos)
        forms(es, d.es, d.pos, *zip(*gn))
    for a in lx.ADJECTIVES:
        put(en, a.en, pos="ADJ")
        forms(es, a.forms, "ADJ", *zip(*gn))
    persons = ("sg", "sg", "sg", "pl", "pl", "pl")
    for v in lx.VERBS:
        put(en, v.en, pos="VERB", tense="present")
        put(en, v.en_3sg, pos="VERB", tense="present", number="sg")
        put(en, v.en_past, pos="VERB", tense="past")
        put(es, v.es, pos="VERB")
        for tense, fs in (("present", v.present), ("past", v.preterite)):
            for w, n in zip(fs, persons):
                put(es, w, pos="VERB", tense=tense, number=n)
    for tense, fs in zip(("present", "past"), lx.SER):
        for w, n in zip(fs, persons):
            put(es, w, pos="AUX", tense=tense, number=n)
    for tense, fs in zip(("present", "past"), lx.ESTAR):
        for w, n in zip(fs, persons):
            put(es, w, pos="AUX", tense=tense, number=n)
    for p in lx.PRONOUNS:
        for w in p.en:
            put(en, w, pos="PRON")
        put(es, p.es, pos="PRON", number=persons[p.person], gender=p.gender)
    for p in lx.PREPOSITIONS:
        put(en, p.en, pos="ADP")
        for w in p.es:
            put(es, w, pos="ADP")
    for w, tag in (("not", "PART"), ("do", "AUX"), ("does", "AUX"), ("did", "AUX"),
                   ("am", "AUX"), ("is", "AUX"), ("are", "AUX"), ("was", "AUX"),
                   ("were", "AUX"), ("that", "PRON"), ("?", "PUNCT"), (".", "PUNCT")):
        put(en, w, pos=tag)
    for w, tag in (("no", "PART"), ("que", "PRON"), ("¿", "PUNCT"), ("?", "PUNCT"),
                   (".", "PUNCT")):
        put(es, w, pos=tag)
    return en, es


def _word_feats(prefix, word, info):
    out = [f"{prefix}word={word}"]
    out += [f"{prefix}{k}={v}" for k, v in info.items()]
    return out


def token_features(kind, words, tags=None, out_words=None):
    """The feature names of every position of one sentence, as a list of
    lists. kind 'encoder': `words` are the source tokens with '<eos>' last
    and `tags` their POS tags (None: looked up in the lexicon); 'decoder':
    `words` are the decoder inputs ('<bos>' + the translation) and
    `out_words` what each position writes (the translation + '<eos>'). The
    special slots get only 'word=<eos>' / 'word=<bos>'."""
    en, es = word_classes()
    lex = en if kind == "encoder" else es
    q = "?" in words
    neg = ("not" if kind == "encoder" else "no") in words
    info = []
    for i, w in enumerate(words):
        d = dict(lex.get(w, {}))
        if tags is not None and i < len(tags) and tags[i] is not None:
            d["pos"] = tags[i]
        info.append(d)
    feats = []
    if kind == "encoder":
        last = len(words) - 2                        # the last word before <eos>
        for i, w in enumerate(words):
            if w == "<eos>":
                feats.append(["word=<eos>"])
                continue
            f = _word_feats("", w, info[i])
            if i == 0:
                f.append("first")
            else:
                f += [f"prev={words[i - 1]}"] + ([f"prevpos={info[i - 1]['pos']}"]
                                                 if "pos" in info[i - 1] else [])
            if i == last:
                f.append("last")
            elif i + 1 < len(words):
                f += [f"next={words[i + 1]}"] + ([f"nextpos={info[i + 1]['pos']}"]
                                                 if "pos" in info[i + 1] else [])
            f += (["question"] if q else []) + (["negated"] if neg else [])
            feats.append(f)
        return feats
    if out_words is None or len(out_words) != len(words):
        raise ValueError("out_words: expected one written word per decoder input")
    for i, (w, nxt) in enumerate(zip(words, out_words)):
        if i == 0:
            feats.append(["word=<bos>"])
            continue
        f = _word_feats("", w, info[i])
        if nxt == "<eos>":
            f.append("wword=<eos>")
        else:
            f += _word_feats("w", nxt, lex.get(nxt, {}))
        if i == 1:
            f.append("first")
        else:
            f += [f"prev={words[i - 1]}"] + ([f"prevpos={info[i - 1]['pos']}"]
                                             if "pos" in info[i - 1] else [])
        f += (["question"] if q else []) + (["negated"] if neg else [])
        feats.append(f)
    return feats


class FeatureTable:
    """Binary features of every token of a corpus sample: `names` (list),
    `matrix` (N, len(names)) bool, `keep` (N,) bool (the words: special slots
    excluded) and `index` {name: column}."""

    def __init__(self, rows):
        self.index = {}
        for r in rows:
            for f in r:
                self.index.setdefault(f, len(self.index))
        self.names = list(self.index)
        self.matrix = np.zeros((len(rows), len(self.names)), bool)
        for i, r in enumerate(rows):
            self.matrix[i, [self.index[f] for f in r]] = True
        self.keep = ~(self.column("word=<eos>") | self.column("word=<bos>"))

    def column(self, name):
        """(N,) bool: which tokens carry feature `name` (all False if none does)."""
        j = self.index.get(name)
        return self.matrix[:, j] if j is not None else np.zeros(len(self.matrix), bool)

    def has(self, names):
        """(N,) bool: which tokens carry every feature of `names`."""
        m = np.ones(len(self.matrix), bool)
        for n in names:
            m &= self.column(n)
        return m


@dataclasses.dataclass
class NeuronDescription:
    """What a neuron fires on across the corpus: `text` (words, e.g.
    "plural nouns after 'the'"), `features` (their names), `covered` of its
    top `k` activations carry all of them (`coverage` = covered / k), `base`
    (the share of all words that do), `kinds` (which aspects the features
    are about, FEATURE_KINDS) and `examples` (the top triggers' words in
    context)."""
    kind: str
    layer: int
    neuron: int
    text: str
    features: list
    covered: int
    k: int
    coverage: float
    base: float
    kinds: list
    examples: list

    def to_dict(self):
        """A JSON-able dict."""
        return dataclasses.asdict(self)


def _kl_score(c, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c > 0, c * np.log(np.maximum(c, 1e-12) / np.maximum(b, 1e-12)), -np.inf)


def choose_features(table, triggers, max_features=3, min_share=0.5, fallback_share=0.25):
    """The features describing the tokens `triggers` (indices into the
    table), scored by c * log(c / b) (c: share of the triggers carrying all
    of them, b: the same share over all words): frequent among the
    triggers, rare elsewhere. Only conjunctions that at least `min_share`
    of the triggers carry are considered (so a description never rests on a
    few triggers): the best single feature or pair of features is found
    exhaustively, then further features are added greedily while the score
    rises, up to max_features. When no feature reaches min_share, the same
    search runs with `fallback_share`. Returns (names, covered, base); no
    names when no feature reaches either."""
    if fallback_share is not None and fallback_share < min_share:
        names, covered, base = choose_features(table, triggers, max_features, min_share, None)
        if names:
            return names, covered, base
        min_share = fallback_share
    X, keep = table.matrix, table.keep
    T = np.asarray(triggers, np.int64)
    k = len(T)
    if k == 0:
        return [], 0, 1.0
    n_keep = max(int(keep.sum()), 1)
    rows = np.flatnonzero(keep)
    c_all = X[T].sum(0)
    cand = np.flatnonzero(c_all >= max(1, min_share * k))
    chosen, score = [], 0.0
    if len(cand):
        Ct = X[np.ix_(T, cand)].astype(np.float32)
        Cb = X[np.ix_(rows, cand)].astype(np.float32)
        pc = (Ct.T @ Ct) / k                          # (m, m): pairs; the diagonal: singles
        pb = (Cb.T @ Cb) / n_keep
        sc = np.where(pc >= min_share, _kl_score(pc, pb), -np.inf)
        a, b = np.unravel_index(int(np.argmax(sc)), sc.shape)
        one = int(np.argmax(np.diag(sc)))
        if sc[one, one] >= sc[a, b] - 1e-9:       # a pair must say more than one feature
            a = b = one
        if sc[a, b] > 0:
            chosen = [table.names[int(cand[a])]] + ([table.names[int(cand[b])]] if a != b
                                                    else [])
            score = float(sc[a, b])
    in_t = table.has(chosen)[T]
    rows = rows[table.has(chosen)[rows]]
    while chosen and len(chosen) < max_features:
        c_more = X[T[in_t]].sum(0)
        more = np.flatnonzero(c_more)
        more = more[~np.isin(more, [table.index[f] for f in chosen])]
        if not len(more):
            break
        c = c_more[more] / k
        sc = np.where(c >= min_share, _kl_score(c, X[np.ix_(rows, more)].sum(0) / n_keep),
                      -np.inf)
        j = int(np.argmax(sc))
        if not sc[j] > score + 1e-9:
            break
        col = int(more[j])
        chosen.append(table.names[col])
        score = float(sc[j])
        in_t &= X[T, col]
        rows = rows[X[rows, col]]
    covered = int(table.has(chosen)[T].sum()) if chosen else k
    base = float((table.has(chosen) & keep).sum() / n_keep)
    return chosen, covered, base


def _one(word_info, pos_names, default="word"):
    """A phrase for a word's features: modifiers then the part-of-speech
    name from `pos_names` ('plural feminine noun', 'singular nouns')."""
    mods = [_NUMBER[word_info["number"]]] if "number" in word_info else []
    mods += [_GENDER[word_info["gender"]]] if "gender" in word_info else []
    mods += [word_info["class"]] if "class" in word_info else []
    mods += ["past-tense"] if word_info.get("tense") == "past" else []
    noun = pos_names.get(word_info.get("pos"), word_info.get("pos", "").lower() or default)
    if "class" in word_info and "pos" not in word_info:
        noun = pos_names["NOUN"]
    return " ".join(mods + [noun])


def _article(phrase):
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def describe_features(kind, names):
    """Words for a conjunction of feature names (see token_features):
    encoder "plural nouns after 'the'" (read after "fires on"), decoder
    "reading 'la', about to write a feminine noun" (after "fires when")."""
    parts = dict(n.split("=", 1) if "=" in n else (n, True) for n in names)
    read = {k: v for k, v in parts.items() if k in ("word", "pos", "number", "gender", "class",
                                                     "tense")}
    write = {k[1:]: v for k, v in parts.items() if k in ("wword", "wpos", "wnumber", "wgender",
                                                          "wclass", "wtense")}
    ctx = []
    if "prev" in parts:
        ctx.append(f"after '{parts['prev']}'")
    if "prevpos" in parts:
        ctx.append("after " + _article(_POS_SINGULAR.get(parts["prevpos"],
                                                          parts["prevpos"].lower())))
    if "next" in parts:
        ctx.append(f"before '{parts['next']}'")
    if "nextpos" in parts:
        ctx.append("before " + _article(_POS_SINGULAR.get(parts["nextpos"],
                                                           parts["nextpos"].lower())))
    if "first" in parts:
        ctx.append("at the start of the sentence" if kind == "encoder"
                   else "at the first word")
    if "last" in parts:
        ctx.append("at the end of the sentence")
    if "question" in parts:
        ctx.append("in questions")
    if "negated" in parts:
        ctx.append("in negated sentences")
    if kind == "encoder":
        if "word" in read:
            head = f"'{read['word']}'"
        elif read:
            head = _one(read, _POS_PLURAL, "words")
            if "gender" in read and read.get("pos", "NOUN") == "NOUN":
                head = head.replace(_GENDER[read["gender"]] + " ", "") + \
                    f" ({_GENDER[read['gender']]} in Spanish)"
        else:
            head = "words"
        return " ".join([head] + ctx) if names else "no common feature"
    out = []
    if "word" in read:
        out.append(f"reading '{read['word']}'")
    elif read:
        out.append("reading " + _article(_one(read, _POS_SINGULAR)))
    if "word" in write:
        out.append("about to end the sentence" if write["word"] == "<eos>"
                   else f"about to write '{write['word']}'")
    elif write:
        out.append("about to write " + _article(_one(write, _POS_SINGULAR)))
    out += ctx
    return ", ".join(out) if out else "no common feature"


def describe_neuron(table, kind, layer, neuron, triggers, example_words=None, max_features=3):
    """The NeuronDescription of a neuron from its top trigger indices
    `triggers` into the FeatureTable (`example_words`: optional list, per
    token, of a short context string, for the first three triggers)."""
    names, covered, base = choose_features(table, triggers, max_features)
    k = len(triggers)
    return NeuronDescription(
        kind=kind, layer=layer, neuron=int(neuron), text=describe_features(kind, names),
        features=names, covered=covered, k=k, coverage=covered / k if k else float("nan"),
        base=base, kinds=sorted({_KIND_OF.get(n.split("=", 1)[0], "context") for n in names},
                                key=FEATURE_KINDS.index),
        examples=[example_words[i] for i in triggers[:3]] if example_words else [])


# ----------------------------------------------------------------------------
# corpus statistics for the sentence page (computed once per model, cached)


@dataclasses.dataclass
class CorpusFFN:
    """Every FFN neuron of a translator over a corpus sample, enough to say
    in words what any neuron fires on and how the layers differ.

    pairs: the sample; top_k: triggers kept per neuron; tables {kind:
    FeatureTable}; contexts {kind: per token, a short left context};
    tags {English word: its most common POS tag in the sample}; and per kind
    ('encoder', 'decoder'), one entry per layer: triggers (F, top_k) int
    (token indices, highest activation first, -1 where fewer fire), values
    (F, top_k) their activations, mean (F,) mean activation over words, top
    (n_top,) the neurons of highest mean; cka (L, L) linear CKA between the
    layers' FFN outputs over the sample's words; overlap (L, L) Jaccard
    overlap of the layers' trigger sets (the union of the top_k triggers of
    their top neurons) and overlap_chance (L, L) what sets of those sizes
    drawn at random would give; profile: per layer {FEATURE_KINDS name:
    how many top neurons' descriptions use it}; cached: whether the numbers
    came from the cache; seconds: the time to compute or load them."""
    pairs: list
    top_k: int
    tables: dict
    contexts: dict
    tags: dict
    triggers: dict
    values: dict
    mean: dict
    top: dict
    cka: dict
    overlap: dict
    overlap_chance: dict
    profile: dict = dataclasses.field(default_factory=dict)
    cached: bool = False
    seconds: float = 0.0
    _described: dict = dataclasses.field(default_factory=dict, repr=False)

    def num_layers(self, kind):
        """How many layers of `kind` ('encoder' | 'decoder')."""
        return len(self.triggers[kind])

    def neuron_triggers(self, kind, layer, neuron):
        """(token indices, activations) of the neuron's top activations over
        the sample's words, highest first."""
        idx = self.triggers[kind][layer][neuron]
        ok = idx >= 0
        return idx[ok], self.values[kind][layer][neuron][ok]

    def describe(self, kind, layer, neuron):
        """The NeuronDescription of a neuron (computed once, then kept)."""
        key = (kind, int(layer), int(neuron))
        if key not in self._described:
            idx, _ = self.neuron_triggers(kind, layer, neuron)
            self._described[key] = describe_neuron(self.tables[kind], kind, int(layer),
                                                   int(neuron), idx, self.contexts[kind])
        return self._described[key]


def default_corpus(translator, n_pairs=600):
    """The first n_pairs test pairs of the corpus the translator was trained
    on (its corpus seed), as `pytransformer analyze` uses them."""
    n_pairs = _check_int("n_pairs", n_pairs, 1)
    from pytransformer.translator import corpus_splits
    return list(corpus_splits(translator).test[:n_pairs])


# part of the cache key: change it whenever the cached arrays (triggers,
# values, mean activations, CKA) would be computed differently
_CACHE_VERSION = "ffn-corpus/1"
_MEMO = {}


def cache_dir():
    """Where corpus statistics are cached: $PYTRANSFORMER_CACHE_DIR, else
    $XDG_CACHE_HOME/pytransformer, else ~/.cache/pytransformer."""
    import os
    d = os.environ.get("PYTRANSFORMER_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pytransformer")


def _fingerprint(translator, pairs, top_k, n_top):
    """A hash of the weights, vocabularies, sample and settings: the cache key."""
    import hashlib
    h = hashlib.sha256(_CACHE_VERSION.encode())
    for name, p in translator.model.named_parameters():
        h.update(name.encode())
        h.update(np.ascontiguousarray(p.data).tobytes())
    for v in (translator.src_vocab, translator.tgt_vocab):
        h.update("\x00".join(v.tokens).encode())
    for p in pairs:
        h.update((p.source + "\t" + p.target + "\t" + " ".join(p.pos or ()) + "\n").encode())
    h.update(f"{top_k}:{n_top}".encode())
    return h.hexdigest()[:24]


def _top_per_neuron(A, keep, k):
    """(F, k) token indices of each column's k largest positive entries among
    the rows `keep` (-1 pads), and their values."""
    rows = np.flatnonzero(keep)
    Ak = A[rows]
    k = min(k, len(rows))
    part = np.argpartition(-Ak, k - 1, axis=0)[:k]                      # (k, F)
    vals = np.take_along_axis(Ak, part, axis=0)
    order = np.argsort(-vals, axis=0, kind="stable")
    part = np.take_along_axis(part, order, axis=0)
    vals = np.take_along_axis(vals, order, axis=0)
    idx = np.where(vals > 0, rows[part], -1).T.astype(np.int32)
    return idx, np.where(vals > 0, vals, 0).T.astype(np.float32)


def _sample_tables(pairs):
    """({kind: FeatureTable}, {kind: contexts}, {English word: POS tag}) of the pairs,
    tokens in the order _collect gathers them (sentence by sentence)."""
    tags = {}
    for p in pairs:
        for w, t in zip(p.src, p.pos or ()):
            tags.setdefault(w, Counter())[t] += 1
    tag_of = {w: c.most_common(1)[0][0] for w, c in tags.items()}
    rows = {"encoder": [], "decoder": []}
    ctx = {"encoder": [], "decoder": []}
    for p in pairs:
        src = list(p.src) + ["<eos>"]
        rows["encoder"] += token_features("encoder", src, list(p.pos) + [None])
        ctx["encoder"] += [" ".join(src[max(0, i - 2):i + 1]) for i in range(len(src))]
        tin, tout = ["<bos>"] + list(p.tgt), list(p.tgt) + ["<eos>"]
        rows["decoder"] += token_features("decoder", tin, out_words=tout)
        ctx["decoder"] += [" ".join(tin[max(0, i - 2):i + 1]) + " \u2192 " + tout[i]
                           for i in range(len(tin))]
    return ({k: FeatureTable(r) for k, r in rows.items()}, ctx, tag_of)


def _jaccard(a, b, n):
    """(Jaccard of sets a and b, its expectation for random sets of their sizes out of n)."""
    inter = len(a & b)
    union = len(a | b)
    e = len(a) * len(b) / n
    return (inter / union if union else float("nan"),
            e / (len(a) + len(b) - e) if len(a) + len(b) > e else float("nan"))


def _arrays_from_sides(sides, tables, top_k):
    """The numbers a CorpusFFN keeps, from _collect's sides (with outputs):
    per layer the top_k triggers, their values and the mean activation of
    every neuron over the words, and per kind the CKA of the FFN outputs."""
    from .analysis import _blas_threads
    from .layers import linear_cka
    arrays = {}
    for side in sides:
        keep = tables[side.kind].keep
        if len(keep) != len(side.tok):
            raise ValueError(f"pairs: {len(side.tok)} {side.kind} tokens traced, "
                             f"{len(keep)} described")
        L = len(side.acts)
        for li in range(L):
            A = side.acts[li]
            idx, val = _top_per_neuron(A, keep, top_k)
            arrays[f"{side.kind}.{li}.triggers"] = idx
            arrays[f"{side.kind}.{li}.values"] = val
            arrays[f"{side.kind}.{li}.mean"] = A[keep].mean(0, dtype=np.float64)
        cka = np.eye(L)
        with _blas_threads(1):                  # small products: extra BLAS threads only contend
            for i in range(L):
                for j in range(i + 1, L):
                    cka[i, j] = cka[j, i] = linear_cka(side.outs[i][keep], side.outs[j][keep])
        arrays[f"{side.kind}.cka"] = cka
    return arrays


def _corpus_from_arrays(arrays, pairs, tables, contexts, tag_of, top_k, n_top, cached=False):
    """The CorpusFFN of those numbers: top neurons, trigger-set overlaps and
    the layers' description profiles computed here."""
    out = CorpusFFN(pairs=pairs, top_k=top_k, tables=tables, contexts=contexts, tags=tag_of,
                    triggers={}, values={}, mean={}, top={}, cka={}, overlap={},
                    overlap_chance={}, cached=cached)
    for kind in ("encoder", "decoder"):
        L = len([k for k in arrays if k.startswith(kind + ".") and k.endswith(".mean")])
        out.triggers[kind] = [arrays[f"{kind}.{li}.triggers"] for li in range(L)]
        out.values[kind] = [arrays[f"{kind}.{li}.values"] for li in range(L)]
        out.mean[kind] = [arrays[f"{kind}.{li}.mean"] for li in range(L)]
        out.top[kind] = [np.argsort(-m, kind="stable")[:n_top] for m in out.mean[kind]]
        out.cka[kind] = arrays[f"{kind}.cka"]
        sets = [set(int(i) for n in out.top[kind][li] for i in out.triggers[kind][li][n]
                    if i >= 0) for li in range(L)]
        n_words = int(tables[kind].keep.sum())
        ov, ch = np.eye(L), np.eye(L)
        for i in range(L):
            for j in range(i + 1, L):
                ov[i, j], ch[i, j] = _jaccard(sets[i], sets[j], n_words)
                ov[j, i], ch[j, i] = ov[i, j], ch[i, j]
        out.overlap[kind], out.overlap_chance[kind] = ov, ch
        out.profile[kind] = []
        for li in range(L):
            counts = Counter(k for n in out.top[kind][li]
                             for k in out.describe(kind, li, int(n)).kinds)
            out.profile[kind].append({k: counts.get(k, 0) for k in FEATURE_KINDS})
    return out


def corpus_ffn(translator, pairs=None, top_k=20, n_top=16, cache=True, batch_size=128):
    """CorpusFFN of `translator` over `pairs` (corpus Pairs with POS tags;
    default: default_corpus(translator)). top_k: top activations kept per
    neuron (the descriptions' coverage is a share of them); n_top: neurons
    per layer (highest mean activation) in the layer profile and the
    trigger-set overlap. cache: keep the numbers in this process and on disk
    (cache_dir(), keyed by a hash of the weights, sample and settings), so
    the traced pass over the sample runs once per model."""
    import io
    import os
    import time
    import warnings
    from pytransformer._atomic import atomic_write
    from .analysis import _blas_threads
    t0 = time.perf_counter()
    _check_translator(translator)
    pairs = _check_pairs(default_corpus(translator) if pairs is None else pairs)
    top_k = _check_int("top_k", top_k, 1)
    n_top = _check_int("n_top", n_top, 1)
    key = _fingerprint(translator, pairs, top_k, n_top) if cache else None
    if key in _MEMO:
        return _MEMO[key]
    tables, contexts, tag_of = _sample_tables(pairs)
    path = os.path.join(cache_dir(), f"{key}.npz") if cache else None
    arrays = None
    if path and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            arrays = None                       # unreadable: computed again below
    cached = arrays is not None
    if arrays is None:
        with warnings.catch_warnings(), _blas_threads(1):
            warnings.simplefilter("ignore")      # test words outside the vocabulary
            enc, dec, _ = _collect(translator, pairs, batch_size, None, outputs=True)
        arrays = _arrays_from_sides((enc, dec), tables, top_k)
        if path:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                buf = io.BytesIO()
                np.savez_compressed(buf, **arrays)
                atomic_write(path, [buf.getvalue()])
            except OSError:
                pass                   # a read-only cache directory: recompute next time
    out = _corpus_from_arrays(arrays, pairs, tables, contexts, tag_of, top_k, n_top, cached)
    out.seconds = time.perf_counter() - t0
    if key is not None:
        _MEMO.clear()                      # one model's statistics at a time in memory
        _MEMO[key] = out
    return out


# ----------------------------------------------------------------------------
# one sentence: its most active neurons in words, and each FFN ablated


@dataclasses.dataclass
class SentenceNeuron:
    """A neuron most active on the sentence: `neuron`, the `word` (and
    `position`) where it fires most here, its `activation` there,
    `threshold` (its top_k-th largest activation over the corpus sample, so
    `in_top` says whether this word would be among its corpus triggers),
    `description` (NeuronDescription) and `fits` (whether this word carries
    every feature of the description)."""
    neuron: int
    word: str
    position: int
    activation: float
    threshold: float
    in_top: bool
    description: NeuronDescription
    fits: bool

    def to_dict(self):
        """A JSON-able dict."""
        d = dataclasses.asdict(self)
        d["description"] = self.description.to_dict()
        return d


@dataclasses.dataclass
class LayerEffect:
    """One FFN on one sentence: `kind`, `layer`, `neurons` (SentenceNeuron,
    most active first), and what zeroing the FFN does: `ablated` (the
    greedy translation without it), `intact` (the greedy translation with
    it), `changed` (how many word positions of the two differ, plus the
    difference in length), `prob` / `ablated_prob` (geometric mean
    probability per word of the explained translation, which is the model's
    own or the one given, teacher-forced, <eos> included, with and without
    the FFN)."""
    kind: str
    layer: int
    neurons: list
    ablated: str
    intact: str
    changed: int
    prob: float
    ablated_prob: float

    def to_dict(self):
        """A JSON-able dict."""
        return {"kind": self.kind, "layer": self.layer,
                "neurons": [n.to_dict() for n in self.neurons], "ablated": self.ablated,
                "intact": self.intact, "changed": self.changed, "prob": self.prob,
                "ablated_prob": self.ablated_prob}


def _unmark(w):
    return w[5:-1] if w.startswith("<unk:") else w


def _word_changes(a, b):
    a, b = a.split(), b.split()
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def _mean_logprob(logits, ids):
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(np.mean(lp[np.arange(len(ids)), ids]))


def sentence_ffn(translator, t, sentence, corpus=None, n_neurons=3):
    """What every FFN does to one sentence: a list of LayerEffect, encoder
    layers then decoder layers. t: the sentence's trace
    (explain.trace(translator, sentence[, translation])); corpus: a
    CorpusFFN (default corpus_ffn(translator)); n_neurons: neurons per
    layer: the neuron firing most on each distinct word, the words taken in
    order of that activation (the special <eos> / <bos> slots left out, as
    in the corpus), then the next most active neurons if there are fewer
    words."""
    from pytransformer.autograd import no_grad
    from .ablation import ablate_ffn
    _check_translator(translator)
    n_neurons = _check_int("n_neurons", n_neurons, 1)
    corpus = corpus_ffn(translator) if corpus is None else corpus
    src = [_unmark(w) for w in t.src_tokens[0]]
    tin = [_unmark(w) for w in t.tgt_in_tokens[0]]
    tout = [_unmark(w) for w in t.tgt_out_tokens[0]]
    feats = {"encoder": token_features("encoder", src, [corpus.tags.get(w) for w in src]),
             "decoder": token_features("decoder", tin, out_words=tout)}
    words = {"encoder": list(t.src_tokens[0]),
             "decoder": [f"{a} \u2192 {b}" for a, b in zip(t.tgt_in_tokens[0],
                                                         t.tgt_out_tokens[0])]}
    intact = translator.translate([sentence])[0]
    T = len(tin)
    out_ids = np.asarray(t.tgt_ids[0, 1:T].tolist() + [EOS])
    prob = float(np.exp(_mean_logprob(t.logits[0, :T], out_ids)))
    net = translator.model
    effects = []
    for kind in ("encoder", "decoder"):
        n_tok = len(words[kind])
        for li in range(corpus.num_layers(kind)):
            h = np.asarray(t.ffn(kind, li).hidden[0, :n_tok], np.float64)
            real = np.ones(n_tok, bool)
            real[-1 if kind == "encoder" else 0] = False
            hr = np.where(real[:, None], h, -np.inf)
            peak, where = hr.max(0), hr.argmax(0)
            order = np.argsort(-peak, kind="stable")
            # the most active neurons, one per distinct word first (so that
            # they are not all about "the"), then the rest by activation
            first = {}
            for n in order:
                first.setdefault(words[kind][int(where[n])], int(n))
            picked = sorted(first.values(), key=lambda n: -peak[n])[:n_neurons]
            picked += [int(n) for n in order if n not in picked][:n_neurons - len(picked)]
            neurons = []
            for n in picked:
                pos = int(where[n])
                _, vals = corpus.neuron_triggers(kind, li, int(n))
                thr = float(vals[-1]) if len(vals) else float("inf")
                d = corpus.describe(kind, li, int(n))
                neurons.append(SentenceNeuron(
                    neuron=int(n), word=words[kind][pos], position=pos,
                    activation=float(h[pos, n]), threshold=thr,
                    in_top=bool(len(vals) == corpus.top_k and h[pos, n] >= thr),
                    description=d,
                    fits=bool(d.features) and set(d.features) <= set(feats[kind][pos])))
            with ablate_ffn(translator, [(kind, li)]):
                ablated = translator.translate([sentence])[0]
                was = net.training
                net.eval()
                try:
                    with no_grad():
                        logits = np.asarray(net(t.src_ids, t.tgt_ids).data)
                finally:
                    net.train(was)
            effects.append(LayerEffect(
                kind=kind, layer=li, neurons=neurons, ablated=ablated, intact=intact,
                changed=_word_changes(intact, ablated), prob=prob,
                ablated_prob=float(np.exp(_mean_logprob(logits[0, :T], out_ids)))))
    return effects


# ----------------------------------------------------------------------------
# the sentence page's section, in words


def _quote(w):
    return f"\u201c{w}\u201d"


def neuron_sentence(n, top_k):
    """One sentence saying what a SentenceNeuron does here and across the corpus."""
    d = n.description
    fire = (f"n{n.neuron} fires on {_quote(n.word)} ({n.activation:.2f}; its "
            f"{top_k}th-strongest corpus activation is {n.threshold:.2f})")
    if not d.features:
        return fire + "; its strongest corpus activations share no feature."
    fit = ("; this word fits the description" if n.fits
           else "; this word does not fit the description")
    verb = "fires on" if d.kind == "encoder" else "fires when"
    return (f"{fire}. Across the corpus it {verb} {d.text}: {d.covered} of its top {d.k} "
            f"activations ({d.coverage:.0%}) against {d.base:.1%} of all words{fit}.")


def ablation_sentence(e, explained):
    """What zeroing the FFN of a LayerEffect does, in one sentence."""
    probs = (f"the mean word probability (geometric) of {_quote(explained)} goes from "
             f"{e.prob:.2f} to {e.ablated_prob:.2f}")
    if e.changed == 0:
        return f"Without this FFN the model's translation stays the same; {probs}."
    return (f"Without this FFN the model writes {_quote(e.ablated)} instead of "
            f"{_quote(e.intact)} ({e.changed} word{'s' if e.changed != 1 else ''} differ); "
            f"{probs}.")


def _pairs_text(m, fmt, pairs):
    return ", ".join(f"{i}\u2013{j} {format(m[i, j], fmt)}" for i, j in pairs)


def _pair_groups(L):
    """The layer pairs a sentence names: neighbouring layers, then the first
    and the last (when they are not neighbours)."""
    near = [(i, i + 1) for i in range(L - 1)]
    return near, ([(0, L - 1)] if L > 2 else [])


def layer_pairs(corpus, kind):
    """Every pair of `kind` layers, (i, j) with i < j, with the linear CKA of
    their FFN outputs, the Jaccard overlap of their trigger sets and what
    random sets of those sizes would overlap: a list of (i, j, cka,
    overlap, chance)."""
    L = corpus.num_layers(kind)
    cka, ov, ch = corpus.cka[kind], corpus.overlap[kind], corpus.overlap_chance[kind]
    return [(i, j, float(cka[i, j]), float(ov[i, j]), float(ch[i, j]))
            for i in range(L) for j in range(i + 1, L)]


def similarity_sentence(corpus, kind):
    """Is each of the `kind` FFNs a different function? In words, with the
    CKA of their outputs, the overlap of their trigger sets and what their
    top neurons' descriptions rest on. Neighbouring layers and the first
    and last are named (with any pair whose CKA is 0.8 or more, which is
    nearly the same function); layer_pairs has every pair, which the
    sentence page shows as a table."""
    L = corpus.num_layers(kind)
    if L < 2:
        return f"The {kind} has one layer: nothing to compare."
    cka, ov, ch = corpus.cka[kind], corpus.overlap[kind], corpus.overlap_chance[kind]
    all_pairs = [(i, j) for i in range(L) for j in range(i + 1, L)]
    near, ends = _pair_groups(L)
    same = [(i, j) for i, j in all_pairs if np.isfinite(cka[i, j]) and cka[i, j] >= 0.8]
    hi = float(np.nanmax([cka[i, j] for i, j in all_pairs]))
    if same:
        verdict = ("the FFNs of " + ", ".join(f"layers {i} and {j} (CKA {cka[i, j]:.2f})"
                                              for i, j in same)
                   + " compute nearly the same function"
                   + ("; the other pairs share part of their function or less"
                      if len(same) < len(all_pairs) else ""))
    elif hi < 0.5:
        verdict = "each layer's FFN computes a different function"
    else:
        verdict = "the layers' FFNs share part of their function"
    named = near + ends
    others = [p for p in all_pairs if p not in named]
    cka_text = f"neighbouring layers {_pairs_text(cka, '.2f', near)}"
    ov_text = f"neighbouring layers {_pairs_text(ov, '.1%', near)}"
    if ends:
        cka_text += f"; the first and last {_pairs_text(cka, '.2f', ends)}"
        ov_text += f"; the first and last {_pairs_text(ov, '.1%', ends)}"
    if others:
        i, j = max(others, key=lambda p: -np.inf if not np.isfinite(cka[p]) else cka[p])
        cka_text += (f"; of the {len(others)} other pairs the most alike {i}\u2013{j} "
                     f"{cka[i, j]:.2f}, the least "
                     + _pairs_text(cka, '.2f', [min(others, key=lambda p: np.nan_to_num(
                         cka[p], nan=np.inf))]))
    chance = [ch[p] for p in all_pairs]
    n_top = len(corpus.top[kind][0])
    prof = "; ".join(f"layer {li}: " + ", ".join(f"{k} {c}" for k, c in p.items() if c)
                     for li, p in enumerate(corpus.profile[kind]))
    n_words = int(corpus.tables[kind].keep.sum())
    return (f"{kind.capitalize()}: {verdict}. Linear CKA between the layers' FFN outputs over "
            f"{n_words} words of {len(corpus.pairs)} test sentences (1 = the same up to a "
            f"rotation and a scale): {cka_text}. The top-{corpus.top_k} triggers of each "
            f"layer's {n_top} most active neurons overlap (Jaccard): {ov_text}; random sets "
            f"of the same sizes would overlap by {min(chance):.1%}\u2013{max(chance):.1%}"
            f". What the {n_top} neurons' descriptions rest on: {prof}.")


def ffn_section(rep, translator, sentence, v, corpus=None):
    """Add the sentence page's feed-forward section to the Report `rep`
    (v: the report's sentence_views): per layer, the most active neurons
    in words with their corpus coverage, the translation with that FFN
    zeroed, and whether the layers' FFNs differ. Returns the LayerEffects."""
    from . import html as H
    corpus = corpus_ffn(translator) if corpus is None else corpus
    t = v["trace"]
    effects = sentence_ffn(translator, t, sentence, corpus)
    explained = " ".join(t.tgt_out_tokens[0][:-1])
    body = ""
    for e in effects:
        items = "".join(f"<li>{H.escape(neuron_sentence(n, corpus.top_k))}</li>"
                        for n in e.neurons)
        body += (f"<h3>{e.kind} layer {e.layer}</h3><ul>{items}</ul>"
                 f"<p>{H.escape(ablation_sentence(e, explained))}</p>")
    body += H.table_html(
        ["layer", "the model's translation without this FFN", "words changed",
         "mean word prob. of the explained translation", "without the FFN"],
        [[f"{e.kind} {e.layer}", e.ablated, e.changed, e.prob, e.ablated_prob]
         for e in effects], number_format=".3g",
        caption="Each FFN zeroed alone (its output removed, the residual stream kept)")
    body += H.table_html(
        ["layer", "neuron", "fires here on", "activation", "corpus top-k threshold",
         "fires across the corpus on", "covers", "of all words", "fits this word"],
        [[f"{e.kind} {e.layer}", f"n{n.neuron}", n.word, n.activation, n.threshold,
          n.description.text, f"{n.description.covered}/{n.description.k}",
          f"{n.description.base:.1%}", "yes" if n.fits else "no"]
         for e in effects for n in e.neurons], number_format=".3g",
        caption="The most active neurons, with what they fire on across the corpus")
    body += "<h3>Is each layer's FFN a different function?</h3>"
    for kind in ("encoder", "decoder"):
        body += f"<p>{H.escape(similarity_sentence(corpus, kind))}</p>"
        labels = [f"layer {i}" for i in range(corpus.num_layers(kind))]
        body += H.heatmap_svg(corpus.cka[kind], labels, labels,
                              title=f"{kind}: linear CKA of the FFN outputs", vmin=0, vmax=1)
        pairs = layer_pairs(corpus, kind)
        if len(pairs) > 3:
            body += H.table_html(
                ["layers", "CKA of the FFN outputs", "trigger-set overlap (Jaccard)",
                 "random sets of the same sizes", "overlap / random"],
                [[f"{i}\u2013{j}", c, f"{o:.1%}", f"{r:.1%}", o / r if r > 0 else float("nan")]
                 for i, j, c, o, r in pairs], number_format=".2f",
                caption=f"{kind.capitalize()}: every pair of layers")
    rep.add_section(
        "What each feed-forward layer does to this sentence",
        "A feed-forward block (FFN) is a memory of patterns (Geva et al. 2021): each hidden "
        "neuron fires on some inputs and then adds its own vector to the word's "
        "representation. For every layer: the neurons firing most on this sentence (one per "
        "word first), and what each fires on across the corpus, found from its "
        f"{corpus.top_k} strongest activations over {len(corpus.pairs)} test sentences and "
        "the lexicon's word classes (part of speech, number, gender, noun class, tense) and "
        "neighbours: the words name the features most of those activations share and few "
        "other words do, and the numbers say how many of its top activations carry them "
        "(coverage) and how common they are among all words. A decoder position reads one "
        "word and writes the next, shown as reading \u2192 writing. Then what happens to "
        "the translation when that layer's FFN is zeroed, and whether the layers compute "
        "different functions.", body, id="ffn")
    return effects


def ffn_answer(mem, kind="encoder", n=2):
    """[question, answer] for `pytransformer analyze`'s headline: what the
    `kind` FFNs of an FFNMemories (with its corpus) do, in words (each
    layer's n most active neurons with their coverage) and whether each
    layer is a different function (CKA of the FFN outputs)."""
    n = _check_int("n", n, 1)
    if kind not in ("encoder", "decoder"):
        raise ValueError(f"kind: expected 'encoder' or 'decoder', got {kind!r}")
    c = mem.corpus
    if c is None:
        raise ValueError("mem: an FFNMemories without corpus statistics (made by ffn_memories)")
    parts = []
    for li in range(c.num_layers(kind)):
        ds = [c.describe(kind, li, int(nn)) for nn in c.top[kind][li][:n]]
        parts.append(f"layer {li}: " + "; ".join(
            f"n{d.neuron} fires {'on' if kind == 'encoder' else 'when'} {d.text} "
            f"({d.covered}/{d.k} of its top activations)"
            for d in ds))
    return [f"What does the {kind}'s feed-forward part learn, and is it a different function "
            f"in each layer?", "; ".join(parts) + ". " + similarity_sentence(c, kind)]
