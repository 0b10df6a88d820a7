"""Gemini: Google's models through the Gemini API's own wire (``generateContent``).

Set ``CHATPLUG_GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``, then ``GEMINI_API_KEY``: the
order Google's own SDK reads them); the URL is
``https://generativelanguage.googleapis.com`` unless ``CHATPLUG_GEMINI_URL`` names
another server of that API.  Callers write OpenAI-shaped messages, tools and
``tool_choice``; :mod:`chatplug.wire.gemini` translates both ways and keeps what the
OpenAI-compatibility endpoint drops: thought signatures (sent back with the
assistant message, as function calling with thinking requires), thought summaries
as reasoning, cached and thought token counts, the native ``finishReason`` (safety
reasons as ``content_filter``), a prompt blocked before any answer as
:class:`chatplug.ContentFilteredError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from chatplug import Range, hookimpl

if TYPE_CHECKING:
    from chatplug.events import Event
    from chatplug.http import HTTPClient

url = "https://generativelanguage.googleapis.com"
model: list[str] = []
supports_stream = True
needs_auth = True
supports_tools = True
supports_vision = True
#: Every request goes through chatplug.wire.gemini: the async API and the gateway run
#: this provider on their event loop.
native_async = True
#: What `chatplug providers --check` asks for: the models list (a plain GET).
check_path = "/v1beta/models"


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
    temperature: Annotated[float, Range(0, 2)] | None = None,
    top_p: Annotated[float, Range(0, 1)] | None = None,
    top_k: Annotated[int, Range(1)] | None = None,
    max_tokens: Annotated[int, Range(1)] | None = None,
    max_output_tokens: Annotated[int, Range(1)] | None = None,
    stop: str | list[str] | None = None,
    seed: int | None = None,
    presence_penalty: Annotated[float, Range(-2, 2)] | None = None,
    frequency_penalty: Annotated[float, Range(-2, 2)] | None = None,
    response_format: dict[str, Any] | None = None,
    thinking_config: dict[str, Any] | None = None,
    safety_settings: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
) -> Iterator[str | Event]:
    from chatplug.wire import gemini

    return gemini.chat(http, url, model=model, messages=messages, stream=stream,
                       api_key=api_key, **params)


@hookimpl
def list_models(url: str, api_key: str | None, http: HTTPClient) -> list[str]:
    from chatplug.wire import gemini

    return gemini.list_models(http, url, api_key)
