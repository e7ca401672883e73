"""scaled_dot_product_attention: forward (weights and tiled paths) and
backward against the NumPy reference, finite differences, masks, causal,
fully masked rows, extreme logits, thread-count determinism, bad inputs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pytransformer import _core
from pytransformer.ops._attention import (attention_backward, attention_forward,
                                         scaled_dot_product_attention)
from pytransformer.reference import _attention as ref
from tests.helpers import numeric_grad, rand, seeds

# The kernel's key tile and query tile are both 64 (lengths around and
# beyond them exercise partial tiles and several tiles); its register
# blocks are 6 rows x 16 float / 8 double columns.
lengths = st.sampled_from([0, 1, 2, 3, 5, 17, 31, 33, 64, 65, 130])
heads = st.sampled_from([1, 2, 3, 8, 9, 64])

# Tolerances: the kernel sums D products, Tk exponentials and Tk P*v terms
# in the working precision; the reference works in float64. Outputs are
# convex combinations of v rows (|v| ~ 1), so an absolute floor is apt.
TOL = {np.float32: dict(rtol=1e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
GTOL = {np.float32: dict(rtol=1e-3, atol=1e-4), np.float64: dict(rtol=1e-9, atol=1e-11)}


def make_mask(rng, kind, B, H, Tq, Tk, dtype):
    """None, a random boolean mask with some fully masked rows, or an additive
    float mask, each in a broadcast shape."""
    if kind == "none":
        return None
    shape = [(B, H, Tq, Tk), (Tq, Tk), (1, H, 1, Tk), (B, 1, Tq, 1), (Tk,)][rng.integers(5)]
    if kind == "bool":
        m = rng.random(shape) < 0.7
        if m.ndim >= 2 and m.shape[-2] > 1:
            m[..., 0, :] = False                    # a fully masked row
        return m
    m = rng.standard_normal(shape).astype(dtype)
    m[rng.random(shape) < 0.2] = -np.inf
    return m


@given(B=st.sampled_from([1, 2]), H=st.sampled_from([1, 3]), Tq=lengths, Tk=lengths,
       D=heads, Dv=heads, dtype=st.sampled_from([np.float32, np.float64]),
       mask=st.sampled_from(["none", "bool", "float"]), causal=st.booleans(),
       scale=st.sampled_from([None, 0.3, 2.0]), seed=seeds)
def test_forward_backward_match_reference(B, H, Tq, Tk, D, Dv, dtype, mask, causal, scale, seed):
    rng = np.random.default_rng(seed)
    q, k = rand(rng, (B, H, Tq, D), dtype), rand(rng, (B, H, Tk, D), dtype)
    v, g = rand(rng, (B, H, Tk, Dv), dtype), rand(rng, (B, H, Tq, Dv), dtype)
    m = make_mask(rng, mask, B, H, Tq, Tk, dtype)
    ro, rw = ref.scaled_dot_product_attention(q, k, v, m, causal, scale, need_weights=True)
    o, w = scaled_dot_product_attention(q, k, v, m, causal, scale, need_weights=True)
    assert o.dtype == dtype and o.shape == (B, H, Tq, Dv) and w.shape == (B, H, Tq, Tk)
    np.testing.assert_allclose(w, rw, **TOL[dtype])
    np.testing.assert_allclose(o, ro, **TOL[dtype])
    o2, lse, w2 = attention_forward(q, k, v, m, causal, scale)            # tiled path
    assert w2 is None
    np.testing.assert_allclose(o2, ro, **TOL[dtype])
    assert np.isfinite(o2).all()
    dq, dk, dv = attention_backward(g, q, k, v, o2, lse, m, causal, scale)
    rdq, rdk, rdv = ref.attention_backward(g, q, k, v, m, causal, scale)
    s = np.sqrt(max(Tq, Tk, 1))
    for name, a, b in (("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        np.testing.assert_allclose(a, b, rtol=GTOL[dtype]["rtol"], atol=GTOL[dtype]["atol"] * s,
                                   err_msg=name)


@pytest.mark.parametrize("Tk", [200, 1000])   # > the key tile, not a multiple of it
@pytest.mark.parametrize("causal", [False, True])
def test_long_keys_tiled_path(Tk, causal):
    rng = np.random.default_rng(Tk)
    q, k = rand(rng, (2, 2, 70, 16), np.float32), rand(rng, (2, 2, Tk, 16), np.float32)
    v = rand(rng, (2, 2, Tk, 24), np.float32)
    m = rng.random((70, Tk)) < 0.9
    ro = ref.scaled_dot_product_attention(q, k, v, m, causal)
    np.testing.assert_allclose(scaled_dot_product_attention(q, k, v, m, causal), ro, **TOL[np.float32])
    o, w = scaled_dot_product_attention(q, k, v, m, causal, need_weights=True)
    np.testing.assert_allclose(o, ro, **TOL[np.float32])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("D, Dv", [(5, 13), (24, 40), (72, 7), (128, 16)])
def test_tile_edges_head_dims(D, Dv, dtype):
    # Head dims that leave partial register blocks (6 rows x 2 SIMD vectors
    # of columns, masked) in every tile product, with lengths that leave
    # partial query and key tiles, forward and backward, causal or not.
    rng = np.random.default_rng(D * 1000 + Dv)
    for Tq, Tk, causal in ((1, 127, False), (67, 130, True), (130, 67, False), (127, 127, True)):
        q, k = rand(rng, (1, 2, Tq, D), dtype), rand(rng, (1, 2, Tk, D), dtype)
        v, g = rand(rng, (1, 2, Tk, Dv), dtype), rand(rng, (1, 2, Tq, Dv), dtype)
        ro = ref.scaled_dot_product_attention(q, k, v, None, causal)
        o, lse, _ = attention_forward(q, k, v, None, causal)
        np.testing.assert_allclose(o, ro, **TOL[dtype])
        o2, w = scaled_dot_product_attention(q, k, v, None, causal, need_weights=True)
        np.testing.assert_allclose(o2, ro, **TOL[dtype])
        grads = attention_backward(g, q, k, v, o, lse, None, causal)
        rgrads = ref.attention_backward(g, q, k, v, None, causal)
        s = np.sqrt(max(Tq, Tk))
        for name, a, b in zip(("dq", "dk", "dv"), grads, rgrads):
            np.testing.assert_allclose(a, b, rtol=GTOL[dtype]["rtol"],
                                       atol=GTOL[dtype]["atol"] * s, err_msg=name)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", ["none", "bool", "float"])
def test_gradient_by_finite_differences(causal, mask):
    rng = np.random.default_rng(3)
    B, H, Tq, Tk, D, Dv = 1, 2, 5, 7, 3, 4
    q, k, v = rng.standard_normal((B, H, Tq, D)), rng.standard_normal((B, H, Tk, D)), \
        rng.standard_normal((B, H, Tk, Dv))
    m = make_mask(rng, mask, B, H, Tq, Tk, np.float64)
    if mask == "bool":
        m = np.broadcast_to(m, (B, H, Tq, Tk)).copy()
        m[0, 0, 1] = False                       # a fully masked row
        m[..., 2:, 0] = True                     # rows with at least one key
    g = rng.standard_normal((B, H, Tq, Dv))
    loss = lambda: float((scaled_dot_product_attention(q, k, v, m, causal, 0.7) * g).sum())
    o, lse, _ = attention_forward(q, k, v, m, causal, 0.7)
    dq, dk, dv = attention_backward(g, q, k, v, o, lse, m, causal, 0.7)
    for name, a, x in (("dq", dq, q), ("dk", dk, k), ("dv", dv, v)):
        np.testing.assert_allclose(a, numeric_grad(loss, x), rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fully_masked_rows_give_zeros(dtype):
    rng = np.random.default_rng(4)
    q, k, v = (rand(rng, (2, 3, 6, 4), dtype), rand(rng, (2, 3, 9, 4), dtype),
               rand(rng, (2, 3, 9, 5), dtype))
    m = np.ones((6, 9), bool)
    m[2] = False
    fm = np.where(m, 0, -np.inf).astype(dtype)
    for mask in (m, fm):
        for need in (False, True):
            o, lse, w = attention_forward(q, k, v, mask, need_weights=need)
            assert np.isfinite(o).all() and (o[:, :, 2] == 0).all()
            assert (lse[:, :, 2] == -np.inf).all() and np.isfinite(np.delete(lse, 2, 2)).all()
            if need:
                assert (w[:, :, 2] == 0).all()
        g = rand(rng, o.shape, dtype)
        dq, dk, dv = attention_backward(g, q, k, v, o, lse, mask)
        assert (dq[:, :, 2] == 0).all()
        assert all(np.isfinite(a).all() for a in (dq, dk, dv))
    # every row masked: all zeros, all gradients zero
    o, lse, _ = attention_forward(q, k, v, np.zeros((9,), bool))
    assert (o == 0).all() and (lse == -np.inf).all()
    assert all((a == 0).all() for a in attention_backward(o + 1, q, k, v, o, lse, np.zeros((9,), bool)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_lengths(dtype):
    z = lambda *s: np.zeros(s, dtype)
    o, lse, w = attention_forward(z(2, 1, 3, 4), z(2, 1, 0, 4), z(2, 1, 0, 5), need_weights=True)
    assert o.shape == (2, 1, 3, 5) and (o == 0).all() and (lse == -np.inf).all() and w.shape == (2, 1, 3, 0)
    assert scaled_dot_product_attention(z(2, 1, 0, 4), z(2, 1, 3, 4), z(2, 1, 3, 5)).shape == (2, 1, 0, 5)
    assert scaled_dot_product_attention(z(0, 1, 2, 4), z(0, 1, 3, 4), z(0, 1, 3, 5)).shape == (0, 1, 2, 5)
    o = scaled_dot_product_attention(z(1, 1, 2, 0), z(1, 1, 3, 0), np.ones((1, 1, 3, 2), dtype))
    np.testing.assert_allclose(o, 1)                 # D = 0: uniform weights
    dq, dk, dv = attention_backward(z(2, 1, 0, 5), z(2, 1, 0, 4), z(2, 1, 3, 4), z(2, 1, 3, 5),
                                    z(2, 1, 0, 5), z(2, 1, 0))
    assert dk.shape == (2, 1, 3, 4) and (dk == 0).all() and (dv == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_extreme_logits_stay_finite(dtype, causal):
    rng = np.random.default_rng(5)
    q = rand(rng, (1, 2, 40, 8), dtype, scale=1e3)
    k, v = rand(rng, (1, 2, 100, 8), dtype), rand(rng, (1, 2, 100, 8), dtype)
    for need in (False, True):
        o, lse, _ = attention_forward(q, k, v, is_causal=causal, need_weights=need)
        assert np.isfinite(o).all() and np.isfinite(lse).all()
        np.testing.assert_allclose(o, ref.scaled_dot_product_attention(q, k, v, None, causal),
                                   rtol=1e-3, atol=1e-3)   # P is near one-hot: ties are fragile
    grads = attention_backward(rand(rng, o.shape, dtype), q, k, v, o, lse, is_causal=causal)
    assert all(np.isfinite(a).all() for a in grads)


@pytest.mark.parametrize("B, H", [(2, 3), (1, 1)])   # (1, 1): backward splits by tiles
@pytest.mark.parametrize("causal", [False, True])
def test_results_do_not_depend_on_thread_count(B, H, causal):
    rng = np.random.default_rng(6)
    q, k, v = (rand(rng, (B, H, 100, 16), np.float32), rand(rng, (B, H, 150, 16), np.float32),
               rand(rng, (B, H, 150, 24), np.float32))
    g = rand(rng, (B, H, 100, 24), np.float32)
    m = rng.random((H, 100, 150)) < 0.8
    old = _core.get_num_threads()
    res = []
    try:
        for n in (1, 2, 3):
            _core.set_num_threads(n)
            o, lse, w = attention_forward(q, k, v, m, causal, need_weights=True)
            o2, lse2, _ = attention_forward(q, k, v, m, causal)
            res.append((o, lse, w, o2, lse2) + attention_backward(g, q, k, v, o2, lse2, m, causal))
    finally:
        _core.set_num_threads(old)
    for other in res[1:]:
        for a, b in zip(res[0], other):
            np.testing.assert_array_equal(a, b)
    rdq, rdk, rdv = ref.attention_backward(g, q, k, v, m, causal)
    for a, b in zip(res[1][5:], (rdq, rdk, rdv)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("BH", [1, 4])
def test_full_blocks_do_not_depend_on_thread_count(BH):
    # D = Dv = 64 and T = 200: full AVX2 register blocks plus partial tiles;
    # BH = 1 takes the backward's two-pass split when threads > 1.
    rng = np.random.default_rng(BH)
    q, k, v, g = (rand(rng, (1, BH, 200, 64), np.float32) for _ in range(4))
    old = _core.get_num_threads()
    res = []
    try:
        for n in (1, 2, 4):
            _core.set_num_threads(n)
            o, lse, _ = attention_forward(q, k, v, None, True)
            res.append((o, lse) + attention_backward(g, q, k, v, o, lse, None, True))
    finally:
        _core.set_num_threads(old)
    for other in res[1:]:
        for a, b in zip(res[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("Tq, Tk", [(420, 420), (420, 300), (300, 520)])
@pytest.mark.parametrize("causal", [False, True])
def test_query_tile_groups_do_not_change_results(Tq, Tk, causal):
    # The tiled forward runs groups of query tiles against each key tile;
    # its group size follows the task count per thread: at B x H = 2 and
    # 5-9 query tiles, groups of 4 (and a shorter last one) at 1 thread,
    # 2 at 2 threads and 1 at 3. A key-padding mask (different lengths per
    # sequence) gives the tiles of a group different key ends.
    rng = np.random.default_rng(11)
    q, k, v = (rand(rng, (2, 1, T, 64), np.float32) for T in (Tq, Tk, Tk))
    lens = np.array([Tk, Tk // 2 + 7])
    m = (np.arange(Tk)[None, :] < lens[:, None])[:, None, None, :]
    old = _core.get_num_threads()
    res = []
    try:
        for n in (1, 2, 3):
            _core.set_num_threads(n)
            res.append(attention_forward(q, k, v, None, causal)[:2]
                       + attention_forward(q, k, v, m, causal)[:2])
    finally:
        _core.set_num_threads(old)
    for other in res[1:]:
        for a, b in zip(res[0], other):
            np.testing.assert_array_equal(a, b)
    for i, mk in ((0, None), (2, m)):
        np.testing.assert_allclose(res[0][i], ref.scaled_dot_product_attention(q, k, v, mk, causal),
                                   **TOL[np.float32])


def test_long_sequence_tiled_memory():
    # T = 4096: the tiled path holds no T x T buffer; compare a few rows
    # against the reference computed only for those rows.
    rng = np.random.default_rng(7)
    T, D = 4096, 8
    q, k, v = (rand(rng, (1, 1, T, D), np.float32) for _ in range(3))
    for causal in (False, True):
        o = scaled_dot_product_attention(q, k, v, is_causal=causal)
        rows = [0, 1, 1000, 4095]
        for i in rows:
            kk, vv = (k, v) if not causal else (k[:, :, :i + 1], v[:, :, :i + 1])
            r = ref.scaled_dot_product_attention(q[:, :, i:i + 1], kk, vv)
            np.testing.assert_allclose(o[:, :, i:i + 1], r, **TOL[np.float32])


def test_out_argument_and_non_contiguous():
    rng = np.random.default_rng(8)
    q, k, v = (rand(rng, (1, 2, 6, 8), np.float32) for _ in range(3))
    out = np.empty((1, 2, 6, 8), np.float32)
    assert scaled_dot_product_attention(q, k, v, out=out) is out
    qt = rand(rng, (1, 2, 8, 6), np.float32).transpose(0, 1, 3, 2)
    np.testing.assert_allclose(scaled_dot_product_attention(qt, k, v),
                               ref.scaled_dot_product_attention(np.ascontiguousarray(qt), k, v),
                               **TOL[np.float32])
    m = (rng.random((6, 6)) < 0.7)[:, ::-1] | np.eye(6, dtype=bool)      # non-contiguous mask
    np.testing.assert_allclose(scaled_dot_product_attention(q, k, v, m),
                               ref.scaled_dot_product_attention(q, k, v, np.ascontiguousarray(m)),
                               **TOL[np.float32])


@pytest.mark.parametrize("need", [False, True])
def test_nan_propagates(need):
    rng = np.random.default_rng(9)
    q, k, v = (rand(rng, (1, 1, 4, 8), np.float32), rand(rng, (1, 1, 70, 8), np.float32),
               rand(rng, (1, 1, 70, 8), np.float32))
    q[0, 0, 1] = np.nan                          # a whole row of NaN scores
    k[0, 0, 66] = np.nan                         # one NaN score per row, in the 2nd tile
    o, lse, _ = attention_forward(q, k, v, need_weights=need)
    assert np.isnan(o).all() and np.isnan(lse).all()
    k[0, 0, 66] = 0
    o, lse, _ = attention_forward(q, k, v, need_weights=need)
    assert np.isnan(o[0, 0, 1]).all() and np.isfinite(np.delete(o, 1, 2)).all()
    dq = attention_backward(np.ones_like(o), q, k, v, o, lse)[0]
    assert np.isnan(dq[0, 0, 1]).all() and np.isfinite(np.delete(dq, 1, 2)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padded_key_tail_is_skipped_exactly(dtype):
    # A key-padding mask (-inf on each sequence's last keys): the tiled
    # forward stops at the last visible key (rounded up to 16) when q, k, v
    # are finite and scores cannot overflow. The result must equal, bit for
    # bit, the same keys with the padded ones deleted; and a NaN / inf or an
    # overflowing score in the padded keys must still give NaN as the
    # reference does (the skip is then not taken).
    rng = np.random.default_rng(11)
    B, H, T, D = 4, 2, 100, 24
    lens = np.array([100, 37, 64, 3])
    q, k, v = (rand(rng, (B, H, T, D), dtype) for _ in range(3))
    pad = np.arange(T)[None, :] >= lens[:, None]
    for mask in (np.where(pad, -np.inf, 0).astype(dtype)[:, None, None, :],   # query-broadcast
                 np.broadcast_to(~pad[:, None, None, :], (B, H, T, T)).copy()):  # full bool
        out = scaled_dot_product_attention(q, k, v, mask)
        for b, n in enumerate(lens):
            alone = scaled_dot_product_attention(q[b:b + 1], k[b:b + 1, :, :n], v[b:b + 1, :, :n])
            np.testing.assert_array_equal(out[b:b + 1], alone)
        np.testing.assert_allclose(out, ref.scaled_dot_product_attention(q, k, v, mask),
                                   **TOL[dtype])
    mask = np.where(pad, -np.inf, 0).astype(dtype)[:, None, None, :]
    for name, poison in (("nan k", lambda q, k, v: k.__setitem__((1, 0, 90, 3), np.nan)),
                         ("inf v", lambda q, k, v: v.__setitem__((1, 0, 90, 3), np.inf)),
                         ("inf q", lambda q, k, v: q.__setitem__((1, 0, 5, 3), np.inf))):
        qq, kk, vv = q.copy(), k.copy(), v.copy()
        poison(qq, kk, vv)
        with np.errstate(all="ignore"):
            want = ref.scaled_dot_product_attention(qq, kk, vv, mask)
        got = scaled_dot_product_attention(qq, kk, vv, mask)
        assert np.isnan(want[1, 0]).any(), name
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
    # A score that overflows in the working precision at a padded key:
    # inf + (-inf) = NaN for that query row only (the reference works in
    # float64 and does not overflow, so the pattern is spelled out here).
    big = np.finfo(dtype).max ** 0.5
    qq, kk = q.copy(), k.copy()
    qq[1, 0, 5], kk[1, 0, 90] = big, big
    with np.errstate(all="ignore"):
        got = scaled_dot_product_attention(qq, kk, v, mask)
    expect_nan = np.zeros(got.shape, bool)
    expect_nan[1, 0, 5] = True
    np.testing.assert_array_equal(np.isnan(got), expect_nan)


def _qkv(dtype=np.float32):
    return (np.ones((2, 3, 4, 5), dtype), np.ones((2, 3, 6, 5), dtype), np.ones((2, 3, 6, 7), dtype))


@pytest.mark.parametrize("bad, err", [
    (lambda q, k, v: scaled_dot_product_attention(q.tolist(), k, v), TypeError),
    (lambda q, k, v: scaled_dot_product_attention(q.astype(np.int32), k, v), TypeError),
    (lambda q, k, v: scaled_dot_product_attention(q, k.astype(np.float64), v), TypeError),
    (lambda q, k, v: scaled_dot_product_attention(q[0], k[0], v[0]), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k[:, :, :, :4], v), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k[:1], v), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v[:, :, :5]), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v[:, :2]), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, np.ones((4, 5), bool)), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, np.ones((1, 2, 3, 4, 6), bool)), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, np.ones((4, 6), np.float64)), TypeError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, np.ones((4, 6), np.int64)), TypeError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, [[True] * 6] * 4), TypeError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, scale="x"), TypeError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, out=np.empty((2, 3, 4, 5), np.float32)), ValueError),
    (lambda q, k, v: scaled_dot_product_attention(q, k, v, out=np.empty((2, 3, 4, 7))), TypeError),
    (lambda q, k, v: attention_backward(np.ones((2, 3, 4, 5), np.float32), q, k, v,
                                        np.ones((2, 3, 4, 7), np.float32), np.ones((2, 3, 4), np.float32)),
     ValueError),
    (lambda q, k, v: attention_backward(np.ones((2, 3, 4, 7), np.float32), q, k, v,
                                        np.ones((2, 3, 4, 7), np.float32), np.ones((2, 3), np.float32)),
     ValueError),
])
def test_bad_input_raises(bad, err):
    with pytest.raises(err):
        bad(*_qkv())


def test_core_rejects_out_of_range_mask_strides():
    q, k, v = _qkv()
    out, lse = np.empty((2, 3, 4, 7), np.float32), np.empty((2, 3, 4), np.float32)
    m = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError):
        _core.attention_forward(out, lse, None, q, k, v, m, np.array([0, 0, 6, 2]), False, 1.0)
    with pytest.raises(ValueError):
        _core.attention_forward(out, lse, None, q, k, v, m, np.array([0, 0, 2**62, 2**62]), False, 1.0)
    with pytest.raises(ValueError):
        _core.attention_forward(out, lse, None, q, k, v, m, np.array([0, 0, -1, 1]), False, 1.0)


def test_portable_tile_kernels_in_subprocess():
    """PT_PORTABLE=1 makes the attention tiles skip their AVX2 versions: the
    portable C path must agree with the reference too (odd sizes, causal,
    masks, both dtypes)."""
    import os
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import numpy as np
        from pytransformer import ops, _core
        from pytransformer.reference import _attention as ref
        assert not _core.cpu_avx2_fma()
        rng = np.random.default_rng(0)
        for dt, tol in ((np.float32, 2e-4), (np.float64, 1e-10)):
            q = rng.standard_normal((2, 3, 70, 13)).astype(dt)
            k = rng.standard_normal((2, 3, 131, 13)).astype(dt)
            v = rng.standard_normal((2, 3, 131, 9)).astype(dt)
            g = rng.standard_normal((2, 3, 70, 9)).astype(dt)
            mask = rng.random((2, 1, 70, 131)) > 0.3
            for causal in (False, True):
                out, lse, _ = ops.attention_forward(q, k, v, mask, is_causal=causal)
                want = ref.scaled_dot_product_attention(q, k, v, mask, is_causal=causal)
                np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
                got = ops.attention_backward(g, q, k, v, out, lse, mask, is_causal=causal)
                for a, b in zip(got, ref.attention_backward(g, q, k, v, mask, is_causal=causal)):
                    np.testing.assert_allclose(a, b, rtol=10 * tol, atol=10 * tol)
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PT_PORTABLE="1"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
