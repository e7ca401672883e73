"""What the SIMD row-kernel tests (tests/test_avx512_rows.py,
tests/test_avx2_f64_rows.py) share: the row kernels' outputs for one case,
a run of a test module's worker in a child process at one ISA level,
bitwise equality, closeness where finite, and the stated bounds of the
vectorised float64 softmax / log_softmax / cross-entropy and GELU rows
against the portable rows (libm's exp, erf and tanh). Each test file's
docstring states the bounds; the code that checks them is here, once.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IGNORE = -100

EPS64 = 2.0 ** -52


def row_outputs(fam, inp):
    """The softmax-family ("sm": softmax, log_softmax, their backwards,
    cross-entropy with and without label smoothing) or GELU ("gelu": erf
    and tanh forms, with and without bias, forward and backward) outputs
    for the inputs inp, by name."""
    from pytransformer import ops
    res = {}
    with np.errstate(all="ignore"):
        if fam == "sm":
            x, t, g, dy = inp["x"], inp["t"], inp["g"], inp["dy"]
            y, ly = ops.softmax(x), ops.log_softmax(x)
            res.update(y=y, ly=ly, dsm=ops.softmax_backward(dy, y),
                       dlsm=ops.log_softmax_backward(dy, ly))
            for ls in (0.0, 0.1):
                loss, lse = ops.cross_entropy_forward(x, t, IGNORE, ls, reduction="none")
                d = ops.cross_entropy_backward(g, x, t, lse, IGNORE, ls, reduction="none")
                res.update({f"loss{ls}": loss, f"lse{ls}": lse, f"dce{ls}": d})
        else:
            x, b, dy = inp["x"], inp["b"], inp["dy"]
            for act in ("gelu", "gelu_tanh"):
                approx = "none" if act == "gelu" else "tanh"
                dx, db = ops.bias_act_backward(dy, x, b, act)
                res.update({f"{act}_y": ops.bias_act(x, b, act), f"{act}_dx": dx,
                            f"{act}_db": db, f"{act}_y0": ops.gelu(x, approx),
                            f"{act}_dx0": ops.gelu_backward(dy, x, approx)})
    return res


def run_worker(module, tmp_path, isa, threads):
    """tests.<module>._worker(out, threads) in a child process with PT_ISA
    set to isa (portable also with PT_PORTABLE=1, the old spelling), so the
    level holds whether a path is read per call or once at import; returns
    the arrays it saved, by name."""
    env = dict(os.environ)
    env["PT_ISA"] = isa
    env.pop("PT_PORTABLE", None)
    if isa == "portable":
        env["PT_PORTABLE"] = "1"
    out = tmp_path / f"{isa}-{threads}.npz"
    code = (f"import sys; from tests.{module} import _worker; "
            "_worker(sys.argv[1], int(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, str(out), str(threads)], cwd=ROOT, env=env,
                   check=True)
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def equal_bits(a, b, key):
    """a and b equal element by element, with the same signs of zero."""
    np.testing.assert_array_equal(a, b, err_msg=key)
    assert np.array_equal(np.signbit(a), np.signbit(b)) or np.isnan(a).any(), key


def close_where_finite(a, p, rtol, atol, key):
    """Same NaN and infinity pattern; |a - p| <= rtol |p| + atol elsewhere."""
    np.testing.assert_array_equal(np.isnan(a), np.isnan(p), err_msg=key)
    inf = np.isinf(p)
    np.testing.assert_array_equal(a[inf], p[inf], err_msg=key)
    fin = np.isfinite(p)
    a64, p64 = a[fin].astype(np.float64), p[fin].astype(np.float64)
    atol = np.broadcast_to(atol, p.shape)[fin]
    excess = np.abs(a64 - p64) - (rtol * np.abs(p64) + atol)
    assert not (excess > 0).any(), (key, float(excess.max()))


def float64_softmax_rows_close(a, p, pre, inp):
    """The vectorised float64 softmax rows' outputs a[pre + name] against
    the portable ones p[...] for the inputs inp (x, g, dy)."""
    g = np.abs(inp["g"])[:, None]
    dy = inp["dy"]
    with np.errstate(all="ignore"):
        # softmax: exp within 1 ulp, the sum within a few: 8 ulp relative
        close_where_finite(a[pre + "y"], p[pre + "y"], 8 * EPS64, 1e-300, pre + "y")
        # log_softmax, lse: log(sum) off by a few ulp of the sum, absolutely
        close_where_finite(a[pre + "ly"], p[pre + "ly"], 2e-15, 2e-15, pre + "ly")
        for ls in (0.0, 0.1):
            lse = p[pre + f"lse{ls}"]
            close_where_finite(a[pre + f"lse{ls}"], lse, 2e-15, 2e-15, pre + "lse")
            # the loss is lse minus exact terms: lse's difference
            close_where_finite(a[pre + f"loss{ls}"], p[pre + f"loss{ls}"], 2e-15,
                               2e-15 * (1 + np.abs(lse)), pre + "loss")
            # g (p - off - on [c == t]): p within 8 ulp, p <= 1
            close_where_finite(a[pre + f"dce{ls}"], p[pre + f"dce{ls}"], 4 * EPS64,
                               8 * EPS64 * g + 1e-300, pre + "dce")
        # the backwards take each path's own forward: its difference carried
        y = p[pre + "y"]
        s_abs = np.nansum(np.abs(dy * y), axis=1, keepdims=True)
        close_where_finite(a[pre + "dsm"], p[pre + "dsm"], 4 * EPS64,
                           16 * EPS64 * np.abs(y) * (np.abs(dy) + 2 * s_abs) + 1e-300,
                           pre + "dsm")
        ly = p[pre + "ly"]
        s = np.abs(dy.sum(axis=1, keepdims=True))
        close_where_finite(a[pre + "dlsm"], p[pre + "dlsm"], 4 * EPS64,
                           np.exp(ly) * s * 2e-15 * (2 + np.abs(ly)) + 4 * EPS64 * np.abs(dy),
                           pre + "dlsm")


def float64_gelu_rows_close(a, p, pre, inp):
    """The vectorised float64 GELU rows (erf and tanh forms, with and
    without bias, forward, backward and dbias) against the portable ones:
    4 (ulp(y) + eps |z|) forward, 4 (ulp(g) + eps |dy| (1 + |z|))
    backward, dbias within the backward's bound summed over its column."""
    dy = np.abs(inp["dy"])
    with np.errstate(all="ignore"):
        zb, z0 = np.abs(inp["x"] + inp["b"]), np.abs(inp["x"])
        for act in ("gelu", "gelu_tanh"):
            for y, z in (("_y", zb), ("_y0", z0)):
                ref = p[pre + act + y]
                close_where_finite(a[pre + act + y], ref, 0,
                                   4 * (np.spacing(np.abs(ref)) + EPS64 * z), pre + act + y)
            bound = {}
            for d, z in (("_dx", zb), ("_dx0", z0)):
                ref = p[pre + act + d]
                bound[d] = 4 * (np.spacing(np.abs(ref)) + EPS64 * dy * (1 + z))
                close_where_finite(a[pre + act + d], ref, 0, bound[d], pre + act + d)
            # dbias sums the dx column in the same order: the bound summed
            close_where_finite(a[pre + act + "_db"], p[pre + act + "_db"], 4 * EPS64,
                               np.nansum(np.where(np.isfinite(bound["_dx"]),
                                                  bound["_dx"], 0), axis=0) + 1e-300,
                               pre + act + "_db")
