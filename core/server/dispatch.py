"""The completion endpoints, reached without Starlette's router: :class:`HotPaths`.

A completion request passes Starlette's exception layer, its router (a regular
expression per route until one matches) and the route's method check before
its endpoint runs; on the gateway's most frequent requests that was a few
percent of the CPU each costs (docs/performance.md).  :class:`HotPaths` sits
innermost among the gateway's middlewares (inside the access log, the guard,
CORS and the keys, which all still see every request) and hands a ``POST`` to
one of the completion paths straight to its endpoint; everything else
(another method, another path, a ``root_path``) goes on to Starlette, which
answers it as before (404, 405, the other routes).

What Starlette's exception layer did for these endpoints stays done: a
:class:`~.errors.GatewayError` that escapes an endpoint is answered with it
(in Anthropic's envelope on ``/v1/messages``); any other failure reaches
Starlette's outermost error layer, the gateway's 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import GatewayError, anthropic_path

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HotPaths"]


class HotPaths:
    """Sends ``POST`` requests to the paths of ``endpoints`` to their endpoint directly;
    anything else to ``app``."""

    __slots__ = ("app", "endpoints")

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        try:
            await endpoint(scope, receive, send)
        except GatewayError as error:
            await error.send(send, anthropic=anthropic_path(scope["path"]))
