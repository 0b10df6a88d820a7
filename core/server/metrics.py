"""The gateway's Prometheus metrics: ``GET /metrics`` (:class:`Metrics`).

An accountant (:mod:`.record`) counts each completion request once it is settled; the
library's observer hooks (:mod:`.hearing`) report what happens inside a call: retries,
route failovers, the error of each failed upstream attempt.  Each app has its own
``CollectorRegistry`` (never the process-wide one), so two apps in one process never
mix their counts.

Labels stay bounded whatever clients send: requests are labelled by the provider and
model they resolved to (never the raw ``model`` string of a request that resolved to
nothing: that is ``none``), and past :data:`MAX_MODELS` distinct provider/model pairs the
model is ``other``.  Each label set's children are looked up once and kept, so counting
a request builds no label dictionary.

Read at scrape time, when the gateway has them: the usage ledger's dropped rows
(``gateway.ledger.stats``) and whether the limiter has fallen back from Redis to
per-process limits (``gateway.limiter``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from .admin_only import admin_refusal

if TYPE_CHECKING:
    from starlette.requests import Request

    from .app import Gateway
    from .record import RequestRecord

__all__ = ["MAX_MODELS", "Metrics", "metrics_endpoint"]

#: Distinct provider/model label pairs kept; later ones are counted as model ``other``.
MAX_MODELS = 200
#: Seconds: from a cache hit to a long reasoning reply.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            120.0, 300.0)
_SERIES = ("endpoint", "provider", "model")


class _Series:
    """The children of one endpoint/provider/model: looked up once, then only counted."""

    __slots__ = ("duration", "first_piece", "metrics", "statuses", "tokens", "values")

    def __init__(self, metrics: Metrics, values: tuple[str, str, str]) -> None:
        self.metrics = metrics
        self.values = values
        self.duration = metrics.duration.labels(*values)
        self.first_piece = metrics.first_piece.labels(*values)
        provider, model = values[1], values[2]
        self.tokens = tuple(metrics.tokens.labels(provider, model, kind)
                            for kind in ("input", "output", "cached", "reasoning"))
        self.statuses: dict[int, Any] = {}

    def status(self, status: int) -> Any:
        child = self.statuses.get(status)
        if child is None:
            child = self.statuses[status] = self.metrics.requests.labels(*self.values,
                                                                         str(status))
        return child


class Metrics:
    """The gateway's metrics, in their own :attr:`registry`; an accountant and a sink of
    the observer hooks (:func:`.hearing.listen`)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "chatplug_requests", "Completion requests, by endpoint, the provider and model "
            "that served (or were asked), and HTTP status (499: the client went away).",
            [*_SERIES, "status"], registry=registry)
        self.duration = Histogram(
            "chatplug_request_duration_seconds", "Seconds from a request's arrival to "
            "the end of its reply.", _SERIES, buckets=_BUCKETS, registry=registry)
        self.first_piece = Histogram(
            "chatplug_time_to_first_piece_seconds", "Seconds from a request's arrival to "
            "the first piece of its reply (a whole reply: to the reply).", _SERIES,
            buckets=_BUCKETS, registry=registry)
        self.tokens = Counter(
            "chatplug_tokens", "Tokens of served replies by kind: input (cached ones "
            "included), output (reasoning included), cached, reasoning.",
            ["provider", "model", "kind"], registry=registry)
        self.upstream_errors = Counter(
            "chatplug_upstream_errors", "Failed upstream attempts by provider and error "
            "type (retried ones included).", ["provider", "type"], registry=registry)
        self.retries = Counter(
            "chatplug_retries", "Upstream attempts retried on the same provider.",
            ["provider"], registry=registry)
        self.failovers = Counter(
            "chatplug_route_failovers", "Route entries that failed: the route moved on "
            "to its next entry (or gave up when none was left).", ["route"],
            registry=registry)
        inflight = Gauge("chatplug_requests_in_flight",
                         "Completion requests in flight in this worker.", registry=registry)
        inflight.set_function(lambda: gateway.inflight.count)
        registry.register(_Borrowed(gateway))
        self._series: dict[tuple[str | None, str | None, str | None], _Series] = {}
        self._models: set[tuple[str, str]] = set()

    # -- the accountant ------------------------------------------------------------------

    async def admit(self, record: RequestRecord) -> None:
        """Metrics refuse nothing."""

    def settled(self, record: RequestRecord) -> None:
        """Count the request."""
        key = (record.endpoint, record.provider, record.model)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        series.status(record.status).inc()
        if record.duration is not None:
            series.duration.observe(record.duration)
        if record.first_piece is not None:
            series.first_piece.observe(record.first_piece)
        usage = record.usage
        if usage is not None:
            for child, count in zip(series.tokens, (
                    usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                    usage.reasoning_tokens), strict=True):
                if count:
                    child.inc(count)

    def _new_series(self, key: tuple[str | None, str | None, str | None]) -> _Series:
        endpoint, provider, model = key
        pair = (provider or "none", model or "none")
        if pair not in self._models:
            if len(self._models) >= MAX_MODELS:
                pair = (pair[0], "other")
            else:
                self._models.add(pair)
        series = _Series(self, (endpoint or "none", *pair))
        if len(self._series) < 4 * MAX_MODELS:  # the raw keys are the client's: bounded too
            self._series[key] = series
        return series

    # -- the observer hooks (on the observers' thread) --------------------------------

    def chatplug_on_retry(self, provider: str, error: Exception, **_: Any) -> None:
        self.retries.labels(provider).inc()
        self.upstream_errors.labels(provider, type(error).__name__).inc()

    def chatplug_on_error(self, provider: str, error: Exception, route: str | None,
                          **_: Any) -> None:
        self.upstream_errors.labels(provider, type(error).__name__).inc()
        if route is not None:
            self.failovers.labels(route).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class _Borrowed:
    """Figures other parts of the gateway keep, read when scraped: the ledger's dropped
    rows, the limiter's fallback from Redis.  Absent parts export nothing."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def describe(self) -> list[Any]:
        return []  # read at scrape time only: what exists may change

    def collect(self) -> Iterator[Any]:
        stats = getattr(getattr(self.gateway, "ledger", None), "stats", None)
        dropped = _figure(stats, "dropped")
        if dropped is not None:
            family = CounterMetricFamily(
                "chatplug_ledger_rows_dropped", "Usage ledger rows dropped (a full queue "
                "or an unreachable database); the requests were served.")
            family.add_metric([], dropped)
            yield family
        limiter = getattr(self.gateway, "limiter", None)
        degraded = None
        for name in ("degraded", "redis_degraded", "local_only"):
            degraded = _figure(limiter, name)
            if degraded is not None:
                break
        if degraded is not None:
            yield GaugeMetricFamily(
                "chatplug_limits_redis_degraded", "1 while Redis is unreachable and the "
                "limits are this process's own.", value=degraded)


def _figure(holder: Any, name: str) -> float | None:
    """``holder.name`` (or ``holder[name]``) as a number, else ``None``."""
    if holder is None:
        return None
    value = holder.get(name) if isinstance(holder, dict) else getattr(holder, name, None)
    if callable(value):
        value = value()
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: 404 when metrics are off, the admin key's refusal, else the text."""
    gateway: Gateway = request.app.state.gateway
    refusal = admin_refusal(request, gateway.settings)
    if refusal is not None:
        return refusal
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if metrics is None:
        return Response("metrics are off (CHATPLUG_SERVER_METRICS=false)\n", 404,
                        media_type="text/plain")
    return Response(metrics.exposition(), headers={"content-type": CONTENT_TYPE_LATEST})
