"""pytransformer: a Transformer you can read, train and look inside, fast on a CPU.

The compiled core (csrc/ + Cython) is reached through :mod:`pytransformer.ops`
(NumPy arrays in, NumPy arrays out); :mod:`pytransformer.reference` holds the
same ops in plain NumPy. :mod:`pytransformer.autograd` (Tensor, backward) and
:mod:`pytransformer.nn` (PyTorch-shaped modules, the Transformer) build on them.
"""
import os as _os
import sys as _sys


def _libgomp_loaded():
    """Whether the system libgomp (the one _core links) is already mapped into
    this process (Linux only; False when it cannot tell). Bundled copies such
    as PyTorch's libgomp-<hash>.so are separate runtimes and do not count."""
    try:
        with open("/proc/self/maps") as f:
            return "/libgomp.so" in f.read()
    except OSError:
        return False


# OpenMP threads that busy-wait after a parallel region take the cores away
# from the BLAS threads of the GEMM that follows (and the reverse), and our
# kernels alternate between the two all the time: a 1+1-layer training step
# measured 165 ms with libgomp's default spinning and 12 ms with
# OMP_WAIT_POLICY=passive (2 cores; bench/threads.py). libgomp reads the
# variable once, when it is loaded -- by _core, just below -- so it is set
# for that moment only and restored afterwards (child processes do not
# inherit it). A value the user set is left alone, as is a libgomp that
# another library loaded first (config() reports which case applies).
_WAIT_POLICY_SET_BY_US = False
if ("OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ
        and not _libgomp_loaded()):
    _os.environ["OMP_WAIT_POLICY"] = "passive"
    _WAIT_POLICY_SET_BY_US = True
try:
    from pytransformer import _core, _blas  # noqa: E402
finally:
    if _WAIT_POLICY_SET_BY_US:
        del _os.environ["OMP_WAIT_POLICY"]
from pytransformer import _malloc  # noqa: E402
from pytransformer import ops, reference  # noqa: E402  (public submodules)
from pytransformer import autograd, nn, optim  # noqa: E402
from pytransformer._random import get_rng_state, manual_seed, set_rng_state  # noqa: E402
from pytransformer.autograd import (Parameter, Tensor, cat, enable_grad, no_grad,  # noqa: E402
                                    ones, stack, tensor, zeros)

__version__ = "0.1.0"

_malloc.tune()

__all__ = ["Parameter", "Tensor", "autograd", "cat", "config", "enable_grad",
           "get_num_threads", "get_rng_state", "manual_seed", "nn", "no_grad", "ones", "ops", "optim",
           "reference", "set_num_threads", "set_rng_state", "stack", "tensor", "use_blas",
           "zeros", "__version__"]


def use_blas(enable=True):
    """Route GEMM through SciPy's BLAS (enable=True, when SciPy is installed)
    or through the built-in C fallback (enable=False). Returns whether a BLAS
    is now in use."""
    return _core.use_scipy_blas(bool(enable))


def _blas_threadpool_limit(n):
    """Hold BLAS threads to n so BLAS and OpenMP never oversubscribe the cores.
    Needs threadpoolctl; silently does nothing without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")


def set_num_threads(n):
    """Set the threads every kernel uses (OpenMP) and, with threadpoolctl
    installed, the BLAS thread count too, so the two never exceed n."""
    _core.set_num_threads(n)
    if _core.blas_available():
        _blas_threadpool_limit(n)


def get_num_threads():
    """Threads the kernels use: set_num_threads(), else OMP_NUM_THREADS, else
    the number of cores."""
    return _core.get_num_threads()


def _omp_wait_policy():
    if _WAIT_POLICY_SET_BY_US:
        return "passive (set by pytransformer)"
    if "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ:
        return ("OMP_WAIT_POLICY=" + _os.environ.get("OMP_WAIT_POLICY", "")
                + " GOMP_SPINCOUNT=" + _os.environ.get("GOMP_SPINCOUNT", "")).strip()
    return "runtime default (libgomp was loaded before pytransformer)"


def config(peak=False):
    """The build and run-time configuration, as a dict (what `pytransformer
    info` prints): version, compiler and flags, OpenMP, threads, SIMD flags,
    the ISA level the kernels run at and why ("isa", "isa_reason": the CPU,
    or PT_ISA / PT_PORTABLE), the path each kernel family takes ("kernels"
    for float32, "kernels_float64"), the BLAS in use and, with
    threadpoolctl, its kernel (coretype). With peak=True, also
    "fma_peak_gflops": the measured FMA-chain peak of every SIMD level the
    CPU runs at the current thread count (about 0.1 s each), and
    "fma_peak_isa": the level whose peak the benchmarks use."""
    import platform

    flags, compiler = _core.build_flags()
    simd = [f for f in ("avx512f", "avx2", "fma", "avx", "sse4_2", "neon") if _cpu_has(f)]
    isa = _core.isa_info()
    info = {
        "version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "compiler": compiler,
        "cflags": flags,
        "openmp": _core.has_openmp(),
        "num_threads": get_num_threads(),
        "num_procs": _core.num_procs(),
        "omp_wait_policy": _omp_wait_policy(),
        "blas_thread_timeout": _blas_thread_timeout(),
        "malloc_tuning": _malloc.status,
        "cpu_simd": simd,
        "build_simd": _build_simd(flags, isa),
        "isa": isa["isa"],
        "isa_reason": isa["isa_reason"],
        "cpu_isa": isa["cpu_isa"],
        "kernels": isa["kernels"],
        "kernels_float64": isa["kernels_float64"],
        "blas": "scipy.linalg.cython_blas" if _core.blas_available() else "built-in C fallback",
        "blas_libraries": [],
    }
    try:
        from threadpoolctl import threadpool_info
        for lib in threadpool_info():
            entry = {k: lib.get(k) for k in ("user_api", "internal_api", "version",
                                             "num_threads", "architecture", "filepath")}
            # SciPy's wheels keep their OpenBLAS in scipy.libs/: that is the
            # library behind scipy.linalg.cython_blas, hence our GEMM.
            entry["pytransformer_gemm"] = bool(
                _core.blas_available() and lib.get("user_api") == "blas"
                and "scipy" in _os.path.basename(_os.path.dirname(lib.get("filepath") or "")))
            info["blas_libraries"].append(entry)
    except ImportError:
        info["blas_libraries"] = "threadpoolctl not installed"
    if peak:
        levels = [lv for lv in _core.isa_levels_supported() if lv != "portable"]
        info["fma_peak_gflops"] = {lv: round(_core.fma_peak_gflops(get_num_threads(), 0.1, isa=lv), 1)
                                   for lv in levels}
        info["fma_peak_isa"] = isa["isa"]
    return info


def _build_simd(flags, isa):
    """How the C code uses SIMD: -march=native, or the baseline plus the
    AVX2+FMA (and, where written, AVX-512) kernels compiled in beside it,
    one path per kernel family chosen at import by ISA level."""
    if "-march=native" in flags:
        return "native (-march=native)"
    return f"baseline + per-family kernels for the ISA level in use ({isa['isa']})"


def _cpu_has(flag):
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return flag in line.split()
    except OSError:
        pass
    return False


# OpenBLAS's idle threads spin for about 2^28 cycles after each GEMM before
# they sleep, and in that time they take the cores from the OpenMP kernels
# (GELU, attention, layer norm) that run between our GEMMs. With
# OPENBLAS_THREAD_TIMEOUT=4 they sleep almost at once: all-MiniLM-L6-v2 at 2
# threads, 64 x 128 tokens, 45.3-46.8 -> 50.2-53.1 sentences/s (bench.embed,
# alternating runs). OpenBLAS reads the variable when it is loaded -- SciPy's,
# behind our GEMM, by use_blas just below -- so, as for OMP_WAIT_POLICY, it is
# set for that moment only, never over a user's value, and config() says
# whether it applied (not when scipy.linalg was imported first).
_BLAS_TIMEOUT_SET_BY_US = False
_scipy_blas_loaded = any(m == "scipy.linalg" or m.startswith("scipy.linalg.")
                         for m in list(_sys.modules))
if "OPENBLAS_THREAD_TIMEOUT" not in _os.environ and not _scipy_blas_loaded:
    _os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    _BLAS_TIMEOUT_SET_BY_US = True
try:
    # PT_BLAS=fallback selects the C GEMM even when SciPy is installed.
    use_blas(_os.environ.get("PT_BLAS", "").lower() not in ("fallback", "none", "0"))
finally:
    if _BLAS_TIMEOUT_SET_BY_US:
        del _os.environ["OPENBLAS_THREAD_TIMEOUT"]


def _blas_thread_timeout():
    if not _core.blas_available():
        return "n/a (no BLAS)"
    if _BLAS_TIMEOUT_SET_BY_US:
        return "4 (set by pytransformer: idle BLAS threads sleep at once)"
    if "OPENBLAS_THREAD_TIMEOUT" in _os.environ:
        return "OPENBLAS_THREAD_TIMEOUT=" + _os.environ["OPENBLAS_THREAD_TIMEOUT"]
    return "runtime default (scipy.linalg was imported before pytransformer)"
