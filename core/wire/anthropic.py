"""Anthropic's Messages API (``POST /v1/messages``), translated both ways.

Callers write OpenAI-shaped messages, tools and ``tool_choice``; :func:`request_body`
turns them into Anthropic's request (``system`` apart, content blocks, tool results
grouped into one user turn, ``tool_use`` blocks from ``tool_calls``, signed and
redacted thinking blocks sent back exactly as they came).  The reply, whole or
streamed, becomes chatplug's text and events:

=====================================  ==========================================
Anthropic                              chatplug
=====================================  ==========================================
``text`` block / ``text_delta``        ``str``
``thinking`` / ``thinking_delta``      :class:`~chatplug.events.Reasoning`
``signature`` / ``signature_delta``    :class:`~chatplug.events.ReasoningSignature`
``redacted_thinking``                  :class:`~chatplug.events.RedactedReasoning`
``tool_use`` / ``input_json_delta``    :class:`~chatplug.events.ToolCallDelta`
``stop_reason``                        :class:`~chatplug.events.Finish` (mapped, native kept)
``usage`` (last value of each count)   :class:`~chatplug.events.Usage`
``id``, ``model``                      :class:`~chatplug.events.Meta`
=====================================  ==========================================

Every function raises :class:`chatplug.ProviderResponseError` for a body that breaks
the format, :class:`chatplug.StreamInterruptedError` for a stream cut before its
``stop_reason`` or reporting an error after content arrived, and the typed error of
an ``error`` event before any content (``overloaded_error`` as a retryable 529).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import (
    InvalidRequestError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    RateLimitError,
    StreamInterruptedError,
)
from ..events import (
    Finish,
    Meta,
    Reasoning,
    ReasoningSignature,
    RedactedReasoning,
    ToolCallDelta,
    Usage,
)
from . import base64_data_url, token_count
from . import request_headers as wire_headers
from .errors import quoted
from .exchange import exchange, json_events

if TYPE_CHECKING:
    from ..events import Event
    from ..transport.client import HTTPClient

__all__ = [
    "API_VERSION",
    "FINISH_REASONS",
    "chat",
    "list_models",
    "reply_events",
    "request_body",
    "request_headers",
    "stream_events",
    "usage_of",
]

#: The ``anthropic-version`` every request names.
API_VERSION = "2023-06-01"
#: Anthropic's ``stop_reason`` → OpenAI's ``finish_reason``.  ``pause_turn`` (a
#: server tool paused a long turn: send the conversation again to go on) ends the
#: reply as ``stop``; the native reason says which it was.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: An ``error`` event's type → the status an HTTP answer would have had (retry rules).
_ERROR_STATUS = {"overloaded_error": 529, "api_error": 500, "rate_limit_error": 429,
                 "timeout_error": 504}


# -- the request ---------------------------------------------------------------------


def request_headers(api_key: str | None, accept: str,
                    headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``Accept``, ``anthropic-version``, the provider's ``headers`` and ``x-api-key``."""
    return wire_headers(accept, api_key, {"anthropic-version": API_VERSION, **(headers or {})},
                        key_header="x-api-key")


def _image(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = base64_data_url(url, where, "Anthropic")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                            "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content blocks from an OpenAI content string or parts list."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if part.get("type") == "text":
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
        else:
            block = _image(part["image_url"]["url"], f"{where}.content[{index}]")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    if isinstance(content, str):
        result["content"] = content
    else:
        result["content"] = _blocks(content, where)
    return result


def _tool_use(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    function = call["function"]
    arguments = function.get("arguments") or "{}"
    try:
        value = json.loads(arguments)
    except ValueError:
        raise InvalidRequestError(
            f"{where}.function.arguments is not JSON; Anthropic takes a tool call's "
            "input as an object.") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}.function.arguments must be a JSON object for "
                                  "Anthropic.")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": value}


def _assistant(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = [dict(block) for block in message.get("thinking_blocks") or ()]
    blocks += _blocks(message.get("content"), where)
    for index, call in enumerate(message.get("tool_calls") or ()):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{index}]"))
    return blocks


def translate_messages(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI-shaped (validated) messages → Anthropic's ``system`` blocks and turns.

    ``system`` and ``developer`` messages become ``system`` text blocks; a run of
    ``tool`` messages becomes ``tool_result`` blocks of one user turn (a user
    message right after them joins that turn); consecutive turns of one role are
    joined, as Anthropic requires alternation.

    :raises InvalidRequestError: what Anthropic cannot take (a data URL that is not
        base64, tool-call arguments that are not a JSON object).
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for number, message in enumerate(messages):
        where = f"messages[{number}]"
        role = message["role"]
        if role in ("system", "developer"):
            system += _blocks(message.get("content"), where)
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        elif role == "user":
            blocks = _blocks(message.get("content"), where)
        else:
            blocks = _assistant(message, where)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
        raise InvalidRequestError(
            "each tool must be {'type': 'function', 'function': {'name', 'parameters'?, "
            "'description'?}}, as OpenAI shapes them.")
    function = tool["function"]
    out: dict[str, Any] = {"name": function.get("name"),
                           "input_schema": function.get("parameters")
                           or {"type": "object", "properties": {}}}
    if function.get("description"):
        out["description"] = function["description"]
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None:
        translated: dict[str, Any] | None = None
    elif choice == "auto":
        translated = {"type": "auto"}
    elif choice == "required":
        translated = {"type": "any"}
    elif choice == "none":
        translated = {"type": "none"}
    elif (isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping)
          and choice["function"].get("name")):
        translated = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequestError(
            f"tool_choice {choice!r} is not one Anthropic can take: 'auto', 'required', "
            "'none' or {'type': 'function', 'function': {'name': ...}}.")
    if parallel is False:
        translated = {**(translated or {"type": "auto"}), "disable_parallel_tool_use": True}
    return translated


def request_body(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: bool,
    *,
    max_tokens: int,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool | None = None,
    stop: str | Sequence[str] | None = None,
    user: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Anthropic's request body from an OpenAI-shaped call; ``None`` options are left out.

    ``stop`` becomes ``stop_sequences`` (joined with any given), ``user`` becomes
    ``metadata.user_id``; other options (``temperature``, ``thinking``, ...) go as given.

    :raises InvalidRequestError: see :func:`translate_messages`; a tool or
        ``tool_choice`` not in OpenAI's shape.
    """
    system, turns = translate_messages(messages)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        body["system"] = system
    if stream:
        body["stream"] = True
    if tools:
        body["tools"] = [_tool(tool) for tool in tools]
    choice = _tool_choice(tool_choice, parallel_tool_calls)
    if choice is not None:
        body["tool_choice"] = choice
    sequences = list(options.pop("stop_sequences", None) or ())
    if stop is not None:
        sequences += [stop] if isinstance(stop, str) else list(stop)
    if sequences:
        body["stop_sequences"] = sequences
    if user is not None:
        body["metadata"] = {**(options.pop("metadata", None) or {}), "user_id": user}
    body.update((key, value) for key, value in options.items() if value is not None)
    return body


# -- the reply -----------------------------------------------------------------------


def usage_of(counts: Mapping[str, Any]) -> Usage | None:
    """:class:`Usage` from Anthropic's counts; ``prompt_tokens`` adds up the three input
    counts (uncached, written to the cache, read from it), as OpenAI's does."""
    uncached = token_count(counts.get("input_tokens"))
    written = token_count(counts.get("cache_creation_input_tokens"))
    read = token_count(counts.get("cache_read_input_tokens"))
    output = token_count(counts.get("output_tokens"))
    if uncached is None and written is None and read is None and output is None:
        return None
    prompt = None if uncached is None and written is None and read is None else \
        (uncached or 0) + (written or 0) + (read or 0)
    total = None if prompt is None or output is None else prompt + output
    return Usage(prompt_tokens=prompt, completion_tokens=output, total_tokens=total,
                 cached_tokens=read, cache_creation_tokens=written)


def _finish(reason: Any, sequence: Any) -> Finish | None:
    if not isinstance(reason, str) or not reason:
        return None
    return Finish(FINISH_REASONS.get(reason, reason), native=reason,
                  stop_sequence=sequence if isinstance(sequence, str) else None)



def _error(payload: Mapping[str, Any], *, where: str, secret: str | None,
           provider: str | None, received: int | None) -> ProviderError:
    """The typed error of an Anthropic error object (an ``error`` event or body)."""
    from .errors import error_of, reported_error, said, sentence

    error = error_of(payload)
    assert error is not None
    status = _ERROR_STATUS.get(error.type)
    if received is None and status is not None:
        text = said(error, payload, secret)
        # As a status's error would: a gateway passes the server's type and words on.
        fields: dict[str, Any] = {"upstream_type": error.type, "upstream_message": text}
        if status == 429:
            return RateLimitError(f"the server reported in {where}: {sentence(text)} "
                                  "Retry later.", **fields)
        return ProviderHTTPError(
            f"{status} {error.type} in {where}: {sentence(text)} Try again later.",
            status_code=status, body=text, **fields)
    return reported_error(error, payload, where=where, secret=secret, provider=provider,
                          received=received)


def _block_events(block: Mapping[str, Any], index: int) -> list[str | Event]:
    """What one whole content block carries (``index``: the tool call's number)."""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return [text] if isinstance(text, str) and text else []
    if kind == "thinking":
        items: list[str | Event] = []
        thinking = block.get("thinking")
        if isinstance(thinking, str) and thinking:
            items.append(Reasoning(thinking))
        signature = block.get("signature")
        if isinstance(signature, str) and signature:
            items.append(ReasoningSignature(signature))
        return items
    if kind == "redacted_thinking":
        data = block.get("data")
        return [RedactedReasoning(data)] if isinstance(data, str) else []
    if kind == "tool_use":
        tool_input = block.get("input")
        arguments = "" if not tool_input else json.dumps(tool_input, ensure_ascii=False,
                                                           separators=(",", ":"))
        return [ToolCallDelta(index, block.get("id") or None, block.get("name") or None,
                              arguments)]
    return []  # server tools' blocks (web search results, ...) carry nothing of ours


def reply_events(payload: Any, *, secret: str | None = None,
                 provider: str | None = None) -> list[str | Event]:
    """The text and events of a whole (non-streamed) ``message``.

    :raises ProviderResponseError: not a ``message`` object.
    :raises ProviderError: (subclasses) the error object it is.
    """
    if not isinstance(payload, Mapping):
        raise ProviderResponseError(f"the reply is not a JSON object: "
                                    f"{quoted(payload, secret)}")
    if payload.get("type") == "error" or "error" in payload:
        raise _error(payload, where="its reply", secret=secret, provider=provider,
                     received=None)
    content = payload.get("content")
    if not isinstance(content, list):
        raise ProviderResponseError(
            "the reply has no content list; the server may not speak Anthropic's "
            f"Messages API: {quoted(json.dumps(payload)[:400], secret)}")
    items: list[str | Event] = []
    ident, model = payload.get("id"), payload.get("model")
    if isinstance(ident, str) or isinstance(model, str):
        items.append(Meta(ident if isinstance(ident, str) else None,
                          model if isinstance(model, str) else None))
    tools = 0
    for block in content:
        if not isinstance(block, Mapping):
            raise ProviderResponseError(f"a content block is not an object: "
                                        f"{quoted(block, secret)}")
        items += _block_events(block, tools)
        tools += block.get("type") == "tool_use"
    finish = _finish(payload.get("stop_reason"), payload.get("stop_sequence"))
    if finish is not None:
        items.append(finish)
    usage = payload.get("usage")
    if isinstance(usage, Mapping):
        counted = usage_of(usage)
        if counted is not None:
            items.append(counted)
    return items


class _StreamState:
    """What a stream has carried so far: counts, tool blocks, whether it finished."""

    __slots__ = ("counts", "delivered", "finished", "received", "tools")

    def __init__(self) -> None:
        self.counts: dict[str, Any] = {}
        self.tools: dict[int, int] = {}  # content block index → tool call index
        self.finished = False
        self.received = 0  # characters of text
        self.delivered = False  # reasoning or a tool call

    def count(self, usage: Any) -> None:
        # message_delta's usage is cumulative: the last value of each count wins.
        if isinstance(usage, Mapping):
            self.counts.update((key, value) for key, value in usage.items()
                               if value is not None)


def _event_items(payload: Any, data: str, state: _StreamState, secret: str | None,
                 provider: str | None) -> list[str | Event]:
    if not isinstance(payload, Mapping):
        raise ProviderResponseError(f"a stream event is not a JSON object: "
                                    f"{quoted(data, secret)}")
    kind = payload.get("type")
    if kind == "content_block_delta":
        delta = payload.get("delta")
        if not isinstance(delta, Mapping):
            raise ProviderResponseError(f"a content_block_delta has no delta: "
                                        f"{quoted(data, secret)}")
        what = delta.get("type")
        if what == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                state.received += len(text)
                return [text]
            return []
        if what == "input_json_delta":
            fragment = delta.get("partial_json")
            index = state.tools.get(payload.get("index"))  # type: ignore[arg-type]
            if index is None:
                raise ProviderResponseError(
                    f"tool input arrived for a block that is no tool call: "
                    f"{quoted(data, secret)}")
            state.delivered = True
            return [ToolCallDelta(index, arguments=fragment)] if isinstance(
                fragment, str) and fragment else []
        if what == "thinking_delta":
            thinking = delta.get("thinking")
            state.delivered = True
            return [Reasoning(thinking)] if isinstance(thinking, str) and thinking else []
        if what == "signature_delta":
            signature = delta.get("signature")
            return [ReasoningSignature(signature)] if isinstance(signature, str) and \
                signature else []
        return []  # citations and deltas of blocks chatplug does not model
    if kind == "content_block_start":
        block = payload.get("content_block")
        if not isinstance(block, Mapping):
            raise ProviderResponseError(f"a content_block_start has no block: "
                                        f"{quoted(data, secret)}")
        index = len(state.tools)
        if block.get("type") == "tool_use":
            state.tools[payload.get("index")] = index  # type: ignore[index]
        items = _block_events(block, index)
        for item in items:
            if type(item) is str:
                state.received += len(item)
            else:
                state.delivered = True
        return items
    if kind == "message_start":
        message = payload.get("message")
        if not isinstance(message, Mapping):
            raise ProviderResponseError(f"a message_start has no message: "
                                        f"{quoted(data, secret)}")
        state.count(message.get("usage"))
        ident, model = message.get("id"), message.get("model")
        started: list[str | Event] = [Meta(ident if isinstance(ident, str) else None,
                                           model if isinstance(model, str) else None)]
        # The input counts come first: a relay can report them before any content.
        usage = usage_of(state.counts)
        if usage is not None:
            started.append(usage)
        return started
    if kind == "message_delta":
        delta = payload.get("delta")
        items = []
        if isinstance(delta, Mapping):
            finish = _finish(delta.get("stop_reason"), delta.get("stop_sequence"))
            if finish is not None and not state.finished:
                state.finished = True
                items.append(finish)
        state.count(payload.get("usage"))
        usage = usage_of(state.counts)
        if usage is not None:
            items.append(usage)
        return items
    if kind == "error" or "error" in payload:
        delivered = state.delivered or state.received > 0
        raise _error(payload, where="the stream", secret=secret, provider=provider,
                     received=state.received if delivered else None)
    return []  # ping, content_block_stop, message_stop (handled by the caller), new types


def stream_events(chunks: Iterable[bytes], *, secret: str | None = None,
                  provider: str | None = None) -> Iterator[str | Event]:
    """The text and events of a streamed reply, from the raw bytes of its SSE stream.

    Ends at ``message_stop``; a clean end after the ``stop_reason`` is accepted too.
    Anything else a loop-driven reply yields (its waits) is passed through.

    :raises StreamInterruptedError: the bytes end before the ``stop_reason``, or an
        error event arrives after content did.
    :raises ProviderResponseError: an event that breaks the format.
    """
    state = _StreamState()

    for item in json_events(chunks, secret=secret, speaks="Anthropic's Messages API"):
        if type(item) is not tuple:  # a loop-driven reply's wait, for the call's driver
            yield item
            continue
        data, payload = item
        if type(payload) is dict:
            kind = payload.get("type")
            if kind == "content_block_delta":
                # The shape nearly every event has, read cheaply; others go below.
                delta = payload.get("delta")
                if type(delta) is dict and delta.get("type") == "text_delta":
                    text = delta.get("text")
                    if type(text) is str:
                        if text:
                            state.received += len(text)
                            yield text
                        continue
            elif kind == "message_stop":
                if not state.finished:
                    break
                return
        yield from _event_items(payload, data, state, secret, provider)
    if not state.finished:
        raise StreamInterruptedError(
            f"the stream ended before its stop_reason after {state.received} characters; "
            "the reply is incomplete. Try again.", received=state.received)


def chat(
    http: HTTPClient,
    endpoint: str,
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: bool,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_tokens: int,
    **options: Any,
) -> Iterator[str | Event]:
    """POST ``messages`` to Anthropic's ``endpoint`` (``{url}/v1/messages``); yield the
    reply's text and events as they arrive.

    :raises InvalidRequestError: what :func:`request_body` refuses (before sending).
    :raises ProviderError: (subclasses) the transport's, and those of
        :func:`stream_events` and :func:`reply_events`.
    """
    body = request_body(model, messages, stream, max_tokens=max_tokens, **options)
    accept = "text/event-stream" if stream else "application/json"
    yield from exchange(http, endpoint, body, request_headers(api_key, accept, headers),
                    streamed=stream_events, whole=reply_events, secret=http.api_key or api_key)


#: Models per page of ``GET /v1/models`` (Anthropic's maximum).
_PAGE = 1000
#: Pages read at most: a server that pages forever must not keep a call going.
_MAX_PAGES = 50


def list_models(http: HTTPClient, url: str, api_key: str | None,
                headers: Mapping[str, str] | None = None) -> list[str]:
    """The model ids Anthropic offers: ``GET {url}/v1/models``, page after page
    (``after_id``), at most :data:`_MAX_PAGES` pages.

    :raises ProviderResponseError: an answer that is not ``{"data": [{"id"}], "has_more",
        "last_id"}``.
    :raises ProviderError: (subclasses) the request failed.
    """
    ids: list[str] = []
    after: str | None = None
    all_headers = request_headers(api_key, "application/json", headers)
    for _ in range(_MAX_PAGES):
        query = f"?limit={_PAGE}" + (f"&after_id={quote(after, safe='')}" if after else "")
        payload = http.get_json(f"{url}/v1/models{query}", headers=all_headers)
        data = payload.get("data") if isinstance(payload, Mapping) else None
        if not isinstance(data, list) or not all(
                isinstance(entry, Mapping) and isinstance(entry.get("id"), str)
                for entry in data):
            raise ProviderResponseError(
                f"the model list from {url}/v1/models is not Anthropic's "
                '{"data": [{"id": ...}], "has_more": ...}.')
        ids += [str(entry["id"]) for entry in data]
        last = payload.get("last_id")
        if not payload.get("has_more") or not isinstance(last, str) or not data:
            return ids
        after = last
    return ids
