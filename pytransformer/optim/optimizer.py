"""The Optimizer base class: parameter groups, per-parameter state,
hyperparameter checks and PyTorch-layout state dicts (see pytransformer.optim)."""
import copy
import math
import numbers
from collections.abc import Mapping, MutableMapping

import numpy as np

from pytransformer.validation import ArgumentTypeError, flag_arg, int_arg, real_arg

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
    return real_arg(name, v, low=0.0)


def _betas(name, v):
    if isinstance(v, (str, bytes)) or not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ArgumentTypeError(f"{name}: expected a pair (beta1, beta2), got {v!r:.60}")
    return tuple(real_arg(f"{name}[{i}]", x, low=0.0, below=1.0) for i, x in enumerate(v))


def _real(name, v):
    v = real_arg(name, v)
    if math.isnan(v):
        raise ValueError(f"{name}: expected a number, got nan")
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
    "nesterov": flag_arg,
    "maximize": flag_arg,
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
                for p, _ in items:          # changed in place: a new version
                    vc = getattr(p, "_vc", None)
                    if vc is not None:
                        vc[0] += 1
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
                i = int_arg(f"{where}['params'][{j}]", i, 0)
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
    return int_arg(f"state_dict['state'] key {key!r}", key, 0)


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
