"""The learning view: a sentence through a model's training snapshots, the
section of the sentence report that shows it, and the one-line note for a
model without snapshots.

The shipped model carries no snapshots of its own here, so the tests give
it three: its random initialisation (step 0, the same seed and config),
halfway between that and the trained weights (step 100), and the trained
weights themselves (step 6000, the file's own weights)."""
import re

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import checkpoint
from pytransformer.explain.alignment import aer, alignment_from_weights
from pytransformer.explain.learning import learning_view, steps_chart_svg
from pytransformer.explain.report import sentence_report
from pytransformer.explain.trace import trace
from pytransformer.nn import Seq2SeqTransformer
from pytransformer.translator import Translator, default_model_path

SENTENCE = "The black cat drank the milk"


@pytest.fixture(scope="module")
def with_snapshots(tmp_path_factory):
    if default_model_path() is None:
        pytest.skip("no shipped model in this installation")
    tr = Translator.load(default_model_path())
    pt.manual_seed(0)
    init = Seq2SeqTransformer(tr.model.config).state_dict()
    final = tr.model.state_dict()
    half = {k: 0.5 * init[k] + 0.5 * final[k] for k in final}
    tr.snapshots = {0: checkpoint.compress_snapshot(init),
                    100: checkpoint.compress_snapshot(half),
                    6000: checkpoint.SNAPSHOT_IS_MODEL}
    path = tmp_path_factory.mktemp("learn") / "model.safetensors"
    tr.save(path)
    return Translator.load(path)


def _pair(lv, label):
    return next(p for p, pair in enumerate(lv.pairs) if pair["label"] == label)


def test_the_view_follows_related_pairs_through_the_snapshots(with_snapshots):
    tr = with_snapshots
    lv = learning_view(tr, SENTENCE)
    assert lv.steps == [0, 100, 6000] and lv.gold
    assert lv.target == "el gato negro bebió la leche"
    labels = [p["label"] for p in lv.pairs]
    # encoder: each word on its syntactic head (det left out); cross: the gold links
    assert labels[:3] == ["black \u2192 cat", "cat \u2192 drank", "milk \u2192 drank"]
    assert "leche \u2192 milk" in labels and "gato \u2192 cat" in labels
    # every number is the snapshot model's own: recompute step 0 and step 100
    models = dict(tr.snapshot_models())
    for step in (0, 100):
        t = trace(models[step], SENTENCE, lv.target)
        n = lv.steps.index(step)
        for p, pair in enumerate(lv.pairs):
            rec = t.attention(pair["kind"], pair["layer"])
            at = (0, pair["head"], pair["query"], pair["key"])
            assert lv.scores[p, n] == pytest.approx(rec.scores[at], abs=1e-9)
            assert lv.weights[p, n] == pytest.approx(rec.weights[at], abs=1e-9)
    # the followed head is the one where the finished model weighs the pair most
    t = trace(tr, SENTENCE, lv.target)
    p = _pair(lv, "milk \u2192 drank")
    w = np.array([t.attention("encoder", layer).weights[0, :, 5, 3]
                  for layer in range(t.num_layers("encoder"))])
    assert (lv.pairs[p]["layer"], lv.pairs[p]["head"]) == np.unravel_index(w.argmax(), w.shape)
    # AER of the sentence at each step, against the gold links
    links = [(0, 0), (2, 1), (1, 2), (3, 3), (4, 4), (5, 5)]
    layer, head = (int(x) for x in lv.aer_where.split("layer ")[1].split(" head "))
    for n, step in enumerate(lv.steps):
        tt = trace(models[step], SENTENCE, lv.target)
        pred = alignment_from_weights(tt.attention("cross", layer).weights[0, head], 6, 6)
        assert lv.aer[n] == pytest.approx(aer([pred], [links]))
    assert lv.best_aer[-1] <= lv.aer[-1] and lv.aer[-1] < lv.aer[0]
    # training made the gold pairs align: their weight grew from step 0 to the end
    cross = [p for p, pair in enumerate(lv.pairs) if pair["kind"] == "cross"]
    assert np.all(lv.weights[cross, -1] > lv.weights[cross, 0])
    assert lv.summary.startswith("From step 0 to step 6000, the gold-aligned pairs' mean "
                                 "cross-attention weight went from ")
    assert f"{lv.aer[0]:.2f} to {lv.aer[-1]:.2f}" in lv.summary


def test_a_sentence_without_gold_follows_the_models_alignment(with_snapshots):
    lv = learning_view(with_snapshots, "the red dog sees a small house")
    assert not lv.gold and lv.aer is None and lv.best_aer is None
    assert lv.target == with_snapshots.translate(["the red dog sees a small house"])[0]
    assert all(p["kind"] == "cross" for p in lv.pairs) and lv.pairs
    assert "no gold alignment for this sentence, so no AER" in lv.caption


def test_the_report_has_the_section_with_the_snapshot_numbers(with_snapshots):
    html = sentence_report(with_snapshots, SENTENCE).to_html()
    assert 'href="#learning"' in html                       # listed among the questions
    start = html.index('id="learning"')
    section = html[start:html.index("</section>", start)]
    assert "How did gradient descent make related words align?" in section
    lv = learning_view(with_snapshots, SENTENCE)
    p = _pair(lv, "leche \u2192 milk")
    for n, step in enumerate(lv.steps):
        assert f"step {step}" in section
        assert f"{lv.scores[p, n]:+.2f} ({lv.weights[p, n]:.2f})" in section
    assert section.count('class="pt-steps"') == 2            # encoder and cross charts
    assert "the alignment error rate from" in section


@pytest.fixture(scope="module")
def without_snapshots(shipped):
    """The shipped model with its snapshots (if it has any) taken away."""
    return Translator(shipped.model, shipped.src_vocab, shipped.tgt_vocab, shipped.data)


def test_a_model_without_snapshots_gets_a_one_line_note(without_snapshots):
    assert learning_view(without_snapshots, SENTENCE) is None
    html = sentence_report(without_snapshots, SENTENCE, donor=False).to_html()
    start = html.index('id="learning"')
    section = html[start:html.index("</section>", start)]
    assert "This model file has no training snapshots" in section
    assert "<table" not in section and "<svg" not in section


def test_steps_chart_labels_every_step_and_escapes_names():
    svg = steps_chart_svg([0, 30, 6000], {"a<b": [0.1, float("nan"), 0.9], "AER": [1, 0.5, 0]},
                          "t", "y", dashed=("AER",))
    assert svg.count("<circle") == 5                          # the NaN point is a gap
    for s in ("0", "30", "6000"):
        assert f">{s}</text>" in svg
    assert "a&lt;b" in svg and "a<b" not in svg
    assert 'stroke-dasharray="6 4"' in svg


# ------------------------------------------------------------------ analyze


@pytest.fixture(scope="module")
def pairs():
    from pytransformer.data import make_splits
    return make_splits(seed=0, n_train=0).test[:30]


def test_analysis_uses_the_models_own_snapshots(with_snapshots, pairs):
    from pytransformer.explain.alignment import alignment_scores
    from pytransformer.explain.analysis import analysis_report, findings, run_analysis
    a = run_analysis(with_snapshots, pairs, prune=False, stream=False)
    assert a.learning_from == "snapshots" and a.checkpoints.steps == [0, 100, 6000]
    models = dict(with_snapshots.snapshot_models())
    assert a.checkpoints.best_aer[0] == pytest.approx(alignment_scores(models[0], pairs).best["aer"])
    assert a.checkpoints.best_aer[-1] == pytest.approx(a.alignment.best["aer"])
    f = findings(a)
    assert [s for s, _ in f["aer_over_training"]] == [0, 100, 6000]
    assert f["aer_over_training_from"] == "snapshots"
    html = analysis_report(a).to_html()
    assert "snapshot of step 100" in html
    assert "training snapshots: " in html and "(step 100)" in html


def test_analysis_of_a_model_without_snapshots_says_so(without_snapshots, pairs):
    from pytransformer.explain.analysis import NO_SNAPSHOTS, analysis_report, run_analysis
    a = run_analysis(without_snapshots, pairs[:10], prune=False, stream=False)
    assert a.checkpoints is None and a.learning_note == NO_SNAPSHOTS
    assert "The model has no training snapshots" in analysis_report(a).to_html()


def test_cli_analyze_without_checkpoints_names_the_snapshot_steps(with_snapshots, tmp_path,
                                                                   capsys):
    from pytransformer import cli
    path = tmp_path / "m.safetensors"
    with_snapshots.save(path)
    out = tmp_path / "a.html"
    assert cli.main(["analyze", "-n", "20", "--no-prune", "--model", str(path),
                     "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "AER over training: the model's own snapshots, steps 0, 100, 6000" in captured.err
    assert "best AER over training (snapshots): step 0 " in captured.out
    assert "snapshot of step 6000" in out.read_text()


def test_the_aer_of_every_cross_attention_layer_at_each_step(with_snapshots):
    """layer_aer[n, l] is the AER of the best head of cross-attention layer l
    at step n; their minimum over the layers is best_aer; the section has a
    row per layer and the summary a clause per layer."""
    tr = with_snapshots
    lv = learning_view(tr, SENTENCE)
    L = tr.model.config.num_decoder_layers
    assert lv.layer_aer.shape == (len(lv.steps), L)
    assert np.array_equal(lv.layer_aer.min(1), lv.best_aer)
    links = [(0, 0), (2, 1), (1, 2), (3, 3), (4, 4), (5, 5)]
    model0 = dict(tr.snapshot_models())[0]
    t = trace(model0, SENTENCE, lv.target)
    for layer in range(L):
        heads = [aer([alignment_from_weights(t.attention("cross", layer).weights[0, h], 6, 6)],
                     [links]) for h in range(t.attention("cross", layer).num_heads)]
        assert lv.layer_aer[0, layer] == pytest.approx(min(heads))
    for layer in range(L):
        a = lv.layer_aer[:, layer]
        assert f"from {a[0]:.2f} to {a[-1]:.2f} in layer {layer}" in lv.summary
    html = sentence_report(tr, SENTENCE, donor=False).to_html()
    section = html[html.index('id="learning"'):]
    for layer in range(L):
        row = section[section.index(f"<td>AER, layer {layer}</td>"):]
        row = row[:row.index("</tr>")]
        assert [f"{x:.2f}" for x in lv.layer_aer[:, layer]] == \
            re.findall(r">(\d\.\d\d)</td>", row)


def test_without_gold_there_is_no_aer_per_layer(with_snapshots):
    lv = learning_view(with_snapshots, "the red dog sees a small house")
    assert lv.layer_aer is None and "Layer by layer" not in lv.summary
