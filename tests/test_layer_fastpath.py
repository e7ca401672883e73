"""The whole-layer fast path (nn._fast over csrc/layer_*.c) against the
module path it replaces in eval mode under no_grad.

Bound: on the same inputs the two paths run the same kernels in the same
order on the same row counts, so they agree to float rounding; asserted
max |fast - module| <= TOL[dtype] * max |module| with TOL 1e-12 (float64)
and 1e-5 (float32, a few float32 ulps of the layer outputs times the
depth). Measured over 200 random encoder configurations per dtype and
the BERT test, every module of the reference on its module path (Intel
Xeon, Sapphire Rapids class, AVX-512): float64 bitwise equal in all 206
comparisons. float32 encoder stacks read packed copies of their
projection weights (csrc/linear_packed.c), whose outputs sum in another
order than the module path's few-rows kernel or GEMM: float32 within a
few ulps of the outputs times the depth.

The cached decoder step (one C call per position for the whole stack)
sums its single-query attention in its own order (attention_decode.c), so
it agrees with the module path's cached step and with the full causal
decoder to rounding, under the same TOL. Measured over 100 random
configurations (every step of each compared with both): float64 at most
1.1e-15 relative, float32 at most 4.3e-7.
"""
import copy

import numpy as np
import pytest

from pytransformer import nn
from pytransformer.autograd.tensor import Tensor, no_grad
from pytransformer.nn import _fast
from pytransformer.pretrained.bert import BertConfig, BertModel

TOL = {np.float32: 1e-5, np.float64: 1e-12}
MASKS = ("none", "key_bool", "key_float", "attn_bool", "attn_float", "both", "causal")


def _close(fast, ref, dt):
    fast = fast.data if isinstance(fast, Tensor) else fast
    ref = ref.data if isinstance(ref, Tensor) else ref
    assert fast.shape == ref.shape and fast.dtype == ref.dtype
    scale = max(np.abs(ref).max(), 1e-30)
    err = np.abs(fast - ref).max() / scale
    assert err <= TOL[dt], f"relative error {err:.3e} above {TOL[dt]:.0e}"


def _module_path(module, *args, **kw):
    """The module path all the way down: a forward hook on a module makes
    its fast path step aside, so every module of the tree gets one (a hook
    on the top module alone would leave each layer its own C path)."""
    hs = [m.register_forward_hook(lambda *a: None) for m in module.modules()]
    try:
        with no_grad():
            return module(*args, **kw)
    finally:
        for h in hs:
            h.remove()


def _masks(rng, kind, B, T, dt):
    kw = {}
    lens = rng.integers(1, T + 1, B)
    pad = np.arange(T)[None, :] >= lens[:, None]                 # True = padding
    attn = np.triu(np.ones((T, T), bool), 1) & (rng.random((T, T)) < 0.7)
    if kind in ("key_bool", "both"):
        kw["src_key_padding_mask"] = pad
    if kind == "key_float":
        kw["src_key_padding_mask"] = np.where(pad, -np.inf, rng.normal(size=(B, T))).astype(dt)
    if kind in ("attn_bool", "both"):
        kw["mask"] = attn
    if kind == "attn_float":
        kw["mask"] = rng.normal(size=(T, T)).astype(dt)
    if kind == "causal":
        kw["is_causal"] = True
    return kw


def _config(seed):
    rng = np.random.default_rng(seed)
    H = int(rng.choice([1, 2, 4]))
    E = H * int(rng.choice([4, 8, 16]))
    return rng, dict(E=E, H=H, F=int(rng.integers(8, 80)), B=int(rng.choice([1, 2, 5])),
                     T=int(rng.integers(1, 12)), norm_first=bool(rng.integers(2)),
                     act=str(rng.choice(["relu", "gelu"])), bias=bool(rng.integers(2)),
                     dt=[np.float32, np.float64][seed % 2], mask=MASKS[seed % len(MASKS)],
                     layers=int(rng.integers(1, 4)), final=bool(rng.integers(2)))


@pytest.mark.parametrize("seed", range(42))
def test_encoder_stack_matches_module_path(seed):
    rng, c = _config(seed)
    dt = c["dt"]
    layer = nn.TransformerEncoderLayer(c["E"], c["H"], c["F"], dropout=0.1, activation=c["act"],
                                       norm_first=c["norm_first"], bias=c["bias"], dtype=dt)
    norm = nn.LayerNorm(c["E"], bias=c["bias"], dtype=dt) if c["final"] else None
    enc = nn.TransformerEncoder(layer, c["layers"], norm)
    for p in enc.parameters():     # non-trivial norms and biases
        p.data += rng.normal(scale=0.1, size=p.shape).astype(dt)
    enc.eval()
    x = Tensor(rng.normal(size=(c["B"], c["T"], c["E"])).astype(dt))
    kw = _masks(rng, c["mask"], c["B"], c["T"], dt)
    with no_grad():
        fast = enc(x, **kw)
        one = enc.layers[0](x, src_mask=kw.get("mask"),
                            src_key_padding_mask=kw.get("src_key_padding_mask"),
                            is_causal=kw.get("is_causal", False))
    assert _fast._ENTRIES[enc].stack is not None       # the C layer ran
    assert _fast._ENTRIES[enc.layers[0]].stack is not None
    _close(fast, _module_path(enc, x, **kw), dt)
    _close(one, _module_path(enc.layers[0], x, src_mask=kw.get("mask"),
                             src_key_padding_mask=kw.get("src_key_padding_mask"),
                             is_causal=kw.get("is_causal", False)), dt)
    assert np.array_equal(x.data, x.data.copy())       # the input is not written


def _small_encoder(dt=np.float32, **kw):
    layer = nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, dtype=dt, **kw)
    return nn.TransformerEncoder(layer, 2, nn.LayerNorm(16, dtype=dt)).eval()


def test_hooks_see_every_module_and_training_keeps_autograd():
    enc = _small_encoder()
    x = Tensor(np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32))
    seen = []
    h = enc.layers[1].linear1.register_forward_hook(lambda m, a, o: seen.append(o.shape))
    with no_grad():
        enc(x)
    h.remove()
    assert seen == [(2, 5, 24)]                         # the module path ran
    with no_grad():
        enc(x)
    assert _fast._ENTRIES[enc].stack is not None
    y = enc(x)                                          # grad enabled: module path
    assert y.requires_grad
    enc.train()
    y = enc(x)
    y.sum().backward()
    assert enc.layers[0].linear1.weight.grad is not None


def test_stack_follows_replaced_weights():
    rng = np.random.default_rng(1)
    enc = _small_encoder(np.float64)
    x = Tensor(rng.normal(size=(2, 4, 16)))
    with no_grad():
        enc(x)
    # load_state_dict copies in place; a new Parameter or a new array is a rebuild
    sd = {k: rng.normal(size=v.shape) for k, v in enc.state_dict().items()}
    enc.load_state_dict(sd)
    enc.layers[0].linear2.weight = nn.Parameter(rng.normal(size=(16, 24)))
    enc.layers[1].norm1.bias.data = rng.normal(size=16)
    enc.layers[1].linear1 = nn.Linear(16, 24, dtype=np.float64)
    with no_grad():
        fast = enc(x)
    _close(fast, _module_path(enc, x), np.float64)


def test_fallbacks_match_module_path():
    rng = np.random.default_rng(2)
    x = Tensor(rng.normal(size=(2, 4, 16)).astype(np.float32))
    enc = _small_encoder()
    per_head = rng.normal(size=(2 * 2, 4, 4)).astype(np.float32)     # (B*H, T, T)
    with no_grad():
        y = enc(x, mask=per_head)
    _close(y, _module_path(enc, x, mask=per_head), np.float32)
    custom = _small_encoder(activation=lambda t: t * 0.5)
    with no_grad():
        custom(x)
    assert _fast._ENTRIES[custom].stack is None                      # not packed
    seq_first = nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, batch_first=False).eval()
    xs = Tensor(np.ascontiguousarray(x.data.transpose(1, 0, 2)))
    with no_grad():
        y = seq_first(xs)
    assert _fast._ENTRIES[seq_first].stack is None
    _close(y, _module_path(seq_first, xs), np.float32)


def test_deepcopy_after_fast_path():
    enc = _small_encoder()
    x = Tensor(np.ones((1, 3, 16), np.float32))
    with no_grad():
        enc(x)
    twin = copy.deepcopy(enc)
    with no_grad():
        _close(twin(x), enc(x), np.float32)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_bert_fast_path(dt):
    rng = np.random.default_rng(3)
    cfg = BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=3, num_attention_heads=3,
                     intermediate_size=40, max_position_embeddings=16)
    bert = BertModel(cfg)
    for p in bert.parameters():
        p.data = rng.normal(scale=0.3, size=p.shape).astype(dt)
    ids = rng.integers(0, 50, (4, 9))
    am = np.ones((4, 9), np.int64)
    am[1, 5:] = 0
    am[2, 1:] = 0
    am[3, 3] = 0                                       # a hole inside a sentence
    with no_grad():
        fast, hidden = bert(ids, attention_mask=am, output_hidden_states=True)
        last = bert(ids, attention_mask=am)
        full = bert(ids)
    assert _fast._ENTRIES[bert].stack is not None
    ref, ref_hidden = _module_path(bert, ids, attention_mask=am, output_hidden_states=True)
    real = am.astype(bool)
    assert np.all(fast.data[~real] == 0)
    _close(fast.data[real], ref.data[real], dt)
    assert np.array_equal(last.data, fast.data)
    for h, r in zip(hidden, ref_hidden):
        _close(h.data[real], r.data[real], dt)
    _close(full, _module_path(bert, ids), dt)


# ---------------------------------------------------------------------------
# the cached decoder step: one C call for the whole stack per position

from pytransformer.nn.cache import DecoderCache  # noqa: E402


def _decoder(rng, c):
    dt = c["dt"]
    layer = nn.TransformerDecoderLayer(c["E"], c["H"], c["F"], dropout=0.1, activation=c["act"],
                                       norm_first=c["norm_first"], bias=c["bias"], dtype=dt)
    norm = nn.LayerNorm(c["E"], bias=c["bias"], dtype=dt) if c["final"] else None
    dec = nn.TransformerDecoder(layer, c["layers"], norm)
    for p in dec.parameters():
        p.data += rng.normal(scale=0.1, size=p.shape).astype(dt)
    return dec.eval()


def _step_inputs(rng, c, S):
    dt = c["dt"]
    B, E, T = c["B"], c["E"], c["T"]
    mem = rng.normal(size=(B, S, E)).astype(dt)
    pad = np.arange(S)[None, :] >= rng.integers(1, S + 1, B)[:, None]
    x = rng.normal(size=(B, T, E)).astype(dt)
    return mem, pad, x


@pytest.mark.parametrize("seed", range(24))
def test_cached_step_matches_python_step_and_full_decoder(seed):
    rng, c = _config(100 + seed)
    dt = c["dt"]
    dec = _decoder(rng, c)
    S = int(rng.integers(1, 9))
    mem, pad, x = _step_inputs(rng, c, S)
    with no_grad():
        fast_cache = DecoderCache(dec, mem, pad, max_len=c["T"] + 2)   # C cross keys/values
        _fast.enabled = False
        try:
            py_cache = DecoderCache(dec, mem, pad, max_len=c["T"] + 2)
        finally:
            _fast.enabled = True
        for (_, fc), (_, pc) in zip(fast_cache.layers, py_cache.layers):
            _close(fc.k, pc.k, dt)
            _close(fc.v, pc.v, dt)
        full = dec(Tensor(x), Tensor(mem), tgt_is_causal=True,
                   tgt_mask=np.triu(np.ones((c["T"], c["T"]), bool), 1),
                   memory_key_padding_mask=pad).data
        for t in range(c["T"]):
            xt = Tensor(x[:, t:t + 1])
            fast = _fast.decoder_step(dec, xt, fast_cache)
            assert fast is not None                               # the C step ran
            _fast.enabled = False
            try:
                ref = dec(xt, None, cache=py_cache)
            finally:
                _fast.enabled = True
            assert fast_cache.t == py_cache.t == t + 1
            _close(fast, ref, dt)
            _close(fast.data[:, 0], full[:, t], dt)
        for (fs, _), (ps, _) in zip(fast_cache.layers, py_cache.layers):
            assert fs.length == ps.length == c["T"]
            _close(fs.k[:, :, :c["T"]], ps.k[:, :, :c["T"]], dt)
            _close(fs.v[:, :, :c["T"]], ps.v[:, :, :c["T"]], dt)


def test_cached_step_through_forward_follows_reorder_and_hooks(monkeypatch):
    rng, c = _config(7)
    c.update(B=4, T=6, dt=np.float64)
    dec = _decoder(rng, c)
    mem, pad, x = _step_inputs(rng, c, 5)
    ran = []
    step = _fast.decoder_step

    def counted(*a):
        y = step(*a)
        ran.append(y is not None)
        return y
    monkeypatch.setattr(_fast, "decoder_step", counted)
    with no_grad():
        caches = [DecoderCache(dec, mem, pad, max_len=8) for _ in range(2)]
        outs = [[], []]
        for t in range(c["T"]):
            if t == 3:                                    # rows 0 and 2 leave the batch
                for cache in caches:
                    cache.reorder(np.array([1, 3]))
                x = x[[1, 3]]
            for i, cache in enumerate(caches):
                if i == 1:
                    h = dec.layers[0].linear1.register_forward_hook(lambda *a: None)
                outs[i].append(dec(Tensor(x[:, t:t + 1]), None, cache=cache).data)
                if i == 1:
                    h.remove()
    assert ran == [True, False] * c["T"]                 # C step, then the hooked module path
    for a, b in zip(*outs):
        _close(a, b, np.float64)


def test_hook_registered_mid_decoding_takes_effect_and_removal_restores_the_c_step(
        monkeypatch):
    """The hook check is cached per tree and redone only when something
    changed a module: a hook registered deep in the tree after the first
    steps sends the very next step through the modules (the hook sees it),
    its removal brings the C step back, and so do a pre-hook and a mode
    change (a dropout in training mode: the module path); every step
    before that equals the all-module run's."""
    rng, c = _config(3)
    c.update(B=3, T=8, dt=np.float64)
    dec = _decoder(rng, c)
    mem, pad, x = _step_inputs(rng, c, 5)
    ran = []
    step = _fast.decoder_step

    def counted(*a):
        y = step(*a)
        ran.append(y is not None)
        return y
    monkeypatch.setattr(_fast, "decoder_step", counted)
    deep = dec.layers[-1].multihead_attn.out_proj
    seen, handles = [], {}
    plan = {2: ("hook", True), 4: ("hook", False), 5: ("pre", True), 6: ("pre", False),
            7: ("train", None)}
    with no_grad():
        cache = DecoderCache(dec, mem, pad, max_len=10)
        outs = []
        for t in range(c["T"]):
            what, on = plan.get(t, (None, None))
            if what == "hook" and on:
                handles[what] = deep.register_forward_hook(lambda m, a, o: seen.append(t))
            elif what == "pre" and on:
                handles[what] = deep.register_forward_pre_hook(lambda m, a: seen.append(-t))
            elif what in ("hook", "pre"):
                handles.pop(what).remove()
            elif what == "train":
                dec.layers[0].dropout.train()
            outs.append(dec(Tensor(x[:, t:t + 1]), None, cache=cache).data)
        monkeypatch.setattr(_fast, "enabled", False)
        dec.eval()
        ref_cache = DecoderCache(dec, mem, pad, max_len=10)
        ref = [dec(Tensor(x[:, t:t + 1]), None, cache=ref_cache).data for t in range(c["T"])]
    assert ran[:8] == [True, True, False, False, True, False, True, False]
    assert seen == [2, 3, -5]
    for a, b in zip(outs[:7], ref):
        _close(a, b, np.float64)


def test_cached_step_allocates_nothing_per_token():
    """tracemalloc's peak over each step, above what was allocated before
    it: the step's output (B x E) and a few small Python objects; nothing
    that grows with the layers, the capacity or the step (the caches and
    the workspace are preallocated). Measured: 948 bytes per step here
    (B 8, E 4..64, 3 layers), against 18 kB for the module path."""
    import tracemalloc
    rng, c = _config(11)
    c.update(B=8, dt=np.float32, layers=3)
    dec = _decoder(rng, c)
    mem, pad, _ = _step_inputs(rng, c, 6)
    xt = Tensor(rng.normal(size=(8, 1, c["E"])).astype(np.float32))
    with no_grad():
        cache = DecoderCache(dec, mem, pad, max_len=40)
        for _ in range(4):                                # workspace, mask, binding
            dec(xt, None, cache=cache)
        peaks = []
        tracemalloc.start()
        try:
            for _ in range(32):
                tracemalloc.reset_peak()
                now = tracemalloc.get_traced_memory()[0]
                dec(xt, None, cache=cache)
                peaks.append(tracemalloc.get_traced_memory()[1] - now)
        finally:
            tracemalloc.stop()
    assert cache.t == 36
    assert max(peaks) <= xt.data.nbytes + 2048, peaks


def test_results_do_not_depend_on_the_thread_count():
    from pytransformer import _core
    rng, c = _config(5)
    c.update(B=6, T=9, dt=np.float32, layers=2)
    enc = _small_encoder()
    dec = _decoder(rng, dict(c, E=16, H=2, F=24))
    x = Tensor(rng.normal(size=(6, 9, 16)).astype(np.float32))
    pad = np.arange(9)[None, :] >= rng.integers(1, 10, 6)[:, None]
    mem = rng.normal(size=(6, 7, 16)).astype(np.float32)
    mpad = np.arange(7)[None, :] >= rng.integers(1, 8, 6)[:, None]
    before = _core.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            _core.set_num_threads(n)
            with no_grad():
                y = enc(x, src_key_padding_mask=pad).data
                cache = DecoderCache(dec, mem, mpad, max_len=4)
                steps = [dec(x[:, t:t + 1], None, cache=cache).data for t in range(3)]
            outs.append((y, steps))
    finally:
        _core.set_num_threads(before)
    assert np.array_equal(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        assert np.array_equal(a, b)
