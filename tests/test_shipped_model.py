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


def test_shipped_model_cross_attention_follows_the_gold_alignment():
    """The last decoder layer's cross-attention, read by a forward hook,
    points each Spanish word at its gold English word (the corpus's
    alignments), adjective reordering included."""
    from pytransformer.data import seed_pairs
    from pytransformer.translator import attention_map, cross_attention
    tr = Translator.load(default_model_path())
    for pair in seed_pairs():
        src, tgt, w = cross_attention(tr, pair.source)
        assert tgt[:-1] == list(pair.tgt) and src[:-1] == list(pair.src)
        assert w.shape == (len(tgt), len(src))
        gold = {j: i for i, js in enumerate(pair.align) for j in js}
        for j in range(len(pair.tgt)):
            assert int(w[j].argmax()) == gold[j], (pair.source, tgt[j])
        text = attention_map(src, tgt, w)
        assert text.count("\n") == len(tgt) and "<- " in text
