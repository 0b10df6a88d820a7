"""The virtual keys the gateway accepts, in memory: :class:`KeyCache`.

Authentication never waits for the database: the keys are loaded at start-up and
reloaded every ``CHATPLUG_SERVER_KEYS_REFRESH`` seconds (5) in a worker thread, so a key
revoked or expired on any replica is refused by every replica within that time.  A key
this replica has not loaded yet (created on another replica a moment ago) is looked up
on its first use, at most :data:`MISSES_PER_SECOND` lookups a second, so that unknown keys
cannot hammer the database.  With the database unreachable the gateway keeps the keys it
has and says so in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..accounting.keys import KeyStore, VirtualKey, hash_key

if TYPE_CHECKING:
    from ..accounting.database import Database

__all__ = ["MISSES_PER_SECOND", "KeyCache"]

logger = logging.getLogger("chatplug.server.keys")

#: Database lookups of keys not loaded yet, per second and process.
MISSES_PER_SECOND = 5


class KeyCache:
    """Keys by hash, reloaded in the background from the database ``open()`` returns.

    :ivar active: the database holds at least one virtual key, or ``required``: every
        request needs a key.
    :ivar store: the key store (``None`` until the database opened).
    """

    def __init__(self, open: Callable[[], Database], refresh: float, *,
                 required: bool = False) -> None:
        self._open = open
        self.refresh = refresh
        self.store: KeyStore | None = None
        #: Keys are needed even before the database holds one (an admin key is set).
        self.required = required
        self.active = required
        self._keys: dict[str, VirtualKey] = {}
        self._misses = 0
        self._miss_second = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: Called with the keys after each reload (the limits seed budgets' spend).
        self.loaded: Callable[[list[VirtualKey]], Awaitable[None]] | None = None

    def _load(self) -> dict[str, VirtualKey]:
        if self.store is None:
            self.store = KeyStore(self._open())
        return self.store.by_hash()

    async def reload(self) -> None:
        """Read every key from the database now (in a worker thread); on failure keep
        the keys already loaded and log it once."""
        try:
            keys = await asyncio.to_thread(self._load)
        except Exception as exc:  # StorageError, ConfigurationError: keep serving
            if not self._failing:
                self._failing = True
                logger.warning("cannot load the virtual keys (%s); serving with the keys "
                               "loaded before.", exc)
            return
        if self._failing:
            self._failing = False
            logger.warning("the virtual keys load again from the database.")
        self._keys = keys
        self.active = self.required or bool(keys)
        if self.loaded is not None:
            await self.loaded(list(keys.values()))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            await self.reload()

    async def start(self) -> None:
        """Load the keys, then reload them in the background until :meth:`stop`."""
        await self.reload()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop reloading and close the database."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.store is not None:
            await asyncio.to_thread(self.store.database.close)

    async def find(self, token: bytes) -> VirtualKey | None:
        """The key ``token`` is (usable or not), or ``None`` if no key is it."""
        digest = hash_key(token)
        key = self._keys.get(digest)
        if key is not None or self.store is None:
            return key
        second = int(time.monotonic())
        if second != self._miss_second:
            self._miss_second, self._misses = second, 0
        if self._misses >= MISSES_PER_SECOND:
            return None
        self._misses += 1
        store = self.store
        try:
            found = await asyncio.to_thread(store.by_hash, digest)
        except Exception as exc:
            logger.warning("cannot look a virtual key up (%s).", exc)
            return None
        key = found.get(digest)
        if key is not None:
            self._keys = {**self._keys, digest: key}
            self.active = True
        return key
