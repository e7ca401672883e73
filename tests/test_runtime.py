"""pytransformer.runtime: importing the package changes nothing in the
process; the thread settings apply when the core loads, without leaving
anything in the environment; malloc tuning is opt-in (training turns it
on) and observable through glibc's own counters.

Every check runs in a child process, so that what the test process has
already loaded does not decide the answer."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Counts the blocks glibc serves with mmap (mallinfo2().hblks, glibc >= 2.33)
# around a malloc of `size` bytes: 1 with glibc's default mmap threshold
# (at most 32 MiB), 0 once pytransformer's tuning raised it to 32 MiB. The
# sizes the checks use grow (24, 28, 30 MiB), since glibc raises its
# threshold to the size of each mmapped block that is freed.
_PROBE = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL("libc.so.6")
class _Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = _Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def mmapped(mib):
    before = libc.mallinfo2().hblks
    p = libc.malloc(mib << 20)
    n = libc.mallinfo2().hblks - before
    libc.free(p)
    return n
"""


def _child(code, **env):
    """Run `code` (after _PROBE) in a fresh interpreter outside the source
    tree with `env` added (a None value removes the variable); its stdout
    as JSON."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT",
                      "PT_MALLOC_TUNING", "PT_BLAS", "PT_BLAS_THREADS")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", _PROBE + code], capture_output=True,
                         text=True, env=e, timeout=300, cwd=os.path.dirname(ROOT))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def _glibc_with_mallinfo2():
    try:
        import ctypes
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


needs_glibc = pytest.mark.skipif(not _glibc_with_mallinfo2(),
                                 reason="needs glibc >= 2.33 (mallinfo2) to observe malloc")


@needs_glibc
def test_import_leaves_environment_and_allocator_as_they_were():
    r = _child("""
env = dict(os.environ)
import pytransformer
out = {"env_same": dict(os.environ) == env, "mmapped": mmapped(24),
       "loaded": sorted(m for m in ("numpy", "pytransformer._core", "pytransformer._malloc",
                                    "scipy") if m in sys.modules)}
from pytransformer import ops, runtime       # the core loads: thread settings, not malloc
out.update(env_same_after_core=dict(os.environ) == env, mmapped_after_core=mmapped(28),
           status=runtime.status())
runtime.tune_for_training()
out.update(mmapped_after_tuning=mmapped(30), status_after_tuning=runtime.status())
print(json.dumps(out))
""")
    assert r["env_same"] and r["loaded"] == [], r
    assert r["mmapped"] == 1, "glibc's mmap threshold changed at import"
    assert r["env_same_after_core"] and r["mmapped_after_core"] == 1, r
    assert r["status"]["omp_wait_policy"].startswith(
        ("GOMP_SPINCOUNT=", "passive (set by pytransformer")), r
    assert r["status"]["malloc_tuning"].startswith("not applied"), r
    # the probe sees the tuning when it is on
    assert r["mmapped_after_tuning"] == 0, r
    assert r["status_after_tuning"]["malloc_tuning"].startswith("applied"), r


def test_thread_settings_keep_the_users_values():
    r = _child("""
from pytransformer import runtime, _core
print(json.dumps([runtime.status(), os.environ.get("OMP_WAIT_POLICY")]))
""", OMP_WAIT_POLICY="active")
    status, env = r
    assert status["omp_wait_policy"] == "OMP_WAIT_POLICY=active" and env == "active"


@needs_glibc
def test_trainer_turns_malloc_tuning_on_unless_forbidden():
    code = """
sys.path.insert(0, %r)
import io
from pytransformer import runtime
from pytransformer.training import TrainConfig, Trainer
from tests.test_train import _model
before = runtime.status()["malloc_tuning"]
Trainer(_model(), lambda epoch: [], TrainConfig(steps=1, warmup=1), stream=io.StringIO())
print(json.dumps([before, runtime.status()["malloc_tuning"], mmapped(30)]))
""" % ROOT
    before, after, mmapped = _child(code)
    assert before.startswith("not applied") and after.startswith("applied") and mmapped == 0
    before, after, mmapped = _child(code, PT_MALLOC_TUNING="0")
    assert after == "off (PT_MALLOC_TUNING=0)" and mmapped == 1


@needs_glibc
def test_malloc_tuning_on_request_when_the_core_loads():
    status, mmapped = _child("""
from pytransformer import _core, runtime
print(json.dumps([runtime.status()["malloc_tuning"], mmapped(30)]))
""", PT_MALLOC_TUNING="1")
    assert status.startswith("applied") and mmapped == 0


def test_config_reports_the_runtime_settings():
    import pytransformer as pt
    from pytransformer import runtime

    cfg = pt.config()
    for key, value in runtime.status().items():
        assert cfg[key] == value
    assert cfg["omp_wait_policy"] != "core not loaded yet"


def test_every_public_name_and_submodule_loads_on_first_use():
    """pytransformer.X works without `import pytransformer.X` for every
    name in __all__ and every public module of the package."""
    r = _child("""
import pkgutil
import pytransformer as pt
on_disk = {m.name for m in pkgutil.iter_modules(pt.__path__) if not m.name.startswith("_")}
names = sorted(set(pt.__all__) | on_disk)
missing = [n for n in names if getattr(pt, n, None) is None]
try:
    pt.no_such_name
    unknown = "no error"
except AttributeError as e:
    unknown = str(e)
print(json.dumps([missing, unknown, "validation" in dir(pt)]))
""")
    missing, unknown, listed = r
    assert missing == [] and listed
    assert unknown == "module 'pytransformer' has no attribute 'no_such_name'"
