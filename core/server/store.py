"""Stored responses of ``/v1/responses`` (``store: true``, OpenAI's default), for
``previous_response_id`` follow-ups and ``GET``/``DELETE /v1/responses/{id}``.

SQLite in ``$CHATPLUG_HOME/responses.db`` (else the XDG data directory), WAL,
file mode 0600: a stored response holds the conversation.  Bounded: at most
:data:`MAX_RESPONSES` rows and :data:`MAX_AGE` seconds; older rows are pruned as
new ones are written.  Every call runs on a worker thread (``asyncio.to_thread``),
never on the event loop; one connection per thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import StorageError

__all__ = ["MAX_AGE", "MAX_RESPONSES", "ResponseStore"]

#: Rows kept at most; the oldest go first.
MAX_RESPONSES = 10_000
#: Seconds a stored response is kept (30 days).
MAX_AGE = 30 * 24 * 3600.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    conversation TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses (created);
"""


class ResponseStore:
    """The stored responses.

    :param path: the database file (default ``responses.db`` in chatplug's data directory).
    """

    def __init__(self, path: Path | None = None, *, max_responses: int = MAX_RESPONSES,
                 max_age: float = MAX_AGE) -> None:
        if path is None:
            from ..paths import data_dir, private_dir

            path = private_dir(data_dir()) / "responses.db"
        self.path = path
        self.max_responses = max_responses
        self.max_age = max_age
        self._local = threading.local()
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
                connection = sqlite3.connect(self.path, timeout=10)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise StorageError(f"cannot open the responses store {self.path}: {exc}. "
                                   "Check CHATPLUG_HOME and the file's permissions.") from None
            self._local.connection = connection
        return connection

    def _put(self, ident: str, conversation: list[Any], response: dict[str, Any]) -> None:
        now = time.time()
        with self._lock:
            connection = self._connection()
            with connection:
                connection.execute(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                    (ident, now, json.dumps(conversation, ensure_ascii=False),
                     json.dumps(response, ensure_ascii=False)))
                connection.execute("DELETE FROM responses WHERE created < ?",
                                   (now - self.max_age,))
                connection.execute(
                    "DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                    "ORDER BY created DESC LIMIT -1 OFFSET ?)", (self.max_responses,))

    def _get(self, ident: str) -> tuple[list[Any], dict[str, Any]] | None:
        row = self._connection().execute(
            "SELECT conversation, response, created FROM responses WHERE id = ?",
            (ident,)).fetchone()
        if row is None or row[2] < time.time() - self.max_age:
            return None
        return json.loads(row[0]), json.loads(row[1])

    def _delete(self, ident: str) -> bool:
        with self._lock:
            connection = self._connection()
            with connection:
                return connection.execute("DELETE FROM responses WHERE id = ?",
                                          (ident,)).rowcount > 0

    async def put(self, ident: str, conversation: list[Any], response: dict[str, Any]) -> None:
        """Keep ``response`` and the conversation it continues.

        :raises StorageError: the database cannot be written.
        """
        try:
            await asyncio.to_thread(self._put, ident, conversation, response)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the responses store {self.path}: {exc}.") \
                from None

    async def get(self, ident: str) -> tuple[list[Any], dict[str, Any]] | None:
        """The stored conversation and response, or ``None`` (unknown, or too old).

        :raises StorageError: the database cannot be read.
        """
        try:
            return await asyncio.to_thread(self._get, ident)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the responses store {self.path}: {exc}.") \
                from None

    async def delete(self, ident: str) -> bool:
        """Forget a stored response; False if there was none."""
        try:
            return await asyncio.to_thread(self._delete, ident)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the responses store {self.path}: {exc}.") \
                from None
