"""The gateway's Prometheus metrics: ``GET /metrics`` (:class:`Metrics`).

An accountant (:mod:`.record`) counts each completion request once it is settled; the
library's observer hooks (:mod:`.hearing`) report what happens inside a call: retries,
route failovers, the error of each failed upstream attempt.  Each app has its own
``CollectorRegistry`` (never the process-wide one), so two apps in one process never
mix their counts.

Labels stay bounded whatever clients send: requests are labelled by the provider and
model they resolved to (never the raw ``model`` string of a request that resolved to
nothing: that is ``none``), and past :data:`MAX_MODELS` distinct provider/model pairs the
model is ``other``.  Counting a request adds to plain numbers kept per label set (no
lock, no label dictionary); the families are made when scraped.

Read at scrape time, when the gateway has them: the usage ledger's dropped rows
(``gateway.ledger.stats``) and whether the virtual keys' limits have fallen back from
Redis to per-process limits (``gateway.key_limits.degraded``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
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
_SERIES = ["endpoint", "provider", "model"]
_KINDS = ("input", "output", "cached", "reasoning")


class _Series:
    """What one endpoint/provider/model counted: plain numbers, added to on the event loop
    (no lock, no label lookup) and turned into metric families when scraped."""

    __slots__ = ("duration", "first_piece", "statuses", "tokens", "values")

    def __init__(self, values: tuple[str, str, str]) -> None:
        self.values = values
        self.statuses: dict[int, int] = {}
        #: Per histogram: the count in each bucket (the last: beyond), then the sum.
        self.duration = [0] * (len(_BUCKETS) + 1) + [0.0]
        self.first_piece = [0] * (len(_BUCKETS) + 1) + [0.0]
        self.tokens = [0, 0, 0, 0]


def _observe(histogram: list[Any], seconds: float) -> None:
    histogram[bisect_left(_BUCKETS, seconds)] += 1
    histogram[-1] += seconds


class Metrics:
    """The gateway's metrics, in their own :attr:`registry`; an accountant and a sink of
    the observer hooks (:func:`.hearing.listen`).

    Requests are counted on the event loop into plain numbers and scraped on it too
    (``/metrics`` runs there), so counting one costs a few additions; the rare events the
    observer thread reports (retries, errors) use prometheus_client's counters."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.registry = registry = CollectorRegistry(auto_describe=True)
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
        registry.register(_Requests(self))
        registry.register(_Borrowed(gateway))
        self._series: dict[tuple[str | None, str | None, str | None], _Series] = {}
        #: One series per label values, whatever raw keys led to it.
        self._by_values: dict[tuple[str, str, str], _Series] = {}
        self._models: set[tuple[str, str]] = set()

    # -- the accountant ------------------------------------------------------------------

    async def admit(self, record: RequestRecord) -> None:
        """Metrics refuse nothing."""

    def settled(self, record: RequestRecord) -> None:
        """Count the request."""
        series = self._series.get((record.endpoint, record.provider, record.model))
        if series is None:
            series = self._new_series((record.endpoint, record.provider, record.model))
        statuses = series.statuses
        statuses[record.status] = statuses.get(record.status, 0) + 1
        if record.duration is not None:
            _observe(series.duration, record.duration)
        if record.first_piece is not None:
            _observe(series.first_piece, record.first_piece)
        usage = record.usage
        if usage is not None:
            tokens = series.tokens
            tokens[0] += usage.prompt_tokens or 0
            tokens[1] += usage.completion_tokens or 0
            tokens[2] += usage.cached_tokens or 0
            tokens[3] += usage.reasoning_tokens or 0

    def _new_series(self, key: tuple[str | None, str | None, str | None]) -> _Series:
        endpoint, provider, model = key
        pair = (provider or "none", model or "none")
        if pair not in self._models:
            if len(self._models) >= MAX_MODELS:
                pair = (pair[0], "other")
            else:
                self._models.add(pair)
        values = (endpoint or "none", *pair)
        series = self._by_values.get(values)
        if series is None:
            series = self._by_values[values] = _Series(values)
        if len(self._series) < 4 * MAX_MODELS:  # the raw keys are the client's: bounded too
            self._series[key] = series
        return series

    def series(self) -> list[_Series]:
        """Every series counted so far."""
        return list(self._by_values.values())

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


class _Requests:
    """The requests' metric families, from the series :class:`Metrics` counted."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # the families are made at each scrape

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "chatplug_requests", "Completion requests, by endpoint, the provider and model "
            "that served (or were asked), and HTTP status (499: the client went away).",
            labels=[*_SERIES, "status"])
        duration = HistogramMetricFamily(
            "chatplug_request_duration_seconds", "Seconds from a request's arrival to "
            "the end of its reply.", labels=_SERIES)
        first_piece = HistogramMetricFamily(
            "chatplug_time_to_first_piece_seconds", "Seconds from a request's arrival to "
            "the first piece of its reply (a whole reply: to the reply).", labels=_SERIES)
        tokens = CounterMetricFamily(
            "chatplug_tokens", "Tokens of served replies by kind: input (cached ones "
            "included), output (reasoning included), cached, reasoning.",
            labels=["provider", "model", "kind"])
        # Tokens are labelled by provider and model only: the series of several endpoints
        # add up into one sample each (a label set twice is refused by Prometheus).
        token_counts: dict[tuple[str, ...], int] = {}
        for series in self.metrics.series():
            values = list(series.values)
            for status, count in sorted(series.statuses.items()):
                requests.add_metric([*values, str(status)], count)
            for family, histogram in ((duration, series.duration),
                                      (first_piece, series.first_piece)):
                if sum(histogram[:-1]):
                    family.add_metric(values, _cumulative(histogram), histogram[-1])
            for kind, count in zip(_KINDS, series.tokens, strict=True):
                if count or series.statuses.get(200):
                    labels = (*values[1:], kind)
                    token_counts[labels] = token_counts.get(labels, 0) + count
        for labels, count in token_counts.items():
            tokens.add_metric(list(labels), count)
        yield from (requests, duration, first_piece, tokens)


def _cumulative(histogram: list[Any]) -> list[tuple[str, float]]:
    """Prometheus' buckets (``le``, cumulative count) of a series' histogram."""
    buckets, total = [], 0
    for bound, count in zip([*map(str, _BUCKETS), "+Inf"], histogram[:-1], strict=True):
        total += count
        buckets.append((bound, total))
    return buckets


class _Borrowed:
    """Figures other parts of the gateway keep, read when scraped: the ledger's dropped
    rows, the limiter's fallback from Redis.  Absent parts export nothing."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def describe(self) -> list[Any]:
        return []  # read at scrape time only: what exists may change

    def collect(self) -> Iterator[Any]:
        ledger = self.gateway.ledger
        dropped = _figure(ledger.stats if ledger is not None else None, "dropped")
        if dropped is not None:
            family = CounterMetricFamily(
                "chatplug_ledger_rows_dropped", "Usage ledger rows dropped (a full queue "
                "or an unreachable database); the requests were served.")
            family.add_metric([], dropped)
            yield family
        degraded = _figure(self.gateway.key_limits, "degraded")
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
