"""The explain report of one sentence: every view of pytransformer.explain
on one translation, as one self-contained HTML page (and PNG figures).

    rep = sentence_report(translator, "The black cat drank the milk")
    rep.save("report.html")

The report is assembled from the measures' own results (their arrays and
captions); nothing here computes a number the views do not return.
"""

import numpy as np

from . import html as H
from .patch import counterfactual
from .trace import trace
from .ffn import value_promotions
from .learning import learning_section
from .lens import logit_lens
from .views import TERM_NAMES, factor_view, mixing_by_layer, position_split, value_mixing
from .walkthrough import compare_keys, walkthrough_data, walkthrough_html
from .failure import failure_section
from .ffn import ffn_section

__all__ = ["default_donor", "encoder_report", "encoder_views", "gold_links", "save_sentence_pngs", "sentence_report",
           "sentence_views"]

_COLOURS = ("red", "blue", "white", "black", "green", "yellow", "small", "big", "old", "new")


def gold_links(sentence):
    """The corpus's gold alignment of `sentence` as {(source index, target
    index)} when it is one of the seed sentences or a generated pair known
    to the grammar, else None (the report then shows no gold)."""
    from pytransformer.data import seed_pairs, tokenize
    toks = tuple(tokenize(sentence))
    for p in seed_pairs():
        if tuple(p.src) == toks:
            return p
    return None


def default_donor(translator, sentence):
    """A counterfactual source for `sentence`: the same sentence with its
    first colour/size adjective swapped for another one the model knows
    (None when it has none)."""
    from pytransformer.data import tokenize
    toks = tokenize(sentence)
    for i, w in enumerate(toks):
        if w in _COLOURS:
            for other in _COLOURS:
                if other != w and other in translator.src_vocab:
                    return " ".join(toks[:i] + [other] + toks[i + 1:]), i
    return None


def _special(token):
    """<eos>, <bos>, [CLS], [SEP] and the like."""
    return len(token) > 2 and ((token[0] == "<" and token[-1] == ">")
                               or (token[0] == "[" and token[-1] == "]"))


def _most_focused_head(rec, rows, cols, b=0):
    """(head, query row) of the sharpest non-special attention row."""
    w = rec.weights[b, :, :len(rows), :len(cols)]
    best = (-1.0, 0, 0)
    for h in range(w.shape[0]):
        for i, r in enumerate(rows):
            if _special(r):
                continue
            j = int(w[h, i].argmax())
            if _special(cols[j]):
                continue
            if w[h, i, j] > best[0]:
                best = (float(w[h, i, j]), h, i)
    return best[1], best[2]


def sentence_views(translator, sentence, translation=None, donor=None):
    """Every per-sentence result the report shows, as a dict: trace,
    factor, position (encoder/decoder), mixing (encoder layer 0 and the
    last cross-attention), counterfactual (or None; donor=False skips it),
    gold (a Pair or None)."""
    t = trace(translator, sentence, translation)
    out = {"trace": t, "gold": gold_links(sentence)}
    cross = t.attention("cross", -1)
    rows, cols = t.tokens("cross")
    h, i = _most_focused_head(cross, rows, cols)
    out["factor"] = factor_view(t, "cross", cross.layer, h, i)
    out["position"] = {k: position_split(t, k) for k in ("encoder", "decoder")}
    out["mixing"] = [value_mixing(t, "encoder", 0), value_mixing(t, "cross", cross.layer)]
    if donor is False:                                   # no counterfactual wanted
        out["counterfactual"] = None
    elif donor is None:
        found = default_donor(translator, sentence)
        out["counterfactual"] = (counterfactual(translator, sentence, found[0], found[1])
                                 if found else None)
    else:
        out["counterfactual"] = counterfactual(translator, sentence, donor,
                                               _first_difference(sentence, donor))
    return out


def _first_difference(a, b):
    from pytransformer.data import tokenize
    ta, tb = tokenize(a), tokenize(b)
    if len(ta) != len(tb):
        raise ValueError(f"donor: must have as many words as the sentence "
                         f"({len(tb)} vs {len(ta)}) so positions correspond")
    for i, (x, y) in enumerate(zip(ta, tb)):
        if x != y:
            return i
    raise ValueError("donor: is the same sentence; change one word")


def _encoder_only(model):
    """Whether `model` is a pretrained encoder (no translation) rather than
    a translator."""
    return not hasattr(model, "encode_sources") and hasattr(model, "trace_inputs")


def encoder_views(encoder, sentence):
    """The per-sentence results of an encoder-only model, as a dict: trace,
    factor (the most focused head of the last layer), mixing (first and last
    layer)."""
    t = trace(encoder, sentence)
    toks = t.src_tokens[0]
    L = t.num_layers("encoder")
    h, i = _most_focused_head(t.attention("encoder", L - 1), toks, toks)
    return {"trace": t, "factor": factor_view(t, "encoder", L - 1, h, i),
            "mixing": [value_mixing(t, "encoder", 0), value_mixing(t, "encoder", L - 1)]}


def encoder_report(encoder, sentence):
    """The HTML report of one sentence through an encoder-only model (a
    pretrained BERT sentence encoder: pytransformer.pretrained.load())."""
    v = encoder_views(encoder, sentence)
    t = v["trace"]
    toks = t.src_tokens[0]
    L = t.num_layers("encoder")
    rep = H.Report(f"Inside {type(encoder.model).__name__} on \u201c{sentence}\u201d")
    rep.add_section(
        "The sentence and the model",
        f"The encoder ({L} layers, {t.attention('encoder', 0).num_heads} heads) reads the "
        f"sentence as these word pieces; every number below was recorded while it did, "
        f"through hooks on its modules.",
        H.table_html(["text", "word pieces"], [[sentence, " ".join(toks)]]), id="summary")
    rep.add_section(
        "Who attends to whom (head view)",
        "Pick a layer and a head. Each line joins a word piece on the left (the query) to one "
        "on the right (the key); the darker the line, the larger the attention weight. Hover "
        "a word to see only its lines.",
        H.head_view_html(H.head_view_data(t), include_script=False), id="heads")
    h, i = _most_focused_head(t.attention("encoder", L - 1), toks, toks)
    rep.add_section(
        "The article's walk-through: from Q\u00b7K to the output",
        "Choose a layer, a head and a query word piece (or click a row). 1: the factor "
        "matrix, every query's score for every key, Q\u00b7K / \u221ad; 2: the chosen row "
        "through the softmax; 3: its output as the weighted sum of the value vectors.",
        walkthrough_html(walkthrough_data(t), initial={"kind": "encoder", "layer": L - 1,
                                                        "head": h, "query": i},
                         include_script=False), id="walkthrough")
    fv = v["factor"]
    rep.add_section(f"How a score is built: {fv.title}", fv.caption, _factor_body(fv),
                    id="factor")
    body = ""
    for vm in v["mixing"]:
        body += _mixing_body(vm, vm.rows)
    body += _mixing_layers(t)
    rep.add_section("Weights vs what the values carry (value mixing)",
                    "Left: the attention weights; right: how much of each output each key "
                    "word really contributes (the norm of weight x transformed value vector). "
                    "Then the same measures for every layer.",
                    body, id="mixing")
    rep.add_section(
        "What the feed-forward layers fire on",
        "For each word piece and layer, the hidden neuron of the feed-forward block that "
        "fires most there, with its activation (GELU output).",
        _ffn_table(t, encoder, "encoder"), id="ffn")
    return rep


def _factor_body(fv):
    dims = [int(c) for c in fv.top_dims]
    body = H.heatmap_svg(fv.products[:, dims], fv.key_words, [f"dim {c}" for c in dims],
                         title=f"q[c]*k[c]/sqrt(d) for the query '{fv.query_word}'")
    j = fv.key_words.index(fv.key_word)
    body += H.table_html(["dimension", "q", "k", "q*k/sqrt(d)", "agrees"],
                         [[c, fv.q[c], fv.k[c], fv.products[j, c],
                           "yes" if fv.q[c] * fv.k[c] > 0 else "no"] for c in dims])
    body += H.bar_chart_svg(fv.key_words, fv.scores.tolist(),
                            title=f"scores of '{fv.query_word}' for every key")
    return body


_KIND_NAMES = {"encoder": "encoder self-attention", "decoder": "decoder masked self-attention",
               "cross": "cross-attention"}


def _mixing_layers(t):
    """Every layer's value mixing in one paragraph and one table (a str)."""
    rows = mixing_by_layer(t)
    lines = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        ks = [r for r in rows if r["kind"] == kind]
        lines.append(f"{_KIND_NAMES.get(kind, kind)}: the attention output is "
                     + ", ".join(f"{100 * r['ratio_median']:.0f}%" for r in ks)
                     + f" of its input's norm (median over the words) in layers 0 to "
                     f"{len(ks) - 1}")
    worst = max(rows, key=lambda r: r["moved"])
    text = ("Every layer, the same measures: how long the attention output is against the "
            "vector it is added to, and whether the weights tell where it comes from. "
            + "; ".join(lines) + f". The weights mislead most in "
            f"{_KIND_NAMES.get(worst['kind'], worst['kind'])} layer {worst['layer']}: up to "
            f"{worst['moved']:.0%} of a word's share moves between keys when weights are "
            f"replaced by contribution norms; its most attended key \u201c{worst['key']}\u201d "
            f"has {worst['weight']:.0%} of the weight and {worst['contribution']:.0%} of the "
            f"contribution norm.")
    table = H.table_html(
        ["attention", "layer", "most attended key", "its weight share",
         "its contribution share", "rows where weight and contribution agree",
         "largest share moved", "||output|| / ||input|| (median)", "min", "max"],
        [[_KIND_NAMES.get(r["kind"], r["kind"]), r["layer"], r["key"],
          f"{r['weight']:.0%}", f"{r['contribution']:.0%}", f"{r['agreement']:.0%}",
          f"{r['moved']:.0%}", f"{r['ratio_median']:.0%}", f"{r['ratio_min']:.0%}",
          f"{r['ratio_max']:.0%}"] for r in rows],
        caption="Value mixing in every layer (the most attended key: weights summed over "
                "the sentence's words)")
    return f"<h3>Every layer</h3><p>{H.escape(text)}</p>" + table


def _mixing_body(vm, rows):
    body = f"<h3>{H.escape(vm.title)}</h3>"
    body += H.heatmap_svg(vm.weight_share, rows, vm.cols,
                          title="attention weight (mean of heads)", vmin=0, vmax=1)
    body += H.heatmap_svg(vm.norm_share, rows, vm.cols,
                          title="share of the contribution norm", vmin=0, vmax=1)
    body += H.bar_chart_svg(rows, vm.output_ratio.tolist(),
                            title="how much attention adds: ||output|| / ||input||, per word",
                            fmt=".2f", reference=1.0, reference_label="as long as its input")
    return body + f"<p>{H.escape(vm.caption)}</p>"


def sentence_report(translator, sentence, translation=None, donor=None):
    """The HTML report (an explain.html.Report) of one sentence. A
    pretrained encoder (anything without encode_sources but with
    trace_inputs) gets :func:`encoder_report`."""
    if _encoder_only(translator):
        if translation is not None or donor not in (None, False):
            raise ValueError("translation/donor: an encoder-only model has no translation")
        return encoder_report(translator, sentence)
    v = sentence_views(translator, sentence, translation, donor)
    rep = H.Report(f"Inside the translation of \u201c{sentence}\u201d")
    for section in _SENTENCE_SECTIONS:
        section(rep, translator, sentence, v)
    learning_section(rep, translator, sentence, v)
    return rep


def _translation(v):
    return " ".join(v["trace"].tgt_out_tokens[0][:-1])


def _summary_section(rep, translator, sentence, v):
    cfg = translator.model.config
    t = v["trace"]
    unknown = [w for w in t.src_tokens[0] + t.tgt_out_tokens[0] if w.startswith("<unk:")]
    note = ""
    if unknown:
        note = (f"\n\nWords outside the model's vocabulary, which it reads as <unk> (so "
                f"nothing below can be about their meaning), are shown as <unk:word>: "
                f"{', '.join(unknown)}.")
    rep.add_section(
        "The sentence and the model",
        f"The model ({cfg.num_encoder_layers} encoder and {cfg.num_decoder_layers} decoder "
        f"layers, {cfg.nhead} heads of {cfg.d_model // cfg.nhead} dimensions, "
        f"d_model {cfg.d_model}) translates the sentence as shown. Every number below was "
        f"recorded while it did, through hooks on its modules." + note,
        H.table_html(["English", "Spanish (the model's translation)"],
                     [[sentence, _translation(v)]]), id="summary")


_QUESTIONS = [
    ("failure", "Where does the translation leave the reference?"),
    ("heads", "What does each head attend to?"),
    ("walkthrough", "How does Q\u00b7K build the scores, and the output a weighted sum of "
                    "the values? (the article's walk-through, any head and word)"),
    ("cross", "Where does cross-attention align the Spanish words with the English ones?"),
    ("factor", "How do the Q\u00b7K dot products produce the scores?"),
    ("positions", "Does a head attend by word or by position?"),
    ("mixing", "How is the output a weighted sum of value vectors, and is the weight "
               "the whole story?"),
    ("ffn", "What does each layer's feed-forward part do to this sentence, and is it a "
            "different function in each layer?"),
    ("lens", "Does each layer compute something different? (the logit lens)"),
    ("counterfactual", "Where does the model keep what a word means?"),
    ("learning", "How did gradient descent make related words align?"),
]


def _questions_section(rep, translator, sentence, v):
    have = {s["id"] for s in rep.sections}
    items = "".join(f'<li><a href="#{i}">{H.escape(q)}</a></li>' for i, q in _QUESTIONS
                    if (i != "counterfactual" or v["counterfactual"] is not None)
                    and (i != "failure" or i in have))
    rep.add_section(
        "Questions this page answers",
        "Each section answers one question about why the Transformer works, with the "
        "numbers measured on this sentence. `pytransformer analyze` answers them over a "
        "whole test set (alignment error rates, syntactic heads, what FFN neurons fire on, "
        "how similar the layers are, which heads matter).",
        f"<ol>{items}</ol>", id="questions")


def _heads_section(rep, translator, sentence, v):
    rep.add_section(
        "Who attends to whom (head view)",
        "Pick the kind of attention, a layer and a head. Each line joins a word on the left "
        "(the one asking: the query) to a word on the right (the one answering: the key); "
        "the darker the line, the larger the attention weight. Encoder self-attention links "
        "English words to English words; the decoder's masked self-attention links each "
        "Spanish word to the ones before it; cross-attention links each Spanish position to "
        "the English words it reads. A decoder position is labelled reading \u2192 writing: "
        "\u201cla \u2192 bola\u201d has read \u201cla\u201d and writes \u201cbola\u201d. Hover a "
        "word to see only its lines.",
        H.head_view_html(dict(H.head_view_data(v["trace"], kinds=["cross", "encoder", "decoder"]),
                              initial={"kind": "cross", "layer": -1, "head": "all"}),
                         include_script=False), id="heads")


def _article_check(t):
    """The article's example, when the sentence has its words: does
    "milk" score "drank" above "black" (and "cat") in encoder
    self-attention? (text, initial view) or (None, None)."""
    words = [w.lower() for w in t.tokens("encoder")[0]]
    if not {"milk", "drank", "black"} <= set(words):
        return None, None
    c = compare_keys(t, "encoder", "milk", "drank", "black")
    sd, wd = np.asarray(c["score_diff"]), np.asarray(c["weight_diff"])
    L, H = sd.shape
    per_layer = ", ".join(f"layer {layer}: {int((sd[layer] > 0).sum())} of {H}"
                          for layer in range(L))
    layer, head = np.unravel_index(int(np.argmax(wd)), wd.shape)
    text = (f"The article's example: does \u201cmilk\u201d score \u201cdrank\u201d above "
            f"\u201cblack\u201d? Heads of encoder self-attention where it does, "
            f"{per_layer}. The largest weight gap is in layer {layer}, head {head}: "
            f"{wd[layer, head]:+.2f} of \u201cmilk\u201d's attention more on \u201cdrank\u201d "
            f"than on \u201cblack\u201d (shown first below).")
    if "cat" in words:
        sc = np.asarray(compare_keys(t, "encoder", "milk", "drank", "cat")["score_diff"])
        text += (f" And \u201cdrank\u201d above \u201ccat\u201d, as the article expects: "
                 f"{int((sc[1:] > 0).sum())} of {(L - 1) * H} heads after layer 0.")
    if L > 1 and (sd[0] > 0).sum() < H / 2:
        text += (" In layer 0 most heads send \u201cmilk\u201d's attention elsewhere "
                 "(pick layer 0 to see where): the link appears in the later layers.")
    return text, {"kind": "encoder", "layer": int(layer), "head": int(head),
                  "query": words.index("milk")}


def _factor_layers(t, kind="encoder", b=0):
    """One paragraph: in each layer of `kind`, the largest entry of any
    head's factor matrix Q.K^T/sqrt(d) between two different words (special
    tokens left out), with its weight. None when the sentence has fewer
    than two words."""
    rows, cols = t.tokens(kind, b)
    words = [i for i, w in enumerate(rows) if not _special(w)]
    keys = [j for j, w in enumerate(cols) if not _special(w)]
    if len(words) < 2 or len(keys) < 2:
        return None
    parts = []
    for layer in range(t.num_layers(kind)):
        rec = t.attention(kind, layer)
        best = None
        for h in range(rec.num_heads):
            for i in words:
                for j in keys:
                    if j == i or not rec.allowed[b, h, i, j]:
                        continue
                    sc = float(rec.scores[b, h, i, j])
                    if best is None or sc > best[0]:
                        best = (sc, h, i, j)
        if best is None:
            continue
        sc, h, i, j = best
        pair = (f"head {h}, \u201c{rows[i]}\u201d \u2192 \u201c{cols[j]}\u201d {sc:+.2f} "
                f"(weight {float(rec.weights[b, h, i, j]):.2f})")
        parts.append(f"layer {layer}: {pair}" if sc >= 0 else
                     f"layer {layer}: every score between two different words is negative, "
                     f"the largest {pair}")
    return (f"Layer by layer, the largest factor between two different words in any head of "
            f"{_KIND_NAMES.get(kind, kind)} (query \u2192 key, score Q\u00b7K/\u221ad, and "
            f"the weight the softmax gives it): " + "; ".join(parts) + ".")


def _walkthrough_section(rep, translator, sentence, v):
    t = v["trace"]
    text, initial = _article_check(t)
    per_layer = _factor_layers(t)
    if per_layer:
        text = per_layer if not text else text + "\n\n" + per_layer
    if initial is None:
        toks = t.tokens("encoder")[0]
        last = t.num_layers("encoder") - 1
        h, i = _most_focused_head(t.attention("encoder", last), toks, toks)
        initial = {"kind": "encoder", "layer": last, "head": h, "query": i}
    caption = ("The article works one head through by hand; here is the same on this model, "
               "with the numbers it computed. Choose the kind of attention, a layer, a head "
               "and a query word (or click a row of the matrix). 1: every query word's score "
               "for every key word, the dot product of their query and key vectors divided "
               "by \u221ad (the article's \u201cfactor\u201d matrix). 2: the chosen row "
               "through the softmax: the attention weights. 3: the word's output as the sum "
               "of the key words' value vectors, each times its weight.")
    if text:
        caption += "\n\n" + text
    rep.add_section("The article's walk-through: from Q\u00b7K to the output", caption,
                    walkthrough_html(walkthrough_data(t), initial=initial,
                                     include_script=False), id="walkthrough")


def _cross_section(rep, translator, sentence, v):
    t = v["trace"]
    rows_c, cols_c = t.tokens("cross")
    gold = v["gold"]
    highlight = None
    if gold is not None and gold.tgt == tuple(t.tgt_out_tokens[0][:-1]):
        highlight = {(j, i) for i, j in gold.links()}       # (row = target, col = source)
    maps, agree = [], []
    for layer in range(t.num_layers("cross")):
        w = t.attention("cross", layer).weights[0].mean(0)[:len(rows_c), :len(cols_c)]
        maps.append(H.heatmap_svg(w, rows_c, cols_c,
                                  title=f"layer {layer} (mean of heads)", vmin=0, vmax=1,
                                  highlight=highlight, highlight_label="gold alignment"))
        if highlight is not None:       # words (not <eos>) whose top source word is gold
            words = w[:-1, :-1]
            hits = sum((r, int(words[r].argmax())) in highlight for r in range(len(words)))
            agree.append(f"layer {layer}: {hits}/{len(words)}")
    cap = ("Row: a decoder position, reading \u2192 writing (\u201cla \u2192 bola\u201d has "
           "read \u201cla\u201d and writes \u201cbola\u201d); column: the English word. Each row "
           "is that position's cross-attention, averaged over heads.")
    if highlight is not None:
        cap += (" Outlined cells are the corpus's gold alignment. Target words whose most "
                "attended source word is gold-aligned: " + ", ".join(agree) + ".")
    rep.add_section("Cross-attention: where each Spanish word looks", cap, "".join(maps),
                    id="cross")


def _factor_section(rep, translator, sentence, v):
    fv = v["factor"]
    rep.add_section(f"How a score is built: {fv.title}", fv.caption, _factor_body(fv),
                    id="factor")


def _positions_section(rep, translator, sentence, v):
    tables = []
    for kind, ps in v["position"].items():
        nh = ps.share[TERM_NAMES[0]].shape[0]
        tables.append(H.table_html(["head"] + list(TERM_NAMES),
                                   [[h] + [f"{100 * ps.share[n][h]:.0f}%" for n in TERM_NAMES]
                                    for h in range(nh)], caption=ps.title))
    rep.add_section("Words or positions? The first layer's scores, split exactly",
                    v["position"]["encoder"].caption, "".join(tables), id="positions")


def _mixing_section(rep, translator, sentence, v):
    t = v["trace"]
    body = ""
    for vm in v["mixing"]:
        body += _mixing_body(vm, vm.rows)
    body += _mixing_layers(t)
    rep.add_section("Weights vs what the values carry (value mixing)",
                    "Left: the attention weights; right: how much of each output each key "
                    "word really contributes, measured as the norm of weight x transformed "
                    "value vector. Rows of cross-attention are decoder positions, reading "
                    "\u2192 writing. Then the same measures for every layer.", body,
                    id="mixing")


def _lens_section(rep, translator, sentence, v):
    lens = logit_lens(translator, sentence, _translation(v))
    lrows = [[f"decoder layer {i}"] + [f"{w} ({p:.2f})" for w, p in zip(lens.words[i],
                                                                         lens.probs[i])]
             for i in range(len(lens.words))]
    rep.add_section(
        "The logit lens: the translation read off each decoder layer",
        lens.caption,
        H.table_html(["read after"] + [f"{a} \u2192 {b}" for a, b in zip(lens.inputs,
                                                                         lens.targets)],
                     lrows), id="lens")


def _counterfactual_section(rep, translator, sentence, v):
    cf = v["counterfactual"]
    if cf is None:
        return
    layer = cf["layer"] % translator.model.config.num_encoder_layers
    rep.add_section(
        "A counterfactual: change one word inside the encoder",
        f"The encoder's representation of '{cf['word']}' (position {cf['position']}, "
        f"output of encoder layer {layer}) was replaced by the one it computes for "
        f"'{cf['donor_word']}' in \u201c{cf['donor']}\u201d; nothing else changed. If the "
        f"translation changes only where that word is translated, the information about "
        f"the word lives in its own position at that layer.",
        H.table_html(["run", "translation"],
                     [["original", cf["before"]], ["patched", cf["after"]],
                      ["donor sentence", cf["donor_translation"]]]), id="counterfactual")


# the sentence page, section by section, in reading order
_SENTENCE_SECTIONS = (_summary_section, failure_section, _questions_section, _heads_section,
                      _walkthrough_section, _cross_section,
                      _factor_section, _positions_section, _mixing_section, ffn_section,
                      _lens_section, _counterfactual_section)


def _ffn_table(t, translator, kind):
    """Per token and layer of `kind`: the most active FFN neuron, its
    activation and the top words its value promotes."""
    net = translator.model
    toks = t.src_tokens[0] if kind == "encoder" else t.tgt_in_tokens[0]
    n = t.num_layers(kind)
    vocab = getattr(translator, "tgt_vocab", None)
    cols = []
    for layer in range(n):
        f = t.ffn(kind, layer)
        h = f.hidden[0, :len(toks)]
        top = h.argmax(-1)
        if kind == "encoder":      # encoder values never meet the output layer: no words
            cols.append([f"n{c} ({h[i, c]:.1f})" if h[i, c] > 0 else "(none fires)"
                         for i, c in enumerate(top)])
            continue
        ids, _ = value_promotions(f.layer_module.linear2.weight.data,
                                  net.generator.weight.data, top, n=3)
        cols.append([f"n{c} ({h[i, c]:.1f}) \u2192 " + ", ".join(
            vocab.id_to_token(int(k)) for k in ids[i]) if h[i, c] > 0 else "(none fires)"
            for i, c in enumerate(top)])
    rows = [[tok] + [cols[layer][i] for layer in range(n)] for i, tok in enumerate(toks)]
    title = "encoder (source words)" if kind == "encoder" else "decoder (word just read)"
    return H.table_html([title] + [f"layer {layer}" for layer in range(n)], rows,
                        caption=(f"{kind} feed-forward: strongest neuron (activation)"
                                 + (" \u2192 words its value promotes" if kind == "decoder"
                                    else "")))


def save_sentence_pngs(translator, sentence, directory, translation=None, dpi=150):
    """The report's figures as PNG files in `directory` (needs matplotlib,
    the [viz] extra): every head of every attention kind and layer, the
    factor view's products and scores, and value mixing. `translator` may
    also be a pretrained encoder (its attention is then encoder
    self-attention only). Returns the paths."""
    import os
    from . import figures
    figures.require_matplotlib()
    if _encoder_only(translator):
        if translation is not None:
            raise ValueError("translation: an encoder-only model has no translation")
        v = encoder_views(translator, sentence)
    else:
        v = sentence_views(translator, sentence, translation, donor=False)
    t = v["trace"]
    os.makedirs(directory, exist_ok=True)
    paths = list(figures.save_head_view_pngs(directory, H.head_view_data(t), dpi=dpi))
    fv = v["factor"]
    dims = [int(c) for c in fv.top_dims]
    p = os.path.join(directory, "factor-products.png")
    figures.save_heatmap_png(p, fv.products[:, dims], fv.key_words, [f"dim {c}" for c in dims],
                             title=f"{fv.title}: q[c]*k[c]/sqrt(d) for '{fv.query_word}'",
                             dpi=dpi)
    paths.append(p)
    p = os.path.join(directory, "factor-scores.png")
    figures.save_bar_png(p, fv.key_words, fv.scores.tolist(),
                         title=f"scores of '{fv.query_word}' for every key", dpi=dpi)
    paths.append(p)
    for k, vm in enumerate(v["mixing"]):
        for name, m in (("weights", vm.weight_share), ("norms", vm.norm_share)):
            p = os.path.join(directory, f"mixing{k}-{name}.png")
            figures.save_heatmap_png(p, m, vm.rows, vm.cols, title=f"{vm.title}: {name}",
                                     vmin=0, vmax=1, dpi=dpi)
            paths.append(p)
    return paths
