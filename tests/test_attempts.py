"""One copy of the retry mechanisms (calls/attempts.py) for a provider's attempts and a
route's rounds: the wait between attempts, on a thread or on the event loop, ends when the
call is cancelled, and the commit rule is the same function for both loops."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chatplug import Registry
from chatplug.calls.attempts import committed
from chatplug.calls.completion import CompletionBuilder
from chatplug.events import Finish, Usage
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

MESSAGES = [{"role": "user", "content": "hello"}]
#: What the server asks the client to wait: far longer than any test here runs.
LONG_WAIT = "30"


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    made = registry_for(chatplug_server, max_retries=1, timeout=50)
    yield made
    made.close()


def caller(registry: Registry, through_route: bool) -> Any:
    provider = registry.get("GravityEngine")
    return registry.route(["GravityEngine"]) if through_route else provider


def wait_for_request(server: ScriptedServer, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.requests) >= count


@pytest.mark.parametrize("through_route", [False, True], ids=["provider", "route"])
def test_closing_a_stream_ends_the_wait_before_a_retry_on_a_thread(
        registry: Registry, chatplug_server: ScriptedServer, through_route: bool) -> None:
    chatplug_server.add(status=503, headers={"Retry-After": LONG_WAIT})
    stream = caller(registry, through_route).create(MESSAGES, stream=True)
    ended = threading.Event()

    def read() -> None:
        for _ in stream:
            pass
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for_request(chatplug_server, 1)
    time.sleep(0.2)  # the reader is in its 30 s wait now
    assert not ended.is_set()
    stream.close()
    reader.join(10)
    assert ended.is_set()  # a clean end, long before the wait was over
    assert len(chatplug_server.requests) == 1  # no retry after the cancel


@pytest.mark.parametrize("through_route", [False, True], ids=["provider", "route"])
def test_cancelling_the_task_ends_the_wait_on_the_event_loop(
        registry: Registry, chatplug_server: ScriptedServer, through_route: bool) -> None:
    chatplug_server.add(status=503, headers={"Retry-After": LONG_WAIT})
    target = caller(registry, through_route)

    async def main() -> None:
        task = asyncio.ensure_future(target.acomplete(MESSAGES))
        while not chatplug_server.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # in the wait, on the loop's timer
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert len(chatplug_server.requests) == 1


def test_the_commit_rule() -> None:
    builder = CompletionBuilder("P", "m")
    builder.add_event(Usage(1, 2, 3))  # bookkeeping the caller does not see as the reply
    assert not committed(False, builder)
    builder.add_event(Finish("stop"))
    assert committed(False, builder)
    assert not committed(True, builder)  # a buffered caller has seen nothing yet
    text = CompletionBuilder("P", "m")
    text.pieces.append("Hi")
    assert committed(False, text)
