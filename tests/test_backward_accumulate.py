"""The backward convention of the C core (csrc/pt_kernels.h): every backward
kernel takes `accumulate`; 1 adds into its gradient buffers, 0 stores into
them without reading them.

For every backward kernel, at every ISA level this CPU runs, in float32 and
float64, on shapes that reach the kernels' edges (vector tails, ignored
targets, embedding rows no id reaches, keys no query attends to):

  * accumulate=0 into buffers of NaN gives bit for bit what accumulate=1
    gives into buffers of +0.0 (the stored value plus +0.0 is compared: the
    sign of an exact zero is the one thing the two forms may differ in);
  * no NaN is left (the old contents are never read);
  * accumulate=1 adds: into a non-zero buffer it gives that buffer plus the
    stored gradient, up to the rounding of one addition.

Then the same flag through pytransformer.ops, whose backward functions
store into fresh buffers and take accumulate= where they take a buffer.
"""
import numpy as np
import pytest

from pytransformer import _core, ops
from tests.helpers import use_isa

LEVELS = ("portable", "avx2", "avx512")
DTYPES = (np.float32, np.float64)


def _r(rng, shape, dt):
    return rng.standard_normal(shape).astype(dt)


# Each case: build(rng, dt) -> (outs, call) with outs a list of the gradient
# buffer shapes (None: that buffer is absent) and call(bufs, accumulate)
# running the raw binding on buffers of those shapes.

def _linear(rng, dt, N=13, IN=9, OUT=17):
    x, w, dy = _r(rng, (N, IN), dt), _r(rng, (OUT, IN), dt), _r(rng, (N, OUT), dt)
    return ([(N, IN), (OUT, IN), (OUT,)],
            lambda b, acc: _core.linear_backward(*b, dy, x, w, acc))


def _bias_act(kind, with_bias=True):
    def build(rng, dt, N=37, C=45):
        x, dy = _r(rng, (N, C), dt), _r(rng, (N, C), dt)
        bias = _r(rng, (C,), dt) if with_bias else None
        return ([(N, C), (C,) if with_bias else None],
                lambda b, acc: _core.bias_act_backward(b[0], b[1], dy, x, bias, kind, acc))
    return build


def _softmax(log):
    def build(rng, dt, N=11, C=37):
        x = _r(rng, (N, C), dt)
        x[2, 3] = -np.inf
        y = ops.log_softmax(x) if log else ops.softmax(x)
        dy = _r(rng, (N, C), dt)
        return ([(N, C)], lambda b, acc: _core.softmax_backward(b[0], dy, y, log, acc))
    return build


def _cross_entropy(per_row, smoothing):
    def build(rng, dt, N=12, C=35):
        x = _r(rng, (N, C), dt)
        x[4] = -np.inf                                  # an all -inf row
        t = np.arange(N, dtype=np.int64) * 7 % C
        t[1] = t[6] = -100                              # ignored rows
        lse = np.empty(N, dt)
        _core.cross_entropy_forward(np.empty(N, dt), lse, x, t, -100, smoothing)
        g = _r(rng, (N,), dt) if per_row else np.asarray(0.37, dt)
        return ([(N, C)], lambda b, acc: _core.cross_entropy_backward(
            b[0], x, lse, t, g, -100, smoothing, acc))
    return build


def _layernorm(with_weight):
    def build(rng, dt, N=21, C=37):
        x, dy = _r(rng, (N, C), dt), _r(rng, (N, C), dt)
        w = _r(rng, (C,), dt) if with_weight else None
        _, mean, rstd = ops.layer_norm_forward(x, w)
        return ([(N, C), (C,), (C,)],
                lambda b, acc: _core.layernorm_backward(*b, dy, x, w, mean, rstd, acc))
    return build


def _embedding(rng, dt, N=300, V=50, C=40):
    ids = (np.arange(N, dtype=np.int64) ** 2) % V       # some rows never hit
    dy = _r(rng, (N, C), dt)
    return ([(V, C)], lambda b, acc: _core.embedding_backward(b[0], dy, ids, acc))


def _attention(causal, masked, Tq=19, Tk=70, B=2, H=3, D=5, Dv=7):
    def build(rng, dt):
        q, k = _r(rng, (B, H, Tq, D), dt), _r(rng, (B, H, Tk, D), dt)
        v, g = _r(rng, (B, H, Tk, Dv), dt), _r(rng, (B, H, Tq, Dv), dt)
        mask = None
        if masked:                                      # a fully masked query row too
            mask = np.where(rng.random((Tq, Tk)) < 0.2, -np.inf, 0).astype(dt)
            mask[3] = -np.inf
        out, lse, _ = ops.attention_forward(q, k, v, attn_mask=mask, is_causal=causal)
        m, strides = (None, None) if mask is None else (mask[None, None],
                                                       np.array([0, 0, Tk, 1], np.int64))
        return ([(B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, Dv)],
                lambda b, acc: _core.attention_backward(*b, g, q, k, v, out, lse, m, strides,
                                                        causal, 0.4, acc))
    return build


CASES = {
    "linear": _linear,
    "bias_act relu": _bias_act("relu"),
    "bias_act gelu": _bias_act("gelu"),
    "bias_act gelu_tanh": _bias_act("gelu_tanh"),
    "bias_act gelu no bias": _bias_act("gelu", with_bias=False),
    "bias_act none": _bias_act("none"),
    "softmax": _softmax(False),
    "log_softmax": _softmax(True),
    "cross_entropy": _cross_entropy(True, 0.0),
    "cross_entropy smoothed scalar": _cross_entropy(False, 0.1),
    "layernorm": _layernorm(True),
    "layernorm no weight": _layernorm(False),
    "embedding": _embedding,
    "attention": _attention(False, False),
    "attention causal": _attention(True, False),
    "attention causal masked": _attention(True, True),
    "attention Tq > Tk causal": _attention(True, False, Tq=70, Tk=19),
    # fewer heads than threads: attention's two-pass schedule
    "attention one head causal": _attention(True, False, B=1, H=1),
    # no rows: the reductions are empty sums, stored as zeros
    "linear no rows": lambda rng, dt: _linear(rng, dt, N=0),
    "bias_act no rows": lambda rng, dt: _bias_act("gelu")(rng, dt, N=0),
    "layernorm no rows": lambda rng, dt: _layernorm(True)(rng, dt, N=0),
    "embedding no ids": lambda rng, dt: _embedding(rng, dt, N=0),
    "attention no queries": _attention(False, False, Tq=0),
}


def _supported(level):
    if level not in _core.isa_levels_supported():
        pytest.skip(f"this CPU runs {', '.join(_core.isa_levels_supported())}, not {level}")


def _bits(a):
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_store_is_add_into_zeros_and_reads_nothing(case, dt, level):
    _supported(level)
    with use_isa(level):
        shapes, call = CASES[case](np.random.default_rng(7), dt)
        stored = [None if s is None else np.full(s, np.nan, dt) for s in shapes]
        added = [None if s is None else np.zeros(s, dt) for s in shapes]
        call(stored, False)
        call(added, True)
        for i, (s, a) in enumerate(zip(stored, added)):
            if s is None:
                continue
            assert not np.isnan(s).any(), f"{case} buffer {i}: NaN left (the buffer was read)"
            np.testing.assert_array_equal(_bits(s + dt(0)), _bits(a),
                                          err_msg=f"{case} buffer {i}")
        # accumulate=1 adds to what the buffer holds
        rng = np.random.default_rng(8)
        base = [None if s is None else _r(rng, s.shape, dt) for s in stored]
        summed = [None if b is None else b.copy() for b in base]
        call(summed, True)
        tol = 1e-5 if dt == np.float32 else 1e-12
        for b, s, got in zip(base, stored, summed):
            if b is not None:
                np.testing.assert_allclose(got, b + s, rtol=tol, atol=tol)


def test_every_backward_binding_has_a_case():
    # A backward kernel added without a case here would escape the check.
    bindings = {n for n in dir(_core) if n.endswith("_backward")}
    covered = {"linear_backward", "bias_act_backward", "softmax_backward",
               "cross_entropy_backward", "layernorm_backward", "embedding_backward",
               "attention_backward"}
    assert bindings == covered


# ------------------------------------------------------------------ ops

@pytest.mark.parametrize("fn,kw,buf", [
    (ops.softmax_backward, {}, "out"),
    (ops.log_softmax_backward, {}, "out"),
    (ops.cross_entropy_backward, {}, "out"),
    (ops.layer_norm_backward, {}, "grad_input"),
    (ops.embedding_backward, {}, "grad_weight"),
])
def test_ops_accumulate_adds_into_the_given_buffer(fn, kw, buf):
    rng = np.random.default_rng(3)
    x = _r(rng, (6, 5), np.float64)
    g = _r(rng, (6, 5), np.float64)
    if fn is ops.cross_entropy_backward:
        t = np.array([0, 4, -100, 2, 1, 3])
        _, lse = ops.cross_entropy_forward(x, t)
        args, shape = (np.asarray(1.5), x, t, lse), x.shape
    elif fn is ops.layer_norm_backward:
        w = _r(rng, 5, np.float64)
        _, mean, rstd = ops.layer_norm_forward(x, w)
        args, shape = (g, x, w, mean, rstd), x.shape
    elif fn is ops.embedding_backward:
        ids = np.array([0, 2, 2, 5, 0, 1])
        args, shape = (g, ids, 7), (7, 5)
    else:
        y = ops.log_softmax(x) if fn is ops.log_softmax_backward else ops.softmax(x)
        args, shape = (g, y), x.shape
    fresh = fn(*args)
    fresh = fresh[0] if isinstance(fresh, tuple) else fresh
    start = _r(rng, shape, np.float64)
    b = start.copy()
    got = fn(*args, **{buf: b, "accumulate": True})
    got = got[0] if isinstance(got, tuple) else got
    assert got is b
    np.testing.assert_allclose(b, start + fresh, rtol=1e-14, atol=1e-14)
    b = np.full(shape, np.nan)                          # stored: contents never read
    got = fn(*args, **{buf: b})
    got = got[0] if isinstance(got, tuple) else got
    assert got is b
    np.testing.assert_array_equal(b, fresh)
    with pytest.raises(ValueError, match=f"^{buf}: accumulate=True"):
        fn(*args, accumulate=True)
    with pytest.raises(TypeError, match="^accumulate: expected a bool"):
        fn(*args, **{buf: np.zeros(shape), "accumulate": 1})
