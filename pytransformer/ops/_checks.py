"""Argument checks shared by the ops: friendly errors before any C runs.

Policy (the same for every op):
  * arrays must be numpy.ndarray; anything else is a TypeError;
  * floating inputs must be float32 or float64, and all floating inputs of
    one call must share a dtype (TypeError otherwise; nothing is cast);
  * non-contiguous inputs are copied to C order (never rejected);
  * index arrays (ids, targets) must have an integer dtype and are checked
    against their range (ValueError naming the first bad value);
  * `out=` arrays must have exactly the right shape and dtype, be
    C-contiguous and writable (else ValueError/TypeError): they are written,
    never reallocated.
"""
import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(name, a, dtype=None, ndim=None, min_ndim=None):
    """Return `a` as a C-contiguous float array, checking type, dtype, ndim."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    elif a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)} (the dtype of the "
                        f"other inputs), got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dims, got shape {a.shape}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dims, got shape {a.shape}")
    return _c_order(a)


def _c_order(a):
    """a itself when C-contiguous, else a C-ordered copy (keeps 0-d arrays 0-d,
    unlike np.ascontiguousarray)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")


def optional_float_array(name, a, dtype, shape=None):
    """None, or a float array of `dtype` and (when given) exactly `shape`."""
    if a is None:
        return None
    a = float_array(name, a, dtype)
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def index_array(name, a, low, high, ignore=None):
    """Return an int64 C-contiguous copy/view of integer array `a`, every value
    in [low, high) or equal to `ignore`."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of integers, got {type(a).__name__}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer dtype, got {a.dtype}")
    a = _c_order(a.astype(np.int64, copy=False))
    if a.size:
        bad = (a < low) | (a >= high)
        if ignore is not None:
            bad &= a != ignore
        if bad.any():
            first = int(a.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])
            allowed = f"[{low}, {high})" + (f" or {ignore}" if ignore is not None else "")
            raise ValueError(f"{name}: value {first} out of range {allowed}")
    return a


def out_array(name, out, shape, dtype):
    """`out` checked for shape/dtype/layout, or a fresh np.empty."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name}: must be C-contiguous and writable")
    return out


def same_shape(name, a, shape):
    """Raise ValueError unless a.shape == shape."""
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")


def rows(a):
    """(N, C): leading dims flattened, last dim kept."""
    C = a.shape[-1]
    N = a.size // C if C else int(np.prod(a.shape[:-1], dtype=np.int64))
    return N, C
