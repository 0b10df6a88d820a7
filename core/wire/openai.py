"""The OpenAI chat-completions wire format, once for every provider that speaks it.

A provider for an OpenAI-compatible service is its metadata plus one call::

    from chatplug import hookimpl
    from chatplug.wire import openai

    @hookimpl
    def create_completion(model, messages, stream, url, api_key, http, params,
                          temperature: float = 1.0):
        yield from openai.chat(http, f"{url}/chat/completions", model=model,
                               messages=messages, stream=stream, api_key=api_key,
                               events=True, **params)

:func:`chat` yields the reply's text (``str``) and, with ``events=True``, the events of
:mod:`chatplug.events` as the server reports them: :class:`~chatplug.Meta`
(id and served model, once), :class:`~chatplug.Reasoning` (``reasoning_content``
or ``reasoning``), :class:`~chatplug.ToolCallDelta` (streamed ``tool_calls``
fragments, or a whole ``message.tool_calls``), :class:`~chatplug.Finish` (the
``finish_reason``, once) and :class:`~chatplug.Usage` (the usage chunk of a
stream, or the reply's ``usage``).

Every function here raises :class:`chatplug.ProviderResponseError` for a body
that breaks the format, and :class:`chatplug.StreamInterruptedError` for a
stream that ends before ``[DONE]`` or a finish reason, or that reports an error
after content had arrived.  Error objects are read by :mod:`chatplug.wire.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ProviderResponseError, StreamInterruptedError
from ..events import Finish
from ..transport.pending import text_only
from . import request_headers
from .errors import quoted
from .exchange import decode_json, exchange
from .openai_parts import (
    choice_index,
    logprobs_of,
    meta_of,
    of_choice,
    part_items,
    usage_of,
)
from .sse import SSEDecoder

if TYPE_CHECKING:
    from ..calls.completion import Completion
    from ..events import Event
    from ..transport.client import HTTPClient

__all__ = [
    "chat",
    "completion_body",
    "list_models",
    "parse_chunk",
    "parse_reply",
    "reply_events",
    "request_body",
    "stream_events",
    "stream_text",
]

DONE = "[DONE]"


def request_body(
    model: str, messages: Sequence[Mapping[str, Any]], stream: bool, **options: Any
) -> dict[str, Any]:
    """The JSON body of a chat-completions request; ``None`` options are left out.

    What other wires need and this one refuses is left out of the messages:
    ``thinking_blocks`` (signed reasoning for Anthropic and Gemini) and parts'
    ``cache_control`` (Anthropic's prompt caching).
    """
    body: dict[str, Any] = {"model": model, "messages": [_plain_message(message)
                                                         for message in messages],
                            "stream": stream}
    body.update((key, value) for key, value in options.items() if value is not None)
    return body


def _plain_message(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """``message`` without what only other wires take (the same object when it has none)."""
    content = message.get("content")
    cached = type(content) is list and any("cache_control" in part for part in content)
    if "thinking_blocks" not in message and not cached:
        return message
    plain = {key: value for key, value in message.items() if key != "thinking_blocks"}
    if cached:
        plain["content"] = [{key: value for key, value in part.items()
                             if key != "cache_control"} for part in content or ()]
    return plain



def _string_reply(payload: str, secret: str | None) -> ProviderResponseError:
    # ChatGPT-Next-Web answers 200 with a JSON string (its caught exception, such as
    # ECONNREFUSED) when the upstream behind it fails: worth showing and retrying.
    error = ProviderResponseError(
        f"the reply is a JSON string, not a chat completion: {quoted(payload, secret)}. "
        "A proxy in front of the model (such as NextChat) probably could not reach its "
        "upstream; try again later."
    )
    error.retryable = True
    return error


def reply_events(payload: Any, *, secret: str | None = None,
                 provider: str | None = None) -> list[str | Event]:
    """The text and events of a non-streamed reply, in order: ``Meta``, then per
    choice ``Reasoning``, the text, ``Refusal``, ``Annotations``, ``ToolCallDelta``
    per call, ``Logprobs``, ``Finish`` (choices after the first wrapped in
    :class:`~chatplug.events.Choice`), then ``Usage``.

    :param secret: a key to mask should the server echo it into an error text.
    :param provider: names the key's variable should the server refuse the key.
    :raises ProviderResponseError: an error object, a JSON string (retryable: a proxy's
        failure), no choices, or a choice without a message.
    :raises RateLimitError, AuthenticationError: an error object that says so.
    """
    if isinstance(payload, str):
        raise _string_reply(payload, secret)
    if not isinstance(payload, Mapping):
        raise ProviderResponseError(
            f"the reply is JSON but not an object ({type(payload).__name__}); "
            "the server may not be OpenAI-compatible."
        )
    from .errors import error_of, reported_error

    error = error_of(payload)
    if error is not None:
        raise reported_error(error, payload, where="its reply", secret=secret,
                             provider=provider)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise ProviderResponseError(
            f"the reply has no choices (keys: {', '.join(sorted(map(str, payload))) or 'none'}); "
            "the server may not be OpenAI-compatible."
        )
    items: list[str | Event] = []
    meta = meta_of(payload)
    if meta is not None:
        items.append(meta)
    for position, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if not isinstance(message, Mapping):
            raise ProviderResponseError(f"the reply's choice {position} has no message object.")
        index = choice_index(choice, position, payload, secret)
        found = part_items(message, payload, secret, "the reply's message")
        logprobs = logprobs_of(choice)
        if logprobs is not None:
            found.append(logprobs)
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            found.append(Finish(reason))
        items.extend(of_choice(index, found))
    usage = usage_of(payload.get("usage"))
    if usage is not None:
        items.append(usage)
    return items


def parse_reply(payload: Any) -> str:
    """The text of a non-streamed reply: ``choices[0].message.content``.

    :raises ProviderResponseError: an error object, or no choices/message in it.
    """
    return "".join(item for item in reply_events(payload) if type(item) is str)


class _Progress:
    """What a stream has delivered so far (for completeness and error reports)."""

    __slots__ = ("delivered", "finished", "meta", "received")

    def __init__(self) -> None:
        self.received = 0  # characters of text
        self.delivered = False  # reasoning or a tool call (text: received > 0)
        self.finished: set[int] = set()  # the choices whose finish reason arrived
        self.meta = False  # the Meta event was yielded


def _chunk_items(payload: Any, data: str, progress: _Progress, secret: str | None,
                 provider: str | None) -> list[str | Event]:
    """Everything one chunk carries, for any chunk the fast path does not take."""
    if not isinstance(payload, dict):
        raise ProviderResponseError(
            f"a stream event is not a JSON object: {quoted(data, secret)}"
        )
    from .errors import error_of, reported_error

    error = error_of(payload)
    if error is not None:
        delivered = progress.delivered or progress.received > 0
        raise reported_error(error, payload, where="the stream", secret=secret,
                             provider=provider,
                             received=progress.received if delivered else None)
    items: list[str | Event] = []
    if not progress.meta:
        meta = meta_of(payload)
        if meta is not None:
            progress.meta = True
            items.append(meta)
    choices = payload.get("choices")
    if choices and isinstance(choices, list):
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                raise ProviderResponseError(
                    f"a stream chunk's choice is not an object: {quoted(data, secret)}"
                )
            index = choice_index(choice, position, data, secret)
            part = choice.get("delta")
            if not isinstance(part, dict) or not part:
                # Some servers put the whole message in the last chunk instead of a delta.
                message = choice.get("message")
                part = message if isinstance(message, dict) else {}
            found = part_items(part, data, secret, "a stream chunk's")
            if index == 0:
                for item in found:
                    if type(item) is str:
                        progress.received += len(item)
                    else:
                        progress.delivered = True
            elif found:
                progress.delivered = True
            logprobs = logprobs_of(choice)
            if logprobs is not None:
                found.append(logprobs)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason and index not in progress.finished:
                progress.finished.add(index)
                found.append(Finish(reason))
            items.extend(of_choice(index, found))
    usage = usage_of(payload.get("usage"))
    if usage is not None:
        items.append(usage)
    return items


def _not_json(data: str, secret: str | None) -> ProviderResponseError:
    return ProviderResponseError(
        f"a stream event is not JSON: {quoted(data, secret)}; the server may not be "
        "OpenAI-compatible."
    )


def parse_chunk(data: str, *, secret: str | None = None) -> list[str | Event]:
    """Parse one SSE ``data`` payload into its text and events (``Meta`` included
    when the chunk names an id or model).

    Chunks with no choices and no usage (content-filter notes) give ``[]``.

    :raises ProviderResponseError: bad JSON, or an ``{"error": ...}`` event.
    """
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        raise _not_json(data, secret) from None
    return _chunk_items(payload, data, _Progress(), secret, None)


def stream_events(chunks: Iterable[bytes], *, secret: str | None = None,
                  provider: str | None = None) -> Iterator[str | Event]:
    """Turn the raw bytes of an SSE chat-completions stream into text pieces and events.

    Ends at ``[DONE]``; a clean end after a chunk with a ``finish_reason`` is
    accepted too.

    :param secret: a key to mask should the server echo it into an error text.
    :param provider: names the key's variable should the server refuse the key.
    :raises StreamInterruptedError: the bytes end before either, or an error event
        arrives after content did (``received`` counts the characters of text).
    :raises ProviderResponseError: an event is not a valid chunk, or reports an error.
    """
    decoder = SSEDecoder()
    progress = _Progress()
    feed = decoder.feed_data
    loads = json.loads
    decode = decode_json
    received = 0  # kept here on the hot path, in progress on the slow one
    fast = False  # the first chunk, which names the id and model, is read in full
    for chunk in chunks:
        if type(chunk) is not bytes:  # a native reply's Pending, for the call's driver
            yield chunk  # type: ignore[misc]
            continue
        for data in feed(chunk):
            if data == DONE:
                return
            try:
                payload = decode(data)
            except (ValueError, RecursionError):
                raise _not_json(data, secret) from None
            if fast:
                # The shape nearly every chunk has, checked cheaply; anything else goes below.
                try:
                    choices = payload["choices"]
                    choice = choices[0]
                    delta = choice["delta"]
                    text = delta["content"]
                    # Another choice (n > 1), logprobs and the rest are read below.
                    if (type(text) is str and choice.get("finish_reason") is None
                            and len(choices) == 1 and not choice.get("index")
                            and choice.get("logprobs") is None
                            and (len(delta) == 1 or _plain(delta)) and "error" not in payload
                            and ("usage" not in payload or payload["usage"] is None)):
                        if text:
                            received += len(text)
                            yield text
                        continue
                except (KeyError, IndexError, TypeError):
                    pass
            fast = True
            progress.received = received
            yield from _chunk_items(payload, data, progress, secret, provider)
            received = progress.received
    progress.received = received
    if not decoder.cut_line:
        for event in decoder.end():
            if event.data == DONE:
                return
            try:
                payload = loads(event.data)
            except (ValueError, RecursionError):
                raise _not_json(event.data, secret) from None
            yield from _chunk_items(payload, event.data, progress, secret, provider)
    if not progress.finished:
        raise StreamInterruptedError(
            f"the stream ended without [DONE] or a finish reason after {progress.received} "
            "characters; the reply is incomplete. Try again.",
            received=progress.received,
        )


def _plain(delta: dict[str, Any]) -> bool:
    """A delta with text and nothing else that matters (``role``, nulls)."""
    return (delta.get("tool_calls") is None and delta.get("reasoning_content") is None
            and delta.get("reasoning") is None and not delta.get("refusal")
            and not delta.get("annotations"))


def stream_text(chunks: Iterable[bytes], *, secret: str | None = None) -> Iterator[str]:
    """The text pieces of an SSE chat-completions stream (:func:`stream_events`
    without the events, with the same checks and errors)."""
    return text_only(stream_events(chunks, secret=secret))


def chat(
    http: HTTPClient,
    endpoint: str,
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: bool,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    events: bool = False,
    **options: Any,
) -> Iterator[str | Event]:
    """POST a chat completion to ``endpoint``; yield its text (and, with
    ``events=True``, its events) as they arrive.

    ``api_key`` is sent as a bearer token.  ``options`` (temperature, tools, ...) go
    into the body; ``None`` values are left out.  Whatever the server chooses
    (a stream or one JSON reply) is read correctly.  Closing the generator
    closes the HTTP response.  Without ``events`` only text is yielded, as in
    chatplug 0.1, so a plugin that handles each piece as a string keeps working;
    the checks (completeness, error objects) are the same either way.

    :raises ProviderError: (subclasses) from the transport: HTTP statuses, timeouts,
        unreachable servers; and those of :func:`stream_events` and :func:`reply_events`.
    """
    accept = "text/event-stream" if stream else "application/json"
    body = request_body(model, messages, stream, **options)
    # The configured key is masked in every form a provider derives from it (nk-<code>).
    items = exchange(http, endpoint, body, request_headers(accept, api_key, headers),
                     streamed=stream_events, whole=reply_events,
                     secret=http.api_key or api_key)
    yield from items if events else text_only(items)


def completion_body(
    completion: Completion, *, created: int | None = None, model: str | None = None
) -> dict[str, Any]:
    """A :class:`chatplug.Completion` as OpenAI's ``chat.completion`` JSON object.

    :param created: Unix time of the reply (default: now).
    :param model: the model name to report (default: the completion's).
    """
    import os
    import time

    choices = []
    for choice in completion.choices:
        message = completion.message if choice.index == 0 else choice.message
        if choice.reasoning is not None:
            message = {**message, "reasoning_content": choice.reasoning}
        choices.append({"index": choice.index, "message": message,
                        "finish_reason": choice.finish_reason or "stop",
                        "logprobs": choice.logprobs})
    usage = completion.usage
    body = {
        "id": completion.id or f"chatcmpl-{os.urandom(12).hex()}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model or completion.model,
        "choices": choices,
        "usage": None if usage is None else usage.as_dict(),
        "system_fingerprint": completion.system_fingerprint,
    }
    if completion.service_tier is not None:
        body["service_tier"] = completion.service_tier
    return body


def list_models(
    http: HTTPClient,
    url: str,
    api_key: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """The model ids an OpenAI-compatible server offers: ``GET {url}/models``.

    A provider implements the ``list_models`` hook with it::

        @hookimpl
        def list_models(url, api_key, http):
            return openai.list_models(http, url, api_key)

    :raises ProviderResponseError: the answer is not ``{"data": [{"id": ...}, ...]}``.
    :raises ProviderError: (subclasses) the request failed, as for :func:`chat`.
    """
    # GravityEngine's headers ask for an event stream; a list is JSON, whatever they say.
    all_headers = {**request_headers("application/json", api_key, headers),
                   "Accept": "application/json"}
    payload = http.get_json(f"{url}/models", headers=all_headers)
    data = payload.get("data") if isinstance(payload, Mapping) else None
    if not isinstance(data, list) or not all(
        isinstance(entry, Mapping) and isinstance(entry.get("id"), str) for entry in data
    ):
        raise ProviderResponseError(
            f"the model list from {url}/models is not OpenAI's "
            '{"data": [{"id": ...}]}; the server may not be OpenAI-compatible.'
        )
    return [str(entry["id"]) for entry in data]
