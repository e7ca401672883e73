"""GEMM: row-major matrix products through BLAS or the C fallback."""
import numpy as np

from pytransformer import _core
from pytransformer.validation import c_order, float_checked, no_overlap, out_array


def matmul(a, b, trans_a=False, trans_b=False, out=None, fallback=False):
    """Return op(a) @ op(b), shape (M, N), for 2-D float32/float64 arrays of
    one dtype: op(a) (M, K) is a, or a.T when trans_a; op(b) (K, N) is b, or
    b.T when trans_b. `out`, if given, is a C-contiguous (M, N) array of that
    dtype, written and returned; it must not overlap a or b (ValueError).
    Mismatched inner sizes are a ValueError.

    fallback=True uses the built-in C GEMM even when SciPy's BLAS is in use.
    """
    a = float_checked("a", a, ndim=2)
    b = float_checked("b", b, dtype=a.dtype, ndim=2)
    M = a.shape[1] if trans_a else a.shape[0]
    K = a.shape[0] if trans_a else a.shape[1]
    N = b.shape[0] if trans_b else b.shape[1]
    Kb = b.shape[1] if trans_b else b.shape[0]
    if K != Kb:
        raise ValueError(f"matmul: inner dimensions differ: op(a) is {(M, K)}, op(b) is {(Kb, N)}")
    out = out_array("out", out, (M, N), a.dtype)
    a, b = c_order(a), c_order(b)
    no_overlap((("out", out),), (("a", a), ("b", b)))
    return _core.gemm(out, a, b, trans_a, trans_b, 1.0, 0.0, fallback)
