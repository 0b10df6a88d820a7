"""The gateway side of Anthropic's Messages wire: the request in, the reply out.

:func:`parse_request` turns a ``POST /v1/messages`` body (what the anthropic SDKs and
Claude Code send) into chatplug's OpenAI-shaped call: ``system`` (a string or
blocks, and ``role: "system"`` messages, which Claude Code sends inside
``messages``) becomes system messages; ``tool_result`` blocks become ``tool``
messages; ``tool_use`` blocks ``tool_calls``; ``thinking`` and
``redacted_thinking`` blocks ride on the assistant message as ``thinking_blocks``;
``cache_control`` stays on its part or tool.  Fields with no equivalent for the
target (``context_management``, ``output_config``, server tools, ...) are named for
``x-chatplug-dropped``.

:class:`MessagesEncoder` writes chatplug's text and events as Anthropic's event
grammar: ``message_start``, one ``content_block_start``/``_delta``/``_stop`` run per
block with its index, ``message_delta`` with the ``stop_reason`` and the usage,
``message_stop``; :func:`message_body` writes a whole reply as a ``message``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequestError
from ..events import (
    CHAT_ONLY,
    Finish,
    Meta,
    Reasoning,
    ReasoningSignature,
    RedactedReasoning,
    ToolCallDelta,
    Usage,
)
from .encode import dumps
from .translated import TranslatedRequest

if TYPE_CHECKING:
    from ..calls.completion import Completion
    from .encode import InBandError

__all__ = ["STOP_REASONS", "MessagesEncoder", "error_body", "message_body", "parse_request",
           "sse"]

#: OpenAI's ``finish_reason`` → Anthropic's ``stop_reason`` (an Anthropic upstream's own
#: reason is used as it came).
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal", "function_call": "tool_use"}
_NATIVE = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn",
                     "refusal", "model_context_window_exceeded"})
#: ``thinking.budget_tokens`` → OpenAI's ``reasoning_effort`` for a target without
#: ``thinking``: up to the first bound is ``low``, up to the second ``medium``.
_EFFORT_BOUNDS = (2048, 16384)
#: Request fields read here; any other top-level field is dropped and named.
_READ = frozenset({"model", "messages", "system", "max_tokens", "stream", "tools",
                   "tool_choice", "stop_sequences", "temperature", "top_p", "top_k",
                   "thinking", "metadata", "service_tier"})


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} must be a string.")
    return value


def _image(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise InvalidRequestError(f"{where}.source must be an object.")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = _text(source.get("url"), f"{where}.source.url")
    else:
        raise InvalidRequestError(f"{where}.source.type must be 'base64' or 'url'.")
    part: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if isinstance(block.get("cache_control"), Mapping):
        part["cache_control"] = dict(block["cache_control"])
    return part


def _text_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": _text(block.get("text"), f"{where}.text")}
    if isinstance(block.get("cache_control"), Mapping):
        part["cache_control"] = dict(block["cache_control"])
    return part


def _blocks(content: Any, where: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where} must be a string or a list of content blocks.")
    for index, block in enumerate(content):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise InvalidRequestError(f"{where}[{index}] must be an object with a 'type'.")
    return content


def _tool_result(block: Mapping[str, Any], where: str,
                 dropped: list[str]) -> dict[str, Any]:
    call_id = _text(block.get("tool_use_id"), f"{where}.tool_use_id")
    content = block.get("content", "")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts = [{"type": "text", "text": content}] if content else []
    else:
        for index, inner in enumerate(_blocks(content, f"{where}.content")):
            if inner["type"] == "text":
                parts.append(_text_part(inner, f"{where}.content[{index}]"))
            else:
                dropped.append(f"tool_result.content.{inner['type']}")
    if block.get("is_error"):
        dropped.append("tool_result.is_error")
    if isinstance(block.get("cache_control"), Mapping) and parts:
        parts[-1]["cache_control"] = dict(block["cache_control"])
    if not parts:
        return {"role": "tool", "tool_call_id": call_id, "content": "(empty)"}
    plain = len(parts) == 1 and set(parts[0]) == {"type", "text"}
    return {"role": "tool", "tool_call_id": call_id,
            "content": parts[0]["text"] if plain else parts}


def _user(content: Any, where: str, dropped: list[str]) -> list[dict[str, Any]]:
    """A user turn: its tool results first (as ``tool`` messages), then its own parts."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, f"{where}.content")):
        here = f"{where}.content[{index}]"
        kind = block["type"]
        if kind == "text":
            parts.append(_text_part(block, here))
        elif kind == "image":
            parts.append(_image(block, here))
        elif kind == "tool_result":
            messages.append(_tool_result(block, here, dropped))
        else:
            dropped.append(f"content.{kind}")
    if parts:
        plain = all(set(part) == {"type", "text"} for part in parts)
        messages.append({"role": "user", "content": "".join(p["text"] for p in parts)
                         if plain and len(parts) == 1 else parts})
    return messages


def _assistant(content: Any, where: str, dropped: list[str]) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content} if content else None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for index, block in enumerate(_blocks(content, f"{where}.content")):
        here = f"{where}.content[{index}]"
        kind = block["type"]
        if kind == "text":
            texts.append(_text(block.get("text"), f"{here}.text"))
        elif kind == "tool_use":
            calls.append({"id": _text(block.get("id"), f"{here}.id"), "type": "function",
                          "function": {"name": _text(block.get("name"), f"{here}.name"),
                                       "arguments": json.dumps(block.get("input") or {},
                                                               ensure_ascii=False)}})
        elif kind == "thinking":
            entry = {"type": "thinking", "thinking": _text(block.get("thinking", ""),
                                                           f"{here}.thinking")}
            if isinstance(block.get("signature"), str):
                entry["signature"] = block["signature"]
            thinking.append(entry)
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking",
                             "data": _text(block.get("data"), f"{here}.data")})
        else:
            dropped.append(f"content.{kind}")
    text = "".join(texts)
    if not (text or calls or thinking):
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    elif not text:
        message["content"] = ""
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _system(system: Any, dropped: list[str]) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    parts = []
    for index, block in enumerate(_blocks(system, "system")):
        if block["type"] == "text":
            parts.append(_text_part(block, f"system[{index}]"))
        else:
            dropped.append(f"system.{block['type']}")
    return [{"role": "system", "content": parts}] if parts else []


def _tools(tools: Any, request: TranslatedRequest) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be a list.")
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(f"tools[{index}] must be an object.")
        if "input_schema" not in tool:  # a server tool (web search, bash, ...): Anthropic's own
            request.dropped.append(f"tools.{tool.get('type') or tool.get('name')}")
            continue
        function: dict[str, Any] = {"name": _text(tool.get("name"), f"tools[{index}].name"),
                                    "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        entry: dict[str, Any] = {"type": "function", "function": function}
        if isinstance(tool.get("cache_control"), Mapping):
            entry["cache_control"] = dict(tool["cache_control"])
        for key in set(tool) - {"name", "description", "input_schema", "cache_control",
                                "type"}:
            request.dropped.append(f"tools.{key}")
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    if not isinstance(choice, Mapping):
        raise InvalidRequestError("tool_choice must be an object with a 'type'.")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        name = _text(choice.get("name"), "tool_choice.name")
        return {"type": "function", "function": {"name": name}}, parallel
    raise InvalidRequestError("tool_choice.type must be 'auto', 'any', 'tool' or 'none'.")


def _effort(thinking: Mapping[str, Any]) -> str:
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"
    return "low" if budget <= _EFFORT_BOUNDS[0] else \
        "medium" if budget <= _EFFORT_BOUNDS[1] else "high"


def parse_request(body: Any) -> TranslatedRequest:
    """A Messages request as chatplug's call.

    :raises InvalidRequestError: a body that is not a Messages request, naming the field.
    """
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the body must be a JSON object.")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequestError("model must be a string.")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("messages must be a non-empty list.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream must be a boolean.")
    request = TranslatedRequest(model=model, messages=[], stream=stream)
    dropped = request.dropped
    messages = _system(body.get("system"), dropped)
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"{where} must be an object.")
        role = message.get("role")
        content = message.get("content")
        if role == "user":
            messages += _user(content, where, dropped)
        elif role == "assistant":
            turn = _assistant(content, where, dropped)
            if turn is not None:
                messages.append(turn)
        elif role == "system":  # Claude Code sends one inside messages
            messages += _system(content, dropped)
        else:
            raise InvalidRequestError(f"{where}.role must be 'user' or 'assistant'.")
    request.messages = messages
    if "max_tokens" in body:
        limit = body["max_tokens"]
        request.add("max_tokens", ("max_tokens", limit), ("max_completion_tokens", limit),
                    ("max_output_tokens", limit))
    for name in ("temperature", "top_p", "top_k", "service_tier"):
        if body.get(name) is not None:
            request.add(name, (name, body[name]))
    if body.get("stop_sequences"):
        request.add("stop_sequences", ("stop", list(body["stop_sequences"])))
    if body.get("tools"):
        tools = _tools(body["tools"], request)
        if tools:
            request.add("tools", ("tools", tools))
    if body.get("tool_choice") is not None:
        choice, parallel = _tool_choice(body["tool_choice"])
        if body.get("tools"):
            request.add("tool_choice", ("tool_choice", choice))
        if parallel is not None:
            request.add("tool_choice.disable_parallel_tool_use",
                        ("parallel_tool_calls", parallel))
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") != "disabled":
        config: dict[str, Any] = {"includeThoughts": True}
        if isinstance(thinking.get("budget_tokens"), int):
            config["thinkingBudget"] = thinking["budget_tokens"]
        request.add("thinking", ("thinking", dict(thinking)), ("thinking_config", config),
                    ("reasoning_effort", _effort(thinking)))
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        if isinstance(metadata.get("user_id"), str):
            request.add("metadata.user_id", ("user", metadata["user_id"]))
        dropped += [f"metadata.{key}" for key in metadata if key != "user_id"]
    dropped += sorted(key for key in body if key not in _READ)
    return request


# -- the reply -----------------------------------------------------------------------


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One event of the grammar: ``event: NAME`` and its JSON ``data``."""
    return (b"event: " + event.encode() + b"\ndata: "
            + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n")


def _stop_reason(reason: str | None, native: str | None) -> str:
    if native is not None and native in _NATIVE:
        return native
    return STOP_REASONS.get(reason or "stop", "end_turn")


def usage_body(usage: Usage | None) -> dict[str, int]:
    """Anthropic's usage from chatplug's: ``input_tokens`` without the cached ones."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    read = usage.cached_tokens or 0
    written = usage.cache_creation_tokens or 0
    body = {"input_tokens": max(0, (usage.prompt_tokens or 0) - read - written),
            "output_tokens": usage.completion_tokens or 0}
    if usage.cached_tokens is not None or usage.cache_creation_tokens is not None:
        body["cache_read_input_tokens"] = read
        body["cache_creation_input_tokens"] = written
    return body


def _message_id(ident: str | None) -> str:
    return ident if ident and ident.startswith("msg_") else f"msg_{os.urandom(12).hex()}"


def _tool_id(ident: str | None) -> str:
    return ident or f"toolu_{os.urandom(12).hex()}"


def message_body(completion: Completion, model: str) -> dict[str, Any]:
    """A whole reply as Anthropic's ``message`` object."""
    content: list[dict[str, Any]] = [dict(block) for block in completion.reasoning_blocks]
    if not content and completion.reasoning:
        content.append({"type": "thinking", "thinking": completion.reasoning,
                        "signature": ""})
    if completion.text:
        content.append({"type": "text", "text": completion.text})
    for call in completion.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = {"_raw": call.arguments}
        content.append({"type": "tool_use", "id": _tool_id(call.id), "name": call.name,
                        "input": arguments})
    return {"id": _message_id(completion.id), "type": "message", "role": "assistant",
            "model": model, "content": content,
            "stop_reason": _stop_reason(completion.finish_reason,
                                        completion.native_finish_reason),
            "stop_sequence": completion.stop_sequence, "usage": usage_body(completion.usage)}


def error_body(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error envelope."""
    return {"type": "error", "error": {"type": kind, "message": message}}


class MessagesEncoder:
    """chatplug's text and events → Anthropic's event grammar, one item at a time.

    ``message_start`` waits for the first item after the upstream's ``Meta`` so that
    the input usage an upstream reports at its start (Anthropic's ``message_start``)
    goes out in it.  Text goes into a ``text`` block, reasoning into a ``thinking``
    block closed by its signature, each tool call into its own ``tool_use`` block
    whose ``input_json_delta`` fragments carry the arguments in order.
    """

    __slots__ = ("_block", "_finish", "_id", "_kind", "_model", "_started", "_text_head",
                 "_tools", "usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id: str | None = None
        self._started = False
        self._block = -1  # the index of the open block (-1: none)
        self._kind: str | None = None  # its type; a tool block is "tool_use:<index>"
        self._tools: dict[int, int] = {}  # tool call index → block index
        self._finish: Finish | None = None
        self.usage: Usage | None = None
        #: The bytes before a text delta's text in the open text block (the hot path).
        self._text_head = b""

    def start(self) -> bytes:
        """``message_start`` (once)."""
        if self._started:
            return b""
        self._started = True
        usage = usage_body(self.usage)
        usage["output_tokens"] = 0
        return sse("message_start", {"type": "message_start", "message": {
            "id": _message_id(self._id), "type": "message", "role": "assistant",
            "model": self._model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": usage}})

    def _close(self) -> bytes:
        if self._block < 0 or self._kind is None:
            return b""
        self._kind = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._block += 1
        self._kind = kind
        return out + sse("content_block_start", {"type": "content_block_start",
                                                 "index": self._block, "content_block": block})

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta",
                                           "index": self._block if index is None else index,
                                           "delta": delta})

    def encode(self, item: object) -> bytes:
        """The bytes for one item (``b""`` for what sends nothing now)."""
        if type(item) is str:
            if not item:
                return b""
            out = self.start()
            if self._kind != "text":
                out += self._open("text", {"type": "text", "text": ""})
                self._text_head = (
                    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                    + str(self._block).encode() + b',"delta":{"type":"text_delta","text":')
            return out + self._delta({"type": "text_delta", "text": item})
        if isinstance(item, CHAT_ONLY):
            return b""  # other choices (n > 1), refusal, logprobs: chat completions only
        if isinstance(item, Meta):
            self._id = self._id or item.id
            return b""
        if isinstance(item, Usage):
            self.usage = item
            return b""
        out = self.start()
        if isinstance(item, ToolCallDelta):
            block = self._tools.get(item.index)
            if block is None:
                out += self._open(f"tool_use:{item.index}", {
                    "type": "tool_use", "id": _tool_id(item.id), "name": item.name or "",
                    "input": {}})
                block = self._tools[item.index] = self._block
            if item.arguments:
                out += self._delta({"type": "input_json_delta", "partial_json": item.arguments},
                                   block)
            return out
        if isinstance(item, Reasoning):
            if not item.text:
                return out
            if self._kind != "thinking":
                out += self._open("thinking", {"type": "thinking", "thinking": "",
                                               "signature": ""})
            return out + self._delta({"type": "thinking_delta", "thinking": item.text})
        if isinstance(item, ReasoningSignature):
            if self._kind != "thinking":
                out += self._open("thinking", {"type": "thinking", "thinking": "",
                                               "signature": ""})
            return out + self._delta({"type": "signature_delta", "signature": item.signature}) \
                + self._close()
        if isinstance(item, RedactedReasoning):
            return out + self._open("redacted_thinking", {"type": "redacted_thinking",
                                                          "data": item.data}) + self._close()
        if isinstance(item, Finish):
            self._finish = item
            return out
        raise TypeError(f"not a text piece or a chatplug event: {type(item).__name__}")

    def end(self) -> bytes:
        """What ends a stream that went well: the open block's stop, ``message_delta``
        (stop reason, usage) and ``message_stop``."""
        out = self.start() + self._close()
        finish = self._finish
        return out + sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(finish.reason if finish else None,
                                                  finish.native if finish else None),
                      "stop_sequence": finish.stop_sequence if finish else None},
            "usage": usage_body(self.usage)}) + sse("message_stop", {"type": "message_stop"})

    def content(self, text: str) -> bytes:
        """A text piece: in the open text block, straight from a template."""
        if self._kind == "text" and text:
            return self._text_head + dumps(text).encode() + b"}}\n\n"
        return self.encode(text)

    def failure(self, error: InBandError) -> bytes:
        """An in-band ``error`` event (Anthropic's envelope); the stream ends after it."""
        return sse("error", error.anthropic_body)

    #: Seconds of silence after which the relay sends a ``ping`` (as Anthropic's API does,
    #: so that clients and proxies do not take a long pause for a dead connection).
    PING_SECONDS = 10.0

    @staticmethod
    def ping() -> bytes:
        return sse("ping", {"type": "ping"})
