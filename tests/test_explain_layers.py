"""explain.layers: linear CKA and the layer/sublayer measures on the shipped model."""
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytransformer.explain import trace
from pytransformer.explain.layers import (cka_matrix, layer_similarity, linear_cka,
                                          teacher_forced_batches)
from pytransformer.translator import Translator, default_model_path


def _orthogonal(rng, p):
    q, r = np.linalg.qr(rng.standard_normal((p, p)))
    return q * np.sign(np.diag(r))


# --- CKA properties ------------------------------------------------------------

@given(st.integers(3, 60), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31))
def test_cka_self_one_and_invariances(n, p, q, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    y = x @ rng.standard_normal((p, q)) + 0.5 * rng.standard_normal((n, q))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y)
    assert 0.0 <= base <= 1.0 + 1e-12
    c = float(rng.uniform(1e-3, 1e3))
    assert linear_cka(c * x, y) == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert linear_cka(x @ _orthogonal(rng, p), y @ _orthogonal(rng, q)) == \
        pytest.approx(base, rel=1e-9, abs=1e-12)
    assert linear_cka(x + rng.standard_normal(p), y) == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert linear_cka(y, x) == pytest.approx(base, rel=1e-9, abs=1e-12)


def test_cka_not_invariant_to_anisotropic_scaling():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 2))
    # cov(x) ~ I: CKA(x, x D) ~ tr(D)^2 / (sqrt(2) ||D||_F^2) = 101 / sqrt(2 * 10001)
    assert linear_cka(x, x * [1.0, 10.0]) == pytest.approx(101 / np.sqrt(2 * 10001), abs=0.03)


def test_cka_hand_values():
    # 1-D: CKA is the squared correlation; centred x = (-1, 0, 1), y = (2, -1, -1) / 3:
    # (x.y)^2 / (|x|^2 |y|^2) = 1 / (2 * 2/3) = 3/4
    assert linear_cka([[1.0], [2.0], [3.0]], [[1.0], [0.0], [0.0]]) == pytest.approx(0.75)
    # X^T X = 2 I (Frobenius 2 sqrt 2), Y^T Y = 2, Y^T X = (2, 0): 4 / (2 sqrt 2 * 2)
    x = [[1, 0], [0, 1], [-1, 0], [0, -1]]
    y = [[1], [0], [-1], [0]]
    assert linear_cka(x, y) == pytest.approx(1 / np.sqrt(2))


def test_cka_independent_data_near_zero():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20000, 5)), rng.standard_normal((20000, 7))
    assert linear_cka(x, y) < 0.01


def test_cka_matrix_and_errors():
    rng = np.random.default_rng(2)
    reps = [rng.standard_normal((50, 4)) for _ in range(3)]
    m = cka_matrix(reps)
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    assert m[0, 2] == pytest.approx(linear_cka(reps[0], reps[2]))
    assert np.isnan(linear_cka(np.ones((5, 2)), rng.standard_normal((5, 2))))
    with pytest.raises(ValueError, match="y: expected 5 rows"):
        linear_cka(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="x: expected a 2-D"):
        linear_cka(np.zeros(5), np.zeros((5, 2)))


# --- on the shipped model -------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    from pytransformer.data import generate_pairs
    return Translator.load(default_model_path()), generate_pairs(40, seed=3)


@pytest.fixture(scope="module")
def sim(shipped):
    tr, pairs = shipped
    return layer_similarity(tr, pairs)


def test_layer_similarity_shapes_and_tokens(shipped, sim):
    tr, pairs = shipped
    assert sim.encoder_labels == ["embeddings", "layer 0", "layer 1", "layer 2"]
    for m in (sim.encoder_cka, sim.decoder_cka):
        assert m.shape == (4, 4) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1)
        assert ((m > 0) & (m <= 1 + 1e-9)).all()
    assert sim.n_src_tokens == sum(len(p.src) + 1 for p in pairs)       # + <eos>
    assert sim.n_tgt_tokens == sum(len(p.tgt) + 1 for p in pairs)       # <bos> +
    assert len(sim.sublayers) == 3 * 2 + 3 * 3
    assert sim.sublayer_table("decoder", "cross-attention").shape == (3,)
    json.dumps(sim.to_dict())
    assert "CKA" in sim.caption and "post-norm" in sim.caption


def test_layer_similarity_matches_trace(shipped, sim):
    """The measures equal those computed from explain.trace's records over
    the real tokens (an independent capture)."""
    tr, pairs = shipped
    t = trace(tr, [p.source for p in pairs], [p.target for p in pairs])
    src_real = t.src_ids != 0
    tgt_real = t.tgt_ids != 0
    enc0 = t.layer("encoder", 0).output[src_real]
    enc1 = t.layer("encoder", 1).output[src_real]
    assert sim.encoder_cka[1, 2] == pytest.approx(linear_cka(enc0, enc1), abs=1e-5)
    emb = t.layer("decoder", 0).input[tgt_real]
    dec2 = t.layer("decoder", 2).output[tgt_real]
    assert sim.decoder_cka[0, 3] == pytest.approx(linear_cka(emb, dec2), abs=1e-5)
    f = t.ffn("encoder", 1)
    x, u = f.input[src_real], f.output[src_real]
    ratio = (np.linalg.norm(u, axis=1) / np.linalg.norm(x, axis=1)).mean()
    row = [r for r in sim.sublayers if (r["kind"], r["layer"], r["sublayer"]) ==
           ("encoder", 1, "ffn")][0]
    assert row["update_ratio"] == pytest.approx(ratio, rel=1e-5)
    assert row["cka_in_sum"] == pytest.approx(linear_cka(x, x + u), abs=1e-5)
    assert row["cka_in_out"] == pytest.approx(linear_cka(x, u), abs=1e-5)
    a = t.attention("cross", 2)
    x, u = a.query_in[tgt_real], a.out[tgt_real]
    row = [r for r in sim.sublayers if (r["kind"], r["layer"], r["sublayer"]) ==
           ("decoder", 2, "cross-attention")][0]
    assert row["update_ratio"] == pytest.approx(
        (np.linalg.norm(u, axis=1) / np.linalg.norm(x, axis=1)).mean(), rel=1e-5)


def test_padding_excluded(shipped, sim):
    """Other batch sizes pad differently; the result must not change."""
    tr, pairs = shipped
    other = layer_similarity(tr, pairs, batch_size=7)
    assert np.allclose(other.encoder_cka, sim.encoder_cka, atol=1e-5)
    assert np.allclose(other.decoder_cka, sim.decoder_cka, atol=1e-5)
    assert [r["update_ratio"] for r in other.sublayers] == pytest.approx(
        [r["update_ratio"] for r in sim.sublayers], rel=1e-5)


def test_batches_and_bad_input(shipped):
    tr, pairs = shipped
    bs = teacher_forced_batches(tr, pairs, batch_size=16)
    assert sorted(np.concatenate([b[0] for b in bs]).tolist()) == list(range(len(pairs)))
    with pytest.raises(ValueError, match="batch_size"):
        teacher_forced_batches(tr, pairs, batch_size=0)
    with pytest.raises(ValueError, match="pairs"):
        layer_similarity(tr, [])
    with pytest.raises(TypeError, match="translator"):
        layer_similarity(tr.model, pairs)
