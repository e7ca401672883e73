"""Tensor, Function and the backward pass: a small reverse-mode autograd.

A :class:`Tensor` wraps a NumPy array (``.data``) and, when it was produced by
a differentiable operation while gradients are enabled, the :class:`Function`
node that produced it (``.grad_fn``). ``loss.backward()`` visits those nodes
in reverse topological order (micrograd's sort, made iterative), calls each
node's ``backward`` once with the summed gradients of its outputs, and adds
the results into ``.grad`` of the leaf tensors that require grad.

Rules, as in PyTorch:
  * gradients accumulate into ``.grad`` until the caller resets them;
  * the graph is freed after ``backward()`` unless ``retain_graph=True``
    (a second pass over a freed graph is a RuntimeError saying so);
  * only leaf tensors keep ``.grad`` (``retain_grad()`` asks for more);
  * each tensor carries a version counter bumped by its in-place methods;
    a Function that saved a tensor checks the version in backward, so an
    in-place change to something saved for backward is an error, not a wrong
    gradient. Views (reshape, permute, basic indexing, expand) and
    ``detach()`` share the counter of the tensor they look into, so a change
    through any of them is caught. In-place methods on a tensor that has a
    ``grad_fn``, or on a leaf that requires grad while gradients are enabled,
    are refused. Writing to ``.data`` directly bypasses all of this (that is
    what optimizers do).
"""
import threading

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# ----------------------------------------------------------------------------
# grad mode


class _GradMode(threading.local):
    enabled = True


_mode = _GradMode()


def is_grad_enabled():
    """Whether operations currently record a graph (per thread)."""
    return _mode.enabled


class _SetGrad:
    def __init__(self, enabled):
        self.enabled = enabled

    def __enter__(self):
        self.prev = _mode.enabled
        _mode.enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _mode.enabled = self.prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _SetGrad(self.enabled):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_SetGrad):
    """Context manager (or decorator) under which no graph is recorded:
    results have ``requires_grad=False`` and nothing is saved for backward."""

    def __init__(self):
        super().__init__(False)


class enable_grad(_SetGrad):
    """Context manager (or decorator) that turns graph recording back on."""

    def __init__(self):
        super().__init__(True)


# ----------------------------------------------------------------------------
# Function: one differentiable operation


class Function:
    """A differentiable operation (tinygrad's shape).

    Subclasses implement ``forward(self, *args, **kwargs)`` on raw NumPy
    arrays (every Tensor argument arrives as its ``.data``) returning an array
    or a tuple of arrays, keeping on ``self`` what backward needs, and
    ``backward(self, *grad_outputs)`` returning one gradient (array or None)
    per Tensor argument, in order. ``self.needs_input_grad`` tells backward
    which of those it must compute. Call ``Fn.apply(*args, **kwargs)``.

    ``saves_inputs = True`` (the default) makes backward verify that no Tensor
    argument was changed in place after the forward; set it False when the
    backward does not read the inputs. ``saves_output = True`` does the same
    for the outputs (softmax, exp, attention keep theirs).
    """

    saves_inputs = True
    saves_output = False
    differentiable_outputs = None  # None: all; else a tuple of output indices
    none_grads_ok = False  # True: backward gets None (not zeros) for unused outputs

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run forward on the arrays of the Tensor arguments; record the node
        when gradients are enabled and any Tensor argument requires grad."""
        ctx = cls()
        inputs = [a for a in args if isinstance(a, Tensor)]
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        result = ctx.forward(*raw, **kwargs)
        single = not isinstance(result, tuple)
        # NumPy arithmetic on 0-d arrays returns scalars: keep every data an ndarray
        outs = tuple(o if o is None or isinstance(o, np.ndarray) else np.asarray(o)
                     for o in ((result,) if single else result))
        record = _mode.enabled and any(t.requires_grad for t in inputs)
        tensors = []
        for i, o in enumerate(outs):
            grad_ok = record and o is not None and o.dtype in _FLOATS and (
                cls.differentiable_outputs is None or i in cls.differentiable_outputs)
            t = None if o is None else Tensor._wrap(o, grad_ok)
            if t is not None and o.base is not None:
                # a view of an input (reshape, permute, basic indexing, expand)
                # shares its version counter, as in PyTorch: an in-place
                # change through either is seen by nodes that saved the other
                for a in inputs:
                    if np.may_share_memory(o, a.data):
                        t._vc = a._vc
                        break
            if grad_ok:
                t.grad_fn, t._out_index = ctx, i
            tensors.append(t)
        if record:
            ctx.inputs = inputs
            ctx.needs_input_grad = tuple(t.requires_grad for t in inputs)
            ctx.out_meta = [None if o is None else (o.shape, o.dtype) for o in outs]
            if cls.saves_inputs:
                ctx.in_versions = [t._version for t in inputs]
            if cls.saves_output:
                ctx.outputs = [None if t is None else (t._vc, t._version)
                               for t in tensors]
        return tensors[0] if single else tuple(tensors)

    # Attributes of a recorded node (set by apply, cleared when freed).
    inputs = None
    needs_input_grad = ()
    out_meta = ()
    in_versions = None
    outputs = None

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        """Compute the output array (or tuple of arrays) from the arguments,
        Tensors replaced by their NumPy data; keep on self what backward
        needs. Subclasses define it; here it raises NotImplementedError."""
        raise NotImplementedError

    def backward(self, *grad_outputs):  # pragma: no cover - abstract
        """Given one gradient array per output (zeros for an output that got
        none, or None when none_grads_ok), return one gradient per Tensor argument of
        forward, in order: an array of that argument's shape, or None.
        Subclasses define it; here it raises NotImplementedError."""
        raise NotImplementedError

    @property
    def name(self):
        """The operation's name, e.g. 'Linear'."""
        return type(self).__name__

    def __repr__(self):
        return f"<{self.name}Backward>"

    def _check_versions(self):
        if self.in_versions is not None:
            for pos, (t, v) in enumerate(zip(self.inputs, self.in_versions)):
                if t._version != v:
                    raise RuntimeError(
                        f"{self.name}: input {pos} (shape {t.shape}) was modified in place "
                        f"after being saved for backward (version {v} -> {t._version})")
        if self.outputs is not None:
            for pos, entry in enumerate(self.outputs):
                if entry is not None and entry[0][0] != entry[1]:
                    raise RuntimeError(
                        f"{self.name}: output {pos} (shape {self.out_meta[pos][0]}) was "
                        f"modified in place after being saved for backward")

    def _free(self):
        """Drop everything the node holds (the graph is freed after backward)."""
        keep = {"_freed"}
        for k in list(vars(self)):
            if k not in keep:
                delattr(self, k)
        self._freed = True


# ----------------------------------------------------------------------------
# Tensor


def _as_array(data, dtype):
    """NumPy array for tensor(): Python floats become float32 (PyTorch's
    default), integers int64, arrays keep their dtype unless one is given."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.array(data, dtype=np.dtype(dtype))
    if isinstance(data, np.ndarray):
        return data
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "b":
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} "
                        f"(NumPy dtype {arr.dtype})")
    return arr


class Tensor:
    """A NumPy array with an optional gradient and the node that made it.

    ``Tensor(data, requires_grad=False, dtype=None)``: data is an array, a
    number or nested lists. Floating tensors are float32 or float64; integer
    and bool tensors (token ids, masks) never require grad.
    """

    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        arr = _as_array(data, dtype)
        if arr.dtype.kind == "f" and arr.dtype not in _FLOATS:
            arr = arr.astype(np.float32)
        self.data = arr
        self.grad = None
        self.grad_fn = None
        self._out_index = 0
        self._vc = [0]  # version counter, shared with views and detach()
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, arr, requires_grad):
        t = cls.__new__(Tensor)
        t.data, t.grad, t.grad_fn, t._out_index = arr, None, None, 0
        t._vc, t._retains_grad, t.requires_grad = [0], False, requires_grad
        return t

    @property
    def _version(self):
        """How many in-place changes this tensor's data has seen (counted
        together with the tensors that share it: views and detach())."""
        return self._vc[0]

    # --- properties -------------------------------------------------------
    shape = property(lambda self: self.data.shape, doc="The shape (a tuple).")
    dtype = property(lambda self: self.data.dtype, doc="The NumPy dtype.")
    ndim = property(lambda self: self.data.ndim, doc="Number of dimensions.")

    @property
    def is_leaf(self):
        """True for tensors not produced by a recorded operation."""
        return self.grad_fn is None

    def size(self, dim=None):
        """The shape, or its length along `dim`."""
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        """Number of elements."""
        return self.data.size

    def dim(self):
        """Number of dimensions."""
        return self.data.ndim

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = ""
        if self.grad_fn is not None:
            extra = f", grad_fn={self.grad_fn!r}"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad in place (only on leaves; floats only)."""
        if requires_grad and self.data.dtype not in _FLOATS:
            raise TypeError(f"only float32/float64 tensors can require grad, got {self.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def register_grad_ready_hook(self, hook):
        """Call ``hook(self)`` in every backward pass that reaches this leaf,
        once its ``.grad`` holds everything that pass adds to it (after the
        last node that uses it, while the rest of the pass goes on; ``.grad``
        may still be None when no path gave it a gradient). Data-parallel
        training starts a parameter bucket's all-reduce from it. Returns a
        handle whose ``remove()`` unregisters the hook. Only leaves that
        require grad have one (RuntimeError otherwise)."""
        if self.grad_fn is not None or not self.requires_grad:
            raise RuntimeError("register_grad_ready_hook: only a leaf tensor that requires "
                               "grad can have one")
        if not callable(hook):
            raise TypeError(f"register_grad_ready_hook: expected a callable, got "
                            f"{type(hook).__name__}")
        hooks = self.__dict__.setdefault("_grad_ready_hooks", [])
        hooks.append(hook)
        return _HookHandle(hooks, hook)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        self._retains_grad = True
        return self

    # --- conversion -------------------------------------------------------
    def numpy(self):
        """The underlying array (shared, not copied); refused while the tensor
        requires grad, as in PyTorch -- call ``.detach().numpy()``."""
        if self.requires_grad:
            raise RuntimeError("numpy() on a tensor that requires grad; use .detach().numpy()")
        return self.data

    def detach(self):
        """A new leaf tensor sharing this one's data, outside the graph."""
        t = Tensor._wrap(self.data, False)
        t._vc = self._vc  # same data, same version counter (as in PyTorch)
        return t

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): tensor has {self.data.size} elements, expected 1")
        return self.data.reshape(-1)[0].item()

    def tolist(self):
        """The data as nested Python lists."""
        return self.data.tolist()

    def float(self):
        """A float32 copy (differentiable)."""
        return self.to(np.float32)

    def double(self):
        """A float64 copy (differentiable)."""
        return self.to(np.float64)

    def to(self, dtype):
        """This tensor cast to `dtype` (itself when already of that dtype)."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return _F.Cast.apply(self, dtype)

    def clone(self):
        """A differentiable copy."""
        return _F.Clone.apply(self)

    def contiguous(self):
        """A C-contiguous tensor (itself when already so)."""
        return self if self.data.flags.c_contiguous else self.clone()

    # --- backward ---------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that
        requires grad. `gradient` (the upstream gradient, self's shape) is
        required unless self has one element."""
        backward(self, gradient, retain_graph)

    # --- in-place (outside the graph) ---------------------------------------
    def _inplace_check(self, op):
        if self.grad_fn is not None and _mode.enabled:
            raise RuntimeError(f"{op}: in-place operation on a tensor that is part of a "
                               f"graph (grad_fn={self.grad_fn!r}); use the out-of-place form")
        if self.requires_grad and self.grad_fn is None and _mode.enabled:
            raise RuntimeError(f"{op}: a leaf tensor that requires grad is used in an "
                               f"in-place operation; wrap it in no_grad()")
        if not self.data.flags.writeable:
            raise ValueError(f"{op}: the tensor's data is read-only")
        self._vc[0] += 1

    def zero_(self):
        """Fill with zeros in place."""
        self._inplace_check("zero_")
        self.data[...] = 0
        return self

    def fill_(self, value):
        """Fill with `value` in place."""
        self._inplace_check("fill_")
        self.data[...] = value
        return self

    def copy_(self, src):
        """Copy `src` (broadcast to this shape) into this tensor in place."""
        self._inplace_check("copy_")
        self.data[...] = src.data if isinstance(src, Tensor) else src
        return self

    def add_(self, other, alpha=1):
        """self += alpha * other, in place."""
        self._inplace_check("add_")
        other = other.data if isinstance(other, Tensor) else other
        self.data += other if alpha == 1 else alpha * np.asarray(other, self.dtype)
        return self

    def mul_(self, other):
        """self *= other, in place."""
        self._inplace_check("mul_")
        self.data *= other.data if isinstance(other, Tensor) else other
        return self

    def masked_fill_(self, mask, value):
        """Set the elements where `mask` is True to `value`, in place."""
        self._inplace_check("masked_fill_")
        np.copyto(self.data, np.asarray(value, dtype=self.dtype), where=_mask_array(mask))
        return self

    def __setitem__(self, index, value):
        self._inplace_check("__setitem__")
        self.data[_index(index)] = value.data if isinstance(value, Tensor) else value

    # --- arithmetic ---------------------------------------------------------
    def __add__(self, other):
        return _F.Add.apply(self, _operand(other, self))

    def __radd__(self, other):
        return _F.Add.apply(_operand(other, self), self)

    def __sub__(self, other):
        return _F.Sub.apply(self, _operand(other, self))

    def __rsub__(self, other):
        return _F.Sub.apply(_operand(other, self), self)

    def __mul__(self, other):
        return _F.Mul.apply(self, _operand(other, self))

    def __rmul__(self, other):
        return _F.Mul.apply(_operand(other, self), self)

    def __truediv__(self, other):
        return _F.Div.apply(self, _operand(other, self))

    def __rtruediv__(self, other):
        return _F.Div.apply(_operand(other, self), self)

    def __neg__(self):
        return _F.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: tensor exponents are not supported; use a number")
        return _F.Pow.apply(self, float(exponent))

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(_operand(other, self), self)

    # comparisons give bool tensors outside the graph
    def _cmp(self, other, op):
        return Tensor._wrap(op(self.data, other.data if isinstance(other, Tensor) else other),
                            False)

    __eq__ = lambda self, o: self._cmp(o, np.equal)  # noqa: E731
    __ne__ = lambda self, o: self._cmp(o, np.not_equal)  # noqa: E731
    __lt__ = lambda self, o: self._cmp(o, np.less)  # noqa: E731
    __le__ = lambda self, o: self._cmp(o, np.less_equal)  # noqa: E731
    __gt__ = lambda self, o: self._cmp(o, np.greater)  # noqa: E731
    __ge__ = lambda self, o: self._cmp(o, np.greater_equal)  # noqa: E731
    __hash__ = object.__hash__

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError("the truth value of a tensor with more than one element "
                             "is ambiguous")
        return bool(self.data.reshape(-1)[0])

    # --- elementwise math ----------------------------------------------------
    def exp(self):
        """The exponential e**x, elementwise."""
        return _F.Exp.apply(self)

    def log(self):
        """Natural logarithm, elementwise."""
        return _F.Log.apply(self)

    def sqrt(self):
        """Square root, elementwise."""
        return _F.Pow.apply(self, 0.5)

    def tanh(self):
        """Hyperbolic tangent, elementwise."""
        return _F.Tanh.apply(self)

    def abs(self):
        """Absolute value, elementwise (gradient sign(x), 0 at 0)."""
        return _F.Abs.apply(self)

    def relu(self):
        """max(x, 0) on the C kernel."""
        from pytransformer.autograd import kernels
        return kernels.ReLU.apply(self)

    def softmax(self, dim=-1):
        """Softmax along `dim` on the C kernel."""
        from pytransformer.autograd import kernels
        return kernels.softmax(self, dim)

    def log_softmax(self, dim=-1):
        """log(softmax) along `dim` on the C kernel."""
        from pytransformer.autograd import kernels
        return kernels.log_softmax(self, dim)

    def masked_fill(self, mask, value):
        """A copy with `value` where `mask` (bool, broadcast to self) is True;
        no gradient flows to the filled positions."""
        return _F.MaskedFill.apply(self, _mask_array(mask), value)

    # --- reductions -----------------------------------------------------------
    def sum(self, dim=None, keepdim=False):
        """Sum over `dim` (an int, a tuple, or None for all)."""
        return _F.Sum.apply(self, _dims(dim, self.ndim), keepdim)

    def mean(self, dim=None, keepdim=False):
        """Mean over `dim` (an int, a tuple, or None for all)."""
        return _F.Mean.apply(self, _dims(dim, self.ndim), keepdim)

    def max(self, dim=None, keepdim=False):
        """The maximum: over everything (dim=None; the gradient is shared
        equally among tied maxima, like PyTorch's amax), or along `dim`,
        returning ``(values, indices)`` (the gradient goes to the index)."""
        if dim is None:
            return _F.Amax.apply(self, _dims(None, self.ndim), False)
        d = _dims(dim, self.ndim)
        if len(d) != 1:
            raise ValueError("max(dim=...): dim must be a single int")
        values = _F.MaxDim.apply(self, d[0], keepdim)
        idx = np.argmax(self.data, axis=d[0])
        if keepdim:
            idx = np.expand_dims(idx, d[0])
        return values, Tensor._wrap(idx, False)

    def amax(self, dim=None, keepdim=False):
        """Maximum over `dim`; ties share the gradient equally."""
        return _F.Amax.apply(self, _dims(dim, self.ndim), keepdim)

    def argmax(self, dim=None, keepdim=False):
        """Indices of the maxima (an int64 tensor, no gradient)."""
        if dim is None:
            return Tensor._wrap(np.asarray(np.argmax(self.data)), False)
        return Tensor._wrap(np.argmax(self.data, axis=dim, keepdims=keepdim), False)

    # --- shape ------------------------------------------------------------
    def reshape(self, *shape):
        """The same elements in a new shape (-1 inferred once)."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _F.Reshape.apply(self, tuple(int(s) for s in shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        """Merge dims start_dim..end_dim into one."""
        n = self.ndim
        s, e = start_dim % max(n, 1), end_dim % max(n, 1)
        if n == 0:
            return self.reshape(1)
        shape = self.shape[:s] + (-1,) + self.shape[e + 1:]
        return self.reshape(shape)

    def transpose(self, dim0, dim1):
        """Swap two dims (a view of the data)."""
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return _F.Permute.apply(self, tuple(axes))

    def permute(self, *dims):
        """Reorder the dims (a view of the data)."""
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        dims = tuple(int(d) % self.ndim for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of {self.ndim} dims")
        return _F.Permute.apply(self, dims)

    @property
    def T(self):
        """All dims reversed."""
        return _F.Permute.apply(self, tuple(reversed(range(self.ndim))))

    def unsqueeze(self, dim):
        """Insert a dim of size 1 at `dim`."""
        dim = dim if dim >= 0 else dim + self.ndim + 1
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        """Remove dims of size 1 (all, or just `dim`)."""
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dim %= self.ndim
        if self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1:])

    def expand(self, *shape):
        """Broadcast to `shape` (-1 keeps a dim); the gradient is summed back."""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        lead = len(shape) - self.ndim
        shape = tuple(self.shape[i - lead] if s == -1 else s for i, s in enumerate(shape))
        return _F.Expand.apply(self, shape)

    def split(self, split_size, dim=-1):
        """Chunks of `split_size` along `dim` (the last may be smaller)."""
        n = self.shape[dim]
        return tuple(self.narrow(dim, s, min(split_size, n - s))
                     for s in range(0, n, split_size))

    def chunk(self, chunks, dim=-1):
        """`chunks` nearly equal pieces along `dim`."""
        n = self.shape[dim]
        size = -(-n // chunks)
        return self.split(size, dim)

    def narrow(self, dim, start, length):
        """Elements start..start+length-1 along `dim`."""
        index = [slice(None)] * self.ndim
        index[dim] = slice(start, start + length)
        return self[tuple(index)]

    def __getitem__(self, index):
        return _F.GetItem.apply(self, _index(index))


class Parameter(Tensor):
    """A leaf tensor that a Module registers as a parameter (requires grad by
    default). ``Parameter(data)`` shares `data` when it is already a float
    NumPy array, else converts it (float32 by default)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data)
        if self.data.dtype not in _FLOATS:
            raise TypeError(f"Parameter: expected float32/float64 data, got {self.dtype}")
        self.requires_grad = bool(requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def tensor(data, dtype=None, requires_grad=False):
    """A new leaf Tensor (PyTorch's ``torch.tensor``): Python floats become
    float32, ints int64; NumPy arrays are copied and keep their dtype unless
    `dtype` is given."""
    if isinstance(data, Tensor):
        data = data.data
    arr = _as_array(data, dtype)
    if isinstance(data, np.ndarray) and arr is data:
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)


def _operand(x, like):
    """A Tensor for arithmetic with `like`: numbers and arrays take like's
    float dtype (so float32 stays float32 under NumPy 2's promotion rules)."""
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    if like.dtype in _FLOATS and arr.dtype.kind in "biuf" and (arr.ndim == 0 or
                                                              arr.dtype.kind != "f"):
        arr = arr.astype(like.dtype)
    return Tensor._wrap(arr, False)


def _mask_array(mask):
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"mask: expected a bool array, got dtype {m.dtype}")
    return m


def _index(index):
    """Tensors inside an index become their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _dims(dim, ndim):
    """dim (None, int or sequence) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"dim {d} out of range for a tensor of {ndim} dims")
        out.append(int(d) % max(ndim, 1))
    return tuple(sorted(set(out)))


def matmul(a, b):
    """a @ b with NumPy's matmul rules (broadcast batch dims). A 2-D weight on
    the right of an N-D input runs as one GEMM on the C core."""
    if not isinstance(a, Tensor):
        a = _operand(a, b)
    if not isinstance(b, Tensor):
        b = _operand(b, a)
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: dtypes differ ({a.dtype} and {b.dtype})")
    if a.ndim < 1 or b.ndim < 1:
        raise ValueError("matmul: both operands need at least 1 dim")
    if a.shape[-1] != (b.shape[0] if b.ndim == 1 else b.shape[-2]):
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match")
    if b.ndim == 2 and a.ndim >= 2 and a.dtype in _FLOATS:
        return _F.MatMul2D.apply(a, b)
    return _F.MatMul.apply(a, b)


# ----------------------------------------------------------------------------
# backward


def _topo_order(root):
    """Function nodes reachable from root's grad_fn, each after everything
    that consumes its outputs (reverse topological order for backward)."""
    order, seen = [], set()
    stack = [(root.grad_fn, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if getattr(node, "_freed", False):
            raise RuntimeError(
                "backward through a graph that has already been freed; pass "
                "retain_graph=True to the first backward() to go through it twice")
        for t in node.inputs:
            if t.grad_fn is not None and id(t.grad_fn) not in seen:
                stack.append((t.grad_fn, False))
    order.reverse()
    return order


class _HookHandle:
    """What register_grad_ready_hook returns: ``remove()`` unregisters."""

    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        """Unregister the hook (a second call does nothing)."""
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def _hooked_leaves(order):
    """{id(leaf): [leaf, number of nodes in `order` that take it]} for the
    leaves with grad-ready hooks."""
    pending = {}
    for node in order:
        seen = set()
        for t in node.inputs:
            if (t.grad_fn is None and t.requires_grad and t.__dict__.get("_grad_ready_hooks")
                    and id(t) not in seen):
                seen.add(id(t))
                pending.setdefault(id(t), [t, 0])[1] += 1
    return pending


def _release(node, pending):
    """`node` is done: fire the hooks of the leaves it was the last user of."""
    seen = set()
    for t in node.inputs:
        entry = pending.get(id(t))
        if entry is None or id(t) in seen:
            continue
        seen.add(id(t))
        entry[1] -= 1
        if entry[1] == 0:
            del pending[id(t)]
            for hook in list(t._grad_ready_hooks):
                hook(t)


def _accumulate(t, g):
    if g.shape != t.shape:
        raise RuntimeError(f"backward: gradient of shape {g.shape} for a tensor of "
                           f"shape {t.shape} (a Function returned a wrong shape)")
    if g.dtype != t.dtype:
        g = g.astype(t.dtype)
    if t.grad is None:
        t.grad = np.array(g, order="C", copy=True)
    else:
        t.grad += g


def backward(root, gradient=None, retain_graph=False):
    """Backpropagate from `root` (see Tensor.backward)."""
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad "
                           "(no input requires grad, or it was made under no_grad)")
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward() without a gradient on a tensor of shape "
                               f"{root.shape}: only a one-element output can be the loss; "
                               f"pass gradient= of that shape")
        gradient = np.ones(root.shape, dtype=root.dtype)
    else:
        gradient = gradient.data if isinstance(gradient, Tensor) else np.asarray(gradient)
        if gradient.shape != root.shape:
            raise ValueError(f"backward: gradient has shape {gradient.shape}, the tensor "
                             f"has shape {root.shape}")
        gradient = gradient.astype(root.dtype, copy=False)
    if root.grad_fn is None:  # a leaf
        _accumulate(root, gradient)
        for hook in list(root.__dict__.get("_grad_ready_hooks", ())):
            hook(root)
        return
    order = _topo_order(root)  # first: it raises if the graph was freed
    pending = _hooked_leaves(order)
    grads = {id(root.grad_fn): [None] * len(root.grad_fn.out_meta)}
    grads[id(root.grad_fn)][root._out_index] = gradient
    if root._retains_grad:
        _accumulate(root, gradient)
    for node in order:
        outs = grads.pop(id(node), None)
        if outs is None:
            if pending:
                _release(node, pending)
            continue
        if not node.none_grads_ok:
            outs = [np.zeros(m[0], m[1]) if g is None and m is not None else g
                    for g, m in zip(outs, node.out_meta)]
        node._check_versions()
        in_grads = node.backward(*outs)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.inputs):
            raise RuntimeError(f"{node.name}.backward returned {len(in_grads)} gradients "
                               f"for {len(node.inputs)} inputs")
        for t, g in zip(node.inputs, in_grads):
            if g is None or not t.requires_grad:
                continue
            if not isinstance(g, np.ndarray):  # a NumPy scalar from 0-d arithmetic
                g = np.asarray(g)
            if t.grad_fn is None:
                _accumulate(t, g)
                continue
            if t._retains_grad:
                _accumulate(t, g)
            slot = grads.setdefault(id(t.grad_fn), [None] * len(t.grad_fn.out_meta))
            i = t._out_index
            if g.shape != t.shape:
                raise RuntimeError(f"{node.name}.backward returned a gradient of shape "
                                   f"{g.shape} for an input of shape {t.shape}")
            slot[i] = g if slot[i] is None else slot[i] + g
        if pending:
            _release(node, pending)
        if not retain_graph:
            node._free()


from pytransformer.autograd import basic as _F  # noqa: E402  (Functions use Tensor)
