"""An OpenAI chat-completions request body, checked: :func:`parse_request`.

The gateway reads ``model``, ``messages``, ``stream`` and
``stream_options.include_usage`` itself; every other field is a parameter
of the provider (``temperature``, ``tools``...), validated by the library
exactly as a direct call's would be, so a parameter the provider does not
declare is refused with 400 naming it.  A ``null`` value means "not set", as
in OpenAI's API.

The passthrough is the request's own ``extra_body`` object: its fields are
merged into the upstream request body as they are (chatplug's ``extra_body``
call option), for a field a provider does not declare.  chatplug's other call
options (``api_key``, ``url``, ``headers``, ``timeout``, ``max_retries``) are
refused: a client must not redirect the gateway's provider keys or
configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..hooks import CALL_OPTIONS, CORE_ARGUMENTS
from .errors import GatewayError

__all__ = ["ChatRequest", "parse_request"]

#: Fields the gateway reads itself; the rest go to the provider.
GATEWAY_FIELDS = frozenset({"model", "messages", "stream", "stream_options", "extra_body"})


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[Any]
    stream: bool
    include_usage: bool
    params: dict[str, Any]
    extra_body: dict[str, Any] | None


def _invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code="invalid_request", param=param, retry=False)


def parse_request(body: bytes) -> ChatRequest:
    """The checked request.

    :raises GatewayError: 400 naming the field: not JSON, not an object, no
        ``model`` or ``messages``, a wrong ``stream``/``stream_options``/``extra_body``,
        or one of chatplug's call options.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise _invalid("the request body is not valid JSON; send a chat-completions request "
                       "object (Content-Type: application/json).") from None
    if not isinstance(payload, dict):
        raise _invalid("the request body must be a JSON object with model and messages.")
    model = payload.get("model")
    if model is None:
        model = ""  # the default model (the registry says so if there is none)
    elif not isinstance(model, str) or not model.strip():
        raise _invalid("model must be a model name, a provider name, Provider/model, an "
                       "alias or a route name (GET /v1/models lists them).", "model")
    messages = payload.get("messages")
    if not isinstance(messages, list):
        raise _invalid("messages is required: a list of chat messages.", "messages")
    stream = payload.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise _invalid(f"stream must be true or false, not {stream!r}.", "stream")
    include_usage = False
    options = payload.get("stream_options")
    if options is not None:
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise _invalid("stream_options must be an object with include_usage only.",
                           "stream_options")
        include_usage = options.get("include_usage") or False
        if not isinstance(include_usage, bool):
            raise _invalid("stream_options.include_usage must be true or false.",
                           "stream_options")
    extra_body = payload.get("extra_body")
    if extra_body is not None:
        if not isinstance(extra_body, dict):
            raise _invalid("extra_body must be an object of fields to send upstream as they "
                           "are.", "extra_body")
        clash = sorted(set(extra_body) & set(CORE_ARGUMENTS))
        if clash:
            raise _invalid(f"extra_body may not set {', '.join(clash)}: use the request's own "
                           "fields.", "extra_body")
    params = {key: value for key, value in payload.items()
              if key not in GATEWAY_FIELDS and value is not None}
    refused = sorted(set(params) & CALL_OPTIONS)
    if refused:
        raise _invalid(f"{refused[0]} cannot be set through the gateway: it calls providers "
                       "with its own configuration.", refused[0])
    return ChatRequest(model=model, messages=messages, stream=stream,
                       include_usage=include_usage, params=params, extra_body=extra_body)
