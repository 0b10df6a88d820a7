"""The wire formats the scripted server speaks, written from a :class:`Script`.

- OpenAI chat completions: one JSON reply, or server-sent events ending in a
  ``finish_reason`` chunk, a usage chunk (when scripted) and ``data: [DONE]``;
  reasoning as ``reasoning_content``, tool calls whole or in fragments, refusals,
  annotations, several choices (``n``) each under its ``index``, logprobs when asked;
  errors as OpenAI's ``{"error": {"message", "type", "code", "param"}}``.
- Ollama ``/api/chat``: one JSON object, or newline-delimited JSON objects
  ending in one with ``"done": true`` (``done_reason``, ``prompt_eval_count``,
  ``eval_count``); reasoning as ``message.thinking``, tool calls with the
  arguments as an object; errors as ``{"error": "text"}``.

- Anthropic's Messages API (``POST /v1/messages``): see :mod:`.anthropic`.
- Google's Gemini API (``POST .../models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse``): see :mod:`.gemini`.

All share the pacing (delays, holds, split writes) and the faults (dropped or
reset connections, error objects in the stream), so a scripted fault means the
same thing whatever the protocol.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar

from . import anthropic, gemini
from .script import Script, split_words

__all__ = ["ProtocolHandler"]

NDJSON = "application/x-ndjson"
#: Ollama stamps every object; a fixed instant keeps replies reproducible.
CREATED_AT = "2024-01-01T00:00:00.000000Z"
_CREDENTIAL_HEADERS = ("Authorization", "api-key", "x-api-key")
_T = TypeVar("_T")


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

    def error_event(self, script: Script) -> dict[str, Any]:
        """The script's in-stream error object, its message echoing the key if asked."""
        error = dict(script.error_event or {})
        if "message" in error:
            error["message"] = self.error_text(str(error["message"]), script.echo_key)
        return error

    # -- OpenAI chat completions -----------------------------------------------------

    def send_openai(self, script: Script, request: dict[str, Any]) -> None:
        if script.body is not None:
            self.send_raw(script)
        elif script.status >= 400:
            self.send_json(script.status, {"error": {
                "message": self.error_text(script.text, script.echo_key),
                "type": "server_error", **(script.error or {})}}, script.headers)
        elif script.stream if script.stream is not None else bool(request.get("stream")):
            self._send_events(script, str(request.get("model", "test-model")), request)
        else:
            self.send_json(200, _completion(script, request), script.headers)

    def _send_events(self, script: Script, model: str, request: dict[str, Any]) -> None:
        self._start_stream(script, "text/event-stream; charset=utf-8")
        model = script.model or model
        top = _top_logprobs(script, request)

        def event(payload: dict[str, Any]) -> None:
            nl = script.newline
            prefix = f": keep-alive{nl}" if script.comments else ""
            data = json.dumps(payload, ensure_ascii=False)
            self._write(script, f"{prefix}data: {data}{nl}{nl}".encode())

        def send(piece: tuple[int, dict[str, Any]]) -> None:
            index, delta = piece
            text = delta.get("content")
            logprobs = None
            if top is not None and isinstance(text, str):
                logprobs = {"content": [_logprob(text, top)], "refusal": None}
            event(_chunk(script, model, delta, index=index, logprobs=logprobs))

        deltas: list[tuple[int, dict[str, Any]]] = [
            *((0, {"reasoning_content": piece}) for piece in script.reasoning_pieces()),
            *((0, {"content": piece}) for piece in script.reply_pieces()),
            *((0, {"refusal": piece}) for piece in split_words(script.refusal or "")),
            *((0, {"tool_calls": [fragment]}) for fragment in script.tool_call_fragments()),
        ]
        if script.annotations:
            deltas.append((0, {"annotations": script.annotations}))
        others = _other_choices(script, request)
        for index, text in enumerate(others, 1):
            deltas.extend((index, {"content": piece}) for piece in split_words(text))
        if not self._send_pieces(script, deltas, send):
            return
        if script.error_event is not None:
            error = self.error_event(script)
            event({"error": error})
        if script.finish:
            event(_chunk(script, model, {}, script.reason()))
            for index in range(1, len(others) + 1):
                event(_chunk(script, model, {}, "stop", index=index))
        if script.usage is not None:
            event({**_chunk(script, model, {}), "choices": [], "usage": script.usage})
        if script.done:
            self._write(script, f"data: [DONE]{script.newline}{script.newline}".encode())
        self._end_stream(script)

    # -- Anthropic /v1/messages ------------------------------------------------------

    def send_anthropic(self, script: Script, request: dict[str, Any]) -> None:
        model = script.model or str(request.get("model", "test-model"))
        if script.body is not None:
            self.send_raw(script)
        elif script.status >= 400:
            kind = anthropic.ERROR_TYPES.get(script.status, "api_error")
            self.send_json(script.status, {"type": "error", "error": {
                "type": kind, "message": self.error_text(script.text, script.echo_key)}},
                {"request-id": "req_test", **script.headers})
        elif script.stream if script.stream is not None else bool(request.get("stream")):
            self._send_anthropic_events(script, model)
        else:
            self.send_json(200, anthropic.message(script, model), script.headers)

    def _send_anthropic_events(self, script: Script, model: str) -> None:
        self._start_stream(script, "text/event-stream; charset=utf-8")
        nl = script.newline

        def event(item: tuple[str, dict[str, Any]]) -> None:
            prefix = f"event: ping{nl}data: {{\"type\": \"ping\"}}{nl}{nl}" \
                if script.comments else ""
            data = json.dumps(item[1], ensure_ascii=False)
            self._write(script, f"{prefix}event: {item[0]}{nl}data: {data}{nl}{nl}".encode())

        def group(items: list[tuple[str, dict[str, Any]]]) -> None:
            for item in items:
                event(item)

        opening, pieces, closing = anthropic.events(script, model)
        group(opening)
        if not self._send_pieces(script, pieces, group):
            return
        if script.error_event is not None:
            error = self.error_event(script)
            event(("error", {"type": "error", "error": error}))
        else:
            group(closing)
        self._end_stream(script)

    # -- Gemini generateContent ------------------------------------------------------

    def send_gemini(self, script: Script, model: str, stream: bool) -> None:
        model = script.model or model
        if script.body is not None:
            self.send_raw(script)
        elif script.status >= 400:
            self.send_json(script.status, {"error": {
                "code": script.status,
                "message": self.error_text(script.text, script.echo_key),
                "status": gemini.STATUSES.get(script.status, "UNKNOWN")}}, script.headers)
        elif script.stream if script.stream is not None else stream:
            self._start_stream(script, "text/event-stream")
            nl = script.newline

            def event(payload: dict[str, Any]) -> None:
                prefix = f": keep-alive{nl}" if script.comments else ""
                data = json.dumps(payload, ensure_ascii=False)
                self._write(script, f"{prefix}data: {data}{nl}{nl}".encode())

            chunks, last = gemini.pieces(script, model)
            if not self._send_pieces(script, chunks, event):
                return
            if script.error_event is not None:
                error = self.error_event(script)
                event({"error": error})
            elif script.finish:
                event(last)
            self._end_stream(script)
        else:
            self.send_json(200, gemini.response(script, model), script.headers)

    # -- Ollama /api/chat ------------------------------------------------------------

    def send_ollama(self, script: Script, request: dict[str, Any]) -> None:
        model = script.model or str(request.get("model", "test-model"))
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
            reply = _ollama_object(model, "".join(script.reply_pieces()), done=True,
                                   script=script, thinking=script.reasoning or None,
                                   tool_calls=_ollama_calls(script))
            self.send_json(200, reply, script.headers)

    def _send_lines(self, script: Script, model: str) -> None:
        self._start_stream(script, NDJSON)

        def line(payload: dict[str, Any]) -> None:
            blank = script.newline if script.comments else ""
            data = json.dumps(payload, ensure_ascii=False)
            self._write(script, f"{blank}{data}{script.newline}".encode())

        objects = [
            *(_ollama_object(model, "", thinking=piece) for piece in script.reasoning_pieces()),
            *(_ollama_object(model, piece) for piece in script.reply_pieces()),
        ]
        calls = _ollama_calls(script)
        if calls:
            objects.append(_ollama_object(model, "", tool_calls=calls))
        if not self._send_pieces(script, objects, line):
            return
        if script.error_event is not None:
            message = str(script.error_event.get("message", script.error_event))
            line({"error": self.error_text(message, script.echo_key)})
        if script.done:
            line(_ollama_object(model, "", done=True, script=script))
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

    def _send_pieces(self, script: Script, pieces: list[_T], send: Callable[[_T], None]) -> bool:
        """Send the pieces with the script's pacing; False when the connection was dropped."""
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


def _chunk(script: Script, model: str, delta: dict[str, Any], finish: str | None = None, *,
           index: int = 0, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": script.id,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "system_fingerprint": script.system_fingerprint,
        "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                     "finish_reason": finish}],
    }
    if script.service_tier is not None:
        chunk["service_tier"] = script.service_tier
    return chunk


def _other_choices(script: Script, request: dict[str, Any]) -> list[str]:
    """The texts of the choices after the first: scripted, else ``n - 1`` copies."""
    if script.choices is not None:
        return list(script.choices)
    n = request.get("n")
    return ["".join(script.reply_pieces())] * (n - 1) if type(n) is int and n > 1 else []


def _top_logprobs(script: Script, request: dict[str, Any]) -> int | None:
    """How many alternatives each logprobs entry lists; ``None``: send no logprobs."""
    wanted = script.logprobs if script.logprobs is not None else request.get("logprobs") is True
    if not wanted:
        return None
    top = request.get("top_logprobs")
    return top if type(top) is int and top >= 0 else 0


def _logprob(token: str, top: int) -> dict[str, Any]:
    """A made-up but well-formed logprobs entry for ``token``: the token itself first."""
    data = list(token.encode())
    alternatives = [{"token": token, "logprob": -0.25, "bytes": data}]
    alternatives += [{"token": f"alt{rank}", "logprob": -2.0 - rank, "bytes": list(
        f"alt{rank}".encode())} for rank in range(1, top)]
    return {"token": token, "logprob": -0.25, "bytes": data, "top_logprobs": alternatives[:top]}


def _completion(script: Script, request: dict[str, Any]) -> dict[str, Any]:
    top = _top_logprobs(script, request)

    def logprobs(text: str) -> dict[str, Any] | None:
        if top is None:
            return None
        return {"content": [_logprob(piece, top) for piece in split_words(text)] or None,
                "refusal": None}

    text = "".join(script.reply_pieces())
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if (script.tool_calls or script.refusal) and not text else text}
    if script.refusal is not None:
        message["refusal"] = script.refusal
    if script.annotations:
        message["annotations"] = script.annotations
    if script.reasoning:
        message["reasoning_content"] = script.reasoning
    if script.tool_calls:
        message["tool_calls"] = script.tool_calls
    choices = [{"index": 0, "message": message, "logprobs": logprobs(text),
                "finish_reason": script.reason()}]
    choices += [{"index": index, "message": {"role": "assistant", "content": other},
                 "logprobs": logprobs(other), "finish_reason": "stop"}
                for index, other in enumerate(_other_choices(script, request), 1)]
    reply: dict[str, Any] = {
        "id": script.id,
        "object": "chat.completion",
        "created": 0,
        "model": script.model or str(request.get("model", "test-model")),
        "system_fingerprint": script.system_fingerprint,
        "choices": choices,
    }
    if script.service_tier is not None:
        reply["service_tier"] = script.service_tier
    if script.usage is not None:
        reply["usage"] = script.usage
    return reply


def _ollama_calls(script: Script) -> list[dict[str, Any]]:
    """The script's tool calls as Ollama sends them: no id, the arguments an object."""
    calls = []
    for call in script.tool_calls or ():
        function = call.get("function", {})
        arguments = function.get("arguments", "{}")
        with contextlib.suppress(ValueError, TypeError):
            arguments = json.loads(arguments)
        calls.append({"function": {"name": function.get("name"), "arguments": arguments}})
    return calls


def _ollama_object(model: str, content: str, *, done: bool = False,
                   script: Script | None = None, thinking: str | None = None,
                   tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    payload: dict[str, Any] = {
        "model": model,
        "created_at": CREATED_AT,
        "message": message,
        "done": done,
    }
    if done:
        usage = (script.usage if script is not None else None) or {}
        payload.update(done_reason=script.reason() if script is not None else "stop",
                       total_duration=1_000_000,
                       prompt_eval_count=usage.get("prompt_tokens", 1),
                       eval_count=usage.get("completion_tokens", 1))
    return payload


def ollama_tags() -> dict[str, Any]:
    """What ``GET /api/tags`` answers: the models the server pretends to have pulled."""
    return {"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest",
                        "size": 0, "digest": "0" * 64}]}
