"""Anthropic: Claude through Anthropic's own Messages API (``{url}/v1/messages``).

Set ``CHATPLUG_ANTHROPIC_API_KEY`` (or ``ANTHROPIC_API_KEY``); the URL is
``https://api.anthropic.com`` unless ``CHATPLUG_ANTHROPIC_URL`` (or
``ANTHROPIC_BASE_URL``) names another server of that API.  Callers write
OpenAI-shaped messages, tools and ``tool_choice``; :mod:`chatplug.wire.anthropic`
translates both ways and keeps what the OpenAI-compatibility endpoint drops:
thinking blocks with their signatures (sent back with the assistant message),
redacted thinking, ``cache_control`` on parts and tools, the cache token counts,
the native ``stop_reason`` and ``stop_sequence``.

``max_tokens`` is required by Anthropic; chatplug sends :data:`DEFAULT_MAX_TOKENS`
when the caller gives none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from chatplug import Range, hookimpl

if TYPE_CHECKING:
    from chatplug.events import Event
    from chatplug.http import HTTPClient

url = "https://api.anthropic.com"
model: list[str] = []
supports_stream = True
needs_auth = True
supports_tools = True
supports_vision = True
#: Every request goes through chatplug.wire.anthropic: the async API and the gateway
#: run this provider on their event loop.
native_async = True
#: What `chatplug providers --check` asks for: the models list (a plain GET).
check_path = "/v1/models"

#: Sent when the caller gives no ``max_tokens`` (Anthropic requires one).
DEFAULT_MAX_TOKENS = 4096


@hookimpl
def create_completion(
    model: str,
    messages: list,  # type: ignore[type-arg]
    stream: bool,
    url: str,
    api_key: str,
    http: HTTPClient,
    params: Mapping[str, Any],
    # The user parameters: declared here (names, types, defaults), received in params.
    max_tokens: Annotated[int, Range(1)] = DEFAULT_MAX_TOKENS,
    temperature: Annotated[float, Range(0, 1)] | None = None,
    top_p: Annotated[float, Range(0, 1)] | None = None,
    top_k: Annotated[int, Range(0)] | None = None,
    stop: str | list[str] | None = None,
    stop_sequences: list[str] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    thinking: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    service_tier: str | None = None,
    user: str | None = None,
) -> Iterator[str | Event]:
    from chatplug.wire import anthropic

    return anthropic.chat(http, f"{url}/v1/messages", model=model, messages=messages,
                          stream=stream, api_key=api_key, **params)


@hookimpl
def list_models(url: str, api_key: str | None, http: HTTPClient) -> list[str]:
    from chatplug.wire import anthropic

    return anthropic.list_models(http, url, api_key)
