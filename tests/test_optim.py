"""adamw_step against the NumPy reference and a hand-computed step."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import pytransformer.reference._optim as ref
from pytransformer import _core
from pytransformer.ops._optim import adamw_step
from tests.helpers import DTYPES, dtypes, rand, seeds

# The kernel computes the per-step constants in double and each element in
# the parameter's dtype (float32 math for float32, as PyTorch); the reference
# computes in float64, so allow a few float32 ulps relative to the state scale.
TOL = {np.float32: dict(rtol=2e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}


@given(n=st.integers(0, 300), dtype=dtypes, seed=seeds,
       lr=st.sampled_from([1e-3, 0.1]), wd=st.sampled_from([0.0, 1e-2, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.8, 0.95), (0.0, 0.5)]))
def test_several_steps_match_reference(n, dtype, seed, lr, wd, betas):
    rng = np.random.default_rng(seed)
    p = rand(rng, (n,), dtype)
    m = np.zeros(n, dtype)
    v = np.zeros(n, dtype)
    rp, rm, rv = p.copy(), m.copy(), v.copy()
    for step in range(1, 6):
        g = rand(rng, (n,), dtype, scale=0.1 * step)
        adamw_step(p, g, m, v, step, lr=lr, betas=betas, eps=1e-8, weight_decay=wd)
        rp, rm, rv = ref.adamw_step(rp, g, rm, rv, step, lr=lr, betas=betas, eps=1e-8,
                                    weight_decay=wd)
        np.testing.assert_allclose(m, rm, **TOL[dtype])
        np.testing.assert_allclose(v, rv, **TOL[dtype])
        np.testing.assert_allclose(p, rp, **TOL[dtype])


def test_first_step_by_hand():
    # step 1: m = (1-b1) g, v = (1-b2) g^2, m_hat = g, v_hat = g^2, so
    # p = p (1 - lr wd) - lr g / (|g| + eps).
    p = np.array([1.0, -2.0, 0.5, 3.0])
    g = np.array([0.5, -0.25, 0.0, 4.0])
    m, v = np.zeros(4), np.zeros(4)
    lr, wd, eps = 0.1, 0.01, 1e-8
    adamw_step(p, g, m, v, 1, lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=wd)
    expect = [1.0 * (1 - lr * wd) - lr * 0.5 / (0.5 + eps),
              -2.0 * (1 - lr * wd) + lr * 0.25 / (0.25 + eps),
              0.5 * (1 - lr * wd),
              3.0 * (1 - lr * wd) - lr * 4.0 / (4.0 + eps)]
    np.testing.assert_allclose(p, expect, rtol=1e-14)
    np.testing.assert_allclose(m, 0.1 * g, rtol=1e-14)
    np.testing.assert_allclose(v, 0.001 * g * g, rtol=1e-12)
    # A second step, by hand for one element.
    g2 = np.array([1.0, 0, 0, 0])
    p0, m0, v0 = p[0], m[0], v[0]
    adamw_step(p, g2, m, v, 2, lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=wd)
    m1 = 0.9 * m0 + 0.1 * 1.0
    v1 = 0.999 * v0 + 0.001 * 1.0
    p1 = p0 * (1 - lr * wd) - lr * (m1 / (1 - 0.9 ** 2)) / (math.sqrt(v1 / (1 - 0.999 ** 2)) + eps)
    np.testing.assert_allclose([p[0], m[0], v[0]], [p1, m1, v1], rtol=1e-14)


def test_independent_of_thread_count():
    rng = np.random.default_rng(0)
    n = 200_003
    base = [rand(rng, (n,), np.float32) for _ in range(2)] + [np.abs(rand(rng, (n,), np.float32))]
    g = rand(rng, (n,), np.float32)
    results = []
    old = _core.get_num_threads()
    try:
        for nt in (1, 2, 3):
            _core.set_num_threads(nt)
            p, m, v = (a.copy() for a in base)
            adamw_step(p, g, m, v, 3)
            results.append((p, m, v))
    finally:
        _core.set_num_threads(old)
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_shapes_and_non_contiguous_grad(dtype):
    rng = np.random.default_rng(2)
    p = rand(rng, (6, 4), dtype)                     # any shape, treated as flat
    m, v = np.zeros_like(p), np.zeros_like(p)
    g = rand(rng, (6, 8), dtype)[:, ::2]             # copied
    rp, rm, rv = ref.adamw_step(p, np.ascontiguousarray(g), m, v, 1)
    assert adamw_step(p, g, m, v, 1) is None
    np.testing.assert_allclose(p, rp, **TOL[dtype])
    np.testing.assert_allclose(m, rm, **TOL[dtype])
    np.testing.assert_allclose(v, rv, **TOL[dtype])
    e = np.zeros(0, dtype)
    adamw_step(e, e.copy(), e.copy(), e.copy(), 1)


def test_nan_grad_propagates_and_zero_lr_is_identity():
    p, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    adamw_step(p, np.array([np.nan, 1.0, 1.0]), m, v, 1)
    assert np.isnan(p[0]) and np.isnan(m[0]) and np.isfinite(p[1:]).all()
    p = np.ones(3)
    adamw_step(p, np.ones(3), np.zeros(3), np.zeros(3), 1, lr=0.0)
    np.testing.assert_array_equal(p, 1.0)


def _bufs(dtype=np.float32, n=4):
    return np.ones(n, dtype), np.ones(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)


def _readonly():
    p, g, m, v = _bufs()
    p.flags.writeable = False
    return p, g, m, v


@pytest.mark.parametrize("make, kw, err, match", [
    (lambda: _bufs(), dict(step=0), ValueError, "step"),
    (lambda: _bufs(), dict(step=1.0), TypeError, "step"),
    (lambda: _bufs(), dict(lr=-1e-3), ValueError, "lr"),
    (lambda: _bufs(), dict(lr=float("nan")), ValueError, "lr"),
    (lambda: _bufs(), dict(betas=(1.0, 0.999)), ValueError, "betas"),
    (lambda: _bufs(), dict(betas=(0.9, -0.1)), ValueError, "betas"),
    (lambda: _bufs(), dict(eps=-1.0), ValueError, "eps"),
    (lambda: _bufs(), dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: _bufs(np.int32), {}, TypeError, "param"),
    (lambda: _bufs()[:3] + (np.zeros(4, np.float64),), {}, TypeError, "exp_avg_sq"),
    (lambda: _bufs()[:2] + (np.zeros(5, np.float32), np.zeros(4, np.float32)),
     {}, ValueError, "exp_avg"),
    (lambda: (np.ones(8, np.float32)[::2],) + _bufs()[1:], {}, ValueError, "C-contiguous"),
    (lambda: _readonly(), {}, ValueError, "writable"),
    (lambda: (np.ones(4, np.float32).tolist(),) + _bufs()[1:], {}, TypeError, "param"),
    (lambda: (lambda b: (b[0], b[1], b[2], b[2]))(_bufs()), {}, ValueError, "overlap"),
])
def test_bad_input_raises(make, kw, err, match):
    p, g, m, v = make()
    kw = dict(dict(step=1), **kw)
    step = kw.pop("step")
    with pytest.raises(err, match=match):
        adamw_step(p, g, m, v, step, **kw)
