"""Column alignment of text in a terminal: East Asian wide and fullwidth
characters take two columns, combining marks none (unicodedata), so
padding by len() would misalign tables that hold them."""
import unicodedata

__all__ = ["display_width", "fit", "rjust"]


def display_width(text):
    """Terminal columns `text` takes: 2 for each wide or fullwidth
    character, 0 for combining marks and other zero-width characters, 1
    for the rest."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def rjust(text, width):
    """`text` right-aligned in `width` columns (unchanged when wider)."""
    return " " * max(0, width - display_width(text)) + text


def fit(text, width):
    """`text` cut to at most `width` columns (never through a wide
    character), then right-aligned in `width` columns."""
    out, used = [], 0
    for ch in text:
        w = display_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return rjust("".join(out), width)
