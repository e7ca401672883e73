"""No input, however malformed, may crash the interpreter.

For every public function of pytransformer.ops this file makes a valid call, then replaces arguments
with malformed values -- non-arrays, wrong dtypes, 0-d arrays, wrong ndim,
mismatched shapes, zero-length dims, non-contiguous and negative-stride
views, read-only / misshapen out= buffers, huge or negative sizes and ids,
NaN/Inf, out-of-range hyperparameters, mixed float32/float64 -- and checks
that each call either

  * returns a result of the documented structure, shapes and dtypes (and,
    for faults that keep every value, e.g. a non-contiguous copy, the same
    values as the valid call), or
  * raises TypeError / ValueError; when exactly one argument was made
    malformed, the message names it (as a word).

Anything else (SystemError, OverflowError, MemoryError, AttributeError, a
segfault) fails. The fuzz body runs in-process: a segfault kills pytest,
which fails the run loudly. Two layers:

  * test_single_fault_<op>: every (argument, fault) pair of the catalogue,
    exhaustively, deterministic;
  * test_fuzz_ops: hypothesis combines 1-3 faults on random arguments of a
    random op (bounded example count);
  * test_core_*: the raw _core bindings. They do not check arrays (the ops
    do, through pytransformer.validation) and are called from the ops only;
    the values no array check sees -- ids, targets, mask strides -- are
    still refused below them, and so are bad scalar arguments.
Named regression tests for the bugs this file found are at the end.
"""
import math
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from pytransformer import _core, ops

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning",
                                        "ignore::numpy.exceptions.ComplexWarning")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
OTHER = {F32: F64, F64: F32}
OK_ERRORS = (TypeError, ValueError)


def _other(dtype):
    return OTHER[np.dtype(dtype)]


# ----------------------------------------------------------------- op specs
#
# A spec builds a valid call (kwargs) for a dtype, says what kind each
# argument is, and computes the documented result structure from the
# (possibly malformed) kwargs of a call that returned normally.

class Spec:
    def __init__(self, fn, make, kinds, expect, floats=()):
        self.fn = fn
        self.name = fn.__name__
        self.make = make          # dtype -> dict of kwargs (a valid call)
        self.kinds = kinds        # arg name -> kind (see FAULTS)
        self.expect = expect      # kwargs -> structure of (shape, dtype) | None
        self.floats = floats      # the float-array args sharing one dtype


def R(shape, dtype):
    return ("arr", tuple(int(s) for s in shape), np.dtype(dtype))


def _rng():
    return np.random.default_rng(1234)


def _rand(shape, dtype, rng=None):
    rng = rng if rng is not None else _rng()
    return rng.standard_normal(shape).astype(dtype)


def _matmul_expect(kw):
    a, b = kw["a"], kw["b"]
    M = a.shape[1] if kw.get("trans_a") else a.shape[0]
    N = b.shape[0] if kw.get("trans_b") else b.shape[1]
    return R((M, N), a.dtype)


def _act_kw(dt, extra=()):
    r = _rng()
    kw = dict(x=_rand((2, 3, 5), dt, r))
    for e in extra:
        if e == "grad_out":
            kw["grad_out"] = _rand((2, 3, 5), dt, r)
        elif e == "bias":
            kw["bias"] = _rand((5,), dt, r)
    return kw


def _ffn_make(dt):
    r = _rng()
    return dict(x=_rand((2, 3, 4), dt, r), w1=_rand((6, 4), dt, r), b1=_rand((6,), dt, r),
                w2=_rand((5, 6), dt, r), b2=_rand((5,), dt, r), activation="gelu")


def _ffn_expect_y(kw):
    return R(kw["x"].shape[:-1] + (kw["w2"].shape[0],), kw["x"].dtype)


def _ffn_bwd_make(dt):
    kw = _ffn_make(dt)
    y, saved = ops.ffn_forward(**kw)
    return dict(grad_out=_rand(y.shape, dt), saved=saved)


def _ffn_bwd_expect(kw):
    s = kw["saved"]
    dt = s.x.dtype
    return (R(s.x.shape, dt), R(s.w1.shape, dt),
            None if s.b1 is None else R(s.b1.shape, dt), R(s.w2.shape, dt),
            R((s.w2.shape[0],), dt) if s.has_b2 else None)


def _ce_make(dt):
    r = _rng()
    t = r.integers(0, 7, (2, 3))
    t[0, 1] = -100
    return dict(logits=_rand((2, 3, 7), dt, r), targets=t, ignore_index=-100,
                label_smoothing=0.1, reduction="mean")


def _ce_loss_expect(kw):
    lg = kw["logits"]
    red = kw.get("reduction", "mean")
    return R(lg.shape[:-1] if red == "none" else (), lg.dtype)


def _ce_bwd_make(dt):
    kw = _ce_make(dt)
    _, lse = ops.cross_entropy_forward(**kw)
    return dict(grad_loss=np.asarray(1.5, dt), lse=lse, out=np.empty((2, 3, 7), dt), **kw)


def _ln_make(dt):
    r = _rng()
    return dict(x=_rand((2, 3, 5), dt, r), weight=_rand((5,), dt, r), bias=_rand((5,), dt, r),
                eps=1e-5, out=np.empty((2, 3, 5), dt))


def _ln_fwd_expect(kw):
    x = kw["x"]
    return (R(x.shape, x.dtype), R(x.shape[:-1], x.dtype), R(x.shape[:-1], x.dtype))


def _ln_bwd_make(dt):
    kw = _ln_make(dt)
    _, mean, rstd = ops.layer_norm_forward(**kw)
    return dict(grad_out=_rand(kw["x"].shape, dt), x=kw["x"], weight=kw["weight"],
                mean=mean, rstd=rstd, need_weight_grads=True)


def _ln_bwd_expect(kw):
    x, w = kw["x"], kw["weight"]
    C = x.shape[-1]
    want = w is not None and kw.get("need_weight_grads", True)
    return (R(x.shape, x.dtype), R((C,), x.dtype) if want else None,
            R((C,), x.dtype) if want else None)


def _att_make(dt):
    r = _rng()
    mask = np.ones((3, 5), bool)
    mask[1, 2] = False
    return dict(q=_rand((2, 2, 3, 4), dt, r), k=_rand((2, 2, 5, 4), dt, r),
                v=_rand((2, 2, 5, 6), dt, r), attn_mask=mask, is_causal=False, scale=0.7,
                need_weights=False, out=np.empty((2, 2, 3, 6), dt))


def _att_shapes(kw):
    q, k, v = kw["q"], kw["k"], kw["v"]
    B, H, Tq, _ = q.shape
    return B, H, Tq, k.shape[2], v.shape[3], q.dtype


def _att_fwd_expect(kw):
    B, H, Tq, Tk, Dv, dt = _att_shapes(kw)
    return (R((B, H, Tq, Dv), dt), R((B, H, Tq), dt),
            R((B, H, Tq, Tk), dt) if kw.get("need_weights") else None)


def _sdpa_expect(kw):
    o, _, w = _att_fwd_expect(kw)
    return (o, w) if kw.get("need_weights") else o


def _att_bwd_make(dt):
    kw = _att_make(dt)
    kw["out"] = None
    o, lse, _ = ops.attention_forward(**kw)
    return dict(grad_out=_rand(o.shape, dt), q=kw["q"], k=kw["k"], v=kw["v"], out=o, lse=lse,
                attn_mask=kw["attn_mask"], is_causal=False, scale=0.7)


def _att_bwd_expect(kw):
    q, k, v = kw["q"], kw["k"], kw["v"]
    return (R(q.shape, q.dtype), R(k.shape, q.dtype), R(v.shape, q.dtype))


def _emb_make(dt):
    r = _rng()
    return dict(ids=r.integers(0, 7, (2, 3)), weight=_rand((7, 4), dt, r), padding_idx=1,
                out=np.empty((2, 3, 4), dt))


def _emb_expect(kw):
    ids, w = kw["ids"], kw["weight"]
    return R(np.shape(ids) + (w.shape[1],), w.dtype)


def _emb_bwd_make(dt):
    r = _rng()
    return dict(grad_out=_rand((2, 3, 4), dt, r), ids=r.integers(0, 7, (2, 3)),
                num_embeddings=7, padding_idx=1, grad_weight=np.zeros((7, 4), dt))


def _drop_make(dt):
    return dict(x=_rand((2, 3, 5), dt), p=0.3, seed=7, training=True,
                out=np.empty((2, 3, 5), dt))


def _drop_fwd_expect(kw):
    x = kw["x"]
    p = float(kw.get("p", 0.5))
    dropped = kw.get("training", True) and p != 0
    return (R(x.shape, x.dtype), R(x.shape, np.uint8) if dropped else None)


def _drop_bwd_make(dt):
    kw = _drop_make(dt)
    _, mask = ops.dropout_forward(**kw)
    return dict(grad_out=_rand(kw["x"].shape, dt), mask=mask, p=0.3,
                out=np.empty(kw["x"].shape, dt))


def _adamw_make(dt):
    r = _rng()
    return dict(param=_rand((3, 4), dt, r), grad=_rand((3, 4), dt, r),
                exp_avg=_rand((3, 4), dt, r) * 0.1, exp_avg_sq=np.abs(_rand((3, 4), dt, r)),
                step=3, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)


SPECS = [
    Spec(ops.matmul,
         lambda dt: dict(a=_rand((3, 4), dt), b=_rand((4, 5), dt), trans_a=False,
                         trans_b=False, out=np.empty((3, 5), dt), fallback=False),
         dict(a="float", b="float", trans_a="flag", trans_b="flag", out="out",
              fallback="flag"),
         _matmul_expect, ("a", "b")),
    Spec(ops.linear,
         lambda dt: dict(x=_rand((2, 3, 4), dt), weight=_rand((5, 4), dt),
                         bias=_rand((5,), dt), out=np.empty((2, 3, 5), dt)),
         dict(x="float", weight="float", bias="ofloat", out="out"),
         lambda kw: R(kw["x"].shape[:-1] + (kw["weight"].shape[0],), kw["x"].dtype),
         ("x", "weight", "bias")),
    Spec(ops.linear_backward,
         lambda dt: dict(grad_out=_rand((2, 3, 5), dt), x=_rand((2, 3, 4), dt),
                         weight=_rand((5, 4), dt), need_bias_grad=True),
         dict(grad_out="float", x="float", weight="float", need_bias_grad="flag"),
         lambda kw: (R(kw["x"].shape, kw["x"].dtype), R(kw["weight"].shape, kw["x"].dtype),
                     R((kw["weight"].shape[0],), kw["x"].dtype)
                     if kw.get("need_bias_grad", True) else None),
         ("grad_out", "x", "weight")),
    Spec(ops.relu, lambda dt: dict(_act_kw(dt), out=np.empty((2, 3, 5), dt)),
         dict(x="float", out="out"), lambda kw: R(kw["x"].shape, kw["x"].dtype), ("x",)),
    Spec(ops.relu_backward, lambda dt: _act_kw(dt, ["grad_out"]),
         dict(grad_out="float", x="float"), lambda kw: R(kw["x"].shape, kw["x"].dtype),
         ("grad_out", "x")),
    Spec(ops.gelu,
         lambda dt: dict(_act_kw(dt), approximate="tanh", out=np.empty((2, 3, 5), dt)),
         dict(x="float", approximate="choice", out="out"),
         lambda kw: R(kw["x"].shape, kw["x"].dtype), ("x",)),
    Spec(ops.gelu_backward, lambda dt: dict(_act_kw(dt, ["grad_out"]), approximate="none"),
         dict(grad_out="float", x="float", approximate="choice"),
         lambda kw: R(kw["x"].shape, kw["x"].dtype), ("grad_out", "x")),
    Spec(ops.bias_act,
         lambda dt: dict(_act_kw(dt, ["bias"]), activation="gelu_tanh",
                         out=np.empty((2, 3, 5), dt)),
         dict(x="float", bias="ofloat", activation="choice", out="out"),
         lambda kw: R(kw["x"].shape, kw["x"].dtype), ("x", "bias")),
    Spec(ops.bias_act_backward,
         lambda dt: dict(_act_kw(dt, ["grad_out", "bias"]), activation="relu"),
         dict(grad_out="float", x="float", bias="ofloat", activation="choice"),
         lambda kw: (R(kw["x"].shape, kw["x"].dtype),
                     None if kw.get("bias") is None else R(kw["bias"].shape, kw["x"].dtype)),
         ("grad_out", "x", "bias")),
    Spec(ops.ffn_forward, _ffn_make,
         dict(x="float", w1="float", b1="ofloat", w2="float", b2="ofloat",
              activation="choice"),
         lambda kw: (_ffn_expect_y(kw), "any"), ("x", "w1", "b1", "w2", "b2")),
    Spec(ops.ffn, _ffn_make,
         dict(x="float", w1="float", b1="ofloat", w2="float", b2="ofloat",
              activation="choice"),
         _ffn_expect_y, ("x", "w1", "b1", "w2", "b2")),
    Spec(ops.ffn_backward, _ffn_bwd_make, dict(grad_out="float", saved="saved"),
         _ffn_bwd_expect, ("grad_out",)),
    Spec(ops.softmax, lambda dt: dict(x=_rand((2, 3, 5), dt), out=np.empty((2, 3, 5), dt)),
         dict(x="float", out="out"), lambda kw: R(kw["x"].shape, kw["x"].dtype), ("x",)),
    Spec(ops.log_softmax,
         lambda dt: dict(x=_rand((2, 3, 5), dt), out=np.empty((2, 3, 5), dt)),
         dict(x="float", out="out"), lambda kw: R(kw["x"].shape, kw["x"].dtype), ("x",)),
    Spec(ops.softmax_backward,
         lambda dt: dict(grad_out=_rand((2, 3, 5), dt), y=ops.softmax(_rand((2, 3, 5), dt)),
                         out=np.empty((2, 3, 5), dt)),
         dict(grad_out="float", y="float", out="out"),
         lambda kw: R(kw["y"].shape, kw["y"].dtype), ("grad_out", "y")),
    Spec(ops.log_softmax_backward,
         lambda dt: dict(grad_out=_rand((2, 3, 5), dt),
                         y=ops.log_softmax(_rand((2, 3, 5), dt)), out=np.empty((2, 3, 5), dt)),
         dict(grad_out="float", y="float", out="out"),
         lambda kw: R(kw["y"].shape, kw["y"].dtype), ("grad_out", "y")),
    Spec(ops.cross_entropy_forward, _ce_make,
         dict(logits="float", targets="index", ignore_index="int", label_smoothing="unit",
              reduction="choice"),
         lambda kw: (_ce_loss_expect(kw), R(kw["logits"].shape[:-1], kw["logits"].dtype)),
         ("logits",)),
    Spec(ops.cross_entropy, _ce_make,
         dict(logits="float", targets="index", ignore_index="int", label_smoothing="unit",
              reduction="choice"),
         _ce_loss_expect, ("logits",)),
    Spec(ops.cross_entropy_backward, _ce_bwd_make,
         dict(grad_loss="scalar_or_0d", logits="float", targets="index", lse="float",
              ignore_index="int", label_smoothing="unit", reduction="choice", out="out"),
         lambda kw: R(kw["logits"].shape, kw["logits"].dtype), ("logits", "lse")),
    Spec(ops.layer_norm_forward, _ln_make,
         dict(x="float", weight="ofloat", bias="ofloat", eps="nonneg", out="out"),
         _ln_fwd_expect, ("x", "weight", "bias")),
    Spec(ops.layer_norm, _ln_make,
         dict(x="float", weight="ofloat", bias="ofloat", eps="nonneg", out="out"),
         lambda kw: R(kw["x"].shape, kw["x"].dtype), ("x", "weight", "bias")),
    Spec(ops.layer_norm_backward, _ln_bwd_make,
         dict(grad_out="float", x="float", weight="ofloat", mean="float", rstd="float",
              need_weight_grads="flag"),
         _ln_bwd_expect, ("grad_out", "x", "weight", "mean", "rstd")),
    Spec(ops.attention_forward, _att_make,
         dict(q="float", k="float", v="float", attn_mask="mask", is_causal="flag",
              scale="real", need_weights="flag", out="out"),
         _att_fwd_expect, ("q", "k", "v")),
    Spec(ops.scaled_dot_product_attention, _att_make,
         dict(q="float", k="float", v="float", attn_mask="mask", is_causal="flag",
              scale="real", need_weights="flag", out="out"),
         _sdpa_expect, ("q", "k", "v")),
    Spec(ops.attention_backward, _att_bwd_make,
         dict(grad_out="float", q="float", k="float", v="float", out="float", lse="float",
              attn_mask="mask", is_causal="flag", scale="real"),
         _att_bwd_expect, ("grad_out", "q", "k", "v", "out", "lse")),
    Spec(ops.embedding_forward, _emb_make,
         dict(ids="index", weight="float", padding_idx="oint", out="out"),
         lambda kw: (_emb_expect(kw), R(np.shape(kw["ids"]), np.int64)), ("weight",)),
    Spec(ops.embedding, _emb_make,
         dict(ids="index", weight="float", padding_idx="oint", out="out"),
         _emb_expect, ("weight",)),
    Spec(ops.embedding_backward, _emb_bwd_make,
         dict(grad_out="float", ids="index", num_embeddings="size", padding_idx="oint",
              grad_weight="out"),
         lambda kw: R((int(kw["num_embeddings"]), kw["grad_out"].shape[-1]),
                      kw["grad_out"].dtype), ("grad_out",)),
    Spec(ops.sinusoidal_positions,
         lambda dt: dict(T=5, C=6, base=10000.0, dtype=dt, out=np.empty((5, 6), dt)),
         dict(T="size", C="size", base="positive", dtype="dtype", out="out"),
         lambda kw: R((int(kw["T"]), int(kw["C"])), kw.get("dtype", np.float32)), ()),
    Spec(ops.dropout_forward, _drop_make,
         dict(x="float", p="unit", seed="seed", training="flag", out="out"),
         _drop_fwd_expect, ("x",)),
    Spec(ops.dropout, _drop_make,
         dict(x="float", p="unit", seed="seed", training="flag", out="out"),
         lambda kw: _drop_fwd_expect(kw)[0], ("x",)),
    Spec(ops.dropout_backward, _drop_bwd_make,
         dict(grad_out="float", mask="u8mask", p="unit", out="out"),
         lambda kw: R(kw["grad_out"].shape, kw["grad_out"].dtype), ("grad_out",)),
    Spec(ops.adamw_step, _adamw_make,
         dict(param="state", grad="float", exp_avg="state", exp_avg_sq="state",
              step="step", lr="nonneg", betas="betas", eps="nonneg", weight_decay="nonneg"),
         lambda kw: None, ("param", "grad", "exp_avg", "exp_avg_sq")),
]
SPEC_BY_NAME = {s.name: s for s in SPECS}


def test_every_public_op_has_a_spec():
    assert sorted(SPEC_BY_NAME) == sorted(ops.__all__)


# ------------------------------------------------------------------ faults
#
# A fault is (label, value, expectation) where expectation is
#   "type":  must raise TypeError naming the argument;
#   "value": must raise ValueError naming the argument;
#   "raise": must raise TypeError or ValueError naming the argument;
#   "reltype": a dtype mismatch with another argument: TypeError naming any
#            argument of the call;
#   "rel":   a mismatch with another argument: raise (naming any argument of
#            the call) or, if the op accepts it, return the documented shape;
#   "same":  keeps every value: return what the valid call returns, or raise
#            naming the argument (only in-place buffers may refuse);
#   "any":   return a documented-shape result or raise naming the argument.

BAD_DTYPES = [np.int32, np.int64, np.bool_, np.float16, np.complex64, np.complex128,
              np.object_, np.uint8, np.int8, np.longdouble]


def _neg_stride(a):
    """A view with the values of `a` and a negative stride on its first axis
    longer than 1 (NumPy calls a reversed length-1 axis contiguous)."""
    axes = [i for i, n in enumerate(a.shape) if n > 1]
    if not axes:
        return a
    idx = [slice(None)] * a.ndim
    idx[axes[0]] = slice(None, None, -1)
    return a[tuple(idx)].copy()[tuple(idx)]


def _non_contig(a):
    """A non-contiguous view with the values of `a` (every other element of
    a twice-as-long last axis)."""
    if a.ndim == 0:
        return a
    big = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def _misaligned(a):
    """A C-contiguous array with the values of `a` whose data starts one byte
    past an aligned address (NumPy's flags.aligned is False), or None when
    one-byte items are always aligned."""
    if a.dtype.itemsize == 1:
        return None
    buf = np.empty(a.nbytes + a.dtype.itemsize, np.uint8)
    b = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    b[...] = a
    assert b.flags.c_contiguous and not b.flags.aligned
    return b


def _readonly(a):
    b = a.copy()
    b.flags.writeable = False
    return b


def _array_faults(a, kind):
    """Faults for a valid ndarray argument `a` of the given kind."""
    dt = a.dtype
    f = [("list", a.tolist(), "type"), ("int scalar", 3, "type"),
         ("float scalar", 1.5, "type"), ("str", "abc", "type"),
         ("object()", object(), "type"), ("tuple", tuple(a.reshape(-1).tolist()), "type")]
    if kind == "out":
        f.append(("None", None, "same"))      # out=None: allocate
    elif kind == "u8mask":
        f.append(("None", None, "any"))       # mask None: dropout was the identity
    elif kind != "ofloat":
        f.append(("None", None, "type"))
    if kind == "index":
        for bd in (np.float32, np.float64, np.bool_, np.complex64, np.object_, np.float16):
            f.append((f"dtype {np.dtype(bd)}", a.astype(bd), "type"))
        for gd in (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.uint64):
            if a.size == 0 or (a.min() >= np.iinfo(gd).min and a.max() <= np.iinfo(gd).max):
                f.append((f"dtype {np.dtype(gd)}", a.astype(gd), "same"))
        for v in (2**62, -2**62, 2**31, -1, 7, np.iinfo(np.int64).max,
                  np.iinfo(np.int64).min):
            b = a.copy()
            b.reshape(-1)[-1] = v
            f.append((f"value {v}", b, "value"))
        big = np.zeros(a.shape, np.uint64)
        big.reshape(-1)[:] = a.reshape(-1) % 7
        big.reshape(-1)[-1] = np.uint64(2**64 - 1)
        f.append(("uint64 2**64-1", big, "value"))
        big = big.copy()
        big.reshape(-1)[-1] = np.uint64(2**64 - 100)   # wraps to -100 in int64
        f.append(("uint64 2**64-100", big, "value"))
    elif kind == "u8mask":
        f.append(("bool", a.astype(bool), "same"))
        for bd in (np.float32, np.float64, np.int64, np.int8, np.object_):
            f.append((f"dtype {np.dtype(bd)}", a.astype(bd), "type"))
    else:
        for bd in BAD_DTYPES:
            f.append((f"dtype {np.dtype(bd)}", a.astype(bd), "type"))
        f.append(("other float dtype", a.astype(_other(dt)), "rel"))
    f += [("0-d", a.reshape(-1)[:1].reshape(()).copy(), "rel"),
          ("extra dim", a[None], "rel"), ("extra dim 2", np.stack([a, a]), "rel"),
          ("last dim +1", np.concatenate([a, a[..., :1]], axis=-1) if a.ndim else a[None],
           "rel"),
          ("first dim 0", a[:0] if a.ndim else a, "rel"),
          ("last dim 0", a[..., :0] if a.ndim else a, "rel"),
          ("huge zero-size", np.empty((2**40, 0), dt), "rel")]
    if a.ndim >= 2:
        f.append(("drop dim", a[0], "rel"))
        f.append(("transposed", a.swapaxes(-1, -2), "rel"))
    state = kind in ("out", "state")
    if a.ndim:
        f += [("non-contiguous", _non_contig(a), "raise" if state else "same"),
              ("negative stride", _neg_stride(a), "raise" if state else "same"),
              ("fortran order", np.asfortranarray(a),
               "same" if a.flags.f_contiguous else ("raise" if state else "same")),
              ("broadcast view", np.broadcast_to(a.reshape(-1)[:1].reshape((1,) * a.ndim),
                                                 a.shape), "raise" if state else "any")]
    f.append(("read-only", _readonly(a), "raise" if state else "same"))
    if a.ndim and a.size and _misaligned(a) is not None:
        # inputs are copied (a misaligned double* is undefined behaviour in
        # C), buffers written in place are rejected
        f.append(("misaligned", _misaligned(a), "raise" if state else "same"))
    if kind in ("float", "ofloat", "out", "state"):
        for v in (np.nan, np.inf, -np.inf, 1e38):
            f.append((f"all {v}", np.full(a.shape, v, dt), "any"))
    if kind == "u8mask":
        f.append(("values 255", np.full(a.shape, 255, np.uint8), "any"))
    return f


HUGE_INTS = [2**62, -2**62, 2**63, -2**63 - 1, 2**64, 2**1024, -1]


def _lbl(v):
    """A short label for a number: 2**k forms for the huge ones."""
    if isinstance(v, int) and abs(v) > 2**40:
        sign = "-" if v < 0 else ""
        k = abs(v).bit_length() - 1
        rest = abs(v) - 2**k
        return f"{sign}2**{k}" + (f"+{rest}" if rest else "")
    return repr(v)
NOT_NUMBERS = [("None", None, "type"), ("str", "0.5", "type"), ("list", [0.5], "type"),
               ("complex", 0.5j, "type"), ("object()", object(), "type"),
               ("array(2)", np.array([0.1, 0.2]), "raise")]


def _scalar_faults(kind, valid):
    f = []
    if kind in ("size", "int", "oint", "seed", "step"):
        # ignore_index: a huge value makes the valid targets' ignored rows bad
        f += [(f"int {_lbl(v)}", v, "rel" if kind == "int" else "any") for v in HUGE_INTS]
        f += [("float", 1.5, "type"), ("float-int", 3.0, "type"), ("nan", math.nan, "type"),
              ("bool", True, "type"), ("np.int64", np.int64(valid if valid is not None
                                                            else 1), "same")]
        f += [x for x in NOT_NUMBERS if x[0] != "None" or kind != "oint"]
    elif kind in ("unit", "nonneg", "positive", "real"):
        f += [(_lbl(v), v, "any") for v in (math.nan, math.inf, -math.inf, -1.0, 1.5, 2.0,
                                           -1e-300, 0.0, 1.0, 2**1024, -2**1024, 1e308)]
        f += [("np.float64", np.float64(valid), "same"),
              ("0-d array", np.array(valid), "same")]
        f += [x for x in NOT_NUMBERS if x[0] != "None" or kind != "real"]
    elif kind == "choice":
        f += [("bogus", "bogus", "value"), ("None", None, "raise"), ("int", 3, "raise"),
              ("list", [valid], "raise"), ("upper", str(valid).upper(), "value"),
              ("bytes", str(valid).encode(), "raise"), ("array", np.array([valid, valid]),
                                                       "raise")]
    elif kind == "flag":
        # truthy values are accepted and may change the meaning (trans_a)
        f += [("None", None, "rel"), ("str", "yes", "rel"), ("2", 2, "rel"),
              ("np.bool_", np.bool_(True), "rel")]
    elif kind == "betas":
        f += [("(1,1)", (1, 1), "value"), ("(0.9,1)", (0.9, 1.0), "value"),
              ("(nan,0.9)", (math.nan, 0.9), "value"), ("(-0.1,0.9)", (-0.1, 0.9), "value"),
              ("(0.9,)", (0.9,), "raise"), ("3-tuple", (0.9, 0.9, 0.9), "raise"),
              ("None", None, "raise"), ("str", "ab", "raise"), ("scalar", 0.9, "raise"),
              ("(1-1e-9, 0.9)", (1 - 1e-9, 0.9), "any"), ("(2**1024, 0)", (2**1024, 0), "raise"),
              ("(None, 0.9)", (None, 0.9), "raise"), ("array", np.array([0.9, 0.99]), "any")]
    elif kind == "dtype":
        f += [("int32", np.int32, "type"), ("float16", np.float16, "type"),
              ("complex", complex, "type"), ("bogus str", "bogus", "raise"),
              ("object()", object(), "raise"), ("'float64'", "float64", "any"),
              ("float", float, "any")]
    return f


def _mask_faults(a, dt):
    f = [("list", a.tolist(), "type"), ("str", "abc", "type"), ("scalar", 1.0, "type"),
         ("int8 mask", a.astype(np.int8), "type"), ("uint8 mask", a.astype(np.uint8), "type"),
         ("int64 mask", a.astype(np.int64), "type"), ("float16 mask", a.astype(np.float16), "type"),
         ("complex mask", a.astype(np.complex64), "type"), ("object mask", a.astype(object), "type"),
         ("other float mask", np.where(a, 0, -np.inf).astype(_other(dt)), "type"),
         ("float mask", np.where(a, 0, -np.inf).astype(dt), "same"),
         ("0-d mask", np.array(True), "any"), ("all False", np.zeros_like(a), "any"),
         ("wrong shape", np.ones((4, 5), bool), "value"),
         ("wrong shape Tk", np.ones((3, 4), bool), "value"),
         ("5-d", np.ones((1, 1, 1, 3, 5), bool), "value"),
         ("6-d", np.ones((1, 1, 1, 1, 3, 5), bool), "value"),
         ("batch broadcast", np.ones((2, 1, 3, 5), bool), "any"),
         ("bad batch", np.ones((3, 1, 3, 5), bool), "value"),
         ("zero-size", np.ones((0, 5), bool), "value"),
         ("non-contiguous", _non_contig(a), "same"),
         ("negative stride", _neg_stride(a), "same"),
         ("broadcast view", np.broadcast_to(a[:1], a.shape), "any"),
         ("nan mask", np.full(a.shape, np.nan, dt), "any"),
         ("+inf mask", np.full(a.shape, np.inf, dt), "any"),
         ("read-only", _readonly(a), "same"), ("huge zero-size", np.empty((2**40, 0), bool),
                                               "value")]
    return f


def _saved_faults(saved):
    x = saved.x
    return [("None", None, "type"), ("tuple", tuple(saved), "type"), ("list", list(saved), "type"),
            ("x list", saved._replace(x=x.tolist()), "internal"),
            ("x other dtype", saved._replace(x=x.astype(_other(x.dtype))), "internal"),
            ("h wrong shape", saved._replace(h=saved.h[..., :-1]), "internal"),
            ("w1 wrong shape", saved._replace(w1=saved.w1[:-1]), "internal"),
            ("w2 None", saved._replace(w2=None), "internal"),
            ("kind bogus", saved._replace(activation="bogus"), "internal")]


def faults_for(spec, name, valid, dt):
    kind = spec.kinds[name]
    if kind == "mask":
        return _mask_faults(valid, np.dtype(dt))
    if kind == "saved":
        return _saved_faults(valid)
    if kind == "scalar_or_0d":
        return ([("None", None, "type"), ("str", "1", "type"), ("list", [1.0], "type"),
                 ("complex", 1j, "type"), ("2**1024", 2**1024, "any"), ("nan", math.nan, "any"),
                 ("float", 2.0, "any"), ("(1,)", valid.reshape(1), "any"),
                 ("(2,)", np.ones(2, valid.dtype), "rel"),
                 ("(2, 3) for mean", np.ones((2, 3), valid.dtype), "rel"),
                 ("other float", valid.astype(_other(valid.dtype)), "rel"),
                 ("int 0-d", np.asarray(1), "type"), ("bool", True, "type")])
    if isinstance(valid, np.ndarray):
        return _array_faults(valid, kind)
    if valid is None and kind in ("ofloat",):
        return []
    return _scalar_faults(kind, valid)


# --------------------------------------------------------------- checking

def _names_in(msg, names):
    return any(re.search(r"(?<![A-Za-z0-9_])" + re.escape(n) + r"(?![A-Za-z0-9_])", msg)
               for n in names)


def _check_structure(got, want, where="result"):
    if want == "any":
        return
    if want is None:
        assert got is None, f"{where}: expected None, got {type(got).__name__}"
        return
    if isinstance(want, tuple) and want and want[0] == "arr":
        _, shape, dtype = want
        assert isinstance(got, np.ndarray), f"{where}: expected ndarray, got {type(got).__name__}"
        assert got.shape == shape, f"{where}: expected shape {shape}, got {got.shape}"
        assert got.dtype == dtype, f"{where}: expected dtype {dtype}, got {got.dtype}"
        return
    assert isinstance(got, tuple) and len(got) == len(want), \
        f"{where}: expected a {len(want)}-tuple, got {type(got).__name__}"
    for i, (g, w) in enumerate(zip(got, want)):
        _check_structure(g, w, f"{where}[{i}]")


def _same_values(got, ref, where="result"):
    if isinstance(ref, tuple) and not hasattr(ref, "_fields"):
        for i, (g, r) in enumerate(zip(got, ref)):
            _same_values(g, r, f"{where}[{i}]")
    elif isinstance(ref, np.ndarray):
        tol = 1e-5 if ref.dtype == F32 else 1e-12
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol, equal_nan=True,
                                       err_msg=where)
        else:
            np.testing.assert_array_equal(got, ref, err_msg=where)


def call(spec, kw):
    """Run the op; return ("ok", result, kw) or ("err", exception, kw)."""
    try:
        return "ok", spec.fn(**kw), kw
    except Exception as e:     # classified by the caller
        return "err", e, kw


def judge(spec, kw, outcome, value, faulted, expectation, ref=None):
    """Assert the outcome of one call is allowed. `faulted` = names of the
    malformed arguments; expectation as in the fault table (single fault)
    or None (several faults: only types and structure checked)."""
    ctx = f"{spec.name} with {faulted}"
    if outcome == "err":
        e = value
        assert isinstance(e, OK_ERRORS), f"{ctx}: raised {type(e).__name__}: {e}"
        if expectation is None or expectation == "internal":
            return
        if expectation in ("type", "reltype"):
            assert isinstance(e, TypeError), f"{ctx}: expected TypeError, got {type(e).__name__}: {e}"
        if expectation == "value":
            assert isinstance(e, ValueError), f"{ctx}: expected ValueError, got {type(e).__name__}: {e}"
        names = list(faulted) if expectation not in ("rel", "reltype") else list(spec.kinds)
        assert _names_in(str(e), names), f"{ctx}: message does not name {names}: {e!r}"
        return
    if expectation in ("type", "reltype", "value", "raise"):
        raise AssertionError(f"{ctx}: expected {expectation} error, returned normally")
    _check_structure(value, spec.expect(kw))
    if expectation == "same" and ref is not None:
        _same_values(value, ref)


# ------------------------------------------------------- single faults

def _single_fault_cases(spec, dt):
    base = spec.make(dt)
    for name in spec.kinds:
        if name not in base:
            continue
        for label, value, expectation in faults_for(spec, name, base[name], dt):
            if expectation == "rel" and name in spec.floats and label == "other float dtype":
                others = [n for n, k in spec.kinds.items() if n != name and base.get(n) is not None
                          and (n in spec.floats or k in ("out", "state"))]
                expectation = "reltype" if others else "any"
            yield name, label, value, expectation


@pytest.mark.parametrize("dt", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("opname", sorted(SPEC_BY_NAME))
def test_single_fault(opname, dt):
    """Every catalogued (argument, fault) pair of one op, one at a time."""
    spec = SPEC_BY_NAME[opname]
    ref = spec.fn(**spec.make(dt))
    failures = []
    for name, label, value, expectation in _single_fault_cases(spec, dt):
        kw = spec.make(dt)      # fresh buffers: some ops write in place
        kw[name] = value
        outcome, res, _ = call(spec, kw)
        try:
            judge(spec, kw, outcome, res, [name], expectation, ref)
        except AssertionError as e:
            failures.append(f"{name}={label}: {str(e).strip().splitlines()[0]}")
        except Exception as e:   # a checker choked: report, do not hide
            failures.append(f"{name}={label}: checker raised {type(e).__name__}: {e}")
    assert not failures, f"{len(failures)} failing faults:\n  " + "\n  ".join(failures)


# ------------------------------------------------------------ hypothesis

_CASES = {}


def _cached_cases(spec, dt):
    """The fault list of (spec, dt), built once for the fuzz tests (an op may
    write into a fault value, e.g. an out= buffer: only its values change)."""
    key = (spec.name, np.dtype(dt))
    if key not in _CASES:
        _CASES[key] = list(_single_fault_cases(spec, dt))
    return _CASES[key]


@st.composite
def fault_combos(draw):
    spec = draw(st.sampled_from(SPECS))
    dt = draw(st.sampled_from([F32, F64]))
    cases = _cached_cases(spec, dt)
    k = draw(st.integers(1, 3))
    picks = draw(st.lists(st.sampled_from(range(len(cases))), min_size=1, max_size=k,
                          unique_by=lambda i: cases[i][0]))
    return spec, dt, [cases[i] for i in picks]


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(fault_combos())
def test_fuzz_ops(combo):
    """1-3 simultaneous faults on a random op: never anything but a
    documented-shape result or TypeError/ValueError (naming the argument
    when there is a single fault)."""
    spec, dt, picks = combo
    kw = spec.make(dt)
    for name, _, value, _ in picks:
        kw[name] = value
    outcome, res, _ = call(spec, kw)
    if len(picks) == 1:
        name, label, _, expectation = picks[0]
        ref = spec.fn(**spec.make(dt)) if expectation == "same" else None
        judge(spec, kw, outcome, res, [name], expectation, ref)
    else:
        judge(spec, kw, outcome, res, [p[0] for p in picks], None)


# ----------------------------------------------- coordinated resizing
#
# The valid calls use a distinct size per logical dimension (e.g. C = 5,
# V = 7), so replacing every dimension equal to d by v in every array (and
# size argument) gives a consistent call with that dimension resized: zero-
# length dims, 1, and sizes across SIMD / tile widths, alone or combined
# with the faults above.

def _resize_value(x, d, v, kind, rng):
    if isinstance(x, np.ndarray):
        shape = tuple(v if s == d else s for s in x.shape)
        if shape == x.shape:
            return x
        if x.dtype.kind == "f":
            return rng.standard_normal(shape).astype(x.dtype)
        if x.dtype == np.bool_:
            return np.ones(shape, bool)
        return np.zeros(shape, x.dtype) if x.dtype != np.uint8 else np.ones(shape, np.uint8)
    if kind == "size" and isinstance(x, int) and x == d:
        return v
    if kind == "saved":
        return x._replace(**{f: _resize_value(getattr(x, f), d, v, None, rng)
                             for f in x._fields})
    return x


@st.composite
def resized_calls(draw):
    spec = draw(st.sampled_from(SPECS))
    dt = draw(st.sampled_from([F32, F64]))
    kw = spec.make(dt)
    dims = sorted({s for x in kw.values() if isinstance(x, np.ndarray) for s in x.shape})
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 2))):
        d = draw(st.sampled_from(dims))
        v = draw(st.sampled_from([0, 1, 2, 17, 65]))
        kw = {n: _resize_value(x, d, v, spec.kinds.get(n), rng) for n, x in kw.items()}
    fault = None
    if draw(st.booleans()):
        cases = _cached_cases(spec, dt)
        name, label, value, _ = draw(st.sampled_from(cases))
        kw[name] = value
        fault = name
    return spec, kw, fault


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(resized_calls())
def test_fuzz_resized(case):
    """Consistent calls with dimensions resized (0, 1, 2, 17, 65), with or
    without one fault: a documented-shape result or TypeError/ValueError."""
    spec, kw, fault = case
    outcome, res, _ = call(spec, kw)
    judge(spec, kw, outcome, res, [fault] if fault else list(spec.kinds), None)


# ---------------------------------------------- named regression tests
#
# Each shrunk failure of the catalogue / fuzz above, fixed in the ops modules
# or pytransformer/validation.py, as its own case.

def _bufs(dt=np.float32, shape=(3, 4)):
    return _adamw_make(dt)


def _raises(exc, name, fn, *args, **kw):
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert _names_in(str(info.value), [name]), str(info.value)


def test_regression_adamw_step_huge_step_is_valueerror_not_overflowerror():
    # was: OverflowError converting step to the binding's int64_t
    for step in (2**63, 2**64, 2**1024):
        _raises(ValueError, "step", ops.adamw_step, **dict(_bufs(), step=step))
    ops.adamw_step(**dict(_bufs(), step=2**62))      # still valid: bias corrections -> 1


@pytest.mark.parametrize("arg", ["lr", "eps", "weight_decay"])
@pytest.mark.parametrize("bad", [None, "0.1", [0.1], 1j, object(), np.array([0.1, 0.2])],
                         ids=["None", "str", "list", "complex", "object", "array2"])
def test_regression_adamw_step_hyperparameter_type_named(arg, bad):
    # was: "0.1" silently parsed; others a TypeError from float() not naming arg
    _raises(TypeError, arg, ops.adamw_step, **dict(_bufs(), **{arg: bad}))


@pytest.mark.parametrize("betas,exc", [((0.9,), TypeError), ((0.9, 0.9, 0.9), TypeError),
                                       (None, TypeError), ("ab", TypeError), (0.9, TypeError),
                                       ((None, 0.9), TypeError), ((2**1024, 0.9), ValueError)])
def test_regression_adamw_step_betas_named(betas, exc):
    # was: unpacking errors ("not enough values to unpack") not naming betas
    _raises(exc, "betas", ops.adamw_step, **dict(_bufs(), betas=betas))


def test_regression_adamw_step_hyperparameter_huge_int_is_valueerror():
    # was: OverflowError from float(2**1024)
    _raises(ValueError, "lr", ops.adamw_step, **dict(_bufs(), lr=2**1024))


def test_regression_cross_entropy_uint64_target_does_not_wrap_to_ignore_index():
    # was: targets uint64 2**64-100 became int64 -100 == ignore_index, so
    # that row was silently ignored instead of rejected
    logits = np.zeros((2, 3), np.float32)
    t = np.array([1, 2**64 - 100], np.uint64)
    _raises(ValueError, "targets", ops.cross_entropy, logits, t)
    with pytest.raises(ValueError, match="18446744073709551516"):
        ops.cross_entropy(logits, t)
    # in-range uint64 still works
    assert np.isfinite(ops.cross_entropy(logits, np.array([1, 2], np.uint64)))


def test_regression_embedding_uint64_id_beyond_int64_rejected_with_its_value():
    w = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="ids: value 18446744073709551615"):
        ops.embedding(np.array([2**64 - 1], np.uint64), w)


@pytest.mark.parametrize("fn", [ops.cross_entropy, ops.cross_entropy_forward])
def test_regression_cross_entropy_option_types(fn):
    logits, t = np.zeros((2, 3), np.float64), np.array([0, 1])
    # was: label_smoothing="0.1" parsed silently
    _raises(TypeError, "label_smoothing", fn, logits, t, label_smoothing="0.1")
    _raises(ValueError, "label_smoothing", fn, logits, t, label_smoothing=2**1024)
    # was: "The truth value of an array ... is ambiguous"
    _raises(ValueError, "reduction", fn, logits, t, reduction=np.array(["mean", "sum"]))
    _raises(ValueError, "reduction", fn, logits, t, reduction=["mean"])


def test_regression_cross_entropy_backward_huge_int_grad_loss():
    # was: OverflowError from float(2**1024)
    logits, t = np.zeros((2, 3), np.float64), np.array([0, 1])
    _, lse = ops.cross_entropy_forward(logits, t)
    _raises(ValueError, "grad_loss", ops.cross_entropy_backward, 2**1024, logits, t, lse)


def test_regression_backward_out_must_not_alias_an_input():
    # was: out=grad_out (or y / logits) was zeroed before the kernel read it,
    # giving a silently wrong gradient
    y = ops.softmax(_rand((3, 4), np.float64))
    g = _rand((3, 4), np.float64)
    _raises(ValueError, "out", ops.softmax_backward, g, y, out=g)
    _raises(ValueError, "out", ops.log_softmax_backward, g, y, out=y)
    logits, t = _rand((3, 4), np.float64), np.array([0, 1, 2])
    _, lse = ops.cross_entropy_forward(logits, t)
    _raises(ValueError, "out", ops.cross_entropy_backward, 1.0, logits, t, lse, out=logits)


@pytest.mark.parametrize("fn", [ops.dropout, ops.dropout_forward])
@pytest.mark.parametrize("bad", [None, "0.5", [0.5], 1j, np.array([0.1, 0.2])],
                         ids=["None", "str", "list", "complex", "array2"])
def test_regression_dropout_p_type_named(fn, bad):
    # was: "0.5" parsed silently; others float()'s message without "p"
    _raises(TypeError, "p", fn, np.ones(3, np.float32), p=bad)


def test_regression_dropout_p_huge_int():
    _raises(ValueError, "p", ops.dropout, np.ones(3, np.float32), p=2**1024)
    _raises(ValueError, "p", ops.dropout_backward, np.ones(3, np.float32), None, 2**1024)


def test_regression_dropout_backward_identity_writes_out():
    # was: with mask None (dropout was the identity) `out` was neither
    # checked nor written: the caller's buffer silently kept stale values
    g = _rand((2, 3), np.float32)
    out = np.full((2, 3), 7.0, np.float32)
    dx = ops.dropout_backward(g, None, 0.0, out=out)
    assert dx is out
    np.testing.assert_array_equal(out, g)
    _raises(ValueError, "out", ops.dropout_backward, g, None, 0.0, out=np.empty((3, 2),
                                                                                np.float32))
    assert ops.dropout_backward(g, None, 0.0) is g          # no out: unchanged


@pytest.mark.parametrize("arg", ["T", "C"])
@pytest.mark.parametrize("bad", [1.5, 3.0, math.nan, True, None, "3", [3], 1j],
                         ids=["1.5", "3.0", "nan", "True", "None", "str", "list", "complex"])
def test_regression_sinusoidal_sizes_must_be_ints(arg, bad):
    # was: int(1.5) silently truncated; int(None) etc. not naming T/C
    _raises(TypeError, arg, ops.sinusoidal_positions, **{"T": 5, "C": 6, arg: bad})


@pytest.mark.parametrize("arg", ["T", "C"])
@pytest.mark.parametrize("huge", [2**62, 2**63, 2**64, 2**1024])
def test_regression_sinusoidal_huge_sizes_are_valueerror_naming_them(arg, huge):
    # was: numpy's "array is too big" / "Maximum allowed dimension exceeded"
    # (or, with out=, an out shape error), naming neither T nor C
    _raises(ValueError, arg, ops.sinusoidal_positions, **{"T": 5, "C": 6, arg: huge})
    _raises(ValueError, arg, ops.sinusoidal_positions,
            **{"T": 5, "C": 6, "out": np.empty((5, 6), np.float32), arg: huge})


def test_regression_sinusoidal_huge_zero_size_table_is_fine():
    assert ops.sinusoidal_positions(2**59, 0).shape == (2**59, 0)
    _raises(ValueError, "T", ops.sinusoidal_positions, 2**62, 0)    # numpy's own limit


@pytest.mark.parametrize("bad,exc", [("bogus", TypeError), (object(), TypeError),
                                      (np.int32, TypeError)])
def test_regression_sinusoidal_dtype_named(bad, exc):
    # was: np.dtype("bogus") -> "data type 'bogus' not understood"
    _raises(exc, "dtype", ops.sinusoidal_positions, 3, 4, dtype=bad)


@pytest.mark.parametrize("bad", [None, "1e4", [1e4], 1j])
def test_regression_sinusoidal_base_named(bad):
    _raises(TypeError, "base", ops.sinusoidal_positions, 3, 4, base=bad)


@pytest.mark.parametrize("bad,exc", [(7.0, TypeError), (7.5, TypeError), (True, TypeError),
                                      (None, TypeError), ("7", TypeError),
                                      (2**62, ValueError), (2**63, ValueError),
                                      (2**1024, ValueError)])
def test_regression_embedding_backward_num_embeddings(bad, exc):
    # was: int(7.5) silently truncated; huge values gave numpy's "array is
    # too big" (or an out-shape error) not naming num_embeddings
    g, ids = np.ones((2, 3), np.float32), np.array([0, 1])
    _raises(exc, "num_embeddings", ops.embedding_backward, g, ids, bad)
    if exc is ValueError:
        _raises(exc, "num_embeddings", ops.embedding_backward, g, ids, bad,
                grad_weight=np.zeros((7, 3), np.float32))


def test_regression_embedding_backward_huge_vocab_zero_width_is_fine():
    dw = ops.embedding_backward(np.ones((2, 0), np.float32), np.array([0, 2**58]), 2**59)
    assert dw.shape == (2**59, 0)


@pytest.mark.parametrize("fn", [ops.layer_norm, ops.layer_norm_forward])
@pytest.mark.parametrize("bad,exc", [(None, TypeError), ("1e-5", TypeError), ([1e-5], TypeError),
                                      (1j, TypeError), (np.array([1e-5, 1e-5]), TypeError),
                                      (2**1024, ValueError)])
def test_regression_layer_norm_eps_named(fn, bad, exc):
    # was: "'>=' not supported between 'NoneType' and 'int'", the ambiguous
    # truth value of an array, or OverflowError from float(2**1024)
    _raises(exc, "eps", fn, np.ones((2, 3), np.float32), eps=bad)


def test_regression_checks_helpers():
    from pytransformer import validation as c
    assert c.int_arg("n", np.int64(3)) == 3 and c.int_arg("n", np.array(4)) == 4
    assert c.real_arg("r", np.array(0.5)) == 0.5 and c.real_arg("r", np.float32(2)) == 2.0
    for bad in (True, 1.0, "1", np.array(1.0), np.array([1])):
        _raises(TypeError, "n", c.int_arg, "n", bad)
    _raises(ValueError, "n", c.int_arg, "n", 6, 0, 5)      # bounds are inclusive
    assert c.int_arg("n", 5, 0, 5) == 5
    _raises(ValueError, "s", c.check_alloc, "s", (2**62, 2), np.float32)
    c.check_alloc("s", (2**59, 0), np.float64)
    _raises(ValueError, "s", c.check_alloc, "s", (2**62, 0), np.float64)


# ------------------------------------ regressions found by this file


def _q():
    return np.ones((1, 1, 2, 3), np.float32)


@pytest.mark.parametrize("fn", [ops.scaled_dot_product_attention, ops.attention_forward])
def test_regression_attention_scale_huge_int_overflowerror(fn):
    # ops/_attention.py _scale(): float(2**1024) raises OverflowError, which
    # the `except (TypeError, ValueError)` does not catch
    q = _q()
    _raises(ValueError, "scale", fn, q, q, q, scale=2**1024)


def test_regression_attention_backward_scale_huge_int_overflowerror():
    q = _q()
    o, lse, _ = ops.attention_forward(q, q, q)
    _raises(ValueError, "scale", ops.attention_backward, o, q, q, q, o, lse, scale=2**1024)


def test_regression_attention_scale_string_is_parsed():
    # ops/_attention.py _scale(): float("0.5") parses a string silently;
    # policy: a real number or None, TypeError otherwise
    q = _q()
    _raises(TypeError, "scale", ops.scaled_dot_product_attention, q, q, q, scale="0.5")


@pytest.mark.parametrize("bad", [["none"], np.array(["none", "tanh"])], ids=["list", "array"])
@pytest.mark.parametrize("fn", [ops.gelu, lambda x, approximate: ops.gelu_backward(
    x, x, approximate=approximate)], ids=["gelu", "gelu_backward"])
def test_regression_gelu_unhashable_approximate(fn, bad):
    # ops/_activation.py _gelu_kind(): `approximate not in _GELU_KIND` (a
    # dict) raises "TypeError: unhashable type: 'list'" not naming approximate
    _raises(TypeError, "approximate", fn, np.ones(3, np.float32), approximate=bad)


@pytest.mark.parametrize("fn", [ops.bias_act, ops.ffn])
def test_regression_activation_array_ambiguous(fn):
    # ops/_activation.py _activation(): `activation not in ACTIVATIONS` with
    # an ndarray raises "The truth value of an array ... is ambiguous"
    x = np.ones((2, 3), np.float32)
    bad = np.array(["relu", "gelu"])
    if fn is ops.bias_act:
        _raises(ValueError, "activation", fn, x, None, activation=bad)
    else:
        w1, w2 = np.ones((4, 3), np.float32), np.ones((3, 4), np.float32)
        _raises(ValueError, "activation", fn, x, w1, None, w2, None, activation=bad)


@pytest.mark.parametrize("field,value", [("x", [[1.0]]), ("w2", None)])
def test_regression_ffn_backward_forged_saved_attributeerror(field, value):
    # ops/_activation.py ffn_backward(): only isinstance(saved, FFNSaved) is
    # checked; a FFNSaved with a non-array field raises AttributeError
    # ('list' object has no attribute 'shape') from w1.shape / rows(x)
    kw = _ffn_make(np.float32)
    y, saved = ops.ffn_forward(**kw)
    bad = saved._replace(**{field: value})
    with pytest.raises(OK_ERRORS):
        ops.ffn_backward(np.ones_like(y), bad)


# ------------------------------------------------------ raw _core bindings
#
# The bindings neither copy, cast nor check arrays: the ops hand them arrays
# checked with pytransformer.validation. What they and C still refuse are
# values no array check sees (ids, targets, mask strides) and bad scalars.
# Spec: (function, builder of a valid positional argument list, argument
# names, optional array names, output array names[, lenient names]).

def _f(shape, dt=np.float32, fill=None):
    return _rand(shape, dt) if fill is None else np.full(shape, fill, dt)


def _raw_specs(dt):
    i64 = np.int64
    att_q, att_k, att_v = _f((1, 2, 3, 4), dt), _f((1, 2, 5, 4), dt), _f((1, 2, 5, 6), dt)
    mask = np.zeros((3, 5), dt)
    strides = np.array([0, 0, 5, 1], i64)
    return [
        (_core.gemm, lambda: [_f((3, 5), dt), _f((3, 4), dt), _f((4, 5), dt), False, False,
                              1.0, 0.0, False],
         "c a b trans_a trans_b alpha beta fallback", "", "c"),
        (_core.gemm, lambda: [_f((3, 5), dt), _f((3, 4), dt), _f((4, 5), dt), False, False,
                              1.0, 0.0, True],
         "c a b trans_a trans_b alpha beta fallback", "", "c"),
        (_core.layernorm_forward, lambda: [_f((3, 5), dt), _f((3,), dt), _f((3,), dt),
                                           _f((3, 5), dt), _f((5,), dt), _f((5,), dt), 1e-5],
         "y mean rstd x w b eps", "w b", "y mean rstd"),
        (_core.layernorm_backward, lambda: [_f((3, 5), dt, 0), _f((5,), dt, 0), _f((5,), dt, 0),
                                            _f((3, 5), dt), _f((3, 5), dt), _f((5,), dt),
                                            _f((3,), dt), _f((3,), dt, 1)],
         "dx dw db dy x w mean rstd", "dx dw db w", "dx dw db"),
        (_core.linear_forward, lambda: [_f((3, 6), dt), _f((3, 5), dt), _f((6, 5), dt),
                                        _f((6,), dt)], "y x w b", "b", "y"),
        (_core.linear_backward, lambda: [_f((3, 5), dt, 0), _f((6, 5), dt, 0), _f((6,), dt, 0),
                                         _f((3, 6), dt), _f((3, 5), dt), _f((6, 5), dt)],
         "dx dw db dy x w", "dx dw db", "dx dw db"),
        (_core.bias_act_forward, lambda: [_f((3, 5), dt), _f((3, 5), dt), _f((5,), dt), "gelu"],
         "y x bias kind", "bias", "y"),
        (_core.bias_act_backward, lambda: [_f((3, 5), dt, 0), _f((5,), dt, 0), _f((3, 5), dt),
                                           _f((3, 5), dt), _f((5,), dt), "relu"],
         "dx dbias dy x bias kind", "dx dbias bias", "dx dbias"),
        (_core.softmax_forward, lambda: [_f((3, 5), dt), _f((3, 5), dt), False],
         "y x log", "", "y"),
        (_core.softmax_backward, lambda: [_f((3, 5), dt, 0), _f((3, 5), dt), _f((3, 5), dt), True],
         "dx dy y log", "", "dx"),
        (_core.cross_entropy_forward, lambda: [_f((3,), dt), _f((3,), dt), _f((3, 5), dt),
                                               np.array([0, 4, -100], i64), -100, 0.1],
         "loss lse logits targets ignore_index label_smoothing", "", "loss lse", "logits"),
        (_core.cross_entropy_backward, lambda: [_f((3, 5), dt, 0), _f((3, 5), dt), _f((3,), dt),
                                                np.array([0, 4, -100], i64), _f((3,), dt),
                                                -100, 0.1],
         "dlogits logits lse targets dloss ignore_index label_smoothing", "", "dlogits",
         "dloss"),
        (_core.embedding_forward, lambda: [_f((3, 4), dt), np.array([0, 6, 2], i64),
                                           _f((7, 4), dt)], "y ids table", "", "y"),
        (_core.embedding_backward, lambda: [_f((7, 4), dt, 0), _f((3, 4), dt),
                                            np.array([0, 6, 2], i64)], "dtable dy ids", "",
         "dtable"),
        (_core.sinusoidal_positions, lambda: [_f((5, 6), dt), 10000.0], "out base", "", "out",
         "out"),
        (_core.dropout_mask, lambda: [np.empty(7, np.uint8), 0.3, 5], "keep p seed", "", "keep",
         "keep"),
        (_core.dropout_apply, lambda: [_f((7,), dt), _f((7,), dt), np.ones(7, np.uint8), 0.3],
         "y x keep p", "", "y"),
        (_core.adamw_step, lambda: [_f((7,), dt), _f((7,), dt, 0), _f((7,), dt, 0), _f((7,), dt),
                                    1, 1e-3, 0.9, 0.999, 1e-8, 0.01],
         "param m v grad step lr b1 b2 eps wd", "", "param m v"),
        (_core.attention_forward, lambda: [_f((1, 2, 3, 6), dt), _f((1, 2, 3), dt),
                                           _f((1, 2, 3, 5), dt), att_q, att_k, att_v, mask,
                                           strides, False, 0.5],
         "out lse weights q k v mask mask_strides is_causal scale",
         "lse weights mask mask_strides", "out lse weights", "mask mask_strides"),
        (_core.attention_backward, lambda: [_f((1, 2, 3, 4), dt, 0), _f((1, 2, 5, 4), dt, 0),
                                            _f((1, 2, 5, 6), dt, 0), _f((1, 2, 3, 6), dt),
                                            att_q, att_k, att_v, _f((1, 2, 3, 6), dt),
                                            _f((1, 2, 3), dt), mask, strides, True, 0.5],
         "dq dk dv dout q k v out lse mask mask_strides is_causal scale",
         "dq dk dv mask mask_strides", "dq dk dv", "mask mask_strides"),
    ]


_RAW_SCALARS = [("None", None), ("str", "1"), ("nan", math.nan), ("inf", math.inf),
                ("-1", -1), ("2**64", 2**64), ("-2**63-1", -2**63 - 1), ("2**1024", 2**1024),
                ("list", [1]), ("1.5", 1.5), ("object", object())]


def test_core_bindings_are_called_from_ops_only():
    """The kernel bindings do not check arrays (pytransformer.ops owns that,
    see pytransformer.validation): no library module but the ops may call
    them, or a malformed array could reach C unchecked."""
    import pathlib
    import pytransformer
    names = {spec[0].__name__ for spec in _raw_specs(F32)}
    call = re.compile(r"_core\.(" + "|".join(sorted(names)) + r")\(")
    root = pathlib.Path(pytransformer.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.parent.name != "ops" and call.search(p.read_text())]
    assert not offenders, offenders


def test_core_bindings_valid_calls_run():
    """Each binding of the catalogue runs on the valid arrays ops would pass."""
    for dt in (F32, F64):
        for fn, build, *_ in _raw_specs(dt):
            fn(*build())


def test_core_bindings_scalar_arguments():
    """Scalar arguments of the bindings: a clean exception or a normal return.
    OverflowError is allowed here (Cython's int64_t/double conversion of a
    huge int), unlike in pytransformer.ops. gemm's trans_a/trans_b are left
    out: they change the shapes the arrays must have, an array check that
    belongs to ops (matmul)."""
    failures = []
    for fn, build, names, *_ in _raw_specs(F64):
        names = names.split()
        for i, name in enumerate(names):
            if isinstance(build()[i], np.ndarray) or name in ("mask_strides", "trans_a",
                                                               "trans_b"):
                continue
            for label, value in _RAW_SCALARS:
                args = build()
                args[i] = value
                try:
                    fn(*args)
                except (TypeError, ValueError, OverflowError):
                    pass
                except Exception as e:
                    failures.append(f"{fn.__name__}({name}={label}): {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("bad", [[-1, 0, 1], [7, 0, 1], [2**62, 0, 1], [-2**62, 0, 1],
                                 [np.iinfo(np.int64).max, 0, 0]])
def test_core_index_values_rechecked_in_c(bad):
    """The raw bindings do not range-check ids/targets in Python: the C
    kernels must (writing nothing) -> ValueError."""
    ids = np.array(bad, np.int64)
    with pytest.raises(ValueError):
        _core.embedding_forward(np.empty((3, 4)), ids, np.ones((7, 4)))
    with pytest.raises(ValueError):
        _core.embedding_backward(np.zeros((7, 4)), np.ones((3, 4)), ids)
    t = ids.copy()
    with pytest.raises(ValueError):
        _core.cross_entropy_forward(np.empty(3), np.empty(3), np.ones((3, 7)), t, -100, 0.0)
    with pytest.raises(ValueError):
        _core.cross_entropy_backward(np.zeros((3, 7)), np.ones((3, 7)), np.ones(3), t,
                                     np.ones(3), -100, 0.0)


@pytest.mark.parametrize("strides", [[0, 0, 5, 2], [0, 0, 6, 1], [1, 0, 5, 1], [0, 15, 5, 1],
                                     [2**62, 0, 0, 0], [-1, 0, 5, 1], [0, 0, 5], [0, 0, 5, 1, 0],
                                     [2**63 - 1, 2**63 - 1, 2**63 - 1, 2**63 - 1]])
def test_core_attention_mask_strides_cannot_reach_outside(strides):
    q, k, v = np.ones((2, 2, 3, 4)), np.ones((2, 2, 5, 4)), np.ones((2, 2, 5, 4))
    mask = np.zeros((3, 5))
    with pytest.raises(ValueError):
        _core.attention_forward(np.empty((2, 2, 3, 4)), None, None, q, k, v, mask,
                                np.array(strides, np.int64), False, 1.0)
    with pytest.raises(ValueError):
        _core.attention_backward(np.zeros(q.shape), None, None, np.ones((2, 2, 3, 4)), q, k, v,
                                 np.ones((2, 2, 3, 4)), np.zeros((2, 2, 3)), mask,
                                 np.array(strides, np.int64), False, 1.0)


def test_core_attention_mask_without_strides_refused():
    q = np.ones((1, 1, 2, 3))
    with pytest.raises(OK_ERRORS):
        _core.attention_forward(np.empty((1, 1, 2, 3)), None, None, q, q, q, np.zeros((2, 2)),
                                None, False, 1.0)


@pytest.mark.parametrize("n", [0, -1, -2**31, 1025, 2**31, 2**70])
def test_core_set_num_threads_refuses_out_of_range(n):
    with pytest.raises(ValueError, match="n"):
        _core.set_num_threads(n)


def _survives(code):
    """Run `code` in a fresh interpreter (it may kill the process); True when
    it exits normally. Only for the known process-killing cases below."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       timeout=120)
    return r.returncode == 0, r.stderr.decode(errors="replace")[-500:]


def test_regression_huge_thread_count_is_refused():
    # pytransformer.set_num_threads(n) / _core.set_num_threads(n) accept any
    # n >= 1 (csrc/threads.c stores it); the next parallel region asks
    # libgomp for n threads: n = 32768 here -> "libgomp: Thread creation
    # failed" and exit(1); n = 100000 -> segfault; n = 2**31-1 -> "libgomp:
    # Out of memory allocating 481036338272 bytes" and exit. It should be a
    # ValueError at set time (e.g. n > some cap such as omp_get_thread_limit()
    # or 64 * num_procs()), and n >= 2**31 an ValueError rather than
    # OverflowError.
    ok, err = _survives("""
        import numpy as np, pytransformer
        from pytransformer import ops
        try:
            pytransformer.set_num_threads(100000)
        except ValueError:
            raise SystemExit(0)
        ops.softmax(np.ones((512, 512), np.float32))
    """)
    assert ok, err


def test_regression_blas_hook_takes_no_caller_pointers():
    # _core.set_blas((1, 1)) installs any nonzero integers as sgemm/dgemm
    # function pointers; the next BLAS-sized GEMM jumps to address 1.
    # A raw hook cannot validate an address: suggest accepting only the
    # capsules/objects that _blas.scipy_gemm_pointers() returns (or making
    # set_blas private and keeping use_blas as the public switch).
    ok, err = _survives("""
        import numpy as np
        from pytransformer import _core
        # The raw hook takes no addresses any more: only a switch.
        assert not hasattr(_core, "set_blas")
        _core.use_scipy_blas(1)
        x = np.ones((64, 64), np.float32)
        _core.gemm(np.empty((64, 64), np.float32), x, x)
    """)
    assert ok, err


# An argument of the wrong shape is refused before any value scan or copy:
# a tiny call with a broadcast view (no memory of its own) must not read or
# materialise the view's full logical size. Each case runs in a child with
# an address-space limit (a copy would be a MemoryError there) and a timeout
# (a value scan over 2**40 elements would not end).

_AS_LIMIT = 3 << 30


def _fast_refusals(body, timeout=60):
    """Run `body` (which fills CASES with (label, thunk)) in a child under
    _AS_LIMIT; return {label: (seconds, exception name, message)}."""
    code = textwrap.dedent("""
        import json, resource, time
        import numpy as np
        from pytransformer import ops
        resource.setrlimit(resource.RLIMIT_AS, (%d, %d))
        big = lambda shape, dt=np.float32: np.broadcast_to(np.zeros(1, dt), shape)
        CASES = []
    """ % (_AS_LIMIT, _AS_LIMIT)) + textwrap.dedent(body) + textwrap.dedent("""
        res = {}
        for label, thunk in CASES:
            t0 = time.perf_counter()
            try:
                thunk()
                res[label] = (time.perf_counter() - t0, "returned", "")
            except Exception as e:
                res[label] = (time.perf_counter() - t0, type(e).__name__, str(e))
        print(json.dumps(res))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-800:]
    import json
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def test_regression_cross_entropy_checks_target_shape_before_values():
    res = _fast_refusals("""
        CASES.append(("reported", lambda: ops.cross_entropy(
            np.zeros((0, 3), np.float32),
            np.broadcast_to(np.zeros(1, np.uint64), (7, 2**40)))))
        CASES.append(("valid", lambda: ops.cross_entropy(
            np.zeros((7, 3), np.float32), np.zeros(7, np.int64))))
    """, timeout=20)
    secs, exc, msg = res["reported"]
    assert exc == "ValueError" and _names_in(msg, ["targets"]), (exc, msg)
    assert secs < 2, secs
    assert res["valid"][1] == "returned", res["valid"]


# (label, call) with one broadcast-view argument of a wrong shape, per op; the
# message must name `name`.
_WRONG_SHAPE_VIEWS = [
    ("matmul a", "a", "ops.matmul(big((2**30, 7)), np.zeros((8, 3), np.float32))"),
    ("matmul b", "b", "ops.matmul(np.zeros((3, 4), np.float32), big((5, 2**30)))"),
    ("linear x", "weight", "ops.linear(big((7, 2**30, 4)), np.zeros((3, 5), np.float32))"),
    ("linear weight", "weight", "ops.linear(np.zeros((2, 4), np.float32), big((3, 2**30)))"),
    ("linear bias", "bias", "ops.linear(np.zeros((2, 4), np.float32), "
                            "np.zeros((3, 4), np.float32), big((2**30,)))"),
    ("linear out", "out", "ops.linear(big((2**30, 4)), np.zeros((3, 4), np.float32), "
                          "out=np.zeros((2, 3), np.float32))"),
    ("linear_backward", "grad_out", "ops.linear_backward(big((2**30, 3)), "
                                    "np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32))"),
    ("relu out", "out", "ops.relu(big((7, 2**30)), out=np.zeros(3, np.float32))"),
    ("relu_backward", "grad_out", "ops.relu_backward(big((7, 2**30)), np.zeros(3, np.float32))"),
    ("gelu_backward x", "grad_out", "ops.gelu_backward(np.zeros(3, np.float32), big((7, 2**30)))"),
    ("bias_act bias", "bias", "ops.bias_act(big((2**30, 4)), big((5,)))"),
    ("bias_act_backward", "grad_out", "ops.bias_act_backward(big((2**30, 4)), "
                                      "np.zeros((2, 4), np.float32), np.zeros(4, np.float32))"),
    ("ffn w1", "w1", "ops.ffn(big((2**30, 4)), big((3, 5)), None, np.zeros((4, 3), np.float32), "
                     "None)"),
    ("ffn w2", "w2", "ops.ffn(np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32), None, "
                     "big((4, 2**30)), None)"),
    ("softmax out", "out", "ops.softmax(big((7, 2**30)), out=np.zeros(3, np.float32))"),
    ("softmax_backward", "grad_out", "ops.softmax_backward(big((7, 2**30)), "
                                     "np.zeros((2, 3), np.float32))"),
    ("cross_entropy logits", "targets", "ops.cross_entropy(big((7, 2**30, 3)), "
                                        "np.zeros(5, np.int64))"),
    ("cross_entropy_backward lse", "lse", "ops.cross_entropy_backward(1.0, "
                                          "np.zeros((2, 3), np.float32), np.zeros(2, np.int64), "
                                          "big((7, 2**30)))"),
    ("layer_norm weight", "weight", "ops.layer_norm(big((2**30, 4)), big((5,)))"),
    ("layer_norm out", "out", "ops.layer_norm(big((2**30, 4)), out=np.zeros(3, np.float32))"),
    ("layer_norm_backward", "grad_out", "ops.layer_norm_backward(big((2**30, 4)), "
                                        "np.zeros((2, 4), np.float32), None, "
                                        "np.zeros(2, np.float32), np.zeros(2, np.float32))"),
    ("attention k", "k", "ops.scaled_dot_product_attention(big((1, 1, 2**28, 4)), "
                         "big((1, 1, 2**28, 5)), big((1, 1, 2**28, 4)))"),
    ("attention mask", "attn_mask", "ops.scaled_dot_product_attention("
                                    "np.zeros((1, 1, 2, 4), np.float32), "
                                    "np.zeros((1, 1, 3, 4), np.float32), "
                                    "np.zeros((1, 1, 3, 4), np.float32), "
                                    "attn_mask=big((7, 2**30), np.bool_))"),
    ("attention out", "out", "ops.scaled_dot_product_attention(big((1, 1, 2**28, 4)), "
                             "big((1, 1, 3, 4)), big((1, 1, 3, 4)), "
                             "out=np.zeros((1, 1, 2, 4), np.float32))"),
    ("attention_backward", "grad_out", "ops.attention_backward(big((1, 1, 2**28, 4)), "
                                       "*[np.zeros((1, 1, 2, 4), np.float32)] * 4, "
                                       "np.zeros((1, 1, 2), np.float32))"),
    ("embedding out", "out", "ops.embedding(big((7, 2**40), np.int64), "
                             "np.zeros((4, 2), np.float32), out=np.zeros((2, 2), np.float32))"),
    ("embedding_backward ids", "grad_out", "ops.embedding_backward(np.zeros((2, 3), np.float32), "
                                           "big((7, 2**40), np.int64), 4)"),
    ("embedding_backward grad_out", "grad_out", "ops.embedding_backward(big((7, 2**30, 3)), "
                                                "np.zeros(2, np.int64), 4)"),
    ("dropout out", "out", "ops.dropout(big((7, 2**30)), out=np.zeros(3, np.float32))"),
    ("dropout_backward mask", "mask", "ops.dropout_backward(big((7, 2**30)), "
                                      "np.zeros(3, np.uint8), 0.5)"),
    ("adamw_step grad", "grad", "ops.adamw_step(np.zeros(3, np.float32), big((7, 2**30)), "
                                "np.zeros(3, np.float32), np.zeros(3, np.float32), 1)"),
]


def test_regression_wrong_shape_broadcast_views_refused_before_any_copy():
    body = "".join(f"CASES.append(({label!r}, lambda: {call}))\n"
                   for label, _, call in _WRONG_SHAPE_VIEWS)
    res = _fast_refusals(body, timeout=120)
    bad = []
    for label, name, _ in _WRONG_SHAPE_VIEWS:
        secs, exc, msg = res[label]
        if exc != "ValueError" or not _names_in(msg, [name]) or secs > 2:
            bad.append((label, round(secs, 2), exc, msg[:120]))
    assert not bad, bad


def test_regression_index_values_scanned_per_stored_element():
    from pytransformer.validation import index_array
    # 2**40 rows of a broadcast view: the bad value is found in the 3 stored
    # elements, and reported as the first bad one in C order
    t = np.broadcast_to(np.array([1, 9, 7], np.int64), (2**40, 3))
    with pytest.raises(ValueError, match=r"^t: value 9 out of range \[0, 5\)$"):
        index_array("t", t, 0, 5)
    u = np.broadcast_to(np.array([[1], [2**64 - 1]], np.uint64), (2, 2**40))
    with pytest.raises(ValueError, match="value 18446744073709551615"):
        index_array("u", u, 0, 5)
    ok = np.broadcast_to(np.array([[0, 4]], np.int16), (3, 2))
    np.testing.assert_array_equal(index_array("ok", ok, 0, 5), np.tile([0, 4], (3, 1)))


@pytest.mark.parametrize("field,value", [
    ("h", np.ones((2, 7))),
    ("h", np.broadcast_to(np.ones(1), (2**20, 2**10))),
    ("b1", np.ones(2)),
    ("w1", np.ones((3, 5))),
    ("w2", np.ones((5, 4))),
], ids=["h", "h-broadcast", "b1", "w1", "w2"])
def test_regression_ffn_backward_saved_shapes_named_before_any_copy(field, value):
    # a forged FFNSaved of inconsistent shapes must be refused by its field's
    # name, before a broadcast field is copied to C order
    x = np.ones((2, 4))
    _, saved = ops.ffn_forward(x, np.ones((3, 4)), np.ones(3), np.ones((5, 3)), None)
    _raises(ValueError, f"saved.{field}", ops.ffn_backward, np.ones((2, 5)),
            saved._replace(**{field: value}))
