"""explain.rollout: rollout on planted attention, Spearman, ablation influence."""
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytransformer.explain.rollout import (cross_rollout, rankdata, rollout,
                                           rollout_vs_ablation, source_ablation_influence,
                                           spearman)


# --- rollout by hand ---------------------------------------------------------------

def test_identity_attention_gives_identity_rollout():
    eye = np.eye(5)
    for residual in (0.0, 0.5, 1.0):
        assert np.allclose(rollout([eye, eye, eye], residual), eye)
    batch = np.broadcast_to(eye, (2, 3, 5, 5))
    assert np.allclose(rollout([batch, batch]), batch)


def test_planted_two_layer_rollout():
    a0 = np.array([[1.0, 0.0], [0.5, 0.5]])
    a1 = np.array([[0.0, 1.0], [0.0, 1.0]])
    # 0.5 A + 0.5 I: A~0 = [[1, 0], [.25, .75]], A~1 = [[.5, .5], [0, 1]]
    # R = A~1 @ A~0 = [[.5 + .125, .375], [.25, .75]]
    assert np.allclose(rollout([a0, a1]), [[0.625, 0.375], [0.25, 0.75]])
    # the order matters: the first layer is applied first
    assert np.allclose(rollout([a1, a0]), [[0.5, 0.5], [0.125, 0.875]])
    # residual 0: the plain product of the attention matrices
    assert np.allclose(rollout([a0, a1], residual=0.0), a1 @ a0)


@given(st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31))
def test_rollout_rows_stay_distributions(n, layers, seed):
    rng = np.random.default_rng(seed)
    mats = [rng.dirichlet(np.ones(n), size=n) for _ in range(layers)]
    r = rollout(mats)
    assert np.allclose(r.sum(-1), 1.0) and (r >= 0).all()
    c = rng.dirichlet(np.ones(n), size=3)
    m = cross_rollout(c, r)
    assert m.shape == (3, n) and np.allclose(m.sum(-1), 1.0)


def test_rollout_bad_input():
    with pytest.raises(ValueError, match="attentions\\[1\\]"):
        rollout([np.eye(3), np.eye(4)])
    with pytest.raises(ValueError, match="L, L"):
        rollout([np.ones((2, 3))])
    with pytest.raises(ValueError, match="residual"):
        rollout([np.eye(2)], residual=1.5)
    with pytest.raises(ValueError, match="at least one"):
        rollout([])
    with pytest.raises(ValueError, match="cross"):
        cross_rollout(np.ones((2, 3)), np.eye(4))


# --- Spearman --------------------------------------------------------------------------

def test_spearman_hand_example_with_ties():
    assert rankdata([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]
    assert rankdata([3, 1, 3, 3]).tolist() == [3, 1, 3, 3]
    # ranks a = (1, 2.5, 2.5, 4), b = (1, 3, 2, 4): centred dot 4.5, norms^2 4.5 and 5
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(np.sqrt(4.5 / 5))
    assert spearman([1, 2, 3, 4], [10, 100, 1000, 1e4]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="b: expected 3"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        rankdata([1.0, np.nan])


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=3, max_size=30))
def test_spearman_against_scipy(xy):
    stats = pytest.importorskip("scipy.stats")
    a, b = np.array(xy, dtype=float).T
    ours = spearman(a, b)
    if np.isnan(ours):
        assert len(set(a)) == 1 or len(set(b)) == 1
    else:
        assert ours == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)
    assert rankdata(a).tolist() == pytest.approx(stats.rankdata(a).tolist())


# --- on the shipped model -----------------------------------------------------------

@pytest.fixture(scope="module")
def tr(shipped):
    return shipped


@pytest.fixture(scope="module")
def pairs():
    from pytransformer.data import generate_pairs
    return generate_pairs(40, seed=3)


def _probs_by_hand(tr, src_ids, tgt_in, T):
    logits = tr.model(src_ids, tgt_in).data.astype(np.float64)[0, :T]
    z = logits - logits.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def test_source_ablation_influence_by_hand(tr, pairs):
    from pytransformer.data import UNK, batch
    from pytransformer.autograd import no_grad
    p = pairs[0]
    i = next(k for k, w in enumerate(p.src) if p.src.count(w) == 1)
    T = len(p.tgt) + 1
    src, tin, _ = batch([p], tr.src_vocab, tr.tgt_vocab)
    with no_grad():
        p0 = _probs_by_hand(tr, src, tin, T)
        unk = src.copy()
        unk[0, i] = UNK
        p_unk = _probs_by_hand(tr, unk, tin, T)
        w = tr.model.src_embed.weight.data
        row = w[src[0, i]].copy()
        w[src[0, i]] = 0                     # zero this word's embedding (it occurs once)
        try:
            p_zero = _probs_by_hand(tr, src, tin, T)
        finally:
            w[src[0, i]] = row
    for method, p1 in (("unk", p_unk), ("zero", p_zero)):
        got = source_ablation_influence(tr, pairs[:3], method=method)
        assert [g.shape for g in got] == [(len(q.tgt) + 1, len(q.src)) for q in pairs[:3]]
        assert np.allclose(got[0][:, i], 0.5 * np.abs(p1 - p0).sum(-1), atol=1e-5)
    with pytest.raises(ValueError, match="method"):
        source_ablation_influence(tr, pairs[:1], method="drop")


def test_rollout_vs_ablation_on_the_shipped_model(tr, pairs):
    res = rollout_vs_ablation(tr, pairs, max_pairs=20)
    assert res.n_pairs == 20 and len(res.raw) == len(res.rollout) == len(res.influence) == 20
    for p, raw, ro, f, st_, tt in zip(pairs, res.raw, res.rollout, res.influence,
                                      res.src_tokens, res.tgt_tokens):
        S, T = len(p.src) + 1, len(p.tgt) + 1
        assert raw.shape == ro.shape == (T, S) and f.shape == (T, S - 1)
        assert np.allclose(raw.sum(1), 1, atol=1e-5) and np.allclose(ro.sum(1), 1, atol=1e-5)
        assert (f >= 0).all() and (f <= 1 + 1e-9).all()
        assert st_ == list(p.src) + ["<eos>"] and tt == list(p.tgt) + ["<eos>"]
    # the model's cross-attention follows the words that matter
    assert res.mean_spearman["raw"]["cell"] > 0.2
    assert res.top1["raw"] > 0.6
    assert res.spearman["rollout"]["word"].shape == (20,)
    assert set(res.better) == {"word", "row", "cell", "top1"}
    assert set(res.mean_spearman["raw"]) == {"word", "row", "cell"}
    d = res.to_dict()
    json.dumps(d)
    assert "rollout" in res.caption and "Spearman" in res.caption
    with pytest.raises(ValueError, match="max_pairs"):
        rollout_vs_ablation(tr, pairs, max_pairs=0)
