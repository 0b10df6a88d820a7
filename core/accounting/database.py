"""The gateway's database: SQLite on one box, PostgreSQL for several replicas.

``CHATPLUG_SERVER_DATABASE_URL`` picks it: unset, ``gateway.db`` in chatplug's data
directory (SQLite in WAL mode: one box needs no server); ``sqlite:///path/to.db``;
``postgresql://user@host:port/name`` (psycopg 3, ``pip install ".[postgres]"``).  Both
hold the same schema (:mod:`.schema`), migrated on open, one version at a time.

SQL is written once, with ``?`` placeholders; :meth:`Database.execute` turns them into
psycopg's ``%s``.  Everything here blocks: the gateway calls it from worker threads,
never from its event loop.  Each thread gets its own connection (sqlite3 and psycopg
connections are not shared across threads).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError, StorageError
from ..paths import data_dir, private_dir

__all__ = ["DATABASE_VARIABLE", "Database", "open_database", "redacted_url"]

#: Where the gateway's keys and usage ledger live (unset: ``gateway.db`` in the data dir).
DATABASE_VARIABLE = "CHATPLUG_SERVER_DATABASE_URL"
_DEFAULT_FILE = "gateway.db"
#: How long SQLite waits for another process's write lock (two gateways on one file).
_SQLITE_BUSY_SECONDS = 10.0
_PLACEHOLDER = re.compile(r"\?")

Dialect = Literal["sqlite", "postgresql"]


#: libpq parameters that hold a secret when written in the URL's query.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def redacted_url(url: str) -> str:
    """``url`` without its password (``user:password@`` or ``?password=``), for
    messages and logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(name.lower() in _SECRET_PARAMETERS for name, _ in pairs):
            parts = parts._replace(query=urlencode(
                [(name, "***" if name.lower() in _SECRET_PARAMETERS else value)
                 for name, value in pairs], safe="*"))
    return urlunsplit(parts)


class Database:
    """One database, opened by :func:`open_database`.  Thread-safe: each thread uses its
    own connection; :meth:`close` closes them all.

    :ivar dialect: ``"sqlite"`` or ``"postgresql"``.
    :ivar where: the file or the URL without its password (for messages).
    """

    def __init__(self, dialect: Dialect, target: str) -> None:
        self.dialect: Dialect = dialect
        self._target = target
        self.where = target if dialect == "sqlite" else redacted_url(target)
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"Database({self.dialect}, {self.where})"

    # -- connections ---------------------------------------------------------------

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            connection = sqlite3.connect(self._target, timeout=_SQLITE_BUSY_SECONDS,
                                         isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                f"{DATABASE_VARIABLE} names a PostgreSQL database, which needs psycopg 3: "
                "install chatplug with its postgres extra, pip install \".[postgres]\" from "
                "the chatplug checkout.") from None
        return psycopg.connect(self._target, autocommit=True, connect_timeout=10)

    def connection(self) -> Any:
        """This thread's connection (opened on first use).

        :raises StorageError: the database cannot be reached or opened.
        """
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise StorageError(f"the gateway database {self.where} is closed.")
            try:
                connection = self._connect()
            except ConfigurationError:
                raise
            except Exception as exc:
                raise StorageError(f"cannot open the gateway database {self.where}: "
                                   f"{_reason(exc)}") from None
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def _forget(self) -> None:
        # A connection that failed (the server went away) is dropped; the next use
        # reconnects.
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            with self._lock, contextlib.suppress(ValueError):
                self._all.remove(connection)
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        """Close every thread's connection; later use raises :class:`StorageError`."""
        with self._lock:
            self._closed = True
            connections, self._all = self._all, []
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()
        self._local = threading.local()

    # -- statements ----------------------------------------------------------------

    def sql(self, statement: str) -> str:
        """``statement`` (``?`` placeholders) in this database's parameter style."""
        return statement if self.dialect == "sqlite" else _PLACEHOLDER.sub("%s", statement)

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (``[]`` for none).

        :raises StorageError: the database failed (unreachable, locked for too long,
            a constraint); the message names the database, never a value.
        """
        try:
            cursor = self.connection().execute(self.sql(statement), tuple(params))
            return list(cursor.fetchall()) if cursor.description else []
        except StorageError:
            raise
        except Exception as exc:
            self._forget_if_broken(exc)
            raise StorageError(f"the gateway database {self.where} failed: "
                               f"{_reason(exc)}") from None

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row, in one transaction (all or none).

        :raises StorageError: as :meth:`execute`; none of the rows was written.
        """
        if not rows:
            return
        with self.transaction() as connection:
            if self.dialect == "sqlite":
                connection.executemany(statement, [tuple(row) for row in rows])
            else:
                with connection.cursor() as cursor:
                    cursor.executemany(self.sql(statement), [tuple(row) for row in rows])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A transaction on this thread's connection: committed when the block ends,
        rolled back if it raises.

        :raises StorageError: as :meth:`execute`.
        """
        connection = self.connection()
        try:
            if self.dialect == "sqlite":
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            else:
                with connection.transaction():
                    yield connection
        except StorageError:
            raise
        except Exception as exc:
            self._forget_if_broken(exc)
            raise StorageError(f"the gateway database {self.where} failed: "
                               f"{_reason(exc)}") from None

    def _forget_if_broken(self, exc: Exception) -> None:
        if self.dialect != "postgresql":
            return
        connection = getattr(self._local, "connection", None)
        closed = connection is not None and getattr(connection, "closed", False)
        if closed or type(exc).__name__ in {"OperationalError", "InterfaceError"}:
            self._forget()


def _reason(exc: BaseException) -> str:
    # The driver's first line: it names the failure (no such table, connection refused)
    # and never a parameter value.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if text.endswith(".") else text + "."


def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    """Open the gateway's database: ``url``, else ``$CHATPLUG_SERVER_DATABASE_URL``, else
    ``gateway.db`` in chatplug's data directory; migrate it to the current schema.

    :raises ConfigurationError: the URL is neither ``sqlite:///...`` nor
        ``postgresql://...``, or PostgreSQL is named and psycopg is not installed.
    :raises StorageError: the database cannot be opened or migrated.
    """
    from .schema import migrate as run_migrations

    value = (url if url is not None else os.environ.get(DATABASE_VARIABLE, "")).strip()
    database: Database
    if not value:
        path = private_dir(data_dir()) / _DEFAULT_FILE
        database = Database("sqlite", str(path))
    elif value.startswith(("postgresql://", "postgres://")):
        database = Database("postgresql", value)
    elif value.startswith("sqlite:///"):
        path = Path(value[len("sqlite:///"):]).expanduser()
        if path.parent != Path():
            private_dir(path.parent)
        database = Database("sqlite", str(path))
    else:
        raise ConfigurationError(
            f"{DATABASE_VARIABLE} must be sqlite:///path/to/gateway.db or "
            f"postgresql://user@host:port/database; got {redacted_url(value)!r}.")
    if database.dialect == "sqlite":
        _private_file(Path(database._target))
    if migrate:
        try:
            run_migrations(database)
        except BaseException:
            database.close()
            raise
    return database


def _private_file(path: Path) -> None:
    # The ledger names who spent what; the keys table holds hashes: mode 0600.
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
