"""The logs database: one row per exchange, in SQLite (:class:`LogStore`, :class:`Record`).

The file is ``logs.db`` in :func:`chatplug.paths.data_dir`, created with mode
0600.  It runs in WAL mode with a busy timeout, so several processes can log
at once without losing a row or failing; the schema is versioned
(:mod:`chatplug.logs.schema`).  Search uses SQLite's FTS5 full-text index
where SQLite has it, else a substring match.  Nothing in a row is a key: the
rows hold what the caller hands in, and chatplug's error messages are redacted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import StorageError
from ..paths import data_dir, private_dir
from .schema import FTS_TABLE, has_fts, migrate

__all__ = ["FILENAME", "LogStore", "Record", "default_path", "new_conversation_id"]

FILENAME = "logs.db"
#: Seconds a writer waits for another process's lock before giving up.
BUSY_TIMEOUT = 30.0
#: Columns holding JSON, and the type each holds.
_JSON_COLUMNS: dict[str, type] = {"messages": list, "tool_calls": list, "options": dict}


def default_path() -> Path:
    """``$CHATPLUG_HOME/logs.db``, else ``$XDG_DATA_HOME/chatplug/logs.db``."""
    return data_dir() / FILENAME


def new_conversation_id() -> str:
    """A fresh conversation id (12 hex digits)."""
    return os.urandom(6).hex()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Record:
    """One logged exchange: what was sent, what came back, how it went.

    ``messages`` are the messages sent (the conversation so far and the prompt);
    ``error`` is the one-line error when the exchange failed or was stopped, with
    ``error_code`` its :attr:`chatplug.ChatplugError.code`.
    """

    conversation_id: str
    provider: str | None = None
    model: str | None = None
    prompt: str | None = None
    system: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    reply: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    duration_s: float | None = None
    attempts: int | None = None
    error: str | None = None
    error_code: str | None = None
    route: str | None = None
    time: str = field(default_factory=_now)
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data, ``id`` and ``conversation_id`` first."""
        data = asdict(self)
        return {"id": data.pop("id"), "conversation_id": data.pop("conversation_id"), **data}


_COLUMNS = tuple(f.name for f in fields(Record) if f.name != "id")


def _row_values(record: Record) -> tuple[Any, ...]:
    values = []
    for name in _COLUMNS:
        value = getattr(record, name)
        if name in _JSON_COLUMNS:
            value = json.dumps(value, ensure_ascii=False, default=str)
        elif name == "stream":
            value = int(bool(value))
        values.append(value)
    return tuple(values)


def _record(row: sqlite3.Row) -> Record:
    values = {name: row[name] for name in ("id", *_COLUMNS)}
    for name, kind in _JSON_COLUMNS.items():
        try:
            value = json.loads(values[name] or "null")
        except ValueError:
            value = None
        values[name] = value if isinstance(value, kind) else kind()
    values["stream"] = bool(values["stream"])
    return Record(**values)


def fts_query(text: str) -> str:
    """User text as an FTS5 query: every word must occur (each one quoted, so that
    punctuation and FTS operators in it are plain text)."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


class LogStore:
    """The logs database at ``path`` (default :func:`default_path`).

    Opened on first use; safe to share between threads.  Every method raises
    :class:`chatplug.StorageError` when the file cannot be created, read or
    written (permissions, a full disk, a file that is not a database).
    """

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<chatplug.LogStore {self.path}>"

    # -- connection --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                private_dir(self.path.parent)
                # Created here with mode 0600 (SQLite gives its -wal and -shm files the same).
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                     check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:
                raise self._failed("cannot open", exc) from None
            try:
                db.row_factory = sqlite3.Row
                # WAL: readers never block the writer, writers queue on the busy timeout.
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                migrate(db)
            except StorageError:
                db.close()
                raise
            except sqlite3.Error as exc:
                db.close()
                raise self._failed("cannot open", exc) from None
            self._db = db
        return self._db

    def _failed(self, action: str, exc: BaseException) -> StorageError:
        hint = ("move the file away (a new one is made)" if "not a database" in str(exc)
                else "check its permissions and free space, or set CHATPLUG_HOME elsewhere")
        return StorageError(f"{action} the logs database {self.path}: {exc}; {hint}.")

    def close(self) -> None:
        """Close the database (it reopens on next use)."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------

    def record(self, record: Record) -> int:
        """Store ``record``; its new id (also set on ``record.id``)."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            db = self._connect()
            try:
                cursor = db.execute(
                    f"INSERT INTO responses ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                    _row_values(record))
            except sqlite3.Error as exc:
                raise self._failed("cannot write to", exc) from None
        record.id = int(cursor.lastrowid or 0)
        return record.id

    # -- reading -----------------------------------------------------------------------

    def _select(self, where: str, parameters: tuple[Any, ...], suffix: str = "") -> list[Record]:
        if self._db is None and not self.path.exists():
            return []  # nothing logged yet; reading never creates the file
        with self._lock:
            db = self._connect()
            try:
                rows = db.execute(f"SELECT * FROM responses WHERE {where} {suffix}",
                                  parameters).fetchall()
            except sqlite3.Error as exc:
                raise self._failed("cannot read", exc) from None
        return [_record(row) for row in rows]

    def recent(
        self,
        limit: int | None = 10,
        *,
        query: str | None = None,
        conversation_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> list[Record]:
        """The latest ``limit`` records (``None``: all) matching every filter given,
        oldest first.

        :param query: words that must all occur in the prompt or the reply.
        :param provider: the provider's name, any case.
        """
        conditions: list[str] = []
        parameters: list[Any] = []
        if query and query.split():
            if self._full_text():
                conditions.append(f"id IN (SELECT rowid FROM {FTS_TABLE} "
                                  f"WHERE {FTS_TABLE} MATCH ?)")
                parameters.append(fts_query(query))
            else:
                for word in query.split():
                    like = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace(
                        "_", "\\_") + "%"
                    conditions.append("(prompt LIKE ? ESCAPE '\\' OR reply LIKE ? ESCAPE '\\')")
                    parameters.extend((like, like))
        for column, value, collate in (("conversation_id", conversation_id, ""),
                                       ("provider", provider, " COLLATE NOCASE"),
                                       ("model", model, "")):
            if value is not None:
                conditions.append(f"{column} = ?{collate}")
                parameters.append(value)
        suffix = "ORDER BY id DESC" + (" LIMIT ?" if limit is not None else "")
        if limit is not None:
            parameters.append(limit)
        records = self._select(" AND ".join(conditions) or "1", tuple(parameters), suffix)
        return records[::-1]

    def _full_text(self) -> bool:
        if self._db is None and not self.path.exists():
            return False
        with self._lock:
            return has_fts(self._connect())

    def get(self, record_id: int) -> Record | None:
        """The record with that id, or ``None``."""
        found = self._select("id = ?", (record_id,))
        return found[0] if found else None

    def latest_conversation(self) -> str | None:
        """The conversation id of the latest record, or ``None`` when nothing is logged."""
        found = self._select("1", (), "ORDER BY id DESC LIMIT 1")
        return found[0].conversation_id if found else None

    def conversation(self, conversation_id: str) -> list[Record]:
        """Every record of one conversation, oldest first."""
        return self._select("conversation_id = ?", (conversation_id,), "ORDER BY id")
