"""chatplug serve's HTTP protocol on the hot path (chatplug.server.protocol): a reply framed
by Content-Length leaves in one write, and a client that goes away is told to the request
serving it without a task per request.  Limits and refusals: tests/test_gateway_holes.py."""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from chatplug.server import ServerSettings, create_app
from chatplug.server.protocol import OneWrite
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

MESSAGES = [{"role": "user", "content": "hello"}]


class Recording:
    """Stands in for the socket's transport (and holds the cycle's ``transport``): what
    was written, in which writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.transport: Any = None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
CHUNKED = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
           b"transfer-encoding: chunked\r\n\r\n")


def test_a_head_with_a_length_leaves_with_the_body() -> None:
    transport, cycle = Recording(), Recording()
    writer = OneWrite(transport)  # type: ignore[arg-type]
    writer.arm(cycle)
    assert cycle.transport is writer
    writer.write(HEAD)
    assert transport.writes == []
    writer.write(b"{}")
    assert transport.writes == [HEAD + b"{}"]
    assert cycle.transport is transport  # the head is out: the socket's own from now on
    writer.flush()  # nothing held any more
    assert transport.writes == [HEAD + b"{}"]


def test_a_chunked_head_and_a_continue_leave_at_once() -> None:
    transport, cycle = Recording(), Recording()
    writer = OneWrite(transport)  # type: ignore[arg-type]
    writer.arm(cycle)
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert cycle.transport is writer  # the head is still to come
    writer.write(CHUNKED)
    assert cycle.transport is transport  # a stream's pieces go straight to the socket
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", CHUNKED]


def test_a_held_head_is_written_by_flush_and_before_close() -> None:
    transport = Recording()
    writer = OneWrite(transport)  # type: ignore[arg-type]
    writer.write(HEAD)
    writer.flush()
    assert transport.writes == [HEAD]
    writer.write(HEAD)
    writer.close()
    assert transport.writes == [HEAD, HEAD]
    assert transport.closed


@pytest.fixture
def gateway() -> Iterator[GatewayServer]:
    with ScriptedServer(lifetime=60) as upstream:
        upstream.add(text="first reply")
        upstream.add(pieces=["stre", "amed"])
        upstream.add(text="third reply")
        registry = registry_for(upstream, max_retries=0)
        with GatewayServer(create_app(registry, ServerSettings())) as server:
            yield server


def test_whole_replies_heads_and_streams_follow_each_other_on_one_connection(
        gateway: GatewayServer) -> None:
    """Every response completes on one keep-alive connection: a held head never waits for
    a body that does not come (HEAD), nor delays the next response."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        def post(stream: bool) -> tuple[int, bytes]:
            connection.request("POST", "/v1/chat/completions", json.dumps(
                {"model": "GravityEngine", "messages": MESSAGES, "stream": stream}),
                {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()

        status, body = post(False)
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] == "first reply"
        connection.request("HEAD", "/health/liveliness")
        response = connection.getresponse()
        assert response.status == 200
        assert int(response.headers["content-length"]) > 0
        assert response.read() == b""
        status, body = post(True)
        assert status == 200
        assert b"stre" in body
        assert body.endswith(b"data: [DONE]\n\n")
        status, body = post(False)
        assert json.loads(body)["choices"][0]["message"]["content"] == "third reply"
    finally:
        connection.close()


#: Linux's ``struct tcp_info``: ``tcpi_data_segs_in`` (segments that carried data) at 152.
_DATA_SEGS_IN = 152


def data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="counts segments with Linux's TCP_INFO")
def test_a_whole_reply_arrives_in_one_segment(gateway: GatewayServer) -> None:
    """Head and body leave in one write: the client's socket receives one segment with
    data (two writes are two segments on a connection without Nagle)."""
    body = json.dumps({"model": "GravityEngine", "messages": MESSAGES}).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        before = data_segments_in(sock)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < length(
                answer):
            part = sock.recv(1 << 20)
            assert part, "the gateway closed the connection mid-reply"
            answer += part
        segments = data_segments_in(sock) - before
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["choices"][0]["message"][
        "content"] == "first reply"
    assert segments == 1


def length(answer: bytes) -> int:
    head = answer.partition(b"\r\n\r\n")[0]
    return next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length:")), 1 << 30)


def test_the_access_log_formatter_writes_what_loggings_own_writes() -> None:
    """LineFormatter formats each second's time once; its lines are logging's own."""
    import logging

    from chatplug.server.access import LineFormatter

    layout = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    ours, theirs = LineFormatter(layout), logging.Formatter(layout)
    for created in (1_800_000_000.001, 1_800_000_000.999, 1_800_000_001.5, 1_800_000_000.25):
        record = logging.LogRecord("chatplug.server.access", logging.INFO, __file__, 0,
                                   "POST /v1/chat/completions 200", None, None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        assert ours.format(record) == theirs.format(record)


def test_a_serving_process_collects_young_garbage_less_often(tmp_path: Any) -> None:
    """chatplug serve's factory raises the young generation's threshold in its own process;
    create_app (embedded in someone's process) leaves the collector alone."""
    code = ("import gc; from chatplug.server.app import create_app, serving_app; "
            "before = gc.get_threshold(); create_app(); embedded = gc.get_threshold(); "
            "serving_app(); print(before == embedded, gc.get_threshold()[0], "
            "gc.get_freeze_count() > 0)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    env["CHATPLUG_HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    from chatplug.server.app import GC_THRESHOLD

    assert done.stdout.split() == ["True", str(GC_THRESHOLD), "True"]


def test_pipelined_requests_are_answered_in_order(gateway: GatewayServer) -> None:
    """Two requests in one send: the second (queued behind the first) is answered after
    the first, whole, on the same connection."""
    body = json.dumps({"model": "GravityEngine", "messages": MESSAGES}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
               % (len(body), body))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request + request.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\n"
                                               b"Connection: close\r\n", 1))
        answer = b""
        while True:
            part = sock.recv(1 << 20)
            if not part:
                break
            answer += part
    replies = []
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        size = length(head + b"\r\n\r\n")
        replies.append(json.loads(rest[:size])["choices"][0]["message"]["content"])
        answer = rest[size:]
    assert replies == ["first reply", "stre" + "amed"]


@pytest.mark.parametrize(("complete", "written"), [(True, [HEAD]), (False, [])])
def test_close_writes_a_held_head_only_for_a_complete_response(
        complete: bool, written: list[bytes]) -> None:
    """A HEAD answered with Connection: close goes out; the head of an app that failed
    before its body is dropped: no answer rather than a head without its body."""
    transport, cycle = Recording(), Recording()
    cycle.response_complete = complete  # type: ignore[attr-defined]
    writer = OneWrite(transport)  # type: ignore[arg-type]
    writer.arm(cycle)
    writer.write(HEAD)
    writer.close()
    assert transport.writes == written
    assert transport.closed
