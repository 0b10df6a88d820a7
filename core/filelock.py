"""One process at a time through a read-modify-write of one of chatplug's files.

:func:`locked` holds an exclusive lock on a lock file beside the file (``keys.json``
→ ``.keys.json.lock``): the file itself is replaced by a rename, so a lock on it would
be held on a file that is no longer there.  POSIX uses ``fcntl.flock``, Windows
``msvcrt.locking``; both locks go when the process does, so a crash never leaves one
behind.  The wait is bounded: a process that holds the lock for longer is reported,
never waited on forever.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import StorageError

__all__ = ["WAIT", "lock_path", "locked", "try_lock"]

#: Seconds to wait for another process's read-modify-write (they take milliseconds).
WAIT = 10.0
_POLL = 0.01


def lock_path(path: Path) -> Path:
    """The lock file of ``path``: hidden, beside it."""
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path, *, wait: float = WAIT) -> Iterator[None]:
    """Hold the lock of ``path`` for the ``with`` block (the directory must exist).

    :raises StorageError: the lock file cannot be opened, or another process held the
        lock for ``wait`` seconds (the message names the lock file).
    """
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open the lock file {lock}: {exc}. Check that its "
                           "directory is writable.") from None
    try:
        _acquire(fd, lock, wait)
        try:
            yield
        finally:
            _release(fd)
    finally:
        os.close(fd)


def _acquire(fd: int, lock: Path, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise StorageError(
                f"another chatplug process has held {lock} for {wait:g} s; try again once "
                "it has finished."
            )
        time.sleep(_POLL)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on the open file ``fd`` if nobody holds one; whether it
    did.  The lock lasts until ``fd`` is closed or its process ends (a SIGKILL too)."""
    return _try_lock(fd)


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _release(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
