"""Gateway keys: ``Authorization: Bearer <key>`` (or ``x-api-key: <key>``, as Claude Code
sends it) on every endpoint but the health checks.

A pure ASGI middleware.  The health checks answer without a key (a load
balancer sends none); :data:`AUTHORIZED` in the scope tells them whether the
client sent a valid one, so that readiness shows details only to those.
Keys are compared in constant time (``hmac.compare_digest``) against every
configured key, so neither the match nor its position shows in the timing.
Virtual keys (``cpk_…``, :mod:`.keycache`) are accepted too once the database
holds one; the caller's key goes in the scope under :data:`~.record.KEY_SCOPE`.
``/admin/`` checks the admin key itself.  The client's ``Authorization`` header
authenticates the client to the gateway only: it is never forwarded upstream
(providers are called with the keys the gateway is configured with).
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING

from .errors import GatewayError, anthropic_path
from .record import KEY_SCOPE

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .keycache import KeyCache

__all__ = ["ADMIN_PATHS", "AUTHORIZED", "OPEN_PATHS", "GatewayAuth", "authorized"]

#: Answered without a key: a load balancer's health checks.
OPEN_PATHS = frozenset({"/health/liveliness", "/health/readiness"})
#: Checked by their own handlers against the admin key (:mod:`.admin_only`), not here;
#: so is everything under ``/admin/``.
ADMIN_PATHS = frozenset({"/metrics", "/ui"})
#: The scope entry saying whether a request to an open path carried a valid key.
AUTHORIZED = "chatplug.authorized"


def authorized(scope: Scope) -> bool:
    """Whether the request may see more than a health status (a valid key, or no keys)."""
    return bool(scope.get(AUTHORIZED, True))


def _bearer(scope: Scope) -> bytes | None:
    """The key a client sent: ``Authorization: Bearer`` (OpenAI's SDKs, the anthropic SDK
    2.x), else ``x-api-key`` (Claude Code, Anthropic's wire)."""
    value: bytes
    api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
        if name == b"x-api-key" and value.strip():
            api_key = value.strip()
    return api_key


def _admin(path: str) -> bool:
    return path in ADMIN_PATHS or path.startswith("/admin/")


class GatewayAuth:
    """Refuses HTTP requests without one of ``keys`` with 401 (no keys: lets all through);
    :data:`OPEN_PATHS` pass either way, marked with :data:`AUTHORIZED`."""

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...],
                 virtual: KeyCache | None = None) -> None:
        self.app = app
        self.keys = keys
        self.virtual = virtual

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        virtual = self.virtual
        if scope["type"] == "http" and (self.keys or (virtual is not None and virtual.active)):
            token = _bearer(scope)
            matched = False
            said = "no gateway key was sent" if token is None else "the gateway key is wrong"
            if token is not None:
                for key in self.keys:  # all of them, whatever matched first
                    matched |= hmac.compare_digest(token, key)
                if not matched and virtual is not None and token.startswith(b"cpk_"):
                    found = await virtual.find(token)
                    matched = found is not None and found.usable(time.time())
                    if matched:
                        scope[KEY_SCOPE] = found
                    elif found is not None:
                        said = "the gateway key is revoked or expired"
            if scope["path"] in OPEN_PATHS:
                scope[AUTHORIZED] = matched
            elif not matched and not _admin(scope["path"]):
                await GatewayError(
                    401, f"{said}: send Authorization: Bearer <key> (or x-api-key: <key>) "
                         "with a key of this gateway (CHATPLUG_SERVER_API_KEYS, or a "
                         "virtual key).",
                    code="invalid_api_key", retry=False,
                ).send(send, [(b"www-authenticate", b"Bearer")],
                       anthropic=anthropic_path(scope["path"]))
                return
        await self.app(scope, receive, send)
