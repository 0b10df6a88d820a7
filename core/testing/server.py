"""A scripted chat-completions server on 127.0.0.1, for tests, demos and benchmarks.

It speaks the OpenAI chat-completions protocol on any path ending in
``/chat/completions`` (so both ``/v1/chat/completions`` and Next-Web's
``/api/openai/v1/chat/completions``), as one JSON reply or as server-sent
events, following the request's ``"stream"``.  With nothing scripted it
echoes the last user message, piece by piece.  Queue :class:`Script` replies
to control delays, chunking, line endings, split bytes, error events and
dropped connections.  It binds to loopback only and, given ``lifetime``,
stops by itself.

Run it for a demo: ``python -m chatplug.testing.server --port 8765``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["RecordedRequest", "Script", "ScriptedServer", "split_words"]

LOOPBACK = "127.0.0.1"


def split_words(text: str) -> list[str]:
    """Split text into word pieces that join back to it exactly ("Hello", " world")."""
    pieces: list[str] = []
    for index, word in enumerate(text.split(" ")):
        pieces.append(word if index == 0 else " " + word)
    return [p for p in pieces if p]


@dataclass
class Script:
    """One scripted reply.  Every field has a harmless default.

    :ivar text: the reply text (split into word pieces when streaming).
    :ivar pieces: explicit pieces, instead of ``text``.
    :ivar status: HTTP status; >= 400 sends an OpenAI-style error object.
    :ivar stream: ``None`` follows the request; ``True``/``False`` forces SSE/JSON.
    :ivar delay: seconds to wait before sending the headers.
    :ivar piece_delay: seconds between pieces.
    :ivar hold_after: after this many pieces, wait ``hold`` seconds before the rest.
    :ivar newline: line terminator of the event stream (``"\\n"``, ``"\\r\\n"``, ``"\\r"``).
    :ivar split: send the event stream in HTTP chunks of this many bytes (splits
        CRLF pairs and multi-byte characters across reads).
    :ivar comments: send a ``: keep-alive`` comment before each event.
    :ivar finish: send a final chunk with ``finish_reason: "stop"``.
    :ivar done: send ``data: [DONE]``.
    :ivar error_event: an ``{"error": ...}`` payload sent after the pieces.
    :ivar drop_after: close the connection abruptly after this many pieces.
    :ivar reset: with ``drop_after``, send a TCP reset instead of a close.
    :ivar chunked: use chunked transfer encoding (else close-delimited).
    :ivar body: raw bytes to send as the body instead of anything above.
    :ivar content_type: overrides the Content-Type.
    :ivar headers: extra response headers.
    """

    text: str = "Hello from the chatplug test server."
    pieces: list[str] | None = None
    status: int = 200
    stream: bool | None = None
    delay: float = 0.0
    piece_delay: float = 0.0
    hold_after: int | None = None
    hold: float = 0.0
    newline: str = "\n"
    split: int | None = None
    comments: bool = False
    finish: bool = True
    done: bool = True
    error_event: dict[str, Any] | None = None
    drop_after: int | None = None
    reset: bool = False
    chunked: bool = True
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def reply_pieces(self) -> list[str]:
        return list(self.pieces) if self.pieces is not None else split_words(self.text)


@dataclass(frozen=True)
class RecordedRequest:
    """What the server received: method, path, headers and body (parsed JSON if it was)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # an idle keep-alive connection ends by itself

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [
                {"id": "gpt-3.5-turbo-16k", "object": "model"},
            ]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        owner._record(RecordedRequest(
            "POST", self.path, {k: v for k, v in self.headers.items()}, body
        ))
        if not self.path.split("?", 1)[0].endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}",
                                            "type": "invalid_request_error"}})
            return
        if owner.api_key is not None and (
            self.headers.get("Authorization") != f"Bearer {owner.api_key}"
        ):
            self._send_json(401, {"error": {"message": "Incorrect API key provided.",
                                            "type": "invalid_request_error",
                                            "code": "invalid_api_key"}})
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._send_json(400, {"error": {"message": "body is not JSON"}})
            return
        script = owner._next_script(request)
        if script.delay:
            time.sleep(script.delay)
        if script.body is not None:
            self._send_raw(script)
        elif script.status >= 400:
            self._send_json(script.status, {"error": {"message": script.text,
                                                      "type": "server_error"}},
                            script.headers)
        elif script.stream if script.stream is not None else bool(request.get("stream")):
            self._send_events(script, request)
        else:
            self._send_json(200, _completion(script, request), script.headers)

    # -- writers ---------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_raw(self, script: Script) -> None:
        assert script.body is not None
        self.send_response(script.status)
        self.send_header("Content-Type", script.content_type or "application/json")
        self.send_header("Content-Length", str(len(script.body)))
        for key, value in script.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(script.body)

    def _send_events(self, script: Script, request: dict[str, Any]) -> None:
        self.send_response(script.status)
        self.send_header("Content-Type", script.content_type or "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if script.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        for key, value in script.headers.items():
            self.send_header(key, value)
        self.end_headers()
        model = str(request.get("model", "test-model"))
        pieces = script.reply_pieces()
        for index, piece in enumerate(pieces):
            if script.drop_after is not None and index >= script.drop_after:
                self._drop(script.reset)
                return
            if script.hold_after is not None and index == script.hold_after:
                time.sleep(script.hold)
            elif index and script.piece_delay:
                time.sleep(script.piece_delay)
            self._event(script, _chunk(model, {"content": piece}, None))
        if script.drop_after is not None and script.drop_after >= len(pieces):
            self._drop(script.reset)
            return
        if script.error_event is not None:
            self._event(script, {"error": script.error_event})
        if script.finish:
            self._event(script, _chunk(model, {}, "stop"))
        if script.done:
            self._write(script, f"data: [DONE]{script.newline}{script.newline}".encode())
        if script.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _event(self, script: Script, payload: dict[str, Any]) -> None:
        nl = script.newline
        prefix = f": keep-alive{nl}" if script.comments else ""
        data = json.dumps(payload, ensure_ascii=False)
        self._write(script, f"{prefix}data: {data}{nl}{nl}".encode())

    def _write(self, script: Script, data: bytes) -> None:
        step = script.split or len(data)
        for start in range(0, len(data), step):
            part = data[start:start + step]
            if script.chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            else:
                self.wfile.write(part)
            self.wfile.flush()

    def _drop(self, reset: bool) -> None:
        self.wfile.flush()
        self.close_connection = True
        if reset:
            # SO_LINGER 0 turns the close into a TCP reset.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        else:
            self.connection.shutdown(socket.SHUT_RDWR)


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(script: Script, request: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": str(request.get("model", "test-model")),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "".join(script.reply_pieces())},
            "finish_reason": "stop",
        }],
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (tests close streams early on purpose) is not an error.
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ScriptedServer:
    """The scripted server.  Use as a context manager, or ``start()``/``stop()``.

    :param port: 0 picks a free port.
    :param lifetime: seconds after which the server stops by itself (None: never).
    :param api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        lifetime: float | None = None,
        api_key: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.api_key = api_key
        self.verbose = verbose
        self.requests: list[RecordedRequest] = []
        self._scripts: deque[Script] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = _Server((LOOPBACK, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._lifetime = lifetime
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}"

    # -- scripting -------------------------------------------------------------------

    def add(self, script: Script | None = None, /, **fields: Any) -> Script:
        """Queue a reply for the next request (``Script`` fields as keywords)."""
        script = script or Script(**fields)
        with self._lock:
            self._scripts.append(script)
        return script

    def _next_script(self, request: dict[str, Any]) -> Script:
        with self._lock:
            if self._scripts:
                return self._scripts.popleft()
        return Script(text=_echo(request))

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"chatplug-test-server-{self.port}", daemon=True,
        )
        self._thread.start()
        if self._lifetime is not None:
            self._timer = threading.Timer(self._lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _echo(request: dict[str, Any]) -> str:
    messages = request.get("messages") or []
    last = next((m.get("content") for m in reversed(messages)
                 if isinstance(m, dict) and m.get("role") == "user"), None)
    return f"You said: {last}" if isinstance(last, str) else "Hello from the chatplug test server."


def _serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatplug.testing.server",
        description="Serve scripted chat completions on 127.0.0.1 (echoes the last user message).",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any)")
    parser.add_argument("--lifetime", type=float, default=None,
                        help="stop by itself after this many seconds")
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)
    server = ScriptedServer(args.port, lifetime=args.lifetime, verbose=args.verbose)
    print(f"chatplug test server on {server.url} (Ctrl-C stops it)", flush=True)
    server.start()
    try:
        while server._thread is not None and server._thread.is_alive():
            server._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve())
