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
