"""What every chat wire does with a request and its reply, written once.

:func:`exchange` posts a JSON body and yields the reply's text and events, read by
the wire's own ``streamed`` parser (an event stream) or ``whole`` parser (one JSON
document), whichever the server chose; :func:`json_events` is the loop of a
streamed parser: server-sent events, each decoded as JSON, with a loop-driven
reply's waits passed through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ProviderResponseError
from .sse import SSEDecoder

if TYPE_CHECKING:
    from ..events import Event
    from ..transport.client import HTTPClient

__all__ = ["decode_json", "exchange", "json_events"]

#: json.loads without its checks and whitespace skipping, for the usual event: one JSON
#: value from the first character to the last (anything else goes to json.loads).
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = (
    json.JSONDecoder().scan_once)  # type: ignore[attr-defined]  # set in __init__, untyped
#: A wire's parser of a streamed reply: raw chunks in, text and events out.
Streamed = Callable[..., Iterator[Any]]
#: A wire's parser of a whole reply: the JSON document in, text and events out.
Whole = Callable[..., Iterable[Any]]


def exchange(http: HTTPClient, url: str, body: Mapping[str, Any], headers: Mapping[str, str],
             *, streamed: Streamed, whole: Whole, secret: str | None
             ) -> Iterator[str | Event]:
    """POST ``body`` to ``url``; yield the reply's text and events as they arrive.

    Closing the generator closes the response; a reply read to its end is drained so
    that its connection is reused.

    :raises ProviderError: (subclasses) the transport's, and those of the parsers.
    """
    reply = yield from http.open_json(  # type: ignore[misc]  # waits, for a loop-driven call
        url, body, headers=headers)
    with reply:
        items: Iterable[str | Event]
        if reply.content_type == "text/event-stream":
            items = streamed(reply.iter_bytes(), secret=secret, provider=http.provider)
        else:
            payload = yield from reply.load_json()  # type: ignore[misc]
            items = whole(payload, secret=secret, provider=http.provider)
        yield from items
        reply.drain()


def decode_json(data: str) -> Any:
    """One event's JSON: the scanner alone for the usual event (one value from the first
    character to the last), ``json.loads`` for anything else, whose errors it raises."""
    try:
        payload, stop = _SCAN_ONCE(data, 0)
    except StopIteration:  # no value at 0 (whitespace, a mark): loads decides
        return json.loads(data)
    return payload if stop == len(data) else json.loads(data)


def json_events(chunks: Iterable[bytes], *, secret: str | None, speaks: str
                ) -> Iterator[Any]:
    """Each event's ``data`` of an SSE stream as ``(data, parsed JSON)``; anything but
    bytes among ``chunks`` (a loop-driven reply's waits) is yielded as it came.

    :param secret: a key to mask in a quoted event.
    :param speaks: the API the server should speak, for the message of a bad event.
    :raises ProviderResponseError: an event that is not JSON.
    """
    from .errors import quoted

    def not_json(data: str) -> ProviderResponseError:
        return ProviderResponseError(
            f"a stream event is not JSON: {quoted(data, secret)}; the server may "
            f"not speak {speaks}.")

    feed = SSEDecoder().feed_data
    for chunk in chunks:
        if type(chunk) is not bytes:
            yield chunk
            continue
        for data in feed(chunk):
            try:
                payload = decode_json(data)
            except (ValueError, RecursionError):
                raise not_json(data) from None
            yield data, payload
