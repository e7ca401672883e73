"""The AVX-512 paths of the fallback GEMM and of AdamW against the AVX2 and
portable paths (skipped, saying so, on a CPU without AVX-512F/BW/DQ/VL).

The path is the dispatch table's (csrc/dispatch.c): PT_ISA=avx512, avx2 or
portable, re-read by _core._reinit_isa(); the fixture restores the CPU's
level afterwards.

GEMM. The AVX-512 micro-kernel (csrc/gemm_avx512.c) has a 14 x 32 (float32)
/ 14 x 16 (float64) register tile, blocks of 224 / 112 rows and K blocks of
256. Each C element is the same fused multiply-add chain over p as in the
AVX2 kernel, with the same K blocks, followed by the same alpha/beta
arithmetic, so the two paths are bitwise equal (tested). The portable
kernel rounds the product and the sum separately; against it and against
the float64 product the tolerance is the classical bound
|C - C_exact| <= (K + 2) eps (|alpha| |op(A)| |op(B)| + |beta| |C0|)
(Higham, Accuracy and Stability, 3.5), and twice that between the two
float computations. Sizes sit on and around the tile (14, 32/16), block
(224/112 rows, 256 deep) and AVX2 (6, 16/8) edges.

AdamW. All paths do the same IEEE operations in the same order without FMA
(csrc/optim.c), the AVX-512 tail being a masked vector: bitwise equal.
"""
import numpy as np
import pytest

from pytransformer import _core
from tests.helpers import DTYPES, rand
from tests.test_gemm import expected


pytestmark = pytest.mark.skipif("avx512" not in _core.isa_levels_supported(),
                                reason="CPU (or OS) without AVX-512F/BW/DQ/VL: "
                                       "the AVX-512 paths cannot run here")


@pytest.fixture(autouse=True)
def _restore_isa(monkeypatch):
    yield
    monkeypatch.undo()
    _core._reinit_isa()


def _on_path(monkeypatch, path):
    monkeypatch.delenv("PT_PORTABLE", raising=False)
    monkeypatch.setenv("PT_ISA", path)
    assert _core._reinit_isa() == path


PATHS = ("avx512", "avx2", "portable")


def _gemm(path, monkeypatch, a, b, ta, tb, alpha, beta, c0):
    _on_path(monkeypatch, path)
    c = c0.copy()
    _core.gemm(c, a, b, ta, tb, alpha, beta, True)
    return c


def _check_paths(monkeypatch, rng, M, N, K, ta, tb, dtype, alpha, beta):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    c0 = rng.standard_normal((M, N)).astype(dtype)
    if beta == 0:
        c0[0, 0] = np.nan                      # beta = 0 must not read C
    got = {p: _gemm(p, monkeypatch, a, b, ta, tb, alpha, beta, c0) for p in PATHS}
    exact, bound = expected(a, b, ta, tb, alpha, beta, c0)
    where = f"M={M} N={N} K={K} ta={ta} tb={tb} beta={beta} {np.dtype(dtype).name}"
    np.testing.assert_array_equal(got["avx512"], got["avx2"], err_msg=where)
    for p in ("avx512", "portable"):
        err = np.abs(got[p].astype(np.float64) - exact)
        assert (err <= bound).all(), f"{p} {where}: max err/bound {np.max(err / bound)}"
    diff = np.abs(got["avx512"].astype(np.float64) - got["portable"])
    assert (diff <= 2 * bound).all(), where


M_EDGE = [1, 2, 7, 13, 14, 15, 29, 43, 99]
N_EDGE = [1, 3, 8, 15, 16, 17, 31, 32, 33, 47, 97]
K_EDGE = [1, 2, 17, 99]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_avx512_edges(dtype, ta, tb, beta, monkeypatch):
    rng = np.random.default_rng(14)
    for M in M_EDGE:
        for N in N_EDGE:
            for K in K_EDGE:
                _check_paths(monkeypatch, rng, M, N, K, ta, tb, dtype, 1.0, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("M,N,K", [(48, 33, 255), (49, 65, 256), (113, 31, 257),
                                   (225, 100, 513), (300, 260, 300), (6, 4100, 40)])
def test_gemm_avx512_blocks(dtype, ta, tb, M, N, K, monkeypatch):
    # Row blocks (224 / 112), K blocks (256), the in-place B strips of
    # M <= 48 and the N panel (4096).
    rng = np.random.default_rng(M * 7 + N * 3 + K)
    for alpha, beta in ((1.0, 0.0), (1.0, 1.0), (-0.5, 0.25)):
        _check_paths(monkeypatch, rng, M, N, K, ta, tb, dtype, alpha, beta)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,N,K", [(5, 700, 600), (97, 131, 300), (450, 200, 520)])
def test_gemm_avx512_thread_count_independent(dtype, M, N, K, monkeypatch):
    _on_path(monkeypatch, "avx512")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((N, K)).astype(dtype)
    old = _core.get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            _core.set_num_threads(t)
            c = np.empty((M, N), dtype)
            _core.gemm(c, a, b, False, True, 1.0, 0.0, True)
            outs.append(c)
    finally:
        _core.set_num_threads(old)
    for c in outs[1:]:
        np.testing.assert_array_equal(c, outs[0])


# ------------------------------------------------------------------ AdamW

def _adamw(path, monkeypatch, p, m, v, g, step, wd, threads):
    _on_path(monkeypatch, path)
    p, m, v = p.copy(), m.copy(), v.copy()
    old = _core.get_num_threads()
    try:
        _core.set_num_threads(threads)
        _core.adamw_step(p, m, v, g, step, 1e-3, 0.9, 0.999, 1e-8, wd)
    finally:
        _core.set_num_threads(old)
    return p, m, v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adamw_avx512_bitwise_equal_to_avx2_and_portable(dtype, wd, monkeypatch):
    rng = np.random.default_rng(5)
    for n in list(range(1, 40)) + [63, 64, 65, 127, 1001, 70_001]:
        p = rand(rng, (n,), dtype)
        m = rand(rng, (n,), dtype, 0.01)
        v = np.abs(rand(rng, (n,), dtype, 0.01))
        g = rand(rng, (n,), dtype, 0.1)
        for step in (1, 7):
            ref = _adamw("avx512", monkeypatch, p, m, v, g, step, wd, 2)
            for path, threads in (("avx2", 2), ("portable", 1), ("avx512", 1), ("avx512", 3)):
                out = _adamw(path, monkeypatch, p, m, v, g, step, wd, threads)
                for a, b in zip(ref, out):
                    np.testing.assert_array_equal(a, b, err_msg=f"{path} n={n} t={threads}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_avx512_special_values(dtype, monkeypatch):
    g = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1e30, -2.5, 3.0], dtype)
    g = np.tile(g, 5)                        # vector body and masked tail
    p = np.linspace(-1, 1, g.size).astype(dtype)
    m = np.full(g.size, 0.01, dtype)
    v = np.full(g.size, 0.02, dtype)
    ref = _adamw("portable", monkeypatch, p, m, v, g, 2, 0.01, 1)
    out = _adamw("avx512", monkeypatch, p, m, v, g, 2, 0.01, 1)
    for a, b in zip(ref, out):
        np.testing.assert_array_equal(a, b)
