"""Buffers an op writes (out=, grad buffers, AdamW state) that overlap an
array it reads: every such call either computes exactly what the
non-overlapping call computes, or raises ValueError naming both arguments.

The cases overlap in the two ways that matter: exactly (the same pointer,
shape and dtype: allowed where the kernel is elementwise or row-wise, see
pytransformer.validation) and shifted by one row (never allowed: a kernel
that writes row i while another row still reads it).
"""
import re

import numpy as np
import pytest

from pytransformer import ops

F64 = np.float64


def _rand(shape, seed=0, dt=F64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dt)


def _named(msg, *names):
    return all(re.search(r"(?<![A-Za-z0-9_])" + re.escape(n) + r"(?![A-Za-z0-9_])", msg)
               for n in names)


def _flat(result):
    if isinstance(result, tuple):
        return [r for r in result if r is not None]
    return [result] if result is not None else []


def _equal_or_rejected(call, want, names, must_reject=False):
    """Run call(); a ValueError must name every one of `names` (on one
    line); a result must equal `want` (the non-overlapping call's)."""
    try:
        got = call()
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg and _named(msg, *names), msg
        return "rejected"
    assert not must_reject, f"overlap of {names} was accepted"
    for g, w in zip(_flat(got), _flat(want)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    return "computed"


def _shifted(shape, seed=0):
    """(a, b): two C-contiguous float64 arrays of `shape` in one buffer, b
    starting one row (last-axis length) after a; a holds random values."""
    row = shape[-1]
    n = int(np.prod(shape))
    buf = _rand(n + row, seed)
    return buf[:n].reshape(shape), buf[row:].reshape(shape)


# ------------------------------------------------------------ reported cases

def test_linear_out_is_x_rejected_or_right():
    n = 64
    x, w, b = _rand((n, n), 1), _rand((n, n), 2), _rand(n, 3)
    want = ops.linear(x, w, b)
    _equal_or_rejected(lambda: ops.linear(x, w, b, out=x), want, ("out", "x"))
    _equal_or_rejected(lambda: ops.linear(x, w, b, out=w), want, ("out", "weight"))
    xs, out = _shifted((n, n), 4)
    want = ops.linear(xs, w, b)
    _equal_or_rejected(lambda: ops.linear(xs, w, b, out=out), want, ("out", "x"))


def test_linear_out_overlapping_bias_rejected_or_right():
    x, w = _rand((3, 4), 1), _rand((4, 4), 2)
    buf = _rand(12, 3)
    b, out = buf[:4], buf.reshape(3, 4)
    want = ops.linear(x, w, b.copy())
    _equal_or_rejected(lambda: ops.linear(x, w, b, out=out), want, ("out", "bias"))


def test_matmul_out_is_a_rejected_or_right():
    a, w = _rand((32, 32), 1), _rand((32, 32), 2)
    want = ops.matmul(a, w)
    _equal_or_rejected(lambda: ops.matmul(a, w, out=a), want, ("out", "a"))
    _equal_or_rejected(lambda: ops.matmul(a, w, out=w), want, ("out", "b"))
    _equal_or_rejected(lambda: ops.matmul(a, w, trans_b=True, out=w),
                       ops.matmul(a, w, trans_b=True), ("out", "b"))


def test_attention_out_is_q_rejected_or_right():
    q = _rand((2, 2, 8, 4), 1)
    want = ops.scaled_dot_product_attention(q, q, q)
    _equal_or_rejected(lambda: ops.scaled_dot_product_attention(q, q, q, out=q),
                       want, ("out", "q"))
    k, v = _rand((2, 2, 8, 4), 2), _rand((2, 2, 8, 4), 3)
    want = ops.attention_forward(q, k, v)
    for name, kw in (("k", dict(out=k)), ("v", dict(out=v))):
        _equal_or_rejected(lambda: ops.attention_forward(q, k.copy() if name != "k" else k,
                                                         v.copy() if name != "v" else v,
                                                         **kw),
                           want, ("out", name))


def test_attention_out_overlapping_float_mask_rejected_or_right():
    q, k, v = _rand((1, 1, 3, 4), 1), _rand((1, 1, 3, 4), 2), _rand((1, 1, 3, 4), 3)
    buf = np.zeros(12, F64)
    mask, out = buf[:9].reshape(3, 3), buf.reshape(1, 1, 3, 4)
    want = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask.copy())
    _equal_or_rejected(lambda: ops.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                 out=out),
                       want, ("out", "attn_mask"))


# --------------------------------------------------- elementwise / row-wise

ROWWISE = [
    ("relu", lambda x, out: ops.relu(x, out=out)),
    ("gelu", lambda x, out: ops.gelu(x, out=out)),
    ("gelu_tanh", lambda x, out: ops.gelu(x, "tanh", out=out)),
    ("bias_act", lambda x, out: ops.bias_act(x, np.linspace(-1, 1, x.shape[-1]), "gelu",
                                             out=out)),
    ("bias_act_none", lambda x, out: ops.bias_act(x, None, "relu", out=out)),
    ("softmax", lambda x, out: ops.softmax(x, out=out)),
    ("log_softmax", lambda x, out: ops.log_softmax(x, out=out)),
    ("layer_norm", lambda x, out: ops.layer_norm(x, np.ones(x.shape[-1]),
                                                 np.zeros(x.shape[-1]), out=out)),
    ("dropout", lambda x, out: ops.dropout(x, 0.3, seed=5, out=out)),
    ("dropout_eval", lambda x, out: ops.dropout(x, 0.3, seed=5, training=False, out=out)),
]


@pytest.mark.parametrize("name,fn", ROWWISE, ids=[n for n, _ in ROWWISE])
def test_rowwise_out_is_x_computes_in_place(name, fn):
    x = _rand((5, 7), 1)
    want = fn(x, None)
    got = fn(x, x)
    assert got is x
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name,fn", ROWWISE, ids=[n for n, _ in ROWWISE])
def test_rowwise_out_shifted_over_x_rejected_or_right(name, fn):
    x, out = _shifted((5, 7), 1)
    want = fn(x.copy(), None)
    _equal_or_rejected(lambda: fn(x, out), want, ("out", "x"))


def test_layer_norm_stat_buffers_must_not_overlap():
    x = _rand((4, 6), 1)
    want = ops.layer_norm_forward(x)
    mean = x.reshape(-1)[:4]
    _equal_or_rejected(lambda: ops.layer_norm_forward(x.copy(), mean_out=mean), want,
                       ("mean_out", "x"))
    buf = np.empty(5)
    _equal_or_rejected(lambda: ops.layer_norm_forward(x, mean_out=buf[:4], rstd_out=buf[1:]),
                       want, ("mean_out", "rstd_out"), must_reject=True)
    y = np.empty((4, 6))
    _equal_or_rejected(lambda: ops.layer_norm_forward(x, out=y, rstd_out=y.reshape(-1)[:4]),
                       want, ("out", "rstd_out"), must_reject=True)


def test_layer_norm_backward_grad_input_overlap():
    x, w = _rand((4, 6), 1), _rand(6, 2)
    _, mean, rstd = ops.layer_norm_forward(x, w)
    g = _rand((4, 6), 3)
    want = ops.layer_norm_backward(g, x, w, mean, rstd)
    # grad_input is grad_out exactly: documented in place
    g2 = g.copy()
    got = ops.layer_norm_backward(g2, x, w, mean, rstd, grad_input=g2)
    assert got[0] is g2
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    x2 = x.copy()
    _equal_or_rejected(lambda: ops.layer_norm_backward(g, x2, w, mean, rstd, grad_input=x2),
                       want, ("grad_input", "x"))
    gs, gi = _shifted((4, 6), 3)
    want = ops.layer_norm_backward(gs.copy(), x, w, mean, rstd)
    _equal_or_rejected(lambda: ops.layer_norm_backward(gs, x, w, mean, rstd, grad_input=gi),
                       want, ("grad_input", "grad_out"))


# ------------------------------------------------------------------ backward

def test_softmax_backward_out_overlap():
    y = ops.softmax(_rand((3, 4), 1))
    g = _rand((3, 4), 2)
    want = ops.softmax_backward(g, y)
    _equal_or_rejected(lambda: ops.softmax_backward(g, y, out=g), want, ("out", "grad_out"))
    _equal_or_rejected(lambda: ops.log_softmax_backward(g, y, out=y),
                       ops.log_softmax_backward(g, y), ("out", "y"))


def test_cross_entropy_backward_out_overlapping_lse_or_grad_loss():
    logits, t = _rand((3, 4), 1), np.array([0, 1, 3])
    _, lse = ops.cross_entropy_forward(logits, t)
    want = ops.cross_entropy_backward(1.0, logits, t, lse)
    buf = np.zeros(12)
    out = buf.reshape(3, 4)
    lse_in = buf[9:]
    lse_in[:] = lse
    _equal_or_rejected(lambda: ops.cross_entropy_backward(1.0, logits, t, lse_in, out=out),
                       want, ("out", "lse"))
    g = _rand(3, 4)
    want = ops.cross_entropy_backward(g, logits, t, lse, reduction="none")
    buf = np.zeros(12)
    buf[:3] = g
    _equal_or_rejected(lambda: ops.cross_entropy_backward(buf[:3], logits, t, lse,
                                                          reduction="none",
                                                          out=buf.reshape(3, 4)),
                       want, ("out", "grad_loss"))
    _equal_or_rejected(lambda: ops.cross_entropy_backward(1.0, logits, t, lse,
                                                          out=logits),
                       ops.cross_entropy_backward(1.0, logits, t, lse), ("out", "logits"))


def test_embedding_out_overlapping_weight():
    w = _rand((6, 4), 1)
    ids = np.array([[0, 1], [5, 2]])
    want = ops.embedding(ids, w)
    out = w[:4].reshape(2, 2, 4)
    _equal_or_rejected(lambda: ops.embedding(ids, w, out=out), want, ("out", "weight"))


def test_embedding_out_overlapping_ids():
    w = _rand((6, 2), 1)
    ids = np.array([0, 1, 5, 2], np.int64)
    want = ops.embedding(ids, w)
    buf = np.zeros(8, np.int64)
    buf[:4] = ids
    out = buf.view(F64).reshape(4, 2)
    _equal_or_rejected(lambda: ops.embedding(buf[:4], w, out=out), want, ("out", "ids"))


def test_embedding_backward_grad_weight_overlapping_grad_out():
    g = _rand((2, 3, 4), 1)
    ids = np.array([[0, 1, 2], [2, 1, 0]])
    want = ops.embedding_backward(g.copy(), ids, 3, grad_weight=g[0].copy())
    _equal_or_rejected(lambda: ops.embedding_backward(g, ids, 3, grad_weight=g[0]), want,
                       ("grad_weight", "grad_out"))


def test_dropout_backward_out_overlap():
    x = _rand((4, 8), 1)
    _, mask = ops.dropout_forward(x, 0.5, seed=3)
    g = _rand((4, 8), 2)
    want = ops.dropout_backward(g, mask, 0.5)
    g2 = g.copy()
    assert ops.dropout_backward(g2, mask, 0.5, out=g2) is g2      # elementwise in place
    np.testing.assert_array_equal(g2, want)
    gs, out = _shifted((4, 8), 2)
    want = ops.dropout_backward(gs.copy(), mask, 0.5)
    _equal_or_rejected(lambda: ops.dropout_backward(gs, mask, 0.5, out=out), want,
                       ("out", "grad_out"))
    buf = np.zeros(32, F64)
    m8 = buf.view(np.uint8)[:32].reshape(4, 8)
    m8[:] = mask
    want = ops.dropout_backward(g, mask, 0.5)
    _equal_or_rejected(lambda: ops.dropout_backward(g, m8, 0.5, out=buf.reshape(4, 8)),
                       want, ("out", "mask"))


@pytest.mark.parametrize("a,b", [("param", "grad"), ("param", "exp_avg"),
                                 ("exp_avg", "exp_avg_sq"), ("grad", "exp_avg_sq")])
def test_adamw_buffers_must_not_overlap(a, b):
    bufs = dict(param=_rand(8, 1), grad=_rand(8, 2), exp_avg=np.zeros(8), exp_avg_sq=np.zeros(8))
    shared = np.zeros(9)
    bufs[a] = shared[:8]
    bufs[b] = shared[1:]
    with pytest.raises(ValueError) as info:
        ops.adamw_step(step=1, **bufs)
    assert _named(str(info.value), a, b), str(info.value)


def test_non_contiguous_input_copied_so_out_may_overlap_it():
    # x is a strided view: the op reads a private C-ordered copy of it, so an
    # out in the same memory cannot change what is read
    buf = _rand((6, 8), 1)
    x = buf[:, ::2]                       # (6, 4), not contiguous
    w, b = _rand((4, 4), 2), _rand(4, 3)
    want = ops.linear(x.copy(), w, b)
    got = ops.linear(x, w, b, out=buf[:3].reshape(6, 4))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_zero_size_buffers_never_overlap():
    x = np.empty((0, 4))
    assert ops.linear(x, _rand((3, 4)), out=np.empty((0, 3))).shape == (0, 3)
    assert ops.softmax(x, out=x) is x


# --------------------------------------------------------- raw bindings
#
# A written buffer over an index array would let the kernel read ids it has
# just overwritten, i.e. out of bounds: the raw bindings refuse that too.

def _ids_and_out(n, c, dt=F64):
    buf = np.zeros(n * c, dt)
    ids = buf.view(np.int64)[:n]
    ids[:] = np.arange(n) % 3
    return ids, buf.reshape(n, c)


def test_embedding_backward_grad_weight_over_ids_refused():
    # ids that are already int64 and C-ordered reach the kernel as they are:
    # a grad_weight over them would be written while its ids are read
    ids, dw = _ids_and_out(8, 2)
    with pytest.raises(ValueError) as info:
        ops.embedding_backward(_rand((8, 2), 1), ids, 3, grad_weight=dw[:3])
    assert _named(str(info.value), "grad_weight", "ids"), str(info.value)


def test_cross_entropy_backward_out_over_targets_refused():
    logits = _rand((4, 3), 1)
    t, d = _ids_and_out(4, 3)
    _, lse = ops.cross_entropy_forward(logits, t.copy())
    with pytest.raises(ValueError) as info:
        ops.cross_entropy_backward(1.0, logits, t, lse, out=d)
    assert _named(str(info.value), "out", "targets"), str(info.value)


def test_no_overlap_helper_decides_strided_views_exactly():
    from pytransformer.validation import no_overlap
    buf = np.zeros(20)
    no_overlap((("out", buf[::2]),), (("x", buf[1::2]),))        # interleaved: disjoint
    with pytest.raises(ValueError, match=r"^out and x: must not overlap"):
        no_overlap((("out", buf[::2]),), (("x", buf[4::2]),))
    x = buf[:10]
    no_overlap((("out", x),), (("x", x),), (("out", "x"),))       # declared in place
    with pytest.raises(ValueError, match=r"^out and x:"):
        no_overlap((("out", x),), (("x", x),))
    with pytest.raises(ValueError, match=r"^out and x:"):            # same start, other shape
        no_overlap((("out", x),), (("x", buf[:5]),), (("out", "x"),))
    with pytest.raises(ValueError, match=r"^out and mean_out:"):
        no_overlap((("out", x), ("mean_out", buf[9:12])))
    no_overlap((("out", buf[:0]),), (("x", buf),))                # empty: never overlaps
