"""The per-sentence views of one Trace: how a score is built from Q and K
(the factor view), how it splits into token and position terms in the first
layer, and what each source word really adds to an output (value mixing).

Every function returns a small result object with NumPy arrays, a
``caption`` saying in plain words how to read it, and ``to_dict()`` for
JSON; the report renders them.
"""
import dataclasses

import numpy as np
from pytransformer.validation import is_int

from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor

__all__ = ["FactorView", "PositionSplit", "ValueMixing", "factor_view", "mixing_by_layer",
           "position_split", "value_mixing"]


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


class _Result:
    def to_dict(self):
        """The result as JSON-able Python lists and numbers."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _check_head(rec, head):
    H = rec.num_heads
    if not is_int(head) or not 0 <= head < H:
        raise ValueError(f"head: expected an int in [0, {H}), got {head!r}")


def _check_index(name, i, n, labels):
    if isinstance(i, str):
        if i not in labels:
            raise ValueError(f"{name}: {i!r} is not one of the words {labels}")
        return labels.index(i)
    if not is_int(i) or not -n <= i < n:
        raise ValueError(f"{name}: expected a word or a position in [0, {n}), got {i!r}")
    return int(i) % n


@dataclasses.dataclass
class FactorView(_Result):
    """One head's score of one query word for every key word, as a sum of
    per-dimension products: products[j, c] = q[c] * k_j[c] / sqrt(d), and
    scores[j] = products[j].sum(). `key` picks the key word the summary
    fields describe: its products sorted by |contribution| (top_dims,
    top_products), the share of |products| the top 4 dimensions carry,
    how many dimensions agree in sign (q[c] k[c] > 0, pushing the score
    up) and how much of the score the agreeing and disagreeing dimensions
    give (positive and negative parts)."""
    title: str
    query_word: str
    key_word: str
    key_words: list
    q: np.ndarray
    k: np.ndarray
    products: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    score: float
    top_dims: np.ndarray
    top_products: np.ndarray
    top4_share: float
    n_agree: int
    positive: float
    negative: float
    caption: str = ""


def factor_view(trace, kind, layer, head, query, key=None, b=0, top=8):
    """The factor view (a FactorView) of head `head` of attention (`kind`,
    `layer`) of sentence `b` in `trace`, for the query word `query` (a
    position or a word) against every key, with the summary for key word
    `key` (default: the most attended one) and its `top` dimensions by
    |q[c] k[c]|. ValueError for a bad head, word or position, or a masked key."""
    rec = trace.attention(kind, layer)
    _check_head(rec, head)
    rows, cols = trace.tokens(kind, b)
    i = _check_index("query", query, len(rows), rows)
    allowed = rec.allowed[b, head, i, :len(cols)]
    q = rec.q[b, head, i]
    K = rec.k[b, head, :len(cols)]
    d = q.shape[0]
    products = q[None, :] * K / np.sqrt(d)                          # (S, d)
    scores = products.sum(1)
    weights = rec.weights[b, head, i, :len(cols)]
    j = int(np.argmax(weights)) if key is None else _check_index("key", key, len(cols), cols)
    if not allowed[j]:
        raise ValueError(f"key: {cols[j]!r} (position {j}) is masked for query {rows[i]!r}")
    p = products[j]
    order = np.argsort(-np.abs(p), kind="stable")[:top]
    total = np.abs(p).sum()
    share = float(np.abs(p)[order[:4]].sum() / total) if total > 0 else 0.0
    cap = (f"How head {head} of {rec.title} scores the key words for the query "
           f"'{rows[i]}'. The score of a key is the dot product q.k/sqrt(d): the sum over "
           f"the {d} dimensions of q[c]*k[c]/sqrt(d). A dimension where q and k agree in "
           f"sign raises the score, one where they disagree lowers it. For the key "
           f"'{cols[j]}', {int((p > 0).sum())} of {d} dimensions agree; the top 4 dimensions "
           f"carry {100 * share:.0f}% of the total |contribution|; agreeing dimensions add "
           f"{p[p > 0].sum():+.2f} and disagreeing ones {p[p < 0].sum():+.2f}, giving the "
           f"score {scores[j]:.2f} and, after the softmax over the keys, the weight "
           f"{weights[j]:.2f}.")
    return FactorView(title=f"{rec.title}, head {head}", query_word=rows[i], key_word=cols[j],
                      key_words=list(cols), q=q, k=K[j], products=products, scores=scores,
                      weights=weights, score=float(scores[j]), top_dims=order,
                      top_products=p[order], top4_share=share, n_agree=int((p > 0).sum()),
                      positive=float(p[p > 0].sum()), negative=float(p[p < 0].sum()),
                      caption=cap)


@dataclasses.dataclass
class PositionSplit(_Result):
    """The first layer's scores split exactly into what the token
    embeddings and the positional encodings contribute: the input x = t + p
    (token embedding, scaled, plus position), so q = Wq t + Wq p + bq and
    k likewise, and every score is the sum of five terms: token.token,
    token.position, position.token, position.position and bias (the terms
    with bq or bk). terms[name] is (H, L, S); share[name] (H,) is that
    term's part of the total |terms| over allowed query/key pairs;
    max_error is |sum of terms - recorded score| (exactness check)."""
    title: str
    terms: dict
    share: dict
    max_error: float
    caption: str = ""


TERM_NAMES = ("token.token", "token.position", "position.token", "position.position", "bias")


def position_split(trace, kind="encoder", b=0):
    """Split layer 0's self-attention scores of `kind` ('encoder' or
    'decoder') of a traced Seq2SeqTransformer into token/position terms.
    ValueError when the layer's input is not token embedding + position
    (pre-norm models, models without sinusoidal positions)."""
    if kind not in ("encoder", "decoder"):
        raise ValueError(f"kind: expected 'encoder' or 'decoder' (self-attention of layer 0), "
                         f"got {kind!r}")
    net = getattr(trace.model, "model", trace.model)
    name = "src_embed" if kind == "encoder" else "tgt_embed"
    if name not in trace.embeddings or not hasattr(net, "positions"):
        raise ValueError("position_split: needs a traced Seq2SeqTransformer (token embeddings "
                         "and a positional table)")
    rec = trace.attention(kind, 0)
    ids, emb = trace.embeddings[name]
    L = rec.query_in.shape[1]
    tok = emb[b] * np.sqrt(net.config.d_model)                       # (L, E)
    pos = np.asarray(net.positions[:L], np.float64)
    x = rec.query_in[b]
    if np.abs(tok + pos - x).max() > 1e-4 * max(1.0, np.abs(x).max()):
        raise ValueError("position_split: the layer's input is not token embedding + position "
                         "(a pre-norm model?); the split is defined for post-norm models")
    mha = rec.module
    d = mha.head_dim
    # the module's own projection, affine (P(x) = x W^T + b): of the token
    # part, the position part and zero (which gives the biases), in one call
    parts = Tensor(np.stack([tok, pos, np.zeros_like(tok)]).astype(mha.out_proj.weight.dtype))
    with no_grad():
        q, k, _ = (np.asarray(a.data, np.float64) for a in mha.project(parts, parts, parts))
    qt, qp, qb = q[0] - q[2], q[1] - q[2], q[2][:, :1]                # (H, L, d), (H, 1, d)
    kt, kp, kb = k[0] - k[2], k[1] - k[2], k[2][:, :1]
    s = 1.0 / np.sqrt(d)
    dot = lambda a, c: np.einsum("hld,hsd->hls", a, c) * s        # noqa: E731
    terms = {"token.token": dot(qt, kt), "token.position": dot(qt, kp),
             "position.token": dot(qp, kt), "position.position": dot(qp, kp)}
    terms["bias"] = dot(qt + qp + qb, np.broadcast_to(kb, kt.shape)) + dot(
        np.broadcast_to(qb, qt.shape), kt + kp)
    total = sum(terms.values())
    err = float(np.abs(total - rec.scores[b]).max())
    allowed = rec.allowed[b]
    mags = {n: np.where(allowed, np.abs(t), 0.0).sum((1, 2)) for n, t in terms.items()}
    denom = sum(mags.values())
    share = {n: m / np.where(denom > 0, denom, 1.0) for n, m in mags.items()}
    lead = {n: float(share[n].mean()) for n in TERM_NAMES}
    cap = (f"Layer 0's input is token embedding + position, so each score of "
           f"{rec.title} splits exactly into five terms (the sum matches the recorded score "
           f"to {err:.1e}). Averaged over heads, the |score| is carried "
           + ", ".join(f"{100 * lead[n]:.0f}% by {n}" for n in TERM_NAMES)
           + ". A head dominated by position.position attends by position (e.g. the next "
           "word) whatever the words are; a head dominated by token.token attends by "
           "word identity.")
    return PositionSplit(title=f"{rec.title}: token vs position terms", terms=terms, share=share,
                         max_error=err, caption=cap)


@dataclasses.dataclass
class ValueMixing(_Result):
    """What each key word adds to each output of one attention module
    (Kobayashi et al. 2020): the output of query i is
    sum_h sum_j w^h_ij (v^h_j W_O^h) + b_O, so the vector key j contributes
    through head h is w^h_ij f^h(x_j) with f^h(x_j) = v^h_j W_O^h.
    weights (H, L, S) are the attention weights; norms (H, L, S) are
    ||w^h_ij f^h(x_j)||; mixed (L, S) = ||sum_h w^h_ij f^h(x_j)|| (all heads).
    weight_share / norm_share (L, S): each row normalised to sum 1 (weights
    averaged over heads; norms of the mixed vectors). agreement: the
    fraction of (head, query) rows whose most attended key by weight is also
    the largest contribution by norm. output_ratio (L,): the norm of the
    module's whole output at each query over the norm of its input there
    (the residual stream it is added to, in a post-norm layer): how much the
    attention changes each word at all, which the row shares cannot show.
    moved: the largest share of a row that moves between keys when weights
    are replaced by contribution norms (half the L1 distance); most: the
    column of the most attended key (weights summed over the rows)."""
    title: str
    rows: list
    cols: list
    weights: np.ndarray
    norms: np.ndarray
    mixed: np.ndarray
    weight_share: np.ndarray
    norm_share: np.ndarray
    value_norms: np.ndarray
    agreement: float
    output_ratio: np.ndarray = None
    caption: str = ""
    moved: float = 0.0
    most: int = 0


def value_mixing(trace, kind, layer, b=0):
    """The value-mixing decomposition of attention (`kind`, `layer`) for
    sentence b of the trace."""
    rec = trace.attention(kind, layer)
    rows, cols = trace.tokens(kind, b)
    L, S = len(rows), len(cols)
    mha = rec.module
    H, d = rec.num_heads, rec.q.shape[3]
    Wo = np.asarray(mha.out_proj.weight.data, np.float64).reshape(-1, H, d)   # (E, H, d)
    f = np.einsum("hsd,ehd->hse", rec.v[b, :, :S], Wo)               # (H, S, E)
    w = rec.weights[b, :, :L, :S]                                     # (H, L, S)
    fnorm = np.linalg.norm(f, axis=-1)                                # (H, S)
    norms = w * fnorm[:, None, :]
    mixed = np.linalg.norm(np.einsum("hls,hse->lse", w, f), axis=-1)  # (L, S)
    ws = w.mean(0)
    ws = ws / np.where(ws.sum(1, keepdims=True) > 0, ws.sum(1, keepdims=True), 1.0)
    ns = mixed / np.where(mixed.sum(1, keepdims=True) > 0, mixed.sum(1, keepdims=True), 1.0)
    live = w.sum(-1) > 0                                              # (H, L) rows with any weight
    agree = (w.argmax(-1) == norms.argmax(-1))[live]
    agreement = float(agree.mean()) if agree.size else float("nan")
    gap = np.abs(ns - ws).sum(1).max() / 2 if L else 0.0
    j_most = int(np.argmax(ws.sum(0))) if S else 0
    fmean = fnorm.mean(0)                                             # (S,) over heads
    others = np.delete(fmean, j_most)
    ratio = fmean[j_most] / others.mean() if others.size and others.mean() > 0 else 1.0
    same = agreement >= 0.95 and gap < 0.05
    out_norm = np.linalg.norm(rec.out[b, :L], axis=-1)
    in_norm = np.linalg.norm(rec.query_in[b, :L], axis=-1)
    out_ratio = out_norm / np.where(in_norm > 0, in_norm, 1.0)
    cap = (f"The output of a word in {rec.title} is a weighted sum of transformed value "
           f"vectors f(x_j) = v_j W_O, so a large weight on a key with a short value vector "
           f"adds little (Kobayashi et al. 2020). Here the most attended key of a head is "
           f"also its largest contribution by norm in {100 * agreement:.0f}% of (head, word) "
           f"rows, and at most {100 * gap:.0f}% of a row's share moves between keys when "
           f"weights are replaced by contribution norms"
           + (": weights and contributions tell the same story in this module. " if same
              else ": the weights alone give a distorted picture of this module. "
              if gap >= 0.3 else ": the two pictures differ, but mostly agree. ")
           + f"The most attended key, '{cols[j_most]}', gets {100 * ws[:, j_most].mean():.0f}% "
           f"of the weight and {100 * ns[:, j_most].mean():.0f}% of the contribution norm; "
           f"its value vector is {ratio:.2f} times as long as the other words' on average. "
           f"And the shares hide how much the attention adds at all: its whole output is "
           f"{100 * out_ratio.min():.0f}-{100 * out_ratio.max():.0f}% of the norm of its "
           f"input, word by word (median {100 * np.median(out_ratio):.0f}%).")
    return ValueMixing(title=f"{rec.title}: weights vs contributions", rows=list(rows),
                       cols=list(cols), weights=w, norms=norms, mixed=mixed, weight_share=ws,
                       norm_share=ns, value_norms=fnorm, agreement=agreement,
                       output_ratio=out_ratio, caption=cap, moved=float(gap), most=j_most)


def mixing_by_layer(trace, kinds=None, b=0):
    """The value-mixing summary of every layer of each attention kind of
    the trace (or those in `kinds`), for sentence b: a list of dicts with
    kind, layer, agreement (the most attended key is the largest
    contribution, share of (head, word) rows), moved (ValueMixing.moved),
    key (the most attended key word), weight and contribution (its mean
    share of the weight and of the contribution norm) and the median, min
    and max of output_ratio (||attention output|| / ||its input||)."""
    have = trace.kinds()
    kinds = [k for k in ("encoder", "decoder", "cross") if k in have] if kinds is None \
        else list(kinds)
    out = []
    for kind in kinds:
        for layer in range(trace.num_layers(kind)):
            vm = value_mixing(trace, kind, layer, b)
            r = vm.output_ratio
            out.append(dict(kind=kind, layer=layer, agreement=vm.agreement, moved=vm.moved,
                            key=vm.cols[vm.most],
                            weight=float(vm.weight_share[:, vm.most].mean()),
                            contribution=float(vm.norm_share[:, vm.most].mean()),
                            ratio_median=float(np.median(r)), ratio_min=float(r.min()),
                            ratio_max=float(r.max())))
    return out
