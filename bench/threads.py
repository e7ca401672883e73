"""Do BLAS threads and OpenMP threads get in each other's way?

    python -m bench.threads

The FFN block forward+backward alternates SciPy's BLAS (sgemm, its own
thread pool) with our OpenMP kernels (bias + activation, column sums). Each
configuration runs in a fresh process, since libgomp and OpenBLAS read their
environment once:
  * default:          OpenMP 2 threads, BLAS 2 threads (threadpoolctl limit)
  * passive OpenMP:   OMP_WAIT_POLICY=passive (idle OpenMP threads sleep
                      instead of spinning while BLAS runs)
  * BLAS 1 thread:    only our OpenMP threads run in parallel
  * fallback GEMM:    no BLAS at all (PT_BLAS=fallback): one thread pool
"""
import os
import subprocess
import sys

SCRIPT = r"""
import statistics, sys, time
import numpy as np
import pytransformer
from pytransformer import ops
blas_threads = int(sys.argv[1])
pytransformer.set_num_threads(2)
if blas_threads != 2:
    from threadpoolctl import threadpool_limits
    threadpool_limits(blas_threads, user_api="blas")
N, D, F = 4096, 512, 2048
rng = np.random.default_rng(0)
x = rng.standard_normal((N, D)).astype(np.float32)
w1 = (rng.standard_normal((F, D)) / D ** .5).astype(np.float32); b1 = np.zeros(F, np.float32)
w2 = (rng.standard_normal((D, F)) / F ** .5).astype(np.float32); b2 = np.zeros(D, np.float32)
g = rng.standard_normal((N, D)).astype(np.float32)
def step():
    y, saved = ops.ffn_forward(x, w1, b1, w2, b2, activation="relu")
    ops.ffn_backward(g, saved)
step()
ts = []
for _ in range(7):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
ms = 1e3 * statistics.median(ts)
print(ms, 3 * 2 * 2 * N * D * F / (ms / 1e3) / 1e9)
"""

CONFIGS = [
    ("default (OpenMP 2 + BLAS 2)", {}, 2),
    ("OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY": "passive"}, 2),
    ("BLAS held to 1 thread", {}, 1),
    ("C fallback GEMM (no BLAS)", {"PT_BLAS": "fallback"}, 2),
]


def main(argv=None):
    import argparse
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print(f"{'configuration':<32}{'FFN fwd+bwd ms':>16}{'GFLOP/s':>10}")
    for name, env, blas in CONFIGS:
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(blas)], capture_output=True,
                             text=True, env=dict(os.environ, **env))
        if out.returncode:
            print(f"{name:<32} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        ms, gf = map(float, out.stdout.split())
        print(f"{name:<32}{ms:>16.1f}{gf:>10.1f}")


if __name__ == "__main__":
    main()
