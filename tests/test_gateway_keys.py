"""Virtual keys at the gateway (one process, SQLite): who may use which model, requests
and tokens per minute, requests in flight, budgets, expiry and revocation, the admin API
and ``chatplug gateway keys`` — seen by real clients (the openai and anthropic SDKs)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import openai
import pytest
import requests

from chatplug.accounting import open_database
from chatplug.accounting.keys import KeyStore, VirtualKey
from chatplug.accounting.keyspec import (
    KeySyntaxError,
    allowed,
    parse_budget,
    parse_duration,
    period_end,
    period_start,
)
from chatplug.paths import data_dir
from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.conftest import run_cli
from tests.gatewayserver import GatewayServer

USER = [{"role": "user", "content": "Hi"}]
USAGE = {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100}
STATIC_KEY = "static-test-key-0123456789"
ADMIN_KEY = "admin-test-key-0123456789"


def make(**limits: Any) -> tuple[VirtualKey, str]:
    database = open_database()
    try:
        return KeyStore(database).create(limits.pop("name", "app"), **limits)
    finally:
        database.close()


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


def gateway(upstream: ScriptedServer, **settings: Any) -> GatewayServer:
    settings = {"api_keys": STATIC_KEY, "admin_key": ADMIN_KEY, "keys_refresh": 0.2,
                **settings}
    app = create_app(registry_for(upstream, max_retries=0, timeout=10),
                     ServerSettings(**settings))
    return GatewayServer(app, lifetime=120)


def openai_client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def claude(url: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


# -- syntax -------------------------------------------------------------------------------

def test_budget_expiry_and_model_syntax() -> None:
    assert (parse_budget("150000tokens").amount, parse_budget("150000tokens").unit) == (
        150000, "tokens")
    assert (parse_budget("5usd").amount, parse_budget("5.5usd").unit) == (5, "usd")
    assert [parse_duration(t) for t in ("30s", "15m", "8h", "30d")] == [
        30, 900, 8 * 3600, 30 * 86400]
    for bad in ("5", "tokens", "-3usd", "0tokens", "1.5tokens", "5eur"):
        with pytest.raises(KeySyntaxError, match="--budget"):
            parse_budget(bad)
    for bad in ("30", "1y", "0s", "1.5h", ""):
        with pytest.raises(KeySyntaxError, match="--expires"):
            parse_duration(bad)
    patterns = ("OpenAI/*", "fast", "Anthropic/claude-x")
    assert allowed(patterns, "openai/gpt-4o", None, None)
    assert allowed(patterns, "fast", "OpenAI/x", "OpenAI")
    assert allowed(patterns, "claude", "Anthropic/claude-x", "Anthropic")
    assert not allowed(patterns, "Anthropic/other", "Anthropic/other", "Anthropic")
    assert allowed(None, "anything")
    # Periods are UTC calendar periods: 2026-12-09 (a Wednesday) 13:00.
    now = 1796821200.0
    assert period_start("day", now) == 1796774400.0
    assert period_start("week", now) == 1796774400.0 - 2 * 86400
    assert period_end("month", now) == 1798761600.0  # 2027-01-01


def test_a_usd_budget_needs_prices_and_a_budget_needs_a_period() -> None:
    with pytest.raises(KeySyntaxError, match=r"\[prices"):
        make(budget=parse_budget("5usd"), period="day")
    with pytest.raises(KeySyntaxError, match="--period"):
        make(budget=parse_budget("500tokens"))
    with pytest.raises(KeySyntaxError, match="--rpm"):
        make(rpm=0)


# -- the CLI --------------------------------------------------------------------------------

def test_the_cli_creates_lists_and_revokes_and_never_shows_a_key_again() -> None:
    created = run_cli("gateway", "keys", "create", "--name", "ci-bot", "--models",
                      "OpenAI/*,fast", "--rpm", "10", "--budget", "150000tokens", "--period",
                      "month", "--expires", "30d")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("cpk_") and len(secret) > 40
    assert secret not in created.stderr
    key_id = created.stderr.split("created ")[1].split(" ")[0]
    listed = run_cli("gateway", "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout and "ci-bot" in listed.stdout
    assert "rpm 10" in listed.stdout and "150000tokens/month" in listed.stdout
    as_json = run_cli("gateway", "keys", "list", "--json")
    (entry,) = json.loads(as_json.stdout)
    assert (entry["id"], entry["models"], entry["rpm"], entry["budget"], entry["spent"]) == (
        key_id, ["OpenAI/*", "fast"], 10, "150000tokens", 0.0)
    assert entry["expires_at"] - entry["created_at"] == pytest.approx(30 * 86400)
    revoked = run_cli("gateway", "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    after = run_cli("gateway", "keys", "list", "--json")
    assert json.loads(after.stdout)[0]["revoked_at"] is not None
    for output in (listed, as_json, revoked, after):
        assert secret not in output.stdout + output.stderr
        assert secret[4:] not in output.stdout + output.stderr
    # Only its hash is stored.
    database = data_dir() / "gateway.db"
    assert secret.encode() not in database.read_bytes()
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT key_hash FROM virtual_keys").fetchall()
    finally:
        connection.close()
    assert rows and rows[0][0] != secret and len(rows[0][0]) == 64


def test_the_cli_refuses_bad_syntax_with_the_accepted_forms() -> None:
    for args, said in ((("--budget", "5", "--period", "day"), "150000tokens"),
                       (("--expires", "1y"), "30s, 15m, 8h, 30d"),
                       (("--budget", "5usd", "--period", "day"), "[prices"),
                       (("--rpm", "0"), ">= 1")):
        done = run_cli("gateway", "keys", "create", "--name", "x", *args)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr
    done = run_cli("gateway", "keys", "revoke", "vk_nosuchkey")
    assert done.returncode == 1
    assert "vk_nosuchkey" in done.stderr and "keys list" in done.stderr
