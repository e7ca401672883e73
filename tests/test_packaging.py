"""Packaging: setup.py's compiler probe and strip flags, the package
metadata, and the one-line error of an unbuilt source tree. (Building and
checking the wheel itself takes minutes: .ci/run does it.)"""
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_SOURCE = os.path.isfile(os.path.join(ROOT, "setup.py"))
needs_source = pytest.mark.skipif(not HAVE_SOURCE, reason="needs the source tree (setup.py)")


def _setup_module():
    """setup.py as a module; its setup() call runs only as __main__."""
    pytest.importorskip("setuptools")
    spec = importlib.util.spec_from_file_location("pt_setup", os.path.join(ROOT, "setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_source
def test_no_compiler_is_one_line_naming_what_is_needed():
    setup = _setup_module()
    message = setup.check_compiler(["/nonexistent"])
    assert message.startswith("pytransformer needs a C compiler (gcc or clang)"), message
    assert "'/nonexistent' was not found" in message and "\n" not in message
    assert setup.check_compiler([]).startswith("pytransformer needs a C compiler")
    cc = shutil.which("gcc") or shutil.which("clang") or shutil.which("cc")
    if cc:
        assert setup.check_compiler([cc]) is None


@needs_source
def test_extensions_are_stripped_unless_debug():
    setup = _setup_module()
    assert setup.strip_flags(False, "linux") == ["-s"]
    assert setup.strip_flags(True, "linux") == []
    assert setup.strip_flags(False, "darwin") == []


@needs_source
def test_metadata_names_a_distribution_that_is_not_the_import_name():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    assert project["project"]["name"] == "pytransformer-cpu"
    assert isinstance(project["project"]["license"], str)       # SPDX, not a table
    tool = project["tool"]["setuptools"]
    assert tool["packages"]["find"]["include"] == ["pytransformer*"]
    assert "*.c" in tool["exclude-package-data"]["*"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert "pytransformer-cpu" in f.read()


@needs_source
def test_unbuilt_source_tree_says_so_in_one_line(tmp_path):
    """A copy of the package without the compiled extensions, imported from
    its parent directory as from a fresh checkout's root (python -S: no
    site-packages, whose editable-install finder would find this
    checkout's built core)."""
    shutil.copytree(os.path.join(ROOT, "pytransformer"), tmp_path / "pytransformer",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "models",
                                                  "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-S", "-c", "import pytransformer"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: pytransformer: the compiled core (_core) is not "
                           f"built in {tmp_path / 'pytransformer'}"), out.stderr
    assert "pip install -e ." in last and "circular" not in out.stderr
