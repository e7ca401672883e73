"""GEMM: the C fallback (and the BLAS path) against NumPy.

The fallback blocks with MR=6 rows, NR=16 (f32) / 8 (f64) columns, MC=144
(f32) / 96 (f64) rows, KC=256 and NC=4096 (csrc/gemm.c); the sizes below
sit on, around and past those edges.

Tolerance: a computed sum of K products obeys the classical bound
|C - C_exact| <= (K + 2) eps (|alpha| |op(A)| |op(B)| + |beta| |C0|)
elementwise (Higham, Accuracy and Stability, 3.5), whatever the summation
order; we compare with the float64 product of the same inputs, so a wrong
index or a lost block shows up as an O(1) error, far outside the bound.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pytransformer import _core
from pytransformer.ops._gemm import matmul
from tests.helpers import DTYPES, dtypes, seeds

M_SIZES = [1, 2, 5, 6, 7, 12, 95, 96, 97, 143, 144, 145, 289]
N_SIZES = [1, 3, 7, 8, 9, 15, 16, 17, 33, 100]
K_SIZES = [1, 2, 17, 255, 256, 257, 513]


def operands(rng, M, N, K, ta, tb, dtype):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return a, b


def expected(a, b, ta, tb, alpha=1.0, beta=0.0, c0=None):
    """(float64 alpha*op(a)op(b) + beta*c0, the elementwise error bound)."""
    a64 = (a.T if ta else a).astype(np.float64)
    b64 = (b.T if tb else b).astype(np.float64)
    exact = alpha * (a64 @ b64)
    size = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0:
        exact = exact + beta * c0.astype(np.float64)
        size = size + abs(beta) * np.abs(c0.astype(np.float64))
    eps = np.finfo(a.dtype).eps
    return exact, (a64.shape[1] + 2) * eps * size + np.finfo(a.dtype).tiny


def check(actual, exact, bound):
    err = np.abs(actual.astype(np.float64) - exact)
    bad = ~(err <= bound)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} elements off, first at "
                           f"{np.argwhere(bad)[0]}: {actual.flat[np.flatnonzero(bad)[0]]} "
                           f"vs {exact.flat[np.flatnonzero(bad)[0]]}")


@given(M=st.sampled_from(M_SIZES), N=st.sampled_from(N_SIZES), K=st.sampled_from(K_SIZES),
       ta=st.booleans(), tb=st.booleans(), dtype=dtypes, seed=seeds)
def test_fallback_matches_numpy(M, N, K, ta, tb, dtype, seed):
    a, b = operands(np.random.default_rng(seed), M, N, K, ta, tb, dtype)
    c = matmul(a, b, ta, tb, fallback=True)
    assert c.dtype == dtype and c.shape == (M, N)
    check(c, *expected(a, b, ta, tb))


@settings(max_examples=15)
@given(M=st.sampled_from([1, 7, 145]), N=st.sampled_from([1, 9, 33]),
       K=st.sampled_from([1, 257]), ta=st.booleans(), tb=st.booleans(),
       alpha=st.sampled_from([1.0, -0.5, 2.0]), beta=st.sampled_from([0.0, 1.0, -1.5]),
       dtype=dtypes, seed=seeds)
def test_alpha_beta(M, N, K, ta, tb, alpha, beta, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = operands(rng, M, N, K, ta, tb, dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    for fallback in (True, False):
        c = c0.copy()
        _core.gemm(c, a, b, ta, tb, alpha, beta, fallback)
        check(c, *expected(a, b, ta, tb, alpha, beta, c0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fallback", [True, False])
def test_beta_zero_overwrites_nan(dtype, fallback):
    rng = np.random.default_rng(0)
    for M, N, K in [(7, 17, 300), (150, 20, 5)]:
        a, b = operands(rng, M, N, K, False, False, dtype)
        c = np.full((M, N), np.nan, dtype)
        _core.gemm(c, a, b, False, False, 1.5, 0.0, fallback)
        check(c, *expected(a, b, False, False, 1.5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fallback", [True, False])
def test_k_zero_and_alpha_zero_give_beta_c(dtype, fallback):
    c0 = np.arange(12, dtype=dtype).reshape(3, 4)
    c = c0.copy()
    _core.gemm(c, np.zeros((3, 0), dtype), np.zeros((0, 4), dtype), False, False, 1.0, 2.0, fallback)
    np.testing.assert_array_equal(c, 2 * c0)
    c = np.full((3, 4), np.nan, dtype)
    _core.gemm(c, np.zeros((3, 0), dtype), np.zeros((0, 4), dtype), False, False, 1.0, 0.0, fallback)
    np.testing.assert_array_equal(c, 0)
    assert np.array_equal(matmul(np.zeros((3, 0), dtype), np.zeros((0, 4), dtype),
                                 fallback=fallback), np.zeros((3, 4)))
    # alpha == 0: the product is not formed (as in reference BLAS).
    a = np.full((3, 5), np.nan, dtype)
    c = c0.copy()
    _core.gemm(c, a, np.ones((5, 4), dtype), False, False, 0.0, -1.0, True)
    np.testing.assert_array_equal(c, -c0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fallback", [True, False])
def test_zero_size_m_n(dtype, fallback):
    for (M, N, K) in [(0, 4, 3), (4, 0, 3), (0, 0, 0), (0, 5, 0)]:
        a, b = np.ones((M, K), dtype), np.ones((K, N), dtype)
        assert matmul(a, b, fallback=fallback).shape == (M, N)
        assert matmul(a.T.copy(), b.T.copy(), True, True, fallback=fallback).shape == (M, N)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_stays_in_its_row_and_column(dtype):
    # Edge tiles are computed on zero padding and clipped: a NaN in A row i
    # must poison C row i only, a NaN in B column j column j only.
    rng = np.random.default_rng(3)
    M, N, K = 13, 21, 40
    a, b = operands(rng, M, N, K, False, False, dtype)
    a[12, 7] = np.nan
    b[5, 20] = np.inf
    c = matmul(a, b, fallback=True)
    assert np.isnan(c[12]).all()
    assert not np.isfinite(c[:12, 20]).any()
    assert np.isfinite(c[:12, :20]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_panel_past_nc(dtype):
    rng = np.random.default_rng(4)
    for ta, tb in [(False, False), (True, True)]:
        a, b = operands(rng, 3, 4100, 5, ta, tb, dtype)
        check(matmul(a, b, ta, tb, fallback=True), *expected(a, b, ta, tb))


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_bits(dtype):
    rng = np.random.default_rng(5)
    old = _core.get_num_threads()
    try:
        for (M, N, K, ta, tb) in [(300, 70, 600, False, False), (5, 300, 300, True, False),
                                  (150, 150, 150, False, True), (1, 1000, 700, True, True)]:
            a, b = operands(rng, M, N, K, ta, tb, dtype)
            c0 = rng.standard_normal((M, N)).astype(dtype)
            out = []
            for n in (1, 2, 3):
                _core.set_num_threads(n)
                c = c0.copy()
                _core.gemm(c, a, b, ta, tb, 0.75, 0.5, True)
                out.append(c)
            assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    finally:
        _core.set_num_threads(old)


@pytest.mark.skipif(not _core.blas_available(), reason="SciPy BLAS not installed")
@given(M=st.sampled_from(M_SIZES), N=st.sampled_from(N_SIZES), K=st.sampled_from(K_SIZES),
       ta=st.booleans(), tb=st.booleans(), dtype=dtypes, seed=seeds)
@settings(max_examples=15)
def test_blas_path_matches_numpy(M, N, K, ta, tb, dtype, seed):
    a, b = operands(np.random.default_rng(seed), M, N, K, ta, tb, dtype)
    check(matmul(a, b, ta, tb, fallback=False), *expected(a, b, ta, tb))


_PORTABLE_SCRIPT = """
import numpy as np
from pytransformer.ops._gemm import matmul
rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    for (M, N, K, ta, tb) in [(1, 1, 1, 0, 0), (13, 33, 257, 1, 0), (145, 17, 300, 0, 1)]:
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(dt)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(dt)
        a64, b64 = (a.T if ta else a).astype(float), (b.T if tb else b).astype(float)
        err = np.abs(matmul(a, b, ta, tb, fallback=True) - a64 @ b64)
        assert (err <= (K + 2) * np.finfo(dt).eps * (np.abs(a64) @ np.abs(b64))).all()
print("portable ok")
"""


def test_portable_kernel_in_subprocess():
    # PT_PORTABLE=1 makes the fallback skip the AVX2 kernel.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PT_PORTABLE="1",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", _PORTABLE_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "portable ok" in res.stdout, res.stderr


def test_bad_inputs():
    a32, a64 = np.ones((2, 3), np.float32), np.ones((3, 2), np.float64)
    with pytest.raises(TypeError):
        matmul(a32, a64)
    with pytest.raises(TypeError):
        matmul(np.ones((2, 3), np.int64), np.ones((3, 2), np.int64))
    with pytest.raises(ValueError):
        matmul(a32, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError):
        matmul(np.ones(3, np.float32), np.ones((3, 2), np.float32))
