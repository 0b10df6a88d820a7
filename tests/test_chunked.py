"""The sync transport's chunked body reader (transport/chunked.py), over real sockets:
what has arrived is handed on at once with its framing removed, whatever the chunk
sizes, extensions, trailers and read boundaries; broken framing is an error; the
connection is reused after a complete body and only then."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatplug import StreamInterruptedError
from chatplug.http import Transport

from .rawserver import RawServer, chunk, read_request, response_head

HEAD = response_head(Content_Type="application/octet-stream", Transfer_Encoding="chunked")


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer(lifetime=60) as server:
        yield server


@pytest.fixture
def transport() -> Iterator[Transport]:
    transport = Transport(read_timeout=5)
    yield transport
    transport.close()


def body_of(transport: Transport, url: str) -> list[bytes]:
    http = transport.client(provider="test", deadline=time.monotonic() + 20)
    with http.request("GET", url) as reply:
        return list(reply.iter_bytes())


def connections(server: RawServer) -> int:
    return len(server._connections)


def test_chunks_that_arrived_together_are_handed_on_together(
        raw: RawServer, transport: Transport) -> None:
    events = [b"data: %d\n\n" % i for i in range(40)]

    def send(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + b"".join(chunk(e) for e in events) + b"0\r\n\r\n")

    raw.then(send)
    pieces = body_of(transport, raw.url)
    assert b"".join(pieces) == b"".join(events)
    # urllib3's read_chunked hands on one chunk per iteration: 40 here.
    assert len(pieces) <= 4


def test_a_chunk_is_handed_on_as_far_as_it_arrived(raw: RawServer,
                                                   transport: Transport) -> None:
    def send(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + b"10\r\nfirst half")
        time.sleep(1.0)
        conn.sendall(b"!!!!!!\r\n0\r\n\r\n")

    raw.then(send)
    http = transport.client(provider="test", deadline=time.monotonic() + 20)
    started = time.monotonic()
    with http.request("GET", raw.url) as reply:
        pieces = reply.iter_bytes()
        assert next(pieces) == b"first half"
        assert time.monotonic() - started < 0.8, "the start of a chunk waited for its end"
        assert b"".join(pieces) == b"!!!!!!"


framings = st.lists(
    st.tuples(st.binary(min_size=1, max_size=300),
              st.sampled_from([b"", b";name=value", b"; ext"]),
              st.sampled_from(["x", "X"])),
    min_size=0, max_size=12)
trailers = st.sampled_from([b"", b"Checksum: 1\r\n", b"A: 1\r\nB: 2\r\n"])
splits = st.lists(st.integers(min_value=1, max_value=50), max_size=30)


@settings(max_examples=40, deadline=None)
@given(framing=framings, trailer=trailers, sizes=splits)
def test_property_any_framing_split_anyhow_gives_the_body_and_reuses_the_connection(
        framing: list[tuple[bytes, bytes, str]], trailer: bytes, sizes: list[int]) -> None:
    wire = b"".join(format(len(data), spelling).encode() + extension + b"\r\n" + data + b"\r\n"
                    for data, extension, spelling in framing) + b"0\r\n" + trailer + b"\r\n"
    expected = b"".join(data for data, _, _ in framing)

    def send(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD)
        position = 0
        for size in sizes:
            conn.sendall(wire[position:position + size])
            position += size
        conn.sendall(wire[position:])

    transport = Transport(read_timeout=5)
    with RawServer(lifetime=30) as server:
        server.then(send, times=2)
        try:
            assert b"".join(body_of(transport, server.url)) == expected
            assert b"".join(body_of(transport, server.url)) == expected
        finally:
            transport.close()
        assert connections(server) == 1, "a complete body's connection was not reused"


@pytest.mark.parametrize("wire", [
    b"zz\r\ndata\r\n0\r\n\r\n",  # a size that is not hexadecimal
    b"2\r\ndata\r\n0\r\n\r\n",  # a chunk longer than it said
    b"-4\r\ndata\r\n0\r\n\r\n",  # a negative size
    b"4\r\ndata\r\n",  # the terminating chunk never comes
])
def test_broken_framing_is_an_interrupted_reply(raw: RawServer, transport: Transport,
                                                wire: bytes) -> None:
    def send(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + wire)
        conn.close()

    raw.then(send)
    with pytest.raises(StreamInterruptedError):
        body_of(transport, raw.url)


def test_bytes_after_the_body_close_the_connection(raw: RawServer,
                                                   transport: Transport) -> None:
    def send(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + chunk(b"body") + b"0\r\n\r\nHTTP/1.1 200 OK\r\n")

    def send_again(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + chunk(b"again") + b"0\r\n\r\n")

    raw.then(send).then(send_again)
    assert b"".join(body_of(transport, raw.url)) == b"body"
    # Those bytes must not be read as the next reply's start.
    assert b"".join(body_of(transport, raw.url)) == b"again"
    assert connections(raw) == 2


def test_a_trailer_sent_after_a_pause_is_read(raw: RawServer, transport: Transport) -> None:
    def send(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + chunk(b"body") + b"0\r\n")
        time.sleep(0.2)
        conn.sendall(b"Trailer: 1\r\n\r\n")
        read_request(conn)  # the second request comes on this connection
        conn.sendall(HEAD + chunk(b"again") + b"0\r\n\r\n")

    raw.then(send)
    assert b"".join(body_of(transport, raw.url)) == b"body"
    assert b"".join(body_of(transport, raw.url)) == b"again"
    assert connections(raw) == 1
