"""Run-time settings that reach beyond pytransformer's own code, in one place.

Importing pytransformer changes nothing in the process: no environment
variable, no allocator setting, not even the compiled core is loaded. Three
settings make the kernels and training fast on a CPU, and each is applied at
a stated moment:

* **OpenMP wait policy** (when the compiled core is first loaded: the first
  kernel call, ``pytransformer.config()`` or anything that imports
  :mod:`pytransformer.ops`). Our kernels alternate OpenMP regions with BLAS
  calls; with libgomp's default busy-waiting the idle OpenMP threads and the
  BLAS threads take the cores from each other. libgomp reads
  ``OMP_WAIT_POLICY`` once, when it is loaded, so ``OMP_WAIT_POLICY=passive``
  is set for that moment only and removed again: the environment is left as
  it was and child processes do not inherit it. A value you set for
  ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is kept, and a libgomp that
  another library loaded first keeps its own policy.
* **Idle BLAS threads** (when SciPy's BLAS is selected, right after the core
  loads): OpenBLAS's idle threads spin for about 2^28 cycles after each GEMM
  and take the cores from the OpenMP kernels that follow;
  ``OPENBLAS_THREAD_TIMEOUT=4`` makes them sleep almost at once. Set for the
  moment OpenBLAS loads only, never over your value, and without effect when
  ``scipy.linalg`` was imported first.
* **glibc malloc** (opt-in): :func:`tune_for_training` raises glibc's mmap
  and trim thresholds so the large arrays a training step frees are reused
  by the next step instead of being unmapped and page-faulted in again
  (:mod:`pytransformer._malloc` says what it costs: up to 512 MiB of freed
  memory kept by the process). :class:`pytransformer.training.Trainer` and
  ``pytransformer train`` call it. ``PT_MALLOC_TUNING=1`` applies it when
  the core loads, in any program; ``PT_MALLOC_TUNING=0`` forbids it, even
  in training.

:func:`status` (and ``pytransformer info``) reports what is in force.
"""
import importlib
import os
import sys
import threading

__all__ = ["status", "tune_for_training"]

_lock = threading.RLock()
_state = {"core": None, "wait_policy": "core not loaded yet",
          "blas_timeout": "core not loaded yet"}


def _libgomp_loaded():
    """Whether the system libgomp (the one _core links) is already mapped into
    this process (Linux only; False when it cannot tell). Bundled copies such
    as PyTorch's libgomp-<hash>.so are separate runtimes and do not count."""
    try:
        with open("/proc/self/maps") as f:
            return "/libgomp.so" in f.read()
    except OSError:
        return False


def _with_env(name, value, load):
    """Call load() with os.environ[name] = value, then remove it again."""
    os.environ[name] = value
    try:
        return load()
    finally:
        del os.environ[name]


def _load_core():
    """Import pytransformer._core with the thread settings above, select the
    GEMM (SciPy's BLAS unless PT_BLAS=fallback) and, with
    PT_MALLOC_TUNING=1, tune malloc; returns the module. Called once, by
    the package's attribute hook, the first time anything asks for _core."""
    with _lock:
        if _state["core"] is not None:
            return _state["core"]
        if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
            policy = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                              if k in os.environ)
            core = importlib.import_module("pytransformer._core")
        elif _libgomp_loaded():
            policy = "runtime default (libgomp was loaded before pytransformer's core)"
            core = importlib.import_module("pytransformer._core")
        else:
            core = _with_env("OMP_WAIT_POLICY", "passive",
                             lambda: importlib.import_module("pytransformer._core"))
            policy = "passive (set by pytransformer while libgomp loaded)"
        _state["wait_policy"] = policy if core.has_openmp() else "n/a (built without OpenMP)"
        want_blas = os.environ.get("PT_BLAS", "").lower() not in ("fallback", "none", "0")
        scipy_loaded = any(m == "scipy.linalg" or m.startswith("scipy.linalg.")
                           for m in list(sys.modules))
        if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
            timeout = "OPENBLAS_THREAD_TIMEOUT=" + os.environ["OPENBLAS_THREAD_TIMEOUT"]
            core.use_scipy_blas(want_blas)
        elif scipy_loaded or not want_blas:
            timeout = "runtime default (scipy.linalg was imported before pytransformer)"
            core.use_scipy_blas(want_blas)
        else:
            _with_env("OPENBLAS_THREAD_TIMEOUT", "4", lambda: core.use_scipy_blas(True))
            timeout = "4 (set by pytransformer: idle BLAS threads sleep at once)"
        _state["blas_timeout"] = timeout if core.blas_available() else "n/a (no BLAS)"
        _state["core"] = core
        if os.environ.get("PT_MALLOC_TUNING") == "1":
            from pytransformer import _malloc
            _malloc.tune()
        return core


def tune_for_training():
    """Turn on the settings for training loops: glibc malloc keeps freed
    large blocks for reuse (see :mod:`pytransformer._malloc`), unless
    PT_MALLOC_TUNING=0. Idempotent; returns :func:`status`. Trainer and
    `pytransformer train` call it; call it yourself in a training loop of
    your own."""
    from pytransformer import _malloc

    if os.environ.get("PT_MALLOC_TUNING") == "0":
        _malloc.status = "off (PT_MALLOC_TUNING=0)"
    else:
        _malloc.tune()
    return status()


def status():
    """What is in force, as a dict of one-line strings: "omp_wait_policy",
    "blas_thread_timeout" (both "core not loaded yet" until the first
    kernel runs) and "malloc_tuning"."""
    malloc = sys.modules.get("pytransformer._malloc")
    return {"omp_wait_policy": _state["wait_policy"],
            "blas_thread_timeout": _state["blas_timeout"],
            "malloc_tuning": malloc.status if malloc is not None else
            "not applied (glibc defaults; training turns it on)"}
