"""Learning-rate schedules (torch.optim.lr_scheduler), and the warm-up
schedules of "Attention Is All You Need" and warm-up + cosine."""
import math
from collections.abc import Mapping

from pytransformer.validation import int_arg as _int_arg, real_arg as _real_arg
from pytransformer.optim.optimizer import Optimizer, _nonneg

def noam_lr(step, d_model, warmup_steps, factor=1.0):
    """The learning rate of "Attention Is All You Need" (section 5.3) at
    `step`, counted from 1 as in the paper::

        factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)

    It rises linearly for `warmup_steps` steps, peaks at step ==
    warmup_steps, then decays as step**-0.5. At step 0 (before any update)
    the min is min(inf, 0) = 0, so this returns 0.0. warmup_steps=0 means no
    warm-up (the min is then step**-0.5)."""
    step = _int_arg("step", step, 0)
    d_model = _int_arg("d_model", d_model, 1)
    warmup_steps = _int_arg("warmup_steps", warmup_steps, 0)
    factor = _nonneg("factor", factor)
    if step == 0:
        return 0.0
    rate = step ** -0.5
    if warmup_steps > 0:
        rate = min(rate, step * warmup_steps ** -1.5)
    return factor * d_model ** -0.5 * rate


def warmup_cosine_lr(step, warmup_steps, total_steps, min_lr_ratio=0.0):
    """A learning-rate multiplier at `step`, counted from 1 (the number of
    the update it is used for): linear warm-up ``step / warmup_steps`` up to
    1.0 at step == warmup_steps, then a half cosine from 1.0 down to
    `min_lr_ratio`, reached at step == total_steps and kept after it::

        r = (step - warmup_steps) / (total_steps - warmup_steps)
        min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + cos(pi * r))

    Step 0 (before any update) gives 0.0 when warmup_steps > 0."""
    step = _int_arg("step", step, 0)
    warmup_steps = _int_arg("warmup_steps", warmup_steps, 0)
    total_steps = _int_arg("total_steps", total_steps, 1)
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps: must be <= total_steps ({total_steps}), got "
                         f"{warmup_steps}")
    min_lr_ratio = _real_arg("min_lr_ratio", min_lr_ratio)
    if not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"min_lr_ratio: must be in [0, 1], got {min_lr_ratio}")
    if step <= warmup_steps:
        return step / warmup_steps if warmup_steps > 0 else 1.0
    if step >= total_steps:
        return min_lr_ratio
    r = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * r))


class LRScheduler:
    """Base class of the schedules (torch.optim.lr_scheduler.LRScheduler),
    with PyTorch's stepping convention: the constructor records each group's
    ``initial_lr`` (kept in the group; its lr when the scheduler was made)
    as ``base_lrs`` and applies the rate for ``last_epoch = 0``; each
    ``step()``, called after ``optimizer.step()``, advances ``last_epoch`` by
    one and sets every group's ``lr`` to ``get_lr()``. So the k-th optimizer
    step (from 1) runs with the rate for last_epoch = k - 1.

    `last_epoch` other than -1 resumes a schedule; every group must then have
    ``initial_lr`` (as after loading an optimizer state dict saved with a
    scheduler). Subclasses implement ``get_lr()``: the rates for the current
    ``last_epoch``, one per group.

    To resume training, load the optimizer's state dict (which restores each
    group's lr and initial_lr) and this scheduler's (which restores
    last_epoch); as in PyTorch, loading the scheduler does not itself change
    the groups' lr.
    """

    # keys of PyTorch's scheduler state dicts that carry nothing here
    _torch_keys = ("verbose", "_get_lr_called_within_step", "_is_initial")

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a pytransformer.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        last_epoch = _int_arg("last_epoch", last_epoch, -1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in "
                                   f"param_groups[{i}] when resuming an optimizer")
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self):
        """The rate of every group for the current last_epoch."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr()")

    def step(self):
        """Advance last_epoch by one and set each group's lr for it."""
        self._step_count += 1
        self.last_epoch += 1
        lrs = [float(lr) for lr in self.get_lr()]
        for i, (group, lr) in enumerate(zip(self.optimizer.param_groups, lrs)):
            if not lr >= 0:
                raise ValueError(f"{type(self).__name__}: rate of param_groups[{i}] at "
                                 f"last_epoch={self.last_epoch} is {lr}, must be >= 0")
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The rates the last step() (or the constructor) set, one per group."""
        return list(self._last_lr)

    def _hyper(self):
        """Subclasses' hyperparameters kept in the state dict: name -> value."""
        return {}

    def state_dict(self):
        """``{"last_epoch", "base_lrs", "_last_lr", "_step_count"}`` plus the
        schedule's hyperparameters (PyTorch's key names); plain values."""
        sd = {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
              "_last_lr": list(self._last_lr), "_step_count": self._step_count}
        sd.update(self._hyper())
        return sd

    def load_state_dict(self, state_dict):
        """Restore a state dict made by state_dict() (or by the PyTorch
        scheduler of the same kind): checks keys, types and the number of
        groups before changing anything."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        sd = {k: v for k, v in state_dict.items() if k not in self._torch_keys}
        expected = {"last_epoch", "base_lrs", "_last_lr", "_step_count"} | set(self._hyper())
        missing, extra = expected - set(sd), set(sd) - expected
        if missing:
            raise ValueError(f"state_dict: missing key(s) {sorted(missing)}")
        if extra:
            raise ValueError(f"state_dict: unexpected key(s) {sorted(map(str, extra))}")
        n = len(self.optimizer.param_groups)
        lists = {}
        for key in ("base_lrs", "_last_lr"):
            v = sd[key]
            if not isinstance(v, (list, tuple)) or len(v) != n:
                raise ValueError(f"state_dict['{key}']: expected a list of {n} rates (one per "
                                 f"parameter group), got {v!r}")
            lists[key] = [_real_arg(f"state_dict['{key}'][{i}]", x) for i, x in enumerate(v)]
        last_epoch = _int_arg("state_dict['last_epoch']", sd["last_epoch"], -1)
        step_count = _int_arg("state_dict['_step_count']", sd["_step_count"], 0)
        hyper = self._check_hyper({k: sd[k] for k in self._hyper()})
        self.last_epoch, self._step_count = last_epoch, step_count
        self.base_lrs, self._last_lr = lists["base_lrs"], lists["_last_lr"]
        for k, v in hyper.items():
            setattr(self, k, v)

    def _check_hyper(self, hyper):
        """Checked hyperparameters of a loaded state dict."""
        return hyper


class LambdaLR(LRScheduler):
    """Each group's rate is its initial lr times ``lr_lambda(last_epoch)``
    (torch.optim.lr_scheduler.LambdaLR): `lr_lambda` is one function for all
    groups or a list with one per group. The state dict stores, per lambda,
    None for a plain function or a copy of a callable object's ``__dict__``
    (restored into it by load_state_dict), as PyTorch does."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a pytransformer.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"lr_lambda: expected {n} lr_lambdas (one per parameter "
                                 f"group), got {len(lr_lambda)}")
            lambdas = list(lr_lambda)
        else:
            lambdas = [lr_lambda] * n
        for i, fn in enumerate(lambdas):
            if not callable(fn):
                raise TypeError(f"lr_lambda: expected a callable (or a list of them), got "
                                f"{type(fn).__name__} for group {i}")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        """initial lr * lr_lambda(last_epoch), per group."""
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        """The base state dict plus ``"lr_lambdas"`` (see the class docstring)."""
        sd = super().state_dict()
        sd["lr_lambdas"] = [None if not hasattr(fn, "__dict__") or _is_plain_function(fn)
                            else dict(fn.__dict__) for fn in self.lr_lambdas]
        return sd

    def load_state_dict(self, state_dict):
        """Restore last_epoch and the rates, and each callable object's saved
        ``__dict__`` (checked first: one entry per lambda)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        sd = dict(state_dict)
        saved = sd.pop("lr_lambdas", None)
        if saved is not None:
            if not isinstance(saved, (list, tuple)) or len(saved) != len(self.lr_lambdas):
                raise ValueError(f"state_dict['lr_lambdas']: expected a list of "
                                 f"{len(self.lr_lambdas)} entries, got {saved!r}")
            for i, d in enumerate(saved):
                if d is not None and not isinstance(d, Mapping):
                    raise TypeError(f"state_dict['lr_lambdas'][{i}]: expected a dict or "
                                    f"None, got {type(d).__name__}")
        super().load_state_dict(sd)
        for fn, d in zip(self.lr_lambdas, saved or ()):
            if d is not None:
                fn.__dict__.update(d)


def _is_plain_function(fn):
    import types
    return isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))


class NoamLR(LRScheduler):
    """The warm-up schedule of "Attention Is All You Need": each group's rate
    is its initial lr times ``noam_lr(last_epoch + 1, d_model, warmup_steps,
    factor)``, so the k-th optimizer step (from 1) uses the paper's rate for
    step_num = k. Create the optimizer with lr=1.0 to get exactly the
    paper's rates (lr=1.0, factor=1.0, d_model=512, warmup_steps=4000 is the
    paper's base model); another lr scales them. Identical to
    ``LambdaLR(opt, lambda s: noam_lr(s + 1, d_model, warmup_steps, factor))``.
    """

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0, last_epoch=-1):
        self.d_model = _int_arg("d_model", d_model, 1)
        self.warmup_steps = _int_arg("warmup_steps", warmup_steps, 0)
        self.factor = _nonneg("factor", factor)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        """initial lr * noam_lr(last_epoch + 1, ...), per group."""
        m = noam_lr(self.last_epoch + 1, self.d_model, self.warmup_steps, self.factor)
        return [base * m for base in self.base_lrs]

    def _hyper(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps,
                "factor": self.factor}

    def _check_hyper(self, h):
        return {"d_model": _int_arg("state_dict['d_model']", h["d_model"], 1),
                "warmup_steps": _int_arg("state_dict['warmup_steps']", h["warmup_steps"], 0),
                "factor": _nonneg("state_dict['factor']", h["factor"])}


class WarmupCosineLR(LRScheduler):
    """Linear warm-up then cosine decay: each group's rate is its initial lr
    times ``warmup_cosine_lr(last_epoch + 1, warmup_steps, total_steps,
    min_lr_ratio)``. The k-th optimizer step (from 1) uses k / warmup_steps
    of the rate while k <= warmup_steps (so no step runs at rate 0), full
    rate at k == warmup_steps, then a cosine down to min_lr_ratio times the
    rate at k == total_steps, kept after it.
    """

    def __init__(self, optimizer, warmup_steps, total_steps, min_lr_ratio=0.0, last_epoch=-1):
        warmup_cosine_lr(0, warmup_steps, total_steps, min_lr_ratio)   # checks the arguments
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        """initial lr * warmup_cosine_lr(last_epoch + 1, ...), per group."""
        m = warmup_cosine_lr(self.last_epoch + 1, self.warmup_steps, self.total_steps,
                             self.min_lr_ratio)
        return [base * m for base in self.base_lrs]

    def _hyper(self):
        return {"warmup_steps": self.warmup_steps, "total_steps": self.total_steps,
                "min_lr_ratio": self.min_lr_ratio}

    def _check_hyper(self, h):
        warmup_cosine_lr(0, h["warmup_steps"], h["total_steps"], h["min_lr_ratio"])
        return {"warmup_steps": int(h["warmup_steps"]), "total_steps": int(h["total_steps"]),
                "min_lr_ratio": float(h["min_lr_ratio"])}
