"""The article's walk-through: its data are the trace's numbers, masked
cells are marked, and compare_keys reads the factor matrix."""
import json

import numpy as np
import pytest

from pytransformer.explain import trace
from pytransformer.explain.html import Report
from pytransformer.explain.walkthrough import (WALKTHROUGH_CLASS, compare_keys,
                                               walkthrough_data, walkthrough_html)

SENTENCE = "the black cat drank the milk"


@pytest.fixture(scope="module")
def t():
    from pytransformer.translator import Translator, default_model_path
    return trace(Translator.load(default_model_path()), SENTENCE)


def test_data_are_the_traced_scores_weights_and_values(t):
    d = walkthrough_data(t)
    assert list(d["kinds"]) == ["encoder", "decoder", "cross"]        # the article's order
    for kind, k in d["kinds"].items():
        rows, cols = t.tokens(kind)
        assert (k["rows"], k["cols"]) == (list(rows), list(cols))
        for layer, heads in enumerate(k["layers"]):
            rec = t.attention(kind, layer)
            for h, hd in enumerate(heads):
                L, S = len(rows), len(cols)
                allowed = rec.allowed[0, h, :L, :S]
                s = np.array([[np.nan if x is None else x for x in r] for r in hd["scores"]])
                assert np.array_equal(np.isnan(s), ~allowed)          # None where masked
                np.testing.assert_allclose(s[allowed], rec.scores[0, h, :L, :S][allowed],
                                           atol=5e-4)
                w, v = np.array(hd["weights"]), np.array(hd["v"])
                np.testing.assert_allclose(w, rec.weights[0, h, :L, :S], atol=5e-5)
                # the view's sum of the rounded numbers is the head's output
                np.testing.assert_allclose(w @ v, rec.head_out[0, h, :L], atol=3e-3)
    dec = d["kinds"]["decoder"]["layers"][0][0]["scores"]
    assert dec[0][1] is None and dec[1][0] is not None                # causal mask


def test_compare_keys_reads_the_factor_matrix(t):
    c = compare_keys(t, "encoder", "Milk", "drank", "black")
    rows, cols = t.tokens("encoder")
    i, ja, jb = rows.index("milk"), cols.index("drank"), cols.index("black")
    for layer, diffs in enumerate(c["score_diff"]):
        rec = t.attention("encoder", layer)
        np.testing.assert_allclose(diffs, rec.scores[0, :, i, ja] - rec.scores[0, :, i, jb])
    assert len(c["weight_diff"]) == t.num_layers("encoder")
    with pytest.raises(ValueError, match="key_b: 'dog' is not among the words"):
        compare_keys(t, "encoder", "milk", "drank", "dog")


def test_the_page_carries_the_script_once_and_valid_json(t):
    html = walkthrough_html(walkthrough_data(t), initial={"kind": "cross", "query": 2},
                            include_script=False)
    payload = html.split('class="pt-wt-data">')[1].split("</script>")[0]
    assert json.loads(payload)["initial"] == {"kind": "cross", "layer": 0, "head": 0, "query": 2}
    rep = Report("w")
    rep.add_section("a", "", html)
    rep.add_section("b", "", walkthrough_html(walkthrough_data(t, kinds=["encoder"]),
                                              include_script=False))
    page = rep.to_html()
    assert page.count(f'<div class="{WALKTHROUGH_CLASS}" id=') == 2
    assert page.count("pytransformer explain: the attention walk-through") == 1
    with pytest.raises(ValueError, match="initial: kind must be one of"):
        walkthrough_html(walkthrough_data(t), initial={"kind": "nope"})
    with pytest.raises(ValueError, match="kinds: 'nope' was not recorded"):
        walkthrough_data(t, kinds=["nope"])


def test_sentence_page_answers_the_articles_example(t):
    from pytransformer.explain.report import sentence_report
    from pytransformer.translator import Translator, default_model_path
    page = sentence_report(Translator.load(default_model_path()), SENTENCE,
                           donor=False).to_html()
    assert 'id="walkthrough"' in page
    assert "does \u201cmilk\u201d score \u201cdrank\u201d above \u201cblack\u201d?" in page
