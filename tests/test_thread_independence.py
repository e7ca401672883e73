"""What does and does not depend on the thread count (the README states it).

* Every kernel of the C core, and GEMM on the built-in C fallback
  (``PT_BLAS=fallback`` or no SciPy), gives the same bits for any thread
  count: each output element is one fixed-order sum, whichever thread
  computes it. A whole training step on the fallback is therefore
  thread-count independent too.
* SciPy's OpenBLAS splits a GEMM between its threads in ways that change
  the order of some sums (``linear_backward``'s dx for grad_out (288, 1173)
  and weight (1173, 32) differs by ~4e-5 between 1 and 2 threads), so with
  it GEMM-based results can differ in the last bits between thread counts.
  At one thread count they repeat exactly.

The per-kernel thread tests live beside each kernel; this file checks the
statement end to end.
"""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _core, nn, ops, optim
from pytransformer.nn import functional as F

V, L = 23, 12


def _at_threads(n, fn):
    old = pt.get_num_threads()
    pt.set_num_threads(n)
    try:
        return fn()
    finally:
        pt.set_num_threads(old)


def _with_gemm(blas, fn):
    had = _core.blas_available()
    pt.use_blas(blas)
    try:
        return fn()
    finally:
        pt.use_blas(had)


def _linear_backward_of_the_report():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((288, 1173)).astype(np.float32)
    x = rng.standard_normal((288, 32)).astype(np.float32)
    w = rng.standard_normal((1173, 32)).astype(np.float32)
    return ops.linear_backward(g, x, w)


def _train_steps(steps=3):
    """The weights after a few AdamW steps of a small Transformer with
    dropout on, from a fixed seed."""
    pt.manual_seed(0)
    cfg = nn.Seq2SeqConfig(V, V, d_model=64, nhead=4, num_encoder_layers=1,
                           num_decoder_layers=1, dim_feedforward=256, dropout=0.1, max_len=16)
    model = nn.Seq2SeqTransformer(cfg)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        src = rng.integers(3, V, (64, L))
        tgt = np.concatenate([np.ones((64, 1), np.int64), src[:, ::-1]], 1)
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1), ignore_index=0,
                               label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return {k: v.copy() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        a, b = list(a.values()), list(b.values())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_fallback_gemm_linear_backward_is_thread_count_independent():
    got = [_with_gemm(False, lambda: _at_threads(n, _linear_backward_of_the_report))
           for n in (1, 2, 3)]
    _assert_same(got[0], got[1])
    _assert_same(got[0], got[2])


def test_training_steps_on_the_fallback_gemm_are_thread_count_independent():
    one = _with_gemm(False, lambda: _at_threads(1, _train_steps))
    two = _with_gemm(False, lambda: _at_threads(2, _train_steps))
    _assert_same(one, two)


@pytest.mark.skipif(not _core.blas_available(), reason="SciPy BLAS not installed")
def test_blas_results_repeat_exactly_at_one_thread_count():
    first = _at_threads(2, _linear_backward_of_the_report)
    again = _at_threads(2, _linear_backward_of_the_report)
    _assert_same(first, again)
    _assert_same(_at_threads(2, _train_steps), _at_threads(2, _train_steps))
