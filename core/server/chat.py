"""``POST /v1/chat/completions``: OpenAI's chat-completions wire on the shared path.

The request is OpenAI's own (:mod:`.request`: every field not the gateway's is a
provider parameter, validated by the library, so an undeclared one is a 400 naming
it); the reply is a ``chat.completion`` or its ``chat.completion.chunk`` stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..wire.encode import ChunkEncoder
from ..wire.openai import completion_body
from .endpoint import Endpoint, Upstream
from .request import ChatRequest, parse_request

if TYPE_CHECKING:
    from ..calls.completion import Completion

__all__ = ["ChatCompletions", "Upstream"]


class ChatCompletions(Endpoint):
    """The endpoint; one instance per app."""

    def parse(self, body: bytes) -> ChatRequest:
        return parse_request(body)

    def whole(self, completion: Completion, upstream: Upstream, parsed: Any) -> dict[str, Any]:
        return completion_body(completion)

    def encoder(self, upstream: Upstream, parsed: Any) -> ChunkEncoder:
        return ChunkEncoder(model=upstream.served_model,
                            include_usage=upstream.request.include_usage)
