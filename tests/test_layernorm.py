"""layer_norm: forward and backward against the NumPy reference."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer import reference as ref
from pytransformer.ops._layernorm import layer_norm, layer_norm_backward, layer_norm_forward
from tests.helpers import assert_close, dims, dtypes, numeric_grad, rand, seeds, small_dims


@given(n=small_dims, c=dims, dtype=dtypes, affine=st.booleans(), seed=seeds)
def test_forward_backward_match_reference(n, c, dtype, affine, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (2, n, c), dtype, scale=3.0) + 1.5
    w = rand(rng, (c,), dtype) if affine else None
    b = rand(rng, (c,), dtype) if affine else None
    dy = rand(rng, x.shape, dtype)
    y, mean, rstd = layer_norm_forward(x, w, b, eps=1e-5)
    assert y.dtype == dtype and mean.shape == (2, n) and rstd.shape == (2, n)
    assert_close(y, ref.layer_norm(x, w, b, 1e-5), dtype, scale=10)
    dx, dw, db = layer_norm_backward(dy, x, w, mean, rstd)
    rdx, rdw, rdb = ref.layer_norm_backward(dy, x, w, 1e-5)
    assert_close(dx, rdx, dtype, grad=True, scale=10)
    if affine:
        assert_close(dw, rdw, dtype, grad=True, scale=10)
        assert_close(db, rdb, dtype, grad=True, scale=10)
    else:
        assert dw is None and db is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_mean_is_exact(dtype):
    # Rows whose mean is 1e4 and spread 1: E[x^2]-E[x]^2 would lose every
    # digit in float32; two passes keep them.
    rng = np.random.default_rng(0)
    x = (1e4 + rng.standard_normal((4, 512))).astype(dtype)
    y = layer_norm(x)
    x64 = x.astype(np.float64)
    expect = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expect, atol=1e-3 if dtype == np.float32 else 1e-9)


def test_gradient_by_finite_differences():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 6)), rng.standard_normal(6), rng.standard_normal(6)
    dy = rng.standard_normal((3, 6))
    loss = lambda: float((layer_norm(x, w, b) * dy).sum())
    y, mean, rstd = layer_norm_forward(x, w, b)
    dx, dw, db = layer_norm_backward(dy, x, w, mean, rstd)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-7)


def test_zero_rows_and_out():
    x = np.zeros((0, 4), np.float32)
    assert layer_norm(x).shape == (0, 4)
    x = np.ones((2, 4), np.float32)
    out = np.empty_like(x)
    assert layer_norm(x, out=out) is out


@pytest.mark.parametrize("bad, err", [
    (lambda x: layer_norm(x.tolist()), TypeError),
    (lambda x: layer_norm(x.astype(np.int32)), TypeError),
    (lambda x: layer_norm(x, weight=np.ones(3, np.float32)), ValueError),
    (lambda x: layer_norm(x, weight=np.ones(4, np.float64)), TypeError),
    (lambda x: layer_norm(x, out=np.empty((2, 5), np.float32)), ValueError),
    (lambda x: layer_norm(x, eps=-1.0), ValueError),
])
def test_bad_input_raises(bad, err):
    with pytest.raises(err):
        bad(np.ones((2, 4), np.float32))


def test_non_contiguous_input_is_copied():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]
    np.testing.assert_allclose(layer_norm(x), ref.layer_norm(np.ascontiguousarray(x)), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_results_do_not_depend_on_thread_count(dtype, affine):
    # Big enough to run in parallel and to split dw/db over several row
    # blocks, the last ending in a partial group of rows; C = 1003 is not a
    # multiple of the 16 summation lanes.
    import pytransformer
    rng = np.random.default_rng(3)
    x = rand(rng, (701, 1003), dtype) + 2.0
    dy = rand(rng, x.shape, dtype)
    w = rand(rng, (1003,), dtype) if affine else None
    b = rand(rng, (1003,), dtype) if affine else None
    old = pytransformer.get_num_threads()
    results = []
    try:
        for nt in (1, 2, 3):
            pytransformer.set_num_threads(nt)
            y, mean, rstd = layer_norm_forward(x, w, b)
            results.append((y, mean, rstd) + layer_norm_backward(dy, x, w, mean, rstd))
    finally:
        pytransformer.set_num_threads(old)
    for other in results[1:]:
        for a, e in zip(other, results[0]):
            if e is None:
                assert a is None
            else:
                np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_caller_buffers_are_written_and_returned(dtype):
    rng = np.random.default_rng(4)
    x = rand(rng, (3, 5, 33), dtype)
    w, b = rand(rng, (33,), dtype), rand(rng, (33,), dtype)
    dy = rand(rng, x.shape, dtype)
    y0, m0, r0 = layer_norm_forward(x, w, b)
    dx0, dw0, db0 = layer_norm_backward(dy, x, w, m0, r0)
    out = np.full_like(x, np.nan)
    m, r = np.full((3, 5), np.nan, dtype), np.full((3, 5), np.nan, dtype)
    y1, m1, r1 = layer_norm_forward(x, w, b, out=out, mean_out=m, rstd_out=r)
    assert y1 is out and m1 is m and r1 is r
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(m1, m0)
    np.testing.assert_array_equal(r1, r0)
    # grad_input is overwritten (whatever it held), not added to
    gi = np.full_like(x, np.nan)
    dx1, dw1, db1 = layer_norm_backward(dy, x, w, m0, r0, grad_input=gi)
    assert dx1 is gi
    np.testing.assert_array_equal(dx1, dx0)
    np.testing.assert_array_equal(dw1, dw0)
    np.testing.assert_array_equal(db1, db0)
    # in place: grad_input may be grad_out, and out may be x
    dy2 = dy.copy()
    dx2, dw2, _ = layer_norm_backward(dy2, x, w, m0, r0, grad_input=dy2)
    assert dx2 is dy2
    np.testing.assert_array_equal(dx2, dx0)
    np.testing.assert_array_equal(dw2, dw0)
    x2 = x.copy()
    assert layer_norm(x2, w, b, out=x2) is x2
    np.testing.assert_array_equal(x2, y0)


def test_core_backward_accumulates_when_asked():
    # The C kernel's accumulate=1 mode adds into dx (the ops use accumulate=0).
    from pytransformer import _core
    rng = np.random.default_rng(5)
    x = rand(rng, (40, 24), np.float32)
    dy, w = rand(rng, x.shape, np.float32), rand(rng, (24,), np.float32)
    _, mean, rstd = layer_norm_forward(x, w)
    dx0, _, _ = layer_norm_backward(dy, x, w, mean, rstd)
    dx = np.ones_like(x)
    _core.layernorm_backward(dx, None, None, dy, x, w, mean, rstd, True)
    np.testing.assert_array_equal(dx, np.float32(1) + dx0)


@pytest.mark.parametrize("bad, err", [
    (lambda x: layer_norm_forward(x, mean_out=np.empty(3, np.float32)), ValueError),
    (lambda x: layer_norm_forward(x, rstd_out=np.empty(2, np.float64)), TypeError),
    (lambda x: layer_norm_forward(x, mean_out=[0.0, 0.0]), TypeError),
    (lambda x: layer_norm_backward(x, x, None, *layer_norm_forward(x)[1:],
                                   grad_input=np.empty((2, 4), np.float64)), TypeError),
    (lambda x: layer_norm_backward(x, x, None, *layer_norm_forward(x)[1:],
                                   grad_input=np.empty((4, 2), np.float32)), ValueError),
    (lambda x: layer_norm_backward(x, x, None, *layer_norm_forward(x)[1:],
                                   grad_input=np.empty((2, 8), np.float32)[:, ::2]), ValueError),
])
def test_bad_buffers_raise(bad, err):
    with pytest.raises(err):
        bad(np.ones((2, 4), np.float32))
