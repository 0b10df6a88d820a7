"""The gateway's holes of issue 18 (round three), one test or one class of inputs each,
against the gateway on a real socket on 127.0.0.1.  docs/reliability.md lists them.

1: a foreign ``Host`` (DNS rebinding), a cross-site ``text/plain`` POST, a browser's
``Origin`` without ``--cors-origin``; 2: endless request headers; 3: dribbled requests
and the connection limit; 7: ``#`` inside a gateway key, short keys; 8: an upstream
error echoing a prefix of the provider key; 11: the relay keeping a stream's text.
Plus: readiness without a key, ``chatplug serve`` on a busy port.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chatplug import ChatplugError, ConfigurationError
from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import TEST_API_KEY, registry_for
from chatplug.transport.redaction import redact
from tests.conftest import BIN, free_port, run_cli
from tests.gatewayserver import GatewayServer
from tests.rawserver import SSE_HEAD, RawServer, chunk, event
from tests.test_gateway_http import serve

MESSAGES = [{"role": "user", "content": "hello"}]
REQUEST = json.dumps({"model": "GravityEngine", "messages": MESSAGES}).encode()
MIB = 1024 * 1024


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=60) as server:
        yield server


def exchange(port: int, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send one request (``head`` without its blank line) and read the answer to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        sock.sendall(f"{head}\r\n{length}Connection: close\r\n\r\n".encode() + body)
        return read_to_end(sock)


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not part:
            return data
        data += part


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = dechunked(body)
    return int(lines[0].split()[1]), headers, body


def dechunked(data: bytes) -> bytes:
    parts = []
    while data:
        size, _, data = data.partition(b"\r\n")
        length = int(size, 16)
        if not length:
            break
        parts.append(data[:length])
        data = data[length + 2:]
    return b"".join(parts)


def error_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


# -- 1: Host, content type, Origin ---------------------------------------------------------

@pytest.mark.parametrize(("host", "allowed"), [
    ("evil.example:{port}", False), ("evil.example", False), ("127.0.0.1.evil.example", False),
    ("localhost:{port}", True), ("LOCALHOST", True), ("127.0.0.1:{port}", True),
    ("[::1]:{port}", True), ("10.1.2.3", True),
])
def test_a_host_that_is_not_the_gateways_is_refused(upstream: ScriptedServer, host: str,
                                                    allowed: bool) -> None:
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1."""
    with serve(upstream) as gateway:
        status, _, body = parse(exchange(
            gateway.port, f"GET /v1/models HTTP/1.1\r\nHost: {host.format(port=gateway.port)}"))
    if allowed:
        assert status == 200
    else:
        assert status == 400
        assert error_code(body) == "host_not_allowed"
        assert "CHATPLUG_SERVER_ALLOWED_HOSTS" in json.loads(body)["error"]["message"]


def test_the_allowed_hosts_are_served(upstream: ScriptedServer) -> None:
    with serve(upstream, allowed_hosts="gw.example, other.example") as gateway:
        for host, expected in (("gw.example:443", 200), ("OTHER.example", 200),
                               ("evil.example", 400)):
            answer = exchange(gateway.port, f"GET /v1/models HTTP/1.1\r\nHost: {host}")
            assert parse(answer)[0] == expected, host
    with serve(upstream, allowed_hosts=["*"]) as gateway:
        answer = exchange(gateway.port, "GET /v1/models HTTP/1.1\r\nHost: anything.example")
        assert parse(answer)[0] == 200


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_a_post_that_is_not_json_is_415_and_runs_nothing(upstream: ScriptedServer,
                                                        content_type: str | None) -> None:
    """A cross-site "simple" POST (no preflight) carrying a JSON text runs no completion."""
    header = f"\r\nContent-Type: {content_type}" if content_type else ""
    with serve(upstream) as gateway:
        status, _, body = parse(exchange(
            gateway.port, f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1{header}",
            REQUEST))
    assert status == 415
    assert error_code(body) == "unsupported_media_type"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_json_with_parameters_is_accepted(upstream: ScriptedServer) -> None:
    with serve(upstream) as gateway:
        answer = exchange(gateway.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: "
                          "127.0.0.1\r\nContent-Type: Application/JSON; charset=utf-8", REQUEST)
    assert parse(answer)[0] == 200


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/chat/completions"),
                                          ("GET", "/v1/models"),
                                          ("OPTIONS", "/v1/chat/completions")])
def test_a_browsers_cross_origin_request_is_refused_without_cors(
        upstream: ScriptedServer, method: str, path: str) -> None:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n"
            "Content-Type: application/json\r\nAccess-Control-Request-Method: POST")
    with serve(upstream) as gateway:
        status, headers, body = parse(exchange(gateway.port, head,
                                               REQUEST if method == "POST" else b""))
    assert status == 403
    assert error_code(body) == "origin_not_allowed"
    assert not [name for name in headers if name.startswith("access-control-")]
    assert upstream.requests == []


def test_with_cors_only_the_listed_origins_are_answered(upstream: ScriptedServer) -> None:
    with serve(upstream, cors_origins=["https://app.example"]) as gateway:
        status, headers, _ = parse(exchange(
            gateway.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Origin: https://app.example\r\nContent-Type: application/json", REQUEST))
        assert status == 200
        assert headers["access-control-allow-origin"] == "https://app.example"
        status, headers, _ = parse(exchange(
            gateway.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Origin: https://evil.example\r\nContent-Type: application/json", REQUEST))
        assert status == 403
        assert "access-control-allow-origin" not in headers
    assert len(upstream.requests) == 1


# -- 2: endless headers ----------------------------------------------------------------------

def peak_rss_kib() -> int:
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith("VmHWM:"))


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def flood(sock: socket.socket, line: bytes, most: int) -> int:
    """Send header lines until the gateway answers (or ``most`` bytes); bytes sent."""
    block = line * (64 * 1024 // len(line))
    sent = 0
    while sent < most:
        if select.select([sock], [], [], 0)[0]:
            break  # the gateway answered
        try:
            sock.sendall(block)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(block)
    return sent


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux /proc")
@pytest.mark.parametrize("line", [b"X-A: b\r\n", b"X-Long: " + b"a" * 8000 + b"\r\n",
                                  b"a" * 4096], ids=["tiny lines", "long lines", "one line"])
def test_endless_request_headers_are_431_and_memory_stays_bounded(
        upstream: ScriptedServer, line: bytes) -> None:
    with serve(upstream) as gateway, \
            socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        reset_peak()
        before = peak_rss_kib()
        sent = flood(sock, line, 24 * MIB)
        answer = read_to_end(sock)
        growth_mib = (peak_rss_kib() - before) / 1024
    print(f"\n{line[:8]!r}...: {sent / MIB:.1f} MiB sent before the answer, "
          f"peak RSS +{growth_mib:.1f} MiB")
    assert sent < 24 * MIB, "the gateway read the whole flood"
    status, _, body = parse(answer)
    assert status == 431
    assert error_code(body) == "request_header_too_large"
    assert growth_mib < 32, f"{growth_mib:.0f} MiB for one connection's headers"


def test_too_many_header_lines_are_431(upstream: ScriptedServer) -> None:
    with serve(upstream, max_headers=20) as gateway:
        many = "\r\n".join(f"X-{n}: v" for n in range(30))
        status = parse(exchange(gateway.port,
                                f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}"))[0]
        assert status == 431
        few = "\r\n".join(f"X-{n}: v" for n in range(10))
        assert parse(exchange(gateway.port,
                              f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{few}"))[0] == 200


# -- 3: dribbling connections, the connection limit ------------------------------------------

def wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def dribble(sock: socket.socket, data: bytes, pause: float, most: float) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time until the gateway answers; its answer and when."""
    started = time.monotonic()
    for byte in data:
        if select.select([sock], [], [], pause)[0] or time.monotonic() - started > most:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
    return read_to_end(sock), time.monotonic() - started


@pytest.mark.parametrize("what", ["the head", "the body", "nothing at all"])
def test_a_dribbled_request_is_408_and_closed_after_the_timeout(upstream: ScriptedServer,
                                                                what: str) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(REQUEST))
    with serve(upstream, request_timeout=0.5) as gateway, \
            socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        if what == "the head":
            answer, took = dribble(sock, head * 100, 0.05, 8)
        elif what == "the body":
            sock.sendall(head)
            answer, took = dribble(sock, REQUEST * 100, 0.05, 8)
        else:
            answer, took = dribble(sock, b"", 0, 8)
    status, headers, body = parse(answer)
    assert status == 408
    assert headers["connection"] == "close"
    assert error_code(body) == "request_timeout"
    assert took < 5, "closed long after the request timeout"
    assert upstream.requests == []


def test_beyond_the_connection_limit_a_client_gets_503_at_once_and_others_are_served(
        upstream: ScriptedServer) -> None:
    with serve(upstream, max_connections=4, request_timeout=60) as gateway:
        connections = gateway.server.server_state.connections
        held = [socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
                for _ in range(4)]
        try:
            for sock in held:
                sock.sendall(b"GET /v1/mod")  # and never more (the timeout is a minute)
            wait_for(lambda: len(connections) == 4)
            # The fifth gets its answer at once: before its request is read, long before
            # the held ones time out.
            status, headers, body = parse(exchange(
                gateway.port, "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1", timeout=5))
            assert status == 503
            assert headers["retry-after"] == "1"
            assert error_code(body) == "too_many_connections"
            held.pop().close()
            wait_for(lambda: len(connections) == 3)
            # Below the limit, a client is served while the others still dribble.
            answer = exchange(gateway.port, "POST /v1/chat/completions HTTP/1.1\r\n"
                              "Host: 127.0.0.1\r\nContent-Type: application/json", REQUEST)
            assert parse(answer)[0] == 200
        finally:
            for sock in held:
                sock.close()


# -- 7: gateway keys -------------------------------------------------------------------------

HASH_KEY = "Zx#9qLmT4vR8wK2pN7sY"


def test_a_hash_inside_a_key_is_part_of_the_key(upstream: ScriptedServer, tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# the gateway's keys\n   # an indented comment\n{HASH_KEY}\n\n")
    settings = ServerSettings(api_keys=str(keys))  # type: ignore[arg-type]
    assert settings.keys() == (HASH_KEY.encode(),)
    with serve(upstream, api_keys=str(keys)) as gateway:
        for token, expected in (("Zx", 401), ("Zx#9qL", 401), (HASH_KEY, 200)):
            answer = exchange(gateway.port, "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              f"Authorization: Bearer {token}")
            assert parse(answer)[0] == expected, token


@pytest.mark.parametrize("value", ["sh0rt-k3y-15chr", "a-key-long-enough-0001,sh0rtK3y"])
def test_a_short_key_is_refused_at_start_up(tmp_path: Any, value: str) -> None:
    with pytest.raises(ConfigurationError, match="at least 16") as info:
        ServerSettings(api_keys=value).keys()  # type: ignore[arg-type]
    assert "sh0rt" not in str(info.value)
    keys = tmp_path / "keys"
    keys.write_text(value.replace(",", "\n") + "\n")
    with pytest.raises(ConfigurationError, match="at least 16") as info:
        ServerSettings(api_keys=str(keys)).keys()  # type: ignore[arg-type]
    assert "sh0rt" not in str(info.value)


def test_serve_with_a_short_key_exits_1_saying_so_without_the_key() -> None:
    result = run_cli("serve", "--port", str(free_port()),
                     env={"CHATPLUG_SERVER_API_KEYS": "hunter2-secret"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "at least 16" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout


# -- readiness without a key; serve on a busy port -------------------------------------------

GATEWAY_KEY = "gateway-key-0123456789"


def test_readiness_answers_without_a_key_and_says_nothing_more(upstream: ScriptedServer) -> None:
    with serve(upstream, api_keys=GATEWAY_KEY) as gateway:
        for query in ("", "?probe=1"):
            status, _, body = parse(exchange(
                gateway.port, f"GET /health/readiness{query} HTTP/1.1\r\nHost: 127.0.0.1"))
            assert status == 200
            assert json.loads(body) == {"status": "ready"}
        status, _, body = parse(exchange(
            gateway.port, "GET /health/readiness HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {GATEWAY_KEY}"))
        assert status == 200
        assert "GravityEngine" in json.loads(body)["providers"]
    assert upstream.requests == []  # no probe ran for the client without a key


def test_serve_on_a_busy_port_prints_one_line_and_exits_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "in use" in lines[0]


# -- 8: a prefix of the provider key ---------------------------------------------------------

KEY = "sk-proj-AbCdEf0123456789/xyz+QRSTuvw"


@pytest.mark.parametrize("length", [8, 9, 12, 20, len(KEY) - 1, len(KEY)])
@pytest.mark.parametrize("form", ["as is", "JSON"])
def test_a_prefix_of_a_key_is_redacted(length: int, form: str) -> None:
    prefix = KEY[:length]
    shown = prefix if form == "as is" else json.dumps(prefix)[1:-1].replace("/", "\\/")
    text = f"Incorrect API key provided: {shown}****. Find your key at https://x.example."
    assert redact(text, KEY) == ("Incorrect API key provided: *******. Find your key at "
                                 "https://x.example.")


def test_a_prefix_shorter_than_8_characters_stays() -> None:
    assert redact(f"keys look like {KEY[:7]}...", KEY) == f"keys look like {KEY[:7]}..."


def test_an_upstream_error_echoing_a_prefix_of_the_key_never_reaches_a_client(
        upstream: ScriptedServer) -> None:
    echoed = f"Incorrect API key provided: {TEST_API_KEY[:12]}******{TEST_API_KEY[-2:]}"
    for _ in range(2):
        upstream.add(status=401, body=json.dumps({"error": {
            "message": echoed, "type": "invalid_request_error",
            "code": "invalid_api_key"}}).encode())
    registry = registry_for(upstream, max_retries=0)
    try:
        # The library's own error...
        with pytest.raises(ChatplugError) as info:
            registry.get("OpenAI").create(MESSAGES, "gpt-4o-mini")
        assert TEST_API_KEY[:8] not in f"{info.value} {info.value!r}"
        # ...and the gateway's answer.
        with GatewayServer(create_app(registry, ServerSettings())) as gateway:
            status, _, body = parse(exchange(
                gateway.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json",
                json.dumps({"model": "OpenAI/gpt-4o-mini", "messages": MESSAGES}).encode()))
        assert status == 502
        assert "Incorrect API key provided" in body.decode()
        assert TEST_API_KEY[:8] not in body.decode()
    finally:
        registry.close()


# -- 11: the relay keeps no text -------------------------------------------------------------

PIECE = "x" * 8192
PIECES = 40 * MIB // len(PIECE)


def large_stream(conn: socket.socket, request: bytes) -> None:
    conn.sendall(SSE_HEAD)
    one = chunk(event(PIECE))
    for _ in range(PIECES):
        conn.sendall(one)
    conn.sendall(chunk(event(finish="stop")) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def test_the_relay_keeps_none_of_a_streams_text() -> None:
    """40 MiB in 5,120 pieces through the gateway: its memory does not grow with the text."""
    with RawServer(lifetime=120) as raw:
        raw.then(large_stream)
        registry = registry_for(raw, max_retries=0, timeout=120)  # type: ignore[arg-type]
        try:
            with GatewayServer(create_app(registry, ServerSettings())) as gateway, \
                    socket.create_connection(("127.0.0.1", gateway.port), timeout=60) as sock:
                body = json.dumps({"model": "GravityEngine", "messages": MESSAGES,
                                   "stream": True}).encode()
                tracemalloc.start()
                try:
                    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 b"Content-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    received = 0
                    tail = b""
                    while part := sock.recv(1 << 20):
                        received += len(part)
                        tail = (tail + part)[-64:]
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
        finally:
            registry.close()
    print(f"\nrelayed {received / MIB:.0f} MiB; traced peak {peak / MIB:.1f} MiB")
    assert received > 40 * MIB
    assert b"data: [DONE]\n\n" in tail
    assert peak < 16 * MIB, f"the gateway held {peak / MIB:.0f} MiB relaying 40 MiB"


# -- the same through `chatplug serve` -------------------------------------------------------

def test_chatplug_serve_applies_the_host_allow_list_and_the_connection_limit(
        upstream: ScriptedServer) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env.update(CHATPLUG_GRAVITYENGINE_URL=upstream.url, CHATPLUG_PLUGINS="")
    process = subprocess.Popen(
        [str(BIN / "chatplug"), "serve", "--port", str(port), "--allowed-host", "gw.example",
         "--max-connections", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    held: list[socket.socket] = []
    try:
        wait_for(lambda: b"200" in probe(port), 20)
        for host, expected in (("gw.example", 200), ("evil.example", 400)):
            answer = exchange(port, f"GET /v1/models HTTP/1.1\r\nHost: {host}")
            assert parse(answer)[0] == expected, host
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        for sock in held:
            sock.sendall(b"GET /v1/mod")
        # Both held connections are the gateway's once it answers on one more with 503.
        wait_for(lambda: b" 503 " in probe(port), 5)
    finally:
        for sock in held:
            sock.close()
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


def probe(port: int) -> bytes:
    try:
        return exchange(port, "GET /health/liveliness HTTP/1.1\r\nHost: 127.0.0.1", timeout=2)
    except OSError:
        return b""
