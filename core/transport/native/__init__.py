"""HTTP/1.1 on the event loop itself: the transport of calls an event loop drives.

The async API and the gateway run a call whose provider declares
``native_async = True`` on the loop (:mod:`chatplug.calls.aio`); its requests
come here instead of to ``requests`` on a worker thread, which saves the
thread hop each way and most of the client's CPU per request.  Everything
above the socket is shared with the sync transport: the same
:class:`~chatplug.transport.reply.Reply` (limits, content decoding, deadline
checks), the same status checks and error texts (:mod:`.failures`), the same
call context (its deadline watchdog and ``cancel()`` shut these connections
too).

httptools (llhttp, the parser uvicorn uses) parses the responses; it comes
with ``chatplug[server]``.  Without it, or with a proxy configured, or with
``CHATPLUG_NATIVE_ASYNC=0``, async calls run on worker threads as before.

Connections are pooled per event loop and host.  A pooled connection the
server closed while idle is replaced once, transparently, when it fails
before any byte of the response came (nothing was processed).
"""

from __future__ import annotations

from .connection import available
from .exchange import NativeReply, send
from .pool import close_pools

__all__ = ["NativeReply", "available", "close_pools", "send"]
