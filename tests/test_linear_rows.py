"""csrc/linear_rows.c: the encoder's projections for inputs of few rows
(float32, avx512), reading the weights in place.

Bound: each output is a float32 dot product of length IN summed in 16
lanes and a fixed tree, against the float64 product: asserted
|y - ref| <= 1e-6 * IN * max|x| * max|w| + 1e-6 * |b| per element (a
float32 sum of IN terms errs by at most about IN * 2^-24 of the sum of
|terms|). Against pt_linear_forward (a BLAS or the C GEMM) it agrees to
the same bound, and its outputs do not depend on the thread count, on the
row count or on where a row sits in x (each output is one fixed-order
sum).
"""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _core, ops
from tests.helpers import use_isa

HAVE_AVX512 = "avx512" in _core.isa_levels_supported()
needs_avx512 = pytest.mark.skipif(not HAVE_AVX512, reason="the CPU has no AVX-512")


def _ref(x, w, b):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    return y if b is None else y + b


def _bound(x, w, b):
    IN = x.shape[1]
    tol = 1e-6 * IN * np.abs(x).max() * np.abs(w).max()
    return tol + (0 if b is None else 1e-6 * np.abs(b).max())


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.fixture
def rows_max():
    old = _core.linear_rows_max()
    yield old
    _core.linear_rows_max(old)


@needs_avx512
@pytest.mark.parametrize("N", [1, 2, 3, 4, 5, 6, 7, 12, 17, 64])
@pytest.mark.parametrize("IN,OUT", [(384, 1152), (16, 4), (17, 5), (33, 18), (1, 3), (100, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_float64_and_linear_forward_at_every_tail(N, IN, OUT, bias):
    """Row tiles of 1-6 rows, column tails (OUT % 4) and k tails (IN % 16)."""
    rng = np.random.default_rng(N * 1000 + IN + OUT)
    x, w = _rand(rng, N, IN), _rand(rng, OUT, IN)
    b = _rand(rng, OUT) if bias else None
    assert N <= _core.linear_rows_max()
    y = _core.linear_rows_forward(x, w, b)
    ref = _ref(x, w, b)
    tol = _bound(x, w, b)
    assert y.shape == (N, OUT) and y.dtype == np.float32
    assert np.abs(y - ref).max() <= tol
    other = ops.linear(x, w, b)                   # pt_linear_forward
    assert np.abs(y - other).max() <= 2 * tol


@needs_avx512
def test_outputs_do_not_depend_on_threads_row_count_or_position():
    rng = np.random.default_rng(1)
    x, w, b = _rand(rng, 19, 384), _rand(rng, 1536, 384), _rand(rng, 1536)
    old = pt.get_num_threads()
    try:
        pt.set_num_threads(1)
        one = _core.linear_rows_forward(x, w, b)
        pt.set_num_threads(2)
        two = _core.linear_rows_forward(x, w, b)
    finally:
        pt.set_num_threads(old)
    assert np.array_equal(one, two)
    for lo, hi in ((0, 1), (5, 6), (3, 10), (18, 19), (1, 19)):
        assert np.array_equal(_core.linear_rows_forward(x[lo:hi].copy(), w, b), one[lo:hi])


def test_outside_its_range_it_is_linear_forward(rows_max):
    """Above linear_rows_max rows, in float64, or below the avx512 level
    the call is pt_linear_forward's, bit for bit."""
    rng = np.random.default_rng(2)
    x, w, b = _rand(rng, 9, 40), _rand(rng, 12, 40), _rand(rng, 12)
    _core.linear_rows_max(8)
    assert np.array_equal(_core.linear_rows_forward(x, w, b), ops.linear(x, w, b))
    _core.linear_rows_max(rows_max)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    assert np.array_equal(_core.linear_rows_forward(x64, w64, b64), ops.linear(x64, w64, b64))
    with use_isa("avx2"):
        if _core.isa_info()["isa"] == "avx2":
            assert np.array_equal(_core.linear_rows_forward(x, w, b), ops.linear(x, w, b))


def test_rows_max_is_settable_and_checked(rows_max):
    assert rows_max > 0
    assert _core.linear_rows_max(0) == rows_max
    assert _core.linear_rows_max() == 0
    with pytest.raises(ValueError, match="n: expected an int >= 0"):
        _core.linear_rows_max(-1)


def test_bad_arguments_name_what_is_wrong():
    x, w = np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="w: expected shape"):
        _core.linear_rows_forward(x, np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="w: expected dtype float32"):
        _core.linear_rows_forward(x, w.astype(np.float64))
    with pytest.raises(ValueError, match="b: expected shape"):
        _core.linear_rows_forward(x, w, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="x, w: expected 2-D"):
        _core.linear_rows_forward(x[0], w)
