"""``POST /v1/messages``: Anthropic's Messages wire in front of every provider and route.

What the anthropic SDKs and Claude Code send (:func:`chatplug.wire.anthropic_gateway.
parse_request`) runs on the shared path; the reply is a ``message`` or Anthropic's event
grammar (:class:`~chatplug.wire.anthropic_gateway.MessagesEncoder`), errors are in
Anthropic's envelope and statuses.  The query string (Claude Code posts
``/v1/messages?beta=true``), ``anthropic-version`` and ``anthropic-beta`` are accepted.

``POST /v1/messages/count_tokens`` answers an estimate: a token per four characters of
the request's JSON (``system``, ``messages``, ``tools``), rounded up — what Claude Code
uses the figure for (deciding when to compact a conversation) needs no more, and no
provider is called for it.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from ..wire.anthropic_gateway import MessagesEncoder, message_body, parse_request
from .translated import TranslatedEndpoint, load_json

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..calls.completion import Completion
    from ..wire.translated import TranslatedRequest
    from .endpoint import Upstream

__all__ = ["CHARACTERS_PER_TOKEN", "Messages", "count_tokens"]

#: The estimate of ``count_tokens``: characters of JSON per token.
CHARACTERS_PER_TOKEN = 4


class Messages(TranslatedEndpoint):
    """The endpoint; one instance per app."""

    anthropic = True
    what = "an Anthropic Messages request"

    def translate(self, payload: Any) -> TranslatedRequest:
        return parse_request(payload)

    def whole(self, completion: Completion, upstream: Upstream, parsed: Any) -> dict[str, Any]:
        return message_body(completion, parsed.model)

    def encoder(self, upstream: Upstream, parsed: Any) -> MessagesEncoder:
        return MessagesEncoder(parsed.model)


async def count_tokens(request: Request) -> JSONResponse:
    """``POST /v1/messages/count_tokens``: the estimate described above."""
    payload = load_json(await request.body(), "an Anthropic count_tokens request")
    if not isinstance(payload, dict):
        payload = {}
    counted = {key: payload.get(key) for key in ("system", "messages", "tools")}
    characters = len(json.dumps(counted, ensure_ascii=False))
    return JSONResponse({"input_tokens": math.ceil(characters / CHARACTERS_PER_TOKEN)})
