"""Module: the base class of every layer (PyTorch's nn.Module, in small).

A Module owns Parameters, buffers (non-trainable arrays such as positional
tables) and child Modules, registered by plain attribute assignment. Its
``state_dict()`` maps dotted names ("encoder.layers.0.norm1.weight") to NumPy
arrays, with the same keys PyTorch uses for the same configuration, so
weights move between the two libraries as plain arrays.
"""
import collections
import copy
import itertools

import numpy as np

from pytransformer.autograd.tensor import Parameter, Tensor

__all__ = ["Module", "ModuleList", "Sequential", "Parameter", "IncompatibleKeys"]

# STRUCTURE[0] grows whenever something changes what a call of some module
# tree runs: a forward (pre-)hook registered or removed, an attribute,
# parameter, buffer or submodule assigned or deleted, a mode or dtype
# changed. nn._fast keeps facts about a tree (a hook somewhere in it, every
# module in eval mode, its packed layers still valid) and checks them again
# only when this count has moved, so that a decoding step does not walk the
# tree. Code that edits a module's dicts directly (m._modules[k] = ...)
# bypasses it.
STRUCTURE = [0]


def _changed():
    STRUCTURE[0] += 1


IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = """What load_state_dict returns (as in PyTorch):
missing_keys, the module's keys absent from the state dict, and
unexpected_keys, the state dict's keys the module does not have; each a list
of str (both empty after a strict load)."""


class RemovableHandle:
    """Returned by register_forward_hook; ``remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self.hooks, self.id = hooks, next(RemovableHandle._ids)

    def remove(self):
        """Unregister the hook (a second call does nothing)."""
        if self.hooks.pop(self.id, None) is not None:
            _changed()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class Module:
    """Base class of layers: subclasses set attributes in ``__init__`` and
    define ``forward``; call the module itself (``m(x)``) so hooks run."""

    def __init__(self):
        object.__setattr__(self, "_parameters", collections.OrderedDict())
        object.__setattr__(self, "_buffers", collections.OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", collections.OrderedDict())
        object.__setattr__(self, "_forward_hooks", collections.OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", collections.OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration -------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("Module.__init__() must be called before assigning attributes")
        _changed()
        for d in (self._parameters, self._modules, self._buffers):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_modules", "_buffers"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        _changed()
        for d in (self._parameters, self._modules, self._buffers):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register `param` (a Parameter, or None for an absent one such as a
        disabled bias: it then appears in no state_dict)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: expected a Parameter or None, "
                            f"got {type(param).__name__}")
        _changed()
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name, value, persistent=True):
        """Register a non-trainable array `value` (NumPy array or Tensor, or
        None) as attribute `name`; persistent buffers are part of the
        state_dict. TypeError for anything else."""
        if value is not None and not isinstance(value, (np.ndarray, Tensor)):
            raise TypeError(f"register_buffer: expected an array, got {type(value).__name__}")
        _changed()
        self.__dict__.pop(name, None)
        self._buffers[name] = value.data if isinstance(value, Tensor) else value
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        """Register a child module under `name`."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: expected a Module, got {type(module).__name__}")
        _changed()
        self.__dict__.pop(name, None)
        self._modules[name] = module

    # --- traversal ----------------------------------------------------------
    def named_modules(self, prefix="", memo=None):
        """Yield (dotted name, module) for this module (named `prefix`) and
        every descendant, each once; memo is the set of ids already seen."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):
        """This module and every descendant."""
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """(name, module) for the direct children."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        """The direct child modules."""
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """Yield (dotted name, Parameter) pairs, names starting with `prefix`;
        recurse=False lists only this module's own. A parameter shared by two
        modules (tied weights) is listed once unless remove_duplicate is False."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for name, p in m._parameters.items():
                if p is None or (remove_duplicate and id(p) in seen):
                    continue
                seen.add(id(p))
                yield (f"{mname}.{name}" if mname else name), p

    def parameters(self, recurse=True):
        """Yield every Parameter, each once (recurse as in named_parameters)."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        """Yield (dotted name, array) for every buffer, persistent or not;
        prefix and recurse as in named_parameters."""
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{name}" if mname else name), b

    def buffers(self, recurse=True):
        """Yield every buffer array (recurse as in named_buffers)."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def num_parameters(self):
        """Total number of parameter elements (tied weights counted once)."""
        return sum(p.data.size for p in self.parameters())

    # --- modes, grads, dtype --------------------------------------------------
    def train(self, mode=True):
        """Training mode (dropout active) for this module and its children."""
        _changed()
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Evaluation mode (dropout off): train(False)."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad on every parameter."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient (to None, or to zeros)."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def apply(self, fn):
        """Call fn(module) on every descendant and then on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, dtype):
        """Cast every parameter and float buffer to `dtype` (float32/float64;
        TypeError otherwise), dropping the gradients of cast parameters;
        returns self."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"to: expected float32 or float64, got {dtype}")
        _changed()
        for p in self.parameters():
            if p.dtype != dtype:
                p.data = p.data.astype(dtype)
                p.grad = None
        for m in self.modules():
            for name, b in m._buffers.items():
                if b is not None and b.dtype.kind == "f" and b.dtype != dtype:
                    m._buffers[name] = b.astype(dtype)
        return self

    def float(self):
        """Cast parameters and float buffers to float32: to(np.float32)."""
        return self.to(np.float32)

    def double(self):
        """Cast parameters and float buffers to float64: to(np.float64)."""
        return self.to(np.float64)

    # --- state ----------------------------------------------------------------
    def state_dict(self, prefix=""):
        """An ordered dict of dotted name (starting with `prefix`) -> NumPy
        array: the parameters' and persistent buffers' own arrays, not copies
        (copy them to snapshot). Tied parameters appear under every name, as
        in PyTorch."""
        out = collections.OrderedDict()
        for mname, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is not None:
                    out[f"{mname}.{name}" if mname else name] = p.data
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[f"{mname}.{name}" if mname else name] = b
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (or Tensors) from `state_dict` into the parameters and
        buffers, in place and cast to their dtype.

        A shape mismatch is always an error; with strict=True (default)
        missing or unexpected keys are too. The error lists every problem.
        Returns (missing_keys, unexpected_keys). Nothing is changed unless
        every check passes."""
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f"load_state_dict: expected a mapping, got {type(state_dict).__name__}")
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems, values = [], {}
        for k, dst in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            v = v.data if isinstance(v, Tensor) else v
            if not isinstance(v, np.ndarray):
                try:
                    v = np.asarray(v)
                except Exception:  # noqa: BLE001
                    problems.append(f"{k}: not an array ({type(v).__name__})")
                    continue
            if v.shape != dst.shape:
                problems.append(f"size mismatch for {k}: copying a param with shape "
                                f"{v.shape} from checkpoint, the shape in current model "
                                f"is {dst.shape}")
            elif v.dtype.kind not in "fiub":
                problems.append(f"{k}: unsupported dtype {v.dtype}")
            else:
                values[k] = v
        if strict:
            if missing:
                problems.insert(0, "Missing key(s) in state_dict: "
                                + ", ".join(f'"{k}"' for k in missing))
            if unexpected:
                problems.insert(0, "Unexpected key(s) in state_dict: "
                                + ", ".join(f'"{k}"' for k in unexpected))
        if problems:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(problems))
        done = set()
        for k, v in values.items():
            dst = own[k]
            if id(dst) in done:  # tied weights: the first key wins
                continue
            done.add(id(dst))
            np.copyto(dst, v, casting="unsafe")
        # an in-place change: bump the parameters' version counters (what
        # a packed copy of a weight, nn._fast's, is checked against)
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and id(p.data) in done and hasattr(p, "_vc"):
                    p._vc[0] += 1
        return IncompatibleKeys(missing, unexpected)

    # --- calling ----------------------------------------------------------------
    def forward(self, *args, **kwargs):
        """The computation; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            res = hook(self, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
        out = self.forward(*args, **kwargs)
        for hook, with_kwargs in list(self._forward_hooks.values()):
            res = hook(self, args, kwargs, out) if with_kwargs else hook(self, args, out)
            if res is not None:
                out = res
        return out

    def register_forward_hook(self, hook, with_kwargs=False):
        """Call ``hook(module, args, output)`` (or ``hook(module, args, kwargs,
        output)`` with with_kwargs) after every forward; a non-None return
        value replaces the output. Returns a handle whose remove() undoes it."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = (hook, bool(with_kwargs))
        _changed()
        return handle

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, args)`` before every forward; a non-None return
        value replaces the positional arguments. Returns a handle."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        _changed()
        return handle

    # --- printing -----------------------------------------------------------
    def extra_repr(self):
        """Extra text inside this module's repr (its configuration)."""
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            if k in ("_forward_hooks", "_forward_pre_hooks"):
                object.__setattr__(new, k, collections.OrderedDict())
            else:
                object.__setattr__(new, k, copy.deepcopy(v, memo))
        return new


class ModuleList(Module):
    """A list of modules registered under "0", "1", ... (PyTorch's keys)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        """Add a module at the end."""
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ModuleList(list(self._modules.values())[i])
        n = len(self._modules)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a ModuleList of {n}")
        return self._modules[str(i % n)]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(Module):
    """Modules applied one after another."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        """x through every module in order."""
        for m in self._modules.values():
            x = m(x)
        return x
