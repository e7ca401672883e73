"""The article's walk-through of attention, for any head and any word.

"Transformers Explained Visually: not just how, but why" works one
attention head through by hand: the *factor* matrix of every query word's
dot product with every key word, Q.K^T / sqrt(d); the softmax of one row
of it; and that word's output as the weighted sum of the value vectors,
Z_i = sum_j w_ij V_j. This module does the same on the real model, with
the numbers the model computed:

    data = walkthrough_data(trace(translator, "the black cat drank the milk"))
    html = walkthrough_html(data)          # the interactive view
    compare_keys(t, "encoder", "milk", "drank", "black")   # the article's claim

In the page, the reader picks the kind of attention, the layer, the head
and the query word; the view draws the whole factor matrix (that word's row
outlined), the softmax of the row, and the weighted sum worked out term by
term for the output dimensions where it is largest (walkthrough.js does
the drawing and the arithmetic: the sum is computed in the page from the
weights and values shown, and equals the head's recorded output up to the
rounding of the numbers shown).
"""
import numpy as np

from .html import view_fragment, view_script

__all__ = ["WALKTHROUGH_CLASS", "compare_keys", "walkthrough_data", "walkthrough_html"]

WALKTHROUGH_CLASS = "pt-walkthrough"
SCRIPT_MARKER = "pytransformer explain: the attention walk-through"   # walkthrough.js's first line
_KIND_TITLES = {"encoder": "Encoder self-attention (English reads English)",
                "decoder": "Decoder masked self-attention (Spanish reads earlier Spanish)",
                "cross": "Cross-attention (Spanish reads English)"}


def _rounded(a, digits):
    """A nested list of a float array rounded to `digits` (no NaN/Inf: the
    JSON must be valid)."""
    return np.round(np.nan_to_num(np.asarray(a, dtype=np.float64)), digits).tolist()


def walkthrough_data(trace, kinds=None, b=0):
    """The view's data from a Trace: for each attention kind (encoder first,
    as the article does; or those in `kinds`), its title, the query (rows)
    and key (cols) tokens of sentence b, the head size d, and per layer and
    head the factor matrix (scores, Q.K^T/sqrt(d), None where the mask
    forbids attention), the weights (softmax of each row) and the value
    vectors (S, d). ValueError for a kind the trace lacks."""
    have = trace.kinds()
    order = [k for k in ("encoder", "decoder", "cross") if k in have]
    if kinds is None:
        kinds = order
    for kind in kinds:
        if kind not in have:
            raise ValueError(f"kinds: {kind!r} was not recorded; the trace has {have}")
    out = {}
    for kind in kinds:
        rows, cols = trace.tokens(kind, b)
        L, S = len(rows), len(cols)
        layers = []
        for layer in range(trace.num_layers(kind)):
            rec = trace.attention(kind, layer)
            heads = []
            for h in range(rec.num_heads):
                scores = _rounded(rec.scores[b, h, :L, :S], 3)
                allowed = rec.allowed[b, h, :L, :S]
                scores = [[s if ok else None for s, ok in zip(row, oks)]
                          for row, oks in zip(scores, allowed)]
                heads.append({"scores": scores,
                              "weights": _rounded(rec.weights[b, h, :L, :S], 4),
                              "v": _rounded(rec.v[b, h, :S], 3)})
            layers.append(heads)
        out[kind] = {"title": _KIND_TITLES.get(kind, kind), "rows": list(rows),
                     "cols": list(cols), "d": int(trace.attention(kind, 0).v.shape[-1]),
                     "layers": layers}
    return {"kinds": out}


def walkthrough_html(data, initial=None, id=None, include_script=True):
    """The interactive walk-through (an HTML fragment with its data as
    JSON): controls for kind, layer, head and query word; the factor
    matrix; the softmax of the chosen row; the weighted sum of the values.
    initial: {"kind", "layer", "head", "query"} (query a row index) chosen
    first (default: the first kind, layer 0, head 0, query 0).
    include_script: embed walkthrough.js (a Report carries it once: pass
    False there)."""
    if not isinstance(data, dict) or not data.get("kinds"):
        raise ValueError("data: expected walkthrough_data()'s dict with at least one kind")
    payload = dict(data)
    if initial is not None:
        kinds = data["kinds"]
        kind = initial.get("kind", next(iter(kinds)))
        if kind not in kinds:
            raise ValueError(f"initial: kind must be one of {list(kinds)}, got {kind!r}")
        payload["initial"] = {"kind": kind, "layer": int(initial.get("layer", 0)),
                              "head": int(initial.get("head", 0)),
                              "query": int(initial.get("query", 0))}
    return view_fragment(WALKTHROUGH_CLASS, "pt-wt", payload, "The walk-through",
                         walkthrough_script if include_script else None, id)


def walkthrough_script():
    """The view's JavaScript (walkthrough.js, shipped beside this module)."""
    return view_script("walkthrough.js")


def compare_keys(trace, kind, query, key_a, key_b, b=0):
    """Does `query` score `key_a` above `key_b`? For attention `kind` of
    sentence b, per layer: the list over heads of score(query, key_a) -
    score(query, key_b) (the factor matrix's entries, Q.K/sqrt(d)), and of
    the attention weights' difference. Words are matched case-insensitively
    to the first token equal to them. Returns a dict: 'score_diff' and
    'weight_diff', each [layer][head]; ValueError naming a word the
    sentence lacks."""
    rows, cols = trace.tokens(kind, b)

    def where(words, w, name):
        low = [t.lower() for t in words]
        if w.lower() not in low:
            raise ValueError(f"{name}: {w!r} is not among the words {list(words)}")
        return low.index(w.lower())
    i = where(rows, query, "query")
    ja, jb = where(cols, key_a, "key_a"), where(cols, key_b, "key_b")
    sd, wd = [], []
    for layer in range(trace.num_layers(kind)):
        rec = trace.attention(kind, layer)
        sd.append([float(rec.scores[b, h, i, ja] - rec.scores[b, h, i, jb])
                   for h in range(rec.num_heads)])
        wd.append([float(rec.weights[b, h, i, ja] - rec.weights[b, h, i, jb])
                   for h in range(rec.num_heads)])
    return {"score_diff": sd, "weight_diff": wd}
