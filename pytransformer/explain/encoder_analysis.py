"""Corpus-level analysis of an encoder-only model (the pretrained
all-MiniLM-L6-v2 of pytransformer.pretrained): the measures of
explain.analysis that apply to an encoder, on the English side of corpus
pairs, and which it skips and why.

    a = run_encoder_analysis(encoder, splits.test[:500])
    print(encoder_findings(a))
    encoder_analysis_report(a).save("minilm.html")

The corpus annotates words, the model reads word pieces, so every measure
works on words: attention to a word is the sum of the weights on its pieces
and attention from a word the mean of its pieces' rows (Clark et al. 2019);
a word's FFN activation is the largest over its pieces; [CLS] and [SEP]
together play the part of the translator's <eos>.
"""
import dataclasses
import sys
import time

import numpy as np

from pytransformer.autograd import no_grad

from . import html as H
from .layers import cka_matrix
from .syntax import SyntaxAccumulator
from .trace import Tracer

__all__ = ["EncoderAnalysis", "SKIPPED", "encoder_analysis_report", "encoder_findings",
           "run_encoder_analysis"]

# the measures of explain.analysis an encoder-only model cannot have, and why
SKIPPED = {
    "alignment (AER)": "needs cross-attention between a source and a translation; a sentence "
                       "encoder has neither",
    "logit lens": "reads each layer through the output layer onto the vocabulary; the sentence "
                  "encoder ends in mean pooling, with no output vocabulary",
    "head importance and pruning": "measure the loss or BLEU lost without a head; a sentence "
                                   "encoder has no training loss or translation to score here",
    "rollout vs ablation": "compares attention with the influence of each source word on a "
                           "translated word; there is no translated word",
    "AER over training": "needs the model's training snapshots; the pretrained model comes "
                         "without its training history",
}


@dataclasses.dataclass
class EncoderFFN:
    """What the feed-forward neurons of each layer fire on: per layer, for
    every neuron its top-k trigger words (largest activations over all
    words of the pairs), the share of them with one POS tag (pos_share)
    and the share that are one word (word_share), averaged over the
    neurons; the same shares for k random words (chance); and the neurons
    whose triggers share a POS tag most, with their triggers (examples)."""
    k: int
    pos_share: np.ndarray
    word_share: np.ndarray
    chance_pos: float
    chance_word: float
    examples: list
    caption: str = ""


@dataclasses.dataclass
class EncoderAnalysis:
    """Results of :func:`run_encoder_analysis`: syntax (syntax.SyntaxScores
    on word-level attention), noop_share (L, H): the share of words whose
    largest weight goes to [CLS] or [SEP]; cka (L+1, L+1) linear CKA
    between the embeddings and every layer's output over the words' first
    pieces, with cka_labels; update_ratio (L, 2): ||update|| / ||stream||
    of each layer's attention and FFN; ffn (EncoderFFN); skipped {measure:
    why}; model (a name), num_layers, num_heads, n_pairs, n_words,
    seconds {measure: wall time}."""
    model: str
    num_layers: int
    num_heads: int
    n_pairs: int
    n_words: int
    syntax: object
    noop_share: np.ndarray
    cka: np.ndarray
    cka_labels: list
    update_ratio: np.ndarray
    ffn: EncoderFFN
    skipped: dict
    seconds: dict = dataclasses.field(default_factory=dict)


class _PieceBatch:
    """Word-piece ids of corpus sentences: [CLS] + each word's pieces +
    [SEP], padded; spans[b][k] = (first piece, end) of word k."""

    def __init__(self, encoder, pairs, cache):
        tok = encoder.tokenizer
        rows, spans = [], []
        for p in pairs:
            ids, sp = [tok.cls_id], []
            for w in p.src:
                if w not in cache:
                    row = tok([w])
                    n = int(row["attention_mask"][0].sum())
                    cache[w] = [int(i) for i in row["input_ids"][0, 1:n - 1]] or [tok.cls_id]
                sp.append((len(ids), len(ids) + len(cache[w])))
                ids.extend(cache[w])
            ids.append(tok.sep_id)
            rows.append(ids)
            spans.append(sp)
        T = max(len(r) for r in rows)
        if T > encoder.bert.config.max_position_embeddings:
            raise ValueError(f"pairs: a sentence has {T} word pieces, the model reads at most "
                             f"{encoder.bert.config.max_position_embeddings}")
        self.ids = np.full((len(rows), T), tok.pad_id, np.int64)
        self.mask = np.zeros((len(rows), T), np.int64)
        for b, r in enumerate(rows):
            self.ids[b, :len(r)] = r
            self.mask[b, :len(r)] = 1
        self.spans, self.lengths = spans, [len(r) for r in rows]


def _word_weights(w, batch):
    """Piece-level attention (B, H, T, T) -> word level (B, H, S, S) with S
    = most words + 1: rows and columns the words, then one column for [CLS]
    + [SEP] (the no-op), then zeros."""
    B, H, T, _ = w.shape
    S = max(len(s) for s in batch.spans) + 1
    out = np.zeros((B, H, S, S))
    for b, spans in enumerate(batch.spans):
        n = len(spans)
        frm = np.zeros((S, T))
        to = np.zeros((T, S))
        for k, (a, e) in enumerate(spans):
            frm[k, a:e] = 1.0 / (e - a)
            to[a:e, k] = 1.0
        to[0, n] = to[batch.lengths[b] - 1, n] = 1.0            # [CLS], [SEP]
        out[b] = frm @ w[b] @ to
    return out


def _shares(labels, top):
    """Mean over neurons of the share of a neuron's triggers (rows of `top`,
    indices into `labels`) that carry its most common label."""
    lab = labels[top]                                           # (neurons, k)
    out = np.empty(len(lab))
    for i, row in enumerate(lab):
        out[i] = np.unique(row, return_counts=True)[1].max() / len(row)
    return out


def run_encoder_analysis(encoder, pairs, stream=None, batch_size=64, k=10, model_name=None):
    """Every measure of explain.analysis that applies to an encoder, on the
    source sentences of `pairs` (corpus Pairs with dependencies and POS
    tags): syntactic heads (Clark et al. 2019, word-level attention), the
    share of words parked on [CLS]/[SEP], layer similarity (linear CKA) and
    update sizes, and what the FFN neurons fire on (top-k triggers' POS and
    word). The others are listed in SKIPPED with the reason. Progress goes
    to `stream` (default stderr; False: silent). Returns an
    EncoderAnalysis."""
    if stream is None:
        stream = sys.stderr
    pairs = [p for p in pairs]
    if not pairs:
        raise ValueError("pairs: no pairs to analyze")
    if any(p.deps is None or p.pos is None for p in pairs):
        raise ValueError("pairs: expected corpus pairs with dependencies and POS tags")
    net = encoder.bert
    L, Hn = len(net.layers), net.config.num_attention_heads
    t0 = time.perf_counter()
    if stream:
        print("  tracing word pieces ...", end="", file=stream, flush=True)
    syn = SyntaxAccumulator()
    noop = np.zeros((L, Hn))
    reps = [[] for _ in range(L + 1)]
    upd = np.zeros((L, 2))
    acts = [[] for _ in range(L)]
    words, tags = [], []
    cache, n_tokens = {}, 0
    was = net.training
    net.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            part = pairs[start:start + batch_size]
            pb = _PieceBatch(encoder, part, cache)
            with Tracer(net) as t, no_grad():
                net(pb.ids, attention_mask=pb.mask)
            wl = [_word_weights(t.attention("encoder", layer).weights, pb) for layer in range(L)]
            syn.add_weights(wl, part)
            n_src = np.array([len(p.src) for p in part])
            for layer in range(L):
                am = wl[layer]
                for b, n in enumerate(n_src):
                    rows = am[b, :, :n, :n + 1]                          # words + no-op
                    noop[layer] += (rows.argmax(-1) == n).sum(-1)
            first = [(b, sp[0]) for b, spans in enumerate(pb.spans) for sp in spans]
            bi = np.array([b for b, _ in first])
            pi = np.array([i for _, i in first])
            real = pb.mask.astype(bool)
            n_tokens += int(real.sum())
            for layer in range(L):
                rec, f = t.layer("encoder", layer), t.ffn("encoder", layer)
                a = t.attention("encoder", layer)
                if layer == 0:
                    reps[0].append(rec.input[bi, pi])
                reps[layer + 1].append(rec.output[bi, pi])
                for j, (inp, u) in enumerate(((a.query_in, a.out), (f.input, f.output))):
                    ratio = (np.linalg.norm(u, axis=-1)
                             / np.maximum(np.linalg.norm(inp, axis=-1), 1e-30))
                    upd[layer, j] += ratio[real].sum()
                h = f.hidden
                acts[layer].append(np.stack([h[b, a_:e_].max(0)
                                             for b, spans in enumerate(pb.spans)
                                             for a_, e_ in spans]).astype(np.float32))
            words.extend(w for p in part for w in p.src)
            tags.extend(tg for p in part for tg in p.pos)
    finally:
        net.train(was)
    n_words = len(words)
    upd /= max(n_tokens, 1)
    noop /= max(n_words, 1)
    secs = {"tracing, syntax and layers": time.perf_counter() - t0}
    if stream:
        print(f" {secs['tracing, syntax and layers']:.1f} s", file=stream, flush=True)
        print("  FFN triggers ...", end="", file=stream, flush=True)
    t1 = time.perf_counter()
    word_ids = np.unique(np.array(words), return_inverse=True)[1]
    tag_ids = np.unique(np.array(tags), return_inverse=True)[1]
    kk = min(k, n_words)
    pos_share, word_share, examples = [], [], []
    for layer in range(L):
        A = np.concatenate(acts[layer])                             # (n_words, ff)
        top = np.argpartition(-A, kk - 1, axis=0)[:kk].T             # (ff, k)
        ps, ws = _shares(tag_ids, top), _shares(word_ids, top)
        pos_share.append(ps.mean())
        word_share.append(ws.mean())
        # examples: neurons that detect a part of speech across different words
        for n in np.argsort(-(ps + (1 - ws)), kind="stable")[:3]:
            trig = top[n][np.argsort(-A[top[n], n])]
            tg = [tags[i] for i in trig]
            common = max(set(tg), key=tg.count)
            examples.append({"layer": layer, "neuron": int(n), "pos": common,
                             "pos_share": float(ps[n]),
                             "triggers": [words[i] for i in trig]})
        acts[layer] = None
    rng = np.random.default_rng(0)
    rand = np.array([rng.choice(n_words, kk, replace=False) for _ in range(2000)])
    ffn = EncoderFFN(k=kk, pos_share=np.array(pos_share), word_share=np.array(word_share),
                     chance_pos=float(_shares(tag_ids, rand).mean()),
                     chance_word=float(_shares(word_ids, rand).mean()), examples=examples)
    ffn.caption = (f"For every hidden neuron of each layer's feed-forward block, its top "
                   f"{kk} trigger words (the words of the {len(pairs)} sentences where it is "
                   f"most active; a word's activation is the largest over its word pieces): "
                   f"the share of them with the same part of speech, and the share that are "
                   f"the same word, averaged over the neurons, against {kk} random words "
                   f"({100 * ffn.chance_pos:.0f}% and {100 * ffn.chance_word:.0f}%).")
    secs["FFN triggers"] = time.perf_counter() - t1
    if stream:
        print(f" {secs['FFN triggers']:.1f} s", file=stream, flush=True)
    name = model_name or getattr(encoder, "path", None) or type(net).__name__
    return EncoderAnalysis(
        model=str(name), num_layers=L, num_heads=Hn, n_pairs=len(pairs), n_words=n_words,
        syntax=syn.result(), noop_share=noop,
        cka=cka_matrix([np.concatenate(r) for r in reps]),
        cka_labels=["embeddings"] + [f"layer {i}" for i in range(L)], update_ratio=upd,
        ffn=ffn, skipped=dict(SKIPPED), seconds=secs)


def encoder_findings(a):
    """The headline numbers of an EncoderAnalysis as a flat dict (for the
    CLI summary, JSON and tests)."""
    c = a.cka
    return {
        "model": a.model, "pairs": a.n_pairs, "words": a.n_words,
        "layers": a.num_layers, "heads": a.num_heads,
        "best_head_per_relation": {
            r["relation"]: {"head": f"L{r['layer']} H{r['head']} {r['direction']}",
                            "accuracy": float(r["accuracy"]),
                            "best_baseline": float(r["best_baseline"])}
            for r in a.syntax.table},
        "noop_share_per_layer": [float(x) for x in a.noop_share.mean(1)],
        "cka_consecutive": [float(c[i, i + 1]) for i in range(1, a.num_layers)],
        "cka_embeddings_to_last": float(c[0, -1]),
        "update_ratio": {"attention": [float(x) for x in a.update_ratio[:, 0]],
                         "ffn": [float(x) for x in a.update_ratio[:, 1]]},
        "ffn_pos_share": [float(x) for x in a.ffn.pos_share],
        "ffn_word_share": [float(x) for x in a.ffn.word_share],
        "ffn_chance": {"pos": a.ffn.chance_pos, "word": a.ffn.chance_word},
        "skipped": dict(a.skipped),
        "seconds": {k: round(v, 2) for k, v in a.seconds.items()},
    }


def _answers(a):
    """[question, answer] rows."""
    wins = [r for r in a.syntax.table if r["accuracy"] > r["best_baseline"]]
    c = a.cka
    L = a.num_layers
    low = min(range(1, L), key=lambda i: c[i, i + 1]) if L > 1 else 0
    return [
        ["Do heads track syntax? (Clark et al. 2019)",
         f"For {len(wins)} of {len(a.syntax.table)} relations a head beats every positional "
         f"baseline: " + ", ".join(f"{r['relation']} {r['accuracy']:.2f} (L{r['layer']} "
                                   f"H{r['head']}, baseline {r['best_baseline']:.2f})"
                                   for r in wins) + "."],
        ["Where does attention go when a head has nothing to do?",
         "To [CLS] or [SEP]: the share of words whose largest weight goes there, per layer "
         "(heads averaged): " + ", ".join(f"layer {i} {100 * x:.0f}%"
                                          for i, x in enumerate(a.noop_share.mean(1))) + "."],
        [f"Is each of the {L} layers a different function?",
         "Linear CKA between consecutive layers (1 = the same representation up to "
         "rotation and scale): " + ", ".join(f"{c[i, i + 1]:.2f}" for i in range(1, L))
         + f", the lowest into layer {low}; from the embeddings to the last layer "
           f"{c[0, -1]:.2f}. Each feed-forward "
           f"update is {a.update_ratio[:, 1].min():.2f}-{a.update_ratio[:, 1].max():.2f} "
           f"times the norm of its input, each attention update "
           f"{a.update_ratio[:, 0].min():.2f}-{a.update_ratio[:, 0].max():.2f}."],
        ["What do the feed-forward neurons fire on?",
         f"On a part of speech more than on a word: of a neuron's top {a.ffn.k} trigger words, "
         f"on average {100 * a.ffn.pos_share.min():.0f}-{100 * a.ffn.pos_share.max():.0f}% "
         f"share a part of speech (random words {100 * a.ffn.chance_pos:.0f}%) and "
         f"{100 * a.ffn.word_share.min():.0f}-{100 * a.ffn.word_share.max():.0f}% are one "
         f"word (random {100 * a.ffn.chance_word:.0f}%)."],
    ]


def encoder_analysis_report(a, title=None):
    """The HTML report (an explain.html.Report) of an EncoderAnalysis: the
    answers, the syntactic heads, the [CLS]/[SEP] share per head, layer
    similarity, the FFN neurons, and the measures skipped with the reason."""
    L = a.num_layers
    rep = H.Report(title or f"What {a.model.rsplit('/', 1)[-1]} computes, measured on "
                            f"{a.n_pairs} corpus sentences",
                   subtitle=f"{a.n_pairs} English sentences of the corpus ({a.n_words} words), "
                            f"an encoder of {L} layers x {a.num_heads} heads; every number "
                            f"below was measured on them, word by word (a word's pieces "
                            f"pooled)")
    rep.add_section("Answers, in numbers", "Each answer is worked out in a section below.",
                    H.table_html(["question", "answer"], _answers(a)), id="answers")
    rows = [[r["relation"], r["count"], f"L{r['layer']} H{r['head']} {r['direction']}",
             r["accuracy"], r["best_baseline"],
             "head" if r["accuracy"] > r["best_baseline"] else "position"]
            for r in a.syntax.table]
    rep.add_section("Syntactic heads", a.syntax.caption.replace("<eos>", "[CLS] and [SEP]"),
                    H.table_html(["relation", "count", "best head", "accuracy",
                                  "best positional baseline", "winner"], rows,
                                 number_format=".2f"), id="syntax")
    rep.add_section(
        "Where heads park: [CLS] and [SEP]",
        "Per layer and head, the share of words whose largest attention weight (words, [CLS] "
        "and [SEP] compared) goes to [CLS] or [SEP] rather than to a word: a head with "
        "nothing to do for a word parks its weight there (Clark et al. 2019).",
        H.heatmap_svg(a.noop_share, [f"layer {i}" for i in range(L)],
                      [f"head {h}" for h in range(a.num_heads)],
                      title="share of words parked on [CLS]/[SEP]", vmin=0, vmax=1, fmt=".2f"),
        id="noop")
    body = H.heatmap_svg(a.cka, a.cka_labels, a.cka_labels, title="linear CKA", vmin=0,
                         vmax=1)
    body += H.table_html(["layer", "||attention update|| / ||input||",
                          "||FFN update|| / ||input||"],
                         [[i, a.update_ratio[i, 0], a.update_ratio[i, 1]] for i in range(L)],
                         number_format=".3f")
    rep.add_section(
        "Are the layers the same function?",
        "Linear CKA (Kornblith et al. 2019) between the representations of the same words "
        "(each word's first piece) after the embeddings and after each layer: 1 = the same "
        "up to rotation and scale. Below, how large each sublayer's update is against the "
        "stream it is added to (mean over tokens).", body, id="layers")
    rows = [[x["layer"], f"n{x['neuron']}", x["pos"], x["pos_share"], ", ".join(x["triggers"])]
            for x in a.ffn.examples]
    body = H.table_html(["layer", "share of top triggers with one POS tag",
                         "share that are one word"],
                        [[i, a.ffn.pos_share[i], a.ffn.word_share[i]] for i in range(L)],
                        number_format=".2f")
    body += H.table_html(["layer", "neuron", "part of speech", "share", "top triggers"], rows,
                         number_format=".2f",
                         caption="neurons that fire on one part of speech across words")
    rep.add_section("What the feed-forward neurons fire on", a.ffn.caption, body, id="ffn")
    rep.add_section(
        "Measures skipped on an encoder-only model",
        "pytransformer analyze measures these on a translator; none applies here.",
        H.table_html(["measure", "why it is skipped"], [[k, v] for k, v in a.skipped.items()]),
        id="skipped")
    rep.add_section("How long each measure took", "Wall-clock seconds on this machine.",
                    H.table_html(["measure", "seconds"], [[k, v] for k, v in a.seconds.items()],
                                 number_format=".2f"), id="timing")
    return rep
