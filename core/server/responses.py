"""``POST /v1/responses``: OpenAI's Responses wire in front of every provider and route.

What the openai SDKs and Codex send (:func:`chatplug.wire.responses.parse_request`)
runs on the shared path; the reply is a ``response`` or the Responses event stream
(:class:`~chatplug.wire.responses.ResponsesEncoder`), a failure after the first piece
``response.failed`` (never a silently completed response).

``store`` (true unless the request says false, as OpenAI's) keeps the response and
its conversation in the gateway's :class:`~.store.ResponseStore`, so that a request
with ``previous_response_id`` continues it on the same gateway; an unknown id is a
404.  ``GET /v1/responses/{id}`` and ``DELETE /v1/responses/{id}`` read and forget a
stored one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from ..errors import StorageError
from ..wire.responses import ResponsesEncoder, conversation, parse_request
from .errors import GatewayError
from .translated import TranslatedEndpoint

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..calls.completion import Completion
    from ..wire.responses import ParsedResponses
    from .app import Gateway
    from .endpoint import Upstream
    from .store import ResponseStore

__all__ = ["Responses", "delete_response", "get_response"]

logger = logging.getLogger("chatplug.server")


def _unknown(ident: str) -> GatewayError:
    return GatewayError(404, f"no stored response has the id {ident!r} on this gateway (it "
                             "was stored with store: false, deleted, pruned, or made by "
                             "another gateway).", code="response_not_found",
                        param="previous_response_id", type="invalid_request_error",
                        retry=False)


def _storage(error: StorageError) -> GatewayError:
    return GatewayError(500, f"the gateway's responses store failed: {error.message}",
                        code="storage_error")


class Responses(TranslatedEndpoint):
    """The endpoint; one instance per app."""

    what = "a Responses request"

    def __init__(self, gateway: Gateway, store: ResponseStore) -> None:
        super().__init__(gateway)
        self.store = store

    def translate(self, payload: Any) -> ParsedResponses:
        return parse_request(payload)

    async def before(self, parsed: Any) -> None:
        previous = parsed.previous_response_id
        if previous is None:
            return
        try:
            stored = await self.store.get(previous)
        except StorageError as error:
            raise _storage(error) from None
        if stored is None:
            raise _unknown(previous)
        parsed.follow(stored[0])

    def whole(self, completion: Completion, upstream: Upstream, parsed: Any) -> dict[str, Any]:
        encoder = ResponsesEncoder(parsed, parsed.model)
        return encoder.whole(completion)

    def encoder(self, upstream: Upstream, parsed: Any) -> ResponsesEncoder:
        return ResponsesEncoder(parsed, parsed.model)

    async def after(self, parsed: Any, reply: Any) -> None:
        if not parsed.store:
            return
        response = reply.response(reply.status()) if isinstance(reply, ResponsesEncoder) else reply
        earlier = parsed.messages[1:] if parsed.instructions else parsed.messages
        try:
            await self.store.put(response["id"], conversation(earlier, response["output"]),
                                 response)
        except StorageError as error:  # the reply goes out all the same: say so in the log
            logger.warning("%s", error.message)


async def get_response(request: Request) -> JSONResponse:
    """``GET /v1/responses/{id}``: a stored response."""
    store: ResponseStore = request.app.state.responses
    ident = request.path_params["response_id"]
    try:
        stored = await store.get(ident)
    except StorageError as error:
        raise _storage(error) from None
    if stored is None:
        raise _unknown(ident)
    return JSONResponse(stored[1])


async def delete_response(request: Request) -> JSONResponse:
    """``DELETE /v1/responses/{id}``: forget a stored response."""
    store: ResponseStore = request.app.state.responses
    ident = request.path_params["response_id"]
    try:
        deleted = await store.delete(ident)
    except StorageError as error:
        raise _storage(error) from None
    if not deleted:
        raise _unknown(ident)
    return JSONResponse({"id": ident, "object": "response", "deleted": True})
