"""pytransformer: a Transformer you can read, train and look inside, fast on a CPU.

The compiled core (csrc/ + Cython) is reached through :mod:`pytransformer.ops`
(NumPy arrays in, NumPy arrays out); :mod:`pytransformer.reference` holds the
same ops in plain NumPy. :mod:`pytransformer.autograd` (Tensor, backward) and
:mod:`pytransformer.nn` (PyTorch-shaped modules, the Transformer) build on them.
"""
import importlib as _importlib
import importlib.util as _importlib_util
import os as _os

__version__ = "0.1.0"

# Importing the package loads nothing heavy and changes nothing in the
# process (the command line's --help and --version need no NumPy): the
# compiled core, NumPy and the submodules load on first use, through
# __getattr__ below. The core is loaded by pytransformer.runtime, which
# applies the thread settings that must be in place when libgomp and
# OpenBLAS load.
if _importlib_util.find_spec("pytransformer._core") is None:
    _here = _os.path.dirname(_os.path.abspath(__file__))
    raise ImportError(
        f"pytransformer: the compiled core (_core) is not built in {_here}; run "
        f"`pip install -e .` in {_os.path.dirname(_here)}, or run from outside the "
        f"source tree to use an installed pytransformer")

_SUBMODULES = ("autograd", "bench", "checkpoint", "cli", "data", "decode", "distributed",
               "explain", "export", "nn", "ops", "optim", "plot", "pretrained", "reference",
               "runtime", "safetensors", "training", "translator", "validation")
_NAMES = {"Parameter": "autograd", "Tensor": "autograd", "cat": "autograd",
          "enable_grad": "autograd", "no_grad": "autograd", "ones": "autograd",
          "stack": "autograd", "tensor": "autograd", "zeros": "autograd",
          "get_rng_state": "_random", "manual_seed": "_random", "set_rng_state": "_random"}

__all__ = ["Parameter", "Tensor", "autograd", "cat", "config", "enable_grad",
           "get_num_threads", "get_rng_state", "manual_seed", "nn", "no_grad", "ones", "ops", "optim",
           "reference", "runtime", "set_num_threads", "set_rng_state", "stack", "tensor", "use_blas",
           "zeros", "__version__"]


def __getattr__(name):
    """Load the core, a submodule or a re-exported name on first use."""
    if name == "_core":
        from pytransformer import runtime
        return runtime._load_core()
    if name in _SUBMODULES or name == "_blas":
        return _importlib.import_module("pytransformer." + name)
    if name in _NAMES:
        value = getattr(_importlib.import_module("pytransformer." + _NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pytransformer' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))


def use_blas(enable=True):
    """Route GEMM through SciPy's BLAS (enable=True, when SciPy is installed)
    or through the built-in C fallback (enable=False). Returns whether a BLAS
    is now in use."""
    from pytransformer import _core
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
    from pytransformer import _core
    _core.set_num_threads(n)
    if _core.blas_available():
        _blas_threadpool_limit(n)


def get_num_threads():
    """Threads the kernels use: set_num_threads(), else OMP_NUM_THREADS, else
    the number of cores."""
    from pytransformer import _core
    return _core.get_num_threads()


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
    from pytransformer import _core, runtime

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
        **runtime.status(),
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
