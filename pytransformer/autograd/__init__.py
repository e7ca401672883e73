"""A minimal reverse-mode autograd over NumPy arrays and the C kernels.

    from pytransformer.autograd import tensor, no_grad
    x = tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum(); y.backward(); x.grad   # [[2., 4.]]

Modules: :mod:`.tensor` (Tensor, Parameter, Function, the backward pass,
grad mode), :mod:`.basic` (arithmetic, reductions, shapes, indexing),
:mod:`.kernels` (Functions over :mod:`pytransformer.ops`), :mod:`.gradcheck`.
"""
from pytransformer.autograd import basic, kernels
from pytransformer.autograd.gradcheck import GradcheckError, gradcheck
from pytransformer.autograd.tensor import (Function, Parameter, Tensor, backward, enable_grad,
                                           is_grad_enabled, matmul, no_grad, tensor)


def cat(tensors, dim=0):
    """Concatenate tensors along `dim` (gradient split back)."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    return basic.Cat.apply(*tensors, dim=dim)


def stack(tensors, dim=0):
    """Stack same-shape tensors along a new `dim`."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    return basic.Stack.apply(*tensors, dim=dim)


def zeros(*shape, dtype=None, requires_grad=False):
    """A tensor of zeros (float32 unless dtype is given)."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    import numpy as np
    return Tensor(np.zeros(shape, dtype=dtype or np.float32), requires_grad=requires_grad)


def ones(*shape, dtype=None, requires_grad=False):
    """A tensor of ones (float32 unless dtype is given)."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    import numpy as np
    return Tensor(np.ones(shape, dtype=dtype or np.float32), requires_grad=requires_grad)


__all__ = ["Function", "GradcheckError", "Parameter", "Tensor", "backward", "cat",
           "enable_grad", "gradcheck", "is_grad_enabled", "matmul", "no_grad", "ones",
           "stack", "tensor", "zeros"]
