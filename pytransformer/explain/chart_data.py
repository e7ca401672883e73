"""The checks and conversions the explain renderers share: the HTML/SVG
ones (explain.html) and the PNG ones (explain.figures) take the same
arguments, checked here once, with the same errors: labels, matrices and
vectors, highlight cells, heat-map defaults, bar highlights, line series, y
limits, head-view data, and the one number format.
"""
import math

import numpy as np
from pytransformer.validation import is_int

__all__ = ["KIND_TITLES", "bar_indices", "check_head_view", "format_number", "heatmap_inputs",
           "highlight_mask", "check_labels", "check_matrix", "check_series", "check_vector",
           "check_ylim"]

KIND_TITLES = {"encoder": "Encoder self-attention",
                "decoder": "Decoder masked self-attention",
                "cross": "Cross-attention (decoder \u2192 encoder)"}


def format_number(x, fmt=".3g"):
    """One number as text: None -> '\u2014', NaN -> 'n/a', +-Inf -> '\u221e'/'-\u221e',
    bool -> 'yes'/'no', integers (Python or NumPy) in full, other numbers with
    the format spec `fmt` (default '.3g'; a callable is called instead). Any
    other value is returned as str(x)."""
    if x is None:
        return "\u2014"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return "n/a"
        if math.isinf(x):
            return "\u221e" if x > 0 else "-\u221e"
        if callable(fmt):
            return str(fmt(x))
        s = format(x, fmt)
        if s.startswith("-") and set(s[1:]) <= set("0.,e+%"):    # '-0.00' -> '0.00'
            s = s[1:]
        return s
    return str(x)


def check_labels(labels, n, name):
    """The labels as a list of n strings, or a ValueError naming `name`."""
    if labels is None:
        return [str(i) for i in range(n)]
    if isinstance(labels, (str, bytes)):
        raise TypeError(f"{name}: expected a sequence of {n} labels, "
                        f"got a single string {labels!r}")
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise ValueError(f"{name}: expected {n} labels to match the data, got {len(labels)}")
    return labels


def check_matrix(matrix, name="matrix"):
    """matrix as a 2-D float64 array with at least one cell."""
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a 2-D array of numbers ({e})") from None
    if m.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {m.shape}")
    if m.size == 0:
        raise ValueError(f"{name}: expected at least one row and one column, got shape {m.shape}")
    return m


def check_vector(values, name):
    """values as a 1-D float64 array with at least one value (errors name
    `name`)."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a sequence of numbers ({e})") from None
    if v.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {v.shape}")
    if v.size == 0:
        raise ValueError(f"{name}: expected at least one value, got none")
    return v


def highlight_mask(highlight, shape):
    """highlight (None, a bool array of `shape`, or (row, col) pairs) -> bool array."""
    mask = np.zeros(shape, bool)
    if highlight is None:
        return mask
    h = np.asarray(highlight)
    if h.dtype == bool:
        if h.shape != shape:
            raise ValueError(f"highlight: a boolean mask must have the matrix's shape {shape}, "
                             f"got {h.shape}")
        return h.copy()
    pairs = list(highlight)
    for p in pairs:
        try:
            i, j = (int(v) for v in p)
        except (TypeError, ValueError):
            raise ValueError(f"highlight: expected (row, col) pairs, got {p!r}") from None
        if not (0 <= i < shape[0] and 0 <= j < shape[1]):
            raise ValueError(f"highlight: cell ({i}, {j}) is outside the matrix of shape {shape}")
        mask[i, j] = True
    return mask


def heatmap_inputs(matrix, row_labels, col_labels, highlight, vmin, vmax, diverging,
                    annotate):
    """The checked arguments of a heat map (html.heatmap_svg and
    figures.save_heatmap_png): (m, rows, cols, highlight mask, vmin, vmax,
    diverging, annotate) with the defaults filled in as heatmap_svg
    documents them."""
    m = check_matrix(matrix)
    rows = check_labels(row_labels, m.shape[0], "row_labels")
    cols = check_labels(col_labels, m.shape[1], "col_labels")
    hl = highlight_mask(highlight, m.shape)
    finite = m[np.isfinite(m)]
    vmin = (float(finite.min()) if finite.size else 0.0) if vmin is None else float(vmin)
    vmax = (float(finite.max()) if finite.size else 1.0) if vmax is None else float(vmax)
    if not vmin <= vmax:
        raise ValueError(f"vmin/vmax: expected vmin <= vmax, got vmin={vmin}, vmax={vmax}")
    if diverging is None:
        diverging = vmin < 0 < vmax
    if annotate is None:
        annotate = m.size <= 400
    return m, rows, cols, hl, vmin, vmax, diverging, annotate


def bar_indices(highlight, n):
    """The set of bar indices to highlight (each in 0..n-1)."""
    hl = set()
    for i in (highlight or ()):
        if not 0 <= int(i) < n:
            raise ValueError(f"highlight: bar index {i} is outside 0..{n - 1}")
        hl.add(int(i))
    return hl


def check_series(xs, series):
    """series {name: values} as {str name: float64 array like xs} (None -> NaN)."""
    if not isinstance(series, dict) or not series:
        got = "an empty dict" if isinstance(series, dict) else type(series).__name__
        raise ValueError(f"series: expected a non-empty dict name -> values, got {got}")
    data = {}
    for name, ys in series.items():
        vals = np.asarray([np.nan if y is None else y for y in ys], dtype=np.float64)
        if vals.shape != xs.shape:
            raise ValueError(f"series[{name!r}]: expected {xs.size} values to match x, "
                             f"got {vals.size}")
        data[str(name)] = vals
    return data


def check_ylim(ylim):
    """(low, high) of a y range as floats, low < high."""
    lo, hi = (float(v) for v in ylim)
    if not lo < hi:
        raise ValueError(f"ylim: expected (low, high) with low < high, got {ylim!r}")
    return lo, hi


def check_head_view(data):
    """Validate and normalise head-view data; returns the dict to embed."""
    if not isinstance(data, dict) or not isinstance(data.get("kinds"), dict) or not data["kinds"]:
        raise ValueError("data: expected {'kinds': {kind: {'title', 'rows', 'cols', 'weights'}}} "
                         "with at least one kind")
    kinds = {}
    for kind, d in data["kinds"].items():
        where = f"data['kinds'][{kind!r}]"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a dict, got {type(d).__name__}")
        for key in ("rows", "cols", "weights"):
            if key not in d:
                raise ValueError(f"{where}: missing {key!r}")
        rows = [str(t) for t in d["rows"]]
        cols = [str(t) for t in d["cols"]]
        if not rows or not cols:
            raise ValueError(f"{where}: expected non-empty 'rows' and 'cols', "
                             f"got {len(rows)} and {len(cols)}")
        layers = []
        if len(d["weights"]) == 0:
            raise ValueError(f"{where}['weights']: expected at least one layer, got none")
        for li, lw in enumerate(d["weights"]):
            w = np.asarray(lw, dtype=np.float64)
            if w.ndim != 3 or w.shape[1:] != (len(rows), len(cols)) or w.shape[0] == 0:
                raise ValueError(f"{where}['weights'][{li}]: expected shape (heads, {len(rows)}, "
                                 f"{len(cols)}) to match rows and cols, got {w.shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError(f"{where}['weights'][{li}]: expected finite weights, "
                                 f"got NaN or Inf")
            layers.append(np.round(w, 4).tolist())
        title = str(d.get("title") or KIND_TITLES.get(kind, kind))
        layer_names = d.get("layer_names") or [str(i) for i in range(len(layers))]
        if len(layer_names) != len(layers):
            raise ValueError(f"{where}['layer_names']: expected {len(layers)} names, "
                             f"got {len(layer_names)}")
        kinds[str(kind)] = {"title": title, "rows": rows, "cols": cols, "weights": layers,
                            "layer_names": [str(x) for x in layer_names]}
    out = {"kinds": kinds}
    init = data.get("initial")
    if init is not None:                 # what the view shows first
        kind = init.get("kind", next(iter(kinds))) if isinstance(init, dict) else None
        if kind not in kinds:
            raise ValueError(f"data['initial']: expected a dict with 'kind' one of "
                             f"{list(kinds)}, got {init!r}")
        n = len(kinds[kind]["weights"])
        layer = init.get("layer", 0)
        if not is_int(layer) or not -n <= layer < n:
            raise ValueError(f"data['initial']['layer']: expected an int in [-{n}, {n}), "
                             f"got {layer!r}")
        head = init.get("head", "all")
        if head != "all" and (not is_int(head)
                              or not 0 <= head < len(kinds[kind]["weights"][layer])):
            raise ValueError(f"data['initial']['head']: expected 'all' or a head index, "
                             f"got {head!r}")
        out["initial"] = {"kind": kind, "layer": layer % n, "head": head}
    return out
