"""argparse value types shared by the command-line entry points."""
import argparse

__all__ = ["ints_from", "int_at_least"]


def ints_from(lo):
    """'a positive int' and the like: the words for the ints >= lo."""
    return {0: "a non-negative int", 1: "a positive int"}.get(lo, f"an int >= {lo}")


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
