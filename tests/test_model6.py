"""The 6+6-layer translator of the repository's models/ (not in the wheel):
it loads by name, translates the seed sentences, its sentence report has
every section for all of its layers, and examples/train-6layer.json is its
training command; an installation without the file is told, in one line,
where it ships."""
import json
import os
import re

import pytest

from pytransformer import checkpoint, cli
from pytransformer import translator as translator_module
from pytransformer.translator import MODELS, Translator, model_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "translator6-en-es"
# the command that trained it (pytransformer/models/README.md)
COMMAND = ["--layers", "6", "--steps", "6000", "--eval-every", "1000", "--ckpt-every", "500",
           "--threads", "1", "--out", "translator6-v2.safetensors"]
SEEDS = {"The ball is blue": "la bola es azul",
         "The black cat drank the milk": "el gato negro bebió la leche"}


@pytest.fixture(scope="module")
def six():
    return Translator.load(NAME)


def test_loads_by_name_and_translates_the_seed_sentences(six):
    path = model_path(NAME)
    assert path == os.path.join(ROOT, "models", NAME + ".safetensors")
    assert model_path(NAME + ".safetensors") == path
    cfg = six.model.config
    assert (cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.d_model) == (6, 6, 128)
    assert six.grammar == 2
    assert sorted(six.snapshots) == [0, 30, 100, 300, 1000, 3000, 6000]
    assert six.snapshots[6000] == checkpoint.SNAPSHOT_IS_MODEL
    assert six.translate(list(SEEDS)) == list(SEEDS.values())
    # the size budget: float16 weights and the int8 snapshots, under 27 MB
    ck = checkpoint.load_checkpoint(path)
    assert {v.dtype.name for v in ck.model_state.values()} == {"float16"}
    assert os.path.getsize(path) < 27_000_000


def _section(rep, id):
    found = [s for s in rep.sections if s["id"] == id]
    assert len(found) == 1, f"no section {id!r}"
    return found[0]["caption"] + found[0]["body"]


def _view_data(html, prefix):
    m = re.search(rf'<script type="application/json" class="{prefix}-data">(.*?)</script>',
                  html, re.S)
    assert m, prefix
    return json.loads(m.group(1))


def test_sentence_report_covers_all_six_layers(six, tmp_path):
    from pytransformer.explain.report import sentence_report
    rep = sentence_report(six, "The ball is blue")
    out = tmp_path / "ball6.html"
    rep.save(str(out))
    assert out.stat().st_size > 100_000
    layers = range(6)
    # the two interactive views: every kind of attention, six layers of four heads
    for prefix in ("pt-wt", "pt-hv"):
        data = _view_data(_section(rep, "walkthrough" if prefix == "pt-wt" else "heads"),
                          prefix)
        for kind in ("encoder", "decoder", "cross"):
            k = data["kinds"][kind]
            per_layer = k["layers"] if prefix == "pt-wt" else k["weights"]
            assert len(per_layer) == 6 and all(len(h) == 4 for h in per_layer), (prefix, kind)
    factors = _section(rep, "walkthrough").split("Layer by layer, the largest factor")[1]
    assert all(f"layer {i}: " in factors for i in layers)
    cross = _section(rep, "cross")
    assert all(f"layer {i} (mean of heads)" in cross for i in layers)
    assert all(f"layer {i}: " in cross for i in layers)         # gold agreement per layer
    mixing = _section(rep, "mixing")
    assert mixing.count("in layers 0 to 5") == 3                 # every kind, every layer
    for kind in ("encoder self-attention", "decoder masked self-attention", "cross-attention"):
        assert all(f'<td>{kind}</td><td class="num">{i}</td>' in mixing for i in layers), kind
    ffn = _section(rep, "ffn")
    for kind in ("encoder", "decoder"):
        for i in layers:
            assert f"<h3>{kind} layer {i}</h3>" in ffn
            assert f"<td>{kind} {i}</td>" in ffn                  # the ablation table's row
    # is each FFN a different function: neighbours, first and last, and every pair
    for kind in ("Encoder", "Decoder"):
        para = re.search(rf"<p>{kind}: (.*?)</p>", ffn).group(1)
        assert all(f"{i}\u2013{i + 1} " in para for i in range(5)) and "0\u20135 " in para
        assert f"{kind}: every pair of layers" in ffn
    assert all(f"{i}\u2013{j}</td>" in ffn for i in layers for j in layers if i < j)
    lens = _section(rep, "lens")
    assert all(f"decoder layer {i}</td>" in lens for i in layers)
    learning = _section(rep, "learning")
    assert all(f"AER, layer {i}</td>" in learning for i in layers)
    assert "step 0" in learning and "step 6000" in learning
    assert "in layer 5." in learning                              # the per-layer summary
    questions = _section(rep, "questions")
    assert "different function in each layer" in questions


def test_the_example_config_is_the_training_command(capsys):
    def dump(*argv):
        assert cli.main(["train", *argv, "--dump-config"]) == 0
        return json.loads(capsys.readouterr().out)
    example = os.path.join(ROOT, "examples", "train-6layer.json")
    from_file = dump("--config", example)
    assert from_file == dump(*COMMAND)
    assert (from_file["layers"], from_file["steps"], from_file["grammar"]) == (6, 6000, 2)
    # and the file the command made says the same
    six_cfg = Translator.load(NAME).model.config
    assert (six_cfg.num_encoder_layers, six_cfg.dim_feedforward, six_cfg.nhead) == \
        (from_file["layers"], from_file["ff"], from_file["nhead"])


def test_an_installation_without_the_file_says_where_it_ships(tmp_path, monkeypatch):
    """The wheel leaves the 6-layer model out: model_path and Translator.load
    by name then raise one line saying it is in the source repository; the
    3+3 model's message names the package."""
    monkeypatch.setattr(translator_module, "_models_dir", lambda in_wheel=True: str(tmp_path))
    for call in (lambda: model_path(NAME), lambda: Translator.load(NAME)):
        with pytest.raises(FileNotFoundError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg
        assert msg.startswith(f"{NAME}: this installation has no {NAME}.safetensors")
        assert "source repository only" in msg and "not in the wheel" in msg
        assert "pip install -e ." in msg
    with pytest.raises(FileNotFoundError, match="ships in the package"):
        model_path("translator-en-es")
    with pytest.raises(ValueError, match="name: expected one of"):
        model_path("translator9")
    assert not MODELS[NAME][1] and MODELS["translator-en-es"][1]


def test_only_the_3_layer_model_is_inside_the_package():
    """The wheel holds the packages setuptools finds (pyproject.toml:
    pytransformer*) and their package data: the 3+3 model is in
    pytransformer/models/, the 6+6 one in the top-level models/, which no
    package pattern and no MANIFEST.in line names (tests/test_snapshots.py
    checks that the package fits the wheel's 25 MB)."""
    import fnmatch
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        include = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
    for name, (file, in_wheel) in MODELS.items():
        rel = os.path.relpath(model_path(name), ROOT)
        package = os.path.dirname(rel).replace(os.sep, ".")
        assert any(fnmatch.fnmatch(package, p) for p in include) == in_wheel, rel
    with open(os.path.join(ROOT, "MANIFEST.in")) as f:
        assert not [line for line in f if "models" in line and "pytransformer/models" not in line]


@pytest.mark.parametrize("command", [["translate", "The ball is blue"], ["explain", "The ball is blue"],
                                     ["analyze"]])
@pytest.mark.parametrize("model", [NAME, f"models/{NAME}.safetensors"])
def test_the_cli_without_the_file_says_where_it_ships(command, model, tmp_path, monkeypatch,
                                                      capsys):
    """On an installation without the 6-layer file, translate, explain and
    analyze given its short name or its repository path fail with one line
    naming --model and where the model ships (not "train one")."""
    monkeypatch.setattr(translator_module, "_models_dir", lambda in_wheel=True: str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.main([command[0], "--model", model] + command[1:]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"pytransformer {command[0]}: --model: {NAME}: this installation has no")
    assert "source repository only" in err
