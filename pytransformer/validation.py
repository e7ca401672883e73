"""Argument checks: the one place that decides what a valid int, real
number, flag, choice, dtype or array argument is, and how a bad one is
reported.

Every public function, constructor and command of the library checks its
scalar arguments with these, so the same mistake gets the same error
everywhere, as one line that names the argument and shows what was given:

    >>> int_arg("beam", 0, low=1)
    Traceback (most recent call last):
    ValueError: beam: expected a positive int, got 0

The rules:

* an *int* is a Python int, a NumPy integer or a 0-d integer array -- never
  a bool, a float (even 3.0) or a string;
* a *real number* is an int, a float, a NumPy real scalar or a 0-d real
  array -- never a bool or a string, never NaN where a range is asked for;
* a *flag* is a bool (or NumPy bool) -- 0 and 1 are not flags;
* a *choice* is one of a fixed set of strings;
* a *dtype* is float32 or float64 (anything np.dtype() accepts that names
  one of them; None gives the default, float32).

A value of the wrong type raises :class:`ArgumentTypeError`, which is both a
TypeError and a ValueError (as NumPy's AxisError is both an IndexError and
a ValueError): callers that treat every bad setting as a ValueError -- the
command line turns it into a usage error -- catch it, and so do those that
look for a TypeError. A value of the right type out of range raises
ValueError.

Array arguments are checked here too (float_checked, index_array,
out_array, no_overlap, ...), and they have one owner: pytransformer.ops,
the NumPy API in front of the compiled kernels, calls these on the arrays
exactly as the caller passed them, before any C runs. The ops are the one
layer that can: they see the caller's names, the N-D shapes they flatten to
the kernels' (rows, channels) and broadcast views before anything is
copied, and only they know which output may be exactly which input (the
in-place cases). The Cython layer below (pytransformer._core) converts and
does not check again: each binding trusts the arrays ops hands it, takes
their data pointers and releases the GIL; and the C kernels check only
values no array check sees (sizes, index ranges, mask strides). Layer
kernels that no op fronts (_core_layer.pxi) check their own arrays with
the Cython helpers there.

The array policy (the same for every op):
  * arrays must be numpy.ndarray; anything else is a TypeError;
  * floating inputs must be float32 or float64, and all floating inputs of
    one call must share a dtype (TypeError otherwise; nothing is cast);
  * non-contiguous (or misaligned) inputs are copied to C order (never
    rejected);
  * index arrays (ids, targets) must have an integer dtype and are checked
    against their range (ValueError naming the first bad value);
  * `out=` arrays must have exactly the right shape and dtype, be
    C-contiguous, aligned and writable (else ValueError/TypeError): they
    are written, never reallocated;
  * scalar arguments: integers (sizes, ids, seeds, steps) must be ints or
    NumPy integers, not bool and not floats (TypeError), and in range
    (ValueError); real hyperparameters must be real numbers -- int, float,
    NumPy real scalars or 0-d real arrays, never strings (TypeError) -- and
    in range (ValueError); option strings must be one of the documented
    choices (ValueError); every message names the argument;
  * a result whose byte size could not even be addressed (sizes like 2**62)
    is a ValueError naming the size arguments, never a MemoryError;
  * order: every type, dtype and shape check of a call comes before any
    value scan (ids, targets) and before any copy (C order, dtype of an
    index array, a boolean mask turned additive). A tiny call with a
    broadcast view of the wrong shape is refused at once; it never reads or
    materialises the view's logical size. Value scans look at each stored
    element once (the stride-0 axes of a broadcast view are not walked);
  * overlap: a buffer an op writes (out=, mean_out, grad_input,
    grad_weight, the AdamW state) must not share memory with another buffer
    it writes nor with an array it reads, else ValueError naming both
    (no_overlap). The arrays compared are the ones the kernel touches: an
    input that was copied to C order is read from the private copy, so an
    `out` over the caller's non-contiguous original is harmless and
    accepted. One exception, per kernel: where the kernel finishes reading
    an element (or a row) before writing it -- relu, gelu, bias_act,
    softmax, log_softmax, layer_norm's out and layer_norm_backward's
    grad_input, dropout -- `out` may be exactly the input (same address,
    shape and dtype) and the op runs in place. A partial or shifted
    overlap is never accepted, and GEMM-based ops (matmul, linear,
    attention) and backward kernels that add into their buffer
    (accumulate=True) never run in place.
    Deciding costs O(1) for C-contiguous buffers (their bounds are exact);
    other layouts go through np.shares_memory with a work bound, and a
    case it cannot decide within it counts as overlapping.
"""
import math
import numbers

import numpy as np

from pytransformer._argtypes import ints_words as _ints

__all__ = ["ArgumentTypeError", "FLOAT_DTYPES", "array_checked", "c_order", "check_alloc",
           "choice_arg", "inplace_checked",
           "dtype_arg", "flag_arg", "float_checked", "float_ndarray", "gradient_out",
           "index_array", "index_checked", "int_arg", "is_int", "names_list", "no_overlap",
           "optional_float_checked", "out_array", "real_arg", "same_shape",
           "stored_elements"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a TypeError that is also a ValueError,
    see the module docstring)."""


def is_int(v):
    """Whether `v` counts as an int here: a Python int or NumPy integer, not
    a bool (for callers whose message says more than int_arg's, such as
    'a word or a position')."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def int_arg(name, v, low=None, high=None):
    """`v` as a Python int, in [low, high] (bounds inclusive; None: open).
    ArgumentTypeError naming `name` for a bool, a float or a non-number;
    ValueError when out of range."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
        v = v.item()
    if not is_int(v):
        raise ArgumentTypeError(f"{name}: expected {_ints(low, high)}, got "
                                f"{type(v).__name__} {_shown(v)}")
    v = int(v)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name}: expected {_ints(low, high)}, got {v}")
    return v


def _reals(low, high, below):
    """The words for the numbers in a range ('a number >= 0', ...)."""
    if low is None and high is None and below is None:
        return "a real number"
    if high is None and below in (None, math.inf):
        finite = "a finite number" if below == math.inf else "a number"
        return finite if low is None else f"{finite} >= {low:g}"
    lo = "(-inf" if low is None else f"[{low:g}"
    hi = f"{below:g})" if below is not None else "inf)" if high is None else f"{high:g}]"
    return f"a number in {lo}, {hi}"


def real_arg(name, v, low=None, high=None, below=None):
    """`v` as a Python float: an int, float, NumPy real scalar or 0-d real
    array (never a bool or a string). With `low`/`high`: in [low, high];
    with `below`: < below (below=math.inf: finite); a range also refuses
    NaN. ArgumentTypeError naming `name` for a non-number; ValueError when
    out of range or too large for a float."""
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
        v = v.item()
    what = _reals(low, high, below)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise ArgumentTypeError(f"{name}: expected {what}, got {type(v).__name__} {_shown(v)}")
    try:
        x = float(v)
    except OverflowError:
        raise ValueError(f"{name}: {v} is out of the float range") from None
    if low is None and high is None and below is None:
        return x
    ok = ((low is None or x >= low) and (high is None or x <= high)
          and (below is None or x < below))
    if not ok:                            # also NaN, which compares False
        raise ValueError(f"{name}: expected {what}, got {x}")
    return x


def flag_arg(name, v):
    """`v` as a bool: True/False (or NumPy bools) only; ArgumentTypeError
    naming `name` otherwise (0/1 and strings are not flags)."""
    if not isinstance(v, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name}: expected a bool, got {type(v).__name__} "
                                f"{_shown(v)}")
    return bool(v)


def choice_arg(name, v, choices):
    """`v` if it is one of the strings `choices`, else ValueError naming
    `name` and the choices (also for non-strings, which `in` could not
    compare safely)."""
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, "
                         f"got {_shown(v)}")
    return v


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def dtype_arg(name, dtype, default=np.float32):
    """The NumPy dtype float32 or float64 that `dtype` names (None: the
    `default`); ArgumentTypeError naming `name` for anything else."""
    try:
        d = np.dtype(default if dtype is None else dtype)
    except TypeError:
        d = None
    if d not in _FLOATS:
        raise ArgumentTypeError(f"{name}: expected float32 or float64, got {_shown(dtype)}")
    return d


def names_list(names, limit=10):
    """A short list of (possibly hostile) names for a message: at most
    `limit` of them, each repr capped at 80 characters, and the count."""
    names = list(names)
    shown = ", ".join(f"{n!r:.80}" for n in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


def _shown(v, limit=60):
    """repr(v), cut to `limit` characters (a hostile argument must not make
    a megabyte-long message)."""
    r = repr(v)
    return r if len(r) <= limit else r[:limit - 3] + "..."


# ------------------------------------------------------------------ arrays

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_ndarray(name, a, dtype, dtype_of):
    """TypeError naming `name` unless `a` is an ndarray of float32/float64
    (dtype None) or exactly of `dtype`, which is the dtype of `dtype_of`."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if dtype is None:
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    elif a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)} (the dtype of "
                        f"{dtype_of}), got {a.dtype}")


def float_checked(name, a, dtype=None, ndim=None, min_ndim=None, shape=None):
    """`a` itself (never copied) after checking type, dtype, ndim and, when
    given, exact `shape`. The op calls c_order on it once every argument of
    the call has been checked (see the order rule above)."""
    float_ndarray(name, a, dtype, "the other inputs")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dims, got shape {a.shape}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dims, got shape {a.shape}")
    if shape is not None:
        same_shape(name, a, shape)
    return a


def c_order(a):
    """a itself when C-contiguous and aligned, else a C-ordered aligned copy
    (keeps 0-d arrays 0-d, unlike np.ascontiguousarray). A misaligned array
    (e.g. a float64 view of a byte buffer at an odd offset) would be
    undefined behaviour in C, where a double* must be 8-byte aligned.
    None (an absent optional argument) stays None."""
    if a is None or (a.flags.c_contiguous and a.flags.aligned):
        return a
    return np.array(a, order="C")


def array_checked(name, a, dtypes, shape=None, dtype_of=None):
    """`a` itself (never copied) after checking that it is an ndarray whose
    dtype is one of `dtypes` and, when given, of exactly `shape`; TypeError
    or ValueError naming `name` (and `dtype_of`, the argument whose dtype
    the last of `dtypes` is, when given). For arrays that are not float
    data: masks (uint8 or bool; bool or the data's float dtype)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    dtypes = [np.dtype(d) for d in dtypes]
    if a.dtype not in dtypes:
        of = f" (the dtype of {dtype_of})" if dtype_of else ""
        raise TypeError(f"{name}: expected dtype {' or '.join(map(str, dtypes))}{of}, "
                        f"got {a.dtype}")
    if shape is not None:
        same_shape(name, a, shape)
    return a


def inplace_checked(name, a, dtype=None, shape=None, dtype_of="the other inputs"):
    """A float array an op updates in place (optimizer state): it must
    already be a writable C-contiguous aligned ndarray of float32/float64
    (dtype None) or `dtype` (the dtype of `dtype_of`), and of `shape` when
    given. It is never copied, since the update of a copy would be silently
    lost: TypeError or ValueError naming `name` instead."""
    float_ndarray(name, a, dtype, dtype_of)
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous (updated in place, so it is "
                         f"never copied)")
    if not a.flags.writeable:
        raise ValueError(f"{name}: must be writable (updated in place)")
    if not a.flags.aligned:
        raise ValueError(f"{name}: must be aligned to its dtype (updated in place, so it is "
                         f"never copied)")
    return a


def optional_float_checked(name, a, dtype, shape=None):
    """None, or `a` (not copied) checked as a float array of `dtype` and
    (when given) exactly `shape`."""
    if a is None:
        return None
    return float_checked(name, a, dtype, shape=shape)


def stored_elements(a):
    """A view of `a` whose stride-0 (broadcast) axes have length 1: it holds
    every distinct element of `a` once and broadcasts back to a.shape. A
    value scan over it costs the stored size, not the logical size."""
    if a.size == 0:
        return a
    return a[tuple(slice(0, 1) if s == 0 else slice(None)
                   for s, n in zip(a.strides, a.shape))]


def index_checked(name, a, shape=None):
    """`a` (not copied) checked as an integer ndarray of exactly `shape`
    when given; index_array scans and converts it afterwards."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of integers, got {type(a).__name__}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer dtype, got {a.dtype}")
    if shape is not None:
        same_shape(name, a, shape)
    return a


def index_array(name, a, low, high, ignore=None):
    """Return an int64 C-contiguous copy/view of integer array `a`, every value
    in [low, high) or equal to `ignore`. The type is checked first (the op
    has checked the shape with index_checked already), then the values over
    the stored elements only (see stored_elements), and only then is `a`
    converted."""
    index_checked(name, a)
    allowed = f"[{low}, {high})" + (f" or {ignore}" if ignore is not None else "")
    s = stored_elements(a)
    if s.size:
        if a.dtype == np.uint64:
            # beyond int64 would wrap to a negative (possibly == ignore) in astype
            over = s > np.iinfo(np.int64).max
            if over.any():
                first = _first_flagged(s, over)
                raise ValueError(f"{name}: value {first} out of range {allowed}")
        s64 = s.astype(np.int64, copy=False)
        bad = (s64 < low) | (s64 >= high)
        if ignore is not None:
            bad &= s64 != ignore
        if bad.any():
            first = _first_flagged(s, bad)
            raise ValueError(f"{name}: value {first} out of range {allowed}")
    return c_order(a.astype(np.int64, copy=False))


def _first_flagged(s, flags):
    """The value of the first element of `s` (C order) flagged in `flags`.
    For s = stored_elements(a) it is also the first flagged element of `a`
    in C order: the broadcast axes only repeat it later."""
    return int(s.reshape(-1)[np.flatnonzero(flags.reshape(-1))[0]])


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
    if not out.flags.c_contiguous or not out.flags.writeable or not out.flags.aligned:
        raise ValueError(f"{name}: must be C-contiguous, aligned and writable")
    return out


def gradient_out(name, out, shape, dtype, accumulate):
    """The buffer a backward kernel writes: `out` checked as out_array does,
    or a fresh np.empty (the kernel stores into it, accumulate=False, so it
    needs no zeroing). accumulate=True adds into `out`, which must then be
    given (ValueError naming `name`)."""
    if accumulate and out is None:
        raise ValueError(f"{name}: accumulate=True adds into {name}, which is None")
    return out_array(name, out, shape, dtype)


# np.exceptions appeared in NumPy 1.25; older NumPy has the class at the top level
_TOO_HARD = getattr(getattr(np, "exceptions", np), "TooHardError")


def _overlap(a, b):
    """True when arrays a and b share at least one byte of memory. Bounds
    decide for C-contiguous arrays (their bytes are one interval); other
    layouts get np.shares_memory with a work bound, an undecided case
    counting as overlapping."""
    if not np.may_share_memory(a, b):
        return False
    if a.flags.c_contiguous and b.flags.c_contiguous:
        return True
    try:
        return bool(np.shares_memory(a, b, max_work=100_000))
    except _TOO_HARD:
        return True


def _same_buffer(a, b):
    """a and b are the same elements: address, dtype, shape and strides."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides)


def no_overlap(written, read=(), in_place=()):
    """ValueError naming both arguments when a buffer the kernel writes
    shares memory with another buffer it writes or an array it reads.

    written, read: sequences of (name, array or None), the arrays exactly as
    the kernel gets them (after any C-order copy); a written buffer the op
    allocated itself is passed as None (the caller gave none: it cannot
    overlap anything). in_place: (written name,
    read name) pairs that may be the very same buffer (see the policy
    above); any other overlap, partial or exact, is refused. Empty arrays
    never overlap."""
    written = [(n, a) for n, a in written if a is not None and a.size]
    if not written:                 # only fresh buffers: nothing can overlap
        return
    read = [(n, a) for n, a in read if isinstance(a, np.ndarray) and a.size]
    for i, (wn, w) in enumerate(written):
        for rn, r in written[i + 1:] + read:
            if _overlap(w, r) and not ((wn, rn) in in_place and _same_buffer(w, r)):
                raise ValueError(f"{wn} and {rn}: must not overlap in memory "
                                 f"({wn} is written by the op)")


def same_shape(name, a, shape):
    """Raise ValueError unless a.shape == shape."""
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")


def check_alloc(name, shape, dtype):
    """ValueError naming `name` when an array of `shape` and `dtype` could
    not even be addressed (its byte size exceeds the largest intp): such a
    size is a malformed argument, not an out-of-memory condition."""
    n, item = 1, np.dtype(dtype).itemsize
    for s in shape:
        n *= int(s)
    big = np.iinfo(np.intp).max
    # NumPy also refuses one dimension whose bytes overflow, even if another is 0
    if any(int(s) * item > big for s in shape) or n * item > big:
        raise ValueError(f"{name}: a result of shape {tuple(int(s) for s in shape)} "
                         f"({np.dtype(dtype)}) is too large to allocate")
