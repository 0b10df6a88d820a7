"""chatplug provider for Ollama's native chat API (``POST /api/chat``).

Ollama streams newline-delimited JSON: one object per line, each with a piece
of the reply in ``message.content``, the last with ``"done": true`` (and its
``done_reason``, ``prompt_eval_count`` and ``eval_count``); a failure arrives as
an ``{"error": "..."}`` line.  The generic NDJSON decoding (lines, split reads,
error lines, a stream cut before ``done``) and the reading of Ollama's objects
(``chatplug.wire.ndjson.OllamaReply``: text, served model, thinking, tool calls,
finish reason, token counts) are chatplug's; this module shapes the request.

Tools: ``tools`` goes into the body as OpenAI defines it (Ollama takes the same
shape).  The conversation chatplug hands over is OpenAI-shaped, so an assistant
message's tool calls get their arguments as an object (Ollama's form) and a
``tool`` message the ``tool_name`` of the call it answers.  Images are not
supported (Ollama wants base64 in ``images``, not ``image_url`` parts).

Point it at another host with ``CHATPLUG_OLLAMA_URL``.  Ollama needs no key;
if yours sits behind a proxy that does, ``CHATPLUG_OLLAMA_API_KEY`` is sent as
a bearer token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from chatplug import hookimpl

if TYPE_CHECKING:
    from chatplug import HTTPClient
    from chatplug.events import Event

url = "http://127.0.0.1:11434"
model: list[str] = []  # whatever models were pulled; the caller names one (`-m llama3.2`)
supports_stream = True
needs_auth = False
#: Its IO is chatplug.wire's: the async API and the gateway run it on their event loop.
native_async = True
supports_tools = True
#: Lists the pulled models and needs no key: what `chatplug providers --check` probes,
#: and what `chatplug models Ollama` reads.
TAGS_PATH = "/api/tags"
check_path = TAGS_PATH

CHAT_PATH = "/api/chat"


def ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages as Ollama reads them: tool-call arguments as objects,
    tool results named by the tool they answer.  Plain messages pass unchanged."""
    names: dict[str, str] = {}
    converted: list[dict[str, Any]] = []
    for message in messages:
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call["function"]
                names[call["id"]] = function["name"]
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    arguments = {}
                calls.append({"function": {"name": function["name"], "arguments": arguments}})
            message = {**message, "content": message.get("content") or "", "tool_calls": calls}
        elif message.get("role") == "tool":
            name = names.get(message.get("tool_call_id") or "")
            message = {key: value for key, value in message.items() if key != "tool_call_id"}
            if name:
                message["tool_name"] = name
        converted.append(message)
    return converted


def request_body(
    model: str, messages: list[dict[str, Any]], stream: bool,
    tools: list[dict[str, Any]] | None = None, **options: Any
) -> dict[str, Any]:
    """Ollama's chat request: sampling options go in ``options``; ``None`` ones are left out."""
    body: dict[str, Any] = {"model": model, "messages": ollama_messages(messages),
                            "stream": stream}
    if tools is not None:
        body["tools"] = tools
    chosen = {key: value for key, value in options.items() if value is not None}
    if chosen:
        body["options"] = chosen
    return body


@hookimpl
def create_completion(
    model: str,
    messages: list,  # type: ignore[type-arg]
    stream: bool,
    url: str,
    api_key: str | None,
    http: HTTPClient,
    params: Mapping[str, Any],
    # Sampling options (validated, and received together in params) and tools.
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    num_ctx: int | None = None,
    num_predict: int | None = None,
    seed: int | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> Iterator[str | Event]:
    from chatplug.wire import ndjson

    body = request_body(model, messages, stream, **params)
    reply = ndjson.OllamaReply()
    yield from ndjson.chat(http, url + CHAT_PATH, body, text=reply.text, is_last=reply.is_last,
                           events=reply.events, api_key=api_key)


@hookimpl
def list_models(url: str, api_key: str | None, http: HTTPClient) -> list[str]:
    """The models pulled on the server: ``GET /api/tags`` (``chatplug models Ollama``)."""
    from chatplug import ProviderResponseError

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    payload = http.get_json(url + TAGS_PATH, headers=headers)
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(models, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in models
    ):
        raise ProviderResponseError(
            f"{url}{TAGS_PATH} did not answer Ollama's {{\"models\": [{{\"name\": ...}}]}}; "
            "is CHATPLUG_OLLAMA_URL an Ollama server?")
    return [entry["name"] for entry in models]
