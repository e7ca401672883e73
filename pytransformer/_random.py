"""The library's random state: parameter initialisation and dropout seeds.

One NumPy Generator (PCG64) per process, seeded with 0 until
``manual_seed(seed)`` is called, so a run is reproducible by default. Dropout
draws a fresh 64-bit seed from it for every call; the C kernel turns that
seed into a counter-based mask. ``get_rng_state()`` / ``set_rng_state()``
save and restore it exactly (checkpoints store it).

``check_bit_generator_state`` is the one gate a bit generator state passes
before it reaches NumPy (here, in checkpoint.restore_rng and in
checkpoint.load_checkpoint): NumPy's ``bit_generator.state`` setter copies
fields into C structs without range checks, so, for instance, a Philox
``buffer_pos`` outside [0, 4] makes later draws read outside the buffer.
"""
import contextlib
from collections.abc import Mapping

import numpy as np
from pytransformer.validation import int_arg

_generator = np.random.Generator(np.random.PCG64(0))
_shard = None           # (first row, rows) while batch_shard() is active
_GAMMA = 0x9E3779B97F4A7C15   # csrc/rng.c's splitmix64 increment


def manual_seed(seed):
    """Reseed the library's generator (initialisation and dropout)."""
    global _generator
    _generator = np.random.Generator(np.random.PCG64(int_arg("seed", seed, 0)))
    return _generator


def generator():
    """The library's np.random.Generator (shared; draws advance it)."""
    return _generator


def next_seed():
    """A fresh 63-bit seed for one dropout call."""
    return int(_generator.integers(0, 2**63 - 1))


@contextlib.contextmanager
def batch_shard(first, rows):
    """While inside, this process computes rows [first, first + rows) of a
    larger batch (data-parallel training): each dropout call on an input
    whose first axis is those `rows` gets the mask that the same call on the
    whole batch would give to these rows. The mask of element i is a pure
    function of (seed, i) (csrc/rng.c: splitmix64 at seed + (i + 1) * GAMMA),
    so shifting the index by first * (elements per row) is shifting the seed
    by that times GAMMA (mod 2**64): dropout_seed does it."""
    global _shard
    first = int_arg("batch_shard: first", first, 0)
    rows = int_arg("batch_shard: rows", rows, 1)
    before, _shard = _shard, (first, rows)
    try:
        yield
    finally:
        _shard = before


def dropout_seed(shape):
    """The seed of one dropout call on an input of `shape`: next_seed(),
    shifted to this process's rows inside batch_shard() (ValueError when the
    input's first axis is not those rows)."""
    seed = next_seed()
    if _shard is None:
        return seed
    first, rows = _shard
    if len(shape) == 0 or shape[0] != rows:
        raise ValueError(f"dropout: an input of shape {tuple(shape)} inside batch_shard("
                         f"rows={rows}): the batch must be its first axis")
    per = int(np.prod(shape[1:], dtype=np.int64))
    return (seed + first * per * _GAMMA) % 2**64


def get_rng_state():
    """The generator's state as a JSON-able dict."""
    return _generator.bit_generator.state


def set_rng_state(state):
    """Restore a state from get_rng_state(): a PCG64 state dict, checked
    field by field (check_bit_generator_state); ValueError naming the field
    otherwise, and the library's generator is then left as it was."""
    state = check_bit_generator_state(state, "set_rng_state: state")
    if state["bit_generator"] != "PCG64":
        raise ValueError(f"set_rng_state: state['bit_generator']: expected 'PCG64' (the "
                         f"library's generator), got {state['bit_generator']!r}")
    bg = np.random.PCG64()
    bg.state = state
    global _generator
    _generator = np.random.Generator(bg)


# ------------------------------------------------- bit generator states

# A field is ("const", value) for a value checked already, ("int", low, high)
# for a Python int in [low, high], ("array", bits, length) for `length`
# unsigned `bits`-bit integers (a list of Python ints or a 1-d integer
# ndarray), or a dict of fields (exactly those keys).
def _int(low, high):
    return ("int", low, high)


def _array(bits, length):
    return ("array", bits, length)


_BIT = _int(0, 1)
_U32 = _int(0, 2**32 - 1)
_U128 = _int(0, 2**128 - 1)
_PCG = {"state": {"state": _U128, "inc": _U128}, "has_uint32": _BIT, "uinteger": _U32}
# NumPy's own layouts (numpy/random/*.pyx, the `state` property of each).
BIT_GENERATOR_LAYOUTS = {
    "PCG64": _PCG,
    "PCG64DXSM": _PCG,
    "MT19937": {"state": {"key": _array(32, 624), "pos": _int(0, 624)}},
    "Philox": {"state": {"counter": _array(64, 4), "key": _array(64, 2)},
               "buffer": _array(64, 4), "buffer_pos": _int(0, 4),
               "has_uint32": _BIT, "uinteger": _U32},
    "SFC64": {"state": {"state": _array(64, 4)}, "has_uint32": _BIT, "uinteger": _U32},
}


def _describe(v):
    """A short description of a rejected value (never a huge repr)."""
    if type(v) is int:
        return str(v) if v.bit_length() <= 100 else f"an int of {v.bit_length()} bits"
    if isinstance(v, (str, bytes, list, tuple, dict, np.ndarray)) and len(v) > 8:
        return f"a {type(v).__name__} of length {len(v)}"
    return f"{type(v).__name__} {v!r:.60}"


def _check_field(value, spec, where):
    """The validated copy of one field (arrays as C-contiguous unsigned ndarrays)."""
    if isinstance(spec, dict):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a dict, got {_describe(value)}")
        keys = set(value)
        if keys != set(spec):
            missing = sorted(set(spec) - keys)
            extra = sorted(f"{k!r:.40}" for k in keys - set(spec))[:5]
            raise ValueError(f"{where}: expected exactly the keys {sorted(spec)} "
                             f"(missing {missing}, unexpected [{', '.join(extra)}])")
        return {k: _check_field(value[k], s, f"{where}[{k!r}]") for k, s in spec.items()}
    if spec[0] == "const":
        return spec[1]
    if spec[0] == "int":
        low, high = spec[1], spec[2]
        if type(value) is not int or not low <= value <= high:
            bound = "2**128 - 1" if high == 2**128 - 1 else str(high)
            raise ValueError(f"{where}: expected an int in [{low}, {bound}], got "
                             f"{_describe(value)}")
        return value
    bits, length = spec[1], spec[2]
    kind = f"{length} unsigned {bits}-bit ints"
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "ui" or value.shape != (length,):
            raise ValueError(f"{where}: expected {kind}, got an array of dtype "
                             f"{value.dtype} and shape {value.shape}")
        if value.size and (int(value.min()) < 0 or int(value.max()) >= 2**bits):
            raise ValueError(f"{where}: expected {kind}, got values outside [0, 2**{bits})")
        items = value.tolist()
    elif isinstance(value, (list, tuple)):
        if len(value) != length:
            raise ValueError(f"{where}: expected {kind}, got {len(value)} items")
        for i, v in enumerate(value):
            if type(v) is not int or not 0 <= v < 2**bits:
                raise ValueError(f"{where}[{i}]: expected an int in [0, 2**{bits} - 1], got "
                                 f"{_describe(v)}")
        items = value
    else:
        raise ValueError(f"{where}: expected {kind} (a list), got {_describe(value)}")
    return np.array(items, dtype=np.uint32 if bits == 32 else np.uint64)


def check_bit_generator_state(state, where="state"):
    """A validated copy of a NumPy bit generator's `state` dict (as
    ``bit_generator.state`` gives it, or its JSON form with lists for
    arrays), ready to assign to a fresh bit generator of its kind. Every
    field is checked against NumPy's layout for that kind
    (BIT_GENERATOR_LAYOUTS): exactly the expected keys, Python ints (not
    bool, not float) within their C types' ranges, arrays of exactly the
    right length. ValueError naming the field (prefixed with `where`)
    otherwise."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{where}: expected a bit generator state dict, got "
                         f"{_describe(state)}")
    kind = state.get("bit_generator")
    if type(kind) is not str or kind not in BIT_GENERATOR_LAYOUTS:
        raise ValueError(f"{where}['bit_generator']: expected one of "
                         f"{sorted(BIT_GENERATOR_LAYOUTS)}, got {_describe(kind)}")
    spec = dict(BIT_GENERATOR_LAYOUTS[kind], bit_generator=("const", kind))
    return _check_field(state, spec, where)
