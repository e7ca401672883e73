"""Renderers for the explain report: one self-contained HTML file (inline
CSS, JS and SVG; no network, no external fonts; opens offline in any
browser and prints).

Every renderer returns an HTML fragment (a str) to put in a section body;
:class:`Report` assembles sections into the page::

    from pytransformer.explain import trace
    from pytransformer.explain.html import Report, head_view_data, head_view_html, heatmap_svg
    t = trace(translator, "the black cat drank the milk")
    rep = Report("Why it works: the black cat drank the milk")
    rep.add_section("Head view", "Each line joins a word (left) to a word it "
                    "attends to (right); the darker, the more weight.",
                    head_view_html(head_view_data(t)))
    a = t.attention("cross", -1)
    rows, cols = t.tokens("cross")
    rep.add_section("Cross-attention, last layer, head 0", "...",
                    heatmap_svg(a.weights[0, 0, :len(rows), :len(cols)], rows, cols))
    rep.save("report.html")

Fragments:

- :func:`heatmap_svg` -- a labelled matrix (attention, CKA, factor products),
  value on hover, optional numbers in cells, outlined highlight cells.
- :func:`bar_chart_svg` -- horizontal bars with labels and values.
- :func:`line_chart_svg` -- several series against x (AER over checkpoints,
  pruning curves).
- :func:`table_html` -- a table, numbers right-aligned in one format.
- :func:`head_view_html` -- the interactive head view (kind, layer, head,
  hover a word); :func:`head_view_data` builds its data from a Trace.
- :func:`format_number` -- the one number format every renderer uses.

All text (labels, titles, tokens, captions) is escaped; data for the head view
is embedded as JSON that cannot close its <script> element.
"""
import html as _html
import json
import math
import os

import numpy as np

from pytransformer._atomic import atomic_write
from pytransformer.explain import chart_data as D
from pytransformer.explain.chart_data import KIND_TITLES as _KIND_TITLES, format_number

__all__ = ["Report", "heatmap_svg", "bar_chart_svg", "line_chart_svg", "table_html",
           "head_view_html", "head_view_data", "format_number", "escape", "json_for_script",
           "view_fragment", "view_script",
           "HEAD_VIEW_CLASS"]

HEAD_VIEW_CLASS = "pt-headview"
_SCRIPT_MARKER = "pytransformer explain: the interactive head view"   # headview.js's first line
_FONT_PX = 12
_CHAR_PX = 7.0          # width estimate of one character at _FONT_PX (labels are short words)


# ---------------------------------------------------------------------------
# text and numbers

def escape(text):
    """HTML-escape str(text), quotes included (safe in text and attributes)."""
    return _html.escape(str(text), quote=True)


def json_for_script(obj):
    """json.dumps(obj) safe inside <script type="application/json">: '<', '>'
    and '&' (and U+2028/U+2029) are written as \\u escapes, so a string such
    as '</script>' in the data cannot end the element. NaN/Inf are refused
    (they are not JSON)."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(ch, rep)
    return s


def _text_px(text, font_px=_FONT_PX):
    return len(str(text)) * _CHAR_PX * font_px / _FONT_PX


def _fmt_attr(x):
    """A coordinate for SVG attributes: at most 2 decimals, no trailing zeros."""
    s = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


# ---------------------------------------------------------------------------
# colours

_SEQ = ((255, 255, 255), (8, 69, 148))                 # white -> dark blue
_DIV = ((178, 24, 43), (247, 247, 247), (33, 102, 172))  # red (negative) -> white -> blue


def _mix(c0, c1, t):
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(c0, c1))


def _color(value, vmin, vmax, diverging):
    """'rgb(r,g,b)' for value on the scale [vmin, vmax]; NaN -> light grey.
    Diverging scales are centred on 0 (negative red, positive blue)."""
    if not math.isfinite(value):
        if math.isnan(value):
            return "rgb(221,221,221)"
        value = vmax if value > 0 else vmin                    # +-Inf: the ends of the scale
    if diverging:
        m = max(abs(vmin), abs(vmax)) or 1.0
        t = max(-1.0, min(1.0, value / m))
        c = _mix(_DIV[1], _DIV[0], -t) if t < 0 else _mix(_DIV[1], _DIV[2], t)
    else:
        t = 0.5 if vmax == vmin else (value - vmin) / (vmax - vmin)
        c = _mix(_SEQ[0], _SEQ[1], max(0.0, min(1.0, t)))
    return f"rgb({c[0]},{c[1]},{c[2]})"


def _ink(fill):
    """Black or white text on a fill 'rgb(r,g,b)', whichever reads better."""
    r, g, b = (int(x) for x in fill[4:-1].split(","))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


# ---------------------------------------------------------------------------
# heat map

def _tag(name, text=None, **attrs):
    """One SVG element: attributes (trailing '_' dropped, other '_' -> '-')
    with numbers written by _fmt_attr and strings escaped; `text` escaped."""
    parts = [name]
    for k, v in attrs.items():
        if v is None:
            continue
        k = k.rstrip("_").replace("_", "-")
        if isinstance(v, (float, np.floating)):
            v = _fmt_attr(float(v))
        parts.append(f'{k}="{escape(v)}"')
    head = " ".join(parts)
    return f"<{head}/>" if text is None else f"<{head}>{escape(text)}</{name}>"


def _svg_open(cls, width, height, title=None):
    """The <svg> start tag (and the bold title line) of a figure."""
    w, h = _fmt_attr(width), _fmt_attr(height)
    out = (f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" '
           f'height="{h}" viewBox="0 0 {w} {h}" font-size="{_FONT_PX}">')
    if title:
        out += _tag("title", title) + _tag("text", title, x=0, y=15, font_weight="bold")
    return out


def _rotated(text, x, y, angle, **attrs):
    """Text rotated by `angle` degrees about (x, y)."""
    return _tag("text", text, x=float(x), y=float(y),
                transform=f"rotate({angle} {_fmt_attr(x)} {_fmt_attr(y)})", **attrs)


def heatmap_svg(matrix, row_labels=None, col_labels=None, title=None, vmin=None, vmax=None,
                highlight=None, annotate=None, fmt=".2f", diverging=None, cell=None,
                row_axis=None, col_axis=None, highlight_label="highlighted"):
    """A heat map of a 2-D matrix as inline SVG (a str).

    matrix (R, C): numbers (NaN cells are grey, 'n/a'). row_labels (R) and
    col_labels (C): the words on the axes (default 0..R-1 / 0..C-1); column
    labels are written slanted above the columns. vmin/vmax: the colour
    scale (default the data's finite min/max; for attention weights pass
    vmin=0, vmax=1). diverging: a red-white-blue scale centred on 0 (default:
    True when the data has both signs). Every cell shows 'row \u2192 col: value'
    on hover (an SVG <title>); annotate=True also prints the values in the
    cells (default: when the matrix has at most 400 cells) with format `fmt`.
    highlight: cells to outline (a boolean mask of the matrix's shape or
    (row, col) pairs), e.g. gold alignment links; `highlight_label` names
    them in the legend. row_axis/col_axis: axis titles (e.g. 'query (target
    word)'). cell: cell size in px (default 40 when annotated, else 22)."""
    m, rows, cols, hl, vmin, vmax, diverging, annotate = D.heatmap_inputs(
        matrix, row_labels, col_labels, highlight, vmin, vmax, diverging, annotate)
    R, C = m.shape
    cell = float((40 if annotate else 22) if cell is None else cell)
    if not cell > 0:
        raise ValueError(f"cell: expected a positive size in px, got {cell}")

    head = 24 if title else 6                       # room for the title line
    left = max(_text_px(r) for r in rows) + 10 + (18 if row_axis else 0)
    slant = max(_text_px(c) for c in cols) * 0.72 + 10   # column labels at 45 degrees
    top = slant + head + (18 if col_axis else 0)
    width = left + C * cell + max(20.0, slant * 0.72)
    if title:                                       # the bold title must fit too
        width = max(width, _text_px(title) * 1.1 + 10)
    lw = min(160.0, max(80.0, C * cell))            # the colour legend's width
    if hl.any():                                    # and the outline's label after it
        width = max(width, left + lw + 34 + _text_px(highlight_label) + 10)
    height = top + R * cell + 40                    # + the legend
    out = [_svg_open("pt-heatmap", width, height, title)]
    if col_axis:
        out.append(_tag("text", col_axis, x=left + C * cell / 2, y=float(head + 12),
                        text_anchor="middle", fill="#555"))
    if row_axis:
        out.append(_rotated(row_axis, 12, top + R * cell / 2, -90, text_anchor="middle",
                            fill="#555"))
    for j, c in enumerate(cols):
        out.append(_rotated(c, left + (j + 0.5) * cell, top - 6, -45, class_="pt-col"))
    for i, r in enumerate(rows):
        out.append(_tag("text", r, class_="pt-row", x=left - 6, y=top + (i + 0.5) * cell,
                        text_anchor="end", dominant_baseline="central"))
    for i in range(R):
        y = top + i * cell
        for j in range(C):
            x = left + j * cell
            fill = _color(float(m[i, j]), vmin, vmax, diverging)
            txt = format_number(float(m[i, j]), fmt)
            out.append("<g>" + _tag("title", f"{rows[i]} \u2192 {cols[j]}: {txt}")
                       + _tag("rect", x=x, y=y, width=cell, height=cell, fill=fill,
                              data_value=txt))
            if annotate:
                out.append(_tag("text", txt, x=x + cell / 2, y=y + cell / 2, text_anchor="middle",
                                dominant_baseline="central", font_size=11, fill=_ink(fill)))
            out.append("</g>")
    for i, j in zip(*np.nonzero(hl)):
        out.append(_tag("rect", class_="pt-highlight", x=left + j * cell + 1,
                        y=top + i * cell + 1, width=cell - 2, height=cell - 2, fill="none",
                        stroke="#e08000", stroke_width=2.5))
    # legend: the colour scale (and what the outline means)
    ly = top + R * cell + 14
    mag = max(abs(vmin), abs(vmax))
    lo, hi = (-mag, mag) if diverging else (vmin, vmax)
    steps = 40
    for s in range(steps):
        v = lo + (hi - lo) * (s + 0.5) / steps
        out.append(_tag("rect", x=left + lw * s / steps, y=ly, width=lw / steps + 0.5, height=8,
                        fill=_color(v, vmin, vmax, diverging)))
    out.append(_tag("rect", x=left, y=ly, width=lw, height=8, fill="none", stroke="#999",
                    stroke_width=0.5))
    out.append(_tag("text", format_number(lo, fmt), x=left, y=ly + 20, font_size=10))
    out.append(_tag("text", format_number(hi, fmt), x=left + lw, y=ly + 20, font_size=10,
                    text_anchor="end"))
    if hl.any():
        hx = left + lw + 16
        out.append(_tag("rect", x=hx, y=ly - 2, width=12, height=12, fill="none",
                        stroke="#e08000", stroke_width=2.5))
        out.append(_tag("text", highlight_label, x=hx + 18, y=ly + 8, font_size=10))
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------
# charts

def _nice_ticks(lo, hi, n=5):
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi == lo:
        lo, hi = (lo - 1, hi + 1) if lo == 0 else (lo - abs(lo) * 0.5, hi + abs(hi) * 0.5)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=10 * mag)
    ticks = [round(math.floor(lo / step) * step, 12)]
    while ticks[-1] < hi - step * 1e-9 and len(ticks) < 50:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def bar_chart_svg(labels, values, title=None, xlabel=None, fmt=".3g", reference=None,
                  reference_label=None, highlight=None, bar_px=18, width=520):
    """Horizontal bars as inline SVG (a str): one bar per label, the value
    printed at its end (format `fmt`) and on hover. Negative values extend
    left of a zero line. reference: a value drawn as a dashed vertical line
    (e.g. a baseline or chance), named by reference_label. highlight: indices
    of bars to colour orange (e.g. the best head). xlabel: what the values
    are. NaN values show 'n/a' and no bar."""
    v = D.check_vector(values, "values")
    labs = D.check_labels(labels, v.size, "labels")
    hl = D.bar_indices(highlight, v.size)
    fin = v[np.isfinite(v)]
    lo = min(0.0, float(fin.min()) if fin.size else 0.0)
    hi = max(0.0, float(fin.max()) if fin.size else 1.0)
    if reference is not None:
        lo, hi = min(lo, float(reference)), max(hi, float(reference))
    ticks = _nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    left = max(_text_px(s) for s in labs) + 10
    label_x = left - 6                          # labels end here, left of any value text
    if fin.size and fin.min() < 0:              # room for the values left of negative bars
        left += 8 + max(_text_px(format_number(float(x), fmt), 10) for x in fin if x < 0)
    plot_w = max(60.0, float(width) - left - 50)
    top = 24 if title else 6
    bottom = top + v.size * bar_px
    height = bottom + 40 + (16 if xlabel else 0)

    def X(x):
        return left + (x - lo) / (hi - lo) * plot_w

    out = [_svg_open("pt-bars", left + plot_w + 50, height, title)]
    for t in ticks:
        out.append(_tag("line", x1=X(t), x2=X(t), y1=top, y2=bottom, stroke="#e4e4e4"))
        out.append(_tag("text", format_number(t, ".4g"), x=X(t), y=bottom + 14, font_size=10,
                        text_anchor="middle"))
    for i, (lab, x) in enumerate(zip(labs, v)):
        y = top + i * bar_px
        txt = format_number(float(x), fmt)
        out.append("<g>" + _tag("title", f"{lab}: {txt}")
                   + _tag("text", lab, x=label_x, y=y + bar_px / 2, text_anchor="end",
                          dominant_baseline="central"))
        if math.isfinite(x):
            x0, x1 = sorted((X(0.0), X(float(x))))
            out.append(_tag("rect", x=x0, y=y + 2, width=max(x1 - x0, 0.5), height=bar_px - 4,
                            fill="#e08000" if i in hl else "#3a6ea5", data_value=txt))
            tx, anchor = (x1 + 4, "start") if x >= 0 else (x0 - 4, "end")
        else:
            tx, anchor = X(0.0) + 4, "start"
        out.append(_tag("text", txt, x=tx, y=y + bar_px / 2, text_anchor=anchor,
                        dominant_baseline="central", font_size=10) + "</g>")
    out.append(_tag("line", x1=X(0.0), x2=X(0.0), y1=top, y2=bottom, stroke="#333"))
    if reference is not None:
        rx, name = X(float(reference)), reference_label or "reference"
        out.append("<g>" + _tag("title", f"{name}: {format_number(float(reference), fmt)}")
                   + _tag("line", x1=rx, x2=rx, y1=top - 4, y2=bottom, stroke="#c0392b",
                          stroke_dasharray="4 3", stroke_width=1.5) + "</g>")
        out.append(_tag("text", name, x=rx, y=bottom + 26, font_size=10, fill="#c0392b",
                        text_anchor="middle"))
    if xlabel:
        out.append(_tag("text", xlabel, x=left + plot_w / 2, y=height - 4, text_anchor="middle",
                        fill="#555"))
    out.append("</svg>")
    return "".join(out)


_SERIES_COLORS = ("#3a6ea5", "#e08000", "#2e8b57", "#c0392b", "#7b4fa0", "#8c564b", "#d6589f",
                  "#555555", "#17becf", "#9c9c00")


def line_chart_svg(x, series, title=None, xlabel=None, ylabel=None, ylim=None, fmt=".3g",
                   width=560, height=300, markers=True):
    """Lines as inline SVG (a str): x (N numbers, e.g. training steps or the
    number of heads pruned) and series {name: N values} (None/NaN = a gap),
    with axes, round ticks, a legend and each point's value on hover
    (format `fmt`). ylim: (low, high) of the y axis (default the data's
    range, e.g. (0, 1) for AER)."""
    xs = D.check_vector(x, "x")
    if not np.all(np.isfinite(xs)):
        raise ValueError("x: expected finite numbers, got NaN or Inf")
    data = D.check_series(xs, series)
    allv = np.concatenate(list(data.values()))
    fin = allv[np.isfinite(allv)]
    if ylim is not None:
        ylo, yhi = D.check_ylim(ylim)
        yt = [t for t in _nice_ticks(ylo, yhi) if ylo - 1e-12 <= t <= yhi + 1e-12]
    else:
        ylo, yhi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
        yt = _nice_ticks(ylo, yhi)
        ylo, yhi = min(ylo, yt[0]), max(yhi, yt[-1])
    xlo, xhi = float(xs.min()), float(xs.max())
    if xlo == xhi:
        xlo, xhi = xlo - 1, xhi + 1
    xt = [t for t in _nice_ticks(xlo, xhi) if xlo - 1e-12 <= t <= xhi + 1e-12]
    left = 56 + (16 if ylabel else 0)
    top = 26 if title else 10
    legend_w = max(_text_px(n) for n in data) + 30
    plot_w = float(width) - left - legend_w - 10
    plot_h = float(height) - top - 36 - (16 if xlabel else 0)
    if plot_w < 60 or plot_h < 40:
        raise ValueError(f"width/height: {width}x{height} px leaves no room for the plot")

    def X(v):
        return left + (v - xlo) / (xhi - xlo) * plot_w

    def Y(v):
        return top + plot_h - (v - ylo) / (yhi - ylo) * plot_h

    base = top + plot_h
    out = [_svg_open("pt-lines", width, height, title)]
    for t in yt:
        out.append(_tag("line", x1=left, x2=left + plot_w, y1=Y(t), y2=Y(t), stroke="#e4e4e4"))
        out.append(_tag("text", format_number(t, ".4g"), x=left - 6, y=Y(t), text_anchor="end",
                        dominant_baseline="central", font_size=10))
    for t in xt:
        out.append(_tag("line", x1=X(t), x2=X(t), y1=base, y2=base + 4, stroke="#333"))
        out.append(_tag("text", format_number(t, ".4g"), x=X(t), y=base + 16,
                        text_anchor="middle", font_size=10))
    out.append(_tag("rect", x=left, y=top, width=plot_w, height=plot_h, fill="none",
                    stroke="#333"))
    for k, (name, ys) in enumerate(data.items()):
        col = _SERIES_COLORS[k % len(_SERIES_COLORS)]
        segs, cur = [], []                      # runs of finite points (NaN = a gap)
        for xv, yv in zip(xs, ys):
            if math.isfinite(yv):
                cur.append(f"{_fmt_attr(X(xv))},{_fmt_attr(Y(yv))}")
            elif cur:
                segs.append(cur)
                cur = []
        if cur:
            segs.append(cur)
        out.append(f'<g class="pt-series" data-name="{escape(name)}">')
        for s in segs:
            out.append(_tag("polyline", fill="none", stroke=col, stroke_width=2,
                            points=" ".join(s)))
        if markers:
            for xv, yv in zip(xs, ys):
                if math.isfinite(yv):
                    tip = f"{name} at {format_number(float(xv), '.6g')}: {format_number(yv, fmt)}"
                    out.append(f'<circle cx="{_fmt_attr(X(xv))}" cy="{_fmt_attr(Y(yv))}" r="3" '
                               f'fill="{col}">{_tag("title", tip)}</circle>')
        out.append("</g>")
        lx, ly = left + plot_w + 12, top + 8 + k * 18
        out.append(_tag("line", x1=lx, x2=lx + 14, y1=ly, y2=ly, stroke=col, stroke_width=2))
        out.append(_tag("text", name, x=lx + 18, y=ly, dominant_baseline="central"))
    if xlabel:
        out.append(_tag("text", xlabel, x=left + plot_w / 2, y=height - 4, text_anchor="middle",
                        fill="#555"))
    if ylabel:
        out.append(_rotated(ylabel, 12, top + plot_h / 2, -90, text_anchor="middle", fill="#555"))
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------
# table

def table_html(headers, rows, number_format=".3g", caption=None, highlight_rows=()):
    """A table (a str): headers (the column names) and rows (sequences of
    the same length). Numbers are right-aligned and written by
    :func:`format_number` with `number_format` (one format spec or callable,
    or a sequence of them, one per column; None keeps the default); text is
    escaped. caption: a line above the table. highlight_rows: indices of
    rows to emphasise."""
    heads = [str(h) for h in headers]
    if not heads:
        raise ValueError("headers: expected at least one column name, got none")
    n = len(heads)
    if isinstance(number_format, (str, type(None))) or callable(number_format):
        fmts = [number_format or ".3g"] * n
    else:
        fmts = list(number_format)
        if len(fmts) != n:
            raise ValueError(f"number_format: expected one format per column ({n}), "
                             f"got {len(fmts)}")
        fmts = [f or ".3g" for f in fmts]
    hl = {int(i) for i in highlight_rows}
    out = ['<table class="pt-table">']
    if caption:
        out.append(f'<caption>{escape(caption)}</caption>')
    out.append('<thead><tr>' + "".join(f'<th scope="col">{escape(h)}</th>' for h in heads)
               + '</tr></thead><tbody>')
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != n:
            raise ValueError(f"rows[{i}]: expected {n} cells to match headers, got {len(row)}")
        cls = ' class="pt-hl"' if i in hl else ""
        cells = []
        for x, f in zip(row, fmts):
            num = (isinstance(x, (int, float, np.integer, np.floating))
                   and not isinstance(x, (bool, np.bool_)))
            cells.append(f'<td class="num">{escape(format_number(x, f))}</td>' if num
                         else f'<td>{escape(format_number(x, f))}</td>')
        out.append(f'<tr{cls}>' + "".join(cells) + '</tr>')
    out.append('</tbody></table>')
    return "".join(out)


# ---------------------------------------------------------------------------
# head view

def _views():
    """(element class, script marker, script loader) of each interactive view."""
    from pytransformer.explain import walkthrough as W
    return ((HEAD_VIEW_CLASS, _SCRIPT_MARKER, _head_view_script),
            (W.WALKTHROUGH_CLASS, W.SCRIPT_MARKER, W.walkthrough_script))


def view_script(filename):
    """The text of an interactive view's JavaScript file, shipped beside
    this module (headview.js, walkthrough.js)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
    with open(path, encoding="utf-8") as f:
        return f.read()


def _head_view_script():
    """The head view's JavaScript."""
    return view_script("headview.js")



def head_view_html(data, id=None, include_script=True):
    """The interactive head view (an HTML fragment with its data as JSON).

    data: {"kinds": {kind: {"title": str, "rows": [tokens], "cols": [tokens],
    "weights": [layer][head][row][col]}}}, kinds e.g. 'encoder', 'decoder',
    'cross' (see :func:`head_view_data`; optional "layer_names" per kind;
    optional "initial": {"kind", "layer", "head"} chooses the first view).
    The page shows controls for kind, layer and head (or the mean of all
    heads), the query words (rows) on the left and the attended words
    (cols) on the right joined by lines whose opacity is the weight, and
    the chosen head's heat map beside them; hovering a word shows only its
    lines. Weights are rounded to 4 decimals. id: the element id (default
    a fresh 'pt-hv-N'). include_script: embed headview.js in the fragment
    (needed where the fragment stands alone, e.g. in Jupyter; several
    copies on one page are harmless). In a :class:`Report` pass
    include_script=False: the page then carries the script once."""
    return view_fragment(HEAD_VIEW_CLASS, "pt-hv", D.check_head_view(data), "The head view",
                         _head_view_script if include_script else None, id)


_VIEW_COUNTER = [0]


def view_fragment(view_class, prefix, payload, name, script=None, id=None):
    """An interactive view as an HTML fragment: <div class=view_class> with
    its data as JSON (<script class="{prefix}-data">), a <noscript> line
    naming the view, and the view's script when `script` (a function
    returning it) is given. id: the element id (default '{prefix}-N')."""
    if id is None:
        _VIEW_COUNTER[0] += 1
        id = f"{prefix}-{_VIEW_COUNTER[0]}"
    parts = [f'<div class="{view_class}" id="{escape(str(id))}">'
             f'<script type="application/json" class="{prefix}-data">'
             f'{json_for_script(payload)}</script>'
             f'<noscript>{escape(name)} needs JavaScript.</noscript></div>']
    if script is not None:
        parts.append(f"<script>{script()}</script>")
    return "".join(parts)


def head_view_data(trace, b=0, kinds=None):
    """Head-view data (for :func:`head_view_html`) from a Trace: for each
    attention kind recorded (or those in `kinds`), its title, the tokens of
    sentence b as rows (queries) and cols (keys), and the weights
    [layer][head][row][col] of sentence b with padding trimmed (to the
    length of the token lists)."""
    have = trace.kinds()
    if kinds is None:
        kinds = have
    out = {}
    for kind in kinds:
        if kind not in have:
            raise ValueError(f"kinds: {kind!r} was not recorded; the trace has {have}")
    if have:
        n = trace.attention(have[0], 0).weights.shape[0]
        if not (isinstance(b, (int, np.integer)) and 0 <= b < n):
            raise ValueError(f"b: expected a sentence index in 0..{n - 1}, got {b!r}")
    for kind in kinds:
        rows, cols = trace.tokens(kind, b)
        layers = [trace.attention(kind, layer).weights[b, :, :len(rows), :len(cols)]
                  for layer in range(trace.num_layers(kind))]
        out[kind] = {"title": _KIND_TITLES.get(kind, kind), "rows": list(rows), "cols": list(cols),
                     "weights": layers}
    return {"kinds": out}


# ---------------------------------------------------------------------------
# the report page

_CSS = """
:root{--ink:#1d1d1f;--muted:#5b5b66;--line:#d8d8de;--accent:#3a6ea5;--hl:#e08000}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;
  font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 20px 64px}
h1{font-size:1.7em;line-height:1.2;margin:.4em 0 .2em}
h2{font-size:1.3em;margin:0 0 .3em;padding-top:.6em;border-top:1px solid var(--line)}
.pt-sub{color:var(--muted);margin:0 0 1em}
nav.pt-toc{background:#f6f6f8;border:1px solid var(--line);border-radius:6px;
  padding:.6em 1em;margin:1em 0 2em}
nav.pt-toc ol{margin:.3em 0;padding-left:1.4em}
nav.pt-toc a{color:var(--accent);text-decoration:none}
nav.pt-toc a:hover{text-decoration:underline}
section.pt-section{margin:0 0 2.2em}
.pt-caption{color:var(--muted);max-width:48em;margin:.2em 0 .9em}
.pt-body{overflow-x:auto}
.pt-body svg{display:inline-block;margin:4px 12px 12px 0;vertical-align:top;
  font-family:inherit;overflow:visible}
table.pt-table{border-collapse:collapse;font-size:.9em;margin:.4em 0 1em;
  font-variant-numeric:tabular-nums}
table.pt-table caption{text-align:left;color:var(--muted);padding-bottom:.3em}
table.pt-table th,table.pt-table td{border-bottom:1px solid var(--line);padding:.25em .7em;
  text-align:left}
table.pt-table th{border-bottom:2px solid #999;background:#f6f6f8}
table.pt-table td.num{text-align:right}
table.pt-table tr.pt-hl td{background:#fff3e0;font-weight:600}
.pt-headview{margin:.4em 0}
.pt-hv-controls{display:flex;flex-wrap:wrap;gap:.6em 1.2em;align-items:center;
  margin-bottom:.5em;font-size:.92em}
.pt-hv-controls select{font:inherit;padding:.1em .3em}
.pt-hv-status{color:var(--muted);font-size:.9em;margin:.2em 0 .4em}
.pt-hv-panes{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.pt-hv-word{cursor:pointer}
.pt-wt-table{border-collapse:collapse;font-size:.85em;margin:.3em 0 .6em}
.pt-wt-table th,.pt-wt-table td{border:1px solid var(--line);padding:.15em .45em;text-align:right;
  font-variant-numeric:tabular-nums;white-space:nowrap}
.pt-wt-table thead th{text-align:center}
.pt-wt-matrix tbody tr{cursor:pointer}
.pt-wt-matrix tr.pt-wt-sel{outline:2.5px solid var(--hl)}
.pt-wt-masked{color:#aaa;text-align:center}
.pt-wt-best{font-weight:bold;color:var(--hl)}
.pt-wt-total{font-weight:bold;border-top:2px solid var(--ink)}
.pt-walkthrough h3{font-size:1em;margin:.8em 0 .2em}
.pt-hv-word.pt-active{font-weight:bold;fill:var(--hl)}
footer{color:var(--muted);font-size:.85em;border-top:1px solid var(--line);
  margin-top:3em;padding-top:.8em}
@media print{
  body{font-size:11pt}
  main{max-width:none;padding:0}
  nav.pt-toc{break-after:page}
  section.pt-section{break-inside:avoid-page}
  .pt-hv-controls select{border:none;appearance:none}
  a{color:inherit}
}
"""

_ERROR_HOOK = ("window.__ptErrors=[];window.addEventListener('error',function(e){"
               "window.__ptErrors.push(String(e.message||e));});")


def _slug(text, used):
    base = "".join(c if c.isalnum() else "-" for c in str(text).lower()).strip("-")
    base = "-".join(filter(None, base.split("-")))[:48] or "section"
    slug, k = base, 2
    while slug in used:
        slug, k = f"{base}-{k}", k + 1
    return slug


class Report:
    """A self-contained HTML report: a title, a table of contents and
    sections, each with a plain-language caption under its heading.

    rep = Report("title", subtitle="model, sentence"); rep.add_section(...);
    rep.to_html() -> the page (str); rep.save(path) writes it atomically;
    in Jupyter the report displays itself (``_repr_html_``, in an iframe so
    the page's style and script stay apart from the notebook's)."""

    def __init__(self, title, subtitle=None):
        if not str(title).strip():
            raise ValueError("title: expected a non-empty title")
        self.title = str(title)
        self.subtitle = None if subtitle is None else str(subtitle)
        self.sections = []          # dicts: id, title, caption, body

    def add_section(self, title, caption, body_html, id=None):
        """Add a section: title (heading, escaped), caption (plain text,
        escaped: what the view shows and how to read it), body_html (an HTML
        fragment from the renderers, inserted as is; several fragments can
        simply be concatenated) and an optional anchor id (default made from
        the title, unique). A blank line in the caption starts a new
        paragraph. Returns the id."""
        if not str(title).strip():
            raise ValueError("title: expected a non-empty section title")
        if not isinstance(body_html, str):
            raise TypeError(f"body_html: expected an HTML str, got {type(body_html).__name__}")
        used = {s["id"] for s in self.sections}
        if id is None:
            id = _slug(title, used)
        else:
            id = str(id)
            if not id or any(c.isspace() for c in id):
                raise ValueError(f"id: expected a non-empty id without spaces, got {id!r}")
            if id in used:
                raise ValueError(f"id: {id!r} is already used by another section")
        self.sections.append({"id": id, "title": str(title), "body": body_html,
                              "caption": "" if caption is None else str(caption)})
        return id

    def to_html(self):
        """The whole page as a str (UTF-8 HTML5, everything inline)."""
        toc = "".join(f'<li><a href="#{escape(s["id"])}">{escape(s["title"])}</a></li>'
                      for s in self.sections)
        body = []
        for s in self.sections:
            cap = "".join(f'<p class="pt-caption">{escape(p.strip())}</p>'
                          for p in s["caption"].split("\n\n") if p.strip())
            body.append(f'<section class="pt-section" id="{escape(s["id"])}">'
                        f'<h2>{escape(s["title"])}</h2>{cap}'
                        f'<div class="pt-body">{s["body"]}</div></section>')
        # each interactive view's script once, unless a fragment already carries it
        script = "".join(f"<script>{load()}</script>" for cls, marker, load in _views()
                         if any(f'class="{cls}"' in s["body"] for s in self.sections)
                         and not any(marker in s["body"] for s in self.sections))
        sub = f'<p class="pt-sub">{escape(self.subtitle)}</p>' if self.subtitle else ""
        nav = (f'<nav class="pt-toc"><strong>Contents</strong><ol>{toc}</ol></nav>'
               if self.sections else "")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{escape(self.title)}</title><style>{_CSS}</style>"
                f"<script>{_ERROR_HOOK}</script></head><body><main>"
                f"<h1>{escape(self.title)}</h1>{sub}{nav}{''.join(body)}"
                "<footer>Made by pytransformer.explain. Self-contained: no network needed.</footer>"
                f"</main>{script}</body></html>\n")

    def save(self, path):
        """Write the page to `path` (UTF-8) atomically; returns the path."""
        atomic_write(path, [self.to_html().encode("utf-8")])
        return path

    def _repr_html_(self):
        """Jupyter: the page in an iframe (srcdoc), isolated from the notebook."""
        return (f'<iframe srcdoc="{escape(self.to_html())}" style="width:100%;height:720px;'
                f'border:1px solid #ddd" title="{escape(self.title)}"></iframe>')
