"""The usage ledger: one row per completion the gateway served, written off the request
path.

:meth:`Ledger.settled` (the gateway's accounting seam, on the event loop) turns a
request's record into a row, appends it to the local journal (:mod:`.journal`: one
``write()``, which a SIGKILL cannot undo) and puts it on a bounded in-memory queue;
nothing else happens on the request's path, and nothing there can fail a request.  A
writer thread takes the queue in batches and inserts them in one transaction each
(``INSERT ... ON CONFLICT (id) DO NOTHING``: a row replayed twice is written once).

When the database is down, the batch waits and is retried with a growing pause (at
most :data:`RETRY_MAX` s); rows keep going to the journal (bounded by ``journal_max``
bytes), and beyond the queue's size to the journal only (*deferred*: read back from it
once the database is back).  A row that fits neither is *dropped*, counted and logged.
At start-up (and every :data:`ORPHAN_INTERVAL` s) the writer replays the journals of
gateway processes that died (a SIGKILL, a power loss) into the database.

:attr:`Ledger.stats` counts all of it, for the metrics and ``/ui``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StorageError
from .journal import (
    SEGMENT_BYTES,
    Segment,
    encode,
    journal_dir,
    orphan,
    orphans,
    read_rows,
    segment_name,
)
from .pricing import cost_of
from .schema import migrate

if TYPE_CHECKING:
    from ..configfile import Price
    from .database import Database

__all__ = ["COLUMNS", "Ledger", "LedgerStats", "insert_rows"]

logger = logging.getLogger("chatplug.ledger")

#: The ``usage`` table's columns, in the order of a row.
COLUMNS = ("id", "ts", "key_id", "endpoint", "requested_model", "provider", "model",
           "attempts", "status", "error_type", "input_tokens", "output_tokens",
           "cached_tokens", "reasoning_tokens", "first_piece_ms", "duration_ms", "cost_usd",
           "request_id")
#: Rows per INSERT statement: 900 parameters, within any SQLite's limit (999).
_ROWS_PER_STATEMENT = 50
_VALUES = f"({', '.join('?' * len(COLUMNS))})"
#: Rows per transaction.
BATCH = 500
#: Seconds between two batches (a row waits about this long; it is in the journal
#: meanwhile): a commit costs SQLite about as much as 10 rows, and each batch takes the
#: GIL from the event loop a few times; rare, large batches cost the requests least.
INTERVAL = 1.0
#: The longest pause between two attempts while the database is down.
RETRY_MAX = 10.0
#: Seconds between two looks for the journals of processes that died.
ORPHAN_INTERVAL = 30.0
#: Seconds between two fsyncs of the journal while rows wait for the database.
SYNC_INTERVAL = 1.0


@dataclass(frozen=True)
class LedgerStats:
    """The ledger's counters since it opened.

    :ivar written: rows inserted (replayed ones included).
    :ivar pending: rows in the queue or in the batch being written.
    :ivar deferred: rows the full queue left in the journal only (written from it later).
    :ivar dropped: rows lost: neither the queue nor the journal could take them.
    :ivar replayed: rows read back from journals (dead processes', or deferred ones) and
        written (the database skips those it has already).
    :ivar failures: failed attempts to write to the database.
    :ivar journal_bytes: the size of this process's journal.
    :ivar database_ok: the last attempt to write succeeded (or none failed yet).
    """

    written: int
    pending: int
    deferred: int
    dropped: int
    replayed: int
    failures: int
    journal_bytes: int
    database_ok: bool


def insert_rows(database: Database, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ledger rows in one transaction; rows whose id is there already are skipped.

    Many rows per statement: each statement releases and takes back the GIL (sqlite3,
    psycopg), and a writer thread that did so per row would fight the event loop for it
    hundreds of times per batch.

    :raises StorageError: the database failed; none of the rows was written.
    """
    if not rows:
        return
    with database.transaction() as connection:
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start:start + _ROWS_PER_STATEMENT]
            statement = (f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES "
                         f"{', '.join([_VALUES] * len(chunk))} ON CONFLICT (id) DO NOTHING")
            connection.execute(database.sql(statement),
                               [value for row in chunk for value in row])


class Ledger:
    """The usage ledger of one gateway process: an accountant (:mod:`chatplug.server.record`).

    :param database: where rows go (opened and migrated).
    :param journal_root: the journals' directory (one sub-directory per database).
    :param prices: USD per million tokens (``[prices]``), to fill ``cost_usd``.
    :param queue_size: rows held in memory at most; beyond, the journal only.
    :param journal_max: bytes of journal at most; beyond, rows the queue cannot take
        are dropped.
    :raises StorageError: the journal directory cannot be created.
    """

    def __init__(self, database: Database, journal_root: Path, *,
                 prices: Mapping[str, Price] | None = None, queue_size: int = 10_000,
                 journal_max: int = 1 << 30) -> None:
        self.database = database
        self.prices = dict(prices or {})
        try:
            self.directory = journal_dir(journal_root, database.where)
        except OSError as exc:
            raise StorageError(f"cannot create the usage ledger's journal in {journal_root}: "
                               f"{exc.strerror or exc}.") from None
        self._queue_size = queue_size
        self._journal_max = journal_max
        self._queue: deque[tuple[Segment | None, tuple[Any, ...]]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._start = f"{time.time():.0f}{os.urandom(3).hex()}"
        self._ids = itertools.count()
        self._prefix = f"{os.urandom(6).hex()}-"
        self._numbers = itertools.count()
        self._sealed: list[Segment] = []
        self._sealed_bytes = 0
        self._active: Segment | None = None  # opened by start(), in the serving process
        self._migrated = False
        self._batch: list[tuple[Segment | None, tuple[Any, ...]]] = []
        self._busy = False
        self._written = self._deferred = self._dropped = self._replayed = 0
        self._failures = self._unjournaled = 0
        self._database_ok = True
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Ledger({self.database.where})"

    # -- the request path (event loop) -------------------------------------------------

    async def admit(self, record: Any) -> None:
        """The ledger refuses nothing."""

    def settled(self, record: Any) -> None:
        """Record one request (its reply was sent or failed): journal it and queue it.
        Never blocks beyond one ``write()``, never raises."""
        try:
            row = self.row(record)
            line = encode(row)
        except Exception:  # a record the ledger cannot read must not fail the request
            logger.exception("the usage ledger could not read a request's record")
            self._dropped += 1
            return
        with self._lock:
            segment = self._active
            if segment is not None and self._sealed_bytes + segment.bytes < self._journal_max:
                try:
                    segment.append(line)
                except OSError:  # a full or failing disk: the row goes on unjournaled
                    segment = None
                    self._unjournaled += 1
            else:
                segment = None
            if len(self._queue) < self._queue_size:
                self._queue.append((segment, row))
                if segment is not None:
                    segment.queued += 1
            elif segment is not None:
                segment.deferred = True
                self._deferred += 1
            else:
                self._dropped += 1

    def row(self, record: Any) -> tuple[Any, ...]:
        """The ledger row of a :class:`~chatplug.server.record.RequestRecord` (never a
        message, never a key: the key's id).  The cost, when priced, is also left in
        ``record.notes["cost_usd"]`` for the other accountants."""
        usage = record.usage
        cost = None
        if self.prices:
            cost = cost_of(usage, record.provider, record.model, self.prices,
                           record.requested_model)
            if cost is not None:
                record.notes["cost_usd"] = cost
        first, duration = record.first_piece, record.duration
        return (
            f"{self._prefix}{next(self._ids):x}", record.started_at,
            getattr(record.key, "id", None), record.endpoint, record.requested_model,
            record.provider, record.model, record.attempts, record.status,
            record.error_type,
            None if usage is None else usage.prompt_tokens,
            None if usage is None else usage.completion_tokens,
            None if usage is None else usage.cached_tokens,
            None if usage is None else usage.reasoning_tokens,
            None if first is None else first * 1000,
            None if duration is None else duration * 1000,
            cost, record.request_id or None,
        )

    # -- what the metrics read -----------------------------------------------------------

    @property
    def stats(self) -> LedgerStats:
        """The counters, now."""
        with self._lock:
            active = self._active.bytes if self._active is not None else 0
            return LedgerStats(
                written=self._written, pending=len(self._queue) + len(self._batch),
                deferred=self._deferred, dropped=self._dropped, replayed=self._replayed,
                failures=self._failures, journal_bytes=self._sealed_bytes + active,
                database_ok=self._database_ok)

    # -- the writer thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (it first replays the journals of dead processes)."""
        if self._thread is None:
            with self._lock:
                if self._active is None:
                    self._active = self._new_segment()
            self._thread = threading.Thread(target=self._run, name="chatplug-ledger",
                                            daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written (or ``timeout`` passed); whether it was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._idle.clear()
            if not self._busy and not self._queue:
                return True
            self._wake.set()
            self._idle.wait(0.05)
        return not self._busy and not self._queue

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for ``timeout`` s at most) and stop the writer.  Rows not
        written stay in the journal, replayed at the next start."""
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("the usage ledger's writer did not stop within %g s; rows "
                               "not written are in the journal %s", timeout, self.directory)
                self.database.close()
                return
        self._shut()
        self.database.close()

    def _new_segment(self) -> Segment | None:
        path = self.directory / segment_name(os.getpid(), self._start, next(self._numbers))
        try:
            return Segment(path)
        except OSError as exc:
            logger.error("the usage ledger cannot write its journal %s (%s): rows are not "
                         "kept across a crash until it can", path, exc)
            return None

    def _run(self) -> None:
        retry_at = 0.0
        pause = 0.5
        orphans_at = 0.0
        synced_at = 0.0
        dropped_logged = unjournaled_logged = 0
        was_ok = True
        while True:
            stopping = self._stop.is_set()
            now = time.monotonic()
            if not self._batch:
                self._batch = self._take()
            if self._batch and (now >= retry_at or stopping):
                if self._write([row for _, row in self._batch]):
                    for segment, _ in self._batch:
                        if segment is not None:
                            segment.committed += 1
                    self._batch = []
                    self._busy = False
                    pause = 0.5
                    self._tidy()
                    continue
                retry_at = now + pause
                pause = min(pause * 2, RETRY_MAX)
                if now - synced_at >= SYNC_INTERVAL:
                    synced_at = now
                    self._sync()
                if stopping:
                    return
            elif not self._batch:
                self._idle.set()
                self._tidy()
            if not was_ok and self._database_ok:
                orphans_at = 0.0  # the database is back: what dead processes left, now
            was_ok = self._database_ok
            if self._database_ok and now >= orphans_at:
                orphans_at = now + ORPHAN_INTERVAL
                self._replay_orphans()
            if self._unjournaled > unjournaled_logged:
                logger.warning("the usage ledger could not write %d rows to its journal %s "
                               "(a full or failing disk): a crash would lose them",
                               self._unjournaled - unjournaled_logged, self.directory)
                unjournaled_logged = self._unjournaled
            if self._dropped > dropped_logged:
                logger.warning("the usage ledger dropped %d rows (its queue and journal "
                               "were full)", self._dropped - dropped_logged)
                dropped_logged = self._dropped
            if stopping and not self._batch and not self._queue:
                return
            self._wake.wait(INTERVAL)
            self._wake.clear()

    def _take(self) -> list[tuple[Segment | None, tuple[Any, ...]]]:
        queue = self._queue
        batch: list[tuple[Segment | None, tuple[Any, ...]]] = []
        self._busy = True  # before the first pop: flush() never sees a row in neither
        while queue and len(batch) < BATCH:
            batch.append(queue.popleft())
        self._busy = bool(batch)
        return batch

    def _write(self, rows: Sequence[tuple[Any, ...]], *, replayed: bool = False) -> bool:
        try:
            if not self._migrated:
                migrate(self.database)
                self._migrated = True
            insert_rows(self.database, rows)
        except Exception as exc:  # StorageError, or a driver's failure it did not wrap
            self._failures += 1
            if self._database_ok:
                logger.warning("the usage ledger cannot write to %s (%s); rows wait in the "
                               "journal and are written once it is back",
                               self.database.where, exc)
            self._database_ok = False
            return False
        if not self._database_ok:
            logger.warning("the usage ledger writes to %s again", self.database.where)
        self._database_ok = True
        self._written += len(rows)
        if replayed:
            self._replayed += len(rows)
        return True

    def _sync(self) -> None:
        with self._lock:
            segments = [*self._sealed, *([self._active] if self._active else [])]
        for segment in segments:
            segment.sync()

    def _tidy(self) -> None:
        """Empty the open segment once all its rows are written; seal it when it is big
        (or holds deferred rows); delete sealed segments whose rows are all written."""
        with self._lock:
            active = self._active
            if active is not None and active.bytes:
                if (not active.deferred and active.rows == active.queued
                        and active.committed == active.queued):
                    with contextlib.suppress(OSError):
                        active.empty()
                elif active.bytes >= SEGMENT_BYTES or (active.deferred and not self._queue):
                    replacement = self._new_segment()
                    if replacement is not None:
                        self._sealed.append(active)
                        self._sealed_bytes += active.bytes
                        self._active = replacement
        for segment in list(self._sealed):
            if not segment.settled:
                break
            if ((segment.deferred or segment.rows > segment.queued)
                    and not self._replay(segment.path)):
                break
            with self._lock:
                self._sealed.remove(segment)
                self._sealed_bytes -= segment.bytes
            segment.close(delete=True)

    def _replay(self, path: Path) -> bool:
        """Write every row of one of this process's own segments."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return True
        try:
            rows, _ = read_rows(fd, len(COLUMNS))
        finally:
            os.close(fd)
        return all(self._write(rows[i:i + BATCH], replayed=True)
                   for i in range(0, len(rows), BATCH))

    def _replay_orphans(self) -> None:
        with self._lock:
            own = {s.path for s in self._sealed}
            if self._active is not None:
                own.add(self._active.path)
        for path in orphans(self.directory, own):
            with orphan(path) as fd:
                if fd is None:
                    continue
                rows, bad = read_rows(fd, len(COLUMNS))
                if not all(self._write(rows[i:i + BATCH], replayed=True)
                           for i in range(0, len(rows), BATCH)):
                    return  # the database failed: the segment stays for the next time
                if rows or bad:
                    logger.info("the usage ledger replayed %d rows from %s%s", len(rows),
                                path.name, f" ({bad} unreadable lines)" if bad else "")
                path.unlink(missing_ok=True)

    def _shut(self) -> None:
        """After the writer stopped: delete the segments whose rows are all written,
        close the others (kept for the next start's replay)."""
        with self._lock:
            segments = [*self._sealed, *([self._active] if self._active else [])]
            self._sealed, self._active = [], None
        for segment in segments:
            done = (not segment.deferred and segment.rows == segment.queued
                    and segment.settled)
            segment.close(delete=done)
