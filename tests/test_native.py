"""The native transport (calls an event loop drives) over real HTTP: the same errors as the
sync transport for every fault, keep-alive, a stale pooled connection, interim answers,
content encodings, limits, and proof that no thread and no ``requests`` are involved."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from chatplug import (
    ChatplugError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderTimeoutError,
    Registry,
    StreamInterruptedError,
    hookimpl,
)
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

from .conftest import free_port
from .rawserver import RawServer, chunk, event, response_head

MESSAGES = [{"role": "user", "content": "hello"}]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=90) as scripted:
        yield scripted


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer(lifetime=60) as made:
        yield made


def _registry(url: str, **settings: Any) -> Registry:
    fake = SimpleNamespace(url=url)
    return registry_for(fake, urls={"GravityEngine": url}, plugins="",  # type: ignore[arg-type]
                        max_retries=0, **settings)


def _outcome(call: Any) -> tuple[str, str]:
    try:
        result = call()
    except ChatplugError as error:
        return type(error).__name__, str(error)
    return "ok", str(result)


def _both(registry: Registry, stream: bool, **options: Any) -> tuple[Any, Any]:
    """The sync call's outcome and the native async call's, on one registry."""
    provider = registry.provider("GravityEngine")

    def sync() -> Any:
        if stream:
            return "".join(provider.create(MESSAGES, stream=True, **options))
        return provider.complete(MESSAGES, **options).text

    async def native() -> Any:
        assert provider.native_async
        assert registry.runtime.transport.native
        if stream:
            reply = await provider.acreate(MESSAGES, stream=True, **options)
            return "".join([piece async for piece in reply])
        return (await provider.acomplete(MESSAGES, **options)).text

    return _outcome(sync), _outcome(lambda: asyncio.run(native()))


# -- the same outcome as the sync transport -----------------------------------------------

SCRIPTS = {
    "a reply": {},
    "400": {"status": 400},
    "401": {"status": 401},
    "403": {"status": 403},
    "404": {"status": 404},
    "429 with Retry-After": {"status": 429, "headers": {"Retry-After": "7"}},
    "500": {"status": 500},
    "503": {"status": 503},
    "a redirect": {"status": 302, "headers": {"Location": "http://elsewhere.invalid/"}},
    "cut mid-stream": {"drop_after": 2, "text": "one two three four five"},
    "reset mid-stream": {"drop_after": 2, "reset": True, "text": "one two three four"},
    "no [DONE] nor finish": {"done": False, "finish": False},
    "close-delimited": {"chunked": False, "text": "a close delimited reply"},
    "an HTML page": {"body": b"<html>login</html>", "content_type": "text/html"},
    "an error event": {"error_event": {"message": "upstream overloaded"}},
    "split in tiny chunks": {"split": 3, "text": "héllo wörld, split everywhere"},
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_every_outcome_is_the_sync_transports(server: ScriptedServer, name: str,
                                              stream: bool) -> None:
    registry = _registry(server.url)
    try:
        for _ in range(2):
            server.add(**SCRIPTS[name])
        sync, native = _both(registry, stream)
    finally:
        registry.close()
    assert native == sync
    assert len(server.requests) == 2


def test_errors_name_the_fault_like_the_sync_transport(raw: RawServer) -> None:
    def banner(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    def silent(conn: socket.socket, request: bytes) -> None:
        time.sleep(1.0)
        conn.close()

    def closes(conn: socket.socket, request: bytes) -> None:
        conn.close()

    registry = _registry(raw.url, read_timeout=0.3)
    try:
        for behaviour, kind, words in ((banner, ProviderConnectionError, "not an HTTP server"),
                                       (silent, ProviderTimeoutError, "sent nothing for 0.3 s"),
                                       (closes, ProviderConnectionError, "could not reach")):
            raw.then(behaviour, times=2)
            sync, native = _both(registry, stream=False)
            assert sync == native
            assert native[0] == kind.__name__, native
            assert words in native[1], native
    finally:
        registry.close()


def test_tls_at_a_plain_port_and_an_unknown_host_read_like_the_sync_transport(
        server: ScriptedServer) -> None:
    for url, words in ((server.url.replace("http://", "https://"), "does not speak TLS"),
                       ("http://chatplug-nowhere.invalid", "could not resolve the host")):
        registry = _registry(url)
        try:
            sync, native = _both(registry, stream=False)
        finally:
            registry.close()
        assert sync == native
        assert native[0] == "ProviderConnectionError", native
        assert words in native[1], native


def test_connection_refused(server: ScriptedServer) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    registry = _registry(closed)
    try:
        sync, native = _both(registry, stream=True)
        assert sync == native
        assert native[0] == "ProviderConnectionError"
        assert native[1].count(closed) == 1
    finally:
        registry.close()


def test_a_header_that_cannot_be_sent_is_refused_before_anything_is_sent(
        server: ScriptedServer) -> None:
    registry = _registry(server.url)
    try:
        for bad in ({"X-Note": "one\r\nInjected: yes"}, {"X-Note": "caf\u00e9 \u263a"},
                    {"Bad Name": "x"}, {"X-Note": " leading space"}):
            sync, native = _both(registry, stream=False, headers=bad)
            assert native[0] == sync[0] == InvalidRequestError.__name__
        assert server.requests == []
    finally:
        registry.close()


def test_the_deadline_ends_a_server_that_dribbles(raw: RawServer) -> None:
    def dribble(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="text/event-stream",
                                   Transfer_Encoding="chunked"))
        for _ in range(40):
            conn.sendall(chunk(b": keep-alive\n\n"))
            time.sleep(0.05)

    raw.then(dribble)
    registry = _registry(raw.url)

    async def main() -> float:
        started = time.monotonic()
        stream = await registry.provider("GravityEngine").acreate(MESSAGES, stream=True,
                                                                  timeout=0.5)
        with pytest.raises(ProviderTimeoutError, match="deadline"):
            async for _ in stream:
                pass
        return time.monotonic() - started

    try:
        assert asyncio.run(main()) < 1.2
    finally:
        registry.close()


# -- connections ---------------------------------------------------------------------------


class Counting:
    """Replies with keep-alive; counts the connections it was asked on."""

    def __init__(self, raw: RawServer, body: bytes, **headers: str) -> None:
        self.raw = raw
        self.body = body
        self.headers = headers
        self.peers: list[Any] = []

    def __call__(self, conn: socket.socket, request: bytes) -> None:
        self.peers.append(conn.getpeername())
        head = response_head(Content_Type="application/json",
                             Content_Length=str(len(self.body)), **self.headers)
        conn.sendall(head + self.body)


def _json(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"content": text},
                                    "finish_reason": "stop"}]}).encode()


def test_one_connection_serves_call_after_call(raw: RawServer) -> None:
    reply = Counting(raw, _json("again"))
    raw.then(reply, times=20)
    registry = _registry(raw.url)

    async def main() -> list[str]:
        provider = registry.provider("GravityEngine")
        return [await provider.acreate(MESSAGES) for _ in range(20)]

    try:
        assert asyncio.run(main()) == ["again"] * 20
    finally:
        registry.close()
    assert len(set(reply.peers)) == 1


def test_connection_close_is_honoured(raw: RawServer) -> None:
    reply = Counting(raw, _json("fresh"), Connection="close")

    def closing(conn: socket.socket, request: bytes) -> None:
        reply(conn, request)
        conn.close()

    raw.then(closing, times=3)
    registry = _registry(raw.url)

    async def main() -> list[str]:
        provider = registry.provider("GravityEngine")
        return [await provider.acreate(MESSAGES) for _ in range(3)]

    try:
        assert asyncio.run(main()) == ["fresh"] * 3
    finally:
        registry.close()
    assert len(set(reply.peers)) == 3


def test_a_pooled_connection_the_server_closed_is_replaced_once(raw: RawServer) -> None:
    body = _json("still here")

    def answer_then_close(conn: socket.socket, request: bytes) -> None:
        # Keep-alive promised, then the idle connection is closed (a server's idle timeout).
        conn.sendall(response_head(Content_Type="application/json",
                                   Content_Length=str(len(body))) + body)
        time.sleep(0.05)
        conn.close()

    raw.then(answer_then_close, times=2)
    registry = _registry(raw.url)

    async def main() -> list[str]:
        provider = registry.provider("GravityEngine")
        first = await provider.acreate(MESSAGES)
        await asyncio.sleep(0.2)  # the server has closed the pooled connection by now
        return [first, await provider.acreate(MESSAGES)]

    try:
        assert asyncio.run(main()) == ["still here", "still here"]
    finally:
        registry.close()
    assert len(raw.requests) == 2


def test_interim_answers_gzip_and_the_size_limit(raw: RawServer) -> None:
    body = gzip.compress(_json("unpacked"))

    def early_hints(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n")
        conn.sendall(response_head(Content_Type="application/json", Content_Encoding="gzip",
                                   Content_Length=str(len(body))) + body)

    def endless(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="text/event-stream",
                                   Transfer_Encoding="chunked"))
        with_padding = event("x" * 1000)
        for _ in range(200):
            conn.sendall(chunk(with_padding))

    raw.then(early_hints).then(endless)
    registry = _registry(raw.url, max_response_bytes=20_000)

    async def main() -> None:
        provider = registry.provider("GravityEngine")
        assert await provider.acreate(MESSAGES) == "unpacked"
        stream = await provider.acreate(MESSAGES, stream=True)
        with pytest.raises(ProviderResponseError, match="exceeded 20000 bytes"):
            async for _ in stream:
                pass

    try:
        asyncio.run(main())
    finally:
        registry.close()


def test_idle_connections_close_with_their_loop(raw: RawServer) -> None:
    closed = threading.Event()
    body = _json("bye")

    def answer_and_watch(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json",
                                   Content_Length=str(len(body))) + body)
        conn.settimeout(5)
        try:
            while conn.recv(1024):
                pass
        except OSError:
            pass
        closed.set()

    raw.then(answer_and_watch)
    registry = _registry(raw.url)
    try:
        assert asyncio.run(registry.provider("GravityEngine").acreate(MESSAGES)) == "bye"
        # asyncio.run finalized the pool's guard: the idle connection is closed, not
        # leaked (pytest turns an unclosed transport's ResourceWarning into an error).
        assert closed.wait(2)
    finally:
        registry.close()


def test_bytes_after_a_reply_never_become_the_next_reply(raw: RawServer) -> None:
    body = _json("mine")
    smuggled = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}"

    def with_a_second_response(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json",
                                   Content_Length=str(len(body))) + body + smuggled)

    def plain(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json",
                                   Content_Length=str(len(body))) + body)

    raw.then(with_a_second_response).then(plain)
    registry = _registry(raw.url)

    async def main() -> list[str]:
        provider = registry.provider("GravityEngine")
        return [await provider.acreate(MESSAGES), await provider.acreate(MESSAGES)]

    try:
        assert asyncio.run(main()) == ["mine", "mine"]
    finally:
        registry.close()


def test_a_request_is_never_sent_twice(raw: RawServer) -> None:
    body = _json("once")

    def answer(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json",
                                   Content_Length=str(len(body))) + body)

    def read_then_close(conn: socket.socket, request: bytes) -> None:
        time.sleep(0.1)  # "working" on the request, then gone without an answer
        conn.close()

    raw.then(answer).then(read_then_close).then(answer)
    registry = _registry(raw.url)

    async def main() -> tuple[str, str]:
        provider = registry.provider("GravityEngine")
        first = await provider.acreate(MESSAGES)
        return first, _outcome_text(await _caught(provider.acreate(MESSAGES)))

    try:
        first, second = asyncio.run(main())
    finally:
        registry.close()
    assert first == "once"
    assert second.startswith("ProviderConnectionError")
    assert "Remote end closed connection without response" in second
    assert len(raw.requests) == 2  # the POST the server dropped was not sent again


async def _caught(call: Any) -> Any:
    try:
        return await call
    except ChatplugError as error:
        return error


def _outcome_text(result: Any) -> str:
    return f"{type(result).__name__}: {result}"


def test_headers_are_bounded_like_the_sync_transports(raw: RawServer) -> None:
    many = b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"Content-Length: 0\r\n\r\n"
    endless = b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 200_000

    def send(data: bytes) -> Any:
        return lambda conn, request: conn.sendall(data)

    raw.then(send(many), times=2).then(send(endless), times=2)
    registry = _registry(raw.url, read_timeout=2)
    try:
        for words in ("got more than 100 headers",
                      "got more than 65536 bytes when reading header line"):
            sync, native = _both(registry, stream=False)
            assert native == sync
            assert words in native[1], native
    finally:
        registry.close()


def test_headers_sent_slowly_are_not_silence(raw: RawServer) -> None:
    body = _json("slow")
    head = response_head(Content_Type="application/json", Content_Length=str(len(body)))

    def drip(conn: socket.socket, request: bytes) -> None:
        for index in range(0, len(head), 8):
            conn.sendall(head[index:index + 8])
            time.sleep(0.05)  # the whole head takes far longer than the read timeout
        conn.sendall(body)

    raw.then(drip)
    registry = _registry(raw.url, read_timeout=0.3)
    try:
        assert asyncio.run(registry.provider("GravityEngine").acreate(MESSAGES)) == "slow"
    finally:
        registry.close()


def test_switching_protocols_and_a_quoted_path(raw: RawServer) -> None:
    upgrade = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\n\r\n")

    def switch(conn: socket.socket, request: bytes) -> None:
        conn.sendall(upgrade)
        conn.close()

    raw.then(switch, times=2).then(Counting(raw, _json("quoted")), times=2)
    registry = _registry(raw.url)
    try:
        sync, native = _both(registry, stream=False)
        assert native == sync
        assert native[0] == "ProviderResponseError"
    finally:
        registry.close()
    spaced = _registry(raw.url + "/a b/é")
    try:
        sync, native = _both(spaced, stream=False)
        assert native == sync == ("ok", "quoted")
    finally:
        spaced.close()
    lines = [request.split(b"\r\n", 1)[0] for request in raw.requests[-2:]]
    assert lines[0] == lines[1] == b"POST /a%20b/%C3%A9/api/openai/v1/chat/completions HTTP/1.1"


# -- when the loop drives a call, and when it does not --------------------------------------


PROBE = """
import asyncio, sys, threading
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

with ScriptedServer(lifetime=30) as server:
    registry = registry_for(server, plugins="")
    async def main():
        provider = registry.provider("GravityEngine")
        text = await provider.acreate([{"role": "user", "content": "hi"}])
        stream = await provider.acreate([{"role": "user", "content": "hi there"}], stream=True)
        pieces = [piece async for piece in stream]
        done = await registry.provider("OpenAI").acomplete([{"role": "user", "content": "x"}],
                                                           model="m")
        return text, pieces, done.text
    print(asyncio.run(main()))
    workers = [t.name for t in threading.enumerate() if t.name.startswith("chatplug-async")]
    print("requests" in sys.modules, workers)
"""


def _probe(script: str) -> list[str]:
    """What ``script`` prints, run in a fresh interpreter without chatplug or proxy
    variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CHATPLUG_") and k.lower() not in (
               "http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    env["PYTHONPATH"] = ROOT
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, env=env, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_native_call_takes_no_worker_and_never_loads_requests() -> None:
    lines = _probe(PROBE)
    assert lines[0] == "('You said: hi', ['You', ' said:', ' hi', ' there'], 'You said: x')"
    assert lines[1] == "False []"


PROXIED = """
import asyncio, os, sys, threading
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

with ScriptedServer(lifetime=30) as proxy:
    os.environ["HTTP_PROXY"] = proxy.url  # the scripted server plays a forward proxy
    registry = registry_for(proxy, urls={"GravityEngine": "http://chatplug-proxied.invalid"},
                            plugins="")
    async def main():
        provider = registry.provider("GravityEngine")
        text = await provider.acreate([{"role": "user", "content": "hi"}])
        stream = await provider.acreate([{"role": "user", "content": "hi there"}], stream=True)
        return text, [piece async for piece in stream]
    print(asyncio.run(main()))
    print([request.path for request in proxy.requests])
    workers = [t.name for t in threading.enumerate() if t.name.startswith("chatplug-async")]
    print("requests" in sys.modules, workers)
"""


def test_proxies_are_used_on_the_loop_and_no_proxy_alone_changes_nothing(
        server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _probe(PROXIED)
    assert lines[0] == "('You said: hi', ['You', ' said:', ' hi', ' there'])"
    assert lines[1] == str(["http://chatplug-proxied.invalid/api/openai/v1/chat/completions"] * 2)
    assert lines[2] == "False []"  # on the loop: no worker, no requests
    # NO_PROXY alone (or one that covers the host) keeps calls on the loop, direct.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    registry = _registry(server.url)
    try:
        assert registry.runtime.transport.native
        assert asyncio.run(registry.provider("GravityEngine").acreate(MESSAGES)) == \
            "You said: hello"
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # NO_PROXY covers the server
        registry.runtime.transport._loop_proxies.clear()
        assert asyncio.run(registry.provider("GravityEngine").acreate(MESSAGES)) == \
            "You said: hello"
        assert [request.path for request in server.requests] == [
            "/api/openai/v1/chat/completions"] * 2
    finally:
        registry.close()


class BlockingProvider:
    """Declares native IO but calls the blocking client: a bug chatplug names."""

    url = "http://127.0.0.1:9"
    model: ClassVar[list[str]] = ["m"]
    supports_stream = True
    needs_auth = False
    native_async = True

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool,
                          url: str, http: Any) -> Any:
        return http.post_json(url + "/chat", {"model": model}).json()["text"]


def test_a_provider_that_blocks_despite_native_async_is_named(server: ScriptedServer) -> None:
    registry = _registry(server.url)
    try:
        registry.register(BlockingProvider(), name="Blocking")
        with pytest.raises(ProviderResponseError, match="native_async = True") as caught:
            asyncio.run(registry.provider("Blocking").acomplete(MESSAGES))
        assert "CHATPLUG_NATIVE_ASYNC=0" in str(caught.value)
        assert server.requests == []
    finally:
        registry.close()


def test_native_async_off_runs_the_same_calls_on_threads(server: ScriptedServer) -> None:
    registry = _registry(server.url, native_async=False)
    try:
        server.add(text="on a worker")
        assert asyncio.run(registry.provider("GravityEngine").acreate(MESSAGES)) == \
            "on a worker"
    finally:
        registry.close()


def test_streams_from_many_tasks_share_the_pool(server: ScriptedServer) -> None:
    registry = _registry(server.url)

    async def one(index: int) -> str:
        stream = await registry.provider("GravityEngine").acreate(
            [{"role": "user", "content": f"task {index}"}], stream=True)
        async with stream:
            return "".join([piece async for piece in stream])

    async def main() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(100)))

    try:
        assert asyncio.run(main()) == [f"You said: task {i}" for i in range(100)]
    finally:
        registry.close()


def test_stream_failure_before_the_first_piece_still_retries(server: ScriptedServer) -> None:
    registry = _registry(server.url)
    try:
        server.add(status=503)
        server.add(text="second time")

        async def main() -> str:
            stream = await registry.provider("GravityEngine").acreate(
                MESSAGES, stream=True, max_retries=1)
            return "".join([piece async for piece in stream])

        assert asyncio.run(main()) == "second time"
    finally:
        registry.close()


def test_a_cut_stream_raises_with_what_arrived(server: ScriptedServer) -> None:
    registry = _registry(server.url)
    server.add(text="one two three four", drop_after=2)

    async def main() -> list[str]:
        stream = await registry.provider("GravityEngine").acreate(MESSAGES, stream=True)
        got: list[str] = []
        with pytest.raises(StreamInterruptedError) as caught:
            async for piece in stream:
                got.append(piece)
        assert caught.value.completion is not None
        assert caught.value.completion.text == "".join(got)
        return got

    try:
        assert asyncio.run(main()) == ["one", " two"]
    finally:
        registry.close()
