"""Gateway keys: ``Authorization: Bearer <key>`` on every endpoint but liveliness.

A pure ASGI middleware.  Keys are compared in constant time
(``hmac.compare_digest``) against every configured key, so neither the
match nor its position shows in the timing.  The client's ``Authorization``
header authenticates the client to the gateway only: it is never forwarded
upstream (providers are called with the keys the gateway is configured with).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from .errors import GatewayError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["OPEN_PATHS", "GatewayAuth"]

#: Answered without a key: a load balancer's liveness check.
OPEN_PATHS = frozenset({"/health/liveliness"})


def _bearer(scope: Scope) -> bytes | None:
    value: bytes
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class GatewayAuth:
    """Refuses HTTP requests without one of ``keys`` with 401 (no keys: lets all through)."""

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys and scope["path"] not in OPEN_PATHS:
            token = _bearer(scope)
            matched = False
            if token is not None:
                for key in self.keys:  # all of them, whatever matched first
                    matched |= hmac.compare_digest(token, key)
            if not matched:
                said = "no gateway key was sent" if token is None else "the gateway key is wrong"
                await GatewayError(
                    401, f"{said}: send Authorization: Bearer <key> with a key of this "
                         "gateway (CHATPLUG_SERVER_API_KEYS).",
                    code="invalid_api_key", retry=False,
                ).send(send, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)
