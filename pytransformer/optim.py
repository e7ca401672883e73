"""Optimizers, gradient clipping and learning-rate schedules, shaped like torch.optim.

What is here and how it maps to PyTorch 2.x:

* :class:`Optimizer` -- the base class: ``param_groups`` (a list of dicts,
  each with ``"params"`` and its hyperparameters), ``state`` (one dict per
  parameter, created on the parameter's first update), ``zero_grad``,
  ``step(closure=None)``, ``add_param_group``, ``state_dict`` and
  ``load_state_dict`` in PyTorch's layout::

      {"state": {0: {"step": 3, "exp_avg": ndarray, ...}, ...},
       "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), ..., "params": [0, 1]}, ...]}

  Parameters are numbered 0, 1, ... in the order of the groups and of each
  group's list, as in PyTorch, so a state dict made by
  ``torch.optim.AdamW(...).state_dict()`` (with its tensors turned into
  NumPy arrays) loads here and the reverse.
* :class:`SGD` (momentum, dampening, Nesterov, weight decay, maximize) and
  :class:`AdamW` (decoupled weight decay) with PyTorch's update formulas;
  AdamW calls the fused C kernel :func:`pytransformer.ops.adamw_step`, which
  updates the parameter and both moments in one pass.
* :func:`clip_grad_norm_` (torch.nn.utils.clip_grad_norm_).
* :class:`LRScheduler`, :class:`LambdaLR` (torch.optim.lr_scheduler) and two
  schedules PyTorch has no class for: :class:`NoamLR` (the warm-up schedule of
  "Attention Is All You Need") and :class:`WarmupCosineLR`, plus the plain
  multiplier functions :func:`noam_lr` and :func:`warmup_cosine_lr`.

A *parameter* is any object with three attributes: ``.data``, a float32 or
float64 ``numpy.ndarray`` that the optimizer updates **in place** (it never
rebinds ``.data``: other code, such as a module's tied weights or a
checkpoint writer, may hold views of it); ``.grad``, an array of the same
shape and dtype or None; and ``.requires_grad``. As in PyTorch, a parameter
whose ``.grad`` is None is skipped by ``step()`` (its state is not created or
advanced), and ``requires_grad`` is not consulted by the update itself.
Parameters are told apart by identity (``is``), never by ``==`` or hashing,
so any parameter class works as a key of ``Optimizer.state``.

Differences from PyTorch, all deliberate:

* ``step()`` checks every group's hyperparameters and every gradient (dtype
  and shape equal to the parameter's) before it updates anything, so a bad
  gradient raises without leaving half the parameters updated. PyTorch checks
  hyperparameters only in the constructor; here ``add_param_group`` and
  ``load_state_dict`` check each group too.
* A parameter listed twice in one group is an error (PyTorch warns).
* ``state_dict()`` returns copies of the state arrays (PyTorch returns the
  live tensors), so a saved state dict does not change as training goes on;
  ``load_state_dict`` copies too, and checks the number of groups, the number
  of parameters in each group, each state's keys, and each state array's
  shape and dtype against its parameter's (PyTorch casts silently).
* AdamW's ``state["step"]`` is a Python int (PyTorch keeps a 0-d float
  tensor; a float or 0-d array holding a whole number loads fine).
* ``clip_grad_norm_`` accumulates the norm in float64 and returns a Python
  float (PyTorch returns a 0-d tensor of the gradients' dtype).
"""
import copy
import math
import numbers
from collections.abc import Mapping, MutableMapping

import numpy as np

from pytransformer.ops import adamw_step as _adamw_step
from pytransformer.ops._checks import int_arg as _int_arg, real_arg as _real_arg

__all__ = ["Optimizer", "SGD", "AdamW", "clip_grad_norm_", "LRScheduler", "LambdaLR",
           "NoamLR", "WarmupCosineLR", "noam_lr", "warmup_cosine_lr"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------
# parameters and per-parameter state
# --------------------------------------------------------------------------

def _is_param_like(p):
    """True for an object with the three attributes of a parameter (a NumPy
    array has .data, but neither .grad nor .requires_grad)."""
    return (not isinstance(p, np.ndarray) and hasattr(p, "data") and hasattr(p, "grad")
            and hasattr(p, "requires_grad"))


def _check_param(p, where):
    """TypeError naming `where` unless p is a parameter whose .data is a
    float32/float64 ndarray."""
    if isinstance(p, np.ndarray):
        raise TypeError(f"{where}: expected a Parameter (an object with .data, .grad and "
                        f".requires_grad), got a numpy.ndarray; wrap it in a Parameter")
    if not _is_param_like(p):
        raise TypeError(f"{where}: expected a Parameter (an object with .data, .grad and "
                        f".requires_grad), got {type(p).__name__}")
    data = p.data
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{where}.data: expected a numpy.ndarray, got {type(data).__name__}")
    if data.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{where}.data: expected dtype float32 or float64, got {data.dtype} "
                        f"(only floating-point parameters can be optimized)")


def _checked_grad(p, where):
    """p.grad as a C-contiguous array of p.data's dtype and shape, or None
    when p has no gradient. The gradient itself is never modified."""
    g = p.grad
    if g is None:
        return None
    data = p.data
    if not isinstance(g, np.ndarray):
        raise TypeError(f"{where}.grad: expected a numpy.ndarray or None, got {type(g).__name__}")
    if g.dtype != data.dtype:
        raise TypeError(f"{where}.grad: expected dtype {data.dtype} (the parameter's), "
                        f"got {g.dtype}")
    if g.shape != data.shape:
        raise ValueError(f"{where}.grad: expected shape {data.shape} (the parameter's), "
                         f"got {g.shape}")
    return g if g.flags.c_contiguous else np.array(g, order="C")


class _ParamState(MutableMapping):
    """Optimizer.state: a dict from parameter to its state dict, keyed by
    identity (so parameters need not be hashable) and, like PyTorch's
    defaultdict(dict), creating an empty state on first access by []."""

    def __init__(self):
        self._d = {}                      # id(param) -> (param, state dict)

    def __getitem__(self, p):
        entry = self._d.get(id(p))
        if entry is None:
            entry = self._d[id(p)] = (p, {})
        return entry[1]

    def __setitem__(self, p, value):
        if not isinstance(value, dict):
            raise TypeError(f"state: a parameter's state must be a dict, got "
                            f"{type(value).__name__}")
        self._d[id(p)] = (p, value)

    def __delitem__(self, p):
        try:
            del self._d[id(p)]
        except KeyError:
            raise KeyError("state: this parameter has no state") from None

    def __contains__(self, p):
        return id(p) in self._d

    def get(self, p, default=None):
        """The parameter's state dict, or `default` (no entry is created)."""
        entry = self._d.get(id(p))
        return default if entry is None else entry[1]

    def __iter__(self):
        return iter([p for p, _ in self._d.values()])

    def __len__(self):
        return len(self._d)

    def clear(self):
        """Forget every parameter's state."""
        self._d.clear()

    def __repr__(self):
        return f"<optimizer state for {len(self._d)} parameters>"


# --------------------------------------------------------------------------
# hyperparameter checks
# --------------------------------------------------------------------------

def _nonneg(name, v):
    v = _real_arg(name, v)
    if not v >= 0:
        raise ValueError(f"{name}: must be >= 0, got {v}")
    return v


def _betas(name, v):
    if isinstance(v, (str, bytes)) or not isinstance(v, (tuple, list)) or len(v) != 2:
        raise TypeError(f"{name}: expected a pair (beta1, beta2), got {v!r}")
    b = tuple(_real_arg(f"{name}[{i}]", x) for i, x in enumerate(v))
    for i, x in enumerate(b):
        if not 0 <= x < 1:
            raise ValueError(f"{name}[{i}]: must be in [0, 1), got {x}")
    return b


def _flag(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def _real(name, v):
    v = _real_arg(name, v)
    if math.isnan(v):
        raise ValueError(f"{name}: must not be NaN")
    return v


# How each hyperparameter an optimizer of this module knows is checked and
# normalised (betas to a tuple of floats: a JSON round trip makes it a list).
_HYPER_CHECKS = {
    "lr": _nonneg,
    "eps": _nonneg,
    "weight_decay": _nonneg,
    "momentum": _nonneg,
    "dampening": _real,
    "betas": _betas,
    "nesterov": _flag,
    "maximize": _flag,
    "initial_lr": _nonneg,
}

# Options of torch.optim groups that this module does not implement: a state
# dict from PyTorch may carry them, and loads only with these values.
_TORCH_OPTIONS = {
    "foreach": None,                      # any value: an implementation choice
    "capturable": (False,),
    "differentiable": (False,),
    "fused": (None, False),
    "amsgrad": (False,),
}


# --------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------

class Optimizer:
    """Base class of the optimizers (torch.optim.Optimizer).

    `params` is an iterable of parameters, or of dicts each holding
    ``"params"`` (an iterable of parameters) and per-group overrides of
    `defaults`; `defaults` maps each hyperparameter name to its default.
    Subclasses set ``_state_spec`` (the keys of a parameter's state and their
    kind, checked by load_state_dict) and implement ``_update(group, items)``, items being
    (parameter, C-contiguous gradient) pairs of the parameters that have one.
    """

    # name -> "step" (a non-negative int), "array" (an array of the
    # parameter's shape and dtype) or "array?" (the same, or None = absent)
    _state_spec = {}
    # hyperparameters that load_state_dict takes from `defaults` when a saved
    # group lacks them (state dicts of older PyTorch versions)
    _optional_on_load = ("maximize",)
    # further torch-only group options: name -> accepted values
    _torch_options = {}
    # True when .data must be C-contiguous and writable (checked by step())
    _in_place_kernel = False

    def __init__(self, params, defaults):
        if not isinstance(defaults, Mapping):
            raise TypeError(f"defaults: expected a dict, got {type(defaults).__name__}")
        self.defaults = dict(defaults)
        if isinstance(params, np.ndarray) or _is_param_like(params):
            raise TypeError("params: expected an iterable of Parameters or of dicts (param "
                            f"groups), got a single {type(params).__name__}; pass [param]")
        if isinstance(params, (set, frozenset)) or isinstance(params, (str, bytes, Mapping)):
            raise TypeError("params: expected an ordered iterable (list, tuple, generator) of "
                            f"Parameters or dicts, got {type(params).__name__}")
        try:
            param_groups = list(params)
        except TypeError:
            raise TypeError("params: expected an iterable of Parameters or of dicts, got "
                            f"{type(params).__name__}") from None
        if len(param_groups) == 0:
            raise ValueError("params: optimizer got an empty parameter list")
        self.state = _ParamState()
        self.param_groups = []
        if not isinstance(param_groups[0], Mapping):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    # ---------------------------------------------------------------- groups

    def add_param_group(self, param_group):
        """Append a group: a dict with ``"params"`` (a parameter or an
        iterable of parameters) and optional hyperparameter overrides; the
        rest is filled from the optimizer's defaults. The group is copied,
        checked (hyperparameter ranges, parameter types, no parameter already
        in this or another group) and only then added."""
        where = f"param_groups[{len(self.param_groups)}]"
        if not isinstance(param_group, Mapping):
            raise TypeError(f"{where}: expected a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{where}: missing the 'params' key")
        params = param_group["params"]
        if _is_param_like(params):
            params = [params]
        elif isinstance(params, np.ndarray):
            raise TypeError(f"{where}['params']: expected Parameters, got a numpy.ndarray; "
                            f"wrap it in a Parameter")
        elif isinstance(params, (set, frozenset, str, bytes, Mapping)):
            raise TypeError(f"{where}['params']: expected an ordered iterable of Parameters, "
                            f"got {type(params).__name__}")
        else:
            try:
                params = list(params)
            except TypeError:
                raise TypeError(f"{where}['params']: expected an iterable of Parameters, got "
                                f"{type(params).__name__}") from None
        if len(params) == 0:
            raise ValueError(f"{where}['params']: empty parameter list")
        seen = set()
        for j, p in enumerate(params):
            _check_param(p, f"{where}['params'][{j}]")
            if id(p) in seen:
                raise ValueError(f"{where}['params'][{j}]: the same parameter appears twice "
                                 f"in this group")
            seen.add(id(p))
        for gi, g in enumerate(self.param_groups):
            if any(id(q) in seen for q in g["params"]):
                raise ValueError(f"{where}: some parameters appear in more than one parameter "
                                 f"group (also in param_groups[{gi}])")
        group = dict(param_group)
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self._check_group(group, where)
        self.param_groups.append(group)

    def _check_group(self, group, where):
        """Check and normalise (in place) the group's hyperparameters."""
        for name, check in _HYPER_CHECKS.items():
            if name in group:
                group[name] = check(f"{where}['{name}']", group[name])
        options = dict(_TORCH_OPTIONS, **self._torch_options)
        for name, allowed in options.items():
            if name in group and allowed is not None and not any(
                    group[name] is a or (type(group[name]) is type(a) and group[name] == a)
                    for a in allowed):
                raise ValueError(f"{where}['{name}']: {type(self).__name__} supports only "
                                 f"{name} in {allowed}, got {group[name]!r}")

    # ------------------------------------------------------------------ step

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to None (set_to_none=True, the
        default, as in PyTorch 2.x) or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient. `closure`, when
        given, is called first (it should recompute the loss and gradients)
        and its result is returned; otherwise returns None. All groups and
        gradients are checked before any parameter changes."""
        loss = None
        if closure is not None:
            loss = closure()
        work = []
        for gi, group in enumerate(self.param_groups):
            where = f"param_groups[{gi}]"
            self._check_group(group, where)
            items = []
            for j, p in enumerate(group["params"]):
                name = f"{where}['params'][{j}]"
                g = _checked_grad(p, name)
                if g is None:
                    continue
                if self._in_place_kernel and not (p.data.flags.c_contiguous
                                                  and p.data.flags.writeable):
                    raise ValueError(f"{name}.data: {type(self).__name__} updates it in "
                                     f"place with a fused kernel, so it must be "
                                     f"C-contiguous and writable")
                items.append((p, g))
            work.append(items)
        for group, items in zip(self.param_groups, work):
            if items:
                self._update(group, items)
        return loss

    def _update(self, group, items):
        """Update the (param, contiguous grad) pairs of one group."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _update()")

    # ----------------------------------------------------------- state dicts

    def state_dict(self):
        """The optimizer's state in PyTorch's layout: ``{"state": {index:
        {name: array or number}}, "param_groups": [{hyperparameters...,
        "params": [index, ...]}]}``, parameters numbered in group order.
        Arrays are copies; only parameters that have state appear."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {}
        for p in self.state:
            st = self.state.get(p)
            if id(p) in index and st:
                state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                       for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a dict made by state_dict() (here or by PyTorch, tensors as
        NumPy arrays; lists are accepted where tuples were, as after a JSON
        round trip, and state keys may be decimal strings). Checks that the
        number of groups and each group's number of parameters match this
        optimizer, and each parameter's state: its keys, an int step, and
        arrays of the parameter's shape and dtype. The hyperparameters of
        each saved group replace the current ones; arrays are copied, so the
        optimizer never aliases `state_dict`. Nothing changes unless every
        check passes."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        missing = {"state", "param_groups"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict: missing key(s) {sorted(missing)}")
        extra = set(state_dict) - {"state", "param_groups"}
        if extra:
            raise ValueError(f"state_dict: unexpected key(s) {sorted(map(str, extra))}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)):
            raise TypeError(f"state_dict['param_groups']: expected a list, got "
                            f"{type(saved_groups).__name__}")
        if not isinstance(saved_state, Mapping):
            raise TypeError(f"state_dict['state']: expected a dict, got "
                            f"{type(saved_state).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict: has {len(saved_groups)} parameter groups, the "
                             f"optimizer has {len(self.param_groups)}")
        id_map = {}                       # saved index -> parameter
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            where = f"state_dict['param_groups'][{gi}]"
            if not isinstance(saved, Mapping):
                raise TypeError(f"{where}: expected a dict, got {type(saved).__name__}")
            if "params" not in saved:
                raise ValueError(f"{where}: missing the 'params' key")
            ids = saved["params"]
            if not isinstance(ids, (list, tuple)):
                raise TypeError(f"{where}['params']: expected a list of ints, got "
                                f"{type(ids).__name__}")
            if len(ids) != len(group["params"]):
                raise ValueError(f"{where}: has {len(ids)} parameters, the optimizer's group "
                                 f"{gi} has {len(group['params'])}")
            for j, (i, p) in enumerate(zip(ids, group["params"])):
                i = _int_arg(f"{where}['params'][{j}]", i, 0)
                if i in id_map:
                    raise ValueError(f"{where}['params'][{j}]: index {i} appears twice")
                id_map[i] = p
            new = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            for name in self.defaults:
                if name not in new:
                    if name not in self._optional_on_load:
                        raise ValueError(f"{where}: missing hyperparameter '{name}'")
                    new[name] = self.defaults[name]
            new["params"] = group["params"]
            self._check_group(new, where)
            new_groups.append(new)
        new_state = {}                    # id(param) -> (param, state)
        for key, st in saved_state.items():
            i = _state_index(key)
            if i not in id_map:
                raise ValueError(f"state_dict['state']: key {key!r} is not the index of a "
                                 f"parameter in state_dict['param_groups']")
            p = id_map[i]
            new_state[id(p)] = (p, self._load_param_state(st, p.data,
                                                          f"state_dict['state'][{key!r}]"))
        self.param_groups[:] = new_groups
        self.state.clear()
        for p, st in new_state.values():
            if st:
                self.state[p] = st

    def _load_param_state(self, st, data, where):
        """A checked copy of one parameter's saved state."""
        if not isinstance(st, Mapping):
            raise TypeError(f"{where}: expected a dict, got {type(st).__name__}")
        spec = self._state_spec
        out = {}
        unknown = [k for k in st if k not in spec]
        if unknown:
            raise ValueError(f"{where}: unexpected state key(s) {unknown} for "
                             f"{type(self).__name__} (expected {sorted(spec)})")
        for name, kind in spec.items():
            if name not in st or (kind == "array?" and st[name] is None):
                if kind == "array?" or not st:
                    continue
                raise ValueError(f"{where}: missing state key '{name}'")
            v = st[name]
            if kind == "step":
                out[name] = _step_value(f"{where}['{name}']", v)
                continue
            if not isinstance(v, np.ndarray):
                raise TypeError(f"{where}['{name}']: expected a numpy.ndarray, got "
                                f"{type(v).__name__}")
            if v.shape != data.shape:
                raise ValueError(f"{where}['{name}']: expected shape {data.shape} (the "
                                 f"parameter's), got {v.shape}")
            if v.dtype != data.dtype:
                raise TypeError(f"{where}['{name}']: expected dtype {data.dtype} (the "
                                f"parameter's), got {v.dtype}")
            out[name] = np.array(v, order="C", copy=True)
        return out

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        lines.append(")")
        return "\n".join(lines)


def _state_index(key):
    """A state-dict key as an int index (an int, or its decimal string as a
    JSON round trip leaves it)."""
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    return _int_arg(f"state_dict['state'] key {key!r}", key, 0)


def _step_value(name, v):
    """A step count as a non-negative int: an int, or a float or 0-d array
    holding a whole number (PyTorch keeps step as a 0-d float tensor)."""
    if isinstance(v, np.ndarray):
        if v.ndim != 0:
            raise ValueError(f"{name}: expected a scalar step count, got shape {v.shape}")
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected an int step count, got {type(v).__name__}")
    if not (v >= 0 and float(v) == math.floor(v) and math.isfinite(v)):
        raise ValueError(f"{name}: expected a whole number >= 0, got {v}")
    return int(v)


# --------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------

class SGD(Optimizer):
    """Stochastic gradient descent with momentum (torch.optim.SGD). For each
    parameter with a gradient g, in PyTorch's order::

        g = -g                          if maximize
        g = g + weight_decay * p        if weight_decay != 0
        if momentum != 0:
            buf = g (a copy)            on the first step
            buf = momentum * buf + (1 - dampening) * g      afterwards
            g = g + momentum * buf      if nesterov, else g = buf
        p -= lr * g

    State: ``"momentum_buffer"`` (only when momentum != 0, as in PyTorch >=
    2.2). Nesterov needs momentum > 0 and dampening == 0. Arithmetic is in the
    parameter's dtype. `maximize` negates the gradient *before* weight decay
    is added, as torch's code does (the pseudo-code in torch's documentation
    adds the decay first and flips the sign of the final update instead,
    which differs when weight_decay != 0).
    """

    _state_spec = {"momentum_buffer": "array?"}

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=_nonneg("lr", lr), momentum=_nonneg("momentum", momentum),
                        dampening=_real("dampening", dampening),
                        weight_decay=_nonneg("weight_decay", weight_decay),
                        nesterov=_flag("nesterov", nesterov),
                        maximize=_flag("maximize", maximize))
        if nesterov and (defaults["momentum"] <= 0 or defaults["dampening"] != 0):
            raise ValueError("nesterov: Nesterov momentum requires a momentum > 0 and zero "
                             f"dampening, got momentum={momentum}, dampening={dampening}")
        super().__init__(params, defaults)

    def _check_group(self, group, where):
        super()._check_group(group, where)
        if group.get("nesterov") and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{where}: Nesterov momentum requires a momentum > 0 and zero "
                             f"dampening, got momentum={group['momentum']}, "
                             f"dampening={group['dampening']}")

    def _update(self, group, items):
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        for p, g in items:
            data = p.data                 # updated in place, never rebound
            if group["maximize"]:
                g = -g
            if weight_decay != 0:
                g = g + weight_decay * data
            if momentum != 0:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = np.array(g, order="C", copy=True)
                else:
                    buf *= momentum
                    buf += (1 - dampening) * g
                g = g + momentum * buf if nesterov else buf
            data -= lr * g


# --------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------

class AdamW(Optimizer):
    """Adam with decoupled weight decay (torch.optim.AdamW). For each
    parameter with a gradient g (negated when `maximize`), with t the step
    count after it is incremented (1 on the first update)::

        p   *= 1 - lr * weight_decay
        m    = beta1 * m + (1 - beta1) * g
        v    = beta2 * v + (1 - beta2) * g**2
        p   -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    done in one pass by the fused C kernel pytransformer.ops.adamw_step (per
    step constants in double; per element in the parameter's dtype, as
    PyTorch does: float32 math for float32 parameters, vectorised).
    State, named as in PyTorch: ``"step"`` (int), ``"exp_avg"`` (m) and
    ``"exp_avg_sq"`` (v), arrays of the parameter's dtype and shape. The
    parameter's .data must be C-contiguous (the kernel writes it in place);
    a non-contiguous gradient is copied. AMSGrad is not implemented.
    """

    _state_spec = {"step": "step", "exp_avg": "array", "exp_avg_sq": "array"}
    # PyTorch >= 2.6 saves AdamW's groups with decoupled_weight_decay=True
    _torch_options = {"decoupled_weight_decay": (True,)}
    _in_place_kernel = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 *, maximize=False):
        defaults = dict(lr=_nonneg("lr", lr), betas=_betas("betas", betas),
                        eps=_nonneg("eps", eps),
                        weight_decay=_nonneg("weight_decay", weight_decay),
                        maximize=_flag("maximize", maximize))
        super().__init__(params, defaults)

    def _update(self, group, items):
        for p, g in items:
            data = p.data
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(data, order="C")
                state["exp_avg_sq"] = np.zeros_like(data, order="C")
            if group["maximize"]:
                g = -g
            step = state["step"] + 1
            _adamw_step(data, g, state["exp_avg"], state["exp_avg_sq"], step,
                        lr=group["lr"], betas=group["betas"], eps=group["eps"],
                        weight_decay=group["weight_decay"])
            state["step"] = step


# --------------------------------------------------------------------------
# gradient clipping
# --------------------------------------------------------------------------

_CHUNK = 1 << 20                          # elements converted to float64 at a time


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of `parameters` in place so that their total norm
    is at most `max_norm` (torch.nn.utils.clip_grad_norm_), and return the
    total norm *before* clipping as a Python float.

    The total norm is the `norm_type`-norm of all gradients together, as if
    concatenated into one vector (``float("inf")`` or ``"inf"``: the largest
    absolute value); it is accumulated in float64 whatever the gradients'
    dtype. With ``clip_coef = max_norm / (total_norm + 1e-6)``, every gradient
    is multiplied by ``min(clip_coef, 1.0)``, as PyTorch does; a factor of
    exactly 1.0 is skipped, which changes no value. A NaN or infinite total
    norm therefore makes the gradients NaN (or zeros and NaNs), as in
    PyTorch, unless `error_if_nonfinite` makes it a RuntimeError (raised
    before anything is scaled). Parameters without a gradient are ignored;
    with none at all the result is 0.0. `parameters` is an iterable of
    parameters or a single parameter.
    """
    if _is_param_like(parameters):
        parameters = [parameters]
    elif isinstance(parameters, np.ndarray):
        raise TypeError("parameters: expected Parameters (objects with .grad), got a "
                        "numpy.ndarray")
    else:
        try:
            parameters = list(parameters)
        except TypeError:
            raise TypeError(f"parameters: expected an iterable of Parameters, got "
                            f"{type(parameters).__name__}") from None
    grads = []
    for j, p in enumerate(parameters):
        if not hasattr(p, "grad"):
            raise TypeError(f"parameters[{j}]: expected a Parameter (with .grad), got "
                            f"{type(p).__name__}")
        g = p.grad
        if g is None:
            continue
        if not isinstance(g, np.ndarray) or g.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"parameters[{j}].grad: expected a float32 or float64 "
                            f"numpy.ndarray, got "
                            f"{getattr(g, 'dtype', type(g).__name__)}")
        grads.append(g)
    max_norm = _real_arg("max_norm", max_norm)
    if not max_norm >= 0:
        raise ValueError(f"max_norm: must be >= 0, got {max_norm}")
    if isinstance(norm_type, str):
        if norm_type.strip().lower() not in ("inf", "+inf", "infinity"):
            raise ValueError(f"norm_type: expected a number > 0 or 'inf', got {norm_type!r}")
        norm_type = math.inf
    norm_type = _real_arg("norm_type", norm_type)
    if not norm_type > 0:
        raise ValueError(f"norm_type: must be > 0 (or inf), got {norm_type}")
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = 0.0
        for g in grads:
            if g.size:
                total = float(np.maximum(total, np.max(np.abs(g))))
    else:
        acc = 0.0
        for g in grads:
            flat = g.reshape(-1)
            for s in range(0, flat.size, _CHUNK):
                c = flat[s:s + _CHUNK].astype(np.float64)
                np.abs(c, out=c)
                if norm_type == 2.0:
                    acc += float(np.dot(c, c))
                elif norm_type == 1.0:
                    acc += float(np.sum(c))
                else:
                    acc += float(np.sum(c ** norm_type))
        if norm_type == 2.0:
            total = math.sqrt(acc)
        elif norm_type == 1.0:
            total = acc
        else:
            total = acc ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            f"non-finite, so it cannot be clipped. To disable this error and scale the "
            f"gradients by the non-finite norm anyway, set `error_if_nonfinite=False`")
    clip_coef = max_norm / (total + 1e-6)
    coef = 1.0 if clip_coef > 1.0 else clip_coef      # clamp(max=1), NaN stays NaN
    if coef != 1.0:
        with np.errstate(invalid="ignore"):       # inf * 0 = nan, as PyTorch, silently
            for g in grads:
                g *= coef
    return total


# --------------------------------------------------------------------------
# learning-rate schedules
# --------------------------------------------------------------------------

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
