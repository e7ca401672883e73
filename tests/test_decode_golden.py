"""The shipped translator decodes its 2,000 test sentences as recorded in
tests/fixtures/decode_golden.npz (see make_decode_golden.py there): greedy
on all 2,000, beam 4 on every fourth (500), token for token, beam scores to
1e-4 relative; Translator.translate (length-sorted batches) gives the
recorded greedy translations in input order."""
import os

import numpy as np
import pytest

from pytransformer import decode
from pytransformer.data import BOS, EOS, PAD

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "decode_golden.npz")
BATCH, BEAM, ALPHA = 64, 4, 0.6


def _split(ids, offsets):
    return [ids[a:b].astype(np.int64) for a, b in zip(offsets[:-1], offsets[1:])]


@pytest.fixture(scope="module")
def golden():
    z = np.load(FIXTURE, allow_pickle=False)
    src = _split(z["src_ids"], z["src_offsets"])
    greedy = _split(z["greedy_ids"], z["greedy_offsets"])
    flat = _split(z["beam_ids"], z["beam_offsets"])
    ends = np.cumsum(z["beam_counts"])
    beams = [list(zip(flat[e - n:e], z["beam_scores"][e - n:e]))
             for e, n in zip(ends, z["beam_counts"])]
    assert len(src) == len(greedy) == len(beams) == 2000
    return src, greedy, beams


def _padded(rows):
    out = np.full((len(rows), max(len(r) for r in rows)), PAD, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def test_greedy_reproduces_the_recorded_outputs(shipped, golden):
    src, want, _ = golden
    got = []
    for i in range(0, len(src), BATCH):
        got += decode.greedy(shipped.model, _padded(src[i:i + BATCH]), bos=BOS, eos=EOS)
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if not np.array_equal(g, w)]
    assert not bad, f"{len(bad)} of 2000 differ, first: sentence {bad[0]}"


def test_beam_reproduces_the_recorded_hypotheses_and_scores(shipped, golden):
    src, _, want = golden
    pick = list(range(0, len(src), 4))
    got = []
    for i in range(0, len(pick), BATCH):
        rows = [src[j] for j in pick[i:i + BATCH]]
        got += decode.beam_search(shipped.model, _padded(rows), beam=BEAM, bos=BOS, eos=EOS,
                                  length_penalty=ALPHA)
    worst = 0.0
    for j, hyps in zip(pick, got):
        assert len(hyps) == len(want[j]), f"sentence {j}"
        for h, ((ids, score), (ids_w, score_w)) in enumerate(zip(hyps, want[j])):
            np.testing.assert_array_equal(ids, ids_w, err_msg=f"sentence {j}, hypothesis {h}")
            worst = max(worst, abs(score - score_w) / abs(score_w))
    assert worst <= 1e-4, f"beam scores: max relative difference {worst:.3g}"



def test_translate_returns_the_recorded_greedy_strings(shipped, golden):
    """Translator.translate sorts the first 500 by length and decodes them
    in batches of 64 (its default): the recorded translations, in input
    order."""
    src, want, _ = golden
    rows = src[:500]
    sentences = [" ".join(shipped.src_vocab.decode(r[:-1])) for r in rows]
    ids, _ = shipped.encode_sources(sentences)
    np.testing.assert_array_equal(ids, _padded(rows))           # the same sources
    got = shipped.translate(sentences)
    assert got == [" ".join(shipped.tgt_vocab.decode(w)) for w in want[:500]]
