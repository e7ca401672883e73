"""softmax, log_softmax, cross_entropy: forward and backward against the
NumPy reference, special values, finite differences, threads, bad inputs.

Tolerances: the reference runs in float64 on the same inputs. float32
kernels use a ~2 ulp polynomial exp and round x - max, so forward values
are compared with rtol 2e-6 (about 16 ulp) plus a small atol; gradients
with the GRAD_TOL of tests.helpers. float64 uses libm exp: 1e-12.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pytransformer import _core
from pytransformer.ops._softmax import (
    cross_entropy, cross_entropy_backward, cross_entropy_forward, log_softmax,
    log_softmax_backward, softmax, softmax_backward)
from pytransformer.reference import _softmax as ref
from tests.helpers import assert_close, dims, dtypes, numeric_grad, rand, seeds, small_dims

TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
GTOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
scales = st.sampled_from([0.1, 1.0, 10.0, 100.0, 1e4])


def close(actual, expected, dtype, grad=False, scale=1.0):
    tol = dict((GTOL if grad else TOL)[np.dtype(dtype).type])
    tol["atol"] *= scale
    np.testing.assert_allclose(actual, expected, **tol)


def ref64(f, *arrays, **kw):
    """Reference in float64 on the (already rounded) inputs."""
    return f(*[a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays], **kw)


# ------------------------------------------------------------------ softmax

@given(lead=st.lists(small_dims, min_size=0, max_size=2), c=dims, dtype=dtypes,
       scale=scales, seed=seeds)
def test_softmax_matches_reference(lead, c, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, tuple(lead) + (c,), dtype, scale)
    y = softmax(x)
    assert y.dtype == dtype and y.shape == x.shape
    close(y, ref64(ref.softmax, x), dtype)
    np.testing.assert_allclose(y.sum(-1), 1, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-13)
    ly = log_softmax(x)
    # log_softmax values grow with the spread of x: compare relative to it
    close(ly, ref64(ref.log_softmax, x), dtype, scale=max(scale, 1.0))


@given(n=small_dims, c=dims, dtype=dtypes, scale=scales, seed=seeds)
def test_softmax_backward_matches_reference(n, c, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (n, c), dtype, scale)
    dy = rand(rng, (n, c), dtype)
    y = softmax(x)
    close(softmax_backward(dy, y), ref64(ref.softmax_backward, dy, y), dtype, grad=True)
    ly = log_softmax(x)
    close(log_softmax_backward(dy, ly), ref64(ref.log_softmax_backward, dy, ly), dtype,
          grad=True, scale=np.sqrt(c))


@given(n=small_dims, c=dims, dtype=dtypes, shift=st.sampled_from([-1e3, -7.5, 3.0, 1e3]),
       seed=seeds)
def test_shift_invariance(n, c, dtype, shift, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (n, c), np.float64, 3.0)
    a, b = x.astype(dtype), (x + shift).astype(dtype)
    # x + shift rounds differently in float32; 1e3 has ulp 6e-5
    tol = dict(rtol=5e-4, atol=5e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(softmax(a), softmax(b), **tol)
    np.testing.assert_allclose(log_softmax(a), log_softmax(b), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1],
                  [-1e4, -1e4 + 2, -1e4, -1e4],
                  [-np.inf, 0.0, 1.0, -np.inf],
                  [-np.inf] * 4,
                  [-1e4, 1e4, -np.inf, 1e4]], dtype)
    y, ly = softmax(x), log_softmax(x)
    assert not np.isnan(y).any() and not np.isnan(ly).any()
    close(y, ref.softmax(x.astype(np.float64)), dtype)
    np.testing.assert_allclose(ly, ref.log_softmax(x.astype(np.float64)), rtol=1e-6)
    np.testing.assert_array_equal(y[3], 0)              # all -inf row: zeros
    np.testing.assert_array_equal(ly[3], -np.inf)       # ... and -inf
    assert y[2, 0] == 0 and ly[2, 0] == -np.inf
    np.testing.assert_allclose(y[[0, 1, 2, 4]].sum(-1), 1, atol=1e-6)
    e = np.exp(1.0)
    np.testing.assert_allclose(y[0], [e / (1 + e), 0, 0, 1 / (1 + e)], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_propagate(dtype):
    x = np.array([[0.0, np.nan, 1.0], [np.nan, 0.0, 1.0], [-np.inf, -np.inf, np.nan],
                  [np.inf, 0.0, 1.0], [np.inf, np.inf, 0.0], [0.0, 1.0, 2.0]], dtype)
    for y in (softmax(x), log_softmax(x)):
        assert np.isnan(y[:5]).all()        # NaN or +inf anywhere: whole row NaN
        assert np.isfinite(y[5]).all()      # other rows unaffected
    loss = cross_entropy(x, np.array([0, 0, 0, 1, 2, 2]), reduction="none")
    assert np.isnan(loss[:5]).all() and np.isfinite(loss[5])


def test_softmax_out_and_in_place():
    rng = np.random.default_rng(0)
    x = rand(rng, (3, 7), np.float32)
    expect = softmax(x)
    out = np.empty_like(x)
    assert softmax(x, out=out) is out
    np.testing.assert_array_equal(out, expect)
    lexpect = log_softmax(x)
    assert log_softmax(x, out=x) is x
    np.testing.assert_array_equal(x, lexpect)


def test_backward_out_is_overwritten():
    rng = np.random.default_rng(1)
    x, dy = rand(rng, (4, 9), np.float32), rand(rng, (4, 9), np.float32)
    t = np.array([0, 8, -100, 3])
    _, lse = cross_entropy_forward(x, t)
    for f, args in ((softmax_backward, (dy, softmax(x))),
                    (log_softmax_backward, (dy, log_softmax(x))),
                    (cross_entropy_backward, (1.0, x, t, lse))):
        out = np.full_like(x, 7.0)              # stale contents must not leak in
        assert f(*args, out=out) is out
        np.testing.assert_array_equal(out, f(*args))
    with pytest.raises(ValueError, match="out"):
        softmax_backward(dy, x, out=np.empty((4, 8), np.float32))


def test_zero_sized():
    for shape in [(0, 5), (3, 0), (2, 0, 4)]:
        x = np.zeros(shape, np.float32)
        assert softmax(x).shape == shape and log_softmax(x).shape == shape
        assert softmax_backward(x, x).shape == shape
    loss, lse = cross_entropy_forward(np.zeros((0, 5)), np.zeros(0, np.int64), reduction="none")
    assert loss.shape == (0,) and lse.shape == (0,)
    assert np.isnan(cross_entropy(np.zeros((0, 5)), np.zeros(0, np.int64)))   # 0/0 like torch
    assert cross_entropy(np.zeros((0, 5)), np.zeros(0, np.int64), reduction="sum") == 0
    # C == 0: only ignored rows are possible
    assert cross_entropy(np.zeros((2, 0)), np.full(2, -100), reduction="sum") == 0


def test_non_contiguous_input_is_copied():
    rng = np.random.default_rng(2)
    x = rand(rng, (6, 16), np.float32)[:, ::2]
    close(softmax(x), ref.softmax(np.ascontiguousarray(x, np.float64)), np.float32)


# ------------------------------------------------------------ cross-entropy

@given(lead=st.lists(small_dims, min_size=1, max_size=2), c=dims, dtype=dtypes, scale=scales,
       ls=st.sampled_from([0.0, 0.1, 1.0]), reduction=st.sampled_from(["mean", "sum", "none"]),
       frac_ignored=st.sampled_from([0.0, 0.3, 1.0]), seed=seeds)
def test_cross_entropy_matches_reference(lead, c, dtype, scale, ls, reduction, frac_ignored, seed):
    rng = np.random.default_rng(seed)
    lead = tuple(lead)
    x = rand(rng, lead + (c,), dtype, scale)
    t = rng.integers(0, c, lead)
    t[rng.random(lead) < frac_ignored] = -100
    loss, lse = cross_entropy_forward(x, t, label_smoothing=ls, reduction=reduction)
    expect = ref64(ref.cross_entropy, x, t, label_smoothing=ls, reduction=reduction)
    assert loss.dtype == dtype and loss.shape == expect.shape
    # loss ~ spread of the logits; sums grow with the row count
    rows = max(1, int(np.prod(lead)))
    close(loss, expect, dtype, scale=max(scale, 1.0) * (rows if reduction == "sum" else 1))
    close(lse, ref64(ref.logsumexp, x), dtype, scale=max(scale, 1.0))
    g = rand(rng, lead, dtype) if reduction == "none" else np.asarray(1.7, dtype)
    d = cross_entropy_backward(g, x, t, lse, label_smoothing=ls, reduction=reduction)
    assert d.dtype == dtype and d.shape == x.shape
    close(d, ref64(ref.cross_entropy_backward, g, x, t, label_smoothing=ls, reduction=reduction),
          dtype, grad=True)
    assert not d[t == -100].any()


def test_cross_entropy_all_ignored_is_nan_for_mean():
    x = np.ones((3, 4), np.float32)
    t = np.full(3, -100)
    loss, lse = cross_entropy_forward(x, t)
    assert np.isnan(loss)                                   # PyTorch: 0/0
    assert cross_entropy(x, t, reduction="sum") == 0
    np.testing.assert_array_equal(cross_entropy(x, t, reduction="none"), 0)
    np.testing.assert_array_equal(cross_entropy_backward(1.0, x, t, lse), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_extreme_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4 - 1], [-np.inf, 0.0, 0.0],
                  [-np.inf, -np.inf, -np.inf], [-1e4, -1e4, -1e4]], dtype)
    t = np.array([0, 2, 1, 0, 1])
    loss, lse = cross_entropy_forward(x, t, reduction="none")
    e = np.log1p(np.exp(-1.0))
    expect = [0.0, 1 + e, np.log(2), np.inf, np.log(3)]
    np.testing.assert_allclose(loss, expect, rtol=1e-6, atol=1e-6)
    assert lse[3] == -np.inf
    # target at a -inf logit: +inf loss; smoothing over a -inf logit: +inf
    assert cross_entropy(x[2:3], np.array([0]), reduction="sum") == np.inf
    assert cross_entropy(x[2:3], np.array([1]), label_smoothing=0.1) == np.inf
    d = cross_entropy_backward(1.0, x, t, lse, reduction="sum")
    assert np.isfinite(d).all()
    np.testing.assert_allclose(d, ref.cross_entropy_backward(1.0, x.astype(np.float64), t,
                                                             reduction="sum"), atol=1e-6)
    # the gradient is exact although lse (about 1e4) is rounded to float32
    p = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(d[1], [0, p, -p], atol=1e-7)


def test_cross_entropy_ignore_index_choices():
    rng = np.random.default_rng(3)
    x = rand(rng, (6, 5), np.float64)
    t = np.array([0, 1, 2, 3, 4, 0])
    for ii in (0, 4, -1, 7):
        loss = cross_entropy(x, t, ignore_index=ii, reduction="none")
        np.testing.assert_allclose(loss, ref.cross_entropy(x, t, ignore_index=ii, reduction="none"))
        assert (loss[t == ii] == 0).all()


def test_cross_entropy_grad_loss_forms():
    rng = np.random.default_rng(4)
    x, t = rand(rng, (4, 6), np.float32), np.array([1, 2, -100, 5])
    _, lse = cross_entropy_forward(x, t)
    a = cross_entropy_backward(2.0, x, t, lse)
    b = cross_entropy_backward(np.float32(2.0), x, t, lse)
    c = cross_entropy_backward(np.array(2.0, np.float32), x, t, lse)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


# ---------------------------------------------------- finite differences

def test_softmax_gradients_by_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7)) * 2
    dy = rng.standard_normal((3, 7))
    for fwd, bwd in ((softmax, softmax_backward), (log_softmax, log_softmax_backward)):
        loss = lambda: float((fwd(x) * dy).sum())
        np.testing.assert_allclose(bwd(dy, fwd(x)), numeric_grad(loss, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("ls", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradient_by_finite_differences(ls, reduction):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 6)) * 2
    t = np.array([0, 5, -100, 3, 3])
    w = rng.standard_normal(5)

    def scalar(loss):
        return float((loss * w).sum()) if reduction == "none" else float(loss) * 1.3

    f = lambda: scalar(cross_entropy(x, t, label_smoothing=ls, reduction=reduction))
    _, lse = cross_entropy_forward(x, t, label_smoothing=ls, reduction=reduction)
    g = w if reduction == "none" else 1.3
    d = cross_entropy_backward(g, x, t, lse, label_smoothing=ls, reduction=reduction)
    np.testing.assert_allclose(d, numeric_grad(f, x), rtol=1e-6, atol=1e-8)
    assert not d[2].any()


# ----------------------------------------------------------------- threads

@settings(max_examples=5)
@given(dtype=dtypes, seed=seeds)
def test_thread_count_does_not_change_results(dtype, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (67, 1031), dtype, 5.0)           # above the parallel threshold
    t = rng.integers(0, 1031, 67)
    t[::7] = -100
    dy = rand(rng, x.shape, dtype)
    g = rand(rng, (67,), dtype)

    def run():
        y, ly = softmax(x), log_softmax(x)
        loss, lse = cross_entropy_forward(x, t, label_smoothing=0.1, reduction="none")
        return (y, ly, softmax_backward(dy, y), log_softmax_backward(dy, ly), loss, lse,
                cross_entropy_backward(g, x, t, lse, label_smoothing=0.1, reduction="none"),
                cross_entropy(x, t), cross_entropy(x, t, reduction="sum"))

    old = _core.get_num_threads()
    try:
        _core.set_num_threads(1)
        one = run()
        _core.set_num_threads(2)
        two = run()
    finally:
        _core.set_num_threads(old)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------- bad input

X = np.zeros((3, 4), np.float32)
T = np.array([0, 1, 3])


@pytest.mark.parametrize("call, err, match", [
    (lambda: softmax(X.tolist()), TypeError, "x"),
    (lambda: softmax(X.astype(np.float16)), TypeError, "float16"),
    (lambda: log_softmax(X.astype(np.int32)), TypeError, "x"),
    (lambda: softmax(np.float32(1.0)), TypeError, "x"),
    (lambda: softmax(np.zeros((), np.float32)), ValueError, "x"),
    (lambda: softmax(X, out=np.empty((3, 5), np.float32)), ValueError, "out"),
    (lambda: softmax(X, out=np.empty((3, 4), np.float64)), TypeError, "out"),
    (lambda: softmax_backward(X, X.astype(np.float64)), TypeError, "grad_out"),
    (lambda: softmax_backward(X[:2], X), ValueError, "grad_out"),
    (lambda: cross_entropy(X.tolist(), T), TypeError, "logits"),
    (lambda: cross_entropy(X.astype(np.float16), T), TypeError, "float16"),
    (lambda: cross_entropy(X, T.tolist()), TypeError, "targets"),
    (lambda: cross_entropy(X, T.astype(np.float32)), TypeError, "targets"),
    (lambda: cross_entropy(X, np.array([0, 4, 5])), ValueError, "value 4"),
    (lambda: cross_entropy(X, np.array([0, -1, 1])), ValueError, "value -1"),
    (lambda: cross_entropy(X, np.array([0, 1])), ValueError, "targets"),
    (lambda: cross_entropy(X, np.array([[0, 1, 2]])), ValueError, "targets"),
    (lambda: cross_entropy(X, T, label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: cross_entropy(X, T, label_smoothing=-0.1), ValueError, "label_smoothing"),
    (lambda: cross_entropy(X, T, label_smoothing=float("nan")), ValueError, "label_smoothing"),
    (lambda: cross_entropy(X, T, reduction="avg"), ValueError, "reduction"),
    (lambda: cross_entropy(X, T, ignore_index=1.5), TypeError, "ignore_index"),
    (lambda: cross_entropy_backward(1.0, X, T, np.zeros(3, np.float64)), TypeError, "lse"),
    (lambda: cross_entropy_backward(1.0, X, T, np.zeros(2, np.float32)), ValueError, "lse"),
    (lambda: cross_entropy_backward(np.ones(3, np.float32), X, T, np.zeros(3, np.float32)),
     ValueError, "grad_loss"),
    (lambda: cross_entropy_backward([1.0], X, T, np.zeros(3, np.float32)), TypeError, "grad_loss"),
    (lambda: cross_entropy_backward(np.ones(2, np.float32), X, T, np.zeros(3, np.float32),
                                    reduction="none"), ValueError, "grad_loss"),
])
def test_bad_input_raises(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_core_rejects_bad_targets_without_crashing():
    # Target values are no array property: the C kernel checks them (the
    # binding passes them through), writing nothing for a bad one.
    loss, lse = np.empty(3, np.float32), np.empty(3, np.float32)
    with pytest.raises(ValueError, match="targets"):
        _core.cross_entropy_forward(loss, lse, X, np.array([0, 9, 1]), -100, 0.0)
    with pytest.raises(ValueError, match="targets"):
        _core.cross_entropy_backward(np.zeros_like(X), X, lse, np.array([0, -5, 1]),
                                     np.ones(3, np.float32), -100, 0.0)
