"""The admin API: ``/admin/keys`` (``GET`` lists the virtual keys, ``POST`` creates one,
``DELETE /admin/keys/{id}`` revokes one), only with the admin key
``CHATPLUG_SERVER_ADMIN_KEY`` (``Authorization: Bearer`` or ``x-api-key``).

Refusals: 404 without an admin key configured (the API does not exist), 401 with a
missing or wrong one, 400 for a malformed key (the message names the field), 404 for an
unknown id, 503 when the database fails.  ``POST`` answers 201 with the key itself under
``key`` — the only time it is shown.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from ..accounting.keys import UnknownKeyError
from ..accounting.keyspec import KeySyntaxError, parse_budget, parse_duration, parse_models
from ..errors import ChatplugError
from .admin_only import is_admin
from .errors import GatewayError

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..accounting.keys import KeyStore

__all__ = ["create_key", "list_keys", "revoke_key"]


async def _store(request: Request) -> KeyStore:
    gateway = request.app.state.gateway
    admin = gateway.settings.admin()
    if admin is None or gateway.keys is None:
        raise GatewayError(404, "the admin API is off: set CHATPLUG_SERVER_ADMIN_KEY on the "
                                "gateway to use it.", code="not_found", retry=False)
    if not is_admin(request.scope, admin):
        raise GatewayError(401, "the admin API needs the admin key "
                                "(CHATPLUG_SERVER_ADMIN_KEY) as Authorization: Bearer <key>.",
                           code="invalid_api_key", retry=False)
    if gateway.keys.store is None:
        await gateway.keys.reload()
    if gateway.keys.store is None:
        raise GatewayError(503, "the gateway's database cannot be opened; see its log.",
                           code="storage_unavailable")
    store: KeyStore = gateway.keys.store
    return store


async def _run(work: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(work, *args, **kwargs)
    except UnknownKeyError as exc:
        raise GatewayError(404, str(exc), code="key_not_found", retry=False) from None
    except KeySyntaxError as exc:
        raise GatewayError(400, str(exc), code="invalid_request", retry=False) from None
    except ChatplugError as exc:
        raise GatewayError(503, str(exc), code="storage_unavailable") from None


async def list_keys(request: Request) -> JSONResponse:
    store = await _store(request)
    keys = await _run(store.list)
    return JSONResponse({"object": "list", "data": [key.as_dict() for key in keys]})


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise GatewayError(400, f"{name} must be a {kind.__name__}; got {value!r}.",
                           code="invalid_request", param=name, retry=False)
    return value


async def create_key(request: Request) -> JSONResponse:
    store = await _store(request)
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GatewayError(400, "send a JSON object: {\"name\": ..., \"models\": [...], "
                                "\"rpm\": ..., \"budget\": \"5usd\", \"period\": \"month\"}.",
                           code="invalid_request", retry=False)
    models = body.get("models")
    try:
        patterns = (parse_models(",".join(models) if isinstance(models, list) else models)
                    if models else None)
        budget = _field(body, "budget", str)
        expires = _field(body, "expires", str)
        options = {"models": patterns, "rpm": _field(body, "rpm", int),
                   "tpm": _field(body, "tpm", int),
                   "max_parallel": _field(body, "max_parallel", int),
                   "budget": parse_budget(budget) if budget else None,
                   "period": _field(body, "period", str),
                   "expires_in": parse_duration(expires) if expires else None,
                   "priced": bool(request.app.state.gateway.key_limits.prices)}
    except (KeySyntaxError, TypeError) as exc:
        raise GatewayError(400, str(exc), code="invalid_request", retry=False) from None
    key, secret = await _run(store.create, str(_field(body, "name", str) or ""),
                             **options)
    await request.app.state.gateway.keys.reload()
    return JSONResponse({**key.as_dict(), "key": secret}, status_code=201)


async def revoke_key(request: Request) -> JSONResponse:
    store = await _store(request)
    key = await _run(store.revoke, request.path_params["key_id"])
    await request.app.state.gateway.keys.reload()
    return JSONResponse(key.as_dict())
