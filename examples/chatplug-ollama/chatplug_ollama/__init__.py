"""chatplug provider for Ollama's native chat API (``POST /api/chat``).

Ollama streams newline-delimited JSON: one object per line, each with a piece
of the reply in ``message.content``, the last with ``"done": true``; a failure
arrives as an ``{"error": "..."}`` line.  The generic NDJSON decoding (lines,
split reads, error lines, a stream cut before ``done``) is chatplug's
``chatplug.wire.ndjson``; this module only knows Ollama's shapes.

Point it at another host with ``CHATPLUG_OLLAMA_URL``.  Ollama needs no key;
if yours sits behind a proxy that does, ``CHATPLUG_OLLAMA_API_KEY`` is sent as
a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from chatplug import hookimpl

if TYPE_CHECKING:
    from chatplug import HTTPClient

url = "http://127.0.0.1:11434"
model: list[str] = []  # whatever models were pulled; the caller names one (`-m llama3.2`)
supports_stream = True
needs_auth = False
#: Lists the pulled models and needs no key: what `chatplug providers --check` probes,
#: and what `chatplug models Ollama` reads.
TAGS_PATH = "/api/tags"
check_path = TAGS_PATH

CHAT_PATH = "/api/chat"


def request_body(
    model: str, messages: list[dict[str, str]], stream: bool, **options: Any
) -> dict[str, Any]:
    """Ollama's chat request: sampling options go in ``options``; ``None`` ones are left out."""
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    chosen = {key: value for key, value in options.items() if value is not None}
    if chosen:
        body["options"] = chosen
    return body


def message_text(payload: Mapping[str, Any]) -> str | None:
    """The piece of text in one object: ``message.content`` (absent in some final objects)."""
    message = payload.get("message")
    if message is None:
        return None
    return message["content"]  # a malformed message is reported by chatplug as such


def is_done(payload: Mapping[str, Any]) -> bool:
    """Ollama marks the object that completes the reply with ``"done": true``."""
    return payload.get("done") is True


@hookimpl
def create_completion(
    model: str,
    messages: list,  # type: ignore[type-arg]
    stream: bool,
    url: str,
    api_key: str | None,
    http: HTTPClient,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    num_ctx: int | None = None,
    num_predict: int | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    from chatplug.wire import ndjson

    body = request_body(model, messages, stream, temperature=temperature, top_p=top_p,
                        top_k=top_k, num_ctx=num_ctx, num_predict=num_predict, seed=seed)
    yield from ndjson.chat(http, url + CHAT_PATH, body, text=message_text, is_last=is_done,
                           api_key=api_key)


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
