"""Run-time settings that reach beyond pytransformer's own code, in one place.

Importing pytransformer changes nothing in the process: no environment
variable, no allocator setting, not even the compiled core is loaded. These
settings make the kernels and training fast on a CPU, and each is applied at
a stated moment:

* **One pool of threads** (when the compiled core is first loaded: the
  first kernel call, ``pytransformer.config()`` or anything that imports
  :mod:`pytransformer.ops`). SciPy's BLAS is loaded first; when it is an
  OpenBLAS with a threads callback (0.3.27 on, as in SciPy's wheels),
  its threaded calls are handed to the core, which runs them on the
  calling thread's OpenMP team (``csrc/blas.c``): the kernels and the
  GEMMs between them then use the same threads, and OpenBLAS's own pool
  stays asleep. This holds for every threaded call of that OpenBLAS in
  the process, ``scipy.linalg``'s too (their jobs run one call at a
  time, as they do in OpenBLAS's pool); ``PT_BLAS_THREADS=own`` keeps
  OpenBLAS's pool.
* **OpenMP wait policy** (at the same moment). libgomp reads its policy
  once, when it is loaded, so the variable is set for that moment only
  and removed again: the environment is left as it was and child
  processes do not inherit it. With one pool (the threads shared as
  above, or no BLAS: the C fallback GEMM runs on OpenMP),
  ``GOMP_SPINCOUNT=2000``: an idle thread spins about 40 us before it
  sleeps, so back-to-back regions (the kernels of a forward) find their
  threads awake instead of paying a futex wake-up each (about 100 us on a
  VM, as much as a second thread saves on a 17-row projection), and no
  other pool needs the cores it spins on. Kept that short because a
  spinning thread wastes its core when the machine is oversubscribed:
  waits of ~0.2 ms made a loaded 2-core machine several times slower.
  With a BLAS whose threads cannot be shared, ``OMP_WAIT_POLICY=passive``:
  spinning OpenMP threads and the BLAS's threads would take the cores
  from each other. A value
  you set for ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is kept, and a
  libgomp that another library loaded first keeps its own policy.
* **Idle BLAS threads** (when SciPy's BLAS loads, just before the core):
  OpenBLAS's idle threads spin for about 2^28 cycles after each GEMM they
  run; ``OPENBLAS_THREAD_TIMEOUT=4`` makes them sleep almost at once (with
  the threads shared they run nothing). Set for the moment OpenBLAS loads
  only, never over your value, and without effect when ``scipy.linalg``
  was imported first.
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
          "blas_timeout": "core not loaded yet", "blas_threads": "core not loaded yet"}

# libgomp's spin count for idle threads (GOMP_SPINCOUNT): iterations of a
# load and a PAUSE, ~20 ns each on a Sapphire Rapids VM, so ~40 us of
# spinning before a thread sleeps on a futex.
_SPIN_COUNT = 2000


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
    GEMM (SciPy's BLAS unless PT_BLAS=fallback), share the BLAS's threads
    and, with PT_MALLOC_TUNING=1, tune malloc; returns the module. Called
    once, by the package's attribute hook, the first time anything asks for
    _core. SciPy's BLAS is loaded first, so that whether its threads can be
    shared is known when libgomp loads and its wait policy is chosen."""
    with _lock:
        if _state["core"] is not None:
            return _state["core"]
        from pytransformer import _blas

        want_blas = os.environ.get("PT_BLAS", "").lower() not in ("fallback", "none", "0")
        scipy_loaded = any(m == "scipy.linalg" or m.startswith("scipy.linalg.")
                           for m in list(sys.modules))
        blas_ptrs, hook = None, None
        if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
            timeout = "OPENBLAS_THREAD_TIMEOUT=" + os.environ["OPENBLAS_THREAD_TIMEOUT"]
            if want_blas:
                blas_ptrs = _blas.scipy_gemm_pointers()
        elif scipy_loaded or not want_blas:
            timeout = "runtime default (scipy.linalg was imported before pytransformer's core loaded)"
            if want_blas:
                blas_ptrs = _blas.scipy_gemm_pointers()
        else:
            blas_ptrs = _with_env("OPENBLAS_THREAD_TIMEOUT", "4", _blas.scipy_gemm_pointers)
            timeout = "4 (set by pytransformer: idle BLAS threads sleep at once)"
        if blas_ptrs is not None and os.environ.get("PT_BLAS_THREADS", "").lower() != "own":
            hook = _blas.openblas_threads_hook()
        # one pool of threads (our GEMM's, or OpenBLAS's work on ours) may spin
        one_pool = blas_ptrs is None or hook is not None

        if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
            policy = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                              if k in os.environ)
            core = importlib.import_module("pytransformer._core")
        elif _libgomp_loaded():
            policy = "runtime default (libgomp was loaded before pytransformer's core)"
            core = importlib.import_module("pytransformer._core")
        elif one_pool:
            core = _with_env("GOMP_SPINCOUNT", str(_SPIN_COUNT),
                             lambda: importlib.import_module("pytransformer._core"))
            policy = (f"GOMP_SPINCOUNT={_SPIN_COUNT} (set by pytransformer while libgomp loaded: "
                      "idle threads spin briefly, then sleep)")
        else:
            core = _with_env("OMP_WAIT_POLICY", "passive",
                             lambda: importlib.import_module("pytransformer._core"))
            policy = "passive (set by pytransformer while libgomp loaded)"
        _state["wait_policy"] = policy if core.has_openmp() else "n/a (built without OpenMP)"
        core.use_scipy_blas(want_blas)
        _state["blas_timeout"] = timeout if core.blas_available() else "n/a (no BLAS)"
        if not core.blas_available():
            _state["blas_threads"] = "n/a (no BLAS)"
        elif hook is not None and core.has_openmp() and core.blas_share_threads():
            _state["blas_threads"] = "pytransformer's OpenMP threads (OpenBLAS's threads callback)"
        else:
            _state["blas_threads"] = "the BLAS's own"
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
    "blas_thread_timeout", "blas_threads" (the threads SciPy's BLAS runs
    its threaded calls on; all three "core not loaded yet" until the first
    kernel runs) and "malloc_tuning"."""
    malloc = sys.modules.get("pytransformer._malloc")
    return {"omp_wait_policy": _state["wait_policy"],
            "blas_thread_timeout": _state["blas_timeout"],
            "blas_threads": _state["blas_threads"],
            "malloc_tuning": malloc.status if malloc is not None else
            "not applied (glibc defaults; training turns it on)"}
