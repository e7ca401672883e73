"""Attention rollout through the encoder and across into cross-attention,
checked against what ablating a source word does to the output.

    from pytransformer.explain.rollout import rollout, rollout_vs_ablation
    R = rollout([A0, A1, A2])                  # (S, S): encoder output x input tokens
    res = rollout_vs_ablation(translator, splits.test[:1000])   # first 100 pairs
    res.mean_spearman                          # {'raw': ..., 'rollout': ...}

Rollout (Abnar & Zuidema 2020, "Quantifying attention flow in
transformers"): each encoder layer's attention, averaged over heads, with
the residual connection counted as an identity half,
    A~_l = rownorm(0.5 * A_l + 0.5 * I),
multiplied through the layers, R_enc = A~_{L-1} ... A~_1 A~_0: row i says
how much of encoder output i comes from each input token. The decoder
reads the encoder only through cross-attention; the map we compare is
    rollout map = C_last @ R_enc      (target positions x source tokens)
where C_last is the last decoder layer's cross-attention averaged over
heads (the query rows are the decoder inputs <bos> + target; row t is the
step that produces target word t, or <eos> in the last row). No identity
term is added to C_last: the residual around cross-attention carries the
decoder's own stream, not the source. The decoder's self-attention and
the earlier cross-attention layers are left out (the brief's composition;
they would mix in target-side and lower-layer routes). The "raw" map is
C_last itself.

Ablation influence of source word i at target position t: the total-
variation distance 0.5 * sum_v |p(v) - p'(v)| between the model's output
distribution at t and the one when word i's token embedding is zeroed (its
position encoding stays; method="unk" instead replaces the word by <unk>),
teacher-forced on the gold translation so every position is compared on
the same prefix. Source <eos> is not ablated and its column is dropped from
both maps before correlating.

Agreement is Spearman's rank correlation (ties get average ranks),
per sentence, (a) over source words, attention and influence each
averaged over target positions ("word"), (b) over the source words of
each target position, averaged over the positions ("row"), and (c) over
all (target position, source word) cells ("cell"); then averaged over
sentences (an undefined correlation, where one side is constant, e.g. a
single source word or a row no ablation changes, is skipped). Also:
how often the map's most attended source word is the most influential one
(top-1 agreement), over target positions where some ablation changes the
output distribution by at least 0.1 in total variation.
"""
import dataclasses
import time

import numpy as np

from pytransformer.autograd import Tensor, no_grad

from .layers import _check_translator, _token_pair
from pytransformer.validation import int_arg

__all__ = ["RolloutComparison", "cross_rollout", "rankdata", "rollout", "rollout_vs_ablation",
           "source_ablation_influence", "spearman"]


# ----------------------------------------------------------------------------
# rollout

def _square_stack(name, a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name}: expected (..., L, L) attention, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or (a < 0).any():
        raise ValueError(f"{name}: attention weights must be finite and >= 0")
    return a


def rollout(attentions, residual=0.5):
    """Attention rollout of a stack of layers: `attentions` is a sequence
    of (..., L, L) head-averaged attention matrices (rows: queries, columns:
    keys), first layer first. Each becomes rownorm(residual * I + (1 -
    residual) * A) and they are multiplied, last on the left. Returns
    (..., L, L): row i = the share of each input token in output i."""
    if not 0 <= residual <= 1:
        raise ValueError(f"residual: expected a weight in [0, 1], got {residual!r}")
    attentions = list(attentions)
    if not attentions:
        raise ValueError("attentions: expected at least one layer, got none")
    mats = [_square_stack(f"attentions[{i}]", a) for i, a in enumerate(attentions)]
    shape = mats[0].shape
    for i, a in enumerate(mats):
        if a.shape != shape:
            raise ValueError(f"attentions[{i}]: expected shape {shape} like layer 0, got "
                             f"{a.shape}")
    eye = np.eye(shape[-1])
    out = np.broadcast_to(eye, shape).copy()
    for a in mats:
        m = residual * eye + (1 - residual) * a
        z = m.sum(-1, keepdims=True)
        m = np.divide(m, z, out=np.zeros_like(m), where=z > 0)
        out = m @ out
    return out


def cross_rollout(cross, encoder_rollout):
    """The target x source map C @ R_enc: cross-attention (..., T, S) of the
    decoder (averaged over heads) composed with the encoder rollout
    (..., S, S) (rows: encoder outputs, columns: input tokens)."""
    c = np.asarray(cross, dtype=np.float64)
    r = _square_stack("encoder_rollout", encoder_rollout)
    if c.ndim < 2 or c.shape[-1] != r.shape[-1]:
        raise ValueError(f"cross: expected (..., T, {r.shape[-1]}) to match encoder_rollout "
                         f"{r.shape}, got {c.shape}")
    return c @ r


# ----------------------------------------------------------------------------
# rank correlation

def rankdata(x):
    """Ranks 1..n of the values of x (flattened), ties given the average of
    the ranks they span (as scipy.stats.rankdata's 'average')."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if np.isnan(x).any():
        raise ValueError("x: cannot rank NaN values")
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    starts, counts = bounds[:-1], np.diff(bounds)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(starts + (counts + 1) / 2.0, counts)
    return ranks


def spearman(a, b):
    """Spearman's rank correlation of two equally long sequences (the
    Pearson correlation of their average ranks); NaN when either is constant."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"b: expected {a.size} values like a, got {b.size}")
    if a.size < 2:
        raise ValueError(f"a: need at least 2 values, got {a.size}")
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


# ----------------------------------------------------------------------------
# ablation influence of source words

def _probs(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def source_ablation_influence(translator, pairs, method="zero", batch_size=128):
    """Per pair, a (T, n) array: the total-variation change of the output
    distribution at each of the T = len(target) + 1 teacher-forced decoder
    positions when source word i (of n) is ablated: method 'zero' zeroes
    its token embedding (the position encoding stays), 'unk' replaces it
    by <unk>. Rows: the steps producing target words 1..len, then <eos>."""
    from pytransformer.data import UNK, batch
    _check_translator(translator)
    if method not in ("zero", "unk"):
        raise ValueError(f"method: expected 'zero' or 'unk', got {method!r}")
    tok = [_token_pair(p, k) for k, p in enumerate(pairs)]
    model = translator.model
    sv, tv = translator.src_vocab, translator.tgt_vocab
    limit = model.config.max_len
    jobs = []                                  # (pair index, word index or -1: intact)
    for k, (s, _) in enumerate(tok):
        jobs += [(k, -1)] + [(k, i) for i in range(len(s))]
    state = {"keep": None}

    def hook(module, args, output):
        keep = state["keep"]
        if keep is None:
            return None
        return output * Tensor(keep[..., None].astype(output.data.dtype))

    out = [np.zeros((len(t) + 1, len(s))) for s, t in tok]
    intact = {}                                # pair index -> (T, V) probabilities
    was = model.training
    model.eval()
    handle = model.src_embed.register_forward_hook(hook)
    try:
        with no_grad():
            for lo in range(0, len(jobs), batch_size):
                chunk = jobs[lo:lo + batch_size]
                src, tin, _ = batch([tok[k] for k, _ in chunk], sv, tv, max_len=limit)
                keep = np.ones(src.shape, bool)
                for r, (k, i) in enumerate(chunk):
                    if i >= 0:
                        if method == "zero":
                            keep[r, i] = False
                        else:
                            src[r, i] = UNK
                state["keep"] = keep if method == "zero" else None
                probs = _probs(model(src, tin).data)
                # each pair's intact row comes before its ablated rows
                for r, (k, i) in enumerate(chunk):
                    p = probs[r, :out[k].shape[0]]
                    if i < 0:
                        intact[k] = p
                    else:
                        out[k][:, i] = 0.5 * np.abs(p - intact[k]).sum(-1)
                        if i == out[k].shape[1] - 1:
                            del intact[k]
    finally:
        state["keep"] = None
        handle.remove()
        model.train(was)
    return out


# ----------------------------------------------------------------------------
# the comparison

TOP1_MIN_TV = 0.1      # rows whose strongest ablation changes the output at least this much

@dataclasses.dataclass
class RolloutComparison:
    """Raw last-layer cross-attention and rollout against ablation.

    src_tokens / tgt_tokens: per sentence, source tokens + <eos> (columns)
    and the target tokens + <eos> each row produces; raw / rollout: per
    sentence (T, S) maps (S includes <eos>); influence: per sentence (T, n)
    ablation TV (n = S - 1 source words); spearman: {'raw' | 'rollout':
    {'word' | 'row' | 'cell': array (sentences,)}} (NaN where undefined);
    mean_spearman: {'raw' | 'rollout': {'word' | 'row' | 'cell': mean over
    sentences}}; top1: {'raw' | 'rollout': fraction of the target rows
    whose most influential source word (largest TV, rows where it is
    >= 0.1 only) is also the map's most attended word}; better: {'word' | 'row' |
    'cell' | 'top1': 'raw' or 'rollout'};
    method ('zero' or 'unk'), residual, n_pairs, seconds; caption."""
    src_tokens: list
    tgt_tokens: list
    raw: list
    rollout: list
    influence: list
    spearman: dict
    mean_spearman: dict
    top1: dict
    better: dict
    method: str
    residual: float
    n_pairs: int
    seconds: float
    caption: str = ""

    def to_dict(self):
        """JSON-able dict of every field (NaN correlations as None)."""
        nan = lambda a: [None if np.isnan(v) else float(v) for v in a]  # noqa: E731
        return {"src_tokens": [list(t) for t in self.src_tokens],
                "tgt_tokens": [list(t) for t in self.tgt_tokens],
                "raw": [m.tolist() for m in self.raw],
                "rollout": [m.tolist() for m in self.rollout],
                "influence": [m.tolist() for m in self.influence],
                "spearman": {k: {g: nan(v) for g, v in d.items()}
                             for k, d in self.spearman.items()},
                "mean_spearman": self.mean_spearman, "top1": self.top1,
                "better": self.better,
                "method": self.method, "residual": self.residual, "n_pairs": self.n_pairs,
                "seconds": self.seconds, "caption": self.caption}


def _maps(translator, tok, residual, batch_size):
    """Per pair: raw (T, S) last-layer cross-attention and rollout (T, S)."""
    from .trace import trace
    raw, rolled = [], []
    n_enc = len(translator.model.transformer.encoder.layers)
    for lo in range(0, len(tok), batch_size):
        part = tok[lo:lo + batch_size]
        t = trace(translator, [" ".join(s) for s, _ in part], [" ".join(g) for _, g in part])
        enc = [t.attention("encoder", i).weights.mean(1) for i in range(n_enc)]  # (B, S, S)
        cross = t.attention("cross", -1).weights.mean(1)                          # (B, T, S)
        for b, (s, g) in enumerate(part):
            S, T = len(s) + 1, len(g) + 1
            R = rollout([a[b, :S, :S] for a in enc], residual)
            C = cross[b, :T, :S]
            raw.append(C)
            rolled.append(cross_rollout(C, R))
    return raw, rolled


def _nanmean(v):
    v = np.asarray(v, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def rollout_vs_ablation(translator, pairs, max_pairs=100, method="zero", residual=0.5,
                        batch_size=128):
    """RolloutComparison over the first `max_pairs` of `pairs` (None: all),
    teacher-forced on their gold translations. Cost: one traced pass and
    about (words + 1) forward passes per pair (~2 s for 100 pairs)."""
    _check_translator(translator)
    if max_pairs is not None:
        pairs = list(pairs)[:int_arg("max_pairs", max_pairs, 1)]
    t0 = time.perf_counter()
    tok = [_token_pair(p, k) for k, p in enumerate(pairs)]
    if not tok:
        raise ValueError("pairs: expected at least one pair, got none")
    raw, rolled = _maps(translator, tok, residual, batch_size)
    infl = source_ablation_influence(translator, tok, method, batch_size)
    rho = {k: {"word": [], "row": [], "cell": []} for k in ("raw", "rollout")}
    hits = {"raw": 0, "rollout": 0}
    rows = 0
    for r, ro, f in zip(raw, rolled, infl):
        n = f.shape[1]
        strong = f.max(1) >= TOP1_MIN_TV
        rows += int(strong.sum())
        for name, m in (("raw", r), ("rollout", ro)):
            m = m[:, :n]                                      # drop the <eos> column
            hits[name] += int((m.argmax(1) == f.argmax(1))[strong].sum())
            rho[name]["word"].append(spearman(m.mean(0), f.mean(0)) if n > 1 else np.nan)
            rho[name]["row"].append(_nanmean([spearman(a, b) for a, b in zip(m, f)])
                                    if n > 1 else np.nan)
            rho[name]["cell"].append(spearman(m, f))
    rho = {k: {g: np.array(v) for g, v in d.items()} for k, d in rho.items()}
    mean = {k: {g: _nanmean(v) for g, v in d.items()} for k, d in rho.items()}
    top1 = {k: hits[k] / rows if rows else float("nan") for k in hits}
    better = {g: ("rollout" if mean["rollout"][g] > mean["raw"][g] else "raw")
              for g in ("word", "row", "cell")}
    better["top1"] = "rollout" if top1["rollout"] > top1["raw"] else "raw"
    res = RolloutComparison(
        src_tokens=[list(s) + ["<eos>"] for s, _ in tok],
        tgt_tokens=[list(g) + ["<eos>"] for _, g in tok], raw=raw, rollout=rolled,
        influence=infl, spearman=rho, mean_spearman=mean, top1=top1, better=better,
        method=method,
        residual=float(residual), n_pairs=len(tok), seconds=0.0)
    how = ("zeroing its token embedding" if method == "zero" else "replacing it by <unk>")
    res.caption = (
        "Which source words matter for each output word? Three maps (rows: target words "
        "being produced, columns: source words): the last decoder layer's cross-attention "
        "averaged over heads ('raw'), the same composed with attention rollout through the "
        "encoder (each layer 0.5*attention + 0.5*identity, multiplied through), and the "
        f"ablation influence: how much the output distribution changes (total variation) "
        f"when a source word is removed by {how}. Spearman rank correlation with the "
        f"ablation, averaged over {len(tok)} sentences: per source word (averaged over the "
        f"target) raw {mean['raw']['word']:.2f}, rollout {mean['rollout']['word']:.2f}; "
        f"per target word (ranking its source words) raw {mean['raw']['row']:.2f}, rollout "
        f"{mean['rollout']['row']:.2f}; over all cells raw {mean['raw']['cell']:.2f}, rollout "
        f"{mean['rollout']['cell']:.2f}. The higher one predicts influence better: "
        f"{better['row']} per target word, {better['cell']} over cells, {better['word']} per "
        f"source word. The most influential source word of a target word "
        f"(where removing one changes the output by at least {TOP1_MIN_TV:g} in total "
        f"variation) is the most attended one in {top1['raw']:.0%} of {rows} cases for raw "
        f"attention, {top1['rollout']:.0%} for rollout.")
    res.seconds = time.perf_counter() - t0
    return res
