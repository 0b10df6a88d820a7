"""OpenAI, or any OpenAI-compatible chat-completions endpoint (``{url}/chat/completions``).

Set ``CHATPLUG_OPENAI_API_KEY`` (or ``OPENAI_API_KEY``) and, for another
compatible server, ``CHATPLUG_OPENAI_URL`` (or ``OPENAI_BASE_URL``).  Any model
name is accepted; the caller names it.

Every parameter of OpenAI's chat-completions request is accepted (one declaration,
:class:`chatplug.calls.chat_params.ChatParameters`), checked against its type and
sent as given: ``max_tokens`` and ``max_completion_tokens`` alike, ``n``,
``logprobs``, ``reasoning_effort``, tools, ``response_format``...  Image parts in
messages are sent as OpenAI defines them; the reply's choices, tool calls,
reasoning, refusal, logprobs, finish reason, usage, id and served model come back
as :mod:`chatplug.events` (``complete()`` assembles them).  A stream asks for its
usage (``stream_options: {"include_usage": true}``, merged into the caller's own).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from chatplug import hookimpl
from chatplug.calls.chat_params import ChatParameters, Unpack

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
    # The user parameters: OpenAI's whole request (chatplug.calls.chat_params), each
    # checked against its declared type and sent as given.
    **options: Unpack[ChatParameters],
) -> Iterator[str | Event]:
    from chatplug.wire import openai

    body: dict[str, Any] = dict(options)
    if stream:
        # The caller's stream options are kept; usage is always asked for.
        body["stream_options"] = {**(options.get("stream_options") or {}), **STREAM_OPTIONS}
    return openai.chat(
        http,
        f"{url}/chat/completions",
        model=model,
        messages=messages,
        stream=stream,
        events=True,
        api_key=api_key,
        **body,
    )


@hookimpl
def list_models(url: str, api_key: str | None, http: HTTPClient) -> list[str]:
    from chatplug.wire import openai

    return openai.list_models(http, url, api_key)
