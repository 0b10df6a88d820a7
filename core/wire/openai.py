"""The OpenAI chat-completions wire format, once for every provider that speaks it.

A provider for an OpenAI-compatible service is its metadata plus one call::

    from chatplug import hookimpl
    from chatplug.wire import openai

    @hookimpl
    def create_completion(model, messages, stream, url, api_key, http, temperature: float = 1.0):
        yield from openai.chat(http, f"{url}/chat/completions", model=model,
                               messages=messages, stream=stream, api_key=api_key,
                               temperature=temperature)

Every function here raises :class:`chatplug.ProviderResponseError` for a body
that breaks the format, and :class:`chatplug.StreamInterruptedError` for a
stream that ends before ``[DONE]`` or a finish reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    ProviderResponseError,
    RateLimitError,
    StreamInterruptedError,
)
from .sse import SSEDecoder

if TYPE_CHECKING:
    from ..calls.completion import Completion
    from ..transport.client import HTTPClient

__all__ = [
    "chat",
    "completion_body",
    "list_models",
    "parse_chunk",
    "parse_reply",
    "request_body",
    "stream_text",
]

DONE = "[DONE]"


def request_body(
    model: str, messages: Sequence[Mapping[str, str]], stream: bool, **options: Any
) -> dict[str, Any]:
    """The JSON body of a chat-completions request; ``None`` options are left out."""
    body: dict[str, Any] = {"model": model, "messages": list(messages), "stream": stream}
    body.update((key, value) for key, value in options.items() if value is not None)
    return body


def _error_in(payload: Mapping[str, Any], where: str) -> Exception:
    error = payload.get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message") or error.get("type") or error)
        code = str(error.get("code") or error.get("type") or "")
    else:
        message, code = str(error), ""
    message = " ".join(message.split())[:300]
    if "rate_limit" in code or "quota" in code:
        return RateLimitError(f"the server reported in {where}: {message}. Retry later.")
    if "api_key" in code or "auth" in code:
        return AuthenticationError(
            f"the server reported in {where}: {message}. Check the configured API key."
        )
    return ProviderResponseError(f"the server reported an error in {where}: {message}")


def parse_reply(payload: Any) -> str:
    """The text of a non-streamed reply: ``choices[0].message.content``.

    :raises ProviderResponseError: an error object, or no choices/message in it.
    """
    if not isinstance(payload, Mapping):
        raise ProviderResponseError(
            f"the reply is JSON but not an object ({type(payload).__name__}); "
            "the server may not be OpenAI-compatible."
        )
    if payload.get("error"):
        raise _error_in(payload, "its reply")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise ProviderResponseError(
            f"the reply has no choices (keys: {', '.join(sorted(map(str, payload))) or 'none'}); "
            "the server may not be OpenAI-compatible."
        )
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        raise ProviderResponseError("the reply's first choice has no message object.")
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise ProviderResponseError(
            f"the reply's message content is {type(content).__name__}, not text."
        )
    return content


def parse_chunk(data: str) -> tuple[str, str | None]:
    """Parse one SSE ``data`` payload into ``(text, finish_reason)``.

    Chunks with no choices (usage reports, content-filter notes) give ``("", None)``.

    :raises ProviderResponseError: bad JSON, or an ``{"error": ...}`` event.
    """
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):
        raise ProviderResponseError(
            f"a stream event is not JSON: {data[:120]!r}; the server may not be OpenAI-compatible."
        ) from None
    try:
        # The shape nearly every chunk has, checked cheaply; anything else is examined below.
        choice = payload["choices"][0]
        text = choice["delta"]["content"]
        if type(text) is str and "error" not in payload:
            return text, choice.get("finish_reason")
    except (KeyError, IndexError, TypeError):
        pass
    return _parse_unusual_chunk(payload, data)


def _parse_unusual_chunk(payload: Any, data: str) -> tuple[str, str | None]:
    if not isinstance(payload, dict):
        raise ProviderResponseError(f"a stream event is not a JSON object: {data[:120]!r}")
    if payload.get("error"):
        raise _error_in(payload, "the stream")
    choices = payload.get("choices")
    if not choices or not isinstance(choices, list):
        return "", None
    choice = choices[0]
    if not isinstance(choice, dict):
        raise ProviderResponseError(f"a stream chunk's choice is not an object: {data[:120]!r}")
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else None
    if text is None:
        # Some servers put the whole message in the last chunk instead of a delta.
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    if text is not None and not isinstance(text, str):
        raise ProviderResponseError(f"a stream chunk's content is not text: {data[:120]!r}")
    return text or "", choice.get("finish_reason")


def stream_text(chunks: Iterable[bytes]) -> Iterator[str]:
    """Turn the raw bytes of an SSE chat-completions stream into text pieces.

    Ends at ``[DONE]``; a clean end after a chunk with a ``finish_reason`` is
    accepted too.

    :raises StreamInterruptedError: the bytes end before either.
    :raises ProviderResponseError: an event is not a valid chunk, or reports an error.
    """
    decoder = SSEDecoder()
    finished = False
    received = 0
    feed = decoder.feed_data
    for chunk in chunks:
        for data in feed(chunk):
            if data == DONE:
                return
            text, finish_reason = parse_chunk(data)
            if finish_reason:
                finished = True
            if text:
                received += len(text)
                yield text
    if not decoder.cut_line:
        for event in decoder.end():
            if event.data == DONE:
                return
            text, finish_reason = parse_chunk(event.data)
            finished = finished or bool(finish_reason)
            if text:
                received += len(text)
                yield text
    if not finished:
        raise StreamInterruptedError(
            f"the stream ended without [DONE] or a finish reason after {received} characters; "
            "the reply is incomplete. Try again.",
            received=received,
        )


def chat(
    http: HTTPClient,
    endpoint: str,
    *,
    model: str,
    messages: Sequence[Mapping[str, str]],
    stream: bool,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> Iterator[str]:
    """POST a chat completion to ``endpoint`` and yield its text as it arrives.

    ``api_key`` is sent as a bearer token.  ``options`` (temperature, ...) go
    into the body; ``None`` values are left out.  Whatever the server chooses
    (a stream or one JSON reply) is read correctly.  Closing the generator
    closes the HTTP response.
    """
    all_headers = {"Accept": "text/event-stream" if stream else "application/json"}
    if headers:
        all_headers.update(headers)
    if api_key:
        all_headers["Authorization"] = f"Bearer {api_key}"
    body = request_body(model, messages, stream, **options)
    with http.post_json(endpoint, body, headers=all_headers, stream=stream) as reply:
        if reply.content_type == "text/event-stream":
            yield from stream_text(reply.iter_bytes())
        else:
            yield parse_reply(reply.json())
        reply.drain()  # complete: read the last bytes so the connection is reused


def completion_body(
    completion: Completion, *, created: int | None = None, model: str | None = None
) -> dict[str, Any]:
    """A :class:`chatplug.Completion` as OpenAI's ``chat.completion`` JSON object.

    :param created: Unix time of the reply (default: now).
    :param model: the model name to report (default: the completion's).
    """
    import os
    import time

    message = dict(completion.message)
    if completion.reasoning is not None:
        message["reasoning_content"] = completion.reasoning
    usage = completion.usage
    return {
        "id": completion.id or f"chatcmpl-{os.urandom(12).hex()}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model or completion.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": completion.finish_reason or "stop",
            "logprobs": None,
        }],
        "usage": None if usage is None else usage.as_dict(),
    }


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
    all_headers = dict(headers or {})
    if api_key:
        all_headers["Authorization"] = f"Bearer {api_key}"
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
