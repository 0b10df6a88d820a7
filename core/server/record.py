"""What the gateway knows about one completion request, and who is told.

Every completion endpoint fills one :class:`RequestRecord` as the request goes (the key
that sent it, the model asked for, the provider and model that served it, the status,
the usage, the time to the first piece) and hands it to the gateway's
:class:`Accountant`\\ s twice:

- :meth:`Accountant.admit`, after the request is parsed and its model resolved, before
  anything is sent upstream: a key's model list, rate limits, parallel slots and budget
  refuse it here by raising :class:`~.errors.GatewayError` (403, 429), in the client's
  wire.  An accountant that admitted the request is always told :meth:`settled` later.
- :meth:`Accountant.settled`, once per request: for a served reply just before its last
  bytes are sent (what a client has received is already accounted for: a crash right
  after loses no ledger row), for any other outcome when the request ends.  The usage
  ledger, the metrics and the budgets count it.  It runs on the event loop and must not
  block (queue the work).

The authentication middleware puts the caller's virtual key (when it used one) in the
scope under :data:`KEY_SCOPE`; the record carries it as :attr:`RequestRecord.key`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..events import Usage

__all__ = ["KEY_SCOPE", "Accountant", "RequestRecord"]

#: The scope entry the authentication middleware fills with the caller's virtual key.
KEY_SCOPE = "chatplug.key"


@dataclass(slots=True)
class RequestRecord:
    """One completion request as the gateway saw it.  Times: :attr:`started_at` is Unix
    seconds; :attr:`first_piece` and :attr:`duration` are seconds since the request
    arrived (``None`` until known)."""

    endpoint: str
    request_id: str
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    #: The virtual key that sent it (``KEY_SCOPE``), else ``None``.
    key: Any = None
    requested_model: str | None = None
    stream: bool = False
    #: The provider (or route) the model resolved to, then the one that served.
    provider: str | None = None
    model: str | None = None
    attempts: int = 0
    status: int = 0
    #: The error's code (``rate_limit_exceeded``, ``upstream_http_error``...) if it failed.
    error_type: str | None = None
    usage: Usage | None = None
    #: Tokens guessed (about 4 characters each, request body and reply text) when the
    #: reply reported no usage (a stream cut before its usage chunk, a server that sends
    #: none): limits and budgets count these rather than nothing.
    estimated_tokens: int | None = None
    #: Bytes of the request body, for that guess.
    body_bytes: int = 0
    first_piece: float | None = None
    duration: float | None = None
    #: Set by accountants for one another (e.g. the cost the ledger priced).
    notes: dict[str, Any] = field(default_factory=dict)
    #: The accountants were told (:meth:`Accountant.settled` runs once per request).
    told: bool = False

    def tokens(self) -> int:
        """The reply's tokens as its usage reports them, else the estimate (0 if none)."""
        usage = self.usage
        if usage is None:
            return self.estimated_tokens or 0
        if usage.total_tokens is not None:
            return usage.total_tokens
        return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)

    def elapsed(self) -> float:
        """Seconds since the request arrived."""
        return time.perf_counter() - self.started


class Accountant(Protocol):
    """Told about each completion request: before it runs, and once it is over."""

    async def admit(self, record: RequestRecord) -> None:
        """Let the request go on, or refuse it.

        :raises GatewayError: refused (403 model not allowed, 429 limit or budget), in
            the envelope of the request's wire.
        """

    def settled(self, record: RequestRecord) -> None:
        """The request is over (:attr:`RequestRecord.status` says how); must not block."""
