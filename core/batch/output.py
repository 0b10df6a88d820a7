"""The batch output file: result lines, resume state, repair, durable appends.

Nothing lost, nothing twice:

- each result is one ``os.write`` of a whole line to a file opened with
  ``O_APPEND`` (no buffer in between), so a crash leaves at most the last line
  torn; :meth:`OutputFile.sync_if_due` fsyncs at least once a second while
  lines are being written, :meth:`OutputFile.close` at the end;
- on open, the existing file is read line by line (never whole) into the
  sets of answered ``custom_id`` values; a torn last line is cut off;
- when lines have to go (``--retry-errors`` dropping the error lines it will
  replace, unreadable or duplicate lines), the file is *rewritten*: the kept
  lines go to a temporary file in the same directory, which is fsynced and
  renamed over the output (atomic), so each ``custom_id`` appears once and a
  crash during the rewrite leaves the old file intact;
- the file is locked (``flock``) while a run uses it: a second run on the same
  output is refused instead of interleaving with the first.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BatchFileError
from .execute import Outcome

__all__ = ["SYNC_INTERVAL", "OutputFile", "ResumeState", "result_line"]

#: Seconds between two fsyncs of a file being written.
SYNC_INTERVAL = 0.9


def result_line(outcome: Outcome) -> bytes:
    """One line of OpenAI's batch output format, newline included."""
    from ..wire.openai import completion_body

    record: dict[str, Any] = {"id": f"batch_req_{outcome.request_id}",
                              "custom_id": outcome.custom_id}
    if outcome.completion is not None:
        record["response"] = {"status_code": 200, "request_id": outcome.request_id,
                              "body": completion_body(outcome.completion)}
        record["error"] = None
    else:
        record["response"] = None
        record["error"] = outcome.error
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _answered(raw: bytes) -> tuple[str | None, bool] | None:
    """``(custom_id, succeeded)`` of one output line; ``None`` if it is not a result.

    A ``custom_id`` of ``None`` is the error line of an input line that had no usable
    one (torn JSON...): each run writes it again from the input, so a resumed run drops
    the old one.
    """
    try:
        record = json.loads(raw.decode())  # decoded here: json.loads would guess the encoding
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    custom_id = record.get("custom_id")
    if custom_id is None and isinstance(record.get("error"), dict) \
            and isinstance(record["error"].get("line"), int):
        return None, False
    if not isinstance(custom_id, str) or not custom_id:
        return None
    return custom_id, record.get("error") is None and record.get("response") is not None


@dataclass
class ResumeState:
    """What an existing output already holds.

    :ivar succeeded: ``custom_id`` values with a response line.
    :ivar failed: ``custom_id`` values with an error line (and no response line).
    :ivar end: the offset just past the last whole line.
    :ivar torn: the file ends in a partial line (a crash cut it); it is discarded.
    :ivar unterminated: the last line is whole but lacks its newline.
    :ivar discarded: lines that are not results (unreadable, no ``custom_id``).
    :ivar duplicates: lines repeating a ``custom_id`` of an earlier line.
    :ivar invalid_lines: error lines of input lines without a usable ``custom_id``
        (written again by each run, so dropped on resume).
    """

    succeeded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    lines: int = 0
    end: int = 0
    torn: bool = False
    unterminated: bool = False
    discarded: int = 0
    duplicates: int = 0
    invalid_lines: int = 0

    def answered(self, retry_errors: bool) -> set[str]:
        """The ids a run skips: all answered ones, or only the successes with ``retry_errors``."""
        return set(self.succeeded) if retry_errors else self.succeeded | self.failed


class OutputFile:
    """The output of one run, opened, locked and scanned by :meth:`open`.

    :raises BatchFileError: (every method) the file cannot be read or written,
        or another run holds it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        #: Whether :meth:`open` created the file.
        self.created = False
        self._lock = threading.Lock()
        self._dirty = False
        self._synced = time.monotonic()

    # -- opening and resuming ------------------------------------------------------

    def open(self) -> ResumeState:
        """Open (create) and lock the file; what it already holds."""
        self.created = not self.path.exists()
        self._fd = self._open_locked()
        return self._scan()

    def abandon(self) -> None:
        """Close without a trace: a file :meth:`open` created and nothing wrote is removed."""
        if self.created and self._fd is not None and os.fstat(self._fd).st_size == 0:
            self.path.unlink(missing_ok=True)
        self.close()

    def _open_locked(self) -> int:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                             0o644)
            except OSError as exc:
                raise self._failed("open", exc) from None
            if sys.platform == "win32":
                return fd  # no flock: the user keeps runs apart
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BatchFileError(
                    f"{self.path} is being written by another chatplug batch run; wait for "
                    "it to finish, or write to another file."
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if same:
                return fd
            # A run that rewrote the file renamed a new one over it: lock that one.
            os.close(fd)

    def _failed(self, action: str, exc: OSError) -> BatchFileError:
        return BatchFileError(f"cannot {action} the batch output {self.path}: "
                              f"{exc.strerror or exc}.")

    def _scan(self) -> ResumeState:
        state = ResumeState()
        try:
            with open(self.path, "rb") as existing:
                offset = 0
                for raw in existing:
                    whole = raw.endswith(b"\n")
                    answered = _answered(raw) if raw.strip() else None
                    if not whole:
                        # The last line: whole if it parses (only its newline is missing),
                        # else a write cut by a crash.
                        state.torn = answered is None
                        state.unterminated = answered is not None
                    offset += len(raw)
                    if state.torn:
                        break
                    state.end = offset
                    if answered is None:
                        state.discarded += 1 if raw.strip() else 0
                        continue
                    custom_id, succeeded = answered
                    if custom_id is None:
                        state.invalid_lines += 1
                        continue
                    state.lines += 1
                    if custom_id in state.succeeded or custom_id in state.failed:
                        state.duplicates += 1
                        if succeeded:  # a response beats an earlier error line
                            state.failed.discard(custom_id)
                            state.succeeded.add(custom_id)
                    elif succeeded:
                        state.succeeded.add(custom_id)
                    else:
                        state.failed.add(custom_id)
        except OSError as exc:
            raise self._failed("read", exc) from None
        return state

    def repair(self, state: ResumeState, retry: Container[str] = ()) -> int:
        """Make the file hold each answered ``custom_id`` once, whole lines only.

        Error lines whose ``custom_id`` is in ``retry`` are removed (their
        requests are sent again).  Returns how many error lines were removed.
        """
        dropped = {custom_id for custom_id in state.failed if custom_id in retry}
        if dropped or state.discarded or state.duplicates or state.invalid_lines:
            self._rewrite(state, dropped)
            state.failed -= dropped
        elif state.torn:
            try:
                os.ftruncate(self._require(), state.end)
            except OSError as exc:
                raise self._failed("repair", exc) from None
        if state.unterminated:
            self.append(b"\n")
        state.torn = state.unterminated = False
        state.discarded = state.duplicates = state.invalid_lines = 0
        return len(dropped)

    def _rewrite(self, state: ResumeState, dropped: set[str]) -> None:
        """Replace the file by its kept lines, atomically (temporary file, fsync, rename)."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        written: set[str] = set()
        try:
            with open(self.path, "rb") as source, open(temporary, "wb") as target:
                offset = 0
                for raw in source:
                    offset += len(raw)
                    if offset > state.end and state.torn:
                        break
                    answered = _answered(raw) if raw.strip() else None
                    if answered is None:
                        continue
                    custom_id, succeeded = answered
                    if custom_id is None:
                        continue
                    keep = succeeded or (custom_id not in state.succeeded
                                         and custom_id not in dropped)
                    if keep and custom_id not in written:
                        written.add(custom_id)
                        target.write(raw if raw.endswith(b"\n") else raw + b"\n")
                target.flush()
                os.fsync(target.fileno())
            os.replace(temporary, self.path)
        except BaseException as exc:  # Ctrl-C too: never leave the temporary file behind
            temporary.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise self._failed("rewrite", exc) from None
            raise
        _sync_directory(self.path.parent)
        state.unterminated = False
        old, self._fd = self._fd, self._open_locked()
        if old is not None:
            os.close(old)

    # -- writing ---------------------------------------------------------------------

    def _require(self) -> int:
        if self._fd is None:
            raise BatchFileError(f"the batch output {self.path} is not open.")
        return self._fd

    def append(self, data: bytes) -> bool:
        """Append whole lines in one write; False if the file was already closed."""
        with self._lock:
            fd = self._fd
            if fd is None:
                return False
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except OSError as exc:
                raise self._failed("write", exc) from None
            self._dirty = True
        return True

    def sync_if_due(self) -> None:
        """fsync if lines were written since the last fsync and it is time again."""
        if self._dirty and time.monotonic() - self._synced >= SYNC_INTERVAL:
            self.sync()

    def sync(self) -> None:
        with self._lock:
            fd, self._dirty = self._fd, False
            self._synced = time.monotonic()
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise self._failed("sync", exc) from None

    def close(self) -> None:
        """fsync and close (which releases the lock); later appends are dropped."""
        with self._lock:
            fd, self._fd = self._fd, None
            dirty = self._dirty
        if fd is None:
            return
        try:
            if dirty:
                os.fsync(fd)
        except OSError as exc:
            raise self._failed("sync", exc) from None
        finally:
            os.close(fd)


def _sync_directory(directory: Path) -> None:
    """fsync a directory so that a rename in it survives a power loss (where supported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
