"""The gateway's ASGI application: :func:`create_app`.

Starlette routes the requests; every middleware is pure ASGI (never
``BaseHTTPMiddleware``, which hides disconnects and buffers streams).  From
the outside in: the access log and request id, the request guard (``Host``,
``Origin``, JSON bodies), CORS (only with ``cors_origins``), the gateway keys,
the completion endpoints (:mod:`.dispatch`), then the routes.  Run it with
``chatplug serve`` or any ASGI server::

    uvicorn --factory chatplug.server:create_app
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..gateway_settings import ServerSettings, load_server_settings
from .access import AccessLog
from .auth import GatewayAuth
from .chat import ChatCompletions
from .dispatch import HotPaths
from .errors import GatewayError, anthropic_path
from .guard import RequestGuard
from .health import liveliness, readiness
from .hearing import instrument
from .limits import InFlight
from .messages import Messages, count_tokens
from .metrics import metrics_endpoint
from .models import list_models, retrieve_model
from .record import Accountant
from .responses import Responses, delete_response, get_response
from .shutdown import Drain
from .store import ResponseStore
from .ui import ui_page
from .virtualkeys import VirtualKeys

if TYPE_CHECKING:
    from starlette.requests import Request

    from ..accounting.ledger import Ledger
    from ..plugins.registry import Registry
    from .keycache import KeyCache
    from .keyguard import KeyLimits

__all__ = ["GC_THRESHOLD", "Gateway", "create_app", "serving_app"]

#: The young generation's threshold of a serving process (CPython's default: 700).
GC_THRESHOLD = 10_000

logger = logging.getLogger("chatplug.server")


class Gateway:
    """What the endpoints share: the registry, the settings, the in-flight count, the drain."""

    def __init__(self, registry: Registry, settings: ServerSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.inflight = InFlight(settings.max_concurrency)
        self.drain = Drain(settings.grace)
        #: Told of every completion request (:mod:`.record`): keys and limits, the usage
        #: ledger, metrics.  Admission runs in this order.
        self.accountants: list[Accountant] = []
        #: Virtual keys (docs/keys.md), with ``settings.auth``: the keys in memory and the
        #: accountant counting their limits (``key_limits.degraded``: Redis unreachable).
        self.keys: KeyCache | None = None
        self.key_limits: KeyLimits | None = None
        #: The usage ledger (docs/ledger.md), unless ``settings.ledger`` is off.
        self.ledger: Ledger | None = None


def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    headers = {name.decode(): value.decode() for name, value in exc.headers
               if name != b"content-type"}
    if anthropic_path(request.url.path):
        return JSONResponse(exc.anthropic_body, status_code=exc.anthropic_status,
                            headers=headers)
    return JSONResponse(exc.body, status_code=exc.status, headers=headers)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        error = GatewayError(404, f"no such endpoint: {request.method} {request.url.path}. "
                                  "The gateway serves /v1/chat/completions, /v1/messages, "
                                  "/v1/responses, /v1/models (each also without /v1) and "
                                  "/health/*.",
                             code="not_found", retry=False)
    elif status == 405:
        error = GatewayError(405, f"{request.method} is not allowed on {request.url.path}.",
                             code="method_not_allowed", type="invalid_request_error",
                             retry=False)
    else:
        error = GatewayError(status, str(getattr(exc, "detail", "")) or "request failed",
                             code="http_error", retry=False)
    return _gateway_error(request, error)


def _server_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected failure serving %s %s", request.method, request.url.path,
                 exc_info=exc)
    return _gateway_error(request, GatewayError(
        500, "the gateway failed unexpectedly; this is a bug in chatplug's gateway, please "
             "report it.", code="internal_error"))


def _ledger(settings: ServerSettings) -> Ledger:
    # The usage ledger (docs/ledger.md): the gateway's database, migrated by the writer
    # thread (a database down at start-up fails no request), priced by chatplug.toml.
    from ..accounting.ledger import Ledger
    from ..accounting.pricing import price_list
    from ..configfile import load_config
    from ..paths import data_dir

    return Ledger(settings.database(migrate=False), data_dir() / "ledger",
                  prices=price_list(load_config()), queue_size=settings.ledger_queue,
                  journal_max=settings.ledger_journal_mb << 20)


def create_app(registry: Registry | None = None,
               settings: ServerSettings | None = None, *,
               responses: ResponseStore | None = None) -> Starlette:
    """The gateway as an ASGI application.

    :param registry: the providers and routes to serve (default: ``chatplug.registry``).
    :param settings: the gateway's settings (default: read from ``CHATPLUG_SERVER_*``).
    :param responses: where ``/v1/responses`` stores responses (default: ``responses.db``
        in chatplug's data directory, opened on first use).
    :raises ConfigurationError: a gateway setting is invalid, or the keys file is unreadable.
    """
    if registry is None:
        from .. import registry as default_registry

        registry = default_registry
    if settings is None:
        settings = load_server_settings()
    keys = settings.keys() if settings.auth else ()
    gateway = Gateway(registry, settings)
    if responses is None:
        responses = ResponseStore()
    metrics = instrument(gateway)  # metrics and traces: accountants and observers

    # Virtual keys, their limits and the admin API (docs/keys.md).
    virtual = VirtualKeys(gateway) if settings.auth else None

    ledger = _ledger(settings) if settings.ledger else None
    if ledger is not None:
        gateway.accountants.append(ledger)
        gateway.ledger = ledger

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry.runtime.transport.prepare_loop()  # no import stalls the first request
        gateway.drain.install()
        if virtual is not None:
            await virtual.start()
        if ledger is not None:
            ledger.start()
        try:
            yield
        finally:
            gateway.drain.uninstall()
            if virtual is not None:
                await virtual.stop()
            database = getattr(app.state, "ui_database", None)  # opened by /ui
            if database is not None:
                database.close()
            if ledger is not None:
                await asyncio.to_thread(ledger.close)

    middleware = [Middleware(AccessLog),
                  Middleware(RequestGuard, allowed_hosts=settings.hosts,
                             cors_origins=settings.origins)]
    if settings.origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(settings.origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id", "x-api-key",
                           "anthropic-version", "anthropic-beta"],
            expose_headers=["x-request-id", "x-chatplug-provider", "x-chatplug-attempts",
                            "x-chatplug-overhead-ms", "x-chatplug-dropped"]))
    middleware.append(Middleware(GatewayAuth, keys=keys, virtual=gateway.keys))
    completions = {"/v1/chat/completions": ChatCompletions(gateway),
                   "/v1/messages": Messages(gateway),
                   "/v1/responses": Responses(gateway, responses)}
    # The paths without /v1 (below) are hot too.
    hot = {**completions, **{path.removeprefix("/v1"): endpoint
                             for path, endpoint in completions.items()}}
    middleware.append(Middleware(HotPaths, endpoints=hot))
    handlers: dict[Any, Any] = {GatewayError: _gateway_error, 404: _http_error,
                                405: _http_error, 500: _server_error}
    api = [
            Route("/v1/chat/completions", completions["/v1/chat/completions"],
                  methods=["POST"]),
            Route("/v1/messages", completions["/v1/messages"], methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/v1/responses", completions["/v1/responses"], methods=["POST"]),
            Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
            Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
    ]
    # As LiteLLM does, the API answers without /v1 too (base_url="http://host:8000").
    api += [Route(route.path.removeprefix("/v1"), route.endpoint, methods=route.methods)
            for route in list(api)]
    app = Starlette(
        routes=[
            *api,
            Route("/health/liveliness", liveliness, methods=["GET"]),
            Route("/health/readiness", readiness, methods=["GET"]),
            *(virtual.routes if virtual is not None else ()),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/ui", ui_page, methods=["GET"]),
        ],
        middleware=middleware,
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.ledger = ledger
    app.state.responses = responses
    app.state.metrics = metrics
    return app


def serving_app() -> Starlette:
    """:func:`create_app` for a process that only serves (``chatplug serve``'s workers).

    It also tunes the process's garbage collector: what start-up made (modules, the
    registry, the app) is frozen out of its sight, and the young generation is
    collected every :data:`GC_THRESHOLD` allocations instead of CPython's 700.  With
    dozens of requests in flight, their objects outlive a collection that comes every
    few requests and are scanned again in the older generations, which then scanned
    the whole start-up heap too (measured: 4 % of the instructions per request at 32
    clients; docs/performance.md).  Only here: a process that embeds the app keeps its
    own collector's settings.
    """
    app = create_app()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)
    return app
