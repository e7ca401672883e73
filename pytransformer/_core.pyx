# cython: language_level=3, boundscheck=False, wraparound=False
"""The only Cython module that calls the C core (csrc/).

Every function here takes NumPy arrays, including the outputs, which the
caller allocates. The kernel bindings convert, they do not check: their one
caller, pytransformer.ops, has already checked every array (type, dtype,
shape, C order and alignment, writable outputs, no overlap) with
pytransformer.validation, and a binding takes the arrays' data pointers as
they are, releases the GIL, calls the kernel, and turns a C status into an
exception through check_status(). What no array check sees stays checked
below: the C kernels refuse negative sizes and out-of-range ids and
targets, and the attention bindings keep mask strides inside the mask.
The whole-layer bindings (_core_layer.pxi), which no op fronts, check
their own arrays with _check. Backward bindings take `accumulate` (default True:
add into the gradient outputs; False: store, the outputs not read), as the
C kernels do (csrc/pt_kernels.h).

The functions are split by op family into _core_*.pxi files (textually
included below), mirroring csrc/*.c.
"""
cimport numpy as cnp
import numpy as np
from libc.stdint cimport int64_t, uint8_t, uint64_t, uintptr_t
from pytransformer._pt cimport *

cnp.import_array()

# The ISA level and the dispatch table are decided once, here, before any
# kernel runs (csrc/dispatch.c: the CPU, PT_ISA, PT_PORTABLE).
pt_isa_init()

cdef extern from *:
    """
    #ifndef PT_BUILD_FLAGS
    #define PT_BUILD_FLAGS "unknown"
    #endif
    #ifndef PT_BUILD_COMPILER
    #define PT_BUILD_COMPILER "unknown"
    #endif
    static const char *pt_build_flags = PT_BUILD_FLAGS;
    static const char *pt_build_compiler = PT_BUILD_COMPILER;
    """
    const char *pt_build_flags
    const char *pt_build_compiler


class KernelError(RuntimeError):
    """A C kernel returned an error status the checks did not foresee."""


cdef int check_status(int status) except -1:
    """Raise for a non-zero C status; the one place errors cross from C."""
    if status == PT_OK:
        return 0
    msg = pt_strerror(status).decode()
    if status == PT_ENOMEM:
        raise MemoryError(msg)
    if status == PT_EINVAL:
        raise ValueError(msg)
    raise KernelError(msg)


cdef inline void *_ptr(object a):
    """Data pointer of a checked array, NULL for None."""
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


def _check(str name, object a, object dtype, tuple shape,
           bint out=False, bint optional=False):
    """Check one array argument of a layer binding; returns it."""
    if a is None:
        if optional:
            return None
        raise TypeError(f"{name}: expected a numpy.ndarray, got None")
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous")
    if not a.flags.aligned:
        raise ValueError(f"{name}: must be aligned to its dtype ({a.dtype.itemsize} bytes)")
    if out and not a.flags.writeable:
        raise ValueError(f"{name}: output array is read-only")
    return a


def _apart(str wname, object w, str rname, object r):
    """ValueError naming both unless the checked (C-contiguous) arrays w
    and r of a layer binding occupy disjoint bytes; None or empty arrays
    always pass."""
    if w is None or r is None or w.size == 0 or r.size == 0:
        return
    cdef uintptr_t w0 = <uintptr_t>_ptr(w), r0 = <uintptr_t>_ptr(r)
    cdef uintptr_t w1 = w0 + <uintptr_t>w.nbytes, r1 = r0 + <uintptr_t>r.nbytes
    if w0 < r1 and r0 < w1:
        raise ValueError(f"{wname} and {rname}: must not overlap in memory "
                         f"({wname} is written by the kernel)")


cdef object _float_dtype(str name, object a):
    """The dtype of a float32/float64 array of a layer binding, else
    TypeError naming `name`."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float32 and a.dtype != np.float64:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {a.dtype}")
    return a.dtype


# ------------------------------------------------------------------ build

def has_openmp():
    """True when the core was compiled with OpenMP."""
    return bool(pt_has_openmp())


def cpu_avx2_fma():
    """True when the hand-written SIMD kernels run: the ISA level in use is
    avx2 or above (see isa_info)."""
    return pt_isa_level() >= PT_ISA_AVX2


ISA_LEVELS = ("portable", "avx2", "avx512")


def isa_info():
    """The ISA level in use and why, the CPU's level, and the path each
    kernel family takes for float32 ("kernels") and float64
    ("kernels_float64"), from the dispatch table (csrc/dispatch.c)."""
    cdef int f
    kernels, kernels64 = {}, {}
    for f in range(pt_isa_family_count()):
        name = pt_isa_family_name(f).decode()
        kernels[name] = pt_isa_family_path(f, 32).decode()
        kernels64[name] = pt_isa_family_path(f, 64).decode()
    return {"isa": pt_isa_name(pt_isa_level()).decode(),
            "isa_reason": pt_isa_reason().decode(),
            "cpu_isa": pt_isa_name(pt_isa_cpu_level()).decode(),
            "kernels": kernels, "kernels_float64": kernels64}


def _reinit_isa():
    """Re-read PT_ISA / PT_PORTABLE and rewrite the dispatch table; returns
    the level's name. For tests only, and never while a kernel runs in
    another thread (the table is otherwise written once, at import)."""
    return pt_isa_name(pt_isa_init()).decode()


def isa_levels_supported():
    """The ISA levels this CPU (and OS) run, lowest first."""
    return ISA_LEVELS[:pt_isa_cpu_level() + 1]


def fma_peak_gflops(int threads=1, double seconds=0.2, isa=None):
    """Measured fp32 multiply-add throughput in GFLOP/s (an FMA counts 2) of
    `threads` threads running register-only FMA chains for about `seconds`,
    with the vectors of ISA level `isa` ("portable", "avx2", "avx512"; None:
    the level the kernels run at): what the CPU delivers now, turbo clocks
    included (csrc/peak.c). The benchmarks' "% peak" is relative to it, at
    the level in use."""
    if threads < 1 or threads > PT_MAX_THREADS:
        raise ValueError(f"threads: expected 1..{PT_MAX_THREADS}, got {threads}")
    if not seconds > 0:
        raise ValueError(f"seconds: expected > 0, got {seconds}")
    cdef int level = pt_isa_level()
    if isa is not None:
        if isa not in ISA_LEVELS:
            raise ValueError(f"isa: expected one of {', '.join(ISA_LEVELS)}, got {isa!r}")
        level = ISA_LEVELS.index(isa)
        if level > pt_isa_cpu_level():
            raise ValueError(f"isa: this CPU runs {', '.join(isa_levels_supported())}, not {isa}")
    import time
    cdef int64_t iters = 1000
    cdef int nth = threads
    cdef double rate = 0, dt = 0
    while True:
        t0 = time.perf_counter()
        with nogil:
            rate = pt_fma_peak_flops_isa(level, nth, iters)
        dt = time.perf_counter() - t0
        if dt >= seconds / 4 or iters >= (<int64_t>1 << 40):
            break
        iters *= 4
    iters = max(<int64_t>1, <int64_t>(iters * seconds / dt))
    with nogil:
        rate = pt_fma_peak_flops_isa(level, nth, iters)
    return rate / 1e9


def build_flags():
    """The C flags and compiler the core was built with."""
    return pt_build_flags.decode(), pt_build_compiler.decode()


def set_num_threads(object n):
    """Set the number of OpenMP threads every kernel uses (1 <= n <= 1024)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: number of threads must be an int, got {type(n).__name__}")
    if not 1 <= n <= PT_MAX_THREADS:
        raise ValueError(f"n: number of threads must be in [1, {PT_MAX_THREADS}], got {n}")
    pt_set_num_threads(<int>n)


def get_num_threads():
    """The number of OpenMP threads the kernels use."""
    return pt_get_num_threads()


def num_procs():
    """Processors OpenMP sees (1 without OpenMP)."""
    return pt_num_procs()


def use_scipy_blas(bint enable):
    """Route GEMM through SciPy's sgemm/dgemm (enable, when SciPy is installed)
    or the C fallback. The pointers come only from pytransformer._blas, never
    from the caller, so no bogus address can be installed. Returns whether a
    BLAS is now in use."""
    from pytransformer import _blas
    ptrs = _blas.scipy_gemm_pointers() if enable else None
    if ptrs is None:
        pt_set_blas(NULL, NULL)
        return False
    cdef uintptr_t s = ptrs[0], d = ptrs[1]
    pt_set_blas(<pt_sgemm_fn>s, <pt_dgemm_fn>d)
    return bool(pt_blas_available())


def blas_available():
    """True when GEMM goes through a BLAS (SciPy's) rather than the fallback."""
    return bool(pt_blas_available())


include "_core_gemm.pxi"
include "_core_layernorm.pxi"
include "_core_linear.pxi"
include "_core_activation.pxi"
include "_core_softmax.pxi"
include "_core_embedding.pxi"
include "_core_dropout.pxi"
include "_core_optim.pxi"
include "_core_attention.pxi"
include "_core_layer.pxi"
