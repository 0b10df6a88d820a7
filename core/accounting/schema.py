"""The gateway database's schema, versioned: :data:`MIGRATIONS` in order, each applied
once, in a transaction, and recorded in ``schema_version``.

A migration is a list of statements valid in both SQLite and PostgreSQL (``TEXT``,
``BIGINT``, ``DOUBLE PRECISION``; times are Unix seconds).  Append a new migration to
change the schema; never edit one that has shipped.  Two gateways starting on one
database at once are safe: PostgreSQL takes an advisory lock, SQLite its write lock,
and the version is read again under it.

The tables:

- ``virtual_keys``: one row per key the gateway hands out.  Only a hash of the key
  (SHA-256, hex) is stored; ``id`` (``vk_…``) is what lists and the ledger show.
  ``models`` is a JSON list of allowed patterns (``NULL``: any).  Limits are ``NULL``
  when unset.  ``budget_tokens`` or ``budget_usd`` with ``budget_period`` (``day``,
  ``week``, ``month``).  ``revoked_at``/``expires_at`` refuse the key from then on.
- ``usage``: the ledger, one row per completion the gateway served.  ``id`` is the
  row's own unique id (a replayed journal never writes a row twice).  Never message
  text, never a key: ``key_id`` names the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import StorageError

if TYPE_CHECKING:
    from .database import Database

__all__ = ["MIGRATIONS", "current_version", "migrate"]

MIGRATIONS: list[list[str]] = [
    # 1: virtual keys and the usage ledger.
    [
        """CREATE TABLE virtual_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            models TEXT,
            rpm BIGINT,
            tpm BIGINT,
            max_parallel BIGINT,
            budget_tokens BIGINT,
            budget_usd DOUBLE PRECISION,
            budget_period TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION
        )""",
        """CREATE TABLE usage (
            id TEXT PRIMARY KEY,
            ts DOUBLE PRECISION NOT NULL,
            key_id TEXT,
            endpoint TEXT NOT NULL,
            requested_model TEXT,
            provider TEXT,
            model TEXT,
            attempts BIGINT,
            status BIGINT NOT NULL,
            error_type TEXT,
            input_tokens BIGINT,
            output_tokens BIGINT,
            cached_tokens BIGINT,
            reasoning_tokens BIGINT,
            first_piece_ms DOUBLE PRECISION,
            duration_ms DOUBLE PRECISION,
            cost_usd DOUBLE PRECISION,
            request_id TEXT
        )""",
        "CREATE INDEX usage_key_ts ON usage (key_id, ts)",
        "CREATE INDEX usage_ts ON usage (ts)",
    ],
]

#: PostgreSQL advisory lock id held while migrating (any constant unique to chatplug).
_LOCK_ID = 0x63686174706C7567 & 0x7FFFFFFFFFFFFFFF


def current_version(database: Database) -> int:
    """The schema version the database is at (0: empty).

    :raises StorageError: the database cannot be read.
    """
    if database.dialect == "sqlite":
        exists = database.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                  "AND name = 'schema_version'")
    else:
        exists = database.execute("SELECT 1 WHERE to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    rows = database.execute("SELECT MAX(version) FROM schema_version")
    return int(rows[0][0] or 0) if rows else 0


def migrate(database: Database) -> int:
    """Apply the migrations the database lacks, in order; the version it is at after.

    :raises StorageError: a migration failed (nothing of it was applied), or the database
        is newer than this chatplug (written by a later version: upgrade chatplug).
    """
    if current_version(database) == len(MIGRATIONS):
        return len(MIGRATIONS)
    with database.transaction() as connection:
        if database.dialect == "postgresql":
            # Two replicas starting at once: the second waits here, then sees the version.
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version "
                           "(version BIGINT NOT NULL)")
        rows = connection.execute("SELECT MAX(version) FROM schema_version").fetchall()
        version = int(rows[0][0] or 0) if rows else 0
        if version > len(MIGRATIONS):
            raise StorageError(
                f"the gateway database {database.where} is at schema version {version}, "
                f"newer than this chatplug knows ({len(MIGRATIONS)}); upgrade chatplug.")
        for number in range(version + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[number - 1]:
                connection.execute(statement)
            connection.execute(database.sql("INSERT INTO schema_version (version) VALUES (?)"),
                               (number,))
    return len(MIGRATIONS)
