"""The usage ledger's local journal: every acknowledged row, on disk, until the database
has it.

Each gateway process appends its rows to a *segment* file of its own
(``<pid>-<start>-<n>.journal``) in a directory per database (a journal is replayed into
the database it was meant for only).  A row is a record: its length (4 bytes, little
endian), then the row's tuple of strings, numbers and ``None`` in :mod:`marshal`'s format
(a fifth of the CPU of JSON; it builds data, never runs code, and :func:`read_rows`
keeps only tuples of such values).  One ``write()`` per row, on the event loop:
once it returned, the row is in the kernel's page cache and survives a SIGKILL of the
process (an OS crash or power loss loses what was not yet fsynced: the writer thread
fsyncs at most once a second while rows wait).  The process holds an exclusive
``flock`` on each of its segments; a segment nobody holds belonged to a process that
died, and is replayed (its rows inserted, those already there skipped: each row carries
its own id) and then deleted.

A segment is sealed (a new one opened) when it grows past :data:`SEGMENT_BYTES`, and
deleted once every row in it is in the database; the open segment is emptied in place
whenever all its rows are.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..filelock import try_lock
from ..paths import private_dir

__all__ = ["SEGMENT_BYTES", "Segment", "encode", "journal_dir", "orphan", "orphans",
           "read_rows", "segment_name"]

logger = logging.getLogger("chatplug.ledger")

#: A segment past this size is sealed and a new one opened (so that a busy gateway
#: whose queue never quite empties still deletes its journal as it goes).
SEGMENT_BYTES = 4 * 1024 * 1024
_SUFFIX = ".journal"
_SCALARS = (str, int, float, type(None))


class Segment:
    """One journal file this process appends to, locked for as long as it is open.

    Counters: :attr:`rows` appended, :attr:`queued` of them also handed to the writer's
    queue, :attr:`committed` of those in the database; :attr:`deferred` is true when a
    row went only to the file (the queue was full): the file is replayed before it is
    deleted.

    :raises OSError: the file cannot be created or locked.
    """

    __slots__ = ("bytes", "committed", "deferred", "fd", "path", "queued", "rows")

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self.fd = os.open(path, flags, 0o600)
        if not try_lock(self.fd):
            os.close(self.fd)
            raise OSError(f"the journal segment {path} is locked by another process")
        self.bytes = os.fstat(self.fd).st_size
        self.rows = self.queued = self.committed = 0
        self.deferred = self.bytes > 0  # a reused name with rows: replay them

    def append(self, line: bytes) -> None:
        """Append one record (:func:`encode`), in one ``write()``.

        :raises OSError: the disk is full or failing.
        """
        os.write(self.fd, line)
        self.bytes += len(line)
        self.rows += 1

    @property
    def settled(self) -> bool:
        """Every queued row is in the database."""
        return self.committed >= self.queued

    def empty(self) -> None:
        """Forget every row (all are in the database); the caller holds the appenders off."""
        os.ftruncate(self.fd, 0)
        self.bytes = 0
        self.rows = self.queued = self.committed = 0

    def sync(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self.fd)

    def close(self, *, delete: bool) -> None:
        """Close the file (its lock goes with it), deleting it first if ``delete``."""
        if delete:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)


def journal_dir(root: Path, database: str) -> Path:
    """The journal directory of ``database`` (its file or redacted URL) under ``root``."""
    import hashlib

    digest = hashlib.sha256(database.encode()).hexdigest()[:16]
    return private_dir(root / digest)


def segment_name(pid: int, start: str, number: int) -> str:
    return f"{pid}-{start}-{number}{_SUFFIX}"


@contextlib.contextmanager
def orphan(path: Path) -> Iterator[int | None]:
    """Open and lock the segment ``path`` if no live process holds it: its fd, or
    ``None`` (held by a live process, or gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        yield None
        return
    try:
        yield fd if try_lock(fd) else None
    finally:
        os.close(fd)


def orphans(directory: Path, own: set[Path]) -> list[Path]:
    """The segments in ``directory`` other than ``own``, oldest first."""
    try:
        found = [p for p in directory.iterdir() if p.suffix == _SUFFIX and p not in own]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.stat().st_mtime if p.exists() else 0, p.name))


def encode(row: tuple[str | int | float | None, ...]) -> bytes:
    """One row as a journal record."""
    data = marshal.dumps(row)
    return len(data).to_bytes(4, "little") + data


def read_rows(fd: int, width: int) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of a segment (from its start), and how many records were unreadable (one
    cut short by a crash mid-write, or not a row of ``width`` plain values)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    rows: list[tuple[Any, ...]] = []
    bad = 0
    position = 0
    while position + 4 <= len(data):
        size = int.from_bytes(data[position:position + 4], "little")
        record = data[position + 4:position + 4 + size]
        position += 4 + size
        try:
            if len(record) < size:
                raise ValueError("cut short")
            values = marshal.loads(record)
        except (ValueError, EOFError, TypeError):
            bad += 1
            continue
        if (isinstance(values, tuple) and len(values) == width
                and all(isinstance(value, _SCALARS) for value in values)):
            rows.append(values)
        else:
            bad += 1
    if position < len(data):
        bad += 1  # a length cut short
    return rows, bad
