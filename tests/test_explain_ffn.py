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


# ----------------------------------------------------------------------------
# what a neuron fires on, in words; each FFN ablated; the layers compared


from pytransformer.explain.ablation import ablate_ffn
from pytransformer.explain.ffn import (FeatureTable, choose_features, corpus_ffn,
                                       describe_features, ffn_answer, sentence_ffn,
                                       token_features)


def test_token_features_of_a_known_sentence():
    words = ["the", "cats", "drank", "the", "milk", "<eos>"]
    f = token_features("encoder", words, ["DET", "NOUN", "VERB", "DET", "NOUN", None])
    assert set(f[1]) == {"word=cats", "pos=NOUN", "number=pl", "gender=m", "class=animal",
                         "prev=the", "prevpos=DET", "next=drank", "nextpos=VERB"}
    assert "first" in f[0] and "last" in f[4] and "tense=past" in f[2]
    assert f[5] == ["word=<eos>"]
    f = token_features("decoder", ["<bos>", "la", "leche"], out_words=["la", "leche", "<eos>"])
    assert f[0] == ["word=<bos>"]
    assert {"word=la", "pos=DET", "gender=f", "number=sg", "wword=leche", "wpos=NOUN",
            "wgender=f", "first"} <= set(f[1])
    assert "wword=<eos>" in f[2] and "prev=la" in f[2]


def test_describe_features_in_words():
    assert describe_features("encoder", ["pos=NOUN", "number=pl", "prev=the"]) == \
        "plural nouns after 'the'"
    assert describe_features("encoder", ["pos=VERB", "prevpos=NOUN"]) == "verbs after a noun"
    assert describe_features("decoder", ["word=la", "wpos=NOUN", "wgender=f"]) == \
        "reading 'la', about to write a feminine noun"
    assert describe_features("decoder", ["wword=<eos>"]) == "about to end the sentence"


def test_choose_features_finds_the_planted_conjunction():
    rng = np.random.default_rng(1)
    rows = []
    for i in range(400):
        r = [f"word=w{rng.integers(40)}", "pos=NOUN" if i % 3 == 0 else "pos=VERB",
             "number=pl" if i % 2 == 0 else "number=sg", f"prev=p{rng.integers(5)}"]
        rows.append(r)
    table = FeatureTable(rows)
    plural_nouns = [i for i, r in enumerate(rows) if "pos=NOUN" in r and "number=pl" in r]
    trig = plural_nouns[:16] + [1, 3, 5, 7]            # 16 of 20 are plural nouns
    names, covered, base = choose_features(table, trig)
    assert set(names) == {"pos=NOUN", "number=pl"} and covered == 16
    assert base == pytest.approx(len(plural_nouns) / 400)
    assert describe_features("encoder", names) == "plural nouns"


def test_planted_detector_is_described_by_its_word(planted):
    tr, info, mem = planted
    for kind, word, head in (("encoder", info["src_word"], f"'{info['src_word']}'"),
                             ("decoder", info["tgt_word"], f"reading '{info['tgt_word']}'")):
        d = _neuron(mem.layer(kind, 0), DETECT).description
        assert f"word={word}" in d.features and d.text.startswith(head)
        assert d.covered == d.k and d.coverage == 1.0
        seqs = [p.src for p in PAIRS] if kind == "encoder" else [p.tgt for p in PAIRS]
        assert d.k == min(sum(s.count(word) for s in seqs), 20)
    json.dumps(mem.to_dict())


@pytest.fixture(scope="module")
def shipped_corpus():
    tr = Translator.load(default_model_path())
    pairs = generate_pairs(80, seed=5)
    return tr, pairs, corpus_ffn(tr, pairs, top_k=10, n_top=6, cache=False)


def test_description_coverage_is_the_recomputed_share(shipped_corpus):
    """Top activations found again from a fresh trace; the description's
    coverage and base rate counted again over them and over every word."""
    tr, pairs, c = shipped_corpus
    t = trace(tr, [p.source for p in pairs], [p.target for p in pairs])
    checked = 0
    for kind in ("encoder", "decoder"):
        feats, where = [], []
        for b, p in enumerate(pairs):
            if kind == "encoder":
                fs = token_features(kind, list(p.src) + ["<eos>"], list(p.pos) + [None])
                words = range(len(p.src))                         # <eos> left out
            else:
                fs = token_features(kind, ["<bos>"] + list(p.tgt),
                                    out_words=list(p.tgt) + ["<eos>"])
                words = range(1, len(p.tgt) + 1)                  # <bos> left out
            for i in words:
                feats.append(set(fs[i]))
                where.append((b, i))
        for layer in range(3):
            h = t.ffn(kind, layer).hidden
            for n in c.top[kind][layer][:3]:
                d = c.describe(kind, layer, int(n))
                acts = np.array([h[b, i, n] for b, i in where])
                top = np.argsort(-acts, kind="stable")[:10]
                top = top[acts[top] > 0]
                idx, vals = c.neuron_triggers(kind, layer, int(n))
                np.testing.assert_allclose(vals, acts[top], rtol=1e-4, atol=1e-5)
                covered = sum(set(d.features) <= feats[j] for j in top)
                assert d.k == len(top) and d.covered == covered
                assert d.base == pytest.approx(
                    np.mean([set(d.features) <= f for f in feats]))
                assert d.coverage > d.base            # the words are not a random label
                checked += 1
    assert checked == 18


def test_layers_compared_by_cka_and_trigger_overlap(shipped_corpus):
    from pytransformer.explain.layers import linear_cka
    tr, pairs, c = shipped_corpus
    t = trace(tr, [p.source for p in pairs], [p.target for p in pairs])
    mask = np.zeros(t.src_ids.shape, bool)
    for b, p in enumerate(pairs):
        mask[b, :len(p.src)] = True                                # words, not <eos>
    x = [t.ffn("encoder", li).output[mask] for li in range(3)]
    assert c.cka["encoder"][0, 2] == pytest.approx(linear_cka(x[0], x[2]), rel=1e-3)
    for kind in ("encoder", "decoder"):
        sets = [set(int(i) for n in c.top[kind][li] for i in c.triggers[kind][li][n] if i >= 0)
                for li in range(3)]
        assert c.overlap[kind][0, 1] == pytest.approx(len(sets[0] & sets[1])
                                                      / len(sets[0] | sets[1]))
        assert np.all(np.diag(c.cka[kind]) == 1) and np.all(c.cka[kind] <= 1 + 1e-9)
        assert sum(c.profile[kind][0].values()) >= len(c.top[kind][0])


def test_corpus_statistics_are_cached_on_disk(tmp_path, monkeypatch):
    from pytransformer.explain import ffn
    monkeypatch.setenv("PYTRANSFORMER_CACHE_DIR", str(tmp_path))
    tr = Translator.load(default_model_path())
    pairs = generate_pairs(30, seed=6)
    first = corpus_ffn(tr, pairs, top_k=5, n_top=4)
    assert not first.cached and len(list(tmp_path.glob("*.npz"))) == 1
    assert corpus_ffn(tr, pairs, top_k=5, n_top=4) is first           # in this process
    ffn._MEMO.clear()
    again = corpus_ffn(tr, pairs, top_k=5, n_top=4)
    assert again.cached and again is not first
    for kind in ("encoder", "decoder"):
        np.testing.assert_array_equal(again.triggers[kind][1], first.triggers[kind][1])
        np.testing.assert_array_equal(again.cka[kind], first.cka[kind])
    with no_grad():
        tr.model.transformer.encoder.layers[0].linear1.bias.data[0] += 1.0   # another model
    try:
        assert not corpus_ffn(tr, pairs, top_k=5, n_top=4).cached
    finally:
        tr.model.transformer.encoder.layers[0].linear1.bias.data[0] -= 1.0


def test_ablate_ffn_zeroes_the_block_and_restores_it():
    tr = Translator.load(default_model_path())
    s = "the black cat drank the milk"
    before = tr.translate([s])[0]
    t0 = trace(tr, s, before)
    with ablate_ffn(tr, [("decoder", 0)]) as chosen:
        assert chosen == [("decoder", 0)]
        t = trace(tr, s, before)
        ablated = tr.translate([s])[0]
    assert np.all(t.ffn("decoder", 0).output == 0)
    np.testing.assert_allclose(t.ffn("encoder", 2).output, t0.ffn("encoder", 2).output,
                               rtol=1e-5, atol=1e-6)
    # the same as a copy of the model whose linear2 is zero
    import copy
    tr2 = copy.deepcopy(tr)
    lin = tr2.model.transformer.decoder.layers[0].linear2
    lin.weight.data[...] = 0.0
    lin.bias.data[...] = 0.0
    np.testing.assert_allclose(trace(tr2, s, before).logits, t.logits, rtol=1e-4, atol=1e-4)
    assert tr2.translate([s])[0] == ablated
    assert tr.translate([s])[0] == before                         # hooks removed
    with pytest.raises(ValueError, match="kind"):
        with ablate_ffn(tr, [("cross", 0)]):
            pass
    with pytest.raises(ValueError, match="layer"):
        with ablate_ffn(tr, [("encoder", 3)]):
            pass


def test_sentence_ffn_numbers(shipped_corpus):
    tr, pairs, c = shipped_corpus
    s = "the black cat drank the milk"
    t = trace(tr, s)
    effects = sentence_ffn(tr, t, s, c, n_neurons=3)
    assert [(e.kind, e.layer) for e in effects] == \
        [("encoder", i) for i in range(3)] + [("decoder", i) for i in range(3)]
    explained = " ".join(t.tgt_out_tokens[0][:-1])
    for e in effects:
        h = t.ffn(e.kind, e.layer).hidden[0]
        words = slice(0, len(t.src_tokens[0]) - 1) if e.kind == "encoder" \
            else slice(1, len(t.tgt_in_tokens[0]))
        assert e.neurons[0].activation == pytest.approx(h[words].max())
        for n in e.neurons:
            assert n.activation == pytest.approx(h[n.position, n.neuron])
            assert n.description == c.describe(e.kind, e.layer, n.neuron)
            _, vals = c.neuron_triggers(e.kind, e.layer, n.neuron)
            assert n.threshold == pytest.approx(vals[-1])
        with ablate_ffn(tr, [(e.kind, e.layer)]):
            assert e.ablated == tr.translate([s])[0]
        assert e.intact == explained == tr.translate([s])[0]     # no translation given
        assert e.changed == sum(a != b for a, b in zip(e.ablated.split(), explained.split())) \
            + abs(len(e.ablated.split()) - len(explained.split()))
        assert 0 < e.ablated_prob <= 1 and 0 < e.prob <= 1
    # the geometric mean word probability of the translation, recomputed
    z = t.logits[0]
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ids = list(t.tgt_ids[0, 1:]) + [2]
    assert effects[0].prob == pytest.approx(np.exp(np.mean(np.log(p[np.arange(len(ids)), ids]))))
    # zeroing some FFN changes the translation or lowers its probability
    assert max(e.prob - e.ablated_prob for e in effects) > 0.05
    # with a reference given, words changed count against the model's own translation
    ref = "el gato pequeño negro bebió la leche"
    s2 = "the small black cat drank the milk"
    own = tr.translate([s2])[0]
    e = sentence_ffn(tr, trace(tr, s2, ref), s2, c, n_neurons=1)[0]
    assert e.intact == own
    assert e.changed == sum(a != b for a, b in zip(e.ablated.split(), own.split())) \
        + abs(len(e.ablated.split()) - len(own.split()))


def test_ffn_answer_for_analyze(planted):
    tr, info, mem = planted
    with pytest.raises(ValueError, match="kind"):
        ffn_answer(mem, "cross")
    q, a = ffn_answer(mem, "encoder")
    assert "encoder" in q and "layer 0: n" in a
    d = mem.corpus.describe("encoder", 0, int(mem.corpus.top["encoder"][0][0]))
    assert f"fires on {d.text} ({d.covered}/{d.k} of its top activations)" in a
    q, a = ffn_answer(mem, "decoder")
    d = mem.corpus.describe("decoder", 0, int(mem.corpus.top["decoder"][0][0]))
    assert f"fires when {d.text} ({d.covered}/{d.k} of its top activations)" in a


def test_shared_traces_may_hold_words_outside_the_vocabulary():
    """A test pair with a Spanish word the model never saw: its trace labels
    the word '<unk:word>', and the shared traces still match the pair."""
    import warnings
    tr = Translator.load(default_model_path())
    p = generate_pairs(1, seed=2)[0]
    p = p._replace(tgt=p.tgt[:-1] + ("estornudazo",))
    assert "estornudazo" not in tr.tgt_vocab
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = trace(tr, [p.source], [p.target])
    assert t.tgt_out_tokens[0][-2] == "<unk:estornudazo>"
    assert [o for o, _ in teacher_forced_traces(tr, [p], traces=[t])] == [0]
    with pytest.raises(ValueError, match="does not match"):
        list(teacher_forced_traces(tr, [p._replace(tgt=p.tgt[:-1] + ("otro",))], traces=[t]))


def test_sentence_neurons_are_one_per_distinct_word_first(shipped_corpus):
    tr, pairs, c = shipped_corpus
    s = "the black cat drank the milk"
    t = trace(tr, s)
    for e in sentence_ffn(tr, t, s, c, n_neurons=4):
        words = [n.word for n in e.neurons]
        assert len(set(words)) == 4                      # five distinct words to choose from
        h = t.ffn(e.kind, e.layer).hidden[0]
        real = slice(0, 6) if e.kind == "encoder" else slice(1, 7)
        peak = h[real].max(0)
        # each neuron is shown at the word where it fires most
        assert all(n.activation == pytest.approx(peak[n.neuron]) for n in e.neurons)
        assert e.neurons[0].activation == pytest.approx(peak.max())


def test_analyze_answers_carry_the_encoder_ffn_answer(planted):
    from pytransformer.explain.analysis import Analysis, _answers, analysis_report
    tr, info, mem = planted
    a = Analysis(n_pairs=len(PAIRS), ffn=mem)
    rows = _answers(a)
    assert ffn_answer(mem, "encoder") in rows
    assert "feed-forward part learn" in analysis_report(a).to_html()


def _fake_corpus(cka, overlap, chance):
    """What similarity_sentence reads of a CorpusFFN, for an encoder of
    len(cka) layers."""
    from types import SimpleNamespace
    L = len(cka)
    return SimpleNamespace(
        num_layers=lambda kind: L, cka={"encoder": np.array(cka, float)},
        overlap={"encoder": np.array(overlap, float)},
        overlap_chance={"encoder": np.array(chance, float)},
        top={"encoder": [[1, 2]] * L}, profile={"encoder": [{"word": 1}] * L},
        tables={"encoder": SimpleNamespace(keep=np.ones(50, bool))}, pairs=[0] * 7, top_k=20)


def test_similarity_sentence_names_neighbours_ends_and_alike_pairs():
    from pytransformer.explain.ffn import layer_pairs, similarity_sentence
    L = 5
    cka = np.eye(L)
    ov = np.zeros((L, L))
    for i in range(L):
        for j in range(i + 1, L):
            cka[i, j] = cka[j, i] = 0.1 * (i + j) / 2 + 0.01 * j      # all below 0.8 ...
            ov[i, j] = ov[j, i] = 0.01 * (i + j)
    cka[1, 3] = cka[3, 1] = 0.85                                     # ... but one pair
    c = _fake_corpus(cka, ov, np.full((L, L), 0.03))
    text = similarity_sentence(c, "encoder")
    assert text.startswith("Encoder: the FFNs of layers 1 and 3 (CKA 0.85) compute nearly "
                           "the same function; the other pairs share part")
    assert ("neighbouring layers 0\u20131 0.06, 1\u20132 0.17, 2\u20133 0.28, 3\u20134 0.39; "
            "the first and last 0\u20134 0.24; of the 5 other pairs the most alike "
            "1\u20133 0.85, the least 0\u20132 0.12") in text
    assert "neighbouring layers 0\u20131 1.0%, 1\u20132 3.0%" in text
    assert "random sets of the same sizes would overlap by 3.0%\u20133.0%. What the" in text
    assert len(layer_pairs(c, "encoder")) == 10
    assert layer_pairs(c, "encoder")[0] == (0, 1, pytest.approx(0.06), 0.01, 0.03)
    # three layers: every pair is a neighbour or the ends
    c3 = _fake_corpus(cka[:3, :3], ov[:3, :3], np.full((3, 3), 0.03))
    text3 = similarity_sentence(c3, "encoder")
    assert text3.startswith("Encoder: each layer's FFN computes a different function.")
    assert "other pairs" not in text3 and "0\u20132 0.12" in text3
    c2 = _fake_corpus(cka[:2, :2], ov[:2, :2], np.full((2, 2), 0.03))
    assert "first and last" not in similarity_sentence(c2, "encoder")
