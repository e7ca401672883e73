"""pytransformer.optim against PyTorch's documented algorithms written out in NumPy.

The references below (ref_sgd_step, ref_adamw_step, ref_total_norm, paper_rate,
ref_warmup_cosine) follow torch.optim's documentation and torch 2.x code,
written independently of pytransformer/optim.py; every update is checked for
several steps, in float32 and float64, with several parameter groups and with
gradients missing for some parameters on some steps. (tests/test_optim.py
tests the C AdamW kernel itself.)
"""
import copy
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer import optim
from tests.helpers import DTYPES, rand

# Tolerances by dtype: the AdamW kernel computes each element in the
# parameter's dtype (float32 math for float32), the references compute in
# float64 and keep state in the parameter's dtype, so float32 differs by a
# few ulps per step.
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


class P:
    """Stand-in for pytransformer.autograd.Parameter: .data, .grad, .requires_grad."""

    def __init__(self, data, requires_grad=True):
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad

    def __eq__(self, other):          # like an elementwise Tensor ==: unhashable, not truthy
        raise AssertionError("the optimizer must compare parameters by identity")

    __hash__ = None


SHAPES = [(3, 4), (5,), (2, 3, 2), (1,)]


def make_params(rng, dtype, shapes=SHAPES):
    return [P(rand(rng, s, dtype)) for s in shapes]


def grad_schedule(rng, params, n_steps, dtype):
    """Per step, one gradient per parameter or None: parameter 1 has no
    gradient on steps 1 and 3, parameter 3 never has one."""
    out = []
    for t in range(n_steps):
        gs = []
        for i, p in enumerate(params):
            if i == 3 or (i == 1 and t in (1, 3)):
                gs.append(None)
            else:
                gs.append(rand(rng, p.data.shape, dtype, scale=0.5 + t))
        out.append(gs)
    return out


# --------------------------------------------------------------------------
# NumPy references (torch 2.x)
# --------------------------------------------------------------------------

def ref_sgd_step(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """torch.optim.SGD for one parameter (torch's code order: maximize negates
    the gradient before weight decay is added). Returns (p, buf)."""
    g = g.astype(np.float64)
    p64 = p.astype(np.float64)
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p64
    if momentum != 0:
        if buf is None:
            buf = g.copy()
        else:
            buf = momentum * buf.astype(np.float64) + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
        buf = buf.astype(p.dtype)
    return (p64 - lr * g).astype(p.dtype), buf


def ref_adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay, maximize=False):
    """torch.optim.AdamW's documented algorithm for one parameter at step t
    (from 1). Returns (p, m, v) in p's dtype."""
    b1, b2 = betas
    g = g.astype(np.float64)
    if maximize:
        g = -g
    theta = p.astype(np.float64) * (1 - lr * weight_decay)
    m = b1 * m.astype(np.float64) + (1 - b1) * g
    v = b2 * v.astype(np.float64) + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta.astype(p.dtype), m.astype(p.dtype), v.astype(p.dtype)


def ref_total_norm(grads, norm_type):
    """The norm of all gradients concatenated, in float64."""
    flat = np.concatenate([g.astype(np.float64).ravel() for g in grads])
    if norm_type == math.inf:
        return float(np.max(np.abs(flat))) if flat.size else 0.0
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))


def paper_rate(step_num, d_model, warmup):
    """"Attention Is All You Need", eq. (3)."""
    return d_model ** -0.5 * min(step_num ** -0.5, step_num * warmup ** -1.5)


def ref_warmup_cosine(k, warmup, total, min_ratio):
    """The multiplier for the k-th update (from 1) as documented."""
    if k <= warmup:
        return k / warmup
    progress = min(1.0, (k - warmup) / (total - warmup))
    return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * progress)) / 2


# --------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------

SGD_CONFIGS = [
    dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    dict(momentum=0.9, dampening=0.1, weight_decay=1e-2, nesterov=False, maximize=False),
    dict(momentum=0.8, dampening=0.0, weight_decay=5e-2, nesterov=True, maximize=False),
    dict(momentum=0.5, dampening=0.0, weight_decay=1e-1, nesterov=False, maximize=True),
    dict(momentum=0.0, dampening=0.0, weight_decay=1e-1, nesterov=False, maximize=True),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", SGD_CONFIGS)
def test_sgd_matches_reference(dtype, cfg):
    rng = np.random.default_rng(1)
    params = make_params(rng, dtype)
    # group 0: defaults (lr=0.1 plus cfg); group 1: its own lr and momentum
    g1 = dict(cfg, lr=0.05, momentum=0.7 if cfg["momentum"] else 0.0)
    opt = optim.SGD([{"params": params[:2]},
                     dict(g1, params=params[2:])], lr=0.1, **cfg)
    hypers = [dict(cfg, lr=0.1)] * 2 + [g1] * 2
    ref_p = [p.data.copy() for p in params]
    ref_buf = [None] * len(params)
    views = [p.data for p in params]
    for gs in grad_schedule(rng, params, 5, dtype):
        for p, g in zip(params, gs):
            p.grad = None if g is None else g.copy()
        opt.step()
        for i, g in enumerate(gs):
            if g is not None:
                ref_p[i], ref_buf[i] = ref_sgd_step(ref_p[i], g, ref_buf[i], **hypers[i])
            np.testing.assert_allclose(params[i].data, ref_p[i], **TOL[dtype])
            if ref_buf[i] is not None:
                np.testing.assert_allclose(opt.state[params[i]]["momentum_buffer"],
                                           ref_buf[i], **TOL[dtype])
            if g is not None:
                np.testing.assert_array_equal(params[i].grad, g)   # grads are read only
    for p, v in zip(params, views):
        assert p.data is v and p.data.dtype == dtype           # updated in place
    np.testing.assert_array_equal(params[3].data, ref_p[3])     # never had a gradient
    assert params[3] not in opt.state
    if cfg["momentum"] == 0:
        assert len(opt.state) == 0                              # PyTorch >= 2.2: no buffers


def test_sgd_first_step_by_hand():
    p = P(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.5, momentum=0.9, dampening=0.5, weight_decay=0.1)
    p.grad = np.array([0.2, 0.4])
    opt.step()
    # first step: buf = g + wd p (no dampening applied), p -= lr buf
    g = np.array([0.2 + 0.1, 0.4 - 0.2])
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"], g, rtol=1e-15)
    np.testing.assert_allclose(p.data, [1.0 - 0.5 * g[0], -2.0 - 0.5 * g[1]], rtol=1e-15)
    p.grad = np.array([1.0, 0.0])
    before = p.data.copy()
    opt.step()
    g2 = np.array([1.0, 0.0]) + 0.1 * before
    buf = 0.9 * g + 0.5 * g2
    np.testing.assert_allclose(p.data, before - 0.5 * buf, rtol=1e-15)


def test_sgd_default_lr_and_signature():
    p = P(np.ones(2))
    opt = optim.SGD([p])
    assert opt.defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                                nesterov=False, maximize=False)
    with pytest.raises(TypeError):
        optim.SGD([p], 0.1, 0, 0, 0, False, True)             # maximize is keyword-only


# --------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("maximize", [False, True])
def test_adamw_matches_reference(dtype, maximize):
    rng = np.random.default_rng(2)
    params = make_params(rng, dtype)
    groups = [dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
              dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)]
    opt = optim.AdamW([{"params": params[:2]},
                       dict(groups[1], params=params[2:])], maximize=maximize, **groups[0])
    hypers = [groups[0]] * 2 + [groups[1]] * 2
    ref = [(p.data.copy(), np.zeros_like(p.data), np.zeros_like(p.data)) for p in params]
    steps = [0] * len(params)
    for gs in grad_schedule(rng, params, 6, dtype):
        for p, g in zip(params, gs):
            p.grad = g
        opt.step()
        for i, g in enumerate(gs):
            if g is not None:
                steps[i] += 1
                ref[i] = ref_adamw_step(*ref[i][:1], g, *ref[i][1:], steps[i],
                                        maximize=maximize, **hypers[i])
            np.testing.assert_allclose(params[i].data, ref[i][0], **TOL[dtype])
            if steps[i]:
                st = opt.state[params[i]]
                assert st["step"] == steps[i] and type(st["step"]) is int
                np.testing.assert_allclose(st["exp_avg"], ref[i][1], **TOL[dtype])
                np.testing.assert_allclose(st["exp_avg_sq"], ref[i][2], **TOL[dtype])
                assert st["exp_avg"].dtype == dtype and st["exp_avg_sq"].dtype == dtype
    assert steps == [6, 4, 6, 0]
    assert params[3] not in opt.state


def test_adamw_defaults_match_pytorch():
    opt = optim.AdamW([P(np.zeros(2, np.float32))])
    assert opt.defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                                maximize=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_non_contiguous_grad_and_views_of_data(dtype):
    rng = np.random.default_rng(3)
    p = P(rand(rng, (4, 3), dtype))
    view = p.data[1:3]                       # someone else's view of the parameter
    before = p.data.copy()
    g = rand(rng, (3, 4), dtype).T           # non-contiguous, shape (4, 3)
    p.grad = g
    opt = optim.AdamW([p], lr=0.1)
    opt.step()
    rp, _, _ = ref_adamw_step(before, np.ascontiguousarray(g), np.zeros_like(before),
                              np.zeros_like(before), 1, 0.1, (0.9, 0.999), 1e-8, 1e-2)
    np.testing.assert_allclose(p.data, rp, **TOL[dtype])
    np.testing.assert_array_equal(view, p.data[1:3])
    assert not np.array_equal(view, before[1:3])


def test_adamw_rejects_non_contiguous_data_before_updating_anything():
    a = P(np.ones(3))
    b = P(np.ones((3, 4))[:, ::2])           # a non-contiguous .data cannot go to the kernel
    a.grad, b.grad = np.ones(3), np.ones((3, 2))
    opt = optim.AdamW([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\].data.*C-contiguous"):
        opt.step()
    np.testing.assert_array_equal(a.data, 1.0)
    assert len(opt.state) == 0


def test_adamw_trains_least_squares():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((64, 5))
    w_true = rng.standard_normal(5)
    y = X @ w_true
    w = P(np.zeros(5))
    opt = optim.AdamW([w], lr=0.05, weight_decay=0.0)
    for _ in range(600):
        w.grad = 2 * X.T @ (X @ w.data - y) / len(y)
        opt.step()
    np.testing.assert_allclose(w.data, w_true, atol=1e-3)


# --------------------------------------------------------------------------
# Optimizer base: groups, zero_grad, step, errors
# --------------------------------------------------------------------------

def test_param_groups_defaults_overrides_and_add_param_group():
    a, b, c = (P(np.zeros(2)) for _ in range(3))
    opt = optim.AdamW([{"params": [a], "lr": 0.5, "name": "enc"}, {"params": (x for x in [b])}],
                      lr=0.1, betas=[0.8, 0.9])
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    assert opt.param_groups[0]["name"] == "enc"             # extra keys are kept
    assert opt.param_groups[1]["betas"] == (0.8, 0.9)        # list normalised to a tuple
    opt.add_param_group({"params": c, "weight_decay": 0.0})  # a single parameter, as PyTorch
    g = opt.param_groups[2]
    assert len(g["params"]) == 1 and g["params"][0] is c
    assert (g["lr"], g["weight_decay"], g["eps"]) == (0.1, 0.0, 1e-8)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [P(np.zeros(1)), b]})
    assert len(opt.param_groups) == 3
    assert "Parameter Group 2" in repr(opt)


def test_zero_grad_and_closure():
    a, b = P(np.ones(3)), P(np.ones(2, np.float32))
    a.grad = np.full(3, 2.0)
    opt = optim.SGD([a, b], lr=0.1)
    g = a.grad
    opt.zero_grad(set_to_none=False)
    assert a.grad is g and np.all(g == 0) and b.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    calls = []

    def closure():
        calls.append(1)
        a.grad = np.ones(3)
        return 1.25

    assert opt.step(closure) == 1.25 and calls == [1]
    np.testing.assert_allclose(a.data, 0.9)
    assert opt.step() is None


def test_requires_grad_false_with_grad_is_updated_like_pytorch():
    # PyTorch's step looks only at .grad; requires_grad is not consulted.
    p = P(np.ones(2), requires_grad=False)
    opt = optim.SGD([p], lr=0.5)
    opt.step()
    np.testing.assert_array_equal(p.data, 1.0)
    p.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(p.data, 0.5)


@pytest.mark.parametrize("make, err, match", [
    (lambda: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda: optim.SGD([{"params": []}]), ValueError, "empty parameter list"),
    (lambda: optim.SGD(np.ones(3)), TypeError, "single ndarray"),
    (lambda: optim.SGD(P(np.ones(3))), TypeError, "single P"),
    (lambda: optim.SGD([np.ones(3)]), TypeError, "numpy.ndarray"),
    (lambda: optim.SGD(set()), TypeError, "set"),
    (lambda: optim.SGD(5), TypeError, "iterable"),
    (lambda: optim.SGD([P(np.ones(3, np.int64))]), TypeError, "float32 or float64, got int64"),
    (lambda: optim.SGD([P([1.0, 2.0])]), TypeError, r"\.data: expected a numpy.ndarray"),
    (lambda: optim.SGD([object()]), TypeError, "expected a Parameter"),
    (lambda: (lambda p: optim.SGD([{"params": [p]}, {"params": [p]}]))(P(np.ones(1))),
     ValueError, "more than one parameter group"),
    (lambda: (lambda p: optim.SGD([p, p]))(P(np.ones(1))), ValueError, "twice"),
    (lambda: optim.SGD([P(np.ones(1))], lr=-0.1), ValueError,
     r"lr: expected a number >= 0, got -0.1"),
    (lambda: optim.SGD([P(np.ones(1))], lr=float("nan")), ValueError, "lr"),
    (lambda: optim.SGD([P(np.ones(1))], lr="0.1"), TypeError, "lr"),
    (lambda: optim.SGD([P(np.ones(1))], momentum=-0.9), ValueError, "momentum"),
    (lambda: optim.SGD([P(np.ones(1))], weight_decay=-1), ValueError, "weight_decay"),
    (lambda: optim.SGD([P(np.ones(1))], nesterov=True), ValueError, "Nesterov"),
    (lambda: optim.SGD([P(np.ones(1))], momentum=0.9, dampening=0.1, nesterov=True),
     ValueError, "Nesterov"),
    (lambda: optim.SGD([{"params": [P(np.ones(1))], "lr": -1.0}]), ValueError,
     r"param_groups\[0\]\['lr'\]"),
    (lambda: optim.AdamW([P(np.ones(1))], eps=-1e-8), ValueError, "eps"),
    (lambda: optim.AdamW([P(np.ones(1))], weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: optim.AdamW([P(np.ones(1))], betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (lambda: optim.AdamW([P(np.ones(1))], betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (lambda: optim.AdamW([P(np.ones(1))], betas=0.9), TypeError, "betas"),
    (lambda: optim.AdamW([{"params": [P(np.ones(1))], "betas": (0.9, 1.5)}]), ValueError,
     r"betas'\]\[1\]"),
    (lambda: optim.AdamW([{"params": [P(np.ones(1))], "amsgrad": True}]), ValueError, "amsgrad"),
    (lambda: optim.AdamW([{"lr": 0.1}]), ValueError, "'params'"),
])
def test_constructor_errors(make, err, match):
    with pytest.raises(err, match=match):
        make()


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdamW])
@pytest.mark.parametrize("bad, err, match", [
    (np.ones(3, np.float32), TypeError, "dtype float64"),
    (np.ones(4), ValueError, r"shape \(3,\)"),
    ([1.0, 1.0, 1.0], TypeError, "numpy.ndarray or None"),
])
def test_bad_grad_raises_before_any_update(cls, bad, err, match):
    a, b = P(np.ones(3)), P(np.ones(3))
    a.grad, b.grad = np.ones(3), bad
    opt = cls([{"params": [a]}, {"params": [b]}], lr=0.1)
    with pytest.raises(err, match=r"param_groups\[1\]\['params'\]\[0\]\.grad.*" + match):
        opt.step()
    np.testing.assert_array_equal(a.data, 1.0)
    assert len(opt.state) == 0
    opt.param_groups[0]["lr"] = -1.0                         # groups are checked at step()
    b.grad = np.ones(3)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr'\]"):
        opt.step()


# --------------------------------------------------------------------------
# state_dict / load_state_dict
# --------------------------------------------------------------------------

def _train(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = None if g is None else g.copy()
        opt.step()


def _jsonish(sd):
    """What a JSON round trip does to the non-array parts: tuples become
    lists and int keys become strings."""
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in sd["param_groups"]]
    return {"state": {str(k): dict(v) for k, v in sd["state"].items()}, "param_groups": groups}


def _make(cls, params):
    if cls is optim.SGD:
        return cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}],
                   lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True)
    return cls([{"params": params[:2]}, {"params": params[2:], "betas": (0.8, 0.9)}],
               lr=0.05, weight_decay=1e-2)


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdamW])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("jsonish", [False, True])
def test_resume_from_state_dict_is_bit_identical(cls, dtype, jsonish):
    rng = np.random.default_rng(5)
    params = make_params(rng, dtype)
    init = [p.data.copy() for p in params]
    grads = grad_schedule(rng, params, 7, dtype)

    opt = _make(cls, params)                                    # uninterrupted run
    _train(opt, params, grads)
    final = [p.data.copy() for p in params]

    params2 = [P(a.copy()) for a in init]                       # interrupted after 3 steps
    opt2 = _make(cls, params2)
    _train(opt2, params2, grads[:3])
    sd = opt2.state_dict()
    snapshot = copy.deepcopy(sd)
    saved_params = [p.data.copy() for p in params2]
    _train(opt2, params2, grads[3:4])                            # the saved dict stays put
    for k, st in sd["state"].items():
        for name, v in st.items():
            np.testing.assert_array_equal(v, snapshot["state"][k][name])

    params3 = [P(a) for a in saved_params]                       # a fresh process resumes
    opt3 = _make(cls, params3)
    opt3.load_state_dict(_jsonish(snapshot) if jsonish else snapshot)
    _train(opt3, params3, grads[3:])
    for a, b in zip(params3, final):
        np.testing.assert_array_equal(a.data, b)
    assert set(opt3.state_dict()["state"]) == set(opt.state_dict()["state"])


def test_state_dict_layout_matches_pytorch():
    a, b, c = P(np.ones(2)), P(np.ones(3)), P(np.ones(1))
    opt = optim.AdamW([{"params": [a, b]}, {"params": [c], "lr": 0.5}])
    a.grad, c.grad = np.ones(2), np.ones(1)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 2]                         # b never had a gradient
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert sd["state"][2]["step"] == 1
    assert sd["param_groups"][1]["lr"] == 0.5
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert sd["state"][0]["exp_avg"] is not opt.state[a]["exp_avg"]


def test_load_state_dict_copies_and_accepts_pytorch_extras():
    p = P(np.ones(3, np.float32))
    opt = optim.AdamW([p])
    m = np.full(3, 0.5, np.float32)
    v = np.full(3, 0.25, np.float32)
    torch_like = {
        "state": {0: {"step": np.array(4.0, np.float32), "exp_avg": m, "exp_avg_sq": v}},
        "param_groups": [{"lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.0,
                          "amsgrad": False, "foreach": None, "maximize": False,
                          "capturable": False, "differentiable": False, "fused": None,
                          "decoupled_weight_decay": True, "initial_lr": 0.02,
                          "params": [0]}],
    }
    opt.load_state_dict(torch_like)
    st = opt.state[p]
    assert st["step"] == 4 and type(st["step"]) is int
    assert not np.shares_memory(st["exp_avg"], m) and not np.shares_memory(st["exp_avg_sq"], v)
    m[...] = 7
    assert np.all(st["exp_avg"] == 0.5)
    g = opt.param_groups[0]
    assert (g["lr"], g["betas"], g["initial_lr"]) == (0.01, (0.9, 0.99), 0.02)
    assert g["params"][0] is p
    # the next update continues from step 4
    p.grad = np.ones(3, np.float32)
    rp, rm, rv = ref_adamw_step(np.ones(3, np.float32), p.grad, np.full(3, 0.5, np.float32),
                                np.full(3, 0.25, np.float32), 5, 0.01, (0.9, 0.99), 1e-8, 0.0)
    opt.step()
    np.testing.assert_allclose(p.data, rp, **TOL[np.float32])
    # older SGD state dicts store momentum_buffer None when momentum == 0
    q = P(np.ones(2))
    sgd = optim.SGD([q])
    sgd.load_state_dict({"state": {0: {"momentum_buffer": None}},
                         "param_groups": [{"lr": 0.1, "momentum": 0, "dampening": 0,
                                           "weight_decay": 0, "nesterov": False,
                                           "params": [0]}]})
    assert q not in sgd.state and sgd.param_groups[0]["maximize"] is False


def _sd_for(opt):
    return copy.deepcopy(opt.state_dict())


def _edit(fn):
    def make(opt):
        sd = _sd_for(opt)
        fn(sd)
        return sd
    return make


@pytest.mark.parametrize("make, err, match", [
    (lambda opt: [], TypeError, "expected a dict"),
    (_edit(lambda sd: sd.pop("state")), ValueError, "missing key"),
    (_edit(lambda sd: sd.update(extra=1)), ValueError, "unexpected key"),
    (_edit(lambda sd: sd["param_groups"].pop()), ValueError, "1 parameter groups, the "
                                                             "optimizer has 2"),
    (_edit(lambda sd: sd["param_groups"][1]["params"].append(9)), ValueError,
     "has 2 parameters, the optimizer's group 1 has 1"),
    (_edit(lambda sd: sd["param_groups"][0]["params"].__setitem__(1, 0)), ValueError,
     "appears twice"),
    (_edit(lambda sd: sd["state"].__setitem__(7, sd["state"][0])), ValueError,
     "not the index of a parameter"),
    (_edit(lambda sd: sd["state"][0].__setitem__("exp_avg", np.zeros((2, 2)))), ValueError,
     r"expected shape \(3,\)"),
    (_edit(lambda sd: sd["state"][0].__setitem__("exp_avg_sq", np.zeros(3, np.float32))),
     TypeError, "expected dtype float64"),
    (_edit(lambda sd: sd["state"][0].__setitem__("exp_avg", [0.0, 0.0, 0.0])), TypeError,
     "numpy.ndarray"),
    (_edit(lambda sd: sd["state"][0].pop("exp_avg_sq")), ValueError, "missing state key"),
    (_edit(lambda sd: sd["state"][0].__setitem__("momentum_buffer", np.zeros(3))), ValueError,
     "unexpected state key"),
    (_edit(lambda sd: sd["state"][0].__setitem__("step", 2.5)), ValueError, "whole number"),
    (_edit(lambda sd: sd["state"][0].__setitem__("step", -1)), ValueError, "whole number"),
    (_edit(lambda sd: sd["param_groups"][0].__setitem__("betas", [0.9, 1.0])), ValueError,
     r"betas'\]\[1\]"),
    (_edit(lambda sd: sd["param_groups"][0].__setitem__("lr", -1)), ValueError, "lr"),
    (_edit(lambda sd: sd["param_groups"][0].pop("eps")), ValueError, "missing hyperparameter"),
    (_edit(lambda sd: sd["param_groups"][0].__setitem__("amsgrad", True)), ValueError,
     "amsgrad"),
])
def test_load_state_dict_errors_leave_optimizer_unchanged(make, err, match):
    a, b, c = P(np.ones(3)), P(np.ones(3)), P(np.ones(2))
    opt = optim.AdamW([{"params": [a, b]}, {"params": [c], "lr": 0.5}])
    for p in (a, b, c):
        p.grad = np.full(p.data.shape, 0.5)
    opt.step()
    before = _sd_for(opt)
    with pytest.raises(err, match=match):
        opt.load_state_dict(make(opt))
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for k in before["state"]:
        for name, v in before["state"][k].items():
            np.testing.assert_array_equal(after["state"][k][name], v)


# --------------------------------------------------------------------------
# clip_grad_norm_
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1, 3.0, 0.5, math.inf, "inf"])
def test_clip_grad_norm_matches_pytorch_formula(dtype, norm_type):
    rng = np.random.default_rng(6)
    params = make_params(rng, dtype)
    params[1].grad = None
    for i in (0, 2, 3):
        params[i].grad = rand(rng, params[i].data.shape, dtype, scale=3.0)
    grads = [p.grad.copy() for p in params if p.grad is not None]
    nt = math.inf if norm_type == "inf" else float(norm_type)
    expect = ref_total_norm(grads, nt)
    max_norm = expect / 4
    total = optim.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, expect, rtol=1e-12)
    coef = max_norm / (expect + 1e-6)
    new = [p.grad for p in params if p.grad is not None]
    for g, g0 in zip(new, grads):
        np.testing.assert_allclose(g, g0 * coef, **TOL[dtype])
        assert g.dtype == dtype
    np.testing.assert_allclose(ref_total_norm(new, nt), max_norm, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_below_max_leaves_grads_untouched(dtype):
    rng = np.random.default_rng(7)
    p = P(np.zeros(10, dtype))
    p.grad = rand(rng, (10,), dtype)
    g0 = p.grad.copy()
    grad = p.grad
    total = optim.clip_grad_norm_(p, max_norm=1e6)          # a single parameter, as PyTorch
    assert p.grad is grad
    np.testing.assert_array_equal(p.grad, g0)
    np.testing.assert_allclose(total, np.linalg.norm(g0.astype(np.float64)), rtol=1e-12)


def test_clip_grad_norm_accumulates_in_float64():
    # 2e5 float32 values of 1e-3 plus one of 1: a float32 running sum of squares
    # would lose the small terms.
    p = P(np.zeros(200_001, np.float32))
    p.grad = np.full(200_001, 1e-3, np.float32)
    p.grad[0] = 1.0
    exact = math.sqrt(1.0 + 200_000 * float(np.float32(1e-3)) ** 2)
    assert optim.clip_grad_norm_([p], 10.0) == pytest.approx(exact, rel=1e-12)


def test_clip_grad_norm_no_grads_and_nonfinite():
    assert optim.clip_grad_norm_([P(np.ones(2)), P(np.ones(1))], 1.0) == 0.0
    assert optim.clip_grad_norm_([], 1.0) == 0.0
    p = P(np.ones(3))
    p.grad = np.array([1.0, np.inf, 2.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(p.grad, [1.0, np.inf, 2.0])   # raised before scaling
    # PyTorch's numbers without the check: coef = 1 / inf = 0, inf * 0 = nan
    assert optim.clip_grad_norm_([p], 1.0) == math.inf
    np.testing.assert_array_equal(p.grad, [0.0, np.nan, 0.0])
    p.grad = np.array([1.0, np.nan])
    assert math.isnan(optim.clip_grad_norm_([p], 1.0, norm_type="inf"))
    assert np.all(np.isnan(p.grad))


@pytest.mark.parametrize("kw, err, match", [
    (dict(max_norm=-1.0), ValueError, "max_norm"),
    (dict(max_norm="1"), TypeError, "max_norm"),
    (dict(norm_type=0), ValueError, "norm_type"),
    (dict(norm_type=-2.0), ValueError, "norm_type"),
    (dict(norm_type="fro"), ValueError, "norm_type"),
])
def test_clip_grad_norm_bad_arguments(kw, err, match):
    p = P(np.ones(2))
    p.grad = np.ones(2)
    kw = dict(dict(max_norm=1.0), **kw)
    with pytest.raises(err, match=match):
        optim.clip_grad_norm_([p], **kw)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        optim.clip_grad_norm_(np.ones(3), 1.0)
    bad = P(np.ones(2))
    bad.grad = np.ones(2, np.int32)
    with pytest.raises(TypeError, match=r"parameters\[0\]\.grad"):
        optim.clip_grad_norm_([bad], 1.0)


@given(seed=st.integers(0, 2**32 - 1), max_norm=st.floats(1e-3, 1e3),
       norm_type=st.sampled_from([1.0, 2.0, 4.0, math.inf]))
def test_clip_grad_norm_result_norm_is_min_of_total_and_max(seed, max_norm, norm_type):
    rng = np.random.default_rng(seed)
    params = make_params(rng, np.float64)
    for p in params:
        p.grad = rand(rng, p.data.shape, np.float64, scale=float(rng.uniform(0.01, 100)))
    total = optim.clip_grad_norm_(params, max_norm, norm_type)
    after = ref_total_norm([p.grad for p in params], norm_type)
    np.testing.assert_allclose(after, min(total, max_norm * total / (total + 1e-6)),
                               rtol=1e-10)


# --------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------

def test_noam_lr_is_the_papers_formula():
    for step in (1, 2, 100, 3999, 4000, 4001, 10**6):
        assert optim.noam_lr(step, 512, 4000) == pytest.approx(paper_rate(step, 512, 4000),
                                                              rel=1e-14)
    assert optim.noam_lr(7, 256, 100, factor=2.0) == pytest.approx(2 * paper_rate(7, 256, 100))
    rates = [optim.noam_lr(s, 512, 4000) for s in range(1, 8001, 50)]
    peak = max(range(1, 8001), key=lambda s: optim.noam_lr(s, 512, 4000))
    assert peak == 4000 and rates == sorted(rates[:81]) + rates[81:]
    assert optim.noam_lr(0, 512, 4000) == 0.0                     # min(inf, 0) = 0
    assert optim.noam_lr(9, 64, 0) == pytest.approx(64 ** -0.5 / 3)  # no warm-up


def test_warmup_cosine_lr_shape():
    f = optim.warmup_cosine_lr
    for k in range(0, 130):
        assert f(k, 10, 110, 0.1) == pytest.approx(ref_warmup_cosine(k, 10, 110, 0.1),
                                                   rel=1e-14, abs=1e-15)
    assert f(0, 10, 110) == 0.0 and f(5, 10, 110) == 0.5 and f(10, 10, 110) == 1.0
    assert f(60, 10, 110, 0.2) == pytest.approx(0.6)             # half way: (1 + min) / 2
    assert f(110, 10, 110, 0.2) == pytest.approx(0.2) and f(500, 10, 110, 0.2) == 0.2
    assert f(0, 0, 10) == 1.0 and f(10, 0, 10) == 0.0
    decay = [f(k, 10, 110) for k in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


@pytest.mark.parametrize("call, err, match", [
    (lambda: optim.noam_lr(-1, 512, 4000), ValueError, "step"),
    (lambda: optim.noam_lr(1.5, 512, 4000), TypeError, "step"),
    (lambda: optim.noam_lr(1, 0, 4000), ValueError, "d_model"),
    (lambda: optim.noam_lr(1, 512, -1), ValueError, "warmup_steps"),
    (lambda: optim.noam_lr(1, 512, 10, factor=-1), ValueError, "factor"),
    (lambda: optim.warmup_cosine_lr(1, 20, 10), ValueError, "warmup_steps"),
    (lambda: optim.warmup_cosine_lr(1, 0, 0), ValueError, "total_steps"),
    (lambda: optim.warmup_cosine_lr(1, 1, 10, min_lr_ratio=1.5), ValueError, "min_lr_ratio"),
    (lambda: optim.LambdaLR(object(), lambda s: 1.0), TypeError, "optimizer"),
    (lambda: optim.LambdaLR(optim.SGD([P(np.ones(1))]), 3.0), TypeError, "callable"),
    (lambda: optim.LambdaLR(optim.SGD([P(np.ones(1))]), [lambda s: 1, lambda s: 1]),
     ValueError, "expected 1 lr_lambdas"),
    (lambda: optim.LambdaLR(optim.SGD([P(np.ones(1))]), lambda s: -1.0), ValueError, ">= 0"),
    (lambda: optim.NoamLR(optim.SGD([P(np.ones(1))]), 512, 10, last_epoch=3), KeyError,
     "initial_lr"),
])
def test_schedule_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def _two_group_sgd(lrs=(0.1, 0.02)):
    return optim.SGD([{"params": [P(np.ones(2))], "lr": lrs[0]},
                      {"params": [P(np.ones(2))], "lr": lrs[1]}])


def test_lambda_lr_follows_pytorch_stepping():
    opt = _two_group_sgd()
    sched = optim.LambdaLR(opt, [lambda s: 0.5 ** s, lambda s: s + 1])
    # the constructor applies last_epoch = 0
    assert sched.last_epoch == 0 and sched.get_last_lr() == [0.1, 0.02]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.02]
    for k in range(1, 6):
        opt.step()
        sched.step()
        assert sched.last_epoch == k
        assert sched.get_last_lr() == pytest.approx([0.1 * 0.5 ** k, 0.02 * (k + 1)])
        assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()


def test_noam_lr_scheduler_gives_paper_rate_per_update():
    opt = optim.AdamW([P(np.ones(2))], lr=1.0)
    sched = optim.NoamLR(opt, d_model=512, warmup_steps=40)
    for k in range(1, 100):
        # the k-th optimizer step runs with the paper's rate for step_num = k
        assert opt.param_groups[0]["lr"] == pytest.approx(paper_rate(k, 512, 40), rel=1e-14)
        opt.step()
        sched.step()
    opt2 = _two_group_sgd((2.0, 0.5))
    sched2 = optim.NoamLR(opt2, 64, 10, factor=3.0)
    same = optim.LambdaLR(_two_group_sgd((2.0, 0.5)),
                          lambda s: 3.0 * paper_rate(s + 1, 64, 10))
    for _ in range(30):
        assert sched2.get_last_lr() == pytest.approx(same.get_last_lr(), rel=1e-14)
        sched2.step()
        same.step()


def test_warmup_cosine_scheduler_per_update():
    opt = _two_group_sgd()
    sched = optim.WarmupCosineLR(opt, warmup_steps=5, total_steps=20, min_lr_ratio=0.1)
    seen = []
    for k in range(1, 26):
        seen.append(opt.param_groups[0]["lr"])
        expect = [0.1 * ref_warmup_cosine(k, 5, 20, 0.1), 0.02 * ref_warmup_cosine(k, 5, 20, 0.1)]
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(expect, rel=1e-13)
        sched.step()
    assert seen[0] == pytest.approx(0.02) and seen[4] == pytest.approx(0.1)
    assert seen[19] == pytest.approx(0.01) and seen[24] == pytest.approx(0.01)


@pytest.mark.parametrize("make", [
    lambda opt: optim.NoamLR(opt, 32, 4, factor=2.0),
    lambda opt: optim.WarmupCosineLR(opt, 3, 12, 0.05),
    lambda opt: optim.LambdaLR(opt, lambda s: 1.0 / (1 + s)),
])
def test_scheduler_and_optimizer_resume(make):
    rng = np.random.default_rng(8)
    init = [rand(rng, (3,), np.float64) for _ in range(2)]
    grads = [[rand(rng, (3,), np.float64) for _ in range(2)] for _ in range(10)]

    def run(params, opt, sched, gs):
        for g in gs:
            for p, gi in zip(params, g):
                p.grad = gi.copy()
            opt.step()
            sched.step()

    def fresh():
        params = [P(a.copy()) for a in init]
        opt = optim.AdamW([{"params": params[:1]}, {"params": params[1:], "lr": 0.3}], lr=0.1)
        return params, opt, make(opt)

    params, opt, sched = fresh()
    run(params, opt, sched, grads)
    lrs = sched.get_last_lr()

    params2, opt2, sched2 = fresh()
    run(params2, opt2, sched2, grads[:4])
    opt_sd, sched_sd = copy.deepcopy(opt2.state_dict()), copy.deepcopy(sched2.state_dict())
    assert sched_sd["last_epoch"] == 4 and sched_sd["base_lrs"] == [0.1, 0.3]

    params3, opt3, sched3 = fresh()
    for p, q in zip(params3, params2):
        p.data[...] = q.data
    opt3.load_state_dict(opt_sd)
    sched3.load_state_dict(sched_sd)
    assert sched3.last_epoch == 4 and sched3.get_last_lr() == sched2.get_last_lr()
    assert [g["lr"] for g in opt3.param_groups] == sched2.get_last_lr()
    run(params3, opt3, sched3, grads[4:])
    assert sched3.get_last_lr() == lrs
    for p, q in zip(params3, params):
        np.testing.assert_array_equal(p.data, q.data)


def test_scheduler_state_dict_checks_and_pytorch_keys():
    opt = _two_group_sgd()
    sched = optim.NoamLR(opt, 64, 10)
    sd = sched.state_dict()
    assert set(sd) == {"last_epoch", "base_lrs", "_last_lr", "_step_count", "d_model",
                       "warmup_steps", "factor"}
    sched.step()
    torch_like = dict(sd, verbose=False, _get_lr_called_within_step=False, _is_initial=False)
    sched.load_state_dict(torch_like)
    assert sched.last_epoch == 0
    for bad, err in [(dict(sd, base_lrs=[0.1]), ValueError), (dict(sd, nope=1), ValueError),
                     ({k: v for k, v in sd.items() if k != "d_model"}, ValueError),
                     (dict(sd, last_epoch=1.5), TypeError), (dict(sd, warmup_steps=-3),
                                                             ValueError)]:
        with pytest.raises(err):
            sched.load_state_dict(bad)
        assert sched.last_epoch == 0 and sched.warmup_steps == 10


def test_lambda_lr_state_of_callable_objects_and_resume_with_last_epoch():
    class Decay:
        def __init__(self):
            self.rate = 0.5

        def __call__(self, s):
            return self.rate ** s

    opt = _two_group_sgd()
    fn = Decay()
    sched = optim.LambdaLR(opt, [fn, lambda s: 1.0])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"rate": 0.5}, None]
    fn.rate = 0.9
    sched.load_state_dict(sd)
    assert fn.rate == 0.5
    # last_epoch != -1 resumes from the groups' initial_lr (PyTorch: steps once more)
    opt.param_groups[0]["lr"] = 123.0
    again = optim.LambdaLR(opt, lambda s: 0.5 ** s, last_epoch=2)
    assert again.last_epoch == 3 and again.get_last_lr() == pytest.approx([0.1 / 8, 0.02 / 8])
