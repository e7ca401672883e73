"""Parameter initialisers (torch.nn.init's names), drawing from the library's
generator (pytransformer.manual_seed). Each fills a Parameter in place."""
import math

import numpy as np

from pytransformer import _random

__all__ = ["constant_", "normal_", "ones_", "uniform_", "xavier_uniform_", "zeros_"]


def _fill(param, values):
    param.data[...] = values.astype(param.dtype, copy=False)
    _changed(param)
    return param


def _changed(param):
    """Count an in-place change in param's version counter (what a packed
    copy of the weight is checked against)."""
    vc = getattr(param, "_vc", None)
    if vc is not None:
        vc[0] += 1


def uniform_(param, a=0.0, b=1.0):
    """Fill `param` with draws from U(a, b); returns param."""
    return _fill(param, _random.generator().uniform(a, b, size=param.shape))


def normal_(param, mean=0.0, std=1.0):
    """Fill `param` with draws from N(mean, std^2); returns param."""
    return _fill(param, _random.generator().normal(mean, std, size=param.shape))


def constant_(param, value):
    """Set every element of `param` to `value`; returns param."""
    param.data[...] = value
    _changed(param)
    return param


def zeros_(param):
    """Fill `param` with zeros; returns param."""
    return constant_(param, 0.0)


def ones_(param):
    """Fill `param` with ones; returns param."""
    return constant_(param, 1.0)


def _fans(shape):
    if len(shape) < 2:
        raise ValueError(f"fan in/out need at least 2 dims, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def xavier_uniform_(param, gain=1.0):
    """Glorot: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(param.shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(param, -a, a)


def linear_default_(weight, bias=None):
    """PyTorch's nn.Linear default: weight and bias ~ U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5))."""
    fan_in = weight.shape[1]
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    uniform_(weight, -bound, bound)
    if bias is not None:
        uniform_(bias, -bound, bound)
