"""The usage ledger (docs/ledger.md): one row per completion the gateway serves, written
off the request path by a writer thread, kept in a local journal until the database has
it (SQLite by default, PostgreSQL by URL), priced from ``[prices]``; and
``Completion.cost`` in the library from the same prices."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import requests

from chatplug.accounting.database import open_database
from chatplug.accounting.journal import Segment, encode, journal_dir, orphan, segment_name
from chatplug.accounting.ledger import COLUMNS, Ledger, insert_rows
from chatplug.paths import data_dir
from chatplug.server import ServerSettings, create_app
from chatplug.server.record import RequestRecord
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.dbservers import PostgresServer
from tests.gatewayserver import GatewayServer

USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
         "prompt_tokens_details": {"cached_tokens": 400}}
USER = [{"role": "user", "content": "a secret question 7c1e"}]
REPLY = "a private answer 9d2f"
PRICES = """
[prices."OpenAI/gpt-4o-mini"]
input = 0.15
output = 0.60
cached = 0.075
"""
#: 600 fresh input tokens at 0.15, 400 cached at 0.075, 200 output at 0.60 (per million).
COST = (600 * 0.15 + 400 * 0.075 + 200 * 0.60) / 1e6
GATEWAY_KEY = "gateway-key-for-tests-only-0000"


def rows(url: str | None = None) -> list[dict[str, Any]]:
    """Every ledger row, as dicts, by time."""
    database = open_database(url)
    try:
        found = database.execute(f"SELECT {', '.join(COLUMNS)} FROM usage ORDER BY ts")
    finally:
        database.close()
    return [dict(zip(COLUMNS, row, strict=True)) for row in found]


def wait_rows(count: int, url: str | None = None, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found = rows(url)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        found = rows(url)
    return found


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


def gateway_app(upstream: ScriptedServer, **settings: Any) -> Any:
    return create_app(registry_for(upstream, max_retries=0, timeout=5),
                      ServerSettings(**settings))


def test_every_completion_leaves_one_row_and_no_text_or_key(upstream: ScriptedServer,
                                                            tmp_path: Path) -> None:
    app = gateway_app(upstream, api_keys=GATEWAY_KEY)
    with GatewayServer(app, lifetime=60) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY,
                               max_retries=0)
        upstream.add(text=REPLY, usage=USAGE, stream=False)
        client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        upstream.add(text=REPLY, usage=USAGE)
        chunks = list(client.chat.completions.create(
            model="OpenAI/gpt-4o-mini", messages=USER, stream=True,
            stream_options={"include_usage": True}))
        assert chunks
        upstream.add(text=REPLY, usage=USAGE, stream=False)
        claude = anthropic.Anthropic(base_url=gateway.url, api_key=GATEWAY_KEY, max_retries=0)
        claude.messages.create(model="OpenAI/gpt-4o-mini", max_tokens=50, messages=USER)
        upstream.add(status=500, text="upstream broke")
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        assert app.state.ledger.flush()
    found = wait_rows(4)
    assert [(r["endpoint"], r["status"]) for r in found] == [
        ("/v1/chat/completions", 200), ("/v1/chat/completions", 200),
        ("/v1/messages", 200), ("/v1/chat/completions", 502)]
    first = found[0]
    assert (first["provider"], first["model"], first["requested_model"]) == (
        "OpenAI", "gpt-4o-mini", "OpenAI/gpt-4o-mini")
    assert (first["input_tokens"], first["output_tokens"], first["cached_tokens"]) == (
        1000, 200, 400)
    assert first["attempts"] == 1
    assert first["request_id"]
    assert 0 < first["first_piece_ms"] <= first["duration_ms"]
    assert first["cost_usd"] is None  # no prices configured
    assert found[1]["output_tokens"] == 200  # a stream's usage, from its last chunk
    assert found[3]["error_type"]
    assert len({r["id"] for r in found}) == 4
    # Never a message, a reply or a key: not in the database, not in the journal.
    files = [data_dir() / "gateway.db", *(data_dir() / "ledger").rglob("*")]
    for path in files:
        if path.is_file():
            data = path.read_bytes()
            for secret in (b"secret question", b"private answer", GATEWAY_KEY.encode()):
                assert secret not in data, path
    assert app.state.ledger.stats.written == 4
    assert app.state.ledger.stats.dropped == 0


def test_prices_fill_the_cost_of_each_row(upstream: ScriptedServer, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "chatplug.toml"
    config.write_text(PRICES)
    monkeypatch.setenv("CHATPLUG_CONFIG", str(config))
    app = gateway_app(upstream)
    with GatewayServer(app, lifetime=60) as gateway:
        upstream.add(text=REPLY, usage=USAGE, stream=False)
        requests.post(f"{gateway.url}/v1/chat/completions", timeout=10, json={
            "model": "OpenAI/gpt-4o-mini", "messages": USER}).raise_for_status()
        upstream.add(text=REPLY, usage=USAGE, stream=False)
        requests.post(f"{gateway.url}/v1/chat/completions", timeout=10, json={
            "model": "OpenAI/gpt-4.1", "messages": USER}).raise_for_status()
        assert app.state.ledger.flush()
    priced, unpriced = wait_rows(2)
    assert priced["cost_usd"] == pytest.approx(COST)
    assert unpriced["cost_usd"] is None


def test_completion_cost_in_the_library_sync_async_and_stream(
        upstream: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "chatplug.toml"
    config.write_text(PRICES)
    monkeypatch.setenv("CHATPLUG_CONFIG", str(config))
    registry = registry_for(upstream, max_retries=0, timeout=5)
    provider = registry.get("OpenAI")
    upstream.add(text=REPLY, usage=USAGE, stream=False)
    completion = provider.complete(USER, model="gpt-4o-mini")
    assert completion.cost == pytest.approx(COST)
    assert completion.as_dict()["cost"] == pytest.approx(COST)
    upstream.add(text=REPLY, usage=USAGE, stream=False)
    completion = asyncio.run(provider.acomplete(USER, model="gpt-4o-mini"))
    assert completion.cost == pytest.approx(COST)
    upstream.add(text=REPLY, usage=USAGE)
    stream = provider.create(messages=USER, model="gpt-4o-mini", stream=True)
    assert "".join(stream) == REPLY
    assert stream.completion.cost == pytest.approx(COST)
    upstream.add(text=REPLY, usage=USAGE, stream=False)
    assert provider.complete(USER, model="gpt-4.1").cost is None  # no price for it
    registry.close()


def test_without_prices_the_library_leaves_cost_unset(upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    upstream.add(text=REPLY, usage=USAGE, stream=False)
    assert registry.get("OpenAI").complete(USER, model="gpt-4o-mini").cost is None
    registry.close()


def test_the_ledger_can_be_turned_off(upstream: ScriptedServer) -> None:
    app = gateway_app(upstream, ledger=False)
    assert app.state.ledger is None
    with GatewayServer(app, lifetime=60) as gateway:
        upstream.add(text=REPLY, usage=USAGE, stream=False)
        requests.post(f"{gateway.url}/v1/chat/completions", timeout=10, json={
            "model": "OpenAI/gpt-4o-mini", "messages": USER}).raise_for_status()
    # The virtual keys may open the gateway's database; the ledger wrote nothing to it.
    database = data_dir() / "gateway.db"
    if database.exists():
        with contextlib.closing(sqlite3.connect(database)) as connection:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            rows = (connection.execute("SELECT COUNT(*) FROM usage").fetchone()[0]
                    if "usage" in tables else 0)
        assert rows == 0
    assert not (data_dir() / "ledger").exists()  # no journal either


# -- PostgreSQL ------------------------------------------------------------------------


def test_postgresql_gets_the_same_rows(upstream: ScriptedServer, postgres: PostgresServer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres.database()
    monkeypatch.setenv("CHATPLUG_SERVER_DATABASE_URL", url)
    app = gateway_app(upstream)
    with GatewayServer(app, lifetime=60) as gateway:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused",
                               max_retries=0)
        for _ in range(3):
            upstream.add(text=REPLY, usage=USAGE, stream=False)
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        assert app.state.ledger.flush()
    found = wait_rows(3, url)
    assert len(found) == 3
    assert {r["input_tokens"] for r in found} == {1000}
    # With PostgreSQL named, the keys and the ledger both use it: no SQLite file.
    assert not (data_dir() / "gateway.db").exists()


def test_a_database_outage_fails_no_request_and_its_rows_arrive_after(
        upstream: ScriptedServer, postgres: PostgresServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres.database()
    monkeypatch.setenv("CHATPLUG_SERVER_DATABASE_URL", url)
    # A small queue: most rows of the outage wait in the journal only (deferred).  The
    # pause between attempts is capped at 1 s instead of 10 here: the rows arrive soon
    # after the database is back, whatever the outage grew the pause to.
    monkeypatch.setattr("chatplug.accounting.ledger.RETRY_MAX", 1.0)
    app = gateway_app(upstream, ledger_queue=5)
    ledger: Ledger = app.state.ledger
    with GatewayServer(app, lifetime=90) as gateway:
        def one(_: int) -> int:
            upstream.add(text=REPLY, usage=USAGE, stream=False)
            with requests.post(f"{gateway.url}/v1/chat/completions", timeout=10, json={
                    "model": "OpenAI/gpt-4o-mini", "messages": USER}) as response:
                return response.status_code

        statuses = [one(i) for i in range(5)]
        assert ledger.flush()
        postgres.stop()
        try:
            with ThreadPoolExecutor(8) as pool:
                statuses += list(pool.map(one, range(40)))
            assert statuses == [200] * 45  # 0 failed requests
            assert not ledger.flush(timeout=1)  # nothing can be written meanwhile
            stats = ledger.stats
            assert stats.deferred > 0
            assert not stats.database_ok
            assert stats.journal_bytes > 0
        finally:
            postgres.start()
        found = wait_rows(45, url, timeout=60)
        assert len(found) == 45
        assert ledger.flush()
        deadline = time.monotonic() + 10
        while ledger.stats.journal_bytes and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ledger.stats.journal_bytes == 0
        assert ledger.stats.dropped == 0
    assert len({r["request_id"] for r in rows(url)}) == 45  # none twice


def test_a_full_queue_and_journal_drop_rows_without_failing_requests(
        upstream: ScriptedServer, postgres: PostgresServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres.database()
    monkeypatch.setenv("CHATPLUG_SERVER_DATABASE_URL", url)
    # No journal: past the queue, rows are dropped.
    app = gateway_app(upstream, ledger_queue=1, ledger_journal_mb=0)
    ledger: Ledger = app.state.ledger
    postgres.stop()
    try:
        with GatewayServer(app, lifetime=60) as gateway:
            for _ in range(5):
                upstream.add(text=REPLY, usage=USAGE, stream=False)
                requests.post(f"{gateway.url}/v1/chat/completions", timeout=10, json={
                    "model": "OpenAI/gpt-4o-mini", "messages": USER}).raise_for_status()
            stats = ledger.stats
            assert stats.dropped >= 3
            assert stats.written == 0
            # /metrics says so (read from the ledger when scraped).
            metrics = requests.get(f"{gateway.url}/metrics", timeout=10).text
            assert f"chatplug_ledger_rows_dropped_total {float(stats.dropped)}" in metrics
    finally:
        postgres.start()


# -- the journal -----------------------------------------------------------------------


def record(number: int) -> RequestRecord:
    from chatplug.events import Usage

    return RequestRecord("/v1/chat/completions", f"request-{number}", requested_model="m",
                         provider="OpenAI", model="m", attempts=1, status=200,
                         usage=Usage(prompt_tokens=3, completion_tokens=4),
                         first_piece=0.01, duration=0.02)


def test_a_dead_processs_journal_is_replayed_and_no_row_is_written_twice(
        tmp_path: Path) -> None:
    # A process journaled ten rows and was killed after four reached the database, in
    # the middle of writing an eleventh line.  Nobody holds its segment any more.
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    database = open_database(url)
    maker = Ledger(database, tmp_path / "journal")  # never started: it only makes rows
    made = [maker.row(record(number)) for number in range(10)]
    insert_rows(database, made[:4])
    database.close()
    segment = journal_dir(tmp_path / "journal", database.where) / segment_name(1, "dead", 0)
    cut = encode(made[0])
    segment.write_bytes(b"".join(encode(row) for row in made) + cut[:len(cut) // 2])
    survivor = Ledger(open_database(url, migrate=False), tmp_path / "journal")
    survivor.start()
    try:
        found = wait_rows(10, url, timeout=20)
        deadline = time.monotonic() + 10
        while segment.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not segment.exists()
        assert survivor.stats.replayed == 10
    finally:
        survivor.close()
    found = rows(url)
    assert sorted(r["request_id"] for r in found) == sorted(f"request-{n}" for n in range(10))


def test_a_live_processs_journal_is_never_taken(tmp_path: Path) -> None:
    live = Segment(tmp_path / "1-live-0.journal")
    live.append(encode(()))
    with orphan(live.path) as fd:
        assert fd is None  # locked by a live writer
    live.close(delete=False)  # as its process ending would
    with orphan(live.path) as fd:
        assert fd is not None
