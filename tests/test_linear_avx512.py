"""csrc/linear_avx512.c: the avx512 path of the linear family, the dot
kernel pt_linear_forward uses for float32 inputs of up to 64 rows
(PT_LINEAR_DOT_ROWS_AVX512), reading the weights in place.

Bound: each output is a float32 dot product of length IN summed in 16
lanes and a fixed tree, against the float64 product: asserted
|y - ref| <= 1e-6 * IN * max|x| * max|w| + 1e-6 * |b| per element (a
float32 sum of IN terms errs by at most about IN * 2^-24 of the sum of
|terms|). Against the GEMM path (a BLAS or the C GEMM, forced with
PT_LINEAR_DOT_ROWS=0) it agrees to twice that bound, and its outputs do
not depend on the thread count, on the row count or on where a row sits
in x (each output is one fixed-order sum).
"""
import contextlib

import numpy as np
import pytest

import pytransformer as pt
from pytransformer._dispatch_env import dispatch_env
from pytransformer import _core, ops
from tests.helpers import use_isa

HAVE_AVX512 = "avx512" in _core.isa_levels_supported()
needs_avx512 = pytest.mark.skipif(not HAVE_AVX512, reason="the CPU has no AVX-512")
HAVE_AVX2 = "avx2" in _core.isa_levels_supported()


@contextlib.contextmanager
def dot_rows(value):
    """PT_LINEAR_DOT_ROWS=value inside the block (the dispatch table re-read;
    it is otherwise read once, at import), then the environment and the
    table restored."""
    with dispatch_env(PT_LINEAR_DOT_ROWS=value):
        yield


def _gemm(x, w, b):
    """pt_linear_forward without a dot kernel: the GEMM path."""
    with dot_rows(0):
        return ops.linear(x, w, b)


def _forced_dot(x, w, b):
    """pt_linear_forward through the level's dot kernel at any row count."""
    with dot_rows(1 << 40):
        return ops.linear(x, w, b)


def _ref(x, w, b):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    return y if b is None else y + b


def _bound(x, w, b):
    IN = x.shape[1]
    tol = 1e-6 * IN * np.abs(x).max() * np.abs(w).max()
    return tol + (0 if b is None else 1e-6 * np.abs(b).max())


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@needs_avx512
def test_info_names_the_avx512_path_for_float32_only():
    info = _core.isa_info()
    if info["isa"] != "avx512":
        pytest.skip(f"the ISA level in use is {info['isa']}")
    assert info["kernels"]["linear"] == "avx512"
    assert info["kernels_float64"]["linear"] == "portable"


@needs_avx512
@pytest.mark.parametrize("N", [1, 2, 3, 4, 5, 6, 7, 12, 17, 63, 64])
@pytest.mark.parametrize("IN,OUT", [(384, 1152), (16, 4), (17, 5), (33, 18), (1, 3), (100, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_float64_and_the_gemm_at_every_tile_and_tail(N, IN, OUT, bias):
    """Row tiles of 1-6 rows, column tails (OUT % 4) and k tails (IN % 16),
    through ops.linear at the default thresholds."""
    rng = np.random.default_rng(N * 1000 + IN + OUT)
    x, w = _rand(rng, N, IN), _rand(rng, OUT, IN)
    b = _rand(rng, OUT) if bias else None
    with use_isa("avx512"):
        y = ops.linear(x, w, b)
        gemm = _gemm(x, w, b)
    ref = _ref(x, w, b)
    tol = _bound(x, w, b)
    assert y.shape == (N, OUT) and y.dtype == np.float32
    assert np.abs(y - ref).max() <= tol
    assert np.abs(y - gemm).max() <= 2 * tol


@needs_avx512
def test_it_runs_up_to_64_rows_and_the_gemm_above():
    """At the default threshold 64 rows take the kernel (bitwise its forced
    result), 65 the GEMM (bitwise the forced GEMM); the two differ, so the
    comparison tells the paths apart."""
    rng = np.random.default_rng(3)
    x, w, b = _rand(rng, 65, 384), _rand(rng, 1152, 384), _rand(rng, 1152)
    with use_isa("avx512"):
        y64, y65 = ops.linear(x[:64], w, b), ops.linear(x, w, b)
        dot64, gemm64 = _forced_dot(x[:64], w, b), _gemm(x[:64], w, b)
        gemm65 = _gemm(x, w, b)
    assert np.array_equal(y64, dot64)
    assert not np.array_equal(dot64, gemm64)
    assert np.array_equal(y65, gemm65)


@needs_avx512
def test_outputs_do_not_depend_on_threads_row_count_or_position():
    rng = np.random.default_rng(1)
    x, w, b = _rand(rng, 19, 384), _rand(rng, 1536, 384), _rand(rng, 1536)
    old = pt.get_num_threads()
    with use_isa("avx512"):
        try:
            runs = []
            for n in (1, 2, 3):
                pt.set_num_threads(n)
                runs.append(ops.linear(x, w, b))
        finally:
            pt.set_num_threads(old)
        for r in runs[1:]:
            assert np.array_equal(r, runs[0])
        for lo, hi in ((0, 1), (5, 6), (3, 10), (18, 19), (1, 19)):
            assert np.array_equal(ops.linear(x[lo:hi].copy(), w, b), runs[0][lo:hi])


@needs_avx512
def test_a_nan_stays_in_its_row():
    rng = np.random.default_rng(4)
    x, w, b = _rand(rng, 17, 40), _rand(rng, 13, 40), _rand(rng, 13)
    x[5, 39] = np.nan                               # in the k tail of a 6-row tile
    with use_isa("avx512"):
        y = ops.linear(x, w, b)
    assert np.isnan(y[5]).all()
    assert not np.isnan(np.delete(y, 5, axis=0)).any()


@pytest.mark.skipif(not HAVE_AVX2, reason="the CPU has no AVX2+FMA")
def test_avx2_level_keeps_the_avx2_kernel_up_to_20_rows():
    """PT_ISA=avx2 names and runs the AVX2 dot kernel: 20 rows are its
    forced result bitwise, 21 the GEMM's."""
    rng = np.random.default_rng(5)
    x, w, b = _rand(rng, 21, 384), _rand(rng, 1152, 384), _rand(rng, 1152)
    with use_isa("avx2"):
        assert _core.isa_info()["kernels"]["linear"] == "avx2"
        y20, y21 = ops.linear(x[:20], w, b), ops.linear(x, w, b)
        dot20, gemm21 = _forced_dot(x[:20], w, b), _gemm(x, w, b)
        gemm20 = _gemm(x[:20], w, b)
    assert np.array_equal(y20, dot20)
    assert not np.array_equal(dot20, gemm20)
    assert np.array_equal(y21, gemm21)
    if HAVE_AVX512:                                 # another kernel at avx512
        with use_isa("avx512"):
            assert not np.array_equal(ops.linear(x[:20], w, b), y20)


def test_float64_and_the_portable_level_take_the_gemm():
    rng = np.random.default_rng(2)
    x, w, b = _rand(rng, 9, 40), _rand(rng, 12, 40), _rand(rng, 12)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    assert np.array_equal(ops.linear(x64, w64, b64), _gemm(x64, w64, b64))
    with use_isa("portable"):
        assert _core.isa_info()["kernels"]["linear"] == "portable"
        assert np.array_equal(ops.linear(x, w, b), _gemm(x, w, b))


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_par_min_moves_the_thread_split_not_the_bits(level):
    """PT_LINEAR_PAR_MIN sets the multiply-adds from which the dot kernel
    splits its blocks between threads: a 17 x 384 -> 1152 product, below
    either path's own threshold, split across 2 and 3 threads gives the
    bits of one thread."""
    if level not in _core.isa_levels_supported():
        pytest.skip(f"the CPU does not run {level}")
    rng = np.random.default_rng(6)
    x, w, b = _rand(rng, 17, 384), _rand(rng, 1152, 384), _rand(rng, 1152)
    old = pt.get_num_threads()
    with use_isa(level):
        try:
            pt.set_num_threads(1)
            one = ops.linear(x, w, b)
            runs = []
            for n in (2, 3):
                pt.set_num_threads(n)
                runs.append(ops.linear(x, w, b))
                with dispatch_env(PT_LINEAR_PAR_MIN=1):
                    runs.append(ops.linear(x, w, b))
        finally:
            pt.set_num_threads(old)
    assert np.abs(one - _ref(x, w, b)).max() <= _bound(x, w, b)
    for r in runs:
        assert np.array_equal(r, one)
