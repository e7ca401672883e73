"""The translator shipped in the package (pytransformer/models/)."""
from pytransformer import cli
from pytransformer.translator import Translator, default_model_path


def test_shipped_model_translates_the_seed_sentences(capsys):
    path = default_model_path()
    assert path is not None, "pytransformer/models/translator-en-es.safetensors is missing"
    tr = Translator.load(path)
    assert tr.translate(["The ball is blue", "The black cat drank the milk"]) == [
        "la bola es azul", "el gato negro bebió la leche"]
    assert tr.translate(["The ball is blue"], beam=4) == ["la bola es azul"]
    assert cli.main(["translate", "The ball is blue"]) == 0
    assert capsys.readouterr().out == "la bola es azul\n"
