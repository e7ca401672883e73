"""The explain report's renderers (pytransformer.explain.html) and PNG
figures (pytransformer.explain.figures): well-formed SVG whose text is the
escaped input, values on hover and in cells, colour scales, highlights,
argument errors that name the argument, the head view's data and escaping,
the page (contents, captions, one script, no external references, atomic
save, Jupyter), and head_view_data against a real trace."""
import html
import json
import os
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytransformer.explain import trace
from pytransformer.explain.html import (HEAD_VIEW_CLASS, Report, bar_chart_svg, format_number,
                                        head_view_data, head_view_html, heatmap_svg,
                                        json_for_script, line_chart_svg, table_html)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = ["</script>", "<b>x</b>", "a & b", '"q"', "'s'", "\u2028"]


def svg_tree(fragment):
    """Parse an SVG fragment as XML (it must be well-formed)."""
    return ET.fromstring(fragment)


def texts(tree, cls=None):
    return [t.text or "" for t in tree.iter(SVG + "text")
            if cls is None or t.get("class") == cls]


def luminance(fill):
    r, g, b = (int(x) for x in fill[4:-1].split(","))
    return 0.299 * r + 0.587 * g + 0.114 * b


def cells(tree):
    """(value text, rect) of every heat-map cell, row-major."""
    return [r for r in tree.iter(SVG + "rect") if r.get("data-value") is not None]


# ---------------------------------------------------------------------------
# numbers and escaping

def test_format_number():
    assert format_number(None) == "\u2014"
    assert format_number(float("nan")) == "n/a"
    assert format_number(float("inf")) == "\u221e" and format_number(-np.inf) == "-\u221e"
    assert format_number(True) == "yes" and format_number(np.bool_(False)) == "no"
    assert format_number(7) == "7" and format_number(np.int64(123456789)) == "123456789"
    assert format_number(0.123456) == "0.123" and format_number(np.float32(2.5), ".2f") == "2.50"
    assert format_number(-0.0001, ".2f") == "0.00"                # no '-0.00'
    assert format_number(-0.5, ".2f") == "-0.50"
    assert format_number(0.25, lambda x: f"{100 * x:.0f}%") == "25%"
    assert format_number("det->noun") == "det->noun"


def test_json_for_script_cannot_close_the_element():
    data = {"rows": HOSTILE + ["<!--", "]]>"], "w": [0.5, 1]}
    s = json_for_script(data)
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == data
    with pytest.raises(ValueError):
        json_for_script({"w": float("nan")})


# ---------------------------------------------------------------------------
# heat map

def test_heatmap_labels_values_and_hover():
    m = np.array([[0.1, 0.9, 0.0], [0.5, 0.25, 0.25]])
    rows, cols = ["el", "gato"], ["the", "cat", "<eos>"]
    tree = svg_tree(heatmap_svg(m, rows, cols, title="cross <1>", fmt=".2f", vmin=0, vmax=1))
    assert texts(tree, "pt-row") == rows and texts(tree, "pt-col") == cols
    assert texts(tree)[0] == "cross <1>"
    cs = cells(tree)
    assert [c.get("data-value") for c in cs] == [f"{v:.2f}" for v in m.ravel()]
    titles = [g.find(SVG + "title").text for g in tree.iter(SVG + "g")]
    assert titles[1] == "el \u2192 cat: 0.90" and titles[-1] == "gato \u2192 <eos>: 0.25"
    # annotated (small matrix): every value is printed in its cell
    printed = [t for t in texts(tree) if re.fullmatch(r"\d\.\d\d", t)]
    assert [f"{v:.2f}" for v in m.ravel()] == printed[:m.size]
    # darker = larger on a sequential scale
    lum = [luminance(c.get("fill")) for c in cs]
    order = np.argsort(m.ravel(), kind="stable")
    assert all(lum[a] >= lum[b] for a, b in zip(order, order[1:]))


def test_heatmap_no_annotation_diverging_and_nan():
    m = np.array([[-2.0, 0.0, 2.0, np.nan]])
    tree = svg_tree(heatmap_svg(m, annotate=False))
    assert "-2.00" not in texts(tree)[:-2]                     # values only in the legend
    fills = [c.get("fill") for c in cells(tree)]
    r, g, b = (int(x) for x in fills[0][4:-1].split(","))
    assert r > b                                                # negative: red
    r, g, b = (int(x) for x in fills[2][4:-1].split(","))
    assert b > r                                                # positive: blue
    assert luminance(fills[1]) > 240                            # zero: near white
    assert cells(tree)[3].get("data-value") == "n/a"
    assert texts(tree, "pt-row") == ["0"] and texts(tree, "pt-col") == ["0", "1", "2", "3"]


def test_heatmap_highlight_outlines_the_cells():
    m = np.zeros((3, 4))
    pairs = [(0, 1), (2, 3)]
    for hl in (pairs, np.isin(np.arange(12).reshape(3, 4), [1, 11])):
        tree = svg_tree(heatmap_svg(m, highlight=hl, cell=20, highlight_label="gold"))
        cs = cells(tree)
        boxes = [r for r in tree.iter(SVG + "rect") if r.get("class") == "pt-highlight"]
        assert len(boxes) == 2
        for (i, j), box in zip(pairs, boxes):
            c = cs[i * 4 + j]
            assert float(box.get("x")) == pytest.approx(float(c.get("x")) + 1)
            assert float(box.get("y")) == pytest.approx(float(c.get("y")) + 1)
        assert "gold" in texts(tree)


def test_heatmap_escapes_every_text():
    s = heatmap_svg([[1.0, 2.0]], ["<b>r</b>"], ["</script>", "a & b"], title="<i>t</i>",
                    row_axis="<q>", col_axis="x&y")
    assert "<b>" not in s and "</script>" not in s and "<i>" not in s and "<q>" not in s
    tree = svg_tree(s)
    assert texts(tree, "pt-row") == ["<b>r</b>"] and texts(tree, "pt-col") == ["</script>", "a & b"]


@given(st.data())
def test_heatmap_is_well_formed_for_any_labels(data):
    R = data.draw(st.integers(1, 5))
    C = data.draw(st.integers(1, 5))
    label = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
    rows = data.draw(st.lists(label, min_size=R, max_size=R))
    cols = data.draw(st.lists(label, min_size=C, max_size=C))
    m = data.draw(st.lists(st.floats(-1e6, 1e6), min_size=R * C, max_size=R * C))
    tree = svg_tree(heatmap_svg(np.reshape(m, (R, C)), rows, cols))
    assert texts(tree, "pt-row") == rows and texts(tree, "pt-col") == cols
    assert len(cells(tree)) == R * C


@pytest.mark.parametrize("kwargs, name", [
    (dict(matrix=[1.0, 2.0]), "matrix"),
    (dict(matrix=np.zeros((0, 3))), "matrix"),
    (dict(matrix=np.zeros((2, 0))), "matrix"),
    (dict(matrix=[["a", "b"]]), "matrix"),
    (dict(matrix=np.zeros((2, 3)), row_labels=["a"]), "row_labels"),
    (dict(matrix=np.zeros((2, 3)), col_labels=["a", "b"]), "col_labels"),
    (dict(matrix=np.zeros((2, 3)), row_labels="ab"), "row_labels"),
    (dict(matrix=np.zeros((2, 3)), vmin=1, vmax=0), "vmin"),
    (dict(matrix=np.zeros((2, 3)), highlight=[(2, 0)]), "highlight"),
    (dict(matrix=np.zeros((2, 3)), highlight=[(0,)]), "highlight"),
    (dict(matrix=np.zeros((2, 3)), highlight=np.zeros((3, 2), bool)), "highlight"),
    (dict(matrix=np.zeros((2, 3)), cell=0), "cell"),
])
def test_heatmap_errors_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=rf"^{name}"):
        heatmap_svg(**kwargs)


def test_heatmap_shape_error_says_expected_and_actual():
    with pytest.raises(ValueError, match=r"row_labels: expected 2 labels.*got 3"):
        heatmap_svg(np.zeros((2, 2)), ["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match=r"matrix: expected at least one row.*\(0, 3\)"):
        heatmap_svg(np.zeros((0, 3)))


# ---------------------------------------------------------------------------
# charts

def test_bar_chart_bars_values_and_reference():
    labels, values = ["head 0", "head 1", "<h2>"], [0.5, -0.25, 1.0]
    s = bar_chart_svg(labels, values, fmt=".2f", reference=0.3, reference_label="chance",
                      highlight=[2], title="acc")
    assert "<h2>" not in s
    tree = svg_tree(s)
    bars = [r for r in tree.iter(SVG + "rect") if r.get("data-value")]
    assert [b.get("data-value") for b in bars] == ["0.50", "-0.25", "1.00"]
    for lab, v in zip(labels, ["0.50", "-0.25", "1.00"]):
        assert lab in texts(tree) and v in texts(tree)
    widths = [float(b.get("width")) for b in bars]
    assert widths[2] == pytest.approx(2 * widths[0], rel=1e-3)
    assert widths[1] == pytest.approx(widths[0] / 2, rel=1e-2)
    zero = float(bars[0].get("x"))                              # positive bars start at 0
    assert float(bars[1].get("x")) + widths[1] == pytest.approx(zero, abs=0.02)
    assert [b.get("fill") for b in bars].count("#e08000") == 1 and bars[2].get("fill") == "#e08000"
    assert "chance" in texts(tree)
    label = [t for t in tree.iter(SVG + "text") if t.text == "head 1"][0]
    value = [t for t in tree.iter(SVG + "text") if t.text == "-0.25"][0]
    assert float(label.get("x")) < float(value.get("x")) - 5 * len("-0.25")   # no overlap


def test_bar_chart_errors():
    with pytest.raises(ValueError, match="^labels: expected 2"):
        bar_chart_svg(["a"], [1, 2])
    with pytest.raises(ValueError, match="^values: expected at least one"):
        bar_chart_svg([], [])
    with pytest.raises(ValueError, match="^highlight"):
        bar_chart_svg(["a"], [1], highlight=[1])
    with pytest.raises(TypeError, match="^values"):
        bar_chart_svg(["a"], ["x"])


def test_line_chart_points_gaps_and_legend():
    x = [0, 1000, 2000, 3000]
    s = line_chart_svg(x, {"layer 0": [0.9, 0.6, None, 0.2], "<mean>": [0.5, 0.5, 0.4, 0.3]},
                       ylim=(0, 1), xlabel="step", ylabel="AER", fmt=".2f")
    assert "<mean>" not in s
    tree = svg_tree(s)
    groups = [g for g in tree.iter(SVG + "g") if g.get("class") == "pt-series"]
    assert [g.get("data-name") for g in groups] == ["layer 0", "<mean>"]
    assert len(groups[0].findall(SVG + "polyline")) == 2           # the gap splits the line
    pts = groups[0].findall(SVG + "circle")
    assert len(pts) == 3
    assert pts[0].find(SVG + "title").text == "layer 0 at 0: 0.90"
    ys = [float(p.get("cy")) for p in pts]
    assert ys[0] < ys[1] < ys[2]                                   # larger values higher up
    xs = [float(p.get("cx")) for p in pts]
    assert (xs[1] - xs[0]) * 2 == pytest.approx(xs[2] - xs[1], rel=1e-3)   # x = 0, 1000, 3000
    assert {"step", "AER", "layer 0", "<mean>"} <= set(texts(tree))


def test_line_chart_errors():
    with pytest.raises(ValueError, match=r"^series\['b'\]: expected 3 values.*got 2"):
        line_chart_svg([1, 2, 3], {"a": [1, 2, 3], "b": [1, 2]})
    with pytest.raises(ValueError, match="^series"):
        line_chart_svg([1, 2], {})
    with pytest.raises(ValueError, match="^ylim"):
        line_chart_svg([1, 2], {"a": [1, 2]}, ylim=(1, 0))
    with pytest.raises(ValueError, match="^x"):
        line_chart_svg([], {"a": []})
    with pytest.raises(ValueError, match="^x"):
        line_chart_svg([0, np.nan], {"a": [1, 2]})


# ---------------------------------------------------------------------------
# table

def test_table_formats_and_escapes():
    s = table_html(["relation", "head", "accuracy", "note"],
                   [["det->noun", 3, 0.912345, None], ["<adj>", np.int64(7), np.nan, True]],
                   number_format=[None, None, ".1%", None], highlight_rows=[0])
    assert "<adj>" not in s and "&lt;adj&gt;" in s
    tree = ET.fromstring(s)
    body = tree.find("tbody")
    cells_ = [[td.text for td in tr] for tr in body]
    assert cells_ == [["det->noun", "3", "91.2%", "\u2014"],
                      ["<adj>", "7", "n/a", "yes"]]
    classes = [[td.get("class") for td in tr] for tr in body]
    assert classes[0] == [None, "num", "num", None]
    assert body[0].get("class") == "pt-hl" and body[1].get("class") is None
    assert [th.text for th in tree.find("thead")[0]] == ["relation", "head", "accuracy", "note"]


def test_table_errors():
    with pytest.raises(ValueError, match=r"^rows\[1\]: expected 2 cells.*got 3"):
        table_html(["a", "b"], [[1, 2], [1, 2, 3]])
    with pytest.raises(ValueError, match="^headers"):
        table_html([], [])
    with pytest.raises(ValueError, match="^number_format"):
        table_html(["a", "b"], [[1, 2]], number_format=[".2f"])


# ---------------------------------------------------------------------------
# head view

def _hv_data(rows=("a", "b"), cols=("x", "y", "z"), layers=2, heads=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.random((layers, heads, len(rows), len(cols)))
    w /= w.sum(-1, keepdims=True)
    return {"kinds": {"cross": {"title": "cross", "rows": list(rows), "cols": list(cols),
                                "weights": list(w)}}}, w


def _embedded(fragment):
    m = re.search(r'<script type="application/json" class="pt-hv-data">(.*?)</script>',
                  fragment, re.S)
    return json.loads(m.group(1))


def test_head_view_embeds_rounded_weights_and_tokens():
    data, w = _hv_data()
    frag = head_view_html(data, id="hv1")
    assert f'class="{HEAD_VIEW_CLASS}" id="hv1"' in frag
    got = _embedded(frag)["kinds"]["cross"]
    assert got["rows"] == ["a", "b"] and got["cols"] == ["x", "y", "z"]
    assert got["layer_names"] == ["0", "1"]
    np.testing.assert_allclose(np.array(got["weights"]), w, atol=5e-5)
    assert "pytransformer explain: the interactive head view" in frag
    assert "pytransformer explain" not in head_view_html(data, include_script=False)


def test_head_view_hostile_tokens_cannot_break_the_page():
    data, _ = _hv_data(rows=HOSTILE[:2], cols=HOSTILE[2:5])
    frag = head_view_html(data, include_script=False)
    assert frag.count("</script>") == 1 and frag.count("<script") == 1
    assert "<b>" not in frag
    got = _embedded(frag)["kinds"]["cross"]
    assert got["rows"] == HOSTILE[:2] and got["cols"] == HOSTILE[2:5]


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(kinds={}), r"^data"),
    (lambda d: d.pop("kinds"), r"^data"),
    (lambda d: d["kinds"]["cross"].pop("cols"), r"^data\['kinds'\]\['cross'\]: missing 'cols'"),
    (lambda d: d["kinds"]["cross"].update(rows=[]),
     r"^data\['kinds'\]\['cross'\]: expected non-empty"),
    (lambda d: d["kinds"]["cross"].update(weights=[]),
     r"\['weights'\]: expected at least one layer"),
    (lambda d: d["kinds"]["cross"]["weights"].__setitem__(1, np.zeros((3, 2, 2))),
     r"^data\['kinds'\]\['cross'\]\['weights'\]\[1\]: expected shape \(heads, 2, 3\).*\(3, 2, 2\)"),
    (lambda d: d["kinds"]["cross"]["weights"].__setitem__(0, np.full((3, 2, 3), np.nan)),
     r"\['weights'\]\[0\]: expected finite"),
    (lambda d: d["kinds"]["cross"].update(layer_names=["only one"]), r"\['layer_names'\]"),
])
def test_head_view_errors_name_the_part(mutate, match):
    data, _ = _hv_data()
    mutate(data)
    with pytest.raises(ValueError, match=match):
        head_view_html(data)


@pytest.fixture(scope="module")
def batch_trace():
    from pytransformer.translator import Translator, default_model_path
    return trace(Translator.load(default_model_path()),
                 ["the black cat drank the milk", "the ball is blue"])


def test_head_view_data_from_a_trace_trims_padding(batch_trace):
    t = batch_trace
    for b in (0, 1):
        d = head_view_data(t, b)["kinds"]
        assert list(d) == t.kinds() == ["encoder", "decoder", "cross"]
        for kind, k in d.items():
            rows, cols = t.tokens(kind, b)
            assert k["rows"] == list(rows) and k["cols"] == list(cols)
            assert len(k["weights"]) == t.num_layers(kind)
            for layer, w in enumerate(k["weights"]):
                full = t.attention(kind, layer).weights[b]
                assert w.shape == (full.shape[0], len(rows), len(cols))
                np.testing.assert_array_equal(w, full[:, :len(rows), :len(cols)])
                np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)   # no padding left
    short = head_view_data(t, 1)["kinds"]["encoder"]
    assert short["rows"] == ["the", "ball", "is", "blue", "<eos>"]
    assert head_view_data(t, 0, kinds=["cross"])["kinds"].keys() == {"cross"}
    with pytest.raises(ValueError, match="^kinds"):
        head_view_data(t, 0, kinds=["bogus"])
    with pytest.raises(ValueError, match="^b: expected a sentence index in 0..1, got 2"):
        head_view_data(t, 2)
    frag = head_view_html(head_view_data(t, 1))                  # numpy weights are accepted
    assert _embedded(frag)["kinds"]["decoder"]["rows"][0] == "<bos>"


# ---------------------------------------------------------------------------
# the page

def _report():
    data, _ = _hv_data()
    rep = Report("Why <it> works", subtitle="model & sentence")
    rep.add_section("Head view", "Lines: <who> attends to whom.",
                    head_view_html(data, include_script=False))
    rep.add_section("Head view", "A second one, same title.", head_view_html(data))
    rep.add_section("Alignment", None, heatmap_svg(np.eye(2), ["a", "b"], ["c", "d"]), id="align")
    rep.add_section("Table", "t", table_html(["a"], [[1]]))
    return rep


def test_report_contents_captions_and_one_script():
    rep = _report()
    page = rep.to_html()
    assert page.startswith("<!DOCTYPE html>")
    ids = [s["id"] for s in rep.sections]
    assert ids == ["head-view", "head-view-2", "align", "table"]
    toc = re.search(r'<nav class="pt-toc">(.*?)</nav>', page, re.S).group(1)
    assert re.findall(r'href="#([^"]+)"', toc) == ids
    assert re.findall(r'<section class="pt-section" id="([^"]+)"', page) == ids
    assert "<title>Why &lt;it&gt; works</title>" in page and "model &amp; sentence" in page
    assert '<p class="pt-caption">Lines: &lt;who&gt; attends to whom.</p>' in page
    rep.add_section("Two paragraphs", "First.\n\nSecond.", "")
    assert '<p class="pt-caption">First.</p><p class="pt-caption">Second.</p>' in rep.to_html()
    assert page.count("pytransformer explain: the interactive head view") == 1
    assert page.count(f'<div class="{HEAD_VIEW_CLASS}" id=') == 2
    rep2 = Report("t")
    rep2.add_section("h", "c", head_view_html(_hv_data()[0], include_script=False))
    assert rep2.to_html().count("pytransformer explain: the interactive head view") == 1
    rep3 = Report("t")
    rep3.add_section("h", "c", table_html(["a"], [[1]]))
    assert "interactive head view" not in rep3.to_html()


def test_report_has_no_external_references():
    page = _report().to_html()
    assert not re.search(r"""(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert not re.search(r"@import|url\s*\(|<link\b|<iframe\b|<img\b|fetch\(|XMLHttpRequest|"
                         r"\.src\s*=|import\s*\(", page, re.I)
    # the only URLs are the SVG namespace (an identifier, never fetched)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_report_errors():
    rep = Report("t")
    rep.add_section("a", "c", "", id="x")
    with pytest.raises(ValueError, match="^id: 'x' is already used"):
        rep.add_section("b", "c", "", id="x")
    with pytest.raises(ValueError, match="^id"):
        rep.add_section("b", "c", "", id="has space")
    with pytest.raises(TypeError, match="^body_html: expected an HTML str, got int"):
        rep.add_section("b", "c", 3)
    with pytest.raises(ValueError, match="^title"):
        rep.add_section(" ", "c", "")
    with pytest.raises(ValueError, match="^title"):
        Report("")


def test_report_save_is_atomic_and_utf8(tmp_path):
    rep = _report()
    path = tmp_path / "r.html"
    path.write_text("old")
    assert rep.save(path) == path
    assert path.read_text(encoding="utf-8") == rep.to_html()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]      # no temporary left
    with pytest.raises(OSError):
        rep.save(tmp_path / "missing" / "r.html")


def test_repr_html_is_the_page_in_an_iframe():
    rep = _report()
    r = rep._repr_html_()
    m = re.fullmatch(r'<iframe srcdoc="([^"]*)" style="[^"]*" title="[^"]*"></iframe>', r)
    assert m and html.unescape(m.group(1)) == rep.to_html()


# ---------------------------------------------------------------------------
# PNG figures

def test_figures_need_matplotlib_and_say_how_to_install(monkeypatch):
    from pytransformer.explain import figures
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'pytransformer-cpu\[viz\]'"):
        figures.save_heatmap_png("unused.png", np.eye(2))


def test_figures_check_arguments_first(tmp_path):
    from pytransformer.explain import figures
    with pytest.raises(ValueError, match="^row_labels"):
        figures.save_heatmap_png(tmp_path / "a.png", np.eye(2), ["a"])
    with pytest.raises(ValueError, match="^matrix"):
        figures.save_heatmap_png(tmp_path / "a.png", np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"^series\['s'\]"):
        figures.save_line_png(tmp_path / "a.png", [1, 2], {"s": [1]})
    with pytest.raises(ValueError, match="^labels"):
        figures.save_bar_png(tmp_path / "a.png", ["a", "b"], [1])
    with pytest.raises(ValueError, match="^weights"):
        figures.save_attention_heads_png(tmp_path / "a.png", np.zeros((2, 2)), ["a"], ["b"])
    with pytest.raises(ValueError, match="^dpi"):
        figures.save_bar_png(tmp_path / "a.png", ["a"], [1], dpi=0)
    assert list(tmp_path.iterdir()) == []


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figures_write_pngs(tmp_path):
    pytest.importorskip("matplotlib", reason="PNG figures need matplotlib (the [viz] extra)")
    from pytransformer.explain import figures
    w = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 5))        # (H=3, R=5, C=4)
    out = [figures.save_heatmap_png(tmp_path / "h.png", w[0], list("abcde"), list("wxyz"),
                                    title="t", highlight=[(0, 0)], vmin=0, vmax=1),
           figures.save_heatmap_png(tmp_path / "d.png", w[0] - 0.25, annotate=False),
           figures.save_attention_heads_png(tmp_path / "heads.png", w, list("abcde"), list("wxyz")),
           figures.save_bar_png(tmp_path / "b.png", ["p", "q"], [0.5, -0.2], reference=0.1,
                                highlight=[0]),
           figures.save_line_png(tmp_path / "l.png", [0, 1, 2], {"s": [0.1, None, 0.3]},
                                 ylim=(0, 1))]
    sizes = [_png_size(p) for p in out]
    assert all(wd > 100 and ht > 50 for wd, ht in sizes)
    assert sizes[2][0] > 2 * sizes[0][0]                 # four panels side by side
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in out)
    data, _ = _hv_data(layers=2, heads=2)
    data["kinds"]["encoder"] = dict(data["kinds"]["cross"], layer_names=["first", "last/x"])
    paths = figures.save_head_view_pngs(tmp_path / "hv", data, dpi=50)
    assert [os.path.basename(p) for p in paths] == [
        "attention-cross-layer0.png", "attention-cross-layer1.png",
        "attention-encoder-layerfirst.png", "attention-encoder-layerlast_x.png"]
    assert all(_png_size(pathlib.Path(p))[0] > 100 for p in paths)


def test_head_view_initial_state():
    from pytransformer.explain.chart_data import check_head_view as _check_head_view
    w = [[[[1.0, 0.0], [0.5, 0.5]]], [[[0.0, 1.0], [1.0, 0.0]]]]     # 2 layers, 1 head
    data = {"kinds": {"cross": {"rows": ["a", "b"], "cols": ["x", "y"], "weights": w}}}
    assert "initial" not in _check_head_view(data)
    out = _check_head_view(dict(data, initial={"kind": "cross", "layer": -1}))
    assert out["initial"] == {"kind": "cross", "layer": 1, "head": "all"}
    for bad in ({"kind": "encoder"}, {"kind": "cross", "layer": 2},
                {"kind": "cross", "head": 3}, "cross"):
        with pytest.raises(ValueError, match="initial"):
            _check_head_view(dict(data, initial=bad))


def test_attention_png_has_a_colour_bar_and_axis_titles(tmp_path, monkeypatch):
    """Every head of an attention PNG shares one 0..1 colour bar labelled
    "attention weight", and both axes say what they hold."""
    pytest.importorskip("matplotlib", reason="PNG figures need matplotlib (the [viz] extra)")
    from pytransformer.explain import figures
    seen = {}
    real = figures._save

    def keep(fig, path, dpi):
        seen["labels"] = [ax.get_ylabel() for ax in fig.axes]
        seen["xlabel"] = fig._supxlabel.get_text() if fig._supxlabel else ""
        return real(fig, path, dpi)
    monkeypatch.setattr(figures, "_save", keep)
    w = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 5))
    figures.save_attention_heads_png(tmp_path / "a.png", w, list("abcde"), list("wxyz"))
    assert "attention weight" in seen["labels"]                  # the colour bar
    assert seen["labels"][0].startswith("query")
    assert seen["xlabel"].startswith("key")


def test_highlight_legend_fits_in_the_heatmap():
    """The outline's legend label ("gold alignment") lies inside the SVG's
    width, even for a narrow matrix."""
    import re
    from pytransformer.explain import html as H
    svg = H.heatmap_svg(np.eye(2), ["a", "b"], ["x", "y"], highlight=[(0, 0)],
                        highlight_label="gold alignment")
    width = float(re.search(r'width="([\d.]+)"', svg).group(1))
    m = re.search(r'<text x="([\d.]+)"[^>]*>gold alignment</text>', svg)
    assert m, svg[-400:]
    assert float(m.group(1)) + H._text_px("gold alignment") <= width


def test_head_importance_maps_share_one_colour_scale():
    """The per-kind head-importance maps use one scale: the legends of a
    small-valued and a large-valued table print the same end values."""
    import re
    from pytransformer.explain.analysis import _heads_heatmaps
    out = _heads_heatmaps({"encoder": [[0.0, 0.1]], "cross": [[0.5, 2.0]]}, "loss")
    ends = re.findall(r'font-size="10"[^>]*>([^<]+)</text>', out)
    assert len(ends) == 4 and ends[:2] == ends[2:], ends
