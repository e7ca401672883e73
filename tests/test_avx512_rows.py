"""The AVX-512 row kernels (layer norm, softmax / log_softmax / cross-entropy,
GELU) against the AVX2 and portable paths and the float64 reference.

Each path runs in a child process with PT_ISA set (portable also with
PT_PORTABLE=1), so the test holds whether the path is read per call or
once at import. Stated tolerances:

- layer norm (float32 and float64) and float32 softmax / log_softmax /
  cross-entropy rows: the AVX-512 rows do the portable operations in the
  portable order (same LANES double lanes, no FMA), so all three paths
  agree bit for bit;
- float64 softmax / log_softmax / cross-entropy rows: the portable order
  and formulas, but a vectorised exp (pt_exp_f64_avx512.h, under 1 ulp:
  checked here against long double) where the portable rows call libm's
  (0.5 ulp), so against the portable path (the float64 AVX2 rows do the
  AVX-512 ones' operations: tests/test_avx2_f64_rows.py): softmax and the
  cross-entropy gradient within 8 ulp relative (plus 1e-300), log_softmax,
  lse and the loss within 2e-15 (1 + |value|) absolute, the backwards within
  the forward's difference carried through (stated at each check);
- float64 GELU (erf and tanh forms): vectorised erfc and tanh parts where
  the portable rows call libm's erf and tanh; the portable 0.5 (1 + erf)
  and 1 + tanh(u) keep only an absolute accuracy in the negative tail,
  which the AVX-512 forms (erfc, 2e/(1+e)) do not lose, so the paths agree
  within 4 (ulp(y) + eps |z|) forward and 4 (ulp(g) + eps |dy| (1 + |z|))
  backward, eps = 2^-52 (measured: 1.0 and 2.4);
- float32 GELU (erf and tanh forms, with and without bias, forward and
  backward): the AVX-512 rows do the AVX2 path's operations, so AVX-512 and
  AVX2 agree bit for bit, and both agree with the portable path within the
  AVX2 tolerance stated in test_simd_paths.py (forward 6e-5 relative,
  backward 1e-5 relative + 1e-6 |dy|);
- every path: 1, 2 and 3 threads bitwise equal.

Row lengths 1..70, 127, 128, 129, 1000 and 4099 cover the 16-lane body,
the 32-lane unrolled GELU body and every masked tail; rows hold NaN, +-inf,
1e4 means (layer norm) and 1e4 logits, all -inf rows, ignore_index and
label smoothing (cross-entropy).
"""
from pathlib import Path

import numpy as np
import pytest

from pytransformer import reference
from tests.rows_common import (EPS64, IGNORE, close_where_finite, equal_bits,
                                float64_gelu_rows_close, float64_softmax_rows_close,
                                row_outputs, run_worker)

LENGTHS = list(range(1, 71)) + [127, 128, 129, 1000, 4099]
BIG = {"ln": (300, 129), "sm": (64, 1000), "gelu": (600, 129)}   # parallel, several chunks


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


HAVE_AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= _cpu_flags()
HAVE_AVX2 = {"avx2", "fma"} <= _cpu_flags()
pytestmark = pytest.mark.skipif(
    not HAVE_AVX512, reason="the CPU (or /proc/cpuinfo) shows no AVX-512 F/BW/DQ/VL: "
                            "the AVX-512 rows cannot run here")


# ------------------------------------------------------------------ inputs

def _ln_x(rng, N, C, dtype):
    x = rng.standard_normal((N, C)) * 2 + 0.5
    x[min(1, N - 1)] += 1e4                       # a row whose mean is 1e4
    if N >= 7 and C >= 3:
        x[5, C // 2] = np.nan
        x[6, C - 1] = np.inf
    return x.astype(dtype)


def _sm_x(rng, N, C, dtype):
    x = rng.standard_normal((N, C)) * 3
    if N >= 6:
        x[1] = rng.standard_normal(C) * 1e4       # 1e4 logits
        x[2] = -np.inf                            # all -inf
        x[3, ::3] = -np.inf                       # some -inf (and a NaN)
        x[3, C - 1] = np.nan if C > 1 else x[3, C - 1]
        x[4, C // 2] = np.inf
        x[5, 1::2] = -np.inf
    return x.astype(dtype)


GELU_SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40, -1e-40, 1e19, -1e19, 1e30, -1e30,
                86.0, -86.0, 87.0, -87.0, 200.0, -200.0, 13.2, -13.2, 9.0, -9.0]


def _gelu_x(rng, N, C, dtype):
    x = rng.standard_normal((N, C)) * 4
    flat = x.reshape(-1)
    k = min(flat.size // 2, len(GELU_SPECIAL))
    flat[rng.choice(flat.size, k, replace=False)] = GELU_SPECIAL[:k]
    return x.astype(dtype)


def _cases():
    """(family, dtype, N, C, seed) of every case."""
    out = []
    for C in LENGTHS:
        for dt in ("float32", "float64"):
            out.append(("ln", dt, 7, C, C))
            out.append(("sm", dt, 6, C, C))
            out.append(("gelu", dt, 5, C, C))
    for fam, (N, C) in BIG.items():
        for dt in ("float32", "float64"):
            out.append((fam, dt, N, C, 1000 + N))
    return out


def _inputs(fam, dt, N, C, seed):
    rng = np.random.default_rng(seed)
    if fam == "ln":
        return dict(x=_ln_x(rng, N, C, dt), w=rng.standard_normal(C).astype(dt),
                    b=rng.standard_normal(C).astype(dt),
                    dy=rng.standard_normal((N, C)).astype(dt))
    if fam == "sm":
        t = rng.integers(0, C, N)
        t[0] = IGNORE
        return dict(x=_sm_x(rng, N, C, dt), t=t, g=rng.standard_normal(N).astype(dt),
                    dy=rng.standard_normal((N, C)).astype(dt))
    return dict(x=_gelu_x(rng, N, C, dt), b=rng.standard_normal(C).astype(dt),
                dy=rng.standard_normal((N, C)).astype(dt))


def _compute(fam, inp):
    """The kernels' outputs for one case, by name: layer norm here, the
    softmax family and GELU by rows_common.row_outputs."""
    if fam != "ln":
        return row_outputs(fam, inp)
    from pytransformer import ops
    with np.errstate(all="ignore"):
        x, w, b, dy = inp["x"], inp["w"], inp["b"], inp["dy"]
        y, m, rs = ops.layer_norm_forward(x, w, b)
        dx, dw, db = ops.layer_norm_backward(dy, x, w, m, rs)
        y0, m0, rs0 = ops.layer_norm_forward(x)
        dx0, _, _ = ops.layer_norm_backward(dy, x, None, m0, rs0)
    return dict(y=y, mean=m, rstd=rs, dx=dx, dw=dw, db=db, y0=y0, dx0=dx0)


def _worker(out_path, threads):
    from pytransformer import _core
    _core.set_num_threads(threads)
    arrays = {}
    for case in _cases():
        if threads != 1 and case[2:4] not in BIG.values():
            continue
        for name, a in _compute(case[0], _inputs(*case)).items():
            arrays["/".join(map(str, case)) + "/" + name] = a
    np.savez(out_path, **arrays)


def _run(tmp_path, isa, threads):
    return run_worker("test_avx512_rows", tmp_path, isa, threads)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("avx512_rows")
    res = {("avx512", 1): _run(tmp, "avx512", 1), ("portable", 1): _run(tmp, "portable", 1)}
    if HAVE_AVX2:
        res[("avx2", 1)] = _run(tmp, "avx2", 1)
    for th in (2, 3):
        res[("avx512", th)] = _run(tmp, "avx512", th)
    return res


# ------------------------------------------------------------------- tests

def test_every_case_ran(paths):
    a = paths[("avx512", 1)]
    assert len(a) == len(paths[("portable", 1)])
    assert sum(k.startswith("gelu/float64/") for k in a) == (len(LENGTHS) + 1) * 10
    assert sum(k.startswith("ln/") for k in a) == 2 * (len(LENGTHS) + 1) * 8


@pytest.mark.parametrize("other", ["portable", "avx2"])
def test_layernorm_and_float32_softmax_rows_are_bitwise_the_other_paths(paths, other):
    if ("avx2", 1) not in paths and other == "avx2":
        pytest.skip("no AVX2+FMA")
    a, o = paths[("avx512", 1)], paths[(other, 1)]
    keys = [k for k in a if k.startswith("ln/") or k.startswith("sm/float32/")]
    assert keys
    for k in keys:
        equal_bits(a[k], o[k], k)


def test_float32_gelu_rows_are_bitwise_the_avx2_path(paths):
    if ("avx2", 1) not in paths:
        pytest.skip("no AVX2+FMA")
    a, o = paths[("avx512", 1)], paths[("avx2", 1)]
    keys = [k for k in a if k.startswith("gelu/float32/")]
    assert keys
    for k in keys:
        equal_bits(a[k], o[k], k)


def test_float32_gelu_rows_agree_with_the_portable_path(paths):
    a, p = paths[("avx512", 1)], paths[("portable", 1)]
    for case in _cases():
        if case[0] != "gelu" or case[1] != "float32":
            continue
        pre = "/".join(map(str, case)) + "/"
        dy = np.abs(_inputs(*case)["dy"]).astype(np.float64)
        for act in ("gelu", "gelu_tanh"):
            for y in ("_y", "_y0"):
                close_where_finite(a[pre + act + y], p[pre + act + y], 6e-5, 1e-37, pre + act)
            for d in ("_dx", "_dx0"):
                close_where_finite(a[pre + act + d], p[pre + act + d], 1e-5,
                                    1e-6 * dy + 1e-37, pre + act + d)
            # dbias sums the dx column (in double): the bound summed
            bound = (1e-5 * np.abs(p[pre + act + "_dx"]) + 1e-6 * dy).sum(axis=0) + 1e-30
            close_where_finite(a[pre + act + "_db"], p[pre + act + "_db"], 1e-6, bound,
                                pre + act + "_db")


def test_float64_softmax_rows_agree_with_the_portable_path(paths):
    a, p = paths[("avx512", 1)], paths[("portable", 1)]
    seen = 0
    for case in _cases():
        if case[:2] != ("sm", "float64"):
            continue
        seen += 1
        float64_softmax_rows_close(a, p, "/".join(map(str, case)) + "/", _inputs(*case))
    assert seen == len(LENGTHS) + 1


def test_float64_gelu_rows_agree_with_the_portable_path(paths):
    a, p = paths[("avx512", 1)], paths[("portable", 1)]
    seen = 0
    for case in _cases():
        if case[:2] != ("gelu", "float64"):
            continue
        seen += 1
        float64_gelu_rows_close(a, p, "/".join(map(str, case)) + "/", _inputs(*case))
    assert seen == len(LENGTHS) + 1


def test_float64_exp_is_within_one_ulp():
    """The float64 exp of the AVX-512 rows (pt_exp_f64_avx512.h), read
    through log_softmax_backward: with sum(dy) = 1 and dy = 0 except where
    y = -inf, dx = -exp(y) exactly. Against long double exp over
    [-745.5, 0], specials as libm."""
    from pytransformer import ops
    from tests.helpers import use_isa
    rng = np.random.default_rng(7)
    y = np.concatenate([-rng.uniform(0, 745.5, 200_000), -rng.exponential(1.0, 100_000),
                        -np.abs(rng.standard_normal(50_000)) * 1e-6])
    specials = np.array([0.0, -0.0, -np.inf, np.nan, -1e-300, -708.4, -745.1, -745.2, -746.0,
                         1.0, 709.7, 709.8, 1e5, np.inf])
    y = np.concatenate([y, specials, [-np.inf]])
    dy = np.zeros_like(y)
    dy[-1] = 1.0
    with use_isa("avx512"), np.errstate(all="ignore"):
        e = -ops.log_softmax_backward(dy, y)[:-1]
    ref = np.exp(y[:-1].astype(np.longdouble))
    normal = np.isfinite(ref) & (ref >= np.finfo(np.float64).tiny) & (ref <= np.finfo(np.float64).max)
    err = (np.abs(e[normal].astype(np.longdouble) - ref[normal])
           / np.spacing(np.abs(e[normal]))).astype(np.float64)
    assert err.max() < 1.0, err.max()
    sub = ref < np.finfo(np.float64).tiny
    assert (np.abs(e[sub] - ref[sub].astype(np.float64)) <= 5e-324).all()
    with np.errstate(all="ignore"):
        want = np.exp(specials)
    got = e[-len(specials):]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    np.testing.assert_allclose(got[fin], want[fin], rtol=2 * EPS64, atol=5e-324)


def test_one_two_three_threads_are_bitwise_equal(paths):
    one = paths[("avx512", 1)]
    for th in (2, 3):
        other = paths[("avx512", th)]
        assert other
        for k, v in other.items():
            equal_bits(one[k], v, f"{k} threads={th}")


def _tol(dt):
    return (2e-5, 2e-5) if dt == "float32" else (1e-11, 1e-11)


def test_avx512_rows_match_the_float64_reference(paths):
    a = paths[("avx512", 1)]
    for case in _cases():
        fam, dt, N, C, _ = case
        pre = "/".join(map(str, case)) + "/"
        inp = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v)
               for k, v in _inputs(*case).items()}
        rtol, atol = _tol(dt)
        with np.errstate(all="ignore"):
            if fam == "ln":
                x = inp["x"]
                ok = np.isfinite(x).all(axis=1)
                big = np.abs(x.mean(axis=1)) > 1e3
                # a 1e4 mean rounds to real: |x - mean| errs by half its ulp
                rt = np.where(big, 1e-3 if dt == "float32" else 1e-11, 0)[:, None] + atol
                y = reference.layer_norm(x, inp["w"], inp["b"])
                close_where_finite(a[pre + "y"][ok], y[ok], rtol, (rt * 50)[ok], pre + "y")
                dxr, dwr, dbr = reference.layer_norm_backward(inp["dy"][ok], x[ok], inp["w"])
                close_where_finite(a[pre + "dx"][ok], dxr, 1e-4 if dt == "float32" else 1e-9,
                                    (rt * 200)[ok], pre + "dx")
                if ok.all():    # dw, db sum over every row
                    close_where_finite(a[pre + "db"], dbr, rtol, atol * N, pre + "db")
                    close_where_finite(a[pre + "dw"], dwr, 1e-4 if dt == "float32" else 1e-9,
                                        (rt.max() * 200) * N, pre + "dw")
            elif fam == "sm":
                x = inp["x"]
                ok = ~np.isnan(x).any(axis=1) & ~np.isposinf(x).any(axis=1)
                y = reference.softmax(x[ok])
                close_where_finite(a[pre + "y"][ok], y, rtol, atol, pre + "y")
                ly = reference.log_softmax(x[ok])
                close_where_finite(a[pre + "ly"][ok], ly, rtol, atol + rtol * np.abs(x[ok]),
                                    pre + "ly")
                assert (a[pre + "y"][2] == 0).all() if N >= 6 else True
                for ls in (0.0, 0.1):
                    loss = reference.cross_entropy(x[ok], inp["t"][ok], IGNORE, ls,
                                                   reduction="none")
                    close_where_finite(a[pre + f"loss{ls}"][ok], loss, rtol,
                                        atol + rtol * np.abs(x[ok]).max(axis=1), pre + "loss")
                    d = reference.cross_entropy_backward(inp["g"][ok], x[ok], inp["t"][ok],
                                                         IGNORE, ls, reduction="none")
                    close_where_finite(a[pre + f"dce{ls}"][ok], d, rtol, atol, pre + "dce")
                    assert (a[pre + f"dce{ls}"][0] == 0).all()    # ignored row
            else:
                x, b, dy = inp["x"], inp["b"], inp["dy"]
                # the reference's 1 + erf(z / sqrt 2) cancels in the negative
                # tail (about 1e-16 absolute): hence the 1e-12 floors
                # (float32 z^2 overflows for |z| > 1.8e19: the float32 tanh form's
                # gradient is NaN there on every path; compared below 1e18)
                sel = ~(np.abs(x + b) > 1e18)
                for act in ("gelu", "gelu_tanh"):
                    y = reference.bias_act(x, b, act)
                    close_where_finite(a[pre + act + "_y"], y, 1e-4, 1e-12, pre + act)
                    dx, _ = reference.bias_act_backward(dy, x, b, act)
                    close_where_finite(a[pre + act + "_dx"][sel], dx[sel], 1e-4,
                                        2e-6 * np.abs(dy[sel]) + 1e-12, pre + act + "_dx")


def test_float64_gelu_and_softmax_paths_follow_pt_isa():
    """PT_ISA moves the float64 activation and softmax families: avx512 at
    the avx512 level, the lower paths below it."""
    from pytransformer import _core
    from tests.helpers import use_isa
    want = {"portable": ("portable", "portable"), "avx2": ("avx2", "avx2"),
            "avx512": ("avx512", "avx512")}
    for level in _core.isa_levels_supported():
        with use_isa(level):
            k = _core.isa_info()["kernels_float64"]
            assert (k["activation"], k["softmax"]) == want[level], (level, k)


def test_float64_gelu_keeps_relative_accuracy_in_the_negative_tail():
    """erf form: z erfc(-z / sqrt 2) / 2 through math.erfc. Rounding the
    argument x = |z| / sqrt 2 (ours squares z instead, same effect) moves
    erfc by 2 x^2 eps / 2 relative, up to 7.8e-15 at x = 5.94 on each
    side: 2e-14 allowed;
    tanh form: z / (1 + exp(-2u)). The portable 0.5 (1 + erf) is off by
    1e-10 relative at z = -6 already; the AVX-512 rows are not. Beyond
    |z| = 6 sqrt 2 the erf form is 0 on both paths (under 1.1e-17 |z|)."""
    import math
    from pytransformer import ops
    from tests.helpers import use_isa
    z = -np.linspace(1.0, 8.4, 2001)
    k = math.sqrt(2 / math.pi)
    with use_isa("avx512"):
        y, yt = ops.gelu(z), ops.gelu(z, "tanh")
        far = ops.gelu(np.array([-8.5, -9.0, -40.0, -1e6]))
    want = 0.5 * z * np.array([math.erfc(-v / math.sqrt(2)) for v in z])
    np.testing.assert_allclose(y, want, rtol=2e-14, atol=0)
    u = k * (z + 0.044715 * z ** 3)
    np.testing.assert_allclose(yt, z / (1 + np.exp(-2 * u)), rtol=1e-13, atol=1e-300)
    assert (far == 0).all()
