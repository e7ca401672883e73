"""GFLOP/s of the C fallback GEMM vs NumPy matmul vs our BLAS path.

    python3 bench/gemm_fallback.py            # 1 and 2 threads, the table
    python3 bench/gemm_fallback.py --threads 2 --quick
    python3 bench/gemm_fallback.py --linear   # Linear's GEMM orientations

--linear times y = x W^T for x (M, K), W (N, K) at the Linear shapes of
all-MiniLM-L6-v2 and of the shipped translator, both ways round: "direct"
(pt_gemm(M, N, K): sgemm('T','N', N, M, K), what Linear did) and "swapped"
(y^T = W x^T into a scratch (N, M), transpose not included), through the
BLAS and through the C fallback, plus linear_forward (bias included) as it
now chooses. Microseconds, median of REPEATS timed runs of ~2 ms each.

Each thread count runs in a fresh subprocess with OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS set, so NumPy's (and SciPy's) OpenBLAS use the same
thread count as our OpenMP kernels (threadpoolctl is not required).
C is preallocated; the time is the median of REPEATS runs after one warm-up
(fewer repeats when a single run exceeds BUDGET_S / REPEATS).
"""
import argparse
import json
import os
import subprocess
import sys
import time

# ---------------------------------------------------------------- constants
SHAPES = [  # (M, N, K, dtype)   C[M,N] = A[M,K] @ B[K,N]
    (256, 256, 256, "float32"),
    (512, 512, 512, "float32"),
    (1024, 1024, 1024, "float32"),
    (2048, 2048, 2048, "float32"),
    (4096, 512, 2048, "float32"),
    (4096, 2048, 512, "float32"),
    (1024, 1024, 1024, "float64"),
]
QUICK_SHAPES = SHAPES[:3] + SHAPES[-1:]
LINEAR_ROWS = [1, 4, 17, 32, 64, 128, 480, 4096]          # M
LINEAR_KN = [(384, 1152), (384, 384), (384, 1536), (1536, 384),   # MiniLM (K, N)
             (128, 384), (128, 512), (512, 128), (128, 1446)]     # translator
THREADS = [1, 2]
REPEATS = 7          # median of this many timed runs ...
BUDGET_S = 6.0       # ... unless one case would take longer than this
MIN_REPEATS = 3


def median_time(fn):
    """(median wall seconds, median CPU seconds of this process) of fn()."""
    fn()  # warm-up (and packing buffers / page faults)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    first = time.perf_counter() - t0
    walls, cpus = [first], [time.process_time() - c0]
    reps = max(MIN_REPEATS, min(REPEATS, int(BUDGET_S / max(first, 1e-9))))
    for _ in range(reps - 1):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]


def run_child(threads, shapes):
    import numpy as np
    from pytransformer import _core

    _core.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for M, N, K, dt in shapes:
        a = rng.standard_normal((M, K)).astype(dt)
        b = rng.standard_normal((K, N)).astype(dt)
        c = np.empty((M, N), dt)
        flops = 2.0 * M * N * K
        row = {"shape": f"{M}x{N}x{K}", "dtype": dt, "threads": threads}
        cases = {"fallback": lambda: _core.gemm(c, a, b, False, False, 1.0, 0.0, True),
                 "numpy": lambda: np.matmul(a, b, out=c)}
        if _core.blas_available():
            cases["blas"] = lambda: _core.gemm(c, a, b, False, False, 1.0, 0.0, False)
        for name, fn in cases.items():
            wall, cpu = median_time(fn)
            row[name] = flops / wall / 1e9
            # GFLOP per CPU-second per thread: the per-core efficiency, less
            # sensitive than wall time to other processes taking the cores.
            row[name + "_cpu"] = flops / max(cpu, 1e-9) / 1e9 * threads
        row.setdefault("blas", float("nan"))
        rows.append(row)
        print(json.dumps(row), flush=True)


def run_linear_child(threads):
    """One JSON row per Linear shape: microseconds of each orientation."""
    import numpy as np
    from pytransformer import _core

    _core.set_num_threads(threads)
    rng = np.random.default_rng(0)
    for K, N in LINEAR_KN:
        w = rng.standard_normal((N, K)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        for M in LINEAR_ROWS:
            x = rng.standard_normal((M, K)).astype(np.float32)
            y, yT = np.empty((M, N), np.float32), np.empty((N, M), np.float32)
            cases = {"fb_direct": lambda: _core.gemm(y, x, w, False, True, 1.0, 0.0, True),
                     "fb_swapped": lambda: _core.gemm(yT, w, x, False, True, 1.0, 0.0, True),
                     "linear": lambda: _core.linear_forward(y, x, w, b)}
            if _core.blas_available():
                cases["blas_direct"] = lambda: _core.gemm(y, x, w, False, True, 1.0, 0.0)
                cases["blas_swapped"] = lambda: _core.gemm(yT, w, x, False, True, 1.0, 0.0)
            row = {"M": M, "K": K, "N": N, "threads": threads}
            for name, fn in cases.items():
                fn()
                t0 = time.perf_counter()
                fn()
                reps = max(1, int(2e-3 / max(time.perf_counter() - t0, 1e-7)))
                ts = []
                for _ in range(REPEATS):
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        fn()
                    ts.append((time.perf_counter() - t0) / reps)
                row[name] = sorted(ts)[len(ts) // 2] * 1e6
            print(json.dumps(row), flush=True)


def linear_table(rows):
    """Print the --linear rows (microseconds) and the direct/swapped ratios."""
    nan = float("nan")
    print(f"{'M':>5} {'K':>5} {'N':>5} {'thr':>3} {'blas dir':>9} {'blas swp':>9} {'ratio':>5} "
          f"{'fb dir':>9} {'fb swp':>9} {'ratio':>5} {'linear':>9}")
    for r in rows:
        bd, bs = r.get("blas_direct", nan), r.get("blas_swapped", nan)
        print(f"{r['M']:5d} {r['K']:5d} {r['N']:5d} {r['threads']:3d} {bd:9.1f} {bs:9.1f} "
              f"{bd / bs:5.2f} {r['fb_direct']:9.1f} {r['fb_swapped']:9.1f} "
              f"{r['fb_direct'] / r['fb_swapped']:5.2f} {r['linear']:9.1f}")
    print("microseconds; ratio = direct / swapped (> 1: swapped is faster)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="*", default=THREADS)
    ap.add_argument("--quick", action="store_true", help="only the small shapes and float64")
    ap.add_argument("--linear", action="store_true",
                    help="Linear's two GEMM orientations at the model shapes")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.child:
        if args.linear:
            run_linear_child(args.child)
        else:
            run_child(args.child, shapes)
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for t in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t),
                   PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(t)]
        if args.quick:
            cmd.append("--quick")
        if args.linear:
            cmd.append("--linear")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if args.linear:
        linear_table(rows)
        return
    print(f"{'shape MxNxK':>16} {'dtype':>7} {'thr':>3} {'fallback':>9} {'numpy':>9} "
          f"{'our blas':>9} {'fb/numpy':>8} | {'fb cpu':>7} {'np cpu':>7}")
    for r in rows:
        print(f"{r['shape']:>16} {r['dtype']:>7} {r['threads']:>3} {r['fallback']:9.1f} "
              f"{r['numpy']:9.1f} {r['blas']:9.1f} {r['fallback'] / r['numpy']:8.2f} | "
              f"{r['fallback_cpu']:7.1f} {r['numpy_cpu']:7.1f}")
    print("GFLOP/s from the median wall time; 'cpu' columns: GFLOP per CPU-second x threads")
    from pytransformer.bench import machine
    print(f"(fp32 {machine.peak_label(machine.measured_peak_gflops(1), 1)} per core, "
          "measured by FMA chains; fp64 half that)")


if __name__ == "__main__":
    main()
