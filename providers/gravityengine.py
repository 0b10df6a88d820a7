"""GravityEngine: a ChatGPT-Next-Web deployment's OpenAI proxy (the old gpt4free provider).

The seed module posted to ``url + '/api/openai/v1/chat/completions'``, dropped
the caller's temperature and presence_penalty, never sent its headers and
parsed a streamed reply as one JSON document.  Here the options and headers
are sent and ``stream=True`` reads a real event stream.  The base URL comes
from ``CHATPLUG_GRAVITYENGINE_URL``, so any deployment of that kind works.

**Access code.**  A Next-Web (NextChat) deployment that sets ``CODE`` wants
``Authorization: Bearer nk-<code>``, or a user's own OpenAI key as the bearer.
Put either in ``CHATPLUG_GRAVITYENGINE_API_KEY`` (or pass ``api_key=``): a key
starting ``sk-`` (or an already prefixed ``nk-...`` code) is sent as it is, any
other value as the access code ``nk-<value>``.  No key is needed otherwise
(``needs_auth`` stays ``False``).

**What passes through.**  NextChat's ``/api/openai`` route forwards the request
body to OpenAI as it is (it only checks the model against ``CUSTOM_MODELS``), so
GravityEngine takes what OpenAI takes for the models it lists
(``gpt-3.5-turbo-16k``, ``gpt-3.5-turbo-0613``) and sends it as given: the sampling
options, ``stop``, ``max_tokens`` or ``max_completion_tokens``, ``user``,
``response_format``, ``seed``, ``n`` (every choice comes back), ``logprobs`` and
``top_logprobs``, and tools (``tools``, ``tool_choice``; both models call
functions).  Anything else is refused before anything is sent, with the advice to
pass it in ``extra_body``, which the proxy forwards too.  Images are refused as well:
neither model takes image parts, so ``supports_vision`` is ``False``.  A stream does
not ask for its usage (``stream_options``), as NextChat's own page never does and not
every upstream behind a deployment takes it; a reply that reports usage anyway is read,
and ``extra_body={"stream_options": {"include_usage": True}}`` asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from chatplug import Range, hookimpl

if TYPE_CHECKING:
    from chatplug.events import Event
    from chatplug.http import HTTPClient

url = "https://gpt4.xunika.uk"
model = ["gpt-3.5-turbo-16k", "gpt-3.5-turbo-0613"]
supports_stream = True
needs_auth = False
supports_tools = True
supports_vision = False
#: Every request goes through chatplug.wire.openai: the async API and the gateway run
#: this provider on their event loop, without a worker thread.
native_async = True

PATH = "/api/openai/v1/chat/completions"
#: NextChat reads a bearer token starting with this as an access code, anything else as a key.
ACCESS_CODE_PREFIX = "nk-"
#: The proxy's OpenAI base, under which it lists the models (``/models``).
MODELS_BASE = "/api/openai/v1"
#: What `chatplug providers --check` asks for: the proxy's models list (a plain GET).
check_path = MODELS_BASE + "/models"


def headers_for(base_url: str) -> dict[str, str]:
    """The headers a Next-Web page sends; its proxy checks where the request comes from."""
    return {
        "Accept": "text/event-stream, application/json",
        "Origin": base_url,
        "Referer": f"{base_url}/",
    }


def bearer_token(api_key: str | None) -> str | None:
    """The bearer token NextChat expects for ``api_key``: an OpenAI key (``sk-...``) or
    a prefixed code as it is, a bare access code as ``nk-<code>``."""
    if not api_key:
        return None
    if api_key.startswith(("sk-", ACCESS_CODE_PREFIX)):
        return api_key
    return ACCESS_CODE_PREFIX + api_key


@hookimpl
def create_completion(
    model: str,
    messages: list,  # type: ignore[type-arg]  # shown as "messages: list", the seed's form
    stream: bool,
    url: str,
    api_key: str | None,
    http: HTTPClient,
    params: Mapping[str, Any],
    # The user parameters: declared here (names, types, defaults), received in params.
    temperature: Annotated[float, Range(0, 2)] = 0.7,
    presence_penalty: Annotated[float, Range(-2, 2)] = 0.0,
    top_p: Annotated[float, Range(0, 1)] | None = None,
    max_tokens: Annotated[int, Range(1)] | None = None,
    frequency_penalty: Annotated[float, Range(-2, 2)] | None = None,
    stop: str | list[str] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    user: str | None = None,
    max_completion_tokens: Annotated[int, Range(1)] | None = None,
    response_format: dict[str, Any] | None = None,
    seed: int | None = None,
    n: Annotated[int, Range(1, 128)] | None = None,
    logprobs: bool | None = None,
    top_logprobs: Annotated[int, Range(0, 20)] | None = None,
) -> Iterator[str | Event]:
    from chatplug.wire import openai

    return openai.chat(
        http,
        url + PATH,
        model=model,
        messages=messages,
        stream=stream,
        events=True,
        api_key=bearer_token(api_key),
        headers=headers_for(url),
        **params,
    )


@hookimpl
def list_models(url: str, api_key: str | None, http: HTTPClient) -> list[str]:
    """What the deployment's OpenAI proxy lists at ``/api/openai/v1/models``."""
    from chatplug.wire import openai

    return openai.list_models(http, url + MODELS_BASE, bearer_token(api_key),
                              headers=headers_for(url))
