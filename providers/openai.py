"""OpenAI, or any OpenAI-compatible chat-completions endpoint (``{url}/chat/completions``).

Set ``CHATPLUG_OPENAI_API_KEY`` (or ``OPENAI_API_KEY``) and, for another
compatible server, ``CHATPLUG_OPENAI_URL`` (or ``OPENAI_BASE_URL``).  Any model
name is accepted; the caller names it.

Tools (``tools``, ``tool_choice``, ``parallel_tool_calls``) and image parts in
messages are sent as OpenAI defines them; the reply's tool calls, reasoning,
finish reason, usage, id and served model come back as :mod:`chatplug.events`
(``complete()`` assembles them).  A stream asks for its usage
(``stream_options: {"include_usage": true}``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from chatplug import Range, hookimpl

if TYPE_CHECKING:
    from chatplug.events import Event
    from chatplug.http import HTTPClient

url = "https://api.openai.com/v1"
model: list[str] = []
supports_stream = True
needs_auth = True
supports_tools = True
supports_vision = True
#: Every request goes through chatplug.wire.openai: the async API and the gateway run
#: this provider on their event loop, without a worker thread.
native_async = True

#: Asked of every stream: the last chunk then reports the token usage.
STREAM_OPTIONS = {"include_usage": True}
#: What `chatplug providers --check` asks for: the models list (a plain GET).
check_path = "/models"


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
    max_tokens: Annotated[int, Range(1)] | None = None,
    presence_penalty: Annotated[float, Range(-2, 2)] | None = None,
    frequency_penalty: Annotated[float, Range(-2, 2)] | None = None,
    seed: int | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    response_format: dict[str, Any] | None = None,
    stop: str | list[str] | None = None,
    logit_bias: dict[str, Annotated[int, Range(-100, 100)]] | None = None,
    user: str | None = None,
) -> Iterator[str | Event]:
    from chatplug.wire import openai

    return openai.chat(
        http,
        f"{url}/chat/completions",
        model=model,
        messages=messages,
        stream=stream,
        events=True,
        api_key=api_key,
        stream_options=STREAM_OPTIONS if stream else None,
        **params,
    )


@hookimpl
def list_models(url: str, api_key: str | None, http: HTTPClient) -> list[str]:
    from chatplug.wire import openai

    return openai.list_models(http, url, api_key)
