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

Lines end at LF, CRLF or CR, also when a terminator or a multi-byte character
is split across network reads (:class:`chatplug.sse.LineSplitter`); blank
lines are skipped (keep-alives).  An object is handed on the moment its line
is complete.  As with server-sent events, a stream is whole only when its
last object arrived: a clean close before it raises
:class:`StreamInterruptedError`, never passes as a complete reply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ProviderResponseError, StreamInterruptedError
from .sse import LineSplitter

if TYPE_CHECKING:
    from ..transport.client import HTTPClient, Reply

__all__ = ["MAX_LINE_BYTES", "chat", "iter_objects", "parse_line", "read_reply", "stream_text"]

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


def _redacted(text: str, secret: str | None) -> str:
    # Imported here: the redaction module is only needed on the error path.
    from ..transport.redaction import redact

    return redact(text, secret)


def _check(payload: Any, excerpt: str, secret: str | None) -> dict[str, Any]:
    """``payload`` if it is an object that reports no error."""
    if not isinstance(payload, dict):
        raise ProviderResponseError(
            f"the reply is JSON but not an object: {excerpt}. {_HINT}"
        )
    error = payload.get("error")
    if error:
        if isinstance(error, Mapping):
            error = error.get("message") or error
        message = _redacted(" ".join(str(error).split())[:300], secret)
        raise ProviderResponseError(f"the server reported an error in its reply: {message}")
    return payload


def parse_line(line: bytes, *, secret: str | None = None) -> dict[str, Any]:
    """Parse one line into a JSON object.

    :param secret: a key to mask should the server echo it into an error text.
    :raises ProviderResponseError: the line is not UTF-8 JSON, not an object, or
        an ``{"error": ...}`` object (the server reporting a failure).
    """
    excerpt = repr(_redacted(line[:_EXCERPT].decode("utf-8", "replace"), secret))
    try:
        payload = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        # UnicodeDecodeError is a ValueError; absurd nesting is a RecursionError.
        raise ProviderResponseError(
            f"a line of the reply is not JSON: {excerpt}. {_HINT}"
        ) from None
    return _check(payload, excerpt, secret)


def _parses(line: bytes) -> bool:
    try:
        json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return True


class _Cut(Exception):
    """The bytes ended too early; ``args[0]`` says where.  Never leaves this module."""


def _decode(chunks: Iterable[bytes], is_last: IsLast | None,
            secret: str | None) -> Iterator[dict[str, Any]]:
    splitter = LineSplitter()
    # Bytes of the unterminated line, counted here: LineSplitter.pending joins its
    # buffered reads on every access, which would make a long line quadratic.
    open_line = 0
    for chunk in chunks:
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
            payload = parse_line(line, secret=secret)
            yield payload
            if is_last is not None and is_last(payload):
                return
    tail = splitter.pending
    if tail.strip():
        # A whole object always parses, so a tail that begins like one but does not
        # parse was cut in transit; anything else (an HTML page) is simply not NDJSON.
        if tail.lstrip()[:1] == b"{" and not _parses(tail):
            raise _Cut("in the middle of a line")
        payload = parse_line(tail, secret=secret)
        yield payload
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
        yield from _decode(chunks, is_last, secret)
    except _Cut as cut:
        raise _interrupted(cut) from None


def _text(payload: Mapping[str, Any], text: TextOf) -> str:
    try:
        piece = text(payload)
    except (LookupError, TypeError, AttributeError):
        piece = malformed = True
    else:
        malformed = not (piece is None or isinstance(piece, str))
    if malformed:
        keys = ", ".join(sorted(map(str, payload))) or "none"
        raise ProviderResponseError(
            f"an object of the reply has no text where the provider expects it "
            f"(keys: {keys}). {_HINT}"
        )
    return str(piece or "")


def stream_text(
    chunks: Iterable[bytes],
    *,
    text: TextOf,
    is_last: IsLast,
    secret: str | None = None,
) -> Iterator[str]:
    """The text pieces of an NDJSON stream, yielded as their lines arrive.

    :param text: finds an object's text; ``None`` or ``""`` means it carries none.
        A lookup that fails (``KeyError``, ``TypeError``...) or a non-string is a
        malformed object.
    :param is_last: true for the object that completes the stream.
    :raises StreamInterruptedError: the stream ends before that object; ``received``
        counts the characters that did arrive.
    :raises ProviderResponseError: a line is not a JSON object, reports an error,
        or has no text where ``text`` looks.
    """
    received = 0
    try:
        for payload in _decode(chunks, is_last, secret):
            piece = _text(payload, text)
            if piece:
                received += len(piece)
                yield piece
    except _Cut as cut:
        raise _interrupted(cut, received) from None


def read_reply(reply: Reply, *, text: TextOf, is_last: IsLast,
               secret: str | None = None) -> Iterator[str]:
    """The text of a reply: one JSON document (``application/json``), else an NDJSON stream.

    A whole JSON document needs no last-object marker: it could be parsed, so
    it was not cut.

    :raises ProviderResponseError: the body is not JSON, or has no text where expected.
    :raises StreamInterruptedError: a stream ends before its last object.
    """
    if reply.content_type == "application/json":
        whole = reply.json()
        payload = _check(whole, type(whole).__name__, secret)
        piece = _text(payload, text)
        if piece:
            yield piece
        return
    yield from stream_text(reply.iter_bytes(), text=text, is_last=is_last, secret=secret)


def chat(
    http: HTTPClient,
    endpoint: str,
    body: Mapping[str, Any],
    *,
    text: TextOf,
    is_last: IsLast,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """POST ``body`` as JSON to ``endpoint`` and yield the reply's text as it arrives.

    ``api_key``, when given, is sent as a bearer token and masked in any error
    text.  A streamed (NDJSON) or a whole JSON reply is read correctly.
    Closing the generator closes the HTTP response.

    :raises ProviderError: (subclasses) from the transport: HTTP statuses,
        timeouts, unreachable servers.
    :raises ProviderResponseError: the body is not what :func:`read_reply` expects.
    :raises StreamInterruptedError: a stream ends before its last object.
    """
    all_headers = {"Accept": "application/x-ndjson, application/json"}
    if headers:
        all_headers.update(headers)
    if api_key:
        all_headers["Authorization"] = f"Bearer {api_key}"
    with http.post_json(endpoint, dict(body), headers=all_headers, stream=True) as reply:
        yield from read_reply(reply, text=text, is_last=is_last, secret=api_key)
