"""The admin key's check for the gateway's own pages (``/metrics``, ``/ui``).

``CHATPLUG_SERVER_ADMIN_KEY`` set: those pages need it, as ``Authorization: Bearer
<admin key>`` (Prometheus' ``authorization`` setting) or as the password of HTTP Basic
authentication (a browser asks for it; any user name), compared in constant time.  Not
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

    from ..gateway_settings import ServerSettings

__all__ = ["admin_refusal"]


def _sent(header: str) -> bytes:
    """The key in an ``Authorization`` header: a bearer token or a Basic password."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        return token.encode()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return b""
        return decoded.partition(b":")[2]
    return b""


def admin_refusal(request: Request, settings: ServerSettings) -> JSONResponse | None:
    """``None`` when the request may see an admin page, else the response refusing it:
    401 without the admin key or with a wrong one (with a Basic challenge, so that a
    browser asks), 403 when the gateway has keys but no admin key is configured."""
    if not settings.auth:
        return None
    admin = settings.admin_key.get_secret_value().encode() if settings.admin_key else b""
    if not admin:
        if not settings.keys():
            return None
        error = GatewayError(403, "this page needs the admin key, and none is configured: "
                                  "set CHATPLUG_SERVER_ADMIN_KEY.",
                             code="admin_key_not_configured", retry=False)
        return JSONResponse(error.body, status_code=403)
    sent = _sent(request.headers.get("authorization", ""))
    if sent and hmac.compare_digest(sent, admin):
        return None
    error = GatewayError(401, "this page needs the admin key: send Authorization: Bearer "
                              "<CHATPLUG_SERVER_ADMIN_KEY> (or it as the Basic password).",
                         code="invalid_api_key", retry=False)
    return JSONResponse(error.body, status_code=401,
                        headers={"www-authenticate": 'Basic realm="chatplug gateway"'})
