"""The AVX-512 attention tiles (csrc/attention_tile_avx512.c) against the
AVX2 and portable paths and the NumPy reference.

Each ISA level runs in its own subprocess (PT_ISA=avx512, avx2, portable),
which computes the same cases and saves them; the test compares the files.
Cases: forward (tiled and weights paths) and backward, causal and not,
no mask, a boolean mask with fully masked rows, a key-padding mask (the
tiled forward's padded-key skip), a mask that hides the first key tile
from every third query row (the online softmax's first finite row max
comes in a later tile, beside rows whose max only grows), NaN in q,
float32 and float64, sizes around the tile edges (T and D not multiples
of 16 or 8, D from 1 to 129).

Tolerances:
  * AVX-512 vs AVX2: bitwise equal, NaN in the same places. The AVX-512
    product computes each element with the same FMA chain as the AVX2 one,
    its row exp with the same operations and the same lane structure of
    the row sums, so nothing may differ.
  * AVX-512 vs portable: the AVX2 path's own tolerance (FMA rounds a*b+c
    once; the float32 exp is 2^t (csrc/pt_exp2f_x86.h) where the portable
    path uses pt_expf, both within 2.2e-7 relative of exp near the row
    max; sums in another order):
    float32 rtol = atol = 1e-4 for outputs and weights, 1e-3 for
    gradients; float64 1e-12 and 1e-11.
  * AVX-512 vs pytransformer.reference (float64 NumPy): float32 2e-4 / 2e-3,
    float64 1e-10 / 1e-9, as test_attention.py.
  * Thread counts 1, 2 and 3 on the AVX-512 path: bitwise equal.

Skipped, with the reason, where the CPU (or the OS) does not run AVX-512
F/BW/DQ/VL.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pytransformer import _core
from pytransformer.reference import _attention as ref


HAVE_AVX512 = _core.isa_info()["cpu_isa"] == "avx512"
pytestmark = pytest.mark.skipif(not HAVE_AVX512,
                                reason="the CPU (or the OS) does not run AVX-512 F/BW/DQ/VL: "
                                       "no AVX-512 attention path to test")

# (B, H, Tq, Tk, D, Dv): tile edges are 64 (query and key tiles), 6 rows
# and 64 float / 32 double columns (register blocks), 16 / 8 lanes.
SHAPES = [(1, 1, 1, 1, 1, 1), (2, 3, 17, 33, 1, 2), (1, 2, 15, 65, 7, 16),
          (2, 1, 64, 64, 64, 64), (1, 2, 70, 131, 13, 9), (1, 1, 65, 100, 33, 17),
          (1, 1, 130, 63, 80, 96), (1, 1, 31, 129, 128, 129), (1, 2, 100, 70, 129, 31)]
MASKS = ["none", "bool", "pad", "late"]

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import pytransformer as pt
    from pytransformer import ops
    from pytransformer import _core
    assert _core.isa_info()["kernels"]["attention"] == {isa!r}, _core.isa_info()
    SHAPES, MASKS = {shapes!r}, {masks!r}
    threads = {threads!r}
    res = {{}}
    for dt in (np.float32, np.float64):
        for si, (B, H, Tq, Tk, D, Dv) in enumerate(SHAPES):
            rng = np.random.default_rng(si)
            q, k = (rng.standard_normal((B, H, T, D)).astype(dt) for T in (Tq, Tk))
            v = rng.standard_normal((B, H, Tk, Dv)).astype(dt)
            g = rng.standard_normal((B, H, Tq, Dv)).astype(dt)
            for mk in MASKS:
                if mk == "bool":
                    m = rng.random((B, 1, Tq, Tk)) > 0.3
                    m[:, :, 0, :] = False                       # a fully masked row
                elif mk == "pad":
                    m = np.ones((B, 1, 1, Tk), bool)
                    m[..., max(1, Tk - Tk // 3 - 5):] = False   # padded keys
                elif mk == "late":
                    m = np.ones((B, 1, Tq, Tk), bool)
                    m[:, :, 1::3, :min(64, Tk - 1)] = False     # first key tile hidden
                else:
                    m = None
                for causal in (False, True):
                    key = f"{{dt.__name__}}-{{si}}-{{mk}}-{{causal}}"
                    for n in threads:
                        pt.set_num_threads(n)
                        out, lse, _ = ops.attention_forward(q, k, v, m, is_causal=causal)
                        ow, w = ops.scaled_dot_product_attention(q, k, v, m, is_causal=causal,
                                                                 need_weights=True)
                        grads = ops.attention_backward(g, q, k, v, out, lse, m, is_causal=causal)
                        for name, a in zip(("out", "lse", "ow", "w", "dq", "dk", "dv"),
                                           (out, lse, ow, w) + tuple(grads)):
                            res[f"{{key}}-{{name}}-t{{n}}"] = a
            if si == 4:                                     # NaN propagation
                qn = q.copy()
                qn[0, 0, 3, 2] = np.nan
                out, lse, _ = ops.attention_forward(qn, k, v)
                res[f"{{dt.__name__}}-nan-out-t0"] = out
                res[f"{{dt.__name__}}-nan-dq-t0"] = ops.attention_backward(g, qn, k, v, out, lse)[0]
    np.savez(sys.argv[1], **res)
""")


def _run(tmp_path, isa, threads=(2,)):
    path = tmp_path / f"{isa}.npz"
    code = CHILD.format(shapes=SHAPES, masks=MASKS, threads=list(threads), isa=isa)
    env = dict(os.environ, PT_ISA=isa)
    env.pop("PT_PORTABLE", None)
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(path))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("att512")
    return {isa: _run(tmp, isa, (1, 2, 3) if isa == "avx512" else (2,))
            for isa in ("avx512", "avx2", "portable")}


def _tol(key):
    """The AVX-512 (= AVX2) vs portable tolerance of a result (see above)."""
    grad = key.split("-")[-2] in ("dq", "dk", "dv")
    if key.startswith("float32"):
        return 1e-3 if grad else 1e-4
    return 1e-11 if grad else 1e-12


def test_avx512_path_is_bitwise_the_avx2_path(results):
    a, b = results["avx512"], results["avx2"]
    keys = [k for k in b if k.endswith("-t2") or k.endswith("-t0")]
    assert keys and set(keys) <= set(a)
    for k in keys:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_avx512_path_matches_portable(results):
    a, p = results["avx512"], results["portable"]
    keys = [k for k in p if k.endswith("-t2") or k.endswith("-t0")]
    for k in keys:
        tol = _tol(k)
        np.testing.assert_allclose(a[k], p[k], rtol=tol, atol=tol, err_msg=k)


def test_avx512_path_is_thread_count_independent(results):
    a = results["avx512"]
    for k in a:
        if k.endswith("-t1"):
            for n in (2, 3):
                np.testing.assert_array_equal(a[k], a[k[:-1] + str(n)], err_msg=f"{k} vs {n}")


def test_avx512_path_matches_reference(results):
    a = results["avx512"]
    for dt in (np.float32, np.float64):
        f32 = dt == np.float32
        tol, gtol = (2e-4, 2e-3) if f32 else (1e-10, 1e-9)
        for si, (B, H, Tq, Tk, D, Dv) in enumerate(SHAPES):
            rng = np.random.default_rng(si)
            q, k = (rng.standard_normal((B, H, T, D)).astype(dt) for T in (Tq, Tk))
            v = rng.standard_normal((B, H, Tk, Dv)).astype(dt)
            g = rng.standard_normal((B, H, Tq, Dv)).astype(dt)
            for mk in MASKS:
                if mk == "bool":
                    m = rng.random((B, 1, Tq, Tk)) > 0.3
                    m[:, :, 0, :] = False
                elif mk == "pad":
                    m = np.ones((B, 1, 1, Tk), bool)
                    m[..., max(1, Tk - Tk // 3 - 5):] = False
                elif mk == "late":
                    m = np.ones((B, 1, Tq, Tk), bool)
                    m[:, :, 1::3, :min(64, Tk - 1)] = False
                else:
                    m = None
                for causal in (False, True):
                    key = f"{dt.__name__}-{si}-{mk}-{causal}"
                    want = ref.scaled_dot_product_attention(q, k, v, m, is_causal=causal)
                    for name in ("out", "ow"):
                        np.testing.assert_allclose(a[f"{key}-{name}-t2"], want, rtol=tol,
                                                   atol=tol, err_msg=key)
                    wg = ref.attention_backward(g, q, k, v, m, is_causal=causal)
                    for name, w in zip(("dq", "dk", "dv"), wg):
                        np.testing.assert_allclose(a[f"{key}-{name}-t2"], w, rtol=gtol,
                                                   atol=gtol, err_msg=f"{key}-{name}")


def test_avx512_path_special_rows(results):
    """A fully masked row gives zeros (and lse -inf, no gradient); a NaN in
    q makes its row's output NaN and leaves the other rows finite."""
    a = results["avx512"]
    for dt in ("float32", "float64"):
        for causal in (False, True):
            key = f"{dt}-4-bool-{causal}"
            assert (a[f"{key}-out-t2"][:, :, 0] == 0).all()
            assert (a[f"{key}-ow-t2"][:, :, 0] == 0).all()
            assert np.isneginf(a[f"{key}-lse-t2"][:, :, 0]).all()
            assert (a[f"{key}-dq-t2"][:, :, 0] == 0).all()
        out = a[f"{dt}-nan-out-t0"]
        assert np.isnan(out[0, 0, 3]).all()
        others = np.ones(out.shape[:3], bool)
        others[0, 0, 3] = False
        assert np.isfinite(out[others]).all()
