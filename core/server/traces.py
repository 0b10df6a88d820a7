"""The gateway's traces: one ``SERVER`` span per completion request (:class:`Traces`),
with the library's attempt spans (:class:`chatplug.telemetry.OTelObserver`) under it.

The request span starts when the request arrived and ends when it is settled; it carries
the GenAI attributes of what was asked and what served, the usage, the status and the
error code.  Admission hands the request's id to the call (the library's
:data:`~chatplug.calls.run.REQUEST_ID`), so the attempts the observer hears name the
request whose span is their parent.  Built only when a tracer provider is configured
(:func:`chatplug.telemetry.configured_provider`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..calls.run import REQUEST_ID
from ..telemetry.observer import OPEN_LIMIT, OTelObserver
from ..telemetry.semconv import OPERATION, usage_attributes

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider

    from .record import RequestRecord

__all__ = ["Traces"]

_SPAN = "chatplug.span"


class Traces:
    """An accountant that traces each request; :attr:`attempts` traces its attempts (the
    gateway has its registry's observers pass them on, :func:`.hearing.listen`)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        self._trace = trace
        self._error = Status(StatusCode.ERROR)
        self._tracer = trace.get_tracer("chatplug.server", tracer_provider=provider)
        #: The contexts of the requests in flight (and a few ended), by request id.
        self._contexts: OrderedDict[str, Context] = OrderedDict()
        self.attempts = OTelObserver(provider, parent=self._contexts.get)

    def _start(self, record: RequestRecord) -> Any:
        attributes: dict[str, Any] = {"gen_ai.operation.name": OPERATION,
                                      "http.route": record.endpoint,
                                      "chatplug.request_id": record.request_id}
        if record.requested_model is not None:
            attributes["gen_ai.request.model"] = record.requested_model
            attributes["gen_ai.request.stream"] = record.stream
        key_id = getattr(record.key, "id", None)
        if key_id is not None:
            attributes["chatplug.key_id"] = str(key_id)
        name = f"{OPERATION} {record.requested_model}" if record.requested_model else OPERATION
        return self._tracer.start_span(name, kind=self._trace.SpanKind.SERVER,
                                       attributes=attributes,
                                       start_time=int(record.started_at * 1e9))

    async def admit(self, record: RequestRecord) -> None:
        """Start the request's span; its calls take its request id (or a fresh one)."""
        span = self._start(record)
        record.notes[_SPAN] = span
        request_id = record.request_id
        if not request_id or request_id in self._contexts:  # a client's id may repeat
            request_id = os.urandom(8).hex()
        contexts = self._contexts
        contexts[request_id] = self._trace.set_span_in_context(span)
        while len(contexts) > OPEN_LIMIT:
            contexts.popitem(last=False)
        REQUEST_ID.set(request_id)

    def settled(self, record: RequestRecord) -> None:
        """End the request's span (one refused before admission gets one now)."""
        span = record.notes.pop(_SPAN, None) or self._start(record)
        provider = record.provider
        attributes: dict[str, Any] = {"http.response.status_code": record.status,
                                      "chatplug.attempts": record.attempts,
                                      **usage_attributes(record.usage)}
        if provider is not None:
            attributes["gen_ai.provider.name"] = provider
            attributes["gen_ai.system"] = provider
        if record.model is not None:
            attributes["gen_ai.response.model"] = record.model
        if record.first_piece is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = record.first_piece
        if record.error_type is not None:
            attributes["error.type"] = record.error_type
            if record.status >= 500 or record.status == 200:  # 200: a stream ended in error
                span.set_status(self._error)
        elif record.status >= 500:
            span.set_status(self._error)
        span.set_attributes(attributes)
        duration = record.duration if record.duration is not None else record.elapsed()
        span.end(end_time=int((record.started_at + duration) * 1e9))
