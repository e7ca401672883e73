"""The greedy loop's team (csrc/step_team.c): with more than one thread and
few rows the loop runs in one parallel region and each product over the
packed weights is cut into one part per thread. Every output column is one
thread's sum in k order whoever computes it, so the shipped translator's
tokens and log-probabilities are the same bits at 1, 2 and 3 threads, at
batch 1 (the 1-row products over the packed copies too) and batch 13, on
every ISA level the CPU runs."""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _core, decode
from pytransformer.nn import _fast
from pytransformer.translator import Translator, _source_tokens, corpus_splits, default_model_path
from tests.helpers import use_isa

LEVELS = [lv for lv in ("portable", "avx2", "avx512") if lv in _core.isa_levels_supported()]


@pytest.fixture(scope="module")
def shipped():
    tr = Translator.load(default_model_path())
    rows = []
    for pair in corpus_splits(tr).test[:14]:
        rows.append(tr.src_vocab.encode(_source_tokens(pair.source, tr.src_vocab),
                                        add_eos=True))
    S = max(len(r) for r in rows)
    src = np.full((len(rows), S), tr.model.config.pad_idx, np.int64)
    for i, r in enumerate(rows):
        src[i, :len(r)] = r
    return tr.model, src


def _run(model, src, threads):
    before = pt.get_num_threads()
    pt.set_num_threads(threads)
    try:
        return decode.greedy(model, src, return_scores=True)
    finally:
        pt.set_num_threads(before)


@pytest.mark.parametrize("level", LEVELS)
def test_team_gives_the_bits_of_one_thread(shipped, level, monkeypatch):
    model, src = shipped
    ran = []
    real = _fast.greedy
    monkeypatch.setattr(_fast, "greedy", lambda *a: ran.append(1) or real(*a))
    with use_isa(level):
        for batch in (src[:1], src[1:2], src[1:]):
            one = _run(model, batch, 1)
            for threads in (2, 3):
                got = _run(model, batch, threads)
                for g, w in zip(got, one):
                    np.testing.assert_array_equal(g.ids, w.ids)
                    assert g.token_scores.tobytes() == w.token_scores.tobytes()
    assert len(ran) == 9                       # every call ran the C loop
