"""Virtual keys across replicas: two real ``chatplug serve`` processes sharing one
PostgreSQL and one Redis (the deployment of docs/gateway.md).  A key's requests per
minute and budget hold across both; a revocation reaches both within 10 s; a Redis outage
leaves them serving (fail-open) or refusing (fail-closed)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from chatplug.testing import ScriptedServer
from tests.conftest import BIN, free_port, run_cli
from tests.dbservers import PostgresServer, RedisServer

USER = [{"role": "user", "content": "Hi"}]
USAGE = {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100}


class Replica:
    """One ``chatplug serve`` process; its log (stderr) in a file."""

    def __init__(self, upstream: ScriptedServer, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by stop)
            "w+", prefix="replica-", suffix=".log")
        full = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
        full.update(CHATPLUG_HOME=os.environ["CHATPLUG_HOME"],
                    CHATPLUG_GRAVITYENGINE_URL=upstream.url, CHATPLUG_MAX_RETRIES="0",
                    CHATPLUG_PLUGINS="", CHATPLUG_SERVER_GRACE="1", **env)
        self.process = subprocess.Popen(
            [str(BIN / "chatplug"), "serve", "--port", str(self.port)], env=full,
            stdout=subprocess.DEVNULL, stderr=self._log)

    def wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"chatplug serve exited: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise AssertionError(f"chatplug serve did not start: {self.log()}")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()

    def chat(self, key: str, **body: Any) -> requests.Response:
        return requests.post(f"{self.url}/v1/chat/completions", timeout=30,
                             headers={"Authorization": f"Bearer {key}"},
                             json={"model": "GravityEngine", "messages": USER, **body})


@contextlib.contextmanager
def replicas(upstream: ScriptedServer, *envs: dict[str, str]) -> Iterator[list[Replica]]:
    started = [Replica(upstream, env) for env in envs]
    try:
        for replica in started:
            replica.wait()
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=180) as server:
        yield server


@pytest.fixture
def shared(postgres: PostgresServer, redis: RedisServer) -> dict[str, str]:
    """One fresh PostgreSQL database and the Redis, as every replica is configured."""
    return {"CHATPLUG_SERVER_DATABASE_URL": postgres.database(),
            "CHATPLUG_SERVER_REDIS_URL": redis.url}


def create(shared: dict[str, str], *options: str) -> tuple[str, str]:
    """``chatplug gateway keys create`` on the shared database: (id, key)."""
    done = run_cli("gateway", "keys", "create", "--name", "replicated", *options,
                   env={"CHATPLUG_SERVER_DATABASE_URL": shared["CHATPLUG_SERVER_DATABASE_URL"]},
                   timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr.split("created ")[1].split(" ")[0], done.stdout.strip()


def test_rpm_10_gives_exactly_10_successes_across_two_replicas(
        upstream: ScriptedServer, shared: dict[str, str]) -> None:
    _, key = create(shared, "--rpm", "10")
    with replicas(upstream, shared, shared) as (one, two):
        answers = [(one if n % 2 else two).chat(key) for n in range(24)]
        logs = one.log() + two.log()
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 14
    for answer in answers:
        if answer.status_code == 429:
            assert answer.json()["error"]["code"] == "rate_limit_exceeded"
            assert "(rpm)" in answer.json()["error"]["message"]
            assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert key not in logs
    assert key[4:] not in logs


def test_a_budget_stops_the_key_on_every_replica(upstream: ScriptedServer,
                                                 shared: dict[str, str]) -> None:
    _, key = create(shared, "--budget", "250tokens", "--period", "day")
    for _ in range(8):
        upstream.add(text="counted", usage=USAGE, stream=False)
    with replicas(upstream, shared, shared) as (one, two):
        statuses = []
        for n in range(8):
            answer = (one if n % 2 else two).chat(key)
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert answer.json()["error"]["code"] == "insufficient_quota"
                assert answer.headers["retry-after"]
            time.sleep(0.3)  # limits are shared within a second
    # 0, 100 and 200 tokens spent are below 250; at 300 the key stops, on both.
    assert statuses == [200, 200, 200, 429, 429, 429, 429, 429]


def test_revocation_reaches_every_replica_within_10_s_and_new_keys_work_at_once(
        upstream: ScriptedServer, shared: dict[str, str]) -> None:
    admin = "admin-test-key-0123456789"
    key_id, key = create(shared)
    with replicas(upstream, {**shared, "CHATPLUG_SERVER_ADMIN_KEY": admin},
                  shared) as (one, two):
        assert one.chat(key).status_code == two.chat(key).status_code == 200
        # A key made on one replica works on the other before its next reload.
        made = requests.post(f"{one.url}/admin/keys", timeout=10, json={"name": "fresh"},
                             headers={"Authorization": f"Bearer {admin}"})
        assert made.status_code == 201
        assert two.chat(made.json()["key"]).status_code == 200
        revoked = run_cli("gateway", "keys", "revoke", key_id, timeout=60, env={
            "CHATPLUG_SERVER_DATABASE_URL": shared["CHATPLUG_SERVER_DATABASE_URL"]})
        assert revoked.returncode == 0, revoked.stderr
        since = time.monotonic()
        refused: dict[str, float] = {}
        while len(refused) < 2 and time.monotonic() - since < 12:
            for replica in (one, two):
                if replica.url not in refused and replica.chat(key).status_code == 401:
                    refused[replica.url] = time.monotonic() - since
            time.sleep(0.2)
    assert len(refused) == 2, refused
    assert max(refused.values()) < 10, refused


def test_redis_outage_fail_open_keeps_serving_fail_closed_refuses(
        upstream: ScriptedServer, shared: dict[str, str], redis: RedisServer) -> None:
    _, key = create(shared, "--rpm", "1000")
    closed = {**shared, "CHATPLUG_SERVER_REDIS_FAIL_CLOSED": "true"}
    with replicas(upstream, shared, closed) as (open_, shut):
        assert open_.chat(key).status_code == shut.chat(key).status_code == 200
        redis.stop()
        try:
            during = [(open_.chat(key), shut.chat(key)) for _ in range(5)]
        finally:
            redis.start()
        assert [a.status_code for a, _ in during] == [200] * 5
        assert [b.status_code for _, b in during] == [503] * 5
        assert during[0][1].json()["error"]["code"] == "limits_unavailable"
        assert during[0][1].headers["retry-after"]
        time.sleep(1.5)  # Redis is tried again a second after it failed
        assert shut.chat(key).status_code == 200
        logs = open_.log(), shut.log()
    assert "Redis is unreachable" in logs[0]
    assert "per process" in logs[0]
    assert "Redis is reachable again" in logs[1]


def test_no_key_in_the_database_or_the_cli_json(shared: dict[str, str],
                                                postgres: PostgresServer) -> None:
    import psycopg

    _, key = create(shared, "--tpm", "1000")
    listed = run_cli("gateway", "keys", "list", "--json", timeout=60, env={
        "CHATPLUG_SERVER_DATABASE_URL": shared["CHATPLUG_SERVER_DATABASE_URL"]})
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout
    assert json.loads(listed.stdout)[0]["tpm"] == 1000
    with psycopg.connect(shared["CHATPLUG_SERVER_DATABASE_URL"]) as connection:
        rows = connection.execute("SELECT * FROM virtual_keys").fetchall()
    assert key not in repr(rows)
    assert key[4:] not in repr(rows)





def test_route_cooldowns_are_shared_through_redis(upstream: ScriptedServer,
                                                  redis: RedisServer) -> None:
    from chatplug.server import ServerSettings, create_app
    from chatplug.testing.pytest_plugin import registry_for
    from tests.gatewayserver import GatewayServer

    route = json.dumps({"duo": ["OpenAI/gpt-4o-mini", "Anthropic/claude-test-1"]})
    apps = [create_app(registry_for(upstream, max_retries=0, routes=route),
                       ServerSettings(redis_url=redis.url)) for _ in range(2)]
    with GatewayServer(apps[0], lifetime=60) as one, GatewayServer(apps[1], lifetime=60):
        upstream.add(status=500, text="down")
        answer = requests.post(f"{one.url}/v1/chat/completions", timeout=30,
                               json={"model": "duo", "messages": USER})
        assert answer.status_code == 200
        assert answer.headers["x-chatplug-provider"] == "Anthropic"
        states = [app.state.gateway.registry.routes()[0].state for app in apps]
        assert states[0].health(0).cooling_until > time.monotonic()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and states[1].health(0).cooling_until == 0:
            time.sleep(0.1)
        # The other replica tries the entry that failed last, without failing on it first.
        assert states[1].health(0).cooling_until > time.monotonic()
        assert states[1].health(0).failures == 0
        assert states[1].order([0, 1]) == [1, 0]


def test_64_clients_on_limited_keys_across_replicas_see_only_429s_with_retry_after(
        upstream: ScriptedServer, shared: dict[str, str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = [create(shared, "--rpm", "30", "--max-parallel", "3")[1] for _ in range(4)]
    upstream.pace = 0.01
    with replicas(upstream, shared, shared) as pair:
        def one(number: int) -> tuple[int, int, str | None, str | None]:
            answer = pair[number % 2].chat(keys[number % 4], stream=True)
            code = answer.json()["error"]["code"] if answer.status_code != 200 else None
            return number % 4, answer.status_code, answer.headers.get("retry-after"), code

        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(320)))
    assert {status for _, status, _, _ in results} <= {200, 429}
    refused = [r for r in results if r[1] == 429]
    assert refused
    assert all(after is not None and int(after) >= 1 for _, _, after, _ in refused)
    assert {code for _, _, _, code in refused} == {"rate_limit_exceeded"}
    for key in range(4):  # one minute's 30 requests at most, across both replicas
        assert 1 <= sum(1 for k, status, _, _ in results if k == key and status == 200) <= 30
