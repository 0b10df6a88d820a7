"""The HTTP transport: pooled connections, one deadline per call, typed errors.

Everything between a wire format and the socket: :class:`Transport` (one pooled
session per registry), :class:`HTTPClient` (the transport bound to one call),
:class:`Reply` (a body read live), the deadline watchdog, the mapping of
transport exceptions to chatplug's errors, and redaction of keys.
"""

from __future__ import annotations

from .client import HTTPClient, Transport
from .reply import Reply

__all__ = ["HTTPClient", "Reply", "Transport"]
