"""One OpenTelemetry span per upstream attempt: :class:`OTelObserver`.

Observers hear a call on chatplug's observer thread, a little after it happens
(:mod:`chatplug.calls.notify`), so a span's times come from what the hooks report: an
attempt that ends well or badly starts ``duration_s`` before its end.  A provider call
that retries makes one span per attempt (the failed ones with an error status); a
route makes one per entry it tries (``chatplug.route`` names it).  Spans are of kind
``CLIENT``, named ``chat <model>`` as the GenAI conventions say.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..hooks import hookimpl
from .semconv import OPERATION, error_type, usage_attributes

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OPEN_LIMIT", "OTelObserver"]

#: Attempts whose end was not heard yet, at most (the oldest are ended beyond it).
OPEN_LIMIT = 10_000


def _version() -> str:
    from .. import __version__

    return str(__version__)


class OTelObserver:
    """An observer that traces every completion attempt::

        registry.register_observer(OTelObserver(), name="otel")

    :param tracer_provider: where spans go (default: OpenTelemetry's global provider,
        which the application or ``opentelemetry-instrument`` configures).
    :param parent: the context a call's spans start under, by the call's request id
        (the gateway passes its request spans'); ``None``: each attempt is a root.
    :raises ImportError: ``opentelemetry-api`` is not installed (``pip install
        ".[otel]"``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, *,
                 parent: Callable[[str], Context | None] | None = None) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = trace.get_tracer("chatplug", _version(),
                                        tracer_provider=tracer_provider)
        self._parent = parent
        self._open: OrderedDict[str, Span] = OrderedDict()
        self._lock = threading.Lock()

    def _start(self, provider: str, model: str, request_id: str, route: str | None,
               start_ns: int, attempt: int = 1, stream: bool | None = None) -> Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": model,
            "chatplug.request_id": request_id,
            "chatplug.attempt": attempt,
        }
        if stream is not None:
            attributes["gen_ai.request.stream"] = stream
        if route is not None:
            attributes["chatplug.route"] = route
        context = self._parent(request_id) if self._parent is not None else None
        return self._tracer.start_span(
            f"{OPERATION} {model}", context=context, kind=self._trace.SpanKind.CLIENT,
            attributes=attributes, start_time=start_ns)

    def _take(self, request_id: str) -> Span | None:
        with self._lock:
            return self._open.pop(request_id, None)

    def _keep(self, request_id: str, span: Span) -> None:
        with self._lock:
            self._open[request_id] = span
            while len(self._open) > OPEN_LIMIT:
                _, oldest = self._open.popitem(last=False)
                oldest.end()

    def _failed(self, span: Span, error: Exception, end_ns: int) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("error.type", error_type(error))
        status = getattr(error, "status_code", None)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
        span.set_status(Status(StatusCode.ERROR, str(getattr(error, "reason", "")) or None))
        span.end(end_time=end_ns)

    @hookimpl
    def chatplug_on_request(self, provider: str, model: str, stream: bool, request_id: str,
                            route: str | None, **_: Any) -> None:
        self._keep(request_id, self._start(provider, model, request_id, route,
                                           time.time_ns(), stream=stream))

    @hookimpl
    def chatplug_on_retry(self, provider: str, model: str, request_id: str, attempt: int,
                          delay_s: float, error: Exception, route: str | None, **_: Any) -> None:
        now = time.time_ns()
        span = self._take(request_id) or self._start(provider, model, request_id, route, now)
        self._failed(span, error, now)
        self._keep(request_id, self._start(provider, model, request_id, route,
                                           now + int(delay_s * 1e9), attempt + 1))

    @hookimpl
    def chatplug_on_response(self, provider: str, model: str, request_id: str,
                             duration_s: float, first_piece_s: float | None,
                             finish_reason: str | None, usage: Any,
                             route: str | None, **_: Any) -> None:
        now = time.time_ns()
        span = self._take(request_id) or self._start(
            provider, model, request_id, route, now - int(duration_s * 1e9))
        attributes: dict[str, Any] = {"gen_ai.response.model": model,
                                      **usage_attributes(usage)}
        if finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [finish_reason]
        if first_piece_s is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = first_piece_s
        span.set_attributes(attributes)
        span.end(end_time=now)

    @hookimpl
    def chatplug_on_error(self, provider: str, model: str, request_id: str,
                          duration_s: float, error: Exception, route: str | None, **_: Any) -> None:
        now = time.time_ns()
        span = self._take(request_id) or self._start(
            provider, model, request_id, route, now - int(duration_s * 1e9))
        self._failed(span, error, now)
