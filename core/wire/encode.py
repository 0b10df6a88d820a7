"""The server side of OpenAI's chat-completions stream: ``chat.completion.chunk`` events.

:class:`ChunkEncoder` turns what a provider yields (``str`` and the events of
:mod:`chatplug.events`) into the server-sent events an OpenAI client parses:
the role first, then content, tool-call, reasoning, refusal and annotation deltas
and logprobs, each with its choice's ``index`` (a request with ``n`` > 1 gets every
choice), the finish chunk, the usage chunk when the request asked for it
(``stream_options.include_usage``), and ``data: [DONE]``.  An error after the
stream started is one ``data: {"error": {...}}`` event and no ``[DONE]``, so
no client takes a cut reply for a whole one.  The non-streamed body is
:func:`chatplug.wire.openai.completion_body`.

Plain data in, bytes out: no pydantic, no requests, no web framework.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

from ..events import (
    Annotations,
    Choice,
    Finish,
    Logprobs,
    Meta,
    Reasoning,
    ReasoningSignature,
    RedactedReasoning,
    Refusal,
    ToolCallDelta,
    Usage,
)

__all__ = ["DONE", "ChunkEncoder", "InBandError", "dumps", "sse_event"]

#: The last event of a stream that ended well.
DONE = b"data: [DONE]\n\n"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: JSON text of a value, compact, not ASCII-escaped: what every server-side encoder writes.
dumps = _dumps


def sse_event(payload: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``payload`` as JSON (``data: {...}\\n\\n``)."""
    return b"data: " + _dumps(payload).encode() + b"\n\n"


class ChunkEncoder:
    """Encodes one streamed reply, event by event.

    :param id: the completion id (a ``Meta`` event before the first chunk replaces it).
    :param model: the model to report (a ``Meta`` event's model replaces it).
    :param include_usage: every chunk carries ``"usage": null`` and the stream ends
        with a usage chunk (``choices: []``), as OpenAI does when asked.
    """

    __slots__ = ("_content_head", "_created", "_finished", "_include_usage", "_others",
                 "_started", "_tail", "id", "model", "service_tier", "system_fingerprint",
                 "usage")

    def __init__(self, *, id: str | None = None, model: str, include_usage: bool = False,
                 created: int | None = None) -> None:
        self.id = id or f"chatcmpl-{os.urandom(12).hex()}"
        self.model = model
        self.usage: Usage | None = None
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._started = False
        self._finished = False
        self._content_head = b""
        self._tail = b""
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        #: The choices after the first seen so far (n > 1), and whether each finished.
        self._others: dict[int, bool] = {}

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk",
                                 "created": self._created, "model": self.model,
                                 "system_fingerprint": self.system_fingerprint,
                                 "choices": choices}
        if self.service_tier is not None:
            chunk["service_tier"] = self.service_tier
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0,
               logprobs: dict[str, Any] | None = None) -> bytes:
        return sse_event(self._envelope([{"index": index, "delta": delta, "logprobs": logprobs,
                                          "finish_reason": finish_reason}]))

    def start(self) -> bytes:
        """The first chunk: the assistant role (sent once, before any delta)."""
        self._started = True
        # Content chunks are the hot path: everything but the text is encoded once.
        marker = "\x00"
        template = _dumps(self._envelope([{"index": 0, "delta": {"content": marker},
                                           "logprobs": None, "finish_reason": None}]))
        head, _, tail = template.partition(_dumps(marker))
        self._content_head = b"data: " + head.encode()
        self._tail = tail.encode() + b"\n\n"
        return self._chunk({"role": "assistant", "content": ""})

    def content(self, text: str) -> bytes:
        """A content delta."""
        return self._content_head + _dumps(text).encode() + self._tail

    def encode(self, item: object) -> bytes:
        """The bytes for one item a provider yielded (``b""`` for what sends nothing now).

        ``Meta`` before :meth:`start` sets the id, model, fingerprint and tier; ``Usage``
        is kept for :meth:`end`; a :class:`~chatplug.events.Choice` is sent with its index.
        """
        if type(item) is str:
            return self.content(item) if item else b""
        if isinstance(item, Choice):
            return self._other(item)
        if isinstance(item, Finish):
            self._finished = True
        elif isinstance(item, Usage):
            self.usage = item
            return b""
        elif isinstance(item, Meta):
            if not self._started:
                self.id = item.id or self.id
                self.model = item.model or self.model
                self.system_fingerprint = item.system_fingerprint or self.system_fingerprint
                self.service_tier = item.service_tier or self.service_tier
            return b""
        return self._delta(item, 0)

    def _other(self, choice: Choice) -> bytes:
        """An item of a choice after the first: the assistant role in its first chunk."""
        index, item = choice.index, choice.item
        first = index not in self._others
        if first:
            self._others[index] = False
        if isinstance(item, Finish):
            self._others[index] = True
        if type(item) is str:
            if not item:
                return b""
            return self._chunk({"role": "assistant", "content": item} if first
                               else {"content": item}, index=index)
        out = self._chunk({"role": "assistant", "content": ""}, index=index) if first else b""
        return out + self._delta(item, index)

    def _delta(self, item: object, index: int) -> bytes:
        """The chunk of one event of choice ``index``."""
        if isinstance(item, ToolCallDelta):
            call: dict[str, Any] = {"index": item.index}
            if item.id is not None:
                call["id"] = item.id
                call["type"] = "function"
            function: dict[str, Any] = {"arguments": item.arguments}
            if item.name is not None:
                function = {"name": item.name, **function}
            call["function"] = function
            return self._chunk({"tool_calls": [call]}, index=index)
        if isinstance(item, Reasoning):
            return self._chunk({"reasoning_content": item.text}, index=index) \
                if item.text else b""
        if isinstance(item, Refusal):
            return self._chunk({"refusal": item.text}, index=index) if item.text else b""
        if isinstance(item, Annotations):
            return self._chunk({"annotations": item.items}, index=index)
        if isinstance(item, Logprobs):
            return self._chunk({}, index=index,
                               logprobs={"content": item.content, "refusal": item.refusal})
        if isinstance(item, Finish):
            return self._chunk({}, item.reason, index=index)
        if isinstance(item, (ReasoningSignature, RedactedReasoning, Usage, Meta)):
            return b""  # chat completions' chunks have no place for them (per choice)
        raise TypeError(f"not a text piece or a chatplug event: {type(item).__name__}")

    def end(self) -> bytes:
        """What ends a stream that went well: a finish chunk (``"stop"``) if none was sent,
        the usage chunk if asked for and known, then ``[DONE]``.

        A reply that ended well without a reason is a whole one, as in
        :func:`chatplug.wire.openai.completion_body`.
        """
        last = b"" if self._finished else self._chunk({}, "stop")
        for index, finished in self._others.items():
            if not finished:
                last += self._chunk({}, "stop", index=index)
        if self._include_usage and self.usage is not None:
            chunk = self._envelope([])
            chunk["usage"] = self.usage.as_dict()
            last += sse_event(chunk)
        return last + DONE

    @staticmethod
    def error(envelope: Mapping[str, Any]) -> bytes:
        """An in-band error event (``data: {"error": {...}}``); the stream ends after it."""
        return sse_event(envelope)

    def failure(self, error: InBandError) -> bytes:
        """The in-band form of a failure after the stream began (no ``[DONE]`` follows)."""
        return self.error(error.body)


class InBandError(Protocol):
    """A failure a committed stream reports in its own wire's form (the gateway's
    ``GatewayError``): OpenAI's envelope, Anthropic's, and the code and message."""

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def anthropic_body(self) -> dict[str, Any]: ...

    code: str
    message: str
