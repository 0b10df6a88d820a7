"""``chatplug gateway usage``: the ledger summed by key, model, provider or day, as a table
or JSON, from SQLite (rows a real gateway wrote) and from PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from chatplug.accounting.database import open_database
from chatplug.accounting.ledger import insert_rows
from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.conftest import run_cli
from tests.dbservers import PostgresServer
from tests.gatewayserver import GatewayServer

USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200}
PRICES = """
[prices."OpenAI/*"]
input = 1.0
output = 2.0
"""
DAY = 86400.0


def seed(url: str | None, now: float) -> None:
    """Two keys (one revoked and deleted since), three models, three days."""
    database = open_database(url)
    try:
        database.execute("INSERT INTO virtual_keys (id, name, key_hash, created_at) "
                         "VALUES ('vk_alice', 'alice', 'not-a-real-hash', 0)")
        row = ("/v1/chat/completions", "OpenAI/gpt-4o-mini", "OpenAI", "gpt-4o-mini", 1, 200,
               None, 100, 10, 0, 0, 5.0, 9.0)
        insert_rows(database, [
            ("r1", now, "vk_alice", *row, 0.25, "q1"),
            ("r2", now - 1, "vk_alice", *row, 0.25, "q2"),
            ("r3", now - 2 * DAY, "vk_gone", *row[:3], "gpt-4.1", 1, 500, "upstream_error",
             None, None, None, None, None, 4.0, None, "q3"),
            ("r4", now - 3 * DAY, None, "/v1/messages", "claude", "Anthropic", "claude",
             1, 200, None, 50, 5, None, None, 3.0, 6.0, None, "q4"),
        ])
    finally:
        database.close()


def usage(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = run_cli("gateway", "usage", *args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def test_usage_of_rows_a_real_gateway_wrote(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "chatplug.toml"
    config.write_text(PRICES)
    monkeypatch.setenv("CHATPLUG_CONFIG", str(config))
    with ScriptedServer(lifetime=60) as upstream:
        app = create_app(registry_for(upstream, max_retries=0, timeout=5), ServerSettings())
        with GatewayServer(app, lifetime=60) as gateway:
            for model in ("OpenAI/gpt-4o-mini", "OpenAI/gpt-4o-mini", "OpenAI/gpt-4.1"):
                upstream.add(text="fine", usage=USAGE, stream=False)
                requests.post(f"{gateway.url}/v1/chat/completions", timeout=10, json={
                    "model": model, "messages": [{"role": "user", "content": "Hi"}]}
                              ).raise_for_status()
            assert app.state.ledger.flush()
    data = usage("--by", "model")
    assert data["by"] == "model"
    assert [(r["name"], r["requests"], r["input_tokens"]) for r in data["rows"]] == [
        ("OpenAI/gpt-4o-mini", 2, 2000), ("OpenAI/gpt-4.1", 1, 1000)]
    total = data["total"]
    assert total["requests"] == 3
    assert total["cost_usd"] == pytest.approx(3 * (1000 * 1.0 + 200 * 2.0) / 1e6)
    table = run_cli("gateway", "usage", "--by", "provider")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["PROVIDER", "REQUESTS", "ERRORS"]
    assert lines[1].split()[:2] == ["OpenAI", "3"]
    assert lines[-1].split()[:2] == ["total", "3"]


def test_usage_by_key_model_provider_and_day_since(tmp_path: Path) -> None:
    now = time.time()
    seed(None, now)
    by_key = usage("--by", "key")
    found = [(r["name"], r["key_name"], r["requests"], r["cost_usd"]) for r in by_key["rows"]]
    assert found[0] == ("vk_alice", "alice", 2, 0.5)  # the costliest first
    assert sorted(found[1:], key=str) == sorted([(None, None, 1, None),
                                                 ("vk_gone", None, 1, None)], key=str)
    by_provider = usage("--by", "provider")
    assert {r["name"]: r["requests"] for r in by_provider["rows"]} == {"OpenAI": 3,
                                                                       "Anthropic": 1}
    by_model = usage("--by", "model")
    assert {r["name"]: r["errors"] for r in by_model["rows"]} == {
        "OpenAI/gpt-4o-mini": 0, "OpenAI/gpt-4.1": 1, "Anthropic/claude": 0}
    by_day = usage("--by", "day")
    assert [r["requests"] for r in by_day["rows"]] == [1, 1, 2]  # oldest day first
    assert by_day["rows"][-1]["name"] == time.strftime("%Y-%m-%d", time.gmtime(now))
    recent = usage("--since", "1d")
    assert recent["total"]["requests"] == 2
    assert recent["total"]["cost_usd"] == pytest.approx(0.5)
    done = run_cli("gateway", "usage", "--since", "last tuesday")
    assert done.returncode == 2
    assert "--since 'last tuesday'" in done.stderr
    assert "not-a-real-hash" not in json.dumps(by_key)


def test_usage_from_postgresql(postgres: PostgresServer) -> None:
    url = postgres.database()
    seed(url, time.time())
    env = {"CHATPLUG_SERVER_DATABASE_URL": url}
    data = usage("--by", "key", env=env)
    assert data["rows"][0]["name"] == "vk_alice"
    assert data["rows"][0]["key_name"] == "alice"
    assert data["rows"][0]["input_tokens"] == 200  # NUMERIC sums back as integers
    assert data["total"]["requests"] == 4
    by_day = usage("--by", "day", env=env)
    assert len(by_day["rows"]) == 3
    table = run_cli("gateway", "usage", env=env)
    assert table.returncode == 0, table.stderr
    assert "OpenAI/gpt-4o-mini" in table.stdout
