"""The span attributes chatplug sets: OpenTelemetry's GenAI semantic conventions
(``gen_ai.*``), its general ``error.type``, and chatplug's own (``chatplug.*``).

Written out rather than imported from ``opentelemetry-semantic-conventions``, whose
GenAI names are still in its ``_incubating`` package.  Never a message's text.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ATTRIBUTES", "OPERATION", "error_type", "usage_attributes"]

#: The operation every chatplug completion is.
OPERATION = "chat"

#: What each attribute means, by name (the docs' table comes from here).
ATTRIBUTES = {
    "gen_ai.operation.name": "always chat",
    "gen_ai.provider.name": "the chatplug provider (or route) name",
    "gen_ai.system": "the same (the older convention's name)",
    "gen_ai.request.model": "the model asked for",
    "gen_ai.request.stream": "whether the client streams",
    "gen_ai.response.model": "the model that served",
    "gen_ai.response.finish_reasons": "why the reply ended (a list of one)",
    "gen_ai.response.time_to_first_chunk": "seconds to the first piece",
    "gen_ai.usage.input_tokens": "input tokens (cached ones included)",
    "gen_ai.usage.output_tokens": "output tokens (reasoning included)",
    "gen_ai.usage.cache_read.input_tokens": "input tokens read from a prompt cache",
    "gen_ai.usage.reasoning.output_tokens": "output tokens spent on reasoning",
    "error.type": "the chatplug error's class (or the gateway's error code)",
    "http.response.status_code": "the upstream's (attempt) or the gateway's (request) status",
    "chatplug.route": "the route that made the attempt",
    "chatplug.attempt": "the attempt's number within its provider call",
    "chatplug.request_id": "the request id (the gateway's x-request-id)",
    "chatplug.key_id": "the virtual key that sent the request (gateway)",
    "chatplug.attempts": "upstream attempts the request took (gateway)",
}


def usage_attributes(usage: Any) -> dict[str, int]:
    """The token counts of a :class:`chatplug.events.Usage` the server reported."""
    if usage is None:
        return {}
    pairs = (("gen_ai.usage.input_tokens", usage.prompt_tokens),
             ("gen_ai.usage.output_tokens", usage.completion_tokens),
             ("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens),
             ("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens))
    return {name: int(value) for name, value in pairs if value is not None}


def error_type(error: BaseException) -> str:
    """``error.type``: the class name (a small, fixed set)."""
    return type(error).__name__
