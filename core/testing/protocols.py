"""The wire formats the scripted server speaks, written from a :class:`Script`.

- OpenAI chat completions: one JSON reply, or server-sent events ending in a
  ``finish_reason`` chunk and ``data: [DONE]``; errors as ``{"error": {...}}``.
- Ollama ``/api/chat``: one JSON object, or newline-delimited JSON objects
  ending in one with ``"done": true``; errors as ``{"error": "text"}``.

Both share the pacing (delays, holds, split writes) and the faults (dropped or
reset connections, error objects in the stream), so a scripted fault means the
same thing whatever the protocol.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from .script import Script

__all__ = ["ProtocolHandler"]

NDJSON = "application/x-ndjson"
#: Ollama stamps every object; a fixed instant keeps replies reproducible.
CREATED_AT = "2024-01-01T00:00:00.000000Z"
_CREDENTIAL_HEADERS = ("Authorization", "api-key", "x-api-key")


class ProtocolHandler(BaseHTTPRequestHandler):
    """Response writers shared by the scripted server's routes."""

    protocol_version = "HTTP/1.1"

    # -- plain replies ---------------------------------------------------------------

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def send_bytes(self, status: int, data: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def send_raw(self, script: Script) -> None:
        assert script.body is not None
        self.send_bytes(script.status, script.body, script.content_type or "application/json",
                        script.headers)

    def error_text(self, text: str, echo_key: bool) -> str:
        """``text``, plus the credential the request carried when asked to echo it."""
        if echo_key:
            for name in _CREDENTIAL_HEADERS:
                value = self.headers.get(name)
                if value:
                    return f"{text} (you sent {name}: {value})"
        return text

    # -- OpenAI chat completions -----------------------------------------------------

    def send_openai(self, script: Script, request: dict[str, Any]) -> None:
        if script.body is not None:
            self.send_raw(script)
        elif script.status >= 400:
            self.send_json(script.status, {"error": {"message": self.error_text(script.text,
                                                                                     script.echo_key),
                                                     "type": "server_error"}}, script.headers)
        elif script.stream if script.stream is not None else bool(request.get("stream")):
            self._send_events(script, str(request.get("model", "test-model")))
        else:
            self.send_json(200, _completion(script, request), script.headers)

    def _send_events(self, script: Script, model: str) -> None:
        self._start_stream(script, "text/event-stream; charset=utf-8")

        def event(payload: dict[str, Any]) -> None:
            nl = script.newline
            prefix = f": keep-alive{nl}" if script.comments else ""
            data = json.dumps(payload, ensure_ascii=False)
            self._write(script, f"{prefix}data: {data}{nl}{nl}".encode())

        if not self._send_pieces(script, lambda piece: event(_chunk(model, {"content": piece}))):
            return
        if script.error_event is not None:
            error = dict(script.error_event)
            if "message" in error:
                error["message"] = self.error_text(str(error["message"]), script.echo_key)
            event({"error": error})
        if script.finish:
            event(_chunk(model, {}, "stop"))
        if script.done:
            self._write(script, f"data: [DONE]{script.newline}{script.newline}".encode())
        self._end_stream(script)

    # -- Ollama /api/chat ------------------------------------------------------------

    def send_ollama(self, script: Script, request: dict[str, Any]) -> None:
        model = str(request.get("model", "test-model"))
        # Ollama streams unless the request says "stream": false.
        stream = request.get("stream", True) is not False
        if script.body is not None:
            self.send_raw(script)
        elif script.status >= 400:
            self.send_json(script.status, {"error": self.error_text(script.text, script.echo_key)},
                           script.headers)
        elif script.stream if script.stream is not None else stream:
            self._send_lines(script, model)
        else:
            reply = _ollama_object(model, "".join(script.reply_pieces()), done=True)
            self.send_json(200, reply, script.headers)

    def _send_lines(self, script: Script, model: str) -> None:
        self._start_stream(script, NDJSON)

        def line(payload: dict[str, Any]) -> None:
            blank = script.newline if script.comments else ""
            data = json.dumps(payload, ensure_ascii=False)
            self._write(script, f"{blank}{data}{script.newline}".encode())

        if not self._send_pieces(script, lambda piece: line(_ollama_object(model, piece))):
            return
        if script.error_event is not None:
            message = str(script.error_event.get("message", script.error_event))
            line({"error": self.error_text(message, script.echo_key)})
        if script.done:
            line(_ollama_object(model, "", done=True))
        self._end_stream(script)

    # -- streaming machinery ---------------------------------------------------------

    def _start_stream(self, script: Script, content_type: str) -> None:
        self.send_response(script.status)
        self.send_header("Content-Type", script.content_type or content_type)
        self.send_header("Cache-Control", "no-cache")
        if script.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        for key, value in script.headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _send_pieces(self, script: Script, send: Callable[[str], None]) -> bool:
        """Send the pieces with the script's pacing; False when the connection was dropped."""
        pieces = script.reply_pieces()
        for index, piece in enumerate(pieces):
            if script.drop_after is not None and index >= script.drop_after:
                self._drop(script.reset)
                return False
            if script.hold_after is not None and index == script.hold_after:
                time.sleep(script.hold)
            elif index and script.piece_delay:
                time.sleep(script.piece_delay)
            send(piece)
        if script.drop_after is not None and script.drop_after >= len(pieces):
            self._drop(script.reset)
            return False
        return True

    def _end_stream(self, script: Script) -> None:
        if script.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

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


def _chunk(model: str, delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
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


def _ollama_object(model: str, content: str, *, done: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": content},
        "done": done,
    }
    if done:
        payload.update(done_reason="stop", total_duration=1_000_000, eval_count=1)
    return payload


def ollama_tags() -> dict[str, Any]:
    """What ``GET /api/tags`` answers: the models the server pretends to have pulled."""
    return {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest",
                        "size": 0, "digest": "0" * 64}]}
