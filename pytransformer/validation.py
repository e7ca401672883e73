"""Argument checks: the one place that decides what a valid int, real
number, flag, choice or dtype argument is, and how a bad one is reported.

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
ValueError. Array arguments of the compiled ops are checked in
pytransformer.ops._checks, which builds on these.
"""
import math
import numbers

import numpy as np

__all__ = ["ArgumentTypeError", "choice_arg", "dtype_arg", "flag_arg", "int_arg", "is_int",
           "names_list", "real_arg"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a TypeError that is also a ValueError,
    see the module docstring)."""


def _ints(low, high):
    """The words for the ints in [low, high] ('a positive int', ...)."""
    if high is None:
        return {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(
            low, f"an int >= {low}")
    if low is None:
        return f"an int <= {high}"
    return f"an int in [{low}, {high}]"


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
