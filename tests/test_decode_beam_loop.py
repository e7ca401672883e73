"""Beam search's loop in C (nn._fast.beam over csrc/decode_beam.c) against
the per-step path it replaces (decode_step per position, the bookkeeping
in Python), which runs when the C loop steps aside.

Both run the same kernels on the same rows and make the same choices (the
same log-softmax kernel, candidates summed in double, ties by hypothesis
then token), so the hypotheses are equal and their scores equal up to
the rounding of a row's place in the batch's products (the C loop keeps a
hypothesis in its cache row where the step path gathers the rows into
order): 1e-6 relative here, bitwise on the shipped model.
"""

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import decode, nn
from pytransformer.autograd import no_grad
from pytransformer.nn import _fast
from tests.test_decode import _eos_prone, _varied_batch
from tests.test_decode_loop import CONFIGS, _model, traced_peaks


def _step_path(monkeypatch, fn):
    """fn() with the C loop stepping aside (the per-step path)."""
    with monkeypatch.context() as m:
        m.setattr(_fast, "beam", lambda *a: None)
        return fn()


def _counted(monkeypatch):
    ran = []
    real = _fast.beam

    def counted(*a):
        out = real(*a)
        ran.append(out is not None)
        return out
    monkeypatch.setattr(_fast, "beam", counted)
    return ran


def _assert_same(got, want, scored=True):
    assert len(got) == len(want)
    for s, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), f"sentence {s}: {len(g)} hypotheses, want {len(w)}"
        for h, (a, b) in enumerate(zip(g, w)):
            np.testing.assert_array_equal(a[0], b[0], err_msg=f"sentence {s}, hypothesis {h}")
            assert a[0].dtype == np.int64
            assert a[1] == pytest.approx(b[1], rel=1e-6, abs=1e-9), (s, h)
            if scored:
                assert a.token_scores.shape == b.token_scores.shape, (s, h)
                np.testing.assert_allclose(a.token_scores, b.token_scores, rtol=1e-6,
                                           atol=1e-9)


@pytest.mark.parametrize("kind", decode.LENGTH_PENALTY_KINDS)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("seed", range(len(CONFIGS)))
def test_c_loop_equals_step_path(monkeypatch, seed, k, kind):
    """Padded batches of 7 over the configurations of test_decode_loop
    (post-/pre-norm, ReLU/GELU, float32/float64, tied embeddings), every
    beam width 1..5, both penalty kinds; max_len 9, which some hypotheses
    reach without EOS."""
    model = _model(seed, *CONFIGS[seed])
    src, _ = _varied_batch(np.random.default_rng(seed), B=7)
    kw = dict(beam=k, max_len=9, length_penalty=0.8, length_penalty_kind=kind)
    want = _step_path(monkeypatch, lambda: decode.beam_search(model, src, return_scores=True,
                                                              **kw))
    ran = _counted(monkeypatch)
    got = decode.beam_search(model, src, return_scores=True, **kw)
    plain = decode.beam_search(model, src, **kw)
    assert ran == [True, True]
    _assert_same(got, want)
    _assert_same(plain, [[(h.ids, h.score) for h in hyps] for hyps in want], scored=False)


def test_both_endings_and_padding(monkeypatch):
    """A target vocabulary of 5 (3 tokens besides pad and BOS, EOS one of
    them), beam 5: every step has fewer than k finite non-EOS candidates
    (the block is padded with -inf hypotheses); the sentences have
    hypotheses that end with EOS and hypotheses cut at max_len. The C loop
    agrees with the step path on all of them."""
    pt.manual_seed(5)
    cfg = nn.Seq2SeqConfig(17, 5, d_model=16, nhead=4, num_encoder_layers=2,
                           num_decoder_layers=2, dim_feedforward=24, dropout=0.0, max_len=12)
    model = nn.Seq2SeqTransformer(cfg).eval()
    src, _ = _varied_batch(np.random.default_rng(5), B=9)
    kw = dict(beam=5, max_len=7, length_penalty=1.0, return_scores=True)
    want = _step_path(monkeypatch, lambda: decode.beam_search(model, src, **kw))
    ran = _counted(monkeypatch)
    got = decode.beam_search(model, src, **kw)
    assert ran == [True]
    _assert_same(got, want)
    ends = {len(h.token_scores) == len(h.ids) + 1 for hyps in got for h in hyps}
    assert ends == {True, False}                     # EOS-ended and cut at max_len
    assert any(len({len(h.ids) for h in hyps}) >= 2 for hyps in got)


@pytest.mark.parametrize("k", [1, 3])
def test_batch_of_one_and_max_len_one(monkeypatch, k):
    """Single sentences, and max_len 1 (the first step is the last)."""
    model = _model(2, *CONFIGS[2])
    src, rows = _varied_batch(np.random.default_rng(2), B=3)
    for max_len in (1, 2, 11):
        for row in rows:
            kw = dict(beam=k, max_len=max_len, return_scores=True)
            want = _step_path(monkeypatch, lambda: decode.beam_search(model, row[None], **kw))
            ran = _counted(monkeypatch)
            got = decode.beam_search(model, row[None], **kw)
            assert ran == [True]
            _assert_same(got, want)


def test_sentences_leave_the_batch_at_various_steps(monkeypatch):
    """Sentences that finish at different steps in one batch: each gets
    what decoding it alone gives (the C loop moves the blocks of the
    sentences after a finished one down, caches and memory mask with
    them)."""
    model = _eos_prone(7, False, 0.5)
    src, rows = _varied_batch(np.random.default_rng(7), B=8)
    ran = _counted(monkeypatch)
    got = decode.beam_search(model, src, beam=3, max_len=10, return_scores=True)
    for s, row in enumerate(rows):
        alone = decode.beam_search(model, row[None], beam=3, max_len=10, return_scores=True)
        _assert_same([got[s]], alone)
    assert all(ran) and len(ran) == 1 + len(rows)
    assert len({max(len(h.ids) for h in hyps) for hyps in got}) >= 2


def test_a_hook_or_no_cache_sends_beam_through_the_step_loop(monkeypatch):
    """A forward hook deep in the decoder, or use_cache=False: the C loop
    steps aside (the hook sees the steps) with the same hypotheses; once
    the hook is removed the C loop runs again."""
    model = _model(3, False, "relu", np.float32, 0.0, False)
    src, _ = _varied_batch(np.random.default_rng(3), B=4)
    want = decode.beam_search(model, src, beam=3, max_len=9)
    ran = _counted(monkeypatch)
    seen = []
    h = model.transformer.decoder.layers[1].linear2.register_forward_hook(
        lambda m, a, o: seen.append(o.shape[0]))
    hooked = decode.beam_search(model, src, beam=3, max_len=9)
    h.remove()
    assert ran == [False] and seen
    _assert_same(hooked, want, scored=False)
    uncached = decode.beam_search(model, src, beam=3, max_len=9, use_cache=False)
    assert ran == [False]
    _assert_same(uncached, want, scored=False)
    decode.beam_search(model, src, beam=3, max_len=9)
    assert ran == [False, True]


def test_the_loop_allocates_nothing_per_step(monkeypatch):
    """tracemalloc's peak during LayerStack.beam (the binding sizes the
    workspaces up front, the C loop allocates nothing): the same when
    every hypothesis runs all 11 steps (EOS disabled) as when every
    sentence is done after 2 (EOS certain)."""
    from tests.test_decode import EOS
    model = _model(1, False, "relu", np.float32, -1e9, False)
    src, _ = _varied_batch(np.random.default_rng(1), B=6)
    peaks = traced_peaks(monkeypatch, "beam")
    decode.beam_search(model, src, beam=4, max_len=11)          # sizes the workspace
    long = decode.beam_search(model, src, beam=4, max_len=11)
    model.generator.bias.data[EOS] += 2e9
    short = decode.beam_search(model, src, beam=4, max_len=11)
    assert {len(h[0]) for hyps in long for h in hyps} == {11}
    assert {len(h[0]) for hyps in short for h in hyps} == {0, 1}
    assert len(peaks) == 3 and peaks[1] <= peaks[2] + 64, peaks


def test_the_binding_names_a_bad_argument():
    """LayerStack.beam refuses a bad width, penalty kind or alpha, and
    self caches without room for B*k rows, cross caches not of the B
    sentences, with a one-line message naming it."""
    model = _model(0, *CONFIGS[0])
    with no_grad():
        st = _fast.layer_stack(model.transformer.decoder,
                               lambda: list(model.transformer.decoder.layers),
                               model.transformer.decoder.norm, decoder=True)
        assert st is not None
        B, k, T, S, d = 2, 3, 5, 4, st.E // st.H
        dt = st.dtype
        W = model.tgt_embed.weight.data
        G = model.generator.weight.data
        pos = np.ascontiguousarray(model.positions, dtype=dt)

        def caches(rows, sentences):
            out = []
            for _ in range(st.nlayers):
                out += [np.zeros((rows, st.H, T, d), dt), np.zeros((rows, st.H, T, d), dt),
                        np.zeros((sentences, st.H, S, d), dt),
                        np.zeros((sentences, st.H, S, d), dt)]
            return out

        def call(k=k, kind="gnmt", alpha=0.6, rows=B * k, sentences=B):
            outs = (np.zeros(B, np.int64), np.zeros((B, k, T), np.int64),
                    np.zeros((B, k), np.int64), np.zeros((B, k), np.int64),
                    np.zeros((B, k)))
            st.beam(W, 4.0, pos, G, None, caches(rows, sentences), None, B, 0, 1, 2, k, kind,
                    alpha, *outs)
            return outs

        count = call()[0]
        assert list(count) == [k, k]
        for kw, match in ((dict(k=0), "k: expected a beam width"),
                          (dict(kind="linear"), "penalty_kind"),
                          (dict(alpha=-1.0), "alpha"),
                          (dict(alpha=float("nan")), "alpha"),
                          (dict(rows=B), r"caches\[0\]"),
                          (dict(sentences=B * k), r"caches\[2\]")):
            with pytest.raises(ValueError, match=match) as e:
                call(**kw)
            assert "\n" not in str(e.value)
