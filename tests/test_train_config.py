"""`pytransformer train --config FILE`: settings from a JSON (or TOML) file,
overridden by the flags given, checked key by key; --dump-config prints the
effective settings; examples/train-default.json is the shipped model's run."""
import json
import os

import pytest

from pytransformer import cli
from pytransformer.training import read_settings_file

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "train-default.json")
# the shipped model's command (pytransformer/models/README.md)
SHIPPED = ["--steps", "6000", "--eval-every", "1000", "--ckpt-every", "500", "--threads", "1",
           "--out", "translator-v2.safetensors"]


def _dump(capsys, *argv):
    assert cli.main(["train", *argv, "--dump-config"]) == 0
    out = capsys.readouterr().out
    return json.loads(out), out


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def captured(monkeypatch):
    """cmd_train's call of train_translator, recorded instead of run."""
    import pytransformer.translator as translator
    calls = []

    class Done:
        def translate(self, sentences):
            return ["-"]

    def fake(path, model_config, train_config, **kw):
        calls.append(dict(path=path, model=model_config, train=train_config, **kw))
        return Done()
    monkeypatch.setattr(translator, "train_translator", fake)
    return calls


def test_defaults_file_values_and_command_line_overrides(tmp_path, capsys, captured):
    defaults, _ = _dump(capsys)
    assert defaults["steps"] == 6000 and defaults["tie"] is False and defaults["dropout"] == 0.1
    path = _write(tmp_path, "run.json", json.dumps(
        {"steps": 25, "eval-every": 5, "d_model": 32, "dropout": 0, "tie": True,
         "out": "from-file.safetensors", "batch_size": 8}))
    cfg, _ = _dump(capsys, "--config", path)
    assert cfg == {**defaults, "steps": 25, "eval_every": 5, "d_model": 32, "dropout": 0.0,
                   "tie": True, "out": "from-file.safetensors", "batch_size": 8}
    assert isinstance(cfg["dropout"], float)
    over, _ = _dump(capsys, "--config", path, "--steps", "7", "--no-tie", "--seed", "3")
    assert over == {**cfg, "steps": 7, "tie": False, "seed": 3}
    # the run itself gets the merged settings
    assert cli.main(["train", "--config", path, "--steps", "7"]) == 0
    (call,) = captured
    assert call["path"] == "from-file.safetensors" and call["batch_size"] == 8
    assert call["model"]["d_model"] == 32 and call["model"]["tie_embeddings"] is True
    assert call["model"]["dropout"] == 0.0 and call["model"]["num_encoder_layers"] == 3
    assert call["train"].steps == 7 and call["train"].eval_every == 5
    assert call["train"].warmup == 1000 and call["resume"] is False


def test_dump_round_trips(tmp_path, capsys):
    cfg, text = _dump(capsys, "--steps", "123", "--lr-factor", "0.5", "--tie", "--out", "x.st")
    path = _write(tmp_path, "dumped.json", text)
    again, text2 = _dump(capsys, "--config", path)
    assert again == cfg and text2 == text
    assert read_settings_file(path, {k: type(v) for k, v in cfg.items()}) == cfg


def test_example_reproduces_the_shipped_models_command(capsys):
    from_flags, _ = _dump(capsys, *SHIPPED)
    from_file, _ = _dump(capsys, "--config", EXAMPLE)
    assert from_file == from_flags
    assert (from_file["steps"], from_file["eval_every"], from_file["ckpt_every"]) == (6000, 1000, 500)


@pytest.mark.parametrize("content,key,expected", [
    ('{"stepz": 3}', "'stepz'", "did you mean 'steps'"),
    ('{"steps": "many"}', "'steps'", 'expected an integer, got "many"'),
    ('{"steps": 2.5}', "'steps'", "expected an integer, got 2.5"),
    ('{"steps": true}', "'steps'", "expected an integer, got true"),
    ('{"dropout": "0.1"}', "'dropout'", "expected a number"),
    ('{"tie": 1}', "'tie'", "expected true or false, got 1"),
    ('{"out": 5}', "'out'", "expected a string"),
    ('{"config": "other.json"}', "'config'", "unknown key"),
])
def test_bad_key_or_value_names_the_key_and_the_file(tmp_path, capsys, captured, content, key,
                                                     expected):
    path = _write(tmp_path, "bad.json", content)
    assert cli.main(["train", "--config", path]) == 2
    err = capsys.readouterr().err
    assert path in err and key in err and expected in err
    assert captured == []                                      # nothing trained


@pytest.mark.parametrize("content,expected", [
    ("{'steps': 3}", "not valid JSON"),
    ("[1, 2]", "expected an object of settings"),
])
def test_unreadable_config_files(tmp_path, capsys, captured, content, expected):
    path = _write(tmp_path, "broken.json", content)
    assert cli.main(["train", "--config", path]) == 2
    err = capsys.readouterr().err
    assert path in err and expected in err
    missing = str(tmp_path / "none.json")
    assert cli.main(["train", "--config", missing]) == 2
    assert "cannot read" in capsys.readouterr().err and captured == []


def test_out_of_range_value_from_a_file_is_an_error(tmp_path, capsys, captured):
    path = _write(tmp_path, "zero.json", '{"steps": 0}')
    assert cli.main(["train", "--config", path]) == 2
    assert "steps: expected a positive int, got 0" in capsys.readouterr().err
    assert captured == []


def test_toml_config(tmp_path, capsys):
    pytest.importorskip("tomllib")
    path = _write(tmp_path, "run.toml", 'steps = 40\neval-every = 0\ntie = true\n'
                                        'label_smoothing = 0\nout = "t.safetensors"\n')
    cfg, _ = _dump(capsys, "--config", path, "--steps", "41")
    assert (cfg["steps"], cfg["eval_every"], cfg["tie"], cfg["out"]) == (41, 0, True,
                                                                         "t.safetensors")
    assert cfg["label_smoothing"] == 0.0 and isinstance(cfg["label_smoothing"], float)
    bad = _write(tmp_path, "bad.toml", "[model]\nd_model = 3\n")
    assert cli.main(["train", "--config", bad]) == 2
    err = capsys.readouterr().err
    assert bad in err and "unknown key 'model'" in err
    worse = _write(tmp_path, "worse.toml", "steps = = 3\n")
    assert cli.main(["train", "--config", worse]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_a_tiny_run_from_a_config_file(tmp_path, capsys):
    """End to end: the file's settings drive a real (tiny) run."""
    out = tmp_path / "tiny.safetensors"
    path = _write(tmp_path, "tiny.json", json.dumps(
        {"out": str(out), "steps": 3, "eval_every": 0, "ckpt_every": 0, "n_train": 200,
         "batch_size": 8, "d_model": 16, "nhead": 2, "layers": 1, "ff": 32, "max_len": 24}))
    assert cli.main(["train", "--config", path, "--steps", "2"]) == 0
    assert f"saved {out}" in capsys.readouterr().out
    from pytransformer.checkpoint import load_checkpoint
    ck = load_checkpoint(out)
    assert ck.step == 2 and ck.config["d_model"] == 16 and ck.config["num_encoder_layers"] == 1
    assert ck.extra["data"]["batch_size"] == 8
    assert ck.extra["data"]["grammar"] == 2              # the default corpus grammar, recorded


def test_grammar_setting_reaches_the_run_and_the_model_file(capsys, captured):
    assert cli.main(["train", "--grammar", "1", "--steps", "3"]) == 0
    assert captured[-1]["grammar"] == 1
    assert cli.main(["train", "--grammar", "3", "--steps", "3"]) == 2
    assert "--grammar: expected 1 or 2" in capsys.readouterr().err
    from pytransformer.translator import Translator
    assert Translator(None, None, None, data={}).grammar == 1          # files without the record
    assert Translator(None, None, None, data={"grammar": 2}).grammar == 2
