"""What the gateway's metrics and traces hear from the library's observer hooks.

Retries, route failovers and the error of each failed upstream attempt happen inside
the library's call (:mod:`chatplug.calls.run`, :mod:`chatplug.routes.route`), which
reports them through the observer hooks.  The gateway registers at most two observers
per registry, whatever the number of apps built on it: one of failures only
(``chatplug_on_retry``, ``chatplug_on_error``: a call that succeeds at once posts
nothing to it) and one of every hook (for the attempt spans of traces, only when
tracing is on).  Each passes what it hears on to the live sinks of the apps (held
weakly, so an app that is gone stops hearing).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..hooks import hookimpl

if TYPE_CHECKING:
    from ..plugins.registry import Registry
    from .app import Gateway
    from .metrics import Metrics

__all__ = ["instrument", "listen"]

_lock = threading.Lock()
#: Per registry: the observer of failures, and the observer of every hook.
_failures: weakref.WeakKeyDictionary[Any, _Failures] = weakref.WeakKeyDictionary()
_everything: weakref.WeakKeyDictionary[Any, _Everything] = weakref.WeakKeyDictionary()


class _Failures:
    """Passes on retries and failed calls."""

    def __init__(self) -> None:
        self.sinks: weakref.WeakSet[Any] = weakref.WeakSet()

    @hookimpl
    def chatplug_on_retry(self, provider: str, model: str, request_id: str, attempt: int,
                          max_attempts: int, delay_s: float, error: Exception,
                          route: str | None) -> None:
        for sink in list(self.sinks):
            sink.chatplug_on_retry(provider=provider, model=model, request_id=request_id,
                                   attempt=attempt, max_attempts=max_attempts,
                                   delay_s=delay_s, error=error, route=route)

    @hookimpl
    def chatplug_on_error(self, provider: str, model: str, request_id: str,
                          duration_s: float, attempts: int, error: Exception,
                          route: str | None) -> None:
        for sink in list(self.sinks):
            sink.chatplug_on_error(provider=provider, model=model, request_id=request_id,
                                   duration_s=duration_s, attempts=attempts, error=error,
                                   route=route)


class _Everything(_Failures):
    """Passes on every hook (attempt spans need the start and the end of each)."""

    @hookimpl
    def chatplug_on_request(self, provider: str, model: str, stream: bool, request_id: str,
                            route: str | None) -> None:
        for sink in list(self.sinks):
            sink.chatplug_on_request(provider=provider, model=model, stream=stream,
                                     request_id=request_id, route=route)

    @hookimpl
    def chatplug_on_response(self, provider: str, model: str, request_id: str,
                             duration_s: float, first_piece_s: float | None, pieces: int,
                             characters: int, attempts: int, outcome: str,
                             finish_reason: str | None, usage: Any,
                             route: str | None) -> None:
        for sink in list(self.sinks):
            sink.chatplug_on_response(
                provider=provider, model=model, request_id=request_id,
                duration_s=duration_s, first_piece_s=first_piece_s, pieces=pieces,
                characters=characters, attempts=attempts, outcome=outcome,
                finish_reason=finish_reason, usage=usage, route=route)


def listen(registry: Registry, sink: object, *, every_hook: bool = False) -> None:
    """Have ``sink`` hear ``registry``'s calls: its ``chatplug_on_retry`` and
    ``chatplug_on_error`` methods, and with ``every_hook`` the request and response
    hooks too.  ``sink`` is held weakly (keep a reference to it).

    :raises PluginLoadError: the gateway's observer name is blocked by
        ``CHATPLUG_DISABLED_PROVIDERS``.
    """
    table: Any = _everything if every_hook else _failures
    with _lock:
        observer = table.get(registry)
        if observer is None:
            observer = _Everything() if every_hook else _Failures()
            name = "chatplug-gateway-traces" if every_hook else "chatplug-gateway-metrics"
            registry.register_observer(observer, name=name)
            table[registry] = observer
    observer.sinks.add(sink)


def instrument(gateway: Gateway) -> Metrics | None:
    """Add the gateway's metrics (unless ``CHATPLUG_SERVER_METRICS=false``) and traces
    (when a tracer provider is configured) to its accountants; the metrics, if on.

    :raises ConfigurationError: ``OTEL_TRACES_EXPORTER`` names what is not installed.
    """
    from ..telemetry.setup import configured_provider

    metrics = None
    if gateway.settings.metrics:
        from .metrics import Metrics

        metrics = Metrics(gateway)
        gateway.accountants.append(metrics)
        listen(gateway.registry, metrics)
    provider = configured_provider()
    if provider is not None:
        from .traces import Traces

        traces = Traces(provider)
        gateway.accountants.append(traces)
        listen(gateway.registry, traces.attempts, every_hook=True)
    return metrics
