# cython: language_level=3
"""Read sgemm/dgemm out of scipy.linalg.cython_blas, without linking to SciPy.

scipy.linalg.cython_blas exports every BLAS routine as a PyCapsule in its
``__pyx_capi__`` table (the same functions scikit-learn's _cython_blas.pyx
cimports). Taking the pointers at run time means SciPy is needed neither to
build pytransformer nor to run it: without SciPy the C core uses its own
fallback GEMM.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_GetName
from libc.stdint cimport uintptr_t


def scipy_gemm_pointers():
    """Return (sgemm_address, dgemm_address) as ints, or None without SciPy."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return None
    capi = cython_blas.__pyx_capi__
    out = []
    for name in ("sgemm", "dgemm"):
        cap = capi[name]
        out.append(<uintptr_t>PyCapsule_GetPointer(cap, PyCapsule_GetName(cap)))
    return tuple(out)
