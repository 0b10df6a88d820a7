"""The terminal: the waiting status, retry announcements, reading a secret.

Everything here writes to stderr, and only when stderr is a terminal: a
script reading stdout, or a log of stderr, never sees a status line.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO

from ..errors import ChatplugError
from ..hooks import hookimpl

__all__ = ["RetryAnnouncer", "Status", "is_terminal", "read_secret", "retry_line"]

#: Seconds of silence before the status shows (a quick reply never flickers one).
SHOW_AFTER = 0.3
REDRAW = 0.1
_CLEAR = "\r\x1b[K"


def is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _spinner(stream: TextIO) -> str:
    frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    try:
        frames.encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "|/-\\"
    return frames


class Status:
    """``waiting for GravityEngine (gpt-3.5-turbo-16k) · 3 s`` on stderr while nothing has
    arrived, redrawn in place, gone once :meth:`stop` is called (the first piece came).

    :param enabled: draw anything at all (stderr is a terminal).
    """

    def __init__(self, what: str, *, enabled: bool, stream: TextIO | None = None) -> None:
        self.what = what
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False
        self._started = time.monotonic()

    def start(self) -> Status:
        self._started = time.monotonic()
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="chatplug-status",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and erase the line; idempotent, and cheap on every piece."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(1)
        with self._lock:
            self._erase()

    def announce(self, text: str) -> None:
        """A line of its own (a retry), above the status, which goes on."""
        if not self.enabled:
            return
        with self._lock:
            self._erase()
            self._write(f"chatplug: {text}\n")

    def _erase(self) -> None:
        if self._shown:
            self._write(_CLEAR)
            self._shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False  # a vanished terminal ends the status, never the call

    def _run(self) -> None:
        frames = _spinner(self.stream)
        if self._stopped.wait(SHOW_AFTER):
            return
        frame = 0
        while not self._stopped.is_set():
            elapsed = time.monotonic() - self._started
            line = (f"{frames[frame % len(frames)]} waiting for {self.what} · "
                    f"{elapsed:.0f} s · Ctrl-C stops")
            width = shutil.get_terminal_size((80, 24)).columns
            with self._lock:
                if self._stopped.is_set() or not self.enabled:
                    return
                self._write("\r" + line[: max(width - 1, 10)] + "\x1b[K")
                self._shown = True
            frame += 1
            self._stopped.wait(REDRAW)


def retry_line(provider: str, attempt: int, max_attempts: int, delay_s: float,
               error: Exception) -> str:
    """``503 from GravityEngine, retrying in 1.2 s (2/3)``."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        what = str(status)
    elif isinstance(error, ChatplugError):
        what = error.code.replace("_", " ")
    else:
        what = type(error).__name__
    return f"{what} from {provider}, retrying in {delay_s:.1f} s ({attempt + 1}/{max_attempts})"


class RetryAnnouncer:
    """An observer (registered by the CLI on a terminal) that announces each retry on
    the :class:`Status` of the call in progress."""

    def __init__(self) -> None:
        self.status: Status | None = None

    @hookimpl
    def chatplug_on_retry(self, provider: str, attempt: int, max_attempts: int,
                          delay_s: float, error: Exception) -> None:
        status = self.status
        if status is not None:
            status.announce(retry_line(provider, attempt, max_attempts, delay_s, error))


def read_secret(prompt: str, stdin: TextIO | None = None) -> str:
    """One line: typed without echo on a terminal, else the first line of standard input.

    :raises EOFError: standard input ended before a line.
    """
    stdin = stdin or sys.stdin
    if is_terminal(stdin):
        import getpass

        return getpass.getpass(prompt)
    line = stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")
