"""``GET /v1/models`` and ``GET /v1/models/{id}``: what a request's ``model`` may name.

The list holds only ids a request can send, each as the registry's resolver
(:meth:`Registry.aresolve`) takes it: the aliases (``owned_by`` their provider,
or ``"route"``), the routes, each provider's bare name when it has a default
model (one it declares), and each model a provider declares or its server lists
(cached ``CHATPLUG_MODELS_TTL`` seconds; only configured providers are asked) as
``Provider/model`` and, where that resolves to the same, bare.  A provider that
neither declares nor lists models accepts any name: ``/v1/models/Acme/anything``
answers for it though the list cannot show it; any other id it does not list is a
404.  An id may contain ``/``; the openai SDK sends it as ``%2F``, which the ASGI
server has decoded by the time it reaches the route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from ..calls.provider import Provider
from ..errors import ChatplugError
from ..plugins.catalog import Pending
from .errors import GatewayError, from_chatplug

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..plugins.registry import Registry

__all__ = ["list_models", "model_entries", "model_error", "retrieve_model"]

ROUTE_OWNER = "route"


def _entry(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def _owner(target: Any) -> str:
    return str(target.name) if isinstance(target, Provider) else ROUTE_OWNER


async def model_entries(registry: Registry) -> list[dict[str, Any]]:
    """Every model object the gateway lists: aliases, routes, then each provider's.

    :raises ConfigurationError: the aliases or chatplug.toml are malformed.
    """
    catalog = registry.catalog
    lists = await catalog.lists.alisted()
    entries: dict[str, str] = {}

    def add(model_id: str) -> None:
        """List ``model_id`` if it resolves (as a request's model would) to one target."""
        if model_id in entries:
            return
        try:
            outcome = catalog.local(model_id)
            found = catalog.listed(outcome, lists) if isinstance(outcome, Pending) else outcome
        except ChatplugError:
            return  # ambiguous, or an alias of nothing: a request would fail
        if found is not None:
            entries[model_id] = _owner(found[0])

    for alias in catalog.models()[0]:
        add(alias)
    for route in registry.routes():
        add(route.name)
    for provider in registry.providers():
        if provider.models:
            add(provider.name)  # its default model is its first; else it names none
        for model in dict.fromkeys([*provider.models, *lists.get(provider.name, ())]):
            add(f"{provider.name}/{model}")
            add(model)
    return [_entry(model_id, owner) for model_id, owner in entries.items()]


async def list_models(request: Request) -> JSONResponse:
    registry: Registry = request.app.state.gateway.registry
    try:
        entries = await model_entries(registry)
    except ChatplugError as exc:
        raise from_chatplug(exc) from None
    return JSONResponse({"object": "list", "data": entries})


def model_error(error: ChatplugError) -> GatewayError:
    """The reply when a request's ``model`` does not resolve (unknown, ambiguous, absent
    without a default model): the error's, with ``param: "model"``."""
    reply = from_chatplug(error)
    reply.param = "model"
    return reply


def _not_found(model_id: str) -> GatewayError:
    return GatewayError(404, f"the model {model_id!r} does not exist on this gateway; "
                             "GET /v1/models lists the models it serves.",
                        code="model_not_found", param="model", retry=False)


async def retrieve_model(request: Request) -> JSONResponse:
    model_id: str = request.path_params["model_id"]
    registry: Registry = request.app.state.gateway.registry
    try:
        entries = await model_entries(registry)
        listed = next((entry for entry in entries if entry["id"] == model_id), None)
        if listed is not None:
            return JSONResponse(listed)
        target, model = await registry.aresolve(model_id)
    except ChatplugError:
        raise _not_found(model_id) from None
    # A provider that neither declares nor lists models serves any name.
    if (model is not None and isinstance(target, Provider) and not target.models
            and not target.lists_models):
        return JSONResponse(_entry(model_id, target.name))
    raise _not_found(model_id)
