"""Greedy decoding's loop in C (nn._fast.greedy over csrc/decode_greedy.c)
against the per-step path it replaces (decode_step per position, in
Python), which runs when the C loop steps aside.

Both run the decoder stack's step with the same kernels in the same order
on the same rows (the C loop drops finished rows from its caches as the
step path drops them); the generator's product differs: the loop's float32
one reads the packed copy of its weight (from PT_DECODER_PACKED_ROWS rows
on), summed in k order, where the step path's Linear sums in lanes. So the
tokens are equal and the token log-probabilities agree to float32
rounding (1e-6; float64 models: summed in another order in double, 1e-12).
"""
import tracemalloc

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import decode, nn
from pytransformer.nn import _fast
from tests.test_decode import EOS, _varied_batch

# norm_first, activation, dtype, EOS logit shift (picked so that the rows of
# a batch end at various steps, some at max_len), tied embeddings
CONFIGS = [(False, "relu", np.float32, 1.0, False),
           (True, "gelu", np.float32, 1.0, False),
           (False, "gelu", np.float64, 0.5, True),
           (True, "relu", np.float64, 0.5, False),
           (False, "relu", np.float32, 2.0, True)]


def _model(seed, norm_first, activation, dtype, eos_bias, tie):
    pt.manual_seed(seed)
    cfg = nn.Seq2SeqConfig(17, 19, d_model=16, nhead=4, num_encoder_layers=2,
                           num_decoder_layers=3, dim_feedforward=24, dropout=0.1, max_len=12,
                           norm_first=norm_first, activation=activation, tie_embeddings=tie)
    model = nn.Seq2SeqTransformer(cfg).to(dtype).eval()
    model.generator.bias.data[EOS] += eos_bias
    return model


def _step_path(monkeypatch, fn):
    """fn() with the C loop stepping aside (the per-step path)."""
    with monkeypatch.context() as m:
        m.setattr(_fast, "greedy", lambda *a: None)
        return fn()


def _counted(monkeypatch):
    ran = []
    real = _fast.greedy

    def counted(*a):
        out = real(*a)
        ran.append(out is not None)
        return out
    monkeypatch.setattr(_fast, "greedy", counted)
    return ran


@pytest.mark.parametrize("seed", range(len(CONFIGS) * 2))
def test_c_loop_equals_step_path(monkeypatch, seed):
    """Padded batches of 7 (the first five seeds) and single sentences."""
    model = _model(seed, *CONFIGS[seed % len(CONFIGS)])
    B = 7 if seed < len(CONFIGS) else 1
    src, _ = _varied_batch(np.random.default_rng(seed), B=B)
    want = _step_path(monkeypatch, lambda: decode.greedy(model, src, max_len=11,
                                                         return_scores=True))
    ran = _counted(monkeypatch)
    got = decode.greedy(model, src, max_len=11, return_scores=True)
    plain = decode.greedy(model, src, max_len=11)
    assert ran == [True, True]
    if B > 1:
        assert len({len(w.ids) for w in want}) >= 2          # rows left the batch
    for g, w, p in zip(got, want, plain):
        np.testing.assert_array_equal(g.ids, w.ids)
        np.testing.assert_array_equal(p, w.ids)
        assert g.token_scores.shape == w.token_scores.shape
        tol = 1e-6 if CONFIGS[seed % len(CONFIGS)][2] == np.float32 else 1e-12
        np.testing.assert_allclose(g.token_scores, w.token_scores, rtol=tol, atol=tol)
        assert g.score == pytest.approx(w.score, rel=tol, abs=tol)


def test_rows_leave_the_batch_at_every_length(monkeypatch):
    """Sentences ending at steps 0, 1, ..., and at max_len in one batch:
    each gets what decoding it alone gives (the C loop's compaction keeps
    every row's caches and memory mask with it)."""
    from tests.test_decode import _eos_prone
    model = _eos_prone(5, False, 0.0)
    src, rows = _varied_batch(np.random.default_rng(9), B=6)
    ran = _counted(monkeypatch)
    got = decode.greedy(model, src, max_len=11)
    lengths = sorted(len(g) for g in got)
    assert lengths[0] <= 1 and lengths[-1] == 11 and len(set(lengths)) >= 3
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(got[i], decode.greedy(model, row[None], max_len=11)[0])
    assert all(ran)
    want = _step_path(monkeypatch, lambda: decode.greedy(model, src, max_len=11))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_a_hook_sends_greedy_through_the_modules(monkeypatch):
    """A forward hook deep in the decoder: greedy steps through the modules
    (the hook sees every step) with the same tokens; once it is removed
    the C loop runs again."""
    model = _model(3, False, "relu", np.float32, 0.0, False)
    src, _ = _varied_batch(np.random.default_rng(3), B=4)
    want = decode.greedy(model, src, max_len=11)
    ran = _counted(monkeypatch)
    seen = []
    h = model.transformer.decoder.layers[1].linear2.register_forward_hook(
        lambda m, a, o: seen.append(o.shape[0]))
    got = decode.greedy(model, src, max_len=11)
    h.remove()
    steps = min(11, max(len(g) for g in got) + 1)       # the last EOS, or max_len
    assert ran == [False] and len(seen) == steps
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    decode.greedy(model, src, max_len=11)
    assert ran == [False, True]                        # the hook removed: C again


def traced_peaks(monkeypatch, method):
    """A list that receives, for every call of the layer stacks' `method`
    (greedy or beam) from now on, tracemalloc's peak during the call above
    what was allocated before it."""
    peaks = []
    real = _fast.layer_stack

    class Measured:
        def __init__(self, st):
            self.st = st

        def __getattr__(self, name):
            return getattr(self.st, name)

    def call(self, *a, **kw):
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            getattr(self.st, method)(*a, **kw)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
        finally:
            tracemalloc.stop()
    setattr(Measured, method, call)

    def measured(*a, **k):
        st = real(*a, **k)
        return None if st is None else Measured(st)
    monkeypatch.setattr(_fast, "layer_stack", measured)
    return peaks


def test_the_loop_allocates_nothing_per_token(monkeypatch):
    """tracemalloc's peak during the C call itself, EOS disabled so that
    every row runs all max_len steps: a few hundred bytes (the row
    bookkeeping), not growing with the steps (measured: 400 bytes for 3
    steps, 416 for 11, batch 8)."""
    model = _model(1, False, "relu", np.float32, -1e9, False)
    src, _ = _varied_batch(np.random.default_rng(1), B=8)
    peaks = traced_peaks(monkeypatch, "greedy")
    decode.greedy(model, src, max_len=11)               # sizes the workspace
    short = decode.greedy(model, src, max_len=3)
    long = decode.greedy(model, src, max_len=11)
    assert {len(s) for s in short} == {3} and {len(s) for s in long} == {11}
    assert len(peaks) == 3 and peaks[2] <= peaks[1] + 64 and peaks[2] <= 1024, peaks
