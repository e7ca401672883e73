"""How gradient descent made related words align: one sentence through the
training snapshots a model file carries (see checkpoint.compress_snapshot),
from step 0 to the end.

    lv = learning_view(translator, "The black cat drank the milk")
    lv.steps          # [0, 30, 100, 300, 1000, 3000, 6000]
    lv.pairs[0]       # {'kind': 'encoder', 'label': 'black \u2192 cat', ...}
    lv.weights[0]     # that pair's attention weight at each step
    lv.aer            # the sentence's alignment error rate at each step

Related pairs are the ones the corpus's gold annotation gives for the
sentence: in encoder self-attention, each word looking at its syntactic
head (an adjective at its noun, a subject or object at its verb: the
article's "milk" and "drank"); in cross-attention, each Spanish word, while
it is written, looking at its gold-aligned English word. Each pair is
followed in one head, the one where the finished model gives it the most
weight, at every snapshot step. A sentence the corpus does not annotate has
no gold: its cross-attention pairs are then the finished model's own
alignment, and no AER is given.
"""
import dataclasses

import numpy as np

from . import html as H
from .alignment import aer, alignment_from_weights
from .trace import trace
from .views import _Result

__all__ = ["LearningView", "learning_section", "learning_view", "steps_chart_svg"]

# encoder pairs: a word and its syntactic head, for these relations (det and
# punct are left out: every noun has a determiner, and they say little)
_RELATIONS = ("adj", "subj", "obj", "attr", "prep", "obl", "neg", "aux")
_NO_SNAPSHOTS = ("This model file has no training snapshots (it was trained with "
                 "--no-snapshots, or before training kept them): retrain it with `pytransformer "
                 "train` to see how its attention formed.")


@dataclasses.dataclass
class LearningView(_Result):
    """A sentence through a model's training snapshots.

    steps (N,): the snapshot steps. target: the Spanish sentence read
    (teacher-forced) at every step; gold: whether it is the corpus's
    annotated translation. pairs: P dicts {kind ("encoder" or "cross"),
    label, why, query, key (positions), layer, head}; scores (P, N): the
    pair's Q.K/sqrt(d) in its head at each step; weights (P, N): its
    attention weight. aer (N,): the sentence's AER at each step for the
    head the finished model aligns best (aer_where says which), best_aer
    (N,): the lowest over every head and layer at that step, layer_aer
    (N, L): the lowest over the heads of each cross-attention layer (None
    without gold); summary: one sentence saying what changed; caption."""
    steps: list
    target: str
    gold: bool
    pairs: list
    scores: np.ndarray
    weights: np.ndarray
    aer: object
    best_aer: object
    aer_where: str
    summary: str
    caption: str = ""
    layer_aer: object = None


def _encoder_pairs(gold):
    """(query, key, relation) of the gold dependencies worth following."""
    if gold is None or gold.deps is None:
        return []
    return [(d, h, rel) for d, h, rel in gold.deps if rel in _RELATIONS]


def _best_head(t, kind, i, j):
    """(layer, head) where the trace gives query i the most weight on key j."""
    best = (-1.0, 0, 0)
    for layer in range(t.num_layers(kind)):
        w = t.attention(kind, layer).weights[0, :, i, j]
        h = int(np.argmax(w))
        if w[h] > best[0]:
            best = (float(w[h]), layer, h)
    return best[1], best[2]


def _sentence_aer(t, links, n_src, n_tgt):
    """(AER per (layer, head), as an (L, H) array) of one traced sentence."""
    L = t.num_layers("cross")
    H_ = t.attention("cross", 0).num_heads
    out = np.zeros((L, H_))
    for layer in range(L):
        w = t.attention("cross", layer).weights[0]
        for h in range(H_):
            pred = alignment_from_weights(w[h], n_src, n_tgt)
            out[layer, h] = aer([pred], [links])
    return out


def learning_view(translator, sentence, translation=None, gold=None):
    """The LearningView of `sentence` through `translator`'s training
    snapshots (Translator.snapshot_models), or None when it has none.
    `gold` is the corpus pair of the sentence (default: report.gold_links);
    with gold, the gold translation is read at every step, else
    `translation` (default: the finished model's own)."""
    from .report import gold_links

    models = translator.snapshot_models()
    if not models:
        return None
    if gold is None:
        gold = gold_links(sentence)
    use_gold = gold is not None and gold.align is not None
    target = gold.target if use_gold else translation
    final = trace(translator, sentence, target)
    target = " ".join(final.tgt_out_tokens[0][:-1])
    src = final.src_tokens[0][:-1]
    tgt = final.tgt_out_tokens[0][:-1]
    pairs = []
    for d, h, rel in _encoder_pairs(gold if use_gold else None):
        layer, head = _best_head(final, "encoder", d, h)
        pairs.append(dict(kind="encoder", label=f"{src[d]} \u2192 {src[h]}",
                          why=f"{rel}: a word and its syntactic head", query=d, key=h,
                          layer=layer, head=head))
    if use_gold:
        links, why = gold.links(), "gold alignment"
    else:
        w = final.attention("cross", -1).weights[0].mean(0)
        links = alignment_from_weights(w, len(src), len(tgt))
        why = "the finished model's alignment"
    for i, j in sorted(links, key=lambda x: x[1]):
        layer, head = _best_head(final, "cross", j, i)
        pairs.append(dict(kind="cross", label=f"{tgt[j]} \u2192 {src[i]}", why=why, query=j,
                          key=i, layer=layer, head=head))
    steps = [s for s, _ in models]
    scores = np.zeros((len(pairs), len(steps)))
    weights = np.zeros((len(pairs), len(steps)))
    aers = []
    for n, (_, model) in enumerate(models):
        t = final if model is translator else trace(model, sentence, target)
        for p, pair in enumerate(pairs):
            rec = t.attention(pair["kind"], pair["layer"])
            scores[p, n] = rec.scores[0, pair["head"], pair["query"], pair["key"]]
            weights[p, n] = rec.weights[0, pair["head"], pair["query"], pair["key"]]
        if use_gold:
            aers.append(_sentence_aer(t, links, len(src), len(tgt)))
    aer_steps = best_aer = layer_aer = None
    where = ""
    if use_gold:
        last = aers[-1]
        layer, head = np.unravel_index(int(np.argmin(last)), last.shape)
        aer_steps = np.array([a[layer, head] for a in aers])
        best_aer = np.array([a.min() for a in aers])
        layer_aer = np.array([a.min(1) for a in aers])
        where = f"cross-attention layer {layer} head {head}"
    lv = LearningView(steps=steps, target=target, gold=use_gold, pairs=pairs, scores=scores,
                      weights=weights, aer=aer_steps, best_aer=best_aer, aer_where=where,
                      summary="", layer_aer=layer_aer)
    lv.summary = _summary(lv)
    lv.caption = _caption(lv, models[-1][1] is translator)
    return lv


def _biggest_change(steps, values):
    """(from step, to step) of the largest change between consecutive snapshots."""
    d = np.abs(np.diff(values))
    k = int(np.argmax(d))
    return steps[k], steps[k + 1]


def _summary(lv):
    """One sentence: what changed from the first snapshot to the last."""
    first, last = lv.steps[0], lv.steps[-1]
    parts = []
    cross = [p for p, pair in enumerate(lv.pairs) if pair["kind"] == "cross"]
    enc = [p for p, pair in enumerate(lv.pairs) if pair["kind"] == "encoder"]
    if cross:
        m = lv.weights[cross].mean(0)
        a, b = _biggest_change(lv.steps, m)
        parts.append(f"the {'gold-aligned' if lv.gold else 'aligned'} pairs' mean "
                     f"cross-attention weight went from {m[0]:.2f} to {m[-1]:.2f}, most of "
                     f"it between steps {a} and {b}")
    if enc:
        p = max(enc, key=lambda k: lv.weights[k, -1] - lv.weights[k, 0])
        parts.append(f"\u201c{lv.pairs[p]['label']}\u201d in encoder self-attention from "
                     f"{lv.weights[p, 0]:.2f} to {lv.weights[p, -1]:.2f} (score "
                     f"{lv.scores[p, 0]:+.2f} to {lv.scores[p, -1]:+.2f})")
    if lv.aer is not None:
        parts.append(f"the alignment error rate from {lv.aer[0]:.2f} to {lv.aer[-1]:.2f}")
    if not parts:
        return f"No related pairs to follow in this sentence between steps {first} and {last}."
    text = f"From step {first} to step {last}, " + "; ".join(parts) + "."
    if lv.layer_aer is not None:
        text += (" Layer by layer (the best head of each cross-attention layer), the AER went "
                 + ", ".join(f"from {a[0]:.2f} to {a[-1]:.2f} in layer {k}"
                             for k, a in enumerate(lv.layer_aer.T)) + ".")
    return text


def _caption(lv, exact_last):
    read = ("the corpus's translation" if lv.gold else "the finished model's translation")
    text = (f"The model file keeps the weights of {len(lv.steps)} steps of its training "
            f"(steps {', '.join(map(str, lv.steps))}; int8 copies"
            + (", the last step the model itself" if exact_last else "")
            + f"). Each was run on this sentence, reading {read} \u201c{lv.target}\u201d "
            f"(teacher-forced, so every step reads the same words). For each related pair: "
            f"its score Q\u00b7K/\u221ad (the article's factor) and its attention weight, in "
            f"the head where the finished model gives that pair the most weight.")
    cross = [p for p in lv.pairs if p["kind"] == "cross"]
    if cross:
        w, e = cross[0]["label"].split(" \u2192 ")
        text += (f" A cross-attention pair \u201c{w} \u2192 {e}\u201d is the position "
                 f"writing \u201c{w}\u201d looking at \u201c{e}\u201d.")
    if lv.aer is not None:
        text += (f" AER: the alignment error rate of this sentence against its gold "
                 f"alignment (0 = every Spanish word's most attended English word is the gold "
                 f"one), for {lv.aer_where} (the finished model's best) and for the best head "
                 f"at each step.")
    else:
        text += (" The corpus has no gold alignment for this sentence, so no AER is given; the "
                 "cross-attention pairs are the finished model's own alignment (last layer, "
                 "heads averaged).")
    return text + "\n\n" + lv.summary


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#7f7f7f", "#bcbd22")


def steps_chart_svg(steps, series, title, ylabel, width=620, height=280, dashed=(),
                    xlabel="training step (snapshots, log-spaced)"):
    """Lines over training snapshots as inline SVG (a str): one point per
    step, equally spaced and labelled with the step (the steps are
    log-spaced), y from 0 to 1; series {name: N values} (NaN: a gap), the
    value of each point on hover; the series named in `dashed` are drawn
    black and dashed (e.g. an error rate among weights); `xlabel` under
    the axis."""
    steps = list(steps)
    n = len(steps)
    legend_w = 16 + 7 * max((len(k) for k in series), default=4)
    left, top, right, bottom = 48, 26, legend_w + 14, 40
    pw, ph = width - left - right, height - top - bottom

    def X(k):
        return left + (pw * k / (n - 1) if n > 1 else pw / 2)

    def Y(v):
        return top + ph * (1 - v)

    out = [f'<svg class="pt-steps" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
           f'font-size="11"><title>{H.escape(title)}</title>',
           f'<text x="{left}" y="16" font-weight="bold">{H.escape(title)}</text>']
    for v in (0, 0.25, 0.5, 0.75, 1):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" '
                   f'stroke="#e4e4e4"/><text x="{left - 6}" y="{Y(v) + 4:.1f}" '
                   f'text-anchor="end">{v:g}</text>')
    for k, s in enumerate(steps):
        out.append(f'<text x="{X(k):.1f}" y="{top + ph + 16}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" '
               f'fill="#555">{H.escape(xlabel)}</text>')
    out.append(f'<text transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" fill="#555">{H.escape(ylabel)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
               f'stroke="#333"/>')
    for c, (name, ys) in enumerate(series.items()):
        col = _COLOURS[c % len(_COLOURS)] if name not in dashed else "#000"
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        pts = [(X(k), Y(float(v))) for k, v in enumerate(ys) if np.isfinite(v)]
        out.append(f'<g class="pt-series" data-name="{H.escape(name)}">'
                   f'<polyline fill="none" stroke="{col}" stroke-width="2"{dash} points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
        for k, v in enumerate(ys):
            if np.isfinite(v):
                out.append(f'<circle cx="{X(k):.1f}" cy="{Y(float(v)):.1f}" r="3" fill="{col}">'
                           f'<title>{H.escape(name)} at step {steps[k]}: {float(v):.3f}'
                           f'</title></circle>')
        ly = top + 8 + 16 * c
        out.append(f'</g><line x1="{left + pw + 10}" x2="{left + pw + 22}" y1="{ly}" y2="{ly}" '
                   f'stroke="{col}" stroke-width="2"{dash}/><text x="{left + pw + 26}" '
                   f'y="{ly + 4}">{H.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def learning_section(rep, translator, sentence, v):
    """Add the section "How did gradient descent make related words
    align?" to the sentence report `rep` (an html.Report), from the views
    `v` of report.sentence_views: the related pairs' scores and weights
    and the AER at every snapshot step, as a table and two charts, and one
    sentence saying what changed. A model without snapshots gets the
    section with a one-line note."""
    title = "How did gradient descent make related words align?"
    lv = learning_view(translator, sentence, gold=v.get("gold"),
                       translation=" ".join(v["trace"].tgt_out_tokens[0][:-1]))
    if lv is None:
        rep.add_section(title, _NO_SNAPSHOTS, "", id="learning")
        return None
    rows = []
    for p, pair in enumerate(lv.pairs):
        kind = "encoder self-attention" if pair["kind"] == "encoder" else "cross-attention"
        rows.append([pair["label"], f"{pair['why']}; {kind} layer {pair['layer']} head "
                                    f"{pair['head']}"]
                    + [f"{lv.scores[p, n]:+.2f} ({lv.weights[p, n]:.2f})"
                       for n in range(len(lv.steps))])
    if lv.aer is not None:
        rows.append(["AER", f"{lv.aer_where} (lower is better)"]
                    + [f"{x:.2f}" for x in lv.aer])
        rows.append(["best AER", "the best head at each step"] + [f"{x:.2f}" for x in lv.best_aer])
        for layer in range(lv.layer_aer.shape[1]):
            rows.append([f"AER, layer {layer}", f"the best head of cross-attention layer "
                                                f"{layer} at each step"]
                        + [f"{x:.2f}" for x in lv.layer_aer[:, layer]])
    body = H.table_html(["pair", "why it is related; the head followed"]
                        + [f"step {s}" for s in lv.steps], rows,
                        caption="score Q\u00b7K/\u221ad (attention weight) at each step")
    enc = {pair["label"]: lv.weights[p] for p, pair in enumerate(lv.pairs)
           if pair["kind"] == "encoder"}
    if enc:
        body += steps_chart_svg(lv.steps, enc, "encoder self-attention: a word on its head",
                                "attention weight")
    cross = {pair["label"]: lv.weights[p] for p, pair in enumerate(lv.pairs)
             if pair["kind"] == "cross"}
    if lv.aer is not None:
        cross["AER"] = lv.aer
    if cross:
        body += steps_chart_svg(lv.steps, cross, "cross-attention: Spanish word on English word"
                                + (" (and AER)" if lv.aer is not None else ""),
                                "weight" + (" / AER" if lv.aer is not None else ""),
                                dashed=("AER",))
    rep.add_section(title, lv.caption, body, id="learning")
    return lv
