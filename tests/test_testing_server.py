"""chatplug's scripted server as demos and timings use it."""

from __future__ import annotations

import http.client
import json
import time

from chatplug.testing import ScriptedServer

REQUESTS = 20


def test_a_reused_connection_is_not_held_up_by_nagle(chatplug_server: ScriptedServer) -> None:
    """Twenty calls on one keep-alive connection: without TCP_NODELAY each waits for the
    client's delayed ACK (~40 ms); the bound is a correctness bound, ten times generous."""
    body = json.dumps({"model": "m", "stream": False,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", chatplug_server.port, timeout=10)
    try:
        started = time.monotonic()
        for _ in range(REQUESTS):
            connection.request("POST", "/v1/chat/completions", body,
                               {"Content-Type": "application/json"})
            reply = connection.getresponse()
            assert json.loads(reply.read())["choices"][0]["message"]["content"] == "You said: hi"
        elapsed = time.monotonic() - started
    finally:
        connection.close()
    assert elapsed < 0.5, f"{REQUESTS} calls took {elapsed:.3f} s"
