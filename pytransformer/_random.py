"""The library's random state: parameter initialisation and dropout seeds.

One NumPy Generator (PCG64) per process, seeded with 0 until
``manual_seed(seed)`` is called, so a run is reproducible by default. Dropout
draws a fresh 64-bit seed from it for every call; the C kernel turns that
seed into a counter-based mask. ``get_rng_state()`` / ``set_rng_state()``
save and restore it exactly (checkpoints store it).
"""
import numpy as np

_generator = np.random.Generator(np.random.PCG64(0))


def manual_seed(seed):
    """Reseed the library's generator (initialisation and dropout)."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    _generator = np.random.Generator(np.random.PCG64(int(seed)))
    return _generator


def generator():
    """The library's np.random.Generator (shared; draws advance it)."""
    return _generator


def next_seed():
    """A fresh 63-bit seed for one dropout call."""
    return int(_generator.integers(0, 2**63 - 1))


def get_rng_state():
    """The generator's state as a JSON-able dict."""
    return _generator.bit_generator.state


def set_rng_state(state):
    """Restore a state from get_rng_state()."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError("set_rng_state: expected a PCG64 state dict from get_rng_state()")
    bg = np.random.PCG64()
    bg.state = state
    global _generator
    _generator = np.random.Generator(bg)
