"""What the machine can do: peak FLOP/s from the CPU's clock and SIMD width
and as measured (register-only FMA chains), memory bandwidth measured with
a large copy, and the BLAS environment."""
import os
import platform
import time

import numpy as np


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_mhz():
    """Nominal clock in MHz from /proc/cpuinfo (None when unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def peak_isa():
    """The ISA level the kernels run at ("portable", "avx2", "avx512"): the
    level whose FMA peak is the benchmarks' 100%."""
    from pytransformer import _core

    return _core.isa_info()["isa"]


def peak_gflops(threads, dtype=np.float32, isa=None):
    """Theoretical peak: threads x GHz x FLOP/cycle, with FLOP/cycle = 2 FMA
    units x SIMD lanes x 2 at ISA level `isa` (None: the level in use;
    avx2: 8 fp32 lanes, avx512: 16; fp64 half)."""
    mhz = cpu_mhz()
    if mhz is None:
        return None
    isa = isa or peak_isa()
    lanes = {"avx512": 16, "avx2": 8}.get(isa, 4)
    if np.dtype(dtype) == np.float64:
        lanes //= 2
    fma = 1 if isa == "portable" else 2
    return threads * mhz / 1000.0 * 2 * lanes * fma


def measured_peak_gflops(threads, seconds=0.3, isa=None):
    """fp32 GFLOP/s that `threads` threads of FMA chains reach now (turbo
    clocks and a VM's share of the host included) with the vectors of ISA
    level `isa` (None: the level the kernels run at, so that "% peak" is
    against the widest ISA in use): pytransformer's _core.fma_peak_gflops,
    the best of three runs."""
    from pytransformer import _core

    return max(_core.fma_peak_gflops(threads, seconds, isa=isa or peak_isa()) for _ in range(3))


def measured_peaks_gflops(threads, seconds=0.3):
    """measured_peak_gflops of every SIMD level this CPU runs, as a dict."""
    from pytransformer import _core

    return {lv: measured_peak_gflops(threads, seconds, lv)
            for lv in _core.isa_levels_supported() if lv != "portable"}


def peak_label(gflops, threads, isa=None):
    """How a benchmark names its 100%: "peak 410 GFLOP/s (avx512 FMA, 2 threads)"."""
    return f"peak {gflops:.0f} GFLOP/s ({isa or peak_isa()} FMA, {threads} threads)"


def copy_bandwidth_gbs(mb=256, repeats=5):
    """Measured memory bandwidth (GB/s, read + write) of a large np.copyto."""
    n = mb * (1 << 20) // 8
    a = np.ones(n)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def blas_env():
    """OPENBLAS_* environment variables set here, and threadpoolctl's view of
    the BLAS libraries (kernel = 'architecture')."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    try:
        from threadpoolctl import threadpool_info
        libs = [{k: lib.get(k) for k in ("internal_api", "version", "architecture",
                                         "num_threads", "filepath")}
                for lib in threadpool_info()]
    except ImportError:
        libs = "threadpoolctl not installed"
    return {"env": env, "libraries": libs}
