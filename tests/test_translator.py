"""The translation pipeline end to end on a tiny, briefly trained model:
train -> checkpoint -> load -> translate, the CLI, and bad input. (Quality
is the shipped model's business; here 40 steps only prove the plumbing.)"""
import io
import warnings

import numpy as np
import pytest

from pytransformer import cli
from pytransformer.training import TrainConfig
from pytransformer.translator import Translator, UnknownWordWarning, train_translator

TINY = dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
            dim_feedforward=32, dropout=0.0, max_len=24)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tr") / "tiny.safetensors"
    train_translator(path, TINY, TrainConfig(steps=40, warmup=10, eval_every=20, ckpt_every=20),
                     n_train=2000, batch_size=32, stream=io.StringIO())
    return path


def test_loss_curve_files(model_path):
    import os
    stem = str(model_path)[:-len(".safetensors")]
    lines = open(stem + ".loss.csv").read().splitlines()
    assert lines[0] == "step,loss" and len(lines) == 41
    step, loss = lines[-1].split(",")
    assert step == "40" and float(loss) > 0
    try:
        import matplotlib  # noqa: F401
        assert os.path.getsize(stem + ".loss.png") > 1000
    except ImportError:
        assert not os.path.exists(stem + ".loss.png")


def test_load_and_translate(model_path):
    tr = Translator.load(model_path)
    out = tr.translate(["The ball is blue", "the black cat drank the milk"])
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert tr.translate("the ball is blue", beam=3)[0].split() != ["<unk>"]


def test_bad_input(model_path):
    tr = Translator.load(model_path)
    with pytest.warns(UnknownWordWarning, match="'xylophone'"):
        tr.translate(["the xylophone is blue"])
    with pytest.raises(ValueError, match="empty"):
        tr.translate(["   "])
    with pytest.raises(ValueError, match="no sentences"):
        tr.translate([])
    with pytest.raises(ValueError, match="at most 23"):
        tr.translate(["the cat " * 12])


def test_resume_continues_the_run(model_path, tmp_path):
    import shutil
    path = tmp_path / "run.safetensors"
    shutil.copy(model_path, path)
    train_translator(path, TINY, TrainConfig(steps=50, warmup=10, eval_every=0, ckpt_every=0),
                     n_train=2000, batch_size=32, resume=True, stream=io.StringIO())
    from pytransformer.checkpoint import load_checkpoint
    assert load_checkpoint(path).step == 50


def test_cli_translate(model_path, capsys):
    assert cli.main(["translate", "the ball is blue", "--model", str(model_path)]) == 0
    assert capsys.readouterr().out.strip()
    assert cli.main(["translate", "the zzz is blue", "--model", str(model_path)]) == 0
    assert "unknown word(s) 'zzz'" in capsys.readouterr().err
    assert cli.main(["translate", "x", "--model", "/nonexistent/m.safetensors"]) == 2
    assert "no model at" in capsys.readouterr().err


def test_evaluate(model_path, capsys):
    from pytransformer.data import make_splits
    from pytransformer.translator import evaluate
    tr = Translator.load(model_path)
    assert tr.data == {"seed": 0, "n_train": 2000, "batch_size": 32}
    pairs = make_splits(seed=0, n_train=0).test[:20]
    r = evaluate(tr, pairs)
    assert r["pairs"] == 20 and 0.0 <= r["exact_match"] <= 1.0
    try:
        import sacrebleu  # noqa: F401
        assert 0.0 <= r["bleu"] <= 100.0
    except ImportError:
        assert r["bleu"] is None
    assert cli.main(["evaluate", "--model", str(model_path), "-n", "10"]) == 0
    out = capsys.readouterr().out
    assert "test" in out and "compositional" in out and "exact match" in out


def test_not_a_translator_checkpoint(tmp_path):
    from pytransformer import checkpoint
    p = tmp_path / "other.safetensors"
    checkpoint.save_checkpoint(p, model={"w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="not a translator checkpoint"):
        Translator.load(p)


def test_checkpoint_from_another_config(model_path, tmp_path):
    """Weights saved under a config they do not fit: a clear ValueError."""
    from pytransformer import checkpoint
    tr = Translator.load(model_path)
    cfg = tr.model.config.to_dict()
    cfg["dim_feedforward"] = 48
    p = tmp_path / "mismatch.safetensors"
    checkpoint.save_checkpoint(p, model=tr.model, config=cfg,
                               extra={"src_vocab": tr.src_vocab.to_dict(),
                                      "tgt_vocab": tr.tgt_vocab.to_dict()})
    with pytest.raises(ValueError, match=r"(?s)do not fit the saved config.*linear1\.weight"):
        Translator.load(p)
