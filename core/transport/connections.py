"""urllib3 connection pools whose connections belong to one call at a time.

A connection taken from the pool while a call sends its request is attached to
that call's :class:`~chatplug.transport.context.CallContext` (its deadline and
cancellation reach the connection from then on: the proxy's CONNECT answer, the
headers, the body; the TLS handshake, whose socket is in ``ssl``'s hands, is
bounded by the connect timeout and checked right after) and detached the moment
it goes back to the pool or is closed, so one call's deadline can never cut a
connection another call has taken since.

Informational answers (``1xx``, such as ``103 Early Hints``) are skipped: the
response is the final one that follows them.
"""

from __future__ import annotations

import http.client
from typing import Any

from .context import CURRENT_CALL

__all__ = ["MAX_INFORMATIONAL", "pool_classes"]

#: Informational answers skipped before one is taken as a protocol violation.
MAX_INFORMATIONAL = 32

_classes: dict[str, Any] | None = None


class FinalResponse(http.client.HTTPResponse):
    """An ``http.client`` response that reads past ``1xx`` answers to the final one."""

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(MAX_INFORMATIONAL):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200 or status == 101:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the 1xx answer's own headers
        raise http.client.HTTPException(
            f"the server sent more than {MAX_INFORMATIONAL} informational (1xx) answers")


def pool_classes() -> dict[str, Any]:
    """``{"http": pool class, "https": pool class}`` for urllib3's pool managers."""
    global _classes
    if _classes is None:
        _classes = _make_classes()
    return _classes


def _owner(connection: Any) -> Any:
    return connection.__dict__.get("_chatplug_call")


def _release(connection: Any) -> None:
    owner = connection.__dict__.pop("_chatplug_call", None)
    if owner is not None:
        owner.detach(connection)


class _OwnedConnection:
    """What chatplug adds to urllib3's HTTP and HTTPS connections."""

    #: urllib3 types it as its own response class; http.client's subclass is what it uses.
    response_class = FinalResponse

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        owner = _owner(self)
        if owner is not None:
            # A cancel or the deadline that came while connecting found no socket to
            # shut; attaching again shuts it now, before anything is sent or awaited.
            owner.attach(self)

    def _tunnel(self) -> None:
        super()._tunnel()  # type: ignore[misc]
        owner = _owner(self)
        if owner is not None and owner.failure() is not None:
            # A CONNECT answer cut by the deadline (or a cancel) ends like one without a
            # trailer: it must not pass for an open tunnel.
            raise OSError("the proxy's CONNECT answer was cut off")

    def close(self) -> None:
        _release(self)
        super().close()  # type: ignore[misc]


class _OwnedPool:
    """What chatplug adds to urllib3's connection pools: who holds each connection."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        call = CURRENT_CALL.get()
        if call is not None and connection is not None:
            connection.__dict__["_chatplug_call"] = call
            call.attach(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            _release(conn)  # before it is back in the pool, where another call may take it
        super()._put_conn(conn)  # type: ignore[misc]


def _make_classes() -> dict[str, Any]:
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class OwnedHTTPConnection(_OwnedConnection, HTTPConnection):  # type: ignore[misc]
        pass

    class OwnedHTTPSConnection(_OwnedConnection, HTTPSConnection):  # type: ignore[misc]
        pass

    class OwnedHTTPConnectionPool(_OwnedPool, HTTPConnectionPool):
        ConnectionCls = OwnedHTTPConnection

    class OwnedHTTPSConnectionPool(_OwnedPool, HTTPSConnectionPool):
        ConnectionCls = OwnedHTTPSConnection

    return {"http": OwnedHTTPConnectionPool, "https": OwnedHTTPSConnectionPool}
