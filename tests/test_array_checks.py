"""Array checks have one owner, pytransformer.ops (with the checks in
pytransformer.validation): walk every public op with bad arrays, one
argument at a time, and check that each is refused before any C runs with a
one-line TypeError/ValueError naming that argument.

The faults, per array argument: not an array (a list), a wrong dtype, and,
for an argument whose shape the others fix, a wrong ndim and a wrong last
dim; per output buffer also read-only and non-contiguous.
"""
import re

import numpy as np
import pytest

from pytransformer import ops

F = np.float32


def _r(*shape, dt=F):
    return np.random.default_rng(sum(shape) + len(shape)).standard_normal(shape).astype(dt)


def _ce_lse():
    return ops.cross_entropy_forward(_r(2, 3, 5), np.zeros((2, 3), np.int64))[1]


def _ln_stats():
    _, mean, rstd = ops.layer_norm_forward(_r(2, 3, 5), _r(5))
    return mean, rstd


def _att_saved():
    q, k, v = _r(1, 2, 3, 4), _r(1, 2, 5, 4), _r(1, 2, 5, 6)
    out, lse, _ = ops.attention_forward(q, k, v)
    return out, lse


# op name -> (valid kwargs, {array arg: kind}); kinds: "float" (a float
# array whose shape the others fix), "lead" (a float array that fixes the
# shapes: dtype faults only), "index" (an integer array), "out" (a buffer the
# op writes), "mask" (dropout's uint8 mask), "attn" (an attention mask),
# "free_last" (a float array whose last dim is a free size: attention's v),
# "index_lead" (an integer array that fixes the shapes: embedding's ids).
def _cases():
    ce_t = np.zeros((2, 3), np.int64)
    mean, rstd = _ln_stats()
    att_out, att_lse = _att_saved()
    ffn_kw = dict(x=_r(2, 3, 4), w1=_r(6, 4), b1=_r(6), w2=_r(5, 6), b2=_r(5))
    act = {"x": "lead", "out": "out"}
    act_b = {"grad_out": "float", "x": "lead"}
    return {
        "matmul": (dict(a=_r(3, 4), b=_r(4, 5), out=np.empty((3, 5), F)),
                   {"a": "lead", "b": "free_last", "out": "out"}),
        "linear": (dict(x=_r(2, 3, 4), weight=_r(5, 4), bias=_r(5), out=np.empty((2, 3, 5), F)),
                   {"x": "lead", "weight": "float", "bias": "float", "out": "out"}),
        "linear_backward": (dict(grad_out=_r(2, 3, 5), x=_r(2, 3, 4), weight=_r(5, 4)),
                            {"grad_out": "float", "x": "lead", "weight": "float"}),
        "relu": (dict(x=_r(2, 5), out=np.empty((2, 5), F)), act),
        "relu_backward": (dict(grad_out=_r(2, 5), x=_r(2, 5)), act_b),
        "gelu": (dict(x=_r(2, 5), out=np.empty((2, 5), F)), act),
        "gelu_backward": (dict(grad_out=_r(2, 5), x=_r(2, 5)), act_b),
        "bias_act": (dict(x=_r(2, 5), bias=_r(5), out=np.empty((2, 5), F)),
                     {"x": "lead", "bias": "float", "out": "out"}),
        "bias_act_backward": (dict(grad_out=_r(2, 5), x=_r(2, 5), bias=_r(5)),
                              {"grad_out": "float", "x": "lead", "bias": "float"}),
        "ffn_forward": (ffn_kw, {"x": "lead", "w1": "float", "b1": "float", "w2": "float",
                                 "b2": "float"}),
        "ffn": (ffn_kw, {"x": "lead", "w1": "float", "b1": "float", "w2": "float",
                         "b2": "float"}),
        "ffn_backward": (dict(grad_out=_r(2, 3, 5), saved=ops.ffn_forward(**ffn_kw)[1]),
                         {"grad_out": "float"}),
        "softmax": (dict(x=_r(2, 5), out=np.empty((2, 5), F)), act),
        "log_softmax": (dict(x=_r(2, 5), out=np.empty((2, 5), F)), act),
        "softmax_backward": (dict(grad_out=_r(2, 5), y=ops.softmax(_r(2, 5)),
                                  out=np.empty((2, 5), F)),
                             {"grad_out": "float", "y": "lead", "out": "out"}),
        "log_softmax_backward": (dict(grad_out=_r(2, 5), y=ops.log_softmax(_r(2, 5)),
                                      out=np.empty((2, 5), F)),
                                 {"grad_out": "float", "y": "lead", "out": "out"}),
        "cross_entropy_forward": (dict(logits=_r(2, 3, 5), targets=ce_t),
                                  {"logits": "lead", "targets": "index"}),
        "cross_entropy": (dict(logits=_r(2, 3, 5), targets=ce_t),
                          {"logits": "lead", "targets": "index"}),
        "cross_entropy_backward": (dict(grad_loss=_r(2, 3), logits=_r(2, 3, 5), targets=ce_t,
                                        lse=_ce_lse(), reduction="none",
                                        out=np.empty((2, 3, 5), F)),
                                   {"grad_loss": "float", "logits": "lead", "targets": "index",
                                    "lse": "float", "out": "out"}),
        "layer_norm_forward": (dict(x=_r(2, 3, 5), weight=_r(5), bias=_r(5),
                                    out=np.empty((2, 3, 5), F), mean_out=np.empty((2, 3), F),
                                    rstd_out=np.empty((2, 3), F)),
                               {"x": "lead", "weight": "float", "bias": "float", "out": "out",
                                "mean_out": "out", "rstd_out": "out"}),
        "layer_norm": (dict(x=_r(2, 3, 5), weight=_r(5), bias=_r(5),
                            out=np.empty((2, 3, 5), F)),
                       {"x": "lead", "weight": "float", "bias": "float", "out": "out"}),
        "layer_norm_backward": (dict(grad_out=_r(2, 3, 5), x=_r(2, 3, 5), weight=_r(5),
                                     mean=mean, rstd=rstd, grad_input=np.empty((2, 3, 5), F)),
                                {"grad_out": "float", "x": "lead", "weight": "float",
                                 "mean": "float", "rstd": "float", "grad_input": "out"}),
        "attention_forward": (dict(q=_r(1, 2, 3, 4), k=_r(1, 2, 5, 4), v=_r(1, 2, 5, 6),
                                   attn_mask=np.zeros((3, 5), F), out=np.empty((1, 2, 3, 6), F)),
                              {"q": "lead", "k": "float", "v": "free_last", "attn_mask": "attn",
                               "out": "out"}),
        "scaled_dot_product_attention": (dict(q=_r(1, 2, 3, 4), k=_r(1, 2, 5, 4),
                                              v=_r(1, 2, 5, 6), attn_mask=np.zeros((3, 5), F),
                                              out=np.empty((1, 2, 3, 6), F)),
                                         {"q": "lead", "k": "float", "v": "free_last",
                                          "attn_mask": "attn", "out": "out"}),
        "attention_backward": (dict(grad_out=_r(1, 2, 3, 6), q=_r(1, 2, 3, 4), k=_r(1, 2, 5, 4),
                                    v=_r(1, 2, 5, 6), out=att_out, lse=att_lse),
                               {"grad_out": "float", "q": "lead", "k": "float", "v": "free_last",
                                "out": "float", "lse": "float"}),
        "embedding_forward": (dict(ids=np.array([[0, 3], [2, 1]]), weight=_r(4, 5),
                                   out=np.empty((2, 2, 5), F)),
                              {"ids": "index_lead", "weight": "lead", "out": "out"}),
        "embedding": (dict(ids=np.array([[0, 3], [2, 1]]), weight=_r(4, 5),
                           out=np.empty((2, 2, 5), F)),
                      {"ids": "index_lead", "weight": "lead", "out": "out"}),
        "embedding_backward": (dict(grad_out=_r(2, 2, 5), ids=np.array([[0, 3], [2, 1]]),
                                    num_embeddings=4, grad_weight=np.empty((4, 5), F)),
                               {"grad_out": "lead", "ids": "index", "grad_weight": "out"}),
        "sinusoidal_positions": (dict(T=3, C=4, out=np.empty((3, 4), F)), {"out": "out"}),
        "dropout_forward": (dict(x=_r(2, 5), p=0.5, out=np.empty((2, 5), F)), act),
        "dropout": (dict(x=_r(2, 5), p=0.5, out=np.empty((2, 5), F)), act),
        "dropout_backward": (dict(grad_out=_r(2, 5), mask=np.ones((2, 5), np.uint8), p=0.5,
                                  out=np.empty((2, 5), F)),
                             {"grad_out": "lead", "mask": "mask", "out": "out"}),
        "adamw_step": (dict(param=_r(7), grad=_r(7), exp_avg=np.zeros(7, F),
                            exp_avg_sq=np.zeros(7, F), step=1),
                       {"param": "lead", "grad": "float", "exp_avg": "out",
                        "exp_avg_sq": "out"}),
    }


CASES = _cases()


def _faults(kind, a):
    """(label, bad value) pairs for an argument of `kind` whose valid value is `a`."""
    out = [("a list", a.tolist())]
    if kind in ("index", "index_lead"):
        out.append(("float dtype", a.astype(F)))
        if kind == "index":
            out.append(("extra dim", a[None]))
        return out
    if kind == "mask":
        return out + [("float dtype", a.astype(F)), ("extra dim", a[None])]
    if kind == "attn":
        return out + [("int dtype", a.astype(np.int32)), ("float64", a.astype(np.float64)),
                      ("last dim + 1", np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), F))]
    out += [("complex dtype", a.astype(np.complex64))]
    if kind == "lead":
        return out + [("int dtype", a.astype(np.int32))]
    out += [("float64", a.astype(np.float64)), ("extra dim", a[None])]
    if kind == "free_last":
        return out
    out += [("last dim + 1", np.zeros(a.shape[:-1] + (a.shape[-1] + 1,), a.dtype))]
    if kind == "out":
        ro = a.copy()
        ro.flags.writeable = False
        wide = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        out += [("read-only", ro), ("non-contiguous", wide[..., ::2])]
    return out


def _named(msg, name):
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", msg)


def test_every_public_op_is_walked():
    assert set(CASES) == set(ops.__all__)


@pytest.mark.parametrize("op", sorted(CASES))
def test_bad_array_is_refused_naming_the_argument(op):
    kwargs, kinds = CASES[op]
    fn = getattr(ops, op)
    fn(**kwargs)                                        # the valid call runs
    problems = []
    for name, kind in kinds.items():
        for label, bad in _faults(kind, kwargs[name]):
            call = dict(kwargs, **{name: bad})
            try:
                fn(**call)
            except (TypeError, ValueError) as e:
                msg = str(e)
                if "\n" in msg or not _named(msg, name):
                    problems.append(f"{name} ({label}): {type(e).__name__}: {msg!r}")
            else:
                problems.append(f"{name} ({label}): accepted")
    assert not problems, "\n".join(problems)
