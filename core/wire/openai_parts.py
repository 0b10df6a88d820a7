"""The parts of OpenAI's chat-completions replies, read into :mod:`chatplug.events`.

What a message (a whole reply's) and a delta (a stream chunk's) carry is the same
list: reasoning, text, refusal, annotations and tool calls (:func:`part_items`);
a choice adds its logprobs and finish reason, and a choice after the first is
wrapped in :class:`~chatplug.events.Choice` (:func:`of_choice`).  The reply or
chunk carries :class:`~chatplug.events.Meta` and the usage.  Used by
:mod:`chatplug.wire.openai`, which reads the replies and streams themselves.

:raises ProviderResponseError: (every reader here) a part that breaks the format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ProviderResponseError
from ..events import (
    Annotations,
    Choice,
    Logprobs,
    Meta,
    Reasoning,
    Refusal,
    ToolCallDelta,
    Usage,
)
from . import token_count
from .errors import quoted

if TYPE_CHECKING:
    from ..events import Event

__all__ = ["choice_index", "logprobs_of", "meta_of", "of_choice", "part_items", "usage_of"]

_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def usage_of(usage: Any) -> Usage | None:
    """:class:`Usage` from OpenAI's ``usage`` object, with the counts of its
    ``*_tokens_details`` (cached, reasoning, audio, prediction) when present; ``None``
    if it holds no count."""
    if not isinstance(usage, Mapping):
        return None
    counts = [token_count(usage.get(name)) for name in _COUNTS]
    if counts == [None, None, None]:
        return None
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    if not prompt and not completion:
        return Usage(*counts)
    prompt = prompt if isinstance(prompt, Mapping) else {}
    completion = completion if isinstance(completion, Mapping) else {}
    return Usage(counts[0], counts[1], counts[2],
                 cached_tokens=token_count(prompt.get("cached_tokens")),
                 reasoning_tokens=token_count(completion.get("reasoning_tokens")),
                 prompt_audio_tokens=token_count(prompt.get("audio_tokens")),
                 completion_audio_tokens=token_count(completion.get("audio_tokens")),
                 accepted_prediction_tokens=token_count(
                     completion.get("accepted_prediction_tokens")),
                 rejected_prediction_tokens=token_count(
                     completion.get("rejected_prediction_tokens")))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def meta_of(payload: Mapping[str, Any]) -> Meta | None:
    meta = Meta(_text(payload.get("id")), _text(payload.get("model")),
                _text(payload.get("system_fingerprint")), _text(payload.get("service_tier")))
    return meta if meta != _NO_META else None


_NO_META = Meta()


def _reasoning(part: Mapping[str, Any]) -> Reasoning | None:
    for name in ("reasoning_content", "reasoning"):
        text = part.get(name)
        if isinstance(text, str) and text:
            return Reasoning(text)
    return None


def _tool_call(fragment: Any, position: int, data: Any, secret: str | None) -> ToolCallDelta:
    """One entry of ``tool_calls`` (a streamed fragment or a whole call)."""
    function = fragment.get("function") if isinstance(fragment, Mapping) else None
    index = fragment.get("index", position) if isinstance(fragment, Mapping) else None
    if (function is not None and not isinstance(function, Mapping)) or type(index) is not int \
            or index < 0:
        raise ProviderResponseError(
            f"a tool call in the reply is malformed: {quoted(data, secret)}; the server "
            "may not be OpenAI-compatible."
        )
    function = function or {}
    call_id, name, arguments = fragment.get("id"), function.get("name"), function.get("arguments")
    if arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        # Some servers send the arguments as an object; the contract is JSON text.
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCallDelta(index, call_id if isinstance(call_id, str) and call_id else None,
                         name if isinstance(name, str) and name else None, arguments)


def _tool_calls(calls: Any, data: Any, secret: str | None) -> list[ToolCallDelta]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise ProviderResponseError(
            f"the reply's tool_calls is not a list: {quoted(data, secret)}"
        )
    return [_tool_call(call, position, data, secret) for position, call in enumerate(calls)]


def logprobs_of(choice: Mapping[str, Any]) -> Logprobs | None:
    """A choice's ``logprobs`` (``{"content": [...], "refusal": [...]}``), if any."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping):
        return None
    content, refusal = logprobs.get("content"), logprobs.get("refusal")
    content = content if isinstance(content, list) and content else None
    refusal = refusal if isinstance(refusal, list) and refusal else None
    return Logprobs(content, refusal) if content or refusal else None


def part_items(part: Mapping[str, Any], data: Any, secret: str | None,
                where: str) -> list[str | Event]:
    """What one message or delta carries, in order: reasoning, text, refusal,
    annotations, tool calls."""
    items: list[str | Event] = []
    reasoning = _reasoning(part)
    if reasoning is not None:
        items.append(reasoning)
    text = part.get("content")
    if text is not None and not isinstance(text, str):
        raise ProviderResponseError(
            f"{where} content is {type(text).__name__}, not text: {quoted(data, secret)}"
        )
    if text:
        items.append(text)
    refusal = part.get("refusal")
    if isinstance(refusal, str) and refusal:
        items.append(Refusal(refusal))
    annotations = part.get("annotations")
    if isinstance(annotations, list) and annotations:
        items.append(Annotations(list(annotations)))
    items.extend(_tool_calls(part.get("tool_calls"), data, secret))
    return items


def choice_index(choice: Mapping[str, Any], position: int, data: Any,
                  secret: str | None) -> int:
    index = choice.get("index", position)
    if index is None:
        return position
    if type(index) is not int or index < 0:
        raise ProviderResponseError(
            f"a choice's index is not a count: {quoted(data, secret)}"
        )
    return index


def of_choice(index: int, items: list[str | Event]) -> list[str | Event]:
    """Choice 0's items as they are; another choice's wrapped in :class:`Choice`."""
    return items if index == 0 else [Choice(index, item) for item in items]
