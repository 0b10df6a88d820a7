"""A real pseudo-terminal for CLI tests: ``chatplug`` runs as a session leader whose
controlling terminal is the pty, so typed keys, echo, readline and Ctrl-C (``\\x03``,
turned into SIGINT by the terminal's line discipline) behave as they do for a person.

Every read is bounded with ``select``; the process is killed when the test ends.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

__all__ = ["Terminal"]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


class Terminal:
    """``with Terminal([...], env) as term: term.expect("> "); term.send("hi\\r")``"""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], *,
                 stdout: str | None = None, columns: int = 200, rows: int = 40) -> None:
        """:param stdout: a file for the command's standard output instead of the terminal
        (standard input and standard error stay on it)."""
        self.output = ""
        # A character split across two reads must not turn into two replacement marks.
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once, nothing else runs after fork
            try:
                # Ctrl-C must interrupt it even under a pytest started with SIGINT ignored.
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if stdout is not None:
                    os.dup2(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
                os.execve(argv[0], list(argv), dict(env))
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.status: int | None = None

    @property
    def text(self) -> str:
        """Everything the terminal showed, without escape sequences and carriage returns."""
        return ANSI.sub("", self.output)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.output += self._decoder.decode(data)
        return True

    def expect(self, pattern: str, timeout: float = 10, *, after: int = 0) -> float:
        """Wait until ``pattern`` (a regular expression) shows after position ``after`` of
        :attr:`text`; the seconds it took.  Fails with what was shown so far."""
        started = time.monotonic()
        regex = re.compile(pattern)
        while not regex.search(self.text, after):
            left = started + timeout - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.05)):
                if regex.search(self.text, after):
                    break
                raise AssertionError(f"{pattern!r} not shown within {timeout} s; the "
                                     f"terminal showed:\n{self.text[-3000:]}")
        return time.monotonic() - started

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait(self, timeout: float = 10) -> int:
        """The exit status, reading the terminal meanwhile (a full pty blocks the child)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s; the terminal "
                                     f"showed:\n{self.text[-3000:]}")
            self._read(0.05)
        while self._read(0):  # what is left in the terminal's buffer
            if not select.select([self.fd], [], [], 0)[0]:
                break
        return self.status

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        os.close(self.fd)
