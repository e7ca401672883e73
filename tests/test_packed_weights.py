"""The packed weight copies of the fast path (nn._fast builds float32
LayerStacks with packed=True: an encoder's projections, a decoder's step
weights, and the generator's weight the decoding loops read) never go
stale: after a forward or a decoding, a weight changed by each route the
library offers (and by a direct NumPy write of new values) makes the next
one use the new values -- bitwise the output of a stack built afresh over
them, and not the output before the change. In-place routes repack (the
stack is kept, its repack count moves); a new array or Parameter rebuilds
the stack (the generator's copy: is made again).
"""
import numpy as np
import pytest

from pytransformer import nn, optim
from pytransformer.autograd.tensor import Tensor, no_grad
from pytransformer.nn import _fast, init


def _encoder(seed=0):
    rng = np.random.default_rng(seed)
    layer = nn.TransformerEncoderLayer(32, 4, 80, dropout=0.0, activation="gelu",
                                       dtype=np.float32)
    enc = nn.TransformerEncoder(layer, 2, nn.LayerNorm(32, dtype=np.float32)).eval()
    x = Tensor(rng.normal(size=(1, 7, 32)).astype(np.float32))
    return enc, x, rng


def _fast_out(enc, x):
    with no_grad():
        return enc(x).data.copy()


def _fresh(enc, x):
    """The output of a stack built now, over the weights as they are."""
    _fast._ENTRIES.pop(enc, None)
    return _fast_out(enc, x)


def _new(rng, p):
    return rng.normal(size=p.shape).astype(np.float32)


def _sgd_step(enc, x, kind):
    enc.train()
    params = list(enc.parameters())
    opt = optim.SGD(params, lr=0.5) if kind == "sgd" else optim.AdamW(params, lr=0.05)
    enc(x).sum().backward()
    opt.step()
    enc.eval()


def _load_state_dict(enc, rng, w):
    sd = {k: v.copy() for k, v in enc.state_dict().items()}
    sd["layers.1.linear2.weight"] = _new(rng, w)
    enc.load_state_dict(sd)


ROUTES = {
    "load_state_dict": lambda enc, x, rng, w: _load_state_dict(enc, rng, enc.layers[1].linear2.weight),
    "sgd": lambda enc, x, rng, w: _sgd_step(enc, x, "sgd"),
    "adamw": lambda enc, x, rng, w: _sgd_step(enc, x, "adamw"),
    "copy_": lambda enc, x, rng, w: w.copy_(_new(rng, w)),
    "add_": lambda enc, x, rng, w: w.add_(np.float32(0.25)),
    "view_fill_": lambda enc, x, rng, w: w[3:5].fill_(2.0),
    "init_normal_": lambda enc, x, rng, w: init.normal_(w),
    "init_constant_": lambda enc, x, rng, w: init.constant_(w, 0.125),
    # no version counter sees these: the sampled comparison does
    "numpy_write": lambda enc, x, rng, w: np.copyto(w.data, _new(rng, w)),
    "numpy_scale": lambda enc, x, rng, w: w.data.__imul__(np.float32(1.5)),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("which", ["self_attn.in_proj_weight", "self_attn.out_proj.weight",
                                   "linear1.weight", "linear2.weight"])
def test_an_in_place_change_is_used_by_the_next_forward(route, which):
    enc, x, rng = _encoder()
    before = _fast_out(enc, x)
    st = _fast._ENTRIES[enc].stack
    assert st is not None and st.packed == 8        # 4 projections x 2 layers
    w = _param(enc.layers[1], which)
    if route in ("sgd", "adamw"):                   # a training step: autograd on
        ROUTES[route](enc, x, rng, w)
    else:
        with no_grad():
            ROUTES[route](enc, x, rng, w)
    after = _fast_out(enc, x)
    assert _fast._ENTRIES[enc].stack is st          # repacked in place, not rebuilt
    assert st.repacks >= 1
    assert not np.array_equal(after, before)
    assert np.array_equal(after, _fresh(enc, x))


def _param(module, dotted):
    *path, name = dotted.split(".")
    for p in path:
        module = getattr(module, p)
    return module._parameters[name]


@pytest.mark.parametrize("route", ["data", "parameter"])
def test_a_new_array_or_parameter_rebuilds_the_stack(route):
    enc, x, rng = _encoder(1)
    before = _fast_out(enc, x)
    st = _fast._ENTRIES[enc].stack
    lin = enc.layers[0].linear1
    if route == "data":
        lin.weight.data = _new(rng, lin.weight)
    else:
        lin.weight = nn.Parameter(_new(rng, lin.weight))
    after = _fast_out(enc, x)
    assert _fast._ENTRIES[enc].stack is not st
    assert not np.array_equal(after, before)
    assert np.array_equal(after, _fresh(enc, x))


def test_an_unchanged_weight_is_not_repacked():
    enc, x, _ = _encoder(2)
    first = _fast_out(enc, x)
    st = _fast._ENTRIES[enc].stack
    for _ in range(3):
        assert np.array_equal(_fast_out(enc, x), first)
    assert st.repacks == 0


def test_packed_and_in_place_agree_to_rounding():
    """The packed kernel sums in another order than the dot kernel: the
    two stacks agree to float32 rounding, not bitwise."""
    enc, x, _ = _encoder(3)
    packed = _fresh(enc, x)
    _fast.packed = False
    try:
        in_place = _fresh(enc, x)
        assert _fast._ENTRIES[enc].stack.packed == 0
    finally:
        _fast.packed = True
        _fast._ENTRIES.pop(enc, None)
    assert np.abs(packed - in_place).max() <= 1e-5 * np.abs(in_place).max()


# The decoder side: a float32 Seq2SeqTransformer's decoder stack packs its
# step weights, and the decoding loops the generator's weight, the same way.
DECODER_WEIGHTS = ["self_attn.in_proj_weight", "self_attn.out_proj.weight",
                   "multihead_attn.in_proj_weight", "multihead_attn.out_proj.weight",
                   "linear1.weight", "linear2.weight"]


def _seq2seq(seed=0):
    from tests.test_decode import _varied_batch
    import pytransformer as pt
    pt.manual_seed(seed)
    cfg = nn.Seq2SeqConfig(17, 19, d_model=32, nhead=4, num_encoder_layers=1,
                           num_decoder_layers=2, dim_feedforward=48, dropout=0.0, max_len=12)
    model = nn.Seq2SeqTransformer(cfg).to(np.float32).eval()
    src, _ = _varied_batch(np.random.default_rng(seed), B=6)
    return model, src


def _decoded(model, src, how):
    """Every token and token log-probability of a greedy or beam decoding
    (the latter read the generator's logits, so any change shows)."""
    from pytransformer import decode
    with no_grad():
        if how == "greedy":
            hyps = decode.greedy(model, src, max_len=11, return_scores=True)
        else:
            hyps = [h for hs in decode.beam_search(model, src, beam=3, max_len=11,
                                                     return_scores=True) for h in hs]
    return [(h.ids.tolist(), h.token_scores.tolist()) for h in hyps]


def _decoder_fresh(model, src, how):
    _fast._ENTRIES.pop(model.transformer.decoder, None)
    return _decoded(model, src, how)


def _optimizer_step(w, kind):
    opt = optim.SGD([w], lr=0.5) if kind == "sgd" else optim.AdamW([w], lr=0.05)
    (w * w).sum().backward()
    opt.step()


DECODER_ROUTES = dict(ROUTES, sgd=lambda m, x, rng, w: _optimizer_step(w, "sgd"),
                      adamw=lambda m, x, rng, w: _optimizer_step(w, "adamw"),
                      load_state_dict=None)


@pytest.mark.parametrize("how", ["greedy", "beam"])
@pytest.mark.parametrize("route", sorted(r for r in DECODER_ROUTES if DECODER_ROUTES[r]))
@pytest.mark.parametrize("which", DECODER_WEIGHTS + ["generator"])
def test_a_decoder_or_generator_change_is_used_by_the_next_decoding(route, which, how):
    model, src = _seq2seq()
    before = _decoded(model, src, how)
    decoder = model.transformer.decoder
    st = _fast._ENTRIES[decoder].stack
    assert st is not None and st.packed == 12       # 6 step weights x 2 layers
    if which == "generator":
        w = model.generator._parameters["weight"]
    else:
        w = _param(decoder.layers[1], which)
    if route in ("sgd", "adamw"):
        DECODER_ROUTES[route](model, src, None, w)
    else:
        with no_grad():
            DECODER_ROUTES[route](model, src, np.random.default_rng(5), w)
    repacks = st.repacks
    after = _decoded(model, src, how)
    assert _fast._ENTRIES[decoder].stack is st      # repacked in place, not rebuilt
    assert st.repacks > repacks
    assert after != before
    assert after == _decoder_fresh(model, src, how)


@pytest.mark.parametrize("how", ["greedy", "beam"])
def test_a_decoder_state_dict_load_is_used_by_the_next_decoding(how):
    model, src = _seq2seq(1)
    before = _decoded(model, src, how)
    rng = np.random.default_rng(2)
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    for k in ("transformer.decoder.layers.0.multihead_attn.in_proj_weight", "generator.weight"):
        sd[k] = rng.normal(size=sd[k].shape).astype(np.float32)
    model.load_state_dict(sd)
    after = _decoded(model, src, how)
    assert after != before
    assert after == _decoder_fresh(model, src, how)


def test_a_new_generator_parameter_is_used_by_the_next_decoding():
    model, src = _seq2seq(2)
    before = _decoded(model, src, "greedy")
    g = model.generator
    g.weight = nn.Parameter(np.random.default_rng(3).normal(size=g.weight.shape)
                            .astype(np.float32))
    after = _decoded(model, src, "greedy")
    assert after != before
    assert after == _decoder_fresh(model, src, "greedy")


def test_an_unchanged_decoder_is_not_repacked():
    model, src = _seq2seq(3)
    first = _decoded(model, src, "greedy")
    st = _fast._ENTRIES[model.transformer.decoder].stack
    for how in ("greedy", "beam", "greedy"):
        _decoded(model, src, how)
    assert _decoded(model, src, "greedy") == first
    assert st.repacks == 0
