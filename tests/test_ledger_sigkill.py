"""The usage ledger across a SIGKILL: real ``chatplug serve`` processes; every reply a
client received before the kill has its row in the database once a gateway runs again,
and none has two."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from chatplug.accounting.database import open_database
from chatplug.testing import ScriptedServer
from tests.conftest import BIN, free_port
from tests.dbservers import PostgresServer

if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("signals: Linux only")

REPLIES = 25


def serve(upstream: ScriptedServer, home: Path, port: int,
          database: str | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env.update(CHATPLUG_GRAVITYENGINE_URL=upstream.url, CHATPLUG_MAX_RETRIES="0",
               CHATPLUG_PLUGINS="", CHATPLUG_HOME=str(home))
    if database is not None:
        env["CHATPLUG_SERVER_DATABASE_URL"] = database
    process = subprocess.Popen([str(BIN / "chatplug"), "serve", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"chatplug serve did not start: {process.communicate()[1]!r}")


def acknowledged(port: int, count: int) -> list[str]:
    """``count`` replies received in full; their request ids."""
    ids = []
    with requests.Session() as session:
        for number in range(count):
            response = session.post(
                f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                json={"model": "GravityEngine",
                      "messages": [{"role": "user", "content": f"question {number}"}]})
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"]
            ids.append(response.headers["x-request-id"])
    return ids


def ledger_ids(url: str, count: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        database = open_database(url)
        try:
            found = [row[0] for row in database.execute("SELECT request_id FROM usage")]
        finally:
            database.close()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    process.communicate()


def test_sigkill_while_the_database_is_down_loses_no_acknowledged_row(
        tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.database()
    home = tmp_path / "home"
    with ScriptedServer(lifetime=120) as upstream:
        postgres.stop()  # nothing can reach the database: every row is in the journal only
        try:
            first = serve(upstream, home, free_port(), url)
            try:
                port = int(first.args[-1])
                ids = acknowledged(port, REPLIES)
            finally:
                first.kill()  # SIGKILL: no shutdown, no flush
                first.communicate()
        finally:
            postgres.start()
        second = serve(upstream, home, free_port(), url)  # replays the dead one's journal
        try:
            found = ledger_ids(url, REPLIES)
        finally:
            stop(second)
    assert sorted(found) == sorted(ids)
    assert not list((home / "ledger").rglob("*.journal"))


def test_sigkill_right_after_the_replies_then_a_restart_writes_each_row_once(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'gateway.db'}"
    with ScriptedServer(lifetime=120) as upstream:
        first = serve(upstream, home, free_port())
        try:
            ids = acknowledged(int(first.args[-1]), REPLIES)
        finally:
            first.kill()
            first.communicate()
        second = serve(upstream, home, free_port())
        try:
            more = acknowledged(int(second.args[-1]), 3)
            found = ledger_ids(url, REPLIES + 3)
        finally:
            stop(second)
    assert sorted(found) == sorted(ids + more)  # every row, none twice
    assert not list((home / "ledger").rglob("*.journal"))
