"""Causal attention: the diagonal tiles' skipped terms change nothing.

In the tile pair where query and key tiles coincide (csrc/attention.c,
"Causal diagonal tiles"), the products run only on the unmasked part when
the operands are finite. is_causal=True must then give exactly what the
same causal mask passed as attn_mask gives (a path that computes every
product in full and masks afterwards): outputs, lse and gradients equal
(assert_array_equal, for which -0 == +0: a shortened chain may differ only
in the sign of a zero). With inf or NaN in an operand, the causal path must
compute the full tile again, so that NaN lands where the masked path and
the NumPy reference put it.
"""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _core, ops
from pytransformer.reference import _attention as ref
from tests.helpers import use_isa

# (B, H, T, D, Dv): one tile, a partial diagonal tile, several tiles with
# a short last one, and D / Dv off the vector widths.
SHAPES = [(1, 2, 64, 64, 64), (2, 1, 37, 16, 24), (1, 2, 150, 64, 64), (1, 1, 200, 33, 17),
          (2, 2, 128, 8, 80)]


def _inputs(shape, dtype, seed=0):
    B, H, T, D, Dv = shape
    rng = np.random.default_rng(seed)
    q, k = (rng.standard_normal((B, H, T, D)).astype(dtype) for _ in range(2))
    v = rng.standard_normal((B, H, T, Dv)).astype(dtype)
    g = rng.standard_normal((B, H, T, Dv)).astype(dtype)
    return q, k, v, g


def _both(q, k, v, g):
    """(causal results, the same with an explicit causal mask): each a list
    out, lse, dq, dk, dv."""
    T = q.shape[2]
    mask = np.tril(np.ones((T, T), dtype=bool))
    res = []
    for kw in ({"is_causal": True}, {"attn_mask": mask}):
        out, lse, _ = ops.attention_forward(q, k, v, **kw)
        grads = ops.attention_backward(g, q, k, v, out, lse, **kw)
        res.append([out, lse, *grads])
    return res


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_causal_equals_explicit_mask(shape, dtype):
    q, k, v, g = _inputs(shape, dtype)
    causal, masked = _both(q, k, v, g)
    for name, a, b in zip(("out", "lse", "dq", "dk", "dv"), causal, masked):
        assert np.isfinite(a).all(), name
        np.testing.assert_array_equal(a, b, err_msg=name)
    want = ref.scaled_dot_product_attention(q, k, v, is_causal=True)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(causal[0], want, rtol=tol, atol=tol)


# Each case: a poison placed so that it reaches the second query tile's
# diagonal tile (rows and keys 64..127) only through masked terms, 20 keys
# or more from the rows it must turn to NaN (farther than a row group
# sums), where IEEE arithmetic on the full tile puts NaN: (result, rows,
# column).
NONFINITE = {
    "inf v": (lambda q, k, v, g: v.__setitem__((0, 0, 84, 3), np.inf),
              "out", slice(64, 84), 3),           # P[i, 84] = 0 times inf
    "nan k": (lambda q, k, v, g: k.__setitem__((0, 0, 84, 3), np.nan),
              "dq", slice(64, 84), 3),            # dS[i, 84] = 0 times NaN
    "inf dout": (lambda q, k, v, g: g.__setitem__((0, 0, 65, 3), np.inf),
                 "dv", slice(66, 128), 3),        # P[65, j] = 0 times inf
    "inf q": (lambda q, k, v, g: q.__setitem__((0, 0, 65, 3), np.inf),
              "dk", slice(66, 128), 3),           # dS[65, j] times inf
    # finite operands whose dot product overflows (in their dtype) only at
    # masked place (65, 84) of dout v^T: dS there is 0 times inf
    "huge dout v": (lambda q, k, v, g: (g.__setitem__((0, 0, 65), np.sqrt(np.finfo(g.dtype).max)),
                                        v.__setitem__((0, 0, 84), np.sqrt(np.finfo(g.dtype).max))),
                    "dq", slice(65, 66), slice(None)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("what", list(NONFINITE))
def test_causal_nonfinite_in_masked_part(what, dtype):
    poison, name, rows, col = NONFINITE[what]
    q, k, v, g = _inputs((1, 1, 150, 16, 16), dtype, seed=1)
    poison(q, k, v, g)
    with np.errstate(all="ignore"):
        out, lse, _ = ops.attention_forward(q, k, v, is_causal=True)
        dq, dk, dv = ops.attention_backward(g, q, k, v, out, lse, is_causal=True)
    got = {"out": out, "dq": dq, "dk": dk, "dv": dv}[name]
    assert np.isnan(got[0, 0, rows, col]).all(), (what, name)
    assert np.isfinite(out[0, 0, :64]).all() and np.isfinite(dq[0, 0, :64]).all(), what


# The poison as the last element of a partial diagonal tile (rows and keys
# 128..149, D = Dv = 17: 22 x 17 elements, not a whole number of vectors),
# where the finiteness scan reaches it in its tail: rows 128..139 (a row
# group that sums over keys < 140 only) must still turn NaN.
TAIL = {
    "inf v": (lambda q, k, v, g: v.__setitem__((0, 0, 149, 16), np.inf), "out"),
    "nan k": (lambda q, k, v, g: k.__setitem__((0, 0, 149, 16), np.nan), "dq"),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("what", list(TAIL))
def test_causal_nonfinite_in_the_tail_of_a_tile(what, dtype):
    poison, name = TAIL[what]
    q, k, v, g = _inputs((1, 1, 150, 17, 17), dtype, seed=3)
    poison(q, k, v, g)
    with np.errstate(all="ignore"):
        out, lse, _ = ops.attention_forward(q, k, v, is_causal=True)
        dq, dk, dv = ops.attention_backward(g, q, k, v, out, lse, is_causal=True)
    got = {"out": out, "dq": dq}[name]
    assert np.isnan(got[0, 0, 128:140, 16]).all(), (what, name)
    assert np.isfinite(out[0, 0, :128]).all() and np.isfinite(dq[0, 0, :128]).all(), what


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("what", ["nan lse", "inf out"])
def test_causal_backward_nonfinite_lse_or_out(what, dtype):
    # attention_backward takes lse and out from its caller. A NaN lse makes
    # row 65's P NaN, masked places included; an inf in out makes its Drow
    # non-finite, so dS = 0 x (dP - Drow) is NaN there: both reach the
    # diagonal tile's key rows 66..127 only through masked terms.
    q, k, v, g = _inputs((1, 1, 150, 16, 16), dtype, seed=2)
    out, lse, _ = ops.attention_forward(q, k, v, is_causal=True)
    if what == "nan lse":
        lse[0, 0, 65] = np.nan
        name = "dv"
    else:
        out[0, 0, 65, 3] = np.inf
        name = "dk"
    with np.errstate(all="ignore"):
        dq, dk, dv = ops.attention_backward(g, q, k, v, out, lse, is_causal=True)
    got = {"dk": dk, "dv": dv}[name]
    assert np.isnan(got[0, 0, 66:128]).all(), (what, name)
    assert np.isfinite(dq[0, 0, :64]).all() and np.isfinite(got[0, 0, 128:]).all(), what


# The same equality on every ISA level the CPU runs (helpers.use_isa), at
# 1 and 3 threads, with a key-padding mask besides (the diagonal tiles'
# masked path) and, in the backward, an lse of -inf or +inf in some rows
# (the diagonal tile's step on the stored products instead of mm_exp /
# mm_ds): each level's causal path computes what its masked path computes.
@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512"])
def test_causal_equals_explicit_mask_on_every_isa(isa):
    if isa not in _core.isa_levels_supported():
        pytest.skip(f"the CPU does not run {isa}")
    threads = pt.get_num_threads()
    try:
        with use_isa(isa):
            assert _core.isa_info()["kernels"]["attention"] == isa
            _causal_equals_explicit_mask()
    finally:
        pt.set_num_threads(threads)


def _causal_equals_explicit_mask():
    for dtype in (np.float32, np.float64):
        for B, H, T, D, Dv in SHAPES:
            rng = np.random.default_rng(T)
            q, k = (rng.standard_normal((B, H, T, D)).astype(dtype) for _ in range(2))
            v = rng.standard_normal((B, H, T, Dv)).astype(dtype)
            g = rng.standard_normal((B, H, T, Dv)).astype(dtype)
            tril = np.tril(np.ones((T, T), dtype=bool))
            pad = np.ones((B, 1, 1, T), dtype=bool)
            pad[..., T - T // 4:] = False
            for n in (1, 3):
                pt.set_num_threads(n)
                for extra in (None, pad):
                    res = []
                    for kw in ({"is_causal": True, "attn_mask": extra},
                               {"attn_mask": tril if extra is None else tril & extra}):
                        out, lse, _ = ops.attention_forward(q, k, v, **kw)
                        l2 = lse.copy()
                        l2[..., 1::5] = -np.inf
                        l2[..., 2::7] = np.inf
                        with np.errstate(all="ignore"):
                            res.append([out, lse,
                                        *ops.attention_backward(g, q, k, v, out, lse, **kw),
                                        *ops.attention_backward(g, q, k, v, out, l2, **kw)])
                    for name, a, b in zip(("out", "lse", "dq", "dk", "dv", "dq2", "dk2", "dv2"),
                                          *res):
                        np.testing.assert_array_equal(a, b, err_msg=f"{name} {T} {n} {dtype}")
