"""Incremental decoding through the modules: MultiheadAttention and the
decoder layers with nn.cache caches give what the full (uncached) forward
gives at the same positions."""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import nn
from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor
from pytransformer.nn.cache import AttentionCache, DecoderCache


def _decoder(norm_first, dtype=np.float64, layers=2, seed=0):
    pt.manual_seed(seed)
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first,
                                       dtype=dtype)
    return nn.TransformerDecoder(layer, layers, nn.LayerNorm(16, dtype=dtype)).eval()


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("chunk", [1, 3])
def test_cached_decoder_equals_full_decoder(norm_first, chunk):
    """Positions fed one (or three) at a time through a DecoderCache give
    the causal full decoder's outputs, with source padding."""
    dec = _decoder(norm_first)
    rng = np.random.default_rng(1)
    B, S, T = 3, 5, 7
    mem = Tensor(rng.standard_normal((B, S, 16)))
    tgt = Tensor(rng.standard_normal((B, T, 16)))
    pad = np.zeros((B, S), bool)
    pad[1, 3:] = True
    with no_grad():
        full = dec(tgt, mem, memory_key_padding_mask=pad, tgt_is_causal=True).data
        cache = DecoderCache(dec, mem, pad, max_len=T)
        outs = []
        for t in range(0, T, chunk):
            outs.append(dec(Tensor(tgt.data[:, t:t + chunk]), None, cache=cache).data)
        assert cache.t == T
    np.testing.assert_allclose(np.concatenate(outs, 1), full, rtol=1e-10, atol=1e-12)


def test_reorder_follows_rows():
    """After reorder(index) the cache decodes as if built from those rows."""
    dec = _decoder(False, seed=2)
    rng = np.random.default_rng(3)
    mem = Tensor(rng.standard_normal((3, 4, 16)))
    x = rng.standard_normal((3, 2, 16))
    index = np.array([2, 2, 0])
    with no_grad():
        a = DecoderCache(dec, mem, None, max_len=4)
        dec(Tensor(x[:, :1]), None, cache=a)
        a.reorder(index)
        ya = dec(Tensor(x[index, 1:]), None, cache=a).data
        b = DecoderCache(dec, Tensor(mem.data[index]), None, max_len=4)
        dec(Tensor(x[index, :1]), None, cache=b)
        yb = dec(Tensor(x[index, 1:]), None, cache=b).data
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-13)


def test_cache_capacity_and_layer_count_are_checked():
    dec = _decoder(False)
    mem = Tensor(np.zeros((1, 2, 16)))
    with no_grad():
        cache = DecoderCache(dec, mem, None, max_len=1)
        dec(Tensor(np.zeros((1, 1, 16))), None, cache=cache)
        with pytest.raises(ValueError, match="capacity"):
            dec(Tensor(np.zeros((1, 1, 16))), None, cache=cache)
        with pytest.raises(ValueError, match="layers"):
            _decoder(False, layers=3)(Tensor(np.zeros((1, 1, 16))), None,
                                      cache=DecoderCache(dec, mem, None, max_len=2))
    with pytest.raises(ValueError, match="max_len"):
        DecoderCache(dec, mem, None, max_len=0)
    with pytest.raises(ValueError, match="memory_key_padding_mask"):
        DecoderCache(dec, mem, np.zeros((1, 3), bool), max_len=2)


def test_attention_cache_static_is_read_only():
    """A static cache (cross-attention) gives the attention over the memory
    it was built from, however many queries arrive."""
    pt.manual_seed(4)
    mha = nn.MultiheadAttention(8, 2, dtype=np.float64).eval()
    rng = np.random.default_rng(5)
    q = Tensor(rng.standard_normal((2, 3, 8)))
    m = Tensor(rng.standard_normal((2, 4, 8)))
    with no_grad():
        full = mha(q, m, m, need_weights=False)[0].data
        k, v = mha.project_kv(m)
        cache = AttentionCache(k.data, v.data, 4, static=True)
        out = mha(q, None, None, cache=cache)[0].data
    assert cache.length == 4
    np.testing.assert_allclose(out, full, rtol=1e-12, atol=1e-13)


def test_keep_reuses_its_buffers_and_checks_rows():
    """keep() gathers into a second pair of buffers and swaps them, so
    repeated reorders of the same size allocate nothing; bad rows raise."""
    c = AttentionCache.empty(4, 2, 6, 3, np.float64)
    rng = np.random.default_rng(0)
    c.append(rng.standard_normal((4, 2, 2, 3)), rng.standard_normal((4, 2, 2, 3)))
    want_k = c.k[[3, 3, 0, 1], :, :2].copy()
    c.keep([3, 3, 0, 1])
    np.testing.assert_array_equal(c.k[:, :, :2], want_k)
    first = (c.k.ctypes.data, c._spare[0].ctypes.data)
    c.keep([0, 1, 2, 3])
    c.keep([0, 1, 2, 3])
    assert (c.k.ctypes.data, c._spare[0].ctypes.data) == first     # swapped back, no new array
    c.keep([-1, 0])                                                # fewer rows: leading views
    assert c.k.shape[0] == 2 and c.k.flags.c_contiguous
    with pytest.raises(IndexError, match="row indices must be in"):
        c.keep([2])


def test_lean_decode_step_is_the_module_step_bitwise(monkeypatch):
    """Without hooks, decode_step runs its kernels on arrays (no module
    calls); the logits are bitwise those of the module path, and a hook
    anywhere sends it back through the modules."""
    from pytransformer.nn.seq2seq import Seq2SeqTransformer
    pt.manual_seed(3)
    cfg = nn.Seq2SeqConfig(20, 24, 16, 2, 2, 2, 32, dropout=0.0, max_len=8)
    model = nn.Seq2SeqTransformer(cfg).eval()
    src = np.random.default_rng(4).integers(3, 20, (3, 5))
    tokens = np.array([[1, 1, 1], [5, 6, 7], [8, 9, 10]])

    def run():
        with no_grad():
            memory, pad = model.encode(src)
            cache = model.init_cache(memory, pad, 8)
            return [model.decode_step(t, cache) for t in tokens]
    lean = run()
    monkeypatch.setattr(Seq2SeqTransformer, "_unhooked_eval", lambda self: False)
    modules = run()
    for a, b in zip(lean, modules):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    calls = []
    h = model.generator.register_forward_hook(lambda *a: calls.append(1))
    run()
    h.remove()
    assert len(calls) == len(tokens)              # the hooked generator saw every step


def test_cache_gather_copies_the_filled_positions_of_the_chosen_rows():
    """_core.cache_gather (beam search's reordering in C) equals NumPy's
    gather on the first t positions, leaves the rest of dst alone, and
    refuses bad rows, shapes and overlapping buffers."""
    from pytransformer import _core
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        src = rng.standard_normal((5, 3, 8, 4)).astype(dtype)
        dst = np.full((4, 3, 8, 4), 9.0, dtype)
        index = np.array([4, 0, 0, 2])
        _core.cache_gather(dst, src, index, 6)
        np.testing.assert_array_equal(dst[:, :, :6], src[index, :, :6])
        assert (dst[:, :, 6:] == 9.0).all()
    with pytest.raises(ValueError):
        _core.cache_gather(dst, src, np.array([5, 0, 0, 0]), 6)      # row 5 of 5
    with pytest.raises(ValueError, match="t: expected"):
        _core.cache_gather(dst, src, index, 9)
    with pytest.raises(ValueError, match="dst"):
        _core.cache_gather(dst[:2], src, index, 6)
    with pytest.raises(ValueError, match="overlap"):
        _core.cache_gather(src[:4], src, index, 6)
