"""The inference fast path of the Transformer layers: whole layers (and
stacks) in one C call (csrc/layer_encoder.c, layer_decoder.c) instead of a
module call per op, and a Seq2SeqTransformer's whole greedy or beam-search
decoding loop in one C call (greedy, beam: csrc/decode_greedy.c,
decode_beam.c).

It runs when the module and every submodule are in eval mode, autograd is
off (no_grad) and no forward (pre-)hook is registered on the module or any
submodule (the explain tools rely on hooks seeing every module call: then
the module path runs). Those facts are kept per tree and checked again only
after something changed a module (nn.module.STRUCTURE), so a decoding step
does not walk the tree. Anything else the C layer does not implement -- sequence-first
inputs, per-head attention masks (B*H, T, T), separate q/k/v projection
weights, a custom activation, an overridden sublayer method, a final norm
that is not a LayerNorm, mixed dtypes -- makes these functions return None
and the caller runs its module path.

The encoder paths compute the same kernels in the same order (what can
differ is the row count a projection sees, which picks the linear
family's few-rows kernel or the GEMM), except that a float32 encoder
stack keeps packed copies of its four projection weights per layer
(LayerStack(packed=True), csrc/linear_packed.c), which its projections of
up to 512 rows read: those sum each output in k order where the module path's
few-rows kernel sums in 16 lanes and a tree. A float32 decoder stack keeps
packed copies of the six weights of its step per layer, and the decoding
loops one of the generator's weight, which products of at least
PT_DECODER_PACKED_ROWS (1) rows read. The copies follow in-place
changes of the weights (the Parameters' version counters, which the
library's in-place writers bump, and a sampled comparison for writes
into the arrays that no counter sees); the cached decoder step sums its
single-query attention in its own order (csrc/attention_decode.c). Both
agree with the module path to float rounding (tests/test_layer_fastpath.py
states and tests the bound).

A stack's parameter pointers are packed once into a _core.LayerStack, kept
per module in a weak dictionary (not on the module: modules are deep-copied
and pickled) and rebuilt when a parameter's array, a module's parameter, a
submodule or a packed attribute was replaced (identity checks per call).
"""
import math
import weakref
from operator import is_not

import numpy as np

from pytransformer import _core
from pytransformer.autograd.tensor import Tensor, is_grad_enabled
from pytransformer.nn.module import STRUCTURE

__all__ = ["layer_stack", "encoder_forward", "decoder_step", "cross_kv", "greedy", "beam",
           "additive_mask", "tree", "unhooked"]


# False runs the module path everywhere (to compare the two paths).
enabled = True
# False: stacks read their projection weights (and the decoding loops the
# generator's) in place instead of from packed copies
# (LayerStack(packed=True)); takes effect for stacks built afterwards (to
# compare the two).
packed = True

_ENTRIES = weakref.WeakKeyDictionary()   # owner module -> _Entry

# Plain attributes a packed layer depends on: a change rebuilds its stack.
_ATTRS = ("norm_first", "activation", "eps", "batch_first", "normalized_shape", "num_heads")


class _Entry:
    """What is kept per owner module: its LayerStack (None: the C layer
    cannot run it), every module of its tree (for the hook check) and
    (dict, key, value) triples -- each submodule and each attribute in
    _ATTRS -- whose identity must not change for the stack to stay valid,
    kept as three tuples so that valid() runs its loop in C (map).

    The tree's facts (no submodule replaced, a hook somewhere, a module in
    training mode) are checked again only when module.STRUCTURE has moved
    since the last check: a step then costs two integer compares here
    (and the stack's own check of its parameter arrays)."""

    __slots__ = ("stack", "mods", "dicts", "keys", "values", "seen", "_hooked", "_training")

    def __init__(self, stack, mods, deps):
        self.stack, self.mods = stack, mods
        self.dicts, self.keys, self.values = (tuple(c) for c in zip(*deps)) if deps else ((),) * 3
        self.seen = -1                  # the STRUCTURE count the facts below hold for
        self._hooked = self._training = False

    def _current(self):
        """Whether the tree's facts are those of the STRUCTURE count now;
        re-checked (and the facts recomputed) when it moved. False: a
        submodule or a packed attribute was replaced (rebuild the entry)."""
        now = STRUCTURE[0]
        if self.seen == now:
            return True
        if any(map(is_not, map(dict.get, self.dicts, self.keys), self.values)):
            return False
        mods = self.mods
        self._hooked = any(m._forward_hooks or m._forward_pre_hooks for m in mods)
        self._training = any(m.training for m in mods)
        self.seen = now
        return True

    def valid(self):
        """No submodule or packed attribute was replaced, no parameter array."""
        if not self._current():
            return False
        return self.stack is None or not self.stack.stale()

    def hooked(self):
        """Whether some module of the tree has a forward (pre-)hook."""
        self._current()
        return self._hooked

    def training(self):
        """Whether some module of the tree is in training mode."""
        self._current()
        return self._training


def _tree(owner):
    mods, deps, todo = [], [], [owner]
    while todo:
        m = todo.pop()
        mods.append(m)
        d = m.__dict__
        deps.extend((d, k, d[k]) for k in _ATTRS if k in d)
        for k, c in m._modules.items():
            deps.append((m._modules, k, c))
            if c is not None:
                todo.append(c)
    return mods, deps


_TREES = weakref.WeakKeyDictionary()     # owner module -> _Entry without a stack


def tree(owner):
    """Every module of owner's tree (owner included) as an entry with
    hooked() and training(), kept per owner and walked again only when a
    submodule was replaced."""
    e = _TREES.get(owner)
    if e is None or not e.valid():
        e = _Entry(None, *_tree(owner))
        _TREES[owner] = e
    return e


def unhooked(owner):
    """Whether no module of owner's tree has a forward (pre-)hook."""
    return not tree(owner).hooked()


def _entry(owner, layers, norm, decoder):
    e = _ENTRIES.get(owner)
    if e is None or not e.valid():
        mods, deps = _tree(owner)
        e = _Entry(_build(layers(), norm, decoder), mods, deps)
        _ENTRIES[owner] = e
    return e


def layer_stack(owner, layers, norm=None, decoder=False):
    """The LayerStack of the layers `layers()` returns (encoder or decoder
    layers) and the final `norm` (a LayerNorm or None), kept for `owner`
    and rebuilt when owner's tree changed; None when the C layer cannot run
    them or, now, a hook is registered in owner's tree, or a module of it
    is in training mode (dropout), or autograd is on."""
    if not enabled or owner.training or is_grad_enabled():
        return None
    e = _entry(owner, layers, norm, decoder)
    if e.stack is None or e.hooked() or e.training():
        return None
    return e.stack


def _layer_dict(layer, decoder):
    """The LayerStack description of an encoder or decoder layer, or None
    when the C layer cannot run it."""
    from pytransformer.nn import functional as F
    from pytransformer.nn.layers import LayerNorm
    from pytransformer.nn.transformer import TransformerDecoderLayer, TransformerEncoderLayer, _Layer
    base = TransformerDecoderLayer if decoder else TransformerEncoderLayer
    if not isinstance(layer, base):
        return None
    cls = type(layer)
    for name in ("forward", "_sa_block", "_ff_block") + (("_mha_block",) if decoder else ()):
        if getattr(cls, name) is not getattr(base, name, getattr(_Layer, name, None)):
            return None                    # a subclass changed the computation
    act = {F.relu: "relu", F.gelu: "gelu"}.get(layer.activation)
    if act is None:
        return None
    attns = [layer.self_attn] + ([layer.multihead_attn] if decoder else [])
    for a in attns:
        if not a.batch_first or not a._qkv_same_embed_dim:
            return None
    norms = [layer.norm1, layer.norm2] + ([layer.norm3] if decoder else [])
    for n in norms:
        if type(n) is not LayerNorm or len(n.normalized_shape) != 1:
            return None
    sa = layer.self_attn
    d = {"E": sa.embed_dim, "H": sa.num_heads, "F": layer.linear1.out_features,
         "norm_first": layer.norm_first, "act": act, "eps": tuple(n.eps for n in norms),
         "sa_w": (sa._parameters, "in_proj_weight"), "sa_b": (sa._parameters, "in_proj_bias"),
         "sa_ow": (sa.out_proj._parameters, "weight"), "sa_ob": (sa.out_proj._parameters, "bias"),
         "ff1_w": (layer.linear1._parameters, "weight"), "ff1_b": (layer.linear1._parameters, "bias"),
         "ff2_w": (layer.linear2._parameters, "weight"), "ff2_b": (layer.linear2._parameters, "bias")}
    for i, n in enumerate(norms, 1):
        d[f"n{i}_w"] = (n._parameters, "weight")
        d[f"n{i}_b"] = (n._parameters, "bias")
    if decoder:
        ca = layer.multihead_attn
        d.update({"ca_w": (ca._parameters, "in_proj_weight"),
                  "ca_b": (ca._parameters, "in_proj_bias"),
                  "ca_ow": (ca.out_proj._parameters, "weight"),
                  "ca_ob": (ca.out_proj._parameters, "bias")})
    return d


def _build(layers, norm, decoder):
    from pytransformer.nn.layers import LayerNorm
    if not layers:
        return None
    dicts = [_layer_dict(layer, decoder) for layer in layers]
    if any(d is None for d in dicts):
        return None
    final = None
    if norm is not None:
        if type(norm) is not LayerNorm or len(norm.normalized_shape) != 1:
            return None
        final = ((norm._parameters, "weight"), (norm._parameters, "bias"), norm.eps)
    dts = {p.data.dtype for layer in layers for p in layer.parameters()}
    if norm is not None:
        dts |= {p.data.dtype for p in norm.parameters()}
    if len(dts) != 1 or dts.pop() not in (np.float32, np.float64):
        return None
    try:
        return _core.LayerStack(dicts, final, decoder, packed=packed)
    except (TypeError, ValueError):   # a shape the C layer does not take
        return None


def additive_mask(m, shape, dtype):
    """A PyTorch-convention mask (bool True = may not attend, or float
    added to the scores; array or Tensor) of exactly `shape` as a
    C-contiguous additive array of dtype; None for None or an all-False
    bool mask; False when it has another shape (the caller falls back)."""
    if m is None:
        return None
    m = m.data if isinstance(m, Tensor) else np.asarray(m)
    if m.shape != shape:
        return False
    if m.dtype == np.bool_:
        if not m.any():
            return None
        return np.where(m, dtype.type(-np.inf), dtype.type(0))
    if m.dtype.kind != "f":
        return False
    return np.ascontiguousarray(m, dtype=dtype)


def encoder_forward(owner, layers, norm, src, mask, key_padding_mask, is_causal):
    """The encoder layers (`layers()` returns them) then norm, on src (B, T, E) through one C call,
    as a new Tensor; None when the fast path does not apply (the caller
    then runs its modules). mask (T, T) and key_padding_mask (B, T) in the
    modules' convention; is_causal applies when mask is None."""
    if not isinstance(src, Tensor) or src.ndim != 3:
        return None
    st = layer_stack(owner, layers, norm)
    if st is None or src.dtype != st.dtype or src.shape[2] != st.E:
        return None
    B, T, E = src.shape
    dt = st.dtype
    km = additive_mask(key_padding_mask, (B, T), dt)
    am = additive_mask(mask, (T, T), dt)
    if km is False or am is False:
        return None
    causal = bool(is_causal) and mask is None
    x = np.array(src.data, dtype=dt, order="C", copy=True).reshape(B * T, E)
    st.encoder_forward(x, None, km, am, B, T, causal)
    return Tensor(x.reshape(B, T, E))


def _memory_mask(cache, dtype):
    """The cache's memory mask (bool (B, 1, 1, S), True = attend, or None)
    as the additive (B, S) array the C step reads, converted once per mask
    object and kept on the cache; False when it is not such a mask."""
    m = cache.memory_mask
    if m is None:
        return None
    kept = cache.__dict__.get("_fast_mask")
    if kept is not None and kept[0] is m and kept[1].dtype == dtype:
        return kept[1]
    m = np.asarray(m)
    if m.dtype != np.bool_ or m.ndim != 4 or m.shape[1:3] != (1, 1):
        return False
    add = np.where(m[:, 0, 0, :], dtype.type(0), dtype.type(-np.inf))
    cache.__dict__["_fast_mask"] = (cache.memory_mask, add)
    return add


def decoder_step(owner, tgt, cache):
    """One cached decoding step of the decoder stack `owner` (a
    TransformerDecoder: its layers, then its norm) in one C call: tgt
    (B, 1, E) the new position's inputs, cache an nn.cache.DecoderCache
    whose self-attention caches take the position's keys/values in place
    (their preallocated capacity: no allocation per step but the output).
    Advances the cache like the module path and returns the (B, 1, E)
    Tensor; None when the fast path does not apply."""
    if not isinstance(tgt, Tensor) or tgt.ndim != 3 or tgt.shape[1] != 1:
        return None
    st = layer_stack(owner, lambda: list(owner.layers), owner.norm, decoder=True)
    if st is None or tgt.dtype != st.dtype or tgt.shape[2] != st.E:
        return None
    pairs = cache.layers
    if len(pairs) != st.nlayers:
        return None
    t = pairs[0][0].length
    arrays = []
    for sc, cc in pairs:
        if sc.length != t or sc.static or not cc.static:
            return None
        arrays += (sc.k, sc.v, cc.k, cc.v)
    if t >= pairs[0][0].capacity:
        return None                       # the module path says what is wrong
    mask = _memory_mask(cache, st.dtype)
    if mask is False:
        return None
    B, _, E = tgt.shape
    x = np.array(tgt.data.reshape(B, E), dtype=st.dtype, order="C", copy=True)
    try:
        st.decoder_step(x, arrays, mask, None, t)
    except (TypeError, ValueError):       # caches the C step cannot read in place
        return None
    for sc, _ in pairs:
        sc.length = t + 1
    cache.t += 1
    return Tensor(x.reshape(B, 1, E))


def cross_kv(decoder, memory):
    """The cross-attention keys and values of memory (B, S, E), a Tensor,
    for every layer of decoder (a TransformerDecoder) in one C call, as a
    list of (k, v) arrays (B, H, S, E/H): what a DecoderCache holds. None
    when the fast path does not apply."""
    if not isinstance(memory, Tensor) or memory.ndim != 3:
        return None
    st = layer_stack(decoder, lambda: list(decoder.layers), decoder.norm, decoder=True)
    if st is None or memory.dtype != st.dtype or memory.shape[2] != st.E:
        return None
    B, S, E = memory.shape
    shape = (B, st.H, S, E // st.H)
    ks = [np.empty(shape, st.dtype) for _ in range(st.nlayers)]
    vs = [np.empty(shape, st.dtype) for _ in range(st.nlayers)]
    st.cross_kv(ks, vs, np.ascontiguousarray(memory.data))
    return list(zip(ks, vs))


def _loop_parts(model, bos):
    """What the C decoding loops read of `model` (a Seq2SeqTransformer):
    (decoder LayerStack, target embedding, generator weight, generator
    bias or None, arrays of the stack's dtype, and the generator's weight
    Parameter, for the stack's packed copy of it); None when they cannot run
    it: not a Seq2SeqTransformer, a subclass or instance that changes the
    step (decode_step, _lean_step, _unhooked_eval, init_cache), a hook or
    a training module in the model, an embedding or generator that is not
    the plain module, mixed dtypes, bos outside the vocabulary."""
    from pytransformer.nn.layers import Embedding, Linear
    from pytransformer.nn.seq2seq import Seq2SeqTransformer
    if not enabled or model.training or is_grad_enabled():
        return None
    if not isinstance(model, Seq2SeqTransformer):
        return None
    cls = type(model)
    for name in ("decode_step", "_lean_step", "_unhooked_eval", "init_cache"):
        if name in model.__dict__ or getattr(cls, name) is not getattr(Seq2SeqTransformer, name):
            return None
    t = tree(model)
    if t.hooked() or t.training():
        return None
    emb, gen, decoder = model.tgt_embed, model.generator, model.transformer.decoder
    if type(emb) is not Embedding or type(gen) is not Linear:
        return None
    st = layer_stack(decoder, lambda: list(decoder.layers), decoder.norm, decoder=True)
    if st is None:
        return None
    dt = st.dtype
    W, G = emb.weight.data, gen.weight.data
    b = None if gen.bias is None else gen.bias.data
    if W.dtype != dt or G.dtype != dt or (b is not None and b.dtype != dt):
        return None
    if G.shape[0] > W.shape[0] or not 0 <= bos < G.shape[0]:
        return None                        # the step path says what is wrong
    return st, W, G, b, gen.weight


def greedy(model, cache, bos, eos, want_lps):
    """Greedy decoding by `model` (a Seq2SeqTransformer) over `cache` (a
    fresh DecoderCache from model.init_cache) in one C call
    (csrc/decode_greedy.c): each step embeds the newest tokens (scaled, plus
    the position), runs the decoder stack's cached step, the generator and
    the argmax with padding and `bos` excluded, and drops the rows that
    gave `eos` from the batch and from the self-attention caches (which
    are spent afterwards; the cross-attention ones are only read). The
    same kernels as decode_step's, on the same rows, but for the float32
    generator's product over the stack's packed copy of its weight (the
    logits agree to float32 rounding; tests/test_decode_loop.py). Returns
    (ids (B, max_len) int64, each step's token; lengths (B,) int64, the step that gave EOS or max_len;
    log-probabilities (B, max_len) float64 or None); None when the fast
    path does not apply (a hook or a training module in the model, a
    subclass that changes the step, an embedding or generator that is
    not the plain module, ...): the caller then steps through
    model.decode_step."""
    from pytransformer.nn.cache import DecoderCache
    if type(cache) is not DecoderCache:
        return None
    parts = _loop_parts(model, bos)
    if parts is None:
        return None
    st, W, G, b, gp = parts
    dt = st.dtype
    pairs = cache.layers
    if cache.t != 0 or len(pairs) != st.nlayers:
        return None
    arrays = []
    for sc, cc in pairs:
        if sc.length != 0 or sc.static or not cc.static or sc.capacity != cache.max_len:
            return None
        arrays += (sc.k, sc.v, cc.k, cc.v)
    if not all(a.dtype == dt and a.flags.c_contiguous for a in arrays):
        return None
    if not all(a.flags.writeable for a in arrays[0::4] + arrays[1::4]):
        return None                        # the C loop compacts the self caches in place
    mask = _memory_mask(cache, dt)
    if mask is False:
        return None
    B, T = cache.batch_size, cache.max_len
    positions = np.ascontiguousarray(model.positions, dtype=dt)
    ids = np.zeros((B, T), np.int64)
    lengths = np.empty(B, np.int64)
    lps = np.zeros((B, T)) if want_lps else None
    st.greedy(np.ascontiguousarray(W), math.sqrt(model.config.d_model), positions,
              np.ascontiguousarray(G), None if b is None else np.ascontiguousarray(b),
              arrays, mask, model.config.pad_idx, int(bos), int(eos), ids, lengths, lps,
              gen_param=gp)
    cache.t = T                            # spent: its rows were compacted
    for sc, _ in pairs:
        sc.length = T
    return ids, lengths, lps


# The caches of the beam loop, kept per decoder module between calls (up to
# _BEAM_KEEP bytes: fresh arrays cost page faults on first touch, a visible
# share of a batch's decoding). Taken out during a call, so that two
# threads decoding with one model do not share them.
_BEAM_CACHES = weakref.WeakKeyDictionary()
_BEAM_KEEP = 64 << 20


def beam(model, memory, src_pad, k, max_len, alpha, kind, bos, eos, want_lps):
    """Beam search of width k by `model` (a Seq2SeqTransformer) over
    memory (B, S, E) and src_pad (B, S) from model.encode, in one C call
    (csrc/decode_beam.c): the loop of decode.beam_search, with the same
    kernels on the same rows (the first step on B rows, then B*k, the
    rows of finished sentences dropped) and the same choices. alpha and
    kind ("gnmt" or "power") the length penalty. Returns, per sentence,
    its (at most k) hypotheses best first as (ids int64 (no BOS, no EOS),
    score, token log-probabilities float64 or None); None when the fast
    path does not apply (as greedy's: a hook, a training module, a
    subclass that changes the step, ...): the caller then runs the step
    loop."""
    parts = _loop_parts(model, bos)
    if parts is None or not isinstance(memory, Tensor) or memory.ndim != 3:
        return None
    st, W, G, b, gp = parts
    dt = st.dtype
    if memory.dtype != dt or memory.shape[2] != st.E:
        return None
    B, S, E = memory.shape
    pad = None if src_pad is None else np.asarray(src_pad)
    if pad is not None and (pad.shape != (B, S) or pad.dtype != np.bool_):
        return None
    N, H, d = B * k, st.H, E // st.H
    decoder = model.transformer.decoder
    spare = _BEAM_CACHES.pop(decoder, None)
    need = (N * E * max_len, B * E * S)
    if spare is None or spare[0] != dt or spare[1] < need[0] or spare[2] < need[1]:
        flat = [np.empty(need[i % 4 // 2], dt) for i in range(4 * st.nlayers)]
        spare = (dt, need[0], need[1], flat)
    shapes = ((N, H, max_len, d), (B, H, S, d))
    caches = [a[:need[i % 4 // 2]].reshape(shapes[i % 4 // 2]) for i, a in enumerate(spare[3])]
    st.cross_kv(caches[2::4], caches[3::4], np.ascontiguousarray(memory.data))
    mask = None
    if pad is not None and pad.any():               # as DecoderCache's memory mask
        mask = np.where(pad, dt.type(-np.inf), dt.type(0))
    positions = np.ascontiguousarray(model.positions, dtype=dt)
    count = np.zeros(B, np.int64)
    ids = np.zeros((B, k, max_len), np.int64)
    lengths = np.zeros((B, k), np.int64)
    ended = np.zeros((B, k), np.int64)
    scores = np.zeros((B, k))
    lps = np.zeros((B, k, max_len)) if want_lps else None
    st.beam(np.ascontiguousarray(W), math.sqrt(model.config.d_model), positions,
            np.ascontiguousarray(G), None if b is None else np.ascontiguousarray(b), caches,
            mask, B, model.config.pad_idx, int(bos), int(eos), k, kind, alpha, count, ids,
            lengths, ended, scores, lps, gen_param=gp)
    if sum(a.nbytes for a in spare[3]) <= _BEAM_KEEP:
        _BEAM_CACHES[decoder] = spare
    out = []
    for s in range(B):
        hyps = []
        for i in range(count[s]):
            n, e = int(lengths[s, i]), int(ended[s, i])
            hyps.append((ids[s, i, :n].copy(), float(scores[s, i]),
                         lps[s, i, :n + e].copy() if want_lps else None))
        out.append(hyps)
    return out
