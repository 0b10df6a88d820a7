"""The admin key's check, for the gateway's own pages (``/metrics``, ``/ui``) and the
admin API (``/admin/keys``, :mod:`.admin`).

``CHATPLUG_SERVER_ADMIN_KEY`` set: those need it, as ``Authorization: Bearer <admin
key>`` (Prometheus' ``authorization`` setting), as ``x-api-key``, or as the password of
HTTP Basic authentication (a browser asks for it; any user name), compared in constant
time.  Not
set: they are open while the gateway has no keys (one person on one box), and refused
with 403 once it has some.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse

from .errors import GatewayError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import Scope

    from ..gateway_settings import ServerSettings

__all__ = ["admin_refusal", "is_admin"]


def _sent(scope: Scope) -> bytes:
    """The key in a request: a bearer token, a Basic password, or ``x-api-key``."""
    header = b""
    api_key = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value
        elif name == b"x-api-key":
            api_key = value.strip()
    scheme, _, token = header.partition(b" ")
    token = token.strip()
    if scheme.lower() == b"bearer":
        return token
    if scheme.lower() == b"basic":
        try:
            decoded = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return b""
        return decoded.partition(b":")[2]
    return api_key


def is_admin(scope: Scope, admin: bytes | None) -> bool:
    """Whether the request carries the admin key ``admin`` (constant-time comparison)."""
    if not admin:
        return False
    sent = _sent(scope)
    return bool(sent) and hmac.compare_digest(sent, admin)


def admin_refusal(request: Request, settings: ServerSettings) -> JSONResponse | None:
    """``None`` when the request may see an admin page, else the response refusing it:
    401 without the admin key or with a wrong one (with a Basic challenge, so that a
    browser asks), 403 when the gateway has keys (static or virtual) but no admin key is
    configured."""
    if not settings.auth:
        return None
    admin = settings.admin()
    if not admin:
        virtual = getattr(request.app.state.gateway, "keys", None)
        if not settings.keys() and not (virtual is not None and virtual.active):
            return None
        error = GatewayError(403, "this page needs the admin key, and none is configured: "
                                  "set CHATPLUG_SERVER_ADMIN_KEY.",
                             code="admin_key_not_configured", retry=False)
        return JSONResponse(error.body, status_code=403)
    if is_admin(request.scope, admin):
        return None
    error = GatewayError(401, "this page needs the admin key: send Authorization: Bearer "
                              "<CHATPLUG_SERVER_ADMIN_KEY> (or it as the Basic password).",
                         code="invalid_api_key", retry=False)
    return JSONResponse(error.body, status_code=401,
                        headers={"www-authenticate": 'Basic realm="chatplug gateway"'})
