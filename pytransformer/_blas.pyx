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


def openblas_threads_hook():
    """Return the address of openblas_set_threads_callback_function in the
    library behind SciPy's BLAS, as an int, or None: without SciPy, or when
    its BLAS is not an OpenBLAS that has the hook (0.3.27 on). The name is
    looked up through cython_blas's own module, whose dependencies include
    the BLAS it calls, so it finds exactly that library, whatever its file
    is called."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return None
    import ctypes
    try:
        fn = ctypes.CDLL(cython_blas.__file__).openblas_set_threads_callback_function
    except (OSError, AttributeError):
        return None
    return ctypes.cast(fn, ctypes.c_void_p).value
