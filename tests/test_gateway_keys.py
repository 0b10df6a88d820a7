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


_CLIENTS: list[Any] = []


@pytest.fixture(autouse=True)
def _closed_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def openai_client(url: str, key: str) -> openai.OpenAI:
    """An openai SDK client, closed when the test ends."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


def claude(url: str, key: str) -> anthropic.Anthropic:
    """An anthropic SDK client, closed when the test ends."""
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


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
    assert secret.startswith("cpk_")
    assert len(secret) > 40
    assert secret not in created.stderr
    key_id = created.stderr.split("created ")[1].split(" ")[0]
    listed = run_cli("gateway", "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout
    assert "ci-bot" in listed.stdout
    assert "rpm 10" in listed.stdout
    assert "150000tokens/month" in listed.stdout
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
    assert rows
    assert rows[0][0] != secret
    assert len(rows[0][0]) == 64


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
    assert "vk_nosuchkey" in done.stderr
    assert "keys list" in done.stderr


# -- the gateway ------------------------------------------------------------------------------

def test_models_the_key_may_not_use_are_403_in_each_sdks_own_class(upstream: ScriptedServer
                                                                     ) -> None:
    _, secret = make(models=("OpenAI/*",))
    with gateway(upstream) as server:
        upstream.add(text="fine", usage=USAGE, stream=False)
        reply = openai_client(server.url, secret).chat.completions.create(
            model="OpenAI/gpt-4o-mini", messages=USER)
        assert reply.choices[0].message.content == "fine"
        before = len(upstream.requests)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            openai_client(server.url, secret).chat.completions.create(
                model="Anthropic/claude-test-1", messages=USER)
        assert refused.value.code == "model_not_allowed"
        assert "OpenAI/*" in refused.value.message
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            claude(server.url, secret).messages.create(
                model="Anthropic/claude-test-1", max_tokens=10, messages=USER)
        assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        assert len(upstream.requests) == before  # nothing went upstream


def test_requests_per_minute_are_429_naming_the_limit_with_retry_after(
        upstream: ScriptedServer) -> None:
    _, secret = make(rpm=3)
    with gateway(upstream) as server:
        client = openai_client(server.url, secret)
        for _ in range(3):
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        assert refused.value.code == "rate_limit_exceeded"
        assert "3 requests per minute (rpm)" in refused.value.message
        assert 55 <= int(refused.value.response.headers["retry-after"]) <= 60
        with pytest.raises(anthropic.RateLimitError) as limited:
            claude(server.url, secret).messages.create(
                model="OpenAI/gpt-4o-mini", max_tokens=10, messages=USER)
        assert "rpm" in limited.value.message
        assert limited.value.response.headers["retry-after"]
        # The gateway's own keys have no limits.
        for _ in range(5):
            openai_client(server.url, STATIC_KEY).chat.completions.create(
                model="OpenAI/gpt-4o-mini", messages=USER)


def test_a_budget_in_tokens_counts_whole_replies_and_streams_then_is_insufficient_quota(
        upstream: ScriptedServer) -> None:
    _, secret = make(budget=parse_budget("250tokens"), period="day", tpm=10_000)
    with gateway(upstream) as server:
        client = openai_client(server.url, secret)
        upstream.add(text="one", usage=USAGE, stream=False)
        client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        upstream.add(text="two", usage=USAGE)
        pieces = list(client.chat.completions.create(model="OpenAI/gpt-4o-mini",
                                                     messages=USER, stream=True))
        assert pieces
        upstream.add(text="three", usage=USAGE, stream=False)
        time.sleep(0.1)
        client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)  # 200 < 250
        time.sleep(0.1)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        assert refused.value.code == "insufficient_quota"
        assert "250tokens" in refused.value.message
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert refused.value.response.headers["retry-after"]
        with pytest.raises(anthropic.RateLimitError):
            claude(server.url, secret).messages.create(
                model="OpenAI/gpt-4o-mini", max_tokens=10, messages=USER)


def test_a_reply_without_usage_still_spends_the_budget(upstream: ScriptedServer) -> None:
    # A server that reports no usage, and a stream cut before its usage chunk: the gateway
    # counts an estimate (about 4 characters a token, request and reply), never nothing.
    _, secret = make(budget=parse_budget("400tokens"), period="day")
    text = "word " * 300  # about 375 tokens of reply
    with gateway(upstream) as server:
        client = openai_client(server.url, secret)
        upstream.add(text=text, stream=False)  # no usage
        client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        upstream.add(pieces=[text[:100]] * 3, piece_delay=0.3, usage=USAGE)
        with requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=10,
                           headers={"Authorization": f"Bearer {secret}"},
                           json={"model": "OpenAI/gpt-4o-mini", "messages": USER,
                                 "stream": True}) as cut:
            next(cut.iter_lines())  # the client goes away before the usage chunk
        time.sleep(0.3)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        assert refused.value.code == "insufficient_quota"


def test_tokens_per_minute_refuse_once_the_windows_tokens_reach_the_limit(
        upstream: ScriptedServer) -> None:
    _, secret = make(tpm=150)
    with gateway(upstream) as server:
        client = openai_client(server.url, secret)
        for _ in range(2):
            upstream.add(text="x", usage=USAGE, stream=False)
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
            time.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        assert "150 tokens per minute (tpm)" in refused.value.message


def test_a_usd_budget_counts_the_priced_cost(upstream: ScriptedServer, tmp_path: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "chatplug.toml"
    # 40 input and 60 output tokens at 1000 and 2000 USD per million: 0.16 USD a reply.
    config.write_text('[prices."OpenAI/*"]\ninput = 1000\noutput = 2000\n')
    monkeypatch.setenv("CHATPLUG_CONFIG", str(config))
    _, secret = make(budget=parse_budget("0.3usd"), period="month", priced=True)
    with gateway(upstream) as server:
        client = openai_client(server.url, secret)
        for _ in range(2):
            upstream.add(text="x", usage=USAGE, stream=False)
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
            time.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        assert refused.value.code == "insufficient_quota"
        # A model without a price cannot be counted against a USD budget.
        with pytest.raises(openai.PermissionDeniedError) as unpriced:
            client.chat.completions.create(model="Anthropic/claude-test-1", messages=USER)
        assert unpriced.value.code == "model_not_priced"


def test_revoked_expired_and_unknown_keys_are_401(upstream: ScriptedServer) -> None:
    key, secret = make()
    _, short = make(expires_in=1)
    with gateway(upstream) as server:
        openai_client(server.url, secret).models.list()
        openai_client(server.url, short).models.list()
        database = open_database()
        try:
            KeyStore(database).revoke(key.id)
        finally:
            database.close()
        time.sleep(1.2)
        for gone, said in ((secret, "revoked or expired"), (short, "revoked or expired"),
                           ("cpk_" + "x" * 43, "is wrong")):
            with pytest.raises(openai.AuthenticationError) as refused:
                openai_client(server.url, gone).chat.completions.create(
                    model="OpenAI/gpt-4o-mini", messages=USER)
            assert said in refused.value.message


def test_parallel_slots_and_64_clients_see_only_expected_429s(upstream: ScriptedServer
                                                             ) -> None:
    keys = [make(name=f"k{n}", max_parallel=2, rpm=40)[1] for n in range(4)]
    upstream.pace = 0.01
    with gateway(upstream) as server:
        def one(number: int) -> tuple[int, str | None, str | None]:
            response = requests.post(
                f"{server.url}/v1/chat/completions", timeout=30,
                headers={"Authorization": f"Bearer {keys[number % 4]}"},
                json={"model": "OpenAI/gpt-4o-mini", "messages": USER, "stream": True})
            code = response.json()["error"]["code"] if response.status_code != 200 else None
            return response.status_code, response.headers.get("retry-after"), code

        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(256)))
    statuses = {status for status, _, _ in results}
    assert statuses <= {200, 429}, statuses
    refused = [r for r in results if r[0] == 429]
    assert refused
    assert all(after is not None and int(after) >= 1 for _, after, _ in refused)
    assert {code for _, _, code in refused} <= {"rate_limit_exceeded"}
    # At most 40 requests a minute for each of the 4 keys.
    assert 8 <= sum(1 for r in results if r[0] == 200) <= 160


def test_the_admin_api_needs_the_admin_key(upstream: ScriptedServer) -> None:
    with gateway(upstream) as server:
        url = f"{server.url}/admin/keys"
        assert requests.get(url, timeout=10).status_code == 401
        assert requests.get(url, timeout=10, headers={
            "Authorization": f"Bearer {STATIC_KEY}"}).status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        bad = requests.post(url, timeout=10, headers=admin,
                            json={"name": "x", "budget": "lots", "period": "day"})
        assert bad.status_code == 400
        assert "150000tokens" in bad.json()["error"]["message"]
        created = requests.post(url, timeout=10, headers=admin, json={
            "name": "web", "models": ["OpenAI/*"], "rpm": 5, "budget": "1000tokens",
            "period": "week", "expires": "8h"})
        assert created.status_code == 201, created.text
        body = created.json()
        secret = body["key"]
        assert secret.startswith("cpk_")
        assert body["rpm"] == 5
        # The new key works at once on this replica.
        openai_client(server.url, secret).chat.completions.create(
            model="OpenAI/gpt-4o-mini", messages=USER)
        listed = requests.get(url, timeout=10, headers={"x-api-key": ADMIN_KEY})
        assert listed.status_code == 200
        assert secret not in listed.text
        (entry,) = listed.json()["data"]
        assert entry["id"] == body["id"]
        assert entry["last_used"] is None
        gone = requests.delete(f"{url}/{body['id']}", timeout=10, headers=admin)
        assert gone.status_code == 200
        assert gone.json()["revoked_at"] is not None
        assert requests.delete(f"{url}/vk_nope", timeout=10,
                               headers=admin).status_code == 404
        with pytest.raises(openai.AuthenticationError):
            openai_client(server.url, secret).models.list()


def test_without_an_admin_key_there_is_no_admin_api(upstream: ScriptedServer) -> None:
    with gateway(upstream, admin_key=None) as server:
        assert requests.get(f"{server.url}/admin/keys", timeout=10, headers={
            "Authorization": f"Bearer {STATIC_KEY}"}).status_code == 404


def test_the_command_lines_in_docs_keys_md_parse() -> None:
    import re
    import shlex

    from chatplug.cli.commands import _parser, _requested
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "keys.md").read_text(encoding="utf-8")
    lines = [line[2:] for block in re.findall(r"^```console\n(.*?)^```$", text,
                                              re.MULTILINE | re.DOTALL)
             for line in block.splitlines() if line.startswith("$ chatplug ")]
    assert len(lines) == 5
    for line in lines:
        words = shlex.split(line)
        chosen = _requested(words[1:])
        assert chosen is not None, line
        parser, _ = _parser(chosen)
        parser.parse_args(words[1:])


def test_an_unreachable_redis_is_a_flag_and_counts_the_metrics_can_read(
        upstream: ScriptedServer) -> None:
    from tests.conftest import free_port

    _, secret = make(rpm=100)
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with gateway(upstream, redis_url=nowhere) as server:
        limits = server.server.config.app.state.gateway.key_limits
        for _ in range(3):
            openai_client(server.url, secret).chat.completions.create(
                model="OpenAI/gpt-4o-mini", messages=USER)
        assert limits.degraded
        assert limits.redis_failures >= 1
        assert limits.local_fallbacks == 3
        metrics = requests.get(f"{server.url}/metrics", timeout=10,
                               headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert "chatplug_limits_redis_degraded 1.0" in metrics.text
    with gateway(upstream, redis_url=nowhere, redis_fail_closed=True) as server:
        with pytest.raises(openai.InternalServerError) as refused:
            openai_client(server.url, secret).chat.completions.create(
                model="OpenAI/gpt-4o-mini", messages=USER)
        assert refused.value.code == "limits_unavailable"
        # The gateway's own keys are never limited.
        openai_client(server.url, STATIC_KEY).chat.completions.create(
            model="OpenAI/gpt-4o-mini", messages=USER)


def test_an_admin_key_alone_makes_every_request_need_a_key(upstream: ScriptedServer) -> None:
    with gateway(upstream, api_keys=None) as server:
        refused = requests.post(f"{server.url}/v1/chat/completions", timeout=10,
                                json={"model": "OpenAI/gpt-4o-mini", "messages": USER})
        assert refused.status_code == 401
        made = requests.post(f"{server.url}/admin/keys", timeout=10, json={"name": "first"},
                             headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert made.status_code == 201
        openai_client(server.url, made.json()["key"]).chat.completions.create(
            model="OpenAI/gpt-4o-mini", messages=USER)
