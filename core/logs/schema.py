"""The logs database's schema and its migrations, numbered by ``PRAGMA user_version``.

Migration ``n`` brings a database from version ``n - 1`` to ``n``; a database
is migrated inside one ``BEGIN IMMEDIATE`` transaction, so two processes
opening a new database at once never both migrate it.  Never edit a
migration that has shipped: add the next one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import StorageError

__all__ = ["FTS_TABLE", "MIGRATIONS", "VERSION", "has_fts", "migrate"]

FTS_TABLE = "responses_fts"


def _v1_responses(db: sqlite3.Connection) -> None:
    db.execute("""
        CREATE TABLE responses (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            time TEXT NOT NULL,
            provider TEXT,
            route TEXT,
            model TEXT,
            system TEXT,
            prompt TEXT,
            messages TEXT NOT NULL DEFAULT '[]',
            reply TEXT,
            reasoning TEXT,
            tool_calls TEXT NOT NULL DEFAULT '[]',
            options TEXT NOT NULL DEFAULT '{}',
            stream INTEGER NOT NULL DEFAULT 0,
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            duration_s REAL,
            attempts INTEGER,
            error TEXT,
            error_code TEXT
        )""")
    db.execute("CREATE INDEX responses_conversation ON responses (conversation_id, id)")


def _v2_full_text(db: sqlite3.Connection) -> None:
    try:
        db.execute(f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5("
                   "prompt, reply, content='responses', content_rowid='id')")
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc).lower():
            return  # this SQLite has no FTS5: searches fall back to LIKE
        raise
    # One statement per execute(): executescript() would commit the migration half-way.
    for statement in (
        f"""CREATE TRIGGER responses_fts_insert AFTER INSERT ON responses BEGIN
            INSERT INTO {FTS_TABLE} (rowid, prompt, reply) VALUES (new.id, new.prompt, new.reply);
        END""",
        f"""CREATE TRIGGER responses_fts_delete AFTER DELETE ON responses BEGIN
            INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, prompt, reply)
                VALUES ('delete', old.id, old.prompt, old.reply);
        END""",
        f"""CREATE TRIGGER responses_fts_update AFTER UPDATE ON responses BEGIN
            INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, prompt, reply)
                VALUES ('delete', old.id, old.prompt, old.reply);
            INSERT INTO {FTS_TABLE} (rowid, prompt, reply) VALUES (new.id, new.prompt, new.reply);
        END""",
    ):
        db.execute(statement)
    # Rows logged before this migration become searchable too.
    db.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('rebuild')")


#: Migration n (1-based) turns version n - 1 into version n.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1_responses, _v2_full_text)
VERSION = len(MIGRATIONS)


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, *, upto: int = VERSION) -> int:
    """Bring ``db`` (in autocommit mode) to schema version ``upto``; returns the version.

    :raises StorageError: the database was made by a newer chatplug.
    :raises sqlite3.Error: SQLite failed (the caller reports it).
    """
    version = _version(db)
    if version == upto:
        return version
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _version(db)  # another process may have migrated while we waited
        if version > VERSION:
            raise StorageError(
                f"the logs database has schema version {version}, newer than this chatplug "
                f"understands ({VERSION}); upgrade chatplug, or set CHATPLUG_HOME elsewhere."
            )
        for number in range(version + 1, upto + 1):
            MIGRATIONS[number - 1](db)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return max(version, upto)


def has_fts(db: sqlite3.Connection) -> bool:
    """Whether the full-text index exists (SQLite had FTS5 when the database was migrated)."""
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                     (FTS_TABLE,)).fetchone()
    return row is not None
