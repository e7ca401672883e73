"""argparse value types shared by the command-line entry points, and the
words for a range of ints that pytransformer.validation uses too (this
module does not import NumPy, so `--help` stays fast)."""
import argparse

__all__ = ["ints_words", "ints_from", "int_at_least"]


def ints_words(low, high=None):
    """The words for the ints in [low, high] ('a positive int', ...; None:
    open)."""
    if high is None:
        return {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(
            low, f"an int >= {low}")
    if low is None:
        return f"an int <= {high}"
    return f"an int in [{low}, {high}]"


def ints_from(lo):
    """'a positive int' and the like: the words for the ints >= lo."""
    return ints_words(lo)


def int_at_least(lo):
    """An argparse `type` accepting integers >= lo; anything else is a usage
    error naming what was expected and what was given."""
    what = ints_from(lo)

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    parse.__name__ = what
    return parse
