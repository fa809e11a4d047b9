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
