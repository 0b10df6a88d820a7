"""The idle connections of one transport on one event loop: :class:`Pool`.

Connections are kept per event loop (a connection belongs to the loop that
opened it) and per host, reused while the server keeps them alive, and all
closed when the loop shuts down.
"""

from __future__ import annotations

import asyncio
import functools
import os
import select
import socket
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from ..failures import ConnectFailed, ConnectTimeout
from .connection import Connection, on_loop

if TYPE_CHECKING:
    from ..client import Transport

__all__ = ["Pool", "close_pools", "pool_for"]

class Pool:
    """The idle connections of one transport on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: Transport) -> None:
        self.loop = loop
        self.limit = transport.pool_size
        self.idle: dict[tuple[str, str, int], list[Connection]] = {}
        #: Every open connection: idle, in use, or draining (all closed with the loop).
        self.open: weakref.WeakSet[Connection] = weakref.WeakSet()
        verify = transport.verify
        self._verify = verify
        self._tls: ssl.SSLContext | None = None
        self._guard: AsyncGenerator[None, None] | None = None

    async def guard(self) -> None:
        """Have the idle connections closed when the loop shuts down.

        ``asyncio.run`` (uvicorn, ``asyncio.Runner``) finalizes the async generators
        still suspended on its loop before closing it; this pool keeps one, whose
        ``finally`` closes the connections, so none outlives its loop unclosed.
        """
        if self._guard is None:
            self._guard = self._closing()
            await self._guard.__anext__()

    async def _closing(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self.close()

    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            cafile = self._verify if isinstance(self._verify, str) else None
            self._tls = ssl.create_default_context(cafile=cafile)
        return self._tls

    def take(self, key: tuple[str, str, int]) -> Connection | None:
        """An idle connection to ``key`` that is still open.

        One the server closed (or wrote to) while idle but whose news the loop has not
        processed yet is readable now: it is dropped here, as urllib3 does, because a
        request sent on it could not be told apart from one the server saw and dropped.
        """
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if connection.lost or transport is None or transport.is_closing():
                continue
            if _readable(transport):
                connection.abort()
                continue
            return connection
        return None

    def put(self, connection: Connection) -> None:
        idle = self.idle.setdefault(connection.key, [])
        keep = connection.keep_alive and not connection.lost
        if keep and len(idle) < self.limit:
            idle.append(connection)
        else:
            connection.abort()

    def forget(self, connection: Connection) -> None:
        self.open.discard(connection)
        idle = self.idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def close(self, *, idle_only: bool = False) -> None:
        """Close the idle connections, or (the loop is shutting down) every one."""
        every = [c for idle in self.idle.values() for c in idle] if idle_only else self.open
        for connection in list(every):
            connection.abort()
        self.idle.clear()

    async def connect(self, key: tuple[str, str, int], timeout: float) -> Connection:
        scheme, host, port = key
        loop = self.loop
        opening = asyncio.ensure_future(loop.create_connection(
            lambda: Connection(self, key), host, port,
            ssl=self.tls() if scheme == "https" else None))
        fired = False

        def expire() -> None:
            nonlocal fired
            fired = True
            opening.cancel()

        timer = loop.call_later(timeout, expire)
        failure: Exception | None = None
        try:
            _, protocol = await opening
        except asyncio.CancelledError:
            if not fired:
                raise
            failure = ConnectTimeout(f"connecting took more than {timeout:g} s")
        except ssl.SSLError:
            raise
        except socket.gaierror as exc:
            raise ConnectFailed(str(exc)) from exc  # the resolver's error stays in the chain
        except OSError as exc:
            # The socket's own words ("Connection refused"), as the sync transport says
            # them, raised outside this block so asyncio's wording is not in the chain.
            failure = ConnectFailed(f"[Errno {exc.errno}] {os.strerror(exc.errno)}"
                                    if exc.errno else str(exc) or type(exc).__name__)
        finally:
            timer.cancel()
        if failure is not None:
            raise failure
        self.open.add(protocol)
        return protocol


def _readable(transport: Any) -> bool:
    """Whether an idle connection's socket has something to read (its close, say)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        ready, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


_pools: weakref.WeakKeyDictionary[Any, dict[Any, Pool]] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def pool_for(transport: Transport, loop: asyncio.AbstractEventLoop) -> Pool:
    """``transport``'s pool on ``loop`` (created on first use)."""
    pools = _pools.get(transport)
    pool = pools.get(loop) if pools is not None else None
    if pool is None:
        with _pools_lock:
            pools = _pools.setdefault(transport, {})
            for other in [known for known in pools if known.is_closed()]:
                del pools[other]
            pool = pools.setdefault(loop, Pool(loop, transport))
    return pool


def close_pools(transport: Transport) -> None:
    """Close ``transport``'s idle connections on every loop."""
    with _pools_lock:
        pools = _pools.pop(transport, {})
    for loop, pool in pools.items():
        if not loop.is_closed():
            on_loop(loop, functools.partial(pool.close, idle_only=True))
