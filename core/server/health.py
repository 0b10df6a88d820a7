"""``/health/liveliness`` (the process answers) and ``/health/readiness``.

Readiness is 200 while the worker serves: its providers loaded and no
shutdown under way (a load balancer stops sending it requests when a drain
begins).  ``?probe=1`` also runs ``chatplug providers --check``'s probe of
every provider's endpoint (no key is sent) and is 503 if any is failing.

Both answer without a gateway key, since a load balancer sends none.  Without
one (when the gateway has keys), readiness says only its status: no provider
names, no load errors, and no probe (each would call every provider's host).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse

from ..errors import ChatplugError
from .auth import authorized

if TYPE_CHECKING:
    from starlette.requests import Request

    from .app import Gateway

__all__ = ["liveliness", "readiness"]


async def liveliness(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


async def readiness(request: Request) -> JSONResponse:
    gateway: Gateway = request.app.state.gateway
    registry = gateway.registry
    if gateway.drain.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    detailed = authorized(request.scope)
    try:
        providers = registry.providers()
        errors = registry.errors
    except ChatplugError as exc:  # strict plugin loading failed
        failing = {"status": "failing", "error": str(exc)} if detailed else {"status": "failing"}
        return JSONResponse(failing, status_code=503)
    status = "ready" if providers else "no providers"
    ready = bool(providers)
    if not detailed:
        return JSONResponse({"status": status}, status_code=200 if ready else 503)
    body: dict[str, object] = {"status": status, "providers": [p.name for p in providers],
                               "errors": errors}
    if request.query_params.get("probe") in ("1", "true", "yes"):
        from ..calls.probe import FAILING, probe_all

        # The probes block (a thread each); off the event loop.
        results = await asyncio.to_thread(probe_all, providers, registry.transport)
        body["checks"] = [result.as_dict() for result in results]
        ready = ready and not any(result.status == FAILING for result in results)
        if not ready:
            body["status"] = "failing"
    return JSONResponse(body, status_code=200 if ready else 503)
