"""The gateway's database: one schema on SQLite and PostgreSQL, migrated once, safe to
open from two processes, errors that name the database and never a password."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chatplug.accounting import MIGRATIONS, Database, current_version, open_database
from chatplug.errors import ConfigurationError, StorageError
from tests.dbservers import PostgresServer

_ROW = ("r1", 1.5, "vk_1", "/v1/chat/completions", "fast", "OpenAI", "gpt-4o-mini", 1, 200,
        None, 3, 5, 0, 0, 12.5, 40.0, 0.0001, "req-1")
_INSERT = ("INSERT INTO usage (id, ts, key_id, endpoint, requested_model, provider, model, "
           "attempts, status, error_type, input_tokens, output_tokens, cached_tokens, "
           "reasoning_tokens, first_piece_ms, duration_ms, cost_usd, request_id) VALUES "
           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")


def _exercise(database: Database) -> None:
    assert current_version(database) == len(MIGRATIONS)
    database.executemany(_INSERT, [_ROW, _ROW])  # the same row twice is written once
    database.executemany(_INSERT, [_ROW])
    assert database.execute("SELECT COUNT(*), SUM(output_tokens) FROM usage") == [(1, 5)]
    seen: list[object] = []

    def other_thread() -> None:  # each thread has its own connection
        seen.append(database.execute("SELECT key_id FROM usage WHERE id = ?", ("r1",)))

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert seen == [[("vk_1",)]]
    with pytest.raises(StorageError, match="failed") as caught:
        database.execute("SELECT nothing FROM nowhere")
    assert database.where in str(caught.value)


def test_sqlite_in_the_data_dir_by_default(tmp_path: Path) -> None:
    database = open_database()
    try:
        assert database.dialect == "sqlite"
        assert Path(database.where).name == "gateway.db"
        assert Path(database.where).stat().st_mode & 0o077 == 0
        _exercise(database)
        assert database.execute("PRAGMA journal_mode") == [("wal",)]
    finally:
        database.close()
    again = open_database()  # a second open migrates nothing and keeps the rows
    try:
        assert again.execute("SELECT COUNT(*) FROM usage") == [(1,)]
    finally:
        again.close()


def test_postgresql_holds_the_same_schema(postgres: PostgresServer) -> None:
    url = postgres.database()
    databases = []
    errors: list[BaseException] = []

    def opener() -> None:  # two gateways starting at once migrate once
        try:
            databases.append(open_database(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert databases[0].dialect == "postgresql"
        _exercise(databases[0])
        assert databases[1].execute("SELECT COUNT(*) FROM schema_version") == [(1,)]
    finally:
        for database in databases:
            database.close()


def test_a_password_never_shows(postgres: PostgresServer) -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{postgres.port}/absent_db"
    with pytest.raises(StorageError) as caught:
        open_database(url)
    assert "s3cret-pw" not in str(caught.value)
    assert "***" in str(caught.value)


def test_an_unknown_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        open_database("mysql://x/y")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    database = open_database(url)
    database.execute("INSERT INTO schema_version (version) VALUES (?)", (99,))
    database.close()
    with pytest.raises(StorageError, match="upgrade chatplug"):
        open_database(url)


def test_the_gateway_reads_its_database_url_from_dot_env_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chatplug.gateway_settings import load_server_settings

    target = tmp_path / "team" / "gateway.db"
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"CHATPLUG_SERVER_DATABASE_URL=sqlite:///{target}\n",
                                   encoding="utf-8")
    database = load_server_settings().database()
    try:
        assert database.where == str(target)
        assert current_version(database) == len(MIGRATIONS)
    finally:
        database.close()


def test_a_password_in_the_query_never_shows() -> None:
    from chatplug.accounting import redacted_url

    shown = redacted_url("postgresql://db.internal/team?password=s3cret-pw&sslmode=require")
    assert "s3cret-pw" not in shown
    assert "sslmode=require" in shown
