"""embedding and sinusoidal_positions against the NumPy reference."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import pytransformer.reference._embedding as ref
from pytransformer import _core
from pytransformer.ops._embedding import (embedding, embedding_backward, embedding_forward,
                                         sinusoidal_positions)
from tests.helpers import DTYPES, assert_close, dims, dtypes, numeric_grad, rand, seeds, small_dims


@given(v=small_dims, c=dims, n=small_dims, m=small_dims, dtype=dtypes, seed=seeds)
def test_forward_backward_match_reference(v, c, n, m, dtype, seed):
    rng = np.random.default_rng(seed)
    w = rand(rng, (v, c), dtype)
    ids = rng.integers(0, v, size=(n, m))          # repeated ids whenever n*m > v
    y, ids64 = embedding_forward(ids, w)
    assert y.shape == (n, m, c) and y.dtype == dtype and ids64.dtype == np.int64
    np.testing.assert_array_equal(y, ref.embedding(ids, w))
    dy = rand(rng, y.shape, dtype)
    dw = embedding_backward(dy, ids64, v)
    assert dw.shape == (v, c) and dw.dtype == dtype
    # Additions run in n order, like np.add.at, so the result is exact.
    np.testing.assert_array_equal(dw, ref.embedding_backward(dy, ids, v))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("V, C, zipf", [(3, 512, False), (50, 8, False), (1, 64, False),
                                        (1000, 1, False), (7, 33, False), (50, 16, True),
                                        (100_000, 16, False), (2, 40, True)])
def test_backward_heavy_repeats_and_thread_independence(dtype, V, C, zipf):
    # Each thread owns a vocabulary range (balanced by a histogram of ids, or
    # equal ranges when V >> N) and skips ids outside it; skewed (Zipf) ids
    # give uneven ranges, V = 2 with 3-4 threads leaves threads idle.
    rng = np.random.default_rng(V * C)
    ids = (rng.zipf(1.5, size=4000) - 1) % V if zipf else rng.integers(0, V, size=4000)
    dy = rand(rng, (4000, C), dtype)
    expect = ref.embedding_backward(dy, ids, V)
    results = []
    old = _core.get_num_threads()
    try:
        for nt in (1, 2, 3, 4):
            _core.set_num_threads(nt)
            results.append(embedding_backward(dy, ids, V))
    finally:
        _core.set_num_threads(old)
    for r in results:
        np.testing.assert_array_equal(r, results[0])
    np.testing.assert_array_equal(results[0], expect)


def test_backward_accumulates_into_grad_weight_and_padding_idx():
    rng = np.random.default_rng(3)
    w = rand(rng, (6, 5), np.float64)
    ids = np.array([[0, 2, 2], [5, 2, 0]])
    dy = rand(rng, (2, 3, 5), np.float64)
    gw = np.ones((6, 5))
    out = embedding_backward(dy, ids, 6, padding_idx=2, grad_weight=gw, accumulate=True)
    assert out is gw
    expect = 1 + ref.embedding_backward(dy, ids, 6, padding_idx=2)
    expect[2] = 1                                   # left as it was
    np.testing.assert_allclose(gw, expect, rtol=1e-15, atol=0)
    # Stored (the default): the buffer's contents do not matter, the padding
    # row and the rows no id reaches become zeros.
    gw = np.full((6, 5), np.nan)
    out = embedding_backward(dy, ids, 6, padding_idx=2, grad_weight=gw)
    assert out is gw
    np.testing.assert_allclose(gw, ref.embedding_backward(dy, ids, 6, padding_idx=2),
                               rtol=1e-15, atol=0)
    assert not gw[2].any() and not gw[1].any()
    # Fresh buffer: padding row is zero; negative padding_idx counts from the end.
    dw = embedding_backward(dy, ids, 6, padding_idx=-1)
    np.testing.assert_array_equal(dw, ref.embedding_backward(dy, ids, 6, padding_idx=5))
    assert not dw[5].any()
    # Forward is unaffected by padding_idx (as in PyTorch).
    np.testing.assert_array_equal(embedding(ids, w, padding_idx=2), w[ids])


def test_gradient_by_finite_differences():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((5, 4))
    ids = np.array([[1, 3, 1], [0, 1, 4]])
    dy = rng.standard_normal((2, 3, 4))
    loss = lambda: float((embedding(ids, w) * dy).sum())
    dw = embedding_backward(dy, ids, 5)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_and_odd_shapes(dtype):
    w = np.arange(12, dtype=dtype).reshape(4, 3)
    ids = np.zeros((0,), np.int64)
    y = embedding(ids, w)
    assert y.shape == (0, 3)
    dw = embedding_backward(np.zeros((0, 3), dtype), ids, 4)
    assert dw.shape == (4, 3) and not dw.any()
    # Scalar id, uint8 ids, and a zero-width table.
    np.testing.assert_array_equal(embedding(np.array(2), w), w[2])
    np.testing.assert_array_equal(embedding(np.array([3, 0], np.uint8), w), w[[3, 0]])
    assert embedding(np.array([1, 1]), np.zeros((2, 0), dtype)).shape == (2, 0)
    # Non-contiguous ids and table are copied; out= is written and returned.
    big = np.arange(40, dtype=dtype).reshape(8, 5)[::2, ::2]
    ids2 = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])[:, ::2]
    out = np.empty((2, 2, 3), dtype)
    assert embedding(ids2, big, out=out) is out
    np.testing.assert_array_equal(out, big[ids2])


@pytest.mark.parametrize("bad, err, match", [
    (lambda w: embedding(np.array([0, -1, 2]), w), ValueError, "value -1"),
    (lambda w: embedding(np.array([[0, 1], [4, 7]]), w), ValueError, "value 4"),
    (lambda w: embedding(np.array([0.0, 1.0]), w), TypeError, "ids"),
    (lambda w: embedding([0, 1], w), TypeError, "ids"),
    (lambda w: embedding(np.array([0]), w.astype(np.int32)), TypeError, "weight"),
    (lambda w: embedding(np.array([0]), w[0]), ValueError, "weight"),
    (lambda w: embedding(np.array([0]), w, out=np.empty((1, 4), np.float32)), ValueError, "out"),
    (lambda w: embedding(np.array([0]), w, padding_idx=4), ValueError, "padding_idx"),
    (lambda w: embedding_backward(np.ones((2, 3), np.float32), np.array([0, 9]), 4),
     ValueError, "value 9"),
    (lambda w: embedding_backward(np.ones((3, 3), np.float32), np.array([0, 1]), 4),
     ValueError, "grad_out"),
    (lambda w: embedding_backward(np.ones((2, 3), np.float32), np.array([0, 1]), 4,
                                  grad_weight=np.zeros((4, 3))), TypeError, "grad_weight"),
])
def test_bad_input_raises(bad, err, match):
    with pytest.raises(err, match=match):
        bad(np.ones((4, 3), np.float32))


def test_c_kernel_rechecks_ids():
    # The binding passes ids straight to C, which re-checks and writes nothing.
    w = np.ones((4, 3), np.float32)
    y = np.full((2, 3), 7, np.float32)
    with pytest.raises(ValueError):
        _core.embedding_forward(y, np.array([1, 4], np.int64), w)
    assert (y == 7).all()
    dw = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError):
        _core.embedding_backward(dw, np.ones((2, 3), np.float32), np.array([-5, 0], np.int64))
    assert not dw.any()


@given(t=st.integers(0, 70), c=st.integers(0, 40), dtype=dtypes,
       base=st.sampled_from([10000.0, 100.0, 2.0]))
def test_sinusoidal_matches_formula(t, c, dtype, base):
    pe = sinusoidal_positions(t, c, base=base, dtype=dtype)
    assert pe.shape == (t, c) and pe.dtype == dtype
    # Direct formula, written independently of the reference.
    expect = np.zeros((t, c))
    for i in range(0, c, 2):
        angle = np.arange(t) / base ** (i / c)
        expect[:, i] = np.sin(angle)
        if i + 1 < c:
            expect[:, i + 1] = np.cos(angle)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(pe, expect, rtol=0, atol=tol)
    np.testing.assert_allclose(pe, ref.sinusoidal_positions(t, c, base, dtype), rtol=0, atol=tol)


def test_sinusoidal_long_sequence_and_torch_tutorial_values():
    # The PyTorch tutorial's div_term formulation agrees at t up to 8192
    # (angles computed in double: errors ~ t * 1e-16).
    T, C = 8192, 64
    pe = sinusoidal_positions(T, C, dtype=np.float64)
    pos = np.arange(T)[:, None]
    div = np.exp(np.arange(0, C, 2) * (-np.log(10000.0) / C))
    np.testing.assert_allclose(pe[:, 0::2], np.sin(pos * div), rtol=0, atol=1e-11)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(pos * div), rtol=0, atol=1e-11)
    out = np.empty((T, C), np.float64)
    assert sinusoidal_positions(T, C, dtype=np.float64, out=out) is out


@pytest.mark.parametrize("bad, err", [
    (lambda: sinusoidal_positions(-1, 4), ValueError),
    (lambda: sinusoidal_positions(4, 4, base=0.0), ValueError),
    (lambda: sinusoidal_positions(4, 4, base=float("nan")), ValueError),
    (lambda: sinusoidal_positions(4, 4, dtype=np.int32), TypeError),
    (lambda: sinusoidal_positions(4, 4, out=np.empty((4, 5), np.float32)), ValueError),
])
def test_sinusoidal_bad_input(bad, err):
    with pytest.raises(err):
        bad()
