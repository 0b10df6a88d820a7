"""chatplug serve's HTTP protocol (chatplug.server.protocol: OneWrite, ON_DISCONNECT)
against hostile or unusual clients on real sockets: HEAD on every GET route, Expect:
100-continue, errors on keep-alive connections, apps that break after their head, clients
that go away (mid-body, held, in crowds, pipelined), pipelining, the request timeout
while an earlier reply is out, and large replies to slow readers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from chatplug.server import ServerSettings, create_app
from chatplug.server.shutdown import Hangup
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer
from tests.rawserver import RawServer, response_head

MESSAGES = [{"role": "user", "content": "hello"}]
ADMIN_KEY = "admin-key-for-the-attack-tests-0001"


def completion(stream: bool = False, model: str = "GravityEngine", text: str = "hello") -> bytes:
    return json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": text}]}).encode()


def post(body: bytes, *extra: str, path: str = "/v1/chat/completions",
         content_type: str = "application/json") -> bytes:
    """A POST's bytes; ``extra`` header lines."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str, *extra: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = field(default=b"", repr=False)
    head: bytes = b""

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {self.head!r}"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """A raw HTTP/1.1 client that reads exactly one response at a time (so a stray byte,
    a head written twice or a missing body shows as the next response's garbage)."""

    port: int
    timeout: float = 10.0
    buffer: bytes = field(default=b"", repr=False)
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        part = self.sock.recv(1 << 16)
        if not part:
            raise EOFError(f"the gateway closed the connection; unread: {self.buffer[:200]!r}")
        self.buffer += part

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._more()
        taken, _, self.buffer = self.buffer.partition(marker)
        return taken

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._more()
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def reply(self, method: str = "GET") -> Reply:
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), f"not a status line: {head[:200]!r}"
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        reply = Reply(int(lines[0].split()[1]), headers, head=head)
        if method == "HEAD" or reply.status < 200 or reply.status in (204, 304):
            return reply
        if reply.header("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self._until(b"\r\n"), 16)
                if not size:
                    assert self._take(2) == b"\r\n"
                    break
                parts.append(self._take(size))
                assert self._take(2) == b"\r\n", "a chunk not followed by CRLF"
            reply.body = b"".join(parts)
        elif (length := reply.header("content-length")) is not None:
            reply.body = self._take(int(length))
        else:
            reply.body = self.rest()
        return reply

    def rest(self) -> bytes:
        """Everything until the gateway closes."""
        with contextlib.suppress(EOFError, ConnectionResetError):
            while True:
                self._more()
        data, self.buffer = self.buffer, b""
        return data

    def quiet(self, seconds: float = 0.2) -> None:
        """Nothing more arrives (no stray body bytes, no second head)."""
        assert self.buffer == b"", f"stray bytes: {self.buffer[:200]!r}"
        if select.select([self.sock], [], [], seconds)[0]:
            extra = self.sock.recv(65536)
            assert extra == b"", f"stray bytes: {extra[:200]!r}"

    def closed(self, seconds: float = 5.0) -> bool:
        """The gateway closes the connection within ``seconds`` (nothing else arrives)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        assert data == b"", f"unexpected bytes: {data[:200]!r}"
        return True


def expect(condition: object, message: str) -> None:
    """``assert condition, message`` without a traceback's source: Python 3.11's ast is
    not safe while other threads use it, and pytest parses the source of a failure."""
    if not condition:
        pytest.fail(message, pytrace=False)


def replies(client: Client, methods: list[str]) -> tuple[list[Reply], str]:
    """Up to one reply per method, and what broke the reading of the next, if anything."""
    read: list[Reply] = []
    try:
        for method in methods:
            read.append(client.reply(method))
    except (AssertionError, ValueError, EOFError, OSError) as error:
        return read, f"{type(error).__name__}: {error}"
    return read, ""


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def serve(upstream: Any, **settings: Any) -> GatewayServer:
    registry = registry_for(upstream, max_retries=0)
    return GatewayServer(create_app(registry, ServerSettings(**settings)))


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=90) as server:
        yield server


def text_of(reply: Reply) -> str:
    return str(reply.json()["choices"][0]["message"]["content"])


def same(got: str, expected: str) -> bool:
    """``got == expected``, saying where they part (a 4 MB repr would drown pytest)."""
    if got == expected:
        return True
    where = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                 min(len(got), len(expected)))
    print(f"{len(got)} vs {len(expected)} characters, first difference at {where}: "
          f"{got[where:where + 60]!r} vs {expected[where:where + 60]!r}")
    return False


def streamed(reply: Reply) -> str:
    """The text of an SSE reply that ended with ``[DONE]``."""
    assert reply.body.endswith(b"data: [DONE]\n\n"), reply.body[-200:]
    text = ""
    for event in reply.body.decode().split("\n\n")[:-2]:
        choices = json.loads(event.removeprefix("data: "))["choices"]
        if choices:
            text += choices[0]["delta"].get("content") or ""
    return text


# -- HEAD ------------------------------------------------------------------------------------

GET_ROUTES = {"/health/liveliness": 200, "/health/readiness": 200, "/v1/models": 200,
              "/models": 200, "/v1/models/GravityEngine": 200, "/metrics": 200, "/ui": 200,
              "/no/such/route": 404}


def test_head_on_every_get_route_then_the_connection_serves_on(upstream: ScriptedServer) -> None:
    """HEAD: the head alone (its length the GET's), never written twice nor followed by
    body bytes, and the keep-alive connection answers the next request right."""
    upstream.add(text="after the heads")
    with serve(upstream) as gateway, Client(gateway.port) as client:
        for path, status in GET_ROUTES.items():
            client.send(get(path))
            full = client.reply()
            assert full.status == status, path
            client.send(get(path, method="HEAD"))
            head = client.reply("HEAD")
            assert head.status == status, path
            client.quiet()
            if status == 200 and path not in ("/metrics", "/health/readiness"):
                # (those change between calls; a 404 names its method)
                assert head.header("content-length") == str(len(full.body)), path
            assert head.header("content-type") == full.header("content-type"), path
        # A HEAD on a POST-only path: 405, no body.
        client.send(get("/v1/chat/completions", method="HEAD"))
        assert client.reply("HEAD").status == 405
        client.quiet()
        client.send(post(completion()))
        reply = client.reply()
        assert reply.status == 200
        assert text_of(reply) == "after the heads"
        client.quiet()


def test_head_with_the_admin_key_on_the_admin_pages(upstream: ScriptedServer) -> None:
    with serve(upstream, admin_key=ADMIN_KEY) as gateway, Client(gateway.port) as client:
        for path in ("/metrics", "/ui"):
            for auth in ("", f"Authorization: Bearer {ADMIN_KEY}"):
                extra = (auth,) if auth else ()
                client.send(get(path, *extra))
                full = client.reply()
                client.send(get(path, *extra, method="HEAD"))
                head = client.reply("HEAD")
                assert head.status == full.status == (200 if auth else 401), (path, auth)
                client.quiet()


@pytest.mark.parametrize("path", ["/health/liveliness", "/v1/models", "/ui"])
def test_a_head_with_connection_close_is_written_then_the_connection_closes(
        upstream: ScriptedServer, path: str) -> None:
    """The held head of a HEAD leaves before the close (OneWrite.close flushes it)."""
    with serve(upstream) as gateway, Client(gateway.port) as client:
        client.send(get(path, "Connection: close", method="HEAD"))
        reply = client.reply("HEAD")
        assert reply.status == 200
        assert int(reply.header("content-length") or 0) > 0
        assert reply.header("connection") == "close"
        assert client.rest() == b""


def test_pipelined_heads_each_leave_once(upstream: ScriptedServer) -> None:
    """Five HEADs in one send: five heads, in order, each once, then silence."""
    with serve(upstream) as gateway, Client(gateway.port) as client:
        paths = ["/health/liveliness", "/v1/models", "/ui", "/health/liveliness", "/nope"]
        client.send(b"".join(get(path, method="HEAD") for path in paths))
        statuses = [client.reply("HEAD").status for _ in paths]
        assert statuses == [200, 200, 200, 200, 404]
        client.quiet(0.3)


# -- Expect: 100-continue ----------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_expect_100_continue_gets_continue_then_one_whole_reply(upstream: ScriptedServer,
                                                               stream: bool) -> None:
    upstream.add(text="continued" if not stream else None,
                 pieces=["con", "tinued"] if stream else None)
    upstream.add(text="next one")
    body = completion(stream)
    with serve(upstream) as gateway, Client(gateway.port) as client:
        request = post(body, "Expect: 100-continue")
        head, _, _ = request.partition(b"\r\n\r\n")
        client.send(head + b"\r\n\r\n")
        interim = client.reply()
        assert interim.status == 100
        assert interim.head == b"HTTP/1.1 100 Continue"
        client.send(body)
        reply = client.reply()
        assert reply.status == 200
        assert (streamed(reply) if stream else text_of(reply)) == "continued"
        client.quiet()
        # The same connection, without Expect: no stray 100 anywhere.
        client.send(post(completion()))
        reply = client.reply()
        assert reply.status == 200
        assert text_of(reply) == "next one"
        client.quiet()


def test_expect_100_continue_on_a_request_refused_before_its_body(
        upstream: ScriptedServer) -> None:
    """A 413 declared by Content-Length is answered without a 100 Continue, whole."""
    with serve(upstream, max_body_bytes=4096) as gateway, Client(gateway.port) as client:
        client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100000\r\n"
                    b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        reply = client.reply()
        assert reply.status == 413
        assert reply.json()["error"]["code"] == "request_too_large"
    assert upstream.requests == []


# -- errors on keep-alive connections --------------------------------------------------------

def test_error_replies_on_one_keep_alive_connection_then_a_normal_one(
        upstream: ScriptedServer) -> None:
    """Every refusal the app writes (404, 405, 415, 400, 413 with its body still coming,
    an upstream error's 502) is whole and leaves the connection serving."""
    upstream.add(status=500, text="upstream broke")
    upstream.add(text="served at last")
    big = completion(text="x" * 20000)
    with serve(upstream, max_body_bytes=8192) as gateway, Client(gateway.port) as client:
        steps: list[tuple[bytes, int, str | None]] = [
            (get("/no/such/thing"), 404, None),
            (get("/v1/chat/completions"), 405, "method_not_allowed"),
            (post(completion(), content_type="text/plain"), 415, "unsupported_media_type"),
            (post(b"{not json"), 400, None),
            (post(json.dumps({"messages": MESSAGES}).encode()), 400, None),
            (post(big), 413, "request_too_large"),
            (post(completion()), 502, None),
            (post(completion(model="NoSuchProvider/x")), 400, None),
        ]
        for request, status, code in steps:
            client.send(request)
            reply = client.reply()
            assert reply.status // 100 == status // 100, (request[:40], reply.head)
            assert reply.status == status or status == 400, (request[:40], reply.head)
            if code is not None:
                assert reply.json()["error"]["code"] == code
            client.quiet(0.05)
        client.send(post(completion()))
        reply = client.reply()
        assert reply.status == 200
        assert text_of(reply) == "served at last"
        client.quiet()


def test_a_401_before_the_body_is_read_leaves_the_connection_in_step(
        upstream: ScriptedServer) -> None:
    """Refused without reading its (large) body: the body still arriving is skipped, and
    the keep-alive connection's next request is parsed as a request."""
    key = "gateway-key-for-attacks-0001"
    with serve(upstream, api_keys=key) as gateway, Client(gateway.port) as client:
        body = completion(text="y" * 200_000)
        request = post(body)
        client.send(request[:len(request) - len(body)])
        reply = client.reply()
        assert reply.status == 401
        client.send(body)
        client.send(post(completion(), f"Authorization: Bearer {key}"))
        reply = client.reply()
        assert reply.status == 200
        assert text_of(reply) == "You said: hello"
        client.quiet()


# -- apps that break after their head ------------------------------------------------------------

class Misbehaving:
    """A raw ASGI app served by the gateway's protocol: ``/raise-after-head`` starts a
    reply framed by length and raises; ``/no-body`` returns after the head;
    ``/short`` sends less than its length; ``/two-parts`` sends its body in two writes;
    ``/slow-body`` waits before its body."""

    def __init__(self) -> None:
        self.state = SimpleNamespace(gateway=SimpleNamespace(settings=ServerSettings()))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        head = {"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"10")]}
        if path == "/ok":
            await send(head)
            await send({"type": "http.response.body", "body": b"0123456789"})
            return
        if path == "/two-parts":
            await send(head)
            await send({"type": "http.response.body", "body": b"01234", "more_body": True})
            await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b"56789"})
            return
        if path == "/slow-body":
            await send(head)
            await asyncio.sleep(0.3)
            await send({"type": "http.response.body", "body": b"0123456789"})
            return
        await send(head)
        if path == "/raise-after-head":
            raise RuntimeError("broken after its head")
        if path == "/short":
            await send({"type": "http.response.body", "body": b"01234"})
            return
        # /no-body: returns without a body


@pytest.fixture
def misbehaving() -> Iterator[GatewayServer]:
    with GatewayServer(Misbehaving(), lifetime=60) as server:
        yield server


@pytest.mark.parametrize("path", ["/raise-after-head", "/no-body", "/short"])
def test_an_app_that_breaks_after_its_head_closes_the_connection(
        misbehaving: GatewayServer, path: str) -> None:
    """The client is never left waiting for a body that will not come: the connection
    closes at once, and at most the head (never a second one) arrived."""
    with Client(misbehaving.port, timeout=5) as client:
        client.send(get(path))
        started = time.monotonic()
        answer = client.rest()
        assert time.monotonic() - started < 3, "the connection was left open"
    assert answer.count(b"HTTP/1.1") <= 1, answer
    if answer:
        assert answer.startswith(b"HTTP/1.1 ")


def test_bodies_in_parts_and_late_bodies_arrive_whole_and_in_order(
        misbehaving: GatewayServer) -> None:
    with Client(misbehaving.port) as client:
        for path in ["/two-parts", "/slow-body", "/ok", "/two-parts"]:
            client.send(get(path))
            reply = client.reply()
            assert (reply.status, reply.body) == (200, b"0123456789"), path
            client.quiet(0.02)
        client.send(b"".join(get(path) for path in ["/slow-body", "/two-parts", "/ok"]))
        for _ in range(3):
            assert client.reply().body == b"0123456789"
        client.quiet()


# -- clients that go away ------------------------------------------------------------------------

def answering(body: bytes, after: float = 0.0) -> Any:
    """An upstream behaviour that answers ``body`` as JSON (``after`` seconds late)."""
    def behaviour(conn: socket.socket, request: bytes) -> None:
        time.sleep(after)
        conn.sendall(response_head(Content_Type="application/json",
                                   Content_Length=str(len(body))) + body)
    return behaviour


def chat_reply(text: str) -> bytes:
    """A whole chat completion saying ``text``."""
    return json.dumps({"choices": [{"index": 0, "message": {
        "role": "assistant", "content": text}}]}, separators=(",", ":")).encode()


def hold_upstream(delay: float) -> tuple[Any, list[float]]:
    """An upstream behaviour that answers nothing for ``delay`` s; when its client hung up."""
    hung_up: list[float] = []

    def behaviour(conn: socket.socket, request: bytes) -> None:
        conn.settimeout(delay)
        try:
            if conn.recv(1) == b"":
                hung_up.append(time.monotonic())
        except TimeoutError:
            pass
        except OSError:
            hung_up.append(time.monotonic())
    return behaviour, hung_up


def test_a_client_gone_mid_body_runs_nothing_and_the_gateway_serves_on(
        upstream: ScriptedServer) -> None:
    with serve(upstream) as gateway:
        body = completion(text="z" * 50_000)
        request = post(body)
        for cut in (len(request) - len(body) + 10, len(request) - 1000):
            with Client(gateway.port) as client:
                client.send(request[:cut])
                time.sleep(0.05)
        state = gateway.server.server_state
        assert wait_for(lambda: not state.connections and not state.tasks)
        with Client(gateway.port) as client:
            client.send(post(completion()))
            assert client.reply().status == 200
    assert len(upstream.requests) == 1


def test_a_second_request_on_a_keep_alive_connection_is_interrupted_when_its_client_goes(
) -> None:
    """The disconnect is told to the request being served now, not to the first one."""
    behaviour, hung_up = hold_upstream(5)
    with RawServer() as raw, serve(raw) as gateway:
        raw.then(answering(chat_reply("one"))).then(behaviour)
        client = Client(gateway.port, timeout=5)
        try:
            client.send(post(completion()))
            assert text_of(client.reply()) == "one"
            client.send(post(completion()))
            assert wait_for(lambda: len(raw.requests) == 2)
            time.sleep(0.1)
        finally:
            closed = time.monotonic()
            client.sock.close()
        assert wait_for(lambda: bool(hung_up), 2)
    assert hung_up[0] - closed < 0.2


def test_fifty_held_clients_gone_at_once_close_every_upstream_call() -> None:
    """50 whole requests held upstream, their clients all gone: every upstream connection
    closes, nothing is left in flight, and the gateway serves the next client."""
    count = 50
    holds = [hold_upstream(10) for _ in range(count)]
    with RawServer() as raw, serve(raw) as gateway:
        for behaviour, _ in holds:
            raw.then(behaviour)
        raw.then(answering(chat_reply("later")))
        clients = [Client(gateway.port) for _ in range(count)]
        try:
            for client in clients:
                client.send(post(completion()))
            assert wait_for(lambda: len(raw.requests) == count, 20)
        finally:
            closed = time.monotonic()
            for client in clients:
                client.sock.close()
        assert wait_for(lambda: all(hung for _, hung in holds), 5), \
            f"{sum(not hung for _, hung in holds)} upstream calls outlived their clients"
        slowest = max(hung[0] for _, hung in holds) - closed
        state = gateway.server.server_state
        assert wait_for(lambda: not state.connections and not state.tasks)
        assert gateway.server.config.app.state.gateway.inflight.count == 0
        with Client(gateway.port) as client:
            client.send(post(completion()))
            assert text_of(client.reply()) == "later"
    assert slowest < 1.0, f"the last upstream call closed {slowest:.2f} s after its client"


def test_many_requests_on_one_connection_leave_no_disconnect_callbacks(
        upstream: ScriptedServer) -> None:
    """Each request's Interruption takes its callback back: a long keep-alive connection
    does not collect them (nor tasks)."""
    with serve(upstream) as gateway, Client(gateway.port) as client:
        for number in range(60):
            client.send(post(completion(stream=number % 2 == 1)))
            assert client.reply().status == 200
        state = gateway.server.server_state
        (protocol,) = state.connections
        hangups = [value for value in vars(protocol).values() if isinstance(value, Hangup)]
        assert len(hangups) == 1  # the connection's, which every request listened to
        assert not hangups[0]._callbacks
        assert wait_for(lambda: not state.tasks)


def test_a_pipelined_request_served_behind_a_queued_one_is_interrupted_when_its_client_goes(
) -> None:
    behaviour, hung_up = hold_upstream(5)
    with RawServer() as raw, serve(raw) as gateway:
        raw.then(answering(chat_reply("one"))).then(behaviour)
        client = Client(gateway.port, timeout=5)
        try:
            # Three in one send: the first answered, the second held upstream, the third
            # queued behind it.
            client.send(post(completion()) * 3)
            assert text_of(client.reply()) == "one"
            assert wait_for(lambda: len(raw.requests) == 2)
            time.sleep(0.1)
        finally:
            closed = time.monotonic()
            client.sock.close()
        wait_for(lambda: bool(hung_up), 2)
    expect(hung_up and hung_up[0] - closed < 0.2,
           "the pipelined request's upstream call outlived its client")


def test_a_pipelined_pair_held_upstream_is_interrupted_when_its_client_goes() -> None:
    behaviour, hung_up = hold_upstream(5)
    with RawServer() as raw, serve(raw) as gateway:
        raw.then(behaviour)
        client = Client(gateway.port, timeout=5)
        try:
            client.send(post(completion()) + post(completion(stream=True)))
            assert wait_for(lambda: len(raw.requests) == 1)
            time.sleep(0.1)
        finally:
            closed = time.monotonic()
            client.sock.close()
        assert wait_for(lambda: bool(hung_up), 2)
        time.sleep(0.2)
        assert len(raw.requests) == 1  # the queued one never ran
    assert hung_up[0] - closed < 0.2


# -- pipelining --------------------------------------------------------------------------------

def test_five_pipelined_requests_mixing_streams_wholes_and_heads(
        upstream: ScriptedServer) -> None:
    upstream.add(text="first")
    upstream.add(pieces=["sec", "ond"])
    upstream.add(text="third")
    upstream.add(pieces=["fou", "rth"])
    with serve(upstream) as gateway, Client(gateway.port) as client:
        client.send(post(completion()) + get("/health/liveliness", method="HEAD")
                    + post(completion(stream=True)) + get("/v1/models")
                    + post(completion()) + get("/ui", method="HEAD")
                    + post(completion(stream=True), "Connection: close"))
        assert text_of(client.reply()) == "first"
        head = client.reply("HEAD")
        assert head.status == 200
        assert streamed(client.reply()) == "second"
        models = client.reply()
        assert models.status == 200
        assert models.json()["object"] == "list"
        assert text_of(client.reply()) == "third"
        assert client.reply("HEAD").status == 200
        assert streamed(client.reply()) == "fourth"
        assert client.rest() == b""


def test_a_head_first_then_pipelined_posts(upstream: ScriptedServer) -> None:
    """The first request (armed) is a HEAD whose head is held until its response
    completes; the queued ones must come after it, not before."""
    upstream.add(text="one")
    upstream.add(text="two")
    with serve(upstream) as gateway, Client(gateway.port) as client:
        client.send(get("/v1/models", method="HEAD") + post(completion())
                    + post(completion()))
        assert client.reply("HEAD").status == 200
        assert text_of(client.reply()) == "one"
        assert text_of(client.reply()) == "two"
        client.quiet()


# -- the request timeout while an earlier reply is out ------------------------------------------

def test_a_dribbled_second_request_after_a_whole_reply_is_408(upstream: ScriptedServer) -> None:
    upstream.add(text="whole")
    with serve(upstream, request_timeout=0.5) as gateway, Client(gateway.port) as client:
        client.send(post(completion()))
        assert text_of(client.reply()) == "whole"
        client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHo")
        started = time.monotonic()
        reply = client.reply()
        assert reply.status == 408
        assert reply.json()["error"]["code"] == "request_timeout"
        assert time.monotonic() - started < 3
        assert client.rest() == b""


def test_a_408_for_a_dribbled_next_request_does_not_cut_the_stream_being_answered(
        upstream: ScriptedServer) -> None:
    upstream.add(pieces=["a", "b", "c", "d", "e", "f"], piece_delay=0.25)
    with serve(upstream, request_timeout=0.5) as gateway, Client(gateway.port) as client:
        client.send(post(completion(stream=True)))
        time.sleep(0.1)
        # The next request starts while the stream runs, and never ends.
        client.send(b"POST /v1/chat/completions HTTP/1.1\r\nHo")
        read, broken = replies(client, ["POST"])
        expect(not broken, f"the stream was cut: {broken}")
        expect(read[0].status == 200 and read[0].body.endswith(b"data: [DONE]\n\n"),
               f"the stream did not end whole: {read[0].body[-300:]!r}")
        # Then the refusal of the unfinished one (or a close).
        rest = client.rest()
        expect(rest == b"" or rest.startswith(b"HTTP/1.1 408 "), f"then: {rest[:200]!r}")


def test_a_pipelined_request_whose_body_follows_is_served_after_a_slow_first(
        upstream: ScriptedServer) -> None:
    """The second request's head comes with the first, its body later, while the first is
    held upstream longer than the request timeout: both are answered, in order."""
    upstream.add(text="slow first", delay=1.2)
    upstream.add(text="second")
    with serve(upstream, request_timeout=0.5) as gateway, Client(gateway.port) as client:
        second = post(completion())
        head = second[:second.index(b"\r\n\r\n") + 4]
        client.send(post(completion()) + head)
        time.sleep(0.2)
        client.send(second[len(head):])
        first = client.reply()
        assert first.status == 200, first.body
        assert text_of(first) == "slow first"
        assert text_of(client.reply()) == "second"


def test_a_408_for_a_partial_next_head_comes_after_the_earlier_whole_reply(
        upstream: ScriptedServer) -> None:
    upstream.add(text="slow first", delay=1.2)
    with serve(upstream, request_timeout=0.5) as gateway, Client(gateway.port) as client:
        # A cautious pipeliner: the next request's first bytes go with the first request;
        # the rest would follow the first reply.
        client.send(post(completion()) + b"GET /v1/models HTTP/1.1\r\n")
        read, broken = replies(client, ["POST", "GET"])
    statuses = [reply.status for reply in read]
    expect(statuses == [200, 408], f"replies {statuses} ({broken or 'then closed'}); "
           "the first request's reply was 200 'slow first'")


def test_a_431_for_a_pipelined_head_comes_after_the_earlier_reply(
        upstream: ScriptedServer) -> None:
    upstream.add(text="slow first", delay=1.0)
    with serve(upstream, max_header_bytes=4096) as gateway, Client(gateway.port) as client:
        client.send(post(completion()) + b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.1)
        for _ in range(4):  # an endless head, in reads of its own
            client.send(b"X-Big: " + b"b" * 8000 + b"\r\n")
            time.sleep(0.05)
        read, broken = replies(client, ["POST", "GET"])
    statuses = [reply.status for reply in read]
    expect(statuses == [200, 431], f"replies {statuses} ({broken or 'then closed'}); "
           "the first request's reply was 200 'slow first'")


def test_a_pipelined_oversized_head_in_the_same_read_is_431(upstream: ScriptedServer) -> None:
    with serve(upstream, max_header_bytes=4096) as gateway, Client(gateway.port) as client:
        client.send(get("/health/liveliness") + get("/health/liveliness",
                                                    "X-Big: " + "b" * 20000))
        read, broken = replies(client, ["GET", "GET"])
    statuses = [reply.status for reply in read]
    expect(statuses == [200, 431], f"replies {statuses} ({broken or 'then closed'})")


# -- large replies, slow readers -----------------------------------------------------------------

def slow_read(client: Client, stop_after: float) -> None:
    """Read slowly for a while (the gateway's writes back up: flow control pauses)."""
    deadline = time.monotonic() + stop_after
    while time.monotonic() < deadline:
        time.sleep(0.05)
        client.buffer += client.sock.recv(4096)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_large_reply_to_a_slow_reader_arrives_whole(upstream: ScriptedServer,
                                                      stream: bool) -> None:
    text = "".join(f"{n:07d} " for n in range(500_000))  # 4 MB
    if stream:
        upstream.add(pieces=[text[i:i + 40_000] for i in range(0, len(text), 40_000)])
    else:
        upstream.add(text=text)
    upstream.add(text="after the big one")
    with serve(upstream) as gateway, Client(gateway.port, timeout=20) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        client.send(post(completion(stream=stream)))
        slow_read(client, 1.0)
        reply = client.reply()
        assert reply.status == 200
        assert same(streamed(reply) if stream else text_of(reply), text)
        client.send(post(completion()))
        assert text_of(client.reply()) == "after the big one"
        client.quiet()


def test_a_slow_reader_that_goes_away_mid_reply_leaves_nothing_behind(
        upstream: ScriptedServer) -> None:
    text = "w" * 6_000_000
    upstream.add(text=text)
    with serve(upstream) as gateway:
        with Client(gateway.port) as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            client.send(post(completion()))
            slow_read(client, 0.5)
            assert client.buffer.startswith(b"HTTP/1.1 200 ")
        state = gateway.server.server_state
        assert wait_for(lambda: not state.connections and not state.tasks)
        with Client(gateway.port) as client:
            client.send(post(completion()))
            assert client.reply().status == 200


# -- a disconnect before the call starts ----------------------------------------------------------

def test_a_client_gone_while_its_model_is_resolved_is_never_called_upstream(
        upstream: ScriptedServer) -> None:
    """A bare model name makes the gateway fetch the servers' model lists (off the loop);
    the client goes away meanwhile.  The completion must not outlive it."""
    listing = json.dumps({"object": "list", "data": [{"id": "held-model"}]}).encode()
    behaviour, hung_up = hold_upstream(3)
    with RawServer() as raw:
        raw.then(answering(listing, after=0.6)).then(behaviour)
        registry = registry_for(upstream, urls={"OpenAI": raw.url + "/v1"}, max_retries=0)
        with GatewayServer(create_app(registry, ServerSettings())) as gateway:
            client = Client(gateway.port, timeout=5)
            try:
                client.send(post(completion(model="held-model")))
                assert wait_for(lambda: len(raw.requests) == 1)  # the list is asked for
                time.sleep(0.1)
            finally:
                closed = time.monotonic()
                client.sock.close()
            called = wait_for(lambda: len(raw.requests) == 2, 1.5)
            wait_for(lambda: bool(hung_up), 3)
    expect(not called or (hung_up and hung_up[0] - closed < 1.0),
           "the completion was sent upstream after its client had gone, and held on "
           f"({'until the upstream gave up' if not hung_up else hung_up[0] - closed} s)")
