"""explain.ablation: zeroing heads, head importance on the loss, pruning search."""
import dataclasses
import json

import numpy as np
import pytest

from pytransformer import decode
from pytransformer.explain import ablation, trace
from pytransformer.explain.ablation import (ablate, all_heads, head_importance, prune_heads,
                                            teacher_forced_loss)

SENTS = ["the ball is blue", "the black cat drank the milk"]
REFS = ["la bola es azul", "el gato negro bebió la leche"]


@pytest.fixture(scope="module")
def tr(shipped):
    return shipped


@pytest.fixture(scope="module")
def pairs():
    from pytransformer.data import generate_pairs
    return generate_pairs(40, seed=3)


@pytest.mark.parametrize("kind,layer,head", [("encoder", 0, 1), ("decoder", 2, 3),
                                             ("cross", 1, 2)])
def test_ablate_removes_exactly_that_heads_contribution(tr, kind, layer, head):
    t0 = trace(tr, SENTS, REFS)
    a0 = t0.attention(kind, layer)
    with ablate(tr, [(kind, layer, head)]) as groups:
        assert groups == {(kind, layer): [head]}
        t1 = trace(tr, SENTS, REFS)
    a1 = t1.attention(kind, layer)
    # the module's inputs are those of the unablated run (nothing below changed)
    assert np.allclose(a1.query_in, a0.query_in, atol=1e-6)
    expected = a0.out - a0.head_contributions()[:, head]
    assert np.abs(a1.out - expected).max() < 1e-4 * np.abs(a0.out).max()
    assert np.abs(a1.out - a0.out).max() > 1e-2           # the head did contribute
    # restored on exit: a new run is the unablated one
    t2 = trace(tr, SENTS, REFS)
    assert np.array_equal(t2.logits, t0.logits)


def test_ablate_restores_after_an_error(tr):
    before = trace(tr, SENTS, REFS).logits
    with pytest.raises(RuntimeError, match="inside"):
        with ablate(tr, all_heads(tr)):
            raise RuntimeError("inside")
    for m in ablation.attention_modules(tr).values():
        assert not m.out_proj._forward_pre_hooks
    assert np.array_equal(trace(tr, SENTS, REFS).logits, before)


def test_ablate_acts_on_the_cached_decoder(tr):
    src, _ = tr.encode_sources(SENTS)
    heads = [("cross", layer, h) for layer in range(3) for h in range(4)]
    normal = decode.greedy(tr.model, src)
    with ablate(tr.model, heads):
        cached = decode.greedy(tr.model, src, use_cache=True)
        full = decode.greedy(tr.model, src, use_cache=False)
    assert [list(c) for c in cached] == [list(f) for f in full]
    assert [list(c) for c in cached] != [list(n) for n in normal]   # no source: wrong output
    assert tr.translate(SENTS) == REFS


def test_ablate_validates_heads(tr):
    for bad, msg in [([("foo", 0, 0)], "kind"), ([("cross", 3, 0)], "layer"),
                     ([("cross", 0, 4)], "head"), ([("cross", 0)], "expected"),
                     ([("encoder", True, 0)], "layer")]:
        with pytest.raises(ValueError, match=msg):
            with ablate(tr, bad):
                pass
    with ablate(tr, ("cross", -1, 0)) as groups:          # one head, negative layer
        assert groups == {("cross", 2): [0]}
    with ablate(tr, []) as groups:
        assert groups == {}


def test_teacher_forced_loss_matches_the_logits(tr, pairs):
    some = pairs[:5]
    t = trace(tr, [p.source for p in some], [p.target for p in some])
    z = t.logits - t.logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = []
    for b, p in enumerate(some):
        ids = tr.tgt_vocab.encode(list(p.tgt), add_eos=True)
        nll += [-logp[b, i, j] for i, j in enumerate(ids)]
    assert teacher_forced_loss(tr, some) == pytest.approx(np.mean(nll), rel=1e-5)


def test_head_importance(tr, pairs):
    imp = head_importance(tr, pairs, max_pairs=None)
    assert len(imp.heads) == 36 and imp.loss.shape == (36,)
    assert set(imp.table) == {"encoder", "decoder", "cross"}
    assert all(v.shape == (3, 4) for v in imp.table.values())
    assert imp.base_loss == pytest.approx(teacher_forced_loss(tr, pairs), rel=1e-5)
    # the reused prefix gives the same loss as a full run with the head ablated
    for j in (1, 17, 30):
        assert imp.loss[j] == pytest.approx(teacher_forced_loss(tr, pairs, [imp.heads[j]]),
                                            rel=1e-5)
    k, lay, h = imp.heads[30]
    assert imp.table[k][lay, h] == imp.delta[30]
    assert imp.delta[imp.order[-1]] == imp.delta.max()
    assert imp.top(1)[0][0] == imp.heads[int(np.argmax(imp.delta))]
    assert imp.n_tokens == sum(len(p.tgt) + 1 for p in pairs)
    json.dumps(imp.to_dict())
    assert "ablation" in imp.caption


def test_largest_passing_binary_search():
    for n, limit in [(36, 13), (36, 36), (36, 0), (5, 2), (1, 1)]:
        calls = []

        def ok(k):
            calls.append(k)
            return k <= limit
        assert ablation._largest_passing(ok, n) == limit
        assert 0 not in calls and len(calls) <= int(np.ceil(np.log2(n + 2)))


def test_prune_heads(tr, pairs, monkeypatch):
    full = head_importance(tr, pairs[:10], max_pairs=None)
    # the 8 most important heads only, so that few greedy decodings are needed
    idx = full.order[-8:]
    imp = dataclasses.replace(full, heads=[full.heads[i] for i in idx], loss=full.loss[idx],
                              delta=full.delta[idx])
    assert [imp.heads[i] for i in imp.order] == [full.heads[i] for i in idx]
    # without sacrebleu: loss and exact match at 0, n/2 and n heads, BLEU None
    monkeypatch.setattr(ablation, "bleu_score", lambda h, r: None)
    pr = prune_heads(tr, pairs, imp, max_pairs=12)
    assert not pr.bleu_available and pr.max_prunable is None
    assert [p["k"] for p in pr.points] == [0, 4, 8] and pr.points[0]["bleu"] is None
    assert pr.points[0]["loss"] < pr.points[-1]["loss"]
    assert "sacrebleu is not installed" in pr.caption
    # with a stand-in BLEU (100 x exact match) the search runs on it
    monkeypatch.setattr(ablation, "bleu_score",
                        lambda h, r: 100.0 * np.mean([a == b for a, b in zip(h, r)]))
    pr = prune_heads(tr, pairs, imp, max_drop=5.0, max_pairs=12)
    assert pr.bleu_available and pr.n_pairs == 12
    ks = [p["k"] for p in pr.points]
    assert ks == sorted(ks) and ks[0] == 0 and len(ks) <= 5
    best = pr.max_prunable
    assert pr.pruned == pr.order[:best]
    by_k = {p["k"]: p["bleu"] for p in pr.points}
    assert pr.base_bleu - by_k[best] < 5.0
    assert all(pr.base_bleu - b >= 5.0 for k, b in by_k.items() if k > best)
    json.dumps(pr.to_dict())
    with pytest.raises(TypeError, match="importance"):
        prune_heads(tr, pairs, {"heads": []})
