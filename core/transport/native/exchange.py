"""One request on the running loop (:func:`send`) and its reply (:class:`NativeReply`)."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..pending import Pending, wait
from ..reply import DRAIN_BYTES, DRAIN_SECONDS, Reply
from .connection import Connection
from .pool import Pool, pool_for
from .request import request_bytes

if TYPE_CHECKING:
    from ..client import HTTPClient

__all__ = ["NativeReply", "send"]

async def _exchange(client: HTTPClient, pool: Pool, key: tuple[str, str, int],
                    payload: bytes) -> Connection:
    """A connection whose response headers have arrived.

    A request is sent once: a connection that fails before any answer is reported as
    the sync transport reports it, never sent again (it may have reached the server).
    """
    context = client.context
    await pool.guard()
    connection = pool.take(key)
    if connection is None:
        connection = await pool.connect(key, min(client.transport.connect_timeout,
                                                 context.remaining()))
    context.attach(connection)
    connection.start(payload)
    while not connection.headers_done and connection.error is None:
        await connection.wait(min(client.read_timeout, context.remaining()))
    if connection.headers_done:
        return connection
    context.detach(connection)
    error = connection.error
    assert error is not None
    raise error


def send(client: HTTPClient, method: str, url: str, data: bytes | None,
         headers: Mapping[str, str]) -> Generator[Pending[Any], None, NativeReply]:
    """Send one request on the running loop; the :class:`NativeReply` once its headers came.

    Raises what the socket, the parser or the URL raise (the caller translates).
    """
    loop = client.context.loop
    assert loop is not None
    key, payload = request_bytes(method, url, data, headers)
    started = time.perf_counter()
    connection = yield from wait(_exchange(client, pool_for(client.transport, loop), key,
                                           payload))
    return NativeReply(connection, client, url, started)


class NativeReply(Reply):
    """A :class:`Reply` read from a native connection: where it would wait it yields a
    :class:`Pending` (through :meth:`Reply.iter_bytes` and every generator above)."""

    def __init__(self, connection: Connection, client: HTTPClient, url: str,
                 started: float) -> None:
        self._connection = connection
        self._client = client
        self._chunks = None
        self._complete = False
        self._received = 0
        self._released = False
        self.status_code = connection.status
        self.reason = connection.reason
        self.headers = connection.headers
        self.url = url
        self.started = started

    def _raw_chunks(self) -> Iterator[bytes]:
        connection = self._connection
        timeout = self._client.read_timeout
        while True:
            if connection.chunks:
                yield connection.take()
                continue
            if connection.complete:
                return
            if connection.error is not None:
                raise connection.error
            pending: Pending[None] = Pending(connection.wait(timeout))
            yield pending  # type: ignore[misc]  # passed up to the loop driving the call
            pending.result()

    def prefetch(self, limit: int) -> Generator[Pending[Any], None, None]:
        """Wait until the body is complete or ``limit`` bytes are buffered (an error body,
        read in full before its status becomes an error)."""
        connection = self._connection
        while not connection.complete and connection.error is None and not connection.lost \
                and connection.buffered < limit:
            pending: Pending[None] = Pending(connection.wait(self._client.read_timeout,
                                                             more=True))
            yield pending
            pending.result()

    def drain(self, *, limit: int = DRAIN_BYTES, wait: float = DRAIN_SECONDS) -> None:
        """Nothing to wait for here: :meth:`close` drains without waiting."""

    def _set_read_timeout(self, seconds: float) -> None:
        pass

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        connection = self._connection
        self._client.context.detach(connection)
        connection.release()
