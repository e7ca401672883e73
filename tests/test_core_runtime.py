"""Threads, BLAS selection, build info and the command line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pytransformer
from pytransformer import _core


def test_set_get_num_threads_roundtrip():
    old = pytransformer.get_num_threads()
    try:
        pytransformer.set_num_threads(1)
        assert pytransformer.get_num_threads() == 1
        pytransformer.set_num_threads(3)
        assert pytransformer.get_num_threads() == 3
    finally:
        pytransformer.set_num_threads(old)
    with pytest.raises(ValueError, match="threads"):
        pytransformer.set_num_threads(0)


def test_default_threads_follow_omp_num_threads():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", "import pytransformer; print(pytransformer.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True)
    expected = "1"
    assert out.stdout.strip() == expected


def test_blas_follows_scipy_availability():
    try:
        import scipy  # noqa: F401
        have_scipy = True
    except ImportError:
        have_scipy = False
    assert _core.blas_available() == have_scipy


def test_fallback_can_be_forced_by_env():
    code = "from pytransformer import _core; print(_core.blas_available())"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PT_BLAS="fallback"),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("blas", [True, False])
def test_matmul_both_paths(blas):
    had = _core.blas_available()
    try:
        if not pytransformer.use_blas(blas) and blas:
            pytest.skip("SciPy not installed: no BLAS path")
        rng = np.random.default_rng(0)
        a = rng.standard_normal((33, 70)).astype(np.float32)
        b = rng.standard_normal((70, 19)).astype(np.float32)
        np.testing.assert_allclose(pytransformer.ops.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
    finally:
        pytransformer.use_blas(had)


def test_config_has_the_documented_fields():
    cfg = pytransformer.config()
    for key in ("version", "compiler", "cflags", "openmp", "num_threads", "cpu_simd", "blas"):
        assert key in cfg
    assert cfg["openmp"] == _core.has_openmp()
    assert cfg["version"] == pytransformer.__version__


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pytransformer", *args],
                          capture_output=True, text=True)


def test_cli_info_and_json():
    out = _cli("info")
    assert out.returncode == 0 and "OpenMP" in out.stdout
    cfg = json.loads(_cli("info", "--json").stdout)
    assert cfg["version"] == pytransformer.__version__


def test_cli_demo_prints_weights_that_match_reference():
    out = _cli("demo", "the ball is blue")
    assert out.returncode == 0, out.stderr
    assert "ball" in out.stdout and "float32" in out.stdout
    err = float(out.stdout.rsplit("=", 1)[1])
    assert err < 1e-5


def test_cli_help_for_every_command():
    for cmd in ([], ["info"], ["demo"], ["bench", "kernels"]):
        out = _cli(*cmd, "--help")
        assert out.returncode == 0 and "usage" in out.stdout.lower(), cmd


def _runs_concurrently_with_python(fn):
    """(released, seconds): whether the main thread kept executing Python
    while fn() ran in another thread, i.e. whether fn releases the GIL, and
    how long fn() took there.

    The main thread records a time stamp as fast as it can while fn runs.
    A call that holds the GIL leaves one gap in those stamps as long as
    the call itself; a call that releases it leaves only short gaps (the
    GIL hand-offs, 5 ms each, and the scheduler's slices on a loaded
    machine). So: released when no gap between successive stamps within
    fn's span (its ends included) exceeds half the span. fn must take at
    least ~40 ms for the gaps to be told apart."""
    import threading
    import time

    span = {}

    def worker():
        span["start"] = time.perf_counter()
        fn()
        span["end"] = time.perf_counter()

    ticks = []
    t = threading.Thread(target=worker)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    start, end = span["start"], span["end"]
    inner = [start] + [x for x in ticks if start < x < end] + [end]
    longest = max(b - a for a, b in zip(inner, inner[1:]))
    return longest < 0.5 * (end - start), end - start


def _call_seconds(fn):
    """Wall time of one fn() call, run on its own (no probe)."""
    import time
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _one_kernel_call(name, scale):
    """A function making exactly one C kernel call (so Python cannot run
    between calls), its work growing with `scale`."""
    from pytransformer import ops
    rng = np.random.default_rng(0)
    if name == "attention":
        q = rng.standard_normal((2, 4, 512 * scale, 64), dtype=np.float32)
        return lambda: ops.scaled_dot_product_attention(q, q, q)
    if name == "layer_norm":
        x = rng.standard_normal((4096 * scale, 1024), dtype=np.float32)
        _, mean, rstd = ops.layer_norm_forward(x)
        return lambda: ops.layer_norm_backward(x, x, None, mean, rstd)
    if name == "softmax":
        x = rng.standard_normal((1024 * scale, 4096), dtype=np.float32)
        return lambda: ops.softmax(x)
    a = rng.standard_normal((512 * scale, 2048), dtype=np.float32)
    return lambda: ops.matmul(a, a, trans_b=True, fallback=True)


@pytest.mark.parametrize("name", ["attention", "layer_norm", "softmax", "matmul_fallback"])
def test_kernels_release_the_gil(name):
    # One kernel thread, so that a core is left for the probing thread.
    # Grow the problem until one call, timed on its own, lasts long enough
    # to observe (on a loaded machine the probed span also holds GIL
    # hand-offs and waits for a core, so it is not the measure).
    old = _core.get_num_threads()
    _core.set_num_threads(1)
    try:
        for scale in (1, 2, 4, 8, 16, 32, 64):
            fn = _one_kernel_call(name, scale)
            fn()                                 # first touch of its memory
            alone = _call_seconds(fn)
            if alone >= 0.04:
                break
        assert alone >= 0.04, f"{name} too fast to observe even at scale {scale}"
        released, seconds = _runs_concurrently_with_python(fn)
    finally:
        _core.set_num_threads(old)
    # The probe can fail: a C call that holds the GIL (a backtracking regex)
    # lets no Python run in the middle of its span.
    assert released, f"no Python ran during {seconds * 1e3:.0f} ms of {name}"


def test_gil_probe_detects_a_call_that_holds_the_gil():
    import re
    released, seconds = _runs_concurrently_with_python(lambda: re.match(r"(a+)+b", "a" * 23))
    assert seconds > 0.04 and not released


def _config_in_subprocess(code, **env):
    e = dict(os.environ)
    e.pop("OPENBLAS_THREAD_TIMEOUT", None)
    e.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=e, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_idle_blas_threads_sleep_at_once_without_leaking_the_setting():
    """pytransformer sets OPENBLAS_THREAD_TIMEOUT=4 while SciPy's OpenBLAS
    loads (then removes it), keeps a user's value, and says when SciPy's
    BLAS was loaded before it could act."""
    if not _core.blas_available():
        pytest.skip("no SciPy BLAS in this installation")
    show = ("import json, os{pre}; import pytransformer as pt; print(json.dumps("
            "[pt.config()['blas_thread_timeout'], os.environ.get('OPENBLAS_THREAD_TIMEOUT')]))")
    value, env = _config_in_subprocess(show.format(pre=""))
    assert value.startswith("4 (set by pytransformer") and env is None
    value, env = _config_in_subprocess(show.format(pre=""), OPENBLAS_THREAD_TIMEOUT="12")
    assert value == "OPENBLAS_THREAD_TIMEOUT=12" and env == "12"
    value, env = _config_in_subprocess(show.format(pre="; import scipy.linalg"))
    assert value.startswith("runtime default") and env is None


def test_fma_peak_is_measured_and_checks_its_arguments():
    """The benchmarks' 100%: a positive rate, near what one thread of
    FMA chains of the ISA level in use (8 lanes for avx2, 16 for avx512)
    can do at a sane clock, and errors on bad input."""
    rate = _core.fma_peak_gflops(1, 0.02)
    assert np.isfinite(rate) and rate > 0
    lanes = {"avx2": 8, "avx512": 16}.get(_core.isa_info()["isa"])
    if lanes:
        # 2 FMA units x lanes x 2 FLOP per cycle: 0.1-6 GHz.
        assert 0.1 * 4 * lanes / 4 < rate < 6 * 4 * lanes * 1.01, rate
    for bad in ({"threads": 0}, {"threads": 1 << 20}, {"seconds": 0}, {"seconds": -1.0}):
        with pytest.raises(ValueError):
            _core.fma_peak_gflops(**bad)
