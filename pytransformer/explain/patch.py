"""Activation patching: run a model with some captured activations replaced
by others, and see what changes (a counterfactual: "what if the encoder
saw 'red' where it saw 'blue'?").

    donor = trace(tr, "the ball is red")
    p = Patch("layer", "encoder", 2, positions=[3],
              values=donor.layer("encoder", 2).output[0, [3]])
    patched_translate(tr, "the ball is blue", [p])          # ['la bola es roja']

Sites: "layer" (a layer's output, the residual stream), "attention" (an
attention module's output, kinds encoder/decoder/cross), "ffn.hidden" (the
feed-forward hidden activations) and "ffn.output" (what the feed-forward
block adds). Patches are forward hooks that exist only inside
:func:`patching`; the model is unchanged afterwards.
"""
import dataclasses
from typing import Callable, Optional, Sequence, Union

import numpy as np

from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor
from pytransformer.nn.attention import MultiheadAttention
from pytransformer.nn.transformer import TransformerDecoderLayer, TransformerEncoderLayer
from .trace import _classify, trace
from pytransformer.validation import is_int

__all__ = ["Patch", "SITES", "counterfactual", "patched_translate", "patching"]

SITES = ("layer", "attention", "ffn.hidden", "ffn.output")


@dataclasses.dataclass
class Patch:
    """Replace activation `site` of (`kind`, `layer`) at sequence
    `positions` with `values` ((len(positions), width) array, or a function
    taking the (len(positions), width) activations and returning the
    replacement), in batch row `row` (None: every row)."""
    site: str
    kind: str
    layer: int
    positions: Sequence[int]
    values: Union[np.ndarray, Callable]
    row: Optional[int] = None

    def __post_init__(self):
        if self.site not in SITES:
            raise ValueError(f"site: expected one of {SITES}, got {self.site!r}")
        if self.kind not in ("encoder", "decoder", "cross"):
            raise ValueError(f"kind: expected 'encoder', 'decoder' or 'cross', got {self.kind!r}")
        if self.kind == "cross" and self.site != "attention":
            raise ValueError("kind 'cross' exists only for site 'attention'")
        self.positions = [int(p) for p in np.atleast_1d(self.positions)]
        if not self.positions:
            raise ValueError("positions: no positions given")
        if not callable(self.values):
            v = np.asarray(self.values, np.float64)
            if v.ndim == 1:
                v = v[None]
            if v.ndim != 2 or v.shape[0] != len(self.positions):
                raise ValueError(f"values: expected shape ({len(self.positions)}, width), "
                                 f"got {np.shape(self.values)}")
            self.values = v

    def apply(self, x):
        """x (B, T, W) array -> a patched copy (positions beyond T are left
        for later, longer calls: the uncached decoder grows T by one a step)."""
        x = np.array(x, copy=True)
        keep = [i for i, p in enumerate(self.positions) if p < x.shape[1]]
        if not keep:
            return x
        pos = [self.positions[i] for i in keep]
        rows = slice(None) if self.row is None else self.row
        if callable(self.values):
            new = np.asarray(self.values(x[rows, pos, :]), np.float64)
        else:
            new = self.values[keep]
            if new.shape[-1] != x.shape[-1]:
                raise ValueError(f"values: width {new.shape[-1]} does not match the "
                                 f"activation's width {x.shape[-1]} at {self.site} "
                                 f"{self.kind} {self.layer}")
        x[rows, pos, :] = new
        return x


def _find(net, patch):
    layers = {}
    for name, m in net.named_modules():
        if isinstance(m, (TransformerEncoderLayer, TransformerDecoderLayer, MultiheadAttention)):
            kind, layer = _classify(name)
            if isinstance(m, MultiheadAttention):
                layers[("attention", kind, layer)] = m
            else:
                layers[("layer", kind, layer)] = m
    n = 1 + max((layer for (s, k, layer) in layers if k == patch.kind), default=-1)
    index = patch.layer + n if patch.layer < 0 else patch.layer
    site = "attention" if patch.site == "attention" else "layer"
    key = (site, patch.kind, index)
    if key not in layers:
        raise ValueError(f"patch: the model has no {patch.kind} layer {patch.layer} "
                         f"({n} {patch.kind} layers)")
    return layers[key]


def _as_tensor(like, arr):
    return Tensor(arr.astype(like.dtype, copy=False))


class patching:
    """Context manager: while open, `patches` replace activations of
    `model` (a Translator or a Module); every hook is removed on exit."""

    def __init__(self, model, patches):
        self.net = getattr(model, "model", model)
        self.patches = list(patches)
        self._handles = []

    def __enter__(self):
        try:
            for p in self.patches:
                self._handles.append(self._hook(p))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return False

    def _hook(self, p):
        m = _find(self.net, p)
        if p.site == "layer":
            return m.register_forward_hook(
                lambda mod, args, out: _as_tensor(out, p.apply(out.data)))
        if p.site == "attention":
            return m.register_forward_hook(
                lambda mod, args, out: (_as_tensor(out[0], p.apply(out[0].data)), out[1]))
        if p.site == "ffn.hidden":
            return m.linear2.register_forward_pre_hook(
                lambda mod, args: (_as_tensor(args[0], p.apply(args[0].data)),) + args[1:])
        return m.linear2.register_forward_hook(                          # ffn.output
            lambda mod, args, out: _as_tensor(out, p.apply(out.data)))


def patched_translate(translator, sentences, patches):
    """Greedy translations of `sentences` with `patches` applied. Decodes
    without the KV cache (every step re-runs the decoder, so decoder-side
    patches apply at every step)."""
    from pytransformer import decode
    from pytransformer.data import BOS, EOS
    single = isinstance(sentences, str)
    src, _ = translator.encode_sources([sentences] if single else sentences)
    with patching(translator, patches), no_grad():
        ids = decode.greedy(translator.model, src, bos=BOS, eos=EOS, use_cache=False)
    return [" ".join(translator.tgt_vocab.decode(i)) for i in ids]


def counterfactual(translator, base, donor, word, layer=-1, site="layer", donor_word=None):
    """Run `base` with the encoder's activation (`site`, `layer`) of `word`
    replaced by that of `donor_word` (default: the word at the same
    position) in the `donor` sentence. Returns a dict: the base, donor and
    patched translations, the positions used, and the words that changed."""
    bt = trace(translator, base)
    dt = trace(translator, donor)
    src_b, src_d = bt.src_tokens[0], dt.src_tokens[0]
    i = _position("word", word, src_b)
    j = i if donor_word is None else _position("donor_word", donor_word, src_d)
    if j >= len(src_d):
        raise ValueError(f"donor: has no position {j} (its tokens: {src_d})")
    rec = (dt.layer("encoder", layer).output if site == "layer"
           else dt.ffn("encoder", layer).hidden if site == "ffn.hidden"
           else dt.ffn("encoder", layer).output if site == "ffn.output"
           else dt.attention("encoder", layer).out)
    p = Patch(site, "encoder", layer, [i], rec[0, [j]])
    after = patched_translate(translator, base, [p])[0]
    before = " ".join(bt.tgt_out_tokens[0][:-1])
    changed = [(a, b) for a, b in zip(before.split(), after.split()) if a != b]
    return {"base": base, "donor": donor, "word": src_b[i], "donor_word": src_d[j],
            "position": i, "donor_position": j, "site": site, "layer": layer,
            "before": before, "donor_translation": " ".join(dt.tgt_out_tokens[0][:-1]),
            "after": after, "changed": changed}


def _position(name, word, tokens):
    if isinstance(word, str):
        if word.lower() not in tokens:
            raise ValueError(f"{name}: {word!r} is not in the sentence {tokens}")
        return tokens.index(word.lower())
    if not is_int(word) or not 0 <= word < len(tokens):
        raise ValueError(f"{name}: expected a word or a position in [0, {len(tokens)}), "
                         f"got {word!r}")
    return int(word)
