"""OpenAI's Responses wire as the gateway serves it: the request in, the reply out.

:func:`parse_request` turns a ``POST /v1/responses`` body (what the openai SDKs and
Codex send) into chatplug's OpenAI-shaped call: ``instructions`` and
``system``/``developer`` items become system messages; ``message`` items with
``input_text``/``input_image``/``output_text`` parts become user and assistant
messages; ``function_call`` items the assistant's ``tool_calls`` and
``function_call_output`` items ``tool`` messages; a ``reasoning`` item the gateway
wrote itself carries the signed reasoning back (``encrypted_content``).  Flat
function tools become chat tools; the functions of a ``namespace`` tool are offered as
``<namespace>__<name>`` and their calls come back under the names the client used.
Hosted tools (``web_search``, ...), ``include`` and other fields with no equivalent are
named for ``x-chatplug-dropped``.

:class:`ResponsesEncoder` writes chatplug's text and events as the Responses event
stream (every event with its ``sequence_number``), and :meth:`ResponsesEncoder.response`
the ``response`` object, whole or as it stands.
"""

from __future__ import annotations

import base64
import json
import os
import time
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

__all__ = ["NAMESPACE_SEPARATOR", "ParsedResponses", "ResponsesEncoder", "completion_items",
           "conversation", "parse_request", "usage_body"]

#: Joins a namespace and a function's name into the name offered upstream.
NAMESPACE_SEPARATOR = "__"
#: What marks a ``reasoning`` item's ``encrypted_content`` as the gateway's own.
_OWN = "chatplug:"
#: Request fields read here; any other top-level field is dropped and named.
_READ = frozenset({"model", "input", "instructions", "tools", "tool_choice",
                   "parallel_tool_calls", "max_output_tokens", "temperature", "top_p",
                   "reasoning", "text", "metadata", "store", "previous_response_id", "stream",
                   "user", "service_tier", "include"})


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} must be a string.")
    return value


def _content(content: Any, where: str, dropped: list[str]) -> Any:
    """A message item's content as chat content (a string when it is only text)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where} must be a string or a list of parts.")
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        here = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": _text(part.get("text"), f"{here}.text")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("auto", "low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _text(part.get("refusal"), f"{here}.refusal")})
        else:
            dropped.append(f"input.content.{kind}")
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _reasoning_blocks(item: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The signed reasoning a ``reasoning`` item of the gateway's carries, else ``None``."""
    sealed = item.get("encrypted_content")
    if not isinstance(sealed, str) or not sealed.startswith(_OWN):
        return None
    try:
        blocks = json.loads(base64.b64decode(sealed[len(_OWN):], validate=True))
    except ValueError:
        return None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return None
    return blocks


def _seal(blocks: list[dict[str, Any]]) -> str:
    return _OWN + base64.b64encode(json.dumps(blocks, separators=(",", ":")).encode()).decode()


def _assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message items join (the last one, unless a user spoke since)."""
    if messages and messages[-1]["role"] == "assistant":
        return messages[-1]
    message: dict[str, Any] = {"role": "assistant", "content": None}
    messages.append(message)
    return message


def _items(items: list[Any], names: dict[str, str], dropped: list[str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidRequestError(f"{where} must be an object.")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequestError(f"{where}.role must be user, assistant, system or "
                                          "developer.")
            content = _content(item.get("content"), f"{where}.content", dropped)
            if role == "assistant":
                message = _assistant(messages)
                if message.get("tool_calls") or message["content"]:
                    message = {"role": "assistant", "content": None}
                    messages.append(message)
                message["content"] = content if isinstance(content, str) else \
                    "".join(p.get("text", "") for p in content)
            elif content:
                messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call_id = _text(item.get("call_id"), f"{where}.call_id")
            name = _text(item.get("name"), f"{where}.name")
            namespace = item.get("namespace")
            flat = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if isinstance(namespace, str) \
                and namespace else name
            arguments = item.get("arguments", "")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            message = _assistant(messages)
            message.setdefault("tool_calls", []).append(
                {"id": call_id, "type": "function",
                 "function": {"name": flat, "arguments": arguments}})
            names[call_id] = flat
        elif kind == "function_call_output":
            call_id = _text(item.get("call_id"), f"{where}.call_id")
            output = item.get("output", "")
            if not isinstance(output, str):
                output = _content(output, f"{where}.output", dropped)
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": output if output else "(empty)"})
        elif kind == "reasoning":
            blocks = _reasoning_blocks(item)
            if blocks is None:
                dropped.append("input.reasoning")
            else:
                _assistant(messages).setdefault("thinking_blocks", []).extend(blocks)
        else:
            dropped.append(f"input.{kind}")
    for message in messages:  # an assistant turn that only carries reasoning says nothing
        if message["role"] == "assistant" and message["content"] is None \
                and not message.get("tool_calls"):
            message["content"] = ""
    return messages


def _tools(tools: Any, request: TranslatedRequest,
           namespaces: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be a list.")
    out: list[dict[str, Any]] = []

    def function(tool: Mapping[str, Any], prefix: str | None, where: str) -> None:
        name = _text(tool.get("name"), f"{where}.name")
        flat = f"{prefix}{NAMESPACE_SEPARATOR}{name}" if prefix else name
        spec: dict[str, Any] = {"name": flat,
                                "parameters": tool.get("parameters") or {"type": "object",
                                                                         "properties": {}}}
        if tool.get("description"):
            spec["description"] = tool["description"]
        if tool.get("strict") is not None:
            spec["strict"] = bool(tool["strict"])
        if prefix:
            namespaces[flat] = (prefix, name)
        out.append({"type": "function", "function": spec})

    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind == "function":
            function(tool, None, where)
        elif kind == "namespace" and isinstance(tool.get("tools"), list):
            prefix = _text(tool.get("name"), f"{where}.name")
            for inner_index, inner in enumerate(tool["tools"]):
                if isinstance(inner, Mapping) and inner.get("type", "function") == "function":
                    function(inner, prefix, f"{where}.tools[{inner_index}]")
                else:
                    request.dropped.append(f"tools.{prefix}.{inner.get('type')}"
                                           if isinstance(inner, Mapping) else "tools")
        else:
            request.dropped.append(f"tools.{kind}")
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "required", "none"):
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": _text(choice.get("name"),
                                                               "tool_choice.name")}}
    return None


def _text_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {key: fmt[key] for key in ("name", "schema", "strict", "description")
                  if key in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequestError("text.format.type must be text, json_object or json_schema.")


class ParsedResponses(TranslatedRequest):
    """A Responses request: the translated call plus what the reply must echo."""

    def __init__(self, model: str | None, stream: bool) -> None:
        super().__init__(model=model, messages=[], stream=stream)
        self.namespaces: dict[str, tuple[str, str]] = {}
        self.store = True
        self.previous_response_id: str | None = None
        self.echo: dict[str, Any] = {}
        self.input_items: list[Any] = []
        #: The system message ``instructions`` makes (not carried to a follow-up).
        self.instructions: str | None = None
        #: The conversation this request adds: its input as messages.
        self.history: list[dict[str, Any]] = []

    def follow(self, earlier: list[dict[str, Any]]) -> None:
        """Set :attr:`messages`: the instructions, ``earlier`` (a stored conversation,
        as :func:`conversation` gives it) and this request's input."""
        head = [{"role": "system", "content": self.instructions}] if self.instructions else []
        self.messages = [*head, *earlier, *self.history]


def parse_request(body: Any) -> ParsedResponses:
    """A Responses request as chatplug's call (``previous_response_id`` is the caller's
    to resolve: prepend the stored conversation to ``messages``).

    :raises InvalidRequestError: a body that is not a Responses request, naming the field.
    """
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the body must be a JSON object.")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequestError("model must be a string.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream must be a boolean.")
    request = ParsedResponses(model, stream)
    raw = body.get("input")
    if isinstance(raw, str):
        items: list[Any] = [{"type": "message", "role": "user", "content": raw}]
    elif isinstance(raw, list):
        items = raw
    else:
        raise InvalidRequestError("input must be a string or a list of items.")
    request.input_items = items
    request.history = _items(items, {}, request.dropped)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        request.instructions = instructions
    if not request.history:
        raise InvalidRequestError("input holds no message to answer.")
    request.follow([])
    if body.get("tools"):
        tools = _tools(body["tools"], request, request.namespaces)
        if tools:
            request.add("tools", ("tools", tools))
            choice = _tool_choice(body.get("tool_choice"))
            if choice is not None:
                request.add("tool_choice", ("tool_choice", choice))
    if body.get("parallel_tool_calls") is not None and body.get("tools"):
        request.add("parallel_tool_calls", ("parallel_tool_calls",
                                            bool(body["parallel_tool_calls"])))
    if body.get("max_output_tokens") is not None:
        limit = body["max_output_tokens"]
        request.add("max_output_tokens", ("max_completion_tokens", limit),
                    ("max_tokens", limit), ("max_output_tokens", limit))
    for name in ("temperature", "top_p", "user", "service_tier"):
        if body.get(name) is not None:
            request.add(name, (name, body[name]))
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and isinstance(reasoning.get("effort"), str):
        effort = reasoning["effort"]
        budget = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}.get(effort,
                                                                                   8192)
        request.add("reasoning.effort", ("reasoning_effort", effort),
                    ("thinking", {"type": "enabled", "budget_tokens": budget}),
                    ("thinking_config", {"thinkingBudget": budget, "includeThoughts": True}))
    fmt = _text_format(body.get("text"))
    if fmt is not None:
        request.add("text.format", ("response_format", fmt))
    if isinstance(body.get("metadata"), Mapping) and body["metadata"]:
        request.add("metadata", ("metadata", dict(body["metadata"])))
    if body.get("include"):
        request.dropped.append("include")
    request.store = body.get("store", True) is not False
    previous = body.get("previous_response_id")
    if previous is not None:
        request.previous_response_id = _text(previous, "previous_response_id")
    request.dropped += sorted(key for key in body if key not in _READ)
    request.echo = {key: body.get(key) for key in ("instructions", "max_output_tokens",
                                                   "parallel_tool_calls", "temperature",
                                                   "tool_choice", "tools", "top_p",
                                                   "metadata", "user")}
    request.echo["reasoning"] = dict(reasoning) if isinstance(reasoning, Mapping) else None
    request.echo["text"] = body.get("text") or {"format": {"type": "text"}}
    return request


# -- the reply -----------------------------------------------------------------------


def usage_body(usage: Usage | None) -> dict[str, Any] | None:
    """The Responses ``usage`` from chatplug's."""
    if usage is None:
        return None
    prompt, output = usage.prompt_tokens or 0, usage.completion_tokens or 0
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
            "total_tokens": usage.total_tokens if usage.total_tokens is not None
            else prompt + output}


def _id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


class ResponsesEncoder:
    """chatplug's text and events → the Responses event stream, one item at a time.

    It keeps the output items it has announced (for ``response.completed`` and for the
    store), never the text twice: the open message's text is kept once, in its item.
    """

    def __init__(self, request: ParsedResponses, model: str) -> None:
        self.id = _id("resp")
        self.model = model
        self.created_at = int(time.time())
        self.request = request
        self.output: list[dict[str, Any]] = []
        self.usage: Usage | None = None
        self._sequence = 0
        self._open: dict[str, Any] | None = None  # the item receiving deltas
        self._texts: list[str] = []  # the open message's or summary's text pieces
        self._tools: dict[int, dict[str, Any]] = {}
        self._arguments: dict[int, list[str]] = {}
        self._blocks: list[dict[str, Any]] = []  # signed reasoning, for encrypted_content
        self._reasoning: list[str] = []
        self._finish: Finish | None = None
        #: The fields of a text delta between its sequence number and its text.
        self._delta_head = b""

    # -- framing

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return (b"event: " + kind.encode() + b"\ndata: "
                + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
                + b"\n\n")

    def response(self, status: str = "in_progress", *,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``response`` object as it stands."""
        incomplete = None
        if status == "incomplete":
            reason = self._finish.reason if self._finish else None
            incomplete = {"reason": "content_filter" if reason == "content_filter"
                          else "max_output_tokens"}
        echo = self.request.echo
        return {"id": self.id, "object": "response", "created_at": self.created_at,
                "status": status, "error": error, "incomplete_details": incomplete,
                "model": self.model, "output": self.output,
                "usage": usage_body(self.usage), "store": self.request.store,
                "previous_response_id": self.request.previous_response_id,
                "truncation": "disabled", **{key: echo.get(key) for key in echo},
                "parallel_tool_calls": echo.get("parallel_tool_calls")
                if echo.get("parallel_tool_calls") is not None else True,
                "tool_choice": echo.get("tool_choice") or "auto",
                "tools": echo.get("tools") or [], "metadata": echo.get("metadata") or {}}

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        snapshot = self.response()
        return self._event("response.created", response=snapshot) + \
            self._event("response.in_progress", response=snapshot)

    # -- items

    def _close(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        index = self.output.index(item)
        out = b""
        if item["type"] == "message":
            text = "".join(self._texts)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"] = [part]
            out += self._event("response.output_text.done", item_id=item["id"],
                               output_index=index, content_index=0, text=text, logprobs=[])
            out += self._event("response.content_part.done", item_id=item["id"],
                               output_index=index, content_index=0, part=part)
        elif item["type"] == "reasoning":
            text = "".join(self._texts)
            part = {"type": "summary_text", "text": text}
            item["summary"] = [part]
            out += self._event("response.reasoning_summary_text.done", item_id=item["id"],
                               output_index=index, summary_index=0, text=text)
            out += self._event("response.reasoning_summary_part.done", item_id=item["id"],
                               output_index=index, summary_index=0, part=part)
        self._texts = []
        item["status"] = "completed" if item["type"] != "reasoning" else item.get("status")
        if item["type"] == "reasoning":
            item.pop("status", None)
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def _add(self, item: dict[str, Any]) -> bytes:
        self.output.append(item)
        return self._event("response.output_item.added", output_index=len(self.output) - 1,
                           item=item)

    def encode(self, item: object) -> bytes:
        """The bytes for one item (``b""`` for what sends nothing now)."""
        if type(item) is str:
            if not item:
                return b""
            out = b""
            if self._open is None or self._open["type"] != "message":
                out += self._close_tools() + self._close()
                ident = _id("msg")
                message: dict[str, Any] = {"type": "message", "id": ident,
                                           "status": "in_progress", "role": "assistant",
                                           "content": []}
                out += self._add(message)
                self._open = message
                self._delta_head = (f',"item_id":"{ident}","output_index":'
                                    f'{len(self.output) - 1},"content_index":0,"delta":').encode()
                out += self._event("response.content_part.added", item_id=message["id"],
                                   output_index=len(self.output) - 1, content_index=0,
                                   part={"type": "output_text", "text": "",
                                         "annotations": [], "logprobs": []})
            self._texts.append(item)
            return out + self._event("response.output_text.delta", item_id=self._open["id"],
                                     output_index=len(self.output) - 1, content_index=0,
                                     delta=item, logprobs=[])
        if isinstance(item, CHAT_ONLY):
            return b""  # other choices (n > 1), refusal, logprobs: chat completions only
        if isinstance(item, ToolCallDelta):
            return self._tool(item)
        if isinstance(item, Reasoning):
            self._reasoning.append(item.text)
            if not item.text:
                return b""
            out = b""
            if self._open is None or self._open["type"] != "reasoning":
                out += self._close()
                reasoning = {"type": "reasoning", "id": _id("rs"), "summary": []}
                out += self._add(reasoning)
                self._open = reasoning
                out += self._event("response.reasoning_summary_part.added",
                                   item_id=reasoning["id"], output_index=len(self.output) - 1,
                                   summary_index=0, part={"type": "summary_text", "text": ""})
            self._texts.append(item.text)
            return out + self._event("response.reasoning_summary_text.delta",
                                     item_id=self._open["id"],
                                     output_index=len(self.output) - 1, summary_index=0,
                                     delta=item.text)
        if isinstance(item, ReasoningSignature):
            text = "".join(self._reasoning)
            self._reasoning = []
            self._blocks.append({"type": "thinking", "thinking": text,
                                 "signature": item.signature})
            return self._seal()
        if isinstance(item, RedactedReasoning):
            self._blocks.append({"type": "redacted_thinking", "data": item.data})
            return self._seal()
        if isinstance(item, Finish):
            self._finish = item
            return b""
        if isinstance(item, Usage):
            self.usage = item
            return b""
        if isinstance(item, Meta):
            return b""
        raise TypeError(f"not a text piece or a chatplug event: {type(item).__name__}")

    def _seal(self) -> bytes:
        """Signed reasoning goes back to the client in a reasoning item it will resend."""
        item = self._open if self._open is not None and self._open["type"] == "reasoning" \
            else next((i for i in reversed(self.output) if i["type"] == "reasoning"), None)
        out = b""
        if item is None:
            out += self._close()
            item = {"type": "reasoning", "id": _id("rs"), "summary": []}
            out += self._add(item)
        item["encrypted_content"] = _seal(self._blocks)
        if item is not self._open:
            out += self._event("response.output_item.done",
                               output_index=self.output.index(item), item=item)
        return out

    def _tool(self, delta: ToolCallDelta) -> bytes:
        out = b""
        call = self._tools.get(delta.index)
        if call is None:
            out += self._close()
            flat = delta.name or ""
            namespace, name = self.request.namespaces.get(flat, (None, flat))
            call = {"type": "function_call", "id": _id("fc"),
                    "call_id": delta.id or _id("call"), "name": name, "arguments": "",
                    "status": "in_progress"}
            if namespace is not None:
                call["namespace"] = namespace
            self._tools[delta.index] = call
            self._arguments[delta.index] = []
            out += self._add(call)
        if delta.arguments:
            self._arguments[delta.index].append(delta.arguments)
            out += self._event("response.function_call_arguments.delta", item_id=call["id"],
                               output_index=self.output.index(call), delta=delta.arguments)
        return out

    def _close_tools(self) -> bytes:
        out = b""
        for index, call in list(self._tools.items()):
            if call["status"] != "in_progress":
                continue
            arguments = "".join(self._arguments.pop(index, []))
            call["arguments"] = arguments
            call["status"] = "completed"
            position = self.output.index(call)
            out += self._event("response.function_call_arguments.done", item_id=call["id"],
                               output_index=position, arguments=arguments, name=call["name"])
            out += self._event("response.output_item.done", output_index=position, item=call)
        return out

    def status(self) -> str:
        reason = self._finish.reason if self._finish else None
        return "incomplete" if reason in ("length", "content_filter") else "completed"

    def end(self) -> bytes:
        """What ends a stream that went well: every open item's ``done`` events and
        ``response.completed`` (``response.incomplete`` when the reply was cut)."""
        out = self._close() + self._close_tools()
        status = self.status()
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, response=self.response(status))

    def content(self, text: str) -> bytes:
        """A text piece: in the open message, straight from a template."""
        item = self._open
        if item is not None and text and item["type"] == "message":
            self._texts.append(text)
            number = self._sequence
            self._sequence += 1
            return (b'event: response.output_text.delta\ndata: {"type":'
                    b'"response.output_text.delta","sequence_number":' + str(number).encode()
                    + self._delta_head + dumps(text).encode() + b',"logprobs":[]}\n\n')
        return self.encode(text)

    def failure(self, error: InBandError) -> bytes:
        return self.fail(error.code, error.message)

    def fail(self, code: str, message: str) -> bytes:
        """A failure after the stream began: ``response.failed``, never a completed one."""
        self._open = None
        error = {"code": code, "message": message}
        return self._event("error", code=code, message=message, param=None) + \
            self._event("response.failed", response=self.response("failed", error=error))

    def whole(self, completion: Completion) -> dict[str, Any]:
        """A whole (non-streamed) reply: the final ``response`` of ``completion``."""
        for item in completion_items(completion):
            self.encode(item)
        self._close()
        self._close_tools()
        return self.response(self.status())


def conversation(history: list[dict[str, Any]], output: list[Any]) -> list[dict[str, Any]]:
    """The messages a follow-up of a response continues: what it was asked (without its
    instructions) and its ``output`` items, read back as input."""
    return [*history, *_items(output, {}, [])]


def completion_items(completion: Completion) -> list[object]:
    """A :class:`~chatplug.Completion` as the items a stream of it would have carried."""
    items: list[object] = []
    for block in completion.reasoning_blocks:
        if block["type"] == "thinking":
            items.append(Reasoning(block["thinking"]))
            if block.get("signature"):
                items.append(ReasoningSignature(block["signature"]))
        else:
            items.append(RedactedReasoning(block["data"]))
    if not completion.reasoning_blocks and completion.reasoning:
        items.append(Reasoning(completion.reasoning))
    if completion.text:
        items.append(completion.text)
    items += [ToolCallDelta(index, call.id, call.name, call.arguments)
              for index, call in enumerate(completion.tool_calls)]
    if completion.finish_reason is not None:
        items.append(Finish(completion.finish_reason, completion.native_finish_reason,
                            completion.stop_sequence))
    if completion.usage is not None:
        items.append(completion.usage)
    return items
