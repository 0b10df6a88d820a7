"""Chat messages: the one shape every provider receives, checked before anything is sent.

A non-empty list of dicts, as OpenAI shapes them:

- ``role``: ``system``, ``developer``, ``user``, ``assistant`` or ``tool``;
- ``content``: a string, or a list of parts ``{"type": "text", "text": ...}`` and
  ``{"type": "image_url", "image_url": {"url": ..., "detail"?: ...}}``;
- an assistant message may carry ``tool_calls`` and then empty or null content;
- a ``tool`` message needs ``tool_call_id``; ``name`` is optional everywhere;
- an assistant message may carry the reasoning a provider needs back:
  ``thinking_blocks`` (as :attr:`chatplug.Completion.message` gives them:
  ``{"type": "thinking", "thinking", "signature"?}`` and
  ``{"type": "redacted_thinking", "data"}``) and ``reasoning_content``;
- a part may carry ``cache_control`` (Anthropic's prompt caching; other wires
  leave it out).

Unknown keys and malformed parts are refused, naming the message and field.
The provider gets a private copy, so it can never change the caller's list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequestError

__all__ = ["ROLES", "TOOLS", "VISION", "required_capabilities", "validate_messages"]

ROLES = ("system", "developer", "user", "assistant", "tool")
#: Capabilities a call may need (see :func:`required_capabilities`).
TOOLS = "tools"
VISION = "vision"
_KEYS = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "tool_calls", "refusal",
                            "thinking_blocks", "reasoning_content"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
_PART_TYPES = ("text", "image_url")
_DETAILS = ("auto", "low", "high")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} must be a string, not {type(value).__name__}.")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequestError(
                f"{where} is not valid Unicode text: {exc.reason} at position "
                f"{exc.start} (undecoded bytes from a file or terminal?)."
            ) from None
    return value


def _part(part: Any, where: str, role: str) -> dict[str, Any]:
    if not isinstance(part, Mapping):
        raise InvalidRequestError(f"{where} must be a dict with a 'type', not "
                                  f"{type(part).__name__}.")
    kind = part.get("type")
    if kind not in _PART_TYPES:
        raise InvalidRequestError(f"{where}.type is {kind!r}; it must be one of "
                                  f"{', '.join(_PART_TYPES)}.")
    if "cache_control" in part and not isinstance(part["cache_control"], Mapping):
        raise InvalidRequestError(f"{where}.cache_control must be a dict "
                                  "({'type': 'ephemeral'}).")
    if kind == "text":
        extra = set(part) - {"type", "text", "cache_control"}
        if extra:
            raise InvalidRequestError(f"{where} has unknown key(s) "
                                      f"{', '.join(sorted(map(repr, extra)))}.")
        _text(part.get("text"), f"{where}.text")
        return dict(part)
    if role != "user":
        raise InvalidRequestError(f"{where}: image parts belong in user messages, not {role}.")
    extra = set(part) - {"type", "image_url", "cache_control"}
    if extra:
        raise InvalidRequestError(f"{where} has unknown key(s) "
                                  f"{', '.join(sorted(map(repr, extra)))}.")
    image = part.get("image_url")
    if not isinstance(image, Mapping):
        raise InvalidRequestError(f"{where}.image_url must be a dict with a 'url'.")
    extra = set(image) - {"url", "detail"}
    if extra:
        raise InvalidRequestError(f"{where}.image_url has unknown key(s) "
                                  f"{', '.join(sorted(map(repr, extra)))}.")
    url = image.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
        raise InvalidRequestError(f"{where}.image_url.url must be an http(s) or data: URL.")
    if "detail" in image and image["detail"] not in _DETAILS:
        raise InvalidRequestError(f"{where}.image_url.detail must be one of "
                                  f"{', '.join(_DETAILS)}.")
    checked = {"type": "image_url", "image_url": dict(image)}
    if "cache_control" in part:
        checked["cache_control"] = dict(part["cache_control"])
    return checked


_BLOCK_KEYS = {"thinking": ({"type", "thinking"}, {"signature"}),
               "redacted_thinking": ({"type", "data"}, set())}


def _thinking_blocks(blocks: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(blocks, Sequence) or isinstance(blocks, (str, bytes)):
        raise InvalidRequestError(f"{where} must be a list of reasoning blocks.")
    checked: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        here = f"{where}[{index}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind not in _BLOCK_KEYS:
            raise InvalidRequestError(f"{here} must be a dict of type 'thinking' or "
                                      "'redacted_thinking', as Completion.message gives it.")
        required, optional = _BLOCK_KEYS[kind]
        keys = set(block)
        if not required <= keys or keys - required - optional:
            raise InvalidRequestError(
                f"{here} must have exactly {', '.join(sorted(required | optional))} "
                f"(a {kind} block as Completion.message gives it).")
        for key in keys - {"type"}:
            _text(block[key], f"{here}.{key}")
        checked.append(dict(block))
    return checked


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)) or not calls:
        raise InvalidRequestError(f"{where} must be a non-empty list of tool calls.")
    checked: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        here = f"{where}[{index}]"
        if not isinstance(call, Mapping):
            raise InvalidRequestError(f"{here} must be a dict.")
        extra = set(call) - {"id", "type", "function"}
        if extra:
            raise InvalidRequestError(f"{here} has unknown key(s) "
                                      f"{', '.join(sorted(map(repr, extra)))}.")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise InvalidRequestError(f"{here}.id must be a non-empty string.")
        if call.get("type", "function") != "function":
            raise InvalidRequestError(f"{here}.type must be 'function'.")
        function = call.get("function")
        if not isinstance(function, Mapping) or set(function) - {"name", "arguments"}:
            raise InvalidRequestError(f"{here}.function must be "
                                      "{'name': str, 'arguments': str}.")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequestError(f"{here}.function.name must be a non-empty string.")
        if not isinstance(function.get("arguments", ""), str):
            raise InvalidRequestError(f"{here}.function.arguments must be a JSON string.")
        checked.append({"id": call["id"], "type": "function",
                        "function": {"name": function["name"],
                                     "arguments": function.get("arguments", "")}})
    return checked


def _message(message: Any, where: str) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise InvalidRequestError(
            f"{where} must be a dict with 'role' and 'content', not {type(message).__name__}."
        )
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequestError(f"{where}.role is {role!r}; it must be one of "
                                  f"{', '.join(ROLES)}.")
    allowed = _KEYS[role]
    extra = set(message) - allowed
    if extra:
        raise InvalidRequestError(
            f"{where} has unknown key(s) {', '.join(sorted(map(repr, extra)))}; "
            f"allowed in a {role} message: {', '.join(map(repr, sorted(allowed)))}."
        )
    checked: dict[str, Any] = {"role": role}
    has_tool_calls = "tool_calls" in message and message["tool_calls"] is not None
    content = message.get("content")
    if isinstance(content, str):
        _text(content, f"{where}.content")
        if not content and not has_tool_calls:
            raise InvalidRequestError(f"{where}.content is empty.")
        checked["content"] = content
    elif content is None and has_tool_calls:
        checked["content"] = None
    elif isinstance(content, Sequence) and not isinstance(content, (str, bytes)):
        parts = [_part(p, f"{where}.content[{i}]", role) for i, p in enumerate(content)]
        if not parts and not has_tool_calls:
            raise InvalidRequestError(f"{where}.content is an empty list of parts.")
        checked["content"] = parts
    else:
        raise InvalidRequestError(
            f"{where}.content must be a string or a list of parts, not {type(content).__name__}."
        )
    if has_tool_calls:
        checked["tool_calls"] = _tool_calls(message["tool_calls"], f"{where}.tool_calls")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequestError(f"{where}.tool_call_id is required in a tool message "
                                      "(the id of the tool call it answers).")
        checked["tool_call_id"] = call_id
    if message.get("thinking_blocks") is not None:
        checked["thinking_blocks"] = _thinking_blocks(message["thinking_blocks"],
                                                      f"{where}.thinking_blocks")
    for key in ("name", "refusal", "reasoning_content"):
        if key in message and message[key] is not None:
            checked[key] = _text(message[key], f"{where}.{key}")
    return checked


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    """Check the chat messages and return a private copy of them.

    :raises InvalidRequestError: naming the offending message and field.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidRequestError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
            f"not {type(messages).__name__}.", param="messages"
        )
    if not messages:
        raise InvalidRequestError(
            "messages is empty: pass at least one {'role': 'user', 'content': '...'}.",
            param="messages",
        )
    checked: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if (type(message) is dict and len(message) == 2 and type(message.get("content")) is str
                and message.get("role") in ("user", "system", "assistant")
                and message["content"] and message["content"].isascii()):
            checked.append(dict(message))  # the common shape, checked cheaply
            continue
        try:
            checked.append(_message(message, f"messages[{index}]"))
        except InvalidRequestError as error:
            # Every message above starts with the path of the field at fault.
            field = _FIELD.match(error.message)
            error.param = field.group(0) if field else f"messages[{index}]"
            raise
    return checked


#: The path a message of this module starts with: ``messages[0].content[1].image_url``.
_FIELD = re.compile(r"messages\[\d+\](?:\.[A-Za-z_]+|\[\d+\])*")


def required_capabilities(messages: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """What validated ``messages`` need of a provider: :data:`TOOLS`, :data:`VISION`."""
    needed: set[str] = set()
    for message in messages:
        if message.get("role") == "tool" or message.get("tool_calls"):
            needed.add(TOOLS)
        content = message.get("content")
        if isinstance(content, list) and any(p.get("type") == "image_url" for p in content):
            needed.add(VISION)
    return frozenset(needed)
