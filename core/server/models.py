"""``GET /v1/models`` and ``GET /v1/models/{id}``: what a request's ``model`` may name.

Each provider's bare name (its default model), each of its listed models as
``Provider/model``, and each route; ``owned_by`` is the provider's name or
``"route"``.  A provider that lists no models accepts any name:
``/v1/models/OpenAI/anything`` answers for it though the list cannot show it.
An id may contain ``/``; the openai SDK sends it as ``%2F``, which the ASGI
server has decoded by the time it reaches the route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from ..errors import ChatplugError
from .errors import GatewayError

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..plugins.registry import Registry

__all__ = ["list_models", "model_entries", "retrieve_model"]

ROUTE_OWNER = "route"


def _entry(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def routes_of(registry: Registry) -> list[Any]:
    """The registry's named routes (none before routes exist)."""
    routes = getattr(registry, "routes", None)
    return list(routes()) if callable(routes) else []


def model_entries(registry: Registry) -> list[dict[str, Any]]:
    """Every model object the gateway lists, providers first, then routes."""
    entries = []
    for provider in registry.providers():
        entries.append(_entry(provider.name, provider.name))
        entries.extend(_entry(f"{provider.name}/{model}", provider.name)
                       for model in provider.models)
    entries.extend(_entry(route.name, ROUTE_OWNER) for route in routes_of(registry))
    return entries


async def list_models(request: Request) -> JSONResponse:
    registry: Registry = request.app.state.gateway.registry
    return JSONResponse({"object": "list", "data": model_entries(registry)})


def _not_found(model_id: str) -> GatewayError:
    return GatewayError(404, f"the model {model_id!r} does not exist on this gateway; "
                             "GET /v1/models lists the models it serves.",
                        code="model_not_found", param="model", retry=False)


async def retrieve_model(request: Request) -> JSONResponse:
    model_id: str = request.path_params["model_id"]
    registry: Registry = request.app.state.gateway.registry
    for entry in model_entries(registry):
        if entry["id"] == model_id:
            return JSONResponse(entry)
    try:
        target, model = registry.resolve(model_id)
    except ChatplugError:
        raise _not_found(model_id) from None
    # A provider that accepts any model name serves this one too.
    if model is not None and not getattr(target, "models", True):
        return JSONResponse(_entry(model_id, target.name))
    raise _not_found(model_id)
