"""The gateway over raw HTTP: SSE bytes, the first-piece commit, disconnects, limits,
auth, SIGTERM with streams in flight, and 256 concurrent streams through one worker."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import TEST_API_KEY, registry_for
from tests.conftest import BIN, free_port
from tests.gatewayserver import GatewayServer
from tests.rawserver import RawServer, response_head

MESSAGES = [{"role": "user", "content": "hello"}]


def post(url: str, body: Any, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request("POST", "/v1/chat/completions", data,
                           {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


def events(body: bytes) -> list[str]:
    assert body.endswith(b"\n\n")
    return [event.removeprefix("data: ") for event in body.decode().split("\n\n")[:-1]]


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=60) as server:
        yield server


def serve(upstream: Any, **settings: Any) -> GatewayServer:
    registry = registry_for(upstream, max_retries=0)
    return GatewayServer(create_app(registry, ServerSettings(**settings)))


def test_the_sse_bytes(upstream: ScriptedServer) -> None:
    upstream.add(pieces=["Hel", "lo"])
    with serve(upstream) as gateway:
        status, headers, body = post(gateway.url, {
            "model": "GravityEngine", "messages": MESSAGES, "stream": True})
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-chatplug-provider"] == "GravityEngine"
    assert body.startswith(b"data: {")
    assert body.endswith(b"\n\ndata: [DONE]\n\n")
    data = events(body)
    chunks = [json.loads(event) for event in data[:-1]]
    assert data[-1] == "[DONE]"
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gpt-3.5-turbo-16k"
        assert chunk["id"] == chunks[0]["id"]
        assert chunk["id"].startswith("chatcmpl-")
        assert "usage" not in chunk


def test_the_completion_paths_answer_other_methods_and_near_paths_as_before(
        upstream: ScriptedServer) -> None:
    """The completion endpoints are reached without Starlette's router (server/dispatch.py):
    a whole reply has a length, and another method or a near path still gets Starlette's
    405/404 in the wire's envelope."""
    upstream.add(text="Hi")
    with serve(upstream) as gateway:
        status, headers, body = post(gateway.url, {"model": "GravityEngine",
                                                   "messages": MESSAGES})
        assert status == 200
        assert headers["content-length"] == str(len(body))
        assert "transfer-encoding" not in headers
        assert json.loads(body)["choices"][0]["message"]["content"] == "Hi"
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        try:
            answers = {}
            for method, path in [("GET", "/v1/chat/completions"), ("GET", "/v1/messages"),
                                 ("POST", "/v1/chat/completions/"), ("POST", "/v1/chat")]:
                connection.request(method, path, b"{}" if method == "POST" else None,
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                answers[method, path] = (response.status, response.read())
        finally:
            connection.close()
    status, error = answers["GET", "/v1/chat/completions"]
    assert (status, json.loads(error)["error"]["code"]) == (405, "method_not_allowed")
    status, error = answers["GET", "/v1/messages"]
    assert (status, json.loads(error)["type"]) == (405, "error")
    assert answers["POST", "/v1/chat"][0] == 404
    assert answers["POST", "/v1/chat/completions/"][0] in (307, 404)


def test_an_upstream_503_before_the_first_piece_is_a_status_not_a_200(
        upstream: ScriptedServer) -> None:
    upstream.add(status=503, text="busy", stream=True)
    with serve(upstream) as gateway:
        status, headers, body = post(gateway.url, {
            "model": "GravityEngine", "messages": MESSAGES, "stream": True})
    assert status == 502
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "upstream_http_error"
    assert "busy" in error["message"]


def test_a_cut_after_the_first_piece_is_in_band_and_has_no_done(
        upstream: ScriptedServer) -> None:
    upstream.add(pieces=["a", "b", "c"], drop_after=1, stream=True)
    with serve(upstream) as gateway:
        status, _, body = post(gateway.url, {
            "model": "GravityEngine", "messages": MESSAGES, "stream": True})
    assert status == 200
    data = events(body)
    assert "[DONE]" not in data
    assert json.loads(data[1])["choices"][0]["delta"] == {"content": "a"}
    assert json.loads(data[-1])["error"]["code"] == "stream_interrupted"


def _until_hung_up(conn: socket.socket, delay: float, hung_up: list[float]) -> None:
    """Wait up to ``delay`` s for the client to close; record when it did."""
    conn.settimeout(delay)
    try:
        if conn.recv(1) == b"":
            hung_up.append(time.monotonic())
    except OSError:
        hung_up.append(time.monotonic())


def held(delay: float) -> Any:
    """An upstream that answers nothing for ``delay`` s; records when its client hung up."""
    hung_up: list[float] = []

    def behaviour(conn: socket.socket, request: bytes) -> None:
        _until_hung_up(conn, delay, hung_up)
    return behaviour, hung_up


def head_then_hold(delay: float) -> Any:
    """An upstream that sends one piece, then holds; records when its client hung up."""
    hung_up: list[float] = []

    def behaviour(conn: socket.socket, request: bytes) -> None:
        piece = b'data: {"choices":[{"delta":{"content":"first"}}]}\n\n'
        conn.sendall(response_head(Content_Type="text/event-stream",
                                   Transfer_Encoding="chunked")
                     + b"%x\r\n%s\r\n" % (len(piece), piece))
        _until_hung_up(conn, delay, hung_up)
    return behaviour, hung_up


@pytest.mark.parametrize("when", ["before the first piece", "mid-stream", "a whole reply"])
def test_a_client_disconnect_closes_the_upstream_call_within_200_ms(when: str) -> None:
    behaviour, hung_up = (head_then_hold(5) if when == "mid-stream" else held(5))
    with RawServer() as raw, serve(raw) as gateway:
        raw.then(behaviour)
        client = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        body = json.dumps({"model": "GravityEngine", "messages": MESSAGES,
                           "stream": when != "a whole reply"}).encode()
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                       % (len(body), body))
        for _ in range(200):  # until the upstream has the request
            if raw.requests:
                break
            time.sleep(0.01)
        if when == "mid-stream":
            assert b"first" in client.recv(65536)
        time.sleep(0.1)
        closed = time.monotonic()
        client.close()
        for _ in range(100):
            if hung_up:
                break
            time.sleep(0.01)
    assert hung_up, "the upstream call outlived the client"
    assert hung_up[0] - closed < 0.2


def test_gateway_keys_guard_everything_but_the_health_checks(upstream: ScriptedServer,
                                                             tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# gateway keys\ngateway-key-number-one\ngateway-key-number-three\n")
    request = {"model": "GravityEngine", "messages": MESSAGES}
    with serve(upstream, api_keys=str(keys)) as gateway:
        assert post(gateway.url, request)[0] == 401
        status, headers, body = post(gateway.url, request, {"Authorization": "Bearer nope"})
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert json.loads(body)["error"]["type"] == "authentication_error"
        assert post(gateway.url, request,
                    {"Authorization": "Bearer gateway-key-number-three"})[0] == 200
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
        for path, expected in (("/health/liveliness", 200), ("/health/readiness", 200),
                               ("/v1/models", 401)):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == expected, path
        connection.close()
    # Upstream gets GravityEngine's own access code, never the client's gateway key.
    assert upstream.requests[-1].headers.get("Authorization") == f"Bearer nk-{TEST_API_KEY}"


def test_a_body_over_the_limit_is_413(upstream: ScriptedServer) -> None:
    with serve(upstream, max_body_bytes=4096) as gateway:
        big = {"model": "GravityEngine", "messages": [{"role": "user", "content": "x" * 5000}]}
        status, _, body = post(gateway.url, big)
        assert status == 413
        assert json.loads(body)["error"]["code"] == "request_too_large"
        assert post(gateway.url, {"model": "GravityEngine", "messages": MESSAGES})[0] == 200
    assert len(upstream.requests) == 1


def test_a_full_gateway_is_429_with_retry_after(upstream: ScriptedServer) -> None:
    upstream.add(pieces=["slow"], delay=1.0)
    with serve(upstream, max_concurrency=1) as gateway:
        first: list[int] = []
        thread = threading.Thread(target=lambda: first.append(post(gateway.url, {
            "model": "GravityEngine", "messages": MESSAGES, "stream": True})[0]))
        thread.start()
        while not upstream.requests:
            time.sleep(0.01)
        status, headers, body = post(gateway.url, {"model": "GravityEngine",
                                                   "messages": MESSAGES})
        thread.join(10)
    assert status == 429
    assert headers["retry-after"] == "1"
    assert json.loads(body)["error"]["code"] == "gateway_busy"
    assert first == [200]


def test_a_malformed_request_is_400_naming_the_field(upstream: ScriptedServer) -> None:
    with serve(upstream) as gateway:
        for body, param in ((b"{not json", None), ({"messages": MESSAGES}, "model"),
                            ({"model": "GravityEngine", "messages": MESSAGES,
                              "stream": "yes"}, "stream"),
                            ({"model": "GravityEngine", "messages": "hi"}, "messages")):
            status, _, reply = post(gateway.url, body)
            assert status == 400
            assert json.loads(reply)["error"]["param"] == param
    assert not upstream.requests


def test_256_concurrent_streams_through_one_worker(upstream: ScriptedServer) -> None:
    count = 256

    def one(number: int) -> bytes:
        status, _, body = post(gateway.url, {
            "model": "GravityEngine", "stream": True,
            "messages": [{"role": "user", "content": f"stream {number} of many"}]},
            timeout=30)
        assert status == 200
        return body

    with serve(upstream) as gateway, ThreadPoolExecutor(64) as pool:
        bodies = list(pool.map(one, range(count)))
    for number, body in enumerate(bodies):
        data = events(body)
        assert data[-1] == "[DONE]"
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                       for e in data[:-1])
        assert text == f"You said: stream {number} of many"


def _serve_process(upstream: ScriptedServer, port: int, grace: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env.update(CHATPLUG_GRAVITYENGINE_URL=upstream.url, CHATPLUG_SERVER_GRACE=str(grace),
               CHATPLUG_MAX_RETRIES="0", CHATPLUG_PLUGINS="")
    process = subprocess.Popen([str(BIN / "chatplug"), "serve", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"chatplug serve did not start: {process.communicate()[1]}")


def test_sigterm_lets_streams_finish_within_the_grace_then_ends_them(
        upstream: ScriptedServer) -> None:
    port = free_port()
    process = _serve_process(upstream, port, grace=1.0)
    try:
        upstream.add(pieces=["short", " one"], piece_delay=0.3)  # ends within the grace
        upstream.add(pieces=[f" {n}" for n in range(30)], piece_delay=0.2)  # does not
        results: dict[str, bytes] = {}
        url = f"http://127.0.0.1:{port}"

        def stream(name: str) -> None:
            results[name] = post(url, {"model": "GravityEngine", "messages": MESSAGES,
                                       "stream": True}, timeout=15)[2]

        threads = [threading.Thread(target=stream, args=(name,)) for name in ("short", "long")]
        for thread in threads:
            thread.start()
            time.sleep(0.2)
        time.sleep(0.2)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(15)
        _, stderr = process.communicate(timeout=10)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert events(results["short"])[-1] == "[DONE]"
    long = events(results["long"])
    assert "[DONE]" not in long
    assert json.loads(long[-1])["error"]["code"] == "server_shutting_down"
    assert 0.9 < took < 4.0
    # Every upstream connection is closed: no upstream call outlives the process.
    for _ in range(100):
        if not upstream._connections:
            break
        time.sleep(0.02)
    assert not upstream._connections
    assert "POST /v1/chat/completions 200 provider=GravityEngine" in stderr
    assert "hello" not in stderr  # no message text in the log


def test_binding_beyond_loopback_without_keys_is_refused() -> None:
    done = subprocess.run([str(BIN / "chatplug"), "serve", "--host", "0.0.0.0", "--port",
                           str(free_port())], capture_output=True, text=True, timeout=30,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("CHATPLUG_")})
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without gateway keys" in done.stderr


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("signals and /proc: Linux only")


def test_a_route_fails_over_inside_one_gateway_request() -> None:
    with ScriptedServer(lifetime=60) as first, ScriptedServer(lifetime=60) as second:
        registry = registry_for(first, urls={"OpenAI": second.url + "/v1"}, max_retries=0,
                                routes=json.dumps({"pair": {
                                    "entries": ["GravityEngine", "OpenAI/gpt-4o-mini"],
                                    "cooldown": 0}}))
        first.add(status=503)
        first.add(pieces=["x"], drop_after=0, stream=True)
        with GatewayServer(create_app(registry, ServerSettings())) as gateway:
            status, headers, body = post(gateway.url, {"model": "pair", "messages": MESSAGES})
            assert status == 200
            assert headers["x-chatplug-provider"] == "OpenAI"
            assert headers["x-chatplug-attempts"] == "2"
            assert json.loads(body)["choices"][0]["message"]["content"] == "You said: hello"
            # Streamed: a cut before the first piece still fails over, under one 200.
            status, headers, body = post(gateway.url, {"model": "pair", "messages": MESSAGES,
                                                       "stream": True})
            assert status == 200
            assert headers["x-chatplug-provider"] == "OpenAI"
            text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "")
                           for e in events(body)[:-1])
            assert text == "You said: hello"
        assert len(first.requests) == 2
        assert len(second.requests) == 2
        registry.close()
