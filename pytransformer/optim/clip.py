"""Gradient clipping by the global norm (torch.nn.utils.clip_grad_norm_)."""
import math

import numpy as np

from pytransformer.validation import real_arg as _real_arg
from pytransformer.optim.optimizer import _FLOAT_DTYPES, _is_param_like

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
