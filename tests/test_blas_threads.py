"""SciPy's OpenBLAS runs its threaded calls on the core's OpenMP threads
(csrc/blas.c, pytransformer/runtime.py): results as with OpenBLAS's own
pool, for our GEMM and for scipy.linalg's, from several threads at once,
and in a child process after fork, where libgomp's threads are gone.

The checks run in fresh interpreters, so that what the test process has
already loaded does not decide the answer."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(code, **env):
    """Run `code` in a fresh interpreter with `env` added; its last stdout
    line as JSON."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT",
                      "PT_BLAS", "PT_BLAS_THREADS")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=e, timeout=300, cwd=os.path.dirname(ROOT))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def _hook_available():
    try:
        from pytransformer import _blas
    except ImportError:
        return False
    return _blas.openblas_threads_hook() is not None


needs_hook = pytest.mark.skipif(not _hook_available(),
                                reason="needs SciPy with an OpenBLAS that has the threads callback")

# Products big enough for OpenBLAS to thread them, checked against NumPy's
# BLAS in float64 (a separate library, its own pool), for our GEMM at 1
# and 2 threads and for scipy.linalg.blas.
_PRODUCTS = r"""
import json, os, sys, threading
import numpy as np
import pytransformer as pt
from pytransformer import ops, runtime
import scipy.linalg.blas as sb
rng = np.random.default_rng(0)
a = rng.standard_normal((300, 500)); b = rng.standard_normal((500, 400))
ref = a @ b
def err(c):
    return float(np.abs(c - ref).max())
def ours():
    out = []
    for t in (1, 2):
        pt.set_num_threads(t)
        out.append(ops.matmul(a, b))
    return out
"""


@needs_hook
def test_threaded_blas_calls_run_on_our_threads_with_unchanged_results():
    r = _child(_PRODUCTS + r"""
one, two = ours()
f32 = ops.matmul(a.astype(np.float32), b.astype(np.float32))
print(json.dumps({"status": runtime.status(), "ours": [err(one), err(two)],
                  "f32": float(np.abs(f32 - ref).max()),
                  "scipy": err(sb.dgemm(1.0, a, b))}))
""")
    st = r["status"]
    assert st["blas_threads"].startswith("pytransformer's OpenMP threads"), st
    assert st["omp_wait_policy"].startswith("GOMP_SPINCOUNT="), st
    assert max(r["ours"]) < 1e-10 and r["scipy"] < 1e-10, r
    assert r["f32"] < 1e-3, r


@needs_hook
def test_own_pool_on_request_keeps_the_passive_policy():
    r = _child(_PRODUCTS + r"""
one, two = ours()
print(json.dumps({"status": runtime.status(), "ours": [err(one), err(two)]}))
""", PT_BLAS_THREADS="own")
    st = r["status"]
    assert st["blas_threads"] == "the BLAS's own", st
    assert st["omp_wait_policy"].startswith("passive (set by pytransformer"), st
    assert max(r["ours"]) < 1e-10, r


def test_fallback_gemm_lets_threads_spin():
    """Without a BLAS the only pool is OpenMP's: the short spin applies."""
    r = _child(r"""
import json
from pytransformer import runtime, _core
print(json.dumps([runtime.status(), _core.has_openmp()]))
""", PT_BLAS="fallback")
    st, omp = r
    assert st["blas_threads"] == "n/a (no BLAS)", st
    if omp:
        assert st["omp_wait_policy"].startswith("GOMP_SPINCOUNT="), st


@needs_hook
def test_concurrent_callers_and_a_forked_child_get_correct_products():
    """Threaded calls from several Python threads at once (ours and
    scipy.linalg's; the callback runs one at a time), then in a child
    after fork (the jobs run on threads created for the call)."""
    r = _child(_PRODUCTS + r"""
errs = []
def work(i):
    for _ in range(5):
        errs.append(err(ops.matmul(a, b)) if i % 2 else err(sb.dgemm(1.0, a, b)))
ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    child = [err(ops.matmul(a, b)), err(sb.dgemm(1.0, a, b))]
    os.write(w, json.dumps(child).encode())
    os._exit(0)
os.close(w)
child = json.loads(os.read(r, 1000).decode())
_, code = os.waitpid(pid, 0)
print(json.dumps({"threads": len(errs), "max": max(errs), "child": child, "code": code}))
""")
    assert r["threads"] == 20 and r["max"] < 1e-10, r
    assert r["code"] == 0 and max(r["child"]) < 1e-10, r
