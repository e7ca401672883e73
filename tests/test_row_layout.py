"""Rows computed whatever their neighbours and their place in memory.

The layer norm forward sums several rows side by side (fwd_rows); when the
output lies just above the input modulo 1 MB (csrc/pt_alias.h) the GELU
forward rows walk downwards, and the layer norm forward, the GELU backward
and the softmax forward load ahead. None of this may change a single bit: a
row's results are those of the row alone, and an output placed there equals
the output placed anywhere else, on every ISA path the CPU runs, with
nothing written outside it.
"""
import numpy as np
import pytest

import pytransformer
from pytransformer import _core
from pytransformer.ops._layernorm import layer_norm_forward
from pytransformer.ops._softmax import (log_softmax, log_softmax_backward, softmax,
                                        softmax_backward)
from tests.helpers import DTYPES, use_isa

LEVELS = _core.isa_levels_supported()
SPAN = 1 << 20          # pt_alias.h: PT_ALIAS_SPAN
GUARD = 7.0


def _placed(shape, dtype, gap):
    """(x, out, raw, (lo, hi)): x and out views of one buffer (raw, its
    bytes, filled with GUARD), out starting `gap` bytes above x modulo SPAN
    and past x's end; out's byte range in raw is [lo, hi)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    step = -(-nbytes // SPAN) * SPAN
    buf = np.full((step + nbytes + gap + 256) // 8 + 1, GUARD)   # 8-byte aligned
    raw = buf.view(np.uint8)
    a = (-raw.ctypes.data) % 64
    x = raw[a:a + nbytes].view(dtype).reshape(shape)
    lo = a + step + gap
    out = raw[lo:lo + nbytes].view(dtype).reshape(shape)
    assert (out.ctypes.data - x.ctypes.data) % SPAN == gap % SPAN
    return x, out, raw, (lo, lo + nbytes)


def _outside_untouched(raw, out_bytes, x_bytes, guard_raw):
    """True when raw differs from guard_raw only inside out and x."""
    lo, hi = out_bytes
    mask = np.ones(raw.size, bool)
    mask[lo:hi] = False
    mask[x_bytes[0]:x_bytes[1]] = False
    return np.array_equal(raw[mask], guard_raw[mask])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("C", [1, 7, 16, 33, 100, 512])
def test_layernorm_rows_do_not_depend_on_their_neighbours(level, dtype, C):
    rng = np.random.default_rng(C)
    x = (rng.standard_normal((11, C)) * 3 + 1).astype(dtype)
    w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    with use_isa(level):
        y, m, r = layer_norm_forward(x, w, b)
        for i in range(11):
            yi, mi, ri = layer_norm_forward(x[i:i + 1].copy(), w, b)
            np.testing.assert_array_equal(y[i], yi[0])
            assert m[i] == mi[0] and r[i] == ri[0]
        for n in (2, 3, 5, 9):   # the same rows in groups that split differently
            ys, ms, rs = layer_norm_forward(x[11 - n:], w, b)
            np.testing.assert_array_equal(ys, y[11 - n:])
            np.testing.assert_array_equal(ms, m[11 - n:])
            np.testing.assert_array_equal(rs, r[11 - n:])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["none", "relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gap", [8, 16, 64, 4088, 4096, 65536 + 16])
def test_activation_forward_does_not_depend_on_where_its_output_lies(level, kind, dtype, gap):
    rng = np.random.default_rng(gap)
    for C in (1, 5, 8, 16, 17, 37, 100):
        shape = (3, C)
        x, out, raw, span = _placed(shape, dtype, gap)
        x[...] = rng.standard_normal(shape) * 2
        bias = rng.standard_normal(C).astype(dtype)
        before = raw.copy()
        x_bytes = (x.ctypes.data - raw.ctypes.data,
                   x.ctypes.data - raw.ctypes.data + x.nbytes)
        for bb in (None, bias):
            want = np.empty(shape, dtype)
            with use_isa(level):
                _core.bias_act_forward(want, x, bb, kind)
                _core.bias_act_forward(out, x, bb, kind)
            np.testing.assert_array_equal(out, want, err_msg=f"C={C} bias={bb is not None}")
        assert _outside_untouched(raw, span, x_bytes, before), "written outside out"


@pytest.mark.parametrize("level", LEVELS)
def test_activation_forward_in_place_is_unchanged(level):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 37)).astype(np.float32)
    with use_isa(level):
        want = np.empty_like(x)
        _core.bias_act_forward(want, x, None, "gelu")
        _core.bias_act_forward(x, x, None, "gelu")
    np.testing.assert_array_equal(x, want)


def test_threads_do_not_change_the_layernorm_rows():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4099, 65)).astype(np.float32)
    outs, saved = [], pytransformer.get_num_threads()
    try:
        for nt in (1, 2, 3):
            pytransformer.set_num_threads(nt)
            outs.append(layer_norm_forward(x))
    finally:
        pytransformer.set_num_threads(saved)
    for o in outs[1:]:
        for a, b in zip(o, outs[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gap", [8, 16, 64, 256, 504, 4096, 65536 + 16])
def test_layernorm_forward_does_not_depend_on_where_its_output_lies(level, dtype, gap):
    rng = np.random.default_rng(gap)
    for C in (1, 5, 16, 33, 100, 512, 600):
        shape = (7, C)   # pairs of rows and a lone one, groups of 4 and 3
        x, out, raw, span = _placed(shape, dtype, gap)
        x[...] = rng.standard_normal(shape) * 3 + 1
        w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
        x_bytes = (x.ctypes.data - raw.ctypes.data,
                   x.ctypes.data - raw.ctypes.data + x.nbytes)
        for ww, bb in ((w, b), (w, None), (None, b), (None, None)):
            before = raw.copy()
            with use_isa(level):
                want, wm, wr = layer_norm_forward(x, ww, bb)
                m, r = np.empty(7, dtype), np.empty(7, dtype)
                layer_norm_forward(x, ww, bb, out=out, mean_out=m, rstd_out=r)
            np.testing.assert_array_equal(out, want, err_msg=f"C={C}")
            np.testing.assert_array_equal(m, wm)
            np.testing.assert_array_equal(r, wr)
            assert _outside_untouched(raw, span, x_bytes, before), "written outside out"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", ["gelu", "gelu_tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gap", [8, 16, 64, 256, 504, 4096, 65536 + 16])
def test_activation_backward_does_not_depend_on_where_dx_lies(level, kind, dtype, gap):
    rng = np.random.default_rng(gap)
    for C in (1, 5, 16, 31, 32, 37, 100, 130):
        shape = (5, C)
        x, dx, raw, span = _placed(shape, dtype, gap)
        x[...] = rng.standard_normal(shape) * 2
        dy = rng.standard_normal(shape).astype(dtype)
        bias = rng.standard_normal(C).astype(dtype)
        x_bytes = (x.ctypes.data - raw.ctypes.data,
                   x.ctypes.data - raw.ctypes.data + x.nbytes)
        start, db_start = rng.standard_normal(shape).astype(dtype), rng.standard_normal(C)
        for acc in (False, True):
            before = raw.copy()
            want, wdb = start.copy(), db_start.astype(dtype)
            dx[...] = start
            db = db_start.astype(dtype)
            with use_isa(level):
                _core.bias_act_backward(want, wdb, dy, x, bias, kind, acc)
                _core.bias_act_backward(dx, db, dy, x, bias, kind, acc)
            np.testing.assert_array_equal(dx, want, err_msg=f"C={C} acc={acc}")
            np.testing.assert_array_equal(db, wdb)
            assert _outside_untouched(raw, span, x_bytes, before), "written outside dx"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gap", [8, 16, 64, 256, 504, 4096, 65536 + 16])
def test_softmax_does_not_depend_on_where_its_output_lies(level, dtype, gap):
    rng = np.random.default_rng(gap)
    for C in (1, 5, 16, 63, 64, 65, 100, 130, 1000):
        shape = (3, C)
        x, out, raw, span = _placed(shape, dtype, gap)
        x[...] = rng.standard_normal(shape) * 4
        x_bytes = (x.ctypes.data - raw.ctypes.data,
                   x.ctypes.data - raw.ctypes.data + x.nbytes)
        for op in (softmax, log_softmax):
            before = raw.copy()
            with use_isa(level):
                want = op(x)
                op(x, out=out)
            np.testing.assert_array_equal(out, want, err_msg=f"C={C} {op.__name__}")
            assert _outside_untouched(raw, span, x_bytes, before), "written outside out"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gap", [8, 16, 64, 504, 4096, 65536 + 16])
@pytest.mark.parametrize("above", ["y", "grad_out"])
def test_softmax_backward_does_not_depend_on_where_dx_lies(level, dtype, gap, above):
    rng = np.random.default_rng(gap)
    for C in (1, 5, 16, 255, 256, 257, 600):
        shape = (3, C)
        src, dx, raw, span = _placed(shape, dtype, gap)   # dx just above src
        src_bytes = (src.ctypes.data - raw.ctypes.data,
                     src.ctypes.data - raw.ctypes.data + src.nbytes)
        start = rng.standard_normal(shape).astype(dtype)
        for op, fwd in ((softmax_backward, softmax), (log_softmax_backward, log_softmax)):
            y = fwd(rng.standard_normal(shape).astype(dtype))
            dy = rng.standard_normal(shape).astype(dtype)
            if above == "y":
                src[...], y = y, src
            else:
                src[...], dy = dy, src
            for acc in (False, True):
                before = raw.copy()
                want = start.copy()
                dx[...] = start
                with use_isa(level):
                    op(dy, y, out=want, accumulate=acc)
                    op(dy, y, out=dx, accumulate=acc)
                np.testing.assert_array_equal(dx, want, err_msg=f"C={C} acc={acc}")
                assert _outside_untouched(raw, span, src_bytes, before), "written outside dx"
