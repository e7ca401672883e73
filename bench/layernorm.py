"""python3 -m bench.layernorm: layer_norm forward / backward / both, GB/s.

Bytes counted (the model): forward reads x, writes y (2 x N*C);
backward reads x and dy, writes dx (3 x N*C); mean/rstd/w/b are ignored.
"fresh" = every call allocates its outputs (first-touch page faults included);
"reused" = caller-owned buffers passed via out=, mean_out=, rstd_out=,
grad_input= (when this build's ops accept them). Median of REPEATS runs.
"""
import inspect
import os
import time

import numpy as np

import pytransformer
from pytransformer import reference as ref
from pytransformer.ops._layernorm import layer_norm_backward, layer_norm_forward

# ---- constants ------------------------------------------------------------
SHAPES = [(16384, 768), (4096, 512)]
DTYPE = np.float32
THREADS = [1, 2]
REPEATS = 15          # timed runs per case (median reported)
REF_REPEATS = 3       # the NumPy reference is slow: fewer runs
EPS = 1e-5
# ----------------------------------------------------------------------------

_FWD = inspect.signature(layer_norm_forward).parameters
_BWD = inspect.signature(layer_norm_backward).parameters
HAS_STATS_OUT = "mean_out" in _FWD and "rstd_out" in _FWD
HAS_GRAD_OUT = "grad_input" in _BWD


def times(fn, repeats):
    """(median, min) seconds of fn() over `repeats` runs after one warm-up.
    The min is the better estimate when other processes load the machine."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts))


def cases(N, C):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C)).astype(DTYPE)
    w = rng.standard_normal(C).astype(DTYPE)
    b = rng.standard_normal(C).astype(DTYPE)
    dy = rng.standard_normal((N, C)).astype(DTYPE)
    y_, mean, rstd = layer_norm_forward(x, w, b, EPS)
    y, m2, r2, dx = np.empty_like(x), np.empty_like(mean), np.empty_like(rstd), np.empty_like(x)
    fo = dict(out=y)
    if HAS_STATS_OUT:
        fo.update(mean_out=m2, rstd_out=r2)
    bo = dict(grad_input=dx) if HAS_GRAD_OUT else {}

    def fwd_fresh():
        layer_norm_forward(x, w, b, EPS)

    def fwd_reused():
        layer_norm_forward(x, w, b, EPS, **fo)

    def bwd_fresh():
        layer_norm_backward(dy, x, w, mean, rstd)

    def bwd_reused():
        layer_norm_backward(dy, x, w, mean, rstd, **bo)

    def both_fresh():
        _, m, r = layer_norm_forward(x, w, b, EPS)
        layer_norm_backward(dy, x, w, m, r)

    def both_reused():
        _, m, r = layer_norm_forward(x, w, b, EPS, **fo)
        layer_norm_backward(dy, x, w, m, r, **bo)

    def ref_both():
        ref.layer_norm(x, w, b, EPS)
        ref.layer_norm_backward(dy, x, w, EPS)

    nb = x.nbytes
    return [("forward", 2 * nb, fwd_fresh, fwd_reused),
            ("backward", 3 * nb, bwd_fresh, bwd_reused),
            ("fwd+bwd", 5 * nb, both_fresh, both_reused)], ref_both


def fmt(nbytes, med, best):
    return (f"{med * 1e3:7.2f} ({best * 1e3:7.2f}) "
            f"{nbytes / med / 1e9:5.2f} ({nbytes / best / 1e9:5.2f})")


def main(argv=None):
    import argparse
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"layer_norm bench, {np.dtype(DTYPE).name}, median of {REPEATS}; "
          f"load average {' '.join(load)}; stats out= {HAS_STATS_OUT}, grad_input= {HAS_GRAD_OUT}")
    print("ms = median (min); GB/s from the median (min)")
    print(f"{'shape':>12} {'op':>9} {'thr':>3} {'fresh ms':>16} {'GB/s':>12} "
          f"{'reused ms':>16} {'GB/s':>12}")
    for N, C in SHAPES:
        rows, ref_both = cases(N, C)
        for name, nbytes, fresh, reused in rows:
            for nt in THREADS:
                pytransformer.set_num_threads(nt)
                cols = [fmt(nbytes, *times(fresh, REPEATS)), fmt(nbytes, *times(reused, REPEATS))]
                print(f"{str((N, C)):>12} {name:>9} {nt:>3} {cols[0]} {cols[1]}")
        nbytes = 5 * N * C * np.dtype(DTYPE).itemsize
        print(f"{str((N, C)):>12} {'ref f+b':>9} {'np':>3} {fmt(nbytes, *times(ref_both, REF_REPEATS))}")
    pytransformer.set_num_threads(os.cpu_count() or 1)


if __name__ == "__main__":
    main()
