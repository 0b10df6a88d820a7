"""GravityEngine: a ChatGPT-Next-Web deployment's OpenAI proxy (the old gpt4free provider).

The seed module posted to ``url + '/api/openai/v1/chat/completions'``, dropped
the caller's temperature and presence_penalty, never sent its headers and
parsed a streamed reply as one JSON document.  Here the options and headers
are sent and ``stream=True`` reads a real event stream.  The base URL comes
from ``CHATPLUG_GRAVITYENGINE_URL``, so any deployment of that kind works.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from chatplug import Range, hookimpl

if TYPE_CHECKING:
    from chatplug.http import HTTPClient

url = "https://gpt4.xunika.uk"
model = ["gpt-3.5-turbo-16k", "gpt-3.5-turbo-0613"]
supports_stream = True
needs_auth = False
#: What `chatplug providers --check` asks for: the proxy's models list (a plain GET).
check_path = "/api/openai/v1/models"

PATH = "/api/openai/v1/chat/completions"


def headers_for(base_url: str) -> dict[str, str]:
    """The headers a Next-Web page sends; its proxy checks where the request comes from."""
    return {
        "Accept": "text/event-stream, application/json",
        "Origin": base_url,
        "Referer": f"{base_url}/",
    }


@hookimpl
def create_completion(
    model: str,
    messages: list,  # type: ignore[type-arg]  # shown as "messages: list", the seed's form
    stream: bool,
    url: str,
    http: HTTPClient,
    temperature: Annotated[float, Range(0, 2)] = 0.7,
    presence_penalty: Annotated[float, Range(-2, 2)] = 0.0,
) -> Iterator[str]:
    from chatplug.wire import openai

    return openai.chat(
        http,
        url + PATH,
        model=model,
        messages=messages,
        stream=stream,
        headers=headers_for(url),
        temperature=temperature,
        presence_penalty=presence_penalty,
    )
