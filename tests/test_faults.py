"""The fault matrix: every row ends in the right typed error (or the right result),
within its bound, leaving no thread, socket or pooled connection behind.

Servers are real sockets on 127.0.0.1: the scripted HTTP server where HTTP
suffices, a raw TCP server for silence, stalls, resets and cut bodies.
"""

from __future__ import annotations

import gc
import gzip
import os
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from chatplug import (
    AuthenticationError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    Registry,
    StreamInterruptedError,
)
from chatplug.testing import ScriptedServer

from .conftest import BIN, PLANTED_KEY, free_port
from .rawserver import (
    SSE_HEAD,
    RawServer,
    chunk,
    event,
    reset,
    response_head,
    sleep_until_stopped,
)
from .registries import Registries

MESSAGES = [{"role": "user", "content": "hello"}]


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def leak_free() -> Iterator[None]:
    """Each fault leaves no socket (file descriptor) and no thread behind."""
    gc.collect()
    fds, threads = fd_count(), set(threading.enumerate())
    yield
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        gc.collect()
        if fd_count() <= fds and not set(threading.enumerate()) - threads:
            break
        time.sleep(0.05)
    assert fd_count() <= fds, "a socket was left open"
    assert not set(threading.enumerate()) - threads, "a thread was left running"


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer(lifetime=30) as server:
        yield server


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=60) as server:
        yield server


@pytest.fixture
def connect() -> Iterator[Registries]:
    with Registries() as registries:
        yield registries


def call(registry: Registry, stream: bool = False, **options: object) -> object:
    provider = registry.get("GravityEngine")
    if stream:
        return list(provider.create(messages=MESSAGES, stream=True, **options))  # type: ignore[call-overload]
    return provider.create(messages=MESSAGES, **options)  # type: ignore[call-overload]


def within(seconds: float) -> Callable[[], None]:
    started = time.monotonic()

    def check() -> None:
        assert time.monotonic() - started < seconds

    return check


# -- cannot connect -------------------------------------------------------------------


def test_connection_refused(connect: Callable[..., Registry]) -> None:
    done = within(3)
    with pytest.raises(ProviderConnectionError) as info:
        call(connect(f"http://127.0.0.1:{free_port()}"))
    done()
    assert len(info.value.attempts) == 3
    assert "after 3 attempts" in str(info.value)
    assert str(info.value).count("\n  attempt ") == 3


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_dns_name_that_does_not_resolve(scripted: ScriptedServer) -> None:
    # In a private network namespace the lookup fails at once and no packet leaves.
    env = {"PATH": os.environ["PATH"], "CHATPLUG_GRAVITYENGINE_URL": "http://chatplug-test.invalid",
           "CHATPLUG_RETRY_BACKOFF": "0.05", "CHATPLUG_HOME": os.environ["CHATPLUG_HOME"]}
    result = subprocess.run(["unshare", "-n", str(BIN / "chatplug"), "chat", "hi"],
                            capture_output=True, text=True, env=env, timeout=30)
    if "unshare failed" in result.stderr:
        pytest.skip("network namespaces are not permitted here")
    assert result.returncode == 1
    assert "could not resolve the host of http://chatplug-test.invalid" in result.stderr


# -- silence and stalls ----------------------------------------------------------------


def test_server_accepts_and_never_answers(raw: RawServer,
                                          connect: Callable[..., Registry]) -> None:
    raw.then(lambda conn, request: sleep_until_stopped(raw, 20), times=3)
    done = within(3)
    with pytest.raises(ProviderTimeoutError, match=r"sent nothing for 0\.3 s"):
        call(connect(raw.url, read_timeout=0.3, max_retries=1))
    done()


def test_headers_then_stall(raw: RawServer, connect: Callable[..., Registry]) -> None:
    def stall(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD)
        sleep_until_stopped(raw, 20)

    raw.then(stall, times=3)
    done = within(3)
    with pytest.raises(ProviderTimeoutError) as info:
        call(connect(raw.url, read_timeout=0.3), stream=True)
    done()
    assert len(info.value.attempts) == 3  # nothing was delivered, so it was retried


def test_stall_mid_stream_is_not_retried(raw: RawServer, connect: Callable[..., Registry]) -> None:
    def stall(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(event("first")))
        sleep_until_stopped(raw, 20)

    raw.then(stall, times=3)
    received = []
    done = within(2)
    with pytest.raises(ProviderTimeoutError):
        for piece in connect(raw.url, read_timeout=0.3).get("GravityEngine").create(
                messages=MESSAGES, stream=True):
            received.append(piece)
    done()
    assert received == ["first"]
    assert len(raw.requests) == 1  # a delivered piece is never sent twice


def test_dribbling_server_ends_at_the_deadline(raw: RawServer,
                                               connect: Callable[..., Registry]) -> None:
    def dribble(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD)
        for _ in range(400):  # a keep-alive comment every 50 ms, forever (bounded here)
            conn.sendall(chunk(b": still here\n"))
            if raw._stop.wait(0.05):
                return

    raw.then(dribble)
    done = within(2.5)
    with pytest.raises(ProviderTimeoutError, match="deadline passed"):
        call(connect(raw.url, read_timeout=0.3), stream=True, timeout=1.0)
    done()


def test_keep_alive_comments_reset_the_read_timeout(raw: RawServer,
                                                    connect: Callable[..., Registry]) -> None:
    def slow_but_alive(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD)
        for _ in range(8):
            conn.sendall(chunk(b": thinking\n"))
            time.sleep(0.1)
        conn.sendall(chunk(event("late")) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    raw.then(slow_but_alive)
    assert call(connect(raw.url, read_timeout=0.3), stream=True) == ["late"]


# -- cut streams -----------------------------------------------------------------------


def test_connection_reset_mid_stream(raw: RawServer, connect: Callable[..., Registry]) -> None:
    def cut(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(event("one")))
        time.sleep(0.05)
        reset(conn)

    raw.then(cut)
    received = []
    with pytest.raises(StreamInterruptedError):
        for piece in connect(raw.url).get("GravityEngine").create(messages=MESSAGES,
                                                                  stream=True):
            received.append(piece)
    assert received == ["one"]


def test_chunked_stream_cut_without_terminating_chunk(raw: RawServer,
                                                      connect: Callable[..., Registry]) -> None:
    def cut(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(event("one")) + b"40\r\ndata: {\"cho")
        conn.shutdown(socket.SHUT_RDWR)

    raw.then(cut)
    with pytest.raises(StreamInterruptedError, match="closed the connection"):
        call(connect(raw.url), stream=True)


def test_clean_close_without_done_or_finish_reason(raw: RawServer,
                                                   connect: Callable[..., Registry]) -> None:
    def close(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(event("one")) + b"0\r\n\r\n")

    raw.then(close)
    with pytest.raises(StreamInterruptedError, match="without \\[DONE\\]"):
        call(connect(raw.url), stream=True)


def test_a_stream_broken_before_its_first_piece_is_retried(
        raw: RawServer, connect: Callable[..., Registry]) -> None:
    def broken(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(event(None)))  # a role-only chunk: no text yet
        reset(conn)

    def fine(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(event("ok")) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    raw.then(broken).then(fine)
    assert call(connect(raw.url), stream=True) == ["ok"]
    assert len(raw.requests) == 2


# -- statuses --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
def test_retryable_status_then_success_gives_one_reply(
        scripted: ScriptedServer, connect: Callable[..., Registry], status: int) -> None:
    scripted.add(status=status, text="flaky")
    scripted.add(status=status, text="flaky")
    assert call(connect(scripted.url)) == "You said: hello"
    assert len(scripted.requests) == 3


def test_retries_give_up_with_each_attempt_explained(
        scripted: ScriptedServer, connect: Callable[..., Registry]) -> None:
    for _ in range(3):
        scripted.add(status=503, text="busy")
    with pytest.raises(ProviderHTTPError) as info:
        call(connect(scripted.url))
    assert str(info.value).splitlines() == [
        "GravityEngine: 503 Service Unavailable after 3 attempts: busy. "
        "The server failed; try again later.",
        "  attempt 1: 503 Service Unavailable: busy",
        "  attempt 2: 503 Service Unavailable: busy",
        "  attempt 3: 503 Service Unavailable: busy",
    ]


def test_max_retries_per_call_and_from_settings(
        scripted: ScriptedServer, connect: Callable[..., Registry]) -> None:
    scripted.add(status=500)
    with pytest.raises(ProviderHTTPError):
        call(connect(scripted.url), max_retries=0)
    assert len(scripted.requests) == 1
    for _ in range(5):
        scripted.add(status=500)
    with pytest.raises(ProviderHTTPError) as info:
        call(connect(scripted.url, max_retries=4))
    assert len(info.value.attempts) == 5


def test_429_with_retry_after_then_success(scripted: ScriptedServer,
                                           connect: Callable[..., Registry]) -> None:
    scripted.add(status=429, text="slow down", headers={"Retry-After": "1"})
    started = time.monotonic()
    assert call(connect(scripted.url)) == "You said: hello"
    assert 0.95 <= time.monotonic() - started < 3


def test_429_with_a_huge_retry_after_is_raised_at_once(
        scripted: ScriptedServer, connect: Callable[..., Registry]) -> None:
    scripted.add(status=429, text="come back tomorrow", headers={"Retry-After": "86400"})
    done = within(1)
    with pytest.raises(RateLimitError) as info:
        call(connect(scripted.url))
    done()
    assert info.value.retry_after == 86400
    assert len(scripted.requests) == 1


def test_retries_never_outlast_the_deadline(scripted: ScriptedServer,
                                            connect: Callable[..., Registry]) -> None:
    scripted.add(status=429, text="wait", headers={"Retry-After": "5"})
    done = within(1)
    with pytest.raises(RateLimitError):
        call(connect(scripted.url), timeout=2)  # waiting 5 s would pass the deadline
    done()


@pytest.mark.parametrize(("status", "error"), [
    (400, ProviderHTTPError), (401, AuthenticationError), (403, AuthenticationError),
    (404, ProviderHTTPError), (422, ProviderHTTPError),
])
def test_client_errors_are_never_retried(scripted: ScriptedServer,
                                         connect: Callable[..., Registry],
                                         status: int, error: type[Exception]) -> None:
    scripted.add(status=status, text="no")
    with pytest.raises(error):
        call(connect(scripted.url))
    assert len(scripted.requests) == 1


# -- bodies that break the format -------------------------------------------------------


def test_html_error_page_with_status_200(scripted: ScriptedServer,
                                         connect: Callable[..., Registry]) -> None:
    scripted.add(body=b"<html><h1>Cloudflare</h1></html>", content_type="text/html")
    with pytest.raises(ProviderResponseError, match="text/html"):
        call(connect(scripted.url))
    assert len(scripted.requests) == 1


def test_json_without_choices(scripted: ScriptedServer, connect: Callable[..., Registry]) -> None:
    scripted.add(body=b'{"object": "chat.completion"}')
    with pytest.raises(ProviderResponseError, match="no choices"):
        call(connect(scripted.url))


def test_error_object_inside_a_200_stream(scripted: ScriptedServer,
                                          connect: Callable[..., Registry]) -> None:
    scripted.add(text="partial", error_event={"message": "context length exceeded"},
                 stream=True)
    # After content arrived, the error means an incomplete reply (issue 8).
    with pytest.raises(StreamInterruptedError, match="context length exceeded"):
        call(connect(scripted.url), stream=True)


def test_invalid_utf8_becomes_replacement_characters(
        raw: RawServer, connect: Callable[..., Registry]) -> None:
    bad = b'data: {"choices": [{"delta": {"content": "caf\xff"}, "finish_reason": "stop"}]}\n\n'
    body = b'{"choices": [{"message": {"content": "caf\xff"}}]}'

    def streamed(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(bad) + b"0\r\n\r\n")

    def whole(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json; charset=latin-1",
                                   Content_Length=str(len(body))) + body)

    raw.then(streamed).then(whole)
    registry = connect(raw.url)
    assert call(registry, stream=True) == ["caf\ufffd"]
    assert call(registry) == "caf\ufffd"


def test_a_single_sse_line_of_10_mb(raw: RawServer, connect: Callable[..., Registry]) -> None:
    text = "x" * (10 * 1024 * 1024)

    def huge(conn: socket.socket, request: bytes) -> None:
        data = event(text) + b"data: [DONE]\n\n"
        conn.sendall(SSE_HEAD)
        for start in range(0, len(data), 64 * 1024):
            conn.sendall(chunk(data[start:start + 64 * 1024]))
        conn.sendall(b"0\r\n\r\n")

    raw.then(huge)
    done = within(10)
    pieces = call(connect(raw.url), stream=True)
    done()
    assert pieces == [text]


def test_endless_stream_stops_at_the_size_limit(raw: RawServer,
                                                connect: Callable[..., Registry]) -> None:
    def endless(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD)
        data = chunk(event("y" * 1000))
        for _ in range(100_000):  # bounded: ~100 MB at most, stopped far earlier
            conn.sendall(data)

    raw.then(endless)
    received = 0
    with pytest.raises(ProviderResponseError, match="exceeded 1048576 bytes"):
        for piece in connect(raw.url, max_response_bytes=1024 * 1024).get(
                "GravityEngine").create(messages=MESSAGES, stream=True):
            received += len(piece)
    assert 900_000 < received <= 1024 * 1024


def test_gzip_encoded_json_and_stream(raw: RawServer, connect: Callable[..., Registry]) -> None:
    body = gzip.compress(b'{"choices": [{"message": {"content": "zipped"}}]}')

    def whole(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json", Content_Encoding="gzip",
                                   Content_Length=str(len(body))) + body)

    def streamed(conn: socket.socket, request: bytes) -> None:
        compressor = zlib.compressobj(wbits=31)  # gzip framing, flushed per event: still live
        conn.sendall(response_head(Content_Type="text/event-stream", Content_Encoding="gzip",
                                   Transfer_Encoding="chunked"))
        for data in (event("zip"), event("ped"), b"data: [DONE]\n\n"):
            conn.sendall(chunk(compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)))
        conn.sendall(chunk(compressor.flush()) + b"0\r\n\r\n")

    raw.then(whole).then(streamed)
    registry = connect(raw.url)
    assert call(registry) == "zipped"
    assert call(registry, stream=True) == ["zip", "ped"]
    assert b"accept-encoding: gzip" in raw.requests[0].lower()


def test_redirect_to_another_host_is_not_followed(raw: RawServer, scripted: ScriptedServer,
                                                  connect: Callable[..., Registry]) -> None:
    def redirect(conn: socket.socket, request: bytes) -> None:
        target = scripted.url.replace("127.0.0.1", "localhost") + "/v1/chat/completions"
        conn.sendall(response_head("307 Temporary Redirect", Location=target,
                                   Content_Length="0"))

    raw.then(redirect)
    registry = connect(raw.url)
    with pytest.raises(ProviderHTTPError, match="does not follow redirects") as info:
        registry.get("OpenAI").create(messages=MESSAGES, model="m")
    assert info.value.status_code == 307
    assert scripted.requests == []  # nothing, least of all the key, reached the other host
    assert f"Bearer {PLANTED_KEY}".encode() in raw.requests[0]


# -- proxies ---------------------------------------------------------------------------


def test_proxy_from_the_environment_is_used_and_no_proxy_honoured(
        scripted: ScriptedServer, connect: Callable[..., Registry],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The scripted server plays the proxy: a proxied request names the absolute URL.
    monkeypatch.setenv("HTTP_PROXY", scripted.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert call(connect("http://chatplug-proxied.invalid")) == "You said: hello"
    assert scripted.requests[-1].path == (
        "http://chatplug-proxied.invalid/api/openai/v1/chat/completions")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert call(connect(scripted.url)) == "You said: hello"
    assert scripted.requests[-1].path == "/api/openai/v1/chat/completions"


def test_headers_dribbled_forever_end_at_the_deadline(
        raw: RawServer, connect: Callable[..., Registry]) -> None:
    def dribble_headers(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for number in range(200):  # one header line every 0.1 s, never the blank line
            conn.sendall(b"X-Wait-%d: 1\r\n" % number)
            if raw._stop.wait(0.1):
                return

    raw.then(dribble_headers, times=3)
    done = within(2.5)
    with pytest.raises(ProviderTimeoutError, match="deadline passed"):
        call(connect(raw.url, read_timeout=0.5), stream=True, timeout=1.0)
    done()


def test_a_body_chunk_dribbled_byte_by_byte_ends_at_the_deadline(
        raw: RawServer, connect: Callable[..., Registry]) -> None:
    def dribble_chunk(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + b"1000\r\n")  # announces 4 KiB, sends a byte every 0.1 s
        for _ in range(200):
            conn.sendall(b":")
            if raw._stop.wait(0.1):
                return

    raw.then(dribble_chunk)
    done = within(2.5)
    with pytest.raises(ProviderTimeoutError, match="deadline passed"):
        call(connect(raw.url, read_timeout=0.5), stream=True, timeout=1.0)
    done()
