"""Parity of pytransformer.optim with torch.optim: trajectories, state,
clipping and schedules recorded with torch 2.13.0 (tests/fixtures/optim/,
made by tests/fixtures/make_nn_fixtures.py). Read with NumPy only.

Tolerances: parameters rtol 1e-6 / atol 1e-7 after six float32 steps (the
fused C AdamW step and PyTorch's for-loop round differently); learning
rates exactly (rtol 1e-15).
"""
import json
import math
import pathlib

import numpy as np
import pytest

from pytransformer import optim
from pytransformer.autograd import Parameter

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "optim"
TOL = dict(rtol=1e-6, atol=1e-7)


def _load(name):
    z = np.load(FIXTURES / f"{name}.npz", allow_pickle=False)
    return json.loads(str(z["config"])), z


def _kwargs(cfg):
    return {k: tuple(v) if isinstance(v, list) else v
            for k, v in cfg["init"].items() if k != "foreach"}


@pytest.mark.parametrize("name", ["sgd_plain", "sgd_momentum", "sgd_nesterov", "adamw",
                                  "adamw_defaults"])
def test_optimizer_trajectory_matches_pytorch(name):
    cfg, z = _load(name)
    params = [Parameter(z["init/p0"].copy()), Parameter(z["init/p1"].copy())]
    cls = optim.AdamW if cfg["optimizer"] == "AdamW" else optim.SGD
    opt = cls(params, **_kwargs(cfg))
    for k in range(cfg["steps"]):
        for i, p in enumerate(params):
            p.grad = z[f"grads/p{i}"][k].copy()
        opt.step()
        for i, p in enumerate(params):
            np.testing.assert_allclose(p.data, z[f"after/p{i}"][k], err_msg=f"step {k} p{i}",
                                       **TOL)
    for i, p in enumerate(params):
        for key in z.files:
            if key.startswith(f"state/p{i}/"):
                name_ = key.rsplit("/", 1)[1]
                np.testing.assert_allclose(np.asarray(opt.state[p][name_], np.float64),
                                           z[key].astype(np.float64), rtol=1e-6, atol=1e-7,
                                           err_msg=key)


@pytest.mark.parametrize("name", ["clip_l2", "clip_inf", "clip_l2_noclip"])
def test_clip_grad_norm_matches_pytorch(name):
    cfg, z = _load(name)
    params = [Parameter(np.zeros_like(z["grad_in/p0"])), Parameter(np.zeros_like(z["grad_in/p1"]))]
    for i, p in enumerate(params):
        p.grad = z[f"grad_in/p{i}"].copy()
    call = cfg["call"]
    total = optim.clip_grad_norm_(params, call["max_norm"], norm_type=float(call["norm_type"]))
    np.testing.assert_allclose(total, z["total_norm"], rtol=1e-6)
    for i, p in enumerate(params):
        np.testing.assert_allclose(p.grad, z[f"grad_out/p{i}"], rtol=1e-6, atol=1e-8)


def _lambda_lr(lam, n):
    p = Parameter(np.zeros(1, np.float32))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.LambdaLR(opt, lam)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        p.grad = np.zeros(1, np.float32)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return np.array(lrs)


def test_lambda_lr_reproduces_pytorch_schedules():
    cfg, z = _load("sched_noam")
    d, w = cfg["d_model"], cfg["warmup"]

    def noam(step):
        s = max(step, 1)
        return d ** -0.5 * min(s ** -0.5, s * w ** -1.5)
    np.testing.assert_allclose(_lambda_lr(noam, cfg["steps"]), z["lr"], rtol=1e-15)
    cfg, z = _load("sched_warmup_cosine")
    w, t = cfg["warmup"], cfg["total"]

    def cosine(step):
        if step < w:
            return step / w
        return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - w) / (t - w))))
    np.testing.assert_allclose(_lambda_lr(cosine, cfg["steps"]), z["lr"], rtol=1e-15, atol=1e-16)


def _scheduled_lrs(make_scheduler, n):
    """The lr of each of the first n optimizer steps under a scheduler."""
    p = Parameter(np.zeros(1, np.float32))
    opt = optim.SGD([p], lr=1.0)
    sched = make_scheduler(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(n - 1):
        p.grad = np.zeros(1, np.float32)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_noam_and_cosine_classes_follow_the_documented_step_convention():
    """NoamLR / WarmupCosineLR give optimizer step n (1-based) the paper's
    rate for step n: PyTorch's LambdaLR recording, shifted by one step (the
    fixtures' lambda clamps step 0 to 1 / gives rate 0 at step 0)."""
    cfg, z = _load("sched_noam")
    lrs = _scheduled_lrs(lambda opt: optim.NoamLR(opt, cfg["d_model"], cfg["warmup"]),
                         cfg["steps"])
    np.testing.assert_allclose(lrs, z["lr"][1:], rtol=1e-12)
    cfg, z = _load("sched_warmup_cosine")
    lrs = _scheduled_lrs(lambda opt: optim.WarmupCosineLR(opt, cfg["warmup"], cfg["total"]),
                         cfg["steps"])
    np.testing.assert_allclose(lrs, z["lr"][1:], rtol=1e-12, atol=1e-15)
