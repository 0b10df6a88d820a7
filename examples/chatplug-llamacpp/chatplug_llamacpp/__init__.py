"""chatplug provider for llama.cpp's ``llama-server`` (its OpenAI-compatible API).

A third-party provider for an OpenAI-compatible service is its metadata plus
a few lines: chatplug's wire format and transport do the rest (timeouts,
typed errors, live streaming, and with ``events=True`` the finish reason, token
usage, reasoning and tool calls llama-server reports).  It declares no
capabilities, so chatplug refuses tools and images for it before anything is
sent.  Point it elsewhere with CHATPLUG_LLAMACPP_URL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from chatplug import hookimpl

if TYPE_CHECKING:
    from chatplug.events import Event

url = "http://127.0.0.1:8080/v1"
model: list[str] = []  # llama-server serves whatever model it loaded; any name is accepted
supports_stream = True
needs_auth = False
#: Its IO is chatplug.wire's: the async API and the gateway run it on their event loop.
native_async = True


@hookimpl
def create_completion(
    model: str,
    messages: list,  # type: ignore[type-arg]
    stream: bool,
    url: str,
    api_key: str | None,
    http: Any,
    params: Mapping[str, Any],
    temperature: float = 0.8,
    top_k: int = 40,
    repeat_penalty: float = 1.1,
) -> Iterator[str | Event]:
    from chatplug.wire import openai

    # The parameters above, validated, arrive together in params.
    return openai.chat(http, f"{url}/chat/completions", model=model, messages=messages,
                       stream=stream, api_key=api_key, events=True, **params)
