"""explain.ffn (measure 6, FFN key-value memories): planted keys and values
on a tiny translator whose answers are known by hand, and the shipped model
(ablations checked against real re-runs)."""
import json
from collections import Counter

import numpy as np
import pytest

from pytransformer.autograd import no_grad
from pytransformer.data import UNK, Vocab, generate_pairs
from pytransformer.explain import Tracer, trace
from pytransformer.explain.ffn import ffn_memories, teacher_forced_traces, value_promotions
from pytransformer.nn.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from pytransformer.translator import Translator, default_model_path

PAIRS = generate_pairs(60, seed=3)
D, F = 16, 8
DETECT, RANDOM = 5, 2          # planted neurons: a one-word detector and a random key


def _ln(x):
    x = np.asarray(x, np.float64)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


def _relu(x):
    return np.maximum(x, 0.0)


def _common(tokens, exclude=()):
    return next(w for w, _ in Counter(tokens).most_common() if w not in exclude)


def _planted():
    """A 1+1-layer translator where attention and positions are switched off,
    so an FFN's input at a position is a known function of its token only:
    encoder LN(4 e), decoder LN(LN(4 e)). Neuron DETECT fires only on one
    word (encoder: SRC_WORD, decoder: TGT_WORD) and its value is the output
    embedding row of a chosen word; neuron RANDOM has a random key; the
    other neurons never fire."""
    rng = np.random.default_rng(0)
    sv = Vocab.build([p.src for p in PAIRS])
    tv = Vocab.build([p.tgt for p in PAIRS])
    cfg = Seq2SeqConfig(len(sv), len(tv), d_model=D, nhead=2, num_encoder_layers=1,
                        num_decoder_layers=1, dim_feedforward=F, dropout=0.0, max_len=32)
    m = Seq2SeqTransformer(cfg)
    for p in m.parameters():
        p.data[...] = rng.normal(0, 0.3, p.data.shape)
    for ln_name in ("norm1", "norm2", "norm3"):
        for layer in (m.transformer.encoder.layers[0], m.transformer.decoder.layers[0]):
            ln = getattr(layer, ln_name, None)
            if ln is not None:
                ln.weight.data[...] = 1.0
                ln.bias.data[...] = 0.0
    m.positions[...] = 0.0
    enc, dec = m.transformer.encoder.layers[0], m.transformer.decoder.layers[0]
    for att in (enc.self_attn, dec.self_attn, dec.multihead_attn):
        att.out_proj.weight.data[...] = 0.0
        att.out_proj.bias.data[...] = 0.0
    scale = np.sqrt(D)
    u_src = _ln(scale * m.src_embed.weight.data)                  # encoder FFN input per token
    u_tgt = _ln(_ln(scale * m.tgt_embed.weight.data))             # decoder FFN input per token
    src_word = _common([w for p in PAIRS for w in p.src], {"the", "a", "?", "."})
    tgt_word = _common([w for p in PAIRS for w in p.tgt], {"el", "la", "?", "¿", "."})
    succ = Counter(p.tgt[i + 1] if i + 1 < len(p.tgt) else "<eos>"
                   for p in PAIRS for i, w in enumerate(p.tgt) if w == tgt_word)
    promote_dec = succ.most_common(1)[0][0]
    promote_enc = "gato" if "gato" in tv else tv.tokens[10]
    G = m.generator.weight.data
    keys = {}
    for layer, u, vocab, word, promote in ((enc, u_src, sv, src_word, promote_enc),
                                           (dec, u_tgt, tv, tgt_word, promote_dec)):
        W1, b1 = layer.linear1.weight.data, layer.linear1.bias.data
        W1[...] = 0.0
        b1[...] = -1.0
        wid = vocab.token_to_id(word)
        key = u[wid] / np.linalg.norm(u[wid])
        others = np.delete(u @ key, [0, wid])                       # every token but pad and word
        W1[DETECT], b1[DETECT] = key, -(u[wid] @ key + others.max()) / 2
        W1[RANDOM], b1[RANDOM] = rng.normal(0, 0.5, D), 0.1
        pid = tv.token_to_id(promote)
        G[pid] *= 10.0
        layer.linear2.weight.data[:, DETECT] = G[pid]
        keys[layer is enc] = (W1[[DETECT, RANDOM]].astype(np.float64).copy(),
                              b1[[DETECT, RANDOM]].astype(np.float64).copy())
    tr = Translator(m.eval(), sv, tv)
    info = dict(src_word=src_word, tgt_word=tgt_word, promote_dec=promote_dec,
                promote_enc=promote_enc, u_src=u_src, u_tgt=u_tgt,
                enc_keys=keys[True], dec_keys=keys[False])
    return tr, info


@pytest.fixture(scope="module")
def planted():
    tr, info = _planted()
    mem = ffn_memories(tr, PAIRS, top_neurons=2, top_k=40, n_ablate=40, batch_size=25)
    return tr, info, mem


def _neuron(layer_mem, n):
    return next(x for x in layer_mem.neurons if x.neuron == n)


def test_planted_detector_is_reported_with_its_word_as_trigger(planted):
    tr, info, mem = planted
    for kind, word, seqs in (("encoder", info["src_word"], [p.src for p in PAIRS]),
                             ("decoder", info["tgt_word"], [p.tgt for p in PAIRS])):
        lm = mem.layer(kind, 0)
        assert sorted(lm.top.tolist()) == [RANDOM, DETECT]
        nm = _neuron(lm, DETECT)
        count = sum(s.count(word) for s in seqs)
        assert len(nm.triggers) == min(count, 40)
        assert {t.token for t in nm.triggers} == {word}
        assert nm.shares["token"] == (word, 1.0)
        for t in nm.triggers:
            assert t.context[-1] == word and len(t.context) == t.position + 1
        assert lm.summary["share_token_random"] < 0.9
        assert lm.summary["dead"] == F - 2


def _planted_sides(tr, info):
    """(kind, embedding, (W, b) of layer 0's keys, vocabulary, tokens of a
    pair as that side reads them) for the planted encoder and decoder."""
    return (("encoder", info["u_src"], info["enc_keys"], tr.src_vocab,
             lambda p: list(p.src) + ["<eos>"]),
            ("decoder", info["u_tgt"], info["dec_keys"], tr.tgt_vocab,
             lambda p: ["<bos>"] + list(p.tgt)))


def test_planted_trigger_activations_match_hand_computation(planted):
    tr, info, mem = planted
    for kind, u, keys, vocab, seq in _planted_sides(tr, info):
        W, b = keys
        for row, n in enumerate((DETECT, RANDOM)):
            nm = _neuron(mem.layer(kind, 0), n)
            acts = [_relu(u[vocab.token_to_id(t)] @ W[row] + b[row])
                    for p in PAIRS for t in seq(p)[(1 if kind == "decoder" else 0):
                                                   (None if kind == "decoder" else -1)]]
            assert nm.max == pytest.approx(max(acts), rel=1e-4)
            for t in nm.triggers:
                tok = seq(PAIRS[t.sentence])[t.position]
                assert t.token == tok
                assert t.activation == pytest.approx(
                    _relu(u[vocab.token_to_id(tok)] @ W[row] + b[row]), rel=1e-4, abs=1e-5)


def test_planted_value_promotes_its_output_embedding_row(planted):
    tr, info, mem = planted
    assert _neuron(mem.layer("decoder", 0), DETECT).promoted[0][0] == info["promote_dec"]
    assert _neuron(mem.layer("encoder", 0), DETECT).promoted[0][0] == info["promote_enc"]
    W2 = tr.model.transformer.decoder.layers[0].linear2.weight.data
    G = tr.model.generator.weight.data
    ids, scores = value_promotions(W2, G, [DETECT, RANDOM], n=4)
    full = G.astype(np.float64) @ W2[:, RANDOM].astype(np.float64)
    np.testing.assert_array_equal(ids[1], np.argsort(-full, kind="stable")[:4])
    np.testing.assert_allclose(scores[1], np.sort(full)[::-1][:4], rtol=1e-12)


def test_planted_agreement_is_the_share_of_triggers_followed_by_the_promoted_word(planted):
    tr, info, mem = planted
    word, promote = info["tgt_word"], info["promote_dec"]
    follows = [(p.tgt[i + 1] if i + 1 < len(p.tgt) else "<eos>")
               for p in PAIRS for i, w in enumerate(p.tgt) if w == word]
    assert len(follows) <= 40                       # every occurrence is a trigger
    nm = _neuron(mem.layer("decoder", 0), DETECT)
    expected = follows.count(promote) / len(follows)
    assert nm.agreement == pytest.approx(expected)
    assert 0 < expected < 1 or expected == 1.0
    assert {t.next_token for t in nm.triggers} == set(follows)
    s = mem.layer("decoder", 0).summary
    assert s["agreement_chance"] == pytest.approx(1 / len(tr.tgt_vocab))


def test_planted_relative_drop_by_hand(planted):
    """With attention off, removing the trigger's last word leaves the
    previous word's own activation: drop = (a - relu(k.u_prev + b)) / a;
    encoder <unk> variant: (a - relu(k.u_unk + b)) / a."""
    tr, info, mem = planted
    for kind, u, keys, vocab, seq in _planted_sides(tr, info):
        W, b = keys
        k, c = W[1], b[1]                                             # the RANDOM neuron
        nm = _neuron(mem.layer(kind, 0), RANDOM)
        drops, drops_unk = [], []
        for t in nm.triggers:
            toks = seq(PAIRS[t.sentence])
            a = _relu(u[vocab.token_to_id(toks[t.position])] @ k + c)
            if t.position == 0:
                assert t.ablated is None
                continue
            a_prev = _relu(u[vocab.token_to_id(toks[t.position - 1])] @ k + c)
            assert t.ablated == pytest.approx(a_prev, abs=1e-4)
            drops.append((a - a_prev) / a)
            if kind == "encoder":
                a_unk = _relu(u[UNK] @ k + c)
                assert t.ablated_unk == pytest.approx(a_unk, abs=1e-4)
                drops_unk.append((a - a_unk) / a)
        assert len(drops) > 5 and len({round(d, 3) for d in drops}) > 1
        assert nm.ablation_drop == pytest.approx(np.mean(drops), abs=1e-4)
        if kind == "encoder":
            assert nm.ablation_drop_unk == pytest.approx(np.mean(drops_unk), abs=1e-4)


def test_shared_traces_give_the_same_result(planted):
    tr, info, mem = planted
    traces = [t for _, t in teacher_forced_traces(tr, PAIRS, batch_size=25)]
    again = ffn_memories(tr, PAIRS, top_neurons=2, top_k=40, n_ablate=40, traces=traces)
    assert json.dumps(again.to_dict()) == json.dumps(mem.to_dict())
    with pytest.raises(ValueError, match="traces"):
        ffn_memories(tr, PAIRS[:30], top_neurons=2, traces=traces)
    with pytest.raises(ValueError, match="does not match"):
        ffn_memories(tr, PAIRS[1:] + PAIRS[:1], top_neurons=2, traces=traces)


def test_bad_arguments_are_named(planted):
    tr, _, _ = planted
    with pytest.raises(ValueError, match="rank_by"):
        ffn_memories(tr, PAIRS, rank_by="median")
    with pytest.raises(ValueError, match="top_neurons"):
        ffn_memories(tr, PAIRS, top_neurons=0)
    assert len(ffn_memories(tr, PAIRS[:5], top_neurons=F + 1).layer("encoder", 0).top) == F
    with pytest.raises(TypeError, match="top_k"):
        ffn_memories(tr, PAIRS, top_k=2.5)
    with pytest.raises(ValueError, match="n_ablate"):
        ffn_memories(tr, PAIRS, top_k=3, n_ablate=4)
    with pytest.raises(ValueError, match="pairs"):
        ffn_memories(tr, [])
    with pytest.raises(TypeError, match="translator"):
        ffn_memories(tr.model, PAIRS)
    with pytest.raises(TypeError, match="pairs"):
        ffn_memories(tr, "the cat")
    with pytest.raises(ValueError, match="POS"):
        ffn_memories(tr, [PAIRS[0]._replace(pos=None)] + PAIRS[1:5])


# ----------------------------------------------------------------------------
# the shipped model


@pytest.fixture(scope="module")
def shipped():
    tr = Translator.load(default_model_path())
    pairs = generate_pairs(40, seed=11)
    return tr, pairs, ffn_memories(tr, pairs, top_neurons=6, top_k=8, n_ablate=3)


def test_shipped_smoke(shipped):
    tr, pairs, mem = shipped
    d = mem.to_dict()
    json.dumps(d)
    assert [(lm.kind, lm.layer) for lm in mem.layers] == \
        [("encoder", i) for i in range(3)] + [("decoder", i) for i in range(3)]
    assert mem.n_tokens["encoder"] == sum(len(p.src) + 1 for p in pairs)
    assert mem.n_tokens["decoder"] == sum(len(p.tgt) + 1 for p in pairs)
    for lm in mem.layers:
        assert lm.mean_activation.shape == (512,) and len(lm.neurons) == 6
        assert lm.caption and lm.summary["share_token"] > lm.summary["share_token_random"]
        means = lm.mean_activation[lm.top]
        assert np.all(np.diff(means) <= 0) and means[0] == lm.mean_activation.max()
        for nm in lm.neurons:
            acts = [t.activation for t in nm.triggers]
            assert acts == sorted(acts, reverse=True) and acts[0] == pytest.approx(nm.max)
            assert all(t.token not in ("<eos>", "<bos>") for t in nm.triggers)
    last = mem.layer("decoder", 2).summary
    assert last["agreement"] > 20 * last["agreement_chance"]
    assert mem.caption


def test_kept_activations_are_every_real_token(planted):
    tr, info, mem = planted
    m = ffn_memories(tr, PAIRS[:12], top_neurons=2, top_k=5, keep_activations=True)
    lm = m.layer("decoder", 0)
    assert lm.activations.shape == (sum(len(p.tgt) + 1 for p in PAIRS[:12]), F)
    words = lm.where[:, 1] > 0                                    # not the <bos> slot
    np.testing.assert_allclose(lm.mean_activation, lm.activations[words].mean(0), rtol=1e-6)
    s, pos = lm.where[7]
    t = trace(tr, PAIRS[s].source, PAIRS[s].target)
    np.testing.assert_allclose(lm.activations[7], t.ffn("decoder", 0).hidden[0, pos], rtol=1e-6)
    assert "activations" not in lm.to_dict() and mem.layer("decoder", 0).activations is None
    nm = _neuron(lm, DETECT)
    assert all(t.text == PAIRS[t.sentence].target for t in nm.triggers)


def test_shipped_decoder_ablation_equals_a_rerun_on_the_shorter_prefix(shipped):
    tr, pairs, mem = shipped
    checked = 0
    for layer in range(3):
        for nm in mem.layer("decoder", layer).neurons[:2]:
            t = next(t for t in nm.triggers if t.ablated is not None)
            p = pairs[t.sentence]
            prefix = " ".join(p.tgt[:t.position - 1])         # inputs <bos> + tgt[:i-1]
            tt = trace(tr, p.source, prefix)
            h = tt.ffn("decoder", layer).hidden[0, t.position - 1, nm.neuron]
            assert h == pytest.approx(t.ablated, rel=1e-4, abs=1e-4)
            checked += 1
    assert checked == 6


def test_shipped_encoder_ablation_equals_a_rerun_without_the_word(shipped):
    tr, pairs, mem = shipped
    net = tr.model
    for layer in range(3):
        nm, t = next((nm, t) for nm in mem.layer("encoder", layer).neurons
                     for t in nm.triggers if t.ablated is not None)
        p = pairs[t.sentence]
        ids = tr.src_vocab.encode(list(p.src), add_eos=True)
        src = np.asarray([ids[:t.position] + ids[t.position + 1:]])
        with Tracer(net) as tt, no_grad():
            net.encode(src)
        h = tt.ffn("encoder", layer).hidden[0, t.position - 1, nm.neuron]
        assert h == pytest.approx(t.ablated, rel=1e-4, abs=1e-4)
        assert t.activation == pytest.approx(
            trace(tr, p.source, p.target).ffn("encoder", layer).hidden[0, t.position,
                                                                       nm.neuron], rel=1e-5)
