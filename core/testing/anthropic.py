"""Anthropic's Messages API as the scripted server writes it, from a :class:`Script`.

A whole reply is one ``message`` object; a stream is Anthropic's event grammar:
``message_start`` (with the input usage), per block ``content_block_start`` /
``content_block_delta`` (``thinking_delta`` then ``signature_delta``, ``text_delta``,
``input_json_delta``) / ``content_block_stop``, ``message_delta`` (``stop_reason``,
the cumulative usage), ``message_stop``.  Blocks come in the order thinking,
redacted thinking, text, tool calls.  Errors are ``{"type": "error", "error": {"type",
"message"}}``, the type following the status as Anthropic's does.

The script's fields mean what they mean for every protocol: ``reasoning`` is the
thinking text (signed with ``signature``), ``tool_calls`` are OpenAI-shaped (their
JSON arguments become ``input``, streamed in fragments of ``fragment`` characters),
``usage`` is sent as given when it is Anthropic's (OpenAI's counts are renamed),
``finish_reason`` is the native
``stop_reason`` (default ``tool_use`` with tool calls, else ``end_turn``).
"""

from __future__ import annotations

import json
from typing import Any

from .script import Script, split_words

__all__ = ["ERROR_TYPES", "events", "message", "model_page", "stop_reason", "usage"]

#: The error type Anthropic sends with each status.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def stop_reason(script: Script) -> str:
    if script.finish_reason is not None:
        return script.finish_reason
    return "tool_use" if script.tool_calls else "end_turn"


_NATIVE_COUNTS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                  "cache_read_input_tokens")


def usage(script: Script) -> dict[str, Any]:
    """The usage to report: the script's as given when it is Anthropic's, OpenAI's
    ``prompt_tokens``/``completion_tokens`` renamed, else zero counts (the SDK
    requires a usage)."""
    counts = script.usage
    if counts is None:
        return {"input_tokens": 0, "output_tokens": 0}
    if any(key in counts for key in _NATIVE_COUNTS):
        return dict(counts)
    return {"input_tokens": counts.get("prompt_tokens", 0),
            "output_tokens": counts.get("completion_tokens", 0)}


def _tool_input(call: dict[str, Any]) -> tuple[str, Any]:
    arguments = str(call.get("function", {}).get("arguments") or "{}")
    try:
        return arguments, json.loads(arguments)
    except ValueError:
        return arguments, {}


def _thinking(script: Script) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if script.reasoning:
        blocks.append({"type": "thinking", "thinking": script.reasoning,
                       "signature": script.signature})
    blocks += [{"type": "redacted_thinking", "data": data} for data in script.redacted or ()]
    return blocks


def message(script: Script, model: str) -> dict[str, Any]:
    """The whole ``message`` object of a non-streamed reply."""
    content = _thinking(script)
    text = "".join(script.reply_pieces())
    if text:
        content.append({"type": "text", "text": text})
    for call in script.tool_calls or ():
        content.append({"type": "tool_use", "id": call.get("id"),
                        "name": call.get("function", {}).get("name"),
                        "input": _tool_input(call)[1]})
    return {"id": script.id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason(script),
            "stop_sequence": script.stop_sequence, "usage": usage(script)}


Event = tuple[str, dict[str, Any]]


def events(script: Script, model: str) -> tuple[list[Event], list[list[Event]], list[Event]]:
    """The stream as ``(event name, data)`` pairs: the opening events, the pieces (each
    the events written together: a delta with the block boundaries around it; a tool
    call's start, as OpenAI's first fragment, on its own), and the closing events.

    Pieces count as every protocol's do (reasoning pieces, text pieces, tool-call
    fragments), so ``drop_after`` and ``hold_after`` mean the same here.
    """
    counts = usage(script)
    start_usage = {key: value for key, value in counts.items() if key != "output_tokens"}
    start_usage["output_tokens"] = 1
    opening: list[Event] = [("message_start", {"type": "message_start", "message": {
        "id": script.id, "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
    pieces: list[list[Event]] = []
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]], *,
              alone: bool = False) -> None:
        nonlocal index
        events: list[list[Event]] = [[("content_block_delta", {
            "type": "content_block_delta", "index": index, "delta": delta})]
            for delta in deltas]
        opening_event = ("content_block_start", {"type": "content_block_start",
                                                 "index": index, "content_block": start})
        if alone or not events:
            events.insert(0, [opening_event])
        else:
            events[0].insert(0, opening_event)
        events[-1].append(("content_block_stop", {"type": "content_block_stop",
                                                  "index": index}))
        pieces.extend(events)
        index += 1

    if script.reasoning:
        deltas = [{"type": "thinking_delta", "thinking": piece}
                  for piece in split_words(script.reasoning)]
        block({"type": "thinking", "thinking": "", "signature": ""}, deltas)
        # The signature closes the block, in the same write as its last thought.
        pieces[-1].insert(-1, ("content_block_delta", {
            "type": "content_block_delta", "index": index - 1,
            "delta": {"type": "signature_delta", "signature": script.signature}}))
    for data in script.redacted or ():
        block({"type": "redacted_thinking", "data": data}, [])
    text = script.reply_pieces()
    if text:
        block({"type": "text", "text": ""},
              [{"type": "text_delta", "text": piece} for piece in text])
    step = max(1, script.fragment)
    for call in script.tool_calls or ():
        arguments = _tool_input(call)[0]
        block({"type": "tool_use", "id": call.get("id"),
               "name": call.get("function", {}).get("name"), "input": {}},
              [{"type": "input_json_delta", "partial_json": arguments[at:at + step]}
               for at in range(0, len(arguments), step)], alone=True)
    closing: list[Event] = []
    if script.finish:
        closing.append(("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": stop_reason(script), "stop_sequence": script.stop_sequence},
            "usage": counts}))
    if script.done:
        closing.append(("message_stop", {"type": "message_stop"}))
    return opening, pieces, closing


def model_page(models: list[str], limit: int, after: str | None) -> dict[str, Any]:
    """One page of ``GET /v1/models``, as Anthropic pages it (``after_id``, ``has_more``)."""
    start = models.index(after) + 1 if after in models else 0
    page = models[start:start + max(1, limit)]
    return {"data": [{"type": "model", "id": name, "display_name": name,
                      "created_at": "2025-01-01T00:00:00Z"} for name in page],
            "has_more": start + len(page) < len(models),
            "first_id": page[0] if page else None, "last_id": page[-1] if page else None}
