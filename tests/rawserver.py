"""A raw TCP server on 127.0.0.1 for faults an HTTP library would not let us produce:
silence, stalls, resets, cut chunked bodies, byte-exact replies.

Each accepted connection is handed to the next queued behaviour (a function of
the connected socket and the request bytes).  Every socket has a timeout,
the accept loop is bounded in time, and the server stops by itself.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType

Behaviour = Callable[[socket.socket, bytes], None]


def read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def response_head(status: str = "200 OK", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(text: str | None = None, finish: str | None = None) -> bytes:
    """One OpenAI chat-completion chunk as an SSE event."""
    delta = {"content": text} if text is not None else {}
    payload = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


#: The head of a chunked event stream.
SSE_HEAD = response_head(Content_Type="text/event-stream", Transfer_Encoding="chunked")
#: The end of a complete chunked event stream.
SSE_END = chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def reset(conn: socket.socket) -> None:
    """Close with a TCP reset instead of a clean FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class RawServer:
    """``with RawServer() as server: server.then(behaviour); ... server.url``"""

    def __init__(self, lifetime: float = 60.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self._behaviours: deque[Behaviour] = deque()
        self._stop = threading.Event()
        self._lifetime = lifetime
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def then(self, behaviour: Behaviour, times: int = 1) -> RawServer:
        for _ in range(times):
            self._behaviours.append(behaviour)
        return self

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, daemon=True, name="rawserver")
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        deadline = time.monotonic() + self._lifetime
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            conn.settimeout(10)
            with self._lock:
                self._connections.append(conn)
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            while not self._stop.is_set():
                request = read_request(conn)
                if not request:
                    return
                self.requests.append(request)
                behaviour = self._behaviours.popleft() if self._behaviours else _not_found
                behaviour(conn, request)
                if conn.fileno() == -1:
                    return


def _not_found(conn: socket.socket, request: bytes) -> None:
    body = b'{"error": {"message": "nothing scripted"}}'
    conn.sendall(response_head("404 Not Found", Content_Type="application/json",
                               Content_Length=str(len(body))) + body)


def sleep_until_stopped(server: RawServer, seconds: float) -> None:
    server._stop.wait(seconds)
