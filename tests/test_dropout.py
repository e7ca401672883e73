"""dropout: reproducible counter-based mask, scaling, backward."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import pytransformer.reference._dropout as ref
from pytransformer import _core
from pytransformer.ops._dropout import dropout, dropout_backward, dropout_forward
from tests.helpers import DTYPES, assert_close, dtypes, numeric_grad, rand, seeds


def _with_threads(n, f):
    old = _core.get_num_threads()
    _core.set_num_threads(n)
    try:
        return f()
    finally:
        _core.set_num_threads(old)


@given(n=st.integers(0, 3000), p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]),
       dtype=dtypes, seed=seeds)
def test_forward_backward_match_reference(n, p, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (n,), dtype)
    y, mask = dropout_forward(x, p, seed=seed)
    if p == 0:
        assert mask is None and y is x
        return
    assert mask.dtype == np.uint8 and mask.shape == x.shape and y.dtype == dtype
    # The C mask is bit-identical to the NumPy re-implementation of splitmix64.
    np.testing.assert_array_equal(mask, ref.dropout_mask(x.shape, p, seed))
    assert_close(y, ref.dropout(x, mask, p), dtype)
    dy = rand(rng, x.shape, dtype)
    assert_close(dropout_backward(dy, mask, p), ref.dropout_backward(dy, mask, p), dtype)


def test_reproducible_and_seed_dependent():
    x = np.ones((64, 100), np.float32)
    a = dropout_forward(x, 0.3, seed=7)[1]
    b = dropout_forward(x, 0.3, seed=7)[1]
    c = dropout_forward(x, 0.3, seed=8)[1]
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.3               # ~ 2 p (1 - p) = 0.42 differ
    # A mask is a function of (seed, flat index): a prefix is a prefix.
    d = dropout_forward(np.ones(1000, np.float32), 0.3, seed=7)[1]
    np.testing.assert_array_equal(d, a.reshape(-1)[:1000])
    # Seeds near 2**64 work.
    dropout(x, 0.3, seed=2**64 - 1)


def test_independent_of_thread_count():
    x = np.random.default_rng(0).standard_normal(300_001).astype(np.float32)
    y1, m1 = _with_threads(1, lambda: dropout_forward(x, 0.25, seed=123))
    y2, m2 = _with_threads(2, lambda: dropout_forward(x, 0.25, seed=123))
    y3, m3 = _with_threads(3, lambda: dropout_forward(x, 0.25, seed=123))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(m1, m3)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y3)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.8, 0.99])
def test_keep_fraction_and_expectation(p):
    n = 100_000
    x = np.full(n, 2.0, np.float64)
    y, mask = dropout_forward(x, p, seed=int(p * 1000))
    # Binomial(n, 1-p): 5 standard deviations.
    sd = np.sqrt(n * p * (1 - p))
    assert abs(mask.sum() - n * (1 - p)) < 5 * sd
    # E[y] = x: the sample mean within 5 standard errors (y/2 = keep/(1-p)).
    se = 2.0 * np.sqrt(p / (1 - p) / n)
    assert abs(y.mean() - 2.0) < 5 * se
    # Kept values are exactly x / (1 - p), dropped ones exactly 0.
    np.testing.assert_allclose(y[mask == 1], 2.0 / (1 - p), rtol=1e-15)
    assert not y[mask == 0].any()


def test_independent_elements():
    # Neighbouring elements are uncorrelated (a weak check on the hash).
    m = dropout_forward(np.ones(200_000), 0.5, seed=1)[1].astype(np.float64)
    r = np.corrcoef(m[:-1], m[1:])[0, 1]
    assert abs(r) < 5 / np.sqrt(m.size)


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_edges_training_and_ieee(dtype):
    x = np.array([1.0, -2.0, np.nan, np.inf], dtype)
    y, mask = dropout_forward(x, 1.0)
    assert not mask.any()
    np.testing.assert_array_equal(y[:2], [0, 0])
    assert np.isnan(y[2]) and np.isnan(y[3])         # 0 * NaN, 0 * Inf, as in torch
    assert dropout(x, 0.0) is x
    y, mask = dropout_forward(x, 0.7, training=False)
    assert y is x and mask is None
    out = np.empty_like(x)
    assert dropout(x, 0.5, training=False, out=out) is out
    np.testing.assert_array_equal(out, x)
    assert dropout_backward(x, None, 0.5) is x


@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_out_and_bool_mask(dtype):
    rng = np.random.default_rng(4)
    x = rand(rng, (3, 0, 5), dtype)
    y, mask = dropout_forward(x, 0.5)
    assert y.shape == x.shape and mask.shape == x.shape
    x0 = np.array(3.0, dtype)
    y0, m0 = dropout_forward(x0, 0.5, seed=3)
    assert y0.shape == () and m0.shape == ()
    x = rand(rng, (4, 6, 8), dtype)[:, ::2]          # non-contiguous: copied
    out = np.empty((4, 3, 8), dtype)
    y, mask = dropout_forward(x, 0.4, seed=5, out=out)
    assert y is out
    assert_close(y, ref.dropout(np.ascontiguousarray(x), mask, 0.4), dtype)
    dx = dropout_backward(x, mask.astype(bool), 0.4)
    assert_close(dx, ref.dropout_backward(np.ascontiguousarray(x), mask, 0.4), dtype)


def test_gradient_by_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5))
    dy = rng.standard_normal((4, 5))
    loss = lambda: float((dropout(x, 0.3, seed=9) * dy).sum())
    _, mask = dropout_forward(x, 0.3, seed=9)
    np.testing.assert_allclose(dropout_backward(dy, mask, 0.3), numeric_grad(loss, x),
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("bad, err, match", [
    (lambda x: dropout(x.tolist()), TypeError, "x"),
    (lambda x: dropout(x.astype(np.int32)), TypeError, "x"),
    (lambda x: dropout(x, p=-0.1), ValueError, "p"),
    (lambda x: dropout(x, p=1.5), ValueError, "p"),
    (lambda x: dropout(x, p=float("nan")), ValueError, "p"),
    (lambda x: dropout(x, seed=-1), ValueError, "seed"),
    (lambda x: dropout(x, seed=2**64), ValueError, "seed"),
    (lambda x: dropout(x, seed=1.5), TypeError, "seed"),
    (lambda x: dropout(x, out=np.empty((2, 5), np.float32)), ValueError, "out"),
    (lambda x: dropout(x, out=np.empty((2, 4), np.float64)), TypeError, "out"),
    (lambda x: dropout_backward(x, np.ones((2, 5), np.uint8), 0.5), ValueError, "mask"),
    (lambda x: dropout_backward(x, np.ones((2, 4), np.int64), 0.5), TypeError, "mask"),
    (lambda x: dropout_backward(x, np.ones((2, 4), np.uint8), 2.0), ValueError, "p"),
])
def test_bad_input_raises(bad, err, match):
    with pytest.raises(err, match=match):
        bad(np.ones((2, 4), np.float32))
