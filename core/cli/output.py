"""What every command shares for its output: exit codes, usage errors, standard output
that fails cleanly, tables, JSON, and one-line notes on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ..errors import ADVICE, ChatplugError
from .terminal import is_terminal

__all__ = ["CLI_ADVICE", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_USAGE", "Output",
           "OutputError", "UsageError", "error_line", "in_cli_terms", "note", "print_json",
           "printable", "seconds", "table", "warn", "whole_number"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _visible(code: int) -> str:
    """``cat -v``'s spelling of a control character: ``^[`` for ESC, ``M-^[`` for CSI."""
    if code >= 0x80:
        return "M-" + _visible(code - 0x80)
    return "^?" if code == 0x7F else "^" + chr(code + 0x40)


#: Every control character (C0, DEL, C1) but newline and tab, made visible; a carriage
#: return is dropped (it would let a reply overwrite what was printed before it, and a
#: reply with CRLF line ends reads the same without it).
_CONTROLS = {code: _visible(code) for code in (*range(0x20), *range(0x7F, 0xA0))
             if code not in (0x09, 0x0A)}
_CONTROLS[0x0D] = ""


def printable(text: str) -> str:
    """``text`` with no control character a terminal would obey (OSC 52 clipboard
    writes, cursor moves, title changes): each is replaced on its own, so an escape
    sequence split across two streamed pieces is neutralised all the same."""
    return text.translate(_CONTROLS)


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
        #: Text from servers and the logs reaches a terminal only :func:`printable`.
        self.terminal = self.isatty()

    def write(self, text: str) -> None:
        if self.terminal:
            text = printable(text)
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
        return is_terminal(self.stream)


#: What to do, as the command line says it, by :attr:`ChatplugError.hint` (the library's
#: words, :data:`chatplug.errors.ADVICE`, name its API: ``timeout=``, ``api_key=``).
CLI_ADVICE = {
    "timeout": "Allow more time with --timeout SECONDS (or CHATPLUG_TIMEOUT).",
    "api_key": "or save it with `chatplug keys set {provider}`.",
    "api_key_sent": "(or the key saved with `chatplug keys set {provider}`).",
}


def in_cli_terms(error: ChatplugError, text: str) -> str:
    """``text`` (from ``error``'s message) with its advice said for the command line."""
    kind = error.hint
    if kind is None or kind not in CLI_ADVICE:
        return text
    advice = CLI_ADVICE[kind].format(provider=error.provider or "PROVIDER")
    return text.replace(ADVICE[kind], advice)


def error_line(error: ChatplugError) -> str:
    """The one line the CLI prints for ``error``: the headline (what happened, how often
    it was tried, what to do), the advice in the command line's terms."""
    lines = str(error).splitlines()
    return in_cli_terms(error, lines[0] if lines else type(error).__name__)


def note(text: str) -> None:
    """One line on stderr, for the person at the terminal (never on stdout); an error
    may quote a server, so a terminal sees it :func:`printable`."""
    line = f"chatplug: {text}"
    print(printable(line) if is_terminal(sys.stderr) else line, file=sys.stderr, flush=True)




def warn(text: str) -> None:
    note(f"warning: {text}")


#: JSON leaves DEL and the C1 controls unescaped (CSI, U+009B, is one); they only occur
#: inside strings, where ``\u00XX`` is the same value.
_JSON_CONTROLS = {code: f"\\u{code:04x}" for code in range(0x7F, 0xA0)}


def print_json(data: Any, out: Output) -> None:
    """``data`` as JSON, with every control character escaped (so it is the same JSON
    on a terminal and in a pipe)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str).translate(_JSON_CONTROLS)
    out.write(text + "\n")


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def whole_number(text: str) -> int:
    """An argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


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
