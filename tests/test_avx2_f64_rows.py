"""The float64 AVX2 row kernels (softmax / log_softmax / cross-entropy,
csrc/softmax_avx2_f64.c; GELU erf and tanh forms, csrc/activation_avx2_f64.c;
exp, csrc/pt_exp_f64_avx2.h) against the portable and AVX-512 paths and the
float64 reference.

Each path runs in a child process with PT_ISA set (portable also with
PT_PORTABLE=1). Stated tolerances:

- the AVX2 rows do the AVX-512 float64 rows' operations in the same order
  (the same exp, whose 2^k scaling rounds once as scalef does; the same
  16 double lanes; the same erfcx coefficients and FMAs), so on a CPU with
  both the two paths agree bit for bit;
- against the portable rows (libm's exp, erf and tanh) the AVX-512 float64
  bounds of tests/test_avx512_rows.py, checked here for AVX2 on its own so
  that they hold on an AVX2-only CPU: softmax and the cross-entropy
  gradient within 8 ulp relative, log_softmax, lse and the loss within
  2e-15 (1 + |value|) absolute, the backwards within the forward's
  difference carried through; GELU within 4 (ulp(y) + eps |z|) forward and
  4 (ulp(g) + eps |dy| (1 + |z|)) backward, eps = 2^-52, the same NaN,
  infinity and sign patterns;
- against the float64 reference (pytransformer.reference): 1e-11 relative
  and absolute (softmax rows), GELU 1e-4 relative above a 1e-12 floor (the
  reference's 1 + erf cancels in the negative tail);
- exp: under 1 ulp against long double exp over [-745.5, 0], subnormal
  results within one unit, specials as libm;
- 1, 2 and 3 threads bitwise equal.

Row lengths 1..40, 63, 64, 65, 1000 and 4099 cover the 16-lane sum body,
the 8-wide GELU body and every masked tail; rows hold NaN, +-inf, 1e4
logits, all -inf rows, ignore_index and label smoothing.
"""

import numpy as np
import pytest

from pytransformer import _core, reference
from tests.rows_common import (EPS64, IGNORE, close_where_finite, equal_bits,
                                float64_gelu_rows_close, float64_softmax_rows_close,
                                row_outputs, run_worker)

LENGTHS = list(range(1, 41)) + [63, 64, 65, 1000, 4099]
BIG = {"sm": (64, 1000), "gelu": (600, 129)}   # parallel, several chunks
SUPPORTED = _core.isa_levels_supported()

pytestmark = pytest.mark.skipif(
    "avx2" not in SUPPORTED, reason="this CPU (or its OS) does not run AVX2+FMA: "
                                    "the float64 AVX2 rows cannot run here")

GELU_SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40, -1e-40, 1e19, -1e19, 1e30, -1e30,
                86.0, -86.0, 200.0, -200.0, 13.2, -13.2, 9.0, -9.0, 8.48, -8.49]


def _inputs(fam, N, C, seed):
    rng = np.random.default_rng(seed)
    if fam == "sm":
        x = rng.standard_normal((N, C)) * 3
        if N >= 6:
            x[1] = rng.standard_normal(C) * 1e4       # 1e4 logits
            x[2] = -np.inf                            # all -inf
            x[3, ::3] = -np.inf                       # some -inf (and a NaN)
            if C > 1:
                x[3, C - 1] = np.nan
            x[4, C // 2] = np.inf
            x[5, 1::2] = -np.inf
        t = rng.integers(0, C, N)
        t[0] = IGNORE
        return dict(x=x, t=t, g=rng.standard_normal(N), dy=rng.standard_normal((N, C)))
    x = rng.standard_normal((N, C)) * 4
    flat = x.reshape(-1)
    k = min(flat.size // 2, len(GELU_SPECIAL))
    flat[rng.choice(flat.size, k, replace=False)] = GELU_SPECIAL[:k]
    return dict(x=x, b=rng.standard_normal(C), dy=rng.standard_normal((N, C)))


def _cases():
    """(family, N, C, seed) of every case."""
    out = [(fam, 6 if fam == "sm" else 5, C, C) for C in LENGTHS for fam in ("sm", "gelu")]
    return out + [(fam, N, C, 1000 + N) for fam, (N, C) in BIG.items()]


def _worker(out_path, threads):
    from pytransformer import _core as core
    core.set_num_threads(threads)
    arrays = {}
    for case in _cases():
        if threads != 1 and case[1:3] not in BIG.values():
            continue
        for name, a in row_outputs(case[0], _inputs(*case)).items():
            arrays["/".join(map(str, case)) + "/" + name] = a
    arrays["kernels"] = np.array([core.isa_info()["kernels_float64"][f]
                                  for f in ("activation", "softmax")])
    np.savez(out_path, **arrays)


def _run(tmp_path, isa, threads):
    return run_worker("test_avx2_f64_rows", tmp_path, isa, threads)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("avx2_f64_rows")
    res = {("avx2", 1): _run(tmp, "avx2", 1), ("portable", 1): _run(tmp, "portable", 1)}
    if "avx512" in SUPPORTED:
        res[("avx512", 1)] = _run(tmp, "avx512", 1)
    for th in (2, 3):
        res[("avx2", th)] = _run(tmp, "avx2", th)
    return res


# ------------------------------------------------------------------- tests

def test_each_run_took_the_path_of_its_level(paths):
    assert list(paths[("avx2", 1)]["kernels"]) == ["avx2", "avx2"]
    assert list(paths[("portable", 1)]["kernels"]) == ["portable", "portable"]
    if ("avx512", 1) in paths:
        assert list(paths[("avx512", 1)]["kernels"]) == ["avx512", "avx512"]
    n = len(paths[("avx2", 1)]) - 1
    assert n == (len(LENGTHS) + 1) * (10 + 10)     # ten outputs per sm and gelu case


def test_float64_paths_follow_pt_isa():
    """PT_ISA moves the float64 activation and softmax families onto the
    AVX2 rows at the avx2 level, and off them below it."""
    from tests.helpers import use_isa
    want = {"portable": ("portable", "portable"), "avx2": ("avx2", "avx2"),
            "avx512": ("avx512", "avx512")}
    for level in SUPPORTED:
        with use_isa(level):
            k = _core.isa_info()["kernels_float64"]
            assert (k["activation"], k["softmax"]) == want[level], (level, k)


def test_avx2_rows_are_bitwise_the_avx512_rows(paths):
    if ("avx512", 1) not in paths:
        pytest.skip("this CPU does not run AVX-512: nothing to compare with")
    a, o = paths[("avx2", 1)], paths[("avx512", 1)]
    keys = [k for k in a if k != "kernels"]
    assert len(keys) == len(o) - 1
    for k in keys:
        equal_bits(a[k], o[k], k)


def test_avx2_rows_differ_from_the_portable_rows(paths):
    """The AVX2 rows are their own code (not the portable loops again): some
    results differ from the portable path in the last bits."""
    a, p = paths[("avx2", 1)], paths[("portable", 1)]
    differ = [k for k in a if k != "kernels" and not np.array_equal(a[k], p[k], equal_nan=True)]
    assert any(k.startswith("sm/") for k in differ)
    assert any(k.startswith("gelu/") for k in differ)


def test_softmax_rows_agree_with_the_portable_path(paths):
    a, p = paths[("avx2", 1)], paths[("portable", 1)]
    seen = 0
    for case in _cases():
        if case[0] != "sm":
            continue
        seen += 1
        float64_softmax_rows_close(a, p, "/".join(map(str, case)) + "/", _inputs(*case))
    assert seen == len(LENGTHS) + 1


def test_gelu_rows_agree_with_the_portable_path(paths):
    a, p = paths[("avx2", 1)], paths[("portable", 1)]
    seen = 0
    for case in _cases():
        if case[0] != "gelu":
            continue
        seen += 1
        float64_gelu_rows_close(a, p, "/".join(map(str, case)) + "/", _inputs(*case))
    assert seen == len(LENGTHS) + 1


def test_avx2_rows_match_the_float64_reference(paths):
    a = paths[("avx2", 1)]
    for case in _cases():
        fam, N, C, _ = case
        pre = "/".join(map(str, case)) + "/"
        inp = _inputs(*case)
        with np.errstate(all="ignore"):
            if fam == "sm":
                x = inp["x"]
                ok = ~np.isnan(x).any(axis=1) & ~np.isposinf(x).any(axis=1)
                close_where_finite(a[pre + "y"][ok], reference.softmax(x[ok]), 1e-11, 1e-11,
                                    pre + "y")
                close_where_finite(a[pre + "ly"][ok], reference.log_softmax(x[ok]), 1e-11,
                                    1e-11 + 1e-11 * np.abs(x[ok]), pre + "ly")
                if N >= 6:
                    assert (a[pre + "y"][2] == 0).all()          # all -inf row
                    assert np.isnan(a[pre + "y"][4]).all()       # +inf entry
                for ls in (0.0, 0.1):
                    loss = reference.cross_entropy(x[ok], inp["t"][ok], IGNORE, ls,
                                                   reduction="none")
                    close_where_finite(a[pre + f"loss{ls}"][ok], loss, 1e-11,
                                        1e-11 + 1e-11 * np.abs(x[ok]).max(axis=1), pre + "loss")
                    d = reference.cross_entropy_backward(inp["g"][ok], x[ok], inp["t"][ok],
                                                         IGNORE, ls, reduction="none")
                    close_where_finite(a[pre + f"dce{ls}"][ok], d, 1e-11, 1e-11, pre + "dce")
                    assert (a[pre + f"dce{ls}"][0] == 0).all()   # ignored row
            else:
                x, b, dy = inp["x"], inp["b"], inp["dy"]
                for act in ("gelu", "gelu_tanh"):
                    y = reference.bias_act(x, b, act)
                    close_where_finite(a[pre + act + "_y"], y, 1e-4, 1e-12, pre + act)
                    dx, _ = reference.bias_act_backward(dy, x, b, act)
                    close_where_finite(a[pre + act + "_dx"], dx, 1e-4,
                                        2e-6 * np.abs(dy) + 1e-12, pre + act + "_dx")


def test_one_two_three_threads_are_bitwise_equal(paths):
    one = paths[("avx2", 1)]
    for th in (2, 3):
        other = paths[("avx2", th)]
        keys = [k for k in other if k != "kernels"]
        assert keys
        for k in keys:
            equal_bits(one[k], other[k], f"{k} threads={th}")


def _exp_via_rows(level, y):
    """exp(y) through log_softmax_backward: with sum(dy) = 1 and dy = 0
    except where y = -inf, dx = -exp(y) exactly."""
    from pytransformer import ops
    from tests.helpers import use_isa
    y = np.concatenate([y, [-np.inf]])
    dy = np.zeros_like(y)
    dy[-1] = 1.0
    with use_isa(level), np.errstate(all="ignore"):
        return -ops.log_softmax_backward(dy, y)[:-1]


EXP_SPECIALS = np.array([0.0, -0.0, -np.inf, np.nan, -1e-300, -708.4, -708.39, -709.1, -744.4,
                         -745.1, -745.13, -745.2, -746.0, 1.0, 709.7, 709.8, 1e5, np.inf])


def _exp_args(n):
    rng = np.random.default_rng(7)
    y = np.concatenate([-rng.uniform(0, 745.5, n), -rng.exponential(1.0, n // 2),
                        -np.abs(rng.standard_normal(n // 4)) * 1e-6,
                        -rng.uniform(708.0, 745.3, n // 4)])     # around and below the subnormals
    return np.concatenate([y, EXP_SPECIALS])


def test_float64_avx2_exp_is_within_one_ulp():
    """pt_exp_pd_avx2 against long double exp over [-745.5, 0] (normal
    results: under 1 ulp; subnormal ones: within one unit), specials as
    libm's exp."""
    y = _exp_args(200_000)
    e = _exp_via_rows("avx2", y)
    with np.errstate(over="ignore"):
        ref = np.exp(y.astype(np.longdouble))
    tiny, big = np.finfo(np.float64).tiny, np.finfo(np.float64).max
    normal = np.isfinite(ref) & (ref >= tiny) & (ref <= big)
    err = (np.abs(e[normal].astype(np.longdouble) - ref[normal])
           / np.spacing(np.abs(e[normal]))).astype(np.float64)
    assert err.max() < 1.0, err.max()
    sub = ref < tiny
    assert sub.sum() > 1000
    assert (np.abs(e[sub] - ref[sub].astype(np.float64)) <= 5e-324).all()
    with np.errstate(all="ignore"):
        want = np.exp(EXP_SPECIALS)
    got = e[-len(EXP_SPECIALS):]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    np.testing.assert_allclose(got[fin], want[fin], rtol=2 * EPS64, atol=5e-324)
    assert got[2] == 0                                      # exp(-inf) = 0 exactly


def test_float64_avx2_exp_is_bitwise_the_avx512_exp():
    """The 2^k scaling in two exact-then-rounding steps gives scalef's
    result, subnormals included."""
    if "avx512" not in SUPPORTED:
        pytest.skip("this CPU does not run AVX-512: nothing to compare with")
    y = _exp_args(100_000)
    equal_bits(_exp_via_rows("avx2", y), _exp_via_rows("avx512", y), "exp")


def test_float64_avx2_gelu_keeps_relative_accuracy_in_the_negative_tail():
    """erf form against z erfc(-z / sqrt 2) / 2 (math.erfc), within 2e-14
    relative (the argument's rounding moves erfc by up to 7.8e-15); tanh
    form against z / (1 + exp(-2u)), 1e-13; both 0 beyond |z| = 6 sqrt 2
    for the erf form, as the AVX-512 rows."""
    import math
    from pytransformer import ops
    from tests.helpers import use_isa
    z = -np.linspace(1.0, 8.4, 2001)
    k = math.sqrt(2 / math.pi)
    with use_isa("avx2"):
        y, yt = ops.gelu(z), ops.gelu(z, "tanh")
        far = ops.gelu(np.array([-8.5, -9.0, -40.0, -1e6]))
    want = 0.5 * z * np.array([math.erfc(-v / math.sqrt(2)) for v in z])
    np.testing.assert_allclose(y, want, rtol=2e-14, atol=0)
    u = k * (z + 0.044715 * z ** 3)
    np.testing.assert_allclose(yt, z / (1 + np.exp(-2 * u)), rtol=1e-13, atol=1e-300)
    assert (far == 0).all()
