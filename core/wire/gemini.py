"""Google's Gemini API (``models/{model}:generateContent``), translated both ways.

Callers write OpenAI-shaped messages, tools and ``tool_choice``; :func:`request_body`
turns them into Gemini's ``contents`` (``user``/``model`` turns of parts),
``systemInstruction``, ``tools`` (``functionDeclarations``), ``toolConfig`` and
``generationConfig``.  The reply, whole or streamed (``:streamGenerateContent?alt=sse``,
which ends without a ``[DONE]``), becomes chatplug's text and events:

=========================================  ==========================================
Gemini                                     chatplug
=========================================  ==========================================
text part                                  ``str``
text part with ``thought: true``           :class:`~chatplug.events.Reasoning`
``thoughtSignature`` on any part           :class:`~chatplug.events.ReasoningSignature`
``functionCall`` part                      :class:`~chatplug.events.ToolCallDelta`
``finishReason``                           :class:`~chatplug.events.Finish` (mapped, native kept)
``usageMetadata``                          :class:`~chatplug.events.Usage`
``responseId``, ``modelVersion``           :class:`~chatplug.events.Meta`
=========================================  ==========================================

**Tool-call ids.**  Gemini may send a ``functionCall`` without an ``id``; chatplug
makes a stable one (:data:`MADE_ID_PREFIX`), maps the following ``role: "tool"``
message back to the call's name by it, and never sends a made id to Gemini.

**Thought signatures.**  Gemini signs its reasoning on a part (the first
``functionCall`` of a turn, else the last part) and wants the signature back on
that part.  The signature rides on the assistant message's ``thinking_blocks``
(:attr:`chatplug.Completion.message`); :func:`request_body` puts it back on the first
``functionCall`` part of that turn, or on its last part when it has no call.

**Errors.**  Gemini's envelope ``{"error": {"code", "message", "status", "details"}}``
is read by :mod:`chatplug.wire.errors`; a prompt blocked before any candidate
(``promptFeedback.blockReason``) is :class:`chatplug.ContentFilteredError` naming the
reason; a stream that stops before a finish reason is
:class:`chatplug.StreamInterruptedError`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import (
    ContentFilteredError,
    InvalidRequestError,
    ProviderResponseError,
    StreamInterruptedError,
)
from ..events import Finish, Meta, Reasoning, ReasoningSignature, ToolCallDelta, Usage
from . import base64_data_url, token_count
from . import request_headers as wire_headers
from .errors import quoted
from .exchange import exchange, json_events

if TYPE_CHECKING:
    from ..events import Event
    from ..transport.client import HTTPClient

__all__ = [
    "FINISH_REASONS",
    "MADE_ID_PREFIX",
    "chat",
    "endpoint",
    "list_models",
    "reply_events",
    "request_body",
    "request_headers",
    "stream_events",
    "usage_of",
]

#: Gemini's ``finishReason`` → OpenAI's ``finish_reason``; ``STOP`` with a function
#: call is ``tool_calls``.  ``MALFORMED_FUNCTION_CALL`` (the model wrote a call Gemini
#: could not parse) ends the reply as ``stop``, the native reason saying which.
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "LANGUAGE": "content_filter",
    "MALFORMED_FUNCTION_CALL": "stop",
    "UNEXPECTED_TOOL_CALL": "stop",
    "OTHER": "stop",
}
#: Ids chatplug made for calls Gemini sent without one; never sent back to Gemini.
MADE_ID_PREFIX = "call_gm_"
#: Gemini takes these file URLs in ``fileData``; other URLs it cannot fetch.
_FILE_URLS = ("https://generativelanguage.googleapis.com/", "gs://",
              "https://www.youtube.com/", "https://youtu.be/")
_EXTENSIONS = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
               "webp": "image/webp", "gif": "image/gif", "heic": "image/heic"}


def endpoint(url: str, model: str, stream: bool) -> str:
    """The URL a call posts to: ``{url}/v1beta/models/{model}:generateContent`` (or
    ``:streamGenerateContent?alt=sse``); ``models/`` in ``model`` is not doubled."""
    name = model[len("models/"):] if model.startswith("models/") else model
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{url}/v1beta/models/{quote(name, safe='.-_')}:{method}"


def request_headers(api_key: str | None, accept: str,
                    headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``Accept``, the provider's ``headers`` and ``x-goog-api-key``."""
    return wire_headers(accept, api_key, headers, key_header="x-goog-api-key")


# -- the request ---------------------------------------------------------------------


def _media(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = base64_data_url(url, where, "Gemini")
        return {"inlineData": {"mimeType": media_type, "data": data}}
    if url.startswith(_FILE_URLS):
        extension = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
        part: dict[str, Any] = {"fileUri": url}
        if extension in _EXTENSIONS:
            part["mimeType"] = _EXTENSIONS[extension]
        return {"fileData": part}
    raise InvalidRequestError(
        f"{where}: Gemini does not fetch images from URLs like {url[:80]!r}; send the "
        "image as a base64 data URL, or upload it with Gemini's Files API and pass "
        "that file's URL.")


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if part.get("type") == "text":
            parts.append({"text": part["text"]})
        else:
            parts.append(_media(part["image_url"]["url"], f"{where}.content[{index}]"))
    return parts


def _arguments(call: Mapping[str, Any], where: str) -> dict[str, Any]:
    text = call["function"].get("arguments") or "{}"
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidRequestError(f"{where}.function.arguments is not JSON; Gemini takes a "
                                  "function call's arguments as an object.") from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}.function.arguments must be a JSON object for "
                                  "Gemini.")
    return value


def _model_turn(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    parts = _parts(message.get("content"), where)
    calls = []
    for index, call in enumerate(message.get("tool_calls") or ()):
        function_call: dict[str, Any] = {"name": call["function"]["name"],
                                         "args": _arguments(call, f"{where}.tool_calls[{index}]")}
        if not call["id"].startswith(MADE_ID_PREFIX):
            function_call["id"] = call["id"]
        calls.append({"functionCall": function_call})
    parts += calls
    signature = next((block["signature"] for block in message.get("thinking_blocks") or ()
                      if block.get("signature")), None)
    if signature is not None:
        target = calls[0] if calls else (parts[-1] if parts else None)
        if target is None:
            parts.append({"text": "", "thoughtSignature": signature})
        else:
            target["thoughtSignature"] = signature
    return parts


def _response(content: Any) -> dict[str, Any]:
    """A tool result as ``functionResponse.response``: a JSON object as it is, any other
    text as ``{"result": text}``."""
    if not isinstance(content, str):
        content = "".join(part.get("text", "") for part in content or ())
    try:
        value = json.loads(content)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"result": content}


def translate_messages(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """OpenAI-shaped (validated) messages → Gemini's ``systemInstruction`` and ``contents``.

    ``system``/``developer`` messages become the system instruction; ``tool``
    messages become ``functionResponse`` parts of one user turn, each named after
    the call it answers (found by ``tool_call_id`` in the assistant turns before
    it); consecutive turns of one role are joined.

    :raises InvalidRequestError: a tool result answering no earlier call, an image
        URL Gemini cannot fetch, tool-call arguments that are not a JSON object.
    """
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for number, message in enumerate(messages):
        where = f"messages[{number}]"
        role = message["role"]
        if role in ("system", "developer"):
            system += _parts(message.get("content"), where)
            continue
        if role == "tool":
            call_id = message["tool_call_id"]
            if call_id not in names:
                raise InvalidRequestError(
                    f"{where}.tool_call_id {call_id!r} answers no tool call of an earlier "
                    "assistant message; Gemini needs the function's name.")
            response: dict[str, Any] = {"name": names[call_id],
                                        "response": _response(message.get("content"))}
            if not call_id.startswith(MADE_ID_PREFIX):
                response["id"] = call_id
            role, parts = "user", [{"functionResponse": response}]
        elif role == "user":
            parts = _parts(message.get("content"), where)
        else:
            role = "model"
            for call in message.get("tool_calls") or ():
                names[call["id"]] = call["function"]["name"]
            parts = _model_turn(message, where)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": role, "parts": parts})
    return ({"parts": system} if system else None), contents


def _tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    declarations = []
    for tool in tools:
        if tool.get("type") != "function" or not isinstance(tool.get("function"), Mapping):
            raise InvalidRequestError(
                "each tool must be {'type': 'function', 'function': {'name', 'parameters'?, "
                "'description'?}}, as OpenAI shapes them.")
        function = tool["function"]
        declaration: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            declaration["description"] = function["description"]
        if function.get("parameters"):
            # The full JSON Schema, not the OpenAPI subset of ``parameters``.
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}]


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if isinstance(choice, str) and choice in modes:
        return {"functionCallingConfig": {"mode": modes[choice]}}
    if (isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping)
            and choice["function"].get("name")):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [
            choice["function"]["name"]]}}
    raise InvalidRequestError(
        f"tool_choice {choice!r} is not one Gemini can take: 'auto', 'required', 'none' "
        "or {'type': 'function', 'function': {'name': ...}}.")


def _response_format(value: Mapping[str, Any]) -> dict[str, Any]:
    kind = value.get("type")
    if kind == "text":
        return {"responseMimeType": "text/plain"}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    schema = value.get("json_schema")
    if kind == "json_schema" and isinstance(schema, Mapping) and "schema" in schema:
        return {"responseMimeType": "application/json",
                "responseJsonSchema": schema["schema"]}
    raise InvalidRequestError(
        "response_format must be {'type': 'text'}, {'type': 'json_object'} or "
        "{'type': 'json_schema', 'json_schema': {'schema': {...}}}.")


#: chatplug's (OpenAI's) parameter names → ``generationConfig`` fields.
_GENERATION = {"temperature": "temperature", "top_p": "topP", "top_k": "topK",
               "max_tokens": "maxOutputTokens", "max_output_tokens": "maxOutputTokens",
               "seed": "seed", "presence_penalty": "presencePenalty",
               "frequency_penalty": "frequencyPenalty", "thinking_config": "thinkingConfig",
               "candidate_count": "candidateCount"}


def request_body(
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    stop: str | Sequence[str] | None = None,
    response_format: Mapping[str, Any] | None = None,
    safety_settings: Sequence[Mapping[str, Any]] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Gemini's request body from an OpenAI-shaped call; ``None`` options are left out.

    ``options`` are :data:`_GENERATION`'s names, put in ``generationConfig``.

    :raises InvalidRequestError: see :func:`translate_messages`; an unknown option, a
        tool, ``tool_choice`` or ``response_format`` Gemini cannot take.
    """
    system, contents = translate_messages(messages)
    body: dict[str, Any] = {"contents": contents}
    if system is not None:
        body["systemInstruction"] = system
    if tools:
        body["tools"] = _tools(tools)
    config = _tool_config(tool_choice)
    if config is not None:
        body["toolConfig"] = config
    if safety_settings is not None:
        body["safetySettings"] = [dict(setting) for setting in safety_settings]
    generation: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name not in _GENERATION:
            raise InvalidRequestError(f"Gemini has no option {name!r}.")
        generation[_GENERATION[name]] = value
    if stop is not None:
        generation["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if response_format is not None:
        generation.update(_response_format(response_format))
    if generation:
        body["generationConfig"] = generation
    return body


# -- the reply -----------------------------------------------------------------------


def usage_of(metadata: Any) -> Usage | None:
    """:class:`Usage` from ``usageMetadata``: ``completion_tokens`` counts the thoughts
    too, as OpenAI's does (Gemini's ``candidatesTokenCount`` does not)."""
    if not isinstance(metadata, Mapping):
        return None
    prompt = token_count(metadata.get("promptTokenCount"))
    candidates = token_count(metadata.get("candidatesTokenCount"))
    thoughts = token_count(metadata.get("thoughtsTokenCount"))
    total = token_count(metadata.get("totalTokenCount"))
    cached = token_count(metadata.get("cachedContentTokenCount"))
    if prompt is None and candidates is None and thoughts is None and total is None:
        return None
    completion = None if candidates is None and thoughts is None else \
        (candidates or 0) + (thoughts or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total,
                 cached_tokens=cached, reasoning_tokens=thoughts)



def _made_id(response_id: str | None, index: int, call: Mapping[str, Any]) -> str:
    """A stable id for a call Gemini sent without one."""
    seed = json.dumps([response_id, index, call.get("name"), call.get("args")],
                      sort_keys=True, default=str)
    return MADE_ID_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:16]


class _State:
    """What a reply has carried so far (a stream's chunks share it)."""

    __slots__ = ("calls", "finished", "meta", "received", "response_id", "usage")

    def __init__(self) -> None:
        self.calls = 0  # function calls so far: the next one's index
        self.finished = False
        self.meta = False
        self.received = 0  # characters of text
        self.response_id: str | None = None
        self.usage: Usage | None = None


def _candidate_items(payload: Mapping[str, Any], data: str, state: _State,
                     secret: str | None) -> list[str | Event]:
    """The text and events of one response (a whole reply or a stream's chunk);
    the usage is kept in ``state`` for the end."""
    items: list[str | Event] = []
    if not state.meta:
        ident, model = payload.get("responseId"), payload.get("modelVersion")
        if isinstance(ident, str) or isinstance(model, str):
            state.meta = True
            state.response_id = ident if isinstance(ident, str) else None
            items.append(Meta(state.response_id, model if isinstance(model, str) else None))
    usage = usage_of(payload.get("usageMetadata"))
    if usage is not None:
        state.usage = usage
    candidates = payload.get("candidates")
    if not candidates:
        feedback = payload.get("promptFeedback")
        reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
        if reason:
            raise ContentFilteredError(
                f"Gemini blocked the prompt ({reason}); nothing was generated. Change the "
                "prompt, or the safety_settings.", reason=str(reason))
        return items
    if not isinstance(candidates, list) or not isinstance(candidates[0], Mapping):
        raise ProviderResponseError(f"the reply's candidates are not a list of objects: "
                                    f"{quoted(data, secret)}")
    if len(candidates) > 1:
        raise ProviderResponseError(
            "Gemini sent more than one candidate; chatplug reads one (do not set "
            "candidate_count above 1).")
    candidate = candidates[0]
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            raise ProviderResponseError(f"a part is not an object: {quoted(data, secret)}")
        text = part.get("text")
        call = part.get("functionCall")
        if isinstance(call, Mapping):
            ident = call.get("id")
            if not isinstance(ident, str) or not ident:
                ident = _made_id(state.response_id, state.calls, call)
            arguments = call.get("args")
            items.append(ToolCallDelta(
                state.calls, ident, call.get("name") or None,
                json.dumps(arguments if arguments is not None else {}, ensure_ascii=False,
                           separators=(",", ":"))))
            state.calls += 1
        elif isinstance(text, str) and text:
            if part.get("thought") is True:
                items.append(Reasoning(text))
            else:
                state.received += len(text)
                items.append(text)
        signature = part.get("thoughtSignature")
        if isinstance(signature, str) and signature:
            items.append(ReasoningSignature(signature))
    reason = candidate.get("finishReason")
    if isinstance(reason, str) and reason and reason != "FINISH_REASON_UNSPECIFIED" \
            and not state.finished:
        state.finished = True
        mapped = "tool_calls" if reason == "STOP" and state.calls else \
            FINISH_REASONS.get(reason, reason.lower())
        items.append(Finish(mapped, native=reason))
    return items


def _error(payload: Mapping[str, Any], state: _State, *, where: str, secret: str | None,
           provider: str | None) -> Exception:
    from .errors import error_of, reported_error

    error = error_of(payload)
    assert error is not None
    delivered = state.received > 0 or state.calls > 0
    return reported_error(error, payload, where=where, secret=secret, provider=provider,
                          received=state.received if delivered else None)


def reply_events(payload: Any, *, secret: str | None = None,
                 provider: str | None = None) -> list[str | Event]:
    """The text and events of a whole ``GenerateContentResponse``.

    :raises ContentFilteredError: the prompt was blocked.
    :raises ProviderResponseError: not a response object, or more than one candidate.
    :raises ProviderError: (subclasses) the error object it is.
    """
    if not isinstance(payload, Mapping):
        raise ProviderResponseError(f"the reply is not a JSON object: "
                                    f"{quoted(payload, secret)}")
    state = _State()
    if "error" in payload:
        raise _error(payload, state, where="its reply", secret=secret, provider=provider)
    if "candidates" not in payload and "promptFeedback" not in payload:
        raise ProviderResponseError(
            "the reply has no candidates; the server may not speak Gemini's API: "
            f"{quoted(json.dumps(payload)[:400], secret)}")
    items = _candidate_items(payload, "", state, secret)
    if state.usage is not None:
        items.append(state.usage)
    return items


def stream_events(chunks: Iterable[bytes], *, secret: str | None = None,
                  provider: str | None = None) -> Iterator[str | Event]:
    """The text and events of a streamed reply (``alt=sse``), from its raw bytes.

    Gemini ends a stream without a marker: the reply is whole once a chunk carried
    its finish reason; the usage (each chunk repeats it, cumulative) is yielded once,
    at the end.  Anything else a loop-driven reply yields (its waits) passes through.

    :raises StreamInterruptedError: the bytes end before a finish reason, or an error
        arrives after content did.
    :raises ProviderResponseError: an event that breaks the format.
    """
    state = _State()

    for item in json_events(chunks, secret=secret, speaks="Gemini's API"):
        if type(item) is not tuple:  # a loop-driven reply's wait, for the call's driver
            yield item
            continue
        data, payload = item
        if state.meta and type(payload) is dict:
            # The shape nearly every chunk has (one candidate, one text part), read cheaply.
            try:
                candidates = payload["candidates"]
                candidate = candidates[0]
                parts = candidate["content"]["parts"]
                text = parts[0]["text"]
                if (type(text) is str and len(candidates) == 1 and len(parts) == 1
                        and len(parts[0]) == 1 and "finishReason" not in candidate):
                    if "usageMetadata" in payload:
                        state.usage = usage_of(payload["usageMetadata"]) or state.usage
                    if text:
                        state.received += len(text)
                        yield text
                    continue
            except (KeyError, IndexError, TypeError):
                pass
        if not isinstance(payload, dict):
            raise ProviderResponseError(f"a stream event is not a JSON object: "
                                        f"{quoted(data, secret)}")
        if "error" in payload:
            raise _error(payload, state, where="the stream", secret=secret, provider=provider)
        yield from _candidate_items(payload, data, state, secret)
    if not state.finished:
        raise StreamInterruptedError(
            f"the stream ended before a finish reason after {state.received} characters; "
            "the reply is incomplete. Try again.", received=state.received)
    if state.usage is not None:
        yield state.usage


def chat(
    http: HTTPClient,
    url: str,
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: bool,
    api_key: str | None = None,
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> Iterator[str | Event]:
    """Ask Gemini at ``url`` (the API's base) for ``model``'s reply to ``messages``;
    yield its text and events as they arrive.

    :raises InvalidRequestError: what :func:`request_body` refuses (before sending).
    :raises ProviderError: (subclasses) the transport's, and those of
        :func:`stream_events` and :func:`reply_events`.
    """
    body = request_body(messages, **options)
    accept = "text/event-stream" if stream else "application/json"
    yield from exchange(http, endpoint(url, model, stream), body,
                    request_headers(api_key, accept, headers), streamed=stream_events,
                    whole=reply_events, secret=http.api_key or api_key)


#: Pages read at most: a server that pages forever must not keep a call going.
_MAX_PAGES = 50


def list_models(http: HTTPClient, url: str, api_key: str | None,
                headers: Mapping[str, str] | None = None) -> list[str]:
    """The models Gemini offers for ``generateContent``: ``GET {url}/v1beta/models``,
    page after page (``pageToken``), names without ``models/``.

    :raises ProviderResponseError: an answer that is not ``{"models": [{"name"}]}``.
    :raises ProviderError: (subclasses) the request failed.
    """
    names: list[str] = []
    token: str | None = None
    all_headers = request_headers(api_key, "application/json", headers)
    for _ in range(_MAX_PAGES):
        query = "?pageSize=1000" + (f"&pageToken={quote(token, safe='')}" if token else "")
        payload = http.get_json(f"{url}/v1beta/models{query}", headers=all_headers)
        models = payload.get("models", []) if isinstance(payload, Mapping) else None
        if not isinstance(models, list) or not all(
                isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
                for entry in models):
            raise ProviderResponseError(f"the model list from {url}/v1beta/models is not "
                                        'Gemini\'s {"models": [{"name": ...}]}.')
        for entry in models:
            methods = entry.get("supportedGenerationMethods")
            if isinstance(methods, list) and "generateContent" not in methods:
                continue
            name = str(entry["name"])
            names.append(name[len("models/"):] if name.startswith("models/") else name)
        token = payload.get("nextPageToken")
        if not isinstance(token, str) or not token:
            return names
    return names
