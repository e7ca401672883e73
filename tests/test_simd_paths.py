"""The vectorised paths of the AdamW step and the cross-entropy kernels:
exact arithmetic and the special values the SIMD code treats differently.

- adamw_step: float32 tensors are updated in float32 arithmetic in a fixed
  order (constants computed in double, rounded once), so a NumPy emulation
  of that order must agree bit for bit, on the AVX2 path and on the portable
  C path (PT_PORTABLE=1, read at every call), at lengths around the vector
  width and across the per-thread slices. float64 likewise in double.
- cross-entropy / softmax: the row max is an integer max over the float
  bits, which orders a NaN by its sign; negative and positive NaNs, signed
  zeros and -inf must still give the documented results.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer import _core
from pytransformer.ops._optim import adamw_step
from pytransformer.ops._softmax import (
    cross_entropy_backward, cross_entropy_forward, log_softmax, softmax)
from tests.helpers import DTYPES, rand, seeds


def _adamw_emulated(p, g, m, v, step, lr, betas, eps, wd):
    """The kernel's documented order of operations, in p's dtype."""
    dt = p.dtype.type
    b1, b2 = betas
    decay = dt(1.0 - lr * wd)
    step_size = dt(lr / (1.0 - b1 ** step))
    inv_bc2 = dt(1.0 / math.sqrt(1.0 - b2 ** step))
    m = dt(b1) * m + dt(1.0 - b1) * g
    v = dt(b2) * v + dt(1.0 - b2) * g * g
    denom = np.sqrt(v) * inv_bc2 + dt(eps)
    p = p * decay - step_size * m / denom
    return p, m, v


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@given(n=st.sampled_from([1, 7, 8, 9, 63, 64, 65, 1000, 70_001]), seed=seeds,
       lr=st.sampled_from([1e-4, 1e-3, 0.1]), wd=st.sampled_from([0.0, 1e-2]),
       betas=st.sampled_from([(0.9, 0.999), (0.9, 0.98), (0.0, 0.5)]))
def test_adamw_is_the_documented_arithmetic_bit_for_bit(portable, dtype, n, seed, lr, wd,
                                                       betas):
    rng = np.random.default_rng(seed)
    p = rand(rng, (n,), dtype)
    m = np.zeros(n, dtype)
    v = np.zeros(n, dtype)
    ep, em, ev = p.copy(), m.copy(), v.copy()
    old_threads = _core.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        if portable:
            mp.setenv("PT_PORTABLE", "1")
        else:
            mp.delenv("PT_PORTABLE", raising=False)
        try:
            _core.set_num_threads(2)            # n = 70_001 is split between threads
            for step in range(1, 4):
                g = rand(rng, (n,), dtype, scale=0.1 * step)
                adamw_step(p, g, m, v, step, lr=lr, betas=betas, eps=1e-8, weight_decay=wd)
                ep, em, ev = _adamw_emulated(ep, g, em, ev, step, lr, betas, 1e-8, wd)
        finally:
            _core.set_num_threads(old_threads)
    np.testing.assert_array_equal(m, em)
    np.testing.assert_array_equal(v, ev)
    np.testing.assert_array_equal(p, ep)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_avx2_and_portable_paths_agree_on_special_values(dtype, monkeypatch):
    g = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 1e30, -2.5, 3.0], dtype)
    g = np.tile(g, 5)                        # vector body and scalar tail
    results = []
    for portable in ("0", "1"):
        monkeypatch.setenv("PT_PORTABLE", portable)
        p = np.linspace(-1, 1, g.size).astype(dtype)
        m = np.full(g.size, 0.01, dtype)
        v = np.full(g.size, 0.02, dtype)
        adamw_step(p, g, m, v, 2)
        results.append((p, m, v))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    p = results[0][0]
    assert np.isnan(p[[0, 1, 2]]).all()       # NaN and +-inf gradients: NaN
    assert np.isfinite(p[3:9]).all()


# ------------------------------------------------------------ cross-entropy

def _nan(sign):
    return np.copysign(np.float64(np.nan), sign)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 16, 40])
def test_rows_with_nan_of_either_sign_are_nan(dtype, c):
    rows = []
    for sign in (1.0, -1.0):
        r = np.linspace(-2, 2, c)
        r[c // 2] = _nan(sign)                       # NaN among finite values
        rows.append(r)
        r = np.full(c, -np.inf)
        r[-1] = _nan(sign)                           # NaN among -inf
        rows.append(r)
        rows.append(np.full(c, _nan(sign)))          # all NaN
    x = np.array(rows).astype(dtype)
    assert np.signbit(x[3, c // 2]) and np.isnan(x[3, c // 2])   # the sign survived
    t = np.zeros(len(rows), np.int64)
    loss, lse = cross_entropy_forward(x, t, label_smoothing=0.1, reduction="none")
    assert np.isnan(loss).all() and np.isnan(lse).all()
    d = cross_entropy_backward(np.ones(len(rows), dtype), x, t, lse, reduction="none")
    assert np.isnan(d).all()
    assert np.isnan(softmax(x)).all() and np.isnan(log_softmax(x)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_signed_zero_and_minus_inf_rows(dtype):
    c = 37
    x = np.full((3, c), -np.inf, dtype)
    x[0, 5], x[0, 30] = -0.0, 0.0                    # max over signed zeros
    x[1, :] = -0.0
    # x[2] stays all -inf: lse -inf, loss +inf, softmax 0, gradient -g * ls / C
    t = np.array([5, 0, 3])
    loss, lse = cross_entropy_forward(x, t, label_smoothing=0.2, reduction="none")
    np.testing.assert_allclose(lse[:2], [math.log(2), math.log(c)], rtol=1e-6)
    assert lse[2] == -np.inf and loss[2] == np.inf
    assert loss[0] == np.inf                         # smoothing over -inf entries
    np.testing.assert_allclose(loss[1], math.log(c), rtol=1e-6)
    plain, _ = cross_entropy_forward(x, t, reduction="none")
    np.testing.assert_allclose(plain[:2], [math.log(2), math.log(c)], rtol=1e-6)
    d = cross_entropy_backward(np.ones(3, dtype), x, t, lse, label_smoothing=0.2,
                               reduction="none")
    expect0 = np.full(c, -0.2 / c)
    expect0[[5, 30]] += 0.5
    expect0[5] -= 0.8
    np.testing.assert_allclose(d[0], expect0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d[2], np.full(c, -0.2 / c) - 0.8 * (np.arange(c) == 3),
                               rtol=1e-6)
    y = softmax(x)
    np.testing.assert_allclose(y[0, [5, 30]], 0.5, rtol=1e-6)
    assert not y[2].any()
