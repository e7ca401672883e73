"""nn.Module semantics, the layers' shapes and keys, masks and hooks.

PyTorch parity (values and gradients) is in test_nn_parity.py; this file
checks the behaviour that needs no fixture.
"""
import copy

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import nn
from pytransformer.autograd import gradcheck, tensor
from pytransformer.nn import functional as F


def _x(rng, *shape, dtype=np.float32):
    return tensor(rng.standard_normal(shape).astype(dtype))


# ----------------------------------------------------------------------------
# Module registration and state


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.scale = nn.Parameter(np.ones(3, np.float32))
        self.register_buffer("table", np.arange(3, dtype=np.float32))
        self.register_buffer("scratch", np.zeros(2, np.float32), persistent=False)

    def forward(self, x):
        return self.norm(self.lin(x)) * self.scale


def test_registration_and_state_dict_keys():
    b = Block()
    assert list(b.state_dict()) == ["scale", "table", "lin.weight", "lin.bias",
                                    "norm.weight", "norm.bias"]
    assert [n for n, _ in b.named_parameters()] == ["scale", "lin.weight", "lin.bias",
                                                    "norm.weight", "norm.bias"]
    assert [n for n, _ in b.named_children()] == ["lin", "norm"]
    assert b.num_parameters() == 3 + 12 + 3 + 3 + 3
    # reassigning an attribute to a plain value unregisters it
    b.scale = 2.0
    assert "scale" not in b.state_dict() and b.scale == 2.0


def test_state_dict_round_trip_between_modules():
    a, b = Block(), Block()
    b.lin.weight.data[...] = 0
    b.load_state_dict(copy.deepcopy(dict(a.state_dict())))
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    # load copies in place: the parameter array object is unchanged
    w = b.lin.weight.data
    b.load_state_dict(a.state_dict())
    assert b.lin.weight.data is w


def test_load_state_dict_errors_list_every_problem():
    b = Block()
    sd = dict(b.state_dict())
    del sd["norm.bias"]
    sd["extra.weight"] = np.zeros(1, np.float32)
    sd["lin.weight"] = np.zeros((5, 4), np.float32)
    with pytest.raises(RuntimeError) as e:
        b.load_state_dict(sd)
    msg = str(e.value)
    assert '"norm.bias"' in msg and '"extra.weight"' in msg
    assert "size mismatch for lin.weight" in msg and "(5, 4)" in msg
    before = b.lin.bias.data.copy()
    sd["lin.bias"] = np.full(3, 7, np.float32)
    with pytest.raises(RuntimeError):
        b.load_state_dict(sd)  # nothing changes when any check fails
    np.testing.assert_array_equal(b.lin.bias.data, before)
    # non-strict still refuses shape mismatches but reports keys
    sd["lin.weight"] = np.ones((3, 4), np.float32)
    missing, unexpected = b.load_state_dict(sd, strict=False)
    assert missing == ["norm.bias"] and unexpected == ["extra.weight"]
    np.testing.assert_array_equal(b.lin.weight.data, 1)
    with pytest.raises(TypeError):
        b.load_state_dict([("a", 1)])


def test_train_eval_and_dropout():
    m = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    x = _x(np.random.default_rng(0), 4, 8)
    m.eval()
    assert not m[1].training
    np.testing.assert_array_equal(m(x).data, m(x).data)
    m.train()
    assert m[1].training
    y = m(x).data
    assert (y == 0).any()


def test_forward_hooks_see_and_replace_outputs():
    m = nn.Linear(3, 2)
    seen = []
    h = m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0].shape, out.shape)))
    x = _x(np.random.default_rng(1), 5, 3)
    m(x)
    assert seen == [(m, (5, 3), (5, 2))]
    h.remove()
    m(x)
    assert len(seen) == 1
    h2 = m.register_forward_hook(lambda mod, args, out: out * 0.0)
    assert np.all(m(x).data == 0)
    h2.remove()
    h3 = m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs),
                                 with_kwargs=True)
    m(x)
    assert seen[-1] == {}
    h3.remove()


def test_deepcopy_and_dtype_conversion():
    b = Block()
    c = copy.deepcopy(b)
    c.lin.weight.data[...] = 5
    assert not np.all(b.lin.weight.data == 5)
    c.double()
    assert all(p.dtype == np.float64 for p in c.parameters())
    assert c.table.dtype == np.float64
    y = c(_x(np.random.default_rng(0), 2, 4, dtype=np.float64))
    assert y.dtype == np.float64


def test_module_list_and_sequential():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(ml) == 3 and ml[-1] is ml[2]
    assert list(ml.state_dict())[:2] == ["0.weight", "0.bias"]
    with pytest.raises(IndexError):
        ml[3]


def test_zero_grad_and_requires_grad():
    m = nn.Linear(3, 2)
    F.linear(_x(np.random.default_rng(0), 4, 3), m.weight, m.bias).sum().backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert np.all(m.weight.grad == 0)
    m.zero_grad()
    assert m.weight.grad is None
    m.requires_grad_(False)
    y = m(_x(np.random.default_rng(0), 4, 3))
    assert not y.requires_grad


# ----------------------------------------------------------------------------
# layers


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(ValueError, match="dropout"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
    with pytest.raises(TypeError):
        nn.Linear(3, 2, dtype=np.int32)


def test_embedding_padding_row():
    e = nn.Embedding(5, 3, padding_idx=0)
    assert np.all(e.weight.data[0] == 0)
    ids = np.array([[0, 1, 1]])
    e(ids).sum().backward()
    assert np.all(e.weight.grad[0] == 0)
    np.testing.assert_array_equal(e.weight.grad[1], 2)


MHA_KEYS = ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]


def test_multihead_attention_keys_and_shapes():
    rng = np.random.default_rng(2)
    mha = nn.MultiheadAttention(8, 2)
    assert list(mha.state_dict()) == MHA_KEYS
    assert mha.in_proj_weight.shape == (24, 8)
    x = _x(rng, 3, 5, 8)
    out, w = mha(x, x, x)
    assert out.shape == (3, 5, 8) and w.shape == (3, 5, 5)
    np.testing.assert_allclose(w.data.sum(-1), 1, rtol=1e-5)
    _, w = mha(x, x, x, average_attn_weights=False)
    assert w.shape == (3, 2, 5, 5)
    out2, none = mha(x, x, x, need_weights=False)
    assert none is None
    np.testing.assert_allclose(out2.data, out.data, rtol=1e-5, atol=1e-6)
    kv = nn.MultiheadAttention(8, 2, kdim=4, vdim=6)
    assert list(kv.state_dict()) == ["q_proj_weight", "k_proj_weight", "v_proj_weight",
                                     "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    out, w = kv(x, _x(rng, 3, 7, 4), _x(rng, 3, 7, 6))
    assert out.shape == (3, 5, 8) and w.shape == (3, 5, 7)
    assert list(nn.MultiheadAttention(8, 2, bias=False).state_dict()) == ["in_proj_weight",
                                                                          "out_proj.weight"]


def test_multihead_attention_masks():
    rng = np.random.default_rng(3)
    mha = nn.MultiheadAttention(8, 2)
    x = _x(rng, 2, 4, 8)
    pad = np.array([[False, False, True, True], [False, False, False, False]])
    _, w = mha(x, x, x, key_padding_mask=pad)
    assert np.all(w.data[0, :, 2:] == 0)          # True = padding: never attended
    causal = np.triu(np.ones((4, 4), bool), 1)    # True = not allowed (PyTorch)
    _, w = mha(x, x, x, attn_mask=causal)
    assert np.all(np.triu(w.data[1], 1) == 0)
    # the float -inf mask and is_causal give the same as the bool mask
    fmask = nn.Transformer.generate_square_subsequent_mask(4)
    a, _ = mha(x, x, x, attn_mask=fmask)
    b, _ = mha(x, x, x, is_causal=True, need_weights=False)
    c, _ = mha(x, x, x, attn_mask=causal)
    np.testing.assert_allclose(a.data, c.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.data, c.data, rtol=1e-5, atol=1e-6)
    # a fully masked row gives zeros (PyTorch: NaN) and finite gradients
    full = np.zeros((4, 4), bool)
    full[0] = True
    x.requires_grad_()
    out, w = mha(x, x, x, attn_mask=full)
    assert np.all(np.isfinite(out.data)) and np.all(w.data[:, 0] == 0)
    out.sum().backward()
    assert np.all(np.isfinite(x.grad))
    with pytest.raises(ValueError, match="key_padding_mask"):
        mha(x, x, x, key_padding_mask=np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="attn_mask"):
        mha(x, x, x, attn_mask=np.zeros((3, 4), bool))
    with pytest.raises(TypeError, match="mask"):
        mha(x, x, x, attn_mask=np.zeros((4, 4), np.int32))


def test_multihead_attention_seq_first_matches_batch_first():
    rng = np.random.default_rng(4)
    bf = nn.MultiheadAttention(8, 2, batch_first=True)
    sf = nn.MultiheadAttention(8, 2, batch_first=False)
    sf.load_state_dict(bf.state_dict())
    x = _x(rng, 2, 5, 8)
    a, wa = bf(x, x, x)
    b, wb = sf(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1))
    np.testing.assert_allclose(b.data.transpose(1, 0, 2), a.data, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wb.data, wa.data, rtol=1e-5, atol=1e-6)


def test_multihead_attention_dropout_path():
    rng = np.random.default_rng(5)
    mha = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = _x(rng, 2, 6, 8)
    pt.manual_seed(0)
    out, w = mha(x, x, x, average_attn_weights=False)
    assert (w.data == 0).any()                      # dropped probabilities
    kept = w.data[w.data != 0]
    assert kept.max() > 1.0 / 6                      # survivors scaled by 2
    mha.eval()
    a, _ = mha(x, x, x)
    b, _ = mha(x, x, x)
    np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("norm_first", [False, True])
def test_mha_and_layers_gradcheck_float64(norm_first):
    rng = np.random.default_rng(6)
    pt.manual_seed(1)
    layer = nn.TransformerDecoderLayer(8, 2, dim_feedforward=12, dropout=0.0,
                                       activation="gelu", norm_first=norm_first, dtype=np.float64)
    tgt = tensor(rng.standard_normal((2, 3, 8)), requires_grad=True)
    mem = tensor(rng.standard_normal((2, 4, 8)), requires_grad=True)
    pad = np.array([[False, False, False, True], [False] * 4])
    mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=np.float64)
    assert gradcheck(lambda t, m: layer(t, m, tgt_mask=mask, memory_key_padding_mask=pad),
                     (tgt, mem))
    w = layer.self_attn.in_proj_weight
    assert gradcheck(lambda w_: F.linear(tgt.detach(), w_[:8]), (w,))


def test_transformer_keys_match_pytorch_layout():
    m = nn.Transformer(8, 2, 1, 1, 16, 0.0)
    keys = list(m.state_dict())
    enc = ["encoder.layers.0." + k for k in
           ["self_attn." + k for k in MHA_KEYS] + ["linear1.weight", "linear1.bias",
                                                  "linear2.weight", "linear2.bias",
                                                  "norm1.weight", "norm1.bias",
                                                  "norm2.weight", "norm2.bias"]]
    dec = ["decoder.layers.0." + k for k in
           ["self_attn." + k for k in MHA_KEYS] + ["multihead_attn." + k for k in MHA_KEYS]
           + ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
              "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
              "norm3.weight", "norm3.bias"]]
    assert keys == enc + ["encoder.norm.weight", "encoder.norm.bias"] + dec + [
        "decoder.norm.weight", "decoder.norm.bias"]
    mask = nn.Transformer.generate_square_subsequent_mask(3).data
    np.testing.assert_array_equal(mask, [[0, -np.inf, -np.inf], [0, 0, -np.inf], [0, 0, 0]])


def test_transformer_shape_errors():
    m = nn.Transformer(8, 2, 1, 1, 16, 0.0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="d_model"):
        m(_x(rng, 2, 3, 6), _x(rng, 2, 3, 8))
    with pytest.raises(ValueError, match="batch size"):
        m(_x(rng, 2, 3, 8), _x(rng, 3, 3, 8))


# ----------------------------------------------------------------------------
# Seq2SeqTransformer


def _seq2seq(**kw):
    cfg = dict(src_vocab_size=11, tgt_vocab_size=13, d_model=16, nhead=4,
               num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=24, dropout=0.0,
               max_len=10)
    cfg.update(kw)
    return nn.Seq2SeqTransformer(nn.Seq2SeqConfig(**cfg))


def test_seq2seq_shapes_padding_and_causality():
    pt.manual_seed(3)
    m = _seq2seq()
    rng = np.random.default_rng(0)
    src = rng.integers(1, 11, (2, 6))
    tgt = rng.integers(1, 13, (2, 5))
    logits = m(src, tgt)
    assert logits.shape == (2, 5, 13)
    # causal: changing a later decoder input leaves earlier positions unchanged
    tgt2 = tgt.copy()
    tgt2[:, 3] = (tgt2[:, 3] % 12) + 1
    np.testing.assert_allclose(m(src, tgt2).data[:, :3], logits.data[:, :3], rtol=1e-5, atol=1e-5)
    # padding: extra pad tokens on the source change nothing
    padded = np.concatenate([src, np.zeros((2, 3), src.dtype)], axis=1)
    np.testing.assert_allclose(m(padded, tgt).data, logits.data, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        m(rng.integers(1, 11, (1, 11)), tgt)
    with pytest.raises(ValueError, match="batch, length"):
        m(src[0], tgt)


def test_seq2seq_tied_embeddings_and_config():
    m = _seq2seq(tie_embeddings=True)
    assert m.generator.weight is m.tgt_embed.weight
    sd = m.state_dict()
    assert "generator.weight" in sd and "tgt_embed.weight" in sd
    assert m.num_parameters() < sum(v.size for v in sd.values())
    cfg = nn.Seq2SeqConfig.from_dict(m.config.to_dict())
    assert cfg == m.config
    with pytest.raises(ValueError, match="unknown"):
        nn.Seq2SeqConfig.from_dict({**m.config.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="divisible"):
        nn.Seq2SeqConfig(5, 5, d_model=10, nhead=4)
    with pytest.raises(ValueError, match="pad_idx"):
        nn.Seq2SeqConfig(5, 5, pad_idx=5)
