"""Coverage-style fuzz of pytransformer.ops against pytransformer.reference.

test_malformed.py throws malformed arguments (wrong types, dtypes, ndim,
read-only buffers, huge sizes) at each op. This file draws *plausible*
calls instead: random small shapes (zero-length dims included, and now and
then a mismatched one), float32/float64, random values, and input layouts
a caller really passes -- C-contiguous, strided, reversed, broadcast views
-- with out= absent, fresh, exactly an input, or overlapping an input one
row off. Property, per call:

  * it returns, and every result matches the NumPy reference computed on
    a snapshot of the inputs taken before the call, within the tolerances
    of tests/helpers.py; or
  * it raises TypeError/ValueError whose one-line message names an
    argument of the op.

Anything else -- another exception, a wrong number, a hang (each example
has a deadline) -- fails. Bounded: a fixed number of derandomized examples
per op family.
"""
import inspect
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pytransformer import ops
from pytransformer import reference as ref
from tests.helpers import FWD_TOL, GRAD_TOL

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
LAYOUTS = ("c", "strided", "reversed", "broadcast")
dims = st.sampled_from([0, 1, 2, 3, 5])


# ----------------------------------------------------------------- arrays

def _array(draw, shape, dt, scale=1.0, layout=None):
    """A float array of `shape` in a drawn layout (same values whatever the
    layout); 'broadcast' repeats its values along one drawn axis."""
    layout = layout or draw(st.sampled_from(LAYOUTS))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if layout == "broadcast" and len(shape) > 0:
        ax = draw(st.integers(0, len(shape) - 1))
        small = list(shape)
        small[ax] = min(1, shape[ax])
        base = (rng.standard_normal(small) * scale).astype(dt)
        return np.broadcast_to(base, shape)
    a = (rng.standard_normal(shape) * scale).astype(dt)
    if layout == "strided" and len(shape) > 0:
        buf = np.zeros(shape[:-1] + (2 * shape[-1],), dt)
        buf[..., ::2] = a
        return buf[..., ::2]
    if layout == "reversed" and len(shape) > 0:
        return a[::-1].copy()[::-1]
    # C order, at the start of a buffer one row longer, so that _out can
    # lay a buffer over it shifted by a row
    n, row = a.size, max(shape[-1], 1) if shape else 1
    buf = np.zeros(n + row, dt)
    buf[:n] = a.reshape(-1)
    return buf[:n].reshape(shape)


def _out(draw, shape, dt, inputs):
    """An out= argument: None, a fresh buffer, exactly one of `inputs`
    (name -> array), or a buffer overlapping one of them shifted by a row."""
    mode = draw(st.sampled_from(["none", "fresh", "exact", "shifted"]))
    if mode == "none":
        return None
    if mode == "fresh":
        return np.full(shape, np.nan, dt)
    name = draw(st.sampled_from(sorted(inputs)))
    a = inputs[name]
    if mode == "exact":
        return a
    # over the buffer `a` starts (see _array), one row of `shape` further on;
    # a fresh buffer when `a` has none to share
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    n, off = int(np.prod(shape, dtype=np.int64)), max(shape[-1], 1) if shape else 1
    if (root.ndim == 1 and root.dtype == dt and root.flags.writeable
            and root.flags.c_contiguous and root.size >= off + n
            and np.may_share_memory(root[off:off + n], a)):
        return root[off:off + n].reshape(shape)
    return np.full(shape, np.nan, dt)


def _snap(x):
    """A private copy of x (None stays None) for the reference."""
    return None if x is None else np.array(x, copy=True)


# --------------------------------------------------------------- judging

def _names(fn):
    return [p for p in inspect.signature(fn).parameters]


def _named(msg, names):
    return any(re.search(r"(?<![A-Za-z0-9_])" + re.escape(n) + r"(?![A-Za-z0-9_.])", msg)
               or re.search(r"(?<![A-Za-z0-9_])" + re.escape(n) + r"\.", msg)
               for n in names)


def _flat(r):
    if isinstance(r, tuple):
        return list(r)
    return [r]


def _close(got, want, dt, grad, scale):
    rtol, atol = (GRAD_TOL if grad else FWD_TOL)[np.dtype(dt).type]
    for g, w in zip(_flat(got), _flat(want)):
        if w is None:
            assert g is None
            continue
        g = np.asarray(g)
        assert g.shape == np.shape(w), (g.shape, np.shape(w))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol * scale)


def _run(fn, kw, want, dt, grad=False, scale=1.0, restore=()):
    """Call fn(**kw): an allowed refusal, or a result matching want().
    Afterwards each (array, snapshot) of `restore` gets its values back (an
    in-place call may have overwritten an input the next call reuses).

    Some reference functions cannot take a zero-length axis (a max over an
    empty row, a reshape of an empty array): for such calls only the op's
    own structure is checked (arrays of dtype dt, or None)."""
    try:
        got = [None if g is None else np.array(g, copy=True) for g in _flat(fn(**kw))]
    except (TypeError, ValueError) as e:
        msg = str(e)
        assert "\n" not in msg and _named(msg, _names(fn)), f"{type(e).__name__}: {msg}"
        return
    finally:
        for a, snap in restore:
            if a is not None and a.flags.writeable:
                np.copyto(a, snap)
    empty = any(isinstance(a, np.ndarray) and a.size == 0 for a in kw.values())
    try:
        expected = want()
    except ValueError:
        if not empty:
            raise
        for g in got:
            assert g is None or g.dtype == dt, g
        return
    _close(tuple(got), expected if isinstance(expected, tuple) else (expected,), dt, grad,
           scale)


FUZZ = settings(max_examples=120, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
dtypes = st.sampled_from([F32, F64])


# ------------------------------------------------------------------ cases

@FUZZ
@given(st.data(), dtypes)
def test_fuzz_matmul_linear(data, dt):
    draw = data.draw
    M, K, N = draw(dims), draw(dims), draw(dims)
    Kw = K if draw(st.integers(0, 9)) else K + 1          # now and then a mismatch
    x = _array(draw, (M, K), dt)
    w = _array(draw, (N, Kw), dt)
    b = _array(draw, (N,), dt) if draw(st.booleans()) else None
    xs, ws, bs = _snap(x), _snap(w), _snap(b)
    scale = max(K, 1)
    out = _out(draw, (M, N), dt, {"x": x, "weight": w})
    _run(ops.linear, dict(x=x, weight=w, bias=b, out=out),
         lambda: ref.linear(xs, ws, bs), dt, scale=scale, restore=((x, xs), (w, ws)))
    out = _out(draw, (M, N), dt, {"a": x, "b": w})
    _run(ops.matmul, dict(a=x, b=w, trans_b=True, out=out),
         lambda: (xs.astype(np.float64) @ ws.astype(np.float64).T).astype(dt), dt, scale=scale,
         restore=((x, xs), (w, ws)))
    g = _array(draw, (M, N), dt)
    gs = _snap(g)
    _run(ops.linear_backward, dict(grad_out=g, x=x, weight=w),
         lambda: ref.linear_backward(gs, xs, ws), dt, grad=True, scale=max(M, N, K, 1))


ACTS = [("relu", lambda x, out: ops.relu(x, out=out), ref.relu),
        ("gelu", lambda x, out: ops.gelu(x, out=out), ref.gelu),
        ("gelu_tanh", lambda x, out: ops.gelu(x, "tanh", out=out),
         lambda x: ref.gelu(x, "tanh")),
        ("softmax", lambda x, out: ops.softmax(x, out=out), ref.softmax),
        ("log_softmax", lambda x, out: ops.log_softmax(x, out=out), ref.log_softmax),
        ("layer_norm", lambda x, out: ops.layer_norm(x, out=out), ref.layer_norm),
        ("dropout", lambda x, out: ops.dropout(x, 0.25, seed=3, out=out),
         lambda x: ref.dropout(x, ref.dropout_mask(x.shape, 0.25, 3), 0.25))]


@FUZZ
@given(st.data(), dtypes, st.sampled_from(ACTS))
def test_fuzz_rowwise(data, dt, act):
    draw = data.draw
    _, fn, reference = act
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    x = _array(draw, shape, dt, scale=draw(st.sampled_from([1.0, 30.0])))
    xs = _snap(x)
    out = _out(draw, shape, dt, {"x": x})

    def call(x, out):
        return fn(x, out)
    call.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("x", "out")])
    _run(call, dict(x=x, out=out), lambda: reference(xs), dt, scale=4.0)


@FUZZ
@given(st.data(), dtypes)
def test_fuzz_bias_act(data, dt):
    draw = data.draw
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    C = shape[-1] if draw(st.integers(0, 9)) else shape[-1] + 1
    act = draw(st.sampled_from(["none", "relu", "gelu", "gelu_tanh"]))
    x, b = _array(draw, shape, dt), _array(draw, (C,), dt)
    xs, bs = _snap(x), _snap(b)
    out = _out(draw, shape, dt, {"x": x, "bias": b})
    _run(ops.bias_act, dict(x=x, bias=b, activation=act, out=out),
         lambda: ref.bias_act(xs, bs, act), dt, scale=4.0, restore=((x, xs), (b, bs)))
    g = _array(draw, shape, dt)
    gs = _snap(g)
    _run(ops.bias_act_backward, dict(grad_out=g, x=x, bias=b, activation=act),
         lambda: ref.bias_act_backward(gs, xs, bs, act), dt, grad=True,
         scale=max(int(np.prod(shape[:-1])), 1))


@FUZZ
@given(st.data(), dtypes, st.booleans())
def test_fuzz_softmax_backward(data, dt, log):
    draw = data.draw
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    x = _array(draw, shape, dt)
    y = (ops.log_softmax if log else ops.softmax)(np.ascontiguousarray(x))
    g = _array(draw, shape, dt)
    ys, gs = _snap(y), _snap(g)
    out = _out(draw, shape, dt, {"grad_out": g, "y": y})
    fn = ops.log_softmax_backward if log else ops.softmax_backward
    reference = ref.log_softmax_backward if log else ref.softmax_backward
    _run(fn, dict(grad_out=g, y=y, out=out), lambda: reference(gs, ys), dt, grad=True,
         scale=max(shape[-1], 1))


@FUZZ
@given(st.data(), dtypes)
def test_fuzz_cross_entropy(data, dt):
    draw = data.draw
    lead = tuple(draw(st.lists(dims, min_size=1, max_size=2)))
    C = draw(st.sampled_from([1, 2, 5]))
    logits = _array(draw, lead + (C,), dt, scale=3.0)
    tshape = lead if draw(st.integers(0, 9)) else lead + (1,)
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    t = rng.integers(-1, C + (0 if draw(st.integers(0, 9)) else 1), tshape)
    t[t == -1] = -100
    if draw(st.booleans()) and t.ndim:
        t = np.broadcast_to(t[..., :1], tshape)
    ls = draw(st.sampled_from([0.0, 0.1]))
    red = draw(st.sampled_from(["mean", "sum", "none"]))
    L, ts = _snap(logits), _snap(t)
    kw = dict(logits=logits, targets=t, label_smoothing=ls, reduction=red)
    _run(ops.cross_entropy, kw, lambda: ref.cross_entropy(L, ts, -100, ls, red), dt, scale=4.0)
    if tshape != lead or ((t != -100) & ((t < 0) | (t >= C))).any():
        return                        # refused above; no lse to go on with
    _, lse = ops.cross_entropy_forward(np.ascontiguousarray(logits), t)
    gl = _array(draw, lead, dt) if red == "none" else np.asarray(1.5, dt)
    gls = _snap(gl)
    out = _out(draw, lead + (C,), dt, {"logits": logits, "grad_loss": gl})
    _run(ops.cross_entropy_backward, dict(grad_loss=gl, lse=lse, out=out, **kw),
         lambda: ref.cross_entropy_backward(gls, L, ts, -100, ls, red), dt, grad=True)


@FUZZ
@given(st.data(), dtypes)
def test_fuzz_layer_norm_backward(data, dt):
    draw = data.draw
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    x = _array(draw, shape, dt, layout="c")
    w = _array(draw, shape[-1:], dt)
    _, mean, rstd = ops.layer_norm_forward(x, w)
    g = _array(draw, shape, dt)
    xs, ws, gs = _snap(x), _snap(w), _snap(g)
    gi = _out(draw, shape, dt, {"grad_out": g, "x": x})
    _run(ops.layer_norm_backward,
         dict(grad_out=g, x=x, weight=w, mean=mean, rstd=rstd, grad_input=gi),
         lambda: ref.layer_norm_backward(gs, xs, ws), dt, grad=True,
         scale=max(int(np.prod(shape)), 1))


@FUZZ
@given(st.data(), dtypes)
def test_fuzz_attention(data, dt):
    draw = data.draw
    B, H, Tq, Tk = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])),
                    draw(dims), draw(dims))
    D, Dv = draw(st.sampled_from([1, 4])), draw(st.sampled_from([1, 3, 4]))
    Dk = D if draw(st.integers(0, 9)) else D + 1
    q, k, v = (_array(draw, (B, H, Tq, D), dt), _array(draw, (B, H, Tk, Dk), dt),
               _array(draw, (B, H, Tk, Dv), dt))
    mask = None
    if draw(st.booleans()):
        m = np.random.default_rng(draw(st.integers(0, 99))).random((Tq, Tk)) > 0.3
        mask = np.broadcast_to(m, (B, H, Tq, Tk)) if draw(st.booleans()) else m
    causal = draw(st.booleans())
    qs, ks, vs = _snap(q), _snap(k), _snap(v)
    out = _out(draw, (B, H, Tq, Dv), dt, {"q": q, "k": k, "v": v})
    _run(ops.scaled_dot_product_attention,
         dict(q=q, k=k, v=v, attn_mask=mask, is_causal=causal, out=out),
         lambda: ref.scaled_dot_product_attention(qs, ks, vs, mask, causal), dt, scale=4.0,
         restore=((q, qs), (k, ks), (v, vs)))
    if Dk != D:
        return
    o, lse, _ = ops.attention_forward(qs, ks, vs, mask, causal)
    g = _array(draw, o.shape, dt)
    gs = _snap(g)
    _run(ops.attention_backward,
         dict(grad_out=g, q=q, k=k, v=v, out=o, lse=lse, attn_mask=mask, is_causal=causal),
         lambda: ref.attention_backward(gs, qs, ks, vs, mask, causal), dt, grad=True,
         scale=max(Tq, Tk, 1))


@FUZZ
@given(st.data(), dtypes)
def test_fuzz_embedding(data, dt):
    draw = data.draw
    V, C = draw(st.sampled_from([1, 3, 6])), draw(dims)
    lead = tuple(draw(st.lists(dims, min_size=0, max_size=2)))
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    ids = rng.integers(0, V + (0 if draw(st.integers(0, 9)) else 1), lead)
    if draw(st.booleans()) and ids.ndim:
        ids = np.broadcast_to(ids[..., :1], lead)
    w = _array(draw, (V, C), dt)
    ws, idss = _snap(w), _snap(ids)
    out = _out(draw, lead + (C,), dt, {"weight": w})
    _run(ops.embedding, dict(ids=ids, weight=w, out=out), lambda: ref.embedding(idss, ws), dt,
         restore=((w, ws),))
    g = _array(draw, lead + (C,), dt)
    gs = _snap(g)
    pad = draw(st.sampled_from([None, 0]))
    _run(ops.embedding_backward, dict(grad_out=g, ids=ids, num_embeddings=V, padding_idx=pad),
         lambda: ref.embedding_backward(gs, idss, V, pad), dt, grad=True,
         scale=max(int(np.prod(lead)), 1))


@FUZZ
@given(st.data(), dtypes)
def test_fuzz_dropout_backward_and_adamw(data, dt):
    draw = data.draw
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=2)))
    mask = ref.dropout_mask(shape, 0.4, draw(st.integers(0, 99)))
    g = _array(draw, shape, dt)
    gs = _snap(g)
    out = _out(draw, shape, dt, {"grad_out": g})
    _run(ops.dropout_backward, dict(grad_out=g, mask=mask, p=0.4, out=out),
         lambda: ref.dropout_backward(gs, mask, 0.4), dt)
    # AdamW: the state is updated in place, so the "result" is the buffers
    p, m = _array(draw, shape, dt, layout="c"), _array(draw, shape, dt, layout="c") * 0.1
    v = np.abs(_array(draw, shape, dt, layout="c"))
    grad = _array(draw, shape, dt)
    alias = draw(st.sampled_from([None, "param", "exp_avg", "exp_avg_sq"]))
    if alias is not None and grad.flags.c_contiguous and grad.flags.writeable:
        {"param": p, "exp_avg": m, "exp_avg_sq": v}[alias][...] = grad
        grad = {"param": p, "exp_avg": m, "exp_avg_sq": v}[alias]
    want = ref.adamw_step(_snap(p), _snap(grad), _snap(m), _snap(v), 3)

    def step(param, grad, exp_avg, exp_avg_sq):
        ops.adamw_step(param, grad, exp_avg, exp_avg_sq, 3)
        return param, exp_avg, exp_avg_sq
    _run(step, dict(param=p, grad=grad, exp_avg=m, exp_avg_sq=v), lambda: want, dt, grad=True)
