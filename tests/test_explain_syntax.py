"""Tests of pytransformer.explain.syntax.

  * encoder_argmax: <eos> and padding columns excluded (or <eos> kept on
    request), rows beyond the sentence -1, bad input;
  * positional baselines by hand on tiny sentences (a head with two
    dependents of the same label included);
  * planted weights: a head whose rows attend exactly to the gold head word
    (while <eos> weighs more) scores 1.0 on every relation and is reported
    best; a planted head->dep head; include_eos turns the planted head wrong;
  * the vectorised accuracies against a plain loop on random weights;
  * the shipped model on 40 generated pairs: structure, and the determiner
    head far above the positional baselines (measured over the 1,000 test
    pairs: 0.98 vs 0.64).
"""
import json
import types

import numpy as np
import pytest

from pytransformer.data import Pair, generate_pairs
from pytransformer.explain.syntax import (DIRECTIONS, SyntaxAccumulator, encoder_argmax,
                                          positional_baselines, syntax_scores)


def test_encoder_argmax_excludes_eos_and_padding():
    # 3 words, <eos> at col 3, pad col 4
    w = np.zeros((1, 1, 5, 5))
    w[0, 0, :, 3] = 0.5
    w[0, 0, 0, 2] = 0.3
    w[0, 0, 1, 0] = 0.3
    w[0, 0, 2, 2] = 0.3
    w[0, 0, :, 4] = 0.9                          # padding would win if it were not excluded
    assert encoder_argmax(w, [3]).tolist() == [[[2, 0, 2, -1, -1]]]
    assert encoder_argmax(w, [3], include_eos=True).tolist() == [[[3, 3, 3, -1, -1]]]
    with pytest.raises(ValueError, match=r"n_src: expected values in 1\.\.5"):
        encoder_argmax(w, [6])
    with pytest.raises(ValueError, match=r"n_src: expected values in 1\.\.4 .*with <eos>"):
        encoder_argmax(w, [5], include_eos=True)
    with pytest.raises(ValueError, match=r"weights: expected \(B, H, S, S\)"):
        encoder_argmax(w[:, :, :4], [3])
    with pytest.raises(ValueError, match="n_src: expected 1 ints"):
        encoder_argmax(w, [3, 3])


def test_baselines_by_hand():
    # "a b c d": b is the head of a (det) and c (det), and of d (adj)
    p = Pair(("a", "b", "c", "d"), ("x",), deps=((0, 1, "det"), (2, 1, "det"), (3, 1, "adj")))
    b = positional_baselines([p])
    # det, dep->head: offsets h - d = +1, -1 -> prev 1/2, next 1/2, best offset -1 (tie: lowest)
    assert b["det"]["dep->head"] == {"prev": 0.5, "next": 0.5, "offset": -1,
                                     "offset_accuracy": 0.5, "count": 2}
    # det, head->dep: the row of b; both b-1 and b+1 are det dependents of b -> 1.0 each way
    assert b["det"]["head->dep"] == {"prev": 1.0, "next": 1.0, "offset": -1,
                                     "offset_accuracy": 1.0, "count": 2}
    # adj: d is 2 after b
    assert b["adj"]["dep->head"] == {"prev": 0.0, "next": 0.0, "offset": -2,
                                     "offset_accuracy": 1.0, "count": 1}
    assert b["adj"]["head->dep"]["offset"] == 2
    q = Pair(("the", "cat", "ran"), ("x",), deps=((0, 1, "det"), (1, 2, "subj")))
    b2 = positional_baselines([p, q])
    # det over both: dep->head offsets +1, -1, +1 -> next 2/3, prev 1/3, best offset +1
    assert b2["det"]["dep->head"] == {"prev": 1 / 3, "next": 2 / 3, "offset": 1,
                                      "offset_accuracy": 2 / 3, "count": 3}
    assert b2["subj"]["dep->head"]["next"] == 1.0
    with pytest.raises(ValueError, match=r"pairs\[0\]: this pair has no deps"):
        positional_baselines([Pair(("a",), ("b",))])


def _pairs(n=30, seed=11):
    return generate_pairs(n, seed=seed)


def _random_layers(rng, pairs, L=2, H=3):
    S = max(len(p.src) for p in pairs) + 1
    w = rng.dirichlet(np.ones(S), (L, len(pairs), H, S))
    return [w[l] for l in range(L)], S


def test_planted_dependent_to_head_is_found_and_perfect():
    rng = np.random.default_rng(0)
    pairs = _pairs()
    layers, S = _random_layers(rng, pairs)
    for w in layers:                                           # other heads: attend to self
        w += 2.0 * np.eye(S)                                   # (always wrong)
    planted = layers[1][:, 2]                                  # layer 1, head 2: (B, S, S)
    planted[:] = 0.01
    for b, p in enumerate(pairs):
        planted[b, :, len(p.src)] = 0.6                        # <eos> weighs most
        for d, h, _ in p.deps:
            planted[b, d, h] = 0.3
    acc = SyntaxAccumulator()
    acc.add_weights(layers, pairs)
    r = acc.result()
    assert r.accuracy.shape == (len(r.labels), 2, 2, 3)
    np.testing.assert_array_equal(r.accuracy[:, 0, 1, 2], 1.0)
    for row in r.table:
        assert (row["layer"], row["head"], row["direction"], row["accuracy"]) == \
            (1, 2, "dep->head", 1.0), row
    assert sorted(r.labels) == sorted({l for p in pairs for _, _, l in p.deps})
    assert r.counts.tolist() == [sum(l == lab for p in pairs for _, _, l in p.deps)
                                 for lab in r.labels]
    assert list(r.counts) == sorted(r.counts, reverse=True)
    assert r.eos_argmax[1, 2] == 1.0                           # all its word rows peak at <eos>
    # with <eos> allowed in the argmax the planted head is always wrong
    acc = SyntaxAccumulator(include_eos=True)
    acc.add_weights(layers, pairs)
    np.testing.assert_array_equal(acc.result().accuracy[:, 0, 1, 2], 0.0)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["table"][0]["relation"] == r.labels[0] and d["caption"]
    assert d["baselines"]["det"]["dep->head"]["count"] == d["counts"][r.labels.index("det")]


def test_planted_head_to_dependent():
    p = Pair(("a", "b", "c", "d"), ("x",), deps=((0, 1, "det"), (2, 1, "det"), (3, 1, "adj")))
    w = np.full((1, 2, 5, 5), 0.01)
    w[0, 0, 1, 0] = 0.9                 # head 0: the row of b attends to a (a det of b)
    w[0, 1, 1, 3] = 0.9                 # head 1: the row of b attends to d (its adj)
    acc = SyntaxAccumulator()
    acc.add_weights([w], [p])
    r = acc.result()
    det, adj = r.labels.index("det"), r.labels.index("adj")
    # head->dep: both det instances count as right when b's argmax is either det dependent
    assert r.accuracy[det, 1, 0].tolist() == [1.0, 0.0]
    assert r.accuracy[adj, 1, 0].tolist() == [0.0, 1.0]
    assert r.table[adj]["head"] == 1 and r.table[adj]["direction"] == "head->dep"
    assert r.table[adj]["baseline_offset"] == 2 and r.table[adj]["best_baseline"] == 1.0


def _loop_accuracy(layers, pairs):
    """Plain-loop oracle: {(label, direction, layer, head): accuracy}."""
    hits, counts = {}, {}
    for l, w in enumerate(layers):
        for b, p in enumerate(pairs):
            n = len(p.src)
            for h_ in range(w.shape[1]):
                row = lambda i: int(np.argmax(w[b, h_, i, :n]))          # noqa: E731
                for d, h, lab in p.deps:
                    deps = {d2 for d2, hh, ll in p.deps if hh == h and ll == lab}
                    for o, ok in enumerate([row(d) == h, row(h) in deps]):
                        key = (lab, DIRECTIONS[o], l, h_)
                        hits[key] = hits.get(key, 0) + ok
                        if l == 0 and h_ == 0 and o == 0:
                            counts[lab] = counts.get(lab, 0) + 1
    return {k: v / counts[k[0]] for k, v in hits.items()}


def test_vectorised_accuracy_matches_loop():
    rng = np.random.default_rng(7)
    pairs = _pairs(25, seed=3)
    layers, _ = _random_layers(rng, pairs, L=2, H=2)
    acc = SyntaxAccumulator()
    acc.add_weights([w[:12] for w in layers], pairs[:12])        # two batches
    acc.add_weights([w[12:] for w in layers], pairs[12:])
    r = acc.result()
    want = _loop_accuracy(layers, pairs)
    for (lab, direction, l, h), v in want.items():
        got = r.accuracy[r.labels.index(lab), DIRECTIONS.index(direction), l, h]
        assert got == pytest.approx(v), (lab, direction, l, h)
    with pytest.raises(ValueError, match=r"layers\[0\]: expected \(12, H, S, S\)"):
        acc.add_weights([layers[0][:11]], pairs[:12])
    with pytest.raises(ValueError, match="earlier batches had 2 x 2"):
        acc.add_weights([layers[0][:12]], pairs[:12])


def test_shipped_model_determiner_head(tmp_path):
    from pytransformer.translator import Translator, default_model_path
    tr = Translator.load(default_model_path())
    pairs = generate_pairs(40, seed=2026)
    r = syntax_scores(tr, pairs, batch_size=40)
    assert r.accuracy.shape == (len(r.labels), 2, 3, 4) and r.n_pairs == 40
    assert ((r.accuracy >= 0) & (r.accuracy <= 1)).all()
    assert int(r.counts.sum()) == sum(len(p.deps) for p in pairs)
    rows = {row["relation"]: row for row in r.table}
    # measured on the 1,000 first test pairs: det -> its noun, layer 2 head 3, 0.97
    # (dep->head) against a best positional baseline of 0.67 (the next word)
    det = rows["det"]
    assert det["accuracy"] > 0.9 and det["accuracy"] > det["best_baseline"] + 0.2
    assert r.accuracy[r.labels.index("det"), 0, 2, 3] > 0.9
    # the first layer's heads put their largest weight on <eos> for nearly every word
    assert (r.eos_argmax[0] > 0.9).all()
    t = types.SimpleNamespace(num_layers=lambda kind: 0)
    with pytest.raises(ValueError, match="trace: no encoder attention"):
        SyntaxAccumulator().add([0], pairs[:1], t)
