"""Many threads through one provider: correct, unmixed replies and a healthy pool."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from chatplug import Registry
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

THREADS = 50


def test_fifty_threads_streaming_at_once(chatplug_registry: Registry,
                                         caplog: pytest.LogCaptureFixture) -> None:
    provider = chatplug_registry.get("GravityEngine")
    start = threading.Barrier(THREADS, timeout=10)

    def talk(number: int) -> str:
        start.wait()  # all fifty streams are open together
        prompt = f"thread {number} says {'word ' * 20}".strip()
        pieces = list(provider.create(messages=[{"role": "user", "content": prompt}],
                                      stream=True))
        assert len(pieces) > 20
        return "".join(pieces)

    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        replies = list(pool.map(talk, range(THREADS), timeout=60))
    assert time.monotonic() - started < 30
    for number, reply in enumerate(replies):
        assert reply == f"You said: thread {number} says {'word ' * 20}".strip()
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_streams_closed_early_return_their_connections(chatplug_server: ScriptedServer) -> None:
    from chatplug.http import Transport

    registry = registry_for(chatplug_server)
    registry._transport = Transport(pool_size=2, read_timeout=5)  # a tiny pool on purpose
    provider = registry.get("GravityEngine")
    for _ in range(10):
        chatplug_server.add(text="a b c d e f g", piece_delay=0.2)
        with provider.create(messages=[{"role": "user", "content": "x"}], stream=True) as s:
            assert next(s) == "a"
    # Ten abandoned streams later the pool still serves at once.
    started = time.monotonic()
    assert provider.create(messages=[{"role": "user", "content": "x"}]) == "You said: x"
    assert time.monotonic() - started < 1
    pool = registry.transport.session.get_adapter(chatplug_server.url).poolmanager
    assert len(pool.pools) == 1
    registry.close()
