"""Elementwise, reduction, shape and indexing Functions of the autograd.

These are the glue operations between kernels (adding residuals, reshaping
heads, slicing a packed projection); the heavy operations, which run on the
C core, are in :mod:`pytransformer.autograd.kernels`. Each Function's forward
takes and returns NumPy arrays; backward returns one gradient per Tensor input.
"""
import numpy as np

from pytransformer import ops
from pytransformer.autograd.tensor import Function


def unbroadcast(g, shape):
    """Sum `g` down to `shape` (undo NumPy broadcasting in the backward)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _check_dtypes(name, a, b):
    if a.dtype.kind == "f" and b.dtype.kind == "f" and a.dtype != b.dtype:
        raise TypeError(f"{name}: operands have different dtypes ({a.dtype} and {b.dtype}); "
                        f"cast one with .to() first")


# ----------------------------------------------------------------------------
# dtype and copies


class Cast(Function):
    saves_inputs = False

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return g.astype(self.in_dtype)


class Clone(Function):
    saves_inputs = False

    def forward(self, x):
        return np.array(x, order="C", copy=True)

    def backward(self, g):
        return g


# ----------------------------------------------------------------------------
# arithmetic with broadcasting


class Add(Function):
    saves_inputs = False

    def forward(self, a, b):
        _check_dtypes("add", a, b)
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(g, self.shapes[1])


class Sub(Function):
    saves_inputs = False

    def forward(self, a, b):
        _check_dtypes("sub", a, b)
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(-g, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        _check_dtypes("mul", a, b)
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return unbroadcast(g * self.b, self.a.shape), unbroadcast(g * self.a, self.b.shape)


class Div(Function):
    def forward(self, a, b):
        _check_dtypes("div", a, b)
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        gb = -g * self.a / (self.b * self.b)
        return unbroadcast(g / self.b, self.a.shape), unbroadcast(gb, self.b.shape)


class Neg(Function):
    saves_inputs = False

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Pow(Function):
    def forward(self, x, p):
        self.x, self.p = x, p
        return x ** np.asarray(p, dtype=x.dtype)

    def backward(self, g):
        p = np.asarray(self.p, dtype=self.x.dtype)
        return g * p * self.x ** (p - 1)


class Exp(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = np.exp(x)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, g):
        return g / self.x


class Tanh(Function):
    saves_inputs = False
    saves_output = True

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, g):
        return g * (1 - self.y * self.y)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return np.abs(x)

    def backward(self, g):
        return g * np.sign(self.x)


class MaskedFill(Function):
    saves_inputs = False

    def forward(self, x, mask, value):
        self.mask = np.broadcast_to(mask, x.shape) if mask.shape != x.shape else mask
        y = np.array(x, copy=True)
        np.copyto(y, np.asarray(value, dtype=x.dtype), where=self.mask)
        return y

    def backward(self, g):
        return np.where(self.mask, np.zeros((), g.dtype), g)


# ----------------------------------------------------------------------------
# reductions


class Sum(Function):
    saves_inputs = False

    def forward(self, x, dims, keepdim):
        self.shape, self.dims = x.shape, dims
        return np.asarray(x.sum(axis=dims, keepdims=keepdim))

    def backward(self, g):
        return np.broadcast_to(np.expand_dims(g, self.dims) if g.ndim < len(self.shape)
                               else g, self.shape).copy()


class Mean(Function):
    saves_inputs = False

    def forward(self, x, dims, keepdim):
        self.shape, self.dims = x.shape, dims
        self.n = int(np.prod([x.shape[d] for d in dims], dtype=np.int64))
        return np.asarray(x.mean(axis=dims, keepdims=keepdim))

    def backward(self, g):
        g = np.expand_dims(g, self.dims) if g.ndim < len(self.shape) else g
        return np.broadcast_to(g / np.asarray(self.n, g.dtype), self.shape).copy()


class Amax(Function):
    """Maximum over dims; the gradient is split equally among ties."""

    def forward(self, x, dims, keepdim):
        self.x, self.dims = x, dims
        self.m = x.max(axis=dims, keepdims=True)
        return np.asarray(self.m if keepdim else self.m.reshape(
            [s for i, s in enumerate(x.shape) if i not in dims]))

    def backward(self, g):
        g = g.reshape(self.m.shape)
        hit = self.x == self.m
        count = hit.sum(axis=self.dims, keepdims=True)
        return np.where(hit, g / count.astype(g.dtype), np.zeros((), g.dtype))


class MaxDim(Function):
    """max along one dim; the gradient goes to the argmax (first of ties)."""

    def forward(self, x, dim, keepdim):
        self.shape, self.dim = x.shape, dim
        self.idx = np.expand_dims(np.argmax(x, axis=dim), dim)
        y = np.take_along_axis(x, self.idx, axis=dim)
        return y if keepdim else np.squeeze(y, axis=dim)

    def backward(self, g):
        out = np.zeros(self.shape, g.dtype)
        g = g if g.ndim == len(self.shape) else np.expand_dims(g, self.dim)
        np.put_along_axis(out, self.idx, g, axis=self.dim)
        return out


# ----------------------------------------------------------------------------
# shape


class Reshape(Function):
    saves_inputs = False

    def forward(self, x, shape):
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                             f"({x.size} elements) into {shape}") from None

    def backward(self, g):
        return g.reshape(self.shape)


class Permute(Function):
    saves_inputs = False

    def forward(self, x, axes):
        self.inverse = tuple(np.argsort(axes))
        return x.transpose(axes)

    def backward(self, g):
        return g.transpose(self.inverse)


class Expand(Function):
    saves_inputs = False

    def forward(self, x, shape):
        self.shape = x.shape
        try:
            return np.broadcast_to(x, shape)
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {x.shape} to {shape}") from None

    def backward(self, g):
        return unbroadcast(g, self.shape)


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer))
               and not isinstance(p, bool) for p in parts)


class GetItem(Function):
    saves_inputs = False

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        self.basic = _is_basic(index)
        return x[index]

    def backward(self, g):
        out = np.zeros(self.shape, self.dtype)
        if self.basic:
            out[self.index] = g
        else:
            np.add.at(out, self.index, g)  # repeated indices accumulate
        return out


class Cat(Function):
    saves_inputs = False

    def forward(self, *arrays, dim=0):
        for a in arrays[1:]:
            _check_dtypes("cat", arrays[0], a)
        self.dim = dim
        self.sizes = [a.shape[dim] for a in arrays]
        return np.concatenate(arrays, axis=dim)

    def backward(self, g):
        cuts = np.cumsum(self.sizes)[:-1]
        return tuple(np.split(g, cuts, axis=self.dim))


class Stack(Function):
    saves_inputs = False

    def forward(self, *arrays, dim=0):
        for a in arrays[1:]:
            _check_dtypes("stack", arrays[0], a)
        self.dim = dim
        return np.stack(arrays, axis=dim)

    def backward(self, g):
        return tuple(np.moveaxis(g, self.dim, 0))


# ----------------------------------------------------------------------------
# matrix products


class MatMul2D(Function):
    """x (..., K) @ w (K, N): one GEMM on the C core (BLAS or the fallback)."""

    def forward(self, x, w):
        self.x2 = x.reshape(-1, x.shape[-1])  # (M, K)
        self.w, self.lead = w, x.shape[:-1]
        return ops.matmul(self.x2, w).reshape(self.lead + (w.shape[1],))

    def backward(self, g):
        g2 = g.reshape(-1, g.shape[-1])  # (M, N)
        dx = dw = None
        if self.needs_input_grad[0]:
            dx = ops.matmul(g2, self.w, trans_b=True).reshape(self.lead + (self.w.shape[0],))
        if self.needs_input_grad[1]:
            dw = ops.matmul(self.x2, g2, trans_a=True)
        return dx, dw


class MatMul(Function):
    """NumPy matmul with batch broadcasting (batched products have no C GEMM
    of their own; np.matmul loops BLAS over the batch)."""

    def forward(self, a, b):
        _check_dtypes("matmul", a, b)
        self.a, self.b = a, b
        return np.matmul(a, b)

    def backward(self, g):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a   # (1, K)
        b2 = b[:, None] if b.ndim == 1 else b   # (K, 1)
        g2 = g  # restore the dims matmul dropped: b's (last) first, so 1-D @ 1-D works
        if b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        da = np.matmul(g2, np.swapaxes(b2, -1, -2))
        db = np.matmul(np.swapaxes(a2, -1, -2), g2)
        da = unbroadcast(da, a2.shape).reshape(a.shape)
        db = unbroadcast(db, b2.shape).reshape(b.shape)
        return da, db
