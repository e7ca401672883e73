"""explain.lens (measure 8, the decoder's logit lens): the last layer is the
model's own output (exact, shipped model), earlier layers match a NumPy
recomputation, and the split accuracies match a count by hand."""
import json

import numpy as np
import pytest

from pytransformer.data import EOS, Vocab, generate_pairs
from pytransformer.explain import trace
from pytransformer.explain.ffn import teacher_forced_traces
from pytransformer.explain.lens import lens_logits, logit_lens, logit_lens_accuracy
from pytransformer.nn.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from pytransformer.translator import Translator, default_model_path

SENTENCE = "the black cat drank the milk"


@pytest.fixture(scope="module")
def shipped():
    return Translator.load(default_model_path())


def _tiny():
    rng = np.random.default_rng(1)
    pairs = generate_pairs(30, seed=4)
    sv, tv = Vocab.build([p.src for p in pairs]), Vocab.build([p.tgt for p in pairs])
    cfg = Seq2SeqConfig(len(sv), len(tv), d_model=16, nhead=2, num_encoder_layers=2,
                        num_decoder_layers=3, dim_feedforward=24, dropout=0.0, max_len=32)
    m = Seq2SeqTransformer(cfg)
    for p in m.parameters():
        p.data[...] = rng.normal(0, 0.5, p.data.shape)
    return Translator(m.eval(), sv, tv), pairs


def test_last_layer_is_the_models_own_argmax_exactly(shipped):
    table = logit_lens(shipped, SENTENCE)
    t = trace(shipped, SENTENCE)
    T = len(t.tgt_in_tokens[0])
    np.testing.assert_array_equal(table.ids[-1], t.logits[0, :T].argmax(-1))
    assert table.final == t.tgt_out_tokens[0]           # greedy output, teacher-forced: itself
    assert table.inputs == t.tgt_in_tokens[0] and table.source == t.src_tokens[0]
    assert table.ids.shape == table.probs.shape == table.target_probs.shape == (3, T)
    assert np.all((table.probs > 0) & (table.probs <= 1))
    assert np.all(table.probs >= table.target_probs - 1e-12)
    json.dumps(table.to_dict())
    assert "Logit lens" in table.caption


def test_lens_on_every_layer_matches_numpy(shipped):
    t = trace(shipped, SENTENCE, "el gato negro bebió la leche")
    net = shipped.model
    norm, gen = net.transformer.decoder.norm, net.generator
    for i in range(3):
        h = t.layer("decoder", i).output[0]
        x = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + norm.eps)
        x = x * norm.weight.data + norm.bias.data
        expected = x @ gen.weight.data.T.astype(np.float64) + gen.bias.data
        np.testing.assert_allclose(lens_logits(net, h), expected, rtol=1e-4, atol=1e-4)
    table = logit_lens(shipped, SENTENCE, "el gato negro bebió la leche")
    assert table.targets == "el gato negro bebió la leche <eos>".split()
    np.testing.assert_array_equal(
        table.ids[0], lens_logits(net, t.layer("decoder", 0).output[0]).argmax(-1))


def test_accuracy_counts_match_a_hand_count():
    tr, pairs = _tiny()
    acc = logit_lens_accuracy(tr, pairs, batch_size=7)
    net = tr.model
    hits_f, hits_g, probs, n = np.zeros(3), np.zeros(3), np.zeros(3), 0
    for p in pairs:
        t = trace(tr, p.source, p.target)
        gold = tr.tgt_vocab.encode(list(p.tgt)) + [EOS]
        T = len(gold)
        final = t.logits[0, :T].argmax(-1)
        for i in range(3):
            z = lens_logits(net, t.layer("decoder", i).output[0, :T])
            pr = np.exp(z - z.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            hits_f[i] += (z.argmax(-1) == final).sum()
            hits_g[i] += (z.argmax(-1) == gold).sum()
            probs[i] += pr[np.arange(T), gold].sum()
        n += T
    assert acc.n_positions == n and acc.n_pairs == len(pairs)
    np.testing.assert_allclose(acc.vs_final, hits_f / n)
    np.testing.assert_allclose(acc.vs_gold, hits_g / n)
    np.testing.assert_allclose(acc.gold_prob, probs / n, rtol=1e-6)
    assert acc.vs_final[-1] == 1.0 and acc.vs_final[0] < 1.0
    json.dumps(acc.to_dict())
    traces = [t for _, t in teacher_forced_traces(tr, pairs, batch_size=11)]
    again = logit_lens_accuracy(tr, pairs, traces=traces)
    np.testing.assert_array_equal(again.vs_gold, acc.vs_gold)


def test_shipped_accuracy_smoke(shipped):
    pairs = generate_pairs(40, seed=12)
    acc = logit_lens_accuracy(shipped, pairs)
    assert acc.vs_final[-1] == 1.0
    assert acc.vs_gold[-1] > 0.9 and acc.vs_gold[0] < acc.vs_gold[-1]
    assert "layer 2" in acc.caption


def test_bad_arguments(shipped):
    with pytest.raises(TypeError, match="src"):
        logit_lens(shipped, ["two", "sentences"])
    with pytest.raises(TypeError, match="tgt"):
        logit_lens(shipped, SENTENCE, ["el"])
    with pytest.raises(TypeError, match="translator"):
        logit_lens(shipped.model, SENTENCE)
    with pytest.raises(ValueError, match="pairs"):
        logit_lens_accuracy(shipped, [])
    with pytest.raises(ValueError, match="hidden"):
        lens_logits(shipped.model, np.zeros((2, 7)))
