"""csrc/linear_packed.c, linear_packed_x86.c: y = x w^T + b over a weight
packed once into panels of 64 output columns, the packed_panels slot of
the linear family (the encoder layer stack's projections of few rows).

Bound: each output is acc = 0, acc += x[i,k] w[j,k] in k order, then + b,
a float32 sum of IN terms: asserted |y - ref| <= 1e-6 * IN * max|x| *
max|w| + 1e-6 * |b| against the float64 product (as the dot kernels'
tests), and within twice that of the dot kernel / GEMM that
pt_linear_forward runs over the same w. The avx2 and avx512 paths fuse
each product-add (the same operations in the same order): bitwise equal.
The portable path rounds products and sums apart: within the bound.
Outputs do not depend on the thread count, the row count or a row's place
in x (each output one thread's fixed-order sum).
"""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _core, ops
from pytransformer._dispatch_env import dispatch_env
from tests.helpers import use_isa

LEVELS = [lv for lv in ("portable", "avx2", "avx512") if lv in _core.isa_levels_supported()]
X86 = [lv for lv in ("avx2", "avx512") if lv in LEVELS]


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _pack(w):
    wp = np.empty(_core.linear_pack_size(*w.shape), np.float32)
    _core.linear_pack(wp, w)
    return wp


def _packed(x, wp, w, b):
    y = np.empty((x.shape[0], w.shape[0]), np.float32)
    _core.linear_packed_forward(y, x, wp, w, b)
    return y


def _ref(x, w, b):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    return y if b is None else y + b


def _bound(x, w, b):
    tol = 1e-6 * x.shape[1] * np.abs(x).max() * np.abs(w).max()
    return tol + (0 if b is None else 1e-6 * np.abs(b).max())


def test_layout_is_column_panels_zero_padded():
    rng = np.random.default_rng(0)
    w = _rand(rng, 70, 5)
    wp = _pack(w)
    assert wp.shape == (2 * 64 * 5,)
    panels = wp.reshape(2, 5, 64)                  # (panel, k, column)
    assert np.array_equal(panels[0].T, w[:64])
    assert np.array_equal(panels[1].T[:6], w[64:])
    assert not panels[1].T[6:].any()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("N", [1, 2, 5, 6, 7, 12, 17, 64])
@pytest.mark.parametrize("IN,OUT", [(384, 1152), (1536, 384), (16, 4), (17, 70), (33, 130),
                                    (1, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_float64_and_the_unpacked_kernel(level, N, IN, OUT, bias):
    """Row tiles of 1-6 rows, partial panels and partial 16-column strips."""
    rng = np.random.default_rng(N * 1000 + IN + OUT)
    x, w = _rand(rng, N, IN), _rand(rng, OUT, IN)
    b = _rand(rng, OUT) if bias else None
    wp = _pack(w)
    with use_isa(level):
        y = _packed(x, wp, w, b)
        unpacked = ops.linear(x, w, b)
    tol = _bound(x, w, b)
    assert np.abs(y - _ref(x, w, b)).max() <= tol
    assert np.abs(y - unpacked).max() <= 2 * tol


@pytest.mark.skipif(len(X86) < 2, reason="the CPU does not run both avx2 and avx512")
@pytest.mark.parametrize("N,IN,OUT", [(17, 384, 1152), (5, 1536, 384), (1, 33, 130),
                                      (64, 40, 77)])
def test_avx2_and_avx512_give_the_same_bits(N, IN, OUT):
    rng = np.random.default_rng(IN + OUT)
    x, w, b = _rand(rng, N, IN), _rand(rng, OUT, IN), _rand(rng, OUT)
    wp = _pack(w)
    with use_isa("avx2"):
        a = _packed(x, wp, w, b)
    with use_isa("avx512"):
        c = _packed(x, wp, w, b)
    assert np.array_equal(a, c)


@pytest.mark.parametrize("level", LEVELS)
def test_outputs_do_not_depend_on_threads_row_count_or_position(level):
    rng = np.random.default_rng(1)
    x, w, b = _rand(rng, 19, 384), _rand(rng, 1536, 384), _rand(rng, 1536)
    wp = _pack(w)
    old = pt.get_num_threads()
    with use_isa(level), dispatch_env(PT_LINEAR_PAR_MIN=1):
        try:
            runs = []
            for n in (1, 2, 3):
                pt.set_num_threads(n)
                runs.append(_packed(x, wp, w, b))
        finally:
            pt.set_num_threads(old)
        for r in runs[1:]:
            assert np.array_equal(r, runs[0])
        for lo, hi in ((0, 1), (5, 6), (3, 10), (18, 19), (1, 19)):
            assert np.array_equal(_packed(x[lo:hi].copy(), wp, w, b), runs[0][lo:hi])


@pytest.mark.parametrize("rows", [None, 64])
def test_above_the_packed_rows_it_is_pt_linear_forward(rows):
    """Past the row count the packed kernel runs to (512 by default,
    PT_LINEAR_PACKED_ROWS), w itself goes to pt_linear_forward (bitwise
    ops.linear); up to it, the packed kernel. Told apart at the portable
    level, whose packed loop rounds products and sums apart where the GEMM
    fuses them (the x86 kernels' order can match a BLAS's bit for bit)."""
    rng = np.random.default_rng(3)
    limit = rows or 512
    x, w, b = _rand(rng, limit + 1, 384), _rand(rng, 1152, 384), _rand(rng, 1152)
    wp = _pack(w)
    with use_isa("portable"), dispatch_env(PT_LINEAR_PACKED_ROWS=rows):
        assert np.array_equal(_packed(x, wp, w, b), ops.linear(x, w, b))
        top = _packed(x[:limit].copy(), wp, w, b)
        assert not np.array_equal(top, ops.linear(x[:limit].copy(), w, b))
        assert np.abs(top - _ref(x[:limit], w, b)).max() <= _bound(x, w, b)
        with dispatch_env(PT_LINEAR_PACKED_ROWS=0):  # never
            assert np.array_equal(_packed(x[:17].copy(), wp, w, b),
                                  ops.linear(x[:17].copy(), w, b))


def test_a_nan_stays_in_its_row():
    rng = np.random.default_rng(4)
    x, w, b = _rand(rng, 17, 40), _rand(rng, 13, 40), _rand(rng, 13)
    x[5, 39] = np.nan
    y = _packed(x, _pack(w), w, b)
    assert np.isnan(y[5]).all()
    assert not np.isnan(np.delete(y, 5, axis=0)).any()


def test_pack_matches_sees_a_changed_array_at_its_samples():
    rng = np.random.default_rng(5)
    w = _rand(rng, 130, 33)
    wp = _pack(w)
    assert _core.linear_pack_matches(wp, w)
    w2 = w.copy()
    w2[-1, -1] += 1                                # the last element is sampled
    assert not _core.linear_pack_matches(wp, w2)
    w3 = _rand(rng, 130, 33)                       # a whole new array's values
    assert not _core.linear_pack_matches(wp, w3)
