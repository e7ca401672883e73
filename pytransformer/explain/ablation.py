"""Head importance by ablation, and how many heads can go (Michel et al.
2019, "Are sixteen heads really better than one?").

    from pytransformer.explain.ablation import ablate, head_importance, prune_heads
    with ablate(translator, [("cross", 2, 1)]):       # (kind, layer, head)
        translator.translate(["the ball is blue"])     # head zeroed, cached decoding too
    imp = head_importance(translator, pairs)            # loss change per head
    pr = prune_heads(translator, pairs, imp)            # BLEU as heads go

A head is ablated by zeroing its slice of the concatenated head outputs
where they enter the attention's output projection (a forward pre-hook on
``out_proj``), so the head contributes nothing (out_proj's bias stays);
this acts on full runs and on the KV-cached greedy/beam decoder alike.

Importance = the change of the teacher-forced loss (mean cross-entropy in
nats per real target token, <eos> included, no label smoothing) on the gold
translations when that one head is zeroed. The prefix below the ablated
layer is computed once per batch and reused, so a head costs only the
layers from its own upward.

Pruning: heads are removed cumulatively in increasing order of that
single-head importance (one-shot ordering, not Michel's iterative
re-estimation), and greedy-decoding BLEU (sacrebleu corpus BLEU, default
13a tokenisation) is measured at a few counts only: a binary search for the
largest k whose BLEU is within `max_drop` of the unpruned model, which
assumes the drop grows with k (the points measured are all returned, so a
non-monotone curve shows). About log2(#heads) + 2 decodings in all. Without
sacrebleu the BLEU parts are None and say so; the loss parts still run.
"""
import contextlib
import dataclasses
import time

import numpy as np

from pytransformer.autograd import Tensor, no_grad
from pytransformer.nn import MultiheadAttention

from .layers import _check_translator, _token_pair, teacher_forced_batches
from .trace import ATTENTION_KINDS, _classify
from pytransformer.validation import int_arg, is_int

__all__ = ["HeadImportance", "PruningResult", "ablate", "ablate_ffn", "all_heads",
           "attention_modules", "bleu_score", "ffn_modules",
           "head_importance", "prune_heads", "teacher_forced_loss"]


# ----------------------------------------------------------------------------
# ablate

def attention_modules(model):
    """{(kind, layer): MultiheadAttention} of a model (a Translator, a
    Seq2SeqTransformer or any Module), kind in 'encoder' | 'decoder' |
    'cross' (named as explain.trace names them)."""
    net = getattr(model, "model", model)
    if not hasattr(net, "named_modules"):
        raise TypeError(f"model: expected a Translator or a Module, got {type(model).__name__}")
    out = {}
    for name, m in net.named_modules():
        if isinstance(m, MultiheadAttention):
            out[_classify(name)] = m
    return out


def _check_heads(mods, heads):
    """Validate (kind, layer, head) triples against the modules; return
    {(kind, layer): sorted head list}."""
    if isinstance(heads, tuple) and len(heads) == 3 and isinstance(heads[0], str):
        heads = [heads]                       # a single (kind, layer, head)
    if isinstance(heads, (str, bytes)) or not hasattr(heads, "__iter__"):
        raise TypeError(f"heads: expected an iterable of (kind, layer, head), got {heads!r}")
    groups = {}
    for k, h in enumerate(heads):
        if not (isinstance(h, (tuple, list)) and len(h) == 3):
            raise ValueError(f"heads[{k}]: expected (kind, layer, head), got {h!r}")
        kind, layer, head = h
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"heads[{k}]: kind expected one of {ATTENTION_KINDS}, got {kind!r}")
        n = len({lay for (kd, lay) in mods if kd == kind})
        if not is_int(layer) or not -n <= layer < n:
            raise ValueError(f"heads[{k}]: layer expected an int in [{-n}, {n}) for {kind!r}, "
                             f"got {layer!r}")
        layer = int(layer) % n
        H = mods[(kind, layer)].num_heads
        if not is_int(head) or not 0 <= head < H:
            raise ValueError(f"heads[{k}]: head expected an int in [0, {H}), got {head!r}")
        groups.setdefault((kind, layer), set()).add(int(head))
    return {key: sorted(v) for key, v in groups.items()}


def _zero_hook(heads, H):
    def hook(module, args):
        x = args[0]
        data = np.asarray(getattr(x, "data", x))
        E = data.shape[-1]
        d = E // H
        keep = np.ones(E, data.dtype)
        for h in heads:
            keep[h * d:(h + 1) * d] = 0
        keep_t = Tensor(keep)
        return (x * keep_t,) + tuple(args[1:])
    return hook


@contextlib.contextmanager
def ablate(model, heads):
    """Context manager: while open, the heads in `heads` (an iterable of
    (kind, layer, head), kind 'encoder' | 'decoder' | 'cross', layer may be
    negative) contribute nothing to their attention's output: their columns
    of the out_proj input are multiplied by 0 (the out_proj bias stays).
    Works for full runs and for the KV-cached decoder (translate, greedy,
    beam). The hooks are removed on exit, also on error. An empty `heads`
    changes nothing. Yields the validated {(kind, layer): [heads]}."""
    mods = attention_modules(model)
    groups = _check_heads(mods, heads)
    handles = []
    try:
        for key, hs in groups.items():
            m = mods[key]
            handles.append(m.out_proj.register_forward_pre_hook(_zero_hook(hs, m.num_heads)))
        yield groups
    finally:
        for h in handles:
            h.remove()


def ffn_modules(model):
    """{(kind, layer): encoder/decoder layer} of a model (a Translator, a
    Seq2SeqTransformer or any Module whose layers have linear1/linear2),
    kind 'encoder' | 'decoder'."""
    from pytransformer.nn.transformer import TransformerDecoderLayer, TransformerEncoderLayer
    net = getattr(model, "model", model)
    if not hasattr(net, "named_modules"):
        raise TypeError(f"model: expected a Translator or a Module, got {type(model).__name__}")
    out = {}
    for name, m in net.named_modules():
        if isinstance(m, (TransformerEncoderLayer, TransformerDecoderLayer)):
            out[_classify(name)] = m
    return out


def _zero_output(module, args, output):
    return output * Tensor(np.zeros((), np.asarray(getattr(output, "data", output)).dtype))


@contextlib.contextmanager
def ablate_ffn(model, layers):
    """Context manager: while open, the feed-forward blocks of `layers` (an
    iterable of (kind, layer), kind 'encoder' | 'decoder', layer may be
    negative) add nothing to the residual stream: their linear2 output
    (bias included) is multiplied by 0, so the layer's second residual sum
    is its input alone (then the layer's LayerNorm, as usual). Works for
    full runs and the KV-cached decoder (a hooked model leaves the C fast
    path). Hooks are removed on exit, also on error. Yields the validated
    [(kind, layer)]."""
    mods = ffn_modules(model)
    if isinstance(layers, tuple) and len(layers) == 2 and isinstance(layers[0], str):
        layers = [layers]
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers: expected an iterable of (kind, layer), got {layers!r}")
    chosen = []
    for k, item in enumerate(layers):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"layers[{k}]: expected (kind, layer), got {item!r}")
        kind, layer = item
        if kind not in ("encoder", "decoder"):
            raise ValueError(f"layers[{k}]: kind expected 'encoder' or 'decoder', got {kind!r}")
        n = len([1 for (kd, _) in mods if kd == kind])
        if not is_int(layer) or not -n <= layer < n:
            raise ValueError(f"layers[{k}]: layer expected an int in [{-n}, {n}) for {kind!r}, "
                             f"got {layer!r}")
        chosen.append((kind, int(layer) % n))
    handles = []
    try:
        for key in dict.fromkeys(chosen):
            handles.append(mods[key].linear2.register_forward_hook(_zero_output))
        yield list(dict.fromkeys(chosen))
    finally:
        for h in handles:
            h.remove()


def all_heads(model):
    """Every (kind, layer, head) of a model, in ATTENTION_KINDS order, then
    layer, then head."""
    mods = attention_modules(model)
    return [(k, lay, h) for k in ATTENTION_KINDS for (kd, lay) in sorted(mods)
            if kd == k for h in range(mods[(kd, lay)].num_heads)]


# ----------------------------------------------------------------------------
# teacher-forced loss, with the prefix below an ablated layer reused

class _Prefix:
    """One batch run layer by layer (as Seq2SeqTransformer.forward does in
    eval mode), keeping every layer's input, so that a run with something
    changed in one layer restarts at that layer."""

    def __init__(self, model, src, tgt_in):
        self.model = model
        pad = model.config.pad_idx
        self.src_pad = src == pad
        self.tgt_pad = tgt_in == pad
        tf = model.transformer
        x = model._embed(model.src_embed, src)
        self.enc_in = []
        for layer in tf.encoder.layers:
            self.enc_in.append(x)
            x = self._enc_layer(layer, x)
        self.memory = self._enc_norm(x)
        y = model._embed(model.tgt_embed, tgt_in)
        self.dec_in = []
        for layer in tf.decoder.layers:
            self.dec_in.append(y)
            y = self._dec_layer(layer, y, self.memory)
        self.base_logits = self._head(y)

    def _enc_layer(self, layer, x):
        return layer(x, src_mask=None, src_key_padding_mask=self.src_pad, is_causal=False)

    def _enc_norm(self, x):
        norm = self.model.transformer.encoder.norm
        return norm(x) if norm is not None else x

    def _dec_layer(self, layer, y, memory):
        return layer(y, memory, tgt_mask=None, memory_mask=None,
                     tgt_key_padding_mask=self.tgt_pad, memory_key_padding_mask=self.src_pad,
                     tgt_is_causal=True, memory_is_causal=False)

    def _head(self, y):
        norm = self.model.transformer.decoder.norm
        return self.model.generator(norm(y) if norm is not None else y).data

    def logits(self, kind, layer):
        """Logits (B, T, V) recomputed from layer `layer` of the 'encoder'
        (then the whole decoder) or of the 'decoder' upward; the layers
        below come from the unchanged run."""
        tf = self.model.transformer
        if kind == "encoder":
            x = self.enc_in[layer]
            for lay in tf.encoder.layers[layer:]:
                x = self._enc_layer(lay, x)
            memory, start = self._enc_norm(x), 0
        else:
            memory, start = self.memory, layer
        y = self.dec_in[start]
        for lay in tf.decoder.layers[start:]:
            y = self._dec_layer(lay, y, memory)
        return self._head(y)


def _loss_sum(logits, tgt_out, pad):
    """(sum of -log p(gold), number of real target tokens)."""
    z = logits.astype(np.float64)
    z -= z.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1))
    gold = np.take_along_axis(z, tgt_out[..., None], -1)[..., 0]
    m = tgt_out != pad
    return float((lse - gold)[m].sum()), int(m.sum())


def teacher_forced_loss(translator, pairs, heads=(), batch_size=128):
    """Mean cross-entropy (nats per real target token, <eos> included) of
    the gold translations of `pairs`, teacher-forced, with `heads` ablated."""
    _check_translator(translator)
    model = translator.model
    total = count = 0
    was = model.training
    model.eval()
    try:
        with ablate(translator, heads), no_grad():
            for _, src, tin, tout in teacher_forced_batches(translator, pairs, batch_size):
                s, n = _loss_sum(model(src, tin).data, tout, model.config.pad_idx)
                total += s
                count += n
    finally:
        model.train(was)
    return total / count


@dataclasses.dataclass
class HeadImportance:
    """Single-head ablation on the teacher-forced loss.

    heads: list of (kind, layer, head); loss (n_heads,): loss with that
    head zeroed; delta = loss - base_loss (nats per target token; > 0: the
    head helps); base_loss; table: {kind: (layers, heads) array of delta};
    order: indices into heads from least to most important; n_pairs,
    n_tokens, seconds; caption."""
    heads: list
    base_loss: float
    loss: np.ndarray
    delta: np.ndarray
    table: dict
    n_pairs: int
    n_tokens: int
    seconds: float
    caption: str = ""

    @property
    def order(self):
        """Head indices sorted from the least to the most important (ties by position)."""
        return [int(i) for i in np.argsort(self.delta, kind="stable")]

    def top(self, n=5):
        """The n most important heads as [((kind, layer, head), delta), ...]."""
        return [(self.heads[i], float(self.delta[i])) for i in self.order[::-1][:n]]

    def to_dict(self):
        """JSON-able dict of every field."""
        return {"heads": [list(h) for h in self.heads], "base_loss": self.base_loss,
                "loss": self.loss.tolist(), "delta": self.delta.tolist(),
                "table": {k: v.tolist() for k, v in self.table.items()},
                "order": self.order, "n_pairs": self.n_pairs, "n_tokens": self.n_tokens,
                "seconds": self.seconds, "caption": self.caption}


def _head_name(h):
    return f"{h[0]} L{h[1]} H{h[2]}"


def _first(pairs, max_pairs, name="max_pairs"):
    if max_pairs is None:
        return list(pairs)
    return list(pairs)[:int_arg(name, max_pairs, 1)]


def head_importance(translator, pairs, batch_size=128, max_pairs=300):
    """HeadImportance of every attention head of `translator` over the first
    `max_pairs` of `pairs` (None: all): one batched teacher-forced pass per
    head, the layers below the head reused. Cost: about 0.6 of a forward
    pass per head (36 heads x 300 pairs: ~5 s on 2 idle cores)."""
    _check_translator(translator)
    pairs = _first(pairs, max_pairs)
    t0 = time.perf_counter()
    model = translator.model
    heads = all_heads(translator)
    sums = np.zeros(len(heads))
    base = 0.0
    count = 0
    pad = model.config.pad_idx
    was = model.training
    model.eval()
    try:
        with no_grad():
            for _, src, tin, tout in teacher_forced_batches(translator, pairs, batch_size):
                run = _Prefix(model, src, tin)
                s, n = _loss_sum(run.base_logits, tout, pad)
                base += s
                count += n
                for j, (kind, layer, h) in enumerate(heads):
                    with ablate(translator, [(kind, layer, h)]):
                        sums[j] += _loss_sum(run.logits(kind if kind == "encoder" else
                                                        "decoder", layer), tout, pad)[0]
    finally:
        model.train(was)
    loss = sums / count
    base_loss = base / count
    delta = loss - base_loss
    table = {}
    for kind in ATTENTION_KINDS:
        rows = [(lay, h, d) for (k, lay, h), d in zip(heads, delta) if k == kind]
        if rows:
            t = np.zeros((max(r[0] for r in rows) + 1, max(r[1] for r in rows) + 1))
            for lay, h, d in rows:
                t[lay, h] = d
            table[kind] = t
    res = HeadImportance(heads=heads, base_loss=base_loss, loss=loss, delta=delta,
                         table=table, n_pairs=len(pairs), n_tokens=count, seconds=0.0)
    top = ", ".join(f"{_head_name(h)} (+{d:.3f})" for h, d in res.top(3))
    harmless = int((np.abs(delta) < 0.01 * base_loss).sum())
    res.caption = (
        "Head importance by ablation: each head is zeroed alone (its output removed before "
        "the attention's output projection) and the teacher-forced loss on the gold "
        f"translations of {len(pairs)} pairs is measured again (base {base_loss:.3f} nats per "
        "target token). A large increase means the model relies on that head; a change near "
        f"0 means it can go. Most important: {top}; {harmless} of {len(heads)} heads change "
        "the loss by less than 1% of the base loss. Rows of each table are layers, columns heads; "
        "'encoder' = encoder self-attention, 'decoder' = masked decoder self-attention, "
        "'cross' = decoder-to-encoder attention.")
    res.seconds = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------------
# pruning curve on BLEU

def bleu_score(hypotheses, references):
    """Corpus BLEU (sacrebleu, default 13a tokenisation) of hypothesis
    strings against one reference string each; None when sacrebleu is not
    installed."""
    try:
        import sacrebleu
    except ImportError:
        return None
    if len(hypotheses) != len(references):
        raise ValueError(f"references: expected {len(hypotheses)} like hypotheses, got "
                         f"{len(references)}")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def _greedy(translator, sources, batch_size=256):
    """Greedy translations of `sources`, decoded in batches sorted by length."""
    order = sorted(range(len(sources)), key=lambda k: len(sources[k].split()))
    out = [None] * len(sources)
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        for k, t in zip(idx, translator.translate([sources[k] for k in idx])):
            out[k] = t
    return out


def _largest_passing(ok, n):
    """The largest k in [0, n] with ok(k), by binary search assuming ok(0)
    holds and ok is monotone (true up to some k, false after); calls ok
    about log2(n + 1) times, never at 0."""
    lo, hi = 0, n + 1                          # ok(lo) holds; hi: first k known to fail
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclasses.dataclass
class PruningResult:
    """Cumulative pruning of the least important heads.

    order: heads in pruning order (least important first); points: one dict
    per evaluated count, sorted by k: {'k', 'bleu', 'loss', 'exact_match'}
    ('bleu' None without sacrebleu); base_bleu (k = 0); max_drop;
    max_prunable: the largest k found with base_bleu - bleu < max_drop
    (None without sacrebleu); pruned: those heads; bleu_available; n_pairs
    (decoded), seconds, decode_seconds (mean per decoding), caption."""
    order: list
    points: list
    base_bleu: object
    max_drop: float
    max_prunable: object
    pruned: list
    bleu_available: bool
    n_pairs: int
    seconds: float
    decode_seconds: float
    caption: str = ""

    def to_dict(self):
        """JSON-able dict of every field."""
        return {"order": [list(h) for h in self.order], "points": [dict(p) for p in self.points],
                "base_bleu": self.base_bleu, "max_drop": self.max_drop,
                "max_prunable": self.max_prunable, "pruned": [list(h) for h in self.pruned],
                "bleu_available": self.bleu_available, "n_pairs": self.n_pairs,
                "seconds": self.seconds, "decode_seconds": self.decode_seconds,
                "caption": self.caption}


def prune_heads(translator, pairs, importance, max_drop=1.0, max_pairs=200, batch_size=256):
    """PruningResult: remove heads in increasing `importance` order (a
    HeadImportance) and binary-search the largest count whose greedy BLEU on
    the first `max_pairs` of `pairs` (None: all) stays within `max_drop` of
    the unpruned model's: at most ceil(log2(#heads + 2)) + 1 greedy
    decodings (7 for 36 heads). Each point also records the teacher-forced loss and the
    exact-match rate on the same pairs. Without sacrebleu only the loss and
    exact match of the unpruned, half- and fully pruned models are given and
    the BLEU fields are None."""
    _check_translator(translator)
    pairs = _first(pairs, max_pairs)
    if not isinstance(importance, HeadImportance):
        raise TypeError(f"importance: expected a HeadImportance, got "
                        f"{type(importance).__name__}")
    if not max_drop > 0:
        raise ValueError(f"max_drop: expected a positive number of BLEU points, got {max_drop!r}")
    t0 = time.perf_counter()
    order = [importance.heads[i] for i in importance.order]
    tok = [_token_pair(p, k) for k, p in enumerate(pairs)]
    sources = [" ".join(src) for src, _ in tok]
    refs = [" ".join(tgt) for _, tgt in tok]
    have_bleu = bleu_score(["a"], ["a"]) is not None
    points = {}
    dec_times = []

    def evaluate(k):
        if k not in points:
            heads = order[:k]
            with ablate(translator, heads):
                d0 = time.perf_counter()
                hyps = _greedy(translator, sources, batch_size)
                dec_times.append(time.perf_counter() - d0)
            points[k] = {"k": k, "bleu": bleu_score(hyps, refs),
                         "loss": teacher_forced_loss(translator, pairs, heads),
                         "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs)]))}
        return points[k]

    base = evaluate(0)
    n = len(order)
    best = None
    if have_bleu:
        best = _largest_passing(lambda k: base["bleu"] - evaluate(k)["bleu"] < max_drop, n)
    else:
        evaluate(n // 2)
        evaluate(n)
    pts = [points[k] for k in sorted(points)]
    res = PruningResult(order=order, points=pts, base_bleu=base["bleu"], max_drop=float(max_drop),
                        max_prunable=best, pruned=order[:best] if best is not None else [],
                        bleu_available=have_bleu, n_pairs=len(pairs), seconds=0.0,
                        decode_seconds=float(np.mean(dec_times)))
    if have_bleu:
        res.caption = (
            f"Pruning heads from the least to the most important (single-head loss ablation "
            f"order): greedy BLEU on {len(pairs)} pairs, found by binary search at "
            f"{len(pts)} counts. With {best} of {n} heads removed BLEU is "
            f"{points[best]['bleu']:.2f} against {base['bleu']:.2f} for the full model "
            f"(less than {max_drop:g} lost); read the curve as how much redundancy the "
            "heads have. The search assumes the loss of BLEU grows with the number of heads "
            "removed; every measured point is shown.")
    else:
        res.caption = (
            "BLEU was not measured: sacrebleu is not installed (pip install sacrebleu). "
            f"Shown instead: teacher-forced loss and exact match with 0, {n // 2} and {n} of "
            f"{n} heads removed in increasing importance order.")
    res.seconds = time.perf_counter() - t0
    return res
