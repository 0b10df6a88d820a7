"""Newline-delimited JSON streams (NDJSON / JSON Lines), once for every provider that speaks them.

Ollama's ``/api/chat``, and many other native APIs, stream one JSON object per
line and mark the last one (``"done": true``).  The protocol-specific parts
(the request body, where the text is, which object ends the stream) stay in
the provider; everything else is here::

    from chatplug.wire import ndjson

    @hookimpl
    def create_completion(model, messages, stream, url, http):
        yield from ndjson.chat(
            http, f"{url}/api/chat", {"model": model, "messages": messages, "stream": stream},
            text=lambda obj: obj.get("message", {}).get("content"),
            is_last=lambda obj: obj.get("done") is True,
        )

A provider whose objects carry more than text passes ``events=``, a function
that returns the :mod:`chatplug.events` of one object.  :class:`OllamaReply`
knows Ollama's ``/api/chat`` objects: ``model`` as :class:`~chatplug.Meta`,
``message.thinking`` as :class:`~chatplug.Reasoning`, ``message.tool_calls``
(whole calls, arguments as an object) as :class:`~chatplug.ToolCallDelta` with
the arguments as JSON text, ``done_reason`` as :class:`~chatplug.Finish` and
``prompt_eval_count``/``eval_count`` as :class:`~chatplug.Usage`.

Lines end at LF, CRLF or CR, also when a terminator or a multi-byte character
is split across network reads (:class:`chatplug.sse.LineSplitter`); blank
lines are skipped (keep-alives).  An object is handed on the moment its line
is complete.  As with server-sent events, a stream is whole only when its
last object arrived: a clean close before it raises
:class:`StreamInterruptedError`, never passes as a complete reply; so does an
``{"error": ...}`` line after content arrived (the reply is incomplete).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from ..errors import ProviderResponseError, StreamInterruptedError
from ..events import Finish, Meta, Reasoning, ToolCallDelta, Usage
from ..transport.pending import Pending, text_only
from . import request_headers, token_count
from .sse import LineSplitter

if TYPE_CHECKING:
    from ..events import Event
    from ..transport.client import HTTPClient, Reply

__all__ = ["MAX_LINE_BYTES", "OllamaReply", "chat", "iter_objects", "parse_line",
           "read_reply", "stream_events", "stream_text"]

#: The longest line accepted; a server that never ends its line cannot exhaust memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
_EXCERPT = 120
#: What the bytes must be when they are not NDJSON, said once for every error.
_HINT = ("Check the provider's URL setting: it may point at a web page or at an API "
         "that does not stream newline-delimited JSON.")

#: Finds the text of one object (``None`` or ``""``: this object carries none).
TextOf = Callable[[Mapping[str, Any]], Any]
#: Tells whether an object is the one that completes the stream.
IsLast = Callable[[Mapping[str, Any]], bool]
#: The events one object carries (``Meta``, ``Usage``, ``Finish``, ...), in order.
EventsOf = Callable[[Mapping[str, Any]], "Iterable[Event]"]


def _excerpt(data: bytes | str, secret: str | None) -> str:
    # Imported here: only the error path needs it.
    from .errors import excerpt

    return repr(excerpt(data, secret, _EXCERPT))


def _check(payload: Any, data: bytes | str, secret: str | None,
           received: int | None = None) -> dict[str, Any]:
    """``payload`` if it is an object that reports no error.

    :param received: characters of text delivered before this object, when any
        content was: an error then means an incomplete reply.
    """
    if not isinstance(payload, dict):
        raise ProviderResponseError(
            f"the reply is JSON but not an object: {_excerpt(data, secret)}. {_HINT}"
        )
    if "error" in payload or "detail" in payload:
        from .errors import error_of, reported_error

        error = error_of(payload)
        if error is not None:
            raise reported_error(error, payload, where="its reply", secret=secret,
                                 received=received)
    return payload


def parse_line(line: bytes, *, secret: str | None = None) -> dict[str, Any]:
    """Parse one line into a JSON object.

    :param secret: a key to mask should the server echo it into an error text.
    :raises ProviderResponseError: the line is not UTF-8 JSON, not an object, or
        an ``{"error": ...}`` object (the server reporting a failure).
    """
    return _check(_loads(line, secret), line, secret)


def _loads(line: bytes, secret: str | None) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        # UnicodeDecodeError is a ValueError; absurd nesting is a RecursionError.
        raise ProviderResponseError(
            f"a line of the reply is not JSON: {_excerpt(line, secret)}. {_HINT}"
        ) from None


def _parses(line: bytes) -> bool:
    try:
        json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return True


class _Cut(Exception):
    """The bytes ended too early; ``args[0]`` says where.  Never leaves this module."""


def _decode(chunks: Iterable[bytes], is_last: IsLast | None,
            secret: str | None) -> Iterator[tuple[Any, bytes]]:
    """``(object, its line)`` per line, not yet checked for an error (the caller knows
    whether content arrived before it)."""
    splitter = LineSplitter()
    # Bytes of the unterminated line, counted here: LineSplitter.pending joins its
    # buffered reads on every access, which would make a long line quadratic.
    open_line = 0
    for chunk in chunks:
        if type(chunk) is not bytes:  # a native reply's Pending, for the call's driver
            yield chunk  # type: ignore[misc]
            continue
        lines = splitter.feed(chunk)
        if lines:
            open_line = len(chunk) - 1 - max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        else:
            open_line += len(chunk)
        if open_line > MAX_LINE_BYTES:
            raise ProviderResponseError(
                f"a line of the reply is longer than {MAX_LINE_BYTES} bytes. {_HINT}"
            )
        for line in lines:
            if not line.strip():
                continue
            payload = _loads(line, secret)
            yield payload, line
            if is_last is not None and is_last(payload):
                return
    tail = splitter.pending
    if tail.strip():
        # A whole object always parses, so a tail that begins like one but does not
        # parse was cut in transit; anything else (an HTML page) is simply not NDJSON.
        if tail.lstrip()[:1] == b"{" and not _parses(tail):
            raise _Cut("in the middle of a line")
        payload = _loads(tail, secret)
        yield payload, tail
        if is_last is not None and is_last(payload):
            return
    if is_last is not None:
        raise _Cut("before its last object")


def _interrupted(cut: _Cut, received: int | None = None) -> StreamInterruptedError:
    count = f" after {received} characters" if received is not None else ""
    return StreamInterruptedError(
        f"the stream ended {cut.args[0]}{count}; the reply is incomplete. Try again.",
        received=received or 0,
    )


def iter_objects(
    chunks: Iterable[bytes],
    *,
    is_last: IsLast | None = None,
    secret: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Decode byte chunks into JSON objects, one per line, as each line completes.

    Without ``is_last`` the objects run until the bytes end (a last line
    without terminator is accepted when it is a whole object).  With it,
    iteration stops after the first object for which it is true; bytes after
    it are not read.

    :param secret: a key to mask should the server echo it into an error text.
    :raises ProviderResponseError: a line is not a JSON object, reports an error,
        or is longer than :data:`MAX_LINE_BYTES`.
    :raises StreamInterruptedError: the bytes end inside a line, or, with
        ``is_last``, before the object that completes the stream.
    """
    try:
        for decoded in cast("Iterator[Any]", _decode(chunks, is_last, secret)):
            if type(decoded) is Pending:
                yield decoded  # type: ignore[misc]  # for the loop driving the call
                continue
            payload, line = decoded
            yield _check(payload, line, secret)
    except _Cut as cut:
        raise _interrupted(cut) from None


def _malformed(payload: Mapping[str, Any], what: str) -> ProviderResponseError:
    keys = ", ".join(sorted(map(str, payload))) or "none"
    return ProviderResponseError(
        f"an object of the reply has no {what} where the provider expects it "
        f"(keys: {keys}). {_HINT}"
    )


def _text(payload: Mapping[str, Any], text: TextOf) -> str:
    try:
        piece = text(payload)
    except (LookupError, TypeError, AttributeError):
        piece = malformed = True
    else:
        malformed = not (piece is None or isinstance(piece, str))
    if malformed:
        raise _malformed(payload, "text")
    return str(piece or "")


def _events(payload: Mapping[str, Any], events: EventsOf) -> list[Event]:
    try:
        return list(events(payload))
    except (LookupError, TypeError, AttributeError, ValueError):
        raise _malformed(payload, "well-formed events") from None


def _items(payload: Mapping[str, Any], text: TextOf,
           events: EventsOf | None) -> tuple[str, list[Event]]:
    return _text(payload, text), (_events(payload, events) if events is not None else [])


def stream_events(
    chunks: Iterable[bytes],
    *,
    text: TextOf,
    is_last: IsLast,
    events: EventsOf | None = None,
    secret: str | None = None,
) -> Iterator[str | Event]:
    """The text pieces and events of an NDJSON stream, yielded as their lines arrive:
    per object, its events, then its text, except a :class:`~chatplug.Finish` or
    :class:`~chatplug.Usage`, which follow the text.

    :param text: finds an object's text; ``None`` or ``""`` means it carries none.
        A lookup that fails (``KeyError``, ``TypeError``...) or a non-string is a
        malformed object.
    :param is_last: true for the object that completes the stream.
    :param events: the events of one object (optional); a lookup that fails is a
        malformed object.
    :raises StreamInterruptedError: the stream ends before that object, or an error
        object arrives after content did; ``received`` counts the characters that
        did arrive.
    :raises ProviderResponseError: a line is not a JSON object, reports an error,
        or has no text where ``text`` looks.
    """
    received = 0
    delivered = False
    try:
        for decoded in cast("Iterator[Any]", _decode(chunks, is_last, secret)):
            if type(decoded) is Pending:
                yield decoded  # type: ignore[misc]  # for the loop driving the call
                continue
            payload, line = decoded
            if type(payload) is not dict or "error" in payload or "detail" in payload:
                _check(payload, line, secret, received if delivered else None)
            piece, found = _items(payload, text, events)
            if found:
                yield from _before(found)
                delivered = delivered or any(type(e) in _CONTENT for e in found)
            if piece:
                received += len(piece)
                delivered = True
                yield piece
            if found:
                yield from _after(found)
    except _Cut as cut:
        raise _interrupted(cut, received) from None


#: Events that are content: after one, an error means an incomplete reply.
_CONTENT = (Reasoning, ToolCallDelta)
#: Events that close an object's contribution: yielded after its text.
_CLOSING = (Finish, Usage)


def _before(found: list[Event]) -> list[Event]:
    return [event for event in found if type(event) not in _CLOSING]


def _after(found: list[Event]) -> list[Event]:
    return [event for event in found if type(event) in _CLOSING]


def stream_text(
    chunks: Iterable[bytes],
    *,
    text: TextOf,
    is_last: IsLast,
    secret: str | None = None,
) -> Iterator[str]:
    """The text pieces of an NDJSON stream (:func:`stream_events` without events)."""
    return text_only(stream_events(chunks, text=text, is_last=is_last, secret=secret))


def read_reply(reply: Reply, *, text: TextOf, is_last: IsLast, events: EventsOf | None = None,
               secret: str | None = None) -> Iterator[str | Event]:
    """The text and events of a reply: one JSON document (``application/json``),
    else an NDJSON stream.

    A whole JSON document needs no last-object marker: it could be parsed, so
    it was not cut.

    :raises ProviderResponseError: the body is not JSON, or has no text where expected.
    :raises StreamInterruptedError: a stream ends before its last object.
    """
    if reply.content_type == "application/json":
        whole = yield from reply.load_json()  # type: ignore[misc]
        payload = _check(whole, whole if isinstance(whole, str) else type(whole).__name__,
                         secret)
        piece, found = _items(payload, text, events)
        yield from _before(found)
        if piece:
            yield piece
        yield from _after(found)
        return
    yield from stream_events(reply.iter_bytes(), text=text, is_last=is_last, events=events,
                             secret=secret)


def chat(
    http: HTTPClient,
    endpoint: str,
    body: Mapping[str, Any],
    *,
    text: TextOf,
    is_last: IsLast,
    events: EventsOf | None = None,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[str | Event]:
    """POST ``body`` as JSON to ``endpoint`` and yield the reply's text (and, with
    ``events``, its events) as it arrives.

    ``api_key``, when given, is sent as a bearer token and masked in any error
    text.  A streamed (NDJSON) or a whole JSON reply is read correctly.
    Closing the generator closes the HTTP response.

    :raises ProviderError: (subclasses) from the transport: HTTP statuses,
        timeouts, unreachable servers.
    :raises ProviderResponseError: the body is not what :func:`read_reply` expects.
    :raises StreamInterruptedError: a stream ends before its last object.
    """
    headers = request_headers("application/x-ndjson, application/json", api_key, headers)
    reply = yield from http.open_json(endpoint, dict(body), headers=headers)  # type: ignore[misc]
    with reply:
        yield from read_reply(reply, text=text, is_last=is_last, events=events,
                              secret=http.api_key or api_key)


class OllamaReply:
    """How Ollama's ``/api/chat`` objects carry a reply; one instance per reply.

    - the text is ``message.content`` (absent in some final objects);
    - the last object has ``"done": true``;
    - :meth:`events`: ``model`` as :class:`~chatplug.Meta` (once), ``message.thinking``
      as :class:`~chatplug.Reasoning`, each ``message.tool_calls[].function``
      (``name``, ``arguments`` as an object) as one whole
      :class:`~chatplug.ToolCallDelta`, numbered by position across the reply (Ollama
      sends no index; its ``function.index`` is used when present) with the arguments
      as JSON text and, since Ollama gives none, the id ``call_<index>``;
      ``done_reason`` as :class:`~chatplug.Finish`; ``prompt_eval_count`` and
      ``eval_count`` as :class:`~chatplug.Usage`.

    ::

        reply = ndjson.OllamaReply()
        yield from ndjson.chat(http, url + "/api/chat", body, text=reply.text,
                               is_last=reply.is_last, events=reply.events)
    """

    __slots__ = ("_calls", "_meta")

    def __init__(self) -> None:
        self._calls = 0
        self._meta = False

    @staticmethod
    def text(payload: Mapping[str, Any]) -> str | None:
        message = payload.get("message")
        if message is None:
            return None
        content: str | None = message["content"]  # a malformed message is reported as such
        return content

    @staticmethod
    def is_last(payload: Mapping[str, Any]) -> bool:
        return payload.get("done") is True

    def events(self, payload: Mapping[str, Any]) -> list[Event]:
        found: list[Event] = []
        if not self._meta and isinstance(payload.get("model"), str) and payload["model"]:
            self._meta = True
            found.append(Meta(model=payload["model"]))
        message = payload.get("message")
        if isinstance(message, Mapping):
            thinking = message.get("thinking")
            if isinstance(thinking, str) and thinking:
                found.append(Reasoning(thinking))
            for call in message.get("tool_calls") or ():
                found.append(self._tool_call(call))
        if payload.get("done") is True:
            reason = payload.get("done_reason")
            if isinstance(reason, str) and reason:
                found.append(Finish(reason))
            prompt, completion = (token_count(payload.get(name))
                                  for name in ("prompt_eval_count", "eval_count"))
            if prompt is not None or completion is not None:
                total = prompt + completion if prompt is not None and completion is not None \
                    else None
                found.append(Usage(prompt, completion, total))
        return found

    def _tool_call(self, call: Mapping[str, Any]) -> ToolCallDelta:
        function = call["function"]
        name, arguments = function["name"], function.get("arguments", {})
        if not isinstance(name, str) or not name:
            raise TypeError("a tool call without a name")
        index = function.get("index")
        if type(index) is not int or index < self._calls:
            index = self._calls
        self._calls = index + 1
        call_id = call.get("id")
        return ToolCallDelta(
            index, call_id if isinstance(call_id, str) and call_id else f"call_{index}", name,
            arguments if isinstance(arguments, str) else json.dumps(arguments,
                                                                   ensure_ascii=False),
        )

