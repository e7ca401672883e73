"""explain.trace, the per-sentence views (factor, position split, value
mixing) and activation patching: on planted modules whose answer is known,
and on the shipped translator."""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer.autograd import no_grad
from pytransformer.autograd.tensor import Tensor
from pytransformer.explain import Tracer, trace
from pytransformer.explain.patch import Patch, counterfactual, patched_translate, patching
from pytransformer.explain.views import factor_view, position_split, value_mixing
from pytransformer.nn import MultiheadAttention, Seq2SeqConfig, Seq2SeqTransformer



def _hooks(net):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())


def _tiny_model(seed=0):
    pt.manual_seed(seed)
    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=9, d_model=8, nhead=2,
                        num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=16,
                        dropout=0.0, max_len=12)
    return Seq2SeqTransformer(cfg).eval()


# --- trace ------------------------------------------------------------------

def test_trace_records_everything_and_reproduces_outputs(shipped):
    t = trace(shipped, "the black cat drank the milk")
    assert [(a.kind, a.layer) for a in t.attentions] == [
        ("encoder", 0), ("encoder", 1), ("encoder", 2), ("decoder", 0), ("cross", 0),
        ("decoder", 1), ("cross", 1), ("decoder", 2), ("cross", 2)]
    assert t.src_tokens[0] == "the black cat drank the milk <eos>".split()
    assert t.tgt_out_tokens[0] == "el gato negro bebió la leche <eos>".split()
    assert t.tgt_in_tokens[0][0] == "<bos>"
    for a in t.attentions:
        # per-head outputs, merged and projected, are what the module returned
        rebuilt = a.head_contributions().sum(1) + a.module.out_proj.bias.data
        np.testing.assert_allclose(rebuilt, a.out, atol=1e-5)
        np.testing.assert_allclose(a.weights.sum(-1), 1.0, atol=1e-9)
    for f in t.ffns:
        lin1 = f.layer_module.linear1
        np.testing.assert_allclose(np.maximum(f.input @ lin1.weight.data.T + lin1.bias.data, 0),
                                   f.hidden, atol=1e-4)
    assert len(t.layers) == 6 and set(t.embeddings) == {"src_embed", "tgt_embed"}
    # the trace's logits are the model's own: the argmax is the translation
    assert shipped.tgt_vocab.decode(t.logits[0].argmax(-1)) == t.tgt_out_tokens[0][:-1]
    assert _hooks(shipped.model) == 0


def test_trace_weights_equal_the_kernel_weights():
    mha = MultiheadAttention(8, 2).eval()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32))
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    with no_grad():
        _, w = mha(x, x, x, key_padding_mask=pad, need_weights=True,
                   average_attn_weights=False)
    with Tracer(mha) as t, no_grad():
        mha(x, x, x, key_padding_mask=pad, need_weights=False)
    rec = t.attentions[0]
    np.testing.assert_allclose(rec.weights, w.data, atol=1e-6)
    assert not rec.allowed[1, :, :, 3:].any() and rec.allowed[0].all()
    assert (rec.weights[1, :, :, 3:] == 0).all()
    assert _hooks(mha) == 0


def test_decoder_self_attention_is_causal_and_batch_equals_single(shipped):
    sents = ["the ball is blue", "the black cat drank the milk"]
    tb = trace(shipped, sents)
    dec = tb.attention("decoder", 0)
    T = dec.weights.shape[-1]
    assert (dec.weights[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0).all()
    for b, s in enumerate(sents):
        ts = trace(shipped, s)
        for kind in ("encoder", "decoder", "cross"):
            w1 = ts.attention(kind, 1).weights[0]
            L, S = w1.shape[-2:]
            np.testing.assert_allclose(tb.attention(kind, 1).weights[b, :, :L, :S], w1,
                                       atol=1e-5)


def test_trace_restores_training_mode_and_rejects_bad_models():
    m = _tiny_model()
    m.train()
    src = np.array([[4, 5, 6, 2]])
    tgt = np.array([[1, 4, 5]])
    t = trace(m, src, tgt)
    assert m.training and t.attention("cross", -1).layer == 1
    with pytest.raises(ValueError, match="tgt"):
        trace(m, src)
    with pytest.raises(TypeError, match="model"):
        trace(object(), "x")
    with pytest.raises(ValueError, match="kind"):
        t.attention("self", 0)
    with pytest.raises(KeyError, match="layer 5"):
        t.attention("encoder", 5)


# --- factor view ----------------------------------------------------------------

def _planted_trace():
    """One head, E = d = 4, W_q = W_k = W_v = I: q = k = v = x, so every
    score is x_i . x_j / 2 and the answer is known."""
    mha = MultiheadAttention(4, 1).eval()
    mha.in_proj_weight.data[:] = np.vstack([np.eye(4)] * 3)
    mha.in_proj_bias.data[:] = 0
    x = np.array([[[1.0, 2.0, 0.0, -1.0], [1.0, -1.0, 3.0, 0.0], [0.0, 0.0, 0.0, 2.0]]],
                 np.float32)
    with Tracer(mha) as t, no_grad():
        mha(Tensor(x), Tensor(x), Tensor(x))
    t.src_tokens = [["a", "b", "c"]]
    return t, x[0].astype(np.float64)


def test_factor_view_on_planted_head():
    t, x = _planted_trace()
    fv = factor_view(t, "encoder", 0, 0, "a", key="b")
    # products of a with b: (1*1, 2*-1, 0*3, -1*0) / sqrt(4)
    np.testing.assert_allclose(fv.products[1], [0.5, -1.0, 0.0, 0.0])
    assert fv.score == pytest.approx(-0.5)
    np.testing.assert_allclose(fv.scores, x[0] @ x.T / 2)
    assert fv.n_agree == 1 and fv.positive == pytest.approx(0.5)
    assert fv.negative == pytest.approx(-1.0)
    assert list(fv.top_dims[:2]) == [1, 0]
    # default key: the most attended (a attends to itself: score 3)
    assert factor_view(t, "encoder", 0, 0, 0).key_word == "a"
    with pytest.raises(ValueError, match="head"):
        factor_view(t, "encoder", 0, 1, "a")
    with pytest.raises(ValueError, match="query"):
        factor_view(t, "encoder", 0, 0, "zebra")


def test_factor_view_products_sum_to_the_shipped_scores(shipped):
    t = trace(shipped, "the ball is blue")
    for kind in ("encoder", "cross"):
        fv = factor_view(t, kind, 1, 2, 1)
        rec = t.attention(kind, 1)
        rows, cols = t.tokens(kind)
        np.testing.assert_allclose(fv.scores, rec.scores[0, 2, 1, :len(cols)], atol=1e-9)
    assert factor_view(t, "encoder", 0, 0, "blue").to_dict()["query_word"] == "blue"


# --- position split ------------------------------------------------------------------

def test_position_split_is_exact_and_planted_extremes():
    m = _tiny_model()
    src, tgt = np.array([[4, 5, 6, 7, 2]]), np.array([[1, 4, 5, 6]])
    ps = position_split(trace(m, src, tgt), "encoder")
    assert ps.max_error < 1e-5       # float32 projections vs the float64 split
    np.testing.assert_allclose(sum(ps.share.values()), 1.0)
    # no positions: everything is token.token (and bias)
    m.positions[:] = 0
    ps = position_split(trace(m, src, tgt), "encoder")
    for n in ("token.position", "position.token", "position.position"):
        assert np.abs(ps.terms[n]).max() == 0
    # zero embeddings (positions back): only position terms and bias remain
    m2 = _tiny_model()
    m2.src_embed.weight.data[:] = 0
    ps = position_split(trace(m2, src, tgt), "encoder")
    for n in ("token.token", "token.position", "position.token"):
        assert np.abs(ps.terms[n]).max() == 0
    assert ps.share["position.position"].min() > 0.5
    with pytest.raises(ValueError, match="kind"):
        position_split(trace(m2, src, tgt), "cross")


def test_position_split_rejects_pre_norm():
    pt.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab_size=11, tgt_vocab_size=9, d_model=8, nhead=2,
                        num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16,
                        dropout=0.0, max_len=12, norm_first=True)
    m = Seq2SeqTransformer(cfg).eval()
    with pytest.raises(ValueError, match="pre-norm"):
        position_split(trace(m, np.array([[4, 5, 2]]), np.array([[1, 4]])), "encoder")


# --- value mixing ----------------------------------------------------------------

def test_value_mixing_planted_zero_value():
    t, x = _planted_trace()
    rec = t.attentions[0]
    rec.module.out_proj.weight.data[:] = np.eye(4)
    rec.v[0, 0, 2] = 0.0                          # key 'c' has a zero value vector
    vm = value_mixing(t, "encoder", 0)
    assert (vm.norms[0, :, 2] == 0).all() and (vm.weights[0, :, 2] > 0).all()
    # ||w_ij v_j W_O|| with W_O = I
    np.testing.assert_allclose(vm.norms[0, 0, :2],
                               rec.weights[0, 0, 0, :2] * np.linalg.norm(rec.v[0, 0, :2], axis=1))
    np.testing.assert_allclose(vm.norm_share.sum(1), 1.0)
    assert set(vm.to_dict()) >= {"weights", "norms", "caption"}


def test_value_mixing_mixed_norm_rebuilds_the_output(shipped):
    t = trace(shipped, "the ball is blue")
    rec = t.attention("cross", 2)
    vm = value_mixing(t, "cross", 2)
    rows, cols = t.tokens("cross")
    contrib = np.einsum("hls,hse->le", vm.weights,
                        np.einsum("hsd,ehd->hse", rec.v[0],
                                  rec.module.out_proj.weight.data.reshape(-1, 4, 32)))
    np.testing.assert_allclose(contrib + rec.module.out_proj.bias.data, rec.out[0], atol=1e-5)
    assert 0.0 <= vm.agreement <= 1.0


# --- patching ----------------------------------------------------------------

def test_counterfactual_blue_to_red(shipped):
    r = counterfactual(shipped, "the ball is blue", "the ball is red", "blue", layer=-1)
    assert r["before"] == "la bola es azul"
    assert r["after"] == "la bola es roja"
    assert r["changed"] == [("azul", "roja")]
    assert _hooks(shipped.model) == 0


def test_patch_with_own_activation_changes_nothing(shipped):
    s = "the black cat drank the milk"
    t = trace(shipped, s)
    same = [Patch("layer", "encoder", 1, [1, 2], t.layer("encoder", 1).output[0, [1, 2]]),
            Patch("ffn.hidden", "decoder", 0, [0], t.ffn("decoder", 0).hidden[0, [0]])]
    assert patched_translate(shipped, s, same) == shipped.translate([s])
    zero = [Patch("layer", "encoder", -1, [1], lambda v: np.zeros_like(v))]
    assert patched_translate(shipped, s, zero) != shipped.translate([s])


def test_patch_bad_input(shipped):
    with pytest.raises(ValueError, match="site"):
        Patch("resid", "encoder", 0, [0], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="cross"):
        Patch("layer", "cross", 0, [0], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="values"):
        Patch("layer", "encoder", 0, [0, 1], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="no encoder layer 7"):
        with patching(shipped, [Patch("layer", "encoder", 7, [0], np.zeros((1, 128)))]):
            pass
    with pytest.raises(ValueError, match="width"):
        patched_translate(shipped, "the ball is blue",
                          [Patch("layer", "encoder", 0, [0], np.zeros((1, 3)))])
    assert _hooks(shipped.model) == 0
    with pytest.raises(ValueError, match="word"):
        counterfactual(shipped, "the ball is blue", "the ball is red", "green")


def test_patch_values_follow_their_positions_when_some_are_not_reached_yet():
    # the uncached decoder grows T step by step: a patch at positions [5, 1]
    # must put values[1] (not values[0]) at position 1 while T <= 5
    p = Patch("layer", "decoder", 0, [5, 1], np.array([[5.0, 5.0], [1.0, 1.0]]))
    out = p.apply(np.zeros((2, 3, 2)))
    np.testing.assert_array_equal(out[:, 1], [[1.0, 1.0], [1.0, 1.0]])
    assert (out[:, [0, 2]] == 0).all()
    one_row = Patch("layer", "decoder", 0, [0], lambda v: v + 7.0, row=1).apply(np.ones((2, 2, 2)))
    np.testing.assert_array_equal(one_row[:, 0], [[1.0, 1.0], [8.0, 8.0]])
    assert (one_row[:, 1] == 1.0).all()


def test_trace_of_a_model_that_never_ends_its_translation():
    """An undertrained translator may never emit <eos>: its greedy
    translation then stops where <bos> + tokens still fit max_len, so the
    traced run works (it failed with "sequence length 13 exceeds the model's
    max_len (12)"). A given translation that cannot fit is a ValueError
    naming it."""
    from pytransformer.data import EOS, Vocab
    from pytransformer.translator import Translator

    net = _tiny_model()
    with no_grad():
        net.generator.bias.data[EOS] = -1e9             # <eos> is never the argmax
    src = Vocab.build([["the", "ball", "is", "blue"]])
    tgt = Vocab.build([["la", "bola", "es", "azul"]])
    assert len(src) <= 11 and len(tgt) <= 9
    tr = Translator(net, src, tgt)
    t = trace(tr, "the ball is blue")
    assert t.tgt_ids.shape[1] == net.config.max_len            # <bos> + 11 words
    assert len(t.tgt_out_tokens[0]) == net.config.max_len      # 11 words + <eos>
    with pytest.raises(ValueError, match="translation: expected at most 11 words"):
        trace(tr, "the ball is blue", " ".join(["la"] * 12))
    # translate --show-attention's map of such a translation: its first
    # max_len words, no <eos> row (it was the same max_len error)
    from pytransformer.translator import attention_map, cross_attention
    words = tr.translate(["the ball is blue"])[0].split()
    assert len(words) == net.config.max_len
    src_toks, tgt_toks, w = cross_attention(tr, "the ball is blue", " ".join(words))
    assert tgt_toks == words and w.shape == (12, len(src_toks))
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-5)
    assert len(attention_map(src_toks, tgt_toks, w).splitlines()) == 13


def test_value_mixing_says_how_much_attention_adds(shipped):
    """output_ratio is ||module output|| / ||module input|| per word: on the
    shipped model encoder layer 0 adds a small fraction of each word's norm
    (the row shares alone cannot show it), and the page charts it."""
    from pytransformer.explain.report import sentence_report
    t = trace(shipped, "the black cat drank the milk")
    rec = t.attention("encoder", 0)
    vm = value_mixing(t, "encoder", 0)
    want = np.linalg.norm(rec.out[0], axis=-1) / np.linalg.norm(rec.query_in[0], axis=-1)
    np.testing.assert_allclose(vm.output_ratio, want, rtol=1e-12)
    assert np.median(vm.output_ratio[:-1]) < 0.3                   # the words, not <eos>
    assert "of the norm of its input, word by word" in vm.caption
    page = sentence_report(shipped, "the black cat drank the milk", donor=False).to_html()
    assert "how much attention adds: ||output|| / ||input||, per word" in page
