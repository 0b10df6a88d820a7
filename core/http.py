"""The transport as provider plugins import it (``from chatplug.http import HTTPClient``).

Kept for plugins written against chatplug 0.1; the code lives in :mod:`chatplug.transport`.
"""

from __future__ import annotations

from .transport.client import HTTPClient, Transport
from .transport.reply import Reply

__all__ = ["HTTPClient", "Reply", "Transport"]
