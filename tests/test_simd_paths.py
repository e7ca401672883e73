"""The vectorised paths of the AdamW step and the cross-entropy kernels:
exact arithmetic and the special values the SIMD code treats differently.

- adamw_step: float32 tensors are updated in float32 arithmetic in a fixed
  order (constants computed in double, rounded once), so a NumPy emulation
  of that order must agree bit for bit, on the AVX2 path and on the portable
  C path (PT_ISA=portable, helpers.use_isa), at lengths around the vector
  width and across the per-thread slices. float64 likewise in double.
- cross-entropy / softmax: the row max is an integer max over the float
  bits, which orders a NaN by its sign; negative and positive NaNs, signed
  zeros and -inf must still give the documented results.
- float32 GELU (erf and tanh forms; gelu, the fused bias + GELU and their
  backward): the AVX2+FMA path rounds differently from the portable loops
  (FMA), so the two agree to a stated tolerance, with identical NaN,
  infinity, zero and sign patterns; within the AVX2 path every element of a
  row gets the same arithmetic (vector body, unrolled pairs, masked tail).
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer import _core
from pytransformer.ops._activation import bias_act, bias_act_backward, gelu, gelu_backward
from pytransformer.ops._optim import adamw_step
from pytransformer.ops._softmax import (
    cross_entropy_backward, cross_entropy_forward, log_softmax, softmax)
from tests.helpers import DTYPES, rand, seeds, use_isa


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
    with use_isa("portable" if portable else "avx2"):
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
    for level in ("avx2", "portable"):
        with use_isa(level):
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


# --------------------------------------------------------------- float32 GELU

# AVX2 path vs portable path, float32. Measured on a dense grid of [-14, 14]
# plus the special values below: forward relative difference <= 1.8e-5
# (erf) and 1.6e-5 (tanh), both in the negative tail, where exp amplifies
# the rounding of its argument (-z^2/2, computed as (z/sqrt2)^2 by the
# portable path and (z/2) z by the AVX2 one; -2|u|, u = k0 (z + k1 z^3)) by
# the argument's size, up to ~87; backward <= 2.4e-7 absolute for dy = 1
# (relative differences are large only where gelu' crosses 0). The bounds
# below are ~4x those. The absolute floor 1e-37 covers results that
# underflow to subnormals (one subnormal ulp is a large relative change).
GELU_FWD_RTOL = {"none": 6e-5, "tanh": 6e-5}
GELU_BWD_ATOL = 1e-6          # times |dy|
GELU_SPECIAL = np.array(
    [np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 1e-40, -1e-40, 1.4e-45, -1.4e-45,
     1.1754944e-38, -1.1754944e-38, 1e19, -1e19, 2e19, -2e19, 1e30, -1e30, 3.4e38, -3.4e38,
     86.0, -86.0, 87.0, -87.0, 200.0, -200.0, 13.2, -13.2, 9.0, -9.0, 0.5, -0.75], np.float32)


def _gelu_inputs(seed, n_dense):
    rng = np.random.default_rng(seed)
    z = np.concatenate([np.linspace(-14, 14, n_dense),
                        rng.standard_normal(2000) * 3,
                        rng.standard_normal(200) * 1e4,       # |z| large: exp flushes to 0
                        GELU_SPECIAL])
    return rng.permutation(z.astype(np.float32))


def _both_paths(monkeypatch, fn):
    """fn() on the AVX2 path (when the CPU has it) and on the portable one."""
    out = {}
    for level in ("avx2", "portable"):
        with use_isa(level):
            out[level] = fn()
    return out["avx2"], out["portable"]


def _assert_gelu_paths_agree(a, p, rtol, atol_abs, what):
    """Same NaN / inf / sign pattern; where p is 0, a is 0 or within the
    absolute floor (a result at a subnormal tie may round either way);
    finite values within |a - p| <= rtol |p| + atol_abs (atol_abs may be an
    array)."""
    assert a.dtype == p.dtype == np.float32, what
    np.testing.assert_array_equal(np.isnan(a), np.isnan(p), err_msg=what + ": NaN pattern")
    ok = ~np.isnan(p)
    inf = np.isinf(p)
    np.testing.assert_array_equal(a[inf], p[inf], err_msg=what + ": infinities")
    zero = p == 0
    floor = np.broadcast_to(atol_abs, p.shape)[zero]
    assert (np.abs(a[zero].astype(np.float64)) <= floor).all(), what + ": zeros"
    np.testing.assert_array_equal(np.signbit(a[ok]), np.signbit(p[ok]), err_msg=what + ": signs")
    fin = np.isfinite(p)
    atol = np.broadcast_to(atol_abs, p.shape)[fin]
    a64, p64 = a[fin].astype(np.float64), p[fin].astype(np.float64)
    excess = np.abs(a64 - p64) - (rtol * np.abs(p64) + atol)
    assert excess.max() <= 0, f"{what}: worst excess {excess.max():.3g}"


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_avx2_and_portable_paths_agree(approximate, monkeypatch):
    z = _gelu_inputs(0, 20_001)
    dy = np.random.default_rng(1).standard_normal(z.size).astype(np.float32)
    dy[:: 7] = 1.0
    (ya, ga), (yp, gp) = _both_paths(
        monkeypatch, lambda: (gelu(z, approximate), gelu_backward(dy, z, approximate)))
    _assert_gelu_paths_agree(ya, yp, GELU_FWD_RTOL[approximate], 1e-37, "forward")
    _assert_gelu_paths_agree(ga, gp, 1e-5, GELU_BWD_ATOL * np.abs(dy) + 1e-37, "backward")
    if "avx2" in _core.isa_levels_supported():
        # The two paths really differ (FMA rounding): the AVX2 one did run.
        assert not np.array_equal(ya, yp) and not np.array_equal(ga, gp)


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
@pytest.mark.parametrize("c", [1, 7, 8, 9, 16, 17, 37, 600])
def test_bias_gelu_avx2_and_portable_paths_agree(act, c, monkeypatch):
    # Rows of c columns: the vector body, the unrolled pairs and the masked
    # tail; 600 columns span two backward column tiles.
    rng = np.random.default_rng(c)
    z = _gelu_inputs(c, 3001)
    rows = -(-z.size // c)
    x = np.resize(z, (rows, c))
    b = (rng.standard_normal(c) * 0.5).astype(np.float32)
    b[0] = -0.0
    dy = rng.standard_normal(x.shape).astype(np.float32)
    (ya, dxa, dba), (yp, dxp, dbp) = _both_paths(
        monkeypatch, lambda: (bias_act(x, b, act),) + bias_act_backward(dy, x, b, act))
    rtol = GELU_FWD_RTOL["none" if act == "gelu" else "tanh"]
    _assert_gelu_paths_agree(ya, yp, rtol, 1e-37, "forward")
    _assert_gelu_paths_agree(dxa, dxp, 1e-5, GELU_BWD_ATOL * np.abs(dy) + 1e-37, "dx")
    # dbias: column sums of g in double; each term within the dx bound.
    bound = (GELU_BWD_ATOL * np.abs(dy) + 1e-5 * np.abs(dxp)).sum(0) + 1e-6 * np.abs(dbp)
    fin = np.isfinite(dbp)
    np.testing.assert_array_equal(np.isnan(dba), np.isnan(dbp))
    assert (np.abs(dba[fin].astype(np.float64) - dbp[fin]) <= bound[fin]).all()


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_avx2_elements_do_not_depend_on_their_position(approximate):
    # The same value gives the same bits wherever it sits in a row (vector
    # body, second of an unrolled pair, masked tail), and a masked tail
    # writes nothing past the row.
    z = _gelu_inputs(2, 41)[:40]
    full = gelu(z, approximate)
    gfull = gelu_backward(np.ones_like(z), z, approximate)
    for start in range(0, 9):
        for n in (1, 5, 8, 9, 15, 16, 17, 31):
            part = z[start:start + n]
            out = np.full(part.size + 8, 7.0, np.float32)
            gelu(part, approximate, out=out[:part.size])
            np.testing.assert_array_equal(out[:part.size], full[start:start + n])
            assert (out[part.size:] == 7.0).all()
            np.testing.assert_array_equal(
                gelu_backward(np.ones_like(part), part, approximate), gfull[start:start + n])


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
@pytest.mark.parametrize("outputs", ["both", "dx", "dbias"])
def test_gelu_backward_adds_into_dx_and_dbias_on_both_paths(act, outputs, monkeypatch):
    # The C backward adds into caller-zeroed (here: non-zero) gradients; the
    # AVX2 path fuses that add into its row loop, with either output absent.
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((300, 21)) * 3).astype(np.float32)
    b = rng.standard_normal(21).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx0 = rng.standard_normal(x.shape).astype(np.float32)
    db0 = rng.standard_normal(21).astype(np.float32)
    for level in ("avx2", "portable"):
        with use_isa(level):
            g, gb = bias_act_backward(dy, x, b, act)          # into zeros
            dx = dx0.copy() if outputs != "dbias" else None
            db = db0.copy() if outputs != "dx" else None
            _core.bias_act_backward(dx, db, dy, x, b, act)
            if dx is not None:
                np.testing.assert_array_equal(dx, dx0 + g)
            if db is not None:
                np.testing.assert_allclose(db, db0 + gb, rtol=1e-6, atol=1e-6)
