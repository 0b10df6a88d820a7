"""A lean chat-completions server for the benchmark, on 127.0.0.1 only.

Why not ``chatplug.testing.server``?  That one is a ``ThreadingHTTPServer``
that builds every event with ``json.dumps`` and flushes it separately: right
for tests, but its cost per piece is of the same order as a client's, so it
would be the bottleneck and hide the clients' differences.  This server runs
in its own process on asyncio, keeps connections alive (HTTP/1.1), and sends
pre-encoded bodies: a whole 20,000-event stream leaves in one ``write``, one
event per HTTP chunk as real servers frame them.  Its ceiling is measured by
``bench.rawclient`` and printed next to the results.

Every loop is bounded: request head and body sizes, scenario sizes, the
number of connections, idle time per connection, and the server's lifetime.
It stops by itself after ``--lifetime`` seconds, on SIGTERM/SIGINT, or when
its standard input closes (its parent went away).

``GET /bench/stats`` returns how many connections it has accepted and
requests it has served, so a worker can tell whether a client reuses its
connections.

Run: ``python -m bench.server --port 0`` prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

from bench import scenarios

LOOPBACK = "127.0.0.1"
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 30.0
MAX_PIECES = 200_000
MAX_PIECE_LENGTH = 100_000
MAX_REPLY_CHARS = 64 * 1024 * 1024
MAX_HOLD_MS = 10_000
CACHE_SIZE = 32

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"
#: ``GET`` here answers ``{"connections": accepted so far, "requests": served so far}``.
STATS_PATH = scenarios.STATS_PATH.encode()
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 503: b"Service Unavailable"}


class BadScenario(ValueError):
    """The request asked for something this server will not build (answered 400)."""


def json_response(status: int, payload: Any) -> bytes:
    """A whole HTTP response with a JSON body and a Content-Length."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (status, _REASONS.get(status, b"Error"), len(body))
    )
    return head + body


def _event(delta: dict[str, str], finish: str | None) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": scenarios.MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def http_chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def piece_chunk(text: str) -> bytes:
    """One content event, framed as its own HTTP chunk."""
    return http_chunk(_event({"content": text}, None))


STREAM_TAIL = (
    http_chunk(_event({}, "stop")) + http_chunk(b"data: [DONE]\n\n") + LAST_CHUNK
)


def completion(text: str) -> bytes:
    """A whole non-streamed chat-completion response."""
    return json_response(200, {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": scenarios.MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
    })


def parse_scenario(body: bytes) -> tuple[str, int, int]:
    """``(kind, first, second)`` from the ``bench:...`` text in a request body."""
    start = body.find(scenarios.PREFIX.encode())
    if start < 0:
        raise BadScenario("no bench:<scenario> in the request")
    end = body.find(b'"', start)
    parts = body[start + len(scenarios.PREFIX):end].decode("ascii", "replace").split(":")
    if len(parts) != 3 or parts[0] not in ("reply", "hold"):
        raise BadScenario(f"unknown scenario {':'.join(parts)!r}")
    try:
        first, second = int(parts[1]), int(parts[2])
    except ValueError:
        raise BadScenario("scenario numbers must be integers") from None
    return parts[0], first, second


class Replies:
    """Pre-encoded responses, built once per scenario (a small LRU)."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple[str, int, int, bool], bytes] = OrderedDict()

    def reply(self, pieces: int, length: int, stream: bool) -> bytes:
        if not (0 < pieces <= MAX_PIECES and 0 < length <= MAX_PIECE_LENGTH
                and pieces * length <= MAX_REPLY_CHARS):
            raise BadScenario(f"reply:{pieces}:{length} is out of bounds")
        key = ("reply", pieces, length, stream)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        text = scenarios.piece_text(length)
        if stream:
            data = STREAM_HEAD + piece_chunk(text) * pieces + STREAM_TAIL
        else:
            data = completion(text * pieces)
        self._cache[key] = data
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return data


class BenchServer:
    """The asyncio server; one instance per process."""

    def __init__(self) -> None:
        self.replies = Replies()
        self.connections = 0
        self.accepted = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self.connections += 1
        self.accepted += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                asyncio.TimeoutError, ValueError):
            pass  # a client that went away or misbehaved: drop its connection
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except asyncio.IncompleteReadError:
            return False
        lines = head.split(b"\r\n")
        method, path, version = lines[0].split(b" ", 2)
        length = 0
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                keep_alive = value.strip().lower() != b"close"
        if not 0 <= length <= MAX_BODY:
            writer.write(json_response(400, {"error": {"message": "body too large"}}))
            return False
        body = await reader.readexactly(length) if length else b""
        self.requests += 1
        if method == b"GET" and path == STATS_PATH:
            writer.write(json_response(200, {"connections": self.accepted,
                                             "requests": self.requests}))
            await writer.drain()
            return keep_alive
        if method != b"POST" or not path.split(b"?", 1)[0].endswith(b"/chat/completions"):
            writer.write(json_response(404, {"error": {"message": "no such route"}}))
            await writer.drain()
            return keep_alive
        try:
            kind, first, second = parse_scenario(body)
            if kind == "hold":
                await self._hold(writer, first, second)
            else:
                stream = _STREAM_TRUE.search(body) is not None
                writer.write(self.replies.reply(first, second, stream))
        except BadScenario as exc:
            writer.write(json_response(400, {"error": {"message": str(exc)}}))
        await writer.drain()
        return keep_alive

    async def _hold(self, writer: asyncio.StreamWriter, milliseconds: int, pieces: int) -> None:
        """First piece (stamped just before it is written), a pause, then the rest."""
        if not (0 <= milliseconds <= MAX_HOLD_MS and 1 <= pieces <= MAX_PIECES):
            raise BadScenario(f"hold:{milliseconds}:{pieces} is out of bounds")
        rest = piece_chunk(scenarios.piece_text(8)) * (pieces - 1) + STREAM_TAIL
        stamp = f"{scenarios.STAMP_PREFIX}{time.monotonic():.6f}"
        # The transport sends at once when its buffer is empty (TCP_NODELAY is on),
        # so the stamp is taken a few microseconds before the bytes reach the kernel.
        writer.write(STREAM_HEAD + piece_chunk(stamp))
        await writer.drain()
        await asyncio.sleep(milliseconds / 1000)
        writer.write(rest)


async def serve(port: int, lifetime: float, announce: bool = True) -> BenchServer:
    """Serve until ``lifetime`` passes, a signal arrives or standard input closes."""
    bench = BenchServer()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def watch_stdin() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    server = await asyncio.start_server(
        bench.handle, LOOPBACK, port, limit=MAX_HEAD, backlog=512
    )
    async with server:
        bound = server.sockets[0].getsockname()[1]
        if announce:
            print(f"PORT {bound}", flush=True)
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), lifetime)
    return bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--lifetime", type=float, default=1800.0,
                        help="seconds after which the server stops by itself")
    args = parser.parse_args(argv)
    bench = asyncio.run(serve(args.port, min(args.lifetime, 4 * 3600.0)))
    print(f"bench server: served {bench.requests} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
