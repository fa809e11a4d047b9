"""Command-line plumbing shared by every script (standard library only, so deploy can use it).

``run(main, parser)`` parses arguments, runs ``main(args)`` and turns the errors a user can cause
(a bad file, a bad argument, Ctrl-C) into one line on stderr and a non-zero exit code, instead
of a traceback from deep inside a library. Programming errors still show their traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class ToolError(Exception):
    """An error caused by the user's input; its message names the file or argument at fault."""


def one_line(err: BaseException) -> str:
    # Errors re-raised from DataLoader workers carry the worker's traceback in their message;
    # its last line is the original message, prefixed with the exception's qualified name.
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    return lines[-1].removeprefix(prefix).removeprefix(f"{type(err).__name__}: ")


def run(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
        argv: list[str] | None = None) -> None:
    args = parser.parse_args(argv)
    try:
        code = main(args)
    except (ToolError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


# argparse types: a bad value is refused while parsing, in one line naming the flag and the range.
def _number(kind: type, test: Callable[[float], bool], expected: str) -> Callable[[str], int | float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value != value or not test(value):  # NaN fails every range
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number > 0")
non_negative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
unit_interval = _number(float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
open_fraction = _number(float, lambda v: 0 < v < 1, "a number strictly between 0 and 1")


def image_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. 352x480) -> (H, W), both >= 1."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers, e.g. 352x480, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers, e.g. 352x480, got {text!r}")
    return height, width
