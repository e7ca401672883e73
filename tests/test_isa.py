"""The ISA dispatch (csrc/dispatch.c): PT_ISA picks each kernel family's
path, read once at import; and the kernel tests pass at every level this
CPU runs.

- Each level the CPU runs, set through PT_ISA in a fresh process, is the
  level config() reports, with PT_ISA as the reason, and moves every family
  to a path of that level or below (portable: all portable; avx2: every
  float32 family on its AVX2 path); PT_PORTABLE=1 is an alias of
  PT_ISA=portable; an unknown or unsupported value keeps the CPU's level and
  the reason names it.
- The kernel test files run in a subprocess under each level the CPU runs
  (a level it lacks is skipped, saying so), with few hypothesis examples so
  that the three levels add well under a minute on 2 cores.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytransformer import _core
from tests.helpers import use_isa

LEVELS = ("portable", "avx2", "avx512")
FAMILIES = ("gemm", "attention", "activation", "layernorm", "softmax", "adamw", "linear")
ROOT = Path(__file__).resolve().parent.parent


def _config_in(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PT_ISA", "PT_PORTABLE")}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", "import json, pytransformer; print(json.dumps(pytransformer.config()))"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


def _skip_unless_supported(level):
    if level not in _core.isa_levels_supported():
        pytest.skip(f"this CPU (or its OS) does not run {level}: "
                    f"it runs {', '.join(_core.isa_levels_supported())}")


def _rank(path):
    return LEVELS.index(path)


@pytest.mark.parametrize("level", LEVELS)
def test_pt_isa_sets_the_level_and_every_family_path(level):
    _skip_unless_supported(level)
    cfg = _config_in({"PT_ISA": level})
    assert cfg["isa"] == level
    assert cfg["isa_reason"] == f"PT_ISA={level}"
    assert set(cfg["kernels"]) == set(FAMILIES) == set(cfg["kernels_float64"])
    for paths in (cfg["kernels"], cfg["kernels_float64"]):
        for fam, path in paths.items():
            assert path in LEVELS and _rank(path) <= _rank(level), (fam, path)
    if level == "portable":
        assert set(cfg["kernels"].values()) == set(cfg["kernels_float64"].values()) == {"portable"}
    else:
        # every float32 family has a SIMD path at avx2 and above
        assert all(_rank(p) >= 1 for p in cfg["kernels"].values()), cfg["kernels"]


def test_the_paths_change_with_the_level():
    supported = _core.isa_levels_supported()
    if len(supported) < 2:
        pytest.skip("this CPU runs the portable level only")
    before = _core.isa_info()["isa"]
    seen = {}
    for level in supported:
        with use_isa(level):
            info = _core.isa_info()
            assert info["isa"] == level
            seen[level] = info["kernels"]
    assert _core.isa_info()["isa"] == before          # restored on exit
    for fam in FAMILIES:
        assert seen["portable"][fam] == "portable"
        assert seen["avx2"][fam] == "avx2", fam


def test_pt_portable_is_an_alias_of_pt_isa_portable():
    cfg = _config_in({"PT_PORTABLE": "1"})
    assert cfg["isa"] == "portable"
    assert "PT_PORTABLE" in cfg["isa_reason"]
    assert set(cfg["kernels"].values()) == {"portable"}
    assert _config_in({"PT_PORTABLE": "0"})["isa"] == cfg["cpu_isa"]


@pytest.mark.parametrize("value", ["sse9", "AVX2", "avx512f"])
def test_an_unknown_pt_isa_keeps_the_cpu_level_and_says_so(value):
    cfg = _config_in({"PT_ISA": value})
    assert cfg["isa"] == cfg["cpu_isa"]
    assert value in cfg["isa_reason"] and "not portable, avx2 or avx512" in cfg["isa_reason"]


def test_a_level_above_the_cpu_keeps_the_cpu_level_and_says_so():
    supported = _core.isa_levels_supported()
    if len(supported) == len(LEVELS):
        pytest.skip("this CPU runs every level: none is above it")
    above = LEVELS[len(supported)]
    cfg = _config_in({"PT_ISA": above})
    assert cfg["isa"] == supported[-1]
    assert f"PT_ISA={above} asked" in cfg["isa_reason"]


def test_fma_peak_per_level():
    for level in LEVELS:
        if level in _core.isa_levels_supported():
            assert _core.fma_peak_gflops(1, 0.01, isa=level) > 0
        else:
            with pytest.raises(ValueError, match="this CPU runs"):
                _core.fma_peak_gflops(1, 0.01, isa=level)
    with pytest.raises(ValueError, match="isa: expected"):
        _core.fma_peak_gflops(1, 0.01, isa="sse9")


# ------------------------------------------- the kernel tests at each level

# The kernel test files, run under each level with few hypothesis examples
# (about 10 s of CPU per level). Deselected: the tests that start their own
# subprocess with PT_PORTABLE=1 (they test one level whatever PT_ISA says).
# test_simd_paths.py compares levels itself (helpers.use_isa).
KERNEL_TESTS = ["tests/test_gemm.py", "tests/test_attention.py", "tests/test_attention_causal.py",
                "tests/test_activation.py",
                "tests/test_layernorm.py", "tests/test_softmax.py", "tests/test_optim.py",
                "tests/test_optimizers.py", "tests/test_linear.py",
                "tests/test_decode_beam_loop.py"]
DESELECT = "not in_subprocess"
QUICK = ("import pytest, sys;"
         "from hypothesis import settings, HealthCheck;"
         "settings.register_profile('isa-quick', max_examples=3, derandomize=True, deadline=None,"
         " suppress_health_check=list(HealthCheck));"
         "sys.exit(pytest.main(sys.argv[1:]))")


@pytest.mark.parametrize("level", LEVELS)
def test_kernel_tests_pass_at_each_isa_level(level):
    _skip_unless_supported(level)
    env = {k: v for k, v in os.environ.items() if k not in ("PT_ISA", "PT_PORTABLE")}
    env.update(PT_ISA=level, HYPOTHESIS_PROFILE="isa-quick")
    proc = subprocess.run(
        [sys.executable, "-c", QUICK, "-q", "-x", "-p", "no:cacheprovider", "-k", DESELECT,
         "-W", "ignore::pytest.PytestAssertRewriteWarning"]
        + KERNEL_TESTS, env=env, cwd=ROOT, capture_output=True, text=True)
    tail = "\n".join(proc.stdout.splitlines()[-30:])
    assert proc.returncode == 0, f"kernel tests failed at PT_ISA={level}:\n{tail}\n{proc.stderr[-2000:]}"
