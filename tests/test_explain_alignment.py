"""Tests of pytransformer.explain.alignment.

  * AER and precision/recall on hand-made link sets: perfect = 0, disjoint
    = 1, worked examples computed by hand (with and without possible links);
  * argmax alignments from planted cross-attention weights: produce and
    shift rows, <eos> and padding excluded, per-head renormalisation before
    averaging (a case where it changes the answer), bad input;
  * the diagonal baseline by hand;
  * Pharaoh round trip, lines input, bad lines with file and line number,
    range checks, atomic writes;
  * the accumulator on a planted fake trace (the planted head is found, AER
    0, links equal gold) and against aer() on the same links;
  * the shipped model on 40 generated pairs: shapes, ranges, and the best
    head far better than the diagonal (measured over the 1,000 test pairs:
    best 0.04 vs diagonal 0.32);
  * aer_over_checkpoints on two tiny saved checkpoints.
"""
import json
import types

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer.data import CorpusError, Pair, generate_pairs
from pytransformer.explain.alignment import (OFFSETS, AlignmentAccumulator, aer,
                                             aer_over_checkpoints, alignment_from_weights,
                                             alignment_scores, cross_attention_argmax,
                                             diagonal_alignment, precision_recall, read_pharaoh,
                                             write_pharaoh)


# ------------------------------------------------------------------ AER

def test_aer_perfect_and_disjoint():
    gold = [{(0, 0), (1, 2), (2, 1)}, {(0, 0)}]
    assert aer(gold, gold) == 0.0
    assert aer([{(0, 1), (1, 1), (2, 2)}, {(1, 0)}], gold) == 1.0
    assert precision_recall(gold, gold) == (1.0, 1.0)
    assert precision_recall([{(5, 5)}, set()], gold) == (0.0, 0.0)


def test_aer_worked_example():
    # sentence 1: A = {0-0, 1-1, 2-1}, S = {0-0, 1-1}, P = S + {2-2}
    # sentence 2: A = {0-1}, S = {0-0}, P = S + {0-1}
    A = [[(0, 0), (1, 1), (2, 1)], [(0, 1)]]
    S = [[(0, 0), (1, 1)], [(0, 0)]]
    P = [[(2, 2)], [(0, 1)]]                       # taken as P | S
    # |A|=4, |S|=3, |A&S|=2, |A&P|=3 -> AER = 1 - 5/7
    assert aer(A, S, P) == pytest.approx(2 / 7)
    # without possible links: |A&P| = |A&S| = 2 -> 1 - 4/7
    assert aer(A, S) == pytest.approx(3 / 7)
    assert precision_recall(A, S, P) == pytest.approx((3 / 4, 2 / 3))
    # duplicates and order do not matter (link sets)
    assert aer([[(2, 1), (0, 0), (1, 1), (0, 0)], [(0, 1)]], S, P) == pytest.approx(2 / 7)


_links = st.sets(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=8)


@given(st.lists(st.tuples(_links, _links, _links), min_size=1, max_size=4))
def test_aer_properties(corpus):
    A, S, P = (list(c) for c in zip(*corpus))
    if not any(A) and not any(S):
        return
    e, e_sure = aer(A, S, P), aer(A, S)
    assert 0.0 <= e <= e_sure <= 1.0                  # possible links can only help
    if any(S):
        assert aer(S, S, P) == 0.0
    prec, rec = precision_recall(A, S, P)
    assert np.isnan(prec) or 0.0 <= prec <= 1.0
    assert np.isnan(rec) or 0.0 <= rec <= 1.0


def test_aer_bad_input():
    with pytest.raises(ValueError, match="sure: 1 sentences, expected 2"):
        aer([{(0, 0)}, set()], [{(0, 0)}])
    with pytest.raises(TypeError, match="predicted: expected a list of link sets"):
        aer({(0, 0)}, [{(0, 0)}])
    with pytest.raises(ValueError, match=r"predicted\[0\]: expected non-negative int"):
        aer([[(0, -1)]], [[(0, 0)]])
    with pytest.raises(ValueError, match=r"sure\[0\]: expected an \(i, j\) pair"):
        aer([[(0, 0)]], [[(0, 0, 1)]])
    assert np.isnan(aer([set()], [set()]))


# ------------------------------------------------------------------ argmax from planted weights

def _planted(T_in, S, rows, eos_col, rng, eos_weight=0.6):
    """(T_in, S) weights: row r puts the most word weight on rows[r] (or is
    random if None) and eos_weight on the <eos> column."""
    w = rng.uniform(0.0, 0.05, (T_in, S))
    for r, c in enumerate(rows):
        if c is not None:
            w[r, c] = 0.3
    w[:, eos_col] = eos_weight
    return w / w.sum(1, keepdims=True)


def test_argmax_produce_and_shift_exclude_eos_and_padding():
    rng = np.random.default_rng(0)
    # sentence 0: 3 source words (+<eos> at col 3, pad col 4), 4 target words (T_in 5)
    # sentence 1: 4 source words (+<eos> at col 4), 2 target words (rows 3, 4 padding)
    perm0, perm1 = [2, 0, 1, 1], [3, 1]
    w = np.zeros((2, 2, 5, 5))
    w[0, 0] = _planted(5, 5, perm0 + [None], 3, rng)          # produce: row j
    w[0, 1] = _planted(5, 5, [None] + perm0, 3, rng)          # shift: row j + 1
    w[0, :, :, 4] = 0.0                                        # padding column
    w[1, 0] = _planted(5, 5, perm1 + [None] * 3, 4, rng)
    w[1, 1] = _planted(5, 5, [None] + perm1 + [None] * 2, 4, rng)
    n_src, n_tgt = np.array([3, 4]), np.array([4, 2])
    prod = cross_attention_argmax(w, n_src, n_tgt, "produce")
    shift = cross_attention_argmax(w, n_src, n_tgt, "shift")
    assert prod.shape == shift.shape == (2, 3, 4)
    assert prod[0, 0].tolist() == perm0 and shift[0, 1].tolist() == perm0
    assert prod[1, 0].tolist() == perm1 + [-1, -1] and shift[1, 1].tolist() == perm1 + [-1, -1]
    assert (prod[0] < 3).all() and (prod[1] < 4).all()        # never <eos> though it weighs most
    assert alignment_from_weights(w[0, 0], 3, 4, "produce") == [(2, 0), (0, 1), (1, 2), (1, 3)]
    assert alignment_from_weights(w[0, 1], 3, 4, "shift") == [(2, 0), (0, 1), (1, 2), (1, 3)]


def test_average_renormalises_each_head_over_real_words():
    # two source words + <eos>; head A: [.09, .01, .90] -> [.9, .1]; head B: [.2, .8, 0]
    # renormalised mean [.55, .45] -> word 0; the raw mean [.145, .405] would say word 1
    w = np.array([[[[0.09, 0.01, 0.90]], [[0.2, 0.8, 0.0]]]])          # (1, 2, 1, 3)
    got = cross_attention_argmax(w, [2], [1], "produce")
    assert got[0, :, 0].tolist() == [0, 1, 0]
    assert alignment_from_weights(w[0], 2, 1) == [(0, 0)]


def test_argmax_bad_input():
    w = np.full((1, 1, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match="offset: expected one of"):
        cross_attention_argmax(w, [2], [2], "middle")
    with pytest.raises(ValueError, match=r"n_tgt: expected values in 1\.\.2"):
        cross_attention_argmax(w, [2], [3], "shift")
    with pytest.raises(ValueError, match=r"n_src: expected values in 1\.\.3"):
        cross_attention_argmax(w, [4], [1])
    with pytest.raises(ValueError, match=r"weights: expected \(B, H, T_in, S\)"):
        cross_attention_argmax(w[0], [2], [1])
    with pytest.raises(ValueError, match="n_src: expected 1 ints"):
        cross_attention_argmax(w, [2.0], [1])


@given(st.data())
def test_argmax_matches_per_sentence_loop(data):
    B, H = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    n_src = np.array(data.draw(st.lists(st.integers(1, 5), min_size=B, max_size=B)))
    n_tgt = np.array(data.draw(st.lists(st.integers(1, 5), min_size=B, max_size=B)))
    S, T_in = int(n_src.max()) + 2, int(n_tgt.max()) + 2
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    w = rng.dirichlet(np.ones(S), (B, H, T_in))
    for offset, shift in (("produce", 0), ("shift", 1)):
        got = cross_attention_argmax(w, n_src, n_tgt, offset)
        for b in range(B):
            n = n_src[b]
            for j in range(n_tgt[b]):
                row = w[b, :, j + shift, :n]
                row = row / row.sum(-1, keepdims=True)
                want = [int(np.argmax(r)) for r in row] + [int(np.argmax(row.mean(0)))]
                assert got[b, :, j].tolist() == want
            assert (got[b, :, n_tgt[b]:] == -1).all()


def test_diagonal_by_hand():
    # 3 source, 4 target: j*3/4 + .5 = .5, 1.25, 2.0, 2.75 -> 0, 1, 2, 2
    assert diagonal_alignment(3, 4) == [(0, 0), (1, 1), (2, 2), (2, 3)]
    # 4 source, 2 target: 0.5, 2.5 -> 0, 2
    assert diagonal_alignment(4, 2) == [(0, 0), (2, 1)]
    assert diagonal_alignment(5, 5) == [(j, j) for j in range(5)]
    with pytest.raises(ValueError, match="n_src, n_tgt"):
        diagonal_alignment(0, 3)


# ------------------------------------------------------------------ Pharaoh

def test_pharaoh_round_trip(tmp_path):
    links = [[(0, 0), (2, 1), (1, 2)], [], [(3, 3), (0, 0), (3, 3)]]
    path = tmp_path / "a.align"
    write_pharaoh(path, links)
    assert path.read_text() == "0-0 1-2 2-1\n\n0-0 3-3\n"
    assert read_pharaoh(path) == [[(0, 0), (1, 2), (2, 1)], [], [(0, 0), (3, 3)]]
    assert read_pharaoh(str(path)) == read_pharaoh(["0-0 2-1 1-2", "", "3-3 0-0"])
    assert read_pharaoh(path, sizes=[(3, 3), (1, 1), (4, 4)])[2] == [(0, 0), (3, 3)]
    p = Pair(("a", "b"), ("x", "y"), ((1,), (0,)))
    write_pharaoh(path, [p.links()])
    assert path.read_text().strip() == p.pharaoh()


def test_pharaoh_bad_lines(tmp_path):
    path = tmp_path / "bad.align"
    path.write_text("0-0 1-1\n0-0 1:1\n")
    with pytest.raises(CorpusError, match=r"bad\.align:2: alignment '1:1' is not of the form"):
        read_pharaoh(path)
    with pytest.raises(CorpusError, match=r"<lines>:3: alignment 'x-1'"):
        read_pharaoh(["0-0", "", "x-1"])
    with pytest.raises(CorpusError, match=r"<lines>:1: .*source index 2 out of range"):
        read_pharaoh(["2-0"], sizes=[(2, 2)])
    with pytest.raises(ValueError, match=r"sizes: 1 \(n_src, n_tgt\) entries for 2 lines"):
        read_pharaoh(["0-0", "1-1"], sizes=[(2, 2)])
    path.write_bytes(b"0-0\n1-1 \xff\n")
    with pytest.raises(CorpusError, match=r"bad\.align:2: not valid UTF-8"):
        read_pharaoh(path)
    with pytest.raises(TypeError, match="source: expected a path or an iterable"):
        read_pharaoh(3)


def test_write_pharaoh_bad_input_leaves_file(tmp_path):
    path = tmp_path / "keep.align"
    write_pharaoh(path, [[(0, 0)]])
    with pytest.raises(ValueError, match=r"alignments\[1\]: expected non-negative int"):
        write_pharaoh(path, [[(1, 1)], [(0, -2)]])
    with pytest.raises(ValueError, match=r"alignments\[0\]: expected an \(i, j\) pair"):
        write_pharaoh(path, [[(1, 1, 1)]])
    assert path.read_text() == "0-0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.align"]


# ------------------------------------------------------------------ accumulator on a planted trace

def _fake_trace(layers):
    rec = [types.SimpleNamespace(weights=w) for w in layers]
    return types.SimpleNamespace(num_layers=lambda kind: len(rec),
                                 attention=lambda kind, l: rec[l])


def test_accumulator_finds_planted_head():
    rng = np.random.default_rng(3)
    pairs = [Pair(("a", "b", "c"), ("x", "y", "z", "w"), ((1,), (0, 3), (2,))),
             Pair(("a", "b"), ("x", "y"), ((0,), (1,)))]
    gold_by_j = [[1, 0, 2, 1], [0, 1]]                     # target j -> its gold source word
    B, H, T_in, S = 2, 3, 5, 4
    layers = [rng.dirichlet(np.ones(S), (B, H, T_in)) for _ in range(2)]
    for b, g in enumerate(gold_by_j):                      # layer 1, head 2, shift rows
        for j, i in enumerate(g):
            layers[1][b, 2, j + 1] = 0.02
            layers[1][b, 2, j + 1, i] = 0.5
            layers[1][b, 2, j + 1, len(pairs[b].src)] = 0.46   # <eos> second
    acc = AlignmentAccumulator()
    acc.add([1, 0], pairs[::-1], _fake_trace([l[::-1] for l in layers]))   # any order
    r = acc.result()
    assert r.best == {"layer": 1, "head": 2, "offset": "shift", "aer": 0.0, "precision": 1.0,
                      "recall": 1.0}
    assert r.aer_head.shape == (2, 2, 3) and r.aer_avg.shape == (2, 2)
    assert r.n_target_words == 6 and r.n_gold_links == 6 and r.n_pairs == 2
    # one link per target word, as the gold has here: the best links are the gold links
    assert r.links == [[(1, 0), (0, 1), (2, 2), (1, 3)], [(0, 0), (1, 1)]]
    # every configuration's AER equals aer() on its own links
    for o in OFFSETS:
        for layer in range(2):
            for head in [0, 1, 2, "avg"]:
                want = aer(r.links_for(layer, head, o), [p.links() for p in pairs])
                got = (r.aer_avg[OFFSETS.index(o), layer] if head == "avg"
                       else r.aer_head[OFFSETS.index(o), layer, head])
                assert got == pytest.approx(want)
    diag = [diagonal_alignment(len(p.src), len(p.tgt)) for p in pairs]
    assert r.diagonal["aer"] == pytest.approx(aer(diag, [p.links() for p in pairs]))
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["best"]["head"] == 2 and d["caption"] and len(d["aer_head"][1][1]) == 3
    assert d["links"][0] == [[1, 0], [0, 1], [2, 2], [1, 3]]


# ------------------------------------------------------------------ the shipped model

@pytest.fixture(scope="module")
def shipped():
    from pytransformer.translator import Translator, default_model_path
    return Translator.load(default_model_path())


def test_shipped_model_aligns_far_better_than_diagonal(shipped, tmp_path):
    pairs = generate_pairs(40, seed=2026)
    r = alignment_scores(shipped, pairs, batch_size=40)
    assert r.aer_head.shape == (2, 3, 4) and r.aer_avg.shape == (2, 3)
    assert ((r.aer_head >= 0) & (r.aer_head <= 1)).all()
    assert r.n_pairs == 40 and len(r.links) == 40
    assert all(len(l) == len(p.tgt) and max(i for i, _ in l) < len(p.src)
               for l, p in zip(r.links, pairs))
    # measured on the 1,000 first test pairs: best 0.038 (layer 2, head 3, produce),
    # diagonal 0.32; the last layer's averaged heads 0.058
    assert r.best["aer"] < 0.15 < r.diagonal["aer"] - 0.1
    assert r.aer_avg[OFFSETS.index("produce"), 2] < 0.2
    assert r.best["aer"] == pytest.approx(aer(r.links, [p.links() for p in pairs]))
    write_pharaoh(tmp_path / "pred.align", r.links)
    assert read_pharaoh(tmp_path / "pred.align") == [sorted(l) for l in r.links]


# ------------------------------------------------------------------ over checkpoints

def _tiny_translator(seed, layers=2):
    import pytransformer as pt
    from pytransformer.data import Vocab
    from pytransformer.nn import Seq2SeqConfig, Seq2SeqTransformer
    from pytransformer.translator import Translator
    pairs = generate_pairs(30, seed=5)
    sv, tv = Vocab.build(p.src for p in pairs), Vocab.build(p.tgt for p in pairs)
    pt.manual_seed(seed)
    cfg = Seq2SeqConfig(len(sv), len(tv), d_model=16, nhead=2, num_encoder_layers=1,
                        num_decoder_layers=layers, dim_feedforward=32, dropout=0.0, max_len=32)
    return Translator(Seq2SeqTransformer(cfg).eval(), sv, tv), pairs


def test_aer_over_checkpoints(tmp_path):
    paths = []
    for k, seed in enumerate([1, 2]):
        tr, pairs = _tiny_translator(seed)
        paths.append(tmp_path / f"ck{k}.safetensors")
        tr.save(paths[-1], step=10 * k)
    pairs = pairs[:12]
    c = aer_over_checkpoints(paths, pairs, batch_size=5)
    assert c.steps == [0, 10] and c.best_aer.shape == (2,) and c.aer_avg.shape == (2, 2, 2)
    from pytransformer.translator import Translator
    for k, p in enumerate(paths):
        direct = alignment_scores(Translator.load(p), pairs)
        assert c.best_aer[k] == pytest.approx(direct.best["aer"])
        np.testing.assert_allclose(c.aer_avg[k], direct.aer_avg)
    assert c.aer_at_final_best[1] == pytest.approx(c.best_aer[1])
    assert c.aer_at_final_best[0] >= c.best_aer[0]
    assert c.diagonal_aer == pytest.approx(direct.diagonal["aer"])
    assert json.loads(json.dumps(c.to_dict(), allow_nan=False))["steps"] == [0, 10]
    tr3, _ = _tiny_translator(3, layers=1)
    tr3.save(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="paths: .*other.safetensors has 1 layers x 2 heads"):
        aer_over_checkpoints([paths[0], tmp_path / "other.safetensors"], pairs)
    with pytest.raises(ValueError, match="pairs: expected at least one"):
        aer_over_checkpoints(paths, [])
