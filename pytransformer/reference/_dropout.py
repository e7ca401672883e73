"""Dropout in NumPy (reference), given the mask; and the mask generator of
csrc/rng.c re-written in NumPy uint64 arithmetic (wrapping mod 2^64)."""
import numpy as np


def dropout(x, mask, p):
    """y = x * mask / (1 - p); p == 1 gives x * 0."""
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return (x * (mask.astype(x.dtype) * x.dtype.type(scale))).astype(x.dtype)


def dropout_backward(grad_out, mask, p):
    """dx = grad_out * mask / (1 - p)."""
    return dropout(grad_out, mask, p)


def dropout_mask(shape, p, seed):
    """keep (uint8, `shape`): splitmix64 output for (seed, i), top 53 bits as
    a uniform in [0, 1), kept when >= p. Bit-identical to pt_dropout_mask."""
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return (u >= p).astype(np.uint8).reshape(shape)
