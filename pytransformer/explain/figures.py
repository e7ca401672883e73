"""The explain report's figures as PNG files (for papers and notebooks),
drawn with matplotlib -- an optional dependency: ``pip install
'pytransformer-cpu[viz]'``. Each function takes the same data as its HTML
counterpart in :mod:`pytransformer.explain.html`, checks it the same way,
writes the PNG atomically and returns the path:

- :func:`save_heatmap_png`       <-> html.heatmap_svg
- :func:`save_bar_png`           <-> html.bar_chart_svg
- :func:`save_line_png`          <-> html.line_chart_svg
- :func:`save_attention_heads_png`: one layer of attention as a row of heat
  maps (every head, then their mean);
- :func:`save_head_view_pngs`: that figure for every kind and layer of
  head-view data (html.head_view_data), the static form of the head view.
"""
import io
import math
import os

import numpy as np

from pytransformer._atomic import atomic_write
from pytransformer.explain import chart_data as D
from pytransformer.explain.chart_data import format_number

__all__ = ["save_heatmap_png", "save_bar_png", "save_line_png", "save_attention_heads_png",
           "save_head_view_pngs", "require_matplotlib"]

_HL = "#e08000"


def require_matplotlib():
    """matplotlib.pyplot with the file-only Agg backend, or an ImportError
    that says how to install it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("PNG figures need matplotlib: pip install 'pytransformer-cpu[viz]' "
                          f"(or pip install matplotlib); import failed: {e}") from None
    return plt


def _save(fig, path, dpi):
    plt = require_matplotlib()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write(path, [buf.getvalue()])
    return path


def _check_dpi(dpi):
    if not (isinstance(dpi, (int, float)) and dpi > 0):
        raise ValueError(f"dpi: expected a positive number, got {dpi!r}")


def _draw_heatmap(ax, m, rows, cols, vmin, vmax, diverging, annotate, fmt, hl, cmap=None):
    """One heat map on ax; returns the image (for a colour bar)."""
    if diverging:
        mag = max(abs(vmin), abs(vmax)) or 1.0
        vmin, vmax, cmap = -mag, mag, cmap or "RdBu"
    import matplotlib
    cm = matplotlib.colormaps[cmap or "Blues"].with_extremes(bad="#dddddd")   # NaN cells grey
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cm, vmin=vmin, vmax=vmax,
                   aspect="equal", interpolation="nearest")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=45, ha="left", rotation_mode="anchor")
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.tick_params(length=0)
    if annotate:
        mid = (vmin + vmax) / 2
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m[i, j]
                dark = (abs(v) > 0.5 * max(abs(vmin), abs(vmax))) if diverging else v > mid
                ax.text(j, i, format_number(float(v), fmt), ha="center", va="center", fontsize=7,
                        color="white" if dark and math.isfinite(v) else "black")
    if hl.any():
        from matplotlib.patches import Rectangle
        for i, j in zip(*np.nonzero(hl)):
            ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor=_HL,
                                   linewidth=2))
    return im


def save_heatmap_png(path, matrix, row_labels=None, col_labels=None, title=None, vmin=None,
                     vmax=None, highlight=None, annotate=None, fmt=".2f", diverging=None,
                     row_axis=None, col_axis=None, dpi=150):
    """A heat map of a 2-D matrix as a PNG at `path` (arguments as
    html.heatmap_svg: labels on the axes, vmin/vmax, a diverging scale
    centred on 0 when the data has both signs, values printed in the cells
    when annotate (default: at most 400 cells), highlight cells outlined in
    orange). Returns path."""
    m, rows, cols, hl, vmin, vmax, diverging, annotate = D.heatmap_inputs(
        matrix, row_labels, col_labels, highlight, vmin, vmax, diverging, annotate)
    _check_dpi(dpi)
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * m.shape[1], 1.2 + 0.42 * m.shape[0]))
    im = _draw_heatmap(ax, m, rows, cols, vmin, vmax, diverging, annotate, fmt, hl)
    fig.colorbar(im, ax=ax, shrink=0.7)
    if title:
        ax.set_title(title, pad=40 + 5 * max(len(c) for c in cols), fontsize=10)
    if row_axis:
        ax.set_ylabel(row_axis)
    if col_axis:
        ax.set_xlabel(col_axis)
    return _save(fig, path, dpi)


def save_attention_heads_png(path, weights, row_labels, col_labels, title=None, dpi=150,
                             row_axis="query (the word attending)",
                             col_axis="key (the word attended to)"):
    """One layer of attention, weights (H, R, C), as a row of H + 1 heat maps
    (each head, then the mean over heads) on one 0..1 scale shown by a
    colour bar, words on the axes, row_axis/col_axis naming them. Returns
    path."""
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"weights: expected an (H, R, C) array of numbers ({e})") from None
    if w.ndim != 3 or w.size == 0:
        raise ValueError(f"weights: expected a non-empty (heads, rows, cols) array, "
                         f"got shape {w.shape}")
    rows = D.check_labels(row_labels, w.shape[1], "row_labels")
    cols = D.check_labels(col_labels, w.shape[2], "col_labels")
    _check_dpi(dpi)
    plt = require_matplotlib()
    H = w.shape[0]
    fig, axes = plt.subplots(1, H + 1, figsize=((H + 1) * (0.8 + 0.3 * w.shape[2]),
                                                1.4 + 0.3 * w.shape[1]), squeeze=False,
                             layout="constrained")   # room for titles and rotated labels
    none = np.zeros(w.shape[1:], bool)
    for h, ax in enumerate(axes[0]):
        m = w[h] if h < H else w.mean(0)
        im = _draw_heatmap(ax, m, rows, cols, 0.0, 1.0, False, False, ".2f", none)
        ax.set_xlabel(f"head {h}" if h < H else "mean of heads")
        if h:
            ax.set_yticklabels([])
        elif row_axis:
            ax.set_ylabel(row_axis)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="attention weight")
    if col_axis:
        fig.supxlabel(col_axis)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def save_head_view_pngs(directory, data, prefix="attention", dpi=150):
    """Head-view data (as for html.head_view_html, e.g. from
    html.head_view_data(trace)) as PNGs in `directory` (created if missing):
    one file per kind and layer, ``<prefix>-<kind>-layer<name>.png``, each
    with every head and their mean. Returns the list of paths."""
    clean = D.check_head_view(data)
    _check_dpi(dpi)
    require_matplotlib()
    os.makedirs(directory, exist_ok=True)
    paths = []
    for kind, k in clean["kinds"].items():
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in kind)
        for name, w in zip(k["layer_names"], k["weights"]):
            lname = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
            path = os.path.join(directory, f"{prefix}-{safe}-layer{lname}.png")
            paths.append(save_attention_heads_png(path, w, k["rows"], k["cols"],
                                                  title=f"{k['title']}, layer {name}", dpi=dpi))
    return paths


def save_bar_png(path, labels, values, title=None, xlabel=None, fmt=".3g", reference=None,
                 reference_label=None, highlight=None, dpi=150):
    """Horizontal bars as a PNG (arguments as html.bar_chart_svg: values
    printed at the bar ends, a dashed reference line, highlighted bars in
    orange). Returns path."""
    v = D.check_vector(values, "values")
    labs = D.check_labels(labels, v.size, "labels")
    hl = D.bar_indices(highlight, v.size)
    _check_dpi(dpi)
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.3 * v.size))
    y = np.arange(v.size)
    ax.barh(y, np.nan_to_num(v), color=[_HL if i in hl else "#3a6ea5" for i in range(v.size)])
    for i, x in enumerate(v):
        ax.text(x if math.isfinite(x) else 0, i, " " + format_number(float(x), fmt) + " ",
                va="center", ha="left" if not x < 0 else "right", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labs)
    ax.invert_yaxis()
    ax.axvline(0, color="#333", lw=0.8)
    ax.margins(x=0.12)                          # room for the values at the bar ends
    if reference is not None:
        ax.axvline(float(reference), color="#c0392b", ls="--", lw=1.2,
                   label=reference_label or "reference")
        ax.legend(loc="lower right", fontsize=8)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path, dpi)


def save_line_png(path, x, series, title=None, xlabel=None, ylabel=None, ylim=None, dpi=150):
    """Lines as a PNG (arguments as html.line_chart_svg: x and series
    {name: values}, None/NaN a gap, ylim the y range). Returns path."""
    xs = D.check_vector(x, "x")
    data = D.check_series(xs, series)
    if ylim is not None:
        lo, hi = D.check_ylim(ylim)
    _check_dpi(dpi)
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for name, ys in data.items():
        ax.plot(xs, ys, marker="o", ms=3, lw=1.6, label=name)
    if ylim is not None:
        ax.set_ylim(lo, hi)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi)
