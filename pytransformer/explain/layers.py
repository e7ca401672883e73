"""Are the layers the same function? Representation similarity between
layers (linear CKA) and how much each sublayer changes the residual stream.

    from pytransformer.explain.layers import layer_similarity, linear_cka
    res = layer_similarity(translator, splits.test[:1000])
    res.encoder_labels, res.encoder_cka          # ['embeddings', 'layer 0', ...], (4, 4)
    res.sublayers                                 # one row per (kind, layer, sublayer)
    res.to_dict()                                 # JSON-able

Representations come from teacher-forced runs of the gold translations
(batches of ~128 pairs, sorted by length so little is padded), over the
real tokens only: source tokens + <eos> for the encoder, <bos> + target
tokens for the decoder (padding positions are dropped before any measure).
Capture is through forward hooks on the layers, their FFN linears and
their attention modules, removed on exit; the model is not changed.

Linear CKA (Kornblith et al. 2019, "Similarity of neural network
representations revisited"): for X (n, p1) and Y (n, p2) over the same n
tokens, both column-centred,
    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),
1 for identical representations, invariant to orthogonal transforms and
isotropic scaling of either side, near 0 for unrelated ones.
"""
import dataclasses
import time

import numpy as np

from pytransformer.autograd import no_grad
from pytransformer.validation import int_arg

__all__ = ["LayerSimilarity", "cka_matrix", "layer_similarity", "linear_cka",
           "teacher_forced_batches"]


# ----------------------------------------------------------------------------
# CKA

def _as_2d(name, x):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (tokens, features), got shape {x.shape}")
    return x


def linear_cka(x, y):
    """Linear CKA between representations x (n, p1) and y (n, p2) of the
    same n examples (rows): ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) after
    centring every column. In [0, 1]; 1 when y is x up to an orthogonal
    transform and a scale; NaN when either side is constant."""
    x, y = _as_2d("x", x), _as_2d("y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"y: expected {x.shape[0]} rows like x, got {y.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError(f"x: CKA needs at least 2 rows, got {x.shape[0]}")
    x = x - x.mean(0)
    y = y - y.mean(0)
    # scale both sides first: CKA is scale-invariant and this keeps the
    # fourth powers below inside float64 range
    sx, sy = np.abs(x).max(), np.abs(y).max()
    if sx == 0 or sy == 0:
        return float("nan")
    x, y = x / sx, y / sy
    num = np.square(y.T @ x).sum()
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(num / den) if den > 0 else float("nan")


def cka_matrix(reps):
    """(n, n) matrix of linear_cka between every pair of the n
    representations in `reps` (each (tokens, features), same tokens)."""
    reps = [_as_2d(f"reps[{i}]", r) for i, r in enumerate(reps)]
    n = len(reps)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = linear_cka(reps[i], reps[j])
    return out


# ----------------------------------------------------------------------------
# batches of teacher-forced pairs

def _token_pair(p, k):
    """(source tokens, target tokens) of a Pair, a (src, tgt) tuple of token
    lists or of strings."""
    src, tgt = (p.src, p.tgt) if hasattr(p, "src") else (None, None)
    if src is None:
        if not isinstance(p, (tuple, list)) or len(p) != 2:
            raise ValueError(f"pairs[{k}]: expected a Pair or a (source, target) tuple, "
                             f"got {p!r}")
        src, tgt = p
    src = src.split() if isinstance(src, str) else list(src)
    tgt = tgt.split() if isinstance(tgt, str) else list(tgt)
    if not src or not tgt:
        raise ValueError(f"pairs[{k}]: empty source or target")
    return src, tgt


def teacher_forced_batches(translator, pairs, batch_size=128):
    """Batches of `pairs` for teacher-forced runs: a list of (index, src,
    tgt_in, tgt_out) where index (b,) are the pairs' positions in `pairs`,
    src (b, S) source ids + <eos>, tgt_in (b, T) <bos> + target ids,
    tgt_out (b, T) target ids + <eos>; pad 0. Pairs are sorted by length
    (so little is padded) and cut into batches of `batch_size`."""
    from pytransformer.data import batch
    int_arg("batch_size", batch_size, 1)
    tok = [_token_pair(p, k) for k, p in enumerate(pairs)]
    if not tok:
        raise ValueError("pairs: expected at least one pair, got none")
    limit = translator.model.config.max_len
    order = sorted(range(len(tok)), key=lambda k: (len(tok[k][0]), len(tok[k][1])))
    out = []
    for lo in range(0, len(order), batch_size):
        idx = np.array(order[lo:lo + batch_size])
        src, tin, tout = batch([tok[k] for k in idx], translator.src_vocab,
                               translator.tgt_vocab, max_len=limit)
        out.append((idx, src, tin, tout))
    return out


# ----------------------------------------------------------------------------
# capture of the residual streams, FFN and attention sublayers

def _np(x):
    return np.asarray(getattr(x, "data", x))


class _StreamCapture:
    """Forward hooks recording, per batch, each layer's input/output, each
    FFN's input/output and each attention module's query input/output, as
    rows of the real (unpadded) tokens only."""

    def __init__(self, model):
        self.model = model
        self.handles = []
        self.rows = {}                  # key -> list of (n, E) arrays
        self.mask = {}                  # 'encoder' / 'decoder' -> (B, T) bool

    def add(self, key, x, side):
        m = self.mask[side]
        self.rows.setdefault(key, []).append(_np(x)[m])       # model dtype; float64 in get

    def __enter__(self):
        tf = self.model.transformer
        try:
            for side, stack in (("encoder", tf.encoder), ("decoder", tf.decoder)):
                for i, layer in enumerate(stack.layers):
                    self._hook_layer(side, i, layer)
        except BaseException:
            self.close()
            raise
        return self

    def _hook_layer(self, side, i, layer):
        def whole(module, args, output):
            if i == 0:
                self.add((side, "embeddings"), args[0], side)
            self.add((side, "layer", i), output, side)

        def ffn_in(module, args, output):
            self.add((side, "ffn", i, "in"), args[0], side)

        def ffn_out(module, args, output):
            self.add((side, "ffn", i, "out"), output, side)

        def attn(name):
            def hook(module, args, kwargs, output):
                q = args[0] if args else kwargs["query"]
                self.add((side, name, i, "in"), q, side)
                self.add((side, name, i, "out"), output[0], side)
            return hook

        self.handles += [layer.register_forward_hook(whole),
                         layer.linear1.register_forward_hook(ffn_in),
                         layer.linear2.register_forward_hook(ffn_out),
                         layer.self_attn.register_forward_hook(attn("self-attention"),
                                                               with_kwargs=True)]
        if side == "decoder":
            self.handles.append(layer.multihead_attn.register_forward_hook(
                attn("cross-attention"), with_kwargs=True))

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def __exit__(self, *exc):
        self.close()
        return False

    def get(self, key):
        return np.concatenate(self.rows[key]).astype(np.float64)


def _check_translator(translator):
    if not (hasattr(translator, "model") and hasattr(translator, "src_vocab")
            and hasattr(translator.model, "transformer")):
        raise TypeError(f"translator: expected a Translator (a Seq2SeqTransformer with its "
                        f"vocabularies), got {type(translator).__name__}")


# ----------------------------------------------------------------------------
# the measure

@dataclasses.dataclass
class LayerSimilarity:
    """Linear CKA between the layers of each stack and the effect of every
    sublayer on the residual stream.

    encoder_labels / decoder_labels: ['embeddings', 'layer 0', ...];
    encoder_cka / decoder_cka: (n, n) CKA matrices in that order, over
    n_src_tokens / n_tgt_tokens real tokens ('embeddings' = token embedding
    * sqrt(d) + positions, the first layer's input; 'layer i' = the output
    of layer i, after its last LayerNorm for post-norm layers).
    sublayers: one dict per (kind, layer, sublayer) with 'kind' ('encoder'
    or 'decoder'), 'layer', 'sublayer' ('self-attention', 'cross-attention'
    or 'ffn'), 'update_ratio' (mean over tokens of ||sublayer output|| /
    ||sublayer input||, the input being the stream the output is added to),
    'cka_in_sum' (CKA(input, input + output)) and 'cka_in_out'
    (CKA(input, output)). caption: how to read it."""
    encoder_labels: list
    encoder_cka: np.ndarray
    decoder_labels: list
    decoder_cka: np.ndarray
    sublayers: list
    n_pairs: int
    n_src_tokens: int
    n_tgt_tokens: int
    norm_first: bool
    seconds: float
    caption: str = ""

    def sublayer_table(self, kind, sublayer, field="update_ratio"):
        """The `field` of `sublayer` per layer of `kind`, as an array (layers,)."""
        rows = [r for r in self.sublayers if r["kind"] == kind and r["sublayer"] == sublayer]
        if not rows:
            raise KeyError(f"sublayer_table: no {sublayer!r} sublayer in the {kind!r} stack")
        return np.array([r[field] for r in sorted(rows, key=lambda r: r["layer"])])

    def to_dict(self):
        """JSON-able dict of every field (arrays as nested lists)."""
        return {"encoder_labels": list(self.encoder_labels),
                "encoder_cka": self.encoder_cka.tolist(),
                "decoder_labels": list(self.decoder_labels),
                "decoder_cka": self.decoder_cka.tolist(),
                "sublayers": [dict(r) for r in self.sublayers],
                "n_pairs": self.n_pairs, "n_src_tokens": self.n_src_tokens,
                "n_tgt_tokens": self.n_tgt_tokens, "norm_first": self.norm_first,
                "seconds": self.seconds, "caption": self.caption}


def _caption(res):
    e, d = res.encoder_cka, res.decoder_cka
    off = lambda m: m[np.triu_indices(len(m), 1)]  # noqa: E731
    stream = ("the sublayer's input, which for these pre-norm layers is the LayerNorm of "
              "the residual stream, not the stream itself" if res.norm_first else
              "the sublayer's input, i.e. the residual stream the output is added to before "
              "the LayerNorm (post-norm)")
    ffn = [r for r in res.sublayers if r["sublayer"] == "ffn"]
    big = max(ffn, key=lambda r: r["update_ratio"])
    return (
        "Linear CKA between the representations of every pair of layers (1 = the same up to "
        "rotation and scale, 0 = unrelated), over the real tokens of "
        f"{res.n_pairs} teacher-forced pairs ({res.n_src_tokens} source, {res.n_tgt_tokens} "
        "target tokens). Bright off-diagonal cells mean two layers hold nearly the same "
        "representation: the later one only refines it. "
        f"Here encoder CKA between distinct layers ranges {off(e).min():.2f}-{off(e).max():.2f}, "
        f"decoder {off(d).min():.2f}-{off(d).max():.2f}. "
        "The table gives, for each sublayer, ||update|| / ||stream|| (mean over tokens; the "
        f"stream is {stream}) and the CKA of its input with input + update and with the "
        "update alone: a small ratio and a CKA(input, input + update) near 1 mean the "
        "sublayer nudges the stream; a CKA(input, update) near 0 means it writes something "
        f"new. The largest FFN update is {_sub_name(big)} "
        f"({big['update_ratio']:.2f} of the stream).")


def _sub_name(r):
    """'encoder layer 1 ffn' for a sublayer row of LayerSimilarity."""
    return f"{r['kind']} layer {r['layer']} {r['sublayer']}"


def layer_similarity(translator, pairs, batch_size=128):
    """LayerSimilarity of `translator` over `pairs` (Pair objects or
    (source, target) tuples), teacher-forced on the gold targets in
    batches of `batch_size`; padding excluded."""
    _check_translator(translator)
    t0 = time.perf_counter()
    model = translator.model
    batches = teacher_forced_batches(translator, pairs, batch_size)
    was_training = model.training
    model.eval()
    cap = _StreamCapture(model)
    try:
        with cap, no_grad():
            for _, src, tin, _ in batches:
                cap.mask = {"encoder": src != model.config.pad_idx,
                            "decoder": tin != model.config.pad_idx}
                model(src, tin)
    finally:
        model.train(was_training)
    n_enc = len(model.transformer.encoder.layers)
    n_dec = len(model.transformer.decoder.layers)
    labels = {}
    mats = {}
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        reps = [cap.get((side, "embeddings"))] + [cap.get((side, "layer", i)) for i in range(n)]
        labels[side] = ["embeddings"] + [f"layer {i}" for i in range(n)]
        mats[side] = cka_matrix(reps)
    rows = []
    for side, n in (("encoder", n_enc), ("decoder", n_dec)):
        subs = ["self-attention"] + (["cross-attention"] if side == "decoder" else []) + ["ffn"]
        for i in range(n):
            for sub in subs:
                x = cap.get((side, sub, i, "in"))
                u = cap.get((side, sub, i, "out"))
                ratio = np.linalg.norm(u, axis=1) / np.maximum(np.linalg.norm(x, axis=1), 1e-30)
                rows.append({"kind": side, "layer": i, "sublayer": sub,
                             "update_ratio": float(ratio.mean()),
                             "cka_in_sum": linear_cka(x, x + u),
                             "cka_in_out": linear_cka(x, u)})
    res = LayerSimilarity(
        encoder_labels=labels["encoder"], encoder_cka=mats["encoder"],
        decoder_labels=labels["decoder"], decoder_cka=mats["decoder"], sublayers=rows,
        n_pairs=len(pairs), n_src_tokens=len(cap.get(("encoder", "embeddings"))),
        n_tgt_tokens=len(cap.get(("decoder", "embeddings"))),
        norm_first=bool(model.config.norm_first), seconds=0.0)
    res.caption = _caption(res)
    res.seconds = time.perf_counter() - t0
    return res
