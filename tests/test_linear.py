"""linear: forward and backward against the NumPy reference, through both
GEMM paths (SciPy's BLAS and the built-in C fallback)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pytransformer
from pytransformer import _core
from pytransformer.ops._linear import linear, linear_backward
from pytransformer.reference import _linear as ref
from tests.helpers import dims, dtypes, numeric_grad, rand, seeds, small_dims


@pytest.fixture(params=["blas", "fallback"], scope="module")
def gemm_path(request):
    """Run the test once through BLAS and once through the C fallback GEMM,
    restoring the previous choice afterwards."""
    had_blas = _core.blas_available()
    if request.param == "fallback":
        pytransformer.use_blas(False)
    elif not pytransformer.use_blas(True):
        pytest.skip("no BLAS available")
    yield request.param
    pytransformer.use_blas(had_blas)


def tol(dtype, k):
    """(rtol, atol) for sums of k products of O(1) numbers: float32 rounding
    grows ~ k * eps in the worst realistic case; float64 is ~1e-16 * k."""
    if dtype == np.float32:
        return 1e-5, 2e-6 * (k + 1)
    return 1e-12, 1e-14 * (k + 1)


def close(actual, expected, dtype, k, err_msg=""):
    rtol, atol = tol(dtype, k)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)


lead_shapes = st.lists(small_dims, min_size=0, max_size=3).map(tuple)


@given(lead=lead_shapes, n_in=dims, n_out=dims, dtype=dtypes, use_bias=st.booleans(),
       seed=seeds)
def test_forward_backward_match_reference(gemm_path, lead, n_in, n_out, dtype, use_bias, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, lead + (n_in,), dtype)
    w = rand(rng, (n_out, n_in), dtype)
    b = rand(rng, (n_out,), dtype) if use_bias else None
    dy = rand(rng, lead + (n_out,), dtype)
    y = linear(x, w, b)
    assert y.shape == lead + (n_out,) and y.dtype == dtype
    # The reference in float64: what is compared is our rounding only.
    f64 = lambda a: None if a is None else a.astype(np.float64)
    close(y, ref.linear(f64(x), f64(w), f64(b)), dtype, n_in)
    dx, dw, db = linear_backward(dy, x, w, need_bias_grad=use_bias)
    rdx, rdw, rdb = ref.linear_backward(f64(dy), f64(x), f64(w))
    n_rows = int(np.prod(lead, dtype=np.int64))
    close(dx, rdx, dtype, n_out, "dx")
    close(dw, rdw, dtype, n_rows, "dw")
    if use_bias:
        close(db, rdb, dtype, n_rows, "db")
    else:
        assert db is None


def test_gradient_by_finite_differences(gemm_path):
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    dy = rng.standard_normal((2, 3, 4))
    loss = lambda: float((linear(x, w, b) * dy).sum())
    dx, dw, db = linear_backward(dy, x, w)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_threaded_shapes(gemm_path, dtype):
    # Several row chunks and column tiles of the bias-gradient sum, and GEMM
    # sizes above every blocking parameter of the fallback.
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (600, 300), dtype), rand(rng, (700, 300), dtype), rand(rng, (700,), dtype)
    dy = rand(rng, (600, 700), dtype)
    f64 = lambda a: a.astype(np.float64)
    close(linear(x, w, b), ref.linear(f64(x), f64(w), f64(b)), dtype, 300)
    dx, dw, db = linear_backward(dy, x, w)
    rdx, rdw, rdb = ref.linear_backward(f64(dy), f64(x), f64(w))
    close(dx, rdx, dtype, 700)
    close(dw, rdw, dtype, 600)
    close(db, rdb, dtype, 600)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_independent(dtype):
    # Bitwise equal results for 1 and 2 threads: the C fallback GEMM splits
    # only rows of C, and the bias sum uses fixed chunks.
    rng = np.random.default_rng(4)
    x, w, b = rand(rng, (777, 129), dtype), rand(rng, (515, 129), dtype), rand(rng, (515,), dtype)
    dy = rand(rng, (777, 515), dtype)
    had_blas, threads = _core.blas_available(), pytransformer.get_num_threads()
    pytransformer.use_blas(False)
    try:
        results = []
        for n in (1, 2, 3):
            pytransformer.set_num_threads(n)
            results.append((linear(x, w, b),) + linear_backward(dy, x, w))
    finally:
        pytransformer.set_num_threads(threads)
        pytransformer.use_blas(had_blas)
    for r in results[1:]:
        for a, e in zip(r, results[0]):
            np.testing.assert_array_equal(a, e)


FORWARD_PATHS = {   # (PT_LINEAR_SWAP_ROWS, PT_LINEAR_DOT_ROWS): force one forward path
    "direct": ("0", "0"), "swapped": ("1000000", "0"), "dot": ("0", "1000000"),
    "default": ("", "")}


@pytest.fixture(autouse=True)
def _reread_thresholds():
    # The thresholds are read once, with the dispatch table (csrc/dispatch.c):
    # force_path re-reads them; after the test (and monkeypatch's undo) the
    # table is re-read from the restored environment.
    yield
    _core._reinit_isa()


def force_path(monkeypatch, name):
    swap, dot = FORWARD_PATHS[name]
    monkeypatch.setenv("PT_LINEAR_SWAP_ROWS", swap)
    monkeypatch.setenv("PT_LINEAR_DOT_ROWS", dot)
    _core._reinit_isa()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_bias", [True, False])
def test_forward_paths_agree(gemm_path, dtype, use_bias, monkeypatch):
    # Few rows take other paths: y^T = w x^T with a BLAS (scratch +
    # transpose; in place for one row) below 128 rows, and the float32
    # AVX2 dot-product kernel up to 20 rows (3 x 4 tiles, 64-row blocks of
    # w, k in 8 lanes with a masked tail). Each, forced through the
    # environment, must agree with the others and the reference around the
    # cut-overs and the tile edges; a NaN in a row of x must land in that row
    # of y only.
    rng = np.random.default_rng(7)
    f64 = lambda a: None if a is None else a.astype(np.float64)
    for n_rows, n_in, n_out in [(1, 37, 53), (2, 384, 129), (3, 8, 4), (4, 7, 3),
                                (17, 128, 384), (19, 9, 65), (20, 13, 67), (21, 1, 5),
                                (127, 65, 40), (128, 33, 17), (129, 20, 31)]:
        x, w = rand(rng, (n_rows, n_in), dtype), rand(rng, (n_out, n_in), dtype)
        b = rand(rng, (n_out,), dtype) if use_bias else None
        x[n_rows // 2, n_in // 3] = np.nan
        out = {}
        for mode in FORWARD_PATHS:
            force_path(monkeypatch, mode)
            out[mode] = linear(x, w, b)
        expect = ref.linear(f64(x), f64(w), f64(b))
        nan_row = np.zeros(n_rows, bool)
        nan_row[n_rows // 2] = True
        for mode, y in out.items():
            assert np.isnan(y[nan_row]).all(), mode
            assert not np.isnan(y[~nan_row]).any(), mode
            close(y[~nan_row], expect[~nan_row], dtype, n_in, f"{mode} {n_rows}x{n_in}->{n_out}")
        for mode in ("swapped", "dot"):
            close(out[mode][~nan_row], out["direct"][~nan_row], dtype, n_in, mode)


def test_dot_path_thread_count_independent(monkeypatch):
    # The dot kernel splits blocks of w rows between threads; every output
    # is one thread's fixed-order sum, so 1, 2 and 3 threads agree bitwise.
    rng = np.random.default_rng(8)
    x, w = rand(rng, (20, 385), np.float32), rand(rng, (1000, 385), np.float32)
    b = rand(rng, (1000,), np.float32)
    force_path(monkeypatch, "dot")
    threads = pytransformer.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            pytransformer.set_num_threads(n)
            results.append(linear(x, w, b))
    finally:
        pytransformer.set_num_threads(threads)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_zero_sizes(gemm_path):
    w, b = np.ones((3, 4)), np.arange(3.0)
    assert linear(np.zeros((0, 4)), w, b).shape == (0, 3)
    # IN = 0: y is the bias broadcast (or zeros).
    np.testing.assert_array_equal(linear(np.zeros((2, 0)), np.zeros((3, 0)), b), [b, b])
    np.testing.assert_array_equal(linear(np.zeros((2, 0)), np.zeros((3, 0))), np.zeros((2, 3)))
    assert linear(np.ones((2, 4)), np.zeros((0, 4))).shape == (2, 0)
    dx, dw, db = linear_backward(np.zeros((2, 0)), np.ones((2, 4)), np.zeros((0, 4)))
    assert dx.shape == (2, 4) and not dx.any() and dw.shape == (0, 4) and db.shape == (0,)
    dx, dw, db = linear_backward(np.zeros((0, 3)), np.zeros((0, 4)), w)
    assert dx.shape == (0, 4) and not dw.any() and not db.any()


def test_out_and_1d_and_noncontiguous():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((6, 10)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    xs = x[:, ::2]
    out = np.empty((6, 3))
    assert linear(xs, w, b, out=out) is out
    np.testing.assert_allclose(out, xs @ w.T + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(linear(x[0, :5], w), x[0, :5] @ w.T, rtol=1e-12, atol=1e-12)


def test_nan_propagates():
    x = np.ones((2, 3))
    x[1, 2] = np.nan
    y = linear(x, np.ones((4, 3)), np.zeros(4))
    assert np.isnan(y[1]).all() and not np.isnan(y[0]).any()


def test_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"weight: expected shape \(OUT, 64\) to match x's "
                                         r"last dim 64, got \(32, 63\)"):
        linear(np.ones((2, 64), np.float32), np.ones((32, 63), np.float32))


@pytest.mark.parametrize("bad, err, match", [
    (lambda x, w: linear(x.tolist(), w), TypeError, "x"),
    (lambda x, w: linear(x.astype(np.int32), w), TypeError, "x"),
    (lambda x, w: linear(x, w.astype(np.float64)), TypeError, "weight"),
    (lambda x, w: linear(x, w[0]), ValueError, "weight"),
    (lambda x, w: linear(x, None), TypeError, "weight"),
    (lambda x, w: linear(x, w, np.ones(4, np.float32)), ValueError, "bias"),
    (lambda x, w: linear(x, w, np.ones(3, np.float64)), TypeError, "bias"),
    (lambda x, w: linear(x, w, out=np.empty((2, 4), np.float32)), ValueError, "out"),
    (lambda x, w: linear(x, w, out=np.empty((2, 3), np.float64)), TypeError, "out"),
    (lambda x, w: linear(np.float32(1.0), w), TypeError, "x"),
    (lambda x, w: linear(np.ones((), np.float32), w), ValueError, "x"),
    (lambda x, w: linear_backward(np.ones((2, 4), np.float32), x, w), ValueError, "grad_out"),
    (lambda x, w: linear_backward(np.ones((2, 3)), x, w), TypeError, "grad_out"),
])
def test_bad_input_raises(bad, err, match):
    with pytest.raises(err, match=match):
        bad(np.ones((2, 5), np.float32), np.ones((3, 5), np.float32))
