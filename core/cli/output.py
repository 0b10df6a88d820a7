"""What every command shares for its output: exit codes, usage errors, standard output
that fails cleanly, tables, JSON, and one-line notes on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_USAGE", "Output", "OutputError",
           "UsageError", "note", "print_json", "seconds", "table", "warn"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A malformed command line (exit 2).  Commands raise it; ``main`` prints it."""


class OutputError(Exception):
    """Standard output cannot be written (a full disk, ``> /dev/full``): exit 1, one line."""


class Output:
    """Standard output as the commands write it: every write is flushed at once (a reply
    streams), and a failing write becomes :class:`OutputError` instead of a traceback.
    ``BrokenPipeError`` passes through: ``main`` ends quietly when the reader left."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        #: The last character written, to end a reply on a new line.
        self.last = "\n"

    def write(self, text: str) -> None:
        if not text:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None
        self.last = text[-1]

    def end_line(self) -> None:
        """Finish the current line, if one was started."""
        if self.last != "\n":
            self.write("\n")

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False


def note(text: str) -> None:
    """One line on stderr, for the person at the terminal (never on stdout)."""
    print(f"chatplug: {text}", file=sys.stderr, flush=True)


def warn(text: str) -> None:
    note(f"warning: {text}")


def print_json(data: Any, out: Output) -> None:
    out.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def seconds(highest: float) -> Any:
    """An argparse type: seconds in ``(0, highest]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value <= highest:
            raise argparse.ArgumentTypeError(f"expected seconds in (0, {highest:g}], got {text!r}")
        return value

    return parse
