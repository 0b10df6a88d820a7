"""OpenAI, or any OpenAI-compatible chat-completions endpoint (``{url}/chat/completions``).

Set ``CHATPLUG_OPENAI_API_KEY`` (or ``OPENAI_API_KEY``) and, for another
compatible server, ``CHATPLUG_OPENAI_URL`` (or ``OPENAI_BASE_URL``).  Any model
name is accepted; the caller names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from chatplug import Range, hookimpl

if TYPE_CHECKING:
    from chatplug.http import HTTPClient

url = "https://api.openai.com/v1"
model: list[str] = []
supports_stream = True
needs_auth = True
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
    temperature: Annotated[float, Range(0, 2)] | None = None,
    top_p: Annotated[float, Range(0, 1)] | None = None,
    max_tokens: Annotated[int, Range(1)] | None = None,
    presence_penalty: Annotated[float, Range(-2, 2)] | None = None,
    frequency_penalty: Annotated[float, Range(-2, 2)] | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    from chatplug.wire import openai

    return openai.chat(
        http,
        f"{url}/chat/completions",
        model=model,
        messages=messages,
        stream=stream,
        api_key=api_key,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
        seed=seed,
    )
