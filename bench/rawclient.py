"""A raw-socket client: the server's ceiling, i.e. what the bench server can deliver.

It speaks just enough HTTP/1.1 for the bench server (Content-Length and
chunked bodies, keep-alive), sends a pre-encoded request, and takes a piece's
text out of each event with ``bytes.find`` instead of a JSON parser.  Run in
its own process like the other clients, it shows how far above the clients'
figures the server is: if chatplug and the baseline are both well below this
ceiling, the server is not what limits them.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Generator
from urllib.parse import urlsplit

from bench import scenarios
from bench.clients import headers_for, request_body

__all__ = ["RawClient"]

RECV_SIZE = 256 * 1024
MAX_BUFFER = 128 * 1024 * 1024
TIMEOUT = 60.0
_CONTENT = b'"content":"'


class ResponseError(RuntimeError):
    """The server answered something the raw client does not accept."""


class RawClient:
    """One keep-alive connection; ``for_thread`` opens another one."""

    name = "raw"

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._base_url = base_url
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._host = f"{self._address[0]}:{self._address[1]}"
        self._headers = headers_for(base_url)
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    # -- the Client protocol -----------------------------------------------------

    def complete(self, scenario: str) -> str:
        self._send(scenario, False)
        chunked, length = self._head()
        if chunked:
            raise ResponseError("expected a Content-Length reply")
        self._fill(length)
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        text: str = json.loads(body)["choices"][0]["message"]["content"]
        return text

    def stream(self, scenario: str) -> Generator[str, None, None]:
        self._send(scenario, True)
        chunked, _ = self._head()
        if not chunked:
            raise ResponseError("expected a chunked event stream")
        return self._pieces()

    def for_thread(self) -> RawClient:
        return RawClient(self._base_url)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- HTTP ----------------------------------------------------------------------

    def _connection(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self._address, timeout=TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._buffer.clear()
        return self._sock

    def _send(self, scenario: str, stream: bool) -> None:
        body = json.dumps(request_body(scenario, stream)).encode()
        lines = [
            f"POST {scenarios.CHAT_PATH} HTTP/1.1",
            f"Host: {self._host}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{key}: {value}" for key, value in self._headers.items()),
        ]
        self._connection().sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _recv(self) -> None:
        if len(self._buffer) > MAX_BUFFER:
            raise ResponseError("reply larger than the raw client's buffer bound")
        data = self._connection().recv(RECV_SIZE)
        if not data:
            self.close()
            raise ResponseError("the server closed the connection")
        self._buffer += data

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            self._recv()

    def _head(self) -> tuple[bool, int]:
        """Read the status line and headers: ``(chunked, content_length)``."""
        end = self._buffer.find(b"\r\n\r\n")
        while end < 0:
            self._recv()
            end = self._buffer.find(b"\r\n\r\n")
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[:end + 4]
        status = int(lines[0].split(b" ", 2)[1])
        chunked, length = False, 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if status != 200:
            self._fill(length)
            raise ResponseError(f"HTTP {status}: {bytes(self._buffer[:length])[:200]!r}")
        return chunked, length

    def _chunks(self) -> Generator[bytes, None, None]:
        """The data of each HTTP chunk, until the last (empty) one."""
        buffer = self._buffer
        position = 0
        while True:
            line_end = buffer.find(b"\r\n", position)
            while line_end < 0:
                self._recv()
                line_end = buffer.find(b"\r\n", position)
            size = int(buffer[position:line_end].split(b";", 1)[0], 16)
            start = line_end + 2
            end = start + size
            self._fill(end + 2)
            if size == 0:
                del buffer[:end + 2]
                return
            yield bytes(buffer[start:end])
            position = end + 2
            if position > RECV_SIZE:
                del buffer[:position]
                position = 0

    def _pieces(self) -> Generator[str, None, None]:
        done = finished = False
        try:
            for data in self._chunks():
                if done:
                    continue  # drain to the last chunk so the connection can be reused
                if data.startswith(b"data: [DONE]"):
                    done = True
                    continue
                start = data.find(_CONTENT)
                if start >= 0:
                    start += len(_CONTENT)
                    yield data[start:data.find(b'"', start)].decode()
            finished = True
        finally:
            if not finished:
                self.close()  # stopped mid-reply: this connection cannot be reused
