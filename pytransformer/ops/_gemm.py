"""GEMM: row-major matrix products through BLAS or the C fallback."""
import numpy as np

from pytransformer import _core
from pytransformer.ops._checks import float_array, out_array


def matmul(a, b, trans_a=False, trans_b=False, out=None, fallback=False):
    """op(a) @ op(b) for 2-D float arrays (op = transpose when trans_*).

    fallback=True uses the built-in C GEMM even when SciPy's BLAS is in use.
    """
    a = float_array("a", a, ndim=2)
    b = float_array("b", b, dtype=a.dtype, ndim=2)
    M = a.shape[1] if trans_a else a.shape[0]
    K = a.shape[0] if trans_a else a.shape[1]
    N = b.shape[0] if trans_b else b.shape[1]
    Kb = b.shape[1] if trans_b else b.shape[0]
    if K != Kb:
        raise ValueError(f"matmul: inner dimensions differ: op(a) is {(M, K)}, op(b) is {(Kb, N)}")
    out = out_array("out", out, (M, N), a.dtype)
    return _core.gemm(out, a, b, trans_a, trans_b, 1.0, 0.0, fallback)
