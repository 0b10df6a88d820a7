"""Observers are notifications (issue 18, section 3): posted to a bounded queue, delivered
in order by one thread, never waited on by a call; an installed observer leaves async
calls on the event loop; what is queued is delivered before the process exits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chatplug import Registry, hookimpl
from chatplug.calls.notify import Notifications
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

MESSAGES = [{"role": "user", "content": "hello"}]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    made = registry_for(chatplug_server, max_retries=0)
    yield made
    made.close()


class Slow:
    """An observer that takes up to 2 s per response (it can be released early)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.heard = threading.Event()

    @hookimpl
    def chatplug_on_response(self, outcome: str) -> None:
        self.release.wait(2)
        self.heard.set()


@pytest.mark.parametrize("stream", [False, True])
def test_a_slow_observer_does_not_delay_the_call(registry: Registry, stream: bool) -> None:
    slow = Slow()
    registry.register_observer(slow, name="slow")
    try:
        provider = registry.get("GravityEngine")
        if stream:
            assert "".join(provider.create(messages=MESSAGES, stream=True)) == "You said: hello"
        else:
            assert provider.create(messages=MESSAGES) == "You said: hello"
        # The call returned while its observer was still busy with it.
        assert not slow.heard.is_set()
    finally:
        slow.release.set()
    assert registry.flush_observers(5)
    assert slow.heard.is_set()


class Ordered:
    def __init__(self) -> None:
        self.heard: list[tuple[str, str]] = []

    @hookimpl
    def chatplug_on_request(self, request_id: str) -> None:
        self.heard.append(("request", request_id))

    @hookimpl
    def chatplug_on_retry(self, request_id: str) -> None:
        self.heard.append(("retry", request_id))

    @hookimpl
    def chatplug_on_response(self, request_id: str) -> None:
        self.heard.append(("response", request_id))


def test_each_calls_hooks_arrive_in_order(chatplug_server: ScriptedServer) -> None:
    registry = registry_for(chatplug_server, max_retries=1, retry_backoff=0.01)
    ordered = Ordered()
    registry.register_observer(ordered, name="ordered")
    try:
        for _ in range(5):
            chatplug_server.add(status=503)
            registry.get("GravityEngine").create(messages=MESSAGES)
        assert registry.flush_observers(5)
    finally:
        registry.close()
    assert [kind for kind, _ in ordered.heard] == ["request", "retry", "response"] * 5
    ids = [request_id for _, request_id in ordered.heard]
    assert all(len(set(ids[i:i + 3])) == 1 for i in range(0, 15, 3))


def test_a_full_queue_drops_and_counts_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    queue = Notifications(limit=2)
    release = threading.Event()
    heard: list[int] = []

    class Hook:
        def chatplug_on_request(self, number: int) -> None:
            release.wait(5)
            heard.append(number)

    try:
        for number in range(6):  # two are taken (one being delivered counts), four dropped
            queue.post(Hook(), "chatplug_on_request", {"number": number})
    finally:
        release.set()
    assert queue.flush(5)
    assert queue.dropped == 4
    assert heard == [0, 1]
    assert [r.getMessage().count("are dropped") for r in caplog.records] == [1]


def test_flush_says_when_observers_did_not_catch_up() -> None:
    queue = Notifications()
    release = threading.Event()

    class Hook:
        def chatplug_on_request(self) -> None:
            release.wait(5)

    queue.post(Hook(), "chatplug_on_request", {})
    try:
        assert queue.flush(0.05) is False
    finally:
        release.set()
    assert queue.flush(5)


# -- the event loop keeps the call with an observer installed, and exit flushes ---------

LOOP_PROBE = """
import asyncio, json, os, sys, threading
from chatplug.logs import LogObserver, LogStore
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
import chatplug_jsonl_observer

with ScriptedServer(lifetime=30) as server:
    registry = registry_for(server, plugins="")
    store = LogStore(sys.argv[1])
    registry.register_observer(LogObserver(store), name="logs")
    registry.register_observer(chatplug_jsonl_observer, name="jsonl")
    async def main():
        provider = registry.provider("GravityEngine")
        assert provider.native_async
        text = await provider.acreate([{"role": "user", "content": "hi"}])
        stream = await provider.acreate([{"role": "user", "content": "hi there"}], stream=True)
        pieces = [piece async for piece in stream]
        return text, pieces
    print(asyncio.run(main()))
    workers = [t.name for t in threading.enumerate() if t.name.startswith("chatplug-async")]
    print(registry.runtime._async_pool is None, workers)
    # No flush here: the process's exit delivers what is queued.
"""


def test_with_log_and_jsonl_observers_async_calls_still_run_on_the_loop(
        tmp_path: Any) -> None:
    jsonl = pytest.importorskip("chatplug_jsonl_observer")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATPLUG_", "HTTP"))}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, os.path.dirname(os.path.dirname(jsonl.__file__))])
    env["CHATPLUG_JSONL_PATH"] = str(tmp_path / "events.jsonl")
    result = subprocess.run([sys.executable, "-c", LOOP_PROBE, str(tmp_path / "logs.db")],
                            capture_output=True, text=True, timeout=60, env=env,
                            cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "('You said: hi', ['You', ' said:', ' hi', ' there'])"
    assert lines[1] == "True []"  # no worker pool was ever made: the loop drove both calls
    events = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(events) == 4  # request and response of each call, written before the exit
    from chatplug.logs import LogStore

    store = LogStore(tmp_path / "logs.db")
    try:
        assert len(store.recent()) == 2
    finally:
        store.close()
