"""Shared test helpers: tolerances by dtype, array strategies, finite
differences, running the kernels at a given ISA level."""
import contextlib

import numpy as np
from hypothesis import strategies as st

from pytransformer.autograd.gradcheck import numeric_grad  # noqa: F401  (re-exported for the tests)

# Forward and gradient tolerances (rtol, atol), chosen by dtype. float32
# kernels accumulate in a different order than NumPy, so compare with a
# relative tolerance plus an absolute floor for values near zero.
FWD_TOL = {np.float32: (1e-5, 1e-5), np.float64: (1e-12, 1e-12)}
GRAD_TOL = {np.float32: (1e-4, 1e-4), np.float64: (1e-10, 1e-10)}

DTYPES = [np.float32, np.float64]


def assert_close(actual, expected, dtype, grad=False, scale=1.0, err_msg=""):
    """assert_allclose with the dtype's forward (or gradient) tolerance;
    `scale` widens atol for quantities whose magnitude grows with size."""
    rtol, atol = (GRAD_TOL if grad else FWD_TOL)[np.dtype(dtype).type]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=err_msg)


def rand(rng, shape, dtype, scale=1.0):
    """Standard-normal array of `shape` and `dtype`."""
    return (rng.standard_normal(shape) * scale).astype(dtype)


# Sizes including 1 and sizes that are not multiples of the SIMD width.
dims = st.sampled_from([1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 33, 64, 65])
small_dims = st.sampled_from([1, 2, 3, 5, 7, 8, 9])
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**32 - 1)




@contextlib.contextmanager
def use_isa(level):
    """Run the kernels at ISA level `level` ("portable", "avx2", "avx512")
    inside the block: PT_ISA is set and the dispatch table re-read (it is
    otherwise read once, at import), then both are restored. A level the
    CPU lacks leaves the CPU's level (callers skip or check
    _core.isa_levels_supported())."""
    from pytransformer._dispatch_env import dispatch_env

    with dispatch_env(PT_ISA=level, PT_PORTABLE=None):
        yield
